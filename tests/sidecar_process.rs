//! End-to-end: real `voxline-media-sidecar` processes against real
//! `wrangler dev`, over HTTP/1.1 directly and over HTTP/3 through a real caddy
//! (the QUIC terminator, as Cloudflare is in production). Calls are "answered"
//! by the sidecar's `--simulate-answer` test aid until SIP lands (issue 4);
//! everything between the API and the sidecar is the production path.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::{log_tails, make_pki, Caddy};

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 15)
    }
}

fn place(w: &World, body: Value) -> String {
    let r = w
        .edge
        .call("POST", "/v1/calls", &w.tenant.key, Some(&body))
        .expect(201);
    r.json["id"].as_str().unwrap().to_string()
}

/// Waits for a status, recording every status seen on the way.
fn wait_status(w: &World, id: &str, want: &str, within: Duration) -> (Value, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let call = w
            .edge
            .call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None)
            .expect(200)
            .json;
        let s = call["status"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == want {
            return (call, seen);
        }
        assert!(
            Instant::now() < deadline,
            "call {id} never became {want}; saw {seen:?}: {call}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn a_call_is_leased_dialled_and_completed_over_http1(w: &World) {
    let _sc = Sidecar::start(&w.edge, &w.dir, "proc-h1", &w.edge.base, &[], 1.0);
    let id = place(w, json!({"phone": "+14155550201"}));
    let (call, seen) = wait_status(w, &id, "completed", Duration::from_secs(20));
    assert!(
        seen.contains(&"in_progress".to_string()),
        "statuses seen: {seen:?}"
    );
    assert_eq!(
        (call["ended_reason"].as_str(), call["attempts"].as_u64()),
        (Some("agent_hangup"), Some(1))
    );
    for field in ["dispatched_at", "answered_at", "ended_at"] {
        assert!(call[field].is_string(), "{field} missing: {call}");
    }
}

fn sigkill_mid_call_ends_media_lost_and_a_second_sidecar_takes_the_retry(w: &World) {
    let mut first = Sidecar::start(&w.edge, &w.dir, "proc-kill-a", &w.edge.base, &[], 60.0);
    // max_seconds bounds how long the killed sidecar could still be talking:
    // the retry waits for that (plus DISPATCH_LOST_MARGIN_MS), never less.
    let id = place(
        w,
        json!({"phone": "+14155550202", "retries": 1, "retry_delay_minutes": 1, "max_seconds": 10}),
    );
    wait_status(w, &id, "in_progress", Duration::from_secs(20));
    first.sigkill();
    let (call, _) = wait_status(w, &id, "scheduled", Duration::from_secs(25));
    assert_eq!(call["ended_reason"], "media_lost", "{call}");
    let _second = Sidecar::start(&w.edge, &w.dir, "proc-kill-b", &w.edge.base, &[], 1.0);
    let (call, seen) = wait_status(w, &id, "completed", Duration::from_secs(30));
    assert_eq!(call["attempts"], 2, "{call}; saw {seen:?}");
    assert!(!first.log().is_empty());
}

fn hangup_through_the_api_reaches_the_sidecar(w: &World) {
    let sc = Sidecar::start(&w.edge, &w.dir, "proc-hang", &w.edge.base, &[], 60.0);
    let id = place(w, json!({"phone": "+14155550203"}));
    wait_status(w, &id, "in_progress", Duration::from_secs(20));
    w.edge
        .call(
            "POST",
            &format!("/v1/calls/{id}/hangup"),
            &w.tenant.key,
            None,
        )
        .expect(202);
    let t = Instant::now();
    let (call, _) = loop {
        let call = w
            .edge
            .call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None)
            .expect(200)
            .json;
        if call["status"]
            .as_str()
            .is_some_and(|s| ["completed", "cancelled"].contains(&s))
        {
            break (call, ());
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "hangup never took effect: {call}\n{}",
            sc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(call["ended_reason"], "hangup_requested", "{call}");
}

fn the_whole_lease_ack_event_path_works_over_http3_through_caddy(w: &World) {
    let pki = make_pki(&w.dir);
    let caddy = Caddy::start(&w.edge.base, &pki, &w.dir);
    let url = format!("https+h3://127.0.0.1:{}", caddy.port);
    let _sc = Sidecar::start(
        &w.edge,
        &w.dir,
        "proc-h3",
        &url,
        &[("VOXLINE_CA_CERT", pki.ca_pem.display().to_string())],
        1.0,
    );
    let id = place(w, json!({"phone": "+14155550204"}));
    let (call, seen) = wait_status(w, &id, "completed", Duration::from_secs(30));
    assert!(seen.contains(&"in_progress".to_string()), "{seen:?}");
    assert_eq!(call["ended_reason"], "agent_hangup");
    // Caddy's access log proves every sidecar request arrived over HTTP/3.
    let entries = caddy.access_entries();
    let uri = |e: &Value| e["request"]["uri"].as_str().unwrap_or("").to_string();
    let proto = |e: &Value| e["request"]["proto"].as_str().unwrap_or("").to_string();
    for path in [
        "/v1/sidecar/register",
        "/v1/sidecar/lease",
        "/v1/sidecar/ack",
        "/v1/sidecar/events",
    ] {
        assert!(
            entries.iter().any(|e| uri(e) == path),
            "no {path} in caddy's log"
        );
    }
    let not_h3: Vec<String> = entries
        .iter()
        .filter(|e| proto(e) != "HTTP/3.0")
        .map(|e| format!("{} {}", proto(e), uri(e)))
        .collect();
    assert!(not_h3.is_empty(), "requests not over HTTP/3: {not_h3:?}");
}

fn main() -> std::process::ExitCode {
    run_suite(
        "sidecar_process",
        || {
            require_sidecar_bin()?;
            let opts = EdgeOptions::fresh("sidecar_process").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("sidecars");
            Ok(World { edge, tenant, dir })
        },
        &[
            (
                "a_call_is_leased_dialled_and_completed_over_http1",
                a_call_is_leased_dialled_and_completed_over_http1,
            ),
            (
                "sigkill_mid_call_ends_media_lost_and_a_second_sidecar_takes_the_retry",
                sigkill_mid_call_ends_media_lost_and_a_second_sidecar_takes_the_retry,
            ),
            (
                "hangup_through_the_api_reaches_the_sidecar",
                hangup_through_the_api_reaches_the_sidecar,
            ),
            (
                "the_whole_lease_ack_event_path_works_over_http3_through_caddy",
                the_whole_lease_ack_event_path_works_over_http3_through_caddy,
            ),
        ],
    )
}
