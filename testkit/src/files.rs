//! Temporary directories, WAV files, log tails and the wall clock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Milliseconds since the Unix epoch (what the sidecar link's timestamps use).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock after 1970")
}

/// A fresh, empty directory under the system temp dir, unique per process
/// and call: `voxline-test-<tag>-<pid>-<n>`.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "voxline-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// The last `lines` lines of every `*.log` in `dir` (sidecars, sipp,
/// baresip, caddy), for a failed case's diagnostics.
pub fn log_tails(dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out.push_str(&format!(
                "\n--- {name} ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    out
}

/// Writes `pcm` as a mono 16-bit WAV at `rate` Hz.
pub fn write_wav(path: &Path, rate: u32, pcm: &[i16]) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w =
        hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
    for &s in pcm {
        w.write_sample(s).map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

/// A 16-bit WAV file's first channel and its sample rate.
pub fn read_wav(path: &Path) -> Result<(u32, Vec<i16>), String> {
    let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = r.spec();
    let all = r
        .samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let first = all
        .iter()
        .step_by(usize::from(spec.channels.max(1)))
        .copied()
        .collect();
    Ok((spec.sample_rate, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_fresh_and_distinct() {
        let (a, b) = (temp_dir("files"), temp_dir("files"));
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        assert_eq!(std::fs::read_dir(&a).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }

    #[test]
    fn a_wav_reads_back_as_written() {
        let dir = temp_dir("wav");
        let path = dir.join("x.wav");
        let pcm: Vec<i16> = (0..800).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        write_wav(&path, 16_000, &pcm).unwrap();
        assert_eq!(read_wav(&path).unwrap(), (16_000, pcm));
        assert!(read_wav(&dir.join("missing.wav")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_tails_shows_the_last_lines_of_log_files_only() {
        let dir = temp_dir("tails");
        std::fs::write(dir.join("a.log"), "1\n2\n3\n").unwrap();
        std::fs::write(dir.join("b.txt"), "not a log\n").unwrap();
        let t = log_tails(&dir, 2);
        assert_eq!(t, "\n--- a.log ---\n2\n3");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
