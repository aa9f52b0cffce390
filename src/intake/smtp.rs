//! The SMTP server state machine (RFC 5321 subset): greeting, EHLO/HELO, MAIL FROM (with the
//! SIZE extension), RCPT TO against the allowed recipients, DATA with dot-unstuffing and a size
//! cap, RSET, NOOP, VRFY, HELP, QUIT. No I/O here: [`Session::line`] takes one received line and
//! says what to answer, so every reply code is unit-tested without a socket.
//!
//! May import: std.

/// Longest command line accepted (RFC 5321 §4.5.3.1.4 says 512; we allow more for long
/// addresses), without its CRLF.
pub const MAX_COMMAND_LINE: usize = 2048;

/// Most recipients in one transaction.
const MAX_RECIPIENTS: usize = 100;

/// Protocol errors after which the session is closed.
const MAX_ERRORS: u32 = 10;

/// What to do after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this reply (one or more CRLF-terminated lines).
    Reply(String),
    /// Send this reply and close the connection.
    Close(String),
    /// Nothing to send (a DATA line was stored).
    Continue,
    /// The message is complete: hand it on, then send the reply for its outcome.
    Message(Envelope),
}

/// A received message with its envelope.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    /// `MAIL FROM` address (empty for a bounce, `<>`).
    pub sender: String,
    /// Accepted `RCPT TO` addresses.
    pub recipients: Vec<String>,
    /// The message (headers and body), dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Fresh,
    Greeted,
    Mail,
    Data,
}

/// One SMTP session.
#[derive(Debug)]
pub struct Session {
    hostname: String,
    allowed: Vec<String>,
    max_size: usize,
    state: State,
    sender: String,
    recipients: Vec<String>,
    data: Vec<u8>,
    oversize: bool,
    errors: u32,
}

impl Session {
    /// A session for `hostname` accepting mail to `allowed` (case-insensitive), up to
    /// `max_size` bytes.
    pub fn new(hostname: &str, allowed: &[String], max_size: usize) -> Self {
        Self {
            hostname: hostname.to_string(),
            allowed: allowed
                .iter()
                .map(|a| a.trim().to_ascii_lowercase())
                .collect(),
            max_size,
            state: State::Fresh,
            sender: String::new(),
            recipients: Vec::new(),
            data: Vec::new(),
            oversize: false,
            errors: 0,
        }
    }

    /// The greeting sent on connect.
    pub fn greeting(&self) -> String {
        format!(
            "220 {} ESMTP ai-incident-mcp incident intake\r\n",
            self.hostname
        )
    }

    /// True while the message text is being received (lines are data, not commands).
    pub fn in_data(&self) -> bool {
        self.state == State::Data
    }

    fn reset(&mut self) {
        self.sender.clear();
        self.recipients.clear();
        self.data.clear();
        self.oversize = false;
        if self.state != State::Fresh {
            self.state = State::Greeted;
        }
    }

    fn error(&mut self, reply: &str) -> Step {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            return Step::Close(format!(
                "421 4.7.0 {} too many errors, closing the connection\r\n",
                self.hostname
            ));
        }
        Step::Reply(format!("{reply}\r\n"))
    }

    /// A command line that was longer than [`MAX_COMMAND_LINE`].
    pub fn line_too_long(&mut self) -> Step {
        self.error("500 5.5.2 line too long; commands are at most 2048 characters")
    }

    /// Handles one received line (without its line end). In DATA, `line` is message text.
    pub fn line(&mut self, line: &[u8]) -> Step {
        if self.state == State::Data {
            return self.data_line(line);
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return self.error("500 5.5.2 command is not valid UTF-8");
        };
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.trim().to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if arg.is_empty() {
                    return self.error("501 5.5.4 say who you are: EHLO <your host name>");
                }
                self.reset();
                self.state = State::Greeted;
                if verb == "HELO" {
                    return Step::Reply(format!("250 {}\r\n", self.hostname));
                }
                Step::Reply(format!(
                    "250-{} greets {}\r\n250-SIZE {}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
                    self.hostname,
                    arg.chars().take(64).collect::<String>(),
                    self.max_size
                ))
            }
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => {
                if !arg.is_empty() {
                    return self.error("501 5.5.4 DATA takes no argument");
                }
                match self.state {
                    State::Mail if !self.recipients.is_empty() => {
                        self.state = State::Data;
                        Step::Reply("354 start mail input; end with <CRLF>.<CRLF>\r\n".into())
                    }
                    State::Mail => self.error("554 5.5.1 no valid recipients; send RCPT TO first"),
                    _ => self.error("503 5.5.1 send MAIL FROM and RCPT TO before DATA"),
                }
            }
            "RSET" => {
                self.reset();
                Step::Reply("250 2.0.0 reset\r\n".into())
            }
            "NOOP" => Step::Reply("250 2.0.0 OK\r\n".into()),
            "VRFY" => Step::Reply(
                "252 2.5.2 cannot verify the user; send the mail and the server will say\r\n"
                    .into(),
            ),
            "HELP" => Step::Reply(
                "214 2.0.0 send a report: EHLO, MAIL FROM:<you>, RCPT TO:<incident address>, DATA\r\n"
                    .into(),
            ),
            "QUIT" => Step::Close(format!("221 2.0.0 {} closing\r\n", self.hostname)),
            "STARTTLS" => self.error("502 5.5.1 STARTTLS is not offered; use a local relay for TLS"),
            _ => self.error("500 5.5.2 unknown command; use EHLO, MAIL, RCPT, DATA, RSET, NOOP or QUIT"),
        }
    }

    fn mail(&mut self, arg: &str) -> Step {
        match self.state {
            State::Fresh => return self.error("503 5.5.1 say EHLO first"),
            State::Mail => return self.error("503 5.5.1 nested MAIL; send RSET first"),
            _ => {}
        }
        let Some(rest) = strip_prefix_ci(arg, "FROM:") else {
            return self.error("501 5.5.4 syntax: MAIL FROM:<address>");
        };
        let Some((addr, params)) = path(rest) else {
            return self.error("501 5.1.7 the sender address must be in angle brackets: MAIL FROM:<you@example.com>");
        };
        for p in params.split_ascii_whitespace() {
            if let Some(v) = strip_prefix_ci(p, "SIZE=") {
                match v.parse::<u64>() {
                    Ok(n) if n > self.max_size as u64 => {
                        return self.error(&format!(
                            "552 5.3.4 the message is {n} bytes; this server accepts at most {}",
                            self.max_size
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => return self.error("501 5.5.4 SIZE= needs a number of bytes"),
                }
            }
        }
        self.sender = addr.to_string();
        self.state = State::Mail;
        Step::Reply("250 2.1.0 sender OK\r\n".into())
    }

    fn rcpt(&mut self, arg: &str) -> Step {
        if self.state != State::Mail {
            return self.error("503 5.5.1 send MAIL FROM first");
        }
        let Some(rest) = strip_prefix_ci(arg, "TO:") else {
            return self.error("501 5.5.4 syntax: RCPT TO:<address>");
        };
        let Some((addr, _)) = path(rest) else {
            return self.error("501 5.1.3 the recipient address must be in angle brackets");
        };
        if self.recipients.len() >= MAX_RECIPIENTS {
            return Step::Reply("452 4.5.3 too many recipients\r\n".into());
        }
        let a = addr.to_ascii_lowercase();
        if !self.allowed.contains(&a) {
            return self.error(&format!(
                "550 5.1.1 <{}> does not take incident reports here",
                addr.chars().take(254).collect::<String>()
            ));
        }
        self.recipients.push(a);
        Step::Reply("250 2.1.5 recipient OK\r\n".into())
    }

    fn data_line(&mut self, line: &[u8]) -> Step {
        if line == b"." {
            let too_big = self.oversize;
            let env = Envelope {
                sender: std::mem::take(&mut self.sender),
                recipients: std::mem::take(&mut self.recipients),
                data: std::mem::take(&mut self.data),
            };
            self.reset();
            if too_big {
                return Step::Reply(format!(
                    "552 5.3.4 the message is larger than {} bytes; nothing was filed\r\n",
                    self.max_size
                ));
            }
            return Step::Message(env);
        }
        if self.oversize {
            return Step::Continue;
        }
        // Dot-unstuffing (RFC 5321 §4.5.2): a leading period on a longer line is removed.
        let line = line.strip_prefix(b".").unwrap_or(line);
        if self.data.len() + line.len() + 2 > self.max_size {
            self.oversize = true;
            self.data = Vec::new();
            return Step::Continue;
        }
        self.data.extend_from_slice(line);
        self.data.extend_from_slice(b"\r\n");
        Step::Continue
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// `<addr> params` → (addr, params); the address may be empty (`<>`).
fn path(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('<')?;
    let end = s.find('>')?;
    let addr = s.get(..end)?;
    if addr.contains(['<', ' ', '\t']) || addr.len() > 254 {
        return None;
    }
    Some((addr, s.get(end + 1..).unwrap_or("").trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new("mx.test", &["Incidents@Example.com".to_string()], 1000)
    }

    fn code(step: &Step) -> &str {
        match step {
            Step::Reply(r) | Step::Close(r) => r.get(..3).unwrap_or(""),
            Step::Continue => "---",
            Step::Message(_) => "MSG",
        }
    }

    #[test]
    fn a_whole_transaction_yields_the_message() {
        let mut s = session();
        assert!(s.greeting().starts_with("220 mx.test"));
        let ehlo = s.line(b"EHLO client.test");
        assert!(
            matches!(&ehlo, Step::Reply(r) if r.contains("250-SIZE 1000")),
            "{ehlo:?}"
        );
        assert_eq!(
            code(&s.line(b"MAIL FROM:<bob@example.com> SIZE=100")),
            "250"
        );
        assert_eq!(code(&s.line(b"RCPT TO:<incidents@example.com>")), "250");
        assert_eq!(code(&s.line(b"DATA")), "354");
        assert_eq!(s.line(b"Subject: hi"), Step::Continue);
        assert_eq!(s.line(b""), Step::Continue);
        assert_eq!(s.line(b"..leading dot"), Step::Continue);
        match s.line(b".") {
            Step::Message(e) => {
                assert_eq!(e.sender, "bob@example.com");
                assert_eq!(e.recipients, vec!["incidents@example.com"]);
                assert_eq!(e.data, b"Subject: hi\r\n\r\n.leading dot\r\n");
            }
            other => panic!("{other:?}"),
        }
        // The session is ready for the next transaction.
        assert_eq!(code(&s.line(b"MAIL FROM:<>")), "250");
        assert_eq!(code(&s.line(b"QUIT")), "221");
    }

    #[test]
    fn refusals_use_the_right_codes() {
        let mut s = session();
        assert_eq!(code(&s.line(b"MAIL FROM:<a@b.c>")), "503", "EHLO first");
        assert_eq!(code(&s.line(b"HELO")), "501");
        assert_eq!(code(&s.line(b"HELO c.test")), "250");
        assert_eq!(code(&s.line(b"RCPT TO:<incidents@example.com>")), "503");
        assert_eq!(code(&s.line(b"DATA")), "503");
        assert_eq!(code(&s.line(b"MAIL FROM:a@b.c")), "501");
        assert_eq!(code(&s.line(b"MAIL FROM:<a@b.c> SIZE=5000")), "552");
        assert_eq!(code(&s.line(b"MAIL FROM:<a@b.c>")), "250");
        assert_eq!(code(&s.line(b"MAIL FROM:<a@b.c>")), "503", "nested MAIL");
        assert_eq!(code(&s.line(b"RCPT TO:<someone@example.com>")), "550");
        assert_eq!(code(&s.line(b"DATA")), "554", "no valid recipient");
        let mut s = session();
        assert_eq!(code(&s.line(b"BOGUS")), "500");
        assert_eq!(code(&s.line(b"STARTTLS")), "502");
        assert_eq!(code(&s.line(&[0xff, 0xfe])), "500");
        assert_eq!(code(&s.line(b"RSET")), "250");
        assert_eq!(code(&s.line(b"NOOP")), "250");
    }

    #[test]
    fn an_oversize_message_is_read_to_its_end_and_refused() {
        let mut s = session();
        s.line(b"EHLO c");
        s.line(b"MAIL FROM:<a@b.c>");
        s.line(b"RCPT TO:<incidents@example.com>");
        s.line(b"DATA");
        let long = vec![b'x'; 600];
        assert_eq!(s.line(&long), Step::Continue);
        assert_eq!(s.line(&long), Step::Continue);
        assert_eq!(code(&s.line(b".")), "552");
        assert_eq!(
            code(&s.line(b"MAIL FROM:<a@b.c>")),
            "250",
            "the session goes on"
        );
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let mut s = session();
        for _ in 0..MAX_ERRORS - 1 {
            assert!(matches!(s.line(b"BOGUS"), Step::Reply(_)));
        }
        assert!(matches!(s.line(b"BOGUS"), Step::Close(r) if r.starts_with("421")));
    }
}
