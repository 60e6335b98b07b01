//! CodeB's REST API served (issue 14): the document's create body placing a
//! call on the native pipeline with a native `ak_` key, the whitelist, saved
//! prompts, reads, list filters, hangup and the transcript files, and the
//! refusals in CodeB's shape.

use super::dialect_webhooks::{answered_call, dial_and_report};
use super::dialects::tenant_with_agent;
use super::{World, ADMIN};
use crate::http::ApiResponse;
use crate::model::CallRecord;
use futures::executor::block_on;
use serde_json::{json, Value};
use voxline_shared::CallStatus;

/// The document's Step 2 example body.
fn reminder() -> Value {
    json!({
        "phone": "+4915157610183",
        "displayName": "Reminder",
        "email": "ops@yourcompany.example",
        "systemPrompt": "You are calling Alex to confirm the dentist appointment tomorrow at 14:00. Be brief and warm. If they answer YES, say goodbye. If NO, offer to reschedule for the same time next week.",
        "apiKey": "YOUR_AI_API_KEY",
        "voice": "Aoede",
        "language": "en-US",
        "maxSeconds": 180,
        "retries": 2,
        "retryDelayMinutes": 10
    })
}

fn post(w: &World, key: &str, body: Value) -> ApiResponse {
    w.send("POST", "/api.ashx/v1/calls", Some(key), Some(body))
}

fn record(w: &World, tid: &str, codeb_id: &str) -> CallRecord {
    use crate::calls::store::Calls;
    let native = crate::dialects::codeb::native_call_id(codeb_id).unwrap();
    block_on(w.calls.get(tid, &native)).unwrap().unwrap()
}

/// The top-level keys of a JSON object text, in the text's order.
fn keys_of(text: &str) -> Vec<String> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort_by_key(|k| text.find(&format!("\"{k}\":")).unwrap());
    keys
}

fn error_of(r: &ApiResponse) -> (u16, String) {
    let body = r.body_json();
    assert_eq!(body["ok"], false, "{}", r.body);
    (r.status, body["error"].as_str().unwrap_or("").to_string())
}

#[test]
fn the_documents_create_body_places_a_call_with_every_field_and_whitelists_the_number() {
    let w = World::new();
    let (tid, _aid, key) = tenant_with_agent(&w);
    let r = post(&w, &key, reminder());
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.body_json();
    // Exactly the document's answer, in its order.
    assert_eq!(
        keys_of(&r.body),
        [
            "ok",
            "callId",
            "tenant",
            "whitelistAdded",
            "whitelistError",
            "bridgeReply"
        ]
    );
    assert_eq!(body["ok"], true);
    assert_eq!(body["tenant"], tid.as_str());
    assert_eq!(body["whitelistAdded"], true);
    assert_eq!(body["whitelistError"], Value::Null);
    let call_id = body["callId"].as_str().unwrap();
    assert!(call_id.starts_with("oac-"), "{call_id}");
    // bridgeReply is JSON *text*: the native call.
    let bridge: Value = serde_json::from_str(body["bridgeReply"].as_str().unwrap()).unwrap();
    let rec = record(&w, &tid, call_id);
    assert_eq!(bridge["id"], rec.id.as_str());
    assert_eq!(rec.status, CallStatus::Queued);
    assert_eq!(rec.phone, "+4915157610183");
    assert!(rec
        .system_prompt
        .as_deref()
        .unwrap()
        .starts_with("You are calling Alex"));
    assert_eq!(rec.voice.as_deref(), Some("Aoede"));
    // The document's `email` is where the transcript goes, not the callee's address.
    assert_eq!(
        rec.transcript_email.as_deref(),
        Some("ops@yourcompany.example")
    );
    assert_eq!(rec.email, None);
    assert_eq!(rec.caller_name.as_deref(), Some("Reminder"));
    assert_eq!(rec.language, "en-US");
    assert_eq!(
        (rec.max_seconds, rec.retries, rec.retry_delay_minutes),
        (180, 2, 10)
    );
    // The per-call engine key: sealed into the offer, never in the record or the answer.
    assert!(rec.engine_api_key_set);
    assert!(!r.body.contains("YOUR_AI_API_KEY"));
    assert!(!serde_json::to_string(&rec)
        .unwrap()
        .contains("YOUR_AI_API_KEY"));

    // The same number again, once the first call is cancelled: already whitelisted.
    let h = w.send(
        "POST",
        &format!("/api.ashx/v1/calls/{call_id}/hangup"),
        Some(&key),
        None,
    );
    assert_eq!(h.status, 200, "{}", h.body);
    let mut again = reminder();
    // Normalised as the document says before the whitelist sees it.
    again["phone"] = json!("0049 151 (5761) 01-83");
    let r = post(&w, &key, again);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body_json()["whitelistAdded"], false);
    let rec = record(&w, &tid, r.body_json()["callId"].as_str().unwrap());
    assert_eq!(rec.phone, "+4915157610183");
}

#[test]
fn a_saved_prompt_slug_is_used_and_an_unsaved_slug_is_read_as_text() {
    let w = World::new();
    let (tid, _aid, key) = tenant_with_agent(&w);
    let saved = w.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/prompts/reminder"),
        Some(json!({"text": "Remind the callee of their appointment."})),
    );
    assert_eq!(
        (saved["object"].as_str(), saved["slug"].as_str()),
        (Some("prompt"), Some("reminder"))
    );
    let listed = w.admin("GET", &format!("/admin/tenants/{tid}/prompts"), None);
    assert_eq!(listed["data"][0]["slug"], "reminder");
    let mut body = reminder();
    body["systemPrompt"] = json!("reminder");
    let r = post(&w, &key, body.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    let rec = record(&w, &tid, r.body_json()["callId"].as_str().unwrap());
    assert_eq!(
        rec.system_prompt.as_deref(),
        Some("Remind the callee of their appointment.")
    );
    // A slug the tenant has not saved is the prompt itself.
    body["phone"] = json!("+4915157610184");
    body["systemPrompt"] = json!("survey");
    let r = post(&w, &key, body);
    let rec = record(&w, &tid, r.body_json()["callId"].as_str().unwrap());
    assert_eq!(rec.system_prompt.as_deref(), Some("survey"));
    // Deleted: gone from the admin API; bad slugs refused.
    w.admin(
        "DELETE",
        &format!("/admin/tenants/{tid}/prompts/reminder"),
        None,
    );
    let r = w.send(
        "GET",
        &format!("/admin/tenants/{tid}/prompts/reminder"),
        Some(ADMIN),
        None,
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (404, "prompt_not_found".into())
    );
    let r = w.send(
        "PUT",
        &format!("/admin/tenants/{tid}/prompts/Not%20A%20Slug"),
        Some(ADMIN),
        Some(json!({"text": "x"})),
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (400, "invalid_parameter".into())
    );
}

#[test]
fn scheduled_calls_are_listed_read_cancelled_idempotently_with_the_documents_words() {
    let w = World::new();
    let (tid, _aid, key) = tenant_with_agent(&w);
    let mut ids = Vec::new();
    for (i, phone) in ["+4915157610101", "+4915157610102", "+4915157610103"]
        .iter()
        .enumerate()
    {
        let mut body = reminder();
        body["phone"] = json!(phone);
        if i < 2 {
            body["scheduleAtUtc"] = json!("2025-12-20T09:00:00Z");
        }
        let r = post(&w, &key, body);
        assert_eq!(r.status, 200, "{}", r.body);
        ids.push(r.body_json()["callId"].as_str().unwrap().to_string());
    }
    let got = w.send(
        "GET",
        &format!("/api.ashx/v1/calls/{}", ids[0]),
        Some(&key),
        None,
    );
    assert_eq!(got.status, 200, "{}", got.body);
    let one = got.body_json();
    assert_eq!(
        (one["ok"].as_bool(), one["tenant"].as_str()),
        (Some(true), Some(tid.as_str()))
    );
    let call = &one["call"];
    assert_eq!(call["callId"], ids[0].as_str());
    assert_eq!(call["status"], "scheduled");
    assert_eq!(call["displayName"], "Reminder");
    assert_eq!(
        (call["attempt"].as_u64(), call["retriesLeft"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(call["transcriptPath"], Value::Null);

    // Status filter, limit and offset; newest first.
    let list = |q: &str| {
        let r = w.send("GET", &format!("/api.ashx/v1/calls{q}"), Some(&key), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body_json()
    };
    // A queued call is `scheduled` too (not yet dialled).
    let page = list("?status=scheduled&limit=1");
    assert_eq!(page["calls"].as_array().unwrap().len(), 1);
    assert_eq!(page["calls"][0]["callId"], ids[2].as_str());
    let page = list("?status=scheduled&limit=1&offset=2");
    assert_eq!(page["calls"][0]["callId"], ids[0].as_str());
    assert_eq!(
        (page["limit"].as_u64(), page["offset"].as_u64()),
        (Some(1), Some(2))
    );
    let all = list("");
    assert_eq!(all["calls"].as_array().unwrap().len(), 3);
    assert_eq!(list("?status=in-flight")["calls"], json!([]));
    assert_eq!(list("?status=ended-success,cancelled")["calls"], json!([]));
    // Hangup cancels a scheduled call; again: the same answer.
    for _ in 0..2 {
        let h = w.send(
            "POST",
            &format!("/api.ashx/v1/calls/{}/hangup", ids[0]),
            Some(&key),
            None,
        );
        assert_eq!(h.status, 200, "{}", h.body);
        assert_eq!(
            h.body_json(),
            json!({"ok": true, "callId": ids[0], "status": "cancelled"})
        );
    }
    assert_eq!(
        list("?status=cancelled")["calls"][0]["callId"],
        ids[0].as_str()
    );
}

#[test]
fn an_answered_call_has_its_transcript_files_under_the_documents_name() {
    let w = World::new();
    let (tid, _aid, key) = tenant_with_agent(&w);
    let r = post(&w, &key, reminder());
    let call_id = r.body_json()["callId"].as_str().unwrap().to_string();
    let native = record(&w, &tid, &call_id).id;
    dial_and_report(
        &w,
        &[(
            native.as_str(),
            answered_call("Yes, I'll be there.", "confirmed"),
        )],
    );
    let one = w
        .send(
            "GET",
            &format!("/api.ashx/v1/calls/{call_id}"),
            Some(&key),
            None,
        )
        .body_json();
    let call = &one["call"];
    assert_eq!(call["status"], "ended-success");
    let path = call["transcriptPath"].as_str().unwrap().to_string();
    assert!(
        path.starts_with("outbound-ai-") && path.ends_with(&format!("-{call_id}.txt")),
        "{path}"
    );
    let txt = w.send(
        "GET",
        &format!("/api.ashx/v1/transcripts/{path}"),
        Some(&key),
        None,
    );
    assert_eq!(txt.status, 200, "{}", txt.body);
    assert_eq!(
        txt.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str()),
        Some("text/plain; charset=utf-8")
    );
    let lines: Vec<&str> = txt.body.lines().collect();
    assert_eq!(lines.len(), 2, "{}", txt.body);
    assert!(
        lines[0].starts_with('[') && lines[0][9..].starts_with("] AI: Hello, this is Sarah"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1][9..].starts_with("] USER: Yes, I'll be there."),
        "{}",
        lines[1]
    );
    let json_name = path.replace(".txt", ".json");
    let js = w.send(
        "GET",
        &format!("/api.ashx/v1/transcripts/{json_name}"),
        Some(&key),
        None,
    );
    assert_eq!(js.status, 200, "{}", js.body);
    assert_eq!(js.body_json()["turns"][1]["role"], "USER");
    // Another stamp, another tenant's key, no key: not served.
    let wrong = path
        .replace("outbound-ai-", "outbound-ai-1")
        .replacen("-", "", 0);
    let stamp_off = {
        let (head, tail) = path.split_at("outbound-ai-".len());
        let mut digits: Vec<char> = tail.chars().collect();
        digits[0] = if digits[0] == '1' { '2' } else { '1' };
        format!("{head}{}", digits.into_iter().collect::<String>())
    };
    for name in [stamp_off.as_str(), wrong.as_str()] {
        let r = w.send(
            "GET",
            &format!("/api.ashx/v1/transcripts/{name}"),
            Some(&key),
            None,
        );
        assert_eq!(error_of(&r), (404, "not_found".into()), "{name}");
    }
    let (_, other_key) = w.tenant(true);
    let r = w.send(
        "GET",
        &format!("/api.ashx/v1/transcripts/{path}"),
        Some(&other_key),
        None,
    );
    assert_eq!(error_of(&r), (404, "not_found".into()));
    let r = w.send(
        "GET",
        &format!("/api.ashx/v1/transcripts/{path}"),
        None,
        None,
    );
    assert_eq!(error_of(&r), (401, "unauthorized".into()));
}

#[test]
fn refusals_are_in_codebs_shape_with_codebs_field_names() {
    let w = World::new();
    let (tid, _aid, key) = tenant_with_agent(&w);
    // Bad bearer: 401 with WWW-Authenticate.
    let r = post(&w, "ak_wrong", reminder());
    assert_eq!(error_of(&r), (401, "unauthorized".into()));
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "WWW-Authenticate" && v == "Bearer"));
    // Missing required fields, each named.
    for field in ["phone", "email", "systemPrompt", "apiKey"] {
        let mut body = reminder();
        body.as_object_mut().unwrap().remove(field);
        let r = post(&w, &key, body);
        assert_eq!(error_of(&r), (400, "invalid_request".into()), "{field}");
        assert!(
            r.body_json()["message"].as_str().unwrap().contains(field),
            "{}",
            r.body
        );
    }
    // Out of the document's ranges.
    for (field, value) in [
        ("maxSeconds", json!(5)),
        ("retries", json!(11)),
        ("retryDelayMinutes", json!(0)),
    ] {
        let mut body = reminder();
        body[field] = value;
        let r = post(&w, &key, body);
        assert_eq!(error_of(&r), (400, "invalid_request".into()), "{field}");
    }
    // The native validator's refusal, in CodeB's names.
    let mut body = reminder();
    body["scheduleAtUtc"] = json!("2020-01-01T00:00:00Z");
    let r = post(&w, &key, body);
    assert_eq!(error_of(&r), (400, "invalid_request".into()));
    let message = r.body_json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("scheduleAtUtc") && !message.contains("schedule_at"),
        "{message}"
    );
    // A second call to a number with one in flight.
    assert_eq!(post(&w, &key, reminder()).status, 200);
    let r = post(&w, &key, reminder());
    assert_eq!(error_of(&r), (409, "call_in_progress".into()));
    // Unknown ids, unknown paths, wrong methods.
    let r = w.send(
        "GET",
        "/api.ashx/v1/calls/oac-ffffffffffffffffffffff",
        Some(&key),
        None,
    );
    assert_eq!(error_of(&r), (404, "not_found".into()));
    let r = w.send("GET", "/api.ashx/v1/nothing", Some(&key), None);
    assert_eq!(error_of(&r), (404, "not_found".into()));
    let r = w.send("DELETE", "/api.ashx/v1/calls", Some(&key), None);
    assert_eq!(error_of(&r), (405, "method_not_allowed".into()));
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "Allow" && v == "GET, POST"));
    let r = w.send("GET", "/api.ashx/v1/calls?status=ringing", Some(&key), None);
    assert_eq!(error_of(&r), (400, "invalid_request".into()));
    // API access switched off: 403.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"api_access": false})),
    );
    let r = w.send("GET", "/api.ashx/v1/calls", Some(&key), None);
    assert_eq!(error_of(&r), (403, "forbidden".into()));
}
