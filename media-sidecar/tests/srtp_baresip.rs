//! SDES-SRTP against a real phone: baresip (Debian `baresip-core`, its
//! `srtp` module) as the callee, dialled by the sidecar's own SIP stack
//! ([`SipUdp`]) and media ([`MediaSession`]) on loopback.
//!
//! Each call plays a speech-like signal both ways at once: ours through the
//! media session, baresip's from a WAV file (it hangs up when the file ends).
//! What baresip decoded (its `sndfile` dump) must correlate with what we sent,
//! and what we heard with what it played: audio really flows both ways
//! through SRTP (a wrong key or a broken transform decodes to noise). The
//! sidecar's SRTP counters must show authenticated packets and no failures.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use voxline_media_sidecar::media::srtp::{SrtpPolicy, SrtpSuite};
use voxline_media_sidecar::media::{Codec, MediaConfig, MediaSession, PayloadMap, PortAllocator};
use voxline_media_sidecar::sip::call::{DialogEnd, DialogEvent};
use voxline_media_sidecar::sip::sdp::{Negotiated, OfferConfig};
use voxline_media_sidecar::sip::udp::{CallHandle, CallSpec, Event, SipUdp, Trunk};
use voxline_testkit::{
    free_sip_port, ncc, read_wav, start_baresip_with, temp_dir, write_wav, BaresipExtras,
};

/// A speech-like test signal (voiced syllables over a gliding pitch, pauses):
/// not periodic, so a correlation finds one lag only. `seed` varies it.
fn speechlike(seconds: f64, seed: u32) -> Vec<i16> {
    let n = (seconds * 8000.0) as usize;
    let mut phase = 0.0f64;
    let s = f64::from(seed);
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let syl = (t * (2.5 + 0.3 * s)).fract();
            let env = if syl < 0.75 {
                (std::f64::consts::PI * syl / 0.75).sin()
            } else {
                0.0
            };
            let f0 = 120.0 + 15.0 * s + 40.0 * (t * 1.3).sin() + 25.0 * (t * (5.0 + s)).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / 8000.0;
            let formant = 800.0 + 400.0 * (t * (1.7 + 0.2 * s)).sin();
            let mut v = 0.0;
            for k in 2..=25 {
                let fk = f0 * k as f64;
                if fk > 3400.0 {
                    break;
                }
                v += (-((fk - formant) / 500.0).powi(2)).exp() * (phase * k as f64).sin();
            }
            (env * 7000.0 * v).clamp(-30000.0, 30000.0) as i16
        })
        .collect()
}

/// How well `heard` holds `sent` (delayed by up to a second, or ahead by up
/// to half a second: what arrived before our media started is not heard): `sent` is cut
/// into 0.5 s segments, each loud one aligned on its own best lag (either
/// side's jitter buffer may shift by a frame); the median of their
/// correlations, and how many segments counted.
fn correlation(sent: &[i16], heard: &[i16]) -> (f64, usize) {
    const SEG: usize = 4000;
    let energy = |x: &[i16]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
    let loud = energy(sent) / sent.len().max(1) as f64 * 0.1;
    let mut scores = vec![];
    for start in (0..sent.len().saturating_sub(SEG)).step_by(SEG) {
        let seg = &sent[start..start + SEG];
        if energy(seg) / (SEG as f64) < loud {
            continue;
        }
        // Coarse then fine, to stay quick in a debug build.
        let tail = heard.get(start.saturating_sub(4000)..).unwrap_or_default();
        let coarse = (0..12_000)
            .step_by(4)
            .map(|l| (l, ncc(seg, tail, l)))
            .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        let fine = (coarse.0.saturating_sub(4)..coarse.0 + 4)
            .map(|l| ncc(seg, tail, l))
            .fold(f64::MIN, f64::max);
        scores.push(fine);
    }
    // The median: the first segment may have started before our media did.
    scores.sort_by(f64::total_cmp);
    (
        scores.get(scores.len() / 2).copied().unwrap_or(0.0),
        scores.len(),
    )
}

fn find_dump(dir: &Path, suffix: &str) -> std::path::PathBuf {
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

/// One call's outcome.
struct CallResult {
    negotiated: Option<Negotiated>,
    end: DialogEnd,
    /// What we heard (8 kHz).
    heard: Vec<i16>,
    stats: Option<voxline_media_sidecar::media::MediaStats>,
}

async fn next_event(h: &mut CallHandle, until: Instant) -> Option<Event> {
    tokio::time::timeout_at(tokio::time::Instant::from_std(until), h.next_event())
        .await
        .expect("call event in time")
}

/// Dials baresip with `policy` (and `suites` when given), sends `ours` once
/// answered, and records what comes back until baresip hangs up.
async fn call_baresip(
    port: u16,
    user: &str,
    policy: SrtpPolicy,
    suites: Option<Vec<SrtpSuite>>,
    ours: &[i16],
) -> CallResult {
    let sip = SipUdp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let ports = PortAllocator::new([127, 0, 0, 1].into(), 46_000..=46_999);
    let bound = MediaSession::bind(&ports).unwrap();
    let mut media_cfg = OfferConfig::new(bound.local_rtp());
    media_cfg.codecs = vec![Codec::Pcmu];
    if let Some(s) = suites {
        media_cfg.srtp_suites = s;
    }
    let mut trunk = Trunk::new(format!("127.0.0.1:{port}").parse().unwrap());
    trunk.srtp = policy;
    let spec = CallSpec::new(vec![trunk], user, "+15550001111", media_cfg);
    let mut h = sip.start_call(spec).await.unwrap();
    let until = Instant::now() + Duration::from_secs(40);
    let mut bound = Some(bound);
    let mut negotiated = None;
    loop {
        match next_event(&mut h, until).await {
            Some(Event::Call(DialogEvent::Answered(n))) => {
                negotiated = Some(n);
                break;
            }
            Some(Event::Call(DialogEvent::Ended(end))) => {
                return CallResult {
                    negotiated,
                    end,
                    heard: vec![],
                    stats: None,
                };
            }
            Some(_) => {}
            None => panic!("the call handle closed before an answer or an end"),
        }
    }
    let n = negotiated.clone().unwrap();
    let mut cfg = MediaConfig::new(
        n.codec,
        PayloadMap {
            audio: n.pt,
            telephone_event: n.dtmf_pt,
            comfort_noise: None,
        },
        n.remote_rtp,
    );
    cfg.srtp = n.srtp.as_ref().map(|s| s.keys.clone());
    let mut media = bound.take().unwrap().start(cfg).unwrap();
    let sender = media.sender();
    let signal: Arc<Vec<i16>> = Arc::new(ours.to_vec());
    let feeder = tokio::spawn(async move {
        for frame in signal.chunks(160) {
            if sender.send(frame.to_vec()).await.is_err() {
                break;
            }
        }
    });
    let mut heard = vec![];
    let end = loop {
        tokio::select! {
            frame = media.recv() => match frame {
                Some(f) => heard.extend(f),
                None => panic!("media stopped"),
            },
            ev = next_event(&mut h, until) => match ev {
                Some(Event::Call(DialogEvent::Ended(end))) => break end,
                Some(_) => {}
                None => panic!("the call handle closed before the end"),
            },
        }
    };
    feeder.abort();
    let stats = media.stop().await;
    CallResult {
        negotiated,
        end,
        heard,
        stats: Some(stats),
    }
}

/// Starts baresip (`account_params` on its account), places the call and
/// checks audio both ways; returns the negotiated suite.
async fn srtp_call_both_ways(
    name: &str,
    account_params: &str,
    policy: SrtpPolicy,
    suites: Option<Vec<SrtpSuite>>,
) -> Option<SrtpSuite> {
    let dir = temp_dir(&format!("srtp-baresip-{name}"));
    let theirs = {
        let mut s = speechlike(3.5, 1);
        s.extend(std::iter::repeat_n(0, 8000));
        s
    };
    let wav = dir.join("callee.wav");
    write_wav(&wav, 8000, &theirs).unwrap();
    let ours = speechlike(3.0, 2);
    let port = free_sip_port();
    let user = "+14155550123";
    let extras = BaresipExtras {
        account_params: account_params.to_string(),
        modules: vec!["srtp.so".into()],
        ..BaresipExtras::default()
    };
    let mut baresip =
        start_baresip_with(&dir, name, user, port, &wav, "PCMU", 20, &extras).unwrap();
    let r = call_baresip(port, user, policy, suites, &ours).await;
    // baresip writes its dumps when the call ends; stop it before reading them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    baresip.terminate(Duration::from_secs(5));
    let log = std::fs::read_to_string(dir.join(format!("baresip-{name}.log"))).unwrap_or_default();
    let n = r
        .negotiated
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: not answered: {:?}\nbaresip:\n{log}", r.end));
    let stats = r.stats.expect("media ran");
    println!(
        "  {name}: srtp {:?}, stats {:?}",
        n.srtp.as_ref().map(|s| s.keys.suite),
        stats.srtp
    );

    // Both directions carry the signals.
    let dumps = dir.join(format!("baresip-{name}/dumps"));
    let (_, decoded) = read_wav(&find_dump(&dumps, "-dec.wav")).unwrap();
    let (to_callee, segs) = correlation(&ours, &decoded);
    println!(
        "  {name}: we sent -> baresip decoded: correlation {to_callee:.3} over {segs} segments"
    );
    assert!(
        segs >= 4 && to_callee > 0.9,
        "{name}: our audio did not reach baresip ({to_callee:.3}, {segs} segments)\n{log}"
    );
    let (from_callee, segs) = correlation(&theirs, &r.heard);
    println!(
        "  {name}: baresip played -> we heard: correlation {from_callee:.3} over {segs} segments"
    );
    assert!(
        segs >= 4 && from_callee > 0.9,
        "{name}: baresip's audio did not reach us ({from_callee:.3}, {segs} segments)\n{log}"
    );
    if let Some(srtp) = &n.srtp {
        assert!(
            stats.srtp.protected > 100 && stats.srtp.unprotected > 100,
            "{name}: {stats:?}"
        );
        assert_eq!(stats.srtp.replayed, 0, "{name}: {stats:?}");
        // Refused, rightly: baresip's last RTCP (a BYE, reason "Adjo") goes
        // out in the clear once its SRTP is torn down; and its libre tags
        // SRTCP with 32 bits in the _32 suite too (RFC 3711/4568 keep 80 for
        // SRTCP), so its RTCP (one in 5 s) is refused in that suite: as
        // malformed or, when its length happens to fit an 80-bit trailer, as
        // failing authentication.
        if srtp.keys.suite == SrtpSuite::AesCm128HmacSha1_32 {
            assert!(
                stats.srtp.malformed + stats.srtp.auth_failed <= 4,
                "{name}: {stats:?}"
            );
        } else {
            assert_eq!(stats.srtp.auth_failed, 0, "{name}: {stats:?}");
            assert!(stats.srtp.malformed <= 1, "{name}: {stats:?}");
        }
    } else {
        assert_eq!(stats.srtp, Default::default());
    }
    let _ = std::fs::remove_dir_all(&dir);
    n.srtp.as_ref().map(|s| s.keys.suite)
}

/// One baresip at a time (their RTP port ranges follow the SIP port).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_srtp_with_baresip_carries_audio_both_ways() {
    let _g = serial().await;
    let suite =
        srtp_call_both_ways("mand", ";mediaenc=srtp-mand", SrtpPolicy::Mandatory, None).await;
    assert_eq!(suite, Some(SrtpSuite::AesCm128HmacSha1_80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_srtp_with_baresip_over_the_32_bit_tag_and_gcm() {
    let _g = serial().await;
    let suite = srtp_call_both_ways(
        "sha1-32",
        ";mediaenc=srtp-mand",
        SrtpPolicy::Mandatory,
        Some(vec![SrtpSuite::AesCm128HmacSha1_32]),
    )
    .await;
    assert_eq!(suite, Some(SrtpSuite::AesCm128HmacSha1_32));
    let suite = srtp_call_both_ways(
        "gcm",
        ";mediaenc=srtp-mand",
        SrtpPolicy::Mandatory,
        Some(vec![SrtpSuite::AeadAes128Gcm]),
    )
    .await;
    assert_eq!(suite, Some(SrtpSuite::AeadAes128Gcm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_srtp_is_taken_by_a_best_effort_phone_and_falls_back_to_plain_rtp() {
    let _g = serial().await;
    // baresip's `mediaenc=srtp` answers our RTP/AVP + a=crypto with a crypto line.
    let suite = srtp_call_both_ways("opt", ";mediaenc=srtp", SrtpPolicy::Optional, None).await;
    assert_eq!(suite, Some(SrtpSuite::AesCm128HmacSha1_80));
    // A phone without SRTP answers without crypto: plain RTP, audio both ways.
    let suite = srtp_call_both_ways("opt-plain", "", SrtpPolicy::Optional, None).await;
    assert_eq!(suite, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_srtp_fails_the_call_when_the_phone_has_no_srtp() {
    let _g = serial().await;
    let dir = temp_dir("srtp-baresip-plain");
    let wav = dir.join("callee.wav");
    write_wav(&wav, 8000, &speechlike(2.0, 3)).unwrap();
    let port = free_sip_port();
    let user = "+14155550124";
    let _baresip = start_baresip_with(
        &dir,
        "plain",
        user,
        port,
        &wav,
        "PCMU",
        15,
        &BaresipExtras::default(),
    )
    .unwrap();
    let r = call_baresip(port, user, SrtpPolicy::Mandatory, None, &speechlike(1.0, 2)).await;
    let log = std::fs::read_to_string(dir.join("baresip-plain.log")).unwrap_or_default();
    assert_eq!(
        r.end.status,
        voxline_shared::CallStatus::Failed,
        "{:?}\n{log}",
        r.end
    );
    println!("  plain phone: {:?}", r.end);
    assert!(
        r.end.detail == "sdp_no_acceptable_crypto" || r.end.sip_code == Some(488),
        "{:?}\n{log}",
        r.end
    );
    assert!(r.heard.is_empty());
}
