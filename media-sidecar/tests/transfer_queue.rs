//! Transfers to a queue (issue 16), against real peers on loopback: sipp
//! is the trunk and the callee (`uas_bridge`, one call, its media a socket
//! of the test), baresip (Debian `baresip-core`) is the queue member's
//! phone, registered with the sidecar's registrar and answering with a
//! tone. The edge's transfer command carries the queue's plan (as
//! `POST /v1/calls/{id}/transfer` with `queue` sends it): the engine is
//! detached, the callee's answered leg waits in the queue, the member's
//! phone rings and is bridged, and audio crosses both ways.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use voxline_media_sidecar::lease::driver::{RunOptions, RunSummary, Stop};
use voxline_media_sidecar::lease::LeaseSettings;
use voxline_shared::sidecar_link::{
    Command as EdgeCommand, EventKind, LegStep, QueueOverflow, QueuePlan, QueueStep,
    RegistrationAck, RingUser, TransferMode, TransferTarget,
};
use voxline_shared::EndedReason;
use voxline_testkit::dsp::{amp_at, mulaw_decode, mulaw_encode, tone};
use voxline_testkit::{
    free_sip_port, free_udp_port, start_registering_phone, temp_dir, udp_port_bound,
    PhoneBehaviour, SIPP,
};

const LINK_SECRET: &str = "test-secret-0123456789abcdef";
const TENANT: &str = "ten_0123456789abcdef0123";
/// The member's SIP username: user pk 7 of `TENANT`.
const USER: &str = "7.ten_0123456789abcdef0123";
const PASSWORD: &str = "Sx9kQ2mZr7LwP4vN8cTb1yHd";
const SIPP_TIMEOUT_S: u32 = 40;

/// The callee's tone and the member's.
const CALLEE_HZ: f64 = 600.0;
const PERSON_HZ: f64 = 1_400.0;

/// sipp as the trunk answering one call (`scenario`: `uas_bridge`, or
/// `uas_bridge_key_info`, which also presses 1 by SIP INFO): its SDP names
/// `media_port`, PCMU; it waits for the sidecar's BYE.
async fn start_callee_trunk(scenario: &str, port: u16, media_port: u16, dir: &Path) -> Child {
    let sf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(format!("{scenario}.xml"));
    let inf = dir.join("legs.csv");
    std::fs::write(&inf, format!("SEQUENTIAL\n{media_port};0;PCMU;wait;\n")).unwrap();
    let child = Command::new(SIPP.require())
        .current_dir(dir)
        .args(["-sf", sf.to_str().unwrap(), "-inf", inf.to_str().unwrap()])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
        ])
        .args([
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            &format!("{SIPP_TIMEOUT_S}s"),
        ])
        .args(["-timeout_error", "-trace_err"])
        .arg("-error_file")
        .arg(dir.join("sipp-errors.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp (Debian package sip-tester)");
    let t0 = Instant::now();
    while !udp_port_bound(port) {
        assert!(t0.elapsed() < Duration::from_secs(5), "sipp did not bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

/// The whole sidecar: the registrar on `sip_port`, sipp at `trunk_port` as
/// its one trunk, RTP on `rtp`, linked to `edge`.
fn spawn_sidecar(
    edge: &support::FakeEdge,
    sip_port: u16,
    trunk_port: u16,
    rtp: (u16, u16),
    stop_rx: watch::Receiver<Stop>,
) -> std::thread::JoinHandle<RunSummary> {
    use voxline_media_sidecar::config;
    let mut telephony = support::one_trunk_telephony(trunk_port, rtp);
    telephony.sip_port = sip_port;
    telephony.registrar = config::Registrar {
        enabled: true,
        ..config::Registrar::default()
    };
    support::spawn_sip_sidecar(
        edge,
        LINK_SECRET,
        telephony,
        Default::default(),
        LeaseSettings::new("sc-xfer-queue", "local", 2),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    )
}

/// The callee's media as sipp's SDP named it: sends `CALLEE_HZ` (PCMU)
/// from the sidecar's first packet on, and counts the 20 ms frames that
/// carry `PERSON_HZ` clearly and those carrying the hold chime's first
/// note (440 Hz), until `stop` says so. Silence instead of the tone until
/// `talk` says so.
async fn callee_media(
    sock: tokio::net::UdpSocket,
    talk: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) -> (usize, usize) {
    use voxline_media_sidecar::media::rtp::{self, RtpHeader};
    let signal = tone(8_000, &[(CALLEE_HZ, 6_000.0)], 8_000 * 60);
    let mut buf = vec![0u8; 2048];
    let (mut sidecar, mut heard, mut seq, mut ts, mut at): (Option<SocketAddr>, _, u16, u32, _) =
        (None, 0, 1, 0, 0usize);
    let mut next_send = Instant::now();
    let mut hold = 0;
    while !*stop.borrow() {
        if let Some(to) = sidecar {
            while Instant::now() >= next_send {
                let talking = *talk.borrow();
                let frame: Vec<u8> = signal[at..at + 160]
                    .iter()
                    .map(|&s| mulaw_encode(if talking { s } else { 0 }))
                    .collect();
                at = (at + 160) % (signal.len() - 160);
                let h = RtpHeader {
                    marker: seq == 1,
                    payload_type: 0,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 0x7e57_0600,
                };
                let mut out = Vec::new();
                rtp::write(&h, &frame, &mut out);
                let _ = sock.send_to(&out, to).await;
                (seq, ts) = (seq.wrapping_add(1), ts.wrapping_add(160));
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
        if p.header.payload_type != 0 || p.payload.len() < 160 {
            continue;
        }
        let pcm: Vec<i16> = p.payload.iter().map(|&b| mulaw_decode(b)).collect();
        let (want, own) = (
            amp_at(&pcm, 8_000, PERSON_HZ),
            amp_at(&pcm, 8_000, CALLEE_HZ),
        );
        if want > 1_000.0 && want > 4.0 * own {
            heard += 1;
        }
        if amp_at(&pcm, 8_000, 440.0) > 500.0 {
            hold += 1;
        }
    }
    (heard, hold)
}

/// 20 ms frames of the WAVs baresip wrote of what it heard in which
/// `hz` is clearly there.
fn phone_heard(dumps: &Path, hz: f64) -> usize {
    let Ok(entries) = std::fs::read_dir(dumps) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .filter_map(|p| hound::WavReader::open(p).ok())
        .map(|mut r| {
            let pcm: Vec<i16> = r.samples::<i16>().map_while(Result::ok).collect();
            pcm.chunks_exact(160)
                .filter(|f| amp_at(f, 8_000, hz) > 1_000.0)
                .count()
        })
        .sum()
}

fn plan(members: Vec<RingUser>) -> QueuePlan {
    QueuePlan {
        queue_pk: 42,
        name: "Support".into(),
        extension: "600".into(),
        ring_all: false,
        members,
        member_timeout_seconds: 10,
        retry_seconds: 1,
        max_wait_seconds: 30,
        announce_every_seconds: 0,
        position: 1,
        overflow: QueueOverflow::Hangup,
    }
}

/// Issue 16: an AI call (the echo engine) answered by the callee; the edge
/// asks for a blind transfer to queue 600, whose one member (user pk 7)
/// has a baresip phone registered with this sidecar. A warm transfer to a
/// queue is refused first (`transfer_failed`, the call goes on). Then:
/// `transferred` (method `queue`, naming the queue's extension), the
/// queue's `entered`, the member's leg rung and answered, `connected`;
/// the callee hears the member's tone and the member the callee's. The
/// phone hangs up when it quits; that ends the callee's leg (sipp expects
/// our BYE) and the call ends as a queue call whose member hung up
/// (`agent_hangup`), with no second `answered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_queue_rings_its_member_and_bridges_the_callee() {
    let call_id = "xfer_queue";
    let dir = temp_dir("xfer-queue");
    let wav = dir.join("member-tone.wav");
    voxline_testkit::write_wav(
        &wav,
        8_000,
        &tone(8_000, &[(PERSON_HZ, 6_000.0)], 8_000 * 30),
    )
    .unwrap();
    let edge = support::FakeEdge::start(
        LINK_SECRET,
        RegistrationAck {
            protocol_version: 1,
            lease_wait_ms: 500,
            ack_deadline_ms: 5_000,
            dead_after_ms: 30_000,
        },
    )
    .await;
    edge.state
        .lock()
        .unwrap()
        .phone_accounts
        .push((USER.into(), PASSWORD.into()));
    let callee_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk_port = free_udp_port();
    let media_port = callee_sock.local_addr().unwrap().port();
    let mut sipp = start_callee_trunk("uas_bridge", trunk_port, media_port, &dir).await;
    let sip_port = free_sip_port();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = spawn_sidecar(&edge, sip_port, trunk_port, (47_800, 47_899), stop_rx);
    edge.wait_for(
        "the sidecar's link registration",
        Duration::from_secs(20),
        |s| (!s.registrations.is_empty()).then_some(()),
    )
    .await;
    let _phone = start_registering_phone(
        &dir,
        "member",
        USER,
        &format!("127.0.0.1:{sip_port}"),
        PASSWORD,
        PhoneBehaviour::Answers(&wav),
        20,
    )
    .expect("baresip (Debian package baresip-core)");
    edge.wait_for("the phone's binding", Duration::from_secs(15), |s| {
        s.phone_bindings
            .keys()
            .any(|(u, _)| u == USER)
            .then_some(())
    })
    .await;

    let mut call = support::offer(call_id, 120);
    call.tenant_id = TENANT.into();
    call.engine = voxline_shared::EngineKind::Echo.into();
    edge.offer(call);
    let (media_stop, media_stop_rx) = watch::channel(false);
    let (_talk, talk_rx) = watch::channel(true);
    let callee = tokio::spawn(callee_media(callee_sock, talk_rx, media_stop_rx));
    edge.wait_for("the callee's answer", Duration::from_secs(15), |s| {
        s.events
            .iter()
            .any(|e| e.call_id == call_id && e.kind == EventKind::Answered)
            .then_some(())
    })
    .await;
    let member = RingUser {
        user_pk: 7,
        extension: "1001".into(),
        display_name: "Alice".into(),
        ring_timeout_seconds: 20,
        forward_number: None,
        voicemail: false,
    };
    let queue = || TransferTarget::Queue {
        plan: Box::new(plan(vec![member.clone()])),
    };
    // Warm to a queue: refused, the agent keeps the callee.
    edge.command(EdgeCommand::Transfer {
        call_id: call_id.into(),
        transfer_id: "xfr_warm".into(),
        target: queue(),
        mode: TransferMode::Warm,
        message: None,
    });
    let failed = edge
        .wait_for(
            "the warm transfer's refusal",
            Duration::from_secs(10),
            |s| {
                s.events.iter().find_map(|e| match &e.kind {
                    EventKind::TransferFailed {
                        error, transfer_id, ..
                    } if e.call_id == call_id => Some((error.clone(), transfer_id.clone())),
                    _ => None,
                })
            },
        )
        .await;
    assert_eq!(
        failed,
        ("transfer_failed".to_string(), Some("xfr_warm".to_string()))
    );
    edge.command(EdgeCommand::Transfer {
        call_id: call_id.into(),
        transfer_id: "xfr_queue".into(),
        target: queue(),
        mode: TransferMode::Blind,
        message: None,
    });
    let transferred = edge
        .wait_for("the transfer", Duration::from_secs(10), |s| {
            s.events.iter().find_map(|e| match &e.kind {
                EventKind::Transferred { transfer_id, .. }
                    if e.call_id == call_id && transfer_id.as_deref() == Some("xfr_queue") =>
                {
                    Some(e.kind.clone())
                }
                _ => None,
            })
        })
        .await;
    assert!(
        matches!(&transferred, EventKind::Transferred { destination, method, extension: None,
            mode: Some(TransferMode::Blind), .. } if destination == "600" && method == "queue"),
        "{transferred:?}"
    );
    edge.wait_for("the member's answer", Duration::from_secs(15), |s| {
        s.events
            .iter()
            .any(|e| {
                e.call_id == call_id
                    && matches!(
                        e.kind,
                        EventKind::Queue {
                            step: QueueStep::Connected,
                            ..
                        }
                    )
            })
            .then_some(())
    })
    .await;
    let reason = {
        let r = tokio::time::timeout(Duration::from_secs(25), async {
            loop {
                let ended = edge
                    .state
                    .lock()
                    .unwrap()
                    .events
                    .iter()
                    .find_map(|e| match &e.kind {
                        EventKind::Ended { reason, .. } if e.call_id == call_id => Some(*reason),
                        _ => None,
                    });
                if let Some(r) = ended {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        media_stop.send(true).unwrap();
        r.expect("the call ends once the member's phone hangs up")
    };
    let (callee_heard, _held) = callee.await.unwrap();
    assert_eq!(reason, EndedReason::AgentHangup);
    let events: Vec<EventKind> = edge
        .state
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.call_id == call_id)
        .map(|e| e.kind.clone())
        .collect();
    let steps: Vec<QueueStep> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Queue { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [QueueStep::Entered, QueueStep::Connected],
        "{events:?}"
    );
    let legs: Vec<(LegStep, Option<u64>)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Leg { step, user_pk, .. } => Some((*step, *user_pk)),
            _ => None,
        })
        .collect();
    assert!(
        legs.contains(&(LegStep::Answered, Some(7))),
        "the member's leg answered: {legs:?}"
    );
    assert_eq!(
        events.iter().filter(|e| **e == EventKind::Answered).count(),
        1,
        "answered once, before the transfer: {events:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), sipp.wait())
        .await
        .expect("sipp exits")
        .unwrap();
    assert!(
        status.success(),
        "sipp: {}",
        std::fs::read_to_string(dir.join("sipp-errors.log")).unwrap_or_default()
    );
    assert!(
        callee_heard >= 50,
        "the callee heard {callee_heard} frames of the member"
    );
    drop(_phone);
    let member_heard = phone_heard(&dir.join("baresip-member/dumps"), CALLEE_HZ);
    assert!(
        member_heard >= 50,
        "the member heard {member_heard} frames of the callee"
    );
    stop.send(Stop::Drain).unwrap();
    tokio::task::spawn_blocking(move || sidecar.join())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A transferred callee nobody in the queue answers goes back to the
/// call's own agent at the overflow (`agent`): `transferred` (method
/// `queue`), the queue's `entered` then `timed_out` (no member to ring:
/// the queue takes callers when empty), no second `answered`, and the call
/// goes on with the agent until the edge hangs it up (`hangup_requested`,
/// our BYE, which sipp expects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transferred_callee_nobody_answers_goes_back_to_the_agent() {
    let call_id = "xfer_queue_overflow";
    let dir = temp_dir("xfer-queue-overflow");
    let edge = support::FakeEdge::start(
        LINK_SECRET,
        RegistrationAck {
            protocol_version: 1,
            lease_wait_ms: 500,
            ack_deadline_ms: 5_000,
            dead_after_ms: 30_000,
        },
    )
    .await;
    let callee_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk_port = free_udp_port();
    let media_port = callee_sock.local_addr().unwrap().port();
    let mut sipp = start_callee_trunk("uas_bridge", trunk_port, media_port, &dir).await;
    let sip_port = free_sip_port();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = spawn_sidecar(&edge, sip_port, trunk_port, (47_900, 47_999), stop_rx);
    edge.wait_for(
        "the sidecar's link registration",
        Duration::from_secs(20),
        |s| (!s.registrations.is_empty()).then_some(()),
    )
    .await;
    let mut call = support::offer(call_id, 120);
    call.tenant_id = TENANT.into();
    call.engine = voxline_shared::EngineKind::Echo.into();
    edge.offer(call);
    let (media_stop, media_stop_rx) = watch::channel(false);
    let (_talk, talk_rx) = watch::channel(true);
    let callee = tokio::spawn(callee_media(callee_sock, talk_rx, media_stop_rx));
    edge.wait_for("the callee's answer", Duration::from_secs(15), |s| {
        s.events
            .iter()
            .any(|e| e.call_id == call_id && e.kind == EventKind::Answered)
            .then_some(())
    })
    .await;
    let mut p = plan(vec![]);
    p.max_wait_seconds = 2;
    p.overflow = QueueOverflow::Agent;
    edge.command(EdgeCommand::Transfer {
        call_id: call_id.into(),
        transfer_id: "xfr_back".into(),
        target: TransferTarget::Queue { plan: Box::new(p) },
        mode: TransferMode::Blind,
        message: None,
    });
    edge.wait_for("the overflow", Duration::from_secs(10), |s| {
        s.events
            .iter()
            .any(|e| {
                e.call_id == call_id
                    && matches!(
                        e.kind,
                        EventKind::Queue {
                            step: QueueStep::TimedOut,
                            ..
                        }
                    )
            })
            .then_some(())
    })
    .await;
    // Back with the agent: the call goes on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !edge.kinds_of(call_id).contains(&"ended"),
        "{:?}",
        edge.kinds_of(call_id)
    );
    edge.command(EdgeCommand::Hangup {
        call_id: call_id.into(),
    });
    let reason = edge
        .wait_for("the end", Duration::from_secs(10), |s| {
            s.events.iter().find_map(|e| match &e.kind {
                EventKind::Ended { reason, .. } if e.call_id == call_id => Some(*reason),
                _ => None,
            })
        })
        .await;
    media_stop.send(true).unwrap();
    let _ = callee.await.unwrap();
    assert_eq!(reason, EndedReason::HangupRequested);
    let kinds = edge.kinds_of(call_id);
    assert_eq!(
        kinds.iter().filter(|k| **k == "answered").count(),
        1,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"transferred"), "{kinds:?}");
    let status = tokio::time::timeout(Duration::from_secs(10), sipp.wait())
        .await
        .expect("sipp exits")
        .unwrap();
    assert!(
        status.success(),
        "sipp: {}",
        std::fs::read_to_string(dir.join("sipp-errors.log")).unwrap_or_default()
    );
    stop.send(Stop::Drain).unwrap();
    tokio::task::spawn_blocking(move || sidecar.join())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
