//! Audio codecs seen from the call side: 8 kHz mono 16-bit PCM in 20 ms
//! frames (160 samples) in, RTP payloads out, and back, with packet-loss
//! concealment.
//!
//! - PCMU/PCMA: [`super::g711`]; PLC repeats the last pitch period of the
//!   history with a fade to silence over 60 ms (in the spirit of G.711
//!   Appendix I, without its overlap-add refinements).
//! - Opus: libopus through `audiopus` (Debian libopus-dev via pkg-config),
//!   RTP clock 48 kHz (`opus/48000/2` per RFC 7587). We encode **mono** (RFC
//!   7587 allows a mono stream under the stereo name; say `stereo=0;
//!   sprop-stereo=0` in the fmtp) and decode to mono (libopus downmixes a stereo
//!   stream). The codec runs at 48 kHz with [`super::resample`] converting
//!   8k<->48k; PLC is libopus's own (`decode(None)`), and a lost packet is
//!   recovered from the next one's in-band FEC (LBRR) when that is buffered.

use audiopus::coder::{Decoder as OpusDec, Encoder as OpusEnc};
use audiopus::{Application, Bandwidth, Bitrate, Channels, SampleRate, Signal};

use super::g711::Law;
use super::resample::{OpusDownsampler, OpusUpsampler};
use super::Codec;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_8K: usize = 160;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus: {0}")]
    Opus(#[from] audiopus::Error),
}

/// Opus encoder settings.
#[derive(Debug, Clone, Copy)]
pub struct OpusSettings {
    pub bitrate: i32,
    pub complexity: u8,
    /// In-band FEC, tuned for this expected loss (percent). 0 disables FEC.
    pub expected_loss_pct: u8,
}

impl Default for OpusSettings {
    fn default() -> Self {
        OpusSettings {
            bitrate: 32_000,
            complexity: 5,
            expected_loss_pct: 5,
        }
    }
}

enum EncKind {
    G711(Law),
    Opus {
        enc: OpusEnc,
        up: Box<OpusUpsampler>,
        buf: Vec<i16>,
    },
}

/// 8 kHz PCM -> payloads.
pub struct AudioEncoder {
    kind: EncKind,
}

impl AudioEncoder {
    pub fn new(codec: Codec, opus: OpusSettings) -> Result<Self, CodecError> {
        let kind = match codec {
            Codec::Pcmu => EncKind::G711(Law::Mu),
            Codec::Pcma => EncKind::G711(Law::A),
            Codec::Opus => {
                let mut enc = OpusEnc::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
                enc.set_bitrate(Bitrate::BitsPerSecond(opus.bitrate))?;
                enc.set_complexity(opus.complexity)?;
                enc.set_signal(Signal::Voice)?;
                // The source is 8 kHz telephone audio: nothing above 4 kHz to code.
                enc.set_max_bandwidth(Bandwidth::Wideband)?;
                if opus.expected_loss_pct > 0 {
                    enc.set_inband_fec(true)?;
                    enc.set_packet_loss_perc(opus.expected_loss_pct)?;
                }
                EncKind::Opus {
                    enc,
                    up: Box::new(OpusUpsampler::default()),
                    buf: Vec::with_capacity(960),
                }
            }
        };
        Ok(AudioEncoder { kind })
    }

    /// Encodes one 20 ms frame (160 samples at 8 kHz) and appends the payload to `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        debug_assert_eq!(pcm.len(), FRAME_8K);
        match &mut self.kind {
            EncKind::G711(law) => law.encode(pcm, out),
            EncKind::Opus { enc, up, buf } => {
                buf.clear();
                up.process(pcm, buf);
                let start = out.len();
                out.resize(start + 1500, 0);
                let n = enc.encode(buf, &mut out[start..])?;
                out.truncate(start + n);
            }
        }
        Ok(())
    }
}

enum DecKind {
    G711 {
        law: Law,
        plc: G711Plc,
    },
    Opus {
        dec: OpusDec,
        down: OpusDownsampler,
        buf: Vec<i16>,
    },
}

/// Payloads -> 8 kHz PCM, with concealment.
pub struct AudioDecoder {
    kind: DecKind,
}

impl AudioDecoder {
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        let kind = match codec {
            Codec::Pcmu => DecKind::G711 {
                law: Law::Mu,
                plc: G711Plc::default(),
            },
            Codec::Pcma => DecKind::G711 {
                law: Law::A,
                plc: G711Plc::default(),
            },
            Codec::Opus => DecKind::Opus {
                dec: OpusDec::new(SampleRate::Hz48000, Channels::Mono)?,
                down: OpusDownsampler::default(),
                buf: vec![0; 5760],
            },
        };
        Ok(AudioDecoder { kind })
    }

    /// Timestamp units a payload covers (None if it cannot be told).
    pub fn duration(&self, payload: &[u8]) -> Option<u32> {
        match &self.kind {
            DecKind::G711 { .. } => Some(payload.len() as u32),
            DecKind::Opus { .. } => audiopus::packet::nb_samples(payload, SampleRate::Hz48000)
                .ok()
                .map(|n| n as u32),
        }
    }

    /// Decodes a payload, appending 8 kHz samples to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        match &mut self.kind {
            DecKind::G711 { law, plc } => {
                let start = out.len();
                law.decode(payload, out);
                plc.good(&out[start..]);
            }
            DecKind::Opus { dec, down, buf } => {
                let n = dec.decode(Some(payload), &mut buf[..], false)?;
                down.process(&buf[..n], out);
            }
        }
        Ok(())
    }

    /// Conceals `dur` timestamp units of missing audio. `next` is the payload
    /// following the gap, if known (Opus FEC).
    pub fn conceal(
        &mut self,
        dur: u32,
        next: Option<&[u8]>,
        out: &mut Vec<i16>,
    ) -> Result<(), CodecError> {
        match &mut self.kind {
            DecKind::G711 { plc, .. } => plc.conceal(dur as usize, out),
            DecKind::Opus { dec, down, buf } => {
                // libopus conceals in multiples of 2.5 ms (120 samples at 48 kHz).
                let n = (dur as usize).div_ceil(120) * 120;
                let n = n.min(buf.len());
                let got = match next {
                    Some(p) => dec
                        .decode(Some(p), &mut buf[..n], true)
                        .or_else(|_| dec.decode(None::<&[u8]>, &mut buf[..n], false))?,
                    None => dec.decode(None::<&[u8]>, &mut buf[..n], false)?,
                };
                down.process(&buf[..got.min(dur as usize)], out);
            }
        }
        Ok(())
    }

    /// Renders `dur` timestamp units while waiting (buffer filling or
    /// stretching): continues a concealment in progress (silence if nothing
    /// was decoded yet, or once the fade-out is over).
    pub fn wait(&mut self, dur: u32, out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.conceal(dur, None, out)
    }
}

/// G.711 concealment: repeat the last pitch period, fading out over 60 ms.
#[derive(Default)]
struct G711Plc {
    /// The last 40 ms of good (or concealed) output.
    hist: Vec<i16>,
    /// Samples concealed in the current gap.
    gap: usize,
    period: usize,
    pos: usize,
}

const PLC_HIST: usize = 320;
const PLC_FADE: usize = 480; // 60 ms
const MIN_PITCH: usize = 20; // 400 Hz
const MAX_PITCH: usize = 120; // 66 Hz

impl G711Plc {
    fn push_hist(&mut self, s: &[i16]) {
        self.hist.extend_from_slice(s);
        if self.hist.len() > PLC_HIST {
            let cut = self.hist.len() - PLC_HIST;
            self.hist.drain(..cut);
        }
    }

    fn good(&mut self, s: &[i16]) {
        if self.gap > 0 && !s.is_empty() {
            // Let the history restart from real audio.
            self.hist.clear();
        }
        self.gap = 0;
        self.push_hist(s);
    }

    /// Pitch period by normalised autocorrelation over the last 20 ms.
    fn estimate_period(&self) -> usize {
        let h = &self.hist;
        if h.len() < 2 * MAX_PITCH {
            return MAX_PITCH.min(h.len().max(1));
        }
        let n = h.len();
        let win = 160.min(n - MAX_PITCH);
        let x = &h[n - win..];
        let mut best = (f64::MIN, MAX_PITCH);
        for lag in MIN_PITCH..=MAX_PITCH {
            let y = &h[n - win - lag..n - lag];
            let (mut xy, mut yy) = (0f64, 0f64);
            for (a, b) in x.iter().zip(y) {
                xy += *a as f64 * *b as f64;
                yy += *b as f64 * *b as f64;
            }
            let score = if yy > 0.0 { xy / yy.sqrt() } else { 0.0 };
            if score > best.0 {
                best = (score, lag);
            }
        }
        best.1
    }

    fn conceal(&mut self, n: usize, out: &mut Vec<i16>) {
        if self.hist.is_empty() || self.gap >= PLC_FADE {
            out.extend(std::iter::repeat_n(0, n));
            self.gap += n;
            return;
        }
        if self.gap == 0 {
            self.period = self.estimate_period();
            self.pos = 0;
        }
        let start = self.hist.len() - self.period.min(self.hist.len());
        let cycle: Vec<i16> = self.hist[start..].to_vec();
        let mut produced = Vec::with_capacity(n);
        for _ in 0..n {
            let g = 1.0 - (self.gap as f32 / PLC_FADE as f32).min(1.0);
            let s = cycle[self.pos % cycle.len()] as f32 * g;
            produced.push(s as i16);
            self.pos += 1;
            self.gap += 1;
        }
        out.extend_from_slice(&produced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, f: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn g711_plc_continues_periodic_signal_and_fades() {
        let mut d = AudioDecoder::new(Codec::Pcmu).unwrap();
        let mut e = AudioEncoder::new(Codec::Pcmu, OpusSettings::default()).unwrap();
        let x = tone(160 * 6, 200.0); // period 40 samples
        let mut out = Vec::new();
        for f in x.chunks(160).take(4) {
            let mut p = Vec::new();
            e.encode(f, &mut p).unwrap();
            d.decode(&p, &mut out).unwrap();
        }
        let mut c = Vec::new();
        d.conceal(160, None, &mut c).unwrap();
        // The first 10 ms of concealment should track the true continuation closely.
        let truth = &x[640..720];
        let corr: f64 = truth
            .iter()
            .zip(&c[..80])
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum::<f64>()
            / (truth
                .iter()
                .map(|a| (*a as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                * c[..80]
                    .iter()
                    .map(|a| (*a as f64).powi(2))
                    .sum::<f64>()
                    .sqrt());
        assert!(corr > 0.95, "corr {corr}");
        // After 60 ms of concealment it is silent.
        let mut more = Vec::new();
        d.conceal(480, None, &mut more).unwrap();
        assert!(more[320..].iter().all(|&s| s == 0));
    }

    #[test]
    fn opus_round_trip_and_plc_lengths() {
        let mut e = AudioEncoder::new(Codec::Opus, OpusSettings::default()).unwrap();
        let mut d = AudioDecoder::new(Codec::Opus).unwrap();
        let x = tone(160 * 50, 440.0);
        let mut out = Vec::new();
        for f in x.chunks(160) {
            let mut p = Vec::new();
            e.encode(f, &mut p).unwrap();
            assert!(!p.is_empty() && p.len() < 200);
            assert_eq!(d.duration(&p), Some(960));
            d.decode(&p, &mut out).unwrap();
        }
        assert_eq!(out.len(), 8000);
        let mut c = Vec::new();
        d.conceal(960, None, &mut c).unwrap();
        assert_eq!(c.len(), 160);
        d.wait(960, &mut c).unwrap();
        assert_eq!(c.len(), 320);
        // Energy comes through (a tone survives Opus at 32 kb/s).
        let rms = (out[4000..].iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / 4000.0).sqrt();
        assert!(rms > 4000.0, "rms {rms}");
    }
}
