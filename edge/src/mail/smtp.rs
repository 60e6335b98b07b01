//! A sans-IO SMTP client (RFC 5321) for one message to one recipient: fed
//! what the server sends, it says what to write next. The Worker drives it
//! over a TCP `connect()` socket (`glue::mail`); tests drive it with lines.
//!
//! The dialogue, as lettre and mail-send speak it: wait for the 220
//! greeting, `EHLO` (on a 5xx, `HELO` once, when no extension is needed);
//! when asked, `STARTTLS` (the driver upgrades the socket, then `EHLO`
//! again) and `AUTH PLAIN`; then `MAIL FROM:<from>`, `RCPT TO:<to>`,
//! `DATA`, on 354 the message with every line that starts with `.` doubled
//! and then `.` alone, then `QUIT`. Every reply's code is
//! checked; a failure stops the dialogue with a [`SmtpError`] naming the step
//! (and is followed by a polite `QUIT`). Replies are bounded: a line longer
//! than [`MAX_REPLY_LINE`] or a reply of more than [`MAX_REPLY_LINES`] lines
//! is a `smtp_bad_reply`, never a growing buffer.
//!
//! TLS is the socket's: `smtps://` opens it with TLS from the start,
//! `?tls=required` (lettre's spelling) upgrades it after `STARTTLS`; bytes
//! the server sent after STARTTLS's 220 are refused, not carried into the
//! TLS session (CVE-2011-0411). Credentials go only over TLS, or to a
//! loopback server. Not done: AUTH mechanisms other than PLAIN, pipelining.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
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
    StartTls,
    Auth,
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
            Stage::StartTls => "starttls",
            Stage::Auth => "auth",
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
    /// The server does not offer what the configuration requires
    /// (`STARTTLS`, or `AUTH PLAIN`).
    Unavailable(Stage),
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
                Stage::StartTls => "smtp_starttls_rejected",
                Stage::Auth => "smtp_auth_failed",
                Stage::MailFrom => "smtp_sender_rejected",
                Stage::RcptTo => "smtp_recipient_rejected",
                Stage::Data => "smtp_data_rejected",
                Stage::Message => "smtp_message_rejected",
            },
            SmtpError::Unavailable(Stage::StartTls) => "smtp_starttls_unavailable",
            SmtpError::Unavailable(_) => "smtp_auth_unavailable",
        }
    }

    /// 4xx replies and failures of the connection itself may pass later;
    /// 5xx replies and garbled replies will not.
    pub fn is_transient(&self) -> bool {
        match self {
            SmtpError::Connect(_) | SmtpError::Timeout(_) | SmtpError::Closed(_) => true,
            SmtpError::BadReply(..) | SmtpError::Unavailable(_) => false,
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
            SmtpError::Unavailable(s) => {
                write!(
                    f,
                    "{}: the server does not offer {}",
                    self.code(),
                    s.as_str()
                )
            }
        }
    }
}

/// One complete server reply: its code, its lines' texts joined by spaces
/// (cut for errors), and each line's start in upper case (EHLO keywords).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
    pub lines: Vec<String>,
}

/// Characters of each reply line kept to read EHLO keywords from.
const MAX_KEYWORD_LINE: usize = 128;

impl Reply {
    /// Whether an EHLO reply offers `keyword` (its first line is the greeting).
    fn offers(&self, keyword: &str) -> bool {
        self.lines
            .iter()
            .skip(1)
            .any(|l| l.split_ascii_whitespace().next() == Some(keyword))
    }

    /// Whether an EHLO reply offers `AUTH` with `mechanism` (also the old `AUTH=` form).
    fn offers_auth(&self, mechanism: &str) -> bool {
        self.lines.iter().skip(1).any(|l| {
            let mut words = l.split(|c: char| c.is_ascii_whitespace() || c == '=');
            words.next() == Some("AUTH") && words.any(|w| w == mechanism)
        })
    }
}

/// Collects server bytes into lines and lines into replies, bounded.
#[derive(Debug, Default)]
struct ReplyReader {
    line: Vec<u8>,
    code: Option<u16>,
    text: String,
    lines: Vec<String>,
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
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(format!("a reply of more than {MAX_REPLY_LINES} lines"));
        }
        let (more, text) = match line.get(3) {
            None => (false, &[][..]),
            Some(b' ') => (false, line.get(4..).unwrap_or_default()),
            Some(b'-') => (true, line.get(4..).unwrap_or_default()),
            Some(_) => return Err(format!("not an SMTP reply: {:?}", shown())),
        };
        self.lines.push(
            String::from_utf8_lossy(text)
                .chars()
                .take(MAX_KEYWORD_LINE)
                .collect::<String>()
                .to_ascii_uppercase(),
        );
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
        let lines = std::mem::take(&mut self.lines);
        Ok(Some(Reply { code, text, lines }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// STARTTLS was accepted: the driver upgrades the socket.
    TlsPending,
    Auth,
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
    /// Upgrade the connection to TLS now, then call [`SmtpClient::tls_started`].
    StartTls,
}

/// A user name and password for `AUTH PLAIN`; `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <redacted> }}",
            self.user
        )
    }
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
    /// Say STARTTLS before anything else (and fail if it is not offered).
    starttls: bool,
    tls_done: bool,
    auth: Option<Credentials>,
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
            starttls: false,
            tls_done: false,
            auth: None,
        }
    }

    /// Requires STARTTLS: the dialogue fails `smtp_starttls_unavailable`
    /// when the server does not offer it.
    pub fn with_starttls(mut self) -> SmtpClient {
        self.starttls = true;
        self
    }

    /// Logs in with `AUTH PLAIN` after EHLO (and STARTTLS): fails
    /// `smtp_auth_unavailable` when the server does not offer it.
    pub fn with_auth(mut self, credentials: Credentials) -> SmtpClient {
        self.auth = Some(credentials);
        self
    }

    /// The socket is TLS now: say EHLO again (RFC 3207 4.2: what was
    /// learnt before is forgotten).
    pub fn tls_started(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.state == State::TlsPending {
            self.tls_done = true;
            Self::command(&mut out, &format!("EHLO {}", self.hello_name));
            self.state = State::Ehlo;
        }
        out
    }

    /// The step the dialogue is at (a driver's timeout names it).
    pub fn stage(&self) -> Stage {
        match self.state {
            State::Greeting => Stage::Greeting,
            State::Ehlo | State::Helo => Stage::Hello,
            State::StartTls | State::TlsPending => Stage::StartTls,
            State::Auth => Stage::Auth,
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
                    if self.state == State::StartTls && reply.code == 220 {
                        // Nothing may follow the 220 in clear: it would be read as if
                        // it came through TLS.
                        if at < input.len() || !self.reader.line.is_empty() {
                            let err = SmtpError::BadReply(
                                Stage::StartTls,
                                "data after STARTTLS's 220".into(),
                            );
                            self.state = State::Finished;
                            self.outcome = Some(Err(err.clone()));
                            return Step::Finish(out, Err(err));
                        }
                        self.state = State::TlsPending;
                        return Step::StartTls;
                    }
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

    /// A required extension is missing: QUIT and fail.
    fn unavailable(&self, stage: Stage, out: &mut Vec<u8>) -> Option<Result<(), SmtpError>> {
        Self::command(out, "QUIT");
        Some(Err(SmtpError::Unavailable(stage)))
    }

    fn mail_from(&mut self, out: &mut Vec<u8>) {
        Self::command(out, &format!("MAIL FROM:<{}>", self.from));
        self.state = State::MailFrom;
    }

    /// Handles one reply; `Some` when the dialogue is over.
    fn on_reply(&mut self, reply: Reply, out: &mut Vec<u8>) -> Option<Result<(), SmtpError>> {
        let ok = |code: u16| reply.code == code;
        let needs_ehlo = (self.starttls && !self.tls_done) || self.auth.is_some();
        match self.state {
            State::Greeting if ok(220) => {
                Self::command(out, &format!("EHLO {}", self.hello_name));
                self.state = State::Ehlo;
            }
            // An old server that does not know EHLO: say HELO once (when no
            // extension is needed).
            State::Ehlo
                if !needs_ehlo && ((500..=504).contains(&reply.code) || reply.code == 550) =>
            {
                Self::command(out, &format!("HELO {}", self.hello_name));
                self.state = State::Helo;
            }
            State::Ehlo if ok(250) && self.starttls && !self.tls_done => {
                if !reply.offers("STARTTLS") {
                    return self.unavailable(Stage::StartTls, out);
                }
                Self::command(out, "STARTTLS");
                self.state = State::StartTls;
            }
            State::Ehlo if ok(250) && self.auth.is_some() => {
                if !reply.offers_auth("PLAIN") {
                    return self.unavailable(Stage::Auth, out);
                }
                let Some(c) = &self.auth else {
                    return self.unavailable(Stage::Auth, out);
                };
                let token = format!("\0{}\0{}", c.user, c.password);
                Self::command(out, &format!("AUTH PLAIN {}", BASE64.encode(token)));
                self.state = State::Auth;
            }
            State::Auth if ok(235) => self.mail_from(out),
            State::Ehlo | State::Helo if ok(250) => self.mail_from(out),
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

/// Where `SMTP_URL` points: `smtp://host[:port]` (port 25 by default),
/// `smtps://host[:port]` (TLS from the first byte, port 465), or
/// `smtp://host:587?tls=required` (STARTTLS, required); with
/// `user:password@` (percent-encoded) for `AUTH PLAIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// Implicit TLS (`smtps://`): the socket speaks TLS before SMTP.
    pub tls: bool,
    /// STARTTLS before anything else (`?tls=required`).
    pub starttls: bool,
    pub credentials: Option<Credentials>,
}

impl SmtpServer {
    /// A client for one message to this server, with its TLS and AUTH settings.
    pub fn client(&self, hello_name: &str, from: &str, to: &str, message: &[u8]) -> SmtpClient {
        let mut client = SmtpClient::new(hello_name, from, to, message);
        if self.starttls {
            client = client.with_starttls();
        }
        if let Some(c) = &self.credentials {
            client = client.with_auth(c.clone());
        }
        client
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        // smtp:// is not a special scheme: its host is opaque text, an IP address too.
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        }
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    }
}

/// Reads `SMTP_URL`. Credentials are accepted only with TLS (`smtps://` or
/// `?tls=required`) or to a loopback host: never sent in clear over a network.
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
    let mut starttls = false;
    for (k, v) in url.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("tls", "required") if !tls => starttls = true,
            ("tls", "none") => {}
            _ => {
                return Err(format!(
                    "SMTP_URL: unknown parameter {k}={v} (only tls=required)"
                ))
            }
        }
    }
    let host = url.host().ok_or("SMTP_URL has no host")?;
    let name = match &host {
        url::Host::Domain(d) if !d.is_empty() => d.to_string(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => a.to_string(),
        _ => return Err("SMTP_URL has no host".into()),
    };
    let decode = |t: &str| {
        percent_encoding::percent_decode_str(t)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "SMTP_URL: the credentials are not UTF-8".to_string())
    };
    let credentials = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        if !(tls || starttls || is_loopback(&host)) {
            return Err(
                "SMTP_URL: credentials need smtps:// or ?tls=required (or a loopback host)".into(),
            );
        }
        Some(Credentials {
            user: decode(url.username())?,
            password: decode(url.password().unwrap_or(""))?,
        })
    };
    Ok(SmtpServer {
        host: name,
        port: url.port().unwrap_or(if tls { 465 } else { 25 }),
        tls,
        starttls,
        credentials,
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
            Step::StartTls => panic!("asked for TLS"),
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
        let server = |host: &str, port, tls, starttls, credentials| SmtpServer {
            host: host.into(),
            port,
            tls,
            starttls,
            credentials,
        };
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:2525"),
            Ok(server("127.0.0.1", 2525, false, false, None))
        );
        assert_eq!(
            parse_smtp_url("smtp://mail.example.com").map(|s| s.port),
            Ok(25)
        );
        assert_eq!(
            parse_smtp_url("smtps://mail.example.com"),
            Ok(server("mail.example.com", 465, true, false, None))
        );
        let user = Credentials {
            user: "api+x@example.com".into(),
            password: "p:ss w/rd".into(),
        };
        assert_eq!(
            parse_smtp_url(
                "smtp://api%2Bx%40example.com:p%3Ass%20w%2Frd@mail.example.com:587?tls=required"
            ),
            Ok(server(
                "mail.example.com",
                587,
                false,
                true,
                Some(user.clone())
            ))
        );
        assert_eq!(
            parse_smtp_url("smtps://api%2Bx%40example.com:p%3Ass%20w%2Frd@mail.example.com")
                .map(|s| s.credentials),
            Ok(Some(user))
        );
        // Credentials in clear only to this machine.
        assert!(parse_smtp_url("smtp://u:p@mail.example.com")
            .unwrap_err()
            .contains("credentials"));
        assert!(parse_smtp_url("smtp://u:p@127.0.0.1:2525").is_ok());
        assert!(parse_smtp_url("smtp://mail.example.com?tls=maybe").is_err());
        assert!(parse_smtp_url("http://mail.example.com").is_err());
        assert!(parse_smtp_url("mail.example.com:25").is_err());
    }

    fn reply_all(c: &mut SmtpClient, replies: &[&[u8]]) {
        for r in replies {
            let _ = written(c.receive(r));
        }
    }

    #[test]
    fn starttls_upgrades_then_says_ehlo_again() {
        let mut c = client().with_starttls();
        let _ = c.receive(b"220 x\r\n");
        assert_eq!(
            written(c.receive(b"250-x\r\n250-PIPELINING\r\n250 STARTTLS\r\n")),
            "STARTTLS\r\n"
        );
        assert_eq!(c.receive(b"220 go ahead\r\n"), Step::StartTls);
        assert_eq!(c.tls_started(), b"EHLO voxline.local\r\n");
        // After TLS: no second STARTTLS, straight on.
        assert_eq!(
            written(c.receive(b"250-x\r\n250 8BITMIME\r\n")),
            "MAIL FROM:<voxline@localhost>\r\n"
        );
        // A server that does not offer it: fail, never send in clear.
        let mut c = client().with_starttls();
        let _ = c.receive(b"220 x\r\n");
        match c.receive(b"250-x\r\n250 SIZE 1000\r\n") {
            Step::Finish(out, Err(e)) => {
                assert_eq!(out, b"QUIT\r\n");
                assert_eq!(
                    (e.code(), e.is_transient()),
                    ("smtp_starttls_unavailable", false)
                );
            }
            other => panic!("{other:?}"),
        }
        // Nor with HELO.
        let mut c = client().with_starttls();
        let _ = c.receive(b"220 x\r\n");
        assert!(matches!(
            c.receive(b"502 no\r\n"),
            Step::Finish(
                _,
                Err(SmtpError::Rejected {
                    stage: Stage::Hello,
                    ..
                })
            )
        ));
    }

    #[test]
    fn bytes_after_starttls_220_are_refused() {
        let mut c = client().with_starttls();
        reply_all(&mut c, &[b"220 x\r\n", b"250-x\r\n250 STARTTLS\r\n"]);
        match c.receive(b"220 go ahead\r\n250 injected\r\n") {
            Step::Finish(_, Err(e)) => assert_eq!(
                e,
                SmtpError::BadReply(Stage::StartTls, "data after STARTTLS's 220".into())
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn auth_plain_logs_in_before_mail_from() {
        let creds = Credentials {
            user: "u".into(),
            password: "p".into(),
        };
        assert!(!format!("{creds:?}").contains("\"p\""));
        let mut c = client().with_auth(creds.clone());
        let _ = c.receive(b"220 x\r\n");
        // python3 -c 'import base64;print(base64.b64encode(b"\0u\0p"))'
        assert_eq!(
            written(c.receive(b"250-x\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n")),
            "AUTH PLAIN AHUAcA==\r\n"
        );
        assert_eq!(
            written(c.receive(b"235 2.7.0 Authentication successful\r\n")),
            "MAIL FROM:<voxline@localhost>\r\n"
        );
        // The old `AUTH=` spelling counts; a wrong password is final.
        let mut c = client().with_auth(creds.clone());
        reply_all(&mut c, &[b"220 x\r\n", b"250-x\r\n250 AUTH=PLAIN\r\n"]);
        match c.receive(b"535 5.7.8 bad credentials\r\n") {
            Step::Finish(_, Err(e)) => {
                assert_eq!((e.code(), e.is_transient()), ("smtp_auth_failed", false))
            }
            other => panic!("{other:?}"),
        }
        // No AUTH PLAIN offered: fail rather than send unauthenticated.
        let mut c = client().with_auth(creds);
        let _ = c.receive(b"220 x\r\n");
        match c.receive(b"250-x\r\n250 AUTH CRAM-MD5\r\n") {
            Step::Finish(_, Err(e)) => assert_eq!(e.code(), "smtp_auth_unavailable"),
            other => panic!("{other:?}"),
        }
    }
}
