//! End-to-end: the public call API and the admin API against real `wrangler dev`.
//!
//! One `wrangler dev` (workerd + local KV) serves the whole suite; cases run in
//! order and each provisions the tenants it needs, so they do not depend on one
//! another (except `z_error_code_coverage` and `z_secrets_never_stored_in_clear`,
//! which look back over everything the earlier cases did).
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use voxline_e2e::*;

// ---------------------------------------------------------------- helpers --

const PHONE: &str = "+14155550100";
const JSON_CT: &str = "application/json";

/// Every error code a case has asserted, for `z_error_code_coverage`.
static SEEN_CODES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Every clear API key minted during the run, for `z_secrets_never_stored_in_clear`.
static MINTED_KEYS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Asserts the one error shape, status, code and `field` (None = JSON null).
#[track_caller]
fn err(r: Resp, status: u16, code: &str, field: Option<&str>) -> Resp {
    let copy = r.clone();
    assert_eq!(
        copy.header("content-type"),
        Some("application/json"),
        "error content-type; body: {}",
        copy.text
    );
    let got = r.expect_error(status, code);
    assert_eq!(got.as_deref(), field, "error field; body: {}", copy.text);
    SEEN_CODES.lock().unwrap().insert(code.to_string());
    copy
}

fn remember_key(key: &str) {
    MINTED_KEYS.lock().unwrap().push(key.to_string());
}

/// Tenant + default agent + API key (the harness helper), remembering the key.
fn tenant(edge: &Edge, name: &str) -> TestTenant {
    let t = edge.provision_tenant(name);
    remember_key(&t.key);
    t
}

/// A tenant with no agent at all, and an API key. Returns (tenant id, key).
fn bare_tenant(edge: &Edge, name: &str) -> (String, String) {
    let t = edge
        .admin("POST", "/admin/tenants", Some(&json!({"name": name})))
        .expect(201);
    let tid = str_of(&t.json["id"]);
    let k = new_key(edge, &tid);
    (tid, k)
}

fn new_key(edge: &Edge, tid: &str) -> String {
    let k = edge
        .admin(
            "POST",
            &format!("/admin/tenants/{tid}/api-keys"),
            Some(&json!({"name": "extra"})),
        )
        .expect(201);
    let key = str_of(&k.json["key"]);
    remember_key(&key);
    key
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// A number no earlier call of the run used: one call at a time per agent
/// and number (409 `call_in_progress`), and calls here stay queued.
fn unique_phone() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "+1415556{:04}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// `{"phone": <unique number>}` merged with `extra` (an object).
fn call_body(extra: Value) -> Value {
    let mut b = json!({"phone": unique_phone()});
    for (k, v) in extra.as_object().expect("object") {
        b[k] = v.clone();
    }
    b
}

fn post_call(edge: &Edge, key: &str, body: Value) -> Resp {
    edge.call("POST", "/v1/calls", key, Some(&body))
}

fn new_call(edge: &Edge, key: &str, extra: Value) -> Value {
    post_call(edge, key, call_body(extra)).expect(201).json
}

/// POST with raw bytes and an explicit (or absent) content type.
fn post_raw(edge: &Edge, path: &str, key: &str, content_type: Option<&str>, body: &[u8]) -> Resp {
    let auth = format!("Bearer {key}");
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    edge.request("POST", path, &headers, Some(body))
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// POST with `Transfer-Encoding: chunked` (no Content-Length): ureq 2 chunks
/// any body sent from a reader.
fn post_chunked(edge: &Edge, path: &str, key: &str, body: Vec<u8>) -> Resp {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let result = agent
        .post(&format!("{}{path}", edge.base))
        .set("authorization", &format!("Bearer {key}"))
        .set("content-type", JSON_CT)
        .send(std::io::Cursor::new(body));
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("chunked POST {path}: {e}"),
    };
    Resp::read(resp).expect("read body")
}

/// RFC 3339 UTC, whole seconds, `secs` from now (negative: in the past).
fn from_now(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|c| str_of(&c["id"]))
        .collect()
}

/// Walks `GET /v1/calls?limit=..&<query>` page by page, checking each page's
/// shape and `has_more`/`next_cursor`; returns (rows, pages).
fn walk(edge: &Edge, key: &str, query: &str, limit: u32) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=200 {
        let mut path = format!("/v1/calls?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = edge.call("GET", &path, key, None).expect(200);
        assert_eq!(r.json["object"], "list", "{}", r.text);
        let data = r.json["data"].as_array().expect("data").clone();
        assert!(
            data.len() <= limit as usize,
            "page larger than limit {limit}: {}",
            r.text
        );
        let has_more = r.json["has_more"].as_bool().expect("has_more bool");
        assert_eq!(
            has_more,
            r.json["next_cursor"].is_string(),
            "has_more iff next_cursor: {}",
            r.text
        );
        if !has_more {
            assert!(r.json["next_cursor"].is_null(), "{}", r.text);
        }
        rows.extend(data);
        if !has_more {
            return (rows, page);
        }
        cursor = Some(str_of(&r.json["next_cursor"]));
    }
    panic!("listing {query} did not end within 200 pages");
}

fn row_ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|c| str_of(&c["id"])).collect()
}

fn assert_no_duplicates(ids: &[String]) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "duplicate ids in listing: {ids:?}");
}

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

// ------------------------------------------------------------------ cases --

fn health(edge: &Edge) {
    let r = edge
        .request("GET", "/healthz", &[], None)
        .unwrap()
        .expect(200);
    assert_eq!(r.json, json!({"ok": true}));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

fn openapi(edge: &Edge) {
    let r = edge
        .request("GET", "/v1/openapi.json", &[], None)
        .unwrap()
        .expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json.is_object(), "not a JSON object: {}", r.text);
    assert!(
        r.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "no openapi version: {}",
        r.text
    );
}

fn admin_auth(edge: &Edge) {
    let body = json!({"name": "auth probe"});
    let b = body.to_string();
    let send = |headers: &[(&str, &str)]| {
        let mut h = headers.to_vec();
        h.push(("content-type", JSON_CT));
        edge.request("POST", "/admin/tenants", &h, Some(b.as_bytes()))
            .unwrap()
    };
    err(send(&[]), 401, "missing_credentials", None);
    err(
        send(&[("authorization", "")]),
        401,
        "missing_credentials",
        None,
    );
    err(
        send(&[("authorization", "Bearer")]),
        401,
        "missing_credentials",
        None,
    );
    err(
        send(&[("authorization", "Bearer    ")]),
        401,
        "missing_credentials",
        None,
    );
    let basic = format!("Basic {}", edge.admin_token);
    err(
        send(&[("authorization", &basic)]),
        401,
        "missing_credentials",
        None,
    );
    err(
        send(&[("authorization", "Bearer wrong-token")]),
        401,
        "invalid_credentials",
        None,
    );
    let almost = format!("Bearer {}x", edge.admin_token);
    err(
        send(&[("authorization", &almost)]),
        401,
        "invalid_credentials",
        None,
    );
    let prefix = format!("Bearer {}", &edge.admin_token[..edge.admin_token.len() - 1]);
    err(
        send(&[("authorization", &prefix)]),
        401,
        "invalid_credentials",
        None,
    );
    // An API key is not an admin credential, not even for its own tenant.
    let t = tenant(edge, "admin auth");
    err(
        edge.call("GET", &format!("/admin/tenants/{}", t.id), &t.key, None),
        401,
        "invalid_credentials",
        None,
    );
    err(
        edge.call("POST", "/admin/tenants", &t.key, Some(&body)),
        401,
        "invalid_credentials",
        None,
    );
    // Auth comes before lookups: an unknown tenant does not leak as 404.
    err(
        edge.call(
            "GET",
            "/admin/tenants/ten_00000000000000000000",
            "nope",
            None,
        ),
        401,
        "invalid_credentials",
        None,
    );
    // The scheme is case-insensitive.
    let lower = format!("bearer {}", edge.admin_token);
    let r = send(&[("authorization", &lower)]).expect(201);
    assert_eq!(r.json["object"], "tenant");
}

fn admin_tenants(edge: &Edge) {
    let r = edge
        .admin("POST", "/admin/tenants", Some(&json!({"name": "Acme"})))
        .expect(201);
    let t = r.json.clone();
    let tid = str_of(&t["id"]);
    assert!(tid.starts_with("ten_"), "{tid}");
    assert_eq!(t["object"], "tenant");
    assert_eq!(t["name"], "Acme");
    assert_eq!(t["disabled"], false);
    assert!(t["default_agent_id"].is_null());
    assert!(
        t["created_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{t}"
    );
    let path = format!("/admin/tenants/{tid}");
    assert_eq!(edge.admin("GET", &path, None).expect(200).json, t);

    let r = edge
        .admin("PATCH", &path, Some(&json!({"name": "Acme Corp"})))
        .expect(200);
    assert_eq!(r.json["name"], "Acme Corp");
    assert_eq!(r.json["disabled"], false);
    let r = edge
        .admin("PATCH", &path, Some(&json!({"disabled": true})))
        .expect(200);
    assert_eq!(
        (r.json["name"].clone(), r.json["disabled"].clone()),
        (json!("Acme Corp"), json!(true))
    );
    assert_eq!(
        edge.admin("GET", &path, None).expect(200).json["disabled"],
        true
    );
    let r = edge
        .admin("PATCH", &path, Some(&json!({"disabled": false})))
        .expect(200);
    assert_eq!(r.json["disabled"], false);
    // An empty patch changes nothing.
    let before = edge.admin("GET", &path, None).expect(200).json;
    assert_eq!(
        edge.admin("PATCH", &path, Some(&json!({})))
            .expect(200)
            .json,
        before
    );

    // default_agent_id: only an agent of this tenant.
    err(
        edge.admin(
            "PATCH",
            &path,
            Some(&json!({"default_agent_id": "agt_00000000000000000000"})),
        ),
        422,
        "unknown_agent",
        Some("default_agent_id"),
    );
    err(
        edge.admin("PATCH", &path, Some(&json!({"default_agent_id": "bogus"}))),
        422,
        "unknown_agent",
        Some("default_agent_id"),
    );
    let other = tenant(edge, "other");
    err(
        edge.admin(
            "PATCH",
            &path,
            Some(&json!({"default_agent_id": other.agent_id})),
        ),
        422,
        "unknown_agent",
        Some("default_agent_id"),
    );
    let a1 = edge
        .admin(
            "POST",
            &format!("{path}/agents"),
            Some(&json!({"name": "one"})),
        )
        .expect(201)
        .json;
    let a2 = edge
        .admin(
            "POST",
            &format!("{path}/agents"),
            Some(&json!({"name": "two"})),
        )
        .expect(201)
        .json;
    assert_eq!(
        edge.admin("GET", &path, None).expect(200).json["default_agent_id"],
        a1["id"]
    );
    let r = edge
        .admin("PATCH", &path, Some(&json!({"default_agent_id": a2["id"]})))
        .expect(200);
    assert_eq!(r.json["default_agent_id"], a2["id"]);
    let g = edge
        .admin("GET", &format!("{path}/agents/{}", str_of(&a2["id"])), None)
        .expect(200);
    assert_eq!(g.json["default"], true);
    let g = edge
        .admin("GET", &format!("{path}/agents/{}", str_of(&a1["id"])), None)
        .expect(200);
    assert_eq!(g.json["default"], false);
    // A failed patch changes nothing, not even the valid fields next to the bad one.
    err(
        edge.admin(
            "PATCH",
            &path,
            Some(&json!({"name": "half", "default_agent_id": "agt_00000000000000000000"})),
        ),
        422,
        "unknown_agent",
        Some("default_agent_id"),
    );
    assert_eq!(
        edge.admin("GET", &path, None).expect(200).json["name"],
        "Acme Corp"
    );

    // Validation of tenant bodies.
    err(
        edge.admin("POST", "/admin/tenants", Some(&json!({}))),
        422,
        "missing_field",
        Some("name"),
    );
    err(
        edge.admin("POST", "/admin/tenants", Some(&json!({"name": "  "}))),
        422,
        "invalid_value",
        Some("name"),
    );
    err(
        edge.admin("POST", "/admin/tenants", Some(&json!({"name": 7}))),
        422,
        "invalid_type",
        Some("name"),
    );
    err(
        edge.admin(
            "POST",
            "/admin/tenants",
            Some(&json!({"name": "x".repeat(201)})),
        ),
        422,
        "value_too_long",
        Some("name"),
    );
    err(
        edge.admin(
            "POST",
            "/admin/tenants",
            Some(&json!({"name": "x", "plan": "pro"})),
        ),
        400,
        "unknown_field",
        Some("plan"),
    );
    err(
        edge.admin("PATCH", &path, Some(&json!({"disabled": "yes"}))),
        422,
        "invalid_type",
        Some("disabled"),
    );
    err(
        edge.admin("PATCH", &path, Some(&json!({"name": " "}))),
        422,
        "invalid_value",
        Some("name"),
    );
    err(
        edge.admin("PATCH", &path, Some(&json!({"name": ""}))),
        422,
        "invalid_value",
        Some("name"),
    );
    assert_eq!(
        edge.admin("GET", &path, None).expect(200).json["name"],
        "Acme Corp"
    );
    err(
        edge.admin("PATCH", &path, Some(&json!({"id": "ten_1"}))),
        400,
        "unknown_field",
        Some("id"),
    );
    // A tenant created disabled.
    let d = edge
        .admin(
            "POST",
            "/admin/tenants",
            Some(&json!({"name": "off", "disabled": true})),
        )
        .expect(201);
    assert_eq!(d.json["disabled"], true);

    // Unknown / malformed tenant ids on every admin route shape.
    for bad in ["ten_00000000000000000000", "ten_nothex!", "nope", "ten_"] {
        err(
            edge.admin("GET", &format!("/admin/tenants/{bad}"), None),
            404,
            "tenant_not_found",
            None,
        );
    }
    let ghost = "/admin/tenants/ten_00000000000000000000";
    err(
        edge.admin("PATCH", ghost, Some(&json!({"name": "x"}))),
        404,
        "tenant_not_found",
        None,
    );
    err(
        edge.admin(
            "POST",
            &format!("{ghost}/agents"),
            Some(&json!({"name": "x"})),
        ),
        404,
        "tenant_not_found",
        None,
    );
    err(
        edge.admin("GET", &format!("{ghost}/agents"), None),
        404,
        "tenant_not_found",
        None,
    );
    err(
        edge.admin("POST", &format!("{ghost}/api-keys"), None),
        404,
        "tenant_not_found",
        None,
    );
    err(
        edge.admin("GET", &format!("{ghost}/webhooks"), None),
        404,
        "tenant_not_found",
        None,
    );
}

fn admin_agents(edge: &Edge) {
    let (tid, key) = bare_tenant(edge, "agents");
    let base = format!("/admin/tenants/{tid}/agents");
    let empty = edge.admin("GET", &base, None).expect(200).json;
    assert_eq!(
        empty,
        json!({"object": "list", "data": [], "has_more": false, "next_cursor": null})
    );

    // The first agent becomes the default, with documented defaults.
    let a1 = edge
        .admin("POST", &base, Some(&json!({"name": "first"})))
        .expect(201)
        .json;
    let a1_id = str_of(&a1["id"]);
    assert!(a1_id.starts_with("agt_"));
    assert_eq!(a1["object"], "agent");
    assert_eq!(a1["default"], true);
    assert_eq!(a1["enabled"], true);
    assert_eq!(a1["language"], "en-US");
    assert_eq!(a1["default_engine"], "local");
    assert!(
        a1["system_prompt"].is_null() && a1["voice"].is_null() && a1["model"].is_null(),
        "{a1}"
    );
    assert_eq!(
        edge.admin("GET", &format!("/admin/tenants/{tid}"), None)
            .expect(200)
            .json["default_agent_id"],
        a1_id
    );

    // A second one does not take over unless asked to.
    let a2 = edge
        .admin(
            "POST",
            &base,
            Some(&json!({"name": "second", "system_prompt": "Be brief.", "voice": "alloy", "language": "fr-FR",
                         "default_engine": "openai_realtime", "model": "gpt-realtime", "enabled": true})),
        )
        .expect(201)
        .json;
    let a2_id = str_of(&a2["id"]);
    assert_eq!(a2["default"], false);
    assert_eq!(
        (
            &a2["system_prompt"],
            &a2["voice"],
            &a2["language"],
            &a2["default_engine"],
            &a2["model"]
        ),
        (
            &json!("Be brief."),
            &json!("alloy"),
            &json!("fr-FR"),
            &json!("openai_realtime"),
            &json!("gpt-realtime")
        )
    );
    let a3 = edge
        .admin(
            "POST",
            &base,
            Some(&json!({"name": "third", "default": true})),
        )
        .expect(201)
        .json;
    let a3_id = str_of(&a3["id"]);
    assert_eq!(a3["default"], true);
    assert_eq!(
        edge.admin("GET", &format!("/admin/tenants/{tid}"), None)
            .expect(200)
            .json["default_agent_id"],
        a3_id
    );

    // Listing shows all three, exactly one default.
    let list = edge.admin("GET", &base, None).expect(200).json;
    assert_eq!(list["object"], "list");
    assert_eq!(list["has_more"], false);
    assert_eq!(
        set(&ids(&list)),
        set(&[a1_id.clone(), a2_id.clone(), a3_id.clone()])
    );
    let defaults: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["default"] == true)
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0]["id"], a3_id.as_str());

    // Get, and unknown agents.
    let g = edge
        .admin("GET", &format!("{base}/{a2_id}"), None)
        .expect(200)
        .json;
    assert_eq!(g, a2);
    err(
        edge.admin("GET", &format!("{base}/agt_00000000000000000000"), None),
        404,
        "agent_not_found",
        None,
    );
    err(
        edge.admin("GET", &format!("{base}/bogus"), None),
        404,
        "agent_not_found",
        None,
    );
    err(
        edge.admin(
            "PATCH",
            &format!("{base}/agt_00000000000000000000"),
            Some(&json!({"name": "x"})),
        ),
        404,
        "agent_not_found",
        None,
    );
    // Another tenant's agent is not found under this tenant.
    let other = tenant(edge, "agents other");
    err(
        edge.admin("GET", &format!("{base}/{}", other.agent_id), None),
        404,
        "agent_not_found",
        None,
    );

    // Patch keeps what is not given.
    let p = edge
        .admin(
            "PATCH",
            &format!("{base}/{a2_id}"),
            Some(&json!({"name": "second!", "language": "de-DE"})),
        )
        .expect(200)
        .json;
    assert_eq!(
        (&p["name"], &p["language"], &p["voice"], &p["model"]),
        (
            &json!("second!"),
            &json!("de-DE"),
            &json!("alloy"),
            &json!("gpt-realtime")
        )
    );
    assert_eq!(p["created_at"], a2["created_at"]);
    // default:false on the default agent leaves the tenant without one.
    let p = edge
        .admin(
            "PATCH",
            &format!("{base}/{a3_id}"),
            Some(&json!({"default": false})),
        )
        .expect(200)
        .json;
    assert_eq!(p["default"], false);
    assert!(edge
        .admin("GET", &format!("/admin/tenants/{tid}"), None)
        .expect(200)
        .json["default_agent_id"]
        .is_null());
    err(
        post_call(edge, &key, call_body(json!({}))),
        422,
        "agent_required",
        Some("agent_id"),
    );
    let p = edge
        .admin(
            "PATCH",
            &format!("{base}/{a1_id}"),
            Some(&json!({"default": true})),
        )
        .expect(200)
        .json;
    assert_eq!(p["default"], true);
    assert_eq!(new_call(edge, &key, json!({}))["agent_id"], a1_id.as_str());

    // Disabling an agent: calls naming it, or falling back to it, get 409.
    let p = edge
        .admin(
            "PATCH",
            &format!("{base}/{a2_id}"),
            Some(&json!({"enabled": false})),
        )
        .expect(200)
        .json;
    assert_eq!(p["enabled"], false);
    err(
        post_call(edge, &key, call_body(json!({"agent_id": a2_id}))),
        409,
        "agent_disabled",
        Some("agent_id"),
    );
    edge.admin(
        "PATCH",
        &format!("{base}/{a1_id}"),
        Some(&json!({"enabled": false})),
    )
    .expect(200);
    err(
        post_call(edge, &key, call_body(json!({}))),
        409,
        "agent_disabled",
        Some("agent_id"),
    );
    // Other agents still work; re-enabling works.
    assert_eq!(
        new_call(edge, &key, json!({"agent_id": a3_id}))["agent_id"],
        a3_id.as_str()
    );
    edge.admin(
        "PATCH",
        &format!("{base}/{a2_id}"),
        Some(&json!({"enabled": true})),
    )
    .expect(200);
    assert_eq!(
        new_call(edge, &key, json!({"agent_id": a2_id}))["status"],
        "queued"
    );
    // An agent can be created disabled.
    let off = edge
        .admin(
            "POST",
            &base,
            Some(&json!({"name": "off", "enabled": false})),
        )
        .expect(201)
        .json;
    assert_eq!(off["enabled"], false);
    err(
        post_call(edge, &key, call_body(json!({"agent_id": off["id"]}))),
        409,
        "agent_disabled",
        Some("agent_id"),
    );

    // Validation of agent bodies.
    err(
        edge.admin("POST", &base, Some(&json!({}))),
        422,
        "missing_field",
        Some("name"),
    );
    err(
        edge.admin(
            "POST",
            &base,
            Some(&json!({"name": "x", "default_engine": "gpt"})),
        ),
        422,
        "invalid_value",
        Some("default_engine"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"name": "x", "voice": "a b"}))),
        422,
        "invalid_value",
        Some("voice"),
    );
    err(
        edge.admin(
            "POST",
            &base,
            Some(&json!({"name": "x", "language": "en_US"})),
        ),
        422,
        "invalid_language",
        Some("language"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"name": "x", "enabled": 1}))),
        422,
        "invalid_type",
        Some("enabled"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"name": "x", "default": "yes"}))),
        422,
        "invalid_type",
        Some("default"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"name": "x", "functions": []}))),
        400,
        "unknown_field",
        Some("functions"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"name": "x".repeat(101)}))),
        422,
        "value_too_long",
        Some("name"),
    );
    err(
        edge.admin(
            "PATCH",
            &format!("{base}/{a2_id}"),
            Some(&json!({"system_prompt": "p".repeat(20_001)})),
        ),
        422,
        "value_too_long",
        Some("system_prompt"),
    );
    err(
        edge.admin(
            "PATCH",
            &format!("{base}/{a2_id}"),
            Some(&json!({"name": ""})),
        ),
        422,
        "invalid_value",
        Some("name"),
    );
    err(
        edge.admin(
            "PATCH",
            &format!("{base}/{a2_id}"),
            Some(&json!({"name": "   "})),
        ),
        422,
        "invalid_value",
        Some("name"),
    );
    assert_eq!(
        edge.admin("GET", &format!("{base}/{a2_id}"), None)
            .expect(200)
            .json["name"],
        "second!"
    );
}

fn admin_api_keys(edge: &Edge) {
    let t = tenant(edge, "keys");
    let base = format!("/admin/tenants/{}/api-keys", t.id);
    // Created without a body, and with a name.
    let k1 = edge.admin("POST", &base, None).expect(201).json;
    let k2 = edge
        .admin("POST", &base, Some(&json!({"name": "ci"})))
        .expect(201)
        .json;
    for k in [&k1, &k2] {
        let key = str_of(&k["key"]);
        remember_key(&key);
        assert!(key.starts_with("ak_") && key.len() >= 32, "{key}");
        assert_eq!(k["object"], "api_key");
        assert!(str_of(&k["id"]).starts_with("key_"));
        assert!(
            key.starts_with(k["prefix"].as_str().unwrap()),
            "prefix of the key: {k}"
        );
        assert!(
            k["prefix"].as_str().unwrap().len() < key.len() / 2,
            "prefix must not reveal the key: {k}"
        );
        assert!(k["revoked_at"].is_null());
        assert!(k.get("hash").is_none(), "hash in mint response: {k}");
        // The new key works at once.
        edge.call("GET", "/v1/calls", &key, None).expect(200);
    }
    assert!(k1["name"].is_null());
    assert_eq!(k2["name"], "ci");
    assert_ne!(k1["key"], k2["key"]);
    err(
        edge.admin("POST", &base, Some(&json!({"name": 5}))),
        422,
        "invalid_type",
        Some("name"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"scope": "all"}))),
        400,
        "unknown_field",
        Some("scope"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"name": "n".repeat(101)}))),
        422,
        "value_too_long",
        Some("name"),
    );

    // Listing: never the key, never the hash.
    let list = edge.admin("GET", &base, None).expect(200);
    assert_eq!(list.json["object"], "list");
    assert_eq!(
        set(&ids(&list.json)),
        set(&[t.key_id.clone(), str_of(&k1["id"]), str_of(&k2["id"])])
    );
    for row in list.json["data"].as_array().unwrap() {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "id",
                "object",
                "name",
                "prefix",
                "require_signature",
                "created_at",
                "revoked_at"
            ]),
            "{row}"
        );
    }
    for clear in [&t.key, &str_of(&k1["key"]), &str_of(&k2["key"])] {
        assert!(!list.text.contains(clear.as_str()), "clear key in listing");
        let hash = hex::encode(Sha256::digest(clear.as_bytes()));
        assert!(!list.text.contains(&hash), "hash in listing");
    }

    // Revoke: 200, the key stops working, other keys keep working, idempotent.
    let k1_id = str_of(&k1["id"]);
    let r = edge
        .admin("DELETE", &format!("{base}/{k1_id}"), None)
        .expect(200)
        .json;
    assert_eq!(r["id"], k1_id.as_str());
    assert!(r["revoked_at"].is_string(), "{r}");
    assert!(r.get("key").is_none() && r.get("hash").is_none(), "{r}");
    err(
        edge.call("GET", "/v1/calls", &str_of(&k1["key"]), None),
        401,
        "invalid_credentials",
        None,
    );
    err(
        post_call(edge, &str_of(&k1["key"]), call_body(json!({}))),
        401,
        "invalid_credentials",
        None,
    );
    edge.call("GET", "/v1/calls", &str_of(&k2["key"]), None)
        .expect(200);
    edge.call("GET", "/v1/calls", &t.key, None).expect(200);
    let again = edge
        .admin("DELETE", &format!("{base}/{k1_id}"), None)
        .expect(200)
        .json;
    assert_eq!(again, r, "second revoke returns the same record");
    let listed = edge.admin("GET", &base, None).expect(200).json;
    let row = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == k1_id.as_str())
        .expect("revoked key still listed");
    assert_eq!(row["revoked_at"], r["revoked_at"]);

    // Unknown keys, and keys of another tenant.
    err(
        edge.admin("DELETE", &format!("{base}/key_00000000000000000000"), None),
        404,
        "api_key_not_found",
        None,
    );
    err(
        edge.admin("DELETE", &format!("{base}/nope"), None),
        404,
        "api_key_not_found",
        None,
    );
    let other = tenant(edge, "keys other");
    err(
        edge.admin("DELETE", &format!("{base}/{}", other.key_id), None),
        404,
        "api_key_not_found",
        None,
    );
    edge.call("GET", "/v1/calls", &other.key, None).expect(200);
}

fn admin_webhooks(edge: &Edge) {
    let t = tenant(edge, "webhooks");
    let base = format!("/admin/tenants/{}/webhooks", t.id);
    let w = edge
        .admin("POST", &base, Some(&json!({"url": "https://hooks.example.com/voxline", "events": ["call.completed", "call.failed"]})))
        .expect(201)
        .json;
    let secret = str_of(&w["secret"]);
    assert!(
        secret.starts_with("whsec_") && secret.len() > 20,
        "{secret}"
    );
    assert_eq!(w["object"], "webhook_endpoint");
    assert!(str_of(&w["id"]).starts_with("wh_"));
    assert_eq!(w["url"], "https://hooks.example.com/voxline");
    assert_eq!(w["events"], json!(["call.completed", "call.failed"]));
    assert_eq!(w["enabled"], true);
    // Every event when none given; enabled:false kept.
    let all = edge
        .admin(
            "POST",
            &base,
            Some(&json!({"url": "https://h.example.org/", "enabled": false})),
        )
        .expect(201)
        .json;
    assert_eq!(
        (all["events"].clone(), all["enabled"].clone()),
        (json!([]), json!(false))
    );
    // Plain http to loopback is fine in dev mode (the harness runs VOXLINE_ENV=development).
    for url in [
        "http://127.0.0.1:8787/hook",
        "http://localhost:9/x",
        "http://[::1]:8080/",
    ] {
        let r = edge
            .admin("POST", &base, Some(&json!({"url": url})))
            .expect(201);
        assert_eq!(r.json["url"], url);
    }
    // Secrets are shown once: not in listings.
    let list = edge.admin("GET", &base, None).expect(200);
    assert_eq!(list.json["object"], "list");
    assert_eq!(list.json["data"].as_array().unwrap().len(), 5);
    assert!(!list.text.contains(&secret), "webhook secret in listing");
    assert!(!list.text.contains("whsec_"), "a webhook secret in listing");
    for row in list.json["data"].as_array().unwrap() {
        assert!(row.get("secret").is_none(), "{row}");
    }

    for url in [
        "http://example.com/hook",
        "http://10.0.0.1/hook",
        "ftp://127.0.0.1/x",
        "not a url",
        "hooks.example.com/x",
        "https://",
        "https:///path",
        "http://127.0.0.1@example.com/",
        "http://127.0.0.1.example.com/",
        // WHATWG URL parsing (what fetch uses) reads '\' as '/': the host is example.com.
        "http://example.com\\@127.0.0.1/",
        "javascript://127.0.0.1/%0aalert(1)",
    ] {
        err(
            edge.admin("POST", &base, Some(&json!({"url": url}))),
            422,
            "invalid_url",
            Some("url"),
        );
    }
    err(
        edge.admin(
            "POST",
            &base,
            Some(&json!({"url": "https://e.com", "events": ["call.exploded"]})),
        ),
        422,
        "invalid_value",
        Some("events"),
    );
    err(
        edge.admin(
            "POST",
            &base,
            Some(&json!({"url": "https://e.com", "events": "call.completed"})),
        ),
        422,
        "invalid_type",
        Some("events"),
    );
    err(
        edge.admin(
            "POST",
            &base,
            Some(&json!({"url": "https://e.com", "events": [1]})),
        ),
        422,
        "invalid_type",
        Some("events"),
    );
    err(
        edge.admin("POST", &base, Some(&json!({"events": []}))),
        422,
        "missing_field",
        Some("url"),
    );
    err(
        edge.admin(
            "POST",
            &base,
            Some(&json!({"url": "https://e.com", "secret": "mine"})),
        ),
        400,
        "unknown_field",
        Some("secret"),
    );
    err(
        edge.admin(
            "POST",
            &base,
            Some(&json!({"url": format!("https://e.com/{}", "p".repeat(2048))})),
        ),
        422,
        "value_too_long",
        Some("url"),
    );
    assert_eq!(
        edge.admin("GET", &base, None).expect(200).json["data"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "failed creates stored nothing"
    );
}

fn create_call_defaults(edge: &Edge) {
    let (tid, key) = bare_tenant(edge, "defaults");
    let agent = edge
        .admin(
            "POST",
            &format!("/admin/tenants/{tid}/agents"),
            Some(&json!({"name": "sales", "system_prompt": "Sell.", "voice": "alloy", "language": "fr-FR",
                         "default_engine": "gemini_live", "model": "gemini-live-2"})),
        )
        .expect(201)
        .json;
    let aid = str_of(&agent["id"]);
    let r = post_call(edge, &key, json!({"phone": PHONE})).expect(201);
    let c = r.json.clone();
    let id = str_of(&c["id"]);
    assert!(id.starts_with("call_"), "{id}");
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/calls/{id}").as_str())
    );
    assert_eq!(c["object"], "call");
    assert_eq!(c["status"], "queued");
    assert_eq!(c["phone"], PHONE);
    assert_eq!(c["agent_id"], aid.as_str());
    // Resolved from the agent.
    assert_eq!(c["system_prompt"], "Sell.");
    assert_eq!(c["voice"], "alloy");
    assert_eq!(c["language"], "fr-FR");
    assert_eq!(c["engine"], "gemini_live");
    assert_eq!(c["model"], "gemini-live-2");
    // API defaults.
    assert_eq!(
        (
            c["max_seconds"].clone(),
            c["retries"].clone(),
            c["retry_delay_minutes"].clone()
        ),
        (json!(300), json!(0), json!(5))
    );
    assert_eq!(c["attempts"], 0);
    for k in [
        "name",
        "email",
        "metadata",
        "schedule_at",
        "hangup_requested_at",
        "ended_at",
        "ended_reason",
    ] {
        assert!(c[k].is_null(), "{k} should be null: {c}");
    }
    assert_eq!(c["created_at"], c["updated_at"]);
    assert!(c["created_at"].as_str().unwrap().ends_with('Z'));
    // GET returns exactly what POST returned.
    assert_eq!(
        edge.call("GET", &format!("/v1/calls/{id}"), &key, None)
            .expect(200)
            .json,
        c
    );

    // Every field given overrides the agent (the engine always comes from the agent).
    let full = json!({
        "phone": "+442071838750", "name": "Ada Lovelace", "email": "ada@example.org",
        "metadata": {"crm_id": 7, "tags": ["vip"], "nested": {"ok": true}},
        "agent_id": aid, "system_prompt": "Be kind.", "voice": "verse", "language": "en-GB",
        "model": "other-model", "max_seconds": 3600, "retries": 10, "retry_delay_minutes": 1440
    });
    let c2 = post_call(edge, &key, full.clone()).expect(201).json;
    for k in [
        "phone",
        "name",
        "email",
        "metadata",
        "agent_id",
        "system_prompt",
        "voice",
        "language",
        "model",
        "max_seconds",
        "retries",
        "retry_delay_minutes",
    ] {
        assert_eq!(c2[k], full[k], "{k}");
    }
    assert_eq!(c2["engine"], "gemini_live");
    // Lower bounds are inclusive too; nulls mean "absent".
    let c3 = new_call(
        edge,
        &key,
        json!({"max_seconds": 10, "retries": 0, "retry_delay_minutes": 1, "name": null, "metadata": null, "voice": null}),
    );
    assert_eq!(
        (
            c3["max_seconds"].clone(),
            c3["retry_delay_minutes"].clone(),
            c3["voice"].clone()
        ),
        (json!(10), json!(1), json!("alloy"))
    );
    // 300.0 is an integer in JSON's eyes.
    assert_eq!(
        post_call(
            edge,
            &key,
            json!({"phone": unique_phone(), "max_seconds": 120.0})
        )
        .expect(201)
        .json["max_seconds"],
        120
    );
    // Content-Type parameters and case are accepted.
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        post_raw(
            edge,
            "/v1/calls",
            &key,
            Some(ct),
            json!({"phone": unique_phone()}).to_string().as_bytes(),
        )
        .expect(201);
    }
    // Accepted calls keep their settings when the agent changes later.
    edge.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(&json!({"voice": "echo", "system_prompt": "New."})),
    )
    .expect(200);
    let again = edge
        .call("GET", &format!("/v1/calls/{id}"), &key, None)
        .expect(200)
        .json;
    assert_eq!(
        (again["voice"].clone(), again["system_prompt"].clone()),
        (json!("alloy"), json!("Sell."))
    );
    assert_eq!(new_call(edge, &key, json!({}))["voice"], "echo");
}

fn create_call_scheduled(edge: &Edge) {
    let t = tenant(edge, "scheduled");
    let at = from_now(3600).replace('Z', "+00:00");
    let c = new_call(edge, &t.key, json!({"schedule_at": at}));
    assert_eq!(c["status"], "scheduled");
    // Normalised to milliseconds and Z.
    let want = format!("{}.000Z", &at[..19]);
    assert_eq!(c["schedule_at"], want.as_str());
    let got = edge
        .call(
            "GET",
            &format!("/v1/calls/{}", str_of(&c["id"])),
            &t.key,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(got["status"], "scheduled");
    // 89 days ahead is still fine.
    assert_eq!(
        new_call(edge, &t.key, json!({"schedule_at": from_now(89 * 86_400)}))["status"],
        "scheduled"
    );
}

fn create_call_agent_resolution(edge: &Edge) {
    let a = tenant(edge, "resolution a");
    let b = tenant(edge, "resolution b");
    // Another tenant's agent is unknown here (422, not 403/404).
    err(
        post_call(edge, &a.key, call_body(json!({"agent_id": b.agent_id}))),
        422,
        "unknown_agent",
        Some("agent_id"),
    );
    err(
        post_call(
            edge,
            &a.key,
            call_body(json!({"agent_id": "agt_00000000000000000000"})),
        ),
        422,
        "unknown_agent",
        Some("agent_id"),
    );
    err(
        post_call(edge, &a.key, call_body(json!({"agent_id": "bogus"}))),
        422,
        "unknown_agent",
        Some("agent_id"),
    );
    err(
        post_call(
            edge,
            &a.key,
            call_body(json!({"agent_id": "agt_../../tenant"})),
        ),
        422,
        "unknown_agent",
        Some("agent_id"),
    );
    // Own agent by id works.
    assert_eq!(
        new_call(edge, &a.key, json!({"agent_id": a.agent_id}))["agent_id"],
        a.agent_id.as_str()
    );
    // No agents at all and no agent_id.
    let (_, key) = bare_tenant(edge, "no agents");
    err(
        post_call(edge, &key, call_body(json!({}))),
        422,
        "agent_required",
        Some("agent_id"),
    );
    err(
        post_call(edge, &key, call_body(json!({"agent_id": null}))),
        422,
        "agent_required",
        Some("agent_id"),
    );
    err(
        post_call(edge, &key, call_body(json!({"agent_id": a.agent_id}))),
        422,
        "unknown_agent",
        Some("agent_id"),
    );
    // A first agent created with default:false leaves no default either.
    let (tid, key) = bare_tenant(edge, "no default");
    let ag = edge
        .admin(
            "POST",
            &format!("/admin/tenants/{tid}/agents"),
            Some(&json!({"name": "x", "default": false})),
        )
        .expect(201)
        .json;
    assert_eq!(ag["default"], false);
    err(
        post_call(edge, &key, call_body(json!({}))),
        422,
        "agent_required",
        Some("agent_id"),
    );
    assert_eq!(
        new_call(edge, &key, json!({"agent_id": ag["id"]}))["status"],
        "queued"
    );
}

fn errors_routing(edge: &Edge) {
    let t = tenant(edge, "routing");
    for path in [
        "/",
        "/nope",
        "/v1",
        "/v1/calls/",
        "/v1/callsx",
        "/v1/calls/call_1/x",
        "/v2/calls",
        "/admin",
        "/admin/tenants/",
        "/v1//calls",
        "/healthz/",
    ] {
        let r = edge.request("GET", path, &[], None).unwrap();
        err(r, 404, "not_found", None);
    }
    err(
        edge.call("GET", "/v1/nope", &t.key, None),
        404,
        "not_found",
        None,
    );
    let cases: &[(&str, &str, &str)] = &[
        ("DELETE", "/v1/calls", "POST, GET"),
        ("PUT", "/v1/calls", "POST, GET"),
        ("PATCH", "/v1/calls/call_00000000000000000000", "GET"),
        ("DELETE", "/v1/calls/call_00000000000000000000", "GET"),
        ("GET", "/v1/calls/call_00000000000000000000/hangup", "POST"),
        ("POST", "/healthz", "GET"),
        ("POST", "/v1/openapi.json", "GET"),
        ("GET", "/admin/tenants", "POST"),
        (
            "DELETE",
            "/admin/tenants/ten_00000000000000000000",
            "GET, PATCH",
        ),
        (
            "PUT",
            "/admin/tenants/ten_00000000000000000000/agents",
            "POST, GET",
        ),
        (
            "GET",
            "/admin/tenants/ten_00000000000000000000/api-keys/key_00000000000000000000",
            "DELETE",
        ),
        (
            "DELETE",
            "/admin/tenants/ten_00000000000000000000/webhooks",
            "POST, GET",
        ),
    ];
    for (method, path, allow) in cases {
        let auth = format!("Bearer {}", t.key);
        let r = edge
            .request(method, path, &[("authorization", &auth)], None)
            .unwrap();
        assert_eq!(
            r.header("allow"),
            Some(*allow),
            "{method} {path}: Allow header"
        );
        err(r, 405, "method_not_allowed", None);
    }
}

fn errors_auth(edge: &Edge) {
    let t = tenant(edge, "auth");
    let body = call_body(json!({})).to_string();
    let send = |method: &str, path: &str, auth: Option<&str>| {
        let mut h = vec![("content-type", JSON_CT)];
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        let b = if method == "POST" {
            Some(body.as_bytes())
        } else {
            None
        };
        edge.request(method, path, &h, b).unwrap()
    };
    let call_path = "/v1/calls/call_00000000000000000000";
    let hangup_path = "/v1/calls/call_00000000000000000000/hangup";
    for (m, p) in [
        ("POST", "/v1/calls"),
        ("GET", "/v1/calls"),
        ("GET", call_path),
        ("POST", hangup_path),
    ] {
        err(send(m, p, None), 401, "missing_credentials", None);
        err(send(m, p, Some("")), 401, "missing_credentials", None);
        err(send(m, p, Some(&t.key)), 401, "missing_credentials", None);
        err(
            send(m, p, Some(&format!("Token {}", t.key))),
            401,
            "missing_credentials",
            None,
        );
        err(
            send(m, p, Some("Bearer ak_notarealkey0000000000000000000000")),
            401,
            "invalid_credentials",
            None,
        );
        err(
            send(m, p, Some("Bearer nope")),
            401,
            "invalid_credentials",
            None,
        );
        err(
            send(m, p, Some(&format!("Bearer {}", edge.admin_token))),
            401,
            "invalid_credentials",
            None,
        );
        err(
            send(
                m,
                p,
                Some(&format!("Bearer {}", "ak_".to_string() + &"a".repeat(500))),
            ),
            401,
            "invalid_credentials",
            None,
        );
        err(
            send(m, p, Some(&format!("Bearer {}x", t.key))),
            401,
            "invalid_credentials",
            None,
        );
    }
    // The real key works with any scheme case and extra spaces.
    send("GET", "/v1/calls", Some(&format!("bearer   {}", t.key))).expect(200);
    send("GET", "/v1/calls", Some(&format!("BEARER {}", t.key))).expect(200);

    // A disabled tenant: 403 on every call route, whatever else is wrong.
    let c = new_call(edge, &t.key, json!({}));
    let cid = str_of(&c["id"]);
    let tpath = format!("/admin/tenants/{}", t.id);
    edge.admin("PATCH", &tpath, Some(&json!({"disabled": true})))
        .expect(200);
    let auth = format!("Bearer {}", t.key);
    err(
        send("POST", "/v1/calls", Some(&auth)),
        403,
        "tenant_disabled",
        None,
    );
    err(
        send("GET", "/v1/calls", Some(&auth)),
        403,
        "tenant_disabled",
        None,
    );
    err(
        send("GET", &format!("/v1/calls/{cid}"), Some(&auth)),
        403,
        "tenant_disabled",
        None,
    );
    err(
        send("POST", &format!("/v1/calls/{cid}/hangup"), Some(&auth)),
        403,
        "tenant_disabled",
        None,
    );
    err(
        send("GET", "/v1/calls?limit=0", Some(&auth)),
        403,
        "tenant_disabled",
        None,
    );
    // The admin API still manages it; enabling again restores access.
    assert_eq!(
        edge.admin("GET", &tpath, None).expect(200).json["disabled"],
        true
    );
    edge.admin("PATCH", &tpath, Some(&json!({"disabled": false})))
        .expect(200);
    assert_eq!(
        edge.call("GET", &format!("/v1/calls/{cid}"), &t.key, None)
            .expect(200)
            .json["status"],
        "queued"
    );
    new_call(edge, &t.key, json!({}));
}

fn errors_body(edge: &Edge) {
    let t = tenant(edge, "bodies");
    let k = t.key.as_str();
    let p = "/v1/calls";
    // invalid_json
    err(
        post_raw(edge, p, k, Some(JSON_CT), b"{\"phone\":"),
        400,
        "invalid_json",
        None,
    );
    err(
        post_raw(edge, p, k, Some(JSON_CT), b"{phone: 1}"),
        400,
        "invalid_json",
        None,
    );
    err(
        post_raw(edge, p, k, Some(JSON_CT), b""),
        400,
        "invalid_json",
        None,
    );
    err(
        post_raw(edge, p, k, Some(JSON_CT), b"  \n\t "),
        400,
        "invalid_json",
        None,
    );
    err(
        post_raw(edge, p, k, Some(JSON_CT), b"{\"phone\":\"+14155550100\"} x"),
        400,
        "invalid_json",
        None,
    );
    // unknown_field names the field.
    err(
        post_call(edge, k, call_body(json!({"extra": 1}))),
        400,
        "unknown_field",
        Some("extra"),
    );
    err(
        post_call(edge, k, call_body(json!({"Phone": PHONE}))),
        400,
        "unknown_field",
        Some("Phone"),
    );
    err(
        post_call(edge, k, call_body(json!({"status": "completed"}))),
        400,
        "unknown_field",
        Some("status"),
    );
    // unsupported_media_type: text/plain, missing, lookalikes, form posts.
    for ct in [
        Some("text/plain"),
        None,
        Some("application/jsonx"),
        Some("application/x-www-form-urlencoded"),
        Some("json"),
        Some(""),
    ] {
        let r = post_raw(edge, p, k, ct, br#"{"phone":"+14155550100"}"#);
        err(r, 415, "unsupported_media_type", None);
    }
    // The content type is checked on admin bodies too.
    let auth = format!("Bearer {}", edge.admin_token);
    let r = edge
        .request(
            "POST",
            "/admin/tenants",
            &[("authorization", &auth), ("content-type", "text/plain")],
            Some(br#"{"name":"x"}"#),
        )
        .unwrap();
    err(r, 415, "unsupported_media_type", None);
    // invalid_type for non-object bodies.
    for body in ["[]", "[1]", "\"phone\"", "42", "null", "true"] {
        err(
            post_raw(edge, p, k, Some(JSON_CT), body.as_bytes()),
            422,
            "invalid_type",
            None,
        );
    }
    // missing_field
    err(
        post_call(edge, k, json!({})),
        422,
        "missing_field",
        Some("phone"),
    );
    err(
        post_call(edge, k, json!({"phone": null})),
        422,
        "missing_field",
        Some("phone"),
    );
    err(
        post_call(edge, k, json!({"name": "no phone"})),
        422,
        "missing_field",
        Some("phone"),
    );
}

fn errors_payload_too_large(edge: &Edge) {
    let t = tenant(edge, "big bodies");
    let k = t.key.as_str();
    const MAX: usize = 64 * 1024;
    // A valid body padded with JSON whitespace to exactly `len` bytes.
    let padded = |len: usize| {
        let mut b = json!({"phone": unique_phone()}).to_string().into_bytes();
        b.resize(len, b' ');
        b
    };
    post_raw(edge, "/v1/calls", k, Some(JSON_CT), &padded(MAX)).expect(201);
    err(
        post_raw(edge, "/v1/calls", k, Some(JSON_CT), &padded(MAX + 1)),
        413,
        "payload_too_large",
        None,
    );
    err(
        post_raw(edge, "/v1/calls", k, Some(JSON_CT), &padded(1 << 20)),
        413,
        "payload_too_large",
        None,
    );
    // The size is checked before the content type.
    err(
        post_raw(edge, "/v1/calls", k, Some("text/plain"), &padded(MAX + 1)),
        413,
        "payload_too_large",
        None,
    );
    // Chunked uploads carry no Content-Length: the real length counts.
    post_chunked(edge, "/v1/calls", k, padded(MAX)).expect(201);
    err(
        post_chunked(edge, "/v1/calls", k, padded(MAX + 1)),
        413,
        "payload_too_large",
        None,
    );
    err(
        post_chunked(edge, "/v1/calls", k, padded(300 * 1024)),
        413,
        "payload_too_large",
        None,
    );
    // Admin bodies and hangup bodies share the limit.
    let auth = format!("Bearer {}", edge.admin_token);
    let big = padded(MAX + 1);
    let r = edge
        .request(
            "POST",
            "/admin/tenants",
            &[("authorization", &auth), ("content-type", JSON_CT)],
            Some(&big),
        )
        .unwrap();
    err(r, 413, "payload_too_large", None);
    let c = new_call(edge, k, json!({}));
    let hp = format!("/v1/calls/{}/hangup", str_of(&c["id"]));
    err(
        post_raw(edge, &hp, k, Some(JSON_CT), &big),
        413,
        "payload_too_large",
        None,
    );
    err(
        post_chunked(edge, &hp, k, big.clone()),
        413,
        "payload_too_large",
        None,
    );
    assert_eq!(
        edge.call("GET", &format!("/v1/calls/{}", str_of(&c["id"])), k, None)
            .expect(200)
            .json["status"],
        "queued"
    );
}

fn errors_fields(edge: &Edge) {
    let t = tenant(edge, "fields");
    let k = t.key.as_str();
    let e = |extra: Value, status: u16, code: &str, field: &str| {
        err(
            post_call(edge, k, call_body(extra)),
            status,
            code,
            Some(field),
        );
    };
    // invalid_type
    e(
        json!({"phone": 14155550100u64}),
        422,
        "invalid_type",
        "phone",
    );
    e(
        json!({"phone": ["+14155550100"]}),
        422,
        "invalid_type",
        "phone",
    );
    e(json!({"name": true}), 422, "invalid_type", "name");
    e(json!({"email": 5}), 422, "invalid_type", "email");
    e(json!({"metadata": [1]}), 422, "invalid_type", "metadata");
    e(json!({"metadata": "{}"}), 422, "invalid_type", "metadata");
    e(
        json!({"max_seconds": "60"}),
        422,
        "invalid_type",
        "max_seconds",
    );
    e(
        json!({"max_seconds": 60.5}),
        422,
        "invalid_type",
        "max_seconds",
    );
    e(json!({"retries": false}), 422, "invalid_type", "retries");
    e(
        json!({"schedule_at": 1_900_000_000}),
        422,
        "invalid_type",
        "schedule_at",
    );
    e(json!({"agent_id": 1}), 422, "invalid_type", "agent_id");
    // invalid_value
    e(json!({"phone": ""}), 422, "invalid_value", "phone");
    e(json!({"phone": "   "}), 422, "invalid_value", "phone");
    e(json!({"voice": "a b"}), 422, "invalid_value", "voice");
    e(json!({"voice": ""}), 422, "invalid_value", "voice");
    e(json!({"voice": "al/loy"}), 422, "invalid_value", "voice");
    // value_too_long
    e(
        json!({"name": "n".repeat(201)}),
        422,
        "value_too_long",
        "name",
    );
    e(
        json!({"name": "é".repeat(201)}),
        422,
        "value_too_long",
        "name",
    );
    e(
        json!({"phone": format!("+1{}", "5".repeat(40))}),
        422,
        "value_too_long",
        "phone",
    );
    e(
        json!({"system_prompt": "p".repeat(20_001)}),
        422,
        "value_too_long",
        "system_prompt",
    );
    e(
        json!({"model": "m".repeat(129)}),
        422,
        "value_too_long",
        "model",
    );
    e(
        json!({"voice": "v".repeat(65)}),
        422,
        "value_too_long",
        "voice",
    );
    e(
        json!({"agent_id": format!("agt_{}", "a".repeat(61))}),
        422,
        "value_too_long",
        "agent_id",
    );
    e(
        json!({"email": format!("{}@example.com", "e".repeat(250))}),
        422,
        "value_too_long",
        "email",
    );
    e(
        json!({"schedule_at": "2".repeat(65)}),
        422,
        "value_too_long",
        "schedule_at",
    );
    // Limits count characters, not bytes: 200 two-byte characters are fine.
    assert_eq!(
        new_call(edge, k, json!({"name": "é".repeat(200)}))["name"],
        "é".repeat(200)
    );
    // out_of_range
    e(
        json!({"max_seconds": 9}),
        422,
        "out_of_range",
        "max_seconds",
    );
    e(
        json!({"max_seconds": 3601}),
        422,
        "out_of_range",
        "max_seconds",
    );
    e(
        json!({"max_seconds": -300}),
        422,
        "out_of_range",
        "max_seconds",
    );
    e(json!({"retries": 11}), 422, "out_of_range", "retries");
    e(json!({"retries": -1}), 422, "out_of_range", "retries");
    e(
        json!({"retry_delay_minutes": 0}),
        422,
        "out_of_range",
        "retry_delay_minutes",
    );
    e(
        json!({"retry_delay_minutes": 1441}),
        422,
        "out_of_range",
        "retry_delay_minutes",
    );
    e(
        json!({"schedule_at": from_now(91 * 86_400)}),
        422,
        "out_of_range",
        "schedule_at",
    );
    e(
        json!({"schedule_at": "9999-12-31T23:59:59Z"}),
        422,
        "out_of_range",
        "schedule_at",
    );
    // An integer too big for any range is out of range, not the wrong type.
    let r = post_raw(
        edge,
        "/v1/calls",
        k,
        Some(JSON_CT),
        br#"{"phone":"+14155550100","max_seconds":18446744073709551616}"#,
    );
    err(r, 422, "out_of_range", Some("max_seconds"));
    let r = post_raw(
        edge,
        "/v1/calls",
        k,
        Some(JSON_CT),
        br#"{"phone":"+14155550100","retries":9223372036854775808}"#,
    );
    err(r, 422, "out_of_range", Some("retries"));
    // invalid_phone_number
    for bad in [
        "14155550100",
        "+1 415 555 0100",
        "+1-415-555-0100",
        "+(415)5550100",
        "+0123456789",
        "+123456",
        "+1234567890123456",
        "+1415555o100",
        "+",
        "++14155550100",
        "tel:+14155550100",
        "+14155550100 ",
        " +14155550100",
        "+١٤١٥٥٥٥٠١٠٠",
        "＋14155550100",
        "+14155550100\n",
    ] {
        e(json!({"phone": bad}), 422, "invalid_phone_number", "phone");
    }
    // Boundaries: 7 and 15 digits are fine.
    new_call(edge, k, json!({"phone": "+1234567"}));
    new_call(edge, k, json!({"phone": "+123456789012345"}));
    // invalid_email
    for bad in [
        "nope",
        "a@b",
        "@example.com",
        "a@.com",
        "a@com.",
        "a b@example.com",
        "a@b@example.com",
        "a@exa mple.com",
        "a@",
        "a@example.com\n",
    ] {
        e(json!({"email": bad}), 422, "invalid_email", "email");
    }
    // invalid_language
    for bad in [
        "english please",
        "x-foo",
        "",
        "en_US",
        "123",
        "en-US-",
        "🙂",
    ] {
        e(
            json!({"language": bad}),
            422,
            "invalid_language",
            "language",
        );
    }
    for good in ["en", "pt-BR", "zh-Hant-TW", "es-419"] {
        assert_eq!(
            new_call(edge, k, json!({"language": good}))["language"],
            good
        );
    }
    // invalid_timestamp
    for bad in [
        "tomorrow",
        "2030-01-01",
        "2030-01-01T00:00:00",
        "2030-01-01T00:00:00+02:00",
        "2030-01-01T00:00:00-05:00",
        "2030-02-30T00:00:00Z",
        "2030-01-01 00:00",
        "",
        "1900000000",
    ] {
        e(
            json!({"schedule_at": bad}),
            422,
            "invalid_timestamp",
            "schedule_at",
        );
    }
    // schedule_in_past
    e(
        json!({"schedule_at": "2000-01-01T00:00:00Z"}),
        422,
        "schedule_in_past",
        "schedule_at",
    );
    e(
        json!({"schedule_at": from_now(-5)}),
        422,
        "schedule_in_past",
        "schedule_at",
    );
    e(
        json!({"schedule_at": "1970-01-01T00:00:00Z"}),
        422,
        "schedule_in_past",
        "schedule_at",
    );
    e(
        json!({"schedule_at": "1969-12-31T23:59:59Z"}),
        422,
        "schedule_in_past",
        "schedule_at",
    );
    e(
        json!({"schedule_at": "0000-01-01T00:00:00Z"}),
        422,
        "schedule_in_past",
        "schedule_at",
    );
    // metadata_too_large (16 KiB serialized; `{"k":""}` is 8 bytes).
    let meta = |n: usize| json!({"metadata": {"k": "m".repeat(n)}});
    new_call(edge, k, meta(16 * 1024 - 8));
    e(meta(16 * 1024 - 7), 422, "metadata_too_large", "metadata");
    e(
        json!({"metadata": {"a": "x".repeat(10_000), "b": "y".repeat(10_000)}}),
        422,
        "metadata_too_large",
        "metadata",
    );
    // unknown_agent for a malformed id is a field error too.
    e(
        json!({"agent_id": "../agt_1"}),
        422,
        "unknown_agent",
        "agent_id",
    );
}

fn errors_not_found_ids(edge: &Edge) {
    let t = tenant(edge, "ids");
    for cid in [
        "call_00000000000000000000",
        "call_0000000000000000000000000000000000000000",
        "nope",
        "call_",
        "call_ABCDEF0123",
        "ten_00000000000000000000",
        "call_0000000000000000000g",
    ] {
        err(
            edge.call("GET", &format!("/v1/calls/{cid}"), &t.key, None),
            404,
            "call_not_found",
            None,
        );
        err(
            edge.call("POST", &format!("/v1/calls/{cid}/hangup"), &t.key, None),
            404,
            "call_not_found",
            None,
        );
    }
    // tenant_not_found / agent_not_found / api_key_not_found are covered per
    // resource in the admin cases; one more of each here for the catalogue.
    err(
        edge.admin("GET", "/admin/tenants/ten_ffffffffffffffffffff", None),
        404,
        "tenant_not_found",
        None,
    );
    err(
        edge.admin(
            "GET",
            &format!("/admin/tenants/{}/agents/agt_ffffffffffffffffffff", t.id),
            None,
        ),
        404,
        "agent_not_found",
        None,
    );
    err(
        edge.admin(
            "DELETE",
            &format!("/admin/tenants/{}/api-keys/key_ffffffffffffffffffff", t.id),
            None,
        ),
        404,
        "api_key_not_found",
        None,
    );
}

fn errors_list_params(edge: &Edge) {
    let t = tenant(edge, "list params");
    let k = t.key.as_str();
    let get = |q: &str| edge.call("GET", &format!("/v1/calls?{q}"), k, None);
    for (q, field) in [
        ("status=bogus", "status"),
        ("status=queued,bogus", "status"),
        ("status=queued,", "status"),
        // Given, a filter names at least one status (the OpenAPI array has minItems 1).
        ("status=", "status"),
        ("status=queued,%20scheduled", "status"),
        ("status=QUEUED", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=1.5", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("foo=1", "foo"),
        ("page=2", "page"),
        ("Limit=5", "Limit"),
        ("limit=5&limit=5", "limit"),
        ("status=queued&status=scheduled", "status"),
        ("cursor=a&cursor=a", "cursor"),
    ] {
        err(get(q), 400, "invalid_parameter", Some(field));
    }
    for bad in ["abc", "", "eyJrIjoiIiwiZiI6IiJ9", "!!!", "eyJ4IjoxfQ"] {
        err(
            get(&format!("cursor={bad}")),
            400,
            "invalid_cursor",
            Some("cursor"),
        );
    }
    // Cursors shaped like ours but forged (the KV cursor inside is opaque and
    // unsigned): never a 5xx, never another tenant's rows; this tenant has no
    // calls, so a 200 must be an empty page.
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let other = tenant(edge, "list params other");
    new_call(edge, &other.key, json!({}));
    let other_prefix =
        base64::engine::general_purpose::STANDARD.encode(format!("call/{}/", other.id));
    for k in [
        "bogus",
        "AAAA",
        other_prefix.as_str(),
        "x".repeat(2000).as_str(),
    ] {
        for f in ["", "queued"] {
            let q = if f.is_empty() {
                String::new()
            } else {
                format!("&status={f}")
            };
            let r = get(&format!("cursor={}{q}", b64(&json!({"k": k, "f": f}))));
            if r.status == 200 {
                assert_eq!(r.json["data"], json!([]), "forged cursor {k}: {}", r.text);
            } else {
                err(r, 400, "invalid_cursor", Some("cursor"));
            }
        }
    }
    // Valid edges of the parameters.
    for q in ["limit=1", "limit=100", "status=queued,scheduled,dialing,ringing,in_progress,completed,failed,no_answer,busy,cancelled", "status=queued%2Ccancelled", ""] {
        let r = get(q).expect(200);
        assert_eq!(r.json["object"], "list", "{q}");
    }
}

fn fuzz_bodies(edge: &Edge) {
    let t = tenant(edge, "fuzz");
    let deep_arrays = format!(
        "{{\"phone\":\"+14155550100\",\"metadata\":{{\"a\":{}{}}}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let deep_objects = format!(
        "{{\"phone\":\"+14155550100\",\"metadata\":{}1{}}}",
        "{\"a\":".repeat(300),
        "}".repeat(300)
    );
    // Under the size limit, far over serde_json's nesting limit.
    let unclosed = "[".repeat(60_000);
    let long_key = format!("{{\"{}\":1}}", "k".repeat(20_000));
    let many_keys = format!(
        "{{{}}}",
        (0..2000)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"   ".to_vec(),
        b"null".to_vec(),
        b"true".to_vec(),
        b"42".to_vec(),
        b"\"+14155550100\"".to_vec(),
        b"[]".to_vec(),
        br#"[{"phone":"+14155550100"}]"#.to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        br#"{"phone":}"#.to_vec(),
        br#"{"phone":"+14155550100",}"#.to_vec(),
        br#"{'phone':'+14155550100'}"#.to_vec(),
        br#"{phone:"+14155550100"}"#.to_vec(),
        br#"{"phone":"+14155550100"} trailing"#.to_vec(),
        br#"{"phone":"+14155550100"}{"phone":"+14155550100"}"#.to_vec(),
        br#"{"phone":"+14155550100","phone":"+14155550100"}"#.to_vec(),
        br#"{"phone":"bad","phone":"+14155550100"}"#.to_vec(),
        br#"{"phone":"+14155550100","metadata":{"a":1,"a":2}}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":NaN}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":"NaN"}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":Infinity}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":-Infinity}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":1e400}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":99999999999999999999999}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":-99999999999999999999999}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":1e300}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":0.5}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":300.0000001}"#.to_vec(),
        br#"{"phone":"+14155550100","retries":1.7976931348623157e308}"#.to_vec(),
        br#"{"phone":"+14155550100","retry_delay_minutes":-0.0}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":0x10}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":0123}"#.to_vec(),
        br#"{"phone":"+14155550100","max_seconds":true}"#.to_vec(),
        deep_arrays.into_bytes(),
        deep_objects.into_bytes(),
        unclosed.into_bytes(),
        br#"{"phone":"\ud800"}"#.to_vec(),
        b"{\"phone\":\"\xff\xfe\"}".to_vec(),
        b"\xef\xbb\xbf{\"phone\":\"+14155550100\"}".to_vec(),
        "{\"phone\":\"+١٤١٥٥٥٥٠١٠٠\"}".as_bytes().to_vec(),
        br#"{"phone":"+14155550100\u0000"}"#.to_vec(),
        "{\"phone\":\"＋14155550100\"}".as_bytes().to_vec(),
        br#"{"phone":null}"#.to_vec(),
        br#"{"phone":{"number":"+14155550100"}}"#.to_vec(),
        br#"{"phone":"+14155550100","metadata":null,"name":{"first":"x"}}"#.to_vec(),
        "{\"phone\":\"+14155550100\",\"email\":\"ü@ü\"}"
            .as_bytes()
            .to_vec(),
        "{\"phone\":\"+14155550100\",\"language\":\"🙂\"}"
            .as_bytes()
            .to_vec(),
        "{\"phone\":\"+14155550100\",\"voice\":\"ƒ\"}"
            .as_bytes()
            .to_vec(),
        format!(
            "{{\"phone\":\"+14155550100\",\"name\":\"{}\"}}",
            "🙂".repeat(201)
        )
        .into_bytes(),
        br#"{"\u0000":1}"#.to_vec(),
        br#"{"":""}"#.to_vec(),
        br#"{"phone":"+14155550100","__proto__":{}}"#.to_vec(),
        br#"{"phone":"+14155550100","schedule_at":"2026-02-30T00:00:00Z"}"#.to_vec(),
        br#"{"phone":"+14155550100","schedule_at":"-0001-01-01T00:00:00Z"}"#.to_vec(),
        br#"{"phone":"+14155550100","schedule_at":"1969-12-31T23:59:59Z"}"#.to_vec(),
        br#"{"phone":"+14155550100","agent_id":"agt_../../tenant/x"}"#.to_vec(),
        br#"{"phone":"+14155550100","metadata":"{}"}"#.to_vec(),
        b"\t\n{\"phone\" : \"+14155550100\" , \"x\" : 1}\n".to_vec(),
        br#"{"phone":"+14155550100"/* comment */}"#.to_vec(),
        b"{\"phone\":\"+14155550100\"}\x00".to_vec(),
        long_key.into_bytes(),
        many_keys.into_bytes(),
    ];
    assert!(bodies.len() >= 50, "{} bodies", bodies.len());
    for (i, body) in bodies.iter().enumerate() {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).to_string();
        let r = post_raw(edge, "/v1/calls", &t.key, Some(JSON_CT), body);
        assert!(
            (400..500).contains(&r.status),
            "body #{i} {shown:?}: status {} {}",
            r.status,
            &r.text[..r.text.len().min(300)]
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "body #{i} {shown:?}"
        );
        let e = &r.json["error"];
        assert_eq!(
            r.json.as_object().map(|o| o.len()),
            Some(1),
            "body #{i} {shown:?}: not the error shape: {}",
            r.text
        );
        assert!(
            e["code"].as_str().is_some_and(|c| !c.is_empty()),
            "body #{i} {shown:?}: {}",
            r.text
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body #{i} {shown:?}: {}",
            r.text
        );
        assert!(
            e.get("field").is_some_and(|f| f.is_null() || f.is_string()),
            "body #{i} {shown:?}: {}",
            r.text
        );
        assert_eq!(
            e.as_object().map(|o| o.len()),
            Some(3),
            "body #{i} {shown:?}: {}",
            r.text
        );
        assert_eq!(
            Some(r.status),
            status_of(e["code"].as_str().unwrap()),
            "body #{i} {shown:?}: status matches code"
        );
    }
    // Nothing was created by any of them.
    let list = edge.call("GET", "/v1/calls", &t.key, None).expect(200).json;
    assert_eq!(list["data"], json!([]), "a fuzz body created a call");
    // Duplicate keys are refused as invalid JSON (no "last one wins" ambiguity).
    let r = post_raw(
        edge,
        "/v1/calls",
        &t.key,
        Some(JSON_CT),
        br#"{"phone":"+14155550100","phone":"+14155550100"}"#,
    );
    err(r, 400, "invalid_json", None);
}

/// Status for each documented code (the catalogue in edge/src/error.rs).
fn status_of(code: &str) -> Option<u16> {
    Some(match code {
        "invalid_json" | "unknown_field" | "invalid_parameter" | "invalid_cursor" => 400,
        "missing_credentials" | "invalid_credentials" => 401,
        "tenant_disabled" => 403,
        "not_found" | "call_not_found" | "tenant_not_found" | "agent_not_found"
        | "api_key_not_found" => 404,
        "method_not_allowed" => 405,
        "agent_disabled" => 409,
        "payload_too_large" => 413,
        "unsupported_media_type" => 415,
        "missing_field"
        | "invalid_type"
        | "invalid_value"
        | "value_too_long"
        | "out_of_range"
        | "invalid_phone_number"
        | "invalid_email"
        | "invalid_language"
        | "invalid_timestamp"
        | "schedule_in_past"
        | "metadata_too_large"
        | "unknown_agent"
        | "agent_required"
        | "invalid_url" => 422,
        "rate_limited" => 429,
        "internal_error" => 500,
        "storage_unavailable" => 503,
        _ => return None,
    })
}

fn get_call(edge: &Edge) {
    let t = tenant(edge, "get");
    let c = new_call(
        edge,
        &t.key,
        json!({"name": "Grace", "metadata": {"k": "v"}}),
    );
    let id = str_of(&c["id"]);
    let g = edge
        .call("GET", &format!("/v1/calls/{id}"), &t.key, None)
        .expect(200);
    assert_eq!(g.json, c);
    assert_eq!(g.header("cache-control"), Some("no-store"));
    // A second key of the same tenant sees the same call.
    let k2 = new_key(edge, &t.id);
    assert_eq!(
        edge.call("GET", &format!("/v1/calls/{id}"), &k2, None)
            .expect(200)
            .json,
        c
    );
    // A query string is ignored by the single-call route.
    assert_eq!(
        edge.call("GET", &format!("/v1/calls/{id}?x=1"), &t.key, None)
            .expect(200)
            .json["id"],
        id.as_str()
    );
}

fn list_pagination(edge: &Edge) {
    let t = tenant(edge, "pages");
    let empty = edge.call("GET", "/v1/calls", &t.key, None).expect(200).json;
    assert_eq!(
        empty,
        json!({"object": "list", "data": [], "has_more": false, "next_cursor": null})
    );
    let mut created = Vec::new();
    for i in 0..12 {
        let c = new_call(
            edge,
            &t.key,
            json!({"name": format!("n{i}"), "phone": format!("+1415555{:04}", i)}),
        );
        created.push(str_of(&c["id"]));
        // Ids sort by creation millisecond: keep creations in distinct ms.
        std::thread::sleep(Duration::from_millis(3));
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    // Default page (20) holds everything, newest first.
    let all = edge.call("GET", "/v1/calls", &t.key, None).expect(200).json;
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["has_more"], false);
    assert!(all["next_cursor"].is_null());
    // Summary rows.
    let row = &all["data"][0];
    assert_eq!(row["object"], "call");
    assert_eq!(row["status"], "queued");
    assert_eq!(row["phone"], "+14155550011");
    assert_eq!(row["agent_id"], t.agent_id.as_str());
    assert!(
        row["created_at"].is_string()
            && row["updated_at"].is_string()
            && row["ended_reason"].is_null(),
        "{row}"
    );
    let created_at: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(&r["created_at"]))
        .collect();
    assert!(
        created_at.windows(2).all(|w| w[0] >= w[1]),
        "created_at not descending: {created_at:?}"
    );

    // Every page size walks all calls exactly once, in order.
    for limit in [1, 5, 4, 11, 12, 13, 100] {
        let (rows, pages) = walk(edge, &t.key, "", limit);
        let got = row_ids(&rows);
        assert_no_duplicates(&got);
        assert_eq!(got, newest_first, "limit {limit}");
        assert_eq!(
            pages,
            12usize.div_ceil(limit as usize).max(1),
            "limit {limit}: pages"
        );
    }
    // has_more/next_cursor on the first page.
    let p1 = edge
        .call("GET", "/v1/calls?limit=5", &t.key, None)
        .expect(200)
        .json;
    assert_eq!(p1["has_more"], true);
    assert_eq!(ids(&p1), newest_first[..5].to_vec());
    let cur = str_of(&p1["next_cursor"]);
    // The same cursor can be replayed and gives the same page.
    let p2a = edge
        .call(
            "GET",
            &format!("/v1/calls?limit=5&cursor={cur}"),
            &t.key,
            None,
        )
        .expect(200)
        .json;
    let p2b = edge
        .call(
            "GET",
            &format!("/v1/calls?limit=5&cursor={cur}"),
            &t.key,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(ids(&p2a), newest_first[5..10].to_vec());
    assert_eq!(ids(&p2a), ids(&p2b));
    // A different limit with the same cursor is fine (the filter is what binds).
    let p2c = edge
        .call(
            "GET",
            &format!("/v1/calls?limit=100&cursor={cur}"),
            &t.key,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(ids(&p2c), newest_first[5..].to_vec());
    assert_eq!(p2c["has_more"], false);
    // A cursor from an unfiltered listing is refused with a filter, and vice versa.
    err(
        edge.call(
            "GET",
            &format!("/v1/calls?limit=5&status=queued&cursor={cur}"),
            &t.key,
            None,
        ),
        400,
        "invalid_cursor",
        Some("cursor"),
    );
    let f1 = edge
        .call("GET", "/v1/calls?limit=2&status=queued", &t.key, None)
        .expect(200)
        .json;
    let fcur = str_of(&f1["next_cursor"]);
    err(
        edge.call(
            "GET",
            &format!("/v1/calls?limit=2&cursor={fcur}"),
            &t.key,
            None,
        ),
        400,
        "invalid_cursor",
        Some("cursor"),
    );
    err(
        edge.call(
            "GET",
            &format!("/v1/calls?limit=2&status=cancelled&cursor={fcur}"),
            &t.key,
            None,
        ),
        400,
        "invalid_cursor",
        Some("cursor"),
    );
    err(
        edge.call(
            "GET",
            &format!("/v1/calls?limit=2&status=queued,scheduled&cursor={fcur}"),
            &t.key,
            None,
        ),
        400,
        "invalid_cursor",
        Some("cursor"),
    );
    edge.call(
        "GET",
        &format!("/v1/calls?limit=2&status=queued&cursor={fcur}"),
        &t.key,
        None,
    )
    .expect(200);
    // A tampered cursor is refused.
    let mut tampered = cur.clone();
    tampered.insert(3, 'A');
    err(
        edge.call("GET", &format!("/v1/calls?cursor={tampered}"), &t.key, None),
        400,
        "invalid_cursor",
        Some("cursor"),
    );

    // New calls made mid-walk don't disturb the pages already handed out:
    // the walk still yields every old call exactly once.
    let p1 = edge
        .call("GET", "/v1/calls?limit=4", &t.key, None)
        .expect(200)
        .json;
    let mut seen = ids(&p1);
    new_call(edge, &t.key, json!({}));
    let mut cursor = str_of(&p1["next_cursor"]);
    loop {
        let p = edge
            .call(
                "GET",
                &format!("/v1/calls?limit=4&cursor={cursor}"),
                &t.key,
                None,
            )
            .expect(200)
            .json;
        seen.extend(ids(&p));
        match p["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_no_duplicates(&seen);
    assert_eq!(seen, newest_first);
}

fn list_status_filter(edge: &Edge) {
    let t = tenant(edge, "filters");
    let k = t.key.as_str();
    let mut queued = Vec::new();
    let mut scheduled = Vec::new();
    let mut cancelled = Vec::new();
    for i in 0..15 {
        let c = if i % 3 == 2 {
            new_call(edge, k, json!({"schedule_at": from_now(7200)}))
        } else {
            new_call(edge, k, json!({}))
        };
        let id = str_of(&c["id"]);
        // Cancel every queued call with i % 5 == 0 and the scheduled one at i == 8.
        if i % 5 == 0 || i == 8 {
            edge.call("POST", &format!("/v1/calls/{id}/hangup"), k, None)
                .expect(200);
            cancelled.push(id);
        } else if i % 3 == 2 {
            scheduled.push(id);
        } else {
            queued.push(id);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!((queued.len(), scheduled.len(), cancelled.len()), (8, 3, 4));
    let all: BTreeSet<String> = queued
        .iter()
        .chain(&scheduled)
        .chain(&cancelled)
        .cloned()
        .collect();
    for limit in [1, 2, 3, 100] {
        let check = |query: &str, want: &BTreeSet<String>, status: &[&str]| {
            let (rows, _) = walk(edge, k, query, limit);
            let got = row_ids(&rows);
            assert_no_duplicates(&got);
            assert_eq!(set(&got), *want, "{query} limit {limit}");
            for r in &rows {
                assert!(
                    status.contains(&r["status"].as_str().unwrap()),
                    "{query}: row {r}"
                );
            }
        };
        check("status=cancelled", &set(&cancelled), &["cancelled"]);
        check("status=queued", &set(&queued), &["queued"]);
        check("status=scheduled", &set(&scheduled), &["scheduled"]);
        let waiting: BTreeSet<String> = queued.iter().chain(&scheduled).cloned().collect();
        check(
            "status=queued,scheduled",
            &waiting,
            &["queued", "scheduled"],
        );
        check(
            "status=scheduled%2Cqueued",
            &waiting,
            &["queued", "scheduled"],
        );
        check("status=completed", &BTreeSet::new(), &[]);
        check(
            "status=cancelled,completed,failed",
            &set(&cancelled),
            &["cancelled"],
        );
        check("", &all, &["queued", "scheduled", "cancelled"]);
    }
    // Filtered rows come newest first as well, and cancelled rows carry their reason.
    let (rows, _) = walk(edge, k, "status=cancelled", 100);
    let mut want = cancelled.clone();
    want.reverse();
    assert_eq!(row_ids(&rows), want);
    for r in &rows {
        assert_eq!(r["ended_reason"], "hangup_requested", "{r}");
        assert!(r["updated_at"].as_str() >= r["created_at"].as_str(), "{r}");
    }
    // A filtered page never exceeds its limit even when many rows match.
    let p = edge
        .call("GET", "/v1/calls?limit=2&status=queued", k, None)
        .expect(200)
        .json;
    assert_eq!(p["data"].as_array().unwrap().len(), 2);
    assert_eq!(p["has_more"], true);
}

fn hangup(edge: &Edge) {
    let t = tenant(edge, "hangup");
    let k = t.key.as_str();
    let c = new_call(edge, k, json!({}));
    let id = str_of(&c["id"]);
    std::thread::sleep(Duration::from_millis(3));
    let h = edge
        .call("POST", &format!("/v1/calls/{id}/hangup"), k, None)
        .expect(200)
        .json;
    assert_eq!(h["id"], id.as_str());
    assert_eq!(h["status"], "cancelled");
    assert_eq!(h["ended_reason"], "hangup_requested");
    let ended = str_of(&h["ended_at"]);
    assert!(
        ended.ends_with('Z') && ended.as_str() >= c["created_at"].as_str().unwrap(),
        "{h}"
    );
    assert_eq!(h["hangup_requested_at"], h["ended_at"]);
    assert_eq!(h["updated_at"], h["ended_at"]);
    assert_eq!(h["created_at"], c["created_at"]);
    assert_eq!(h["phone"], c["phone"]);
    // Idempotent: the same body again, and GET agrees.
    std::thread::sleep(Duration::from_millis(3));
    let again = edge
        .call("POST", &format!("/v1/calls/{id}/hangup"), k, None)
        .expect(200)
        .json;
    assert_eq!(again, h);
    assert_eq!(
        edge.call("GET", &format!("/v1/calls/{id}"), k, None)
            .expect(200)
            .json,
        h
    );
    // An empty JSON object body is accepted; anything else in the body is not.
    let c2 = new_call(edge, k, json!({}));
    let id2 = str_of(&c2["id"]);
    let hp = format!("/v1/calls/{id2}/hangup");
    err(
        edge.call("POST", &hp, k, Some(&json!({"reason": "x"}))),
        400,
        "unknown_field",
        Some("reason"),
    );
    err(
        post_raw(edge, &hp, k, Some("text/plain"), b"stop"),
        415,
        "unsupported_media_type",
        None,
    );
    err(
        post_raw(edge, &hp, k, Some(JSON_CT), b"{"),
        400,
        "invalid_json",
        None,
    );
    assert_eq!(
        edge.call("GET", &format!("/v1/calls/{id2}"), k, None)
            .expect(200)
            .json["status"],
        "queued",
        "failed hangups change nothing"
    );
    assert_eq!(
        edge.call("POST", &hp, k, Some(&json!({}))).expect(200).json["status"],
        "cancelled"
    );
    // Scheduled -> cancelled.
    let s = new_call(edge, k, json!({"schedule_at": from_now(86_400)}));
    assert_eq!(s["status"], "scheduled");
    let hs = edge
        .call(
            "POST",
            &format!("/v1/calls/{}/hangup", str_of(&s["id"])),
            k,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(hs["status"], "cancelled");
    assert_eq!(hs["ended_reason"], "hangup_requested");
    assert!(hs["ended_at"].is_string());
    assert_eq!(hs["schedule_at"], s["schedule_at"]);
    // The listing shows the new status.
    let list = edge
        .call("GET", "/v1/calls?status=cancelled", k, None)
        .expect(200)
        .json;
    assert_eq!(
        set(&ids(&list)),
        set(&[id.clone(), id2.clone(), str_of(&s["id"])])
    );
}

fn tenant_isolation(edge: &Edge) {
    let a = tenant(edge, "iso a");
    let b = tenant(edge, "iso b");
    let mut a_ids = Vec::new();
    for _ in 0..5 {
        a_ids.push(str_of(&new_call(edge, &a.key, json!({}))["id"]));
    }
    let b_own = str_of(&new_call(edge, &b.key, json!({}))["id"]);
    for id in &a_ids {
        err(
            edge.call("GET", &format!("/v1/calls/{id}"), &b.key, None),
            404,
            "call_not_found",
            None,
        );
        err(
            edge.call("POST", &format!("/v1/calls/{id}/hangup"), &b.key, None),
            404,
            "call_not_found",
            None,
        );
    }
    // B's hangup attempts changed nothing.
    for id in &a_ids {
        assert_eq!(
            edge.call("GET", &format!("/v1/calls/{id}"), &a.key, None)
                .expect(200)
                .json["status"],
            "queued"
        );
    }
    // B's listings, filtered or not, paged or not, never hold A's calls.
    for query in ["", "status=queued", "status=queued,cancelled"] {
        for limit in [1, 2, 100] {
            let (rows, _) = walk(edge, &b.key, query, limit);
            assert_eq!(
                row_ids(&rows),
                vec![b_own.clone()],
                "B lists {query} limit {limit}"
            );
        }
    }
    // Not even with a cursor issued to A.
    let pa = edge
        .call("GET", "/v1/calls?limit=2", &a.key, None)
        .expect(200)
        .json;
    let ca = str_of(&pa["next_cursor"]);
    let r = edge.call(
        "GET",
        &format!("/v1/calls?limit=100&cursor={ca}"),
        &b.key,
        None,
    );
    if r.status == 200 {
        for id in ids(&r.json) {
            assert!(
                !a_ids.contains(&id),
                "A's call {id} leaked to B through A's cursor"
            );
        }
    } else {
        err(r, 400, "invalid_cursor", Some("cursor"));
    }
    // A still sees all of its own, and not B's.
    let (rows, _) = walk(edge, &a.key, "", 2);
    assert_eq!(set(&row_ids(&rows)), set(&a_ids));
}

fn z_error_code_coverage(edge: &Edge) {
    // Only meaningful after the whole suite: skip under a name filter.
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        println!("  (z_error_code_coverage: skipped under a filter)");
        return;
    }
    let _ = edge;
    let reachable: BTreeSet<String> = [
        "invalid_json",
        "unknown_field",
        "invalid_parameter",
        "invalid_cursor",
        "missing_credentials",
        "invalid_credentials",
        "tenant_disabled",
        "not_found",
        "call_not_found",
        "tenant_not_found",
        "agent_not_found",
        "api_key_not_found",
        "method_not_allowed",
        "agent_disabled",
        "payload_too_large",
        "unsupported_media_type",
        "missing_field",
        "invalid_type",
        "invalid_value",
        "value_too_long",
        "out_of_range",
        "invalid_phone_number",
        "invalid_email",
        "invalid_language",
        "invalid_timestamp",
        "schedule_in_past",
        "metadata_too_large",
        "unknown_agent",
        "agent_required",
        "invalid_url",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let seen = SEEN_CODES.lock().unwrap().clone();
    let missing: Vec<_> = reachable.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "error codes never asserted over HTTP: {missing:?}"
    );
    let unexpected: Vec<_> = seen.difference(&reachable).collect();
    assert!(
        unexpected.is_empty(),
        "codes outside the reachable catalogue: {unexpected:?}"
    );
}

/// Files under `dir`, recursively, read as bytes (kept as a lossy UTF-8 view).
fn read_tree(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            read_tree(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
}

/// Substring search over bytes. Needles are ASCII, so a lossy UTF-8 view keeps
/// every match, and std's (optimised) `str::contains` keeps the scan fast.
fn contains(hay: &str, needle: &str) -> bool {
    !needle.is_empty() && hay.contains(needle)
}

fn z_secrets_never_stored_in_clear(edge: &Edge) {
    // Mint, use and revoke keys here too, so the case stands on its own.
    let t = tenant(edge, "secrets");
    let extra = new_key(edge, &t.id);
    new_call(edge, &t.key, json!({}));
    edge.call("GET", "/v1/calls?limit=1", &extra, None)
        .expect(200);
    let kid = edge
        .admin("GET", &format!("/admin/tenants/{}/api-keys", t.id), None)
        .expect(200)
        .json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| extra.starts_with(k["prefix"].as_str().unwrap()) && k["id"] != t.key_id.as_str())
        .map(|k| str_of(&k["id"]))
        .expect("extra key listed");
    edge.admin(
        "DELETE",
        &format!("/admin/tenants/{}/api-keys/{kid}", t.id),
        None,
    )
    .expect(200);
    // Failed attempts with a key-looking token must not be logged either.
    let probe = format!("ak_probe{}", std::process::id());
    err(
        edge.call("GET", "/v1/calls", &probe, None),
        401,
        "invalid_credentials",
        None,
    );
    // Give workerd a moment to flush KV writes and log lines.
    std::thread::sleep(Duration::from_millis(300));

    let mut files = Vec::new();
    read_tree(&edge.state_dir, &mut files);
    assert!(
        !files.is_empty(),
        "no state files under {}",
        edge.state_dir.display()
    );
    let log = edge.log();
    assert!(
        log.contains("/v1/calls"),
        "the log holds no request lines; wrong log?"
    );
    let keys = MINTED_KEYS.lock().unwrap().clone();
    assert!(keys.len() >= 2, "{keys:?}");
    let mut secrets: Vec<(&str, String)> = keys.iter().map(|k| ("api key", k.clone())).collect();
    secrets.push(("admin token", edge.admin_token.clone()));
    secrets.push(("probe token", probe.clone()));
    for (what, secret) in &secrets {
        // The part after the (public) prefix is what must never appear.
        let body = secret
            .get(9..)
            .filter(|_| *what == "api key")
            .unwrap_or(secret)
            .to_string();
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, secret),
                "{what} {}... stored in clear in {path}",
                &secret[..6]
            );
            assert!(
                !contains(bytes, &body),
                "{what} body stored in clear in {path}"
            );
        }
        assert!(
            !log.contains(secret.as_str()),
            "{what} {}... in the edge log",
            &secret[..6]
        );
        assert!(!log.contains(body.as_str()), "{what} body in the edge log");
    }
    // Positive control: the keys' SHA-256 are in the state we searched.
    for key in [&t.key, &extra] {
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        assert!(
            files.iter().any(|(_, b)| contains(b, &hash)),
            "the key hash is not in {}: wrong place searched?",
            edge.state_dir.display()
        );
    }
}

fn main() -> std::process::ExitCode {
    run_suite(
        "edge_api",
        || {
            let mut opts = EdgeOptions::fresh("edge_api");
            // Long and unique, so finding it in state or logs cannot be a coincidence.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            opts.admin_token = format!("adm_{}_{nanos:x}", std::process::id());
            Edge::start(opts)
        },
        &[
            ("health", health),
            ("openapi", openapi),
            ("admin_auth", admin_auth),
            ("admin_tenants", admin_tenants),
            ("admin_agents", admin_agents),
            ("admin_api_keys", admin_api_keys),
            ("admin_webhooks", admin_webhooks),
            ("create_call_defaults", create_call_defaults),
            ("create_call_scheduled", create_call_scheduled),
            ("create_call_agent_resolution", create_call_agent_resolution),
            ("errors_routing", errors_routing),
            ("errors_auth", errors_auth),
            ("errors_body", errors_body),
            ("errors_payload_too_large", errors_payload_too_large),
            ("errors_fields", errors_fields),
            ("errors_not_found_ids", errors_not_found_ids),
            ("errors_list_params", errors_list_params),
            ("fuzz_bodies", fuzz_bodies),
            ("get_call", get_call),
            ("list_pagination", list_pagination),
            ("list_status_filter", list_status_filter),
            ("hangup", hangup),
            ("tenant_isolation", tenant_isolation),
            ("z_error_code_coverage", z_error_code_coverage),
            (
                "z_secrets_never_stored_in_clear",
                z_secrets_never_stored_in_clear,
            ),
        ],
    )
}
