//! The sidecar's one resampling module: every rate conversion of call,
//! codec and engine audio goes through here.
//!
//! Two kinds, chosen by the ratio and by what the caller needs:
//!
//! - [`Upsampler`] / [`Downsampler`]: integer-ratio polyphase FIRs (a
//!   Kaiser-windowed sinc, [`LowPass`]) for the real-time paths between
//!   8 kHz and an exact multiple: Opus at 48 kHz ([`OpusUpsampler`],
//!   [`OpusDownsampler`]), the local engine's VAD and voices at 16 kHz
//!   ([`WidebandUpsampler`], [`WidebandDownsampler`]).
//! - [`StreamResampler`]: rubato's synchronous FFT resampler for any fixed
//!   ratio (Gemini's 8k -> 16k, and the 12 to 48 kHz rates its output may
//!   announce, 22.05 and 44.1 kHz included), and for whole clips at a rate
//!   with no integer filter ([`to_8k`]).
//!
//! Why the integer FIRs stay instead of rubato everywhere (measured with
//! rubato 5.1 `Fft`, 20 ms blocks): they are sample-synchronous, exactly
//! `n * ratio` samples out for `n` in (and one per `ratio` in, phase kept)
//! from the first call and for any length, where rubato takes fixed input
//! blocks (the Opus decoder returns variable lengths on loss concealment
//! and FEC) and its 48k -> 8k block gives 108 samples, not 160; and their
//! delay is small and constant: 2.5 ms per direction at 8k <-> 48k
//! ([`ROUND_TRIP_DELAY_8K`], which the Opus alignment tests in
//! `tests/media_loopback.rs` see as a fixed lag) against rubato's 10 ms per
//! direction (480 samples at 48 kHz, 160 at 16 kHz), i.e. 15 ms more mouth to
//! ear on every Opus call. Allocation-free per frame, deterministic.
//!
//! [`repeat_2x`] is the one deliberately unfiltered converter (see there).

use std::sync::OnceLock;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// A Kaiser-windowed sinc low-pass of `TAPS` taps, designed once per
/// process on first use.
pub struct LowPass<const TAPS: usize> {
    /// The (high) rate it runs at.
    rate_hz: f64,
    cutoff_hz: f64,
    kaiser_beta: f64,
    coefficients: OnceLock<[f32; TAPS]>,
}

/// 8 kHz <-> 48 kHz (Opus): 240 taps at 48 kHz, cutoff 3.8 kHz, beta 7
/// (about -70 dB stopband): flat across the 300-3400 Hz telephone band;
/// aliases of 48 kHz content above ~4.25 kHz fall above 3.75 kHz. Cost: 40
/// multiply-adds per 48 kHz output sample (up) or per 8 kHz output sample
/// over 240 inputs (down), about 2 M MAC/s each way per call.
pub static OPUS_LOW_PASS: LowPass<OPUS_TAPS> = LowPass::new(48_000.0, 3_800.0, 7.0);
const OPUS_TAPS: usize = 240;

/// 8 kHz <-> 16 kHz (the local engine's VAD and voices): 47 taps at 16 kHz,
/// cutoff 3.7 kHz, beta 7 (about -70 dB stopband).
pub static WIDEBAND_LOW_PASS: LowPass<WIDEBAND_TAPS> = LowPass::new(16_000.0, 3_700.0, 7.0);
const WIDEBAND_TAPS: usize = 47;

/// Ratio of the Opus path (8 kHz <-> 48 kHz).
pub const OPUS_RATIO: usize = 6;

/// 8 kHz -> 48 kHz for Opus.
pub type OpusUpsampler = Upsampler<OPUS_RATIO, { OPUS_TAPS / OPUS_RATIO }>;
/// 48 kHz -> 8 kHz for Opus.
pub type OpusDownsampler = Downsampler<OPUS_RATIO, OPUS_TAPS>;
/// 8 kHz -> 16 kHz, filtered (the local engine's VAD).
pub type WidebandUpsampler = Upsampler<2, { WIDEBAND_TAPS.div_ceil(2) }>;
/// 16 kHz -> 8 kHz, filtered (the local engine's voices).
pub type WidebandDownsampler = Downsampler<2, WIDEBAND_TAPS>;

/// Up then down through the Opus filters (the decimator keeps the last sample
/// of each group of 6) delays by exactly this many 8 kHz samples: twice the
/// group delay of 119.5 samples at 48 kHz, about 20 samples (2.5 ms) at 8 kHz
/// per direction.
pub const ROUND_TRIP_DELAY_8K: usize = (OPUS_TAPS - 1).div_ceil(OPUS_RATIO) - 1;

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

impl<const TAPS: usize> LowPass<TAPS> {
    pub const fn new(rate_hz: f64, cutoff_hz: f64, kaiser_beta: f64) -> Self {
        LowPass {
            rate_hz,
            cutoff_hz,
            kaiser_beta,
            coefficients: OnceLock::new(),
        }
    }

    /// The impulse response, normalised to unity DC gain.
    pub fn coefficients(&self) -> &[f32; TAPS] {
        self.coefficients.get_or_init(|| {
            let fc = self.cutoff_hz / self.rate_hz; // cycles per sample
            let m = TAPS.saturating_sub(1) as f64 / 2.0;
            let mut h = [0f64; TAPS];
            for (n, v) in h.iter_mut().enumerate() {
                let t = n as f64 - m;
                let sinc = if t == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
                };
                let r = t / m;
                let w = bessel_i0(self.kaiser_beta * (1.0 - r * r).max(0.0).sqrt())
                    / bessel_i0(self.kaiser_beta);
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
}

fn sat(x: f32) -> i16 {
    x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// 8 kHz -> `RATIO` x 8 kHz, streaming: zero-stuffing and the low-pass, run
/// as `RATIO` polyphase branches of `TAPS_PER_PHASE` (gain `RATIO`). Sizes
/// are type parameters so the inner loops have fixed lengths.
pub struct Upsampler<const RATIO: usize, const TAPS_PER_PHASE: usize> {
    /// The last TAPS_PER_PHASE input samples, newest last.
    hist: [f32; TAPS_PER_PHASE],
    /// phases[p][k] = RATIO * h[p + RATIO * k] (zero past the filter's end)
    phases: [[f32; TAPS_PER_PHASE]; RATIO],
}

impl Default for OpusUpsampler {
    fn default() -> Self {
        Self::new(&OPUS_LOW_PASS)
    }
}

impl Default for WidebandUpsampler {
    fn default() -> Self {
        Self::new(&WIDEBAND_LOW_PASS)
    }
}

impl<const RATIO: usize, const TAPS_PER_PHASE: usize> Upsampler<RATIO, TAPS_PER_PHASE> {
    /// `filter` runs at `RATIO` times the input rate and has at most
    /// `RATIO * TAPS_PER_PHASE` taps.
    pub fn new<const TAPS: usize>(filter: &LowPass<TAPS>) -> Self {
        let h = filter.coefficients();
        let mut phases = [[0f32; TAPS_PER_PHASE]; RATIO];
        for (p, ph) in phases.iter_mut().enumerate() {
            for (k, c) in ph.iter_mut().enumerate() {
                *c = h.get(p + RATIO * k).copied().unwrap_or(0.0) * RATIO as f32;
            }
        }
        Upsampler {
            hist: [0.0; TAPS_PER_PHASE],
            phases,
        }
    }

    /// Appends `input.len() * RATIO` samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve(input.len() * RATIO);
        for &x in input {
            self.hist.copy_within(1.., 0);
            if let Some(newest) = self.hist.last_mut() {
                *newest = x as f32;
            }
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

/// Which sample of each group of `RATIO` inputs a [`Downsampler`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    First,
    Last,
}

/// `RATIO` x 8 kHz -> 8 kHz, streaming: the `TAPS` low-pass evaluated only at
/// the samples kept. Input lengths need not be multiples of `RATIO`.
pub struct Downsampler<const RATIO: usize, const TAPS: usize> {
    h: &'static [f32; TAPS],
    /// The last TAPS-1 input samples (oldest first), then the block being processed.
    buf: Vec<f32>,
    /// Input samples seen modulo RATIO, to keep the decimation phase across calls.
    phase: usize,
}

/// Keeps the last of each 6.
impl Default for OpusDownsampler {
    fn default() -> Self {
        Self::new(&OPUS_LOW_PASS, Keep::Last)
    }
}

/// Keeps the first of each 2.
impl Default for WidebandDownsampler {
    fn default() -> Self {
        Self::new(&WIDEBAND_LOW_PASS, Keep::First)
    }
}

impl<const RATIO: usize, const TAPS: usize> Downsampler<RATIO, TAPS> {
    /// `filter` runs at the input rate.
    pub fn new(filter: &'static LowPass<TAPS>, keep: Keep) -> Self {
        Downsampler {
            h: filter.coefficients(),
            buf: vec![0.0; TAPS.saturating_sub(1)],
            phase: match keep {
                Keep::First => RATIO.saturating_sub(1),
                Keep::Last => 0,
            },
        }
    }

    /// Appends one output sample per `RATIO` input samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve(input.len() / RATIO.max(1) + 1);
        self.buf.extend(input.iter().map(|&x| x as f32));
        for j in 0..input.len() {
            self.phase += 1;
            if self.phase >= RATIO {
                self.phase = 0;
                // Window ending at the newest sample j: buf[j ..= j + TAPS - 1], reversed against h.
                let Some(w) = self.buf.get(j..j + TAPS) else {
                    continue;
                };
                let mut acc = 0f32;
                for (c, v) in self.h.iter().zip(w.iter().rev()) {
                    acc += c * v;
                }
                out.push(sat(acc));
            }
        }
        let keep_from = self.buf.len().saturating_sub(TAPS.saturating_sub(1));
        self.buf.drain(..keep_from);
    }
}

/// 8 kHz -> 16 kHz by repeating every sample, for pocketsphinx. Deliberately
/// unfiltered: its en-us model is trained on 16 kHz speech; repeating
/// samples keeps the spectral images of the telephone band above 4 kHz, and
/// the model scores that far better than band-limited audio (measured: 9-19%
/// WER vs 60-97% with a filtered resampler; see shared/notes/toolchain.md).
pub fn repeat_2x(input: &[i16], out: &mut Vec<i16>) {
    out.reserve(input.len() * 2);
    for &s in input {
        out.push(s);
        out.push(s);
    }
}

/// A whole clip at `rate` -> 8 kHz, tail included (flite voices are 16 kHz;
/// `kal` is 8 kHz; any other rate goes through [`StreamResampler`]).
pub fn to_8k(samples: &[i16], rate: u32) -> Result<Vec<i16>, String> {
    match rate {
        8_000 => Ok(samples.to_vec()),
        16_000 => {
            let taps = WIDEBAND_TAPS;
            let mut out = Vec::with_capacity(samples.len() / 2 + taps);
            let mut d = WidebandDownsampler::default();
            d.process(samples, &mut out);
            // Flush the filter's group delay so the clip's tail is not cut.
            d.process(&vec![0; taps], &mut out);
            Ok(out)
        }
        0 => Err("a clip at 0 Hz".into()),
        r => {
            let mut rs = StreamResampler::new(r, 8_000, (r / 50).max(1) as usize)?;
            let mut out = Vec::with_capacity(samples.len() / (r as usize / 8_000).max(1) + 1);
            rs.process(samples, &mut out);
            rs.flush(&mut out);
            Ok(out)
        }
    }
}

/// Streaming fixed-ratio resampling with rubato's synchronous FFT resampler
/// (`Fft`, BlackmanHarris2 anti-aliasing window): any fixed ratio, proper
/// low-pass. Input of any length is buffered into the resampler's fixed
/// chunk; the output is PCM16 with saturation.
pub struct StreamResampler {
    from: u32,
    to: u32,
    inner: Fft<f32>,
    chunk_in: usize,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    /// Output samples still to drop at the start (the resampler's delay), so
    /// output sample k lines up with input sample k * to / from.
    skip: usize,
}

impl StreamResampler {
    /// `chunk_in`: input frames per internal block (20 ms is a good choice).
    pub fn new(from: u32, to: u32, chunk_in: usize) -> Result<Self, String> {
        let inner = Fft::<f32>::new(from as usize, to as usize, chunk_in, 1, FixedSync::Input)
            .map_err(|e| format!("resampler {from}->{to}: {e}"))?;
        let chunk_in = inner.input_frames_next();
        let out_max = inner.output_frames_max();
        let skip = inner.output_delay();
        Ok(StreamResampler {
            from,
            to,
            inner,
            chunk_in,
            pending: Vec::new(),
            out_buf: vec![0.0; out_max],
            skip,
        })
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Feeds `input`; appends every output sample that is ready to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.pending.extend(input.iter().map(|&s| s as f32));
        while self.pending.len() >= self.chunk_in {
            self.run_chunk(self.chunk_in, out);
            self.pending.drain(..self.chunk_in);
        }
    }

    /// Pushes out what is buffered (zero-padded) plus the filter's tail, then
    /// resets: use at the end of a turn.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let delay = self.inner.output_delay();
        let want_total = {
            // Samples the remainder corresponds to at the output rate, plus the delay still inside.
            let rem = self.pending.len() as u64 * self.to as u64 / self.from as u64;
            rem as usize + delay.saturating_sub(self.skip)
        };
        let start = out.len();
        let mut guard = 0;
        while out.len() - start < want_total && guard < 8 {
            let n = self.pending.len().min(self.chunk_in);
            self.pending.resize(self.chunk_in, 0.0);
            self.run_chunk(self.chunk_in, out);
            self.pending.drain(..self.chunk_in);
            let _ = n;
            guard += 1;
        }
        out.truncate(start + want_total.min(out.len() - start));
        self.reset();
    }

    /// Drops everything buffered (e.g. on barge-in) and restarts clean.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.pending.clear();
        self.skip = self.inner.output_delay();
    }

    fn run_chunk(&mut self, n: usize, out: &mut Vec<i16>) {
        // The adapters and the fixed chunk are sized by us above; should
        // rubato still refuse, the chunk is dropped rather than the call.
        let Some(block) = self.pending.get(..n) else {
            return;
        };
        let Ok(input) = InterleavedSlice::new(block, 1, n) else {
            return;
        };
        let frames = self.out_buf.len();
        let Ok(mut output) = InterleavedSlice::new_mut(&mut self.out_buf[..], 1, frames) else {
            return;
        };
        let Ok((_, produced)) = self.inner.process_into_buffer(&input, &mut output, None) else {
            return;
        };
        let produced = produced.min(frames);
        let drop = self.skip.min(produced);
        self.skip -= drop;
        out.extend(
            self.out_buf[drop..produced]
                .iter()
                .map(|&x| x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    /// Correlation of `x` against a sine of `hz` at `rate` (amplitude estimate).
    fn amp_at(x: &[i16], rate: u32, hz: f64) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64;
            s += v as f64 * ph.sin();
            c += v as f64 * ph.cos();
        }
        2.0 * (s * s + c * c).sqrt() / x.len() as f64
    }

    // --- integer-ratio FIRs: Opus (x6 / ÷6) ---

    #[test]
    fn up_then_down_is_near_identity_in_band() {
        for f in [300.0, 1000.0, 3000.0] {
            let x = tone(8000, f, 1600, 10_000.0);
            let (mut up, mut down) = (OpusUpsampler::default(), OpusDownsampler::default());
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
        let x = tone(48_000, 6000.0, 9600, 10_000.0);
        let mut out = Vec::new();
        OpusDownsampler::default().process(&x, &mut out);
        let r = rms(&out[100..]);
        assert!(r < 10_000.0 * 0.707 * 0.001, "alias rms {r}");
        // In band passes at unity.
        let x = tone(48_000, 1000.0, 9600, 10_000.0);
        let mut out = Vec::new();
        let mut d = OpusDownsampler::default();
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
        let x = tone(8000, 1000.0, 800, 10_000.0);
        let mut hi = Vec::new();
        OpusUpsampler::default().process(&x, &mut hi);
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

    /// The reason the integer FIRs exist (module docs): rubato's FFT
    /// resampler delays 8k -> 48k by 10 ms and gives uneven blocks 48k -> 8k,
    /// where the polyphase FIR gives exactly 6x / ÷6 with 2.5 ms per direction.
    #[test]
    fn rubato_would_add_delay_and_uneven_blocks_on_the_opus_path() {
        let up = Fft::<f32>::new(8_000, 48_000, 160, 1, FixedSync::Input).unwrap();
        assert_eq!(up.output_delay(), 480, "10 ms at 48 kHz");
        let down = Fft::<f32>::new(48_000, 8_000, 960, 1, FixedSync::Input).unwrap();
        assert_ne!(down.output_frames_next(), 160);
        // The polyphase FIRs: exactly 960 out per 160 in from the first frame.
        let mut hi = Vec::new();
        OpusUpsampler::default().process(&[0; 160], &mut hi);
        assert_eq!(hi.len(), 960);
    }

    // --- integer-ratio FIRs: wideband (x2 / ÷2) and clips ---

    #[test]
    fn repeat_doubles_each_sample() {
        let mut out = Vec::new();
        repeat_2x(&[1, -2, 3], &mut out);
        assert_eq!(out, vec![1, 1, -2, -2, 3, 3]);
    }

    #[test]
    fn wideband_decimator_passes_band_and_rejects_alias() {
        // 1 kHz passes at ~unity; 6 kHz (would alias to 2 kHz) is strongly attenuated.
        let pass = to_8k(&tone(16_000, 1000.0, 16000, 8000.0), 16000).unwrap();
        let stop = to_8k(&tone(16_000, 6000.0, 16000, 8000.0), 16000).unwrap();
        let r_in = rms(&tone(16_000, 1000.0, 16000, 8000.0));
        assert!((rms(&pass[100..7900]) / r_in - 1.0).abs() < 0.05);
        assert!(
            rms(&stop[100..7900]) / r_in < 0.01,
            "{}",
            rms(&stop[100..7900])
        );
        assert_eq!(pass.len(), 8000 + WIDEBAND_TAPS / 2 + 1);
    }

    #[test]
    fn wideband_interpolator_keeps_level_and_length() {
        let x = tone(8000, 1000.0, 1600, 8000.0);
        let mut it = WidebandUpsampler::default();
        let mut out = Vec::new();
        for c in x.chunks(160) {
            it.process(c, &mut out);
        }
        assert_eq!(out.len(), 3200);
        let ratio = rms(&out[200..3000]) / rms(&x);
        assert!((ratio - 1.0).abs() < 0.05, "{ratio}");
    }

    /// The wideband filters as polyphase branches compute exactly what the
    /// local engine's former zero-stuff-and-filter loops did (same products,
    /// same order; the skipped terms were zeros).
    #[test]
    fn wideband_polyphase_matches_the_direct_form() {
        let h = WIDEBAND_LOW_PASS.coefficients();
        let x: Vec<i16> = tone(8000, 700.0, 400, 9000.0)
            .iter()
            .zip(tone(8000, 3100.0, 400, 9000.0))
            .map(|(a, b)| a.saturating_add(b))
            .collect();
        // Direct form: zero-stuff with gain 2, filter every sample.
        let mut hist = vec![0f32; h.len()];
        let mut direct = Vec::new();
        for &s in &x {
            for v in [s as f32 * 2.0, 0.0] {
                hist.copy_within(1.., 0);
                hist[h.len() - 1] = v;
                let acc: f32 = h.iter().zip(hist.iter().rev()).map(|(c, s)| c * s).sum();
                direct.push(sat(acc));
            }
        }
        let mut poly = Vec::new();
        let mut up = WidebandUpsampler::default();
        for c in x.chunks(37) {
            up.process(c, &mut poly);
        }
        assert_eq!(poly, direct);
        // Direct-form decimator: filter every sample, keep the first of each two.
        let mut hist = vec![0f32; h.len()];
        let (mut direct, mut odd) = (Vec::new(), false);
        for &s in &poly {
            hist.copy_within(1.., 0);
            hist[h.len() - 1] = s as f32;
            odd = !odd;
            if odd {
                let acc: f32 = h.iter().zip(hist.iter().rev()).map(|(c, s)| c * s).sum();
                direct.push(sat(acc));
            }
        }
        let mut down_out = Vec::new();
        let mut down = WidebandDownsampler::default();
        for c in poly.chunks(41) {
            down.process(c, &mut down_out);
        }
        assert_eq!(down_out, direct);
    }

    #[test]
    fn clips_at_other_rates_are_filtered_to_8k() {
        for rate in [22_050, 24_000, 44_100] {
            let out = to_8k(&tone(rate, 1000.0, rate as usize, 8000.0), rate).unwrap();
            assert!(
                (out.len() as i64 - 8000).abs() <= 16,
                "{rate}: {}",
                out.len()
            );
            let a = amp_at(&out[1000..7000], 8000, 1000.0);
            assert!((a - 8000.0).abs() < 400.0, "{rate}: amp {a}");
        }
        assert_eq!(to_8k(&[1, 2, 3], 8_000).unwrap(), vec![1, 2, 3]);
        assert!(to_8k(&[1, 2, 3], 0).is_err());
    }

    // --- rubato, any fixed ratio (the cloud engines) ---

    #[test]
    fn every_rate_an_engine_may_announce_resamples_to_8k() {
        for &rate in &crate::engine::limits::SANE_RATES {
            let mut r = StreamResampler::new(rate, 8000, (rate / 50) as usize)
                .unwrap_or_else(|e| panic!("{rate}: {e}"));
            let input = tone(rate, 1000.0, rate as usize, 8000.0);
            let mut out = Vec::new();
            for f in input.chunks(333) {
                r.process(f, &mut out);
            }
            r.flush(&mut out);
            // Within 2 ms of one second.
            assert!(
                (out.len() as i64 - 8000).abs() <= 16,
                "{rate}: {} samples",
                out.len()
            );
            let a = amp_at(&out[1000..7000], 8000, 1000.0);
            assert!((a - 8000.0).abs() < 400.0, "{rate}: amp {a}");
        }
    }

    #[test]
    fn up_8k_to_16k_keeps_a_tone_and_length() {
        let mut r = StreamResampler::new(8000, 16000, 160).unwrap();
        let input = tone(8000, 1000.0, 8000, 10000.0);
        let mut out = Vec::new();
        for f in input.chunks(160) {
            r.process(f, &mut out);
        }
        // Every 160 in gives 320 out once the delay is consumed.
        assert!(
            out.len() >= 16000 - 2 * 320 && out.len() <= 16000,
            "len {}",
            out.len()
        );
        let a = amp_at(&out[1000..15000], 16000, 1000.0);
        assert!((a - 10000.0).abs() < 300.0, "amp {a}");
    }

    #[test]
    fn down_24k_to_8k_filters_aliases() {
        let mut r = StreamResampler::new(24000, 8000, 480).unwrap();
        // 1 kHz passes; 6 kHz (would alias to 2 kHz) must be removed.
        let pass = tone(24000, 1000.0, 24000, 8000.0);
        let stop = tone(24000, 6000.0, 24000, 8000.0);
        let mut out_p = Vec::new();
        let mut out_s = Vec::new();
        for f in pass.chunks(333) {
            r.process(f, &mut out_p);
        }
        let mut r2 = StreamResampler::new(24000, 8000, 480).unwrap();
        for f in stop.chunks(333) {
            r2.process(f, &mut out_s);
        }
        assert!(
            out_p.len() > 7500 && out_p.len() <= 8000,
            "len {}",
            out_p.len()
        );
        let a = amp_at(&out_p[500..7500], 8000, 1000.0);
        assert!((a - 8000.0).abs() < 300.0, "amp {a}");
        assert!(
            rms(&out_s[500..7500]) < 50.0,
            "alias rms {}",
            rms(&out_s[500..7500])
        );
        // flush releases the tail: total length matches the input duration.
        r.flush(&mut out_p);
        assert!(
            (out_p.len() as i64 - 8000).abs() <= 2,
            "flushed len {}",
            out_p.len()
        );
    }
}
