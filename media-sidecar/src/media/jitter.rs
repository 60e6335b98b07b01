//! Reorder buffer with loss concealment, sans-IO: packets go in with their
//! arrival time and come out as soon as they are in order. Nothing waits for a
//! playout clock: what hears the callee is a speech engine, which takes audio
//! as a stream (issue 17).
//!
//! Everything is in RTP timestamp units of the stream (8000/s for G.711,
//! 48000/s for Opus); `now_us` is the driver's monotonic clock. After every
//! [`JitterBuffer::insert`], and whenever [`JitterBuffer::next_deadline_us`]
//! comes, the consumer drains [`JitterBuffer::pop`] until it says
//! [`Playout::Wait`].
//!
//! ## Release rule
//! The `cursor` is the next timestamp expected.
//! - The packet at the cursor is released at once (zero added delay), and
//!   with it every buffered packet that follows in order.
//! - A packet ahead of the cursor (a gap: reordering or loss) is held. The
//!   missing packet is declared **lost** (the decoder conceals it; Opus may
//!   recover it from the next packet's FEC) and what is held is released when
//!   its wait runs out: it was due at `ts + base(ts) + target` (below). The
//!   packets after it set that deadline: `base` is the fastest transit seen,
//!   so once a later packet is held, the missing one is at most a frame
//!   short of its deadline. If it comes after all, it is **late** and
//!   dropped. So a packet reordered by less than `target` is put back in
//!   order, and a loss costs the packets after it at most `target` of waiting.
//! - Nothing arrives at all (the sender paused, or the path stalled): each
//!   frame is declared lost at its deadline (an **underrun**), so the consumer
//!   still gets 20 ms of concealment (fading to silence) every 20 ms and an
//!   engine's voice activity detection hears the pause.
//!
//! ## Delay model (how long a missing packet is waited for)
//! For every packet we record its *transit* `d = arrival - timestamp` (both in
//! timestamp units). Over a sliding window of the last [`JitterConfig::window`]
//! packets we first remove the clock drift (the slope between the minima of
//! the window's first and last quarters: the lower envelope, so late spikes
//! do not bend it; ignored below 500 ppm), then `base = min(d)` (the fastest
//! path) and the *target* is `percentile(d) - base` (the wait that lets that
//! share of packets arrive in time), clamped to `[min_delay, max_delay]`.
//!
//! ## Bounds
//! At most [`JitterConfig::max_packets`] packets are held (more are refused:
//! `overflow`); a packet more than [`JitterConfig::max_buffer_ms`] away from
//! the cursor is a stray unless the next one continues it (then the stream
//! jumped: the buffer re-anchors, `resets`); a consumer that comes back long
//! after a deadline conceals at most [`JitterConfig::max_catchup_frames`] and
//! skips the rest (`skipped`).

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone)]
pub struct JitterConfig {
    /// Timestamp units per second.
    pub clock_rate: u32,
    /// The concealment frame (20 ms) in timestamp units.
    pub frame_ts: u32,
    /// Bounds of the wait for a missing packet (the target).
    pub min_delay_ms: u32,
    pub max_delay_ms: u32,
    /// The wait until the window has enough samples.
    pub initial_delay_ms: u32,
    /// Packets in the delay-statistics window.
    pub window: usize,
    /// Share of packets that should arrive in time (0..1).
    pub percentile: f64,
    /// How far from the cursor (either way) a packet may be; farther ones are
    /// strays, or, when the next packet continues them, a jump of the stream.
    pub max_buffer_ms: u32,
    /// Most packets held (waiting for a gap before them).
    pub max_packets: usize,
    /// Most frames concealed at once when the consumer comes back late.
    pub max_catchup_frames: u32,
}

impl JitterConfig {
    /// Defaults for a stream at `clock_rate` with 20 ms frames.
    pub fn new(clock_rate: u32) -> Self {
        JitterConfig {
            clock_rate,
            frame_ts: clock_rate / 50,
            // The least wait for a missing packet. Not 20: a sender that
            // re-phases its talkspurts (ours does, see media::session) sends
            // up to a frame early, and the silence after looks 20 ms late.
            min_delay_ms: 30,
            max_delay_ms: 400,
            initial_delay_ms: 40,
            window: 250,
            percentile: 0.95,
            max_buffer_ms: 1000,
            max_packets: 64,
            max_catchup_frames: 10,
        }
    }

    fn ms_to_ts(&self, ms: u32) -> i64 {
        ms as i64 * self.clock_rate as i64 / 1000
    }
}

/// What to render next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Packet { ts: i64, dur: u32, payload: Vec<u8> },
    /// The packet at `ts` is missing: conceal `dur`. `next` is the payload of
    /// the packet that starts right after (for Opus in-band FEC), if buffered.
    Lost {
        ts: i64,
        dur: u32,
        next: Option<Vec<u8>>,
    },
    /// Nothing to release now (`dur` is one frame, for callers that count
    /// frames); ask again after the next insert or at
    /// [`JitterBuffer::next_deadline_us`].
    Wait { dur: u32 },
}

/// What became of an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Queued,
    /// Its time has already been played (or concealed).
    Late,
    Duplicate,
    /// The buffer re-anchored on this packet (first packet or a stream jump).
    Reset,
    /// Refused: too far from the cursor (a stray), or the buffer is full.
    Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JitterStats {
    pub queued_packets: usize,
    /// Audio held after the cursor (waiting for a gap before it), in ms.
    pub depth_ms: f64,
    /// Current wait for a missing packet, in ms.
    pub target_ms: f64,
    pub played: u64,
    /// Of those, packets that waited in the buffer (for a packet before
    /// them); the others were released the moment they arrived.
    pub held: u64,
    /// Frames concealed because the packet was missing when due while later
    /// packets were buffered (a gap: loss or lateness).
    pub lost: u64,
    /// Frames concealed with nothing buffered at all (the sender paused, or
    /// everything is late).
    pub underruns: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Frames neither played nor concealed because the consumer came back
    /// long after their deadline.
    pub skipped: u64,
    /// Packets refused: too far from the cursor, or the buffer full.
    pub overflow: u64,
    pub resets: u64,
}

/// The delay model fitted to the window: a packet stamped `ts` is due at
/// `ts + base_at(ts) + target`.
#[derive(Debug, Clone, Copy)]
struct Model {
    ts_ref: i64,
    base: i64,
    /// Drift of the transit per timestamp unit (sender clock vs ours), from the
    /// lower envelope of the window (robust to late spikes).
    slope: f64,
    target: i64,
}

impl Model {
    fn base_at(&self, ts: i64) -> i64 {
        self.base + (self.slope * (ts - self.ts_ref) as f64).round() as i64
    }

    /// When the packet stamped `ts` is given up: its expected arrival plus
    /// the target, plus [`GRACE_MS`] (see there).
    fn due(&self, ts: i64, grace: i64) -> i64 {
        ts.saturating_add(self.base_at(ts))
            .saturating_add(self.target)
            .saturating_add(grace)
    }
}

/// Added to every deadline: a packet that arrives exactly as late as the
/// target (the percentile) would otherwise race our own timer.
const GRACE_MS: u32 = 2;

/// Largest clock drift we model (0.2%); real clocks are within 0.01-0.1%.
/// More is a step in the path's delay (or a sender re-phasing its
/// talkspurts), not drift: extrapolated as drift, a 20 ms step became a 40 ms
/// error in the expected arrival (measured).
const MAX_SLOPE: f64 = 0.002;
/// Smaller estimated drifts (500 ppm) are treated as none.
const MIN_SLOPE: f64 = 0.0005;

struct Entry {
    dur: u32,
    payload: Vec<u8>,
    arrived_us: u64,
}

pub struct JitterBuffer {
    cfg: JitterConfig,
    packets: BTreeMap<i64, Entry>,
    /// Sum of the held packets' durations.
    held_ts: i64,
    /// Next timestamp to release. None until the first packet.
    cursor: Option<i64>,
    /// True once anything was released or declared lost (the cursor is committed).
    committed: bool,
    /// (timestamp, transit) of the last `window` packets.
    transits: VecDeque<(i64, i64)>,
    cached: Option<Model>,
    /// End timestamp of the last stray: a packet that continues it makes the
    /// stream's jump real.
    stray_end: Option<i64>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        JitterBuffer {
            cfg,
            packets: BTreeMap::new(),
            held_ts: 0,
            cursor: None,
            committed: false,
            transits: VecDeque::new(),
            cached: None,
            stray_end: None,
            stats: JitterStats::default(),
        }
    }

    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    fn now_ts(&self, now_us: u64) -> i64 {
        (now_us as i128 * self.cfg.clock_rate as i128 / 1_000_000) as i64
    }

    /// Forgets everything (new source).
    pub fn reset(&mut self) {
        let stats = self.stats;
        *self = JitterBuffer::new(self.cfg.clone());
        self.stats = stats;
    }

    /// Adds a packet with extended timestamp `ts` covering `dur` units.
    pub fn insert(&mut self, now_us: u64, ts: i64, dur: u32, payload: Vec<u8>) -> Inserted {
        let now = self.now_ts(now_us);
        let dur = dur.max(1);
        let mut outcome = Inserted::Queued;
        let range = self.cfg.ms_to_ts(self.cfg.max_buffer_ms);
        match self.cursor {
            Some(c) if ts.saturating_sub(c).saturating_abs() > range => {
                // A stray, unless it continues the previous stray: then the
                // stream jumped, and we follow it.
                let continues = self.stray_end.is_some_and(|end| {
                    (0..=2 * self.cfg.frame_ts as i64).contains(&ts.saturating_sub(end))
                });
                if !continues {
                    self.stray_end = Some(ts.saturating_add(dur as i64));
                    self.stats.overflow += 1;
                    return Inserted::Dropped;
                }
                self.reset();
                self.stats.resets += 1;
                self.cursor = Some(ts);
                outcome = Inserted::Reset;
            }
            Some(c) if !self.committed && ts < c => self.cursor = Some(ts),
            Some(_) => {}
            None => {
                self.cursor = Some(ts);
                outcome = Inserted::Reset;
            }
        }
        self.stray_end = None;
        // Every packet, late or not, informs the delay estimate.
        self.transits.push_back((ts, now.saturating_sub(ts)));
        if self.transits.len() > self.cfg.window.max(1) {
            self.transits.pop_front();
        }
        self.cached = None;

        let Some(cursor) = self.cursor else {
            return outcome;
        };
        if ts < cursor {
            self.stats.late += 1;
            return Inserted::Late;
        }
        if self.packets.contains_key(&ts) {
            self.stats.duplicates += 1;
            return Inserted::Duplicate;
        }
        if self.packets.len() >= self.cfg.max_packets.max(1) {
            self.stats.overflow += 1;
            return Inserted::Dropped;
        }
        self.packets.insert(
            ts,
            Entry {
                dur,
                payload,
                arrived_us: now_us,
            },
        );
        self.held_ts += dur as i64;
        outcome
    }

    fn delay_model(&mut self) -> Model {
        if let Some(m) = self.cached {
            return m;
        }
        let min_t = self.cfg.ms_to_ts(self.cfg.min_delay_ms);
        let max_t = self.cfg.ms_to_ts(self.cfg.max_delay_ms).max(min_t);
        let n = self.transits.len();
        let ts_ref = self.transits.iter().map(|&(ts, _)| ts).max().unwrap_or(0);
        // Drift: slope between the minima of the first and last quarters of a
        // full window (the lower envelope, robust to late spikes). Below
        // MIN_SLOPE it is noise (real clocks drift < 100 ppm, which the sliding
        // window absorbs anyway), so it is taken as 0 to keep the model still.
        let mut slope = 0.0;
        if n >= self.cfg.window.min(100) {
            let q = n / 4;
            let argmin =
                |it: &mut dyn Iterator<Item = &(i64, i64)>| it.min_by_key(|&&(_, d)| d).copied();
            let (h1, h2) = (
                argmin(&mut self.transits.iter().take(q)),
                argmin(&mut self.transits.iter().skip(n - q)),
            );
            if let (Some((t1, d1)), Some((t2, d2))) = (h1, h2) {
                if t2 - t1 >= self.cfg.clock_rate as i64 {
                    let s = (d2 - d1) as f64 / (t2 - t1) as f64;
                    if s.abs() >= MIN_SLOPE {
                        slope = s.clamp(-MAX_SLOPE, MAX_SLOPE);
                    }
                }
            }
        }
        let mut r: Vec<i64> = self
            .transits
            .iter()
            .map(|&(ts, d)| d - (slope * (ts - ts_ref) as f64).round() as i64)
            .collect();
        r.sort_unstable();
        let base = r.first().copied().unwrap_or(0);
        let target = if n < 10 {
            self.cfg.ms_to_ts(self.cfg.initial_delay_ms)
        } else {
            let idx = ((n - 1) as f64 * self.cfg.percentile.clamp(0.0, 1.0)).round() as usize;
            r.get(idx).copied().unwrap_or(base) - base
        };
        let m = Model {
            ts_ref,
            base,
            slope,
            target: target.clamp(min_t, max_t),
        };
        self.cached = Some(m);
        m
    }

    /// When (µs) the missing packet at the cursor is given up, if one is
    /// awaited: call [`JitterBuffer::pop`] then.
    pub fn next_deadline_us(&mut self) -> Option<u64> {
        let cursor = self.cursor?;
        if !self.committed {
            // The first packet is released at once: nothing is awaited before it.
            return None;
        }
        let grace = self.cfg.ms_to_ts(GRACE_MS);
        let due = self.delay_model().due(cursor, grace);
        let rate = i128::from(self.cfg.clock_rate.max(1));
        let us = (i128::from(due) * 1_000_000 + rate - 1).div_euclid(rate);
        Some(u64::try_from(us.max(0)).unwrap_or(u64::MAX))
    }

    /// The next thing to release at `now_us`, or [`Playout::Wait`].
    pub fn pop(&mut self, now_us: u64) -> Playout {
        let frame = self.cfg.frame_ts.max(1);
        let wait = Playout::Wait { dur: frame };
        let Some(mut cursor) = self.cursor else {
            return wait;
        };
        // Discard anything whose time has passed (overlapping the cursor:
        // it cannot be split cleanly).
        while let Some((&ts, _)) = self.packets.first_key_value() {
            if ts >= cursor {
                break;
            }
            if let Some(e) = self.packets.remove(&ts) {
                self.held_ts -= e.dur as i64;
            }
            self.stats.late += 1;
        }
        let next = self.packets.first_key_value().map(|(&ts, _)| ts);
        if next == Some(cursor) {
            let Some(e) = self.packets.remove(&cursor) else {
                return wait;
            };
            self.held_ts -= e.dur as i64;
            self.cursor = Some(cursor.saturating_add(e.dur as i64));
            self.committed = true;
            self.stats.played += 1;
            if now_us > e.arrived_us {
                self.stats.held += 1;
            }
            return Playout::Packet {
                ts: cursor,
                dur: e.dur,
                payload: e.payload,
            };
        }
        if !self.committed {
            return wait;
        }
        let now = self.now_ts(now_us);
        let grace = self.cfg.ms_to_ts(GRACE_MS);
        let due = self.delay_model().due(cursor, grace);
        if now < due {
            return wait;
        }
        // Back long after the deadline: skip what is too old to be worth
        // concealing (never past a held packet).
        let behind = now.saturating_sub(due) / frame as i64;
        let cap = i64::from(self.cfg.max_catchup_frames);
        if behind > cap {
            let mut skip = (behind - cap) * frame as i64;
            if let Some(n) = next {
                skip = skip.min(n - cursor);
            }
            if skip > 0 {
                cursor = cursor.saturating_add(skip);
                self.cursor = Some(cursor);
                self.stats.skipped += (skip / frame as i64) as u64;
                if next == Some(cursor) {
                    return self.pop(now_us);
                }
            }
        }
        let dur = match next {
            Some(ts) => ((ts - cursor).min(frame as i64)) as u32,
            None => frame,
        };
        let after = cursor.saturating_add(dur as i64);
        let next_payload = self.packets.get(&after).map(|e| e.payload.clone());
        self.cursor = Some(after);
        if next.is_some() {
            self.stats.lost += 1;
        } else {
            self.stats.underruns += 1;
        }
        Playout::Lost {
            ts: cursor,
            dur,
            next: next_payload,
        }
    }

    pub fn stats(&mut self) -> JitterStats {
        let target = self.delay_model().target;
        let rate = self.cfg.clock_rate.max(1) as f64 / 1000.0;
        let mut s = self.stats;
        s.queued_packets = self.packets.len();
        s.depth_ms = self.held_ts as f64 / rate;
        s.target_ms = target as f64 / rate;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: u64 = 20_000;

    /// What a run released: the packet index (-1 for a concealed frame) and
    /// when (µs), in order.
    type Released = Vec<(i64, u64)>;

    /// Event-driven like the session: packet i (timestamp i*160) arrives at
    /// `arrival(i)` µs (None = lost); after every arrival and at every deadline
    /// the buffer is drained. Runs until `until_us`.
    fn run(
        n: usize,
        arrival: impl Fn(usize) -> Option<u64>,
        until_us: u64,
        cfg: JitterConfig,
    ) -> (Released, JitterStats) {
        let mut jb = JitterBuffer::new(cfg);
        let mut events: Vec<(u64, usize)> =
            (0..n).filter_map(|i| arrival(i).map(|t| (t, i))).collect();
        events.sort();
        let mut ev = events.into_iter().peekable();
        let mut out = Vec::new();
        for _ in 0..1_000_000 {
            let deadline = jb.next_deadline_us();
            let arriving = ev.peek().copied();
            let now = match (arriving, deadline) {
                (Some((t, _)), Some(d)) if d <= t => d,
                (Some((t, i)), _) => {
                    jb.insert(t, i as i64 * 160, 160, vec![i as u8, (i >> 8) as u8]);
                    ev.next();
                    t
                }
                (None, Some(d)) => d,
                (None, None) => break,
            };
            if now > until_us {
                break;
            }
            drain(&mut jb, now, &mut out);
        }
        let s = jb.stats();
        (out, s)
    }

    fn drain(jb: &mut JitterBuffer, now: u64, out: &mut Released) {
        for _ in 0..64 {
            match jb.pop(now) {
                Playout::Packet { ts, .. } => out.push((ts / 160, now)),
                Playout::Lost { .. } => out.push((-1, now)),
                Playout::Wait { .. } => return,
            }
        }
        panic!("pop never said Wait");
    }

    fn played(out: &Released) -> Vec<i64> {
        out.iter().map(|x| x.0).filter(|&x| x >= 0).collect()
    }

    /// How long packet i waited in the buffer (release - arrival).
    fn waited(out: &Released, arrival: impl Fn(usize) -> Option<u64>) -> Vec<u64> {
        out.iter()
            .filter(|x| x.0 >= 0)
            .map(|&(i, at)| at - arrival(i as usize).unwrap())
            .collect()
    }

    #[test]
    fn in_order_packets_are_released_on_arrival_with_zero_added_delay() {
        // Steady, then with in-order jitter (up to 15 ms, never overtaking).
        for jit in [0u64, 15_000] {
            let arrival =
                move |i: usize| Some(i as u64 * FRAME_US + 5_000 + (i as u64 * 7_919) % (jit + 1));
            let (out, s) = run(300, arrival, 10_000_000, JitterConfig::new(8000));
            assert_eq!(played(&out)[..], (0..300).collect::<Vec<_>>()[..]);
            assert!(
                waited(&out, arrival).iter().all(|&w| w == 0),
                "jitter {jit}: a packet in order waited"
            );
            assert_eq!((s.lost, s.late, s.held), (0, 0, 0), "{s:?}");
        }
    }

    #[test]
    fn a_reordered_pair_is_released_in_order() {
        // Packet 2k+2 arrives 5 ms before packet 2k+1.
        let arrival = |i: usize| {
            let base = i as u64 * FRAME_US + 2_000;
            Some(if i % 2 == 1 { base + 25_000 } else { base })
        };
        let (out, s) = run(300, arrival, 6_100_000, JitterConfig::new(8000));
        assert_eq!(played(&out)[..], (0..300).collect::<Vec<_>>()[..]);
        assert_eq!((s.lost, s.late), (0, 0), "{s:?}");
        // The early one waits for its predecessor only (5 ms), the late one not at all.
        let w = waited(&out, arrival);
        assert!(w.iter().all(|&w| w <= 5_000), "{:?}", &w[..10]);
        // Even packets 2 ms in transit, odd ones 27 ms: the wait covers the spread.
        assert!(
            (25.0..=30.0).contains(&s.target_ms),
            "target {}",
            s.target_ms
        );
    }

    #[test]
    fn a_gap_is_concealed_after_the_bound_and_what_follows_goes_on() {
        let lost = |i: usize| i == 100 || i == 200;
        let arrival = move |i: usize| (!lost(i)).then_some(i as u64 * FRAME_US + 3_000);
        let (out, s) = run(300, arrival, 6_100_000, JitterConfig::new(8000));
        let seq: Vec<i64> = out.iter().take(300).map(|x| x.0).collect();
        let mut expect: Vec<i64> = (0..300).map(|i| i as i64).collect();
        expect[100] = -1;
        expect[200] = -1;
        assert_eq!(seq, expect);
        assert_eq!((s.lost, s.late), (2, 0), "{s:?}");
        // The loss costs the next packet at most the wait (30 ms, steady
        // path) less the 20 ms it came after the lost one.
        let concealed_at = out[100].1;
        assert!(
            concealed_at <= 100 * FRAME_US + 3_000 + 32_000,
            "{concealed_at}"
        );
        let w = waited(&out, arrival);
        assert!(w.iter().all(|&w| w <= 12_000), "{w:?}");

        // Nothing follows: each missing frame is concealed at its deadline,
        // one per 20 ms, so the consumer hears the pause in real time.
        let arrival = |i: usize| (i < 50).then_some(i as u64 * FRAME_US + 3_000);
        let (out, s) = run(60, arrival, 2_000_000, JitterConfig::new(8000));
        let concealed: Vec<u64> = out.iter().filter(|x| x.0 < 0).map(|x| x.1).collect();
        assert_eq!(s.underruns as usize, concealed.len());
        assert!(concealed.len() >= 45, "{}", concealed.len());
        assert!(
            concealed.windows(2).all(|w| w[1] - w[0] == FRAME_US),
            "{concealed:?}"
        );
        assert!(concealed[0] <= 50 * FRAME_US + 3_000 + 32_000);
    }

    #[test]
    fn random_loss_is_concealed_and_the_rest_plays_in_order() {
        let lost = |i: usize| (i * 7919) % 20 == 3; // 5%
        let arrival = move |i: usize| (!lost(i)).then_some(i as u64 * FRAME_US + 3_000);
        let (out, s) = run(500, arrival, 10_100_000, JitterConfig::new(8000));
        let expect: Vec<i64> = (0..500).filter(|&i| !lost(i)).map(|i| i as i64).collect();
        assert_eq!(played(&out), expect);
        assert_eq!(s.lost as usize, (0..500).filter(|&i| lost(i)).count());
        assert_eq!(s.late, 0);
    }

    #[test]
    fn jittery_network_gets_a_matching_wait() {
        // Uniform-ish jitter 0..60 ms (deterministic LCG), which reorders.
        let jit = |i: usize| (i as u64 * 2_654_435_761) % 60_000;
        let arrival = move |i: usize| Some(i as u64 * FRAME_US + jit(i));
        let (out, s) = run(1000, arrival, 30_000_000, JitterConfig::new(8000));
        assert!(
            (50.0..=60.0).contains(&s.target_ms),
            "target {}",
            s.target_ms
        );
        // With a 95th-percentile wait about 5% may be late; allow a margin.
        assert!(s.late + s.lost <= 80, "{s:?}");
        assert!(played(&out).len() >= 930);
        assert!(played(&out).windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sender_clock_drift_either_way() {
        // 0.1% either way: ten times what real clocks drift.
        for period in [19_980.0, 20_020.0] {
            let arrival = move |i: usize| Some((i as f64 * period) as u64 + 2_000);
            let (out, s) = run(1500, arrival, 40_000_000, JitterConfig::new(8000));
            let p = played(&out);
            assert_eq!(p.len(), 1500, "period {period}: {s:?}");
            assert_eq!((s.late, s.lost), (0, 0), "period {period}: {s:?}");
            assert!(waited(&out, arrival).iter().all(|&w| w == 0));
        }
    }

    #[test]
    fn a_consumer_back_long_after_the_deadline_conceals_a_bounded_amount() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        for i in 0..20u64 {
            jb.insert(i * FRAME_US, i as i64 * 160, 160, vec![0]);
            let mut out = vec![];
            drain(&mut jb, i * FRAME_US, &mut out);
        }
        // The stream stops and the consumer sleeps 10 s.
        let mut out = vec![];
        drain(&mut jb, 10_400_000, &mut out);
        assert!(out.len() <= 11, "{} frames concealed at once", out.len());
        let s = jb.stats();
        assert!(s.skipped >= 480, "{s:?}");
        // It goes on from the present: the next deadline is within a frame or two.
        let d = jb.next_deadline_us().unwrap();
        assert!((10_400_000..=10_460_000).contains(&d), "{d}");
    }

    #[test]
    fn hostile_timestamps_do_not_panic_or_grow_the_buffer() {
        let cfg = JitterConfig::new(8000);
        let cap = cfg.max_packets;
        let mut jb = JitterBuffer::new(cfg);
        let mut lcg = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            lcg = lcg
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lcg >> 11
        };
        let mut now = 0u64;
        let mut out = vec![];
        for k in 0..20_000u64 {
            now += next() % 30_000;
            let r = next();
            let ts = match r % 6 {
                0 => (r >> 3) as i64 - (1 << 51),          // anywhere
                1 => k as i64 * 160 + (r % 8000) as i64,   // ahead, in range
                2 => k as i64 * 160 - (r % 16_000) as i64, // behind
                3 => [i64::MAX - 10, i64::MIN + 10, 0][(r % 3) as usize],
                _ => k as i64 * 160, // the stream
            };
            let dur = [160u32, 1, 0, 80, 5000][(r % 5) as usize];
            jb.insert(now, ts, dur, vec![0; (r % 200) as usize]);
            out.clear();
            drain(&mut jb, now, &mut out);
            if let Some(d) = jb.next_deadline_us() {
                if d <= now {
                    out.clear();
                    drain(&mut jb, now, &mut out);
                }
            }
            let s = jb.stats();
            assert!(s.queued_packets <= cap, "{s:?}");
            assert!(s.depth_ms.is_finite() && s.target_ms.is_finite());
        }
    }

    #[test]
    fn duplicates_late_strays_and_a_stream_jump() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let mut out = vec![];
        assert_eq!(jb.insert(0, 0, 160, vec![0]), Inserted::Reset);
        drain(&mut jb, 0, &mut out);
        assert_eq!(jb.insert(1_000, 320, 160, vec![2]), Inserted::Queued);
        assert_eq!(jb.insert(2_000, 320, 160, vec![2]), Inserted::Duplicate);
        drain(&mut jb, 2_000, &mut out);
        assert_eq!(jb.insert(3_000, 160, 160, vec![1]), Inserted::Queued);
        drain(&mut jb, 3_000, &mut out);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(jb.insert(4_000, 0, 160, vec![0]), Inserted::Late);
        // One packet 10 s away is a stray: dropped, the stream goes on.
        assert_eq!(jb.insert(5_000, 80_000, 160, vec![9]), Inserted::Dropped);
        assert_eq!(jb.insert(6_000, 480, 160, vec![3]), Inserted::Queued);
        // Two in a row there: the stream jumped, and the buffer follows.
        assert_eq!(jb.insert(7_000, 80_000, 160, vec![9]), Inserted::Dropped);
        assert_eq!(jb.insert(8_000, 80_160, 160, vec![9]), Inserted::Reset);
        out.clear();
        drain(&mut jb, 8_000, &mut out);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), [501]);
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.resets, s.overflow), (1, 1, 1, 2));
    }

    #[test]
    fn lost_reports_next_payload_for_fec() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        jb.insert(0, 0, 160, vec![0]);
        assert!(matches!(jb.pop(0), Playout::Packet { ts: 0, .. }));
        jb.insert(40_000, 320, 160, vec![2]);
        assert_eq!(jb.pop(40_000), Playout::Wait { dur: 160 });
        let d = jb.next_deadline_us().unwrap();
        assert_eq!(
            jb.pop(d),
            Playout::Lost {
                ts: 160,
                dur: 160,
                next: Some(vec![2])
            }
        );
        assert_eq!(
            jb.pop(d),
            Playout::Packet {
                ts: 320,
                dur: 160,
                payload: vec![2]
            }
        );
    }

    #[test]
    fn the_buffer_holds_a_bounded_number_of_packets() {
        let cfg = JitterConfig {
            max_packets: 10,
            ..JitterConfig::new(8000)
        };
        let mut jb = JitterBuffer::new(cfg);
        jb.insert(0, 0, 160, vec![]);
        assert!(matches!(jb.pop(0), Playout::Packet { .. }));
        // Packet 1 missing; 30 more arrive at once but only 10 are held.
        for i in 2..32i64 {
            jb.insert(0, i * 160, 160, vec![]);
        }
        let s = jb.stats();
        assert_eq!((s.queued_packets, s.overflow), (10, 20));
        assert!(s.depth_ms <= 200.0);
    }
}
