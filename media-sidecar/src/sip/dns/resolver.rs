//! The driver of a [`Resolution`]: asks its queries through a [`DnsLookup`]
//! (hickory-resolver in the product, a table in tests), bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;

use super::{
    Addr, DnsError, LookupError, Naptr, Query, RecordKind, Records, Request, Resolution, Resolved,
    Srv, Step, MAX_CNAME_CHAIN, MAX_RECORDS,
};

/// One resolution (all its queries) takes at most this.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// One query to one name server waits this long for its answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A boxed future, so that the trait stays object safe without a macro crate.
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Records, LookupError>> + Send + 'a>>;

/// Answers one DNS [`Query`].
pub trait DnsLookup: Send + Sync {
    fn lookup<'a>(&'a self, query: &'a Query) -> LookupFuture<'a>;
}

/// Runs `request`'s resolution over `lookup`, within [`RESOLVE_TIMEOUT`].
pub async fn resolve(lookup: &dyn DnsLookup, request: Request) -> Result<Resolved, DnsError> {
    let run = async {
        let mut resolution = Resolution::new(request);
        let mut step = resolution.start();
        loop {
            match step {
                Step::Done(result) => return result,
                Step::Query(q) => {
                    let answer = lookup.lookup(&q).await;
                    tracing::debug!(query = %q, ?answer, "dns answer");
                    step = resolution.answer(answer);
                }
            }
        }
    };
    tokio::time::timeout(RESOLVE_TIMEOUT, run)
        .await
        .map_err(|_| DnsError::Timeout(RESOLVE_TIMEOUT))?
}

/// [`DnsLookup`] on hickory-resolver: the configured name servers (UDP,
/// TCP when an answer is truncated), or /etc/resolv.conf's.
#[derive(Clone)]
pub struct HickoryLookup {
    resolver: TokioResolver,
}

impl std::fmt::Debug for HickoryLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HickoryLookup")
    }
}

impl HickoryLookup {
    /// `servers`: `[telephony] dns_servers`; empty: the system's (/etc/resolv.conf).
    pub fn new(servers: &[SocketAddr]) -> Result<HickoryLookup, DnsError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| {
                DnsError::Resolver(format!("cannot read the system's DNS config: {e}"))
            })?
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                provider,
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 1;
        // Our own TTL bookkeeping decides when to ask again ([`super::Refresh`]):
        // a cached answer would come back with a shrinking TTL.
        opts.cache_size = 0;
        // CNAMEs stay in the answer, so the chain can be counted.
        opts.preserve_intermediates = true;
        // Names are absolute: no search domains. /etc/hosts still answers A/AAAA.
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Auto;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Resolver(e.to_string()))?;
        Ok(HickoryLookup { resolver })
    }

    async fn query(&self, q: &Query) -> Result<Records, LookupError> {
        let name = Name::from_ascii(&q.name)
            .map_err(|e| LookupError::Failed(format!("bad name {}: {e}", q.name)))?;
        let rtype = match q.kind {
            RecordKind::Naptr => RecordType::NAPTR,
            RecordKind::Srv => RecordType::SRV,
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
        };
        let lookup = match self.resolver.lookup(name, rtype).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                return Err(LookupError::NoRecords)
            }
            Err(e) => return Err(LookupError::Failed(e.to_string())),
        };
        let answers = lookup.answers();
        let cnames = answers
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
            .count();
        if cnames > MAX_CNAME_CHAIN {
            return Err(LookupError::CnameChainTooLong);
        }
        let wanted = answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .take(MAX_RECORDS);
        let records = match q.kind {
            RecordKind::Naptr => Records::Naptr(
                wanted
                    .filter_map(|r| match &r.data {
                        RData::NAPTR(n) => Some(Naptr {
                            order: n.order,
                            preference: n.preference,
                            flags: String::from_utf8_lossy(&n.flags).into_owned(),
                            services: String::from_utf8_lossy(&n.services).into_owned(),
                            replacement: n.replacement.to_ascii(),
                            ttl: r.ttl,
                        }),
                        _ => None,
                    })
                    .collect(),
            ),
            RecordKind::Srv => Records::Srv(
                wanted
                    .filter_map(|r| match &r.data {
                        RData::SRV(s) => Some(Srv {
                            priority: s.priority,
                            weight: s.weight,
                            port: s.port,
                            target: s.target.to_ascii(),
                            ttl: r.ttl,
                        }),
                        _ => None,
                    })
                    .collect(),
            ),
            RecordKind::A | RecordKind::Aaaa => Records::Addrs(
                wanted
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(Addr {
                            ip: a.0.into(),
                            ttl: r.ttl,
                        }),
                        RData::AAAA(a) => Some(Addr {
                            ip: a.0.into(),
                            ttl: r.ttl,
                        }),
                        _ => None,
                    })
                    .collect(),
            ),
        };
        Ok(records)
    }
}

impl DnsLookup for HickoryLookup {
    fn lookup<'a>(&'a self, query: &'a Query) -> LookupFuture<'a> {
        Box::pin(self.query(query))
    }
}

/// The lookup of a sidecar whose trunk hosts are all IP addresses: never
/// asked, and fails if it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLookup;

impl DnsLookup for NoLookup {
    fn lookup<'a>(&'a self, _query: &'a Query) -> LookupFuture<'a> {
        Box::pin(async { Err(LookupError::Failed("no DNS resolver configured".into())) })
    }
}
