//! The tracing subscriber: the only place one is installed.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Installs logging to stderr and, with `file`, to that file as well (appending, no colours).
///
/// `level` is a level (`info`) or a full filter (`info,peerpool_net=debug`).
pub fn init(level: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = || {
        EnvFilter::builder().parse(level).with_context(|| {
            format!("invalid --log-level {level:?} (try error, warn, info, debug, trace)")
        })
    };
    let stderr = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter()?);
    let file_layer = match file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            Some(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(Arc::new(f))
                    .with_filter(filter()?),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(())
}
