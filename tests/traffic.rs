//! End-to-end: traffic control against real `wrangler dev` (one `RateLimiter`
//! Durable Object per tenant, the region's `DispatchQueue`). Exactness is
//! shown by counting outcomes of many parallel requests on loopback, never by
//! timing: N concurrent requests against a limit L give exactly L accepted.

use std::collections::BTreeMap;
use std::sync::Barrier;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use voxline_e2e::*;

const THREADS: usize = 12;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Windows are fixed and aligned on the epoch: keep a burst clear of a
/// boundary so the count is about one window only.
fn clear_of_window_boundary(window_secs: u64) {
    let into = now_secs() % window_secs;
    if window_secs - into < 15 {
        std::thread::sleep(Duration::from_secs(window_secs - into + 1));
    }
}

/// Runs `requests` (each a closure) from THREADS threads released together;
/// returns every response.
fn parallel<F>(n: usize, f: F) -> Vec<Resp>
where
    F: Fn(usize) -> Resp + Sync,
{
    let barrier = Barrier::new(THREADS);
    let out = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (barrier, out, f) = (&barrier, &out, &f);
            s.spawn(move || {
                barrier.wait();
                let mine: Vec<Resp> = (t..n).step_by(THREADS).map(f).collect();
                out.lock().unwrap().extend(mine);
            });
        }
    });
    out.into_inner().unwrap()
}

fn tally(rs: &[Resp]) -> BTreeMap<(u16, String), usize> {
    let mut m = BTreeMap::new();
    for r in rs {
        let code = r.json["error"]["code"].as_str().unwrap_or("").to_string();
        let replay = if r.header("idempotent-replayed").is_some() { "replayed".to_string() } else { code };
        *m.entry((r.status, replay)).or_insert(0) += 1;
    }
    m
}

fn set_limits(edge: &Edge, tid: &str, limits: Value) {
    edge.admin("PATCH", &format!("/admin/tenants/{tid}"), Some(&json!({"rate_limits": limits}))).expect(200);
}

fn calls_of(edge: &Edge, key: &str) -> Vec<Value> {
    edge.call("GET", "/v1/calls?limit=100", key, None).expect(200).json["data"].as_array().cloned().unwrap_or_default()
}

fn key_limit_is_exact_under_parallel_load(edge: &Edge) {
    let t = edge.provision_tenant("key-load");
    const L: usize = 25;
    const N: usize = 90;
    set_limits(edge, &t.id, json!({"per_key": {"limit": L, "window_seconds": 3600}}));
    clear_of_window_boundary(3600);
    let rs = parallel(N, |_| edge.call("GET", "/v1/calls?limit=1", &t.key, None));
    let counts = tally(&rs);
    assert_eq!(counts.get(&(200, String::new())), Some(&L), "{counts:?}");
    assert_eq!(counts.get(&(429, "rate_limited".into())), Some(&(N - L)), "{counts:?}");
    // Each accepted request saw a distinct remaining count: L-1 down to 0.
    let mut remaining: Vec<u64> = rs.iter().filter(|r| r.status == 200).map(|r| r.header("x-ratelimit-remaining").unwrap().parse().unwrap()).collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..L as u64).collect::<Vec<_>>());
    for r in rs.iter().filter(|r| r.status == 429) {
        assert_eq!(r.header("x-ratelimit-limit"), Some(L.to_string().as_str()));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
    }
    // Another key of the same tenant has its own budget.
    let k2 = edge.admin("POST", &format!("/admin/tenants/{}/api-keys", t.id), Some(&json!({}))).expect(201).json["key"].as_str().unwrap().to_string();
    edge.call("GET", "/v1/calls", &k2, None).expect(200);
}

fn number_limit_is_exact_under_parallel_load(edge: &Edge) {
    let t = edge.provision_tenant("number-load");
    const L: usize = 6;
    const N: usize = 36;
    set_limits(edge, &t.id, json!({"per_number": {"limit": L, "window_seconds": 3600}}));
    // One agent per request: the same agent could not call the number twice at once anyway.
    let agents: Vec<String> = (0..N)
        .map(|i| edge.admin("POST", &format!("/admin/tenants/{}/agents", t.id), Some(&json!({"name": format!("a{i}")}))).expect(201).json["id"].as_str().unwrap().to_string())
        .collect();
    clear_of_window_boundary(3600);
    let rs = parallel(N, |i| edge.call("POST", "/v1/calls", &t.key, Some(&json!({"phone": "+14155550177", "agent_id": agents[i]}))));
    let counts = tally(&rs);
    assert_eq!(counts.get(&(201, String::new())), Some(&L), "{counts:?}");
    assert_eq!(counts.get(&(429, "rate_limited".into())), Some(&(N - L)), "{counts:?}");
    assert_eq!(calls_of(edge, &t.key).len(), L, "exactly the accepted calls exist");
    // Other numbers are not affected, and a per-agent override applies to its calls.
    edge.call("POST", "/v1/calls", &t.key, Some(&json!({"phone": "+14155550178"}))).expect(201);
    edge.admin("PATCH", &format!("/admin/tenants/{}/agents/{}", t.id, agents[0]), Some(&json!({"per_number_limit": {"limit": 1000, "window_seconds": 60}}))).expect(200);
    let r = edge.call("POST", "/v1/calls", &t.key, Some(&json!({"phone": "+14155550177", "agent_id": agents[0]})));
    // agents[0] may hold one of the accepted calls: then it is in progress, not rate limited.
    assert!(matches!((r.status, r.json["error"]["code"].as_str()), (201, None) | (409, Some("call_in_progress"))), "{}", r.text);
}

fn ip_limit_follows_cf_connecting_ip(edge: &Edge) {
    let t = edge.provision_tenant("ip");
    set_limits(edge, &t.id, json!({"per_ip": {"limit": 3, "window_seconds": 3600}}));
    clear_of_window_boundary(3600);
    let auth = format!("Bearer {}", t.key);
    let get = |ip: &str| edge.request("GET", "/v1/calls", &[("authorization", auth.as_str()), ("cf-connecting-ip", ip)], None).unwrap();
    let statuses: Vec<u16> = (0..4).map(|_| get("198.51.100.7").status).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let other = get("198.51.100.8");
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-ratelimit-limit"), Some("3"), "the IP limit is the tightest");
}

fn idempotency_key_creates_exactly_one_call_under_concurrency(edge: &Edge) {
    let t = edge.provision_tenant("idem");
    let body = json!({"phone": "+14155550188", "metadata": {"order": 1}});
    let raw = body.to_string();
    let auth = format!("Bearer {}", t.key);
    let post = |key: &str, raw: &str| {
        edge.request("POST", "/v1/calls", &[("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", key)], Some(raw.as_bytes())).unwrap()
    };
    const N: usize = 24;
    let rs = parallel(N, |_| post("order-1", &raw));
    let counts = tally(&rs);
    assert_eq!(counts.get(&(201, String::new())), Some(&1), "exactly one original: {counts:?}");
    for ((status, what), _) in &counts {
        assert!(matches!((*status, what.as_str()), (201, "") | (201, "replayed") | (409, "idempotency_key_in_flight")), "{counts:?}");
    }
    let original = rs.iter().find(|r| r.status == 201 && r.header("idempotent-replayed").is_none()).unwrap();
    for r in rs.iter().filter(|r| r.header("idempotent-replayed").is_some()) {
        assert_eq!(r.text, original.text, "a replay is the original body");
        assert_eq!(r.header("location"), original.header("location"));
    }
    let calls = calls_of(edge, &t.key);
    // provision_tenant places no call; this key made exactly one.
    assert_eq!(calls.len(), 1, "{calls:?}");
    // Later: replayed as is; a different body under the same key is refused.
    let again = post("order-1", &raw).expect(201);
    assert_eq!((again.header("idempotent-replayed"), again.text.as_str()), (Some("true"), original.text.as_str()));
    post("order-1", &json!({"phone": "+14155550189"}).to_string()).expect_error(422, "idempotency_key_reused");
    post("bad key", &raw).expect_error(400, "invalid_parameter");
}

fn a_call_in_progress_is_refused_exactly_once_under_concurrency(edge: &Edge) {
    let t = edge.provision_tenant("dedupe");
    // Refused attempts count against the number too; keep that limit out of the way here.
    set_limits(edge, &t.id, json!({"per_number": {"limit": 1000, "window_seconds": 3600}}));
    const N: usize = 24;
    let rs = parallel(N, |_| edge.call("POST", "/v1/calls", &t.key, Some(&json!({"phone": "+14155550199"}))));
    let counts = tally(&rs);
    assert_eq!(counts.get(&(201, String::new())), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&(409, "call_in_progress".into())), Some(&(N - 1)), "{counts:?}");
    // The refused requests left no record behind.
    let calls = calls_of(edge, &t.key);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let id = calls[0]["id"].as_str().unwrap();
    assert!(rs.iter().filter(|r| r.status == 409).all(|r| r.text.contains(id)), "409 names the call in progress");
    // Hung up (cancelled): the number is free for this agent again.
    edge.call("POST", &format!("/v1/calls/{id}/hangup"), &t.key, None).expect(200);
    edge.call("POST", "/v1/calls", &t.key, Some(&json!({"phone": "+14155550199"}))).expect(201);
}

fn main() -> std::process::ExitCode {
    run_suite(
        "traffic",
        || Edge::start(EdgeOptions::fresh("traffic")),
        &[
            ("key_limit_is_exact_under_parallel_load", key_limit_is_exact_under_parallel_load),
            ("number_limit_is_exact_under_parallel_load", number_limit_is_exact_under_parallel_load),
            ("ip_limit_follows_cf_connecting_ip", ip_limit_follows_cf_connecting_ip),
            ("idempotency_key_creates_exactly_one_call_under_concurrency", idempotency_key_creates_exactly_one_call_under_concurrency),
            ("a_call_in_progress_is_refused_exactly_once_under_concurrency", a_call_in_progress_is_refused_exactly_once_under_concurrency),
        ],
    )
}
