//! Inbound calls (issue 16) over the in-memory ports: the sidecar's
//! `POST /v1/sidecar/inbound-calls`, the decision, the call it creates (held
//! by that sidecar, counted against the tenant's cap), its events and
//! webhooks with `direction: inbound`, and the call APIs showing it.

use super::{TestSidecar, World};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{paths, InboundCallAnswer, InboundDecision};

const NUMBER: &str = "+14155550100";
const CALLER: &str = "+14155550177";

/// A tenant with its default agent, an API key, a webhook endpoint, `NUMBER`
/// routed to the agent, and a registered sidecar `sc`.
fn answering_tenant(w: &World, sc: &str) -> (String, String, String, TestSidecar) {
    let (tid, key) = w.tenant(false);
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(
            json!({"name": "front desk", "voice": "alloy", "default_engine": "echo",
            "system_prompt": "You answer calls from {{phone}}."}),
        ),
    );
    let aid = agent["id"].as_str().unwrap().to_string();
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/{NUMBER}"),
        Some(json!({"route": {"kind": "agent", "agent_id": aid}})),
    );
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/c"})),
    );
    let sidecar = TestSidecar::create(w, sc);
    sidecar.send(
        w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 4, "version": "t"}),
    );
    w.outbox.take();
    (tid, key, aid, sidecar)
}

fn ring(w: &World, sc: &TestSidecar, called: &str, caller: &str) -> InboundDecision {
    let answer = sc.send(
        w,
        paths::INBOUND_CALLS,
        json!({"region": "local", "called": called, "caller": caller,
            "sip_call_id": "abc@trunk", "received_ms": 1}),
    );
    serde_json::from_value::<InboundCallAnswer>(answer)
        .unwrap()
        .decision
}

fn refusal(d: &InboundDecision) -> (u16, &str) {
    match d {
        InboundDecision::Refuse { sip_code, reason } => (*sip_code, reason.as_str()),
        InboundDecision::Answer { offer } => panic!("answered: {offer:?}"),
    }
}

fn webhooks(w: &World, event_type: &str) -> Vec<Value> {
    w.outbox
        .take()
        .into_iter()
        .filter(|j| j.event_type == event_type)
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect()
}

#[test]
fn a_call_to_a_number_routed_to_an_agent_is_answered_and_runs_as_a_held_call() {
    let w = World::new();
    let (_tid, key, aid, sc) = answering_tenant(&w, "sc-in");
    let d = ring(&w, &sc, NUMBER, CALLER);
    let InboundDecision::Answer { offer } = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (
            offer.phone.as_str(),
            offer.caller_number.as_deref(),
            offer.agent_id.as_str(),
            offer.engine.as_str(),
            offer.attempt
        ),
        (CALLER, Some(NUMBER), aid.as_str(), "echo", 1)
    );
    assert_eq!(
        offer.system_prompt.as_deref(),
        Some("You answer calls from +14155550177."),
        "the caller fills {{phone}}"
    );
    let id = offer.call_id.clone();
    let ringing = webhooks(&w, "call.ringing");
    assert_eq!(ringing.len(), 1, "the call is created ringing");
    assert_eq!(ringing[0]["data"]["direction"], "inbound");

    // The public call: inbound, ringing, the caller as `phone`.
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (
            call["direction"].as_str(),
            call["status"].as_str(),
            call["phone"].as_str(),
            call["caller_number"].as_str()
        ),
        (Some("inbound"), Some("ringing"), Some(CALLER), Some(NUMBER))
    );
    let listed = w.send("GET", "/v1/calls", Some(&key), None).body_json();
    assert_eq!(listed["data"][0]["direction"], "inbound");

    // Held by the sidecar without a lease: its events apply, its polls list it.
    sc.events(
        &w,
        &id,
        &[
            json!({"type": "answered"}),
            json!({"type": "transcript_turn", "role": "agent", "text": "Hello", "start_ms": 0, "end_ms": 500}),
            json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
                "timings": {"dispatched_ms": 0, "answered_ms": 1, "ended_ms": 2}}),
        ],
    );
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(call["status"], "completed");
    let jobs = w.outbox.take();
    let types: Vec<&str> = jobs.iter().map(|j| j.event_type.as_str()).collect();
    assert!(
        types.contains(&"call.answered")
            && types.contains(&"call.completed")
            && types.contains(&"transcript.saved"),
        "{types:?}"
    );
    for j in jobs.iter().filter(|j| j.event_type.starts_with("call.")) {
        let body: Value = serde_json::from_str(&j.payload).unwrap();
        assert_eq!(body["data"]["direction"], "inbound", "{}", j.event_type);
    }
    let t = w
        .send(
            "GET",
            &format!("/v1/calls/{id}/transcript"),
            Some(&key),
            None,
        )
        .body_json();
    assert_eq!(t["turns"][0]["text"], "Hello", "{t}");
}

#[test]
fn unknown_numbers_routes_and_disabled_agents_are_refused_with_their_codes() {
    let w = World::new();
    let (tid, _key, aid, sc) = answering_tenant(&w, "sc-refuse");
    assert_eq!(
        refusal(&ring(&w, &sc, "+14155550999", CALLER)),
        (404, "unknown_number")
    );
    // Another tenant's number is that tenant's (never ours): a number out of
    // service is nobody's.
    let (other, _) = w.tenant(false);
    w.admin(
        "PUT",
        &format!("/admin/tenants/{other}/numbers/+14155550101"),
        Some(json!({"status": "inactive"})),
    );
    assert_eq!(
        refusal(&ring(&w, &sc, "+14155550101", CALLER)),
        (404, "unknown_number")
    );
    // A number without a route.
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/+14155550102"),
        Some(json!({})),
    );
    assert_eq!(
        refusal(&ring(&w, &sc, "+14155550102", CALLER)),
        (480, "no_route")
    );
    // The agent disabled.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"enabled": false})),
    );
    assert_eq!(
        refusal(&ring(&w, &sc, NUMBER, CALLER)),
        (480, "agent_unavailable")
    );
    let calls = w.with_env(|env| {
        futures::executor::block_on(env.calls.list(
            &tid,
            &crate::calls::store::ListFilter {
                limit: 10,
                ..Default::default()
            },
        ))
        .unwrap()
    });
    assert!(calls.is_empty(), "refused calls leave no record: {calls:?}");
    assert!(webhooks(&w, "call.ringing").is_empty());
}

#[test]
fn the_tenants_cap_counts_inbound_and_outbound_calls_alike() {
    let w = World::new();
    let (tid, key, _aid, sc) = answering_tenant(&w, "sc-cap");
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"max_concurrent_calls": 1})),
    );
    let first = ring(&w, &sc, NUMBER, CALLER);
    let InboundDecision::Answer { offer } = first else {
        panic!("{first:?}")
    };
    // The second caller finds the tenant at its cap: busy.
    assert_eq!(
        refusal(&ring(&w, &sc, NUMBER, "+14155550178")),
        (486, "at_capacity")
    );
    // An outbound call waits behind it: the lease offers nothing.
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550180"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let poll =
        json!({"region": "local", "free_slots": 2, "held_calls": [offer.call_id], "wait_ms": 0});
    let lease = sc.send(&w, paths::LEASE, poll.clone());
    assert_eq!(lease["offers"], json!([]), "{lease}");
    // The inbound call ends: the outbound call is offered, a caller answered again.
    sc.events(
        &w,
        &offer.call_id,
        &[
            json!({"type": "ended", "status": "completed", "reason": "agent_hangup",
            "timings": {"dispatched_ms": 0, "ended_ms": 2}}),
        ],
    );
    let lease = sc.send(&w, paths::LEASE, poll);
    assert_eq!(lease["offers"].as_array().map(Vec::len), Some(1), "{lease}");
}

#[test]
fn a_sidecar_of_another_region_or_a_malformed_number_is_refused_by_the_link() {
    let w = World::new();
    let (_tid, _key, _aid, sc) = answering_tenant(&w, "sc-bad");
    let mut body = json!({"protocol_version": 1, "sidecar_id": sc.id, "region": "eu",
        "called": NUMBER, "caller": CALLER, "sip_call_id": "x", "received_ms": 1});
    let r = w.send_req(&sc.signed(&w, paths::INBOUND_CALLS, body.to_string().into_bytes()));
    assert_eq!(r.status, 403, "{}", r.body);
    body["region"] = json!("local");
    body["called"] = json!("4155550100");
    let r = w.send_req(&sc.signed(&w, paths::INBOUND_CALLS, body.to_string().into_bytes()));
    assert_eq!(
        (r.status, r.body_json()["error"]["code"].as_str()),
        (422, Some("invalid_phone_number"))
    );
}
