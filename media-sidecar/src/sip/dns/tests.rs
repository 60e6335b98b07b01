//! RFC 3263 selection, RFC 2782 weighting and the TTL bookkeeping, without
//! sockets: a zone is a map from query to answer, time is hand-advanced.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::random::{Random, SeededRandom};

const V4: Families = Families {
    v4: true,
    v6: false,
};

type Zone = HashMap<Query, Result<Records, LookupError>>;

fn q(name: &str, kind: RecordKind) -> Query {
    Query {
        name: name.into(),
        kind,
    }
}

fn naptr(order: u16, pref: u16, flags: &str, services: &str, replacement: &str) -> Naptr {
    Naptr {
        order,
        preference: pref,
        flags: flags.into(),
        services: services.into(),
        replacement: replacement.into(),
        ttl: 300,
    }
}

fn srv(priority: u16, weight: u16, port: u16, target: &str, ttl: u32) -> Srv {
    Srv {
        priority,
        weight,
        port,
        target: target.into(),
        ttl,
    }
}

fn a(ips: &[&str], ttl: u32) -> Result<Records, LookupError> {
    Ok(Records::Addrs(
        ips.iter()
            .map(|ip| Addr {
                ip: ip.parse().unwrap(),
                ttl,
            })
            .collect(),
    ))
}

/// Runs the resolution over `zone` (absent: no records); the queries asked, and the end.
fn run(request: Request, zone: &Zone) -> (Vec<Query>, Result<Resolved, DnsError>) {
    let mut r = Resolution::new(request);
    let mut asked = Vec::new();
    let mut step = r.start();
    loop {
        match step {
            Step::Done(result) => return (asked, result),
            Step::Query(query) => {
                assert!(asked.len() <= MAX_QUERIES, "{asked:?}");
                let answer = zone
                    .get(&query)
                    .cloned()
                    .unwrap_or(Err(LookupError::NoRecords));
                asked.push(query);
                step = r.answer(answer);
            }
        }
    }
}

fn req(host: &str, port: Option<u16>, transport: Transport) -> Request {
    Request::new(host, port, transport, V4).unwrap()
}

fn addrs(r: &Resolved, seed: u64) -> Vec<SocketAddr> {
    r.ordered(&mut SeededRandom::new(seed))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// NAPTR -> SRV -> A: only the records of our transport with flag "s", in
/// (order, preference); the SRV name is the NAPTR's replacement (not
/// `_sip._udp.<host>`); addresses on SRV's ports; the smallest TTL counts.
#[test]
fn naptr_then_srv_then_a_for_the_configured_transport() {
    let mut zone = Zone::new();
    zone.insert(
        q("example.com.", RecordKind::Naptr),
        Ok(Records::Naptr(vec![
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
            naptr(20, 10, "s", "SIP+D2T", "_sip._tcp.example.com."),
            naptr(30, 10, "S", "sip+d2u", "_sip._udp.b.example.com."),
            naptr(30, 5, "s", "SIP+D2U", "_sip._udp.a.example.com."),
            naptr(5, 5, "u", "SIP+D2U", "!.*!sip:x@y!"),
        ])),
    );
    zone.insert(
        q("_sip._udp.a.example.com.", RecordKind::Srv),
        Ok(Records::Srv(vec![srv(
            10,
            0,
            5070,
            "sip1.example.com.",
            120,
        )])),
    );
    zone.insert(
        q("_sip._udp.b.example.com.", RecordKind::Srv),
        Ok(Records::Srv(vec![srv(
            10,
            0,
            5080,
            "sip2.example.com.",
            600,
        )])),
    );
    zone.insert(
        q("_sip._udp.example.com.", RecordKind::Srv),
        Ok(Records::Srv(vec![srv(
            10,
            0,
            9999,
            "wrong.example.com.",
            600,
        )])),
    );
    zone.insert(q("sip1.example.com.", RecordKind::A), a(&["192.0.2.1"], 60));
    zone.insert(
        q("sip2.example.com.", RecordKind::A),
        a(&["192.0.2.2", "192.0.2.3"], 3600),
    );

    let (asked, r) = run(req("Example.COM", None, Transport::Udp), &zone);
    let r = r.unwrap();
    assert_eq!(
        asked,
        [
            q("example.com.", RecordKind::Naptr),
            q("_sip._udp.a.example.com.", RecordKind::Srv),
            q("_sip._udp.b.example.com.", RecordKind::Srv),
            q("sip1.example.com.", RecordKind::A),
            q("sip2.example.com.", RecordKind::A),
        ]
    );
    assert!(r.via_srv);
    assert_eq!(r.ttl, Some(Duration::from_secs(60)));
    assert_eq!(
        addrs(&r, 1),
        [
            sa("192.0.2.1:5070"),
            sa("192.0.2.2:5080"),
            sa("192.0.2.3:5080")
        ]
    );

    // The same zone for a TLS trunk: the SIPS+D2T record.
    let (asked, _) = run(req("example.com", None, Transport::Tls), &zone);
    assert_eq!(asked[1], q("_sips._tcp.example.com.", RecordKind::Srv));
    let (asked, _) = run(req("example.com", None, Transport::Tcp), &zone);
    assert_eq!(asked[1], q("_sip._tcp.example.com.", RecordKind::Srv));
}

/// No NAPTR (or none for our transport): SRV of `_sip._udp.<host>`; no SRV
/// either: the host's A records on the transport's default port.
#[test]
fn without_naptr_srv_of_the_host_then_its_own_address() {
    let mut zone = Zone::new();
    zone.insert(
        q("_sip._udp.pbx.example.", RecordKind::Srv),
        Ok(Records::Srv(vec![
            srv(20, 0, 5062, "b.pbx.example.", 300),
            srv(10, 0, 5061, "a.pbx.example.", 300),
        ])),
    );
    zone.insert(q("a.pbx.example.", RecordKind::A), a(&["192.0.2.10"], 300));
    zone.insert(q("b.pbx.example.", RecordKind::A), a(&["192.0.2.11"], 300));
    let (asked, r) = run(req("pbx.example", None, Transport::Udp), &zone);
    assert_eq!(asked[0], q("pbx.example.", RecordKind::Naptr));
    assert_eq!(asked[1], q("_sip._udp.pbx.example.", RecordKind::Srv));
    let r = r.unwrap();
    for seed in 0..20 {
        assert_eq!(
            addrs(&r, seed),
            [sa("192.0.2.10:5061"), sa("192.0.2.11:5062")],
            "priority 10 always first"
        );
    }

    // NAPTR records only for another transport: as if there were none.
    zone.insert(
        q("pbx.example.", RecordKind::Naptr),
        Ok(Records::Naptr(vec![naptr(
            10,
            10,
            "s",
            "SIPS+D2T",
            "_sips._tcp.pbx.example.",
        )])),
    );
    let (asked, _) = run(req("pbx.example", None, Transport::Udp), &zone);
    assert_eq!(asked[1], q("_sip._udp.pbx.example.", RecordKind::Srv));

    // No SRV: A of the host, 5060 (5061 for TLS); URIs may carry the port.
    let mut zone = Zone::new();
    zone.insert(q("plain.example.", RecordKind::A), a(&["192.0.2.20"], 300));
    let (asked, r) = run(req("plain.example", None, Transport::Udp), &zone);
    assert_eq!(asked.len(), 3, "{asked:?}");
    let r = r.unwrap();
    assert!(!r.via_srv);
    assert_eq!(addrs(&r, 1), [sa("192.0.2.20:5060")]);
    let (_, r) = run(req("plain.example", None, Transport::Tls), &zone);
    assert_eq!(addrs(&r.unwrap(), 1), [sa("192.0.2.20:5061")]);
}

/// An explicit port: A/AAAA only (per the socket's family); an IP: nothing
/// asked, never expires.
#[test]
fn an_explicit_port_asks_only_for_addresses_and_an_ip_for_nothing() {
    let mut zone = Zone::new();
    zone.insert(q("pbx.example.", RecordKind::A), a(&["192.0.2.30"], 300));
    zone.insert(
        q("pbx.example.", RecordKind::Aaaa),
        a(&["2001:db8::30"], 300),
    );
    let (asked, r) = run(req("pbx.example", Some(5099), Transport::Udp), &zone);
    assert_eq!(asked, [q("pbx.example.", RecordKind::A)]);
    assert_eq!(addrs(&r.unwrap(), 1), [sa("192.0.2.30:5099")]);

    let v6 = Families::reachable_from("::1".parse().unwrap());
    let request = Request::new("pbx.example", Some(5099), Transport::Udp, v6).unwrap();
    let (asked, r) = run(request, &zone);
    assert_eq!(asked, [q("pbx.example.", RecordKind::Aaaa)]);
    assert_eq!(addrs(&r.unwrap(), 1), [sa("[2001:db8::30]:5099")]);

    let both = Families { v4: true, v6: true };
    let request = Request::new("pbx.example", Some(5099), Transport::Udp, both).unwrap();
    let (_, r) = run(request, &zone);
    assert_eq!(
        addrs(&r.unwrap(), 1),
        [sa("192.0.2.30:5099"), sa("[2001:db8::30]:5099")]
    );

    for (host, port, want) in [
        ("192.0.2.40", None, "192.0.2.40:5060"),
        ("192.0.2.40", Some(5070), "192.0.2.40:5070"),
        ("[2001:db8::40]", Some(5070), "[2001:db8::40]:5070"),
        ("2001:db8::40", None, "[2001:db8::40]:5060"),
    ] {
        let (asked, r) = run(req(host, port, Transport::Udp), &Zone::new());
        let r = r.unwrap();
        assert!(asked.is_empty());
        assert_eq!((addrs(&r, 1), r.ttl), (vec![sa(want)], None));
    }
}

#[test]
fn srv_dot_failures_and_missing_addresses_are_errors() {
    let mut zone = Zone::new();
    zone.insert(
        q("_sip._udp.no.example.", RecordKind::Srv),
        Ok(Records::Srv(vec![srv(0, 0, 0, ".", 300)])),
    );
    zone.insert(q("no.example.", RecordKind::A), a(&["192.0.2.50"], 300));
    let (_, r) = run(req("no.example", None, Transport::Udp), &zone);
    assert_eq!(r.unwrap_err().code(), "service_unavailable");

    let mut zone = Zone::new();
    zone.insert(
        q("flaky.example.", RecordKind::Naptr),
        Err(LookupError::Failed("SERVFAIL".into())),
    );
    zone.insert(q("flaky.example.", RecordKind::A), a(&["192.0.2.51"], 300));
    let (asked, r) = run(req("flaky.example", None, Transport::Udp), &zone);
    assert_eq!(asked.len(), 1, "a failed query is not a missing record");
    assert_eq!(r.unwrap_err().code(), "lookup_failed");

    let mut zone = Zone::new();
    zone.insert(
        q("loop.example.", RecordKind::A),
        Err(LookupError::CnameChainTooLong),
    );
    let (_, r) = run(req("loop.example", Some(5060), Transport::Udp), &zone);
    assert_eq!(r.unwrap_err().code(), "cname_chain_too_long");

    let (_, r) = run(req("nothing.example", None, Transport::Udp), &Zone::new());
    assert_eq!(r.unwrap_err().code(), "no_address");

    // An answer of the wrong type is not taken.
    let mut zone = Zone::new();
    zone.insert(
        q("odd.example.", RecordKind::A),
        Ok(Records::Srv(vec![srv(1, 1, 1, "x.example.", 1)])),
    );
    let (_, r) = run(req("odd.example", Some(5060), Transport::Udp), &zone);
    assert_eq!(r.unwrap_err().code(), "lookup_failed");

    for bad in ["", "a..b", "-x.example", "sp ace.example", &"x".repeat(64)] {
        let e = Request::new(bad, None, Transport::Udp, V4).unwrap_err();
        assert_eq!(e.code(), "bad_name", "{bad:?}");
    }
}

/// Hostile zones stay bounded: 100 SRV records become at most MAX_TARGETS
/// lookups and MAX_ADDRESSES attempts; TTLs are clamped both ways.
#[test]
fn records_targets_addresses_and_ttls_are_bounded() {
    let mut zone = Zone::new();
    let many: Vec<Srv> = (0..100u16)
        .map(|i| srv(i, 1, 5000 + i, &format!("t{i}.big.example."), 0))
        .collect();
    zone.insert(
        q("_sip._udp.big.example.", RecordKind::Srv),
        Ok(Records::Srv(many)),
    );
    for i in 0..100 {
        let ips: Vec<String> = (1..=10).map(|j| format!("10.0.{i}.{j}")).collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        zone.insert(
            q(&format!("t{i}.big.example."), RecordKind::A),
            a(&ips, 999_999),
        );
    }
    let (asked, r) = run(req("big.example", None, Transport::Udp), &zone);
    let r = r.unwrap();
    assert_eq!(asked.len(), 2 + MAX_TARGETS);
    assert!(asked.len() <= MAX_QUERIES);
    assert_eq!(r.targets.len(), MAX_TARGETS);
    assert!(r
        .targets
        .iter()
        .all(|t| t.addrs.len() == MAX_ADDRS_PER_TARGET));
    assert_eq!(r.targets[0].priority, 0, "the best priorities are kept");
    let ordered = addrs(&r, 3);
    assert_eq!(ordered.len(), MAX_ADDRESSES);
    assert_eq!(ordered[0], sa("10.0.0.1:5000"));
    assert_eq!(r.ttl, Some(MIN_TTL), "TTL 0 counts as the minimum");

    let mut zone = Zone::new();
    zone.insert(
        q("long.example.", RecordKind::A),
        a(&["192.0.2.60"], u32::MAX),
    );
    let (_, r) = run(req("long.example", Some(5060), Transport::Udp), &zone);
    assert_eq!(r.unwrap().ttl, Some(MAX_TTL));
}

/// Random bytes handed out from a list of u32 draws.
struct Draws(Vec<u32>);

impl Random for Draws {
    fn fill(&mut self, buf: &mut [u8]) {
        let v = if self.0.is_empty() {
            0
        } else {
            self.0.remove(0)
        };
        buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]);
    }
    fn fork(&mut self) -> Box<dyn Random> {
        Box::new(Draws(Vec::new()))
    }
}

/// RFC 2782's selection, draw by draw: weight-0 records first in the
/// running sum; the first whose running sum reaches the draw is next.
#[test]
fn srv_weights_follow_rfc_2782() {
    // weights [10, 0, 30]: arranged [1 (0), 0 (10), 2 (30)], running sums 0, 10, 40.
    let w = [10, 0, 30];
    // draw 25 (mod 41) -> index 2; then [1 (0), 0 (10)] sums 0, 10: draw 0 -> index 1; then 0.
    assert_eq!(weighted_order(&w, &mut Draws(vec![25, 0, 0])), [2, 1, 0]);
    // draw 5 -> index 0; then [1 (0), 2 (30)]: draw 31 % 31 = 0 -> index 1.
    assert_eq!(weighted_order(&w, &mut Draws(vec![5, 31, 0])), [0, 1, 2]);
    // draw 0 picks the weight-0 record.
    assert_eq!(weighted_order(&w, &mut Draws(vec![0, 0, 0])), [1, 0, 2]);
    // All weights 0: the order as given.
    assert_eq!(
        weighted_order(&[0, 0, 0], &mut Draws(vec![7, 9, 11])),
        [0, 1, 2]
    );
    assert!(weighted_order(&[], &mut Draws(vec![])).is_empty());

    // Over many draws, weight 30 beside weight 10 comes first 30 times in 41
    // (the RFC's draw in 0..=sum).
    let mut rng = SeededRandom::new(42);
    let n = 4_000;
    let first_heavy = (0..n)
        .filter(|_| weighted_order(&[10, 30], &mut rng)[0] == 1)
        .count();
    let share = first_heavy as f64 / f64::from(n);
    assert!((0.70..0.77).contains(&share), "{share}");
}

/// Per call, targets of one priority are ordered by weight; across
/// priorities (and NAPTR ranks) never.
#[test]
fn ordered_draws_weights_only_within_a_priority() {
    let target = |name: &str, rank, priority, weight, ip: &str| Target {
        name: name.into(),
        port: 5060,
        rank,
        priority,
        weight,
        addrs: vec![ip.parse::<IpAddr>().unwrap()],
    };
    let r = Resolved {
        targets: vec![
            target("a.", 0, 10, 50, "192.0.2.1"),
            target("b.", 0, 10, 50, "192.0.2.2"),
            target("c.", 0, 20, 0, "192.0.2.3"),
            target("d.", 1, 5, 0, "192.0.2.4"),
        ],
        ttl: Some(MIN_TTL),
        via_srv: true,
        transport: Transport::Udp,
    };
    let mut firsts = std::collections::HashSet::new();
    for seed in 0..50 {
        let o = addrs(&r, seed);
        firsts.insert(o[0]);
        assert_eq!(&o[2..], [sa("192.0.2.3:5060"), sa("192.0.2.4:5060")]);
    }
    assert_eq!(
        firsts.len(),
        2,
        "both equal-weight targets come first sometimes"
    );
}

/// TTL bookkeeping on a hand-advanced clock: refresh at 3/4 of the TTL,
/// stale at the TTL, backoff after failures (2 s doubling to 60 s), reset
/// by a success; an answer without TTL is never refreshed.
#[test]
fn refresh_is_due_before_expiry_and_backs_off_after_failures() {
    let t0 = Instant::now();
    let s = |n: u64| Duration::from_secs(n);
    let mut r = Refresh::new(t0);
    assert!(r.is_due(t0), "nothing resolved yet");
    r.resolved(t0, Some(s(60)));
    assert!(!r.is_due(t0 + s(44)));
    assert!(r.is_due(t0 + s(45)));
    assert_eq!(r.next_at(), Some(t0 + s(45)));
    assert!(!r.is_stale(t0 + s(59)));
    assert!(r.is_stale(t0 + s(60)));

    let mut at = t0 + s(45);
    let mut delays = Vec::new();
    for _ in 0..8 {
        r.failed(at);
        let next = r.next_at().unwrap();
        delays.push((next - at).as_secs());
        at = next;
    }
    assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(r.failures(), 8);
    assert!(r.is_stale(at), "the last good answer is past its TTL");

    r.resolved(at, Some(s(600)));
    assert_eq!((r.failures(), r.next_at()), (0, Some(at + s(450))));
    assert!(!r.is_stale(at + s(599)));

    r.resolved(at, None);
    assert_eq!(r.next_at(), None);
    assert!(!r.is_due(at + MAX_TTL));
}
