//! The transcript email as an RFC 5322 message, composed by `mail-builder`:
//! `From`, `To`, an encoded-word `Subject` when it is not ASCII, `Date` (the
//! call's end), a `Message-ID` that is the same on every attempt (so a
//! receiver can drop a duplicate), `Auto-Submitted: auto-generated` (RFC
//! 3834: no vacation replies), and a `text/plain; charset=utf-8` body, 7bit
//! when it can be and quoted-printable otherwise, with CRLF line ends.
//! Dot-stuffing is the SMTP transport's ([`super::smtp::dot_stuffed`]).

use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;

/// What a transcript email says (a `MailJob`'s fields).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// The `Message-ID`'s left part.
    pub id: &'a str,
    pub call_id: &'a str,
    /// The `Date`, unix ms.
    pub date_ms: u64,
}

/// The message, sent from `from`. Both addresses are plain
/// (`super::is_plain_address`): the caller checked them.
pub fn compose(from: &str, m: Parts<'_>) -> Result<String, String> {
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let date = i64::try_from(m.date_ms / 1000).unwrap_or(0);
    MessageBuilder::new()
        .from(from)
        .to(m.to)
        .subject(m.subject)
        .date(Date::new(date))
        .message_id(format!("{}@{domain}", m.id))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Voxline-Call-Id", Raw::new(plain_token(m.call_id)))
        .text_body(m.body)
        .write_to_string()
        .map_err(|e| e.to_string())
}

/// An id as a header value: only the characters ids are made of.
fn plain_token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::job;
    use super::super::MailJob;
    use super::*;

    fn parts(j: &MailJob) -> Parts<'_> {
        Parts {
            to: &j.to,
            subject: &j.subject,
            body: &j.body,
            id: &j.mail_id,
            call_id: &j.call_id,
            date_ms: j.created_at_ms,
        }
    }

    fn headers(msg: &str) -> Vec<&str> {
        msg.split("\r\n\r\n")
            .next()
            .unwrap()
            .split("\r\n")
            .collect()
    }

    #[test]
    fn the_message_is_rfc5322_with_crlf_and_an_encoded_utf8_body() {
        let msg = compose("voxline@calls.example", parts(&job())).unwrap();
        let h = headers(&msg);
        assert!(h.contains(&"From: <voxline@calls.example>"), "{h:?}");
        assert!(h.contains(&"To: <ops@yourcompany.example>"), "{h:?}");
        assert!(
            h.contains(&"Date: Tue, 23 Jun 2026 12:02:31 +0000"),
            "{h:?}"
        );
        assert!(
            h.iter()
                .any(|l| l.starts_with("Message-ID: <mail_") && l.ends_with("@calls.example>")),
            "{h:?}"
        );
        assert!(h.contains(&"Auto-Submitted: auto-generated"), "{h:?}");
        assert!(h.contains(&"X-Voxline-Call-Id: call_1"), "{h:?}");
        assert!(
            h.contains(&"Content-Type: text/plain; charset=\"utf-8\""),
            "{h:?}"
        );
        // The body holds UTF-8 ("Grüße"): quoted-printable, ASCII on the wire.
        assert!(
            h.contains(&"Content-Transfer-Encoding: quoted-printable"),
            "{h:?}"
        );
        assert!(msg.is_ascii());
        assert!(msg.contains("USER: Yes. Gr=C3=BC=C3=9Fe!\r\n"), "{msg}");
        // Every line ends CRLF and stays within RFC 5322's 78 + CRLF.
        assert!(!msg.replace("\r\n", "").contains('\n'));
        assert!(msg.split("\r\n").all(|l| l.len() <= 78), "{msg}");
        // The subject, with its engine-given outcome, is one header (folded lines start with a space).
        let subject: Vec<&&str> = h
            .iter()
            .skip_while(|l| !l.starts_with("Subject:"))
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .collect();
        assert!(subject.is_empty() || subject.iter().all(|l| l.starts_with(' ')));
        assert!(!h.iter().any(|l| l.starts_with("Bcc")), "{h:?}");
    }

    #[test]
    fn a_non_ascii_subject_is_an_encoded_word() {
        let mut j = job();
        j.subject = "Call to +4915157610183 ended: completed, outcome bestätigt".into();
        let msg = compose("voxline@localhost", parts(&j)).unwrap();
        let h = headers(&msg).join("\r\n");
        assert!(h.contains("Subject: =?utf-8?"), "{h}");
        assert!(h.contains("=C3=A4tigt?="), "{h}");
        assert!(msg.is_ascii());
    }
}
