//! RFC 4733 telephone-events (DTMF), sans-IO.
//!
//! Sending ([`DtmfSender`]): one packet per 20 ms tick while a digit plays,
//! all with the timestamp of the event start; the first has the marker bit;
//! `duration` grows by a frame per packet; the end is sent three times with
//! the E bit and the final duration (RFC 4733 2.5.1.4). Audio packets are
//! suppressed while an event is on, and digits are separated by an
//! inter-digit gap of audio.
//!
//! Receiving ([`DtmfReceiver`]): an event is identified by its RTP timestamp;
//! it is reported once, when its first E-bit packet arrives (retransmitted
//! ends and updates of an already reported timestamp are ignored), or when a
//! different event starts / nothing was heard for a while (lost end packets).
//!
//! Timestamps are in the audio stream's clock: the SDP side must negotiate
//! `telephone-event` at the codec's rate (8000 for G.711, 48000 for Opus).

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(char),
    #[error("telephone-event not negotiated")]
    NotNegotiated,
}

/// Event code of a DTMF digit (0-9, *, #, A-D).
pub fn event_code(digit: char) -> Option<u8> {
    Some(match digit.to_ascii_uppercase() {
        d @ '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        d @ 'A'..='D' => 12 + (d as u8 - b'A'),
        _ => return None,
    })
}

pub fn event_digit(code: u8) -> Option<char> {
    Some(match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => return None,
    })
}

/// A telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0 (0..63).
    pub volume: u8,
    pub duration: u16,
}

impl EventPayload {
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    pub fn parse(p: &[u8]) -> Option<Self> {
        if p.len() < 4 {
            return None;
        }
        Some(EventPayload {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3F,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }
}

/// One packet the sender wants out this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    pub marker: bool,
    /// RTP timestamp: the event's start.
    pub timestamp: u32,
    pub payload: EventPayload,
}

struct Active {
    event: u8,
    start_ts: u32,
    total: u32,
    elapsed: u32,
    ends_sent: u8,
}

pub struct DtmfSender {
    frame_ts: u32,
    clock_rate: u32,
    volume: u8,
    gap_ts: u32,
    queue: VecDeque<(u8, u32)>,
    active: Option<Active>,
    gap_left: u32,
}

/// Inter-digit gap.
pub const DEFAULT_GAP_MS: u32 = 80;
/// Longest digit we send (the 16-bit duration field holds 1.36 s at 48 kHz).
pub const MAX_DIGIT_MS: u32 = 1_300;

impl DtmfSender {
    pub fn new(clock_rate: u32) -> Self {
        DtmfSender {
            frame_ts: clock_rate / 50,
            clock_rate,
            volume: 10,
            gap_ts: DEFAULT_GAP_MS * clock_rate / 1000,
            queue: VecDeque::new(),
            active: None,
            gap_left: 0,
        }
    }

    /// Queues digits, each lasting `duration_ms` (clamped to 40..=1300 ms).
    pub fn push(&mut self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        let codes = digits
            .chars()
            .map(|c| event_code(c).ok_or(DtmfError::BadDigit(c)))
            .collect::<Result<Vec<_>, _>>()?;
        let ms = duration_ms.clamp(40, MAX_DIGIT_MS);
        let ts = (ms * self.clock_rate / 1000).div_ceil(self.frame_ts) * self.frame_ts;
        self.queue.extend(codes.into_iter().map(|c| (c, ts)));
        Ok(())
    }

    /// Drops every key queued or playing (the stream stops: hold).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.active = None;
        self.gap_left = 0;
    }

    /// True while an event (or its end retransmissions) owns the stream.
    pub fn busy(&self) -> bool {
        self.active.is_some()
    }

    /// True if nothing is queued or playing.
    pub fn idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    /// Called once per 20 ms tick with that tick's audio timestamp. Some:
    /// send this event packet instead of audio.
    pub fn tick(&mut self, now_ts: u32) -> Option<DtmfPacket> {
        if self.active.is_none() {
            if self.gap_left > 0 {
                self.gap_left = self.gap_left.saturating_sub(self.frame_ts);
                return None;
            }
            let (event, total) = self.queue.pop_front()?;
            self.active = Some(Active {
                event,
                start_ts: now_ts,
                total,
                elapsed: 0,
                ends_sent: 0,
            });
        }
        let a = self.active.as_mut().expect("set above");
        let first = a.elapsed == 0 && a.ends_sent == 0;
        if a.elapsed < a.total {
            a.elapsed = (a.elapsed + self.frame_ts).min(a.total);
        }
        let end = a.elapsed >= a.total;
        let pkt = DtmfPacket {
            marker: first,
            timestamp: a.start_ts,
            payload: EventPayload {
                event: a.event,
                end,
                volume: self.volume,
                duration: a.elapsed.min(0xFFFF) as u16,
            },
        };
        if end {
            a.ends_sent += 1;
            if a.ends_sent == 3 {
                self.active = None;
                self.gap_left = self.gap_ts;
            }
        }
        Some(pkt)
    }
}

/// A digit received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub digit: char,
    pub duration_ms: u32,
}

struct Rx {
    ts: u32,
    event: u8,
    duration: u16,
    last_us: u64,
}

pub struct DtmfReceiver {
    clock_rate: u32,
    current: Option<Rx>,
    /// Timestamps already reported (recent ones).
    done: VecDeque<u32>,
}

/// An event not updated for this long is reported (its end packets were lost).
pub const RX_TIMEOUT_US: u64 = 1_000_000;

impl DtmfReceiver {
    pub fn new(clock_rate: u32) -> Self {
        DtmfReceiver {
            clock_rate,
            current: None,
            done: VecDeque::new(),
        }
    }

    fn finish(&mut self) -> Option<DtmfDigit> {
        let rx = self.current.take()?;
        self.done.push_back(rx.ts);
        if self.done.len() > 16 {
            self.done.pop_front();
        }
        Some(DtmfDigit {
            digit: event_digit(rx.event)?,
            duration_ms: (rx.duration as u64 * 1000 / self.clock_rate as u64) as u32,
        })
    }

    /// A telephone-event packet arrived. Returns up to two finished digits
    /// (a previous one whose end was lost, and this one).
    pub fn on_packet(&mut self, now_us: u64, ts: u32, payload: &[u8]) -> Vec<DtmfDigit> {
        let mut out = Vec::new();
        let Some(p) = EventPayload::parse(payload) else {
            return out;
        };
        if self.done.contains(&ts) {
            return out;
        }
        if self.current.as_ref().is_some_and(|c| c.ts != ts) {
            out.extend(self.finish());
        }
        let c = self.current.get_or_insert(Rx {
            ts,
            event: p.event,
            duration: 0,
            last_us: now_us,
        });
        c.duration = c.duration.max(p.duration);
        c.last_us = now_us;
        if p.end {
            out.extend(self.finish());
        }
        out
    }

    /// Audio from a later time arrived, or time passed: report an event whose end was lost.
    pub fn poll(&mut self, now_us: u64) -> Option<DtmfDigit> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| now_us.saturating_sub(c.last_us) >= RX_TIMEOUT_US)
        {
            return self.finish();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let all = "0123456789*#ABCD";
        for (i, c) in all.chars().enumerate() {
            assert_eq!(event_code(c), Some(i as u8));
            assert_eq!(event_digit(i as u8), Some(c));
        }
        assert_eq!(event_code('a'), Some(12));
        assert_eq!(event_code('x'), None);
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(p.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(EventPayload::parse(&p.to_bytes()), Some(p));
    }

    #[test]
    fn sender_sequence_for_one_digit() {
        let mut s = DtmfSender::new(8000);
        s.push("5", 100).unwrap();
        let mut pkts = vec![];
        let mut ts = 1000u32;
        for _ in 0..20 {
            if let Some(p) = s.tick(ts) {
                pkts.push(p);
            }
            ts += 160;
        }
        // 100 ms = 5 frames of updates (the 5th carries E), then 2 more E packets.
        assert_eq!(pkts.len(), 7);
        assert!(pkts[0].marker && pkts[1..].iter().all(|p| !p.marker));
        assert!(pkts
            .iter()
            .all(|p| p.timestamp == 1000 && p.payload.event == 5));
        let durs: Vec<u16> = pkts.iter().map(|p| p.payload.duration).collect();
        assert_eq!(durs, [160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<bool> = pkts.iter().map(|p| p.payload.end).collect();
        assert_eq!(ends, [false, false, false, false, true, true, true]);
        assert!(s.idle());
    }

    #[test]
    fn sender_gap_between_digits() {
        let mut s = DtmfSender::new(8000);
        s.push("12", 40).unwrap();
        let seq: Vec<Option<u8>> = (0..12)
            .map(|k| s.tick(k * 160).map(|p| p.payload.event))
            .collect();
        // digit 1: 2 updates + 2 more ends = 4 ticks; gap 80 ms = 4 ticks of audio; digit 2.
        assert_eq!(
            seq,
            [
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                None,
                None,
                None,
                None,
                Some(2),
                Some(2),
                Some(2),
                Some(2)
            ]
        );
        assert!(s.push("x", 100).is_err());
    }

    #[test]
    fn receiver_dedupes_by_timestamp() {
        let mut r = DtmfReceiver::new(8000);
        let pkt = |e, end, d| {
            EventPayload {
                event: e,
                end,
                volume: 10,
                duration: d,
            }
            .to_bytes()
        };
        assert!(r.on_packet(0, 500, &pkt(7, false, 160)).is_empty());
        assert!(r.on_packet(20_000, 500, &pkt(7, false, 320)).is_empty());
        assert_eq!(
            r.on_packet(40_000, 500, &pkt(7, true, 480)),
            vec![DtmfDigit {
                digit: '7',
                duration_ms: 60
            }]
        );
        assert!(r.on_packet(60_000, 500, &pkt(7, true, 480)).is_empty());
        assert!(r.on_packet(80_000, 500, &pkt(7, true, 480)).is_empty());
        // Same digit again, new timestamp: a new press.
        assert_eq!(
            r.on_packet(200_000, 2000, &pkt(7, true, 800)),
            vec![DtmfDigit {
                digit: '7',
                duration_ms: 100
            }]
        );
        // Lost end: the next event flushes it.
        assert!(r.on_packet(300_000, 4000, &pkt(1, false, 160)).is_empty());
        let got = r.on_packet(400_000, 6000, &pkt(2, false, 160));
        assert_eq!(
            got,
            vec![DtmfDigit {
                digit: '1',
                duration_ms: 20
            }]
        );
        // ... or the timeout does.
        assert_eq!(
            r.poll(400_000 + RX_TIMEOUT_US),
            Some(DtmfDigit {
                digit: '2',
                duration_ms: 20
            })
        );
        assert_eq!(r.poll(900_000 + RX_TIMEOUT_US), None);
    }

    #[test]
    fn sender_to_receiver_48k() {
        let mut s = DtmfSender::new(48_000);
        let mut r = DtmfReceiver::new(48_000);
        s.push("#9", 120).unwrap();
        let mut got = vec![];
        for k in 0..40u32 {
            if let Some(p) = s.tick(k * 960) {
                got.extend(r.on_packet(k as u64 * 20_000, p.timestamp, &p.payload.to_bytes()));
            }
        }
        assert_eq!(
            got,
            vec![
                DtmfDigit {
                    digit: '#',
                    duration_ms: 120
                },
                DtmfDigit {
                    digit: '9',
                    duration_ms: 120
                }
            ]
        );
    }
}
