//! Harness for the end-to-end suites and `cargo xtask demo`: starts the real
//! edge under `wrangler dev` (workerd, local KV persisted to a directory) on a
//! free loopback port, talks HTTP to it, and stops its whole process group.
//! Only what knows the edge lives here (wrangler, the admin and sidecar-link
//! APIs, sidecars configured against an edge, the webhook receiver, the fake
//! realtime server); PKI, caddy, ports, processes, WAV and signal helpers
//! are `voxline_testkit`'s.

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use std::time::{Duration, Instant};

use voxline_testkit::{free_tcp_port, free_tcp_udp_port, now_ms, ChildGuard};

pub use serde_json::{json, Value};

pub mod fake_realtime;

/// The repository root (where wrangler.toml lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A 1 s stereo 8 kHz 16-bit WAV, shaped by `seed`, as a sidecar records one.
pub fn small_wav(seed: i16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).expect("a WAV writer");
    for i in 0..8000i16 {
        w.write_sample(i.wrapping_mul(seed)).expect("write");
        w.write_sample(i.wrapping_mul(seed).wrapping_neg())
            .expect("write");
    }
    w.finalize().expect("finalize");
    out.into_inner()
}

/// `n` random bytes from the OS, as hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct EdgeOptions {
    pub admin_token: String,
    /// Where local KV/DO/R2/Queues persist.
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    /// Extra `--var NAME:VALUE` bindings.
    pub vars: Vec<(String, String)>,
    /// HTTP port; a free one when `None`.
    pub port: Option<u16>,
}

impl EdgeOptions {
    /// Dispatch timings for suites with real sidecars: ack deadline 2 s,
    /// dead after 3 s, polls held 1 s, a retry "minute" of 1 s, so lost
    /// sidecars, retries and re-leases happen within a test's time.
    pub fn fast_dispatch(mut self) -> EdgeOptions {
        self.vars.extend([
            ("DISPATCH_ACK_DEADLINE_MS".to_string(), "2000".to_string()),
            ("DISPATCH_DEAD_AFTER_MS".to_string(), "3000".to_string()),
            ("DISPATCH_MAX_WAIT_MS".to_string(), "1000".to_string()),
            ("RETRY_DELAY_UNIT_MS".to_string(), "1000".to_string()),
            // A stranded call (its sidecar presumed dead) is retried at most
            // max_seconds + this after it started, unless the sidecar says sooner.
            ("DISPATCH_LOST_MARGIN_MS".to_string(), "1000".to_string()),
        ]);
        self
    }

    /// Fresh state under `target/e2e/<name>` so runs never see each other's data.
    pub fn fresh(name: &str) -> EdgeOptions {
        let dir = repo_root().join("target").join("e2e").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create e2e state dir");
        EdgeOptions {
            admin_token: format!("adm_{}", std::process::id()),
            state_dir: dir.join("state"),
            log_path: dir.join("wrangler.log"),
            vars: Vec::new(),
            port: None,
        }
    }
}

/// A running `wrangler dev`. Dropping it stops the process group.
pub struct Edge {
    pub base: String,
    pub admin_token: String,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Edge {
    pub fn start(opts: EdgeOptions) -> Result<Edge, String> {
        let root = repo_root();
        let shim = root.join("edge/build/worker/shim.mjs");
        if !shim.exists() {
            return Err(format!(
                "{} is missing: build the edge first (`cargo xtask build-edge`)",
                shim.display()
            ));
        }
        let wrangler = root.join("node_modules/.bin/wrangler");
        if !wrangler.exists() {
            return Err(
                "node_modules/.bin/wrangler is missing: run `cargo xtask bootstrap`".into(),
            );
        }
        let port = opts.port.unwrap_or_else(free_tcp_port);
        let inspector = free_tcp_port();
        let log = std::fs::File::create(&opts.log_path).map_err(|e| format!("create log: {e}"))?;
        let mut cmd = Command::new(&wrangler);
        cmd.current_dir(&root)
            .args(["dev", "--config", "wrangler.toml", "--ip", "127.0.0.1"])
            .args([
                "--port",
                &port.to_string(),
                "--inspector-port",
                &inspector.to_string(),
            ])
            .arg("--persist-to")
            .arg(&opts.state_dir)
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                "info",
                "--test-scheduled",
            ])
            .args(["--var", &format!("ADMIN_TOKEN:{}", opts.admin_token)])
            .args(["--var", "VOXLINE_ENV:development"]);
        // Engine API keys are sealed with this secret; a fresh one per run
        // unless the caller brings its own (state kept across runs).
        if !opts.vars.iter().any(|(k, _)| k == "VOXLINE_SEALING_KEY") {
            cmd.args(["--var", &format!("VOXLINE_SEALING_KEY:{}", random_hex(32))]);
        }
        // Suites send wrong credentials on purpose, all from one address:
        // only a suite that tests the throttle sets its own limit.
        if !opts.vars.iter().any(|(k, _)| k == "AUTH_FAILURE_LIMIT") {
            cmd.args(["--var", "AUTH_FAILURE_LIMIT:1000000"]);
        }
        // Dialect webhooks link recordings under the edge's own base (Calldock's
        // recording_url), so a suite can fetch them through the link.
        if !opts.vars.iter().any(|(k, _)| k == "PUBLIC_BASE_URL") {
            cmd.args(["--var", &format!("PUBLIC_BASE_URL:http://127.0.0.1:{port}")]);
        }
        for (k, v) in &opts.vars {
            cmd.args(["--var", &format!("{k}:{v}")]);
        }
        cmd.env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| format!("spawn wrangler: {e}"))?;
        let mut edge = Edge {
            base: format!("http://127.0.0.1:{port}"),
            admin_token: opts.admin_token,
            state_dir: opts.state_dir,
            log_path: opts.log_path,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = edge.request("GET", "/healthz", &[], None) {
                if r.status == 200 {
                    return Ok(edge);
                }
            }
            if let Some(Ok(Some(status))) = edge.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "wrangler dev exited early ({status}); log:\n{}",
                    edge.log_tail(40)
                ));
            }
            if Instant::now() > deadline {
                let tail = edge.log_tail(40);
                edge.stop();
                return Err(format!("wrangler dev not ready within 60 s; log:\n{tail}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM to the process group, SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Children (workerd) may outlive the node parent: clear the group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// One HTTP request. `body` is sent as given (tests control Content-Type).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let mut req = agent.request(method, &format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        Resp::read(resp)
    }

    /// JSON request with a bearer token; panics on transport errors (tests).
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Resp {
        let auth = format!("Bearer {token}");
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.request(method, path, &headers, body.as_deref().map(str::as_bytes))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        self.call(method, path, &self.admin_token, body)
    }

    /// Tenant + default agent + API key, through the admin API.
    pub fn provision_tenant(&self, name: &str) -> TestTenant {
        let t = self
            .admin("POST", "/admin/tenants", Some(&json!({"name": name})))
            .expect(201);
        let tid = t.json["id"].as_str().expect("tenant id").to_string();
        let a = self
            .admin(
                "POST",
                &format!("/admin/tenants/{tid}/agents"),
                Some(&json!({"name": format!("{name} agent")})),
            )
            .expect(201);
        let k = self
            .admin(
                "POST",
                &format!("/admin/tenants/{tid}/api-keys"),
                Some(&json!({"name": "e2e"})),
            )
            .expect(201);
        TestTenant {
            id: tid,
            agent_id: a.json["id"].as_str().expect("agent id").to_string(),
            key: k.json["key"].as_str().expect("clear key").to_string(),
            key_id: k.json["id"].as_str().expect("key id").to_string(),
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct TestTenant {
    pub id: String,
    pub agent_id: String,
    pub key: String,
    pub key_id: String,
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: Value,
    /// The body as received (`text` is its lossy UTF-8 reading).
    pub bytes: Vec<u8>,
}

impl Resp {
    /// Reads a whole ureq answer (bodies up to 256 MiB).
    pub fn read(resp: ureq::Response) -> Result<Resp, String> {
        let status = resp.status();
        let headers: Vec<(String, String)> = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| {
                resp.header(&n)
                    .map(|v| (n.to_ascii_lowercase(), v.to_string()))
            })
            .collect();
        let mut bytes = Vec::new();
        resp.into_reader()
            .take(256 << 20)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            headers,
            text,
            json,
            bytes,
        })
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts the one error shape with this status and code; returns `field`.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Option<String> {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let err = &self.json["error"];
        assert_eq!(err["code"], code, "unexpected code; body: {}", self.text);
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {}",
            self.text
        );
        assert!(
            err.get("field").is_some(),
            "error without field key: {}",
            self.text
        );
        assert_eq!(
            self.json.as_object().map(|o| o.len()),
            Some(1),
            "extra top-level keys: {}",
            self.text
        );
        err["field"].as_str().map(String::from)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A named case of a suite.
pub type Case<C> = (&'static str, fn(&C));

/// A suite's main: run each case in order, report, and exit non-zero on failure.
/// Non-flag command-line arguments filter cases by substring.
pub fn run_suite<C>(
    suite: &str,
    setup: impl FnOnce() -> Result<C, String>,
    cases: &[Case<C>],
) -> ExitCode
where
    C: SuiteContext,
{
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = cases
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} {suite} cases", selected.len());
    if selected.is_empty() {
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let ctx = match setup() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{suite}: setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = Vec::new();
    for (name, case) in selected {
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| case(&ctx)));
        match outcome {
            Ok(()) => println!("case {name} ... ok ({} ms)", t.elapsed().as_millis()),
            Err(_) => {
                println!("case {name} ... FAILED ({} ms)", t.elapsed().as_millis());
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "\n--- last lines of the edge log ---\n{}",
            ctx.diagnostics()
        );
    }
    drop(ctx);
    println!(
        "\n{suite}: {} failed of {} in {:.1} s{}",
        failed.len(),
        cases.len(),
        started.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join(", "))
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What a suite shows when a case fails.
pub trait SuiteContext {
    fn diagnostics(&self) -> String;
}

impl SuiteContext for Edge {
    fn diagnostics(&self) -> String {
        self.log_tail(40)
    }
}

// ---- media sidecar processes ----

/// The sidecar binary: `$VOXLINE_SIDECAR_BIN`, else the debug build.
pub fn sidecar_bin() -> PathBuf {
    std::env::var_os("VOXLINE_SIDECAR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/voxline-media-sidecar"))
}

/// `Err` naming the build command when the sidecar binary is not built (a
/// suite's setup says so rather than failing case by case).
pub fn require_sidecar_bin() -> Result<(), String> {
    if sidecar_bin().exists() {
        Ok(())
    } else {
        Err(format!(
            "{} is missing: `cargo build -p voxline-media-sidecar`",
            sidecar_bin().display()
        ))
    }
}

/// A running sidecar process; dropped = SIGTERM then SIGKILL.
pub struct Sidecar {
    child: Option<ChildGuard>,
    pub log: PathBuf,
}

impl Sidecar {
    /// Mints credentials for `id` through the admin API and starts the process.
    pub fn start(
        edge: &Edge,
        dir: &Path,
        id: &str,
        edge_url: &str,
        extra_env: &[(&str, String)],
        simulate_secs: f64,
    ) -> Sidecar {
        let cred = edge
            .admin(
                "POST",
                "/admin/sidecars",
                Some(&json!({"sidecar_id": id, "region": "local"})),
            )
            .expect(201);
        let log = dir.join(format!("sidecar-{id}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(sidecar_bin());
        cmd.arg(format!("--simulate-answer={simulate_secs}"))
            .env("VOXLINE_EDGE_URL", edge_url)
            .env("VOXLINE_SIDECAR_ID", id)
            .env("VOXLINE_REGION", "local")
            .env(
                "VOXLINE_SIDECAR_SECRET",
                cred.json["secret"].as_str().unwrap(),
            )
            .env("VOXLINE_CAPACITY", "2")
            .env("VOXLINE_LEASE_WAIT_MS", "1000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .expect("start the sidecar (built by `cargo build -p voxline-media-sidecar`)");
        Sidecar {
            child: Some(ChildGuard(child)),
            log,
        }
    }

    pub fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.sigkill();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.terminate(Duration::from_secs(3));
        }
    }
}

// ---- the sidecar protocol, spoken by hand ----

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh signature nonce (16-64 hex).
pub fn nonce() -> String {
    format!(
        "{:016x}{:016x}",
        now_ms(),
        NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// A sidecar identity with its secret that signs and speaks the dispatch
/// protocol exactly as a sidecar does, step by step, so suites can lease,
/// ack and report events at the moments they choose.
pub struct ProtocolSidecar {
    pub id: String,
    pub secret: String,
}

impl ProtocolSidecar {
    /// Mints credentials for `id` in region `local` through the admin API.
    pub fn create(edge: &Edge, id: &str) -> ProtocolSidecar {
        let r = edge
            .admin(
                "POST",
                "/admin/sidecars",
                Some(&json!({"sidecar_id": id, "region": "local"})),
            )
            .expect(201);
        let secret = r.json["secret"]
            .as_str()
            .expect("the secret, shown once")
            .to_string();
        ProtocolSidecar {
            id: id.to_string(),
            secret,
        }
    }

    pub fn send_raw(
        &self,
        edge: &Edge,
        path: &str,
        body: &Value,
        ts: u64,
        nonce: &str,
        secret: &str,
    ) -> Resp {
        let raw = body.to_string();
        let headers = voxline_shared::signing::signed_headers(
            &self.id,
            secret.as_bytes(),
            ts,
            nonce,
            voxline_shared::signing::Target::post(path),
            raw.as_bytes(),
        );
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.push(("content-type", "application/json"));
        edge.request("POST", path, &h, Some(raw.as_bytes()))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub fn send(&self, edge: &Edge, path: &str, body: Value) -> Resp {
        self.send_raw(edge, path, &body, now_ms() / 1000, &nonce(), &self.secret)
    }

    pub fn register(&self, edge: &Edge, capacity: u32) -> Resp {
        self.send(edge, voxline_shared::sidecar_link::paths::REGISTER, json!({"protocol_version": 1, "sidecar_id": self.id, "region": "local", "capacity": capacity, "version": "test"}))
    }

    /// One lease poll; `held` lists the calls it holds (others it was
    /// acked for are presumed lost after a grace).
    pub fn poll(&self, edge: &Edge, free_slots: u32, held: &[&str], wait_ms: u32) -> Resp {
        self.send(
            edge,
            voxline_shared::sidecar_link::paths::LEASE,
            json!({"protocol_version": 1, "sidecar_id": self.id, "region": "local",
            "free_slots": free_slots, "held_calls": held, "wait_ms": wait_ms}),
        )
    }

    pub fn ack(&self, edge: &Edge, offer: &Value, accepted: bool) -> Resp {
        self.send(
            edge,
            voxline_shared::sidecar_link::paths::ACK,
            json!({"protocol_version": 1, "sidecar_id": self.id, "lease_id": offer["lease_id"],
            "call_id": offer["call_id"], "accepted": accepted}),
        )
    }

    pub fn events(&self, edge: &Edge, events: Value) -> Resp {
        self.send(
            edge,
            voxline_shared::sidecar_link::paths::EVENTS,
            json!({"protocol_version": 1, "sidecar_id": self.id, "events": events}),
        )
    }

    /// `POST /v1/sidecar/recording`: `wav` for attempt 1 of the call, with a
    /// manifest describing `described` (normally `wav` itself: a different
    /// one makes a lying manifest), signed with `secret` (normally the
    /// sidecar's), the body sent with a Content-Length or chunked.
    #[allow(clippy::too_many_arguments)] // each one is a way a test makes the upload wrong
    pub fn upload_recording(
        &self,
        edge: &Edge,
        tenant_id: &str,
        call_id: &str,
        wav: &[u8],
        described: &[u8],
        secret: &str,
        chunked: bool,
    ) -> Resp {
        let manifest = json!({"protocol_version": 1, "sidecar_id": self.id, "tenant_id": tenant_id, "call_id": call_id, "attempt": 1,
            "content_type": "audio/wav", "bytes": described.len(), "sha256": voxline_shared::signing::sha256_hex(described), "duration_ms": 1000});
        let raw = manifest.to_string();
        let signed = voxline_shared::signing::signed_headers(
            &self.id,
            secret.as_bytes(),
            now_ms() / 1000,
            &nonce(),
            voxline_shared::signing::Target::post(voxline_shared::sidecar_link::paths::RECORDING),
            raw.as_bytes(),
        );
        let url = format!(
            "{}{}",
            edge.base,
            voxline_shared::sidecar_link::paths::RECORDING
        );
        let mut req = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build()
            .post(&url);
        for (k, v) in signed.iter() {
            req = req.set(k, v);
        }
        req = req
            .set(
                voxline_shared::sidecar_link::HEADER_RECORDING_MANIFEST,
                &raw,
            )
            .set("content-type", "audio/wav");
        let result = if chunked {
            req.send(std::io::Cursor::new(wav.to_vec()))
        } else {
            req.send_bytes(wav)
        };
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                Resp::read(r).unwrap_or_else(|e| panic!("upload answer: {e}"))
            }
            Err(e) => panic!("upload: {e}"),
        }
    }

    /// Reports a held call's attempt ended `completed`, as that attempt's only event (seq 1).
    pub fn complete(&self, edge: &Edge, call_id: &str, attempt: u64) -> Resp {
        self.events(
            edge,
            json!([call_event(
                call_id,
                attempt as u32,
                1,
                ended_event("completed", "callee_hangup")
            )]),
        )
    }

    /// Polls until an offer for `call_id` arrives (other offers are left to expire).
    pub fn poll_for(&self, edge: &Edge, call_id: &str, held: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let r = self.poll(edge, 4, held, 500).expect(200);
            if let Some(o) = r.json["offers"]
                .as_array()
                .and_then(|o| o.iter().find(|o| o["call_id"] == call_id))
            {
                return o.clone();
            }
        }
        panic!("no offer for {call_id} within {within:?}");
    }
}

/// A `CallEvent` as a sidecar sends it.
pub fn call_event(call_id: &str, attempt: u32, seq: u32, kind: Value) -> Value {
    json!({"call_id": call_id, "attempt": attempt, "seq": seq, "at_ms": now_ms(), "kind": kind})
}

/// An `ended` event kind.
pub fn ended_event(status: &str, reason: &str) -> Value {
    let t = now_ms();
    json!({"type": "ended", "status": status, "reason": reason, "timings": {"dispatched_ms": t, "ended_ms": t}})
}

/// A media sidecar of region `local` whose one SIP trunk is 127.0.0.1:`trunk_port`,
/// with its credentials minted through the admin API. Config and log go to
/// `dir` (`sidecar-<id>.toml` / `.log`), recordings to `dir/recordings`;
/// `telephony_extra` is added to its `[telephony]` section (e.g. `codecs = [..]`).
/// Engine URLs on 127.0.0.1 (the fake realtime servers a call or agent names)
/// are allowed: the sidecar refuses non-public engine addresses otherwise.
pub fn start_sip_sidecar(
    edge: &Edge,
    dir: &Path,
    id: &str,
    trunk_port: u16,
    telephony_extra: &str,
) -> Result<ChildGuard, String> {
    start_sip_sidecar_with_trunk(edge, dir, id, trunk_port, telephony_extra, "")
}

/// [`start_sip_sidecar`] with `trunk_extra` lines in its trunk's table
/// (e.g. `refer = true`).
pub fn start_sip_sidecar_with_trunk(
    edge: &Edge,
    dir: &Path,
    id: &str,
    trunk_port: u16,
    telephony_extra: &str,
    trunk_extra: &str,
) -> Result<ChildGuard, String> {
    let cred = edge.admin(
        "POST",
        "/admin/sidecars",
        Some(&json!({"sidecar_id": id, "region": "local"})),
    );
    if cred.status != 201 {
        return Err(format!(
            "sidecar credentials: {} {}",
            cred.status, cred.text
        ));
    }
    let recordings = dir.join("recordings");
    std::fs::create_dir_all(&recordings).map_err(|e| e.to_string())?;
    let rtp = free_tcp_udp_port() & !1;
    let config = format!(
        "edge_url = \"{}\"\nsidecar_id = \"{id}\"\nregion = \"local\"\ncapacity = 4\nlease_wait_ms = 1000\n\n\
         [telephony]\nbind_ip = \"127.0.0.1\"\nrtp_port_min = {rtp}\nrtp_port_max = {}\nring_timeout_seconds = 20\nrecordings_dir = \"{}\"\n{telephony_extra}\n\n\
         [[telephony.trunks]]\nname = \"callee\"\nhost = \"127.0.0.1\"\nport = {trunk_port}\nfrom_number = \"+15550001111\"\n{trunk_extra}\n\n\
         [engine]\nallowed_hosts = [\"127.0.0.1\"]\n",
        edge.base,
        rtp + 19,
        recordings.display(),
    );
    let path = dir.join(format!("sidecar-{id}.toml"));
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let log =
        std::fs::File::create(dir.join(format!("sidecar-{id}.log"))).map_err(|e| e.to_string())?;
    let child = Command::new(sidecar_bin())
        .arg("--config")
        .arg(&path)
        .env(
            "VOXLINE_SIDECAR_SECRET",
            cred.json["secret"].as_str().unwrap_or_default(),
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start the sidecar {}: {e}", sidecar_bin().display()))?;
    Ok(ChildGuard(child))
}

/// Waits until the sidecar whose log is `log` (from [`start_sip_sidecar`]:
/// `dir/sidecar-<id>.log`) says it registered with the edge: inbound calls
/// are taken only after that.
pub fn wait_sidecar_registered(log: &Path, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("registered with the edge")
    {
        if Instant::now() > deadline {
            return Err(format!(
                "the sidecar did not register with the edge within {within:?}; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

impl Edge {
    /// A call's transcript as JSON (`GET /v1/calls/{id}/transcript`, 200
    /// expected).
    #[track_caller]
    pub fn transcript(&self, key: &str, id: &str) -> Value {
        self.call("GET", &format!("/v1/calls/{id}/transcript"), key, None)
            .expect(200)
            .json
    }

    /// Polls a call until its status is one of `want`; panics after `within`.
    #[track_caller]
    pub fn wait_call_status(&self, key: &str, id: &str, want: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let call = self
                .call("GET", &format!("/v1/calls/{id}"), key, None)
                .expect(200)
                .json;
            if want.iter().any(|s| call["status"] == *s) {
                return call;
            }
            assert!(
                Instant::now() < deadline,
                "call {id} never reached {want:?}: {call}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /v1/calls/{id}/recording` once the sidecar has uploaded it (R2),
    /// checked against its `X-Recording-Sha256`; the WAV's bytes.
    pub fn wait_recording(&self, key: &str, id: &str, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let auth = format!("Bearer {key}");
        loop {
            let r = self
                .request(
                    "GET",
                    &format!("/v1/calls/{id}/recording"),
                    &[("authorization", &auth)],
                    None,
                )
                .expect("GET recording");
            if r.status == 200 {
                assert_eq!(r.header("content-type"), Some("audio/wav"));
                let sha = voxline_shared::signing::sha256_hex(&r.bytes);
                assert_eq!(
                    r.header("x-recording-sha256"),
                    Some(sha.as_str()),
                    "the recording's bytes differ from what the sidecar hashed"
                );
                return r.bytes;
            }
            assert_eq!(r.json["error"]["code"], "recording_not_found", "{}", r.text);
            assert!(
                Instant::now() < deadline,
                "call {id}: no recording within {within:?}: {}",
                r.text
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `tests/webhooks/receiver.py`: a real Standard Webhooks receiver (the
/// unmodified Python `standardwebhooks` package verifies every delivery),
/// on 127.0.0.1, answering per hook name as configured; every request is
/// logged as one JSON line.
pub struct WebhookReceiver {
    pub port: u16,
    config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// The project's venv Python (`cargo xtask bootstrap` makes it).
pub fn python() -> PathBuf {
    repo_root().join(".tools/venv/bin/python")
}

impl WebhookReceiver {
    pub fn new(dir: &std::path::Path) -> WebhookReceiver {
        let r = WebhookReceiver {
            port: free_tcp_port(),
            config: dir.join("receiver-config.json"),
            log: dir.join("received.jsonl"),
            child: None,
        };
        std::fs::write(&r.config, "{}").unwrap();
        let _ = std::fs::remove_file(&r.log);
        r
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let script = repo_root().join("tests/webhooks/receiver.py");
        let child = Command::new(python())
            .arg(&script)
            .args(["--port", &self.port.to_string()])
            .arg("--config")
            .arg(&self.config)
            .arg("--log")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the receiver needs .tools/venv (run `cargo xtask bootstrap`)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hook/{name}", self.port)
    }

    /// Sets how the receiver treats one hook name (read on every request).
    pub fn configure(&self, name: &str, cfg: Value) {
        let mut all: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap();
        all[name] = cfg;
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, all.to_string()).unwrap();
        std::fs::rename(tmp, &self.config).unwrap();
    }

    /// Sets one setting of hook `name`, keeping the others (its secrets).
    pub fn configure_one(&self, name: &str, key: &str, value: Value) {
        let all: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap();
        let mut cfg = all.get(name).cloned().unwrap_or_else(|| json!({}));
        cfg[key] = value;
        self.configure(name, cfg);
    }

    /// Tells the receiver the secrets hook `name` is signed with.
    pub fn expect_secrets(&self, name: &str, secrets: &[&str]) {
        self.configure(name, json!({"secrets": secrets}));
    }

    /// Adds a webhook endpoint of `tenant_id` pointing at hook `name`
    /// (`endpoint`: more fields of the endpoint, e.g. `events`,
    /// `retry_schedule`) and tells the receiver its secret.
    pub fn subscribe(&self, edge: &Edge, tenant_id: &str, name: &str, endpoint: Value) {
        let mut body = endpoint;
        body["url"] = json!(self.url(name));
        let created = edge
            .admin(
                "POST",
                &format!("/admin/tenants/{tenant_id}/webhooks"),
                Some(&body),
            )
            .expect(201);
        self.expect_secrets(name, &[created.json["secret"].as_str().unwrap_or_default()]);
    }

    /// Waits until `pred` holds for what `name` received; returns it.
    pub fn wait_for(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received(name);
            if pred(&got) {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name}: never got {what}; got {} deliveries",
                    got.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The delivered event of one logged request (its body, parsed).
    pub fn event(r: &Value) -> Value {
        serde_json::from_str(r["body"].as_str().unwrap_or("")).unwrap_or(Value::Null)
    }

    /// What this hook name received, oldest first.
    pub fn received(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["name"] == name)
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a client program (a document's sample, a `curl` command) from the
/// repository root, stdin closed; its stdout and stderr together, also
/// printed under the case as `  {what}: ...`.
pub fn run_sample(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("  {what}: {}", text.trim());
    text
}

/// A document's webhook receiver sample, run as a child process: `cmd PORT
/// LOG`, writing one JSON line per request it answered (`path`, `answered`,
/// `signature`, `body`: the wrappers in `tests/codeb/` and `tests/voice360/`).
pub struct SampleReceiver {
    log: PathBuf,
    _child: ChildGuard,
}

impl SampleReceiver {
    /// Starts `cmd` with the port and the log file (`{name}.jsonl` in `dir`)
    /// appended, its stderr in `{name}.log`; waits until it listens.
    pub fn start(
        mut cmd: Command,
        dir: &Path,
        name: &str,
        port: u16,
    ) -> Result<SampleReceiver, String> {
        let log = dir.join(format!("{name}.jsonl"));
        let _ = std::fs::remove_file(&log);
        let stderr =
            std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let child = cmd
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        let child = ChildGuard(child);
        if !voxline_testkit::wait_tcp(port, Duration::from_secs(10)) {
            return Err(format!("the {name} receiver did not start"));
        }
        Ok(SampleReceiver { log, _child: child })
    }

    /// Every request answered so far.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a request whose raw body passes `wanted`; returns its log line.
    #[track_caller]
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let found = self
                .lines()
                .into_iter()
                .find(|l| l["body"].as_str().is_some_and(&wanted));
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < until,
                "no {what}; received {:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A customer tool's server on loopback (issue 18): answers every POST with
/// a fixed JSON body and keeps what it was sent, for the e2e suites and the
/// demo.
pub struct ToolServer {
    /// `http://127.0.0.1:{port}/tools`: the URL to give the agent's tool.
    pub url: String,
    got: std::sync::mpsc::Receiver<ToolRequest>,
}

/// One request a [`ToolServer`] was sent.
#[derive(Debug, Clone)]
pub struct ToolRequest {
    /// The request line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl ToolRequest {
    /// A header's value (the first of that name, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Whether its Standard Webhooks signature is `secret`'s (`whsec_...`):
    /// `v1,` + base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")).
    pub fn signed_by(&self, secret: &str) -> bool {
        use base64::Engine as _;
        use hmac::Mac as _;
        let (Some(id), Some(ts), Some(sigs)) = (
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
        ) else {
            return false;
        };
        let Ok(key) =
            base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_"))
        else {
            return false;
        };
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else {
            return false;
        };
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&self.body);
        let want = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        sigs.split(' ').any(|s| s == want)
    }
}

impl ToolServer {
    /// Serves (a thread) until the process ends, answering `answer`.
    pub fn start(answer: &'static str) -> ToolServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the tool server");
        let url = format!(
            "http://{}/tools",
            listener.local_addr().expect("its address")
        );
        let (tx, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut req = ToolRequest {
                    head,
                    body: Vec::new(),
                };
                let len = req
                    .header("content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(1 << 20);
                req.body = vec![0; len];
                let _ = reader.read_exact(&mut req.body);
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                if tx.send(req).is_err() {
                    return;
                }
            }
        });
        ToolServer { url, got }
    }

    /// The next request it was sent, waiting at most `within`.
    pub fn next(&self, within: Duration) -> Option<ToolRequest> {
        self.got.recv_timeout(within).ok()
    }
}
