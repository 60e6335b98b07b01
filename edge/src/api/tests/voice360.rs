//! The Voice360 v3 API served (issue 15): the account, both key kinds and
//! the public view, the envelope and error codes, the data behind each
//! endpoint, and a call from an AI agent's extension on the native pipeline.

use super::World;
use crate::http::{ApiRequest, ApiResponse};
use crate::model::CallRecord;
use serde_json::{json, Value};

const ACCOUNT: &str = "61";

fn get(w: &World, path: &str, key: Option<&str>, ip: &str) -> ApiResponse {
    send(w, "GET", path, key, ip, "")
}

fn send(
    w: &World,
    method: &str,
    path: &str,
    key: Option<&str>,
    ip: &str,
    body: &str,
) -> ApiResponse {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut headers = vec![("cf-connecting-ip".to_string(), ip.to_string())];
    if let Some(k) = key {
        headers.push(("x-api-key".to_string(), k.to_string()));
    }
    w.send_req(&ApiRequest {
        method: method.into(),
        scheme: "https".into(),
        path: format!("/v3/voice/{ACCOUNT}{path}"),
        query: query.into(),
        content_type: (!body.is_empty()).then(|| "application/json".to_string()),
        authorization: None,
        body: body.as_bytes().to_vec(),
        headers,
    })
}

/// A keyed POST (its address does not matter: keyed limits are per key).
fn post(w: &World, path: &str, key: &str, body: &Value) -> ApiResponse {
    send(
        w,
        "POST",
        path,
        Some(key),
        "198.51.100.1",
        &body.to_string(),
    )
}

fn header<'r>(r: &'r ApiResponse, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The bodies of `jobs` for the endpoint `hook` (as the admin API showed it).
fn bodies_to(jobs: &[crate::webhooks::delivery::DeliveryJob], hook: &Value) -> Vec<Value> {
    jobs.iter()
        .filter(|j| j.endpoint_id == hook["id"].as_str().unwrap_or_default())
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect()
}

pub(super) struct Account {
    tid: String,
    aid: String,
    dev: String,
    user_key: String,
}

/// Account 61: an AI agent at 1001, John Smith (a person) at 1002 with a
/// user key, a queue with both, two numbers; a developer key.
pub(super) fn account(w: &World) -> Account {
    let (tid, aid, _) = super::dialects::tenant_with_agent(w);
    let tp = format!("/admin/tenants/{tid}");
    w.admin("PATCH", &tp, Some(json!({"voice360_account": ACCOUNT})));
    let ai = w.admin(
        "POST",
        &format!("{tp}/directory/users"),
        Some(json!({"kind": "ai_agent", "agent_id": aid, "extension": "1001", "first_name": "Ava", "caller_id": "Ava AI"})),
    );
    let john = w.admin(
        "POST",
        &format!("{tp}/directory/users"),
        Some(json!({"extension": "1002", "first_name": "John", "last_name": "Smith",
            "email": "john.smith@company.com", "voicemail_enabled": true, "time_zone": "America/New_York"})),
    );
    w.admin(
        "POST",
        &format!("{tp}/directory/queues"),
        Some(
            json!({"name": "Sales Queue", "extension": "8001", "members": [ai["pk"], john["pk"]]}),
        ),
    );
    w.admin(
        "PUT",
        &format!("{tp}/numbers/+15551234567"),
        Some(
            json!({"name": "Main Business Line", "sms_enabled": true, "mms_enabled": true,
            "route": {"kind": "user", "user_id": john["pk"]}}),
        ),
    );
    w.admin(
        "PUT",
        &format!("{tp}/numbers/+15551112222"),
        Some(json!({"name": "AI Agent Line", "route": {"kind": "agent", "agent_id": aid}})),
    );
    let dev = w.admin(
        "POST",
        &format!("{tp}/voice360-keys"),
        Some(json!({"kind": "developer"})),
    );
    let user_key = w.admin(
        "POST",
        &format!("{tp}/voice360-keys"),
        Some(json!({"kind": "user", "user_pk": john["pk"]})),
    );
    Account {
        tid,
        aid,
        dev: dev["key"].as_str().unwrap().to_string(),
        user_key: user_key["key"].as_str().unwrap().to_string(),
    }
}

fn ok(r: &ApiResponse) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.body_json();
    assert_eq!(
        (v["error"].clone(), v["timestamp"].is_string()),
        (json!(false), true),
        "{v}"
    );
    v
}

fn error_code(r: &ApiResponse) -> (u16, String) {
    let v = r.body_json();
    assert_eq!(
        (v["error"].clone(), v["result"].clone()),
        (json!(true), Value::Null),
        "{v}"
    );
    (r.status, v["error_code"].as_str().unwrap_or("").to_string())
}

#[test]
fn each_endpoint_answers_from_the_accounts_data_in_the_envelope() {
    let w = World::new();
    let a = account(&w);
    let ip = "198.51.100.7";
    // Availability: the AI agent is online (enabled), the person is not
    // (no phone registered); the public view has no channels.
    let public = ok(&get(&w, "/availability", None, ip));
    let users = public["result"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["presence_id"], "1001");
    assert_eq!(users[0]["devices_registered"], true);
    assert_eq!(users[1]["callerID"], "John Smith");
    assert_eq!(users[1]["devices_registered"], false);
    assert!(users[0].get("channels").is_none(), "{public}");
    let full = ok(&get(&w, "/availability", Some(&a.dev), ip));
    assert_eq!(full["result"][0]["channels"], json!([]));
    // Queues: basics in public, the configuration with a developer key,
    // members on one queue.
    let qs = ok(&get(&w, "/queues", None, ip));
    assert_eq!(qs["result"][0]["queue_name"], "Sales Queue");
    assert!(qs["result"][0].get("strategy").is_none());
    let pk = qs["result"][0]["pk"].as_u64().unwrap();
    assert_eq!(qs["result"][0]["name"], pk.to_string());
    let q = ok(&get(&w, &format!("/queues/{pk}"), Some(&a.dev), ip));
    assert_eq!(q["result"]["strategy"], "ringall");
    assert_eq!(q["result"]["assigned_users"][0]["type"], "ai_agent");
    assert_eq!(q["result"]["assigned_users"][1]["presence_id"], "1002");
    let qa = ok(&get(&w, "/availability/queues", None, ip));
    assert_eq!(
        (
            qa["result"][0]["agents_online"].clone(),
            qa["result"][0]["is_ready"].clone()
        ),
        (json!(1), json!(true))
    );
    let one = ok(&get(
        &w,
        &format!("/availability/queues/{pk}"),
        Some(&a.dev),
        ip,
    ));
    assert_eq!(one["result"]["agents_available"], 1);
    assert_eq!(
        error_code(&get(&w, "/queues/999", Some(&a.dev), ip)),
        (404, "NOT_FOUND".into())
    );
    // Numbers, with the document's filters; a user's own numbers.
    let all = ok(&get(&w, "/numbers", Some(&a.dev), ip));
    assert_eq!(all["result"].as_array().unwrap().len(), 2);
    let main = ok(&get(&w, "/numbers?number=%2B15551234567", Some(&a.dev), ip));
    assert_eq!(main["result"][0]["friendly_name"], "Main Business Line");
    let by_agent = ok(&get(
        &w,
        &format!("/numbers?ai_agent_id={}", a.aid),
        Some(&a.dev),
        ip,
    ));
    assert_eq!(by_agent["result"][0]["number"], "+15551112222");
    let mine = ok(&get(&w, "/user/numbers", Some(&a.user_key), ip));
    assert_eq!(mine["result"].as_array().unwrap().len(), 1);
    assert_eq!(mine["message"], "List of phone numbers assigned to user");
    let profile = ok(&get(&w, "/user/profile", Some(&a.user_key), ip));
    assert_eq!(profile["result"]["email"], "john.smith@company.com");
    assert_eq!(profile["result"]["time_zone"], "America/New_York");
    assert!(profile["result"]["asterisk_user_id"].as_u64().is_some());
    // Every answer carries the key's limit.
    let r = get(&w, "/numbers", Some(&a.dev), ip);
    assert_eq!(header(&r, "X-RateLimit-Limit"), Some("1000"));
    let _ = a.tid;
}

#[test]
fn keys_are_enforced_per_endpoint_as_the_badges_say() {
    let w = World::new();
    let a = account(&w);
    let ip = "198.51.100.8";
    assert_eq!(
        error_code(&get(&w, "/numbers", None, ip)),
        (401, "AUTH_REQUIRED".into())
    );
    assert_eq!(
        error_code(&get(&w, "/user/profile", None, ip)),
        (401, "AUTH_REQUIRED".into())
    );
    // The wrong kind: 403 AUTH_INVALID naming what is required.
    let r = get(&w, "/numbers", Some(&a.user_key), ip);
    assert_eq!(error_code(&r), (403, "AUTH_INVALID".into()));
    assert_eq!(r.body_json()["details"]["required"], "developer");
    assert_eq!(
        error_code(&get(&w, "/availability", Some(&a.user_key), ip)),
        (403, "AUTH_INVALID".into())
    );
    assert_eq!(
        error_code(&get(&w, "/user/profile", Some(&a.dev), ip)),
        (403, "AUTH_INVALID".into())
    );
    // Unknown keys, and a developer key's text without its prefix.
    let r = get(&w, "/numbers", Some("v360_dev_0000"), ip);
    assert_eq!(error_code(&r), (403, "AUTH_INVALID_KEY".into()));
    // At most half of the key, and never more than 8 characters, is echoed.
    assert_eq!(r.body_json()["details"]["provided_key"], "v360_dxxx...");
    let stripped = a.dev.trim_start_matches("v360_dev_");
    assert_eq!(
        error_code(&get(&w, "/numbers", Some(stripped), ip)).1,
        "AUTH_INVALID_KEY"
    );
    // A key of this account on another account's path is refused like an unknown one.
    let other = w.admin(
        "POST",
        "/admin/tenants",
        Some(json!({"name": "o", "voice360_account": "62"})),
    );
    assert!(other["id"].is_string());
    let r = w.send_req(&ApiRequest {
        method: "GET".into(),
        scheme: "https".into(),
        path: "/v3/voice/62/numbers".into(),
        query: String::new(),
        content_type: None,
        authorization: None,
        body: vec![],
        headers: vec![("x-api-key".into(), a.dev.clone())],
    });
    assert_eq!(error_code(&r), (403, "AUTH_INVALID_KEY".into()));
    // An unknown account without a key: 404.
    let r = w.send_req(&ApiRequest {
        method: "GET".into(),
        scheme: "https".into(),
        path: "/v3/voice/nope/queues".into(),
        query: String::new(),
        content_type: None,
        authorization: None,
        body: vec![],
        headers: vec![],
    });
    assert_eq!(error_code(&r), (404, "NOT_FOUND".into()));
    // A revoked key stops at once.
    let tp = format!("/admin/tenants/{}/voice360-keys", a.tid);
    let list = w.admin("GET", &tp, None);
    for k in list["data"].as_array().unwrap() {
        if k["kind"] == "developer" {
            w.admin(
                "DELETE",
                &format!("{tp}/{}", k["id"].as_str().unwrap()),
                None,
            );
        }
    }
    assert_eq!(
        error_code(&get(&w, "/numbers", Some(&a.dev), ip)).1,
        "AUTH_INVALID_KEY"
    );
    // Wrong methods: 405 with Allow.
    let r = send(&w, "DELETE", "/queues", None, ip, "");
    assert_eq!(error_code(&r), (405, "METHOD_NOT_ALLOWED".into()));
    assert_eq!(header(&r, "Allow"), Some("GET"));
}

#[test]
fn the_public_view_is_limited_to_100_a_minute_per_address() {
    let w = World::new();
    let _a = account(&w);
    for i in 0..100 {
        let r = get(&w, "/queues", None, "203.0.113.9");
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(
            header(&r, "X-RateLimit-Remaining"),
            Some((99 - i).to_string().as_str())
        );
    }
    let r = get(&w, "/queues", None, "203.0.113.9");
    assert_eq!(error_code(&r), (429, "RATE_LIMITED".into()));
    assert!(header(&r, "Retry-After").is_some());
    assert_eq!(header(&r, "X-RateLimit-Remaining"), Some("0"));
    // Another address is not affected.
    assert_eq!(get(&w, "/queues", None, "203.0.113.10").status, 200);
}

#[test]
fn a_call_from_an_ai_agents_extension_is_the_agents_call() {
    let w = World::new();
    let a = account(&w);
    let body = json!({"from": "1001", "to": "+1 (555) 123-4567", "caller_id": "+15551112222", "recording": true});
    let r = post(&w, "/call/outbound", &a.dev, &body);
    let v = ok(&r);
    assert_eq!(v["message"], "Call initiated successfully");
    assert_eq!(v["result"]["status"], "initiating");
    assert_eq!(v["result"]["to"], "+15551234567");
    let record: CallRecord = super::dialects::call_of(&w, &a.tid, &r, "/result/call_id");
    assert_eq!(record.agent_id, a.aid);
    assert!(record.record);
    assert_eq!(record.caller_number.as_deref(), Some("+15551112222"));
    assert_eq!(record.from_user, Some(1));
    // A person's extension: click-to-call (issue 16), no agent; John's
    // phone rings first (the offer's `connect`), his number is the caller ID.
    let person = json!({"from": "1002", "to": "+15551230001", "recording": true});
    let r = post(&w, "/call/outbound", &a.dev, &person);
    assert_eq!(ok(&r)["result"]["from"], "1002");
    let record: CallRecord = super::dialects::call_of(&w, &a.tid, &r, "/result/call_id");
    assert_eq!(
        (
            record.agent_id.as_str(),
            record.from_user,
            record.caller_number.as_deref(),
            record.record
        ),
        ("", Some(2), Some("+15551234567"), true)
    );
    // With a caller ID of the account's, that one.
    let person = json!({"from": "1002", "to": "+15551230002", "caller_id": "+15551112222"});
    let r = post(&w, "/call/outbound", &a.dev, &person);
    let record: CallRecord = super::dialects::call_of(&w, &a.tid, &r, "/result/call_id");
    assert_eq!(record.caller_number.as_deref(), Some("+15551112222"));
    // The same person and number again while the first is queued: 400 on `to`.
    let person = json!({"from": "1002", "to": "+15551230001"});
    let r = post(&w, "/call/outbound", &a.dev, &person);
    assert_eq!(error_code(&r), (400, "BAD_REQUEST".into()));
    let unknown = json!({"from": "4444", "to": "+15551234567"});
    let r = post(&w, "/call/outbound", &a.dev, &unknown);
    assert_eq!(error_code(&r), (404, "NOT_FOUND".into()));
    let spoofed = json!({"from": "1001", "to": "+15551230000", "caller_id": "+15550000000"});
    let r = post(&w, "/call/outbound", &a.dev, &spoofed);
    assert_eq!(r.body_json()["details"]["field"], "caller_id");
    // The same number again while the first call is queued: 400 on `to`.
    let r = post(&w, "/call/outbound", &a.dev, &body);
    assert_eq!(error_code(&r), (400, "BAD_REQUEST".into()));
}

#[test]
fn voice360_endpoints_get_their_one_event_type_signed_as_the_document_verifies() {
    use super::dialect_webhooks::{answered_call, dial_and_report, endpoint, run, Receiver};
    use crate::webhooks::delivery::Next;
    let w = World::new();
    let a = account(&w);
    let tp = format!("/admin/tenants/{}/webhooks", a.tid);
    let hook = |event: &str| {
        endpoint(
            &w,
            &a.tid,
            json!({"url": format!("https://hooks.example.com/{event}"), "format": "voice360",
                   "voice360_event": event, "retry_schedule": [30, 60, 120]}),
        )
    };
    let dial = hook("USER_DIAL");
    let ended = hook("CALL_ENDED");
    let hangup = hook("USER_HANGUP");
    let transcription = hook("TRANSCRIPTION_FINISHED");
    // The document's rules: one event type, 1-10 retries.
    for bad in [
        json!({"url": "https://h.example.com/x", "format": "voice360"}),
        json!({"url": "https://h.example.com/x", "format": "voice360", "voice360_event": "NOPE"}),
        json!({"url": "https://h.example.com/x", "format": "voice360", "voice360_event": "CALL_ENDED", "retry_schedule": []}),
        json!({"url": "https://h.example.com/x", "voice360_event": "CALL_ENDED"}),
    ] {
        let r = w.send("POST", &tp, Some(super::ADMIN), Some(bad.clone()));
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
    }
    let body = json!({"from": "1001", "to": "+15551234567", "caller_id": "+15551112222"});
    let r = post(&w, "/call/outbound", &a.dev, &body);
    let call_id = ok(&r)["result"]["call_id"].as_str().unwrap().to_string();
    dial_and_report(
        &w,
        &[(
            call_id.as_str(),
            answered_call("Yes, I will be there.", "confirmed"),
        )],
    );
    let jobs = w.outbox.take();
    let body_of = |hook: &Value| -> Value {
        let bodies = bodies_to(&jobs, hook);
        assert_eq!(bodies.len(), 1, "{hook}: {bodies:?}");
        bodies[0].clone()
    };
    let d = body_of(&dial);
    assert_eq!(d["event_name"], "USER_DIAL");
    assert_eq!(d["account_id"], ACCOUNT);
    assert!(d["timestamp"].is_u64());
    assert_eq!(
        d["metadata"],
        json!({"dialed_number": "+15551234567", "from_user_id": "1", "uniqueid": call_id})
    );
    let e = body_of(&ended);
    assert_eq!(e["metadata"]["caller_id_number"], "+15551112222");
    assert_eq!(e["metadata"]["dnis"], "+15551234567");
    assert_eq!(e["metadata"]["call_direction"], "outbound");
    assert_eq!(e["metadata"]["to_user_id"], "1");
    assert_eq!(body_of(&hangup)["metadata"]["from_user_id"], "1");
    let t = body_of(&transcription);
    assert_eq!(t["metadata"]["success"], true);
    let analytics: Value =
        serde_json::from_str(t["metadata"]["transcription"].as_str().unwrap()).unwrap();
    assert_eq!(
        analytics["Transcript"][1]["Content"],
        "Yes, I will be there."
    );
    // Signed with the endpoint's secret: `sha256=` + hex HMAC of the raw body.
    let http = Receiver::default();
    let job = jobs
        .iter()
        .find(|j| j.endpoint_id == ended["id"].as_str().unwrap_or_default())
        .cloned()
        .expect("the CALL_ENDED delivery");
    assert_eq!(run(&w, &http, job, w.now.get()), Next::Done);
    let sent = http.sent.borrow()[0].clone();
    let secret = ended["secret"].as_str().unwrap();
    assert_eq!(
        sent.header("X-Voice360-Signature"),
        Some(format!("sha256={}", super::dialects::hmac_hex(secret, &sent.body)).as_str())
    );
    // A rotation ends the old secret at once (no overlap may be asked for).
    let rotate = format!("{tp}/{}/rotate", ended["id"].as_str().unwrap());
    let r = w.send(
        "POST",
        &rotate,
        Some(super::ADMIN),
        Some(json!({"overlap_seconds": 60})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let rotated = w.admin("POST", &rotate, None);
    assert_eq!(rotated["previous_secret_expires_at"], Value::Null);
}

#[test]
fn texts_are_sent_from_the_accounts_numbers_and_reported_as_sms_events() {
    use super::TestSidecar;
    use voxline_shared::sidecar_link::paths;
    let w = World::new();
    let a = account(&w);
    let tp = format!("/admin/tenants/{}/webhooks", a.tid);
    let hook = |event: &str| {
        super::dialect_webhooks::endpoint(
            &w,
            &a.tid,
            json!({"url": format!("https://hooks.example.com/{event}"), "format": "voice360",
                   "voice360_event": event}),
        )
    };
    let sent_hook = hook("SMS_SENT");
    let received_hook = hook("SMS_RECEIVED");
    let _ = tp;
    let sc = TestSidecar::create(&w, "sc-v360-text");
    sc.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 1, "version": "t"}),
    );
    // A user key sends from its user's number only; 160 characters at most.
    let text =
        json!({"from": "+15551234567", "to": "+15550001234", "message": "Hello from Voice360!"});
    let r = post(&w, "/sms/send", &a.user_key, &text);
    let v = ok(&r);
    assert_eq!(v["message"], "SMS sent successfully");
    assert_eq!(v["result"]["status"], "queued");
    let message_id = v["result"]["message_id"].as_str().unwrap().to_string();
    let not_theirs = json!({"from": "+15551112222", "to": "+15550001234", "message": "x"});
    let r = post(&w, "/sms/send", &a.user_key, &not_theirs);
    assert_eq!(r.body_json()["details"]["field"], "from");
    // A number without SMS (the AI line), with a developer key: 400 on `from`.
    let r = post(&w, "/sms/send", &a.dev, &not_theirs);
    assert_eq!(error_code(&r), (400, "BAD_REQUEST".into()));
    let long = json!({"from": "+15551234567", "to": "+15550001234", "message": "x".repeat(161)});
    let r = post(&w, "/sms/send", &a.dev, &long);
    assert_eq!(r.body_json()["details"]["field"], "message");
    // The sidecar sends it; the trunk's 200 is SMS_SENT.
    let offers = sc.send(
        &w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 0, "held_calls": [], "wait_ms": 0}),
    );
    assert_eq!(offers["messages"][0]["message_id"], message_id.as_str());
    w.outbox.take();
    sc.send(
        &w,
        paths::MESSAGE_RESULTS,
        json!({"message_id": message_id, "outcome": "sent", "sip_code": 200, "imdn_message_id": "imdn-9", "at_ms": w.now.get()}),
    );
    let jobs = w.outbox.take();
    let sent = bodies_to(&jobs, &sent_hook);
    assert_eq!(sent.len(), 1, "{jobs:?}");
    assert_eq!(sent[0]["event_name"], "SMS_SENT");
    assert_eq!(
        sent[0]["metadata"],
        json!({"from_number": "+15551234567", "to_number": ["+15550001234"], "body": "Hello from Voice360!",
               "message_id": message_id, "sms_sent_by_user_id": null})
    );
    assert!(bodies_to(&jobs, &received_hook).is_empty());
    // The carrier's delivery report: SMS_DELIVERED.
    let delivered_hook = hook("SMS_DELIVERED");
    sc.send(
        &w,
        paths::INBOUND_MESSAGES,
        json!({"region": "local", "from": "+15550001234", "to": "+15551234567", "sip_call_id": "dr-1",
               "received_ms": w.now.get(),
               "content": {"type": "delivery_report", "imdn_message_id": "imdn-9", "status": "delivered"}}),
    );
    let jobs = w.outbox.take();
    let delivered = bodies_to(&jobs, &delivered_hook);
    assert_eq!(delivered.len(), 1, "{jobs:?}");
    assert_eq!(
        delivered[0]["metadata"],
        json!({"to_number": ["+15550001234"], "message_id": message_id, "status": "delivered"})
    );
    // A text from the trunk to the account's number: SMS_RECEIVED.
    sc.send(
        &w,
        paths::INBOUND_MESSAGES,
        json!({"region": "local", "from": "+15550001234", "to": "+15551234567", "sip_call_id": "in-1",
               "received_ms": w.now.get(), "content": {"type": "text", "body": "See you at nine"}}),
    );
    let jobs = w.outbox.take();
    let received = bodies_to(&jobs, &received_hook);
    assert_eq!(received.len(), 1, "{jobs:?}");
    assert_eq!(received[0]["metadata"]["from_number"], "+15550001234");
    assert_eq!(received[0]["metadata"]["to_number"], "+15551234567");
    assert_eq!(received[0]["metadata"]["body"], "See you at nine");
}

#[test]
fn a_person_is_online_while_a_phone_is_registered() {
    use super::phone_registrations::{decide, register_body, sip_password};
    use voxline_shared::sip_digest::Algorithm;
    let w = World::new();
    let a = account(&w);
    let ip = "198.51.100.8";
    let john_pk = ok(&get(&w, "/availability", None, ip))["result"][1]["pk"]
        .as_u64()
        .unwrap();
    let sc = super::TestSidecar::create(&w, "sc-presence");
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::REGISTER,
        json!({"region": "local", "capacity": 4, "version": "t"}),
    );
    let phone = sip_password(&w, &a.tid, john_pk);
    let contact = [("sip:1002@127.0.0.1:5062", 120)];
    let body = register_body(&phone, &phone.password, Algorithm::Md5, "p1", 1, &contact);
    decide(&w, &sc, body);
    let users = ok(&get(&w, "/availability", None, ip));
    assert_eq!(users["result"][1]["presence_id"], "1002");
    assert_eq!(users["result"][1]["devices_registered"], true, "{users}");
    // Registered and on no call: available, so the queue counts him.
    let qa = ok(&get(&w, "/availability/queues", Some(&a.dev), ip));
    assert_eq!(qa["result"][0]["agents_online"], 2, "{qa}");
    // Unregistered: offline again.
    let gone = [("sip:1002@127.0.0.1:5062", 0)];
    decide(
        &w,
        &sc,
        register_body(&phone, &phone.password, Algorithm::Md5, "p1", 2, &gone),
    );
    let users = ok(&get(&w, "/availability", None, ip));
    assert_eq!(users["result"][1]["devices_registered"], false);
    // A binding that lapses takes him offline too.
    decide(
        &w,
        &sc,
        register_body(&phone, &phone.password, Algorithm::Md5, "p1", 3, &contact),
    );
    assert_eq!(
        ok(&get(&w, "/availability", None, ip))["result"][1]["devices_registered"],
        true
    );
    w.now.set(w.now.get() + 121_000);
    assert_eq!(
        ok(&get(&w, "/availability", None, ip))["result"][1]["devices_registered"],
        false
    );
}
