//! Line framing for both ends of the admin connection: [`LinesCodec`] with a length limit over
//! a socket's read half, and whole-line writes with a deadline.

use std::io;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

/// What reading a line gave.
#[derive(Debug)]
pub enum Line {
    /// A complete line, without its `\n` (or `\r\n`).
    Text(String),
    /// A line longer than the limit. It is skipped up to its end; the next line reads
    /// normally.
    TooLong,
    /// A line that is not UTF-8 (skipped).
    NotUtf8,
}

/// Lines from a byte stream, each at most `max` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    rd: R,
    buf: BytesMut,
    codec: LinesCodec,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Reads lines of at most `max` bytes from `rd`.
    pub fn new(rd: R, max: usize) -> LineReader<R> {
        LineReader {
            rd,
            buf: BytesMut::with_capacity(4096),
            codec: LinesCodec::new_with_max_length(max),
            eof: false,
        }
    }

    /// The next line; `Ok(None)` at the end of the stream (a last line without `\n` counts).
    /// Cancel-safe: bytes read stay buffered for the next call.
    pub async fn next(&mut self) -> io::Result<Option<Line>> {
        loop {
            let decoded = if self.eof {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            match decoded {
                Ok(Some(line)) => return Ok(Some(Line::Text(line))),
                Err(LinesCodecError::MaxLineLengthExceeded) => return Ok(Some(Line::TooLong)),
                // The codec's only own I/O error: a line that is not UTF-8, already consumed.
                Err(LinesCodecError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    return Ok(Some(Line::NotUtf8))
                }
                Err(LinesCodecError::Io(e)) => return Err(e),
                Ok(None) if self.eof => return Ok(None),
                Ok(None) => {}
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }
}

/// Writes `value` as one line, failing with [`io::ErrorKind::TimedOut`] if the other side
/// does not take it within `timeout` (a peer that never reads must not hold us).
pub async fn write_line<W: AsyncWrite + Unpin>(
    wr: &mut W,
    value: &Value,
    timeout: Duration,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_bytes(wr, &bytes, timeout).await
}

/// Writes `line`, its newline included, as [`write_line`] does. One write: a newline sent on
/// its own would wait for the line's acknowledgement.
pub async fn write_bytes<W: AsyncWrite + Unpin>(
    wr: &mut W,
    line: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    match tokio::time::timeout(timeout, wr.write_all(line)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the other side took no data for {timeout:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &'static [u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next().await.unwrap() {
            out.push(match l {
                Line::Text(t) => t,
                Line::TooLong => "<too long>".into(),
                Line::NotUtf8 => "<not utf-8>".into(),
            });
        }
        out
    }

    #[tokio::test]
    async fn long_lines_are_skipped_and_reading_goes_on() {
        assert_eq!(lines(b"a\r\nb\nc", 8).await, ["a", "b", "c"]);
        assert_eq!(
            lines(b"short\nthis line is too long\nok\n", 8).await,
            ["short", "<too long>", "ok"]
        );
        assert_eq!(lines(b"", 8).await, Vec::<String>::new());
        assert_eq!(
            lines(b"\xff\n\xfe\nok", 8).await,
            ["<not utf-8>", "<not utf-8>", "ok"]
        );
    }
}
