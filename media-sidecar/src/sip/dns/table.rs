//! Every configured trunk's last good DNS answer, expanded per call into
//! endpoint [`Trunk`]s (one per address, the configured one's settings and
//! credentials, `domain` the configured host so Request-URI/To keep the
//! name), and re-resolved in the background before its TTL runs out.
//!
//! A call never waits for DNS: [`TrunkTable::trunks`] reads what is there.
//! The refresher ([`run_refresher`]) sleeps until the next [`Refresh`] is
//! due, resolves the due trunks, and swaps their answers in; a failure keeps
//! the last good answer (logged, retried with backoff).

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::resolver::{resolve, DnsLookup};
use super::{DnsError, Refresh, Request, Resolved};
use crate::random::Random;
use crate::sip::endpoint::Trunk;

/// One configured trunk.
#[derive(Debug)]
struct Entry {
    /// The configured name (for logs).
    name: String,
    /// Its endpoint settings; `addr` is replaced per resolved address.
    template: Trunk,
    request: Request,
    answer: Option<Resolved>,
    refresh: Refresh,
    /// A resolution is running (so a slow one is not started twice).
    in_flight: bool,
}

/// The configured trunks (in priority order) and their DNS answers.
#[derive(Debug)]
pub struct TrunkTable {
    entries: Mutex<Vec<Entry>>,
}

/// A configured trunk to put in the table.
#[derive(Debug, Clone)]
pub struct TrunkSource {
    pub name: String,
    pub template: Trunk,
    pub request: Request,
}

impl TrunkTable {
    /// Nothing resolved yet: every trunk is due at `now`.
    pub fn new(sources: Vec<TrunkSource>, now: Instant) -> TrunkTable {
        let entries = sources
            .into_iter()
            .map(|s| Entry {
                name: s.name,
                template: s.template,
                request: s.request,
                answer: None,
                refresh: Refresh::new(now),
                in_flight: false,
            })
            .collect();
        TrunkTable {
            entries: Mutex::new(entries),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A panic while holding the lock cannot leave an entry half-written
        // (every update is one assignment), so a poisoned lock is still good.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The endpoint trunks to try for one call, in order: configured
    /// priority, then each one's addresses ([`Resolved::ordered`]: SRV
    /// priority, weights drawn from `random`). Trunks not resolved yet are
    /// left out.
    pub fn trunks(&self, random: &mut dyn Random) -> Vec<Trunk> {
        let entries = self.lock();
        let mut out = Vec::new();
        for e in entries.iter() {
            let Some(answer) = &e.answer else { continue };
            for addr in answer.ordered(random) {
                let mut t = e.template.clone();
                t.addr = addr;
                t.uri_without_port = answer.via_srv;
                out.push(t);
            }
        }
        out
    }

    /// How many configured trunks have an answer.
    pub fn resolved_count(&self) -> usize {
        self.lock().iter().filter(|e| e.answer.is_some()).count()
    }

    /// When the next resolution is due (`None`: never, every host is an IP).
    pub fn next_due(&self) -> Option<Instant> {
        self.lock()
            .iter()
            .filter(|e| !e.in_flight)
            .filter_map(|e| e.refresh.next_at())
            .min()
    }

    /// The trunks due at `now`, marked in flight.
    fn take_due(&self, now: Instant) -> Vec<(usize, Request)> {
        let mut entries = self.lock();
        entries
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| !e.in_flight && e.refresh.is_due(now))
            .map(|(i, e)| {
                e.in_flight = true;
                (i, e.request.clone())
            })
            .collect()
    }

    /// The result of trunk `index`'s resolution, finished at `now`.
    fn apply(&self, index: usize, now: Instant, result: Result<Resolved, DnsError>) {
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(index) else {
            return;
        };
        e.in_flight = false;
        match result {
            Ok(answer) => {
                let failures = e.refresh.failures();
                if e.answer.as_ref() == Some(&answer) && failures > 0 {
                    tracing::info!(trunk = %e.name, failures, "trunk DNS refresh recovered");
                }
                if e.answer.as_ref() != Some(&answer) && !e.request.is_literal() {
                    let addrs: Vec<String> = answer
                        .targets
                        .iter()
                        .flat_map(|t| t.addrs.iter().map(move |ip| format!("{ip}:{}", t.port)))
                        .collect();
                    tracing::info!(
                        trunk = %e.name,
                        transport = answer.transport.as_str(),
                        via_srv = answer.via_srv,
                        ttl_s = answer.ttl.map_or(0, |t| t.as_secs()),
                        addrs = %addrs.join(" "),
                        "trunk resolved"
                    );
                }
                e.refresh.resolved(now, answer.ttl);
                e.answer = Some(answer);
            }
            Err(err) => {
                e.refresh.failed(now);
                let retry_in_ms = e
                    .refresh
                    .next_at()
                    .map_or(0, |t| t.saturating_duration_since(now).as_millis());
                if e.answer.is_some() {
                    tracing::warn!(
                        trunk = %e.name,
                        code = err.code(),
                        error = %err,
                        stale = e.refresh.is_stale(now),
                        retry_in_ms,
                        "trunk DNS refresh failed; keeping the last good answer"
                    );
                } else {
                    tracing::warn!(
                        trunk = %e.name,
                        code = err.code(),
                        error = %err,
                        retry_in_ms,
                        "trunk cannot be resolved; not dialled until it is"
                    );
                }
            }
        }
    }

    /// Resolves every trunk due at `now` (at once, each bounded by
    /// [`super::resolver::RESOLVE_TIMEOUT`]) and stores the results.
    pub async fn refresh_due(&self, lookup: &dyn DnsLookup, now: impl Fn() -> Instant) {
        let due = self.take_due(now());
        let runs = due.into_iter().map(|(i, request)| async move {
            let result = resolve(lookup, request).await;
            (i, result)
        });
        for (i, result) in futures_util::future::join_all(runs).await {
            self.apply(i, now(), result);
        }
    }
}

/// The background refresher: until the table is dropped, sleeps until the
/// next trunk is due and refreshes it. `now` is tokio's clock (so paused
/// time in tests drives it).
pub async fn run_refresher(table: Weak<TrunkTable>, lookup: Arc<dyn DnsLookup>) {
    let now = || tokio::time::Instant::now().into_std();
    loop {
        let next = match table.upgrade() {
            Some(t) => t.next_due(),
            None => return,
        };
        let Some(next) = next else { return };
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        let Some(t) = table.upgrade() else { return };
        t.refresh_due(lookup.as_ref(), now).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::resolver::LookupFuture;
    use super::super::{Addr, Families, LookupError, Query, RecordKind, Records, Srv, Transport};
    use super::*;
    use crate::random::SeededRandom;

    /// A zone the test edits while the refresher runs.
    #[derive(Default)]
    struct Zone {
        records: Mutex<HashMap<(String, RecordKind), Result<Records, LookupError>>>,
        queries: AtomicUsize,
    }

    impl Zone {
        fn set(&self, name: &str, kind: RecordKind, answer: Result<Records, LookupError>) {
            self.records
                .lock()
                .unwrap()
                .insert((name.to_string(), kind), answer);
        }
    }

    impl DnsLookup for Zone {
        fn lookup<'a>(&'a self, q: &'a Query) -> LookupFuture<'a> {
            self.queries.fetch_add(1, Ordering::SeqCst);
            let answer = self
                .records
                .lock()
                .unwrap()
                .get(&(q.name.clone(), q.kind))
                .cloned()
                .unwrap_or(Err(LookupError::NoRecords));
            Box::pin(async move { answer })
        }
    }

    fn a(ip: [u8; 4], ttl: u32) -> Result<Records, LookupError> {
        Ok(Records::Addrs(vec![Addr {
            ip: IpAddr::from(ip),
            ttl,
        }]))
    }

    fn table(host: &str, port: Option<u16>) -> TrunkTable {
        let request = Request::new(
            host,
            port,
            Transport::Udp,
            Families {
                v4: true,
                v6: false,
            },
        )
        .unwrap();
        let mut template = Trunk::new("0.0.0.0:0".parse().unwrap());
        template.domain = Some(host.to_string());
        TrunkTable::new(
            vec![TrunkSource {
                name: "carrier".into(),
                template,
                request,
            }],
            tokio::time::Instant::now().into_std(),
        )
    }

    fn addrs(t: &TrunkTable) -> Vec<SocketAddr> {
        t.trunks(&mut SeededRandom::new(1))
            .iter()
            .map(|t| t.addr)
            .collect()
    }

    /// The refresher re-resolves before the TTL runs out (at 3/4 of it, on
    /// tokio's paused clock), picks up the zone's change, and when a later
    /// refresh fails keeps the last good answer and retries with backoff.
    #[tokio::test(start_paused = true)]
    async fn refreshes_before_expiry_and_keeps_the_last_good_answer_on_failure() {
        let zone = Arc::new(Zone::default());
        zone.set(
            "_sip._udp.pbx.example.",
            RecordKind::Srv,
            Ok(Records::Srv(vec![Srv {
                priority: 10,
                weight: 0,
                port: 5070,
                target: "a.example.".into(),
                ttl: 120,
            }])),
        );
        zone.set("a.example.", RecordKind::A, a([192, 0, 2, 1], 60));
        let t = Arc::new(table("pbx.example", None));
        let now = || tokio::time::Instant::now().into_std();
        t.refresh_due(zone.as_ref(), now).await;
        assert_eq!(addrs(&t), vec!["192.0.2.1:5070".parse().unwrap()]);
        assert!(t.trunks(&mut SeededRandom::new(1))[0].uri_without_port);
        let lookup: Arc<dyn DnsLookup> = zone.clone();
        let task = tokio::spawn(run_refresher(Arc::downgrade(&t), lookup));

        // The zone changes; nothing is asked before 3/4 of the smallest TTL (60 s).
        zone.set("a.example.", RecordKind::A, a([192, 0, 2, 2], 60));
        let asked = zone.queries.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(44)).await;
        assert_eq!(zone.queries.load(Ordering::SeqCst), asked);
        assert_eq!(addrs(&t), vec!["192.0.2.1:5070".parse().unwrap()]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(addrs(&t), vec!["192.0.2.2:5070".parse().unwrap()]);

        // The name server fails: the answer stays, past its TTL too.
        zone.set(
            "a.example.",
            RecordKind::A,
            Err(LookupError::Failed("SERVFAIL".into())),
        );
        let asked = zone.queries.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(46)).await;
        assert!(zone.queries.load(Ordering::SeqCst) > asked, "refreshed");
        assert_eq!(addrs(&t), vec!["192.0.2.2:5070".parse().unwrap()]);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(addrs(&t), vec!["192.0.2.2:5070".parse().unwrap()]);
        {
            let entries = t.lock();
            assert!(
                entries[0].refresh.failures() >= 3,
                "{:?}",
                entries[0].refresh
            );
            assert!(entries[0].refresh.is_stale(now()));
        }

        // It answers again: the next retry (backoff, at most 60 s) takes the new answer.
        zone.set("a.example.", RecordKind::A, a([192, 0, 2, 3], 60));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(addrs(&t), vec!["192.0.2.3:5070".parse().unwrap()]);

        // Dropping the table ends the refresher.
        drop(t);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(task.is_finished());
    }

    /// An IP host needs no DNS and is never refreshed; a name that does not
    /// resolve yet is left out (and retried) rather than failing the rest.
    #[tokio::test(start_paused = true)]
    async fn literals_never_refresh_and_unresolved_trunks_are_left_out() {
        let zone = Zone::default();
        let now = || tokio::time::Instant::now().into_std();
        let t = table("192.0.2.9", Some(5080));
        t.refresh_due(&zone, now).await;
        assert_eq!(addrs(&t), vec!["192.0.2.9:5080".parse().unwrap()]);
        assert_eq!(t.next_due(), None);
        assert_eq!(zone.queries.load(Ordering::SeqCst), 0);

        let t = table("missing.example", Some(5060));
        t.refresh_due(&zone, now).await;
        assert!(t.trunks(&mut SeededRandom::new(1)).is_empty());
        assert_eq!(t.resolved_count(), 0);
        let retry = t.next_due().expect("retried");
        assert_eq!(retry - now(), super::super::RETRY_MIN);
    }
}
