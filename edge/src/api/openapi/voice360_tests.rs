//! The Voice360 part of the document against `dialects::voice360`: its
//! routes, its answers and its webhook bodies (edge/src/api/openapi/voice360.rs).

use super::checker::Checker;
use super::spec;
use super::voice360::{error_samples, template, OPERATIONS, SCHEME, TAG};
use crate::dialects::post_call::test_call;
use crate::dialects::voice360::{
    self as v360, Caller, Channel, Direction, EventType, Member, NumberStatus, NumberView,
    Operation, OutboundCall, ProfileView, QueueLoad, QueueView, Routed, SmsSend, Strategy,
    UserPresence, View,
};
use crate::dialects::Refusal;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const NOW: u64 = 1_705_314_600_000; // 2024-01-15T10:30:00Z
const CALL_ID: &str = "call_fe5dc0d9e5c3f78c3f576f";
const MESSAGE_ID: &str = "msg_fe5dc0d9e5c3f78c3f576f";
const METHODS: [&str; 8] = [
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
];

/// The documented Voice360 operations: (METHOD, path template).
fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with(v360::PATH_PREFIX) {
            continue;
        }
        for key in item.as_object().unwrap().keys() {
            if key != "parameters" {
                out.insert((key.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn fill(template: &str, account: &str, queue: &str) -> String {
    template
        .replace("{account_id}", account)
        .replace("{queue_id}", queue)
}

/// Every route `voice360::route` accepts is documented, and nothing else is
/// under `/v3/voice/`: the matcher is probed with every method on paths
/// built from the documented segments, other words and id shapes, so a
/// route the document lacks (or a documented one it lost) fails.
#[test]
fn every_voice360_route_is_documented_and_nothing_else() {
    let spec = spec();
    let documented = documented(&spec);
    assert_eq!(documented.len(), OPERATIONS.len());
    let mut words: BTreeSet<String> = documented
        .iter()
        .flat_map(|(_, p)| p.split('/').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .collect();
    // Other words an API like this might serve, and id shapes.
    for w in [
        "1",
        "0",
        "01",
        "18446744073709551616",
        "x",
        "users",
        "user",
        "contacts",
        "calls",
        "call",
        "sms",
        "messages",
        "webhooks",
        "recordings",
        "voicemail",
        "inbound",
        "outbound",
        "send",
        "profile",
        "numbers",
        "queues",
        "availability",
        "agents",
        "status",
        "settings",
    ] {
        words.insert(w.to_string());
    }
    let words: Vec<String> = words.into_iter().collect();
    let mut tails: Vec<String> = words.clone();
    for a in &words {
        for b in &words {
            tails.push(format!("{a}/{b}"));
            for c in &words {
                tails.push(format!("{a}/{b}/{c}"));
            }
        }
    }
    let mut accepted = BTreeSet::new();
    for tail in &tails {
        let path = format!("{}61/{tail}", v360::PATH_PREFIX);
        for method in METHODS {
            match v360::route(method, &path) {
                Some(Routed::Operation { account_id, op }) => {
                    assert_eq!(account_id, "61");
                    let (m, t) = template(op);
                    assert_eq!(m, method, "{path}");
                    assert_eq!(
                        fill(t, "61", "1").split('/').count(),
                        path.split('/').count()
                    );
                    accepted.insert((m.to_string(), t.to_string()));
                }
                Some(Routed::MethodNotAllowed { allow }) => {
                    assert_ne!(allow, method, "{path}");
                }
                Some(Routed::NotFound) | None => {}
            }
        }
    }
    assert_eq!(accepted, documented);
    // Each documented operation: served with its method (a sample of its
    // queue ids), 405 with `Allow` for the others; its tag, security, ids.
    for op in OPERATIONS {
        let (method, t) = template(op);
        let o = &spec["paths"][t][method.to_ascii_lowercase()];
        for queue in ["1", "42", "999999999999999999"] {
            let path = fill(t, "acct-61_x", queue);
            match v360::route(method, &path) {
                Some(Routed::Operation {
                    account_id,
                    op: got,
                }) => {
                    assert_eq!(account_id, "acct-61_x");
                    assert_eq!(template(got), (method, t));
                }
                other => panic!("{method} {path}: {other:?}"),
            }
            for other in METHODS.iter().filter(|m| **m != method) {
                assert_eq!(
                    v360::route(other, &path),
                    Some(Routed::MethodNotAllowed { allow: method }),
                    "{other} {path}"
                );
            }
        }
        assert_eq!(o["tags"], json!([TAG]), "{t}");
        let public = op.access().admit(Caller::Anonymous).is_ok();
        let expected = if public {
            json!([{SCHEME: []}, {}])
        } else {
            json!([{SCHEME: []}])
        };
        assert_eq!(o["security"], expected, "{t}");
        assert!(spec["components"]["securitySchemes"][SCHEME]["type"] == "apiKey");
        assert_eq!(
            spec["components"]["securitySchemes"][SCHEME]["name"],
            v360::HEADER_KEY
        );
        // Path parameter patterns accept what the matcher accepts, and
        // refuse a shape it refuses.
        let checker = Checker::new(&spec);
        for p in spec["paths"][t]["parameters"].as_array().unwrap() {
            let (good, bad) = match p["name"].as_str().unwrap() {
                "account_id" => ("acct-61_x", "a.b"),
                "queue_id" => ("999999999999999999", "01"),
                other => panic!("{t}: parameter {other}"),
            };
            assert!(checker.check(&p["schema"], &json!(good)).is_ok(), "{t}");
            assert!(checker.check(&p["schema"], &json!(bad)).is_err(), "{t}");
            let probe = fill(t, "61", "1").replace(
                if p["name"] == "account_id" {
                    "/61/"
                } else {
                    "/1"
                },
                &if p["name"] == "account_id" {
                    format!("/{bad}/")
                } else {
                    format!("/{bad}")
                },
            );
            assert_eq!(
                v360::route(method, &probe),
                Some(Routed::NotFound),
                "{probe}"
            );
        }
        if method == "POST" {
            assert!(o["requestBody"]["content"]["application/json"]["schema"].is_object());
        }
    }
}

/// The documented paths are Voice360's alone: no native route, other
/// dialect or CodeB path matches one of them, and `voice360::route` claims
/// no other documented path. (`dialects::voice360`'s own test checks the
/// route tables against the prefix.)
#[test]
fn voice360_paths_do_not_collide_with_native_or_other_dialect_paths() {
    let spec = spec();
    for (method, t) in documented(&spec) {
        let path = fill(&t, "61", "1");
        for m in METHODS {
            assert!(
                matches!(
                    crate::api::router::route(m, &path),
                    crate::api::router::Match::NotFound
                ),
                "{m} {path} is a native route"
            );
            assert_eq!(crate::dialects::codeb::route(m, &path), None, "{path}");
        }
        assert_eq!(crate::dialects::route(&path), None, "{path}");
        assert!(method == "GET" || method == "POST");
    }
    for (path, item) in spec["paths"].as_object().unwrap() {
        if path.starts_with(v360::PATH_PREFIX) {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            assert_eq!(
                v360::route(&method.to_ascii_uppercase(), path),
                None,
                "{method} {path}"
            );
        }
    }
}

fn response_schema(spec: &Value, op: Operation, status: u16) -> &Value {
    let (method, t) = template(op);
    &spec["paths"][t][method.to_ascii_lowercase()]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"]
}

fn queue_views() -> Vec<QueueView<'static>> {
    let q = QueueView {
        pk: 100134,
        queue_name: "Sales",
        extension: "600",
        strategy: Strategy::RingAll,
        musiconhold: "default",
        timeout: 15,
        retry: 5,
        wrapuptime: 0,
        maxlen: 0,
        joinempty: true,
        leavewhenempty: false,
        ringinuse: false,
        members: vec![
            Member::User {
                pk: 3,
                presence_id: "1001",
                caller_id: "Jane Smith",
            },
            Member::AiAgent {
                agent_id: "agt_0123456789abcdef",
                presence_id: "1002",
                name: "Sales Qualifier",
            },
        ],
    };
    let mut others: Vec<QueueView<'static>> = Strategy::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| QueueView {
            pk: 2 + i as u64,
            strategy: *s,
            members: vec![],
            joinempty: false,
            leavewhenempty: true,
            ringinuse: true,
            ..q.clone()
        })
        .collect();
    others.insert(0, q);
    others
}

/// Every `result` builder's answers, in both views where they differ.
fn sample_results(op: Operation) -> Vec<v360::Json> {
    let queues = queue_views();
    match op {
        Operation::UserAvailability => {
            let users = [
                UserPresence {
                    pk: 3,
                    presence_id: "1001",
                    caller_id: "Jane Smith",
                    first_name: "Jane",
                    last_name: "Smith",
                    devices_registered: false,
                    channels: vec![],
                },
                UserPresence {
                    pk: 4,
                    presence_id: "1002",
                    caller_id: "Sales Qualifier",
                    first_name: "Sales",
                    last_name: "",
                    devices_registered: true,
                    channels: vec![Channel {
                        to: "+15551234567",
                        from: "1002",
                        call_seconds: 42,
                        direction: Direction::Outbound,
                    }],
                },
            ];
            vec![
                v360::availability_result(&users, View::Public),
                v360::availability_result(&users, View::Full),
                v360::availability_result(&[], View::Full),
            ]
        }
        Operation::ListQueues => vec![
            v360::queues_result(&queues, View::Public),
            v360::queues_result(&queues, View::Full),
        ],
        Operation::GetQueue { .. } => queues
            .iter()
            .flat_map(|q| {
                [
                    v360::queue_value(q, View::Public, true),
                    v360::queue_value(q, View::Full, true),
                ]
            })
            .collect(),
        Operation::QueuesAvailability | Operation::QueueAvailability { .. } => {
            let loads = [
                QueueLoad {
                    agents_online: 0,
                    agents_on_call: 0,
                    active_calls: 0,
                },
                QueueLoad {
                    agents_online: 2,
                    agents_on_call: 3,
                    active_calls: 1,
                },
            ];
            let values: Vec<v360::Json> = loads
                .iter()
                .map(|l| v360::queue_availability_value(&queues[0], *l))
                .collect();
            if op == Operation::QueuesAvailability {
                vec![v360::Json::Array(values)]
            } else {
                values
            }
        }
        Operation::ListNumbers | Operation::UserNumbers => {
            let numbers: Vec<NumberView> = NumberStatus::ALL
                .iter()
                .map(|s| NumberView {
                    pk: 1,
                    number: "+13239776447",
                    friendly_name: "Main line",
                    sms_enabled: true,
                    mms_enabled: false,
                    status: *s,
                    owner_id: Some(3),
                    sms_assigned_user_id: None,
                    ai_agent_id: Some("agt_0123456789abcdef"),
                })
                .collect();
            vec![v360::numbers_result(&numbers), v360::numbers_result(&[])]
        }
        Operation::UserProfile => {
            let p = ProfileView {
                pk: 3,
                sip_endpoint_id: 17,
                presence_id: "1001",
                caller_id: "Jane Smith",
                first_name: "Jane",
                last_name: "Smith",
                email: "jane@example.com",
                voicemail_enabled: true,
                forward_enabled: false,
                forward_number: None,
                time_zone: "America/New_York",
            };
            let forwarded = ProfileView {
                forward_enabled: true,
                forward_number: Some("+15551234567"),
                email: "",
                ..p.clone()
            };
            vec![v360::profile_result(&p), v360::profile_result(&forwarded)]
        }
        Operation::OutboundCall => {
            let call = v360::read_outbound_call(
                br#"{"from": " 1002 ", "to": "+1 (555) 123-4567", "caller_id": "+1 323 977 6447", "recording": true}"#,
            )
            .unwrap();
            let plain = OutboundCall {
                caller_id: None,
                recording: false,
                ..call.clone()
            };
            vec![
                v360::outbound_result(CALL_ID, &call, NOW),
                v360::outbound_result(CALL_ID, &plain, NOW),
            ]
        }
        Operation::SendSms => {
            let long = "é".repeat(v360::MAX_SMS_CHARS);
            let body = json!({"from": "+13239776447", "to": "+1 (555) 123-4567", "message": long});
            let sms = v360::read_sms_send(body.to_string().as_bytes()).unwrap();
            let short = SmsSend {
                message: "Hi\nthere".into(),
                ..sms.clone()
            };
            crate::messages::MessageStatus::ALL
                .iter()
                .flat_map(|s| {
                    [
                        v360::sms_result(MESSAGE_ID, s.as_str(), &sms, NOW),
                        v360::sms_result(MESSAGE_ID, s.as_str(), &short, NOW),
                    ]
                })
                .collect()
        }
    }
}

/// Every answer the pure module writes matches its documented schema: each
/// operation's `ok_body` with each result builder, and each `V360Error`
/// (and each native refusal's translation) on every path that can answer it,
/// under a documented status with its `error_code` and headers; no status
/// is documented that the path cannot answer.
#[test]
fn voice360_answers_match_their_documented_schemas() {
    let spec = spec();
    let checker = Checker::new(&spec);
    let check = |op: Operation, status: u16, body: &str| {
        let schema = response_schema(&spec, op, status);
        assert!(schema.is_object(), "{op:?}: {status} undocumented");
        let value: Value = serde_json::from_str(body).unwrap();
        if let Err(e) = checker.check(schema, &value) {
            panic!("{op:?} {status} {body}: {e}");
        }
    };
    let refusals = [
        Refusal::MissingCredentials,
        Refusal::InvalidCredentials,
        Refusal::AccessDisabled,
        Refusal::AgentLookupFailed,
        Refusal::AgentDisabled,
        Refusal::AgentNotConfigured,
        Refusal::InvalidSignature,
        Refusal::InvalidRequest("phone is not a valid number".into()),
        Refusal::CallInProgress,
        Refusal::RateLimited {
            retry_after_seconds: 1,
        },
        Refusal::Internal,
    ];
    // Request readers' refusals: what the bodies and the query answer.
    let read_errors = [
        v360::read_outbound_call(b"[]").unwrap_err(),
        v360::read_outbound_call(br#"{"from": "1", "to": "+15551234567"}"#).unwrap_err(),
        v360::read_sms_send(br#"{"from": "+13239776447", "to": "+15551234567"}"#).unwrap_err(),
        v360::read_numbers_query("status=gone").unwrap_err(),
        v360::read_numbers_query("owner_id=1&owner_id=2").unwrap_err(),
    ];
    for op in OPERATIONS {
        let (method, t) = template(op);
        for result in sample_results(op) {
            check(op, 200, &v360::ok_body(&result, op.message(), NOW));
        }
        // A wrong result shape or message fails.
        let schema = response_schema(&spec, op, 200);
        let wrong = v360::ok_body(&json!({"unexpected": true}), op.message(), NOW);
        assert!(checker
            .check(schema, &serde_json::from_str(&wrong).unwrap())
            .is_err());
        let mut statuses = BTreeSet::from([200u16]);
        let mut errors = error_samples();
        errors.extend(refusals.iter().map(v360::V360Error::from));
        if op == Operation::OutboundCall {
            errors.extend(read_errors.iter().cloned());
        }
        // What the serving code answers (api/voice360.rs), said independently
        // of the document's own table: 401 where a key is needed, 400 where a
        // body or query is read, the rest (key, account, method, limits,
        // storage) on every path.
        let o = &spec["paths"][t][method.to_ascii_lowercase()];
        let reads_input = o["requestBody"].is_object()
            || o["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
        let answered = |e: &v360::V360Error| match e.status() {
            401 => op.access().admit(Caller::Anonymous).is_err(),
            400 => reads_input,
            _ => true,
        };
        for e in errors.iter().filter(|e| answered(e)) {
            statuses.insert(e.status());
            check(op, e.status(), &e.body(NOW));
            let documented = &spec["paths"][t][method.to_ascii_lowercase()]["responses"]
                [e.status().to_string()]["headers"];
            for (name, _) in e.headers() {
                assert!(
                    documented[name].is_object(),
                    "{op:?} {}: {name}",
                    e.status()
                );
            }
            if let Some(h) = documented.as_object() {
                let sent: Vec<&str> = e.headers().iter().map(|(n, _)| *n).collect();
                for (name, d) in h {
                    if d["required"] == true {
                        assert!(
                            sent.contains(&name.as_str()),
                            "{op:?} {}: {name}",
                            e.status()
                        );
                    }
                }
            }
        }
        let listed: BTreeSet<u16> = spec["paths"][t][method.to_ascii_lowercase()]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(listed, statuses, "{op:?}");
        // Each status's `error_code` enum is exactly the codes answered under it.
        for status in statuses.iter().filter(|s| **s != 200) {
            let codes: BTreeSet<&str> = errors
                .iter()
                .filter(|e| answered(e) && e.status() == *status)
                .map(|e| e.parts().1)
                .collect();
            let documented: BTreeSet<&str> = response_schema(&spec, op, *status)["properties"]
                ["error_code"]["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(documented, codes, "{op:?} {status}");
        }
    }
    // The numbers query and both readers: the document's limits hold.
    for e in &read_errors[3..] {
        check(Operation::ListNumbers, 400, &e.body(NOW));
    }
    for e in &read_errors[..2] {
        check(Operation::OutboundCall, 400, &e.body(NOW));
    }
    check(Operation::SendSms, 400, &read_errors[2].body(NOW));
}

/// The request body schemas say what the readers accept: a body the reader
/// accepts passes its schema, and the documented bounds are the readers'.
#[test]
fn voice360_request_bodies_agree_with_the_readers() {
    let spec = spec();
    let checker = Checker::new(&spec);
    let body_schema = |op: Operation| {
        let (method, t) = template(op);
        spec["paths"][t][method.to_ascii_lowercase()]["requestBody"]["content"]["application/json"]
            ["schema"]
            .clone()
    };
    let outbound = body_schema(Operation::OutboundCall);
    let sms = body_schema(Operation::SendSms);
    for (body, ok) in [
        (json!({"from": "1001", "to": "+15551234567"}), true),
        (
            json!({"from": " 1001 ", "to": "+1 (555) 123-4567", "caller_id": null, "recording": null, "options": {}}),
            true,
        ),
        (
            json!({"from": "1234567890123456", "to": "0044 20 7946 0958", "recording": true}),
            true,
        ),
        (json!({"from": "1", "to": "+15551234567"}), false),
        (
            json!({"from": "12345678901234567", "to": "+15551234567"}),
            false,
        ),
        (json!({"to": "+15551234567"}), false),
        (
            json!({"from": "1001", "to": "+15551234567", "recording": "yes"}),
            false,
        ),
    ] {
        assert_eq!(
            v360::read_outbound_call(body.to_string().as_bytes()).is_ok(),
            ok,
            "{body}"
        );
        assert_eq!(checker.check(&outbound, &body).is_ok(), ok, "{body}");
    }
    let max = v360::MAX_SMS_CHARS;
    for (message, ok) in [
        ("é".repeat(max), true),
        ("é".repeat(max + 1), false),
        ("Hi\n".to_string(), true),
        (String::new(), false),
        ("   ".to_string(), false),
    ] {
        let body = json!({"from": "+13239776447", "to": "+15551234567", "message": message});
        assert_eq!(
            v360::read_sms_send(body.to_string().as_bytes()).is_ok(),
            ok,
            "{body}"
        );
        assert_eq!(checker.check(&sms, &body).is_ok(), ok, "{body}");
    }
    // The numbers filters: each documented parameter is one the reader knows.
    let (_, t) = template(Operation::ListNumbers);
    for p in spec["paths"][t]["get"]["parameters"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let sample = match name {
            "status" => "porting",
            "number" => "+15551234567",
            "ai_agent_id" => "agt_01",
            _ => "3",
        };
        assert!(
            checker.check(&p["schema"], &json!(sample)).is_ok() || p["schema"]["type"] == "integer"
        );
        assert_ne!(
            v360::read_numbers_query(&format!("{name}={sample}")).unwrap(),
            v360::NumbersFilter::default(),
            "{name} is not read"
        );
    }
}

/// Every webhook body the edge sends matches its documented schema, under
/// `webhooks["voice360.<EVENT>"]` with `X-Voice360-Signature`; the events
/// not sent yet are not documented.
#[test]
fn voice360_webhook_bodies_match_their_schemas() {
    use crate::webhooks::post_call::voice360_message_body;
    let spec = spec();
    let checker = Checker::new(&spec);
    let answered = crate::dialects::post_call::EndedCall {
        call_id: CALL_ID,
        ..test_call::ended(None)
    };
    let unanswered = crate::dialects::post_call::EndedCall {
        answered_ms: None,
        from_phone: None,
        turns: vec![],
        ..answered.clone()
    };
    let transcription =
        v360::transcription_json(&answered, "61", CALL_ID, &v360::Recap::default(), NOW);
    let finished = |success: bool| {
        v360::Event::TranscriptionFinished(v360::TranscriptionFinished {
            uniqueid: CALL_ID,
            transcription: success.then(|| transcription.clone()),
            provider: "openai",
            model: "",
            total_tokens: 0,
            success,
            error: (!success).then_some("no speech was transcribed"),
        })
    };
    let mut bodies: Vec<(EventType, String)> = Vec::new();
    let mut push = |e: v360::Event<'_>| bodies.push((e.event_type(), e.body("61", NOW)));
    for call in [&answered, &unanswered] {
        push(v360::user_dial(call, "3"));
        push(v360::user_hangup(call, "3"));
        push(v360::call_ended(call, "3"));
        // A call not placed from an extension (webhooks::post_call::voice360_body).
        push(v360::Event::CallEnded(v360::CallEnded {
            caller_id_number: call.from_phone,
            dnis: call.phone,
            uniqueid: call.call_id,
            call_direction: Direction::Outbound,
            to_user_id: None,
            duration: call.duration_seconds(),
        }));
    }
    push(finished(true));
    push(finished(false));
    // An inbound call's end (`post_call::voice360_body`).
    push(v360::Event::CallEnded(v360::CallEnded {
        caller_id_number: Some("+15551234567"),
        dnis: "+15559876543",
        uniqueid: CALL_ID,
        call_direction: Direction::Inbound,
        to_user_id: Some("3"),
        duration: 12,
    }));
    // A queue call's legs and steps, as the delivery renders them from the
    // native `call.leg` / `call.queue` payloads (issue 16).
    {
        use crate::webhooks::events::{call_step_payload, leg_json, queue_json, WebhookEvent};
        use voxline_shared::sidecar_link::{LegStep, QueueStep};
        let record = crate::model::CallRecord {
            id: CALL_ID.into(),
            direction: crate::model::CallDirection::Inbound,
            caller_number: Some("+15559876543".into()),
            queue: Some(crate::model::CallQueue {
                pk: 100134,
                name: "Sales Queue".into(),
                left: false,
            }),
            ..crate::model::test_call(voxline_shared::CallStatus::InProgress)
        };
        // Its creation (`post_call::voice360_incoming_body`).
        let incoming = crate::webhooks::post_call::voice360_incoming_body(
            EventType::IncomingExternalCall.as_str(),
            &record,
            "61",
            NOW,
        );
        bodies.push((
            EventType::IncomingExternalCall,
            incoming.expect("an inbound call's INCOMING_EXTERNAL_CALL"),
        ));
        let render = |event: EventType, payload: &str| {
            let bodies = crate::webhooks::post_call::voice360_step_bodies(
                event.as_str(),
                payload,
                &record,
                "61",
                NOW,
            );
            assert_eq!(bodies.len(), 1, "{event:?} from {payload}");
            (event, bodies[0].clone())
        };
        for (step, events) in [
            (LegStep::Dialing, vec![EventType::QueueMemberDial]),
            (
                LegStep::Answered,
                vec![EventType::QueueMemberAnswer, EventType::UserAnswer],
            ),
            (LegStep::Ended, vec![EventType::QueueMemberDialHangup]),
        ] {
            let leg = leg_json(step, Some(3), None, Some(200), 61_000);
            let payload =
                call_step_payload(WebhookEvent::CallLeg, "evt_1", &record, NOW, "leg", leg);
            for event in events {
                bodies.push(render(event, &payload));
            }
        }
        for (step, events) in [
            (QueueStep::Entered, vec![EventType::QueueEnter]),
            (QueueStep::NoAnswer, vec![EventType::QueueNoAnswer]),
            (QueueStep::Connected, vec![EventType::QueueHangup]),
            (
                QueueStep::TimedOut,
                vec![EventType::QueueHangupTimeout, EventType::QueueHangup],
            ),
            (QueueStep::Abandoned, vec![EventType::QueueHangupAbandoned]),
        ] {
            let queue = queue_json(step, 100134, Some("Sales Queue"), Some(1), 16_594);
            let payload = call_step_payload(
                WebhookEvent::CallQueue,
                "evt_2",
                &record,
                NOW,
                "queue",
                queue,
            );
            for event in events {
                bodies.push(render(event, &payload));
            }
        }
    }
    // The SMS events as the delivery renders them from the native payload.
    let payload = json!({"type": "message.sent", "data": {"id": MESSAGE_ID, "from": "+13239776447",
        "to": "+15551234567", "body": "Hi there"}})
    .to_string();
    for event in [
        EventType::SmsSent,
        EventType::SmsReceived,
        EventType::SmsDelivered,
    ] {
        let body = voice360_message_body(event.as_str(), &payload, "61", NOW).unwrap();
        bodies.push((event, body));
    }
    // The contact events likewise, from a contact's native payloads.
    let mut contact = crate::contacts::test_contact("con_00000000000000000001", "+15551234567");
    for (event, fields) in [
        (crate::contacts::ContactEvent::Created, vec![]),
        (
            crate::contacts::ContactEvent::Updated,
            vec!["first_name", "email"],
        ),
        (crate::contacts::ContactEvent::Deleted, vec![]),
    ] {
        let payload =
            crate::webhooks::events::contact_event_payload(event, "evt_1", &contact, &fields, NOW);
        let event = match event {
            crate::contacts::ContactEvent::Created => EventType::ContactCreated,
            crate::contacts::ContactEvent::Updated => EventType::ContactUpdated,
            crate::contacts::ContactEvent::Deleted => EventType::ContactDeleted,
        };
        let body =
            crate::webhooks::post_call::voice360_contact_body(event.as_str(), &payload, "61", NOW)
                .unwrap();
        bodies.push((event, body));
        contact.email = None;
    }
    let mut sent = BTreeSet::new();
    for (event, body) in &bodies {
        let name = format!("voice360.{}", event.as_str());
        let op = &spec["webhooks"][&name]["post"];
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{name} undocumented");
        let value: Value = serde_json::from_str(body).unwrap();
        if let Err(e) = checker.check(schema, &value) {
            panic!("{name} {body}: {e}");
        }
        // The signature header as the delivery writes it.
        let header = &op["parameters"][0];
        assert_eq!(header["name"], v360::HEADER_SIGNATURE);
        let sig = v360::signature(b"whsec_test", body.as_bytes());
        assert!(
            checker.check(&header["schema"], &json!(sig)).is_ok(),
            "{sig}"
        );
        sent.insert(name);
    }
    // Another event's body under this name fails (the event name is fixed).
    let wrong: Value = serde_json::from_str(&bodies[0].1).unwrap();
    let schema = &spec["webhooks"]["voice360.USER_HANGUP"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert!(checker.check(schema, &wrong).is_err());
    let documented: BTreeSet<String> = spec["webhooks"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("voice360."))
        .cloned()
        .collect();
    assert_eq!(documented, sent);
    for name in [
        "USER_DIAL",
        "USER_HANGUP",
        "CALL_ENDED",
        "TRANSCRIPTION_FINISHED",
        "SMS_SENT",
        "SMS_RECEIVED",
        "SMS_DELIVERED",
        "CONTACT_CREATED",
        "CONTACT_UPDATED",
        "CONTACT_DELETED",
        "USER_ANSWER",
        "QUEUE_ENTER",
        "QUEUE_MEMBER_DIAL",
        "QUEUE_MEMBER_ANSWER",
        "QUEUE_MEMBER_DIAL_HANGUP",
        "QUEUE_HANGUP",
        "QUEUE_NO_ANSWER",
        "QUEUE_HANGUP_TIMEOUT",
        "QUEUE_HANGUP_ABANDONED",
    ] {
        assert!(sent.contains(&format!("voice360.{name}")), "{name}");
    }
}
