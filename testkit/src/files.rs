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

/// The callee's RTP as a pcap (Ethernet/IPv4/UDP, PCMU, 20 ms packets) for
/// sipp's `play_pcap_audio` (the bench's speaking callee, the AMD tests' machine): 8 kHz PCM -> mu-law, one packet per 160 samples.
pub fn write_pcap(path: &Path, pcm: &[i16]) -> Result<(), String> {
    let mut out = Vec::with_capacity(24 + pcm.len() / 160 * (16 + 42 + 172));
    // Global header: microsecond stamps, snaplen 65535, link type Ethernet.
    out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, frame) in pcm.chunks_exact(160).enumerate() {
        let mut rtp = Vec::with_capacity(172);
        rtp.extend_from_slice(&[0x80, if i == 0 { 0x80 } else { 0x00 }]);
        rtp.extend_from_slice(&(i as u16).to_be_bytes());
        rtp.extend_from_slice(&((i as u32) * 160).to_be_bytes());
        rtp.extend_from_slice(&0x5EED_0002u32.to_be_bytes());
        rtp.extend(frame.iter().map(|&s| crate::mulaw_encode(s)));
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
            127,
            0,
            0,
            1,
            127,
            0,
            0,
            1,
        ];
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xFFFF) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let t = i as u64 * 20_000;
        let frame_len = 14 + ip_len;
        out.extend_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        out.extend_from_slice(&ip);
        out.extend_from_slice(&6000u16.to_be_bytes());
        out.extend_from_slice(&6002u16.to_be_bytes());
        out.extend_from_slice(&(udp_len as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&rtp);
    }
    std::fs::write(path, out).map_err(|e| format!("write {}: {e}", path.display()))
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

    #[test]
    fn pcap_has_one_ethernet_udp_rtp_record_per_20_ms() {
        let path = std::env::temp_dir().join(format!("testkit-pcap-{}.pcap", std::process::id()));
        write_pcap(&path, &vec![0i16; 160 * 3]).unwrap();
        let b = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(b.len(), 24 + 3 * (16 + 14 + 20 + 8 + 12 + 160));
        assert_eq!(&b[..4], &[0xD4, 0xC3, 0xB2, 0xA1]);
        // Second record: 20 ms after the first; its RTP payload is mu-law silence.
        let rec = 24 + 16 + 214;
        assert_eq!(
            u32::from_le_bytes([b[rec + 4], b[rec + 5], b[rec + 6], b[rec + 7]]),
            20_000
        );
        assert!(b[rec + 16 + 54..rec + 16 + 214].iter().all(|&x| x == 0xFF));
    }
}
