//! The UAC call: one outbound INVITE dialog as a sans-IO state machine.
//!
//! ```text
//!  new() --INVITE--> Calling --1xx--> Early --2xx/ACK--> Confirmed --BYE (either side)--> Ended
//!                      |  \             |                    \--max duration / hangup(): BYE
//!                      |   401/407: re-INVITE with credentials (CSeq+1, new branch)
//!                      |  hangup() / ring timeout: CANCEL (after a 1xx, RFC 3261 9.1) -> 487 -> Ended
//!                      \--non-2xx final / Timer B--> Ended (status mapped; maybe "try next trunk")
//! ```
//!
//! Inputs: [`Call::handle_datagram`] (with the sender's address),
//! [`Call::handle_timeout`], [`Call::hangup`]; all take `now` in ms on any
//! monotonic clock. Outputs: [`Call::poll_transmit`], [`Call::poll_event`],
//! [`Call::next_timeout`]. [`DialogEvent::Ended`] is always the last event;
//! the call then lingers (absorbing retransmissions) until [`Call::is_done`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use voxline_shared::{CallStatus, EndedReason};

use super::auth::{self, ChooseError, Credentials, DigestClient};
use super::msg::{self, response_to, Message, ParseError};
use super::redirect::{self, RedirectPolicy};
use super::sdp::{self, Direction, Negotiated, OfferConfig};
use super::session_timer::{
    self as st, Refresher, SessionTimerConfig, MAX_422_RETRIES, MAX_SESSION_EXPIRES_S,
    MIN_SE_FLOOR_S,
};
use super::transaction::{
    ClientTransaction, IctState, InviteClient, NonInviteClient, Timers, TxEvent,
};
use super::transport::Transport;
use crate::random::{OsRandom, Random};

/// What we allow in-dialog.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY";
/// What we allow out of dialog (an OPTIONS probe's answer): texts too.
pub const ALLOW_OUT_OF_DIALOG: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, MESSAGE";

/// The `100rel` option tag (RFC 3262: reliable provisional responses).
pub const TAG_100REL: &str = "100rel";

/// Everything one call attempt to one trunk needs.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Next hop (the trunk / outbound proxy), where the INVITE goes.
    pub trunk: SocketAddr,
    /// Request-URI, e.g. `sip:+14155550100@trunk.example.com`.
    pub request_uri: String,
    /// To URI; usually the Request-URI.
    pub to_uri: String,
    /// From URI, e.g. `sip:+14155550199@voxline.example.com` (the caller ID).
    pub from_uri: String,
    /// The From display-name (the caller-ID label), any text: written as a
    /// quoted-string by [`quoted_display_name`].
    pub from_display: Option<String>,
    /// Our SIP address (Via sent-by and Contact host:port).
    pub local: SocketAddr,
    /// What the trunk is reached over: Via's transport, Contact's
    /// `transport` parameter, and (TCP/TLS) no retransmissions.
    pub transport: Transport,
    pub credentials: Option<Credentials>,
    pub media: OfferConfig,
    /// From INVITE sent to answer; then CANCEL (no_answer).
    pub ring_timeout_ms: u64,
    /// From answer; then BYE (max_duration_reached).
    pub max_duration_ms: Option<u64>,
    /// No response at all (not even 100) this long after the INVITE: give up
    /// on this trunk (`try_next_trunk`). Set only when another trunk exists;
    /// otherwise Timer B (64*T1) decides.
    pub no_response_timeout_ms: Option<u64>,
    pub timers: Timers,
    pub user_agent: String,
    /// Accept in-dialog requests only from `trunk` or the dialog's next hop
    /// ([`Call::next_hop`]: first Route, else the remote target); requests
    /// from anywhere else get 403 and change nothing (a forged BYE with the
    /// right Call-ID and tags cannot end the call).
    pub in_dialog_from_trunk_only: bool,
    /// Send `Require: 100rel` (RFC 3262): the trunk must send its 18x
    /// reliably (we PRACK them). `Supported: 100rel` is always sent.
    pub require_100rel: bool,
    /// Session timers (RFC 4028): what our INVITE asks for; `None`: no
    /// `Session-Expires` sent (a peer's refreshes are still answered).
    pub session_timer: Option<SessionTimerConfig>,
    /// Which 301/302 targets the call follows ([`redirect`]). The trunk
    /// itself (`trunk`, `request_uri`'s host) is always among them.
    pub redirect: RedirectPolicy,
    /// Our Contact URI (a registered binding's); default `sip:<From user>@local`.
    pub contact: Option<String>,
    /// The outbound proxy's pre-loaded route (RFC 3261 8.1.2), e.g.
    /// `<sip:proxy.example;lr>`: sent as `Route` on the INVITE (and its
    /// CANCEL/ACK), and on in-dialog requests while the dialog's route set
    /// (Record-Route) is empty; `trunk` is then the proxy's address and the
    /// Request-URI stays the trunk's.
    pub outbound_route: Option<String>,
    /// The network-asserted caller identity our INVITE carries, beside From.
    pub identity: IdentityHeader,
    /// The trunk takes blind transfers by REFER (RFC 3515): [`Call::refer`]
    /// sends one; otherwise it answers [`ReferEvent::NotSupported`] at once
    /// (the caller bridges a second leg instead). Default: off.
    pub refer: bool,
}

/// The header that asserts the caller's identity to a trunk that trusts us
/// (carriers bill and show caller ID from it, some ignore From): the same
/// display-name and URI as From, no tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityHeader {
    /// From alone.
    #[default]
    None,
    /// `P-Asserted-Identity` (RFC 3325), what most trunks read.
    PAssertedIdentity,
    /// `Remote-Party-ID` (draft-ietf-sip-privacy-04) with `party=calling;
    /// screen=yes;privacy=off`, for older carriers and SBCs.
    RemotePartyId,
}

impl CallConfig {
    /// Defaults: ring 60 s, no max duration, RFC timers.
    pub fn new(
        trunk: SocketAddr,
        local: SocketAddr,
        to_user: &str,
        from_user: &str,
        media: OfferConfig,
    ) -> Self {
        let uri = format!("sip:{to_user}@{}", host_port(trunk));
        CallConfig {
            trunk,
            request_uri: uri.clone(),
            to_uri: uri,
            from_uri: format!("sip:{from_user}@{}", host_port(local)),
            from_display: None,
            local,
            transport: Transport::Udp,
            credentials: None,
            media,
            ring_timeout_ms: 60_000,
            max_duration_ms: None,
            no_response_timeout_ms: None,
            timers: Timers::default(),
            user_agent: concat!("voxline/", env!("CARGO_PKG_VERSION")).to_string(),
            in_dialog_from_trunk_only: true,
            require_100rel: false,
            session_timer: Some(SessionTimerConfig::default()),
            redirect: RedirectPolicy::default(),
            contact: None,
            outbound_route: None,
            identity: IdentityHeader::None,
            refer: false,
        }
    }
}

/// Queues what a client transaction has to send (to `dest`) and returns
/// its events; nothing for a transaction that does not exist.
fn drain<T: ClientTransaction>(
    tx: Option<&mut T>,
    dest: SocketAddr,
    out: &mut VecDeque<Transmit>,
) -> Vec<TxEvent> {
    let Some(tx) = tx else {
        return Vec::new();
    };
    while let Some(bytes) = tx.poll_transmit() {
        out.push_back(Transmit { dest, bytes });
    }
    std::iter::from_fn(|| tx.poll_event()).collect()
}

/// Longest display-name written, in characters (longer ones are cut).
pub const MAX_DISPLAY_NAME_CHARS: usize = voxline_shared::sidecar_link::MAX_CALLER_NAME_CHARS;

/// `name` as an RFC 3261 `quoted-string` for a display-name: control
/// characters (CR and LF among them) dropped, so it can never end the header
/// line; surrounding whitespace trimmed; at most [`MAX_DISPLAY_NAME_CHARS`]
/// characters kept; `"` and `\` escaped as `quoted-pair`s. `None` when
/// nothing is left (the header then has no display-name). It comes from the
/// edge, which refuses such names already: this does not rely on that.
pub fn quoted_display_name(name: &str) -> Option<String> {
    let kept: String = name
        .chars()
        .filter(|c| !c.is_control())
        .skip_while(|c| c.is_whitespace())
        .take(MAX_DISPLAY_NAME_CHARS)
        .collect();
    let kept = kept.trim_end();
    if kept.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(kept.len() + 2);
    out.push('"');
    for c in kept.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

fn host_port(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", a.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", a.port()),
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub bytes: Vec<u8>,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogEnd {
    pub status: CallStatus,
    pub reason: EndedReason,
    /// The final SIP response code that decided it, if any.
    pub sip_code: Option<u16>,
    /// The trunk did not take the call (Timer B, 408, 480, 503, 504): the
    /// driver should try its next trunk, if it has one.
    pub try_next_trunk: bool,
    /// Short machine-readable detail (e.g. `timer_b`, `sdp_no_common_codec`).
    pub detail: String,
    /// The final response's `Retry-After` in seconds (bounded by
    /// [`msg::MAX_RETRY_AFTER_S`]): a 5xx trunk rests that long, and the
    /// call is dialled again no earlier.
    pub retry_after_s: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// First 180/183. `early_media`: the 1xx carried an SDP answer.
    Ringing {
        code: u16,
        early_media: Option<Negotiated>,
    },
    /// A later provisional response brought (new) early-media SDP.
    EarlyMedia(Negotiated),
    /// 2xx received and ACKed: send/receive RTP per `Negotiated`.
    Answered(Negotiated),
    /// The callee changed the session (re-INVITE / UPDATE with SDP).
    MediaUpdated(Negotiated),
    /// The callee pressed a key, sent as SIP INFO (`application/dtmf-relay`
    /// or `application/dtmf`, [`info_dtmf_key`]); answered 200.
    KeyPressed(char),
    /// The keys of [`Call::send_dtmf_info`] were all answered 2xx (`Ok`),
    /// or one was refused or timed out (`Err`: why; the rest are dropped).
    KeysSent(Result<(), String>),
    /// How a blind transfer by REFER ([`Call::refer`]) goes.
    Refer(ReferEvent),
    /// Always last.
    Ended(DialogEnd),
}

/// The steps of a blind transfer by REFER (RFC 3515): the REFER's own
/// answer, then the NOTIFYs whose `message/sipfrag` bodies tell how the
/// trunk's call to the target goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferEvent {
    /// No REFER was sent: the trunk is not configured for it (`refer` off),
    /// the call is not answered, or a transfer is already under way. Why.
    NotSupported(&'static str),
    /// The REFER was accepted (2xx, normally 202): NOTIFYs follow.
    Accepted,
    /// The REFER itself was refused with this final code (408: no answer).
    Refused(u16),
    /// A NOTIFY: the status line of its sipfrag (`SIP/2.0 180 Ringing` ->
    /// 180); `terminated` when its `Subscription-State` is `terminated`.
    /// A code of 200 or more is the transfer's outcome.
    Progress { code: u16, terminated: bool },
}

/// The status code of a `message/sipfrag` body (RFC 3420) as NOTIFYs of a
/// REFER subscription carry it (RFC 3515 2.4.5): its first line,
/// `SIP/2.0 <code> <reason>`. `None` for anything else.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body.get(..body.len().min(256))?).ok()?;
    let line = text.lines().next()?.trim();
    let mut parts = line.split_whitespace();
    if parts.next()? != "SIP/2.0" {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..=699).contains(&code).then_some(code)
}

/// The most keys queued for SIP INFO at once.
pub const MAX_INFO_KEYS: usize = 64;

/// The key a SIP INFO carries (RFC 6086 with the de-facto DTMF packages):
/// `application/dtmf-relay` (`Signal=5`, `Signal=#` or `Signal=11`, and
/// `Duration=`) or `application/dtmf` (the key alone). `None` for any other
/// INFO (it is still answered 200).
pub fn info_dtmf_key(req: &Message) -> Option<char> {
    let ct = req.content_type()?.to_ascii_lowercase();
    let body = std::str::from_utf8(&req.body).ok()?;
    let value = if ct.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if ct.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => {
            crate::media::dtmf::event_code(c).and_then(crate::media::dtmf::event_digit)
        }
        _ => value
            .parse::<u8>()
            .ok()
            .and_then(crate::media::dtmf::event_digit),
    }
}

/// The body of an INFO pressing `key` for `duration_ms` (`application/dtmf-relay`).
pub fn dtmf_relay_body(key: char, duration_ms: u32) -> String {
    format!("Signal={key}\r\nDuration={duration_ms}\r\n")
}

/// The final-response mapping (RFC code -> call status, reason, failover):
/// the table in [`voxline_shared::sip_outcome`], shared with the edge's
/// redial decision.
pub fn classify_final(code: u16) -> (CallStatus, EndedReason, bool) {
    let f = voxline_shared::sip_outcome::sip_final(code);
    (f.status, f.reason, f.next_trunk)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Calling,
    Early,
    Confirmed,
    /// Our BYE is out.
    Terminating,
    Ended,
}

/// Random lowercase hex of `bytes` bytes from the OS generator (IDs, tags,
/// branches, cnonce). Sans-IO code draws from an injected [`Random`] instead.
pub fn random_hex(bytes: usize) -> String {
    crate::random::hex(bytes)
}

/// A new Via branch (RFC 3261 magic cookie + 10 random bytes).
pub fn new_branch(random: &mut dyn Random) -> String {
    format!("z9hG4bK{}", random.hex(10))
}

/// A URI parameter (`sip:h;lr`), case-insensitive, with or without a value.
pub fn uri_has_param(uri: &str, name: &str) -> bool {
    let no_headers = uri.split('?').next().unwrap_or(uri);
    no_headers.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(name)
    })
}

/// `host[:port]` of a SIP URI as a socket address, if the host is an IP
/// literal. Without a port: 5061 for a `sips:` URI or `transport=tls`, else
/// 5060 (RFC 3261 19.1.2).
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let tls = uri.starts_with("sips:")
        || uri
            .split(['?', '>'])
            .next()
            .unwrap_or(uri)
            .split(';')
            .skip(1)
            .any(|p| {
                p.split_once('=').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case("transport")
                        && v.trim().eq_ignore_ascii_case("tls")
                })
            });
    let default_port = if tls { 5061 } else { 5060 };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hp = rest.split([';', '?', '>']).next()?;
    if let Some(v6) = hp.strip_prefix('[') {
        let (ip, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default_port), |p| p.parse().ok())?;
        return Some(SocketAddr::new(ip.parse().ok()?, port));
    }
    let (h, port) = match hp.split_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hp, default_port),
    };
    Some(SocketAddr::new(h.parse().ok()?, port))
}

/// Whether a 2xx's remote target and route set can address in-dialog
/// requests: the target and every route URI must be valid Request-URIs (a
/// strict router's URI becomes one). `Err` is a stable detail code.
pub fn check_dialog_target(target: &str, routes: &[String]) -> Result<(), &'static str> {
    if msg::check_request_uri(target).is_err() {
        return Err("bad_remote_target");
    }
    for r in routes {
        match msg::parse_name_addr(r) {
            Ok(a) if msg::check_request_uri(&a.uri).is_ok() => {}
            _ => return Err("bad_route_set"),
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Cached {
    branch: String,
    method: String,
    bytes: Vec<u8>,
    dest: SocketAddr,
    expires: u64,
}

/// The early dialog of the last reliable provisional response (RFC 3262):
/// where its PRACK goes and which RSeq it acknowledged.
#[derive(Debug)]
struct EarlyDialog {
    to_tag: String,
    /// The 1xx's To header (with the tag), the PRACK's To.
    remote_to: String,
    target: String,
    routes: Vec<String>,
    /// RSeq of the last reliable provisional PRACKed in it.
    rseq: u32,
}

/// The RSeq of a reliable provisional response (`Require: 100rel` and a
/// valid `RSeq`, RFC 3262 7.1: 1 to 2**31-1), else `None` (read as unreliable).
pub fn reliable_rseq(r: &Message) -> Option<u32> {
    let required = r
        .header_list("Require")
        .iter()
        .any(|t| t.eq_ignore_ascii_case(TAG_100REL));
    let rseq: u32 = r.header("RSeq")?.trim().parse().ok()?;
    (required && (1..=0x7fff_ffff).contains(&rseq)).then_some(rseq)
}

/// The live session timer (RFC 4028) of a confirmed dialog.
#[derive(Debug)]
struct Session {
    interval_s: u32,
    /// When we refresh next (we are the refresher).
    refresh_at: Option<u64>,
    /// Not refreshed by then (by either side): BYE.
    expire_at: u64,
}

#[derive(Debug)]
struct Retrans2xx {
    cseq: u32,
    bytes: Vec<u8>,
    dest: SocketAddr,
    next_at: u64,
    interval: u64,
    until: u64,
}

pub struct Call {
    cfg: CallConfig,
    call_id: String,
    local_tag: String,
    from_header: String,
    cseq: u32,
    phase: Phase,
    invite: InviteClient,
    auth_headers: Vec<(String, String)>,
    digest: DigestClient,
    auth_rounds: u32,
    got_provisional: bool,
    /// What to report once a CANCEL/BYE we sent completes.
    plan: Option<(CallStatus, EndedReason)>,
    cancel_pending: bool,
    cancel: Option<NonInviteClient>,
    cancel_deadline: Option<u64>,
    bye: Option<NonInviteClient>,
    bye_auth_tried: bool,
    remote_to: String,
    remote_tag: Option<String>,
    remote_target: String,
    route_set: Vec<String>,
    ack_2xx: Option<Transmit>,
    ringing_sent: bool,
    /// A provisional response above 100 arrived: the callee was alerted on
    /// this trunk, so a later 408/480/503 must not ring them again elsewhere.
    alerted: bool,
    /// The final response's `Retry-After`, for the [`DialogEnd`].
    retry_after_s: Option<u32>,
    early: Option<Negotiated>,
    /// The early SDP came in a reliable provisional response: it is the
    /// answer (RFC 3262 5), and SDP in later responses is ignored (RFC 3261 13.2.1).
    early_is_answer: bool,
    early_dialog: Option<EarlyDialog>,
    prack: Option<NonInviteClient>,
    prack_dest: SocketAddr,
    prack_auth_tried: bool,
    /// `Session-Expires` / `Min-SE` we ask for (a 422 raises them).
    se_request_s: u32,
    min_se_s: u32,
    se_422_rounds: u32,
    session: Option<Session>,
    /// The peer's `Allow` lists UPDATE: refresh with it, else re-INVITE.
    peer_allows_update: bool,
    refresh_invite: Option<InviteClient>,
    refresh_update: Option<NonInviteClient>,
    /// The ACK of the refresh re-INVITE's 2xx (sent again on a retransmission).
    refresh_ack: Option<Transmit>,
    refresh_auth_tried: bool,
    refresh_422_rounds: u32,
    /// Redirects followed, and the URIs tried ([`redirect::loop_key`]).
    redirects: u32,
    tried_uris: Vec<String>,
    media: Option<Negotiated>,
    local_dir: Direction,
    sdp_version: u64,
    ring_deadline: Option<u64>,
    no_response_deadline: Option<u64>,
    max_deadline: Option<u64>,
    remote_cseq: Option<u32>,
    /// Keys still to send as SIP INFO ([`Call::send_dtmf_info`]), one
    /// transaction at a time, and how long each is held.
    info_keys: VecDeque<char>,
    info_key_ms: u32,
    info: Option<NonInviteClient>,
    info_auth_tried: bool,
    /// The REFER in flight ([`Call::refer`]) and its target (kept while
    /// the subscription's NOTIFYs may come: they are taken only then).
    refer: Option<NonInviteClient>,
    refer_to: Option<String>,
    refer_auth_tried: bool,
    cache: Vec<Cached>,
    reinvite_2xx: Option<Retrans2xx>,
    out: VecDeque<Transmit>,
    events: VecDeque<DialogEvent>,
    ended: bool,
    detail_override: Option<&'static str>,
    /// Call-ID, tags, branches, cnonces, SDP session id.
    random: Box<dyn Random>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("call_id", &self.call_id)
            .field("phase", &self.phase)
            .finish()
    }
}

impl Call {
    /// Starts the call: the INVITE is queued at once. Identifiers come from
    /// the OS generator.
    pub fn new(cfg: CallConfig, now: u64) -> Call {
        Call::with_random(cfg, now, Box::new(OsRandom))
    }

    /// As [`Call::new`], drawing every identifier from `random` (a seeded
    /// source makes the dialog's bytes the same on every run).
    pub fn with_random(mut cfg: CallConfig, now: u64, mut random: Box<dyn Random>) -> Call {
        cfg.timers.reliable = cfg.transport.is_reliable();
        if cfg.media.session_id == 0 {
            cfg.media.session_id = u64::from_str_radix(&random.hex(6), 16).unwrap_or(1);
        }
        // Fresh SRTP keys for each attempt: a trunk that failed over never
        // holds the key of the next trunk's call.
        cfg.media.ensure_srtp_keys(random.as_mut());
        let call_id = format!("{}@voxline", random.hex(12));
        let local_tag = random.hex(6);
        let from_header = match cfg.from_display.as_deref().and_then(quoted_display_name) {
            Some(quoted) => format!("{quoted} <{}>;tag={local_tag}", cfg.from_uri),
            None => format!("<{}>;tag={local_tag}", cfg.from_uri),
        };
        let branch = new_branch(random.as_mut());
        let ring_deadline = Some(now + cfg.ring_timeout_ms);
        let mut c = Call {
            remote_target: cfg.request_uri.clone(),
            call_id,
            local_tag,
            from_header,
            cseq: 1,
            phase: Phase::Calling,
            // Placeholder, replaced right below (needs the fields above).
            invite: InviteClient::new(
                Message::request("INVITE", "sip:x"),
                String::new(),
                now,
                cfg.timers,
            ),
            auth_headers: Vec::new(),
            digest: DigestClient::default(),
            auth_rounds: 0,
            got_provisional: false,
            plan: None,
            cancel_pending: false,
            cancel: None,
            cancel_deadline: None,
            bye: None,
            bye_auth_tried: false,
            remote_to: String::new(),
            remote_tag: None,
            route_set: Vec::new(),
            ack_2xx: None,
            ringing_sent: false,
            alerted: false,
            retry_after_s: None,
            early: None,
            early_is_answer: false,
            early_dialog: None,
            prack: None,
            prack_dest: cfg.trunk,
            prack_auth_tried: false,
            se_request_s: cfg.session_timer.map_or(0, |t| t.expires_s),
            min_se_s: cfg
                .session_timer
                .map_or(MIN_SE_FLOOR_S, |t| t.min_se_s.max(MIN_SE_FLOOR_S)),
            se_422_rounds: 0,
            session: None,
            peer_allows_update: false,
            refresh_invite: None,
            refresh_update: None,
            refresh_ack: None,
            refresh_auth_tried: false,
            refresh_422_rounds: 0,
            redirects: 0,
            tried_uris: vec![redirect::loop_key(&cfg.request_uri)],
            media: None,
            local_dir: Direction::SendRecv,
            sdp_version: 1,
            ring_deadline,
            no_response_deadline: cfg.no_response_timeout_ms.map(|ms| now + ms),
            max_deadline: None,
            remote_cseq: None,
            info_keys: VecDeque::new(),
            info_key_ms: 0,
            info: None,
            info_auth_tried: false,
            refer: None,
            refer_to: None,
            refer_auth_tried: false,
            cache: Vec::new(),
            reinvite_2xx: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            ended: false,
            detail_override: None,
            random,
            cfg,
        };
        let inv = c.build_invite(&branch);
        c.invite = InviteClient::new(inv, branch, now, c.cfg.timers);
        c.pump(now);
        c
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn config(&self) -> &CallConfig {
        &self.cfg
    }

    /// The negotiated media once answered.
    pub fn media(&self) -> Option<&Negotiated> {
        self.media.as_ref()
    }

    fn local_sdp(&self) -> Vec<u8> {
        // After the answer: only the negotiated `a=crypto` line, if any.
        sdp::build_with(
            &self.cfg.media,
            self.media.as_ref(),
            self.sdp_version,
            self.local_dir,
        )
        .into_bytes()
    }

    fn contact(&self) -> String {
        if let Some(c) = &self.cfg.contact {
            return format!("<{c}>");
        }
        let user = self
            .cfg
            .from_uri
            .strip_prefix("sip:")
            .and_then(|r| r.split_once('@'))
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        match self.cfg.transport.uri_param() {
            Some(t) => format!("<sip:{user}{};transport={t}>", host_port(self.cfg.local)),
            None => format!("<sip:{user}{}>", host_port(self.cfg.local)),
        }
    }

    /// `rport` (RFC 3581) on every transport; on TCP/TLS also `alias` (RFC
    /// 5923): the trunk may send its requests back on our connection, the
    /// only way they reach us (we listen on UDP only).
    fn via(&self, branch: &str) -> String {
        let alias = if self.cfg.transport.is_reliable() {
            ";alias"
        } else {
            ""
        };
        format!(
            "SIP/2.0/{} {};rport{alias};branch={branch}",
            self.cfg.transport.via_token(),
            host_port(self.cfg.local)
        )
    }

    fn build_invite(&self, branch: &str) -> Message {
        let mut m = Message::request("INVITE", &self.cfg.request_uri);
        m.push("Via", self.via(branch));
        if let Some(r) = &self.cfg.outbound_route {
            m.push("Route", r.clone());
        }
        m.push("Max-Forwards", "70");
        m.push("From", self.from_header.clone());
        m.push("To", format!("<{}>", self.cfg.to_uri));
        m.push("Call-ID", self.call_id.clone());
        m.push("CSeq", format!("{} INVITE", self.cseq));
        m.push("Contact", self.contact());
        if let Some((name, value)) = self.identity_header() {
            m.push(name, value);
        }
        for (n, v) in &self.auth_headers {
            m.push(n, v.clone());
        }
        m.push("Allow", ALLOW);
        m.push("Supported", self.supported());
        if self.cfg.require_100rel {
            m.push("Require", TAG_100REL);
        }
        if self.cfg.session_timer.is_some() {
            m.push("Session-Expires", self.se_request_s.to_string());
            m.push("Min-SE", self.min_se_s.to_string());
        }
        m.push("User-Agent", self.cfg.user_agent.clone());
        m.push("Content-Type", "application/sdp");
        m.body = self.local_sdp();
        m
    }

    /// [`CallConfig::identity`]: From's display-name and URI, without its tag.
    fn identity_header(&self) -> Option<(&'static str, String)> {
        let display = self
            .cfg
            .from_display
            .as_deref()
            .and_then(quoted_display_name);
        let name_addr = match display {
            Some(quoted) => format!("{quoted} <{}>", self.cfg.from_uri),
            None => format!("<{}>", self.cfg.from_uri),
        };
        match self.cfg.identity {
            IdentityHeader::None => None,
            IdentityHeader::PAssertedIdentity => Some(("P-Asserted-Identity", name_addr)),
            IdentityHeader::RemotePartyId => Some((
                "Remote-Party-ID",
                format!("{name_addr};party=calling;screen=yes;privacy=off"),
            )),
        }
    }

    /// Our `Supported` option tags.
    fn supported(&self) -> &'static str {
        if self.cfg.session_timer.is_some() {
            "100rel, timer"
        } else {
            TAG_100REL
        }
    }

    /// An in-dialog request (ACK for 2xx, BYE) and where to send it.
    fn dialog_request(&mut self, method: &str, cseq: u32) -> Transmit {
        let (m, _) = self.dialog_message(method, cseq);
        Transmit {
            dest: self.next_hop(),
            bytes: m.to_bytes(),
        }
    }

    /// The in-dialog request itself and its branch. Built, never re-parsed:
    /// the target and route set were checked when the 2xx arrived.
    fn dialog_message(&mut self, method: &str, cseq: u32) -> (Message, String) {
        let (target, route_set, to) = (
            self.remote_target.clone(),
            self.route_set.clone(),
            self.remote_to.clone(),
        );
        self.request_in(method, cseq, &target, &route_set, &to)
    }

    /// A request in the dialog (or early dialog) with this remote target,
    /// route set and To, and its branch.
    fn request_in(
        &mut self,
        method: &str,
        cseq: u32,
        target: &str,
        route_set: &[String],
        to: &str,
    ) -> (Message, String) {
        let preloaded = self.preloaded(route_set);
        let route_set = preloaded.as_slice();
        // RFC 3261 12.2.1.1: a first route without `;lr` is a strict router.
        let strict = route_set
            .first()
            .and_then(|r| msg::parse_name_addr(r).ok())
            .filter(|a| !uri_has_param(&a.uri, "lr"));
        let (uri, routes): (String, Vec<String>) = match strict {
            Some(first) => {
                let mut rs: Vec<String> = route_set.get(1..).unwrap_or_default().to_vec();
                rs.push(format!("<{target}>"));
                (first.uri, rs)
            }
            None => (target.to_string(), route_set.to_vec()),
        };
        let mut m = Message::request(method, &uri);
        let branch = new_branch(self.random.as_mut());
        m.push("Via", self.via(&branch));
        for r in &routes {
            m.push("Route", r.clone());
        }
        m.push("Max-Forwards", "70");
        m.push("From", self.from_header.clone());
        m.push("To", to.to_string());
        m.push("Call-ID", self.call_id.clone());
        m.push("CSeq", format!("{cseq} {method}"));
        if method == "ACK" {
            for (n, v) in &self.auth_headers {
                m.push(n, v.clone());
            }
        }
        m.push("User-Agent", self.cfg.user_agent.clone());
        (m, branch)
    }

    /// Where in-dialog requests go: the first Route, else the remote target,
    /// when it is an IP literal; else the trunk (no DNS here).
    fn next_hop(&self) -> SocketAddr {
        self.hop_of(&self.remote_target, &self.route_set)
    }

    /// A dialog's route set, or the outbound proxy's route while it is
    /// empty: a trunk reached through a proxy is always reached through it.
    fn preloaded(&self, route_set: &[String]) -> Vec<String> {
        match &self.cfg.outbound_route {
            Some(r) if route_set.is_empty() => vec![r.clone()],
            _ => route_set.to_vec(),
        }
    }

    fn hop_of(&self, target: &str, route_set: &[String]) -> SocketAddr {
        if route_set.is_empty() && self.cfg.outbound_route.is_some() {
            return self.cfg.trunk;
        }
        let hop = match route_set.first() {
            Some(r) => msg::parse_name_addr(r)
                .ok()
                .and_then(|a| uri_socket_addr(&a.uri)),
            None => uri_socket_addr(target),
        };
        hop.unwrap_or(self.cfg.trunk)
    }

    /// Parses and handles one datagram from `from`. A datagram that does not
    /// parse is dropped (RFC 3261 18.3); the error is returned for logging.
    pub fn handle_datagram(
        &mut self,
        now: u64,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), ParseError> {
        let m = msg::parse(data)?;
        self.handle_message(now, from, &m);
        Ok(())
    }

    pub fn handle_message(&mut self, now: u64, from: SocketAddr, m: &Message) {
        if m.is_request() {
            self.handle_request(now, from, m);
        } else {
            self.handle_response(now, m);
        }
        self.pump(now);
    }

    fn handle_response(&mut self, now: u64, r: &Message) {
        if r.call_id() != self.call_id {
            return;
        }
        let branch = r.top_branch().unwrap_or_default();
        let (_, method) = r.cseq();
        match method {
            "INVITE" if branch == self.invite.branch => {
                let code = r.code().unwrap_or(0);
                if self.invite.state() == IctState::Terminated && (200..300).contains(&code) {
                    // A retransmitted 2xx: ACK it again (the TU's job, RFC 3261 13.2.2.4).
                    if let Some(a) = &self.ack_2xx {
                        self.out.push_back(a.clone());
                    }
                } else {
                    self.invite.on_response(r, now);
                }
            }
            "INVITE" => {
                if let Some(t) = self.refresh_invite.as_mut().filter(|t| t.branch == branch) {
                    let code = r.code().unwrap_or(0);
                    if t.state() == IctState::Terminated && (200..300).contains(&code) {
                        if let Some(a) = &self.refresh_ack {
                            self.out.push_back(a.clone());
                        }
                    } else {
                        t.on_response(r, now);
                    }
                }
            }
            "UPDATE" => {
                if let Some(t) = self.refresh_update.as_mut().filter(|t| t.branch == branch) {
                    t.on_response(r, now);
                }
            }
            "CANCEL" => {
                if let Some(c) = self.cancel.as_mut().filter(|c| c.branch == branch) {
                    c.on_response(r, now);
                }
            }
            "BYE" => {
                if let Some(b) = self.bye.as_mut().filter(|b| b.branch == branch) {
                    b.on_response(r, now);
                }
            }
            "PRACK" => {
                if let Some(p) = self.prack.as_mut().filter(|p| p.branch == branch) {
                    p.on_response(r, now);
                }
            }
            "INFO" => {
                if let Some(t) = self.info.as_mut().filter(|t| t.branch == branch) {
                    t.on_response(r, now);
                }
            }
            "REFER" => {
                if let Some(t) = self.refer.as_mut().filter(|t| t.branch == branch) {
                    t.on_response(r, now);
                }
            }
            _ => {}
        }
    }

    /// Drains the transactions' datagrams and events until nothing moves.
    fn pump(&mut self, now: u64) {
        loop {
            let trunk = self.cfg.trunk;
            let invite_events = drain(Some(&mut self.invite), trunk, &mut self.out);
            // 200 to CANCEL means nothing for the call; the INVITE's 487 does.
            drain(self.cancel.as_mut(), trunk, &mut self.out);
            let hop = self.next_hop();
            let bye_events = drain(self.bye.as_mut(), hop, &mut self.out);
            let prack_events = drain(self.prack.as_mut(), self.prack_dest, &mut self.out);
            let mut refresh_events = drain(self.refresh_invite.as_mut(), hop, &mut self.out);
            refresh_events.extend(drain(self.refresh_update.as_mut(), hop, &mut self.out));
            let info_events = drain(self.info.as_mut(), hop, &mut self.out);
            let refer_events = drain(self.refer.as_mut(), hop, &mut self.out);
            let moved = !(invite_events.is_empty()
                && bye_events.is_empty()
                && prack_events.is_empty()
                && refresh_events.is_empty()
                && info_events.is_empty()
                && refer_events.is_empty());
            for ev in invite_events {
                self.on_invite_event(ev, now);
            }
            for ev in bye_events {
                self.on_bye_event(ev, now);
            }
            for ev in prack_events {
                self.on_prack_event(ev, now);
            }
            for ev in refresh_events {
                self.on_refresh_event(ev, now);
            }
            for ev in info_events {
                self.on_info_event(ev, now);
            }
            for ev in refer_events {
                self.on_refer_event(ev, now);
            }
            if !moved {
                break;
            }
        }
    }

    fn on_invite_event(&mut self, ev: TxEvent, now: u64) {
        match ev {
            TxEvent::Provisional(r) => {
                self.got_provisional = true;
                if self.cancel_pending {
                    self.cancel_pending = false;
                    self.send_cancel(now);
                } else if self.ended && self.cancel.is_none() {
                    // Ringing after we gave up on this trunk (`no_response`:
                    // the driver went on to the next one): stop it.
                    self.send_cancel(now);
                }
                let code = r.code().unwrap_or(100);
                if code > 100 {
                    self.alerted = true;
                }
                let reliable = if code > 100 && !self.ended {
                    reliable_rseq(&r)
                } else {
                    None
                };
                if let Some(rseq) = reliable {
                    if !self.prack_reliable(&r, rseq, now) {
                        // A retransmission (re-PRACKed) or out of order: not news.
                        return;
                    }
                }
                if code == 100 || self.phase != Phase::Calling && self.phase != Phase::Early {
                    return;
                }
                self.phase = Phase::Early;
                // RFC 3261 13.2.1: once an answer came reliably, SDP in later
                // responses to the INVITE is ignored.
                let early = if r.has_sdp() && !self.early_is_answer {
                    sdp::negotiate(&self.cfg.media, &r.body).ok()
                } else {
                    None
                };
                if reliable.is_some() && early.is_some() {
                    self.early_is_answer = true;
                }
                if !self.ringing_sent {
                    self.ringing_sent = true;
                    self.early = early.clone();
                    self.events.push_back(DialogEvent::Ringing {
                        code,
                        early_media: early,
                    });
                } else if let Some(e) = early {
                    if self.early.as_ref() != Some(&e) {
                        self.early = Some(e.clone());
                        self.events.push_back(DialogEvent::EarlyMedia(e));
                    }
                }
            }
            TxEvent::Final(r) => {
                let code = r.code().unwrap_or(500);
                if (200..300).contains(&code) {
                    self.on_2xx(&r, now);
                    return;
                }
                self.retry_after_s = r
                    .header("Retry-After")
                    .and_then(msg::retry_after_seconds)
                    .filter(|s| *s > 0);
                let mut detail = "final_response";
                if code == 301 || code == 302 {
                    match self.follow_redirect(&r, now) {
                        Ok(()) => return, // The INVITE went to the new target.
                        Err(d) => detail = d,
                    }
                }
                if code == 422 {
                    if self.retry_422(&r, now) {
                        return; // Re-sent with the larger interval.
                    }
                    detail = "session_interval_too_small";
                }
                if code == 401 || code == 407 {
                    match self.try_auth(&r, now) {
                        Ok(()) => return, // Re-sent with credentials.
                        Err(d) => detail = d,
                    }
                }
                if let Some((status, reason)) = self
                    .plan
                    .filter(|_| self.cancel.is_some() || self.cancel_pending)
                {
                    self.end(status, reason, Some(code), false, "cancelled");
                } else {
                    let (status, reason, failover) = classify_final(code);
                    // Once the callee's phone rang here, another trunk would ring it again.
                    let failover = failover && !self.alerted;
                    self.end(status, reason, Some(code), failover, detail);
                }
            }
            TxEvent::Timeout => match self.plan {
                Some((status, reason)) => {
                    self.end(status, reason, None, false, "timer_b_after_cancel")
                }
                None => self.end(
                    CallStatus::Failed,
                    EndedReason::TrunkError,
                    None,
                    !self.alerted,
                    "timer_b",
                ),
            },
        }
    }

    fn on_2xx(&mut self, r: &Message, now: u64) {
        self.remote_to = r.header("To").unwrap_or("").to_string();
        self.remote_tag = r.to_tag();
        let target = r
            .contact_uri()
            .unwrap_or_else(|| self.cfg.request_uri.clone());
        let routes: Vec<String> = r.record_route().into_iter().rev().collect();
        // The parser accepts Contact/Record-Route URIs that cannot head a
        // request line (`sip:x@`, `?headers`, control characters); every
        // in-dialog request would then be malformed. Refuse the dialog: ACK
        // and BYE go to the trunk, addressed like the INVITE.
        let bad_target = check_dialog_target(&target, &routes).err();
        if bad_target.is_some() {
            self.remote_target = self.cfg.request_uri.clone();
            self.route_set = Vec::new();
        } else {
            self.remote_target = target;
            self.route_set = routes;
        }
        let ack = self.dialog_request("ACK", self.invite.cseq);
        self.out.push_back(ack.clone());
        self.ack_2xx = Some(ack);
        self.ring_deadline = None;
        self.cancel_deadline = None;
        if self.ended {
            // Answered after we gave up on it (`no_response`, or no final
            // response to our CANCEL): release the callee; the call stays
            // ended and reports nothing more.
            self.send_bye(now, CallStatus::Failed, EndedReason::TrunkError);
            self.phase = Phase::Ended;
            return;
        }
        if let Some((status, reason)) = self.plan {
            // Answered while we were cancelling: hang up at once.
            self.send_bye(now, status, reason);
            return;
        }
        if let Some(code) = bad_target {
            self.phase = Phase::Confirmed;
            self.detail_override = Some(code);
            self.send_bye(now, CallStatus::Failed, EndedReason::TrunkError);
            return;
        }
        let neg = match (&self.early, self.early_is_answer) {
            // The answer came in a reliable 18x (RFC 3262 5): the 2xx's SDP,
            // if any, is ignored (RFC 3261 13.2.1), even when it differs.
            (Some(early), true) => {
                if r.has_sdp()
                    && sdp::negotiate(&self.cfg.media, &r.body).ok().as_ref() != Some(early)
                {
                    tracing::warn!(call_id = %self.call_id, "2xx SDP differs from the reliable 18x's answer: ignored (RFC 3261 13.2.1)");
                }
                Ok(early.clone())
            }
            _ if r.has_sdp() => sdp::negotiate(&self.cfg.media, &r.body).map_err(|e| e.code()),
            _ => self.early.clone().ok_or("sdp_missing_in_answer"),
        };
        match neg {
            Ok(n) => {
                self.phase = Phase::Confirmed;
                if self.cfg.media.srtp.is_on() {
                    // Our SDP now carries the one negotiated crypto line (or none).
                    self.sdp_version += 1;
                }
                self.media = Some(n.clone());
                self.max_deadline = self.cfg.max_duration_ms.map(|d| now + d);
                self.events.push_back(DialogEvent::Answered(n));
                self.peer_allows_update = st::lists(r, "Allow", "UPDATE");
                if let Some((s, who)) = st::session_expires(r) {
                    // `uac` (or none named) is us; `uas` the callee.
                    self.start_session(now, s, who != Some(Refresher::Uas));
                }
            }
            Err(code) => {
                self.phase = Phase::Confirmed;
                self.detail_override = Some(code);
                self.send_bye(now, CallStatus::Failed, EndedReason::TrunkError);
            }
        }
    }

    /// Answers a 401/407 by re-sending the INVITE with credentials for the
    /// strongest challenge (of the configured realm, if one is set).
    /// `Err(detail)`: not answered; the call ends with that detail.
    fn try_auth(&mut self, r: &Message, now: u64) -> Result<(), &'static str> {
        let not_answered = "final_response";
        let Some(cred) = self.cfg.credentials.clone() else {
            return Err(not_answered);
        };
        if self.ended || self.plan.is_some() || self.auth_rounds >= 2 {
            return Err(not_answered);
        }
        let (auth_name, chosen) = match auth::challenges_to_answer(r, cred.realm.as_deref()) {
            Ok(answer) => answer,
            Err(ChooseError::NoChallenge) => return Err(not_answered),
            // Challenged for a realm other than the trunk's: no credentials go out.
            Err(e) => return Err(e.code()),
        };
        // A second challenge for the same nonce without stale=true means our credentials are wrong.
        let repeated = self.auth_rounds > 0
            && chosen.iter().any(|ch| {
                !ch.stale
                    && self
                        .auth_headers
                        .iter()
                        .any(|(_, v)| v.contains(&format!("nonce=\"{}\"", ch.nonce)))
            });
        if repeated {
            return Err(not_answered);
        }
        self.auth_rounds += 1;
        self.auth_headers.retain(|(n, _)| n != auth_name);
        let body = self.local_sdp(); // qop=auth-int hashes the INVITE body
                                     // One header per realm, never two for one realm (RFC 8760 2.4).
        for ch in &chosen {
            let cnonce = self.random.hex(8);
            let v =
                self.digest
                    .authorize(ch, &cred, "INVITE", &self.cfg.request_uri, &cnonce, &body);
            self.auth_headers.push((auth_name.to_string(), v));
        }
        self.resend_invite(now);
        Ok(())
    }

    /// The INVITE again, as a new transaction (CSeq+1, new branch) of the
    /// same call (Call-ID, From tag), after a 401/407 or 422.
    fn resend_invite(&mut self, now: u64) {
        self.cseq += 1;
        let branch = new_branch(self.random.as_mut());
        let inv = self.build_invite(&branch);
        self.invite = InviteClient::new(inv, branch, now, self.cfg.timers);
        self.got_provisional = false;
        self.early_dialog = None;
    }

    /// A 301/302 to the INVITE (RFC 3261 8.1.3.4): the INVITE again (CSeq+1,
    /// new branch, same Call-ID, From and To) to the best allowed Contact,
    /// on that target's address with its credentials. `Err(detail)`: not
    /// followed ([`redirect::choose`]); the call ends with the 3xx.
    fn follow_redirect(&mut self, r: &Message, now: u64) -> Result<(), &'static str> {
        if self.ended || self.plan.is_some() {
            return Err("final_response");
        }
        let mut policy = self.cfg.redirect.clone();
        if let Some((host, port)) = redirect::sip_host_port(&self.cfg.request_uri) {
            // The trunk we are on may always send us to itself.
            policy.targets.push(redirect::RedirectTarget {
                host,
                port,
                addr: self.cfg.trunk,
                credentials: self.cfg.credentials.clone(),
                in_dialog_from_trunk_only: self.cfg.in_dialog_from_trunk_only,
            });
        }
        let (uri, target) = redirect::choose(&policy, r, &self.tried_uris, self.redirects)
            .map_err(|why| {
                tracing::info!(call_id = %self.call_id, code = ?r.code(), why = why.code(), "redirect not followed");
                why.code()
            })?;
        tracing::info!(call_id = %self.call_id, code = ?r.code(), %uri, to = %target.addr, "following redirect");
        self.redirects += 1;
        if self.tried_uris.len() < 16 {
            self.tried_uris.push(redirect::loop_key(&uri));
        }
        // Through an outbound proxy, the new target is reached through it too.
        if self.cfg.outbound_route.is_none() {
            self.cfg.trunk = target.addr;
            self.prack_dest = target.addr;
        }
        self.cfg.request_uri = uri.clone();
        self.cfg.credentials = target.credentials;
        self.cfg.in_dialog_from_trunk_only = target.in_dialog_from_trunk_only;
        self.remote_target = uri;
        self.auth_headers.clear();
        self.auth_rounds = 0;
        self.digest = DigestClient::default();
        self.retry_after_s = None;
        self.no_response_deadline = self.cfg.no_response_timeout_ms.map(|ms| now + ms);
        self.resend_invite(now);
        Ok(())
    }

    /// A 422 to the INVITE (RFC 4028 6): ask again with its larger `Min-SE`
    /// as our interval, at most [`MAX_422_RETRIES`] times; `false` when not
    /// retried (no timers asked for, no usable `Min-SE`, or enough rounds).
    fn retry_422(&mut self, r: &Message, now: u64) -> bool {
        if self.cfg.session_timer.is_none()
            || self.ended
            || self.plan.is_some()
            || self.se_422_rounds >= MAX_422_RETRIES
        {
            return false;
        }
        let Some(min) =
            st::min_se(r).filter(|m| *m > self.se_request_s && *m <= MAX_SESSION_EXPIRES_S)
        else {
            return false;
        };
        self.se_422_rounds += 1;
        self.min_se_s = min;
        self.se_request_s = min;
        self.resend_invite(now);
        true
    }

    /// Starts (or restarts, after a refresh) the session timer: we refresh
    /// at half the interval, or wait for the peer's refresh until the
    /// expiry minus its margin (RFC 4028 10); either way BYE by then.
    fn start_session(&mut self, now: u64, interval_s: u32, we_refresh: bool) {
        let Some(cfg) = self.cfg.session_timer else {
            return;
        };
        // Never below the RFC's floor: a peer cannot make us refresh in a loop.
        let interval = interval_s.clamp(MIN_SE_FLOOR_S, MAX_SESSION_EXPIRES_S);
        let expire_s = if we_refresh {
            interval
        } else {
            st::expiry_after_s(interval)
        };
        self.session = Some(Session {
            interval_s: interval,
            refresh_at: we_refresh.then(|| now.saturating_add(cfg.ms(interval) / 2)),
            expire_at: now.saturating_add(cfg.ms(expire_s)),
        });
    }

    /// Refreshes the session (RFC 4028 7.4): UPDATE without a body when the
    /// peer allows UPDATE, else a re-INVITE with our SDP unchanged (same
    /// `o=` version). With credentials for `challenge` if given.
    fn send_refresh(&mut self, now: u64, challenge: Option<&Message>) {
        let Some(interval) = self.session.as_ref().map(|s| s.interval_s) else {
            return;
        };
        let busy = self
            .refresh_invite
            .as_ref()
            .is_some_and(|t| matches!(t.state(), IctState::Calling | IctState::Proceeding))
            || self.refresh_update.as_ref().is_some_and(|t| {
                matches!(
                    t.state(),
                    super::transaction::NictState::Trying
                        | super::transaction::NictState::Proceeding
                )
            });
        if busy && challenge.is_none() {
            return;
        }
        let method = if self.peer_allows_update {
            "UPDATE"
        } else {
            "INVITE"
        };
        self.cseq += 1;
        let (mut m, branch) = self.dialog_message(method, self.cseq);
        m.push("Contact", self.contact());
        m.push("Supported", self.supported());
        m.push(
            "Session-Expires",
            format!("{};refresher=uac", interval.max(self.min_se_s)),
        );
        m.push("Min-SE", self.min_se_s.to_string());
        if method == "INVITE" {
            m.push("Allow", ALLOW);
            m.push("Content-Type", "application/sdp");
            m.body = self.local_sdp();
        }
        if let Some(ch) = challenge {
            if !self.authorize(ch, &mut m, method) {
                return;
            }
        }
        tracing::debug!(call_id = %self.call_id, method, interval, "session refresh");
        if method == "INVITE" {
            self.refresh_invite = Some(InviteClient::new(m, branch, now, self.cfg.timers));
        } else {
            self.refresh_update = Some(NonInviteClient::new(&m, branch, now, self.cfg.timers));
        }
    }

    fn on_refresh_event(&mut self, ev: TxEvent, now: u64) {
        let r = match ev {
            TxEvent::Provisional(_) => return,
            TxEvent::Final(r) => r,
            TxEvent::Timeout => {
                return self.refresh_failed(now);
            }
        };
        let code = r.code().unwrap_or(500);
        let is_invite = r.cseq().1 == "INVITE";
        if is_invite && (200..300).contains(&code) {
            // ACKed even when the call is ending meanwhile (it stops the 2xx).
            let ack = self.dialog_request("ACK", r.cseq().0);
            self.out.push_back(ack.clone());
            self.refresh_ack = Some(ack);
        }
        if self.phase != Phase::Confirmed {
            return;
        }
        match code {
            200..=299 => {
                self.refresh_auth_tried = false;
                self.refresh_422_rounds = 0;
                if is_invite && r.has_sdp() {
                    if let Ok(n) = sdp::negotiate(&self.cfg.media, &r.body) {
                        if self.media.as_ref().map(|m| &m.srtp) != Some(&n.srtp) {
                            tracing::warn!(call_id = %self.call_id, "re-INVITE answer changes SRTP: media keeps its keys");
                        }
                        if self.media.as_ref() != Some(&n) {
                            self.media = Some(n.clone());
                            self.events.push_back(DialogEvent::MediaUpdated(n));
                        }
                    }
                }
                match st::session_expires(&r) {
                    Some((s, who)) => self.start_session(now, s, who != Some(Refresher::Uas)),
                    // RFC 4028 7.4: no Session-Expires in the 2xx, no expiry.
                    None => self.session = None,
                }
            }
            401 | 407 if !self.refresh_auth_tried => {
                self.refresh_auth_tried = true;
                self.send_refresh(now, Some(&r));
            }
            422 if self.refresh_422_rounds < MAX_422_RETRIES => {
                let min = st::min_se(&r).filter(|m| *m <= MAX_SESSION_EXPIRES_S);
                if let (Some(min), Some(s)) = (min, self.session.as_mut()) {
                    self.refresh_422_rounds += 1;
                    self.min_se_s = self.min_se_s.max(min);
                    s.interval_s = s.interval_s.max(min);
                    self.send_refresh(now, None);
                }
            }
            491 => {
                // Glare (RFC 3261 14.1): we own the Call-ID, so 2.1 to 4 s.
                let jitter = u64::from_str_radix(&self.random.hex(1), 16).unwrap_or(0);
                if let Some(s) = self.session.as_mut() {
                    s.refresh_at = Some(now + 2_100 + jitter * 7);
                }
            }
            408 | 481 => self.refresh_failed(now),
            // Anything else: the session lasts until it expires.
            _ => tracing::info!(call_id = %self.call_id, code, "session refresh refused"),
        }
    }

    /// Presses `keys` (checked by the caller: 0-9 * # A-D) as SIP INFO
    /// `application/dtmf-relay`, one transaction per key, each after the
    /// previous one's 2xx; [`DialogEvent::KeysSent`] once all are answered
    /// (or at once with an error when the call is not answered).
    pub fn send_dtmf_info(&mut self, now: u64, keys: &str, key_ms: u32) {
        if self.phase != Phase::Confirmed {
            self.events.push_back(DialogEvent::KeysSent(
                Err("the call is not answered".into()),
            ));
            return;
        }
        if self.info_keys.len() + keys.chars().count() > MAX_INFO_KEYS {
            self.events
                .push_back(DialogEvent::KeysSent(Err("too many keys queued".into())));
            return;
        }
        // Keys are queued while an INFO is in flight (its key first).
        let idle = self.info_keys.is_empty();
        self.info_key_ms = key_ms;
        self.info_keys.extend(keys.chars());
        if idle {
            self.send_info(now, None);
        }
        self.pump(now);
    }

    /// The next key's INFO (with credentials for `challenge` if given:
    /// the same key again).
    fn send_info(&mut self, now: u64, challenge: Option<&Message>) {
        let Some(&key) = self.info_keys.front() else {
            return;
        };
        self.cseq += 1;
        let (mut m, branch) = self.dialog_message("INFO", self.cseq);
        m.push("Contact", self.contact());
        m.push("Content-Type", "application/dtmf-relay");
        m.body = dtmf_relay_body(key, self.info_key_ms).into_bytes();
        if let Some(ch) = challenge {
            if !self.authorize(ch, &mut m, "INFO") {
                self.info_keys.clear();
                self.events.push_back(DialogEvent::KeysSent(Err(
                    "INFO challenged without credentials".into(),
                )));
                return;
            }
        }
        self.info = Some(NonInviteClient::new(&m, branch, now, self.cfg.timers));
    }

    fn on_info_event(&mut self, ev: TxEvent, now: u64) {
        let fail = |c: &mut Call, why: String| {
            c.info_keys.clear();
            c.events.push_back(DialogEvent::KeysSent(Err(why)));
        };
        match ev {
            TxEvent::Provisional(_) => {}
            TxEvent::Final(r) if matches!(r.code(), Some(200..=299)) => {
                self.info_auth_tried = false;
                self.info_keys.pop_front();
                if self.info_keys.is_empty() {
                    self.events.push_back(DialogEvent::KeysSent(Ok(())));
                } else if self.phase == Phase::Confirmed {
                    self.send_info(now, None);
                } else {
                    fail(self, "the call ended".into());
                }
            }
            TxEvent::Final(r) if matches!(r.code(), Some(401 | 407)) && !self.info_auth_tried => {
                self.info_auth_tried = true;
                self.send_info(now, Some(&r));
            }
            TxEvent::Final(r) => {
                let code = r.code().unwrap_or(0);
                tracing::info!(call_id = %self.call_id, code, "INFO refused");
                fail(self, format!("the callee answered the INFO {code}"));
            }
            TxEvent::Timeout => fail(self, "no answer to the INFO".into()),
        }
    }

    /// Blind transfer (RFC 3515): asks the trunk to call `target` (a SIP
    /// URI, or a number: then in the trunk's domain) in our place with a REFER; [`DialogEvent::Refer`] events follow
    /// (at once [`ReferEvent::NotSupported`] when the trunk is not
    /// configured for REFER, the call is not answered, or a REFER is
    /// already out). The dialog stays up: the caller hangs up once the
    /// NOTIFYs report the target answered.
    pub fn refer(&mut self, now: u64, target: &str) {
        let why = if !self.cfg.refer {
            Some("refer_off")
        } else if self.phase != Phase::Confirmed {
            Some("not_answered")
        } else if self.refer_to.is_some() {
            Some("refer_in_progress")
        } else {
            None
        };
        if let Some(why) = why {
            self.events
                .push_back(DialogEvent::Refer(ReferEvent::NotSupported(why)));
            return;
        }
        // A number alone goes to the trunk, as our INVITE's Request-URI did.
        let target = if target.contains(':') {
            target.to_string()
        } else {
            let host = self
                .cfg
                .request_uri
                .split_once('@')
                .map_or(self.cfg.request_uri.as_str(), |(_, h)| h);
            format!("sip:{target}@{host}")
        };
        self.refer_to = Some(target);
        self.send_refer(now, None);
        self.pump(now);
    }

    /// The REFER (with credentials for `challenge` if given).
    fn send_refer(&mut self, now: u64, challenge: Option<&Message>) {
        let Some(target) = self.refer_to.clone() else {
            return;
        };
        self.cseq += 1;
        let (mut m, branch) = self.dialog_message("REFER", self.cseq);
        m.push("Contact", self.contact());
        m.push("Refer-To", format!("<{target}>"));
        m.push("Referred-By", format!("<{}>", self.cfg.from_uri));
        if let Some(ch) = challenge {
            if !self.authorize(ch, &mut m, "REFER") {
                self.refer_to = None;
                self.events
                    .push_back(DialogEvent::Refer(ReferEvent::Refused(401)));
                return;
            }
        }
        self.refer = Some(NonInviteClient::new(&m, branch, now, self.cfg.timers));
    }

    fn on_refer_event(&mut self, ev: TxEvent, now: u64) {
        match ev {
            TxEvent::Provisional(_) => {}
            TxEvent::Final(r) if matches!(r.code(), Some(200..=299)) => {
                self.events
                    .push_back(DialogEvent::Refer(ReferEvent::Accepted));
            }
            TxEvent::Final(r) if matches!(r.code(), Some(401 | 407)) && !self.refer_auth_tried => {
                self.refer_auth_tried = true;
                self.send_refer(now, Some(&r));
            }
            TxEvent::Final(r) => {
                let code = r.code().unwrap_or(500);
                tracing::info!(call_id = %self.call_id, code, "REFER refused");
                self.refer_to = None;
                self.events
                    .push_back(DialogEvent::Refer(ReferEvent::Refused(code)));
            }
            TxEvent::Timeout => {
                self.refer_to = None;
                self.events
                    .push_back(DialogEvent::Refer(ReferEvent::Refused(408)));
            }
        }
    }

    /// RFC 3261 12.2.1.2: a 408/481 (or no answer) to an in-dialog request ends the dialog.
    fn refresh_failed(&mut self, now: u64) {
        if self.phase == Phase::Confirmed {
            self.detail_override = Some("session_refresh_failed");
            self.send_bye(now, CallStatus::Failed, EndedReason::TrunkError);
        }
    }

    /// A reliable provisional response (RSeq `rseq`): PRACK it (RFC 3262 4).
    /// `true` when it is new; `false` for a retransmission (its PRACK is
    /// sent again, the same transaction) or one out of order (not PRACKed).
    fn prack_reliable(&mut self, r: &Message, rseq: u32, now: u64) -> bool {
        let Some(to_tag) = r.to_tag() else {
            // No early dialog to PRACK in: read it as unreliable.
            return true;
        };
        if let Some(d) = self.early_dialog.as_ref().filter(|d| d.to_tag == to_tag) {
            if rseq == d.rseq {
                if let Some(p) = self.prack.as_mut() {
                    p.retransmit_now();
                }
                return false;
            }
            if Some(rseq) != d.rseq.checked_add(1) {
                tracing::debug!(call_id = %self.call_id, rseq, last = d.rseq, "reliable 1xx out of order: not PRACKed");
                return false;
            }
        }
        let target = r
            .contact_uri()
            .unwrap_or_else(|| self.cfg.request_uri.clone());
        let routes: Vec<String> = r.record_route().into_iter().rev().collect();
        let (target, routes) = match check_dialog_target(&target, &routes) {
            Ok(()) => (target, routes),
            Err(_) => (self.cfg.request_uri.clone(), Vec::new()),
        };
        let d = EarlyDialog {
            to_tag,
            remote_to: r.header("To").unwrap_or("").to_string(),
            target,
            routes,
            rseq,
        };
        self.prack_dest = self.hop_of(&d.target, &d.routes);
        self.early_dialog = Some(d);
        self.prack_auth_tried = false;
        self.send_prack(now, None);
        true
    }

    /// PRACKs the early dialog's last reliable 1xx, with credentials for
    /// `challenge` (a 401/407 to the previous PRACK) if given.
    fn send_prack(&mut self, now: u64, challenge: Option<&Message>) {
        let Some(d) = self.early_dialog.as_ref() else {
            return;
        };
        let rack = format!("{} {} INVITE", d.rseq, self.invite.cseq);
        let (target, routes, to) = (d.target.clone(), d.routes.clone(), d.remote_to.clone());
        self.cseq += 1;
        let (mut m, branch) = self.request_in("PRACK", self.cseq, &target, &routes, &to);
        m.push("RAck", rack);
        if let Some(ch) = challenge {
            if !self.authorize(ch, &mut m, "PRACK") {
                return;
            }
        }
        self.prack = Some(NonInviteClient::new(&m, branch, now, self.cfg.timers));
    }

    fn on_prack_event(&mut self, ev: TxEvent, now: u64) {
        match ev {
            TxEvent::Final(r) if matches!(r.code(), Some(401 | 407)) && !self.prack_auth_tried => {
                self.prack_auth_tried = true;
                self.send_prack(now, Some(&r));
            }
            TxEvent::Final(r) if !matches!(r.code(), Some(200..=299)) => {
                // The UAS goes on retransmitting the 1xx, then gives up with
                // a 5xx to the INVITE (RFC 3262 3): that decides the call.
                tracing::info!(call_id = %self.call_id, code = ?r.code(), "PRACK refused");
            }
            _ => {}
        }
    }

    /// Adds credentials answering the 401/407 `r` to the in-dialog request
    /// `m` (`method`, its Request-URI as sent). `false`: none to give.
    fn authorize(&mut self, r: &Message, m: &mut Message, method: &str) -> bool {
        let Some(cred) = self.cfg.credentials.clone() else {
            return false;
        };
        let Ok((an, chosen)) = auth::challenges_to_answer(r, cred.realm.as_deref()) else {
            return false;
        };
        let uri = m.uri().unwrap_or("").to_string();
        for ch in &chosen {
            let cnonce = self.random.hex(8);
            let v = self
                .digest
                .authorize(ch, &cred, method, &uri, &cnonce, &m.body);
            m.push(an, v);
        }
        true
    }

    fn send_cancel(&mut self, now: u64) {
        let inv = self.invite.request();
        let mut c = Message::request("CANCEL", inv.uri().unwrap_or(""));
        if let Some(v) = inv.header_list("Via").first() {
            c.push("Via", *v);
        }
        for r in inv.header_lines("Route") {
            c.push("Route", r);
        }
        c.push("Max-Forwards", "70");
        c.push("From", inv.header("From").unwrap_or(""));
        c.push("To", inv.header("To").unwrap_or(""));
        c.push("Call-ID", self.call_id.clone());
        c.push("CSeq", format!("{} CANCEL", self.invite.cseq));
        c.push("User-Agent", self.cfg.user_agent.clone());
        self.cancel = Some(NonInviteClient::new(
            &c,
            self.invite.branch.clone(),
            now,
            self.cfg.timers,
        ));
    }

    fn start_cancel(&mut self, now: u64, status: CallStatus, reason: EndedReason) {
        self.plan = Some((status, reason));
        self.ring_deadline = None;
        // RFC 3261 9.1: if no final response comes within 64*T1 of the CANCEL, give up.
        self.cancel_deadline = Some(now + self.cfg.timers.t64());
        if self.got_provisional {
            self.send_cancel(now);
        } else {
            self.cancel_pending = true;
        }
    }

    fn send_bye(&mut self, now: u64, status: CallStatus, reason: EndedReason) {
        self.plan = Some((status, reason));
        self.phase = Phase::Terminating;
        self.max_deadline = None;
        self.session = None;
        self.cseq += 1;
        let (m, branch) = self.dialog_message("BYE", self.cseq);
        self.bye = Some(NonInviteClient::new(&m, branch, now, self.cfg.timers));
    }

    fn on_bye_event(&mut self, ev: TxEvent, now: u64) {
        let (status, reason) = self
            .plan
            .unwrap_or((CallStatus::Completed, EndedReason::AgentHangup));
        match ev {
            TxEvent::Provisional(_) => {}
            TxEvent::Final(r) if matches!(r.code(), Some(401 | 407)) && !self.bye_auth_tried => {
                self.bye_auth_tried = true;
                self.cseq += 1;
                let (mut m, branch) = self.dialog_message("BYE", self.cseq);
                if !self.authorize(&r, &mut m, "BYE") {
                    return self.end_after_bye(status, reason, "bye_challenged");
                }
                self.bye = Some(NonInviteClient::new(&m, branch, now, self.cfg.timers));
            }
            TxEvent::Final(_) => self.end_after_bye(status, reason, "bye_answered"),
            TxEvent::Timeout => self.end_after_bye(status, reason, "bye_timeout"),
        }
    }

    fn end_after_bye(&mut self, status: CallStatus, reason: EndedReason, detail: &str) {
        let d = self.detail_override.take().unwrap_or(detail);
        self.end(status, reason, None, false, d);
    }

    fn end(
        &mut self,
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
        failover: bool,
        detail: &str,
    ) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.phase = Phase::Ended;
        self.session = None;
        self.ring_deadline = None;
        self.max_deadline = None;
        self.cancel_deadline = None;
        self.cancel_pending = false;
        self.events.push_back(DialogEvent::Ended(DialogEnd {
            status,
            reason,
            sip_code,
            try_next_trunk: failover,
            detail: detail.to_string(),
            retry_after_s: self.retry_after_s,
        }));
    }

    /// Hang up: BYE if answered, CANCEL if not yet (sent once a provisional
    /// response allows it). `reason` is reported in the [`DialogEnd`]
    /// (`hangup_requested`, `agent_hangup`, `engine_error`, ...).
    pub fn hangup(&mut self, now: u64, reason: EndedReason) {
        match self.phase {
            Phase::Calling | Phase::Early if self.plan.is_none() => {
                let status = if reason == EndedReason::NoAnswer {
                    CallStatus::NoAnswer
                } else {
                    CallStatus::Cancelled
                };
                self.start_cancel(now, status, reason);
            }
            Phase::Confirmed if self.bye.is_none() => {
                let status = match reason {
                    EndedReason::MediaLost | EndedReason::EngineError => CallStatus::Failed,
                    _ => CallStatus::Completed,
                };
                self.send_bye(now, status, reason);
            }
            _ => {}
        }
        self.pump(now);
    }

    /// The TCP/TLS connection this dialog's messages went over failed (or
    /// the peer closed it). Not answered yet: the call ends `trunk_error`
    /// (`transport_error`) and asks for the next trunk unless the callee
    /// was already alerted here (as for a 408/480/503). Answered: the call
    /// ends `failed`/`trunk_error` (`transport_error`) at once, and a BYE
    /// goes out on a new connection to release the callee. Our own BYE or
    /// CANCEL in flight: the call ends as planned. Nothing is retransmitted
    /// over the lost connection; an ended dialog stops lingering.
    pub fn transport_failed(&mut self, now: u64) {
        const DETAIL: &str = "transport_error";
        if self.ended {
            self.abandon();
            return;
        }
        match (self.phase, self.plan) {
            (Phase::Confirmed, None) => {
                self.detail_override = Some(DETAIL);
                self.send_bye(now, CallStatus::Failed, EndedReason::TrunkError);
                self.end(
                    CallStatus::Failed,
                    EndedReason::TrunkError,
                    None,
                    false,
                    DETAIL,
                );
            }
            (_, Some((status, reason))) => {
                self.end(status, reason, None, false, DETAIL);
                self.abandon();
            }
            (_, None) => {
                self.end(
                    CallStatus::Failed,
                    EndedReason::TrunkError,
                    None,
                    !self.alerted,
                    DETAIL,
                );
                self.abandon();
            }
        }
        self.pump(now);
    }

    /// Drops every transaction and timer: the dialog is done once its
    /// events are read (nothing left to send over a lost connection).
    fn abandon(&mut self) {
        let timers = self.cfg.timers;
        self.invite = InviteClient::abandoned(timers);
        self.cancel = None;
        self.bye = None;
        self.prack = None;
        self.refresh_invite = None;
        self.refresh_update = None;
        self.info = None;
        self.info_keys.clear();
        self.refer = None;
        self.cache.clear();
        self.reinvite_2xx = None;
        self.cancel_pending = false;
        self.ring_deadline = None;
        self.no_response_deadline = None;
        self.max_deadline = None;
        self.cancel_deadline = None;
        self.session = None;
        self.out.clear();
    }

    pub fn handle_timeout(&mut self, now: u64) {
        self.invite.on_timer(now);
        if let Some(c) = self.cancel.as_mut() {
            c.on_timer(now);
        }
        if let Some(b) = self.bye.as_mut() {
            b.on_timer(now);
        }
        if let Some(p) = self.prack.as_mut() {
            p.on_timer(now);
        }
        if let Some(t) = self.refresh_invite.as_mut() {
            t.on_timer(now);
        }
        if let Some(t) = self.refresh_update.as_mut() {
            t.on_timer(now);
        }
        if let Some(t) = self.info.as_mut() {
            t.on_timer(now);
        }
        if let Some(t) = self.refer.as_mut() {
            t.on_timer(now);
        }
        self.pump(now);
        if self.phase == Phase::Confirmed {
            if let Some(s) = self.session.as_mut() {
                if now >= s.expire_at {
                    tracing::info!(call_id = %self.call_id, "session expired without a refresh (RFC 4028): BYE");
                    self.detail_override = Some("session_expired");
                    self.send_bye(now, CallStatus::Failed, EndedReason::TrunkError);
                } else if s.refresh_at.is_some_and(|t| now >= t) {
                    s.refresh_at = None;
                    self.send_refresh(now, None);
                }
            }
        }
        if self.ring_deadline.is_some_and(|d| now >= d) {
            self.ring_deadline = None;
            if matches!(self.phase, Phase::Calling | Phase::Early) && self.plan.is_none() {
                self.start_cancel(now, CallStatus::NoAnswer, EndedReason::NoAnswer);
            }
        }
        if self.no_response_deadline.is_some_and(|d| now >= d) {
            self.no_response_deadline = None;
            // Nothing at all came back: the trunk is down or unreachable. No
            // CANCEL is possible before a provisional response (RFC 3261 9.1).
            if !self.got_provisional
                && self.phase == Phase::Calling
                && self.plan.is_none()
                && !self.ended
            {
                self.end(
                    CallStatus::Failed,
                    EndedReason::TrunkError,
                    None,
                    true,
                    "no_response",
                );
            }
        }
        if self.max_deadline.is_some_and(|d| now >= d) {
            self.max_deadline = None;
            if self.phase == Phase::Confirmed {
                self.send_bye(now, CallStatus::Completed, EndedReason::MaxDurationReached);
            }
        }
        if self.cancel_deadline.is_some_and(|d| now >= d) {
            self.cancel_deadline = None;
            let (status, reason) = self
                .plan
                .unwrap_or((CallStatus::Cancelled, EndedReason::HangupRequested));
            self.end(status, reason, None, false, "no_final_after_cancel");
        }
        if let Some(rt) = self.reinvite_2xx.as_mut() {
            if now >= rt.until {
                self.reinvite_2xx = None;
            } else if now >= rt.next_at {
                self.out.push_back(Transmit {
                    dest: rt.dest,
                    bytes: rt.bytes.clone(),
                });
                rt.interval = (rt.interval * 2).min(self.cfg.timers.t2);
                rt.next_at = now + rt.interval;
            }
        }
        self.cache.retain(|c| c.expires > now);
        self.pump(now);
    }

    pub fn next_timeout(&self) -> Option<u64> {
        let mut t = [
            self.invite.next_timer(),
            self.cancel.as_ref().and_then(|c| c.next_timer()),
            self.bye.as_ref().and_then(|b| b.next_timer()),
            self.prack.as_ref().and_then(|p| p.next_timer()),
            self.refresh_invite.as_ref().and_then(|t| t.next_timer()),
            self.refresh_update.as_ref().and_then(|t| t.next_timer()),
            self.info.as_ref().and_then(|t| t.next_timer()),
            self.refer.as_ref().and_then(|t| t.next_timer()),
            self.session
                .as_ref()
                .map(|s| s.refresh_at.unwrap_or(s.expire_at).min(s.expire_at)),
            self.ring_deadline,
            self.no_response_deadline
                .filter(|_| !self.got_provisional && !self.ended),
            self.max_deadline,
            self.cancel_deadline,
            self.reinvite_2xx.as_ref().map(|r| r.next_at.min(r.until)),
            self.cache.iter().map(|c| c.expires).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.out.is_empty() {
            t = Some(0);
        }
        t
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Ended and nothing left to retransmit or absorb: the driver may drop it.
    pub fn is_done(&self) -> bool {
        self.ended
            && self.invite.next_timer().is_none()
            && self
                .cancel
                .as_ref()
                .is_none_or(|c| c.next_timer().is_none())
            && self.bye.as_ref().is_none_or(|b| b.next_timer().is_none())
            && self.prack.as_ref().is_none_or(|p| p.next_timer().is_none())
            && self
                .refresh_invite
                .as_ref()
                .is_none_or(|t| t.next_timer().is_none())
            && self
                .refresh_update
                .as_ref()
                .is_none_or(|t| t.next_timer().is_none())
            && self.info.as_ref().is_none_or(|t| t.next_timer().is_none())
            && self.refer.as_ref().is_none_or(|t| t.next_timer().is_none())
            && self.cache.is_empty()
            && self.reinvite_2xx.is_none()
            && self.out.is_empty()
    }

    // ---- server side: requests from the callee -------------------------

    fn respond(&mut self, now: u64, to: SocketAddr, req: &Message, mut resp: Message) {
        let bytes = resp_bytes(&mut resp, &self.cfg.user_agent);
        self.out.push_back(Transmit {
            dest: to,
            bytes: bytes.clone(),
        });
        let method = req.method().unwrap_or("").to_string();
        if let Some(branch) = req.top_branch() {
            self.cache.push(Cached {
                branch,
                method,
                bytes,
                dest: to,
                expires: now + self.cfg.timers.t64(),
            });
        }
    }

    fn handle_request(&mut self, now: u64, from: SocketAddr, req: &Message) {
        let method = req.method().unwrap_or("");
        let branch = req.top_branch().unwrap_or_default();
        if method == "ACK" {
            if let Some(rt) = &self.reinvite_2xx {
                if req.cseq().0 == rt.cseq {
                    self.reinvite_2xx = None;
                    if req.has_sdp() {
                        if let Ok(n) = sdp::negotiate(&self.cfg.media, &req.body) {
                            self.media = Some(n.clone());
                            self.events.push_back(DialogEvent::MediaUpdated(n));
                        }
                    }
                }
            }
            return;
        }
        // Retransmission of a request we already answered.
        if let Some(c) = self
            .cache
            .iter()
            .find(|c| c.branch == branch && c.method == method)
        {
            self.out.push_back(Transmit {
                dest: c.dest,
                bytes: c.bytes.clone(),
            });
            return;
        }
        let in_dialog = req.call_id() == self.call_id
            && req.to_tag().as_deref() == Some(self.local_tag.as_str())
            && matches!(
                self.phase,
                Phase::Confirmed | Phase::Terminating | Phase::Ended
            )
            && req.from_tag().is_some()
            && req.from_tag() == self.remote_tag;
        if !in_dialog {
            let resp = out_of_dialog_reply(req, &self.local_tag);
            self.respond(now, from, req, resp);
            return;
        }
        if self.cfg.in_dialog_from_trunk_only && from != self.cfg.trunk && from != self.next_hop() {
            tracing::warn!(call_id = %self.call_id, %from, method, "in-dialog request from an address that is not the trunk's: 403");
            let resp = response_to(req, 403, None);
            self.respond(now, from, req, resp);
            return;
        }
        if self.phase == Phase::Ended {
            // The dialog is over (a BYE ended it): a new request in it, even
            // with a lower CSeq than the BYE's, is for a dialog that no longer
            // exists (RFC 3261 15.1.2), not an out-of-order one (500).
            let resp = response_to(req, 481, None);
            self.respond(now, from, req, resp);
            return;
        }
        let cseq = req.cseq().0;
        // RFC 3261 12.2.2: lower than the remote sequence number: 500.
        if self.remote_cseq.is_some_and(|c| cseq <= c) && method != "CANCEL" {
            let resp = response_to(req, 500, None);
            self.respond(now, from, req, resp);
            return;
        }
        if method != "CANCEL" {
            self.remote_cseq = Some(cseq);
        }
        match method {
            "BYE" => {
                let resp = response_to(req, 200, None);
                self.respond(now, from, req, resp);
                match self.phase {
                    Phase::Confirmed => self.end(
                        CallStatus::Completed,
                        EndedReason::CalleeHangup,
                        None,
                        false,
                        "callee_bye",
                    ),
                    Phase::Terminating => {
                        // BYE glare: both sides hung up; ours decides the reason.
                        let (s, r) = self
                            .plan
                            .unwrap_or((CallStatus::Completed, EndedReason::CalleeHangup));
                        self.end(s, r, None, false, "bye_glare");
                    }
                    _ => {}
                }
            }
            "INVITE" | "UPDATE" if self.phase == Phase::Confirmed => {
                let se = st::session_expires(req);
                if let Some((s, _)) = se.filter(|(s, _)| *s < self.min_se_s) {
                    // RFC 4028 8.1: too short for us: 422 with our Min-SE.
                    tracing::info!(call_id = %self.call_id, s, "session refresh interval too small: 422");
                    let mut resp = response_to(req, 422, None);
                    resp.push("Min-SE", self.min_se_s.to_string());
                    self.respond(now, from, req, resp);
                    return;
                }
                let mut resp = response_to(req, 200, None);
                if req.has_sdp() {
                    let current_keys = self
                        .media
                        .as_ref()
                        .map(|m| m.srtp.as_ref().map(|s| &s.keys));
                    match sdp::negotiate(&self.cfg.media, &req.body) {
                        // New SRTP keys (or SRTP on or off) mid-call: the
                        // running media cannot follow; 488 keeps the session
                        // as it is (RFC 3264 8).
                        Ok(n)
                            if current_keys
                                .is_some_and(|k| k != n.srtp.as_ref().map(|s| &s.keys)) =>
                        {
                            tracing::info!(call_id = %self.call_id, "re-offer changes the SRTP keys: 488");
                            let resp = response_to(req, 488, None);
                            self.respond(now, from, req, resp);
                            return;
                        }
                        Ok(n) => {
                            let dir = n.direction.reversed();
                            let tag = |m: Option<&Negotiated>| {
                                m.and_then(|m| m.srtp.as_ref().map(|s| s.tag))
                            };
                            if tag(self.media.as_ref()) != tag(Some(&n)) {
                                self.sdp_version += 1;
                            }
                            if dir != self.local_dir {
                                self.local_dir = dir;
                                self.sdp_version += 1;
                            }
                            self.media = Some(n.clone());
                            self.events.push_back(DialogEvent::MediaUpdated(n));
                        }
                        Err(_) => {
                            let resp = response_to(req, 488, None);
                            self.respond(now, from, req, resp);
                            return;
                        }
                    }
                }
                resp.push("Contact", self.contact());
                resp.push("Allow", ALLOW);
                self.answer_refresh(now, req, se, &mut resp);
                if method == "INVITE" || req.has_sdp() {
                    resp.push("Content-Type", "application/sdp");
                    resp.body = self.local_sdp();
                }
                let bytes = resp_bytes(&mut resp, &self.cfg.user_agent);
                self.out.push_back(Transmit {
                    dest: from,
                    bytes: bytes.clone(),
                });
                self.cache.push(Cached {
                    branch,
                    method: method.to_string(),
                    bytes: bytes.clone(),
                    dest: from,
                    expires: now + self.cfg.timers.t64(),
                });
                if method == "INVITE" {
                    self.reinvite_2xx = Some(Retrans2xx {
                        cseq,
                        bytes,
                        dest: from,
                        next_at: now + self.cfg.timers.t1,
                        interval: self.cfg.timers.t1,
                        until: now + self.cfg.timers.t64(),
                    });
                }
            }
            "OPTIONS" | "INFO" => {
                let mut resp = response_to(req, 200, None);
                resp.push("Allow", ALLOW);
                resp.push("Accept", "application/sdp");
                self.respond(now, from, req, resp);
                if method == "INFO" && self.phase == Phase::Confirmed {
                    if let Some(key) = info_dtmf_key(req) {
                        self.events.push_back(DialogEvent::KeyPressed(key));
                    }
                }
            }
            // RFC 3515 2.4.4: the REFER's implicit subscription (`Event:
            // refer`); any other NOTIFY is for no subscription of ours (481).
            "NOTIFY"
                if self.refer_to.is_some()
                    && req
                        .header("Event")
                        .and_then(|e| e.split(';').next())
                        .is_some_and(|e| e.trim().eq_ignore_ascii_case("refer")) =>
            {
                let resp = response_to(req, 200, None);
                self.respond(now, from, req, resp);
                let terminated = req
                    .header("Subscription-State")
                    .and_then(|s| s.split(';').next())
                    .is_some_and(|s| s.trim().eq_ignore_ascii_case("terminated"));
                match sipfrag_status(&req.body) {
                    Some(code) => {
                        if code >= 200 || terminated {
                            // The outcome: no further NOTIFY is taken.
                            self.refer_to = None;
                        }
                        self.events
                            .push_back(DialogEvent::Refer(ReferEvent::Progress {
                                code,
                                terminated,
                            }));
                    }
                    None if terminated => {
                        // Ended without a final status: the transfer's fate is unknown.
                        self.refer_to = None;
                        self.events
                            .push_back(DialogEvent::Refer(ReferEvent::Progress {
                                code: 487,
                                terminated,
                            }));
                    }
                    None => {}
                }
            }
            "CANCEL" | "INVITE" | "UPDATE" | "NOTIFY" => {
                let resp = response_to(req, 481, None);
                self.respond(now, from, req, resp);
            }
            _ => {
                let mut resp = response_to(req, 501, None);
                resp.push("Allow", ALLOW);
                self.respond(now, from, req, resp);
            }
        }
    }
}

impl Call {
    /// The session timer of our 2xx to the peer's re-INVITE/UPDATE (RFC
    /// 4028 9): its `Session-Expires` and refresher if it named them (none
    /// named: it refreshes, being the one refreshing now); without one, our
    /// running timer goes on with us as the refresher (`refresher=uas`).
    fn answer_refresh(
        &mut self,
        now: u64,
        req: &Message,
        se: Option<(u32, Option<Refresher>)>,
        resp: &mut Message,
    ) {
        if self.cfg.session_timer.is_none() {
            return;
        }
        let (interval, we_refresh) = match (se, &self.session) {
            (Some((s, who)), _) => (s, who == Some(Refresher::Uas)),
            (None, Some(cur)) => (cur.interval_s, true),
            (None, None) => return,
        };
        let who = if we_refresh {
            Refresher::Uas
        } else {
            Refresher::Uac
        };
        resp.push(
            "Session-Expires",
            format!("{interval};refresher={}", who.as_str()),
        );
        if !we_refresh || st::lists(req, "Supported", "timer") {
            resp.push("Require", "timer");
        }
        self.start_session(now, interval, we_refresh);
    }
}

/// The answer to a request outside any dialog we have: OPTIONS gets 200
/// with what we allow, anything else 481 (RFC 3261 12.2.2). `to_tag` is ours.
pub fn out_of_dialog_reply(req: &Message, to_tag: &str) -> Message {
    if req.method() == Some("OPTIONS") {
        let mut r = response_to(req, 200, Some(to_tag));
        r.push("Allow", ALLOW_OUT_OF_DIALOG);
        r.push(
            "Accept",
            format!("application/sdp, {}", super::text_message::ACCEPT),
        );
        r
    } else {
        response_to(req, 481, Some(to_tag))
    }
}

fn resp_bytes(resp: &mut Message, ua: &str) -> Vec<u8> {
    resp.push("Server", ua);
    resp.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::auth::Credentials;

    const TRUNK: &str = "127.0.0.1:5070";
    const ANSWER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 7078 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    fn cfg() -> CallConfig {
        let media = OfferConfig::new("127.0.0.1:40000".parse().unwrap());
        CallConfig::new(
            TRUNK.parse().unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
            "bob",
            "alice",
            media,
        )
    }

    fn sent(c: &mut Call) -> Vec<(SocketAddr, Message)> {
        let mut v = vec![];
        while let Some(t) = c.poll_transmit() {
            v.push((t.dest, msg::parse(&t.bytes).unwrap()));
        }
        v
    }

    fn events(c: &mut Call) -> Vec<DialogEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn reply(req: &Message, code: u16, extra: &[(&str, &str)], sdp: Option<&str>) -> Vec<u8> {
        let mut r = response_to(req, code, Some("remote1"));
        for (n, v) in extra {
            r.push(n, *v);
        }
        if let Some(s) = sdp {
            r.push("Content-Type", "application/sdp");
            r.body = s.as_bytes().to_vec();
        }
        r.to_bytes()
    }

    fn from() -> SocketAddr {
        TRUNK.parse().unwrap()
    }

    /// INVITE -> 180 -> 200 (with Record-Route) -> ACK.
    fn answered(c: &mut Call) -> Message {
        let inv = sent(c).remove(0).1;
        c.handle_datagram(10, from(), &reply(&inv, 180, &[], None))
            .unwrap();
        let rr = [
            ("Record-Route", "<sip:10.0.0.2:5062;lr>"),
            ("Record-Route", "<sip:10.0.0.1:5061;lr>"),
        ];
        let mut extra = rr.to_vec();
        extra.push(("Contact", "<sip:bob@10.0.0.9:5080;transport=udp>"));
        c.handle_datagram(20, from(), &reply(&inv, 200, &extra, Some(ANSWER_SDP)))
            .unwrap();
        inv
    }

    #[test]
    fn invite_ids_and_offer() {
        let mut c = Call::new(cfg(), 0);
        let (dest, inv) = sent(&mut c).remove(0);
        assert_eq!(dest, from());
        assert_eq!(inv.uri(), Some("sip:bob@127.0.0.1:5070"));
        assert!(
            inv.top_branch().unwrap().starts_with("z9hG4bK")
                && inv.top_branch().unwrap().len() > 20
        );
        assert_eq!(inv.from_tag().as_deref(), Some(c.local_tag()));
        assert_eq!(inv.cseq(), (1, "INVITE"));
        assert!(inv.has_sdp());
        assert!(String::from_utf8_lossy(&inv.body).contains("m=audio 40000 RTP/AVP 0 8 111 101"));
        assert_eq!(inv.header("Contact"), Some("<sip:alice@127.0.0.1:5060>"));
    }

    fn invite_with_display(display: &str) -> (Call, Message, Vec<u8>) {
        let mut c = Call::new(
            CallConfig {
                from_display: Some(display.into()),
                ..cfg()
            },
            0,
        );
        let t = c.poll_transmit().unwrap();
        let inv = msg::parse(&t.bytes).unwrap();
        (c, inv, t.bytes)
    }

    /// The INVITE's headers with this identity setting and display-name.
    fn invite_identity(identity: IdentityHeader, display: Option<&str>) -> Message {
        let mut c = Call::new(
            CallConfig {
                identity,
                from_display: display.map(str::to_string),
                ..cfg()
            },
            0,
        );
        msg::parse(&c.poll_transmit().unwrap().bytes).unwrap()
    }

    #[test]
    fn the_identity_header_repeats_from_without_its_tag() {
        let inv = invite_identity(IdentityHeader::None, Some("Reminder"));
        assert_eq!(inv.header("P-Asserted-Identity"), None);
        assert_eq!(inv.header("Remote-Party-ID"), None);

        let inv = invite_identity(IdentityHeader::PAssertedIdentity, Some("Re \"x\""));
        let from = inv.header("From").unwrap();
        let pai = inv.header("P-Asserted-Identity").unwrap();
        assert_eq!(pai, r#""Re \"x\"" <sip:alice@127.0.0.1:5060>"#);
        assert!(from.starts_with(&format!("{pai};tag=")), "{from}");
        assert_eq!(inv.header("Remote-Party-ID"), None);

        let inv = invite_identity(IdentityHeader::RemotePartyId, None);
        assert_eq!(
            inv.header("Remote-Party-ID"),
            Some("<sip:alice@127.0.0.1:5060>;party=calling;screen=yes;privacy=off")
        );
        assert_eq!(inv.header("P-Asserted-Identity"), None);
    }

    #[test]
    fn the_from_display_name_is_a_quoted_string() {
        let (c, inv, _) = invite_with_display("Reminder");
        assert_eq!(
            inv.header("From").unwrap(),
            format!(
                "\"Reminder\" <sip:alice@127.0.0.1:5060>;tag={}",
                c.local_tag()
            )
        );
        // Without one: the URI alone.
        let mut plain = Call::new(cfg(), 0);
        let inv = sent(&mut plain).remove(0).1;
        assert!(inv.header("From").unwrap().starts_with("<sip:alice@"));
        for (name, quoted) in [
            ("Dr. \"Who\" \\ Co", Some(r#""Dr. \"Who\" \\ Co""#)),
            ("  Zoë  ", Some("\"Zoë\"")),
            ("Re\r\nminder\u{7f}\u{85}", Some("\"Reminder\"")),
            ("\r\n\t ", None),
            ("", None),
        ] {
            assert_eq!(quoted_display_name(name).as_deref(), quoted, "{name:?}");
        }
        let long = "n".repeat(1000);
        assert_eq!(
            quoted_display_name(&long).unwrap(),
            format!("\"{}\"", "n".repeat(MAX_DISPLAY_NAME_CHARS))
        );
    }

    #[test]
    fn a_hostile_display_name_cannot_break_the_from_header() {
        let hostile = "Evil\" <sip:evil@attacker.example>;tag=1\r\nBye: now\r\n\r\nv=0\\";
        let (c, inv, bytes) = invite_with_display(hostile);
        let text = String::from_utf8_lossy(&bytes);
        let head = text.split("\r\n\r\n").next().unwrap();
        assert_eq!(head.lines().filter(|l| l.starts_with("From:")).count(), 1);
        assert!(!head.lines().any(|l| l.starts_with("Bye:")), "{head}");
        assert_eq!(inv.header("Bye"), None);
        assert!(inv.has_sdp());
        let from = msg::parse_name_addr(inv.header("From").unwrap()).unwrap();
        assert_eq!(
            from.display.as_deref(),
            Some("Evil\" <sip:evil@attacker.example>;tag=1Bye: nowv=0\\")
        );
        assert_eq!(from.uri, "sip:alice@127.0.0.1:5060");
        assert_eq!(from.param("tag"), Some(c.local_tag()));
    }

    #[test]
    fn answer_ack_goes_to_contact_with_reversed_route_set_then_we_bye() {
        let mut c = Call::new(cfg(), 0);
        let inv = answered(&mut c);
        let ev = events(&mut c);
        assert!(matches!(
            &ev[0],
            DialogEvent::Ringing {
                code: 180,
                early_media: None
            }
        ));
        let DialogEvent::Answered(n) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (n.codec, n.remote_rtp),
            (sdp::Codec::Pcmu, "10.0.0.9:7078".parse().unwrap())
        );
        let out = sent(&mut c);
        let (dest, ack) = &out[0];
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.uri(), Some("sip:bob@10.0.0.9:5080;transport=udp"));
        assert_eq!(
            ack.header_list("Route"),
            vec!["<sip:10.0.0.1:5061;lr>", "<sip:10.0.0.2:5062;lr>"]
        );
        assert_eq!(
            *dest,
            "10.0.0.1:5061".parse().unwrap(),
            "loose route: first Route is the next hop"
        );
        assert_eq!(ack.cseq(), (1, "ACK"));
        assert_ne!(
            ack.top_branch(),
            inv.top_branch(),
            "2xx ACK is its own transaction"
        );
        assert_eq!(ack.to_tag().as_deref(), Some("remote1"));
        // A retransmitted 200 is ACKed again.
        c.handle_datagram(
            600,
            from(),
            &reply(
                &inv,
                200,
                &[("Contact", "<sip:bob@10.0.0.9:5080>")],
                Some(ANSWER_SDP),
            ),
        )
        .unwrap();
        assert_eq!(sent(&mut c)[0].1.method(), Some("ACK"));
        assert!(events(&mut c).is_empty());
        // Hang up: BYE with CSeq 2 on the same route; 200 ends the call.
        c.hangup(1_000, EndedReason::HangupRequested);
        let (_, bye) = sent(&mut c).remove(0);
        assert_eq!((bye.method(), bye.cseq()), (Some("BYE"), (2, "BYE")));
        assert_eq!(bye.header_list("Route").len(), 2);
        c.handle_datagram(1_010, from(), &reply(&bye, 200, &[], None))
            .unwrap();
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ended(o)] if o.status == CallStatus::Completed && o.reason == EndedReason::HangupRequested)
        );
    }

    fn srtp_call() -> Call {
        let mut cfg = cfg();
        cfg.media.srtp = crate::media::srtp::SrtpPolicy::Mandatory;
        Call::new(cfg, 0)
    }

    fn sdp_version(body: &[u8]) -> u64 {
        let s = String::from_utf8_lossy(body);
        let o = s.lines().find(|l| l.starts_with("o=")).unwrap();
        o.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    #[test]
    fn srtp_mandatory_without_crypto_in_the_answer_ends_the_call() {
        let mut c = srtp_call();
        let inv = sent(&mut c).remove(0).1;
        let body = String::from_utf8_lossy(&inv.body).into_owned();
        assert!(
            body.contains("m=audio 40000 RTP/SAVP 0 8 111 101\r\n"),
            "{body}"
        );
        assert_eq!(body.matches("a=crypto:").count(), 3, "{body}");
        let contact = [("Contact", "<sip:bob@10.0.0.9:5080>")];
        c.handle_datagram(20, from(), &reply(&inv, 200, &contact, Some(ANSWER_SDP)))
            .unwrap();
        let out: Vec<_> = sent(&mut c).into_iter().map(|(_, m)| m).collect();
        let methods: Vec<_> = out.iter().map(|m| m.method()).collect();
        assert_eq!(methods, [Some("ACK"), Some("BYE")]);
        c.handle_datagram(30, from(), &reply(&out[1], 200, &[], None))
            .unwrap();
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ended(e)] if e.detail == "sdp_no_acceptable_crypto"
                && e.status == CallStatus::Failed && e.reason == EndedReason::TrunkError),
            "{ev:?}"
        );
    }

    #[test]
    fn srtp_keys_are_settled_by_the_answer_and_a_re_offer_cannot_change_them() {
        use base64::Engine;
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 30]);
        let mut c = srtp_call();
        let inv = sent(&mut c).remove(0).1;
        assert_eq!(sdp_version(&inv.body), 1);
        let ours = String::from_utf8_lossy(&inv.body)
            .lines()
            .find(|l| l.starts_with("a=crypto:1 "))
            .unwrap()
            .to_string();
        let answer = ANSWER_SDP.replace("RTP/AVP", "RTP/SAVP")
            + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n", b64(7));
        let contact = [("Contact", "<sip:bob@10.0.0.9:5080>")];
        c.handle_datagram(20, from(), &reply(&inv, 200, &contact, Some(&answer)))
            .unwrap();
        let ev = events(&mut c);
        let Some(DialogEvent::Answered(n)) = ev.first() else {
            panic!("{ev:?}")
        };
        let keys = &n.srtp.as_ref().unwrap().keys;
        assert_eq!(keys.remote.as_bytes(), &[7; 30][..]);
        assert!(ours.ends_with(&keys.local.to_base64()), "{ours}");
        sent(&mut c);
        // The callee's re-offer with the same key: 200 with our one line, a new version.
        let reoffer = |cseq: u32, key: u8, c: &Call| {
            let sdp = ANSWER_SDP.replace("RTP/AVP", "RTP/SAVP")
                + &format!("a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n", b64(key));
            let mut m = Message::request("INVITE", "sip:alice@127.0.0.1:5060");
            m.push(
                "Via",
                format!("SIP/2.0/UDP 10.0.0.9:5080;branch=z9hG4bKre{cseq}"),
            );
            m.push("From", "<sip:bob@127.0.0.1>;tag=remote1");
            m.push("To", format!("<sip:alice@127.0.0.1>;tag={}", c.local_tag()));
            m.push("Call-ID", c.call_id());
            m.push("CSeq", format!("{cseq} INVITE"));
            m.push("Contact", "<sip:bob@10.0.0.9:5080>");
            m.push("Content-Type", "application/sdp");
            m.body = sdp.into_bytes();
            msg::parse(&m.to_bytes()).unwrap()
        };
        c.handle_message(1_000, from(), &reoffer(10, 7, &c));
        let (_, ok) = sent(&mut c).remove(0);
        assert_eq!(ok.code(), Some(200));
        let body = String::from_utf8_lossy(&ok.body).into_owned();
        let lines: Vec<_> = body
            .lines()
            .filter(|l| l.starts_with("a=crypto:"))
            .collect();
        assert_eq!(
            lines,
            [format!(
                "a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{}",
                keys.local.to_base64()
            )]
        );
        assert!(sdp_version(&ok.body) > 1, "{body}");
        // A new key: 488, the session stays as it was.
        c.handle_message(2_000, from(), &reoffer(11, 8, &c));
        let (_, refused) = sent(&mut c).remove(0);
        assert_eq!(refused.code(), Some(488));
        assert_eq!(
            c.media()
                .unwrap()
                .srtp
                .as_ref()
                .unwrap()
                .keys
                .remote
                .as_bytes(),
            &[7; 30][..]
        );
    }

    #[test]
    fn callee_bye_reinvite_and_options_in_dialog() {
        let mut c = Call::new(cfg(), 0);
        answered(&mut c);
        events(&mut c);
        sent(&mut c);
        let dialog = |method: &str, cseq: u32, sdp: Option<&str>| {
            let mut m = Message::request(method, "sip:alice@127.0.0.1:5060");
            m.push(
                "Via",
                format!("SIP/2.0/UDP 10.0.0.9:5080;branch=z9hG4bK{method}{cseq}"),
            );
            m.push("From", "<sip:bob@127.0.0.1>;tag=remote1");
            m.push("To", "<sip:alice@127.0.0.1>;tag=X".replace('X', "LOCAL"));
            m.push("Call-ID", "CID");
            m.push("CSeq", format!("{cseq} {method}"));
            if let Some(s) = sdp {
                m.push("Content-Type", "application/sdp");
                m.body = s.as_bytes().to_vec();
            }
            m
        };
        let fix = |m: Message, c: &Call| {
            let b = String::from_utf8(m.to_bytes())
                .unwrap()
                .replace("LOCAL", c.local_tag())
                .replace("CID", c.call_id());
            msg::parse(b.as_bytes()).unwrap()
        };
        // OPTIONS -> 200 with Allow.
        let opt = fix(dialog("OPTIONS", 5, None), &c);
        c.handle_message(2_000, from(), &opt);
        let (_, r) = sent(&mut c).remove(0);
        assert_eq!((r.code(), r.header("Allow")), (Some(200), Some(ALLOW)));
        // re-INVITE putting us on hold: 200 with our SDP, direction recvonly, media update event.
        let hold = ANSWER_SDP.to_string() + "a=sendonly\r\n";
        let re = fix(dialog("INVITE", 6, Some(&hold)), &c);
        c.handle_message(2_100, from(), &re);
        let (dest, r) = sent(&mut c).remove(0);
        assert_eq!((dest, r.code()), (from(), Some(200)));
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(
            body.contains("m=audio 40000")
                && body.contains("a=recvonly")
                && body.contains("o=voxline"),
            "{body}"
        );
        assert!(
            matches!(&events(&mut c)[..], [DialogEvent::MediaUpdated(n)] if n.direction == sdp::Direction::SendOnly)
        );
        // No ACK yet: the 200 is retransmitted after T1.
        c.handle_timeout(2_100 + 500);
        assert_eq!(sent(&mut c)[0].1.code(), Some(200));
        let mut ack = dialog("ACK", 6, None);
        ack.headers[0].1 = "SIP/2.0/UDP 10.0.0.9:5080;branch=z9hG4bKack6".into();
        c.handle_message(2_700, from(), &fix(ack, &c));
        c.handle_timeout(5_000);
        assert!(
            sent(&mut c).iter().all(|(_, m)| m.code() != Some(200)),
            "ACK stops 2xx retransmission"
        );
        // A stale CSeq is refused.
        let old = fix(dialog("UPDATE", 3, None), &c);
        c.handle_message(5_100, from(), &old);
        assert_eq!(sent(&mut c)[0].1.code(), Some(500));
        // Callee BYE: 200, call completed; a retransmitted BYE gets the same 200.
        let bye = fix(dialog("BYE", 7, None), &c);
        c.handle_message(6_000, from(), &bye);
        assert_eq!(sent(&mut c)[0].1.code(), Some(200));
        assert!(
            matches!(&events(&mut c)[..], [DialogEvent::Ended(o)] if o.reason == EndedReason::CalleeHangup && o.status == CallStatus::Completed)
        );
        c.handle_message(6_500, from(), &bye);
        assert_eq!(sent(&mut c)[0].1.code(), Some(200));
        assert!(!c.is_done());
        c.handle_timeout(6_000 + 32_000);
        assert!(c.is_done());
    }

    /// An in-dialog request from the callee, as the tests' trunk sends it.
    fn in_dialog(c: &Call, method: &str, cseq: u32, branch: &str) -> Message {
        let mut m = Message::request(method, "sip:alice@127.0.0.1:5060");
        m.push(
            "Via",
            format!("SIP/2.0/UDP 10.0.0.9:5080;branch=z9hG4bK{branch}"),
        );
        m.push("From", "<sip:bob@127.0.0.1>;tag=remote1");
        m.push("To", format!("<sip:alice@127.0.0.1>;tag={}", c.local_tag()));
        m.push("Call-ID", c.call_id().to_string());
        m.push("CSeq", format!("{cseq} {method}"));
        m
    }

    /// Issue 21: a BYE with the right Call-ID and tags from another address
    /// ended the call, and the real callee's BYE (lower CSeq) then got 500.
    #[test]
    fn a_forged_bye_from_elsewhere_is_refused_and_the_real_one_ends_the_call() {
        let forger: SocketAddr = "127.0.0.1:6666".parse().unwrap();
        let mut c = Call::new(cfg(), 0);
        answered(&mut c);
        events(&mut c);
        sent(&mut c);
        c.handle_message(1_000, forger, &in_dialog(&c, "BYE", 100, "forged"));
        let out = sent(&mut c);
        assert_eq!((out[0].0, out[0].1.code()), (forger, Some(403)));
        assert!(events(&mut c).is_empty(), "the call goes on");
        assert_eq!(c.phase(), Phase::Confirmed);
        // The callee's own BYE (CSeq below the forged one) ends it.
        c.handle_message(2_000, from(), &in_dialog(&c, "BYE", 2, "real"));
        assert_eq!(sent(&mut c)[0].1.code(), Some(200));
        assert!(matches!(
            &events(&mut c)[..],
            [DialogEvent::Ended(o)] if o.reason == EndedReason::CalleeHangup
        ));
        // A new BYE (another transaction) for the ended dialog: 481, not 500.
        c.handle_message(2_100, from(), &in_dialog(&c, "BYE", 1, "late"));
        assert_eq!(sent(&mut c)[0].1.code(), Some(481));
    }

    /// Issue 18: keys the callee sends as SIP INFO are events (answered
    /// 200), and ours go one INFO per key, each after the last one's 2xx.
    #[test]
    fn keys_as_sip_info_both_ways() {
        let mut c = Call::new(cfg(), 0);
        // Not answered yet: refused at once.
        c.send_dtmf_info(5, "1", 100);
        assert_eq!(
            events(&mut c),
            [DialogEvent::KeysSent(
                Err("the call is not answered".into())
            )]
        );
        answered(&mut c);
        events(&mut c);
        sent(&mut c);
        let info = |cseq: u32, ct: &str, body: &str| {
            let mut m = in_dialog(&c, "INFO", cseq, &format!("i{cseq}"));
            m.push("Content-Type", ct.to_string());
            m.body = body.as_bytes().to_vec();
            m
        };
        let keys = [
            info(5, "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            info(6, "application/dtmf-relay", "Signal= 11\r\nDuration=100"),
            info(7, "application/dtmf", "*"),
            info(8, "application/dtmf-relay", "Signal=x"),
            info(9, "application/json", "{}"),
        ];
        for k in &keys {
            c.handle_message(1_000, from(), k);
        }
        let codes: Vec<_> = sent(&mut c).iter().map(|(_, m)| m.code()).collect();
        assert_eq!(codes, [Some(200); 5]);
        assert_eq!(
            events(&mut c),
            [
                DialogEvent::KeyPressed('5'),
                DialogEvent::KeyPressed('#'),
                DialogEvent::KeyPressed('*')
            ]
        );
        // Ours: "1#" is two INFOs, the second after the first's 200.
        c.send_dtmf_info(2_000, "1#", 120);
        let out = sent(&mut c);
        assert_eq!(out.len(), 1);
        let first = &out[0].1;
        assert_eq!(first.method(), Some("INFO"));
        assert_eq!(first.content_type(), Some("application/dtmf-relay"));
        assert_eq!(first.body, b"Signal=1\r\nDuration=120\r\n");
        assert_eq!(info_dtmf_key(first), Some('1'));
        c.handle_datagram(2_050, from(), &reply(first, 200, &[], None))
            .unwrap();
        let out = sent(&mut c);
        assert_eq!(info_dtmf_key(&out[0].1), Some('#'));
        assert!(out[0].1.cseq().0 > first.cseq().0);
        assert_eq!(events(&mut c), []);
        c.handle_datagram(2_100, from(), &reply(&out[0].1, 200, &[], None))
            .unwrap();
        assert_eq!(events(&mut c), [DialogEvent::KeysSent(Ok(()))]);
        // Refused: the rest is dropped, the error reported.
        c.send_dtmf_info(3_000, "23", 120);
        let out = sent(&mut c);
        c.handle_datagram(3_050, from(), &reply(&out[0].1, 415, &[], None))
            .unwrap();
        assert!(
            matches!(&events(&mut c)[..], [DialogEvent::KeysSent(Err(e))] if e.contains("415"))
        );
        assert!(sent(&mut c).iter().all(|(_, m)| m.method() != Some("INFO")));
    }

    /// Issue 16: a blind transfer by REFER (RFC 3515): Refer-To and
    /// Referred-By, the 202, the NOTIFYs' sipfrag progress answered 200, the
    /// final status ending the subscription (a later NOTIFY gets 481).
    #[test]
    fn a_refer_is_sent_and_its_notify_progress_reported() {
        // Not configured for REFER: refused at once, nothing sent.
        let mut off = Call::new(cfg(), 0);
        answered(&mut off);
        events(&mut off);
        sent(&mut off);
        off.refer(100, "sip:+15550002222@127.0.0.1:5070");
        assert_eq!(
            events(&mut off),
            [DialogEvent::Refer(ReferEvent::NotSupported("refer_off"))]
        );
        assert!(sent(&mut off).is_empty());

        let mut c = Call::new(
            CallConfig {
                refer: true,
                ..cfg()
            },
            0,
        );
        c.refer(5, "sip:x@127.0.0.1");
        assert_eq!(
            events(&mut c),
            [DialogEvent::Refer(ReferEvent::NotSupported("not_answered"))]
        );
        answered(&mut c);
        events(&mut c);
        sent(&mut c);
        c.refer(1_000, "+15550002222");
        let out = sent(&mut c);
        assert_eq!(out.len(), 1, "{out:?}");
        let (dest, refer) = &out[0];
        assert_eq!(refer.method(), Some("REFER"));
        // In the dialog: its route set's first hop, its Call-ID and tags.
        assert_eq!(*dest, "10.0.0.1:5061".parse().unwrap());
        assert_eq!(refer.call_id(), c.call_id());
        assert_eq!(refer.to_tag().as_deref(), Some("remote1"));
        assert_eq!(
            refer.header("Refer-To"),
            Some("<sip:+15550002222@127.0.0.1:5070>")
        );
        assert_eq!(
            refer.header("Referred-By"),
            Some("<sip:alice@127.0.0.1:5060>")
        );
        // A second transfer while this one runs: refused.
        c.refer(1_001, "sip:y@127.0.0.1");
        assert_eq!(
            events(&mut c),
            [DialogEvent::Refer(ReferEvent::NotSupported(
                "refer_in_progress"
            ))]
        );
        c.handle_datagram(1_010, from(), &reply(refer, 202, &[], None))
            .unwrap();
        assert_eq!(events(&mut c), [DialogEvent::Refer(ReferEvent::Accepted)]);
        let notify = |c: &Call, cseq: u32, state: &str, frag: &str| {
            let mut m = in_dialog(c, "NOTIFY", cseq, &format!("n{cseq}"));
            m.push("Event", "refer");
            m.push("Subscription-State", state.to_string());
            m.push("Content-Type", "message/sipfrag;version=2.0");
            m.body = frag.as_bytes().to_vec();
            m
        };
        let trying = notify(&c, 10, "active;expires=60", "SIP/2.0 100 Trying\r\n");
        c.handle_message(1_100, from(), &trying);
        let ok = notify(&c, 11, "terminated;reason=noresource", "SIP/2.0 200 OK\r\n");
        c.handle_message(1_200, from(), &ok);
        let codes: Vec<_> = sent(&mut c).iter().map(|(_, m)| m.code()).collect();
        assert_eq!(codes, [Some(200), Some(200)]);
        assert_eq!(
            events(&mut c),
            [
                DialogEvent::Refer(ReferEvent::Progress {
                    code: 100,
                    terminated: false
                }),
                DialogEvent::Refer(ReferEvent::Progress {
                    code: 200,
                    terminated: true
                }),
            ]
        );
        // The subscription is over: another NOTIFY is for nothing of ours.
        let late = notify(&c, 12, "active", "SIP/2.0 180 Ringing\r\n");
        c.handle_message(1_300, from(), &late);
        let codes: Vec<_> = sent(&mut c).iter().map(|(_, m)| m.code()).collect();
        assert_eq!(codes, [Some(481)]);
        assert_eq!(events(&mut c), []);
        // The call itself is still up: the caller hangs up.
        assert_eq!(c.phase(), Phase::Confirmed);
    }

    #[test]
    fn a_refused_or_unanswered_refer_is_reported_with_its_code() {
        let mut c = Call::new(
            CallConfig {
                refer: true,
                ..cfg()
            },
            0,
        );
        answered(&mut c);
        events(&mut c);
        sent(&mut c);
        c.refer(1_000, "sip:+15550002222@127.0.0.1:5070");
        let refer = sent(&mut c).remove(0).1;
        c.handle_datagram(1_010, from(), &reply(&refer, 603, &[], None))
            .unwrap();
        assert_eq!(
            events(&mut c),
            [DialogEvent::Refer(ReferEvent::Refused(603))]
        );
        // Another may follow; this one is never answered (Timer F: 64*T1).
        c.refer(2_000, "sip:+15550002222@127.0.0.1:5070");
        assert_eq!(sent(&mut c).len(), 1);
        let mut t = 2_000;
        while t < 2_000 + 64 * 500 + 1 {
            t += 500;
            c.handle_timeout(t);
        }
        let evs = events(&mut c);
        assert_eq!(evs, [DialogEvent::Refer(ReferEvent::Refused(408))]);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here"), Some(486));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 100 Trying\r\nVia: x\r\n"),
            Some(100)
        );
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK",
            b"SIP/2.0 abc",
            b"SIP/2.0 999 x",
            b"\xff\xfe",
        ] {
            assert_eq!(sipfrag_status(bad), None, "{bad:?}");
        }
    }

    /// With the option off (a trunk whose addresses are not known), any
    /// address may end the call; the real callee's later BYE then gets 481
    /// (its dialog is gone), not 500.
    #[test]
    fn without_the_source_check_a_bye_for_an_ended_dialog_gets_481() {
        let forger: SocketAddr = "127.0.0.1:6666".parse().unwrap();
        let mut cfg = cfg();
        cfg.in_dialog_from_trunk_only = false;
        let mut c = Call::new(cfg, 0);
        answered(&mut c);
        events(&mut c);
        sent(&mut c);
        c.handle_message(1_000, forger, &in_dialog(&c, "BYE", 100, "other"));
        assert_eq!(sent(&mut c)[0].1.code(), Some(200));
        assert!(matches!(&events(&mut c)[..], [DialogEvent::Ended(_)]));
        c.handle_message(2_000, from(), &in_dialog(&c, "BYE", 2, "real"));
        assert_eq!(sent(&mut c)[0].1.code(), Some(481));
        // While the dialog lives, a lower CSeq is still 500 (RFC 3261 12.2.2).
        let mut c = Call::new(self::cfg(), 0);
        answered(&mut c);
        sent(&mut c);
        c.handle_message(1_000, from(), &in_dialog(&c, "OPTIONS", 5, "o5"));
        c.handle_message(1_100, from(), &in_dialog(&c, "OPTIONS", 4, "o4"));
        let codes: Vec<_> = sent(&mut c).iter().map(|(_, m)| m.code()).collect();
        assert_eq!(codes, [Some(200), Some(500)]);
    }

    #[test]
    fn digest_retry_increments_cseq_and_keeps_call_id() {
        let mut cfg = cfg();
        cfg.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            realm: None,
        });
        let mut c = Call::new(cfg, 0);
        let inv = sent(&mut c).remove(0).1;
        let ch = [(
            "Proxy-Authenticate",
            "Digest realm=\"r\", nonce=\"n1\", qop=\"auth,auth-int\"",
        )];
        c.handle_datagram(10, from(), &reply(&inv, 407, &ch, None))
            .unwrap();
        let out = sent(&mut c);
        assert_eq!(out[0].1.method(), Some("ACK"));
        let inv2 = &out[1].1;
        assert_eq!(inv2.cseq(), (2, "INVITE"));
        assert_eq!(inv2.call_id(), inv.call_id());
        assert_eq!(inv2.from_tag(), inv.from_tag());
        assert_ne!(inv2.top_branch(), inv.top_branch());
        let pa = inv2.header("Proxy-Authorization").unwrap();
        assert!(
            pa.contains("qop=auth, nc=00000001") && pa.contains("uri=\"sip:bob@127.0.0.1:5070\""),
            "{pa}"
        );
        // The same nonce again (not stale): the credentials are wrong; give up.
        c.handle_datagram(20, from(), &reply(inv2, 407, &ch, None))
            .unwrap();
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ended(o)] if o.sip_code == Some(407) && o.status == CallStatus::Failed),
            "{ev:?}"
        );
    }

    #[test]
    fn digest_answers_only_the_strongest_challenge() {
        let mut cfg = cfg();
        cfg.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            realm: None,
        });
        let mut c = Call::new(cfg, 0);
        let inv = sent(&mut c).remove(0).1;
        let ch = [
            (
                "WWW-Authenticate",
                "Digest realm=\"r\", nonce=\"md5\", qop=\"auth\"",
            ),
            (
                "WWW-Authenticate",
                "Digest realm=\"r\", nonce=\"sha\", qop=\"auth\", algorithm=SHA-256",
            ),
        ];
        c.handle_datagram(10, from(), &reply(&inv, 401, &ch, None))
            .unwrap();
        let out = sent(&mut c);
        let inv2 = &out[1].1;
        let auth = inv2.header_lines("Authorization");
        assert_eq!(auth.len(), 1, "{auth:?}");
        assert!(
            auth[0].contains("algorithm=SHA-256") && auth[0].contains("nonce=\"sha\""),
            "{auth:?}"
        );
    }

    /// Issue 21: a 407 with a SHA-256 and an MD5 challenge of one realm (and
    /// one of a second realm, as a forking proxy aggregates them) is answered
    /// with one Proxy-Authorization per realm, the strongest of each.
    #[test]
    fn digest_answers_the_strongest_challenge_once_per_realm() {
        let mut cfg = cfg();
        cfg.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            realm: None,
        });
        let mut c = Call::new(cfg, 0);
        let inv = sent(&mut c).remove(0).1;
        let ch = [
            (
                "Proxy-Authenticate",
                "Digest realm=\"a\", nonce=\"a-sha\", qop=\"auth\", algorithm=SHA-256",
            ),
            (
                "Proxy-Authenticate",
                "Digest realm=\"a\", nonce=\"a-md5\", qop=\"auth\", algorithm=MD5",
            ),
            (
                "Proxy-Authenticate",
                "Digest realm=\"b\", nonce=\"b-md5\", qop=\"auth\"",
            ),
        ];
        c.handle_datagram(10, from(), &reply(&inv, 407, &ch, None))
            .unwrap();
        let out = sent(&mut c);
        let inv2 = &out[1].1;
        let auth = inv2.header_lines("Proxy-Authorization");
        assert_eq!(auth.len(), 2, "{auth:?}");
        assert!(
            auth[0].contains("realm=\"a\"")
                && auth[0].contains("algorithm=SHA-256")
                && auth[0].contains("nonce=\"a-sha\""),
            "{auth:?}"
        );
        assert!(
            auth[1].contains("realm=\"b\"") && auth[1].contains("algorithm=MD5"),
            "{auth:?}"
        );
        // With the trunk's realm configured, only that realm is answered.
        let mut cfg = self::cfg();
        cfg.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            realm: Some("b".into()),
        });
        let mut c = Call::new(cfg, 0);
        let inv = sent(&mut c).remove(0).1;
        c.handle_datagram(10, from(), &reply(&inv, 407, &ch, None))
            .unwrap();
        let out = sent(&mut c);
        let auth = out[1].1.header_lines("Proxy-Authorization");
        assert_eq!(auth.len(), 1, "{auth:?}");
        assert!(auth[0].contains("realm=\"b\""), "{auth:?}");
    }

    #[test]
    fn digest_for_another_realm_is_refused() {
        let mut cfg = cfg();
        cfg.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            realm: Some("trunk.example".into()),
        });
        let mut c = Call::new(cfg, 0);
        let inv = sent(&mut c).remove(0).1;
        let ch = [(
            "Proxy-Authenticate",
            "Digest realm=\"elsewhere.example\", nonce=\"n1\", qop=\"auth\"",
        )];
        c.handle_datagram(10, from(), &reply(&inv, 407, &ch, None))
            .unwrap();
        let out = sent(&mut c);
        assert!(
            out.iter().all(|(_, m)| m.method() != Some("INVITE")),
            "no INVITE with credentials: {out:?}"
        );
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ended(o)] if o.sip_code == Some(407)
                && o.status == CallStatus::Failed
                && o.detail == "auth_realm_mismatch"),
            "{ev:?}"
        );
    }

    #[test]
    fn final_response_mapping() {
        use EndedReason as R;
        for (code, status, reason, failover) in [
            (486, CallStatus::Busy, R::Busy, false),
            (600, CallStatus::Busy, R::Busy, false),
            // The callee declined: its own outcome, and a 6xx ends the call everywhere.
            (603, CallStatus::Busy, R::Declined, false),
            (604, CallStatus::Failed, R::Rejected, false),
            (480, CallStatus::NoAnswer, R::NoAnswer, true),
            (408, CallStatus::NoAnswer, R::NoAnswer, true),
            (503, CallStatus::Failed, R::TrunkError, true),
            (504, CallStatus::Failed, R::TrunkError, true),
            (404, CallStatus::Failed, R::Rejected, false),
            (500, CallStatus::Failed, R::TrunkError, true),
        ] {
            let mut c = Call::new(cfg(), 0);
            let inv = sent(&mut c).remove(0).1;
            c.handle_datagram(5, from(), &reply(&inv, code, &[], None))
                .unwrap();
            let ev = events(&mut c);
            let [DialogEvent::Ended(o)] = &ev[..] else {
                panic!("{code}: {ev:?}")
            };
            assert_eq!(
                (o.status, o.reason, o.sip_code, o.try_next_trunk),
                (status, reason, Some(code), failover),
                "{code}"
            );
        }
    }

    #[test]
    fn timer_b_signals_failover() {
        let mut c = Call::new(cfg(), 0);
        let mut sends = 0;
        while let Some(t) = c.next_timeout() {
            if c.is_ended() {
                break;
            }
            c.handle_timeout(t);
            sends += sent(&mut c).len();
        }
        assert_eq!(sends, 1 + 6);
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ended(o)] if o.try_next_trunk && o.detail == "timer_b" && o.sip_code.is_none())
        );
    }

    #[test]
    fn cancel_waits_for_a_provisional_response() {
        let mut c = Call::new(cfg(), 0);
        let inv = sent(&mut c).remove(0).1;
        c.hangup(100, EndedReason::HangupRequested);
        assert!(
            sent(&mut c).is_empty(),
            "no CANCEL before any 1xx (RFC 3261 9.1)"
        );
        c.handle_datagram(200, from(), &reply(&inv, 100, &[], None))
            .unwrap();
        let (_, cancel) = sent(&mut c).remove(0);
        assert_eq!(
            (cancel.method(), cancel.cseq()),
            (Some("CANCEL"), (1, "CANCEL"))
        );
        assert_eq!(cancel.top_branch(), inv.top_branch());
        c.handle_datagram(210, from(), &reply(&cancel, 200, &[], None))
            .unwrap();
        c.handle_datagram(220, from(), &reply(&inv, 487, &[], None))
            .unwrap();
        assert_eq!(sent(&mut c)[0].1.method(), Some("ACK"));
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ended(o)] if o.status == CallStatus::Cancelled && o.sip_code == Some(487))
        );
    }

    #[test]
    fn answered_during_cancel_is_acked_and_byed() {
        let mut c = Call::new(cfg(), 0);
        let inv = sent(&mut c).remove(0).1;
        c.handle_datagram(10, from(), &reply(&inv, 180, &[], None))
            .unwrap();
        c.hangup(20, EndedReason::HangupRequested);
        sent(&mut c);
        c.handle_datagram(
            30,
            from(),
            &reply(
                &inv,
                200,
                &[("Contact", "<sip:bob@127.0.0.1:5070>")],
                Some(ANSWER_SDP),
            ),
        )
        .unwrap();
        let out = sent(&mut c);
        assert_eq!(
            out.iter()
                .map(|(_, m)| m.method().unwrap())
                .collect::<Vec<_>>(),
            ["ACK", "BYE"]
        );
        c.handle_datagram(40, from(), &reply(&out[1].1, 200, &[], None))
            .unwrap();
        let ev = events(&mut c);
        assert!(
            matches!(ev.last(), Some(DialogEvent::Ended(o)) if o.status == CallStatus::Cancelled)
        );
        assert!(!ev.iter().any(|e| matches!(e, DialogEvent::Answered(_))));
    }

    #[test]
    fn max_duration_sends_bye() {
        let mut cfg = cfg();
        cfg.max_duration_ms = Some(5_000);
        let mut c = Call::new(cfg, 0);
        answered(&mut c);
        sent(&mut c);
        events(&mut c);
        c.handle_timeout(5_019);
        assert!(sent(&mut c).is_empty());
        c.handle_timeout(5_020);
        let (_, bye) = sent(&mut c).remove(0);
        assert_eq!(bye.method(), Some("BYE"));
        c.handle_datagram(5_030, from(), &reply(&bye, 200, &[], None))
            .unwrap();
        assert!(
            matches!(&events(&mut c)[..], [DialogEvent::Ended(o)] if o.reason == EndedReason::MaxDurationReached)
        );
    }

    #[test]
    fn early_media_sdp_in_183_is_reported() {
        let mut c = Call::new(cfg(), 0);
        let inv = sent(&mut c).remove(0).1;
        c.handle_datagram(10, from(), &reply(&inv, 183, &[], Some(ANSWER_SDP)))
            .unwrap();
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ringing { code: 183, early_media: Some(n) }] if n.remote_rtp.port() == 7078)
        );
        // 200 without SDP: the early answer stands.
        c.handle_datagram(
            20,
            from(),
            &reply(&inv, 200, &[("Contact", "<sip:bob@127.0.0.1:5070>")], None),
        )
        .unwrap();
        assert!(
            matches!(&events(&mut c)[..], [DialogEvent::Answered(n)] if n.remote_rtp.port() == 7078)
        );
    }

    const OTHER_SDP: &str = "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 9000 RTP/AVP 0\r\n";

    /// A reliable provisional response (RFC 3262) from the early dialog `remote1`.
    fn reliable(inv: &Message, code: u16, rseq: u32, sdp: Option<&str>) -> Vec<u8> {
        let rseq = rseq.to_string();
        let extra = [
            ("Require", "100rel"),
            ("RSeq", rseq.as_str()),
            ("Contact", "<sip:bob@10.0.0.9:5080>"),
        ];
        reply(inv, code, &extra, sdp)
    }

    /// Issue 21: a reliable 183 with SDP is PRACKed in its early dialog, its
    /// SDP is the answer (a different one in the 200 is ignored, RFC 3261
    /// 13.2.1), and its retransmission is PRACKed again but not reported twice.
    #[test]
    fn a_reliable_183_is_pracked_and_its_sdp_is_the_answer() {
        let mut c = Call::new(cfg(), 0);
        let inv = sent(&mut c).remove(0).1;
        assert!(st::lists(&inv, "Supported", "100rel"));
        assert_eq!(inv.header("Require"), None);
        assert!(inv.header("Allow").unwrap().contains("PRACK"));
        c.handle_datagram(10, from(), &reliable(&inv, 183, 7, Some(ANSWER_SDP)))
            .unwrap();
        let out = sent(&mut c);
        let [(dest, prack)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(
            *dest,
            "10.0.0.9:5080".parse().unwrap(),
            "to the 183's Contact"
        );
        assert_eq!(prack.method(), Some("PRACK"));
        assert_eq!(prack.uri(), Some("sip:bob@10.0.0.9:5080"));
        assert_eq!(prack.cseq(), (2, "PRACK"));
        assert_eq!(prack.header("RAck"), Some("7 1 INVITE"));
        assert_eq!(prack.to_tag().as_deref(), Some("remote1"));
        assert_eq!(prack.call_id(), inv.call_id());
        assert!(matches!(
            &events(&mut c)[..],
            [DialogEvent::Ringing { code: 183, early_media: Some(n) }] if n.remote_rtp.port() == 7078
        ));
        // The 183 again (our PRACK was lost): the same PRACK again, no event.
        c.handle_datagram(500, from(), &reliable(&inv, 183, 7, Some(ANSWER_SDP)))
            .unwrap();
        let again = sent(&mut c);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.top_branch(), prack.top_branch());
        assert_eq!(again[0].1.cseq(), (2, "PRACK"));
        assert!(events(&mut c).is_empty());
        c.handle_datagram(510, from(), &reply(prack, 200, &[], None))
            .unwrap();
        // Once answered, the PRACK is never retransmitted.
        c.handle_timeout(5_000);
        assert!(sent(&mut c).is_empty());
        // The 200 carries another SDP: the reliable 183's answer stands.
        let contact = [("Contact", "<sip:bob@10.0.0.9:5080>")];
        c.handle_datagram(6_000, from(), &reply(&inv, 200, &contact, Some(OTHER_SDP)))
            .unwrap();
        assert!(
            matches!(&events(&mut c)[..], [DialogEvent::Answered(n)] if n.remote_rtp.port() == 7078)
        );
        let ack = sent(&mut c).remove(0).1;
        assert_eq!((ack.method(), ack.cseq()), (Some("ACK"), (1, "ACK")));
        c.hangup(7_000, EndedReason::HangupRequested);
        assert_eq!(sent(&mut c)[0].1.cseq(), (3, "BYE"));
    }

    /// An unreliable 183's SDP is only a preview: the 200's SDP decides.
    #[test]
    fn an_unreliable_183s_sdp_gives_way_to_the_200s() {
        let mut c = Call::new(cfg(), 0);
        let inv = sent(&mut c).remove(0).1;
        c.handle_datagram(10, from(), &reply(&inv, 183, &[], Some(ANSWER_SDP)))
            .unwrap();
        assert!(sent(&mut c).is_empty(), "no PRACK for an unreliable 1xx");
        events(&mut c);
        let contact = [("Contact", "<sip:bob@10.0.0.9:5080>")];
        c.handle_datagram(20, from(), &reply(&inv, 200, &contact, Some(OTHER_SDP)))
            .unwrap();
        assert!(
            matches!(&events(&mut c)[..], [DialogEvent::Answered(n)] if n.remote_rtp.port() == 9000)
        );
    }

    #[test]
    fn reliable_1xx_out_of_order_are_not_pracked_and_require_100rel_is_an_option() {
        let mut c = Call::new(
            CallConfig {
                require_100rel: true,
                ..cfg()
            },
            0,
        );
        let inv = sent(&mut c).remove(0).1;
        assert_eq!(inv.header("Require"), Some("100rel"));
        c.handle_datagram(10, from(), &reliable(&inv, 180, 1, None))
            .unwrap();
        assert_eq!(sent(&mut c)[0].1.header("RAck"), Some("1 1 INVITE"));
        // RSeq 3 skips 2: not PRACKed (RFC 3262 4); then 2 is.
        c.handle_datagram(20, from(), &reliable(&inv, 183, 3, None))
            .unwrap();
        assert!(sent(&mut c).is_empty());
        c.handle_datagram(30, from(), &reliable(&inv, 183, 2, Some(ANSWER_SDP)))
            .unwrap();
        let out = sent(&mut c);
        assert_eq!(
            (out[0].1.header("RAck"), out[0].1.cseq()),
            (Some("2 1 INVITE"), (3, "PRACK"))
        );
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ringing { code: 180, early_media: None }, DialogEvent::EarlyMedia(n)] if n.remote_rtp.port() == 7078),
            "{ev:?}"
        );
        // Without Require: 100rel (or without a valid RSeq) it is unreliable.
        c.handle_datagram(40, from(), &reply(&inv, 183, &[("RSeq", "4")], None))
            .unwrap();
        c.handle_datagram(
            40,
            from(),
            &reply(&inv, 183, &[("Require", "100rel"), ("RSeq", "0")], None),
        )
        .unwrap();
        assert!(sent(&mut c).is_empty());
    }

    /// A PRACK challenged like the INVITE is sent again with credentials.
    #[test]
    fn a_challenged_prack_is_sent_again_with_credentials() {
        let mut cfg = cfg();
        cfg.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            realm: None,
        });
        let mut c = Call::new(cfg, 0);
        let inv = sent(&mut c).remove(0).1;
        c.handle_datagram(10, from(), &reliable(&inv, 180, 1, None))
            .unwrap();
        let prack = sent(&mut c).remove(0).1;
        let ch = [(
            "Proxy-Authenticate",
            "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"",
        )];
        c.handle_datagram(20, from(), &reply(&prack, 407, &ch, None))
            .unwrap();
        let prack2 = sent(&mut c).remove(0).1;
        assert_eq!(prack2.cseq(), (3, "PRACK"));
        assert_eq!(prack2.header("RAck"), Some("1 1 INVITE"));
        let pa = prack2.header("Proxy-Authorization").unwrap();
        assert!(pa.contains("uri=\"sip:bob@10.0.0.9:5080\""), "{pa}");
        // A second challenge is not answered again.
        c.handle_datagram(30, from(), &reply(&prack2, 407, &ch, None))
            .unwrap();
        assert!(sent(&mut c).is_empty());
    }

    /// INVITE -> 200 with these extra headers (Contact 10.0.0.9:5080) -> ACK.
    fn answered_with(c: &mut Call, extra: &[(&str, &str)]) -> Message {
        let inv = sent(c).remove(0).1;
        let mut h = extra.to_vec();
        h.push(("Contact", "<sip:bob@10.0.0.9:5080>"));
        c.handle_datagram(20, from(), &reply(&inv, 200, &h, Some(ANSWER_SDP)))
            .unwrap();
        assert!(matches!(&events(c)[..], [DialogEvent::Answered(_)]));
        assert_eq!(sent(c)[0].1.method(), Some("ACK"));
        inv
    }

    const CALLEE: &str = "10.0.0.9:5080";

    /// Issue 21 (RFC 4028): the INVITE asks for a session timer; a 200
    /// naming us (`refresher=uac`) makes us refresh at half the interval, by
    /// UPDATE when the callee allows it, and its 2xx restarts the timer.
    #[test]
    fn we_refresh_the_session_by_update_at_half_the_interval() {
        let mut c = Call::new(cfg(), 0);
        let inv = answered_with(
            &mut c,
            &[
                ("Session-Expires", "90;refresher=uac"),
                ("Allow", "INVITE, ACK, BYE, UPDATE"),
            ],
        );
        assert!(st::lists(&inv, "Supported", "timer"));
        assert_eq!(
            (inv.header("Session-Expires"), inv.header("Min-SE")),
            (Some("1800"), Some("90"))
        );
        assert_eq!(c.next_timeout(), Some(20 + 45_000));
        c.handle_timeout(20 + 44_999);
        assert!(sent(&mut c).is_empty());
        c.handle_timeout(20 + 45_000);
        let (dest, up) = sent(&mut c).remove(0);
        assert_eq!(dest, CALLEE.parse().unwrap());
        assert_eq!((up.method(), up.cseq()), (Some("UPDATE"), (2, "UPDATE")));
        assert_eq!(up.uri(), Some("sip:bob@10.0.0.9:5080"));
        assert_eq!(up.header("Session-Expires"), Some("90;refresher=uac"));
        assert_eq!(up.header("Min-SE"), Some("90"));
        assert!(up.header("Contact").is_some() && up.body.is_empty());
        let se = [("Session-Expires", "90;refresher=uac")];
        c.handle_datagram(45_100, from(), &reply(&up, 200, &se, None))
            .unwrap();
        assert!(events(&mut c).is_empty(), "a refresh is not news");
        c.handle_timeout(45_100 + 44_999);
        assert!(sent(&mut c).is_empty());
        c.handle_timeout(45_100 + 45_000);
        assert_eq!(sent(&mut c)[0].1.cseq(), (3, "UPDATE"));
    }

    /// Without UPDATE in the callee's Allow: a re-INVITE with our SDP
    /// unchanged (the same `o=` version), ACKed; a 481 to a refresh ends the call.
    #[test]
    fn without_update_we_refresh_by_reinvite_with_the_same_sdp_version() {
        let mut c = Call::new(cfg(), 0);
        let inv = answered_with(&mut c, &[("Session-Expires", "120;refresher=uac")]);
        c.handle_timeout(20 + 60_000);
        let (dest, re) = sent(&mut c).remove(0);
        assert_eq!(dest, CALLEE.parse().unwrap());
        assert_eq!((re.method(), re.cseq()), (Some("INVITE"), (2, "INVITE")));
        assert_eq!(re.header("Session-Expires"), Some("120;refresher=uac"));
        let origin = |m: &Message| {
            String::from_utf8_lossy(&m.body)
                .lines()
                .find(|l| l.starts_with("o="))
                .map(str::to_string)
        };
        assert!(origin(&re).is_some());
        assert_eq!(origin(&re), origin(&inv), "unchanged SDP keeps its version");
        let se = [("Session-Expires", "120;refresher=uac")];
        c.handle_datagram(60_100, from(), &reply(&re, 200, &se, Some(ANSWER_SDP)))
            .unwrap();
        let ack = sent(&mut c).remove(0).1;
        assert_eq!((ack.method(), ack.cseq()), (Some("ACK"), (2, "ACK")));
        assert!(events(&mut c).is_empty(), "the same media: no update");
        // The 200 again: ACKed again.
        c.handle_datagram(60_200, from(), &reply(&re, 200, &se, Some(ANSWER_SDP)))
            .unwrap();
        assert_eq!(sent(&mut c)[0].1.method(), Some("ACK"));
        // Next refresh: 481 (the callee lost the dialog): BYE.
        c.handle_timeout(60_100 + 60_000);
        let re2 = sent(&mut c).remove(0).1;
        assert_eq!(re2.cseq(), (3, "INVITE"));
        c.handle_datagram(120_200, from(), &reply(&re2, 481, &[], None))
            .unwrap();
        let out = sent(&mut c);
        let bye = &out
            .iter()
            .find(|(_, m)| m.method() == Some("BYE"))
            .unwrap()
            .1;
        c.handle_datagram(120_300, from(), &reply(bye, 200, &[], None))
            .unwrap();
        assert!(matches!(
            &events(&mut c)[..],
            [DialogEvent::Ended(o)] if o.detail == "session_refresh_failed" && o.status == CallStatus::Failed
        ));
    }

    /// The callee refreshes (`refresher=uas`): its refreshes are answered
    /// with the interval and restart the timer; without one by the expiry
    /// minus min(32 s, interval/3) we send BYE and the call ends `session_expired`.
    #[test]
    fn when_the_callee_stops_refreshing_we_hang_up_at_the_expiry() {
        let mut c = Call::new(cfg(), 0);
        answered_with(&mut c, &[("Session-Expires", "90;refresher=uas")]);
        assert_eq!(c.next_timeout(), Some(20 + 60_000));
        // The callee refreshes at +30 s by UPDATE.
        let mut up = in_dialog(&c, "UPDATE", 2, "up2");
        up.push("Session-Expires", "90;refresher=uac");
        up.push("Supported", "timer");
        c.handle_message(30_000, from(), &up);
        let r = sent(&mut c).remove(0).1;
        assert_eq!(r.code(), Some(200));
        assert_eq!(r.header("Session-Expires"), Some("90;refresher=uac"));
        assert_eq!(r.header("Require"), Some("timer"));
        assert!(events(&mut c).is_empty());
        c.handle_timeout(20 + 60_000);
        assert!(sent(&mut c).is_empty(), "refreshed: not expired yet");
        // A refresh below our Min-SE: 422 with it, the timer unchanged.
        let mut short = in_dialog(&c, "UPDATE", 3, "up3");
        short.push("Session-Expires", "60");
        c.handle_message(40_000, from(), &short);
        let r = sent(&mut c).remove(0).1;
        assert_eq!((r.code(), r.header("Min-SE")), (Some(422), Some("90")));
        // No refresh comes: BYE at +60 s after the last one.
        c.handle_timeout(89_999);
        assert!(sent(&mut c).is_empty());
        c.handle_timeout(90_000);
        let bye = sent(&mut c).remove(0).1;
        assert_eq!(bye.method(), Some("BYE"));
        c.handle_datagram(90_100, from(), &reply(&bye, 200, &[], None))
            .unwrap();
        assert!(matches!(
            &events(&mut c)[..],
            [DialogEvent::Ended(o)] if o.detail == "session_expired"
                && (o.status, o.reason) == (CallStatus::Failed, EndedReason::TrunkError)
        ));
    }

    /// A callee's re-INVITE without Session-Expires keeps our timer, with us
    /// as the refresher (`refresher=uas` in our 200).
    #[test]
    fn a_reinvite_without_session_expires_keeps_the_timer_with_us_refreshing() {
        let mut c = Call::new(cfg(), 0);
        answered_with(&mut c, &[("Session-Expires", "90;refresher=uas")]);
        let mut re = in_dialog(&c, "INVITE", 2, "re2");
        re.push("Content-Type", "application/sdp");
        re.body = ANSWER_SDP.as_bytes().to_vec();
        c.handle_message(10_000, from(), &re);
        let r = sent(&mut c).remove(0).1;
        assert_eq!(r.header("Session-Expires"), Some("90;refresher=uas"));
        assert_eq!(
            r.header("Require"),
            None,
            "it did not say it supports timer"
        );
        assert_eq!(
            c.next_timeout().map(|t| t.min(10_000 + 45_000)),
            Some(10_000 + 500)
        );
        c.handle_message(10_100, from(), &{
            let mut a = in_dialog(&c, "ACK", 2, "ack2");
            a.body.clear();
            a
        });
        events(&mut c);
        c.handle_timeout(10_000 + 45_000);
        assert_eq!(sent(&mut c)[0].1.cseq(), (2, "INVITE"));
    }

    /// Issue 21: a 422 raises Session-Expires and Min-SE to its Min-SE, at
    /// most twice; then the call fails with the 422 (a trunk error another
    /// trunk may not have; never redialled as is).
    #[test]
    fn a_422_raises_the_session_interval_at_most_twice() {
        let mut c = Call::new(cfg(), 0);
        let mut inv = sent(&mut c).remove(0).1;
        for (round, min) in [(2, "1900"), (3, "3600")] {
            c.handle_datagram(10, from(), &reply(&inv, 422, &[("Min-SE", min)], None))
                .unwrap();
            let out = sent(&mut c);
            assert_eq!(out[0].1.method(), Some("ACK"));
            inv = out[1].1.clone();
            assert_eq!(inv.cseq(), (round, "INVITE"));
            assert_eq!(
                (inv.header("Session-Expires"), inv.header("Min-SE")),
                (Some(min), Some(min))
            );
        }
        c.handle_datagram(20, from(), &reply(&inv, 422, &[("Min-SE", "7200")], None))
            .unwrap();
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [DialogEvent::Ended(o)] if o.sip_code == Some(422)
                && o.detail == "session_interval_too_small"
                && (o.status, o.reason, o.try_next_trunk) == (CallStatus::Failed, EndedReason::TrunkError, true)),
            "{ev:?}"
        );
        // A 422 whose Min-SE is not above what we asked is not retried.
        let mut c = Call::new(cfg(), 0);
        let inv = sent(&mut c).remove(0).1;
        c.handle_datagram(10, from(), &reply(&inv, 422, &[("Min-SE", "600")], None))
            .unwrap();
        assert!(matches!(&events(&mut c)[..], [DialogEvent::Ended(o)] if o.sip_code == Some(422)));
    }

    /// Without `session_timer`, no Session-Expires and no timer.
    #[test]
    fn session_timers_can_be_off() {
        let mut c = Call::new(
            CallConfig {
                session_timer: None,
                ..cfg()
            },
            0,
        );
        let inv = answered_with(&mut c, &[("Session-Expires", "90;refresher=uac")]);
        assert_eq!(inv.header("Session-Expires"), None);
        assert_eq!(inv.header("Supported"), Some("100rel"));
        assert_eq!(c.next_timeout(), None);
    }

    const TRUNK_B: &str = "198.51.100.2:5060";

    fn with_trunk_b() -> CallConfig {
        let mut cfg = cfg();
        cfg.redirect.targets.push(redirect::RedirectTarget {
            host: "sip.b.example".into(),
            port: 5060,
            addr: TRUNK_B.parse().unwrap(),
            credentials: Some(Credentials {
                username: "b-user".into(),
                password: "p".into(),
                realm: None,
            }),
            in_dialog_from_trunk_only: true,
        });
        cfg
    }

    /// Issue 21: a 302 to another configured trunk is followed: the INVITE
    /// again (same Call-ID, From and To, CSeq+1, new branch) to its address
    /// with its credentials; the call goes on there.
    #[test]
    fn a_302_to_another_configured_trunk_is_followed() {
        let mut c = Call::new(with_trunk_b(), 0);
        let inv = sent(&mut c).remove(0).1;
        let contact = [(
            "Contact",
            "<sip:+1555@evil.example>;q=1, <sip:+1555@sip.b.example?X-Y=1>;q=0.7",
        )];
        c.handle_datagram(10, from(), &reply(&inv, 302, &contact, None))
            .unwrap();
        let out = sent(&mut c);
        assert_eq!((out[0].0, out[0].1.method()), (from(), Some("ACK")));
        let (dest, inv2) = &out[1];
        assert_eq!(*dest, TRUNK_B.parse().unwrap());
        assert_eq!(inv2.uri(), Some("sip:+1555@sip.b.example"));
        assert_eq!(inv2.cseq(), (2, "INVITE"));
        assert_eq!(inv2.call_id(), inv.call_id());
        assert_eq!(inv2.header("From"), inv.header("From"));
        assert_eq!(inv2.header("To"), inv.header("To"));
        assert_ne!(inv2.top_branch(), inv.top_branch());
        assert!(events(&mut c).is_empty(), "the same call goes on");
        // Trunk B challenges: its own credentials answer.
        let ch = [("Proxy-Authenticate", "Digest realm=\"b\", nonce=\"nb\"")];
        c.handle_datagram(20, TRUNK_B.parse().unwrap(), &reply(inv2, 407, &ch, None))
            .unwrap();
        let inv3 = sent(&mut c).remove(1).1;
        let pa = inv3.header("Proxy-Authorization").unwrap();
        assert!(
            pa.contains("username=\"b-user\"") && pa.contains("uri=\"sip:+1555@sip.b.example\""),
            "{pa}"
        );
        let h = [("Contact", "<sip:bob@198.51.100.2>")];
        c.handle_datagram(
            30,
            TRUNK_B.parse().unwrap(),
            &reply(&inv3, 200, &h, Some(ANSWER_SDP)),
        )
        .unwrap();
        assert!(matches!(&events(&mut c)[..], [DialogEvent::Answered(_)]));
    }

    /// A redirect to a host that is not a configured trunk or allowed
    /// address is never dialled: the call ends with the 302 (another trunk
    /// may take it; never redialled). Back to a URI already tried: a loop.
    #[test]
    fn redirects_elsewhere_loops_and_beyond_the_limit_are_not_followed() {
        let end_of = |contact: &str, max: u32, hops: usize| {
            let mut cfg = with_trunk_b();
            cfg.redirect.max_redirects = max;
            let mut c = Call::new(cfg, 0);
            let mut inv = sent(&mut c).remove(0).1;
            for _ in 0..hops {
                c.handle_datagram(
                    10,
                    from(),
                    &reply(&inv, 302, &[("Contact", "<sip:+2@127.0.0.1:5070>")], None),
                )
                .unwrap();
                inv = sent(&mut c).remove(1).1;
            }
            c.handle_datagram(20, from(), &reply(&inv, 302, &[("Contact", contact)], None))
                .unwrap();
            let out = sent(&mut c);
            assert_eq!(out.len(), 1, "only the ACK: {out:?}");
            match &events(&mut c)[..] {
                [DialogEvent::Ended(o)] => o.clone(),
                ev => panic!("{ev:?}"),
            }
        };
        let o = end_of("<sip:+1@203.0.113.66:5060>", 3, 0);
        assert_eq!(
            (
                o.sip_code,
                o.detail.as_str(),
                o.status,
                o.reason,
                o.try_next_trunk
            ),
            (
                Some(302),
                "redirect_target_not_allowed",
                CallStatus::Failed,
                EndedReason::Rejected,
                true
            )
        );
        // The trunk itself may redirect to itself (another number), once per URI.
        assert_eq!(
            end_of("<sip:bob@127.0.0.1:5070>", 3, 1).detail,
            "redirect_loop"
        );
        assert_eq!(
            end_of("<sip:+3@127.0.0.1:5070>", 1, 1).detail,
            "redirect_limit"
        );
        assert_eq!(
            end_of("<sip:+3@127.0.0.1:5070>", 0, 0).detail,
            "redirect_limit"
        );
        assert_eq!(end_of("<tel:+3>", 3, 0).detail, "redirect_no_target");
    }

    /// Found by the `sip_call` fuzz target: after `no_response` (the driver
    /// moved on to the next trunk) the INVITE is still out there; a late
    /// answer must be released, a late ring cancelled, a late challenge not
    /// answered, and the call must stay ended and silent.
    #[test]
    fn a_trunk_answering_after_we_gave_up_is_released() {
        let gave_up = |credentials: bool| {
            let mut cfg = cfg();
            cfg.no_response_timeout_ms = Some(2_000);
            if credentials {
                cfg.credentials = Some(Credentials {
                    username: "u".into(),
                    password: "p".into(),
                    realm: None,
                });
            }
            let mut c = Call::new(cfg, 0);
            let inv = sent(&mut c).remove(0).1;
            c.handle_timeout(2_000);
            sent(&mut c);
            let ev = events(&mut c);
            assert!(
                matches!(&ev[..], [DialogEvent::Ended(o)] if o.detail == "no_response" && o.try_next_trunk)
            );
            (c, inv)
        };
        let methods = |c: &mut Call| {
            sent(c)
                .into_iter()
                .map(|(_, m)| m.method().unwrap_or("response").to_string())
                .collect::<Vec<_>>()
        };

        // Answered late: ACK and BYE, no Answered event, still ended.
        let (mut c, inv) = gave_up(false);
        let ok = reply(
            &inv,
            200,
            &[("Contact", "<sip:bob@127.0.0.1:5070>")],
            Some(ANSWER_SDP),
        );
        c.handle_datagram(2_500, from(), &ok).unwrap();
        assert_eq!(methods(&mut c), ["ACK", "BYE"]);
        assert_eq!(events(&mut c), []);
        assert_eq!(c.phase(), Phase::Ended);

        // Ringing late: CANCEL it.
        let (mut c, inv) = gave_up(false);
        c.handle_datagram(2_500, from(), &reply(&inv, 180, &[], None))
            .unwrap();
        assert_eq!(methods(&mut c), ["CANCEL"]);
        c.handle_datagram(2_600, from(), &reply(&inv, 487, &[], None))
            .unwrap();
        assert_eq!(methods(&mut c), ["ACK"]);
        assert_eq!(events(&mut c), []);
        assert_eq!(c.phase(), Phase::Ended);

        // Challenged late: no new INVITE.
        let (mut c, inv) = gave_up(true);
        let challenge = [("WWW-Authenticate", "Digest realm=\"r\", nonce=\"n\"")];
        c.handle_datagram(2_500, from(), &reply(&inv, 401, &challenge, None))
            .unwrap();
        assert_eq!(methods(&mut c), ["ACK"]);
        assert_eq!(events(&mut c), []);
    }

    #[test]
    fn unknown_dialog_requests_get_481() {
        let mut c = Call::new(cfg(), 0);
        sent(&mut c);
        let bye = b"BYE sip:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKzz\r\nFrom: <sip:x@y>;tag=9\r\n\
                    To: <sip:alice@127.0.0.1>;tag=nope\r\nCall-ID: other\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
        c.handle_datagram(1, "1.2.3.4:5060".parse().unwrap(), bye)
            .unwrap();
        let (dest, r) = sent(&mut c).remove(0);
        assert_eq!(
            (dest, r.code()),
            ("1.2.3.4:5060".parse().unwrap(), Some(481))
        );
    }

    /// A 2xx whose Contact / Record-Route cannot address a request used to
    /// panic on `expect("our own BYE parses")`. Now: ACK and BYE go to the
    /// trunk as the INVITE did, and the call fails with a stable detail.
    #[test]
    fn unusable_contact_or_record_route_fails_the_call_cleanly() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("Contact", "<sip:x@>")], "bad_remote_target"),
            (
                &[("Contact", "<sip:bob@10.0.0.9:5080?Subject=hi>")],
                "bad_remote_target",
            ),
            (
                &[("Contact", "<sip:bob@10.0.0.9\u{1}:5080>")],
                "bad_remote_target",
            ),
            (
                &[
                    ("Contact", "<sip:bob@10.0.0.9>"),
                    ("Record-Route", "<sip:10.0.0.1?X=y;lr>"),
                ],
                "bad_route_set",
            ),
            // Strict router: its URI would become the BYE's Request-URI.
            (
                &[
                    ("Contact", "<sip:bob@10.0.0.9>"),
                    ("Record-Route", "<sip:@>"),
                ],
                "bad_route_set",
            ),
        ];
        for (extra, detail) in cases {
            let mut c = Call::new(cfg(), 0);
            let inv = sent(&mut c).remove(0).1;
            c.handle_datagram(10, from(), &reply(&inv, 180, &[], None))
                .unwrap();
            // The parser accepts the 2xx: the check has to happen in the call.
            c.handle_datagram(20, from(), &reply(&inv, 200, extra, Some(ANSWER_SDP)))
                .unwrap();
            c.hangup(30, EndedReason::HangupRequested);
            let out = sent(&mut c);
            let methods: Vec<_> = out.iter().map(|(_, m)| m.method().unwrap_or("")).collect();
            assert_eq!(methods, ["ACK", "BYE"], "{detail}: {extra:?}");
            for (dest, m) in &out {
                assert_eq!(
                    (*dest, m.uri()),
                    (from(), Some("sip:bob@127.0.0.1:5070")),
                    "{extra:?}"
                );
                assert!(m.header("Route").is_none());
            }
            c.handle_datagram(40, from(), &reply(&out[1].1, 200, &[], None))
                .unwrap();
            let ev = events(&mut c);
            assert!(
                !ev.iter().any(|e| matches!(e, DialogEvent::Answered(_))),
                "{ev:?}"
            );
            let Some(DialogEvent::Ended(o)) = ev.last() else {
                panic!("{ev:?}")
            };
            assert_eq!(
                (o.status, o.reason, o.detail.as_str()),
                (CallStatus::Failed, EndedReason::TrunkError, detail)
            );
        }
        assert_eq!(
            check_dialog_target(
                "sip:bob@10.0.0.9:5080;transport=udp",
                &["<sip:p;lr>".into()]
            ),
            Ok(())
        );
    }

    /// 408/480/503 after the callee was alerted (180/183) must not ring them
    /// again through the next trunk; after only 100 Trying it still may.
    #[test]
    fn no_failover_once_the_callee_was_alerted() {
        for (provisional, code, failover) in [
            (None, 480, true),
            (Some(100), 480, true),
            (Some(180), 480, false),
            (Some(183), 408, false),
            (Some(180), 503, false),
        ] {
            let mut c = Call::new(cfg(), 0);
            let inv = sent(&mut c).remove(0).1;
            if let Some(p) = provisional {
                c.handle_datagram(5, from(), &reply(&inv, p, &[], None))
                    .unwrap();
            }
            c.handle_datagram(10, from(), &reply(&inv, code, &[], None))
                .unwrap();
            let ev = events(&mut c);
            let Some(DialogEvent::Ended(o)) = ev.last() else {
                panic!("{ev:?}")
            };
            assert_eq!(
                (o.sip_code, o.try_next_trunk),
                (Some(code), failover),
                "{provisional:?} then {code}"
            );
        }
    }

    #[test]
    fn uri_addresses() {
        assert_eq!(
            uri_socket_addr("sip:bob@10.0.0.1:5080;transport=udp"),
            Some("10.0.0.1:5080".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:10.0.0.1"),
            Some("10.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:[::1]:5062;lr"),
            Some("[::1]:5062".parse().unwrap())
        );
        assert_eq!(uri_socket_addr("sip:bob@example.com"), None);
        // TLS without a port means 5061.
        assert_eq!(
            uri_socket_addr("sip:10.0.0.1;transport=TLS;lr"),
            Some("10.0.0.1:5061".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sips:bob@[::1]"),
            Some("[::1]:5061".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:10.0.0.1;transport=tcp"),
            Some("10.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(uri_socket_addr("tel:+1555"), None);
        assert!(uri_has_param("sip:10.0.0.1;LR", "lr") && uri_has_param("sip:p;x=1;lr=on", "lr"));
        assert!(!uri_has_param("sip:lr@10.0.0.1;maddr=lr", "lr"));
    }
}
