//! `cargo xtask bench`: measured figures, written to docs/bench.md.
//!
//! Lease latency: time from sending `POST /v1/calls` to the sidecar having
//! the offer (its "offer accepted" log line, same machine clock), over the
//! HTTP/1.1 carrier straight to `wrangler dev` and over HTTP/3 through caddy.
//! Several runs; each run reports p50/p99, and the report gives their medians.

use crate::{bootstrap, build_edge, root, run, step};
use std::collections::BTreeMap;
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

/// One run: `CALLS_PER_RUN` calls placed one after another; returns latencies in ms.
fn lease_run(edge: &Edge, key: &str, sidecar: &Sidecar) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for i in 0..CALLS_PER_RUN + 3 {
        let t0 = now_ms_f();
        let r = edge.call("POST", "/v1/calls", key, Some(&json!({"phone": "+14155550300"})));
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

pub fn run_bench() -> Result<(), String> {
    step("bootstrap", bootstrap::ensure_all)?;
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
    let release_bin = root().join("target/release/voxline-media-sidecar");
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
    write_report(&results, &throughput)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

fn write_report(results: &BTreeMap<&str, Vec<(f64, f64)>>, throughput: &[(f64, f64, f64)]) -> Result<(), String> {
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
         Not yet measured: SIP/RTP CPU and memory per call, media latency, answer-to-first-AI-audio,\n\
         and the wasm CPU cost per request (workerd exposes no per-request CPU time locally).\n",
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        runs = RUNS,
        calls = CALLS_PER_RUN,
        threads = THROUGHPUT_THREADS,
        reqs = THROUGHPUT_REQUESTS,
    );
    let path = root().join("docs/bench.md");
    std::fs::write(&path, report).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
