//! A client of the admin listener, for `peerpool admin`, `peerpool events` and tests.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

use super::lines::{write_line, Line, LineReader};
use crate::RpcError;

/// Longest line the client takes from the server: answers listing a large address book are
/// long.
pub const MAX_ANSWER_LENGTH: usize = 256 * 1024 * 1024;

/// How long a request may wait for the server to take it.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed before an answer came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server sent something that is not JSON-RPC.
    #[error("invalid answer from the server: {0}")]
    Protocol(String),
}

/// One connection to an admin listener.
#[derive(Debug)]
pub struct Client {
    reader: LineReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    /// Notifications that arrived while waiting for an answer.
    pending: VecDeque<Value>,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        let (rd, writer) = stream.into_split();
        Ok(Client {
            reader: LineReader::new(rd, MAX_ANSWER_LENGTH),
            writer,
            next_id: 0,
            pending: VecDeque::new(),
        })
    }

    /// Calls `method` with `params` and waits for its answer: `Ok(Err(_))` for an error
    /// answer. Notifications received meanwhile are kept for [`Client::notification`].
    pub async fn call(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, RpcError>, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        write_line(&mut self.writer, &req, SEND_TIMEOUT).await?;
        loop {
            let msg = self.read().await?.ok_or(ClientError::Closed)?;
            if msg.get("method").is_some() && msg.get("id").is_none() {
                self.pending.push_back(msg);
                continue;
            }
            if msg.get("id") != Some(&json!(id)) {
                return Err(ClientError::Protocol(format!("unexpected message: {msg}")));
            }
            if let Some(e) = msg.get("error") {
                let code = e
                    .get("code")
                    .and_then(Value::as_i64)
                    .and_then(|c| i32::try_from(c).ok());
                let message = e.get("message").and_then(Value::as_str);
                return match (code, message) {
                    (Some(code), Some(message)) => Ok(Err(RpcError::new(code, message))),
                    _ => Err(ClientError::Protocol(format!("ill-formed error: {e}"))),
                };
            }
            return match msg.get("result") {
                Some(r) => Ok(Ok(r.clone())),
                None => Err(ClientError::Protocol(format!("no result in {msg}"))),
            };
        }
    }

    /// The next notification (`{"jsonrpc", "method", "params"}`); `Ok(None)` once the
    /// server closed the connection.
    pub async fn notification(&mut self) -> Result<Option<Value>, ClientError> {
        if let Some(n) = self.pending.pop_front() {
            return Ok(Some(n));
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<Option<Value>, ClientError> {
        match self.reader.next().await? {
            None => Ok(None),
            Some(Line::TooLong) => Err(ClientError::Protocol(format!(
                "a line longer than {MAX_ANSWER_LENGTH} bytes"
            ))),
            Some(Line::NotUtf8) => Err(ClientError::Protocol("a line that is not UTF-8".into())),
            Some(Line::Text(t)) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| ClientError::Protocol(format!("{e}: {t}"))),
        }
    }
}
