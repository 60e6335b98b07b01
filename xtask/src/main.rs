//! `cargo xtask <command>`: the project's entry points.
//!
//! - `bootstrap`  install what is missing (idempotent, fast when present)
//! - `build-edge` build the Worker to wasm (edge/build/worker)
//! - `test`       bootstrap, fmt and clippy (native + wasm32), host unit tests, wasm build,
//!   end-to-end suites
//! - `lint`       only the fmt and clippy checks of `test`
//! - `demo`       run the stack locally and place a call (`--once` to exit after;
//!   `--inbound`: the phone calls the AI instead)
//! - `bench`      measured figures into docs/bench.md
//! - `bench-cpu`  only the edge CPU per request (native vs wasm), printed
//! - `bench-edge` only the edge throughput, empty vs 10,000 calls stored (into docs/bench.md)
//! - `bench-media` only the sidecar's CPU/memory per call and media latency, printed
//!   (`VOXLINE_BENCH_ONLY=load|latency` for one part)
//! - `bench-calls` only API->INVITE, answer->first AI audio and local-engine CPU, printed
//!   (PNGs into docs/bench/; `VOXLINE_BENCH_ONLY=invite|local|local-first-audio|cloud`
//!   for one part;
//!   `VOXLINE_BENCH_RING_MS` how long sipp rings, `VOXLINE_BENCH_FAKE_DELAY_MS` the fake
//!   OpenAI Realtime server's delay)
//! - `bench-turn` only turn and barge-in latency (whole calls from an offer, no edge: the
//!   sidecar's `latency_bench` test in release), into docs/bench.md
//! - `bench-amd`  only answering-machine detection: precision/recall of `machine` and decision
//!   times on a flite-generated labelled set (the sidecar's `amd_bench` test in release), into
//!   docs/bench.md
//! - `bench-campaign` only the campaign dialling rate against the configured pacing (wrangler
//!   dev and a simulating sidecar), into docs/bench.md
//! - `bench-inbound` only inbound call setup (the trunk's INVITE -> our 200 OK, sipp calling
//!   a tenant's number on a release sidecar with wrangler dev), into docs/bench.md
//! - `bench-bridge` only CPU per bridged call (the sidecar's `bridge_bench` test in release:
//!   N forwarded calls relayed and transcoded at once), into docs/bench.md
//! - `fuzz`       coverage-guided fuzzing (libFuzzer, stable Rust), every target for a bounded
//!   time (`--seconds-per-target N`, default 75; `--merge` minimises finds into fuzz/corpus)

mod bench;
mod bench_amd;
mod bench_bridge;
mod bench_calls;
mod bench_campaign;
mod bench_inbound;
mod bench_media;
mod bench_plot;
mod bench_turn;
mod bootstrap;
mod demo;
mod fuzz;
mod machine;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

pub fn root() -> PathBuf {
    voxline_e2e::repo_root()
}

/// Runs a command in the repo root, echoing it; Err on spawn failure or non-zero exit.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{:?}", cmd).replace('"', "");
    println!("  $ {shown}");
    machine::empty_regular_dev_null();
    let status = cmd
        .current_dir(
            cmd.get_current_dir()
                .map(Path::to_path_buf)
                .unwrap_or_else(root),
        )
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{shown}` failed ({s})")),
        Err(e) => Err(format!("`{shown}` could not start: {e}")),
    }
}

pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    println!("==> {name}");
    let t = Instant::now();
    let out = f();
    match &out {
        Ok(_) => println!("<== {name}: ok ({:.1} s)", t.elapsed().as_secs_f64()),
        Err(e) => println!(
            "<== {name}: FAILED ({:.1} s): {e}",
            t.elapsed().as_secs_f64()
        ),
    }
    out
}

pub fn build_edge() -> Result<(), String> {
    let tools = bootstrap::tools_bin();
    run(Command::new(tools.join("worker-build"))
        .arg("--release")
        .current_dir(root().join("edge"))
        .env("WASM_BINDGEN_BIN", tools.join("wasm-bindgen"))
        .env("WASM_OPT_BIN", root().join("node_modules/.bin/wasm-opt")))
}

/// The tree as rustfmt formats it, and clippy without a warning: natively for
/// every crate and target, and for the Worker's own target (its glue compiles
/// only there). First, as it is the cheapest way to fail.
fn lint() -> Result<(), String> {
    step("format check", || {
        run(Command::new("cargo").args(["fmt", "--all", "--check"]))
    })?;
    step("clippy (native)", || {
        run(Command::new("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("clippy (sidecar without the local engine)", || {
        run(Command::new("cargo").args([
            "clippy",
            "-p",
            "voxline-media-sidecar",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("clippy (edge, wasm32)", || {
        run(Command::new("cargo").args([
            "clippy",
            "-p",
            "voxline-edge",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ]))
    })
}

fn test() -> Result<(), String> {
    let started = Instant::now();
    step("bootstrap", bootstrap::ensure_all)?;
    lint()?;
    step("host unit tests", || {
        run(Command::new("cargo").args(["test", "--workspace", "--exclude", "voxline-e2e"]))
    })?;
    step("edge wasm build", build_edge)?;
    step("media sidecar build", || {
        run(Command::new("cargo").args(["build", "-p", "voxline-media-sidecar"]))
    })?;
    // Every suite runs even when one fails: a red run names all that failed.
    step("end-to-end suites (wrangler dev)", || {
        run(Command::new("cargo").args(["test", "--no-fail-fast", "-p", "voxline-e2e"]))
    })?;
    println!(
        "\nall tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn usage() -> Result<(), String> {
    Err("usage: cargo xtask <bootstrap|build-edge|test|lint|demo [--once] [--inbound]|bench|bench-cpu|bench-edge|bench-media|bench-calls|bench-turn|bench-amd|bench-campaign|bench-inbound|bench-bridge|fuzz [--seconds-per-target N] [--merge] [target...]>".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut target_dirs = vec![root().join("target"), bootstrap::tools_dir().join("target")];
    target_dirs.extend(std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from));
    machine::repair(&target_dirs);
    let result = match args.first().map(String::as_str) {
        Some("bootstrap") => step("bootstrap", bootstrap::ensure_all),
        Some("build-edge") => step("bootstrap", bootstrap::ensure_all)
            .and_then(|_| step("edge wasm build", build_edge)),
        Some("test") => test(),
        Some("lint") => lint(),
        Some("bench") => bench::run_bench(),
        Some("bench-cpu") => bench::run_cpu_only(),
        Some("bench-edge") => bench::run_edge_only(),
        Some("bench-media") => bench_media::run_media_only(),
        Some("bench-calls") => bench_calls::run_calls_only(),
        Some("bench-turn") => bench_turn::run_turn_only(),
        Some("bench-amd") => bench_amd::run_amd_only(),
        Some("bench-campaign") => bench_campaign::run_campaign_only(),
        Some("bench-inbound") => bench_inbound::run_inbound_only(),
        Some("bench-bridge") => bench_bridge::run_bridge_only(),
        Some("demo") => demo::run_demo(
            args.iter().any(|a| a == "--once"),
            args.iter().any(|a| a == "--inbound"),
        ),
        Some("fuzz") => fuzz::run_fuzz(&args[1..]),
        _ => usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
