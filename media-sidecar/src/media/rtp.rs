//! RTP (RFC 3550 section 5.1) fixed header: parse and build, hand-written.
//!
//! Why not `rtp` 0.17 + webrtc-util `marshal`: the fixed header is 12 bytes
//! plus optional CSRCs, extension and padding, i.e. ~80 lines with tests, and
//! we need none of that crate's packetizers (its audio packetizer sets the
//! marker bit on every packet, which RFC 3551 reserves for talkspurt starts).
//! Hand-writing keeps the media path allocation-light (we parse borrowing the
//! datagram), makes the validity rules ours (RFC 3550 A.1: version 2, padding
//! length sane, extension inside the packet), and avoids webrtc-util's
//! dependency tree in the sidecar.

use std::fmt;

/// Fixed RTP header length without CSRCs.
pub const HEADER_LEN: usize = 12;

/// The fields of an RTP header we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed RTP packet borrowing its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    /// CSRC count (the list itself is skipped).
    pub csrc_count: u8,
    /// The payload, with padding removed.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    TooShort,
    BadVersion(u8),
    /// Payload type 72-76 (RTCP SR/RR/SDES/BYE/APP when the marker is set): not RTP.
    LooksLikeRtcp,
    BadPadding,
    BadExtension,
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for RtpError {}

/// True if the second byte of a datagram marks RTCP (packet types 192-223,
/// RFC 5761 section 4), for demultiplexing RTP and RTCP on one port.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

/// Parses one RTP packet.
pub fn parse(data: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if data.len() < HEADER_LEN {
        return Err(RtpError::TooShort);
    }
    let b0 = data[0];
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    if is_rtcp(data) {
        return Err(RtpError::LooksLikeRtcp);
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let cc = b0 & 0x0F;
    let b1 = data[1];
    let header = RtpHeader {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7F,
        sequence: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
    };
    let mut start = HEADER_LEN + 4 * cc as usize;
    if start > data.len() {
        return Err(RtpError::TooShort);
    }
    if extension {
        if start + 4 > data.len() {
            return Err(RtpError::BadExtension);
        }
        let words = u16::from_be_bytes([data[start + 2], data[start + 3]]) as usize;
        start += 4 + 4 * words;
        if start > data.len() {
            return Err(RtpError::BadExtension);
        }
    }
    let mut end = data.len();
    if padding {
        let pad = data[end - 1] as usize;
        if pad == 0 || start + pad > end {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    Ok(RtpPacket {
        header,
        csrc_count: cc,
        payload: &data[start..end],
    })
}

/// Appends a header (no CSRC, no extension, no padding) and `payload` to `out`.
pub fn write(h: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + payload.len());
    out.push(0x80);
    out.push((if h.marker { 0x80 } else { 0 }) | (h.payload_type & 0x7F));
    out.extend_from_slice(&h.sequence.to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&h.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Extends 16-bit sequence numbers to 64 bits across wraps (nearest to the previous).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqUnwrapper {
    last: Option<u64>,
}

impl SeqUnwrapper {
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let v = match self.last {
            None => (1u64 << 16) + seq as u64, // start one cycle in so a slightly older packet stays positive
            Some(last) => {
                let delta = seq.wrapping_sub(last as u16) as i16 as i64;
                (last as i64 + delta) as u64
            }
        };
        if self.last.is_none_or(|l| v > l) {
            self.last = Some(v);
        }
        v
    }
}

/// Extends 32-bit RTP timestamps to i64 across wraps (nearest to the previous).
#[derive(Debug, Clone, Copy, Default)]
pub struct TsUnwrapper {
    last: Option<i64>,
}

impl TsUnwrapper {
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let v = match self.last {
            None => ts as i64,
            Some(last) => last + ts.wrapping_sub(last as u32) as i32 as i64,
        };
        if self.last.is_none_or(|l| v > l) {
            self.last = Some(v);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse_round_trip() {
        let h = RtpHeader {
            marker: true,
            payload_type: 0,
            sequence: 0xFFFE,
            timestamp: 0xDEADBEEF,
            ssrc: 0x01020304,
        };
        let mut out = Vec::new();
        write(&h, &[1, 2, 3], &mut out);
        assert_eq!(
            out,
            [0x80, 0x80, 0xFF, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4, 1, 2, 3]
        );
        let p = parse(&out).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.payload, &[1, 2, 3]);
        let h2 = RtpHeader {
            marker: false,
            payload_type: 111,
            ..h
        };
        out.clear();
        write(&h2, &[], &mut out);
        assert_eq!(out[1], 111);
        assert_eq!(parse(&out).unwrap().header, h2);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=1, PT 8, one CSRC, a 1-word extension, 2 payload bytes, 3 padding bytes.
        let mut d = vec![0xB1, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        d.extend_from_slice(&[0, 0, 0, 7]); // CSRC
        d.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0xAA, 0xBB, 0xCC, 0xDD]); // extension
        d.extend_from_slice(&[0x55, 0x56]);
        d.extend_from_slice(&[0, 0, 3]);
        let p = parse(&d).unwrap();
        assert_eq!(p.csrc_count, 1);
        assert_eq!(p.header.payload_type, 8);
        assert_eq!(p.header.timestamp, 160);
        assert_eq!(p.payload, &[0x55, 0x56]);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(&[0x80; 5]), Err(RtpError::TooShort));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        let mut rr = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        rr.extend_from_slice(&[0; 4]);
        assert!(is_rtcp(&rr));
        assert_eq!(parse(&rr), Err(RtpError::LooksLikeRtcp));
        // Padding longer than the packet.
        let d = [0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9];
        assert_eq!(parse(&d), Err(RtpError::BadPadding));
        // Extension running past the end.
        let d = [0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0, 4];
        assert_eq!(parse(&d), Err(RtpError::BadExtension));
        // CSRCs past the end.
        let d = [0x8F, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(parse(&d), Err(RtpError::TooShort));
    }

    #[test]
    fn unwrappers_cross_wraps_and_reorder() {
        let mut s = SeqUnwrapper::default();
        let a = s.unwrap(65534);
        assert_eq!(s.unwrap(65535), a + 1);
        assert_eq!(s.unwrap(1), a + 3);
        assert_eq!(s.unwrap(0), a + 2); // reordered, across the wrap
        assert_eq!(s.unwrap(2), a + 4);
        let mut t = TsUnwrapper::default();
        let a = t.unwrap(u32::MAX - 159);
        assert_eq!(t.unwrap(0), a + 160);
        assert_eq!(t.unwrap(u32::MAX - 159), a);
        assert_eq!(t.unwrap(320), a + 480);
    }
}
