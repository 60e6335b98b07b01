//! A person's calls through the whole sidecar (issue 16), against real
//! peers on loopback: sipp is the trunk (calling in, and answering the
//! numbers the sidecar dials out), baresip the person's registered phones
//! (registering with the sidecar's registrar, the fake edge checking their
//! Digest). Covered: an inbound call forked to two phones, the first to
//! answer bridged to the caller (audio both ways, recorded both sides), the
//! other cancelled; nobody answering (480, `no_answer`); forwarding to a
//! number; voicemail; click-to-call.

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
    Connect, EventKind, InboundDecision, LegStep, Offer, RegistrationAck, RingUser, Role,
};
use voxline_shared::{CallStatus, EndedReason};
use voxline_testkit::{
    free_sip_port, free_udp_port, start_registering_phone, temp_dir, udp_port_bound, ChildGuard,
    PhoneBehaviour, SIPP,
};

const LINK_SECRET: &str = "test-secret-0123456789abcdef";
const TENANT: &str = "ten_0123456789abcdef0123";
const USER_PK: u64 = 7;
const USER: &str = "7.ten_0123456789abcdef0123";
const PASSWORD: &str = "Sx9kQ2mZr7LwP4vN8cTb1yHd";
const SIPP_TIMEOUT_S: u32 = 30;

/// The caller's tone, and the person's (their phone's or forward's).
const CALLER_HZ: f64 = 600.0;
const PERSON_HZ: f64 = 1_400.0;

struct Sipp {
    child: Child,
    dir: PathBuf,
    name: String,
}

impl Sipp {
    /// sipp running `scenario` (tests/sipp) on 127.0.0.1:`port`, with
    /// `extra` arguments (the remote for a UAC, `-inf`...), one call.
    async fn start(scenario: &str, port: u16, extra: &[&str]) -> Sipp {
        let sf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(format!("{scenario}.xml"));
        let dir =
            std::env::temp_dir().join(format!("voxline-sipp-person-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(SIPP.require())
            .current_dir(&dir)
            .args(["-sf", sf.to_str().unwrap(), "-i", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mi", "127.0.0.1", "-m", "1"])
            .args(["-nostdin", "-timeout", &format!("{SIPP_TIMEOUT_S}s")])
            .args(["-timeout_error", "-trace_err", "-error_file"])
            .arg(dir.join("errors.log"))
            .args(extra)
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
        Sipp {
            child,
            dir,
            name: scenario.to_string(),
        }
    }

    /// Waits for sipp to finish and requires exit status 0; its directory
    /// (`-trace_msg` logs there).
    async fn success(mut self) -> PathBuf {
        let status = tokio::time::timeout(
            Duration::from_secs(u64::from(SIPP_TIMEOUT_S) + 5),
            self.child.wait(),
        )
        .await
        .expect("sipp exits in time")
        .unwrap();
        let log = std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        assert!(
            status.success(),
            "sipp {} exited {status}: {log}",
            self.name
        );
        self.dir.clone()
    }
}

/// The sidecar of these tests: its registrar on, two trunks (sipp
/// answering the numbers dialled out on `out_port`, first; sipp calling
/// in from `in_port`, last), recordings in `recordings`.
struct Rig {
    edge: support::FakeEdge,
    sip_port: u16,
    in_port: u16,
    out_port: u16,
    recordings: PathBuf,
    dir: PathBuf,
    stop: watch::Sender<Stop>,
    sidecar: std::thread::JoinHandle<RunSummary>,
}

impl Rig {
    async fn start(name: &str, rtp: (u16, u16)) -> Rig {
        use voxline_media_sidecar::config;
        let dir = temp_dir(name);
        let recordings = dir.join("recordings");
        std::fs::create_dir_all(&recordings).unwrap();
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
        edge.state
            .lock()
            .unwrap()
            .phone_accounts
            .push((USER.into(), PASSWORD.into()));
        let (sip_port, in_port, out_port) = (free_sip_port(), free_udp_port(), free_udp_port());
        let mut telephony = support::one_trunk_telephony(out_port, rtp);
        let mut caller_trunk = telephony.trunks[0].clone();
        caller_trunk.name = "caller".into();
        caller_trunk.port = Some(in_port);
        caller_trunk.priority = 9;
        telephony.trunks.push(caller_trunk);
        telephony.sip_port = sip_port;
        telephony.recordings_dir = Some(recordings.clone());
        telephony.ring_timeout_seconds = 10;
        telephony.registrar = config::Registrar {
            enabled: true,
            min_expires_seconds: 10,
            default_expires_seconds: 60,
            ..config::Registrar::default()
        };
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let sidecar = support::spawn_sip_sidecar(
            &edge,
            LINK_SECRET,
            telephony,
            Default::default(),
            LeaseSettings::new("sc-person", "local", 2),
            RunOptions {
                drain_timeout: Duration::from_secs(5),
                ..RunOptions::default()
            },
            stop_rx,
        );
        edge.wait_for(
            "the sidecar's link registration",
            Duration::from_secs(20),
            |s| (!s.registrations.is_empty()).then_some(()),
        )
        .await;
        Rig {
            edge,
            sip_port,
            in_port,
            out_port,
            recordings,
            dir,
            stop,
            sidecar,
        }
    }

    /// A phone of `USER` playing a `PERSON_HZ` tone for `play_s`, which
    /// answers at once (`auto_answer`) or lets calls ring.
    fn phone(&self, name: &str, auto_answer: bool, play_s: usize) -> ChildGuard {
        let pcm = voxline_testkit::tone(8_000, &[(PERSON_HZ, 6_000.0)], 8_000 * play_s);
        self.phone_playing(name, auto_answer, &pcm)
    }

    /// A phone of `USER` playing `pcm` (8 kHz) once answered.
    fn phone_playing(&self, name: &str, auto_answer: bool, pcm: &[i16]) -> ChildGuard {
        let wav = self.dir.join(format!("{name}.wav"));
        voxline_testkit::write_wav(&wav, 8_000, pcm).unwrap();
        let registrar = format!("127.0.0.1:{}", self.sip_port);
        let behaviour = if auto_answer {
            PhoneBehaviour::Answers(&wav)
        } else {
            PhoneBehaviour::Rings
        };
        start_registering_phone(&self.dir, name, USER, &registrar, PASSWORD, behaviour, 40)
            .expect("baresip (Debian package baresip-core)")
    }

    /// Waits until the edge holds `n` bindings of `USER`.
    async fn bound(&self, n: usize) {
        self.edge
            .wait_for("the phones' bindings", Duration::from_secs(20), |s| {
                let held = s.phone_bindings.keys().filter(|(u, _)| u == USER).count();
                (held >= n).then_some(())
            })
            .await;
    }

    /// The call's `ended` (waits for it).
    async fn ended(&self, call_id: &str) -> (CallStatus, EndedReason, Option<u16>) {
        self.edge
            .wait_for("the call's end", Duration::from_secs(40), |s| {
                s.events.iter().find_map(|e| match &e.kind {
                    EventKind::Ended {
                        status,
                        reason,
                        sip_code,
                        ..
                    } if e.call_id == call_id => Some((*status, *reason, *sip_code)),
                    _ => None,
                })
            })
            .await
    }

    /// The post-call transcript the sidecar sent for `call_id` (waits for it).
    async fn transcript(&self, call_id: &str) -> voxline_shared::sidecar_link::CallTranscript {
        self.edge
            .wait_for("the post-call transcript", Duration::from_secs(60), |s| {
                s.transcripts.iter().find(|t| t.call_id == call_id).cloned()
            })
            .await
    }

    /// The call's `leg` events: (step, user_pk, destination, sip_code, talk_ms).
    fn legs(&self, call_id: &str) -> Vec<Leg> {
        self.edge
            .state
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| e.call_id == call_id)
            .filter_map(|e| match &e.kind {
                EventKind::Leg {
                    step,
                    user_pk,
                    destination,
                    sip_code,
                    talk_ms,
                } => Some(Leg {
                    step: *step,
                    user_pk: *user_pk,
                    destination: destination.clone(),
                    sip_code: *sip_code,
                    talk_ms: *talk_ms,
                }),
                _ => None,
            })
            .collect()
    }

    async fn stop(self) {
        self.stop.send(Stop::Drain).unwrap();
        // Not necessarily a clean exit: the fake edge takes no recordings,
        // so an upload may still be pending.
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || self.sidecar.join()),
        )
        .await
        .expect("the sidecar exits")
        .unwrap()
        .unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code)]
struct Leg {
    step: LegStep,
    user_pk: Option<u64>,
    destination: Option<String>,
    sip_code: Option<u16>,
    talk_ms: u64,
}

fn steps(legs: &[Leg], step: LegStep) -> Vec<&Leg> {
    legs.iter().filter(|l| l.step == step).collect()
}

/// An inbound call's offer, as the edge sends with `ring_user`.
fn inbound_offer(call_id: &str, record: bool) -> Offer {
    let mut offer = support::offer(call_id, 60);
    offer.tenant_id = TENANT.into();
    offer.lease_id = format!("inbound_{call_id}");
    offer.phone = "+14155550111".into();
    offer.caller_number = Some("+14155550100".into());
    offer.agent_id = String::new();
    offer.record = record;
    offer
}

fn ring(ring_timeout_seconds: u32, forward: Option<&str>, voicemail: bool) -> RingUser {
    RingUser {
        user_pk: USER_PK,
        extension: "1002".into(),
        display_name: "John".into(),
        ring_timeout_seconds,
        forward_number: forward.map(str::to_string),
        voicemail,
    }
}

/// An `-inf` file for sipp naming `lines` (one call each, in order).
fn inf(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("SEQUENTIAL\n{}\n", lines.join("\n"))).unwrap();
    p
}

/// One leg's media as a phone would do it, on the socket its SDP named
/// (PCMU): sends a `send_hz` tone from the first packet the sidecar sent
/// it (symmetric RTP), and returns how many 20 ms frames it heard carried
/// the `expect_hz` tone.
async fn tone_leg(
    sock: tokio::net::UdpSocket,
    send_hz: f64,
    expect_hz: f64,
    run_for: Duration,
) -> usize {
    let signal = voxline_testkit::tone(8_000, &[(send_hz, 6_000.0)], 8_000 * 60);
    leg_sending(sock, signal, Some(send_hz), expect_hz, run_for).await
}

/// As [`tone_leg`], sending `signal` (8 kHz, looped) instead of a tone
/// (`own_hz`: the tone it is, if one, that a heard frame must not echo).
async fn leg_sending(
    sock: tokio::net::UdpSocket,
    signal: Vec<i16>,
    own_hz: Option<f64>,
    expect_hz: f64,
    run_for: Duration,
) -> usize {
    use voxline_media_sidecar::media::rtp::{self, RtpHeader};
    use voxline_testkit::{amp_at, mulaw_decode, mulaw_encode};
    let mut buf = vec![0u8; 2048];
    let t0 = Instant::now();
    let mut sidecar: Option<SocketAddr> = None;
    let (mut heard, mut seq, mut ts) = (0, 1u16, 0u32);
    let mut next_send = Instant::now();
    let mut at = 0usize;
    while t0.elapsed() < run_for {
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
                    ssrc: 0x7e57_0001,
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
        if p.header.payload_type != 0 || p.payload.len() < 160 {
            continue;
        }
        let pcm: Vec<i16> = p.payload.iter().map(|&b| mulaw_decode(b)).collect();
        let (want, own) = (
            amp_at(&pcm, 8_000, expect_hz),
            own_hz.map_or(0.0, |hz| amp_at(&pcm, 8_000, hz)),
        );
        if want > 1_000.0 && want > 4.0 * own {
            heard += 1;
        }
    }
    heard
}

/// The stereo recording of `call_id` (left, right), once written.
async fn recording_channels(dir: &Path, call_id: &str) -> (Vec<i16>, Vec<i16>) {
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
        .filter(|f| voxline_testkit::amp_at(f, 8_000, hz) > 1_000.0)
        .count()
}

/// What baresip `name` heard (its `-dec` dump), once written.
fn phone_heard(dir: &Path, name: &str) -> Vec<i16> {
    let dumps = dir.join(format!("baresip-{name}")).join("dumps");
    let mut heard = Vec::new();
    for e in std::fs::read_dir(&dumps).into_iter().flatten().flatten() {
        let p = e.path();
        if p.to_string_lossy().ends_with("-dec.wav") {
            if let Ok((8_000, pcm)) = voxline_testkit::read_wav(&p) {
                heard.extend(pcm);
            }
        }
    }
    heard
}

/// Two phones of the person ring; the one that auto-answers is bridged to
/// the caller (sipp, the trunk), the other is cancelled. Audio crosses both
/// ways (the caller's tone reaches the phone, the phone's the caller), the
/// recording holds the caller on the right and the person on the left, and
/// the caller's BYE ends both legs: `completed` / `callee_hangup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_ring_the_first_to_answer_is_bridged_and_the_other_cancelled() {
    let rig = Rig::start("person-fork", (50_100, 50_199)).await;
    let _answers = rig.phone("answers", true, 20);
    let _rings = rig.phone("rings", false, 20);
    rig.bound(2).await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person1", true)),
        ring: ring(10, None, false),
    });
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inf = inf(
        &rig.dir,
        "caller.csv",
        &[format!("{};", caller.local_addr().unwrap().port())],
    );
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start(
        "uac_person_call",
        rig.in_port,
        &[target.as_str(), "-inf", inf.to_str().unwrap()],
    )
    .await;
    let heard = tone_leg(caller, CALLER_HZ, PERSON_HZ, Duration::from_secs(9)).await;
    sipp.success().await;
    assert_eq!(
        rig.ended("c_person1").await,
        (CallStatus::Completed, EndedReason::CalleeHangup, None)
    );
    assert!(heard >= 50, "the caller heard {heard} frames of the phone");
    let legs = rig.legs("c_person1");
    assert!(legs.iter().all(|l| l.user_pk == Some(USER_PK)), "{legs:?}");
    assert_eq!(steps(&legs, LegStep::Dialing).len(), 2, "{legs:?}");
    assert_eq!(steps(&legs, LegStep::Answered).len(), 1, "{legs:?}");
    let ended = steps(&legs, LegStep::Ended);
    assert_eq!(ended.len(), 2, "{legs:?}");
    assert_eq!(
        ended.iter().filter(|l| l.talk_ms == 0).count(),
        1,
        "the phone that rang was cancelled: {legs:?}"
    );
    assert!(
        ended.iter().any(|l| l.talk_ms >= 3_000),
        "the answered phone talked: {legs:?}"
    );
    let kinds = rig.edge.kinds_of("c_person1");
    assert!(kinds.contains(&"answered"), "{kinds:?}");
    let (left, right) = recording_channels(&rig.recordings, "c_person1").await;
    assert!(
        frames_with_tone(&right, CALLER_HZ) >= 50,
        "the caller is not on the recording's right"
    );
    assert!(
        frames_with_tone(&left, PERSON_HZ) >= 50,
        "the person is not on the recording's left"
    );
    assert_eq!(
        frames_with_tone(&left, CALLER_HZ),
        0,
        "the caller leaked left"
    );
    // No engine heard it: the recording is transcribed after the end and
    // sent (issue 16); the two tones are no speech.
    let t = rig.transcript("c_person1").await;
    assert_eq!(
        (
            t.tenant_id.as_str(),
            t.attempt,
            t.source.as_str(),
            t.sidecar_id.as_str()
        ),
        (TENANT, 1, "local", "sc-person")
    );
    assert!(
        t.turns.is_empty(),
        "tones transcribed as words: {:?}",
        t.turns
    );
    // The caller's audio reached the phone (baresip's dump of what it heard).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let phone = phone_heard(&rig.dir, "answers");
    assert!(
        frames_with_tone(&phone, CALLER_HZ) >= 50,
        "the phone heard {} frames of the caller",
        frames_with_tone(&phone, CALLER_HZ)
    );
    let rang = std::fs::read_to_string(rig.dir.join("baresip-rings.log")).unwrap_or_default();
    assert!(
        !rang.to_lowercase().contains("call established"),
        "the ringing phone was never connected:\n{rang}"
    );
    rig.stop().await;
}

/// Nobody answers within the ring timeout: every phone is cancelled and the
/// caller gets 480; the call ends `no_answer`.
/// A bridged call's words come back in its post-call transcript (issue 16):
/// the caller (right) and the person's phone (left) speak flite sentences;
/// after the end the sidecar transcribes the recording and sends the
/// caller's words as `callee` turns and the person's as `agent` turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_calls_words_come_back_in_its_post_call_transcript() {
    let rig = Rig::start("person-words", (50_700, 50_799)).await;
    let say = |voice: &str, text: &str, lead_ms: usize, tail_ms: usize| {
        let mut pcm = vec![0i16; lead_ms * 8];
        pcm.extend(voxline_testkit::flite_8k(&rig.dir, voice, text).expect("flite"));
        pcm.extend(vec![0i16; tail_ms * 8]);
        pcm
    };
    let person = say(
        "slt",
        "Certainly. What time would you like the table?",
        3_000,
        12_000,
    );
    let _answers = rig.phone_playing("answers", true, &person);
    rig.bound(1).await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_words", true)),
        ring: ring(10, None, false),
    });
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inf = inf(
        &rig.dir,
        "caller.csv",
        &[format!("{};", caller.local_addr().unwrap().port())],
    );
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start(
        "uac_person_call",
        rig.in_port,
        &[target.as_str(), "-inf", inf.to_str().unwrap()],
    )
    .await;
    // Said again and again (the leg loops it): once at least after the bridge.
    let words = say(
        "rms",
        "Hello, I would like to book a table for tomorrow evening.",
        1_000,
        1_000,
    );
    let _ = leg_sending(caller, words, None, PERSON_HZ, Duration::from_secs(9)).await;
    sipp.success().await;
    rig.ended("c_words").await;
    let t = rig.transcript("c_words").await;
    let said = |role: Role| -> String {
        t.turns
            .iter()
            .filter(|x| x.role == role)
            .map(|x| x.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (callee, agent) = (said(Role::Callee), said(Role::Agent));
    assert!(
        ["table", "tomorrow", "evening"]
            .iter()
            .any(|w| callee.contains(w)),
        "the caller's words: {callee:?} ({:?})",
        t.turns
    );
    assert!(
        ["certainly", "time", "table"]
            .iter()
            .any(|w| agent.contains(w)),
        "the person's words: {agent:?} ({:?})",
        t.turns
    );
    assert!(t.turns.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_in_time_refuses_the_caller_480_and_ends_no_answer() {
    let rig = Rig::start("person-noanswer", (50_200, 50_299)).await;
    let _rings = rig.phone("rings", false, 20);
    rig.bound(1).await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person2", false)),
        ring: ring(3, None, false),
    });
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let t0 = Instant::now();
    let sipp = Sipp::start("uac_inbound_call_480", rig.in_port, &[target.as_str()]).await;
    sipp.success().await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2_500),
        "refused before the ring timeout: {took:?}"
    );
    assert_eq!(
        rig.ended("c_person2").await,
        (CallStatus::NoAnswer, EndedReason::NoAnswer, Some(480))
    );
    let legs = rig.legs("c_person2");
    let got: Vec<LegStep> = legs.iter().map(|l| l.step).collect();
    assert_eq!(
        got,
        [LegStep::Dialing, LegStep::Ringing, LegStep::Ended],
        "{legs:?}"
    );
    assert!(!rig.edge.kinds_of("c_person2").contains(&"answered"));
    rig.stop().await;
}

/// No phone registered here, the person forwards: the sidecar dials the
/// forward number through the trunk (sipp answering) with the caller's
/// number, answers the caller and bridges them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_without_a_phone_here_is_forwarded_to_their_number() {
    let rig = Rig::start("person-forward", (50_300, 50_399)).await;
    let forward = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uas_inf = inf(
        &rig.dir,
        "forward.csv",
        &[format!(
            "{};0;PCMU;wait;",
            forward.local_addr().unwrap().port()
        )],
    );
    let uas = Sipp::start(
        "uas_bridge",
        rig.out_port,
        &["-inf", uas_inf.to_str().unwrap(), "-trace_msg"],
    )
    .await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person3", true)),
        ring: ring(10, Some("+15550002222"), true),
    });
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inf = inf(
        &rig.dir,
        "caller.csv",
        &[format!("{};", caller.local_addr().unwrap().port())],
    );
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start(
        "uac_person_call",
        rig.in_port,
        &[target.as_str(), "-inf", inf.to_str().unwrap()],
    )
    .await;
    let run = Duration::from_secs(8);
    let (caller_heard, forward_heard) = tokio::join!(
        tone_leg(caller, CALLER_HZ, PERSON_HZ, run),
        tone_leg(forward, PERSON_HZ, CALLER_HZ, run),
    );
    sipp.success().await;
    let uas_dir = uas.success().await;
    assert_eq!(
        rig.ended("c_person3").await,
        (CallStatus::Completed, EndedReason::CalleeHangup, None)
    );
    assert!(caller_heard >= 50, "the caller heard {caller_heard}");
    assert!(forward_heard >= 50, "the forward heard {forward_heard}");
    let legs = rig.legs("c_person3");
    assert!(
        legs.iter()
            .all(|l| l.destination.as_deref() == Some("+15550002222") && l.user_pk.is_none()),
        "{legs:?}"
    );
    let got: Vec<LegStep> = legs.iter().map(|l| l.step).collect();
    assert_eq!(
        got,
        [
            LegStep::Dialing,
            LegStep::Ringing,
            LegStep::Answered,
            LegStep::Ended
        ],
        "{legs:?}"
    );
    // The forward shows the original caller.
    let sent = std::fs::read_dir(&uas_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        sent.contains("From: <sip:+14155550111@"),
        "the forward's caller ID is not the caller's:\n{sent}"
    );
    let (left, right) = recording_channels(&rig.recordings, "c_person3").await;
    assert!(frames_with_tone(&right, CALLER_HZ) >= 50);
    assert!(frames_with_tone(&left, PERSON_HZ) >= 50);
    rig.stop().await;
}

/// Nobody answers, the person has voicemail: the caller is answered, hears
/// a greeting and a beep, and what they say is the call's recording; their
/// hangup ends it `completed` / `voicemail`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_answers_beeps_and_records_the_callers_message() {
    let rig = Rig::start("person-voicemail", (50_400, 50_499)).await;
    let _rings = rig.phone("rings", false, 20);
    rig.bound(1).await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person4", true)),
        ring: ring(2, None, true),
    });
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inf = inf(
        &rig.dir,
        "caller.csv",
        &[format!("{};", caller.local_addr().unwrap().port())],
    );
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start(
        "uac_person_call",
        rig.in_port,
        &[target.as_str(), "-inf", inf.to_str().unwrap()],
    )
    .await;
    let heard_beep = tone_leg(caller, CALLER_HZ, 1_000.0, Duration::from_secs(8)).await;
    sipp.success().await;
    assert_eq!(
        rig.ended("c_person4").await,
        (CallStatus::Completed, EndedReason::Voicemail, None)
    );
    assert!(
        heard_beep >= 10,
        "the caller heard {heard_beep} beep frames"
    );
    let (left, right) = recording_channels(&rig.recordings, "c_person4").await;
    assert!(
        frames_with_tone(&right, CALLER_HZ) >= 100,
        "the message is not recorded"
    );
    assert!(frames_with_tone(&left, 1_000.0) >= 10, "no beep recorded");
    // A voicemail message is transcribed too.
    assert_eq!(rig.transcript("c_person4").await.source, "local");
    let legs = rig.legs("c_person4");
    assert_eq!(steps(&legs, LegStep::Answered).len(), 0, "{legs:?}");
    rig.stop().await;
}

/// Click-to-call: the person's phone rings first (auto-answers), then the
/// destination is dialled through the trunk (sipp rings 3 s, the person
/// hearing ringback, answers, talks 4 s and hangs up); the legs are
/// bridged and recorded (destination right, person left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_rings_the_person_then_dials_and_bridges_the_destination() {
    let rig = Rig::start("person-click", (50_500, 50_599)).await;
    let _answers = rig.phone("answers", true, 20);
    rig.bound(1).await;
    let dest = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uas_inf = inf(
        &rig.dir,
        "dest.csv",
        &[format!("{};0;PCMU;bye;", dest.local_addr().unwrap().port())],
    );
    // The destination rings 3 s: the person hears ringback meanwhile.
    let uas = Sipp::start(
        "uas_bridge_ring3s",
        rig.out_port,
        &["-inf", uas_inf.to_str().unwrap(), "-trace_msg"],
    )
    .await;
    let mut offer = support::offer("c_click1", 60);
    offer.tenant_id = TENANT.into();
    offer.phone = "+15550003333".into();
    offer.caller_number = Some("+15550004444".into());
    offer.agent_id = String::new();
    offer.record = true;
    offer.connect = Some(Connect::ClickToCall {
        user: ring(10, None, false),
    });
    rig.edge.offer(offer);
    let dest_heard = tone_leg(dest, CALLER_HZ, PERSON_HZ, Duration::from_secs(12)).await;
    let uas_dir = uas.success().await;
    assert_eq!(
        rig.ended("c_click1").await,
        (CallStatus::Completed, EndedReason::CalleeHangup, None)
    );
    assert!(dest_heard >= 50, "the destination heard {dest_heard}");
    let kinds = rig.edge.kinds_of("c_click1");
    for k in ["dialing", "ringing", "answered", "ended"] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    let legs = rig.legs("c_click1");
    let person: Vec<LegStep> = legs
        .iter()
        .filter(|l| l.user_pk == Some(USER_PK))
        .map(|l| l.step)
        .collect();
    assert_eq!(
        person,
        [
            LegStep::Dialing,
            LegStep::Ringing,
            LegStep::Answered,
            LegStep::Ended
        ],
        "{legs:?}"
    );
    // The person's leg ends last, after the destination's BYE.
    assert_eq!(
        legs.last().map(|l| (l.step, l.user_pk)),
        Some((LegStep::Ended, Some(USER_PK)))
    );
    let sent = std::fs::read_dir(&uas_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        sent.contains("INVITE sip:+15550003333@") && sent.contains("From: <sip:+15550004444@"),
        "the destination or caller ID is wrong:\n{sent}"
    );
    // Ringback (440 + 480 Hz) reached the person's phone while it rang.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let phone = phone_heard(&rig.dir, "answers");
    let ringback = phone
        .chunks_exact(160)
        .filter(|f| {
            voxline_testkit::amp_at(f, 8_000, 440.0) > 1_000.0
                && voxline_testkit::amp_at(f, 8_000, 480.0) > 1_000.0
        })
        .count();
    assert!(
        ringback >= 50,
        "the person heard {ringback} frames of ringback"
    );
    assert!(
        frames_with_tone(&phone, CALLER_HZ) >= 50,
        "the person did not hear the destination"
    );
    let (left, right) = recording_channels(&rig.recordings, "c_click1").await;
    assert!(
        frames_with_tone(&right, CALLER_HZ) >= 50,
        "the destination is not on the recording's right"
    );
    assert!(
        frames_with_tone(&left, PERSON_HZ) >= 50,
        "the person is not on the recording's left"
    );
    let t = rig.transcript("c_click1").await;
    assert_eq!((t.source.as_str(), t.attempt), ("local", 1));
    rig.stop().await;
}

/// Click-to-call for a person with no phone registered here: nothing is
/// dialled, the call ends `no_answer` / 480.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_without_a_registered_phone_ends_no_answer_480() {
    let rig = Rig::start("person-click-nophone", (50_600, 50_699)).await;
    let mut offer = support::offer("c_click2", 60);
    offer.tenant_id = TENANT.into();
    offer.phone = "+15550003333".into();
    offer.agent_id = String::new();
    offer.connect = Some(Connect::ClickToCall {
        user: ring(10, None, false),
    });
    rig.edge.offer(offer);
    assert_eq!(
        rig.ended("c_click2").await,
        (CallStatus::NoAnswer, EndedReason::NoAnswer, Some(480))
    );
    assert!(rig.legs("c_click2").is_empty());
    rig.stop().await;
}

/// The person hangs up first (their phone's file ends after 4 s): the
/// caller gets our BYE and the call ends `completed` / `agent_hangup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_hanging_up_ends_the_call_agent_hangup() {
    let rig = Rig::start("person-hangs-up", (50_700, 50_799)).await;
    let _answers = rig.phone("answers", true, 4);
    rig.bound(1).await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person5", false)),
        ring: ring(10, None, false),
    });
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inf = inf(
        &rig.dir,
        "caller.csv",
        &[format!("{};", caller.local_addr().unwrap().port())],
    );
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start(
        "uac_person_call_bye",
        rig.in_port,
        &[target.as_str(), "-inf", inf.to_str().unwrap()],
    )
    .await;
    let heard = tone_leg(caller, CALLER_HZ, PERSON_HZ, Duration::from_secs(6)).await;
    sipp.success().await;
    assert_eq!(
        rig.ended("c_person5").await,
        (CallStatus::Completed, EndedReason::AgentHangup, None)
    );
    assert!(heard >= 25, "the caller heard {heard} frames of the phone");
    let legs = rig.legs("c_person5");
    let last = steps(&legs, LegStep::Ended);
    assert_eq!(last.len(), 1, "{legs:?}");
    assert!(last[0].talk_ms >= 2_000, "{legs:?}");
    rig.stop().await;
}

/// The caller hangs up (CANCEL) while the person's phone rings: the phone
/// is cancelled, the caller gets 487 and the call ends `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_cancelling_while_phones_ring_cancels_them() {
    let rig = Rig::start("person-cancel", (50_800, 50_899)).await;
    let _rings = rig.phone("rings", false, 20);
    rig.bound(1).await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person6", false)),
        ring: ring(20, None, true),
    });
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start("uac_person_cancel", rig.in_port, &[target.as_str()]).await;
    sipp.success().await;
    assert_eq!(
        rig.ended("c_person6").await,
        (CallStatus::Cancelled, EndedReason::CalleeHangup, Some(487))
    );
    let legs = rig.legs("c_person6");
    let got: Vec<LegStep> = legs.iter().map(|l| l.step).collect();
    assert_eq!(
        got,
        [LegStep::Dialing, LegStep::Ringing, LegStep::Ended],
        "{legs:?}"
    );
    assert!(!rig.edge.kinds_of("c_person6").contains(&"answered"));
    rig.stop().await;
}

/// No phone here, the forward number is busy and there is no voicemail:
/// the caller gets the forward's 486 and the call ends `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_forward_without_voicemail_refuses_the_caller_486_busy() {
    let rig = Rig::start("person-forward-busy", (50_900, 50_999)).await;
    let uas = Sipp::start("uas_busy", rig.out_port, &[]).await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person7", false)),
        ring: ring(10, Some("+15550002222"), false),
    });
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start("uac_person_busy", rig.in_port, &[target.as_str()]).await;
    let end = rig.ended("c_person7").await;
    sipp.success().await;
    uas.success().await;
    assert_eq!(end, (CallStatus::Busy, EndedReason::Busy, Some(486)));
    let legs = rig.legs("c_person7");
    let ended = steps(&legs, LegStep::Ended);
    assert_eq!(ended.len(), 1, "{legs:?}");
    assert_eq!(
        (ended[0].destination.as_deref(), ended[0].sip_code),
        (Some("+15550002222"), Some(486))
    );
    rig.stop().await;
}

/// The edge hangs up a bridged person's call (`POST /v1/calls/{id}/hangup`):
/// both legs get our BYE and the call ends `completed` / `hangup_requested`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edges_hangup_ends_both_legs_of_a_bridged_call() {
    let rig = Rig::start("person-hangup-cmd", (51_000, 51_099)).await;
    let forward = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uas_inf = inf(
        &rig.dir,
        "forward.csv",
        &[format!(
            "{};0;PCMU;wait;",
            forward.local_addr().unwrap().port()
        )],
    );
    let uas = Sipp::start(
        "uas_bridge",
        rig.out_port,
        &["-inf", uas_inf.to_str().unwrap()],
    )
    .await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person8", false)),
        ring: ring(10, Some("+15550002222"), false),
    });
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inf = inf(
        &rig.dir,
        "caller.csv",
        &[format!("{};", caller.local_addr().unwrap().port())],
    );
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start(
        "uac_person_call_bye",
        rig.in_port,
        &[target.as_str(), "-inf", inf.to_str().unwrap()],
    )
    .await;
    rig.edge
        .wait_for("the answer", Duration::from_secs(15), |s| {
            s.events
                .iter()
                .any(|e| e.call_id == "c_person8" && matches!(e.kind, EventKind::Answered))
                .then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.edge
        .command(voxline_shared::sidecar_link::Command::Hangup {
            call_id: "c_person8".into(),
        });
    sipp.success().await;
    uas.success().await;
    drop((forward, caller));
    assert_eq!(
        rig.ended("c_person8").await,
        (CallStatus::Completed, EndedReason::HangupRequested, None)
    );
    rig.stop().await;
}

/// Click-to-call whose destination is busy: the person's answered phone is
/// hung up and the call ends with the destination's outcome (`busy`, 486).
/// The person's phone was shown the destination as the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_to_a_busy_destination_hangs_up_the_person_and_ends_busy() {
    let rig = Rig::start("person-click-busy", (51_100, 51_199)).await;
    let _answers = rig.phone("answers", true, 20);
    rig.bound(1).await;
    let uas = Sipp::start("uas_busy", rig.out_port, &[]).await;
    let mut offer = support::offer("c_click3", 60);
    offer.tenant_id = TENANT.into();
    offer.phone = "+15550003333".into();
    offer.agent_id = String::new();
    offer.connect = Some(Connect::ClickToCall {
        user: ring(10, None, false),
    });
    rig.edge.offer(offer);
    assert_eq!(
        rig.ended("c_click3").await,
        (CallStatus::Busy, EndedReason::Busy, Some(486))
    );
    uas.success().await;
    let legs = rig.legs("c_click3");
    let person: Vec<LegStep> = legs
        .iter()
        .filter(|l| l.user_pk == Some(USER_PK))
        .map(|l| l.step)
        .collect();
    assert_eq!(
        person,
        [
            LegStep::Dialing,
            LegStep::Ringing,
            LegStep::Answered,
            LegStep::Ended
        ],
        "{legs:?}"
    );
    assert!(!rig.edge.kinds_of("c_click3").contains(&"answered"));
    let log = std::fs::read_to_string(rig.dir.join("baresip-answers.log")).unwrap_or_default();
    assert!(
        log.contains("+15550003333"),
        "the phone was not shown the destination:\n{log}"
    );
    rig.stop().await;
}

/// The person's phone rings unanswered, then the call is forwarded: the
/// phone is cancelled, the forward (sipp) answers and, hanging up after
/// 4 s, ends the call `completed` / `agent_hangup` (the person's side hung
/// up); the caller gets our BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_phone_is_cancelled_and_the_call_forwarded() {
    let rig = Rig::start("person-ring-then-forward", (51_200, 51_299)).await;
    let _rings = rig.phone("rings", false, 20);
    rig.bound(1).await;
    let forward = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uas_inf = inf(
        &rig.dir,
        "forward.csv",
        &[format!(
            "{};0;PCMU;bye;",
            forward.local_addr().unwrap().port()
        )],
    );
    let uas = Sipp::start(
        "uas_bridge",
        rig.out_port,
        &["-inf", uas_inf.to_str().unwrap()],
    )
    .await;
    rig.edge.decide_inbound(InboundDecision::RingUser {
        offer: Box::new(inbound_offer("c_person9", false)),
        ring: ring(2, Some("+15550002222"), true),
    });
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inf = inf(
        &rig.dir,
        "caller.csv",
        &[format!("{};", caller.local_addr().unwrap().port())],
    );
    let target = format!("127.0.0.1:{}", rig.sip_port);
    let sipp = Sipp::start(
        "uac_person_call_bye",
        rig.in_port,
        &[target.as_str(), "-inf", inf.to_str().unwrap()],
    )
    .await;
    let run = Duration::from_secs(7);
    let (caller_heard, _) = tokio::join!(
        tone_leg(caller, CALLER_HZ, PERSON_HZ, run),
        tone_leg(forward, PERSON_HZ, CALLER_HZ, run),
    );
    sipp.success().await;
    uas.success().await;
    assert_eq!(
        rig.ended("c_person9").await,
        (CallStatus::Completed, EndedReason::AgentHangup, None)
    );
    assert!(caller_heard >= 50, "the caller heard {caller_heard}");
    let legs = rig.legs("c_person9");
    let phone: Vec<LegStep> = legs
        .iter()
        .filter(|l| l.user_pk == Some(USER_PK))
        .map(|l| l.step)
        .collect();
    assert_eq!(
        phone,
        [LegStep::Dialing, LegStep::Ringing, LegStep::Ended],
        "{legs:?}"
    );
    let fwd: Vec<(LegStep, u64)> = legs
        .iter()
        .filter(|l| l.destination.is_some())
        .map(|l| (l.step, l.talk_ms))
        .collect();
    assert_eq!(fwd.len(), 4, "{legs:?}");
    assert_eq!(fwd[2].0, LegStep::Answered);
    assert!(fwd[3].0 == LegStep::Ended && fwd[3].1 >= 3_000, "{legs:?}");
    rig.stop().await;
}
