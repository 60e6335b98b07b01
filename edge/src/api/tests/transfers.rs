//! `POST /v1/calls/{id}/transfer` (issue 16) over the in-memory ports: the
//! checks, the command the holding sidecar's next poll carries, the call's
//! `transfer_request` through `requested`, `failed` and `completed` as the
//! sidecar's events say, and `call.transferred` naming the transfer.

use super::{TestSidecar, World};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{paths, Command, TransferMode, TransferTarget};

/// A tenant (webhook on), a call of its default agent leased and acked by
/// `sc-x`: (tenant, key, sidecar, call id).
fn held_call(w: &World) -> (String, String, TestSidecar, String) {
    let (tid, key) = w.tenant(true);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/x"})),
    );
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550131"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body_json()["id"].as_str().unwrap().to_string();
    let sc = TestSidecar::create(w, "sc-x");
    sc.send(
        w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 5, "version": "t"}),
    );
    let lease = poll(w, &sc, &[]);
    let o = lease["offers"][0].clone();
    sc.send(
        w,
        paths::ACK,
        json!({"lease_id": o["lease_id"], "call_id": o["call_id"], "accepted": true}),
    );
    w.settle();
    (tid, key, sc, id)
}

fn poll(w: &World, sc: &TestSidecar, held: &[&str]) -> Value {
    sc.send(
        w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 4, "held_calls": held, "wait_ms": 0}),
    )
}

/// The transfer commands in a poll's answer.
fn transfer_commands(lease: &Value) -> Vec<Command> {
    serde_json::from_value::<Vec<Command>>(lease["commands"].clone())
        .unwrap()
        .into_iter()
        .filter(|c| matches!(c, Command::Transfer { .. }))
        .collect()
}

fn transfer(w: &World, key: &str, id: &str, body: Value) -> (u16, Value) {
    let r = w.send(
        "POST",
        &format!("/v1/calls/{id}/transfer"),
        Some(key),
        Some(body),
    );
    (r.status, r.body_json())
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The sidecar's events, numbered from `first_seq`.
fn events(w: &World, sc: &TestSidecar, id: &str, first_seq: usize, kinds: &[Value]) {
    let events: Vec<Value> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"call_id": id, "attempt": 1, "seq": first_seq + i, "at_ms": 0, "kind": k}))
        .collect();
    sc.send(w, paths::EVENTS, json!({"events": events}));
    w.settle();
}

#[test]
fn a_transfer_goes_to_the_holding_sidecar_and_its_outcome_lands_on_the_call() {
    let w = World::new();
    let (_tid, key, sc, id) = held_call(&w);
    // Dialling: not yet.
    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!((s, code(&v)), (409, "call_not_answered"), "{v}");
    events(
        &w,
        &sc,
        &id,
        1,
        &[json!({"type": "ringing"}), json!({"type": "answered"})],
    );

    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!(s, 202, "{v}");
    let t = v["transfer_request"].clone();
    assert_eq!(
        (
            t["status"].as_str(),
            t["destination"].as_str(),
            t["mode"].as_str()
        ),
        (Some("requested"), Some("+15550002222"), Some("blind")),
        "{v}"
    );
    assert!(t["extension"].is_null() && t["error"].is_null(), "{t}");
    let xfr = t["id"].as_str().unwrap().to_string();
    assert!(xfr.starts_with("xfr_"), "{xfr}");
    // The sidecar's next poll carries it, once.
    let cmds = transfer_commands(&poll(&w, &sc, &[&id]));
    assert_eq!(
        cmds,
        [Command::Transfer {
            call_id: id.clone(),
            transfer_id: xfr.clone(),
            target: TransferTarget::Number {
                destination: "+15550002222".into()
            },
            mode: TransferMode::Blind,
            message: None,
        }]
    );
    assert!(transfer_commands(&poll(&w, &sc, &[&id])).is_empty());
    // One at a time.
    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550003333"}));
    assert_eq!((s, code(&v)), (409, "transfer_in_progress"), "{v}");

    // It fails: the call says why and goes on; another may be asked.
    events(
        &w,
        &sc,
        &id,
        3,
        &[
            json!({"type": "transfer_failed", "destination": "+15550002222", "error": "busy", "sip_code": 486, "transfer_id": xfr}),
        ],
    );
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (
            call["status"].as_str(),
            call["transfer_request"]["status"].as_str(),
            call["transfer_request"]["error"].as_str(),
            call["transfer_request"]["sip_code"].as_u64()
        ),
        (Some("in_progress"), Some("failed"), Some("busy"), Some(486)),
        "{call}"
    );
    assert!(call["transfer_request"]["ended_at"].is_string(), "{call}");
    w.outbox.take();
    let (s, v) = transfer(
        &w,
        &key,
        &id,
        json!({"destination": "+15550003333", "mode": "warm", "message": "A customer about order 17."}),
    );
    assert_eq!(s, 202, "{v}");
    let xfr2 = v["transfer_request"]["id"].as_str().unwrap().to_string();
    assert_ne!(xfr2, xfr);
    let cmds = transfer_commands(&poll(&w, &sc, &[&id]));
    assert!(
        matches!(&cmds[..], [Command::Transfer { mode: TransferMode::Warm, message: Some(m), .. }]
            if m == "A customer about order 17."),
        "{cmds:?}"
    );
    // A late failure of the first one changes nothing.
    events(
        &w,
        &sc,
        &id,
        4,
        &[
            json!({"type": "transfer_failed", "destination": "+15550002222", "error": "no_answer", "transfer_id": xfr}),
            json!({"type": "transferred", "destination": "+15550003333", "method": "warm", "mode": "warm", "at_offset_ms": 7000, "transfer_id": xfr2}),
        ],
    );
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (
            call["transfer_request"]["id"].as_str(),
            call["transfer_request"]["status"].as_str(),
            call["transfer_request"]["method"].as_str(),
        ),
        (Some(xfr2.as_str()), Some("completed"), Some("warm")),
        "{call}"
    );
    let hooks: Vec<Value> = w
        .outbox
        .take()
        .iter()
        .filter(|j| j.event_type == "call.transferred")
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect();
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["data"]["transfer"],
        json!({"destination": "+15550003333", "extension": null, "method": "warm",
            "mode": "warm", "transfer_id": xfr2, "at_offset_ms": 7000})
    );
    // Done: no second transfer of a transferred call.
    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!((s, code(&v)), (409, "transfer_in_progress"), "{v}");
    // Ended: no transfer at all.
    events(
        &w,
        &sc,
        &id,
        6,
        &[
            json!({"type": "ended", "status": "completed", "reason": "transferred", "timings": {"dispatched_ms": 0, "answered_ms": 2, "ended_ms": 9000}}),
        ],
    );
    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!((s, code(&v)), (409, "call_ended"), "{v}");
}

/// An extension is resolved to the person (only a person: an AI agent's
/// extension is unknown here), whose pk the command carries; the webhook
/// then names the extension.
#[test]
fn a_transfer_to_an_extension_names_the_person_to_the_sidecar() {
    let w = World::new();
    let (tid, key, sc, id) = held_call(&w);
    events(&w, &sc, &id, 1, &[json!({"type": "answered"})]);
    let alice = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1001", "first_name": "Alice", "caller_id": "Alice Smith"})),
    );
    let pk = alice["pk"].as_u64().unwrap();
    let (s, v) = transfer(&w, &key, &id, json!({"extension": "1009"}));
    assert_eq!((s, code(&v)), (422, "unknown_extension"), "{v}");
    assert_eq!(v["error"]["field"], "extension");
    let (s, v) = transfer(&w, &key, &id, json!({"extension": "1001"}));
    assert_eq!(s, 202, "{v}");
    assert_eq!(
        (
            v["transfer_request"]["extension"].as_str(),
            v["transfer_request"]["destination"].as_str()
        ),
        (Some("1001"), None),
        "{v}"
    );
    let xfr = v["transfer_request"]["id"].as_str().unwrap().to_string();
    let cmds = transfer_commands(&poll(&w, &sc, &[&id]));
    assert_eq!(
        cmds,
        [Command::Transfer {
            call_id: id.clone(),
            transfer_id: xfr.clone(),
            target: TransferTarget::User {
                user_pk: pk,
                extension: "1001".into(),
                display_name: Some("Alice Smith".into()),
            },
            mode: TransferMode::Blind,
            message: None,
        }]
    );
    // No phone of hers registered there.
    events(
        &w,
        &sc,
        &id,
        2,
        &[
            json!({"type": "transfer_failed", "destination": "1001", "error": "user_unavailable", "transfer_id": xfr}),
        ],
    );
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        call["transfer_request"]["error"], "user_unavailable",
        "{call}"
    );
    let (s, v) = transfer(&w, &key, &id, json!({"extension": "1001"}));
    assert_eq!(s, 202, "{v}");
    let xfr = v["transfer_request"]["id"].as_str().unwrap().to_string();
    w.outbox.take();
    events(
        &w,
        &sc,
        &id,
        3,
        &[
            json!({"type": "transferred", "destination": "1001", "extension": "1001", "method": "bridge", "mode": "blind", "at_offset_ms": 5000, "transfer_id": xfr}),
        ],
    );
    let hooks: Vec<Value> = w
        .outbox
        .take()
        .iter()
        .filter(|j| j.event_type == "call.transferred")
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect();
    assert_eq!(hooks[0]["data"]["transfer"]["extension"], "1001");
    assert_eq!(hooks[0]["data"]["transfer"]["destination"], "1001");
}

#[test]
fn transfer_bodies_are_checked() {
    let w = World::new();
    let (_tid, key, sc, id) = held_call(&w);
    events(&w, &sc, &id, 1, &[json!({"type": "answered"})]);
    for (body, status, code_, field) in [
        (json!({}), 422, "missing_field", "destination"),
        (
            json!({"destination": "+15550002222", "extension": "1001"}),
            422,
            "invalid_value",
            "extension",
        ),
        (
            json!({"destination": "5550002222"}),
            422,
            "invalid_phone_number",
            "destination",
        ),
        (
            json!({"extension": "x1"}),
            422,
            "invalid_value",
            "extension",
        ),
        (
            json!({"destination": "+15550002222", "mode": "attended"}),
            422,
            "invalid_value",
            "mode",
        ),
        (
            json!({"destination": "+15550002222", "message": "Hi"}),
            422,
            "invalid_value",
            "message",
        ),
        (
            json!({"destination": 5}),
            422,
            "invalid_type",
            "destination",
        ),
        (json!({"to": "+15550002222"}), 400, "unknown_field", "to"),
    ] {
        let (s, v) = transfer(&w, &key, &id, body.clone());
        assert_eq!(
            (s, code(&v), v["error"]["field"].as_str().unwrap_or("")),
            (status, code_, field),
            "{body}: {v}"
        );
    }
    assert!(transfer_commands(&poll(&w, &sc, &[&id])).is_empty());
    let (s, v) = transfer(
        &w,
        &key,
        "call_nope",
        json!({"destination": "+15550002222"}),
    );
    assert_eq!((s, code(&v)), (404, "call_not_found"), "{v}");
}

/// A transfer the sidecar never answers (one too old to know the command)
/// stops counting as under way after TRANSFER_PENDING_MS; a call whose
/// sidecar went silent (stranded) has nobody to tell: not transferable.
#[test]
fn a_silent_sidecars_transfer_lapses_and_a_stranded_call_is_not_transferable() {
    let w = World::new();
    let (_tid, key, sc, id) = held_call(&w);
    events(&w, &sc, &id, 1, &[json!({"type": "answered"})]);
    let (s, _) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!(s, 202);
    let asked = w.now.get();
    // Polls every 20 s keep the sidecar alive; the command went with the first.
    while w.now.get() < asked + crate::model::TRANSFER_PENDING_MS - 20_000 {
        w.now.set(w.now.get() + 20_000);
        poll(&w, &sc, &[&id]);
    }
    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!((s, code(&v)), (409, "transfer_in_progress"), "{v}");
    w.now.set(asked + crate::model::TRANSFER_PENDING_MS);
    poll(&w, &sc, &[&id]);
    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!(s, 202, "lapsed: {v}");
    let xfr = v["transfer_request"]["id"].as_str().unwrap().to_string();
    events(
        &w,
        &sc,
        &id,
        2,
        &[
            json!({"type": "transfer_failed", "destination": "+15550002222", "error": "rejected", "sip_code": 403, "transfer_id": xfr}),
        ],
    );
    // The sidecar goes silent: its call is stranded, nobody to tell.
    w.now.set(w.now.get() + 60_000);
    w.calls.dispatch_queues.tick_all();
    w.settle();
    let (s, v) = transfer(&w, &key, &id, json!({"destination": "+15550002222"}));
    assert_eq!((s, code(&v)), (409, "call_not_transferable"), "{v}");
}

/// An agent's `transfer_extensions` are the people its `transfer` tool may
/// reach: each call offers the sidecar those that are persons of the
/// directory (pk, extension, name), nothing else; checked, replaced and
/// removed like the agent's other lists.
#[test]
fn an_agents_transfer_extensions_are_offered_as_the_people_it_may_reach() {
    let w = World::new();
    let (tid, key) = w.tenant(false);
    let alice = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1001", "first_name": "Alice", "caller_id": "Alice Smith"})),
    );
    let pk = alice["pk"].as_u64().unwrap();
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "desk", "transfer_extensions": ["1001", "1009", "1001"]})),
    );
    assert_eq!(
        agent["transfer_extensions"],
        json!(["1001", "1009"]),
        "{agent}"
    );
    let aid = agent["id"].as_str().unwrap().to_string();
    for bad in [json!(["1"]), json!(["10a1"]), json!("1001"), json!([1001])] {
        let r = w.send(
            "PATCH",
            &format!("/admin/tenants/{tid}/agents/{aid}"),
            Some(super::ADMIN),
            Some(json!({"transfer_extensions": bad})),
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert_eq!(r.body_json()["error"]["field"], "transfer_extensions");
    }
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550131", "agent_id": aid})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let sc = TestSidecar::create(&w, "sc-people");
    sc.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 5, "version": "t"}),
    );
    let lease = poll(&w, &sc, &[]);
    let offer: voxline_shared::sidecar_link::Offer =
        serde_json::from_value(lease["offers"][0].clone()).unwrap();
    assert_eq!(
        offer.transfer_people,
        [voxline_shared::sidecar_link::TransferPerson {
            user_pk: pk,
            extension: "1001".into(),
            display_name: Some("Alice Smith".into()),
        }]
    );
    // Removed: the next call offers nobody.
    let a = w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"transfer_extensions": null})),
    );
    assert_eq!(a["transfer_extensions"], json!([]), "{a}");
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550132", "agent_id": aid})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let lease = poll(&w, &sc, &[]);
    assert!(
        lease["offers"][0].get("transfer_people").is_none(),
        "{}",
        lease["offers"][0]
    );
}

/// A person of `tid` at `ext` whose phone registered with `sc`: their pk.
fn person_with_phone(w: &World, tid: &str, sc: &TestSidecar, ext: &str) -> u64 {
    use super::phone_registrations::{decide, register_body, sip_password};
    let u = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": ext, "first_name": "Member"})),
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

/// The queue plan a transfer command carries.
fn queue_plan(cmds: &[Command]) -> voxline_shared::sidecar_link::QueuePlan {
    match cmds {
        [Command::Transfer {
            target: TransferTarget::Queue { plan },
            mode: TransferMode::Blind,
            ..
        }] => (**plan).clone(),
        other => panic!("not one transfer to a queue: {other:?}"),
    }
}

/// `{"queue": pk}`: the edge plans the queue for the sidecar holding the
/// call (its members with a phone registered there, in the queue's
/// order; the caller's position), its `agent` overflow back to the call's
/// own agent; the checks (unknown queue, warm, with another target); the
/// call waits in the queue (the `call.queue` webhook names it), and a
/// failed transfer takes it out again (the next plan's position is 1).
#[test]
fn a_transfer_to_a_queue_plans_it_for_the_holding_sidecar() {
    use voxline_shared::sidecar_link::QueueOverflow;
    let w = World::new();
    let (tid, key, sc, id) = held_call(&w);
    let ann = person_with_phone(&w, &tid, &sc, "1003");
    // Bob has no phone here.
    let bob = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1004", "first_name": "Bob"})),
    )["pk"]
        .as_u64()
        .unwrap();
    let other = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(
            json!({"name": "backup", "voice": "alloy", "default_engine": "echo",
                    "system_prompt": "Take a message."}),
        ),
    );
    let q = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/queues"),
        Some(
            json!({"name": "Sales Queue", "extension": "8001", "strategy": "linear",
                    "timeout": 15, "retry": 4, "members": [bob, ann], "max_wait_seconds": 90,
                    "overflow": {"kind": "agent", "agent_id": other["id"]}}),
        ),
    )["pk"]
        .as_u64()
        .expect("a queue");
    // Not answered yet: as for any transfer.
    let (s, v) = transfer(&w, &key, &id, json!({"queue": q}));
    assert_eq!((s, code(&v)), (409, "call_not_answered"), "{v}");
    events(&w, &sc, &id, 1, &[json!({"type": "answered"})]);
    let (s, v) = transfer(&w, &key, &id, json!({"queue": q + 100}));
    assert_eq!((s, code(&v)), (422, "unknown_queue"), "{v}");
    assert_eq!(v["error"]["field"], "queue");
    let (s, v) = transfer(&w, &key, &id, json!({"queue": q, "mode": "warm"}));
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (422, "invalid_value", Some("mode")),
        "{v}"
    );
    let (s, v) = transfer(&w, &key, &id, json!({"queue": q, "extension": "1003"}));
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (422, "invalid_value", Some("queue")),
        "{v}"
    );
    let (s, v) = transfer(&w, &key, &id, json!({"queue": "8001"}));
    assert_eq!(s, 422, "{v}");

    let (s, v) = transfer(&w, &key, &id, json!({"queue": q}));
    assert_eq!(s, 202, "{v}");
    let t = v["transfer_request"].clone();
    assert_eq!(
        (
            t["queue"].as_u64(),
            t["destination"].as_str(),
            t["extension"].as_str()
        ),
        (Some(q), None, None),
        "{t}"
    );
    let xfr = t["id"].as_str().unwrap().to_string();
    let plan = queue_plan(&transfer_commands(&poll(&w, &sc, &[&id])));
    assert_eq!(
        (
            plan.queue_pk,
            plan.name.as_str(),
            plan.extension.as_str(),
            plan.ring_all,
            plan.members.iter().map(|m| m.user_pk).collect::<Vec<_>>(),
            plan.member_timeout_seconds,
            plan.retry_seconds,
            plan.max_wait_seconds,
            plan.position,
            plan.overflow,
        ),
        (
            q,
            "Sales Queue",
            "8001",
            false,
            vec![ann],
            15,
            4,
            90,
            1,
            QueueOverflow::Agent
        ),
    );
    // The sidecar could not: the call waits in no queue.
    events(
        &w,
        &sc,
        &id,
        2,
        &[
            json!({"type": "transfer_failed", "destination": "8001", "error": "transfer_failed", "transfer_id": xfr}),
        ],
    );
    let (s, v) = transfer(&w, &key, &id, json!({"queue": q}));
    assert_eq!(s, 202, "{v}");
    let xfr = v["transfer_request"]["id"].as_str().unwrap().to_string();
    let plan = queue_plan(&transfer_commands(&poll(&w, &sc, &[&id])));
    assert_eq!(
        plan.position, 1,
        "the failed transfer left no caller waiting"
    );
    w.outbox.take();
    events(
        &w,
        &sc,
        &id,
        3,
        &[
            json!({"type": "transferred", "destination": "8001", "method": "queue", "mode": "blind", "at_offset_ms": 5000, "transfer_id": xfr}),
            json!({"type": "queue", "step": "entered", "queue_pk": q, "position": 1, "wait_ms": 0}),
        ],
    );
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (
            call["transfer_request"]["status"].as_str(),
            call["transfer_request"]["method"].as_str()
        ),
        (Some("completed"), Some("queue")),
        "{call}"
    );
    let hooks: Vec<Value> = w
        .outbox
        .take()
        .iter()
        .filter(|j| j.event_type == "call.queue")
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(
        hooks[0]["data"]["queue"]["name"], "Sales Queue",
        "{}",
        hooks[0]
    );
}
