//! End-to-end: the edge's half of the sidecar link against real
//! `wrangler dev` (Durable Object queue, alarms, KV records), driven by a
//! protocol client that signs exactly as a sidecar does. The real sidecar
//! process over HTTP/1.1 and HTTP/3 is exercised in `sidecar_process.rs`.

use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_shared::sidecar_link::paths;
use voxline_testkit::now_ms;

const ACK_DEADLINE_MS: u64 = 1_500;
const DEAD_AFTER_MS: u64 = 3_000;
const RETRY_UNIT_MS: u64 = 1_000;

struct World {
    edge: Edge,
    tenant: TestTenant,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics()
    }
}

/// The protocol client lives in the harness (`ProtocolSidecar`), shared with the traffic suite.
type Sc = ProtocolSidecar;

fn ev(call_id: &str, attempt: u32, seq: u32, kind: Value) -> Value {
    call_event(call_id, attempt, seq, kind)
}

fn ended(status: &str, reason: &str) -> Value {
    ended_event(status, reason)
}

fn place(w: &World, body: Value) -> String {
    let r = w
        .edge
        .call("POST", "/v1/calls", &w.tenant.key, Some(&body))
        .expect(201);
    r.json["id"].as_str().unwrap().to_string()
}

fn status(w: &World, id: &str) -> Value {
    w.edge
        .call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None)
        .expect(200)
        .json
}

/// The Durable Object mirrors into KV right after replying: give it a moment.
fn wait_status(w: &World, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let call = status(w, id);
        if call["status"] == want {
            return call;
        }
        assert!(
            Instant::now() < deadline,
            "call {id} never became {want}: {call}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signatures_and_registration_are_enforced(w: &World) {
    let e = &w.edge;
    let sc = Sc::create(e, "sig-1");
    let listed = e.admin("GET", "/admin/sidecars", None).expect(200);
    assert!(!listed.text.contains(&sc.secret), "secret listed");
    let lease = json!({"protocol_version": 1, "sidecar_id": "sig-1", "region": "local", "free_slots": 1, "held_calls": [], "wait_ms": 0});
    // Not yet registered: 410 tells the sidecar to register.
    let code = |r: Resp| {
        (
            r.status,
            r.json["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        code(sc.poll(e, 1, &[], 0)),
        (410, "sidecar_not_registered".into())
    );
    let ack = sc.register(e, 2).expect(200);
    assert_eq!(ack.json["ack_deadline_ms"], ACK_DEADLINE_MS);
    let now = now_ms() / 1000;
    assert_eq!(
        code(sc.send_raw(e, paths::LEASE, &lease, now, &nonce(), "wrong-secret")),
        (401, "invalid_signature".into())
    );
    assert_eq!(
        code(sc.send_raw(e, paths::LEASE, &lease, now - 301, &nonce(), &sc.secret)),
        (401, "invalid_signature".into())
    );
    let n = nonce();
    sc.send_raw(e, paths::LEASE, &lease, now, &n, &sc.secret)
        .expect(200);
    assert_eq!(
        code(sc.send_raw(e, paths::LEASE, &lease, now, &n, &sc.secret)),
        (401, "replayed_request".into())
    );
    // Method and path are signed: a lease poll's headers, captured and sent
    // to deregister (which would end this sidecar's calls), are refused.
    let raw = lease.to_string();
    let signed = voxline_shared::signing::signed_headers(
        "sig-1",
        sc.secret.as_bytes(),
        now,
        &nonce(),
        voxline_shared::signing::Target::post(paths::LEASE),
        raw.as_bytes(),
    );
    let mut h: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.push(("content-type", "application/json"));
    let moved = e
        .request("POST", paths::DEREGISTER, &h, Some(raw.as_bytes()))
        .unwrap();
    assert_eq!(code(moved), (401, "invalid_signature".into()));
    // The retired v1 scheme (an old sidecar): its own code, naming v2.
    let (ts, n1) = (now.to_string(), nonce());
    let v1 = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(sc.secret.as_bytes()).unwrap();
        m.update(format!("{ts}.{n1}.{raw}").as_bytes());
        format!("v1={}", hex::encode(m.finalize().into_bytes()))
    };
    let old = e
        .request(
            "POST",
            paths::LEASE,
            &[
                ("x-voxline-sidecar", "sig-1"),
                ("x-voxline-timestamp", &ts),
                ("x-voxline-nonce", &n1),
                ("x-voxline-signature", &v1),
                ("content-type", "application/json"),
            ],
            Some(raw.as_bytes()),
        )
        .unwrap();
    assert!(old.text.contains("v2="), "{}", old.text);
    assert_eq!(code(old), (401, "signature_version_unsupported".into()));
    let v2 = json!({"protocol_version": 2, "sidecar_id": "sig-1", "region": "local", "free_slots": 1, "held_calls": [], "wait_ms": 0});
    assert_eq!(
        code(sc.send(e, paths::LEASE, v2)),
        (400, "unsupported_protocol_version".into())
    );
    let other_region = json!({"protocol_version": 1, "sidecar_id": "sig-1", "region": "eu", "free_slots": 1, "held_calls": [], "wait_ms": 0});
    assert_eq!(
        code(sc.send(e, paths::LEASE, other_region)),
        (403, "region_mismatch".into())
    );
    let stranger = Sc {
        id: "nobody".into(),
        secret: "x".into(),
    };
    assert_eq!(
        code(stranger.poll(e, 1, &[], 0)),
        (401, "invalid_credentials".into())
    );
    let unsigned = e
        .request(
            "POST",
            paths::LEASE,
            &[("content-type", "application/json")],
            Some(lease.to_string().as_bytes()),
        )
        .unwrap();
    assert_eq!(code(unsigned), (401, "invalid_signature".into()));
    e.admin("DELETE", "/admin/sidecars/sig-1", None).expect(200);
    assert_eq!(
        code(sc.poll(e, 1, &[], 0)),
        (401, "invalid_credentials".into())
    );
}

fn long_poll_wakes_on_a_new_call_and_events_drive_the_state(w: &World) {
    let e = &w.edge;
    let sc = Sc::create(e, "main-1");
    sc.register(e, 2).expect(200);
    // An empty poll is held open for its wait.
    let t = Instant::now();
    let r = sc.poll(e, 2, &[], 400).expect(200);
    assert_eq!(
        (
            r.json["offers"].as_array().map(Vec::len),
            r.json["commands"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "empty poll answered early: {:?}",
        t.elapsed()
    );
    // A poll open when the call arrives wakes up with the offer.
    let id = std::thread::scope(|s| {
        let poller = s.spawn(|| sc.poll(e, 2, &[], 1_800).expect(200));
        std::thread::sleep(Duration::from_millis(300));
        let id = place(w, json!({"phone": "+14155550101", "metadata": {"k": "v"}}));
        let r = poller.join().unwrap();
        let offer = &r.json["offers"][0];
        assert_eq!(offer["call_id"], id.as_str());
        assert_eq!(
            (
                offer["phone"].as_str(),
                offer["attempt"].as_u64(),
                offer["metadata"]["k"].as_str()
            ),
            (Some("+14155550101"), Some(1), Some("v"))
        );
        assert!(offer["ack_deadline_ms"].as_u64().unwrap() > now_ms());
        sc.ack(e, offer, true).expect(200);
        id
    });
    let call = wait_status(w, &id, "dialing");
    assert_eq!(call["attempts"], 1);
    assert!(call["dispatched_at"].is_string());
    sc.events(
        e,
        json!([
            ev(&id, 1, 1, json!({"type": "dialing"})),
            ev(&id, 1, 2, json!({"type": "ringing"}))
        ]),
    )
    .expect(200);
    wait_status(w, &id, "ringing");
    // Duplicates are acknowledged and change nothing.
    let r = sc
        .events(
            e,
            json!([
                ev(&id, 1, 2, json!({"type": "ringing"})),
                ev(&id, 1, 3, json!({"type": "answered"}))
            ]),
        )
        .expect(200);
    assert_eq!(r.json["accepted"], 2);
    let call = wait_status(w, &id, "in_progress");
    assert!(call["answered_at"].is_string() && call["ringing_at"].is_string());
    let turn = |seq, role: &str, text: &str, start_ms: u64| {
        ev(
            &id,
            1,
            seq,
            json!({"type": "transcript_turn", "role": role, "text": text, "start_ms": start_ms, "end_ms": start_ms + 1500}),
        )
    };
    sc.events(
        e,
        json!([
            turn(
                4,
                "agent",
                "Hi, this is Demo Dental. Can you make it tomorrow at ten?",
                200
            ),
            turn(4, "ai", "duplicate of seq 4", 200),
            // The names of sidecars before 2026-12 (`ai`, `user`) are still read.
            turn(5, "user", "yes I can", 4100)
        ]),
    )
    .expect(200);
    sc.events(
        e,
        json!([ev(&id, 1, 6, ended("completed", "callee_hangup"))]),
    )
    .expect(200);
    let call = wait_status(w, &id, "completed");
    assert_eq!(call["ended_reason"], "callee_hangup");
    let txt = e
        .request(
            "GET",
            &format!("/v1/calls/{id}/transcript"),
            &[
                ("authorization", &format!("Bearer {}", w.tenant.key)),
                ("accept", "text/plain"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(txt.status, 200);
    assert_eq!(txt.text, "[00:00:00] AGENT: Hi, this is Demo Dental. Can you make it tomorrow at ten?\n[00:00:04] CALLEE: yes I can\n");
    let json_t = e
        .call(
            "GET",
            &format!("/v1/calls/{id}/transcript?format=json"),
            &w.tenant.key,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(
        json_t["turns"].as_array().map(Vec::len),
        Some(2),
        "{json_t}"
    );
    assert_eq!(
        (
            json_t["turns"][1]["role"].as_str(),
            json_t["turns"][1]["start_ms"].as_u64()
        ),
        (Some("callee"), Some(4100))
    );
    // An event after the end is acknowledged but cannot reopen the call.
    sc.events(e, json!([ev(&id, 1, 7, json!({"type": "answered"}))]))
        .expect(200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(w, &id)["status"], "completed");
    let listed = e
        .call("GET", "/v1/calls?status=completed", &w.tenant.key, None)
        .expect(200);
    assert!(
        listed.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "listing metadata follows"
    );
}

fn an_unacked_lease_is_re_leased_and_the_late_ack_refused(w: &World) {
    let e = &w.edge;
    let (a, b) = (Sc::create(e, "slow-1"), Sc::create(e, "fast-1"));
    a.register(e, 1).expect(200);
    b.register(e, 1).expect(200);
    let id = place(w, json!({"phone": "+14155550102"}));
    let first = a.poll_for(e, &id, &[], Duration::from_secs(5));
    // b sees nothing while a's lease runs.
    let r = b.poll(e, 1, &[], 0).expect(200);
    assert!(
        !r.text.contains(&id),
        "offered twice while leased: {}",
        r.text
    );
    std::thread::sleep(Duration::from_millis(ACK_DEADLINE_MS + 300));
    let second = b.poll_for(e, &id, &[], Duration::from_secs(5));
    assert_ne!(first["lease_id"], second["lease_id"]);
    let late = a.ack(e, &first, true);
    assert_eq!(
        (late.status, late.json["error"]["code"].as_str()),
        (409, Some("lease_not_held"))
    );
    b.ack(e, &second, true).expect(200);
    // The same ack again (as after a lost answer): accepted, not refused.
    b.ack(e, &second, true).expect(200);
    wait_status(w, &id, "dialing");
    b.events(
        e,
        json!([ev(&id, 1, 1, ended("completed", "agent_hangup"))]),
    )
    .expect(200);
    wait_status(w, &id, "completed");
    // Hangup while offered but not yet acked cancels the call outright: the
    // ack is then refused, so the sidecar never dials it.
    let id = place(w, json!({"phone": "+14155550112"}));
    let offer = a.poll_for(e, &id, &[], Duration::from_secs(5));
    let r = e
        .call(
            "POST",
            &format!("/v1/calls/{id}/hangup"),
            &w.tenant.key,
            None,
        )
        .expect(200);
    assert_eq!(r.json["status"], "cancelled", "{}", r.text);
    let late = a.ack(e, &offer, true);
    assert_eq!(
        (late.status, late.json["error"]["code"].as_str()),
        (409, Some("lease_not_held"))
    );
}

fn a_silent_sidecar_is_presumed_dead_and_its_call_retried_elsewhere(w: &World) {
    let e = &w.edge;
    let (dead, alive) = (Sc::create(e, "dies-1"), Sc::create(e, "lives-1"));
    dead.register(e, 1).expect(200);
    // Not retried before it would surely have ended: max_seconds + margin.
    let id = place(
        w,
        json!({"phone": "+14155550103", "retries": 1, "retry_delay_minutes": 1, "max_seconds": 10}),
    );
    let offer = dead.poll_for(e, &id, &[], Duration::from_secs(5));
    dead.ack(e, &offer, true).expect(200);
    dead.events(e, json!([ev(&id, 1, 1, json!({"type": "answered"}))]))
        .expect(200);
    wait_status(w, &id, "in_progress");
    alive.register(e, 1).expect(200);
    // `dead` stops polling (alive keeps polling, with no free slot); the
    // alarm declares `dead` dead and schedules the retry.
    let deadline = Instant::now() + Duration::from_secs(25);
    let call = loop {
        alive.poll(e, 0, &[], 300).expect(200);
        let call = status(w, &id);
        if call["status"] == "scheduled" {
            break call;
        }
        assert!(Instant::now() < deadline, "never declared dead: {call}");
    };
    assert_eq!(call["ended_reason"], "media_lost");
    assert!(call["next_attempt_at"].is_string());
    let retry = alive.poll_for(e, &id, &[], Duration::from_secs(10));
    assert_eq!(retry["attempt"], 2);
    alive.ack(e, &retry, true).expect(200);
    let call = wait_status(w, &id, "dialing");
    assert_eq!(call["attempts"], 2);
    // The dead sidecar must register again before it gets work.
    let r = dead.poll(e, 1, &[], 0);
    assert_eq!(r.status, 410, "{}", r.text);
    alive
        .events(
            e,
            json!([ev(&id, 2, 1, ended("completed", "callee_hangup"))]),
        )
        .expect(200);
    wait_status(w, &id, "completed");
}

/// Cut off past the dead-sidecar timeout while talking, then back: its call
/// was never offered to anyone else and goes on as if nothing happened.
fn a_partitioned_sidecar_comes_back_to_its_call(w: &World) {
    let e = &w.edge;
    let (cut, other) = (Sc::create(e, "cut-1"), Sc::create(e, "other-1"));
    cut.register(e, 1).expect(200);
    let id = place(
        w,
        json!({"phone": "+14155550113", "retries": 2, "retry_delay_minutes": 1, "max_seconds": 600}),
    );
    let offer = cut.poll_for(e, &id, &[], Duration::from_secs(5));
    cut.ack(e, &offer, true).expect(200);
    cut.events(e, json!([ev(&id, 1, 1, json!({"type": "answered"}))]))
        .expect(200);
    wait_status(w, &id, "in_progress");
    other.register(e, 1).expect(200);
    // `cut` is silent for twice the dead-sidecar timeout; `other` polls for work all along.
    let until = Instant::now() + Duration::from_millis(2 * DEAD_AFTER_MS);
    while Instant::now() < until {
        let r = other.poll(e, 1, &[], 300).expect(200);
        assert!(
            !r.text.contains(&id),
            "offered to another sidecar while its own may still be talking: {}",
            r.text
        );
    }
    assert_eq!(cut.poll(e, 1, &[&id], 0).status, 410, "presumed dead");
    let call = status(w, &id);
    assert_eq!(
        (call["status"].as_str(), call["attempts"].as_u64()),
        (Some("in_progress"), Some(1)),
        "{call}"
    );
    // Back: registers again and lists the call it still runs.
    cut.register(e, 1).expect(200);
    let r = cut.poll(e, 0, &[&id], 0).expect(200);
    assert_eq!(
        r.json["commands"],
        json!([]),
        "its own call: nothing to stop"
    );
    cut.events(
        e,
        json!([ev(&id, 1, 2, ended("completed", "callee_hangup"))]),
    )
    .expect(200);
    let call = wait_status(w, &id, "completed");
    assert_eq!(
        (call["ended_reason"].as_str(), call["attempts"].as_u64()),
        (Some("callee_hangup"), Some(1)),
        "{call}"
    );
    // A call the edge no longer gives it is answered with a hangup command.
    let r = cut.poll(e, 0, &[&id], 0).expect(200);
    assert_eq!(
        r.json["commands"],
        json!([{"kind": "hangup", "call_id": id}]),
        "{}",
        r.text
    );
}

fn a_call_dropped_from_held_calls_is_lost(w: &World) {
    let e = &w.edge;
    let sc = Sc::create(e, "restart-1");
    sc.register(e, 1).expect(200);
    let id = place(w, json!({"phone": "+14155550104"}));
    let offer = sc.poll_for(e, &id, &[], Duration::from_secs(5));
    sc.ack(e, &offer, true).expect(200);
    // Past the held-call grace, listing the call, polling to stay alive.
    let grace_end = Instant::now() + Duration::from_millis(5_200);
    while Instant::now() < grace_end {
        sc.poll(e, 0, &[&id], 500).expect(200);
    }
    assert_eq!(status(w, &id)["status"], "dialing");
    sc.poll(e, 1, &[], 0).expect(200); // restarted: it holds nothing
    let call = wait_status(w, &id, "failed");
    assert_eq!(call["ended_reason"], "media_lost");
}

fn hangup_through_the_api_reaches_the_holding_sidecar(w: &World) {
    let e = &w.edge;
    let sc = Sc::create(e, "hang-1");
    sc.register(e, 1).expect(200);
    let id = place(w, json!({"phone": "+14155550105"}));
    let offer = sc.poll_for(e, &id, &[], Duration::from_secs(5));
    sc.ack(e, &offer, true).expect(200);
    sc.events(e, json!([ev(&id, 1, 1, json!({"type": "ringing"}))]))
        .expect(200);
    wait_status(w, &id, "ringing");
    std::thread::scope(|s| {
        let poller = s.spawn(|| sc.poll(e, 0, &[&id], 2_000).expect(200));
        std::thread::sleep(Duration::from_millis(300));
        let h = e
            .call(
                "POST",
                &format!("/v1/calls/{id}/hangup"),
                &w.tenant.key,
                None,
            )
            .expect(202);
        assert!(h.json["hangup_requested_at"].is_string());
        let r = poller.join().unwrap();
        assert_eq!(
            r.json["commands"],
            json!([{"kind": "hangup", "call_id": id}]),
            "open poll woke with the command"
        );
    });
    sc.events(
        e,
        json!([ev(&id, 1, 2, ended("cancelled", "hangup_requested"))]),
    )
    .expect(200);
    let call = wait_status(w, &id, "cancelled");
    assert_eq!(call["ended_reason"], "hangup_requested");
    // A queued call is cancelled by the queue itself and never offered.
    let queued = place(w, json!({"phone": "+14155550106"}));
    e.call(
        "POST",
        &format!("/v1/calls/{queued}/hangup"),
        &w.tenant.key,
        None,
    )
    .expect(200);
    let r = sc.poll(e, 1, &[], 300).expect(200);
    assert!(
        !r.text.contains(&queued),
        "cancelled call offered: {}",
        r.text
    );
}

fn schedule_at_is_released_no_earlier_than_asked(w: &World) {
    let e = &w.edge;
    let sc = Sc::create(e, "sched-1");
    sc.register(e, 1).expect(200);
    let at_ms = now_ms() + 2_500;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(at_ms as i128 * 1_000_000).unwrap();
    let at_text = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let id = place(w, json!({"phone": "+14155550107", "schedule_at": at_text}));
    assert_eq!(status(w, &id)["status"], "scheduled");
    let offer = sc.poll_for(e, &id, &[], Duration::from_secs(8));
    let got_at = now_ms();
    assert!(
        got_at >= at_ms,
        "offered {} ms before schedule_at",
        at_ms - got_at
    );
    sc.ack(e, &offer, true).expect(200);
    wait_status(w, &id, "dialing");
    // A scheduled call nobody polls for is still released (status queued) by the alarm.
    let later = now_ms() + 1_500;
    let later_text = time::OffsetDateTime::from_unix_timestamp_nanos(later as i128 * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let id2 = place(
        w,
        json!({"phone": "+14155550108", "schedule_at": later_text}),
    );
    wait_status(w, &id2, "queued");
    assert!(now_ms() >= later);
    sc.events(
        e,
        json!([ev(&id, 1, 1, ended("completed", "agent_hangup"))]),
    )
    .expect(200);
}

fn busy_is_retried_per_policy_and_ends_busy(w: &World) {
    let e = &w.edge;
    let sc = Sc::create(e, "busy-1");
    sc.register(e, 1).expect(200);
    let id = place(
        w,
        json!({"phone": "+14155550109", "retries": 1, "retry_delay_minutes": 1}),
    );
    let busy = || {
        let t = now_ms();
        json!({"type": "ended", "status": "busy", "reason": "busy", "sip_code": 486, "timings": {"dispatched_ms": t, "ended_ms": t}})
    };
    let o = sc.poll_for(e, &id, &[], Duration::from_secs(5));
    sc.ack(e, &o, true).expect(200);
    sc.events(e, json!([ev(&id, 1, 1, busy())])).expect(200);
    let call = wait_status(w, &id, "scheduled");
    assert_eq!(
        (call["sip_code"].as_u64(), call["ended_reason"].as_str()),
        (Some(486), Some("busy"))
    );
    let o = sc.poll_for(e, &id, &[], Duration::from_secs(10));
    assert_eq!(o["attempt"], 2);
    sc.ack(e, &o, true).expect(200);
    sc.events(e, json!([ev(&id, 2, 1, busy())])).expect(200);
    let call = wait_status(w, &id, "busy");
    assert_eq!(call["attempts"], 2);
}

fn a_departing_sidecar_gets_nothing_more_and_its_call_ends_at_once(w: &World) {
    let e = &w.edge;
    let a = Sc::create(e, "bye-a");
    a.register(e, 2).expect(200);
    // A holds a call.
    let held = place(w, json!({"phone": "+14155550190"}));
    let offer = a.poll_for(e, &held, &[], Duration::from_secs(10));
    a.ack(e, &offer, true).expect(200);
    wait_status(w, &held, "dialing");
    // A long-poll of A's is open at the edge when A says goodbye.
    let (r, took) = std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let started = Instant::now();
            // No free slot (calls other cases left queued would answer it at
            // once): held open for commands, as a busy sidecar's poll is.
            let r = a.poll(e, 0, &[held.as_str()], 5_000);
            (r, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(500));
        a.send(
            e,
            paths::DEREGISTER,
            json!({"protocol_version": 1, "sidecar_id": a.id, "region": "local"}),
        )
        .expect(200);
        poll.join().unwrap()
    });
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json["offers"].as_array().is_some_and(Vec::is_empty)
            && r.json["commands"].as_array().is_some_and(Vec::is_empty),
        "{}",
        r.text
    );
    assert!(
        took < Duration::from_millis(4_500),
        "the open poll was not answered when A left ({took:?})"
    );
    // Its call ended at once (media_lost, no retries left), not after dead_after_ms.
    let ended = wait_status(w, &held, "failed");
    assert_eq!(ended["ended_reason"], "media_lost");
    // New work goes to whoever is still there; A must register again to get any.
    let b = Sc::create(e, "bye-b");
    b.register(e, 2).expect(200);
    let next = place(w, json!({"phone": "+14155550191"}));
    let o = b.poll_for(e, &next, &[], Duration::from_secs(10));
    b.ack(e, &o, true).expect(200);
    b.complete(e, &next, 1).expect(200);
    assert_eq!(
        a.poll(e, 2, &[], 0).status,
        410,
        "A is unknown until it registers again"
    );
}

fn upload(
    w: &World,
    sc: &Sc,
    secret: &str,
    call: &str,
    wav: &[u8],
    described: &[u8],
    chunked: bool,
) -> Resp {
    sc.upload_recording(&w.edge, &w.tenant.id, call, wav, described, secret, chunked)
}

fn recording_uploads_stream_into_r2_and_bad_ones_are_refused(w: &World) {
    let e = &w.edge;
    let sc = Sc::create(e, "rec-1");
    sc.register(e, 2).expect(200);
    let id = place(w, json!({"phone": "+14155550180", "record": true}));
    let offer = sc.poll_for(e, &id, &[], Duration::from_secs(10));
    assert_eq!(
        offer["tenant_id"],
        w.tenant.id.as_str(),
        "offers name the call's tenant"
    );
    sc.ack(e, &offer, true).expect(200);
    sc.complete(e, &id, 1).expect(200);
    let wav = small_wav(7);
    let code = |r: &Resp| {
        (
            r.status,
            r.json["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };

    // With a Content-Length: stored; the API serves the same bytes.
    let ok = upload(w, &sc, &sc.secret, &id, &wav, &wav, false).expect(200);
    assert_eq!(
        (ok.json["call_id"].as_str(), ok.json["bytes"].as_u64()),
        (Some(id.as_str()), Some(wav.len() as u64))
    );
    assert_eq!(
        e.wait_recording(&w.tenant.key, &id, Duration::from_secs(5)),
        wav
    );
    // Chunked (no Content-Length), the same upload again: idempotent.
    upload(w, &sc, &sc.secret, &id, &wav, &wav, true).expect(200);

    // Bytes that are not the manifest's: refused by the storage's own check, chunked or not.
    let other = small_wav(3);
    let short = &wav[..wav.len() - 100];
    let mismatch = (400, "recording_checksum_mismatch".to_string());
    assert_eq!(
        code(&upload(w, &sc, &sc.secret, &id, &other, &wav, true)),
        mismatch
    );
    assert_eq!(
        code(&upload(w, &sc, &sc.secret, &id, &other, &wav, false)),
        mismatch
    );
    assert_eq!(
        code(&upload(w, &sc, &sc.secret, &id, short, &wav, true)),
        mismatch
    );
    assert_eq!(
        code(&upload(w, &sc, &sc.secret, &id, short, &wav, false)),
        (400, "invalid_recording_manifest".into())
    );
    // Not signed by this sidecar; a call placed without record: true; an unknown call.
    assert_eq!(
        code(&upload(w, &sc, "scs_wrong", &id, &wav, &wav, false)),
        (401, "invalid_signature".into())
    );
    let plain = place(w, json!({"phone": "+14155550181"}));
    assert_eq!(
        code(&upload(w, &sc, &sc.secret, &plain, &wav, &wav, false)),
        (409, "recording_not_requested".into())
    );
    let unknown = format!("call_{}", "0".repeat(20));
    assert_eq!(
        code(&upload(w, &sc, &sc.secret, &unknown, &wav, &wav, false)),
        (404, "call_not_found".into())
    );
    // Another sidecar of the region, signing as itself, did not hold the attempt.
    let intruder = Sc::create(e, "rec-2");
    assert_eq!(
        code(&upload(
            w,
            &intruder,
            &intruder.secret,
            &id,
            &other,
            &other,
            false
        )),
        (409, "recording_not_held".into())
    );
    // None of that replaced what was stored.
    assert_eq!(
        e.wait_recording(&w.tenant.key, &id, Duration::from_secs(5)),
        wav
    );
}

fn main() -> std::process::ExitCode {
    run_suite(
        "sidecar_link",
        || {
            let mut opts = EdgeOptions::fresh("sidecar_link");
            opts.vars = vec![
                (
                    "DISPATCH_ACK_DEADLINE_MS".into(),
                    ACK_DEADLINE_MS.to_string(),
                ),
                ("DISPATCH_DEAD_AFTER_MS".into(), DEAD_AFTER_MS.to_string()),
                ("DISPATCH_MAX_WAIT_MS".into(), "2000".into()),
                ("RETRY_DELAY_UNIT_MS".into(), RETRY_UNIT_MS.to_string()),
                ("DISPATCH_LOST_MARGIN_MS".into(), "1000".into()),
            ];
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("dispatch");
            Ok(World { edge, tenant })
        },
        &[
            (
                "signatures_and_registration_are_enforced",
                signatures_and_registration_are_enforced,
            ),
            (
                "long_poll_wakes_on_a_new_call_and_events_drive_the_state",
                long_poll_wakes_on_a_new_call_and_events_drive_the_state,
            ),
            (
                "an_unacked_lease_is_re_leased_and_the_late_ack_refused",
                an_unacked_lease_is_re_leased_and_the_late_ack_refused,
            ),
            (
                "a_silent_sidecar_is_presumed_dead_and_its_call_retried_elsewhere",
                a_silent_sidecar_is_presumed_dead_and_its_call_retried_elsewhere,
            ),
            (
                "a_partitioned_sidecar_comes_back_to_its_call",
                a_partitioned_sidecar_comes_back_to_its_call,
            ),
            (
                "a_call_dropped_from_held_calls_is_lost",
                a_call_dropped_from_held_calls_is_lost,
            ),
            (
                "hangup_through_the_api_reaches_the_holding_sidecar",
                hangup_through_the_api_reaches_the_holding_sidecar,
            ),
            (
                "schedule_at_is_released_no_earlier_than_asked",
                schedule_at_is_released_no_earlier_than_asked,
            ),
            (
                "busy_is_retried_per_policy_and_ends_busy",
                busy_is_retried_per_policy_and_ends_busy,
            ),
            (
                "recording_uploads_stream_into_r2_and_bad_ones_are_refused",
                recording_uploads_stream_into_r2_and_bad_ones_are_refused,
            ),
            (
                "a_departing_sidecar_gets_nothing_more_and_its_call_ends_at_once",
                a_departing_sidecar_gets_nothing_more_and_its_call_ends_at_once,
            ),
        ],
    )
}
