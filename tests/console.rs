//! End-to-end, the operator console (`GET /console`, issue 19) in headless
//! Chromium: the stack as in full_stack.rs (wrangler dev, a real sidecar, a
//! baresip callee, the local engine, a verifying webhook receiver), and
//! `tests/console/drive.py` driving Debian's chromium through chromedriver
//! with python3-selenium (the WebDriver client Debian ships; the protocol's
//! waits, alerts and screenshots are its job, not a hand-written client's).
//! The browser logs in, watches the call placed here go from `queued` (the
//! sidecar starts only once the list shows it) to `completed` on the live list, plays the recording, seeks from a transcript turn,
//! redelivers a webhook and sees the new attempt, mints and revokes a key,
//! edits the agent (a refused value shown next to its field, then a
//! keyboard-only save), sends the webhook endpoint a test event and follows
//! it to the receiver's answer, and reads the sidecar's load and its plotted
//! lease turnarounds. Each page's screenshot goes to docs/console/*.png.
//! What the browser reports is checked here against the API.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::*;

const SCRIPT: &str = "You call patients of Demo Dental to confirm tomorrow's appointment.
[script]
greeting: Hello, this is Demo Dental calling about your appointment tomorrow at ten. Can you make it?
yes|yeah|sure|i can -> Great, we will see you tomorrow at ten. Goodbye! [end]
no|can't|cannot -> No problem, we will call you to find a new time. Goodbye! [end]
* -> Sorry, I didn't catch that. Can you make it tomorrow at ten?
goodbye: Thank you, goodbye.
[/script]";

/// What the webhook receiver answers: the delivery log keeps its start.
const RECEIVER_ANSWER: &str = "received by the console suite";

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
    hooks: WebhookReceiver,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        self.edge.diagnostics() + &log_tails(&self.dir, 12)
    }
}

fn the_console_in_chromium_follows_a_real_call(w: &World) {
    let body = json!({"default_engine": "local", "system_prompt": SCRIPT, "name": "Appointment reminders"});
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
    let port = free_sip_port();
    let mut pcm = vec![0i16; 8000 * 7];
    pcm.extend(flite_8k(&w.dir, "slt", "Yes, I can make it.").unwrap());
    pcm.extend(vec![0i16; 8000 * 9]);
    let wav = w.dir.join("callee.wav");
    write_wav(&wav, 8000, &pcm).unwrap();
    let _phone = start_baresip(&w.dir, "yes", "+15555550101", port, &wav, "PCMU", 60).unwrap();

    let shots = repo_root().join("docs/console");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = Command::new("/usr/bin/python3")
        .arg(repo_root().join("tests/console/drive.py"))
        .env("CONSOLE_URL", &w.edge.base)
        .env("CONSOLE_KEY", &w.tenant.key)
        .env("CONSOLE_ADMIN", &w.edge.admin_token)
        .env("CONSOLE_TENANT", &w.tenant.id)
        .env("CONSOLE_AGENT", &w.tenant.agent_id)
        .env("CONSOLE_SIDECAR", "console-1")
        .env("CONSOLE_SHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with selenium (Debian python3-selenium)");
    let guard_pid = browser.id() as i32;
    let mut to_browser = browser.stdin.take().unwrap();
    let lines = {
        let out = BufReader::new(browser.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                println!("  browser: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let deadline = Instant::now() + Duration::from_secs(150);
    let next_line = |want: &str| -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.starts_with(want) => return l,
                Ok(l) if l.starts_with("FAILED") => {
                    unsafe { libc::kill(guard_pid, libc::SIGKILL) };
                    panic!("the browser script failed: {l}")
                }
                Ok(_) => {}
                Err(e) => {
                    unsafe { libc::kill(guard_pid, libc::SIGKILL) };
                    panic!("no {want} from the browser script: {e}")
                }
            }
        }
    };
    next_line("READY");
    // Logged in and watching: now the call.
    let id = w
        .edge
        .call(
            "POST",
            "/v1/calls",
            &w.tenant.key,
            Some(&json!({"phone": "+15555550101", "record": true})),
        )
        .expect(201)
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    writeln!(to_browser, "{id}").unwrap();
    // No sidecar yet, so the call waits in the queue: once the list shows it
    // queued, the sidecar starts and the call goes on (the browser watching).
    next_line(&format!("list shows {id}: queued"));
    let _sidecar = start_sip_sidecar(&w.edge, &w.dir, "console-1", port, "").unwrap();
    let result_line = next_line("RESULT ");
    let _ = browser.wait();
    let r: Value = serde_json::from_str(&result_line["RESULT ".len()..]).unwrap();

    // Logged in, the credentials in the tab's session storage, none in the URL.
    assert_eq!(r["stored_in_session"], true, "{r}");
    let url = r["url_after_login"].as_str().unwrap();
    assert!(
        !url.contains(&w.tenant.key) && !url.contains(&w.edge.admin_token),
        "{url}"
    );
    // Live: the list showed the call before it ended, then completed.
    let seen: Vec<&str> = r["statuses_seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        (seen.first(), seen.last()),
        (Some(&"queued"), Some(&"completed")),
        "{seen:?}"
    );
    assert!(
        seen.len() >= 3,
        "no step between queued and completed: {seen:?}"
    );
    let call = w
        .edge
        .call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None)
        .expect(200)
        .json;
    assert_eq!(call["status"], "completed", "{call}");

    // The recording played: decoded (WebAudio) and advanced (<audio>).
    assert_eq!(r["play"], "ok", "{r}");
    let rec = w
        .edge
        .call(
            "GET",
            &format!("/v1/calls/{id}/recording"),
            &w.tenant.key,
            None,
        )
        .expect(200);
    let duration_ms: f64 = rec
        .header("x-recording-duration-ms")
        .unwrap()
        .parse()
        .unwrap();
    let decoded = r["waveform_seconds"].as_f64().unwrap();
    assert!(
        (decoded * 1000.0 - duration_ms).abs() < 100.0,
        "waveform of {decoded} s vs the recording's {duration_ms} ms"
    );
    assert!(r["played_to"].as_f64().unwrap() > 0.5, "{r}");

    // The transcript shown is the API's, and a turn seeks to its start.
    let t = w.edge.transcript(&w.tenant.key, &id);
    let api_turns: Vec<(String, u64)> = t["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["role"].as_str().unwrap().to_string(),
                t["start_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    let shown: Vec<(String, u64)> = r["turns_shown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["role"].as_str().unwrap().to_string(),
                t["start_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, api_turns);
    assert!(api_turns.len() >= 2, "{t}");
    let seek = &r["seek"];
    let start = seek["start_ms"].as_f64().unwrap() / 1000.0;
    assert!(start > 0.0, "{seek}");
    assert!(
        (seek["after"].as_f64().unwrap() - start).abs() < 0.01,
        "the turn did not seek to its start: {seek}"
    );
    assert!(
        (seek["before"].as_f64().unwrap() - start).abs() > 0.2,
        "already there before the click: {seek}"
    );

    // The redelivery is a new, manual attempt of that delivery.
    let redelivery = &r["redelivery"];
    let did = redelivery["delivery_id"].as_str().unwrap();
    let d = w
        .edge
        .call(
            "GET",
            &format!("/v1/webhooks/deliveries/{did}"),
            &w.tenant.key,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(d["call_id"], json!(id), "{d}");
    let attempts = d["attempts"].as_array().unwrap();
    assert!(
        attempts.len() as u64 > redelivery["attempts_before"].as_u64().unwrap(),
        "{d}"
    );
    assert_eq!(attempts.last().unwrap()["manual"], true, "{d}");
    assert!(
        redelivery["new_attempt"]
            .as_str()
            .is_some_and(|s| s.contains("manual")),
        "{redelivery}"
    );
    let received = w.hooks.received("console");
    assert!(
        received.len() >= 2 && received.iter().all(|r| r["verified"] == true),
        "{received:?}"
    );

    // The key minted in the browser worked until it revoked it.
    let minted = r["minted"]["key"].as_str().unwrap();
    assert!(minted.starts_with("ak_"), "{r}");
    w.edge
        .call("GET", "/v1/calls?limit=1", minted, None)
        .expect_error(401, "invalid_credentials");
    let keys = w
        .edge
        .admin(
            "GET",
            &format!("/admin/tenants/{}/api-keys", w.tenant.id),
            None,
        )
        .expect(200)
        .json;
    let k = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == r["minted"]["id"])
        .cloned()
        .unwrap_or_default();
    assert!(k["revoked_at"].is_string(), "{keys}");

    // The operator pages show what the admin API holds.
    assert!(
        r["agents_text"]
            .as_str()
            .unwrap()
            .contains("Appointment reminders"),
        "{r}"
    );
    assert!(r["webhooks_text"]
        .as_str()
        .unwrap()
        .contains(&w.hooks.url("console")));
    assert!(r["sidecars_text"].as_str().unwrap().contains("console-1"));
    // The agent edit: the refused value was shown next to its field (and
    // focused), the saved one is the API's and the page shows it.
    let edit = &r["agent_edit"];
    let refused = &edit["refused"];
    let silence_id = format!("agent-{}-silence_timeout_seconds", w.tenant.agent_id);
    assert!(
        !refused["error"].as_str().unwrap_or("").is_empty(),
        "{edit}"
    );
    assert_eq!(refused["aria_invalid"], "true", "{edit}");
    assert_eq!(refused["focused"], json!(silence_id), "{edit}");
    assert!(
        refused["described_by"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{silence_id}-error")),
        "{edit}"
    );
    let agent = w
        .edge
        .admin(
            "GET",
            &format!(
                "/admin/tenants/{}/agents/{}",
                w.tenant.id, w.tenant.agent_id
            ),
            None,
        )
        .expect(200)
        .json;
    assert_eq!(agent["name"], "Appointment reminders (edited)", "{agent}");
    assert_eq!(agent["silence_timeout_seconds"], 45, "{agent}");
    assert_eq!(edit["title"], agent["name"], "{edit}");
    assert_eq!(edit["name_shown"], agent["name"], "{edit}");
    assert_eq!(edit["silence_shown"], "45", "{edit}");

    // The test event: a new delivery in the log, delivered to the receiver
    // (verified there), with the receiver's answer.
    let test = &r["test_send"];
    let tid = test["delivery_id"].as_str().unwrap();
    let d = w
        .edge
        .call(
            "GET",
            &format!("/v1/webhooks/deliveries/{tid}"),
            &w.tenant.key,
            None,
        )
        .expect(200)
        .json;
    assert_eq!(
        (&d["event_type"], &d["status"], &d["kind"]),
        (
            &json!("webhook.test"),
            &json!("delivered"),
            &json!("webhook")
        ),
        "{d}"
    );
    assert_eq!(test["status"], "delivered", "{test}");
    let answer = &d["attempts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(answer["status_code"], 200, "{d}");
    assert_eq!(answer["response_snippet"], RECEIVER_ANSWER, "{d}");
    assert!(
        test["text"]
            .as_str()
            .unwrap_or("")
            .contains(RECEIVER_ANSWER),
        "{test}"
    );
    let tested = w
        .hooks
        .received("console")
        .into_iter()
        .filter(|r| WebhookReceiver::event(r)["type"] == "webhook.test")
        .collect::<Vec<_>>();
    assert!(
        tested.len() == 1 && tested[0]["verified"] == true,
        "{tested:?}"
    );
    assert_eq!(tested[0]["webhook_id"], d["event_id"]);
    // Not a call's delivery: the call page's list (call_id filter) leaves it out.
    let of_call = w
        .edge
        .call(
            "GET",
            &format!("/v1/webhooks/deliveries?call_id={id}"),
            &w.tenant.key,
            None,
        )
        .expect(200)
        .json;
    let of_call = of_call["data"].as_array().unwrap();
    assert!(!of_call.is_empty());
    assert!(
        of_call.iter().all(|x| x["call_id"] == json!(id)),
        "{of_call:?}"
    );

    // The sidecar's load as the API has it (its call is over), and the
    // turnaround samples the page plotted.
    let sidecars = w
        .edge
        .admin("GET", "/admin/sidecars", None)
        .expect(200)
        .json;
    let sc = sidecars["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "console-1")
        .cloned()
        .unwrap();
    let load = &sc["load"];
    assert_eq!(load["capacity"], 4, "{sc}");
    let shown = &r["sidecar_load"];
    assert_eq!(
        shown["load"],
        json!(format!("{} / {}", load["active_calls"], load["capacity"])),
        "{shown} vs {sc}"
    );
    assert!(shown["points"].as_u64().unwrap() >= 1, "{shown}");
    assert!(
        !load["lease_turnaround_samples"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{sc}"
    );

    // Nothing the page needs is blocked by its own policy, no script error.
    assert_eq!(r["csp_violations"], json!([]), "{r}");
    assert_eq!(r["script_errors"], json!([]), "{r}");
    for page in [
        "login",
        "calls",
        "call",
        "keys",
        "agents",
        "webhooks",
        "webhooks-test",
        "sidecars",
    ] {
        let png = std::fs::read(shots.join(format!("{page}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{page}.png");
    }
}

fn main() -> std::process::ExitCode {
    run_suite(
        "console",
        || {
            require_sidecar_bin()?;
            for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
                if !std::path::Path::new(bin).exists() {
                    return Err(format!(
                        "{bin} is missing: `cargo xtask bootstrap` installs chromium, chromium-driver, python3-selenium"
                    ));
                }
            }
            let opts = EdgeOptions::fresh("console").fast_dispatch();
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("console");
            let mut hooks = WebhookReceiver::new(&dir);
            hooks.start();
            hooks.subscribe(
                &edge,
                &tenant.id,
                "console",
                json!({"events": ["call.completed", "transcript.saved"]}),
            );
            hooks.configure_one("console", "body", json!(RECEIVER_ANSWER));
            Ok(World {
                edge,
                tenant,
                dir,
                hooks,
            })
        },
        &[(
            "the_console_in_chromium_follows_a_real_call",
            the_console_in_chromium_follows_a_real_call,
        )],
    )
}
