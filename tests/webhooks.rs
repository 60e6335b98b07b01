//! End-to-end: webhook delivery from real `wrangler dev` (KV, the dispatch
//! Durable Object, Cloudflare Queues producer + consumer in workerd) to a
//! real receiver, `tests/webhooks/receiver.py`, which verifies every
//! delivery with the PyPI `standardwebhooks` package, unmodified (installed
//! into `.tools/venv` by `cargo xtask bootstrap`). Calls are driven through
//! the sidecar link by a protocol client signing as a sidecar does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_shared::sidecar_link::paths;
use voxline_shared::signing;
use voxline_testkit::now_ms;

struct World {
    edge: Edge,
    receiver: Mutex<WebhookReceiver>,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        let r = self
            .receiver
            .lock()
            .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
            .unwrap_or_default();
        let tail: Vec<String> = r
            .lines()
            .rev()
            .take(10)
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| format!("{} {}", v["name"], summary(&v)))
            .collect();
        format!(
            "{}\n--- receiver log ---\n{}",
            self.edge.diagnostics(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

// ---- the receiver process: voxline_e2e::WebhookReceiver ----

fn receiver(w: &World) -> std::sync::MutexGuard<'_, WebhookReceiver> {
    w.receiver.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `pred` holds for what `name` received; returns it.
fn wait_received(
    w: &World,
    name: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let got = receiver(w).received(name);
        if pred(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: never got {what}; got {:#?}",
            got.iter().map(summary).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn summary(r: &Value) -> String {
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    format!(
        "{} {} verified={} answered={}",
        body["type"], body["data"]["id"], r["verified"], r["answered"]
    )
}

fn body_of(r: &Value) -> Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

/// Events about the call: call events name it `data.id`, transcript and recording events `data.call_id`.
fn events_for<'a>(got: &'a [Value], call_id: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|r| {
            let d = &body_of(r)["data"];
            d["id"] == call_id || d["call_id"] == call_id
        })
        .collect()
}

fn types_for(got: &[Value], call_id: &str) -> Vec<String> {
    events_for(got, call_id)
        .iter()
        .map(|r| body_of(r)["type"].as_str().unwrap().to_string())
        .collect()
}

// ---- tenants, endpoints, calls ----

static PHONE: AtomicU64 = AtomicU64::new(0);

fn phone() -> String {
    format!("+1415555{:04}", 1000 + PHONE.fetch_add(1, Ordering::SeqCst))
}

fn place(w: &World, t: &TestTenant, metadata: Value) -> String {
    let r = w
        .edge
        .call(
            "POST",
            "/v1/calls",
            &t.key,
            Some(&json!({"phone": phone(), "metadata": metadata})),
        )
        .expect(201);
    r.json["id"].as_str().unwrap().to_string()
}

/// A webhook endpoint pointing at the receiver's hook `name`; returns (id, secret).
fn endpoint(w: &World, t: &TestTenant, name: &str, extra: Value) -> (String, String) {
    let mut body = json!({"url": receiver(w).url(name)});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let r = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/webhooks", t.id),
            Some(&body),
        )
        .expect(201);
    (
        r.json["id"].as_str().unwrap().to_string(),
        r.json["secret"].as_str().unwrap().to_string(),
    )
}

/// The tenant's deliveries of `event` for `call_id`, read in full.
fn deliveries_for(w: &World, t: &TestTenant, event: &str, call_id: &str) -> Vec<Value> {
    let list = w
        .edge
        .call(
            "GET",
            &format!("/v1/webhooks/deliveries?event={event}&limit=100"),
            &t.key,
            None,
        )
        .expect(200);
    list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["call_id"] == call_id)
        .map(|d| {
            w.edge
                .call(
                    "GET",
                    &format!("/v1/webhooks/deliveries/{}", d["id"].as_str().unwrap()),
                    &t.key,
                    None,
                )
                .expect(200)
                .json
        })
        .collect()
}

fn wait_delivery(
    w: &World,
    t: &TestTenant,
    event: &str,
    call_id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let ds = deliveries_for(w, t, event, call_id);
        if let Some(d) = ds.iter().find(|d| d["status"] == status) {
            return d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {status} delivery of {event} for {call_id}: {ds:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- a sidecar speaking the sidecar link by hand ----

static NONCE: AtomicU64 = AtomicU64::new(0);

struct Sc {
    id: String,
    secret: String,
}

impl Sc {
    fn create(edge: &Edge, id: &str) -> Sc {
        let r = edge
            .admin(
                "POST",
                "/admin/sidecars",
                Some(&json!({"sidecar_id": id, "region": "local"})),
            )
            .expect(201);
        let sc = Sc {
            id: id.to_string(),
            secret: r.json["secret"].as_str().unwrap().to_string(),
        };
        sc.send(edge, paths::REGISTER, json!({"protocol_version": 1, "sidecar_id": id, "region": "local", "capacity": 4, "version": "test"}))
            .expect(200);
        sc
    }

    fn send(&self, edge: &Edge, path: &str, body: Value) -> Resp {
        let raw = body.to_string();
        let nonce = format!(
            "{:016x}{:016x}",
            now_ms(),
            NONCE.fetch_add(1, Ordering::SeqCst)
        );
        let headers = signing::signed_headers(
            &self.id,
            self.secret.as_bytes(),
            now_ms() / 1000,
            &nonce,
            signing::Target::post(path),
            raw.as_bytes(),
        );
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.push(("content-type", "application/json"));
        edge.request("POST", path, &h, Some(raw.as_bytes()))
            .unwrap()
    }

    /// Leases and accepts the offer for `call_id`.
    fn take(&self, edge: &Edge, call_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self
                .send(
                    edge,
                    paths::LEASE,
                    json!({"protocol_version": 1, "sidecar_id": self.id, "region": "local",
                "free_slots": 4, "held_calls": [], "wait_ms": 500}),
                )
                .expect(200);
            for o in r.json["offers"].as_array().into_iter().flatten() {
                let accepted = o["call_id"] == call_id;
                self.send(
                    edge,
                    paths::ACK,
                    json!({"protocol_version": 1, "sidecar_id": self.id, "lease_id": o["lease_id"],
                    "call_id": o["call_id"], "accepted": accepted}),
                )
                .expect(200);
                if accepted {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no offer for {call_id}");
        }
    }

    fn events(&self, edge: &Edge, call_id: &str, kinds: &[Value]) {
        let events: Vec<Value> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| json!({"call_id": call_id, "attempt": 1, "seq": i + 1, "at_ms": now_ms(), "kind": k}))
            .collect();
        self.send(
            edge,
            paths::EVENTS,
            json!({"protocol_version": 1, "sidecar_id": self.id, "events": events}),
        )
        .expect(200);
    }
}

fn ended(status: &str, reason: &str) -> Value {
    let t = now_ms();
    json!({"type": "ended", "status": status, "reason": reason, "timings": {"dispatched_ms": t, "ended_ms": t}})
}

// ---- cases ----

fn call_events_are_delivered_signed_and_filtered(w: &World) {
    let t = w.edge.provision_tenant("wh-normal");
    let (_, secret_all) = endpoint(w, &t, "all", json!({}));
    let (_, secret_end) = endpoint(
        w,
        &t,
        "ends",
        json!({"events": ["call.completed", "call.failed"]}),
    );
    receiver(w).configure("all", json!({"secrets": [secret_all]}));
    receiver(w).configure("ends", json!({"secrets": [secret_end]}));
    let sc = Sc::create(&w.edge, "wh-sc-1");

    let id = place(w, &t, json!({"crm_id": 42, "tags": ["a"]}));
    sc.take(&w.edge, &id);
    sc.events(&w.edge, &id, &[json!({"type": "ringing"})]);
    std::thread::sleep(Duration::from_millis(1_100));
    sc.events(
        &w.edge,
        &id,
        &[json!({"type": "ringing"}), json!({"type": "answered"})],
    );
    std::thread::sleep(Duration::from_millis(1_100));
    sc.events(
        &w.edge,
        &id,
        &[
            json!({"type": "ringing"}),
            json!({"type": "answered"}),
            ended("completed", "callee_hangup"),
        ],
    );

    let want = [
        "call.queued",
        "call.ringing",
        "call.answered",
        "call.completed",
    ];
    let got = wait_received(
        w,
        "all",
        Duration::from_secs(20),
        "the four call events",
        |g| {
            let types = types_for(g, &id);
            want.iter().all(|e| types.iter().any(|t| t == e))
        },
    );
    for r in events_for(&got, &id) {
        assert_eq!(r["verified"], true, "standardwebhooks refused: {r}");
        assert_eq!(
            r["webhook_id"],
            body_of(r)["id"],
            "webhook-id is the event id"
        );
    }
    let completed = events_for(&got, &id)
        .into_iter()
        .map(body_of)
        .find(|b| b["type"] == "call.completed")
        .unwrap();
    let d = &completed["data"];
    assert_eq!(
        (
            d["status"].as_str(),
            d["ended_reason"].as_str(),
            d["attempts"].as_u64()
        ),
        (Some("completed"), Some("callee_hangup"), Some(1)),
        "{d}"
    );
    assert_eq!(d["metadata"], json!({"crm_id": 42, "tags": ["a"]}));
    let (ring, talk) = (
        d["ring_seconds"].as_f64().unwrap(),
        d["talk_seconds"].as_f64().unwrap(),
    );
    assert!(
        (0.9..10.0).contains(&ring) && (0.9..10.0).contains(&talk),
        "ring {ring} talk {talk}"
    );
    assert_eq!(d["transcript_url"], format!("/v1/calls/{id}/transcript"));
    for k in ["recording_url", "sip_code"] {
        assert!(d.get(k).is_some_and(Value::is_null), "{k}: {d}");
    }
    // The answered call's transcript follows, signed like every event.
    let saved = wait_received(w, "all", Duration::from_secs(10), "transcript.saved", |g| {
        types_for(g, &id).contains(&"transcript.saved".to_string())
    });
    let tr = events_for(&saved, &id)
        .into_iter()
        .map(body_of)
        .find(|b| b["type"] == "transcript.saved")
        .unwrap();
    assert_eq!(
        (
            tr["data"]["call_id"].as_str(),
            tr["data"]["call_status"].as_str()
        ),
        (Some(id.as_str()), Some("completed")),
        "{tr}"
    );
    // The filtered endpoint only gets the end.
    let ends = wait_received(w, "ends", Duration::from_secs(10), "call.completed", |g| {
        types_for(g, &id).contains(&"call.completed".to_string())
    });
    assert_eq!(types_for(&ends, &id), vec!["call.completed"]);

    // A failed call: call.failed, to both.
    let failed = place(w, &t, json!({}));
    sc.take(&w.edge, &failed);
    sc.events(&w.edge, &failed, &[ended("failed", "trunk_error")]);
    for name in ["all", "ends"] {
        let got = wait_received(w, name, Duration::from_secs(10), "call.failed", |g| {
            types_for(g, &failed).contains(&"call.failed".to_string())
        });
        let b = body_of(
            events_for(&got, &failed)
                .into_iter()
                .find(|r| body_of(r)["type"] == "call.failed")
                .unwrap(),
        );
        assert_eq!(
            (
                b["data"]["status"].as_str(),
                b["data"]["ended_reason"].as_str()
            ),
            (Some("failed"), Some("trunk_error"))
        );
    }
    // A hangup of a queued call is call.completed with status cancelled.
    let cancelled = place(w, &t, json!({}));
    w.edge
        .call(
            "POST",
            &format!("/v1/calls/{cancelled}/hangup"),
            &t.key,
            None,
        )
        .expect(200);
    let got = wait_received(w, "ends", Duration::from_secs(10), "cancelled", |g| {
        !events_for(g, &cancelled).is_empty()
    });
    assert_eq!(
        body_of(events_for(&got, &cancelled)[0])["data"]["status"],
        "cancelled"
    );
}

fn a_receiver_that_is_down_gets_everything_once_it_is_up(w: &World) {
    let t = w.edge.provision_tenant("wh-down");
    let (_, secret) = endpoint(
        w,
        &t,
        "down",
        json!({"retry_schedule": [1, 1, 2, 2, 3, 3, 5], "events": ["call.queued"]}),
    );
    receiver(w).configure("down", json!({"secrets": [secret]}));
    receiver(w).stop();
    let ids: Vec<String> = (0..3).map(|i| place(w, &t, json!({"n": i}))).collect();
    // Attempts fail while nothing listens.
    let first = ids[0].clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ds = deliveries_for(w, &t, "call.queued", &first);
        if ds
            .first()
            .is_some_and(|d| d["attempt_count"].as_u64() >= Some(2))
        {
            let d = &ds[0];
            assert_eq!(d["status"], "pending", "{d}");
            assert!(
                d["attempts"][0]["status_code"].is_null() && d["attempts"][0]["error"].is_string(),
                "{d}"
            );
            assert!(d["next_attempt_at"].is_string());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempts logged: {ds:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    receiver(w).start();
    let got = wait_received(
        w,
        "down",
        Duration::from_secs(30),
        "every call.queued",
        |g| ids.iter().all(|id| !events_for(g, id).is_empty()),
    );
    for id in &ids {
        assert!(events_for(&got, id).iter().all(|r| r["verified"] == true));
        let d = wait_delivery(
            w,
            &t,
            "call.queued",
            id,
            "delivered",
            Duration::from_secs(10),
        );
        let attempts = d["attempts"].as_array().unwrap();
        assert!(attempts.len() >= 2, "{d}");
        // Every attempt is logged: failures without a status, then the 200.
        assert!(
            attempts[..attempts.len() - 1]
                .iter()
                .all(|a| a["status_code"].is_null() && a["error"].is_string()),
            "{d}"
        );
        assert_eq!(attempts.last().unwrap()["status_code"], 200);
        let numbers: Vec<u64> = attempts
            .iter()
            .map(|a| a["attempt"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (1..=attempts.len() as u64).collect::<Vec<_>>());
    }
}

fn rotation_overlap_sends_both_signatures_then_only_the_new_one(w: &World) {
    let t = w.edge.provision_tenant("wh-rotate");
    let (wid, old) = endpoint(
        w,
        &t,
        "rot",
        json!({"retry_schedule": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "events": ["call.queued"]}),
    );
    receiver(w).configure("rot", json!({"secrets": [old]}));
    let before = place(w, &t, json!({}));
    let got = wait_received(w, "rot", Duration::from_secs(10), "a delivery", |g| {
        !events_for(g, &before).is_empty()
    });
    assert_eq!(
        events_for(&got, &before)[0]["signature"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        1
    );

    let overlap_s = 6;
    let rotated_at = Instant::now();
    let r = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/webhooks/{wid}/rotate", t.id),
            Some(&json!({"overlap_seconds": overlap_s})),
        )
        .expect(200);
    let new = r.json["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(r.json["previous_secret_expires_at"].is_string());
    // The new secret is shown once: not in the endpoint's other answers.
    let shown = w
        .edge
        .admin(
            "GET",
            &format!("/admin/tenants/{}/webhooks/{wid}", t.id),
            None,
        )
        .expect(200);
    assert!(!shown.text.contains(&new) && !shown.text.contains("whsec_"));

    // During the overlap a receiver knowing only the old, or only the new, secret verifies.
    for (who, secrets) in [("old", vec![old.clone()]), ("new", vec![new.clone()])] {
        receiver(w).configure("rot", json!({"secrets": secrets}));
        let id = place(w, &t, json!({}));
        let got = wait_received(w, "rot", Duration::from_secs(10), who, |g| {
            !events_for(g, &id).is_empty()
        });
        let r = events_for(&got, &id)[0];
        assert_eq!(r["verified"], true, "receiver with the {who} secret: {r}");
        assert_eq!(
            r["signature"].as_str().unwrap().split(' ').count(),
            2,
            "{r}"
        );
    }
    assert!(
        rotated_at.elapsed() < Duration::from_secs(overlap_s),
        "overlap over before the checks ran"
    );

    // After it, only the new secret signs: the old-secret receiver refuses (401)
    // and the delivery is retried until the receiver learns the new one.
    std::thread::sleep(
        Duration::from_secs(overlap_s).saturating_sub(rotated_at.elapsed())
            + Duration::from_millis(500),
    );
    receiver(w).configure("rot", json!({"secrets": [old]}));
    let after = place(w, &t, json!({}));
    let got = wait_received(
        w,
        "rot",
        Duration::from_secs(10),
        "a refused delivery",
        |g| !events_for(g, &after).is_empty(),
    );
    let r = events_for(&got, &after)[0];
    assert_eq!(
        (r["verified"].clone(), r["answered"].clone()),
        (json!(false), json!(401)),
        "{r}"
    );
    assert_eq!(
        r["signature"].as_str().unwrap().split(' ').count(),
        1,
        "{r}"
    );
    receiver(w).configure("rot", json!({"secrets": [new]}));
    wait_received(
        w,
        "rot",
        Duration::from_secs(15),
        "the retried delivery verified",
        |g| events_for(g, &after).iter().any(|r| r["verified"] == true),
    );
    let d = wait_delivery(
        w,
        &t,
        "call.queued",
        &after,
        "delivered",
        Duration::from_secs(10),
    );
    assert_eq!(d["attempts"][0]["status_code"], 401, "{d}");
}

fn gone_410_disables_the_endpoint(w: &World) {
    let t = w.edge.provision_tenant("wh-gone");
    let (wid, secret) = endpoint(
        w,
        &t,
        "gone",
        json!({"retry_schedule": [1, 1, 1], "events": ["call.queued"]}),
    );
    receiver(w).configure("gone", json!({"secrets": [secret], "status": 410}));
    let id = place(w, &t, json!({}));
    let d = wait_delivery(w, &t, "call.queued", &id, "failed", Duration::from_secs(15));
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        1,
        "no retries after 410: {d}"
    );
    assert_eq!(d["attempts"][0]["status_code"], 410);
    let e = w
        .edge
        .admin(
            "GET",
            &format!("/admin/tenants/{}/webhooks/{wid}", t.id),
            None,
        )
        .expect(200)
        .json;
    assert_eq!(e["enabled"], false, "{e}");
    assert!(
        e["disabled_reason"].as_str().unwrap().contains("410"),
        "{e}"
    );
    // Nothing more is sent to it; redelivery is refused until it is enabled again.
    let later = place(w, &t, json!({}));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        events_for(&receiver(w).received("gone"), &later).is_empty(),
        "delivered to a disabled endpoint"
    );
    let r = w.edge.call(
        "POST",
        &format!(
            "/v1/webhooks/deliveries/{}/redeliver",
            d["id"].as_str().unwrap()
        ),
        &t.key,
        None,
    );
    r.expect_error(409, "webhook_disabled");
    let e = w
        .edge
        .admin(
            "PATCH",
            &format!("/admin/tenants/{}/webhooks/{wid}", t.id),
            Some(&json!({"enabled": true})),
        )
        .expect(200)
        .json;
    assert!(e["disabled_reason"].is_null() && e["enabled"] == true);
}

fn retry_after_is_honoured(w: &World) {
    let t = w.edge.provision_tenant("wh-retry-after");
    let (_, secret) = endpoint(
        w,
        &t,
        "slow",
        json!({"retry_schedule": [1, 1, 1], "events": ["call.queued"]}),
    );
    receiver(w).configure(
        "slow",
        json!({"secrets": [secret], "status": 503, "retry_after": "4", "fail_times": 1}),
    );
    let id = place(w, &t, json!({}));
    let got = wait_received(w, "slow", Duration::from_secs(20), "two attempts", |g| {
        events_for(g, &id).len() >= 2
    });
    let tries = events_for(&got, &id);
    assert_eq!(
        (tries[0]["answered"].as_u64(), tries[1]["answered"].as_u64()),
        (Some(503), Some(200))
    );
    let gap = tries[1]["at"].as_f64().unwrap() - tries[0]["at"].as_f64().unwrap();
    assert!(
        gap >= 3.9,
        "retried {gap:.1} s later despite Retry-After: 4 (schedule says 1 s)"
    );
    assert_eq!(
        tries[0]["webhook_id"], tries[1]["webhook_id"],
        "same webhook-id on a retry"
    );
    let d = wait_delivery(
        w,
        &t,
        "call.queued",
        &id,
        "delivered",
        Duration::from_secs(5),
    );
    assert_eq!(d["attempts"][0]["status_code"], 503);
}

fn a_delivery_can_be_redelivered_by_hand(w: &World) {
    let t = w.edge.provision_tenant("wh-redeliver");
    let (_, secret) = endpoint(w, &t, "again", json!({"events": ["call.queued"]}));
    receiver(w).configure("again", json!({"secrets": [secret]}));
    let id = place(w, &t, json!({}));
    let d = wait_delivery(
        w,
        &t,
        "call.queued",
        &id,
        "delivered",
        Duration::from_secs(10),
    );
    let did = d["id"].as_str().unwrap();
    let r = w
        .edge
        .call(
            "POST",
            &format!("/v1/webhooks/deliveries/{did}/redeliver"),
            &t.key,
            None,
        )
        .expect(202);
    assert_eq!(r.json["id"], did);
    let got = wait_received(w, "again", Duration::from_secs(10), "the redelivery", |g| {
        events_for(g, &id).len() >= 2
    });
    let tries = events_for(&got, &id);
    assert_eq!(tries[0]["body"], tries[1]["body"], "same body");
    assert_eq!(
        tries[0]["webhook_id"], tries[1]["webhook_id"],
        "same webhook-id"
    );
    assert!(tries.iter().all(|r| r["verified"] == true));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = w
            .edge
            .call(
                "GET",
                &format!("/v1/webhooks/deliveries/{did}"),
                &t.key,
                None,
            )
            .expect(200)
            .json;
        if d["attempts"].as_array().unwrap().len() == 2 {
            assert_eq!(
                (
                    d["attempts"][1]["manual"].clone(),
                    d["attempts"][1]["attempt"].clone(),
                    d["status"].clone()
                ),
                (json!(true), json!(2), json!("delivered"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "manual attempt not logged: {d}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Another tenant cannot see or redeliver it.
    let other = w.edge.provision_tenant("wh-other");
    w.edge
        .call(
            "GET",
            &format!("/v1/webhooks/deliveries/{did}"),
            &other.key,
            None,
        )
        .expect_error(404, "delivery_not_found");
    w.edge
        .call(
            "POST",
            &format!("/v1/webhooks/deliveries/{did}/redeliver"),
            &other.key,
            None,
        )
        .expect_error(404, "delivery_not_found");
    let list = w
        .edge
        .call("GET", "/v1/webhooks/deliveries", &other.key, None)
        .expect(200);
    assert_eq!(list.json["data"], json!([]));
}

fn endpoint_urls_are_guarded_and_endpoints_managed(w: &World) {
    let t = w.edge.provision_tenant("wh-guard");
    let base = format!("/admin/tenants/{}/webhooks", t.id);
    // (The suite runs in development mode, where loopback in any form is allowed.)
    for url in [
        "https://10.0.0.1/h",
        "https://169.254.169.254/latest/meta-data",
        "https://167772161/",
        "https://0xa9fea9fe/",
        "https://0300.0250.0.1/",
        "https://metadata.google.internal/",
        "https://[fd00::1]/",
        "https://[::ffff:192.168.0.1]/",
        "https://100.64.1.1/",
        "http://example.com/",
        "https://intranet/",
        "https://0.0.0.0/",
    ] {
        let f = w
            .edge
            .admin("POST", &base, Some(&json!({"url": url})))
            .expect_error(422, "invalid_url");
        assert_eq!(f.as_deref(), Some("url"), "{url}");
    }
    let (wid, _) = endpoint(w, &t, "managed", json!({}));
    let wp = format!("{base}/{wid}");
    let e = w.edge.admin("GET", &wp, None).expect(200).json;
    assert_eq!(
        e["retry_schedule"],
        json!([5, 300, 1800, 7200, 18000, 36000, 36000]),
        "default schedule"
    );
    w.edge
        .admin("PATCH", &wp, Some(&json!({"retry_schedule": [0]})))
        .expect_error(422, "out_of_range");
    w.edge
        .admin("PATCH", &wp, Some(&json!({"url": "https://[fe80::1]/"})))
        .expect_error(422, "invalid_url");
    let e = w
        .edge
        .admin(
            "PATCH",
            &wp,
            Some(&json!({"events": ["call.failed"], "retry_schedule": [1, 60]})),
        )
        .expect(200)
        .json;
    assert_eq!(
        (e["events"].clone(), e["retry_schedule"].clone()),
        (json!(["call.failed"]), json!([1, 60]))
    );
    w.edge.admin("DELETE", &wp, None).expect(200);
    w.edge
        .admin("GET", &wp, None)
        .expect_error(404, "webhook_not_found");
    w.edge
        .admin("DELETE", &wp, None)
        .expect_error(404, "webhook_not_found");
}

fn main() -> std::process::ExitCode {
    run_suite(
        "webhooks",
        || {
            if !python().exists() {
                return Err(format!(
                    "{} is missing: run `cargo xtask bootstrap`",
                    python().display()
                ));
            }
            let mut opts = EdgeOptions::fresh("webhooks");
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            opts.vars = vec![("DISPATCH_MAX_WAIT_MS".into(), "1000".into())];
            let edge = Edge::start(opts)?;
            let mut r = WebhookReceiver::new(&dir);
            r.start();
            Ok(World {
                edge,
                receiver: Mutex::new(r),
            })
        },
        &[
            (
                "call_events_are_delivered_signed_and_filtered",
                call_events_are_delivered_signed_and_filtered,
            ),
            (
                "a_receiver_that_is_down_gets_everything_once_it_is_up",
                a_receiver_that_is_down_gets_everything_once_it_is_up,
            ),
            (
                "rotation_overlap_sends_both_signatures_then_only_the_new_one",
                rotation_overlap_sends_both_signatures_then_only_the_new_one,
            ),
            (
                "gone_410_disables_the_endpoint",
                gone_410_disables_the_endpoint,
            ),
            ("retry_after_is_honoured", retry_after_is_honoured),
            (
                "a_delivery_can_be_redelivered_by_hand",
                a_delivery_can_be_redelivered_by_hand,
            ),
            (
                "endpoint_urls_are_guarded_and_endpoints_managed",
                endpoint_urls_are_guarded_and_endpoints_managed,
            ),
        ],
    )
}
