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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
        let replay = if r.header("idempotent-replayed").is_some() {
            "replayed".to_string()
        } else {
            code
        };
        *m.entry((r.status, replay)).or_insert(0) += 1;
    }
    m
}

fn set_limits(edge: &Edge, tid: &str, limits: Value) {
    edge.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(&json!({"rate_limits": limits})),
    )
    .expect(200);
}

fn calls_of(edge: &Edge, key: &str) -> Vec<Value> {
    edge.call("GET", "/v1/calls?limit=100", key, None)
        .expect(200)
        .json["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn key_limit_is_exact_under_parallel_load(edge: &Edge) {
    let t = edge.provision_tenant("key-load");
    const L: usize = 25;
    const N: usize = 90;
    set_limits(
        edge,
        &t.id,
        json!({"per_key": {"limit": L, "window_seconds": 3600}}),
    );
    clear_of_window_boundary(3600);
    let rs = parallel(N, |_| edge.call("GET", "/v1/calls?limit=1", &t.key, None));
    let counts = tally(&rs);
    assert_eq!(counts.get(&(200, String::new())), Some(&L), "{counts:?}");
    assert_eq!(
        counts.get(&(429, "rate_limited".into())),
        Some(&(N - L)),
        "{counts:?}"
    );
    // Each accepted request saw a distinct remaining count: L-1 down to 0.
    let mut remaining: Vec<u64> = rs
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.header("x-ratelimit-remaining").unwrap().parse().unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..L as u64).collect::<Vec<_>>());
    for r in rs.iter().filter(|r| r.status == 429) {
        assert_eq!(r.header("x-ratelimit-limit"), Some(L.to_string().as_str()));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
    }
    // Another key of the same tenant has its own budget.
    let k2 = edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/api-keys", t.id),
            Some(&json!({})),
        )
        .expect(201)
        .json["key"]
        .as_str()
        .unwrap()
        .to_string();
    edge.call("GET", "/v1/calls", &k2, None).expect(200);
}

fn number_limit_is_exact_under_parallel_load(edge: &Edge) {
    let t = edge.provision_tenant("number-load");
    const L: usize = 6;
    const N: usize = 36;
    set_limits(
        edge,
        &t.id,
        json!({"per_number": {"limit": L, "window_seconds": 3600}}),
    );
    // One agent per request: the same agent could not call the number twice at once anyway.
    let agents: Vec<String> = (0..N)
        .map(|i| {
            edge.admin(
                "POST",
                &format!("/admin/tenants/{}/agents", t.id),
                Some(&json!({"name": format!("a{i}")})),
            )
            .expect(201)
            .json["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    clear_of_window_boundary(3600);
    let rs = parallel(N, |i| {
        edge.call(
            "POST",
            "/v1/calls",
            &t.key,
            Some(&json!({"phone": "+14155550177", "agent_id": agents[i]})),
        )
    });
    let counts = tally(&rs);
    assert_eq!(counts.get(&(201, String::new())), Some(&L), "{counts:?}");
    assert_eq!(
        counts.get(&(429, "rate_limited".into())),
        Some(&(N - L)),
        "{counts:?}"
    );
    assert_eq!(
        calls_of(edge, &t.key).len(),
        L,
        "exactly the accepted calls exist"
    );
    // Other numbers are not affected, and a per-agent override applies to its calls.
    edge.call(
        "POST",
        "/v1/calls",
        &t.key,
        Some(&json!({"phone": "+14155550178"})),
    )
    .expect(201);
    edge.admin(
        "PATCH",
        &format!("/admin/tenants/{}/agents/{}", t.id, agents[0]),
        Some(&json!({"per_number_limit": {"limit": 1000, "window_seconds": 60}})),
    )
    .expect(200);
    let r = edge.call(
        "POST",
        "/v1/calls",
        &t.key,
        Some(&json!({"phone": "+14155550177", "agent_id": agents[0]})),
    );
    // agents[0] may hold one of the accepted calls: then it is in progress, not rate limited.
    assert!(
        matches!(
            (r.status, r.json["error"]["code"].as_str()),
            (201, None) | (409, Some("call_in_progress"))
        ),
        "{}",
        r.text
    );
}

fn ip_limit_follows_cf_connecting_ip(edge: &Edge) {
    let t = edge.provision_tenant("ip");
    set_limits(
        edge,
        &t.id,
        json!({"per_ip": {"limit": 3, "window_seconds": 3600}}),
    );
    clear_of_window_boundary(3600);
    let auth = format!("Bearer {}", t.key);
    let get = |ip: &str| {
        edge.request(
            "GET",
            "/v1/calls",
            &[("authorization", auth.as_str()), ("cf-connecting-ip", ip)],
            None,
        )
        .unwrap()
    };
    let statuses: Vec<u16> = (0..4).map(|_| get("198.51.100.7").status).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let other = get("198.51.100.8");
    assert_eq!(other.status, 200);
    assert_eq!(
        other.header("x-ratelimit-limit"),
        Some("3"),
        "the IP limit is the tightest"
    );
}

/// This suite's limit of wrong credentials per client address (`AUTH_FAILURE_LIMIT`).
const AUTH_FAILURE_LIMIT: usize = 5;

fn wrong_credentials_are_throttled_per_address_exactly_under_parallel_load(edge: &Edge) {
    let t = edge.provision_tenant("authfail");
    clear_of_window_boundary(300);
    let send = |path: &str, token: &str, ip: &str| {
        let auth = format!("Bearer {token}");
        edge.request(
            "GET",
            path,
            &[("authorization", auth.as_str()), ("cf-connecting-ip", ip)],
            None,
        )
        .unwrap()
    };
    // Admin token guesses in parallel from one address: exactly the limit are
    // answered (401), every other one is refused (429), whatever it guessed.
    let guesses = parallel(20, |i| {
        send("/admin/sidecars", &format!("guess-{i}"), "203.0.113.50")
    });
    let counts = tally(&guesses);
    assert_eq!(
        counts.get(&(401, "invalid_credentials".into())),
        Some(&AUTH_FAILURE_LIMIT),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&(429, "too_many_failed_attempts".into())),
        Some(&(20 - AUTH_FAILURE_LIMIT)),
        "{counts:?}"
    );
    let right = send("/admin/sidecars", &edge.admin_token, "203.0.113.50");
    assert_eq!(
        right.status, 429,
        "the right token too, from a blocked address"
    );
    let retry: u64 = right.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(
        send("/admin/sidecars", &edge.admin_token, "203.0.113.51").status,
        200,
        "another address is not affected"
    );
    // Unknown API keys: counted the same way; a valid key is still served there.
    let keys = parallel(20, |i| {
        send("/v1/calls", &format!("ak_{i:032}"), "203.0.113.60")
    });
    let counts = tally(&keys);
    assert_eq!(
        counts.get(&(401, "invalid_credentials".into())),
        Some(&AUTH_FAILURE_LIMIT),
        "{counts:?}"
    );
    assert_eq!(send("/v1/calls", &t.key, "203.0.113.60").status, 200);
}

fn idempotency_key_creates_exactly_one_call_under_concurrency(edge: &Edge) {
    let t = edge.provision_tenant("idem");
    let body = json!({"phone": "+14155550188", "metadata": {"order": 1}});
    let raw = body.to_string();
    let auth = format!("Bearer {}", t.key);
    let post = |key: &str, raw: &str| {
        edge.request(
            "POST",
            "/v1/calls",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            Some(raw.as_bytes()),
        )
        .unwrap()
    };
    const N: usize = 24;
    let rs = parallel(N, |_| post("order-1", &raw));
    let counts = tally(&rs);
    assert_eq!(
        counts.get(&(201, String::new())),
        Some(&1),
        "exactly one original: {counts:?}"
    );
    for (status, what) in counts.keys() {
        assert!(
            matches!(
                (*status, what.as_str()),
                (201, "") | (201, "replayed") | (409, "idempotency_key_in_flight")
            ),
            "{counts:?}"
        );
    }
    let original = rs
        .iter()
        .find(|r| r.status == 201 && r.header("idempotent-replayed").is_none())
        .unwrap();
    for r in rs
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_some())
    {
        assert_eq!(r.text, original.text, "a replay is the original body");
        assert_eq!(r.header("location"), original.header("location"));
    }
    let calls = calls_of(edge, &t.key);
    // provision_tenant places no call; this key made exactly one.
    assert_eq!(calls.len(), 1, "{calls:?}");
    // Later: replayed as is; a different body under the same key is refused.
    let again = post("order-1", &raw).expect(201);
    assert_eq!(
        (again.header("idempotent-replayed"), again.text.as_str()),
        (Some("true"), original.text.as_str())
    );
    post("order-1", &json!({"phone": "+14155550189"}).to_string())
        .expect_error(422, "idempotency_key_reused");
    post("bad key", &raw).expect_error(400, "invalid_parameter");
}

fn a_call_in_progress_is_refused_exactly_once_under_concurrency(edge: &Edge) {
    let t = edge.provision_tenant("dedupe");
    // Refused attempts count against the number too; keep that limit out of the way here.
    set_limits(
        edge,
        &t.id,
        json!({"per_number": {"limit": 1000, "window_seconds": 3600}}),
    );
    const N: usize = 24;
    let rs = parallel(N, |_| {
        edge.call(
            "POST",
            "/v1/calls",
            &t.key,
            Some(&json!({"phone": "+14155550199"})),
        )
    });
    let counts = tally(&rs);
    assert_eq!(counts.get(&(201, String::new())), Some(&1), "{counts:?}");
    assert_eq!(
        counts.get(&(409, "call_in_progress".into())),
        Some(&(N - 1)),
        "{counts:?}"
    );
    // The refused requests left no record behind.
    let calls = calls_of(edge, &t.key);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let id = calls[0]["id"].as_str().unwrap();
    assert!(
        rs.iter()
            .filter(|r| r.status == 409)
            .all(|r| r.text.contains(id)),
        "409 names the call in progress"
    );
    // Hung up (cancelled): the number is free for this agent again.
    edge.call("POST", &format!("/v1/calls/{id}/hangup"), &t.key, None)
        .expect(200);
    edge.call(
        "POST",
        "/v1/calls",
        &t.key,
        Some(&json!({"phone": "+14155550199"})),
    )
    .expect(201);
}

/// Call ids in a lease answer.
fn offered(r: &Resp) -> Vec<String> {
    r.json["offers"]
        .as_array()
        .map(|o| {
            o.iter()
                .filter_map(|o| o["call_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Leases everything due for `mine` (acking it) until a poll brings nothing
/// new; calls of other cases' tenants are acked and ended at once so they
/// cannot hide a wrong count. Returns the new offers of `mine`.
fn lease_all(
    edge: &Edge,
    sc: &ProtocolSidecar,
    mine: &[String],
    held: &mut Vec<String>,
) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let held_refs: Vec<&str> = held.iter().map(String::as_str).collect();
        let r = sc
            .poll(edge, 10 - held.len() as u32, &held_refs, 300)
            .expect(200);
        let offers = r.json["offers"].as_array().cloned().unwrap_or_default();
        if offers.is_empty() {
            return got;
        }
        for o in offers {
            sc.ack(edge, &o, true).expect(200);
            let id = o["call_id"].as_str().unwrap().to_string();
            if mine.contains(&id) {
                held.push(id);
                got.push(o);
            } else {
                sc.complete(edge, &id, o["attempt"].as_u64().unwrap())
                    .expect(200);
            }
        }
    }
}

fn wait_status(edge: &Edge, key: &str, id: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let call = edge
            .call("GET", &format!("/v1/calls/{id}"), key, None)
            .expect(200)
            .json;
        if call["status"] == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "call {id} never became {want}: {call}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Twenty calls at once in reject mode against a cap of three: exactly three
/// are created, whatever order they reach the region's queue in.
fn reject_mode_admits_exactly_the_cap_under_parallel_load(edge: &Edge) {
    let t = edge.provision_tenant("cap-parallel");
    edge.admin(
        "PATCH",
        &format!("/admin/tenants/{}", t.id),
        Some(&json!({"max_concurrent_calls": 3})),
    )
    .expect(200);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let key = t.key.clone();
                s.spawn(move || {
                    let body = json!({"phone": format!("+1415555061{i:02}"), "on_concurrency_limit": "reject"});
                    edge.call("POST", "/v1/calls", &key, Some(&body)).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((created, refused), (3, 17), "{statuses:?}");
    assert_eq!(
        calls_of(edge, &t.key).len(),
        3,
        "refused calls leave nothing behind"
    );
}

fn a_concurrency_cap_holds_calls_back_until_one_ends(edge: &Edge) {
    let t = edge.provision_tenant("cap");
    let tp = format!("/admin/tenants/{}", t.id);
    assert_eq!(
        edge.admin("PATCH", &tp, Some(&json!({"max_concurrent_calls": 2})))
            .expect(200)
            .json["max_concurrent_calls"],
        2
    );
    let sc = ProtocolSidecar::create(edge, "cap-1");
    sc.register(edge, 10).expect(200);
    let mine: Vec<String> = (0..5)
        .map(|i| {
            edge.call(
                "POST",
                "/v1/calls",
                &t.key,
                Some(&json!({"phone": format!("+1415555030{i}")})),
            )
            .expect(201)
            .json["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // Ten free slots, five due calls: exactly two are offered.
    let mut held = Vec::new();
    let first = lease_all(edge, &sc, &mine, &mut held);
    assert_eq!(first.len(), 2, "offers: {first:?}");
    assert_eq!(held, mine[..2], "oldest first");
    for id in &mine[2..] {
        wait_status(edge, &t.key, id, "queued");
    }
    // Reject mode refuses a call over the cap and leaves nothing behind.
    let over = json!({"phone": "+14155550399", "on_concurrency_limit": "reject"});
    let r = edge.call("POST", "/v1/calls", &t.key, Some(&over));
    assert_eq!(r.header("retry-after"), Some("15"));
    r.expect_error(429, "concurrency_limit_reached");
    assert_eq!(calls_of(edge, &t.key).len(), 5);
    // One ends: the next one (and only it) is offered, to an open poll.
    let held_refs: Vec<&str> = held.iter().map(String::as_str).collect();
    let next = std::thread::scope(|s| {
        let poller = s.spawn(|| sc.poll(edge, 8, &held_refs, 5_000).expect(200));
        std::thread::sleep(Duration::from_millis(300));
        sc.complete(edge, &mine[0], 1).expect(200);
        poller.join().unwrap()
    });
    assert_eq!(offered(&next), [mine[2].clone()]);
    sc.ack(edge, &next.json["offers"][0], true).expect(200);
    held.retain(|id| id != &mine[0]);
    held.push(mine[2].clone());
    wait_status(edge, &t.key, &mine[0], "completed");
    assert!(
        lease_all(edge, &sc, &mine, &mut held).is_empty(),
        "still at the cap"
    );
    // Without the cap the rest is offered at once.
    edge.admin("PATCH", &tp, Some(&json!({"max_concurrent_calls": null})))
        .expect(200);
    let r = edge
        .call(
            "POST",
            "/v1/calls",
            &t.key,
            Some(&json!({"phone": "+14155550398", "on_concurrency_limit": "reject"})),
        )
        .expect(201);
    let mut all = mine.clone();
    all.push(r.json["id"].as_str().unwrap().to_string());
    assert_eq!(lease_all(edge, &sc, &all, &mut held).len(), 3);
    for id in &held {
        sc.complete(edge, id, 1).expect(200);
    }
}

/// `X-Signature` as a client computes it (v2: method, path and query bound).
fn x_signature(secret: &str, t: u64, method: &str, path: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}\n{method}\n{path}\n").as_bytes());
    mac.update(body);
    format!("t={t},v2={}", hex::encode(mac.finalize().into_bytes()))
}

/// The retired body-only scheme, as an old client computes it.
fn x_signature_v1(secret: &str, t: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn signed_requests_are_accepted_once_and_everything_else_refused(edge: &Edge) {
    let t = edge.provision_tenant("signed");
    let k = edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/api-keys", t.id),
            Some(&json!({"require_signature": true})),
        )
        .expect(201)
        .json;
    let (key, secret) = (
        k["key"].as_str().unwrap(),
        k["signing_secret"].as_str().unwrap(),
    );
    let auth = format!("Bearer {key}");
    let send = |method: &str, path: &str, body: &str, sig: Option<&str>| {
        let mut h = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(sig) = sig {
            h.push(("x-signature", sig));
        }
        edge.request(
            method,
            path,
            &h,
            (!body.is_empty()).then_some(body.as_bytes()),
        )
        .unwrap()
    };
    let now = || now_secs();
    let body = json!({"phone": "+14155550401", "metadata": {"n": 1}}).to_string();
    let sig = x_signature(secret, now(), "POST", "/v1/calls", body.as_bytes());
    let created = send("POST", "/v1/calls", &body, Some(&sig)).expect(201);
    // The exact request again, as captured: refused, and it placed nothing.
    send("POST", "/v1/calls", &body, Some(&sig)).expect_error(401, "replayed_request");
    send("POST", "/v1/calls", &body, None).expect_error(401, "invalid_request_signature");
    let tampered = json!({"phone": "+14155550402", "metadata": {"n": 1}}).to_string();
    send("POST", "/v1/calls", &tampered, Some(&sig)).expect_error(401, "invalid_request_signature");
    send(
        "POST",
        "/v1/calls",
        &tampered,
        Some(&x_signature(
            "sks_wrong",
            now(),
            "POST",
            "/v1/calls",
            tampered.as_bytes(),
        )),
    )
    .expect_error(401, "invalid_request_signature");
    send(
        "POST",
        "/v1/calls",
        &tampered,
        Some(&x_signature(
            secret,
            now() - 301,
            "POST",
            "/v1/calls",
            tampered.as_bytes(),
        )),
    )
    .expect_error(401, "invalid_request_signature");
    send(
        "POST",
        "/v1/calls",
        &tampered,
        Some(&x_signature(
            secret,
            now() + 301,
            "POST",
            "/v1/calls",
            tampered.as_bytes(),
        )),
    )
    .expect_error(401, "invalid_request_signature");
    send("POST", "/v1/calls", &tampered, Some("t=1,v2=zz"))
        .expect_error(401, "invalid_request_signature");
    // Reads are signed too (empty body); each signature works once.
    let id = created.json["id"].as_str().unwrap();
    let read_path = format!("/v1/calls/{id}");
    let get_sig = x_signature(secret, now(), "GET", &read_path, b"");
    // Captured on the read, replayed as a hangup (or a read of another
    // call) before the read itself: method and path are signed, so refused.
    send("POST", &format!("{read_path}/hangup"), "", Some(&get_sig))
        .expect_error(401, "invalid_request_signature");
    send("GET", "/v1/calls/c_other", "", Some(&get_sig))
        .expect_error(401, "invalid_request_signature");
    let read = send("GET", &read_path, "", Some(&get_sig)).expect(200);
    assert_eq!(read.json["id"], id);
    assert_eq!(read.json["status"], "queued", "the replay hung nothing up");
    send("GET", &read_path, "", Some(&get_sig)).expect_error(401, "replayed_request");
    // The query is signed as sent.
    let list = "/v1/calls?limit=1";
    let list_sig = x_signature(secret, now(), "GET", list, b"");
    send("GET", "/v1/calls?limit=2", "", Some(&list_sig))
        .expect_error(401, "invalid_request_signature");
    send("GET", list, "", Some(&list_sig)).expect(200);
    // An old client's v1 is told to move to v2, not that its secret is wrong.
    let old = send(
        "GET",
        &read_path,
        "",
        Some(&x_signature_v1(secret, now(), b"")),
    );
    assert!(old.text.contains("v2="), "{}", old.text);
    old.expect_error(401, "signature_version_unsupported");
    // Replayed in parallel: exactly one gets through (the tenant's object decides).
    let body = json!({"phone": "+14155550403"}).to_string();
    let sig = x_signature(secret, now(), "POST", "/v1/calls", body.as_bytes());
    let counts = tally(&parallel(24, |_| {
        send("POST", "/v1/calls", &body, Some(&sig))
    }));
    assert_eq!(counts.get(&(201, String::new())), Some(&1), "{counts:?}");
    assert_eq!(
        counts.get(&(401, "replayed_request".into())),
        Some(&23),
        "{counts:?}"
    );
    // Exactly the two accepted calls exist; the tenant's other key needs no signature.
    assert_eq!(calls_of(edge, &t.key).len(), 2);
    let keys = edge
        .admin("GET", &format!("/admin/tenants/{}/api-keys", t.id), None)
        .expect(200);
    assert!(
        !keys.text.contains(secret),
        "the signing secret is shown once"
    );
}

fn a_call_outside_the_agents_calling_window_is_moved_or_refused(edge: &Edge) {
    let t = edge.provision_tenant("window");
    // A daily window opening two hours from now in Asia/Kolkata (UTC+05:30,
    // no DST): the bundled tzdb at work inside the Worker.
    let start_utc = (now_secs() + 2 * 3600) / 60 * 60;
    let local = (start_utc + 5 * 3600 + 1800) % 86_400;
    let hhmm = |secs: u64| format!("{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60);
    let window = json!({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": hhmm(local), "end": hhmm(local + 3600), "time_zone": "Asia/Kolkata"});
    let agent = edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/agents", t.id),
            Some(&json!({"name": "windowed", "calling_window": window})),
        )
        .expect(201)
        .json;
    assert_eq!(agent["calling_window"], window);
    let aid = agent["id"].as_str().unwrap();
    let call = edge
        .call(
            "POST",
            "/v1/calls",
            &t.key,
            Some(&json!({"phone": "+14155550501", "agent_id": aid})),
        )
        .expect(201)
        .json;
    let want = time::OffsetDateTime::from_unix_timestamp(start_utc as i64).unwrap();
    let got = time::OffsetDateTime::parse(
        call["schedule_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        (
            call["status"].as_str(),
            got,
            call["scheduled_reason"].as_str()
        ),
        (Some("scheduled"), want, Some("calling_window")),
        "{call}"
    );
    let read = edge
        .call(
            "GET",
            &format!("/v1/calls/{}", call["id"].as_str().unwrap()),
            &t.key,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(read["status"], "scheduled");
    edge.call(
        "POST",
        "/v1/calls",
        &t.key,
        Some(&json!({"phone": "+14155550502", "agent_id": aid, "outside_window": "reject"})),
    )
    .expect_error(422, "outside_calling_window");
    let bad = json!({"calling_window": {"days": ["mon"], "start": "09:00", "end": "18:00", "time_zone": "Europe/Atlantis"}});
    let field = edge
        .admin(
            "PATCH",
            &format!("/admin/tenants/{}/agents/{aid}", t.id),
            Some(&bad),
        )
        .expect_error(422, "invalid_value");
    assert_eq!(field.as_deref(), Some("calling_window.time_zone"));
    // Without a window the same request is queued at once.
    edge.admin(
        "PATCH",
        &format!("/admin/tenants/{}/agents/{aid}", t.id),
        Some(&json!({"calling_window": null})),
    )
    .expect(200);
    let now = edge
        .call(
            "POST",
            "/v1/calls",
            &t.key,
            Some(&json!({"phone": "+14155550502", "agent_id": aid, "outside_window": "reject"})),
        )
        .expect(201)
        .json;
    assert_eq!(
        (now["status"].as_str(), now["scheduled_reason"].as_str()),
        (Some("queued"), None)
    );
    // Cancel both so no later case's sidecar gets them.
    for id in [call["id"].as_str().unwrap(), now["id"].as_str().unwrap()] {
        edge.call("POST", &format!("/v1/calls/{id}/hangup"), &t.key, None)
            .expect(200);
    }
}

fn main() -> std::process::ExitCode {
    run_suite(
        "traffic",
        || {
            let mut opts = EdgeOptions::fresh("traffic");
            opts.vars
                .push(("AUTH_FAILURE_LIMIT".into(), AUTH_FAILURE_LIMIT.to_string()));
            Edge::start(opts)
        },
        &[
            (
                "a_concurrency_cap_holds_calls_back_until_one_ends",
                a_concurrency_cap_holds_calls_back_until_one_ends,
            ),
            (
                "reject_mode_admits_exactly_the_cap_under_parallel_load",
                reject_mode_admits_exactly_the_cap_under_parallel_load,
            ),
            (
                "key_limit_is_exact_under_parallel_load",
                key_limit_is_exact_under_parallel_load,
            ),
            (
                "number_limit_is_exact_under_parallel_load",
                number_limit_is_exact_under_parallel_load,
            ),
            (
                "ip_limit_follows_cf_connecting_ip",
                ip_limit_follows_cf_connecting_ip,
            ),
            (
                "wrong_credentials_are_throttled_per_address_exactly_under_parallel_load",
                wrong_credentials_are_throttled_per_address_exactly_under_parallel_load,
            ),
            (
                "idempotency_key_creates_exactly_one_call_under_concurrency",
                idempotency_key_creates_exactly_one_call_under_concurrency,
            ),
            (
                "a_call_in_progress_is_refused_exactly_once_under_concurrency",
                a_call_in_progress_is_refused_exactly_once_under_concurrency,
            ),
            (
                "signed_requests_are_accepted_once_and_everything_else_refused",
                signed_requests_are_accepted_once_and_everything_else_refused,
            ),
            (
                "a_call_outside_the_agents_calling_window_is_moved_or_refused",
                a_call_outside_the_agents_calling_window_is_moved_or_refused,
            ),
        ],
    )
}
