//! Issue 19, the operator's side of the built binary: Prometheus metrics and
//! `/healthz` scraped over loopback HTTP (parsed with `prometheus-parse`, an
//! independent reader of the text format), `--check-config`, and a SIGHUP
//! reload of the trunks. Each test runs `voxline-media-sidecar` itself
//! against the fake edge of `support/`, and sipp as the trunk.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use voxline_shared::sidecar_link::{EventKind, RegistrationAck};
use voxline_testkit::process::ChildGuard;
use voxline_testkit::{free_tcp_port, free_udp_port, udp_port_bound, SIPP};

const LINK_SECRET: &str = "test-secret-0123456789abcdef";
const BIN: &str = env!("CARGO_BIN_EXE_voxline-media-sidecar");

async fn fake_edge() -> support::FakeEdge {
    support::FakeEdge::start(
        LINK_SECRET,
        RegistrationAck {
            protocol_version: 1,
            lease_wait_ms: 1_000,
            ack_deadline_ms: 5_000,
            dead_after_ms: 30_000,
        },
    )
    .await
}

/// sipp as a trunk (UAS) running one scenario of `tests/sipp/` once.
struct Sipp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sipp {
    async fn start(scenario: &str) -> Sipp {
        let port = free_udp_port();
        let sf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(format!("{scenario}.xml"));
        let dir = voxline_testkit::temp_dir(&format!("operator-sipp-{port}"));
        let child = Command::new(SIPP.require())
            .current_dir(&dir)
            .args([
                "-sf",
                sf.to_str().unwrap(),
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
            ])
            .args(["-p", &port.to_string(), "-m", "1", "-nostdin"])
            .args(["-timeout", "30s", "-timeout_error", "-trace_err"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sipp");
        let t0 = Instant::now();
        while !udp_port_bound(port) {
            assert!(t0.elapsed() < Duration::from_secs(5), "sipp did not bind");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Sipp { child, port, dir }
    }

    /// sipp ran its scenario to the end (every expected request came).
    async fn success(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(35), self.child.wait())
            .await
            .expect("sipp exits in time")
            .unwrap();
        assert!(
            status.success(),
            "sipp exited {status}: {}",
            voxline_testkit::log_tails(&self.dir, 20)
        );
    }
}

/// A config file for the binary: the fake edge, `telephony` (TOML lines
/// under `[telephony]`, trunks included) and metrics on `metrics_port`.
fn write_config(
    path: &Path,
    edge: &support::FakeEdge,
    spool: &Path,
    telephony: &str,
    metrics_port: u16,
) {
    let text = format!(
        "edge_url = \"http://{}\"\nsidecar_id = \"sc-ops\"\nregion = \"local\"\nsecret = \"{LINK_SECRET}\"\ncapacity = 2\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[telephony]\nrecordings_dir = \"{}\"\n{telephony}\n",
        edge.addr(),
        spool.display()
    );
    std::fs::write(path, text).unwrap();
}

fn trunk(name: &str, port: u16) -> String {
    format!(
        "\n[[telephony.trunks]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nfrom_number = \"+15550001111\"\n"
    )
}

/// Starts the built binary on `config` with its log in `log`.
fn spawn_binary(config: &Path, log: &Path, extra: &[&str]) -> ChildGuard {
    let child = StdCommand::new(BIN)
        .arg("--config")
        .arg(config)
        .args(extra)
        .env_clear()
        .env("VOXLINE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn the sidecar binary");
    ChildGuard(child)
}

fn signal(child: &ChildGuard, sig: &str) {
    let ok = StdCommand::new("kill")
        .args(["-s", sig, &child.pid().to_string()])
        .status()
        .expect("kill(1)")
        .success();
    assert!(ok, "kill -s {sig} failed");
}

/// `GET path` on the metrics port: (status, body); `None` if nothing listens.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Polls `GET path` until `want(status, body)`, or panics after `within`.
async fn wait_for_get(
    port: u16,
    path: &str,
    within: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let until = Instant::now() + within;
    let mut last = None;
    loop {
        if let Some((status, body)) = get(port, path).await {
            if want(status, &body) {
                return (status, body);
            }
            last = Some((status, body));
        }
        assert!(
            Instant::now() < until,
            "GET {path} never gave what was wanted; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scrape, parsed by prometheus-parse.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn take(port: u16) -> Scrape {
        let (status, body) = get(port, "/metrics").await.expect("metrics answer");
        assert_eq!(status, 200, "{body}");
        let lines = body.lines().map(|l| Ok(l.to_string()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("valid exposition text"))
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use prometheus_parse::Value;
        self.0
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
                _ => None,
            })
    }

    fn names(&self) -> Vec<String> {
        self.0
            .samples
            .iter()
            .map(|s| format!("{}{:?}", s.metric, s.labels))
            .collect()
    }
}

/// Waits for the `ended` event of `call_id` at the edge.
async fn ended(edge: &support::FakeEdge, call_id: &str) -> EventKind {
    edge.wait_for("the call's end", Duration::from_secs(30), |s| {
        s.events
            .iter()
            .find(|e| e.call_id == call_id && matches!(e.kind, EventKind::Ended { .. }))
            .map(|e| e.kind.clone())
    })
    .await
}

fn echo_offer(call_id: &str) -> voxline_shared::sidecar_link::Offer {
    let mut o = support::offer(call_id, 60);
    o.engine = voxline_shared::EngineKind::Echo.into();
    o
}

/// One call through sipp moves the call counters, its outcome and the SIP
/// code; `/healthz` is 200 while registered with SIP bound, and 503 once
/// the sidecar stops (draining).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_call_and_healthz_follows_the_sidecar() {
    let sipp = Sipp::start("uas_callee_bye").await;
    let edge = fake_edge().await;
    let dir = voxline_testkit::temp_dir("operator-metrics");
    let metrics_port = free_tcp_port();
    let config = dir.join("sidecar.toml");
    write_config(
        &config,
        &edge,
        &dir.join("spool"),
        &format!(
            "rtp_port_min = 47000\nrtp_port_max = 47999\n{}",
            trunk("sipp", sipp.port)
        ),
        metrics_port,
    );
    let sipp_port = sipp.port;
    let log = dir.join("sidecar.log");
    let mut child = spawn_binary(&config, &log, &["--drain-timeout", "3"]);

    let (_, body) = wait_for_get(metrics_port, "/healthz", Duration::from_secs(20), |s, _| {
        s == 200
    })
    .await;
    assert_eq!(body.trim(), "ok");

    let before = Scrape::take(metrics_port).await;
    assert_eq!(
        before.value("voxline_calls_started_total", &[]),
        Some(0.0),
        "{:?}",
        before.names()
    );
    assert_eq!(before.value("voxline_edge_registered", &[]), Some(1.0));
    assert_eq!(
        before.value("voxline_sip_final_responses_total", &[("code", "200")]),
        None
    );

    edge.offer(echo_offer("c_metrics"));
    let end = ended(&edge, "c_metrics").await;
    assert!(
        matches!(
            end,
            EventKind::Ended {
                status: voxline_shared::CallStatus::Completed,
                reason: voxline_shared::EndedReason::CalleeHangup,
                ..
            }
        ),
        "{end:?}"
    );
    sipp.success().await;

    // The media task records its figures as it stops, after `ended`.
    let after = {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let s = Scrape::take(metrics_port).await;
            if s.value("voxline_calls_active", &[]) == Some(0.0)
                && s.0
                    .samples
                    .iter()
                    .any(|x| x.metric == "voxline_rtp_packets_received_total")
            {
                break s;
            }
            assert!(Instant::now() < until, "{:?}", s.names());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(after.value("voxline_calls_started_total", &[]), Some(1.0));
    assert_eq!(
        after.value(
            "voxline_calls_ended_total",
            &[("status", "completed"), ("reason", "callee_hangup")]
        ),
        Some(1.0),
        "{:?}",
        after.names()
    );
    assert_eq!(
        after.value("voxline_sip_final_responses_total", &[("code", "200")]),
        Some(1.0)
    );
    assert!(
        after
            .value(
                "voxline_edge_request_seconds_count",
                &[("path", "/v1/sidecar/register"), ("result", "2xx")]
            )
            .is_some_and(|n| n >= 1.0),
        "{:?}",
        after.names()
    );
    assert!(after
        .value("process_resident_memory_bytes", &[])
        .is_some_and(|b| b > 1e6));
    assert!(after
        .value("process_cpu_seconds_total", &[])
        .is_some_and(|s| s > 0.0));

    // Stopping with a call live: the sidecar drains (up to 3 s, then hangs
    // up), and /healthz says so meanwhile.
    let live = Sipp::start("uas_answer").await;
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace(
            &format!("port = {}", sipp_port),
            &format!("port = {}", live.port),
        ),
    )
    .unwrap();
    signal(&child, "HUP");
    let reloaded = Instant::now() + Duration::from_secs(10);
    while Scrape::take(metrics_port)
        .await
        .value("voxline_config_reloads_total", &[("result", "ok")])
        != Some(1.0)
    {
        assert!(Instant::now() < reloaded, "reload not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    edge.offer(echo_offer("c_live"));
    edge.wait_for("the live call's answer", Duration::from_secs(20), |s| {
        s.events
            .iter()
            .any(|e| e.call_id == "c_live" && matches!(e.kind, EventKind::Answered))
            .then_some(())
    })
    .await;
    signal(&child, "TERM");
    let (status, body) = wait_for_get(metrics_port, "/healthz", Duration::from_secs(3), |s, _| {
        s != 200
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.starts_with("draining"), "{body}");
    // The drain timed out: the call was hung up (sipp got its BYE).
    live.success().await;
    child
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the drain");
    assert!(
        get(metrics_port, "/healthz").await.is_none(),
        "nothing answers once stopped"
    );
}

/// `/healthz` says why the sidecar cannot take calls (no edge) until it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_until_registered_with_the_edge() {
    let edge = fake_edge().await;
    edge.state.lock().unwrap().refuse_all = Some((503, "unavailable"));
    let dir = voxline_testkit::temp_dir("operator-health");
    let metrics_port = free_tcp_port();
    let config = dir.join("sidecar.toml");
    // No trunk: nothing to bind, so the edge link alone decides.
    write_config(&config, &edge, &dir.join("spool"), "", metrics_port);
    let _child = spawn_binary(&config, &dir.join("sidecar.log"), &[]);
    let (status, body) = wait_for_get(metrics_port, "/healthz", Duration::from_secs(10), |_, _| {
        true
    })
    .await;
    assert_eq!((status, body.trim()), (503, "not registered with the edge"));
    let refused = Instant::now() + Duration::from_secs(10);
    while !edge
        .server
        .seen()
        .iter()
        .any(|r| r.path == voxline_shared::sidecar_link::paths::REGISTER)
    {
        assert!(Instant::now() < refused, "no registration tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scrape = Scrape::take(metrics_port).await;
    assert_eq!(scrape.value("voxline_edge_registered", &[]), Some(0.0));
    edge.state.lock().unwrap().refuse_all = None;
    let (_, body) = wait_for_get(metrics_port, "/healthz", Duration::from_secs(20), |s, _| {
        s == 200
    })
    .await;
    assert_eq!(body.trim(), "ok");
}

/// `--check-config` names every problem of a config at once and exits 1;
/// a good config exits 0. Neither starts anything or creates a directory.
#[tokio::test]
async fn check_config_names_every_problem_at_once() {
    let dir = voxline_testkit::temp_dir("operator-check");
    let spool = dir.join("never-created");
    let good = format!(
        "edge_url = \"https://edge.example.com\"\nsidecar_id = \"sc-1\"\nregion = \"eu\"\nsecret = \"s3cret\"\ncapacity = 4\n\n[telephony]\nrecordings_dir = \"{}\"\n{}",
        spool.display(),
        trunk("main", 5060)
    );
    let bad = good
        .replace("capacity = 4", "capacity = 0")
        .replace("sidecar_id = \"sc-1\"", "sidecar_id = \"sc 1\"")
        .replace("+15550001111", "555-0100");
    let run = |text: &str, name: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        StdCommand::new(BIN)
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("run the binary")
    };
    let out = run(&bad, "bad.toml");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("3 problems"), "{err}");
    for problem in [
        "`sidecar_id` (from ",
        "0 is not in 1..=10000",
        "from_number `555-0100` is not E.164",
    ] {
        assert!(err.contains(problem), "`{problem}` not named in:\n{err}");
    }
    assert!(!err.contains("s3cret"), "{err}");

    let out = run(&good, "good.toml");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(!text.contains("s3cret"), "the secret printed: {text}");
    assert!(
        !spool.exists(),
        "--check-config created {}",
        spool.display()
    );
}

/// Waits until the scrape shows `voxline_config_reloads_total{result}` = `n`.
async fn wait_reloads(metrics_port: u16, result: &str, n: f64) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let s = Scrape::take(metrics_port).await;
        if s.value("voxline_config_reloads_total", &[("result", result)]) == Some(n) {
            return;
        }
        assert!(
            Instant::now() < until,
            "no {result} reload: {:?}",
            s.names()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGHUP with a config that has a problem changes nothing (the next call
/// still goes to the old trunk); with a good one, the next call goes to the
/// new trunk and the new capacity is offered to the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_sends_the_next_call_to_the_new_trunk() {
    let old_trunk = Sipp::start("uas_busy").await;
    let new_trunk = Sipp::start("uas_busy").await;
    let edge = fake_edge().await;
    let dir = voxline_testkit::temp_dir("operator-reload");
    let metrics_port = free_tcp_port();
    let config = dir.join("sidecar.toml");
    let spool = dir.join("spool");
    let telephony = |port: u16| {
        format!(
            "rtp_port_min = 48000\nrtp_port_max = 48999\n{}",
            trunk("carrier", port)
        )
    };
    write_config(
        &config,
        &edge,
        &spool,
        &telephony(old_trunk.port),
        metrics_port,
    );
    let log = dir.join("sidecar.log");
    let child = spawn_binary(&config, &log, &[]);
    wait_for_get(metrics_port, "/healthz", Duration::from_secs(20), |s, _| {
        s == 200
    })
    .await;

    // A config with a problem (and the new trunk): refused whole.
    write_config(
        &config,
        &edge,
        &spool,
        &telephony(new_trunk.port),
        metrics_port,
    );
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("capacity = 2", "capacity = 0")).unwrap();
    signal(&child, "HUP");
    wait_reloads(metrics_port, "failed", 1.0).await;
    edge.offer(echo_offer("c_before"));
    let end = ended(&edge, "c_before").await;
    assert!(
        matches!(
            end,
            EventKind::Ended {
                sip_code: Some(486),
                ..
            }
        ),
        "{end:?}"
    );
    old_trunk.success().await;

    // The good config: the new trunk, and capacity 3.
    std::fs::write(&config, good.replace("capacity = 2", "capacity = 3")).unwrap();
    signal(&child, "HUP");
    wait_reloads(metrics_port, "ok", 1.0).await;
    edge.offer(echo_offer("c_after"));
    let end = ended(&edge, "c_after").await;
    assert!(
        matches!(
            end,
            EventKind::Ended {
                sip_code: Some(486),
                ..
            }
        ),
        "{end:?}"
    );
    // The new trunk took the INVITE (the old sipp has exited).
    new_trunk.success().await;
    edge.wait_for("a lease offering 3 slots", Duration::from_secs(10), |s| {
        s.leases.iter().any(|l| l.free_slots == 3).then_some(())
    })
    .await;
    let scrape = Scrape::take(metrics_port).await;
    assert_eq!(
        scrape.value("voxline_sip_final_responses_total", &[("code", "486")]),
        Some(2.0)
    );
    assert_eq!(
        scrape.value(
            "voxline_calls_ended_total",
            &[("status", "busy"), ("reason", "busy")]
        ),
        Some(2.0)
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("reload refused"), "{log}");
}
