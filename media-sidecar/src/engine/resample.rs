//! Streaming fixed-ratio resampling for the cloud engines (8k -> 16k for
//! Gemini's input, 24k (or whatever rate it announces) -> 8k for its output).
//!
//! `media::resample` only does x6 / ÷6 (8k <-> 48k, the Opus path), so this
//! wraps rubato's synchronous FFT resampler (`Fft`, BlackmanHarris2
//! anti-aliasing window): any fixed ratio, proper low-pass, low delay.
//! Input of any length is buffered into the resampler's fixed chunk; the
//! output is PCM16 with saturation.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

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
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
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
