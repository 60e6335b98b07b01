//! A sans-IO SMTP client (RFC 5321) for one message to one recipient: fed
//! what the server sends, it says what to write next. The Worker drives it
//! over a TCP `connect()` socket (`glue::mail`); tests drive it with lines.
//!
//! The dialogue, as lettre and mail-send speak it: wait for the 220
//! greeting, `EHLO` (on a 5xx, `HELO` once), `MAIL FROM:<from>`,
//! `RCPT TO:<to>`, `DATA`, on 354 the message with every line that starts
//! with `.` doubled and then `.` alone, then `QUIT`. Every reply's code is
//! checked; a failure stops the dialogue with a [`SmtpError`] naming the step
//! (and is followed by a polite `QUIT`). Replies are bounded: a line longer
//! than [`MAX_REPLY_LINE`] or a reply of more than [`MAX_REPLY_LINES`] lines
//! is a `smtp_bad_reply`, never a growing buffer.
//!
//! TLS is the socket's: `smtps://` opens it with TLS from the start. Not
//! done: AUTH, STARTTLS (the Worker's socket could upgrade, but this client
//! does not negotiate it) and pipelining.

use std::fmt;

/// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF;
/// servers send longer ones in practice (EHLO keywords), so allow some room.
pub const MAX_REPLY_LINE: usize = 2048;
/// EHLO lists one extension per line; real servers send about a dozen.
pub const MAX_REPLY_LINES: usize = 100;
/// Characters of a server's reply text kept in an error.
const MAX_ERROR_TEXT: usize = 200;

/// The step of the dialogue a failure happened at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Hello,
    MailFrom,
    RcptTo,
    Data,
    Message,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Greeting => "greeting",
            Stage::Hello => "hello",
            Stage::MailFrom => "mail_from",
            Stage::RcptTo => "rcpt_to",
            Stage::Data => "data",
            Stage::Message => "message",
        }
    }
}

/// Why a message was not handed over. [`SmtpError::code`] is the stable
/// machine code the logs show; [`SmtpError::is_transient`] whether trying
/// again later may help (4xx, or no conversation at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpError {
    /// The TCP connection could not be made (the driver's).
    Connect(String),
    /// The server did not answer in time (the driver's).
    Timeout(Stage),
    /// The connection broke or closed before the message was accepted.
    Closed(Stage),
    /// A reply that is not SMTP, too long, or with mixed codes.
    BadReply(Stage, String),
    /// The server refused at a step: its code and text.
    Rejected {
        stage: Stage,
        code: u16,
        text: String,
    },
}

impl SmtpError {
    pub fn code(&self) -> &'static str {
        match self {
            SmtpError::Connect(_) => "smtp_connect_failed",
            SmtpError::Timeout(_) => "smtp_timeout",
            SmtpError::Closed(_) => "smtp_connection_closed",
            SmtpError::BadReply(..) => "smtp_bad_reply",
            SmtpError::Rejected { stage, .. } => match stage {
                Stage::Greeting => "smtp_greeting_rejected",
                Stage::Hello => "smtp_hello_rejected",
                Stage::MailFrom => "smtp_sender_rejected",
                Stage::RcptTo => "smtp_recipient_rejected",
                Stage::Data => "smtp_data_rejected",
                Stage::Message => "smtp_message_rejected",
            },
        }
    }

    /// 4xx replies and failures of the connection itself may pass later;
    /// 5xx replies and garbled replies will not.
    pub fn is_transient(&self) -> bool {
        match self {
            SmtpError::Connect(_) | SmtpError::Timeout(_) | SmtpError::Closed(_) => true,
            SmtpError::BadReply(..) => false,
            SmtpError::Rejected { code, .. } => (400..500).contains(code),
        }
    }
}

impl fmt::Display for SmtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpError::Connect(why) => write!(f, "{}: {why}", self.code()),
            SmtpError::Timeout(s) | SmtpError::Closed(s) => {
                write!(f, "{} at {}", self.code(), s.as_str())
            }
            SmtpError::BadReply(s, why) => write!(f, "{} at {}: {why}", self.code(), s.as_str()),
            SmtpError::Rejected { code, text, .. } => write!(f, "{}: {code} {text}", self.code()),
        }
    }
}

/// One complete server reply: its code and its lines' texts joined by spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// Collects server bytes into lines and lines into replies, bounded.
#[derive(Debug, Default)]
struct ReplyReader {
    line: Vec<u8>,
    code: Option<u16>,
    text: String,
    lines: usize,
}

impl ReplyReader {
    /// The next complete reply in `input` from `*at` on, if there is one.
    fn next(&mut self, input: &[u8], at: &mut usize) -> Result<Option<Reply>, String> {
        while let Some(&b) = input.get(*at) {
            *at += 1;
            if b != b'\n' {
                if self.line.len() >= MAX_REPLY_LINE {
                    return Err(format!("a reply line longer than {MAX_REPLY_LINE} bytes"));
                }
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(reply) = self.line_done(&line)? {
                return Ok(Some(reply));
            }
        }
        Ok(None)
    }

    /// `250-text` continues a reply, `250 text` (or `250`) ends it.
    fn line_done(&mut self, line: &[u8]) -> Result<Option<Reply>, String> {
        let shown = || {
            String::from_utf8_lossy(line)
                .chars()
                .take(60)
                .collect::<String>()
        };
        let code = match line.get(..3) {
            Some(d) if d.iter().all(u8::is_ascii_digit) && (b'2'..=b'5').contains(&d[0]) => {
                u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0')
            }
            _ => return Err(format!("not an SMTP reply: {:?}", shown())),
        };
        if self.code.is_some_and(|c| c != code) {
            return Err(format!("a multiline reply changed its code: {:?}", shown()));
        }
        self.code = Some(code);
        self.lines += 1;
        if self.lines > MAX_REPLY_LINES {
            return Err(format!("a reply of more than {MAX_REPLY_LINES} lines"));
        }
        let (more, text) = match line.get(3) {
            None => (false, &[][..]),
            Some(b' ') => (false, line.get(4..).unwrap_or_default()),
            Some(b'-') => (true, line.get(4..).unwrap_or_default()),
            Some(_) => return Err(format!("not an SMTP reply: {:?}", shown())),
        };
        if self.text.len() < MAX_ERROR_TEXT {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            self.text.push_str(&String::from_utf8_lossy(text));
        }
        if more {
            return Ok(None);
        }
        let text: String = std::mem::take(&mut self.text)
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_ERROR_TEXT)
            .collect();
        self.code = None;
        self.lines = 0;
        Ok(Some(Reply { code, text }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    MailFrom,
    RcptTo,
    Data,
    Message,
    Quit,
    Finished,
}

/// What to do after feeding the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes (nothing when empty), then read more.
    Write(Vec<u8>),
    /// Write these bytes (a `QUIT`, or nothing), then close: the dialogue is over.
    Finish(Vec<u8>, Result<(), SmtpError>),
}

/// One message to one recipient. Addresses go into commands as given, so the
/// caller passes checked ones (no CR/LF, no `<>`): see [`crate::mail::is_plain_address`].
#[derive(Debug)]
pub struct SmtpClient {
    state: State,
    hello_name: String,
    from: String,
    to: String,
    /// The message as it goes after `DATA`: CRLF lines, dot-stuffed, ending `.\r\n`.
    data: Vec<u8>,
    reader: ReplyReader,
    outcome: Option<Result<(), SmtpError>>,
}

impl SmtpClient {
    /// `hello_name` is the domain `EHLO` announces; `message` the RFC 5322
    /// message (any line ends: they are sent as CRLF).
    pub fn new(hello_name: &str, from: &str, to: &str, message: &[u8]) -> SmtpClient {
        SmtpClient {
            state: State::Greeting,
            hello_name: hello_name.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            data: dot_stuffed(message),
            reader: ReplyReader::default(),
            outcome: None,
        }
    }

    /// The step the dialogue is at (a driver's timeout names it).
    pub fn stage(&self) -> Stage {
        match self.state {
            State::Greeting => Stage::Greeting,
            State::Ehlo | State::Helo => Stage::Hello,
            State::MailFrom => Stage::MailFrom,
            State::RcptTo => Stage::RcptTo,
            State::Data => Stage::Data,
            State::Message | State::Quit | State::Finished => Stage::Message,
        }
    }

    /// Whether the dialogue is over.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Feeds what the server sent. Bytes after the dialogue ended are ignored.
    pub fn receive(&mut self, input: &[u8]) -> Step {
        let mut out = Vec::new();
        let mut at = 0;
        while self.state != State::Finished {
            match self.reader.next(input, &mut at) {
                Ok(Some(reply)) => {
                    if let Some(done) = self.on_reply(reply, &mut out) {
                        self.state = State::Finished;
                        self.outcome = Some(done.clone());
                        return Step::Finish(out, done);
                    }
                }
                Ok(None) => break,
                Err(why) => {
                    let err = SmtpError::BadReply(self.stage(), why);
                    self.state = State::Finished;
                    self.outcome = Some(Err(err.clone()));
                    return Step::Finish(out, Err(err));
                }
            }
        }
        Step::Write(out)
    }

    /// The server closed the connection (or it broke): the outcome so far.
    pub fn closed(&mut self) -> Result<(), SmtpError> {
        if let Some(done) = &self.outcome {
            return done.clone();
        }
        // The message was accepted before QUIT's reply: it is delivered.
        let done = if self.state == State::Quit {
            Ok(())
        } else {
            Err(SmtpError::Closed(self.stage()))
        };
        self.state = State::Finished;
        self.outcome = Some(done.clone());
        done
    }

    fn command(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// The failure at the current step, after which the client says `QUIT`.
    fn refuse(&self, reply: Reply, out: &mut Vec<u8>) -> Option<Result<(), SmtpError>> {
        // A 421 closes the connection from the server's side: no QUIT then.
        if reply.code != 421 {
            Self::command(out, "QUIT");
        }
        Some(Err(SmtpError::Rejected {
            stage: self.stage(),
            code: reply.code,
            text: reply.text,
        }))
    }

    /// Handles one reply; `Some` when the dialogue is over.
    fn on_reply(&mut self, reply: Reply, out: &mut Vec<u8>) -> Option<Result<(), SmtpError>> {
        let ok = |code: u16| reply.code == code;
        match self.state {
            State::Greeting if ok(220) => {
                Self::command(out, &format!("EHLO {}", self.hello_name));
                self.state = State::Ehlo;
            }
            // An old server that does not know EHLO: say HELO once.
            State::Ehlo if (500..=504).contains(&reply.code) || reply.code == 550 => {
                Self::command(out, &format!("HELO {}", self.hello_name));
                self.state = State::Helo;
            }
            State::Ehlo | State::Helo if ok(250) => {
                Self::command(out, &format!("MAIL FROM:<{}>", self.from));
                self.state = State::MailFrom;
            }
            State::MailFrom if ok(250) => {
                Self::command(out, &format!("RCPT TO:<{}>", self.to));
                self.state = State::RcptTo;
            }
            State::RcptTo if ok(250) || ok(251) => {
                Self::command(out, "DATA");
                self.state = State::Data;
            }
            State::Data if ok(354) => {
                out.extend_from_slice(&self.data);
                self.state = State::Message;
            }
            State::Message if ok(250) => {
                Self::command(out, "QUIT");
                self.state = State::Quit;
            }
            // QUIT's reply, whatever it is: the message was accepted before.
            State::Quit => return Some(Ok(())),
            State::Finished => return self.outcome.clone(),
            _ => return self.refuse(reply, out),
        }
        None
    }
}

/// The message as it follows `DATA`: every line ending CRLF (bare LF and CR
/// become CRLF), a line that starts with `.` gets another (RFC 5321
/// 4.5.2), then `.` alone ends it.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut line_start = true;
    let mut i = 0;
    while let Some(&b) = message.get(i) {
        i += 1;
        match b {
            b'\r' => {
                // CRLF or a bare CR: one line end either way.
                if message.get(i) == Some(&b'\n') {
                    i += 1;
                }
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                if line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                line_start = false;
            }
        }
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Where `SMTP_URL` points: `smtp://host[:port]` (port 25 by default), or
/// `smtps://host[:port]`, TLS from the first byte (port 465 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// Implicit TLS (`smtps://`): the socket speaks TLS before SMTP.
    pub tls: bool,
}

/// Reads `SMTP_URL`. Credentials are refused by name rather than ignored:
/// this client has no AUTH.
pub fn parse_smtp_url(s: &str) -> Result<SmtpServer, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("SMTP_URL is not a URL: {e}"))?;
    let tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(format!(
                "SMTP_URL: scheme {other:?} is not smtp:// or smtps://"
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("SMTP_URL: credentials are not supported (no SMTP AUTH)".into());
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err("SMTP_URL has no host".into()),
    };
    Ok(SmtpServer {
        host,
        port: url.port().unwrap_or(if tls { 465 } else { 25 }),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> SmtpClient {
        SmtpClient::new(
            "voxline.local",
            "voxline@localhost",
            "ops@example.com",
            b"Subject: hi\r\n\r\nline one\r\n.hidden\r\n",
        )
    }

    fn written(step: Step) -> String {
        match step {
            Step::Write(b) => String::from_utf8(b).unwrap(),
            Step::Finish(b, r) => panic!("finished early: {r:?} after {:?}", String::from_utf8(b)),
        }
    }

    #[test]
    fn a_whole_dialogue_sends_the_message_stuffed_and_quits() {
        let mut c = client();
        assert_eq!(
            written(c.receive(b"220 sink ESMTP\r\n")),
            "EHLO voxline.local\r\n"
        );
        // A multiline EHLO reply, split across reads.
        assert_eq!(written(c.receive(b"250-sink\r\n250-SIZE 100")), "");
        assert_eq!(
            written(c.receive(b"00\r\n250 8BITMIME\r\n")),
            "MAIL FROM:<voxline@localhost>\r\n"
        );
        assert_eq!(
            written(c.receive(b"250 OK\r\n")),
            "RCPT TO:<ops@example.com>\r\n"
        );
        assert_eq!(written(c.receive(b"250 OK\r\n")), "DATA\r\n");
        assert_eq!(
            written(c.receive(b"354 End data with <CR><LF>.<CR><LF>\r\n")),
            "Subject: hi\r\n\r\nline one\r\n..hidden\r\n.\r\n"
        );
        assert_eq!(
            c.receive(b"250 OK queued\r\n"),
            Step::Write(b"QUIT\r\n".to_vec())
        );
        assert!(!c.is_finished());
        assert_eq!(c.receive(b"221 Bye\r\n"), Step::Finish(vec![], Ok(())));
        assert!(c.is_finished());
        // A close after QUIT's reply, or instead of it, changes nothing.
        assert_eq!(c.closed(), Ok(()));
        let mut early = client();
        for r in [
            &b"220 x\r\n"[..],
            b"250 x\r\n",
            b"250 x\r\n",
            b"250 x\r\n",
            b"354 x\r\n",
            b"250 x\r\n",
        ] {
            let _ = early.receive(r);
        }
        assert_eq!(early.closed(), Ok(()));
    }

    #[test]
    fn an_old_server_gets_helo_once() {
        let mut c = client();
        let _ = c.receive(b"220 old\n");
        assert_eq!(
            written(c.receive(b"502 command not implemented\n")),
            "HELO voxline.local\r\n"
        );
        assert_eq!(
            written(c.receive(b"250 old\n")),
            "MAIL FROM:<voxline@localhost>\r\n"
        );
        let mut c = client();
        let _ = c.receive(b"220 old\n");
        let _ = c.receive(b"500 what\n");
        match c.receive(b"501 no\n") {
            Step::Finish(quit, Err(e)) => {
                assert_eq!(quit, b"QUIT\r\n");
                assert_eq!(e.code(), "smtp_hello_rejected");
                assert!(!e.is_transient());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_refusal_names_its_step_and_says_whether_to_retry() {
        let replies: [&[u8]; 6] = [
            b"220 x\r\n",
            b"250 x\r\n",
            b"250 x\r\n",
            b"250 x\r\n",
            b"354 x\r\n",
            b"250 x\r\n",
        ];
        let codes = [
            ("smtp_greeting_rejected", &b"554 no service\r\n"[..]),
            ("smtp_hello_rejected", b"421 busy, closing\r\n"),
            ("smtp_sender_rejected", b"553 bad sender\r\n"),
            ("smtp_recipient_rejected", b"550 5.1.1 no such user\r\n"),
            ("smtp_data_rejected", b"451 try later\r\n"),
            ("smtp_message_rejected", b"552 too big\r\n"),
        ];
        for (n, (code, refusal)) in codes.into_iter().enumerate() {
            let mut c = client();
            for r in &replies[..n] {
                let _ = written(c.receive(r));
            }
            match c.receive(refusal) {
                Step::Finish(out, Err(e)) => {
                    assert_eq!(e.code(), code);
                    let text = String::from_utf8_lossy(refusal);
                    let reply_code: u16 = text[..3].parse().unwrap();
                    assert_eq!(e.is_transient(), reply_code < 500, "{code}");
                    // 421 means the server is closing: no QUIT after it.
                    let quit: &[u8] = if reply_code == 421 { b"" } else { b"QUIT\r\n" };
                    assert_eq!(out, quit, "{code}");
                    assert!(e.to_string().contains(&text[4..text.len() - 2]), "{e}");
                }
                other => panic!("{code}: {other:?}"),
            }
            assert!(c.is_finished());
        }
        // A recipient the server will forward is accepted (251).
        let mut c = client();
        for r in &replies[..3] {
            let _ = c.receive(r);
        }
        assert_eq!(written(c.receive(b"251 will forward\r\n")), "DATA\r\n");
    }

    #[test]
    fn garbage_and_unbounded_replies_are_refused() {
        let finish_code = |input: &[u8]| match client().receive(input) {
            Step::Finish(_, Err(e)) => e.code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            finish_code(b"HTTP/1.1 400 Bad Request\r\n"),
            "smtp_bad_reply"
        );
        assert_eq!(finish_code(b"220-a\r\n250 b\r\n"), "smtp_bad_reply");
        assert_eq!(finish_code(b"2x0 a\r\n"), "smtp_bad_reply");
        assert_eq!(finish_code(b"220x\r\n"), "smtp_bad_reply");
        // One endless line.
        let mut c = client();
        let chunk = vec![b'2'; 1000];
        let mut step = Step::Write(vec![]);
        for _ in 0..5 {
            step = c.receive(&chunk);
            if c.is_finished() {
                break;
            }
        }
        assert!(matches!(
            step,
            Step::Finish(_, Err(SmtpError::BadReply(Stage::Greeting, _)))
        ));
        // Endless continuation lines.
        let mut c = client();
        let many = "220-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert!(matches!(
            c.receive(many.as_bytes()),
            Step::Finish(_, Err(SmtpError::BadReply(..)))
        ));
    }

    #[test]
    fn a_close_before_the_message_is_accepted_is_a_transient_failure() {
        let mut c = client();
        let _ = c.receive(b"220 x\r\n");
        let e = c.closed().unwrap_err();
        assert_eq!(
            (e.code(), e.is_transient()),
            ("smtp_connection_closed", true)
        );
        assert_eq!(e, SmtpError::Closed(Stage::Hello));
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_lines_with_crlf() {
        assert_eq!(
            dot_stuffed(b"a\n.b\r\n..c\rd"),
            b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuffed(b""), b".\r\n");
        assert_eq!(dot_stuffed(b"x.y\r\n"), b"x.y\r\n.\r\n");
    }

    #[test]
    fn smtp_urls() {
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:2525"),
            Ok(SmtpServer {
                host: "127.0.0.1".into(),
                port: 2525,
                tls: false
            })
        );
        assert_eq!(
            parse_smtp_url("smtp://mail.example.com").map(|s| s.port),
            Ok(25)
        );
        assert_eq!(
            parse_smtp_url("smtps://mail.example.com"),
            Ok(SmtpServer {
                host: "mail.example.com".into(),
                port: 465,
                tls: true
            })
        );
        assert!(parse_smtp_url("smtp://u:p@mail.example.com")
            .unwrap_err()
            .contains("credentials"));
        assert!(parse_smtp_url("http://mail.example.com").is_err());
        assert!(parse_smtp_url("mail.example.com:25").is_err());
    }
}
