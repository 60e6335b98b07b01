//! Trunk hosts resolved as RFC 3263 section 4 says, sans-IO.
//!
//! ```text
//!  host is an IP literal        -> that address, port (default 5060/5061), never re-resolved
//!  host is a name, port given   -> A/AAAA of the host, that port
//!  host is a name, no port      -> NAPTR of the host: the records whose service is the
//!                                  trunk's transport (SIP+D2U, SIP+D2T, SIPS+D2T), flag "s",
//!                                  in (order, preference) -> their SRV names;
//!                                  none: SRV `_sip._udp.host` (`_sip._tcp`, `_sips._tcp`)
//!                               -> SRV records: (NAPTR rank, priority) ascending, weighted
//!                                  random within one priority (RFC 2782), per call;
//!                                  none: A/AAAA of the host, the transport's default port
//!                               -> A/AAAA of each SRV target
//! ```
//!
//! [`Resolution`] is the state machine: [`Resolution::start`] and
//! [`Resolution::answer`] hand out one [`Query`] at a time and end in a
//! [`Resolved`] (the targets with their addresses and the smallest TTL seen)
//! or a [`DnsError`]. [`Resolved::ordered`] turns it into the addresses to try
//! in order, drawing the SRV weights from an injected [`Random`].
//! [`Refresh`] is the TTL bookkeeping: when to resolve again (before the answer
//! expires), and the backoff after a failed attempt (the last good answer is
//! kept meanwhile). [`resolver`] is the driver on hickory-resolver;
//! [`table`] keeps every configured trunk's answer and refreshes it in the background.
//!
//! Bounds: [`MAX_NAPTR_USED`] NAPTR records followed, [`MAX_SRV_PER_NAME`]
//! SRV records read per name, [`MAX_TARGETS`] targets looked up,
//! [`MAX_ADDRS_PER_TARGET`] addresses each, [`MAX_ADDRESSES`] attempts per
//! configured trunk, [`MAX_QUERIES`] queries per resolution, CNAME chains of
//! [`MAX_CNAME_CHAIN`] (the driver), TTLs clamped to [`MIN_TTL`]..=[`MAX_TTL`].
//!
//! Leniencies, on purpose: NAPTR records that offer none of our transport
//! fall through to the SRV lookup of the host (as no NAPTR would), and SRV
//! names with no records fall through to A/AAAA, so a half-provisioned zone
//! still reaches the host. A failed query (timeout, SERVFAIL), unlike "no
//! such record", fails the whole resolution: a refresh never swaps a good
//! answer for a fallback because a name server hiccupped.

pub mod resolver;
pub mod table;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::random::Random;

/// NAPTR records followed at most (those of our transport, best first).
pub const MAX_NAPTR_USED: usize = 4;
/// SRV records read per SRV name at most (lowest priorities kept).
pub const MAX_SRV_PER_NAME: usize = 16;
/// SRV targets whose addresses are looked up, at most.
pub const MAX_TARGETS: usize = 8;
/// Addresses kept per target.
pub const MAX_ADDRS_PER_TARGET: usize = 4;
/// Addresses (trunk attempts) one configured trunk expands to, at most.
pub const MAX_ADDRESSES: usize = 8;
/// Queries one resolution may ask (NAPTR, SRVs, A and AAAA per target).
pub const MAX_QUERIES: usize = 1 + MAX_NAPTR_USED + 2 * MAX_TARGETS;
/// CNAMEs one answer may go through (the driver refuses longer chains).
pub const MAX_CNAME_CHAIN: usize = 8;
/// Records read from one answer at most (the driver cuts the rest).
pub const MAX_RECORDS: usize = 64;
/// Shorter TTLs (0 included) count as this: a zone cannot make us query in a loop.
pub const MIN_TTL: Duration = Duration::from_secs(10);
/// Longer TTLs count as this: a changed zone is seen within a day.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
/// First retry after a failed resolution; doubles per failure up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(2);
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// The SIP transport a trunk is reached over (one type for the whole SIP
/// stack); here what it picks in DNS: the NAPTR service and the SRV prefix
/// (the default port is [`Transport::default_port`]).
pub use crate::sip::transport::Transport;

impl Transport {
    /// The NAPTR service field (RFC 3263 section 4.1).
    pub fn naptr_service(self) -> &'static str {
        match self {
            Transport::Udp => "SIP+D2U",
            Transport::Tcp => "SIP+D2T",
            Transport::Tls => "SIPS+D2T",
        }
    }

    /// The SRV name prefix (RFC 3263 section 4.1).
    pub fn srv_prefix(self) -> &'static str {
        match self {
            Transport::Udp => "_sip._udp",
            Transport::Tcp => "_sip._tcp",
            Transport::Tls => "_sips._tcp",
        }
    }
}

/// Which address records to ask for: the SIP socket reaches one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    /// What a socket bound to `ip` can send to.
    pub fn reachable_from(ip: IpAddr) -> Families {
        Families {
            v4: ip.is_ipv4(),
            v6: ip.is_ipv6(),
        }
    }
}

/// Why a trunk host could not be resolved. Stable codes for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("`{0}` is neither an IP address nor a host name")]
    BadName(String),
    #[error("SRV says SIP is not offered at {0} (target \".\")")]
    ServiceUnavailable(String),
    #[error("no address for {0}")]
    NoAddress(String),
    #[error("lookup of {query} failed: {detail}")]
    LookupFailed { query: String, detail: String },
    #[error("{0}: CNAME chain longer than {MAX_CNAME_CHAIN}")]
    CnameChainTooLong(String),
    #[error("more than {MAX_QUERIES} queries")]
    TooManyQueries,
    #[error("resolution took longer than {0:?}")]
    Timeout(Duration),
    #[error("resolver: {0}")]
    Resolver(String),
}

impl DnsError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            DnsError::BadName(_) => "bad_name",
            DnsError::ServiceUnavailable(_) => "service_unavailable",
            DnsError::NoAddress(_) => "no_address",
            DnsError::LookupFailed { .. } => "lookup_failed",
            DnsError::CnameChainTooLong(_) => "cname_chain_too_long",
            DnsError::TooManyQueries => "too_many_queries",
            DnsError::Timeout(_) => "timeout",
            DnsError::Resolver(_) => "resolver",
        }
    }
}

/// A record type we ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Naptr,
    Srv,
    A,
    Aaaa,
}

/// One question for the name servers. `name` is absolute (trailing dot),
/// lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub name: String,
    pub kind: RecordKind,
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.kind, self.name)
    }
}

/// A NAPTR record (RFC 3403); `replacement` absolute, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
    pub ttl: u32,
}

/// An SRV record (RFC 2782); `target` absolute, lower case (`"."`: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
    pub ttl: u32,
}

/// An A or AAAA record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ip: IpAddr,
    pub ttl: u32,
}

/// The records of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records {
    Naptr(Vec<Naptr>),
    Srv(Vec<Srv>),
    Addrs(Vec<Addr>),
}

/// Why a query has no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// NXDOMAIN, or the name has no records of this type: a fact about the zone.
    NoRecords,
    /// Timeout, SERVFAIL, refused, unreachable name server...: nothing learnt.
    Failed(String),
    /// The answer went through more than [`MAX_CNAME_CHAIN`] CNAMEs.
    CnameChainTooLong,
}

/// The trunk host's name or IP address, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    /// Absolute, lower case.
    Name(String),
}

/// What to resolve: one configured trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    host: Host,
    port: Option<u16>,
    transport: Transport,
    families: Families,
}

impl Request {
    /// `host`: an IP literal (IPv6 with or without brackets) or a host name
    /// (taken as absolute: no search domains). `port`: the configured port,
    /// if any (then no NAPTR or SRV).
    pub fn new(
        host: &str,
        port: Option<u16>,
        transport: Transport,
        families: Families,
    ) -> Result<Request, DnsError> {
        let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => {
                Host::Name(absolute_name(bare).ok_or_else(|| DnsError::BadName(host.into()))?)
            }
        };
        Ok(Request {
            host,
            port,
            transport,
            families,
        })
    }

    /// No DNS needed (an IP literal).
    pub fn is_literal(&self) -> bool {
        matches!(self.host, Host::Ip(_))
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }
}

/// `name` as an absolute, lower-case DNS name, if it is one (RFC 1123
/// labels; `_` allowed for SRV-style owner names).
fn absolute_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| format!("{name}."))
}

/// One SRV target (or the host itself, without SRV) and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Absolute name (the SRV target, or the host).
    pub name: String,
    pub port: u16,
    /// The NAPTR record's rank it came through (0 without NAPTR).
    pub rank: usize,
    pub priority: u16,
    pub weight: u16,
    pub addrs: Vec<IpAddr>,
}

/// A finished resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// In (rank, priority) order; ties are ordered per call by [`Resolved::ordered`].
    pub targets: Vec<Target>,
    /// The smallest TTL of the records used, clamped to
    /// [`MIN_TTL`]..=[`MAX_TTL`]; `None` for an IP literal (never expires).
    pub ttl: Option<Duration>,
    /// The targets came from SRV: URIs keep the host name without a port
    /// (RFC 3263: the port is SRV's, not the URI's).
    pub via_srv: bool,
    pub transport: Transport,
}

impl Resolved {
    /// The addresses to try, in order: (rank, priority) ascending, and
    /// within one, SRV's weighted random order (RFC 2782) drawn from
    /// `random`; each target's addresses in turn. Duplicates dropped; at most
    /// [`MAX_ADDRESSES`].
    pub fn ordered(&self, random: &mut dyn Random) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        let mut start = 0;
        while start < self.targets.len() {
            let key = |t: &Target| (t.rank, t.priority);
            let group_key = key(&self.targets[start]);
            let end = self.targets[start..]
                .iter()
                .position(|t| key(t) != group_key)
                .map_or(self.targets.len(), |n| start + n);
            let group = &self.targets[start..end];
            let weights: Vec<u16> = group.iter().map(|t| t.weight).collect();
            for i in weighted_order(&weights, random) {
                let t = &group[i];
                for ip in &t.addrs {
                    let a = SocketAddr::new(*ip, t.port);
                    if out.len() < MAX_ADDRESSES && !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            start = end;
        }
        out
    }
}

/// RFC 2782's selection: indices of `weights` in the order drawn. Records
/// of weight 0 go first in the running sum, so they are picked only when
/// the draw is 0 (rarely, when others weigh something), as the RFC says.
pub fn weighted_order(weights: &[u16], random: &mut dyn Random) -> Vec<usize> {
    let mut left: Vec<usize> = (0..weights.len()).filter(|i| weights[*i] == 0).collect();
    left.extend((0..weights.len()).filter(|i| weights[*i] != 0));
    let mut order = Vec::with_capacity(weights.len());
    while !left.is_empty() {
        let sum: u32 = left.iter().map(|i| u32::from(weights[*i])).sum();
        let mut b = [0u8; 4];
        random.fill(&mut b);
        // Uniform in 0..=sum (sum < 2^21: the modulo bias is negligible).
        let draw = u32::from_le_bytes(b) % (sum + 1);
        let mut running = 0u32;
        let pick = left
            .iter()
            .position(|i| {
                running += u32::from(weights[*i]);
                running >= draw
            })
            .unwrap_or(0);
        order.push(left.remove(pick));
    }
    order
}

/// What the resolution asks next, or how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Query(Query),
    Done(Result<Resolved, DnsError>),
}

enum Stage {
    Naptr,
    Srv {
        names: Vec<String>,
        next: usize,
        unavailable: bool,
    },
    Addrs {
        /// (target index, A or AAAA) still to ask.
        pending: std::collections::VecDeque<(usize, RecordKind)>,
        /// The target of the query asked.
        current: usize,
    },
    Done,
}

/// One resolution of one [`Request`], sans-IO. See the module docs.
pub struct Resolution {
    request: Request,
    stage: Stage,
    asked: Option<Query>,
    queries: usize,
    ttl: Option<u32>,
    targets: Vec<Target>,
    via_srv: bool,
}

impl Resolution {
    pub fn new(request: Request) -> Resolution {
        Resolution {
            request,
            stage: Stage::Naptr,
            asked: None,
            queries: 0,
            ttl: None,
            targets: Vec::new(),
            via_srv: false,
        }
    }

    /// The first query (or, for an IP literal, the result).
    pub fn start(&mut self) -> Step {
        let name = match &self.request.host {
            Host::Ip(ip) => {
                self.stage = Stage::Done;
                let port = self
                    .request
                    .port
                    .unwrap_or(self.request.transport.default_port());
                return Step::Done(Ok(Resolved {
                    targets: vec![Target {
                        name: ip.to_string(),
                        port,
                        rank: 0,
                        priority: 0,
                        weight: 0,
                        addrs: vec![*ip],
                    }],
                    ttl: None,
                    via_srv: false,
                    transport: self.request.transport,
                }));
            }
            Host::Name(n) => n.clone(),
        };
        match self.request.port {
            Some(port) => self.address_stage(vec![self.host_target(&name, port)]),
            None => {
                self.stage = Stage::Naptr;
                self.ask(name, RecordKind::Naptr)
            }
        }
    }

    /// The answer to the last query asked.
    pub fn answer(&mut self, answer: Result<Records, LookupError>) -> Step {
        let Some(query) = self.asked.take() else {
            return Step::Done(Err(DnsError::Resolver("answer without a query".into())));
        };
        let records = match answer {
            Ok(r) => Some(r),
            Err(LookupError::NoRecords) => None,
            Err(LookupError::Failed(detail)) => {
                return self.fail(DnsError::LookupFailed {
                    query: query.to_string(),
                    detail,
                })
            }
            Err(LookupError::CnameChainTooLong) => {
                return self.fail(DnsError::CnameChainTooLong(query.name))
            }
        };
        match (&mut self.stage, query.kind, records) {
            (Stage::Naptr, RecordKind::Naptr, r) => {
                let naptrs = match r {
                    Some(Records::Naptr(v)) => v,
                    None => Vec::new(),
                    Some(_) => return self.unexpected(&query),
                };
                self.after_naptr(&query.name, naptrs)
            }
            (Stage::Srv { .. }, RecordKind::Srv, r) => {
                let srvs = match r {
                    Some(Records::Srv(v)) => v,
                    None => Vec::new(),
                    Some(_) => return self.unexpected(&query),
                };
                self.after_srv(srvs)
            }
            (Stage::Addrs { .. }, RecordKind::A | RecordKind::Aaaa, r) => {
                let addrs = match r {
                    Some(Records::Addrs(v)) => v,
                    None => Vec::new(),
                    Some(_) => return self.unexpected(&query),
                };
                self.after_addrs(query.kind, addrs)
            }
            _ => self.unexpected(&query),
        }
    }

    fn host_name(&self) -> String {
        match &self.request.host {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    fn host_target(&self, name: &str, port: u16) -> Target {
        Target {
            name: name.to_string(),
            port,
            rank: 0,
            priority: 0,
            weight: 0,
            addrs: Vec::new(),
        }
    }

    fn note_ttl(&mut self, ttl: u32) {
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }

    fn ask(&mut self, name: String, kind: RecordKind) -> Step {
        self.queries += 1;
        if self.queries > MAX_QUERIES {
            return self.fail(DnsError::TooManyQueries);
        }
        let q = Query { name, kind };
        self.asked = Some(q.clone());
        Step::Query(q)
    }

    fn fail(&mut self, e: DnsError) -> Step {
        self.stage = Stage::Done;
        Step::Done(Err(e))
    }

    fn unexpected(&mut self, q: &Query) -> Step {
        self.fail(DnsError::LookupFailed {
            query: q.to_string(),
            detail: "records of another type".into(),
        })
    }

    fn after_naptr(&mut self, host: &str, mut naptrs: Vec<Naptr>) -> Step {
        let service = self.request.transport.naptr_service();
        naptrs.retain(|n| {
            n.flags.eq_ignore_ascii_case("s")
                && n.services.eq_ignore_ascii_case(service)
                && absolute_name(&n.replacement).is_some()
        });
        naptrs.sort_by_key(|n| (n.order, n.preference));
        let mut names: Vec<String> = Vec::new();
        for n in naptrs {
            if names.len() >= MAX_NAPTR_USED {
                break;
            }
            let Some(name) = absolute_name(&n.replacement) else {
                continue;
            };
            if !names.contains(&name) {
                self.note_ttl(n.ttl);
                names.push(name);
            }
        }
        if names.is_empty() {
            names.push(format!("{}.{host}", self.request.transport.srv_prefix()));
        }
        let first = names[0].clone();
        self.stage = Stage::Srv {
            names,
            next: 1,
            unavailable: false,
        };
        self.ask(first, RecordKind::Srv)
    }

    fn after_srv(&mut self, mut srvs: Vec<Srv>) -> Step {
        let Stage::Srv {
            names,
            next,
            unavailable,
        } = &mut self.stage
        else {
            return self.fail(DnsError::Resolver("SRV answer out of place".into()));
        };
        let rank = *next - 1;
        // RFC 2782: a single record with target "." says "not here".
        if let [only] = &srvs[..] {
            if only.target == "." {
                *unavailable = true;
                srvs.clear();
            }
        }
        srvs.sort_by_key(|s| s.priority);
        srvs.truncate(MAX_SRV_PER_NAME);
        let mut ttls = Vec::new();
        for s in srvs {
            let Some(target) = (s.target != ".")
                .then(|| absolute_name(&s.target))
                .flatten()
            else {
                continue;
            };
            if self
                .targets
                .iter()
                .any(|t| t.name == target && t.port == s.port)
            {
                continue;
            }
            ttls.push(s.ttl);
            self.targets.push(Target {
                name: target,
                port: s.port,
                rank,
                priority: s.priority,
                weight: s.weight,
                addrs: Vec::new(),
            });
        }
        let more = names.get(*next).cloned();
        let unavailable = *unavailable;
        let first_name = names.first().cloned().unwrap_or_default();
        for t in ttls {
            self.note_ttl(t);
        }
        if let Some(name) = more {
            if let Stage::Srv { next, .. } = &mut self.stage {
                *next += 1;
            }
            return self.ask(name, RecordKind::Srv);
        }
        if self.targets.is_empty() {
            if unavailable {
                return self.fail(DnsError::ServiceUnavailable(first_name));
            }
            // No SRV: the host itself on the transport's default port.
            let host = self.host_name();
            let port = self.request.transport.default_port();
            return self.address_stage(vec![self.host_target(&host, port)]);
        }
        self.via_srv = true;
        let mut targets = std::mem::take(&mut self.targets);
        targets.sort_by_key(|t| (t.rank, t.priority));
        targets.truncate(MAX_TARGETS);
        self.address_stage(targets)
    }

    fn address_stage(&mut self, targets: Vec<Target>) -> Step {
        let families = self.request.families;
        let kinds = [
            (families.v4, RecordKind::A),
            (families.v6, RecordKind::Aaaa),
        ];
        let pending = (0..targets.len())
            .flat_map(|i| {
                kinds
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(move |(_, k)| (i, *k))
            })
            .collect();
        self.targets = targets;
        self.stage = Stage::Addrs {
            pending,
            current: 0,
        };
        self.next_address_query()
    }

    /// The next A/AAAA query of the address stage, or the end.
    fn next_address_query(&mut self) -> Step {
        let Stage::Addrs { pending, current } = &mut self.stage else {
            return self.fail(DnsError::Resolver("address stage expected".into()));
        };
        let Some((index, kind)) = pending.pop_front() else {
            return self.finish();
        };
        *current = index;
        let Some(name) = self.targets.get(index).map(|t| t.name.clone()) else {
            return self.fail(DnsError::Resolver("address query of no target".into()));
        };
        self.ask(name, kind)
    }

    fn after_addrs(&mut self, kind: RecordKind, addrs: Vec<Addr>) -> Step {
        let Stage::Addrs { current, .. } = &self.stage else {
            return self.fail(DnsError::Resolver("address answer out of place".into()));
        };
        let mut ttls = Vec::new();
        if let Some(t) = self.targets.get_mut(*current) {
            for a in addrs {
                let family_ok = match a.ip {
                    IpAddr::V4(_) => kind == RecordKind::A,
                    IpAddr::V6(_) => kind == RecordKind::Aaaa,
                };
                if family_ok && t.addrs.len() < MAX_ADDRS_PER_TARGET && !t.addrs.contains(&a.ip) {
                    t.addrs.push(a.ip);
                    ttls.push(a.ttl);
                }
            }
        }
        for ttl in ttls {
            self.note_ttl(ttl);
        }
        self.next_address_query()
    }

    fn finish(&mut self) -> Step {
        self.stage = Stage::Done;
        let targets: Vec<Target> = std::mem::take(&mut self.targets)
            .into_iter()
            .filter(|t| !t.addrs.is_empty())
            .collect();
        if targets.is_empty() {
            return Step::Done(Err(DnsError::NoAddress(self.host_name())));
        }
        let ttl = Duration::from_secs(u64::from(self.ttl.unwrap_or(0))).clamp(MIN_TTL, MAX_TTL);
        Step::Done(Ok(Resolved {
            targets,
            ttl: Some(ttl),
            via_srv: self.via_srv,
            transport: self.request.transport,
        }))
    }
}

/// When to resolve a trunk again: TTL bookkeeping, sans-IO (instants are
/// passed in). A fresh answer is refreshed at three quarters of its TTL, so
/// the new one is there before the old expires; a failed attempt is retried
/// after [`RETRY_MIN`], doubling up to [`RETRY_MAX`], while the last good
/// answer stays in use (past its TTL too: stale beats none for a trunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// When the answer in use expires (`None`: no answer yet, or one that never does).
    expires_at: Option<Instant>,
    /// When to resolve next (`None`: never).
    next_at: Option<Instant>,
    failures: u32,
}

impl Refresh {
    /// Nothing resolved yet: due at `now`.
    pub fn new(now: Instant) -> Refresh {
        Refresh {
            expires_at: None,
            next_at: Some(now),
            failures: 0,
        }
    }

    /// A resolution succeeded at `now` with this TTL (`None`: never expires).
    pub fn resolved(&mut self, now: Instant, ttl: Option<Duration>) {
        self.failures = 0;
        self.expires_at = ttl.map(|t| now + t);
        self.next_at = ttl.map(|t| now + t * 3 / 4);
    }

    /// A resolution failed at `now`: retry later, with backoff.
    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(16);
        let delay = RETRY_MIN.saturating_mul(1 << shift).min(RETRY_MAX);
        self.next_at = Some(now + delay);
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next_at.is_some_and(|t| t <= now)
    }

    /// When the next resolution is due (`None`: never).
    pub fn next_at(&self) -> Option<Instant> {
        self.next_at
    }

    /// The answer in use is past its TTL (refreshes have been failing).
    pub fn is_stale(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests;
