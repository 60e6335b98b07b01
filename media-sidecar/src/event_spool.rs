//! The event spool: every call event the edge has not acknowledged yet is
//! kept on disk, so a sidecar that crashes after a call ended but before the
//! edge heard of it tells the edge at its next start (the edge would otherwise
//! presume the call lost and dial it again).
//!
//! One small file per call and attempt (`<call_id>-<attempt>.events.json`, a
//! JSON array of [`CallEvent`]) holding exactly that attempt's unacknowledged
//! events, rewritten whole (temp file, then rename) on each change and deleted
//! once they are all acknowledged. Rather than an append-only journal: the
//! unacknowledged set of one call is small (the edge acks within a round trip),
//! a rename is atomic so a crash never leaves a torn record to repair, deleting
//! a file is the whole of "forget", and nothing needs compacting. Only a file
//! holding an `ended` event is fsynced (file and directory): that is the event
//! whose loss re-dials a finished conversation; the others cost no sync.
//!
//! The lease client decides what is stored (through [`EventStore`]); this
//! module only does the file work, and [`EventSpool::load`] reads a previous
//! run's leftovers for [`crate::lease::LeaseClient::restore_events`].

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use voxline_shared::sidecar_link::{is_valid_id, CallEvent};

use crate::lease::EventStore;

const SUFFIX: &str = ".events.json";
/// Where unreadable files go (renamed in place, kept for the operator, never loaded again).
const QUARANTINE_SUFFIX: &str = ".bad";
/// A file bigger than this is not read (an hour of transcript is a few hundred KB).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// At most this many files are loaded at a start; the rest wait for the next one.
pub const MAX_FILES: usize = 1_024;
/// At most this many events are loaded at a start.
pub const MAX_EVENTS: usize = 100_000;

/// The event spool beside a recordings spool.
pub fn spool_dir(recordings_spool: &Path) -> PathBuf {
    recordings_spool.join("events")
}

fn file_name(call_id: &str, attempt: u32) -> Option<String> {
    // Call ids come from the edge; only ones that are safe file names are stored.
    is_valid_id(call_id).then(|| format!("{call_id}-{attempt}{SUFFIX}"))
}

/// The spool directory, created `0700`.
/// Makes `dir` a directory only this user can enter (`0700`): created if
/// missing, refused if it is a symlink or not a directory (a planted link
/// would send call data elsewhere), tightened if its mode is looser. Its
/// parent must exist. Used for the event and the recording spools.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory (or is a symlink)",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `path` afresh for writing, `0600`, never through a symlink: a
/// leftover regular file is replaced, anything else there is refused.
pub fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a regular file",
                path.display()
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // create_new is O_CREAT|O_EXCL: it never follows a link planted since.
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[derive(Debug, Clone)]
pub struct EventSpool {
    dir: PathBuf,
}

impl EventSpool {
    /// Creates the directory (`0700`) if needed; refuses one that is a
    /// symlink or not a directory, and tightens a looser mode.
    pub fn open(dir: &Path) -> std::io::Result<EventSpool> {
        private_dir(dir)?;
        Ok(EventSpool {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The events a previous run left, bounded ([`MAX_FILES`], [`MAX_EVENTS`],
    /// [`MAX_FILE_BYTES`]). An unreadable, oversized or inconsistent file is
    /// renamed `*.bad` and logged; a temp file left by a crash is deleted.
    pub fn load(&self) -> Vec<CallEvent> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "event spool not readable");
                return Vec::new();
            }
        };
        let mut names: Vec<String> = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') && name.ends_with(".tmp") {
                // Written but never renamed: the previous version of that file (if any) is the truth.
                let _ = fs::remove_file(entry.path());
            } else if name.ends_with(SUFFIX) {
                names.push(name);
            }
        }
        names.sort();
        let mut out = Vec::new();
        let mut files = 0;
        for name in names {
            if files >= MAX_FILES || out.len() >= MAX_EVENTS {
                tracing::warn!(file = %name, "event spool: too much to load at once; left for the next start");
                continue;
            }
            match self.read_one(&name) {
                Ok(events) => {
                    files += 1;
                    out.extend(events);
                }
                Err(why) => {
                    let from = self.dir.join(&name);
                    let to = self.dir.join(format!("{name}{QUARANTINE_SUFFIX}"));
                    let moved = fs::rename(&from, &to).is_ok();
                    tracing::error!(file = %from.display(), %why, quarantined = moved, "event spool file not loaded");
                }
            }
        }
        out
    }

    fn read_one(&self, name: &str) -> Result<Vec<CallEvent>, String> {
        let path = self.dir.join(name);
        // No symlinks: checked before opening, and the opened file must be the
        // one checked (same device and inode), so a swap in between is caught.
        let before = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
        if !before.file_type().is_file() {
            return Err("not a regular file (a symlink?)".into());
        }
        if before.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{} bytes, more than {MAX_FILE_BYTES}",
                before.len()
            ));
        }
        let file = fs::File::open(&path).map_err(|e| e.to_string())?;
        let opened = file.metadata().map_err(|e| e.to_string())?;
        if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) || !opened.is_file() {
            return Err("replaced while being opened".into());
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err("grew past the size limit".into());
        }
        let events: Vec<CallEvent> =
            serde_json::from_slice(&bytes).map_err(|e| format!("not events: {e}"))?;
        let Some(first) = events.first() else {
            return Err("empty".into());
        };
        if file_name(&first.call_id, first.attempt).as_deref() != Some(name) {
            return Err("its events are not the call its name says".into());
        }
        if events
            .iter()
            .any(|e| e.call_id != first.call_id || e.attempt != first.attempt || e.seq == 0)
        {
            return Err("events of several calls, or seq 0".into());
        }
        Ok(events)
    }

    fn write(&self, name: &str, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        let target = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // create_new (O_CREAT|O_EXCL) never follows a symlink; rename replaces
        // a link at `target` itself, never what it points to.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, &target)?;
        if sync {
            fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> std::io::Result<()> {
        match fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl EventStore for EventSpool {
    fn save(&mut self, call_id: &str, attempt: u32, unacked: &[CallEvent]) -> Result<(), String> {
        let name = file_name(call_id, attempt)
            .ok_or_else(|| format!("call id `{call_id}` is not a safe file name"))?;
        let r = if unacked.is_empty() {
            self.remove(&name)
        } else {
            let json = serde_json::to_vec(unacked).map_err(|e| e.to_string())?;
            self.write(&name, &json, unacked.iter().any(|e| e.kind.is_ended()))
        };
        r.map_err(|e| format!("{}: {e}", self.dir.join(&name).display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_shared::sidecar_link::{EventKind, Timings};
    use voxline_shared::{CallStatus, EndedReason};

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "voxline-evspool-test-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn ev(call: &str, attempt: u32, seq: u32, kind: EventKind) -> CallEvent {
        CallEvent {
            call_id: call.into(),
            attempt,
            seq,
            at_ms: 1_000 + u64::from(seq),
            kind,
        }
    }

    fn ended() -> EventKind {
        EventKind::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::AgentHangup,
            retry_after_s: None,
            sip_code: None,
            timings: Timings {
                dispatched_ms: 1,
                ringing_ms: None,
                answered_ms: None,
                ended_ms: 2,
            },
        }
    }

    #[test]
    fn saved_events_are_loaded_again_and_forgotten_when_empty() {
        let root = temp_dir("roundtrip");
        let dir = spool_dir(&root);
        let mut s = EventSpool::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let a = vec![
            ev("c_1", 1, 1, EventKind::Dialing),
            ev("c_1", 1, 2, ended()),
        ];
        let b = vec![ev("c_2", 3, 7, EventKind::Ringing)];
        s.save("c_1", 1, &a[..1]).unwrap();
        s.save("c_1", 1, &a).unwrap(); // rewritten whole
        s.save("c_2", 3, &b).unwrap();
        assert_eq!(
            fs::metadata(dir.join("c_1-1.events.json")).unwrap().mode() & 0o777,
            0o600
        );
        let mut loaded = EventSpool::open(&dir).unwrap().load();
        loaded.sort_by(|x, y| (&x.call_id, x.seq).cmp(&(&y.call_id, y.seq)));
        assert_eq!(loaded, [a.clone(), b.clone()].concat());
        s.save("c_1", 1, &[]).unwrap();
        s.save("c_1", 1, &[]).unwrap(); // forgetting twice is fine
        assert_eq!(s.load(), b);
        assert!(s.save("../x", 1, &b).is_err(), "not a safe file name");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn bad_files_are_quarantined_temp_files_dropped_and_symlinks_refused() {
        let root = temp_dir("bad");
        let dir = spool_dir(&root);
        let mut s = EventSpool::open(&dir).unwrap();
        let good = vec![ev("c_1", 1, 1, ended())];
        s.save("c_1", 1, &good).unwrap();
        fs::write(dir.join("c_2-1.events.json"), b"{not json").unwrap();
        fs::write(dir.join("c_3-1.events.json"), b"[]").unwrap();
        // Events of another call than the name says.
        fs::write(
            dir.join("c_4-1.events.json"),
            serde_json::to_vec(&good).unwrap(),
        )
        .unwrap();
        let big = vec![b' '; (MAX_FILE_BYTES + 1) as usize];
        fs::write(dir.join("c_5-1.events.json"), big).unwrap();
        // A symlink to a valid file elsewhere is not followed.
        let outside = root.join("outside.json");
        fs::write(
            &outside,
            serde_json::to_vec(&vec![ev("c_6", 1, 1, ended())]).unwrap(),
        )
        .unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("c_6-1.events.json")).unwrap();
        fs::write(dir.join(".c_7-1.events.json.tmp"), b"[half").unwrap();

        assert_eq!(s.load(), good);
        for bad in ["c_2", "c_3", "c_4", "c_5", "c_6"] {
            assert!(
                dir.join(format!("{bad}-1.events.json.bad")).exists(),
                "{bad} quarantined"
            );
        }
        assert!(!dir.join(".c_7-1.events.json.tmp").exists());
        assert!(outside.exists(), "the link's target is untouched");
        assert_eq!(s.load(), good, "quarantined files are not read again");

        // The spool directory itself must not be a symlink.
        let link = root.join("linked");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(EventSpool::open(&link).is_err());
        // A loose mode is tightened.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        EventSpool::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let _ = fs::remove_dir_all(&root);
    }
}
