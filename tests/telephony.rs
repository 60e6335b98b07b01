//! End-to-end: a real call. API -> edge -> real sidecar -> SIP over UDP to a
//! real sipp acting as the trunk/callee -> RTP both ways -> events back to the
//! edge. The agent uses the `echo` engine, so what the callee says comes back
//! to it unchanged: the sidecar's stereo recording proves the media path
//! (right = heard from the callee, left = sent to the callee).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use voxline_e2e::*;
use voxline_testkit::*;

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        let mut out = self.edge.diagnostics();
        for name in [
            "sidecar-tel-1.log",
            "sipp.log",
            "sipp-errors.log",
            "sidecar-bs-pcmu.log",
            "baresip-pcmu.log",
            "sidecar-bs-opus.log",
            "baresip-opus.log",
        ] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            out.push_str(&format!(
                "\n--- {name} ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }
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

/// `seconds` of [`test_signal`] as a mu-law file for sipp to stream.
fn signal_file(w: &World, seconds: f64) -> PathBuf {
    let stream = w.dir.join(format!("signal-{seconds}s.ulaw"));
    let ulaw: Vec<u8> = test_signal(seconds)
        .iter()
        .map(|&s| mulaw_encode(s))
        .collect();
    std::fs::write(&stream, ulaw).unwrap();
    stream
}

fn start_sipp(dir: &Path, port: u16, stream: &Path, stream_ms: u64) -> ChildGuard {
    let template =
        std::fs::read_to_string(repo_root().join("tests/sipp/uas_stream_bye.xml")).unwrap();
    let scenario = dir.join("uas_stream_bye.xml");
    std::fs::write(
        &scenario,
        template
            .replace("STREAM_FILE", &stream.display().to_string())
            .replace("STREAM_MS", &stream_ms.to_string()),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sipp.log")).unwrap();
    let media_port = free_tcp_udp_port();
    let child = Command::new(SIPP.require())
        .args([
            "-sf",
            scenario.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .args([
            "-trace_err",
            "-error_file",
            dir.join("sipp-errors.log").to_str().unwrap(),
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sipp (Debian package sip-tester, installed by `cargo xtask bootstrap`)");
    ChildGuard(child)
}

fn start_sidecar(w: &World, sipp_port: u16) -> ChildGuard {
    start_sidecar_with(w, "tel-1", sipp_port, "")
}

fn start_sidecar_with(w: &World, id: &str, trunk_port: u16, extra: &str) -> ChildGuard {
    start_sip_sidecar(&w.edge, &w.dir, id, trunk_port, extra).unwrap()
}

fn wait_status(w: &World, id: &str, want: &[&str], within: Duration) -> Value {
    w.edge.wait_call_status(&w.tenant.key, id, want, within)
}

fn a_real_call_carries_audio_both_ways_through_sip_and_rtp(w: &World) {
    // sipp plays 3 s of the test signal as PCMU, then hangs up.
    let signal = test_signal(3.0);
    let stream = w.dir.join("signal.ulaw");
    std::fs::write(
        &stream,
        signal.iter().map(|&s| mulaw_encode(s)).collect::<Vec<u8>>(),
    )
    .unwrap();
    let sipp_port = free_tcp_udp_port();
    let mut sipp = start_sipp(&w.dir, sipp_port, &stream, 3_500);
    let _sidecar = start_sidecar(w, sipp_port);
    let r = w
        .edge
        .call(
            "POST",
            "/v1/calls",
            &w.tenant.key,
            Some(&json!({"phone": "+14155550300", "record": true})),
        )
        .expect(201);
    let id = r.json["id"].as_str().unwrap().to_string();
    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "busy", "no_answer", "cancelled"],
        Duration::from_secs(40),
    );
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("callee_hangup")),
        "{call}"
    );
    assert!(
        call["answered_at"].is_string() && call["ringing_at"].is_string(),
        "{call}"
    );
    let status = sipp.0.wait().expect("sipp exits");
    assert!(status.success(), "sipp failed ({status}); see sipp logs");

    // The recording, as uploaded to R2 and served by the API: right = what
    // the sidecar heard, left = what it sent back.
    let wav = w
        .edge
        .wait_recording(&w.tenant.key, &id, Duration::from_secs(20));
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a WAV recording");
    assert_eq!(
        (reader.spec().channels, reader.spec().sample_rate),
        (2, 8000)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();

    // What sipp sent, as the sidecar decodes it, must appear in `right`.
    let decoded: Vec<i16> = signal
        .iter()
        .map(|&s| mulaw_decode(mulaw_encode(s)))
        .collect();
    let (lag, corr) = find_in(&right, &decoded[..2000]);
    assert!(
        corr > 0.95,
        "the callee's audio is not in the recording (best correlation {corr:.3} at {lag})"
    );
    // And the echo (left) is the same audio, frame for frame, a little later.
    // The echo's delay may step by whole frames while packets arrive
    // unevenly (the send queue grows by a frame), and each step is reported:
    // every frame must still be sample-identical at its own delay.
    let active = &right[lag..(lag + 16_000).min(right.len())];
    let (echo_lag, echo_corr) = find_in(&left, &active[..2000]);
    assert!(echo_lag >= lag, "echo before the original?");
    let echo = frame_identity(active, &left, echo_lag);
    assert!(
        echo.identical as f64 >= 0.98 * active.len() as f64 && echo.steps.len() <= 3,
        "echo not sample-identical: {}/{} equal (corr {echo_corr:.3}, delay {} ms, delay steps at {:?})",
        echo.identical,
        active.len(),
        (echo_lag - lag) / 8,
        echo.steps
    );
    println!(
        "  echo path delay {} ms, {}/{} samples identical, delay steps (at ms, by frames) {:?}",
        (echo_lag - lag) / 8,
        echo.identical,
        active.len(),
        echo.steps
    );
}

/// How much of `original` reappears sample for sample in `echo`, starting at
/// `start` in `echo`, frame (20 ms) by frame, where the delay may step by a
/// whole number of frames (at most 5) between frames.
struct FrameIdentity {
    identical: usize,
    /// (offset in `original` in ms, step in frames) for each change of delay.
    steps: Vec<(usize, i64)>,
}

fn frame_identity(original: &[i16], echo: &[i16], start: usize) -> FrameIdentity {
    const FRAME: usize = 160;
    let equal_at = |at: i64, chunk: &[i16]| -> usize {
        usize::try_from(at)
            .ok()
            .and_then(|at| echo.get(at..at + chunk.len()))
            .map_or(0, |e| e.iter().zip(chunk).filter(|(a, b)| a == b).count())
    };
    let mut delay = start as i64;
    let mut out = FrameIdentity {
        identical: 0,
        steps: Vec::new(),
    };
    for (i, chunk) in original.chunks(FRAME).enumerate() {
        let at = (i * FRAME) as i64;
        let here = equal_at(delay + at, chunk);
        if here < chunk.len() {
            let step = (-5i64..=5)
                .filter(|&k| k != 0)
                .find(|&k| equal_at(delay + k * FRAME as i64 + at, chunk) == chunk.len());
            if let Some(k) = step {
                delay += k * FRAME as i64;
                out.steps.push((i * FRAME / 8, k));
                out.identical += chunk.len();
                continue;
            }
        }
        out.identical += here;
    }
    out
}

// ---- a real SIP phone as the callee: baresip ----

/// What baresip plays: flite's synthetic speech when flite is installed, else
/// the chirp, at 8 kHz (16-bit mono), with 1.5 s of silence at the end so
/// the echo of the last words is heard before baresip hangs up (it hangs up
/// when the file ends).
fn callee_speech(dir: &Path) -> Vec<i16> {
    let text = "Hello, this is a test call from voxline. The quick brown fox jumps over the lazy dog. One, two, three.";
    let mut pcm = flite_8k(dir, "slt", text).unwrap_or_else(|e| {
        println!("  ({e}: baresip plays the chirp)");
        test_signal(4.0)
    });
    pcm.extend(std::iter::repeat_n(0, 12_000));
    pcm
}

/// A WAV file's first channel as f64 at 8 kHz.
fn read_wav_8k(path: &Path) -> Vec<f64> {
    let (rate, first) = read_wav(path).unwrap_or_else(|e| panic!("{e}"));
    let mono: Vec<f64> = first.into_iter().map(f64::from).collect();
    resample_to_8k(&mono, rate)
}

/// How well `heard` holds `sent`, delayed by at most `max_lag_ms`: `sent` is
/// cut into 0.5 s segments, each with speech is aligned on its own best lag
/// (jitter buffers on either side may insert or drop a 20 ms frame, which
/// shifts everything after it; a slip inside a segment costs a little), and
/// the correlation is taken over all of them together: sum of products / sqrt(product of the energies).
/// Returns (correlation, smallest and largest lag in ms).
fn echo_correlation(sent: &[f64], heard: &[f64], max_lag_ms: usize) -> (f64, usize, usize) {
    const SEG: usize = 4000;
    let loud = sent.iter().map(|v| v * v).sum::<f64>() / sent.len().max(1) as f64 * 0.05;
    let (mut dot, mut ea, mut eb) = (0.0, 0.0, 0.0);
    let (mut lo, mut hi) = (usize::MAX, 0);
    for start in (0..sent.len().saturating_sub(SEG)).step_by(SEG) {
        let seg = &sent[start..start + SEG];
        let e: f64 = seg.iter().map(|v| v * v).sum();
        if e / (SEG as f64) < loud {
            continue; // a pause: nothing to align on
        }
        // The lag from the segment's loudest 1000 samples (fast in a debug build)...
        const PROBE: usize = 1000;
        let p0 = (0..=SEG - PROBE)
            .step_by(250)
            .max_by(|&x, &y| {
                let en = |o: usize| seg[o..o + PROBE].iter().map(|v| v * v).sum::<f64>();
                en(x).total_cmp(&en(y))
            })
            .unwrap_or(0);
        let probe = &seg[p0..p0 + PROBE];
        let mut best = (0, -2.0);
        for lag in 0..max_lag_ms * 8 {
            let Some(h) = heard.get(start + p0 + lag..start + p0 + lag + PROBE) else {
                break;
            };
            let d: f64 = probe.iter().zip(h).map(|(x, y)| x * y).sum();
            let eh: f64 = h.iter().map(|y| y * y).sum();
            let c = d / eh.sqrt().max(1.0);
            if c > best.1 {
                best = (lag, c);
            }
        }
        // ...then the whole segment at that lag.
        let Some(h) = heard.get(start + best.0..start + best.0 + SEG) else {
            break;
        };
        dot += seg.iter().zip(h).map(|(x, y)| x * y).sum::<f64>();
        ea += e;
        eb += h.iter().map(|y| y * y).sum::<f64>();
        lo = lo.min(best.0 / 8);
        hi = hi.max(best.0 / 8);
    }
    (dot / (ea.sqrt() * eb.sqrt()).max(1.0), lo, hi)
}

fn find_dump(dir: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dump-") && n.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no dump-*{suffix} in {}", dir.display()))
}

/// One call to baresip with the echo engine: what baresip plays must come
/// back to it, and the sidecar's recording must hold it on both channels.
fn baresip_echo_call(
    w: &World,
    name: &str,
    phone: &str,
    baresip_codecs: &str,
    sidecar_extra: &str,
    want_codec: &str,
    min_corr: f64,
) {
    let speech = callee_speech(&w.dir);
    let wav = w.dir.join(format!("callee-{name}.wav"));
    write_wav(&wav, 8000, &speech).unwrap();
    let secs = speech.len() as u32 / 8000 + 15;
    let port = free_sip_port();
    // baresip refuses calls to other users ("UA not found"): its account is the dialled number.
    let mut baresip = start_baresip(&w.dir, name, phone, port, &wav, baresip_codecs, secs).unwrap();
    let _sidecar = start_sidecar_with(w, &format!("bs-{name}"), port, sidecar_extra);
    let r = w
        .edge
        .call(
            "POST",
            "/v1/calls",
            &w.tenant.key,
            Some(&json!({"phone": phone, "record": true})),
        )
        .expect(201);
    let id = r.json["id"].as_str().unwrap().to_string();
    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "busy", "no_answer", "cancelled"],
        Duration::from_secs(secs as u64 + 20),
    );
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("callee_hangup")),
        "{call}"
    );
    // baresip writes its dumps when the call ends; stop it before reading them.
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(baresip.0.id() as i32, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(5);
    while baresip.0.try_wait().ok().flatten().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let blog =
        std::fs::read_to_string(w.dir.join(format!("baresip-{name}.log"))).unwrap_or_default();
    let slog =
        std::fs::read_to_string(w.dir.join(format!("sidecar-bs-{name}.log"))).unwrap_or_default();
    let negotiated = slog
        .lines()
        .find(|l| l.contains("media negotiated"))
        .unwrap_or("")
        .to_string();
    assert!(
        negotiated.contains(&format!("codec=\"{want_codec}\"")),
        "the sidecar did not negotiate {want_codec}: {negotiated}"
    );
    for side in ["encoder", "decoder"] {
        assert!(
            blog.contains(&format!("Set audio {side}: {want_codec} ")),
            "baresip's {side} is not {want_codec}; its log:\n{blog}"
        );
    }

    // baresip: what it played vs what it received back.
    let dumps = w.dir.join(format!("baresip-{name}/dumps"));
    let played: Vec<f64> = speech.iter().map(|&s| s as f64).collect();
    let received = read_wav_8k(&find_dump(&dumps, "-dec.wav"));
    let (corr, lo, hi) = echo_correlation(&played, &received, 1_000);
    println!(
        "  {name}: baresip played -> received back: correlation {corr:.3}, round trip {lo}-{hi} ms"
    );
    assert!(
        corr > min_corr,
        "{name}: baresip's played audio did not come back (correlation {corr:.3})"
    );

    // The sidecar's recording: right = heard from baresip, left = echoed to it.
    let rec = w
        .edge
        .wait_recording(&w.tenant.key, &id, Duration::from_secs(20));
    let mut reader = hound::WavReader::new(std::io::Cursor::new(rec)).expect("a WAV recording");
    let samples: Vec<f64> = reader.samples::<i16>().map(|s| s.unwrap() as f64).collect();
    let left: Vec<f64> = samples.iter().step_by(2).copied().collect();
    let right: Vec<f64> = samples.iter().skip(1).step_by(2).copied().collect();
    let (rcorr, lo, hi) = echo_correlation(&played, &right, 1_000);
    println!("  {name}: sidecar heard baresip: correlation {rcorr:.3} at {lo}-{hi} ms");
    assert!(
        rcorr > min_corr,
        "{name}: the sidecar's right channel does not hold baresip's audio ({rcorr:.3})"
    );
    // What the sidecar sent is what it heard (the same PCM: ~1.0 on a quiet
    // machine; CPU stalls make the echo slip by whole frames inside a segment).
    let (ecorr, lo, hi) = echo_correlation(&right, &left, 1_000);
    println!("  {name}: sidecar heard -> sent: correlation {ecorr:.3}, engine delay {lo}-{hi} ms");
    assert!(
        ecorr > min_corr,
        "{name}: the sidecar's left channel is not the echo of the right ({ecorr:.3})"
    );
}

fn a_real_phone_baresip_gets_its_audio_back_over_pcmu(w: &World) {
    baresip_echo_call(w, "pcmu", "+14155550301", "PCMU", "", "PCMU", 0.9);
}

fn a_real_phone_baresip_gets_its_audio_back_over_opus(w: &World) {
    // baresip answers with the offer's order, so the sidecar must prefer Opus.
    baresip_echo_call(
        w,
        "opus",
        "+14155550302",
        "opus/48000/2,PCMU",
        "codecs = [\"opus\", \"pcmu\"]",
        "opus",
        0.8,
    );
}

/// An agent on the OpenAI Realtime engine without a key of its own: the
/// call brings the key and the endpoint (the fake server on 127.0.0.1).
fn realtime_agent(w: &World) -> String {
    let body = json!({"name": "cloud", "default_engine": "openai_realtime", "model": "gpt-realtime-test", "system_prompt": "Greet the caller."});
    let a = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/agents", w.tenant.id),
            Some(&body),
        )
        .expect(201)
        .json;
    assert_eq!(a["engine_api_key_set"], false);
    a["id"].as_str().unwrap().to_string()
}

fn ms_of(ts: &Value) -> i64 {
    let t = time::OffsetDateTime::parse(
        ts.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Every file under `dir` (KV and Durable Object storage, logs), read whole.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(p);
            }
        }
    }
    hits
}

/// Issue 18, end to end: the cloud engine (the fake OpenAI Realtime server)
/// calls the agent's customer tool mid-call; the sidecar asks the edge, the
/// edge POSTs to the tool's URL (a server here) signed with the agent's
/// tools secret, and the answer reaches the engine as `function_call_output`
/// and the transcript as a `tool` turn. After the call the engine is asked,
/// in the same session, for the post-call analysis, whose answer is on the
/// call (`source: engine`) and in `call.completed`'s data.
fn a_cloud_engine_calls_a_customer_tool_and_analyses_the_call(w: &World) {
    const KEY: &str = "sk-e2e-TOOLS-KEY-0077";
    let reply = r#"{"summary": "The order A-17 has shipped.", "sentiment": "positive", "success": true, "data": {"order_status": "shipped"}}"#;
    let fake = fake_realtime::FakeRealtime::start_with(
        KEY,
        Duration::ZERO,
        fake_realtime::Behaviour {
            tool_call: Some(("lookup_order".into(), r#"{"order":"A-17"}"#.into())),
            text_reply: Some(reply.into()),
        },
    );
    let tool = ToolServer::start(r#"{"status":"shipped"}"#);
    let body = json!({"name": "orders", "default_engine": "openai_realtime", "model": "gpt-realtime-test",
        "system_prompt": "Tell the caller where their order is.",
        "tools": [{"name": "lookup_order", "description": "Finds an order by its number.",
                   "parameters": {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
                   "url": tool.url, "timeout_ms": 5000}],
        "analysis": {"success_criteria": "The caller learns where the order is.",
                     "data_schema": {"type": "object", "properties": {"order_status": {"type": "string"}}}}});
    let agent = w
        .edge
        .admin(
            "POST",
            &format!("/admin/tenants/{}/agents", w.tenant.id),
            Some(&body),
        )
        .expect(201)
        .json;
    let secret = agent["tools_secret"]
        .as_str()
        .expect("the tools secret, shown once")
        .to_string();
    let stream = signal_file(w, 5.0);
    let port = free_tcp_udp_port();
    let _sipp = start_sipp(&w.dir, port, &stream, 6_000);
    let _sidecar = start_sidecar_with(w, "tel-tools", port, "");
    let call = json!({"phone": "+14155550320", "agent_id": agent["id"], "engine_api_key": KEY,
        "engine_base_url": fake.url, "metadata": {"crm": "o-17"}});
    let id = w
        .edge
        .call("POST", "/v1/calls", &w.tenant.key, Some(&call))
        .expect(201)
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The edge's request to the tool: signed, with the model's arguments.
    let got = tool
        .next(Duration::from_secs(30))
        .expect("the tool was called");
    assert!(got.signed_by(&secret), "bad signature: {}", got.head);
    let sent = got.body;
    let request: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(
        (
            request["type"].as_str(),
            request["call_id"].as_str(),
            request["name"].as_str(),
            &request["arguments"],
            &request["metadata"]
        ),
        (
            Some("tool.call"),
            Some(id.as_str()),
            Some("lookup_order"),
            &json!({"order": "A-17"}),
            &json!({"crm": "o-17"})
        ),
        "{request}"
    );

    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "busy", "no_answer", "cancelled"],
        Duration::from_secs(40),
    );
    assert_eq!(call["status"], "completed", "{call}");
    // The tool's answer reached the engine, and the engine was asked for
    // its analysis with the agent's criteria and schema.
    let conns = fake.connections();
    let c = conns.first().expect("a session");
    assert_eq!(
        c.function_outputs,
        [(
            "call_fc_1".to_string(),
            r#"{"status":"shipped"}"#.to_string()
        )]
    );
    assert!(
        c.text_requests.len() == 1
            && c.text_requests[0].contains("The caller learns where the order is.")
            && c.text_requests[0].contains("order_status"),
        "{:?}",
        c.text_requests
    );
    let t = w.edge.transcript(&w.tenant.key, &id);
    let turns = t["turns"].as_array().unwrap();
    assert!(
        turns.iter().any(|turn| turn["role"] == "tool"
            && turn["text"]
                .as_str()
                .is_some_and(|x| x.contains("lookup_order") && x.contains("shipped"))),
        "no tool turn: {t}"
    );
    assert_eq!(
        call["analysis"],
        json!({"summary": "The order A-17 has shipped.", "sentiment": "positive", "success": true,
               "data": {"order_status": "shipped"}, "source": "engine"}),
        "{call}"
    );
}

fn a_call_brings_its_own_engine_key_and_endpoint(w: &World) {
    const KEY: &str = "sk-e2e-CALL-KEY-0042";
    let fake = fake_realtime::FakeRealtime::start(KEY);
    let agent = realtime_agent(w);
    let stream = signal_file(w, 2.0);
    let port = free_tcp_udp_port();
    let _sipp = start_sipp(&w.dir, port, &stream, 5_000);
    let _sidecar = start_sidecar_with(w, "tel-ai", port, "");
    let body = json!({"phone": "+14155550310", "agent_id": agent, "engine_api_key": KEY, "engine_base_url": fake.url, "record": true});
    let created = w
        .edge
        .call("POST", "/v1/calls", &w.tenant.key, Some(&body))
        .expect(201);
    assert!(
        !created.text.contains(KEY),
        "the key came back: {}",
        created.text
    );
    assert_eq!(
        (
            created.json["engine_api_key_set"].as_bool(),
            created.json["engine_base_url"].as_str()
        ),
        (Some(true), Some(fake.url.as_str()))
    );
    let id = created.json["id"].as_str().unwrap().to_string();
    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "busy", "no_answer", "cancelled"],
        Duration::from_secs(40),
    );
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("callee_hangup")),
        "{call}"
    );

    // The sidecar reached the call's endpoint with the call's key and held a session.
    let conns = fake.connections();
    assert_eq!(conns.len(), 1, "{conns:?}");
    let c = &conns[0];
    assert_eq!(
        (c.refused, c.authorization.as_deref()),
        (false, Some(format!("Bearer {KEY}").as_str()))
    );
    assert!(
        c.uri.starts_with("/v1/realtime?model=gpt-realtime-test"),
        "{}",
        c.uri
    );
    for kind in [
        "session.update",
        "response.create",
        "input_audio_buffer.append",
    ] {
        assert!(
            c.received.iter().any(|k| k == kind),
            "the engine never sent {kind}: {:?}",
            c.received.iter().take(5).collect::<Vec<_>>()
        );
    }
    let t = w.edge.transcript(&w.tenant.key, &id);
    assert_eq!(
        (
            t["turns"][0]["role"].as_str(),
            t["turns"][0]["text"].as_str()
        ),
        (Some("agent"), Some(fake_realtime::FAKE_AI_LINE)),
        "{t}"
    );
    // Its tone reached the callee: the recording's left channel (what was sent).
    let wav = w
        .edge
        .wait_recording(&w.tenant.key, &id, Duration::from_secs(20));
    let samples: Vec<i16> = hound::WavReader::new(std::io::Cursor::new(wav))
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let loud = samples
        .iter()
        .step_by(2)
        .filter(|s| s.unsigned_abs() > 4_000)
        .count();
    assert!(
        loud > 4_000,
        "the engine's audio is not on the left channel ({loud} loud samples)"
    );

    // The key is nowhere at rest: not in KV or Durable Object storage, not in a log.
    drop(_sidecar);
    let hits = files_containing(&w.dir, KEY.as_bytes());
    assert!(hits.is_empty(), "the engine key was written to {hits:?}");
}

fn a_wrong_engine_key_ends_the_call_at_once(w: &World) {
    let fake = fake_realtime::FakeRealtime::start("sk-e2e-RIGHT-KEY");
    let agent = realtime_agent(w);
    let stream = signal_file(w, 8.0);
    let port = free_tcp_udp_port();
    let _sipp = start_sipp(&w.dir, port, &stream, 9_000);
    let _sidecar = start_sidecar_with(w, "tel-badkey", port, "");
    let body = json!({"phone": "+14155550311", "agent_id": agent, "engine_api_key": "sk-e2e-WRONG-KEY", "engine_base_url": fake.url});
    let id = w
        .edge
        .call("POST", "/v1/calls", &w.tenant.key, Some(&body))
        .expect(201)
        .json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "busy", "no_answer", "cancelled"],
        Duration::from_secs(30),
    );
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("failed"), Some("engine_error")),
        "{call}"
    );
    assert!(
        fake.connections().iter().all(|c| c.refused),
        "{:?}",
        fake.connections()
    );
    // The callee is not left in dead air: hung up within seconds of
    // answering, or (issue 17: the engine starts while the phone rings) the
    // call is cancelled before anyone answers.
    if call["answered_at"].is_string() {
        let dead_air = ms_of(&call["ended_at"]) - ms_of(&call["answered_at"]);
        println!("  answered -> hung up after the engine refused the key: {dead_air} ms");
        assert!(dead_air < 5_000, "{dead_air} ms of dead air");
    } else {
        println!("  the engine refused the key while the phone rang: cancelled unanswered");
    }
}

fn a_silent_call_ends_after_its_silence_timeout(w: &World) {
    // The callee answers and says nothing (mu-law silence); the echo engine
    // has nothing to say back.
    let stream = w.dir.join("silence-20s.ulaw");
    std::fs::write(&stream, vec![0xFFu8; 8000 * 20]).unwrap();
    let port = free_tcp_udp_port();
    let _sipp = start_sipp(&w.dir, port, &stream, 25_000);
    let _sidecar = start_sidecar_with(w, "tel-quiet", port, "");
    let body = json!({"phone": "+14155550312", "silence_timeout_seconds": 10});
    let created = w
        .edge
        .call("POST", "/v1/calls", &w.tenant.key, Some(&body))
        .expect(201)
        .json;
    assert_eq!(created["silence_timeout_seconds"], 10);
    let id = created["id"].as_str().unwrap().to_string();
    let call = wait_status(
        w,
        &id,
        &["completed", "failed", "busy", "no_answer", "cancelled"],
        Duration::from_secs(40),
    );
    assert_eq!(
        (call["status"].as_str(), call["ended_reason"].as_str()),
        (Some("completed"), Some("silence_timeout")),
        "{call}"
    );
    let quiet = ms_of(&call["ended_at"]) - ms_of(&call["answered_at"]);
    println!("  answered -> hung up for silence after {quiet} ms");
    assert!(
        (9_500..20_000).contains(&quiet),
        "hung up after {quiet} ms, not at the 10 s timeout"
    );
}

fn main() -> std::process::ExitCode {
    run_suite(
        "telephony",
        || {
            require_sidecar_bin()?;
            let opts = EdgeOptions::fresh("telephony");
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("telephony");
            edge.admin(
                "PATCH",
                &format!("/admin/tenants/{}/agents/{}", tenant.id, tenant.agent_id),
                Some(&json!({"default_engine": "echo"})),
            )
            .expect(200);
            Ok(World { edge, tenant, dir })
        },
        &[
            (
                "a_real_call_carries_audio_both_ways_through_sip_and_rtp",
                a_real_call_carries_audio_both_ways_through_sip_and_rtp,
            ),
            (
                "a_real_phone_baresip_gets_its_audio_back_over_pcmu",
                a_real_phone_baresip_gets_its_audio_back_over_pcmu,
            ),
            (
                "a_real_phone_baresip_gets_its_audio_back_over_opus",
                a_real_phone_baresip_gets_its_audio_back_over_opus,
            ),
            (
                "a_call_brings_its_own_engine_key_and_endpoint",
                a_call_brings_its_own_engine_key_and_endpoint,
            ),
            (
                "a_cloud_engine_calls_a_customer_tool_and_analyses_the_call",
                a_cloud_engine_calls_a_customer_tool_and_analyses_the_call,
            ),
            (
                "a_wrong_engine_key_ends_the_call_at_once",
                a_wrong_engine_key_ends_the_call_at_once,
            ),
            (
                "a_silent_call_ends_after_its_silence_timeout",
                a_silent_call_ends_after_its_silence_timeout,
            ),
        ],
    )
}
