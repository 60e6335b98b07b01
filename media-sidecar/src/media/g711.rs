//! G.711 mu-law (PCMU) and A-law (PCMA), following the ITU-T reference
//! implementation (G.191 Software Tool Library, `g711.c`): 16-bit linear PCM
//! in, one byte out, and back. Decoding goes through 256-entry tables built at
//! compile time from the reference expansion; encoding is the reference
//! segment search (about 1 µs per 20 ms frame).

/// Mu-law code of one 16-bit linear sample (G.191 `ulaw_compress`).
pub const fn ulaw_encode(lin: i16) -> u8 {
    let lin = lin as i32;
    // 14-bit magnitude (one's complement for negatives), biased by 33.
    let mut absno = if lin < 0 {
        ((!lin) >> 2) + 33
    } else {
        (lin >> 2) + 33
    };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x0008 - segno;
    let low_nibble = 0x000F - ((absno >> segno) & 0x000F);
    let mut out = (high_nibble << 4) | low_nibble;
    if lin >= 0 {
        out |= 0x0080;
    }
    out as u8
}

/// Linear value of one mu-law code (G.191 `ulaw_expand`).
pub const fn ulaw_expand(code: u8) -> i16 {
    let sign: i32 = if code < 0x80 { -1 } else { 1 };
    let mantissa = !(code as i32);
    let exponent = (mantissa >> 4) & 0x0007;
    let segment = exponent + 1;
    let mantissa = mantissa & 0x000F;
    let step = 4 << segment;
    (sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

/// A-law code of one 16-bit linear sample (G.191 `alaw_compress`).
pub const fn alaw_encode(lin: i16) -> u8 {
    let lin = lin as i32;
    // 12-bit magnitude (one's complement for negatives).
    let mut ix = if lin < 0 { (!lin) >> 4 } else { lin >> 4 };
    if ix > 15 {
        let mut iexp = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16;
        ix += iexp << 4;
    }
    if lin >= 0 {
        ix |= 0x0080;
    }
    (ix ^ 0x0055) as u8
}

/// Linear value of one A-law code (G.191 `alaw_expand`).
pub const fn alaw_expand(code: u8) -> i16 {
    let ix = ((code as i32) ^ 0x0055) & 0x007F;
    let iexp = ix >> 4;
    let mut mant = ix & 0x000F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x0008;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    (if code > 127 { mant } else { -mant }) as i16
}

static ULAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_expand(i as u8);
        i += 1;
    }
    t
};

static ALAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_expand(i as u8);
        i += 1;
    }
    t
};

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// Mu-law, RTP payload type 0 (PCMU).
    Mu,
    /// A-law, RTP payload type 8 (PCMA).
    A,
}

impl Law {
    /// The code for digital silence (linear 0): 0xFF for mu-law, 0xD5 for A-law.
    pub const fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    pub fn encode_sample(self, s: i16) -> u8 {
        match self {
            Law::Mu => ulaw_encode(s),
            Law::A => alaw_encode(s),
        }
    }

    pub fn decode_sample(self, c: u8) -> i16 {
        match self {
            Law::Mu => ULAW_TABLE[c as usize],
            Law::A => ALAW_TABLE[c as usize],
        }
    }

    /// Appends one code per sample to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len());
        match self {
            Law::Mu => out.extend(pcm.iter().map(|&s| ulaw_encode(s))),
            Law::A => out.extend(pcm.iter().map(|&s| alaw_encode(s))),
        }
    }

    /// Appends one sample per code to `out`.
    pub fn decode(self, codes: &[u8], out: &mut Vec<i16>) {
        let t = match self {
            Law::Mu => &ULAW_TABLE,
            Law::A => &ALAW_TABLE,
        };
        out.extend(codes.iter().map(|&c| t[c as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_expand(0xFF), 0);
        assert_eq!(ulaw_expand(0x7F), 0);
        assert_eq!(ulaw_expand(0x80), 32124);
        assert_eq!(ulaw_expand(0x00), -32124);
        assert_eq!(ulaw_expand(0xFE), 8);
        assert_eq!(ulaw_expand(0x7E), -8);
        // Segment edges of the classic decode table.
        assert_eq!(ulaw_expand(0xF0), 120);
        assert_eq!(ulaw_expand(0xEF), 132);
        assert_eq!(ulaw_expand(0xDF), 396);
        assert_eq!(ulaw_expand(0x8F), 16764);
        assert_eq!(ulaw_expand(0x90), 15996);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_expand(0xD5), 8);
        assert_eq!(alaw_expand(0x55), -8);
        assert_eq!(alaw_expand(0xAA), 32256);
        assert_eq!(alaw_expand(0x2A), -32256);
        assert_eq!(alaw_expand(0xD4), 24);
        assert_eq!(alaw_expand(0xC5), 264);
    }

    #[test]
    fn all_256_codes_round_trip() {
        for c in 0..=255u8 {
            // Mu-law 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF.
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(ulaw_encode(ulaw_expand(c)), want, "mu-law code {c:#04x}");
            assert_eq!(alaw_encode(alaw_expand(c)), c, "A-law code {c:#04x}");
            assert_eq!(Law::Mu.decode_sample(c), ulaw_expand(c));
            assert_eq!(Law::A.decode_sample(c), alaw_expand(c));
        }
    }

    /// Every 16-bit input decodes back within half a quantisation step, and the
    /// laws are monotonic (a larger input never decodes smaller).
    #[test]
    fn all_inputs_quantise_within_half_step_and_monotonic() {
        for law in [Law::Mu, Law::A] {
            let mut levels: Vec<i16> = (0..=255u8).map(|c| law.decode_sample(c)).collect();
            levels.sort_unstable();
            levels.dedup();
            let mut prev = i16::MIN;
            for x in i16::MIN..=i16::MAX {
                let y = law.decode_sample(law.encode_sample(x));
                assert!(y >= prev, "{law:?} not monotonic at {x}");
                prev = y;
                // y must be the nearest (or, at the clipped ends, the extreme) level.
                let i = levels.partition_point(|&l| l < y);
                let below = if i > 0 { levels[i - 1] } else { y };
                let above = if i + 1 < levels.len() {
                    levels[i + 1]
                } else {
                    y
                };
                let (x, y, below, above) = (x as i32, y as i32, below as i32, above as i32);
                if x > levels[0] as i32 && x < *levels.last().unwrap() as i32 {
                    let slack = ((y - below).max(above - y) + 1) / 2 + 1;
                    assert!(
                        (x - y).abs() <= slack,
                        "{law:?}: {x} -> {y} (neighbours {below}, {above})"
                    );
                }
            }
        }
    }

    #[test]
    fn frame_helpers() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
            .collect();
        for law in [Law::Mu, Law::A] {
            let mut enc = Vec::new();
            law.encode(&pcm, &mut enc);
            assert_eq!(enc.len(), 160);
            let mut dec = Vec::new();
            law.decode(&enc, &mut dec);
            let err: f64 = pcm
                .iter()
                .zip(&dec)
                .map(|(a, b)| ((*a - *b) as f64).powi(2))
                .sum::<f64>();
            let sig: f64 = pcm.iter().map(|a| (*a as f64).powi(2)).sum();
            let snr = 10.0 * (sig / err).log10();
            assert!(snr > 30.0, "{law:?} SNR {snr}");
            assert_eq!(
                law.decode_sample(law.silence()).abs(),
                if law == Law::Mu { 0 } else { 8 }
            );
        }
    }
}
