//! Dialect webhooks (issue 13, webhook side): endpoints with a `format`
//! and an agent filter on the one delivery pipeline; each dialect's body
//! rendered from the ended call, signed as its document says, retried as it
//! says.

use super::dialects::{call_of, hmac_hex, mint, request, tenant_with_agent};
use super::{TestSidecar, World, ADMIN};
use crate::http::ApiResponse;
use crate::model::WebhookFormat;
use crate::webhooks::delivery::{
    self, DeliveryJob, DeliveryRecord, DeliveryStatus, HttpReply, Next, WebhookHttp,
};
use futures::executor::block_on;
use serde_json::{json, Value};
use std::cell::RefCell;
use voxline_shared::sidecar_link::paths;

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    url: String,
    headers: Vec<(String, String)>,
    pub(super) body: String,
    timeout_ms: u64,
}

impl Sent {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver answering from a script (200 once the script is used up).
#[derive(Default)]
pub(super) struct Receiver {
    replies: RefCell<Vec<HttpReply>>,
    pub(super) sent: RefCell<Vec<Sent>>,
}

impl Receiver {
    fn answering(statuses: &[(u16, Option<&str>)]) -> Receiver {
        let replies = statuses
            .iter()
            .map(|(status, retry_after)| HttpReply {
                status: *status,
                retry_after: retry_after.map(str::to_string),
                body_snippet: None,
            })
            .collect();
        Receiver {
            replies: RefCell::new(replies),
            sent: RefCell::default(),
        }
    }
}

impl WebhookHttp for Receiver {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &str,
        timeout_ms: u64,
    ) -> Result<HttpReply, String> {
        self.sent.borrow_mut().push(Sent {
            url: url.into(),
            headers: headers.to_vec(),
            body: body.into(),
            timeout_ms,
        });
        let mut replies = self.replies.borrow_mut();
        Ok(if replies.is_empty() {
            HttpReply {
                status: 200,
                retry_after: None,
                body_snippet: None,
            }
        } else {
            replies.remove(0)
        })
    }
}

pub(super) fn run(w: &World, http: &Receiver, job: DeliveryJob, at_ms: u64) -> Next {
    block_on(delivery::process(
        &w.kv,
        http,
        job,
        &|| at_ms,
        false,
        w.sealing.as_ref(),
    ))
    .unwrap()
}

fn delivery_record(w: &World, tid: &str, job: &DeliveryJob) -> DeliveryRecord {
    block_on(crate::store::get_json(
        &w.kv,
        &crate::model::keys::webhook_delivery(tid, &job.delivery_id),
    ))
    .unwrap()
    .unwrap()
}

pub(super) fn endpoint(w: &World, tid: &str, body: Value) -> Value {
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(ADMIN),
        Some(body),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.body_json()
}

/// Asks for a delivery again with the tenant's API key (202); the job it queued.
fn redeliver(w: &World, key: &str, delivery_id: &str) -> DeliveryJob {
    let r = w.send(
        "POST",
        &format!("/v1/webhooks/deliveries/{delivery_id}/redeliver"),
        Some(key),
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    w.outbox
        .take()
        .into_iter()
        .find(|j| j.delivery_id == delivery_id)
        .expect("the redelivery")
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// Hands every queued call to a new sidecar and reports, for each call, its
/// events (in one batch, as a sidecar sends a short call's last events).
pub(super) fn dial_and_report(w: &World, calls: &[(&str, Vec<Value>)]) {
    let sc = TestSidecar::create(w, "sc-hooks");
    sc.send(
        w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 8, "version": "t"}),
    );
    let lease = sc.send(
        w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 8, "held_calls": [], "wait_ms": 0}),
    );
    let offers = lease["offers"].as_array().unwrap().clone();
    assert_eq!(offers.len(), calls.len(), "{lease}");
    for offer in &offers {
        sc.send(
            w,
            paths::ACK,
            json!({"lease_id": offer["lease_id"], "call_id": offer["call_id"], "accepted": true}),
        );
    }
    for (call_id, kinds) in calls {
        sc.events(w, call_id, kinds);
    }
}

/// A call that is answered, talks, is summed up and ends.
pub(super) fn answered_call(callee_says: &str, outcome: &str) -> Vec<Value> {
    vec![
        json!({"type": "ringing"}),
        json!({"type": "answered"}),
        json!({"type": "transcript_turn", "role": "agent", "text": "Hello, this is Sarah from Acme.", "start_ms": 1200, "end_ms": 3000}),
        json!({"type": "transcript_turn", "role": "callee", "text": callee_says, "start_ms": 5000, "end_ms": 7000}),
        json!({"type": "summary", "summary": "The callee wants the enterprise plan.", "outcome": outcome}),
        json!({"type": "ended", "status": "completed", "reason": "callee_hangup",
               "timings": {"dispatched_ms": 0, "ringing_ms": 1, "answered_ms": 2, "ended_ms": 3}}),
    ]
}

#[test]
fn a_buildvoiceai_call_that_ends_is_delivered_once_signed_with_the_key_that_placed_it() {
    let w = World::new();
    let (tid, aid, native_key) = tenant_with_agent(&w);
    let placing = mint(&w, &tid, json!({"dialect": "buildvoiceai"}));
    let token = placing["token"].as_str().unwrap().to_string();
    let bvai = endpoint(
        &w,
        &tid,
        json!({"url": "https://hooks.example.com/bvai", "format": "buildvoiceai"}),
    );
    assert_eq!(
        (bvai["format"].as_str(), bvai["agent_id"].clone()),
        (Some("buildvoiceai"), Value::Null)
    );
    // Its schedule is the vendor's, whatever the default says.
    assert_eq!(bvai["retry_schedule"], json!([30, 300, 1800]));
    let native = endpoint(&w, &tid, json!({"url": "https://hooks.example.com/native"}));
    assert_eq!(native["format"], "native");
    let r = w.send_req(&request(
        "/api/trigger-call",
        &[("Authorization", &format!("Bearer {token}"))],
        r#"{"phone": "+15551234567", "name": "Jane Smith", "email": "jane@example.com", "metadata": {"source": "your-custom-field", "n": 1.50}}"#,
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let call = call_of(&w, &tid, &r, "/call_id");
    // A newer credential exists by the time the call ends: the placing one still signs.
    let newer = mint(&w, &tid, json!({"dialect": "buildvoiceai"}));
    dial_and_report(
        &w,
        &[(
            call.id.as_str(),
            answered_call("Hi, I'm interested in your pricing, thanks!", "interested"),
        )],
    );

    let jobs = w.outbox.take();
    let to = |e: &Value| -> Vec<&DeliveryJob> {
        jobs.iter()
            .filter(|j| j.endpoint_id == e["id"].as_str().unwrap())
            .collect()
    };
    // The native endpoint still gets every native event, once each.
    let native_events: Vec<&str> = to(&native).iter().map(|j| j.event_type.as_str()).collect();
    assert_eq!(
        native_events,
        [
            "call.queued",
            "call.ringing",
            "call.answered",
            "call.completed",
            "transcript.saved"
        ]
    );
    assert!(to(&native)
        .iter()
        .all(|j| j.format == WebhookFormat::Native));
    // The BuildVoiceAI endpoint exactly one delivery: the call's end.
    let bvai_jobs = to(&bvai);
    assert_eq!(bvai_jobs.len(), 1, "{jobs:?}");
    let job = bvai_jobs[0].clone();
    assert_eq!(
        (job.event_type.as_str(), job.format),
        ("call.completed", WebhookFormat::BuildVoiceAi)
    );
    assert_eq!(job.placed_with_key.as_deref(), placing["id"].as_str());

    let http = Receiver::default();
    assert_eq!(run(&w, &http, job.clone(), w.now.get()), Next::Done);
    let sent = http.sent.borrow()[0].clone();
    assert_eq!(sent.url, "https://hooks.example.com/bvai");
    assert_eq!(sent.body, job.payload, "the body is sent as rendered");
    assert_eq!(sent.timeout_ms, 10_000, "BuildVoiceAI: 10 s");
    // The receiver's check: hex HMAC-SHA256 of the raw body with its API key.
    assert_eq!(
        sent.header("X-Signature"),
        Some(hmac_hex(&token, &sent.body).as_str())
    );
    assert_ne!(
        sent.header("X-Signature"),
        Some(hmac_hex(newer["token"].as_str().unwrap(), &sent.body).as_str())
    );
    assert!(sent.header("webhook-signature").is_none());

    // The document's fields, in its order, filled from the ended call.
    let body: Value = serde_json::from_str(&sent.body).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut documented = vec![
        "event",
        "call_id",
        "agent_id",
        "agent_name",
        "direction",
        "phone_number",
        "duration_seconds",
        "started_at",
        "ended_at",
        "sentiment",
        "summary",
        "transcript",
        "metadata",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    documented.sort_unstable();
    assert_eq!(sorted, documented);
    assert!(
        sent.body
            .starts_with(r#"{"event":"call.completed","call_id":""#),
        "{}",
        sent.body
    );
    assert_eq!(body["call_id"], call.id.as_str());
    assert_eq!(body["agent_id"], aid.as_str());
    assert_eq!(body["agent_name"], "a");
    assert_eq!(body["direction"], "outbound");
    assert_eq!(body["phone_number"], "+15551234567");
    assert!(body["duration_seconds"].is_u64());
    for t in ["started_at", "ended_at"] {
        let at = body[t].as_str().unwrap();
        assert!(
            crate::ids::parse_rfc3339_utc_ms(at).is_some() && at.ends_with('Z'),
            "{at}"
        );
    }
    assert_eq!(body["sentiment"], "positive");
    // The turns and the summary were reported with the end, in the same
    // batch: they are stored before the end is, so the body has them.
    assert_eq!(body["summary"], "The callee wants the enterprise plan.");
    let transcript = body["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), 2, "{body}");
    assert_eq!(
        (
            transcript[0]["role"].as_str(),
            transcript[0]["content"].as_str()
        ),
        (Some("agent"), Some("Hello, this is Sarah from Acme."))
    );
    assert_eq!(
        (
            transcript[1]["role"].as_str(),
            transcript[1]["content"].as_str()
        ),
        (
            Some("human"),
            Some("Hi, I'm interested in your pricing, thanks!")
        )
    );
    // The request's metadata, byte for byte.
    assert!(
        sent.body
            .ends_with(r#""metadata":{"source":"your-custom-field","n":1.50}}"#),
        "{}",
        sent.body
    );
    assert_eq!(
        delivery_record(&w, &tid, &job).status,
        DeliveryStatus::Delivered
    );

    // Once the placing credential is revoked, the newest one signs (the
    // vendor: a new key invalidates the previous one); a redelivery shows it.
    w.admin(
        "DELETE",
        &format!("/admin/tenants/{tid}/dialect-keys/{}", id(&placing)),
        None,
    );
    let again = redeliver(&w, &native_key, &job.delivery_id);
    assert_eq!(again.format, WebhookFormat::BuildVoiceAi);
    assert_eq!(run(&w, &http, again, w.now.get()), Next::Done);
    let resent = http.sent.borrow()[1].clone();
    assert_eq!(resent.body, sent.body);
    assert_eq!(
        resent.header("X-Signature"),
        Some(hmac_hex(newer["token"].as_str().unwrap(), &resent.body).as_str())
    );
}

#[test]
fn a_buildvoiceai_delivery_without_a_credential_fails_unsent_and_retries_30_300_1800() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let bvai = endpoint(
        &w,
        &tid,
        json!({"url": "https://hooks.example.com/bvai", "format": "buildvoiceai"}),
    );
    // Placed natively: no BuildVoiceAI credential placed it, and there is none.
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let call_id = r.body_json()["id"].as_str().unwrap().to_string();
    // An unanswered call ends too: one delivery, no transcript.
    dial_and_report(
        &w,
        &[(
            call_id.as_str(),
            vec![
                json!({"type": "ended", "status": "no_answer", "reason": "no_answer",
                         "timings": {"dispatched_ms": 0, "ended_ms": 3}}),
            ],
        )],
    );
    let jobs: Vec<DeliveryJob> = w
        .outbox
        .take()
        .into_iter()
        .filter(|j| j.endpoint_id == id(&bvai))
        .collect();
    assert_eq!(jobs.len(), 1);
    let mut job = jobs[0].clone();
    assert_eq!(job.placed_with_key, None);
    let body: Value = serde_json::from_str(&job.payload).unwrap();
    assert_eq!(
        (
            body["duration_seconds"].as_u64(),
            body["transcript"].clone(),
            body["sentiment"].as_str()
        ),
        (Some(0), json!([]), Some("neutral"))
    );

    // Every attempt fails: first for want of a credential (nothing is sent),
    // then with the receiver's 500 and a Retry-After the schedule ignores.
    let http = Receiver::answering(&[(500, Some("7200")), (503, None), (500, None)]);
    let mut at = w.now.get();
    let mut delays = Vec::new();
    while let Next::Requeue {
        job: next,
        delay_seconds,
    } = run(&w, &http, job.clone(), at)
    {
        delays.push(delay_seconds);
        if delays.len() == 1 {
            let r = delivery_record(&w, &tid, &job);
            assert_eq!(r.status, DeliveryStatus::Pending);
            let err = r.attempts[0].error.clone().unwrap();
            assert!(err.contains("no BuildVoiceAI credential"), "{err}");
            assert!(http.sent.borrow().is_empty(), "never sent unsigned");
            mint(&w, &tid, json!({"dialect": "buildvoiceai"}));
        }
        at = next.due_at_ms;
        job = *next;
    }
    assert_eq!(delays, [30, 300, 1800], "BuildVoiceAI's schedule, exactly");
    let r = delivery_record(&w, &tid, &job);
    assert_eq!(r.status, DeliveryStatus::Failed);
    assert_eq!(
        r.attempts.len(),
        4,
        "the attempt and three retries, then dropped"
    );
    assert!(r.last_error.unwrap().contains("exhausted"));
    assert_eq!(http.sent.borrow().len(), 3);
    assert!(http.sent.borrow().iter().all(|s| s.timeout_ms == 10_000));
}

#[test]
fn a_calldock_endpoint_gets_one_post_call_for_its_agents_calls_only() {
    let w = World::new();
    let (tid, aid, key) = tenant_with_agent(&w);
    let other = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "other"})),
    );
    let cred = mint(&w, &tid, json!({"dialect": "calldock", "agent_id": aid}));
    let hook = endpoint(
        &w,
        &tid,
        json!({"url": "https://hooks.example.com/calldock", "format": "calldock", "agent_id": aid}),
    );
    assert_eq!(
        (hook["format"].as_str(), hook["agent_id"].as_str()),
        (Some("calldock"), Some(aid.as_str()))
    );
    // The Webhook Secret, as shown once.
    let secret = hook["secret"].as_str().unwrap().to_string();
    let r = w.send_req(&request(
        "/v1/make-call",
        &[("X-API-Key", cred["token"].as_str().unwrap()), ("X-Agent-ID", &aid)],
        r#"{"name": "John Doe", "email": "john@example.com", "phone": "+1 (415) 555-0100", "metadata": {"source": "website"}}"#,
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let mine = call_of(&w, &tid, &r, "/data/callId");
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550101", "agent_id": id(&other)})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let theirs = r.body_json()["id"].as_str().unwrap().to_string();
    dial_and_report(
        &w,
        &[
            (
                mine.id.as_str(),
                answered_call("Yes, this is John.", "account_setup"),
            ),
            (theirs.as_str(), answered_call("Who is this?", "no_match")),
        ],
    );
    let jobs: Vec<DeliveryJob> = w
        .outbox
        .take()
        .into_iter()
        .filter(|j| j.endpoint_id == id(&hook))
        .collect();
    assert_eq!(
        jobs.len(),
        1,
        "one post_call, for its agent's call: {jobs:?}"
    );
    let job = jobs[0].clone();
    assert_eq!(job.call_id.as_deref(), Some(mine.id.as_str()));
    assert_eq!(job.format, WebhookFormat::Calldock);

    let http = Receiver::default();
    assert_eq!(run(&w, &http, job.clone(), w.now.get()), Next::Done);
    let sent = http.sent.borrow()[0].clone();
    assert_eq!(sent.header("X-Calldock-Event"), Some("post_call"));
    // The receiver's check (the document's Node verifier): HMAC-SHA256 keyed
    // with the secret string, of JSON.stringify(req.body), which is the body.
    assert_eq!(
        sent.header("X-Calldock-Signature"),
        Some(hmac_hex(&secret, &sent.body).as_str())
    );
    assert_eq!(sent.timeout_ms, 15_000);
    let body: Value = serde_json::from_str(&sent.body).unwrap();
    assert!(sent
        .body
        .starts_with(r#"{"webhook_version":"v1","webhook_timestamp":""#));
    assert_eq!(body["webhook_type"], "post_call");
    assert_eq!(body["call_id"], mine.id.as_str());
    assert_eq!(body["agent_id"], aid.as_str());
    assert_eq!(body["phone_number"], "+14155550100");
    assert_eq!(body["status"], "done");
    assert_eq!(body["intent"], "account_setup");
    assert_eq!(body["call_successful"], "success");
    assert_eq!(body["language"], "en");
    assert_eq!(
        body["lead_data"],
        json!({"name": "John Doe", "email": "john@example.com", "phone": "+14155550100"})
    );
    assert_eq!(
        body["metadata"]["summary"],
        "The callee wants the enterprise plan."
    );
    assert_eq!(
        body["metadata"]["transcript"],
        "Agent: Hello, this is Sarah from Acme.\nUser: Yes, this is John."
    );
    assert_eq!(
        body["metadata"]["transcript_turns"][1]["time_in_call_secs"],
        5
    );
    assert_eq!(body["recording_url"], Value::Null);
    // A rotated secret signs at once (one signature header, no overlap).
    let rotated = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks/{}/rotate", id(&hook)),
        None,
    );
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_eq!(
        run(
            &w,
            &http,
            DeliveryJob {
                delivery_id: delivery::delivery_id(1),
                ..job
            },
            w.now.get()
        ),
        Next::Done
    );
    let resent = http.sent.borrow()[1].clone();
    assert_eq!(
        resent.header("X-Calldock-Signature"),
        Some(hmac_hex(new_secret, &resent.body).as_str())
    );
}

#[test]
fn a_calldock_post_call_links_the_recording_when_the_deployment_has_a_public_base_url() {
    let w = World::new();
    let (tid, aid, native_key) = tenant_with_agent(&w);
    let links = crate::recording_links::RecordingLinks::new(
        "https://edge.example.com/",
        w.sealing.as_ref().unwrap().recording_link_key(),
    )
    .unwrap();
    *w.calls.recording_links.borrow_mut() = Some(links);
    let cred = mint(&w, &tid, json!({"dialect": "calldock", "agent_id": aid}));
    let hook = endpoint(
        &w,
        &tid,
        json!({"url": "https://hooks.example.com/calldock", "format": "calldock"}),
    );
    let r = w.send_req(&request(
        "/v1/make-call",
        &[
            ("X-API-Key", cred["token"].as_str().unwrap()),
            ("X-Agent-ID", &aid),
        ],
        r#"{"phone": "+14155550100"}"#,
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let call = call_of(&w, &tid, &r, "/data/callId");
    // A native call without record: true gets no link.
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&native_key),
        Some(json!({"phone": "+14155550101"})),
    );
    let unrecorded = r.body_json()["id"].as_str().unwrap().to_string();
    dial_and_report(
        &w,
        &[
            (call.id.as_str(), answered_call("Yes.", "account_setup")),
            (unrecorded.as_str(), answered_call("No.", "no_match")),
        ],
    );
    let bodies: Vec<(String, Value)> = w
        .outbox
        .take()
        .into_iter()
        .filter(|j| j.endpoint_id == id(&hook))
        .map(|j| {
            (
                j.call_id.unwrap(),
                serde_json::from_str(&j.payload).unwrap(),
            )
        })
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let body_of = |cid: &str| bodies.iter().find(|(c, _)| c == cid).unwrap().1.clone();
    assert_eq!(body_of(&unrecorded)["recording_url"], Value::Null);
    let url = body_of(&call.id)["recording_url"]
        .as_str()
        .expect("an absolute recording_url")
        .to_string();
    let prefix = format!(
        "https://edge.example.com/v1/recordings/{tid}/{}?expires=",
        call.id
    );
    assert!(url.starts_with(&prefix), "{url}");
    let target = url.strip_prefix("https://edge.example.com").unwrap();
    let get = |target: &str| w.send("GET", target, None, None);
    let code = |r: &ApiResponse| {
        r.body_json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // The link works without an API key: 404 until the sidecar uploads the recording ...
    let r = get(target);
    assert_eq!(
        (r.status, code(&r)),
        (404, "recording_not_found".into()),
        "{}",
        r.body
    );
    // ... then the WAV, exactly as the API-key route serves it.
    let info = crate::calls::store::RecordingInfo {
        attempt: 1,
        object_key: crate::calls::recordings::object_key(&tid, &call.id, 1),
        content_type: "audio/wav".into(),
        bytes: 32_044,
        sha256: "ab".repeat(32),
        duration_ms: 1_000,
        saved_at: "2025-11-25T15:00:00.000Z".into(),
    };
    crate::calls::store::recording_saved(&*w.calls.rows(&tid), &call.id, &info, w.now.get())
        .unwrap();
    let by_link = get(target);
    let by_key = w.send(
        "GET",
        &format!("/v1/calls/{}/recording", call.id),
        Some(&native_key),
        None,
    );
    assert_eq!(by_link.status, 200, "{}", by_link.body);
    assert_eq!(
        by_link.stored_object.as_deref(),
        Some(info.object_key.as_str())
    );
    for h in [
        "Content-Type",
        "Content-Length",
        "Content-Disposition",
        "X-Recording-Attempt",
        "X-Recording-Sha256",
    ] {
        let of = |r: &ApiResponse| r.headers.iter().find(|(k, _)| k == h).cloned();
        assert!(of(&by_link).is_some() && of(&by_link) == of(&by_key), "{h}");
    }

    // Tampered, truncated or transplanted links: 403, and nothing about the call.
    let (path, query) = target.split_once('?').unwrap();
    let other_call = format!("/v1/recordings/{tid}/{unrecorded}?{query}");
    let missing_call = format!("/v1/recordings/{tid}/call_00000000000000000000?{query}");
    let other_tenant = format!(
        "/v1/recordings/ten_00000000000000000000/{}?{query}",
        call.id
    );
    let mut flipped = target.to_string();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    for bad in [
        path.to_string(),
        format!("{path}?expires=1"),
        format!("{path}?{}", query.replace("expires=", "expires=9")),
        flipped,
        other_call,
        missing_call,
        other_tenant,
        format!("/v1/recordings/nope/{}?{query}", call.id),
    ] {
        let r = get(&bad);
        assert_eq!(
            (r.status, code(&r)),
            (403, "invalid_recording_link".into()),
            "{bad}: {}",
            r.body
        );
        assert!(
            !r.body.contains(&call.id) && !r.body.contains(&unrecorded),
            "{}",
            r.body
        );
    }
    // A disabled tenant's links serve nothing; enabled again, they do.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"disabled": true})),
    );
    let r = get(target);
    assert_eq!(
        (r.status, code(&r)),
        (403, "tenant_disabled".into()),
        "{}",
        r.body
    );
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"disabled": false})),
    );
    assert_eq!(get(target).status, 200);
    // A week later the link has expired.
    w.now
        .set(w.now.get() + (crate::recording_links::LINK_LIFETIME_SECONDS + 1) * 1000);
    let r = get(target);
    assert_eq!((r.status, code(&r)), (403, "invalid_recording_link".into()));
    assert!(r.body.contains("expired"), "{}", r.body);
    // Without a sealing key no link verifies (none was made).
    let mut w = w;
    w.sealing = None;
    w.now.set(w.now.get() - 2_000_000);
    assert_eq!(w.send("GET", target, None, None).status, 403);
}

#[test]
fn a_codeb_endpoint_gets_finished_and_transcript_saved_for_its_agents_calls_signed_with_its_secret()
{
    let w = World::new();
    let (tid, aid, key) = tenant_with_agent(&w);
    let other = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "other"})),
    );
    let hook = endpoint(
        &w,
        &tid,
        json!({"url": "https://hooks.example.com/codeb", "format": "codeb", "agent_id": aid}),
    );
    assert_eq!(hook["format"], "codeb");
    // The subscription secret, as shown once.
    let secret = hook["secret"].as_str().unwrap().to_string();
    let place = |body: Value| {
        let r = w.send("POST", "/v1/calls", Some(&key), Some(body));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body_json()["id"].as_str().unwrap().to_string()
    };
    let answered =
        place(json!({"phone": "+14155550100", "agent_id": aid, "caller_name": "Reminder"}));
    let unanswered = place(json!({"phone": "+14155550102", "agent_id": aid}));
    let theirs = place(json!({"phone": "+14155550101", "agent_id": id(&other)}));
    dial_and_report(
        &w,
        &[
            (
                answered.as_str(),
                answered_call("Yes, I will be there.", "confirmed"),
            ),
            (
                unanswered.as_str(),
                vec![
                    json!({"type": "ended", "status": "no_answer", "reason": "no_answer",
                           "timings": {"dispatched_ms": 0, "ended_ms": 3}}),
                ],
            ),
            (theirs.as_str(), answered_call("Who is this?", "no_match")),
        ],
    );
    let jobs: Vec<DeliveryJob> = w
        .outbox
        .take()
        .into_iter()
        .filter(|j| j.endpoint_id == id(&hook))
        .collect();
    let of = |call: &str| -> Vec<DeliveryJob> {
        jobs.iter()
            .filter(|j| j.call_id.as_deref() == Some(call))
            .cloned()
            .collect()
    };
    assert!(of(&theirs).is_empty(), "the agent filter: {jobs:?}");
    let types = |js: &[DeliveryJob]| -> Vec<String> {
        js.iter()
            .map(|j| serde_json::from_str::<Value>(&j.payload).unwrap()["type"].to_string())
            .collect()
    };
    let mut two = of(&answered);
    two.sort_by_key(|j| j.payload.contains("transcript.saved"));
    assert_eq!(
        types(&two),
        [r#""outbound-ai.finished""#, r#""transcript.saved""#]
    );
    assert_eq!(types(&of(&unanswered)), [r#""outbound-ai.finished""#]);
    assert!(jobs.iter().all(|j| j.format == WebhookFormat::Codeb));
    assert_ne!(two[0].delivery_id, two[1].delivery_id);

    let http = Receiver::default();
    for job in &two {
        assert_eq!(run(&w, &http, job.clone(), w.now.get()), Next::Done);
        assert_eq!(
            delivery_record(&w, &tid, job).status,
            DeliveryStatus::Delivered
        );
    }
    for sent in http.sent.borrow().iter() {
        // The document's verifier: hmac.new(secret, raw_body, sha256).hexdigest().
        assert_eq!(
            sent.header("X-CodeB-Signature"),
            Some(hmac_hex(&secret, &sent.body).as_str())
        );
        assert_eq!(sent.header("Content-Type"), Some("application/json"));
        assert_eq!(sent.timeout_ms, 15_000);
    }
    let finished: Value = serde_json::from_str(&http.sent.borrow()[0].body).unwrap();
    assert_eq!(finished["tenant"], tid.as_str());
    assert_eq!(
        finished["data"]["callId"],
        crate::dialects::codeb::codeb_call_id(&answered).unwrap()
    );
    assert_eq!(finished["data"]["displayName"], "Reminder");
    assert_eq!(finished["data"]["status"], "ended-success");
    let saved: Value = serde_json::from_str(&http.sent.borrow()[1].body).unwrap();
    assert_eq!(saved["data"]["turns"], 2);
    assert_eq!(
        saved["data"]["transcriptPath"],
        finished["data"]["transcriptPath"]
    );

    // A rotated secret signs at once (one signature header, no overlap),
    // here on a redelivery.
    let rotated = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks/{}/rotate", id(&hook)),
        None,
    );
    let new_secret = rotated["secret"].as_str().unwrap();
    let again = redeliver(&w, &key, &two[0].delivery_id);
    assert_eq!(again.format, WebhookFormat::Codeb);
    assert_eq!(run(&w, &http, again, w.now.get()), Next::Done);
    let resent = http.sent.borrow()[2].clone();
    assert_eq!(resent.body, http.sent.borrow()[0].body);
    assert_eq!(
        resent.header("X-CodeB-Signature"),
        Some(hmac_hex(new_secret, &resent.body).as_str())
    );

    // Failures retry on the endpoint's schedule; 410 disables the endpoint.
    let gone = Receiver::answering(&[(503, None), (410, None)]);
    let job = of(&unanswered).remove(0);
    let Next::Requeue { job, .. } = run(&w, &gone, job, w.now.get()) else {
        panic!("a 503 is retried")
    };
    assert_eq!(run(&w, &gone, *job, w.now.get() + 600_000), Next::Done);
    let stored = w.admin(
        "GET",
        &format!("/admin/tenants/{tid}/webhooks/{}", id(&hook)),
        None,
    );
    assert_eq!(stored["enabled"], false, "{stored}");
}

#[test]
fn endpoint_format_and_agent_filter_are_validated_and_old_records_read_native() {
    let w = World::new();
    let (tid, aid, _) = tenant_with_agent(&w);
    let (other_tid, _) = w.tenant(true);
    let other_aid = w.admin("GET", &format!("/admin/tenants/{other_tid}/agents"), None)["data"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/admin/tenants/{tid}/webhooks");
    let refused = |method: &str, path: &str, body: Value| {
        let r = w.send(method, path, Some(ADMIN), Some(body));
        let e = r.body_json()["error"].clone();
        (
            r.status,
            e["code"].as_str().unwrap_or("").to_string(),
            e["field"].as_str().unwrap_or("").to_string(),
        )
    };
    let url = "https://hooks.example.com/x";
    let unprocessable = |code: &str, field: &str| (422, code.to_string(), field.to_string());
    assert_eq!(
        refused("POST", &path, json!({"url": url, "format": "voiceb"})),
        unprocessable("invalid_value", "format")
    );
    // An agent of another tenant is no agent of this one.
    for agent in [other_aid.as_str(), "agt_00000000000000000000", "nope"] {
        assert_eq!(
            refused("POST", &path, json!({"url": url, "agent_id": agent})),
            unprocessable("unknown_agent", "agent_id")
        );
    }
    assert_eq!(
        refused(
            "POST",
            &path,
            json!({"url": url, "format": "calldock", "events": ["call.failed"]})
        ),
        unprocessable("invalid_value", "events")
    );
    assert_eq!(
        refused(
            "POST",
            &path,
            json!({"url": url, "format": "buildvoiceai", "retry_schedule": [60]})
        ),
        unprocessable("invalid_value", "retry_schedule")
    );
    // A native endpoint with an agent filter; then switched to Calldock.
    let e = endpoint(
        &w,
        &tid,
        json!({"url": url, "agent_id": aid, "events": ["call.failed"]}),
    );
    let wp = format!("{path}/{}", id(&e));
    assert_eq!(
        refused("PATCH", &wp, json!({"format": "calldock"})),
        unprocessable("invalid_value", "events")
    );
    let changed = w.admin(
        "PATCH",
        &wp,
        Some(json!({"format": "calldock", "events": []})),
    );
    assert_eq!(
        (changed["format"].as_str(), changed["agent_id"].as_str()),
        (Some("calldock"), Some(aid.as_str()))
    );
    // Absent keeps the filter; null removes it.
    let kept = w.admin("PATCH", &wp, Some(json!({"enabled": true})));
    assert_eq!(kept["agent_id"], aid.as_str());
    let cleared = w.admin("PATCH", &wp, Some(json!({"agent_id": null})));
    assert_eq!(cleared["agent_id"], Value::Null);
    // BuildVoiceAI shows its own schedule; back to native, the endpoint's own again.
    let bvai = w.admin("PATCH", &wp, Some(json!({"format": "buildvoiceai"})));
    assert_eq!(bvai["retry_schedule"], json!([30, 300, 1800]));
    let back = w.admin("PATCH", &wp, Some(json!({"format": "native"})));
    assert_eq!(
        back["retry_schedule"],
        json!(crate::model::DEFAULT_RETRY_SCHEDULE)
    );
    // A record written before formats: native, no filter.
    let key = crate::model::keys::webhook(&tid, &id(&e));
    let mut stored: Value = serde_json::from_str(&w.kv.map.borrow()[&key].0).unwrap();
    let fields = stored.as_object_mut().unwrap();
    fields.remove("format");
    fields.remove("agent_id");
    w.kv.map
        .borrow_mut()
        .insert(key, (stored.to_string(), None));
    let old = w.admin("GET", &wp, None);
    assert_eq!(
        (old["format"].as_str(), old["agent_id"].clone()),
        (Some("native"), Value::Null)
    );
}
