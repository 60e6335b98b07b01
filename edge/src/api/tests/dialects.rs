//! The seed APIs served (issue 13): credentials minted by the admin API, each
//! dialect's request placing a call on the native pipeline, and each
//! documented error reached.

use super::World;
use crate::http::{ApiRequest, ApiResponse};
use crate::model::{keys, CallRecord};
use futures::executor::block_on;
use serde_json::{json, Value};

pub(super) fn request(path: &str, headers: &[(&str, &str)], body: &str) -> ApiRequest {
    ApiRequest {
        method: "POST".into(),
        scheme: "https".into(),
        path: path.into(),
        query: String::new(),
        content_type: Some("application/json".into()),
        authorization: headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.to_string()),
        body: body.as_bytes().to_vec(),
        headers: headers
            .iter()
            .filter(|(h, _)| !h.eq_ignore_ascii_case("authorization"))
            .map(|(h, v)| (h.to_ascii_lowercase(), v.to_string()))
            .collect(),
    }
}

pub(super) fn hmac_hex(key: &str, body: &str) -> String {
    crate::dialects::post_call::hex_hmac_sha256(key.as_bytes(), body.as_bytes())
}

/// A tenant with one agent; returns (tenant id, agent id, native API key).
pub(super) fn tenant_with_agent(w: &World) -> (String, String, String) {
    let (tid, key) = w.tenant(true);
    let agents = w.admin("GET", &format!("/admin/tenants/{tid}/agents"), None);
    let aid = agents["data"][0]["id"].as_str().unwrap().to_string();
    (tid, aid, key)
}

pub(super) fn mint(w: &World, tid: &str, body: Value) -> Value {
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/dialect-keys"),
        Some(super::ADMIN),
        Some(body),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.body_json()
}

pub(super) fn call_of(w: &World, tid: &str, r: &ApiResponse, id_field: &str) -> CallRecord {
    let body = r.body_json();
    let id = body
        .pointer(id_field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {id_field} in {}", r.body));
    use crate::calls::store::Calls;
    block_on(w.calls.get(tid, id))
        .unwrap()
        .expect("the call exists")
}

#[test]
fn voiceb_places_a_signed_call_and_answers_its_error_table() {
    let w = World::new();
    let (tid, aid, native_key) = tenant_with_agent(&w);
    let cred = mint(
        &w,
        &tid,
        json!({"dialect": "voiceb", "agent_id": aid, "name": "site"}),
    );
    assert_eq!(cred["dialect"], "voiceb");
    assert_eq!(cred["agent_id"], aid.as_str());
    let token = cred["token"].as_str().unwrap().to_string();
    let secret = cred["secret"].as_str().unwrap().to_string();
    // The document's Python sample sends json.dumps: a space after the colon.
    let body = r#"{"phone": "+34612345678"}"#;
    let sig = hmac_hex(&secret, body);
    let send = |headers: &[(&str, &str)], body: &str| {
        w.send_req(&request("/api/click-to-call", headers, body))
    };
    let r = send(&[("api-key", &token), ("signature", &sig)], body);
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.body_json();
    assert_eq!(answer["success"], true);
    assert_eq!(answer["status"], "queued");
    let call = call_of(&w, &tid, &r, "/call_id");
    assert_eq!(call.phone, "+34612345678");
    assert_eq!(call.agent_id, aid);
    assert!(!call.record, "VoiceB's calls are not recorded");
    let placed = call.placed_with.clone().expect("placed_with");
    assert_eq!(placed.dialect, crate::dialects::Dialect::VoiceB);
    assert_eq!(placed.key_id, cred["id"].as_str().unwrap());
    // Not part of the public call.
    let public = w.send(
        "GET",
        &format!("/v1/calls/{}", call.id),
        Some(&native_key),
        None,
    );
    assert_eq!(public.status, 200, "{}", public.body);
    assert!(!public.body.contains("placed_with"), "{}", public.body);

    let ctc = |r: &ApiResponse| {
        (
            r.status,
            r.body_json()["code"].as_str().unwrap_or("").to_string(),
        )
    };
    // ctc:007: the same request again while the call is queued (not a replay refusal).
    let r = send(&[("api-key", &token), ("signature", &sig)], body);
    assert_eq!(ctc(&r), (400, "ctc:007".into()), "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"code":"ctc:007","message":"Call already in progress"}"#
    );
    // ctc:001: a header missing.
    assert_eq!(
        ctc(&send(&[("api-key", &token)], body)),
        (400, "ctc:001".into())
    );
    // ctc:003: an unknown key (checked before the signature).
    assert_eq!(
        ctc(&send(&[("api-key", "vbk_nope"), ("signature", "00")], body)),
        (403, "ctc:003".into())
    );
    // ctc:006: the signature of another body.
    let other = r#"{"phone": "+34612345679"}"#;
    assert_eq!(
        ctc(&send(&[("api-key", &token), ("signature", &sig)], other)),
        (403, "ctc:006".into())
    );
    // ctc:009 (ours): a body without a usable number, signed.
    let bad = r#"{"phone": "12"}"#;
    assert_eq!(
        ctc(&send(
            &[("api-key", &token), ("signature", &hmac_hex(&secret, bad))],
            bad
        )),
        (400, "ctc:009".into())
    );
    // Lenient numbers: spaces and a leading 00.
    let spaced = r#"{"phone":"0034 612 345 670"}"#;
    let r = send(
        &[
            ("api-key", &token),
            ("signature", &hmac_hex(&secret, spaced)),
        ],
        spaced,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(call_of(&w, &tid, &r, "/call_id").phone, "+34612345670");
    // ctc:004: the agent disabled.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"enabled": false})),
    );
    let fresh = r#"{"phone":"+34612345671"}"#;
    let signed = [
        ("api-key", token.as_str()),
        ("signature", &hmac_hex(&secret, fresh)),
    ];
    assert_eq!(ctc(&send(&signed, fresh)), (400, "ctc:004".into()));
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"enabled": true})),
    );
    // ctc:002: the agent's record cannot be read.
    let agent_key = keys::agent(&tid, &aid);
    let saved = w.kv.map.borrow().get(&agent_key).cloned().unwrap();
    w.kv.map
        .borrow_mut()
        .insert(agent_key.clone(), ("not json".into(), None));
    assert_eq!(ctc(&send(&signed, fresh)), (500, "ctc:002".into()));
    // ctc:005: the agent is gone.
    w.kv.map.borrow_mut().remove(&agent_key);
    assert_eq!(ctc(&send(&signed, fresh)), (400, "ctc:005".into()));
    w.kv.map.borrow_mut().insert(agent_key, saved);
    // ctc:008: the secret cannot be opened (the deployment lost its sealing key).
    let mut w = w;
    w.sealing = None;
    let r = w.send_req(&request("/api/click-to-call", &signed, fresh));
    assert_eq!(ctc(&r), (500, "ctc:008".into()));
    // Revoked: ctc:003.
    w.sealing = World::new().sealing;
    let kid = cred["id"].as_str().unwrap();
    w.admin(
        "DELETE",
        &format!("/admin/tenants/{tid}/dialect-keys/{kid}"),
        None,
    );
    let r = w.send_req(&request("/api/click-to-call", &signed, fresh));
    assert_eq!(ctc(&r), (403, "ctc:003".into()));
    let listed = w.admin("GET", &format!("/admin/tenants/{tid}/dialect-keys"), None);
    assert_eq!(listed["data"][0]["id"], kid);
    assert!(listed["data"][0]["revoked_at"].is_string());
    assert!(!listed.to_string().contains(&token), "never the token");
}

#[test]
fn buildvoiceai_places_calls_and_honours_the_api_access_switch() {
    let w = World::new();
    let (tid, aid, native_key) = tenant_with_agent(&w);
    let cred = mint(&w, &tid, json!({"dialect": "buildvoiceai"}));
    assert_eq!(cred["agent_id"], Value::Null);
    assert_eq!(cred["secret"], Value::Null);
    let bearer = format!("Bearer {}", cred["token"].as_str().unwrap());
    let send = |body: &str| {
        w.send_req(&request(
            "/api/trigger-call",
            &[("Authorization", bearer.as_str())],
            body,
        ))
    };
    // The document's curl body, with the default agent (no agent_id).
    let r = send(
        r#"{ "phone": "+15551234567", "name": "Jane Smith", "email": "jane@example.com", "metadata": {"source": "your-custom-field"} }"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body_json()["success"], true);
    let call = call_of(&w, &tid, &r, "/call_id");
    assert_eq!(call.agent_id, aid);
    assert_eq!(call.name.as_deref(), Some("Jane Smith"));
    assert_eq!(
        call.metadata.as_ref().map(|m| m.raw().get().to_string()),
        Some(r#"{"source":"your-custom-field"}"#.to_string())
    );
    // agent_id named explicitly.
    let r = send(&format!(r#"{{"phone":"+15551234568","agent_id":"{aid}"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let failed = |r: &ApiResponse| {
        (
            r.status,
            r.body_json()["error"].as_str().unwrap_or("").to_string(),
        )
    };
    // Not E.164: 400 in the document's {success, error} shape.
    let (status, message) = failed(&send(r#"{"phone":"555 1234"}"#));
    assert_eq!(status, 400);
    assert!(message.contains("E.164"), "{message}");
    // An agent of nobody.
    let r = send(r#"{"phone":"+15551234569","agent_id":"agt_00000000000000000000"}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body_json()["success"], false);
    // A wrong key: 403.
    let r = w.send_req(&request(
        "/api/trigger-call",
        &[("Authorization", "Bearer bvai_wrong")],
        r#"{"phone":"+15551234569"}"#,
    ));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        r#"{"success":false,"error":"Forbidden: invalid API key or API access is disabled"}"#
    );
    // API access off: 403 here, and the native API key too; on again: placed.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"api_access": false})),
    );
    assert_eq!(send(r#"{"phone":"+15551234569"}"#).status, 403);
    let native = w.send("GET", "/v1/calls", Some(&native_key), None);
    assert_eq!(native.status, 403);
    assert_eq!(World::code(&native), "api_access_disabled");
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"api_access": true})),
    );
    assert_eq!(send(r#"{"phone":"+15551234569"}"#).status, 200);
    // Tenant credentials take no agent_id.
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/dialect-keys"),
        Some(super::ADMIN),
        Some(json!({"dialect": "buildvoiceai", "agent_id": aid})),
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (422, "invalid_value".to_string())
    );
}

#[test]
fn calldock_places_calls_for_its_agent_only_and_limits_them() {
    let w = World::new();
    let (tid, aid, _) = tenant_with_agent(&w);
    let cred = mint(&w, &tid, json!({"dialect": "calldock", "agent_id": aid}));
    let key = cred["token"].as_str().unwrap().to_string();
    assert!(key.starts_with("ck_live_") && key.len() == 40, "{key}");
    let send = |agent: &str, body: &str| {
        w.send_req(&request(
            "/v1/make-call",
            &[("X-API-Key", key.as_str()), ("X-Agent-ID", agent)],
            body,
        ))
    };
    let r = send(
        &aid,
        r#"{ "name": "John Doe", "email": "john@example.com", "phone": "+1 (415) 555-0100", "metadata": { "source": "website", "campaign": "summer-promo" } }"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.body_json();
    assert_eq!(answer["success"], true);
    assert_eq!(answer["data"]["status"], "initiated");
    assert!(answer["data"]["timestamp"].as_str().unwrap().ends_with('Z'));
    let call = call_of(&w, &tid, &r, "/data/callId");
    assert_eq!(call.phone, "+14155550100");
    assert!(call.record, "Calldock records every call");
    let code = |r: &ApiResponse| {
        (
            r.status,
            r.body_json()["error"]["code"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    // The same number while the call is queued.
    let r = send(&aid, r#"{"phone":"+14155550100"}"#);
    assert_eq!(code(&r), (400, "call_in_progress".into()), "{}", r.body);
    // Another agent's id with this key, or none: 401.
    let other_agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "b"})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        code(&send(&other_agent, r#"{"phone":"+14155550101"}"#)).0,
        401
    );
    let r = w.send_req(&request(
        "/v1/make-call",
        &[("X-API-Key", key.as_str())],
        r#"{"phone":"+14155550101"}"#,
    ));
    assert_eq!(code(&r), (401, "unauthorized".into()));
    // Missing phone: 400.
    assert_eq!(
        code(&send(&aid, r#"{"name":"x"}"#)),
        (400, "bad_request".into())
    );
    // The tenant's per-key limit: 429 with Retry-After.
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"rate_limits": {"per_key": {"limit": 1, "window_seconds": 3600}}})),
    );
    let first = send(&aid, r#"{"phone":"+14155550102"}"#);
    assert_eq!(first.status, 200, "{}", first.body);
    let r = send(&aid, r#"{"phone":"+14155550103"}"#);
    assert_eq!(code(&r), (429, "rate_limited".into()));
    assert!(r.headers.iter().any(|(h, _)| h == "Retry-After"));
    // Another dialect's token never authenticates here.
    let bvi = mint(&w, &tid, json!({"dialect": "buildvoiceai"}));
    let r = w.send_req(&request(
        "/v1/make-call",
        &[
            ("X-API-Key", bvi["token"].as_str().unwrap()),
            ("X-Agent-ID", &aid),
        ],
        r#"{"phone":"+14155550104"}"#,
    ));
    assert_eq!(r.status, 401);
    // Agent-scoped dialects need an agent, and an existing one.
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/dialect-keys"),
        Some(super::ADMIN),
        Some(json!({"dialect": "calldock"})),
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (422, "missing_field".to_string())
    );
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/dialect-keys"),
        Some(super::ADMIN),
        Some(json!({"dialect": "calldock", "agent_id": "agt_00000000000000000000"})),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn wrong_dialect_credentials_count_against_the_address() {
    let w = World::new();
    let mut last = None;
    for _ in 0..(crate::traffic::AUTH_FAILURES.limit + 1) {
        last = Some(w.send_req(&request(
            "/api/trigger-call",
            &[("Authorization", "Bearer bvai_guess")],
            r#"{"phone":"+15551234567"}"#,
        )));
    }
    let r = last.unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body_json()["success"], false);
    assert!(r.headers.iter().any(|(h, _)| h == "Retry-After"));
}

#[test]
fn dialect_paths_take_post_only() {
    let w = World::new();
    let r = w.send("GET", "/api/click-to-call", None, None);
    assert_eq!(r.status, 405);
    assert!(r.headers.contains(&("Allow".into(), "POST".into())));
}

#[test]
fn an_agents_per_ip_limit_holds_on_dialect_and_native_calls() {
    let w = World::new();
    let (tid, aid, native_key) = tenant_with_agent(&w);
    let agent = w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"per_ip_limit": {"limit": 1, "window_seconds": 3600}})),
    );
    assert_eq!(
        agent["per_ip_limit"],
        json!({"limit": 1, "window_seconds": 3600})
    );
    let cred = mint(&w, &tid, json!({"dialect": "calldock", "agent_id": aid}));
    let key = cred["token"].as_str().unwrap().to_string();
    let from = |ip: &str, phone: &str| {
        w.send_req(&request(
            "/v1/make-call",
            &[
                ("X-API-Key", key.as_str()),
                ("X-Agent-ID", aid.as_str()),
                ("CF-Connecting-IP", ip),
            ],
            &format!(r#"{{"phone":"{phone}"}}"#),
        ))
    };
    assert_eq!(from("198.51.100.7", "+14155550110").status, 200);
    let r = from("198.51.100.7", "+14155550111");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body_json()["error"]["code"], "rate_limited");
    assert_eq!(from("198.51.100.8", "+14155550112").status, 200);
    // The same agent through the native API, from the spent address.
    let mut req = request(
        "/v1/calls",
        &[
            ("Authorization", &format!("Bearer {native_key}")),
            ("CF-Connecting-IP", "198.51.100.7"),
        ],
        r#"{"phone":"+14155550113"}"#,
    );
    req.content_type = Some("application/json".into());
    let r = w.send_req(&req);
    assert_eq!(
        (r.status, World::code(&r)),
        (429, "rate_limited".into()),
        "{}",
        r.body
    );
}

#[test]
fn wrong_voiceb_signatures_count_against_the_address() {
    let w = World::new();
    let (tid, aid, _) = tenant_with_agent(&w);
    let cred = mint(&w, &tid, json!({"dialect": "voiceb", "agent_id": aid}));
    let token = cred["token"].as_str().unwrap().to_string();
    let body = r#"{"phone":"+34612345678"}"#;
    let mut codes = Vec::new();
    for _ in 0..(crate::traffic::AUTH_FAILURES.limit + 1) {
        let r = w.send_req(&request(
            "/api/click-to-call",
            &[("api-key", token.as_str()), ("signature", "00")],
            body,
        ));
        codes.push((
            r.status,
            r.body_json()["code"].as_str().unwrap_or("").to_string(),
        ));
    }
    assert_eq!(codes[0], (403, "ctc:006".into()));
    assert_eq!(codes.last().unwrap(), &(429, "ctc:010".into()), "{codes:?}");
}
