//! Inbound calls (issue 16) over the in-memory ports: the sidecar's
//! `POST /v1/sidecar/inbound-calls`, the decision, the call it creates (held
//! by that sidecar, counted against the tenant's cap), its events and
//! webhooks with `direction: inbound`, and the call APIs showing it.

use super::{TestSidecar, World};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{paths, InboundCallAnswer, InboundDecision};

pub(super) const NUMBER: &str = "+14155550100";
pub(super) const CALLER: &str = "+14155550177";

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

pub(super) fn ring(w: &World, sc: &TestSidecar, called: &str, caller: &str) -> InboundDecision {
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

pub(super) fn refusal(d: &InboundDecision) -> (u16, &str) {
    match d {
        InboundDecision::Refuse { sip_code, reason } => (*sip_code, reason.as_str()),
        InboundDecision::Answer { offer }
        | InboundDecision::RingUser { offer, .. }
        | InboundDecision::Queue { offer, .. } => {
            panic!("answered: {offer:?}")
        }
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

/// Person John (1002) of a tenant whose `NUMBER` routes to him, his SIP
/// phone registered (one binding) with sidecar `sc`.
pub(super) fn tenant_ringing_john(w: &World, sc: &str) -> (String, String, u64, TestSidecar) {
    use super::phone_registrations::{decide, register_body, sip_password};
    let (tid, key) = w.tenant(false);
    let john = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1002", "first_name": "John"})),
    );
    let pk = john["pk"].as_u64().unwrap();
    let sidecar = TestSidecar::create(w, sc);
    sidecar.send(
        w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 4, "version": "t"}),
    );
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/{NUMBER}"),
        Some(json!({"route": {"kind": "user", "user_id": pk}})),
    );
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/c"})),
    );
    let phone = sip_password(w, &tid, pk);
    let body = register_body(
        &phone,
        &phone.password,
        voxline_shared::sip_digest::Algorithm::Md5,
        "reg1",
        1,
        &[("sip:1002@127.0.0.1:5062", 600)],
    );
    let d = decide(w, &sidecar, body);
    assert!(
        matches!(
            d,
            voxline_shared::sidecar_link::PhoneRegistrationDecision::Accept { .. }
        ),
        "{d:?}"
    );
    w.outbox.take();
    (tid, key, pk, sidecar)
}

#[test]
fn a_call_to_a_number_routed_to_a_person_rings_their_phones_on_the_asking_sidecar() {
    let w = World::new();
    let (_tid, key, pk, sc) = tenant_ringing_john(&w, "sc-john");
    let d = ring(&w, &sc, NUMBER, CALLER);
    let InboundDecision::RingUser { offer, ring } = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (
            ring.user_pk,
            ring.extension.as_str(),
            ring.display_name.as_str(),
            ring.ring_timeout_seconds,
            ring.forward_number.as_deref()
        ),
        (pk, "1002", "John", 30, None)
    );
    assert_eq!(
        (
            offer.phone.as_str(),
            offer.caller_number.as_deref(),
            offer.agent_id.as_str(),
            offer.system_prompt.as_deref(),
            offer.record
        ),
        (CALLER, Some(NUMBER), "", None, true),
        "no agent answers; the bridge is recorded"
    );
    let id = offer.call_id.clone();
    let ringing = webhooks(&w, "call.ringing");
    assert_eq!(ringing.len(), 1, "the call is created ringing");
    assert_eq!(ringing[0]["data"]["direction"], "inbound");

    // Held by the sidecar: its events apply, as for an AI's inbound call.
    sc.events(
        &w,
        &id,
        &[
            json!({"type": "answered"}),
            json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
                "timings": {"dispatched_ms": 0, "answered_ms": 1, "ended_ms": 2}}),
        ],
    );
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (
            call["direction"].as_str(),
            call["status"].as_str(),
            call["phone"].as_str()
        ),
        (Some("inbound"), Some("completed"), Some(CALLER))
    );
    let types: Vec<String> = w.outbox.take().into_iter().map(|j| j.event_type).collect();
    assert!(
        types.iter().any(|t| t == "call.answered") && types.iter().any(|t| t == "call.completed"),
        "{types:?}"
    );
}

#[test]
fn a_person_without_a_phone_on_the_asking_sidecar_is_unavailable_unless_they_forward() {
    let w = World::new();
    let (tid, _key, _pk, _sc) = tenant_ringing_john(&w, "sc-john2");
    // John's phone is registered with sc-john2, not with this sidecar.
    let other = TestSidecar::create(&w, "sc-elsewhere");
    // Nonces are spent per region: its own range.
    other.nonce.set(1 << 32);
    other.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 4, "version": "t"}),
    );
    assert_eq!(
        refusal(&ring(&w, &other, NUMBER, CALLER)),
        (480, "user_unavailable")
    );

    // Ann has no phone at all but forwards her calls.
    let ann = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1003", "first_name": "Ann",
            "forward_enabled": true, "forward_number": "+14155550123"})),
    );
    let ann_pk = ann["pk"].as_u64().unwrap();
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/+14155550103"),
        Some(json!({"route": {"kind": "user", "user_id": ann_pk}})),
    );
    let d = ring(&w, &other, "+14155550103", CALLER);
    let InboundDecision::RingUser { ring: ann_ring, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (
            ann_ring.user_pk,
            ann_ring.forward_number.as_deref(),
            ann_ring.voicemail
        ),
        (ann_pk, Some("+14155550123"), false)
    );

    // Dee has no phone and no forwarding, but her voicemail takes the call.
    let dee = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1006", "first_name": "Dee", "voicemail_enabled": true})),
    );
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/+14155550106"),
        Some(json!({"route": {"kind": "user", "user_id": dee["pk"]}})),
    );
    let d = ring(&w, &other, "+14155550106", CALLER);
    let InboundDecision::RingUser { ring: dee_ring, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (
            dee_ring.user_pk,
            dee_ring.forward_number.as_deref(),
            dee_ring.voicemail
        ),
        (dee["pk"].as_u64().unwrap(), None, true)
    );

    // Bob has no phone and forwards nowhere (a number set but forwarding off).
    let bob = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1004", "first_name": "Bob",
            "forward_enabled": false, "forward_number": "+14155550124"})),
    );
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/+14155550104"),
        Some(json!({"route": {"kind": "user", "user_id": bob["pk"]}})),
    );
    assert_eq!(
        refusal(&ring(&w, &other, "+14155550104", CALLER)),
        (480, "user_unavailable")
    );

    // A user deleted from the directory after the number was routed to them.
    let carl = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1005", "first_name": "Carl",
            "forward_enabled": true, "forward_number": "+14155550125"})),
    );
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/+14155550105"),
        Some(json!({"route": {"kind": "user", "user_id": carl["pk"]}})),
    );
    w.admin(
        "DELETE",
        &format!("/admin/tenants/{tid}/directory/users/{}", carl["pk"]),
        None,
    );
    assert_eq!(
        refusal(&ring(&w, &other, "+14155550105", CALLER)),
        (480, "user_unavailable")
    );

    // Only the forwarding and the voicemail calls were created.
    let calls = w.with_env(|env| {
        futures::executor::block_on(env.calls.list(
            &tid,
            &crate::calls::store::ListFilter {
                limit: 10,
                ..Default::default()
            },
        ))
    });
    assert_eq!(calls.unwrap().len(), 2);
}
