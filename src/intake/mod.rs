//! E-mail intake (issue #10, the procedure's `email` channel): an SMTP listener, off by default
//! (`[intake.smtp]`), whose accepted mails become manual incident reports through the same
//! [`IncidentService::report_once`] call the REST API and the MCP tool make. The protocol is
//! the state machine in [`smtp`]; the mail → report mapping is [`mail`]. A mail is answered
//! `250` only after its incident is stored; a resent mail (same Message-ID) opens no second
//! incident. Malformed mail, oversize mail and unknown recipients are refused with their SMTP
//! codes and logged (never the body). The reporter is answered with the incident id through the
//! configured `reply_channel` (an e-mail channel), after the `250`; a failed answer is logged.
//!
//! May import: `crate::service`, `crate::config`, `crate::domain`, `crate::notify`
//! (`ChannelConfig` and the e-mail channel's SMTP transport); tokio, tokio-util, lettre, mail-parser.

pub mod mail;
pub mod smtp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::SmtpIntakeConfig;
use crate::notify::ChannelConfig;
use crate::service::{IncidentService, ServiceError};
use smtp::{Session, Step};

/// Binds `[intake.smtp] listen` and serves SMTP until `ct` is cancelled. Returns the bound
/// address (port 0 picks a free one).
///
/// # Errors
/// The address does not parse or cannot be bound.
pub async fn serve_smtp(
    svc: Arc<IncidentService>,
    cfg: SmtpIntakeConfig,
    ct: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(cfg.listen.as_str()).await?;
    let local = listener.local_addr()?;
    let reply: Option<ChannelConfig> = cfg.reply_channel.as_ref().and_then(|n| {
        svc.config()
            .notify
            .channels
            .iter()
            .find(|c| &c.name == n)
            .cloned()
    });
    let cfg = Arc::new(cfg);
    let reply = Arc::new(reply);
    let slots = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
    tokio::spawn(async move {
        loop {
            let (sock, peer) = tokio::select! {
                _ = ct.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "smtp accept failed; going on");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (svc, cfg, reply, ct) = (svc.clone(), cfg.clone(), reply.clone(), ct.clone());
            let permit = slots.clone().try_acquire_owned();
            tokio::spawn(async move {
                let mut sock = sock;
                let Ok(_permit) = permit else {
                    tracing::warn!(%peer, "smtp: too many sessions; refused with 421");
                    let _ = sock
                        .write_all(b"421 4.3.2 too many connections; try again later\r\n")
                        .await;
                    return;
                };
                let (r, w) = sock.into_split();
                tokio::select! {
                    _ = ct.cancelled() => {}
                    res = session(&svc, &cfg, &reply, peer, r, w) => {
                        if let Err(e) = res {
                            tracing::debug!(%peer, error = %e, "smtp session ended");
                        }
                    }
                }
            });
        }
    });
    Ok(local)
}

/// Reads one line (up to `max` bytes before its LF). `Ok(None)` at end of input; the bool is
/// false when the line was cut at `max` (the rest of it is read and dropped).
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = (&mut *r)
        .take(max as u64 + 2)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(true));
    }
    // Cut: drop the rest of the line.
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let n = (&mut *r)
            .take(64 * 1024)
            .read_until(b'\n', &mut rest)
            .await?;
        if n == 0 || rest.last() == Some(&b'\n') {
            break;
        }
    }
    Ok(Some(false))
}

async fn session<R, W>(
    svc: &IncidentService,
    cfg: &SmtpIntakeConfig,
    reply: &Option<ChannelConfig>,
    peer: SocketAddr,
    r: R,
    mut w: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut s = Session::new(&cfg.hostname, &cfg.recipients, cfg.max_message_bytes);
    let mut r = BufReader::new(r);
    w.write_all(s.greeting().as_bytes()).await?;
    let mut buf = Vec::new();
    loop {
        // A DATA line may be as long as the message allows; a command line is capped.
        let max = if s.in_data() {
            cfg.max_message_bytes + 2
        } else {
            smtp::MAX_COMMAND_LINE
        };
        let line =
            match tokio::time::timeout(cfg.idle_timeout, read_line(&mut r, &mut buf, max)).await {
                Err(_) => {
                    w.write_all(b"421 4.4.2 idle too long, closing the connection\r\n")
                        .await?;
                    return Ok(());
                }
                Ok(r) => r?,
            };
        let step = match line {
            None => return Ok(()),
            Some(false) if !s.in_data() => s.line_too_long(),
            Some(_) => s.line(&buf),
        };
        match step {
            Step::Continue => {}
            Step::Reply(text) => {
                if text.starts_with('5') || text.starts_with('4') {
                    tracing::info!(%peer, reply = text.trim_end(), "smtp: refused");
                }
                w.write_all(text.as_bytes()).await?;
            }
            Step::Close(text) => {
                w.write_all(text.as_bytes()).await?;
                return Ok(());
            }
            Step::Message(env) => {
                let text = file(svc, reply, peer, env).await;
                w.write_all(text.as_bytes()).await?;
            }
        }
    }
}

/// Files one received mail; returns the SMTP reply.
async fn file(
    svc: &IncidentService,
    reply: &Option<ChannelConfig>,
    peer: SocketAddr,
    env: smtp::Envelope,
) -> String {
    if svc.config().server.read_only {
        tracing::info!(%peer, "smtp: refused, the server is read-only");
        return "550 5.7.1 this server is read-only and files no reports; send the report to a writable instance\r\n".into();
    }
    let m = match mail::to_report(&env.data, &env.sender) {
        Ok(m) => m,
        Err(refusal) => {
            tracing::info!(%peer, bytes = env.data.len(), reply = %refusal.reply, "smtp: mail refused");
            return format!("{}\r\n", refusal.reply);
        }
    };
    let reply_to = m.reply_to.clone();
    match svc.report_once(m.report, m.message_id.as_deref()).await {
        Ok(up) => {
            let id = up.incident.id().to_string();
            tracing::info!(%peer, incident = %id, created = up.created, attachments = m.attachments.len(), "smtp: mail filed as an incident");
            if up.created
                && let (Some(ch), Some(to)) = (reply.clone(), reply_to)
            {
                let title = up.incident.title().to_string();
                let sev = up.incident.severity().as_str().to_string();
                let id2 = id.clone();
                tokio::spawn(async move {
                    if let Err(e) = send_reply(&ch, &to, &id2, &title, &sev).await {
                        tracing::warn!(incident = %id2, channel = %ch.name, error = %e, "smtp: the answer to the reporter was not sent");
                    }
                });
            }
            format!("250 2.0.0 filed as incident {id}\r\n")
        }
        Err(ServiceError::Invalid { field, message }) => {
            tracing::info!(%peer, field, "smtp: report refused by validation");
            let field = match field {
                "reporter_email" => "From",
                "incident_type" => "type: hint",
                "severity" => "severity: hint",
                "affected_system" => "system: hint",
                "Idempotency-Key" => "Message-ID",
                f => f,
            };
            format!(
                "550 5.6.0 {field}: {}\r\n",
                message.replace(['\r', '\n'], " ")
            )
        }
        Err(e @ ServiceError::Conflict(_)) | Err(e @ ServiceError::NotFound(_)) => {
            format!("550 5.6.0 {}\r\n", e.to_string().replace(['\r', '\n'], " "))
        }
        Err(e) => {
            tracing::error!(%peer, error = %e, "smtp: cannot file the mail; asked the client to retry");
            "451 4.3.0 the report could not be stored; try again later\r\n".into()
        }
    }
}

/// `Auto-Submitted: auto-replied` (RFC 3834) on the answer, so autoresponders (and our own
/// intake) do not answer it back.
#[derive(Clone)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-replied".into())
    }
}

/// Sends the answer with the incident id through the e-mail channel's SMTP server.
async fn send_reply(
    ch: &ChannelConfig,
    to: &str,
    id: &str,
    title: &str,
    severity: &str,
) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::{AsyncTransport, Message};
    let from = crate::notify::from_mailbox(ch)
        .map_err(|e| format!("invalid `from` of channel {}: {e}", ch.name))?;
    let to: Mailbox = to
        .parse()
        .map_err(|e| format!("invalid reporter address: {e}"))?;
    let msg = Message::builder()
        .from(from)
        .to(to)
        .subject(format!("Re: incident {id} opened"))
        .header(ContentType::TEXT_PLAIN)
        .header(AutoSubmitted)
        .body(format!(
            "Your report was filed as incident {id} (severity {severity}).\n\n{title}\n\n\
             Quote {id} in any follow-up. This message was sent automatically.\n"
        ))
        .map_err(|e| format!("cannot build the answer: {e}"))?;
    crate::notify::smtp_transport(ch, std::time::Duration::from_secs(10))
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}
