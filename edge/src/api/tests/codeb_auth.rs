//! CodeB's callers (issue 14): tenant users minted by the admin API, the
//! token endpoint's password grant and its throttles, access tokens kept in
//! the tenant's `RateLimiter` object, and the bearer check of the REST paths.

use super::{World, ADMIN};
use crate::api::codeb_auth::{authenticate as codeb_authenticate, CodebCaller, CodebPrincipal};
use crate::api::env::Env;
use crate::dialects::codeb::{CodebError, TOKEN_LIFETIME_SECONDS, TOKEN_PATH};
use crate::http::{ApiRequest, ApiResponse};
use crate::model::keys;
use crate::sql::Sql;
use crate::store::{put_json, Kv};
use futures::executor::block_on;
use serde_json::{json, Value};

const HOST: &str = "phone.tenant-a.example";
const PASSWORD: &str = "correct horse";
const IP: &str = "203.0.113.7";

fn token_request(host: Option<&str>, ip: &str, form: &str) -> ApiRequest {
    let mut headers = vec![("cf-connecting-ip".to_string(), ip.to_string())];
    if let Some(h) = host {
        headers.push(("host".to_string(), h.to_string()));
    }
    ApiRequest {
        method: "POST".into(),
        scheme: "https".into(),
        path: TOKEN_PATH.into(),
        query: String::new(),
        content_type: Some("application/x-www-form-urlencoded".into()),
        authorization: None,
        body: form.as_bytes().to_vec(),
        headers,
    }
}

fn login_from(w: &World, host: &str, ip: &str, user: &str, password: &str) -> ApiResponse {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "password")
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("scope", "openid")
        .finish();
    w.send_req(&token_request(Some(host), ip, &form))
}

fn login(w: &World, user: &str, password: &str) -> ApiResponse {
    login_from(w, HOST, IP, user, password)
}

/// The access token of a successful login.
fn token_of(r: &ApiResponse) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body_json()["access_token"].as_str().unwrap().to_string()
}

fn oauth_error(r: &ApiResponse) -> String {
    r.body_json()["error"].as_str().unwrap_or("").to_string()
}

fn header<'r>(r: &'r ApiResponse, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `codeb_auth::authenticate` on a REST request at `host` with `bearer`.
fn authenticate(w: &World, host: &str, bearer: &str) -> Result<CodebPrincipal, CodebError> {
    w.now.set(w.now.get() + 1);
    w.traffic.now_ms.set(w.now.get());
    w.kv.now_ms.set(w.now.get());
    let env = Env {
        kv: &w.kv,
        dispatch_queues: &w.calls.dispatch_queues,
        now_ms: w.now.get(),
        admin_token: Some(ADMIN),
        dev_mode: false,
        default_region: "local",
        traffic: &w.traffic,
        calls: &w.calls,
        directory: &w.directory,
        outbox: &w.outbox,
        sealing_key: w.sealing.as_ref(),
        auth_failures: crate::traffic::AUTH_FAILURES,
        tool_http: &crate::webhooks::tool_calls::NoToolHttp,
        campaigns: &w.campaigns,
    };
    let req = ApiRequest {
        method: "GET".into(),
        scheme: "https".into(),
        path: "/api.ashx/v1/calls".into(),
        query: String::new(),
        content_type: None,
        authorization: Some(format!("Bearer {bearer}")),
        body: Vec::new(),
        headers: vec![
            ("host".into(), host.into()),
            ("cf-connecting-ip".into(), IP.into()),
        ],
    };
    block_on(codeb_authenticate(&env, &req))
}

fn username_of(p: &CodebPrincipal) -> &str {
    match &p.caller {
        CodebCaller::User { username } => username,
        other => panic!("not a user: {other:?}"),
    }
}

/// A tenant served at `host` with user `alice`; returns (tenant id, API key).
fn codeb_tenant(w: &World, host: &str) -> (String, String) {
    let (tid, key) = w.tenant(true);
    let t = w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"codeb_host": host})),
    );
    assert_eq!(t["codeb_host"], host);
    add_user(w, &tid, "alice", PASSWORD);
    (tid, key)
}

fn add_user(w: &World, tid: &str, name: &str, password: &str) -> Value {
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/users"),
        Some(ADMIN),
        Some(json!({"username": name, "password": password})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.body_json()
}

fn patch_user(w: &World, tid: &str, name: &str, body: Value) -> Value {
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/users/{name}"),
        Some(body),
    )
}

#[test]
fn users_are_managed_without_ever_showing_the_password() {
    let w = World::new();
    let (tid, _) = w.tenant(false);
    let up = format!("/admin/tenants/{tid}/users");
    let created = add_user(&w, &tid, "Alice@Example.com", PASSWORD);
    assert_eq!(created["username"], "alice@example.com", "lowercased");
    assert_eq!(created["disabled"], false);
    let stored: Value = serde_json::from_str(
        &block_on(w.kv.get(&keys::codeb_user(&tid, "alice@example.com")))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(stored["password_hash"]
        .as_str()
        .unwrap()
        .starts_with("$argon2id$v=19$"));
    let listed = w.admin("GET", &up, None);
    let shown = format!(
        "{created}{listed}{}",
        w.admin("GET", &format!("{up}/ALICE@example.com"), None)
    );
    assert!(!shown.contains(PASSWORD) && !shown.contains("argon2") && !shown.contains("hash"));
    assert_eq!(listed["data"][0]["username"], "alice@example.com");
    // Unique per tenant, whatever the case.
    let dup = w.send(
        "POST",
        &up,
        Some(ADMIN),
        Some(json!({"username": "ALICE@example.com", "password": PASSWORD})),
    );
    assert_eq!((dup.status, World::code(&dup)), (409, "user_exists".into()));
    for (body, code) in [
        (
            json!({"username": "a b", "password": PASSWORD}),
            "invalid_value",
        ),
        (
            json!({"username": "x".repeat(65), "password": PASSWORD}),
            "value_too_long",
        ),
        (
            json!({"username": "bob", "password": "short"}),
            "invalid_value",
        ),
        (json!({"username": "bob"}), "missing_field"),
        (json!({"password": PASSWORD}), "missing_field"),
    ] {
        let r = w.send("POST", &up, Some(ADMIN), Some(body.clone()));
        assert_eq!(World::code(&r), code, "{body}: {}", r.body);
    }
    let d = w.admin("DELETE", &format!("{up}/alice@example.com"), None);
    assert_eq!(d["deleted"], true);
    let gone = w.send("GET", &format!("{up}/alice@example.com"), Some(ADMIN), None);
    assert_eq!(
        (gone.status, World::code(&gone)),
        (404, "user_not_found".into())
    );
}

#[test]
fn codeb_hosts_are_validated_unique_and_indexed() {
    let w = World::new();
    let a = w.admin(
        "POST",
        "/admin/tenants",
        Some(json!({"name": "a", "codeb_host": "Phone.A.example:8443"})),
    );
    let aid = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["codeb_host"], "phone.a.example:8443", "lowercased");
    let index = |host: &str| block_on(w.kv.get(&keys::codeb_host(host))).unwrap();
    assert_eq!(index("phone.a.example:8443"), Some(format!("\"{aid}\"")));
    let bad = w.send(
        "POST",
        "/admin/tenants",
        Some(ADMIN),
        Some(json!({"name": "b", "codeb_host": "https://x.example"})),
    );
    assert_eq!(World::code(&bad), "invalid_value");
    let taken = w.send(
        "POST",
        "/admin/tenants",
        Some(ADMIN),
        Some(json!({"name": "b", "codeb_host": "phone.a.example:8443"})),
    );
    assert_eq!(World::code(&taken), "codeb_host_taken");
    // A change moves the index entry; null removes it.
    let tp = format!("/admin/tenants/{aid}");
    w.admin(
        "PATCH",
        &tp,
        Some(json!({"codeb_host": "phone.a2.example"})),
    );
    assert_eq!(index("phone.a.example:8443"), None);
    assert_eq!(index("phone.a2.example"), Some(format!("\"{aid}\"")));
    // The freed host can be claimed by another tenant.
    w.admin(
        "POST",
        "/admin/tenants",
        Some(json!({"name": "b", "codeb_host": "phone.a.example:8443"})),
    );
    let t = w.admin("PATCH", &tp, Some(json!({"codeb_host": null})));
    assert_eq!(t["codeb_host"], Value::Null);
    assert_eq!(index("phone.a2.example"), None);
    assert_eq!(
        crate::model::codeb_tenant_name(&serde_json::from_value(t).unwrap()),
        aid
    );
}

#[test]
fn a_user_trades_the_password_for_a_bearer_token() {
    let w = World::new();
    let (tid, _) = codeb_tenant(&w, HOST);
    let r = login(&w, "ALICE", PASSWORD);
    let token = token_of(&r);
    assert!(token.starts_with(&format!("cbt_{tid}_")), "{token}");
    let body = r.body_json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], TOKEN_LIFETIME_SECONDS);
    assert_eq!(body["scope"], "openid");
    assert_eq!(header(&r, "Cache-Control"), Some("no-store"));
    let p = authenticate(&w, HOST, &token).unwrap();
    assert_eq!(p.tenant.id, tid);
    assert_eq!(username_of(&p), "alice");
    assert_eq!(p.limit_key_id(), "codeb-user:alice");
    // Only the hash is stored.
    let stored = w.traffic.tokens.borrow()[&tid]
        .0
        .exec("SELECT token_hash, username FROM codeb_tokens", vec![])
        .unwrap();
    assert_eq!(
        stored,
        vec![vec![
            crate::ids::hash_api_key(&token).into(),
            "alice".into()
        ]]
    );
    assert_eq!(
        authenticate(&w, HOST, &format!("{token}0")),
        Err(CodebError::Unauthorized)
    );
    let other = token.replace(&tid, "ten_00000000000000000000");
    assert_eq!(
        authenticate(&w, HOST, &other),
        Err(CodebError::Unauthorized)
    );
}

#[test]
fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let w = World::new();
    codeb_tenant(&w, HOST);
    let wrong = login(&w, "alice", "not the password");
    let unknown = login(&w, "mallory", PASSWORD);
    let malformed = login(&w, "not a username!", PASSWORD);
    for r in [&wrong, &unknown, &malformed] {
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(oauth_error(r), "invalid_grant");
        assert_eq!(header(r, "Cache-Control"), Some("no-store"));
    }
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, malformed.body);
}

#[test]
fn a_disabled_user_gets_no_token() {
    let w = World::new();
    let (tid, _) = codeb_tenant(&w, HOST);
    patch_user(&w, &tid, "alice", json!({"disabled": true}));
    let r = login(&w, "alice", PASSWORD);
    assert_eq!((r.status, oauth_error(&r)), (400, "invalid_grant".into()));
    patch_user(&w, &tid, "alice", json!({"disabled": false}));
    token_of(&login(&w, "alice", PASSWORD));
    // The record's flag alone refuses too (whatever the tenant's object knows).
    let key = keys::codeb_user(&tid, "alice");
    let mut alice: crate::model::CodebUser =
        serde_json::from_str(&block_on(w.kv.get(&key)).unwrap().unwrap()).unwrap();
    alice.disabled = true;
    block_on(put_json(&w.kv, &key, &alice, None)).unwrap();
    let r = login(&w, "alice", PASSWORD);
    assert_eq!((r.status, oauth_error(&r)), (400, "invalid_grant".into()));
}

#[test]
fn failed_logins_of_one_user_are_throttled_from_any_address() {
    let w = World::new();
    let (tid, _) = codeb_tenant(&w, HOST);
    add_user(&w, &tid, "bob", PASSWORD);
    let limit = crate::traffic::LOGIN_FAILURES.limit;
    for i in 0..limit {
        let r = login_from(&w, HOST, &format!("198.51.100.{i}"), "alice", "guess");
        assert_eq!(oauth_error(&r), "invalid_grant", "attempt {i}");
    }
    // Even the right password, from a fresh address: refused before it is checked.
    let r = login_from(&w, HOST, "192.0.2.99", "alice", PASSWORD);
    assert_eq!((r.status, oauth_error(&r)), (429, "slow_down".into()));
    let retry: u64 = header(&r, "Retry-After").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= crate::traffic::LOGIN_FAILURES.window_seconds as u64);
    assert_eq!(header(&r, "Cache-Control"), Some("no-store"));
    // Another user is not held up.
    token_of(&login_from(&w, HOST, "192.0.2.99", "bob", PASSWORD));
    // Once the window has passed, alice may try again.
    w.now
        .set(w.now.get() + crate::traffic::LOGIN_FAILURES.window_seconds as u64 * 1000);
    token_of(&login_from(&w, HOST, "192.0.2.99", "alice", PASSWORD));
}

#[test]
fn failed_logins_from_one_address_are_throttled_across_users() {
    let w = World::new();
    codeb_tenant(&w, HOST);
    let limit = crate::traffic::AUTH_FAILURES.limit;
    for i in 0..limit {
        let r = login(&w, &format!("user{i}"), "guess");
        assert_eq!(oauth_error(&r), "invalid_grant", "attempt {i}");
    }
    let r = login(&w, "alice", PASSWORD);
    assert_eq!((r.status, oauth_error(&r)), (429, "slow_down".into()));
    assert!(header(&r, "Retry-After").is_some());
    // Another address is not held up.
    token_of(&login_from(&w, HOST, "192.0.2.1", "alice", PASSWORD));
}

#[test]
fn a_host_that_serves_no_tenant_mints_nothing() {
    let w = World::new();
    codeb_tenant(&w, HOST);
    let form = format!("grant_type=password&username=alice&password={PASSWORD}");
    // An index entry left behind for a host its tenant no longer has is not believed.
    let (tid, _) = codeb_tenant(&w, "phone.old.example");
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"codeb_host": "phone.new.example"})),
    );
    block_on(put_json(
        &w.kv,
        &keys::codeb_host("phone.old.example"),
        &tid,
        None,
    ))
    .unwrap();
    for host in [
        Some("phone.nobody.example"),
        None,
        Some("bad host"),
        Some("phone.old.example"),
    ] {
        let r = w.send_req(&token_request(host, IP, &form));
        assert_eq!(
            (r.status, oauth_error(&r)),
            (400, "invalid_request".into()),
            "{host:?}"
        );
        assert_eq!(header(&r, "Cache-Control"), Some("no-store"));
    }
    // Wrong method: 405 with Allow.
    let mut get = token_request(Some(HOST), IP, "");
    get.method = "GET".into();
    let r = w.send_req(&get);
    assert_eq!((r.status, header(&r, "Allow")), (405, Some("POST")));
}

#[test]
fn a_new_password_disabling_or_deleting_revokes_the_users_tokens() {
    let w = World::new();
    let (tid, _) = codeb_tenant(&w, HOST);
    add_user(&w, &tid, "bob", PASSWORD);
    let bobs = token_of(&login(&w, "bob", PASSWORD));
    let first = token_of(&login(&w, "alice", PASSWORD));
    let second = token_of(&login(&w, "alice", PASSWORD));
    // Enabling an enabled user changes nothing.
    patch_user(&w, &tid, "alice", json!({"disabled": false}));
    assert!(authenticate(&w, HOST, &first).is_ok());
    patch_user(&w, &tid, "alice", json!({"password": "a new password"}));
    for t in [&first, &second] {
        assert_eq!(authenticate(&w, HOST, t), Err(CodebError::Unauthorized));
    }
    let r = login(&w, "alice", PASSWORD);
    assert_eq!(oauth_error(&r), "invalid_grant", "the old password is void");
    let third = token_of(&login(&w, "alice", "a new password"));
    patch_user(&w, &tid, "alice", json!({"disabled": true}));
    assert_eq!(
        authenticate(&w, HOST, &third),
        Err(CodebError::Unauthorized)
    );
    patch_user(&w, &tid, "alice", json!({"disabled": false}));
    let fourth = token_of(&login(&w, "alice", "a new password"));
    w.admin("DELETE", &format!("/admin/tenants/{tid}/users/alice"), None);
    assert_eq!(
        authenticate(&w, HOST, &fourth),
        Err(CodebError::Unauthorized)
    );
    assert_eq!(
        oauth_error(&login(&w, "alice", "a new password")),
        "invalid_grant"
    );
    // Bob's token lives on.
    assert_eq!(username_of(&authenticate(&w, HOST, &bobs).unwrap()), "bob");
}

#[test]
fn a_stale_copy_of_a_changed_user_mints_nothing() {
    // KV may be up to 60 s stale at another location: a login there may
    // still read the old password. The tenant's object knows it is old.
    let w = World::new();
    let (tid, _) = codeb_tenant(&w, HOST);
    let key = keys::codeb_user(&tid, "alice");
    let before = block_on(w.kv.get(&key)).unwrap().unwrap();
    patch_user(&w, &tid, "alice", json!({"password": "a new password"}));
    block_on(w.kv.put(&key, &before, None)).unwrap();
    let r = login(&w, "alice", PASSWORD);
    assert_eq!((r.status, oauth_error(&r)), (400, "invalid_grant".into()));
    // And a user written to KV without the admin API (no credential in the object).
    let mut bob: crate::model::CodebUser = serde_json::from_str(&before).unwrap();
    bob.username = "bob".into();
    block_on(put_json(&w.kv, &keys::codeb_user(&tid, "bob"), &bob, None)).unwrap();
    assert_eq!(oauth_error(&login(&w, "bob", PASSWORD)), "invalid_grant");
}

#[test]
fn a_token_expires_after_its_lifetime() {
    let w = World::new();
    codeb_tenant(&w, HOST);
    let token = token_of(&login(&w, "alice", PASSWORD));
    w.now.set(w.now.get() + TOKEN_LIFETIME_SECONDS * 1000 - 10);
    assert!(authenticate(&w, HOST, &token).is_ok());
    w.now.set(w.now.get() + 10);
    assert_eq!(
        authenticate(&w, HOST, &token),
        Err(CodebError::Unauthorized)
    );
}

#[test]
fn a_user_keeps_only_the_newest_tokens() {
    let w = World::new();
    codeb_tenant(&w, HOST);
    let max = crate::traffic::tokens::MAX_TOKENS_PER_USER as usize;
    let tokens: Vec<String> = (0..=max)
        .map(|_| token_of(&login(&w, "alice", PASSWORD)))
        .collect();
    assert_eq!(
        authenticate(&w, HOST, &tokens[0]),
        Err(CodebError::Unauthorized)
    );
    assert!(authenticate(&w, HOST, &tokens[1]).is_ok());
    assert!(authenticate(&w, HOST, &tokens[max]).is_ok());
}

#[test]
fn native_api_keys_are_bearers_too_and_wrong_ones_are_throttled() {
    let w = World::new();
    let (tid, key) = codeb_tenant(&w, HOST);
    let p = authenticate(&w, HOST, &key).unwrap();
    assert_eq!(p.tenant.id, tid);
    assert!(matches!(p.caller, CodebCaller::ApiKey { .. }));
    assert!(p.limit_key_id().starts_with("key_"));
    assert_eq!(
        authenticate(&w, HOST, "ak_wrong"),
        Err(CodebError::Unauthorized)
    );
    for _ in 1..crate::traffic::AUTH_FAILURES.limit {
        assert_eq!(
            authenticate(&w, HOST, "ak_wrong"),
            Err(CodebError::Unauthorized)
        );
    }
    assert!(matches!(
        authenticate(&w, HOST, "ak_wrong"),
        Err(CodebError::RateLimited { retry_after_seconds }) if retry_after_seconds > 0
    ));
    // A valid key is not held up by its address's failures (as natively).
    assert!(authenticate(&w, HOST, &key).is_ok());
    // A key that must sign is refused: CodeB clients do not sign.
    let signed = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/api-keys"),
        Some(json!({"require_signature": true})),
    );
    let signed = signed["key"].as_str().unwrap();
    assert_eq!(
        authenticate(&w, HOST, signed),
        Err(CodebError::Unauthorized)
    );
}

#[test]
fn credentials_work_only_at_their_tenants_host() {
    let w = World::new();
    let (_, key_a) = codeb_tenant(&w, HOST);
    let host_b = "phone.tenant-b.example";
    let (_, key_b) = codeb_tenant(&w, host_b);
    let token_a = token_of(&login(&w, "alice", PASSWORD));
    let token_b = token_of(&login_from(&w, host_b, IP, "alice", PASSWORD));
    assert_ne!(
        authenticate(&w, HOST, &token_a).unwrap().tenant.id,
        authenticate(&w, host_b, &token_b).unwrap().tenant.id
    );
    for (host, bearer) in [
        (host_b, &token_a),
        (host_b, &key_a),
        (HOST, &token_b),
        (HOST, &key_b),
        ("phone.nobody.example", &token_a),
    ] {
        assert_eq!(
            authenticate(&w, host, bearer),
            Err(CodebError::Unauthorized),
            "{host}"
        );
    }
    // A key of a tenant without a codeb_host works at a host of no tenant only.
    let (_, key_c) = w.tenant(false);
    assert!(authenticate(&w, "edge.example", &key_c).is_ok());
    assert_eq!(
        authenticate(&w, HOST, &key_c),
        Err(CodebError::Unauthorized)
    );
}

#[test]
fn a_disabled_tenant_or_one_without_api_access_is_forbidden() {
    let w = World::new();
    let (tid, key) = codeb_tenant(&w, HOST);
    let token = token_of(&login(&w, "alice", PASSWORD));
    let tp = format!("/admin/tenants/{tid}");
    for (off, on) in [
        (json!({"disabled": true}), json!({"disabled": false})),
        (json!({"api_access": false}), json!({"api_access": true})),
    ] {
        w.admin("PATCH", &tp, Some(off));
        assert_eq!(authenticate(&w, HOST, &token), Err(CodebError::Forbidden));
        assert_eq!(authenticate(&w, HOST, &key), Err(CodebError::Forbidden));
        assert_eq!(oauth_error(&login(&w, "alice", PASSWORD)), "invalid_grant");
        w.admin("PATCH", &tp, Some(on));
        assert!(authenticate(&w, HOST, &token).is_ok());
    }
}
