//! People's calls (issue 16): click-to-call from a person's extension
//! (`POST /v1/calls` with `from_extension`, Voice360's `POST /call/outbound`
//! from a person's extension), the offer's `connect`, the sidecar's `leg`
//! and `queue` events as native and Voice360 webhooks, and queues.

use super::inbound_calls::{ring, tenant_ringing_john, CALLER, NUMBER};
use super::World;
use crate::calls::store::CallRows;
use serde_json::{json, Value};
use voxline_shared::sidecar_link::paths;

const CALLEE: &str = "+14155550199";

fn create(w: &World, key: &str, body: Value) -> (u16, Value) {
    let r = w.send("POST", "/v1/calls", Some(key), Some(body));
    (r.status, r.body_json())
}

fn code_and_field(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or(""),
        v["error"]["field"].as_str().unwrap_or(""),
    )
}

#[test]
fn a_call_from_a_persons_extension_rings_them_first_with_their_number_as_caller_id() {
    let w = World::new();
    let (tid, key, pk, sc) = tenant_ringing_john(&w, "sc-c2c");
    let (status, call) = create(
        &w,
        &key,
        json!({"phone": CALLEE, "from_extension": "1002", "record": true}),
    );
    assert_eq!(status, 201, "{call}");
    assert_eq!(
        (
            call["status"].as_str(),
            call["agent_id"].as_str(),
            call["caller_number"].as_str(),
            call["direction"].as_str()
        ),
        (Some("queued"), Some(""), Some(NUMBER), Some("outbound")),
        "no agent; the caller ID defaults to John's number"
    );
    let id = call["id"].as_str().unwrap().to_string();
    let record = w
        .calls
        .rows(&tid)
        .call(&id)
        .unwrap()
        .expect("the stored call");
    assert_eq!(record.from_user, Some(pk));

    // Another sidecar of the region, without John's phone, is not offered it.
    let other = super::TestSidecar::create(&w, "sc-c2c-other");
    other.nonce.set(1 << 32);
    other.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 4, "version": "t"}),
    );
    let lease = other.send(
        &w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 2, "held_calls": [], "wait_ms": 0}),
    );
    assert_eq!(lease["offers"], json!([]), "{lease}");
    // The sidecar's offer says whom to ring first; no engine is set up.
    let lease = sc.send(
        &w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 2, "held_calls": [], "wait_ms": 0}),
    );
    let offer = &lease["offers"][0];
    assert_eq!(offer["call_id"], id.as_str());
    assert_eq!(
        offer["connect"],
        json!({"kind": "click_to_call", "user": {"user_pk": pk, "extension": "1002",
            "display_name": "John", "ring_timeout_seconds": 30}}),
        "{offer}"
    );
    assert_eq!(
        (
            offer["phone"].as_str(),
            offer["caller_number"].as_str(),
            offer["caller_name"].as_str(),
            offer["record"].as_bool(),
            offer["system_prompt"].is_null()
        ),
        (Some(CALLEE), Some(NUMBER), Some("John"), Some(true), true)
    );

    // One call at a time per person and number.
    let (status, again) = create(&w, &key, json!({"phone": CALLEE, "from_extension": "1002"}));
    assert_eq!(
        (status, code_and_field(&again)),
        (409, ("call_in_progress", "phone"))
    );
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("person {pk}")),
        "{again}"
    );
    // A caller ID given is checked as for any call.
    let (status, spoofed) = create(
        &w,
        &key,
        json!({"phone": "+14155550198", "from_extension": "1002", "caller_number": "+14155550000"}),
    );
    assert_eq!(
        (status, code_and_field(&spoofed)),
        (422, ("unknown_number", "caller_number"))
    );
}

#[test]
fn a_persons_call_is_refused_an_agent_and_an_unknown_extension() {
    let w = World::new();
    let (tid, key, _pk, _sc) = tenant_ringing_john(&w, "sc-c2c-bad");
    for (body, expected) in [
        (
            json!({"phone": CALLEE, "from_extension": "1002", "system_prompt": "x"}),
            (422, ("invalid_value", "system_prompt")),
        ),
        (
            json!({"phone": CALLEE, "from_extension": "1002", "agent_id": "agt_0123456789"}),
            (422, ("invalid_value", "agent_id")),
        ),
        (
            json!({"phone": CALLEE, "from_extension": "12a"}),
            (422, ("invalid_value", "from_extension")),
        ),
        (
            json!({"phone": CALLEE, "from_extension": "4444"}),
            (422, ("unknown_extension", "from_extension")),
        ),
    ] {
        let (status, v) = create(&w, &key, body.clone());
        assert_eq!((status, code_and_field(&v)), expected, "{body}: {v}");
    }
    // An AI agent's extension is no person's.
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "bot", "default_engine": "echo"})),
    );
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"kind": "ai_agent", "agent_id": agent["id"], "extension": "1009", "first_name": "Bot"})),
    );
    let (status, v) = create(&w, &key, json!({"phone": CALLEE, "from_extension": "1009"}));
    assert_eq!(
        (status, code_and_field(&v)),
        (422, ("unknown_extension", "from_extension"))
    );
    // Nothing was created.
    let listed = w.send("GET", "/v1/calls", Some(&key), None).body_json();
    assert_eq!(listed["data"], json!([]));
    let _ = (ring, CALLER);
}

/// A `voice360` endpoint of `tid` listening for `event`.
pub(super) fn v360_hook(w: &World, tid: &str, event: &str) -> Value {
    super::dialect_webhooks::endpoint(
        w,
        tid,
        json!({"url": format!("https://hooks.example.com/{event}"), "format": "voice360",
               "voice360_event": event}),
    )
}

/// The bodies delivered to `hook` among `jobs`.
pub(super) fn bodies_to(
    jobs: &[crate::webhooks::delivery::DeliveryJob],
    hook: &Value,
) -> Vec<Value> {
    jobs.iter()
        .filter(|j| j.endpoint_id == hook["id"].as_str().unwrap_or_default())
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect()
}

/// The raw bodies (as sent, byte for byte) delivered to `hook` among `jobs`.
fn raw_bodies_to(jobs: &[crate::webhooks::delivery::DeliveryJob], hook: &Value) -> Vec<String> {
    jobs.iter()
        .filter(|j| j.endpoint_id == hook["id"].as_str().unwrap_or_default())
        .map(|j| j.payload.clone())
        .collect()
}

pub(super) fn of_type(jobs: &[crate::webhooks::delivery::DeliveryJob], t: &str) -> Vec<Value> {
    jobs.iter()
        .filter(|j| j.event_type == t && j.format == crate::model::WebhookFormat::Native)
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect()
}

#[test]
fn a_persons_legs_are_call_leg_events_and_their_answer_is_user_answer_then_call_ended() {
    use voxline_shared::sidecar_link::InboundDecision;
    let w = World::new();
    let (tid, key, pk, sc) = tenant_ringing_john(&w, "sc-legs");
    let answer_hook = v360_hook(&w, &tid, "USER_ANSWER");
    let ended_hook = v360_hook(&w, &tid, "CALL_ENDED");
    let member_hook = v360_hook(&w, &tid, "QUEUE_MEMBER_ANSWER");
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"voice360_account": "61"})),
    );
    let d = ring(&w, &sc, NUMBER, CALLER);
    let InboundDecision::RingUser { offer, .. } = d else {
        panic!("{d:?}")
    };
    let id = offer.call_id.clone();
    w.outbox.take();
    sc.events(
        &w,
        &id,
        &[
            json!({"type": "leg", "step": "dialing", "user_pk": pk}),
            json!({"type": "leg", "step": "ringing", "user_pk": pk}),
            json!({"type": "answered"}),
            json!({"type": "leg", "step": "answered", "user_pk": pk}),
        ],
    );
    let jobs = w.outbox.take();
    let legs = of_type(&jobs, "call.leg");
    let steps: Vec<&str> = legs
        .iter()
        .map(|l| l["data"]["leg"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["dialing", "ringing", "answered"], "{legs:?}");
    assert_eq!(
        legs[2]["data"]["leg"],
        json!({"step": "answered", "user_pk": pk, "destination": null, "sip_code": null, "talk_ms": 0})
    );
    assert_eq!(legs[2]["data"]["id"], id.as_str());
    // John answered: USER_ANSWER, once, as the document's example.
    let answered = raw_bodies_to(&jobs, &answer_hook);
    assert_eq!(answered.len(), 1, "{jobs:?}");
    // Byte for byte as the document's example, but for its values.
    let at = answered[0]
        .split(r#""timestamp":"#)
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap();
    assert_eq!(
        answered[0],
        format!(
            r#"{{"event_name":"USER_ANSWER","account_id":"61","timestamp":{at},"metadata":{{"caller_id_number":"{CALLER}","to_user_id":"{pk}","uniqueid":"{id}"}}}}"#
        )
    );
    // Not a queue call: no queue member events.
    assert!(bodies_to(&jobs, &member_hook).is_empty());
    // On the call now: his availability shows it, inbound.
    let users = w
        .send_req(&crate::http::ApiRequest {
            method: "GET".into(),
            scheme: "https".into(),
            path: "/v3/voice/61/availability".into(),
            headers: vec![("cf-connecting-ip".into(), "198.51.100.9".into())],
            ..Default::default()
        })
        .body_json();
    assert_eq!(users["result"][0]["devices_registered"], true, "{users}");
    let dev = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/voice360-keys"),
        Some(json!({"kind": "developer"})),
    );
    let full = w
        .send_req(&crate::http::ApiRequest {
            method: "GET".into(),
            scheme: "https".into(),
            path: "/v3/voice/61/availability".into(),
            headers: vec![
                ("cf-connecting-ip".into(), "198.51.100.9".into()),
                ("x-api-key".into(), dev["key"].as_str().unwrap().into()),
            ],
            ..Default::default()
        })
        .body_json();
    let channels = &full["result"][0]["channels"];
    assert_eq!(channels[0]["direction"], "inbound", "{full}");
    assert_eq!(channels[0]["from"], CALLER);
    assert_eq!(channels[0]["to"], "1002");
    // The call ends: CALL_ENDED says inbound, from the caller to John.
    sc.events_from(
        &w,
        &id,
        5,
        &[
            json!({"type": "leg", "step": "ended", "user_pk": pk, "sip_code": 200, "talk_ms": 61_000}),
            json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
                "timings": {"dispatched_ms": 0, "answered_ms": 1, "ended_ms": 2}}),
        ],
    );
    let jobs = w.outbox.take();
    let legs = of_type(&jobs, "call.leg");
    assert_eq!(legs.len(), 1);
    assert_eq!(
        (
            legs[0]["data"]["leg"]["sip_code"].as_u64(),
            legs[0]["data"]["leg"]["talk_ms"].as_u64()
        ),
        (Some(200), Some(61_000))
    );
    let ended = bodies_to(&jobs, &ended_hook);
    assert_eq!(ended.len(), 1, "{jobs:?}");
    let m = &ended[0]["metadata"];
    assert_eq!(
        (
            m["caller_id_number"].as_str(),
            m["dnis"].as_str(),
            m["call_direction"].as_str(),
            m["to_user_id"].as_str()
        ),
        (
            Some(CALLER),
            Some(NUMBER),
            Some("inbound"),
            Some(pk.to_string().as_str())
        )
    );
    let _ = key;
}

// ---- queues ----

const QUEUE_NUMBER: &str = "+14155550150";

/// A person of `tid` at `ext`, their phone registered with `sc`: their pk.
fn person_here(w: &World, tid: &str, sc: &super::TestSidecar, ext: &str, name: &str) -> u64 {
    use super::phone_registrations::{decide, register_body, sip_password};
    let u = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": ext, "first_name": name})),
    );
    let pk = u["pk"].as_u64().unwrap();
    let phone = sip_password(w, tid, pk);
    let contact = format!("sip:{ext}@127.0.0.1:5070");
    let body = register_body(
        &phone,
        &phone.password,
        voxline_shared::sip_digest::Algorithm::Md5,
        &format!("reg-{ext}"),
        1,
        &[(contact.as_str(), 600)],
    );
    decide(w, sc, body);
    pk
}

/// A queue of `tid` with `body` (name and extension added), `QUEUE_NUMBER`
/// routed to it: its pk.
fn queue_on_number(w: &World, tid: &str, mut body: Value) -> u64 {
    body["name"] = json!("Sales Queue");
    body["extension"] = json!("8001");
    let q = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/queues"),
        Some(body),
    );
    let pk = q["pk"].as_u64().expect("a queue");
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/{QUEUE_NUMBER}"),
        Some(json!({"route": {"kind": "queue", "queue_id": pk}})),
    );
    pk
}

fn queued(
    d: voxline_shared::sidecar_link::InboundDecision,
) -> (
    Box<voxline_shared::sidecar_link::Offer>,
    voxline_shared::sidecar_link::QueuePlan,
) {
    match d {
        voxline_shared::sidecar_link::InboundDecision::Queue { offer, queue } => (offer, queue),
        other => panic!("not queued: {other:?}"),
    }
}

fn member_pks(plan: &voxline_shared::sidecar_link::QueuePlan) -> Vec<u64> {
    plan.members.iter().map(|m| m.user_pk).collect()
}

#[test]
fn a_call_to_a_queue_waits_while_the_members_here_ring_in_order_and_counts_its_position() {
    use voxline_shared::sidecar_link::QueueOverflow;
    let w = World::new();
    let (tid, key, john, sc) = tenant_ringing_john(&w, "sc-queue");
    let ann = person_here(&w, &tid, &sc, "1003", "Ann");
    // Bob has no phone; an AI agent's user cannot be rung.
    let bob = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1004", "first_name": "Bob"})),
    )["pk"]
        .as_u64()
        .unwrap();
    let q = queue_on_number(
        &w,
        &tid,
        json!({"strategy": "linear", "timeout": 15, "retry": 4, "members": [ann, bob, john, ann],
               "max_wait_seconds": 120, "announce_every_seconds": 30}),
    );
    let shown = w.admin(
        "GET",
        &format!("/admin/tenants/{tid}/directory/queues"),
        None,
    );
    assert_eq!(shown["data"][0]["overflow"], json!({"kind": "hangup"}));
    let (offer, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, CALLER));
    assert_eq!(
        member_pks(&plan),
        [ann, john],
        "in the queue's order, once each"
    );
    assert_eq!(
        (
            plan.queue_pk,
            plan.name.as_str(),
            plan.extension.as_str(),
            plan.ring_all,
            plan.member_timeout_seconds,
            plan.retry_seconds,
            plan.max_wait_seconds,
            plan.announce_every_seconds,
            plan.position,
            plan.overflow
        ),
        (
            q,
            "Sales Queue",
            "8001",
            false,
            15,
            4,
            120,
            30,
            1,
            QueueOverflow::Hangup
        )
    );
    assert_eq!(plan.members[0].extension, "1003");
    assert_eq!(
        (
            offer.agent_id.as_str(),
            offer.phone.as_str(),
            offer.caller_number.as_deref(),
            offer.record
        ),
        ("", CALLER, Some(QUEUE_NUMBER), true)
    );
    let first = offer.call_id.clone();
    let record = w.calls.rows(&tid).call(&first).unwrap().unwrap();
    assert_eq!(record.queue.as_ref().map(|q| q.pk), Some(q));

    // A second caller is second in line.
    let (second, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550178"));
    assert_eq!(plan.position, 2);
    // Ann answers the first: it leaves the queue, and Ann is on a call, so
    // the next caller rings John only, and is second (the second waits).
    sc.events(
        &w,
        &first,
        &[
            json!({"type": "answered"}),
            json!({"type": "queue", "step": "entered", "queue_pk": q, "position": 1}),
            json!({"type": "leg", "step": "answered", "user_pk": ann}),
            json!({"type": "queue", "step": "connected", "queue_pk": q, "wait_ms": 9_000}),
        ],
    );
    let (third, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550179"));
    assert_eq!((member_pks(&plan), plan.position), (vec![john], 2));
    // Queue availability counts the queue's live calls; Ann is on a call.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"voice360_account": "62"})),
    );
    let qa = w
        .send_req(&crate::http::ApiRequest {
            method: "GET".into(),
            scheme: "https".into(),
            path: format!("/v3/voice/62/availability/queues/{q}"),
            headers: vec![("cf-connecting-ip".into(), "198.51.100.9".into())],
            ..Default::default()
        })
        .body_json();
    assert_eq!(
        (
            qa["result"]["active_calls"].as_u64(),
            qa["result"]["agents_online"].as_u64(),
            qa["result"]["agents_on_call"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{qa}"
    );
    // Ann's call ends; with a 60 s wrap-up she is rung again only after it.
    sc.events_from(
        &w,
        &first,
        5,
        &[
            json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
            "timings": {"dispatched_ms": 0, "answered_ms": 1, "ended_ms": 2}}),
        ],
    );
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/directory/queues/{q}"),
        Some(
            json!({"name": "Sales Queue", "extension": "8001", "strategy": "linear",
                    "wrapuptime": 60, "members": [ann, john]}),
        ),
    );
    let (_, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550180"));
    assert_eq!(member_pks(&plan), [john], "Ann wraps up");
    w.now.set(w.now.get() + 61_000);
    let (_, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550181"));
    assert_eq!(member_pks(&plan), [ann, john], "Ann is back");
    let _ = (second, third, key);
}

#[test]
fn ringinuse_rrmemory_and_the_queues_limits() {
    let w = World::new();
    let (tid, _key, john, sc) = tenant_ringing_john(&w, "sc-rr");
    let ann = person_here(&w, &tid, &sc, "1003", "Ann");
    let cid = person_here(&w, &tid, &sc, "1005", "Cid");
    // Round robin with memory: each call starts one member further on,
    // members in use rung too.
    let q = queue_on_number(
        &w,
        &tid,
        json!({"strategy": "rrmemory", "ringinuse": true, "members": [john, ann, cid]}),
    );
    let orders: Vec<Vec<u64>> = (0..4)
        .map(|i| {
            let caller = format!("+1415555020{i}");
            member_pks(&queued(ring(&w, &sc, QUEUE_NUMBER, &caller)).1)
        })
        .collect();
    assert_eq!(
        orders,
        [
            vec![john, ann, cid],
            vec![ann, cid, john],
            vec![cid, john, ann],
            vec![john, ann, cid]
        ]
    );
    // ringall: everyone at once; at most `maxlen` callers wait (4 do now).
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/directory/queues/{q}"),
        Some(
            json!({"name": "Sales Queue", "extension": "8001", "strategy": "ringall",
                    "ringinuse": true, "maxlen": 4, "members": [john, ann]}),
        ),
    );
    assert_eq!(
        super::inbound_calls::refusal(&ring(&w, &sc, QUEUE_NUMBER, "+14155550210")),
        (486, "at_capacity")
    );
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/directory/queues/{q}"),
        Some(
            json!({"name": "Sales Queue", "extension": "8001", "strategy": "ringall",
                    "ringinuse": true, "members": [john, ann]}),
        ),
    );
    let (_, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550211"));
    assert!(plan.ring_all);
    assert_eq!(plan.position, 5);
    // Nobody to ring: joining an empty queue is refused when it says so.
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/directory/queues/{q}"),
        Some(
            json!({"name": "Sales Queue", "extension": "8001", "joinempty": false, "members": []}),
        ),
    );
    assert_eq!(
        super::inbound_calls::refusal(&ring(&w, &sc, QUEUE_NUMBER, "+14155550212")),
        (480, "user_unavailable")
    );
    // A number routed to a queue that is gone: no route.
    w.admin(
        "DELETE",
        &format!("/admin/tenants/{tid}/directory/queues/{q}"),
        None,
    );
    assert_eq!(
        super::inbound_calls::refusal(&ring(&w, &sc, QUEUE_NUMBER, "+14155550213")),
        (480, "no_route")
    );
}

#[test]
fn a_queue_overflowing_to_an_agent_offers_that_agents_engine() {
    use voxline_shared::sidecar_link::QueueOverflow;
    let w = World::new();
    let (tid, _key, john, sc) = tenant_ringing_john(&w, "sc-overflow");
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(
            json!({"name": "backup", "voice": "alloy", "default_engine": "echo",
                    "system_prompt": "Take a message from {{phone}}."}),
        ),
    );
    let aid = agent["id"].as_str().unwrap();
    let qp = format!("/admin/tenants/{tid}/directory/queues");
    // The overflow is validated: an agent of the tenant, a known kind.
    for (bad, code) in [
        (
            json!({"kind": "agent", "agent_id": "agt_00000000000000000000"}),
            "unknown_agent",
        ),
        (json!({"kind": "agent"}), "missing_field"),
        (json!({"kind": "ivr"}), "invalid_value"),
        (json!({"kind": "hangup", "agent_id": aid}), "unknown_field"),
    ] {
        let r = w.send(
            "POST",
            &qp,
            Some(super::ADMIN),
            Some(json!({"name": "Q", "extension": "8009", "overflow": bad})),
        );
        assert_eq!(
            (
                r.status,
                r.body_json()["error"]["code"].as_str().map(str::to_string)
            ),
            (
                if code == "unknown_field" { 400 } else { 422 },
                Some(code.to_string())
            ),
            "{bad}: {}",
            r.body
        );
        assert_eq!(r.body_json()["error"]["field"], "overflow");
    }
    let r = w.send(
        "POST",
        &qp,
        Some(super::ADMIN),
        Some(json!({"name": "Q", "extension": "8009", "max_wait_seconds": 5})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    queue_on_number(
        &w,
        &tid,
        json!({"members": [john], "overflow": {"kind": "agent", "agent_id": aid}}),
    );
    let (offer, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, CALLER));
    assert_eq!(plan.overflow, QueueOverflow::Agent);
    assert_eq!(plan.max_wait_seconds, 300, "the default wait");
    assert_eq!(
        (
            offer.agent_id.as_str(),
            offer.engine.as_str(),
            offer.system_prompt.as_deref()
        ),
        (aid, "echo", Some("Take a message from +14155550177.")),
        "built like the agent's answered call"
    );
    // The agent disabled: the overflow hangs up.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"enabled": false})),
    );
    let (offer, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550188"));
    assert_eq!(
        (plan.overflow, offer.agent_id.as_str()),
        (QueueOverflow::Hangup, "")
    );
}

#[test]
fn queue_events_of_a_waiting_caller_are_voice360_queue_webhooks() {
    let w = World::new();
    let (tid, _key, john, sc) = tenant_ringing_john(&w, "sc-qhooks");
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"voice360_account": "63"})),
    );
    let q = queue_on_number(&w, &tid, json!({"members": [john]}));
    let hooks: Vec<(&str, Value)> = [
        "QUEUE_ENTER",
        "QUEUE_MEMBER_DIAL",
        "QUEUE_MEMBER_ANSWER",
        "QUEUE_MEMBER_DIAL_HANGUP",
        "QUEUE_NO_ANSWER",
        "QUEUE_HANGUP",
        "QUEUE_HANGUP_TIMEOUT",
        "QUEUE_HANGUP_ABANDONED",
        "USER_ANSWER",
    ]
    .into_iter()
    .map(|e| (e, v360_hook(&w, &tid, e)))
    .collect();
    let (offer, _) = queued(ring(&w, &sc, QUEUE_NUMBER, CALLER));
    let id = offer.call_id.clone();
    w.outbox.take();
    let sent = |jobs: &[crate::webhooks::delivery::DeliveryJob]| -> Vec<(String, Value)> {
        hooks
            .iter()
            .flat_map(|(name, hook)| {
                bodies_to(jobs, hook)
                    .into_iter()
                    .map(|b| (name.to_string(), b["metadata"].clone()))
            })
            .collect()
    };
    // Entered, a round nobody answered, John rung again and answering.
    sc.events(
        &w,
        &id,
        &[
            json!({"type": "answered"}),
            json!({"type": "queue", "step": "entered", "queue_pk": q, "position": 1}),
            json!({"type": "leg", "step": "dialing", "user_pk": john}),
            json!({"type": "leg", "step": "ended", "user_pk": john, "sip_code": 480}),
            json!({"type": "queue", "step": "no_answer", "queue_pk": q, "wait_ms": 20_500}),
            json!({"type": "queue", "step": "announced", "queue_pk": q, "position": 1, "wait_ms": 30_000}),
            json!({"type": "leg", "step": "dialing", "user_pk": john}),
            json!({"type": "leg", "step": "answered", "user_pk": john}),
            json!({"type": "queue", "step": "connected", "queue_pk": q, "wait_ms": 31_250}),
        ],
    );
    let jobs = w.outbox.take();
    let got = sent(&jobs);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    // One per endpoint per matching step (grouped by endpoint here).
    assert_eq!(
        names,
        [
            "QUEUE_ENTER",
            "QUEUE_MEMBER_DIAL",
            "QUEUE_MEMBER_DIAL",
            "QUEUE_MEMBER_ANSWER",
            "QUEUE_MEMBER_DIAL_HANGUP",
            "QUEUE_NO_ANSWER",
            "QUEUE_HANGUP",
            "USER_ANSWER"
        ],
        "{got:?}"
    );
    let by = |name: &str| got.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let qs = q.to_string();
    assert_eq!(
        by("QUEUE_ENTER"),
        json!({"queue_id": qs, "queuecall_id": id, "uniqueid": id, "queuename": qs,
               "callerid_number": CALLER, "callerid_name": null})
    );
    assert_eq!(
        by("QUEUE_MEMBER_DIAL_HANGUP")["duration"],
        0,
        "the unanswered leg talked 0 s"
    );
    assert_eq!(
        by("QUEUE_NO_ANSWER"),
        json!({"caller_id_number": CALLER, "queue_name": "Sales Queue", "queue_id": qs, "wait_time": 20})
    );
    assert_eq!(by("QUEUE_HANGUP")["duration"], json!(31.25));
    assert_eq!(by("QUEUE_HANGUP")["dnis"], QUEUE_NUMBER);
    assert_eq!(by("QUEUE_MEMBER_ANSWER")["to_user_id"], john.to_string());
    // Native: every step, announcements included.
    let queue_steps: Vec<String> = of_type(&jobs, "call.queue")
        .iter()
        .map(|e| e["data"]["queue"]["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        queue_steps,
        ["entered", "no_answer", "announced", "connected"]
    );
    // Another caller times out, a third hangs up waiting.
    for (caller, step, name) in [
        ("+14155550190", "timed_out", "QUEUE_HANGUP_TIMEOUT"),
        ("+14155550191", "abandoned", "QUEUE_HANGUP_ABANDONED"),
    ] {
        let (offer, _) = queued(ring(&w, &sc, QUEUE_NUMBER, caller));
        w.outbox.take();
        sc.events(
            &w,
            &offer.call_id,
            &[
                json!({"type": "answered"}),
                json!({"type": "queue", "step": "entered", "queue_pk": q, "position": 1}),
                json!({"type": "queue", "step": step, "queue_pk": q, "wait_ms": 300_000}),
            ],
        );
        let got = sent(&w.outbox.take());
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["QUEUE_ENTER", "QUEUE_HANGUP", name], "{got:?}");
        assert_eq!(got[2].1["wait_time"], 300);
    }
}

#[test]
fn leastrecent_fewestcalls_and_random_order_the_members_from_the_history() {
    use crate::api::inbound_calls::{ring_order, Ordering};
    use crate::dialects::voice360::Strategy;
    use crate::model::{test_call, CallQueue, CallRecord};
    use voxline_shared::CallStatus;
    let ended = |user: u64, at: &str, queue: Option<u64>| CallRecord {
        answered_user: Some(user),
        ended_at: Some(at.into()),
        queue: queue.map(|pk| CallQueue {
            pk,
            name: "Q".into(),
            left: true,
        }),
        ..test_call(CallStatus::Completed)
    };
    // Newest first, as the call store lists them: 2 ended last, 1 before,
    // 3 long ago; 4 never had a call; 5 is on one now.
    let history = vec![
        CallRecord {
            answered_user: Some(5),
            ..test_call(CallStatus::InProgress)
        },
        ended(2, "2026-11-25T14:40:00.000Z", Some(7)),
        ended(1, "2026-11-25T14:30:00.000Z", Some(7)),
        ended(2, "2026-11-25T14:20:00.000Z", Some(7)),
        ended(3, "2026-11-25T10:00:00.000Z", Some(8)),
    ];
    let o = |random: [u8; 32]| Ordering {
        queue_pk: 7,
        turn: 1,
        history: &history,
        random,
        now_ms: crate::ids::parse_rfc3339_utc_ms("2026-11-25T15:00:00Z").unwrap(),
    };
    let order = |s: Strategy, random: [u8; 32]| {
        let mut pks = vec![5, 1, 2, 3, 4];
        ring_order(s, &mut pks, &o(random));
        pks
    };
    assert_eq!(order(Strategy::LeastRecent, [0; 32]), [4, 3, 1, 2, 5]);
    // Calls of queue 7 answered: 2 twice, 1 once, the others none (3's
    // was another queue's); ties keep the listed order.
    assert_eq!(order(Strategy::FewestCalls, [0; 32]), [5, 3, 4, 1, 2]);
    assert_eq!(order(Strategy::Linear, [9; 32]), [5, 1, 2, 3, 4]);
    // Random: a permutation, which the randomness decides.
    let a = order(Strategy::Random, [1; 32]);
    let b = order(
        Strategy::Random,
        core::array::from_fn(|i| (i * 37 + 11) as u8),
    );
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 3, 4, 5]);
    assert_ne!(a, b);
}

#[test]
fn a_voice360_click_to_call_is_user_dial_then_user_hangup_and_call_ended_with_its_duration() {
    let w = World::new();
    let (tid, _key, pk, sc) = tenant_ringing_john(&w, "sc-c2c-hooks");
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"voice360_account": "64"})),
    );
    let dev = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/voice360-keys"),
        Some(json!({"kind": "developer"})),
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    let dial = v360_hook(&w, &tid, "USER_DIAL");
    let hangup = v360_hook(&w, &tid, "USER_HANGUP");
    let ended = v360_hook(&w, &tid, "CALL_ENDED");
    let r = w.send_req(&crate::http::ApiRequest {
        method: "POST".into(),
        scheme: "https".into(),
        path: "/v3/voice/64/call/outbound".into(),
        content_type: Some("application/json".into()),
        body: json!({"from": "1002", "to": CALLEE})
            .to_string()
            .into_bytes(),
        headers: vec![
            ("cf-connecting-ip".into(), "198.51.100.9".into()),
            ("x-api-key".into(), dev),
        ],
        ..Default::default()
    });
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body_json()["result"]["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let jobs = w.outbox.take();
    let dialed = raw_bodies_to(&jobs, &dial);
    assert_eq!(dialed.len(), 1, "{jobs:?}");
    assert!(
        dialed[0].ends_with(&format!(
            r#""metadata":{{"dialed_number":"{CALLEE}","from_user_id":"{pk}","uniqueid":"{id}"}}}}"#
        )),
        "{}",
        dialed[0]
    );
    // The sidecar rings John, he answers, the callee is dialled and answers,
    // 45 s later the call ends.
    let lease = sc.send(
        &w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 1, "held_calls": [], "wait_ms": 0}),
    );
    let offer = &lease["offers"][0];
    assert_eq!(offer["connect"]["kind"], "click_to_call");
    sc.send(
        &w,
        paths::ACK,
        json!({"lease_id": offer["lease_id"], "call_id": id, "accepted": true}),
    );
    let events_now = |first_seq: usize, kinds: &[Value]| {
        let events: Vec<Value> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| json!({"call_id": id, "attempt": 1, "seq": first_seq + i, "at_ms": w.now.get(), "kind": k}))
            .collect();
        sc.send(&w, paths::EVENTS, json!({"events": events}));
    };
    events_now(
        1,
        &[
            json!({"type": "leg", "step": "dialing", "user_pk": pk}),
            json!({"type": "leg", "step": "answered", "user_pk": pk}),
            json!({"type": "leg", "step": "dialing", "destination": CALLEE}),
            json!({"type": "answered"}),
        ],
    );
    // 45 s on, the sidecar polling meanwhile (it holds the call).
    for step in [20_000, 25_000] {
        w.now.set(w.now.get() + step);
        sc.send(
            &w,
            paths::LEASE,
            json!({"region": "local", "free_slots": 0, "held_calls": [id], "wait_ms": 0}),
        );
    }
    events_now(
        5,
        &[
            json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
            "timings": {"dispatched_ms": 0, "answered_ms": 1, "ended_ms": 2}}),
        ],
    );
    let jobs = w.outbox.take();
    let legs = of_type(&jobs, "call.leg");
    assert_eq!(legs.len(), 3);
    assert_eq!(legs[2]["data"]["leg"]["destination"], CALLEE);
    let hung = raw_bodies_to(&jobs, &hangup);
    assert_eq!(hung.len(), 1, "{jobs:?}");
    assert!(
        hung[0].ends_with(&format!(
            r#""metadata":{{"dialed_number":"{CALLEE}","from_user_id":"{pk}","uniqueid":"{id}","duration":45}}}}"#
        )),
        "{}",
        hung[0]
    );
    let end = bodies_to(&jobs, &ended);
    assert_eq!(end.len(), 1);
    assert_eq!(
        (
            end[0]["metadata"]["call_direction"].as_str(),
            end[0]["metadata"]["caller_id_number"].as_str(),
            end[0]["metadata"]["to_user_id"].as_str(),
            end[0]["metadata"]["duration"].as_u64()
        ),
        (
            Some("outbound"),
            Some(NUMBER),
            Some(pk.to_string().as_str()),
            Some(45)
        )
    );
    // An outbound call's person leg is no USER_ANSWER (that is inbound's).
    assert!(of_type(&jobs, "call.leg")
        .iter()
        .all(|l| l["data"]["direction"] == "outbound"));
}

#[test]
fn every_inbound_call_created_is_one_incoming_external_call_and_a_refused_one_none() {
    let w = World::new();
    let (tid, _key, john, sc) = tenant_ringing_john(&w, "sc-incoming");
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"voice360_account": "64"})),
    );
    let incoming = v360_hook(&w, &tid, "INCOMING_EXTERNAL_CALL");
    let dial = v360_hook(&w, &tid, "USER_DIAL");
    // An agent's number and a queue's, besides John's.
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "front desk", "default_engine": "echo"})),
    );
    const AGENT_NUMBER: &str = "+14155550161";
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/{AGENT_NUMBER}"),
        Some(json!({"route": {"kind": "agent", "agent_id": agent["id"]}})),
    );
    let q = queue_on_number(&w, &tid, json!({"members": [john]}));
    w.outbox.take();

    // A person's number: sent once at creation, byte for byte the example's shape.
    let d = ring(&w, &sc, NUMBER, CALLER);
    let id = match &d {
        voxline_shared::sidecar_link::InboundDecision::RingUser { offer, .. } => {
            offer.call_id.clone()
        }
        other => panic!("{other:?}"),
    };
    let jobs = w.outbox.take();
    let sent = raw_bodies_to(&jobs, &incoming);
    assert_eq!(sent.len(), 1, "{jobs:?}");
    let at = sent[0]
        .split(r#""timestamp":"#)
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap();
    assert_eq!(
        sent[0],
        format!(
            r#"{{"event_name":"INCOMING_EXTERNAL_CALL","account_id":"64","timestamp":{at},"metadata":{{"caller_id_number":"{CALLER}","caller_id_name":null,"dnis":"{NUMBER}","uniqueid":"{id}"}}}}"#
        )
    );
    assert!(bodies_to(&jobs, &dial).is_empty(), "not a user's dial");
    // Native: the call's one `call.ringing`, inbound.
    let ringing = of_type(&jobs, "call.ringing");
    assert_eq!(ringing.len(), 1, "{ringing:?}");
    assert_eq!(
        (
            ringing[0]["data"]["id"].as_str(),
            ringing[0]["data"]["direction"].as_str()
        ),
        (Some(id.as_str()), Some("inbound"))
    );
    // Answered and ended later: not sent again.
    sc.events(
        &w,
        &id,
        &[
            json!({"type": "leg", "step": "dialing", "user_pk": john}),
            json!({"type": "answered"}),
            json!({"type": "leg", "step": "answered", "user_pk": john}),
            json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
                "timings": {"dispatched_ms": 0, "answered_ms": 1, "ended_ms": 2}}),
        ],
    );
    assert!(bodies_to(&w.outbox.take(), &incoming).is_empty());

    // An agent's number and a queue's: one each, their number as `dnis`.
    for (number, caller) in [
        (AGENT_NUMBER, "+14155550181"),
        (QUEUE_NUMBER, "+14155550182"),
    ] {
        let d = ring(&w, &sc, number, caller);
        let id = match &d {
            voxline_shared::sidecar_link::InboundDecision::Answer { offer }
            | voxline_shared::sidecar_link::InboundDecision::Queue { offer, .. } => {
                offer.call_id.clone()
            }
            other => panic!("{number}: {other:?}"),
        };
        let sent = bodies_to(&w.outbox.take(), &incoming);
        assert_eq!(sent.len(), 1, "{number}");
        assert_eq!(
            sent[0]["metadata"],
            json!({"caller_id_number": caller, "caller_id_name": null, "dnis": number, "uniqueid": id})
        );
    }

    // Refused calls create nothing and send nothing.
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/directory/queues/{q}"),
        Some(
            json!({"name": "Sales Queue", "extension": "8001", "joinempty": false, "members": []}),
        ),
    );
    assert_eq!(
        super::inbound_calls::refusal(&ring(&w, &sc, QUEUE_NUMBER, "+14155550183")),
        (480, "user_unavailable")
    );
    assert_eq!(
        super::inbound_calls::refusal(&ring(&w, &sc, "+14155550999", "+14155550184")),
        (404, "unknown_number")
    );
    assert!(bodies_to(&w.outbox.take(), &incoming).is_empty());
}

#[test]
fn leavewhenempty_with_nobody_to_ring_refuses_or_goes_straight_to_the_agent_overflow() {
    use voxline_shared::sidecar_link::InboundDecision;
    let w = World::new();
    let (tid, _key, john, sc) = tenant_ringing_john(&w, "sc-leave");
    // Bob has no phone anywhere: never rung.
    let bob = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1004", "first_name": "Bob"})),
    )["pk"]
        .as_u64()
        .unwrap();
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "backup", "default_engine": "echo",
                    "system_prompt": "Take a message from {{phone}}."})),
    );
    let aid = agent["id"].as_str().unwrap().to_string();
    let q = queue_on_number(
        &w,
        &tid,
        json!({"members": [john, bob], "leavewhenempty": true}),
    );
    let put = |extra: Value| {
        let mut body = json!({"name": "Sales Queue", "extension": "8001", "members": [john, bob]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        w.admin(
            "PUT",
            &format!("/admin/tenants/{tid}/directory/queues/{q}"),
            Some(body),
        );
    };
    // John can be rung: the caller waits as in any queue.
    let (_, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550201"));
    assert_eq!(member_pks(&plan), [john]);
    // John busy (a call to his own number rings him): nobody to ring.
    let d = ring(&w, &sc, NUMBER, CALLER);
    assert!(matches!(d, InboundDecision::RingUser { .. }), "{d:?}");
    // Without leavewhenempty (joinempty on, the default) the caller joins
    // the empty queue ...
    put(json!({"leavewhenempty": false}));
    let (_, plan) = queued(ring(&w, &sc, QUEUE_NUMBER, "+14155550202"));
    assert!(plan.members.is_empty());
    // ... with it, refused as joinempty off is: overflow hangup or voicemail.
    for overflow in [json!({"kind": "hangup"}), json!({"kind": "voicemail"})] {
        put(json!({"leavewhenempty": true, "overflow": overflow}));
        assert_eq!(
            super::inbound_calls::refusal(&ring(&w, &sc, QUEUE_NUMBER, "+14155550203")),
            (480, "user_unavailable"),
            "{overflow}"
        );
    }
    // An agent overflow answers at once, as its own number would: not queued.
    put(json!({"leavewhenempty": true, "overflow": {"kind": "agent", "agent_id": aid}}));
    let d = ring(&w, &sc, QUEUE_NUMBER, "+14155550204");
    let InboundDecision::Answer { offer } = d else {
        panic!("not answered by the overflow: {d:?}")
    };
    assert_eq!(
        (
            offer.agent_id.as_str(),
            offer.engine.as_str(),
            offer.system_prompt.as_deref()
        ),
        (
            aid.as_str(),
            "echo",
            Some("Take a message from +14155550204.")
        )
    );
    let record = w
        .calls
        .rows(&tid)
        .call(&offer.call_id)
        .unwrap()
        .expect("the stored call");
    assert_eq!(
        (record.direction, record.queue.is_none()),
        (crate::model::CallDirection::Inbound, true),
        "an inbound call, never in the queue"
    );
    // The overflow agent disabled: refused.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"enabled": false})),
    );
    assert_eq!(
        super::inbound_calls::refusal(&ring(&w, &sc, QUEUE_NUMBER, "+14155550205")),
        (480, "user_unavailable")
    );
}
