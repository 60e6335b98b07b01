//! End-to-end text messages (SMS): `POST /v1/messages` -> edge (wrangler dev)
//! -> a real sidecar's lease -> SIP MESSAGE to a sipp trunk on 127.0.0.1,
//! which accepts it (202), then texts the tenant's number back and sends an
//! IMDN delivery notification for the first (`tests/sipp/sms_trunk.xml`).
//! Asserts the message's statuses (`sent`, then `delivered`), the received
//! message, and the signed `message.*` webhooks (verified by the
//! `standardwebhooks` receiver).
//!
//! Needs the sidecar's SIP MESSAGE support (another branch) and the numbers
//! admin API (`PUT /admin/tenants/{t}/numbers/{e164}`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::*;

const NUMBER: &str = "+14155550100";
const TO: &str = "+14155550199";
const TEXT: &str = "Your table is ready";

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    hooks: WebhookReceiver,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 20)
    }
}

/// sipp as the trunk, running `tests/sipp/<scenario>` once with its
/// placeholders replaced.
fn trunk(w: &World, scenario: &str, port: u16, subst: &[(&str, &str)]) -> ChildGuard {
    let mut text =
        std::fs::read_to_string(repo_root().join("tests/sipp").join(scenario)).expect("scenario");
    for (k, v) in subst {
        text = text.replace(k, v);
    }
    let sf = w.dir.join(scenario);
    std::fs::write(&sf, text).unwrap();
    let log = std::fs::File::create(w.dir.join(format!("sipp-{scenario}.log"))).unwrap();
    let child = Command::new(SIPP.require())
        .args(["-sf", sf.to_str().unwrap(), "-i", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "60s", "-timeout_error", "-trace_msg"])
        .current_dir(&w.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sipp");
    ChildGuard(child)
}

/// Polls a message until its status is one of `want`.
fn wait_message(w: &World, id: &str, want: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let m = w
            .edge
            .call("GET", &format!("/v1/messages/{id}"), &w.tenant.key, None)
            .expect(200)
            .json;
        if want.iter().any(|s| m["status"] == *s) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "message {id} never reached {want:?}: {m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hook_events(w: &World) -> Vec<Value> {
    w.hooks
        .received("texts")
        .iter()
        .map(WebhookReceiver::event)
        .collect()
}

fn a_text_is_sent_through_the_trunk_delivered_and_answered(w: &World) {
    let port = free_tcp_udp_port();
    let mut sipp = trunk(
        w,
        "sms_trunk.xml",
        port,
        &[("[text]", TEXT), ("[tenant_number]", NUMBER)],
    );
    let _sidecar = start_sip_sidecar(&w.edge, &w.dir, "sc-sms", port, "text_imdn = true").unwrap();
    let sent = w
        .edge
        .call(
            "POST",
            "/v1/messages",
            &w.tenant.key,
            Some(&json!({"from": NUMBER, "to": TO, "body": TEXT, "metadata": {"order": 7}})),
        )
        .expect(202);
    let id = sent.json["id"].as_str().expect("id").to_string();
    assert_eq!(sent.json["status"], "queued");
    let m = wait_message(
        w,
        &id,
        &["sent", "delivered", "failed"],
        Duration::from_secs(30),
    );
    assert_ne!(m["status"], "failed", "{m}");
    assert_eq!(m["sip_code"], 202, "{m}");
    let m = wait_message(w, &id, &["delivered"], Duration::from_secs(30));
    assert!(m["delivered_at"].is_string(), "{m}");

    // The trunk's text to the tenant's number.
    let deadline = Instant::now() + Duration::from_secs(30);
    let received = loop {
        let page = w
            .edge
            .call("GET", "/v1/messages?direction=inbound", &w.tenant.key, None)
            .expect(200)
            .json;
        if let Some(m) = page["data"].as_array().and_then(|d| d.first()) {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "no inbound message");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (
            received["status"].as_str(),
            received["from"].as_str(),
            received["to"].as_str(),
            received["body"].as_str()
        ),
        (
            Some("received"),
            Some("+447700900123"),
            Some(NUMBER),
            Some("Running late, sorry")
        )
    );

    // Each event once, signed (the receiver verifies with standardwebhooks).
    let events = w
        .hooks
        .wait_for(
            "texts",
            Duration::from_secs(30),
            "three message events",
            |got| got.len() >= 3,
        )
        .unwrap();
    assert!(events.iter().all(|r| r["verified"] == true), "{events:?}");
    let mut types: Vec<String> = hook_events(w)
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["message.delivered", "message.received", "message.sent"]
    );
    for e in hook_events(w) {
        if e["type"] != "message.received" {
            assert_eq!(e["data"]["id"], id.as_str(), "{e}");
            assert_eq!(e["data"]["metadata"], json!({"order": 7}), "{e}");
        }
    }
    let status = sipp.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "sipp: {status:?} {}",
        log_tails(&w.dir, 30)
    );
}

fn a_number_that_cannot_text_is_refused(w: &World) {
    w.edge
        .call(
            "POST",
            "/v1/messages",
            &w.tenant.key,
            Some(&json!({"from": "+14155550111", "to": TO, "body": "x"})),
        )
        .expect_error(422, "unknown_number");
}

fn main() -> std::process::ExitCode {
    run_suite(
        "messages",
        || {
            require_sidecar_bin()?;
            let opts = EdgeOptions::fresh("messages").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("texting");
            edge.admin(
                "PUT",
                &format!("/admin/tenants/{}/numbers/{NUMBER}", tenant.id),
                Some(&json!({"sms_enabled": true, "status": "active"})),
            );
            let number = edge
                .admin(
                    "GET",
                    &format!("/admin/tenants/{}/numbers/{NUMBER}", tenant.id),
                    None,
                )
                .expect(200);
            if number.json["sms_enabled"] != true {
                return Err(format!("the number is not texting: {}", number.text));
            }
            let mut hooks = WebhookReceiver::new(&dir);
            hooks.start();
            hooks.subscribe(&edge, &tenant.id, "texts", json!({"retry_schedule": [1, 2],
                "events": ["message.sent", "message.failed", "message.received", "message.delivered", "message.undelivered"]}));
            Ok(World {
                edge,
                tenant,
                dir,
                hooks,
            })
        },
        &[
            (
                "a_text_is_sent_through_the_trunk_delivered_and_answered",
                a_text_is_sent_through_the_trunk_delivered_and_answered,
            ),
            (
                "a_number_that_cannot_text_is_refused",
                a_number_that_cannot_text_is_refused,
            ),
        ],
    )
}
