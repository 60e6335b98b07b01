//! End-to-end: a real call. API -> edge -> real sidecar -> SIP over UDP to a
//! real sipp acting as the trunk/callee -> RTP both ways -> events back to the
//! edge. The agent uses the `echo` engine, so what the callee says comes back
//! to it unchanged: the sidecar's stereo recording proves the media path
//! (right = heard from the callee, left = sent to the callee).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use voxline_e2e::*;

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        let mut out = self.edge.diagnostics();
        for name in ["sidecar-tel.log", "sipp.log", "sipp-errors.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            out.push_str(&format!("\n--- {name} ---\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        out
    }
}

/// G.711 mu-law encoding (ITU-T reference), for the stream sipp plays.
fn mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = sample as i32;
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = (s + BIAS).min(32_635 + BIAS);
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// A speech-band test signal: a slow chirp with an amplitude envelope, so any
/// misalignment or corruption shows.
fn test_signal(seconds: f64) -> Vec<i16> {
    let n = (seconds * 8000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let f = 300.0 + 1200.0 * (t / seconds);
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 1.3 * t).sin().abs();
            (9000.0 * env * (2.0 * std::f64::consts::PI * f * t).sin()) as i16
        })
        .collect()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sipp(dir: &Path, port: u16, stream: &Path, stream_ms: u64) -> Proc {
    let template = std::fs::read_to_string(repo_root().join("tests/sipp/uas_stream_bye.xml")).unwrap();
    let scenario = dir.join("uas_stream_bye.xml");
    std::fs::write(
        &scenario,
        template.replace("STREAM_FILE", &stream.display().to_string()).replace("STREAM_MS", &stream_ms.to_string()),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sipp.log")).unwrap();
    let media_port = free_tcp_udp_port();
    let child = Command::new("sipp")
        .args(["-sf", scenario.to_str().unwrap(), "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .args(["-trace_err", "-error_file", dir.join("sipp-errors.log").to_str().unwrap()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sipp (Debian package sip-tester, installed by `cargo xtask bootstrap`)");
    Proc(child)
}

fn start_sidecar(w: &World, sipp_port: u16) -> Proc {
    let cred = w.edge.admin("POST", "/admin/sidecars", Some(&json!({"sidecar_id": "tel-1", "region": "local"}))).expect(201);
    let rtp = free_tcp_udp_port();
    let config = format!(
        "edge_url = \"{}\"\nsidecar_id = \"tel-1\"\nregion = \"local\"\ncapacity = 2\nlease_wait_ms = 1000\n\n\
         [telephony]\nbind_ip = \"127.0.0.1\"\nrtp_port_min = {}\nrtp_port_max = {}\nring_timeout_secs = 20\nrecordings_dir = \"{}\"\n\n\
         [[telephony.trunks]]\nname = \"sipp\"\nhost = \"127.0.0.1\"\nport = {sipp_port}\nfrom_number = \"+15550001111\"\n",
        w.edge.base,
        rtp & !1,
        (rtp & !1) + 9,
        w.dir.join("recordings").display(),
    );
    std::fs::create_dir_all(w.dir.join("recordings")).unwrap();
    let path = w.dir.join("sidecar.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(w.dir.join("sidecar-tel.log")).unwrap();
    let child = Command::new(sidecar_bin())
        .args(["--config", path.to_str().unwrap()])
        .env("VOXLINE_SIDECAR_SECRET", cred.json["secret"].as_str().unwrap())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the sidecar");
    Proc(child)
}

fn wait_status(w: &World, id: &str, want: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let call = w.edge.call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None).expect(200).json;
        if want.iter().any(|s| call["status"] == *s) {
            return call;
        }
        assert!(Instant::now() < deadline, "call {id} never reached {want:?}: {call}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn a_real_call_carries_audio_both_ways_through_sip_and_rtp(w: &World) {
    // sipp plays 3 s of the test signal as PCMU, then hangs up.
    let signal = test_signal(3.0);
    let stream = w.dir.join("signal.ulaw");
    std::fs::write(&stream, signal.iter().map(|&s| mulaw(s)).collect::<Vec<u8>>()).unwrap();
    let sipp_port = free_tcp_udp_port();
    let mut sipp = start_sipp(&w.dir, sipp_port, &stream, 3_500);
    let _sidecar = start_sidecar(w, sipp_port);
    let r = w.edge.call("POST", "/v1/calls", &w.tenant.key, Some(&json!({"phone": "+14155550300", "record": true}))).expect(201);
    let id = r.json["id"].as_str().unwrap().to_string();
    let call = wait_status(w, &id, &["completed", "failed", "busy", "no_answer", "cancelled"], Duration::from_secs(40));
    assert_eq!((call["status"].as_str(), call["ended_reason"].as_str()), (Some("completed"), Some("callee_hangup")), "{call}");
    assert!(call["answered_at"].is_string() && call["ringing_at"].is_string(), "{call}");
    let status = sipp.0.wait().expect("sipp exits");
    assert!(status.success(), "sipp failed ({status}); see sipp logs");

    // The recording: right = what the sidecar heard, left = what it sent back.
    let wav = w.dir.join("recordings").join(format!("{id}-1.wav"));
    let mut reader = hound::WavReader::open(&wav).unwrap_or_else(|e| panic!("{}: {e}", wav.display()));
    assert_eq!((reader.spec().channels, reader.spec().sample_rate), (2, 8000));
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();

    // What sipp sent, as the sidecar decodes it, must appear in `right`.
    let decoded: Vec<i16> = signal.iter().map(|&s| decode_mulaw(mulaw(s))).collect();
    let (lag, corr) = best_alignment(&right, &decoded[..2000]);
    assert!(corr > 0.95, "the callee's audio is not in the recording (best correlation {corr:.3} at {lag})");
    // And the echo (left) is the same audio, frame for frame, a little later.
    let active = &right[lag..(lag + 16_000).min(right.len())];
    let (echo_lag, echo_corr) = best_alignment(&left, &active[..2000]);
    assert!(echo_lag >= lag, "echo before the original?");
    let echoed = &left[echo_lag..echo_lag + active.len().min(left.len() - echo_lag)];
    let identical = echoed.iter().zip(active).filter(|(a, b)| a == b).count();
    assert!(
        identical as f64 >= 0.98 * echoed.len() as f64,
        "echo not sample-identical: {identical}/{} equal (corr {echo_corr:.3}, delay {} ms)",
        echoed.len(),
        (echo_lag - lag) / 8
    );
    println!("  echo path delay {} ms, {identical}/{} samples identical", (echo_lag - lag) / 8, echoed.len());
}

fn decode_mulaw(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0F;
    let magnitude = (((mantissa as i32) << 3) + 0x84) << exponent;
    let s = magnitude - 0x84;
    (if sign != 0 { -s } else { s }) as i16
}

/// The offset of `needle` in `hay` with the highest normalised correlation.
fn best_alignment(hay: &[i16], needle: &[i16]) -> (usize, f64) {
    let norm = |x: &[i16]| x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
    let nn = norm(needle).max(1.0);
    let mut best = (0, -1.0);
    if hay.len() < needle.len() {
        return best;
    }
    for off in (0..=hay.len() - needle.len()).step_by(1) {
        let w = &hay[off..off + needle.len()];
        let dot: f64 = w.iter().zip(needle).map(|(&a, &b)| a as f64 * b as f64).sum();
        let c = dot / (norm(w).max(1.0) * nn);
        if c > best.1 {
            best = (off, c);
        }
    }
    best
}

fn main() -> std::process::ExitCode {
    run_suite(
        "telephony",
        || {
            if !sidecar_bin().exists() {
                return Err(format!("{} is missing: `cargo build -p voxline-media-sidecar`", sidecar_bin().display()));
            }
            let opts = EdgeOptions::fresh("telephony");
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("telephony");
            edge.admin("PATCH", &format!("/admin/tenants/{}/agents/{}", tenant.id, tenant.agent_id), Some(&json!({"default_engine": "echo"})))
                .expect(200);
            Ok(World { edge, tenant, dir })
        },
        &[("a_real_call_carries_audio_both_ways_through_sip_and_rtp", a_real_call_carries_audio_both_ways_through_sip_and_rtp)],
    )
}
