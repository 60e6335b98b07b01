//! `cargo xtask demo`: one real call, end to end, on this machine.
//!
//! Starts `wrangler dev` (local KV/DO/Queues persisted in `.voxline/demo/`),
//! a media sidecar of region `local` whose SIP trunk is a baresip phone on
//! 127.0.0.1 (the "callee", playing a synthesized person who answers), and a
//! webhook receiver that verifies every delivery with the `standardwebhooks`
//! package. Provisions a tenant, an appointment-reminder agent (local offline
//! engine) and an API key through the admin API, places the call through the
//! public API, shows its progress live, then prints the transcript, the
//! verified webhooks and where the recording is. The agent's script calls a
//! customer tool (`confirm_appointment`) when the callee says yes: the edge
//! POSTs it, signed, to a tool server the demo runs, which checks the
//! signature. Everything it started is stopped at the end, or on Ctrl-C.
//!
//! `--inbound` turns it around (issue 16): the baresip phone is the caller.
//! It dials one of the tenant's numbers on the sidecar's SIP port (the
//! sidecar takes calls from its trunk, which is that phone); the number
//! routes to the same agent, now with a script for people who call in, and
//! the call goes the same way from there (transcript, tool, webhooks,
//! recording).

use crate::{bootstrap, build_edge, root, run, step};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voxline_e2e::{
    start_sip_sidecar, wait_sidecar_registered, Edge, EdgeOptions, Resp, ToolServer,
    WebhookReceiver,
};
use voxline_testkit::{
    flite_8k, free_sip_port, free_tcp_udp_port, start_baresip, start_baresip_with, write_wav,
    BaresipExtras,
};

const CALLEE: &str = "+15555550123";

/// `--inbound`: the tenant's number the phone calls (routed to the agent).
const DEMO_NUMBER: &str = "+14155550100";

/// `--inbound`: the agent's script for people who call in.
const INBOUND_PROMPT: &str = r#"You answer calls to Demo Dental from patients about tomorrow's appointment.
[script]
greeting: Thank you for calling Demo Dental. Are you calling to confirm your appointment tomorrow at ten?
yes|yeah|sure|i can -> [tool confirm_appointment {"confirmed": true}] Great, you are confirmed for tomorrow at ten. Goodbye! [end]
no|can't|cannot -> No problem, we will call you to find a new time. Goodbye! [end]
* -> Sorry, I didn't catch that. Are you calling to confirm tomorrow at ten?
silence 8s -> Are you still there?
goodbye: Thank you, goodbye.
[/script]"#;

const PROMPT: &str = r#"You call patients of Demo Dental to confirm tomorrow's appointment.
[script]
greeting: Hello, this is Demo Dental calling about your appointment tomorrow at ten. Can you make it?
yes|yeah|sure|i can -> [tool confirm_appointment {"confirmed": true}] Great, we will see you tomorrow at ten. Goodbye! [end]
no|can't|cannot -> No problem, we will call you to find a new time. Goodbye! [end]
* -> Sorry, I didn't catch that. Can you make it tomorrow at ten?
silence 8s -> Are you still there?
goodbye: Thank you, goodbye.
[/script]"#;

fn check(r: &Resp, status: u16) -> Result<(), String> {
    if r.status == status {
        Ok(())
    } else {
        Err(format!(
            "expected HTTP {status}, got {}: {}",
            r.status, r.text
        ))
    }
}

fn stopped(stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::SeqCst) {
        Err("interrupted (Ctrl-C): stopping everything".into())
    } else {
        Ok(())
    }
}

/// The person who answers: waits through the greeting, says yes, stays on the line.
fn callee_wav(dir: &Path) -> Result<PathBuf, String> {
    let mut pcm = vec![0i16; 8000 * 7];
    pcm.extend(flite_8k(dir, "slt", "Yes, I can make it.")?);
    pcm.extend(vec![0i16; 8000 * 9]);
    let path = dir.join("callee.wav");
    write_wav(&path, 8000, &pcm)?;
    Ok(path)
}

pub fn run_demo(once: bool, inbound: bool) -> Result<(), String> {
    step("bootstrap", bootstrap::ensure_all)?;
    step("edge wasm build", build_edge)?;
    step("media sidecar build", || {
        run(Command::new("cargo").args(["build", "-p", "voxline-media-sidecar"]))
    })?;
    let dir = root().join(".voxline/demo");
    std::fs::create_dir_all(dir.join("recordings"))
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("Ctrl-C handler: {e}"))?;
    }
    let admin_token = load_or_create_admin_token(&dir)?;
    let edge = step("start the edge (wrangler dev)", || {
        Edge::start(EdgeOptions {
            admin_token,
            state_dir: dir.join("state"),
            log_path: dir.join("wrangler.log"),
            vars: Vec::new(),
            // The usual wrangler port when it is free, so the printed URLs are familiar.
            port: std::net::TcpListener::bind("127.0.0.1:8787")
                .ok()
                .map(|_| 8787),
        })
    })?;
    stopped(&stop)?;
    // The customer's tool (the script calls it on a yes), on loopback.
    let tool = ToolServer::start(r#"{"booked": true, "reference": "DD-1042"}"#);
    let prompt = if inbound { INBOUND_PROMPT } else { PROMPT };
    let (tenant_id, agent_id, tools_secret) = step("demo tenant and agent", || {
        provision(&edge, &dir, &tool.url, prompt)
    })?;
    println!("  tenant {tenant_id}, agent {agent_id} (local engine, appointment-reminder script, tool confirm_appointment at {})", tool.url);
    if inbound {
        step("the tenant's number, routed to the agent", || {
            let r = edge.admin(
                "PUT",
                &format!("/admin/tenants/{tenant_id}/numbers/{DEMO_NUMBER}"),
                Some(
                    &json!({"status": "active", "route": {"kind": "agent", "agent_id": agent_id}}),
                ),
            );
            if r.status == 200 || r.status == 201 {
                Ok(())
            } else {
                Err(format!(
                    "expected HTTP 200 or 201, got {}: {}",
                    r.status, r.text
                ))
            }
        })?;
    }
    let key = step("demo API key", || {
        let r = edge.admin(
            "POST",
            &format!("/admin/tenants/{tenant_id}/api-keys"),
            Some(&json!({"name": "demo"})),
        );
        check(&r, 201)?;
        r.json["key"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| "no key in response".to_string())
    })?;

    // The webhook receiver (the Python `standardwebhooks` package), told the endpoint's secret.
    let mut hooks = WebhookReceiver::new(&dir);
    step("webhook receiver (standardwebhooks)", || {
        hooks.start();
        Ok(())
    })?;
    let webhook = step("webhook endpoint", || {
        let r = edge.admin(
            "POST",
            &format!("/admin/tenants/{tenant_id}/webhooks"),
            Some(&json!({"url": hooks.url("demo")})),
        );
        check(&r, 201)?;
        Ok(r.json)
    })?;
    hooks.expect_secrets("demo", &[webhook["secret"].as_str().unwrap_or_default()]);

    // The phone: a baresip that auto-answers (outbound), or that calls the
    // tenant's number (`--inbound`); the sidecar's trunk either way.
    let phone_port = free_sip_port();
    let sip_port = free_tcp_udp_port();
    let wav = step("the phone's voice (flite)", || callee_wav(&dir))?;
    let mut _phone = None;
    if !inbound {
        _phone = Some(step("callee phone (baresip on 127.0.0.1)", || {
            start_baresip(&dir, "callee", CALLEE, phone_port, &wav, "PCMU", 60)
        })?);
    }

    // The media sidecar of region `local`, whose trunk is that phone.
    let _sidecar = step("media sidecar (region local)", || {
        start_sip_sidecar(
            &edge,
            &dir,
            "demo-local-1",
            phone_port,
            &format!("sip_port = {sip_port}"),
        )
    })?;
    stopped(&stop)?;
    // Open it before the call goes out: the call is on its list while it runs.
    println!(
        "\nconsole: {}/console\n  log in with the API key {key}\n  operators: admin token in {} with tenant id {tenant_id}",
        edge.base,
        dir.join("admin-token").display()
    );

    let call_id = if inbound {
        step("the sidecar registered with the edge", || {
            wait_sidecar_registered(
                &dir.join("sidecar-demo-local-1.log"),
                Duration::from_secs(30),
            )
        })?;
        let before = inbound_call_ids(&edge, &key)?;
        _phone = Some(step(
            &format!("the phone calls {DEMO_NUMBER} (baresip on 127.0.0.1)"),
            || {
                let extras = BaresipExtras {
                    modules: vec!["menu.so".into()],
                    commands: vec![format!("/dial sip:{DEMO_NUMBER}@127.0.0.1:{sip_port}")],
                    ..BaresipExtras::default()
                };
                start_baresip_with(
                    &dir, "caller", CALLEE, phone_port, &wav, "PCMU", 60, &extras,
                )
            },
        )?);
        step("the inbound call (GET /v1/calls)", || {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                stopped(&stop)?;
                if let Some(id) = inbound_call_ids(&edge, &key)?
                    .into_iter()
                    .find(|id| !before.contains(id))
                {
                    return Ok(id);
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "no inbound call within 20 s; see {}",
                        dir.join("baresip-caller.log").display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })?
    } else {
        let call = step("place the call (POST /v1/calls)", || {
            let r = edge.call(
                "POST",
                "/v1/calls",
                &key,
                Some(&json!({"phone": CALLEE, "name": "Ada", "record": true,
                "metadata": {"source": "cargo xtask demo"}})),
            );
            check(&r, 201)?;
            Ok(r.json)
        })?;
        call["id"].as_str().unwrap_or_default().to_string()
    };
    println!("\ncall {call_id}:");
    let started = Instant::now();
    let mut last = String::new();
    let final_call = loop {
        stopped(&stop)?;
        let c = edge.call("GET", &format!("/v1/calls/{call_id}"), &key, None);
        check(&c, 200)?;
        let status = c.json["status"].as_str().unwrap_or("?").to_string();
        if status != last {
            println!("  {:>5.1} s  {status}", started.elapsed().as_secs_f64());
            last = status.clone();
        }
        if ["completed", "failed", "busy", "no_answer", "cancelled"].contains(&status.as_str()) {
            break c.json;
        }
        if started.elapsed() > Duration::from_secs(90) {
            return Err(format!(
                "the call did not end within 90 s (status {status}); see {}",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "  ended: {} ({})",
        final_call["status"], final_call["ended_reason"]
    );

    let transcript = edge.request(
        "GET",
        &format!("/v1/calls/{call_id}/transcript"),
        &[
            ("authorization", &format!("Bearer {key}")),
            ("accept", "text/plain"),
        ],
        None,
    )?;
    println!(
        "\ntranscript (GET /v1/calls/{call_id}/transcript):\n{}",
        transcript.text
    );
    let summary = edge.call(
        "GET",
        &format!("/v1/calls/{call_id}/transcript.json"),
        &key,
        None,
    );
    println!(
        "summary: {}\noutcome: {}\nanalysis: {}",
        summary.json["summary"], summary.json["outcome"], final_call["analysis"]
    );
    match tool.next(Duration::from_secs(1)) {
        Some(req) => println!(
            "\ntool server: {} {} (signature {})",
            req.head.lines().next().unwrap_or(""),
            String::from_utf8_lossy(&req.body),
            if req.signed_by(&tools_secret) {
                "verified"
            } else {
                "WRONG"
            }
        ),
        None => println!("\ntool server: not called (the callee's answer was not a yes)"),
    }

    // Webhooks arrive through the queue within a few seconds; the recording
    // is uploaded after the call ends (recording.saved).
    let types = |got: &[Value]| -> Vec<String> {
        got.iter()
            .filter_map(|r| WebhookReceiver::event(r)["type"].as_str().map(String::from))
            .collect()
    };
    let wanted = ["call.completed", "transcript.saved", "recording.saved"];
    let events = hooks
        .wait_for(
            "demo",
            Duration::from_secs(30),
            "the call's webhooks",
            |got| {
                let t = types(got);
                wanted.iter().all(|w| t.iter().any(|x| x == w))
                    || t.iter().any(|x| x == "call.failed")
            },
        )
        .unwrap_or_else(|e| {
            println!("  ({e})");
            hooks.received("demo")
        });
    println!("\nwebhooks received and verified with standardwebhooks:");
    for r in &events {
        let e = WebhookReceiver::event(r);
        println!(
            "  {} {} verified={}",
            e["id"].as_str().unwrap_or("-"),
            e["type"].as_str().unwrap_or("?"),
            r["verified"]
        );
    }
    let recording = dir.join(format!("recording-{call_id}.wav"));
    let wav = edge.request(
        "GET",
        &format!("/v1/calls/{call_id}/recording"),
        &[("authorization", &format!("Bearer {key}"))],
        None,
    )?;
    if wav.status == 200 {
        std::fs::write(&recording, &wav.bytes)
            .map_err(|e| format!("write {}: {e}", recording.display()))?;
        println!(
            "\nrecording (GET /v1/calls/{call_id}/recording, from R2; stereo: left agent, right callee, {} bytes): {}",
            wav.bytes.len(),
            recording.display()
        );
    } else {
        println!("\nrecording: not available ({} {})", wav.status, wav.text);
    }
    println!("edge: {}   log: {}\n", edge.base, edge.log_path.display());
    if !once {
        println!("The edge keeps running for you to try the API (key above is valid). Press Ctrl-C to stop everything.");
        println!(
            "  curl -s {}/v1/calls -H 'Authorization: Bearer {key}'",
            edge.base
        );
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!("stopping everything the demo started ...");
    if final_call["status"] != "completed" {
        return Err(format!(
            "the call ended {} ({})",
            final_call["status"], final_call["ended_reason"]
        ));
    }
    Ok(())
}

/// The ids of the tenant's inbound calls (the newest 100).
fn inbound_call_ids(edge: &Edge, key: &str) -> Result<Vec<String>, String> {
    let r = edge.call("GET", "/v1/calls?limit=100", key, None);
    check(&r, 200)?;
    Ok(r.json["data"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter(|c| c["direction"] == "inbound")
                .filter_map(|c| c["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// The local admin token lives in `.voxline/demo/admin-token` (gitignored).
fn load_or_create_admin_token(dir: &Path) -> Result<String, String> {
    let path = dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let token = voxline_e2e::random_hex(16);
    std::fs::write(&path, &token).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(token)
}

/// Reuses the demo tenant across runs (ids in `demo.json`); the agent's
/// script, its tool (at `tool_url`, this run's) and its analysis plan are
/// refreshed each run: (tenant id, agent id, the tools secret, new each run).
fn provision(
    edge: &Edge,
    dir: &Path,
    tool_url: &str,
    prompt: &str,
) -> Result<(String, String, String), String> {
    let path = dir.join("demo.json");
    let agent = json!({"name": "Appointment reminder", "system_prompt": prompt, "language": "en-US", "default_engine": "local",
        "tools": [{"name": "confirm_appointment", "description": "Marks tomorrow's appointment confirmed.",
                   "parameters": {"type": "object", "properties": {"confirmed": {"type": "boolean"}}},
                   "url": tool_url, "timeout_ms": 5000}],
        "rotate_tools_secret": true,
        "analysis": {"success_outcomes": ["yes"],
                     "data_schema": {"type": "object", "properties": {"make_it": {"type": "boolean"}}}}});
    let secret = |r: &Resp| -> Result<String, String> {
        r.json["tools_secret"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("no tools_secret in {}", r.text))
    };
    if let Some(saved) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
    {
        let (tid, aid) = (
            saved["tenant_id"].as_str().unwrap_or(""),
            saved["agent_id"].as_str().unwrap_or(""),
        );
        let r = edge.admin(
            "PATCH",
            &format!("/admin/tenants/{tid}/agents/{aid}"),
            Some(&agent),
        );
        if r.status == 200 {
            return Ok((tid.to_string(), aid.to_string(), secret(&r)?));
        }
    }
    let t = edge.admin(
        "POST",
        "/admin/tenants",
        Some(&json!({"name": "Demo Dental"})),
    );
    check(&t, 201)?;
    let tid = t.json["id"].as_str().unwrap_or_default().to_string();
    let a = edge.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(&agent),
    );
    check(&a, 201)?;
    let aid = a.json["id"].as_str().unwrap_or_default().to_string();
    std::fs::write(
        &path,
        json!({"tenant_id": tid, "agent_id": aid}).to_string(),
    )
    .map_err(|e| e.to_string())?;
    Ok((tid, aid, secret(&a)?))
}
