//! 8 kHz <-> 48 kHz resampling for the Opus path: a fixed-ratio (x6 / /6)
//! polyphase FIR with a Kaiser-windowed sinc.
//!
//! Why our own instead of `rubato`: the ratio is a fixed integer, so a
//! polyphase FIR is the textbook exact solution (~60 lines), allocation-free
//! per frame, deterministic, and its latency is a known constant
//! (about 20 samples at 8 kHz per direction; [`ROUND_TRIP_DELAY_8K`] up and down), which the
//! alignment tests rely on. rubato's strength (arbitrary and variable ratios)
//! buys nothing here and its API changed across 0.x/1.x releases.
//!
//! Filter: 240 taps at 48 kHz (40 per phase), cutoff 3.8 kHz, Kaiser beta 7
//! (about -70 dB stopband): flat across the 300-3400 Hz telephone band,
//! aliases of 48 kHz content above ~4.25 kHz fall above 3.75 kHz.
//! Cost: 40 multiply-adds per 48 kHz output sample (up) or per 8 kHz output
//! sample over 240 inputs (down), about 2 M MAC/s each way per call.

use std::sync::OnceLock;

pub const RATIO: usize = 6;
const TAPS_PER_PHASE: usize = 40;
const TAPS: usize = RATIO * TAPS_PER_PHASE;
const CUTOFF_HZ: f64 = 3800.0;
const KAISER_BETA: f64 = 7.0;

/// Group delay of each direction: (TAPS-1)/2 = 119.5 samples at 48 kHz, about
/// 20 samples (2.5 ms) at 8 kHz. Up then down (the decimator keeps every 6th
/// sample, the last of each group of 6) delays by exactly this many 8 kHz samples:
pub const ROUND_TRIP_DELAY_8K: usize = (TAPS - 1).div_ceil(RATIO) - 1;

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..50 {
        term *= q / ((k * k) as f64);
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    sum
}

/// The prototype low-pass at 48 kHz, normalised to unity DC gain.
fn prototype() -> &'static [f32; TAPS] {
    static H: OnceLock<[f32; TAPS]> = OnceLock::new();
    H.get_or_init(|| {
        let fc = CUTOFF_HZ / 48_000.0; // cycles per sample
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
            let w = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(KAISER_BETA);
            *v = sinc * w;
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

/// 8 kHz -> 48 kHz, streaming.
pub struct Upsampler {
    /// The last TAPS_PER_PHASE input samples, newest last.
    hist: [f32; TAPS_PER_PHASE],
    /// phases[p][k] = 6 * h[p + 6k]
    phases: [[f32; TAPS_PER_PHASE]; RATIO],
}

impl Default for Upsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Upsampler {
    pub fn new() -> Self {
        let h = prototype();
        let mut phases = [[0f32; TAPS_PER_PHASE]; RATIO];
        for (p, ph) in phases.iter_mut().enumerate() {
            for (k, c) in ph.iter_mut().enumerate() {
                *c = h[p + RATIO * k] * RATIO as f32;
            }
        }
        Upsampler {
            hist: [0.0; TAPS_PER_PHASE],
            phases,
        }
    }

    /// Appends `input.len() * 6` samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve(input.len() * RATIO);
        for &x in input {
            self.hist.copy_within(1.., 0);
            self.hist[TAPS_PER_PHASE - 1] = x as f32;
            for ph in &self.phases {
                // y = sum_k ph[k] * x[n-k]; hist[TAPS_PER_PHASE-1-k] = x[n-k]
                let mut acc = 0f32;
                for (c, v) in ph.iter().zip(self.hist.iter().rev()) {
                    acc += c * v;
                }
                out.push(sat(acc));
            }
        }
    }
}

/// 48 kHz -> 8 kHz, streaming. Input lengths need not be multiples of 6.
pub struct Downsampler {
    /// The last TAPS-1 input samples (oldest first), then the block being processed.
    buf: Vec<f32>,
    /// Input samples seen modulo 6, to keep the decimation phase across calls.
    phase: usize,
}

impl Default for Downsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Downsampler {
    pub fn new() -> Self {
        Downsampler {
            buf: vec![0.0; TAPS - 1],
            phase: 0,
        }
    }

    /// Appends one output sample per 6 input samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let h = prototype();
        out.reserve(input.len() / RATIO + 1);
        self.buf.extend(input.iter().map(|&x| x as f32));
        for j in 0..input.len() {
            self.phase += 1;
            if self.phase == RATIO {
                self.phase = 0;
                // Window ending at the newest sample j: buf[j ..= j + TAPS - 1], reversed against h.
                let w = &self.buf[j..j + TAPS];
                let mut acc = 0f32;
                for (c, v) in h.iter().zip(w.iter().rev()) {
                    acc += c * v;
                }
                out.push(sat(acc));
            }
        }
        let keep_from = self.buf.len() - (TAPS - 1);
        self.buf.drain(..keep_from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn up_then_down_is_near_identity_in_band() {
        for f in [300.0, 1000.0, 3000.0] {
            let x = tone(f, 8000.0, 1600, 10_000.0);
            let (mut up, mut down) = (Upsampler::new(), Downsampler::new());
            let mut hi = Vec::new();
            let mut back = Vec::new();
            for chunk in x.chunks(160) {
                hi.clear();
                up.process(chunk, &mut hi);
                assert_eq!(hi.len(), 960);
                down.process(&hi, &mut back);
            }
            assert_eq!(back.len(), 1600);
            // Two passes of the filter: 239 samples at 48 kHz, decimated at phase 5: 39 at 8 kHz.
            let lag = ROUND_TRIP_DELAY_8K;
            assert_eq!(lag, 39);
            let err: Vec<i16> = (400..1500).map(|i| back[i] - x[i - lag]).collect();
            let snr = 20.0 * (rms(&x[400..1500]) / rms(&err).max(1e-9)).log10();
            assert!(snr > 25.0, "{f} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn downsampler_rejects_out_of_band() {
        // 6 kHz at 48 kHz would alias to 2 kHz at 8 kHz without a filter.
        let x = tone(6000.0, 48_000.0, 9600, 10_000.0);
        let mut out = Vec::new();
        Downsampler::new().process(&x, &mut out);
        let r = rms(&out[100..]);
        assert!(r < 10_000.0 * 0.707 * 0.001, "alias rms {r}");
        // In band passes at unity.
        let x = tone(1000.0, 48_000.0, 9600, 10_000.0);
        let mut out = Vec::new();
        let mut d = Downsampler::new();
        d.process(&x[..4000], &mut out);
        d.process(&x[4000..], &mut out);
        assert_eq!(out.len(), 1600);
        let r = rms(&out[100..]);
        assert!(
            (r / (10_000.0 * std::f64::consts::FRAC_1_SQRT_2) - 1.0).abs() < 0.01,
            "in-band rms {r}"
        );
    }

    #[test]
    fn upsampler_images_are_suppressed() {
        // A 1 kHz tone at 8 kHz zero-stuffed has images at 7, 9, 15, 17 kHz...
        let x = tone(1000.0, 8000.0, 800, 10_000.0);
        let mut hi = Vec::new();
        Upsampler::new().process(&x, &mut hi);
        // Project onto 7 kHz and 1 kHz.
        let proj = |f: f64| {
            let (mut c, mut s) = (0.0, 0.0);
            for (i, &v) in hi.iter().enumerate().skip(600) {
                let ph = 2.0 * std::f64::consts::PI * f * i as f64 / 48_000.0;
                c += v as f64 * ph.cos();
                s += v as f64 * ph.sin();
            }
            (c * c + s * s).sqrt()
        };
        let ratio_db = 20.0 * (proj(7000.0) / proj(1000.0)).log10();
        assert!(ratio_db < -50.0, "image at {ratio_db:.1} dB");
    }
}
