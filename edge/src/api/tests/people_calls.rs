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
fn v360_hook(w: &World, tid: &str, event: &str) -> Value {
    super::dialect_webhooks::endpoint(
        w,
        tid,
        json!({"url": format!("https://hooks.example.com/{event}"), "format": "voice360",
               "voice360_event": event}),
    )
}

/// The bodies delivered to `hook` among `jobs`.
fn bodies_to(jobs: &[crate::webhooks::delivery::DeliveryJob], hook: &Value) -> Vec<Value> {
    jobs.iter()
        .filter(|j| j.endpoint_id == hook["id"].as_str().unwrap_or_default())
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect()
}

fn of_type(jobs: &[crate::webhooks::delivery::DeliveryJob], t: &str) -> Vec<Value> {
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
    let answered = bodies_to(&jobs, &answer_hook);
    assert_eq!(answered.len(), 1, "{jobs:?}");
    assert_eq!(answered[0]["event_name"], "USER_ANSWER");
    assert_eq!(answered[0]["account_id"], "61");
    assert_eq!(
        serde_json::to_string(&answered[0]["metadata"]).unwrap(),
        format!(r#"{{"caller_id_number":"{CALLER}","to_user_id":"{pk}","uniqueid":"{id}"}}"#)
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
