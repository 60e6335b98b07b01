//! `cargo xtask fuzz [--seconds-per-target N] [--merge] [target...]`:
//! coverage-guided fuzzing with libFuzzer on stable Rust.
//!
//! The targets are the `[[bin]]`s of `fuzz/Cargo.toml` (bodies in
//! `fuzz/src/`). They are built with the `fuzz` profile (release, debug
//! assertions and overflow checks on) and the SanitizerCoverage RUSTFLAGS
//! that cargo-fuzz passes (so no nightly toolchain is needed: libfuzzer-sys
//! compiles libFuzzer itself with the system C++ compiler), for the host
//! triple explicitly so build scripts and proc macros stay uninstrumented,
//! into `fuzz/target`.
//!
//! Each target runs for a bounded time (`-max_total_time`) from the
//! committed seed corpus `fuzz/corpus/<target>/` (read only) plus a scratch
//! corpus in `fuzz/target/corpus/<target>/`, with `fuzz/dict/<target>.dict`
//! when present. Crashes, timeouts and OOMs land in `fuzz/artifacts/<target>/`
//! (not in git); any of them makes the command fail. `--merge` minimises
//! what the run found plus the committed corpus back into
//! `fuzz/corpus/<target>/` (libFuzzer's `-set_cover_merge=1` over edges: a
//! small set of inputs with the same edge coverage).
//!
//! The summary (executions, coverage, crashes per target) is printed as a
//! Markdown table, the form docs/security.md records.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The default budget: 10 targets x 75 s = 12.5 minutes.
const DEFAULT_SECONDS_PER_TARGET: u64 = 75;

/// Coverage instrumentation as cargo-fuzz does it on stable.
const RUSTFLAGS: &[&str] = &[
    "--cfg",
    "fuzzing",
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Cforce-frame-pointers",
];

struct Options {
    seconds: u64,
    merge: bool,
    targets: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seconds: DEFAULT_SECONDS_PER_TARGET,
        merge: false,
        targets: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds-per-target" => {
                o.seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&s| s > 0)
                    .ok_or("--seconds-per-target needs a positive number")?;
            }
            "--merge" => o.merge = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => o.targets.push(s.to_string()),
        }
    }
    Ok(o)
}

/// The `[[bin]]` names of fuzz/Cargo.toml, in order.
fn all_targets(fuzz: &Path) -> Result<Vec<String>, String> {
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml"))
        .map_err(|e| format!("fuzz/Cargo.toml: {e}"))?;
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(v) = line.strip_prefix("name = ") {
                names.push(v.trim_matches('"').to_string());
            }
        }
    }
    Ok(names)
}

fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| "rustc -vV printed no host triple".into())
}

/// What one run reported.
#[derive(Default)]
struct Run {
    target: String,
    seconds: f64,
    execs: u64,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<u64>,
    peak_rss_mb: Option<u64>,
    crashes: Vec<PathBuf>,
    ok: bool,
}

/// The number after `key` in `line` (`cov: 123`, `stat::number_of_executed_units: 5`).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn parse_log(log: &str, run: &mut Run) {
    for line in log.lines() {
        if let Some(n) = number_after(line, "stat::number_of_executed_units:") {
            run.execs = n;
        }
        if let Some(n) = number_after(line, "stat::peak_rss_mb:") {
            run.peak_rss_mb = Some(n);
        }
        // Status lines: `#123 NEW cov: 456 ft: 789 corp: 10/1Kb ...`; the last wins.
        if line.starts_with('#') && line.contains(" cov: ") {
            run.cov = number_after(line, " cov:").or(run.cov);
            run.ft = number_after(line, " ft:").or(run.ft);
            run.corpus = number_after(line, " corp:").or(run.corpus);
        }
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

fn fuzz_one(bin: &Path, fuzz: &Path, target: &str, seconds: u64) -> Result<Run, String> {
    let committed = fuzz.join("corpus").join(target);
    let scratch = fuzz.join("target/corpus").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    let logs = fuzz.join("target/logs");
    for d in [&committed, &scratch, &artifacts, &logs] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let before: Vec<PathBuf> = files_in(&artifacts);
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg(&scratch)
        .arg(&committed)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // A single input that takes this long is a hang (a finding).
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg("-max_len=8192")
        .arg("-print_final_stats=1");
    let dict = fuzz.join("dict").join(format!("{target}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    println!("  $ {} ... (log: {})", bin.display(), log_path.display());
    let started = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut run = Run {
        target: target.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        ok: status.success(),
        ..Run::default()
    };
    parse_log(
        &std::fs::read_to_string(&log_path).unwrap_or_default(),
        &mut run,
    );
    run.crashes = files_in(&artifacts)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if !run.ok || !run.crashes.is_empty() {
        run.ok = false;
        println!("  {target}: FAILED ({status}); the log's end:");
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for l in tail.into_iter().rev() {
            println!("    | {l}");
        }
    }
    Ok(run)
}

/// Minimises the committed corpus plus what the run found back into the committed dir.
fn merge(bin: &Path, fuzz: &Path, target: &str) -> Result<usize, String> {
    let committed = fuzz.join("corpus").join(target);
    let scratch = fuzz.join("target/corpus").join(target);
    let merged = fuzz.join("target/merged").join(target);
    let _ = std::fs::remove_dir_all(&merged);
    std::fs::create_dir_all(&merged).map_err(|e| e.to_string())?;
    let status = Command::new(bin)
        // Set cover over edges (not hit counts): a few hundred inputs keep
        // the edge coverage of thousands.
        .arg("-set_cover_merge=1")
        .arg("-use_counters=0")
        .arg("-max_len=8192")
        .arg("-timeout=20")
        .arg(&merged)
        .arg(&committed)
        .arg(&scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("merge of {target} failed ({status})"));
    }
    let kept = files_in(&merged);
    if kept.is_empty() {
        return Err(format!("merge of {target} kept nothing"));
    }
    for f in files_in(&committed) {
        std::fs::remove_file(&f).map_err(|e| e.to_string())?;
    }
    for f in &kept {
        let name = f.file_name().ok_or("file without a name")?;
        std::fs::copy(f, committed.join(name)).map_err(|e| e.to_string())?;
    }
    Ok(kept.len())
}

pub fn run_fuzz(args: &[String]) -> Result<(), String> {
    let opts = parse_args(args)?;
    let root = crate::root();
    let fuzz = root.join("fuzz");
    let all = all_targets(&fuzz)?;
    let targets = if opts.targets.is_empty() {
        all.clone()
    } else {
        for t in &opts.targets {
            if !all.contains(t) {
                return Err(format!(
                    "unknown fuzz target {t} (known: {})",
                    all.join(", ")
                ));
            }
        }
        opts.targets.clone()
    };
    let triple = host_triple()?;
    crate::step(
        "build fuzz targets (libFuzzer, coverage instrumented)",
        || {
            crate::run(
                Command::new("cargo")
                    .args(["build", "--profile", "fuzz", "-p", "voxline-fuzz"])
                    .args(["--features", "libfuzzer", "--bins", "--target", &triple])
                    .env("CARGO_TARGET_DIR", fuzz.join("target"))
                    .env("RUSTFLAGS", RUSTFLAGS.join(" "))
                    .env_remove("CARGO_ENCODED_RUSTFLAGS"),
            )
        },
    )?;
    let bin_dir = fuzz.join("target").join(&triple).join("fuzz");
    let mut runs = Vec::new();
    for t in &targets {
        let bin = bin_dir.join(t);
        let run = crate::step(&format!("fuzz {t} for {} s", opts.seconds), || {
            let r = fuzz_one(&bin, &fuzz, t, opts.seconds)?;
            if opts.merge && r.ok {
                let n = merge(&bin, &fuzz, t)?;
                println!("  corpus/{t}: {n} inputs after merge");
            }
            Ok(r)
        })?;
        runs.push(run);
    }
    print_summary(&runs, &triple);
    let failed: Vec<&Run> = runs.iter().filter(|r| !r.ok).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        for r in &failed {
            for c in &r.crashes {
                println!("crash input: {}", c.display());
            }
        }
        Err(format!(
            "{} target(s) failed: {}; reproduce with fuzz/target/{triple}/fuzz/<target> <input>",
            failed.len(),
            failed
                .iter()
                .map(|r| r.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |n| n.to_string())
}

fn print_summary(runs: &[Run], triple: &str) {
    let total_s: f64 = runs.iter().map(|r| r.seconds).sum();
    let total_x: u64 = runs.iter().map(|r| r.execs).sum();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("\nfuzz summary ({rustc}, {triple}):\n");
    println!(
        "| target | seconds | executions | exec/s | cov | ft | corpus | peak RSS MB | crashes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.target,
            r.seconds,
            r.execs,
            r.execs as f64 / r.seconds.max(0.001),
            opt(r.cov),
            opt(r.ft),
            opt(r.corpus),
            opt(r.peak_rss_mb),
            if r.ok {
                "0".to_string()
            } else {
                format!("{} (FAILED)", r.crashes.len())
            }
        );
    }
    println!(
        "| **total** | {total_s:.0} | {total_x} | {:.0} | | | | | {} |",
        total_x as f64 / total_s.max(0.001),
        runs.iter().filter(|r| !r.ok).count()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_status_and_final_stats() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #4096\tpulse  cov: 120 ft: 300 corp: 40/2Kb lim: 43 exec/s: 2048 rss: 40Mb\n\
                   #9000\tDONE   cov: 130 ft: 310 corp: 44/3Kb lim: 43 exec/s: 3000 rss: 41Mb\n\
                   Done 9000 runs in 3 second(s)\nstat::number_of_executed_units: 9000\n\
                   stat::peak_rss_mb:              41\n";
        let mut r = Run::default();
        parse_log(log, &mut r);
        assert_eq!(r.execs, 9000);
        assert_eq!((r.cov, r.ft, r.corpus), (Some(130), Some(310), Some(44)));
        assert_eq!(r.peak_rss_mb, Some(41));
    }

    #[test]
    fn targets_are_the_bins_in_order() {
        let names = all_targets(&crate::root().join("fuzz")).unwrap();
        assert_eq!(names.first().map(String::as_str), Some("sip_parser"));
        assert!(names.len() >= 10, "{names:?}");
    }
}
