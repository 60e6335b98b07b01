//! The delivery log for operators (issue 19): a webhook endpoint's test
//! event sent on the real delivery path (queued, signed, attempted, logged
//! with the receiver's answer), and the log's filters (`kind`, `call_id`).

use super::{World, ADMIN};
use crate::webhooks::signing;
use serde_json::{json, Value};

/// A tenant with a native endpoint for `events` (all when empty): (tenant,
/// key, endpoint id, its secret).
fn tenant_with_endpoint(w: &World, events: &[&str]) -> (String, String, String, String) {
    let (tid, key) = w.tenant(true);
    let e = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/in", "events": events})),
    );
    let wid = e["id"].as_str().unwrap().to_string();
    let secret = e["secret"].as_str().unwrap().to_string();
    (tid, key, wid, secret)
}

fn list(w: &World, key: &str, query: &str) -> Vec<Value> {
    let r = w.send(
        "GET",
        &format!("/v1/webhooks/deliveries{query}"),
        Some(key),
        None,
    );
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.body_json()["data"].as_array().unwrap().clone()
}

#[test]
fn a_test_event_is_queued_signed_delivered_and_logged_with_the_answer() {
    let w = World::new();
    let (tid, key, wid, secret) = tenant_with_endpoint(&w, &["call.completed"]);
    w.outbox.take();
    let test = format!("/admin/tenants/{tid}/webhooks/{wid}/test");
    let r = w.send("POST", &test, Some(ADMIN), None);
    assert_eq!(r.status, 202, "{}", r.body);
    let queued = r.body_json();
    let did = queued["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            &queued["kind"],
            &queued["event_type"],
            &queued["status"],
            &queued["endpoint_id"]
        ),
        (
            &json!("webhook"),
            &json!("webhook.test"),
            &json!("pending"),
            &json!(wid)
        )
    );
    // In the log at once, before its first attempt (the endpoint does not
    // subscribe to webhook.test: a test goes to it all the same).
    let listed = list(&w, &key, "");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (&listed[0]["id"], &listed[0]["status"]),
        (&json!(did), &json!("pending"))
    );

    // The queue's consumer sends it as it sends every event.
    let sent = w.deliver_all(200, "thanks, got it");
    assert_eq!(sent.len(), 1);
    let (url, headers, body) = &sent[0];
    assert_eq!(url, "https://hooks.example.com/in");
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let ts: u64 = header("webhook-timestamp").parse().unwrap();
    assert_eq!(
        header("webhook-signature"),
        signing::sign(&secret, &header("webhook-id"), ts, body.as_bytes()).unwrap()
    );
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["type"], "webhook.test");
    assert_eq!(payload["data"]["endpoint_id"], json!(wid));
    assert_eq!(payload["id"].as_str(), Some(header("webhook-id").as_str()));

    let d = w
        .send(
            "GET",
            &format!("/v1/webhooks/deliveries/{did}"),
            Some(&key),
            None,
        )
        .body_json();
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["payload"], payload);
    let attempt = &d["attempts"][0];
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["response_snippet"], "thanks, got it");
    assert_eq!(attempt["manual"], true);
    assert_eq!(
        list(&w, &key, "?event=webhook.test")[0]["status"],
        "delivered"
    );

    // A failing receiver: the attempt logs its answer and a retry is due.
    w.send("POST", &test, Some(ADMIN), None);
    w.deliver_all(500, "{\"error\":\"database down\"}");
    let failed = list(&w, &key, "?event=webhook.test&status=pending");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let d = w
        .send(
            "GET",
            &format!(
                "/v1/webhooks/deliveries/{}",
                failed[0]["id"].as_str().unwrap()
            ),
            Some(&key),
            None,
        )
        .body_json();
    assert_eq!(d["attempts"][0]["status_code"], 500);
    assert_eq!(
        d["attempts"][0]["response_snippet"],
        "{\"error\":\"database down\"}"
    );
    assert!(d["next_attempt_at"].is_string(), "{d}");
    assert_eq!(
        w.outbox.take().len(),
        0,
        "the retry waits in the queue, not here"
    );

    // Refusals: a body with fields, an unknown or disabled endpoint.
    let r = w.send("POST", &test, Some(ADMIN), Some(json!({"event": "x"})));
    assert_eq!((r.status, World::code(&r).as_str()), (400, "unknown_field"));
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks/wh_0123456789abcdef/test"),
        Some(ADMIN),
        None,
    );
    assert_eq!(
        (r.status, World::code(&r).as_str()),
        (404, "webhook_not_found")
    );
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/webhooks/{wid}"),
        Some(json!({"enabled": false})),
    );
    let r = w.send("POST", &test, Some(ADMIN), Some(json!({})));
    assert_eq!(
        (r.status, World::code(&r).as_str()),
        (409, "webhook_disabled")
    );
    assert!(w.outbox.take().is_empty());
    // Admin only: a tenant's key is not the admin token.
    let r = w.send("POST", &test, Some(&key), None);
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn the_log_filters_by_call_and_kind_and_checks_its_parameters() {
    let w = World::new();
    let (_tid, key, _wid, _secret) = tenant_with_endpoint(&w, &[]);
    let mut calls = Vec::new();
    for phone in ["+14155550100", "+14155550101"] {
        let r = w.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": phone})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        calls.push(r.body_json()["id"].as_str().unwrap().to_string());
    }
    // Each call's events so far (call.queued) are deliveries.
    w.deliver_all(204, "");
    let all = list(&w, &key, "");
    assert!(all.len() >= 2, "{all:?}");
    for call in &calls {
        let mine = list(&w, &key, &format!("?call_id={call}"));
        assert!(!mine.is_empty(), "{all:?}");
        assert!(mine.iter().all(|d| d["call_id"] == json!(call)), "{mine:?}");
        assert_eq!(
            mine.len(),
            all.iter().filter(|d| d["call_id"] == json!(call)).count()
        );
    }
    assert!(list(&w, &key, "?call_id=call_0000000000").is_empty());
    assert_eq!(list(&w, &key, "?kind=webhook").len(), all.len());
    assert!(list(&w, &key, "?kind=tool_call").is_empty());
    assert!(all.iter().all(|d| d["kind"] == "webhook"));
    for bad in ["?call_id=", "?call_id=call%2F1", "?kind=sms"] {
        let r = w.send(
            "GET",
            &format!("/v1/webhooks/deliveries{bad}"),
            Some(&key),
            None,
        );
        assert_eq!(
            (r.status, World::code(&r).as_str()),
            (400, "invalid_parameter"),
            "{bad}"
        );
    }
    // A cursor belongs to its filters: call_id is one of them.
    let first = w
        .send(
            "GET",
            &format!("/v1/webhooks/deliveries?limit=1&call_id={}", calls[0]),
            Some(&key),
            None,
        )
        .body_json();
    if let Some(cursor) = first["next_cursor"].as_str() {
        let r = w.send(
            "GET",
            &format!("/v1/webhooks/deliveries?limit=1&cursor={cursor}"),
            Some(&key),
            None,
        );
        assert_eq!(World::code(&r), "invalid_cursor");
    }
}
