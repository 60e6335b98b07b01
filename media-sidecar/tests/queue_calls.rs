//! Queue calls (issue 16) against real peers on loopback: sipp as the
//! trunk places the inbound call to the whole sidecar (SIP endpoint,
//! registrar, lease client); the fake edge decides `queue` for it; real
//! baresip phones register as the queue's members with Digest and are rung
//! by the sidecar. The caller's RTP goes to a test socket (the sipp
//! scenario's SDP names it) that sends a 250 Hz tone and measures what it
//! hears: hold audio, then the member (a baresip playing 1900 Hz) or the
//! agent (the echo engine: the caller's own tone back).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use voxline_media_sidecar::lease::driver::{RunOptions, RunSummary, Stop};
use voxline_media_sidecar::lease::LeaseSettings;
use voxline_shared::sidecar_link::{
    EventKind, InboundDecision, LegStep, QueueOverflow, QueuePlan, QueueStep, RegistrationAck,
    RingUser,
};
use voxline_shared::{CallStatus, EndedReason};
use voxline_testkit::{
    amp_at, free_sip_port, free_udp_port, start_registering_phone, temp_dir, udp_port_bound,
    write_wav, ChildGuard, PhoneBehaviour, SIPP,
};

const LINK_SECRET: &str = "test-secret-0123456789abcdef";
const TENANT: &str = "ten_0123456789abcdef0123";
const PASSWORD: &str = "Sx9kQ2mZr7LwP4vN8cTb1yHd";
/// The caller's tone, and the answering member's: away from every note
/// of the hold music (392-784 Hz and their octaves, up to 1568 Hz).
const CALLER_HZ: f64 = 250.0;
const MEMBER_HZ: f64 = 1_900.0;

/// The tests of this file one at a time: each runs a whole sidecar, sipp
/// and baresip phones on a small machine, and measures audio in real time.
/// (Members' "in use" marks are per process too.)
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    SERIAL.get_or_init(Default::default).lock().await
}

fn username(pk: u64) -> String {
    format!("{pk}.{TENANT}")
}

/// baresip registering member `pk` with the sidecar at `sidecar_port`,
/// taking calls as `phone` says, quitting after `secs`; its log is
/// `dir/baresip-<name>.log`.
fn start_member(
    dir: &Path,
    name: &str,
    pk: u64,
    sidecar_port: u16,
    phone: PhoneBehaviour<'_>,
    secs: u32,
) -> ChildGuard {
    let registrar = format!("127.0.0.1:{sidecar_port}");
    start_registering_phone(dir, name, &username(pk), &registrar, PASSWORD, phone, secs)
        .expect("baresip (Debian package baresip-core)")
}

/// sipp as the trunk (on `port`) placing one call to the sidecar at
/// `target`, with the caller's RTP on `media_port`.
async fn start_caller(
    dir: &Path,
    scenario: &str,
    port: u16,
    target: &str,
    media_port: u16,
) -> Child {
    start_callers(dir, scenario, port, target, &[media_port]).await
}

/// As [`start_caller`], one call per media port, 4 s apart.
async fn start_callers(
    dir: &Path,
    scenario: &str,
    port: u16,
    target: &str,
    media_ports: &[u16],
) -> Child {
    let sf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(format!("{scenario}.xml"));
    let inf = dir.join("media.csv");
    let lines: String = media_ports.iter().map(|p| format!("{p};\n")).collect();
    std::fs::write(&inf, format!("SEQUENTIAL\n{lines}")).unwrap();
    let calls = media_ports.len().to_string();
    let child = Command::new(SIPP.require())
        .current_dir(dir)
        .args(["-sf", sf.to_str().unwrap(), target])
        .args(["-inf", inf.to_str().unwrap()])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
        ])
        .args(["-m", &calls, "-r", "1", "-rp", "4000"])
        .args(["-nostdin", "-timeout", "40s", "-timeout_error"])
        .args(["-trace_err", "-error_file"])
        .arg(dir.join("sipp-errors.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp");
    let t0 = Instant::now();
    while !udp_port_bound(port) {
        assert!(t0.elapsed() < Duration::from_secs(5), "sipp did not bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

async fn caller_done(mut sipp: Child, dir: &Path) {
    let status = tokio::time::timeout(Duration::from_secs(45), sipp.wait())
        .await
        .expect("sipp exits in time")
        .unwrap();
    let log = std::fs::read_to_string(dir.join("sipp-errors.log")).unwrap_or_default();
    assert!(status.success(), "sipp exited {status}: {log}");
}

/// One 20 ms frame the caller heard: when (ms since the first), its level
/// and the member's tone and the caller's own tone in it.
#[derive(Debug, Clone, Copy)]
struct Heard {
    at_ms: u64,
    rms: f64,
    member: f64,
    own: f64,
}

/// The caller's RTP: sends a 250 Hz tone (PCMU) once the sidecar's RTP
/// arrived, and notes every frame heard, until nothing came for 1.5 s (the
/// call is over) or `run_for` passed.
async fn caller_media(sock: tokio::net::UdpSocket, run_for: Duration) -> Vec<Heard> {
    use voxline_media_sidecar::media::rtp::{self, RtpHeader};
    use voxline_testkit::dsp::{mulaw_decode, mulaw_encode, tone};
    let mut buf = vec![0u8; 2048];
    let t0 = Instant::now();
    let mut first = None;
    let mut sidecar = None;
    let mut heard = Vec::new();
    let (mut seq, mut ts) = (1u16, 0u32);
    let mut next_send = Instant::now();
    let signal = tone(8_000, &[(CALLER_HZ, 6_000.0)], 8_000 * 10);
    let mut at = 0usize;
    let mut last_heard = Instant::now();
    while t0.elapsed() < run_for
        && !(first.is_some() && last_heard.elapsed() > Duration::from_millis(1_500))
    {
        if let Some(to) = sidecar {
            while Instant::now() >= next_send {
                let frame: Vec<u8> = signal[at..at + 160]
                    .iter()
                    .map(|&s| mulaw_encode(s))
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
        let Ok(p) = rtp::parse(&buf[..n]) else {
            continue;
        };
        if p.header.payload_type != 0 || p.payload.len() < 160 {
            continue;
        }
        if sidecar.is_none() {
            sidecar = Some(from);
            next_send = Instant::now();
        }
        last_heard = Instant::now();
        let t = *first.get_or_insert_with(Instant::now);
        let pcm: Vec<i16> = p.payload.iter().map(|&b| mulaw_decode(b)).collect();
        let rms =
            (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
        heard.push(Heard {
            at_ms: t.elapsed().as_millis() as u64,
            rms,
            member: amp_at(&pcm, 8_000, MEMBER_HZ),
            own: amp_at(&pcm, 8_000, CALLER_HZ),
        });
    }
    heard
}

/// Frames of hold audio: sound, but neither the member nor the caller's echo.
fn hold_frames(heard: &[Heard]) -> usize {
    heard
        .iter()
        .filter(|h| h.rms > 300.0 && h.member < 500.0 && h.own < 500.0)
        .count()
}

struct Rig {
    edge: support::FakeEdge,
    sip_port: u16,
    /// The trunk's port: sipp places the calls from there.
    trunk_port: u16,
    stop: watch::Sender<Stop>,
    sidecar: std::thread::JoinHandle<RunSummary>,
    recordings: PathBuf,
}

/// The whole sidecar with the registrar on, recordings in `dir`, and a fake
/// edge knowing members 1-7's phone accounts.
async fn rig(dir: &Path, rtp: (u16, u16)) -> Rig {
    use voxline_media_sidecar::config;
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
    for pk in 1..=7 {
        edge.state
            .lock()
            .unwrap()
            .phone_accounts
            .push((username(pk), PASSWORD.into()));
    }
    let sip_port = free_sip_port();
    // The trunk is sipp (calls come from it); members are phones.
    let trunk_port = free_udp_port();
    let mut telephony = support::one_trunk_telephony(trunk_port, rtp);
    telephony.sip_port = sip_port;
    telephony.registrar = config::Registrar {
        enabled: true,
        min_expires_seconds: 10,
        default_expires_seconds: 60,
        ..config::Registrar::default()
    };
    let recordings = dir.join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    telephony.recordings_dir = Some(recordings.clone());
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = support::spawn_sip_sidecar(
        &edge,
        LINK_SECRET,
        telephony,
        Default::default(),
        LeaseSettings::new("sc-queue", "local", 2),
        RunOptions {
            drain_timeout: Duration::from_secs(5),
            ..RunOptions::default()
        },
        stop_rx,
    );
    edge.wait_for("the link registration", Duration::from_secs(20), |s| {
        (!s.registrations.is_empty()).then_some(())
    })
    .await;
    Rig {
        edge,
        sip_port,
        trunk_port,
        stop,
        sidecar,
        recordings,
    }
}

impl Rig {
    async fn stop(self) {
        self.stop.send(Stop::Drain).unwrap();
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || self.sidecar.join()),
        )
        .await
        .expect("the sidecar exits")
        .unwrap()
        .unwrap();
    }

    async fn registered(&self, pk: u64) {
        let user = username(pk);
        self.edge
            .wait_for(
                "a member's phone registered",
                Duration::from_secs(20),
                |s| {
                    s.phone_bindings
                        .keys()
                        .any(|(u, _)| *u == user)
                        .then_some(())
                },
            )
            .await;
        // The sidecar stores the binding once the edge's answer is back.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    fn events(&self, call_id: &str) -> Vec<EventKind> {
        let s = self.edge.state.lock().unwrap();
        let mut evs: Vec<_> = s.events.iter().filter(|e| e.call_id == call_id).collect();
        evs.sort_by_key(|e| e.seq);
        evs.iter().map(|e| e.kind.clone()).collect()
    }

    async fn ended(&self, call_id: &str, within: Duration) -> (CallStatus, EndedReason) {
        self.edge
            .wait_for("the call's end", within, |s| {
                s.events.iter().find_map(|e| match &e.kind {
                    EventKind::Ended { status, reason, .. } if e.call_id == call_id => {
                        Some((*status, *reason))
                    }
                    _ => None,
                })
            })
            .await
    }
}

fn member(pk: u64) -> RingUser {
    RingUser {
        user_pk: pk,
        extension: format!("10{pk}"),
        display_name: format!("Member {pk}"),
        ring_timeout_seconds: 20,
        forward_number: None,
        voicemail: false,
    }
}

fn queue_offer(call_id: &str, record: bool) -> Box<voxline_shared::sidecar_link::Offer> {
    let mut offer = support::offer(call_id, 120);
    offer.tenant_id = TENANT.into();
    offer.lease_id = format!("inbound_{call_id}");
    offer.phone = "+14155550111".into();
    offer.caller_number = Some("+14155550100".into());
    offer.engine = voxline_shared::EngineKind::Echo.into();
    offer.record = record;
    Box::new(offer)
}

fn plan(members: Vec<RingUser>, max_wait: u32, overflow: QueueOverflow) -> QueuePlan {
    QueuePlan {
        queue_pk: 42,
        name: "Support".into(),
        extension: "600".into(),
        ring_all: false,
        members,
        member_timeout_seconds: 3,
        retry_seconds: 1,
        max_wait_seconds: max_wait,
        announce_every_seconds: 0,
        position: 1,
        overflow,
    }
}

fn queue_steps(evs: &[EventKind]) -> Vec<QueueStep> {
    evs.iter()
        .filter_map(|e| match e {
            EventKind::Queue { step, .. } => Some(*step),
            _ => None,
        })
        .collect()
}

fn legs(evs: &[EventKind]) -> Vec<(LegStep, Option<u64>, Option<u16>)> {
    evs.iter()
        .filter_map(|e| match e {
            EventKind::Leg {
                step,
                user_pk,
                sip_code,
                ..
            } => Some((*step, *user_pk, *sip_code)),
            _ => None,
        })
        .collect()
}

/// The stereo recording of `call_id` (left: what the caller heard, right:
/// the caller), once written.
async fn recording_channels(dir: &Path, call_id: &str) -> (Vec<i16>, Vec<i16>) {
    let path = dir.join(format!("{call_id}-1.wav"));
    let t0 = Instant::now();
    loop {
        if let Ok(mut r) = hound::WavReader::open(&path) {
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

fn frames_with_tone(pcm: &[i16], hz: f64) -> usize {
    pcm.chunks_exact(160)
        .filter(|f| amp_at(f, 8_000, hz) > 1_000.0)
        .count()
}

/// Two members, rung one at a time: member 1's phone is busy on another
/// call (486), member 2's phone comes up while the caller waits (hold
/// audio meanwhile), is rung in the next round, answers and is bridged:
/// the caller hears the member, the member the caller, the recording holds
/// both; the caller's BYE ends both legs, `completed` / `callee_hangup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_member_is_skipped_and_the_free_one_answers_and_is_bridged() {
    let _serial = serial().await;
    let dir = temp_dir("queue-bridged");
    let rig = rig(&dir, (47_200, 47_299)).await;
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy_port = blackhole.local_addr().unwrap().port();
    let _busy = start_member(
        &dir,
        "busy",
        1,
        rig.sip_port,
        PhoneBehaviour::Busy {
            blackhole: busy_port,
        },
        40,
    );
    rig.registered(1).await;
    rig.edge.decide_inbound(InboundDecision::Queue {
        // A queue without an agent to overflow to: no agent on the call
        // (as the edge offers it), so its talk is transcribed after the end.
        offer: {
            let mut o = queue_offer("q_bridged", true);
            o.agent_id = String::new();
            o
        },
        queue: plan(vec![member(1), member(2)], 60, QueueOverflow::Hangup),
    });
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = sock.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let listen = tokio::spawn(caller_media(sock, Duration::from_secs(25)));
    let sipp = start_caller(
        &dir,
        "uac_queue_caller_bye",
        rig.trunk_port,
        &target,
        media_port,
    )
    .await;
    rig.edge
        .wait_for("the caller in the queue", Duration::from_secs(10), |s| {
            s.events
                .iter()
                .any(|e| {
                    e.call_id == "q_bridged"
                        && matches!(
                            e.kind,
                            EventKind::Queue {
                                step: QueueStep::Entered,
                                ..
                            }
                        )
                })
                .then_some(())
        })
        .await;
    // The free member's phone comes up 2.5 s later, playing its tone.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let wav = dir.join("member.wav");
    write_wav(
        &wav,
        8_000,
        &voxline_testkit::tone(8_000, &[(MEMBER_HZ, 6_000.0)], 8_000 * 30),
    )
    .unwrap();
    let _free = start_member(
        &dir,
        "free",
        2,
        rig.sip_port,
        PhoneBehaviour::Answers(&wav),
        40,
    );
    let heard = listen.await.unwrap();
    caller_done(sipp, &dir).await;
    let end = rig.ended("q_bridged", Duration::from_secs(15)).await;
    assert_eq!(end, (CallStatus::Completed, EndedReason::CalleeHangup));
    let evs = rig.events("q_bridged");
    let steps = queue_steps(&evs);
    assert_eq!(steps.first(), Some(&QueueStep::Entered), "{steps:?}");
    assert!(steps.contains(&QueueStep::NoAnswer), "{steps:?}");
    assert_eq!(steps.last(), Some(&QueueStep::Connected), "{steps:?}");
    let legs = legs(&evs);
    assert!(
        legs.contains(&(LegStep::Ended, Some(1), Some(486))),
        "member 1 answered busy: {legs:?}"
    );
    assert!(
        !legs.contains(&(LegStep::Answered, Some(1), None)),
        "{legs:?}"
    );
    assert!(
        legs.contains(&(LegStep::Answered, Some(2), None)),
        "{legs:?}"
    );
    assert_eq!(
        legs.iter().filter(|l| l.0 == LegStep::Answered).count(),
        1,
        "{legs:?}"
    );
    let kinds: Vec<_> = evs.iter().map(EventKind::name).collect();
    assert_eq!(kinds.last(), Some(&"ended"), "{kinds:?}");
    // Hold audio before the member, then the member.
    let first_member = heard
        .iter()
        .position(|h| h.member > 1_000.0)
        .unwrap_or_else(|| panic!("the caller never heard the member: {} frames", heard.len()));
    assert!(
        hold_frames(&heard[..first_member]) >= 50,
        "hold audio before the member: {} frames",
        hold_frames(&heard[..first_member])
    );
    let member_frames = heard.iter().filter(|h| h.member > 1_000.0).count();
    assert!(member_frames >= 100, "{member_frames} frames of the member");
    // The recording: the caller on the right, the member on the left.
    let (left, right) = recording_channels(&rig.recordings, "q_bridged").await;
    assert!(
        frames_with_tone(&right, CALLER_HZ) >= 100,
        "no caller on the right"
    );
    assert!(
        frames_with_tone(&left, MEMBER_HZ) >= 100,
        "no member on the left"
    );
    assert_eq!(
        frames_with_tone(&left, CALLER_HZ),
        0,
        "the caller leaked left"
    );
    // No engine heard the bridged talk: its post-call transcript is sent
    // (issue 16).
    let t = rig
        .edge
        .wait_for("the post-call transcript", Duration::from_secs(60), |s| {
            s.transcripts
                .iter()
                .find(|t| t.call_id == "q_bridged")
                .cloned()
        })
        .await;
    assert_eq!((t.source.as_str(), t.attempt), ("local", 1));
    rig.stop().await;
    drop(blackhole);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Nobody answers (member 3's phone only rings): after the longest wait
/// the phone is cancelled, `timed_out`, and the offer's agent (the echo
/// engine) takes the caller's answered leg: the caller hears their own
/// tone back; no second `answered`; the caller's BYE ends it `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_overflows_to_the_agent_on_the_answered_leg() {
    let _serial = serial().await;
    let dir = temp_dir("queue-agent");
    let rig = rig(&dir, (47_300, 47_399)).await;
    let _rings = start_member(&dir, "rings", 3, rig.sip_port, PhoneBehaviour::Rings, 40);
    rig.registered(3).await;
    let mut p = plan(vec![member(3)], 4, QueueOverflow::Agent);
    p.member_timeout_seconds = 10;
    rig.edge.decide_inbound(InboundDecision::Queue {
        offer: queue_offer("q_agent", false),
        queue: p,
    });
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = sock.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let listen = tokio::spawn(caller_media(sock, Duration::from_secs(25)));
    let sipp = start_caller(
        &dir,
        "uac_queue_caller_bye",
        rig.trunk_port,
        &target,
        media_port,
    )
    .await;
    let heard = listen.await.unwrap();
    caller_done(sipp, &dir).await;
    let end = rig.ended("q_agent", Duration::from_secs(15)).await;
    assert_eq!(end, (CallStatus::Completed, EndedReason::CalleeHangup));
    let evs = rig.events("q_agent");
    assert_eq!(
        queue_steps(&evs),
        [QueueStep::Entered, QueueStep::TimedOut],
        "{evs:?}"
    );
    let legs = legs(&evs);
    assert_eq!(
        legs.iter().map(|l| (l.0, l.1)).collect::<Vec<_>>(),
        [
            (LegStep::Dialing, Some(3)),
            (LegStep::Ringing, Some(3)),
            (LegStep::Ended, Some(3))
        ],
        "rung, then cancelled at the time-out"
    );
    let kinds: Vec<_> = evs.iter().map(EventKind::name).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "answered").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"ended"), "{kinds:?}");
    let baresip_log = std::fs::read_to_string(dir.join("baresip-rings.log")).unwrap_or_default();
    // The phone was rung from the caller's number, then cancelled.
    assert!(
        baresip_log.contains("sip:+14155550111@127.0.0.1")
            && baresip_log.contains("session closed"),
        "{baresip_log}"
    );
    // Hold audio first; after the hand-over the agent (echo) speaks: the
    // caller hears their own tone.
    let echo = heard.iter().filter(|h| h.own > 1_000.0).count();
    assert!(echo >= 100, "{echo} frames of the agent");
    let first_echo = heard.iter().position(|h| h.own > 1_000.0).unwrap();
    assert!(heard[first_echo].at_ms >= 3_500, "{:?}", heard[first_echo]);
    assert!(hold_frames(&heard[..first_echo]) >= 100);
    rig.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// No member has a phone here and the overflow is `hangup`: the caller
/// hears hold audio while waiting, and after the longest wait gets our BYE;
/// the call ends `no_answer` / `queue_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_overflow_ends_queue_timeout_after_hold_audio() {
    let _serial = serial().await;
    let dir = temp_dir("queue-hangup");
    let rig = rig(&dir, (47_400, 47_499)).await;
    rig.edge.decide_inbound(InboundDecision::Queue {
        offer: queue_offer("q_hangup", false),
        queue: plan(vec![member(1), member(2)], 4, QueueOverflow::Hangup),
    });
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = sock.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let listen = tokio::spawn(caller_media(sock, Duration::from_secs(25)));
    let sipp = start_caller(
        &dir,
        "uac_queue_caller_waits",
        rig.trunk_port,
        &target,
        media_port,
    )
    .await;
    caller_done(sipp, &dir).await;
    let heard = listen.await.unwrap();
    let end = rig.ended("q_hangup", Duration::from_secs(10)).await;
    assert_eq!(end, (CallStatus::NoAnswer, EndedReason::QueueTimeout));
    let steps = queue_steps(&rig.events("q_hangup"));
    assert_eq!(steps.first(), Some(&QueueStep::Entered), "{steps:?}");
    assert_eq!(steps.last(), Some(&QueueStep::TimedOut), "{steps:?}");
    assert!(steps.contains(&QueueStep::NoAnswer), "{steps:?}");
    assert!(legs(&rig.events("q_hangup")).is_empty(), "no phone to ring");
    // About 4 s of hold audio (some frames are the phrase's rests).
    let hold = hold_frames(&heard);
    let quiet = heard.iter().filter(|h| h.rms <= 300.0).count();
    assert!(
        hold >= 100,
        "{hold} frames of hold audio, {quiet} quiet, of {}",
        heard.len()
    );
    let last = heard.last().map_or(0, |h| h.at_ms);
    assert!((3_000..5_500).contains(&last), "audio until {last} ms");
    rig.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Nobody to ring and the overflow is `voicemail`: after the longest wait
/// the caller hears the greeting and beep (a person's voicemail take) and
/// leaves a message: the call ends `completed` / `voicemail` when they hang
/// up, and the recording (forced on for a voicemail queue) holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_overflow_records_the_callers_message() {
    let _serial = serial().await;
    let dir = temp_dir("queue-voicemail");
    let rig = rig(&dir, (47_500, 47_599)).await;
    rig.edge.decide_inbound(InboundDecision::Queue {
        offer: queue_offer("q_vm", false),
        queue: plan(vec![member(1)], 3, QueueOverflow::Voicemail),
    });
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = sock.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let listen = tokio::spawn(caller_media(sock, Duration::from_secs(25)));
    let sipp = start_caller(
        &dir,
        "uac_queue_caller_bye",
        rig.trunk_port,
        &target,
        media_port,
    )
    .await;
    let heard = listen.await.unwrap();
    caller_done(sipp, &dir).await;
    let end = rig.ended("q_vm", Duration::from_secs(15)).await;
    assert_eq!(end, (CallStatus::Completed, EndedReason::Voicemail));
    let steps = queue_steps(&rig.events("q_vm"));
    assert_eq!(steps.last(), Some(&QueueStep::TimedOut), "{steps:?}");
    // The beep (1 kHz) after the wait.
    let beep = heard
        .iter()
        .position(|h| h.rms > 3_000.0)
        .map(|i| heard[i].at_ms);
    assert!(beep.is_some_and(|ms| ms >= 2_500), "beep at {beep:?}");
    let (_, right) = recording_channels(&rig.recordings, "q_vm").await;
    assert!(
        frames_with_tone(&right, CALLER_HZ) >= 200,
        "the message is not recorded"
    );
    rig.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ring_all`: both members' phones ring at once; member 5's answers, so
/// member 4's (only ringing) is cancelled and never bridged; the member
/// hangs up first (baresip quits): `completed` / `agent_hangup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_all_rings_everyone_and_the_first_answer_cancels_the_rest() {
    let _serial = serial().await;
    let dir = temp_dir("queue-ringall");
    let rig = rig(&dir, (47_600, 47_699)).await;
    let wav = dir.join("member.wav");
    write_wav(
        &wav,
        8_000,
        &voxline_testkit::tone(8_000, &[(MEMBER_HZ, 6_000.0)], 8_000 * 30),
    )
    .unwrap();
    let _rings = start_member(&dir, "rings", 4, rig.sip_port, PhoneBehaviour::Rings, 40);
    // Quits (BYE) 9 s after starting: the member hangs up.
    let _answers = start_member(
        &dir,
        "answers",
        5,
        rig.sip_port,
        PhoneBehaviour::Answers(&wav),
        9,
    );
    rig.registered(4).await;
    rig.registered(5).await;
    let mut p = plan(vec![member(4), member(5)], 60, QueueOverflow::Hangup);
    p.ring_all = true;
    p.member_timeout_seconds = 20;
    rig.edge.decide_inbound(InboundDecision::Queue {
        offer: queue_offer("q_all", false),
        queue: p,
    });
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = sock.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let listen = tokio::spawn(caller_media(sock, Duration::from_secs(25)));
    let sipp = start_caller(
        &dir,
        "uac_queue_caller_waits",
        rig.trunk_port,
        &target,
        media_port,
    )
    .await;
    let heard = listen.await.unwrap();
    caller_done(sipp, &dir).await;
    let end = rig.ended("q_all", Duration::from_secs(15)).await;
    assert_eq!(end, (CallStatus::Completed, EndedReason::AgentHangup));
    let evs = rig.events("q_all");
    assert_eq!(
        queue_steps(&evs),
        [QueueStep::Entered, QueueStep::Connected],
        "{evs:?}"
    );
    let legs = legs(&evs);
    let of = |pk: u64| -> Vec<LegStep> {
        legs.iter()
            .filter(|l| l.1 == Some(pk))
            .map(|l| l.0)
            .collect()
    };
    assert_eq!(
        of(4),
        [LegStep::Dialing, LegStep::Ringing, LegStep::Ended],
        "{legs:?}"
    );
    assert_eq!(
        of(5).first(),
        Some(&LegStep::Dialing),
        "rung at once: {legs:?}"
    );
    assert!(of(5).contains(&LegStep::Answered), "{legs:?}");
    assert_eq!(of(5).last(), Some(&LegStep::Ended), "{legs:?}");
    let talk = evs.iter().rev().find_map(|e| match e {
        EventKind::Leg {
            step: LegStep::Ended,
            user_pk: Some(5),
            talk_ms,
            ..
        } => Some(*talk_ms),
        _ => None,
    });
    assert!(talk.is_some_and(|ms| ms >= 2_000), "talk {talk:?}");
    let member_frames = heard.iter().filter(|h| h.member > 1_000.0).count();
    assert!(member_frames >= 50, "{member_frames} frames of the member");
    rig.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member this sidecar is bridging is in use: caller 1 is bridged to
/// member 6; caller 2 arrives 4 s later in a queue of members 6 and 7 and
/// only member 7's phone rings in its first round (member 2's is not
/// dialled for it while caller 1 talks to them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_a_call_here_is_not_rung_for_another_caller() {
    let _serial = serial().await;
    let dir = temp_dir("queue-inuse");
    let rig = rig(&dir, (47_700, 47_799)).await;
    let wav = dir.join("member.wav");
    write_wav(
        &wav,
        8_000,
        &voxline_testkit::tone(8_000, &[(MEMBER_HZ, 6_000.0)], 8_000 * 30),
    )
    .unwrap();
    let _answers = start_member(
        &dir,
        "answers",
        6,
        rig.sip_port,
        PhoneBehaviour::Answers(&wav),
        40,
    );
    let _rings = start_member(&dir, "rings", 7, rig.sip_port, PhoneBehaviour::Rings, 40);
    rig.registered(6).await;
    rig.registered(7).await;
    rig.edge.decide_inbound(InboundDecision::Queue {
        offer: queue_offer("q_use1", false),
        queue: plan(vec![member(6)], 30, QueueOverflow::Hangup),
    });
    let mut second = plan(vec![member(6), member(7)], 30, QueueOverflow::Hangup);
    second.member_timeout_seconds = 10;
    rig.edge.decide_inbound(InboundDecision::Queue {
        offer: queue_offer("q_use2", false),
        queue: second,
    });
    let a = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ports = [
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    ];
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let listen_a = tokio::spawn(caller_media(a, Duration::from_secs(25)));
    let listen_b = tokio::spawn(caller_media(b, Duration::from_secs(25)));
    let sipp = start_callers(
        &dir,
        "uac_queue_caller_bye",
        rig.trunk_port,
        &target,
        &ports,
    )
    .await;
    let (heard_a, _) = (listen_a.await.unwrap(), listen_b.await.unwrap());
    caller_done(sipp, &dir).await;
    assert_eq!(
        rig.ended("q_use1", Duration::from_secs(15)).await,
        (CallStatus::Completed, EndedReason::CalleeHangup)
    );
    // Caller 2 hangs up (waiting, or bridged to member 6 once caller 1
    // freed them): answered, so `completed` either way.
    assert_eq!(
        rig.ended("q_use2", Duration::from_secs(15)).await,
        (CallStatus::Completed, EndedReason::CalleeHangup)
    );
    let first = rig.events("q_use1");
    assert_eq!(queue_steps(&first).last(), Some(&QueueStep::Connected));
    assert!(heard_a.iter().filter(|h| h.member > 1_000.0).count() >= 50);
    let second = rig.events("q_use2");
    // Its first round (until its first `no_answer`) rang member 7 only,
    // though member 6 comes first: member 6 was on caller 1's call.
    let round_one: Vec<EventKind> = second
        .iter()
        .take_while(|e| {
            !matches!(
                e,
                EventKind::Queue {
                    step: QueueStep::NoAnswer,
                    ..
                }
            )
        })
        .cloned()
        .collect();
    assert!(round_one.len() < second.len(), "no round ended: {second:?}");
    let rung: Vec<_> = legs(&round_one)
        .into_iter()
        .filter(|l| l.0 == LegStep::Dialing)
        .map(|l| l.1)
        .collect();
    assert_eq!(rung, [Some(7)], "{second:?}");
    rig.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
