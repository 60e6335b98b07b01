//! Customer tools (issue 18) over the in-memory ports: the agent's `tools`
//! setting and its secret, the offer carrying the tools without their URLs,
//! `POST /v1/sidecar/tool-calls` (only from the sidecar holding the call),
//! the signed POST to the tool's URL, the answer's codes, and the tool turn
//! in the call's transcript.

use super::{TestSidecar, World};
use crate::webhooks::signing;
use crate::webhooks::tool_calls::{ToolHttpError, ToolReply};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{paths, Offer, ToolCallAnswer};

const TOOL_URL: &str = "https://tools.example.com/orders";

fn tools_json() -> Value {
    json!([{"name": "lookup_order", "description": "Look up an order by its number",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                       "required": ["order"]},
        "url": TOOL_URL, "timeout_ms": 5000}])
}

/// A tenant whose default agent has the tool, a call of it leased and acked
/// by sidecar `sc`: (tenant, key, agent, tools secret, sidecar, call, offer).
fn call_with_tools(w: &World) -> (String, String, String, String, TestSidecar, String, Offer) {
    let (tid, key) = w.tenant(false);
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "shop", "default_engine": "openai_realtime", "tools": tools_json()})),
    );
    let aid = agent["id"].as_str().unwrap().to_string();
    let secret = agent["tools_secret"].as_str().unwrap().to_string();
    let sc = TestSidecar::create(w, "sc-tools");
    sc.send(
        w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 2, "version": "t"}),
    );
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100", "metadata": {"crm": 42}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let call_id = r.body_json()["id"].as_str().unwrap().to_string();
    let lease = sc.send(
        w,
        paths::LEASE,
        json!({"region": "local", "free_slots": 1, "held_calls": [], "wait_ms": 0}),
    );
    let raw_offer = lease["offers"][0].clone();
    // The URL (and the secret) never travel to the sidecar.
    assert!(
        !raw_offer.to_string().contains("tools.example.com"),
        "{raw_offer}"
    );
    let offer: Offer = serde_json::from_value(raw_offer).unwrap();
    sc.send(
        w,
        paths::ACK,
        json!({"lease_id": offer.lease_id, "call_id": call_id, "accepted": true}),
    );
    (tid, key, aid, secret, sc, call_id, offer)
}

fn ask(w: &World, sc: &TestSidecar, call_id: &str, name: &str, arguments: &str) -> ToolCallAnswer {
    let answer = sc.send(
        w,
        paths::TOOL_CALLS,
        json!({"call_id": call_id, "attempt": 1, "tool_call_id": "fc_1", "name": name,
               "arguments": arguments}),
    );
    serde_json::from_value(answer).unwrap()
}

#[test]
fn tools_are_validated_and_their_secret_is_shown_once() {
    let w = World::new();
    let (tid, _) = w.tenant(false);
    let agents = format!("/admin/tenants/{tid}/agents");
    let refused = |tools: Value| {
        let r = w.send(
            "POST",
            &agents,
            Some(super::ADMIN),
            Some(json!({"name": "x", "tools": tools})),
        );
        let e = r.body_json()["error"].clone();
        (
            r.status,
            e["code"].as_str().unwrap_or("").to_string(),
            e["field"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        refused(json!([{"name": "send_dtmf", "url": TOOL_URL}])),
        (422, "invalid_value".into(), "tools[0].name".into())
    );
    // Plain http and private hosts: the webhook URL guard (dev mode is off here).
    assert_eq!(
        refused(json!([{"name": "t", "url": "http://127.0.0.1:9/t"}])),
        (422, "invalid_url".into(), "tools[0].url".into())
    );
    assert_eq!(
        refused(json!([{"name": "t", "url": TOOL_URL, "timeout_ms": 50}])),
        (422, "out_of_range".into(), "tools[0].timeout_ms".into())
    );

    // No tools: no secret.
    let plain = w.admin("POST", &agents, Some(json!({"name": "plain"})));
    assert!(plain.get("tools_secret").is_none());
    assert_eq!(plain["tools_secret_set"], false);
    assert_eq!(plain["tools"], json!([]));
    let aid = plain["id"].as_str().unwrap();
    // The first tools mint the secret, shown in that answer only.
    let patched = w.admin(
        "PATCH",
        &format!("{agents}/{aid}"),
        Some(json!({"tools": tools_json()})),
    );
    let secret = patched["tools_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(patched["tools"][0]["url"], TOOL_URL);
    let got = w.admin("GET", &format!("{agents}/{aid}"), None);
    assert!(got.get("tools_secret").is_none(), "{got}");
    assert_eq!(got["tools_secret_set"], true);
    assert_eq!(got["tools"][0]["timeout_ms"], 5000);
    assert!(!got.to_string().contains(&secret));
    // Changing the tools keeps it; asking rotates it.
    let again = w.admin(
        "PATCH",
        &format!("{agents}/{aid}"),
        Some(json!({"tools": tools_json()})),
    );
    assert!(again.get("tools_secret").is_none());
    let rotated = w.admin(
        "PATCH",
        &format!("{agents}/{aid}"),
        Some(json!({"rotate_tools_secret": true})),
    );
    let new_secret = rotated["tools_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    // null removes the tools.
    let none = w.admin(
        "PATCH",
        &format!("{agents}/{aid}"),
        Some(json!({"tools": null})),
    );
    assert_eq!(none["tools"], json!([]));
}

#[test]
fn the_offer_carries_the_tools_and_the_edge_posts_the_call_signed() {
    let w = World::new();
    let (_tid, key, aid, secret, sc, call_id, offer) = call_with_tools(&w);
    assert_eq!(offer.tools.len(), 1);
    assert_eq!(offer.tools[0].name, "lookup_order");
    assert_eq!(offer.tools[0].parameters["required"], json!(["order"]));

    *w.tool_http.answer.borrow_mut() = Some(Ok(ToolReply {
        status: 200,
        body: br#"{"status":"shipped","eta":"Friday"}"#.to_vec(),
        too_large: false,
    }));
    let a = ask(&w, &sc, &call_id, "lookup_order", r#"{"order":"A-17"}"#);
    assert!(a.ok, "{a:?}");
    assert_eq!(
        a.output.as_deref(),
        Some(r#"{"status":"shipped","eta":"Friday"}"#)
    );

    let seen = w.tool_http.seen.borrow().clone();
    assert_eq!(seen.len(), 1);
    let (url, headers, body) = &seen[0];
    assert_eq!(url, TOOL_URL);
    let body_json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body_json,
        json!({"type": "tool.call", "call_id": call_id, "agent_id": aid, "tool_call_id": "fc_1",
               "name": "lookup_order", "arguments": {"order": "A-17"}, "metadata": {"crm": 42}})
    );
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let ts: u64 = header("webhook-timestamp").parse().unwrap();
    // Signed with the agent's tools secret, as a Standard Webhooks receiver checks.
    assert_eq!(
        header("webhook-signature"),
        signing::sign(&secret, &header("webhook-id"), ts, body.as_bytes()).unwrap()
    );

    // The sidecar reports the call and its result: a tool turn in the transcript.
    sc.events(
        &w,
        &call_id,
        &[
            json!({"type": "ringing"}),
            json!({"type": "answered"}),
            json!({"type": "tool_call", "tool_call_id": "fc_1", "name": "lookup_order",
                   "arguments": "{\"order\":\"A-17\"}", "ok": true,
                   "output": "{\"status\":\"shipped\"}", "start_ms": 2000, "end_ms": 2300}),
        ],
    );
    let t = w
        .send(
            "GET",
            &format!("/v1/calls/{call_id}/transcript"),
            Some(&key),
            None,
        )
        .body_json();
    assert_eq!(t["turns"][0]["role"], "tool", "{t}");
    assert_eq!(
        t["turns"][0]["text"],
        r#"lookup_order {"order":"A-17"} -> {"status":"shipped"}"#
    );
    assert!(
        t["text"].as_str().unwrap().contains("TOOL: lookup_order"),
        "{t}"
    );
}

#[test]
fn failures_are_answers_with_codes_and_only_the_holder_may_ask() {
    let w = World::new();
    let (_tid, _key, _aid, _secret, sc, call_id, _offer) = call_with_tools(&w);
    let code = |a: ToolCallAnswer| {
        assert!(!a.ok);
        a.error.unwrap().code
    };
    assert_eq!(
        code(ask(&w, &sc, &call_id, "cancel_order", "{}")),
        "tool_unknown"
    );
    assert_eq!(
        code(ask(&w, &sc, &call_id, "lookup_order", "[]")),
        "tool_bad_arguments"
    );
    *w.tool_http.answer.borrow_mut() = Some(Err(ToolHttpError::Timeout));
    assert_eq!(
        code(ask(&w, &sc, &call_id, "lookup_order", "{}")),
        "tool_timeout"
    );
    *w.tool_http.answer.borrow_mut() = Some(Ok(ToolReply {
        status: 503,
        body: Vec::new(),
        too_large: false,
    }));
    assert_eq!(
        code(ask(&w, &sc, &call_id, "lookup_order", "{}")),
        "tool_http_error"
    );
    // Only two of those reached the tool.
    assert_eq!(w.tool_http.seen.borrow().len(), 2);

    // Another sidecar, or another attempt: refused before any tool is asked.
    let other = TestSidecar::create(&w, "sc-other");
    // Nonces are per region: start this one's far from `sc`'s.
    other.nonce.set(1_000);
    other.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 2, "version": "t"}),
    );
    for (who, attempt) in [(&other, 1), (&sc, 2)] {
        let mut body = json!({"call_id": call_id, "attempt": attempt, "tool_call_id": "fc_9",
            "name": "lookup_order", "arguments": "{}", "protocol_version": 1});
        body["sidecar_id"] = json!(who.id);
        let req = who.signed(&w, paths::TOOL_CALLS, body.to_string().into_bytes());
        let r = w.send_req(&req);
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.body_json()["error"]["code"], "call_not_held");
    }
    // Oversized arguments are refused by the link (422, never retried).
    let mut body = json!({"call_id": call_id, "attempt": 1, "tool_call_id": "fc_9",
        "name": "lookup_order", "arguments": "x".repeat(20_000), "protocol_version": 1});
    body["sidecar_id"] = json!(sc.id);
    let r = w.send_req(&sc.signed(&w, paths::TOOL_CALLS, body.to_string().into_bytes()));
    assert_eq!(
        (r.status, World::code(&r)),
        (422, "value_too_long".to_string())
    );
    assert_eq!(w.tool_http.seen.borrow().len(), 2);
}

#[test]
fn every_tool_call_is_an_entry_of_the_delivery_log() {
    let w = World::new();
    let (_tid, key, _aid, _secret, sc, call_id, _offer) = call_with_tools(&w);
    *w.tool_http.answer.borrow_mut() = Some(Ok(ToolReply {
        status: 200,
        body: br#"{"status":"shipped"}"#.to_vec(),
        too_large: false,
    }));
    assert!(ask(&w, &sc, &call_id, "lookup_order", r#"{"order":"A-17"}"#).ok);
    *w.tool_http.answer.borrow_mut() = Some(Ok(ToolReply {
        status: 503,
        body: b"maintenance".to_vec(),
        too_large: false,
    }));
    assert!(!ask(&w, &sc, &call_id, "lookup_order", r#"{"order":"B-2"}"#).ok);
    // Nothing sent: an unknown tool is an entry too, with why.
    assert!(!ask(&w, &sc, &call_id, "cancel_order", "{}").ok);

    let list = |query: &str| -> Vec<Value> {
        let r = w.send(
            "GET",
            &format!("/v1/webhooks/deliveries{query}"),
            Some(&key),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body_json()["data"].as_array().unwrap().clone()
    };
    let tools = list("?kind=tool_call");
    assert_eq!(tools.len(), 3, "{tools:?}");
    assert!(tools.iter().all(|d| d["call_id"] == json!(call_id)
        && d["kind"] == "tool_call"
        && d["event_type"] == "tool.call"
        && d["endpoint_id"].is_null()));
    // Newest first: the unknown tool, the 503, the answer.
    let statuses: Vec<&str> = tools
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "delivered"]);
    assert_eq!(list(&format!("?call_id={call_id}&kind=tool_call")).len(), 3);
    assert!(list("?kind=webhook").iter().all(|d| d["kind"] == "webhook"));
    assert_eq!(list("?event=tool.call").len(), 3);

    let get = |d: &Value| {
        w.send(
            "GET",
            &format!("/v1/webhooks/deliveries/{}", d["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .body_json()
    };
    // The answered call: URL, status, the answer's start, latency, attempt 1, the body sent.
    let ok = get(&tools[2]);
    let a = &ok["attempts"][0];
    assert_eq!(
        (
            &a["attempt"],
            &a["url"],
            &a["status_code"],
            &a["response_snippet"]
        ),
        (
            &json!(1),
            &json!(TOOL_URL),
            &json!(200),
            &json!(r#"{"status":"shipped"}"#)
        )
    );
    assert!(a["duration_ms"].is_u64(), "{ok}");
    assert_eq!(ok["payload"]["arguments"], json!({"order": "A-17"}));
    assert_eq!(ok["payload"]["type"], "tool.call");
    assert!(ok["event_id"].as_str().unwrap().starts_with("msg_"));
    let seen = w.tool_http.seen.borrow()[0].clone();
    assert!(seen
        .1
        .iter()
        .any(|(k, v)| k == "webhook-id" && *v == ok["event_id"]));
    // The refused one keeps the tool's answer and the code the engine got.
    let refused = get(&tools[1]);
    assert_eq!(refused["attempts"][0]["status_code"], 503);
    assert_eq!(refused["attempts"][0]["response_snippet"], "maintenance");
    assert!(refused["last_error"]
        .as_str()
        .unwrap()
        .starts_with("tool_http_error"));
    let unknown = get(&tools[0]);
    assert!(unknown["payload"].is_null(), "{unknown}");
    assert!(unknown["attempts"][0]["status_code"].is_null());
    assert!(unknown["last_error"]
        .as_str()
        .unwrap()
        .starts_with("tool_unknown"));

    // Made once during the call: never sent again.
    let r = w.send(
        "POST",
        &format!(
            "/v1/webhooks/deliveries/{}/redeliver",
            tools[2]["id"].as_str().unwrap()
        ),
        Some(&key),
        None,
    );
    assert_eq!(
        (r.status, r.body_json()["error"]["code"].clone()),
        (409, json!("not_redeliverable"))
    );
    assert_eq!(w.tool_http.seen.borrow().len(), 2);
}
