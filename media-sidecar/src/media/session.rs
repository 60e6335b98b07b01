//! One call's RTP/RTCP session, sans-IO.
//!
//! The driver:
//! - feeds every datagram of the RTP socket to [`RtpSession::handle_rtp`] and
//!   of the RTCP socket to [`RtpSession::handle_rtcp`] (with `rtcp_mux` both
//!   arrive on the RTP socket and are told apart by the packet type);
//! - calls [`RtpSession::handle_timeout`] at [`RtpSession::poll_timeout`]:
//!   the session sends the packets whose time has come, one per 20 ms slot
//!   (app audio, else comfort silence, or a DTMF event packet; the frames
//!   sent and heard per slot for the recorder come from
//!   [`RtpSession::poll_slot`]), and the jitter buffer gives up a missing
//!   packet when its wait runs out;
//! - after each input, takes what was heard from
//!   [`RtpSession::poll_heard`] (160-sample frames, released by the jitter
//!   buffer as soon as they are in order: no playout clock, issue 17), sends
//!   what [`RtpSession::poll_transmit`] yields and reads
//!   [`RtpSession::poll_event`].
//!
//! ([`RtpSession::tick`] sends the next slot at once, whatever the time: for
//! tests and fuzzing.)
//!
//! Rules:
//! - Outgoing: our SSRC, sequence and timestamp start random; slot k is due
//!   at `start + k * 20 ms` and carries timestamp `initial + k * frame`
//!   whatever is sent (audio, silence, DTMF), so the timestamp tracks the wall
//!   clock. Pacing (issue 17): a slot goes out at its time at the latest; app
//!   audio may take it earlier, as soon as a whole frame is queued, when the
//!   slot before carried no audio (the first frame of a burst leaves at once:
//!   the pacing clock re-phases), else as a token bucket of one and a half
//!   frames at the frame rate allows (GCRA: a frame is due 20 ms after the
//!   previous one was due or left, whichever is later, and may leave up to
//!   30 ms early), and never more than one frame before its slot's time: a
//!   receiver would read earlier packets as jitter (measured: a peer of ours
//!   concealed and dropped the silence after each talkspurt sent 30-40 ms
//!   early). So a burst's first frame leaves at once, the rest on the next
//!   slots' early edges, and a producer in real time (an echo, a streaming
//!   engine) is never held for its jitter; after a concealed loss (nothing,
//!   then the concealment and the next frame together) it may stay up to a
//!   frame behind until it pauses. A talkspurt runs up to one frame ahead of
//!   the timestamp grid and never behind it, and never waits a whole slot;
//!   when it ends, silence goes back on the grid (no drift accumulates).
//!   DTMF and hold keep to the grid. The marker bit is set on the first packet and on
//!   the first audio packet of each talkspurt (after comfort silence or a
//!   DTMF event), never otherwise.
//! - Comfort silence: when the app has nothing queued we still send encoded
//!   digital silence every 20 ms (keeps NAT bindings and the remote's latching
//!   alive, and every trunk accepts it). We do not send CN (RFC 3389): some
//!   trunks/SBCs mishandle silence suppression and the bandwidth saved on a
//!   single call is irrelevant. Received CN packets are accepted and rendered
//!   as silence (the jitter buffer's concealment fades out).
//! - Symmetric RTP: until the first valid packet (RTP v2, negotiated payload
//!   type) arrives we send to the SDP address; then we latch onto its source
//!   address and send there; packets from any other source are dropped
//!   (counted). A packet from the SDP address latches at once; another source
//!   (the peer's NAT) must first send [`LATCH_PROBATION`] packets in sequence
//!   (same SSRC, consecutive sequence numbers), so one stray packet cannot
//!   hijack the call. The SDP address always wins: a packet from it takes the
//!   stream back from whatever source was latched. RTCP latches separately:
//!   the SDP's RTCP address (or the guess for the latched RTP source) at once,
//!   any other source only after [`RTCP_LATCH_PROBATION`] compound packets
//!   from it that report as the remote stream's SSRC; until then its RTCP is
//!   dropped. With `rtcp_mux`, RTCP is accepted only from the RTP peer. A
//!   re-INVITE moving the media calls [`RtpSession::set_remote`], which unlatches.
//!   (The driver discards what reached the sockets before the answer, so
//!   nothing queued while ringing takes part in latching.)
//! - Remote SSRC: the first one is taken; a different SSRC from the latched
//!   source must send two sequential packets (RFC 3550 A.1 probation) before
//!   we switch to it (fresh statistics, jitter buffer and decoder; event
//!   [`SessionEvent::RemoteSsrcChanged`]); stray packets of another SSRC are dropped.
//! - RTCP: a compound SR (we always send) + report block about the remote
//!   source + SDES CNAME every `rtcp_interval_ms` (randomised 0.5x-1.5x, RFC
//!   3550 6.2), BYE at [`RtpSession::close`].

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::codec::{AudioDecoder, AudioEncoder, CodecError, OpusSettings, FRAME_8K};
use super::dtmf::{DtmfDigit, DtmfError, DtmfReceiver, DtmfSender};
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use super::rtcp::{self, RecvStats, RtcpPacket, SenderInfo};
use super::rtp::{self, RtpHeader, TsUnwrapper};
use super::Codec;

/// Packets in sequence a source other than the SDP address must send before
/// we latch onto it.
pub const LATCH_PROBATION: u32 = 3;

/// RTCP compound packets, reporting as the remote RTP stream's SSRC, that a
/// source other than the expected RTCP address must send before we latch
/// RTCP onto it. RTCP has no sequence numbers; the SSRC (seen only on the
/// path) and the repetition stand in for them.
pub const RTCP_LATCH_PROBATION: u32 = 2;

/// Payload types negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadMap {
    /// The audio codec's payload type (0 PCMU, 8 PCMA, dynamic for Opus).
    pub audio: u8,
    /// `telephone-event` at the codec's clock rate, if negotiated.
    pub telephone_event: Option<u8>,
    /// `CN/8000` (RFC 3389), if negotiated (receive only).
    pub comfort_noise: Option<u8>,
}

impl PayloadMap {
    /// The usual mapping: PCMU 0 / PCMA 8 / Opus 111, telephone-event 101, no CN.
    pub fn default_for(codec: Codec) -> Self {
        PayloadMap {
            audio: codec.static_payload_type().unwrap_or(111),
            telephone_event: Some(101),
            comfort_noise: None,
        }
    }

    fn knows(&self, pt: u8) -> bool {
        pt == self.audio || Some(pt) == self.telephone_event || Some(pt) == self.comfort_noise
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub codec: Codec,
    pub payload: PayloadMap,
    /// The remote RTP address from SDP.
    pub remote_rtp: SocketAddr,
    /// The remote RTCP address (SDP `a=rtcp`), else RTP port + 1 (or the RTP address with mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// RTCP on the RTP port (RFC 5761, `a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// Latch onto the source of the first valid packet (symmetric RTP).
    pub symmetric: bool,
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_ts: u32,
    pub cname: String,
    pub jitter: JitterConfig,
    pub opus: OpusSettings,
    pub rtcp_interval_ms: u32,
    /// Unix time in µs at which the driver's `now_us` was 0 (for RTCP NTP timestamps).
    pub wall_clock_at_zero_us: u64,
}

impl SessionConfig {
    /// Defaults with random SSRC/sequence/timestamp.
    pub fn new(codec: Codec, payload: PayloadMap, remote_rtp: SocketAddr) -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        SessionConfig {
            codec,
            payload,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: false,
            symmetric: true,
            ssrc: crate::random::u32(),
            initial_seq: crate::random::u32() as u16,
            initial_ts: crate::random::u32(),
            cname: format!("voxline-{:08x}", crate::random::u32()),
            jitter: JitterConfig::new(codec.clock_rate()),
            opus: OpusSettings::default(),
            rtcp_interval_ms: 5_000,
            wall_clock_at_zero_us: wall,
        }
    }

    fn rtcp_dest(&self, rtp: SocketAddr) -> SocketAddr {
        if self.rtcp_mux {
            rtp
        } else {
            SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Rtp,
    Rtcp,
}

/// A datagram to send on the RTP or RTCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub channel: Channel,
    pub dest: SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// RTP now goes to this address (the source of the first valid packet).
    Latched {
        rtp: SocketAddr,
    },
    RtcpLatched {
        rtcp: SocketAddr,
    },
    /// First packet of the remote stream.
    RemoteSsrc {
        ssrc: u32,
    },
    RemoteSsrcChanged {
        old: u32,
        new: u32,
    },
    Dtmf(DtmfDigit),
    /// The keys queued by [`RtpSession::send_dtmf`] have all been sent
    /// (each with its end packets).
    DtmfSent,
    /// The remote sent RTCP BYE.
    Bye,
}

/// What one tick produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickFrame {
    /// The 20 ms (160 samples, 8 kHz) we sent (silence when idle or during DTMF).
    pub sent: Vec<i16>,
    /// 20 ms of what was heard, for the recording: the stream of
    /// [`RtpSession::poll_heard`] held [`RECORD_DELAY_FRAMES`] frames behind,
    /// so the recording's channels stay aligned while packets arrive unevenly.
    /// `sent` is held as many frames behind, so both channels keep real time
    /// against each other (an echo never leads what it echoes).
    pub received: Vec<i16>,
}

/// Frames the recording's received channel lags what was heard, so an
/// unevenly arriving stream still fills each tick's slot.
pub const RECORD_DELAY_FRAMES: usize = 2;

/// Heard frames held for [`RtpSession::poll_heard`]; the driver takes them
/// after every input, so more means nobody is reading (the oldest go).
const HEARD_QUEUE_FRAMES: usize = 50;

/// The received channel of the recording: heard audio taken one frame per
/// tick, [`RECORD_DELAY_FRAMES`] behind. Audio that misses its tick leaves
/// silence in its slot and is skipped when it comes, so the channel never
/// shifts against the sent one; a stream faster than our clock is trimmed.
#[derive(Debug, Default)]
struct RecordTap {
    fifo: VecDeque<i16>,
    started: bool,
    /// Samples owed to slots already written as silence.
    skip: usize,
}

impl RecordTap {
    fn push(&mut self, pcm: &[i16]) {
        let owed = self.skip.min(pcm.len());
        self.skip -= owed;
        self.fifo.extend(&pcm[owed..]);
        let cap = (RECORD_DELAY_FRAMES + 3) * FRAME_8K;
        if self.fifo.len() > cap {
            let excess = self.fifo.len() - cap;
            self.fifo.drain(..excess);
        }
    }

    fn take(&mut self) -> Vec<i16> {
        let mut out = vec![0i16; FRAME_8K];
        if !self.started {
            if self.fifo.len() < RECORD_DELAY_FRAMES * FRAME_8K {
                return out;
            }
            self.started = true;
        }
        let n = self.fifo.len().min(FRAME_8K);
        for (o, s) in out.iter_mut().zip(self.fifo.drain(..n)) {
            *o = s;
        }
        self.skip = (self.skip + FRAME_8K - n).min((RECORD_DELAY_FRAMES + 1) * FRAME_8K);
        out
    }
}

/// Counters and estimates of a session.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SessionStats {
    pub packets_sent: u64,
    pub octets_sent: u64,
    /// Audio frames sent that came from the app (the rest were comfort silence or DTMF).
    pub voice_frames_sent: u64,
    pub dtmf_packets_sent: u64,
    pub packets_received: u64,
    /// RFC 3550 cumulative lost of the current remote source.
    pub cumulative_lost: i64,
    /// Expected packets of the current remote source.
    pub expected: u64,
    /// Fraction lost in our last report (0..1).
    pub fraction_lost: f64,
    /// RFC 3550 interarrival jitter of the remote stream, ms.
    pub jitter_ms: f64,
    pub jitter_buffer: JitterStats,
    /// From the remote's reports about us.
    pub remote_fraction_lost: Option<f64>,
    pub remote_cumulative_lost: Option<i32>,
    pub remote_jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    pub dropped_foreign_source: u64,
    pub dropped_invalid: u64,
    pub dropped_unknown_pt: u64,
    pub dropped_other_ssrc: u64,
    pub ssrc_changes: u64,
    pub dtmf_received: u64,
    pub comfort_noise_received: u64,
    pub codec_errors: u64,
    /// Heard frames dropped because the driver did not take them.
    pub heard_dropped: u64,
    /// SRTP's counters (all zero for plain RTP); the driver fills them in,
    /// since it applies the transform ([`super::srtp`]).
    pub srtp: super::srtp::SrtpStats,
}

struct Remote {
    ssrc: u32,
    stats: RecvStats,
    ts: TsUnwrapper,
}

pub struct RtpSession {
    cfg: SessionConfig,
    enc: AudioEncoder,
    dec: AudioDecoder,
    jb: JitterBuffer,
    dtmf_tx: DtmfSender,
    dtmf_rx: DtmfReceiver,
    // sending
    seq: u16,
    ts: u32,
    first_packet: bool,
    talkspurt_next: bool,
    send_buf: VecDeque<i16>,
    /// The negotiated direction lets us send (sendrecv/sendonly); off while
    /// the callee holds the call (we are recvonly or inactive).
    sending: bool,
    last_tick: Option<(u64, u32)>,
    /// The send clock: when slot 0 was due (set by the first timeout).
    slot_zero_us: Option<u64>,
    /// The next slot to send.
    next_slot: u64,
    /// When the last slot went out.
    last_sent_us: Option<u64>,
    /// Pacing of app audio (GCRA, a token bucket of one and a half frames):
    /// the time the next frame is due at the frame rate; it may leave up to
    /// 30 ms before. `None` when the last slot carried no app audio.
    pace_due_us: Option<u64>,
    /// Slots sent by timeouts, for the recorder.
    slots: VecDeque<TickFrame>,
    // addressing
    dest_rtp: SocketAddr,
    dest_rtcp: SocketAddr,
    latched: bool,
    /// (source, ssrc, last seq, packets in sequence) of a source not yet latched onto.
    latch_candidate: Option<(SocketAddr, u32, u16, u32)>,
    rtcp_latched: bool,
    /// (source, packets) of an RTCP source not yet latched onto.
    rtcp_candidate: Option<(SocketAddr, u32)>,
    // receiving
    remote: Option<Remote>,
    candidate: Option<(u32, u16)>,
    /// Decoded audio not yet a whole frame.
    pcm_fifo: Vec<i16>,
    /// Whole frames heard, for [`RtpSession::poll_heard`].
    heard: VecDeque<Vec<i16>>,
    record_tap: RecordTap,
    /// The last [`RECORD_DELAY_FRAMES`] frames sent, for the recording.
    sent_tap: VecDeque<Vec<i16>>,
    // rtcp
    next_rtcp_us: Option<u64>,
    rng: u32,
    // io
    out: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    stats: SessionStats,
    scratch: Vec<u8>,
}

impl RtpSession {
    pub fn new(cfg: SessionConfig) -> Result<Self, CodecError> {
        let clock = cfg.codec.clock_rate();
        let dest_rtcp = cfg
            .remote_rtcp
            .unwrap_or_else(|| cfg.rtcp_dest(cfg.remote_rtp));
        Ok(RtpSession {
            enc: AudioEncoder::new(cfg.codec, cfg.opus)?,
            dec: AudioDecoder::new(cfg.codec)?,
            jb: JitterBuffer::new(cfg.jitter.clone()),
            dtmf_tx: DtmfSender::new(clock),
            dtmf_rx: DtmfReceiver::new(clock),
            seq: cfg.initial_seq,
            ts: cfg.initial_ts,
            first_packet: true,
            talkspurt_next: true,
            send_buf: VecDeque::new(),
            sending: true,
            last_tick: None,
            slot_zero_us: None,
            next_slot: 0,
            last_sent_us: None,
            pace_due_us: None,
            slots: VecDeque::new(),
            dest_rtp: cfg.remote_rtp,
            dest_rtcp,
            latched: false,
            latch_candidate: None,
            rtcp_latched: false,
            rtcp_candidate: None,
            remote: None,
            candidate: None,
            pcm_fifo: Vec::with_capacity(4 * FRAME_8K),
            heard: VecDeque::new(),
            record_tap: RecordTap::default(),
            sent_tap: VecDeque::with_capacity(RECORD_DELAY_FRAMES + 1),
            next_rtcp_us: None,
            rng: cfg.ssrc | 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
            scratch: Vec::with_capacity(1500),
            cfg,
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    pub fn ssrc(&self) -> u32 {
        self.cfg.ssrc
    }

    /// Where RTP goes now.
    pub fn remote_rtp(&self) -> SocketAddr {
        self.dest_rtp
    }

    pub fn remote_rtcp(&self) -> SocketAddr {
        self.dest_rtcp
    }

    /// Whether RTP goes out (RFC 3264 5.1: none while we are recvonly or
    /// inactive). While off, ticks send nothing (DTMF and audio queued are
    /// dropped; RTCP goes on) and the RTP clock keeps running, so the first
    /// packet after resuming carries the elapsed time and a marker.
    pub fn set_sending(&mut self, sending: bool) {
        if self.sending && !sending {
            self.send_buf.clear();
            self.dtmf_tx.clear();
        }
        if !self.sending && sending {
            // The first packet after the gap carries the marker, voice or not.
            self.first_packet = true;
        }
        self.sending = sending;
    }

    pub fn is_sending(&self) -> bool {
        self.sending
    }

    /// New remote addresses (re-INVITE): unlatches.
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: Option<SocketAddr>) {
        self.cfg.remote_rtp = rtp;
        self.cfg.remote_rtcp = rtcp;
        self.dest_rtp = rtp;
        self.dest_rtcp = rtcp.unwrap_or_else(|| self.cfg.rtcp_dest(rtp));
        self.latched = false;
        self.latch_candidate = None;
        self.rtcp_latched = false;
        self.rtcp_candidate = None;
    }

    /// Where the SDP says the peer's RTCP is.
    fn sdp_rtcp(&self) -> SocketAddr {
        self.cfg
            .remote_rtcp
            .unwrap_or_else(|| self.cfg.rtcp_dest(self.cfg.remote_rtp))
    }

    /// RTP now goes to `from`.
    fn latch_rtp(&mut self, from: SocketAddr) {
        self.latched = true;
        self.latch_candidate = None;
        if from != self.dest_rtp {
            self.dest_rtp = from;
            if self.cfg.rtcp_mux {
                self.dest_rtcp = from;
            } else if !self.rtcp_latched {
                self.dest_rtcp = if from.ip() == self.cfg.remote_rtp.ip() {
                    self.sdp_rtcp()
                } else {
                    // Behind a NAT: the SDP's RTCP address is private too; guess port + 1
                    // until RTCP from the peer latches it.
                    self.cfg.rtcp_dest(from)
                };
            }
        }
        self.events.push_back(SessionEvent::Latched { rtp: from });
    }

    /// Queues PCM (8 kHz mono) to send; any length, sent 160 samples per tick.
    pub fn push_audio(&mut self, pcm: &[i16]) {
        self.send_buf.extend(pcm.iter().copied());
    }

    /// Samples queued and not yet sent.
    pub fn queued_samples(&self) -> usize {
        self.send_buf.len()
    }

    /// Drops queued outgoing audio (barge-in).
    pub fn clear_audio(&mut self) {
        self.send_buf.clear();
    }

    /// Queues DTMF digits (RFC 4733).
    pub fn send_dtmf(&mut self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        if self.cfg.payload.telephone_event.is_none() {
            return Err(DtmfError::NotNegotiated);
        }
        self.dtmf_tx.push(digits, duration_ms)
    }

    pub fn dtmf_idle(&self) -> bool {
        self.dtmf_tx.idle()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next 20 ms (160 samples, 8 kHz) heard from the remote, in order,
    /// as soon as the jitter buffer releases it (packets in order at once, a
    /// missing one concealed when its wait runs out).
    pub fn poll_heard(&mut self) -> Option<Vec<i16>> {
        self.heard.pop_front()
    }

    /// When [`RtpSession::handle_timeout`] is due next (µs): the next slot
    /// to send, or the jitter buffer's deadline, whichever is first.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        let send = match self.slot_zero_us {
            None => 0,
            Some(_) => self.next_send_us(),
        };
        Some(match self.jb.next_deadline_us() {
            Some(d) => d.min(send),
            None => send,
        })
    }

    /// When slot `k` is due on the grid.
    fn slot_us(&self, k: u64) -> u64 {
        let frame_us = 1_000_000 * u64::from(self.cfg.codec.frame_ts())
            / u64::from(self.cfg.codec.clock_rate());
        self.slot_zero_us
            .unwrap_or(0)
            .saturating_add(k.saturating_mul(frame_us))
    }

    /// When the next slot may go out: on the grid, or earlier with a whole
    /// frame of app audio queued (see the module's pacing rule).
    fn next_send_us(&self) -> u64 {
        let grid = self.slot_us(self.next_slot);
        let audio_ready = self.sending
            && self.send_buf.len() >= FRAME_8K
            && (self.cfg.payload.telephone_event.is_none() || self.dtmf_tx.idle());
        if !audio_ready {
            return grid;
        }
        let frame_us = self.slot_us(1) - self.slot_us(0);
        let earliest = match (self.pace_due_us, self.last_sent_us) {
            // Never more than one frame ahead of the timestamp grid: a
            // receiver reads earlier packets as jitter (its buffer's fastest
            // transit drops, and the packets after the talkspurt look late).
            (Some(due), _) => due
                .saturating_sub(frame_us + frame_us / 2)
                .max(grid.saturating_sub(frame_us)),
            // Idle: a burst's first frame leaves at once.
            (None, Some(at)) => at,
            (None, None) => grid,
        };
        earliest.min(grid)
    }

    /// Time has come (see [`RtpSession::poll_timeout`]): sends the slots
    /// that are due (a stalled caller catches up, at most a second's worth;
    /// older slots are skipped, their timestamps too), and conceals what the
    /// jitter buffer gives up, releasing what it held behind it.
    pub fn handle_timeout(&mut self, now_us: u64) {
        self.release(now_us);
        if self.slot_zero_us.is_none() {
            self.slot_zero_us = Some(now_us);
        }
        const CATCH_UP_SLOTS: u64 = 50;
        let frame_us = self.slot_us(1) - self.slot_us(0);
        let behind = now_us.saturating_sub(self.slot_us(self.next_slot)) / frame_us.max(1);
        if behind > CATCH_UP_SLOTS {
            let skip = behind - CATCH_UP_SLOTS;
            self.next_slot += skip;
            self.ts = self
                .ts
                .wrapping_add((skip as u32).wrapping_mul(self.cfg.codec.frame_ts()));
        }
        for _ in 0..=CATCH_UP_SLOTS {
            if now_us < self.next_send_us() {
                break;
            }
            let slot_at = self.slot_us(self.next_slot);
            let frame = self.send_slot(now_us, slot_at);
            self.slots.push_back(frame);
            if self.slots.len() > 2 * CATCH_UP_SLOTS as usize {
                self.slots.pop_front();
            }
        }
    }

    /// A slot sent by [`RtpSession::handle_timeout`]: what went out and
    /// what was heard, 20 ms each (for the recorder).
    pub fn poll_slot(&mut self) -> Option<TickFrame> {
        self.slots.pop_front()
    }

    /// Decodes what the jitter buffer releases now into whole heard frames.
    fn release(&mut self, now_us: u64) {
        // Bounded: the buffer holds at most max_packets, plus catch-up frames.
        for _ in 0..256 {
            let r = match self.jb.pop(now_us) {
                Playout::Packet { payload, dur, .. } => {
                    match self.dec.decode(&payload, &mut self.pcm_fifo) {
                        Ok(()) => Ok(()),
                        Err(_) => {
                            self.stats.codec_errors += 1;
                            self.dec.conceal(dur, None, &mut self.pcm_fifo)
                        }
                    }
                }
                Playout::Lost { dur, next, .. } => {
                    self.dec.conceal(dur, next.as_deref(), &mut self.pcm_fifo)
                }
                Playout::Wait { .. } => break,
            };
            if r.is_err() {
                self.stats.codec_errors += 1;
            }
            while self.pcm_fifo.len() >= FRAME_8K {
                let frame: Vec<i16> = self.pcm_fifo.drain(..FRAME_8K).collect();
                self.record_tap.push(&frame);
                if self.heard.len() >= HEARD_QUEUE_FRAMES {
                    self.heard.pop_front();
                    self.stats.heard_dropped += 1;
                }
                self.heard.push_back(frame);
            }
        }
    }

    fn clock(&self) -> u64 {
        self.cfg.codec.clock_rate() as u64
    }

    fn ntp_now(&self, now_us: u64) -> u64 {
        rtcp::ntp_from_unix_us(self.cfg.wall_clock_at_zero_us + now_us)
    }

    /// A datagram arrived on the RTP socket.
    pub fn handle_rtp(&mut self, now_us: u64, from: SocketAddr, data: &[u8]) {
        if self.cfg.rtcp_mux && rtp::is_rtcp(data) {
            self.handle_rtcp(now_us, from, data);
            return;
        }
        let Ok(p) = rtp::parse(data) else {
            self.stats.dropped_invalid += 1;
            return;
        };
        let h = p.header;
        if !self.cfg.payload.knows(h.payload_type) {
            self.stats.dropped_unknown_pt += 1;
            return;
        }
        if self.cfg.symmetric {
            // The SDP address is trusted at once, and always takes the stream
            // back; any other source (a NAT's public side) must first send
            // LATCH_PROBATION packets in sequence, so a stray or spoofed packet
            // cannot steal the stream.
            let trusted = from == self.cfg.remote_rtp;
            if !self.latched {
                let proven = match &mut self.latch_candidate {
                    Some(c)
                        if c.0 == from && c.1 == h.ssrc && h.sequence == c.2.wrapping_add(1) =>
                    {
                        c.2 = h.sequence;
                        c.3 += 1;
                        c.3 >= LATCH_PROBATION
                    }
                    _ => {
                        self.latch_candidate = Some((from, h.ssrc, h.sequence, 1));
                        LATCH_PROBATION <= 1
                    }
                };
                if !(trusted || proven) {
                    self.stats.dropped_foreign_source += 1;
                    return;
                }
                self.latch_rtp(from);
            } else if from != self.dest_rtp {
                if !trusted {
                    self.stats.dropped_foreign_source += 1;
                    return;
                }
                self.latch_rtp(from);
            }
        }
        // Source (SSRC) handling.
        match &self.remote {
            None => {
                self.remote = Some(Remote {
                    ssrc: h.ssrc,
                    stats: RecvStats::new(h.sequence),
                    ts: TsUnwrapper::default(),
                });
                self.events
                    .push_back(SessionEvent::RemoteSsrc { ssrc: h.ssrc });
            }
            Some(r) if r.ssrc != h.ssrc => match self.candidate {
                Some((s, last)) if s == h.ssrc && h.sequence == last.wrapping_add(1) => {
                    let old = r.ssrc;
                    self.remote = Some(Remote {
                        ssrc: h.ssrc,
                        stats: RecvStats::new(h.sequence),
                        ts: TsUnwrapper::default(),
                    });
                    self.candidate = None;
                    self.jb.reset();
                    self.dtmf_rx = DtmfReceiver::new(self.cfg.codec.clock_rate());
                    match AudioDecoder::new(self.cfg.codec) {
                        Ok(d) => self.dec = d,
                        Err(_) => self.stats.codec_errors += 1,
                    }
                    self.pcm_fifo.clear();
                    self.stats.ssrc_changes += 1;
                    self.events
                        .push_back(SessionEvent::RemoteSsrcChanged { old, new: h.ssrc });
                }
                _ => {
                    self.candidate = Some((h.ssrc, h.sequence));
                    self.stats.dropped_other_ssrc += 1;
                    return;
                }
            },
            Some(_) => {}
        }
        let clock = self.clock();
        let r = self.remote.as_mut().expect("set above");
        if !r.stats.update_seq(h.sequence) {
            self.stats.dropped_invalid += 1;
            return;
        }
        self.stats.packets_received += 1;
        let pt = h.payload_type;
        if Some(pt) == self.cfg.payload.telephone_event {
            for d in self.dtmf_rx.on_packet(now_us, h.timestamp, p.payload) {
                self.stats.dtmf_received += 1;
                self.events.push_back(SessionEvent::Dtmf(d));
            }
            return;
        }
        if Some(pt) == self.cfg.payload.comfort_noise {
            self.stats.comfort_noise_received += 1;
            return;
        }
        let ts = r.ts.unwrap(h.timestamp);
        // Jitter over audio packets only: DTMF packets repeat their start timestamp.
        let arrival_ts = (now_us as u128 * clock as u128 / 1_000_000) as i64;
        r.stats.update_jitter(arrival_ts, ts);
        let dur = self
            .dec
            .duration(p.payload)
            .unwrap_or(self.cfg.codec.frame_ts());
        if dur == 0 {
            self.stats.codec_errors += 1;
            return;
        }
        self.jb.insert(now_us, ts, dur, p.payload.to_vec());
        self.release(now_us);
    }

    /// A datagram arrived on the RTCP socket.
    pub fn handle_rtcp(&mut self, now_us: u64, from: SocketAddr, data: &[u8]) {
        let Some(pkts) = rtcp::parse_compound(data) else {
            self.stats.dropped_invalid += 1;
            return;
        };
        if self.cfg.symmetric && !self.cfg.rtcp_mux {
            if !self.accept_rtcp_source(from, &pkts) {
                self.stats.dropped_foreign_source += 1;
                return;
            }
        } else if self.cfg.symmetric && from != self.dest_rtp && from != self.cfg.remote_rtp {
            // rtcp-mux: RTCP comes from the RTP peer (latched, or the SDP's).
            self.stats.dropped_foreign_source += 1;
            return;
        }
        self.stats.rtcp_received += 1;
        let ntp_now = self.ntp_now(now_us);
        let remote_ssrc = self.remote.as_ref().map(|r| r.ssrc);
        for p in pkts {
            let blocks = match p {
                RtcpPacket::SenderReport {
                    ssrc,
                    info,
                    reports,
                } => {
                    if Some(ssrc) == remote_ssrc {
                        if let Some(r) = self.remote.as_mut() {
                            r.stats.last_sr = Some((rtcp::ntp_middle(info.ntp), now_us));
                        }
                    }
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { ssrcs } => {
                    if remote_ssrc.is_some_and(|s| ssrcs.contains(&s)) {
                        self.events.push_back(SessionEvent::Bye);
                    }
                    continue;
                }
                _ => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == self.cfg.ssrc) {
                self.stats.remote_fraction_lost = Some(b.fraction_lost as f64 / 256.0);
                self.stats.remote_cumulative_lost = Some(b.cumulative_lost);
                self.stats.remote_jitter_ms = Some(b.jitter as f64 * 1000.0 / self.clock() as f64);
                if let Some(rtt) = rtcp::rtt_us(b, ntp_now) {
                    self.stats.rtt_ms = Some(rtt as f64 / 1000.0);
                }
            }
        }
    }

    /// Symmetric RTCP (own port): whether to take this compound from `from`,
    /// latching onto it when it is the SDP's address or has passed probation.
    fn accept_rtcp_source(&mut self, from: SocketAddr, pkts: &[RtcpPacket]) -> bool {
        let expected = from == self.sdp_rtcp() || (!self.rtcp_latched && from == self.dest_rtcp);
        if self.rtcp_latched && from == self.dest_rtcp {
            return true;
        }
        if !expected {
            // Probation: the same source, reporting as the stream we latched onto.
            let sender = match pkts.first() {
                Some(RtcpPacket::SenderReport { ssrc, .. })
                | Some(RtcpPacket::ReceiverReport { ssrc, .. }) => Some(*ssrc),
                _ => None,
            };
            let ours = sender.is_some() && sender == self.remote.as_ref().map(|r| r.ssrc);
            if !ours {
                return false;
            }
            let n = match self.rtcp_candidate {
                Some((src, n)) if src == from => n + 1,
                _ => 1,
            };
            self.rtcp_candidate = Some((from, n));
            if n < RTCP_LATCH_PROBATION {
                return false;
            }
        }
        self.rtcp_latched = true;
        self.rtcp_candidate = None;
        self.dest_rtcp = from;
        self.events
            .push_back(SessionEvent::RtcpLatched { rtcp: from });
        true
    }

    fn next_rand(&mut self) -> u32 {
        // xorshift32: only for RTCP interval randomisation.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    fn schedule_rtcp(&mut self, now_us: u64, first: bool) {
        let base = self.cfg.rtcp_interval_ms as u64 * 1000;
        let base = if first { base / 2 } else { base };
        let factor = 500 + (self.next_rand() % 1001) as u64; // 0.5 .. 1.5
        self.next_rtcp_us = Some(now_us + base * factor / 1000);
    }

    fn build_rtcp(&mut self, now_us: u64, bye: bool) -> Vec<u8> {
        let mut buf = Vec::with_capacity(128);
        let block = self
            .remote
            .as_mut()
            .map(|r| r.stats.report_block(r.ssrc, now_us));
        if let Some(b) = &block {
            self.stats.fraction_lost = b.fraction_lost as f64 / 256.0;
        }
        let blocks: Vec<_> = block.into_iter().collect();
        let info = if self.stats.packets_sent > 0 {
            let rtp_timestamp = match self.last_tick {
                Some((at, ts)) => {
                    ts.wrapping_add(((now_us.saturating_sub(at)) * self.clock() / 1_000_000) as u32)
                }
                None => self.ts,
            };
            Some(SenderInfo {
                ntp: self.ntp_now(now_us),
                rtp_timestamp,
                packet_count: self.stats.packets_sent as u32,
                octet_count: self.stats.octets_sent as u32,
            })
        } else {
            None
        };
        rtcp::write_report(&mut buf, self.cfg.ssrc, info.as_ref(), &blocks);
        rtcp::write_sdes_cname(&mut buf, self.cfg.ssrc, &self.cfg.cname);
        if bye {
            rtcp::write_bye(&mut buf, self.cfg.ssrc);
        }
        self.stats.rtcp_sent += 1;
        buf
    }

    fn send_rtp(&mut self, marker: bool, pt: u8, ts: u32, payload: &[u8]) {
        let h = RtpHeader {
            marker,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.cfg.ssrc,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut data = Vec::with_capacity(rtp::HEADER_LEN + payload.len());
        rtp::write(&h, payload, &mut data);
        self.stats.packets_sent += 1;
        self.stats.octets_sent += payload.len() as u64;
        self.first_packet = false;
        self.out.push_back(Transmit {
            channel: Channel::Rtp,
            dest: self.dest_rtp,
            data,
        });
    }

    /// Sends the next slot now, whatever the time (tests and fuzzing; the
    /// driver uses [`RtpSession::handle_timeout`]).
    pub fn tick(&mut self, now_us: u64) -> TickFrame {
        self.send_slot(now_us, now_us)
    }

    /// One 20 ms slot, due on the grid at `slot_us`, sent now: one packet,
    /// one frame for the recorder, maybe RTCP.
    fn send_slot(&mut self, now_us: u64, slot_us: u64) -> TickFrame {
        let ts = self.ts;
        self.ts = self.ts.wrapping_add(self.cfg.codec.frame_ts());
        self.next_slot += 1;
        // The timestamp grid, for the RTCP sender report (a slot sent early
        // still stands for its own time).
        self.last_tick = Some((slot_us, ts));
        let mut voice_sent = false;

        // --- send
        let mut sent = vec![0i16; FRAME_8K];
        let dtmf_was_idle = self.dtmf_tx.idle();
        let dtmf = if !self.sending {
            self.send_buf.clear();
            None
        } else if self.cfg.payload.telephone_event.is_some() {
            self.dtmf_tx.tick(ts)
        } else {
            None
        };
        if !self.sending {
            // On hold: nothing goes out.
        } else if let Some(ev) = dtmf {
            let pt = self.cfg.payload.telephone_event.expect("checked");
            let bytes = ev.payload.to_bytes();
            self.send_rtp(ev.marker, pt, ev.timestamp, &bytes);
            self.stats.dtmf_packets_sent += 1;
            self.talkspurt_next = true;
            if !dtmf_was_idle && self.dtmf_tx.idle() {
                self.events.push_back(SessionEvent::DtmfSent);
            }
        } else {
            let voice = !self.send_buf.is_empty();
            if voice {
                let n = self.send_buf.len().min(FRAME_8K);
                for (i, s) in self.send_buf.drain(..n).enumerate() {
                    sent[i] = s;
                }
                self.stats.voice_frames_sent += 1;
                voice_sent = true;
            }
            let marker = self.first_packet || (voice && self.talkspurt_next);
            self.talkspurt_next = !voice;
            let mut payload = std::mem::take(&mut self.scratch);
            payload.clear();
            if self.enc.encode(&sent, &mut payload).is_ok() {
                self.send_rtp(marker, self.cfg.payload.audio, ts, &payload);
            } else {
                self.stats.codec_errors += 1;
            }
            self.scratch = payload;
        }

        self.last_sent_us = Some(now_us);
        let frame_us = self.slot_us(1) - self.slot_us(0);
        self.pace_due_us = voice_sent.then(|| {
            self.pace_due_us
                .map_or(now_us, |due| due.max(now_us))
                .saturating_add(frame_us)
        });

        // --- receive: whatever is due (the driver also wakes at poll_timeout).
        self.release(now_us);
        let received = self.record_tap.take();
        if let Some(d) = self.dtmf_rx.poll(now_us) {
            self.stats.dtmf_received += 1;
            self.events.push_back(SessionEvent::Dtmf(d));
        }

        // --- rtcp
        match self.next_rtcp_us {
            None => self.schedule_rtcp(now_us, true),
            Some(t) if now_us >= t => {
                let data = self.build_rtcp(now_us, false);
                self.out.push_back(Transmit {
                    channel: Channel::Rtcp,
                    dest: self.dest_rtcp,
                    data,
                });
                self.schedule_rtcp(now_us, false);
            }
            Some(_) => {}
        }
        // The recording's sent channel lags as the received one does.
        self.sent_tap.push_back(sent);
        let sent = if self.sent_tap.len() > RECORD_DELAY_FRAMES {
            self.sent_tap.pop_front().unwrap_or_default()
        } else {
            vec![0i16; FRAME_8K]
        };
        TickFrame { sent, received }
    }

    /// Final RTCP (report + SDES + BYE). Send it, then drop the session.
    pub fn close(&mut self, now_us: u64) -> Transmit {
        let data = self.build_rtcp(now_us, true);
        Transmit {
            channel: Channel::Rtcp,
            dest: self.dest_rtcp,
            data,
        }
    }

    pub fn stats(&mut self) -> SessionStats {
        let mut s = self.stats;
        if let Some(r) = &self.remote {
            s.cumulative_lost = r.stats.cumulative_lost();
            s.expected = r.stats.expected();
            s.jitter_ms = r.stats.jitter_ts() * 1000.0 / self.clock() as f64;
        }
        s.jitter_buffer = self.jb.stats();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn session(remote: &str) -> RtpSession {
        let mut c = SessionConfig::new(
            Codec::Pcmu,
            PayloadMap::default_for(Codec::Pcmu),
            addr(remote),
        );
        c.ssrc = 0x1111;
        c.initial_seq = 65_530;
        c.initial_ts = 1000;
        RtpSession::new(c).unwrap()
    }

    fn rtp_out(s: &mut RtpSession) -> Vec<(RtpHeader, Vec<u8>, SocketAddr)> {
        let mut v = vec![];
        while let Some(t) = s.poll_transmit() {
            if t.channel == Channel::Rtp {
                let p = rtp::parse(&t.data).unwrap();
                v.push((p.header, p.payload.to_vec(), t.dest));
            }
        }
        v
    }

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let mut d = vec![];
        rtp::write(
            &RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: seq,
                timestamp: ts,
                ssrc,
            },
            &[0xFF; 160],
            &mut d,
        );
        d
    }

    /// Runs the session's clock from `from` to `until` (µs) the way the
    /// driver does: handle_timeout at each poll_timeout (at once when that is
    /// past). Returns (sent at, header).
    fn run_clock(s: &mut RtpSession, from: u64, until: u64) -> Vec<(u64, RtpHeader)> {
        let mut out = vec![];
        let mut now = from;
        while let Some(t) = s.poll_timeout().map(|t| t.max(now)).filter(|&t| t <= until) {
            now = t;
            s.handle_timeout(t);
            while s.poll_slot().is_some() {}
            out.extend(rtp_out(s).into_iter().map(|p| (t, p.0)));
        }
        out
    }

    /// Issue 17: the first frame of a burst of app audio leaves as soon as
    /// it is queued (the pacing clock re-phases), the rest follow at the
    /// frame rate, and silence returns to the timestamp grid afterwards.
    #[test]
    fn a_burst_leaves_at_once_then_paces_at_the_frame_rate() {
        let mut s = session("10.0.0.1:4000");
        s.cfg.payload.telephone_event = None;
        // Idle: comfort silence on the 20 ms grid.
        let idle = run_clock(&mut s, 0, 46_000);
        let times: Vec<u64> = idle.iter().map(|p| p.0).collect();
        assert_eq!(times, [0, 20_000, 40_000]);
        // 47 ms: the engine produces four frames at once.
        s.push_audio(&[1000; 4 * FRAME_8K]);
        let burst = run_clock(&mut s, 47_000, 200_000);
        let got: Vec<(u64, bool, u32)> = burst
            .iter()
            .map(|(t, h)| (*t, h.marker, h.timestamp.wrapping_sub(1000) / 160))
            .collect();
        // Not at 60 ms (the next slot): at 47 ms, when it was queued; then
        // one frame ahead of the grid, every 20 ms; slot timestamps
        // consecutive; silence back on the grid (slot 7 at 140 ms).
        assert_eq!(
            got[..6],
            [
                (47_000, true, 3),
                (60_000, false, 4),
                (80_000, false, 5),
                (100_000, false, 6),
                (140_000, false, 7),
                (160_000, false, 8),
            ]
        );
        assert_eq!(s.stats().voice_frames_sent, 4);
        // Less than a frame queued waits for the slot (padded), as before.
        s.push_audio(&[1000; 80]);
        assert_eq!(s.poll_timeout(), Some(220_000));
    }

    /// Issue 17: frames produced in real time with a little jitter (an echo,
    /// a streaming engine) each leave when they come; the pacing does not
    /// ratchet them onto the next slot; after a concealed loss (nothing, then
    /// the concealment and the next frame together) they wait less than a
    /// frame.
    #[test]
    fn a_real_time_producer_is_never_held_for_its_jitter() {
        let mut s = session("10.0.0.1:4000");
        s.cfg.payload.telephone_event = None;
        run_clock(&mut s, 0, 13_000);
        // Frame k comes at 13 ms + 20 k, up to 1.5 ms early or late.
        let jitter = [0i64, -1_500, 1_000, -500, 1_500, -1_000];
        let (mut worst, mut after_loss) = (0u64, 0u64);
        let mut now = 13_000u64;
        for k in 0..300u64 {
            let at = (13_000 + 20_000 * k as i64 + jitter[(k % 6) as usize]) as u64;
            if k % 100 == 50 {
                continue; // lost: concealed 22 ms later, with the next
            }
            let at = if k % 100 == 51 { at + 2_000 } else { at };
            run_clock(&mut s, now, at);
            if k % 100 == 51 {
                s.push_audio(&[1000; FRAME_8K]);
                s.handle_timeout(at);
                while s.poll_slot().is_some() {}
                rtp_out(&mut s);
            }
            s.push_audio(&[1000; FRAME_8K]);
            // When the frame leaves (the voice count goes up).
            now = at;
            let left = loop {
                let t = s.poll_timeout().unwrap().max(now);
                assert!(t < at + 20_000, "frame {k} not sent within a slot");
                now = t;
                let before = s.stats().voice_frames_sent;
                s.handle_timeout(t);
                while s.poll_slot().is_some() {}
                rtp_out(&mut s);
                if s.stats().voice_frames_sent > before {
                    break t;
                }
            };
            if k < 50 {
                worst = worst.max(left - at);
            } else {
                after_loss = after_loss.max(left - at);
            }
        }
        assert!(worst <= 1_500, "a frame waited {worst} us");
        assert!(after_loss < 20_000, "a frame waited {after_loss} us");
        assert_eq!(s.stats().voice_frames_sent, 300);
    }

    /// Issue 17: a packet in order is heard when it arrives, not at the
    /// next tick; a missing one is concealed at the session's timeout, and
    /// what was held behind it follows at once.
    #[test]
    fn inbound_audio_is_heard_on_arrival_and_a_gap_at_the_timeout() {
        let mut s = session("10.0.0.1:4000");
        let from = addr("10.0.0.1:4000");
        for i in 0..5u16 {
            s.handle_rtp(3_000 + i as u64 * 20_000, from, &pkt(7, i, 160 * i as u32));
            let f = s
                .poll_heard()
                .expect("heard on arrival, no tick in between");
            assert_eq!(f.len(), FRAME_8K);
            assert!(s.poll_heard().is_none());
        }
        // Packet 5 is lost; 6 arrives and is held for it (the wait: 40 ms
        // until the buffer has seen 10 packets, plus 2 ms of grace).
        s.handle_rtp(123_000, from, &pkt(7, 6, 960));
        assert!(s.poll_heard().is_none());
        let t =
            s.jb.next_deadline_us()
                .expect("a missing packet is awaited");
        assert!(t > 123_000 && t <= 103_000 + 42_000, "{t}");
        s.handle_timeout(t - 1);
        assert!(s.poll_heard().is_none(), "not before its time");
        s.handle_timeout(t);
        assert!(s.poll_heard().is_some(), "the concealed frame");
        assert!(s.poll_heard().is_some(), "packet 6");
        assert!(s.poll_heard().is_none());
        assert_eq!(s.stats().jitter_buffer.lost, 1);
    }

    #[test]
    fn hostile_streams_do_not_panic_or_grow_the_queues() {
        let mut s = session("10.0.0.1:4000");
        let from = addr("10.0.0.1:4000");
        let mut lcg = 42u64;
        let mut now = 0u64;
        for k in 0..20_000u32 {
            lcg = lcg
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = (lcg >> 16) as u32;
            now += u64::from(r % 25_000);
            // SSRC flapping between three, sequence and timestamp jumps.
            let ssrc = [7, 8, 9][(r % 3) as usize];
            let seq = if r.is_multiple_of(5) {
                r as u16
            } else {
                k as u16
            };
            let ts = if r.is_multiple_of(7) {
                r
            } else {
                k.wrapping_mul(160)
            };
            s.handle_rtp(now, from, &pkt(ssrc, seq, ts));
            if let Some(t) = s.poll_timeout() {
                if t <= now {
                    s.handle_timeout(now);
                }
            }
            if k % 3 == 0 {
                s.tick(now);
                while s.poll_transmit().is_some() {}
                while s.poll_event().is_some() {}
            }
            let st = s.stats();
            assert!(st.jitter_buffer.queued_packets <= 64, "{st:?}");
            assert!(s.heard.len() <= HEARD_QUEUE_FRAMES);
            assert!(s.pcm_fifo.len() < 2 * FRAME_8K + 5_000);
            assert!(s.record_tap.fifo.len() <= (RECORD_DELAY_FRAMES + 3) * FRAME_8K);
        }
    }

    #[test]
    fn marker_only_on_talkspurt_starts_and_timestamps_follow_ticks() {
        let mut s = session("10.0.0.1:4000");
        let voice = vec![1000i16; 160];
        let mut sent = vec![];
        // tick 0: silence (first packet: marker), 1-2: voice (marker on 1), 3: silence, 4: voice (marker), 5: voice
        for (k, v) in [false, true, true, false, true, true]
            .into_iter()
            .enumerate()
        {
            if v {
                s.push_audio(&voice);
            }
            s.tick(k as u64 * 20_000);
            sent.extend(rtp_out(&mut s));
        }
        let markers: Vec<bool> = sent.iter().map(|p| p.0.marker).collect();
        assert_eq!(markers, [true, true, false, false, true, false]);
        let seqs: Vec<u16> = sent.iter().map(|p| p.0.sequence).collect();
        assert_eq!(seqs, [65_530, 65_531, 65_532, 65_533, 65_534, 65_535]);
        let ts: Vec<u32> = sent.iter().map(|p| p.0.timestamp).collect();
        assert_eq!(ts, [1000, 1160, 1320, 1480, 1640, 1800]);
        assert!(sent[0].1.iter().all(|&b| b == 0xFF)); // comfort silence is mu-law zero
        assert!(sent.iter().all(|p| p.2 == addr("10.0.0.1:4000")));
    }

    /// Issue 21: while the callee holds the call (we answered recvonly),
    /// RTP kept going out.
    #[test]
    fn no_rtp_goes_out_while_not_sending_and_it_resumes_with_a_marker() {
        let mut s = session("10.0.0.1:4000");
        let voice = vec![1000i16; 160];
        s.push_audio(&voice);
        s.tick(0);
        assert_eq!(rtp_out(&mut s).len(), 1);
        s.set_sending(false);
        for k in 1..=3u64 {
            s.push_audio(&voice);
            s.tick(k * 20_000);
            assert!(rtp_out(&mut s).is_empty(), "tick {k}");
        }
        s.set_sending(true);
        s.tick(4 * 20_000);
        let sent = rtp_out(&mut s);
        assert_eq!(sent.len(), 1);
        let h = &sent[0].0;
        assert!(h.marker, "a new talkspurt");
        assert_eq!((h.sequence, h.timestamp), (65_531, 1000 + 4 * 160));
    }

    #[test]
    fn latching_trusts_sdp_address_and_proves_others() {
        // The peer is behind a NAT: SDP says 10.0.0.1, packets come from 203.0.113.5.
        let mut s = session("10.0.0.1:4000");
        let nat = addr("203.0.113.5:40000");
        s.handle_rtp(0, nat, &pkt(7, 100, 0));
        s.handle_rtp(20_000, nat, &pkt(7, 101, 160));
        assert_eq!(s.remote_rtp(), addr("10.0.0.1:4000"), "not yet proven");
        s.handle_rtp(40_000, nat, &pkt(7, 102, 320));
        assert_eq!(s.remote_rtp(), nat);
        assert_eq!(s.remote_rtcp(), addr("203.0.113.5:40001"));
        // Someone else is ignored from now on.
        s.handle_rtp(50_000, addr("198.51.100.9:5000"), &pkt(7, 103, 480));
        s.tick(60_000);
        assert!(rtp_out(&mut s).iter().all(|p| p.2 == nat));
        let st = s.stats();
        assert_eq!(st.dropped_foreign_source, 3); // 2 during probation + the stranger
        assert_eq!(st.packets_received, 1);
        // A packet straight from the SDP address latches at once.
        let mut s = session("10.0.0.1:4000");
        s.handle_rtp(0, addr("10.0.0.1:4000"), &pkt(7, 1, 0));
        assert_eq!(
            s.poll_event(),
            Some(SessionEvent::Latched {
                rtp: addr("10.0.0.1:4000")
            })
        );
    }

    #[test]
    fn the_sdp_address_always_reclaims_the_stream() {
        let sdp = addr("10.0.0.1:4000");
        let mut s = session("10.0.0.1:4000");
        // A source proves itself (three packets in sequence) and takes the stream...
        let other = addr("198.51.100.9:5000");
        for i in 0..3u16 {
            s.handle_rtp(i as u64 * 20_000, other, &pkt(7, 100 + i, 160 * i as u32));
        }
        assert_eq!(s.remote_rtp(), other);
        assert_eq!(s.remote_rtcp(), addr("198.51.100.9:5001"));
        // ...but the address the answer named gets it back with one packet.
        s.handle_rtp(80_000, sdp, &pkt(7, 103, 480));
        assert_eq!(s.remote_rtp(), sdp);
        assert_eq!(s.remote_rtcp(), addr("10.0.0.1:4001"));
        let evs: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(evs.contains(&SessionEvent::Latched { rtp: sdp }), "{evs:?}");
        s.tick(100_000);
        assert!(rtp_out(&mut s).iter().all(|p| p.2 == sdp));
        // The other source is a stranger again.
        s.handle_rtp(120_000, other, &pkt(7, 104, 640));
        assert_eq!(s.remote_rtp(), sdp);
        assert_eq!(s.stats().dropped_foreign_source, 3); // 2 in probation + this one
    }

    fn rr(ssrc: u32) -> Vec<u8> {
        let mut d = vec![];
        rtcp::write_report(&mut d, ssrc, None, &[]);
        d
    }

    #[test]
    fn rtcp_latches_onto_a_stranger_only_after_probation() {
        let mut s = session("10.0.0.1:4000");
        s.handle_rtp(0, addr("10.0.0.1:4000"), &pkt(7, 1, 0));
        let stranger = addr("198.51.100.9:7001");
        // Any first packet used to take RTCP over: now one is not enough...
        s.handle_rtcp(10_000, stranger, &rr(7));
        assert_eq!(s.remote_rtcp(), addr("10.0.0.1:4001"));
        // ...nor any number that does not report as the remote stream.
        for t in 0..3 {
            s.handle_rtcp(20_000 + t, addr("198.51.100.66:9"), &rr(99));
        }
        assert_eq!(s.remote_rtcp(), addr("10.0.0.1:4001"));
        let st = s.stats();
        assert_eq!((st.rtcp_received, st.dropped_foreign_source), (0, 4));
        // The stream's own reports, repeated from one source, latch it.
        s.handle_rtcp(30_000, stranger, &rr(7));
        assert_eq!(s.remote_rtcp(), stranger);
        assert_eq!(s.stats().rtcp_received, 1);
        // The SDP's RTCP address is trusted at once and takes RTCP back.
        s.handle_rtcp(40_000, addr("10.0.0.1:4001"), &rr(7));
        assert_eq!(s.remote_rtcp(), addr("10.0.0.1:4001"));
        s.handle_rtcp(50_000, stranger, &rr(7));
        assert_eq!(s.remote_rtcp(), addr("10.0.0.1:4001"));
        assert_eq!(s.stats().rtcp_received, 2);

        // rtcp-mux: RTCP only from the RTP peer, latched or not.
        let mut c = SessionConfig::new(
            Codec::Pcmu,
            PayloadMap::default_for(Codec::Pcmu),
            addr("10.0.0.1:4000"),
        );
        c.rtcp_mux = true;
        let mut m = RtpSession::new(c).unwrap();
        m.handle_rtp(0, stranger, &rr(7));
        assert_eq!(m.stats().rtcp_received, 0);
        m.handle_rtp(0, addr("10.0.0.1:4000"), &rr(7));
        assert_eq!(m.stats().rtcp_received, 1);
    }

    #[test]
    fn ssrc_change_needs_two_sequential_packets() {
        let mut s = session("10.0.0.1:4000");
        let from = addr("10.0.0.1:4000");
        for i in 0..5u16 {
            s.handle_rtp(i as u64 * 20_000, from, &pkt(7, 10 + i, 160 * i as u32));
        }
        // A stray packet of another SSRC is dropped...
        s.handle_rtp(100_000, from, &pkt(8, 500, 9999));
        s.handle_rtp(110_000, from, &pkt(7, 15, 800));
        assert_eq!(s.stats().ssrc_changes, 0);
        // ...a new stream that keeps going takes over with fresh statistics.
        s.handle_rtp(120_000, from, &pkt(9, 40_000, 77_000));
        s.handle_rtp(140_000, from, &pkt(9, 40_001, 77_160));
        s.handle_rtp(160_000, from, &pkt(9, 40_002, 77_320));
        let st = s.stats();
        assert_eq!(st.ssrc_changes, 1);
        assert_eq!(st.dropped_other_ssrc, 2);
        assert_eq!(st.expected, 2);
        assert_eq!(st.cumulative_lost, 0);
        let evs: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(evs.contains(&SessionEvent::RemoteSsrcChanged { old: 7, new: 9 }));
    }

    #[test]
    fn rtcp_reports_loss_and_lsr_dlsr() {
        let mut a = session("10.0.0.2:5000");
        let from = addr("10.0.0.2:5000");
        // 10 packets, seq 3 and 6 lost.
        for i in (0..10u16).filter(|i| ![3, 6].contains(i)) {
            a.handle_rtp(i as u64 * 20_000, from, &pkt(7, i, 160 * i as u32));
        }
        // An SR from the peer at t = 0.2 s.
        let mut sr = vec![];
        let info = SenderInfo {
            ntp: 0xAAAA_BBBB_CCCC_DDDD,
            rtp_timestamp: 0,
            packet_count: 10,
            octet_count: 1600,
        };
        rtcp::write_report(&mut sr, 7, Some(&info), &[]);
        a.handle_rtcp(200_000, addr("10.0.0.2:5001"), &sr);
        // Nothing sent yet: a receiver report. After one tick: a sender report.
        let rr = rtcp::parse_compound(&a.build_rtcp(650_000, false)).unwrap();
        assert!(
            matches!(rr[0], RtcpPacket::ReceiverReport { ssrc: 0x1111, .. }),
            "{rr:?}"
        );
        a.tick(690_000);
        // Our report 0.5 s after the SR.
        let t = a.close(700_000);
        assert_eq!(t.dest, addr("10.0.0.2:5001"));
        let pkts = rtcp::parse_compound(&t.data).unwrap();
        let RtcpPacket::ReceiverReport { reports: first, .. } = &rr[0] else {
            unreachable!()
        };
        assert_eq!(first[0].fraction_lost, (2 * 256 / 10) as u8);
        let RtcpPacket::SenderReport { ssrc, reports, .. } = &pkts[0] else {
            panic!("{pkts:?}")
        };
        assert_eq!(*ssrc, 0x1111);
        let b = reports[0];
        assert_eq!(b.ssrc, 7);
        assert_eq!(b.cumulative_lost, 2);
        assert_eq!(b.fraction_lost, 0); // the interval since the RR above saw no new loss
        assert_eq!(b.extended_highest_seq & 0xFFFF, 9);
        assert_eq!(b.last_sr, 0xBBBB_CCCC);
        assert_eq!(b.delay_since_last_sr, 32_768);
        assert!(matches!(pkts[1], RtcpPacket::Sdes { .. }));
        assert_eq!(
            pkts[2],
            RtcpPacket::Bye {
                ssrcs: vec![0x1111]
            }
        );
    }

    #[test]
    fn dtmf_replaces_audio_then_marks_the_next_talkspurt() {
        let mut s = session("10.0.0.1:4000");
        s.send_dtmf("1", 40).unwrap();
        let mut out = vec![];
        for k in 0..6u64 {
            s.push_audio(&[500; 160]);
            s.tick(k * 20_000);
            out.extend(rtp_out(&mut s));
        }
        let pts: Vec<(u8, bool)> = out.iter().map(|p| (p.0.payload_type, p.0.marker)).collect();
        // 2 updates + 2 more end packets, then audio with a marker.
        assert_eq!(
            pts,
            [
                (101, true),
                (101, false),
                (101, false),
                (101, false),
                (0, true),
                (0, false)
            ]
        );
        assert!(out[..4].iter().all(|p| p.0.timestamp == 1000));
        // Reported sent once, with its last end packet.
        let sent: Vec<_> = std::iter::from_fn(|| s.poll_event())
            .filter(|e| *e == SessionEvent::DtmfSent)
            .collect();
        assert_eq!(sent.len(), 1);
        // Keys queued when the callee holds the call are dropped with the audio.
        s.send_dtmf("9", 40).unwrap();
        s.set_sending(false);
        s.set_sending(true);
        for k in 6..10u64 {
            s.tick(k * 20_000);
            assert!(rtp_out(&mut s).iter().all(|p| p.0.payload_type == 0));
        }
        let mut no_te = session("10.0.0.1:4000");
        no_te.cfg.payload.telephone_event = None;
        assert_eq!(no_te.send_dtmf("1", 40), Err(DtmfError::NotNegotiated));
    }
}
