//! The edge's CPU cost per `POST /v1/calls`, without workerd.
//!
//! workerd reports no per-request CPU time locally, so this runs the same
//! pure request handling the Worker runs (`voxline_edge::api::handle`)
//! over the in-memory ports (`bench-support`), once natively and once
//! compiled to wasm32-wasip1 under a real wasm engine (`cargo xtask bench`
//! uses wasmtime). One iteration is one `POST /v1/calls` with a valid API
//! key (SHA-256 of the key, KV lookups of key, tenant and agent, the body's
//! full validation, the rate-limit/traffic admission, the call record, the
//! queue entry and the `call.queued` event through the call store's outbox) followed by the Standard
//! Webhooks signature of that event's payload, as the delivery consumer
//! computes it. Only `std::time::Instant` is used (WASI has it).
//!
//! Every iteration starts from the same store contents: the state the
//! previous one added (call record, queue entry, rate-limit windows) is
//! dropped outside the timed region, so late iterations cost the same as
//! early ones.

use serde_json::{json, Value};
use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use voxline_edge::api::env::Env;
use voxline_edge::api::handle;
use voxline_edge::calls::store::memory::MemoryCalls;
use voxline_edge::calls::store::memory_rows::MemoryCallRows;
use voxline_edge::engine_keys::SealingKey;
use voxline_edge::http::{ApiRequest, ApiResponse};
use voxline_edge::store::memory::MemoryKv;
use voxline_edge::traffic::memory::MemoryTraffic;
use voxline_edge::webhooks::delivery::Outbox;
use voxline_edge::webhooks::signing as webhook_signing;

const ADMIN: &str = "bench-admin-token";
/// 2025-11-25T14:50:00Z; each request one millisecond later.
const START_MS: u64 = 1_764_082_200_000;

/// Polls a future of the in-memory ports to completion: they never wait.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn request(method: &str, path: &str, token: &str, body: Option<&Value>) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        scheme: "https".into(),
        path: path.into(),
        query: String::new(),
        content_type: body.map(|_| "application/json".to_string()),
        authorization: Some(format!("Bearer {token}")),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        headers: vec![("cf-connecting-ip".into(), "203.0.113.7".into())],
    }
}

/// A tenant with an agent, an API key and one webhook endpoint, in memory.
pub struct World {
    kv: MemoryKv,
    /// The tenant's call store (with its dispatch queue, `calls.dispatch_queues`).
    calls: MemoryCalls<MemoryCallRows>,
    traffic: MemoryTraffic,
    outbox: Outbox,
    now_ms: u64,
    api_key: String,
    webhook_secret: String,
    call: ApiRequest,
    /// Seals the webhook secret at rest, as in a deployment.
    sealing: SealingKey,
}

impl World {
    pub fn new() -> World {
        let mut w = World {
            kv: MemoryKv::default(),
            calls: MemoryCalls::new(MemoryCallRows::default),
            traffic: MemoryTraffic::default(),
            outbox: Outbox::default(),
            now_ms: START_MS,
            api_key: String::new(),
            webhook_secret: String::new(),
            call: request("GET", "/", "", None),
            sealing: SealingKey::from_secret(&"b7".repeat(32)).expect("a 32-byte key"),
        };
        let tenant = w.admin("POST", "/admin/tenants", json!({"name": "bench"}));
        let tid = tenant["id"].as_str().expect("tenant id").to_string();
        w.admin(
            "POST",
            &format!("/admin/tenants/{tid}/agents"),
            json!({"name": "support", "voice": "alloy", "system_prompt": "You are a friendly support agent for Acme. Confirm the appointment, answer questions briefly and end politely."}),
        );
        w.api_key = w.admin("POST", &format!("/admin/tenants/{tid}/api-keys"), json!({}))["key"]
            .as_str()
            .expect("key")
            .to_string();
        w.webhook_secret = w.admin(
            "POST",
            &format!("/admin/tenants/{tid}/webhooks"),
            json!({"url": "https://hooks.example.com/voxline"}),
        )["secret"]
            .as_str()
            .expect("webhook secret")
            .to_string();
        // A typical create-call body: the number, the callee, a language
        // override, CRM metadata.
        let body = json!({
            "phone": "+14155550100",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "language": "en-US",
            "max_seconds": 600,
            "metadata": {"crm_id": "0031t00000abcDE", "campaign": "renewals-q4", "attempt_note": "second reminder"},
        });
        w.call = request("POST", "/v1/calls", &w.api_key, Some(&body));
        w
    }

    fn send(&self, req: &ApiRequest) -> ApiResponse {
        self.traffic.now_ms.set(self.now_ms);
        self.calls.now_ms.set(self.now_ms);
        self.calls.dispatch_queues.now_ms.set(self.now_ms);
        let env = Env {
            kv: &self.kv,
            dispatch_queues: &self.calls.dispatch_queues,
            now_ms: self.now_ms,
            admin_token: Some(ADMIN),
            dev_mode: false,
            default_region: "local",
            traffic: &self.traffic,
            calls: &self.calls,
            directory: &NoDirectory,
            outbox: &self.outbox,
            sealing_key: Some(&self.sealing),
            auth_failures: voxline_edge::traffic::AUTH_FAILURES,
            tool_http: &voxline_edge::webhooks::tool_calls::NoToolHttp,
            campaigns: &voxline_edge::campaigns::NoCampaigns,
        };
        let resp = block_on(handle(&env, req));
        // The call store's outbox drain (the Durable Object does it before answering).
        block_on(self.calls.drain(&self.kv, &self.outbox)).expect("drain");
        resp
    }

    fn admin(&mut self, method: &str, path: &str, body: Value) -> Value {
        self.now_ms += 1;
        let r = self.send(&request(method, path, ADMIN, Some(&body)));
        assert!(
            r.status < 300,
            "setup {method} {path}: {} {}",
            r.status,
            r.body
        );
        r.body_json()
    }

    /// One request: `POST /v1/calls`, then the webhook signature of the
    /// event it queued. Returns (handle ns, sign ns). Panics if the call is
    /// not created or no event is queued: a bench of an error path would
    /// measure the wrong thing.
    fn iteration(&mut self) -> (u64, u64) {
        self.now_ms += 1;
        let t0 = Instant::now();
        let resp = self.send(&self.call);
        let t1 = Instant::now();
        let jobs = self.outbox.take();
        let job = jobs.first().expect("a call.queued webhook job");
        let headers = webhook_signing::headers(
            &[&self.webhook_secret],
            &job.event_id,
            self.now_ms / 1000,
            job.payload.as_bytes(),
        )
        .expect("signature");
        let t2 = Instant::now();
        assert_eq!(resp.status, 201, "POST /v1/calls: {}", resp.body);
        black_box((resp, headers));
        (nanos(t1 - t0), nanos(t2 - t1))
    }

    /// Drops what an iteration added, so every iteration sees the same store.
    fn reset(&self, baseline: &std::collections::BTreeMap<String, (String, Option<Value>)>) {
        *self.kv.map.borrow_mut() = baseline.clone();
        self.calls.dispatch_queues.queues.borrow_mut().clear();
        self.calls.tenants.borrow_mut().clear();
        self.traffic.limiters.borrow_mut().clear();
        self.traffic.idem.borrow_mut().clear();
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One round's means, in ns per request (every delay the OS adds counts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    pub total_ns: f64,
    pub handle_ns: f64,
    pub sign_ns: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub iterations: usize,
    pub warmup: usize,
    pub rounds: Vec<Round>,
    /// Median single request over all rounds (robust to preemption on a
    /// busy machine, which only inflates the requests it hits), and its parts.
    pub p50_ns: f64,
    pub p50_handle_ns: f64,
    pub p50_sign_ns: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Report {
    /// Median over rounds of each round's mean.
    pub fn median(&self, f: fn(&Round) -> f64) -> f64 {
        median(self.rounds.iter().map(f).collect())
    }

    /// One line of JSON, what `cargo xtask bench` parses.
    pub fn to_json(&self) -> Value {
        let list = |f: fn(&Round) -> f64| {
            self.rounds
                .iter()
                .map(|r| (f(r) * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        };
        json!({
            "target": if cfg!(target_family = "wasm") { "wasm32" } else { std::env::consts::ARCH },
            "iterations": self.iterations,
            "warmup": self.warmup,
            "ns_per_request": self.median(|r| r.total_ns),
            "handle_ns": self.median(|r| r.handle_ns),
            "sign_ns": self.median(|r| r.sign_ns),
            "p50_ns_per_request": self.p50_ns,
            "p50_handle_ns": self.p50_handle_ns,
            "p50_sign_ns": self.p50_sign_ns,
            "rounds_ns_per_request": list(|r| r.total_ns),
        })
    }
}

/// `warmup` unmeasured requests, then `rounds` rounds of `iterations` each.
pub fn run(iterations: usize, rounds: usize, warmup: usize) -> Report {
    assert!(
        iterations > 0 && rounds > 0,
        "need at least one iteration and one round"
    );
    let mut w = World::new();
    let baseline = w.kv.map.borrow().clone();
    for _ in 0..warmup {
        w.iteration();
        w.reset(&baseline);
    }
    let mut out = Vec::with_capacity(rounds);
    let mut samples: [Vec<f64>; 3] =
        std::array::from_fn(|_| Vec::with_capacity(rounds * iterations));
    for _ in 0..rounds {
        let (mut handle, mut sign) = (0u64, 0u64);
        for _ in 0..iterations {
            let (h, s) = w.iteration();
            handle += h;
            sign += s;
            for (v, x) in samples.iter_mut().zip([h + s, h, s]) {
                v.push(x as f64);
            }
            w.reset(&baseline);
        }
        let n = iterations as f64;
        out.push(Round {
            total_ns: (handle + sign) as f64 / n,
            handle_ns: handle as f64 / n,
            sign_ns: sign as f64 / n,
        });
    }
    let [total, handle, sign] = samples.map(median);
    Report {
        iterations,
        warmup,
        rounds: out,
        p50_ns: total,
        p50_handle_ns: handle,
        p50_sign_ns: sign,
    }
}

/// One CodeB login's password check (`voxline_edge::password::verify`, the
/// Argon2id verification the token endpoint runs once per attempt) for the
/// shipped parameters and a few candidates: the median over `rounds`
/// verifications of each, in ns. One line of JSON.
pub fn password_verify(rounds: usize) -> Value {
    use voxline_edge::password;
    assert!(rounds > 0, "need at least one round");
    let candidates = [
        (password::MEMORY_KIB, password::ITERATIONS),
        (12 * 1024, 3),
        (19 * 1024, 1),
        (46 * 1024, 1),
        (64 * 1024, 1),
    ];
    let mut cases = Vec::new();
    for (memory_kib, iterations) in candidates {
        let phc = password::hash_with("bench password 1234", memory_kib, iterations)
            .expect("argon2 parameters in range");
        // Warm the allocator once.
        assert!(password::verify("bench password 1234", &phc));
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let ok = password::verify(black_box("bench password 1234"), black_box(&phc));
            samples.push(start.elapsed().as_nanos() as f64);
            assert!(ok);
        }
        cases.push(json!({
            "memory_kib": memory_kib,
            "iterations": iterations,
            "shipped": (memory_kib, iterations) == (password::MEMORY_KIB, password::ITERATIONS),
            "p50_ns": median(samples),
        }));
    }
    json!({
        "target": if cfg!(target_family = "wasm") { "wasm32" } else { std::env::consts::ARCH },
        "case": "password_verify",
        "rounds": rounds,
        "cases": cases,
    })
}

/// The bench times the native call path, which never reads a tenant's
/// directory (only the Voice360 routes do): any request to it is refused.
struct NoDirectory;

impl voxline_edge::directory::Directory for NoDirectory {
    fn send<'a>(
        &'a self,
        _object: &'a str,
        _request: voxline_edge::directory::DirectoryRequest,
    ) -> voxline_edge::traffic::LocalFuture<
        'a,
        Result<voxline_edge::directory::DirectoryAnswer, voxline_edge::store::StoreError>,
    > {
        Box::pin(async {
            Err(voxline_edge::store::StoreError::Unavailable(
                "the bench has no directory".into(),
            ))
        })
    }
}
