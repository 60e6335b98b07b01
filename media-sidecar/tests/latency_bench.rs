//! Issue 17's turn and barge-in latency, measured on whole calls: the call
//! task (`call_task::sip::run_sip_call`, the sidecar's own code from the
//! offer on), SIP to sipp (which answers; its SDP points at an RTP peer
//! here), RTP both ways, and the engine. No edge: an offer is built here,
//! as a sidecar gets it from its lease. `cargo xtask bench-turn` runs these
//! (`--ignored`, release) and writes docs/bench.md's sections from the JSON
//! they append to `VOXLINE_BENCH_OUT`.
//!
//! The RTP peer plays the callee: it sends a packet every 20 ms (mu-law
//! silence, or a flite `slt` utterance) and times every packet it gets from
//! the sidecar; a packet is audible when a sample decodes above 256 (about
//! -42 dBFS). It reacts to what it hears:
//! - turn (local engine): once the agent has been silent for 600 ms it says
//!   its line; turn latency = the arrival of the first audible packet after
//!   its last audible packet was sent (the end of the utterance as sent);
//! - barge-in (both engines): 800 ms into an agent line it starts talking;
//!   barge-in latency = the arrival of the first silent packet after the
//!   agent's last audible one (before the callee's utterance ends), minus
//!   when the callee's first audible packet was sent. With the fake OpenAI Realtime server, which answers the
//!   callee's speech onset with `input_audio_buffer.speech_started` after a
//!   fixed delay, that delay is subtracted (the sidecar's share).
//!
//! The local engine's steps come from its `voxline_latency` debug marks
//! (endpoint, recognised, reply queued; wall clock).
//!
//! One test here is not a benchmark and runs with the others:
//! `an_offer_with_the_callee_first_greets_only_after_the_callee_spoke`.
#![cfg(feature = "local-engine")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use voxline_media_sidecar::call_task::sip::run_sip_call;
use voxline_media_sidecar::call_task::HangupCause;
use voxline_media_sidecar::engine::guard::AllowedHosts;
use voxline_media_sidecar::engine::local::tts::{synthesize, Voice};
use voxline_media_sidecar::media::g711::Law;
use voxline_media_sidecar::telephony::Telephony;
use voxline_shared::sidecar_link::{FirstSpeaker, Offer, SecretText};
use voxline_shared::EngineKind;

const AUDIBLE: i16 = 256;
/// The fake server's fixed delay before it says the callee started speaking.
const FAKE_DELAY_MS: u64 = 100;

/// Each turn's line is long enough to barge into, and never ends the call.
const SCRIPT: &str = "[script]\n\
greeting: Hello, this is Demo Dental calling about your appointment tomorrow at ten in the morning. Can you make it?\n\
maybe|perhaps -> Alright. Please let me know whether the appointment tomorrow at ten in the morning still works for you.\n\
* -> Sorry, I did not catch that. Could you tell me whether the appointment tomorrow at ten in the morning works for you?\n\
silence 30s -> Are you still there?\n\
retries: 10\n\
[/script]";

const CALLEE_LINE: &str = "Maybe, perhaps.";

/// The same, but no rule can match what the recognizer hears (its words
/// are the script's): the turn ends because the words sound finished.
fn script_unknown() -> String {
    SCRIPT.replace("maybe|perhaps ->", "certainly perhaps maybe certainly ->")
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn quick() -> bool {
    std::env::var("VOXLINE_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Appends one result object to `VOXLINE_BENCH_OUT` (and prints it).
fn report(v: Value) {
    println!("BENCH {v}");
    if let Ok(path) = std::env::var("VOXLINE_BENCH_OUT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("bench output");
        writeln!(f, "{v}").unwrap();
    }
}

// ---- the `voxline_latency` marks, from a process-wide log capture ----

#[path = "common/log_capture.rs"]
mod log_capture;
use log_capture::Capture;

fn capture() -> Capture {
    log_capture::capture_logs(tracing::Level::DEBUG)
}

fn marks(cap: &Capture) -> Vec<(String, u64, u64)> {
    let text = String::from_utf8_lossy(&cap.0.lock().unwrap()).to_string();
    let field = |line: &str, name: &str| -> Option<String> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        Some(
            line[at..]
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_string(),
        )
    };
    text.lines()
        .filter(|l| l.contains("latency mark"))
        .filter_map(|l| {
            Some((
                field(l, "stage")?,
                field(l, "took_us")?.parse().ok()?,
                field(l, "unix_us")?.parse().ok()?,
            ))
        })
        .collect()
}

// ---- the rig: sipp, telephony, the call task ----

struct Rig {
    sipp: tokio::process::Child,
    dir: std::path::PathBuf,
    call: tokio::task::JoinHandle<()>,
    hangup: Option<oneshot::Sender<HangupCause>>,
}

async fn place(offer_engine: EngineKind, rtp_port: u16, hold_ms: u64, base: Option<String>) -> Rig {
    place_with(
        offer_engine,
        rtp_port,
        hold_ms,
        base,
        FirstSpeaker::Agent,
        SCRIPT,
    )
    .await
}

async fn place_with(
    offer_engine: EngineKind,
    rtp_port: u16,
    hold_ms: u64,
    base: Option<String>,
    first_speaker: FirstSpeaker,
    script: &str,
) -> Rig {
    let sipp_bin = voxline_testkit::SIPP.require();
    let port = voxline_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("voxline-lat-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sipp/uas_hold_bye.xml"),
    )
    .unwrap();
    let scenario = dir.join("uas.xml");
    std::fs::write(
        &scenario,
        template
            .replace("MEDIA_PORT", &rtp_port.to_string())
            .replace("HOLD_MS", &hold_ms.to_string())
            .replace("<!-- RING_PAUSE -->", "<pause milliseconds=\"1000\"/>"),
    )
    .unwrap();
    let sipp = tokio::process::Command::new(sipp_bin)
        .current_dir(&dir)
        .args(["-sf", scenario.to_str().unwrap(), "-i", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "300s", "-timeout_error"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp");
    let t0 = std::time::Instant::now();
    while !voxline_testkit::udp_port_bound(port) {
        assert!(t0.elapsed() < Duration::from_secs(10), "sipp did not bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cfg: voxline_media_sidecar::config::Telephony = toml::from_str(&format!(
        "bind_ip = \"127.0.0.1\"\n[[trunks]]\nname = \"sipp\"\nhost = \"127.0.0.1\"\n\
         port = {port}\nfrom_number = \"+14155550199\"\n"
    ))
    .unwrap();
    let tel = Telephony::start(&cfg, AllowedHosts::parse(&["127.0.0.1"]).unwrap())
        .await
        .unwrap();
    let offer = Offer {
        tenant_id: "ten_1".into(),
        lease_id: "l_1".into(),
        call_id: format!("c_lat_{port}"),
        attempt: 1,
        phone: "+14155550100".into(),
        caller_name: None,
        caller_number: None,
        agent_id: "ag_1".into(),
        system_prompt: Some(script.into()),
        voice: Some("kal16".into()),
        language: "en-US".into(),
        engine: offer_engine.into(),
        model: None,
        max_seconds: 600,
        record: false,
        metadata: None,
        engine_api_key: base.as_ref().map(|_| SecretText::new("sk-bench")),
        engine_base_url: base,
        engine_key_unavailable: false,
        silence_timeout_seconds: Some(120),
        ack_deadline_ms: 0,
        first_speaker,
        analysis: None,
        amd: Default::default(),
        amd_message: None,
        tools: Vec::new(),
        connect: None,
        transfer_people: Vec::new(),
    };
    let (tx, mut rx) = mpsc::channel(256);
    let (hangup_tx, hangup_rx) = oneshot::channel();
    let call = tokio::spawn(run_sip_call(
        offer,
        Arc::new(tel),
        tx,
        hangup_rx,
        tokio::sync::mpsc::channel(1).1,
    ));
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    Rig {
        sipp,
        dir,
        call,
        hangup: Some(hangup_tx),
    }
}

impl Rig {
    async fn end(mut self) {
        if let Some(h) = self.hangup.take() {
            let _ = h.send(HangupCause::Requested);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.call).await;
        let _ = self.sipp.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- the callee: an RTP peer that listens and talks ----

fn audible(payload: &[u8]) -> bool {
    let mut pcm = Vec::with_capacity(payload.len());
    Law::Mu.decode(payload, &mut pcm);
    pcm.iter().any(|s| s.unsigned_abs() > AUDIBLE as u16)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Speak when the agent has been silent for 600 ms (a turn).
    Turn,
    /// Speak 800 ms into an agent line (a barge-in).
    BargeIn,
}

#[derive(Debug, Default)]
struct Turn {
    /// Unix µs: first and last audible packet of the callee's line, sent.
    onset_us: u64,
    end_us: u64,
    /// The agent's first audible packet after `end_us` (turn), or its first
    /// silent one after its last audible one before `end_us` (barge-in), arrived.
    agent_us: Option<u64>,
}

/// Runs the callee for `turns` turns (or until `within`); the turns measured.
async fn callee(sock: UdpSocket, mode: Mode, turns: usize, within: Duration) -> Vec<Turn> {
    let line = synthesize(CALLEE_LINE, Voice::Slt).unwrap();
    let mut codes = Vec::new();
    Law::Mu.encode(&line, &mut codes);
    let frames: Vec<Vec<u8>> = codes
        .chunks(160)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(160, 0xFF);
            f
        })
        .collect();
    let last_audible = frames.iter().rposition(|f| audible(f)).unwrap();
    let first_audible = frames.iter().position(|f| audible(f)).unwrap();
    let mut buf = [0u8; 1500];
    let (_, remote) = tokio::time::timeout(Duration::from_secs(20), sock.recv_from(&mut buf))
        .await
        .expect("RTP from the sidecar")
        .unwrap();
    let mut out: Vec<Turn> = Vec::new();
    let mut speaking: Option<usize> = None; // next frame index
    let mut agent_last_audible_us = 0u64;
    let mut agent_line_start_us: Option<u64> = None;
    let mut seq: u16 = 0;
    let mut prev_loud = false;
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut current = Turn::default();
    while started.elapsed() < within && out.len() < turns {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, _)) = r else { continue };
                if n < 12 || buf[1] & 0x7F != 0 {
                    continue;
                }
                let now = unix_us();
                let loud = audible(&buf[12..n]);
                if mode == Mode::BargeIn && current.onset_us > 0 && speaking.is_some() {
                    // The agent's audio stops on the wire with the first
                    // silent packet after its last audible one.
                    if loud {
                        current.agent_us = None;
                    } else if prev_loud {
                        current.agent_us = Some(now);
                    }
                }
                prev_loud = loud;
                if loud {
                    if now.saturating_sub(agent_last_audible_us) > 600_000 {
                        agent_line_start_us = Some(now);
                    }
                    agent_last_audible_us = now;
                    match mode {
                        Mode::Turn if current.end_us > 0 && current.agent_us.is_none() => {
                            current.agent_us = Some(now);
                            out.push(std::mem::take(&mut current));
                        }
                        _ => {}
                    }
                }
            }
            _ = tick.tick() => {
                let now = unix_us();
                let payload: Vec<u8> = match speaking {
                    Some(i) if i < frames.len() => {
                        if i == first_audible {
                            current.onset_us = now;
                        }
                        if i == last_audible {
                            current.end_us = now;
                        }
                        speaking = Some(i + 1);
                        frames[i].clone()
                    }
                    Some(_) => {
                        speaking = None;
                        if mode == Mode::BargeIn {
                            // A barge-in the agent never stopped for has no figure.
                            if current.agent_us.is_some_and(|a| a > current.end_us - 200_000) {
                                current.agent_us = None;
                            }
                            out.push(std::mem::take(&mut current));
                        }
                        vec![0xFF; 160]
                    }
                    None => {
                        let start = match mode {
                            Mode::Turn => agent_last_audible_us > 0
                                && current.end_us == 0
                                && now.saturating_sub(agent_last_audible_us) >= 600_000,
                            Mode::BargeIn => agent_line_start_us.is_some_and(|s| {
                                now.saturating_sub(s) >= 800_000
                                    && now.saturating_sub(agent_last_audible_us) < 100_000
                            }),
                        };
                        if start {
                            speaking = Some(0);
                            agent_line_start_us = None;
                            current = Turn::default();
                        }
                        vec![0xFF; 160]
                    }
                };
                let mut pkt = Vec::with_capacity(172);
                pkt.extend_from_slice(&[0x80, 0x00]);
                pkt.extend_from_slice(&seq.to_be_bytes());
                pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                pkt.extend_from_slice(&0x5EED_0002u32.to_be_bytes());
                pkt.extend_from_slice(&payload);
                seq = seq.wrapping_add(1);
                let _ = sock.send_to(&pkt, remote).await;
            }
        }
    }
    out
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// For each measured turn: the local engine's marks between the end of the
/// callee's utterance and the agent's reply: (endpoint wait, recognition,
/// synthesis, rest) in ms.
fn breakdown(turns: &[Turn], marks: &[(String, u64, u64)]) -> Vec<[f64; 4]> {
    turns
        .iter()
        .filter_map(|t| {
            let agent = t.agent_us?;
            let in_turn = |stage: &str| {
                marks
                    .iter()
                    .find(|(s, _, at)| s == stage && *at >= t.end_us && *at <= agent)
                    .map(|(_, took, at)| (*took, *at))
            };
            let (_, endpoint_at) = in_turn("endpoint")?;
            let (_, recognised_at) = in_turn("recognised")?;
            let (synth_us, queued_at) = in_turn("reply_queued")?;
            Some([
                ms(endpoint_at - t.end_us),
                ms(recognised_at - endpoint_at),
                ms(synth_us),
                ms(agent - queued_at),
            ])
        })
        .collect()
}

/// Local engine: turn latency (end of the callee's utterance -> first
/// audible reply) with its breakdown, for an answer the script knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench-turn"]
async fn turn_latency_local_engine() {
    turn_latency(SCRIPT, "turn_local").await
}

/// The same for speech the script does not know (it sounds finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench-turn"]
async fn turn_latency_local_engine_unknown_answer() {
    turn_latency(&script_unknown(), "turn_local_unknown").await
}

async fn turn_latency(script: &str, name: &str) {
    let cap = capture();
    let calls = if quick() { 1 } else { 3 };
    let turns = if quick() { 4 } else { 8 };
    let mut all = Vec::new();
    for _ in 0..calls {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtp = sock.local_addr().unwrap().port();
        let rig = place_with(
            EngineKind::Local,
            rtp,
            120_000,
            None,
            FirstSpeaker::Agent,
            script,
        )
        .await;
        let got = callee(sock, Mode::Turn, turns, Duration::from_secs(110)).await;
        rig.end().await;
        all.extend(got);
    }
    let marks = marks(&cap);
    let parts = breakdown(&all, &marks);
    let latency: Vec<f64> = all
        .iter()
        .filter_map(|t| Some(ms(t.agent_us? - t.end_us)))
        .collect();
    assert!(!latency.is_empty(), "no turn measured");
    report(
        json!({"bench": name, "latency_ms": latency, "turns": all.len(),
        "breakdown_ms": parts, "breakdown": ["endpoint wait", "recognition", "synthesis", "to the wire"]}),
    );
}

/// Local engine: barge-in latency (callee's speech onset -> the agent's
/// audio stops arriving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench-turn"]
async fn barge_in_latency_local_engine() {
    let calls = if quick() { 1 } else { 3 };
    let turns = if quick() { 4 } else { 8 };
    let mut all = Vec::new();
    for _ in 0..calls {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtp = sock.local_addr().unwrap().port();
        let rig = place(EngineKind::Local, rtp, 120_000, None).await;
        all.extend(callee(sock, Mode::BargeIn, turns, Duration::from_secs(110)).await);
        rig.end().await;
    }
    let latency: Vec<f64> = all
        .iter()
        .filter_map(|t| Some(ms(t.agent_us?.saturating_sub(t.onset_us))))
        .collect();
    assert!(!latency.is_empty(), "no barge-in measured: {all:?}");
    report(json!({"bench": "barge_in_local", "latency_ms": latency, "turns": all.len()}));
}

// ---- a fake OpenAI Realtime server that talks long lines and hears onsets ----

/// Serves one session: a long line per `response.create` and after each
/// callee utterance; `speech_started` `FAKE_DELAY_MS` after the first
/// audible callee frame of an utterance.
async fn fake_openai(listener: TcpListener, line: Arc<Vec<u8>>) {
    let Ok((tcp, _)) = listener.accept().await else {
        return;
    };
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        while let Some(v) = out_rx.recv().await {
            if tx.send(Message::text(v.to_string())).await.is_err() {
                break;
            }
        }
    });
    let _ = out_tx.send(json!({"type": "session.created", "session": {"id": "sess_bench"}}));
    let item = Arc::new(Mutex::new(0u32));
    let speak = {
        let out_tx = out_tx.clone();
        let item = item.clone();
        move || {
            let n = {
                let mut i = item.lock().unwrap();
                *i += 1;
                *i
            };
            for c in line.chunks(1600) {
                let _ = out_tx.send(json!({"type": "response.output_audio.delta", "response_id": format!("resp_{n}"),
                    "item_id": format!("item_{n}"), "output_index": 0, "content_index": 0,
                    "delta": base64_encode(c)}));
            }
            let _ = out_tx.send(
                json!({"type": "response.output_audio.done", "item_id": format!("item_{n}")}),
            );
        }
    };
    let mut in_speech = false;
    let mut quiet_frames = 0;
    while let Some(Ok(m)) = rx.next().await {
        let Message::Text(t) = m else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&t) else {
            continue;
        };
        match v["type"].as_str().unwrap_or("") {
            "response.create" => speak(),
            "input_audio_buffer.append" => {
                let bytes = base64_decode(v["audio"].as_str().unwrap_or(""));
                if audible(&bytes) {
                    quiet_frames = 0;
                    if !in_speech {
                        in_speech = true;
                        let out_tx = out_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(FAKE_DELAY_MS)).await;
                            let _ = out_tx
                                .send(json!({"type": "input_audio_buffer.speech_started",
                                "audio_start_ms": 0, "item_id": "item_u"}));
                        });
                    }
                } else if in_speech {
                    quiet_frames += 1;
                    if quiet_frames >= 25 {
                        in_speech = false;
                        let _ = out_tx.send(json!({"type": "input_audio_buffer.speech_stopped",
                            "audio_end_ms": 0, "item_id": "item_u"}));
                        speak();
                    }
                }
            }
            _ => {}
        }
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

/// OpenAI Realtime (the fake above): barge-in latency minus the fake's delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench-turn"]
async fn barge_in_latency_openai_realtime() {
    let pcm = synthesize(
        "Hello, this is Demo Dental calling about your appointment tomorrow at ten in the morning. Can you make it?",
        Voice::Kal16,
    )
    .unwrap();
    let mut mu = Vec::new();
    Law::Mu.encode(&pcm, &mut mu);
    let line = Arc::new(mu);
    let calls = if quick() { 1 } else { 3 };
    let turns = if quick() { 4 } else { 8 };
    let mut all = Vec::new();
    for _ in 0..calls {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(fake_openai(listener, line.clone()));
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtp = sock.local_addr().unwrap().port();
        let rig = place(EngineKind::OpenaiRealtime, rtp, 120_000, Some(url)).await;
        all.extend(callee(sock, Mode::BargeIn, turns, Duration::from_secs(110)).await);
        rig.end().await;
        server.abort();
    }
    let latency: Vec<f64> = all
        .iter()
        .filter_map(|t| Some(ms(t.agent_us?.saturating_sub(t.onset_us)) - FAKE_DELAY_MS as f64))
        .collect();
    assert!(!latency.is_empty(), "no barge-in measured: {all:?}");
    report(
        json!({"bench": "barge_in_openai", "latency_ms": latency, "turns": all.len(),
        "fake_delay_ms": FAKE_DELAY_MS}),
    );
}

/// Issue 17, a whole call from an offer with `first_speaker: callee`: the
/// agent says nothing while the callee is silent after the answer, nor
/// while they say "Hello?"; its greeting comes once they stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_with_the_callee_first_greets_only_after_the_callee_spoke() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp = sock.local_addr().unwrap().port();
    let rig = place_with(
        EngineKind::Local,
        rtp,
        30_000,
        None,
        FirstSpeaker::Callee,
        SCRIPT,
    )
    .await;
    let hello = synthesize("Hello?", Voice::Slt).unwrap();
    let mut codes = Vec::new();
    Law::Mu.encode(&hello, &mut codes);
    let mut buf = [0u8; 1500];
    let (_, remote) = tokio::time::timeout(Duration::from_secs(20), sock.recv_from(&mut buf))
        .await
        .expect("RTP from the sidecar")
        .unwrap();
    let answered = std::time::Instant::now();
    // 1.5 s of silence, then "Hello?", then silence; 20 ms a packet.
    let silent_frames = 75;
    let frames: Vec<Vec<u8>> = std::iter::repeat_n(vec![0xFFu8; 160], silent_frames)
        .chain(codes.chunks(160).map(|c| {
            let mut f = c.to_vec();
            f.resize(160, 0xFF);
            f
        }))
        .collect();
    let last_voice = frames.iter().rposition(|f| audible(f)).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut sent = 0usize;
    let mut spoke_until = None;
    let mut greeted = None;
    let deadline = answered + Duration::from_secs(10);
    while greeted.is_none() && std::time::Instant::now() < deadline {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, _)) = r else { continue };
                if n > 12 && audible(&buf[12..n]) {
                    greeted = Some(std::time::Instant::now());
                }
            }
            _ = tick.tick() => {
                let payload = frames.get(sent).cloned().unwrap_or_else(|| vec![0xFF; 160]);
                if sent == last_voice {
                    spoke_until = Some(std::time::Instant::now());
                }
                sent += 1;
                let seq = sent as u16;
                let mut pkt = vec![0x80, 0x00];
                pkt.extend_from_slice(&seq.to_be_bytes());
                pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                pkt.extend_from_slice(&0x5EED_0003u32.to_be_bytes());
                pkt.extend_from_slice(&payload);
                let _ = sock.send_to(&pkt, remote).await;
            }
        }
    }
    rig.end().await;
    let greeted = greeted.expect("the agent never greeted");
    let Some(spoke_until) = spoke_until else {
        panic!(
            "greeted {:?} after the answer, before the callee's hello ended",
            greeted - answered
        );
    };
    assert!(
        greeted > spoke_until,
        "greeted {:?} after the answer, before the callee's hello ended ({:?})",
        greeted - answered,
        spoke_until - answered
    );
    assert!(
        greeted - spoke_until < Duration::from_millis(1_500),
        "greeted only {:?} after the callee spoke",
        greeted - spoke_until
    );
}
