//! RTCP (RFC 3550 section 6): sender/receiver reports, SDES CNAME and BYE,
//! hand-written like [`super::rtp`] (the `rtcp` crate would bring webrtc-util's
//! tree for ~150 lines of fixed layouts), plus the receiver-side statistics
//! of RFC 3550 appendix A.1 (sequence validation), A.3 (loss) and A.8 (jitter).

/// Seconds from 1900 (NTP era 0) to 1970 (unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

/// 64-bit NTP timestamp of a unix time in microseconds.
pub fn ntp_from_unix_us(us: u64) -> u64 {
    let secs = us / 1_000_000 + NTP_UNIX_OFFSET;
    let frac = ((us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp (the LSR / "compact" form, 1/65536 s units).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from `ssrc` (0: none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// The parts of a compound RTCP packet we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    Sdes {
        ssrc: u32,
        cname: Option<String>,
    },
    Bye {
        ssrcs: Vec<u32>,
    },
    Other {
        packet_type: u8,
    },
}

fn header(out: &mut Vec<u8>, count: u8, pt: u8, len_words_minus_one: u16) {
    out.push(0x80 | (count & 0x1F));
    out.push(pt);
    out.extend_from_slice(&len_words_minus_one.to_be_bytes());
}

fn write_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
    out.extend_from_slice(&((b.fraction_lost as u32) << 24 | lost).to_be_bytes());
    out.extend_from_slice(&b.extended_highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

/// Appends an SR (with `info`) or, if `info` is None, an RR. At most 31 blocks.
pub fn write_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    info: Option<&SenderInfo>,
    blocks: &[ReportBlock],
) {
    let blocks = &blocks[..blocks.len().min(31)];
    let words = 1 + if info.is_some() { 5 } else { 0 } + 6 * blocks.len();
    header(
        out,
        blocks.len() as u8,
        if info.is_some() { PT_SR } else { PT_RR },
        words as u16,
    );
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(i) = info {
        out.extend_from_slice(&i.ntp.to_be_bytes());
        out.extend_from_slice(&i.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&i.packet_count.to_be_bytes());
        out.extend_from_slice(&i.octet_count.to_be_bytes());
    }
    for b in blocks {
        write_block(out, b);
    }
}

/// Appends an SDES packet with one chunk holding a CNAME.
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC + type + len + text + at least one END byte, padded to 32 bits.
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    header(out, 1, PT_SDES, (padded / 4) as u16);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend(std::iter::repeat_n(0u8, padded - chunk + 1));
}

pub fn write_bye(out: &mut Vec<u8>, ssrc: u32) {
    header(out, 1, PT_BYE, 1);
    out.extend_from_slice(&ssrc.to_be_bytes());
}

fn read_u32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_blocks(d: &[u8], mut at: usize, n: usize) -> Option<Vec<ReportBlock>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let w1 = read_u32(d, at + 4)?;
        let lost24 = w1 & 0x00FF_FFFF;
        let cumulative_lost = ((lost24 << 8) as i32) >> 8;
        v.push(ReportBlock {
            ssrc: read_u32(d, at)?,
            fraction_lost: (w1 >> 24) as u8,
            cumulative_lost,
            extended_highest_seq: read_u32(d, at + 8)?,
            jitter: read_u32(d, at + 12)?,
            last_sr: read_u32(d, at + 16)?,
            delay_since_last_sr: read_u32(d, at + 20)?,
        });
        at += 24;
    }
    Some(v)
}

/// Parses a compound RTCP packet. Returns None if it is not valid RTCP
/// (RFC 3550 A.2: version 2, lengths add up to the datagram).
pub fn parse_compound(data: &[u8]) -> Option<Vec<RtcpPacket>> {
    let mut out = Vec::new();
    let mut at = 0;
    if data.len() < 8 {
        return None;
    }
    while at < data.len() {
        let p = data.get(at..at + 4)?;
        if p[0] >> 6 != 2 {
            return None;
        }
        let count = (p[0] & 0x1F) as usize;
        let pt = p[1];
        let len = (u16::from_be_bytes([p[2], p[3]]) as usize + 1) * 4;
        let body = data.get(at..at + len)?;
        match pt {
            PT_SR => {
                let ssrc = read_u32(body, 4)?;
                let ntp = (read_u32(body, 8)? as u64) << 32 | read_u32(body, 12)? as u64;
                let info = SenderInfo {
                    ntp,
                    rtp_timestamp: read_u32(body, 16)?,
                    packet_count: read_u32(body, 20)?,
                    octet_count: read_u32(body, 24)?,
                };
                out.push(RtcpPacket::SenderReport {
                    ssrc,
                    info,
                    reports: read_blocks(body, 28, count)?,
                });
            }
            PT_RR => {
                let ssrc = read_u32(body, 4)?;
                out.push(RtcpPacket::ReceiverReport {
                    ssrc,
                    reports: read_blocks(body, 8, count)?,
                });
            }
            PT_SDES if count >= 1 => {
                let ssrc = read_u32(body, 4)?;
                let mut i = 8;
                let mut cname = None;
                while i + 1 < body.len() && body[i] != 0 {
                    let (ty, l) = (body[i], body[i + 1] as usize);
                    let text = body.get(i + 2..i + 2 + l)?;
                    if ty == 1 {
                        cname = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    i += 2 + l;
                }
                out.push(RtcpPacket::Sdes { ssrc, cname });
            }
            PT_BYE => {
                let ssrcs = (0..count)
                    .map(|k| read_u32(body, 4 + 4 * k))
                    .collect::<Option<Vec<_>>>()?;
                out.push(RtcpPacket::Bye { ssrcs });
            }
            _ => out.push(RtcpPacket::Other { packet_type: pt }),
        }
        at += len;
    }
    Some(out)
}

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Receive statistics of one source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
pub struct RecvStats {
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    pub received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Jitter estimate in timestamp units (A.8), as a float to keep the 1/16 steps exact.
    jitter: f64,
    last_transit: Option<i64>,
    /// Middle bits of the last SR from this source and when (local µs) it came.
    pub last_sr: Option<(u32, u64)>,
}

impl RecvStats {
    pub fn new(seq: u16) -> Self {
        let mut s = RecvStats {
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            last_transit: None,
            last_sr: None,
        };
        s.init_seq(seq);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Counts one packet. False if it is a big jump that is not (yet) believed.
    pub fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += RTP_SEQ_MOD;
            }
            self.max_seq = seq;
        } else if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            if seq as u32 == self.bad_seq {
                // Two sequential packets after a jump: the source restarted.
                self.init_seq(seq);
            } else {
                self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered within MAX_MISORDER
        self.received += 1;
        true
    }

    /// Updates the jitter with a packet's arrival time and timestamp, both in timestamp units.
    pub fn update_jitter(&mut self, arrival_ts: i64, rtp_ts: i64) {
        let transit = arrival_ts - rtp_ts;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(self.max_seq as u32)
    }

    pub fn expected(&self) -> u64 {
        (self.cycles as u64 + self.max_seq as u64 + 1).saturating_sub(self.base_seq as u64)
    }

    /// Cumulative lost (may be negative with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    pub fn jitter_ts(&self) -> f64 {
        self.jitter
    }

    /// A report block for this source; moves the "since last report" interval.
    pub fn report_block(&mut self, ssrc: u32, now_us: u64) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received - self.received_prior;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (
                lsr,
                ((now_us.saturating_sub(at)) * 65_536 / 1_000_000) as u32,
            ),
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            extended_highest_seq: self.extended_max(),
            jitter: self.jitter as u32,
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// Round-trip time from a report block about us, received at `now_ntp` (RFC 3550 6.4.1), in µs.
pub fn rtt_us(block: &ReportBlock, now_ntp: u64) -> Option<u64> {
    if block.last_sr == 0 {
        return None;
    }
    let a = ntp_middle(now_ntp);
    let rtt = a
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    if rtt > 0x8000_0000 {
        return None; // negative: clocks or reports inconsistent
    }
    Some(rtt as u64 * 1_000_000 / 65_536)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversion() {
        // 2024-01-01T00:00:00.5Z
        let us = 1_704_067_200_500_000u64;
        let ntp = ntp_from_unix_us(us);
        assert_eq!(ntp >> 32, 1_704_067_200 + 2_208_988_800);
        assert_eq!(ntp as u32, 1 << 31);
        assert_eq!(
            ntp_middle(ntp),
            (((1_704_067_200u64 + 2_208_988_800) as u32 & 0xFFFF) << 16) | 0x8000
        );
    }

    #[test]
    fn compound_round_trip_with_exact_bytes() {
        let info = SenderInfo {
            ntp: 0x0102030405060708,
            rtp_timestamp: 160,
            packet_count: 3,
            octet_count: 480,
        };
        let block = ReportBlock {
            ssrc: 0xAABBCCDD,
            fraction_lost: 64,
            cumulative_lost: -2,
            extended_highest_seq: 0x0001_0005,
            jitter: 12,
            last_sr: 0x11223344,
            delay_since_last_sr: 65_536,
        };
        let mut out = Vec::new();
        write_report(&mut out, 7, Some(&info), &[block]);
        assert_eq!(&out[..4], &[0x81, 200, 0, 12]); // 13 words
        assert_eq!(out.len(), 52);
        assert_eq!(&out[32..36], &[64, 0xFF, 0xFF, 0xFE]); // fraction + 24-bit -2
        write_sdes_cname(&mut out, 7, "voxline@host");
        assert_eq!(out.len() % 4, 0);
        write_bye(&mut out, 7);
        let parsed = parse_compound(&out).unwrap();
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 7,
                    info,
                    reports: vec![block]
                },
                RtcpPacket::Sdes {
                    ssrc: 7,
                    cname: Some("voxline@host".into())
                },
                RtcpPacket::Bye { ssrcs: vec![7] },
            ]
        );
        let mut rr = Vec::new();
        write_report(&mut rr, 9, None, &[]);
        assert_eq!(rr, [0x80, 201, 0, 1, 0, 0, 0, 9]);
        assert_eq!(
            parse_compound(&rr).unwrap(),
            vec![RtcpPacket::ReceiverReport {
                ssrc: 9,
                reports: vec![]
            }]
        );
        // Truncated or wrong version: not RTCP.
        assert!(parse_compound(&out[..out.len() - 2]).is_none());
        let mut bad = rr.clone();
        bad[0] = 0x40;
        assert!(parse_compound(&bad).is_none());
    }

    #[test]
    fn sdes_padding_lengths() {
        for n in 0..10 {
            let name: String = "x".repeat(n);
            let mut out = Vec::new();
            write_sdes_cname(&mut out, 1, &name);
            assert_eq!(out.len() % 4, 0);
            assert_eq!(
                (u16::from_be_bytes([out[2], out[3]]) as usize + 1) * 4,
                out.len()
            );
            assert_eq!(
                parse_compound(&out).unwrap(),
                vec![RtcpPacket::Sdes {
                    ssrc: 1,
                    cname: Some(name)
                }]
            );
        }
    }

    #[test]
    fn loss_and_fraction_per_interval() {
        let mut s = RecvStats::new(65530);
        // 65530..=65535, 0..=13 with 4 missing (65533, 2, 3, 10): 20 expected, 16 received.
        for seq in (65530u16..=65535).chain(0..=13) {
            if ![65533, 2, 3, 10].contains(&seq) {
                assert!(s.update_seq(seq));
            }
        }
        assert_eq!(s.expected(), 20);
        assert_eq!(s.cumulative_lost(), 4);
        let b = s.report_block(5, 0);
        assert_eq!(b.fraction_lost, (4 * 256 / 20) as u8);
        assert_eq!(b.cumulative_lost, 4);
        assert_eq!(b.extended_highest_seq, 65536 + 13);
        // Next interval: 10 expected, 10 received (one late one fills an old hole).
        for seq in 14..=23 {
            s.update_seq(seq);
        }
        s.update_seq(10);
        let b = s.report_block(5, 0);
        assert_eq!(b.fraction_lost, 0);
        assert_eq!(b.cumulative_lost, 3);
    }

    #[test]
    fn big_jump_needs_two_sequential_packets() {
        let mut s = RecvStats::new(100);
        assert!(s.update_seq(101));
        assert!(!s.update_seq(20_000));
        assert!(s.update_seq(20_001)); // restart
        assert_eq!(s.expected(), 1);
        assert_eq!(s.received, 1);
    }

    #[test]
    fn jitter_follows_a8() {
        let mut s = RecvStats::new(0);
        // Transit alternates 0 / 80: |D| = 80 each step.
        for i in 0..200i64 {
            s.update_jitter(i * 160 + if i % 2 == 1 { 80 } else { 0 }, i * 160);
        }
        assert!((s.jitter_ts() - 80.0).abs() < 0.5, "{}", s.jitter_ts());
    }

    #[test]
    fn rtt_from_lsr_dlsr() {
        // RFC 3550 figure 2: A = 0xb710:8000 (46864.5 s), LSR = 0xb705:2000, DLSR = 0x0005:4000 (5.25 s).
        let block = ReportBlock {
            last_sr: 0xB705_2000,
            delay_since_last_sr: 0x0005_4000,
            ..Default::default()
        };
        let now_ntp = (0xB710_8000u64) << 16;
        assert_eq!(rtt_us(&block, now_ntp), Some(6_125_000));
    }

    #[test]
    fn dlsr_units() {
        let mut s = RecvStats::new(0);
        s.last_sr = Some((0x1234_5678, 1_000_000));
        let b = s.report_block(1, 1_500_000);
        assert_eq!(b.last_sr, 0x1234_5678);
        assert_eq!(b.delay_since_last_sr, 32_768); // 0.5 s
    }
}
