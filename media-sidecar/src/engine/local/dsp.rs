//! The three small resamplers the local engine needs.
//!
//! - [`repeat_2x`]: 8 kHz -> 16 kHz by SAMPLE REPEAT, for pocketsphinx. Its en-us
//!   model is trained on 16 kHz speech; repeating samples keeps the spectral
//!   images of the telephone band above 4 kHz, and the model scores that far
//!   better than band-limited audio (measured: 9-19% WER vs 60-97% with a
//!   filtered resampler; see shared/notes/toolchain.md). Deliberately unfiltered.
//! - [`Interp2x`]: 8 kHz -> 16 kHz with a proper low-pass interpolator, for the
//!   earshot VAD (its network wants real 16 kHz audio, not images).
//! - [`Decimate2x`]: 16 kHz -> 8 kHz with a proper anti-alias low-pass, for
//!   flite's 16 kHz voices (TTS audio is clean: a real filter is right here).
//!
//! Both filters are one Kaiser-windowed sinc prototype (cutoff 3.7 kHz at
//! 16 kHz, 47 taps, beta 7: about -70 dB stopband), run as streaming FIRs.

use std::sync::OnceLock;

const TAPS: usize = 47;
const CUTOFF_HZ: f64 = 3_700.0;
const BETA: f64 = 7.0;

fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    let q = x * x / 4.0;
    for k in 1..60 {
        term *= q / ((k * k) as f64);
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    sum
}

/// Low-pass prototype at 16 kHz, unity DC gain.
fn prototype() -> &'static [f32; TAPS] {
    static H: OnceLock<[f32; TAPS]> = OnceLock::new();
    H.get_or_init(|| {
        let fc = CUTOFF_HZ / 16_000.0;
        let m = (TAPS - 1) as f64 / 2.0;
        let mut h = [0f64; TAPS];
        for (n, v) in h.iter_mut().enumerate() {
            let t = n as f64 - m;
            let sinc = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
            };
            let r = t / m;
            *v = sinc * bessel_i0(BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(BETA);
        }
        let sum: f64 = h.iter().sum();
        let mut out = [0f32; TAPS];
        for (o, v) in out.iter_mut().zip(h) {
            *o = (v / sum) as f32;
        }
        out
    })
}

fn sat(x: f32) -> i16 {
    x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// 8 kHz -> 16 kHz by repeating every sample (for the recognizer; see module docs).
pub fn repeat_2x(input: &[i16], out: &mut Vec<i16>) {
    out.reserve(input.len() * 2);
    for &s in input {
        out.push(s);
        out.push(s);
    }
}

/// Streaming 8 kHz -> 16 kHz low-pass interpolator (zero-stuff, filter, gain 2).
pub struct Interp2x {
    hist: Vec<f32>,
}

impl Default for Interp2x {
    fn default() -> Self {
        Self::new()
    }
}

impl Interp2x {
    pub fn new() -> Self {
        Interp2x {
            hist: vec![0.0; TAPS],
        }
    }

    /// Appends `input.len() * 2` samples.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let h = prototype();
        out.reserve(input.len() * 2);
        for &x in input {
            for v in [x as f32 * 2.0, 0.0] {
                self.hist.copy_within(1.., 0);
                self.hist[TAPS - 1] = v;
                let acc: f32 = h
                    .iter()
                    .zip(self.hist.iter().rev())
                    .map(|(c, s)| c * s)
                    .sum();
                out.push(sat(acc));
            }
        }
    }
}

/// Streaming 16 kHz -> 8 kHz decimator with an anti-alias low-pass.
pub struct Decimate2x {
    hist: Vec<f32>,
    odd: bool,
}

impl Default for Decimate2x {
    fn default() -> Self {
        Self::new()
    }
}

impl Decimate2x {
    pub fn new() -> Self {
        Decimate2x {
            hist: vec![0.0; TAPS],
            odd: false,
        }
    }

    /// Appends one sample per two inputs (phase kept across calls).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let h = prototype();
        out.reserve(input.len() / 2 + 1);
        for &x in input {
            self.hist.copy_within(1.., 0);
            self.hist[TAPS - 1] = x as f32;
            self.odd = !self.odd;
            if self.odd {
                let acc: f32 = h
                    .iter()
                    .zip(self.hist.iter().rev())
                    .map(|(c, s)| c * s)
                    .sum();
                out.push(sat(acc));
            }
        }
    }
}

/// Any-rate -> 8 kHz for whole clips (flite voices are 16 kHz; `kal` is 8 kHz).
pub fn to_8k(samples: &[i16], rate: u32) -> Vec<i16> {
    match rate {
        8_000 => samples.to_vec(),
        16_000 => {
            let mut out = Vec::with_capacity(samples.len() / 2 + TAPS);
            let mut d = Decimate2x::new();
            d.process(samples, &mut out);
            // Flush the filter's group delay so the clip's tail is not cut.
            d.process(&[0; TAPS], &mut out);
            out
        }
        r => {
            // Not used by the voices we ship; linear interpolation as a fallback.
            let n = (samples.len() as u64 * 8_000 / r as u64) as usize;
            (0..n)
                .map(|i| {
                    let pos = i as f64 * r as f64 / 8_000.0;
                    let k = pos as usize;
                    let f = pos - k as f64;
                    let a = samples[k.min(samples.len() - 1)] as f64;
                    let b = samples[(k + 1).min(samples.len() - 1)] as f64;
                    (a + (b - a) * f) as i16
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(f: f64, rate: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / rate).sin()) as i16)
            .collect()
    }
    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn repeat_doubles_each_sample() {
        let mut out = Vec::new();
        repeat_2x(&[1, -2, 3], &mut out);
        assert_eq!(out, vec![1, 1, -2, -2, 3, 3]);
    }

    #[test]
    fn decimator_passes_band_and_rejects_alias() {
        // 1 kHz passes at ~unity; 6 kHz (would alias to 2 kHz) is strongly attenuated.
        let pass = to_8k(&tone(1000.0, 16000.0, 16000), 16000);
        let stop = to_8k(&tone(6000.0, 16000.0, 16000), 16000);
        let r_in = rms(&tone(1000.0, 16000.0, 16000));
        assert!((rms(&pass[100..7900]) / r_in - 1.0).abs() < 0.05);
        assert!(
            rms(&stop[100..7900]) / r_in < 0.01,
            "{}",
            rms(&stop[100..7900])
        );
        assert_eq!(pass.len(), 8000 + TAPS / 2 + 1);
    }

    #[test]
    fn interpolator_keeps_level_and_length() {
        let x = tone(1000.0, 8000.0, 1600);
        let mut it = Interp2x::new();
        let mut out = Vec::new();
        for c in x.chunks(160) {
            it.process(c, &mut out);
        }
        assert_eq!(out.len(), 3200);
        let ratio = rms(&out[200..3000]) / rms(&x);
        assert!((ratio - 1.0).abs() < 0.05, "{ratio}");
    }
}
