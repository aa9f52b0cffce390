//! A received e-mail → a manual incident report: From (or Reply-To for the answer) → reporter,
//! Subject + the text body (the text/plain part, or the HTML part with its markup stripped) →
//! description, `type:` / `severity:` / `system:` hints in the subject or the first lines of the
//! body, attachments noted by name and size (never opened, never executed).
//!
//! May import: `crate::service` (`ReportInput`), `crate::domain` (`truncate_chars`); mail-parser.

use mail_parser::{MessageParser, MimeHeaders};

use crate::domain::incident::truncate_chars;
use crate::service::ReportInput;

/// Body text kept in the description, in characters (the rest is cut, and the cut is said).
const MAX_BODY_CHARS: usize = 16_000;

/// Lines at the top of the body searched for hints.
const HINT_LINES: usize = 5;

/// A mail that cannot become a report, with the SMTP reply that says why.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The whole reply line, e.g. `550 5.1.7 …` (no CRLF).
    pub reply: String,
}

fn refuse(reply: impl Into<String>) -> Refusal {
    Refusal {
        reply: reply.into(),
    }
}

/// What a mail turned into.
#[derive(Debug)]
pub struct MailReport {
    /// The report to file.
    pub report: ReportInput,
    /// `Message-ID` (makes a resent mail open no second incident), when the mail has one.
    pub message_id: Option<String>,
    /// Where the answer goes (Reply-To, else From); `None` for automatic mail
    /// (`Auto-Submitted`, a bounce), which is never answered.
    pub reply_to: Option<String>,
    /// Attachments noted (name, bytes).
    pub attachments: Vec<(String, usize)>,
}

/// Parses `data` (an RFC 5322 message) into a report; `envelope_sender` is `MAIL FROM`.
///
/// # Errors
/// [`Refusal`] with the SMTP reply when the mail has no parseable header, no sender address or
/// nothing to report.
pub fn to_report(data: &[u8], envelope_sender: &str) -> Result<MailReport, Refusal> {
    let has_header = data
        .split(|b| *b == b'\n')
        .next()
        .is_some_and(|l| l.contains(&b':') && !l.starts_with(b" "));
    // mail-parser 0.11.9 has a `debug_assert!` ("Invalid part ID, could not find multipart")
    // that some nested multipart messages trip (found by the `mail` fuzz target): in a debug
    // build it panics, in a release build it is compiled out. Either way the mail is answered.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        MessageParser::default().parse(data)
    }))
    .map_err(|_| {
        refuse("554 5.6.0 the MIME structure of the message cannot be parsed (nested multipart parts): send the report as plain text")
    })?;
    let msg = parsed.filter(|_| has_header).ok_or_else(|| {
        refuse("554 5.6.0 not an RFC 5322 message: it must start with header lines (From:, Subject:) and a blank line")
    })?;
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::trim)
        .filter(|a| a.contains('@'))
        .map(str::to_string)
        .or_else(|| (envelope_sender.contains('@')).then(|| envelope_sender.to_string()))
        .ok_or_else(|| {
            refuse("550 5.1.7 the mail has no sender address: add a From: header with your e-mail address")
        })?;
    let subject = msg.subject().map(str::trim).unwrap_or("").to_string();
    let body = msg
        .body_text(0)
        .map(|b| b.trim().to_string())
        .unwrap_or_default();
    if subject.is_empty() && body.is_empty() {
        return Err(refuse(
            "554 5.6.0 the mail is empty: say what happened in the subject or the text",
        ));
    }
    let mut hints = Hints::default();
    hints.scan(&subject);
    for l in body.lines().take(HINT_LINES) {
        hints.scan(l);
    }
    let attachments: Vec<(String, usize)> = msg
        .attachments()
        .map(|p| {
            (
                p.attachment_name()
                    .map(|n| truncate_chars(n, 120))
                    .unwrap_or_else(|| "(unnamed)".into()),
                p.len(),
            )
        })
        .collect();
    let mut description = if subject.is_empty() {
        String::new()
    } else {
        format!("{subject}\n\n")
    };
    let kept = truncate_chars(&body, MAX_BODY_CHARS);
    description.push_str(&kept);
    if body.chars().count() > MAX_BODY_CHARS {
        description.push_str("\n[… the rest of the mail was cut]");
    }
    if !attachments.is_empty() {
        description.push_str("\n\nAttachments (not opened): ");
        let list: Vec<String> = attachments
            .iter()
            .map(|(n, size)| format!("{n} ({size} bytes)"))
            .collect();
        description.push_str(&list.join(", "));
    }
    description.push_str("\n\n(Reported by e-mail.)");
    let automatic = envelope_sender.is_empty()
        || msg
            .header_raw("Auto-Submitted")
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"));
    let reply_to = (!automatic).then(|| {
        msg.reply_to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .filter(|a| a.contains('@'))
            .map(str::to_string)
            .unwrap_or_else(|| from.clone())
    });
    Ok(MailReport {
        report: ReportInput {
            incident_type: hints.incident_type.unwrap_or_else(|| "other".into()),
            description,
            reporter_email: from,
            severity: hints.severity,
            affected_system: hints.system,
        },
        message_id: msg
            .message_id()
            .map(|m| format!("smtp:{}", truncate_chars(m.trim(), 240))),
        reply_to,
        attachments,
    })
}

#[derive(Default)]
struct Hints {
    incident_type: Option<String>,
    severity: Option<String>,
    system: Option<String>,
}

impl Hints {
    /// Finds `type: x`, `severity: x`, `system: x` (case-insensitive, also inside brackets:
    /// `[severity: high]`); the first of each wins. Values are passed on as given, so a wrong
    /// one is refused by the report's own validation with a sentence naming it.
    fn scan(&mut self, line: &str) {
        let lower = line.to_ascii_lowercase();
        for (key, slot) in [
            ("type:", &mut self.incident_type),
            ("severity:", &mut self.severity),
            ("system:", &mut self.system),
        ] {
            if slot.is_some() {
                continue;
            }
            let Some(at) = find_key(&lower, key) else {
                continue;
            };
            let rest = line.get(at + key.len()..).unwrap_or("").trim_start();
            let value: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || "_-.".contains(*c))
                .collect();
            if !value.is_empty() {
                *slot = Some(value.to_ascii_lowercase());
            }
        }
    }
}

/// Byte offset of `key` in `lower` where it starts a word.
fn find_key(lower: &str, key: &str) -> Option<usize> {
    lower.match_indices(key).map(|(i, _)| i).find(|&i| {
        i == 0
            || lower
                .get(..i)
                .and_then(|h| h.chars().last())
                .is_some_and(|c| !c.is_alphanumeric() && c != '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `mail` fuzz target: a multipart header block with a bare CR starting a line
    /// and nested `message/rfc822` parts made mail-parser's debug assertion panic in `to_report`.
    #[test]
    fn a_broken_nested_multipart_is_answered_not_a_panic() {
        let m: &[u8] = b"From: x@example.com\r\n\
            Subject: n\x9b\x88ted\r\n\
            Content-Type: multipart/mixed; boundary=o\r\n\
            \rType: multipart/mixed; boundary=o\r\n\
            \r\n\
            --o\r\n\
            Content-Type: message/rfc822\r\n\
            \r\n\
            From: y@example.com\r\n\
            Subject: i\n\
            --o\r\n\
            Content-Type: message/rfc822\r\n\
            \r\n\
            From: y@example.com\r\n\
            Subject: inner\r\n\
            \r\n\
            inner body\r\n\
            --o--\r\n";
        match to_report(m, "fuzz@example.com") {
            Ok(r) => assert_eq!(r.report.reporter_email, "x@example.com"),
            Err(e) => assert!(e.reply.starts_with("554 5.6.0 "), "{}", e.reply),
        }
    }

    #[test]
    fn a_plain_mail_becomes_a_report_with_hints() {
        let m = b"From: Bob <bob@example.com>\r\nSubject: [severity: high] bot leaked data\r\nMessage-ID: <m1@example.com>\r\n\r\ntype: security\r\nThe support bot showed another customer's address.\r\n";
        let r = to_report(m, "bounce@example.com").unwrap();
        assert_eq!(r.report.reporter_email, "bob@example.com");
        assert_eq!(r.report.incident_type, "security");
        assert_eq!(r.report.severity.as_deref(), Some("high"));
        assert!(
            r.report
                .description
                .starts_with("[severity: high] bot leaked data\n\n")
        );
        assert!(r.report.description.contains("another customer's address"));
        assert_eq!(r.message_id.as_deref(), Some("smtp:m1@example.com"));
        assert_eq!(r.reply_to.as_deref(), Some("bob@example.com"));
    }

    #[test]
    fn html_is_stripped_and_attachments_are_noted() {
        let m = concat!(
            "From: carol@example.com\r\nSubject: outage\r\nReply-To: oncall@example.com\r\n",
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n",
            "--b\r\nContent-Type: text/html\r\n\r\n<html><body><p>The <b>LLM API</b> is down</p><script>alert(1)</script></body></html>\r\n",
            "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"trace.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n",
            "--b--\r\n"
        );
        let r = to_report(m.as_bytes(), "carol@example.com").unwrap();
        let d = &r.report.description;
        assert!(d.contains("The LLM API is down"), "{d}");
        assert!(!d.contains("<b>") && !d.contains("<p>"), "{d}");
        assert_eq!(r.attachments, vec![("trace.bin".to_string(), 5)]);
        assert!(d.contains("trace.bin (5 bytes)"), "{d}");
        assert_eq!(r.reply_to.as_deref(), Some("oncall@example.com"));
        assert_eq!(r.report.incident_type, "other", "no hint: other");
    }

    #[test]
    fn malformed_or_empty_mail_is_refused_with_a_code() {
        assert!(
            to_report(b"just some text\r\n", "a@b.c")
                .unwrap_err()
                .reply
                .starts_with("554 5.6.0")
        );
        assert!(
            to_report(b"Subject: x\r\n\r\nbody\r\n", "")
                .unwrap_err()
                .reply
                .starts_with("550 5.1.7")
        );
        assert!(
            to_report(b"From: a@b.c\r\n\r\n", "a@b.c")
                .unwrap_err()
                .reply
                .starts_with("554 5.6.0")
        );
    }

    #[test]
    fn automatic_mail_gets_no_answer() {
        let m = b"From: robot@example.com\r\nAuto-Submitted: auto-replied\r\nSubject: out of office\r\n\r\nAway.\r\n";
        assert_eq!(to_report(m, "robot@example.com").unwrap().reply_to, None);
        let m = b"From: a@example.com\r\nSubject: hi\r\n\r\nx\r\n";
        assert_eq!(
            to_report(m, "").unwrap().reply_to,
            None,
            "a bounce (MAIL FROM:<>)"
        );
    }

    #[test]
    fn hint_keys_must_start_a_word() {
        let mut h = Hints::default();
        h.scan("prototype: x, subtype:y");
        assert_eq!(h.incident_type, None);
        h.scan("Type: Performance");
        assert_eq!(h.incident_type.as_deref(), Some("performance"));
    }
}
