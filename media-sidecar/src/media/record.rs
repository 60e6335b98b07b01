//! Per-call stereo recording: 8 kHz, 16-bit, left = caller (our side: what we
//! send), right = callee (the remote party: what we play out after the jitter
//! buffer).
//!
//! Alignment: the session produces exactly one sent frame and one received
//! frame per 20 ms tick of its clock (the received one from what was heard,
//! a fixed two frames behind, since heard audio is released as it arrives
//! rather than on the tick), and both are written for that tick, so
//! the channels are aligned on the sidecar's wall clock (what was said at
//! time t on each side, as heard at the sidecar). Tick slots where a side had
//! nothing (before the stream started, DTMF suppressing audio, a gap) hold
//! silence/concealment, so the file duration equals the call's media
//! duration and never drifts between channels.
//!
//! Writing is plain blocking IO through a `BufWriter`; the driver runs it on a
//! dedicated thread so a slow disk never stalls a call's media task.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

pub use hound::Error as WavError;

pub fn spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

pub struct StereoRecorder<W: Write + Seek> {
    w: hound::WavWriter<W>,
    frames: u64,
}

impl StereoRecorder<BufWriter<File>> {
    /// A new `0600` file at `path`, never written through a symlink.
    pub fn create(path: &Path) -> Result<Self, WavError> {
        let file = crate::event_spool::create_private_file(path)?;
        Ok(StereoRecorder {
            w: hound::WavWriter::new(BufWriter::new(file), spec())?,
            frames: 0,
        })
    }
}

impl<W: Write + Seek> StereoRecorder<W> {
    pub fn new(w: W) -> Result<Self, WavError> {
        Ok(StereoRecorder {
            w: hound::WavWriter::new(w, spec())?,
            frames: 0,
        })
    }

    /// Writes one tick: `left` (sent) and `right` (received), each padded with
    /// silence or truncated to the longer/shorter of the two.
    pub fn push(&mut self, left: &[i16], right: &[i16]) -> Result<(), WavError> {
        let n = left.len().max(right.len());
        for i in 0..n {
            self.w.write_sample(left.get(i).copied().unwrap_or(0))?;
            self.w.write_sample(right.get(i).copied().unwrap_or(0))?;
        }
        self.frames += n as u64;
        Ok(())
    }

    /// Samples per channel written so far.
    pub fn samples(&self) -> u64 {
        self.frames
    }

    pub fn finish(self) -> Result<(), WavError> {
        self.w.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_interleaved_stereo() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut r = StereoRecorder::new(&mut buf).unwrap();
            r.push(&[1, 2, 3], &[-1, -2, -3]).unwrap();
            r.push(&[4], &[]).unwrap();
            assert_eq!(r.samples(), 4);
            r.finish().unwrap();
        }
        buf.set_position(0);
        let mut rd = hound::WavReader::new(buf).unwrap();
        assert_eq!(rd.spec(), spec());
        let s: Vec<i16> = rd.samples::<i16>().map(|x| x.unwrap()).collect();
        assert_eq!(s, [1, -1, 2, -2, 3, -3, 4, 0]);
    }
}
