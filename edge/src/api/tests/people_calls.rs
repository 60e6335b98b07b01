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
