//! One admin connection: requests in, answers and (after `subscribe`) notifications out.

use serde_json::Value;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::commands::Context;
use super::jsonrpc::{error_response, response, Request};
use super::lines::{write_line, Line, LineReader};
use super::Config;
use crate::error::{RpcError, INVALID_REQUEST, PARSE_ERROR};
use crate::events::{lagged_notice, EventStream, Filter, Next};

enum Step {
    Line(std::io::Result<Option<Line>>),
    Event(Next),
}

/// Serves `stream` until the client leaves, misbehaves past recovery (stops reading, lags
/// behind the event stream) or `stop` is cancelled.
pub(crate) async fn serve(
    stream: TcpStream,
    ctx: Context,
    config: Config,
    stop: CancellationToken,
) {
    let client = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    debug!(%client, "admin connection");
    let (rd, mut wr) = stream.into_split();
    let mut reader = LineReader::new(rd, config.max_line_length);
    let mut events: Option<EventStream> = None;
    let timeout = config.write_timeout;
    loop {
        let step = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            line = reader.next() => Step::Line(line),
            next = next_event(&mut events) => Step::Event(next),
        };
        let out: Vec<Value> = match step {
            Step::Line(Ok(None)) => break,
            Step::Line(Err(e)) => {
                debug!(%client, "admin connection: {e}");
                break;
            }
            Step::Line(Ok(Some(Line::TooLong))) => vec![error_response(
                Value::Null,
                &RpcError::new(
                    INVALID_REQUEST,
                    format!(
                        "request line longer than {} bytes, skipped",
                        config.max_line_length
                    ),
                ),
            )],
            Step::Line(Ok(Some(Line::NotUtf8))) => vec![error_response(
                Value::Null,
                &RpcError::new(PARSE_ERROR, "request line is not UTF-8"),
            )],
            Step::Line(Ok(Some(Line::Text(line)))) => handle_line(&line, &ctx, &mut events).await,
            Step::Event(Next::Notify(n)) => vec![n],
            Step::Event(Next::Lagged(missed)) => {
                info!(%client, missed, "dropping an event subscriber that fell behind");
                let _ = write_line(&mut wr, &lagged_notice(missed), timeout).await;
                break;
            }
            Step::Event(Next::Closed) => break,
        };
        for v in &out {
            if let Err(e) = write_line(&mut wr, v, timeout).await {
                info!(%client, "dropping admin connection: {e}");
                return;
            }
        }
    }
    debug!(%client, "admin connection closed");
}

async fn next_event(events: &mut Option<EventStream>) -> Next {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The answers to one line: nothing for notifications, one answer for a request, one array
/// for a batch.
async fn handle_line(line: &str, ctx: &Context, events: &mut Option<EventStream>) -> Vec<Value> {
    if line.trim().is_empty() {
        return Vec::new();
    }
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return vec![error_response(
                Value::Null,
                &RpcError::new(PARSE_ERROR, format!("invalid JSON: {e}")),
            )]
        }
    };
    match value {
        Value::Array(batch) if batch.is_empty() => vec![error_response(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "empty batch"),
        )],
        Value::Array(batch) => {
            let mut answers = Vec::new();
            for item in batch {
                answers.extend(handle_one(item, ctx, events).await);
            }
            if answers.is_empty() {
                Vec::new()
            } else {
                vec![Value::Array(answers)]
            }
        }
        single => handle_one(single, ctx, events).await.into_iter().collect(),
    }
}

async fn handle_one(
    value: Value,
    ctx: &Context,
    events: &mut Option<EventStream>,
) -> Option<Value> {
    let req = match Request::from_value(value) {
        Ok(r) => r,
        Err(answer) => return Some(answer),
    };
    let result = if req.method == "subscribe" {
        subscribe(&req, ctx, events)
    } else {
        ctx.call(&req).await
    };
    let id = req.id?;
    Some(match result {
        Ok(v) => response(id, v),
        Err(e) => error_response(id, &e),
    })
}

fn subscribe(
    req: &Request,
    ctx: &Context,
    events: &mut Option<EventStream>,
) -> Result<Value, RpcError> {
    let params = req.named(&["events", "commands", "peers"])?;
    let filter = Filter::from_params(&params)?;
    let answer = filter.to_json();
    *events = Some(EventStream::new(ctx.daemon.pool.bus(), filter));
    Ok(answer)
}
