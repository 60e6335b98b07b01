//! `cargo xtask bench` (calls part): figures of whole calls.
//!
//! API -> INVITE: this process is the SIP trunk. A UDP socket here receives
//! the release sidecar's INVITEs; the time from just before `POST /v1/calls`
//! is sent to the INVITE's arrival (same monotonic clock) is recorded, and the
//! INVITE is answered `486 Busy Here` so the call ends at once (the sidecar's
//! ACK of that 486 is awaited before the next call: proof it took the answer).
//!
//! Answer -> first AI audio: the `local` engine (VAD, pocketsphinx, script,
//! flite). sipp answers (its 200 OK's SDP points at an RTP peer here); the
//! sidecar can send RTP only once it has that 200 OK, so the first RTP packet
//! received here marks "answered" on the sidecar's side; the first packet
//! whose mu-law payload decodes to an audible sample marks the first AI audio.
//! sipp's own log (`-trace_msg`) gives when it sent the 200 OK.
//!
//! Local engine CPU: as the echo load in bench_media, with the `local` engine
//! and a callee that speaks: sipp plays a pcap of a flite voice.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use time::format_description::well_known::Rfc3339;
use voxline_e2e::{Edge, TestTenant};
use voxline_testkit::{flite_8k, free_tcp_udp_port, mulaw_decode, write_pcap, Caddy, Pki};

use crate::bench_media::{count, count_lines, median, percentile, LoadRun, LoadSpec, SippMedia};

/// The local engine's agent: the demo's appointment script, but no reply
/// ends the call and reprompts are the most the format allows (10), so a
/// load call lasts its whole hold whatever the recognizer makes of the
/// callee (its vocabulary is the script's words, so it may hear a "no").
pub const SCRIPT: &str = "You call patients of Demo Dental to confirm tomorrow's appointment.
[script]
greeting: Hello, this is Demo Dental calling about your appointment tomorrow at ten. Can you make it?
yes|yeah|sure|i can -> Great, we will see you tomorrow at ten.
no|can't|cannot -> No problem, we will call you to find a new time.
* -> Sorry, I didn't catch that. Can you make it tomorrow at ten?
silence 8s -> Are you still there?
goodbye: Thank you, goodbye.
retries: 10
[/script]";
/// The script's greeting, as the engine says it (flite, its default voice).
const GREETING: &str =
    "Hello, this is Demo Dental calling about your appointment tomorrow at ten. Can you make it?";
const ENGINE_VOICE: &str = "kal16";

/// What the load callee says (meant to match no rule: the agent reprompts).
pub const CALLEE_LINE: &str = "Hmm, let me check my calendar first.";
/// The load callee: silent while the greeting plays, then the line every
/// `CALLEE_PERIOD_S` seconds.
const CALLEE_FIRST_S: usize = 6;
const CALLEE_PERIOD_S: usize = 6;
const CALLEE_TRACK_S: usize = 32;

/// A decoded sample above this (of 32767; about -42 dBFS) is audio, not silence.
/// The sidecar's comfort silence is mu-law 0xFF, which decodes to exactly 0.
pub const AUDIBLE: i16 = 256;

pub fn invite_runs() -> usize {
    count(3, 1)
}
pub fn invite_calls() -> usize {
    count(30, 8)
}
pub const INVITE_WARMUP: usize = 3;
pub fn first_audio_calls() -> usize {
    count(10, 3)
}
/// How long sipp holds each first-audio call before its BYE.
const FIRST_AUDIO_HOLD_MS: u64 = 4_000;
pub fn local_load_ns() -> &'static [usize] {
    if crate::bench_media::quick() {
        &[1, 10]
    } else {
        &[1, 5, 10]
    }
}
pub fn local_load_runs() -> usize {
    count(3, 1)
}
/// Local load calls: hold, settle after answer, window: the window spans two
/// whole callee periods (6-18 s after answer: two lines, their decodes and
/// the reprompts), so it is not biased to talk or silence.
const LOCAL_HOLD_MS: u64 = 24_000;
const LOCAL_SETTLE_MS: u64 = 4_000;
const LOCAL_WINDOW_MS: u64 = 12_000;

static NUMBER: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------- SIP trunk

/// Values of header `name` (or its compact form), in order.
fn header_lines<'a>(msg: &'a str, name: &str, compact: Option<&str>) -> Vec<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.lines()
        .skip(1)
        .filter(|l| {
            l.split_once(':').is_some_and(|(n, _)| {
                let n = n.trim();
                n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c))
            })
        })
        .map(|l| l.trim_end_matches('\r'))
        .collect()
}

fn header_value<'a>(msg: &'a str, name: &str, compact: Option<&str>) -> Option<&'a str> {
    header_lines(msg, name, compact)
        .first()
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// A `486 Busy Here` for `invite`: its Via(s), From, To (+ our tag),
/// Call-ID and CSeq, no body (RFC 3261 8.2.6.2).
pub(crate) fn busy_here(invite: &str, tag: &str) -> Result<String, String> {
    let vias = header_lines(invite, "Via", Some("v"));
    let one = |name: &str, compact: Option<&str>| {
        header_lines(invite, name, compact)
            .first()
            .copied()
            .ok_or_else(|| format!("INVITE without {name}:\n{invite}"))
    };
    if vias.is_empty() {
        return Err(format!("INVITE without Via:\n{invite}"));
    }
    let (from, to, call_id, cseq) = (
        one("From", Some("f"))?,
        one("To", Some("t"))?,
        one("Call-ID", Some("i"))?,
        one("CSeq", None)?,
    );
    let to = if to.to_ascii_lowercase().contains(";tag=") {
        to.to_string()
    } else {
        format!("{to};tag={tag}")
    };
    let mut r = String::from("SIP/2.0 486 Busy Here\r\n");
    for v in vias {
        r.push_str(v);
        r.push_str("\r\n");
    }
    for h in [from, to.as_str(), call_id, cseq, "Content-Length: 0"] {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    Ok(r)
}

enum TrunkEvent {
    Invite {
        uri: String,
        call_id: String,
        at: Instant,
    },
    Ack {
        call_id: String,
    },
    Bad(String),
}

/// The trunk: a UDP socket on 127.0.0.1 answering every INVITE `486`, on its own thread.
struct Trunk {
    port: u16,
    rx: mpsc::Receiver<TrunkEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trunk {
    fn start() -> Result<Trunk, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("trunk socket: {e}"))?;
        let port = sock.local_addr().map_err(|e| e.to_string())?.port();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            // Retransmitted INVITEs get the same answer again.
            let mut answered: HashMap<String, String> = HashMap::new();
            while !halt.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                // The arrival time, before any parsing.
                let at = Instant::now();
                let msg = String::from_utf8_lossy(&buf[..len]).into_owned();
                let call_id = header_value(&msg, "Call-ID", Some("i"))
                    .unwrap_or_default()
                    .to_string();
                if msg.starts_with("INVITE ") {
                    if let Some(r) = answered.get(&call_id) {
                        let _ = sock.send_to(r.as_bytes(), from);
                        continue;
                    }
                    let uri = msg
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let event = match busy_here(&msg, &format!("bench{}", answered.len() + 1)) {
                        Ok(r) => match sock.send_to(r.as_bytes(), from) {
                            Ok(_) => {
                                answered.insert(call_id.clone(), r);
                                TrunkEvent::Invite { uri, call_id, at }
                            }
                            Err(e) => TrunkEvent::Bad(format!("sending the 486: {e}")),
                        },
                        Err(e) => TrunkEvent::Bad(e),
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                } else if msg.starts_with("ACK ") && tx.send(TrunkEvent::Ack { call_id }).is_err() {
                    return;
                }
            }
        });
        Ok(Trunk {
            port,
            rx,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Trunk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One sequential call: API POST -> INVITE at the trunk, in ms; waits for the ACK.
fn invite_once(edge: &Edge, key: &str, trunk: &Trunk) -> Result<(f64, String), String> {
    let phone = format!("+1415559{:04}", NUMBER.fetch_add(1, Ordering::Relaxed));
    let t0 = Instant::now();
    let r = edge.call("POST", "/v1/calls", key, Some(&json!({"phone": phone})));
    if r.status != 201 {
        return Err(format!("POST /v1/calls: {} {}", r.status, r.text));
    }
    let id = r.json["id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = || deadline.saturating_duration_since(Instant::now());
    let (call_id, at) = loop {
        match trunk.rx.recv_timeout(left()) {
            Ok(TrunkEvent::Invite { uri, call_id, at }) if uri.contains(&phone[1..]) => {
                break (call_id, at)
            }
            Ok(TrunkEvent::Bad(e)) => return Err(e),
            Ok(_) => continue, // a late ACK of an earlier call
            Err(_) => return Err(format!("no INVITE for {phone} (call {id}) within 10 s")),
        }
    };
    loop {
        match trunk.rx.recv_timeout(left()) {
            Ok(TrunkEvent::Ack { call_id: c }) if c == call_id => break,
            Ok(TrunkEvent::Bad(e)) => return Err(e),
            Ok(_) => continue,
            Err(_) => return Err(format!("the sidecar never ACKed our 486 for {phone}")),
        }
    }
    Ok(((at - t0).as_secs_f64() * 1000.0, id))
}

/// `invite_runs()` runs of `invite_calls()` sequential calls (plus warm-up)
/// through one sidecar that leases from `edge_url`; per-run samples in ms.
pub fn api_invite(
    edge: &Edge,
    tenant: &TestTenant,
    bin: &Path,
    dir: &Path,
    transport: &str,
    edge_url: &str,
    env: &[(&str, String)],
) -> Result<Vec<Vec<f64>>, String> {
    let trunk = Trunk::start()?;
    // The same long-poll as the lease latency runs (the edge caps it at 2 s).
    let sidecar = crate::bench_media::start_sidecar_with(
        edge,
        bin,
        dir,
        &format!("invite-{transport}"),
        edge_url,
        env,
        trunk.port,
        64,
        20_000,
    )?;
    let mut runs = Vec::new();
    for run in 0..invite_runs() {
        let mut lat = crate::step(
            &format!("API -> INVITE over {transport}, run {}", run + 1),
            || {
                let mut out = Vec::new();
                let mut last = String::new();
                for i in 0..invite_calls() + INVITE_WARMUP {
                    let (ms, id) = invite_once(edge, &tenant.key, &trunk)?;
                    if i >= INVITE_WARMUP {
                        out.push(ms);
                    }
                    last = id;
                }
                // The edge must have seen the 486 as `busy` (a wrong answer would not be).
                let until = Instant::now() + Duration::from_secs(5);
                loop {
                    let c = edge.call("GET", &format!("/v1/calls/{last}"), &tenant.key, None);
                    if c.json["status"] == "busy" {
                        break;
                    }
                    if Instant::now() > until {
                        return Err(format!("call {last} should have ended busy: {}", c.text));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(out)
            },
        )?;
        lat.sort_by(|a, b| a.total_cmp(b));
        println!(
            "  {transport}: p50 {:.1} ms, p99 {:.1} ms",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        runs.push(lat);
    }
    sidecar.stop();
    drop(trunk);
    // Let the stopped sidecar's held long-poll lapse (edge max wait 2 s).
    std::thread::sleep(Duration::from_millis(2_500));
    Ok(runs)
}

// ------------------------------------------------------- first AI audio

/// One first-audio call; times in ms.
#[derive(Debug, Clone, Copy)]
pub struct FirstAudioCall {
    /// First RTP packet -> first packet with an audible sample (the figure).
    pub audio_ms: f64,
    /// First RTP packet -> first packet that is not digital silence at all.
    pub nonzero_ms: f64,
    /// sipp sent its 200 OK -> first RTP packet here (wall clocks, same machine).
    pub ok_to_rtp_ms: Option<f64>,
}

#[derive(Debug, Default)]
pub struct FirstAudio {
    /// The sidecar's first call (flite synthesises the script then): not in `calls`.
    pub cold: Option<FirstAudioCall>,
    pub calls: Vec<FirstAudioCall>,
    /// How long the greeting flite makes stays below `AUDIBLE` (ms; its lead-in).
    pub greeting_lead_ms: Option<f64>,
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// When sipp sent each INVITE's first 200 OK, in order, as unix ms, from
/// its `-trace_msg` log (local time stamps `YYYY-MM-DD HH:MM:SS.uuuuuu`).
fn sipp_200_ok_times(log: &str) -> Vec<f64> {
    // sipp prints local time; the offset of this machine's zone now.
    let offset = std::process::Command::new("date")
        .arg("+%:z")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|z| z.len() == 6)
        .unwrap_or_else(|| "+00:00".into());
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for block in log
        .split("----------------------------------------------- ")
        .skip(1)
    {
        let mut lines = block.lines();
        let stamp = lines.next().unwrap_or_default().trim();
        let sent = lines.next().is_some_and(|l| l.contains("message sent"));
        if !sent
            || !block.contains("SIP/2.0 200 OK")
            || header_value(block, "CSeq", None).is_none_or(|c| !c.ends_with("INVITE"))
        {
            continue;
        }
        let call_id = header_value(block, "Call-ID", Some("i"))
            .unwrap_or_default()
            .to_string();
        if !seen.insert(call_id) {
            continue; // a retransmission
        }
        let rfc = format!("{}{offset}", stamp.replacen(' ', "T", 1));
        if let Ok(t) = time::OffsetDateTime::parse(&rfc, &Rfc3339) {
            out.push(t.unix_timestamp_nanos() as f64 / 1e6);
        }
    }
    out
}

/// RTP payload of `pkt` when it is a PCMU packet with this SSRC (any, if None).
fn pcmu_payload(pkt: &[u8], ssrc: Option<[u8; 4]>) -> Option<&[u8]> {
    if pkt.len() < 12
        || pkt[0] >> 6 != 2
        || pkt[1] & 0x7F != 0
        || ssrc.is_some_and(|s| pkt[8..12] != s)
    {
        return None;
    }
    let start = 12 + 4 * (pkt[0] & 0x0F) as usize;
    pkt.get(start..)
}

/// Calls placed one after another to a sipp that answers each; this process
/// is their RTP peer.
pub fn first_audio(
    edge: &Edge,
    tenant: &TestTenant,
    bin: &Path,
    dir: &Path,
) -> Result<FirstAudio, String> {
    first_audio_with(edge, tenant, bin, dir, "first-audio", &json!({}))
}

/// [`first_audio`] with `extra` fields in each `POST /v1/calls` body (e.g.
/// the call's engine key and URL), sipp and the sidecar named after `name`.
pub fn first_audio_with(
    edge: &Edge,
    tenant: &TestTenant,
    bin: &Path,
    dir: &Path,
    name: &str,
    extra: &serde_json::Value,
) -> Result<FirstAudio, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let rtp_port = sock.local_addr().map_err(|e| e.to_string())?.port();
    let sipp_port = free_tcp_udp_port();
    let total = first_audio_calls() + 1;
    let trace = dir.join(format!("{name}-sipp-messages.log"));
    let _ = std::fs::remove_file(&trace);
    let trace_s = trace.display().to_string();
    let mut sipp = crate::bench_media::start_sipp(
        dir,
        &format!("{name}-sipp"),
        sipp_port,
        total,
        FIRST_AUDIO_HOLD_MS,
        SippMedia::Peer(rtp_port),
        &["-trace_msg", "-message_file", &trace_s],
    )?;
    let sidecar = crate::bench_media::start_sidecar(edge, bin, dir, name, sipp_port, 2)?;
    let mut buf = [0u8; 2048];
    let mut rows = Vec::new();
    for i in 0..total {
        // Whatever the previous call left in the socket.
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .map_err(|e| e.to_string())?;
        while sock.recv_from(&mut buf).is_ok() {}
        let phone = format!("+1415560{:04}", NUMBER.fetch_add(1, Ordering::Relaxed));
        let mut body = json!({"phone": phone});
        if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(x.clone());
        }
        let r = edge.call("POST", "/v1/calls", &tenant.key, Some(&body));
        if r.status != 201 {
            return Err(format!("POST /v1/calls: {} {}", r.status, r.text));
        }
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let (len, _) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("call {}: no RTP from the sidecar: {e}", i + 1))?;
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        if pcmu_payload(&buf[..len], None).is_none() {
            return Err(format!(
                "call {}: the sidecar's first packet is not PCMU RTP",
                i + 1
            ));
        }
        let ssrc = [buf[8], buf[9], buf[10], buf[11]];
        let (mut nonzero, mut audible) = (None, None);
        let check = |p: &[u8],
                     nonzero: &mut Option<Instant>,
                     audible: &mut Option<Instant>,
                     at: Instant| {
            let max = p
                .iter()
                .map(|&b| mulaw_decode(b).unsigned_abs())
                .max()
                .unwrap_or(0);
            if max > 0 && nonzero.is_none() {
                *nonzero = Some(at);
            }
            if max > AUDIBLE as u16 {
                *audible = Some(at);
            }
        };
        check(
            pcmu_payload(&buf[..len], None).unwrap_or_default(),
            &mut nonzero,
            &mut audible,
            t0,
        );
        let deadline = t0 + Duration::from_secs(15);
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        while audible.is_none() && Instant::now() < deadline {
            let Ok((len, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let at = Instant::now();
            if let Some(p) = pcmu_payload(&buf[..len], Some(ssrc)) {
                check(p, &mut nonzero, &mut audible, at);
            }
        }
        let (Some(nz), Some(au)) = (nonzero, audible) else {
            return Err(format!(
                "call {}: no audible audio within 15 s of the first RTP packet; see {}",
                i + 1,
                sidecar.log.display()
            ));
        };
        let ms = |t: Instant| (t - t0).as_secs_f64() * 1000.0;
        rows.push((
            FirstAudioCall {
                audio_ms: ms(au),
                nonzero_ms: ms(nz),
                ok_to_rtp_ms: None,
            },
            unix_ms(wall0),
        ));
        println!(
            "  call {}: first RTP -> audible audio {:.1} ms (non-silent {:.1} ms)",
            i + 1,
            ms(au),
            ms(nz)
        );
        // One call at a time: wait for this one to be over.
        let until = Instant::now() + Duration::from_secs(FIRST_AUDIO_HOLD_MS / 1000 + 15);
        while count_lines(&sidecar.log(), "call released") <= i {
            if Instant::now() > until {
                return Err(format!(
                    "call {} was not released; see {}",
                    i + 1,
                    sidecar.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = sipp.wait_exit(Duration::from_secs(10));
    sidecar.stop();
    drop(sipp);
    std::thread::sleep(Duration::from_millis(2_500));
    let oks = sipp_200_ok_times(&std::fs::read_to_string(&trace).unwrap_or_default());
    if oks.len() == rows.len() {
        for (row, ok) in rows.iter_mut().zip(oks) {
            row.0.ok_to_rtp_ms = Some(row.1 - ok);
        }
    } else {
        println!(
            "  (sipp's message log has {} 200 OKs for {} calls: 200 OK times left out)",
            oks.len(),
            rows.len()
        );
    }
    let mut rows = rows.into_iter().map(|r| r.0);
    // flite's own lead-in before the greeting's first audible sample.
    let greeting_lead_ms = flite_8k(dir, ENGINE_VOICE, GREETING)
        .ok()
        .and_then(|pcm| pcm.iter().position(|s| s.unsigned_abs() > AUDIBLE as u16))
        .map(|i| i as f64 / 8.0);
    Ok(FirstAudio {
        cold: rows.next(),
        calls: rows.collect(),
        greeting_lead_ms,
    })
}

// ------------------------------------------------------- local engine load

/// The speaking callee's track: `CALLEE_FIRST_S` s of silence (the greeting
/// plays), then `CALLEE_LINE` every `CALLEE_PERIOD_S` s; returns the pcap.
fn callee_pcap(dir: &Path) -> Result<(PathBuf, f64), String> {
    let line = flite_8k(dir, "slt", CALLEE_LINE)?;
    let mut pcm = vec![0i16; 8000 * CALLEE_FIRST_S];
    let mut k = 0;
    while pcm.len() < 8000 * CALLEE_TRACK_S {
        pcm.resize(8000 * (CALLEE_FIRST_S + k * CALLEE_PERIOD_S), 0);
        pcm.extend_from_slice(&line);
        k += 1;
    }
    pcm.truncate(8000 * CALLEE_TRACK_S);
    let path = dir.join("bench-callee.pcap");
    write_pcap(&path, &pcm)?;
    Ok((path, line.len() as f64 / 8000.0))
}

#[derive(Debug, Default)]
pub struct LocalLoad {
    pub runs: Vec<LoadRun>,
    /// Length of the callee's line (s).
    pub line_s: f64,
    /// Callee turns the engine transcribed, per call checked (one call per run).
    pub user_turns: Vec<usize>,
    /// Runs that failed (N, why): reported, the other runs still count.
    pub failed: Vec<(usize, String)>,
}

/// Turns of `role` in a call's transcript.
fn turns(edge: &Edge, key: &str, id: &str, role: &str) -> usize {
    let t = edge.call("GET", &format!("/v1/calls/{id}/transcript"), key, None);
    t.json["turns"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["role"] == role).count())
        .unwrap_or(0)
}

pub fn local_load(
    edge: &Edge,
    tenant: &TestTenant,
    bin: &Path,
    dir: &Path,
) -> Result<LocalLoad, String> {
    let (pcap, line_s) = callee_pcap(dir)?;
    let spec = LoadSpec {
        name: "local-load",
        prefix: "558",
        pcap: Some(&pcap),
        hold_ms: LOCAL_HOLD_MS,
        settle_ms: LOCAL_SETTLE_MS,
        window_ms: LOCAL_WINDOW_MS,
    };
    let mut out = LocalLoad {
        line_s,
        ..Default::default()
    };
    for &n in local_load_ns() {
        for run in 0..local_load_runs() {
            let step = crate::step(
                &format!("local engine load, {n} concurrent calls, run {}", run + 1),
                || crate::bench_media::load_run_with(edge, tenant, bin, dir, n, run, &spec),
            );
            // One failed run (e.g. the sidecar dying mid-window) must not lose the rest.
            let (r, ids) = match step {
                Ok(x) => x,
                Err(e) => {
                    out.failed.push((n, e));
                    std::thread::sleep(Duration::from_millis(2_500));
                    continue;
                }
            };
            // The transcript is saved as the call ends; the run waited for that.
            let heard = ids
                .first()
                .map(|id| turns(edge, &tenant.key, id, "callee"))
                .unwrap_or(0);
            let said = ids
                .first()
                .map(|id| turns(edge, &tenant.key, id, "agent"))
                .unwrap_or(0);
            if said == 0 {
                // No greeting: the engine never ran, the window measured idle calls.
                out.failed.push((
                    n,
                    format!(
                        "the call checked ({}) has no AI turn in its transcript",
                        ids.first().cloned().unwrap_or_default()
                    ),
                ));
                continue;
            }
            println!(
                "  {}; callee turns transcribed in one call: {heard}",
                r.summary()
            );
            out.runs.push(r);
            out.user_turns.push(heard);
        }
    }
    Ok(out)
}

// ------------------------------------------------------------- together

#[derive(Debug, Default)]
pub struct CallsBench {
    /// Per transport (http1, h3): per-run samples (ms).
    pub invite: Vec<(String, Vec<Vec<f64>>)>,
    pub first_audio: FirstAudio,
    pub local: LocalLoad,
    /// Why the local engine's figures are missing or incomplete.
    pub local_error: Option<String>,
    /// Answer -> first AI audio, cloud engine against the fake server, and
    /// that server's fixed delay (ms).
    pub cloud_first_audio: Option<(FirstAudio, u64)>,
    pub cloud_error: Option<String>,
}

/// The key the bench's fake OpenAI Realtime server lets in.
const CLOUD_KEY: &str = "sk-bench-fake-realtime-0000";

/// The fake OpenAI Realtime server's fixed delay before it answers a
/// `response.create` (ms): `VOXLINE_BENCH_FAKE_DELAY_MS`, default 200.
pub fn fake_delay_ms() -> u64 {
    std::env::var("VOXLINE_BENCH_FAKE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Answer -> first AI audio with the `openai_realtime` engine against the
/// protocol-faithful fake server on loopback (each call's engine key and URL
/// in its body), which answers the greeting's `response.create` after
/// [`fake_delay_ms`]: the figure minus that delay is the sidecar's share. A
/// failure is recorded in `out.cloud_error`, not returned.
pub fn cloud_parts(edge: &Edge, bin: &Path, dir: &Path, out: &mut CallsBench) {
    let delay = fake_delay_ms();
    let fake = voxline_e2e::fake_realtime::FakeRealtime::start_with_delay(
        CLOUD_KEY,
        Duration::from_millis(delay),
    );
    let r = (|| -> Result<FirstAudio, String> {
        let tenant = crate::bench_media::bench_tenant(
            edge,
            "cloud-bench",
            "openai_realtime",
            Some("Greet the callee."),
        )?;
        let extra = json!({"engine_api_key": CLOUD_KEY, "engine_base_url": fake.url});
        crate::step(
            "answer -> first AI audio (cloud engine, fake server)",
            || first_audio_with(edge, &tenant, bin, dir, "cloud-first-audio", &extra),
        )
    })();
    match r {
        Ok(fa) => out.cloud_first_audio = Some((fa, delay)),
        Err(e) => {
            println!("  cloud engine figures incomplete: {e}");
            out.cloud_error = Some(e);
        }
    }
}

/// The local-engine parts (first audio, CPU), against a running edge. A
/// failure is recorded in `out.local_error` (and reported), not returned, so
/// the bench's other figures still make it into docs/bench.md.
/// `with_load`: also the CPU per call (long); without, first audio only.
pub fn local_parts(edge: &Edge, bin: &Path, dir: &Path, out: &mut CallsBench, with_load: bool) {
    let r = (|| -> Result<(), String> {
        let tenant = crate::bench_media::bench_tenant(edge, "local-bench", "local", Some(SCRIPT))?;
        out.first_audio = crate::step("answer -> first AI audio (local engine)", || {
            first_audio(edge, &tenant, bin, dir)
        })?;
        if with_load {
            out.local = local_load(edge, &tenant, bin, dir)?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        println!("  local engine figures incomplete: {e}");
        out.local_error = Some(e);
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s[0],
        s[s.len() - 1],
    )
}

/// Both report parts (for `bench-calls`).
pub fn report(c: &CallsBench, echo_load: &[LoadRun]) -> String {
    report_invite(c) + &report_local(c, echo_load) + &report_cloud(c)
}

/// The cloud engine's first-audio section (markdown; empty without figures).
pub fn report_cloud(c: &CallsBench) -> String {
    if let Some(e) = &c.cloud_error {
        return format!(
            "## Answer -> first AI audio (cloud engine)\n\nIncomplete in this run: {}\n\n",
            e.lines().next().unwrap_or_default()
        );
    }
    let Some((fa, delay)) = &c.cloud_first_audio else {
        return String::new();
    };
    if fa.calls.is_empty() {
        return String::new();
    }
    let audio: Vec<f64> = fa.calls.iter().map(|r| r.audio_ms).collect();
    let share: Vec<f64> = audio.iter().map(|a| a - *delay as f64).collect();
    let row = |name: &str, v: &[f64]| {
        let (p50, p99, lo, hi) = stats(v);
        format!("| {name} | {p50:.1} | {p99:.1} | {lo:.1} | {hi:.1} |\n")
    };
    let rows = row("first RTP -> first audible packet", &audio)
        + &row(
            "the same minus the fake server's delay (the sidecar's share)",
            &share,
        );
    format!(
        "## Answer -> first AI audio (cloud engine)\n\n\
         As the local engine's figure above, with the agent's engine `openai_realtime` pointed (per\n\
         call: its key and base URL in the `POST /v1/calls` body) at a protocol-faithful OpenAI Realtime\n\
         server in the bench process on loopback (`voxline_e2e::fake_realtime`: `session.created`,\n\
         `session.updated`, and for each `response.create` a spoken turn of `audio/pcmu` deltas), which\n\
         waits a fixed {delay} ms before it answers the greeting's `response.create`\n\
         (`VOXLINE_BENCH_FAKE_DELAY_MS`). The callee rings {ring} ms before it answers\n\
         (`VOXLINE_BENCH_RING_MS`); the sidecar opens and configures the session meanwhile and asks\n\
         for the greeting at the answer. {n} calls, one at a time, after one warm-up call.\n\n\
         | interval | p50 ms | p99 ms | min ms | max ms |\n|---|---|---|---|---|\n{rows}\n",
        ring = crate::bench_media::ring_ms(),
        n = fa.calls.len(),
    )
}

/// The API -> INVITE section (markdown; empty without figures).
pub fn report_invite(c: &CallsBench) -> String {
    let mut out = String::new();
    if !c.invite.is_empty() {
        let mut rows = String::new();
        for (transport, runs) in &c.invite {
            let p = |q: f64| runs.iter().map(|r| percentile(r, q)).collect::<Vec<_>>();
            let show = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            rows.push_str(&format!(
                "| {transport} | {:.1} | {:.1} | {} | {} |\n",
                median(p(0.5)),
                median(p(0.99)),
                show(&p(0.5)),
                show(&p(0.99))
            ));
        }
        out.push_str(&format!(
            "## API -> INVITE at the trunk\n\n\
             From just before `POST /v1/calls` is sent to the moment the sidecar's SIP INVITE arrives at\n\
             the trunk, both timed in the bench process with one monotonic clock: the bench itself is the\n\
             trunk (a UDP socket on 127.0.0.1 that the release sidecar dials), records when each INVITE\n\
             arrives and answers it `486 Busy Here` at once so the call ends (the sidecar's ACK of the 486\n\
             is awaited before the next call, and the last call of each run is checked to end `busy`).\n\
             So this is the lease path above (edge, Durable Object queue, the held long-poll's answer) plus\n\
             the sidecar taking the offer, binding RTP ports, building the SDP and sending the INVITE.\n\
             {runs} runs of {calls} sequential calls per transport ({warm} warm-up calls per run not counted),\n\
             one sidecar per transport; median over runs of each run's p50/p99, then per-run values.\n\n\
             | transport | p50 ms (median) | p99 ms (median) | p50 per run | p99 per run |\n|---|---|---|---|---|\n{rows}\n\
             ![API -> INVITE, CDF per transport](bench/api_invite.png)\n\n",
            runs = c.invite.first().map(|x| x.1.len()).unwrap_or(0),
            calls = c.invite.first().and_then(|x| x.1.first()).map(|r| r.len()).unwrap_or(0),
            warm = INVITE_WARMUP,
        ));
    }
    out
}

/// The local engine's sections: first AI audio, CPU per call (markdown).
pub fn report_local(c: &CallsBench, echo_load: &[LoadRun]) -> String {
    let mut out = String::new();
    if let Some(e) = &c.local_error {
        out.push_str(&format!(
            "## Local engine figures\n\nIncomplete in this run: {}\n\n",
            e.lines().next().unwrap_or_default()
        ));
    }
    let fa = &c.first_audio;
    if !fa.calls.is_empty() {
        let audio: Vec<f64> = fa.calls.iter().map(|r| r.audio_ms).collect();
        let nonzero: Vec<f64> = fa.calls.iter().map(|r| r.nonzero_ms).collect();
        let ok: Vec<f64> = fa.calls.iter().filter_map(|r| r.ok_to_rtp_ms).collect();
        let row = |name: &str, v: &[f64]| {
            let (p50, p99, lo, hi) = stats(v);
            format!("| {name} | {p50:.1} | {p99:.1} | {lo:.1} | {hi:.1} |\n")
        };
        let mut rows = row("first RTP -> first audible packet (the figure)", &audio);
        rows.push_str(&row("first RTP -> first non-silent packet", &nonzero));
        if ok.len() == fa.calls.len() {
            rows.push_str(&row("sipp sent 200 OK -> first RTP here", &ok));
            let total: Vec<f64> = fa
                .calls
                .iter()
                .filter_map(|r| Some(r.ok_to_rtp_ms? + r.audio_ms))
                .collect();
            rows.push_str(&row("sipp sent 200 OK -> first audible packet", &total));
        }
        let cold = fa
            .cold
            .map(|c| format!("{:.1} ms", c.audio_ms))
            .unwrap_or_else(|| "-".into());
        let lead = fa
            .greeting_lead_ms
            .map(|ms| format!(" The greeting as flite (`{ENGINE_VOICE}`) makes it starts with {ms:.0} ms below the threshold (its lead-in, measured on flite's output here), which the engine cuts."))
            .unwrap_or_default();
        out.push_str(&format!(
            "## Answer -> first AI audio (local engine)\n\n\
             The `local` engine (offline: VAD, pocketsphinx, the script dialog, flite) with the demo's\n\
             appointment script. Each call is real (API, edge, release sidecar, SIP to sipp); sipp answers\n\
             and its 200 OK's SDP points at an RTP peer inside the bench. The sidecar cannot send RTP before\n\
             it has that 200 OK (the callee's address is in it), and it starts sending packets (comfort\n\
             silence, mu-law 0xFF) as soon as media starts, before the engine exists; so t0 = the first RTP\n\
             packet received from the sidecar, and t1 = the first packet of the same stream with a sample\n\
             whose decoded magnitude exceeds {thr} of 32767 (about -42 dBFS; the greeting's first audible\n\
             sound). The callee rings {ring} ms first (`VOXLINE_BENCH_RING_MS`): the sidecar builds the\n\
             engine while it rings (parses the script, gets the script's lines from flite, cached per\n\
             sidecar after the first call and cut to their first audible sample, and loads a pocketsphinx\n\
             recognizer with the call's vocabulary, every call) and queues the greeting when media starts\n\
             after the answer; its first frame goes out at once. \"non-silent\" is the first packet with any\n\
             non-zero sample. The 200 OK rows add the time from sipp sending its 200 OK (its `-trace_msg`\n\
             log, wall clock) to the first RTP packet here (wall clock, same machine). {n} calls, one at a\n\
             time, through one sidecar, after one warm-up call on the fresh sidecar (which also synthesises\n\
             the script: {cold} to audible audio, not counted).{lead}\n\n\
             | interval | p50 ms | p99 ms | min ms | max ms |\n|---|---|---|---|---|\n{rows}\n\
             ![Answer -> first AI audio, CDF](bench/first_audio.png)\n\n",
            thr = AUDIBLE,
            n = fa.calls.len(),
            ring = crate::bench_media::ring_ms(),
        ));
    }
    let l = &c.local;
    if !l.runs.is_empty() {
        let rows = crate::bench_media::load_rows(&l.runs, local_load_ns(), 1);
        let turns = l
            .user_turns
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // The first call also loads what a process loads once (the CMU
        // dictionary, flite's voice): the slope between the extremes is the
        // cost of one more call.
        let ns = local_load_ns();
        let rss_at = |n: usize| {
            let v: Vec<f64> = l
                .runs
                .iter()
                .filter(|r| r.calls == n)
                .map(|r| r.rss_kib)
                .collect();
            (!v.is_empty()).then(|| median(v))
        };
        let marginal = match (ns.first(), ns.last()) {
            (Some(&a), Some(&b)) if b > a => match (rss_at(a), rss_at(b)) {
                (Some(ra), Some(rb)) => format!(
                    "One more call costs about {:.0} KiB: (median RSS with {b} calls - with {a}) / {}; the KiB-per-call column also\n\
                     spreads what the first call loads once per process (the CMU dictionary, flite's voice) over the N calls.",
                    (rb - ra) / (b - a) as f64,
                    b - a
                ),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let failed: String = l
            .failed
            .iter()
            .map(|(n, e)| {
                format!(
                    "\n- a run with {n} calls failed: {}",
                    e.lines().next().unwrap_or_default()
                )
            })
            .collect();
        let failed = if failed.is_empty() {
            failed
        } else {
            format!("\n\nRuns not counted above:{failed}")
        };
        let died = l.runs.iter().filter(|r| r.died).count();
        let died = if died == 0 {
            String::new()
        } else {
            format!(
                "\n\n**The sidecar process died as the calls ended in {died} of {} runs** (after the sampling window,\n\
                 so those runs' figures are kept; see the sidecar logs under `target/e2e/bench/`).",
                l.runs.len()
            )
        };
        let echo_note = if echo_load.is_empty() {
            ""
        } else {
            " The plot puts it next to the echo engine's load above (log scale)."
        };
        out.push_str(&format!(
            "## Local engine: CPU and memory per concurrent call\n\n\
             As the echo load above (fresh release sidecar per run, N calls placed at once, `/proc` CPU and\n\
             RSS of the sidecar process while all N are up, minus its idle figures), but the agent's engine\n\
             is `local` and the callee speaks: sipp answers each call and plays a pcap (PCMU, 20 ms packets,\n\
             built by the bench) from its media port: {first} s of silence while the greeting plays, then a\n\
             flite (`slt` voice) caller saying \"{line}\" ({line_s:.1} s) every {period} s, silence (mu-law\n\
             0xFF) in between. The agent's script is the demo's with no reply ending the call (and the most\n\
             reprompts allowed), so every line gets a spoken reply (the reprompt, or a rule's reply when the\n\
             recognizer, whose vocabulary is the script's words, hears one) and no call ends early: per call\n\
             that is VAD on every frame, a pocketsphinx decode of each utterance, and flite audio played back. Sampling starts\n\
             {settle} s after all N calls are answered (each call loads its own recognizer) and lasts {window} s;\n\
             RSS is read in its middle; sipp hangs up after {hold} s. Callee turns transcribed in one call per\n\
             run (`GET /v1/calls/{{id}}/transcript`, role `user`): {turns}. {runs} runs per N; medians, then\n\
             per-run values; sipp and `wrangler dev` share the same 2 cores.{echo_note}\n\n\
             | calls | CPU % (process) | idle CPU % | CPU % per call | idle RSS KiB | RSS KiB | KiB per call | CPU % per call, per run | KiB per call, per run |\n\
             |---|---|---|---|---|---|---|---|---|\n{rows}\n{marginal}{died}{failed}\n\n\
             ![CPU per call vs concurrent calls, echo and local engines](bench/cpu_per_call.png)\n\n",
            first = CALLEE_FIRST_S,
            line = CALLEE_LINE,
            line_s = l.line_s,
            period = CALLEE_PERIOD_S,
            settle = LOCAL_SETTLE_MS / 1000,
            window = LOCAL_WINDOW_MS / 1000,
            hold = LOCAL_HOLD_MS / 1000,
            runs = local_load_runs(),
        ));
    }
    out
}

/// PNGs for these figures into `dir` (docs/bench).
pub fn plots(c: &CallsBench, echo_load: &[LoadRun], dir: &Path) -> Result<(), String> {
    use crate::bench_plot::{cdf, xy, Points, Samples};
    if !c.invite.is_empty() {
        let series: Vec<Samples> = c
            .invite
            .iter()
            .map(|(transport, runs)| Samples {
                label: format!("{transport}, {} runs", runs.len()),
                values: runs.concat(),
            })
            .collect();
        cdf(
            &dir.join("api_invite.png"),
            "API POST -> SIP INVITE at the trunk",
            "latency (ms)",
            &series,
        )?;
    }
    if !c.first_audio.calls.is_empty() {
        let fa = &c.first_audio.calls;
        let mut series = vec![Samples {
            label: "first RTP -> audible AI audio".into(),
            values: fa.iter().map(|r| r.audio_ms).collect(),
        }];
        if fa.iter().all(|r| r.ok_to_rtp_ms.is_some()) {
            series.push(Samples {
                label: "sipp 200 OK -> audible AI audio".into(),
                values: fa
                    .iter()
                    .filter_map(|r| Some(r.ok_to_rtp_ms? + r.audio_ms))
                    .collect(),
            });
        }
        cdf(
            &dir.join("first_audio.png"),
            "Answer -> first AI audio (local engine)",
            "time (ms)",
            &series,
        )?;
    }
    let points = |name: &str, runs: &[LoadRun], ns: &[usize]| {
        let pts: Vec<(f64, f64)> = runs
            .iter()
            .map(|r| (r.calls as f64, r.cpu_per_call().max(1e-3)))
            .collect();
        let line = ns
            .iter()
            .filter_map(|&n| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.calls == n)
                    .map(|r| r.cpu_per_call().max(1e-3))
                    .collect();
                (!v.is_empty()).then(|| (n as f64, median(v)))
            })
            .collect();
        Points {
            label: name.to_string(),
            points: pts,
            line,
        }
    };
    let mut series = Vec::new();
    if !echo_load.is_empty() {
        series.push(points(
            "echo engine, sipp echoes",
            echo_load,
            crate::bench_media::load_ns(),
        ));
    }
    if !c.local.runs.is_empty() {
        series.push(points(
            "local engine, caller speaks",
            &c.local.runs,
            local_load_ns(),
        ));
    }
    if !series.is_empty() {
        xy(
            &dir.join("cpu_per_call.png"),
            "Sidecar CPU per call vs concurrent calls (log-log)",
            "concurrent calls",
            "CPU % of one core per call",
            &series,
            true,
        )?;
    }
    Ok(())
}

/// `cargo xtask bench-calls`: only these figures, printed (and their PNGs
/// into docs/bench/); no docs/bench.md.
pub fn run_calls_only() -> Result<(), String> {
    let (edge, dir, bin) = crate::bench_media::bench_edge("bench-calls")?;
    let pki = voxline_testkit::make_pki(&dir);
    let caddy = Caddy::start(&edge.base, &pki, &dir);
    let tenant = crate::bench_media::bench_tenant(&edge, "invite-bench", "echo", None)?;
    let mut c = CallsBench::default();
    let only = std::env::var("VOXLINE_BENCH_ONLY").unwrap_or_default();
    let want = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if want("invite") {
        for (name, url, env) in invite_transports(&edge, caddy.port, &pki) {
            let runs = api_invite(&edge, &tenant, &bin, &dir, name, &url, &env)?;
            c.invite.push((name.to_string(), runs));
        }
    }
    drop(caddy);
    if want("local") {
        local_parts(&edge, &bin, &dir, &mut c, true);
    } else if want("local-first-audio") {
        local_parts(&edge, &bin, &dir, &mut c, false);
    }
    if want("cloud") {
        cloud_parts(&edge, &bin, &dir, &mut c);
    }
    drop(edge);
    let plots_dir = crate::root().join("docs/bench");
    std::fs::create_dir_all(&plots_dir).map_err(|e| format!("{}: {e}", plots_dir.display()))?;
    plots(&c, &[], &plots_dir)?;
    print!("{}", report(&c, &[]));
    Ok(())
}

/// A lease transport: name, the sidecar's edge URL, its extra environment.
pub type Transport = (&'static str, String, Vec<(&'static str, String)>);

/// The two lease transports: HTTP/1.1 straight to wrangler, HTTP/3 via caddy.
pub fn invite_transports(edge: &Edge, caddy_port: u16, pki: &Pki) -> Vec<Transport> {
    vec![
        ("http1", edge.base.clone(), Vec::new()),
        (
            "h3",
            format!("https+h3://127.0.0.1:{caddy_port}"),
            vec![("VOXLINE_CA_CERT", pki.ca_pem.display().to_string())],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+14155590001@127.0.0.1:5070 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa;rport\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKb\r\n\
        Max-Forwards: 70\r\n\
        f: <sip:+15550001111@127.0.0.1>;tag=abc\r\n\
        To: <sip:+14155590001@127.0.0.1:5070>\r\n\
        Call-ID: 42@127.0.0.1\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn busy_here_copies_the_dialog_headers_and_tags_to() {
        let r = busy_here(INVITE, "t1").unwrap();
        assert!(r.starts_with("SIP/2.0 486 Busy Here\r\n"));
        let lines: Vec<&str> = r.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa;rport"
        );
        assert_eq!(lines[2], "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKb");
        assert_eq!(lines[3], "f: <sip:+15550001111@127.0.0.1>;tag=abc");
        assert_eq!(lines[4], "To: <sip:+14155590001@127.0.0.1:5070>;tag=t1");
        assert_eq!(lines[5], "Call-ID: 42@127.0.0.1");
        assert_eq!(lines[6], "CSeq: 1 INVITE");
        assert_eq!(lines[7], "Content-Length: 0");
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!r.contains("Max-Forwards") && !r.contains("v=0"));
    }

    #[test]
    fn busy_here_refuses_an_invite_without_call_id() {
        assert!(busy_here(&INVITE.replace("Call-ID: 42@127.0.0.1\r\n", ""), "t").is_err());
    }

    #[test]
    fn sipp_trace_gives_first_200_ok_per_call() {
        let log = "----------------------------------------------- 2026-11-25 17:00:00.100000\n\
            UDP message received [500] bytes :\n\nINVITE sip:x SIP/2.0\nCall-ID: a\nCSeq: 1 INVITE\n\n\
            ----------------------------------------------- 2026-11-25 17:00:00.250000\n\
            UDP message sent (400 bytes):\n\nSIP/2.0 200 OK\nCall-ID: a\nCSeq: 1 INVITE\n\n\
            ----------------------------------------------- 2026-11-25 17:00:00.750000\n\
            UDP message sent (400 bytes):\n\nSIP/2.0 200 OK\nCall-ID: a\nCSeq: 1 INVITE\n\n\
            ----------------------------------------------- 2026-11-25 17:00:04.000000\n\
            UDP message sent (400 bytes):\n\nSIP/2.0 200 OK\nCall-ID: a\nCSeq: 2 BYE\n\n\
            ----------------------------------------------- 2026-11-25 17:00:05.000000\n\
            UDP message sent (400 bytes):\n\nSIP/2.0 200 OK\nCall-ID: b\nCSeq: 1 INVITE\n\n";
        let t = sipp_200_ok_times(log);
        assert_eq!(t.len(), 2);
        assert!((t[1] - t[0] - 4_750.0).abs() < 1e-3, "{t:?}");
    }
}
