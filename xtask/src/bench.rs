//! `cargo xtask bench`: measured figures, written to docs/bench.md.
//!
//! Lease latency: time from sending `POST /v1/calls` to the sidecar having
//! the offer (its "offer accepted" log line, same machine clock), over the
//! HTTP/1.1 transport straight to `wrangler dev` and over HTTP/3 through caddy.
//! Several runs; each run reports p50/p99, and the report gives their medians.
//!
//! Edge CPU per request: workerd gives no per-request CPU time locally, so
//! edge/bench-wasm runs the Worker's pure request handling (auth, validation,
//! record, webhook signature) natively and as wasm32-wasip1 under wasmtime.

use crate::{bootstrap, build_edge, root, run, step};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use voxline_e2e::{json, Edge, EdgeOptions, Sidecar};
use voxline_testkit::{make_pki, Caddy};

/// Runs of the lease and throughput figures; calls per lease run.
fn runs() -> usize {
    crate::bench_media::count(3, 1)
}
fn calls_per_run() -> usize {
    crate::bench_media::count(40, 10)
}

fn now_ms_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// When the sidecar logged taking the offer for `call_id`, in unix ms.
fn offer_seen_at(log: &str, call_id: &str) -> Option<f64> {
    log.lines()
        .filter(|l| l.contains("offer accepted") && l.contains(call_id))
        .find_map(|l| {
            let ts = l.split_whitespace().next()?;
            let t = time::OffsetDateTime::parse(ts, &Rfc3339).ok()?;
            Some(t.unix_timestamp_nanos() as f64 / 1e6)
        })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Distinct numbers for the lease runs: the previous call to a number may
/// still be in progress (the sidecar simulates 50 ms calls), which the edge
/// refuses as a duplicate (409 call_in_progress).
static LEASE_NUMBER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One run: `calls_per_run()` calls placed one after another; returns latencies in ms.
fn lease_run(edge: &Edge, key: &str, sidecar: &Sidecar) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for i in 0..calls_per_run() + 3 {
        let phone = format!(
            "+1415556{:04}",
            LEASE_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let t0 = now_ms_f();
        let r = edge.call("POST", "/v1/calls", key, Some(&json!({"phone": phone})));
        if r.status != 201 {
            return Err(format!("POST /v1/calls: {} {}", r.status, r.text));
        }
        let id = r.json["id"].as_str().unwrap_or_default().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            if let Some(t) = offer_seen_at(&sidecar.log(), &id) {
                break t;
            }
            if Instant::now() > deadline {
                return Err(format!("the sidecar never took {id}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if i >= 3 {
            out.push(seen - t0); // the first 3 warm up connections and the object
        }
    }
    Ok(out)
}

const THROUGHPUT_THREADS: usize = 8;
const THROUGHPUT_REQUESTS: usize = 100;

/// POST /v1/calls from `THROUGHPUT_THREADS` keep-alive clients at once, each
/// to distinct numbers (no duplicate-call or per-number limits interfere).
/// Returns (requests/s, sorted per-request latencies in ms).
fn throughput_run(edge: &Edge, key: &str, run: usize) -> Result<(f64, Vec<f64>), String> {
    let started = Instant::now();
    let results: Vec<Result<Vec<f64>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THROUGHPUT_THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut lat = Vec::new();
                    for i in 0..THROUGHPUT_REQUESTS {
                        let phone = format!("+1555{run:01}{t:02}{i:04}");
                        let t0 = Instant::now();
                        let r = edge.call("POST", "/v1/calls", key, Some(&json!({"phone": phone})));
                        if r.status != 201 {
                            return Err(format!("POST /v1/calls: {} {}", r.status, r.text));
                        }
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok((all.len() as f64 / elapsed, all))
}

/// Edge throughput on an empty edge and with `STORED_CALLS` calls stored,
/// side by side: each run's (req/s, p50 ms, p99 ms).
#[derive(Debug, Clone, Default)]
pub struct EdgeThroughput {
    pub empty: Vec<(f64, f64, f64)>,
    pub stored: Vec<(f64, f64, f64)>,
    pub stored_calls: usize,
    pub seed_secs: f64,
}

/// Calls stored before the second set of runs: scheduled a day ahead, so
/// they stay in the tenant's store and the region's queue.
fn stored_calls() -> usize {
    std::env::var("VOXLINE_BENCH_STORED_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if crate::bench_media::quick() {
            1_000
        } else {
            10_000
        })
}

/// A tenant whose limits do not get in the way of a throughput run.
fn unlimited_tenant(edge: &Edge) -> Result<String, String> {
    let t = edge.provision_tenant("throughput");
    let limits = json!({"rate_limits": {"per_key": {"limit": 1_000_000, "window_seconds": 60},
                                        "per_ip": {"limit": 1_000_000, "window_seconds": 60}}});
    let r = edge.admin("PATCH", &format!("/admin/tenants/{}", t.id), Some(&limits));
    if r.status != 200 {
        return Err(format!(
            "raising the bench tenant's limits: {} {}",
            r.status, r.text
        ));
    }
    Ok(t.key)
}

/// Two edges side by side, each its own `wrangler dev` with fresh state:
/// one empty, one with [`stored_calls`] calls stored for the tenant the runs
/// use. Runs alternate between them (empty, stored, empty, ...) so that the
/// machine's drift (disk, other load) falls on both alike; the edge not being
/// measured is idle.
pub fn edge_throughput() -> Result<EdgeThroughput, String> {
    let empty = step("start edge (empty)", || {
        Edge::start(EdgeOptions::fresh("bench-edge-empty"))
    })?;
    let stored = step("start edge (stored)", || {
        Edge::start(EdgeOptions::fresh("bench-edge-stored"))
    })?;
    let (empty_key, stored_key) = (unlimited_tenant(&empty)?, unlimited_tenant(&stored)?);
    let mut out = EdgeThroughput {
        stored_calls: stored_calls(),
        ..EdgeThroughput::default()
    };
    let t = Instant::now();
    step(&format!("store {} calls", out.stored_calls), || {
        seed_calls(&stored, &stored_key, out.stored_calls)
    })?;
    out.seed_secs = t.elapsed().as_secs_f64();
    for run in 0..runs() {
        for (label, edge, key, into) in [
            ("empty", &empty, &empty_key, &mut out.empty),
            ("stored", &stored, &stored_key, &mut out.stored),
        ] {
            let (rps, lat) = step(
                &format!("edge throughput, {label}, run {}", run + 1),
                || throughput_run(edge, key, run),
            )?;
            println!(
                "  {rps:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
            into.push((rps, percentile(&lat, 0.5), percentile(&lat, 0.99)));
        }
    }
    Ok(out)
}

/// `count` calls scheduled a day ahead, to distinct numbers, 8 clients at once.
fn seed_calls(edge: &Edge, key: &str, count: usize) -> Result<(), String> {
    let at = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&Rfc3339)
        .map_err(|e| e.to_string())?;
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THROUGHPUT_THREADS)
            .map(|t| {
                let at = &at;
                s.spawn(move || {
                    for i in (t..count).step_by(THROUGHPUT_THREADS) {
                        let r = edge.call(
                            "POST",
                            "/v1/calls",
                            key,
                            Some(&json!({"phone": format!("+1666{i:07}"), "schedule_at": at})),
                        );
                        if r.status != 201 {
                            return Err(format!("seeding call {i}: {} {}", r.status, r.text));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    results.into_iter().collect()
}

/// The docs/bench.md section of [`EdgeThroughput`].
fn throughput_text(t: &EdgeThroughput) -> String {
    let row = |label: &str, runs: &[(f64, f64, f64)]| {
        let per_run = |f: fn(&(f64, f64, f64)) -> f64, digits: usize| {
            runs.iter()
                .map(|r| format!("{:.*}", digits, f(r)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        format!(
            "| {label} | {:.0} | {:.1} | {:.1} | {} | {} | {} |\n",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
            median(runs.iter().map(|r| r.2).collect()),
            per_run(|r| r.0, 0),
            per_run(|r| r.1, 1),
            per_run(|r| r.2, 1),
        )
    };
    let empty_rps = median(t.empty.iter().map(|r| r.0).collect());
    let stored_rps = median(t.stored.iter().map(|r| r.0).collect());
    let ratio = if empty_rps > 0.0 {
        stored_rps / empty_rps
    } else {
        0.0
    };
    format!(
        "## Edge throughput: POST /v1/calls, empty and with {n} calls stored\n\n\
         {threads} client threads (HTTP/1.1 keep-alive) each POST {reqs} calls to distinct numbers as fast as\n\
         answers come back, on the same 2-core machine as the clients. Two `wrangler dev` side by side,\n\
         each with fresh state: one empty, one where {n} calls were first stored for the tenant the runs\n\
         use (scheduled a day ahead, so each stays in the tenant's call store and in the region's queue;\n\
         stored in {seed:.0} s). Runs alternate between them, {runs} each, so the machine's drift falls on\n\
         both alike (local Durable Object storage is disk-bound here and varies run to run). Medians,\n\
         then per-run values. The calls the runs place stay queued too (no sidecar).\n\n\
         | edge | req/s | p50 ms | p99 ms | req/s per run | p50 per run | p99 per run |\n|---|---|---|---|---|---|---|\n{empty}{stored}\n\
         Throughput with {n} calls stored is **{ratio:.2}x** the empty edge's.\n\n\
         Storage round trips of one `POST /v1/calls`, in order (KV reads of configuration are cached at\n\
         Cloudflare's edge after the first): before (to issue 11), KV reads of key, tenant and agent;\n\
         the tenant's `RateLimiter`; a KV write of the record; the region's `DispatchQueue` (which\n\
         rewrote the whole queue as one value, so each request cost grew with the queue); the\n\
         `RateLimiter` again (idempotency answer); a KV list and reads of webhook endpoints; a Queue\n\
         send. Now: the same KV reads; the `RateLimiter`; the tenant's `CallStore`, which writes the\n\
         record (one row) and calls the region's `DispatchQueue` (one row for the call, one for its\n\
         offer body, nonces and a small meta value) and hands `call.queued` to the delivery queue;\n\
         the `RateLimiter` again. No KV write, and no step whose cost grows with the calls stored.\n\n",
        n = t.stored_calls,
        threads = THROUGHPUT_THREADS,
        reqs = THROUGHPUT_REQUESTS,
        runs = t.empty.len(),
        seed = t.seed_secs,
        empty = row("empty", &t.empty),
        stored = row(&format!("{} stored", t.stored_calls), &t.stored),
    )
}

/// `cargo xtask bench-edge`: only the throughput comparison, printed and
/// written into its section of docs/bench.md.
pub fn run_edge_only() -> Result<(), String> {
    step("bootstrap", bootstrap::ensure_all)?;
    step("edge wasm build", build_edge)?;
    let t = edge_throughput()?;
    let text = throughput_text(&t);
    println!("{text}");
    let path = root().join("docs/bench.md");
    let md = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let start = md
        .find("## Edge throughput: POST /v1/calls")
        .ok_or("docs/bench.md has no edge throughput section")?;
    let end = md[start + 3..]
        .find("\n## ")
        .map(|i| start + 3 + i + 1)
        .unwrap_or(md.len());
    std::fs::write(&path, format!("{}{}{}", &md[..start], text, &md[end..]))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("updated {}", path.display());
    Ok(())
}

/// Processes per engine; each reports the median of its rounds' means.
fn cpu_runs() -> usize {
    crate::bench_media::count(5, 1)
}
const CPU_ITERATIONS: usize = 2_000;
const CPU_ROUNDS: usize = 5;
const CPU_WARMUP: usize = 500;

/// One process's figures in ns: the median single request and its parts
/// (robust to other load), and the mean per request (median over rounds).
#[derive(Debug, Clone, Copy)]
pub struct CpuRun {
    pub p50: f64,
    pub p50_handle: f64,
    pub p50_sign: f64,
    pub mean: f64,
}

#[derive(Debug, Default)]
pub struct CpuBench {
    pub native: Vec<CpuRun>,
    pub wasm: Vec<CpuRun>,
}

fn cargo_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Runs one bench process and parses the JSON line it prints.
fn cpu_run(cmd: &mut Command) -> Result<CpuRun, String> {
    cmd.args([
        "--iterations",
        &CPU_ITERATIONS.to_string(),
        "--rounds",
        &CPU_ROUNDS.to_string(),
        "--warmup",
        &CPU_WARMUP.to_string(),
    ]);
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .current_dir(root())
        .output()
        .map_err(|e| format!("`{shown}` could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("`{shown}` printed {line:?}: {e}"))?;
    let f = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("`{shown}`: no {k} in {line}"))
    };
    Ok(CpuRun {
        p50: f("p50_ns_per_request")?,
        p50_handle: f("p50_handle_ns")?,
        p50_sign: f("p50_sign_ns")?,
        mean: f("ns_per_request")?,
    })
}

/// Builds edge/bench-wasm natively and for wasm32-wasip1 (the release
/// profile the Worker ships with), then alternates native and wasmtime runs.
pub fn cpu_bench() -> Result<CpuBench, String> {
    let build = |target: Option<&str>| {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--release", "-p", "voxline-edge-bench"]);
        if let Some(t) = target {
            cmd.args(["--target", t]);
        }
        run(&mut cmd)
    };
    step("edge CPU bench build (native)", || build(None))?;
    step("edge CPU bench build (wasm32-wasip1)", || {
        build(Some("wasm32-wasip1"))
    })?;
    let dir = cargo_target_dir();
    let native_bin = dir.join("release/voxline-edge-bench");
    let wasm = dir.join("wasm32-wasip1/release/voxline-edge-bench.wasm");
    let runner = root().join("edge/bench-wasm/run_wasmtime.py");
    let mut bench = CpuBench::default();
    for r in 0..cpu_runs() {
        let (n, w) = step(&format!("edge CPU per request, run {}", r + 1), || {
            let n = cpu_run(&mut Command::new(&native_bin))?;
            let w = cpu_run(
                Command::new(bootstrap::venv_python())
                    .arg(&runner)
                    .arg(&wasm),
            )?;
            Ok((n, w))
        })?;
        println!(
            "  p50 per request: native {:.1} us, wasmtime {:.1} us, ratio {:.2}",
            n.p50 / 1e3,
            w.p50 / 1e3,
            w.p50 / n.p50
        );
        bench.native.push(n);
        bench.wasm.push(w);
    }
    Ok(bench)
}

/// `cargo xtask bench-cpu`: only the edge CPU figures, printed, no report.
pub fn run_cpu_only() -> Result<(), String> {
    step("bootstrap", bootstrap::ensure_all)?;
    let cpu = cpu_bench()?;
    print!("{}", cpu_table(&cpu));
    Ok(())
}

fn cpu_table(cpu: &CpuBench) -> String {
    let med = |v: &[CpuRun], f: fn(&CpuRun) -> f64| median(v.iter().map(f).collect());
    let per_run = |v: &[CpuRun]| {
        v.iter()
            .map(|r| format!("{:.1}", r.p50 / 1e3))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let row = |name: &str, v: &[CpuRun]| {
        format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            med(v, |r| r.p50) / 1e3,
            med(v, |r| r.p50_handle) / 1e3,
            med(v, |r| r.p50_sign) / 1e3,
            med(v, |r| r.mean) / 1e3,
            per_run(v),
        )
    };
    let ratio = |f: fn(&CpuRun) -> f64| med(&cpu.wasm, f) / med(&cpu.native, f);
    format!(
        "| build | us/request (p50) | handle us (p50) | sign us (p50) | us/request (mean) | p50 per process |\n|---|---|---|---|---|---|\n{}{}\n\
         wasm / native: {:.2}x per request ({:.2}x handling, {:.2}x signing; {:.2}x on the means).\n",
        row("wasm32-wasip1 in wasmtime", &cpu.wasm),
        row("native x86_64", &cpu.native),
        ratio(|r| r.p50),
        ratio(|r| r.p50_handle),
        ratio(|r| r.p50_sign),
        ratio(|r| r.mean),
    )
}

pub fn run_bench() -> Result<(), String> {
    step("bootstrap", bootstrap::ensure_all)?;
    // First, on a quiet machine: no wrangler or sidecar running yet.
    let cpu = cpu_bench()?;
    step("edge wasm build", build_edge)?;
    step("media sidecar build (release)", || {
        run(Command::new("cargo").args(["build", "--release", "-p", "voxline-media-sidecar"]))
    })?;
    let mut opts = EdgeOptions::fresh("bench");
    let dir = opts
        .state_dir
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| root().join("target/e2e/bench"));
    // A stopped sidecar's last long-poll stays open in the queue until this
    // wait ends; keep it short so the next transport's sidecar is not starved.
    opts.vars = vec![("DISPATCH_MAX_WAIT_MS".into(), "2000".into())];
    let edge = step("start edge", || Edge::start(opts))?;
    let tenant = edge.provision_tenant("bench");
    let pki = make_pki(&dir);
    let caddy = Caddy::start(&edge.base, &pki, &dir);
    let release_bin = cargo_target_dir().join("release/voxline-media-sidecar");
    let transports = crate::bench_calls::invite_transports(&edge, caddy.port, &pki);
    std::env::set_var("VOXLINE_SIDECAR_BIN", &release_bin);
    // Per transport, each run's sorted samples (ms).
    let mut results: BTreeMap<&str, Vec<Vec<f64>>> = BTreeMap::new();
    let mut calls = crate::bench_calls::CallsBench::default();
    let invite_tenant = crate::bench_media::bench_tenant(&edge, "invite-bench", "echo", None)?;
    for (name, url, env) in &transports {
        let mut lease_env: Vec<(&str, String)> = env.clone();
        lease_env.push(("VOXLINE_LEASE_WAIT_MS", "20000".into()));
        lease_env.push(("VOXLINE_CAPACITY", "64".into()));
        let sidecar = Sidecar::start(&edge, &dir, &format!("bench-{name}"), url, &lease_env, 0.05);
        for r in 0..runs() {
            let mut lat = step(&format!("lease latency over {name}, run {}", r + 1), || {
                lease_run(&edge, &tenant.key, &sidecar)
            })?;
            lat.sort_by(|a, b| a.total_cmp(b));
            println!(
                "  {name}: p50 {:.1} ms, p99 {:.1} ms",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
            results.entry(name).or_default().push(lat);
        }
        drop(sidecar);
        std::thread::sleep(Duration::from_millis(2_500));
        // The same transport, now with a real SIP trunk (this process) behind the sidecar.
        let invite = crate::bench_calls::api_invite(
            &edge,
            &invite_tenant,
            &release_bin,
            &dir,
            name,
            url,
            env,
        )?;
        calls.invite.push((name.to_string(), invite));
    }
    drop(caddy);
    // The media sidecar placing real calls (SIP to sipp, RTP, echo engine).
    // Before the throughput runs: those leave thousands of calls queued in
    // the region, which these sidecars would lease first.
    let media = crate::bench_media::media_bench(&edge, &release_bin, &dir)?;
    // The local engine: answer -> first AI audio, CPU per call.
    crate::bench_calls::local_parts(&edge, &release_bin, &dir, &mut calls, true);
    // The cloud engine against the fake OpenAI Realtime server.
    crate::bench_calls::cloud_parts(&edge, &release_bin, &dir, &mut calls);
    drop(edge);
    let throughput = edge_throughput()?;
    write_report(&results, &throughput, &cpu, &media, &calls)?;
    // Turn and barge-in latency: whole calls without the edge.
    let turn = crate::bench_turn::measure()?;
    crate::bench_turn::write_section(&turn)?;
    // Answering-machine detection on a generated set (no calls at all).
    let amd = crate::bench_amd::measure()?;
    crate::bench_amd::write_section(&amd)?;
    let campaigns = crate::bench_campaign::measure()?;
    crate::bench_campaign::write_section(&campaigns)?;
    let (inbound, load) = crate::bench_inbound::measure()?;
    crate::bench_inbound::write_section(&inbound, &load)?;
    let (bridged, load) = crate::bench_bridge::measure()?;
    crate::bench_bridge::write_section(&bridged, &load)
}

/// Puts a generated `section` (from its `begin` marker to its `end` one)
/// into the markdown file at `path`: in place of the last one, else before
/// the hand-measured sections, else at the end.
pub fn write_marked_section(
    path: &std::path::Path,
    begin: &str,
    end: &str,
    section: &str,
) -> Result<(), String> {
    const HAND_MEASURED: &str =
        "<!-- Below: measured by hand, kept as they are by `cargo xtask bench`. -->";
    let md = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let new = match (md.find(begin), md.find(end)) {
        (Some(a), Some(z)) if z > a => {
            let rest = md[z + end.len()..].trim_start_matches('\n');
            format!("{}{section}{rest}", &md[..a])
        }
        _ => match md.find(HAND_MEASURED) {
            Some(at) => format!("{}{section}{}", &md[..at], &md[at..]),
            None => format!("{md}\n{section}"),
        },
    };
    std::fs::write(path, new).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("wrote a section of {}", path.display());
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

/// Where docs/bench.md's sections measured by hand (not by this command)
/// begin; they run to the end of the file, and a new report keeps them.
const HAND_MEASURED: &str =
    "<!-- Below: measured by hand, kept as they are by `cargo xtask bench`. -->";

/// docs/bench.md and its plots in docs/bench/.
fn write_report(
    results: &BTreeMap<&str, Vec<Vec<f64>>>,
    throughput: &EdgeThroughput,
    cpu: &CpuBench,
    media: &crate::bench_media::MediaBench,
    calls: &crate::bench_calls::CallsBench,
) -> Result<(), String> {
    let plots = root().join("docs/bench");
    std::fs::create_dir_all(&plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    write_plots(&plots, results, media, calls)?;
    let path = root().join("docs/bench.md");
    let kept = std::fs::read_to_string(&path)
        .ok()
        .and_then(|md| md.find(HAND_MEASURED).map(|at| md[at..].to_string()))
        .unwrap_or_default();
    let text = report_text(results, throughput, cpu, media, calls);
    let sep = if kept.is_empty() || text.ends_with("\n\n") {
        ""
    } else {
        "\n"
    };
    std::fs::write(&path, format!("{text}{sep}{kept}"))
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("wrote {} and {}", path.display(), plots.display());
    Ok(())
}

fn write_plots(
    dir: &std::path::Path,
    results: &BTreeMap<&str, Vec<Vec<f64>>>,
    media: &crate::bench_media::MediaBench,
    calls: &crate::bench_calls::CallsBench,
) -> Result<(), String> {
    use crate::bench_plot::{cdf, Samples};
    let lease: Vec<Samples> = results
        .iter()
        .map(|(transport, runs)| Samples {
            label: format!("{transport}, {} runs", runs.len()),
            values: runs.concat(),
        })
        .collect();
    if !lease.is_empty() {
        cdf(
            &dir.join("lease_latency.png"),
            "Lease latency: API POST -> sidecar has the offer",
            "latency (ms)",
            &lease,
        )?;
    }
    let mut lat = Vec::new();
    for loss in [0.0, 1.0] {
        let runs: Vec<&crate::bench_media::LatencyRun> = media
            .latency
            .iter()
            .filter(|r| r.loss_pct == loss)
            .collect();
        if !runs.is_empty() {
            let values = runs
                .iter()
                .flat_map(|r| r.samples.iter().copied())
                .collect();
            lat.push(Samples {
                label: format!("{loss:.0}% loss, {} runs", runs.len()),
                values,
            });
        }
    }
    if !lat.is_empty() {
        cdf(
            &dir.join("media_latency.png"),
            "Media latency: RTP in -> echo engine -> RTP out",
            "round trip through the sidecar (ms)",
            &lat,
        )?;
    }
    crate::bench_calls::plots(calls, &media.load, dir)
}

fn report_text(
    results: &BTreeMap<&str, Vec<Vec<f64>>>,
    throughput: &EdgeThroughput,
    cpu: &CpuBench,
    media: &crate::bench_media::MediaBench,
    calls: &crate::bench_calls::CallsBench,
) -> String {
    let throughput_section = throughput_text(throughput);
    let mut rows = String::new();
    for (transport, runs) in results {
        let runs: Vec<(f64, f64)> = runs
            .iter()
            .map(|r| (percentile(r, 0.5), percentile(r, 0.99)))
            .collect();
        let p50s: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.0)).collect();
        let p99s: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.1)).collect();
        rows.push_str(&format!(
            "| {transport} | {:.1} | {:.1} | {} | {} |\n",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
            p50s.join(" / "),
            p99s.join(" / "),
        ));
    }
    format!(
        "# Benchmarks\n\nGenerated by `cargo xtask bench` on {date}. Machine: {machine}.\n\
         Everything runs on loopback on this one machine: `wrangler dev` (workerd, local Durable\n\
         Objects and KV), the release-built media sidecar, and caddy for HTTP/3.\n\n\
         ## Lease latency (API POST -> sidecar has the offer)\n\n\
         From just before `POST /v1/calls` is sent to the sidecar's `offer accepted` log line\n\
         (same clock). The sidecar holds a long-poll open (the edge caps `wait_ms` at 2 s here), so this is the\n\
         edge accepting the call, the Durable Object queueing it and waking the held poll, and the\n\
         answer travelling back. {runs} runs of {calls} sequential calls each (3 warm-up calls per\n\
         run not counted); the table gives the median over runs of each run's p50 and p99, then the\n\
         per-run values.\n\n\
         | transport | p50 ms (median) | p99 ms (median) | p50 per run | p99 per run |\n|---|---|---|---|---|\n{rows}\n\
         `http1` is HTTP/1.1 keep-alive straight to `wrangler dev`; `h3` is HTTP/3 over QUIC to\n\
         caddy, which proxies to `wrangler dev` over HTTP/1.1 (as Cloudflare's edge terminates\n\
         QUIC in production), so it includes one extra local hop.\n\n\
         ![Lease latency, CDF per transport, all runs' samples](bench/lease_latency.png)\n\n\
         {invite}\
         {throughput_section}\
         ## Edge CPU per request: auth + validation + signing, wasm vs native\n\
         \n\
         workerd reports no per-request CPU time locally, so `edge/bench-wasm` runs the Worker's own\n\
         pure request handling (`api::handle`) over the in-memory KV, dispatch queues and traffic ports\n\
         (the `bench-support` feature, never in the Worker build). One request is a `POST /v1/calls`\n\
         with a valid API key (SHA-256 of the key, KV lookups of key, tenant and agent), full body\n\
         validation, the rate-limit admission, the call record, the queue entry and the `call.queued`\n\
         event, plus one Standard Webhooks signature (HMAC-SHA256) of that event's payload. Each\n\
         request starts from the same store contents (what the previous one added is dropped outside\n\
         the timed region). Built with the Worker's release profile (`opt-level = \"s\"`, LTO) for\n\
         wasm32-wasip1 and run in wasmtime {wasmtime} (Cranelift, Python embedding), and natively.\n\
         Each process: {cpu_warmup} warm-up requests, then {cpu_rounds} rounds of {cpu_iters}, timed with\n\
         `std::time::Instant` one request at a time. {cpu_runs} processes per build, alternating; the table\n\
         gives the median over processes of each one's median request (p50; handle = `api::handle`,\n\
         sign = the signature) and of its mean per request (median of its rounds' means), then each\n\
         process's p50. The p50 is the estimate to use; the mean also counts every preemption by other work\n\
         on this small shared machine, which only inflates the requests it hits.\n\n\
         {cpu_table}\n\
         Caveats: production runs this wasm in V8 (Liftoff, then TurboFan) inside workerd, not\n\
         wasmtime/Cranelift, so the wasm figure is an estimate of the same order, not the billed CPU\n\
         time. KV, the Durable Objects and the Queue are in-memory here: no storage I/O, no RPC, no\n\
         JS<->wasm crossings and no glue conversion of the HTTP request are included, while the pure\n\
         logic of the rate limiter and the dispatch queue (which in production runs in their own\n\
         Durable Objects) is. The wasm build has no SIMD or SHA instructions; native SHA-256 may use\n\
         the CPU's SHA extensions, which widens the signing ratio.\n\n\
         {media}\
         {local}\
         {cloud}",
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        runs = results.values().next().map(Vec::len).unwrap_or(0),
        calls = results.values().next().and_then(|r| r.first()).map(Vec::len).unwrap_or(0),
        wasmtime = bootstrap::WASMTIME_PY_VERSION,
        cpu_warmup = CPU_WARMUP,
        cpu_rounds = CPU_ROUNDS,
        cpu_iters = CPU_ITERATIONS,
        cpu_runs = cpu.native.len(),
        cpu_table = cpu_table(cpu),
        media = crate::bench_media::report(media),
        invite = crate::bench_calls::report_invite(calls),
        local = crate::bench_calls::report_local(calls, &media.load),
        cloud = crate::bench_calls::report_cloud(calls),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_calls::{CallsBench, FirstAudio, FirstAudioCall, LocalLoad};
    use crate::bench_media::{LatencyRun, LoadRun, MediaBench};

    fn load(calls: usize, cpu: f64) -> LoadRun {
        LoadRun {
            calls,
            cpu_pct: cpu * calls as f64,
            idle_cpu_pct: 0.0,
            idle_rss_kib: 12_000.0,
            rss_kib: 12_000.0 + 100.0 * calls as f64,
            died: false,
        }
    }

    /// Every section and plot from made-up figures: the report's shape, not its numbers.
    #[test]
    fn report_and_plots_from_synthetic_figures() {
        let samples = |base: f64| (0..30).map(|i| base + (i % 7) as f64).collect::<Vec<f64>>();
        let mut results = BTreeMap::new();
        results.insert("http1", vec![samples(30.0), samples(31.0), samples(32.0)]);
        results.insert("h3", vec![samples(33.0), samples(34.0), samples(35.0)]);
        let run = CpuRun {
            p50: 30_000.0,
            p50_handle: 27_000.0,
            p50_sign: 3_000.0,
            mean: 40_000.0,
        };
        let cpu = CpuBench {
            native: vec![run; 3],
            wasm: vec![run; 3],
        };
        let lat = |loss: f64| LatencyRun {
            loss_pct: loss,
            p50_ms: 40.0,
            p99_ms: 60.0,
            measured: 3,
            dropped: 0,
            samples: vec![40.0, 40.5, 60.0],
        };
        let media = MediaBench {
            load: vec![load(1, 0.8), load(10, 0.3)],
            latency: vec![lat(0.0), lat(1.0)],
        };
        let fa = FirstAudioCall {
            audio_ms: 260.0,
            nonzero_ms: 20.0,
            ok_to_rtp_ms: Some(1.0),
        };
        let calls = CallsBench {
            invite: vec![
                ("http1".into(), vec![samples(40.0)]),
                ("h3".into(), vec![samples(42.0)]),
            ],
            first_audio: FirstAudio {
                cold: Some(fa),
                calls: vec![fa; 3],
                greeting_lead_ms: Some(257.0),
            },
            local: LocalLoad {
                runs: vec![load(1, 5.0), load(10, 4.0)],
                line_s: 3.1,
                user_turns: vec![3, 3],
                failed: vec![],
            },
            local_error: None,
            cloud_first_audio: Some((
                FirstAudio {
                    cold: Some(fa),
                    calls: vec![fa; 3],
                    greeting_lead_ms: None,
                },
                200,
            )),
            cloud_error: None,
        };
        let throughput = EdgeThroughput {
            empty: vec![(50.0, 160.0, 250.0)],
            stored: vec![(48.0, 165.0, 260.0)],
            stored_calls: 10_000,
            seed_secs: 200.0,
        };
        let text = report_text(&results, &throughput, &cpu, &media, &calls);
        assert!(text.contains("**0.96x**"), "the ratio is stated");
        for needle in [
            "## Lease latency",
            "## API -> INVITE at the trunk",
            "## Answer -> first AI audio (local engine)",
            "## Local engine: CPU and memory per concurrent call",
            "## Answer -> first AI audio (cloud engine)",
            "the sidecar's share) | 60.0 |",
            "](bench/lease_latency.png)",
            "](bench/api_invite.png)",
            "](bench/media_latency.png)",
            "](bench/first_audio.png)",
            "](bench/cpu_per_call.png)",
        ] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
        assert!(!text.contains("Not yet measured"));
        let dir = std::env::temp_dir().join(format!("xtask-bench-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_plots(&dir, &results, &media, &calls).unwrap();
        for f in [
            "lease_latency",
            "api_invite",
            "media_latency",
            "first_audio",
            "cpu_per_call",
        ] {
            let bytes = std::fs::read(dir.join(format!("{f}.png"))).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{f}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
