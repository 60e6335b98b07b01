//! End-to-end: CodeB's outbound-AI REST API (issue 14) driven by its
//! document's own samples (`tests/codeb/`, line breaks put back, run with only
//! the host and the password filled in) against real `wrangler dev`, a real
//! sidecar and a real phone (baresip) on 127.0.0.1:
//! - Step 1, the Python token exchange (OIDC password grant) for a tenant
//!   user made by the admin API; a wrong password refused.
//! - Step 2, the Python sample placing the reminder call, which a phone
//!   answers; polled through `GET /api.ashx/v1/calls/{id}` (in-flight,
//!   ended-success).
//! - Step 3, the Flask receiver verbatim verifying `X-CodeB-Signature` of
//!   `outbound-ai.finished` and `transcript.saved`.
//! - Step 4, the curl transcript download under the document's name.
//! - The transcript email, received by a local SMTP sink (aiosmtpd).
//! - Every status word (scheduled, in-flight, ended-success,
//!   ended-failed-final via a busy callee, cancelled) and the documented
//!   errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::*;

/// The number in the document's samples.
const PHONE: &str = "+4915157610183";
const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// The per-call engine key the sample sends (`AI_API_KEY`): the agent's
/// local engine needs none, but it travels sealed all the same.
const AI_API_KEY: &str = "sk-e2e-codeb-call-key";

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    trunk_port: u16,
    _sidecar: ChildGuard,
    receiver: Receiver,
    smtp: SmtpSink,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 12)
    }
}

fn samples() -> PathBuf {
    repo_root().join("tests/codeb")
}

/// The document's Flask receiver (`tests/codeb/webhook_receiver.py`).
struct Receiver(SampleReceiver);

impl Receiver {
    fn url_on(port: u16) -> String {
        format!("http://127.0.0.1:{port}/codeb/webhook")
    }

    fn start(dir: &Path, port: u16, secret: &str) -> Result<Receiver, String> {
        let mut cmd = Command::new(python());
        cmd.arg(samples().join("webhook_receiver.py"))
            .env("CODEB_WEBHOOK_SECRET", secret);
        SampleReceiver::start(cmd, dir, "codeb-received", port).map(Receiver)
    }

    fn lines(&self) -> Vec<Value> {
        self.0.lines()
    }

    /// Waits for a delivery of `event` about `call_id`; returns its log line.
    fn wait_for(&self, event: &str, call_id: &str, within: Duration) -> Value {
        let kind = format!("\"type\":\"{event}\"");
        self.0.wait_for(
            &format!("{event} for {call_id}"),
            |b| b.contains(&kind) && b.contains(call_id),
            within,
        )
    }
}

/// `tests/mail/smtp_sink.py`: an aiosmtpd server writing each message to a file.
struct SmtpSink {
    port: u16,
    dir: PathBuf,
    _child: ChildGuard,
}

impl SmtpSink {
    fn start(dir: &Path) -> Result<SmtpSink, String> {
        let port = free_tcp_port();
        let mail_dir = dir.join("mail");
        let _ = std::fs::remove_dir_all(&mail_dir);
        std::fs::create_dir_all(&mail_dir).map_err(|e| e.to_string())?;
        let child = Command::new(python())
            .arg(repo_root().join("tests/mail/smtp_sink.py"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&mail_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("smtp-sink.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("python: {e}"))?;
        let child = ChildGuard(child);
        if !wait_tcp(port, Duration::from_secs(10)) {
            return Err("the SMTP sink did not start".into());
        }
        Ok(SmtpSink {
            port,
            dir: mail_dir,
            _child: child,
        })
    }

    /// Waits for a message whose text contains `needle`; returns it.
    fn wait_for(&self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let found = std::fs::read_dir(&self.dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .find(|m| m.contains(needle));
            if let Some(m) = found {
                return m;
            }
            assert!(
                Instant::now() < until,
                "no mail containing {needle:?} in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A copy of a document sample with its host (and password) filled in: the
/// only edits the document asks of a reader.
fn filled_sample(w: &World, name: &str, password: &str) -> PathBuf {
    let text = std::fs::read_to_string(samples().join(name)).unwrap();
    let path = w.dir.join(name);
    std::fs::write(
        &path,
        text.replace("https://phone.yourtenant.com", &w.edge.base)
            .replace("YOUR_PASSWORD", password),
    )
    .unwrap();
    path
}

/// Step 1: the token sample; its output (the token on success).
fn token_sample(w: &World, password: &str) -> String {
    let script = filled_sample(w, "token_sample.py", password);
    run_sample(Command::new(python()).arg(script), "token sample")
}

fn token(w: &World) -> String {
    let out = token_sample(w, PASSWORD);
    let token = out.trim().to_string();
    assert!(
        !token.is_empty() && !token.contains(' ') && !token.contains("Error"),
        "{out}"
    );
    token
}

/// Step 2: the call sample with `CODEB_TOKEN`; the printed call id.
fn place_call_sample(w: &World, token: &str) -> String {
    let script = filled_sample(w, "place_call_sample.py", PASSWORD);
    let out = run_sample(
        Command::new(python())
            .arg(script)
            .env("CODEB_TOKEN", token)
            .env("AI_API_KEY", AI_API_KEY),
        "call sample",
    );
    out.trim()
        .strip_prefix("queued ")
        .filter(|id| id.starts_with("oac-"))
        .unwrap_or_else(|| panic!("no call id: {out}"))
        .to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A CodeB request with a bearer token.
fn codeb(w: &World, method: &str, path: &str, token: &str, body: Option<&Value>) -> Resp {
    let auth = bearer(token);
    let body = body.map(|b| b.to_string().into_bytes());
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    w.edge
        .request(method, path, &headers, body.as_deref())
        .unwrap()
}

fn get_call(w: &World, token: &str, id: &str) -> Value {
    let r = codeb(w, "GET", &format!("/api.ashx/v1/calls/{id}"), token, None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["call"].clone()
}

/// Polls the call as the document says ("until status is one of
/// ended-success, ended-failed-final, or cancelled"); every status seen.
fn poll_until_final(w: &World, token: &str, id: &str) -> (Value, Vec<String>) {
    let until = Instant::now() + Duration::from_secs(90);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let call = get_call(w, token, id);
        let status = call["status"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if ["ended-success", "ended-failed-final", "cancelled"].contains(&status.as_str()) {
            return (call, seen);
        }
        assert!(Instant::now() < until, "{id} still {status}: {call}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A phone answering the sample's number on the trunk port that says `words`.
fn phone(w: &World, name: &str, words: &str) -> ChildGuard {
    let mut pcm = vec![0i16; 8000 * 4];
    pcm.extend(flite_8k(&w.dir, "slt", words).unwrap());
    pcm.extend(vec![0i16; 8000 * 8]);
    let wav = w.dir.join(format!("{name}.wav"));
    write_wav(&wav, 8000, &pcm).unwrap();
    start_baresip(&w.dir, name, PHONE, w.trunk_port, &wav, "PCMU", 60).unwrap()
}

/// A callee that answers 486 Busy Here (sipp).
fn busy_callee(w: &World) -> ChildGuard {
    let log = std::fs::File::create(w.dir.join("sipp-busy.log")).unwrap();
    let child = Command::new(SIPP.require())
        .args([
            "-sf",
            repo_root()
                .join("tests/sipp/uas_busy.xml")
                .to_str()
                .unwrap(),
        ])
        .args(["-i", "127.0.0.1", "-p", &w.trunk_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "40s"])
        .current_dir(&w.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sipp (Debian package sip-tester)");
    ChildGuard(child)
}

// ---------------------------------------------------------------- cases

fn the_documents_four_steps_place_and_report_a_real_call(w: &World) {
    // Step 1.
    let token = token(w);
    // Step 2, with a phone that answers.
    let _phone = phone(w, "codeb-alex", "Yes, I'll be there.");
    let id = place_call_sample(w, &token);
    let (call, seen) = poll_until_final(w, &token, &id);
    assert_eq!(call["status"], "ended-success", "{call}");
    assert!(seen.iter().any(|s| s == "in-flight"), "{seen:?}");
    assert_eq!(call["displayName"], "Reminder", "{call}");
    assert_eq!(call["phone"], PHONE);
    assert_eq!(
        (call["attempt"].as_u64(), call["retriesLeft"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(call["durationSec"].as_u64().unwrap() > 0, "{call}");
    // Step 3: both webhooks, verified by the document's verifier (204, not 401).
    let finished = w
        .receiver
        .wait_for("outbound-ai.finished", &id, Duration::from_secs(30));
    assert_eq!(finished["answered"], 204, "{finished}");
    let body: Value = serde_json::from_str(finished["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["status"], "ended-success", "{body}");
    assert_eq!(
        body["data"]["transcriptPath"], call["transcriptPath"],
        "{body}"
    );
    assert!(
        w.receiver
            .lines()
            .iter()
            .any(|l| l["crm"]["callId"] == id.as_str() && l["crm"]["status"] == "ended-success"),
        "update_crm was called"
    );
    let saved = w
        .receiver
        .wait_for("transcript.saved", &id, Duration::from_secs(30));
    assert_eq!(saved["answered"], 204, "{saved}");
    // Step 4: the document's curl, with the path the webhook named.
    let path = call["transcriptPath"].as_str().unwrap();
    assert!(
        path.starts_with("outbound-ai-") && path.ends_with(&format!("-{id}.txt")),
        "{path}"
    );
    let transcript = run_sample(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "curl -s -H \"Authorization: Bearer $TOKEN\" \"{}/api.ashx/v1/transcripts/{path}\"",
                w.edge.base
            ))
            .env("TOKEN", &token),
        "transcript curl",
    );
    let lines: Vec<&str> = transcript.lines().collect();
    assert!(lines.len() >= 2, "{transcript}");
    assert!(
        lines.iter().any(|l| l
            .get(10..)
            .is_some_and(|t| t.starts_with(" AI: You are calling Alex"))),
        "{transcript}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.get(10..).is_some_and(|t| t.starts_with(" USER: "))),
        "{transcript}"
    );
    for l in &lines {
        let b = l.as_bytes();
        assert!(
            b.len() > 11 && b[0] == b'[' && b[3] == b':' && b[6] == b':' && b[9] == b']',
            "{l}"
        );
    }
    let json = codeb(
        w,
        "GET",
        &format!("/api.ashx/v1/transcripts/{}", path.replace(".txt", ".json")),
        &token,
        None,
    );
    assert_eq!(json.status, 200, "{}", json.text);
    assert_eq!(json.json["callId"], id.as_str());
    // The transcript and outcome, mailed to the request's `email`.
    let native_id = id.replace("oac-", "call_");
    let mail = w.smtp.wait_for(&native_id, Duration::from_secs(30));
    assert!(mail.contains("ops@yourcompany.example"), "{mail}");
    assert!(mail.contains("You are calling Alex"), "{mail}");
}

fn a_wrong_password_is_refused_as_oauth_says(w: &World) {
    let out = token_sample(w, "not the password");
    assert!(out.contains("400 Client Error"), "{out}");
    let r = w
        .edge
        .request(
            "POST",
            "/oidc.ashx/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"grant_type=password&username=alice&password=nope&scope=openid"),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_grant", "{}", r.text);
}

fn scheduled_calls_are_listed_and_cancelled(w: &World) {
    let token = token(w);
    let body = json!({
        "phone": "+4915157610999", "email": "ops@yourcompany.example",
        "systemPrompt": "reminder", "apiKey": AI_API_KEY,
        "scheduleAtUtc": "2099-01-01T09:00:00Z",
    });
    let r = codeb(w, "POST", "/api.ashx/v1/calls", &token, Some(&body));
    // 90 days at most ahead: the native rule, in CodeB's field name.
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("scheduleAtUtc"),
        "{}",
        r.text
    );
    let soon = tomorrow_at_nine();
    let mut body = body;
    body["scheduleAtUtc"] = json!(soon);
    let r = codeb(w, "POST", "/api.ashx/v1/calls", &token, Some(&body));
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["callId"].as_str().unwrap().to_string();
    assert_eq!(get_call(w, &token, &id)["status"], "scheduled");
    let list = codeb(
        w,
        "GET",
        "/api.ashx/v1/calls?status=scheduled&limit=5&offset=0",
        &token,
        None,
    );
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(
        list.json["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["callId"] == id.as_str()),
        "{}",
        list.text
    );
    for _ in 0..2 {
        let h = codeb(
            w,
            "POST",
            &format!("/api.ashx/v1/calls/{id}/hangup"),
            &token,
            None,
        );
        assert_eq!(h.status, 200, "{}", h.text);
        assert_eq!(h.json["status"], "cancelled", "{}", h.text);
    }
    let (call, _) = poll_until_final(w, &token, &id);
    assert_eq!(call["status"], "cancelled");
}

fn a_busy_callee_ends_failed_final(w: &World) {
    let _busy = busy_callee(w);
    let body = json!({
        "phone": PHONE, "email": "ops@yourcompany.example",
        "systemPrompt": "Say hello.", "apiKey": AI_API_KEY,
    });
    // A native ak_ key works on the same paths.
    let r = codeb(w, "POST", "/api.ashx/v1/calls", &w.tenant.key, Some(&body));
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["callId"].as_str().unwrap().to_string();
    let (call, _) = poll_until_final(w, &w.tenant.key, &id);
    assert_eq!(call["status"], "ended-failed-final", "{call}");
    assert_eq!(call["transcriptPath"], Value::Null, "{call}");
    let finished = w
        .receiver
        .wait_for("outbound-ai.finished", &id, Duration::from_secs(30));
    assert_eq!(finished["answered"], 204, "{finished}");
}

fn documented_errors_in_codebs_shape(w: &World) {
    let token = token(w);
    let none = w
        .edge
        .request("GET", "/api.ashx/v1/calls", &[], None)
        .unwrap();
    assert_eq!(
        (none.status, none.json["error"].as_str()),
        (401, Some("unauthorized")),
        "{}",
        none.text
    );
    let r = codeb(w, "GET", "/api.ashx/v1/calls", "cbt_not-a-token", None);
    assert_eq!(r.status, 401, "{}", r.text);
    let r = codeb(
        w,
        "POST",
        "/api.ashx/v1/calls",
        &token,
        Some(&json!({"phone": PHONE})),
    );
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_request")),
        "{}",
        r.text
    );
    let r = codeb(
        w,
        "GET",
        "/api.ashx/v1/calls/oac-ffffffffffffffffffffff",
        &token,
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = codeb(w, "PUT", "/api.ashx/v1/calls", &token, None);
    assert_eq!(r.status, 405, "{}", r.text);
    // 409: a second call to a number while its first is scheduled.
    let soon = json!({"phone": "+4915157610777", "email": "ops@yourcompany.example",
        "systemPrompt": "Say hello.", "apiKey": AI_API_KEY, "scheduleAtUtc": tomorrow_at_nine()});
    let r = codeb(w, "POST", "/api.ashx/v1/calls", &token, Some(&soon));
    assert_eq!(r.status, 200, "{}", r.text);
    let first = r.json["callId"].as_str().unwrap().to_string();
    let r = codeb(w, "POST", "/api.ashx/v1/calls", &token, Some(&soon));
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (409, Some("call_in_progress")),
        "{}",
        r.text
    );
    codeb(
        w,
        "POST",
        &format!("/api.ashx/v1/calls/{first}/hangup"),
        &token,
        None,
    );
    // The token endpoint's OAuth errors: another grant, a host that serves no tenant,
    // and a user's failed logins spent (429 slow_down, with Retry-After).
    let form = |body: &str, host: Option<&str>| {
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(h) = host {
            headers.push(("host", h));
        }
        w.edge
            .request("POST", "/oidc.ashx/token", &headers, Some(body.as_bytes()))
            .unwrap()
    };
    let r = form("grant_type=client_credentials&scope=openid", None);
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("unsupported_grant_type")),
        "{}",
        r.text
    );
    let r = form(
        "grant_type=password&username=alice&password=x",
        Some("phone.nobody.example"),
    );
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_request")),
        "{}",
        r.text
    );
    w.edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/users", w.tenant.id),
            Some(&json!({"username": "mallory", "password": "mallory's password"})),
        )
        .expect(201);
    let mut last = None;
    for _ in 0..12 {
        last = Some(form(
            "grant_type=password&username=mallory&password=guess&scope=openid",
            None,
        ));
    }
    let r = last.unwrap();
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (429, Some("slow_down")),
        "{}",
        r.text
    );
    assert!(r.header("retry-after").is_some(), "{}", r.text);
    // API access off: 403; on again.
    let tp = format!("/admin/tenants/{}", w.tenant.id);
    w.edge
        .admin("PATCH", &tp, Some(&json!({"api_access": false})))
        .expect(200);
    let r = codeb(w, "GET", "/api.ashx/v1/calls", &token, None);
    w.edge
        .admin("PATCH", &tp, Some(&json!({"api_access": true})))
        .expect(200);
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (403, Some("forbidden")),
        "{}",
        r.text
    );
}

/// 09:00 UTC tomorrow, RFC 3339 (a time `scheduleAtUtc` accepts).
fn tomorrow_at_nine() -> String {
    let t = std::time::SystemTime::now() + Duration::from_secs(86_400);
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}T09:00:00Z")
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn main() -> std::process::ExitCode {
    run_suite(
        "codeb",
        || {
            require_sidecar_bin()?;
            let mut opts = EdgeOptions::fresh("codeb").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let smtp = SmtpSink::start(&dir)?;
            opts.vars.extend([
                (
                    "SMTP_URL".to_string(),
                    format!("smtp://127.0.0.1:{}", smtp.port),
                ),
                ("MAIL_FROM".to_string(), "calls@voxline.test".to_string()),
            ]);
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("codeb");
            let tp = format!("/admin/tenants/{}", tenant.id);
            edge.admin(
                "PATCH",
                &format!("{tp}/agents/{}", tenant.agent_id),
                Some(&json!({"default_engine": "local"})),
            )
            .expect(200);
            // The tenant's CodeB host: where its users log in.
            let host = edge.base.trim_start_matches("http://").to_string();
            edge.admin("PATCH", &tp, Some(&json!({"codeb_host": host})))
                .expect(200);
            edge.admin(
                "POST",
                &format!("{tp}/users"),
                Some(&json!({"username": USER, "password": PASSWORD})),
            )
            .expect(201);
            edge.admin(
                "PUT",
                &format!("{tp}/prompts/reminder"),
                Some(&json!({"text": "You are calling to remind the callee of an appointment."})),
            )
            .expect(200);
            let trunk_port = free_sip_port();
            let sidecar = start_sip_sidecar(&edge, &dir, "codeb-1", trunk_port, "")?;
            // The subscription: a webhook endpoint in CodeB's format, its secret
            // handed to the document's receiver.
            let receiver_port = free_tcp_port();
            let url = Receiver::url_on(receiver_port);
            let created = edge
                .admin(
                    "POST",
                    &format!("{tp}/webhooks"),
                    Some(&json!({"url": url, "format": "codeb"})),
                )
                .expect(201)
                .json;
            let secret = created["secret"].as_str().unwrap_or_default().to_string();
            let receiver = Receiver::start(&dir, receiver_port, &secret)?;
            Ok(World {
                edge,
                tenant,
                dir,
                trunk_port,
                _sidecar: sidecar,
                receiver,
                smtp,
            })
        },
        &[
            (
                "the_documents_four_steps_place_and_report_a_real_call",
                the_documents_four_steps_place_and_report_a_real_call,
            ),
            (
                "a_wrong_password_is_refused_as_oauth_says",
                a_wrong_password_is_refused_as_oauth_says,
            ),
            (
                "scheduled_calls_are_listed_and_cancelled",
                scheduled_calls_are_listed_and_cancelled,
            ),
            (
                "a_busy_callee_ends_failed_final",
                a_busy_callee_ends_failed_final,
            ),
            (
                "documented_errors_in_codebs_shape",
                documented_errors_in_codebs_shape,
            ),
        ],
    )
}
