//! Campaigns over the in-memory ports: create from JSON and CSV (bad rows
//! reported by number), start, the alarm placing ordinary calls at the
//! pacing rate, pause, cancel, counts, and `campaign.completed` once.

use super::World;
use crate::http::{ApiRequest, ApiResponse};
use futures::executor::block_on;
use serde_json::{json, Value};

/// A tenant with an agent, an API key and a native endpoint for every event.
fn tenant(w: &World) -> String {
    let (tid, key) = w.tenant(true);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/c"})),
    );
    w.outbox.take();
    key
}

fn csv_request(key: &str, query: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: "POST".into(),
        scheme: "https".into(),
        path: "/v1/campaigns".into(),
        query: query.into(),
        content_type: Some("text/csv; charset=utf-8".into()),
        authorization: Some(format!("Bearer {key}")),
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

fn ok(r: ApiResponse, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    r.body_json()
}

/// What the campaign object's alarm does, at the current clock.
fn alarm(w: &World, id: &str) {
    w.with_env(|env| block_on(crate::api::campaigns::run_alarm(env, id)))
        .unwrap();
}

/// The tenant's calls of this campaign, oldest first.
fn campaign_calls(w: &World, key: &str, id: &str) -> Vec<Value> {
    let list = ok(w.send("GET", "/v1/calls?limit=100", Some(key), None), 200);
    let mut calls: Vec<Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let cid = c["id"].as_str().unwrap();
            ok(
                w.send("GET", &format!("/v1/calls/{cid}"), Some(key), None),
                200,
            )
        })
        .filter(|c| c["campaign_id"] == id)
        .collect();
    calls.reverse();
    calls
}

#[test]
fn bad_rows_are_reported_by_number_and_nothing_is_created() {
    let w = World::new();
    let key = tenant(&w);
    let r = w.send(
        "POST",
        "/v1/campaigns",
        Some(&key),
        Some(json!({"contacts": [
            {"phone": "+14155550100"},
            {"phone": "555-0101"},
            {"phone": "+14155550100", "name": "again"},
            {"name": "no phone"},
            {"phone": "+14155550104", "surname": "x"}
        ]})),
    );
    let e = ok(r, 422);
    assert_eq!(e["error"]["code"], "invalid_contacts");
    let rows: Vec<(u64, &str)> = e["error"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["row"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (2, "invalid_phone_number"),
            (3, "invalid_value"),
            (4, "missing_field"),
            (5, "unknown_field")
        ]
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("4 contact row"));
    let list = ok(w.send("GET", "/v1/campaigns", Some(&key), None), 200);
    assert_eq!(list["data"], json!([]));
    // A CSV's rows are its lines: the header is line 1.
    let body = "phone,name,crm_id\n+14155550100,Ada,7\nnot-a-number,Bob,8\n+14155550102,Cy\n";
    let e = ok(w.send_req(&csv_request(&key, "", body)), 422);
    let rows: Vec<u64> = e["error"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![3, 4], "{e}");
    let e = ok(w.send_req(&csv_request(&key, "", "name\nAda\n")), 422);
    assert_eq!(e["error"]["code"], "missing_field");
}

#[test]
fn a_csv_campaign_dials_at_its_pacing_rate_with_pause_and_resume() {
    let w = World::new();
    let key = tenant(&w);
    let body = "Phone,Name,crm_id,city\n+14155550100,Ada,7,Paris\n\"+14155550101\",\"Bob, Jr.\",8,\n+14155550102,,9,Rome\n";
    let c = ok(
        w.send_req(&csv_request(
            &key,
            "name=spring&calls_per_minute=2&max_concurrent_calls=5&retries=1",
            body,
        )),
        201,
    );
    let id = c["id"].as_str().unwrap().to_string();
    assert!(crate::ids::is_id(&id, "cmp"), "{id}");
    assert_eq!(
        (
            c["status"].as_str(),
            c["name"].as_str(),
            c["calls_per_minute"].as_u64()
        ),
        (Some("created"), Some("spring"), Some(2))
    );
    assert_eq!(c["counts"]["total"], 3);
    assert_eq!(c["counts"]["pending"], 3);
    // Not started: the alarm dials nothing.
    alarm(&w, &id);
    assert!(campaign_calls(&w, &key, &id).is_empty());
    let started = ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{id}/start"),
            Some(&key),
            None,
        ),
        200,
    );
    assert_eq!(started["status"], "running");
    let t0 = w.now.get();
    assert_eq!(w.campaigns.alarm(&id), Some(t0), "due at once");
    alarm(&w, &id);
    let calls = campaign_calls(&w, &key, &id);
    assert_eq!(calls.len(), 1);
    let first = &calls[0];
    assert_eq!(first["phone"], "+14155550100");
    assert_eq!(first["name"], "Ada");
    assert_eq!(first["metadata"], json!({"crm_id": "7", "city": "Paris"}));
    assert_eq!(first["retries"], 1);
    assert_eq!(first["status"], "queued");
    // Two a minute: nothing before 30 s have passed, then the next one.
    let next = w.campaigns.alarm(&id).unwrap();
    assert_eq!(next, t0 + 30_000);
    alarm(&w, &id);
    assert_eq!(campaign_calls(&w, &key, &id).len(), 1);
    w.now.set(next);
    alarm(&w, &id);
    let calls = campaign_calls(&w, &key, &id);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["name"], "Bob, Jr.");
    assert_eq!(calls[1]["metadata"], json!({"crm_id": "8"}));
    // Paused: no new call however late.
    ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{id}/pause"),
            Some(&key),
            None,
        ),
        200,
    );
    w.now.set(next + 120_000);
    alarm(&w, &id);
    assert_eq!(campaign_calls(&w, &key, &id).len(), 2);
    assert_eq!(w.campaigns.alarm(&id), None);
    let e = ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{id}/start"),
            Some(&key),
            None,
        ),
        409,
    );
    assert_eq!(e["error"]["code"], "campaign_state_conflict");
    ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{id}/resume"),
            Some(&key),
            None,
        ),
        200,
    );
    alarm(&w, &id);
    assert_eq!(campaign_calls(&w, &key, &id).len(), 3);
    let v = ok(
        w.send("GET", &format!("/v1/campaigns/{id}"), Some(&key), None),
        200,
    );
    assert_eq!(
        (
            v["counts"]["in_flight"].as_u64(),
            v["counts"]["pending"].as_u64()
        ),
        (Some(3), Some(0))
    );
}

#[test]
fn every_call_is_an_ordinary_call_and_completion_is_sent_once() {
    let w = World::new();
    let key = tenant(&w);
    let c = ok(
        w.send(
            "POST",
            "/v1/campaigns",
            Some(&key),
            Some(json!({"name": "two", "calls_per_minute": 600, "max_concurrent_calls": 1,
                "contacts": [{"phone": "+14155550100", "metadata": {"crm": 1.50}}, {"phone": "+14155550101"}]})),
        ),
        201,
    );
    let id = c["id"].as_str().unwrap().to_string();
    ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{id}/start"),
            Some(&key),
            None,
        ),
        200,
    );
    alarm(&w, &id);
    // The concurrency cap (1): the second waits for the first to end.
    w.now.set(w.now.get() + 60_000);
    alarm(&w, &id);
    let calls = campaign_calls(&w, &key, &id);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["metadata"], json!({"crm": 1.50}));
    assert_eq!(
        w.campaigns.alarm(&id),
        None,
        "at the cap: only an end wakes it"
    );
    // Its webhooks carry the campaign id.
    let queued: Vec<Value> = w
        .outbox
        .take()
        .into_iter()
        .filter(|j| j.event_type == "call.queued")
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .collect();
    assert_eq!(queued[0]["data"]["campaign_id"], id.as_str());
    let cid = calls[0]["id"].as_str().unwrap();
    ok(
        w.send("POST", &format!("/v1/calls/{cid}/hangup"), Some(&key), None),
        200,
    );
    // The end reached the campaign (the call store's notice): the next one is due.
    assert!(w.campaigns.alarm(&id).is_some());
    alarm(&w, &id);
    let calls = campaign_calls(&w, &key, &id);
    assert_eq!(calls.len(), 2);
    let cid2 = calls[1]["id"].as_str().unwrap();
    assert!(w
        .outbox
        .take()
        .iter()
        .all(|j| j.event_type != "campaign.completed"));
    ok(
        w.send(
            "POST",
            &format!("/v1/calls/{cid2}/hangup"),
            Some(&key),
            None,
        ),
        200,
    );
    let completed: Vec<Value> = w
        .outbox
        .take()
        .into_iter()
        .filter(|j| j.event_type == "campaign.completed")
        .map(|j| {
            assert_eq!(j.call_id, None, "about a campaign, not a call");
            serde_json::from_str(&j.payload).unwrap()
        })
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["data"]["id"], id.as_str());
    assert_eq!(completed[0]["data"]["status"], "completed");
    assert_eq!(completed[0]["data"]["counts"]["cancelled"], 2);
    // Nothing more, whatever happens after.
    ok(
        w.send(
            "POST",
            &format!("/v1/calls/{cid2}/hangup"),
            Some(&key),
            None,
        ),
        200,
    );
    alarm(&w, &id);
    assert!(w
        .outbox
        .take()
        .iter()
        .all(|j| j.event_type != "campaign.completed"));
    let v = ok(
        w.send("GET", &format!("/v1/campaigns/{id}"), Some(&key), None),
        200,
    );
    assert_eq!(v["status"], "completed");
    assert!(v["finished_at"].is_string());
}

#[test]
fn cancel_skips_the_rest_and_listing_and_tenants_are_separate() {
    let w = World::new();
    let key = tenant(&w);
    let other = tenant(&w);
    let make = |n: usize| {
        let contacts: Vec<Value> = (0..n)
            .map(|i| json!({"phone": format!("+1415555{:04}", 300 + i)}))
            .collect();
        ok(
            w.send(
                "POST",
                "/v1/campaigns",
                Some(&key),
                Some(json!({"contacts": contacts})),
            ),
            201,
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = make(3);
    let b = make(1);
    ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{a}/start"),
            Some(&key),
            None,
        ),
        200,
    );
    alarm(&w, &a);
    let v = ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{a}/cancel"),
            Some(&key),
            None,
        ),
        200,
    );
    assert_eq!(v["status"], "cancelled");
    assert_eq!(
        (
            v["counts"]["skipped"].as_u64(),
            v["counts"]["in_flight"].as_u64()
        ),
        (Some(2), Some(1))
    );
    w.now.set(w.now.get() + 3_600_000);
    alarm(&w, &a);
    assert_eq!(
        campaign_calls(&w, &key, &a).len(),
        1,
        "nothing after cancel"
    );
    let e = ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{a}/resume"),
            Some(&key),
            None,
        ),
        409,
    );
    assert_eq!(e["error"]["code"], "campaign_state_conflict");
    // Newest first, a page at a time.
    let page = ok(
        w.send("GET", "/v1/campaigns?limit=1", Some(&key), None),
        200,
    );
    assert_eq!(page["data"][0]["id"], b.as_str());
    let cursor = page["next_cursor"].as_str().unwrap();
    let page2 = ok(
        w.send(
            "GET",
            &format!("/v1/campaigns?limit=1&cursor={cursor}"),
            Some(&key),
            None,
        ),
        200,
    );
    assert_eq!(page2["data"][0]["id"], a.as_str());
    assert_eq!(page2["has_more"], false);
    // Another tenant sees none of it.
    for path in [
        format!("/v1/campaigns/{a}"),
        "/v1/campaigns/cmp_nope".into(),
    ] {
        let e = ok(w.send("GET", &path, Some(&other), None), 404);
        assert_eq!(e["error"]["code"], "campaign_not_found");
    }
    let e = ok(
        w.send(
            "POST",
            &format!("/v1/campaigns/{a}/pause"),
            Some(&other),
            None,
        ),
        404,
    );
    assert_eq!(e["error"]["code"], "campaign_not_found");
    assert_eq!(
        ok(w.send("GET", "/v1/campaigns", Some(&other), None), 200)["data"],
        json!([])
    );
}

/// The document lets every setting come as a query parameter whatever the
/// content type: with a JSON body they add to the body's, and one given in
/// both places is refused rather than silently picking one.
#[test]
fn a_json_campaign_takes_settings_from_the_query_string_once() {
    let w = World::new();
    let key = tenant(&w);
    let json_request = |query: &str, body: Value| ApiRequest {
        method: "POST".into(),
        scheme: "https".into(),
        path: "/v1/campaigns".into(),
        query: query.into(),
        content_type: Some("application/json".into()),
        authorization: Some(format!("Bearer {key}")),
        body: body.to_string().into_bytes(),
        headers: Vec::new(),
    };
    let contacts = json!([{"phone": "+14155550401"}]);
    let c = ok(
        w.send_req(&json_request(
            "name=from-query&calls_per_minute=7",
            json!({"contacts": contacts, "max_concurrent_calls": 2}),
        )),
        201,
    );
    assert_eq!(
        (
            &c["name"],
            &c["calls_per_minute"],
            &c["max_concurrent_calls"]
        ),
        (&json!("from-query"), &json!(7), &json!(2)),
        "{c}"
    );
    let r = w.send_req(&json_request(
        "calls_per_minute=7",
        json!({"contacts": contacts, "calls_per_minute": 8}),
    ));
    assert_eq!(r.status, 422, "{}", r.body);
    let e = r.body_json()["error"].clone();
    assert_eq!(
        (e["code"].as_str(), e["field"].as_str()),
        (Some("invalid_value"), Some("calls_per_minute"))
    );
    // Unknown query parameters are still refused.
    let r = w.send_req(&json_request("colour=blue", json!({"contacts": contacts})));
    assert_eq!(r.status, 400, "{}", r.body);
}
