//! The document against the code: every route, limit, pattern and response.

use super::builders::*;
use super::checker::*;
use super::patterns::*;
use super::*;
use crate::api::env::Env;
use crate::api::handle;
use crate::api::router::ROUTES;
use crate::api::router::{route, Match};
use crate::api::validate::{self, AGENT_FIELDS, CREATE_CALL_FIELDS};
use crate::api::webhooks::check_webhook_url;
use crate::error::ErrorCode;
use crate::http::{ApiRequest, ApiResponse};
use crate::limits::*;
use crate::model::Engine;
use crate::store::memory::MemoryKv;
use crate::store::{Kv, KvPage, StoreError};
use crate::traffic::memory::MemoryTraffic;
use crate::webhooks::events::WEBHOOK_EVENTS;
use futures::executor::block_on;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;
use voxline_shared::{CallStatus, EndedReason};

const NOW: u64 = 1_764_082_200_000; // 2025-11-25T14:50:00Z
const ADMIN: &str = "adm_openapi_test";
const JSON_CT: &str = "application/json";
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A KV that never answers.
struct DownKv;

impl Kv for DownKv {
    async fn get(&self, _: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn put(&self, _: &str, _: &str, _: Option<&Value>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn delete(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn list(&self, _: &str, _: u32, _: Option<&str>) -> Result<KvPage, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

/// The service over an in-memory KV; every response is checked against the spec.
struct Api {
    kv: MemoryKv,
    calls: crate::calls::store::memory::MemoryCalls<
        crate::calls::store::SqlCallRows<crate::sql::sqlite::LimitedSqlite>,
    >,
    traffic: MemoryTraffic,
    directory: crate::directory::memory::MemoryDirectory,
    campaigns: crate::campaigns::memory::MemoryCampaigns,
    /// Webhook jobs the requests queued.
    outbox: crate::webhooks::delivery::Outbox,
    spec: Value,
    checker: Checker,
    /// (METHOD, path pattern, status) answered so far.
    seen: RefCell<BTreeSet<(String, String, String)>>,
    sealing: crate::engine_keys::SealingKey,
    /// Wrong credentials allowed per address: unlimited but where a test lowers it.
    auth_limit: std::cell::Cell<u32>,
    /// Headers every request carries (an `Idempotency-Key`), where a test sets them.
    extra_headers: RefCell<Vec<(String, String)>>,
}

impl Api {
    fn new() -> Api {
        let spec = spec();
        Api {
            kv: MemoryKv::default(),
            calls: crate::calls::store::memory::test_calls(),
            traffic: MemoryTraffic::default(),
            directory: Default::default(),
            campaigns: Default::default(),
            outbox: Default::default(),
            checker: Checker::new(&spec),
            spec,
            seen: RefCell::default(),
            // The key test fixtures seal their secrets with.
            sealing: crate::webhooks::delivery::tests_support::sealing_key(),
            auth_limit: std::cell::Cell::new(crate::traffic::LIMIT_MAX),
            extra_headers: RefCell::default(),
        }
    }

    fn send_to<K: Kv>(
        &self,
        kv: &K,
        method: &str,
        target: &str,
        token: Option<&str>,
        ct: Option<&str>,
        body: &[u8],
    ) -> ApiResponse {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let req = ApiRequest {
            method: method.into(),
            scheme: "https".into(),
            path: path.into(),
            query: query.into(),
            content_type: ct.map(Into::into),
            authorization: token.map(|t| format!("Bearer {t}")),
            body: body.to_vec(),
            headers: self.extra_headers.borrow().clone(),
        };
        self.traffic.now_ms.set(NOW);
        self.calls.now_ms.set(NOW);
        self.calls.dispatch_queues.now_ms.set(NOW);
        self.campaigns.now_ms.set(NOW);
        let env = Env {
            kv,
            dispatch_queues: &self.calls.dispatch_queues,
            now_ms: NOW,
            admin_token: Some(ADMIN),
            dev_mode: true,
            default_region: "local",
            traffic: &self.traffic,
            calls: &self.calls,
            directory: &self.directory,
            outbox: &self.outbox,
            sealing_key: Some(&self.sealing),
            auth_failures: crate::traffic::RateLimit {
                limit: self.auth_limit.get(),
                ..crate::traffic::AUTH_FAILURES
            },
            campaigns: &self.campaigns,
            tool_http: &crate::webhooks::tool_calls::NoToolHttp,
        };
        let resp = block_on(handle(&env, &req));
        block_on(self.calls.drain(kv, &self.outbox)).unwrap();
        self.conform(method, path, &resp);
        resp
    }

    fn raw(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        ct: Option<&str>,
        body: &[u8],
    ) -> ApiResponse {
        self.send_to(&self.kv, method, target, token, ct, body)
    }

    fn send(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> ApiResponse {
        let text = body.map(Value::to_string).unwrap_or_default();
        self.raw(
            method,
            target,
            token,
            body.map(|_| JSON_CT),
            text.as_bytes(),
        )
    }

    fn admin(&self, method: &str, target: &str, body: Option<Value>) -> ApiResponse {
        self.send(method, target, Some(ADMIN), body.as_ref())
    }

    /// The response must be documented for its operation and status, and its body must match.
    fn conform(&self, method: &str, path: &str, resp: &ApiResponse) {
        // CodeB answers in its own shapes: codeb_answers_match_their_documented_schemas.
        if crate::dialects::codeb::route(method, path).is_some() {
            return;
        }
        let body = resp.body_json();
        let what = format!("{method} {path} -> {} {}", resp.status, resp.body);
        let pattern = match route(method, path) {
            Match::Found(id, _) => ROUTES.iter().find(|r| r.2 == id).map(|r| r.1).unwrap(),
            _ => {
                // No operation: the generic error shape.
                assert!(matches!(resp.status, 404 | 405), "{what}");
                self.checker
                    .check(&schema_ref("Error"), &body)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                return;
            }
        };
        let op = &self.spec["paths"][pattern][method.to_ascii_lowercase()];
        let status = resp.status.to_string();
        let Some(r) = op["responses"].get(&status) else {
            panic!("{what}: status {status} is not documented for {method} {pattern}")
        };
        let content_type = resp
            .headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        let media = content_type.map(|v| v.split(';').next().unwrap_or("").trim());
        if let Some(m) = media.filter(|m| *m != "application/json") {
            assert!(
                r["content"].get(m).is_some(),
                "{what}: {m} is not documented"
            );
            // Text (a transcript file, the console's page and assets) is the body itself.
            if !m.starts_with("text/") {
                assert!(
                    resp.stored_object.is_some(),
                    "{what}: a binary body comes from storage"
                );
            }
        } else {
            let schema = &r["content"]["application/json"]["schema"];
            self.checker
                .check(schema, &body)
                .unwrap_or_else(|e| panic!("{what}\ndoes not match the spec: {e}"));
        }
        if let Some(headers) = r.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                assert!(
                    resp.headers
                        .iter()
                        .any(|(h, _)| h.eq_ignore_ascii_case(name)),
                    "{what}: header {name} missing"
                );
            }
        }
        self.seen
            .borrow_mut()
            .insert((method.to_string(), pattern.to_string(), status));
    }
}

#[track_caller]
fn expect(resp: ApiResponse, status: u16) -> Value {
    assert_eq!(resp.status, status, "body: {}", resp.body);
    resp.body_json()
}

#[track_caller]
fn expect_error(resp: ApiResponse, status: u16, code: &str) -> Value {
    let body = expect(resp, status);
    assert_eq!(body["error"]["code"], code, "body: {body}");
    body
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

/// A tenant with a default agent, an API key, and one queued call; and a sidecar.
struct World {
    tid: String,
    aid: String,
    key: String,
    kid: String,
    /// A Calldock credential of the agent.
    dkid: String,
    cid: String,
    sid: String,
    /// A webhook endpoint and the delivery of the call's `call.queued` to it.
    wid: String,
    did: String,
    /// A CodeB user of the tenant.
    user: String,
    /// A phone number of the tenant; its directory user and queue are both
    /// `pk` 1 (each tenant's counters start at 1); a Voice360 key.
    number: String,
    v360kid: String,
    /// A text message the tenant sent from its number.
    mid: String,
    /// A contact of the tenant.
    conid: String,
    /// A campaign of the tenant (created, not started).
    cmpid: String,
}

/// A receiver that answers every delivery with one status.
struct Answer(u16);

impl crate::webhooks::delivery::WebhookHttp for Answer {
    async fn post(
        &self,
        _: &str,
        _: &[(String, String)],
        _: &str,
        _: u64,
    ) -> Result<crate::webhooks::delivery::HttpReply, String> {
        Ok(crate::webhooks::delivery::HttpReply {
            status: self.0,
            retry_after: None,
            body_snippet: Some("ok".into()),
        })
    }
}

/// Runs the queued webhook jobs as the queue consumer would; returns their delivery ids.
fn deliver_all(api: &Api) -> Vec<String> {
    let jobs = api.outbox.take();
    for job in &jobs {
        block_on(crate::webhooks::delivery::process(
            &api.kv,
            &Answer(200),
            job.clone(),
            &|| NOW,
            true,
            Some(&api.sealing),
        ))
        .unwrap();
    }
    jobs.into_iter().map(|j| j.delivery_id).collect()
}

fn provision(api: &Api, name: &str) -> World {
    let tid = id_of(&expect(
        api.admin("POST", "/admin/tenants", Some(json!({"name": name}))),
        201,
    ));
    let aid = id_of(&expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/agents"),
            Some(json!({"name": "agent"})),
        ),
        201,
    ));
    let k = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/api-keys"),
            Some(json!({"name": "k"})),
        ),
        201,
    );
    let key = k["key"].as_str().unwrap().to_string();
    let dk = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/dialect-keys"),
            Some(json!({"dialect": "calldock", "agent_id": aid})),
        ),
        201,
    );
    expect(
        api.admin(
            "PUT",
            &format!("/admin/tenants/{tid}/prompts/reminder"),
            Some(json!({"text": "Remind them."})),
        ),
        200,
    );
    let wh = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/webhooks"),
            Some(json!({"url": "https://hooks.example.com/h"})),
        ),
        201,
    );
    deliver_all(api);
    // Not the probes' number: one call at a time per agent and number.
    let call = expect(
        api.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(&json!({"phone": "+14155550199"})),
        ),
        201,
    );
    let did = deliver_all(api)
        .pop()
        .expect("call.queued was queued for the endpoint");
    let sid = format!("sc-{name}");
    expect(
        api.admin(
            "POST",
            "/admin/sidecars",
            Some(json!({"sidecar_id": sid, "region": "local"})),
        ),
        201,
    );
    let user = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/users"),
            Some(json!({"username": "alice", "password": "correct horse"})),
        ),
        201,
    )["username"]
        .as_str()
        .unwrap()
        .to_string();
    // Numbers are unique across tenants: one per provisioned tenant.
    static NEXT_NUMBER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let number = format!("+1415556{:04}", n % 10_000);
    expect(
        api.admin(
            "PUT",
            &format!("/admin/tenants/{tid}/numbers/{number}"),
            Some(json!({"name": "Main Line", "sms_enabled": true})),
        ),
        201,
    );
    let upk = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/directory/users"),
            Some(json!({"extension": "1001", "first_name": "John", "last_name": "Smith"})),
        ),
        201,
    )["pk"]
        .clone();
    assert_eq!(upk, 1);
    let qpk = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/directory/queues"),
            Some(json!({"name": "Sales Queue", "extension": "8001", "members": [1]})),
        ),
        201,
    )["pk"]
        .clone();
    assert_eq!(qpk, 1);
    let v360kid = id_of(&expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{tid}/voice360-keys"),
            Some(json!({"kind": "user", "user_pk": 1})),
        ),
        201,
    ));
    let message = expect(
        api.send(
            "POST",
            "/v1/messages",
            Some(&key),
            Some(&json!({"from": number, "to": "+14155550199", "body": "hello"})),
        ),
        202,
    );
    let contact = expect(
        api.send(
            "POST",
            "/v1/contacts",
            Some(&key),
            Some(&json!({"phone": "+14155550198"})),
        ),
        201,
    );
    let campaign = expect(
        api.send(
            "POST",
            "/v1/campaigns",
            Some(&key),
            Some(&json!({"contacts": [{"phone": "+14155550197"}]})),
        ),
        201,
    );
    World {
        mid: id_of(&message),
        conid: id_of(&contact),
        cmpid: id_of(&campaign),
        user,
        number,
        v360kid,
        tid,
        aid,
        key,
        kid: id_of(&k),
        dkid: id_of(&dk),
        cid: id_of(&call),
        sid,
        wid: id_of(&wh),
        did,
    }
}

/// A number of `tid` in KV, as the numbers admin API writes it.
/// Adds (or changes) a number of the tenant through the admin API.
fn put_number(api: &Api, tid: &str, e164: &str, sms_enabled: bool) {
    let r = api.admin(
        "PUT",
        &format!("/admin/tenants/{tid}/numbers/{e164}"),
        Some(json!({"sms_enabled": sms_enabled})),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
}

/// `pattern` with its `{params}` replaced.
fn fill(pattern: &str, value: impl Fn(&str) -> String) -> String {
    pattern
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => value(name),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn world_param(w: &World) -> impl Fn(&str) -> String + '_ {
    move |name| match name {
        "tenant_id" => w.tid.clone(),
        "agent_id" => w.aid.clone(),
        "key_id" => w.kid.clone(),
        "dialect_key_id" => w.dkid.clone(),
        "call_id" => w.cid.clone(),
        "sidecar_id" => w.sid.clone(),
        "webhook_id" => w.wid.clone(),
        "delivery_id" => w.did.clone(),
        "message_id" => w.mid.clone(),
        "contact_id" => w.conid.clone(),
        "campaign_id" => w.cmpid.clone(),
        "slug" => "reminder".to_string(),
        "username" => w.user.clone(),
        "number" => w.number.clone(),
        "pk" => "1".to_string(),
        "voice360_key_id" => w.v360kid.clone(),
        other => panic!("unknown path parameter {other}"),
    }
}

fn missing_id(name: &str) -> String {
    let prefix = match name {
        "tenant_id" => "ten",
        "agent_id" => "agt",
        "key_id" => "key",
        "dialect_key_id" => "dky",
        "call_id" => "call",
        "webhook_id" => "wh",
        "delivery_id" => "dlv",
        "message_id" => "msg",
        "contact_id" => "con",
        "campaign_id" => "cmp",
        "sidecar_id" => return "sc-missing".to_string(),
        "slug" => return "no-such-prompt".to_string(),
        "username" => return "nobody".to_string(),
        "number" => return "+19995550000".to_string(),
        "pk" => return "999999".to_string(),
        "voice360_key_id" => "v360k",
        other => panic!("unknown path parameter {other}"),
    };
    format!("{prefix}_00000000000000000000")
}

fn operation_of<'s>(spec: &'s Value, method: &str, pattern: &str) -> &'s Value {
    &spec["paths"][pattern][method.to_ascii_lowercase()]
}

fn security_of(spec: &Value, method: &str, pattern: &str) -> Option<String> {
    operation_of(spec, method, pattern)["security"]
        .as_array()
        .and_then(|s| s.first())
        .and_then(Value::as_object)
        .and_then(|o| o.keys().next().cloned())
}

// ---- the document against the code ----

/// Every status a dialect answers is documented with a body its schema
/// accepts: VoiceB's whole table, and each refusal of the others.
#[test]
fn dialect_answers_match_their_documented_schemas() {
    use crate::dialects::{buildvoiceai, calldock, voiceb, Refusal};
    let spec = spec();
    let check = |path: &str, status: u16, body: &str| {
        let op = operation_of(&spec, "POST", path);
        let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{path}: {status} undocumented");
        let value: Value = serde_json::from_str(body).unwrap();
        if let Err(e) = Checker::new(&spec).check(schema, &value) {
            panic!("{path} {status} {body}: {e}");
        }
    };
    for e in voiceb::CtcError::ALL {
        check(voiceb::PATH, e.status(), &e.body());
    }
    check(
        voiceb::PATH,
        200,
        &voiceb::accepted_body("call_fe5dc0d9e5c3f78c3f576f", "queued"),
    );
    let refusals = [
        Refusal::MissingCredentials,
        Refusal::InvalidCredentials,
        Refusal::AccessDisabled,
        Refusal::AgentLookupFailed,
        Refusal::AgentDisabled,
        Refusal::AgentNotConfigured,
        Refusal::InvalidSignature,
        Refusal::InvalidRequest("x".into()),
        Refusal::CallInProgress,
        Refusal::RateLimited {
            retry_after_seconds: 1,
        },
        Refusal::Internal,
    ];
    for r in &refusals {
        let e = buildvoiceai::BviError::from(r);
        check(buildvoiceai::PATH, e.status(), &e.body());
        let e = calldock::CalldockError::from(r);
        check(calldock::PATH, e.status(), &e.body());
    }
    check(
        buildvoiceai::PATH,
        200,
        &buildvoiceai::accepted_body("call_fe5dc0d9e5c3f78c3f576f"),
    );
    check(
        calldock::PATH,
        200,
        &calldock::accepted_body("call_fe5dc0d9e5c3f78c3f576f", NOW),
    );
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    let mut op_ids = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (key, op) in item.as_object().unwrap() {
            if HTTP_METHODS.contains(&key.as_str()) {
                documented.insert((key.to_ascii_uppercase(), path.clone()));
                let op_id = op["operationId"].as_str().expect("operationId");
                assert!(
                    op_ids.insert(op_id.to_string()),
                    "duplicate operationId {op_id}"
                );
                for field in ["summary", "description"] {
                    assert!(
                        op[field].as_str().is_some_and(|s| !s.is_empty()),
                        "{key} {path}: no {field}"
                    );
                }
                assert!(
                    op["responses"]
                        .as_object()
                        .is_some_and(|r| r.keys().any(|s| s.starts_with('2'))),
                    "{key} {path}"
                );
            } else {
                assert_eq!(key, "parameters", "{path}: unexpected path item key");
            }
        }
        // Path parameters: exactly the template's, declared once, required.
        let template = template_params(path);
        let declared: Vec<&str> = item["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        assert_eq!(
                            (p["in"].as_str(), p["required"].as_bool()),
                            (Some("path"), Some(true))
                        );
                        p["name"].as_str().unwrap()
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(template, declared, "{path}: path parameters");
    }
    let mut routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    // The dialects' paths, each under its dialect's tag and credentials.
    for d in crate::dialects::Dialect::ALL {
        for (method, path) in d.routes() {
            routes.insert((method.to_string(), path.to_string()));
            let op = operation_of(&spec, method, path);
            assert_eq!(op["tags"], json!([d.name()]), "{path}");
            let sec = security_of(&spec, method, path).expect("dialect security");
            assert!(
                spec["components"]["securitySchemes"][&sec].is_object(),
                "{path}: {sec}"
            );
        }
    }
    // CodeB's paths (edge/src/api/openapi/codeb.rs), each one `codeb::route` serves.
    let call = "oac-0123456789abcdef012345";
    for (method, template, concrete) in [
        ("POST", "/oidc.ashx/token", "/oidc.ashx/token".to_string()),
        (
            "POST",
            "/api.ashx/v1/calls",
            "/api.ashx/v1/calls".to_string(),
        ),
        (
            "GET",
            "/api.ashx/v1/calls",
            "/api.ashx/v1/calls".to_string(),
        ),
        (
            "GET",
            "/api.ashx/v1/calls/{call_id}",
            format!("/api.ashx/v1/calls/{call}"),
        ),
        (
            "POST",
            "/api.ashx/v1/calls/{call_id}/hangup",
            format!("/api.ashx/v1/calls/{call}/hangup"),
        ),
        (
            "GET",
            "/api.ashx/v1/transcripts/{name}",
            format!("/api.ashx/v1/transcripts/outbound-ai-20260623-120000-{call}.txt"),
        ),
    ] {
        routes.insert((method.to_string(), template.to_string()));
        assert_eq!(
            operation_of(&spec, method, template)["tags"],
            json!(["codeb"]),
            "{template}"
        );
        assert!(
            matches!(
                crate::dialects::codeb::route(method, &concrete),
                Some(crate::dialects::codeb::Routed::Operation(_))
            ),
            "{method} {concrete}"
        );
    }
    // Voice360's paths: voice360_tests::every_voice360_route_is_documented_and_nothing_else.
    documented.retain(|(_, p)| !p.starts_with(crate::dialects::voice360::PATH_PREFIX));
    assert_eq!(documented, routes);
    for (method, path, _) in ROUTES {
        let sec = security_of(&spec, method, path);
        // A recording link carries its own credential (its signature).
        // The console's page and assets hold no data: the page asks for credentials.
        let expected = if *path == "/healthz"
            || *path == "/v1/openapi.json"
            || *path == "/console"
            || path.starts_with("/console/")
            || path.starts_with("/v1/recordings/")
        {
            None
        } else if path.starts_with("/v1/") {
            Some("bearerAuth")
        } else {
            assert!(path.starts_with("/admin/"), "{path}: which credentials?");
            Some("adminBearerAuth")
        };
        assert_eq!(sec.as_deref(), expected, "{method} {path}: security");
        if let Some(s) = expected {
            assert!(spec["components"]["securitySchemes"][s]["scheme"] == "bearer");
        }
    }
}

#[test]
fn error_code_enum_is_error_code_all() {
    let spec = spec();
    let code = &spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"];
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(code["enum"], json!(all));
    let description = code["description"].as_str().unwrap();
    for c in ErrorCode::ALL {
        let line = format!("- `{}` ({}): {}", c.as_str(), c.http_status(), c.describe());
        assert!(description.contains(&line), "missing {line}");
    }
}

fn property_names(spec: &Value, schema: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn request_bodies_list_exactly_the_validated_fields() {
    let spec = spec();
    let set = |fields: &[&str]| {
        fields
            .iter()
            .map(|f| f.to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        property_names(&spec, "CreateCallRequest"),
        set(CREATE_CALL_FIELDS)
    );
    assert_eq!(
        spec["components"]["schemas"]["CreateCallRequest"]["required"],
        json!(["phone"])
    );
    assert_eq!(
        property_names(&spec, "CreateAgentRequest"),
        set(AGENT_FIELDS)
    );
    assert_eq!(
        property_names(&spec, "UpdateAgentRequest"),
        set(AGENT_FIELDS)
    );
    // Every request body is closed, like `parse_object`.
    for (method, path, _) in ROUTES {
        let body = &operation_of(&spec, method, path)["requestBody"];
        if body.is_null() {
            continue;
        }
        let r = body["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap();
        let schema = &spec["components"]["schemas"][r.rsplit('/').next().unwrap()];
        assert_eq!(
            schema["additionalProperties"],
            json!(false),
            "{method} {path}"
        );
    }
}

#[test]
fn documented_error_statuses_match_their_codes() {
    let spec = spec();
    for (method, path, _) in ROUTES {
        let responses = operation_of(&spec, method, path)["responses"]
            .as_object()
            .unwrap();
        for (status, r) in responses {
            let status: u16 = status.parse().unwrap();
            let schema = &r["content"]["application/json"]["schema"];
            if status < 400 {
                let binary = r["content"]
                    .as_object()
                    .is_some_and(|c| c.keys().all(|k| k != "application/json"));
                assert!(
                    schema["$ref"].is_string() || binary,
                    "{method} {path} {status}"
                );
                continue;
            }
            assert_eq!(
                schema["allOf"][0],
                schema_ref("Error"),
                "{method} {path} {status}"
            );
            let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                .as_array()
                .unwrap();
            assert!(!codes.is_empty());
            for code in codes {
                let c = ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str() == code)
                    .unwrap_or_else(|| panic!("unknown code {code}"));
                assert_eq!(
                    c.http_status(),
                    status,
                    "{method} {path}: {code} documented under {status}"
                );
                assert!(r["description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{}`", c.as_str())));
            }
        }
    }
}

#[test]
fn every_ref_resolves_and_every_schema_compiles() {
    let spec = spec();
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(spec.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    let checker = Checker::new(&spec);
    for name in spec["components"]["schemas"].as_object().unwrap().keys() {
        // Compiles (panics otherwise) and rejects a non-object where it wants an object.
        let _ = checker.check(&schema_ref(name), &json!(null));
    }
}

#[test]
fn a_parameter_inside_a_segment_is_declared_too() {
    assert_eq!(
        template_params("/v1/calls/{call_id}/transcript.{format}"),
        ["call_id", "format"]
    );
    let spec = spec();
    let params = &spec["paths"]["/v1/calls/{call_id}/transcript.{format}"]["parameters"];
    let names: Vec<&str> = params
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["call_id", "format"]);
    assert_eq!(params[1]["schema"]["enum"], json!(["txt", "json"]));
}

#[test]
fn transcript_and_recording_events_match_their_schemas() {
    use crate::calls::store::{apply_reports, memory::test_calls, CallRows, Report, ReportItem};
    use crate::dispatch::queue::{CallChange, CallUpdate};
    use crate::transcript::{Change, TranscriptUpdate, Turn};
    let spec = spec();
    let checker = Checker::new(&spec);
    let kv = MemoryKv::default();
    crate::webhooks::delivery::tests_support::endpoint(&kv, "ten_1", &["transcript.saved"]);
    let turn = Turn {
        role: crate::transcript::Role::Agent,
        text: "Hello".into(),
        start_ms: 0,
        end_ms: 900,
    };
    let cid = "call_0123456789abcdef";
    let calls = test_calls();
    let rows = calls.rows("ten_1");
    let mut live = crate::model::test_call(CallStatus::InProgress);
    live.id = cid.into();
    live.answered_at = Some("2026-11-25T14:50:01.000Z".into());
    rows.put_call(&live).unwrap();
    let up = |change| ReportItem::Transcript {
        update: TranscriptUpdate {
            tenant_id: "ten_1".into(),
            call_id: cid.into(),
            change,
        },
    };
    let ended = CallChange::Ended {
        status: CallStatus::Completed,
        reason: voxline_shared::EndedReason::CalleeHangup,
        sip_code: None,
    };
    let items = [
        up(Change::Turn(turn)),
        up(Change::Summary {
            summary: Some("s".into()),
            outcome: None,
        }),
        ReportItem::Call {
            update: CallUpdate {
                call_id: cid.into(),
                tenant_id: "ten_1".into(),
                at_ms: 1_780_000_000_000,
                change: ended,
            },
        },
    ];
    let reports: Vec<Report> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| Report {
            seq: i as u64 + 1,
            item,
        })
        .collect();
    apply_reports(&*rows, "local", &reports, 1_780_000_000_000, &mut |_| {}).unwrap();
    let outbox = crate::webhooks::delivery::Outbox::default();
    block_on(calls.drain(&kv, &outbox)).unwrap();
    let jobs = outbox.take();
    let payload: Value = serde_json::from_str(&jobs[0].payload).unwrap();
    checker
        .check(&schema_ref("WebhookTranscriptEvent"), &payload)
        .unwrap_or_else(|e| panic!("{payload}: {e}"));
    let info = crate::calls::store::RecordingInfo {
        attempt: 1,
        object_key: "k".into(),
        content_type: "audio/wav".into(),
        bytes: 44,
        sha256: "a".repeat(64),
        duration_ms: 0,
        saved_at: "2026-11-25T15:00:00.000Z".into(),
    };
    let rec = json!({"id": "evt_1", "type": "recording.saved", "timestamp": "2026-11-25T15:00:00.000Z", "data": info.to_public("call_0123456789abcdef")});
    checker
        .check(&schema_ref("WebhookRecordingEvent"), &rec)
        .unwrap_or_else(|e| panic!("{rec}: {e}"));
}

#[test]
fn dialect_post_call_bodies_match_their_schemas() {
    use crate::calls::store::{apply_reports, memory::test_calls, CallRows, Report, ReportItem};
    use crate::dispatch::queue::{CallChange, CallUpdate};
    use crate::model::{keys, WebhookFormat};
    use crate::transcript::{Change, Role, TranscriptUpdate, Turn};
    let spec = spec();
    let checker = Checker::new(&spec);
    let kv = MemoryKv::default();
    for format in [
        WebhookFormat::BuildVoiceAi,
        WebhookFormat::Calldock,
        WebhookFormat::Codeb,
    ] {
        let mut e = crate::webhooks::delivery::tests_support::endpoint_with(
            &kv,
            "ten_1",
            &[],
            crate::model::default_retry_schedule(),
        );
        e.format = format;
        block_on(crate::store::put_json(
            &kv,
            &keys::webhook("ten_1", &e.id),
            &e,
            None,
        ))
        .unwrap();
    }
    let calls = test_calls();
    let rows = calls.rows("ten_1");
    for (cid, status, answered) in [
        ("call_0123456789abcdef", CallStatus::Completed, true),
        ("call_0123456789abcdee", CallStatus::Busy, false),
    ] {
        let mut live = crate::model::test_call(CallStatus::Dialing);
        live.id = cid.into();
        live.agent_id = "agt_0123456789abcdef".into();
        live.name = Some("Ada".into());
        live.metadata = crate::model::Metadata::from_json_text(r#"{"crm":7}"#);
        live.dispatched_at = Some("2026-11-25T14:50:00.000Z".into());
        if answered {
            live.status = CallStatus::InProgress;
            live.answered_at = Some("2026-11-25T14:50:01.000Z".into());
        }
        rows.put_call(&live).unwrap();
        let up = |change| ReportItem::Transcript {
            update: TranscriptUpdate {
                tenant_id: "ten_1".into(),
                call_id: cid.into(),
                change,
            },
        };
        let mut items = Vec::new();
        if answered {
            for (role, text) in [(Role::Agent, "Hello"), (Role::Callee, "Yes, sure.")] {
                items.push(up(Change::Turn(Turn {
                    role,
                    text: text.into(),
                    start_ms: 0,
                    end_ms: 900,
                })));
            }
            items.push(up(Change::Summary {
                summary: Some("s".into()),
                outcome: Some("booked".into()),
            }));
        }
        items.push(ReportItem::Call {
            update: CallUpdate {
                call_id: cid.into(),
                tenant_id: "ten_1".into(),
                at_ms: 1_780_000_000_000,
                change: CallChange::Ended {
                    status,
                    reason: voxline_shared::EndedReason::CalleeHangup,
                    sip_code: None,
                },
            },
        });
        // Fresh region numbering per round: a new region.
        let reports: Vec<Report> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| Report {
                seq: i as u64 + 1,
                item,
            })
            .collect();
        let region = format!("r-{answered}");
        apply_reports(&*rows, &region, &reports, 1_780_000_000_000, &mut |_| {}).unwrap();
        let outbox = crate::webhooks::delivery::Outbox::default();
        block_on(calls.drain(&kv, &outbox)).unwrap();
        let jobs = outbox.take();
        // One per dialect endpoint; CodeB's transcript.saved too when answered.
        assert_eq!(jobs.len(), if answered { 4 } else { 3 });
        for job in jobs {
            let schema = match job.format {
                WebhookFormat::BuildVoiceAi => "BuildVoiceAiCallCompleted",
                WebhookFormat::Calldock => "CalldockPostCall",
                WebhookFormat::Codeb if job.payload.contains(r#""type":"transcript.saved""#) => {
                    "CodebTranscriptSaved"
                }
                WebhookFormat::Codeb => "CodebOutboundAiFinished",
                WebhookFormat::Native => panic!("no native endpoint"),
                WebhookFormat::Voice360 => panic!("no voice360 endpoint"),
            };
            let payload: Value = serde_json::from_str(&job.payload).unwrap();
            checker
                .check(&schema_ref(schema), &payload)
                .unwrap_or_else(|e| panic!("{schema} {payload}: {e}"));
            // A delivery's payload may be a dialect's.
            checker
                .check(
                    &spec["components"]["schemas"]["WebhookDelivery"]["properties"]["payload"],
                    &payload,
                )
                .unwrap_or_else(|e| panic!("{payload}: {e}"));
        }
    }
}

#[test]
fn generated_vocabularies_follow_the_code() {
    let spec = spec();
    let s = &spec["components"]["schemas"];
    let statuses: Vec<&str> = CallStatus::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(s["CallStatus"]["enum"], json!(statuses));
    assert_eq!(s["Engine"]["enum"], json!(Engine::NAMES));
    assert_eq!(s["WebhookEvent"]["enum"], json!(WEBHOOK_EVENTS));
    let formats: Vec<Value> = crate::model::WebhookFormat::ALL
        .iter()
        .map(|f| serde_json::to_value(f).unwrap())
        .collect();
    assert_eq!(s["WebhookFormat"]["enum"], json!(formats));
    for (i, r) in ENDED_REASONS.iter().enumerate() {
        assert_eq!(ended_reason_index(*r), i, "ENDED_REASONS is out of order");
        let name = &s["EndedReason"]["enum"][i];
        assert_eq!(
            serde_json::from_value::<EndedReason>(name.clone()).unwrap(),
            *r
        );
    }
    let limit = &operation_of(&spec, "GET", "/v1/calls")["parameters"][1];
    assert_eq!(limit["name"], "limit");
    assert_eq!(
        limit["schema"],
        json!({"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT})
    );
    assert!(spec["info"]["description"]
        .as_str()
        .unwrap()
        .contains(&MAX_BODY_BYTES.to_string()));
    assert_eq!(
        s["CreateCallRequest"]["properties"]["system_prompt"]["maxLength"],
        json!(MAX_PROMPT_CHARS)
    );
    // The clear key really has the documented shape.
    let key = crate::ids::mint_api_key();
    assert!(matches_pattern(
        s["ApiKeyCreated"]["properties"]["key"]["pattern"]
            .as_str()
            .unwrap(),
        &key.clear
    ));
}

#[test]
fn documented_patterns_agree_with_the_validators() {
    let j = Some(JSON_CT);
    for s in [
        "+14155550100",
        "+1234567",
        "+123456",
        "+123456789012345",
        "+1234567890123456",
        "+0123456789",
        "14155550100",
        "+1 415 555 0100",
        "+1415555o100",
        "",
        "+",
        "+٣٤٥٦٧٨٩٠",
        "+14155550100\n",
        "++14155550100",
    ] {
        let server = validate::check_e164("phone", s).is_ok();
        assert_eq!(matches_pattern(E164_PATTERN, s), server, "phone {s:?}");
    }
    let call_ok = |extra: Value| {
        let mut body = json!({"phone": "+14155550100"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        validate::create_call(j, body.to_string().as_bytes(), NOW).is_ok()
    };
    for s in [
        "a@b.c",
        "ada@example.org",
        "x.y+z@sub.example.co.uk",
        "nope",
        "@b.c",
        "a@.b",
        "a@b.",
        "a@b",
        "a@@b.c",
        "a b@c.d",
        "a@b..c",
        "a@b.c@d",
        "a@b.c\t",
        "a@.",
        "a@..",
        "é@ü.de",
    ] {
        assert_eq!(
            matches_pattern(EMAIL_PATTERN, s),
            call_ok(json!({"email": s})),
            "email {s:?}"
        );
    }
    for s in [
        "Reminder",
        "Dr. \"Who\" \\ Co",
        "é",
        " x ",
        "",
        " ",
        "\u{a0}",
        "a\nb",
        "a\r",
        "\t",
        "a\u{7f}",
        "a\u{85}",
    ] {
        assert_eq!(
            matches_pattern(CALLER_NAME_PATTERN, s),
            call_ok(json!({"caller_name": s})),
            "caller_name {s:?}"
        );
    }
    for s in [
        "a@b.c",
        "ops@yourcompany.example",
        "x.y+z@sub.example.co.uk",
        "o'brien@example-mail.ie",
        "nope",
        "@b.c",
        "a@b",
        "a@b.c\r\nBcc: x@evil.example",
        "a@b.c\n",
        "a b@c.d",
        "\"a\"@b.c",
        "a@b.c>",
        "<a@b.c",
        "a@b.c,x@evil.example",
        "a@-b.c",
        "a@b-.c",
        "a@b..c",
        ".a@b.c",
        "a..b@c.d",
        "é@ü.de",
        "a@[127.0.0.1]",
    ] {
        assert_eq!(
            matches_pattern(validate::TRANSCRIPT_EMAIL_PATTERN, s),
            call_ok(json!({"transcript_email": s})),
            "transcript_email {s:?}"
        );
    }
    for s in ["alloy", "a.b_c-d", "A1", "", "a b", "é", "a/b", "a\n"] {
        assert_eq!(
            matches_pattern(VOICE_PATTERN, s),
            call_ok(json!({"voice": s})),
            "voice {s:?}"
        );
    }
    let agent_pattern = spec()["components"]["schemas"]["CreateCallRequest"]["properties"]
        ["agent_id"]["pattern"]
        .clone();
    for s in [
        "agt_0011223344",
        "agt_00112233445566778899",
        "agt_001122334",
        "agt_ABCDEF0123",
        "agt_",
        "ten_0011223344",
        "agt_0011223344/x",
    ] {
        assert_eq!(
            matches_pattern(agent_pattern.as_str().unwrap(), s),
            crate::ids::is_id(s, "agt"),
            "agent id {s:?}"
        );
    }
    let long = "a".repeat(64);
    let too_long = "a".repeat(65);
    for s in [
        "sc-1",
        "a",
        "A.b_c-9",
        long.as_str(),
        too_long.as_str(),
        "",
        "-x",
        ".x",
        "a b",
        "a/b",
        "é",
    ] {
        assert_eq!(
            matches_pattern(SIDECAR_ID_PATTERN, s),
            voxline_shared::sidecar_link::is_valid_id(s),
            "sidecar id {s:?}"
        );
    }
    // Calling window times.
    let window = |start: &str, end: &str| {
        crate::calling_window::parse(
            &json!({"days": ["mon"], "start": start, "end": end, "time_zone": "UTC"}),
        )
        .map_err(|e| e.0)
    };
    for t in [
        "00:00", "09:30", "23:59", "24:00", "24:01", "9:00", "12:60", "ab:cd", "", "09:00:00",
    ] {
        assert_eq!(
            matches_pattern(crate::calling_window::TIME_PATTERN, t),
            window(t, "00:01").is_ok() || t == "00:01",
            "start {t:?}"
        );
        assert_eq!(
            matches_pattern(crate::calling_window::END_PATTERN, t),
            window("00:01", t).is_ok() || t == "00:01",
            "end {t:?}"
        );
    }
    // The URL pattern is a necessary condition: what the server accepts, it matches.
    let url_pattern = spec()["components"]["schemas"]["CreateWebhookRequest"]["properties"]["url"]
        ["pattern"]
        .clone();
    for s in [
        "https://example.com/h",
        "HTTPS://example.com",
        "http://127.0.0.1:9/h",
        "http://localhost/x",
        "http://[::1]:80/",
        "ftp://x",
        "https//x",
        "https://",
        " https://x",
        "http://example.com/",
        "https://a b",
    ] {
        if check_webhook_url(s, true).is_ok() {
            assert!(
                matches_pattern(url_pattern.as_str().unwrap(), s),
                "url {s:?}"
            );
        }
    }
}

// ---- the documented constraints against the validators ----

/// Sends bodies that sit on and just past every documented constraint of
/// `schema` and checks the server agrees, field by field.
fn probe_request_schema(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    schema_name: &str,
    base: Value,
) {
    let schema = api.spec["components"]["schemas"][schema_name].clone();
    let send = |b: &Value| api.send(method, path, Some(token), Some(b));
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let fails_with = |b: Value, code: &str, field: &str| {
        let r = send(&b);
        let e = r.body_json()["error"].clone();
        assert!(
            e["code"] == code && e["field"] == field,
            "{method} {path} {b}: want {code} on '{field}', got {} {}",
            r.status,
            r.body
        );
    };
    let accepted_field = |b: Value, field: &str| {
        let r = send(&b);
        assert!(
            r.status < 300 || r.body_json()["error"]["field"] != field,
            "{method} {path} {b}: '{field}' refused: {}",
            r.body
        );
    };
    let not_with = |b: Value, code: &str, field: &str| {
        let r = send(&b);
        let e = r.body_json()["error"].clone();
        assert!(
            !(e["code"] == code && e["field"] == field),
            "{method} {path} {b}: got {code} on '{field}'"
        );
    };

    // The base body is valid, and documented defaults are what the server applies.
    let r = send(&base);
    assert!(r.status < 300, "{method} {path} {base}: {}", r.body);
    let created = r.body_json();
    let properties = schema["properties"].as_object().unwrap();
    for (name, p) in properties {
        if let (Some(default), Some(actual)) = (p.get("default"), created.get(name.as_str())) {
            if base.get(name.as_str()).is_none() {
                assert_eq!(actual, default, "{schema_name}.{name}: documented default");
            }
        }
    }

    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, p) in properties {
        let name = name.as_str();
        // A `type`, or `anyOf` branches (a `$ref`/`allOf` branch is one of our objects).
        fn type_of(v: &Value) -> Vec<String> {
            match &v["type"] {
                Value::String(t) => vec![t.clone()],
                Value::Array(ts) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect(),
                _ if v.get("$ref").is_some() || v.get("allOf").is_some() => {
                    vec!["object".into()]
                }
                _ => Vec::new(),
            }
        }
        let types: Vec<String> = match p.get("anyOf").and_then(Value::as_array) {
            Some(branches) => branches.iter().flat_map(type_of).collect(),
            None => type_of(p),
        };
        assert!(!types.is_empty(), "{schema_name}.{name}: no type");
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        let primary = *types.iter().find(|t| **t != "null").unwrap();
        let wrong = match primary {
            "string" => json!(5),
            "integer" => json!("5"),
            "boolean" => json!("yes"),
            "object" => json!([1]),
            "array" => json!("x"),
            other => panic!("{schema_name}.{name}: type {other}"),
        };
        fails_with(with(name, wrong), "invalid_type", name);
        if types.contains(&"null") {
            assert!(
                !required.contains(&name),
                "{schema_name}.{name}: required and nullable"
            );
            accepted_field(with(name, Value::Null), name);
        } else if required.contains(&name) {
            fails_with(with(name, Value::Null), "missing_field", name);
            let mut b = base.clone();
            b.as_object_mut().unwrap().remove(name);
            fails_with(b, "missing_field", name);
        } else {
            panic!("{schema_name}.{name}: optional fields take null too");
        }
        if let Some(max) = p["maxLength"].as_u64() {
            let max = max as usize;
            not_with(with(name, json!("a".repeat(max))), "value_too_long", name);
            fails_with(
                with(name, json!("a".repeat(max + 1))),
                "value_too_long",
                name,
            );
        }
        // Blank strings: refused exactly where the schema says "not blank"
        // (fields with another pattern are covered by their pattern).
        if primary == "string"
            && p["enum"].is_null()
            && (p["pattern"].is_null() || p["pattern"] == NOT_BLANK_PATTERN)
        {
            let r = send(&with(name, json!(" \t ")));
            let e = r.body_json()["error"].clone();
            let refused = e["code"] == "invalid_value" && e["field"] == name;
            assert_eq!(
                refused,
                p["pattern"] == NOT_BLANK_PATTERN,
                "{method} {path}: blank '{name}': {}",
                r.body
            );
        }
        if primary == "integer" {
            let (min, max) = (
                p["minimum"].as_i64().unwrap(),
                p["maximum"].as_i64().unwrap(),
            );
            accepted_field(with(name, json!(min)), name);
            accepted_field(with(name, json!(max)), name);
            accepted_field(with(name, json!(min as f64)), name);
            fails_with(with(name, json!(min - 1)), "out_of_range", name);
            fails_with(with(name, json!(max + 1)), "out_of_range", name);
            fails_with(with(name, json!(min as f64 + 0.5)), "invalid_type", name);
        }
        if let Some(values) = p["enum"].as_array() {
            for v in values.iter().filter(|v| !v.is_null()) {
                accepted_field(with(name, v.clone()), name);
            }
            fails_with(with(name, json!("zz_bogus")), "invalid_value", name);
        }
        if primary == "array" && p["items"]["type"] == "integer" {
            let items = &p["items"];
            let (min, max) = (
                items["minimum"].as_i64().unwrap(),
                items["maximum"].as_i64().unwrap(),
            );
            let max_items = p["maxItems"].as_u64().unwrap() as usize;
            for ok in [
                json!([]),
                json!([min, max]),
                json!([min as f64]),
                json!(vec![min; max_items]),
            ] {
                accepted_field(with(name, ok), name);
            }
            fails_with(with(name, json!([min - 1])), "out_of_range", name);
            fails_with(with(name, json!([max + 1])), "out_of_range", name);
            fails_with(
                with(name, json!(vec![min; max_items + 1])),
                "out_of_range",
                name,
            );
            fails_with(with(name, json!([min as f64 + 0.5])), "invalid_type", name);
            fails_with(with(name, json!(["1"])), "invalid_type", name);
        } else if primary == "array" && p["items"].get("$ref").is_some() {
            // Arrays of objects (an agent's `tools`): the items' rules are
            // tested where they are read (`api::agent_tools`); here the empty
            // list is accepted and a non-object item refused.
            accepted_field(with(name, json!([])), name);
            fails_with(
                with(name, json!([1])),
                "invalid_type",
                &format!("{name}[0]"),
            );
        } else if primary == "array" {
            let items = &p["items"];
            let values = items["enum"]
                .as_array()
                .expect("array items are an enum or integers");
            for v in values {
                accepted_field(with(name, json!([v])), name);
            }
            accepted_field(with(name, json!([])), name);
            fails_with(with(name, json!(["zz_bogus"])), "invalid_value", name);
            fails_with(with(name, json!([1])), "invalid_type", name);
            let max_items = p["maxItems"].as_u64().unwrap() as usize;
            accepted_field(with(name, json!(vec![values[0].clone(); max_items])), name);
            fails_with(
                with(name, json!(vec![values[0].clone(); max_items + 1])),
                "out_of_range",
                name,
            );
            let item_max = items["maxLength"].as_u64().unwrap() as usize;
            fails_with(
                with(name, json!(["a".repeat(item_max + 1)])),
                "value_too_long",
                name,
            );
        }
    }
    fails_with(with("zz_extra", json!(1)), "unknown_field", "zz_extra");
}

#[test]
fn documented_request_constraints_match_the_validators() {
    let api = Api::new();
    let w = provision(&api, "probe");
    let t = &w.tid;
    probe_request_schema(
        &api,
        "POST",
        "/v1/calls",
        &w.key,
        "CreateCallRequest",
        json!({"phone": "+14155550100"}),
    );
    probe_request_schema(
        &api,
        "POST",
        &format!("/v1/calls/{}/hangup", w.cid),
        &w.key,
        "HangupRequest",
        json!({}),
    );
    probe_request_schema(
        &api,
        "POST",
        "/admin/tenants",
        ADMIN,
        "CreateTenantRequest",
        json!({"name": "t"}),
    );
    probe_request_schema(
        &api,
        "PATCH",
        &format!("/admin/tenants/{t}"),
        ADMIN,
        "UpdateTenantRequest",
        json!({}),
    );
    probe_request_schema(
        &api,
        "POST",
        &format!("/admin/tenants/{t}/agents"),
        ADMIN,
        "CreateAgentRequest",
        json!({"name": "a"}),
    );
    probe_request_schema(
        &api,
        "PATCH",
        &format!("/admin/tenants/{t}/agents/{}", w.aid),
        ADMIN,
        "UpdateAgentRequest",
        json!({}),
    );
    probe_request_schema(
        &api,
        "POST",
        &format!("/admin/tenants/{t}/api-keys"),
        ADMIN,
        "CreateApiKeyRequest",
        json!({}),
    );
    probe_request_schema(
        &api,
        "POST",
        &format!("/admin/tenants/{t}/webhooks"),
        ADMIN,
        "CreateWebhookRequest",
        json!({"url": "https://example.com/h"}),
    );
    probe_request_schema(
        &api,
        "PATCH",
        &format!("/admin/tenants/{t}/webhooks/{}", w.wid),
        ADMIN,
        "UpdateWebhookRequest",
        json!({}),
    );
    probe_request_schema(
        &api,
        "POST",
        &format!("/admin/tenants/{t}/webhooks/{}/rotate", w.wid),
        ADMIN,
        "RotateWebhookSecretRequest",
        json!({}),
    );
    probe_request_schema(
        &api,
        "POST",
        "/admin/sidecars",
        ADMIN,
        "CreateSidecarRequest",
        json!({"sidecar_id": "sc-probe", "region": "local"}),
    );

    // The query parameters of GET /v1/calls.
    let list = |q: &str| api.send("GET", &format!("/v1/calls?{q}"), Some(&w.key), None);
    for i in 0..LIST_LIMIT_DEFAULT {
        expect(
            api.send(
                "POST",
                "/v1/calls",
                Some(&w.key),
                Some(&json!({"phone": format!("+1415555{:04}", 2000 + i)})),
            ),
            201,
        );
    }
    assert_eq!(
        expect(list(""), 200)["data"].as_array().unwrap().len(),
        LIST_LIMIT_DEFAULT as usize
    );
    expect(list("limit=1"), 200);
    expect(list(&format!("limit={LIST_LIMIT_MAX}")), 200);
    for bad in [
        "limit=0".to_string(),
        format!("limit={}", LIST_LIMIT_MAX + 1),
        "limit=x".into(),
        "status=nope".into(),
        "zz=1".into(),
        "limit=1&limit=2".into(),
    ] {
        expect_error(list(&bad), 400, "invalid_parameter");
    }
    for s in CallStatus::ALL {
        expect(list(&format!("status={}", s.as_str())), 200);
    }
    let names: Vec<&str> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
    expect(list(&format!("status={}", names.join(","))), 200);
}

// ---- every route, its successes and its errors, against the spec ----

#[test]
fn every_route_answers_as_documented() {
    let api = Api::new();
    let spec = api.spec.clone();

    expect(api.send("GET", "/healthz", None, None), 200);
    // The console: its page and assets; an unknown asset is 404.
    for path in ["/console", "/console/app.js", "/console/app.css"] {
        let r = api.send("GET", path, None, None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    expect_error(
        api.send("GET", "/console/nope.js", None, None),
        404,
        "not_found",
    );
    assert_eq!(
        expect(api.send("GET", "/v1/openapi.json", None, None), 200),
        spec
    );
    expect_error(api.send("GET", "/v1/nope", None, None), 404, "not_found");
    expect_error(
        api.send("DELETE", "/v1/calls", None, None),
        405,
        "method_not_allowed",
    );

    // Admin, the happy paths.
    let w = provision(&api, "main");
    let t = w.tid.clone();
    let tp = format!("/admin/tenants/{t}");
    expect(api.admin("GET", &tp, None), 200);
    // CodeB users and hosts.
    let up = format!("{tp}/users");
    expect(api.admin("GET", &up, None), 200);
    expect(api.admin("GET", &format!("{up}/{}", w.user), None), 200);
    expect(
        api.admin(
            "PATCH",
            &format!("{up}/{}", w.user),
            Some(json!({"disabled": true})),
        ),
        200,
    );
    expect_error(
        api.admin(
            "POST",
            &up,
            Some(json!({"username": w.user, "password": "12345678"})),
        ),
        409,
        "user_exists",
    );
    expect(
        api.admin(
            "POST",
            &up,
            Some(json!({"username": "bob", "password": "12345678"})),
        ),
        201,
    );
    expect(api.admin("DELETE", &format!("{up}/bob"), None), 200);
    // Phone numbers, the directory and Voice360 keys.
    let np = format!("{tp}/numbers");
    let n = format!("{np}/{}", w.number);
    expect(api.admin("GET", &np, None), 200);
    let got = expect(api.admin("GET", &n, None), 200);
    assert_eq!(
        (got["number"].as_str(), got["sms_enabled"].as_bool()),
        (Some(w.number.as_str()), Some(true))
    );
    let routed = expect(
        api.admin(
            "PUT",
            &format!("{np}/%2B{}", &w.number[1..]),
            Some(json!({"route": {"kind": "queue", "queue_id": 1.0}, "status": "porting"})),
        ),
        200,
    );
    assert_eq!(
        (routed["pk"].clone(), routed["status"].as_str()),
        (got["pk"].clone(), Some("porting"))
    );
    let other_tenant = provision(&api, "numbers-other");
    expect_error(
        api.admin(
            "PUT",
            &format!("/admin/tenants/{}/numbers/{}", other_tenant.tid, w.number),
            Some(json!({})),
        ),
        409,
        "number_taken",
    );
    let spare = format!("{np}/+14155557777");
    expect(api.admin("PUT", &spare, Some(json!({}))), 201);
    expect(api.admin("DELETE", &spare, None), 200);
    expect_error(api.admin("GET", &spare, None), 404, "number_not_found");
    let dp = format!("{tp}/directory");
    expect(api.admin("GET", &format!("{dp}/users"), None), 200);
    expect(api.admin("GET", &format!("{dp}/queues"), None), 200);
    let person = json!({"extension": "1001", "first_name": "Jane", "time_zone": "Europe/Paris"});
    let jane = expect(
        api.admin("PUT", &format!("{dp}/users/1"), Some(person)),
        200,
    );
    assert_eq!(
        (jane["pk"].clone(), jane["caller_id"].as_str()),
        (json!(1), Some("Jane"))
    );
    expect_error(
        api.admin(
            "POST",
            &format!("{dp}/users"),
            Some(json!({"extension": "8001", "first_name": "X"})),
        ),
        409,
        "extension_taken",
    );
    let second = expect(
        api.admin(
            "POST",
            &format!("{dp}/users"),
            Some(json!({"extension": "1002", "first_name": "B"})),
        ),
        201,
    );
    expect_error(
        api.admin(
            "PUT",
            &format!("{dp}/users/{}", second["pk"]),
            Some(json!({"extension": "1001", "first_name": "B"})),
        ),
        409,
        "extension_taken",
    );
    // A person's SIP password (shown once); an AI agent's user has no phones.
    let sip = expect(
        api.admin(
            "POST",
            &format!("{dp}/users/{}/sip-password", second["pk"]),
            None,
        ),
        201,
    );
    assert!(sip["sip"]["password"].is_string(), "{sip}");
    let ai = expect(
        api.admin(
            "POST",
            &format!("{dp}/users"),
            Some(json!({"kind": "ai_agent", "agent_id": w.aid, "extension": "1077", "first_name": "Ava"})),
        ),
        201,
    );
    expect_error(
        api.admin(
            "POST",
            &format!("{dp}/users/{}/sip-password", ai["pk"]),
            None,
        ),
        422,
        "invalid_value",
    );
    expect_error(
        api.admin("POST", &format!("{dp}/users/999/sip-password"), None),
        404,
        "directory_user_not_found",
    );
    expect(
        api.admin("DELETE", &format!("{dp}/users/{}", ai["pk"]), None),
        200,
    );
    expect_error(
        api.admin(
            "POST",
            &format!("{dp}/queues"),
            Some(json!({"name": "Q", "extension": "1002"})),
        ),
        409,
        "extension_taken",
    );
    let queue = json!({"name": "Sales Queue", "extension": "8001", "strategy": "rrmemory", "members": [1, second["pk"]],
        "max_wait_seconds": 90, "announce_every_seconds": 20, "overflow": {"kind": "voicemail"}});
    let saved = expect(
        api.admin("PUT", &format!("{dp}/queues/1"), Some(queue)),
        200,
    );
    assert_eq!(saved["overflow"], json!({"kind": "voicemail"}));
    // An agent overflow names one of the tenant's agents (issue 16).
    for (method, path) in [
        ("POST", format!("{dp}/queues")),
        ("PUT", format!("{dp}/queues/1")),
    ] {
        expect_error(
            api.admin(
                method,
                &path,
                Some(json!({"name": "Q", "extension": "8010",
                    "overflow": {"kind": "agent", "agent_id": "agt_00000000000000000000"}})),
            ),
            422,
            "unknown_agent",
        );
    }
    expect_error(
        api.admin(
            "PUT",
            &format!("{dp}/queues/1"),
            Some(json!({"name": "Q", "extension": "1002"})),
        ),
        409,
        "extension_taken",
    );
    let spare_queue = expect(
        api.admin(
            "POST",
            &format!("{dp}/queues"),
            Some(json!({"name": "Spare", "extension": "8009"})),
        ),
        201,
    );
    expect(
        api.admin(
            "DELETE",
            &format!("{dp}/queues/{}", spare_queue["pk"]),
            None,
        ),
        200,
    );
    expect(
        api.admin("DELETE", &format!("{dp}/users/{}", second["pk"]), None),
        200,
    );
    let kp = format!("{tp}/voice360-keys");
    let dev = expect(
        api.admin(
            "POST",
            &kp,
            Some(json!({"kind": "developer", "name": "crm"})),
        ),
        201,
    );
    assert!(dev["key"].as_str().unwrap().starts_with("v360_dev_"));
    expect(api.admin("GET", &kp, None), 200);
    expect(
        api.admin("DELETE", &format!("{kp}/{}", id_of(&dev)), None),
        200,
    );
    // A directory holds 2,000 keys at most (and as many users and queues).
    let limited = provision(&api, "directory-full");
    let lkp = format!("/admin/tenants/{}/voice360-keys", limited.tid);
    for _ in 1..crate::directory::MAX_ITEMS {
        expect(
            api.admin("POST", &lkp, Some(json!({"kind": "developer"}))),
            201,
        );
    }
    expect_error(
        api.admin("POST", &lkp, Some(json!({"kind": "developer"}))),
        409,
        "directory_full",
    );
    expect(
        api.admin("PATCH", &tp, Some(json!({"voice360_account": "61"}))),
        200,
    );
    expect_error(
        api.admin(
            "PATCH",
            &format!("/admin/tenants/{}", other_tenant.tid),
            Some(json!({"voice360_account": "61"})),
        ),
        409,
        "voice360_account_taken",
    );
    expect(
        api.admin(
            "PATCH",
            &tp,
            Some(json!({"codeb_host": "phone.main.example"})),
        ),
        200,
    );
    expect_error(
        api.admin(
            "POST",
            "/admin/tenants",
            Some(json!({"name": "n", "codeb_host": "phone.main.example"})),
        ),
        409,
        "codeb_host_taken",
    );
    let other = expect(
        api.admin(
            "POST",
            "/admin/tenants",
            Some(json!({"name": "o", "codeb_host": "phone.other.example"})),
        ),
        201,
    );
    expect_error(
        api.admin(
            "PATCH",
            &format!("/admin/tenants/{}", other["id"].as_str().unwrap()),
            Some(json!({"codeb_host": "phone.main.example"})),
        ),
        409,
        "codeb_host_taken",
    );
    expect(
        api.admin(
            "PATCH",
            &tp,
            Some(json!({"name": "Main Co", "disabled": false})),
        ),
        200,
    );
    let a2 = expect(
        api.admin(
            "POST",
            &format!("{tp}/agents"),
            Some(json!({
        "name": "second", "system_prompt": "Be brief.", "voice": "alloy", "language": "pt-BR",
        "default_engine": "gemini_live", "model": "m", "enabled": true, "default": false})),
        ),
        201,
    );
    assert_eq!(a2["default"], false);
    let a2 = id_of(&a2);
    assert_eq!(
        expect(api.admin("GET", &format!("{tp}/agents"), None), 200)["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    expect(api.admin("GET", &format!("{tp}/agents/{a2}"), None), 200);
    expect(
        api.admin(
            "PATCH",
            &format!("{tp}/agents/{a2}"),
            Some(json!({"default": true})),
        ),
        200,
    );
    expect(
        api.admin("PATCH", &tp, Some(json!({"default_agent_id": w.aid}))),
        200,
    );
    expect_error(
        api.admin(
            "PATCH",
            &tp,
            Some(json!({"default_agent_id": "agt_00000000000000000000"})),
        ),
        422,
        "unknown_agent",
    );
    let k2 = expect(
        api.raw("POST", &format!("{tp}/api-keys"), Some(ADMIN), None, b""),
        201,
    );
    let k2 = id_of(&k2);
    expect(api.admin("GET", &format!("{tp}/api-keys"), None), 200);
    let revoked = expect(
        api.admin("DELETE", &format!("{tp}/api-keys/{k2}"), None),
        200,
    );
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        expect(
            api.admin("DELETE", &format!("{tp}/api-keys/{k2}"), None),
            200
        ),
        revoked
    );
    let spare = id_of(&expect(
        api.admin(
            "POST",
            &format!("{tp}/agents"),
            Some(json!({"name": "spare", "default": false})),
        ),
        201,
    ));
    let deleted = expect(
        api.admin("DELETE", &format!("{tp}/agents/{spare}"), None),
        200,
    );
    assert_eq!(deleted["deleted"], true);
    expect_error(
        api.admin("GET", &format!("{tp}/agents/{spare}"), None),
        404,
        "agent_not_found",
    );
    expect(api.admin("GET", &format!("{tp}/prompts"), None), 200);
    expect(
        api.admin("GET", &format!("{tp}/prompts/reminder"), None),
        200,
    );
    expect(
        api.admin("DELETE", &format!("{tp}/prompts/reminder"), None),
        200,
    );
    expect(api.admin("GET", &format!("{tp}/dialect-keys"), None), 200);
    let revoked = expect(
        api.admin("DELETE", &format!("{tp}/dialect-keys/{}", w.dkid), None),
        200,
    );
    assert!(revoked["revoked_at"].is_string());
    expect(
        api.admin(
            "POST",
            &format!("{tp}/webhooks"),
            Some(json!({"url": "http://127.0.0.1:9/h", "events": ["call.completed"]})),
        ),
        201,
    );
    expect_error(
        api.admin(
            "POST",
            &format!("{tp}/webhooks"),
            Some(json!({"url": "http://example.com/h"})),
        ),
        422,
        "invalid_url",
    );
    expect(api.admin("GET", &format!("{tp}/webhooks"), None), 200);
    // Sidecars: create (again = rotate), list, revoke (idempotent).
    let sc = expect(
        api.admin(
            "POST",
            "/admin/sidecars",
            Some(json!({"sidecar_id": "sc-extra", "region": "eu-1"})),
        ),
        201,
    );
    let rotated = expect(
        api.admin(
            "POST",
            "/admin/sidecars",
            Some(json!({"sidecar_id": "sc-extra", "region": "eu-1"})),
        ),
        201,
    );
    assert_ne!(sc["secret"], rotated["secret"]);
    assert!(
        expect(api.admin("GET", "/admin/sidecars", None), 200)["data"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
    let gone = expect(api.admin("DELETE", "/admin/sidecars/sc-extra", None), 200);
    assert!(gone["revoked_at"].is_string());
    assert_eq!(
        expect(api.admin("DELETE", "/admin/sidecars/sc-extra", None), 200),
        gone
    );
    expect_error(
        api.admin(
            "POST",
            "/admin/sidecars",
            Some(json!({"sidecar_id": "-bad", "region": "eu-1"})),
        ),
        422,
        "invalid_value",
    );

    // Text messages.
    messages_answer_as_documented(&api, &w);
    // Contacts.
    contacts_answer_as_documented(&api, &w);
    campaigns_answer_as_documented(&api, &w);

    // Calls.
    let key = Some(w.key.as_str());
    let created = api.send("POST", "/v1/calls", key, Some(&json!({
        "phone": "+442071838750", "name": "Ada", "email": "ada@example.org", "metadata": {"crm": 7},
        "agent_id": a2, "system_prompt": "hi", "voice": "alloy", "language": "en-GB", "model": "gpt-realtime",
        "max_seconds": 3600, "retries": 10, "retry_delay_minutes": 1440, "schedule_at": "2025-11-26T09:00:00Z"})));
    let location = created
        .headers
        .iter()
        .find(|(h, _)| h == "Location")
        .map(|(_, v)| v.clone())
        .unwrap();
    let scheduled = expect(created, 201);
    assert_eq!(
        (scheduled["status"].as_str(), location),
        (
            Some("scheduled"),
            format!("/v1/calls/{}", id_of(&scheduled))
        )
    );
    let page = expect(
        api.send(
            "GET",
            "/v1/calls?status=queued,scheduled&limit=1",
            key,
            None,
        ),
        200,
    );
    assert_eq!(page["has_more"], true);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    expect(
        api.send(
            "GET",
            &format!("/v1/calls?status=queued,scheduled&limit=1&cursor={cursor}"),
            key,
            None,
        ),
        200,
    );
    expect_error(
        api.send(
            "GET",
            &format!("/v1/calls?status=queued&cursor={cursor}"),
            key,
            None,
        ),
        400,
        "invalid_cursor",
    );
    expect_error(
        api.send("GET", "/v1/calls?cursor=!!", key, None),
        400,
        "invalid_cursor",
    );
    expect_error(
        api.send("GET", "/v1/calls?limit=0", key, None),
        400,
        "invalid_parameter",
    );
    expect(
        api.send("GET", &format!("/v1/calls/{}", w.cid), key, None),
        200,
    );
    let tr = expect(
        api.send("GET", &format!("/v1/calls/{}/transcript", w.cid), key, None),
        200,
    );
    assert_eq!(
        (tr["object"].as_str(), tr["turns"].as_array().map(Vec::len)),
        (Some("transcript"), Some(0))
    );
    let txt = api.send(
        "GET",
        &format!("/v1/calls/{}/transcript?format=txt", w.cid),
        key,
        None,
    );
    assert_eq!((txt.status, txt.body.as_str()), (200, ""));
    expect_error(
        api.send(
            "GET",
            &format!("/v1/calls/{}/transcript?format=pdf", w.cid),
            key,
            None,
        ),
        400,
        "invalid_parameter",
    );
    let txt = api.send(
        "GET",
        &format!("/v1/calls/{}/transcript.txt", w.cid),
        key,
        None,
    );
    assert_eq!((txt.status, txt.body.as_str()), (200, ""));
    assert_eq!(
        expect(
            api.send(
                "GET",
                &format!("/v1/calls/{}/transcript.json?format=txt", w.cid),
                key,
                None
            ),
            200
        )["object"],
        "transcript"
    );
    expect_error(
        api.send(
            "GET",
            &format!("/v1/calls/{}/transcript.pdf", w.cid),
            key,
            None,
        ),
        400,
        "invalid_parameter",
    );
    // Recordings: none yet (404), then one stored by an upload.
    let none = expect_error(
        api.send("GET", &format!("/v1/calls/{}/recording", w.cid), key, None),
        404,
        "recording_not_found",
    );
    assert!(
        none["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without record: true"),
        "{none}"
    );
    let info = crate::calls::store::RecordingInfo {
        attempt: 1,
        object_key: crate::calls::recordings::object_key(&t, &w.cid, 1),
        content_type: "audio/wav".into(),
        bytes: 32_044,
        sha256: "0".repeat(64),
        duration_ms: 1_000,
        saved_at: "2026-11-25T15:00:00.000Z".into(),
    };
    crate::calls::store::recording_saved(&*api.calls.rows(&t), &w.cid, &info, NOW).unwrap();
    let wav = api.send("GET", &format!("/v1/calls/{}/recording", w.cid), key, None);
    assert_eq!(
        (wav.status, wav.stored_object.as_deref()),
        (200, Some(info.object_key.as_str()))
    );
    // The same recording through a signed link (no API key); a wrong link is
    // 403, and counted against the address like a wrong key (429 once spent).
    let link = |cid: &str| {
        let links = crate::recording_links::RecordingLinks::new(
            "https://edge.example.com",
            api.sealing.recording_link_key(),
        )
        .unwrap();
        links
            .url(&t, cid, NOW)
            .strip_prefix("https://edge.example.com")
            .unwrap()
            .to_string()
    };
    let by_link = api.send("GET", &link(&w.cid), None, None);
    assert_eq!(
        (by_link.status, by_link.stored_object.as_deref()),
        (200, Some(info.object_key.as_str()))
    );
    let unrecorded = id_of(&expect(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550198"})),
        ),
        201,
    ));
    expect_error(
        api.send("GET", &link(&unrecorded), None, None),
        404,
        "recording_not_found",
    );
    let forged = format!(
        "/v1/recordings/{t}/{}?expires=1&signature={}",
        w.cid,
        "0".repeat(64)
    );
    expect_error(
        api.send("GET", &forged, None, None),
        403,
        "invalid_recording_link",
    );
    api.auth_limit.set(1);
    expect_error(
        api.send("GET", &forged, None, None),
        429,
        "too_many_failed_attempts",
    );
    api.auth_limit.set(crate::traffic::LIMIT_MAX);
    // Hangup: waiting -> cancelled (200), ended -> unchanged (200), live -> requested (202).
    let cancelled = expect(
        api.send(
            "POST",
            &format!("/v1/calls/{}/hangup", w.cid),
            key,
            Some(&json!({})),
        ),
        200,
    );
    assert_eq!(cancelled["status"], "cancelled");
    expect(
        api.raw(
            "POST",
            &format!("/v1/calls/{}/hangup", w.cid),
            key,
            None,
            b"",
        ),
        200,
    );
    let live = id_of(&expect(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550101"})),
        ),
        201,
    ));
    {
        // A sidecar leased and acked it: live in the queue, dialing in its store.
        let mut queues = api.calls.dispatch_queues.queues.borrow_mut();
        let q = queues.get_mut("local").unwrap();
        let (offers, _) = q.lease("s1", 10, NOW, &Default::default());
        for o in offers {
            q.ack("s1", &o.lease_id, true, NOW);
        }
    }
    let hung = expect(
        api.raw("POST", &format!("/v1/calls/{live}/hangup"), key, None, b""),
        202,
    );
    assert!(hung["hangup_requested_at"].is_string());
    expect(
        api.raw("POST", &format!("/v1/calls/{live}/hangup"), key, None, b""),
        202,
    );
    // Agent rules.
    expect(
        api.admin(
            "PATCH",
            &format!("{tp}/agents/{a2}"),
            Some(json!({"enabled": false})),
        ),
        200,
    );
    expect_error(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550100", "agent_id": a2})),
        ),
        409,
        "agent_disabled",
    );
    expect_error(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550100", "agent_id": "agt_00000000000000000000"})),
        ),
        422,
        "unknown_agent",
    );
    // Click-to-call: a person's extension (issue 16), or none.
    expect_error(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550100", "from_extension": "7777"})),
        ),
        422,
        "unknown_extension",
    );
    expect(
        api.admin(
            "POST",
            &format!("{tp}/directory/users"),
            Some(json!({"extension": "7777", "first_name": "Pat"})),
        ),
        201,
    );
    let c2c = expect(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550177", "from_extension": "7777"})),
        ),
        201,
    );
    assert_eq!(c2c["agent_id"], "", "{c2c}");
    let bare = id_of(&expect(
        api.admin("POST", "/admin/tenants", Some(json!({"name": "bare"}))),
        201,
    ));
    let bare_key = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{bare}/api-keys"),
            Some(json!({})),
        ),
        201,
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    expect_error(
        api.send(
            "POST",
            "/v1/calls",
            Some(&bare_key),
            Some(&json!({"phone": "+14155550100"})),
        ),
        422,
        "agent_required",
    );
    expect_error(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550100", "schedule_at": "2025-11-25T14:00:00Z"})),
        ),
        422,
        "schedule_in_past",
    );
    expect_error(api.send("POST", "/v1/calls", key, Some(&json!({"phone": "+14155550100", "metadata": {"k": "m".repeat(MAX_METADATA_BYTES)}}))), 422, "metadata_too_large");

    // One call at a time per agent and number.
    expect(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550102"})),
        ),
        201,
    );
    expect_error(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550102"})),
        ),
        409,
        "call_in_progress",
    );
    // A full concurrency cap refuses a call that asks to be refused (provision queued one call).
    let capped = provision(&api, "capped");
    expect(
        api.admin(
            "PATCH",
            &format!("/admin/tenants/{}", capped.tid),
            Some(json!({"max_concurrent_calls": 1})),
        ),
        200,
    );
    let over = json!({"phone": "+14155550103", "on_concurrency_limit": "reject"});
    expect_error(
        api.send("POST", "/v1/calls", Some(&capped.key), Some(&over)),
        429,
        "concurrency_limit_reached",
    );
    // A key that requires signatures refuses unsigned requests.
    let signed = expect(
        api.admin(
            "POST",
            &format!("{tp}/api-keys"),
            Some(json!({"name": "signed", "require_signature": true})),
        ),
        201,
    );
    assert!(signed["signing_secret"].is_string());
    expect_error(
        api.send("GET", "/v1/calls", signed["key"].as_str(), None),
        401,
        "invalid_request_signature",
    );
    // A calling window (NOW is a Tuesday): moved, or refused on request.
    let windowed = expect(api.admin("POST", &format!("{tp}/agents"), Some(json!({"name": "weekend",
        "calling_window": {"days": ["sat", "sun"], "start": "09:00", "end": "24:00", "time_zone": "Europe/Berlin"}}))), 201);
    let moved = expect(
        api.send(
            "POST",
            "/v1/calls",
            key,
            Some(&json!({"phone": "+14155550104", "agent_id": id_of(&windowed)})),
        ),
        201,
    );
    assert_eq!(moved["scheduled_reason"], "calling_window");
    let refused =
        json!({"phone": "+14155550105", "agent_id": id_of(&windowed), "outside_window": "reject"});
    expect_error(
        api.send("POST", "/v1/calls", key, Some(&refused)),
        422,
        "outside_calling_window",
    );
    // Rate limits: a tenant whose key allows one request answers 429 on every /v1 route after it.
    let limited = provision(&api, "limited");
    expect(
        api.admin(
            "PATCH",
            &format!("/admin/tenants/{}", limited.tid),
            Some(json!({"rate_limits": {"per_key": {"limit": 1, "window_seconds": 60}}})),
        ),
        200,
    );
    for (method, pattern, _) in ROUTES.iter().filter(|r| {
        r.1.starts_with("/v1/calls")
            || r.1.starts_with("/v1/webhooks")
            || r.1.starts_with("/v1/messages")
            || r.1.starts_with("/v1/contacts")
            || r.1.starts_with("/v1/campaigns")
    }) {
        let body = (*method == "POST").then(|| json!({"phone": "+14155550123"}));
        let body = if pattern.ends_with("/hangup") {
            Some(json!({}))
        } else {
            body
        };
        expect_error(
            api.send(
                method,
                &fill(pattern, world_param(&limited)),
                Some(&limited.key),
                body.as_ref(),
            ),
            429,
            "rate_limited",
        );
    }

    // Webhook endpoints: read, change, rotate (overlap or not), delete.
    let wh = expect(
        api.admin(
            "POST",
            &format!("{tp}/webhooks"),
            Some(json!({"url": "https://hooks.example.com/2", "retry_schedule": [1, 2]})),
        ),
        201,
    );
    let whp = format!("{tp}/webhooks/{}", id_of(&wh));
    assert_eq!(
        expect(api.admin("GET", &whp, None), 200)["retry_schedule"],
        json!([1, 2])
    );
    let changed = expect(
        api.admin(
            "PATCH",
            &whp,
            Some(json!({"events": ["call.completed"], "enabled": false})),
        ),
        200,
    );
    assert_eq!(
        (changed["events"].clone(), changed["enabled"].clone()),
        (json!(["call.completed"]), json!(false))
    );
    let rotated = expect(
        api.admin(
            "POST",
            &format!("{whp}/rotate"),
            Some(json!({"overlap_seconds": 60})),
        ),
        200,
    );
    assert!(
        rotated["previous_secret_expires_at"].is_string() && rotated["secret"] != wh["secret"],
        "{rotated}"
    );
    let at_once = expect(
        api.admin(
            "POST",
            &format!("{whp}/rotate"),
            Some(json!({"overlap_seconds": 0})),
        ),
        200,
    );
    assert!(at_once["previous_secret_expires_at"].is_null());
    expect(
        api.raw("POST", &format!("{whp}/rotate"), Some(ADMIN), None, b""),
        200,
    );
    // A test event: refused while the endpoint is disabled, then queued.
    expect_error(
        api.admin("POST", &format!("{whp}/test"), None),
        409,
        "webhook_disabled",
    );
    expect(
        api.admin("PATCH", &whp, Some(json!({"enabled": true}))),
        200,
    );
    let tested = expect(api.admin("POST", &format!("{whp}/test"), None), 202);
    assert_eq!(tested["event_type"], "webhook.test", "{tested}");
    expect_error(
        api.admin("POST", &format!("{whp}/test"), Some(json!({"x": 1}))),
        400,
        "unknown_field",
    );
    expect_error(
        api.admin(
            "POST",
            &format!("{tp}/webhooks/wh_0123456789abcdef/test"),
            None,
        ),
        404,
        "webhook_not_found",
    );
    expect_error(
        api.admin(
            "PATCH",
            &whp,
            Some(json!({"url": "https://169.254.169.254/x"})),
        ),
        422,
        "invalid_url",
    );
    expect(api.admin("DELETE", &whp, None), 200);
    expect_error(api.admin("GET", &whp, None), 404, "webhook_not_found");
    // The delivery log: list (filters, cursor), read, redeliver.
    deliver_all(&api);
    let dp = "/v1/webhooks/deliveries";
    let page = expect(
        api.send(
            "GET",
            &format!("{dp}?event=call.queued&status=delivered&limit=1"),
            key,
            None,
        ),
        200,
    );
    assert_eq!(page["has_more"], true, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    expect(
        api.send(
            "GET",
            &format!("{dp}?event=call.queued&status=delivered&limit=1&cursor={cursor}"),
            key,
            None,
        ),
        200,
    );
    expect_error(
        api.send(
            "GET",
            &format!("{dp}?status=delivered&cursor={cursor}"),
            key,
            None,
        ),
        400,
        "invalid_cursor",
    );
    expect_error(
        api.send("GET", &format!("{dp}?status=nope"), key, None),
        400,
        "invalid_parameter",
    );
    expect_error(
        api.send("GET", &format!("{dp}?event=call.nope"), key, None),
        400,
        "invalid_parameter",
    );
    let one = expect(api.send("GET", &format!("{dp}/{}", w.did), key, None), 200);
    assert_eq!(
        (
            one["status"].as_str(),
            one["attempts"][0]["status_code"].as_u64()
        ),
        (Some("delivered"), Some(200))
    );
    expect(
        api.send("POST", &format!("{dp}/{}/redeliver", w.did), key, None),
        202,
    );
    assert_eq!(api.outbox.take().len(), 1, "redelivery queues one job");
    let wep = format!("{tp}/webhooks/{}", w.wid);
    expect(
        api.admin("PATCH", &wep, Some(json!({"enabled": false}))),
        200,
    );
    expect_error(
        api.send("POST", &format!("{dp}/{}/redeliver", w.did), key, None),
        409,
        "webhook_disabled",
    );
    expect(
        api.admin("PATCH", &wep, Some(json!({"enabled": true}))),
        200,
    );

    // Each operation's generic failures: credentials, body, missing objects.
    let disabled = provision(&api, "disabled");
    expect(
        api.admin(
            "PATCH",
            &format!("/admin/tenants/{}", disabled.tid),
            Some(json!({"disabled": true})),
        ),
        200,
    );
    let too_big = format!("{{{}}}", " ".repeat(MAX_BODY_BYTES));
    let too_big_campaign = format!("{{{}}}", " ".repeat(MAX_CAMPAIGN_BODY_BYTES));
    for (method, pattern, _) in ROUTES {
        let Some(scheme) = security_of(&spec, method, pattern) else {
            continue;
        };
        let token = if scheme == "bearerAuth" {
            w.key.as_str()
        } else {
            ADMIN
        };
        let path = fill(pattern, world_param(&w));
        expect_error(
            api.raw(method, &path, None, None, b""),
            401,
            "missing_credentials",
        );
        expect_error(
            api.raw(method, &path, Some("ak_wrong"), None, b""),
            401,
            "invalid_credentials",
        );
        // This address has failed before: with a limit of one it is blocked,
        // for admin routes even with the right token.
        api.auth_limit.set(1);
        expect_error(
            api.raw(method, &path, Some("ak_wrong"), None, b""),
            429,
            "too_many_failed_attempts",
        );
        if scheme != "bearerAuth" {
            expect_error(
                api.raw(method, &path, Some(ADMIN), None, b""),
                429,
                "too_many_failed_attempts",
            );
        }
        api.auth_limit.set(crate::traffic::LIMIT_MAX);
        if scheme == "bearerAuth" {
            let path = fill(pattern, world_param(&disabled));
            expect_error(
                api.raw(method, &path, Some(&disabled.key), None, b""),
                403,
                "tenant_disabled",
            );
        }
        if !operation_of(&spec, method, pattern)["requestBody"].is_null() {
            let j = Some(JSON_CT);
            let too_big = match *pattern {
                "/v1/campaigns" => &too_big_campaign,
                _ => &too_big,
            };
            expect_error(
                api.raw(method, &path, Some(token), j, too_big.as_bytes()),
                413,
                "payload_too_large",
            );
            expect_error(
                api.raw(method, &path, Some(token), Some("text/plain"), b"{}"),
                415,
                "unsupported_media_type",
            );
            expect_error(
                api.raw(method, &path, Some(token), j, b"{\"a\":"),
                400,
                "invalid_json",
            );
            expect_error(
                api.raw(method, &path, Some(token), j, b"{\"zz\":1}"),
                400,
                "unknown_field",
            );
            expect_error(
                api.raw(method, &path, Some(token), j, b"[1]"),
                422,
                "invalid_type",
            );
        }
        // Each path parameter in turn names nothing.
        let params: Vec<&str> = pattern
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for missing in &params {
            // A prompt's PUT creates it and its DELETE is idempotent: no 404.
            if *missing == "slug" && matches!(*method, "PUT" | "DELETE") {
                continue;
            }
            // A number's PUT adds it.
            if *missing == "number" && *method == "PUT" {
                continue;
            }
            let path = fill(pattern, |name| {
                if name == *missing {
                    missing_id(name)
                } else {
                    world_param(&w)(name)
                }
            });
            let body = (*method != "GET" && *method != "DELETE").then(|| json!({}));
            let code = match *missing {
                "key_id" => "api_key_not_found".to_string(),
                "slug" => "prompt_not_found".to_string(),
                "username" => "user_not_found".to_string(),
                "pk" if pattern.contains("/users/") => "directory_user_not_found".to_string(),
                "pk" => "queue_not_found".to_string(),
                other => format!("{}_not_found", other.trim_end_matches("_id")),
            };
            expect_error(
                api.send(method, &path, Some(token), body.as_ref()),
                404,
                &code,
            );
        }
        // Storage down.
        let body = match (*method, *pattern) {
            ("POST", "/admin/tenants") => br#"{"name":"x"}"#.as_slice(),
            ("POST", "/admin/sidecars") => br#"{"sidecar_id":"sc-1","region":"local"}"#.as_slice(),
            _ => b"".as_slice(),
        };
        let ct = (!body.is_empty()).then_some(JSON_CT);
        expect_error(
            api.send_to(&DownKv, method, &path, Some(token), ct, body),
            503,
            "storage_unavailable",
        );
    }
    // A record that cannot be read is a 500 wherever it is read: the
    // tenant (every tenant route) and the sidecar (the sidecar routes).
    let wp = world_param(&w);
    block_on(
        api.kv
            .put(&crate::model::keys::tenant(&t), "{not json", None),
    )
    .unwrap();
    block_on(
        api.kv
            .put(&crate::model::keys::sidecar(&w.sid), "{not json", None),
    )
    .unwrap();
    for (method, pattern, _) in ROUTES {
        let Some(scheme) = security_of(&spec, method, pattern) else {
            continue;
        };
        // These only write.
        if matches!(
            (*method, *pattern),
            ("POST", "/admin/tenants") | ("POST", "/admin/sidecars")
        ) {
            continue;
        }
        let token = if scheme == "bearerAuth" {
            w.key.as_str()
        } else {
            ADMIN
        };
        expect_error(
            api.raw(method, &fill(pattern, &wp), Some(token), None, b""),
            500,
            "internal_error",
        );
    }

    // Every documented response was seen, except what cannot happen here.
    let unreachable: BTreeSet<(String, String, String)> =
        // Creating a tenant or a sidecar reads nothing, and writes cannot be corrupt.
        [("POST", "/admin/tenants", "500"), ("POST", "/admin/sidecars", "500")].iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    let mut documented = BTreeSet::new();
    for (method, pattern, _) in ROUTES {
        for status in operation_of(&spec, method, pattern)["responses"]
            .as_object()
            .unwrap()
            .keys()
        {
            documented.insert((method.to_string(), pattern.to_string(), status.clone()));
        }
    }
    assert!(unreachable.is_subset(&documented));
    let seen = api.seen.borrow();
    let missing: Vec<_> = documented
        .difference(&seen)
        .filter(|d| !unreachable.contains(*d))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but never produced: {missing:?}"
    );
}

/// CodeB's answers, driven through the API, each match the schema its
/// operation documents for its status.
#[test]
fn codeb_answers_match_their_documented_schemas() {
    let api = Api::new();
    let spec = api.spec.clone();
    let w = provision(&api, "codeb");
    let check = |method: &str, template: &str, r: &ApiResponse| {
        let op = operation_of(&spec, method, template);
        let schema =
            &op["responses"][r.status.to_string()]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template}: {} undocumented: {}",
            r.status,
            r.body
        );
        let value: Value = serde_json::from_str(&r.body).unwrap();
        if let Err(e) = Checker::new(&spec).check(schema, &value) {
            panic!("{method} {template} {} {}: {e}", r.status, r.body);
        }
    };
    let body = json!({"phone": "+4915157610183", "email": "ops@example.com",
        "systemPrompt": "Be brief.", "apiKey": "sk-test", "scheduleAtUtc": "2025-12-20T09:00:00Z"});
    let created = api.send("POST", "/api.ashx/v1/calls", Some(&w.key), Some(&body));
    check("POST", "/api.ashx/v1/calls", &created);
    let id = serde_json::from_str::<Value>(&created.body).unwrap()["callId"]
        .as_str()
        .unwrap()
        .to_string();
    for (r, template) in [
        (
            api.send("POST", "/api.ashx/v1/calls", Some(&w.key), Some(&body)),
            "/api.ashx/v1/calls",
        ),
        (
            api.send("POST", "/api.ashx/v1/calls", Some(&w.key), Some(&json!({}))),
            "/api.ashx/v1/calls",
        ),
        (
            api.send("POST", "/api.ashx/v1/calls", Some("ak_wrong"), Some(&body)),
            "/api.ashx/v1/calls",
        ),
    ] {
        check("POST", template, &r);
    }
    check(
        "GET",
        "/api.ashx/v1/calls",
        &api.send(
            "GET",
            "/api.ashx/v1/calls?status=scheduled",
            Some(&w.key),
            None,
        ),
    );
    check(
        "GET",
        "/api.ashx/v1/calls",
        &api.send("GET", "/api.ashx/v1/calls?limit=0", Some(&w.key), None),
    );
    let one = format!("/api.ashx/v1/calls/{id}");
    check(
        "GET",
        "/api.ashx/v1/calls/{call_id}",
        &api.send("GET", &one, Some(&w.key), None),
    );
    check(
        "GET",
        "/api.ashx/v1/calls/{call_id}",
        &api.send(
            "GET",
            "/api.ashx/v1/calls/oac-0123456789abcdef012345",
            Some(&w.key),
            None,
        ),
    );
    check(
        "POST",
        "/api.ashx/v1/calls/{call_id}/hangup",
        &api.send("POST", &format!("{one}/hangup"), Some(&w.key), None),
    );
    check(
        "GET",
        "/api.ashx/v1/transcripts/{name}",
        &api.send(
            "GET",
            &format!("/api.ashx/v1/transcripts/outbound-ai-20260623-120000-{id}.json"),
            Some(&w.key),
            None,
        ),
    );
}

/// `/v1/messages`: every documented answer but the generic ones.
fn messages_answer_as_documented(api: &Api, w: &World) {
    let key = Some(w.key.as_str());
    put_number(api, &w.tid, "+14155557000", true);
    put_number(api, &w.tid, "+14155557001", false);
    let send = |body: Value| api.send("POST", "/v1/messages", key, Some(&body));
    let text = |from: &str, to: &str, body: &str| json!({"from": from, "to": to, "body": body});
    let sent = expect(
        send(
            json!({"from": "+14155557000", "to": "+442071838750", "body": "Hi ✓", "metadata": {"crm": 7}}),
        ),
        202,
    );
    assert_eq!(sent["status"], "queued");
    expect(
        api.send("GET", &format!("/v1/messages/{}", id_of(&sent)), key, None),
        200,
    );
    let page = expect(
        api.send(
            "GET",
            "/v1/messages?direction=outbound&status=queued&limit=1",
            key,
            None,
        ),
        200,
    );
    let cursor = page["next_cursor"].as_str().expect("two queued messages");
    expect(
        api.send(
            "GET",
            &format!("/v1/messages?direction=outbound&status=queued&limit=1&cursor={cursor}"),
            key,
            None,
        ),
        200,
    );
    expect_error(
        api.send("GET", &format!("/v1/messages?cursor={cursor}"), key, None),
        400,
        "invalid_cursor",
    );
    expect_error(
        api.send("GET", "/v1/messages?direction=up", key, None),
        400,
        "invalid_parameter",
    );
    for (body, code) in [
        (text("+14155559999", "+14155550199", "x"), "unknown_number"),
        (
            text("+14155557001", "+14155550199", "x"),
            "number_not_sms_capable",
        ),
        (text("+14155557000", "12", "x"), "invalid_phone_number"),
        (text("+14155557000", "+14155550199", " "), "invalid_value"),
        (
            text(
                "+14155557000",
                "+14155550199",
                &"x".repeat(voxline_shared::sidecar_link::MAX_MESSAGE_CHARS + 1),
            ),
            "value_too_long",
        ),
        (
            json!({"from": "+14155557000", "to": "+14155550199"}),
            "missing_field",
        ),
        (
            json!({"from": "+14155557000", "to": "+14155550199", "body": "x", "metadata": {"k": "m".repeat(MAX_METADATA_BYTES)}}),
            "metadata_too_large",
        ),
    ] {
        expect_error(send(body), 422, code);
    }
    // Idempotency: replay, reuse, in flight, malformed.
    let body = text("+14155557000", "+14155550199", "once");
    let with_key = |k: &str, body: &Value| {
        *api.extra_headers.borrow_mut() = vec![("idempotency-key".into(), k.into())];
        let r = api.send("POST", "/v1/messages", key, Some(body));
        api.extra_headers.borrow_mut().clear();
        r
    };
    let first = expect(with_key("m-1", &body), 202);
    assert_eq!(expect(with_key("m-1", &body), 202), first);
    expect_error(
        with_key("m-1", &text("+14155557000", "+14155550199", "twice")),
        422,
        "idempotency_key_reused",
    );
    expect_error(with_key("a b", &body), 400, "invalid_parameter");
    let pending = crate::traffic::Admission {
        checks: vec![crate::traffic::Check {
            scope: "test".into(),
            limit: crate::traffic::RateLimit {
                limit: 10,
                window_seconds: 60,
            },
            new_work_only: false,
        }],
        idempotency: Some(crate::traffic::IdemRequest {
            key: "m-2".into(),
            fingerprint: crate::ids::fingerprint(
                "POST",
                "/v1/messages",
                body.to_string().as_bytes(),
            ),
        }),
        signature: None,
    };
    block_on(crate::traffic::Traffic::admit(
        &api.traffic,
        &w.tid,
        &pending,
    ))
    .unwrap();
    expect_error(with_key("m-2", &body), 409, "idempotency_key_in_flight");
}

/// `/v1/contacts`: every documented answer but the generic ones.
fn contacts_answer_as_documented(api: &Api, w: &World) {
    use crate::calls::store::CallRows;
    let key = Some(w.key.as_str());
    let post = |body: Value| api.send("POST", "/v1/contacts", key, Some(&body));
    let created = expect(
        post(
            json!({"phone": "+442071838750", "first_name": "Ada", "last_name": "Lovelace",
                    "email": "ada@example.org", "metadata": {"crm": 7}}),
        ),
        201,
    );
    let path = format!("/v1/contacts/{}", id_of(&created));
    expect(api.send("GET", &path, key, None), 200);
    let patch = |body: Value| api.send("PATCH", &path, key, Some(&body));
    expect(
        patch(json!({"first_name": "Augusta", "email": null, "metadata": null})),
        200,
    );
    let page = expect(api.send("GET", "/v1/contacts?limit=1", key, None), 200);
    let cursor = page["next_cursor"].as_str().expect("two contacts");
    expect(
        api.send(
            "GET",
            &format!("/v1/contacts?limit=1&cursor={cursor}"),
            key,
            None,
        ),
        200,
    );
    expect(
        api.send("GET", "/v1/contacts?phone=%2B442071838750", key, None),
        200,
    );
    expect_error(
        api.send(
            "GET",
            &format!("/v1/contacts?phone=%2B442071838750&cursor={cursor}"),
            key,
            None,
        ),
        400,
        "invalid_cursor",
    );
    expect_error(
        api.send("GET", "/v1/contacts?phone=12", key, None),
        400,
        "invalid_parameter",
    );
    let bad = [
        (json!({"first_name": "x"}), "missing_field"),
        (json!({"phone": "12"}), "invalid_phone_number"),
        (
            json!({"phone": "+14155557100", "last_name": " "}),
            "invalid_value",
        ),
        (
            json!({"phone": "+14155557100", "first_name": "x".repeat(101)}),
            "value_too_long",
        ),
        (
            json!({"phone": "+14155557100", "email": "x"}),
            "invalid_email",
        ),
        (
            json!({"phone": "+14155557100", "metadata": {"k": "m".repeat(MAX_METADATA_BYTES)}}),
            "metadata_too_large",
        ),
    ];
    for (body, code) in &bad {
        expect_error(post(body.clone()), 422, code);
    }
    for (body, code) in bad.iter().skip(1) {
        expect_error(patch(body.clone()), 422, code);
    }
    // The request schema refuses what the server refuses (a control
    // character or only blanks in a name), and takes an ordinary one.
    let schema = &api.spec["components"]["schemas"]["CreateContactRequest"];
    for (name, ok) in [
        ("Ada\u{1}", false),
        ("Ada\u{85}x", false),
        (" \t", false),
        ("Ada Lovelace", true),
        ("Zoë", true),
    ] {
        let body = json!({"phone": "+14155557102", "first_name": name});
        assert_eq!(api.checker.check(schema, &body).is_ok(), ok, "{name:?}");
        if !ok {
            expect_error(post(body), 422, "invalid_value");
        }
    }
    expect_error(
        post(json!({"phone": "+442071838750"})),
        409,
        "contact_exists",
    );
    expect_error(
        patch(json!({"phone": "+14155550198"})),
        409,
        "contact_exists",
    );
    // A full address book (the counter says so).
    let rows = api.calls.rows(&w.tid);
    let count = crate::calls::store::CONTACT_COUNT_KEY;
    let before = rows.value(count).unwrap().unwrap_or_default();
    rows.put_value(count, &crate::contacts::MAX_CONTACTS.to_string())
        .unwrap();
    expect_error(post(json!({"phone": "+14155557101"})), 409, "contacts_full");
    rows.put_value(count, &before).unwrap();
    expect(api.send("DELETE", &path, key, None), 200);
}

/// `/v1/campaigns`: every documented answer but the generic ones.
fn campaigns_answer_as_documented(api: &Api, w: &World) {
    let key = Some(w.key.as_str());
    let post = |body: Value| api.send("POST", "/v1/campaigns", key, Some(&body));
    let created = expect(
        post(
            json!({"name": "docs", "calling_window": {"days": ["mon"], "start": "09:00", "end": "17:00", "time_zone": "Europe/Berlin"},
            "contacts": [{"phone": "+14155550190", "name": "Ada", "metadata": {"a": 1}}, {"phone": "+14155550191"}]}),
        ),
        201,
    );
    let path = format!("/v1/campaigns/{}", id_of(&created));
    let csv = api.raw(
        "POST",
        "/v1/campaigns?calls_per_minute=5&record=true",
        key,
        Some("text/csv"),
        b"phone,name,crm\n+14155550192,Bo,1\n",
    );
    assert_eq!(csv.status, 201, "{}", csv.body);
    let bad = expect_error(
        post(json!({"contacts": [{"phone": "+1"}, {"phone": "+1"}]})),
        422,
        "invalid_contacts",
    );
    assert_eq!(bad["error"]["rows"].as_array().unwrap().len(), 2);
    expect_error(post(json!({})), 422, "missing_field");
    expect_error(
        post(json!({"contacts": [{"phone": "+14155550190"}], "calls_per_minute": 0})),
        422,
        "out_of_range",
    );
    expect_error(
        post(
            json!({"contacts": [{"phone": "+14155550190"}], "agent_id": "agt_00000000000000000000"}),
        ),
        422,
        "unknown_agent",
    );
    expect_error(
        api.send(
            "POST",
            "/v1/campaigns?x=1",
            key,
            Some(&json!({"contacts": []})),
        ),
        400,
        "invalid_parameter",
    );
    expect(api.send("GET", &path, key, None), 200);
    for action in ["start", "pause", "resume", "cancel"] {
        expect(
            api.send("POST", &format!("{path}/{action}"), key, None),
            200,
        );
    }
    for action in ["start", "pause", "resume"] {
        expect_error(
            api.send("POST", &format!("{path}/{action}"), key, None),
            409,
            "campaign_state_conflict",
        );
    }
    // A disabled agent: 409.
    let t = &w.tid;
    let off = expect(
        api.admin(
            "POST",
            &format!("/admin/tenants/{t}/agents"),
            Some(json!({"name": "off"})),
        ),
        201,
    );
    expect(
        api.admin(
            "PATCH",
            &format!("/admin/tenants/{t}/agents/{}", id_of(&off)),
            Some(json!({"enabled": false})),
        ),
        200,
    );
    expect_error(
        post(json!({"contacts": [{"phone": "+14155550190"}], "agent_id": id_of(&off)})),
        409,
        "agent_disabled",
    );
    // A completed campaign cannot be cancelled: its one call placed and ended.
    let done = expect(post(json!({"contacts": [{"phone": "+14155550193"}]})), 201);
    let done_path = format!("/v1/campaigns/{}", id_of(&done));
    expect(
        api.send("POST", &format!("{done_path}/start"), key, None),
        200,
    );
    {
        use crate::campaigns::{CampaignRequest, Campaigns, Placement};
        let id = id_of(&done);
        block_on(api.campaigns.send(&id, CampaignRequest::Lease)).unwrap();
        let placement = Placement::Placed {
            call_id: "call_00000000000000000001".into(),
            status: CallStatus::Completed,
        };
        block_on(
            api.campaigns
                .send(&id, CampaignRequest::Placed { row: 1, placement }),
        )
        .unwrap();
    }
    assert_eq!(
        expect(api.send("GET", &done_path, key, None), 200)["status"],
        "completed"
    );
    expect_error(
        api.send("POST", &format!("{done_path}/cancel"), key, None),
        409,
        "campaign_state_conflict",
    );
    let page = expect(api.send("GET", "/v1/campaigns?limit=1", key, None), 200);
    let cursor = page["next_cursor"].as_str().expect("more campaigns");
    expect(
        api.send(
            "GET",
            &format!("/v1/campaigns?limit=1&cursor={cursor}"),
            key,
            None,
        ),
        200,
    );
    expect_error(
        api.send("GET", "/v1/campaigns?limit=0", key, None),
        400,
        "invalid_parameter",
    );
    expect_error(
        api.send("GET", "/v1/campaigns?cursor=zz", key, None),
        400,
        "invalid_cursor",
    );
}

/// A tool call's entry of the delivery log, sent or not, matches the
/// delivery schemas (full and listed), as webhook deliveries do.
#[test]
fn tool_call_log_entries_match_the_delivery_schemas() {
    use crate::webhooks::tool_calls::ToolRequestLog;
    use voxline_shared::sidecar_link::{ToolCallAnswer, ToolError, PROTOCOL_VERSION};
    let spec = spec();
    let checker = Checker::new(&spec);
    let body = json!({"type": "tool.call", "call_id": "call_0123456789abcdef", "agent_id": "agt_0123456789abcdef",
        "tool_call_id": "fc_1", "name": "lookup_order", "arguments": {"order": "A-17"}, "metadata": null});
    let sent = ToolRequestLog {
        url: "https://tools.example.com/orders".into(),
        webhook_id: "msg_0123456789abcdef01234567".into(),
        body: body.to_string(),
        status_code: Some(200),
        response_snippet: Some("{\"status\":\"shipped\"}".into()),
        at_ms: NOW,
        duration_ms: 120,
    };
    let ok = ToolCallAnswer {
        protocol_version: PROTOCOL_VERSION,
        ok: true,
        output: Some("{}".into()),
        error: None,
        duration_ms: Some(120),
    };
    let refused = ToolCallAnswer {
        ok: false,
        output: None,
        error: Some(ToolError {
            code: "tool_unknown".into(),
            message: "no such tool".into(),
        }),
        ..ok.clone()
    };
    for (log, answer) in [(sent, ok), (ToolRequestLog::not_sent("", NOW), refused)] {
        let record = log.record("call_0123456789abcdef", &answer);
        let full: Value = serde_json::from_str(&record.to_public_json()).unwrap();
        checker
            .check(&schema_ref("WebhookDelivery"), &full)
            .unwrap_or_else(|e| panic!("{full}: {e}"));
        let id = record.id.clone();
        let listed =
            crate::webhooks::delivery::delivery_summary_from_metadata(&id, &record.list_metadata());
        checker
            .check(&schema_ref("WebhookDeliverySummary"), &listed)
            .unwrap_or_else(|e| panic!("{listed}: {e}"));
        assert_eq!(listed["kind"], "tool_call");
    }
}
