//! One admin connection: requests in, answers and (after `subscribe`) notifications out.

use serde_json::Value;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::commands::Context;
use super::jsonrpc::{error_response, response, Request};
use super::lines::{write_bytes, write_line, Line, LineReader};
use super::Config;
use crate::error::{RpcError, INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR};
use crate::events::{lagged_notice, EventStream, Filter, Next};
use crate::slots::Slot;

enum Step {
    Line(std::io::Result<Option<Line>>),
    Event(Next),
    Idle,
}

/// Where a connection stands with its client.
struct Session {
    /// A valid JSON-RPC request has been received: from now on, bad lines get errors rather
    /// than closing the connection.
    greeted: bool,
    /// `auth` succeeded, or none is needed.
    authed: bool,
    /// After `subscribe`: the event stream.
    events: Option<EventStream>,
    /// Close the connection once the answers so far are written.
    close: bool,
}

/// Serves `stream` until the client leaves, misbehaves past recovery (stops reading, lags
/// behind the event stream, speaks another protocol, fails `auth`), stays idle too long, or
/// `slot` is closed.
pub(crate) async fn serve(stream: TcpStream, ctx: Context, config: Config, slot: &Slot) {
    let client = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    debug!(%client, "admin connection");
    let (rd, mut wr) = stream.into_split();
    let mut reader = LineReader::new(rd, config.max_line_length);
    let mut session = Session {
        greeted: false,
        authed: config.auth.is_none(),
        events: None,
        close: false,
    };
    let timeout = config.write_timeout;
    let idle = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(idle);
    loop {
        let step = tokio::select! {
            biased;
            () = slot.close.cancelled() => break,
            line = reader.next() => Step::Line(line),
            next = next_event(&mut session.events) => Step::Event(next),
            () = &mut idle, if session.events.is_none() => Step::Idle,
        };
        let out: Vec<Vec<u8>> = match step {
            Step::Idle => {
                debug!(%client, "closing an idle admin connection");
                break;
            }
            Step::Line(Ok(None)) => break,
            Step::Line(Err(e)) => {
                debug!(%client, "admin connection: {e}");
                break;
            }
            Step::Line(Ok(Some(Line::TooLong))) => {
                session.close |= !session.greeted;
                vec![encode(&error_response(
                    Value::Null,
                    &RpcError::new(
                        INVALID_REQUEST,
                        format!(
                            "request line longer than {} bytes, skipped",
                            config.max_line_length
                        ),
                    ),
                ))]
            }
            Step::Line(Ok(Some(Line::NotUtf8))) => {
                session.close |= !session.greeted;
                vec![encode(&error_response(
                    Value::Null,
                    &RpcError::new(PARSE_ERROR, "request line is not UTF-8"),
                ))]
            }
            Step::Line(Ok(Some(Line::Text(line)))) => {
                slot.touch();
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + config.idle_timeout);
                handle_line(&line, &ctx, &config, &mut session).await
            }
            Step::Event(Next::Notify(n)) => vec![encode(&n)],
            Step::Event(Next::Lagged(missed)) => {
                info!(%client, missed, "dropping an event subscriber that fell behind");
                let _ = write_line(&mut wr, &lagged_notice(missed), timeout).await;
                break;
            }
            Step::Event(Next::Closed) => break,
        };
        for mut bytes in out {
            bytes.push(b'\n');
            if let Err(e) = write_bytes(&mut wr, &bytes, timeout).await {
                info!(%client, "dropping admin connection: {e}");
                return;
            }
        }
        if session.close {
            debug!(%client, "closing an admin connection that spoke no JSON-RPC or failed auth");
            break;
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

/// A message as the bytes of its line, without the newline.
fn encode(v: &Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail (its keys are strings).
    serde_json::to_vec(v).unwrap_or_default()
}

/// An answer line, or an error in its place when it is longer than `max`.
fn bounded(answer: Value, id: &Value, max: usize) -> Vec<u8> {
    let bytes = encode(&answer);
    if bytes.len() <= max {
        return bytes;
    }
    encode(&error_response(id.clone(), &too_long(max)))
}

fn too_long(max: usize) -> RpcError {
    RpcError::new(
        INTERNAL_ERROR,
        format!("answer longer than {max} bytes: not sent (ask for less at a time)"),
    )
}

/// Whether `v` has the shape of a JSON-RPC request (an object with a string `method`): what
/// a connection's first line must be.
fn looks_like_request(v: &Value) -> bool {
    v.get("method").is_some_and(Value::is_string)
}

/// The answer lines to one line: nothing for notifications, one answer for a request, one
/// array for a batch. Sets `session.close` when the connection is to end after them.
async fn handle_line(
    line: &str,
    ctx: &Context,
    config: &Config,
    session: &mut Session,
) -> Vec<Vec<u8>> {
    if line.trim().is_empty() {
        return Vec::new();
    }
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            // Before any request, a line that is not JSON is another protocol speaking (an
            // HTTP request from a web page): nothing after it is read.
            session.close |= !session.greeted;
            return vec![encode(&error_response(
                Value::Null,
                &RpcError::new(PARSE_ERROR, format!("invalid JSON: {e}")),
            ))];
        }
    };
    let request_shaped = match &value {
        Value::Array(batch) => !batch.is_empty() && batch.iter().all(looks_like_request),
        v => looks_like_request(v),
    };
    if !session.greeted && !request_shaped {
        // Nothing of it runs, not even the well-formed members of a batch.
        session.close = true;
        return vec![encode(&error_response(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "the first line must be a JSON-RPC request"),
        ))];
    }
    session.greeted = true;
    match value {
        Value::Array(batch) if batch.is_empty() => vec![encode(&error_response(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "empty batch"),
        ))],
        Value::Array(_) if !session.authed => {
            session.close = true;
            vec![encode(&error_response(Value::Null, &auth_first()))]
        }
        Value::Array(batch) if batch.len() > config.max_batch => {
            vec![encode(&error_response(
                Value::Null,
                &RpcError::new(
                    INVALID_REQUEST,
                    format!(
                        "batch of {} requests: at most {} are taken",
                        batch.len(),
                        config.max_batch
                    ),
                ),
            ))]
        }
        Value::Array(batch) => {
            // The answers' bytes are counted as they come: past the bound, the rest of the
            // batch is not run at all.
            let mut answers: Vec<Vec<u8>> = Vec::new();
            let mut bytes = 2;
            for item in batch {
                if bytes > config.max_reply {
                    let id = item.get("id").cloned().unwrap_or(Value::Null);
                    answers.push(encode(&error_response(id, &too_long(config.max_reply))));
                    continue;
                }
                if let Some((answer, id)) = handle_one(item, ctx, config, session).await {
                    let a = bounded(answer, &id, config.max_reply);
                    bytes += a.len() + 1;
                    answers.push(a);
                }
            }
            if answers.is_empty() {
                return Vec::new();
            }
            let mut line = Vec::with_capacity(bytes);
            line.push(b'[');
            for (i, a) in answers.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                line.extend_from_slice(a);
            }
            line.push(b']');
            vec![line]
        }
        single => handle_one(single, ctx, config, session)
            .await
            .map(|(answer, id)| bounded(answer, &id, config.max_reply))
            .into_iter()
            .collect(),
    }
}

fn auth_first() -> RpcError {
    RpcError::new(
        INVALID_REQUEST,
        "authenticate first: the first request must be auth with the node RPC's credentials",
    )
}

/// One request's answer and its id.
async fn handle_one(
    value: Value,
    ctx: &Context,
    config: &Config,
    session: &mut Session,
) -> Option<(Value, Value)> {
    let req = match Request::from_value(value) {
        Ok(r) => r,
        Err(answer) => return Some((answer, Value::Null)),
    };
    let result = if req.method == "auth" {
        auth(&req, config, session).await
    } else if !session.authed {
        session.close = true;
        Err(auth_first())
    } else if req.method == "subscribe" {
        subscribe(&req, ctx, &mut session.events)
    } else {
        ctx.call(&req).await
    };
    let id = req.id?;
    Some(match result {
        Ok(v) => (response(id.clone(), v), id),
        Err(e) => (error_response(id.clone(), &e), id),
    })
}

/// `auth [user, password]`: checks the credentials when the listener asks for them; `true`
/// when it does not.
async fn auth(req: &Request, config: &Config, session: &mut Session) -> Result<Value, RpcError> {
    let params = req.named(&["user", "password"])?;
    let text = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default();
    let Some(auth) = &config.auth else {
        return Ok(Value::Bool(true));
    };
    if auth.credentials.check_pair(text("user"), text("password")) {
        session.authed = true;
        return Ok(Value::Bool(true));
    }
    peerpool_net::log_limited!(tracing::Level::WARN, "admin auth with wrong credentials");
    auth.failed.pay().await;
    session.close = true;
    Err(RpcError::new(INVALID_REQUEST, "wrong credentials"))
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
