//! Sidecar configuration: a TOML file, then environment overrides.
//!
//! ```toml
//! edge_url   = "https://edge.example.com"   # https://, https+h3://, or http:// to loopback
//! sidecar_id = "sc-eu-1"                    # [A-Za-z0-9._-], 1..=64
//! region     = "eu"
//! secret     = "..."                        # shared with the edge; better via env
//! capacity   = 8                            # concurrent calls, 1..=10000
//! transport  = "h3"                         # "h3" | "http1"; optional, see below
//! ca_cert    = "/etc/voxline/edge-ca.pem"   # optional: trust only this CA (PEM)
//! lease_wait_ms = 25000                     # optional: long-poll wait until the edge says otherwise
//!
//! [engine]
//! # Engine hosts a call's or agent's `engine_base_url` may reach although
//! # they are not public addresses: exact host names, IPs or CIDR networks.
//! allowed_hosts = ["engine.internal", "10.20.0.0/16"]
//!
//! [metrics]
//! # Prometheus metrics on GET /metrics and GET /healthz; off when absent.
//! # A bare port ("9464") means loopback.
//! listen = "127.0.0.1:9464"
//! ```
//!
//! Every key can be overridden by an environment variable (an empty value counts
//! as unset): `VOXLINE_EDGE_URL`, `VOXLINE_SIDECAR_ID`, `VOXLINE_REGION`,
//! `VOXLINE_SIDECAR_SECRET`, `VOXLINE_CAPACITY`, `VOXLINE_TRANSPORT`,
//! `VOXLINE_CA_CERT`, `VOXLINE_LEASE_WAIT_MS`, `VOXLINE_METRICS_LISTEN`. The file is optional when the
//! environment supplies everything required.
//!
//! ## Choosing the transport
//! - `transport = "h3"`: HTTP/3 over QUIC. Needs TLS: the URL must be `https://`
//!   (or `https+h3://`).
//! - `transport = "http1"`: HTTP/1.1 keep-alive over TCP, `http://` or `https://`.
//! - no `transport`: the URL scheme decides: `https+h3://` means h3; `http://`
//!   and `https://` mean http1 (the safe default: every edge, `wrangler dev`
//!   included, speaks HTTP/1.1; HTTP/3 is opted into).
//!
//! Unknown keys are an error (a typo must not silently fall back to a default).
//! TLS roots: `ca_cert` when set (only that CA is trusted), else the system store.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use voxline_shared::sidecar_link::{is_valid_id, MAX_LEASE_WAIT_MS};

use crate::engine::guard::AllowedHosts;
use crate::media::srtp::SrtpPolicy;
use crate::media::Codec;

pub const MAX_CAPACITY: u32 = 10_000;

/// The transport to the edge (HTTP/1.1 or HTTP/3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http1,
    H3,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http1 => "http1",
            Transport::H3 => "h3",
        }
    }
}

/// A parsed edge base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeUrl {
    /// `true` for `https://` and `https+h3://`.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (`""` for none).
    pub base_path: String,
    /// `true` when the scheme was `https+h3://`.
    pub h3_scheme: bool,
}

impl EdgeUrl {
    pub fn parse(s: &str) -> Result<EdgeUrl, String> {
        let (rest, tls, h3_scheme) = if let Some(r) = s.strip_prefix("https+h3://") {
            (r, true, true)
        } else if let Some(r) = s.strip_prefix("https://") {
            (r, true, false)
        } else if let Some(r) = s.strip_prefix("http://") {
            (r, false, false)
        } else {
            return Err(format!(
                "`{s}`: the scheme must be http://, https:// or https+h3://"
            ));
        };
        let uri: http::Uri = format!("{}://{rest}", if tls { "https" } else { "http" })
            .parse()
            .map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
        if uri.query().is_some() {
            return Err(format!("`{s}`: no query string allowed"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{s}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{s}`: no user info allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("`{s}` has no host"));
        }
        // The link carries signed requests, offers with engine keys and
        // recordings: in clear only to an edge on this machine (development).
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !tls && !loopback {
            return Err(format!("`{s}`: plain http:// is only for an edge on this machine (loopback); use https:// or https+h3://"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(EdgeUrl {
            tls,
            host,
            port,
            base_path,
            h3_scheme,
        })
    }

    /// `host:port`, bracketing IPv6 literals, for the `Host`/`:authority`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The absolute URL of an API path (scheme `http` or `https`).
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{}{}",
            if self.tls { "https" } else { "http" },
            self.authority(),
            self.base_path,
            path
        )
    }
}

/// A secret (the edge link's, a trunk password); never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub edge: EdgeUrl,
    pub sidecar_id: String,
    pub region: String,
    pub secret: Secret,
    pub capacity: u32,
    pub transport: Transport,
    pub ca_cert: Option<PathBuf>,
    pub lease_wait_ms: Option<u32>,
    /// SIP trunks and media settings; empty trunks = no real dialing.
    pub telephony: Telephony,
    /// `[engine] allowed_hosts`: the operator's exceptions to the guard on
    /// tenants' engine URLs (see [`crate::engine::guard`]).
    pub engine_allowed_hosts: AllowedHosts,
    /// `[metrics] listen`: where Prometheus metrics and `/healthz` are
    /// served (see [`crate::metrics`]); `None`: not served (the default).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `[engine]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

/// [`Trunk::identity_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityHeaderKind {
    #[default]
    None,
    Pai,
    Rpid,
}

/// SIP transport to a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    Udp,
    /// One TCP connection per trunk, reused by every call.
    Tcp,
    /// TLS over TCP (SIP over TLS, RFC 3261 26.2), verified against
    /// `ca_cert` or the system roots.
    Tls,
}

impl From<SipTransport> for crate::sip::transport::Transport {
    fn from(t: SipTransport) -> Self {
        match t {
            SipTransport::Udp => crate::sip::transport::Transport::Udp,
            SipTransport::Tcp => crate::sip::transport::Transport::Tcp,
            SipTransport::Tls => crate::sip::transport::Transport::Tls,
        }
    }
}

impl SipTransport {
    /// Whether SIP messages (and so SDES keys in their SDP) are encrypted
    /// on the way to the trunk.
    pub fn protects_sdp(self) -> bool {
        match self {
            SipTransport::Udp | SipTransport::Tcp => false,
            SipTransport::Tls => true,
        }
    }
}

fn default_codecs() -> Vec<Codec> {
    vec![Codec::Pcmu, Codec::Pcma, Codec::Opus]
}

/// One SIP trunk of this sidecar's region, tried in `priority` order (lowest first).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    /// An IP address, or a host name resolved as RFC 3263 says (see `port`).
    pub host: String,
    /// The trunk's SIP port. Set: `host`'s A/AAAA records on this port. Unset
    /// with a host name: NAPTR, then SRV (`_sip._udp.<host>`), then A/AAAA on
    /// the port SRV names (without SRV: 5060, 5061 for `tls`); every address found is tried in
    /// turn like a trunk of its own ([`crate::sip::dns`]). Unset with an IP: 5060 (5061 for `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default = "default_sip_transport")]
    pub transport: SipTransport,
    /// `tls` only: a PEM file of the CA(s) the trunk's certificate must
    /// chain to, instead of the system roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// `tls` only: the name the trunk's certificate must carry (and the
    /// SNI sent), when it is not `host` (e.g. `host` is an IP address).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Digest credentials, when the trunk challenges (401/407).
    #[serde(default)]
    pub username: Option<String>,
    /// Better set as `$VOXLINE_TRUNK_<NAME>_PASSWORD` (name upper-cased, `-`/`.` as `_`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// The Digest realm the trunk authenticates in. When set, a challenge for
    /// any other realm is refused (the call fails, `auth_realm_mismatch`)
    /// rather than answered with these credentials. Default: any realm.
    #[serde(default)]
    pub realm: Option<String>,
    /// Accept in-dialog requests (the callee's BYE, re-INVITE, ...) only
    /// from the trunk's address (IP and port) or the dialog's next hop (its
    /// first Record-Route, else the 2xx's Contact); others get 403 and leave
    /// the call alone, so a forged BYE with the right Call-ID and tags cannot
    /// end it. Texts (out-of-dialog MESSAGE) are taken by the same rule: from
    /// the trunk's address only while on, from anywhere while off. Default:
    /// on when `host` is an IP address (a fixed address),
    /// off for a host name (it may send from addresses we never resolved).
    #[serde(default)]
    pub in_dialog_from_trunk_only: Option<bool>,
    /// Send `Require: 100rel`: the trunk must send its provisional responses
    /// reliably (RFC 3262; we PRACK them). `Supported: 100rel` is always
    /// sent, so a trunk may use them anyway. Default: off.
    #[serde(default)]
    pub require_100rel: bool,
    /// The trunk takes blind transfers by REFER (RFC 3515): the `transfer`
    /// tool sends a REFER with `Refer-To` and ends our side once the trunk's
    /// NOTIFY reports the target answered. Off (default): the sidecar dials
    /// the target itself through the trunks and bridges the two legs.
    #[serde(default)]
    pub refer: bool,
    /// Session timer (RFC 4028): the `Session-Expires` our INVITE asks for,
    /// seconds; `0` sends none. Default 1800.
    #[serde(default = "default_session_expires")]
    pub session_expires_seconds: u32,
    /// `Min-SE`: the shortest session interval accepted (90 to
    /// `session_expires_seconds`). Default 90 (the RFC's floor).
    #[serde(default = "default_min_se")]
    pub min_se_seconds: u32,
    /// SDES-SRTP (RFC 4568 keys in the SDP, RFC 3711 media): `"off"`
    /// (default), `"optional"` (offered best effort in `RTP/AVP`; plain RTP
    /// when the answer has no crypto) or `"mandatory"` (`RTP/SAVP`; a call
    /// whose answer has no acceptable crypto fails). The keys travel in the
    /// SDP: pair it with a TLS transport (a warning at startup otherwise).
    #[serde(default)]
    pub srtp: SrtpPolicy,
    /// Caller ID presented in From (E.164).
    pub from_number: String,
    /// The header asserting the caller's identity beside From: `"pai"`
    /// (P-Asserted-Identity, RFC 3325), `"rpid"` (Remote-Party-ID) or
    /// `"none"`. Trunks that authenticate us by IP often show caller ID
    /// only from one of them. Default `"none"`.
    #[serde(default)]
    pub identity_header: IdentityHeaderKind,
    #[serde(default)]
    pub priority: u32,
    /// Register with the trunk (RFC 3261 10): our Contact is bound under
    /// `sip:<username>@<host>` and calls go out through that binding (its
    /// Contact, From in `host`'s domain, the same credentials); while it is
    /// not bound, the trunk is skipped (no other trunk: the call fails,
    /// `trunk_not_registered`). Needs `username` and a password. Default: off.
    #[serde(default)]
    pub register: bool,
    /// The Expires asked for, seconds (60..=86400; the registrar may grant
    /// less, or ask for more with 423). Refreshed at max(half, expiry - 60 s)
    /// of what it grants. Default 3600.
    #[serde(default = "default_register_expires")]
    pub register_expires_seconds: u32,
    /// `host[:port]` of the registrar (REGISTER's destination and
    /// Request-URI). Default: the trunk's `host` and `port`.
    #[serde(default)]
    pub registrar: Option<String>,
    /// The Digest username when it differs from `username` (the
    /// address-of-record's user). Default: `username`.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// `host[:port]` of an outbound proxy (RFC 3261 8.1.2): every request
    /// for this trunk (INVITE, REGISTER, MESSAGE, in-dialog requests while
    /// the dialog has no Record-Route) is sent to the proxy's address with
    /// `Route: <sip:proxy;lr>`; the Request-URI stays the trunk's. `host`
    /// then need not resolve here. Default: none (straight to `host`).
    #[serde(default)]
    pub outbound_proxy: Option<String>,
}

impl Trunk {
    /// SRTP is on while the SIP transport carries its SDES keys in clear.
    pub fn srtp_keys_exposed(&self) -> bool {
        self.srtp.is_on() && !self.transport.protects_sdp()
    }

    /// [`Trunk::in_dialog_from_trunk_only`] with its default applied.
    pub fn in_dialog_from_trunk_only(&self) -> bool {
        self.in_dialog_from_trunk_only
            .unwrap_or_else(|| self.host.parse::<std::net::IpAddr>().is_ok())
    }
}

fn default_register_expires() -> u32 {
    3_600
}

/// `host[:port]` (an IPv6 address in brackets when a port follows) as the
/// host and the port (default 5060).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not host[:port]");
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || ";/@<>".contains(c)) {
        return Err(bad());
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((s.to_string(), 5060));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        ip.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (ip.to_string(), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        None => 5060,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

fn default_session_expires() -> u32 {
    1_800
}

fn default_min_se() -> u32 {
    90
}

fn default_sip_transport() -> SipTransport {
    SipTransport::Udp
}

/// `[telephony]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telephony {
    /// Address SIP and RTP sockets bind to and advertise (Via, Contact, SDP).
    #[serde(default = "default_bind_ip")]
    pub bind_ip: std::net::IpAddr,
    /// Behind NAT: the public address trunks reach this sidecar on, written
    /// in Via, Contact, From and the SDP (c=/o=) instead of `bind_ip`. The
    /// NAT must map the SIP port and the RTP range to the same ports (1:1
    /// or static port forwarding). Our Via asks for `rport` (RFC 3581) and
    /// RTP is symmetric, so answers and media come back through the mapping.
    #[serde(default)]
    pub public_ip: Option<std::net::IpAddr>,
    /// The public SIP port, when the NAT maps `sip_port` to another one.
    /// Default: the bound port.
    #[serde(default)]
    pub public_sip_port: Option<u16>,
    /// Local SIP port; 0 picks a free one.
    #[serde(default)]
    pub sip_port: u16,
    /// RTP ports are allocated from this inclusive range (even ports, RTCP on +1).
    #[serde(default = "default_rtp_min")]
    pub rtp_port_min: u16,
    #[serde(default = "default_rtp_max")]
    pub rtp_port_max: u16,
    /// Unanswered this long after the INVITE: CANCEL, `no_answer`.
    /// (`ring_timeout_secs`, its name before 2026-12, is still read.)
    #[serde(default = "default_ring_timeout", alias = "ring_timeout_secs")]
    pub ring_timeout_seconds: u32,
    /// A trunk that has not answered the INVITE at all within this is skipped.
    #[serde(default = "default_failover_ms")]
    pub failover_timeout_ms: u32,
    /// Answering-machine detection (an offer's `amd`) decides within this
    /// long after the answer, else says `unknown` (1000-10000; default 4000).
    #[serde(default = "default_amd_decision_ms")]
    pub amd_decision_ms: u32,
    /// Where per-call stereo WAV recordings go when an offer asks for one.
    #[serde(default)]
    pub recordings_dir: Option<PathBuf>,
    /// The codecs offered, most preferred first (`"pcmu"`, `"pcma"`, `"opus"`).
    /// Most callees (baresip among them) keep the offer's order, so the first
    /// one they support is used. Default: `["pcmu", "pcma", "opus"]`.
    #[serde(default = "default_codecs")]
    pub codecs: Vec<Codec>,
    /// Texts (SMS) go out wrapped in CPIM (`message/cpim`) with IMDN header
    /// fields asking for delivery notifications (RFC 5438), for trunks that
    /// report delivery that way. Default off: a bare `text/plain` MESSAGE
    /// (RFC 3428), which every trunk that takes texts understands.
    #[serde(default)]
    pub text_imdn: bool,
    #[serde(default)]
    pub trunks: Vec<Trunk>,
    /// TCP/TLS trunks: a double-CRLF keep-alive ping (RFC 5626 4.4.1) on
    /// a connection nothing was sent on for this long; 0: none. Default 30.
    #[serde(default = "default_sip_keepalive")]
    pub sip_keepalive_seconds: u32,
    /// 301/302 redirects followed per call at most (0 to 10; 0: none).
    /// Only to the trunks' hosts and `redirect_allowed_addresses`. Default 3.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// `IP:port`s, beyond the trunks, a 3xx may send a call to (dialled
    /// without credentials). Default: none.
    #[serde(default)]
    pub redirect_allowed_addresses: Vec<std::net::SocketAddr>,
    /// Name servers that resolve trunk host names (`"IP"` or `"IP:port"`,
    /// port 53 by default), asked over UDP (TCP for truncated answers).
    /// Default (empty): the system's, from /etc/resolv.conf.
    #[serde(default, deserialize_with = "dns_servers")]
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// `[registrar]` (a section of its own in the file): users' phones
    /// register with this sidecar's SIP endpoint (issue 16).
    #[serde(skip)]
    pub registrar: Registrar,
}

/// `[registrar]` in the config file: the registrar for users' SIP phones
/// (issue 16). Phones REGISTER as `<user pk>.<tenant id>` in realm
/// `voxline` with the password the edge's admin API set; the edge checks
/// their Digest answers and holds the bindings. Off by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registrar {
    #[serde(default)]
    pub enabled: bool,
    /// Shorter expiries are refused with 423 and `Min-Expires`. Default 60.
    #[serde(default = "default_min_expires")]
    pub min_expires_seconds: u32,
    /// Longer expiries are shortened to this. Default 3600.
    #[serde(default = "default_max_expires")]
    pub max_expires_seconds: u32,
    /// A Contact that asks for no expiry gets this. Default 600.
    #[serde(default = "default_default_expires")]
    pub default_expires_seconds: u32,
    /// Phones (Contacts) one user may register here, 1 to 10. Default 5.
    #[serde(default = "default_bindings_per_user")]
    pub max_bindings_per_user: u32,
    /// Phones registered here in all. Default 10000.
    #[serde(default = "default_max_bindings")]
    pub max_bindings: u32,
    /// Challenge with SHA-256 (first) as well as MD5 (RFC 8760). Off by
    /// default: phones that know only MD5 may refuse the whole challenge.
    #[serde(default)]
    pub digest_sha256: bool,
}

fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3_600
}
fn default_default_expires() -> u32 {
    600
}
fn default_bindings_per_user() -> u32 {
    5
}
fn default_max_bindings() -> u32 {
    10_000
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar {
            enabled: false,
            min_expires_seconds: default_min_expires(),
            max_expires_seconds: default_max_expires(),
            default_expires_seconds: default_default_expires(),
            max_bindings_per_user: default_bindings_per_user(),
            max_bindings: default_max_bindings(),
            digest_sha256: false,
        }
    }
}

impl Registrar {
    /// Every problem of the section, named.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.min_expires_seconds == 0
            || self.min_expires_seconds > self.default_expires_seconds
            || self.default_expires_seconds > self.max_expires_seconds
            || self.max_expires_seconds > 86_400
        {
            p.push(format!(
                "expiries must be 1 <= min_expires_seconds ({}) <= default_expires_seconds ({}) <= max_expires_seconds ({}) <= 86400",
                self.min_expires_seconds, self.default_expires_seconds, self.max_expires_seconds
            ));
        }
        let per_user_max = voxline_shared::sidecar_link::MAX_PHONE_CONTACTS as u32;
        if !(1..=per_user_max).contains(&self.max_bindings_per_user) {
            p.push(format!(
                "max_bindings_per_user {} is not in 1..={per_user_max}",
                self.max_bindings_per_user
            ));
        }
        if !(1..=1_000_000).contains(&self.max_bindings) {
            p.push(format!(
                "max_bindings {} is not in 1..=1000000",
                self.max_bindings
            ));
        }
        p
    }

    /// The SIP endpoint's registrar settings; `None` when off.
    pub fn endpoint_config(&self) -> Option<crate::sip::registrar::RegistrarConfig> {
        self.enabled
            .then_some(crate::sip::registrar::RegistrarConfig {
                min_expires_seconds: self.min_expires_seconds,
                max_expires_seconds: self.max_expires_seconds,
                default_expires_seconds: self.default_expires_seconds,
                max_bindings_per_user: self.max_bindings_per_user as usize,
                max_bindings: self.max_bindings as usize,
                digest_sha256: self.digest_sha256,
            })
    }
}

/// `dns_servers`: `"IP"` (port 53) or `"IP:port"` (`"[v6]:port"`).
fn dns_servers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<std::net::SocketAddr>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            s.parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    s.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "dns_servers: `{s}` is not an IP address or IP:port"
                    ))
                })
        })
        .collect()
}

fn default_max_redirects() -> u32 {
    3
}

fn default_sip_keepalive() -> u32 {
    30
}

impl Default for Telephony {
    fn default() -> Self {
        Telephony {
            bind_ip: default_bind_ip(),
            public_ip: None,
            public_sip_port: None,
            sip_port: 0,
            rtp_port_min: default_rtp_min(),
            rtp_port_max: default_rtp_max(),
            ring_timeout_seconds: default_ring_timeout(),
            failover_timeout_ms: default_failover_ms(),
            amd_decision_ms: default_amd_decision_ms(),
            recordings_dir: None,
            codecs: default_codecs(),
            text_imdn: false,
            trunks: Vec::new(),
            sip_keepalive_seconds: default_sip_keepalive(),
            max_redirects: default_max_redirects(),
            redirect_allowed_addresses: Vec::new(),
            dns_servers: Vec::new(),
            registrar: Registrar::default(),
        }
    }
}

fn default_bind_ip() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}
fn default_rtp_min() -> u16 {
    20_000
}
fn default_rtp_max() -> u16 {
    20_999
}
fn default_ring_timeout() -> u32 {
    30
}
fn default_amd_decision_ms() -> u32 {
    4_000
}

fn default_failover_ms() -> u32 {
    2_000
}

impl Telephony {
    /// Checks ranges and trunks; fills trunk passwords from the environment.
    /// Every problem found is named (not only the first).
    fn finish(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<Telephony, Vec<String>> {
        let mut problems = Vec::new();
        if self.rtp_port_min == 0 || self.rtp_port_min > self.rtp_port_max {
            problems.push(format!(
                "rtp ports {}..={} are not a range",
                self.rtp_port_min, self.rtp_port_max
            ));
        }
        if self.ring_timeout_seconds == 0 || self.ring_timeout_seconds > 300 {
            problems.push(format!(
                "ring_timeout_seconds {} is not in 1..=300",
                self.ring_timeout_seconds
            ));
        }
        if !(1_000..=10_000).contains(&self.amd_decision_ms) {
            problems.push(format!(
                "amd_decision_ms {} is not in 1000..=10000",
                self.amd_decision_ms
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if self.codecs.is_empty() || !self.codecs.iter().all(|c| seen.insert(*c)) {
            problems.push(format!(
                "codecs {:?} must list pcmu, pcma or opus, each at most once",
                self.codecs
            ));
        }
        if self.sip_keepalive_seconds > 3_600 {
            problems.push(format!(
                "sip_keepalive_seconds {} is not in 0..=3600",
                self.sip_keepalive_seconds
            ));
        }
        if self.max_redirects > 10 {
            problems.push(format!(
                "max_redirects {} is not in 0..=10",
                self.max_redirects
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &mut self.trunks {
            if !is_valid_id(&t.name) || !names.insert(t.name.clone()) {
                problems.push(format!("trunk name `{}` is invalid or repeated", t.name));
            }
            if t.host.trim().is_empty() {
                problems.push(format!("trunk `{}` has no host", t.name));
            }
            // 0 reads as unset: the transport's port (or DNS SRV's).
            if t.port == Some(0) {
                t.port = None;
            }
            if t.transport != SipTransport::Tls
                && (t.ca_cert.is_some() || t.tls_server_name.is_some())
            {
                problems.push(format!(
                    "trunk `{}`: ca_cert and tls_server_name need transport = \"tls\"",
                    t.name
                ));
            }
            if t.tls_server_name
                .as_deref()
                .is_some_and(|n| rustls::pki_types::ServerName::try_from(n).is_err())
            {
                problems.push(format!(
                    "trunk `{}`: tls_server_name is not a DNS name or IP address",
                    t.name
                ));
            }
            let digits = t.from_number.strip_prefix('+').unwrap_or("");
            if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!(
                    "trunk `{}`: from_number `{}` is not E.164",
                    t.name, t.from_number
                ));
            }
            let var = format!(
                "VOXLINE_TRUNK_{}_PASSWORD",
                t.name.to_ascii_uppercase().replace(['-', '.'], "_")
            );
            if let Some(p) = env(&var) {
                t.password = Some(Secret(p));
            }
            if t.password.is_some() && t.username.is_none() {
                problems.push(format!("trunk `{}` has a password but no username", t.name));
            }
            if t.auth_username.is_some() && t.username.is_none() {
                problems.push(format!(
                    "trunk `{}` has an auth_username but no username",
                    t.name
                ));
            }
            if t.register && (t.username.is_none() || t.password.is_none()) {
                problems.push(format!(
                    "trunk `{}`: register = true needs username and a password (${var})",
                    t.name
                ));
            }
            if !(60..=86_400).contains(&t.register_expires_seconds) {
                problems.push(format!(
                    "trunk `{}`: register_expires_seconds {} is not in 60..=86400",
                    t.name, t.register_expires_seconds
                ));
            }
            for (key, v) in [
                ("registrar", &t.registrar),
                ("outbound_proxy", &t.outbound_proxy),
            ] {
                if let Some(Err(e)) = v.as_deref().map(parse_host_port) {
                    problems.push(format!("trunk `{}`: {key}: {e}", t.name));
                }
            }
            if t.registrar.is_some() && !t.register {
                problems.push(format!(
                    "trunk `{}` has a registrar but register is off",
                    t.name
                ));
            }
            let se = t.session_expires_seconds;
            if !(90..=86_400).contains(&t.min_se_seconds)
                || se != 0 && !(t.min_se_seconds..=86_400).contains(&se)
            {
                problems.push(format!(
                    "trunk `{}`: min_se_seconds {} must be in 90..=86400 and session_expires_seconds {se} 0 (off) or in min_se_seconds..=86400",
                    t.name, t.min_se_seconds
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        self.trunks.sort_by_key(|t| t.priority);
        Ok(self)
    }
}

/// `[metrics]` in the config file: the Prometheus endpoint (off by default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    #[serde(default)]
    listen: Option<String>,
}

/// The default metrics port (Prometheus' registry of exporter ports has
/// 9464 for OpenTelemetry-style exporters; nothing else of ours uses it).
pub const DEFAULT_METRICS_PORT: u16 = 9464;

/// Parses `[metrics] listen`: `IP:port`, or a bare port (`"9464"`, `":9464"`)
/// meaning loopback, since metrics and `/healthz` are for this host's
/// scraper unless the operator says otherwise.
pub fn parse_metrics_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("`{s}` is not IP:port (e.g. \"127.0.0.1:{DEFAULT_METRICS_PORT}\") or a port")
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("config file {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("`{key}` is required: set it in the config file or in ${env}")]
    Missing {
        key: &'static str,
        env: &'static str,
    },
    #[error("`{key}` (from {source_}) is invalid: {msg}")]
    Invalid {
        key: &'static str,
        source_: String,
        msg: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    edge_url: Option<String>,
    sidecar_id: Option<String>,
    region: Option<String>,
    secret: Option<String>,
    capacity: Option<u32>,
    transport: Option<String>,
    ca_cert: Option<PathBuf>,
    lease_wait_ms: Option<u32>,
    telephony: Option<Telephony>,
    engine: Option<EngineFile>,
    metrics: Option<MetricsFile>,
    registrar: Option<Registrar>,
}

/// A value and where it came from, for error messages.
struct Sourced<T> {
    value: T,
    from: String,
}

impl Config {
    /// Reads `path` (if any), then applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, |k| std::env::var(k).ok())
    }

    /// Like [`load`](Self::load) with an injectable environment (for tests):
    /// the first problem found.
    pub fn load_with(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::check_with(path, env).map_err(|mut all| all.swap_remove(0))
    }

    /// [`load`](Self::load) naming every problem at once (`--check-config`).
    pub fn check(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        Config::check_with(path, |k| std::env::var(k).ok())
    }

    /// [`check`](Self::check) with an injectable environment. Never empty
    /// on `Err`. A file that cannot be read or parsed is one problem (no key
    /// can be checked then); otherwise every key is checked.
    pub fn check_with(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let (file, file_name) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    vec![ConfigError::Read {
                        path: p.to_path_buf(),
                        msg: e.to_string(),
                    }]
                })?;
                let f: FileConfig = toml::from_str(&text).map_err(|e| {
                    vec![ConfigError::Parse {
                        path: p.to_path_buf(),
                        msg: e.to_string().trim().to_string(),
                    }]
                })?;
                (f, p.display().to_string())
            }
            None => (FileConfig::default(), String::new()),
        };
        let mut problems: Vec<ConfigError> = Vec::new();
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let pick = |key: &'static str,
                    var: &'static str,
                    file_val: Option<String>|
         -> Option<Sourced<String>> {
            if let Some(v) = env(var) {
                return Some(Sourced {
                    value: v,
                    from: format!("${var}"),
                });
            }
            file_val.map(|v| Sourced {
                value: v,
                from: format!("{file_name}: {key}"),
            })
        };
        let required = |problems: &mut Vec<ConfigError>,
                        key: &'static str,
                        var: &'static str,
                        v: Option<Sourced<String>>|
         -> Option<Sourced<String>> {
            if v.is_none() {
                problems.push(ConfigError::Missing { key, env: var });
            }
            v
        };
        let invalid = |key: &'static str, s: &Sourced<String>, msg: String| ConfigError::Invalid {
            key,
            source_: s.from.clone(),
            msg,
        };

        let url = required(
            &mut problems,
            "edge_url",
            "VOXLINE_EDGE_URL",
            pick("edge_url", "VOXLINE_EDGE_URL", file.edge_url),
        );
        let edge = url.and_then(|url| {
            EdgeUrl::parse(url.value.trim())
                .map_err(|m| problems.push(invalid("edge_url", &url, m)))
                .ok()
        });

        let id = required(
            &mut problems,
            "sidecar_id",
            "VOXLINE_SIDECAR_ID",
            pick("sidecar_id", "VOXLINE_SIDECAR_ID", file.sidecar_id),
        );
        if let Some(id) = id.as_ref().filter(|id| !is_valid_id(&id.value)) {
            problems.push(invalid(
                "sidecar_id",
                id,
                "use 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit".into(),
            ));
        }
        let region = required(
            &mut problems,
            "region",
            "VOXLINE_REGION",
            pick("region", "VOXLINE_REGION", file.region),
        );
        if let Some(r) = region.as_ref().filter(|r| !is_valid_id(&r.value)) {
            problems.push(invalid(
                "region",
                r,
                "use 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit".into(),
            ));
        }
        let secret = required(
            &mut problems,
            "secret",
            "VOXLINE_SIDECAR_SECRET",
            pick("secret", "VOXLINE_SIDECAR_SECRET", file.secret),
        );
        if let Some(s) = secret.as_ref().filter(|s| s.value.trim() != s.value) {
            problems.push(invalid(
                "secret",
                s,
                "has leading or trailing whitespace".into(),
            ));
        }

        let capacity = match env("VOXLINE_CAPACITY") {
            Some(v) => {
                let s = Sourced {
                    value: v,
                    from: "$VOXLINE_CAPACITY".into(),
                };
                s.value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| {
                        problems.push(invalid(
                            "capacity",
                            &s,
                            format!("`{}` is not a whole number", s.value),
                        ))
                    })
                    .ok()
            }
            None => {
                if file.capacity.is_none() {
                    problems.push(ConfigError::Missing {
                        key: "capacity",
                        env: "VOXLINE_CAPACITY",
                    });
                }
                file.capacity
            }
        };
        if let Some(capacity) = capacity.filter(|c| *c == 0 || *c > MAX_CAPACITY) {
            let s = Sourced {
                value: capacity.to_string(),
                from: "capacity".into(),
            };
            problems.push(invalid(
                "capacity",
                &s,
                format!("{capacity} is not in 1..={MAX_CAPACITY}"),
            ));
        }

        let lease_wait_ms = match env("VOXLINE_LEASE_WAIT_MS") {
            Some(v) => {
                let s = Sourced {
                    value: v,
                    from: "$VOXLINE_LEASE_WAIT_MS".into(),
                };
                s.value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| {
                        problems.push(invalid("lease_wait_ms", &s, "not a whole number".into()))
                    })
                    .ok()
            }
            None => file.lease_wait_ms,
        };
        if let Some(w) = lease_wait_ms.filter(|w| *w == 0 || *w > MAX_LEASE_WAIT_MS) {
            let s = Sourced {
                value: w.to_string(),
                from: "lease_wait_ms".into(),
            };
            problems.push(invalid(
                "lease_wait_ms",
                &s,
                format!("{w} is not in 1..={MAX_LEASE_WAIT_MS}"),
            ));
        }

        let transport = match pick("transport", "VOXLINE_TRANSPORT", file.transport) {
            Some(t) => {
                let tr = match t.value.trim() {
                    "h3" => Some(Transport::H3),
                    "http1" => Some(Transport::Http1),
                    other => {
                        problems.push(invalid(
                            "transport",
                            &t,
                            format!("`{other}`: use \"h3\" or \"http1\""),
                        ));
                        None
                    }
                };
                match (tr, &edge) {
                    (Some(Transport::H3), Some(edge)) if !edge.tls => {
                        problems.push(invalid(
                            "transport",
                            &t,
                            "h3 needs TLS: the edge_url must be https:// (or https+h3://)".into(),
                        ));
                    }
                    (Some(Transport::Http1), Some(edge)) if edge.h3_scheme => {
                        problems.push(invalid(
                            "transport",
                            &t,
                            "conflicts with the https+h3:// edge_url".into(),
                        ));
                    }
                    _ => {}
                }
                tr
            }
            None if edge.as_ref().is_some_and(|e| e.h3_scheme) => Some(Transport::H3),
            None => Some(Transport::Http1),
        };

        let ca_cert = match env("VOXLINE_CA_CERT") {
            Some(v) => Some(Sourced {
                value: PathBuf::from(v),
                from: "$VOXLINE_CA_CERT".into(),
            }),
            None => file.ca_cert.map(|p| Sourced {
                value: p,
                from: format!("{file_name}: ca_cert"),
            }),
        };
        if let Some(c) = ca_cert.as_ref().filter(|c| !c.value.is_file()) {
            problems.push(ConfigError::Invalid {
                key: "ca_cert",
                source_: c.from.clone(),
                msg: format!("{} is not a readable file", c.value.display()),
            });
        }

        let telephony_source = if file_name.is_empty() {
            "defaults".to_string()
        } else {
            format!("{file_name}: [telephony]")
        };
        let telephony = file
            .telephony
            .unwrap_or_default()
            .finish(&env)
            .map_err(|msgs| {
                problems.extend(msgs.into_iter().map(|msg| ConfigError::Invalid {
                    key: "telephony",
                    source_: telephony_source.clone(),
                    msg,
                }))
            })
            .ok();

        let registrar = file.registrar.unwrap_or_default();
        for msg in registrar.problems() {
            problems.push(ConfigError::Invalid {
                key: "registrar",
                source_: format!("{file_name}: [registrar]"),
                msg,
            });
        }
        let telephony = telephony.map(|mut t| {
            t.registrar = registrar;
            t
        });

        let engine_allowed_hosts =
            AllowedHosts::parse(&file.engine.unwrap_or_default().allowed_hosts)
                .map_err(|msg| {
                    problems.push(ConfigError::Invalid {
                        key: "engine.allowed_hosts",
                        source_: format!("{file_name}: [engine]"),
                        msg,
                    })
                })
                .ok();

        let metrics_listen = match pick(
            "[metrics] listen",
            "VOXLINE_METRICS_LISTEN",
            file.metrics.unwrap_or_default().listen,
        ) {
            Some(l) => parse_metrics_listen(&l.value)
                .map_err(|m| problems.push(invalid("metrics.listen", &l, m)))
                .ok(),
            None => None,
        };

        match (
            edge,
            id,
            region,
            secret,
            capacity,
            transport,
            telephony,
            engine_allowed_hosts,
        ) {
            (
                Some(edge),
                Some(id),
                Some(region),
                Some(secret),
                Some(capacity),
                Some(transport),
                Some(telephony),
                Some(engine_allowed_hosts),
            ) if problems.is_empty() => Ok(Config {
                telephony,
                engine_allowed_hosts,
                edge,
                sidecar_id: id.value,
                region: region.value,
                secret: Secret(secret.value),
                capacity,
                transport,
                ca_cert: ca_cert.map(|c| c.value),
                lease_wait_ms,
                metrics_listen,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A temp file removed on drop.
    struct TempFile(PathBuf);

    impl std::ops::Deref for TempFile {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write(name: &str, text: &str) -> TempFile {
        let p =
            std::env::temp_dir().join(format!("voxline-config-test-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        TempFile(p)
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn engine_allowed_hosts_are_parsed_and_checked() {
        let f = write(
            "engine.toml",
            &format!("{FULL}\n[engine]\nallowed_hosts = [\"fake.internal\", \"127.0.0.1\", \"10.20.0.0/16\"]\n"),
        );
        let c = Config::load_with(Some(&f), env(&[])).unwrap();
        assert_eq!(
            c.engine_allowed_hosts,
            AllowedHosts::parse(&["fake.internal", "127.0.0.1", "10.20.0.0/16"]).unwrap()
        );
        // None configured: no exception.
        let f = write("engine-none.toml", FULL);
        assert!(Config::load_with(Some(&f), env(&[]))
            .unwrap()
            .engine_allowed_hosts
            .is_empty());
        let f = write(
            "engine-bad.toml",
            &format!("{FULL}\n[engine]\nallowed_hosts = [\"10.0.0.0/99\"]\n"),
        );
        let e = Config::load_with(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("engine.allowed_hosts"), "{e}");
        let f = write(
            "engine-typo.toml",
            &format!("{FULL}\n[engine]\nallowed_host = [\"x\"]\n"),
        );
        assert!(Config::load_with(Some(&f), env(&[])).is_err());
    }

    #[test]
    fn registration_and_outbound_proxy_keys_are_read_and_checked() {
        let trunk = |extra: &str| {
            format!(
                "{FULL}\n[[telephony.trunks]]\nname = \"reg\"\nhost = \"sip.carrier.example\"\nfrom_number = \"+15550001111\"\n{extra}"
            )
        };
        let load = |extra: &str, pw: bool| {
            let f = write("register.toml", &trunk(extra));
            let pairs: &[(&str, &str)] = if pw {
                &[("VOXLINE_TRUNK_REG_PASSWORD", "pw")]
            } else {
                &[]
            };
            Config::load_with(Some(&f), env(pairs))
        };
        let c = load(
            "username = \"acct\"\nregister = true\nregistrar = \"reg.carrier.example:5070\"\nauth_username = \"acct-auth\"\noutbound_proxy = \"[2001:db8::1]:5080\"\n",
            true,
        )
        .unwrap();
        let t = &c.telephony.trunks[0];
        assert!(t.register);
        assert_eq!(t.register_expires_seconds, 3_600, "default");
        assert_eq!(t.registrar.as_deref(), Some("reg.carrier.example:5070"));
        assert_eq!(t.auth_username.as_deref(), Some("acct-auth"));
        assert_eq!(t.outbound_proxy.as_deref(), Some("[2001:db8::1]:5080"));
        // Off by default.
        let c = load("", false).unwrap();
        let t = &c.telephony.trunks[0];
        assert!(!t.register && t.outbound_proxy.is_none() && t.registrar.is_none());
        for (extra, pw, words) in [
            ("register = true\n", false, "needs username"),
            (
                "username = \"a\"\nregister = true\n",
                false,
                "needs username",
            ),
            (
                "username = \"a\"\nregister = true\nregister_expires_seconds = 10\n",
                true,
                "register_expires_seconds",
            ),
            (
                "outbound_proxy = \"sip:proxy;lr\"\n",
                false,
                "outbound_proxy",
            ),
            ("outbound_proxy = \"proxy:0\"\n", false, "outbound_proxy"),
            (
                "username = \"a\"\nregistrar = \"r\"\n",
                true,
                "register is off",
            ),
            ("auth_username = \"b\"\n", false, "no username"),
        ] {
            let e = load(extra, pw).unwrap_err();
            assert!(e.to_string().contains(words), "{extra}: {e}");
        }
        assert_eq!(
            parse_host_port("proxy.example"),
            Ok(("proxy.example".into(), 5060))
        );
        assert_eq!(
            parse_host_port("10.0.0.1:5070"),
            Ok(("10.0.0.1".into(), 5070))
        );
        assert_eq!(parse_host_port("::1"), Ok(("::1".into(), 5060)));
        assert_eq!(parse_host_port("[::1]:5062"), Ok(("::1".into(), 5062)));
        for bad in ["", "host:", ":5060", "[::1", "[x]:1", "h:99999", "a b"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trunks_are_sorted_checked_and_take_passwords_from_the_environment() {
        let text = format!(
            "{FULL}\n[telephony]\nring_timeout_seconds = 5\n\n[[telephony.trunks]]\nname = \"backup\"\nhost = \"127.0.0.1\"\nport = 5071\nfrom_number = \"+15550001111\"\npriority = 2\n\n[[telephony.trunks]]\nname = \"main-1\"\nhost = \"127.0.0.1\"\nusername = \"u\"\nrealm = \"sip.example\"\nfrom_number = \"+15550001111\"\npriority = 1\n"
        );
        let f = write("trunks.toml", &text);
        let c =
            Config::load_with(Some(&f), env(&[("VOXLINE_TRUNK_MAIN_1_PASSWORD", "pw")])).unwrap();
        let t = &c.telephony;
        assert_eq!(t.ring_timeout_seconds, 5);
        assert_eq!(
            t.codecs,
            [Codec::Pcmu, Codec::Pcma, Codec::Opus],
            "default offer order"
        );
        assert_eq!(
            t.trunks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["main-1", "backup"]
        );
        assert_eq!(
            (
                t.trunks[0].port,
                t.trunks[0].password.as_ref().map(|p| p.expose().to_vec())
            ),
            (None, Some(b"pw".to_vec()))
        );
        assert_eq!(t.trunks[1].port, Some(5071));
        assert_eq!(t.trunks[0].realm.as_deref(), Some("sip.example"));
        assert_eq!(t.trunks[1].realm, None);
        // An IP host is a fixed address: in-dialog requests only from it.
        assert!(t.trunks[0].in_dialog_from_trunk_only());
        let mut named = t.trunks[0].clone();
        named.host = "sip.example".into();
        assert!(!named.in_dialog_from_trunk_only());
        named.in_dialog_from_trunk_only = Some(true);
        assert!(named.in_dialog_from_trunk_only());
        assert!(
            format!("{t:?}").contains("main-1") && !format!("{t:?}").contains("\"pw\""),
            "password printed"
        );

        let bad = write(
            "trunks-bad.toml",
            &format!(
                "{FULL}\n[[telephony.trunks]]\nname = \"x\"\nhost = \"h\"\nfrom_number = \"555\"\n"
            ),
        );
        let e = Config::load_with(Some(&bad), env(&[])).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key: "telephony", msg, .. } if msg.contains("E.164")),
            "{e}"
        );
        let c = Config::load_with(
            None,
            env(&[
                ("VOXLINE_EDGE_URL", "http://127.0.0.1:1"),
                ("VOXLINE_SIDECAR_ID", "a"),
                ("VOXLINE_REGION", "r"),
                ("VOXLINE_SIDECAR_SECRET", "s"),
                ("VOXLINE_CAPACITY", "1"),
            ]),
        )
        .unwrap();
        assert!(c.telephony.trunks.is_empty(), "no file: no trunks");
    }

    #[test]
    fn the_old_ring_timeout_key_is_still_read() {
        let f = write(
            "ring-old.toml",
            &format!("{FULL}\n[telephony]\nring_timeout_secs = 7\n"),
        );
        let c = Config::load_with(Some(&f), env(&[])).unwrap();
        assert_eq!(c.telephony.ring_timeout_seconds, 7);
    }

    #[test]
    fn codec_preference_is_configurable_and_checked() {
        let f = write(
            "codecs.toml",
            &format!("{FULL}\n[telephony]\ncodecs = [\"opus\", \"pcmu\"]\n"),
        );
        let c = Config::load_with(Some(&f), env(&[])).unwrap();
        assert_eq!(c.telephony.codecs, [Codec::Opus, Codec::Pcmu]);
        for bad in ["[]", "[\"pcmu\", \"pcmu\"]", "[\"g729\"]"] {
            let f = write(
                "codecs-bad.toml",
                &format!("{FULL}\n[telephony]\ncodecs = {bad}\n"),
            );
            assert!(
                Config::load_with(Some(&f), env(&[])).is_err(),
                "codecs = {bad} accepted"
            );
        }
    }

    const FULL: &str = r#"
edge_url = "https://edge.example.com/base/"
sidecar_id = "sc-eu-1"
region = "eu"
secret = "0123456789abcdef0123456789abcdef"
capacity = 8
"#;

    #[test]
    fn file_only() {
        let p = write("full.toml", FULL);
        let c = Config::load_with(Some(&p), env(&[])).unwrap();
        assert_eq!(c.edge.host, "edge.example.com");
        assert_eq!(c.edge.port, 443);
        assert_eq!(c.edge.base_path, "/base");
        assert_eq!(
            c.edge.url("/v1/sidecar/lease"),
            "https://edge.example.com:443/base/v1/sidecar/lease"
        );
        assert_eq!(
            (c.sidecar_id.as_str(), c.region.as_str(), c.capacity),
            ("sc-eu-1", "eu", 8)
        );
        assert_eq!(
            c.transport,
            Transport::Http1,
            "https:// without transport = http1"
        );
        assert_eq!(c.ca_cert, None);
        assert_eq!(format!("{:?}", c.secret), "Secret(<redacted>)");
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn env_overrides_file_and_empty_env_is_unset() {
        let p = write("full2.toml", FULL);
        let c = Config::load_with(
            Some(&p),
            env(&[
                ("VOXLINE_EDGE_URL", "https+h3://127.0.0.1:8443"),
                ("VOXLINE_CAPACITY", "2"),
                ("VOXLINE_SIDECAR_SECRET", "from-env"),
                ("VOXLINE_REGION", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.transport, Transport::H3);
        assert_eq!(c.edge.authority(), "127.0.0.1:8443");
        assert_eq!(c.capacity, 2);
        assert_eq!(c.secret, Secret::new("from-env"));
        assert_eq!(c.region, "eu");
    }

    #[test]
    fn env_only() {
        let c = Config::load_with(
            None,
            env(&[
                ("VOXLINE_EDGE_URL", "http://127.0.0.1:8787"),
                ("VOXLINE_SIDECAR_ID", "sc-1"),
                ("VOXLINE_REGION", "local"),
                ("VOXLINE_SIDECAR_SECRET", "s"),
                ("VOXLINE_CAPACITY", "4"),
                ("VOXLINE_TRANSPORT", "http1"),
                ("VOXLINE_LEASE_WAIT_MS", "1000"),
            ]),
        )
        .unwrap();
        assert_eq!(c.edge.url("/x"), "http://127.0.0.1:8787/x");
        assert_eq!(c.lease_wait_ms, Some(1000));
    }

    #[test]
    fn transport_rules() {
        let base = [
            ("VOXLINE_SIDECAR_ID", "sc-1"),
            ("VOXLINE_REGION", "local"),
            ("VOXLINE_SIDECAR_SECRET", "s"),
            ("VOXLINE_CAPACITY", "4"),
        ];
        let load = |url: &str, tr: Option<&str>| {
            let mut e: Vec<(&str, &str)> = base.to_vec();
            e.push(("VOXLINE_EDGE_URL", url));
            if let Some(t) = tr {
                e.push(("VOXLINE_TRANSPORT", t));
            }
            Config::load_with(None, env(&e))
        };
        assert_eq!(
            load("https://e.x", Some("h3")).unwrap().transport,
            Transport::H3
        );
        assert_eq!(
            load("https://e.x", None).unwrap().transport,
            Transport::Http1
        );
        assert_eq!(
            load("https+h3://e.x", None).unwrap().transport,
            Transport::H3
        );
        assert_eq!(
            load("http://127.0.0.1:8787", None).unwrap().transport,
            Transport::Http1
        );
        let e = load("http://127.0.0.1:8787", Some("h3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("h3 needs TLS"), "{e}");
        // In clear only to an edge on this machine.
        for local in [
            "http://localhost:8787",
            "http://[::1]:8787",
            "http://127.0.0.2",
        ] {
            assert!(load(local, None).is_ok(), "{local}");
        }
        for remote in [
            "http://e.x",
            "http://10.0.0.1:8787",
            "http://[2001:db8::1]/",
        ] {
            let e = load(remote, None).unwrap_err().to_string();
            assert!(
                e.contains("only for an edge on this machine"),
                "{remote}: {e}"
            );
        }
        let e = load("https+h3://e.x", Some("http1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("conflicts"), "{e}");
        let e = load("https://e.x", Some("quic")).unwrap_err().to_string();
        assert!(
            e.contains("`transport` (from $VOXLINE_TRANSPORT) is invalid: `quic`"),
            "{e}"
        );
        let e = load("ftp://e.x", None).unwrap_err().to_string();
        assert!(e.contains("scheme must be"), "{e}");
        let e = load("https://user@e.x", None).unwrap_err().to_string();
        assert!(e.contains("user info"), "{e}");
        let e = load("https://e.x/?a=1", None).unwrap_err().to_string();
        assert!(e.contains("query"), "{e}");
        let v6 = load("https+h3://[::1]:9443", None).unwrap();
        assert_eq!(
            (v6.edge.host.as_str(), v6.edge.authority()),
            ("::1", "[::1]:9443".to_string())
        );
    }

    #[test]
    fn clear_errors() {
        let e =
            Config::load_with(Some(Path::new("/nonexistent/voxline.toml")), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e
            .to_string()
            .starts_with("cannot read config file /nonexistent/voxline.toml"));

        let p = write("typo.toml", &format!("{FULL}\ncapacty = 3\n"));
        let e = Config::load_with(Some(&p), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `capacty`"), "{e}");

        let p = write(
            "badtype.toml",
            &FULL.replace("capacity = 8", "capacity = \"eight\""),
        );
        let e = Config::load_with(Some(&p), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("capacity"), "{e}");

        let p = write(
            "nosecret.toml",
            &FULL.replace("secret = \"0123456789abcdef0123456789abcdef\"", ""),
        );
        let e = Config::load_with(Some(&p), env(&[])).unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing {
                key: "secret",
                env: "VOXLINE_SIDECAR_SECRET"
            }
        );
        assert_eq!(
            e.to_string(),
            "`secret` is required: set it in the config file or in $VOXLINE_SIDECAR_SECRET"
        );

        let p = write("zero.toml", &FULL.replace("capacity = 8", "capacity = 0"));
        let e = Config::load_with(Some(&p), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 is not in 1..=10000"), "{e}");

        let p = write("full3.toml", FULL);
        let e = Config::load_with(Some(&p), env(&[("VOXLINE_CAPACITY", "many")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "`capacity` (from $VOXLINE_CAPACITY) is invalid: `many` is not a whole number"
            ),
            "{e}"
        );
        let e = Config::load_with(Some(&p), env(&[("VOXLINE_SIDECAR_ID", "sc 1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`sidecar_id` (from $VOXLINE_SIDECAR_ID) is invalid"),
            "{e}"
        );
        let e = Config::load_with(Some(&p), env(&[("VOXLINE_CA_CERT", "/nonexistent/ca.pem")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/ca.pem is not a readable file"),
            "{e}"
        );
        let e = Config::load_with(Some(&p), env(&[("VOXLINE_LEASE_WAIT_MS", "999999")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lease_wait_ms"), "{e}");
        let e = Config::load_with(Some(&p), env(&[("VOXLINE_SIDECAR_SECRET", " padded ")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("whitespace"), "{e}");

        let p = write("broken.toml", "edge_url = ");
        let e = Config::load_with(Some(&p), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    /// Issue 21: `srtp` per trunk, off by default; keys exposed over UDP.
    #[test]
    fn srtp_per_trunk() {
        let trunk = |name: &str, extra: &str| {
            format!("\n[[telephony.trunks]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nfrom_number = \"+15550001111\"\n{extra}")
        };
        let text = format!(
            "{FULL}{}{}{}",
            trunk("a", "srtp = \"mandatory\"\n"),
            trunk("b", "srtp = \"optional\"\n"),
            trunk("c", "")
        );
        let c = Config::load_with(Some(&write("srtp.toml", &text)), env(&[])).unwrap();
        let policies: Vec<_> = c.telephony.trunks.iter().map(|t| t.srtp).collect();
        assert_eq!(
            policies,
            [SrtpPolicy::Mandatory, SrtpPolicy::Optional, SrtpPolicy::Off]
        );
        // SDES keys over UDP are in clear: the startup warning's condition.
        let exposed: Vec<_> = c
            .telephony
            .trunks
            .iter()
            .map(|t| t.srtp_keys_exposed())
            .collect();
        assert_eq!(exposed, [true, true, false]);
        for bad in ["srtp = \"on\"\n", "srtp = true\n", "srtp = \"SDES\"\n"] {
            let t = format!("{FULL}{}", trunk("a", bad));
            let e = Config::load_with(Some(&write("srtp-bad.toml", &t)), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("srtp"), "{bad}: {e}");
        }
    }

    /// Issue 19: `--check-config` names every problem, not only the first.
    #[test]
    fn check_names_every_problem_at_once() {
        let text = format!(
            "{}\n[telephony]\nring_timeout_seconds = 0\namd_decision_ms = 500\n\n[[telephony.trunks]]\nname = \"t\"\nhost = \"127.0.0.1\"\nfrom_number = \"555\"\n\n[metrics]\nlisten = \"not-an-address\"\n",
            FULL.replace("capacity = 8", "capacity = 0")
                .replace("region = \"eu\"", "")
        );
        let f = write("check-many.toml", &text);
        let all = Config::check_with(Some(&f), env(&[])).unwrap_err();
        let shown: Vec<String> = all.iter().map(|e| e.to_string()).collect();
        let expect = [
            "`region` is required",
            "0 is not in 1..=10000",
            "ring_timeout_seconds 0 is not in 1..=300",
            "amd_decision_ms 500 is not in 1000..=10000",
            "from_number `555` is not E.164",
            "`metrics.listen`",
        ];
        assert_eq!(shown.len(), expect.len(), "{shown:#?}");
        for (e, s) in expect.iter().zip(&shown) {
            assert!(s.contains(e), "{e} not in {s}");
        }
        // The first of them is what `load` reports.
        assert_eq!(Config::load_with(Some(&f), env(&[])).unwrap_err(), all[0]);
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_loopback_for_a_bare_port() {
        let f = write("metrics-none.toml", FULL);
        assert_eq!(
            Config::load_with(Some(&f), env(&[]))
                .unwrap()
                .metrics_listen,
            None
        );
        let f = write(
            "metrics-port.toml",
            &format!("{FULL}\n[metrics]\nlisten = \"9464\"\n"),
        );
        let c = Config::load_with(Some(&f), env(&[])).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let c =
            Config::load_with(Some(&f), env(&[("VOXLINE_METRICS_LISTEN", "[::1]:9500")])).unwrap();
        assert_eq!(c.metrics_listen, Some("[::1]:9500".parse().unwrap()));
        assert_eq!(
            parse_metrics_listen(":9464"),
            Ok("127.0.0.1:9464".parse().unwrap())
        );
        assert!(parse_metrics_listen("localhost:9464").is_err());
    }

    /// Issue 16: `[registrar]` is off by default, read into the telephony
    /// settings, and its bounds are checked.
    #[test]
    fn registrar_keys_are_read_and_checked() {
        let f = write("registrar-none.toml", FULL);
        let c = Config::load_with(Some(&f), env(&[])).unwrap();
        assert!(!c.telephony.registrar.enabled);
        assert_eq!(c.telephony.registrar.endpoint_config(), None);
        let f = write(
            "registrar-on.toml",
            &format!("{FULL}\n[registrar]\nenabled = true\nmin_expires_seconds = 30\nmax_bindings_per_user = 2\n"),
        );
        let c = Config::load_with(Some(&f), env(&[])).unwrap();
        let r = c.telephony.registrar.endpoint_config().unwrap();
        assert_eq!(
            (
                r.min_expires_seconds,
                r.default_expires_seconds,
                r.max_expires_seconds
            ),
            (30, 600, 3_600)
        );
        assert_eq!((r.max_bindings_per_user, r.digest_sha256), (2, false));
        let f = write(
            "registrar-bad.toml",
            &format!("{FULL}\n[registrar]\nenabled = true\nmin_expires_seconds = 900\nmax_bindings_per_user = 11\n"),
        );
        let problems = Config::check_with(Some(&f), env(&[])).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|p| p.contains("min_expires_seconds (900)")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.contains("max_bindings_per_user 11")),
            "{text:?}"
        );
    }

    /// Issue 21: the per-trunk SIP capability keys and their defaults.
    #[test]
    fn sip_capability_keys_per_trunk() {
        let text = format!(
            "{FULL}\n[[telephony.trunks]]\nname = \"a\"\nhost = \"127.0.0.1\"\nfrom_number = \"+15550001111\"\nrequire_100rel = true\n\n[[telephony.trunks]]\nname = \"b\"\nhost = \"127.0.0.1\"\nfrom_number = \"+15550001111\"\n"
        );
        let f = write("sip-keys.toml", &text);
        let c = Config::load_with(Some(&f), env(&[])).unwrap();
        let [a, b] = &c.telephony.trunks[..] else {
            panic!("{:?}", c.telephony.trunks)
        };
        assert!(a.require_100rel);
        assert!(!b.require_100rel);
        assert_eq!(
            (a.session_expires_seconds, a.min_se_seconds),
            (1800, 90),
            "defaults"
        );
        let text = text.replace(
            "require_100rel = true\n",
            "require_100rel = true\nsession_expires_seconds = 600\nmin_se_seconds = 120\n",
        );
        let c = Config::load_with(Some(&write("sip-keys2.toml", &text)), env(&[])).unwrap();
        let a = &c.telephony.trunks[0];
        assert_eq!((a.session_expires_seconds, a.min_se_seconds), (600, 120));
        for bad in [
            "session_expires_seconds = 60\n",
            "min_se_seconds = 30\n",
            "min_se_seconds = 900\nsession_expires_seconds = 600\n",
        ] {
            let t = text.replace("session_expires_seconds = 600\nmin_se_seconds = 120\n", bad);
            let e = Config::load_with(Some(&write("sip-keys3.toml", &t)), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("min_se_seconds"), "{bad}: {e}");
        }
        assert_eq!(
            (
                c.telephony.max_redirects,
                c.telephony.redirect_allowed_addresses.len()
            ),
            (3, 0),
            "redirect defaults"
        );
        let r = text.replace(
            "[[telephony.trunks]]\nname = \"a\"",
            "[telephony]\nmax_redirects = 2\nredirect_allowed_addresses = [\"127.0.0.1:5072\"]\n\n[[telephony.trunks]]\nname = \"a\"",
        );
        let c = Config::load_with(Some(&write("sip-keys5.toml", &r)), env(&[])).unwrap();
        assert_eq!(c.telephony.max_redirects, 2);
        assert_eq!(
            c.telephony.redirect_allowed_addresses,
            ["127.0.0.1:5072".parse::<std::net::SocketAddr>().unwrap()]
        );
        let r = r.replace("max_redirects = 2", "max_redirects = 11");
        assert!(Config::load_with(Some(&write("sip-keys6.toml", &r)), env(&[])).is_err());
        let t = text.replace(
            "session_expires_seconds = 600\n",
            "session_expires_seconds = 0\n",
        );
        assert!(
            Config::load_with(Some(&write("sip-keys4.toml", &t)), env(&[])).is_ok(),
            "0 = off"
        );
    }

    /// Issue 21: `transport = "tcp" | "tls"` per trunk, the TLS keys, the
    /// port each implies, and the keep-alive interval.
    #[test]
    fn sip_transport_keys_per_trunk() {
        let trunk = |name: &str, extra: &str| {
            format!("\n[[telephony.trunks]]\nname = \"{name}\"\nhost = \"sip.example.com\"\nfrom_number = \"+15550001111\"\n{extra}")
        };
        let text = format!(
            "{FULL}\n[telephony]\nsip_keepalive_seconds = 15\n{}{}{}{}",
            trunk("u", ""),
            trunk("t", "transport = \"tcp\"\n"),
            trunk("s", "transport = \"tls\"\nca_cert = \"/etc/voxline/carrier-ca.pem\"\ntls_server_name = \"edge.example.net\"\n"),
            trunk("p", "transport = \"tls\"\nport = 5071\n"),
        );
        let c = Config::load_with(Some(&write("sip-transport.toml", &text)), env(&[])).unwrap();
        let got: Vec<_> = c
            .telephony
            .trunks
            .iter()
            .map(|t| (t.name.as_str(), t.transport, t.port))
            .collect();
        assert_eq!(
            got,
            [
                ("u", SipTransport::Udp, None),
                ("t", SipTransport::Tcp, None),
                ("s", SipTransport::Tls, None),
                ("p", SipTransport::Tls, Some(5071))
            ]
        );
        let s = &c.telephony.trunks[2];
        assert_eq!(
            (s.ca_cert.as_deref(), s.tls_server_name.as_deref()),
            (
                Some(Path::new("/etc/voxline/carrier-ca.pem")),
                Some("edge.example.net")
            )
        );
        assert_eq!(c.telephony.sip_keepalive_seconds, 15);
        let plain = format!("{FULL}\n{}", trunk("u", ""));
        let c = Config::load_with(Some(&write("sip-transport2.toml", &plain)), env(&[])).unwrap();
        assert_eq!(c.telephony.sip_keepalive_seconds, 30, "default");
        for (bad, says) in [
            (trunk("x", "transport = \"sctp\"\n"), "transport"),
            (
                trunk("x", "ca_cert = \"/x.pem\"\n"),
                "need transport = \"tls\"",
            ),
            (
                trunk(
                    "x",
                    "transport = \"tcp\"\ntls_server_name = \"a.example\"\n",
                ),
                "need transport = \"tls\"",
            ),
            (
                trunk(
                    "x",
                    "transport = \"tls\"\ntls_server_name = \"not a name\"\n",
                ),
                "tls_server_name",
            ),
            (
                format!(
                    "[telephony]\nsip_keepalive_seconds = 4000\n{}",
                    trunk("x", "")
                ),
                "sip_keepalive_seconds",
            ),
        ] {
            let t = format!("{FULL}\n{bad}");
            let e = Config::load_with(Some(&write("sip-transport3.toml", &t)), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    /// Issue 21: `[telephony] dns_servers` (IP or IP:port) for trunk host names.
    #[test]
    fn dns_servers_are_ip_or_ip_and_port() {
        let t = format!(
            "{FULL}\n[telephony]\ndns_servers = [\"127.0.0.1:5353\", \"192.0.2.53\", \"[::1]:53\"]\n"
        );
        let c = Config::load_with(Some(&write("dns.toml", &t)), env(&[])).unwrap();
        let want: Vec<std::net::SocketAddr> = ["127.0.0.1:5353", "192.0.2.53:53", "[::1]:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.telephony.dns_servers, want);
        let c = Config::load_with(Some(&write("dns-none.toml", FULL)), env(&[])).unwrap();
        assert!(c.telephony.dns_servers.is_empty(), "default: the system's");
        let bad = t.replace("192.0.2.53", "ns.example");
        let e = Config::load_with(Some(&write("dns-bad.toml", &bad)), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns_servers"), "{e}");
    }
}
