//! The transcript email: when a call placed with `transcript_email` ends,
//! one plain-text mail with its outcome, times and transcript goes to that
//! address (CodeB's required `email` maps to it).
//!
//! Flow: the call store's outbox drain makes one [`MailJob`] for the call's
//! end (`webhooks::events::mail_job`, next to the webhook deliveries of the
//! same event) with the subject and body rendered there
//! ([`transcript_mail`]); it travels through the same Cloudflare Queue as the
//! webhook deliveries. The queue consumer runs [`process`]: it composes the
//! RFC 5322 message ([`message`]), hands it to the deployment's
//! [`MailTransport`] (SMTP over a TCP socket, [`smtp`], or Cloudflare's
//! `send_email` binding: `glue::mail`) and says what happens next: done, or
//! the same job again after [`RETRY_DELAYS_SECONDS`]. Every outcome is one
//! log line that starts with a stable code ([`Processed::log`]).

pub mod message;
pub mod smtp;

use crate::dialects::codeb::transcript_text;
use crate::dialects::post_call::EndedCall;
use crate::ids::rfc3339_ms;
use serde::{Deserialize, Serialize};

/// `MAIL_FROM` when the deployment does not set it.
pub const DEFAULT_MAIL_FROM: &str = "voxline@localhost";
/// Longest body a mail job carries (a queue message is at most 128 KB):
/// a longer transcript is cut, with a pointer to the whole one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Waits before the 2nd, 3rd, ... attempt; then the mail is given up.
pub const RETRY_DELAYS_SECONDS: [u32; 5] = [30, 120, 600, 1_800, 3_600];

/// A mail address that may go into a header (`To:`) and an SMTP command
/// (`RCPT TO:<...>`) as it is: RFC 5321's dot-atom local part and a domain of
/// LDH labels, ASCII only, so no CR/LF, space, quote, angle bracket or comma
/// can split either; a single-label domain is allowed (`voxline@localhost`).
/// `MAIL_FROM` and every job's `to` are checked against it before use
/// (`transcript_email` was checked at creation against the stricter
/// `api::validate::TRANSCRIPT_EMAIL_PATTERN`, which implies this one).
pub const PLAIN_ADDRESS_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$";
/// RFC 5321 4.5.3.1.3: a path is at most 256 octets, so an address 254.
pub const MAX_ADDRESS_LEN: usize = 254;

/// Whether `s` matches [`PLAIN_ADDRESS_PATTERN`] and fits in a path.
pub fn is_plain_address(s: &str) -> bool {
    static PATTERN: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    s.len() <= MAX_ADDRESS_LEN
        && PATTERN
            .get_or_init(|| {
                regex_lite::Regex::new(PLAIN_ADDRESS_PATTERN).expect("a valid constant pattern")
            })
            .is_match(s)
}

/// What a mail job is: the one kind so far. Its field `kind` tells a mail
/// job from a webhook delivery on the shared queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    TranscriptEmail,
}

/// One mail, as a queue message: everything needed to send it, rendered
/// when the call ended (the sender and the transport are the deployment's,
/// read when it is sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailJob {
    pub kind: MailKind,
    pub tenant_id: String,
    /// `mail_...`; the `Message-ID`'s left part, the same on every attempt.
    pub mail_id: String,
    pub call_id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// When the call's end was drained: the mail's `Date`.
    pub created_at_ms: u64,
    /// The attempt this job makes (1 first).
    pub attempt: u32,
}

/// Why a mail was not handed over; [`MailError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailError {
    /// Neither `SMTP_URL` nor the `MAIL` binding is set.
    NotConfigured,
    /// `SMTP_URL` or `MAIL_FROM` is unusable.
    BadConfig(String),
    /// The recipient is not a plain address (a job not made by this code).
    InvalidRecipient,
    /// The message could not be composed.
    Compose(String),
    Smtp(smtp::SmtpError),
    /// Cloudflare's `send_email` binding threw (its message).
    Binding(String),
}

impl MailError {
    pub fn code(&self) -> &'static str {
        match self {
            MailError::NotConfigured => "mail_not_configured",
            MailError::BadConfig(_) => "mail_bad_config",
            MailError::InvalidRecipient => "mail_invalid_recipient",
            MailError::Compose(_) => "mail_compose_failed",
            MailError::Smtp(e) => e.code(),
            MailError::Binding(_) => "mail_binding_failed",
        }
    }

    /// Whether another attempt may succeed. A bad configuration may be fixed
    /// within the retry window; the binding's errors carry no code, so they
    /// are retried too (bounded).
    pub fn is_transient(&self) -> bool {
        match self {
            MailError::NotConfigured | MailError::InvalidRecipient | MailError::Compose(_) => false,
            MailError::BadConfig(_) | MailError::Binding(_) => true,
            MailError::Smtp(e) => e.is_transient(),
        }
    }
}

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailError::NotConfigured => {
                f.write_str("neither SMTP_URL nor a MAIL send_email binding is set")
            }
            MailError::BadConfig(why) | MailError::Compose(why) | MailError::Binding(why) => {
                f.write_str(why)
            }
            MailError::InvalidRecipient => f.write_str("the recipient is not a plain address"),
            MailError::Smtp(e) => write!(f, "{e}"),
        }
    }
}

/// The port a mail leaves through: one message, its envelope sender and
/// recipient. The Worker's are SMTP over `connect()` and the `send_email`
/// binding (`glue::mail`); tests use a recording fake.
#[allow(async_fn_in_trait)] // single-threaded Worker: no Send bound wanted
pub trait MailTransport {
    /// `smtp` or `send_email`, for the log.
    fn name(&self) -> &'static str;
    async fn send(&self, from: &str, to: &str, message: &[u8]) -> Result<(), MailError>;
}

/// What happens to a job after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum MailNext {
    Done,
    Retry { job: MailJob, delay_seconds: u32 },
}

/// An attempt's result and its log line, which starts with a stable code:
/// `mail_sent`, `mail_retry code=<error>`, `mail_failed code=<error>` or
/// `mail_not_configured` (the mail is skipped, not lost silently).
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    pub next: MailNext,
    pub log: String,
}

/// Runs one attempt of `job`: checks the addresses, composes the message
/// from `from` (the deployment's `MAIL_FROM`), hands it to `transport`.
pub async fn process(job: MailJob, from: &str, transport: &impl MailTransport) -> Processed {
    let who = format!(
        "mail={} call={} tenant={} to_domain={} attempt={} transport={}",
        job.mail_id,
        job.call_id,
        job.tenant_id,
        job.to.rsplit_once('@').map_or("?", |(_, d)| d),
        job.attempt,
        transport.name()
    );
    let result = send_once(&job, from, transport).await;
    match result {
        Ok(()) => Processed {
            next: MailNext::Done,
            log: format!("mail_sent {who}"),
        },
        Err(MailError::NotConfigured) => Processed {
            next: MailNext::Done,
            log: format!(
                "mail_not_configured {who}: skipped ({})",
                MailError::NotConfigured
            ),
        },
        Err(e) => {
            let delay = RETRY_DELAYS_SECONDS.get(job.attempt.saturating_sub(1) as usize);
            match delay {
                Some(&delay_seconds) if e.is_transient() => Processed {
                    log: format!(
                        "mail_retry code={} {who} retry_in={delay_seconds}s: {e}",
                        e.code()
                    ),
                    next: MailNext::Retry {
                        job: MailJob {
                            attempt: job.attempt.saturating_add(1),
                            ..job
                        },
                        delay_seconds,
                    },
                },
                _ => Processed {
                    next: MailNext::Done,
                    log: format!("mail_failed code={} {who} final: {e}", e.code()),
                },
            }
        }
    }
}

async fn send_once(
    job: &MailJob,
    from: &str,
    transport: &impl MailTransport,
) -> Result<(), MailError> {
    if !is_plain_address(from) {
        return Err(MailError::BadConfig(
            "MAIL_FROM is not a plain address (name@example.com)".into(),
        ));
    }
    if !is_plain_address(&job.to) {
        return Err(MailError::InvalidRecipient);
    }
    let raw = message::compose(
        from,
        message::Parts {
            to: &job.to,
            subject: &job.subject,
            body: &job.body,
            id: &job.mail_id,
            call_id: &job.call_id,
            date_ms: job.created_at_ms,
        },
    )
    .map_err(MailError::Compose)?;
    transport.send(from, &job.to, raw.as_bytes()).await
}

/// A header value from text the call holds (an engine's outcome): control
/// characters become spaces, at most `max` characters.
fn header_safe(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The subject and plain-text body of a call's transcript email: the
/// number and the outcome in the subject; status, times, duration, summary
/// and the transcript (one line per turn, as CodeB's `.txt`) in the body,
/// at most [`MAX_BODY_BYTES`].
pub fn transcript_mail(call: &EndedCall<'_>) -> (String, String) {
    let status = call.status.as_str();
    let outcome = call
        .outcome
        .map(|o| header_safe(o, 80))
        .filter(|o| !o.is_empty());
    let subject = match &outcome {
        Some(o) => format!("Call to {} ended: {status}, outcome {o}", call.phone),
        None => format!("Call to {} ended: {status}", call.phone),
    };
    let time = |ms: Option<u64>| ms.map_or_else(|| "-".to_string(), rfc3339_ms);
    let mut body = String::new();
    let mut line = |label: &str, value: &str| {
        body.push_str(&format!("{label:<14}{value}\n"));
    };
    line("Call:", call.call_id);
    line("Phone:", call.phone);
    if let Some(name) = call.name {
        line("Name:", &header_safe(name, 200));
    }
    line("Status:", status);
    line(
        "Ended reason:",
        &call
            .ended_reason
            .map_or_else(|| "-".to_string(), |r| name_of(&r)),
    );
    line("Outcome:", outcome.as_deref().unwrap_or("-"));
    line("Dialled at:", &time(call.dispatched_ms));
    line("Answered at:", &time(call.answered_ms));
    line("Ended at:", &time(Some(call.ended_ms)));
    line("Duration:", &format!("{} s", call.duration_seconds()));
    line(
        "Attempt:",
        &format!("{} (retries left: {})", call.attempt, call.retries_left),
    );
    if let Some(s) = call.summary {
        body.push_str(&format!("\nSummary:\n{}\n", s.trim_end()));
    }
    body.push_str("\nTranscript:\n");
    let transcript = transcript_text(call);
    if transcript.is_empty() {
        body.push_str("(no turns: the call was not answered or nobody spoke)\n");
    } else {
        let room = MAX_BODY_BYTES.saturating_sub(body.len() + 200);
        if transcript.len() <= room {
            body.push_str(&transcript);
        } else {
            // Cut after the last whole line that fits.
            let cut = transcript
                .get(..room)
                .and_then(|head| head.rfind('\n'))
                .map_or(0, |i| i + 1);
            body.push_str(transcript.get(..cut).unwrap_or_default());
            body.push_str(&format!(
                "[transcript cut at {} KiB; the whole one: GET /v1/calls/{}/transcript]\n",
                MAX_BODY_BYTES / 1024,
                call.call_id
            ));
        }
    }
    (subject, body)
}

/// The mail id of the call-end event `event_id` (`evt_<hex>` -> `mail_<hex>`):
/// a drain that runs again after a queueing failure makes the same
/// `Message-ID`, so a receiver can drop the duplicate.
pub fn mail_id_for_event(event_id: &str) -> String {
    format!("mail_{}", event_id.strip_prefix("evt_").unwrap_or(event_id))
}

/// The job for a call's transcript email to `to`, made from its end event.
pub fn transcript_job(
    tenant_id: &str,
    event_id: &str,
    call: &EndedCall<'_>,
    to: &str,
    now_ms: u64,
) -> MailJob {
    let (subject, body) = transcript_mail(call);
    MailJob {
        kind: MailKind::TranscriptEmail,
        tenant_id: tenant_id.to_string(),
        mail_id: mail_id_for_event(event_id),
        call_id: call.call_id.to_string(),
        to: to.to_string(),
        subject,
        body,
        created_at_ms: now_ms,
        attempt: 1,
    }
}

/// A call's end and its mail job, for the tests of this module's files.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::dialects::post_call::{Speaker, Turn};
    use voxline_shared::{CallStatus, EndedReason};

    /// Answered 2026-06-23T12:00:05.5Z, two turns, ended 144 s later.
    pub fn ended<'a>() -> EndedCall<'a> {
        let mut call = crate::dialects::post_call::test_call::ended(None);
        call.call_id = "call_1";
        call.phone = "+4915157610183";
        call.status = CallStatus::Completed;
        call.ended_reason = Some(EndedReason::CalleeHangup);
        call.outcome = Some("confirmed\r\nBcc: x@evil.example");
        call.summary = Some("Alex will come.");
        call.answered_ms = Some(1_782_216_005_500);
        call.dispatched_ms = Some(1_782_216_000_000);
        call.ended_ms = 1_782_216_150_000;
        call.turns = vec![
            Turn {
                speaker: Speaker::Agent,
                text: "Hello, is this Alex?",
                start_ms: 500,
            },
            Turn {
                speaker: Speaker::Callee,
                text: "Yes. Grüße!",
                start_ms: 3_500,
            },
        ];
        call
    }

    /// Its mail job, drained one second after the end.
    pub fn job() -> MailJob {
        transcript_job(
            "ten_1",
            "evt_0123456789abcdef0123",
            &ended(),
            "ops@yourcompany.example",
            1_782_216_151_000,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{ended, job};
    use super::*;
    use crate::dialects::post_call::{Speaker, Turn};
    use std::cell::RefCell;

    #[test]
    fn the_mail_has_number_outcome_times_and_one_line_per_turn() {
        let (subject, body) = transcript_mail(&ended());
        // The engine's outcome cannot add a header: its line break is a space.
        assert_eq!(
            subject,
            "Call to +4915157610183 ended: completed, outcome confirmed  Bcc: x@evil.example"
        );
        assert!(body.contains("Status:       completed\n"), "{body}");
        assert!(body.contains("Ended reason: callee_hangup\n"), "{body}");
        assert!(
            body.contains("Answered at:  2026-06-23T12:00:05.500Z\n"),
            "{body}"
        );
        assert!(body.contains("Duration:     144 s\n"), "{body}");
        assert!(body.contains("\nSummary:\nAlex will come.\n"), "{body}");
        assert!(
            body.ends_with(
                "Transcript:\n[12:00:06] AI: Hello, is this Alex?\n[12:00:09] USER: Yes. Grüße!\n"
            ),
            "{body}"
        );
    }

    #[test]
    fn a_long_transcript_is_cut_on_a_line_within_the_bound() {
        let text = "x".repeat(3_900);
        let mut call = ended();
        call.turns = (0..40)
            .map(|i| Turn {
                speaker: Speaker::Agent,
                text: &text,
                start_ms: i * 1000,
            })
            .collect();
        let (_, body) = transcript_mail(&call);
        assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
        assert!(body.ends_with("the whole one: GET /v1/calls/call_1/transcript]\n"));
        let cut_line = body.lines().rev().nth(1).unwrap();
        assert!(cut_line.ends_with(&text), "the last turn kept is whole");
    }

    #[test]
    fn plain_addresses_only() {
        for ok in ["a@b.c", "o'brien+x@mail-1.example.ie", "voxline@localhost"] {
            assert!(is_plain_address(ok), "{ok}");
        }
        for bad in [
            "a@b.c\r\nBcc: x@y.z",
            "a@b.c>",
            "Name <a@b.c>",
            "a@-b",
            "é@b.c",
            "a@b.c,d@e.f",
            &format!("{}@b.c", "a".repeat(251)),
        ] {
            assert!(!is_plain_address(bad), "{bad}");
        }
    }

    /// Records what it was asked to send; answers from a script.
    struct Fake {
        answers: RefCell<Vec<Result<(), MailError>>>,
        sent: RefCell<Vec<(String, String, String)>>,
    }

    impl Fake {
        fn answering(answers: Vec<Result<(), MailError>>) -> Fake {
            Fake {
                answers: RefCell::new(answers),
                sent: RefCell::new(vec![]),
            }
        }
    }

    impl MailTransport for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn send(&self, from: &str, to: &str, message: &[u8]) -> Result<(), MailError> {
            self.sent.borrow_mut().push((
                from.into(),
                to.into(),
                String::from_utf8_lossy(message).into_owned(),
            ));
            self.answers.borrow_mut().remove(0)
        }
    }

    fn run(job: MailJob, from: &str, fake: &Fake) -> Processed {
        futures::executor::block_on(process(job, from, fake))
    }

    #[test]
    fn a_sent_mail_is_done_and_logged() {
        let fake = Fake::answering(vec![Ok(())]);
        let p = run(job(), "voxline@localhost", &fake);
        assert_eq!(p.next, MailNext::Done);
        assert!(p.log.starts_with("mail_sent mail=mail_"), "{}", p.log);
        assert!(
            p.log.contains("to_domain=yourcompany.example attempt=1"),
            "{}",
            p.log
        );
        let sent = fake.sent.borrow();
        assert_eq!(sent[0].0, "voxline@localhost");
        assert_eq!(sent[0].1, "ops@yourcompany.example");
        assert!(
            sent[0].2.contains("To: <ops@yourcompany.example>\r\n"),
            "{}",
            sent[0].2
        );
    }

    #[test]
    fn transient_failures_are_retried_on_the_schedule_then_given_up() {
        let mut j = job();
        let closed = || Err(MailError::Smtp(smtp::SmtpError::Connect("refused".into())));
        for (n, delay) in RETRY_DELAYS_SECONDS.iter().enumerate() {
            let p = run(
                j.clone(),
                "voxline@localhost",
                &Fake::answering(vec![closed()]),
            );
            assert!(
                p.log.starts_with("mail_retry code=smtp_connect_failed"),
                "{}",
                p.log
            );
            match p.next {
                MailNext::Retry { job, delay_seconds } => {
                    assert_eq!((job.attempt, delay_seconds), (n as u32 + 2, *delay));
                    assert_eq!(job.mail_id, j.mail_id);
                    j = job;
                }
                MailNext::Done => panic!("gave up at attempt {}", n + 1),
            }
        }
        let p = run(j, "voxline@localhost", &Fake::answering(vec![closed()]));
        assert_eq!(p.next, MailNext::Done);
        assert!(
            p.log.starts_with("mail_failed code=smtp_connect_failed"),
            "{}",
            p.log
        );
        assert!(p.log.contains("attempt=6"), "{}", p.log);
    }

    #[test]
    fn a_refused_recipient_is_final_and_no_transport_is_a_logged_skip() {
        let refused = MailError::Smtp(smtp::SmtpError::Rejected {
            stage: smtp::Stage::RcptTo,
            code: 550,
            text: "no such user".into(),
        });
        let p = run(
            job(),
            "voxline@localhost",
            &Fake::answering(vec![Err(refused)]),
        );
        assert_eq!(p.next, MailNext::Done);
        assert!(
            p.log
                .starts_with("mail_failed code=smtp_recipient_rejected")
                && p.log
                    .ends_with("final: smtp_recipient_rejected: 550 no such user"),
            "{}",
            p.log
        );
        let p = run(
            job(),
            "voxline@localhost",
            &Fake::answering(vec![Err(MailError::NotConfigured)]),
        );
        assert_eq!(p.next, MailNext::Done);
        assert!(p.log.starts_with("mail_not_configured "), "{}", p.log);
    }

    #[test]
    fn bad_addresses_never_reach_the_transport() {
        let fake = Fake::answering(vec![]);
        let p = run(job(), "Voxline <voxline@localhost>", &fake);
        assert!(
            p.log.starts_with("mail_retry code=mail_bad_config"),
            "{}",
            p.log
        );
        let p = run(
            MailJob {
                to: "ops@example.com\r\nBcc: x@evil.example".into(),
                ..job()
            },
            "voxline@localhost",
            &fake,
        );
        assert_eq!(p.next, MailNext::Done);
        assert!(
            p.log.starts_with("mail_failed code=mail_invalid_recipient"),
            "{}",
            p.log
        );
        assert!(fake.sent.borrow().is_empty());
    }

    #[test]
    fn jobs_read_back_and_are_told_from_webhook_deliveries() {
        let j = job();
        // The id is the end event's: a drain made again gives the same Message-ID.
        assert_eq!(j.mail_id, "mail_0123456789abcdef0123");
        assert_eq!(mail_id_for_event("evt_ab"), "mail_ab");
        let text = serde_json::to_string(&j).unwrap();
        assert!(text.starts_with(r#"{"kind":"transcript_email","#), "{text}");
        assert_eq!(serde_json::from_str::<MailJob>(&text).unwrap(), j);
    }
}
