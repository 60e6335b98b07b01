//! End-to-end: the seed APIs served as dialects (issue 13), driven exactly as
//! their documents' own samples drive them, against real `wrangler dev` and a
//! real sidecar call to a real phone (baresip) on 127.0.0.1:
//! - VoiceB: the document's Node.js sample (axios) and Python sample
//!   (requests), files in `tests/dialects/`, run as written with `API_KEY`,
//!   `SECRET_KEY` and `ENDPOINT` set; its error table reached with them.
//! - BuildVoiceAI and Calldock: their documents' `curl` commands, run by the
//!   shell with only the host, key and agent filled in.
//!
//! - Their webhooks (BuildVoiceAI's `call.completed`, Calldock's `post_call`)
//!   checked by `tests/dialects/receiver.js` as the documents tell readers to:
//!   Calldock's Node verifier verbatim, BuildVoiceAI's HMAC of the raw body
//!   with the API key.
//!
//! Credentials come from the admin API (`/admin/tenants/{t}/dialect-keys`).
//! What a request cannot reach here is covered by the edge's native tests
//! (`api::tests::dialects`): VoiceB's `ctc:002` and `ctc:008` (storage and
//! sealing failures).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use voxline_e2e::*;
use voxline_testkit::*;

const SCRIPT: &str = "You call customers back about their request.
[script]
greeting: Hello, you asked us to call you back. Is now a good time?
yes|yeah|sure|i can -> Great, a colleague will follow up by email. Goodbye! [end]
no|can't|cannot -> No problem, we will call you another time. Goodbye! [end]
* -> Sorry, I didn't catch that. Is now a good time?
goodbye: Thank you, goodbye.
[/script]";

/// The number in VoiceB's samples, BuildVoiceAI's and Calldock's curl commands.
const VOICEB_PHONE: &str = "+34612345678";
const BUILDVOICEAI_PHONE: &str = "+15551234567";
const CALLDOCK_PHONE: &str = "+1234567890";

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    /// The sidecar's one trunk: where each case's phone listens.
    trunk_port: u16,
    _sidecar: ChildGuard,
    /// `tests/dialects/receiver.js`: checks deliveries as the documents say.
    receiver: Receiver,
}

/// The Node receiver of dialect webhooks, its config (secrets per name) and log.
struct Receiver {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    _child: ChildGuard,
}

impl Receiver {
    fn start(dir: &std::path::Path) -> Result<Receiver, String> {
        let port = free_tcp_port();
        let config = dir.join("dialect-receiver.json");
        let log = dir.join("dialect-received.jsonl");
        std::fs::write(&config, "{}").map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&log);
        let child = Command::new("node")
            .arg(samples().join("receiver.js"))
            .arg(port.to_string())
            .arg(&config)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("node: {e}"))?;
        let child = ChildGuard(child);
        if !wait_tcp(port, Duration::from_secs(10)) {
            return Err("the dialect receiver did not start".into());
        }
        Ok(Receiver {
            port,
            config,
            log,
            _child: child,
        })
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!("http://127.0.0.1:{}/{kind}/{name}", self.port)
    }

    fn set_secret(&self, name: &str, secret: &str) {
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap();
        cfg[name] = json!({"secret": secret});
        std::fs::write(&self.config, cfg.to_string()).unwrap();
    }

    /// Waits until `name` got a delivery for `call_id`; all of its deliveries so far.
    fn wait_for(&self, name: &str, call_id: &str, within: Duration) -> Vec<Value> {
        let until = std::time::Instant::now() + within;
        loop {
            let got: Vec<Value> = std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|r| r["name"] == name)
                .collect();
            if got
                .iter()
                .any(|r| r["body"].as_str().is_some_and(|b| b.contains(call_id)))
            {
                return got;
            }
            assert!(
                std::time::Instant::now() < until,
                "{name}: no delivery for {call_id}; got {got:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A webhook endpoint in a dialect's format; returns its secret.
fn dialect_endpoint(w: &World, format: &str, name: &str, agent_id: Option<&str>) -> String {
    let mut body = json!({"url": w.receiver.url(format, name), "format": format});
    if let Some(a) = agent_id {
        body["agent_id"] = json!(a);
    }
    let created = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/webhooks", w.tenant.id),
            Some(&body),
        )
        .expect(201)
        .json;
    assert_eq!(created["format"], format, "{created}");
    str_of(&created["secret"])
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 12)
    }
}

fn mint(w: &World, body: Value) -> Value {
    w.edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/dialect-keys", w.tenant.id),
            Some(&body),
        )
        .expect(201)
        .json
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// A phone answering `number` on the trunk port that says `words` once.
fn phone(w: &World, name: &str, number: &str, words: &str) -> ChildGuard {
    let mut pcm = vec![0i16; 8000 * 6];
    pcm.extend(flite_8k(&w.dir, "slt", words).unwrap());
    pcm.extend(vec![0i16; 8000 * 8]);
    let wav = w.dir.join(format!("{name}.wav"));
    write_wav(&wav, 8000, &pcm).unwrap();
    start_baresip(&w.dir, name, number, w.trunk_port, &wav, "PCMU", 60).unwrap()
}

fn samples() -> PathBuf {
    repo_root().join("tests/dialects")
}

fn node_sample(w: &World, api_key: &str, secret: &str) -> String {
    run_sample(
        Command::new("node")
            .arg(samples().join("voiceb_sample.js"))
            .env("API_KEY", api_key)
            .env("SECRET_KEY", secret)
            .env("ENDPOINT", format!("{}/api/click-to-call", w.edge.base))
            .env("NODE_PATH", repo_root().join("node_modules")),
        "VoiceB Node sample",
    )
}

fn python_sample(w: &World, api_key: &str, secret: &str) -> String {
    run_sample(
        Command::new(python())
            .arg(samples().join("voiceb_sample.py"))
            .env("API_KEY", api_key)
            .env("SECRET_KEY", secret)
            .env("ENDPOINT", format!("{}/api/click-to-call", w.edge.base)),
        "VoiceB Python sample",
    )
}

/// The document's curl command, filled in, run by the shell as a reader would
/// paste it. The web page lost the command's line breaks (` \ -H` is a
/// backslash-newline continuation in the original); they are put back.
fn curl(command: &str, what: &str) -> String {
    let command = command.replace(" \\ ", " \\\n");
    run_sample(
        Command::new("bash").args(["-c", &format!("{command} -s -w '\\nHTTP %{{http_code}}'")]),
        what,
    )
}

/// The first `call_<hex>` id in a program's output (not the `call_id` key).
fn call_id_in(output: &str) -> String {
    output
        .match_indices("call_")
        .map(|(i, _)| {
            output[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .find(|id| id.len() > 10 && id[5..].chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no call id in: {output}"))
}

/// Waits for the call to end; asserts it was a whole conversation.
fn completed(w: &World, id: &str, number: &str) -> Value {
    let call = w.edge.wait_call_status(
        &w.tenant.key,
        id,
        &["completed", "failed", "busy", "no_answer", "cancelled"],
        Duration::from_secs(90),
    );
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["phone"], number, "{call}");
    assert_eq!(call["agent_id"], w.tenant.agent_id.as_str(), "{call}");
    let t = w.edge.transcript(&w.tenant.key, id);
    let roles: Vec<&str> = t["turns"]
        .as_array()
        .map(|turns| turns.iter().filter_map(|x| x["role"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        roles.contains(&"agent") && roles.contains(&"callee"),
        "a conversation, both sides: {t}"
    );
    call
}

fn voiceb_credential(w: &World) -> (String, String, String) {
    let cred = mint(
        w,
        json!({"dialect": "voiceb", "agent_id": w.tenant.agent_id, "name": "website"}),
    );
    assert_eq!(cred["dialect"], "voiceb");
    (
        str_of(&cred["id"]),
        str_of(&cred["token"]),
        str_of(&cred["secret"]),
    )
}

fn voiceb_node_sample_places_a_real_call(w: &World) {
    let (_, token, secret) = voiceb_credential(w);
    let _phone = phone(w, "vb-node", VOICEB_PHONE, "Yes, sure.");
    let out = node_sample(w, &token, &secret);
    assert!(
        out.contains("Response: {")
            && out.contains("success: true")
            && out.contains("status: 'queued'"),
        "{out}"
    );
    completed(w, &call_id_in(&out), VOICEB_PHONE);
}

fn voiceb_python_sample_places_a_real_call(w: &World) {
    let (_, token, secret) = voiceb_credential(w);
    let _phone = phone(w, "vb-python", VOICEB_PHONE, "Yes, I can.");
    let out = python_sample(w, &token, &secret);
    assert!(
        out.contains("Response: {'success': True") && out.contains("'status': 'queued'"),
        "{out}"
    );
    completed(w, &call_id_in(&out), VOICEB_PHONE);
}

/// The document's error table, reached with its own samples where they can
/// reach it (they always send both headers) and by hand for `ctc:001`.
fn voiceb_error_table_through_the_samples(w: &World) {
    let (kid, token, secret) = voiceb_credential(w);
    // ctc:006: signed with another secret.
    let out = node_sample(w, &token, "not-the-secret");
    assert!(
        out.contains("code: 'ctc:006'") && out.contains("Invalid signature"),
        "{out}"
    );
    let out = python_sample(w, &token, "not-the-secret");
    assert!(out.contains("'code': 'ctc:006'"), "{out}");
    // ctc:003: an unknown token.
    let out = node_sample(w, "vbk_unknown", &secret);
    assert!(
        out.contains("code: 'ctc:003'") && out.contains("Invalid API key"),
        "{out}"
    );
    // ctc:001: a header missing.
    let r = w
        .edge
        .request(
            "POST",
            "/api/click-to-call",
            &[
                ("api-key", token.as_str()),
                ("content-type", "application/json"),
            ],
            Some(br#"{"phone":"+34612345678"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.text, r#"{"code":"ctc:001","message":"Missing headers"}"#);
    // ctc:004: the agent disabled, then enabled again.
    let agent = format!(
        "/admin/tenants/{}/agents/{}",
        w.tenant.id, w.tenant.agent_id
    );
    w.edge
        .admin("PATCH", &agent, Some(&json!({"enabled": false})))
        .expect(200);
    let out = python_sample(w, &token, &secret);
    w.edge
        .admin("PATCH", &agent, Some(&json!({"enabled": true})))
        .expect(200);
    assert!(out.contains("'code': 'ctc:004'"), "{out}");
    // ctc:007: the same request again while its call is live.
    let _phone = phone(
        w,
        "vb-twice",
        VOICEB_PHONE,
        "Hold on, let me check my calendar please.",
    );
    let first = node_sample(w, &token, &secret);
    let id = call_id_in(&first);
    let again = node_sample(w, &token, &secret);
    assert!(
        again.contains("code: 'ctc:007'") && again.contains("Call already in progress"),
        "{again}"
    );
    w.edge
        .call(
            "POST",
            &format!("/v1/calls/{id}/hangup"),
            &w.tenant.key,
            None,
        )
        .expect(202);
    w.edge.wait_call_status(
        &w.tenant.key,
        &id,
        &["cancelled", "completed", "failed", "no_answer"],
        Duration::from_secs(60),
    );
    // ctc:005: the credential's agent was deleted.
    let gone = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/agents", w.tenant.id),
            Some(&json!({"name": "temporary", "default": false})),
        )
        .expect(201)
        .json;
    let gone_id = str_of(&gone["id"]);
    let cred = mint(w, json!({"dialect": "voiceb", "agent_id": gone_id}));
    w.edge
        .admin(
            "DELETE",
            &format!("/admin/tenants/{}/agents/{gone_id}", w.tenant.id),
            None,
        )
        .expect(200);
    let out = python_sample(w, &str_of(&cred["token"]), &str_of(&cred["secret"]));
    assert!(
        out.contains("'code': 'ctc:005'") && out.contains("Agent not configured"),
        "{out}"
    );
    // Revoked: ctc:003 at once.
    w.edge
        .admin(
            "DELETE",
            &format!("/admin/tenants/{}/dialect-keys/{kid}", w.tenant.id),
            None,
        )
        .expect(200);
    let out = python_sample(w, &token, &secret);
    assert!(out.contains("'code': 'ctc:003'"), "{out}");
}

fn buildvoiceai_curl_places_a_real_call(w: &World) {
    let cred = mint(w, json!({"dialect": "buildvoiceai"}));
    let key = str_of(&cred["token"]);
    // The integration page's Webhook URL; verified with the API key, as the document says.
    dialect_endpoint(w, "buildvoiceai", "bvai", None);
    w.receiver.set_secret("bvai", &key);
    let _phone = phone(w, "bvai", BUILDVOICEAI_PHONE, "Yes, sure.");
    // The document's command; agent_id is the one the admin API gave.
    let command = format!(
        r#"curl -X POST {}/api/trigger-call \ -H "Authorization: Bearer {key}" \ -H "Content-Type: application/json" \ -d '{{ "phone": "+15551234567", "name": "Jane Smith", "email": "jane@example.com", "agent_id": "{}" }}'"#,
        w.edge.base, w.tenant.agent_id
    );
    let out = curl(&command, "BuildVoiceAI curl");
    assert!(
        out.contains(r#"{"success":true,"call_id":"call_"#) && out.contains("HTTP 200"),
        "{out}"
    );
    let id = call_id_in(&out);
    let call = completed(w, &id, BUILDVOICEAI_PHONE);
    assert_eq!(call["name"], "Jane Smith");
    // One call.completed, its X-Signature verified with the key, the document's fields.
    let got = w.receiver.wait_for("bvai", &id, Duration::from_secs(60));
    let mine: Vec<&Value> = got
        .iter()
        .filter(|r| r["body"].as_str().is_some_and(|b| b.contains(&id)))
        .collect();
    assert_eq!(mine.len(), 1, "one delivery per call: {mine:#?}");
    assert_eq!(mine[0]["verified"], true, "{}", mine[0]);
    let raw = mine[0]["body"].as_str().unwrap();
    let body: Value = serde_json::from_str(raw).unwrap();
    let fields = [
        "event",
        "call_id",
        "agent_id",
        "agent_name",
        "direction",
        "phone_number",
        "duration_seconds",
        "started_at",
        "ended_at",
        "sentiment",
        "summary",
        "transcript",
        "metadata",
    ];
    assert_eq!(body.as_object().unwrap().len(), fields.len(), "{raw}");
    let at: Vec<usize> = fields
        .iter()
        .map(|f| {
            raw.find(&format!("\"{f}\":"))
                .unwrap_or_else(|| panic!("no {f}: {raw}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|p| p[0] < p[1]),
        "the document's order: {raw}"
    );
    assert_eq!(body["event"], "call.completed");
    assert_eq!(body["phone_number"], BUILDVOICEAI_PHONE);
    let turns = body["transcript"].as_array().unwrap();
    assert!(
        turns.iter().any(|t| t["role"] == "agent") && turns.iter().any(|t| t["role"] == "human"),
        "{body}"
    );

    // 403: a wrong key, and API access switched off (the native key too).
    let wrong = command.replace(&key, "bvai_wrong");
    let out = curl(&wrong, "BuildVoiceAI curl, wrong key");
    assert!(
        out.contains(r#""success":false"#) && out.contains("HTTP 403"),
        "{out}"
    );
    let tenant = format!("/admin/tenants/{}", w.tenant.id);
    w.edge
        .admin("PATCH", &tenant, Some(&json!({"api_access": false})))
        .expect(200);
    let out = curl(&command, "BuildVoiceAI curl, API access off");
    let native = w.edge.call("GET", "/v1/calls", &w.tenant.key, None);
    w.edge
        .admin("PATCH", &tenant, Some(&json!({"api_access": true})))
        .expect(200);
    assert!(out.contains("HTTP 403"), "{out}");
    assert_eq!(native.expect_error(403, "api_access_disabled"), None);
    // 400: not E.164, in the document's {success, error} shape.
    let out = curl(
        &command.replace("+15551234567", "555-1234"),
        "BuildVoiceAI curl, bad phone",
    );
    assert!(out.contains("E.164") && out.contains("HTTP 400"), "{out}");
}

fn calldock_curl_places_a_real_call_and_limits_the_number(w: &World) {
    let cred = mint(
        w,
        json!({"dialect": "calldock", "agent_id": w.tenant.agent_id}),
    );
    let key = str_of(&cred["token"]);
    assert!(key.starts_with("ck_live_") && key.len() == 40, "{key}");
    // The agent's Post-Call Webhook URL; its secret is the "Webhook Secret".
    let secret = dialect_endpoint(w, "calldock", "calldock", Some(&w.tenant.agent_id));
    w.receiver.set_secret("calldock", &secret);
    let _phone = phone(w, "calldock", CALLDOCK_PHONE, "Yes, sure.");
    let command = format!(
        r#"curl -X POST {}/v1/make-call \ -H "X-API-Key: {key}" \ -H "X-Agent-ID: {}" \ -H "Content-Type: application/json" \ -d '{{ "name": "John Doe", "email": "john@example.com", "phone": "+1234567890", "metadata": {{ "source": "website", "campaign": "summer-promo" }} }}'"#,
        w.edge.base, w.tenant.agent_id
    );
    let out = curl(&command, "Calldock curl");
    assert!(
        out.contains(r#"{"success":true,"data":{"callId":"call_"#)
            && out.contains(r#""status":"initiated""#)
            && out.contains("HTTP 200"),
        "{out}"
    );
    let id = call_id_in(&out);
    let call = completed(w, &id, CALLDOCK_PHONE);
    assert_eq!(
        call["metadata"],
        json!({"source": "website", "campaign": "summer-promo"})
    );
    // One post_call, verified by the document's own Node verifier (which hashes
    // JSON.stringify of the parsed body: our bytes are exactly that).
    let got = w
        .receiver
        .wait_for("calldock", &id, Duration::from_secs(60));
    let mine: Vec<&Value> = got
        .iter()
        .filter(|r| r["body"].as_str().is_some_and(|b| b.contains(&id)))
        .collect();
    assert_eq!(mine.len(), 1, "one delivery per call: {mine:#?}");
    assert_eq!(mine[0]["verified"], true, "{}", mine[0]);
    assert_eq!(mine[0]["headers"]["x-calldock-event"], "post_call");
    let body: Value = serde_json::from_str(mine[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["webhook_type"], "post_call");
    assert_eq!(body["call_id"], id.as_str());
    assert_eq!(body["status"], "done");
    assert_eq!(body["lead_data"]["name"], "John Doe");
    assert!(
        body["metadata"]["transcript_turns"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    // recording_url: an absolute link that works without credentials once the
    // sidecar has uploaded the stereo recording (Calldock calls record).
    let url = str_of(&body["recording_url"]);
    let path = url
        .strip_prefix(&w.edge.base)
        .unwrap_or_else(|| panic!("{url} is not under {}", w.edge.base));
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let wav = loop {
        let r = w.edge.request("GET", path, &[], None).unwrap();
        if r.status == 200 {
            break r.bytes;
        }
        assert_eq!(r.status, 404, "{}", r.text);
        assert!(
            std::time::Instant::now() < until,
            "the recording never came: {}",
            r.text
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(wav.starts_with(b"RIFF") && wav.len() > 44, "a WAV file");
    let forged = path.replace("signature=", "signature=0");
    assert_eq!(
        w.edge.request("GET", &forged, &[], None).unwrap().status,
        403
    );

    // 401: a wrong key, or the key with another agent's id.
    let out = curl(
        &command.replace(&key, "ck_live_0000"),
        "Calldock curl, wrong key",
    );
    assert!(
        out.contains(r#""code":"unauthorized""#) && out.contains("HTTP 401"),
        "{out}"
    );
    // 400: no phone.
    let out = curl(
        &command.replace(r#""phone": "+1234567890", "#, ""),
        "Calldock curl, no phone",
    );
    assert!(
        out.contains(r#""code":"bad_request""#) && out.contains("HTTP 400"),
        "{out}"
    );
    // 429: the agent's per-number limit (one call per hour to a number).
    w.edge
        .admin(
            "PATCH",
            &format!(
                "/admin/tenants/{}/agents/{}",
                w.tenant.id, w.tenant.agent_id
            ),
            Some(&json!({"per_number_limit": {"limit": 1, "window_seconds": 3600}})),
        )
        .expect(200);
    let out = curl(&command, "Calldock curl, the number again");
    assert!(
        out.contains(r#""code":"rate_limited""#) && out.contains("HTTP 429"),
        "{out}"
    );
}

fn dialect_credentials_are_listed_without_secrets(w: &World) {
    let list = w
        .edge
        .admin(
            "GET",
            &format!("/admin/tenants/{}/dialect-keys", w.tenant.id),
            None,
        )
        .expect(200)
        .json;
    let data = list["data"].as_array().unwrap();
    assert!(data.len() >= 4, "{list}");
    for d in data {
        assert!(d.get("token").is_none() && d.get("secret").is_none(), "{d}");
    }
    let r = w.edge.admin(
        "DELETE",
        &format!(
            "/admin/tenants/{}/dialect-keys/dky_00000000000000000000",
            w.tenant.id
        ),
        None,
    );
    assert_eq!(r.expect_error(404, "dialect_key_not_found"), None);
}

fn main() -> std::process::ExitCode {
    run_suite(
        "dialects",
        || {
            require_sidecar_bin()?;
            let opts = EdgeOptions::fresh("dialects").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("dialects");
            edge.admin(
                "PATCH",
                &format!("/admin/tenants/{}/agents/{}", tenant.id, tenant.agent_id),
                Some(&json!({"default_engine": "local", "system_prompt": SCRIPT})),
            )
            .expect(200);
            let trunk_port = free_sip_port();
            let sidecar = start_sip_sidecar(&edge, &dir, "dialects-1", trunk_port, "")?;
            let receiver = Receiver::start(&dir)?;
            Ok(World {
                edge,
                tenant,
                dir,
                trunk_port,
                _sidecar: sidecar,
                receiver,
            })
        },
        &[
            (
                "voiceb_node_sample_places_a_real_call",
                voiceb_node_sample_places_a_real_call,
            ),
            (
                "voiceb_python_sample_places_a_real_call",
                voiceb_python_sample_places_a_real_call,
            ),
            (
                "voiceb_error_table_through_the_samples",
                voiceb_error_table_through_the_samples,
            ),
            (
                "buildvoiceai_curl_places_a_real_call",
                buildvoiceai_curl_places_a_real_call,
            ),
            (
                "calldock_curl_places_a_real_call_and_limits_the_number",
                calldock_curl_places_a_real_call_and_limits_the_number,
            ),
            (
                "dialect_credentials_are_listed_without_secrets",
                dialect_credentials_are_listed_without_secrets,
            ),
        ],
    )
}
