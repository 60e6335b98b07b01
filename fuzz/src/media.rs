//! Media targets: RTP/RTCP packets, one call's RTP session, RFC 4733 DTMF,
//! the jitter buffer.

use std::net::SocketAddr;

use arbitrary::{Arbitrary, Unstructured};
use voxline_media_sidecar::media::dtmf::{self, DtmfReceiver, DtmfSender, EventPayload};
use voxline_media_sidecar::media::jitter::{JitterBuffer, JitterConfig, Playout};
use voxline_media_sidecar::media::rtcp::{self, RecvStats, RtcpPacket};
use voxline_media_sidecar::media::rtp::{self, RtpHeader, SeqUnwrapper, TsUnwrapper};
use voxline_media_sidecar::media::session::{RtpSession, SessionConfig};
use voxline_media_sidecar::media::{Codec, PayloadMap, FRAME_8K};

// ---------------------------------------------------------------- rtp_rtcp

/// `rtp_rtcp`: the datagram through both parsers; its bytes also as a
/// sequence-number / timestamp stream for the unwrappers and receiver stats.
pub fn rtp_rtcp(data: &[u8]) {
    let _ = rtp::is_rtcp(data);
    if let Ok(p) = rtp::parse(data) {
        assert!(p.payload.len() + rtp::HEADER_LEN <= data.len());
        let mut out = Vec::new();
        rtp::write(&p.header, p.payload, &mut out);
        let q = rtp::parse(&out).expect("a packet we wrote parses");
        assert_eq!(q.header, p.header);
        assert_eq!(q.payload, p.payload);
    }
    if let Some(pkts) = rtcp::parse_compound(data) {
        for p in &pkts {
            let blocks = match p {
                RtcpPacket::SenderReport { reports, .. }
                | RtcpPacket::ReceiverReport { reports, .. } => reports.as_slice(),
                _ => &[],
            };
            let mut out = Vec::new();
            rtcp::write_report(&mut out, 1, None, blocks);
            if let RtcpPacket::Sdes {
                cname: Some(c),
                ssrc,
            } = p
            {
                rtcp::write_sdes_cname(&mut out, *ssrc, c);
            }
            rtcp::write_bye(&mut out, 1);
            let back = rtcp::parse_compound(&out).expect("a report we wrote parses");
            assert!(!back.is_empty());
            for b in blocks {
                let _ = rtcp::rtt_us(b, rtcp::ntp_from_unix_us(1_700_000_000_000_000));
                let _ = rtcp::rtt_us(b, 0);
            }
        }
    }
    // Sequence numbers and timestamps from the same bytes.
    let mut seq = SeqUnwrapper::default();
    let mut ts = TsUnwrapper::default();
    let mut stats: Option<RecvStats> = None;
    let mut now_us = 0u64;
    for (i, c) in data.chunks_exact(6).enumerate() {
        let s = u16::from_be_bytes([c[0], c[1]]);
        let t = u32::from_be_bytes([c[2], c[3], c[4], c[5]]);
        let prev = seq.unwrap(s.wrapping_sub(1));
        let ext = seq.unwrap(s);
        assert_eq!(
            ext,
            prev + 1,
            "consecutive sequence numbers unwrap one apart"
        );
        let ext_ts = ts.unwrap(t);
        now_us += u64::from(c[5]) * 1_000;
        let st = stats.get_or_insert_with(|| RecvStats::new(s));
        st.update_seq(s);
        st.update_jitter((now_us * 8 / 1_000) as i64, ext_ts);
        let _ = (
            st.extended_max(),
            st.expected(),
            st.cumulative_lost(),
            st.jitter_ts(),
        );
        if i % 8 == 7 {
            let b = st.report_block(42, now_us);
            let mut out = Vec::new();
            rtcp::write_report(&mut out, 7, None, &[b]);
            assert!(rtcp::parse_compound(&out).is_some());
        }
    }
}

// ---------------------------------------------------------------- rtp_session

#[derive(Arbitrary, Debug)]
struct SessionInput {
    codec: u8,
    rtcp_mux: bool,
    symmetric: bool,
    comfort_noise: bool,
    steps: Vec<SessionStep>,
}

#[derive(Arbitrary, Debug)]
enum SessionStep {
    /// An RTP packet built from the previous one.
    Rtp(PacketSpec),
    /// Any bytes on the RTP socket.
    RawRtp {
        source: u8,
        data: Vec<u8>,
    },
    /// Any bytes on the RTCP socket.
    RawRtcp {
        source: u8,
        data: Vec<u8>,
    },
    /// A well-formed RTCP report with fuzzed fields.
    Report {
        source: u8,
        sr: bool,
        blocks: Vec<[u32; 6]>,
        bye: bool,
    },
    /// The 20 ms tick, `late_us` after it was due.
    Tick {
        late_us: u16,
    },
    /// The app queues audio (frames of 160 samples).
    Audio {
        frames: u8,
        level: i16,
    },
    Dtmf {
        digits: String,
        ms: u16,
    },
    ClearAudio,
    Stats,
}

#[derive(Arbitrary, Debug)]
struct PacketSpec {
    source: u8,
    /// 0: audio PT, 1: telephone-event, 2: comfort noise, else as is (mod 128).
    pt: u8,
    marker: bool,
    seq_step: i8,
    ts_step: i16,
    /// Switch to another SSRC.
    other_ssrc: bool,
    /// µs since the previous step.
    dt_us: u16,
    payload: Payload,
}

#[derive(Arbitrary, Debug)]
enum Payload {
    /// Silence of the codec's frame (valid audio).
    Frame,
    Event {
        event: u8,
        end: bool,
        duration: u16,
    },
    Bytes(Vec<u8>),
}

fn source(n: u8, remote: SocketAddr) -> SocketAddr {
    match n % 4 {
        0 | 1 => remote,
        2 => SocketAddr::from(([192, 0, 2, 7], 30_000)),
        _ => SocketAddr::from(([127, 0, 0, 1], 30_002)),
    }
}

/// `rtp_session`: one call's RTP session fed packets, RTCP and ticks.
pub fn rtp_session(data: &[u8]) {
    let Ok(input) = SessionInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let codec = match input.codec % 3 {
        0 => Codec::Pcmu,
        1 => Codec::Pcma,
        _ => Codec::Opus,
    };
    let remote = SocketAddr::from(([127, 0, 0, 1], 30_000));
    let mut payload = PayloadMap::default_for(codec);
    if input.comfort_noise {
        payload.comfort_noise = Some(13);
    }
    let mut cfg = SessionConfig::new(codec, payload, remote);
    cfg.rtcp_mux = input.rtcp_mux;
    cfg.symmetric = input.symmetric;
    cfg.ssrc = 0x1234_5678;
    cfg.initial_seq = 100;
    cfg.initial_ts = 1_000;
    cfg.cname = "fuzz".into();
    cfg.wall_clock_at_zero_us = 1_700_000_000_000_000;
    let Ok(mut s) = RtpSession::new(cfg) else {
        panic!("session for {codec:?} did not start");
    };
    let frame_ts = codec.frame_ts();
    let mut silence = Vec::new();
    {
        let mut enc =
            voxline_media_sidecar::media::codec::AudioEncoder::new(codec, Default::default())
                .expect("encoder");
        enc.encode(&[0i16; FRAME_8K], &mut silence).expect("encode");
    }
    let mut now_us = 0u64;
    let (mut seq, mut ts, mut ssrc) = (5_000u16, 80_000u32, 0xCAFE_0001u32);
    for step in input.steps.iter().take(256) {
        match step {
            SessionStep::Rtp(p) => {
                now_us += u64::from(p.dt_us);
                seq = seq.wrapping_add(p.seq_step as u16);
                ts = ts.wrapping_add((p.ts_step as i32 * frame_ts as i32 / 64) as u32);
                if p.other_ssrc {
                    ssrc = ssrc.wrapping_add(1);
                }
                let pt = match p.pt {
                    0 => payload.audio,
                    1 => 101,
                    2 => 13,
                    n => n & 0x7F,
                };
                let body = match &p.payload {
                    Payload::Frame => silence.clone(),
                    Payload::Event {
                        event,
                        end,
                        duration,
                    } => EventPayload {
                        event: *event,
                        end: *end,
                        volume: 10,
                        duration: *duration,
                    }
                    .to_bytes()
                    .to_vec(),
                    Payload::Bytes(b) => b.clone(),
                };
                let h = RtpHeader {
                    marker: p.marker,
                    payload_type: pt,
                    sequence: seq,
                    timestamp: ts,
                    ssrc,
                };
                let mut pkt = Vec::new();
                rtp::write(&h, &body, &mut pkt);
                s.handle_rtp(now_us, source(p.source, remote), &pkt);
            }
            SessionStep::RawRtp { source: src, data } => {
                s.handle_rtp(now_us, source(*src, remote), data)
            }
            SessionStep::RawRtcp { source: src, data } => {
                s.handle_rtcp(now_us, source(*src, remote), data)
            }
            SessionStep::Report {
                source: src,
                sr,
                blocks,
                bye,
            } => {
                let blocks: Vec<rtcp::ReportBlock> = blocks
                    .iter()
                    .take(4)
                    .map(|b| rtcp::ReportBlock {
                        ssrc: if b[0] & 1 == 0 { 0x1234_5678 } else { b[0] },
                        fraction_lost: b[1] as u8,
                        cumulative_lost: ((b[1] << 8) as i32) >> 8,
                        extended_highest_seq: b[2],
                        jitter: b[3],
                        last_sr: b[4],
                        delay_since_last_sr: b[5],
                    })
                    .collect();
                let info = rtcp::SenderInfo {
                    ntp: rtcp::ntp_from_unix_us(1_700_000_000_000_000 + now_us),
                    rtp_timestamp: ts,
                    packet_count: 10,
                    octet_count: 1_600,
                };
                let mut out = Vec::new();
                rtcp::write_report(&mut out, ssrc, sr.then_some(&info), &blocks);
                if *bye {
                    rtcp::write_bye(&mut out, ssrc);
                }
                s.handle_rtcp(now_us, source(*src, remote), &out);
            }
            SessionStep::Tick { late_us } => {
                now_us += 20_000 + u64::from(*late_us);
                let f = s.tick(now_us);
                assert_eq!(f.sent.len(), FRAME_8K);
                assert_eq!(f.received.len(), FRAME_8K);
            }
            SessionStep::Audio { frames, level } => {
                let n = (*frames as usize % 8) * FRAME_8K;
                s.push_audio(&vec![*level; n]);
            }
            SessionStep::Dtmf { digits, ms } => {
                let _ = s.send_dtmf(digits, u32::from(*ms));
            }
            SessionStep::ClearAudio => s.clear_audio(),
            SessionStep::Stats => {
                let st = s.stats();
                assert!(st.fraction_lost.is_finite() && st.jitter_ms.is_finite());
            }
        }
        while let Some(t) = s.poll_transmit() {
            assert!(!t.data.is_empty());
        }
        while s.poll_event().is_some() {}
    }
    let _ = s.close(now_us);
}

// ---------------------------------------------------------------- dtmf

#[derive(Arbitrary, Debug)]
struct DtmfInput {
    opus_clock: bool,
    rx: Vec<(u16, i8, [u8; 4])>,
    digits: String,
    duration_ms: u32,
}

/// `dtmf`: the receiver fed telephone-event packets with arrival times; the
/// sender run to the end of whatever digits are asked.
pub fn dtmf(data: &[u8]) {
    let Ok(input) = DtmfInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let clock = if input.opus_clock { 48_000 } else { 8_000 };
    let mut rx = DtmfReceiver::new(clock);
    let (mut now_us, mut ts) = (0u64, 1_000u32);
    for (dt_ms, ts_step, payload) in input.rx.iter().take(512) {
        now_us += u64::from(*dt_ms) * 100;
        ts = ts.wrapping_add((*ts_step as i32 * 160) as u32);
        for d in rx.on_packet(now_us, ts, payload) {
            assert!(dtmf::event_code(d.digit).is_some(), "not a digit: {d:?}");
        }
        if let Some(d) = rx.poll(now_us) {
            assert!(dtmf::event_code(d.digit).is_some());
        }
    }
    let _ = rx.poll(u64::MAX);

    let mut tx = DtmfSender::new(clock);
    let digits: String = input.digits.chars().take(16).collect();
    let pushed = tx.push(&digits, input.duration_ms);
    let valid = digits.chars().all(|c| dtmf::event_code(c).is_some());
    assert_eq!(pushed.is_ok(), valid, "push({digits:?}) = {pushed:?}");
    let frame = clock / 50;
    let mut now_ts = 0x7FFF_0000u32;
    let mut ticks = 0;
    let mut current: Option<(u32, u16, u8)> = None; // (start ts, last duration, ends seen)
    while !tx.idle() {
        ticks += 1;
        assert!(ticks < 16 * 200, "sender never goes idle");
        if let Some(p) = tx.tick(now_ts) {
            match current {
                Some((start, last, ends)) if start == p.timestamp && ends < 3 => {
                    assert!(p.payload.duration >= last, "duration went down");
                    assert!(!p.marker);
                    current = Some((start, p.payload.duration, ends + u8::from(p.payload.end)));
                }
                _ => {
                    assert!(p.marker, "first packet of an event without marker");
                    current = Some((p.timestamp, p.payload.duration, u8::from(p.payload.end)));
                }
            }
            assert_eq!(EventPayload::parse(&p.payload.to_bytes()), Some(p.payload));
        }
        now_ts = now_ts.wrapping_add(frame);
    }
}

// ---------------------------------------------------------------- jitter

#[derive(Arbitrary, Debug)]
struct JitterInput {
    opus_clock: bool,
    min_delay_ms: u8,
    max_delay_ms: u16,
    window: u8,
    steps: Vec<JitterStep>,
}

#[derive(Arbitrary, Debug)]
enum JitterStep {
    /// A packet arrives `dt_us` after the previous event, its RTP timestamp
    /// moved by `ts_step` (in 1/8 frames) or set outright.
    Insert {
        dt_us: u16,
        ts_step: i16,
        absolute_ts: Option<u32>,
        dur: Dur,
        payload_len: u8,
    },
    /// The playout clock asks for a 20 ms frame, `dt_us` after the previous event.
    Frame {
        dt_us: u16,
    },
    /// A long pause (ms).
    Pause(u16),
    Stats,
}

#[derive(Arbitrary, Debug)]
enum Dur {
    Frame,
    Half,
    Double,
    Units(u16),
}

/// `jitter`: the adaptive jitter buffer fed packet sequences with arbitrary
/// sequence/timestamp/arrival times, drained the way the session does.
pub fn jitter(data: &[u8]) {
    let Ok(input) = JitterInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let clock = if input.opus_clock { 48_000 } else { 8_000 };
    let mut cfg = JitterConfig::new(clock);
    cfg.min_delay_ms = u32::from(input.min_delay_ms);
    cfg.max_delay_ms = cfg.min_delay_ms + u32::from(input.max_delay_ms % 2_000);
    cfg.window = 1 + input.window as usize;
    let frame = cfg.frame_ts;
    let cap = i64::from(cfg.max_buffer_ms) * i64::from(clock) / 1000;
    let mut jb = JitterBuffer::new(cfg);
    let mut unwrap = TsUnwrapper::default();
    let (mut now_us, mut ts) = (1_000_000u64, 3_000_000u32);
    let mut last_played: Option<i64> = None;
    for step in input.steps.iter().take(2_000) {
        match step {
            JitterStep::Insert {
                dt_us,
                ts_step,
                absolute_ts,
                dur,
                payload_len,
            } => {
                now_us += u64::from(*dt_us);
                ts = match absolute_ts {
                    Some(t) => *t,
                    None => ts.wrapping_add((*ts_step as i32 * frame as i32 / 8) as u32),
                };
                let dur = match dur {
                    Dur::Frame => frame,
                    Dur::Half => frame / 2,
                    Dur::Double => frame * 2,
                    Dur::Units(u) => u32::from(*u).max(1),
                };
                jb.insert(
                    now_us,
                    unwrap.unwrap(ts),
                    dur,
                    vec![0; *payload_len as usize],
                );
            }
            JitterStep::Frame { dt_us } => {
                now_us += u64::from(*dt_us);
                let mut covered = 0u32;
                let mut guard = 0;
                while covered < frame && guard < 16 {
                    guard += 1;
                    match jb.pop(now_us) {
                        Playout::Packet { ts, dur, .. } => {
                            assert!(dur > 0);
                            if let Some(p) = last_played {
                                // Within one anchor the playout never goes back.
                                assert!(ts >= p || jb.stats().resets > 0, "played {ts} after {p}");
                            }
                            last_played = Some(ts);
                            covered += dur;
                        }
                        Playout::Lost { dur, .. } => {
                            assert!(dur > 0, "lost a frame of no duration");
                            covered += dur;
                        }
                        Playout::Wait { dur } => {
                            assert!(dur > 0);
                            covered += dur;
                        }
                    }
                }
            }
            JitterStep::Pause(ms) => now_us += u64::from(*ms) * 1_000,
            JitterStep::Stats => {
                let s = jb.stats();
                assert!(s.depth_ms.is_finite() && s.target_ms.is_finite());
            }
        }
        let s = jb.stats();
        assert!(
            (s.queued_packets as i64) <= cap + 1,
            "{} packets queued over a {cap}-unit cap",
            s.queued_packets
        );
    }
}
