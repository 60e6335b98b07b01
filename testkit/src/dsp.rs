//! Signal helpers for tests: tones, G.711 mu-law, resampling to 8 kHz,
//! correlation. These are references written apart from the product's media
//! code, so a test does not check the product against itself.

use std::f64::consts::PI;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};

/// `n` samples at `rate` Hz of a sum of sines, each `(frequency Hz, amplitude)`.
pub fn tone(rate: u32, parts: &[(f64, f64)], n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            parts
                .iter()
                .map(|(hz, a)| a * (2.0 * PI * hz * t).sin())
                .sum::<f64>() as i16
        })
        .collect()
}

/// Amplitude of the `hz` component of `x` sampled at `rate` (one DFT bin).
pub fn amp_at(x: &[i16], rate: u32, hz: f64) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let ph = 2.0 * PI * hz * i as f64 / rate as f64;
        s += v as f64 * ph.sin();
        c += v as f64 * ph.cos();
    }
    2.0 * (s * s + c * c).sqrt() / x.len() as f64
}

/// G.711 mu-law encoding (ITU-T reference).
pub fn mulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    s = s.abs().min(32_635) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// G.711 mu-law decoding (ITU-T reference).
pub fn mulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exp = (u >> 4) & 7;
    let mag = ((i32::from(u & 0x0F) << 3) + 0x84) << exp;
    let x = (mag - 0x84) as i16;
    if u & 0x80 != 0 {
        -x
    } else {
        x
    }
}

/// G.711 A-law encoding (the ITU-T reference's segment search).
pub fn alaw_encode(sample: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let Some(seg) = SEG_END.iter().position(|&end| pcm <= end) else {
        return (0x7F ^ mask) as u8;
    };
    let mantissa = if seg < 2 { pcm >> 1 } else { pcm >> seg } & 0x0F;
    (((seg as i32) << 4 | mantissa) ^ mask) as u8
}

/// G.711 A-law decoding (ITU-T reference).
pub fn alaw_decode(code: u8) -> i16 {
    let a = i32::from(code ^ 0x55);
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Integer-factor decimation to 8 kHz behind a windowed-sinc low-pass at 3.6 kHz.
pub fn resample_to_8k(x: &[f64], rate: u32) -> Vec<f64> {
    assert!(
        rate.is_multiple_of(8000),
        "sample rate {rate} is not a multiple of 8 kHz"
    );
    let m = (rate / 8000) as usize;
    if m == 1 {
        return x.to_vec();
    }
    let half = 16 * m as isize;
    let fc = 3600.0 / rate as f64;
    let taps: Vec<f64> = (-half..=half)
        .map(|k| {
            let k = k as f64;
            let sinc = if k == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * k).sin() / (PI * k)
            };
            sinc * (0.54 + 0.46 * (PI * k / half as f64).cos())
        })
        .collect();
    (0..x.len() / m)
        .map(|i| {
            let c = (i * m) as isize;
            taps.iter()
                .enumerate()
                .map(|(j, t)| {
                    t * x
                        .get((c + j as isize - half) as usize)
                        .copied()
                        .unwrap_or(0.0)
                })
                .sum()
        })
        .collect()
}

/// `text` spoken by flite (`voice`), as 8 kHz 16-bit PCM.
pub fn flite_8k(dir: &Path, voice: &str, text: &str) -> Result<Vec<i16>, String> {
    let raw = dir.join(format!("flite-{}.wav", std::process::id()));
    let ok = Command::new(crate::FLITE.path()?)
        .args(["-voice", voice, "-t", text, "-o"])
        .arg(&raw)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("flite (Debian package flite): {e}"))?;
    if !ok.success() {
        return Err(format!("flite failed ({ok})"));
    }
    let (rate, pcm) = crate::read_wav(&raw)?;
    let _ = std::fs::remove_file(&raw);
    let x: Vec<f64> = pcm.into_iter().map(f64::from).collect();
    Ok(resample_to_8k(&x, rate)
        .into_iter()
        .map(|v| v.clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Normalised cross-correlation of `x` against `y` shifted by `lag`
/// (`y[i + lag]` ~ `x[i]`), over the samples both have; 0 for silence.
pub fn ncc(x: &[i16], y: &[i16], lag: usize) -> f64 {
    let shifted = y.get(lag..).unwrap_or_default();
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for (&a, &b) in x.iter().zip(shifted) {
        let (a, b) = (f64::from(a), f64::from(b));
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx == 0.0 || yy == 0.0 {
        0.0
    } else {
        xy / (xx * yy).sqrt()
    }
}

/// The lag in `lags` where `y` best matches `x` ([`ncc`]), and that correlation
/// (`f64::MIN` for an empty range).
pub fn best_lag(x: &[i16], y: &[i16], lags: Range<usize>) -> (usize, f64) {
    lags.map(|l| (l, ncc(x, y, l)))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
}

/// Where `needle` sits in `hay`: the offset (needle wholly inside) with the
/// highest normalised correlation, and that correlation.
pub fn find_in(hay: &[i16], needle: &[i16]) -> (usize, f64) {
    best_lag(needle, hay, 0..(hay.len() + 1).saturating_sub(needle.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mu_law_round_trips_and_silence_is_zero() {
        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x7F), 0);
        assert_eq!(mulaw_encode(0), 0xFF);
        for x in [-32000i16, -1000, -100, -9, 9, 100, 1000, 8000, 32000] {
            let y = mulaw_decode(mulaw_encode(x));
            assert!(
                (i32::from(x) - i32::from(y)).abs() <= i32::from(x).abs() / 16 + 8,
                "{x} -> {y}"
            );
        }
        // Every code decodes to what it re-encodes from.
        for b in 0..=255u8 {
            let x = mulaw_decode(b);
            assert_eq!(mulaw_decode(mulaw_encode(x)), x, "code {b:#x}");
        }
    }

    #[test]
    fn a_law_round_trips_and_silence_is_small() {
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        for x in [-32000i16, -1000, -100, -9, 9, 100, 1000, 8000, 32000] {
            let y = alaw_decode(alaw_encode(x));
            assert!(
                (i32::from(x) - i32::from(y)).abs() <= i32::from(x).abs() / 16 + 16,
                "{x} -> {y}"
            );
        }
        for b in 0..=255u8 {
            let x = alaw_decode(b);
            assert_eq!(alaw_encode(x), b, "code {b:#x}");
        }
    }

    #[test]
    fn a_tone_has_its_amplitude_at_its_frequency_only() {
        let x = tone(8000, &[(1000.0, 8000.0), (3000.0, 2000.0)], 8000);
        assert!((amp_at(&x, 8000, 1000.0) - 8000.0).abs() < 10.0);
        assert!((amp_at(&x, 8000, 3000.0) - 2000.0).abs() < 10.0);
        assert!(amp_at(&x, 8000, 2000.0) < 10.0);
    }

    #[test]
    fn resampling_keeps_the_voice_band_and_drops_what_8k_cannot_hold() {
        let x: Vec<f64> = tone(48_000, &[(1000.0, 8000.0), (6000.0, 8000.0)], 48_000)
            .into_iter()
            .map(f64::from)
            .collect();
        let y: Vec<i16> = resample_to_8k(&x, 48_000)
            .into_iter()
            .map(|v| v as i16)
            .collect();
        assert_eq!(y.len(), 8000);
        let mid = &y[400..7600];
        assert!((amp_at(mid, 8000, 1000.0) - 8000.0).abs() < 300.0);
        // 6 kHz would alias to 2 kHz.
        assert!(amp_at(mid, 8000, 2000.0) < 100.0);
        assert_eq!(resample_to_8k(&x[..10], 8000), x[..10].to_vec());
    }

    #[test]
    fn a_needle_is_found_where_it_was_cut_from() {
        let hay: Vec<i16> = (0..4000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 16) as i16) / 4)
            .collect();
        let (at, c) = find_in(&hay, &hay[1234..1734]);
        assert_eq!(at, 1234);
        assert!((c - 1.0).abs() < 1e-9, "{c}");
        let (lag, c) = best_lag(&hay[50..1050], &hay, 0..100);
        assert_eq!((lag, c > 0.999), (50, true));
        assert_eq!(find_in(&hay[..10], &hay[..20]).1, f64::MIN);
        assert_eq!(ncc(&[0; 10], &hay, 0), 0.0);
        assert_eq!(ncc(&hay, &hay[..10], 20), 0.0);
    }
}
