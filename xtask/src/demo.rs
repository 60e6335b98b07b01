//! `cargo xtask demo`: builds the edge, runs it under `wrangler dev` with local
//! state in `.voxline/demo/`, provisions a demo tenant, agent and API key
//! through the admin API, places a call through the public API, and prints
//! how to use it. Stays up until Ctrl-C (or exits at once with `--once`),
//! and always stops the processes it started.

use crate::{bootstrap, build_edge, root, step};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use voxline_e2e::{Edge, EdgeOptions};

const DEMO_PHONE: &str = "+15555550123";

pub fn run_demo(once: bool) -> Result<(), String> {
    step("bootstrap", bootstrap::ensure_all)?;
    step("edge wasm build", build_edge)?;
    let dir = root().join(".voxline/demo");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).map_err(|e| format!("Ctrl-C handler: {e}"))?;
    }
    let admin_token = load_or_create_admin_token(&dir)?;
    let edge = step("start edge (wrangler dev)", || {
        Edge::start(EdgeOptions {
            admin_token,
            state_dir: dir.join("state"),
            log_path: dir.join("wrangler.log"),
            vars: Vec::new(),
            // The usual wrangler port when it is free, so the printed URLs are familiar.
            port: std::net::TcpListener::bind("127.0.0.1:8787").ok().map(|_| 8787),
        })
    })?;
    let (tenant_id, agent_id) = step("demo tenant and agent", || provision(&edge, &dir))?;
    let key = step("demo API key", || {
        let r = edge.admin("POST", &format!("/admin/tenants/{tenant_id}/api-keys"), Some(&json!({"name": "demo"})));
        check(&r, 201)?;
        r.json["key"].as_str().map(String::from).ok_or_else(|| "no key in response".to_string())
    })?;
    let call = step("place a call", || {
        let r = edge.call(
            "POST",
            "/v1/calls",
            &key,
            Some(&json!({"phone": DEMO_PHONE, "name": "Demo Callee", "metadata": {"source": "xtask demo"}})),
        );
        check(&r, 201)?;
        Ok(r.json)
    })?;
    let call_id = call["id"].as_str().unwrap_or_default().to_string();
    let fetched = edge.call("GET", &format!("/v1/calls/{call_id}"), &key, None);
    check(&fetched, 200)?;

    let base = &edge.base;
    println!(
        "\nvoxline edge is running at {base}  (state: {}, log: {})\n\
         tenant {tenant_id}, default agent {agent_id}\n\
         API key (shown once; only its hash is stored): {key}\n\n\
         The call was accepted:\n{}\n\n\
         Try it:\n\
         curl -s {base}/v1/calls -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"phone\":\"+14155550100\",\"name\":\"Ada\"}}'\n\
         curl -s {base}/v1/calls/{call_id} -H 'Authorization: Bearer {key}'\n\
         curl -s '{base}/v1/calls?status=queued&limit=10' -H 'Authorization: Bearer {key}'\n\
         curl -s -X POST {base}/v1/calls/{call_id}/hangup -H 'Authorization: Bearer {key}'\n\
         curl -s {base}/v1/openapi.json\n\n\
         Not yet in the demo: dialing. The demo runs no media sidecar until SIP lands (issue 4), so the call stays queued.",
        dir.join("state").display(),
        edge.log_path.display(),
        serde_json::to_string_pretty(&fetched.json).unwrap_or_default(),
    );
    if once {
        println!("\n--once: stopping the edge.");
        return Ok(());
    }
    println!("\nPress Ctrl-C to stop everything this demo started.");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\nstopping the edge ...");
    drop(edge);
    Ok(())
}

fn check(r: &voxline_e2e::Resp, status: u16) -> Result<(), String> {
    if r.status == status {
        Ok(())
    } else {
        Err(format!("expected HTTP {status}, got {}: {}", r.status, r.text))
    }
}

/// The local admin token lives in `.voxline/demo/admin-token` (gitignored).
fn load_or_create_admin_token(dir: &std::path::Path) -> Result<String, String> {
    let path = dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(|e| format!("read /dev/urandom: {e}"))?;
    let token: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &token).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(token)
}

/// Reuses the demo tenant across runs (its ids are kept in `demo.json`).
fn provision(edge: &Edge, dir: &std::path::Path) -> Result<(String, String), String> {
    let path = dir.join("demo.json");
    if let Some(saved) = std::fs::read_to_string(&path).ok().and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
        let (tid, aid) = (saved["tenant_id"].as_str().unwrap_or(""), saved["agent_id"].as_str().unwrap_or(""));
        if edge.admin("GET", &format!("/admin/tenants/{tid}/agents/{aid}"), None).status == 200 {
            return Ok((tid.to_string(), aid.to_string()));
        }
    }
    let t = edge.admin("POST", "/admin/tenants", Some(&json!({"name": "Demo Dental"})));
    check(&t, 201)?;
    let tid = t.json["id"].as_str().unwrap_or_default().to_string();
    let a = edge.admin(
        "POST",
        &format!("/admin/tenants/{tid}/agents"),
        Some(&json!({
            "name": "Appointment reminder",
            "system_prompt": "You call patients of Demo Dental to confirm tomorrow's appointment.",
            "language": "en-US",
            "default_engine": "local",
        })),
    );
    check(&a, 201)?;
    let aid = a.json["id"].as_str().unwrap_or_default().to_string();
    std::fs::write(&path, json!({"tenant_id": tid, "agent_id": aid}).to_string()).map_err(|e| e.to_string())?;
    Ok((tid, aid))
}
