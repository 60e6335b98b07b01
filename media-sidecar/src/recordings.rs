//! The recording spool: a call's stereo WAV is written to the recordings
//! directory, and once the call has ended a manifest (`<wav>.upload.json`:
//! call, attempt, length, SHA-256, duration) is written beside it. The lease
//! client uploads it; on success both files go. A sidecar that stops or
//! crashes before that finds the manifests at its next start and uploads
//! them then, so a recording is never lost with the process.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use voxline_shared::sidecar_link::{CallTranscript, RecordingManifest, PROTOCOL_VERSION};

use crate::lease::{TranscriptUpload, Upload};

const MANIFEST_SUFFIX: &str = ".upload.json";
/// A post-call transcript waiting for the edge, beside its call's WAV.
const TRANSCRIPT_SUFFIX: &str = ".transcript.json";

/// Where the post-call transcript of the recording `wav` is spooled.
pub fn transcript_path(wav: &Path) -> PathBuf {
    let mut name = wav.as_os_str().to_owned();
    name.push(TRANSCRIPT_SUFFIX);
    PathBuf::from(name)
}

/// Writes a post-call transcript to the spool (whole, then renamed; `0600`)
/// so that a restart before the edge has it sends it then.
pub fn spool_transcript(wav: &Path, t: &CallTranscript) -> std::io::Result<TranscriptUpload> {
    let json = serde_json::to_vec(t).map_err(std::io::Error::other)?;
    let target = transcript_path(wav);
    let tmp = target.with_extension("tmp");
    std::io::Write::write_all(&mut crate::event_spool::create_private_file(&tmp)?, &json)?;
    std::fs::rename(&tmp, &target)?;
    Ok(TranscriptUpload {
        transcript: t.clone(),
        spool: Some(target),
    })
}

/// Post-call transcripts a previous run left behind, oldest first.
pub fn transcript_leftovers(dir: &Path) -> Vec<TranscriptUpload> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, TranscriptUpload)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(TRANSCRIPT_SUFFIX))
        {
            continue;
        }
        let parsed = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CallTranscript>(&b).ok());
        match parsed {
            Some(transcript) => {
                let at = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((
                    at,
                    TranscriptUpload {
                        transcript,
                        spool: Some(path),
                    },
                ));
            }
            None => {
                tracing::warn!(path = %path.display(), "unreadable post-call transcript; left alone")
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, t)| t).collect()
}

/// Deletes a sent transcript's spool file.
pub fn remove_transcript(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not delete a sent transcript");
    }
}

/// Where recordings are written: the configured directory, else one per
/// sidecar under the system temp directory (a spool: files leave once uploaded).
pub fn spool_dir(configured: Option<&Path>, sidecar_id: &str) -> PathBuf {
    match configured {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("voxline-recordings-{sidecar_id}")),
    }
}

/// The WAV path of one attempt of one call.
pub fn wav_path(dir: &Path, call_id: &str, attempt: u32) -> PathBuf {
    dir.join(format!("{call_id}-{attempt}.wav"))
}

fn manifest_path(wav: &Path) -> PathBuf {
    let mut name = wav.as_os_str().to_owned();
    name.push(MANIFEST_SUFFIX);
    PathBuf::from(name)
}

/// Hashes and measures a finished recording and writes its manifest beside
/// it. The sidecar id is filled in when it is sent.
pub fn prepare(
    wav: &Path,
    tenant_id: &str,
    call_id: &str,
    attempt: u32,
) -> std::io::Result<Upload> {
    let mut file = std::fs::File::open(wav)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let reader = hound::WavReader::open(wav).map_err(std::io::Error::other)?;
    let spec = reader.spec();
    let duration_ms = u64::from(reader.duration()) * 1000 / u64::from(spec.sample_rate.max(1));
    let manifest = RecordingManifest {
        protocol_version: PROTOCOL_VERSION,
        sidecar_id: String::new(),
        tenant_id: tenant_id.to_string(),
        call_id: call_id.to_string(),
        attempt,
        content_type: "audio/wav".into(),
        bytes,
        sha256: hex::encode(hasher.finalize()),
        duration_ms,
    };
    let json = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
    // Written whole then renamed: a crash never leaves half a manifest.
    let target = manifest_path(wav);
    let tmp = target.with_extension("tmp");
    std::io::Write::write_all(&mut crate::event_spool::create_private_file(&tmp)?, &json)?;
    std::fs::rename(&tmp, &target)?;
    Ok(Upload {
        manifest,
        path: wav.to_path_buf(),
    })
}

/// Uploads a previous run left behind (manifest and WAV both present), oldest first.
pub fn leftovers(dir: &Path) -> Vec<Upload> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, Upload)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(wav_name) = name.strip_suffix(MANIFEST_SUFFIX) else {
            continue;
        };
        let wav = path.with_file_name(wav_name);
        let manifest = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<RecordingManifest>(&b).ok());
        match manifest {
            Some(manifest) if wav.is_file() => {
                let at = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((
                    at,
                    Upload {
                        manifest,
                        path: wav,
                    },
                ));
            }
            _ => {
                tracing::warn!(manifest = %path.display(), "recording manifest without a readable WAV or unreadable; left alone")
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, u)| u).collect()
}

/// Deletes an uploaded recording and its manifest.
pub fn remove(upload: &Upload) {
    for p in [upload.path.clone(), manifest_path(&upload.path)] {
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(path = %p.display(), error = %e, "could not delete an uploaded recording file");
        }
    }
}

/// The whole file, for the upload body (an hour is ~115 MB).
pub async fn read(upload: &Upload) -> Result<Vec<u8>, String> {
    let bytes = tokio::task::spawn_blocking({
        let path = upload.path.clone();
        move || std::fs::read(path)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{}: {e}", upload.path.display()))?;
    if bytes.len() as u64 != upload.manifest.bytes {
        return Err(format!(
            "{}: {} bytes on disk, {} in the manifest",
            upload.path.display(),
            bytes.len(),
            upload.manifest.bytes
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("voxline-rec-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_wav(path: &Path, frames: u32) {
        let mut w = hound::WavWriter::create(path, crate::media::record::spec()).unwrap();
        for i in 0..frames {
            w.write_sample((i % 100) as i16).unwrap();
            w.write_sample(-((i % 50) as i16)).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn a_spooled_transcript_is_found_again_after_a_restart_and_removed_once_sent() {
        let dir = temp_dir("transcripts");
        let wav = wav_path(&dir, "call_0123456789abcdef", 1);
        let t = CallTranscript {
            protocol_version: PROTOCOL_VERSION,
            sidecar_id: String::new(),
            tenant_id: "ten_0123456789abcdef".into(),
            call_id: "call_0123456789abcdef".into(),
            attempt: 1,
            source: "local".into(),
            turns: vec![],
        };
        let up = spool_transcript(&wav, &t).unwrap();
        let path = up.spool.clone().unwrap();
        assert_eq!(path, transcript_path(&wav));
        // Not a recording's manifest: the recording leftovers skip it.
        assert!(leftovers(&dir).is_empty());
        std::fs::write(dir.join("y.wav.transcript.json"), b"not json").unwrap();
        let found = transcript_leftovers(&dir);
        assert_eq!(found, vec![up]);
        remove_transcript(&path);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_prepared_recording_is_measured_found_again_and_removed() {
        let dir = temp_dir("spool");
        let wav = wav_path(&dir, "call_0123456789abcdef", 2);
        write_wav(&wav, 8_000 * 3 / 2);
        let up = prepare(&wav, "ten_0123456789abcdef", "call_0123456789abcdef", 2).unwrap();
        let on_disk = std::fs::read(&wav).unwrap();
        assert_eq!(up.manifest.bytes, on_disk.len() as u64);
        assert_eq!(
            up.manifest.sha256,
            voxline_shared::signing::sha256_hex(&on_disk)
        );
        assert_eq!((up.manifest.duration_ms, up.manifest.attempt), (1_500, 2));
        // A restart finds it, with the same manifest; a stray manifest is skipped.
        std::fs::write(dir.join("x.wav.upload.json"), b"{}").unwrap();
        let found = leftovers(&dir);
        assert_eq!(found, vec![up.clone()]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(read(&up)).unwrap(), on_disk);
        remove(&up);
        assert!(!wav.exists() && !manifest_path(&wav).exists());
        assert!(leftovers(&dir).is_empty());
        assert!(
            rt.block_on(read(&up)).is_err(),
            "a vanished file cannot be sent"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn recordings_are_private_and_never_written_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let root = temp_dir("private");
        // The spool: created 0700; a symlink in its place is refused; a loose one tightened.
        let spool = root.join("spool");
        crate::event_spool::private_dir(&spool).unwrap();
        assert_eq!(
            std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
        crate::event_spool::private_dir(&spool).unwrap();
        assert_eq!(
            std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let linked = root.join("linked");
        std::os::unix::fs::symlink(&spool, &linked).unwrap();
        assert!(crate::event_spool::private_dir(&linked).is_err());
        // A WAV path planted as a link to another file: not followed, not truncated.
        let victim = root.join("victim.txt");
        std::fs::write(&victim, b"keep me").unwrap();
        let wav = wav_path(&spool, "call_0123456789abcdef", 1);
        std::os::unix::fs::symlink(&victim, &wav).unwrap();
        assert!(crate::media::record::StereoRecorder::create(&wav).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        // A leftover regular file is replaced by a fresh private one.
        std::fs::remove_file(&wav).unwrap();
        std::fs::write(&wav, b"stale").unwrap();
        let mut rec = crate::media::record::StereoRecorder::create(&wav).unwrap();
        rec.push(&[1, 2], &[3, 4]).unwrap();
        rec.finish().unwrap();
        assert_eq!(
            std::fs::metadata(&wav).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Its manifest is private too, and a planted link at the temp name is refused.
        let tmp = manifest_path(&wav).with_extension("tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        assert!(prepare(&wav, "ten_0123456789abcdef", "call_0123456789abcdef", 1).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        std::fs::remove_file(&tmp).unwrap();
        prepare(&wav, "ten_0123456789abcdef", "call_0123456789abcdef", 1).unwrap();
        assert_eq!(
            std::fs::metadata(manifest_path(&wav))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
