//! End-to-end, the whole product: API -> edge (wrangler dev) -> real sidecar
//! -> SIP/RTP -> a real phone (baresip) or trunk (sipp) on 127.0.0.1, with the
//! offline `local` engine holding a scripted conversation. Asserts each step,
//! plus: two concurrent calls, a busy trunk retried per policy, a hangup
//! through the API mid-call, and a sidecar SIGKILLed mid-call.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use voxline_e2e::*;
use voxline_testkit::*;

/// The statuses a call ends in.
const TERMINAL: &[&str] = &["completed", "failed", "busy", "no_answer", "cancelled"];

const SCRIPT: &str = r#"You call patients of Demo Dental to confirm tomorrow's appointment.
[script]
greeting: Hello, this is Demo Dental calling about your appointment tomorrow at ten. Can you make it?
yes|yeah|sure|i can -> [tool confirm_appointment {"confirmed": true}] Great, we will see you tomorrow at ten. Goodbye! [end]
no|can't|cannot -> No problem, we will call you to find a new time. Goodbye! [end]
* -> Sorry, I didn't catch that. Can you make it tomorrow at ten?
goodbye: Thank you, goodbye.
[/script]"#;

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    /// Verifies `transcript.saved` / `recording.saved` with `standardwebhooks`.
    hooks: WebhookReceiver,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 12)
    }
}

fn sipp(
    w: &World,
    name: &str,
    scenario: &str,
    port: u16,
    calls: u32,
    subst: &[(&str, &str)],
) -> ChildGuard {
    let mut text = std::fs::read_to_string(scenario).unwrap();
    for (k, v) in subst {
        text = text.replace(k, v);
    }
    let sf = w.dir.join(format!("{name}.xml"));
    std::fs::write(&sf, text).unwrap();
    let log = std::fs::File::create(w.dir.join(format!("sipp-{name}.log"))).unwrap();
    let child = Command::new(SIPP.require())
        .args([
            "-sf",
            sf.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
        ])
        .args(["-mp", &free_tcp_udp_port().to_string(), "-rtp_echo"])
        .args([
            "-m",
            &calls.to_string(),
            "-nostdin",
            "-timeout",
            "60s",
            "-trace_msg",
        ])
        .current_dir(&w.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sipp");
    ChildGuard(child)
}

fn sidecar(w: &World, id: &str, trunk_port: u16) -> ChildGuard {
    start_sip_sidecar(&w.edge, &w.dir, id, trunk_port, "").unwrap()
}

fn wait_status(w: &World, id: &str, want: &[&str], within: Duration) -> Value {
    w.edge.wait_call_status(&w.tenant.key, id, want, within)
}

fn place(w: &World, body: Value) -> String {
    w.edge
        .call("POST", "/v1/calls", &w.tenant.key, Some(&body))
        .expect(201)
        .json["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn set_engine(w: &World, engine: &str) {
    // Issue 18: every answered call is analysed after it ends.
    let body = json!({"default_engine": engine, "system_prompt": SCRIPT, "analysis": {
        "success_outcomes": ["yes"],
        "data_schema": {"type": "object", "properties": {"make_it": {"type": "boolean"}}}}});
    w.edge
        .admin(
            "PATCH",
            &format!(
                "/admin/tenants/{}/agents/{}",
                w.tenant.id, w.tenant.agent_id
            ),
            Some(&body),
        )
        .expect(200);
}

fn callee_wav(dir: &Path, words: &str) -> PathBuf {
    let mut pcm = vec![0i16; 8000 * 7];
    pcm.extend(flite_8k(dir, "slt", words).unwrap());
    pcm.extend(vec![0i16; 8000 * 9]);
    let path = dir.join("callee.wav");
    write_wav(&path, 8000, &pcm).unwrap();
    path
}

fn a_scripted_conversation_with_a_real_phone(w: &World) {
    set_engine(w, "local");
    // The script's yes calls the agent's customer tool (issue 18).
    let tool = ToolServer::start(r#"{"booked": true}"#);
    let agent = w
        .edge
        .admin(
            "PATCH",
            &format!(
                "/admin/tenants/{}/agents/{}",
                w.tenant.id, w.tenant.agent_id
            ),
            Some(
                &json!({"rotate_tools_secret": true, "tools": [{"name": "confirm_appointment",
                "parameters": {"type": "object", "properties": {"confirmed": {"type": "boolean"}}},
                "url": tool.url}]}),
            ),
        )
        .expect(200)
        .json;
    let secret = agent["tools_secret"].as_str().unwrap().to_string();
    let port = free_sip_port();
    let wav = callee_wav(&w.dir, "Yes, I can make it.");
    let _phone = start_baresip(&w.dir, "yes", "+15555550101", port, &wav, "PCMU", 60).unwrap();
    let _sc = sidecar(w, "fs-1", port);
    let id = place(w, json!({"phone": "+15555550101", "record": true}));
    let call = wait_status(w, &id, TERMINAL, Duration::from_secs(60));
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("agent_hangup")),
        "{call}"
    );
    let t = w.edge.transcript(&w.tenant.key, &id);
    // The script's outcome: the caller's answer matched the "yes" rule.
    assert_eq!(t["outcome"], "yes", "{t}");
    assert!(
        t["summary"]
            .as_str()
            .is_some_and(|s| s.contains("script_end")),
        "{t}"
    );
    // The tool the yes called: the edge's signed request, and a `tool` turn.
    let req = tool
        .next(Duration::from_secs(5))
        .expect("the script's tool was called");
    assert!(req.signed_by(&secret), "{}", req.head);
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        (sent["name"].as_str(), &sent["arguments"]),
        (Some("confirm_appointment"), &json!({"confirmed": true}))
    );
    let all = t["turns"].as_array().unwrap();
    assert!(
        all.iter().any(|turn| turn["role"] == "tool"
            && turn["text"]
                .as_str()
                .is_some_and(|x| x.contains("confirm_appointment") && x.contains("booked"))),
        "{}",
        t["text"]
    );
    let turns: Vec<&Value> = all.iter().filter(|turn| turn["role"] != "tool").collect();
    let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["agent", "callee", "agent"], "{}", t["text"]);
    assert!(
        turns[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Hello, this is Demo Dental"),
        "{}",
        t["text"]
    );
    assert!(
        turns[1]["text"].as_str().unwrap().contains("can"),
        "the caller's words: {}",
        t["text"]
    );
    assert!(
        turns[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("Great, we will see you"),
        "{}",
        t["text"]
    );
    println!("{}", t["text"].as_str().unwrap());
    // The post-call analysis: the script's outcome is a success, and the
    // callee's answer to "Can you make it?" fills `make_it`.
    let analysis = &call["analysis"];
    assert_eq!(
        (
            analysis["success"].as_bool(),
            &analysis["data"],
            analysis["sentiment"].as_str(),
            analysis["source"].as_str()
        ),
        (
            Some(true),
            &json!({"make_it": true}),
            Some("positive"),
            Some("local")
        ),
        "{analysis}"
    );
    assert_eq!(analysis["summary"], t["summary"], "{analysis}");
    check_artifacts(w, &id, &t);
}

/// An answering machine for baresip to play from its answer: a flite
/// greeting (the `slt` voice), 400 ms of quiet, a 1 kHz beep of 500 ms,
/// then quiet, over faint deterministic line noise.
fn machine_wav(dir: &Path) -> PathBuf {
    let mut pcm = flite_8k(
        dir,
        "slt",
        "Hi, you have reached the Smith family. We cannot come to the phone right now. \
         Please leave a message after the tone.",
    )
    .unwrap();
    pcm.extend(vec![0i16; 3_200]);
    pcm.extend(tone(8_000, &[(1_000.0, 8_000.0)], 4_000));
    pcm.extend(vec![0i16; 8_000 * 20]);
    let mut x = 0x2545_F491u32;
    for s in &mut pcm {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *s = s.saturating_add((x % 101) as i16 - 50);
    }
    let path = dir.join("machine.wav");
    write_wav(&path, 8000, &pcm).unwrap();
    path
}

/// A person for baresip to play: "Hello?" soon after picking up, then
/// quiet while the agent greets, then the answer to its question.
fn human_wav(dir: &Path) -> PathBuf {
    let mut pcm = vec![0i16; 8000 / 2];
    pcm.extend(flite_8k(dir, "slt", "Hello?").unwrap());
    pcm.resize(8000 * 11, 0);
    pcm.extend(flite_8k(dir, "slt", "No, I cannot.").unwrap());
    pcm.extend(vec![0i16; 8000 * 9]);
    let path = dir.join("human.wav");
    write_wav(&path, 8000, &pcm).unwrap();
    path
}

/// The `kind` webhook of call `id` (e.g. `call.completed`), once
/// delivered and verified.
fn webhook_of(w: &World, kind: &str, id: &str) -> Value {
    let of_call = |got: &[Value]| -> Option<Value> {
        got.iter()
            .filter(|r| r["verified"] == true)
            .map(WebhookReceiver::event)
            .find(|e| e["type"] == kind && e["data"]["id"] == id)
    };
    let got = w
        .hooks
        .wait_for("artifacts", Duration::from_secs(30), kind, |got| {
            of_call(got).is_some()
        })
        .unwrap();
    of_call(&got).unwrap()
}

/// Issue 18 through wrangler dev: a call placed with `amd: hangup` to a
/// phone that plays a machine's greeting and beep is hung up as soon as
/// the detector decides, and ends `answering_machine`; the same agent's
/// call to a person who says "Hello?" goes on as a conversation. The
/// verdict and its timing are on the call and in `call.completed`.
fn answering_machine_detection_through_the_stack(w: &World) {
    set_engine(w, "local");
    let port = free_sip_port();
    let wav = machine_wav(&w.dir);
    let phone = start_baresip(&w.dir, "machine", "+15555550102", port, &wav, "PCMU", 60).unwrap();
    let sc = sidecar(w, "fs-amd-machine", port);
    let id = place(w, json!({"phone": "+15555550102", "amd": "hangup"}));
    let call = wait_status(w, &id, TERMINAL, Duration::from_secs(60));
    assert_eq!(
        (
            call["status"].as_str(),
            call["ended_reason"].as_str(),
            call["answered_by"].as_str()
        ),
        (
            Some("completed"),
            Some("answering_machine"),
            Some("machine")
        ),
        "{call}"
    );
    let decided = call["amd_decision_ms"].as_u64().expect("amd_decision_ms");
    // The greeting alone is over 5 s; the detector decides on its length.
    assert!(
        (1_500..=4_500).contains(&decided),
        "decided at {decided} ms"
    );
    let hook = webhook_of(w, "call.completed", &id);
    assert_eq!(
        (
            hook["data"]["answered_by"].as_str(),
            hook["data"]["amd_decision_ms"].as_u64()
        ),
        (Some("machine"), Some(decided)),
        "{hook}"
    );
    drop(sc);
    drop(phone);

    let port = free_sip_port();
    let wav = human_wav(&w.dir);
    let _phone = start_baresip(&w.dir, "human", "+15555550103", port, &wav, "PCMU", 60).unwrap();
    let _sc = sidecar(w, "fs-amd-human", port);
    let id = place(w, json!({"phone": "+15555550103", "amd": "hangup"}));
    let call = wait_status(w, &id, TERMINAL, Duration::from_secs(60));
    assert_eq!(
        (
            call["status"].as_str(),
            call["ended_reason"].as_str(),
            call["answered_by"].as_str()
        ),
        (Some("completed"), Some("agent_hangup"), Some("human")),
        "{call}"
    );
    let decided = call["amd_decision_ms"].as_u64().expect("amd_decision_ms");
    assert!(decided <= 4_000, "decided at {decided} ms");
    // The person was talked to: greeted, answered "no", and said goodbye to.
    let t = w.edge.transcript(&w.tenant.key, &id);
    assert_eq!(t["outcome"], "no", "{t}");
    let hook = webhook_of(w, "call.completed", &id);
    assert_eq!(hook["data"]["answered_by"], "human", "{hook}");
}

/// Issues 16 and 18 through wrangler dev: the agent's script answers the
/// callee's key 1 (sipp plays sip-tester's RFC 4733 recording) with the
/// built-in `transfer` tool; the trunk takes REFER (`refer = true`), so sipp
/// gets a REFER for the destination, accepts it, reports 200 in a NOTIFY
/// sipfrag and expects our BYE. The call ends `transferred`, and
/// `call.transferred` says where to and how.
fn an_agent_transfers_the_callee_by_refer(w: &World) {
    set_engine(w, "local");
    let pcap = "/usr/share/sip-tester/dtmf_2833_1.pcap";
    assert!(Path::new(pcap).is_file(), "{pcap} (Debian sip-tester)");
    let port = free_sip_port();
    let scenario = repo_root().join("media-sidecar/tests/sipp/uas_pcap_refer.xml");
    let log = std::fs::File::create(w.dir.join("sipp-refer.log")).unwrap();
    let mut sipp = ChildGuard(
        Command::new(SIPP.require())
            .arg("-sf")
            .arg(&scenario)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-mi",
                "127.0.0.1",
            ])
            .args(["-mp", &free_tcp_udp_port().to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error"])
            .arg("-trace_msg")
            .current_dir(&w.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sipp"),
    );
    let _sc = start_sip_sidecar_with_trunk(&w.edge, &w.dir, "fs-refer", port, "", "refer = true")
        .unwrap();
    let script = "[script]\ngreeting: Press one for a person.\n\
                  1 -> [tool transfer {\"destination\":\"+15550002222\"}] Transferring you now.\n\
                  silence 20s -> Are you still there?\n[/script]";
    let id = place(w, json!({"phone": "+15555550104", "system_prompt": script}));
    let call = wait_status(w, &id, TERMINAL, Duration::from_secs(60));
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("transferred")),
        "{call}"
    );
    let status = sipp
        .wait_exit(Duration::from_secs(20))
        .expect("sipp finishes its scenario");
    assert!(status.success(), "sipp: {status}");
    let hook = webhook_of(w, "call.transferred", &id);
    assert_eq!(
        (
            hook["data"]["transfer"]["destination"].as_str(),
            hook["data"]["transfer"]["method"].as_str()
        ),
        (Some("+15550002222"), Some("refer")),
        "{hook}"
    );
}

/// The transcript and the recording reached the edge, R2 and the webhooks.
fn check_artifacts(w: &World, id: &str, transcript: &Value) {
    let of_call = |got: &[Value], kind: &str| -> Option<Value> {
        got.iter()
            .map(WebhookReceiver::event)
            .find(|e| e["type"] == kind && e["data"]["call_id"] == id)
    };
    let got = w
        .hooks
        .wait_for(
            "artifacts",
            Duration::from_secs(30),
            "transcript.saved and recording.saved",
            |got| {
                of_call(got, "transcript.saved").is_some()
                    && of_call(got, "recording.saved").is_some()
            },
        )
        .unwrap();
    assert!(
        got.iter().all(|r| r["verified"] == true),
        "standardwebhooks refused one: {got:?}"
    );
    let saved = of_call(&got, "transcript.saved").unwrap();
    assert_eq!(
        (&saved["data"]["turns"], &saved["data"]["outcome"]),
        (&transcript["turns"], &transcript["outcome"])
    );
    assert_eq!(saved["data"]["call_status"], "completed");
    let call = w
        .edge
        .call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None)
        .expect(200)
        .json;
    assert_eq!(saved["data"]["analysis"], call["analysis"]);
    let completed = w
        .hooks
        .wait_for(
            "artifacts",
            Duration::from_secs(10),
            "call.completed",
            |got| {
                got.iter()
                    .map(WebhookReceiver::event)
                    .any(|e| e["type"] == "call.completed" && e["data"]["id"] == id)
            },
        )
        .unwrap()
        .iter()
        .map(WebhookReceiver::event)
        .find(|e| e["type"] == "call.completed" && e["data"]["id"] == id)
        .unwrap();
    assert_eq!(completed["data"]["analysis"], call["analysis"]);
    let rec = of_call(&got, "recording.saved").unwrap()["data"].clone();
    assert_eq!(
        (rec["attempt"].as_u64(), rec["content_type"].as_str()),
        (Some(1), Some("audio/wav")),
        "{rec}"
    );

    // The WAV from R2, through the API: what the sidecar measured and hashed.
    let wav = w
        .edge
        .wait_recording(&w.tenant.key, id, Duration::from_secs(10));
    assert_eq!(wav.len() as u64, rec["bytes"].as_u64().unwrap());
    assert_eq!(
        voxline_shared::signing::sha256_hex(&wav),
        rec["sha256"].as_str().unwrap()
    );
    let mut reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV file");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let seconds = samples.len() as f64 / 2.0 / 8000.0;
    assert!(
        (seconds * 1000.0 - rec["duration_ms"].as_f64().unwrap()).abs() < 50.0,
        "{seconds} s vs {rec}"
    );
    // Left: the AI's greeting (flite) in the first seconds; right: the
    // callee, who is silent for 7 s and then says yes.
    let rms = |ch: usize, from_s: f64, to_s: f64| {
        let (a, b) = (
            (from_s * 8000.0) as usize,
            ((to_s * 8000.0) as usize).min(samples.len() / 2),
        );
        let sum: f64 = (a..b).map(|i| f64::from(samples[2 * i + ch]).powi(2)).sum();
        (sum / (b - a).max(1) as f64).sqrt()
    };
    println!(
        "recording: {seconds:.1} s; rms left 0-4 s {:.0}, right 0-4 s {:.0}, right 7-10 s {:.0}",
        rms(0, 0.0, 4.0),
        rms(1, 0.0, 4.0),
        rms(1, 7.0, 10.0)
    );
    assert!(
        rms(0, 0.0, 4.0) > 300.0,
        "the AI's greeting is on the left channel"
    );
    assert!(
        rms(1, 0.0, 4.0) < 100.0,
        "the callee is silent while greeted"
    );
    assert!(
        rms(1, 7.0, 10.0) > 300.0,
        "the callee's answer is on the right channel"
    );
    // Uploaded means gone from the sidecar's spool.
    let spool = w.dir.join("recordings");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(id))
        .collect();
    assert!(left.is_empty(), "still in the spool after upload: {left:?}");
}

fn a_busy_trunk_is_retried_per_policy_and_ends_busy(w: &World) {
    set_engine(w, "echo");
    let port = free_tcp_udp_port();
    let busy = repo_root().join("media-sidecar/tests/sipp/uas_busy.xml");
    let _trunk = sipp(w, "busy", busy.to_str().unwrap(), port, 2, &[]);
    let _sc = sidecar(w, "fs-busy", port);
    let id = place(
        w,
        json!({"phone": "+15555550102", "retries": 1, "retry_delay_minutes": 1}),
    );
    let call = wait_status(
        w,
        &id,
        &["busy", "failed", "completed"],
        Duration::from_secs(30),
    );
    assert_eq!(
        (
            call["status"].as_str(),
            call["sip_code"].as_u64(),
            call["attempts"].as_u64()
        ),
        (Some("busy"), Some(486), Some(2)),
        "{call}"
    );
}

fn hold_scenario(w: &World, hold_ms: u64) -> (u16, ChildGuard) {
    let port = free_tcp_udp_port();
    let hold = repo_root().join("tests/sipp/uas_hold_bye.xml");
    let ms = hold_ms.to_string();
    let guard = sipp(
        w,
        &format!("hold-{port}"),
        hold.to_str().unwrap(),
        port,
        2,
        &[("HOLD_MS", &ms), ("MEDIA_PORT", "[media_port]")],
    );
    (port, guard)
}

fn two_concurrent_calls_both_complete(w: &World) {
    set_engine(w, "echo");
    let (port, _trunk) = hold_scenario(w, 8_000);
    let _sc = sidecar(w, "fs-two", port);
    let a = place(w, json!({"phone": "+15555550103"}));
    let b = place(w, json!({"phone": "+15555550104"}));
    wait_status(w, &a, &["in_progress"], Duration::from_secs(20));
    let b_live = wait_status(
        w,
        &b,
        &["in_progress", "completed"],
        Duration::from_secs(20),
    );
    assert_eq!(b_live["status"], "in_progress", "both calls are up at once");
    for id in [&a, &b] {
        let call = wait_status(w, id, &["completed", "failed"], Duration::from_secs(20));
        assert_eq!(
            (call["status"].as_str(), call["ended_reason"].as_str()),
            (Some("completed"), Some("callee_hangup")),
            "{call}"
        );
    }
}

fn hangup_through_the_api_mid_call(w: &World) {
    set_engine(w, "echo");
    let (port, _trunk) = hold_scenario(w, 30_000);
    let _sc = sidecar(w, "fs-hang", port);
    let id = place(w, json!({"phone": "+15555550105"}));
    wait_status(w, &id, &["in_progress"], Duration::from_secs(20));
    w.edge
        .call(
            "POST",
            &format!("/v1/calls/{id}/hangup"),
            &w.tenant.key,
            None,
        )
        .expect(202);
    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "cancelled"],
        Duration::from_secs(15),
    );
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("hangup_requested")),
        "{call}"
    );
}

fn a_sidecar_killed_mid_call_ends_it_media_lost(w: &World) {
    set_engine(w, "echo");
    let (port, _trunk) = hold_scenario(w, 30_000);
    let mut sc = sidecar(w, "fs-kill", port);
    // max_seconds bounds how long the killed sidecar could still be talking:
    // only after it (plus a margin) is the attempt presumed over.
    let id = place(w, json!({"phone": "+15555550106", "max_seconds": 10}));
    wait_status(w, &id, &["in_progress"], Duration::from_secs(20));
    unsafe { libc::kill(sc.0.id() as i32, libc::SIGKILL) };
    let _ = sc.0.wait();
    let call = wait_status(w, &id, &["failed", "scheduled"], Duration::from_secs(25));
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("failed"), Some("media_lost")),
        "{call}"
    );
}

/// A sidecar paused (SIGSTOP) past the dead-sidecar timeout while a thousand
/// scheduled calls with 20 KB prompts wait in the region, then resumed
/// (SIGCONT): its call goes on, no other sidecar dials it, the callee is rung
/// once, and the call ends with exactly one terminal webhook.
fn a_partitioned_sidecar_never_rings_the_callee_twice(w: &World) {
    set_engine(w, "echo");
    store_scheduled_calls(w, 1_000, 20_000);
    let endpoint =
        json!({"url": w.hooks.url("terminal"), "events": ["call.completed", "call.failed"]});
    let created = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/webhooks", w.tenant.id),
            Some(&endpoint),
        )
        .expect(201);
    w.hooks.expect_secrets(
        "terminal",
        &[created.json["secret"].as_str().unwrap_or_default()],
    );
    let port = free_tcp_udp_port();
    let hold = repo_root().join("tests/sipp/uas_hold_bye.xml");
    // One call only; -trace_msg logs every message the trunk received.
    let _trunk = sipp(
        w,
        "partition",
        hold.to_str().unwrap(),
        port,
        1,
        &[("HOLD_MS", "15000"), ("MEDIA_PORT", "[media_port]")],
    );
    let mut a = sidecar(w, "fs-part-a", port);
    let id = place(
        w,
        json!({"phone": "+15555550107", "max_seconds": 60, "retries": 2, "retry_delay_minutes": 1}),
    );
    wait_status(w, &id, &["in_progress"], Duration::from_secs(20));
    // Another sidecar is up the whole time: it would take any retry at once.
    let _b = sidecar(w, "fs-part-b", port);
    unsafe { libc::kill(a.0.id() as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(6_000)); // twice DISPATCH_DEAD_AFTER_MS
    let during = w
        .edge
        .call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None)
        .expect(200)
        .json;
    unsafe { libc::kill(a.0.id() as i32, libc::SIGCONT) };
    assert_eq!(
        (during["status"].as_str(), during["attempts"].as_u64()),
        (Some("in_progress"), Some(1)),
        "not re-dialled while its sidecar is silent: {during}"
    );
    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "scheduled", "busy", "no_answer"],
        Duration::from_secs(30),
    );
    assert_eq!(
        (
            call["status"].as_str(),
            call["ended_reason"].as_str(),
            call["attempts"].as_u64()
        ),
        (Some("completed"), Some("callee_hangup"), Some(1)),
        "{call}"
    );
    let invites: usize = std::fs::read_dir(&w.dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("partition_")
                && e.file_name().to_string_lossy().ends_with("_messages.log")
        })
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("INVITE "))
                .count()
        })
        .sum();
    assert_eq!(invites, 1, "the callee was rung {invites} times");
    let of_call = |got: &[Value]| {
        got.iter()
            .map(WebhookReceiver::event)
            .filter(|e| e["data"]["id"] == id.as_str())
            .collect::<Vec<_>>()
    };
    w.hooks
        .wait_for(
            "terminal",
            Duration::from_secs(15),
            "the terminal event",
            |got| !of_call(got).is_empty(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(3)); // a second one would come now
    let terminal = of_call(&w.hooks.received("terminal"));
    assert_eq!(
        terminal.len(),
        1,
        "exactly one terminal webhook: {terminal:?}"
    );
    assert_eq!(terminal[0]["type"], "call.completed");
    let _ = a.0.kill();
}

/// `count` calls scheduled a day ahead in the region, each with a
/// `prompt_bytes` system prompt (another tenant's, so caps do not interact).
fn store_scheduled_calls(w: &World, count: usize, prompt_bytes: usize) {
    let bulk = w.edge.provision_tenant("bulk");
    let limits = json!({"rate_limits": {"per_key": {"limit": 100_000, "window_seconds": 60}, "per_ip": {"limit": 100_000, "window_seconds": 60}}});
    w.edge
        .admin(
            "PATCH",
            &format!("/admin/tenants/{}", bulk.id),
            Some(&limits),
        )
        .expect(200);
    let at = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let prompt = "p".repeat(prompt_bytes);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for worker in 0..4 {
            let (bulk, at, prompt) = (&bulk, &at, &prompt);
            s.spawn(move || {
                for i in (worker..count).step_by(4) {
                    let body = json!({"phone": format!("+1555600{i:04}"), "schedule_at": at, "system_prompt": prompt});
                    w.edge.call("POST", "/v1/calls", &bulk.key, Some(&body)).expect(201);
                }
            });
        }
    });
    println!(
        "  {count} scheduled calls with {prompt_bytes}-byte prompts stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() -> std::process::ExitCode {
    run_suite(
        "full_stack",
        || {
            require_sidecar_bin()?;
            let opts = EdgeOptions::fresh("full_stack").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("full-stack");
            let mut hooks = WebhookReceiver::new(&dir);
            hooks.start();
            hooks.subscribe(
                &edge,
                &tenant.id,
                "artifacts",
                json!({"events": ["transcript.saved", "recording.saved", "call.completed", "call.transferred"]}),
            );
            Ok(World {
                edge,
                tenant,
                dir,
                hooks,
            })
        },
        &[
            (
                "a_scripted_conversation_with_a_real_phone",
                a_scripted_conversation_with_a_real_phone,
            ),
            (
                "answering_machine_detection_through_the_stack",
                answering_machine_detection_through_the_stack,
            ),
            (
                "an_agent_transfers_the_callee_by_refer",
                an_agent_transfers_the_callee_by_refer,
            ),
            (
                "a_busy_trunk_is_retried_per_policy_and_ends_busy",
                a_busy_trunk_is_retried_per_policy_and_ends_busy,
            ),
            (
                "two_concurrent_calls_both_complete",
                two_concurrent_calls_both_complete,
            ),
            (
                "hangup_through_the_api_mid_call",
                hangup_through_the_api_mid_call,
            ),
            (
                "a_sidecar_killed_mid_call_ends_it_media_lost",
                a_sidecar_killed_mid_call_ends_it_media_lost,
            ),
            (
                "a_partitioned_sidecar_never_rings_the_callee_twice",
                a_partitioned_sidecar_never_rings_the_callee_twice,
            ),
        ],
    )
}
