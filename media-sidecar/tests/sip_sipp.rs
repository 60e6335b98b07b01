//! The SIP stack against real sipp (Debian `sip-tester`) on loopback.
//!
//! Each test starts sipp as the trunk (UAS) with a scenario from
//! `tests/sipp/*.xml` on a free port (`-m 1 -nostdin -timeout`), places a
//! call through [`SipUdp`], checks the events, and requires sipp to exit 0
//! (the scenario ran to its end: every expected request, e.g. our ACK, BYE or
//! CANCEL, arrived and matched its checks).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use voxline_media_sidecar::sip::auth::Credentials;
use voxline_media_sidecar::sip::call::{DialogEnd, DialogEvent};
use voxline_media_sidecar::sip::endpoint::EndpointConfig;
use voxline_media_sidecar::sip::register::{RegisterConfig, RegistrationState, RegistrationStatus};
use voxline_media_sidecar::sip::sdp::{Codec, OfferConfig};
use voxline_media_sidecar::sip::session_timer::SessionTimerConfig;
use voxline_media_sidecar::sip::udp::{CallHandle, CallSpec, Event, SipUdp, Trunk};
use voxline_shared::{CallStatus, EndedReason};
use voxline_testkit::{free_udp_port, udp_port_bound, SIPP};

const SIPP_TIMEOUT_S: u32 = 20;

struct Sipp {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    name: String,
}

impl Sipp {
    async fn start(scenario: &str) -> Sipp {
        Self::start_with(scenario, &[]).await
    }

    /// Also logs every message to `messages.log` in its directory.
    async fn start_traced(scenario: &str) -> Sipp {
        Self::start_with(scenario, &["-trace_msg"]).await
    }

    async fn start_with(scenario: &str, extra: &[&str]) -> Sipp {
        Self::start_on(scenario, free_udp_port(), extra).await
    }

    /// On `port` (e.g. a trunk port the sidecar was configured with).
    async fn start_on(scenario: &str, port: u16, extra: &[&str]) -> Sipp {
        Self::start_calls(scenario, port, 1, extra).await
    }

    /// Until `calls` sipp calls (SIP Call-IDs) ran to their end.
    async fn start_calls(scenario: &str, port: u16, calls: u32, extra: &[&str]) -> Sipp {
        let sf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(format!("{scenario}.xml"));
        Self::start_sf(scenario, sf, port, calls, extra).await
    }

    /// `scenario`'s file at `sf` (one the test wrote).
    async fn start_sf(scenario: &str, sf: PathBuf, port: u16, calls: u32, extra: &[&str]) -> Sipp {
        let sipp = SIPP.require();
        let dir = std::env::temp_dir().join(format!("voxline-sipp-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(sipp)
            .current_dir(&dir)
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
            .args([
                "-m",
                &calls.to_string(),
                "-nostdin",
                "-timeout",
                &format!("{SIPP_TIMEOUT_S}s"),
                "-timeout_error",
            ])
            .args([
                "-trace_err",
                "-error_file",
                dir.join("errors.log").to_str().unwrap(),
                "-message_file",
                dir.join("messages.log").to_str().unwrap(),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sipp");
        let t0 = Instant::now();
        while !udp_port_bound(port) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "sipp {scenario} did not bind 127.0.0.1:{port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Sipp {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            name: scenario.to_string(),
        }
    }

    /// Waits for sipp to finish and requires exit status 0.
    async fn success(mut self) {
        let status = tokio::time::timeout(
            Duration::from_secs(u64::from(SIPP_TIMEOUT_S) + 5),
            self.child.wait(),
        )
        .await
        .expect("sipp exits in time")
        .unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut err).await;
        }
        let log = std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        assert!(
            status.success(),
            "sipp {} exited {status}: {err}\n{log}",
            self.name
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spec(trunks: Vec<Trunk>) -> CallSpec {
    let media = OfferConfig::new("127.0.0.1:40000".parse().unwrap());
    CallSpec::new(trunks, "+14155550100", "+14155550199", media)
}

async fn next(h: &mut CallHandle) -> Event {
    tokio::time::timeout(Duration::from_secs(10), h.next_event())
        .await
        .expect("event in time")
        .expect("event")
}

async fn until_answered(h: &mut CallHandle) -> voxline_media_sidecar::sip::sdp::Negotiated {
    let mut rang = false;
    loop {
        match next(h).await {
            Event::Call(DialogEvent::Ringing { code, .. }) => {
                assert_eq!(code, 180);
                rang = true;
            }
            Event::Call(DialogEvent::Answered(n)) => {
                assert!(rang, "180 before 200");
                return n;
            }
            e => panic!("unexpected {e:?}"),
        }
    }
}

async fn ended(h: &mut CallHandle) -> DialogEnd {
    loop {
        match next(h).await {
            Event::Call(DialogEvent::Ended(o)) => {
                assert!(h.next_event().await.is_none(), "Ended is the last event");
                return o;
            }
            Event::Call(DialogEvent::Ringing { .. }) => {}
            e => panic!("unexpected {e:?}"),
        }
    }
}

async fn endpoint() -> SipUdp {
    SipUdp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

#[tokio::test]
async fn answered_then_we_hang_up_with_bye() {
    let sipp = Sipp::start("uas_answer").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(sipp.addr)]))
        .await
        .unwrap();
    let media = until_answered(&mut h).await;
    // sipp's answer lists PCMA first: the answerer's order wins.
    assert_eq!(
        (media.codec, media.pt, media.dtmf_pt, media.ptime_ms),
        (Codec::Pcma, 8, Some(101), 20)
    );
    assert_eq!(media.remote_rtp.ip().to_string(), "127.0.0.1");
    assert_ne!(media.remote_rtp.port(), 0);
    h.hangup(EndedReason::HangupRequested).await;
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code),
        (CallStatus::Completed, EndedReason::HangupRequested, None)
    );
    sipp.success().await;
}

#[tokio::test]
async fn callee_hangs_up_and_gets_200() {
    let sipp = Sipp::start("uas_callee_bye").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(sipp.addr)]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason),
        (CallStatus::Completed, EndedReason::CalleeHangup)
    );
    sipp.success().await;
}

/// Dials sipp playing `scenario` (on `trunks` trunks, all the same sipp) and
/// returns the call's outcome, once sipp has run its scenario to the end.
async fn final_answer(scenario: &str, trunks: usize) -> DialogEnd {
    let sipp = Sipp::start(scenario).await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(sipp.addr); trunks]))
        .await
        .unwrap();
    let o = ended(&mut h).await;
    sipp.success().await;
    o
}

#[tokio::test]
async fn busy_486() {
    let o = final_answer("uas_busy", 1).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code, o.try_next_trunk),
        (CallStatus::Busy, EndedReason::Busy, Some(486), false)
    );
}

/// 603 after ringing: the person declined. Its own reason (not `busy`), no
/// other trunk (a 6xx is final everywhere), and the edge never redials it.
#[tokio::test]
async fn decline_603_is_final_and_never_redialled() {
    let o = final_answer("uas_decline", 2).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code, o.try_next_trunk),
        (CallStatus::Busy, EndedReason::Declined, Some(603), false)
    );
    assert!(!voxline_shared::sip_outcome::worth_redialling(
        o.status, o.reason, o.sip_code
    ));
}

/// 404: the number does not exist; dialling it again would get a 404 again.
#[tokio::test]
async fn not_found_404_is_final_and_never_redialled() {
    let o = final_answer("uas_404", 1).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code, o.try_next_trunk),
        (CallStatus::Failed, EndedReason::Rejected, Some(404), false)
    );
    assert!(!voxline_shared::sip_outcome::worth_redialling(
        o.status, o.reason, o.sip_code
    ));
}

#[tokio::test]
async fn failover_503_to_second_trunk_within_2s() {
    let down = Sipp::start("uas_503").await;
    let up = Sipp::start("uas_answer").await;
    let sip = endpoint().await;
    let t0 = Instant::now();
    let mut h = sip
        .start_call(spec(vec![Trunk::new(down.addr), Trunk::new(up.addr)]))
        .await
        .unwrap();
    match next(&mut h).await {
        Event::Failover { trunk: 0, end } => {
            assert_eq!((end.sip_code, end.try_next_trunk), (Some(503), true));
        }
        e => panic!("expected failover, got {e:?}"),
    }
    until_answered(&mut h).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "answered on trunk 2 after {:?}",
        t0.elapsed()
    );
    h.hangup(EndedReason::AgentHangup).await;
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason),
        (CallStatus::Completed, EndedReason::AgentHangup)
    );
    down.success().await;
    up.success().await;
}

/// 503 with `Retry-After: 300`: the call fails over at once, and the trunk
/// rests: a later call with only that trunk is not dialled but ends with
/// the wait, so the edge redials no earlier (sipp requires one INVITE only).
#[tokio::test]
async fn a_503_with_retry_after_rests_the_trunk_and_fails_over() {
    let down = Sipp::start("uas_503_retry_after").await;
    let up = Sipp::start("uas_answer").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(down.addr), Trunk::new(up.addr)]))
        .await
        .unwrap();
    match next(&mut h).await {
        Event::Failover { trunk: 0, end } => {
            assert_eq!((end.sip_code, end.retry_after_s), (Some(503), Some(300)));
        }
        e => panic!("expected failover, got {e:?}"),
    }
    until_answered(&mut h).await;
    h.hangup(EndedReason::AgentHangup).await;
    ended(&mut h).await;
    let down_addr = down.addr;
    down.success().await;
    up.success().await;

    let mut alone = sip
        .start_call(spec(vec![Trunk::new(down_addr)]))
        .await
        .unwrap();
    let o = ended(&mut alone).await;
    assert_eq!(
        (o.status, o.detail.as_str(), o.sip_code),
        (CallStatus::Failed, "trunks_resting", None)
    );
    let wait = o.retry_after_s.expect("the wait is reported");
    assert!((290..=300).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_silent_trunk_is_skipped_within_the_failover_timeout() {
    // Trunk 1 swallows every datagram and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let up = Sipp::start("uas_answer").await;
    let sip = endpoint().await;
    let mut s = spec(vec![
        Trunk::new(silent.local_addr().unwrap()),
        Trunk::new(up.addr),
    ]);
    s.failover_timeout = Some(Duration::from_millis(1_000));
    let t0 = Instant::now();
    let mut h = sip.start_call(s).await.unwrap();
    match next(&mut h).await {
        Event::Failover { trunk: 0, end } => {
            assert_eq!(
                (end.status, end.try_next_trunk, end.detail.as_str()),
                (CallStatus::Failed, true, "no_response")
            );
        }
        e => panic!("expected failover, got {e:?}"),
    }
    until_answered(&mut h).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1_000) && took < Duration::from_secs(2),
        "answered on trunk 2 after {took:?}"
    );
    h.hangup(EndedReason::AgentHangup).await;
    ended(&mut h).await;
    up.success().await;
}

#[tokio::test]
async fn ring_timeout_cancels_and_487_means_no_answer() {
    let sipp = Sipp::start("uas_ring_cancel").await;
    let sip = endpoint().await;
    let mut s = spec(vec![Trunk::new(sipp.addr)]);
    s.ring_timeout = Duration::from_millis(1_000);
    let t0 = Instant::now();
    let mut h = sip.start_call(s).await.unwrap();
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code),
        (CallStatus::NoAnswer, EndedReason::NoAnswer, Some(487))
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1_000) && took < Duration::from_secs(3),
        "{took:?}"
    );
    sipp.success().await;
}

#[tokio::test]
async fn hangup_before_answer_sends_cancel() {
    let sipp = Sipp::start("uas_ring_cancel").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(sipp.addr)]))
        .await
        .unwrap();
    match next(&mut h).await {
        Event::Call(DialogEvent::Ringing {
            code: 180,
            early_media: None,
        }) => {}
        e => panic!("expected ringing, got {e:?}"),
    }
    h.hangup(EndedReason::HangupRequested).await;
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code),
        (
            CallStatus::Cancelled,
            EndedReason::HangupRequested,
            Some(487)
        )
    );
    sipp.success().await;
}

fn with_creds(addr: SocketAddr, user: &str, pass: &str) -> Trunk {
    let mut t = Trunk::new(addr);
    t.credentials = Some(Credentials {
        username: user.into(),
        password: pass.into(),
        realm: None,
    });
    t
}

#[tokio::test]
async fn digest_401_verified_by_sipp_verifyauth() {
    let sipp = Sipp::start("uas_auth401").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![with_creds(sipp.addr, "alice", "s3cret")]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    h.hangup(EndedReason::HangupRequested).await;
    assert_eq!(ended(&mut h).await.status, CallStatus::Completed);
    sipp.success().await;
}

#[tokio::test]
async fn digest_401_with_a_wrong_password_is_refused_by_sipp() {
    let sipp = Sipp::start("uas_auth401").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![with_creds(sipp.addr, "alice", "wrong")]))
        .await
        .unwrap();
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code),
        (CallStatus::Failed, EndedReason::Rejected, Some(403))
    );
    sipp.success().await;
}

#[tokio::test]
async fn digest_407_proxy_authorization() {
    let sipp = Sipp::start("uas_auth407").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![with_creds(sipp.addr, "bob", "pw")]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    h.hangup(EndedReason::HangupRequested).await;
    assert_eq!(ended(&mut h).await.status, CallStatus::Completed);
    sipp.success().await;
}

#[tokio::test]
async fn dropping_the_handle_hangs_up() {
    let sipp = Sipp::start("uas_answer").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(sipp.addr)]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    drop(h);
    // sipp exits 0 only once our BYE arrived and it answered it.
    sipp.success().await;
}

// ------------------------------------------------ the whole sidecar, drained

/// The secret the whole-sidecar tests' fake edge and sidecar share.
const LINK_SECRET: &str = "test-secret-0123456789abcdef";

/// A fake edge for the whole-sidecar tests (quick lease polls, patient deadlines).
async fn fake_edge() -> support::FakeEdge {
    support::FakeEdge::start(
        LINK_SECRET,
        voxline_shared::sidecar_link::RegistrationAck {
            protocol_version: 1,
            lease_wait_ms: 1_000,
            ack_deadline_ms: 5_000,
            dead_after_ms: 30_000,
        },
    )
    .await
}

/// The whole sidecar (lease loop, SIP to one sipp trunk on `sipp_port`, RTP
/// in `rtp_ports`) leasing from `edge`, on its own runtime in a thread that
/// shuts it down the moment `run` returns: what has not been sent by then
/// never is, as when the process exits. `opts.mode` is set to SIP here.
fn spawn_sidecar(
    edge: &support::FakeEdge,
    sipp_port: u16,
    rtp_ports: (u16, u16),
    settings: voxline_media_sidecar::lease::LeaseSettings,
    opts: voxline_media_sidecar::lease::driver::RunOptions,
    stop_rx: tokio::sync::watch::Receiver<voxline_media_sidecar::lease::driver::Stop>,
) -> std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary> {
    spawn_sidecar_with(
        edge,
        sipp_telephony(sipp_port, rtp_ports),
        settings,
        opts,
        stop_rx,
    )
}

/// `[telephony]` with one trunk: sipp on `sipp_port`.
fn sipp_telephony(
    sipp_port: u16,
    rtp_ports: (u16, u16),
) -> voxline_media_sidecar::config::Telephony {
    support::one_trunk_telephony(sipp_port, rtp_ports)
}

/// [`spawn_sidecar`] with this `[telephony]`.
fn spawn_sidecar_with(
    edge: &support::FakeEdge,
    telephony: voxline_media_sidecar::config::Telephony,
    settings: voxline_media_sidecar::lease::LeaseSettings,
    opts: voxline_media_sidecar::lease::driver::RunOptions,
    stop_rx: tokio::sync::watch::Receiver<voxline_media_sidecar::lease::driver::Stop>,
) -> std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary> {
    spawn_sidecar_allowing(edge, telephony, Default::default(), settings, opts, stop_rx)
}

/// [`spawn_sidecar_with`], engine URLs on `allowed` hosts let through (`[engine] allowed_hosts`).
fn spawn_sidecar_allowing(
    edge: &support::FakeEdge,
    telephony: voxline_media_sidecar::config::Telephony,
    allowed: voxline_media_sidecar::engine::guard::AllowedHosts,
    settings: voxline_media_sidecar::lease::LeaseSettings,
    opts: voxline_media_sidecar::lease::driver::RunOptions,
    stop_rx: tokio::sync::watch::Receiver<voxline_media_sidecar::lease::driver::Stop>,
) -> std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary> {
    support::spawn_sip_sidecar(
        edge,
        LINK_SECRET,
        telephony,
        allowed,
        settings,
        opts,
        stop_rx,
    )
}

/// A sidecar with one trunk (sipp) and a fake edge, draining with a short
/// timeout while the call is live (`reached` is its last event). From then
/// on the edge refuses event batches, so the call's end must be in the spool.
async fn drain_with_a_live_call(scenario: &str, reached: &'static str, hangup_grace: Duration) {
    use tokio::sync::watch;
    use voxline_media_sidecar::event_spool::EventSpool;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;
    use voxline_shared::sidecar_link::{paths, EventKind};

    let sipp = Sipp::start(scenario).await;
    let edge = fake_edge().await;
    let events_dir = voxline_testkit::temp_dir("drain-events");
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let mut settings = LeaseSettings::new("sc-drain", "local", 1);
    settings.backoff_initial_ms = 100;
    settings.backoff_max_ms = 400;
    let opts = RunOptions {
        drain_timeout: Duration::from_millis(300),
        hangup_grace,
        events_dir: Some(events_dir.clone()),
        ..RunOptions::default()
    };
    let sidecar = spawn_sidecar(
        &edge,
        sipp.addr.port(),
        (46_000, 46_999),
        settings,
        opts,
        stop_rx,
    );
    let mut call = support::offer("k_1", 600);
    call.engine = voxline_shared::EngineKind::Echo.into();
    edge.offer(call);
    let t = Duration::from_secs(15);
    edge.wait_for(reached, t, |s| {
        s.events
            .iter()
            .any(|e| e.call_id == "k_1" && e.kind.name() == reached)
            .then_some(())
    })
    .await;
    edge.state.lock().unwrap().fail_next = vec![(paths::EVENTS.to_string(), 503); 10_000];
    stop.send(Stop::Drain).unwrap();
    let summary = tokio::time::timeout(t, tokio::task::spawn_blocking(move || sidecar.join()))
        .await
        .expect("the sidecar exits")
        .unwrap()
        .unwrap();
    assert!(!summary.clean_exit, "the edge took no events: {summary:?}");
    // sipp exits 0 only once our BYE (or CANCEL) arrived and was answered.
    sipp.success().await;
    // The call's end waits in the spool for the next run.
    let spooled = EventSpool::open(&events_dir).unwrap().load();
    let ended: Vec<_> = spooled
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Ended { status, reason, .. } if e.call_id == "k_1" => {
                Some((*status, *reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        vec![(CallStatus::Failed, EndedReason::MediaLost)],
        "{spooled:?}"
    );
    let _ = std::fs::remove_dir_all(&events_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_sidecar_hangs_up_an_answered_call_with_bye() {
    drain_with_a_live_call("uas_answer", "answered", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_sidecar_cancels_a_ringing_call() {
    drain_with_a_live_call("uas_ring_cancel", "ringing", Duration::from_secs(10)).await;
}

/// The trunk never answers our BYE: at the end of the grace the runtime ends
/// the call itself (and exits), rather than waiting out Timer F.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_sidecar_ends_a_call_whose_bye_is_unanswered() {
    drain_with_a_live_call("uas_bye_unanswered", "answered", Duration::from_millis(500)).await;
}

/// The headers of the first `method` request sipp logged (`start_traced`),
/// once it is there (bounded wait).
async fn logged_request(sipp: &Sipp, method: &str) -> Vec<(String, String)> {
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(sipp.dir.join("messages.log")).unwrap_or_default();
        if let Some(at) = log.find(&format!("\n{method} sip:")) {
            let block = log[at + 1..].split("\n\n").next().unwrap_or("").to_string();
            if block.contains("Call-ID:") {
                return block
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "sipp logged no {method}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

/// Issue 21: a BYE with the right Call-ID and tags from another address
/// ended the call, and the callee's own BYE (lower CSeq) then got 500.
#[tokio::test]
async fn a_forged_bye_from_another_port_is_refused_and_the_callees_bye_ends_the_call() {
    let sipp = Sipp::start_traced("uas_forged_bye").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(sipp.addr)]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    let ack = logged_request(&sipp, "ACK").await;
    let (ours, theirs, call_id) = (
        header(&ack, "From").to_string(),
        header(&ack, "To").to_string(),
        header(&ack, "Call-ID").to_string(),
    );
    let forger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let f = forger.local_addr().unwrap();
    let request = |method: &str, uri: &str, cseq: u32, from: &str, to: &str| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {f};branch=z9hG4bKforged{cseq}\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let answer = |what: &'static str| {
        let forger = &forger;
        async move {
            let mut buf = vec![0u8; 4096];
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), forger.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no answer to the {what}"))
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    // The forged BYE: the callee's tags, from another port.
    let uri = format!("sip:+14155550199@{}", sip.local_addr());
    let bye = request("BYE", &uri, 100, &theirs, &ours);
    forger
        .send_to(bye.as_bytes(), sip.local_addr())
        .await
        .unwrap();
    let reply = answer("forged BYE").await;
    assert!(reply.starts_with("SIP/2.0 403 "), "{reply}");
    // Now sipp (the real callee) hangs up: its BYE (CSeq 1) gets 200.
    let info = request("INFO", "sip:sipp@127.0.0.1", 1, &ours, &theirs);
    forger.send_to(info.as_bytes(), sipp.addr).await.unwrap();
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason),
        (CallStatus::Completed, EndedReason::CalleeHangup)
    );
    sipp.success().await;
}

/// Issue 21: while the callee held the call (re-INVITE a=sendonly, our 200
/// recvonly) the sidecar kept sending RTP. The whole sidecar (fake edge, echo
/// engine) against sipp, whose SDP points RTP at this test's socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rtp_reaches_the_callee_while_it_holds_the_call() {
    use tokio::sync::watch;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;

    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = rtp.local_addr().unwrap().port().to_string();
    let sipp = Sipp::start_with("uas_hold", &["-trace_msg", "-key", "rtp_port", &rtp_port]).await;
    let edge = fake_edge().await;
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let settings = LeaseSettings::new("sc-hold", "local", 1);
    let opts = RunOptions {
        drain_timeout: Duration::from_secs(5),
        ..RunOptions::default()
    };
    let sidecar = spawn_sidecar(
        &edge,
        sipp.addr.port(),
        (47_000, 47_999),
        settings,
        opts,
        stop_rx,
    );
    let mut call = support::offer("h_1", 600);
    call.engine = voxline_shared::EngineKind::Echo.into();
    edge.offer(call);

    let mut buf = vec![0u8; 2048];
    // RTP flows once answered (comfort noise at least).
    let first = |what: &'static str| {
        let rtp = &rtp;
        async move {
            let mut buf = vec![0u8; 2048];
            tokio::time::timeout(Duration::from_secs(10), rtp.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no RTP {what}"))
                .unwrap();
            buf[1] & 0x80 != 0
        }
    };
    first("after the answer").await;
    let ack = logged_request(&sipp, "ACK").await;
    let (ours, theirs, call_id) = (
        header(&ack, "From").to_string(),
        header(&ack, "To").to_string(),
        header(&ack, "Call-ID").to_string(),
    );
    let signal = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let s = signal.local_addr().unwrap();
    let info = |n: u32| {
        format!(
            "INFO sip:sipp@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {s};branch=z9hG4bKinfo{n}\r\n\
             From: {ours}\r\nTo: {theirs}\r\nCall-ID: {call_id}\r\nCSeq: {n} INFO\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // Hold: sipp re-INVITEs sendonly and checks our recvonly.
    signal.send_to(info(1).as_bytes(), sipp.addr).await.unwrap();
    let t0 = Instant::now();
    while !std::fs::read_to_string(sipp.dir.join("messages.log"))
        .unwrap_or_default()
        .contains("CSeq: 1 ACK")
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "hold not acked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What was in flight before the hold took effect (a few packets at most).
    let mut in_flight = 0;
    while tokio::time::timeout(Duration::from_millis(200), rtp.recv_from(&mut buf))
        .await
        .is_ok()
    {
        in_flight += 1;
        assert!(in_flight < 25, "RTP sent while the callee holds the call");
    }
    // Held: a second without a single packet (50 at the 20 ms pace).
    let got = tokio::time::timeout(Duration::from_secs(1), rtp.recv_from(&mut buf)).await;
    assert!(got.is_err(), "RTP sent while the callee holds the call");
    // Resume: RTP again, starting a talkspurt (marker).
    signal.send_to(info(2).as_bytes(), sipp.addr).await.unwrap();
    assert!(
        first("after resuming").await,
        "the first packet has the marker"
    );
    // The callee hangs up.
    signal.send_to(info(3).as_bytes(), sipp.addr).await.unwrap();
    edge.wait_for("ended", Duration::from_secs(15), |st| {
        st.events
            .iter()
            .any(|e| e.call_id == "h_1" && e.kind.name() == "ended")
            .then_some(())
    })
    .await;
    sipp.success().await;
    stop.send(Stop::Drain).unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || sidecar.join()),
    )
    .await
    .expect("the sidecar exits")
    .unwrap()
    .unwrap();
}

/// Issue 21: a sidecar behind NAT advertises its public address (Via,
/// Contact, From, SDP) while binding its own, and a trunk configured for it
/// gets the caller's identity in P-Asserted-Identity. sipp checks each
/// header of the INVITE (`uas_nat_identity`), answers and hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nat_the_public_address_is_advertised_and_identity_asserted() {
    use tokio::sync::watch;
    use voxline_media_sidecar::config;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;

    let sipp = Sipp::start("uas_nat_identity").await;
    let edge = fake_edge().await;
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let mut telephony = sipp_telephony(sipp.addr.port(), (45_000, 45_099));
    telephony.public_ip = Some("192.0.2.10".parse().unwrap());
    telephony.public_sip_port = Some(5099);
    telephony.trunks[0].identity_header = config::IdentityHeaderKind::Pai;
    let sidecar = spawn_sidecar_with(
        &edge,
        telephony,
        LeaseSettings::new("sc-nat", "local", 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    let mut call = support::offer("n_1", 600);
    call.engine = voxline_shared::EngineKind::Echo.into();
    call.caller_name = Some("Reminder".into());
    edge.offer(call);
    let reason = edge
        .wait_for("ended", Duration::from_secs(15), |st| {
            st.events.iter().find_map(|e| match &e.kind {
                voxline_shared::sidecar_link::EventKind::Ended { reason, .. }
                    if e.call_id == "n_1" =>
                {
                    Some(*reason)
                }
                _ => None,
            })
        })
        .await;
    // Answered through the headers sipp required, and hung up by the callee.
    assert_eq!(reason, EndedReason::CalleeHangup);
    sipp.success().await;
    stop.send(Stop::Drain).unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || sidecar.join()),
    )
    .await
    .expect("the sidecar exits")
    .unwrap()
    .unwrap();
}

// ------------------------------------------------------- texts (SIP MESSAGE)

/// The whole sidecar with sipp as its one trunk (`credentials`: alice /
/// s3cret) and SIP on `sip_port`, registered with `edge`. Stop it with
/// [`stop_sidecar`].
async fn texting_sidecar(
    edge: &support::FakeEdge,
    sipp_port: u16,
    sip_port: u16,
    credentials: bool,
) -> (
    tokio::sync::watch::Sender<voxline_media_sidecar::lease::driver::Stop>,
    std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary>,
) {
    use voxline_media_sidecar::config::Secret;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;

    let mut telephony = sipp_telephony(sipp_port, (48_000, 48_099));
    telephony.sip_port = sip_port;
    if credentials {
        let trunk = &mut telephony.trunks[0];
        trunk.username = Some("alice".into());
        trunk.password = Some(Secret::new("s3cret"));
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(Stop::Run);
    let opts = RunOptions {
        drain_timeout: Duration::from_secs(5),
        ..RunOptions::default()
    };
    let sidecar = spawn_sidecar_with(
        edge,
        telephony,
        LeaseSettings::new("sc-text", "local", 1),
        opts,
        stop_rx,
    );
    edge.wait_for("registration", Duration::from_secs(10), |s| {
        (!s.registrations.is_empty()).then_some(())
    })
    .await;
    (stop, sidecar)
}

async fn stop_sidecar(
    stop: tokio::sync::watch::Sender<voxline_media_sidecar::lease::driver::Stop>,
    sidecar: std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary>,
) -> voxline_media_sidecar::lease::driver::RunSummary {
    stop.send(voxline_media_sidecar::lease::driver::Stop::Drain)
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || sidecar.join()),
    )
    .await
    .expect("the sidecar exits")
    .unwrap()
    .unwrap()
}

fn text_offer(id: &str) -> voxline_shared::sidecar_link::MessageOffer {
    voxline_shared::sidecar_link::MessageOffer {
        message_id: id.into(),
        tenant_id: "ten_1".into(),
        from: "+15550001111".into(),
        to: "+14155550111".into(),
        body: "Hello from voxline ☺".into(),
        deadline_ms: voxline_testkit::now_ms() + 60_000,
    }
}

/// The edge's result for `message_id` (waits for it).
async fn text_result(
    edge: &support::FakeEdge,
    message_id: &str,
) -> voxline_shared::sidecar_link::MessageResult {
    edge.wait_for("message result", Duration::from_secs(15), |s| {
        s.message_results
            .iter()
            .find(|r| r.message_id == message_id)
            .cloned()
    })
    .await
}

/// Issue 15: a text goes out as a MESSAGE, is challenged (401) and sent
/// again with Digest credentials that sipp verifies; the trunk's 202 is
/// reported to the edge as `sent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_is_challenged_then_accepted_and_reported_sent() {
    use voxline_shared::sidecar_link::MessageOutcome;
    let sipp = Sipp::start_traced("uas_message_auth401").await;
    let edge = fake_edge().await;
    let (stop, sidecar) = texting_sidecar(&edge, sipp.addr.port(), 0, true).await;
    edge.message(text_offer("msg_sipp1"));
    let r = text_result(&edge, "msg_sipp1").await;
    assert_eq!(
        (
            r.outcome,
            r.sip_code,
            r.reason.as_deref(),
            r.sidecar_id.as_str()
        ),
        (MessageOutcome::Sent, Some(202), None, "sc-text")
    );
    let message = logged_request(&sipp, "MESSAGE").await;
    assert_eq!(
        header(&message, "To"),
        format!("<sip:+14155550111@127.0.0.1:{}>", sipp.addr.port())
    );
    assert!(header(&message, "From").starts_with("<sip:+15550001111@127.0.0.1:"));
    sipp.success().await;
    let summary = stop_sidecar(stop, sidecar).await;
    assert!(summary.clean_exit, "{summary:?}");
    let s = edge.state.lock().unwrap();
    assert_eq!(s.message_results.len(), 1, "sent and reported once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_the_trunk_refuses_is_reported_failed_rejected() {
    use voxline_shared::sidecar_link::MessageOutcome;
    let sipp = Sipp::start("uas_message_488").await;
    let edge = fake_edge().await;
    let (stop, sidecar) = texting_sidecar(&edge, sipp.addr.port(), 0, false).await;
    edge.message(text_offer("msg_sipp2"));
    let r = text_result(&edge, "msg_sipp2").await;
    assert_eq!(
        (r.outcome, r.sip_code, r.reason.as_deref()),
        (MessageOutcome::Failed, Some(488), Some("rejected"))
    );
    sipp.success().await;
    stop_sidecar(stop, sidecar).await;
}

/// The trunk (sipp as UAC) sends a text; the sidecar answers it only once
/// the edge has: its 2xx becomes 200, its 404 becomes 404 (sipp requires
/// that code, and retransmits until it gets an answer).
async fn inbound_text_answered(scenario: &str, edge_status: u16) {
    use voxline_shared::sidecar_link::InboundContent;
    let edge = fake_edge().await;
    edge.state.lock().unwrap().inbound_status = edge_status;
    let (sipp_port, sip_port) = (free_udp_port(), free_udp_port());
    let (stop, sidecar) = texting_sidecar(&edge, sipp_port, sip_port, false).await;
    let target = format!("127.0.0.1:{sip_port}");
    let sipp = Sipp::start_on(scenario, sipp_port, &[target.as_str()]).await;
    sipp.success().await;
    {
        let s = edge.state.lock().unwrap();
        assert_eq!(s.inbound.len(), 1, "forwarded once: {:?}", s.inbound);
        let m = &s.inbound[0];
        assert_eq!(
            (
                m.from.as_str(),
                m.to.as_str(),
                m.sidecar_id.as_str(),
                m.region.as_str()
            ),
            ("+14155550111", "+14155550100", "sc-text", "local")
        );
        let InboundContent::Text { body } = &m.content else {
            panic!("{m:?}")
        };
        assert_eq!(body.trim_end(), "Hello from sipp");
        assert!(!m.sip_call_id.is_empty());
    }
    stop_sidecar(stop, sidecar).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_from_the_trunk_reaches_the_edge_and_the_trunk_gets_200() {
    inbound_text_answered("uac_message", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_to_a_number_the_edge_does_not_know_gets_404() {
    inbound_text_answered("uac_message_404", 404).await;
}

/// Issue 21 (RFC 3262): a reliable 183 with early-media SDP is PRACKed
/// (sipp checks the RAck), its SDP is the answer, the 200 completes the call.
#[tokio::test]
async fn a_reliable_183_is_pracked_and_the_call_answered() {
    let sipp = Sipp::start("uas_prack").await;
    let sip = endpoint().await;
    let mut trunk = Trunk::new(sipp.addr);
    trunk.require_100rel = true;
    let mut h = sip.start_call(spec(vec![trunk])).await.unwrap();
    let early = match next(&mut h).await {
        Event::Call(DialogEvent::Ringing {
            code: 183,
            early_media: Some(n),
        }) => n,
        e => panic!("unexpected {e:?}"),
    };
    assert_eq!(early.codec, Codec::Pcmu);
    match next(&mut h).await {
        Event::Call(DialogEvent::Answered(n)) => assert_eq!(n, early),
        e => panic!("unexpected {e:?}"),
    }
    h.hangup(EndedReason::HangupRequested).await;
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason),
        (CallStatus::Completed, EndedReason::HangupRequested)
    );
    sipp.success().await;
}

/// Issue 21 (RFC 4028): the callee makes us the refresher of a 90 s
/// session (the RFC's floor); we refresh at half of it by UPDATE (sipp
/// checks the wire) or, when the callee does not allow UPDATE, by re-INVITE
/// with our SDP's version unchanged. The session-timer second is 40 ms here
/// (`ms_per_s`, not a config key) so the refresh comes after 1.8 s, not 45 s;
/// the timing itself is tested sans-IO in `sip::call`.
async fn refreshed_by(scenario: &str) {
    let sipp = Sipp::start(scenario).await;
    let sip = endpoint().await;
    let mut trunk = Trunk::new(sipp.addr);
    trunk.session_timer = Some(SessionTimerConfig {
        ms_per_s: 40,
        ..SessionTimerConfig::default()
    });
    let mut h = sip.start_call(spec(vec![trunk])).await.unwrap();
    match next(&mut h).await {
        Event::Call(DialogEvent::Answered(_)) => {}
        e => panic!("unexpected {e:?}"),
    }
    // sipp hangs up once it has seen (and answered) the refresh.
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason),
        (CallStatus::Completed, EndedReason::CalleeHangup)
    );
    sipp.success().await;
}

#[tokio::test]
async fn the_session_is_refreshed_by_update() {
    refreshed_by("uas_session_update").await;
}

#[tokio::test]
async fn the_session_is_refreshed_by_reinvite_without_update() {
    refreshed_by("uas_session_reinvite").await;
}

/// Issue 21 (RFC 4028 6): a 422 is followed by the INVITE again with its
/// Min-SE as our interval (sipp checks it), and that call is answered.
#[tokio::test]
async fn a_422_is_retried_with_the_larger_interval() {
    let sipp = Sipp::start("uas_422").await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(sipp.addr)]))
        .await
        .unwrap();
    match next(&mut h).await {
        Event::Call(DialogEvent::Answered(_)) => {}
        e => panic!("unexpected {e:?}"),
    }
    h.hangup(EndedReason::HangupRequested).await;
    let o = ended(&mut h).await;
    assert_eq!(o.status, CallStatus::Completed);
    sipp.success().await;
}

/// Issue 21: sipp A answers 302 with the number on sipp B (another
/// configured trunk on another loopback port); the call follows it with a
/// new INVITE (CSeq 2, same Call-ID, sipp B logs it) and B answers it.
#[tokio::test]
async fn a_302_to_another_trunk_is_followed_and_answered_there() {
    let b = Sipp::start_traced("uas_answer").await;
    let port = b.addr.port().to_string();
    let a = Sipp::start_with("uas_redirect", &["-set", "target_port", &port]).await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(a.addr), Trunk::new(b.addr)]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    let invite = logged_request(&b, "INVITE").await;
    assert_eq!(header(&invite, "CSeq"), "2 INVITE");
    h.hangup(EndedReason::HangupRequested).await;
    let o = ended(&mut h).await;
    assert_eq!(o.status, CallStatus::Completed);
    a.success().await;
    b.success().await;
}

/// Issue 21, a 302 chain: trunk A redirects to trunk B, which redirects to
/// trunk C, which answers: each hop a new INVITE of the same call (same
/// Call-ID, CSeq 2 then 3), within `max_redirects`.
#[tokio::test]
async fn a_chain_of_302s_is_followed_hop_by_hop() {
    let c = Sipp::start_traced("uas_answer").await;
    let c_port = c.addr.port().to_string();
    let b = Sipp::start_with(
        "uas_redirect",
        &["-set", "target_port", &c_port, "-trace_msg"],
    )
    .await;
    let b_port = b.addr.port().to_string();
    let a = Sipp::start_with(
        "uas_redirect",
        &["-set", "target_port", &b_port, "-trace_msg"],
    )
    .await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![
            Trunk::new(a.addr),
            Trunk::new(b.addr),
            Trunk::new(c.addr),
        ]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    let at_a = logged_request(&a, "INVITE").await;
    let at_b = logged_request(&b, "INVITE").await;
    let at_c = logged_request(&c, "INVITE").await;
    assert_eq!(
        (
            header(&at_a, "CSeq"),
            header(&at_b, "CSeq"),
            header(&at_c, "CSeq")
        ),
        ("1 INVITE", "2 INVITE", "3 INVITE")
    );
    let call_id = header(&at_a, "Call-ID");
    assert_eq!(
        (header(&at_b, "Call-ID"), header(&at_c, "Call-ID")),
        (call_id, call_id)
    );
    h.hangup(EndedReason::HangupRequested).await;
    assert_eq!(ended(&mut h).await.status, CallStatus::Completed);
    a.success().await;
    b.success().await;
    c.success().await;
}

/// A 302 to a host that is neither a trunk nor allowed is not dialled: the
/// call ends with the 302 (`rejected`, never redialled).
#[tokio::test]
async fn a_302_to_an_unknown_host_is_not_followed() {
    let nobody = free_udp_port().to_string();
    let a = Sipp::start_with("uas_redirect", &["-set", "target_port", &nobody]).await;
    let sip = endpoint().await;
    let mut h = sip
        .start_call(spec(vec![Trunk::new(a.addr)]))
        .await
        .unwrap();
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason, o.sip_code, o.detail.as_str()),
        (
            CallStatus::Failed,
            EndedReason::Rejected,
            Some(302),
            "redirect_target_not_allowed"
        )
    );
    a.success().await;
}

// ------------------------------------------ registration, outbound proxy (issue 21)

/// Waits (bounded) until the sidecar's one registration satisfies `done`.
async fn registration_until(
    sip: &SipUdp,
    what: &str,
    done: impl Fn(&RegistrationStatus) -> bool,
) -> RegistrationStatus {
    let t0 = Instant::now();
    loop {
        let all = sip.registrations().await.unwrap();
        if let Some(s) = all.first().filter(|s| done(s)) {
            return s.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "registration never {what}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// sipp is the registrar and the trunk: our REGISTER is challenged and its
/// Digest verified; the 200 grants 2 s (Contact `expires` over `Expires`),
/// so the refresh comes after 1 s, answering the same nonce again (sipp
/// verifies it too); then a call goes out through the binding (its Contact,
/// the account's credentials, verified by sipp); at the end the un-REGISTER.
/// sipp exits 0 only if every step came, in order, with its checks.
#[tokio::test]
async fn registers_with_digest_refreshes_and_calls_through_the_binding() {
    let sipp = Sipp::start_calls("uas_registrar", free_udp_port(), 2, &["-trace_msg"]).await;
    let mut config = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    let domain = format!("voxline.test:{}", sipp.addr.port());
    let mut reg = RegisterConfig::new(
        "sipp",
        sipp.addr,
        "acct",
        &domain,
        "127.0.0.1:0".parse().unwrap(),
    );
    reg.credentials = Some(Credentials {
        username: "acct-auth".into(),
        password: "pw".into(),
        realm: None,
    });
    config.registrations = vec![reg];
    let (sip, _inbound) = SipUdp::bind_with(config).await.unwrap();
    let mut trunk = with_creds(sipp.addr, "acct-auth", "pw");
    trunk.domain = Some("voxline.test".into());
    trunk.registration = Some("sipp".into());

    let first = registration_until(&sip, "bound", |s| s.bound).await;
    assert_eq!(
        (first.state, first.granted_expires_s, first.last_code),
        (RegistrationState::Registered, Some(2), Some(200))
    );
    let t0 = Instant::now();
    let refreshed = registration_until(&sip, "refreshed", |s| s.registrations >= 2).await;
    assert_eq!(refreshed.granted_expires_s, Some(60));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "refreshed at half of 2 s"
    );

    let mut h = sip.start_call(spec(vec![trunk])).await.unwrap();
    until_answered(&mut h).await;
    h.hangup(EndedReason::HangupRequested).await;
    assert_eq!(ended(&mut h).await.status, CallStatus::Completed);

    assert!(
        sip.unregister(Duration::from_secs(5)).await,
        "un-REGISTER answered"
    );
    let gone = sip.registrations().await.unwrap();
    assert_eq!(
        (gone[0].state, gone[0].bound),
        (RegistrationState::Unregistered, false)
    );
    // The INVITE came from the binding: its Contact and its domain.
    let register = logged_request(&sipp, "REGISTER").await;
    let invite = logged_request(&sipp, "INVITE").await;
    assert_eq!(header(&invite, "Contact"), header(&register, "Contact"));
    assert!(
        header(&invite, "From").starts_with(&format!("<sip:+14155550199@{domain}>;tag=")),
        "{}",
        header(&invite, "From")
    );
    sipp.success().await;
}

/// Calls to a registering trunk whose registration has not succeeded fail at
/// once, `trunk_not_registered`, rather than going out unregistered.
#[tokio::test]
async fn a_call_to_a_trunk_not_registered_fails_clearly() {
    // Nobody answers the REGISTER here.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let registrar = silent.local_addr().unwrap();
    let mut config = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    config.registrations = vec![RegisterConfig::new(
        "quiet",
        registrar,
        "acct",
        "voxline.test",
        "127.0.0.1:0".parse().unwrap(),
    )];
    let (sip, _inbound) = SipUdp::bind_with(config).await.unwrap();
    let mut trunk = Trunk::new(registrar);
    trunk.registration = Some("quiet".into());
    let mut h = sip.start_call(spec(vec![trunk])).await.unwrap();
    let o = ended(&mut h).await;
    assert_eq!(
        (o.status, o.reason, o.detail.as_str(), o.sip_code),
        (
            CallStatus::Failed,
            EndedReason::TrunkError,
            "trunk_not_registered",
            None
        )
    );
    let s = sip.registrations().await.unwrap();
    assert_eq!(
        (s[0].state, s[0].bound),
        (RegistrationState::Registering, false)
    );
}

/// sipp as the outbound proxy: the INVITE reaches it with the trunk's
/// Request-URI and `Route: <sip:proxy;lr>`; the callee's Contact (where
/// nobody listens) gets the ACK and BYE through the proxy too.
#[tokio::test]
async fn an_outbound_proxy_gets_the_invite_with_its_route_and_the_trunks_request_uri() {
    let sipp = Sipp::start_traced("uas_proxy").await;
    let sip = endpoint().await;
    let mut trunk = Trunk::new(sipp.addr);
    trunk.domain = Some("trunk.invalid:5080".into());
    trunk.outbound_route = Some(format!("<sip:{};lr>", sipp.addr));
    let mut h = sip.start_call(spec(vec![trunk])).await.unwrap();
    until_answered(&mut h).await;
    h.hangup(EndedReason::HangupRequested).await;
    assert_eq!(ended(&mut h).await.status, CallStatus::Completed);
    let invite = logged_request(&sipp, "INVITE").await;
    assert_eq!(header(&invite, "Route"), format!("<sip:{};lr>", sipp.addr));
    assert_eq!(
        header(&invite, "To"),
        "<sip:+14155550100@trunk.invalid:5080>"
    );
    sipp.success().await;
}

/// The whole sidecar with a `register = true` trunk (sipp the registrar):
/// it registers at start (Digest verified by sipp) and, drained, removes
/// its binding (Expires: 0) before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_sidecar_unregisters_its_trunk() {
    use voxline_media_sidecar::config::Secret;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;

    let sipp = Sipp::start_traced("uas_registrar_unregister").await;
    let edge = fake_edge().await;
    let mut telephony = sipp_telephony(sipp.addr.port(), (48_100, 48_199));
    let trunk = &mut telephony.trunks[0];
    trunk.username = Some("acct".into());
    trunk.password = Some(Secret::new("pw"));
    trunk.register = true;
    let (stop, stop_rx) = tokio::sync::watch::channel(Stop::Run);
    let sidecar = spawn_sidecar_with(
        &edge,
        telephony,
        LeaseSettings::new("sc-reg", "local", 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    // Registered (the 200 went out once sipp logged the second REGISTER).
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(sipp.dir.join("messages.log")).unwrap_or_default();
        if log.matches("SIP/2.0 200 OK").count() >= 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never registered:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let register = logged_request(&sipp, "REGISTER").await;
    assert_eq!(
        (header(&register, "To"), header(&register, "Expires")),
        (
            format!("<sip:acct@127.0.0.1:{}>", sipp.addr.port()).as_str(),
            "3600"
        )
    );
    let summary = stop_sidecar(stop, sidecar).await;
    assert!(summary.clean_exit, "{summary:?}");
    // sipp exits 0 only once the un-REGISTER came and was answered.
    sipp.success().await;
}

// ------------------------------------------- trunk host names (DNS, RFC 3263)

/// The request line of the first `method` request sipp logged (`start_traced`).
async fn logged_request_line(sipp: &Sipp, method: &str) -> String {
    logged_request(sipp, method).await;
    let log = std::fs::read_to_string(sipp.dir.join("messages.log")).unwrap_or_default();
    let at = log.find(&format!("\n{method} sip:")).expect("logged");
    log[at + 1..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// dnsmasq as the name server of the zone `voxline.test` on a free loopback
/// port, answering from `records` (TTL 60 s); stopped (and its directory
/// removed) when dropped.
struct TestZone {
    dns: voxline_testkit::ChildGuard,
    addr: SocketAddr,
    dir: PathBuf,
}

impl TestZone {
    fn start(records: &[String]) -> TestZone {
        let port = voxline_testkit::free_tcp_udp_port();
        let dir = voxline_testkit::temp_dir("dns-zone");
        let dns = voxline_testkit::start_dnsmasq(&dir, port, "voxline.test", 60, records)
            .unwrap_or_else(|e| panic!("{e}"));
        TestZone {
            dns,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        }
    }
}

impl Drop for TestZone {
    fn drop(&mut self) {
        self.dns.terminate(Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `[telephony]` whose one trunk is the host name `host`, no port (so
/// NAPTR/SRV apply), resolved through `dns`.
fn dns_telephony(
    host: &str,
    dns: SocketAddr,
    rtp_ports: (u16, u16),
) -> voxline_media_sidecar::config::Telephony {
    let mut t = sipp_telephony(0, rtp_ports);
    t.trunks[0].host = host.into();
    t.trunks[0].port = None;
    t.dns_servers = vec![dns];
    t
}

/// Issue 21 (RFC 3263 / RFC 2782): a trunk host name with two SRV targets,
/// priority 10 -> a sipp that answers 503, priority 20 -> a sipp that answers
/// 200. The whole sidecar dials the first, fails over on the 503 and the
/// call is answered on the second; the Request-URI names the host alone
/// (SRV's port is not the URI's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_targets_are_dialled_by_priority_and_a_503_fails_over_to_the_next() {
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;

    let down = Sipp::start("uas_503").await;
    let up = Sipp::start_traced("uas_answer").await;
    let zone = TestZone::start(&[
        format!(
            "--srv-host=_sip._udp.trunk.voxline.test,b.voxline.test,{},20,0",
            up.addr.port()
        ),
        format!(
            "--srv-host=_sip._udp.trunk.voxline.test,a.voxline.test,{},10,0",
            down.addr.port()
        ),
        "--host-record=a.voxline.test,127.0.0.1".into(),
        "--host-record=b.voxline.test,127.0.0.1".into(),
    ]);
    let edge = fake_edge().await;
    let (stop, stop_rx) = tokio::sync::watch::channel(Stop::Run);
    let opts = RunOptions {
        drain_timeout: Duration::from_millis(300),
        hangup_grace: Duration::from_secs(10),
        ..RunOptions::default()
    };
    let sidecar = spawn_sidecar_with(
        &edge,
        dns_telephony("trunk.voxline.test", zone.addr, (49_000, 49_099)),
        LeaseSettings::new("sc-dns", "local", 1),
        opts,
        stop_rx,
    );
    let mut call = support::offer("k_dns", 600);
    call.engine = voxline_shared::EngineKind::Echo.into();
    edge.offer(call);
    edge.wait_for("answered", Duration::from_secs(15), |s| {
        s.events
            .iter()
            .any(|e| e.call_id == "k_dns" && e.kind.name() == "answered")
            .then_some(())
    })
    .await;
    assert_eq!(
        logged_request_line(&up, "INVITE").await,
        "INVITE sip:+14155550100@trunk.voxline.test SIP/2.0"
    );
    let invite = logged_request(&up, "INVITE").await;
    assert_eq!(
        header(&invite, "To"),
        "<sip:+14155550100@trunk.voxline.test>"
    );
    // Draining hangs the call up (BYE), so the answering sipp's scenario ends.
    stop_sidecar(stop, sidecar).await;
    // The 503 trunk was dialled (INVITE, our ACK of the 503) before the other.
    down.success().await;
    up.success().await;
}

/// Issue 21 (RFC 3263 4.1): NAPTR -> SRV -> A. The host's NAPTR records
/// lead (for UDP: `SIP+D2U`, not the better-ordered `SIPS+D2T`) to an SRV
/// name other than `_sip._udp.<host>` (which exists too, as a decoy), and
/// its target's A record to the sipp that answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naptr_leads_to_srv_and_srv_to_the_address_that_answers() {
    use voxline_media_sidecar::telephony::Telephony;

    let up = Sipp::start_traced("uas_answer").await;
    let decoy_port = free_udp_port();
    let zone = TestZone::start(&[
        "--naptr-record=naptr.voxline.test,10,10,s,SIPS+D2T,,_sips._tcp.tls.voxline.test".into(),
        "--naptr-record=naptr.voxline.test,20,10,s,SIP+D2U,,_sip._udp.proxy.voxline.test".into(),
        format!(
            "--srv-host=_sip._udp.proxy.voxline.test,c.voxline.test,{},10,0",
            up.addr.port()
        ),
        format!("--srv-host=_sip._udp.naptr.voxline.test,c.voxline.test,{decoy_port},10,0"),
        format!("--srv-host=_sips._tcp.tls.voxline.test,c.voxline.test,{decoy_port},10,0"),
        "--host-record=c.voxline.test,127.0.0.1".into(),
    ]);
    let cfg = dns_telephony("naptr.voxline.test", zone.addr, (49_100, 49_199));
    let tel = Telephony::start(&cfg, Default::default())
        .await
        .expect("the trunk resolves");
    let trunks = tel.dial_plan().trunks();
    assert_eq!(
        trunks
            .iter()
            .map(|t| (t.addr, t.domain.as_deref(), t.uri_without_port))
            .collect::<Vec<_>>(),
        [(up.addr, Some("naptr.voxline.test"), true)]
    );
    let sip = endpoint().await;
    let mut h = sip.start_call(spec(trunks)).await.unwrap();
    until_answered(&mut h).await;
    assert_eq!(
        logged_request_line(&up, "INVITE").await,
        "INVITE sip:+14155550100@naptr.voxline.test SIP/2.0"
    );
    h.hangup(EndedReason::HangupRequested).await;
    ended(&mut h).await;
    up.success().await;
}

// ------------------------------------------------- inbound calls (issue 16)

/// sipp as the trunk calls the sidecar's number: it rings (100, 180) while
/// the edge decides, the edge's offer (echo engine) is answered with 200 and
/// an SDP answer, the ACK confirms it, and sipp's BYE ends it; the edge
/// hears of it once, and gets the call's events as for an outbound call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_the_trunk_is_answered_by_the_agent_and_ended_by_the_callers_bye() {
    use voxline_shared::sidecar_link::InboundDecision;
    let edge = fake_edge().await;
    let mut offer = support::offer("c_in1", 60);
    offer.lease_id = "inbound_c_in1".into();
    offer.phone = "+14155550111".into();
    offer.caller_number = Some("+14155550100".into());
    offer.engine = voxline_shared::EngineKind::Echo.into();
    edge.decide_inbound(InboundDecision::Answer {
        offer: Box::new(offer),
    });
    let (sipp_port, sip_port) = (free_udp_port(), free_udp_port());
    let (stop, sidecar) = texting_sidecar(&edge, sipp_port, sip_port, false).await;
    let target = format!("127.0.0.1:{sip_port}");
    let sipp = Sipp::start_on("uac_inbound_call", sipp_port, &[target.as_str()]).await;
    sipp.success().await;
    edge.wait_for("the call's end", Duration::from_secs(10), |s| {
        s.events
            .iter()
            .find(|e| e.call_id == "c_in1" && e.kind.is_ended())
            .map(|e| e.kind.clone())
    })
    .await;
    {
        let s = edge.state.lock().unwrap();
        assert_eq!(
            s.inbound_calls.len(),
            1,
            "asked once: {:?}",
            s.inbound_calls
        );
        let c = &s.inbound_calls[0];
        assert_eq!(
            (
                c.called.as_str(),
                c.caller.as_str(),
                c.sidecar_id.as_str(),
                c.region.as_str()
            ),
            ("+14155550100", "+14155550111", "sc-text", "local")
        );
        let ended = s
            .events
            .iter()
            .find(|e| e.call_id == "c_in1" && e.kind.is_ended())
            .unwrap();
        let voxline_shared::sidecar_link::EventKind::Ended {
            status,
            reason,
            timings,
            ..
        } = &ended.kind
        else {
            unreachable!()
        };
        assert_eq!(
            (*status, *reason),
            (
                voxline_shared::CallStatus::Completed,
                voxline_shared::EndedReason::CalleeHangup
            )
        );
        assert!(timings.answered_ms.is_some(), "{timings:?}");
    }
    let kinds = edge.kinds_of("c_in1");
    assert!(kinds.contains(&"answered"), "{kinds:?}");
    assert!(
        !kinds.contains(&"ringing"),
        "the edge made it ringing already: {kinds:?}"
    );
    let summary = stop_sidecar(stop, sidecar).await;
    assert!(summary.clean_exit, "{summary:?}");
}

/// The edge says the number is nobody's: the caller, rung meanwhile, gets 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_number_the_edge_does_not_know_is_refused_404() {
    let edge = fake_edge().await;
    let (sipp_port, sip_port) = (free_udp_port(), free_udp_port());
    let (stop, sidecar) = texting_sidecar(&edge, sipp_port, sip_port, false).await;
    let target = format!("127.0.0.1:{sip_port}");
    let sipp = Sipp::start_on("uac_inbound_call_404", sipp_port, &[target.as_str()]).await;
    sipp.success().await;
    {
        let s = edge.state.lock().unwrap();
        assert_eq!(s.inbound_calls.len(), 1);
        assert_eq!(s.inbound_calls[0].called, "+14155550199");
        assert!(s.events.is_empty(), "no call: {:?}", s.events);
    }
    stop_sidecar(stop, sidecar).await;
}

/// The edge says the number rings a person, but none of their phones is
/// registered with this sidecar (its registrar is off) and they neither
/// forward nor take messages: the caller gets 480 at once and the call
/// ends `no_answer` (a person's calls with phones: tests/person_calls.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_person_without_a_phone_here_is_refused_480_and_ended_no_answer() {
    use voxline_shared::sidecar_link::{EventKind, InboundDecision, RingUser};
    let edge = fake_edge().await;
    let mut offer = support::offer("c_ring1", 60);
    offer.lease_id = "inbound_c_ring1".into();
    offer.phone = "+14155550111".into();
    offer.caller_number = Some("+14155550100".into());
    offer.agent_id = String::new();
    edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(offer),
        ring: RingUser {
            user_pk: 12,
            extension: "1002".into(),
            display_name: "John".into(),
            ring_timeout_seconds: 30,
            forward_number: None,
            voicemail: false,
        },
    });
    let (sipp_port, sip_port) = (free_udp_port(), free_udp_port());
    let (stop, sidecar) = texting_sidecar(&edge, sipp_port, sip_port, false).await;
    let target = format!("127.0.0.1:{sip_port}");
    let sipp = Sipp::start_on("uac_inbound_call_480", sipp_port, &[target.as_str()]).await;
    sipp.success().await;
    let ended = edge
        .wait_for("the call's end", Duration::from_secs(10), |s| {
            s.events
                .iter()
                .find(|e| e.call_id == "c_ring1" && e.kind.is_ended())
                .map(|e| e.kind.clone())
        })
        .await;
    let EventKind::Ended {
        status,
        reason,
        sip_code,
        ..
    } = ended
    else {
        unreachable!()
    };
    assert_eq!(
        (status, reason, sip_code),
        (
            voxline_shared::CallStatus::NoAnswer,
            voxline_shared::EndedReason::NoAnswer,
            Some(480)
        )
    );
    let summary = stop_sidecar(stop, sidecar).await;
    assert!(summary.clean_exit, "{summary:?}");
}

// ------------------------------------------------ the keypad (issue 18)

/// The local engine's IVR script of the keypad tests: press 2 then # at
/// the answer, and on the callee's 1 say a line and hang up.
#[cfg(feature = "local-engine")]
const IVR_SCRIPT: &str = "[script]\ngreeting: [dtmf 2#]\n\
    1|press 1 -> Thanks for pressing one. [end]\n\
    silence 20s -> Are you still there?\n[/script]";

/// One whole-sidecar call with the local engine and `IVR_SCRIPT` to sipp
/// running `scenario`; `during` runs once the call is offered (the test's
/// own part of the callee). Returns the call's transcript turns (role,
/// text) and its `ended` reason, once sipp ran to its end.
#[cfg(feature = "local-engine")]
async fn ivr_call<F: std::future::Future<Output = ()>>(
    scenario: &str,
    extra: &[&str],
    call_id: &str,
    rtp_ports: (u16, u16),
    during: F,
) -> (
    Vec<(voxline_shared::sidecar_link::Role, String)>,
    EndedReason,
) {
    use tokio::sync::watch;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;
    use voxline_shared::sidecar_link::EventKind;

    let sipp = Sipp::start_with(scenario, extra).await;
    let edge = fake_edge().await;
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let opts = RunOptions {
        drain_timeout: Duration::from_secs(5),
        ..RunOptions::default()
    };
    let sidecar = spawn_sidecar(
        &edge,
        sipp.addr.port(),
        rtp_ports,
        LeaseSettings::new(format!("sc-{call_id}"), "local", 1),
        opts,
        stop_rx,
    );
    let mut call = support::offer(call_id, 600);
    call.engine = voxline_shared::EngineKind::Local.into();
    call.system_prompt = Some(IVR_SCRIPT.into());
    edge.offer(call);
    during.await;
    let reason = edge
        .wait_for("ended", Duration::from_secs(30), |st| {
            st.events.iter().find_map(|e| match &e.kind {
                EventKind::Ended { reason, .. } if e.call_id == call_id => Some(*reason),
                _ => None,
            })
        })
        .await;
    sipp.success().await;
    let turns = {
        let st = edge.state.lock().unwrap();
        let mut evs: Vec<_> = st.events.iter().filter(|e| e.call_id == call_id).collect();
        evs.sort_by_key(|e| e.seq);
        evs.iter()
            .filter_map(|e| match &e.kind {
                EventKind::TranscriptTurn { role, text, .. } => Some((*role, text.clone())),
                _ => None,
            })
            .collect()
    };
    stop.send(Stop::Drain).unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || sidecar.join()),
    )
    .await
    .expect("the sidecar exits")
    .unwrap()
    .unwrap();
    (turns, reason)
}

/// The transcript turns `call_id` reported to the fake edge, in order.
fn call_turns(
    edge: &support::FakeEdge,
    call_id: &str,
) -> Vec<(voxline_shared::sidecar_link::Role, String)> {
    use voxline_shared::sidecar_link::EventKind;
    let st = edge.state.lock().unwrap();
    let mut evs: Vec<_> = st.events.iter().filter(|e| e.call_id == call_id).collect();
    evs.sort_by_key(|e| e.seq);
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::TranscriptTurn { role, text, .. } => Some((*role, text.clone())),
            _ => None,
        })
        .collect()
}

/// Why `call_id` ended, once it has (waiting at most `within`).
async fn ended_reason(edge: &support::FakeEdge, call_id: &str, within: Duration) -> EndedReason {
    use voxline_shared::sidecar_link::EventKind;
    edge.wait_for("the call's end", within, |st| {
        st.events.iter().find_map(|e| match &e.kind {
            EventKind::Ended { reason, .. } if e.call_id == call_id => Some(*reason),
            _ => None,
        })
    })
    .await
}

/// What `ivr_call`'s transcript must show: the agent's keys pressed as the
/// send_dtmf tool (`method`), the callee's 1 as `[DTMF 1]`, and the line
/// the script says for it (so the key reached the engine).
#[cfg(feature = "local-engine")]
fn assert_ivr_transcript(turns: &[(voxline_shared::sidecar_link::Role, String)], method: &str) {
    use voxline_shared::sidecar_link::Role;
    let tool = turns
        .iter()
        .find(|(r, t)| *r == Role::Agent && t.starts_with("[tool send_dtmf "))
        .unwrap_or_else(|| panic!("no send_dtmf turn: {turns:?}"));
    assert!(
        tool.1
            .starts_with(r#"[tool send_dtmf {"digits":"2#"} -> {"#),
        "{tool:?}"
    );
    let result: serde_json::Value = serde_json::from_str(
        tool.1
            .split(" -> ")
            .nth(1)
            .and_then(|r| r.strip_suffix(']'))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        result,
        serde_json::json!({"ok": true, "digits": "2#", "method": method})
    );
    let pressed = turns
        .iter()
        .position(|(r, t)| *r == Role::Callee && t == "[DTMF 1]")
        .unwrap_or_else(|| panic!("the callee's key is not in the transcript: {turns:?}"));
    let said = turns
        .iter()
        .position(|(r, t)| *r == Role::Agent && t == "Thanks for pressing one.")
        .unwrap_or_else(|| panic!("the engine did not answer the key: {turns:?}"));
    assert!(pressed < said, "{turns:?}");
}

/// Issue 18, SIP INFO: sipp answers without telephone-event, so the agent's
/// keys (its script's `[dtmf 2#]`) go as INFO `application/dtmf-relay`;
/// sipp's regexps check `Signal=2` then `Signal=#` (it fails otherwise).
/// sipp then presses 1 by INFO: answered 200, it reaches the local engine
/// (whose script answers it and hangs up) and the transcript.
#[cfg(feature = "local-engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivr_over_sip_info_gets_the_agents_keys_and_its_key_reaches_the_engine() {
    let (turns, reason) = ivr_call(
        "uas_ivr_info",
        &["-trace_msg"],
        "ivr_info",
        (49_200, 49_299),
        async {},
    )
    .await;
    assert_ivr_transcript(&turns, "sip_info");
    assert_eq!(reason, EndedReason::AgentHangup);
}

/// Issue 18, RFC 4733: sipp answers with telephone-event and RTP to this
/// test's socket, which decodes the agent's keys from the RTP events it
/// gets (2 then #, each once, by its end packets), then presses 1 itself
/// with RFC 4733 events; the key reaches the local engine and the transcript.
#[cfg(feature = "local-engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivr_over_rfc4733_gets_the_agents_keys_and_its_key_reaches_the_engine() {
    use voxline_media_sidecar::media::dtmf::{DtmfReceiver, DtmfSender};
    use voxline_media_sidecar::media::rtp::{self, RtpHeader};

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let callee = async move {
        // The agent's keys, decoded as a phone would: events of PT 101.
        let mut rx = DtmfReceiver::new(8_000);
        let mut keys = String::new();
        let mut buf = vec![0u8; 2048];
        let mut ours = None;
        let t0 = Instant::now();
        while keys.len() < 2 {
            let (n, from) = tokio::time::timeout(Duration::from_secs(15), sock.recv_from(&mut buf))
                .await
                .expect("RTP from the sidecar")
                .unwrap();
            ours = Some(from);
            let Ok(p) = rtp::parse(&buf[..n]) else {
                continue;
            };
            if p.header.payload_type == 101 {
                let now_us = t0.elapsed().as_micros() as u64;
                for d in rx.on_packet(now_us, p.header.timestamp, p.payload) {
                    keys.push(d.digit);
                    assert!(d.duration_ms >= 100, "{d:?}");
                }
            }
        }
        assert_eq!(keys, "2#");
        // Press 1: RFC 4733 events from the SDP's address to the sidecar's RTP port.
        let to = ours.unwrap();
        let mut tx = DtmfSender::new(8_000);
        tx.push("1", 160).unwrap();
        let mut seq = 1000u16;
        for k in 0..30u32 {
            let ts = 80_000 + k * 160;
            let mut out = Vec::new();
            match tx.tick(ts) {
                Some(ev) => {
                    let h = RtpHeader {
                        marker: ev.marker,
                        payload_type: 101,
                        sequence: seq,
                        timestamp: ev.timestamp,
                        ssrc: 0x5151,
                    };
                    rtp::write(&h, &ev.payload.to_bytes(), &mut out);
                }
                None => {
                    let h = RtpHeader {
                        marker: false,
                        payload_type: 0,
                        sequence: seq,
                        timestamp: ts,
                        ssrc: 0x5151,
                    };
                    rtp::write(&h, &[0xFF; 160], &mut out);
                }
            }
            seq = seq.wrapping_add(1);
            sock.send_to(&out, to).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Keep the socket (and so the port) until the call ends.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while tokio::time::timeout(Duration::from_secs(30), sock.recv_from(&mut buf))
                .await
                .is_ok()
            {}
        });
    };
    let (turns, reason) = ivr_call(
        "uas_ivr_rtp",
        &["-key", "rtp_port", &port],
        "ivr_rtp",
        (49_300, 49_399),
        callee,
    )
    .await;
    assert_ivr_transcript(&turns, "rfc4733");
    assert_eq!(reason, EndedReason::AgentHangup);
}

/// Issue 18, the callee's keys from a real recording: sipp plays the RFC
/// 4733 capture Debian's sip-tester ships (`dtmf_2833_1.pcap`: key 1,
/// telephone-event 101) from its media port once answered; the key reaches
/// the local engine (its script answers it and hangs up) and the transcript.
#[cfg(feature = "local-engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sipp_plays_from_its_rfc4733_capture_reaches_the_engine() {
    use voxline_shared::sidecar_link::Role;
    let pcap = "/usr/share/sip-tester/dtmf_2833_1.pcap";
    assert!(
        std::path::Path::new(pcap).is_file(),
        "{pcap} missing (Debian package sip-tester)"
    );
    let media_port = free_udp_port().to_string();
    let (turns, reason) = ivr_call(
        "uas_pcap_dtmf",
        &["-mp", &media_port],
        "ivr_pcap",
        (49_400, 49_499),
        async {},
    )
    .await;
    let pressed = turns
        .iter()
        .position(|(r, t)| *r == Role::Callee && t == "[DTMF 1]")
        .unwrap_or_else(|| panic!("the key is not in the transcript: {turns:?}"));
    let said = turns
        .iter()
        .position(|(r, t)| *r == Role::Agent && t == "Thanks for pressing one.")
        .unwrap_or_else(|| panic!("the engine did not answer the key: {turns:?}"));
    assert!(pressed < said, "{turns:?}");
    assert_eq!(reason, EndedReason::AgentHangup);
}

/// Every message a fake OpenAI Realtime server got from the sidecar.
type SeenMessages = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A protocol-faithful OpenAI Realtime stand-in (GA events) on loopback for
/// one session: `session.created`, `session.updated` for each
/// `session.update`, and for every other client message what `respond`
/// returns. Every message the sidecar sent is kept.
async fn fake_openai(
    session_id: &'static str,
    mut respond: impl FnMut(&serde_json::Value) -> Vec<serde_json::Value> + Send + 'static,
) -> (String, SeenMessages) {
    use futures_util::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let seen = SeenMessages::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let text = |v: Value| Message::text(v.to_string());
        let _ = ws
            .send(text(
                json!({"type": "session.created", "session": {"id": session_id}}),
            ))
            .await;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                continue;
            };
            log.lock().unwrap().push(v.clone());
            let out = if v["type"] == "session.update" {
                vec![json!({"type": "session.updated", "session": v["session"]})]
            } else {
                respond(&v)
            };
            for o in out {
                if ws.send(text(o)).await.is_err() {
                    return;
                }
            }
        }
    });
    (url, seen)
}

/// Response `n` of a fake OpenAI Realtime server: a call of tool `name`
/// with `args` (`call_id` `call_{n}`), or nothing when `name` is `None`.
fn fake_openai_response(n: u32, tool: Option<(&str, &str)>) -> Vec<serde_json::Value> {
    use serde_json::json;
    let resp = format!("resp_{n}");
    let Some((name, args)) = tool else {
        return vec![
            json!({"type": "response.done", "response": {"id": resp, "status": "completed"}}),
        ];
    };
    let (item, call) = (format!("item_f{n}"), format!("call_{n}"));
    vec![
        json!({"type": "response.created", "response": {"id": resp, "status": "in_progress"}}),
        json!({"type": "response.output_item.added", "response_id": resp, "output_index": 0,
               "item": {"id": item, "type": "function_call", "call_id": call, "name": name}}),
        json!({"type": "response.function_call_arguments.done", "response_id": resp, "item_id": item,
               "output_index": 0, "call_id": call, "name": name, "arguments": args}),
        json!({"type": "response.done", "response": {"id": resp, "status": "completed"}}),
    ]
}

/// The fake OpenAI engine of the keypad test: on the greeting's
/// `response.create` it calls `send_dtmf` with "2#"; once the callee's keys
/// came as a user text item, its next response calls `end_call`; other
/// responses say nothing.
async fn fake_openai_ivr() -> (String, SeenMessages) {
    let (mut responses, mut keys_heard) = (0, false);
    fake_openai("sess_ivr", move |v| {
        match v["type"].as_str().unwrap_or("") {
            "conversation.item.create" if v["item"]["type"] == "message" => {
                keys_heard = true;
                vec![]
            }
            "response.create" => {
                responses += 1;
                match (responses, keys_heard) {
                    (1, _) => fake_openai_response(1, Some(("send_dtmf", r#"{"digits":"2#"}"#))),
                    (n, true) => {
                        fake_openai_response(n, Some(("end_call", r#"{"reason":"menu done"}"#)))
                    }
                    (n, false) => fake_openai_response(n, None),
                }
            }
            _ => vec![],
        }
    })
    .await
}

/// Issue 18 with a cloud engine: the OpenAI Realtime engine (a local fake,
/// the real one is a paid service) calls `send_dtmf`; sipp, answering
/// without telephone-event, checks the INFOs carry 2 then # and presses 1
/// by INFO; the engine gets `send_dtmf`'s result once sipp has answered
/// both, then the key as a user text item `[DTMF 1]`, and its `end_call`
/// hangs up. Each tool call and the key are in the transcript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_engine_presses_keys_with_send_dtmf_and_hears_the_callees() {
    use tokio::sync::watch;
    use voxline_media_sidecar::engine::guard::AllowedHosts;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;
    use voxline_shared::sidecar_link::{Role, SecretText};

    let (url, seen) = fake_openai_ivr().await;
    let sipp = Sipp::start("uas_ivr_info").await;
    let edge = fake_edge().await;
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = spawn_sidecar_allowing(
        &edge,
        sipp_telephony(sipp.addr.port(), (49_500, 49_599)),
        AllowedHosts::parse(&["127.0.0.1"]).unwrap(),
        LeaseSettings::new("sc-ivr-openai", "local", 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    let mut call = support::offer("ivr_openai", 600);
    call.engine = voxline_shared::EngineKind::OpenaiRealtime.into();
    call.engine_base_url = Some(url);
    call.engine_api_key = Some(SecretText::new("sk-fake-0123456789".to_string()));
    edge.offer(call);
    let reason = ended_reason(&edge, "ivr_openai", Duration::from_secs(30)).await;
    sipp.success().await;
    assert_eq!(reason, EndedReason::AgentHangup);
    let turns = call_turns(&edge, "ivr_openai");
    let texts: Vec<&str> = turns.iter().map(|(_, t)| t.as_str()).collect();
    let dtmf_turn = texts
        .iter()
        .position(|t| {
            t.starts_with(r#"[tool send_dtmf {"digits":"2#"} -> "#)
                && t.contains(r#""method":"sip_info""#)
        })
        .unwrap_or_else(|| panic!("{turns:?}"));
    let key_turn = turns
        .iter()
        .position(|(r, t)| *r == Role::Callee && t == "[DTMF 1]")
        .unwrap_or_else(|| panic!("{turns:?}"));
    let end_turn = texts
        .iter()
        .position(|t| t.starts_with(r#"[tool end_call {"reason":"menu done"} -> {"ok":true}]"#))
        .unwrap_or_else(|| panic!("{turns:?}"));
    assert!(dtmf_turn < key_turn && key_turn < end_turn, "{turns:?}");
    // What the engine was told, in order: the tools declared, send_dtmf's
    // result (after the keys played), the key as the callee's text.
    let sent = seen.lock().unwrap().clone();
    let update = sent.iter().find(|v| v["type"] == "session.update").unwrap();
    let tools: Vec<&str> = update["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tools, ["send_dtmf", "end_call", "transfer"]);
    let result = sent
        .iter()
        .position(|v| {
            v["item"]["type"] == "function_call_output"
                && v["item"]["call_id"] == "call_1"
                && v["item"]["output"]
                    .as_str()
                    .is_some_and(|o| o.contains("sip_info"))
        })
        .unwrap_or_else(|| panic!("no send_dtmf result: {sent:?}"));
    let key = sent
        .iter()
        .position(|v| {
            v["type"] == "conversation.item.create"
                && v["item"]["role"] == "user"
                && v["item"]["content"][0]["text"] == "[DTMF 1]"
        })
        .unwrap_or_else(|| panic!("the key did not reach the engine: {sent:?}"));
    assert!(result < key, "{sent:?}");
    assert_eq!(sent[key + 1]["type"], "response.create");
    stop.send(Stop::Drain).unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || sidecar.join()),
    )
    .await
    .expect("the sidecar exits")
    .unwrap()
    .unwrap();
}

/// Issue 18 on an inbound call: sipp calls in (no telephone-event in its
/// offer), the local engine's script presses 2# as SIP INFO to the caller
/// (sipp's regexps check them), sipp presses 1 by INFO, the script answers
/// it and hangs up (sipp expects the BYE).
#[cfg(feature = "local-engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_caller_gets_the_agents_keys_as_sip_info_and_its_key_reaches_the_engine() {
    use voxline_shared::sidecar_link::InboundDecision;
    let edge = fake_edge().await;
    let mut offer = support::offer("c_in_ivr", 60);
    offer.lease_id = "inbound_c_in_ivr".into();
    offer.phone = "+14155550111".into();
    offer.caller_number = Some("+14155550100".into());
    offer.engine = voxline_shared::EngineKind::Local.into();
    offer.system_prompt = Some(IVR_SCRIPT.into());
    edge.decide_inbound(InboundDecision::Answer {
        offer: Box::new(offer),
    });
    let (sipp_port, sip_port) = (free_udp_port(), free_udp_port());
    let (stop, sidecar) = texting_sidecar(&edge, sipp_port, sip_port, false).await;
    let target = format!("127.0.0.1:{sip_port}");
    let sipp = Sipp::start_on("uac_inbound_ivr_info", sipp_port, &[target.as_str()]).await;
    sipp.success().await;
    let reason = ended_reason(&edge, "c_in_ivr", Duration::from_secs(10)).await;
    assert_eq!(reason, EndedReason::AgentHangup);
    let turns = call_turns(&edge, "c_in_ivr");
    assert_ivr_transcript(&turns, "sip_info");
    let summary = stop_sidecar(stop, sidecar).await;
    assert!(summary.clean_exit, "{summary:?}");
}

// ------------------------------------------- answering-machine detection (issue 18)

/// An answering machine's audio for sipp to play: a flite greeting (the
/// `slt` voice), 400 ms of quiet, a 1 kHz beep of 500 ms, 3 s of quiet, all
/// over faint line noise; with where the beep ends (ms from the start).
fn machine_audio(dir: &std::path::Path) -> (Vec<i16>, u64) {
    let greeting = voxline_testkit::flite_8k(
        dir,
        "slt",
        "Hi, you have reached the Smith family. We cannot come to the phone right now. \
         Please leave a message after the tone.",
    )
    .expect("flite");
    let mut pcm = greeting;
    pcm.extend(std::iter::repeat_n(0i16, 3_200));
    pcm.extend(voxline_testkit::tone(8_000, &[(1_000.0, 8_000.0)], 4_000));
    let beep_end_ms = pcm.len() as u64 / 8;
    pcm.extend(std::iter::repeat_n(0i16, 24_000));
    // Faint hiss (about -56 dBFS), deterministic.
    let mut x = 0x2545_F491u32;
    for s in &mut pcm {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *s = s.saturating_add((x % 101) as i16 - 50);
    }
    pcm.truncate(pcm.len() / 160 * 160);
    (pcm, beep_end_ms)
}

/// sipp as the machine: answers, plays `pcm` from its media port, expects
/// our BYE. The scenario names the pcap the test wrote.
async fn sipp_machine(pcm: &[i16], port: u16) -> Sipp {
    let dir = std::env::temp_dir().join(format!("voxline-amd-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("machine.pcap");
    voxline_testkit::write_pcap(&pcap, pcm).unwrap();
    let template = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uas_amd_pcap.xml"),
    )
    .unwrap();
    let sf = dir.join("uas_amd_pcap.xml");
    std::fs::write(&sf, template.replace("PCAP_FILE", pcap.to_str().unwrap())).unwrap();
    let mp = free_udp_port().to_string();
    Sipp::start_sf("uas_amd_pcap", sf, port, 1, &["-mp", &mp, "-trace_msg"]).await
}

/// The `answered_by` verdict and the `ended` event of `call`, with the
/// `answered` and `ended` event times.
async fn amd_outcome(
    edge: &support::FakeEdge,
    call: &str,
) -> (
    voxline_shared::sidecar_link::AnsweredBy,
    u64,
    CallStatus,
    EndedReason,
    u64,
) {
    use voxline_shared::sidecar_link::EventKind;
    edge.wait_for("ended", Duration::from_secs(20), |st| {
        let of_call = || st.events.iter().filter(|e| e.call_id == call);
        let (status, reason, ended_at) = of_call().find_map(|e| match &e.kind {
            EventKind::Ended { status, reason, .. } => Some((*status, *reason, e.at_ms)),
            _ => None,
        })?;
        let answered_at =
            of_call().find_map(|e| (e.kind == EventKind::Answered).then_some(e.at_ms))?;
        let (who, ms) = of_call().find_map(|e| match &e.kind {
            EventKind::AnsweredBy {
                answered_by,
                decision_ms,
            } => Some((*answered_by, *decision_ms)),
            _ => None,
        })?;
        Some((who, ms, status, reason, ended_at - answered_at))
    })
    .await
}

/// Issue 18, `amd: hangup`: sipp plays a machine's greeting and beep (a
/// pcap); the sidecar decides `machine` from the greeting's length and
/// hangs up (BYE, which sipp requires) long before the greeting ends: the
/// call ends `completed` / `answering_machine`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amd_hangup_byes_a_machine_soon_after_deciding() {
    use tokio::sync::watch;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;
    use voxline_shared::sidecar_link::{AmdMode, AnsweredBy};

    let dir = voxline_testkit::temp_dir("amd-hangup");
    let (pcm, _) = machine_audio(&dir);
    let sipp = sipp_machine(&pcm, free_udp_port()).await;
    let edge = fake_edge().await;
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = spawn_sidecar(
        &edge,
        sipp.addr.port(),
        (44_400, 44_499),
        LeaseSettings::new("sc-amd-h", "local", 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    let mut call = support::offer("amd_h", 600);
    call.engine = voxline_shared::EngineKind::Echo.into();
    call.amd = AmdMode::Hangup;
    edge.offer(call);
    let (who, decision_ms, status, reason, talked_ms) = amd_outcome(&edge, "amd_h").await;
    eprintln!("decided {who:?} at {decision_ms} ms; ended {talked_ms} ms after the answer");
    assert_eq!(who, AnsweredBy::Machine);
    assert_eq!(
        (status, reason),
        (CallStatus::Completed, EndedReason::AnsweringMachine)
    );
    // The greeting alone is over 5 s; speech past 2.5 s decides.
    let greeting_ms = pcm.len() as u64 / 8 - 400 - 500 - 3_000;
    assert!(greeting_ms > 5_000, "{greeting_ms}");
    assert!(
        (2_000..=4_000).contains(&decision_ms),
        "decided at {decision_ms} ms"
    );
    assert!(
        talked_ms >= decision_ms && talked_ms < decision_ms + 1_000,
        "BYE {talked_ms} ms after the answer, decided at {decision_ms} ms"
    );
    sipp.success().await;
    stop_sidecar(stop, sidecar).await;
}

/// Issue 18, `amd: leave_message`: sipp plays the machine; the sidecar
/// decides `machine`, stays quiet through the greeting and the beep, then
/// speaks the message (RTP from us, audible, only after the beep) and hangs
/// up. To see our RTP on the wire a relay stands between sipp and the
/// sidecar: the sidecar advertises 127.0.0.2 (its `public_ip`), where the
/// relay takes sipp's packets and passes them on from its own socket, so
/// the sidecar's symmetric RTP latches onto the relay and sends there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amd_leave_message_speaks_after_the_beep_then_byes() {
    use tokio::net::UdpSocket;
    use tokio::sync::watch;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;
    use voxline_shared::sidecar_link::{AmdMode, AnsweredBy};

    let dir = voxline_testkit::temp_dir("amd-leave");
    let (pcm, beep_end_ms) = machine_audio(&dir);
    let sipp = sipp_machine(&pcm, free_udp_port()).await;
    let edge = fake_edge().await;
    // One RTP port pair, so the relay knows the sidecar's port.
    let rtp_port = 44_600;
    let relay_in = UdpSocket::bind(("127.0.0.2", rtp_port)).await.unwrap();
    let relay_out = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let mut telephony = sipp_telephony(sipp.addr.port(), (rtp_port, rtp_port + 1));
    telephony.bind_ip = "127.0.0.1".parse().unwrap();
    telephony.public_ip = Some("127.0.0.2".parse().unwrap());
    let sidecar = spawn_sidecar_with(
        &edge,
        telephony,
        LeaseSettings::new("sc-amd-l", "local", 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    let mut call = support::offer("amd_l", 600);
    call.engine = voxline_shared::EngineKind::Echo.into();
    call.amd = AmdMode::LeaveMessage;
    call.amd_message = Some("Hello, this is Demo Dental. Please call us back. Goodbye.".into());
    edge.offer(call);

    // Relay sipp's packets; note when the first came (the pcap's start) and
    // when each packet of ours arrived, with its loudness.
    let sidecar_rtp = std::net::SocketAddr::from(([127, 0, 0, 1], rtp_port));
    let relay = async {
        let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
        let mut started: Option<Instant> = None;
        let mut ours: Vec<(u64, f64)> = Vec::new();
        let until = Instant::now() + Duration::from_secs(25);
        loop {
            tokio::select! {
                r = relay_in.recv_from(&mut a) => {
                    let (n, _) = r.unwrap();
                    started.get_or_insert_with(Instant::now);
                    relay_out.send_to(&a[..n], sidecar_rtp).await.unwrap();
                }
                r = relay_out.recv_from(&mut b) => {
                    let (n, from) = r.unwrap();
                    if from != sidecar_rtp || n <= 12 {
                        continue;
                    }
                    let Some(t0) = started else { continue };
                    let samples: Vec<f64> = b[12..n].iter().map(|&c| f64::from(voxline_testkit::mulaw_decode(c))).collect();
                    let rms = (samples.iter().map(|v| v * v).sum::<f64>() / samples.len() as f64).sqrt();
                    ours.push((t0.elapsed().as_millis() as u64, rms));
                }
                _ = tokio::time::sleep_until(until.into()) => break,
            }
            if edge.kinds_of("amd_l").contains(&"ended") {
                break;
            }
        }
        ours
    };
    let ours = relay.await;
    let (who, decision_ms, status, reason, _) = amd_outcome(&edge, "amd_l").await;
    assert_eq!(who, AnsweredBy::Machine);
    assert!(
        (2_000..=4_000).contains(&decision_ms),
        "decided at {decision_ms} ms"
    );
    assert_eq!(
        (status, reason),
        (CallStatus::Completed, EndedReason::AgentHangup)
    );
    // Our RTP reached the relay (latched), silent until the beep ended.
    assert!(ours.len() > 50, "RTP from us: {} packets", ours.len());
    let audible: Vec<u64> = ours
        .iter()
        .filter(|(_, rms)| *rms > 300.0)
        .map(|(t, _)| *t)
        .collect();
    let first = *audible.first().expect("the message was spoken");
    eprintln!(
        "decided machine at {decision_ms} ms; beep ended at {beep_end_ms} ms; ours: {} packets, first audible at {first} ms, last at {} ms",
        ours.len(),
        audible.last().unwrap()
    );
    assert!(
        first + 60 >= beep_end_ms && first <= beep_end_ms + 1_500,
        "first audible packet of ours at {first} ms; the beep ended at {beep_end_ms} ms"
    );
    // The message (a few seconds of speech), then the BYE.
    let spoken_ms = audible.last().unwrap() - first;
    assert!(spoken_ms > 1_500, "spoke for {spoken_ms} ms");
    sipp.success().await;
    stop_sidecar(stop, sidecar).await;
}

// ------------------------------------------------ transfers (issues 16, 18)

/// The fake OpenAI engine of the transfer tests: its first response (the
/// greeting) calls the `transfer` tool with `arguments`; later responses
/// say nothing.
async fn fake_openai_transfer(arguments: &'static str) -> (String, SeenMessages) {
    let mut responses = 0;
    fake_openai("sess_xfer", move |v| {
        if v["type"] != "response.create" {
            return vec![];
        }
        responses += 1;
        let tool = (responses == 1).then_some(("transfer", arguments));
        fake_openai_response(responses, tool)
    })
    .await
}

/// A sidecar on `telephony` (cloud engine URLs on loopback allowed) and a
/// call `call_id` on the fake OpenAI engine at `url`.
fn transfer_sidecar(
    edge: &support::FakeEdge,
    telephony: voxline_media_sidecar::config::Telephony,
    sidecar_id: &str,
    call_id: &str,
    url: String,
    record: bool,
) -> (
    tokio::sync::watch::Sender<voxline_media_sidecar::lease::driver::Stop>,
    std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary>,
) {
    use voxline_media_sidecar::engine::guard::AllowedHosts;
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;
    use voxline_shared::sidecar_link::SecretText;
    let (stop, stop_rx) = tokio::sync::watch::channel(Stop::Run);
    let sidecar = spawn_sidecar_allowing(
        edge,
        telephony,
        AllowedHosts::parse(&["127.0.0.1"]).unwrap(),
        LeaseSettings::new(sidecar_id, "local", 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    let mut call = support::offer(call_id, 120);
    call.engine = voxline_shared::EngineKind::OpenaiRealtime.into();
    call.engine_base_url = Some(url);
    call.engine_api_key = Some(SecretText::new("sk-fake-0123456789".to_string()));
    call.record = record;
    edge.offer(call);
    (stop, sidecar)
}

async fn stop_transfer_sidecar(
    stop: tokio::sync::watch::Sender<voxline_media_sidecar::lease::driver::Stop>,
    sidecar: std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary>,
) {
    stop.send(voxline_media_sidecar::lease::driver::Stop::Drain)
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || sidecar.join()),
    )
    .await
    .expect("the sidecar exits")
    .unwrap()
    .unwrap();
}

/// The `transferred` events `call_id` reported: (destination, method).
fn transferred_events(edge: &support::FakeEdge, call_id: &str) -> Vec<(String, String)> {
    use voxline_shared::sidecar_link::EventKind;
    let st = edge.state.lock().unwrap();
    st.events
        .iter()
        .filter(|e| e.call_id == call_id)
        .filter_map(|e| match &e.kind {
            EventKind::Transferred {
                destination,
                method,
                ..
            } => Some((destination.clone(), method.clone())),
            _ => None,
        })
        .collect()
}

/// Issue 16/18, a trunk configured with `refer = true`: the engine's
/// `transfer` becomes a REFER (sipp checks Refer-To and Referred-By),
/// sipp accepts it (202) and reports the destination's answer by NOTIFY
/// (sipfrag `SIP/2.0 200 OK`), and the sidecar then hangs up its side
/// (sipp expects the BYE). The call ends `transferred`, with the tool turn
/// and the `transferred` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_taking_refer_gets_the_transfer_and_our_side_hangs_up() {
    let (url, _seen) = fake_openai_transfer(r#"{"destination":"+15550002222"}"#).await;
    let sipp = Sipp::start("uas_refer").await;
    let edge = fake_edge().await;
    let mut tel = sipp_telephony(sipp.addr.port(), (42_100, 42_199));
    tel.trunks[0].refer = true;
    let (stop, sidecar) = transfer_sidecar(&edge, tel, "sc-refer", "xfer_refer", url, false);
    let reason = ended_reason(&edge, "xfer_refer", Duration::from_secs(30)).await;
    sipp.success().await;
    assert_eq!(reason, EndedReason::Transferred);
    assert_eq!(
        transferred_events(&edge, "xfer_refer"),
        [("+15550002222".to_string(), "refer".to_string())]
    );
    let turns = call_turns(&edge, "xfer_refer");
    assert!(
        turns.iter().any(|(_, t)| t
            == r#"[tool transfer {"destination":"+15550002222"} -> {"destination":"+15550002222","method":"refer","ok":true}]"#),
        "{turns:?}"
    );
    stop_transfer_sidecar(stop, sidecar).await;
}

/// One leg's media as a phone would do it, on the socket its SDP named:
/// sends a `send_hz` tone encoded with `encode` from the first packet the
/// sidecar sent it (symmetric RTP), decodes what arrives with `decode`, and
/// returns how many 20 ms frames of it carried the `expect_hz` tone.
async fn tone_leg(
    sock: tokio::net::UdpSocket,
    payload_type: u8,
    encode: fn(i16) -> u8,
    decode: fn(u8) -> i16,
    send_hz: f64,
    expect_hz: f64,
    run_for: Duration,
) -> usize {
    use voxline_media_sidecar::media::rtp::{self, RtpHeader};
    use voxline_testkit::dsp::{amp_at, tone};
    let mut buf = vec![0u8; 2048];
    let t0 = Instant::now();
    let mut sidecar = None;
    let mut heard = 0;
    let mut seq = 1u16;
    let mut ts = 0u32;
    let mut next_send = Instant::now();
    let signal = tone(8_000, &[(send_hz, 6_000.0)], 8_000 * 60);
    let mut at = 0usize;
    while t0.elapsed() < run_for {
        if let Some(to) = sidecar {
            while Instant::now() >= next_send {
                let frame: Vec<u8> = signal[at..at + 160].iter().map(|&s| encode(s)).collect();
                at = (at + 160) % (signal.len() - 160);
                let h = RtpHeader {
                    marker: seq == 1,
                    payload_type,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 0x7e57_0000 + u32::from(payload_type),
                };
                let mut out = Vec::new();
                rtp::write(&h, &frame, &mut out);
                let _ = sock.send_to(&out, to).await;
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                next_send += Duration::from_millis(20);
            }
        }
        let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(10), sock.recv_from(&mut buf)).await
        else {
            continue;
        };
        if sidecar.is_none() {
            sidecar = Some(from);
            next_send = Instant::now();
        }
        let Ok(p) = rtp::parse(&buf[..n]) else {
            continue;
        };
        if p.header.payload_type != payload_type || p.payload.len() < 160 {
            continue;
        }
        let pcm: Vec<i16> = p.payload.iter().map(|&b| decode(b)).collect();
        // The tone, clearly: well above silence and above the sent one.
        let (want, own) = (amp_at(&pcm, 8_000, expect_hz), amp_at(&pcm, 8_000, send_hz));
        if want > 1_000.0 && want > 4.0 * own {
            heard += 1;
        }
    }
    heard
}

/// The stereo recording of `call_id` in `dir` (left, right), once written.
async fn recording_channels(dir: &std::path::Path, call_id: &str) -> (Vec<i16>, Vec<i16>) {
    let path = dir.join(format!("{call_id}-1.wav"));
    let t0 = Instant::now();
    loop {
        if let Ok(mut r) = hound::WavReader::open(&path) {
            let spec = r.spec();
            assert_eq!((spec.channels, spec.sample_rate), (2, 8_000));
            let all: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
            let left = all.iter().step_by(2).copied().collect();
            let right = all.iter().skip(1).step_by(2).copied().collect();
            return (left, right);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no recording at {path:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 20 ms frames of `pcm` in which the `hz` tone is clearly there.
fn frames_with_tone(pcm: &[i16], hz: f64) -> usize {
    pcm.chunks_exact(160)
        .filter(|f| voxline_testkit::dsp::amp_at(f, 8_000, hz) > 1_000.0)
        .count()
}

/// Issue 16/18, bridged: the trunk is not configured for REFER, so the
/// engine's `transfer` makes the sidecar dial +15550002222 through the
/// trunk (sipp's second call) and bridge it to the callee once it
/// answered. The callee's leg is PCMU, the transferee's PCMA: each test
/// socket sends its own tone and must hear the other's (transcoded through
/// the sidecar), the recording holds the callee's tone on the right and the
/// transferee's on the left, and `hangs_up` (0: the callee, 1: the
/// transferee) sends a BYE that ends both legs (sipp expects the other BYE).
async fn bridged_transfer(hangs_up: usize, rtp: (u16, u16), call_id: &str) {
    use voxline_testkit::dsp::{alaw_decode, alaw_encode, mulaw_decode, mulaw_encode};
    let (url, seen) =
        fake_openai_transfer(r#"{"destination":"+15550002222","mode":"blind"}"#).await;
    let callee = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let transferee = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mode = |leg: usize| if leg == hangs_up { "bye" } else { "wait" };
    let dir = voxline_testkit::temp_dir("xfer-bridge");
    let inf = dir.join("legs.csv");
    std::fs::write(
        &inf,
        format!(
            "SEQUENTIAL\n{};0;PCMU;{};\n{};8;PCMA;{};\n",
            callee.local_addr().unwrap().port(),
            mode(0),
            transferee.local_addr().unwrap().port(),
            mode(1)
        ),
    )
    .unwrap();
    let port = free_udp_port();
    let sipp = Sipp::start_calls("uas_bridge", port, 2, &["-inf", inf.to_str().unwrap()]).await;
    let edge = fake_edge().await;
    let recordings = dir.join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    let mut tel = sipp_telephony(port, rtp);
    tel.recordings_dir = Some(recordings.clone());
    let (stop, sidecar) = transfer_sidecar(&edge, tel, "sc-bridge", call_id, url, true);
    let run = Duration::from_secs(6);
    let (callee_heard, transferee_heard) = tokio::join!(
        tone_leg(callee, 0, mulaw_encode, mulaw_decode, 600.0, 1_400.0, run),
        tone_leg(transferee, 8, alaw_encode, alaw_decode, 1_400.0, 600.0, run),
    );
    let reason = ended_reason(&edge, call_id, Duration::from_secs(30)).await;
    sipp.success().await;
    assert_eq!(reason, EndedReason::Transferred);
    // About 2-3 s of each tone crossed the bridge (the legs overlap that long).
    assert!(
        callee_heard >= 25,
        "the callee heard {callee_heard} frames of the transferee"
    );
    assert!(
        transferee_heard >= 25,
        "the transferee heard {transferee_heard} frames of the callee"
    );
    assert_eq!(
        transferred_events(&edge, call_id),
        [("+15550002222".to_string(), "bridge".to_string())]
    );
    let turns = call_turns(&edge, call_id);
    assert!(
        turns.iter().any(|(_, t)| t.starts_with(r#"[tool transfer {"destination":"+15550002222","mode":"blind"} -> {"destination":"+15550002222","method":"bridge","ok":true}]"#)),
        "{turns:?}"
    );
    // The engine was closed once bridged: it heard nothing after its tool call.
    let sent = seen.lock().unwrap().clone();
    assert!(
        !sent
            .iter()
            .any(|v| v["item"]["type"] == "function_call_output"),
        "a detached engine got a result: {sent:?}"
    );
    let (left, right) = recording_channels(&recordings, call_id).await;
    assert!(
        frames_with_tone(&right, 600.0) >= 25,
        "the callee is not on the recording's right"
    );
    assert!(
        frames_with_tone(&left, 1_400.0) >= 25,
        "the transferee is not on the recording's left"
    );
    assert_eq!(frames_with_tone(&left, 600.0), 0, "the callee leaked left");
    stop_transfer_sidecar(stop, sidecar).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_transfer_relays_audio_both_ways_and_the_transferees_bye_ends_both() {
    bridged_transfer(1, (42_200, 42_299), "xfer_bridge_a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_transfer_ends_both_legs_when_the_callee_hangs_up() {
    bridged_transfer(0, (42_300, 42_399), "xfer_bridge_b").await;
}

/// Issue 18, the local engine: a script rule answers the callee's key 1
/// (sipp's RFC 4733 recording) with `[tool transfer {...}]`, the built-in
/// tool; the trunk takes REFER, so sipp gets the REFER, accepts it, NOTIFYs
/// 200, and expects our BYE. The call ends `transferred`.
#[cfg(feature = "local-engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_engine_script_transfers_on_a_key_by_refer() {
    use voxline_media_sidecar::lease::driver::{RunOptions, Stop};
    use voxline_media_sidecar::lease::LeaseSettings;
    use voxline_shared::sidecar_link::Role;
    let pcap = "/usr/share/sip-tester/dtmf_2833_1.pcap";
    assert!(
        std::path::Path::new(pcap).is_file(),
        "{pcap} missing (Debian package sip-tester)"
    );
    let media_port = free_udp_port().to_string();
    let sipp = Sipp::start_with("uas_pcap_refer", &["-mp", &media_port]).await;
    let edge = fake_edge().await;
    let mut tel = sipp_telephony(sipp.addr.port(), (42_400, 42_499));
    tel.trunks[0].refer = true;
    let (stop, stop_rx) = tokio::sync::watch::channel(Stop::Run);
    let sidecar = spawn_sidecar_with(
        &edge,
        tel,
        LeaseSettings::new("sc-local-refer", "local", 1),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    let mut call = support::offer("xfer_local", 600);
    call.engine = voxline_shared::EngineKind::Local.into();
    call.system_prompt = Some(
        "[script]\ngreeting: Press one for a person.\n\
         1 -> [tool transfer {\"destination\":\"+15550002222\"}] Transferring you now.\n\
         silence 20s -> Are you still there?\n[/script]"
            .into(),
    );
    edge.offer(call);
    let reason = ended_reason(&edge, "xfer_local", Duration::from_secs(30)).await;
    sipp.success().await;
    assert_eq!(reason, EndedReason::Transferred);
    assert_eq!(
        transferred_events(&edge, "xfer_local"),
        [("+15550002222".to_string(), "refer".to_string())]
    );
    let turns = call_turns(&edge, "xfer_local");
    let key = turns
        .iter()
        .position(|(r, t)| *r == Role::Callee && t == "[DTMF 1]")
        .unwrap_or_else(|| panic!("{turns:?}"));
    let tool = turns
        .iter()
        .position(|(r, t)| {
            *r == Role::Agent
                && t.starts_with(r#"[tool transfer {"destination":"+15550002222"} -> {"destination":"+15550002222","method":"refer","ok":true}]"#)
        })
        .unwrap_or_else(|| panic!("{turns:?}"));
    assert!(key < tool, "{turns:?}");
    stop_transfer_sidecar(stop, sidecar).await;
}
