//! The thin tokio driver: one task per call running an [`RtpSession`].
//!
//! ```text
//! let ports = PortAllocator::new("0.0.0.0".parse()?, 20_000..=20_999);
//! // Before the SDP offer: reserve the ports, put bound.local_rtp().port() in the SDP.
//! let bound = MediaSession::bind(&ports)?;
//! // After the answer:
//! let mut media = bound.start(MediaConfig::new(Codec::Pcmu, PayloadMap::default_for(Codec::Pcmu), remote))?;
//! media.send(frame_160_samples).await?;        // paced: waits when ~1 s is queued
//! while let Some(frame) = media.recv().await {} // 160-sample frames as they arrive
//! media.send_dtmf("123#", 100).await?;
//! let stats = media.stop().await;
//! ```
//!
//! (`MediaSession::start(&ports, cfg)` does both steps when the remote is
//! already known.) The task sends a packet per 20 ms slot on tokio's clock
//! (a stalled task catches up, so the RTP timestamps keep following real
//! time; the first frame of a burst of engine audio goes out as soon as it
//! is queued, see [`RtpSession`]'s pacing), reads both sockets (the slot first
//! whenever it is due, so a flood of datagrams cannot hold it up), and
//! publishes stats on a watch channel. Received audio is not held for the
//! tick: a packet in order goes to the call side as soon as it is read, and
//! the task also wakes when the jitter buffer gives up a missing packet
//! ([`RtpSession::poll_timeout`]). Received frames go to a bounded channel; if the
//! call side stops reading, the newest frames are dropped (counted) rather
//! than stalling the media. Recording runs on its own thread.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::codec::{CodecError, OpusSettings, FRAME_8K};
use super::dtmf::DtmfError;
use super::jitter::JitterConfig;
use super::record::StereoRecorder;
use super::rtp;
use super::session::{Channel, PayloadMap, RtpSession, SessionConfig, SessionEvent, SessionStats};
use super::srtp::{Packet, SrtpError, SrtpKeys, SrtpTransform};
use super::Codec;

pub type MediaEvent = SessionEvent;
pub type MediaStats = SessionStats;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no free RTP port pair in {lo}..={hi}")]
    NoPorts { lo: u16, hi: u16 },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("dtmf: {0}")]
    Dtmf(#[from] DtmfError),
    #[error("recording: {0}")]
    Recording(#[from] hound::Error),
    #[error("srtp: {0}")]
    Srtp(#[from] SrtpError),
    #[error("media session has stopped")]
    Closed,
}

/// Hands out RTP/RTCP port pairs (even RTP port, RTCP = RTP + 1) from a range.
/// Ports in use by us are skipped; ports another process holds fail to bind
/// and are skipped too. The pair is picked at random (then the next free one
/// after it), so an off-path sender cannot guess a call's ports, and a
/// just-freed pair is unlikely to be reused at once (late packets of the
/// previous call would land in the next one).
pub struct PortAllocator {
    ip: IpAddr,
    lo: u16,
    hi: u16,
    in_use: Mutex<HashSet<u16>>,
}

impl PortAllocator {
    pub fn new(ip: IpAddr, range: RangeInclusive<u16>) -> Arc<Self> {
        // The first even port in the range (never 0).
        let lo = ((u32::from(*range.start()).max(2) + 1) & !1).min(u32::from(u16::MAX)) as u16;
        let hi = *range.end();
        Arc::new(PortAllocator {
            ip,
            lo,
            hi,
            in_use: Mutex::new(HashSet::new()),
        })
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn in_use(&self) -> usize {
        self.in_use.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn allocate(self: &Arc<Self>) -> Result<(PortLease, StdUdpSocket, StdUdpSocket), MediaError> {
        // Pairs whose RTCP port (RTP + 1) is still in the range.
        let pairs = if self.hi > self.lo {
            usize::from((self.hi - self.lo - 1) / 2 + 1)
        } else {
            0
        };
        let first = crate::random::below(pairs);
        for i in 0..pairs {
            let port = self.lo + 2 * ((first + i) % pairs) as u16;
            {
                let Ok(mut used) = self.in_use.lock() else {
                    break;
                };
                if !used.insert(port) {
                    continue;
                }
            }
            let lease = PortLease {
                alloc: self.clone(),
                port,
            };
            let Ok(rtp) = StdUdpSocket::bind(SocketAddr::new(self.ip, port)) else {
                continue;
            };
            let Ok(rtcp) = StdUdpSocket::bind(SocketAddr::new(self.ip, port + 1)) else {
                continue;
            };
            return Ok((lease, rtp, rtcp));
        }
        Err(MediaError::NoPorts {
            lo: self.lo,
            hi: self.hi,
        })
    }
}

/// Holds a port pair until dropped.
pub struct PortLease {
    alloc: Arc<PortAllocator>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut used) = self.alloc.in_use.lock() {
            used.remove(&self.port);
        }
    }
}

/// What a call's media needs besides its ports.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub codec: Codec,
    pub payload: PayloadMap,
    /// Remote RTP address from the SDP answer (`c=` + `m=` port).
    pub remote_rtp: SocketAddr,
    /// `a=rtcp:` if present.
    pub remote_rtcp: Option<SocketAddr>,
    /// Both sides agreed on `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// Symmetric RTP latching (default on).
    pub symmetric: bool,
    /// Write a stereo WAV here (left = we/caller, right = remote/callee).
    pub record_path: Option<PathBuf>,
    pub jitter: Option<JitterConfig>,
    pub opus: OpusSettings,
    /// Outgoing audio the handle buffers before `send` waits (frames of 20 ms).
    pub send_queue_frames: usize,
    /// Received frames buffered for `recv` before new ones are dropped.
    pub recv_queue_frames: usize,
    pub rtcp_interval_ms: u32,
    pub cname: Option<String>,
    /// SRTP/SRTCP with these keys (the SDP's `a=crypto`); `None`: plain RTP.
    pub srtp: Option<SrtpKeys>,
}

impl MediaConfig {
    pub fn new(codec: Codec, payload: PayloadMap, remote_rtp: SocketAddr) -> Self {
        MediaConfig {
            codec,
            payload,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: false,
            symmetric: true,
            record_path: None,
            jitter: None,
            opus: OpusSettings::default(),
            send_queue_frames: 50,
            recv_queue_frames: 50,
            rtcp_interval_ms: 5_000,
            cname: None,
            srtp: None,
        }
    }
}

/// The media namespace: see the module docs.
pub struct MediaSession;

impl MediaSession {
    /// Reserves and binds an RTP/RTCP port pair (do this before the SDP offer).
    pub fn bind(ports: &Arc<PortAllocator>) -> Result<BoundMedia, MediaError> {
        let (lease, rtp, rtcp) = ports.allocate()?;
        Ok(BoundMedia { lease, rtp, rtcp })
    }

    /// `bind` + `start` when the remote address is already known.
    pub fn start(ports: &Arc<PortAllocator>, cfg: MediaConfig) -> Result<MediaHandle, MediaError> {
        Self::bind(ports)?.start(cfg)
    }
}

/// Reads and drops every datagram queued on a non-blocking socket; returns
/// how many. Bounded (a socket buffer holds a few thousand at most).
fn discard_queued(sock: &StdUdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut dropped = 0;
    for _ in 0..65_536 {
        match sock.recv_from(&mut buf) {
            Ok(_) => dropped += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // e.g. ECONNREFUSED from an ICMP error: reported once, then cleared.
            Err(_) => {}
        }
    }
    dropped
}

/// Bound sockets waiting for the remote address.
pub struct BoundMedia {
    lease: PortLease,
    rtp: StdUdpSocket,
    rtcp: StdUdpSocket,
}

impl BoundMedia {
    pub fn local_rtp(&self) -> SocketAddr {
        self.rtp.local_addr().expect("bound")
    }

    pub fn local_rtcp(&self) -> SocketAddr {
        self.rtcp.local_addr().expect("bound")
    }

    /// Starts the call's media task (must run inside a tokio runtime).
    /// Whatever reached the ports before (while the call rang) is discarded:
    /// it must not decide which source the media latches onto.
    pub fn start(self, cfg: MediaConfig) -> Result<MediaHandle, MediaError> {
        self.rtp.set_nonblocking(true)?;
        self.rtcp.set_nonblocking(true)?;
        let early = discard_queued(&self.rtp) + discard_queued(&self.rtcp);
        if early > 0 {
            tracing::debug!(
                datagrams = early,
                "discarded media that arrived before the answer"
            );
        }
        let local_rtp = self.local_rtp();
        let rtp = UdpSocket::from_std(self.rtp)?;
        let rtcp = UdpSocket::from_std(self.rtcp)?;
        let mut scfg = SessionConfig::new(cfg.codec, cfg.payload, cfg.remote_rtp);
        scfg.remote_rtcp = cfg.remote_rtcp;
        scfg.rtcp_mux = cfg.rtcp_mux;
        scfg.symmetric = cfg.symmetric;
        scfg.opus = cfg.opus;
        scfg.rtcp_interval_ms = cfg.rtcp_interval_ms;
        if let Some(j) = cfg.jitter.clone() {
            scfg.jitter = j;
        }
        if let Some(c) = cfg.cname.clone() {
            scfg.cname = c;
        }
        let session = RtpSession::new(scfg)?;
        let srtp = cfg.srtp.as_ref().map(SrtpTransform::new).transpose()?;
        let recorder = match &cfg.record_path {
            Some(p) => Some(RecorderThread::start(StereoRecorder::create(p)?)),
            None => None,
        };
        let (audio_tx, audio_rx) = mpsc::channel(cfg.send_queue_frames.max(1));
        let (frames_tx, frames_rx) = mpsc::channel(cfg.recv_queue_frames.max(1));
        let (events_tx, events_rx) = mpsc::channel(64);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (stats_tx, stats_rx) = watch::channel(SessionStats::default());
        let generation = Arc::new(AtomicU64::new(0));
        let task = Task {
            session,
            srtp,
            rtp,
            rtcp,
            rtcp_mux: cfg.rtcp_mux,
            audio_rx,
            frames_tx,
            events_tx,
            cmd_rx,
            stats_tx,
            generation: generation.clone(),
            recorder,
            _lease: self.lease,
        };
        let join = tokio::spawn(task.run());
        Ok(MediaHandle {
            local_rtp,
            sender: MediaSender {
                audio_tx,
                generation,
            },
            cmd_tx,
            frames_rx,
            events_rx,
            stats_rx,
            join: Some(join),
        })
    }
}

/// Cloneable outgoing-audio side of a call (hand it to the engine task).
#[derive(Clone)]
pub struct MediaSender {
    audio_tx: mpsc::Sender<(u64, Vec<i16>)>,
    generation: Arc<AtomicU64>,
}

impl MediaSender {
    /// Queues 8 kHz mono PCM (ideally 160-sample frames). Waits while about
    /// `send_queue_frames` are already queued, which paces a producer that is
    /// faster than real time.
    pub async fn send(&self, pcm: Vec<i16>) -> Result<(), MediaError> {
        let g = self.generation.load(Ordering::Acquire);
        self.audio_tx
            .send((g, pcm))
            .await
            .map_err(|_| MediaError::Closed)
    }

    /// As [`MediaSender::send`] without waiting: `Err` when the queue is
    /// full (the audio is dropped) or the media has stopped.
    pub fn try_send(&self, pcm: Vec<i16>) -> Result<(), MediaError> {
        let g = self.generation.load(Ordering::Acquire);
        self.audio_tx
            .try_send((g, pcm))
            .map_err(|_| MediaError::Closed)
    }

    /// Discards everything queued so far (barge-in): no audio queued before
    /// the flush is sent after it (the next slot already sends what came after).
    pub fn flush(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

enum Cmd {
    Dtmf {
        digits: String,
        duration_ms: u32,
        reply: oneshot::Sender<Result<(), DtmfError>>,
    },
    SetRemote {
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    SetSending(bool),
    Stop,
}

/// The call side's handle on its media task.
pub struct MediaHandle {
    local_rtp: SocketAddr,
    sender: MediaSender,
    cmd_tx: mpsc::Sender<Cmd>,
    frames_rx: mpsc::Receiver<Vec<i16>>,
    events_rx: mpsc::Receiver<MediaEvent>,
    stats_rx: watch::Receiver<MediaStats>,
    join: Option<JoinHandle<MediaStats>>,
}

impl MediaHandle {
    pub fn local_rtp(&self) -> SocketAddr {
        self.local_rtp
    }

    pub fn sender(&self) -> MediaSender {
        self.sender.clone()
    }

    /// See [`MediaSender::send`].
    pub async fn send(&self, pcm: Vec<i16>) -> Result<(), MediaError> {
        self.sender.send(pcm).await
    }

    /// See [`MediaSender::flush`].
    pub fn flush(&self) {
        self.sender.flush()
    }

    /// The next 20 ms of received audio (160 samples), as soon as it has
    /// arrived in order; None once stopped.
    pub async fn recv(&mut self) -> Option<Vec<i16>> {
        self.frames_rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Vec<i16>> {
        self.frames_rx.try_recv().ok()
    }

    /// Both receivers at once (frames heard, events), to wait on either.
    pub fn receivers(
        &mut self,
    ) -> (
        &mut mpsc::Receiver<Vec<i16>>,
        &mut mpsc::Receiver<MediaEvent>,
    ) {
        (&mut self.frames_rx, &mut self.events_rx)
    }

    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events_rx.recv().await
    }

    pub fn try_event(&mut self) -> Option<MediaEvent> {
        self.events_rx.try_recv().ok()
    }

    /// Queues RFC 4733 digits (0-9 * # A-D), each `duration_ms` long.
    pub async fn send_dtmf(&self, digits: &str, duration_ms: u32) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.cmd_tx
            .send(Cmd::Dtmf {
                digits: digits.to_string(),
                duration_ms,
                reply,
            })
            .await
            .map_err(|_| MediaError::Closed)?;
        Ok(rx.await.map_err(|_| MediaError::Closed)??)
    }

    /// The remote moved (re-INVITE): send there, latch afresh.
    pub async fn set_remote(
        &self,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), MediaError> {
        self.cmd_tx
            .send(Cmd::SetRemote { rtp, rtcp })
            .await
            .map_err(|_| MediaError::Closed)
    }

    /// Whether RTP goes out ([`RtpSession::set_sending`]): off while the
    /// negotiated direction makes us recvonly or inactive (held).
    pub async fn set_sending(&self, sending: bool) -> Result<(), MediaError> {
        self.cmd_tx
            .send(Cmd::SetSending(sending))
            .await
            .map_err(|_| MediaError::Closed)
    }

    /// Latest stats (updated every tick).
    pub fn stats(&self) -> MediaStats {
        *self.stats_rx.borrow()
    }

    /// Stops the task (sends RTCP BYE, closes the recording) and returns the final stats.
    pub async fn stop(mut self) -> MediaStats {
        let _ = self.cmd_tx.send(Cmd::Stop).await;
        match self.join.take() {
            Some(j) => j.await.unwrap_or_else(|_| *self.stats_rx.borrow()),
            None => *self.stats_rx.borrow(),
        }
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        // Dropping the handle without stop(): the task ends when it sees the closed command channel.
        let _ = self.cmd_tx.try_send(Cmd::Stop);
    }
}

struct RecorderThread {
    tx: std::sync::mpsc::SyncSender<(Vec<i16>, Vec<i16>)>,
    join: std::thread::JoinHandle<Result<(), hound::Error>>,
}

impl RecorderThread {
    fn start(mut rec: StereoRecorder<std::io::BufWriter<std::fs::File>>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<i16>, Vec<i16>)>(500);
        let join = std::thread::Builder::new()
            .name("media-recorder".into())
            .spawn(move || {
                while let Ok((l, r)) = rx.recv() {
                    rec.push(&l, &r)?;
                }
                rec.finish()
            })
            .expect("spawn recorder thread");
        RecorderThread { tx, join }
    }
}

struct Task {
    session: RtpSession,
    /// Applied to every datagram in and out when the call negotiated SRTP.
    srtp: Option<SrtpTransform>,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    rtcp_mux: bool,
    audio_rx: mpsc::Receiver<(u64, Vec<i16>)>,
    frames_tx: mpsc::Sender<Vec<i16>>,
    events_tx: mpsc::Sender<MediaEvent>,
    cmd_rx: mpsc::Receiver<Cmd>,
    stats_tx: watch::Sender<MediaStats>,
    generation: Arc<AtomicU64>,
    recorder: Option<RecorderThread>,
    _lease: PortLease,
}

pub const TICK: Duration = Duration::from_millis(20);

/// Datagrams per socket a tick takes from the queue before it plays out
/// (2.5 s of 20 ms packets: a task stalled that long still catches up).
const READ_BUDGET: usize = 128;

enum Received {
    Rtp(std::io::Result<(usize, SocketAddr)>),
    Rtcp(std::io::Result<(usize, SocketAddr)>),
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next datagram of either socket; when both have one, either may come
/// first (tokio picks at random).
async fn recv_either(
    rtp: &UdpSocket,
    rtp_buf: &mut [u8],
    rtcp: &UdpSocket,
    rtcp_buf: &mut [u8],
) -> Received {
    tokio::select! {
        r = rtp.recv_from(rtp_buf) => Received::Rtp(r),
        r = rtcp.recv_from(rtcp_buf) => Received::Rtcp(r),
    }
}

impl Task {
    /// A datagram of the RTP socket (RTP, or RTCP with rtcp-mux), through
    /// SRTP when on: a packet that does not authenticate never reaches the
    /// session (so it cannot latch, switch SSRC or end the call).
    fn on_rtp_socket(&mut self, now_us: u64, from: SocketAddr, data: &[u8]) {
        let kind = if self.rtcp_mux && rtp::is_rtcp(data) {
            Packet::Rtcp
        } else {
            Packet::Rtp
        };
        match self.srtp.as_mut().map(|s| s.unprotect(kind, data)) {
            None => self.session.handle_rtp(now_us, from, data),
            Some(Ok(plain)) => self.session.handle_rtp(now_us, from, &plain),
            Some(Err(_)) => {} // counted in the SRTP stats
        }
    }

    fn on_rtcp_socket(&mut self, now_us: u64, from: SocketAddr, data: &[u8]) {
        match self.srtp.as_mut().map(|s| s.unprotect(Packet::Rtcp, data)) {
            None => self.session.handle_rtcp(now_us, from, data),
            Some(Ok(plain)) => self.session.handle_rtcp(now_us, from, &plain),
            Some(Err(_)) => {}
        }
    }

    /// The session's stats with the SRTP counters.
    fn stats(&mut self) -> MediaStats {
        let mut s = self.session.stats();
        if let Some(srtp) = &self.srtp {
            s.srtp = srtp.stats();
        }
        s
    }

    /// Sends one datagram of the session, protected when SRTP is on.
    async fn send(&mut self, channel: Channel, data: &[u8], dest: SocketAddr) {
        let kind = match channel {
            Channel::Rtp => Packet::Rtp,
            Channel::Rtcp => Packet::Rtcp,
        };
        let protected = match self.srtp.as_mut().map(|s| s.protect(kind, data)) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "SRTP could not protect a packet: not sent");
                return;
            }
        };
        let sock = if channel == Channel::Rtcp && !self.rtcp_mux {
            &self.rtcp
        } else {
            &self.rtp
        };
        let data = protected.as_deref().unwrap_or(data);
        if let Err(e) = sock.send_to(data, dest).await {
            tracing::debug!(error = %e, %dest, "media send failed");
        }
    }

    async fn flush_io(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            self.send(t.channel, &t.data, t.dest).await;
        }
        while let Some(e) = self.session.poll_event() {
            tracing::debug!(event = ?e, "media event");
            let _ = self.events_tx.try_send(e);
        }
    }

    /// Takes in a flush ([`MediaSender::flush`]): the audio queued in the
    /// session is dropped. Returns the current generation.
    fn sync_generation(&mut self, gen: &mut u64) -> u64 {
        let g = self.generation.load(Ordering::Acquire);
        if g != *gen {
            self.session.clear_audio();
            *gen = g;
        }
        g
    }

    async fn run(mut self) -> MediaStats {
        let start = Instant::now();
        let now_us = move || start.elapsed().as_micros() as u64;
        let at = move |us: u64| tokio::time::Instant::from_std(start + Duration::from_micros(us));
        let mut gen = self.generation.load(Ordering::Acquire);
        let mut rtp_buf = vec![0u8; 2048];
        let mut rtcp_buf = vec![0u8; 2048];
        let mut recv_dropped = 0u64;
        let mut audio_open = true;
        loop {
            self.sync_generation(&mut gen);
            // The session's next slot to send (early when audio is queued:
            // the first frame of a burst goes at once) or the jitter buffer's
            // deadline.
            let due = self.session.poll_timeout().map(at);
            let wants_audio = audio_open && self.session.queued_samples() < 2 * FRAME_8K;
            // The timeout comes before the sockets: they can be readable all
            // the time (a flood), a slot is due once per 20 ms and must not
            // wait. Before it sends, it takes what is already queued (a
            // stalled task catches up on its packets first), at most
            // READ_BUDGET datagrams per socket. Between slots the two sockets
            // share the task without priority, so a flood on one does not
            // shut out the other.
            tokio::select! {
                biased;
                cmd = self.cmd_rx.recv() => match cmd {
                    None | Some(Cmd::Stop) => break,
                    Some(Cmd::Dtmf { digits, duration_ms, reply }) => {
                        let _ = reply.send(self.session.send_dtmf(&digits, duration_ms));
                    }
                    Some(Cmd::SetRemote { rtp, rtcp }) => self.session.set_remote(rtp, rtcp),
                    Some(Cmd::SetSending(on)) => self.session.set_sending(on),
                },
                _ = sleep_until(due) => {
                    // A flush while we slept (barge-in): nothing queued
                    // before it may take this slot.
                    self.sync_generation(&mut gen);
                    for _ in 0..READ_BUDGET {
                        match self.rtp.try_recv_from(&mut rtp_buf) {
                            Ok((n, from)) => self.on_rtp_socket(now_us(), from, &rtp_buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {}
                        }
                    }
                    for _ in 0..READ_BUDGET {
                        match self.rtcp.try_recv_from(&mut rtcp_buf) {
                            Ok((n, from)) => self.on_rtcp_socket(now_us(), from, &rtcp_buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {}
                        }
                    }
                    while self.session.queued_samples() < 2 * FRAME_8K {
                        match self.audio_rx.try_recv() {
                            Ok((fg, pcm)) if fg == gen => self.session.push_audio(&pcm),
                            Ok(_) => {} // flushed
                            Err(_) => break,
                        }
                    }
                    self.session.handle_timeout(now_us());
                    let mut sent = false;
                    while let Some(frame) = self.session.poll_slot() {
                        sent = true;
                        if let Some(r) = &self.recorder {
                            let _ = r.tx.try_send((frame.sent, frame.received));
                        }
                    }
                    if sent {
                        let stats = self.stats();
                        self.stats_tx.send_replace(stats);
                    }
                }
                // Audio from the engine wakes the task: with a slot free it
                // goes out now, not at the next slot's time.
                got = self.audio_rx.recv(), if wants_audio => match got {
                    Some((fg, pcm)) if fg == self.sync_generation(&mut gen) => {
                        self.session.push_audio(&pcm)
                    }
                    Some(_) => {} // flushed
                    None => audio_open = false,
                },
                got = recv_either(&self.rtp, &mut rtp_buf, &self.rtcp, &mut rtcp_buf) => match got {
                    // Errors (e.g. ICMP port unreachable surfacing as ECONNREFUSED) are not fatal.
                    Received::Rtp(Ok((n, from))) => {
                        self.on_rtp_socket(now_us(), from, &rtp_buf[..n]);
                    }
                    Received::Rtcp(Ok((n, from))) => {
                        self.on_rtcp_socket(now_us(), from, &rtcp_buf[..n]);
                    }
                    Received::Rtp(Err(_)) | Received::Rtcp(Err(_)) => {}
                },
            }
            while let Some(heard) = self.session.poll_heard() {
                if self.frames_tx.try_send(heard).is_err() {
                    recv_dropped += 1;
                }
            }
            self.flush_io().await;
        }
        let bye = self.session.close(now_us());
        self.send(bye.channel, &bye.data, bye.dest).await;
        if let Some(r) = self.recorder.take() {
            drop(r.tx);
            let j = r.join;
            match tokio::task::spawn_blocking(move || j.join()).await {
                Ok(Ok(Ok(()))) => {}
                other => {
                    tracing::warn!(result = ?other.map(|r| r.map(|x| x.err().map(|e| e.to_string()))), "recording did not finish cleanly")
                }
            }
        }
        if recv_dropped > 0 {
            tracing::debug!(
                recv_dropped,
                "received frames dropped (call side not reading)"
            );
        }
        let stats = self.stats();
        self.stats_tx.send_replace(stats);
        crate::metrics::global().media_ended(self.session.config().codec, &stats);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{self, RtpHeader};

    fn lo() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut d = vec![];
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
        };
        rtp::write(&h, &[0xFF; 160], &mut d);
        d
    }

    /// Waits (bounded) until the session has sent `n` packets.
    async fn until_sent(m: &MediaHandle, n: u64) -> MediaStats {
        for _ in 0..1_000 {
            let s = m.stats();
            if s.packets_sent >= n {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the media task did not send {n} packets: {:?}", m.stats());
    }

    #[test]
    fn ports_are_random_even_pairs_in_the_range() {
        let mut firsts = HashSet::new();
        for _ in 0..16 {
            let ports = PortAllocator::new(lo(), 41_000..=42_999);
            let b = MediaSession::bind(&ports).unwrap();
            let (rtp, rtcp) = (b.local_rtp().port(), b.local_rtcp().port());
            assert!(rtp % 2 == 0 && rtcp == rtp + 1, "{rtp}/{rtcp}");
            assert!((41_000..=42_998).contains(&rtp), "{rtp}");
            firsts.insert(rtp);
        }
        // Round-robin from the bottom gave 41_000 every time.
        assert!(firsts.len() > 1, "{firsts:?}");
        // An odd start rounds up into the range, never below it.
        let ports = PortAllocator::new(lo(), 43_001..=43_003);
        let b = MediaSession::bind(&ports).unwrap();
        assert_eq!(b.local_rtp().port(), 43_002);
        assert!(MediaSession::bind(&ports).is_err());
    }

    #[tokio::test]
    async fn packets_queued_before_the_answer_are_discarded() {
        let ports = PortAllocator::new(lo(), 43_100..=43_999);
        let bound = MediaSession::bind(&ports).unwrap();
        // While the call rings, a stranger sends a stream good enough to pass
        // the latch probation, and RTCP.
        let stranger = StdUdpSocket::bind((lo(), 0)).unwrap();
        for seq in 0..5 {
            stranger
                .send_to(&rtp_packet(0xBAD, seq), bound.local_rtp())
                .unwrap();
        }
        let mut rr = vec![];
        super::super::rtcp::write_report(&mut rr, 0xBAD, None, &[]);
        stranger.send_to(&rr, bound.local_rtcp()).unwrap();
        // The answer names another address.
        let peer = StdUdpSocket::bind((lo(), 0)).unwrap();
        let cfg = MediaConfig::new(
            Codec::Pcmu,
            PayloadMap::default_for(Codec::Pcmu),
            peer.local_addr().unwrap(),
        );
        let m = bound.start(cfg).unwrap();
        let stats = until_sent(&m, 5).await;
        assert_eq!(
            (stats.packets_received, stats.rtcp_received),
            (0, 0),
            "{stats:?}"
        );
        // Our media still goes where the answer said.
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        assert!(peer.recv_from(&mut buf).is_ok());
        stranger.set_nonblocking(true).unwrap();
        assert!(
            stranger.recv_from(&mut buf).is_err(),
            "media went to the stranger"
        );
        m.stop().await;
    }

    /// A flood on the RTP socket must not hold up the 20 ms tick: with the
    /// sockets always readable, the tick still comes first when it is due.
    #[tokio::test(flavor = "current_thread")]
    async fn a_packet_flood_does_not_hold_up_the_tick() {
        let ports = PortAllocator::new(lo(), 44_000..=44_999);
        let bound = MediaSession::bind(&ports).unwrap();
        let peer = StdUdpSocket::bind((lo(), 0)).unwrap();
        let cfg = MediaConfig::new(
            Codec::Pcmu,
            PayloadMap::default_for(Codec::Pcmu),
            peer.local_addr().unwrap(),
        );
        let m = bound.start(cfg).unwrap();
        let mut published = m.stats_rx.clone();
        // Stats are published by the tick: wait for the first one.
        published.changed().await.unwrap();
        assert_eq!(published.borrow_and_update().packets_sent, 1);
        // The flood lands while the (only) runtime thread is busy, long enough
        // for the next tick to be due: when the task wakes, the socket is
        // readable and the tick is due at once.
        const FLOOD: u64 = READ_BUDGET as u64 + 50;
        let flooder = StdUdpSocket::bind((lo(), 0)).unwrap();
        let junk = [0x80u8, 99, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]; // unknown payload type
        for _ in 0..FLOOD {
            flooder.send_to(&junk, m.local_rtp()).unwrap();
        }
        std::thread::sleep(TICK + TICK / 4);
        published.changed().await.unwrap();
        // Stats are published only by the tick. If the thread stalled long
        // enough for two ticks to be due, both may have run before we look:
        // each may read at most its budget before it ticks.
        let second = *published.borrow_and_update();
        let ticks = second.packets_sent.saturating_sub(1).max(1);
        assert!(
            second.dropped_unknown_pt <= READ_BUDGET as u64 * ticks,
            "more than the budget was read before a tick: {second:?}"
        );
        // The flood is read too, and the ticks go on.
        for _ in 0..500 {
            if m.stats().packets_sent >= second.packets_sent + 2 {
                break;
            }
            published.changed().await.unwrap();
        }
        let stats = m.stop().await;
        assert!(
            stats.dropped_unknown_pt > READ_BUDGET as u64,
            "the rest of the flood is read after the tick: {stats:?}"
        );
        assert!(stats.packets_sent >= 3, "{stats:?}");
    }
}
