//! Transfers to a person (issue 16), against real peers on loopback: sipp
//! is the trunk and the callee (`uas_bridge`, one call, its media a socket
//! of the test), baresip (Debian `baresip-core`) is the person's phone,
//! registered with the sidecar's registrar with Digest and answering
//! automatically with a tone. The edge's transfer command (as
//! `POST /v1/calls/{id}/transfer` sends it) names the person by user pk
//! and extension; the sidecar rings the phone registered with it, bridges
//! the two legs, and audio crosses both ways.

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
    Command as EdgeCommand, EventKind, RegistrationAck, TransferMode, TransferTarget,
};
use voxline_shared::EndedReason;
use voxline_testkit::dsp::{amp_at, mulaw_decode, mulaw_encode, tone};
use voxline_testkit::{free_sip_port, free_udp_port, temp_dir, udp_port_bound, ChildGuard, SIPP};

const LINK_SECRET: &str = "test-secret-0123456789abcdef";
const TENANT: &str = "ten_0123456789abcdef0123";
/// The person's SIP username: user pk 7 of `TENANT`.
const USER: &str = "7.ten_0123456789abcdef0123";
const PASSWORD: &str = "Sx9kQ2mZr7LwP4vN8cTb1yHd";
const SIPP_TIMEOUT_S: u32 = 40;

/// The callee's tone and the person's.
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

/// baresip as the person's phone: registers `USER` with the sidecar's
/// registrar at 127.0.0.1:`registrar_port` (Digest), answers calls at once
/// playing `wav`, records what it hears (`dumps/dump-*-dec.wav`), and quits
/// after `secs` (hanging up a call it is in).
fn start_answering_phone(
    dir: &Path,
    registrar_port: u16,
    wav: &Path,
    secs: u32,
    rtp: u16,
) -> ChildGuard {
    let conf = dir.join("baresip-person");
    let _ = std::fs::remove_dir_all(&conf);
    std::fs::create_dir_all(conf.join("dumps")).unwrap();
    let port = free_sip_port();
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\nnet_interface\t\t127.0.0.1\n\
             audio_player\t\tnull\naudio_source\t\taufile,{wav}\naudio_alert\t\tnull\n\
             ausrc_srate\t\t8000\nauplay_srate\t\t8000\nausrc_channels\t\t1\nauplay_channels\t\t1\n\
             rtp_ports\t\t{rtp}-{rtp_max}\nsnd_path\t\t{dumps}\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\nmodule\t\t\taufile.so\nmodule\t\t\tsndfile.so\n\
             module_app\t\taccount.so\n",
            wav = wav.display(),
            rtp_max = rtp + 9,
            dumps = conf.join("dumps").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:{USER}@127.0.0.1:{registrar_port}>;auth_pass={PASSWORD};regint=60;\
             answermode=auto;audio_codecs=PCMU\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("baresip-person.log")).unwrap();
    let child = std::process::Command::new(voxline_testkit::BARESIP.require())
        .arg("-f")
        .arg(&conf)
        .args(["-t", &secs.to_string()])
        .current_dir(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("baresip (Debian package baresip-core)");
    ChildGuard(child)
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
        LeaseSettings::new("sc-xfer-person", "local", 2),
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

/// What the person's phone heard, frame by frame: whether each 20 ms
/// frame carried `hz` clearly, and whether it carried any sound at all.
fn phone_frames(dumps: &Path, hz: f64) -> Vec<(bool, bool)> {
    let Some(path) = std::fs::read_dir(dumps).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
    }) else {
        return Vec::new();
    };
    let Ok(mut r) = hound::WavReader::open(path) else {
        return Vec::new();
    };
    let pcm: Vec<i16> = r.samples::<i16>().map_while(Result::ok).collect();
    pcm.chunks_exact(160)
        .map(|f| {
            let rms = (f.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 160.0).sqrt();
            // The tone alone (speech has some energy at any frequency):
            // a pure tone of amplitude A has an RMS of A / sqrt(2).
            let amp = amp_at(f, 8_000, hz);
            let pure = amp > 1_000.0 && amp > 0.8 * rms * std::f64::consts::SQRT_2;
            (pure, rms > 300.0)
        })
        .collect()
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

/// Issue 16: an AI call (the echo engine) answered by the callee; the edge
/// asks for a transfer to extension 1001 (user pk 7), whose baresip phone
/// registered with this sidecar. The sidecar rings that phone (not the
/// trunk: sipp would fail on a second INVITE), it answers, the legs are
/// bridged (`transferred`, method `bridge`, naming the extension): the
/// callee hears the person's tone and the person the callee's. The phone
/// hangs up when it quits; that ends the callee's leg too (sipp expects our
/// BYE) and the call ends `transferred`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_an_extension_rings_the_persons_phone_and_bridges_audio_both_ways() {
    transfer_to_person(How::Command(TransferMode::Blind), 46_600, (46_700, 46_799)).await;
}

/// The agent's own `transfer` tool naming extension 1001, one the offer's
/// `transfer_people` lists: the local engine's script calls it when the
/// callee presses 1 (SIP INFO from sipp); the same ringing and bridge,
/// the tool's turn in the transcript.
#[cfg(feature = "local-engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_transfer_tool_reaches_a_listed_person_by_extension() {
    transfer_to_person(How::Tool, 46_620, (46_900, 46_999)).await;
}

/// What asks for the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// The edge's command (`POST /v1/calls/{id}/transfer`).
    Command(TransferMode),
    /// The agent's `transfer` tool (blind).
    Tool,
}

/// Warm (issue 16): the callee is held (hold chime) while the phone rings
/// and while the person hears the briefing, synthesised by flite (the
/// local engine's speech), before the callee's voice; then the legs are
/// bridged as for a blind transfer (`method: warm`).
#[cfg(feature = "local-engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_transfer_briefs_the_person_before_connecting_the_held_callee() {
    transfer_to_person(How::Command(TransferMode::Warm), 46_610, (46_800, 46_899)).await;
}

async fn transfer_to_person(how: How, phone_rtp: u16, sidecar_rtp: (u16, u16)) {
    let mode = match how {
        How::Command(mode) => mode,
        How::Tool => TransferMode::Blind,
    };
    let call_id = match how {
        How::Command(mode) => format!("xfer_person_{}", mode.as_str()),
        How::Tool => "xfer_person_tool".to_string(),
    };
    let call_id = call_id.as_str();
    let dir = temp_dir("xfer-person");
    let wav = dir.join("person-tone.wav");
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav, spec).unwrap();
        for s in tone(8_000, &[(PERSON_HZ, 6_000.0)], 8_000 * 30) {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }
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
    let scenario = match how {
        How::Command(_) => "uas_bridge",
        How::Tool => "uas_bridge_key_info",
    };
    let media_port = callee_sock.local_addr().unwrap().port();
    let mut sipp = start_callee_trunk(scenario, trunk_port, media_port, &dir).await;
    let sip_port = free_sip_port();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = spawn_sidecar(&edge, sip_port, trunk_port, sidecar_rtp, stop_rx);
    edge.wait_for(
        "the sidecar's link registration",
        Duration::from_secs(20),
        |s| (!s.registrations.is_empty()).then_some(()),
    )
    .await;
    let _phone = start_answering_phone(&dir, sip_port, &wav, 20, phone_rtp);
    edge.wait_for("the phone's binding", Duration::from_secs(15), |s| {
        s.phone_bindings
            .keys()
            .any(|(u, _)| u == USER)
            .then_some(())
    })
    .await;

    let mut call = support::offer(call_id, 120);
    call.tenant_id = TENANT.into();
    match how {
        How::Command(_) => call.engine = voxline_shared::EngineKind::Echo.into(),
        How::Tool => {
            call.engine = voxline_shared::EngineKind::Local.into();
            call.system_prompt = Some(
                "[script]\ngreeting: Press one for Alice.\n\
                 1 -> [tool transfer {\"extension\":\"1001\"}] Transferring you now.\n[/script]"
                    .into(),
            );
            call.transfer_people = vec![voxline_shared::sidecar_link::TransferPerson {
                user_pk: 7,
                extension: "1001".into(),
                display_name: Some("Alice".into()),
            }];
        }
    }
    edge.offer(call);
    let (media_stop, media_stop_rx) = watch::channel(false);
    // The tool's callee is quiet until transferred (a tone would be words
    // to the local engine); the command's talks from the start.
    let (talk, talk_rx) = watch::channel(how != How::Tool);
    let callee = tokio::spawn(callee_media(callee_sock, talk_rx, media_stop_rx));
    edge.wait_for("the callee's answer", Duration::from_secs(15), |s| {
        s.events
            .iter()
            .any(|e| e.call_id == call_id && e.kind == EventKind::Answered)
            .then_some(())
    })
    .await;
    if let How::Command(mode) = how {
        // A person with no phone registered here first: `user_unavailable`,
        // and the call goes on.
        edge.command(EdgeCommand::Transfer {
            call_id: call_id.into(),
            transfer_id: "xfr_nobody".into(),
            target: TransferTarget::User {
                user_pk: 8,
                extension: "1002".into(),
                display_name: None,
            },
            mode: TransferMode::Blind,
            message: None,
        });
        let failed = edge
            .wait_for(
                "the first transfer's failure",
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
            (
                "user_unavailable".to_string(),
                Some("xfr_nobody".to_string())
            )
        );
        edge.command(EdgeCommand::Transfer {
            call_id: call_id.into(),
            transfer_id: "xfr_person".into(),
            target: TransferTarget::User {
                user_pk: 7,
                extension: "1001".into(),
                display_name: Some("Alice".into()),
            },
            mode,
            message: (mode == TransferMode::Warm)
                .then(|| "A caller about order seventeen. Connecting you now.".into()),
        });
    }
    let transferred = edge
        .wait_for("the transfer", Duration::from_secs(20), |s| {
            s.events.iter().find_map(|e| match &e.kind {
                EventKind::Transferred { transfer_id, .. }
                | EventKind::TransferFailed { transfer_id, .. }
                    if e.call_id == call_id
                        && (transfer_id.as_deref() == Some("xfr_person")
                            || (how == How::Tool && transfer_id.is_none())) =>
                {
                    Some(e.kind.clone())
                }
                _ => None,
            })
        })
        .await;
    assert!(
        matches!(&transferred, EventKind::Transferred { destination, method, extension: Some(ext),
            mode: Some(m), transfer_id: id, .. }
            if destination == "1001" && ext == "1001" && *m == mode
                && (id.as_deref() == Some("xfr_person") || (how == How::Tool && id.is_none()))
                && method == if mode == TransferMode::Warm { "warm" } else { "bridge" }),
        "{transferred:?}\n{}",
        std::fs::read_to_string(dir.join("baresip-person.log")).unwrap_or_default()
    );
    talk.send(true).unwrap();
    if how == How::Tool {
        let turns: Vec<String> = edge
            .state
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| e.call_id == call_id)
            .filter_map(|e| match &e.kind {
                EventKind::TranscriptTurn { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert!(
            turns.iter().any(|t| t.starts_with(
                r#"[tool transfer {"extension":"1001"} -> {"destination":"1001","method":"bridge","ok":true}]"#
            )),
            "{turns:?}"
        );
    }
    // The callee was never hung up on while the first failed.
    assert!(!edge.kinds_of(call_id).contains(&"ended"));
    // Talk across the bridge for a while, then the phone hangs up.
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
        r.expect("the call ends once the phone hangs up")
    };
    let (callee_heard, callee_held) = callee.await.unwrap();
    assert_eq!(reason, EndedReason::Transferred);
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
        "the callee heard {callee_heard} frames of the person"
    );
    drop(_phone);
    let person_heard = phone_heard(&dir.join("baresip-person/dumps"), CALLEE_HZ);
    assert!(
        person_heard >= 50,
        "the person heard {person_heard} frames of the callee"
    );
    if mode == TransferMode::Warm {
        // The callee waited with the hold chime, and the person heard the
        // briefing (sound, not the callee's tone) before the callee.
        assert!(
            callee_held >= 5,
            "the callee heard {callee_held} frames of hold audio"
        );
        let frames = phone_frames(&dir.join("baresip-person/dumps"), CALLEE_HZ);
        let first_callee = frames.iter().position(|(callee, _)| *callee);
        let briefing = frames[..first_callee.unwrap_or(0)]
            .iter()
            .filter(|(_, sound)| *sound)
            .count();
        eprintln!("warm: callee held {callee_held} frames, briefing {briefing} frames, callee first at {first_callee:?}, person heard {person_heard}, callee heard {callee_heard}");
        assert!(
            briefing >= 50,
            "the person heard {briefing} frames of the briefing before the callee (first at {first_callee:?})"
        );
    } else if how == How::Command(TransferMode::Blind) {
        // (The echo engine says nothing of its own; the local engine's
        // speech has some 440 Hz in it.)
        assert_eq!(callee_held, 0, "a blind transfer holds nobody");
    }
    stop.send(Stop::Drain).unwrap();
    tokio::task::spawn_blocking(move || sidecar.join())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
