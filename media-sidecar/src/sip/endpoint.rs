//! The SIP endpoint: many outbound calls over one local address, sans-IO
//! (like quinn-proto's `Endpoint` or str0m). [`super::udp`] is its tokio driver.
//!
//! ```text
//!  start_call(spec) -> CallId ---- INVITE ---->  trunk 0
//!  handle_datagram(now, from, bytes)             UDP: demux by SIP Call-ID -> that dialog (a `Call`);
//!  handle_message(now, flow, msg)                TCP/TLS (framed by the driver): the same;
//!                                                unknown Call-ID: stateless 481 (OPTIONS: 200)
//!  handle_flow_failed(now, flow)                 a TCP/TLS connection was lost: its calls end
//!                                                (`transport_error`; unanswered ones fail over)
//!  handle_timeout(now) / poll_timeout()          retransmissions, ring / no-response / max timers
//!  hangup(id, reason)                            CANCEL or BYE
//!  poll_transmit() -> Outgoing                   what to send over which flow (transport + address)
//!  poll_event() -> (CallId, Event)               dialog events; `Failover` when a trunk failed
//!                                                and the next one is being tried
//!  registrations() / unregister_all(now)         the trunks' registrations ([`super::register`]):
//!                                                started with the endpoint, refreshed by its timers;
//!                                                a trunk with a registration is dialled only while bound
//! ```
//!
//! Each dialog speaks its trunk's [`Transport`]: every message it sends goes
//! over that transport (to the trunk, or to the route set / remote target),
//! except that an answer goes back on the flow its request came on.
//!
//! Time is a [`std::time::Instant`] the caller passes in; randomness
//! (Call-IDs, tags, branches, cnonces) comes from an injected [`Random`]. With
//! a [`crate::random::SeededRandom`] and hand-advanced instants a run is the
//! same every time: see the tests at the bottom.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use voxline_shared::{CallStatus, EndedReason};

use super::auth::Credentials;
use super::call::{
    out_of_dialog_reply, Call, CallConfig, DialogEnd, DialogEvent, IdentityHeader, Transmit,
};
use super::msg::{self, ParseError};
use super::redirect::{RedirectPolicy, RedirectTarget};
use super::register::{RegisterConfig, Registration, RegistrationStatus};
use super::registrar::{PendingId, Registrar, RegistrarConfig, RegistrarStep};
use super::sdp::OfferConfig;
use super::session_timer::SessionTimerConfig;
use super::text_message::{
    self, Inbound, InboundId, InboundStep, InboundTable, InboundText, MessageClient, MessageConfig,
    MessageEnd, MessageSpec,
};
use super::transaction::Timers;
use super::transport::{Flow, Transport};
use super::uas::Uas;
use crate::media::srtp::SrtpPolicy;
use crate::random::Random;

/// One SIP trunk (next hop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub addr: SocketAddr,
    /// Host part of the Request-URI/To (default: `addr`).
    pub domain: Option<String>,
    /// URIs name `domain` without a port: `addr` was found through DNS SRV
    /// for it (RFC 3263), whose port is not the URI's. Default: off.
    pub uri_without_port: bool,
    pub credentials: Option<Credentials>,
    /// In-dialog requests only from `addr` or the dialog's next hop
    /// ([`CallConfig::in_dialog_from_trunk_only`]). Default: on.
    pub in_dialog_from_trunk_only: bool,
    /// [`CallConfig::require_100rel`]. Default: off.
    pub require_100rel: bool,
    /// [`CallConfig::session_timer`]. Default: 1800 s, Min-SE 90 s.
    pub session_timer: Option<SessionTimerConfig>,
    /// [`CallConfig::identity`]. Default: none.
    pub identity: IdentityHeader,
    /// SDES-SRTP on calls to this trunk ([`super::sdp`]). Default: off.
    pub srtp: SrtpPolicy,
    /// What the trunk is reached over. Default: UDP.
    pub transport: Transport,
    /// TLS: the name the trunk's certificate must carry (and the SNI).
    /// Default: `domain`, else the IP address.
    pub tls_name: Option<String>,
    /// [`CallConfig::outbound_route`]: requests go to `addr` (the proxy's)
    /// with this `Route`; the Request-URI keeps `domain`. Default: none.
    pub outbound_route: Option<String>,
    /// The name of the registration ([`EndpointConfig::registrations`])
    /// this trunk's calls and texts go out through: its Contact, its From
    /// domain; the trunk is skipped while it is not bound. Default: none.
    pub registration: Option<String>,
    /// [`CallConfig::refer`]: blind transfers by REFER. Default: off.
    pub refer: bool,
}

impl Trunk {
    pub fn new(addr: SocketAddr) -> Self {
        Trunk {
            addr,
            domain: None,
            uri_without_port: false,
            credentials: None,
            in_dialog_from_trunk_only: true,
            require_100rel: false,
            session_timer: Some(SessionTimerConfig::default()),
            identity: IdentityHeader::None,
            srtp: SrtpPolicy::Off,
            transport: Transport::Udp,
            tls_name: None,
            outbound_route: None,
            registration: None,
            refer: false,
        }
    }

    /// The flow the trunk's messages go over.
    pub fn flow(&self) -> Flow {
        let tls_name = (self.transport == Transport::Tls).then(|| {
            self.tls_name.clone().unwrap_or_else(|| match &self.domain {
                Some(d) => d.trim_start_matches('[').trim_end_matches(']').to_string(),
                None => self.addr.ip().to_string(),
            })
        });
        Flow {
            transport: self.transport,
            addr: self.addr,
            tls_name,
        }
    }
}

/// One message for the driver to send over `flow` (on TCP/TLS: over that
/// flow's connection, opened if there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub flow: Flow,
    pub bytes: Vec<u8>,
}

/// What the call task asks for.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// Tried in order; the next one only after a dialog end that asks for it
    /// ([`DialogEnd::try_next_trunk`]).
    pub trunks: Vec<Trunk>,
    /// The number dialled (user part of the Request-URI).
    pub to_user: String,
    /// Our caller ID (user part of From).
    pub from_user: String,
    pub from_display: Option<String>,
    pub media: OfferConfig,
    pub ring_timeout: Duration,
    pub max_duration: Option<Duration>,
    /// A trunk that sends nothing back within this is skipped (when another remains).
    pub failover_timeout: Option<Duration>,
    pub timers: Timers,
    /// 301/302 redirects followed per call at most (0: none). Targets: the
    /// spec's trunks and `redirect_allowed` ([`super::redirect`]).
    pub max_redirects: u32,
    /// Addresses (beyond the trunks) a redirect may lead to; dialled
    /// without credentials.
    pub redirect_allowed: Vec<SocketAddr>,
}

impl CallSpec {
    pub fn new(trunks: Vec<Trunk>, to_user: &str, from_user: &str, media: OfferConfig) -> Self {
        CallSpec {
            trunks,
            to_user: to_user.into(),
            from_user: from_user.into(),
            from_display: None,
            media,
            ring_timeout: Duration::from_secs(60),
            max_duration: None,
            failover_timeout: Some(Duration::from_secs(2)),
            timers: Timers::default(),
            max_redirects: 3,
            redirect_allowed: Vec::new(),
        }
    }
}

/// What the call task receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The attempt on `trunk` (index into [`CallSpec::trunks`]) ended this
    /// way; the next trunk is being tried now.
    Failover {
        trunk: usize,
        end: DialogEnd,
    },
    Call(DialogEvent),
}

/// The endpoint's name for one outbound call, across its failover attempts
/// (each attempt is a dialog with its own SIP Call-ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// Why [`Endpoint::start_call`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("no trunk configured")]
    NoTrunk,
    #[error("too many SIP dialogs open")]
    TooManyDialogs,
}

impl StartError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            StartError::NoTrunk => "no_trunk",
            StartError::TooManyDialogs => "too_many_dialogs",
        }
    }
}

/// Why a datagram was dropped (for logs; the endpoint already ignored it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    #[error("datagram of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("unparseable SIP datagram: {0}")]
    Parse(#[from] ParseError),
}

impl DatagramError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            DatagramError::TooLarge(_) => "too_large",
            DatagramError::Parse(e) => e.code(),
        }
    }
}

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Our SIP address: the socket's, and what Via, Contact and From carry
    /// unless `public` is set.
    pub local: SocketAddr,
    /// The address the trunks reach us on when it is not `local` (the
    /// sidecar behind NAT with a static mapping of its SIP port): Via
    /// sent-by, Contact and From carry it. Port 0: `local`'s port.
    pub public: Option<SocketAddr>,
    /// Dialogs held at once, live or lingering to absorb retransmissions;
    /// [`Endpoint::start_call`] refuses beyond it.
    pub max_dialogs: usize,
    /// Larger datagrams are dropped unread.
    pub max_datagram: usize,
    /// The trunks whose out-of-dialog MESSAGEs (texts) we take: from a
    /// trunk's address (IP and port), or from anywhere when a trunk has
    /// [`Trunk::in_dialog_from_trunk_only`] off (the rule of in-dialog
    /// requests). Others get 403. Empty: every MESSAGE gets 403.
    pub inbound_trunks: Vec<Trunk>,
    /// Timers of inbound MESSAGE transactions (Timer J).
    pub timers: Timers,
    /// The trunks' registrations, started with the endpoint (their `local`
    /// and Contact's host:port are set to [`EndpointConfig::local`] there).
    pub registrations: Vec<RegisterConfig>,
    /// The registrar for users' phones (issue 16): REGISTERs from addresses
    /// that are no trunk's go to it. `None`: they get 481 as before.
    pub registrar: Option<RegistrarConfig>,
}

impl EndpointConfig {
    pub fn new(local: SocketAddr) -> Self {
        EndpointConfig {
            local,
            public: None,
            max_dialogs: 4_096,
            max_datagram: msg::MAX_MESSAGE,
            inbound_trunks: Vec::new(),
            timers: Timers::default(),
            registrations: Vec::new(),
            registrar: None,
        }
    }
}

impl EndpointConfig {
    /// What our messages carry as our address: `public` (its port 0 read as
    /// `local`'s), else `local`.
    pub fn advertised(&self) -> SocketAddr {
        match self.public {
            Some(p) if p.port() == 0 => SocketAddr::new(p.ip(), self.local.port()),
            Some(p) => p,
            None => self.local,
        }
    }
}

/// The endpoint's name for one inbound call (issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundCallId(pub u64);

/// A call a trunk placed to us, ringing (100 and 180 sent): the driver asks
/// the edge, then [`Endpoint::answer_inbound_call`] or
/// [`Endpoint::refuse_inbound_call`] (neither within
/// [`super::uas::DECIDE_WITHIN_MS`]: 480).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCallOffer {
    /// The number called (E.164, from the Request-URI, else the To).
    pub called: String,
    /// The From user part (E.164 when it is a number, else as given, bounded).
    pub caller: String,
    pub sip_call_id: String,
    /// The trunk's address it came from.
    pub from: SocketAddr,
}

/// What becomes of an inbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundCallEvent {
    /// A new call, ringing: decide about it.
    Offered(InboundCallOffer),
    /// Its dialog's events (`Answered`, then `Ended` last), as an outbound call's.
    Call(DialogEvent),
}

/// One inbound call's dialog.
struct InboundDialog {
    uas: Uas,
    id: InboundCallId,
    /// The flow its INVITE came on: what it sends goes back that way.
    flow: Flow,
}

/// Longest caller (From user part) passed on.
const MAX_CALLER_CHARS: usize = 128;

/// One attempt on one trunk.
struct Dialog {
    call: Call,
    /// The call it serves; `None` once it ended (it only lingers then).
    owner: Option<CallId>,
    /// Its trunk's flow: the transport (and TLS name) of all it sends.
    flow: Flow,
    /// The TCP/TLS flows it has used (at most [`MAX_FLOWS_PER_DIALOG`]):
    /// losing one of them ends it.
    used: Vec<Flow>,
}

/// Flows remembered per dialog (the trunk, a Record-Route, a Contact: a few).
const MAX_FLOWS_PER_DIALOG: usize = 4;

/// Remembers a TCP/TLS flow a dialog or text used.
fn note_used(used: &mut Vec<Flow>, flow: &Flow) {
    if flow.transport.is_reliable() && used.len() < MAX_FLOWS_PER_DIALOG && !used.contains(flow) {
        used.push(flow.clone());
    }
}

/// The endpoint's name for one outbound text message, across its trunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

/// One MESSAGE to one trunk.
struct TextAttempt {
    client: MessageClient,
    /// The message it serves; `None` once it ended (it only lingers then).
    owner: Option<MessageId>,
    /// Its trunk's flow.
    flow: Flow,
}

/// One outbound text across its trunks.
struct TextAttempts {
    spec: MessageSpec,
    trunk: usize,
    sip_call_id: String,
}

/// One outbound call across its attempts.
struct Attempts {
    spec: CallSpec,
    /// Index of the trunk being tried.
    trunk: usize,
    /// SIP Call-ID of the current attempt's dialog.
    sip_call_id: String,
    /// Hung up: no further trunk is tried.
    hangup: bool,
}

fn call_config(
    spec: &CallSpec,
    trunk: &Trunk,
    has_next: bool,
    local: SocketAddr,
    registrations: &[Registration],
) -> CallConfig {
    let mut c = CallConfig::new(
        trunk.addr,
        local,
        &spec.to_user,
        &spec.from_user,
        spec.media.clone(),
    );
    c.transport = trunk.transport;
    if let Some(d) = &trunk.domain {
        c.request_uri = format!("sip:{}@{}", spec.to_user, trunk_uri_host(trunk, d));
        c.to_uri = c.request_uri.clone();
    }
    // `sip:` with `transport=tcp|tls` rather than a `sips:` URI: a `sips:`
    // Request-URI asks for TLS on every hop to the callee (RFC 3261 26.2,
    // RFC 5630), which a PSTN trunk cannot promise; the parameter is what
    // trunks document. The To URI stays bare (it does not route).
    if let Some(t) = trunk.transport.uri_param() {
        c.request_uri = format!("{};transport={t}", c.request_uri);
    }
    c.from_display = spec.from_display.clone();
    c.credentials = trunk.credentials.clone();
    c.in_dialog_from_trunk_only = trunk.in_dialog_from_trunk_only;
    c.require_100rel = trunk.require_100rel;
    c.session_timer = trunk.session_timer;
    c.identity = trunk.identity;
    c.refer = trunk.refer;
    c.media.srtp = trunk.srtp;
    c.ring_timeout_ms = duration_ms(spec.ring_timeout);
    c.max_duration_ms = spec.max_duration.map(duration_ms);
    // Fail over quickly only when there is somewhere to fail over to.
    if has_next {
        c.no_response_timeout_ms = spec.failover_timeout.map(duration_ms);
    }
    c.timers = spec.timers;
    c.redirect = redirect_policy(spec);
    c.outbound_route = trunk.outbound_route.clone();
    // Through the registered binding: its Contact, and From in its domain
    // (what registration-based trunks check calls against).
    if let Some(reg) = binding_of(registrations, trunk) {
        c.contact = Some(reg.contact.clone());
        c.from_uri = format!("sip:{}@{}", spec.from_user, reg.domain);
    }
    c
}

/// The registration a trunk's requests go out through, if it has one.
fn binding_of<'a>(registrations: &'a [Registration], trunk: &Trunk) -> Option<&'a RegisterConfig> {
    let name = trunk.registration.as_deref()?;
    registrations
        .iter()
        .find(|r| r.name() == name)
        .map(Registration::config)
}

/// Whether a trunk can be dialled as far as registration goes: it has none,
/// or its binding is live at `ms`.
fn registered(registrations: &[Registration], trunk: &Trunk, ms: u64) -> bool {
    trunk.registration.as_deref().is_none_or(|name| {
        registrations
            .iter()
            .any(|r| r.name() == name && r.is_bound(ms))
    })
}

/// When no trunk can be dialled and some only lack their registration: the
/// seconds until the soonest one tries again (a registration under way:
/// [`REGISTERING_WAIT_S`]).
fn unregistered_wait_s(registrations: &[Registration], trunks: &[Trunk], ms: u64) -> Option<u32> {
    trunks
        .iter()
        .filter(|t| !registered(registrations, t, ms))
        .filter_map(|t| {
            let name = t.registration.as_deref()?;
            let r = registrations.iter().find(|r| r.name() == name)?;
            Some(match r.retry_at() {
                Some(at) => u32::try_from(at.saturating_sub(ms).div_ceil(1_000))
                    .unwrap_or(u32::MAX)
                    .max(1),
                None => REGISTERING_WAIT_S,
            })
        })
        .min()
}

/// The redial hint of a call refused while a registration is under way.
const REGISTERING_WAIT_S: u32 = 5;

/// Where a redirect may lead: every trunk of the call (by its configured
/// host and by its address, with its credentials) and the allowed addresses.
fn redirect_policy(spec: &CallSpec) -> RedirectPolicy {
    let mut targets: Vec<RedirectTarget> = spec
        .trunks
        .iter()
        .map(|t| RedirectTarget {
            host: t
                .domain
                .clone()
                .unwrap_or_else(|| t.addr.ip().to_string())
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            port: t.addr.port(),
            addr: t.addr,
            credentials: t.credentials.clone(),
            in_dialog_from_trunk_only: t.in_dialog_from_trunk_only,
        })
        .collect();
    targets.extend(spec.redirect_allowed.iter().map(|a| RedirectTarget {
        host: a.ip().to_string(),
        port: a.port(),
        addr: *a,
        credentials: None,
        in_dialog_from_trunk_only: true,
    }));
    RedirectPolicy {
        max_redirects: spec.max_redirects,
        targets,
    }
}

/// The SIP port a URI without one means (RFC 3261 19.1.2, UDP/TCP).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// `domain` as the hostport of a trunk's Request-URI and To: the trunk's
/// `port` is kept unless it is the default (proxies route on the
/// Request-URI, and one without a port means 5060); an IPv6 literal is
/// bracketed; a domain that already names a port is left as it is.
pub fn uri_host(domain: &str, port: u16) -> String {
    uri_host_with_default(domain, port, DEFAULT_SIP_PORT)
}

/// [`uri_host`] for a transport whose default port is `default_port`
/// (5061 for TLS).
pub fn uri_host_with_default(domain: &str, port: u16, default_port: u16) -> String {
    let bare = domain.trim_start_matches('[').trim_end_matches(']');
    let host = if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{bare}]")
    } else if domain.starts_with('[') || domain.contains(':') {
        // `[v6]:port` or `host:port`: already has its port.
        return domain.to_string();
    } else {
        domain.to_string()
    };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// The hostport of `trunk`'s URIs, `domain` being its [`Trunk::domain`].
fn trunk_uri_host(trunk: &Trunk, domain: &str) -> String {
    let default_port = trunk.transport.default_port();
    let port = if trunk.uri_without_port {
        default_port
    } else {
        trunk.addr.port()
    };
    uri_host_with_default(domain, port, default_port)
}

/// Timers further out than this (about 35 years) are clamped to it, so that
/// `now + timer` never overflows the dialogs' u64 milliseconds or an `Instant`.
const MAX_TIMER_MS: u64 = 1 << 40;

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).map_or(MAX_TIMER_MS, |ms| ms.min(MAX_TIMER_MS))
}

/// The sans-IO SIP endpoint. See the module docs.
pub struct Endpoint {
    config: EndpointConfig,
    /// Time zero of the dialogs' millisecond clock.
    epoch: Instant,
    random: Box<dyn Random>,
    /// By SIP Call-ID. Ordered maps so that output order never depends on
    /// hashing: the same inputs give the same bytes in the same order.
    dialogs: BTreeMap<String, Dialog>,
    calls: BTreeMap<CallId, Attempts>,
    next_id: u64,
    transmits: VecDeque<Outgoing>,
    events: VecDeque<(CallId, Event)>,
    /// Trunks that answered a 5xx with `Retry-After`: skipped until then
    /// (ms on the dialogs' clock). At most [`MAX_RESTING_TRUNKS`].
    resting: BTreeMap<SocketAddr, u64>,
    /// Outbound MESSAGE transactions by SIP Call-ID (live or lingering).
    texts: BTreeMap<String, TextAttempt>,
    outbound_texts: BTreeMap<MessageId, TextAttempts>,
    next_message: u64,
    text_ends: VecDeque<(MessageId, MessageEnd)>,
    /// Inbound MESSAGE transactions, and those waiting for the edge.
    inbound: InboundTable,
    inbound_events: VecDeque<(InboundId, InboundText)>,
    /// The flow each inbound MESSAGE's sender used, so that its answer goes
    /// back that way (at most [`MAX_INBOUND_FLOWS`]; forgotten when no
    /// inbound transaction is left).
    inbound_flows: BTreeMap<SocketAddr, Flow>,
    /// The trunks' registrations, in config order.
    registrations: Vec<Registration>,
    /// Inbound calls by SIP Call-ID (live or lingering); with `dialogs`
    /// at most [`EndpointConfig::max_dialogs`].
    inbound_calls: BTreeMap<String, InboundDialog>,
    next_inbound_call: u64,
    inbound_call_events: VecDeque<(InboundCallId, InboundCallEvent)>,
    /// Users' phones' REGISTERs (issue 16), and those waiting for the edge.
    registrar: Option<Registrar>,
    phone_registrations: VecDeque<(PendingId, voxline_shared::sidecar_link::PhoneRegistration)>,
}

/// Senders of inbound MESSAGEs remembered at once.
const MAX_INBOUND_FLOWS: usize = 1_024;

/// Trunks remembered as resting at once (trunks come from the config, so
/// this is only a bound against surprises).
const MAX_RESTING_TRUNKS: usize = 256;

/// After a final `sip_code` on the trunk at `addr`: a 5xx with `Retry-After` makes it rest.
fn note_rest(
    resting: &mut BTreeMap<SocketAddr, u64>,
    addr: SocketAddr,
    sip_code: Option<u16>,
    retry_after_s: Option<u32>,
    ms: u64,
) {
    let Some(secs) = retry_after_s.filter(|s| *s > 0) else {
        return;
    };
    if !sip_code.is_some_and(|c| (500..600).contains(&c)) {
        return;
    }
    resting.retain(|_, until| *until > ms);
    if resting.len() < MAX_RESTING_TRUNKS || resting.contains_key(&addr) {
        let until = ms.saturating_add(u64::from(secs) * 1_000);
        let slot = resting.entry(addr).or_insert(until);
        *slot = (*slot).max(until);
        tracing::info!(trunk = %addr, secs, "trunk asked for rest (Retry-After)");
    }
}

/// The first trunk at or after `from` that is not resting at `ms` and, if
/// it registers, is bound.
fn usable_trunk(
    resting: &BTreeMap<SocketAddr, u64>,
    registrations: &[Registration],
    trunks: &[Trunk],
    from: usize,
    ms: u64,
) -> Option<usize> {
    (from..trunks.len()).find(|i| {
        trunks.get(*i).is_some_and(|t| {
            resting.get(&t.addr).is_none_or(|until| *until <= ms)
                && registered(registrations, t, ms)
        })
    })
}

/// When every trunk rests: the seconds until the first is usable again.
fn all_resting_for_s(
    resting: &BTreeMap<SocketAddr, u64>,
    trunks: &[Trunk],
    ms: u64,
) -> Option<u32> {
    let mut soonest: Option<u64> = None;
    for t in trunks {
        let until = resting.get(&t.addr).copied().filter(|u| *u > ms)?;
        soonest = Some(soonest.map_or(until, |s| s.min(until)));
    }
    let wait_ms = soonest?.saturating_sub(ms);
    Some(u32::try_from(wait_ms.div_ceil(1_000)).unwrap_or(u32::MAX))
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.config.local)
            .field("dialogs", &self.dialogs.len())
            .field("calls", &self.calls.len())
            .finish()
    }
}

impl Endpoint {
    /// `now` is time zero; every later `now` must not be earlier.
    pub fn new(config: EndpointConfig, mut random: Box<dyn Random>, now: Instant) -> Endpoint {
        let registrations = config
            .registrations
            .iter()
            .map(|r| {
                let mut r = r.clone();
                // Behind NAT the binding names the public address.
                r.local = config.advertised();
                r.contact = format!("sip:{}@{}", r.user, config.advertised());
                Registration::new(r, 0, random.fork())
            })
            .collect();
        let registrar = config.registrar.clone().map(|c| {
            let mut key = [0u8; 32];
            random.fill(&mut key);
            Registrar::new(c, key)
        });
        let mut ep = Endpoint {
            registrar,
            phone_registrations: VecDeque::new(),
            config,
            epoch: now,
            random,
            dialogs: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            resting: BTreeMap::new(),
            texts: BTreeMap::new(),
            outbound_texts: BTreeMap::new(),
            next_message: 0,
            text_ends: VecDeque::new(),
            inbound: InboundTable::default(),
            inbound_events: VecDeque::new(),
            inbound_flows: BTreeMap::new(),
            registrations,
            inbound_calls: BTreeMap::new(),
            next_inbound_call: 0,
            inbound_call_events: VecDeque::new(),
        };
        ep.pump_registrations();
        ep
    }

    /// An answer of the inbound MESSAGE table, on its sender's flow.
    fn inbound_out(&self, t: Transmit) -> Outgoing {
        let flow = self
            .inbound_flows
            .get(&t.dest)
            .cloned()
            .unwrap_or_else(|| Flow::udp(t.dest));
        Outgoing {
            flow,
            bytes: t.bytes,
        }
    }

    fn push_inbound_out(&mut self, out: impl IntoIterator<Item = Transmit>) {
        for t in out {
            let o = self.inbound_out(t);
            self.transmits.push_back(o);
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.config.local
    }

    fn ms(&self, now: Instant) -> u64 {
        duration_ms(now.saturating_duration_since(self.epoch))
    }

    /// Dialogs held (live or lingering).
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// No dialog or MESSAGE transaction left, not even one absorbing
    /// retransmissions, and no un-REGISTER under way (live registrations do
    /// not count: they last as long as the endpoint).
    pub fn is_idle(&self) -> bool {
        self.dialogs.is_empty()
            && self.inbound_calls.is_empty()
            && self.texts.is_empty()
            && self.inbound.is_empty()
            && self
                .registrations
                .iter()
                .all(|r| r.state() != super::register::RegistrationState::Unregistering)
    }

    /// Where each registration stands (config order).
    pub fn registrations(&self, now: Instant) -> Vec<RegistrationStatus> {
        let ms = self.ms(now);
        self.registrations.iter().map(|r| r.status(ms)).collect()
    }

    /// Removes every binding (shutdown): un-REGISTERs go out now; see
    /// [`Endpoint::is_unregistered`]. Trunks that register are not dialled
    /// from then on.
    pub fn unregister_all(&mut self, now: Instant) {
        let ms = self.ms(now);
        for r in &mut self.registrations {
            r.unregister(ms);
        }
        self.pump_registrations();
    }

    /// Every registration is gone (its un-REGISTER answered or given up).
    pub fn is_unregistered(&self) -> bool {
        self.registrations.iter().all(Registration::is_unregistered)
    }

    fn pump_registrations(&mut self) {
        for r in &mut self.registrations {
            // REGISTER goes over UDP (a registration over TCP/TLS is not
            // supported yet: the trunk's transport is for its calls).
            while let Some(t) = r.poll_transmit() {
                self.transmits.push_back(Outgoing {
                    flow: Flow::udp(t.dest),
                    bytes: t.bytes,
                });
            }
        }
    }

    /// The SIP Call-ID of the call's current attempt, while it has one.
    pub fn sip_call_id(&self, id: CallId) -> Option<&str> {
        self.calls.get(&id).map(|a| a.sip_call_id.as_str())
    }

    /// Starts a call on its first trunk that is not resting (Retry-After);
    /// the INVITE is ready at once. When every trunk rests, the call ends at
    /// once (`trunks_resting`, with the wait as its `retry_after_s`).
    pub fn start_call(&mut self, spec: CallSpec, now: Instant) -> Result<CallId, StartError> {
        if spec.trunks.is_empty() {
            return Err(StartError::NoTrunk);
        }
        if self.dialogs.len() >= self.config.max_dialogs {
            return Err(StartError::TooManyDialogs);
        }
        let ms = self.ms(now);
        self.next_id += 1;
        let id = CallId(self.next_id);
        let Some((index, first)) =
            usable_trunk(&self.resting, &self.registrations, &spec.trunks, 0, ms)
                .and_then(|i| spec.trunks.get(i).map(|t| (i, t)))
        else {
            let unregistered = unregistered_wait_s(&self.registrations, &spec.trunks, ms);
            let (detail, retry_after_s) = match unregistered {
                Some(wait) => {
                    tracing::warn!(to = %spec.to_user, "no trunk registered (or not resting); not dialling");
                    let resting = all_resting_for_s(&self.resting, &spec.trunks, ms);
                    ("trunk_not_registered", Some(wait.max(resting.unwrap_or(0))))
                }
                None => {
                    tracing::info!(to = %spec.to_user, "every trunk rests (Retry-After); not dialling");
                    (
                        "trunks_resting",
                        all_resting_for_s(&self.resting, &spec.trunks, ms),
                    )
                }
            };
            let end = DialogEnd {
                status: CallStatus::Failed,
                reason: EndedReason::TrunkError,
                sip_code: None,
                try_next_trunk: false,
                detail: detail.into(),
                retry_after_s,
            };
            self.events
                .push_back((id, Event::Call(DialogEvent::Ended(end))));
            return Ok(id);
        };
        let has_next = usable_trunk(
            &self.resting,
            &self.registrations,
            &spec.trunks,
            index + 1,
            ms,
        )
        .is_some();
        let cfg = call_config(
            &spec,
            first,
            has_next,
            self.config.advertised(),
            &self.registrations,
        );
        let call = Call::with_random(cfg, ms, self.random.fork());
        let sip_call_id = call.call_id().to_string();
        tracing::info!(%sip_call_id, to = %spec.to_user, trunk = %first.addr, transport = %first.transport, "INVITE");
        self.dialogs.insert(
            sip_call_id.clone(),
            Dialog {
                call,
                owner: Some(id),
                flow: first.flow(),
                used: Vec::new(),
            },
        );
        self.calls.insert(
            id,
            Attempts {
                spec,
                trunk: index,
                sip_call_id,
                hangup: false,
            },
        );
        self.pump(ms);
        Ok(id)
    }

    /// BYE if answered, CANCEL if not; no further trunk is tried. Unknown or
    /// ended calls are ignored, so it is idempotent.
    pub fn hangup(&mut self, id: CallId, reason: EndedReason, now: Instant) {
        let ms = self.ms(now);
        let Some(a) = self.calls.get_mut(&id) else {
            return;
        };
        a.hangup = true;
        if let Some(d) = self.dialogs.get_mut(&a.sip_call_id) {
            d.call.hangup(ms, reason);
        }
        self.pump(ms);
    }

    /// Presses `keys` on call `id` as SIP INFO ([`Call::send_dtmf_info`]);
    /// its [`DialogEvent::KeysSent`] follows. Unknown or ended calls are ignored.
    pub fn send_dtmf_info(&mut self, id: CallId, keys: &str, key_ms: u32, now: Instant) {
        let ms = self.ms(now);
        let Some(a) = self.calls.get(&id) else {
            return;
        };
        if let Some(d) = self.dialogs.get_mut(&a.sip_call_id) {
            d.call.send_dtmf_info(ms, keys, key_ms);
        }
        self.pump(ms);
    }

    /// Blind transfer of call `id` to `target` by REFER ([`Call::refer`]);
    /// its [`DialogEvent::Refer`] events follow. Unknown or ended calls are ignored.
    pub fn refer(&mut self, id: CallId, target: &str, now: Instant) {
        let ms = self.ms(now);
        let Some(a) = self.calls.get(&id) else {
            return;
        };
        if let Some(d) = self.dialogs.get_mut(&a.sip_call_id) {
            d.call.refer(ms, target);
        }
        self.pump(ms);
    }

    /// As [`Endpoint::send_dtmf_info`] for inbound call `id`.
    pub fn send_dtmf_info_inbound(
        &mut self,
        id: InboundCallId,
        keys: &str,
        key_ms: u32,
        now: Instant,
    ) {
        let ms = self.ms(now);
        if let Some(d) = self.inbound_call_mut(id) {
            d.uas.send_dtmf_info(ms, keys, key_ms);
        }
        self.pump_inbound_calls(ms);
    }

    /// One UDP datagram from `from`. Dropped (with the reason returned for
    /// logs) when too large or unparseable (RFC 3261 18.3).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), DatagramError> {
        if data.len() > self.config.max_datagram {
            return Err(DatagramError::TooLarge(data.len()));
        }
        let m = msg::parse(data)?;
        self.handle_message(now, Flow::udp(from), &m);
        Ok(())
    }

    /// One message that came over `from` (a TCP/TLS message framed by the
    /// driver's [`super::transport::StreamConn`], or a parsed datagram).
    /// Answers go back over `from` (RFC 3261 18.2.2: on TCP/TLS, the same
    /// connection).
    pub fn handle_message(&mut self, now: Instant, from: Flow, m: &msg::Message) {
        let ms = self.ms(now);
        if let Some(d) = self.dialogs.get_mut(m.call_id()) {
            d.call.handle_message(ms, from.addr, m);
            note_used(&mut d.used, &from);
            if m.is_request() {
                // Its answer (and anything else now due to that address)
                // goes back the way the request came.
                while let Some(t) = d.call.poll_transmit() {
                    let flow = if t.dest == from.addr {
                        from.clone()
                    } else {
                        d.flow.to(t.dest)
                    };
                    note_used(&mut d.used, &flow);
                    self.transmits.push_back(Outgoing {
                        flow,
                        bytes: t.bytes,
                    });
                }
            }
            self.pump(ms);
            return;
        }
        if let Some(d) = self.inbound_calls.get_mut(m.call_id()) {
            d.uas.handle_message(ms, m);
            self.pump_inbound_calls(ms);
            return;
        }
        if m.method() == Some("INVITE") && m.to_tag().is_none() {
            self.on_inbound_invite(ms, from, m);
            return;
        }
        if !m.is_request() {
            if let Some(t) = self.texts.get_mut(m.call_id()) {
                t.client.handle_response(ms, m);
                self.pump_texts(ms);
                return;
            }
            if let Some(r) = self
                .registrations
                .iter_mut()
                .find(|r| r.call_id() == m.call_id())
            {
                r.handle_response(ms, m);
                self.pump_registrations();
                return;
            }
        }
        if m.method() == Some("REGISTER") && self.registrar.is_some() {
            // A trunk's REGISTER (to us) is not a phone's: it stays refused.
            let from_trunk = self
                .config
                .inbound_trunks
                .iter()
                .any(|t| t.addr == from.addr);
            if !from_trunk {
                self.on_phone_register(ms, from, m);
                return;
            }
        }
        if m.method() == Some("MESSAGE") && m.to_tag().is_none() {
            if self.inbound_flows.len() < MAX_INBOUND_FLOWS
                || self.inbound_flows.contains_key(&from.addr)
            {
                self.inbound_flows.insert(from.addr, from.clone());
            }
            self.on_inbound_message(ms, from.addr, m);
            return;
        }
        // Not ours: requests get a stateless answer (an ACK gets none);
        // stray responses are dropped.
        if m.is_request() && m.method() != Some("ACK") {
            let tag = self.random.hex(6);
            let reply = out_of_dialog_reply(m, &tag);
            self.transmits.push_back(Outgoing {
                flow: from,
                bytes: reply.to_bytes(),
            });
        }
    }

    /// The TCP/TLS connection of `flow` was lost (connect, read or write
    /// failed, a framing error, or the peer closed it). Every dialog that
    /// used it ends (`transport_error`: failover for calls not yet
    /// answered, see [`Call::transport_failed`]); every MESSAGE sent over it
    /// goes to its next trunk or ends `transport`. Later messages for the
    /// flow make the driver connect again.
    pub fn handle_flow_failed(&mut self, now: Instant, flow: &Flow) {
        let ms = self.ms(now);
        for d in self.dialogs.values_mut() {
            if d.used.contains(flow) {
                tracing::info!(sip_call_id = %d.call.call_id(), %flow, "connection lost");
                d.call.transport_failed(ms);
            }
        }
        self.pump(ms);
        for d in self.inbound_calls.values_mut() {
            if d.flow == *flow {
                d.uas.transport_failed(ms);
            }
        }
        self.pump_inbound_calls(ms);
        for t in self.texts.values_mut() {
            if t.flow == *flow && !t.client.is_done() {
                t.client.transport_failed();
            }
        }
        self.pump_texts(ms);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ms = self.ms(now);
        for d in self.dialogs.values_mut() {
            if d.call.next_timeout().is_some_and(|t| t <= ms) {
                d.call.handle_timeout(ms);
            }
        }
        self.pump(ms);
        for d in self.inbound_calls.values_mut() {
            if d.uas.next_timeout().is_some_and(|at| at <= ms) {
                d.uas.handle_timeout(ms);
            }
        }
        self.pump_inbound_calls(ms);
        for t in self.texts.values_mut() {
            if t.client.next_timeout().is_some_and(|at| at <= ms) {
                t.client.handle_timeout(ms);
            }
        }
        self.pump_texts(ms);
        for r in &mut self.registrations {
            if r.next_timeout().is_some_and(|at| at <= ms) {
                r.handle_timeout(ms);
            }
        }
        self.pump_registrations();
        if self.inbound.next_timeout().is_some_and(|at| at <= ms) {
            let (out, unanswered) = self.inbound.handle_timeout(ms, self.config.timers);
            for id in unanswered {
                tracing::warn!(
                    inbound = id.0,
                    "no answer from the edge in time for an inbound MESSAGE: 480"
                );
            }
            self.push_inbound_out(out);
        }
        if self.inbound.is_empty() {
            self.inbound_flows.clear();
        }
        if let Some(r) = self.registrar.as_mut() {
            for (flow, reply) in r.expire(ms) {
                tracing::warn!(sip_call_id = %reply.call_id(), "no answer from the edge in time for a phone's REGISTER: 503");
                self.transmits.push_back(Outgoing {
                    flow,
                    bytes: reply.to_bytes(),
                });
            }
        }
    }

    /// When [`Endpoint::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dialogs
            .values()
            .filter_map(|d| d.call.next_timeout())
            .chain(self.texts.values().filter_map(|t| t.client.next_timeout()))
            .chain(
                self.inbound_calls
                    .values()
                    .filter_map(|d| d.uas.next_timeout()),
            )
            .chain(self.inbound.next_timeout())
            .chain(
                self.registrations
                    .iter()
                    .filter_map(Registration::next_timeout),
            )
            .chain(
                self.registrar
                    .as_ref()
                    .and_then(Registrar::next_deadline_ms),
            )
            .min()
            .map(|ms| self.epoch + Duration::from_millis(ms))
    }

    /// Sends a text as an out-of-dialog MESSAGE on its first trunk that is
    /// not resting; the next trunk is tried only after a 503 (see
    /// [`MessageEnd::try_next_trunk`]). Its end comes from
    /// [`Endpoint::poll_message_end`] (at once, `no_trunk`, when every trunk rests).
    pub fn send_message(
        &mut self,
        spec: MessageSpec,
        now: Instant,
    ) -> Result<MessageId, StartError> {
        if spec.trunks.is_empty() {
            return Err(StartError::NoTrunk);
        }
        if self.texts.len() >= self.config.max_dialogs {
            return Err(StartError::TooManyDialogs);
        }
        let ms = self.ms(now);
        self.next_message += 1;
        let id = MessageId(self.next_message);
        let Some(index) = usable_trunk(&self.resting, &self.registrations, &spec.trunks, 0, ms)
        else {
            tracing::info!(to = %spec.to_user, "every trunk rests (Retry-After); text not sent");
            self.text_ends.push_back((
                id,
                MessageEnd::failed(text_message::reasons::NO_TRUNK, None),
            ));
            return Ok(id);
        };
        self.outbound_texts.insert(
            id,
            TextAttempts {
                spec,
                trunk: index,
                sip_call_id: String::new(),
            },
        );
        self.text_attempt(id, ms);
        self.pump_texts(ms);
        Ok(id)
    }

    /// Starts the MESSAGE of text `id` on its current trunk.
    fn text_attempt(&mut self, id: MessageId, ms: u64) {
        let Some(a) = self.outbound_texts.get_mut(&id) else {
            return;
        };
        let Some(trunk) = a.spec.trunks.get(a.trunk) else {
            return;
        };
        let host = match &trunk.domain {
            Some(d) => trunk_uri_host(trunk, d),
            None => trunk.addr.to_string(),
        };
        let request_uri = format!("sip:{}@{host}", a.spec.to_user);
        let from_uri = match binding_of(&self.registrations, trunk) {
            Some(reg) => format!("sip:{}@{}", a.spec.from_user, reg.domain),
            None => format!("sip:{}@{}", a.spec.from_user, self.config.advertised()),
        };
        let (content_type, body) = match &a.spec.imdn {
            Some(imdn) => (
                "message/cpim".to_string(),
                text_message::cpim_body(&from_uri, &request_uri, &a.spec.body, imdn),
            ),
            None => (
                "text/plain;charset=UTF-8".to_string(),
                a.spec.body.clone().into_bytes(),
            ),
        };
        let request_uri = match trunk.transport.uri_param() {
            Some(t) => format!("{request_uri};transport={t}"),
            None => request_uri,
        };
        let cfg = MessageConfig {
            trunk: trunk.addr,
            to_uri: request_uri.clone(),
            request_uri,
            from_uri,
            local: self.config.advertised(),
            transport: trunk.transport,
            credentials: trunk.credentials.clone(),
            content_type,
            body,
            timers: a.spec.timers,
            user_agent: concat!("voxline/", env!("CARGO_PKG_VERSION")).to_string(),
            route: trunk.outbound_route.clone(),
        };
        let client = MessageClient::new(cfg, ms, self.random.fork());
        a.sip_call_id = client.call_id().to_string();
        tracing::info!(sip_call_id = %a.sip_call_id, to = %a.spec.to_user, trunk = %trunk.addr, "MESSAGE");
        self.texts.insert(
            a.sip_call_id.clone(),
            TextAttempt {
                client,
                owner: Some(id),
                flow: trunk.flow(),
            },
        );
    }

    /// Moves the MESSAGE transactions' datagrams and ends out; a 503 tries
    /// the next trunk; finished transactions are dropped.
    fn pump_texts(&mut self, ms: u64) {
        loop {
            let mut next = Vec::new();
            for t in self.texts.values_mut() {
                while let Some(x) = t.client.poll_transmit() {
                    self.transmits.push_back(Outgoing {
                        flow: t.flow.to(x.dest),
                        bytes: x.bytes,
                    });
                }
                let Some(end) = t.client.poll_end() else {
                    continue;
                };
                let Some(id) = t.owner.take() else {
                    continue;
                };
                let Some(a) = self.outbound_texts.get_mut(&id) else {
                    continue;
                };
                if let Some(trunk) = a.spec.trunks.get(a.trunk) {
                    note_rest(
                        &mut self.resting,
                        trunk.addr,
                        end.sip_code,
                        end.retry_after_s,
                        ms,
                    );
                }
                let after = usable_trunk(
                    &self.resting,
                    &self.registrations,
                    &a.spec.trunks,
                    a.trunk + 1,
                    ms,
                )
                .filter(|_| end.try_next_trunk);
                match after {
                    Some(i) => {
                        tracing::info!(code = ?end.sip_code, "trunk did not take the text; trying the next");
                        a.trunk = i;
                        next.push(id);
                    }
                    None => {
                        self.outbound_texts.remove(&id);
                        self.text_ends.push_back((id, end));
                    }
                }
            }
            for id in &next {
                self.text_attempt(*id, ms);
            }
            self.texts.retain(|_, t| !t.client.is_done());
            if next.is_empty() {
                break;
            }
        }
    }

    /// The end of some outbound text (one per [`Endpoint::send_message`]).
    pub fn poll_message_end(&mut self) -> Option<(MessageId, MessageEnd)> {
        self.text_ends.pop_front()
    }

    /// An inbound text for the edge; answer it with [`Endpoint::answer_inbound`]
    /// (unanswered within [`text_message::ANSWER_WITHIN_MS`]: 480).
    pub fn poll_inbound(&mut self) -> Option<(InboundId, InboundText)> {
        self.inbound_events.pop_front()
    }

    /// The SIP answer to inbound text `id` (the first one counts).
    pub fn answer_inbound(&mut self, id: InboundId, code: u16, now: Instant) {
        let ms = self.ms(now);
        if let Some(t) = self.inbound.answer(ms, id, code, self.config.timers) {
            self.push_inbound_out([t]);
        }
    }

    /// A phone's REGISTER: answered at once, or asked of the edge
    /// ([`Endpoint::poll_phone_registration`]).
    fn on_phone_register(&mut self, ms: u64, from: Flow, m: &msg::Message) {
        let tag = self.random.hex(6);
        let Some(r) = self.registrar.as_mut() else {
            return;
        };
        match r.on_register(ms, &from, m, &tag) {
            RegistrarStep::Reply(reply) => self.transmits.push_back(Outgoing {
                flow: from,
                bytes: reply.to_bytes(),
            }),
            RegistrarStep::AskEdge(id, registration) => {
                tracing::info!(sip_call_id = %m.call_id(), user = %registration.digest.username, phone = %from.addr, "phone REGISTER; asking the edge");
                self.phone_registrations.push_back((id, *registration));
            }
            RegistrarStep::Absorbed => {}
        }
    }

    /// A phone's REGISTER for the edge to decide; answer it with
    /// [`Endpoint::answer_phone_registration`] (not within
    /// [`super::registrar::EDGE_WITHIN_MS`]: 503).
    pub fn poll_phone_registration(
        &mut self,
    ) -> Option<(PendingId, voxline_shared::sidecar_link::PhoneRegistration)> {
        self.phone_registrations.pop_front()
    }

    /// The edge's answer to phone REGISTER `id` (`None`: none came).
    pub fn answer_phone_registration(
        &mut self,
        id: PendingId,
        answer: Option<voxline_shared::sidecar_link::PhoneRegistrationAnswer>,
        now: Instant,
    ) {
        let ms = self.ms(now);
        if let Some((flow, reply)) = self
            .registrar
            .as_mut()
            .and_then(|r| r.on_edge_answer(ms, id, answer))
        {
            self.transmits.push_back(Outgoing {
                flow,
                bytes: reply.to_bytes(),
            });
        }
    }

    /// The live contacts of a directory user's phones registered here
    /// (issue 16: where a call to the user rings).
    pub fn phone_contacts(
        &self,
        tenant: &str,
        user_pk: u64,
        now: Instant,
    ) -> Vec<crate::registrations::PhoneContact> {
        let ms = self.ms(now);
        self.registrar
            .as_ref()
            .map(|r| r.registrations().contacts_for(tenant, user_pk, ms))
            .unwrap_or_default()
    }

    /// Whether a MESSAGE from `from` may be taken (see [`EndpointConfig::inbound_trunks`]).
    fn is_trunk_source(&self, from: SocketAddr) -> bool {
        self.config
            .inbound_trunks
            .iter()
            .any(|t| t.addr == from || !t.in_dialog_from_trunk_only)
    }

    fn on_inbound_message(&mut self, ms: u64, from: SocketAddr, m: &msg::Message) {
        match self.inbound.step(m) {
            InboundStep::Repeat(again) => {
                self.push_inbound_out(again);
                return;
            }
            InboundStep::Full => {
                let tag = self.random.hex(6);
                let r = text_message::answer_to(m, 503, &tag);
                self.push_inbound_out([Transmit {
                    dest: from,
                    bytes: r.to_bytes(),
                }]);
                return;
            }
            InboundStep::New => {}
        }
        let tag = self.random.hex(6);
        let timers = self.config.timers;
        if !self.is_trunk_source(from) {
            tracing::warn!(%from, "MESSAGE from an address that is not a trunk's: 403");
            let out = self.inbound.answer_now(ms, from, m, 403, tag, timers);
            self.push_inbound_out(out);
            return;
        }
        match text_message::parse_inbound(m) {
            Inbound::Forward(text) => {
                let id = self.inbound.wait(ms, from, m, tag);
                tracing::info!(inbound = id.0, sip_call_id = %text.sip_call_id, to = %text.to, "inbound MESSAGE");
                self.inbound_events.push_back((id, text));
            }
            Inbound::Ignore => {
                let out = self.inbound.answer_now(ms, from, m, 200, tag, timers);
                self.push_inbound_out(out);
            }
            Inbound::Refuse(code) => {
                tracing::info!(%from, code, "inbound MESSAGE refused");
                let out = self.inbound.answer_now(ms, from, m, code, tag, timers);
                self.push_inbound_out(out);
            }
        }
    }

    /// An INVITE from outside any dialog: taken from a trunk only (403
    /// otherwise), within the dialog bound (503), to a number (404);
    /// ringing at once, then offered to the driver.
    fn on_inbound_invite(&mut self, ms: u64, from: Flow, m: &msg::Message) {
        let tag = self.random.hex(6);
        let refuse = |code: u16| Outgoing {
            flow: from.clone(),
            bytes: msg::response_to(m, code, Some(&tag)).to_bytes(),
        };
        if !self.is_trunk_source(from.addr) {
            tracing::warn!(from = %from.addr, "INVITE from an address that is not a trunk's: 403");
            self.transmits.push_back(refuse(403));
            return;
        }
        if self.dialogs.len() + self.inbound_calls.len() >= self.config.max_dialogs {
            tracing::warn!(from = %from.addr, "too many SIP dialogs: inbound INVITE gets 503");
            self.transmits.push_back(refuse(503));
            return;
        }
        let user_of = |uri: Option<String>| {
            uri.as_deref()
                .and_then(text_message::uri_user)
                .map(str::to_string)
        };
        let called = user_of(m.uri().map(str::to_string))
            .and_then(|u| text_message::e164_of_user(&u))
            .or_else(|| {
                user_of(m.to().map(|t| t.uri)).and_then(|u| text_message::e164_of_user(&u))
            });
        let Some(called) = called else {
            tracing::info!(from = %from.addr, "inbound INVITE to no number: 404");
            self.transmits.push_back(refuse(404));
            return;
        };
        let caller_user = user_of(m.from().map(|f| f.uri)).unwrap_or_default();
        let caller = text_message::e164_of_user(&caller_user)
            .unwrap_or_else(|| caller_user.chars().take(MAX_CALLER_CHARS).collect());
        let mut timers = self.config.timers;
        timers.reliable = from.transport.is_reliable();
        let uas = Uas::new(
            m,
            from.addr,
            self.config.advertised(),
            timers,
            ms,
            self.random.fork(),
        );
        self.next_inbound_call += 1;
        let id = InboundCallId(self.next_inbound_call);
        let sip_call_id = m.call_id().to_string();
        tracing::info!(%sip_call_id, %called, %caller, trunk = %from.addr, "inbound INVITE");
        self.inbound_calls.insert(
            sip_call_id.clone(),
            InboundDialog {
                uas,
                id,
                flow: from.clone(),
            },
        );
        self.inbound_call_events.push_back((
            id,
            InboundCallEvent::Offered(InboundCallOffer {
                called,
                caller,
                sip_call_id,
                from: from.addr,
            }),
        ));
        self.pump_inbound_calls(ms);
    }

    fn inbound_call_mut(&mut self, id: InboundCallId) -> Option<&mut InboundDialog> {
        self.inbound_calls.values_mut().find(|d| d.id == id)
    }

    /// Answers inbound call `id` (200 with our SDP answer built from
    /// `media`; our BYE after `max_duration`); an offer we cannot take is refused with 488 (the error).
    pub fn answer_inbound_call(
        &mut self,
        id: InboundCallId,
        media: &OfferConfig,
        max_duration: Option<Duration>,
        now: Instant,
    ) -> Result<(), super::sdp::SdpError> {
        let ms = self.ms(now);
        let result = match self.inbound_call_mut(id) {
            Some(d) => {
                if let Some(max) = max_duration {
                    d.uas.limit(ms, duration_ms(max));
                }
                d.uas.answer(ms, media)
            }
            None => Ok(()),
        };
        self.pump_inbound_calls(ms);
        result
    }

    /// Refuses inbound call `id` with `code` (4xx-6xx), before an answer.
    pub fn refuse_inbound_call(&mut self, id: InboundCallId, code: u16, now: Instant) {
        let ms = self.ms(now);
        if let Some(d) = self.inbound_call_mut(id) {
            d.uas.refuse(ms, code);
        }
        self.pump_inbound_calls(ms);
    }

    /// Keeps inbound call `id` ringing for `for_` more (see
    /// [`super::uas::Uas::keep_ringing`]).
    pub fn keep_ringing_inbound_call(&mut self, id: InboundCallId, for_: Duration, now: Instant) {
        let ms = self.ms(now);
        if let Some(d) = self.inbound_call_mut(id) {
            d.uas.keep_ringing(ms, ms.saturating_add(duration_ms(for_)));
        }
        self.pump_inbound_calls(ms);
    }

    /// Ends inbound call `id` from our side (480 while ringing, else BYE).
    pub fn hangup_inbound_call(&mut self, id: InboundCallId, reason: EndedReason, now: Instant) {
        let ms = self.ms(now);
        if let Some(d) = self.inbound_call_mut(id) {
            d.uas.hangup(ms, reason);
        }
        self.pump_inbound_calls(ms);
    }

    /// The next event of some inbound call.
    pub fn poll_inbound_call(&mut self) -> Option<(InboundCallId, InboundCallEvent)> {
        self.inbound_call_events.pop_front()
    }

    /// Moves the inbound dialogs' messages and events out; forgets those done.
    fn pump_inbound_calls(&mut self, _ms: u64) {
        for d in self.inbound_calls.values_mut() {
            while let Some(t) = d.uas.poll_transmit() {
                self.transmits.push_back(Outgoing {
                    flow: d.flow.to(t.dest),
                    bytes: t.bytes,
                });
            }
            while let Some(ev) = d.uas.poll_event() {
                self.inbound_call_events
                    .push_back((d.id, InboundCallEvent::Call(ev)));
            }
        }
        self.inbound_calls.retain(|_, d| !d.uas.is_done());
    }

    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.transmits.pop_front()
    }

    /// The next event of some call. `Event::Call(DialogEvent::Ended(_))` is
    /// a call's last event; its [`CallId`] is then forgotten.
    pub fn poll_event(&mut self) -> Option<(CallId, Event)> {
        self.events.pop_front()
    }

    /// Moves every dialog's datagrams and events out, starts the next trunk
    /// where an attempt failed over, and drops dialogs that are done.
    fn pump(&mut self, ms: u64) {
        loop {
            let mut failed_over = Vec::new();
            for (sip_call_id, d) in self.dialogs.iter_mut() {
                while let Some(t) = d.call.poll_transmit() {
                    let flow = d.flow.to(t.dest);
                    note_used(&mut d.used, &flow);
                    self.transmits.push_back(Outgoing {
                        flow,
                        bytes: t.bytes,
                    });
                }
                while let Some(ev) = d.call.poll_event() {
                    let Some(id) = d.owner else {
                        continue;
                    };
                    let Some(a) = self
                        .calls
                        .get_mut(&id)
                        .filter(|a| a.sip_call_id == *sip_call_id)
                    else {
                        d.owner = None;
                        continue;
                    };
                    let DialogEvent::Ended(mut end) = ev else {
                        self.events.push_back((id, Event::Call(ev)));
                        continue;
                    };
                    d.owner = None;
                    if let Some(t) = a.spec.trunks.get(a.trunk) {
                        note_rest(
                            &mut self.resting,
                            t.addr,
                            end.sip_code,
                            end.retry_after_s,
                            ms,
                        );
                    }
                    let next = usable_trunk(
                        &self.resting,
                        &self.registrations,
                        &a.spec.trunks,
                        a.trunk + 1,
                        ms,
                    )
                    .filter(|_| end.try_next_trunk && !a.hangup);
                    if let Some(next) = next {
                        tracing::info!(trunk = a.trunk, code = ?end.sip_code, detail = %end.detail, "trunk failed; trying the next");
                        self.events.push_back((
                            id,
                            Event::Failover {
                                trunk: a.trunk,
                                end,
                            },
                        ));
                        failed_over.push((id, next));
                    } else {
                        // Every trunk resting: redial no earlier than the first is back.
                        if let Some(wait) = all_resting_for_s(&self.resting, &a.spec.trunks, ms) {
                            end.retry_after_s = Some(end.retry_after_s.unwrap_or(0).max(wait));
                        }
                        self.calls.remove(&id);
                        self.events
                            .push_back((id, Event::Call(DialogEvent::Ended(end))));
                    }
                }
            }
            for (id, next) in &failed_over {
                self.next_trunk(*id, *next, ms);
            }
            self.dialogs.retain(|_, d| !d.call.is_done());
            if failed_over.is_empty() {
                break;
            }
        }
    }

    /// Starts the attempt on the call's next trunk (its INVITE is drained
    /// by the next round of [`Endpoint::pump`]).
    fn next_trunk(&mut self, id: CallId, next: usize, ms: u64) {
        let Some(a) = self.calls.get_mut(&id) else {
            return;
        };
        a.trunk = next;
        let Some(trunk) = a.spec.trunks.get(a.trunk) else {
            return;
        };
        let has_next = usable_trunk(
            &self.resting,
            &self.registrations,
            &a.spec.trunks,
            next + 1,
            ms,
        )
        .is_some();
        let cfg = call_config(
            &a.spec,
            trunk,
            has_next,
            self.config.advertised(),
            &self.registrations,
        );
        let call = Call::with_random(cfg, ms, self.random.fork());
        a.sip_call_id = call.call_id().to_string();
        tracing::info!(sip_call_id = %a.sip_call_id, trunk = %trunk.addr, transport = %trunk.transport, "INVITE (failover)");
        self.dialogs.insert(
            a.sip_call_id.clone(),
            Dialog {
                call,
                owner: Some(id),
                flow: trunk.flow(),
                used: Vec::new(),
            },
        );
    }
}

/// Virtual-time tests: no socket, no tokio, no sleeping. A fake trunk,
/// scripted per test, answers the requests the endpoint emits (parsed with
/// `sip::msg`); time is an `Instant` advanced by hand.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use crate::sip::msg::{response_to, Message};
    use voxline_shared::CallStatus;

    const LOCAL: &str = "192.0.2.1:5060";
    const TRUNK_A: &str = "198.51.100.1:5060";
    const TRUNK_B: &str = "198.51.100.2:5060";
    const ANSWER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 7078 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn spec(trunks: &[&str]) -> CallSpec {
        let trunks = trunks.iter().map(|t| Trunk::new(addr(t))).collect();
        CallSpec::new(
            trunks,
            "+14155550100",
            "+14155550199",
            OfferConfig::new(addr("192.0.2.1:40000")),
        )
    }

    #[test]
    fn the_public_address_is_advertised_its_port_0_read_as_the_bound_one() {
        let mut c = EndpointConfig::new(addr(LOCAL));
        assert_eq!(c.advertised(), addr(LOCAL));
        c.public = Some(addr("203.0.113.7:0"));
        assert_eq!(c.advertised(), addr("203.0.113.7:5060"));
        c.public = Some(addr("203.0.113.7:5099"));
        assert_eq!(c.advertised(), addr("203.0.113.7:5099"));
    }

    /// One datagram the endpoint sent, parsed, with when (ms of virtual time).
    #[derive(Debug)]
    struct Sent {
        at: u64,
        dest: SocketAddr,
        flow: Flow,
        msg: Message,
        bytes: Vec<u8>,
    }

    /// The endpoint under test and its virtual clock.
    struct Harness {
        ep: Endpoint,
        t0: Instant,
        now_ms: u64,
    }

    impl Harness {
        fn new(seed: u64) -> Self {
            Self::with_config(seed, EndpointConfig::new(addr(LOCAL)))
        }

        fn with_config(seed: u64, config: EndpointConfig) -> Self {
            let t0 = Instant::now();
            Harness {
                ep: Endpoint::new(config, Box::new(SeededRandom::new(seed)), t0),
                t0,
                now_ms: 0,
            }
        }

        fn now(&self) -> Instant {
            self.t0 + Duration::from_millis(self.now_ms)
        }

        fn start(&mut self, spec: CallSpec) -> CallId {
            self.ep.start_call(spec, self.now()).unwrap()
        }

        fn sent(&mut self) -> Vec<Sent> {
            std::iter::from_fn(|| self.ep.poll_transmit())
                .map(|t| Sent {
                    at: self.now_ms,
                    dest: t.flow.addr,
                    flow: t.flow,
                    msg: msg::parse(&t.bytes).expect("the endpoint sends what it parses"),
                    bytes: t.bytes,
                })
                .collect()
        }

        fn events(&mut self) -> Vec<(CallId, Event)> {
            std::iter::from_fn(|| self.ep.poll_event()).collect()
        }

        /// A datagram from `from`, now.
        fn recv(&mut self, from: &str, bytes: &[u8]) -> Result<(), DatagramError> {
            self.ep.handle_datagram(self.now(), addr(from), bytes)
        }

        /// Moves the clock to `ms`, running each timer at its own instant;
        /// returns everything sent on the way.
        fn advance_to(&mut self, ms: u64) -> Vec<Sent> {
            let until = self.t0 + Duration::from_millis(ms);
            let mut out = self.sent();
            for _ in 0..10_000 {
                match self.ep.poll_timeout() {
                    Some(t) if t <= until => {
                        self.now_ms = duration_ms(t - self.t0).max(self.now_ms);
                        self.ep.handle_timeout(t);
                        out.extend(self.sent());
                    }
                    _ => {
                        self.now_ms = ms;
                        return out;
                    }
                }
            }
            panic!("a timer that never clears");
        }
    }

    /// The trunk's side, scripted by each test from the requests it gets.
    struct FakeTrunk {
        addr: &'static str,
        tag: &'static str,
    }

    const TRUNK: FakeTrunk = FakeTrunk {
        addr: TRUNK_A,
        tag: "trunk-a",
    };
    const TRUNK_2: FakeTrunk = FakeTrunk {
        addr: TRUNK_B,
        tag: "trunk-b",
    };

    impl FakeTrunk {
        fn reply(&self, req: &Message, code: u16) -> Vec<u8> {
            self.reply_with(req, code, &[])
        }

        fn reply_with(&self, req: &Message, code: u16, extra: &[(&str, &str)]) -> Vec<u8> {
            let mut r = response_to(req, code, (code > 100).then_some(self.tag));
            for (n, v) in extra {
                r.push(n, *v);
            }
            r.to_bytes()
        }

        /// 200 OK with Contact and an SDP answer.
        fn answer(&self, invite: &Message) -> Vec<u8> {
            let mut r = response_to(invite, 200, Some(self.tag));
            r.push("Contact", format!("<sip:callee@{}>", self.addr));
            r.push("Content-Type", "application/sdp");
            r.body = ANSWER_SDP.as_bytes().to_vec();
            r.to_bytes()
        }

        /// The callee hangs up: a BYE inside the dialog the INVITE made.
        fn bye(&self, invite: &Message) -> Vec<u8> {
            let contact = invite.contact_uri().unwrap();
            let mut m = Message::request("BYE", &contact);
            m.push(
                "Via",
                format!("SIP/2.0/UDP {};branch=z9hG4bKcalleebye", self.addr),
            );
            m.push("Max-Forwards", "70");
            m.push(
                "From",
                format!("{};tag={}", invite.header("To").unwrap(), self.tag),
            );
            m.push("To", invite.header("From").unwrap());
            m.push("Call-ID", invite.call_id());
            m.push("CSeq", "1 BYE");
            m.to_bytes()
        }
    }

    fn methods(sent: &[Sent]) -> Vec<String> {
        sent.iter()
            .map(|s| match s.msg.code() {
                Some(c) => c.to_string(),
                None => s.msg.method().unwrap_or("?").to_string(),
            })
            .collect()
    }

    fn only<T: std::fmt::Debug>(mut v: Vec<T>) -> T {
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn ended(ev: &(CallId, Event)) -> &DialogEnd {
        match &ev.1 {
            Event::Call(DialogEvent::Ended(end)) => end,
            e => panic!("expected Ended, got {e:?}"),
        }
    }

    /// INVITE -> 100 -> 180 -> 200 -> ACK, then our BYE -> 200. Returns all
    /// bytes the endpoint sent, for the determinism check.
    fn answered_call(seed: u64) -> Vec<Vec<u8>> {
        let mut h = Harness::new(seed);
        let id = h.start(spec(&[TRUNK_A]));
        let invite = only(h.sent());
        assert_eq!(
            (invite.dest, invite.msg.method(), invite.msg.cseq()),
            (addr(TRUNK_A), Some("INVITE"), (1, "INVITE"))
        );
        assert_eq!(Some(invite.msg.call_id()), h.ep.sip_call_id(id));
        let inv = invite.msg.clone();
        let mut all = vec![invite.bytes];

        h.now_ms = 40;
        h.recv(TRUNK.addr, &TRUNK.reply(&inv, 100)).unwrap();
        h.now_ms = 900;
        h.recv(TRUNK.addr, &TRUNK.reply(&inv, 180)).unwrap();
        assert!(h.sent().is_empty(), "a 1xx stops INVITE retransmission");
        assert!(matches!(
            &h.events()[..],
            [(i, Event::Call(DialogEvent::Ringing { code: 180, .. }))] if *i == id
        ));
        h.now_ms = 3_000;
        h.recv(TRUNK.addr, &TRUNK.answer(&inv)).unwrap();
        let ack = only(h.sent());
        assert_eq!(
            (ack.dest, ack.msg.method(), ack.msg.cseq()),
            (addr(TRUNK_A), Some("ACK"), (1, "ACK"))
        );
        let (i, Event::Call(DialogEvent::Answered(media))) = only(h.events()) else {
            panic!("expected Answered")
        };
        assert_eq!((i, media.remote_rtp), (id, addr("203.0.113.9:7078")));
        all.push(ack.bytes);

        // Nothing is due until the INVITE transaction's Timer D-like linger.
        assert!(h.advance_to(10_000).is_empty());
        h.ep.hangup(id, EndedReason::AgentHangup, h.now());
        let bye = only(h.sent());
        assert_eq!(
            (bye.msg.method(), bye.msg.cseq()),
            (Some("BYE"), (2, "BYE"))
        );
        h.recv(TRUNK.addr, &TRUNK.reply(&bye.msg, 200)).unwrap();
        let ev = only(h.events());
        assert_eq!(ev.0, id);
        let end = ended(&ev);
        assert_eq!(
            (end.status, end.reason),
            (CallStatus::Completed, EndedReason::AgentHangup)
        );
        assert_eq!(h.ep.sip_call_id(id), None, "ended calls are forgotten");
        all.push(bye.bytes);
        // The dialog lingers to absorb retransmissions, then is dropped.
        h.advance_to(60_000);
        assert!(h.ep.is_idle(), "{:?}", h.ep);
        all
    }

    #[test]
    fn a_call_is_answered_acked_and_hung_up() {
        answered_call(1);
    }

    #[test]
    fn the_same_seed_and_inputs_give_the_same_bytes() {
        assert_eq!(answered_call(7), answered_call(7));
        assert_ne!(answered_call(7), answered_call(8));
    }

    /// Issue 21: `sip:+1...@host` for a trunk on port 5080 sent proxies that
    /// route on the Request-URI to 5060.
    #[test]
    fn the_request_uri_and_to_keep_the_trunks_port() {
        let mut h = Harness::new(13);
        let mut s = spec(&["198.51.100.1:5080"]);
        s.trunks[0].domain = Some("trunk.example.com".into());
        h.start(s);
        let inv = only(h.sent());
        let text = String::from_utf8_lossy(&inv.bytes).into_owned();
        assert!(
            text.starts_with("INVITE sip:+14155550100@trunk.example.com:5080 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            inv.msg
                .header("To")
                .is_some_and(|t| t.contains("<sip:+14155550100@trunk.example.com:5080>")),
            "{text}"
        );
        assert_eq!(uri_host("trunk.example.com", 5060), "trunk.example.com");
        assert_eq!(uri_host("2001:db8::1", 5080), "[2001:db8::1]:5080");
        assert_eq!(uri_host("[2001:db8::1]", 5060), "[2001:db8::1]");
        assert_eq!(
            uri_host("trunk.example.com:5099", 5080),
            "trunk.example.com:5099"
        );
    }

    /// Issue 21 (RFC 3263): a trunk address found through SRV keeps the
    /// configured name alone in the Request-URI and To; SRV's port is not the URI's.
    #[test]
    fn a_trunk_found_through_srv_names_the_host_without_a_port() {
        let mut h = Harness::new(13);
        let mut s = spec(&["198.51.100.1:5080"]);
        s.trunks[0].domain = Some("trunk.example.com".into());
        s.trunks[0].uri_without_port = true;
        h.start(s);
        let inv = only(h.sent());
        let text = String::from_utf8_lossy(&inv.bytes).into_owned();
        assert!(
            text.starts_with("INVITE sip:+14155550100@trunk.example.com SIP/2.0\r\n"),
            "{text}"
        );
        assert_eq!(inv.dest, "198.51.100.1:5080".parse().unwrap());
    }

    #[test]
    fn busy_ends_the_call_without_trying_the_next_trunk() {
        let mut h = Harness::new(2);
        let id = h.start(spec(&[TRUNK_A, TRUNK_B]));
        let inv = only(h.sent()).msg;
        h.now_ms = 100;
        h.recv(TRUNK.addr, &TRUNK.reply(&inv, 486)).unwrap();
        let ack = only(h.sent());
        assert_eq!(
            (ack.dest, ack.msg.method(), ack.msg.top_branch()),
            (addr(TRUNK_A), Some("ACK"), inv.top_branch()),
            "a non-2xx is ACKed in its own transaction"
        );
        let ev = only(h.events());
        let end = ended(&ev);
        assert_eq!(
            (
                ev.0,
                end.status,
                end.reason,
                end.sip_code,
                end.try_next_trunk
            ),
            (id, CallStatus::Busy, EndedReason::Busy, Some(486), false)
        );
        assert!(h.advance_to(60_000).iter().all(|s| s.dest != addr(TRUNK_B)));
    }

    #[test]
    fn digest_challenges_401_and_407_are_answered_then_the_call_is_answered() {
        for (code, header, auth_header) in [
            (401, "WWW-Authenticate", "Authorization"),
            (407, "Proxy-Authenticate", "Proxy-Authorization"),
        ] {
            let mut h = Harness::new(3);
            let mut s = spec(&[TRUNK_A]);
            s.trunks[0].credentials = Some(Credentials {
                username: "voxline".into(),
                password: "secret".into(),
                realm: None,
            });
            let id = h.start(s);
            let inv = only(h.sent()).msg;
            assert!(inv.header(auth_header).is_none());
            h.now_ms = 50;
            let challenge = format!("Digest realm=\"trunk\", nonce=\"n{code}\", qop=\"auth\"");
            h.recv(
                TRUNK.addr,
                &TRUNK.reply_with(&inv, code, &[(header, &challenge)]),
            )
            .unwrap();
            let out = h.sent();
            assert_eq!(methods(&out), ["ACK", "INVITE"], "{code}");
            let inv2 = &out[1].msg;
            assert_eq!(
                (inv2.call_id(), inv2.cseq()),
                (inv.call_id(), (2, "INVITE"))
            );
            let creds = inv2.header(auth_header).unwrap();
            assert!(
                creds.contains("username=\"voxline\"")
                    && creds.contains(&format!("nonce=\"n{code}\"")),
                "{creds}"
            );
            assert!(h.events().is_empty(), "a challenge is not an event");
            h.now_ms = 120;
            h.recv(TRUNK.addr, &TRUNK.answer(inv2)).unwrap();
            assert_eq!(methods(&h.sent()), ["ACK"]);
            assert!(matches!(
                &h.events()[..],
                [(i, Event::Call(DialogEvent::Answered(_)))] if *i == id
            ));
        }
    }

    #[test]
    fn a_503_fails_over_to_the_second_trunk() {
        let mut h = Harness::new(4);
        let id = h.start(spec(&[TRUNK_A, TRUNK_B]));
        let inv_a = only(h.sent()).msg;
        h.now_ms = 30;
        h.recv(TRUNK.addr, &TRUNK.reply(&inv_a, 503)).unwrap();
        let out = h.sent();
        assert_eq!(methods(&out), ["ACK", "INVITE"]);
        assert_eq!((out[0].dest, out[1].dest), (addr(TRUNK_A), addr(TRUNK_B)));
        let inv_b = out[1].msg.clone();
        assert_ne!(inv_b.call_id(), inv_a.call_id(), "a new dialog per trunk");
        assert_eq!(h.ep.sip_call_id(id), Some(inv_b.call_id()));
        let ev = only(h.events());
        let (i, Event::Failover { trunk: 0, end }) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!((i, end.sip_code, end.try_next_trunk), (id, Some(503), true));
        // A retransmitted 503 from trunk A is absorbed by its lingering
        // dialog (ACKed again), not answered statelessly.
        h.now_ms = 60;
        h.recv(TRUNK.addr, &TRUNK.reply(&inv_a, 503)).unwrap();
        assert_eq!(methods(&h.sent()), ["ACK"]);
        assert!(h.events().is_empty());
        h.now_ms = 200;
        h.recv(TRUNK_2.addr, &TRUNK_2.reply(&inv_b, 180)).unwrap();
        h.recv(TRUNK_2.addr, &TRUNK_2.answer(&inv_b)).unwrap();
        let ack = only(h.sent());
        assert_eq!((ack.dest, ack.msg.method()), (addr(TRUNK_B), Some("ACK")));
        let ev = h.events();
        assert!(
            matches!(
                &ev[..],
                [
                    (_, Event::Call(DialogEvent::Ringing { .. })),
                    (_, Event::Call(DialogEvent::Answered(_)))
                ]
            ) && ev.iter().all(|(i, _)| *i == id),
            "{ev:?}"
        );
    }

    #[test]
    fn a_503_with_retry_after_rests_the_trunk_until_then() {
        let mut h = Harness::new(14);
        let first = h.start(spec(&[TRUNK_A, TRUNK_B]));
        let inv_a = only(h.sent()).msg;
        h.now_ms = 30;
        let busy_trunk = TRUNK.reply_with(&inv_a, 503, &[("Retry-After", "300 (maintenance)")]);
        h.recv(TRUNK.addr, &busy_trunk).unwrap();
        assert_eq!(methods(&h.sent()), ["ACK", "INVITE"], "failed over to B");
        let ev = only(h.events());
        let (_, Event::Failover { trunk: 0, end }) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!((end.sip_code, end.retry_after_s), (Some(503), Some(300)));
        h.ep.hangup(first, EndedReason::HangupRequested, h.now());
        h.sent();
        h.events();

        // Meanwhile the next call skips trunk A and goes straight to B.
        h.now_ms = 10_000;
        let second = h.start(spec(&[TRUNK_A, TRUNK_B]));
        let inv = only(h.sent());
        assert_eq!(inv.dest, addr(TRUNK_B));
        h.ep.hangup(second, EndedReason::HangupRequested, h.now());
        h.sent();
        h.events();

        // With only trunk A, the call is not dialled: it ends at once and
        // says how long to wait (what is left of the 300 s).
        let alone = h.start(spec(&[TRUNK_A]));
        assert!(h.sent().is_empty(), "nothing sent to a resting trunk");
        let ev = only(h.events());
        let (i, Event::Call(DialogEvent::Ended(end))) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (i, end.status, end.detail.as_str(), end.retry_after_s),
            (alone, CallStatus::Failed, "trunks_resting", Some(291))
        );

        // Once the rest is over, trunk A is used again.
        h.now_ms = 300_030;
        h.start(spec(&[TRUNK_A, TRUNK_B]));
        assert_eq!(only(h.sent()).dest, addr(TRUNK_A));
    }

    #[test]
    fn a_503_with_retry_after_on_the_last_trunk_reports_the_wait() {
        let mut h = Harness::new(15);
        h.start(spec(&[TRUNK_A]));
        let inv = only(h.sent()).msg;
        let hostile = TRUNK.reply_with(&inv, 503, &[("Retry-After", "99999999999999999999")]);
        h.recv(TRUNK.addr, &hostile).unwrap();
        let ev = only(h.events());
        let (_, Event::Call(DialogEvent::Ended(end))) = ev else {
            panic!("{ev:?}")
        };
        // Bounded to an hour, whatever the trunk said.
        assert_eq!(
            (end.sip_code, end.retry_after_s),
            (Some(503), Some(msg::MAX_RETRY_AFTER_S))
        );
    }

    #[test]
    fn a_486_with_retry_after_does_not_rest_the_trunk() {
        let mut h = Harness::new(16);
        h.start(spec(&[TRUNK_A]));
        let inv = only(h.sent()).msg;
        h.recv(
            TRUNK.addr,
            &TRUNK.reply_with(&inv, 486, &[("Retry-After", "60")]),
        )
        .unwrap();
        let ev = only(h.events());
        let (_, Event::Call(DialogEvent::Ended(end))) = ev else {
            panic!("{ev:?}")
        };
        // The callee's wait, passed on for the redial; the trunk is fine.
        assert_eq!(end.retry_after_s, Some(60));
        h.sent();
        h.start(spec(&[TRUNK_A]));
        assert_eq!(only(h.sent()).dest, addr(TRUNK_A));
    }

    #[test]
    fn a_silent_trunk_is_skipped_after_the_failover_timeout() {
        let mut h = Harness::new(5);
        let mut s = spec(&[TRUNK_A, TRUNK_B]);
        s.failover_timeout = Some(Duration::from_millis(2_000));
        let id = h.start(s);
        let inv_a = only(h.sent()).msg;
        let out = h.advance_to(1_999);
        assert_eq!(
            out.iter().map(|s| (s.at, s.dest)).collect::<Vec<_>>(),
            [(500, addr(TRUNK_A)), (1_500, addr(TRUNK_A))],
            "Timer A retransmissions only"
        );
        assert!(h.events().is_empty());
        let out = h.advance_to(2_000);
        let inv_b = only(out);
        assert_eq!(
            (inv_b.at, inv_b.dest, inv_b.msg.method()),
            (2_000, addr(TRUNK_B), Some("INVITE"))
        );
        let ev = only(h.events());
        let (i, Event::Failover { trunk: 0, end }) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (i, end.status, end.detail.as_str(), end.try_next_trunk),
            (id, CallStatus::Failed, "no_response", true)
        );
        // Trunk A wakes up and answers late: it is released (ACK + BYE)
        // and the call hears nothing of it.
        h.now_ms = 2_500;
        h.recv(TRUNK.addr, &TRUNK.answer(&inv_a)).unwrap();
        let out = h.sent();
        assert_eq!(methods(&out), ["ACK", "BYE"]);
        assert!(out.iter().all(|s| s.dest == addr(TRUNK_A)));
        assert!(h.events().is_empty());
        // The second trunk has no further trunk: no failover timeout there,
        // RFC timers decide.
        h.recv(TRUNK_2.addr, &TRUNK_2.answer(&inv_b.msg)).unwrap();
        assert!(matches!(
            &h.events()[..],
            [(i, Event::Call(DialogEvent::Answered(_)))] if *i == id
        ));
    }

    #[test]
    fn timer_a_retransmits_and_timer_b_ends_the_call() {
        let mut h = Harness::new(6);
        let id = h.start(spec(&[TRUNK_A]));
        let first = only(h.sent());
        let out = h.advance_to(31_999);
        assert_eq!(
            out.iter().map(|s| s.at).collect::<Vec<_>>(),
            [500, 1_500, 3_500, 7_500, 15_500, 31_500],
            "Timer A doubles from T1"
        );
        assert!(
            out.iter().all(|s| s.bytes == first.bytes),
            "the same INVITE"
        );
        assert!(h.events().is_empty());
        assert!(h.advance_to(32_000).is_empty());
        let ev = only(h.events());
        let end = ended(&ev);
        assert_eq!(
            (
                ev.0,
                end.status,
                end.reason,
                end.detail.as_str(),
                end.sip_code
            ),
            (
                id,
                CallStatus::Failed,
                EndedReason::TrunkError,
                "timer_b",
                None
            )
        );
        assert!(h.ep.is_idle());
        assert_eq!(h.ep.poll_timeout(), None);
    }

    #[test]
    fn unknown_call_ids_get_481_and_options_200_statelessly() {
        let mut h = Harness::new(7);
        let req = |method: &str| {
            let mut m = Message::request(method, "sip:voxline@192.0.2.1:5060");
            m.push("Via", "SIP/2.0/UDP 203.0.113.5:5070;branch=z9hG4bKprobe");
            m.push("From", "<sip:probe@203.0.113.5>;tag=p1");
            m.push("To", "<sip:voxline@192.0.2.1>");
            m.push("Call-ID", "not-one-of-ours");
            m.push("CSeq", format!("1 {method}"));
            m.to_bytes()
        };
        let prober = "203.0.113.5:5070";
        h.recv(prober, &req("BYE")).unwrap();
        let r = only(h.sent());
        assert_eq!((r.dest, r.msg.code()), (addr(prober), Some(481)));
        assert_eq!(r.msg.call_id(), "not-one-of-ours");
        assert!(r.msg.to_tag().is_some());
        h.recv(prober, &req("OPTIONS")).unwrap();
        let r = only(h.sent());
        assert_eq!((r.dest, r.msg.code()), (addr(prober), Some(200)));
        assert!(r.msg.header("Allow").is_some_and(|a| a.contains("INVITE")));
        // Texts are taken out of dialog: a trunk's probe is told so.
        assert!(r
            .msg
            .header("Allow")
            .is_some_and(|a| a.ends_with(", MESSAGE")));
        assert!(r
            .msg
            .header("Accept")
            .is_some_and(|a| a.contains("text/plain")));
        // An INVITE from outside any dialog is an inbound call (issue 16):
        // from an address that is no trunk's, 403.
        h.recv(prober, &req("INVITE")).unwrap();
        assert_eq!(only(h.sent()).msg.code(), Some(403));
        // No answer to an ACK, nor to a stray response.
        h.recv(prober, &req("ACK")).unwrap();
        let inv = msg::parse(&req("INVITE")).unwrap();
        h.recv(prober, &TRUNK.reply(&inv, 200)).unwrap();
        assert!(h.sent().is_empty());
        assert!(h.events().is_empty() && h.ep.is_idle());
    }

    #[test]
    fn the_callee_hangs_up_with_bye() {
        let mut h = Harness::new(8);
        let id = h.start(spec(&[TRUNK_A]));
        let inv = only(h.sent()).msg;
        h.recv(TRUNK.addr, &TRUNK.answer(&inv)).unwrap();
        h.sent();
        h.events();
        h.now_ms = 5_000;
        let bye = TRUNK.bye(&inv);
        h.recv(TRUNK.addr, &bye).unwrap();
        let ok = only(h.sent());
        assert_eq!(
            (ok.dest, ok.msg.code(), ok.msg.cseq()),
            (addr(TRUNK_A), Some(200), (1, "BYE"))
        );
        let ev = only(h.events());
        let end = ended(&ev);
        assert_eq!(
            (ev.0, end.status, end.reason),
            (id, CallStatus::Completed, EndedReason::CalleeHangup)
        );
        // Its retransmission gets the same 200, still from the dialog.
        h.now_ms = 5_500;
        h.recv(TRUNK.addr, &bye).unwrap();
        assert_eq!(only(h.sent()).bytes, ok.bytes);
        // Hanging up an ended call does nothing.
        h.ep.hangup(id, EndedReason::AgentHangup, h.now());
        assert!(h.sent().is_empty() && h.events().is_empty());
    }

    #[test]
    fn hangup_before_any_answer_cancels_and_does_not_fail_over() {
        let mut h = Harness::new(9);
        let id = h.start(spec(&[TRUNK_A, TRUNK_B]));
        let inv = only(h.sent()).msg;
        h.recv(TRUNK.addr, &TRUNK.reply(&inv, 180)).unwrap();
        h.events();
        h.ep.hangup(id, EndedReason::HangupRequested, h.now());
        let cancel = only(h.sent());
        assert_eq!(cancel.msg.method(), Some("CANCEL"));
        h.recv(TRUNK.addr, &TRUNK.reply(&cancel.msg, 200)).unwrap();
        // Even a failover-class answer does not move on once hung up.
        h.recv(TRUNK.addr, &TRUNK.reply(&inv, 503)).unwrap();
        assert_eq!(methods(&h.sent()), ["ACK"]);
        let ev = only(h.events());
        assert_eq!(ended(&ev).status, CallStatus::Cancelled);
    }

    #[test]
    fn hostile_datagrams_are_dropped_without_panics() {
        let mut h = Harness::new(10);
        let id = h.start(spec(&[TRUNK_A]));
        let inv = only(h.sent());
        let from = "203.0.113.66:5060";
        assert_eq!(
            h.recv(from, b""),
            Err(DatagramError::Parse(ParseError::Empty))
        );
        assert!(h.recv(from, b"\0\xff\xfe garbage \r\n\r\n").is_err());
        let huge = vec![b'A'; 70_000];
        assert_eq!(h.recv(from, &huge), Err(DatagramError::TooLarge(70_000)));
        assert_eq!(h.recv(from, &huge).unwrap_err().code(), "too_large");
        let no_call_id = b"BYE sip:x@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            h.recv(from, no_call_id).unwrap_err().code(),
            "missing_header"
        );
        assert!(h.recv(from, b"SIP/2.0 200 OK\r\n\r\n").is_err());
        // Every prefix of a real answer, and many byte-flipped copies of it.
        let answer = TRUNK.answer(&inv.msg);
        for n in 0..answer.len() {
            let _ = h.recv(from, &answer[..n]);
        }
        let mut random = SeededRandom::new(99);
        for _ in 0..2_000 {
            let mut bytes = answer.clone();
            let mut r = [0u8; 4];
            random.fill(&mut r);
            let at = usize::from(u16::from_le_bytes([r[0], r[1]])) % bytes.len();
            if let Some(b) = bytes.get_mut(at) {
                *b = r[2];
            }
            let _ = h.recv(from, &bytes);
        }
        h.sent();
        // Flipped copies may have hit the dialog; but the call must still
        // be usable, and its event stream sane (at most one answer).
        let ev = h.events();
        assert!(ev.iter().all(|(i, _)| *i == id), "{ev:?}");
        let answers = ev
            .iter()
            .filter(|(_, e)| matches!(e, Event::Call(DialogEvent::Answered(_))))
            .count();
        assert!(answers <= 1, "{ev:?}");
        h.advance_to(200_000);
        assert!(h.ep.dialog_count() <= 1);
    }

    /// `Duration::MAX` timeouts used to overflow `now + ms` in the dialog.
    #[test]
    fn huge_timeouts_are_clamped_not_overflowed() {
        let mut h = Harness::new(12);
        let mut s = spec(&[TRUNK_A, TRUNK_B]);
        s.ring_timeout = Duration::MAX;
        s.max_duration = Some(Duration::MAX);
        s.failover_timeout = Some(Duration::MAX);
        h.now_ms = 1_000;
        let id = h.start(s);
        let inv = only(h.sent()).msg;
        h.now_ms = 2_000;
        h.recv(TRUNK.addr, &TRUNK.answer(&inv)).unwrap();
        assert_eq!(methods(&h.sent()), ["ACK"]);
        assert!(h.ep.poll_timeout().is_some());
        h.advance_to(100_000);
        assert!(matches!(
            &h.events()[..],
            [(i, Event::Call(DialogEvent::Answered(_)))] if *i == id
        ));
    }

    #[test]
    fn starting_refuses_without_trunks_or_beyond_the_dialog_limit() {
        let mut config = EndpointConfig::new(addr(LOCAL));
        config.max_dialogs = 2;
        let mut h = Harness::with_config(11, config);
        let none = h.ep.start_call(spec(&[]), h.now());
        assert_eq!(none, Err(StartError::NoTrunk));
        h.start(spec(&[TRUNK_A]));
        h.start(spec(&[TRUNK_A]));
        let third = h.ep.start_call(spec(&[TRUNK_A]), h.now());
        assert_eq!(third.map_err(|e| e.code()), Err("too_many_dialogs"));
        // Once the dialogs are gone (Timer B), calls can start again.
        h.advance_to(40_000);
        assert!(h.ep.is_idle());
        h.start(spec(&[TRUNK_A]));
    }

    // ------------------------------------------------------- transports

    fn stream_trunk(a: &str, transport: Transport) -> Trunk {
        let mut t = Trunk::new(addr(a));
        t.transport = transport;
        t
    }

    fn stream_spec(trunks: Vec<Trunk>) -> CallSpec {
        let mut s = spec(&[]);
        s.trunks = trunks;
        s
    }

    /// A message from the trunk over `flow`.
    fn recv_on(h: &mut Harness, flow: &Flow, bytes: &[u8]) {
        let m = msg::parse(bytes).unwrap();
        h.ep.handle_message(h.now(), flow.clone(), &m);
    }

    /// RFC 3261 17.1.1.2 / 18: over TCP the INVITE goes out once, over the
    /// trunk's TCP flow, saying TCP in Via and Contact; Timer B still ends it.
    #[test]
    fn a_tcp_trunk_gets_tcp_via_and_contact_and_no_retransmissions() {
        let mut h = Harness::new(40);
        let id = h.start(stream_spec(vec![stream_trunk(TRUNK_A, Transport::Tcp)]));
        let inv = only(h.sent());
        assert_eq!(
            inv.flow,
            Flow {
                transport: Transport::Tcp,
                addr: addr(TRUNK_A),
                tls_name: None
            }
        );
        let via = inv.msg.header("Via").unwrap();
        assert!(
            via.starts_with("SIP/2.0/TCP 192.0.2.1:5060;rport;alias;branch=z9hG4bK"),
            "{via}"
        );
        assert_eq!(
            inv.msg.header("Contact"),
            Some("<sip:+14155550199@192.0.2.1:5060;transport=tcp>")
        );
        assert_eq!(
            inv.msg.uri(),
            Some("sip:+14155550100@198.51.100.1:5060;transport=tcp")
        );
        // Nothing more until Timer B (64*T1): no Timer A on a stream.
        let out = h.advance_to(31_999);
        assert!(out.is_empty(), "{:?}", methods(&out));
        assert!(h.events().is_empty());
        h.advance_to(32_000);
        let ev = only(h.events());
        assert_eq!((ev.0, ended(&ev).detail.as_str()), (id, "timer_b"));
        // A UDP trunk still retransmits (the rule is per transport).
        let mut h = Harness::new(41);
        h.start(spec(&[TRUNK_A]));
        h.sent();
        assert_eq!(methods(&h.advance_to(1_600)), ["INVITE", "INVITE"]);
    }

    /// TLS: `sip:` Request-URI with `transport=tls` (5061 implied), the
    /// trunk's host as the TLS name; the callee's BYE over the connection is
    /// answered on it, the BYE's retransmission too; a request that came
    /// over UDP is answered over UDP.
    #[test]
    fn a_tls_trunk_is_addressed_by_name_and_answers_go_back_on_their_flow() {
        let mut h = Harness::new(42);
        let mut t = stream_trunk("198.51.100.1:5061", Transport::Tls);
        t.domain = Some("sip.example.com".into());
        let id = h.start(stream_spec(vec![t.clone()]));
        let inv = only(h.sent());
        let flow = t.flow();
        assert_eq!(flow.tls_name.as_deref(), Some("sip.example.com"));
        assert_eq!(inv.flow, flow);
        assert_eq!(
            inv.msg.uri(),
            Some("sip:+14155550100@sip.example.com;transport=tls")
        );
        assert_eq!(
            inv.msg.header("To"),
            Some("<sip:+14155550100@sip.example.com>")
        );
        assert!(inv
            .msg
            .header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/TLS ")));
        assert!(inv
            .msg
            .header("Contact")
            .is_some_and(|c| c.ends_with(";transport=tls>")));
        let trunk = FakeTrunk {
            addr: "198.51.100.1:5061",
            tag: "tls-trunk",
        };
        recv_on(&mut h, &flow, &trunk.answer(&inv.msg));
        let ack = only(h.sent());
        assert_eq!((ack.msg.method(), &ack.flow), (Some("ACK"), &flow));
        h.events();
        let bye = trunk.bye(&inv.msg);
        recv_on(&mut h, &flow, &bye);
        let ok = only(h.sent());
        assert_eq!((ok.msg.code(), &ok.flow), (Some(200), &flow));
        assert_eq!(ended(&only(h.events())).reason, EndedReason::CalleeHangup);
        // The same BYE again over UDP (a confused trunk): answered over UDP.
        recv_on(&mut h, &Flow::udp(addr("198.51.100.1:5061")), &bye);
        let again = only(h.sent());
        assert_eq!(again.flow, Flow::udp(addr("198.51.100.1:5061")));
        assert_eq!(again.bytes, ok.bytes);
        // Unknown Call-IDs are answered on the flow they came on, too.
        let mut stray = msg::parse(&bye).unwrap();
        stray.headers.retain(|(n, _)| n != "Call-ID");
        stray.push("Call-ID", "unknown@x");
        h.ep.handle_message(h.now(), flow.clone(), &stray);
        let r = only(h.sent());
        assert_eq!((r.msg.code(), &r.flow), (Some(481), &flow));
        let _ = id;
    }

    /// The connection dies before an answer: the call fails over (the
    /// detail says why); after the answer: it ends `transport_error` at
    /// once and a BYE goes out (the driver connects again for it).
    #[test]
    fn a_lost_connection_fails_over_unanswered_calls_and_ends_answered_ones() {
        let mut h = Harness::new(43);
        let a = stream_trunk(TRUNK_A, Transport::Tcp);
        let id = h.start(stream_spec(vec![a.clone(), Trunk::new(addr(TRUNK_B))]));
        only(h.sent());
        h.now_ms = 50;
        h.ep.handle_flow_failed(h.now(), &a.flow());
        let ev = h.events();
        assert!(
            matches!(&ev[..], [(i, Event::Failover { trunk: 0, end })]
                if *i == id && end.detail == "transport_error"
                    && end.reason == EndedReason::TrunkError),
            "{ev:?}"
        );
        let second = only(h.sent());
        assert_eq!(
            (second.msg.method(), second.flow),
            (Some("INVITE"), Flow::udp(addr(TRUNK_B)))
        );
        // Another flow failing changes nothing for it.
        h.ep.handle_flow_failed(h.now(), &a.flow());
        assert!(h.events().is_empty() && h.sent().is_empty());
        assert!(h.ep.dialog_count() == 1, "the TCP dialog is gone at once");

        // Answered over TCP, then the connection drops.
        let mut h = Harness::new(44);
        let id = h.start(stream_spec(vec![a.clone(), Trunk::new(addr(TRUNK_B))]));
        let inv = only(h.sent()).msg;
        recv_on(&mut h, &a.flow(), &TRUNK.answer(&inv));
        h.sent();
        h.events();
        h.now_ms = 10_000;
        h.ep.handle_flow_failed(h.now(), &a.flow());
        let ev = only(h.events());
        let end = ended(&ev);
        assert_eq!(
            (
                ev.0,
                end.status,
                end.reason,
                end.detail.as_str(),
                end.try_next_trunk
            ),
            (
                id,
                CallStatus::Failed,
                EndedReason::TrunkError,
                "transport_error",
                false
            )
        );
        let bye = only(h.sent());
        assert_eq!((bye.msg.method(), bye.flow), (Some("BYE"), a.flow()));
        // That connection fails too: the dialog is dropped, nothing retried.
        h.ep.handle_flow_failed(h.now(), &a.flow());
        assert!(h.sent().is_empty() && h.events().is_empty());
        assert!(h.ep.is_idle());
    }

    /// Once the callee was alerted on a trunk, a lost connection does not
    /// ring them again elsewhere (as for a 408/480/503).
    #[test]
    fn a_lost_connection_after_ringing_ends_the_call_without_failover() {
        let mut h = Harness::new(45);
        let a = stream_trunk(TRUNK_A, Transport::Tcp);
        let id = h.start(stream_spec(vec![a.clone(), Trunk::new(addr(TRUNK_B))]));
        let inv = only(h.sent()).msg;
        recv_on(&mut h, &a.flow(), &TRUNK.reply(&inv, 180));
        h.events();
        h.ep.handle_flow_failed(h.now(), &a.flow());
        let ev = only(h.events());
        assert_eq!((ev.0, ended(&ev).detail.as_str()), (id, "transport_error"));
        assert!(h.sent().is_empty(), "no CANCEL, no second INVITE");
    }

    #[test]
    fn a_text_whose_connection_fails_goes_to_the_next_trunk() {
        let mut h = Harness::new(46);
        let a = stream_trunk(TRUNK_A, Transport::Tcp);
        let mut spec = text_spec(&[TRUNK_B]);
        spec.trunks.insert(0, a.clone());
        h.ep.send_message(spec, h.now()).unwrap();
        let first = only(h.sent());
        assert_eq!(first.flow, a.flow());
        assert!(first
            .msg
            .header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/TCP ")));
        assert!(first
            .msg
            .uri()
            .is_some_and(|u| u.ends_with(";transport=tcp")));
        assert!(h.advance_to(10_000).is_empty(), "no Timer E over TCP");
        h.ep.handle_flow_failed(h.now(), &a.flow());
        let second = only(h.sent());
        assert_eq!(second.flow, Flow::udp(addr(TRUNK_B)));
    }

    // ---------------------------------------------- registration, proxy

    /// An endpoint whose trunk A registers (as `acct` in `sip.carrier.example`).
    fn registering(seed: u64) -> Harness {
        let mut config = EndpointConfig::new(addr(LOCAL));
        let mut reg = RegisterConfig::new(
            "carrier",
            addr(TRUNK_A),
            "acct",
            "sip.carrier.example",
            addr("0.0.0.0:1"),
        );
        reg.expires_s = 600;
        config.registrations = vec![reg];
        Harness::with_config(seed, config)
    }

    fn registered_trunk() -> Trunk {
        let mut t = Trunk::new(addr(TRUNK_A));
        t.domain = Some("sip.carrier.example".into());
        t.registration = Some("carrier".into());
        t
    }

    #[test]
    fn a_registering_trunk_is_dialled_only_while_bound_and_through_its_binding() {
        let mut h = registering(30);
        let register = only(h.sent());
        assert_eq!(
            (
                register.dest,
                register.msg.method(),
                register.msg.header("Contact")
            ),
            (
                addr(TRUNK_A),
                Some("REGISTER"),
                Some("<sip:acct@192.0.2.1:5060>")
            ),
            "the Contact names the endpoint's own address"
        );
        let status = h.ep.registrations(h.now());
        assert_eq!((status.len(), status[0].bound), (1, false));
        // Not bound yet: alone, the trunk cannot be dialled...
        let id = h.start(spec_with(vec![registered_trunk()]));
        assert!(h.sent().is_empty());
        let ev = only(h.events());
        let end = ended(&ev);
        assert_eq!(
            (
                ev.0,
                end.status,
                end.reason,
                end.detail.as_str(),
                end.retry_after_s
            ),
            (
                id,
                CallStatus::Failed,
                EndedReason::TrunkError,
                "trunk_not_registered",
                Some(REGISTERING_WAIT_S)
            )
        );
        // ...and with another one, that one is dialled.
        h.start(spec_with(vec![
            registered_trunk(),
            Trunk::new(addr(TRUNK_B)),
        ]));
        assert_eq!(only(h.sent()).dest, addr(TRUNK_B));
        h.events();
        // Bound: calls go out through the binding.
        h.now_ms = 100;
        h.recv(
            TRUNK_A,
            &TRUNK.reply_with(&register.msg, 200, &[("Expires", "600")]),
        )
        .unwrap();
        assert!(h.ep.registrations(h.now())[0].bound);
        h.start(spec_with(vec![
            registered_trunk(),
            Trunk::new(addr(TRUNK_B)),
        ]));
        let inv = only(h.sent());
        assert_eq!(
            (
                inv.dest,
                inv.msg.uri(),
                inv.msg.header("Contact"),
                inv.msg.from().map(|f| f.uri)
            ),
            (
                addr(TRUNK_A),
                Some("sip:+14155550100@sip.carrier.example"),
                Some("<sip:acct@192.0.2.1:5060>"),
                Some("sip:+14155550199@sip.carrier.example".to_string())
            )
        );
        // A text too: From in the binding's domain.
        let mut text = text_spec(&[TRUNK_A]);
        text.trunks = vec![registered_trunk()];
        h.ep.send_message(text, h.now()).unwrap();
        let m = only(h.sent());
        assert_eq!(
            (m.dest, m.msg.method(), m.msg.from().map(|f| f.uri)),
            (
                addr(TRUNK_A),
                Some("MESSAGE"),
                Some("sip:+14155550100@sip.carrier.example".to_string())
            )
        );
        // The provider's INVITE to our binding is an inbound call (issue
        // 16); this endpoint takes none from it (no inbound trunks): 403,
        // and the registration stays.
        let mut incoming = Message::request("INVITE", "sip:acct@192.0.2.1:5060");
        incoming.push("Via", format!("SIP/2.0/UDP {TRUNK_A};branch=z9hG4bKin1"));
        incoming.push("From", "<sip:+14155550111@sip.carrier.example>;tag=in1");
        incoming.push("To", "<sip:acct@sip.carrier.example>");
        incoming.push("Call-ID", "inbound-1@carrier");
        incoming.push("CSeq", "1 INVITE");
        h.recv(TRUNK_A, &incoming.to_bytes()).unwrap();
        let r = only(h.sent());
        assert_eq!(
            (r.msg.code(), r.msg.call_id()),
            (Some(403), "inbound-1@carrier")
        );
        assert!(h.ep.registrations(h.now())[0].bound);
        // Refreshed before it lapses: at 100 ms + 540 s.
        let out = h.advance_to(100 + 540_000);
        let refresh = out
            .iter()
            .find(|s| s.msg.method() == Some("REGISTER"))
            .expect("refreshed");
        assert_eq!((refresh.at, refresh.msg.cseq().0), (100 + 540_000, 2));
    }

    fn spec_with(trunks: Vec<Trunk>) -> CallSpec {
        CallSpec::new(
            trunks,
            "+14155550100",
            "+14155550199",
            OfferConfig::new(addr("192.0.2.1:40000")),
        )
    }

    #[test]
    fn unregister_all_removes_the_binding_and_stops_dialling_the_trunk() {
        let mut h = registering(31);
        let register = only(h.sent());
        h.recv(TRUNK_A, &TRUNK.reply(&register.msg, 200)).unwrap();
        assert!(!h.ep.is_unregistered());
        h.ep.unregister_all(h.now());
        let un = only(h.sent());
        assert_eq!(
            (un.msg.method(), un.msg.header("Expires")),
            (Some("REGISTER"), Some("0"))
        );
        assert!(!h.ep.is_idle(), "an un-REGISTER under way");
        let id = h.start(spec_with(vec![registered_trunk()]));
        assert_eq!(ended(&only(h.events())).detail, "trunk_not_registered");
        let _ = id;
        h.sent();
        h.recv(TRUNK_A, &TRUNK.reply(&un.msg, 200)).unwrap();
        assert!(h.ep.is_unregistered());
        let s = &h.ep.registrations(h.now())[0];
        assert_eq!(
            (s.state, s.bound),
            (
                super::super::register::RegistrationState::Unregistered,
                false
            )
        );
        h.advance_to(10_000);
        assert!(h.ep.is_idle());
        assert_eq!(h.ep.poll_timeout(), None, "no refresh after un-REGISTER");
    }

    #[test]
    fn an_outbound_proxy_gets_every_request_with_its_route_and_the_trunks_request_uri() {
        const PROXY: &str = "198.51.100.9:5070";
        let proxied = || {
            let mut t = Trunk::new(addr(PROXY));
            t.domain = Some("trunk.example:5080".into());
            t.outbound_route = Some("<sip:proxy.example:5070;lr>".into());
            t
        };
        let mut h = Harness::new(32);
        let id = h.start(spec_with(vec![proxied()]));
        let inv = only(h.sent());
        assert_eq!(
            (
                inv.dest,
                inv.msg.uri(),
                inv.msg.header_lines("Route"),
                inv.msg.header("To")
            ),
            (
                addr(PROXY),
                Some("sip:+14155550100@trunk.example:5080"),
                vec!["<sip:proxy.example:5070;lr>"],
                Some("<sip:+14155550100@trunk.example:5080>")
            )
        );
        // Answered without Record-Route: the ACK and BYE still go through the
        // proxy, to the callee's Contact.
        let proxy = FakeTrunk {
            addr: PROXY,
            tag: "callee",
        };
        h.recv(PROXY, &proxy.answer(&inv.msg)).unwrap();
        let ack = only(h.sent());
        assert_eq!(
            (
                ack.dest,
                ack.msg.method(),
                ack.msg.uri(),
                ack.msg.header_lines("Route")
            ),
            (
                addr(PROXY),
                Some("ACK"),
                Some("sip:callee@198.51.100.9:5070"),
                vec!["<sip:proxy.example:5070;lr>"]
            )
        );
        h.ep.hangup(id, EndedReason::AgentHangup, h.now());
        let bye = only(h.sent());
        assert_eq!(
            (bye.dest, bye.msg.method(), bye.msg.header_lines("Route")),
            (
                addr(PROXY),
                Some("BYE"),
                vec!["<sip:proxy.example:5070;lr>"]
            )
        );
        // A CANCEL follows its INVITE's route.
        let id = h.start(spec_with(vec![proxied()]));
        let inv = only(h.sent());
        h.recv(PROXY, &proxy.reply(&inv.msg, 180)).unwrap();
        h.ep.hangup(id, EndedReason::HangupRequested, h.now());
        let cancel = only(h.sent());
        assert_eq!(
            (
                cancel.dest,
                cancel.msg.method(),
                cancel.msg.header_lines("Route")
            ),
            (
                addr(PROXY),
                Some("CANCEL"),
                vec!["<sip:proxy.example:5070;lr>"]
            )
        );
        // A text too.
        let mut t = text_spec(&[PROXY]);
        t.trunks = vec![proxied()];
        h.ep.send_message(t, h.now()).unwrap();
        let m = only(h.sent());
        assert_eq!(
            (m.dest, m.msg.uri(), m.msg.header_lines("Route")),
            (
                addr(PROXY),
                Some("sip:+14155550111@trunk.example:5080"),
                vec!["<sip:proxy.example:5070;lr>"]
            )
        );
    }

    // ------------------------------------------------------------ texts

    fn text_spec(trunks: &[&str]) -> MessageSpec {
        MessageSpec {
            trunks: trunks.iter().map(|t| Trunk::new(addr(t))).collect(),
            to_user: "+14155550111".into(),
            from_user: "+14155550100".into(),
            body: "hello".into(),
            imdn: None,
            timers: Timers::default(),
        }
    }

    fn text_ends(h: &mut Harness) -> Vec<(MessageId, MessageEnd)> {
        std::iter::from_fn(|| h.ep.poll_message_end()).collect()
    }

    #[test]
    fn a_text_goes_to_the_trunk_and_a_503_moves_it_to_the_next() {
        let mut h = Harness::new(20);
        let id =
            h.ep.send_message(text_spec(&[TRUNK_A, TRUNK_B]), h.now())
                .unwrap();
        let first = only(h.sent());
        assert_eq!(
            (first.dest, first.msg.method(), first.msg.uri()),
            (
                addr(TRUNK_A),
                Some("MESSAGE"),
                Some("sip:+14155550111@198.51.100.1:5060")
            )
        );
        h.recv(TRUNK.addr, &TRUNK.reply(&first.msg, 503)).unwrap();
        let second = only(h.sent());
        assert_eq!(
            (second.dest, second.msg.method()),
            (addr(TRUNK_B), Some("MESSAGE"))
        );
        assert!(text_ends(&mut h).is_empty());
        h.recv(TRUNK_2.addr, &TRUNK_2.reply(&second.msg, 202))
            .unwrap();
        let ends = text_ends(&mut h);
        assert_eq!(ends.len(), 1);
        assert_eq!(
            (ends[0].0, ends[0].1.outcome, ends[0].1.sip_code),
            (
                id,
                voxline_shared::sidecar_link::MessageOutcome::Sent,
                Some(202)
            )
        );
        h.advance_to(60_000);
        assert!(h.ep.is_idle());
    }

    #[test]
    fn a_rejected_text_is_not_sent_elsewhere() {
        let mut h = Harness::new(21);
        h.ep.send_message(text_spec(&[TRUNK_A, TRUNK_B]), h.now())
            .unwrap();
        let m = only(h.sent()).msg;
        h.recv(TRUNK.addr, &TRUNK.reply(&m, 488)).unwrap();
        assert!(h.sent().is_empty(), "no second trunk for a 488");
        let ends = text_ends(&mut h);
        assert_eq!(
            (ends[0].1.sip_code, ends[0].1.reason),
            (Some(488), Some(text_message::reasons::REJECTED))
        );
    }

    // ---- inbound calls (issue 16) ----

    const OFFER_SDP: &str = "v=0\r\no=- 7 7 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

    /// The trunk's INVITE to `to` (Call-ID `in-{branch}`), with an SDP offer.
    fn invite_from_trunk(branch: &str, to: &str) -> Vec<u8> {
        invite_from_trunk_with(branch, to, OFFER_SDP)
    }

    fn invite_from_trunk_with(branch: &str, to: &str, sdp: &str) -> Vec<u8> {
        let mut m = Message::request("INVITE", &format!("sip:{to}@192.0.2.1:5060"));
        m.push("Via", format!("SIP/2.0/UDP {TRUNK_A};branch={branch}"));
        m.push("Max-Forwards", "70");
        m.push(
            "From",
            "\"Ada\" <sip:+14155550111@198.51.100.1>;tag=caller1",
        );
        m.push("To", format!("<sip:{to}@192.0.2.1>"));
        m.push("Call-ID", format!("in-{branch}@trunk"));
        m.push("CSeq", "1 INVITE");
        m.push("Contact", format!("<sip:+14155550111@{TRUNK_A}>"));
        m.push("Content-Type", "application/sdp");
        m.body = sdp.as_bytes().to_vec();
        m.to_bytes()
    }

    /// A request in the dialog the trunk's INVITE made (our tag from `answer`).
    fn in_dialog(
        method: &str,
        invite: &[u8],
        answer: &Message,
        branch: &str,
        cseq: u32,
    ) -> Vec<u8> {
        let invite = msg::parse(invite).unwrap();
        // A 2xx's Contact is the target; an ACK of a refusal goes to the INVITE's.
        let target = answer
            .contact_uri()
            .unwrap_or_else(|| invite.uri().unwrap_or_default().to_string());
        let mut m = Message::request(method, &target);
        m.push("Via", format!("SIP/2.0/UDP {TRUNK_A};branch={branch}"));
        m.push("From", invite.header("From").unwrap());
        m.push("To", answer.header("To").unwrap());
        m.push("Call-ID", invite.call_id());
        m.push("CSeq", format!("{cseq} {method}"));
        m.to_bytes()
    }

    fn codes(sent: &[Sent]) -> Vec<u16> {
        sent.iter().filter_map(|s| s.msg.code()).collect()
    }

    fn inbound_events(h: &mut Harness) -> Vec<(InboundCallId, InboundCallEvent)> {
        std::iter::from_fn(|| h.ep.poll_inbound_call()).collect()
    }

    fn media() -> OfferConfig {
        OfferConfig::new(addr("192.0.2.1:40000"))
    }

    /// Rings (100, 180), is offered, answered with 200 + SDP; the ACK stops
    /// the retransmissions; the caller's BYE ends it.
    #[test]
    fn an_inbound_call_rings_is_answered_acked_and_ended_by_the_callers_bye() {
        let mut h = with_trunks(31);
        let invite = invite_from_trunk("z9hG4bKin1", "+14155550100");
        h.recv(TRUNK_A, &invite).unwrap();
        let sent = h.sent();
        assert_eq!(codes(&sent), [100, 180], "ringback while the edge decides");
        assert!(sent.iter().all(|s| s.dest == addr(TRUNK_A)));
        let events = inbound_events(&mut h);
        let (id, InboundCallEvent::Offered(offer)) = only(events) else {
            panic!("not offered")
        };
        assert_eq!(
            (
                offer.called.as_str(),
                offer.caller.as_str(),
                offer.sip_call_id.as_str()
            ),
            ("+14155550100", "+14155550111", "in-z9hG4bKin1@trunk")
        );
        // The trunk retransmits the INVITE: the 180 again, nothing new offered.
        h.now_ms = 400;
        h.recv(TRUNK_A, &invite).unwrap();
        assert_eq!(codes(&h.sent()), [180]);
        assert!(inbound_events(&mut h).is_empty());

        h.now_ms = 600;
        h.ep.answer_inbound_call(id, &media(), None, h.now())
            .unwrap();
        let ok = only(h.sent());
        assert_eq!(ok.msg.code(), Some(200));
        let sdp = String::from_utf8(ok.msg.body.clone()).unwrap();
        assert!(
            sdp.contains("m=audio 40000 RTP/AVP 8 101"),
            "PCMA, the caller's first: {sdp}"
        );
        assert!(ok.msg.to_tag().is_some() && ok.msg.contact_uri().is_some());
        let Some((_, InboundCallEvent::Call(DialogEvent::Answered(n)))) =
            inbound_events(&mut h).pop()
        else {
            panic!("answered")
        };
        assert_eq!(
            (n.codec, n.remote_rtp),
            (crate::media::Codec::Pcma, addr("198.51.100.1:6000"))
        );
        // No ACK yet: Timer G retransmits the 200 (T1, 2*T1, ...).
        let again = h.advance_to(600 + 1_600);
        assert_eq!(codes(&again), [200, 200]);
        h.recv(
            TRUNK_A,
            &in_dialog("ACK", &invite, &ok.msg, "z9hG4bKack", 1),
        )
        .unwrap();
        assert!(h.advance_to(20_000).is_empty(), "the ACK stops them");

        h.recv(
            TRUNK_A,
            &in_dialog("BYE", &invite, &ok.msg, "z9hG4bKbye", 2),
        )
        .unwrap();
        let bye_ok = only(h.sent());
        assert_eq!((bye_ok.msg.code(), bye_ok.msg.cseq().1), (Some(200), "BYE"));
        let Some((_, InboundCallEvent::Call(DialogEvent::Ended(end)))) =
            inbound_events(&mut h).pop()
        else {
            panic!("ended")
        };
        assert_eq!(
            (end.status, end.reason),
            (CallStatus::Completed, EndedReason::CalleeHangup)
        );
        h.advance_to(60_000);
        assert!(h.ep.is_idle(), "forgotten after lingering");
    }

    #[test]
    fn our_hangup_of_an_answered_inbound_call_sends_bye_to_the_callers_contact() {
        let mut h = with_trunks(32);
        let invite = invite_from_trunk("z9hG4bKin2", "+14155550100");
        h.recv(TRUNK_A, &invite).unwrap();
        h.sent();
        let (id, _) = only(inbound_events(&mut h));
        h.ep.answer_inbound_call(id, &media(), None, h.now())
            .unwrap();
        let ok = only(h.sent());
        h.recv(
            TRUNK_A,
            &in_dialog("ACK", &invite, &ok.msg, "z9hG4bKack2", 1),
        )
        .unwrap();
        inbound_events(&mut h);
        h.ep.hangup_inbound_call(id, EndedReason::AgentHangup, h.now());
        let bye = only(h.sent());
        assert_eq!(bye.msg.method(), Some("BYE"));
        assert_eq!(bye.msg.uri(), Some("sip:+14155550111@198.51.100.1:5060"));
        assert_eq!(bye.msg.to_tag().as_deref(), Some("caller1"));
        assert_eq!(bye.msg.from_tag(), ok.msg.to_tag());
        let Some((_, InboundCallEvent::Call(DialogEvent::Ended(end)))) =
            inbound_events(&mut h).pop()
        else {
            panic!("ended")
        };
        assert_eq!(end.reason, EndedReason::AgentHangup);
        h.recv(TRUNK_A, &TRUNK.reply(&bye.msg, 200)).unwrap();
        assert!(
            h.advance_to(60_000).is_empty(),
            "answered: no BYE retransmissions"
        );
        assert!(h.ep.is_idle());
    }

    /// Issue 18: keys both ways on an inbound call as SIP INFO: the
    /// caller's (answered 200, an event) and ours (one INFO per key to the
    /// caller's Contact, each after the last one's 200, CSeq counting up,
    /// our BYE after them).
    #[test]
    fn keys_go_both_ways_as_sip_info_on_an_inbound_call() {
        let mut h = with_trunks(34);
        let invite = invite_from_trunk("z9hG4bKin4", "+14155550100");
        h.recv(TRUNK_A, &invite).unwrap();
        h.sent();
        let (id, _) = only(inbound_events(&mut h));
        h.ep.send_dtmf_info_inbound(id, "1", 120, h.now());
        assert!(h.sent().is_empty(), "nothing sent while ringing");
        assert!(matches!(
            inbound_events(&mut h).pop(),
            Some((_, InboundCallEvent::Call(DialogEvent::KeysSent(Err(_)))))
        ));
        h.ep.answer_inbound_call(id, &media(), None, h.now())
            .unwrap();
        let ok = only(h.sent());
        h.recv(
            TRUNK_A,
            &in_dialog("ACK", &invite, &ok.msg, "z9hG4bKack4", 1),
        )
        .unwrap();
        inbound_events(&mut h);
        // The caller presses 5.
        let mut info = msg::parse(&in_dialog("INFO", &invite, &ok.msg, "z9hG4bKinfo4", 2)).unwrap();
        info.push("Content-Type", "application/dtmf-relay");
        info.body = b"Signal=5\r\nDuration=160\r\n".to_vec();
        h.recv(TRUNK_A, &info.to_bytes()).unwrap();
        assert_eq!(codes(&h.sent()), [200]);
        assert!(matches!(
            inbound_events(&mut h).pop(),
            Some((_, InboundCallEvent::Call(DialogEvent::KeyPressed('5'))))
        ));
        // We press 1#.
        h.ep.send_dtmf_info_inbound(id, "1#", 120, h.now());
        let first = only(h.sent());
        assert_eq!(first.msg.method(), Some("INFO"));
        assert_eq!(first.msg.uri(), Some("sip:+14155550111@198.51.100.1:5060"));
        assert_eq!(first.msg.cseq(), (1, "INFO"));
        assert_eq!(first.msg.from_tag(), ok.msg.to_tag());
        assert_eq!(crate::sip::call::info_dtmf_key(&first.msg), Some('1'));
        h.recv(TRUNK_A, &TRUNK.reply(&first.msg, 200)).unwrap();
        let second = only(h.sent());
        assert_eq!(second.msg.cseq(), (2, "INFO"));
        assert_eq!(crate::sip::call::info_dtmf_key(&second.msg), Some('#'));
        assert!(inbound_events(&mut h).is_empty());
        h.recv(TRUNK_A, &TRUNK.reply(&second.msg, 200)).unwrap();
        assert!(matches!(
            inbound_events(&mut h).pop(),
            Some((_, InboundCallEvent::Call(DialogEvent::KeysSent(Ok(())))))
        ));
        h.ep.hangup_inbound_call(id, EndedReason::AgentHangup, h.now());
        let bye = only(h.sent());
        assert_eq!(bye.msg.cseq(), (3, "BYE"));
    }

    #[test]
    fn a_cancel_before_the_answer_gets_200_and_the_invite_487() {
        let mut h = with_trunks(33);
        let invite = invite_from_trunk("z9hG4bKin3", "+14155550100");
        h.recv(TRUNK_A, &invite).unwrap();
        h.sent();
        let (id, _) = only(inbound_events(&mut h));
        let parsed = msg::parse(&invite).unwrap();
        let mut cancel = Message::request("CANCEL", parsed.uri().unwrap());
        for n in ["Via", "From", "To", "Call-ID"] {
            cancel.push(n, parsed.header(n).unwrap());
        }
        cancel.push("CSeq", "1 CANCEL");
        h.recv(TRUNK_A, &cancel.to_bytes()).unwrap();
        let sent = h.sent();
        let answers: Vec<(u16, String)> = sent
            .iter()
            .map(|s| (s.msg.code().unwrap(), s.msg.cseq().1.to_string()))
            .collect();
        assert_eq!(answers, [(200, "CANCEL".into()), (487, "INVITE".into())]);
        let Some((_, InboundCallEvent::Call(DialogEvent::Ended(end)))) =
            inbound_events(&mut h).pop()
        else {
            panic!("ended")
        };
        assert_eq!(
            (end.status, end.sip_code),
            (CallStatus::Cancelled, Some(487))
        );
        // Too late now: the edge's answer changes nothing.
        h.ep.answer_inbound_call(id, &media(), None, h.now())
            .unwrap();
        assert!(h.sent().is_empty());
    }

    #[test]
    fn inbound_invites_from_elsewhere_get_403_and_the_edges_refusal_its_code() {
        let mut h = with_trunks(34);
        h.recv(
            "203.0.113.66:5060",
            &invite_from_trunk("z9hG4bKx", "+14155550100"),
        )
        .unwrap();
        let s = only(h.sent());
        assert_eq!(
            (s.msg.code(), s.dest),
            (Some(403), addr("203.0.113.66:5060"))
        );
        assert!(inbound_events(&mut h).is_empty(), "never offered");

        // Not a number: 404 at once.
        h.recv(TRUNK_A, &invite_from_trunk("z9hG4bKy", "frontdesk"))
            .unwrap();
        assert_eq!(codes(&h.sent()), [404]);

        // The edge says the number is nobody's (404) or unreachable (480).
        for (branch, code) in [("z9hG4bKr1", 404), ("z9hG4bKr2", 480), ("z9hG4bKr3", 486)] {
            let invite = invite_from_trunk(branch, "+14155550100");
            h.recv(TRUNK_A, &invite).unwrap();
            h.sent();
            let (id, _) = only(inbound_events(&mut h));
            h.ep.refuse_inbound_call(id, code, h.now());
            let refused = only(h.sent());
            assert_eq!(refused.msg.code(), Some(code));
            // Its ACK stops the retransmissions of the refusal.
            h.recv(TRUNK_A, &in_dialog("ACK", &invite, &refused.msg, branch, 1))
                .unwrap();
            let Some((_, InboundCallEvent::Call(DialogEvent::Ended(end)))) =
                inbound_events(&mut h).pop()
            else {
                panic!("ended")
            };
            assert_eq!(end.sip_code, Some(code));
        }
        // Nobody decides: 480 after DECIDE_WITHIN_MS.
        h.recv(TRUNK_A, &invite_from_trunk("z9hG4bKslow", "+14155550100"))
            .unwrap();
        h.sent();
        inbound_events(&mut h);
        let later = h.advance_to(h.now_ms + crate::sip::uas::DECIDE_WITHIN_MS);
        let answered: Vec<(String, u16)> = later
            .iter()
            .map(|s| (s.msg.call_id().to_string(), s.msg.code().unwrap_or(0)))
            .collect();
        assert_eq!(
            answered,
            [("in-z9hG4bKslow@trunk".to_string(), 480)],
            "the acked refusals are quiet; the undecided call gets 480"
        );
    }

    /// A person's call keeps the caller ringing past DECIDE_WITHIN_MS for
    /// as long as it was asked (their phones ring meanwhile), then 480.
    #[test]
    fn an_inbound_call_kept_ringing_is_refused_only_when_that_time_is_up() {
        let mut h = with_trunks(36);
        h.recv(TRUNK_A, &invite_from_trunk("z9hG4bKkeep", "+14155550100"))
            .unwrap();
        h.sent();
        let (id, _) = only(inbound_events(&mut h));
        let t0 = h.now_ms;
        h.ep.keep_ringing_inbound_call(id, Duration::from_secs(30), h.now());
        let quiet = h.advance_to(t0 + crate::sip::uas::DECIDE_WITHIN_MS + 1_000);
        assert!(
            quiet.iter().all(|s| s.msg.code() != Some(480)),
            "refused while kept ringing"
        );
        let later = h.advance_to(t0 + 30_000);
        assert_eq!(codes(&later), [480]);
    }

    #[test]
    fn an_offer_without_a_common_codec_gets_488() {
        let mut h = with_trunks(35);
        let g729 = OFFER_SDP.replace("RTP/AVP 8 0 101", "RTP/AVP 18").replace(
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n",
            "a=rtpmap:18 G729/8000\r\n",
        );
        let raw = invite_from_trunk_with("z9hG4bKg7", "+14155550100", &g729);
        h.recv(TRUNK_A, &raw).unwrap();
        h.sent();
        let (id, _) = only(inbound_events(&mut h));
        assert!(h
            .ep
            .answer_inbound_call(id, &media(), None, h.now())
            .is_err());
        assert_eq!(codes(&h.sent()), [488]);
    }

    fn text_from_trunk(branch: &str) -> Vec<u8> {
        let mut m = Message::request("MESSAGE", "sip:+14155550100@192.0.2.1:5060");
        m.push("Via", format!("SIP/2.0/UDP {TRUNK_A};branch={branch}"));
        m.push("From", "<sip:+14155550111@198.51.100.1>;tag=tr1");
        m.push("To", "<sip:+14155550100@192.0.2.1>");
        m.push("Call-ID", format!("sms-{branch}@trunk"));
        m.push("CSeq", "7 MESSAGE");
        m.push("Content-Type", "text/plain;charset=UTF-8");
        m.body = b"hi back".to_vec();
        m.to_bytes()
    }

    fn with_trunks(seed: u64) -> Harness {
        let mut config = EndpointConfig::new(addr(LOCAL));
        config.inbound_trunks = vec![Trunk::new(addr(TRUNK_A))];
        Harness::with_config(seed, config)
    }

    #[test]
    fn an_inbound_text_is_answered_only_when_the_edge_has_and_retransmissions_are_absorbed() {
        let mut h = with_trunks(22);
        let req = text_from_trunk("z9hG4bKsms1");
        h.recv(TRUNK_A, &req).unwrap();
        assert!(h.sent().is_empty(), "no answer before the edge's");
        let (id, text) = h.ep.poll_inbound().expect("handed up");
        assert_eq!(
            (
                text.from.as_str(),
                text.to.as_str(),
                text.sip_call_id.as_str()
            ),
            ("+14155550111", "+14155550100", "sms-z9hG4bKsms1@trunk")
        );
        // The trunk retransmits meanwhile: absorbed, not handed up again.
        h.now_ms = 500;
        h.recv(TRUNK_A, &req).unwrap();
        assert!(h.sent().is_empty() && h.ep.poll_inbound().is_none());
        h.ep.answer_inbound(id, 200, h.now());
        let ok = only(h.sent());
        assert_eq!(
            (ok.dest, ok.msg.code(), ok.msg.cseq()),
            (addr(TRUNK_A), Some(200), (7, "MESSAGE"))
        );
        assert!(ok.msg.to_tag().is_some());
        // A retransmission after the answer gets the same answer.
        h.now_ms = 1_500;
        h.recv(TRUNK_A, &req).unwrap();
        assert_eq!(only(h.sent()).bytes, ok.bytes);
        assert!(h.ep.poll_inbound().is_none());
        h.advance_to(40_000);
        assert!(h.ep.is_idle(), "forgotten after Timer J");
    }

    #[test]
    fn an_inbound_text_the_edge_does_not_answer_in_time_gets_480() {
        let mut h = with_trunks(23);
        h.recv(TRUNK_A, &text_from_trunk("z9hG4bKsms2")).unwrap();
        let (id, _) = h.ep.poll_inbound().unwrap();
        let out = h.advance_to(text_message::ANSWER_WITHIN_MS);
        assert_eq!(only(out).msg.code(), Some(480));
        // A late answer changes nothing.
        h.ep.answer_inbound(id, 200, h.now());
        assert!(h.sent().is_empty());
    }

    #[test]
    fn texts_from_elsewhere_get_403_and_bad_ones_their_code() {
        let mut h = with_trunks(24);
        h.recv("203.0.113.9:5060", &text_from_trunk("z9hG4bKsms3"))
            .unwrap();
        assert_eq!(only(h.sent()).msg.code(), Some(403));
        // From the trunk's IP but another port: not the trunk.
        h.recv("198.51.100.1:5099", &text_from_trunk("z9hG4bKsms4"))
            .unwrap();
        assert_eq!(only(h.sent()).msg.code(), Some(403));
        assert!(h.ep.poll_inbound().is_none());
        let mut m = msg::parse(&text_from_trunk("z9hG4bKsms5")).unwrap();
        m.headers.retain(|(n, _)| n != "Content-Type");
        m.push("Content-Type", "application/vnd.gsma.rcs-ft-http+xml");
        h.recv(TRUNK_A, &m.to_bytes()).unwrap();
        let r = only(h.sent()).msg;
        assert_eq!(
            (r.code(), r.header("Accept")),
            (Some(415), Some(text_message::ACCEPT))
        );
        // Without any trunk configured, nobody's texts are taken.
        let mut h = Harness::new(25);
        h.recv(TRUNK_A, &text_from_trunk("z9hG4bKsms6")).unwrap();
        assert_eq!(only(h.sent()).msg.code(), Some(403));
    }

    #[test]
    fn a_text_asking_for_delivery_reports_goes_in_cpim() {
        let mut h = Harness::new(26);
        let mut spec = text_spec(&[TRUNK_A]);
        spec.imdn = Some(text_message::Imdn {
            message_id: "msg_9".into(),
            date_time: "2026-12-04T10:00:00.000Z".into(),
        });
        h.ep.send_message(spec, h.now()).unwrap();
        let m = only(h.sent()).msg;
        assert_eq!(m.content_type(), Some("message/cpim"));
        let body = String::from_utf8(m.body.clone()).unwrap();
        assert!(body.contains("imdn.Message-ID: msg_9\r\n"), "{body}");
        assert!(body.ends_with("\r\n\r\nhello"), "{body}");
    }

    #[test]
    fn a_text_whose_every_trunk_rests_ends_no_trunk_unsent() {
        let mut h = Harness::new(27);
        h.ep.send_message(text_spec(&[TRUNK_A]), h.now()).unwrap();
        let m = only(h.sent()).msg;
        let rest = TRUNK.reply_with(&m, 503, &[("Retry-After", "120")]);
        h.recv(TRUNK.addr, &rest).unwrap();
        assert_eq!(text_ends(&mut h)[0].1.sip_code, Some(503));
        h.now_ms = 1_000;
        let id = h.ep.send_message(text_spec(&[TRUNK_A]), h.now()).unwrap();
        assert!(h.sent().is_empty(), "nothing to a resting trunk");
        let ends = text_ends(&mut h);
        assert_eq!(
            (ends[0].0, ends[0].1.sip_code, ends[0].1.reason),
            (id, None, Some(text_message::reasons::NO_TRUNK))
        );
        assert_eq!(
            h.ep.send_message(text_spec(&[]), h.now()),
            Err(StartError::NoTrunk)
        );
    }
}
