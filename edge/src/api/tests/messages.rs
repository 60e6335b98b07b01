//! Text messages end to end over the in-memory ports: `POST /v1/messages`,
//! the sidecar lease that hands them out (at most once), the results and
//! inbound MESSAGEs the sidecar posts, the records and the native webhooks.

use super::{header, with_header, TestSidecar, World};
use crate::http::ApiResponse;
use crate::numbers::NumberStatus;
use serde_json::{json, Value};
use voxline_shared::sidecar_link::paths;

const FROM: &str = "+14155550100";
const TO: &str = "+14155550199";

/// Adds (or changes) a number of `tid` through the numbers admin API.
fn number(w: &World, tid: &str, e164: &str, sms_enabled: bool, status: NumberStatus) {
    w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/{e164}"),
        Some(json!({"sms_enabled": sms_enabled, "status": status.as_str()})),
    );
}

/// A tenant with an API key, a texting number `FROM`, a native webhook
/// endpoint for every event, and a registered sidecar.
fn texting_tenant(w: &World, sidecar: &str) -> (String, String, TestSidecar) {
    let (tid, key) = w.tenant(false);
    number(w, &tid, FROM, true, NumberStatus::Active);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/m"})),
    );
    let sc = TestSidecar::create(w, sidecar);
    sc.send(
        w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 1, "version": "t"}),
    );
    w.outbox.take();
    (tid, key, sc)
}

fn send_text(w: &World, key: &str, body: Value) -> ApiResponse {
    w.send("POST", "/v1/messages", Some(key), Some(body))
}

fn lease(w: &World, sc: &TestSidecar) -> Vec<Value> {
    let answer = sc.send(
        w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 0, "held_calls": [], "wait_ms": 0}),
    );
    answer
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn get(w: &World, key: &str, id: &str) -> Value {
    let r = w.send("GET", &format!("/v1/messages/{id}"), Some(key), None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body_json()
}

/// The native webhook bodies queued since the last call, of `event_type`.
fn webhooks(w: &World, event_type: &str) -> Vec<Value> {
    w.outbox
        .take()
        .into_iter()
        .filter(|j| j.event_type == event_type)
        .map(|j| {
            assert_eq!(j.call_id, None, "a message event is about no call");
            serde_json::from_str(&j.payload).unwrap()
        })
        .collect()
}

fn signed_status(w: &World, sc: &TestSidecar, path: &str, mut body: Value) -> ApiResponse {
    body["protocol_version"] = json!(1);
    body["sidecar_id"] = json!(sc.id);
    w.send_req(&sc.signed(w, path, body.to_string().into_bytes()))
}

#[test]
fn a_text_goes_out_in_one_lease_once_and_its_result_and_delivery_report_follow() {
    let w = World::new();
    let (_tid, key, sc) = texting_tenant(&w, "sc-text");
    let r = send_text(
        &w,
        &key,
        json!({"from": FROM, "to": TO, "body": "Your table is ready ✓", "metadata": {"order": 7}}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let m = r.body_json();
    let id = m["id"].as_str().unwrap().to_string();
    assert!(crate::ids::is_id(&id, "msg"), "{id}");
    assert_eq!(
        header(&r, "location"),
        Some(format!("/v1/messages/{id}").as_str())
    );
    assert_eq!(
        (
            m["object"].as_str(),
            m["direction"].as_str(),
            m["status"].as_str()
        ),
        (Some("message"), Some("outbound"), Some("queued"))
    );
    assert_eq!(m["metadata"], json!({"order": 7}));

    // The next poll (no call slot needed) takes it; it is `sending` from then on.
    let offered = lease(&w, &sc);
    assert_eq!(offered.len(), 1, "{offered:?}");
    let offer: voxline_shared::sidecar_link::MessageOffer =
        serde_json::from_value(offered[0].clone()).unwrap();
    assert_eq!(
        (
            offer.message_id.as_str(),
            offer.from.as_str(),
            offer.to.as_str()
        ),
        (id.as_str(), FROM, TO)
    );
    assert_eq!(offer.body, "Your table is ready ✓");
    assert!(offer.deadline_ms > w.now.get(), "a deadline ahead");
    assert_eq!(get(&w, &key, &id)["status"], "sending");
    // At most once: neither this sidecar's next poll nor another's gets it again.
    assert!(lease(&w, &sc).is_empty());
    let other = TestSidecar::create(&w, "sc-other");
    // Nonces are spent per region: its own range.
    other.nonce.set(1 << 32);
    other.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 1, "version": "t"}),
    );
    assert!(lease(&w, &other).is_empty());

    // Another sidecar's claim about it changes nothing.
    let result = json!({"message_id": id, "outcome": "sent", "sip_code": 202, "imdn_message_id": "imdn-42", "at_ms": w.now.get()});
    let ack = other.send(&w, paths::MESSAGE_RESULTS, result.clone());
    assert_eq!(ack["message_id"], id.as_str());
    assert_eq!(get(&w, &key, &id)["status"], "sending");
    w.outbox.take();
    // The holder's result: `sent`, one `message.sent`.
    let ack = sc.send(&w, paths::MESSAGE_RESULTS, result.clone());
    assert_eq!(ack, json!({"protocol_version": 1, "message_id": id}));
    let sent = webhooks(&w, "message.sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "message.sent");
    assert_eq!(sent[0]["data"]["id"], id.as_str());
    assert_eq!(sent[0]["data"]["status"], "sent");
    assert_eq!(sent[0]["data"]["metadata"], json!({"order": 7}));
    let shown = get(&w, &key, &id);
    assert_eq!(
        (shown["status"].as_str(), shown["sip_code"].as_u64()),
        (Some("sent"), Some(202))
    );
    assert!(shown["sent_at"].is_string() && shown.get("imdn_message_id").is_none());
    // The same result again (its answer was lost): acknowledged, applied once.
    let again = sc.send(&w, paths::MESSAGE_RESULTS, result);
    assert_eq!(again["message_id"], id.as_str());
    assert!(webhooks(&w, "message.sent").is_empty());

    // The carrier's delivery report, sent to our number, names the IMDN id.
    let report = |imdn: &str, status: &str| {
        json!({"region": "local", "from": TO, "to": FROM, "sip_call_id": format!("dr-{imdn}-{status}"),
               "received_ms": w.now.get(), "content": {"type": "delivery_report", "imdn_message_id": imdn, "status": status}})
    };
    let unknown = signed_status(
        &w,
        &sc,
        paths::INBOUND_MESSAGES,
        report("imdn-nope", "delivered"),
    );
    assert_eq!(
        (unknown.status, World::code(&unknown)),
        (404, "message_not_found".into())
    );
    let receipt = sc.send(&w, paths::INBOUND_MESSAGES, report("imdn-42", "delivered"));
    assert_eq!(receipt["message_id"], id.as_str());
    let delivered = webhooks(&w, "message.delivered");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["data"]["status"], "delivered");
    assert!(get(&w, &key, &id)["delivered_at"].is_string());
    // A later `failed` report about a delivered message changes nothing.
    sc.send(&w, paths::INBOUND_MESSAGES, report("imdn-42", "failed"));
    assert_eq!(get(&w, &key, &id)["status"], "delivered");
}

#[test]
fn without_a_result_by_its_deadline_a_text_fails_no_result_and_a_late_result_is_dropped() {
    let w = World::new();
    let (_tid, key, sc) = texting_tenant(&w, "sc-late");
    let id = send_text(&w, &key, json!({"from": FROM, "to": TO, "body": "hi"})).body_json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(lease(&w, &sc).len(), 1);
    w.outbox.take();
    // Past the deadline, the queue's next turn fails it (here: the sidecar,
    // presumed dead meanwhile, registering again).
    w.now
        .set(w.now.get() + crate::messages::RESULT_DEADLINE_MS + 1);
    sc.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 1, "version": "t"}),
    );
    assert!(lease(&w, &sc).is_empty(), "never handed out again");
    let shown = get(&w, &key, &id);
    assert_eq!(
        (shown["status"].as_str(), shown["failure_reason"].as_str()),
        (Some("failed"), Some("no_result"))
    );
    let failed = webhooks(&w, "message.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["failure_reason"], "no_result");
    // The result that comes after: acknowledged (so the sidecar stops), dropped.
    let late = json!({"message_id": id, "outcome": "sent", "sip_code": 200, "at_ms": w.now.get()});
    assert_eq!(
        sc.send(&w, paths::MESSAGE_RESULTS, late)["message_id"],
        id.as_str()
    );
    assert_eq!(get(&w, &key, &id)["status"], "failed");
    assert!(webhooks(&w, "message.sent").is_empty());
    // A rejected one keeps the trunk's code and the sidecar's reason.
    let id2 = send_text(&w, &key, json!({"from": FROM, "to": TO, "body": "again"})).body_json()
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    lease(&w, &sc);
    let rejected = json!({"message_id": id2, "outcome": "failed", "sip_code": 403, "reason": "rejected", "at_ms": w.now.get()});
    sc.send(&w, paths::MESSAGE_RESULTS, rejected);
    let shown = get(&w, &key, &id2);
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["failure_reason"].as_str(),
            shown["sip_code"].as_u64()
        ),
        (Some("failed"), Some("rejected"), Some(403))
    );
}

#[test]
fn inbound_texts_reach_the_numbers_tenant_once_and_other_numbers_are_404() {
    let w = World::new();
    let (tid, key, sc) = texting_tenant(&w, "sc-in");
    let (_other_tid, other_key) = w.tenant(false);
    number(&w, &tid, "+14155550111", false, NumberStatus::Active);
    number(&w, &tid, "+14155550112", true, NumberStatus::Inactive);
    let text = |to: &str, call_id: &str| {
        json!({"region": "local", "from": "+447700900123", "to": to, "sip_call_id": call_id,
               "received_ms": w.now.get(), "content": {"type": "text", "body": "Running late, sorry"}})
    };
    let first = sc.send(&w, paths::INBOUND_MESSAGES, text(FROM, "call-1@trunk"));
    let id = first["message_id"].as_str().unwrap().to_string();
    let received = webhooks(&w, "message.received");
    assert_eq!(received.len(), 1);
    assert_eq!(
        (
            received[0]["data"]["direction"].as_str(),
            received[0]["data"]["from"].as_str()
        ),
        (Some("inbound"), Some("+447700900123"))
    );
    // The trunk's retransmission (forwarded twice): the same message, no new event.
    let again = sc.send(&w, paths::INBOUND_MESSAGES, text(FROM, "call-1@trunk"));
    assert_eq!(again["message_id"], id.as_str());
    assert!(webhooks(&w, "message.received").is_empty());
    let shown = get(&w, &key, &id);
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["to"].as_str(),
            shown["body"].as_str()
        ),
        (Some("received"), Some(FROM), Some("Running late, sorry"))
    );
    assert!(shown["received_at"].is_string());
    // Another tenant cannot read it.
    let r = w.send("GET", &format!("/v1/messages/{id}"), Some(&other_key), None);
    assert_eq!(
        (r.status, World::code(&r)),
        (404, "message_not_found".into())
    );
    // Unknown, texts off, out of service: 404 (the sidecar answers the trunk 404).
    for to in ["+14155550999", "+14155550111", "+14155550112"] {
        let r = signed_status(&w, &sc, paths::INBOUND_MESSAGES, text(to, "call-2"));
        assert_eq!(
            (r.status, World::code(&r)),
            (404, "number_not_found".into()),
            "{to}"
        );
    }
    // Malformed: 422 (never retried), nothing stored.
    let mut bad = text(FROM, "call-3");
    bad["to"] = json!("0800");
    assert_eq!(
        signed_status(&w, &sc, paths::INBOUND_MESSAGES, bad).status,
        422
    );
    let mut long = text(FROM, "call-4");
    long["content"]["body"] =
        json!("x".repeat(voxline_shared::sidecar_link::MAX_MESSAGE_CHARS + 1));
    assert_eq!(
        signed_status(&w, &sc, paths::INBOUND_MESSAGES, long).status,
        422
    );
    // Listed with the sent ones, newest first, filtered by direction.
    send_text(&w, &key, json!({"from": FROM, "to": TO, "body": "out"}));
    let all = w.send("GET", "/v1/messages", Some(&key), None).body_json();
    let dirs: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["outbound", "inbound"]);
    let inbound = w
        .send("GET", "/v1/messages?direction=inbound", Some(&key), None)
        .body_json();
    assert_eq!(inbound["data"].as_array().map(Vec::len), Some(1));
}

#[test]
fn sending_checks_the_number_the_recipient_and_the_body() {
    let w = World::new();
    let (tid, key, _sc) = texting_tenant(&w, "sc-val");
    let (other_tid, _) = w.tenant(false);
    number(&w, &tid, "+14155550111", false, NumberStatus::Active);
    number(&w, &tid, "+14155550112", true, NumberStatus::Porting);
    number(&w, &other_tid, "+14155550113", true, NumberStatus::Active);
    let refused = |body: Value| {
        let r = send_text(&w, &key, body);
        let e = r.body_json()["error"].clone();
        (
            r.status,
            e["code"].as_str().unwrap_or("").to_string(),
            e["field"].as_str().unwrap_or("").to_string(),
        )
    };
    let e = |code: &str, field: &str| (422, code.to_string(), field.to_string());
    let text = |from: &str, to: &str, body: &str| json!({"from": from, "to": to, "body": body});
    // Not the tenant's (unknown, or another tenant's: the same answer).
    for from in ["+14155550999", "+14155550113"] {
        assert_eq!(refused(text(from, TO, "x")), e("unknown_number", "from"));
    }
    for from in ["+14155550111", "+14155550112"] {
        assert_eq!(
            refused(text(from, TO, "x")),
            e("number_not_sms_capable", "from")
        );
    }
    assert_eq!(
        refused(text(FROM, "555-0199", "x")),
        e("invalid_phone_number", "to")
    );
    assert_eq!(
        refused(text("4155550100", TO, "x")),
        e("invalid_phone_number", "from")
    );
    assert_eq!(refused(text(FROM, TO, "  ")), e("invalid_value", "body"));
    let max = voxline_shared::sidecar_link::MAX_MESSAGE_CHARS;
    assert_eq!(
        refused(text(FROM, TO, &"é".repeat(max + 1))),
        e("value_too_long", "body")
    );
    assert_eq!(
        send_text(&w, &key, text(FROM, TO, &"é".repeat(max))).status,
        202
    );
    assert_eq!(
        refused(json!({"from": FROM, "to": TO})),
        e("missing_field", "body")
    );
    let r = send_text(
        &w,
        &key,
        json!({"from": FROM, "to": TO, "body": "x", "subject": "y"}),
    );
    assert_eq!((r.status, World::code(&r)), (400, "unknown_field".into()));
    // Nothing refused was stored or queued.
    let listed = w.send("GET", "/v1/messages", Some(&key), None).body_json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));

    // An Idempotency-Key sends once and replays the answer.
    let body = text(FROM, TO, "once");
    let h = [("idempotency-key", "sms-1")];
    let first = with_header(&w, "POST", "/v1/messages", &key, body.clone(), &h);
    let replay = with_header(&w, "POST", "/v1/messages", &key, body, &h);
    assert_eq!((first.status, replay.status), (202, 202));
    assert_eq!(first.body, replay.body);
    assert_eq!(header(&replay, "idempotent-replayed"), Some("true"));
    let other = with_header(
        &w,
        "POST",
        "/v1/messages",
        &key,
        text(FROM, TO, "twice"),
        &h,
    );
    assert_eq!(
        (other.status, World::code(&other)),
        (422, "idempotency_key_reused".into())
    );
    let listed = w.send("GET", "/v1/messages", Some(&key), None).body_json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2));
}

#[test]
fn the_list_pages_newest_first_with_its_filters_bound_to_the_cursor() {
    let w = World::new();
    let (_tid, key, _sc) = texting_tenant(&w, "sc-list");
    let ids: Vec<String> = (0..3)
        .map(|i| {
            send_text(
                &w,
                &key,
                json!({"from": FROM, "to": TO, "body": format!("n{i}")}),
            )
            .body_json()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let page = |q: &str| w.send("GET", &format!("/v1/messages?{q}"), Some(&key), None);
    let p1 = page("status=queued&direction=outbound&limit=2").body_json();
    let got: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    assert!(p1["data"][0].get("metadata").is_none(), "summaries");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = page(&format!(
        "status=queued&direction=outbound&limit=2&cursor={cursor}"
    ))
    .body_json();
    assert_eq!(p2["data"][0]["id"], ids[0].as_str());
    assert_eq!(p2["has_more"], false);
    let r = page(&format!("status=queued&cursor={cursor}"));
    assert_eq!((r.status, World::code(&r)), (400, "invalid_cursor".into()));
    for bad in [
        "direction=sideways",
        "status=queued,nope",
        "limit=0",
        "order=asc",
    ] {
        let r = page(bad);
        assert_eq!(
            (r.status, World::code(&r)),
            (400, "invalid_parameter".into()),
            "{bad}"
        );
    }
    assert_eq!(page("status=sent").body_json()["data"], json!([]));
}

#[test]
fn a_dialect_hears_a_refused_number_as_a_bad_request() {
    use crate::dialects::Refusal;
    use crate::error::{ApiError, ErrorCode};
    for code in [ErrorCode::UnknownNumber, ErrorCode::NumberNotSmsCapable] {
        let e = ApiError::field(code, "from", "no");
        assert_eq!(
            Refusal::from_native(&e),
            Refusal::InvalidRequest("no".into())
        );
    }
}
