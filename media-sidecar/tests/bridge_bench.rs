//! CPU per bridged call (issue 16), a bench hook (ignored here: it
//! measures, it asserts nothing about the figures). Run it in release:
//!
//! ```text
//! cargo test --release -p voxline-media-sidecar --test bridge_bench -- --ignored --nocapture
//! ```
//!
//! N inbound calls at once from sipp (the trunk) to a number that rings a
//! person who has no phone here and forwards: the whole sidecar (in this
//! process) forks, dials the forward through the trunk (a second sipp,
//! answering PCMA first, so each call is transcoded PCMU <-> PCMA), answers
//! the caller and relays both legs through `transfer::Relay`. Both sipps
//! echo every RTP packet (`-rtp_echo`), so each leg carries 50 packets/s
//! each way through RTP receive, jitter buffer, decode, relay, encode and
//! send. Once all N calls are bridged, this process's CPU time
//! (getrusage: the sidecar, its link to the fake edge, the test's idle
//! runtime) is sampled over `WINDOW`; per call is (that - idle) / N, idle
//! measured before the calls. `VOXLINE_BENCH_BRIDGE_CALLS` (e.g. `1,10,25`)
//! picks the Ns. One line per N is printed, `bridge_bench {json}`.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::watch;
use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
use voxline_media_sidecar::lease::LeaseSettings;
use voxline_shared::sidecar_link::{EventKind, InboundDecision, RegistrationAck, RingUser};
use voxline_testkit::{free_sip_port, free_udp_port, udp_port_bound, SIPP};

const LINK_SECRET: &str = "test-secret-0123456789abcdef";
const WINDOW: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(2);

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Timeval {
    sec: i64,
    usec: i64,
}
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}
extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}
#[allow(unsafe_code)] // getrusage(2): this process's CPU time, no crate needed for one call
fn cpu_ms() -> f64 {
    let mut r = Rusage::default();
    // SAFETY: RUSAGE_SELF (0) with a correctly laid out struct (Linux x86_64/aarch64).
    unsafe { getrusage(0, &mut r) };
    let ms = |t: Timeval| t.sec as f64 * 1e3 + t.usec as f64 / 1e3;
    ms(r.utime) + ms(r.stime)
}

/// Percent of one core this process used over `d`.
async fn cpu_pct_over(d: Duration) -> f64 {
    let (c0, t0) = (cpu_ms(), Instant::now());
    tokio::time::sleep(d).await;
    (cpu_ms() - c0) / t0.elapsed().as_secs_f64() / 10.0
}

fn sipp(
    scenario: &str,
    port: u16,
    media_port: u16,
    calls: usize,
    extra: &[&str],
) -> tokio::process::Child {
    let sf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(format!("{scenario}.xml"));
    Command::new(SIPP.require())
        .current_dir(std::env::temp_dir())
        .args(["-sf", sf.to_str().unwrap(), "-i", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-mi", "127.0.0.1"])
        .args(["-mp", &media_port.to_string(), "-rtp_echo"])
        .args(["-m", &calls.to_string(), "-nostdin", "-timeout", "60s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp")
}

async fn bound(port: u16) {
    let t0 = Instant::now();
    while !udp_port_bound(port) {
        assert!(t0.elapsed() < Duration::from_secs(5), "sipp did not bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One run with `n` bridged calls: (idle CPU %, CPU % with the calls).
async fn run(n: usize) -> (f64, f64) {
    let edge = support::FakeEdge::start(
        LINK_SECRET,
        RegistrationAck {
            protocol_version: 1,
            lease_wait_ms: 1_000,
            ack_deadline_ms: 5_000,
            dead_after_ms: 30_000,
        },
    )
    .await;
    let (sip_port, in_port, out_port) = (free_sip_port(), free_udp_port(), free_udp_port());
    let mut telephony = support::one_trunk_telephony(out_port, (52_000, 52_999));
    let mut caller_trunk = telephony.trunks[0].clone();
    caller_trunk.name = "caller".into();
    caller_trunk.port = Some(in_port);
    caller_trunk.priority = 9;
    telephony.trunks.push(caller_trunk);
    telephony.sip_port = sip_port;
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = support::spawn_sip_sidecar(
        &edge,
        LINK_SECRET,
        telephony,
        Default::default(),
        LeaseSettings::new("sc-bridge-bench", "local", (n as u32) + 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    edge.wait_for("registration", Duration::from_secs(20), |s| {
        (!s.registrations.is_empty()).then_some(())
    })
    .await;
    for i in 0..n {
        let mut offer = support::offer(&format!("c_bench{i}"), 120);
        offer.lease_id = format!("inbound_c_bench{i}");
        offer.phone = "+14155550111".into();
        offer.agent_id = String::new();
        edge.decide_inbound(InboundDecision::RingUser {
            offer: Box::new(offer),
            ring: RingUser {
                user_pk: 7,
                extension: "1002".into(),
                display_name: "Bench".into(),
                ring_timeout_seconds: 10,
                forward_number: Some("+15550002222".into()),
                voicemail: false,
            },
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = cpu_pct_over(IDLE).await;
    let uas = sipp("uas_answer", out_port, free_udp_port(), n, &[]);
    bound(out_port).await;
    let target = format!("127.0.0.1:{sip_port}");
    let rate = n.to_string();
    let uac = sipp(
        "uac_person_bench",
        in_port,
        free_udp_port(),
        n,
        &[target.as_str(), "-r", rate.as_str(), "-rp", "1000"],
    );
    edge.wait_for("every call bridged", Duration::from_secs(30), |s| {
        let answered = s
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Answered))
            .count();
        (answered >= n).then_some(())
    })
    .await;
    // Settle (jitter buffers filling), then measure inside the 12 s hold.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = cpu_pct_over(WINDOW).await;
    let ended_early = edge
        .state
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.kind.is_ended())
        .count();
    assert_eq!(ended_early, 0, "a call ended inside the window");
    drop((uac, uas));
    stop.send(Stop::Now).unwrap();
    let _ = tokio::task::spawn_blocking(move || sidecar.join()).await;
    (idle, busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: run it in release with --ignored --nocapture"]
async fn bridged_call_cpu_per_call() {
    let ns: Vec<usize> = std::env::var("VOXLINE_BENCH_BRIDGE_CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 25]);
    for n in ns {
        let (idle, busy) = run(n).await;
        let per_call = (busy - idle).max(0.0) / n as f64;
        println!(
            "bridge_bench {{\"calls\":{n},\"cpu_pct\":{busy:.2},\"idle_cpu_pct\":{idle:.2},\"cpu_pct_per_call\":{per_call:.3}}}"
        );
    }
}
