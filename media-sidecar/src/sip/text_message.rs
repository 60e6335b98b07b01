//! Text messages (SMS) as out-of-dialog SIP MESSAGE requests (RFC 3428),
//! sans-IO, for [`super::endpoint::Endpoint`] to run:
//!
//! - [`MessageClient`]: one MESSAGE to one trunk: the non-INVITE client
//!   transaction (Timer E retransmissions, Timer F), one Digest retry per
//!   401/407 with the trunk's credentials (as for INVITE), the final answer
//!   as a [`MessageEnd`].
//! - [`parse_inbound`]: what a MESSAGE from the trunk carries (the numbers,
//!   `text/plain` or a delivery notification), bounded, or the status code
//!   that refuses it.
//! - [`parse_imdn`]: the `message/imdn+xml` delivery notification (RFC 5438).
//! - [`InboundTable`]: the server transactions of MESSAGEs we were sent: one
//!   answer each, given when the edge has answered (or 480 when it has not
//!   within [`ANSWER_WITHIN_MS`]), retransmissions absorbed meanwhile and
//!   answered the same afterwards.
//!
//! IMDN (RFC 5438) rides in CPIM (`message/cpim`, RFC 3862) header fields,
//! not in SIP headers: a MESSAGE asks for delivery notifications only when
//! its body is wrapped in CPIM ([`MessageSpec::imdn`]); a plain `text/plain`
//! MESSAGE cannot. Inbound, a CPIM wrapper is opened (one level) and its
//! content handled like a bare body.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use voxline_shared::sidecar_link::{InboundContent, MessageOutcome, MAX_MESSAGE_CHARS};

use super::auth::{self, Credentials, DigestClient};
use super::call::{new_branch, Transmit};
use super::msg::{self, response_to, Message};
use super::transaction::{NonInviteClient, Timers, TxEvent};
use super::transport::Transport;
use crate::random::Random;

/// Stable words for a failed message (`MessageResult::reason`).
pub mod reasons {
    /// A final answer >= 300 (auth included, once our credentials were refused).
    pub const REJECTED: &str = "rejected";
    /// Timer F: no final answer.
    pub const TIMEOUT: &str = "timeout";
    /// It could not be sent (socket, driver).
    pub const TRANSPORT: &str = "transport";
    /// Its deadline passed before it was sent.
    pub const EXPIRED: &str = "expired";
    /// No trunk to send it through (none configured, or all resting).
    pub const NO_TRUNK: &str = "no_trunk";
}

/// Most bytes of a `text/plain` body we take (MAX_MESSAGE_CHARS of up to 4
/// UTF-8 bytes each); more: 413.
pub const MAX_TEXT_BODY_BYTES: usize = MAX_MESSAGE_CHARS * 4;
/// Most bytes of a delivery notification (or of a CPIM wrapper) we take.
pub const MAX_IMDN_BODY_BYTES: usize = 8 * 1024;
/// Longest IMDN message id we keep.
pub const MAX_IMDN_ID_CHARS: usize = 256;
/// Longest sender (From user part or URI) forwarded.
pub const MAX_SENDER_CHARS: usize = 128;
/// The edge must answer an inbound MESSAGE within this; otherwise the trunk
/// gets 480 (and retries later). Well inside the trunk's Timer F (32 s).
pub const ANSWER_WITHIN_MS: u64 = 8_000;
/// Inbound MESSAGE transactions held at once; beyond: 503 statelessly.
pub const MAX_INBOUND: usize = 1_024;

/// The content types we take inbound (the `Accept` of a 415).
pub const ACCEPT: &str = "text/plain, message/imdn+xml, message/cpim";

/// Whether `s` is an E.164 number as the edge writes them: `+` and 1-15 digits.
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A URI's user part as an E.164 number: `+` (or `%2B`) optional, visual
/// separators (`-.()`) dropped, 1-15 digits. `None` otherwise.
pub fn e164_of_user(user: &str) -> Option<String> {
    let u = user.split(';').next().unwrap_or("");
    let u = u
        .strip_prefix('+')
        .or_else(|| u.strip_prefix("%2B"))
        .or_else(|| u.strip_prefix("%2b"))
        .unwrap_or(u);
    let digits: String = u.chars().filter(|c| !"-.()".contains(*c)).collect();
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("+{digits}"))
}

/// The user part of a `sip:`/`sips:`/`tel:` URI (`None` when it has none).
pub fn uri_user(uri: &str) -> Option<&str> {
    if let Some(tel) = uri.strip_prefix("tel:") {
        return tel.split([';', '?']).next().filter(|u| !u.is_empty());
    }
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    // `user:password@host`: the password is not the user.
    let user = user.split(':').next().unwrap_or("");
    (!user.is_empty()).then_some(user)
}

/// What to wrap the text in to ask for delivery notifications (RFC 5438).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imdn {
    /// `imdn.Message-ID`: unique, matched against the notifications.
    pub message_id: String,
    /// `DateTime` (RFC 3339), required with a Message-ID.
    pub date_time: String,
}

/// One text to send, across the trunks tried in order.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    pub trunks: Vec<super::endpoint::Trunk>,
    /// The number the text goes to (E.164; Request-URI and To user part).
    pub to_user: String,
    /// Our number (E.164; From user part).
    pub from_user: String,
    pub body: String,
    /// Ask for delivery notifications: the body goes wrapped in CPIM.
    pub imdn: Option<Imdn>,
    pub timers: Timers,
}

/// How a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEnd {
    pub outcome: MessageOutcome,
    /// The final status code that decided it, if one came.
    pub sip_code: Option<u16>,
    /// One of [`reasons`] when it failed.
    pub reason: Option<&'static str>,
    /// The final answer's `Retry-After` (a 5xx trunk rests that long).
    pub retry_after_s: Option<u32>,
    /// The trunk said it cannot take it now (503): the next trunk may.
    /// Nothing else fails over: a text sent twice is worse than one lost.
    pub try_next_trunk: bool,
}

impl MessageEnd {
    pub fn failed(reason: &'static str, sip_code: Option<u16>) -> Self {
        MessageEnd {
            outcome: MessageOutcome::Failed,
            sip_code,
            reason: Some(reason),
            retry_after_s: None,
            try_next_trunk: false,
        }
    }
}

/// One MESSAGE to one trunk.
#[derive(Debug, Clone)]
pub struct MessageConfig {
    pub trunk: SocketAddr,
    pub request_uri: String,
    pub to_uri: String,
    pub from_uri: String,
    pub local: SocketAddr,
    /// Via's transport; TCP/TLS: no retransmissions.
    pub transport: Transport,
    pub credentials: Option<Credentials>,
    pub content_type: String,
    pub body: Vec<u8>,
    pub timers: Timers,
    pub user_agent: String,
    /// The outbound proxy's pre-loaded `Route` (`trunk` is then the proxy's address).
    pub route: Option<String>,
}

/// `text/plain` in a CPIM message (RFC 3862) with the IMDN header fields
/// asking for positive and negative delivery notifications (RFC 5438 6.2).
pub fn cpim_body(from_uri: &str, to_uri: &str, text: &str, imdn: &Imdn) -> Vec<u8> {
    format!(
        "From: <{from_uri}>\r\nTo: <{to_uri}>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
         imdn.Message-ID: {}\r\nDateTime: {}\r\n\
         imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{text}",
        imdn.message_id,
        imdn.date_time,
        text.len()
    )
    .into_bytes()
}

/// A unix-ms instant as an RFC 3339 UTC date-time (`DateTime` of CPIM).
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (H. Hinnant's algorithm), valid for any u64 day count here.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        unix_ms % 1_000
    )
}

/// One outbound MESSAGE (one trunk): see the module docs.
pub struct MessageClient {
    cfg: MessageConfig,
    call_id: String,
    from_header: String,
    cseq: u32,
    tx: NonInviteClient,
    digest: DigestClient,
    auth_headers: Vec<(String, String)>,
    auth_rounds: u32,
    out: VecDeque<Transmit>,
    end: Option<MessageEnd>,
    ended: bool,
    random: Box<dyn Random>,
}

impl std::fmt::Debug for MessageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageClient")
            .field("call_id", &self.call_id)
            .field("ended", &self.ended)
            .finish()
    }
}

impl MessageClient {
    /// Starts it: the MESSAGE is ready to send at once.
    pub fn new(mut cfg: MessageConfig, now: u64, mut random: Box<dyn Random>) -> MessageClient {
        cfg.timers.reliable = cfg.transport.is_reliable();
        let call_id = format!("{}@voxline", random.hex(12));
        let from_header = format!("<{}>;tag={}", cfg.from_uri, random.hex(6));
        let branch = new_branch(random.as_mut());
        let mut c = MessageClient {
            call_id,
            from_header,
            cseq: 1,
            tx: NonInviteClient::new(
                &Message::request("MESSAGE", "sip:x"),
                String::new(),
                now,
                cfg.timers,
            ),
            digest: DigestClient::default(),
            auth_headers: Vec::new(),
            auth_rounds: 0,
            out: VecDeque::new(),
            end: None,
            ended: false,
            random,
            cfg,
        };
        // Replaces the placeholder (and drops what it queued).
        let req = c.build(&branch);
        c.tx = NonInviteClient::new(&req, branch, now, c.cfg.timers);
        c.pump(now);
        c
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    fn build(&self, branch: &str) -> Message {
        let mut m = Message::request("MESSAGE", &self.cfg.request_uri);
        m.push(
            "Via",
            format!(
                "SIP/2.0/{} {};rport;branch={branch}",
                self.cfg.transport.via_token(),
                self.cfg.local
            ),
        );
        if let Some(r) = &self.cfg.route {
            m.push("Route", r.clone());
        }
        m.push("Max-Forwards", "70");
        m.push("From", self.from_header.clone());
        m.push("To", format!("<{}>", self.cfg.to_uri));
        m.push("Call-ID", self.call_id.clone());
        m.push("CSeq", format!("{} MESSAGE", self.cseq));
        for (n, v) in &self.auth_headers {
            m.push(n, v.clone());
        }
        m.push("User-Agent", self.cfg.user_agent.clone());
        m.push("Content-Type", self.cfg.content_type.clone());
        m.body = self.cfg.body.clone();
        m
    }

    /// A response with our Call-ID (from anywhere: the branch must match).
    pub fn handle_response(&mut self, now: u64, r: &Message) {
        if r.is_request() || r.call_id() != self.call_id || r.cseq().1 != "MESSAGE" {
            return;
        }
        if r.top_branch().as_deref() == Some(self.tx.branch.as_str()) {
            self.tx.on_response(r, now);
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: u64) {
        self.tx.on_timer(now);
        self.pump(now);
    }

    pub fn next_timeout(&self) -> Option<u64> {
        self.tx.next_timer()
    }

    /// The TCP/TLS connection the MESSAGE went over failed: it ends
    /// `transport` and may go to the next trunk (the trunk never took it,
    /// as far as we can know).
    pub fn transport_failed(&mut self) {
        self.tx.abandon();
        self.out.clear();
        self.finish(MessageEnd {
            try_next_trunk: true,
            ..MessageEnd::failed(reasons::TRANSPORT, None)
        });
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The outcome, once (then [`MessageClient::is_done`] once retransmitted
    /// finals can no longer come: Timer K).
    pub fn poll_end(&mut self) -> Option<MessageEnd> {
        self.end.take()
    }

    pub fn is_done(&self) -> bool {
        self.ended && self.end.is_none() && self.tx.is_terminated()
    }

    fn pump(&mut self, now: u64) {
        while let Some(bytes) = self.tx.poll_transmit() {
            self.out.push_back(Transmit {
                dest: self.cfg.trunk,
                bytes,
            });
        }
        while let Some(ev) = self.tx.poll_event() {
            match ev {
                TxEvent::Provisional(_) => {}
                TxEvent::Timeout => self.finish(MessageEnd::failed(reasons::TIMEOUT, None)),
                TxEvent::Final(r) => {
                    let code = r.code().unwrap_or(500);
                    if (code == 401 || code == 407) && self.try_auth(&r, now) {
                        // Re-sent with credentials: a new transaction.
                        while let Some(bytes) = self.tx.poll_transmit() {
                            self.out.push_back(Transmit {
                                dest: self.cfg.trunk,
                                bytes,
                            });
                        }
                        continue;
                    }
                    let end = if (200..300).contains(&code) {
                        MessageEnd {
                            outcome: MessageOutcome::Sent,
                            sip_code: Some(code),
                            reason: None,
                            retry_after_s: None,
                            try_next_trunk: false,
                        }
                    } else {
                        MessageEnd {
                            retry_after_s: r
                                .header("Retry-After")
                                .and_then(msg::retry_after_seconds)
                                .filter(|s| *s > 0),
                            try_next_trunk: code == 503,
                            ..MessageEnd::failed(reasons::REJECTED, Some(code))
                        }
                    };
                    self.finish(end);
                }
            }
        }
    }

    fn finish(&mut self, end: MessageEnd) {
        if !self.ended {
            self.ended = true;
            self.end = Some(end);
        }
    }

    /// Answers a 401/407 once per nonce (at most two rounds), as the INVITE
    /// does; `false`: not answerable (no credentials, wrong realm, refused).
    fn try_auth(&mut self, r: &Message, now: u64) -> bool {
        let Some(cred) = self.cfg.credentials.clone() else {
            return false;
        };
        if self.ended || self.auth_rounds >= 2 {
            return false;
        }
        let Ok((auth_name, chosen)) = auth::challenges_to_answer(r, cred.realm.as_deref()) else {
            return false;
        };
        // The same nonce again without stale=true: our credentials are wrong.
        let repeated = self.auth_rounds > 0
            && chosen.iter().any(|ch| {
                !ch.stale
                    && self
                        .auth_headers
                        .iter()
                        .any(|(_, v)| v.contains(&format!("nonce=\"{}\"", ch.nonce)))
            });
        if repeated {
            return false;
        }
        self.auth_rounds += 1;
        self.auth_headers.retain(|(n, _)| n != auth_name);
        for ch in &chosen {
            let cnonce = self.random.hex(8);
            let v = self.digest.authorize(
                ch,
                &cred,
                "MESSAGE",
                &self.cfg.request_uri,
                &cnonce,
                &self.cfg.body,
            );
            self.auth_headers.push((auth_name.to_string(), v));
        }
        self.cseq += 1;
        let branch = new_branch(self.random.as_mut());
        let req = self.build(&branch);
        self.tx = NonInviteClient::new(&req, branch, now, self.cfg.timers);
        true
    }
}

// ------------------------------------------------------------------ inbound

/// What a MESSAGE from the trunk carried, ready for the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundText {
    /// E.164 when the From user part is a number, else as given (bounded).
    pub from: String,
    /// E.164, from the To user part.
    pub to: String,
    pub content: InboundContent,
    pub sip_call_id: String,
}

/// What to do with an out-of-dialog MESSAGE from a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Ask the edge; answer as it says.
    Forward(InboundText),
    /// Take it without asking (a notification we never asked for: display,
    /// processing): 200.
    Ignore,
    /// Refuse it with this status.
    Refuse(u16),
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `charset` parameter of a Content-Type, lowercased, if any.
fn charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// Reads one inbound MESSAGE (see [`Inbound`]). Any input, never a panic.
pub fn parse_inbound(req: &Message) -> Inbound {
    let Some(to) = req
        .to()
        .and_then(|a| uri_user(&a.uri).and_then(e164_of_user))
    else {
        // Not a number we could own.
        return Inbound::Refuse(404);
    };
    let from = match req.from() {
        Some(a) => {
            let raw = uri_user(&a.uri).unwrap_or(a.uri.as_str());
            e164_of_user(raw).unwrap_or_else(|| {
                raw.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_SENDER_CHARS)
                    .collect()
            })
        }
        None => String::new(),
    };
    let content_type = req.content_type().unwrap_or("");
    let content = match body_content(content_type, &req.body, true) {
        Ok(Some(c)) => c,
        Ok(None) => return Inbound::Ignore,
        Err(code) => return Inbound::Refuse(code),
    };
    Inbound::Forward(InboundText {
        from,
        to,
        content,
        sip_call_id: req.call_id().to_string(),
    })
}

/// A body by its Content-Type; `cpim`: a CPIM wrapper may be opened.
fn body_content(
    content_type: &str,
    body: &[u8],
    cpim: bool,
) -> Result<Option<InboundContent>, u16> {
    match media_type(content_type).as_str() {
        "text/plain" => {
            if body.len() > MAX_TEXT_BODY_BYTES {
                return Err(413);
            }
            if charset(content_type).is_some_and(|c| c != "utf-8" && c != "us-ascii") {
                return Err(415);
            }
            let text = std::str::from_utf8(body).map_err(|_| 415u16)?;
            if text.chars().count() > MAX_MESSAGE_CHARS {
                return Err(413);
            }
            Ok(Some(InboundContent::Text {
                body: text.to_string(),
            }))
        }
        "message/imdn+xml" => {
            if body.len() > MAX_IMDN_BODY_BYTES {
                return Err(413);
            }
            match parse_imdn(body) {
                Ok(Some((imdn_message_id, status))) => Ok(Some(InboundContent::DeliveryReport {
                    imdn_message_id,
                    status,
                })),
                Ok(None) => Ok(None),
                Err(_) => Err(400),
            }
        }
        "message/cpim" if cpim => {
            if body.len() > MAX_TEXT_BODY_BYTES + MAX_IMDN_BODY_BYTES {
                return Err(413);
            }
            let (inner_type, inner) = open_cpim(body).ok_or(400u16)?;
            body_content(&inner_type, inner, false)
        }
        _ => Err(415),
    }
}

/// A CPIM message (RFC 3862): message headers, a blank line, the content's
/// MIME headers, a blank line, the content. Returns the content's
/// Content-Type and bytes (to its Content-Length when one is given).
fn open_cpim(body: &[u8]) -> Option<(String, &[u8])> {
    let split = |b: &[u8]| -> Option<usize> { b.windows(4).position(|w| w == b"\r\n\r\n") };
    let after_headers = body.get(split(body)? + 4..)?;
    let mime_end = split(after_headers)?;
    let mime = std::str::from_utf8(after_headers.get(..mime_end)?).ok()?;
    let content = after_headers.get(mime_end + 4..)?;
    let mut content_type = None;
    let mut length = None;
    for line in mime.split("\r\n") {
        let (n, v) = line.split_once(':')?;
        if n.trim().eq_ignore_ascii_case("Content-Type") {
            content_type = Some(v.trim().to_string());
        } else if n.trim().eq_ignore_ascii_case("Content-Length") {
            length = Some(v.trim().parse::<usize>().ok()?);
        }
    }
    let content = match length {
        Some(n) => content.get(..n)?,
        None => content,
    };
    Some((content_type?, content))
}

/// Why an IMDN body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImdnError {
    Xml(String),
    /// No `<message-id>`, or an empty or overlong one.
    NoMessageId,
    /// A delivery notification without a status.
    NoStatus,
    TooDeep,
}

/// Deepest element nesting read in an IMDN (the real one has 4 levels).
const MAX_IMDN_DEPTH: usize = 16;

/// A `message/imdn+xml` document (RFC 5438 7.2): `Some((message_id,
/// status))` for a delivery notification (`status`: `delivered`, `failed`,
/// `forbidden`, `error`, or whatever element the notifier put there, bounded),
/// `None` for a display or processing notification. Namespace prefixes are
/// ignored (local names only); no entity but XML's own is expanded and no
/// DTD is read.
pub fn parse_imdn(body: &[u8]) -> Result<Option<(String, String)>, ImdnError> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(body).map_err(|_| ImdnError::Xml("not UTF-8".into()))?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut message_id = String::new();
    let mut status: Option<String> = None;
    let mut is_delivery = false;
    let local = |name: &str| name.to_ascii_lowercase();
    let in_message_id = |path: &[String]| {
        path.len() == 2
            && path.first().is_some_and(|p| p == "imdn")
            && path.get(1).is_some_and(|p| p == "message-id")
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ImdnError::Xml(e.to_string().chars().take(120).collect()))?;
        match event {
            Event::Start(e) => {
                let name = local(e.local_name().as_ref());
                note_element(&path, &name, &mut is_delivery, &mut status);
                path.push(name);
                if path.len() > MAX_IMDN_DEPTH {
                    return Err(ImdnError::TooDeep);
                }
            }
            Event::Empty(e) => {
                let name = local(e.local_name().as_ref());
                note_element(&path, &name, &mut is_delivery, &mut status);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) if in_message_id(&path) => {
                push_bounded(&mut message_id, &t.xml10_content());
            }
            Event::CData(t) if in_message_id(&path) => {
                push_bounded(&mut message_id, &t);
            }
            Event::GeneralRef(r) if in_message_id(&path) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().map(String::from)
                } else {
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .map(str::to_string)
                };
                let c = c.ok_or_else(|| ImdnError::Xml("unknown entity".into()))?;
                push_bounded(&mut message_id, &c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let message_id = message_id.trim().to_string();
    if message_id.is_empty() || message_id.chars().count() > MAX_IMDN_ID_CHARS {
        return Err(ImdnError::NoMessageId);
    }
    if !is_delivery {
        return Ok(None);
    }
    let status = status.ok_or(ImdnError::NoStatus)?;
    Ok(Some((message_id, status)))
}

/// `<imdn><delivery-notification><status><X/>`: X is the status.
fn note_element(path: &[String], name: &str, is_delivery: &mut bool, status: &mut Option<String>) {
    let at = |i: usize, n: &str| path.get(i).is_some_and(|p| p == n);
    if path.len() == 1 && at(0, "imdn") && name == "delivery-notification" {
        *is_delivery = true;
    }
    if path.len() == 3 && at(0, "imdn") && at(1, "delivery-notification") && at(2, "status") {
        status.get_or_insert_with(|| name.chars().take(32).collect());
    }
}

fn push_bounded(into: &mut String, s: &str) {
    // One past the bound is enough to know it is too long.
    let room = (MAX_IMDN_ID_CHARS + 1).saturating_sub(into.chars().count());
    into.extend(s.chars().take(room));
}

/// The endpoint's name for one inbound MESSAGE waiting for the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundId(pub u64);

#[derive(Debug)]
enum InboundState {
    /// Forwarded; no answer yet (retransmissions are absorbed).
    Waiting { deadline: u64 },
    /// Answered: retransmissions get these bytes again until `until`.
    Answered { bytes: Vec<u8>, until: u64 },
}

#[derive(Debug)]
struct InboundTx {
    id: InboundId,
    from: SocketAddr,
    request: Message,
    to_tag: String,
    state: InboundState,
}

/// The server transactions of inbound MESSAGEs (RFC 3261 17.2.2, UDP):
/// keyed by Call-ID and top Via branch.
#[derive(Debug, Default)]
pub struct InboundTable {
    txs: BTreeMap<(String, String), InboundTx>,
    next_id: u64,
}

/// What to do with an inbound MESSAGE request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundStep {
    /// A retransmission: send this again (`None`: still waiting, absorb it).
    Repeat(Option<Transmit>),
    /// A new request: the table is full.
    Full,
    /// A new request.
    New,
}

/// The transaction key: Call-ID and branch (or, from peers without RFC 3261
/// branches, the CSeq and From tag).
fn key_of(req: &Message) -> (String, String) {
    let branch = req
        .top_branch()
        .unwrap_or_else(|| format!("{}-{}", req.cseq().0, req.from_tag().unwrap_or_default()));
    (req.call_id().to_string(), branch)
}

/// The answer to `req`; a 415 says what we take.
pub fn answer_to(req: &Message, code: u16, to_tag: &str) -> Message {
    let mut r = response_to(req, code, Some(to_tag));
    if code == 415 {
        r.push("Accept", ACCEPT);
    }
    r
}

impl InboundTable {
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Looks `req` up (see [`InboundStep`]).
    pub fn step(&self, req: &Message) -> InboundStep {
        match self.txs.get(&key_of(req)) {
            Some(tx) => InboundStep::Repeat(match &tx.state {
                InboundState::Waiting { .. } => None,
                InboundState::Answered { bytes, .. } => Some(Transmit {
                    dest: tx.from,
                    bytes: bytes.clone(),
                }),
            }),
            None if self.txs.len() >= MAX_INBOUND => InboundStep::Full,
            None => InboundStep::New,
        }
    }

    /// A new request waiting for the edge's answer (until `now + ANSWER_WITHIN_MS`).
    pub fn wait(&mut self, now: u64, from: SocketAddr, req: &Message, to_tag: String) -> InboundId {
        self.next_id += 1;
        let id = InboundId(self.next_id);
        self.txs.insert(
            key_of(req),
            InboundTx {
                id,
                from,
                request: req.clone(),
                to_tag,
                state: InboundState::Waiting {
                    deadline: now.saturating_add(ANSWER_WITHIN_MS),
                },
            },
        );
        id
    }

    /// A new request answered at once (refused, or taken without the edge).
    pub fn answer_now(
        &mut self,
        now: u64,
        from: SocketAddr,
        req: &Message,
        code: u16,
        to_tag: String,
        timers: Timers,
    ) -> Option<Transmit> {
        let id = self.wait(now, from, req, to_tag);
        self.answer(now, id, code, timers)
    }

    /// Answers the waiting request `id` with `code` (the first answer only;
    /// later ones and unknown ids: `None`). The answer is repeated to
    /// retransmissions for Timer J (64*T1).
    pub fn answer(
        &mut self,
        now: u64,
        id: InboundId,
        code: u16,
        timers: Timers,
    ) -> Option<Transmit> {
        let tx = self
            .txs
            .values_mut()
            .find(|t| t.id == id && matches!(t.state, InboundState::Waiting { .. }))?;
        let bytes = answer_to(&tx.request, code, &tx.to_tag).to_bytes();
        tx.state = InboundState::Answered {
            bytes: bytes.clone(),
            until: now.saturating_add(timers.t64()),
        };
        Some(Transmit {
            dest: tx.from,
            bytes,
        })
    }

    /// Runs the timers due at `now`: unanswered requests get 480; answered
    /// ones are forgotten after Timer J. Returns what to send and the ids
    /// that timed out.
    pub fn handle_timeout(&mut self, now: u64, timers: Timers) -> (Vec<Transmit>, Vec<InboundId>) {
        let due: Vec<InboundId> = self
            .txs
            .values()
            .filter(|t| matches!(t.state, InboundState::Waiting { deadline } if deadline <= now))
            .map(|t| t.id)
            .collect();
        let out = due
            .iter()
            .filter_map(|id| self.answer(now, *id, 480, timers))
            .collect();
        self.txs.retain(
            |_, t| !matches!(t.state, InboundState::Answered { until, .. } if until <= now),
        );
        (out, due)
    }

    pub fn next_timeout(&self) -> Option<u64> {
        self.txs
            .values()
            .map(|t| match t.state {
                InboundState::Waiting { deadline } => deadline,
                InboundState::Answered { until, .. } => until,
            })
            .min()
    }
}

#[cfg(test)]
mod tests;
