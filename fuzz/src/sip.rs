//! SIP targets: the parser, the call state machine, SDP.

use std::net::SocketAddr;

use arbitrary::{Arbitrary, Unstructured};
use voxline_media_sidecar::sip::auth::{Challenge, Credentials, DigestClient};
use voxline_media_sidecar::sip::call::{Call, CallConfig, DialogEvent, Phase};
use voxline_media_sidecar::sip::msg::{self, Message, StreamFramer};
use voxline_media_sidecar::sip::sdp::{self, Codec, Direction, OfferConfig};
use voxline_shared::EndedReason;

/// The headers `to_bytes` rewrites (so a round trip compares without them).
fn without_content_length(m: &Message) -> Vec<(String, String)> {
    m.headers
        .iter()
        .filter(|(n, _)| n != "Content-Length")
        .cloned()
        .collect()
}

/// `sip_parser`: first byte = chunk size for the stream framer, the rest is a datagram.
pub fn sip_parser(data: &[u8]) {
    let Some((&chunk, datagram)) = data.split_first() else {
        return;
    };
    match msg::parse(datagram) {
        Ok(m) => {
            let _ = (
                m.is_request(),
                m.method(),
                m.code(),
                m.uri(),
                m.call_id(),
                m.cseq(),
                m.from(),
                m.to(),
                m.from_tag(),
                m.to_tag(),
                m.top_via(),
                m.top_branch(),
                m.contact_uri(),
                m.record_route(),
                m.content_type(),
                m.has_sdp(),
            );
            // A key from an INFO is always a real key (issue 18).
            if let Some(key) = voxline_media_sidecar::sip::call::info_dtmf_key(&m) {
                assert!(
                    voxline_media_sidecar::call_task::tools::KEYS.contains(key),
                    "INFO gave {key:?}"
                );
            }
            for (name, value) in &m.headers {
                let _ = m.header_list(name);
                let _ = msg::parse_name_addr(value);
                let _ = msg::parse_via(value);
                let _ = msg::parse_params(value);
                let _ = msg::split_list(value);
            }
            let _ = m.to_rsip();
            // What we parsed, we can write and read back unchanged.
            let bytes = m.to_bytes();
            let again = match msg::parse(&bytes) {
                Ok(a) => a,
                Err(e) => panic!(
                    "re-parse of a parsed message failed ({}): {:?}",
                    e.code(),
                    String::from_utf8_lossy(&bytes)
                ),
            };
            assert_eq!(again.start, m.start, "start line changed in a round trip");
            assert_eq!(again.body, m.body, "body changed in a round trip");
            assert_eq!(
                without_content_length(&again),
                without_content_length(&m),
                "headers changed in a round trip"
            );
            let mut digest = DigestClient::default();
            let cred = Credentials {
                username: "user".into(),
                password: "secret".into(),
                realm: None,
            };
            for name in ["WWW-Authenticate", "Proxy-Authenticate"] {
                for v in m.header_lines(name) {
                    if let Ok(ch) = Challenge::parse(v) {
                        let h =
                            digest.authorize(&ch, &cred, "INVITE", "sip:a@b", "c0ffee", &m.body);
                        assert!(h.starts_with("Digest "));
                    }
                }
            }
            let cfg = OfferConfig::new(SocketAddr::from(([127, 0, 0, 1], 40_000)));
            let _ = sdp::negotiate(&cfg, &m.body);
        }
        Err(e) => assert!(!e.code().is_empty()),
    }
    let _ = Challenge::parse(&String::from_utf8_lossy(datagram));
    // The same bytes as a TCP stream, in chunks.
    let mut f = StreamFramer::new();
    for c in datagram.chunks(1 + chunk as usize) {
        f.push(c);
        while let Some(r) = f.next_message() {
            if r.is_err() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------- sip_call

const TRUNK: ([u8; 4], u16) = ([127, 0, 0, 1], 5060);
const LOCAL: ([u8; 4], u16) = ([127, 0, 0, 1], 5070);
/// The callee's tags (two: forked responses).
const REMOTE_TAGS: [&str; 2] = ["callee1", "callee2"];

#[derive(Arbitrary, Debug)]
struct CallInput {
    with_credentials: bool,
    max_duration: Option<u16>,
    no_response_timeout: Option<u16>,
    codecs: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// A response to the request we sent last with this method.
    Respond(Response),
    /// A request from the callee's side.
    Request(Request),
    /// Time passes (ms).
    Wait(u16),
    /// Time jumps to the call's next timer.
    NextTimer,
    /// The app hangs up.
    Hangup(u8),
    /// A datagram: one we received before (a retransmission), cut or flipped.
    Replay {
        index: u8,
        cut: u16,
        flip: Option<(u16, u8)>,
    },
    /// Any bytes at all.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum To {
    Invite,
    Cancel,
    Bye,
    /// The INVITE, but with another branch (a stray or forked path).
    InviteOtherBranch,
}

#[derive(Arbitrary, Debug)]
struct Response {
    to: To,
    code: Code,
    /// Index into [`REMOTE_TAGS`], or no tag.
    tag: Option<bool>,
    contact: Option<ContactChoice>,
    record_route: Vec<ContactChoice>,
    challenge: Option<ChallengeSpec>,
    sdp: Option<SdpSpec>,
    extra: Option<(HeaderName, String)>,
}

#[derive(Arbitrary, Debug)]
enum Code {
    Trying,
    Ringing,
    Progress,
    Ok,
    Unauthorized,
    ProxyAuth,
    Timeout,
    Unavailable,
    Busy,
    Terminated,
    NotAcceptable,
    ServerError,
    ServiceUnavailable,
    Decline,
    Any(u16),
}

impl Code {
    fn value(&self) -> u16 {
        match self {
            Code::Trying => 100,
            Code::Ringing => 180,
            Code::Progress => 183,
            Code::Ok => 200,
            Code::Unauthorized => 401,
            Code::ProxyAuth => 407,
            Code::Timeout => 408,
            Code::Unavailable => 480,
            Code::Busy => 486,
            Code::Terminated => 487,
            Code::NotAcceptable => 488,
            Code::ServerError => 500,
            Code::ServiceUnavailable => 503,
            Code::Decline => 603,
            Code::Any(c) => 100 + c % 600,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ContactChoice {
    Callee,
    CalleeLr,
    Ipv6,
    Hostname,
    Text(String),
}

impl ContactChoice {
    fn value(&self) -> String {
        match self {
            ContactChoice::Callee => "<sip:callee@127.0.0.1:5080>".into(),
            ContactChoice::CalleeLr => "<sip:proxy@127.0.0.1:5090;lr>".into(),
            ContactChoice::Ipv6 => "<sip:callee@[::1]:5080;transport=udp>".into(),
            ContactChoice::Hostname => "\"Callee\" <sip:callee@trunk.example.com>".into(),
            ContactChoice::Text(t) => t.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ChallengeSpec {
    nonce: u8,
    qop: u8,
    algorithm: u8,
    stale: bool,
    raw: Option<String>,
}

impl ChallengeSpec {
    fn value(&self) -> String {
        if let Some(r) = &self.raw {
            return r.clone();
        }
        let qop = [
            "",
            ", qop=\"auth\"",
            ", qop=\"auth-int\"",
            ", qop=\"auth,auth-int\"",
        ][self.qop as usize % 4];
        let alg =
            ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess", "SHA-512"][self.algorithm as usize % 5];
        format!(
            "Digest realm=\"trunk\", nonce=\"n{}\"{qop}, algorithm={alg}{}",
            self.nonce % 4,
            if self.stale { ", stale=true" } else { "" }
        )
    }
}

#[derive(Arbitrary, Debug)]
struct SdpSpec {
    /// Payload types on the m-line, in order.
    pts: Vec<u8>,
    opus_pt: Option<u8>,
    telephone_event: Option<u8>,
    direction: u8,
    ipv6: bool,
    port: u16,
    ptime: Option<u8>,
    raw: Option<Vec<u8>>,
}

impl SdpSpec {
    fn body(&self) -> Vec<u8> {
        if let Some(r) = &self.raw {
            return r.clone();
        }
        let ip = if self.ipv6 {
            "IN IP6 ::1"
        } else {
            "IN IP4 127.0.0.1"
        };
        let mut pts: Vec<String> = self.pts.iter().take(8).map(|p| p.to_string()).collect();
        if pts.is_empty() {
            pts.push("0".into());
        }
        let mut s = format!(
            "v=0\r\no=callee 1 1 {ip}\r\ns=-\r\nc={ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
            self.port,
            pts.join(" ")
        );
        if let Some(p) = self.opus_pt {
            s.push_str(&format!("a=rtpmap:{p} opus/48000/2\r\n"));
        }
        if let Some(p) = self.telephone_event {
            s.push_str(&format!("a=rtpmap:{p} telephone-event/8000\r\n"));
        }
        if let Some(p) = self.ptime {
            s.push_str(&format!("a=ptime:{p}\r\n"));
        }
        let dir = ["sendrecv", "sendonly", "recvonly", "inactive", "bogus"];
        s.push_str(&format!(
            "a={}\r\n",
            dir[self.direction as usize % dir.len()]
        ));
        s.into_bytes()
    }
}

#[derive(Arbitrary, Debug)]
enum HeaderName {
    Via,
    CallId,
    CSeq,
    From,
    To,
    Contact,
    ContentLength,
    ContentType,
    Require,
    Other(String),
}

impl HeaderName {
    fn name(&self) -> &str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::Contact => "Contact",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Require => "Require",
            HeaderName::Other(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Method {
    Bye,
    Invite,
    Update,
    Ack,
    Options,
    Info,
    Cancel,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Request {
    method: Method,
    /// CSeq relative to the callee's last one (so both in- and out-of-order).
    cseq_step: i8,
    /// Our tag in To: right, wrong, or none.
    to_tag: Option<bool>,
    /// The callee's tag in From (index into [`REMOTE_TAGS`]), or none.
    from_tag: Option<bool>,
    foreign_call_id: bool,
    /// Reuse the branch of the callee's previous request (a retransmission).
    same_branch: bool,
    sdp: Option<SdpSpec>,
    extra: Option<(HeaderName, String)>,
}

/// What the fuzzing "callee" remembers about the call.
struct Peer {
    now: u64,
    /// The last request we (the UAC) sent, by method.
    invite: Option<Message>,
    cancel: Option<Message>,
    bye: Option<Message>,
    /// Datagrams fed so far (for replays), bounded.
    fed: Vec<Vec<u8>>,
    remote_cseq: u32,
    branch_no: u32,
    ended: bool,
}

impl Peer {
    fn feed(&mut self, call: &mut Call, bytes: Vec<u8>) {
        let from = SocketAddr::from(TRUNK);
        if crate::debug() {
            eprintln!("--> t={} {}", self.now, String::from_utf8_lossy(&bytes));
        }
        let _ = call.handle_datagram(self.now, from, &bytes);
        if self.fed.len() < 32 {
            self.fed.push(bytes);
        }
        self.drain(call);
    }

    /// Takes what the call sent and what it reported, checking both.
    fn drain(&mut self, call: &mut Call) {
        while let Some(t) = call.poll_transmit() {
            if crate::debug() {
                eprintln!("<-- t={} {}", self.now, String::from_utf8_lossy(&t.bytes));
            }
            let m = match msg::parse(&t.bytes) {
                Ok(m) => m,
                Err(e) => panic!(
                    "the call sent a datagram our parser rejects ({}): {:?}",
                    e.code(),
                    String::from_utf8_lossy(&t.bytes)
                ),
            };
            if m.is_request() {
                // (Responses echo the request's Call-ID: a stray request gets a 481.)
                assert_eq!(
                    m.call_id(),
                    call.call_id(),
                    "request sent with another Call-ID"
                );
            }
            match m.method() {
                Some("INVITE") => self.invite = Some(m),
                Some("CANCEL") => self.cancel = Some(m),
                Some("BYE") => self.bye = Some(m),
                _ => {}
            }
        }
        while let Some(ev) = call.poll_event() {
            if crate::debug() {
                eprintln!("event t={} {ev:?} (phase {:?})", self.now, call.phase());
            }
            assert!(!self.ended, "event after Ended: {ev:?}");
            if let DialogEvent::Ended(_) = ev {
                self.ended = true;
            }
        }
        assert_eq!(
            call.is_ended(),
            self.ended,
            "is_ended() disagrees with the events"
        );
        if self.ended {
            assert_eq!(call.phase(), Phase::Ended);
        }
    }

    fn response(&mut self, r: &Response) -> Option<Vec<u8>> {
        let req = match r.to {
            To::Invite | To::InviteOtherBranch => self.invite.as_ref()?,
            To::Cancel => self.cancel.as_ref()?,
            To::Bye => self.bye.as_ref()?,
        };
        let code = r.code.value();
        let tag = r.tag.map(|t| REMOTE_TAGS[t as usize]);
        let mut m = msg::response_to(req, code, tag);
        if let To::InviteOtherBranch = r.to {
            for (n, v) in m.headers.iter_mut() {
                if n == "Via" {
                    *v = "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKstray".into();
                    break;
                }
            }
        }
        if let Some(c) = &r.contact {
            m.push("Contact", c.value());
        }
        for rr in r.record_route.iter().take(4) {
            m.push("Record-Route", rr.value());
        }
        if let Some(ch) = &r.challenge {
            let name = if code == 407 {
                "Proxy-Authenticate"
            } else {
                "WWW-Authenticate"
            };
            m.push(name, ch.value());
        }
        if let Some(s) = &r.sdp {
            m.push("Content-Type", "application/sdp");
            m.body = s.body();
        }
        if let Some((n, v)) = &r.extra {
            m.push(n.name(), v.clone());
        }
        Some(m.to_bytes())
    }

    fn request(&mut self, call: &Call, r: &Request) -> Option<Vec<u8>> {
        let invite = self.invite.as_ref()?;
        let method = match &r.method {
            Method::Bye => "BYE",
            Method::Invite => "INVITE",
            Method::Update => "UPDATE",
            Method::Ack => "ACK",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Cancel => "CANCEL",
            Method::Other(s) => s.as_str(),
        };
        // The Request-URI is our Contact.
        let uri = invite.contact_uri()?;
        let mut m = Message::request(method, &uri);
        if !r.same_branch {
            self.branch_no += 1;
        }
        m.push(
            "Via",
            format!(
                "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcallee{}",
                self.branch_no
            ),
        );
        let from_uri = invite.to().map(|a| a.uri).unwrap_or_default();
        let from = match r.from_tag {
            Some(t) => format!("<{from_uri}>;tag={}", REMOTE_TAGS[t as usize]),
            None => format!("<{from_uri}>"),
        };
        m.push("From", from);
        let to_uri = invite.from().map(|a| a.uri).unwrap_or_default();
        let to = match r.to_tag {
            Some(true) => format!("<{to_uri}>;tag={}", call.local_tag()),
            Some(false) => format!("<{to_uri}>;tag=someoneelse"),
            None => format!("<{to_uri}>"),
        };
        m.push("To", to);
        let call_id = if r.foreign_call_id {
            "foreign@elsewhere".to_string()
        } else {
            call.call_id().to_string()
        };
        m.push("Call-ID", call_id);
        self.remote_cseq = self
            .remote_cseq
            .saturating_add_signed(r.cseq_step as i32)
            .min(0x7FFF_FFFF);
        m.push("CSeq", format!("{} {method}", self.remote_cseq));
        m.push("Max-Forwards", "70");
        if let Some(s) = &r.sdp {
            m.push("Content-Type", "application/sdp");
            m.body = s.body();
        }
        if let Some((n, v)) = &r.extra {
            m.push(n.name(), v.clone());
        }
        Some(m.to_bytes())
    }
}

const REASONS: [EndedReason; 5] = [
    EndedReason::HangupRequested,
    EndedReason::AgentHangup,
    EndedReason::NoAnswer,
    EndedReason::MediaLost,
    EndedReason::EngineError,
];

/// `sip_call`: one outbound call driven by structured steps.
pub fn sip_call(data: &[u8]) {
    let Ok(input) = CallInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if crate::debug() {
        eprintln!("{input:#?}");
    }
    let mut media = OfferConfig::new(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    media.codecs = match input.codecs % 4 {
        0 => vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
        1 => vec![Codec::Opus, Codec::Pcmu],
        2 => vec![Codec::Pcma],
        _ => vec![Codec::Pcmu],
    };
    if input.codecs & 4 != 0 {
        media.dtmf_pt = None;
    }
    let mut cfg = CallConfig::new(
        SocketAddr::from(TRUNK),
        SocketAddr::from(LOCAL),
        "callee",
        "caller",
        media,
    );
    if input.with_credentials {
        cfg.credentials = Some(Credentials {
            username: "user".into(),
            password: "secret".into(),
            // No pin, the challenges' realm, or another one (derived from an
            // existing field so the committed corpus keeps its meaning).
            realm: match input.codecs % 3 {
                1 => Some("trunk".to_string()),
                2 => Some("elsewhere".to_string()),
                _ => None,
            },
        });
    }
    cfg.max_duration_ms = input.max_duration.map(u64::from);
    cfg.no_response_timeout_ms = input.no_response_timeout.map(u64::from);
    cfg.from_display = Some("Voxline \"AI\"".into());

    let mut peer = Peer {
        now: 1_000,
        invite: None,
        cancel: None,
        bye: None,
        fed: Vec::new(),
        remote_cseq: 1,
        branch_no: 0,
        ended: false,
    };
    let mut call = Call::new(cfg, peer.now);
    peer.drain(&mut call);
    assert!(peer.invite.is_some(), "no INVITE sent at start");

    for step in input.steps.iter().take(64) {
        match step {
            Step::Respond(r) => {
                if let Some(b) = peer.response(r) {
                    peer.feed(&mut call, b);
                }
            }
            Step::Request(r) => {
                if let Some(b) = peer.request(&call, r) {
                    peer.feed(&mut call, b);
                }
            }
            Step::Wait(ms) => {
                peer.now += u64::from(*ms);
                call.handle_timeout(peer.now);
                peer.drain(&mut call);
            }
            Step::NextTimer => {
                if let Some(t) = call.next_timeout() {
                    peer.now = peer.now.max(t);
                }
                call.handle_timeout(peer.now);
                peer.drain(&mut call);
            }
            Step::Hangup(r) => {
                call.hangup(peer.now, REASONS[*r as usize % REASONS.len()]);
                peer.drain(&mut call);
            }
            Step::Replay { index, cut, flip } => {
                if peer.fed.is_empty() {
                    continue;
                }
                let mut b = peer.fed[*index as usize % peer.fed.len()].clone();
                b.truncate(b.len().saturating_sub(*cut as usize % 64));
                if let Some((at, x)) = flip {
                    if !b.is_empty() {
                        let i = *at as usize % b.len();
                        b[i] ^= x;
                    }
                }
                peer.feed(&mut call, b);
            }
            Step::Raw(b) => peer.feed(&mut call, b.clone()),
        }
    }

    // Liveness: once the app hangs up, the call ends and winds down on its
    // timers alone, whatever the callee did (or does not do) from here on.
    call.hangup(peer.now, EndedReason::HangupRequested);
    peer.drain(&mut call);
    let mut rounds = 0;
    while !call.is_done() {
        rounds += 1;
        assert!(
            rounds < 1_000,
            "call not done after hangup and 1000 timer rounds (phase {:?})",
            call.phase()
        );
        let Some(t) = call.next_timeout() else {
            panic!(
                "call neither done nor waiting on a timer after hangup (phase {:?})",
                call.phase()
            );
        };
        peer.now = peer.now.max(t);
        call.handle_timeout(peer.now);
        peer.drain(&mut call);
    }
    assert!(peer.ended, "done without an Ended event");
}

// ---------------------------------------------------------------- sdp

/// `sdp`: first byte picks our offer, the rest is the remote description.
pub fn sdp(data: &[u8]) {
    let Some((&sel, remote)) = data.split_first() else {
        return;
    };
    let addr = if sel & 1 == 0 {
        SocketAddr::from(([127, 0, 0, 1], 40_000))
    } else {
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 40_000))
    };
    let mut cfg = OfferConfig::new(addr);
    cfg.codecs = match (sel >> 1) % 4 {
        0 => vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
        1 => vec![Codec::Opus],
        2 => vec![Codec::Pcma, Codec::Pcmu],
        _ => vec![Codec::Pcmu],
    };
    if sel & 8 != 0 {
        cfg.dtmf_pt = None;
    }
    cfg.opus_pt = 96 + (sel >> 4);
    match sdp::negotiate(&cfg, remote) {
        Ok(n) => {
            assert!(
                cfg.codecs.contains(&n.codec),
                "negotiated {:?}, which we did not offer",
                n.codec
            );
            if n.dtmf_pt.is_some() {
                assert!(cfg.dtmf_pt.is_some(), "telephone-event we did not offer");
            }
            // Our answer/update for it is itself negotiable.
            let ours = sdp::build(&cfg, 2, n.direction.reversed());
            sdp::negotiate(&cfg, ours.as_bytes()).expect("our own SDP negotiates");
        }
        Err(e) => assert!(!e.code().is_empty()),
    }
    for dir in [Direction::SendRecv, Direction::Inactive] {
        let ours = sdp::build(&cfg, 1, dir);
        sdp::negotiate(&cfg, ours.as_bytes()).expect("our own offer negotiates");
    }
}
