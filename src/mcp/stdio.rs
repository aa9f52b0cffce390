//! MCP over stdio, with JSON-RPC errors for malformed input.
//!
//! rmcp's own stdio transport silently drops lines that are not JSON. We
//! answer every line that is not a message as JSON-RPC 2.0 says (`-32700
//! Parse error`, id null; `-32600 Invalid Request` for JSON that is not a
//! request object, with the request's id or null; batches are refused with
//! `-32600`, id null) and keep serving. One reader thread parses stdin lines into the rmcp service; one
//! writer thread owns stdout and writes both the service's messages and our
//! error replies, so lines never interleave. Logs go to stderr only.
//!
//! May import: rmcp, serde_json, futures, the MCP handler (any rmcp `ServerHandler` for [`serve`]).

use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};

use super::IncidentMcp;

/// Longest accepted line (one JSON-RPC message), in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// One JSON-RPC error response line (no newline).
pub fn error_line(id: serde_json::Value, code: i64, message: String) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
}

/// What to do with one input line.
pub enum Parsed {
    /// A JSON-RPC message for the service.
    Message(Box<ClientJsonRpcMessage>),
    /// An error reply (one JSON line, no newline) to write back instead.
    Reply(String),
    /// Nothing to do: a blank line, or a notification we cannot read (JSON-RPC forbids
    /// replying to notifications).
    Ignore,
}

/// Classifies one input line (without its `\n`): a message, an error reply, or nothing.
///
/// Every line that is not blank and not a readable notification gets an answer: invalid JSON
/// `-32700`; JSON that is not a JSON-RPC message (`42`, `"str"`, `null`, `{}`, `[]`) `-32600`
/// with `id: null`; a batch array `-32600` saying batches are not supported; an object with an
/// `id` that is not a valid request `-32600` with that id (or null when the id itself is invalid).
pub fn parse_line(line: &[u8]) -> Parsed {
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
            Ok(v) => match not_a_message(&v, &e) {
                Some((id, message)) => Parsed::Reply(error_line(id, -32600, message)),
                None => {
                    tracing::debug!("ignoring unreadable notification: {e}");
                    Parsed::Ignore
                }
            },
        },
    }
}

/// For JSON `v` that did not deserialize as a client message (`e`): the id and message of the
/// `-32600 Invalid Request` reply, or `None` for a notification (an object with a string
/// `method` and no `id`), which gets no reply.
pub fn not_a_message(
    v: &serde_json::Value,
    e: &dyn std::fmt::Display,
) -> Option<(serde_json::Value, String)> {
    use serde_json::Value;
    let expected = "Expected one JSON-RPC 2.0 request or notification object with \"jsonrpc\": \"2.0\", \"method\" and (for a request) \"id\"";
    match v {
        Value::Array(items) if items.is_empty() => Some((
            Value::Null,
            format!("Invalid Request: an empty array is not a message. {expected}."),
        )),
        Value::Array(items) => Some((
            Value::Null,
            format!(
                "Invalid Request: JSON-RPC batches are not supported (MCP removed batching in 2025-06-18); \
                 send the {} messages of this batch one per line",
                items.len()
            ),
        )),
        Value::Object(o) => match o.get("id") {
            None if o.get("method").is_some_and(Value::is_string) => None,
            None => Some((Value::Null, format!("Invalid Request: {e}. {expected}."))),
            Some(id) => {
                let id = match id {
                    Value::String(_) | Value::Number(_) => id.clone(),
                    _ => Value::Null,
                };
                Some((id, format!("Invalid Request: {e}. {expected}.")))
            }
        },
        other => {
            let kind = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "a string",
            };
            Some((
                Value::Null,
                format!("Invalid Request: the line is {kind}, not a message. {expected}."),
            ))
        }
    }
}

/// Serves `handler` on the process's own stdin and stdout until stdin ends.
///
/// # Errors
/// An I/O error writing stdout, or the service failing to start.
pub async fn serve_process_stdio(handler: IncidentMcp) -> std::io::Result<()> {
    serve(handler, std::io::stdin(), std::io::stdout()).await
}

/// Serves `handler` (the MCP server, or the guard proxy's agent side) over a byte stream
/// pair (the process's stdio, a socket, a pipe) until the input ends.
///
/// The two streams are driven by one OS thread each (blocking reads and writes, lines
/// parsed on the reader thread) rather than by tokio's stdio, which hands every read and
/// write to the blocking pool.
///
/// # Errors
/// An I/O error writing the output, or the service failing to start.
pub async fn serve<H, R, W>(handler: H, input: R, output: W) -> std::io::Result<()>
where
    H: rmcp::ServerHandler,
    R: std::io::Read + Send + 'static,
    W: std::io::Write + Send + 'static,
{
    use futures::channel::mpsc as fmpsc;
    let (c2s_tx, c2s_rx) = fmpsc::channel::<ClientJsonRpcMessage>(1024);
    let (s2c_tx, s2c_rx) = fmpsc::unbounded::<ServerJsonRpcMessage>();
    let (raw_tx, raw_rx) = fmpsc::unbounded::<String>();

    std::thread::Builder::new()
        .name("stdio-reader".into())
        .spawn(move || read_input(input, c2s_tx, raw_tx))?;
    let writer = std::thread::Builder::new()
        .name("stdio-writer".into())
        .spawn(move || write_output(output, s2c_rx, raw_rx))?;

    let running = handler
        .serve(Lines {
            out: s2c_tx,
            inp: c2s_rx,
        })
        .await
        .map_err(|e| std::io::Error::other(format!("MCP service failed to start: {e}")))?;
    let _ = running.waiting().await;
    match tokio::task::spawn_blocking(move || writer.join()).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(std::io::Error::other("the output writer thread panicked")),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// The rmcp transport of [`serve`]: messages in from the reader thread, out to the writer
/// thread.
///
/// A message is queued for the writer *when rmcp calls `send`*, not when the future it
/// returns first runs. rmcp spawns every send as its own task, and its own transports take
/// a lock inside that task, so two notifications sent one after the other (a tool's
/// progress 1, 2, 3) could reach the wire in another order; here they leave in the order
/// they were sent. The queue is unbounded like rmcp's own spawned sends; the writer thread
/// drains it as fast as the peer reads.
struct Lines {
    out: futures::channel::mpsc::UnboundedSender<ServerJsonRpcMessage>,
    inp: futures::channel::mpsc::Receiver<ClientJsonRpcMessage>,
}

impl rmcp::transport::Transport<rmcp::RoleServer> for Lines {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let r = self.out.unbounded_send(item).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the output writer has stopped",
            )
        });
        std::future::ready(r)
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        self.inp.next().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.out.close_channel();
        Ok(())
    }
}

/// Reader thread of [`serve`]: lines to messages (or to error replies).
fn read_input(
    input: impl std::io::Read,
    mut c2s: futures::channel::mpsc::Sender<ClientJsonRpcMessage>,
    raw: futures::channel::mpsc::UnboundedSender<String>,
) {
    let mut r = std::io::BufReader::with_capacity(64 * 1024, input);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        buf.clear();
        let n = match read_line_capped(&mut r, &mut buf) {
            Ok(ReadOutcome::Eof) => break,
            Ok(ReadOutcome::TooLong) => {
                let _ = raw.unbounded_send(error_line(
                    serde_json::Value::Null,
                    -32600,
                    format!(
                        "Invalid Request: message longer than {MAX_LINE_BYTES} bytes was discarded"
                    ),
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
                if futures::executor::block_on(c2s.send(*m)).is_err() {
                    break;
                }
            }
            Parsed::Reply(s) => {
                let _ = raw.unbounded_send(s);
            }
            Parsed::Ignore => {}
        }
    }
}

/// What the writer thread got next (lives on its stack for one iteration).
#[allow(clippy::large_enum_variant)]
enum Next {
    Msg(ServerJsonRpcMessage),
    Raw(String),
    /// The reader is done (no more error replies); replies from the service go on.
    RawClosed,
    /// The service ended.
    Done,
}

/// Writer thread of [`serve`]: writes what is ready, then flushes once.
fn write_output(
    output: impl std::io::Write,
    mut s2c: futures::channel::mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
    mut raw: futures::channel::mpsc::UnboundedReceiver<String>,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, output);
    let mut buf = Vec::with_capacity(4096);
    let mut put_msg = |w: &mut std::io::BufWriter<_>, m: &ServerJsonRpcMessage| {
        buf.clear();
        if serde_json::to_writer(&mut buf, m).is_ok() {
            buf.push(b'\n');
            w.write_all(&buf)?;
        }
        Ok::<(), std::io::Error>(())
    };
    let put_raw = |w: &mut std::io::BufWriter<_>, r: &str| {
        w.write_all(r.as_bytes())?;
        w.write_all(b"\n")
    };
    loop {
        // Decide by the streams' own termination state: a stream can end inside `try_recv`
        // below, and a `select!` over two ended streams has nothing left to wait for.
        let next = futures::executor::block_on(async {
            use futures::stream::FusedStream;
            if s2c.is_terminated() {
                Next::Done
            } else if raw.is_terminated() {
                s2c.next().await.map_or(Next::Done, Next::Msg)
            } else {
                futures::select! {
                    m = s2c.next() => m.map_or(Next::Done, Next::Msg),
                    r = raw.next() => r.map_or(Next::RawClosed, Next::Raw),
                }
            }
        });
        match next {
            Next::Msg(m) => put_msg(&mut w, &m)?,
            Next::Raw(r) => put_raw(&mut w, &r)?,
            Next::RawClosed => continue,
            Next::Done => break,
        }
        // Write whatever else is ready before one flush.
        while let Ok(m) = s2c.try_recv() {
            put_msg(&mut w, &m)?;
        }
        while let Ok(r) = raw.try_recv() {
            put_raw(&mut w, &r)?;
        }
        w.flush()?;
    }
    while let Ok(r) = raw.try_recv() {
        put_raw(&mut w, &r)?;
    }
    w.flush()
}

fn read_line_capped(
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
) -> std::io::Result<ReadOutcome> {
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
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

enum ReadOutcome {
    Line(usize),
    TooLong,
    Eof,
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

    fn reply(line: &[u8]) -> serde_json::Value {
        match parse_line(line) {
            Parsed::Reply(s) => serde_json::from_str(&s).unwrap(),
            _ => panic!("expected a reply to {}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn json_that_is_not_a_message_gets_invalid_request_with_null_id() {
        for line in [
            &b"42"[..],
            b"[]",
            b"{}",
            b"\"str\"",
            b"null",
            b"true",
            br#"{"foo":1}"#,
            br#"{"jsonrpc":"2.0","id":{"x":1},"method":7}"#,
        ] {
            let v = reply(line);
            assert_eq!(v["error"]["code"], -32600, "{v}");
            assert!(v["id"].is_null(), "{v}");
            assert_eq!(v["jsonrpc"], "2.0");
        }
    }

    #[test]
    fn batches_get_one_clear_error() {
        let v = reply(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},[1,2]]"#);
        assert_eq!(v["error"]["code"], -32600);
        assert!(v["id"].is_null());
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("batches are not supported"), "{msg}");
        assert!(msg.contains("one per line"), "{msg}");
    }

    #[test]
    fn unreadable_notifications_get_no_reply() {
        assert!(matches!(
            parse_line(br#"{"jsonrpc":"2.0","method":"notifications/x","params":5}"#),
            Parsed::Ignore | Parsed::Message(_)
        ));
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert!(matches!(parse_line(b"  \r"), Parsed::Ignore));
    }
}
