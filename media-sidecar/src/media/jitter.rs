//! Adaptive jitter buffer, sans-IO: packets go in with their arrival time,
//! playout instructions come out when the driver's 20 ms clock asks.
//!
//! Everything is in RTP timestamp units of the stream (8000/s for G.711,
//! 48000/s for Opus); `now_us` is the driver's monotonic clock.
//!
//! ## Playout rule
//! For every packet we record its *transit* `d = arrival - timestamp` (both in
//! timestamp units). Over a sliding window of the last [`JitterConfig::window`]
//! packets we first remove the clock drift (the slope between the minima of
//! the window's first and last quarters: the lower envelope, so late spikes
//! do not bend it; ignored below 500 ppm), then `base = min(d)` (the fastest path) and the *target delay* is
//! `percentile(d) - base` (the extra delay that makes that share of packets
//! arrive in time), clamped to `[min_delay, max_delay]`. The packet stamped
//! `ts` is due at `ts + base(ts) + target`, i.e. at time `now` the ideal
//! playout position is about `now - base - target`, and the buffer's `cursor`
//! (next timestamp to play) is steered towards it:
//!
//! - packet at cursor present: play it, unless we are more than a frame
//!   *early* (the target grew: **stretch**, i.e. conceal one frame without
//!   moving the cursor) or *late* by more than 1.25 frames on average over the
//!   last ~0.6 s with more buffered behind it (the target shrank or the
//!   sender's clock is faster: **drop** it, at most one drop per
//!   [`JitterConfig::drop_spacing_frames`] frames; averaging keeps one late
//!   tick of our own timer from costing audio);
//! - packet at cursor missing and due (`cursor <= ideal`): declare it **lost**
//!   (the decoder conceals; Opus may recover it from the next packet's FEC) and
//!   move on; if it arrives later it is counted **late** and dropped;
//! - missing and not yet due: stretch (wait).
//!
//! So reordering within the current delay is absorbed, late packets feed the
//! delay estimate (and so raise the target), and clock drift shows up as a
//! slowly moving `base` that the drop/stretch rules follow.
//! A timestamp jump of more than [`JitterConfig::reset_after_ms`] re-anchors.

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone)]
pub struct JitterConfig {
    /// Timestamp units per second.
    pub clock_rate: u32,
    /// The playout frame (20 ms) in timestamp units.
    pub frame_ts: u32,
    pub min_delay_ms: u32,
    pub max_delay_ms: u32,
    /// Target delay until the window has enough samples.
    pub initial_delay_ms: u32,
    /// Packets in the delay-statistics window.
    pub window: usize,
    /// Share of packets that should arrive in time (0..1).
    pub percentile: f64,
    /// Hard cap on buffered audio; beyond it the oldest packets are dropped.
    pub max_buffer_ms: u32,
    /// Minimum spacing (in frames) between two adaptive drops.
    pub drop_spacing_frames: u32,
    /// A packet this far from the cursor (either way) re-anchors the buffer.
    pub reset_after_ms: u32,
}

impl JitterConfig {
    /// Defaults for a stream at `clock_rate` with 20 ms frames.
    pub fn new(clock_rate: u32) -> Self {
        JitterConfig {
            clock_rate,
            frame_ts: clock_rate / 50,
            min_delay_ms: 20,
            max_delay_ms: 400,
            initial_delay_ms: 40,
            window: 250,
            percentile: 0.95,
            max_buffer_ms: 1000,
            drop_spacing_frames: 5,
            reset_after_ms: 5_000,
        }
    }

    fn ms_to_ts(&self, ms: u32) -> i64 {
        ms as i64 * self.clock_rate as i64 / 1000
    }
}

/// What to render next. Each item covers `dur` timestamp units.
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
    /// Nothing to play yet (not started, waiting for a due packet, or
    /// stretching to grow the delay): render `dur` of silence/concealment
    /// without consuming any timestamp.
    Wait { dur: u32 },
}

/// What became of an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Queued,
    /// Its time has already been played (or concealed).
    Late,
    Duplicate,
    /// The buffer re-anchored on this packet (first packet or timestamp jump).
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JitterStats {
    pub queued_packets: usize,
    /// Buffered audio after the cursor, in ms.
    pub depth_ms: f64,
    /// Current target delay, in ms.
    pub target_ms: f64,
    pub played: u64,
    /// Frames concealed because the packet was missing when due while later
    /// packets were buffered (a gap: loss or lateness).
    pub lost: u64,
    /// Frames concealed with nothing buffered at all (the sender paused, or
    /// everything is late).
    pub underruns: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Frames of waiting/stretching (including the initial fill).
    pub stretched: u64,
    /// Packets dropped to shrink the delay.
    pub dropped: u64,
    /// Packets dropped because the buffer was full.
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
}

/// Largest clock drift we model (2%); real clocks are within 0.01-0.1%.
const MAX_SLOPE: f64 = 0.02;
/// Smaller estimated drifts (500 ppm) are treated as none.
const MIN_SLOPE: f64 = 0.0005;

struct Entry {
    dur: u32,
    payload: Vec<u8>,
}

pub struct JitterBuffer {
    cfg: JitterConfig,
    packets: BTreeMap<i64, Entry>,
    /// Next timestamp to play. None until the first packet.
    cursor: Option<i64>,
    /// True once anything was played or declared lost (the cursor is committed).
    committed: bool,
    /// (timestamp, transit) of the last `window` packets.
    transits: VecDeque<(i64, i64)>,
    cached: Option<Model>,
    last_drop_cursor: Option<i64>,
    /// Smoothed lag (EMA over ~32 pops, i.e. ~0.6 s), which drives drops so
    /// that a single late tick never costs audio.
    lag_ema: Option<f64>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        JitterBuffer {
            cfg,
            packets: BTreeMap::new(),
            cursor: None,
            committed: false,
            transits: VecDeque::new(),
            cached: None,
            last_drop_cursor: None,
            lag_ema: None,
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
        let mut outcome = Inserted::Queued;
        match self.cursor {
            Some(c) if (ts - c).abs() > self.cfg.ms_to_ts(self.cfg.reset_after_ms) => {
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
        // Every packet, late or not, informs the delay estimate.
        self.transits.push_back((ts, now - ts));
        if self.transits.len() > self.cfg.window {
            self.transits.pop_front();
        }
        self.cached = None;

        let cursor = self.cursor.expect("set above");
        if ts < cursor {
            self.stats.late += 1;
            return Inserted::Late;
        }
        if self.packets.contains_key(&ts) {
            self.stats.duplicates += 1;
            return Inserted::Duplicate;
        }
        self.packets.insert(
            ts,
            Entry {
                dur: dur.max(1),
                payload,
            },
        );
        // Hard cap: drop the oldest.
        let cap = self.cfg.ms_to_ts(self.cfg.max_buffer_ms);
        while let (Some((&first, _)), Some((&last, e))) = (
            self.packets.first_key_value(),
            self.packets.last_key_value(),
        ) {
            if last + e.dur as i64 - first <= cap {
                break;
            }
            let e = self.packets.remove(&first).expect("present");
            self.cursor = Some(first + e.dur as i64);
            self.committed = true;
            self.stats.overflow += 1;
        }
        outcome
    }

    fn delay_model(&mut self) -> Model {
        if let Some(m) = self.cached {
            return m;
        }
        let min_t = self.cfg.ms_to_ts(self.cfg.min_delay_ms);
        let max_t = self.cfg.ms_to_ts(self.cfg.max_delay_ms);
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
            let idx = ((n - 1) as f64 * self.cfg.percentile).round() as usize;
            r[idx] - base
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

    /// The next thing to render at `now_us`. Call repeatedly until the
    /// rendered audio covers the frame being produced.
    pub fn pop(&mut self, now_us: u64) -> Playout {
        let frame = self.cfg.frame_ts;
        let Some(cursor) = self.cursor else {
            self.stats.stretched += 1;
            return Playout::Wait { dur: frame };
        };
        let now = self.now_ts(now_us);
        let m = self.delay_model();
        let lag = now - m.base_at(cursor) - m.target - cursor; // > 0: we are behind the ideal position
        let ema = match self.lag_ema {
            Some(e) if self.committed => e + (lag as f64 - e) / 32.0,
            _ => lag as f64,
        };
        self.lag_ema = Some(ema);

        // Discard anything whose time has passed (reordered into the past by a cursor jump).
        while let Some((&ts, _)) = self.packets.first_key_value() {
            if ts >= cursor {
                break;
            }
            // Includes a packet overlapping the cursor: it cannot be split cleanly.
            self.packets.remove(&ts);
            self.stats.late += 1;
        }

        match self.packets.first_key_value().map(|(&ts, e)| (ts, e.dur)) {
            Some((ts, dur)) if ts == cursor => {
                // Sustainedly behind by more than a frame and a quarter.
                let behind_enough =
                    self.committed && ema >= 1.25 * frame as f64 && lag >= frame as i64;
                let more_behind = self.packets.len() >= 2;
                let spaced = self.last_drop_cursor.is_none_or(|c| {
                    cursor - c >= self.cfg.drop_spacing_frames as i64 * frame as i64
                });
                if behind_enough && more_behind && spaced {
                    self.packets.remove(&ts);
                    self.cursor = Some(ts + dur as i64);
                    self.committed = true;
                    self.last_drop_cursor = Some(ts);
                    self.lag_ema = Some(ema - frame as f64);
                    self.stats.dropped += 1;
                    return self.pop(now_us);
                }
                if lag < -(frame as i64) {
                    // Early: the initial fill, or the target grew.
                    self.stats.stretched += 1;
                    return Playout::Wait { dur: frame };
                }
                let e = self.packets.remove(&ts).expect("present");
                self.cursor = Some(ts + e.dur as i64);
                self.committed = true;
                self.stats.played += 1;
                Playout::Packet {
                    ts,
                    dur: e.dur,
                    payload: e.payload,
                }
            }
            next => {
                if lag < 0 {
                    self.stats.stretched += 1;
                    return Playout::Wait { dur: frame };
                }
                // Due and missing: lost (or late, or the sender paused).
                let dur = match next {
                    Some((ts, _)) => ((ts - cursor) as u32).min(frame),
                    None => frame,
                };
                let after = cursor + dur as i64;
                let next_payload = self.packets.get(&after).map(|e| e.payload.clone());
                self.cursor = Some(after);
                self.committed = true;
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
        }
    }

    pub fn stats(&mut self) -> JitterStats {
        let target = self.delay_model().target;
        let rate = self.cfg.clock_rate as f64 / 1000.0;
        let mut s = self.stats;
        s.queued_packets = self.packets.len();
        s.depth_ms = match (self.cursor, self.packets.last_key_value()) {
            (Some(c), Some((&ts, e))) => ((ts + e.dur as i64 - c).max(0)) as f64 / rate,
            _ => 0.0,
        };
        s.target_ms = target as f64 / rate;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: u64 = 20_000;

    /// A synthetic run: packet i (timestamp i*160) arrives at `arrival(i)` µs
    /// (None = lost); the consumer's tick k happens at `tick_at(k)` µs. Returns the
    /// sequence of decisions per tick (the packet index played, or -1 for
    /// concealment/wait) and the stats.
    fn run(
        n: usize,
        arrival: impl Fn(usize) -> Option<u64>,
        ticks: usize,
        tick_at: impl Fn(usize) -> u64,
        cfg: JitterConfig,
    ) -> (Vec<i64>, JitterStats) {
        let mut jb = JitterBuffer::new(cfg);
        let mut events: Vec<(u64, usize)> =
            (0..n).filter_map(|i| arrival(i).map(|t| (t, i))).collect();
        events.sort();
        let mut ev = events.into_iter().peekable();
        let mut out = Vec::new();
        for k in 0..ticks {
            let now = tick_at(k);
            while let Some(&(t, i)) = ev.peek() {
                if t > now {
                    break;
                }
                jb.insert(t, i as i64 * 160, 160, vec![i as u8, (i >> 8) as u8]);
                ev.next();
            }
            let mut covered = 0;
            while covered < 160 {
                match jb.pop(now) {
                    Playout::Packet { ts, dur, .. } => {
                        out.push(ts / 160);
                        covered += dur;
                    }
                    Playout::Lost { dur, .. } | Playout::Wait { dur } => {
                        out.push(-1);
                        covered += dur;
                    }
                }
            }
        }
        let s = jb.stats();
        (out, s)
    }

    fn steady(k: usize) -> u64 {
        k as u64 * FRAME_US
    }

    fn played(seq: &[i64]) -> Vec<i64> {
        seq.iter().copied().filter(|&x| x >= 0).collect()
    }

    #[test]
    fn steady_stream_plays_everything_in_order_after_initial_delay() {
        let (out, s) = run(
            200,
            |i| Some(i as u64 * FRAME_US + 5_000),
            220,
            steady,
            JitterConfig::new(8000),
        );
        assert_eq!(played(&out), (0..200).collect::<Vec<_>>());
        assert_eq!(s.lost, 0);
        assert_eq!(s.late, 0);
        // Zero jitter: the target settles at the minimum (20 ms).
        assert_eq!(s.target_ms, 20.0);
        let first = out.iter().position(|&x| x == 0).unwrap();
        assert!(first <= 4, "initial fill took {first} frames");
    }

    #[test]
    fn reorder_within_depth_is_absorbed() {
        // Pairs swapped: packet 2k+1 arrives before 2k, 15 ms apart.
        let arrival = |i: usize| {
            let base = i as u64 * FRAME_US + 2_000;
            Some(if i.is_multiple_of(2) {
                base + 25_000
            } else {
                base
            })
        };
        let (out, s) = run(300, arrival, 330, steady, JitterConfig::new(8000));
        assert_eq!(played(&out), (0..300).collect::<Vec<_>>());
        assert_eq!(s.late, 0);
        assert_eq!(s.lost, 0);
        // Odd packets 2 ms in transit, even ones 27 ms: a 25 ms spread.
        assert!(
            s.target_ms >= 25.0 && s.target_ms <= 30.0,
            "target {}",
            s.target_ms
        );
    }

    #[test]
    fn random_loss_is_concealed_and_the_rest_plays_in_order() {
        let lost = |i: usize| (i * 7919) % 20 == 3; // 5%
        let (out, s) = run(
            500,
            |i| {
                if lost(i) {
                    None
                } else {
                    Some(i as u64 * FRAME_US + 3_000)
                }
            },
            520,
            steady,
            JitterConfig::new(8000),
        );
        let expect: Vec<i64> = (0..500).filter(|&i| !lost(i)).map(|i| i as i64).collect();
        assert_eq!(played(&out), expect);
        assert_eq!(s.lost as usize, (0..500).filter(|&i| lost(i)).count());
        assert_eq!(s.late, 0);
    }

    #[test]
    fn delay_burst_grows_the_target_then_recovers() {
        // Packets 100..110 all stuck until packet 110's time + 5 ms (a 200 ms stall), then flushed.
        let arrival = |i: usize| {
            let t = i as u64 * FRAME_US + 1_000;
            Some(if (100..110).contains(&i) {
                110 * FRAME_US + 5_000
            } else {
                t
            })
        };
        let cfg = JitterConfig {
            window: 100,
            ..JitterConfig::new(8000)
        };
        let (out, s) = run(600, arrival, 640, steady, cfg);
        let p = played(&out);
        // The stall cannot be bridged by a 20 ms buffer: some packets are late.
        assert!(s.late > 0);
        // Everything is in order and nothing is played twice.
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        // After the stall the target rose; once it left the window it came back down
        // and excess delay was shed by drops, so the tail plays at the minimum delay.
        assert!(s.dropped > 0, "{s:?}");
        assert_eq!(s.target_ms, 20.0);
        assert!(*p.last().unwrap() >= 595, "tail {:?}", &p[p.len() - 5..]);
        // Every packet after the stall's late ones was played.
        let after: Vec<i64> = p.iter().copied().filter(|&x| x >= 110).collect();
        assert!(
            after.len() as u64 + s.dropped >= 490,
            "{} played after stall",
            after.len()
        );
    }

    #[test]
    fn jittery_network_gets_a_matching_target() {
        // Uniform-ish jitter 0..60 ms (deterministic LCG).
        let jit = |i: usize| (i as u64 * 2_654_435_761) % 60_000;
        let (out, s) = run(
            1000,
            |i| Some(i as u64 * FRAME_US + jit(i)),
            1030,
            steady,
            JitterConfig::new(8000),
        );
        assert!(
            s.target_ms >= 50.0 && s.target_ms <= 60.0,
            "target {}",
            s.target_ms
        );
        // With a 95th-percentile target about 5% may be late; allow a margin.
        assert!(s.late + s.lost <= 80, "{s:?}");
        assert!(played(&out).len() >= 930);
        assert!(played(&out).windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sender_clock_fast_is_handled_by_drops() {
        // Sender 1% fast: packet i is sent at i*19.8 ms.
        let (out, s) = run(
            1500,
            |i| Some((i as f64 * 19_800.0) as u64 + 2_000),
            1480,
            steady,
            JitterConfig::new(8000),
        );
        let p = played(&out);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!(s.dropped >= 5, "{s:?}");
        assert!(s.depth_ms <= 100.0, "{s:?}");
        assert_eq!(s.late, 0);
    }

    #[test]
    fn sender_clock_slow_is_handled_by_stretching() {
        // Sender 1% slow: packet i sent at i*20.2 ms; consumer must insert frames.
        let (out, s) = run(
            1000,
            |i| Some((i as f64 * 20_200.0) as u64 + 2_000),
            1000,
            steady,
            JitterConfig::new(8000),
        );
        let p = played(&out);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!(s.late <= 2, "{s:?}");
        assert!(p.len() >= 975);
        // The stretches/concealments roughly equal the clock difference (1% of 1000 frames).
        let conceal = out.iter().filter(|&&x| x < 0).count();
        assert!((8..=40).contains(&conceal), "{conceal} concealed frames");
    }

    #[test]
    fn consumer_clock_drift_too() {
        // The consumer's clock runs 0.5% fast against a steady sender.
        let (out, s) = run(
            800,
            |i| Some(i as u64 * FRAME_US + 1_000),
            800,
            |k| (k as f64 * 20_000.0 * 1.005) as u64,
            JitterConfig::new(8000),
        );
        let p = played(&out);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!(p.len() >= 785, "{}", p.len());
        assert_eq!(s.late, 0);
    }

    #[test]
    fn our_own_tick_jitter_never_costs_audio() {
        // The consumer's timer fires up to 8 ms late (tokio under load); packets are steady.
        let late = |k: usize| (k as u64 * 7_919 % 8) * 1_000;
        let (out, s) = run(
            500,
            |i| Some(i as u64 * FRAME_US + 4_000),
            520,
            |k| k as u64 * FRAME_US + late(k),
            JitterConfig::new(8000),
        );
        assert_eq!(played(&out), (0..500).collect::<Vec<_>>());
        assert_eq!((s.dropped, s.late, s.lost), (0, 0, 0), "{s:?}");
    }

    #[test]
    fn duplicates_late_and_ts_jump() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        assert_eq!(jb.insert(0, 0, 160, vec![0]), Inserted::Reset);
        assert_eq!(jb.insert(1_000, 160, 160, vec![1]), Inserted::Queued);
        assert_eq!(jb.insert(2_000, 160, 160, vec![1]), Inserted::Duplicate);
        // Play both (initial delay 60 ms).
        let mut got = vec![];
        for k in 0..8u64 {
            if let Playout::Packet { ts, .. } = jb.pop(k * FRAME_US) {
                got.push(ts)
            }
        }
        assert_eq!(got, vec![0, 160]);
        assert_eq!(jb.insert(170_000, 0, 160, vec![0]), Inserted::Late);
        // A 10 s jump re-anchors.
        assert_eq!(jb.insert(180_000, 80_000, 160, vec![9]), Inserted::Reset);
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.resets), (1, 1, 1));
    }

    #[test]
    fn lost_reports_next_payload_for_fec() {
        let mut jb = JitterBuffer::new(JitterConfig {
            initial_delay_ms: 20,
            ..JitterConfig::new(8000)
        });
        jb.insert(0, 0, 160, vec![0]);
        jb.insert(40_000, 320, 160, vec![2]);
        let mut seen = vec![];
        for k in 0..5u64 {
            seen.push(jb.pop(40_000 + k * FRAME_US));
        }
        assert_eq!(
            seen[0],
            Playout::Packet {
                ts: 0,
                dur: 160,
                payload: vec![0]
            }
        );
        assert_eq!(
            seen[1],
            Playout::Lost {
                ts: 160,
                dur: 160,
                next: Some(vec![2])
            }
        );
        assert_eq!(
            seen[2],
            Playout::Packet {
                ts: 320,
                dur: 160,
                payload: vec![2]
            }
        );
    }

    #[test]
    fn overflow_caps_the_buffer() {
        let cfg = JitterConfig {
            max_buffer_ms: 200,
            ..JitterConfig::new(8000)
        };
        let mut jb = JitterBuffer::new(cfg);
        for i in 0..30i64 {
            jb.insert(0, i * 160, 160, vec![]);
        }
        let s = jb.stats();
        assert_eq!(s.queued_packets, 10);
        assert_eq!(s.overflow, 20);
        assert!(s.depth_ms <= 200.0);
    }
}
