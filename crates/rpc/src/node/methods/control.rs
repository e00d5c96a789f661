//! The daemon itself: `uptime`, `help` and `stop`.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::{find, handler, opt, Call, Method, METHODS};
use crate::error::RpcError;

/// How long `stop` waits before shutting the daemon down, so that its reply is written on the
/// caller's connection first.
const STOP_GRACE: Duration = Duration::from_millis(100);

pub(super) static UPTIME: Method = Method {
    name: "uptime",
    category: "Control",
    args: &[],
    usage: "uptime",
    help: "Seconds since the daemon started.\n",
    handler: handler!(uptime),
};

async fn uptime(c: Call<'_>) -> Result<Value, RpcError> {
    Ok(json!(SystemTime::now()
        .duration_since(c.ctx.daemon.started)
        .unwrap_or_default()
        .as_secs()))
}

pub(super) static HELP: Method = Method {
    name: "help",
    category: "Control",
    args: &[opt("command")],
    usage: "help ( \"command\" )",
    help: "Lists the methods, or shows the help of one.\n",
    handler: handler!(help),
};

async fn help(c: Call<'_>) -> Result<Value, RpcError> {
    if let Some(name) = c.str_arg(0)? {
        return Ok(match find(name) {
            Some(m) => json!(m.help_text()),
            None => json!(format!("help: unknown command: {name}")),
        });
    }
    let mut out = String::new();
    let mut category = "";
    for m in METHODS.iter().filter(|m| m.category != "Hidden") {
        if m.category != category {
            if !category.is_empty() {
                out.push('\n');
            }
            category = m.category;
            out.push_str(&format!("== {category} ==\n"));
        }
        out.push_str(m.usage);
        out.push('\n');
    }
    Ok(json!(out.trim_end()))
}

pub(super) static STOP: Method = Method {
    name: "stop",
    category: "Control",
    args: &[],
    usage: "stop",
    help: "Stops the daemon.\n",
    handler: handler!(stop),
};

async fn stop(c: Call<'_>) -> Result<Value, RpcError> {
    let token = c.ctx.daemon.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(STOP_GRACE).await;
        token.cancel();
    });
    Ok(json!("peerpool stopping"))
}
