//! Repairs two machine faults that make cargo fail for reasons that are not the code's.
//!
//! Some sandboxed machines (CI's included) boot with `/dev/null` as a *regular file*: it keeps
//! whatever build scripts write to it (their feature probes print rustc errors there), and
//! cargo's target probe, `rustc -` with stdin = `/dev/null`, then compiles that text and fails
//! with "failed to run `rustc` to learn about target-specific information". Cargo also caches
//! the failed probe in `<target>/.rustc_info.json`, so every later build in that target dir
//! fails the same way until the entry is removed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Puts the null device back (root only) and drops cached failed rustc probes. Never fails:
/// a machine we cannot repair is reported, and the build goes on to fail or not by itself.
pub fn repair(target_dirs: &[PathBuf]) {
    repair_dev_null();
    for dir in target_dirs {
        purge_failed_probes(&dir.join(".rustc_info.json"));
    }
}

fn repair_dev_null() {
    use std::os::unix::fs::FileTypeExt;
    let null = Path::new("/dev/null");
    match std::fs::metadata(null) {
        Ok(m) if m.file_type().is_char_device() => return,
        Ok(_) | Err(_) => {}
    }
    // mknod + rename: the swap is atomic, so no process sees /dev/null missing.
    let fresh = Path::new("/dev/null.xtask");
    let _ = std::fs::remove_file(fresh);
    let made = Command::new("mknod")
        .args(["-m", "666"])
        .arg(fresh)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made && std::fs::rename(fresh, null).is_ok() {
        eprintln!("xtask: /dev/null was not the null device; replaced it (cargo reads it)");
    } else {
        let _ = std::fs::remove_file(fresh);
        eprintln!(
            "xtask: warning: /dev/null is not the null device and could not be replaced \
             (run as root: mknod -m 666 /dev/null.new c 1 3 && mv /dev/null.new /dev/null); \
             it is emptied before each command instead"
        );
    }
}

/// Before each command: a `/dev/null` that is still a regular file (it could not be
/// replaced) is emptied, so cargo's target probe reads nothing; the null device is left alone.
pub fn empty_regular_dev_null() {
    let null = Path::new("/dev/null");
    if std::fs::metadata(null).is_ok_and(|m| m.is_file()) {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(null);
    }
}

/// Removes the entries cargo cached for rustc runs that failed; cargo re-runs them.
fn purge_failed_probes(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let Ok(mut info) = serde_json::from_str::<serde_json::Value>(&text) else {
        // Unreadable cache: cargo rebuilds it when it is absent.
        let _ = std::fs::remove_file(path);
        return;
    };
    let Some(outputs) = info.get_mut("outputs").and_then(|o| o.as_object_mut()) else {
        return;
    };
    let before = outputs.len();
    outputs.retain(|_, entry| entry.get("success").and_then(|s| s.as_bool()) != Some(false));
    if outputs.len() != before {
        eprintln!(
            "xtask: dropped {} failed rustc probe(s) cached in {}",
            before - outputs.len(),
            path.display()
        );
        let _ = std::fs::write(path, info.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_probes_are_dropped_and_good_ones_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".rustc_info.json");
        std::fs::write(
            &path,
            r#"{"rustc_fingerprint":1,"outputs":{"a":{"success":true,"status":"","code":0,"stdout":"x","stderr":""},"b":{"success":false,"status":"exit status: 1","code":1,"stdout":"","stderr":"error"}},"successes":{}}"#,
        )
        .unwrap();
        purge_failed_probes(&path);
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let outputs = info["outputs"].as_object().unwrap();
        assert!(outputs.contains_key("a"));
        assert!(!outputs.contains_key("b"));
        assert_eq!(info["rustc_fingerprint"], 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
