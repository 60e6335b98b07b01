//! `cargo xtask bench`: measured figures, written to docs/bench.md.
//!
//! Lease latency: time from sending `POST /v1/calls` to the sidecar having
//! the offer (its "offer accepted" log line, same machine clock), over the
//! HTTP/1.1 carrier straight to `wrangler dev` and over HTTP/3 through caddy.
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
use voxline_e2e::{json, make_pki, start_caddy, Edge, EdgeOptions, Sidecar};

const RUNS: usize = 3;
const CALLS_PER_RUN: usize = 40;

fn now_ms_f() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

/// When the sidecar logged taking the offer for `call_id`, in unix ms.
fn offer_seen_at(log: &str, call_id: &str) -> Option<f64> {
    log.lines().filter(|l| l.contains("offer accepted") && l.contains(call_id)).find_map(|l| {
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

/// One run: `CALLS_PER_RUN` calls placed one after another; returns latencies in ms.
fn lease_run(edge: &Edge, key: &str, sidecar: &Sidecar) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for i in 0..CALLS_PER_RUN + 3 {
        let phone = format!("+1415556{:04}", LEASE_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
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
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into()))).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok((all.len() as f64 / elapsed, all))
}

/// Processes per engine; each reports the median of its rounds' means.
const CPU_RUNS: usize = 5;
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
    cmd.args(["--iterations", &CPU_ITERATIONS.to_string(), "--rounds", &CPU_ROUNDS.to_string(), "--warmup", &CPU_WARMUP.to_string()]);
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.current_dir(root()).output().map_err(|e| format!("`{shown}` could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("`{shown}` printed {line:?}: {e}"))?;
    let f = |k: &str| v[k].as_f64().ok_or_else(|| format!("`{shown}`: no {k} in {line}"));
    Ok(CpuRun { p50: f("p50_ns_per_request")?, p50_handle: f("p50_handle_ns")?, p50_sign: f("p50_sign_ns")?, mean: f("ns_per_request")? })
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
    step("edge CPU bench build (wasm32-wasip1)", || build(Some("wasm32-wasip1")))?;
    let dir = cargo_target_dir();
    let native_bin = dir.join("release/voxline-edge-bench");
    let wasm = dir.join("wasm32-wasip1/release/voxline-edge-bench.wasm");
    let runner = root().join("edge/bench-wasm/run_wasmtime.py");
    let mut bench = CpuBench::default();
    for r in 0..CPU_RUNS {
        let (n, w) = step(&format!("edge CPU per request, run {}", r + 1), || {
            let n = cpu_run(&mut Command::new(&native_bin))?;
            let w = cpu_run(Command::new(bootstrap::venv_python()).arg(&runner).arg(&wasm))?;
            Ok((n, w))
        })?;
        println!("  p50 per request: native {:.1} us, wasmtime {:.1} us, ratio {:.2}", n.p50 / 1e3, w.p50 / 1e3, w.p50 / n.p50);
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
    let per_run = |v: &[CpuRun]| v.iter().map(|r| format!("{:.1}", r.p50 / 1e3)).collect::<Vec<_>>().join(" / ");
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
    step("media sidecar build (release)", || run(Command::new("cargo").args(["build", "--release", "-p", "voxline-media-sidecar"])))?;
    let mut opts = EdgeOptions::fresh("bench");
    let dir = opts.state_dir.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| root().join("target/e2e/bench"));
    // A stopped sidecar's last long-poll stays open in the queue until this
    // wait ends; keep it short so the next carrier's sidecar is not starved.
    opts.vars = vec![("DISPATCH_MAX_WAIT_MS".into(), "2000".into())];
    let edge = step("start edge", || Edge::start(opts))?;
    let tenant = edge.provision_tenant("bench");
    let pki = make_pki(&dir);
    let caddy = start_caddy(&dir, &edge.base, &pki);
    let release_bin = cargo_target_dir().join("release/voxline-media-sidecar");
    let carriers = [
        ("http1", edge.base.clone(), Vec::new()),
        ("h3", format!("https+h3://127.0.0.1:{}", caddy.port), vec![("VOXLINE_CA_CERT", pki.ca.display().to_string())]),
    ];
    std::env::set_var("VOXLINE_SIDECAR_BIN", &release_bin);
    let mut results: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (name, url, env) in &carriers {
        let mut env: Vec<(&str, String)> = env.clone();
        env.push(("VOXLINE_LEASE_WAIT_MS", "20000".into()));
        env.push(("VOXLINE_CAPACITY", "64".into()));
        let sidecar = Sidecar::start(&edge, &dir, &format!("bench-{name}"), url, &env, 0.05);
        for r in 0..RUNS {
            let mut lat = step(&format!("lease latency over {name}, run {}", r + 1), || lease_run(&edge, &tenant.key, &sidecar))?;
            lat.sort_by(|a, b| a.total_cmp(b));
            println!("  {name}: p50 {:.1} ms, p99 {:.1} ms", percentile(&lat, 0.5), percentile(&lat, 0.99));
            results.entry(name).or_default().push((percentile(&lat, 0.5), percentile(&lat, 0.99)));
        }
        drop(sidecar);
        std::thread::sleep(Duration::from_millis(2_500));
    }
    drop(caddy);
    // The media sidecar placing real calls (SIP to sipp, RTP, echo engine).
    // Before the throughput runs: those leave thousands of calls queued in
    // the region, which these sidecars would lease first.
    let media = crate::bench_media::media_bench(&edge, &release_bin, &dir)?;
    // Throughput: a tenant whose limits do not get in the way.
    let busy = edge.provision_tenant("throughput");
    let limits = json!({"rate_limits": {"per_key": {"limit": 1_000_000, "window_seconds": 60},
                                        "per_ip": {"limit": 1_000_000, "window_seconds": 60}}});
    let r = edge.admin("PATCH", &format!("/admin/tenants/{}", busy.id), Some(&limits));
    if r.status != 200 {
        return Err(format!("raising the bench tenant's limits: {} {}", r.status, r.text));
    }
    let mut throughput = Vec::new();
    for run in 0..RUNS {
        let (rps, lat) = step(&format!("edge throughput, run {}", run + 1), || throughput_run(&edge, &busy.key, run))?;
        println!("  {rps:.0} req/s, p50 {:.1} ms, p99 {:.1} ms", percentile(&lat, 0.5), percentile(&lat, 0.99));
        throughput.push((rps, percentile(&lat, 0.5), percentile(&lat, 0.99)));
    }
    drop(edge);
    write_report(&results, &throughput, &cpu, &media)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

fn write_report(
    results: &BTreeMap<&str, Vec<(f64, f64)>>,
    throughput: &[(f64, f64, f64)],
    cpu: &CpuBench,
    media: &crate::bench_media::MediaBench,
) -> Result<(), String> {
    let per_run = |f: fn(&(f64, f64, f64)) -> f64, digits: usize| {
        throughput.iter().map(|r| format!("{:.*}", digits, f(r))).collect::<Vec<_>>().join(" / ")
    };
    let throughput_table = format!(
        "| {:.0} | {:.1} | {:.1} | {} | {} | {} |\n",
        median(throughput.iter().map(|r| r.0).collect()),
        median(throughput.iter().map(|r| r.1).collect()),
        median(throughput.iter().map(|r| r.2).collect()),
        per_run(|r| r.0, 0),
        per_run(|r| r.1, 1),
        per_run(|r| r.2, 1),
    );
    let mut rows = String::new();
    for (carrier, runs) in results {
        let p50s: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.0)).collect();
        let p99s: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.1)).collect();
        rows.push_str(&format!(
            "| {carrier} | {:.1} | {:.1} | {} | {} |\n",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
            p50s.join(" / "),
            p99s.join(" / "),
        ));
    }
    let report = format!(
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
         | carrier | p50 ms (median) | p99 ms (median) | p50 per run | p99 per run |\n|---|---|---|---|---|\n{rows}\n\
         `http1` is HTTP/1.1 keep-alive straight to `wrangler dev`; `h3` is HTTP/3 over QUIC to\n\
         caddy, which proxies to `wrangler dev` over HTTP/1.1 (as Cloudflare's edge terminates\n\
         QUIC in production), so it includes one extra local hop.\n\n\
         ## Edge throughput: POST /v1/calls\n\n\
         {threads} client threads (HTTP/1.1 keep-alive) each POST {reqs} calls to distinct numbers\n\
         as fast as answers come back, against one `wrangler dev` (one workerd process) on the same\n\
         2-core machine as the clients. Each request authenticates (KV), validates, checks the rate\n\
         limits (Durable Object), stores the record (KV), queues the call (Durable Object) and queues\n\
         a `call.queued` webhook event. {runs} runs; medians, then per-run values.\n\n\
         | req/s | p50 ms | p99 ms | req/s per run | p50 per run | p99 per run |\n|---|---|---|---|---|---|\n{throughput_table}\n\
         ## Edge CPU per request: auth + validation + signing, wasm vs native\n\
         \n\
         workerd reports no per-request CPU time locally, so `edge/bench-wasm` runs the Worker's own\n\
         pure request handling (`service::handle`) over the in-memory KV, dispatcher and traffic ports\n\
         (the `bench-support` feature, never in the Worker build). One request is a `POST /v1/calls`\n\
         with a valid API key (SHA-256 of the key, KV lookups of key, tenant and agent), full body\n\
         validation, the rate-limit admission, the call record, the queue entry and the `call.queued`\n\
         event, plus one Standard Webhooks signature (HMAC-SHA256) of that event's payload. Each\n\
         request starts from the same store contents (what the previous one added is dropped outside\n\
         the timed region). Built with the Worker's release profile (`opt-level = \"s\"`, LTO) for\n\
         wasm32-wasip1 and run in wasmtime {wasmtime} (Cranelift, Python embedding), and natively.\n\
         Each process: {cpu_warmup} warm-up requests, then {cpu_rounds} rounds of {cpu_iters}, timed with\n\
         `std::time::Instant` one request at a time. {cpu_runs} processes per build, alternating; the table\n\
         gives the median over processes of each one's median request (p50; handle = `service::handle`,\n\
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
         Not yet measured: answer-to-first-AI-audio.\n",
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        runs = RUNS,
        calls = CALLS_PER_RUN,
        threads = THROUGHPUT_THREADS,
        reqs = THROUGHPUT_REQUESTS,
        wasmtime = bootstrap::WASMTIME_PY_VERSION,
        cpu_warmup = CPU_WARMUP,
        cpu_rounds = CPU_ROUNDS,
        cpu_iters = CPU_ITERATIONS,
        cpu_runs = CPU_RUNS,
        cpu_table = cpu_table(cpu),
        media = crate::bench_media::report(media),
    );
    let path = root().join("docs/bench.md");
    std::fs::write(&path, report).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
