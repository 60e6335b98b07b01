//! Native tests of the request handling over the in-memory KV. The same
//! paths run for real against `wrangler dev` in tests/edge_api.rs.

use super::*;
use crate::api::webhooks::check_webhook_url;
use crate::calls::store::memory::{test_calls, MemoryCalls};
use crate::calls::store::{CallRows, SqlCallRows};
use crate::limits::{CONCURRENCY_RETRY_AFTER_SECONDS, MAX_BODY_BYTES};
use crate::model::keys;
use crate::sql::sqlite::LimitedSqlite;
use crate::store::memory::MemoryKv;
use crate::store::{get_json, put_json};
use crate::traffic::memory::MemoryTraffic;
use futures::executor::block_on;
use serde_json::Value;
use voxline_shared::CallStatus;

const NOW: u64 = 1_764_082_200_000;
pub(crate) const ADMIN: &str = "admin-secret";

struct World {
    kv: MemoryKv,
    /// The tenants' call stores, with the dispatch queue they talk to (`calls.dispatch_queues`).
    calls: MemoryCalls<SqlCallRows<LimitedSqlite>>,
    traffic: MemoryTraffic,
    directory: crate::directory::memory::MemoryDirectory,
    /// Each campaign's object (its alarm kept, fired by `campaign_alarm`).
    campaigns: crate::campaigns::memory::MemoryCampaigns,
    /// Webhook jobs requests queued (the Worker sends them to Cloudflare Queues).
    outbox: crate::webhooks::delivery::Outbox,
    now: std::cell::Cell<u64>,
    sealing: Option<crate::engine_keys::SealingKey>,
    /// Customer tools' URLs: records each POST, answers as told.
    tool_http: FakeToolHttp,
}

/// A tool server stand-in for [`World`]: every POST (url, headers, body) is
/// kept; the answer is `answer` (a 200 with `{}` until a test sets one).
/// One POST a tool received: url, headers, body.
type SeenToolPost = (String, Vec<(String, String)>, String);

#[derive(Default)]
struct FakeToolHttp {
    seen: std::cell::RefCell<Vec<SeenToolPost>>,
    answer: std::cell::RefCell<
        Option<
            std::result::Result<
                crate::webhooks::tool_calls::ToolReply,
                crate::webhooks::tool_calls::ToolHttpError,
            >,
        >,
    >,
}

impl crate::webhooks::tool_calls::ToolHttp for FakeToolHttp {
    fn post<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(String, String)],
        body: &'a str,
        _timeout_ms: u64,
        _max_body_bytes: usize,
    ) -> crate::traffic::port::LocalFuture<
        'a,
        std::result::Result<
            crate::webhooks::tool_calls::ToolReply,
            crate::webhooks::tool_calls::ToolHttpError,
        >,
    > {
        self.seen
            .borrow_mut()
            .push((url.into(), headers.to_vec(), body.into()));
        let answer = self.answer.borrow().clone().unwrap_or_else(|| {
            Ok(crate::webhooks::tool_calls::ToolReply {
                status: 200,
                body: b"{}".to_vec(),
                too_large: false,
            })
        });
        Box::pin(async move { answer })
    }
    fn now_ms(&self) -> u64 {
        NOW
    }
}

impl World {
    fn new() -> World {
        World {
            kv: MemoryKv::default(),
            calls: test_calls(),
            traffic: MemoryTraffic::default(),
            directory: Default::default(),
            campaigns: Default::default(),
            outbox: Default::default(),
            now: std::cell::Cell::new(NOW),
            sealing: Some(crate::webhooks::delivery::tests_support::sealing_key()),
            tool_http: FakeToolHttp::default(),
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> ApiResponse {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let req = ApiRequest {
            method: method.into(),
            scheme: "https".into(),
            path: path.into(),
            query: query.into(),
            content_type: body.as_ref().map(|_| "application/json".to_string()),
            authorization: token.map(|t| format!("Bearer {t}")),
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            headers: Vec::new(),
        };
        self.send_req(&req)
    }

    fn send_req(&self, req: &ApiRequest) -> ApiResponse {
        // Each request gets a later clock, like real traffic.
        self.now.set(self.now.get() + 1);
        self.with_env(|env| block_on(handle(env, req)))
    }

    /// Runs `f` against the ports at the current clock, then what the
    /// Durable Objects do after answering: the queue reports to the call
    /// stores, which hand their events to the delivery queue and their
    /// campaign notices to the campaigns' objects.
    fn with_env<T>(
        &self,
        f: impl FnOnce(&Env<'_, MemoryKv, crate::dispatch::port::memory::MemoryDispatchQueues>) -> T,
    ) -> T {
        self.traffic.now_ms.set(self.now.get());
        self.campaigns.now_ms.set(self.now.get());
        self.calls.now_ms.set(self.now.get());
        self.directory.now_ms.set(self.now.get());
        self.calls.dispatch_queues.now_ms.set(self.now.get());
        self.kv.now_ms.set(self.now.get());
        let env = Env {
            kv: &self.kv,
            dispatch_queues: &self.calls.dispatch_queues,
            now_ms: self.now.get(),
            admin_token: Some(ADMIN),
            dev_mode: false,
            default_region: "local",
            traffic: &self.traffic,
            calls: &self.calls,
            directory: &self.directory,
            outbox: &self.outbox,
            sealing_key: self.sealing.as_ref(),
            auth_failures: crate::traffic::AUTH_FAILURES,
            tool_http: &self.tool_http,
            campaigns: &self.campaigns,
        };
        let out = f(&env);
        self.settle();
        out
    }

    /// Reports applied, outboxes drained, campaign notices delivered.
    fn settle(&self) {
        use crate::campaigns::{CampaignRequest, Campaigns};
        loop {
            self.calls.apply_queue_reports().unwrap();
            block_on(self.calls.drain(&self.kv, &self.outbox)).unwrap();
            let notices = self.outbox.take_campaign_notices();
            if notices.is_empty() {
                break;
            }
            for notice in notices {
                let id = notice.campaign_id.clone();
                block_on(self.campaigns.send(&id, CampaignRequest::Notice { notice })).unwrap();
            }
        }
        block_on(self.campaigns.drain(&self.kv, &self.outbox)).unwrap();
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method, path, Some(ADMIN), body);
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        r.body_json()
    }

    /// Returns (tenant id, API key).
    fn tenant(&self, with_agent: bool) -> (String, String) {
        let t = self.admin("POST", "/admin/tenants", Some(json!({"name": "t"})));
        let tid = t["id"].as_str().unwrap().to_string();
        if with_agent {
            self.admin(
                "POST",
                &format!("/admin/tenants/{tid}/agents"),
                Some(json!({"name": "a", "voice": "alloy"})),
            );
        }
        let k = self.admin("POST", &format!("/admin/tenants/{tid}/api-keys"), None);
        (tid, k["key"].as_str().unwrap().to_string())
    }

    /// Runs every queued webhook job once against a receiver answering
    /// `status` with `body` (their attempts land in the delivery log); the
    /// requests it got: (url, headers, body).
    fn deliver_all(&self, status: u16, body: &str) -> Vec<SeenToolPost> {
        struct Receiver<'a>(u16, &'a str, std::cell::RefCell<Vec<SeenToolPost>>);
        impl crate::webhooks::delivery::WebhookHttp for Receiver<'_> {
            async fn post(
                &self,
                url: &str,
                headers: &[(String, String)],
                body: &str,
                _: u64,
            ) -> std::result::Result<crate::webhooks::delivery::HttpReply, String> {
                self.2
                    .borrow_mut()
                    .push((url.into(), headers.to_vec(), body.into()));
                Ok(crate::webhooks::delivery::HttpReply {
                    status: self.0,
                    retry_after: None,
                    body_snippet: crate::webhooks::delivery::response_snippet(self.1.as_bytes()),
                })
            }
        }
        let receiver = Receiver(status, body, Default::default());
        let at = self.now.get();
        for job in self.outbox.take() {
            block_on(crate::webhooks::delivery::process(
                &self.kv,
                &receiver,
                job,
                &|| at,
                false,
                self.sealing.as_ref(),
            ))
            .unwrap();
        }
        receiver.2.into_inner()
    }

    fn code(r: &ApiResponse) -> String {
        r.body_json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

#[test]
fn call_is_created_with_agent_defaults_and_read_back() {
    let w = World::new();
    let (_, key) = w.tenant(true);
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100", "language": "de-DE"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let call = r.body_json();
    assert_eq!(call["status"], "queued");
    assert_eq!(call["voice"], "alloy", "agent default");
    assert_eq!(call["language"], "de-DE", "call override");
    let id = call["id"].as_str().unwrap();
    assert!(r
        .headers
        .contains(&("Location".into(), format!("/v1/calls/{id}"))));
    let got = w.send("GET", &format!("/v1/calls/{id}"), Some(&key), None);
    assert_eq!((got.status, got.body_json()), (200, call));
}

#[test]
fn a_call_with_transcript_email_gets_one_mail_job_when_it_ends() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let place = |body: Value| {
        let r = w.send("POST", "/v1/calls", Some(&key), Some(body));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body_json()
    };
    let mailed = place(
        json!({"phone": "+4915157610183", "email": "alex@example.org",
        "transcript_email": "ops@yourcompany.example", "schedule_at": "2025-11-26T00:00:00Z"}),
    );
    assert_eq!(mailed["transcript_email"], "ops@yourcompany.example");
    assert_eq!(
        mailed["email"], "alex@example.org",
        "the callee's, unchanged"
    );
    let plain = place(json!({"phone": "+14155550100", "schedule_at": "2025-11-26T00:00:00Z"}));
    assert_eq!(plain["transcript_email"], Value::Null);
    assert!(w.outbox.take_mails().is_empty(), "no mail before the end");
    for call in [&mailed, &plain] {
        let id = call["id"].as_str().unwrap();
        let h = w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
        assert_eq!(h.body_json()["status"], "cancelled");
    }
    let mails = w.outbox.take_mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(
        (
            mail.tenant_id.as_str(),
            mail.call_id.as_str(),
            mail.to.as_str(),
            mail.attempt
        ),
        (
            tid.as_str(),
            mailed["id"].as_str().unwrap(),
            "ops@yourcompany.example",
            1
        )
    );
    assert_eq!(mail.subject, "Call to +4915157610183 ended: cancelled");
    assert!(mail.mail_id.starts_with("mail_"), "{}", mail.mail_id);
    assert!(
        mail.body.contains("Ended reason: hangup_requested\n"),
        "{}",
        mail.body
    );
    // It crosses the queue as a mail, and a webhook delivery as before.
    let queued = crate::webhooks::delivery::QueueJob::Mail(mail.clone());
    let text = serde_json::to_string(&queued).unwrap();
    assert_eq!(
        serde_json::from_str::<crate::webhooks::delivery::QueueJob>(&text).unwrap(),
        queued
    );
    // Hanging up again ends nothing: still one mail.
    let id = mailed["id"].as_str().unwrap();
    w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    assert!(w.outbox.take_mails().is_empty());
}

#[test]
fn scheduled_call_and_hangup_are_idempotent() {
    let w = World::new();
    let (_, key) = w.tenant(true);
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100", "schedule_at": "2025-11-26T00:00:00Z"})),
    );
    assert_eq!(r.body_json()["status"], "scheduled");
    let id = r.body_json()["id"].as_str().unwrap().to_string();
    let h1 = w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    assert_eq!(h1.status, 200);
    assert_eq!(h1.body_json()["status"], "cancelled");
    assert_eq!(h1.body_json()["ended_reason"], "hangup_requested");
    let h2 = w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    assert_eq!((h2.status, h2.body_json()), (200, h1.body_json()));
}

#[test]
fn live_call_hangup_is_marked_once_and_accepted() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let id = w
        .send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": "+14155550100"})),
        )
        .body_json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A sidecar took it: leased and acked, so the queue holds it live.
    let (offers, _) = w
        .calls
        .dispatch_queues
        .queues
        .borrow_mut()
        .get_mut("local")
        .unwrap()
        .lease("s1", 1, w.now.get(), &Default::default());
    let (_, dialing) = w
        .calls
        .dispatch_queues
        .queues
        .borrow_mut()
        .get_mut("local")
        .unwrap()
        .ack("s1", &offers[0].lease_id, true, w.now.get());
    w.calls.dispatch_queues.updates.borrow_mut().extend(dialing);
    w.calls.apply_queue_reports().unwrap();
    assert_eq!(
        w.calls.rows(&tid).call(&id).unwrap().unwrap().status,
        CallStatus::Dialing
    );
    let h1 = w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    assert_eq!(h1.status, 202);
    let h2 = w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    assert_eq!(
        h2.body_json()["hangup_requested_at"],
        h1.body_json()["hangup_requested_at"]
    );
}

#[test]
fn tenants_cannot_see_each_others_calls() {
    let w = World::new();
    let (_, key_a) = w.tenant(true);
    let (_, key_b) = w.tenant(true);
    let id = w
        .send(
            "POST",
            "/v1/calls",
            Some(&key_a),
            Some(json!({"phone": "+14155550100"})),
        )
        .body_json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (m, p) in [
        ("GET", format!("/v1/calls/{id}")),
        ("POST", format!("/v1/calls/{id}/hangup")),
    ] {
        let r = w.send(m, &p, Some(&key_b), None);
        assert_eq!(
            (r.status, World::code(&r)),
            (404, "call_not_found".to_string())
        );
    }
    let list = w.send("GET", "/v1/calls", Some(&key_b), None).body_json();
    assert_eq!(list["data"], json!([]));
}

#[test]
fn listing_pages_newest_first_with_exact_status_filter() {
    let w = World::new();
    let (_, key) = w.tenant(true);
    let mut ids = Vec::new();
    for i in 0..7 {
        // Distinct numbers: one call at a time per agent and number.
        let r = w.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": format!("+1415555010{i}")})),
        );
        ids.push(r.body_json()["id"].as_str().unwrap().to_string());
    }
    for id in [&ids[1], &ids[4], &ids[5]] {
        w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    }
    let walk = |filter: &str| {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("/v1/calls?limit=2{filter}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let page = w.send("GET", &q, Some(&key), None).body_json();
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= 2, "page overshoots limit");
            seen.extend(data.iter().map(|c| c["id"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return seen,
            }
        }
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(walk(""), newest_first);
    assert_eq!(
        walk("&status=cancelled"),
        vec![ids[5].clone(), ids[4].clone(), ids[1].clone()]
    );
    let queued: Vec<String> = newest_first
        .iter()
        .filter(|i| ![&ids[1], &ids[4], &ids[5]].contains(i))
        .cloned()
        .collect();
    assert_eq!(walk("&status=queued,scheduled"), queued);
    // A cursor is bound to its filter.
    let page = w
        .send("GET", "/v1/calls?limit=1", Some(&key), None)
        .body_json();
    let c = page["next_cursor"].as_str().unwrap();
    let r = w.send(
        "GET",
        &format!("/v1/calls?status=queued&cursor={c}"),
        Some(&key),
        None,
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (400, "invalid_cursor".to_string())
    );
    // A filter given names statuses exactly: empty, an empty item or a
    // padded name is a mistake (the OpenAPI array has minItems 1), not "any".
    for bad in [
        "status=",
        "status=queued,,scheduled",
        "status=queued,%20scheduled",
    ] {
        for path in ["/v1/calls", "/v1/webhooks/deliveries"] {
            let r = w.send("GET", &format!("{path}?{bad}"), Some(&key), None);
            assert_eq!(
                (r.status, World::code(&r)),
                (400, "invalid_parameter".to_string()),
                "{path}?{bad}"
            );
        }
    }
}

#[test]
fn keys_are_stored_hashed_and_revocation_bites() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let dump: String =
        w.kv.map
            .borrow()
            .iter()
            .map(|(k, (v, _))| format!("{k}={v}\n"))
            .collect();
    assert!(!dump.contains(&key), "clear key stored");
    assert!(dump.contains(&crate::ids::hash_api_key(&key)));
    let keys = w.admin("GET", &format!("/admin/tenants/{tid}/api-keys"), None);
    let kid = keys["data"][0]["id"].as_str().unwrap().to_string();
    assert!(keys["data"][0].get("hash").is_none() && keys["data"][0].get("key").is_none());
    w.admin(
        "DELETE",
        &format!("/admin/tenants/{tid}/api-keys/{kid}"),
        None,
    );
    let r = w.send("GET", "/v1/calls", Some(&key), None);
    assert_eq!(
        (r.status, World::code(&r)),
        (401, "invalid_credentials".to_string())
    );
    let again = w.send(
        "DELETE",
        &format!("/admin/tenants/{tid}/api-keys/{kid}"),
        Some(ADMIN),
        None,
    );
    assert_eq!(again.status, 200, "revocation is idempotent");
}

#[test]
fn auth_failures_have_their_codes() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let cases = [
        (
            w.send("GET", "/v1/calls", None, None),
            401,
            "missing_credentials",
        ),
        (
            w.send("GET", "/v1/calls", Some("ak_nope"), None),
            401,
            "invalid_credentials",
        ),
        (
            w.send("GET", "/v1/calls", Some(ADMIN), None),
            401,
            "invalid_credentials",
        ),
        (
            w.send(
                "POST",
                "/admin/tenants",
                Some(&key),
                Some(json!({"name": "x"})),
            ),
            401,
            "invalid_credentials",
        ),
        (w.send("GET", "/nope", None, None), 404, "not_found"),
        (
            w.send("PUT", "/v1/calls", Some(&key), None),
            405,
            "method_not_allowed",
        ),
    ];
    for (r, status, code) in cases {
        assert_eq!(
            (r.status, World::code(&r)),
            (status, code.to_string()),
            "{}",
            r.body
        );
    }
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"disabled": true})),
    );
    let r = w.send("GET", "/v1/calls", Some(&key), None);
    assert_eq!(
        (r.status, World::code(&r)),
        (403, "tenant_disabled".to_string())
    );
}

#[test]
fn agent_resolution_errors() {
    let w = World::new();
    let (tid, key) = w.tenant(false);
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (422, "agent_required".to_string())
    );
    let a = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "a", "enabled": false})),
    );
    assert_eq!(a["default"], true, "first agent becomes the default");
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (409, "agent_disabled".to_string())
    );
    let (_, other_key) = w.tenant(true);
    let aid = a["id"].as_str().unwrap();
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&other_key),
        Some(json!({"phone": "+14155550100", "agent_id": aid})),
    );
    assert_eq!(
        (r.status, World::code(&r)),
        (422, "unknown_agent".to_string())
    );
}

#[test]
fn webhook_urls_are_checked() {
    assert!(check_webhook_url("https://hooks.example.com/x", false).is_ok());
    assert!(check_webhook_url("http://127.0.0.1:9000/hook", true).is_ok());
    assert!(check_webhook_url("http://[::1]:9000/hook", true).is_ok());
    assert!(check_webhook_url("http://127.0.0.1:9000/hook", false).is_err());
    assert!(check_webhook_url("http://example.com/hook", true).is_err());
    assert!(check_webhook_url("ftp://example.com", true).is_err());
    assert!(check_webhook_url("https://", true).is_err());
    assert!(check_webhook_url("https://a b", true).is_err());
}

fn with_header(
    w: &World,
    method: &str,
    path: &str,
    key: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> ApiResponse {
    let req = ApiRequest {
        method: method.into(),
        scheme: "https".into(),
        path: path.into(),
        query: String::new(),
        content_type: Some("application/json".into()),
        authorization: Some(format!("Bearer {key}")),
        body: body.to_string().into_bytes(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    w.send_req(&req)
}

fn header<'r>(r: &'r ApiResponse, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn rate_limits_count_per_key_ip_and_number_and_answer_429() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    w.admin("PATCH", &format!("/admin/tenants/{tid}"), Some(json!({"rate_limits": {"per_key": {"limit": 5, "window_seconds": 60}, "per_number": {"limit": 2, "window_seconds": 3600}}})));
    // Every /v1 answer carries the tightest limit.
    let r = w.send("GET", "/v1/calls", Some(&key), None);
    assert_eq!(
        (
            header(&r, "X-RateLimit-Limit"),
            header(&r, "X-RateLimit-Remaining")
        ),
        (Some("5"), Some("4"))
    );
    // A new call also counts against its number (limit 2: tightest now).
    let c1 = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(
        (
            c1.status,
            header(&c1, "X-RateLimit-Limit"),
            header(&c1, "X-RateLimit-Remaining")
        ),
        (201, Some("2"), Some("1"))
    );
    let id = c1.body_json()["id"].as_str().unwrap().to_string();
    w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    let c2 = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(c2.status, 201, "{}", c2.body);
    let c3 = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(
        (c3.status, World::code(&c3)),
        (429, "rate_limited".to_string())
    );
    assert_eq!(header(&c3, "Retry-After"), header(&c3, "X-RateLimit-Reset"));
    // The key limit: 5 counted so far (the refused one did not count).
    let r = w.send("GET", "/v1/calls", Some(&key), None);
    assert_eq!(
        (r.status, header(&r, "X-RateLimit-Remaining")),
        (200, Some("0"))
    );
    let r = w.send("GET", "/v1/calls", Some(&key), None);
    assert_eq!(
        (r.status, header(&r, "X-RateLimit-Limit")),
        (429, Some("5"))
    );
    // A minute later the key window has reset.
    w.now.set(w.now.get() + 60_000);
    assert_eq!(w.send("GET", "/v1/calls", Some(&key), None).status, 200);
    // Settings are validated.
    let bad = w.send(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(ADMIN),
        Some(json!({"rate_limits": {"per_ip": {"limit": 0, "window_seconds": 1}}})),
    );
    assert_eq!(
        (bad.status, bad.body_json()["error"]["field"].as_str()),
        (422, Some("rate_limits.per_ip.limit"))
    );
}

#[test]
fn per_ip_limit_uses_cf_connecting_ip() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"rate_limits": {"per_ip": {"limit": 1, "window_seconds": 60}}})),
    );
    let get = |ip: &str| {
        with_header(
            &w,
            "GET",
            "/v1/calls",
            &key,
            json!({}),
            &[("cf-connecting-ip", ip)],
        )
        .status
    };
    assert_eq!(
        (get("203.0.113.1"), get("203.0.113.1"), get("203.0.113.2")),
        (200, 429, 200)
    );
}

#[test]
fn idempotency_keys_replay_refuse_mismatch_and_create_once() {
    let w = World::new();
    let (_, key) = w.tenant(true);
    let body = json!({"phone": "+14155550100"});
    let h = [("idempotency-key", "order-1")];
    let first = with_header(&w, "POST", "/v1/calls", &key, body.clone(), &h);
    assert_eq!(first.status, 201);
    let again = with_header(&w, "POST", "/v1/calls", &key, body.clone(), &h);
    assert_eq!((again.status, again.body_json()), (201, first.body_json()));
    assert_eq!(header(&again, "Idempotent-Replayed"), Some("true"));
    assert_eq!(header(&again, "Location"), header(&first, "Location"));
    let other = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        json!({"phone": "+14155550101"}),
        &h,
    );
    assert_eq!(
        (other.status, World::code(&other)),
        (422, "idempotency_key_reused".to_string())
    );
    let list = w.send("GET", "/v1/calls", Some(&key), None).body_json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one call only");
    // Validation failures are answers too, and replay as such.
    let bad = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        json!({"phone": "nope"}),
        &[("idempotency-key", "k2")],
    );
    let bad2 = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        json!({"phone": "nope"}),
        &[("idempotency-key", "k2")],
    );
    assert_eq!(
        (
            bad.status,
            bad2.status,
            header(&bad2, "Idempotent-Replayed")
        ),
        (422, 422, Some("true"))
    );
    let malformed = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        body,
        &[("idempotency-key", "a b")],
    );
    assert_eq!(
        (malformed.status, World::code(&malformed)),
        (400, "invalid_parameter".to_string())
    );
}

#[test]
fn a_second_call_in_progress_is_refused_and_leaves_no_record() {
    let w = World::new();
    let (_, key) = w.tenant(true);
    let first = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    let id = first.body_json()["id"].as_str().unwrap().to_string();
    let dup = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(
        (dup.status, World::code(&dup)),
        (409, "call_in_progress".to_string())
    );
    assert!(dup.body_json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&id));
    let list = w.send("GET", "/v1/calls", Some(&key), None).body_json();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "the refused call left no record: {list}"
    );
    // Once the first is cancelled the number is free again.
    w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    assert_eq!(
        w.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": "+14155550100"}))
        )
        .status,
        201
    );
}

#[test]
fn a_tenant_cap_queues_or_refuses_calls_over_it() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    assert!(
        w.admin("GET", &format!("/admin/tenants/{tid}"), None)["max_concurrent_calls"].is_null(),
        "unlimited by default"
    );
    let t = w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"max_concurrent_calls": 2})),
    );
    assert_eq!(t["max_concurrent_calls"], 2);
    for i in 0..3 {
        let r = w.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": format!("+1415555010{i}")})),
        );
        assert_eq!(r.status, 201, "queue mode waits: {}", r.body);
    }
    let (offers, _) = w
        .calls
        .dispatch_queues
        .queues
        .borrow_mut()
        .get_mut("local")
        .unwrap()
        .lease("s1", 10, w.now.get(), &Default::default());
    assert_eq!(offers.len(), 2, "the cap holds the third back");
    let refused = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550109", "on_concurrency_limit": "reject"})),
    );
    assert_eq!(
        (refused.status, World::code(&refused)),
        (429, "concurrency_limit_reached".to_string())
    );
    assert_eq!(
        header(&refused, "Retry-After"),
        Some(CONCURRENCY_RETRY_AFTER_SECONDS.to_string().as_str())
    );
    assert!(header(&refused, "X-RateLimit-Limit").is_some());
    let list = w.send("GET", "/v1/calls", Some(&key), None).body_json();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        3,
        "the refused call left no record"
    );
    // Out of range is refused; an explicit null removes the cap; absent keeps it.
    let bad = w.send(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(ADMIN),
        Some(json!({"max_concurrent_calls": 0})),
    );
    assert_eq!(
        (bad.status, World::code(&bad)),
        (422, "out_of_range".to_string())
    );
    assert_eq!(
        w.admin(
            "PATCH",
            &format!("/admin/tenants/{tid}"),
            Some(json!({"name": "x"}))
        )["max_concurrent_calls"],
        2
    );
    assert!(w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"max_concurrent_calls": null}))
    )["max_concurrent_calls"]
        .is_null());
    let ok = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550109", "on_concurrency_limit": "reject"})),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let bad = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550108", "on_concurrency_limit": "drop"})),
    );
    assert_eq!(
        (bad.status, World::code(&bad)),
        (422, "invalid_value".to_string())
    );
}

#[test]
fn a_key_requiring_signatures_refuses_unsigned_tampered_stale_and_replayed_requests() {
    let w = World::new();
    let (tid, plain_key) = w.tenant(true);
    let k = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/api-keys"),
        Some(json!({"require_signature": true})),
    );
    let (key, secret) = (
        k["key"].as_str().unwrap().to_string(),
        k["signing_secret"].as_str().unwrap().to_string(),
    );
    assert_eq!(k["require_signature"], true);
    assert!(secret.starts_with("sks_"));
    let listed = w.send(
        "GET",
        &format!("/admin/tenants/{tid}/api-keys"),
        Some(ADMIN),
        None,
    );
    assert!(!listed.body.contains(&secret), "the secret is shown once");
    assert!(
        w.admin("POST", &format!("/admin/tenants/{tid}/api-keys"), None)["signing_secret"]
            .is_null()
    );
    let body = json!({"phone": "+14155550100"});
    let raw = body.to_string();
    let sign_for = |method: &str, path: &str, t: u64, b: &str| {
        let target = crate::api::request_signing::Target {
            method,
            path_and_query: path,
        };
        crate::api::request_signing::header_value(secret.as_bytes(), t, target, b.as_bytes())
    };
    let sign = |t: u64, b: &str| sign_for("POST", "/v1/calls", t, b);
    let now_seconds = || (w.now.get() + 1) / 1000;
    let code = |r: &ApiResponse| (r.status, World::code(r));
    let h = sign(now_seconds(), &raw);
    let ok = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        body.clone(),
        &[("x-signature", &h)],
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let replay = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        body.clone(),
        &[("x-signature", &h)],
    );
    assert_eq!(code(&replay), (401, "replayed_request".into()));
    assert_eq!(
        code(&w.send("POST", "/v1/calls", Some(&key), Some(body.clone()))),
        (401, "invalid_request_signature".into())
    );
    let tampered = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        json!({"phone": "+14155550101"}),
        &[("x-signature", &sign(now_seconds(), &raw))],
    );
    assert_eq!(code(&tampered), (401, "invalid_request_signature".into()));
    let other = json!({"phone": "+14155550102"});
    let stale = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        other.clone(),
        &[(
            "x-signature",
            &sign(now_seconds() - 301, &other.to_string()),
        )],
    );
    assert_eq!(code(&stale), (401, "invalid_request_signature".into()));
    // A fresh signature of the same request is a new request; other keys need none.
    let again = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        other.clone(),
        &[("x-signature", &sign(now_seconds() - 1, &other.to_string()))],
    );
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(
        w.send("GET", "/v1/calls", Some(&plain_key), None).status,
        200
    );
    // Method and path are signed: a read's signature, captured, does not
    // hang the call up (nor read another call); the read itself works.
    let id = ok.body_json()["id"].as_str().unwrap().to_string();
    let read = format!("/v1/calls/{id}");
    let get_sig = sign_for("GET", &read, now_seconds(), "");
    let send_empty = |method: &str, path: &str, sig: &str| {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        w.send_req(&ApiRequest {
            method: method.into(),
            scheme: "https".into(),
            path: path.into(),
            query: query.into(),
            authorization: Some(format!("Bearer {key}")),
            headers: vec![("x-signature".into(), sig.into())],
            ..ApiRequest::default()
        })
    };
    let hangup = send_empty("POST", &format!("{read}/hangup"), &get_sig);
    assert_eq!(code(&hangup), (401, "invalid_request_signature".into()));
    let other = send_empty("GET", "/v1/calls/c_other", &get_sig);
    assert_eq!(code(&other), (401, "invalid_request_signature".into()));
    assert_eq!(send_empty("GET", &read, &get_sig).status, 200);
    // The query is signed as sent, after a `?`.
    let list = "/v1/calls?limit=1";
    let list_sig = sign_for("GET", list, now_seconds(), "");
    assert_eq!(
        code(&send_empty("GET", "/v1/calls?limit=2", &list_sig)),
        (401, "invalid_request_signature".into())
    );
    assert_eq!(send_empty("GET", list, &list_sig).status, 200);
    // A body-only v1 signature gets its own code, naming v2.
    let v1 = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(format!("{}.", now_seconds()).as_bytes());
        format!(
            "t={},v1={}",
            now_seconds(),
            hex::encode(m.finalize().into_bytes())
        )
    };
    let old = send_empty("GET", &read, &v1);
    assert_eq!(code(&old), (401, "signature_version_unsupported".into()));
    assert!(old.body.contains("v2="), "{}", old.body);
}

#[test]
fn calls_outside_the_agents_calling_window_are_moved_or_refused() {
    let w = World::new();
    let (tid, key) = w.tenant(false);
    // NOW is Tuesday 2025-11-25 14:50 UTC (15:50 in Berlin).
    let window =
        json!({"days": ["sat"], "start": "09:00", "end": "10:00", "time_zone": "Europe/Berlin"});
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "a", "calling_window": window})),
    );
    assert_eq!(agent["calling_window"]["time_zone"], "Europe/Berlin");
    let aid = agent["id"].as_str().unwrap().to_string();
    let moved = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(moved.status, 201, "{}", moved.body);
    let call = moved.body_json();
    assert_eq!(
        (
            call["status"].as_str(),
            call["schedule_at"].as_str(),
            call["scheduled_reason"].as_str()
        ),
        (
            Some("scheduled"),
            Some("2025-11-29T08:00:00.000Z"),
            Some("calling_window")
        )
    );
    // The queue holds it until then.
    let queued_at = w.calls.dispatch_queues.queues.borrow()["local"]
        .waiting
        .iter()
        .next()
        .unwrap()
        .ready_at_ms;
    assert_eq!(
        crate::ids::rfc3339_ms(queued_at),
        "2025-11-29T08:00:00.000Z"
    );
    // An explicit schedule_at outside is moved too; one inside is kept as is.
    let later = w
        .send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": "+14155550101", "schedule_at": "2025-11-29T10:30:00Z"})),
        )
        .body_json();
    assert_eq!(
        (
            later["schedule_at"].as_str(),
            later["scheduled_reason"].as_str()
        ),
        (Some("2025-12-06T08:00:00.000Z"), Some("calling_window"))
    );
    let inside = w
        .send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": "+14155550102", "schedule_at": "2025-11-29T08:30:00Z"})),
        )
        .body_json();
    assert_eq!(
        (
            inside["schedule_at"].as_str(),
            inside["scheduled_reason"].as_str()
        ),
        (Some("2025-11-29T08:30:00.000Z"), None)
    );
    // Reject mode names the next start and creates nothing.
    let refused = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550103", "outside_window": "reject"})),
    );
    assert_eq!(
        (refused.status, World::code(&refused)),
        (422, "outside_calling_window".to_string())
    );
    assert!(
        refused.body.contains("2025-11-29T08:00:00.000Z"),
        "{}",
        refused.body
    );
    assert_eq!(
        w.send("GET", "/v1/calls", Some(&key), None).body_json()["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Bad windows are refused field by field; null removes the window.
    let bad = w.send("PATCH", &format!("/admin/tenants/{tid}/agents/{aid}"), Some(ADMIN), Some(json!({"calling_window": {"days": ["sat"], "start": "09:00", "end": "10:00", "time_zone": "Mars/Base"}})));
    assert_eq!(
        bad.body_json()["error"]["field"],
        "calling_window.time_zone"
    );
    assert!(
        w.admin(
            "PATCH",
            &format!("/admin/tenants/{tid}/agents/{aid}"),
            Some(json!({"name": "b"}))
        )["calling_window"]
            .is_object(),
        "absent keeps it"
    );
    assert!(w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"calling_window": null}))
    )["calling_window"]
        .is_null());
    let now = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550103", "outside_window": "reject"})),
    );
    assert_eq!(
        (now.status, now.body_json()["status"].as_str()),
        (201, Some("queued"))
    );
}

#[test]
fn engine_keys_are_sealed_everywhere_and_opened_only_for_the_sidecar() {
    use crate::engine_keys::SealingKey;
    let mut w = World::new();
    let (tid, key) = w.tenant(true);
    // Without the sealing secret a key is refused, and nothing is created.
    w.sealing = None;
    let refused = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100", "engine_api_key": "sk-call-1"})),
    );
    assert_eq!(
        (refused.status, World::code(&refused).as_str()),
        (503, "engine_keys_unavailable")
    );
    let sealing = SealingKey::from_secret(&"cd".repeat(32)).unwrap();
    w.sealing = Some(sealing.clone());
    let bad_url = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100", "engine_base_url": "wss://169.254.169.254/x"})),
    );
    assert_eq!(
        (bad_url.status, World::code(&bad_url).as_str()),
        (422, "invalid_url")
    );
    // An agent with a key and a base URL: shown as set, never shown.
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "cloud", "default_engine": "openai_realtime",
        "engine_api_key": "sk-agent-SECRET", "engine_base_url": "wss://realtime.example.com"})),
    );
    assert_eq!(
        (
            agent["engine_api_key_set"].as_bool(),
            agent["engine_base_url"].as_str()
        ),
        (Some(true), Some("wss://realtime.example.com"))
    );
    let aid = agent["id"].as_str().unwrap().to_string();
    // Two calls: one with the agent's key, one with its own.
    let by_agent = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550101", "agent_id": aid})),
    );
    assert_eq!(by_agent.status, 201, "{}", by_agent.body);
    assert_eq!(by_agent.body_json()["engine_api_key_set"], true);
    let own = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(
            json!({"phone": "+14155550102", "agent_id": aid, "engine_api_key": "sk-call-SECRET",
        "engine_base_url": "wss://other.example.com"}),
        ),
    );
    assert_eq!(own.status, 201, "{}", own.body);
    assert_eq!(
        own.body_json()["engine_base_url"],
        "wss://other.example.com"
    );
    let plain = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550103"})),
    );
    assert_eq!(
        (
            plain.status,
            plain.body_json()["engine_api_key_set"].as_bool()
        ),
        (201, Some(false))
    );
    // A call naming its own endpoint but no key never carries the agent's key there.
    let url_only = w.send("POST", "/v1/calls", Some(&key), Some(json!({"phone": "+14155550104", "agent_id": aid, "engine_base_url": "wss://attacker.example.net/x"})));
    assert_eq!(url_only.status, 201, "{}", url_only.body);
    assert_eq!(
        (
            url_only.body_json()["engine_api_key_set"].as_bool(),
            url_only.body_json()["engine_base_url"].as_str()
        ),
        (Some(false), Some("wss://attacker.example.net/x"))
    );
    // A call's own key without a URL goes to the engine's own endpoint, not the agent's.
    let key_only = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550105", "agent_id": aid, "engine_api_key": "sk-call-2"})),
    );
    assert_eq!(
        key_only.body_json()["engine_base_url"],
        Value::Null,
        "{}",
        key_only.body
    );
    // No clear key anywhere in storage or in the queue's state.
    let stored: String = w.kv.map.borrow().values().map(|(v, _)| v.clone()).collect();
    let queued = serde_json::to_string(&*w.calls.dispatch_queues.queues.borrow()).unwrap();
    for clear in ["sk-agent-SECRET", "sk-call-SECRET"] {
        assert!(
            !stored.contains(clear) && !queued.contains(clear),
            "{clear} stored in clear"
        );
        assert!(!by_agent.body.contains(clear) && !own.body.contains(clear));
    }
    assert!(queued.contains("engine_api_key_sealed"));
    // The lease reply to a sidecar carries each call's clear key.
    let mut queues = w.calls.dispatch_queues.queues.borrow_mut();
    let q = queues.get_mut("local").unwrap();
    q.register("sc-1", 10, NOW);
    let (leases, commands) = q.lease(
        "sc-1",
        10,
        w.now.get(),
        &crate::dispatch::queue::DispatchTimings::default(),
    );
    let answer = crate::dispatch::sidecar_link::LeaseAnswer {
        leases,
        commands,
        messages: vec![],
    };
    let reply = serde_json::to_value(answer.into_response(|_| None, Some(&sealing)).0).unwrap();
    let key_for = |phone: &str| {
        reply["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["phone"] == phone)
            .map(|o| o["engine_api_key"].clone())
    };
    assert_eq!(key_for("+14155550101"), Some(json!("sk-agent-SECRET")));
    assert_eq!(key_for("+14155550102"), Some(json!("sk-call-SECRET")));
    assert_eq!(
        key_for("+14155550103"),
        Some(Value::Null),
        "no key given, none sent"
    );
    assert_eq!(
        key_for("+14155550104"),
        Some(Value::Null),
        "the agent's key never goes to the call's URL"
    );
    assert_eq!(key_for("+14155550105"), Some(json!("sk-call-2")));
    let url_for = |phone: &str| {
        reply["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["phone"] == phone)
            .map(|o| o["engine_base_url"].clone())
    };
    assert_eq!(
        (url_for("+14155550101"), url_for("+14155550105")),
        (Some(json!("wss://realtime.example.com")), Some(Value::Null)),
        "each key with its own endpoint"
    );
    drop(queues);
    // PATCH null removes the agent's key.
    let patched = w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(json!({"engine_api_key": null})),
    );
    assert_eq!(patched["engine_api_key_set"], false);
}

// ---- exact call state at Cloudflare's real limits (KV: 1 write/s per key, stale reads) ----

/// A sidecar speaking the signed protocol to the service, as a real one does.
struct TestSidecar {
    id: String,
    secret: String,
    nonce: std::cell::Cell<u64>,
}

impl TestSidecar {
    /// Places a call with `body` (API key `key`), leases it to this sidecar
    /// (registered in region `local`) and accepts it: its id and offer.
    fn place_and_accept(&self, w: &World, key: &str, body: Value) -> (String, Value) {
        let id = w
            .send("POST", "/v1/calls", Some(key), Some(body))
            .body_json()["id"]
            .as_str()
            .expect("a call id")
            .to_string();
        let lease = self.send(
            w,
            voxline_shared::sidecar_link::paths::LEASE,
            json!({"region": "local", "free_slots": 2, "held_calls": [], "wait_ms": 0}),
        );
        let offer = lease["offers"][0].clone();
        self.send(
            w,
            voxline_shared::sidecar_link::paths::ACK,
            json!({"lease_id": offer["lease_id"], "call_id": id, "accepted": true}),
        );
        (id, offer)
    }

    fn create(w: &World, id: &str) -> TestSidecar {
        let s = w.admin(
            "POST",
            "/admin/sidecars",
            Some(json!({"sidecar_id": id, "region": "local"})),
        );
        TestSidecar {
            id: id.into(),
            secret: s["secret"].as_str().unwrap().into(),
            nonce: std::cell::Cell::new(0),
        }
    }

    /// A request carrying `raw`, signed as this sidecar signs.
    fn signed(&self, w: &World, path: &str, raw: Vec<u8>) -> ApiRequest {
        self.nonce.set(self.nonce.get() + 1);
        let nonce = format!("{:032x}", self.nonce.get());
        let headers = voxline_shared::signing::signed_headers(
            &self.id,
            self.secret.as_bytes(),
            (w.now.get() + 1) / 1000,
            &nonce,
            voxline_shared::signing::Target::post(path),
            &raw,
        );
        ApiRequest {
            method: "POST".into(),
            scheme: "https".into(),
            path: path.into(),
            content_type: Some("application/json".into()),
            body: raw,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..ApiRequest::default()
        }
    }

    fn send(&self, w: &World, path: &str, mut body: Value) -> Value {
        body["protocol_version"] = json!(1);
        body["sidecar_id"] = json!(self.id);
        let req = self.signed(w, path, body.to_string().into_bytes());
        let r = w.send_req(&req);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body_json()
    }

    fn events(&self, w: &World, call_id: &str, kinds: &[Value]) {
        self.events_from(w, call_id, 1, kinds)
    }

    /// Events of attempt 1 numbered from `first_seq`.
    fn events_from(&self, w: &World, call_id: &str, first_seq: usize, kinds: &[Value]) {
        let events: Vec<Value> = kinds.iter().enumerate().map(|(i, k)| json!({"call_id": call_id, "attempt": 1, "seq": first_seq + i, "at_ms": 0, "kind": k})).collect();
        self.send(
            w,
            voxline_shared::sidecar_link::paths::EVENTS,
            json!({"events": events}),
        );
    }
}

fn jobs_of(w: &World, event_type: &str) -> usize {
    w.outbox
        .take()
        .iter()
        .filter(|j| j.event_type == event_type)
        .count()
}

#[test]
fn caller_name_is_checked_kept_on_the_call_and_offered_to_the_sidecar() {
    let w = World::new();
    let (_tid, key) = w.tenant(true);
    let create = |body: Value| w.send("POST", "/v1/calls", Some(&key), Some(body));
    let refused = |name: &str| {
        let r = create(json!({"phone": "+14155550100", "caller_name": name}));
        let e = r.body_json()["error"].clone();
        (
            r.status,
            e["code"].as_str().unwrap_or("").to_string(),
            e["field"].as_str().unwrap_or("").to_string(),
        )
    };
    let bad = |code: &str| (422, code.to_string(), "caller_name".to_string());
    for name in ["", "  ", "Re\r\nminder", "a\u{7}b", "x\u{85}"] {
        assert_eq!(refused(name), bad("invalid_value"), "{name:?}");
    }
    assert_eq!(refused(&"n".repeat(65)), bad("value_too_long"));

    let sc = TestSidecar::create(&w, "sc-name");
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::REGISTER,
        json!({"region": "local", "capacity": 2, "version": "t"}),
    );
    let long = "é".repeat(64);
    let r = create(json!({"phone": "+14155550100", "caller_name": long}));
    assert_eq!(r.status, 201, "{}", r.body);
    let named = r.body_json();
    assert_eq!(named["caller_name"], long.as_str());
    let id = named["id"].as_str().unwrap().to_string();
    let shown = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(shown["caller_name"], long.as_str());
    let r = create(json!({"phone": "+14155550101"}));
    assert_eq!(r.body_json()["caller_name"], Value::Null);

    let lease = sc.send(
        &w,
        voxline_shared::sidecar_link::paths::LEASE,
        json!({"region": "local", "free_slots": 2, "held_calls": [], "wait_ms": 0}),
    );
    let offers = lease["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 2, "{lease}");
    for offer in offers {
        let typed: voxline_shared::sidecar_link::Offer =
            serde_json::from_value(offer.clone()).unwrap();
        if typed.call_id == id {
            assert_eq!(typed.caller_name.as_deref(), Some(long.as_str()));
        } else {
            // Absent, not null: sidecars that predate the field read it as before.
            assert!(offer.get("caller_name").is_none(), "{offer}");
            assert_eq!(typed.caller_name, None);
        }
    }
}

/// Dynamic variables: the agent's prompt (or the call's) filled in from the
/// call's name, phone, metadata and `variables`; a placeholder the call does
/// not fill is refused by name, and nothing is stored.
#[test]
fn prompt_variables_are_filled_in_and_an_unknown_one_is_refused() {
    let w = World::new();
    let (tid, key) = w.tenant(false);
    let agent = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(json!({"name": "v", "system_prompt": "Call {{ name }} at {{phone}} about order {{order_id}} ({{metadata.plan}} #{{metadata.crm}}). Reply as {\"ok\": true}."})),
    );
    let aid = agent["id"].as_str().unwrap().to_string();
    let create = |body: Value| w.send("POST", "/v1/calls", Some(&key), Some(body));
    let r = create(
        json!({"phone": "+14155550100", "agent_id": aid, "name": "Ada",
        "metadata": {"plan": "gold", "crm": 7}, "variables": {"order_id": "A-17"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body_json()["system_prompt"],
        "Call Ada at +14155550100 about order A-17 (gold #7). Reply as {\"ok\": true}."
    );
    // The call's own prompt is a template too.
    let r = create(json!({"phone": "+14155550101", "agent_id": aid,
        "system_prompt": "Hi {{who}}", "variables": {"who": "there"}}));
    assert_eq!(r.body_json()["system_prompt"], "Hi there", "{}", r.body);

    let refused = |body: Value| {
        let r = create(body);
        let e = r.body_json()["error"].clone();
        (
            r.status,
            e["code"].as_str().unwrap_or("").to_string(),
            e["field"].as_str().unwrap_or("").to_string(),
            e["message"].as_str().unwrap_or("").to_string(),
        )
    };
    let (status, code, field, message) = refused(json!({"phone": "+14155550102", "agent_id": aid,
        "name": "Ada", "metadata": {"plan": "gold", "crm": 7}}));
    assert_eq!(
        (status, code.as_str(), field.as_str()),
        (422, "unknown_variable", "system_prompt")
    );
    assert!(message.contains("{{order_id}}"), "{message}");
    let (_, code, field, _) = refused(json!({"phone": "+14155550102", "agent_id": aid,
        "variables": {"phone": "+1"}}));
    assert_eq!(
        (code.as_str(), field.as_str()),
        ("invalid_value", "variables")
    );
    let (_, code, field, _) = refused(json!({"phone": "+14155550102", "agent_id": aid,
        "variables": {"order_id": 17}}));
    assert_eq!(
        (code.as_str(), field.as_str()),
        ("invalid_type", "variables.order_id")
    );
    // None of the refused calls exists.
    let list = w.send("GET", "/v1/calls", Some(&key), None).body_json();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2), "{list}");
}

/// `caller_number`: only a number the tenant holds, in service; kept on
/// the call and offered to the sidecar (the SIP From user).
#[test]
fn caller_number_must_be_the_tenants_active_number_and_reaches_the_sidecar() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let (other, _) = w.tenant(false);
    let number = |tid: &str, e164: &str, status: &str| {
        w.admin(
            "PUT",
            &format!("/admin/tenants/{tid}/numbers/{e164}"),
            Some(json!({"status": status})),
        );
    };
    number(&tid, "+14155550111", "active");
    number(&tid, "+14155550112", "inactive");
    number(&other, "+14155550113", "active");
    let create = |body: Value| w.send("POST", "/v1/calls", Some(&key), Some(body));
    let refused = |cn: &str| {
        let r = create(json!({"phone": "+14155550100", "caller_number": cn}));
        let e = r.body_json()["error"].clone();
        (
            r.status,
            e["code"].as_str().unwrap_or("").to_string(),
            e["field"].as_str().unwrap_or("").to_string(),
        )
    };
    let bad = |code: &str| (422, code.to_string(), "caller_number".to_string());
    assert_eq!(refused("4155550111"), bad("invalid_phone_number"));
    // Not held, held by another tenant, held but out of service.
    assert_eq!(refused("+14155550199"), bad("unknown_number"));
    assert_eq!(refused("+14155550113"), bad("unknown_number"));
    assert_eq!(refused("+14155550112"), bad("unknown_number"));

    let sc = TestSidecar::create(&w, "sc-number");
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::REGISTER,
        json!({"region": "local", "capacity": 2, "version": "t"}),
    );
    let r = create(json!({"phone": "+14155550100", "caller_number": "+14155550111"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body_json()["id"].as_str().unwrap().to_string();
    let shown = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(shown["caller_number"], "+14155550111");
    let r = create(json!({"phone": "+14155550101"}));
    assert_eq!(r.body_json()["caller_number"], Value::Null);

    let lease = sc.send(
        &w,
        voxline_shared::sidecar_link::paths::LEASE,
        json!({"region": "local", "free_slots": 2, "held_calls": [], "wait_ms": 0}),
    );
    let offers = lease["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 2, "{lease}");
    for offer in offers {
        let typed: voxline_shared::sidecar_link::Offer =
            serde_json::from_value(offer.clone()).unwrap();
        let want = (typed.call_id == id).then_some("+14155550111");
        assert_eq!(typed.caller_number.as_deref(), want, "{offer}");
    }
}

#[test]
fn a_call_that_ends_within_a_second_is_exact_while_kv_refuses_writes_and_lags() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/v"})),
    );
    let sc = TestSidecar::create(&w, "sc-1");
    // From here on, KV behaves as Cloudflare's: one write per key per second
    // (429 beyond) and readers that lag a minute behind writers. (The
    // configuration above is a minute old, as it would be in production.)
    w.now.set(w.now.get() + 61_000);
    w.kv.limits.set(crate::store::memory::KvLimits {
        one_write_per_second: true,
        propagation_ms: 60_000,
    });
    w.kv.now_ms.set(w.now.get());
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::REGISTER,
        json!({"region": "local", "capacity": 2, "version": "t"}),
    );
    let (id, _offer) = sc.place_and_accept(&w, &key, json!({"phone": "+14155550100"}));
    // Dialing, ringing, answered, two turns and the end: all within a few milliseconds.
    sc.events(&w, &id, &[
        json!({"type": "ringing"}),
        json!({"type": "answered"}),
        json!({"type": "transcript_turn", "role": "agent", "text": "Hello", "start_ms": 0, "end_ms": 500}),
        json!({"type": "transcript_turn", "role": "callee", "text": "yes", "start_ms": 600, "end_ms": 900}),
        json!({"type": "ended", "status": "completed", "reason": "callee_hangup", "timings": {"dispatched_ms": 0, "ringing_ms": 1, "answered_ms": 2, "ended_ms": 3}}),
    ]);
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (call["status"].as_str(), call["attempts"].as_u64()),
        (Some("completed"), Some(1)),
        "{call}"
    );
    assert!(
        call["ringing_at"].is_string()
            && call["answered_at"].is_string()
            && call["ended_at"].is_string(),
        "{call}"
    );
    let t = w
        .send(
            "GET",
            &format!("/v1/calls/{id}/transcript"),
            Some(&key),
            None,
        )
        .body_json();
    assert_eq!(t["turns"].as_array().map(Vec::len), Some(2));
    // A hangup after the end changes nothing and sends nothing (no stale read decides it).
    let h = w.send("POST", &format!("/v1/calls/{id}/hangup"), Some(&key), None);
    assert_eq!(
        (h.status, h.body_json()["status"].as_str()),
        (200, Some("completed"))
    );
    let jobs = w.outbox.take();
    let count = |t: &str| jobs.iter().filter(|j| j.event_type == t).count();
    for event in [
        "call.queued",
        "call.ringing",
        "call.answered",
        "call.completed",
        "transcript.saved",
    ] {
        assert_eq!(
            count(event),
            1,
            "{event} exactly once: {:?}",
            jobs.iter().map(|j| &j.event_type).collect::<Vec<_>>()
        );
    }
    let saved: Value = jobs
        .iter()
        .find(|j| j.event_type == "transcript.saved")
        .map(|j| serde_json::from_str(&j.payload).unwrap())
        .unwrap();
    assert_eq!(
        saved["data"]["turns"].as_array().map(Vec::len),
        Some(2),
        "transcript.saved holds every turn"
    );
    assert_eq!(
        w.kv.refused.get(),
        0,
        "nothing on the call's path writes KV"
    );
}

#[test]
fn reports_sent_again_after_a_lost_answer_are_applied_once() {
    use crate::calls::store::{apply_reports, Report, ReportItem};
    use crate::dispatch::queue::{CallChange, CallUpdate};
    let w = World::new();
    let (tid, key) = w.tenant(true);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/v"})),
    );
    let id = w
        .send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": "+14155550100"})),
        )
        .body_json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    jobs_of(&w, "call.queued");
    let up = |seq: u64, change: CallChange| Report {
        seq,
        item: ReportItem::Call {
            update: CallUpdate {
                call_id: id.clone(),
                tenant_id: tid.clone(),
                at_ms: w.now.get(),
                change,
            },
        },
    };
    let batch = [
        up(
            7,
            CallChange::Dialing {
                sidecar_id: "s".into(),
                attempt: 1,
            },
        ),
        up(8, CallChange::Ringing),
    ];
    let rows = w.calls.rows(&tid);
    assert_eq!(
        apply_reports(&*rows, "local", &batch, w.now.get(), &mut |_| {}).unwrap(),
        8
    );
    // The queue never heard back and sends the same batch, plus what came since.
    let again = [
        batch[0].clone(),
        batch[1].clone(),
        up(9, CallChange::Answered),
    ];
    assert_eq!(
        apply_reports(&*rows, "local", &again, w.now.get(), &mut |_| {}).unwrap(),
        9
    );
    block_on(w.calls.drain(&w.kv, &w.outbox)).unwrap();
    let jobs = w.outbox.take();
    let types: Vec<&str> = jobs.iter().map(|j| j.event_type.as_str()).collect();
    assert_eq!(types, ["call.ringing", "call.answered"], "each change once");
    assert_eq!(
        w.calls.rows(&tid).call(&id).unwrap().unwrap().status,
        CallStatus::InProgress
    );
}

#[test]
fn an_idempotency_key_whose_first_request_was_abandoned_still_creates_one_call() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let body = json!({"phone": "+14155550100"});
    let first = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        body.clone(),
        &[("Idempotency-Key", "order-1")],
    );
    assert_eq!(first.status, 201);
    // The Worker died before the answer was recorded: the rate limiter's
    // in-flight record expires as abandoned and lets the retry through.
    w.traffic.idem.borrow_mut().clear();
    let retry = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        body.clone(),
        &[("Idempotency-Key", "order-1")],
    );
    assert_eq!(
        (retry.status, retry.body_json()["id"].clone()),
        (201, first.body_json()["id"].clone()),
        "the call the key created, not a second one"
    );
    w.traffic.idem.borrow_mut().clear();
    let other = with_header(
        &w,
        "POST",
        "/v1/calls",
        &key,
        json!({"phone": "+14155550199"}),
        &[("Idempotency-Key", "order-1")],
    );
    assert_eq!(World::code(&other), "idempotency_key_reused");
    let listed = w
        .calls
        .rows(&tid)
        .list_calls(&crate::calls::store::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[test]
fn an_oversized_sidecar_request_is_413_before_its_signature_is_checked() {
    use voxline_shared::sidecar_link::paths;
    let w = World::new();
    let sc = TestSidecar::create(&w, "sc-1");
    sc.send(
        &w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 1, "version": "t"}),
    );
    // An event batch over the body limit, correctly signed.
    let turn = json!({"type": "transcript_turn", "role": "user", "text": "x".repeat(3_000), "start_ms": 0, "end_ms": 1});
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"call_id": "call_1", "attempt": 1, "seq": i + 1, "at_ms": 0, "kind": turn}))
        .collect();
    let big = json!({"protocol_version": 1, "sidecar_id": "sc-1", "events": events})
        .to_string()
        .into_bytes();
    assert!(big.len() > MAX_BODY_BYTES);
    let signed_big = sc.signed(&w, paths::EVENTS, big.clone());
    // What the glue hands over for a declared oversize body: not the bytes
    // signed (it never buffers them), so the signature cannot match.
    let mut replaced = sc.signed(&w, paths::EVENTS, big.clone());
    replaced.body = vec![0; MAX_BODY_BYTES + 1];
    replaced
        .headers
        .push(("content-length".into(), big.len().to_string()));
    // A declared length over the limit alone (a body not read at all).
    let mut declared = sc.signed(&w, paths::EVENTS, Vec::new());
    declared
        .headers
        .push(("content-length".into(), (MAX_BODY_BYTES + 1).to_string()));
    for (what, req) in [
        ("signed", signed_big),
        ("replaced", replaced),
        ("declared", declared),
    ] {
        let r = w.send_req(&req);
        assert_eq!(
            (r.status, World::code(&r).as_str()),
            (413, "payload_too_large"),
            "{what}: {}",
            r.body
        );
    }
    // Unsigned too (the size is checked first): still 413, not 401.
    let unsigned = ApiRequest {
        method: "POST".into(),
        scheme: "https".into(),
        path: paths::LEASE.into(),
        body: big,
        ..ApiRequest::default()
    };
    assert_eq!(w.send_req(&unsigned).status, 413);
    // At the limit the request goes on to its signature as before.
    let mut at_limit = sc.signed(&w, paths::LEASE, Vec::new());
    at_limit
        .headers
        .push(("content-length".into(), MAX_BODY_BYTES.to_string()));
    assert_eq!(World::code(&w.send_req(&at_limit)), "invalid_json");
}

/// A sidecar request's signature holds only for its own method and path;
/// a v1 signature gets its own code; plain http is refused outside dev.
#[test]
fn the_sidecar_link_binds_method_and_path_refuses_v1_and_plain_http() {
    use voxline_shared::sidecar_link::paths;
    let w = World::new();
    let sc = TestSidecar::create(&w, "sc-1");
    let body = json!({"protocol_version": 1, "sidecar_id": "sc-1", "region": "local",
        "capacity": 1, "version": "t"})
    .to_string()
    .into_bytes();
    let error = |r: &ApiResponse| (r.status, World::code(r));
    // Signed for another endpoint, or another method.
    let mut moved = sc.signed(&w, paths::DEREGISTER, body.clone());
    moved.path = paths::REGISTER.into();
    let r = w.send_req(&moved);
    assert_eq!(error(&r), (401, "invalid_signature".into()), "{}", r.body);
    let mut query = sc.signed(&w, paths::REGISTER, body.clone());
    query.query = "x=1".into();
    assert_eq!(error(&w.send_req(&query)).0, 401);
    // v1, as an old sidecar signs: its own code, naming v2.
    let mut v1 = sc.signed(&w, paths::REGISTER, body.clone());
    let value = |r: &ApiRequest, name: &str| r.header(name).unwrap().to_string();
    let mac = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(sc.secret.as_bytes()).unwrap();
        m.update(value(&v1, "x-voxline-timestamp").as_bytes());
        m.update(b".");
        m.update(value(&v1, "x-voxline-nonce").as_bytes());
        m.update(b".");
        m.update(&body);
        hex::encode(m.finalize().into_bytes())
    };
    for (k, v) in v1.headers.iter_mut() {
        if k == "x-voxline-signature" {
            *v = format!("v1={mac}");
        }
    }
    let r = w.send_req(&v1);
    assert_eq!(error(&r), (401, "signature_version_unsupported".into()));
    assert!(r.body.contains("v2="), "{}", r.body);
    // Plain http (or a scheme the glue did not give) outside development:
    // refused before the signature is even looked at.
    for scheme in ["http", ""] {
        let mut plain = sc.signed(&w, paths::REGISTER, body.clone());
        plain.scheme = scheme.into();
        assert_eq!(
            error(&w.send_req(&plain)),
            (403, "https_required".into()),
            "{scheme:?}"
        );
    }
    // The same request over https registers.
    let ok = w.send_req(&sc.signed(&w, paths::REGISTER, body));
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn unknown_methods_are_405_with_allow_never_served_as_get() {
    let w = World::new();
    let (_, key) = w.tenant(true);
    let id = w
        .send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": "+14155550100"})),
        )
        .body_json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let call_path = format!("/v1/calls/{id}");
    for method in ["QUERY", "PROPFIND", "SEARCH", "PURGE", "LOCK", "query"] {
        for (path, allow) in [
            (call_path.as_str(), "GET"),
            ("/v1/calls", "POST, GET"),
            ("/healthz", "GET"),
            (voxline_shared::sidecar_link::paths::LEASE, "POST"),
        ] {
            let r = w.send(method, path, Some(&key), None);
            assert_eq!(
                (r.status, World::code(&r).as_str()),
                (405, "method_not_allowed"),
                "{method} {path}: {}",
                r.body
            );
            assert_eq!(header(&r, "Allow"), Some(allow), "{method} {path}");
        }
    }
}

#[test]
fn call_metadata_comes_back_byte_identical_in_the_api_and_the_queued_webhook() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/v"})),
    );
    w.outbox.take();
    // Keys out of order, an integer past f64's precision, -0 and a trailing zero.
    let metadata = r#"{"b":1,"a":12345678901234567890,"z":-0,"n":1.50}"#;
    let req = ApiRequest {
        method: "POST".into(),
        scheme: "https".into(),
        path: "/v1/calls".into(),
        content_type: Some("application/json".into()),
        authorization: Some(format!("Bearer {key}")),
        body: format!(r#"{{"phone":"+14155550100","metadata":{metadata}}}"#).into_bytes(),
        ..ApiRequest::default()
    };
    let created = w.send_req(&req);
    assert_eq!(created.status, 201, "{}", created.body);
    let expected = format!(r#""metadata":{metadata}"#);
    assert!(created.body.contains(&expected), "{}", created.body);
    let id = created.body_json()["id"].as_str().unwrap().to_string();
    let got = w.send("GET", &format!("/v1/calls/{id}"), Some(&key), None);
    assert_eq!(got.status, 200);
    assert!(got.body.contains(&expected), "{}", got.body);
    let jobs = w.outbox.take();
    let queued = jobs
        .iter()
        .find(|j| j.event_type == "call.queued")
        .expect("a call.queued delivery");
    assert!(queued.payload.contains(&expected), "{}", queued.payload);
    let payload: Value = serde_json::from_str(&queued.payload).unwrap();
    assert_eq!(
        (payload["type"].as_str(), payload["data"]["id"].as_str()),
        (Some("call.queued"), Some(id.as_str()))
    );
    // Too large is still refused, measured on the text kept.
    let big = format!(
        r#"{{"phone":"+14155550100","metadata":{{"k":"{}"}}}}"#,
        "m".repeat(crate::limits::MAX_METADATA_BYTES)
    );
    let r = w.send_req(&ApiRequest {
        body: big.into_bytes(),
        ..req.clone()
    });
    assert_eq!(World::code(&r), "metadata_too_large");
}

// ---- secrets at rest (issue 12): sidecar, webhook and request-signing secrets are sealed ----

/// Every KV value, concatenated: what someone reading the namespace sees.
fn kv_dump(w: &World) -> String {
    w.kv.map
        .borrow()
        .values()
        .map(|(v, m)| format!("{v} {m:?}\n"))
        .collect()
}

fn register(w: &World, s: &TestSidecar) -> ApiResponse {
    let body = json!({"protocol_version": 1, "sidecar_id": s.id, "region": "local", "capacity": 1, "version": "t"});
    let req = s.signed(
        w,
        voxline_shared::sidecar_link::paths::REGISTER,
        body.to_string().into_bytes(),
    );
    w.send_req(&req)
}

#[test]
fn secrets_minted_by_the_admin_api_are_stored_sealed_and_still_verify_and_sign() {
    use crate::engine_keys::{SecretOwner, StoredSecret};
    use crate::model::{SidecarRecord, WebhookEndpoint};
    let mut w = World::new();
    let (tid, _) = w.tenant(true);
    // A sidecar: its secret is nowhere in KV, and its signatures verify.
    let sidecar = TestSidecar::create(&w, "sc-sealed");
    let wh = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/sealed"})),
    );
    let (wid, first_webhook_secret) = (
        wh["id"].as_str().unwrap().to_string(),
        wh["secret"].as_str().unwrap().to_string(),
    );
    let rotated = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks/{wid}/rotate"),
        Some(json!({"overlap_seconds": 600})),
    );
    let webhook_secret = rotated["secret"].as_str().unwrap().to_string();
    let k = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/api-keys"),
        Some(json!({"require_signature": true})),
    );
    let (signed_key, signing_secret) = (
        k["key"].as_str().unwrap().to_string(),
        k["signing_secret"].as_str().unwrap().to_string(),
    );
    let dump = kv_dump(&w);
    for (what, secret) in [
        ("sidecar", &sidecar.secret),
        ("webhook", &first_webhook_secret),
        ("rotated webhook", &webhook_secret),
        ("request signing", &signing_secret),
    ] {
        // Also the secret's random part alone (the bytes after its prefix).
        let random = secret.split_once('_').unwrap().1;
        assert!(
            !dump.contains(random),
            "the {what} secret is in KV in clear"
        );
    }
    let stored: SidecarRecord = block_on(get_json(&w.kv, &keys::sidecar("sc-sealed")))
        .unwrap()
        .unwrap();
    assert!(stored.secret.is_sealed());
    let endpoint: WebhookEndpoint = block_on(get_json(&w.kv, &keys::webhook(&tid, &wid)))
        .unwrap()
        .unwrap();
    assert!(endpoint.secret.is_sealed() && endpoint.previous_secret.unwrap().is_sealed());

    // They are opened where they are used: a sidecar's request verifies ...
    assert_eq!(register(&w, &sidecar).status, 200);
    // ... a signed API request verifies ...
    let body = json!({"phone": "+14155550100"});
    let h = crate::api::request_signing::header_value(
        signing_secret.as_bytes(),
        (w.now.get() + 1) / 1000,
        crate::api::request_signing::Target {
            method: "POST",
            path_and_query: "/v1/calls",
        },
        body.to_string().as_bytes(),
    );
    let r = with_header(
        &w,
        "POST",
        "/v1/calls",
        &signed_key,
        body,
        &[("x-signature", &h)],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // ... and a webhook delivery is signed with both secrets of the overlap.
    let job = w
        .outbox
        .take()
        .into_iter()
        .find(|j| j.endpoint_id == wid)
        .expect("a call.queued delivery");
    struct Capture(std::cell::RefCell<Vec<(String, String)>>);
    impl crate::webhooks::delivery::WebhookHttp for Capture {
        async fn post(
            &self,
            _: &str,
            headers: &[(String, String)],
            _: &str,
            _: u64,
        ) -> std::result::Result<crate::webhooks::delivery::HttpReply, String> {
            *self.0.borrow_mut() = headers.to_vec();
            Ok(crate::webhooks::delivery::HttpReply {
                status: 204,
                retry_after: None,
                body_snippet: None,
            })
        }
    }
    let http = Capture(Default::default());
    let at = w.now.get();
    block_on(crate::webhooks::delivery::process(
        &w.kv,
        &http,
        job.clone(),
        &|| at,
        false,
        w.sealing.as_ref(),
    ))
    .unwrap();
    let sent = http.0.borrow().clone();
    let header = |n: &str| sent.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let ts: u64 = header("webhook-timestamp").parse().unwrap();
    let sig = |secret: &str| {
        crate::webhooks::signing::sign(secret, &job.event_id, ts, job.payload.as_bytes()).unwrap()
    };
    assert_eq!(
        header("webhook-signature"),
        format!("{} {}", sig(&webhook_secret), sig(&first_webhook_secret))
    );

    // A sealed value moved into another record does not open there.
    let other = TestSidecar::create(&w, "sc-other");
    let moved = SidecarRecord {
        id: "sc-other".into(),
        ..stored.clone()
    };
    block_on(put_json(&w.kv, &keys::sidecar("sc-other"), &moved, None)).unwrap();
    let with_moved = TestSidecar {
        secret: sidecar.secret.clone(),
        ..other
    };
    let r = register(&w, &with_moved);
    assert_eq!(
        (r.status, World::code(&r).as_str()),
        (503, "secrets_unavailable")
    );

    // A record written before sealing (clear secret) is still read ...
    let legacy = TestSidecar {
        id: "sc-legacy".into(),
        secret: "scs_legacy-clear-secret".into(),
        nonce: std::cell::Cell::new(100),
    };
    let record = SidecarRecord {
        id: legacy.id.clone(),
        region: "local".into(),
        secret: StoredSecret::legacy_clear(&legacy.secret),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        revoked_at: None,
    };
    block_on(put_json(&w.kv, &keys::sidecar("sc-legacy"), &record, None)).unwrap();
    assert_eq!(register(&w, &legacy).status, 200);
    // ... and sealed when the admin API rewrites its record.
    let mut old_endpoint = endpoint_record(&w, &tid, &wid);
    old_endpoint.secret = StoredSecret::legacy_clear("whsec_bGVnYWN5LWNsZWFyLXNlY3JldA==");
    old_endpoint.previous_secret = None;
    block_on(put_json(
        &w.kv,
        &keys::webhook(&tid, &wid),
        &old_endpoint,
        None,
    ))
    .unwrap();
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}/webhooks/{wid}"),
        Some(json!({"enabled": true})),
    );
    let resealed = endpoint_record(&w, &tid, &wid);
    assert!(resealed.secret.is_sealed());
    assert_eq!(
        resealed
            .secret
            .open(
                w.sealing.as_ref(),
                SecretOwner::Webhook {
                    tenant: &tid,
                    endpoint: &wid
                }
            )
            .unwrap(),
        "whsec_bGVnYWN5LWNsZWFyLXNlY3JldA=="
    );

    // Without the sealing secret no secret is minted (none is ever written in clear).
    w.sealing = None;
    let code = |r: ApiResponse| (r.status, World::code(&r));
    let refused = [
        w.send(
            "POST",
            "/admin/sidecars",
            Some(ADMIN),
            Some(json!({"sidecar_id": "sc-none", "region": "local"})),
        ),
        w.send(
            "POST",
            &format!("/admin/tenants/{tid}/webhooks"),
            Some(ADMIN),
            Some(json!({"url": "https://hooks.example.com/none"})),
        ),
        w.send(
            "POST",
            &format!("/admin/tenants/{tid}/webhooks/{wid}/rotate"),
            Some(ADMIN),
            None,
        ),
        w.send(
            "POST",
            &format!("/admin/tenants/{tid}/api-keys"),
            Some(ADMIN),
            Some(json!({"require_signature": true})),
        ),
    ];
    for r in refused {
        assert_eq!(code(r), (503, "secrets_unavailable".to_string()));
    }
    assert!(block_on(w.kv.get(&keys::sidecar("sc-none")))
        .unwrap()
        .is_none());
    // Sealed secrets then cannot be used either: a clear 503, not a 401.
    let r = register(&w, &sidecar);
    assert_eq!(
        (r.status, World::code(&r).as_str()),
        (503, "secrets_unavailable")
    );
    // Legacy clear ones still work, and keys that need no secret are still minted.
    assert_eq!(register(&w, &legacy).status, 200);
    assert_eq!(
        w.send(
            "POST",
            &format!("/admin/tenants/{tid}/api-keys"),
            Some(ADMIN),
            None
        )
        .status,
        201
    );
}

fn endpoint_record(w: &World, tid: &str, wid: &str) -> crate::model::WebhookEndpoint {
    block_on(get_json(&w.kv, &keys::webhook(tid, wid)))
        .unwrap()
        .unwrap()
}

// ---- failed credentials are throttled per client address (issue 12) ----

#[test]
fn admin_token_guesses_are_throttled_per_address_whatever_token_comes_next() {
    let w = World::new();
    let limit = crate::traffic::AUTH_FAILURES.limit;
    let from = |ip: &str, token: &str| {
        with_header(
            &w,
            "GET",
            "/admin/sidecars",
            token,
            Value::Null,
            &[("cf-connecting-ip", ip)],
        )
    };
    for i in 0..limit {
        let r = from("198.51.100.7", &format!("guess-{i}"));
        assert_eq!(
            (r.status, World::code(&r).as_str()),
            (401, "invalid_credentials"),
            "guess {i}"
        );
    }
    // Spent: refused whatever the token, even the right one.
    for token in ["guess-x", ADMIN] {
        let r = from("198.51.100.7", token);
        assert_eq!(
            (r.status, World::code(&r).as_str()),
            (429, "too_many_failed_attempts")
        );
        let retry: u64 = header(&r, "Retry-After").unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry), "{retry}");
    }
    // Other addresses are not affected (an IPv4 address is its own scope).
    assert_eq!(from("198.51.100.8", ADMIN).status, 200);
    // An IPv6 client is one /64: rotating addresses inside it does not help.
    for i in 0..limit {
        assert_eq!(from(&format!("2001:db8:7:7::{i:x}"), "guess").status, 401);
    }
    assert_eq!(from("2001:db8:7:7:ffff::1", ADMIN).status, 429);
    // The window ends: the address may try again.
    w.now.set(w.now.get() + 300_000);
    assert_eq!(from("198.51.100.7", ADMIN).status, 200);
}

#[test]
fn failed_api_keys_are_counted_per_address_and_a_valid_key_never_waits_on_it() {
    let w = World::new();
    let (_, key) = w.tenant(true);
    let limit = crate::traffic::AUTH_FAILURES.limit;
    let from = |ip: &str, token: &str| {
        with_header(
            &w,
            "GET",
            "/v1/calls",
            token,
            Value::Null,
            &[("cf-connecting-ip", ip)],
        )
    };
    for i in 0..limit {
        let r = from("192.0.2.9", &format!("ak_{i:032}"));
        assert_eq!(
            (r.status, World::code(&r).as_str()),
            (401, "invalid_credentials")
        );
    }
    let r = from("192.0.2.9", "ak_notarealkey0000000000000000000000");
    assert_eq!(
        (r.status, World::code(&r).as_str()),
        (429, "too_many_failed_attempts")
    );
    assert!(header(&r, "Retry-After").is_some());
    // A real key (192 random bits: not guessable) is served even from that address ...
    assert_eq!(from("192.0.2.9", &key).status, 200);
    // ... and a successful request costs no look-up of the address at all.
    assert_eq!(from("192.0.2.10", &key).status, 200);
    assert!(!w
        .traffic
        .limiters
        .borrow()
        .contains_key(&crate::traffic::auth_failure_scope("192.0.2.10")));
    // A missing key is no guess: not counted.
    for _ in 0..limit + 5 {
        let r = w.send_req(&ApiRequest {
            method: "GET".into(),
            path: "/v1/calls".into(),
            headers: vec![("cf-connecting-ip".into(), "192.0.2.11".into())],
            ..ApiRequest::default()
        });
        assert_eq!(r.status, 401);
    }
    assert_eq!(from("192.0.2.11", "ak_wrong").status, 401);
}

mod campaigns;
mod codeb;
mod codeb_auth;
mod contacts;
mod delivery_log;
mod dialect_webhooks;
mod dialects;
mod inbound_calls;
mod messages;
mod people_calls;
mod phone_registrations;
mod post_call_transcripts;
mod sidecar_load;
mod tool_calls;
mod transfers;
mod voice360;

#[test]
fn deleting_the_default_agent_clears_the_default_and_keeps_accepted_calls() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    let aid = w.admin("GET", &format!("/admin/tenants/{tid}"), None)["default_agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550100"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let cid = r.body_json()["id"].as_str().unwrap().to_string();
    let gone = w.admin(
        "DELETE",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        None,
    );
    assert_eq!(gone, json!({"id": aid, "object": "agent", "deleted": true}));
    assert_eq!(
        w.admin("GET", &format!("/admin/tenants/{tid}"), None)["default_agent_id"],
        Value::Null
    );
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550101"})),
    );
    assert_eq!((r.status, World::code(&r)), (422, "agent_required".into()));
    let call = w.send("GET", &format!("/v1/calls/{cid}"), Some(&key), None);
    assert_eq!(call.body_json()["agent_id"], aid.as_str());
    let again = w.send(
        "DELETE",
        &format!("/admin/tenants/{tid}/agents/{aid}"),
        Some(ADMIN),
        None,
    );
    assert_eq!(
        (again.status, World::code(&again)),
        (404, "agent_not_found".into())
    );
}

/// Issue 17: an agent's `first_speaker` (default `agent`) is validated,
/// shown, changed by PATCH, and reaches the sidecar in each call's offer.
#[test]
fn an_agents_first_speaker_reaches_the_offer() {
    let w = World::new();
    let (tid, key) = w.tenant(false);
    let agents = format!("/admin/tenants/{tid}/agents");
    let plain = w.admin("POST", &agents, Some(json!({"name": "plain"})));
    assert_eq!(plain["first_speaker"], "agent", "the default");
    let listener = w.admin(
        "POST",
        &agents,
        Some(json!({"name": "listener", "first_speaker": "callee"})),
    );
    assert_eq!(listener["first_speaker"], "callee");
    for bad in [json!("caller"), json!(""), json!(1), json!("Callee")] {
        let r = w.send(
            "POST",
            &agents,
            Some(ADMIN),
            Some(json!({"name": "x", "first_speaker": bad})),
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert_eq!(r.body_json()["error"]["field"], "first_speaker", "{bad}");
    }
    let aid = |a: &Value| a["id"].as_str().unwrap().to_string();
    // PATCH without it keeps it; with it changes it.
    let kept = w.admin(
        "PATCH",
        &format!("{agents}/{}", aid(&listener)),
        Some(json!({"voice": "slt"})),
    );
    assert_eq!(kept["first_speaker"], "callee");
    let got = w.admin("GET", &format!("{agents}/{}", aid(&listener)), None);
    assert_eq!(got["first_speaker"], "callee");
    let flipped = w.admin(
        "PATCH",
        &format!("{agents}/{}", aid(&plain)),
        Some(json!({"first_speaker": "callee"})),
    );
    assert_eq!(flipped["first_speaker"], "callee");
    let back = w.admin(
        "PATCH",
        &format!("{agents}/{}", aid(&plain)),
        Some(json!({"first_speaker": "agent"})),
    );
    assert_eq!(back["first_speaker"], "agent");
    // Calls of each agent: the offer says who speaks first.
    for (phone, agent) in [("+14155550111", &plain), ("+14155550112", &listener)] {
        let r = w.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": phone, "agent_id": aid(agent)})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(
            r.body_json().get("first_speaker").is_none(),
            "an agent setting, not in the call's JSON"
        );
    }
    let mut queues = w.calls.dispatch_queues.queues.borrow_mut();
    let q = queues.get_mut("local").unwrap();
    q.register("sc-1", 10, NOW);
    let (leases, commands) = q.lease(
        "sc-1",
        10,
        w.now.get(),
        &crate::dispatch::queue::DispatchTimings::default(),
    );
    let answer = crate::dispatch::sidecar_link::LeaseAnswer {
        leases,
        commands,
        messages: vec![],
    };
    let reply = answer.into_response(|_| None, None).0;
    let first = |phone: &str| {
        reply
            .offers
            .iter()
            .find(|o| o.phone == phone)
            .map(|o| o.first_speaker)
    };
    use voxline_shared::sidecar_link::FirstSpeaker;
    assert_eq!(first("+14155550111"), Some(FirstSpeaker::Agent));
    assert_eq!(first("+14155550112"), Some(FirstSpeaker::Callee));
    let wire = serde_json::to_value(&reply).unwrap();
    let on_wire: Vec<Value> = wire["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["first_speaker"].clone())
        .collect();
    assert!(on_wire.contains(&json!("callee")), "{on_wire:?}");
}

/// Issue 18: an agent's `analysis` plan is checked part by part, and each
/// answered call of the agent ends with its analysis on the record, in
/// `call.completed` and in `transcript.saved`.
#[test]
fn an_answered_call_of_an_agent_with_an_analysis_plan_ends_analysed() {
    let w = World::new();
    let (tid, key) = w.tenant(false);
    let agents = format!("/admin/tenants/{tid}/agents");
    for (bad, field) in [
        (
            json!({"success_outcomes": "yes"}),
            "analysis.success_outcomes",
        ),
        (
            json!({"success_outcomes": [""]}),
            "analysis.success_outcomes",
        ),
        (json!({"success_criteria": ""}), "analysis.success_criteria"),
        (
            json!({"data_schema": {"type": "object", "properties": {"a": {"type": "array"}}}}),
            "analysis.data_schema",
        ),
        (
            json!({"data_schema": {"type": "object", "properties": {}}}),
            "analysis.data_schema",
        ),
    ] {
        let r = w.send(
            "POST",
            &agents,
            Some(ADMIN),
            Some(json!({"name": "a", "analysis": bad})),
        );
        let e = &r.body_json()["error"];
        assert_eq!(
            (r.status, e["code"].as_str(), e["field"].as_str()),
            (422, Some("invalid_value"), Some(field)),
            "{bad}: {}",
            r.body
        );
    }
    let r = w.send(
        "POST",
        &agents,
        Some(ADMIN),
        Some(json!({"name": "a", "analysis": {"sucess_outcomes": []}})),
    );
    assert_eq!(
        (r.status, r.body_json()["error"]["field"].as_str()),
        (400, Some("analysis.sucess_outcomes")),
        "{}",
        r.body
    );
    let plan = json!({"success_outcomes": ["yes"],
        "data_schema": {"type": "object", "properties": {
            "confirmed": {"type": "boolean"},
            "preferred_day": {"type": "string", "enum": ["Monday", "Tuesday"]}}}});
    let agent = w.admin(
        "POST",
        &agents,
        Some(json!({"name": "a", "analysis": plan})),
    );
    assert_eq!(agent["analysis"], plan, "{agent}");
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/v"})),
    );
    let sc = TestSidecar::create(&w, "sc-1");
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::REGISTER,
        json!({"region": "local", "capacity": 2, "version": "t"}),
    );
    let (id, _offer) = sc.place_and_accept(&w, &key, json!({"phone": "+14155550100"}));
    let before = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert!(
        before["analysis"].is_null() && before.get("analysis_plan").is_none(),
        "{before}"
    );
    sc.events(&w, &id, &[
        json!({"type": "ringing"}),
        json!({"type": "answered"}),
        json!({"type": "transcript_turn", "role": "agent", "text": "Hello! Is this confirmed for you?", "start_ms": 0, "end_ms": 500}),
        json!({"type": "transcript_turn", "role": "callee", "text": "Yes, great, thanks.", "start_ms": 600, "end_ms": 900}),
        json!({"type": "transcript_turn", "role": "agent", "text": "Which preferred day, Monday or Tuesday?", "start_ms": 1000, "end_ms": 1500}),
        json!({"type": "transcript_turn", "role": "callee", "text": "Tuesday please", "start_ms": 1600, "end_ms": 1900}),
        json!({"type": "summary", "summary": "Confirmed for Tuesday.", "outcome": "yes"}),
        json!({"type": "ended", "status": "completed", "reason": "callee_hangup", "timings": {"dispatched_ms": 0, "ringing_ms": 1, "answered_ms": 2, "ended_ms": 3}}),
    ]);
    let want = json!({"summary": "Confirmed for Tuesday.", "sentiment": "positive", "success": true,
        "data": {"confirmed": true, "preferred_day": "Tuesday"}, "source": "local"});
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(call["analysis"], want, "{call}");
    let jobs = w.outbox.take();
    for event in ["call.completed", "transcript.saved"] {
        let body: Value = jobs
            .iter()
            .find(|j| j.event_type == event)
            .map(|j| serde_json::from_str(&j.payload).unwrap())
            .unwrap_or_else(|| {
                panic!(
                    "no {event}: {:?}",
                    jobs.iter().map(|j| &j.event_type).collect::<Vec<_>>()
                )
            });
        assert_eq!(body["data"]["analysis"], want, "{event}: {body}");
    }
    // An engine's own analysis, reported before the end, is kept instead
    // (bounded, marked `engine`).
    let (id, offer) = sc.place_and_accept(&w, &key, json!({"phone": "+14155550101"}));
    assert_eq!(
        offer["analysis"], plan,
        "the plan travels with the offer: {offer}"
    );
    let engine = json!({"summary": "x".repeat(5000), "sentiment": "negative", "success": false,
        "data": {"confirmed": false, "preferred_day": null}, "source": "local"});
    sc.events(&w, &id, &[
        json!({"type": "answered"}),
        json!({"type": "transcript_turn", "role": "callee", "text": "Yes, great.", "start_ms": 600, "end_ms": 900}),
        json!({"type": "analysis", "analysis": engine}),
        json!({"type": "ended", "status": "completed", "reason": "callee_hangup", "timings": {"dispatched_ms": 0, "answered_ms": 2, "ended_ms": 3}}),
    ]);
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    let a = &call["analysis"];
    assert_eq!(
        (
            a["source"].as_str(),
            a["sentiment"].as_str(),
            &a["success"],
            &a["data"]
        ),
        (
            Some("engine"),
            Some("negative"),
            &json!(false),
            &json!({"confirmed": false, "preferred_day": null})
        ),
        "{call}"
    );
    assert_eq!(
        a["summary"].as_str().map(|s| s.chars().count()),
        Some(voxline_shared::analysis::MAX_SUMMARY_CHARS)
    );
    // Removed with an explicit null: the next call has none.
    let aid = agent["id"].as_str().unwrap();
    let agent = w.admin(
        "PATCH",
        &format!("{agents}/{aid}"),
        Some(json!({"analysis": null})),
    );
    assert!(agent["analysis"].is_null(), "{agent}");
}

/// Issue 18: `amd` (agent default `off`, a call's own over its agent's) and
/// `amd_message` are validated, shown, reach the sidecar in the offer; the
/// sidecar's `answered_by` verdict lands on the call record and in
/// `call.completed` with its decision time, before the `ended` of the same
/// batch; a call without detection shows nulls.
#[test]
fn amd_settings_reach_the_offer_and_the_verdict_reaches_record_and_webhook() {
    let w = World::new();
    let (tid, key) = w.tenant(false);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/v"})),
    );
    let agents = format!("/admin/tenants/{tid}/agents");
    let plain = w.admin("POST", &agents, Some(json!({"name": "plain"})));
    assert_eq!(
        (plain["amd"].as_str(), &plain["amd_message"]),
        (Some("off"), &Value::Null)
    );
    let vm = w.admin(
        "POST",
        &agents,
        Some(json!({"name": "vm", "amd": "leave_message", "amd_message": "Please call us back."})),
    );
    assert_eq!(vm["amd"], "leave_message");
    for (field, bad) in [
        ("amd", json!("beep")),
        ("amd", json!(true)),
        ("amd", json!("Hangup")),
        ("amd_message", json!(7)),
        ("amd_message", json!("x".repeat(1001))),
    ] {
        let r = w.send(
            "POST",
            &agents,
            Some(ADMIN),
            Some(json!({"name": "x", field: bad})),
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert_eq!(r.body_json()["error"]["field"], field, "{bad}");
        let r = w.send(
            "POST",
            "/v1/calls",
            Some(&key),
            Some(json!({"phone": "+14155550199", field: bad})),
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert_eq!(r.body_json()["error"]["field"], field, "{bad}");
    }
    let aid = |a: &Value| a["id"].as_str().unwrap().to_string();
    // PATCH: kept when absent, changed when given, a null message removed.
    let patched = w.admin(
        "PATCH",
        &format!("{agents}/{}", aid(&plain)),
        Some(json!({"amd": "continue"})),
    );
    assert_eq!(patched["amd"], "continue");
    let cleared = w.admin(
        "PATCH",
        &format!("{agents}/{}", aid(&vm)),
        Some(json!({"amd_message": null})),
    );
    assert_eq!(
        (cleared["amd"].as_str(), &cleared["amd_message"]),
        (Some("leave_message"), &Value::Null)
    );
    w.admin(
        "PATCH",
        &format!("{agents}/{}", aid(&vm)),
        Some(json!({"amd_message": "Please call us back."})),
    );
    // Calls: the agent's setting, or the call's own.
    let place = |phone: &str, extra: Value| -> String {
        let mut body = json!({"phone": phone});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = w.send("POST", "/v1/calls", Some(&key), Some(body));
        assert_eq!(r.status, 201, "{}", r.body);
        let call = r.body_json();
        assert!(
            call["answered_by"].is_null() && call["amd_decision_ms"].is_null(),
            "{call}"
        );
        call["id"].as_str().unwrap().to_string()
    };
    let by_agent = place("+14155550121", json!({"agent_id": aid(&vm)}));
    let own = place(
        "+14155550122",
        json!({"agent_id": aid(&vm), "amd": "hangup", "amd_message": "Bye"}),
    );
    let off = place(
        "+14155550123",
        json!({"agent_id": aid(&plain), "amd": "off"}),
    );
    let sc = TestSidecar::create(&w, "sc-1");
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::REGISTER,
        json!({"region": "local", "capacity": 5, "version": "t"}),
    );
    let lease = sc.send(
        &w,
        voxline_shared::sidecar_link::paths::LEASE,
        json!({"region": "local", "free_slots": 5, "held_calls": [], "wait_ms": 0}),
    );
    let offers = lease["offers"].as_array().unwrap();
    let offer_of = |id: &str| offers.iter().find(|o| o["call_id"] == id).unwrap().clone();
    let o = offer_of(&by_agent);
    assert_eq!(
        (o["amd"].as_str(), o["amd_message"].as_str()),
        (Some("leave_message"), Some("Please call us back."))
    );
    let o = offer_of(&own);
    assert_eq!(
        (o["amd"].as_str(), o["amd_message"].as_str()),
        (Some("hangup"), Some("Bye"))
    );
    let o = offer_of(&off);
    assert!(
        o.get("amd").is_none() && o.get("amd_message").is_none(),
        "{o}"
    );
    for o in offers {
        sc.send(
            &w,
            voxline_shared::sidecar_link::paths::ACK,
            json!({"lease_id": o["lease_id"], "call_id": o["call_id"], "accepted": true}),
        );
    }
    w.settle();
    w.outbox.take();
    // The machine call: the verdict and the end in one batch.
    sc.events(&w, &own, &[
        json!({"type": "ringing"}),
        json!({"type": "answered"}),
        json!({"type": "answered_by", "answered_by": "machine", "decision_ms": 2640}),
        json!({"type": "ended", "status": "completed", "reason": "answering_machine", "timings": {"dispatched_ms": 0, "ringing_ms": 1, "answered_ms": 2, "ended_ms": 3000}}),
    ]);
    sc.events(&w, &off, &[
        json!({"type": "ringing"}),
        json!({"type": "answered"}),
        json!({"type": "ended", "status": "completed", "reason": "callee_hangup", "timings": {"dispatched_ms": 0, "ringing_ms": 1, "answered_ms": 2, "ended_ms": 3000}}),
    ]);
    w.settle();
    let call = w
        .send("GET", &format!("/v1/calls/{own}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (
            call["answered_by"].as_str(),
            call["amd_decision_ms"].as_u64(),
            call["ended_reason"].as_str(),
            call["amd"].as_str()
        ),
        (
            Some("machine"),
            Some(2640),
            Some("answering_machine"),
            Some("hangup")
        ),
        "{call}"
    );
    let jobs = w.outbox.take();
    let completed = |id: &str| -> Value {
        jobs.iter()
            .filter(|j| j.event_type == "call.completed")
            .map(|j| serde_json::from_str::<Value>(&j.payload).unwrap())
            .find(|p| p["data"]["id"] == id)
            .unwrap_or_else(|| panic!("no call.completed for {id}"))
    };
    let c = completed(&own);
    assert_eq!(
        (
            c["data"]["answered_by"].as_str(),
            c["data"]["amd_decision_ms"].as_u64(),
            c["data"]["ended_reason"].as_str()
        ),
        (Some("machine"), Some(2640), Some("answering_machine")),
        "{c}"
    );
    let c = completed(&off);
    assert!(
        c["data"]["answered_by"].is_null() && c["data"]["amd_decision_ms"].is_null(),
        "present and null without detection: {c}"
    );
}

/// Issue 16: a sidecar's `transferred` event becomes `call.transferred`
/// (the call with its `transfer`), and the call ends `transferred`.
#[test]
fn a_transfer_reaches_the_webhooks_and_the_call_ends_transferred() {
    let w = World::new();
    let (tid, key) = w.tenant(true);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/x"})),
    );
    let r = w.send(
        "POST",
        "/v1/calls",
        Some(&key),
        Some(json!({"phone": "+14155550131"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body_json()["id"].as_str().unwrap().to_string();
    let sc = TestSidecar::create(&w, "sc-1");
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::REGISTER,
        json!({"region": "local", "capacity": 5, "version": "t"}),
    );
    let lease = sc.send(
        &w,
        voxline_shared::sidecar_link::paths::LEASE,
        json!({"region": "local", "free_slots": 5, "held_calls": [], "wait_ms": 0}),
    );
    let o = lease["offers"][0].clone();
    sc.send(
        &w,
        voxline_shared::sidecar_link::paths::ACK,
        json!({"lease_id": o["lease_id"], "call_id": o["call_id"], "accepted": true}),
    );
    w.settle();
    w.outbox.take();
    sc.events(&w, &id, &[
        json!({"type": "ringing"}),
        json!({"type": "answered"}),
        json!({"type": "transcript_turn", "role": "agent", "text": "[tool transfer {\"destination\":\"+15550002222\"} -> {\"ok\":true}]", "start_ms": 100, "end_ms": 900}),
        json!({"type": "transferred", "destination": "+15550002222", "method": "bridge", "at_offset_ms": 900}),
        json!({"type": "ended", "status": "completed", "reason": "transferred", "timings": {"dispatched_ms": 0, "ringing_ms": 1, "answered_ms": 2, "ended_ms": 9000}}),
    ]);
    w.settle();
    let call = w
        .send("GET", &format!("/v1/calls/{id}"), Some(&key), None)
        .body_json();
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("transferred")),
        "{call}"
    );
    let jobs = w.outbox.take();
    let transferred: Vec<Value> = jobs
        .iter()
        .filter(|j| j.event_type == "call.transferred")
        .map(|j| serde_json::from_str::<Value>(&j.payload).unwrap())
        .collect();
    assert_eq!(transferred.len(), 1, "{jobs:?}");
    let t = &transferred[0];
    assert_eq!(t["type"], "call.transferred", "{t}");
    assert_eq!(t["data"]["id"], id.as_str());
    assert_eq!(
        t["data"]["transfer"],
        json!({"destination": "+15550002222", "extension": null, "method": "bridge",
            "mode": "blind", "transfer_id": null, "at_offset_ms": 900})
    );
    // It came before the end.
    let order: Vec<&str> = jobs.iter().map(|j| j.event_type.as_str()).collect();
    let at = |e: &str| {
        order
            .iter()
            .position(|x| *x == e)
            .unwrap_or_else(|| panic!("{order:?}"))
    };
    assert!(at("call.transferred") < at("call.completed"), "{order:?}");
}

#[test]
fn the_console_is_served_without_credentials_with_its_policy() {
    let w = World::new();
    let page = w.send("GET", "/console", None, None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(header(&page, "content-type").is_some_and(|v| v.starts_with("text/html")));
    assert_eq!(
        header(&page, "content-security-policy"),
        Some(crate::console::CONTENT_SECURITY_POLICY)
    );
    assert!(page.body.contains("id=\"login-form\""));
    let js = w.send("GET", "/console/app.js", None, None);
    assert_eq!(js.status, 200);
    assert!(header(&js, "content-type").is_some_and(|v| v.starts_with("text/javascript")));
    let missing = w.send("GET", "/console/nope.js", None, None);
    assert_eq!(
        (missing.status, World::code(&missing).as_str()),
        (404, "not_found")
    );
    // GET only; a trailing slash is not the page.
    assert_eq!(w.send("POST", "/console", None, None).status, 405);
    assert_eq!(w.send("GET", "/console/", None, None).status, 404);
}
