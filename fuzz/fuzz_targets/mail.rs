//! E-mail intake parsing: arbitrary DATA bytes (an RFC 5322 message, or not) through
//! `intake::mail::to_report`, the function the SMTP session calls on each mail. It never
//! panics; a refusal is a well-formed SMTP reply; a report keeps within the limits (the body
//! cut at 16,000 characters, attachment names at 120, the Message-ID at 240) and names a sender.
#![no_main]

use std::sync::Once;

use ai_incident_mcp::intake::mail::to_report;
use libfuzzer_sys::fuzz_target;

/// Characters the description may hold besides the cut body: the subject (bounded by the
/// message), the cut notice, the attachment list and the trailer.
const MAX_BODY_CHARS: usize = 16_000;

/// libfuzzer-sys's panic hook aborts on every panic, even one the code under test catches.
/// `to_report` catches mail-parser's own (debug-build) panics and refuses the mail, so those
/// unwind to it; any other panic, or one of mail-parser's that `to_report` did not catch,
/// still aborts and is reported as a crash.
fn let_mail_parser_panics_unwind() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info
                .location()
                .is_some_and(|l| l.file().contains("/mail-parser-"))
            {
                return;
            }
            abort(info);
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_mail_parser_panics_unwind();
    // The first byte picks the envelope sender: none (a bounce), or an address.
    let (sender, data) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => ("", rest),
        Some((_, rest)) => ("fuzz@example.com", rest),
        None => ("", data),
    };
    match to_report(data, sender) {
        Err(r) => {
            let code = r.reply.get(..3).unwrap_or("");
            assert!(
                code.starts_with('5') && code.bytes().all(|b| b.is_ascii_digit()),
                "{:?}",
                r.reply
            );
            assert!(!r.reply.contains(['\r', '\n']), "{:?}", r.reply);
        }
        Ok(m) => {
            assert!(m.report.reporter_email.contains('@'));
            if sender.is_empty() {
                assert!(m.reply_to.is_none(), "a bounce is never answered");
            }
            for (name, _) in &m.attachments {
                assert!(name.chars().count() <= 120, "{name:?}");
            }
            if let Some(id) = &m.message_id {
                assert!(id.chars().count() <= "smtp:".len() + 240, "{id:?}");
            }
            // The description holds at most the subject, the cut body and the notes.
            let bound = data.len() + MAX_BODY_CHARS + 200 + 160 * m.attachments.len();
            assert!(m.report.description.chars().count() <= bound);
        }
    }
});
