//! MCP over stdio, with JSON-RPC errors for malformed input.
//!
//! rmcp's own stdio transport silently drops lines that are not JSON. We
//! answer every line that is not a message as JSON-RPC 2.0 says (`-32700
//! Parse error`, id null; `-32600 Invalid Request` for JSON that is not a
//! request object, with the request's id or null; batches are refused with
//! `-32600`, id null) and keep serving. One reader parses stdin lines into the rmcp service; one
//! writer owns stdout and writes both the service's messages and our error replies, so lines
//! never interleave. On pipes and Unix sockets the two are tasks on the async runtime, reading
//! and writing non-blocking; on anything else, one OS thread each. Logs go to stderr only.
//!
//! May import: rmcp, serde_json, futures, tokio, libc, any rmcp `ServerHandler`.

use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};

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

/// Serves `handler` (the MCP server, or the guard proxy's agent side) on the process's own
/// stdin and stdout until stdin ends.
///
/// When both are pipes or Unix sockets (what MCP clients launch us with: Rust, Python and Go
/// clients use pipes, Node.js socket pairs), they are read and written on the async runtime
/// itself ([`serve_async`]): no thread hop between the streams and the service. Anything else
/// (a terminal, a file, a TCP socket) goes through [`serve`], one blocking OS thread per
/// stream.
///
/// # Errors
/// An I/O error writing stdout, or the service failing to start.
pub async fn serve_process_stdio<H: rmcp::ServerHandler>(handler: H) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some((input, output, modes)) = nonblocking::stdio() {
        tracing::debug!("stdio: pipes or sockets, served on the async runtime");
        let r = serve_async(handler, input, output).await;
        // The mode belongs to the open pipe or socket, which a parent shell or a sibling
        // process may share: leave it as we found it.
        modes.restore();
        return r;
    }
    tracing::debug!("stdio: not pipes or sockets, served by one thread per stream");
    serve(handler, std::io::stdin(), std::io::stdout()).await
}

/// Serves `handler` over a blocking byte stream pair (the process's stdio, a file, a socket)
/// until the input ends.
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
    let (lines, ends) = Lines::new();
    std::thread::Builder::new()
        .name("stdio-reader".into())
        .spawn(move || read_input(input, ends.c2s, ends.raw_tx))?;
    let writer = std::thread::Builder::new()
        .name("stdio-writer".into())
        .spawn(move || write_output(output, ends.s2c, ends.raw_rx))?;
    run(handler, lines).await?;
    match tokio::task::spawn_blocking(move || writer.join()).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(std::io::Error::other("the output writer thread panicked")),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Serves `handler` over an async byte stream pair (non-blocking pipes or sockets) until the
/// input ends: the same line handling and errors as [`serve`], with the reader and the writer
/// as tasks on the runtime.
///
/// # Errors
/// An I/O error writing the output, or the service failing to start.
pub async fn serve_async<H, R, W>(handler: H, input: R, output: W) -> std::io::Result<()>
where
    H: rmcp::ServerHandler,
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (lines, ends) = Lines::new();
    let reader = tokio::spawn(read_input_async(input, ends.c2s, ends.raw_tx));
    let writer = tokio::spawn(write_output_async(output, ends.s2c, ends.raw_rx));
    let served = run(handler, lines).await;
    let written = writer.await;
    reader.abort();
    served?;
    match written {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(format!(
            "the output writer failed: {e}"
        ))),
    }
}

/// Runs the rmcp service on `lines` until the input ends or the service stops.
async fn run<H: rmcp::ServerHandler>(handler: H, lines: Lines) -> std::io::Result<()> {
    let running = handler
        .serve(lines)
        .await
        .map_err(|e| std::io::Error::other(format!("MCP service failed to start: {e}")))?;
    let _ = running.waiting().await;
    Ok(())
}

/// The process's stdin and stdout as non-blocking async streams, when both are pipes or Unix
/// sockets.
#[cfg(unix)]
mod nonblocking {
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::FileTypeExt;

    pub type Input = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
    pub type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

    #[derive(Clone, Copy)]
    enum Kind {
        Fifo,
        Socket,
    }

    /// What `fd` is, when it is a pipe or a Unix socket. Only looks (fstat, getsockname).
    fn kind(fd: &OwnedFd) -> Option<Kind> {
        let t = std::fs::File::from(fd.try_clone().ok()?)
            .metadata()
            .ok()?
            .file_type();
        if t.is_fifo() {
            Some(Kind::Fifo)
        } else if t.is_socket() {
            // A TCP socket (inetd style) stays on the blocking path.
            let s = std::os::unix::net::UnixStream::from(fd.try_clone().ok()?);
            s.local_addr().ok().map(|_| Kind::Socket)
        } else {
            None
        }
    }

    fn socket(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(s).ok()
    }

    /// The file status flags of stdin and stdout before [`stdio`] switched them.
    pub struct Modes {
        flags: [(i32, i32); 2],
    }

    fn flags(fd: i32) -> i32 {
        // SAFETY: F_GETFL reads the flags of fd 0 or 1; a closed fd fails with EBADF (-1).
        unsafe { libc::fcntl(fd, libc::F_GETFL) }
    }

    impl Modes {
        fn now() -> Self {
            Self {
                flags: [(0, flags(0)), (1, flags(1))],
            }
        }

        /// Puts back the flags each stream had (only `O_NONBLOCK` was changed).
        pub fn restore(&self) {
            for &(fd, before) in &self.flags {
                if before >= 0 && flags(fd) != before {
                    // SAFETY: F_SETFL on fd 0 or 1 sets its flags only; a failure (-1) leaves
                    // them as they are.
                    unsafe { libc::fcntl(fd, libc::F_SETFL, before) };
                }
            }
        }
    }

    /// The two streams on the runtime (non-blocking from here on).
    fn open(ki: Kind, i: OwnedFd, ko: Kind, o: OwnedFd) -> Option<(Input, Output)> {
        let input: Input = match ki {
            Kind::Fifo => Box::new(tokio::net::unix::pipe::Receiver::from_owned_fd(i).ok()?),
            Kind::Socket => Box::new(socket(i)?),
        };
        let output: Output = match ko {
            Kind::Fifo => Box::new(tokio::net::unix::pipe::Sender::from_owned_fd(o).ok()?),
            Kind::Socket => Box::new(socket(o)?),
        };
        Some((input, output))
    }

    /// Both streams, switched to non-blocking mode, with their modes before; or `None`, both
    /// left in the mode they had, when one of them is not a pipe or a Unix socket (or cannot be
    /// registered with the runtime). Must run inside the tokio runtime.
    pub fn stdio() -> Option<(Input, Output, Modes)> {
        let i = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let o = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
        let (ki, ko) = (kind(&i)?, kind(&o)?);
        let modes = Modes::now();
        match open(ki, i, ko, o) {
            Some((input, output)) => Some((input, output, modes)),
            None => {
                // The blocking path reads and writes these descriptors next.
                modes.restore();
                None
            }
        }
    }
}

/// The rmcp transport of [`serve`] and [`serve_async`]: messages in from the reader, out to
/// the writer.
///
/// A message is queued for the writer *when rmcp calls `send`*, not when the future it
/// returns first runs. rmcp spawns every send as its own task, and its own transports take
/// a lock inside that task, so two notifications sent one after the other (a tool's
/// progress 1, 2, 3) could reach the wire in another order; here they leave in the order
/// they were sent. The queue is unbounded like rmcp's own spawned sends; the writer
/// drains it as fast as the peer reads.
struct Lines {
    out: futures::channel::mpsc::UnboundedSender<ServerJsonRpcMessage>,
    inp: futures::channel::mpsc::Receiver<ClientJsonRpcMessage>,
}

/// The reader's and the writer's ends of a [`Lines`] transport.
struct Ends {
    /// Messages from the reader to the service.
    c2s: futures::channel::mpsc::Sender<ClientJsonRpcMessage>,
    /// Error replies from the reader to the writer.
    raw_tx: futures::channel::mpsc::UnboundedSender<String>,
    /// Messages from the service to the writer.
    s2c: futures::channel::mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
    raw_rx: futures::channel::mpsc::UnboundedReceiver<String>,
}

impl Lines {
    fn new() -> (Self, Ends) {
        use futures::channel::mpsc as fmpsc;
        let (c2s, inp) = fmpsc::channel::<ClientJsonRpcMessage>(1024);
        let (out, s2c) = fmpsc::unbounded::<ServerJsonRpcMessage>();
        let (raw_tx, raw_rx) = fmpsc::unbounded::<String>();
        (
            Self { out, inp },
            Ends {
                c2s,
                raw_tx,
                s2c,
                raw_rx,
            },
        )
    }
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

/// Input bytes to lines of at most [`MAX_LINE_BYTES`], without I/O: the blocking and the async
/// reader feed it what they read.
#[derive(Default)]
struct LineBuf {
    buf: Vec<u8>,
    too_long: bool,
}

/// What ended in the input.
enum ReadOutcome {
    /// A line (in [`LineBuf::buf`], without its `\n`).
    Line,
    /// A line longer than [`MAX_LINE_BYTES`], discarded.
    TooLong,
    /// The end of the input, after the last line.
    Eof,
}

impl LineBuf {
    /// Takes bytes from `avail` up to and including the first `\n`: returns how many it took
    /// and, when a line ended there, the outcome.
    fn feed(&mut self, avail: &[u8]) -> (usize, Option<ReadOutcome>) {
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if !self.too_long {
            if self.buf.len() + take > MAX_LINE_BYTES {
                self.too_long = true;
                self.buf.clear();
            } else {
                self.buf
                    .extend_from_slice(avail.get(..take).unwrap_or(avail));
            }
        }
        if done {
            (take + 1, Some(self.end()))
        } else {
            (take, None)
        }
    }

    /// The input ended: the last line if it had no `\n`, then [`ReadOutcome::Eof`].
    fn eof(&mut self) -> ReadOutcome {
        if self.buf.is_empty() && !self.too_long {
            ReadOutcome::Eof
        } else {
            self.end()
        }
    }

    fn end(&mut self) -> ReadOutcome {
        if std::mem::take(&mut self.too_long) {
            ReadOutcome::TooLong
        } else {
            ReadOutcome::Line
        }
    }

    /// The message of a finished line or line error, with error replies sent to `raw`; clears
    /// the line.
    fn route(
        &mut self,
        o: &ReadOutcome,
        raw: &futures::channel::mpsc::UnboundedSender<String>,
    ) -> Option<ClientJsonRpcMessage> {
        let parsed = match o {
            ReadOutcome::Eof => Parsed::Ignore,
            ReadOutcome::TooLong => Parsed::Reply(error_line(
                serde_json::Value::Null,
                -32600,
                format!(
                    "Invalid Request: message longer than {MAX_LINE_BYTES} bytes was discarded"
                ),
            )),
            ReadOutcome::Line => parse_line(&self.buf),
        };
        self.buf.clear();
        match parsed {
            Parsed::Message(m) => Some(*m),
            Parsed::Reply(s) => {
                let _ = raw.unbounded_send(s);
                None
            }
            Parsed::Ignore => None,
        }
    }
}

/// Reader thread of [`serve`]: [`read_input_async`] over the blocking stream, on this thread.
fn read_input(
    input: impl std::io::Read,
    c2s: futures::channel::mpsc::Sender<ClientJsonRpcMessage>,
    raw: futures::channel::mpsc::UnboundedSender<String>,
) {
    use tokio_util::compat::FuturesAsyncReadCompatExt;
    let input = futures::io::AllowStdIo::new(input).compat();
    futures::executor::block_on(read_input_async(input, c2s, raw));
}

/// Reader of [`serve_async`] (a task) and of [`serve`] (a thread): lines to messages, or to
/// error replies.
async fn read_input_async(
    input: impl tokio::io::AsyncRead + Unpin,
    mut c2s: futures::channel::mpsc::Sender<ClientJsonRpcMessage>,
    raw: futures::channel::mpsc::UnboundedSender<String>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut r = tokio::io::BufReader::with_capacity(64 * 1024, input);
    let mut lines = LineBuf::default();
    loop {
        let avail = match r.fill_buf().await {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("stdin read failed: {e}");
                break;
            }
        };
        let (n, ended) = match avail.is_empty() {
            true => (0, Some(lines.eof())),
            false => lines.feed(avail),
        };
        r.consume(n);
        match ended {
            None => {}
            Some(ReadOutcome::Eof) => break,
            Some(o) => {
                if let Some(m) = lines.route(&o, &raw)
                    && c2s.send(m).await.is_err()
                {
                    break;
                }
            }
        }
    }
}

/// What the writer got next (lives on its stack for one iteration).
#[allow(clippy::large_enum_variant)]
enum Next {
    Msg(ServerJsonRpcMessage),
    Raw(String),
    /// The reader is done (no more error replies); replies from the service go on.
    RawClosed,
    /// The service ended.
    Done,
}

/// Waits for the next outgoing message or error reply and appends it, and whatever else is
/// ready, to `out` (one JSON line each). Returns `false` when the service has ended (`out`
/// then holds the error replies still queued, if any).
async fn next_batch(
    s2c: &mut futures::channel::mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
    raw: &mut futures::channel::mpsc::UnboundedReceiver<String>,
    out: &mut Vec<u8>,
) -> bool {
    use futures::stream::FusedStream;
    let put_msg = |out: &mut Vec<u8>, m: &ServerJsonRpcMessage| {
        if serde_json::to_writer(&mut *out, m).is_ok() {
            out.push(b'\n');
        }
    };
    let put_raw = |out: &mut Vec<u8>, r: &str| {
        out.extend_from_slice(r.as_bytes());
        out.push(b'\n');
    };
    loop {
        // Decide by the streams' own termination state: a stream can end inside `try_recv`
        // below, and a `select!` over two ended streams has nothing left to wait for.
        let next = if s2c.is_terminated() {
            Next::Done
        } else if raw.is_terminated() {
            s2c.next().await.map_or(Next::Done, Next::Msg)
        } else {
            futures::select! {
                m = s2c.next() => m.map_or(Next::Done, Next::Msg),
                r = raw.next() => r.map_or(Next::RawClosed, Next::Raw),
            }
        };
        match next {
            Next::Msg(m) => put_msg(out, &m),
            Next::Raw(r) => put_raw(out, &r),
            Next::RawClosed => continue,
            Next::Done => {
                while let Ok(r) = raw.try_recv() {
                    put_raw(out, &r);
                }
                return false;
            }
        }
        // Everything else that is ready goes out with it, before one flush.
        while let Ok(m) = s2c.try_recv() {
            put_msg(out, &m);
        }
        while let Ok(r) = raw.try_recv() {
            put_raw(out, &r);
        }
        return true;
    }
}

/// Writer thread of [`serve`]: [`write_output_async`] over the blocking stream, on this thread.
fn write_output(
    output: impl std::io::Write,
    s2c: futures::channel::mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
    raw: futures::channel::mpsc::UnboundedReceiver<String>,
) -> std::io::Result<()> {
    use tokio_util::compat::FuturesAsyncWriteCompatExt;
    let output = futures::io::AllowStdIo::new(output).compat_write();
    futures::executor::block_on(write_output_async(output, s2c, raw))
}

/// Writer of [`serve_async`] (a task) and of [`serve`] (a thread): writes what is ready, then
/// flushes once.
async fn write_output_async(
    mut output: impl tokio::io::AsyncWrite + Unpin,
    mut s2c: futures::channel::mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
    mut raw: futures::channel::mpsc::UnboundedReceiver<String>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        out.clear();
        let more = next_batch(&mut s2c, &mut raw, &mut out).await;
        output.write_all(&out).await?;
        output.flush().await?;
        if !more {
            return Ok(());
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

    /// Feeds `chunks` to a [`LineBuf`] as a reader would (each chunk until it is used up, then
    /// end of input) and returns what ended, lines as text.
    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lb = LineBuf::default();
        let mut got = Vec::new();
        let mut take = |lb: &mut LineBuf, o: ReadOutcome| match o {
            ReadOutcome::Line => {
                got.push(String::from_utf8_lossy(&lb.buf).into_owned());
                lb.buf.clear();
            }
            ReadOutcome::TooLong => {
                got.push("<too long>".into());
                lb.buf.clear();
            }
            ReadOutcome::Eof => got.push("<eof>".into()),
        };
        for c in chunks {
            let mut rest = *c;
            while !rest.is_empty() {
                let (n, o) = lb.feed(rest);
                assert!(n > 0 && n <= rest.len());
                rest = &rest[n..];
                if let Some(o) = o {
                    take(&mut lb, o);
                }
            }
        }
        loop {
            let o = lb.eof();
            let end = matches!(o, ReadOutcome::Eof);
            take(&mut lb, o);
            if end {
                return got;
            }
        }
    }

    #[test]
    fn lines_split_across_reads_and_the_last_line_without_newline() {
        assert_eq!(
            split(&[b"ab", b"c\nde\n\nf", b"g"]),
            ["abc", "de", "", "fg", "<eof>"]
        );
        assert_eq!(split(&[b"x\n"]), ["x", "<eof>"]);
        assert_eq!(split(&[]), ["<eof>"]);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_still_reads() {
        let big = vec![b'a'; MAX_LINE_BYTES / 2 + 1];
        let got = split(&[&big, &big, b"tail\nnext\n"]);
        assert_eq!(got, ["<too long>", "next", "<eof>"]);
        // A line of exactly the limit is kept; at end of input an overlong line is reported.
        let exact = vec![b'b'; MAX_LINE_BYTES];
        assert_eq!(split(&[&exact, b"\n"])[0].len(), MAX_LINE_BYTES);
        assert_eq!(split(&[&big, &big]), ["<too long>", "<eof>"]);
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert!(matches!(parse_line(b"  \r"), Parsed::Ignore));
    }
}
