//! End-to-end: the Voice360 v3 API (issue 15) driven by its document's own
//! client code (`tests/voice360/`, run with only the base URL and the key
//! filled in) against real `wrangler dev`, a real sidecar and a real phone
//! (baresip) on 127.0.0.1:
//! - The Python client class and its `main()` as written: availability,
//!   queue availability, an outbound call from an AI agent's extension that
//!   a phone answers, a text.
//! - The JavaScript client class and its `main()` as written.
//! - The fetch examples: the account's numbers (developer key), the active
//!   ones, the user's numbers and a text (user key).
//! - The call's webhooks (`USER_DIAL`, `USER_HANGUP`, `CALL_ENDED`,
//!   `TRANSCRIPTION_FINISHED`), each to its own endpoint, verified by the
//!   document's Node (Express) and Python (Flask) verifiers verbatim.
//! - The public view without a key, both key kinds refused where the badges
//!   say, the envelope and error codes, the per-address limit.
//! - Texts to and from a sipp trunk (SIP MESSAGE): `SMS_SENT` and
//!   `SMS_RECEIVED`, verified the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::*;

/// The account id in the document's samples.
const ACCOUNT: &str = "61";
/// The samples' destination and caller ID.
const TO: &str = "+15551234567";
const OUR_NUMBER: &str = "+15559876543";

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    trunk_port: u16,
    sip_port: u16,
    _sidecar: ChildGuard,
    dev_key: String,
    user_key: String,
    receivers: Vec<(String, Receiver)>,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 12)
    }
}

fn samples() -> PathBuf {
    repo_root().join("tests/voice360")
}

/// One of the document's verifiers, listening for one event type.
struct Receiver(SampleReceiver);

impl Receiver {
    /// `node`: the Express sample, else the Flask one.
    fn start(
        dir: &Path,
        event: &str,
        node: bool,
        secret: &str,
    ) -> Result<(String, Receiver), String> {
        let port = free_tcp_port();
        let mut cmd = if node {
            let mut c = Command::new("node");
            c.arg(samples().join("receiver.js"))
                .env("NODE_PATH", repo_root().join("node_modules"));
            c
        } else {
            let mut c = Command::new(python());
            c.arg(samples().join("receiver.py"));
            c
        };
        cmd.env("VOICE360_WEBHOOK_SECRET", secret);
        let receiver = SampleReceiver::start(cmd, dir, &format!("received-{event}"), port)?;
        let url = format!("http://127.0.0.1:{port}/voice360-webhook");
        Ok((url, Receiver(receiver)))
    }

    /// Waits for a delivery whose body contains `needle`; returns (answer, body).
    fn wait_for(&self, needle: &str, within: Duration) -> (u64, Value) {
        let line = self.0.wait_for(needle, |b| b.contains(needle), within);
        let body = serde_json::from_str(line["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
        (line["answered"].as_u64().unwrap_or(0), body)
    }
}

impl World {
    fn receiver(&self, event: &str) -> &Receiver {
        &self
            .receivers
            .iter()
            .find(|(e, _)| e == event)
            .unwrap_or_else(|| panic!("no {event} receiver"))
            .1
    }

    /// A copy of a sample with the base URL and keys filled in: the only
    /// edits the document asks of a reader.
    fn filled(&self, name: &str, key: &str) -> PathBuf {
        let text = std::fs::read_to_string(samples().join(name)).unwrap();
        let path = self.dir.join(name);
        std::fs::write(
            &path,
            text.replace("https://api.voice360.app", &self.edge.base)
                .replace("v360_dev_your_developer_key", &self.dev_key)
                .replace("your_api_key", key),
        )
        .unwrap();
        path
    }

    fn v360(&self, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> Resp {
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("cf-connecting-ip", "203.0.113.5")];
        if let Some(k) = key {
            headers.push(("x-api-key", k));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.edge
            .request(
                method,
                &format!("/v3/voice/{ACCOUNT}{path}"),
                &headers,
                body.as_deref().map(str::as_bytes),
            )
            .unwrap()
    }
}

/// A phone answering the samples' number on the trunk port that says `words`.
fn phone(w: &World, name: &str, words: &str) -> ChildGuard {
    let mut pcm = vec![0i16; 8000 * 3];
    pcm.extend(flite_8k(&w.dir, "slt", words).unwrap());
    pcm.extend(vec![0i16; 8000 * 6]);
    let wav = w.dir.join(format!("{name}.wav"));
    write_wav(&wav, 8000, &pcm).unwrap();
    start_baresip(&w.dir, name, TO, w.trunk_port, &wav, "PCMU", 40).unwrap()
}

/// Waits until the tenant has no call on the line (the next sample calls the same number).
fn wait_calls_ended(w: &World) {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let r = w.edge.call(
            "GET",
            "/v1/calls?status=queued,dialing,ringing,in_progress",
            &w.tenant.key,
            None,
        );
        if r.json["data"].as_array().is_some_and(|d| d.is_empty()) {
            return;
        }
        assert!(Instant::now() < until, "calls still live: {}", r.text);
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn sipp(w: &World, scenario: &str, extra: &[&str], name: &str) -> ChildGuard {
    let log = std::fs::File::create(w.dir.join(format!("sipp-{name}.log"))).unwrap();
    let child = Command::new(SIPP.require())
        .args(["-sf", samples().join(scenario).to_str().unwrap()])
        .args(extra)
        .args(["-m", "1", "-nostdin", "-timeout", "30s"])
        .current_dir(&w.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sipp (Debian package sip-tester)");
    ChildGuard(child)
}

// ---------------------------------------------------------------- cases

fn the_python_client_runs_as_written_and_its_call_is_reported(w: &World) {
    let _phone = phone(w, "v360-py", "Yes, I will be there at nine.");
    let script = w.filled("client.py", &w.dev_key);
    let out = run_sample(Command::new(python()).arg(script), "Voice360 Python client");
    // The AI agent at 1001 is online; its queue has an agent available.
    assert!(out.contains("Online users: 1"), "{out}");
    assert!(out.contains("Queues with agents: 1"), "{out}");
    assert!(out.contains("  - Sales Queue: 1 agents online"), "{out}");
    let call_id = out
        .lines()
        .find_map(|l| l.strip_prefix("Call initiated: "))
        .unwrap_or_else(|| panic!("no call: {out}"))
        .trim()
        .to_string();
    assert!(call_id.starts_with("call_"), "{out}");
    assert!(out.contains("SMS sent: SMS sent successfully"), "{out}");
    // The call, on the native record: the agent's, from the sample's caller ID.
    let call = w
        .edge
        .call("GET", &format!("/v1/calls/{call_id}"), &w.tenant.key, None)
        .expect(200);
    assert_eq!(call.json["agent_id"], w.tenant.agent_id.as_str());
    assert!(call.json["record"].as_bool().unwrap(), "recording: True");
    // Its webhooks, each verified by the document's verifiers (200, not 401).
    let (answered, dial) = w
        .receiver("USER_DIAL")
        .wait_for(&call_id, Duration::from_secs(30));
    assert_eq!(answered, 200, "{dial}");
    assert_eq!(dial["account_id"], ACCOUNT);
    assert_eq!(dial["metadata"]["dialed_number"], TO);
    let (answered, ended) = w
        .receiver("CALL_ENDED")
        .wait_for(&call_id, Duration::from_secs(90));
    assert_eq!(answered, 200, "{ended}");
    assert_eq!(ended["metadata"]["caller_id_number"], OUR_NUMBER);
    assert_eq!(ended["metadata"]["dnis"], TO);
    assert!(
        ended["metadata"]["duration"].as_u64().unwrap() > 0,
        "{ended}"
    );
    let (answered, hangup) = w
        .receiver("USER_HANGUP")
        .wait_for(&call_id, Duration::from_secs(30));
    assert_eq!(answered, 200, "{hangup}");
    let (answered, t) = w
        .receiver("TRANSCRIPTION_FINISHED")
        .wait_for(&call_id, Duration::from_secs(30));
    assert_eq!(answered, 200, "{t}");
    assert_eq!(t["metadata"]["success"], true, "{t}");
    let analytics: Value =
        serde_json::from_str(t["metadata"]["transcription"].as_str().unwrap()).unwrap();
    assert_eq!(analytics["JobStatus"], "COMPLETED");
    assert!(
        analytics["Transcript"]
            .as_array()
            .is_some_and(|turns| turns.iter().any(|x| x["ParticipantRole"] == "CUSTOMER")),
        "{analytics}"
    );
    wait_calls_ended(w);
}

fn the_javascript_client_runs_as_written(w: &World) {
    let _phone = phone(w, "v360-js", "Sure, thank you.");
    let script = w.filled("client.js", &w.dev_key);
    let out = run_sample(
        Command::new("node").arg(script),
        "Voice360 JavaScript client",
    );
    assert!(out.contains("1 users online"), "{out}");
    assert!(out.contains("1 queues have agents available"), "{out}");
    assert!(out.contains("Call initiated: call_"), "{out}");
    assert!(!out.contains("API Error"), "{out}");
    wait_calls_ended(w);
}

fn the_fetch_examples_run_with_both_key_kinds(w: &World) {
    let run = |example: &str, key: &str| {
        let script = w.filled("snippets.js", key);
        run_sample(Command::new("node").arg(script).arg(example), example)
    };
    let all = run("getAccountNumbers", &w.user_key);
    assert!(
        all.contains("Account numbers:")
            && all.contains(OUR_NUMBER)
            && all.contains("+15551112222"),
        "{all}"
    );
    let active = run("getActiveNumbers", &w.user_key);
    assert!(
        active.contains(OUR_NUMBER) && !active.contains("+15551112222"),
        "{active}"
    );
    let mine = run("getUserNumbers", &w.user_key);
    assert!(
        mine.contains("My phone numbers:") && mine.contains(OUR_NUMBER),
        "{mine}"
    );
    assert!(!mine.contains("+15551112222"), "{mine}");
    let sms = run("sendSMS", &w.user_key);
    assert!(sms.contains("SMS sent successfully"), "{sms}");
}

fn public_view_keys_envelope_and_errors(w: &World) {
    // Public: online/offline only, no channels; the address's limit.
    let r = w.v360("GET", "/availability", None, None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["error"], false);
    assert!(r.json["result"][0].get("channels").is_none(), "{}", r.text);
    assert_eq!(header(&r, "x-ratelimit-limit"), Some("100"));
    let keyed = w.v360("GET", "/availability", Some(&w.dev_key), None);
    assert!(
        keyed.json["result"][0]["channels"].is_array(),
        "{}",
        keyed.text
    );
    assert_eq!(header(&keyed, "x-ratelimit-limit"), Some("1000"));
    let code = |r: &Resp| {
        (
            r.status,
            r.json["error_code"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        code(&w.v360("GET", "/numbers", None, None)),
        (401, "AUTH_REQUIRED".into())
    );
    let wrong_kind = w.v360("GET", "/numbers", Some(&w.user_key), None);
    assert_eq!(code(&wrong_kind), (403, "AUTH_INVALID".into()));
    assert_eq!(
        w.v360("GET", "/user/profile", Some(&w.dev_key), None)
            .status,
        403
    );
    let bad = w.v360("GET", "/numbers", Some("v360_dev_nope_nope"), None);
    assert_eq!(code(&bad), (403, "AUTH_INVALID_KEY".into()));
    assert_eq!(bad.json["result"], Value::Null);
    assert!(bad.json["timestamp"].is_string());
    let profile = w.v360("GET", "/user/profile", Some(&w.user_key), None);
    assert_eq!(
        profile.json["result"]["presence_id"], "1002",
        "{}",
        profile.text
    );
    assert_eq!(
        code(&w.v360("GET", "/queues/999999", Some(&w.dev_key), None)),
        (404, "NOT_FOUND".into())
    );
    let bad_body = w.v360(
        "POST",
        "/call/outbound",
        Some(&w.dev_key),
        Some(&json!({"from": "x", "to": TO})),
    );
    assert_eq!(code(&bad_body), (400, "BAD_REQUEST".into()));
    assert_eq!(bad_body.json["details"]["field"], "from");
    // 100 a minute per address without a key (one used above).
    let mut last = None;
    for _ in 0..100 {
        let r = w.v360("GET", "/queues", None, None);
        if r.status == 429 {
            last = Some(r);
            break;
        }
    }
    let limited = last.expect("the 101st public request is refused");
    assert_eq!(code(&limited), (429, "RATE_LIMITED".into()));
    assert!(header(&limited, "retry-after").is_some());
}

fn texts_go_to_and_come_from_a_sipp_trunk(w: &World) {
    // Out: sipp is the trunk and accepts the MESSAGE; SMS_SENT follows.
    let trunk = sipp(
        w,
        "uas_message.xml",
        &["-i", "127.0.0.1", "-p", &w.trunk_port.to_string()],
        "sms-out",
    );
    let r = w.v360(
        "POST",
        "/sms/send",
        Some(&w.dev_key),
        Some(&json!({"from": OUR_NUMBER, "to": TO, "message": "Your table is ready."})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let message_id = r.json["result"]["message_id"].as_str().unwrap().to_string();
    let (answered, sent) = w
        .receiver("SMS_SENT")
        .wait_for("Your table is ready.", Duration::from_secs(30));
    assert_eq!(answered, 200, "{sent}");
    assert_eq!(sent["metadata"]["to_number"], json!([TO]), "{sent}");
    drop(trunk);
    let _ = message_id;
    // In: sipp sends a MESSAGE from the trunk's address to our number.
    let _inbound = sipp(
        w,
        "uac_message.xml",
        &[
            "-i",
            "127.0.0.1",
            "-p",
            &w.trunk_port.to_string(),
            &format!("127.0.0.1:{}", w.sip_port),
            "-s",
            OUR_NUMBER,
        ],
        "sms-in",
    );
    let (answered, received) = w
        .receiver("SMS_RECEIVED")
        .wait_for("from_number", Duration::from_secs(30));
    assert_eq!(answered, 200, "{received}");
    assert_eq!(received["metadata"]["to_number"], OUR_NUMBER, "{received}");
}

fn header<'r>(r: &'r Resp, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn main() -> std::process::ExitCode {
    run_suite(
        "voice360",
        || {
            require_sidecar_bin()?;
            let opts = EdgeOptions::fresh("voice360").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("voice360");
            let tp = format!("/admin/tenants/{}", tenant.id);
            edge.admin(
                "PATCH",
                &format!("{tp}/agents/{}", tenant.agent_id),
                Some(&json!({"default_engine": "local"})),
            )
            .expect(200);
            edge.admin("PATCH", &tp, Some(&json!({"voice360_account": ACCOUNT})))
                .expect(200);
            // The account the samples assume: an AI agent at 1001, a person
            // at 1002 (the user key's), a queue with both, two numbers.
            let ai = edge
                .admin(
                    "POST",
                    &format!("{tp}/directory/users"),
                    Some(&json!({"kind": "ai_agent", "agent_id": tenant.agent_id, "extension": "1001",
                        "first_name": "Ava", "caller_id": "Ava (AI)"})),
                )
                .expect(201)
                .json;
            let john = edge
                .admin(
                    "POST",
                    &format!("{tp}/directory/users"),
                    Some(
                        &json!({"extension": "1002", "first_name": "John", "last_name": "Smith",
                        "email": "john.smith@company.com", "time_zone": "America/New_York"}),
                    ),
                )
                .expect(201)
                .json;
            edge.admin(
                "POST",
                &format!("{tp}/directory/queues"),
                Some(&json!({"name": "Sales Queue", "extension": "8001", "members": [ai["pk"], john["pk"]]})),
            )
            .expect(201);
            edge.admin(
                "PUT",
                &format!("{tp}/numbers/{OUR_NUMBER}"),
                Some(
                    &json!({"name": "Support Line", "sms_enabled": true, "sms_user_id": john["pk"],
                    "route": {"kind": "user", "user_id": john["pk"]}}),
                ),
            )
            .expect(201);
            edge.admin(
                "PUT",
                &format!("{tp}/numbers/+15551112222"),
                Some(&json!({"name": "AI Agent Line", "status": "inactive",
                    "route": {"kind": "agent", "agent_id": tenant.agent_id}})),
            )
            .expect(201);
            let key = |body: Value| {
                edge.admin("POST", &format!("{tp}/voice360-keys"), Some(&body))
                    .expect(201)
                    .json["key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            let dev_key = key(json!({"kind": "developer"}));
            let user_key = key(json!({"kind": "user", "user_pk": john["pk"]}));
            let trunk_port = free_sip_port();
            // A known SIP port: sipp sends texts to it.
            let sip_port = free_sip_port();
            let sidecar = start_sip_sidecar(
                &edge,
                &dir,
                "voice360-1",
                trunk_port,
                &format!("sip_port = {sip_port}"),
            )?;
            // One endpoint per event type, each with its own verifier.
            let mut receivers = Vec::new();
            for (event, node) in [
                ("USER_DIAL", true),
                ("USER_HANGUP", true),
                ("CALL_ENDED", false),
                ("TRANSCRIPTION_FINISHED", false),
                ("SMS_SENT", true),
                ("SMS_RECEIVED", false),
            ] {
                let port_url = |secret: &str| Receiver::start(&dir, event, node, secret);
                // The secret is shown when the endpoint is made, so the
                // endpoint goes first with a placeholder URL, then moves.
                let created = edge
                    .admin(
                        "POST",
                        &format!("{tp}/webhooks"),
                        Some(
                            &json!({"url": "http://127.0.0.1:9/none", "format": "voice360",
                            "voice360_event": event, "retry_schedule": [1, 2, 4]}),
                        ),
                    )
                    .expect(201)
                    .json;
                let (url, receiver) = port_url(created["secret"].as_str().unwrap_or_default())?;
                edge.admin(
                    "PATCH",
                    &format!(
                        "{tp}/webhooks/{}",
                        created["id"].as_str().unwrap_or_default()
                    ),
                    Some(&json!({"url": url})),
                )
                .expect(200);
                receivers.push((event.to_string(), receiver));
            }
            Ok(World {
                edge,
                tenant,
                dir,
                trunk_port,
                sip_port,
                _sidecar: sidecar,
                dev_key,
                user_key,
                receivers,
            })
        },
        &[
            (
                "the_python_client_runs_as_written_and_its_call_is_reported",
                the_python_client_runs_as_written_and_its_call_is_reported,
            ),
            (
                "the_javascript_client_runs_as_written",
                the_javascript_client_runs_as_written,
            ),
            (
                "the_fetch_examples_run_with_both_key_kinds",
                the_fetch_examples_run_with_both_key_kinds,
            ),
            (
                "public_view_keys_envelope_and_errors",
                public_view_keys_envelope_and_errors,
            ),
            (
                "texts_go_to_and_come_from_a_sipp_trunk",
                texts_go_to_and_come_from_a_sipp_trunk,
            ),
        ],
    )
}
