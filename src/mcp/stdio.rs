//! MCP over stdio, with JSON-RPC errors for malformed input.
//!
//! rmcp's own stdio transport silently drops lines that are not JSON. We
//! answer them as JSON-RPC 2.0 says (`-32700 Parse error`, id null; `-32600
//! Invalid Request` when the JSON has an id but is not a message) and keep
//! serving. One reader task parses stdin lines into the rmcp service; one
//! writer task owns stdout and writes both the service's messages and our
//! error replies, so lines never interleave. Logs go to stderr only.

use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

use super::IncidentMcp;

/// Longest accepted line (one JSON-RPC message), in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

fn error_line(id: serde_json::Value, code: i64, message: String) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
}

/// What to do with one input line.
enum Parsed {
    Message(Box<ClientJsonRpcMessage>),
    Reply(String),
    Ignore,
}

fn parse_line(line: &[u8]) -> Parsed {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Parsed::Ignore;
    }
    match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(m) => Parsed::Message(Box::new(m)),
        Err(e) => match serde_json::from_slice::<serde_json::Value>(line) {
            Err(e2) => Parsed::Reply(error_line(
                serde_json::Value::Null,
                -32700,
                format!(
                    "Parse error: {e2}. Each line must be one JSON-RPC 2.0 message encoded as UTF-8 JSON."
                ),
            )),
            Ok(v) => match v.get("id") {
                // A notification we cannot read: JSON-RPC forbids replying.
                None => {
                    tracing::debug!("ignoring unreadable notification: {e}");
                    Parsed::Ignore
                }
                Some(id) => Parsed::Reply(error_line(
                    id.clone(),
                    -32600,
                    format!(
                        "Invalid Request: {e}. Expected a JSON-RPC 2.0 request with jsonrpc, id and method."
                    ),
                )),
            },
        },
    }
}

/// Serves `handler` over the given byte streams until the input ends.
///
/// # Errors
/// An I/O error from the streams, or the service failing to start.
pub async fn serve<R, W>(handler: IncidentMcp, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (mut c2s_tx, c2s_rx) = futures::channel::mpsc::channel::<ClientJsonRpcMessage>(1024);
    let (s2c_tx, mut s2c_rx) = futures::channel::mpsc::channel::<ServerJsonRpcMessage>(1024);
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<String>();

    let reader = tokio::spawn(async move {
        let mut r = BufReader::with_capacity(64 * 1024, input);
        let mut buf = Vec::with_capacity(8 * 1024);
        loop {
            buf.clear();
            let n = match read_line_capped(&mut r, &mut buf).await {
                Ok(ReadOutcome::Eof) => break,
                Ok(ReadOutcome::TooLong) => {
                    let _ = raw_tx.send(error_line(
                        serde_json::Value::Null,
                        -32600,
                        format!("Invalid Request: message longer than {MAX_LINE_BYTES} bytes was discarded"),
                    ));
                    continue;
                }
                Ok(ReadOutcome::Line(n)) => n,
                Err(e) => {
                    tracing::error!("stdin read failed: {e}");
                    break;
                }
            };
            let line = buf.get(..n).unwrap_or(&buf);
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            match parse_line(line) {
                Parsed::Message(m) => {
                    if c2s_tx.send(*m).await.is_err() {
                        break;
                    }
                }
                Parsed::Reply(s) => {
                    let _ = raw_tx.send(s);
                }
                Parsed::Ignore => {}
            }
        }
    });

    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 * 1024, output);
        let mut raw_open = true;
        loop {
            let first = tokio::select! {
                m = s2c_rx.next() => match m {
                    Some(m) => serde_json::to_string(&m).ok(),
                    None => break,
                },
                r = raw_rx.recv(), if raw_open => match r {
                    Some(r) => Some(r),
                    None => { raw_open = false; None }
                },
            };
            if let Some(line) = first {
                w.write_all(line.as_bytes()).await?;
                w.write_all(b"\n").await?;
            }
            // Write whatever else is ready before one flush.
            while let Ok(m) = s2c_rx.try_recv() {
                if let Ok(line) = serde_json::to_string(&m) {
                    w.write_all(line.as_bytes()).await?;
                    w.write_all(b"\n").await?;
                }
            }
            while let Ok(r) = raw_rx.try_recv() {
                w.write_all(r.as_bytes()).await?;
                w.write_all(b"\n").await?;
            }
            w.flush().await?;
        }
        while let Ok(r) = raw_rx.try_recv() {
            w.write_all(r.as_bytes()).await?;
            w.write_all(b"\n").await?;
        }
        w.flush().await?;
        Ok::<(), std::io::Error>(())
    });

    let running = handler
        .serve((s2c_tx, c2s_rx))
        .await
        .map_err(|e| std::io::Error::other(format!("MCP service failed to start: {e}")))?;
    let _ = running.waiting().await;
    reader.abort();
    match writer.await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}

enum ReadOutcome {
    Line(usize),
    TooLong,
    Eof,
}

async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<ReadOutcome> {
    let mut too_long = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                ReadOutcome::Eof
            } else if too_long {
                ReadOutcome::TooLong
            } else {
                ReadOutcome::Line(buf.len())
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(avail.get(..take).unwrap_or(avail));
            }
        }
        r.consume(take);
        if done {
            return Ok(if too_long {
                ReadOutcome::TooLong
            } else {
                ReadOutcome::Line(buf.len())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_gets_parse_error_with_null_id() {
        match parse_line(b"{not json") {
            Parsed::Reply(s) => {
                let v: serde_json::Value = serde_json::from_str(&s).unwrap();
                assert_eq!(v["error"]["code"], -32700);
                assert!(v["id"].is_null());
            }
            _ => panic!("expected a reply"),
        }
        assert!(matches!(parse_line(b"\xff\xfe\x00"), Parsed::Reply(_)));
    }

    #[test]
    fn json_with_id_but_not_a_message_is_invalid_request() {
        match parse_line(br#"{"jsonrpc":"2.0","id":7,"params":3}"#) {
            Parsed::Reply(s) => {
                let v: serde_json::Value = serde_json::from_str(&s).unwrap();
                assert_eq!(v["error"]["code"], -32600);
                assert_eq!(v["id"], 7);
            }
            _ => panic!("expected a reply"),
        }
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert!(matches!(parse_line(b"  \r"), Parsed::Ignore));
    }
}
