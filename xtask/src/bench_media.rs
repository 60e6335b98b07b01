//! `cargo xtask bench` (media part): the release sidecar placing real calls.
//!
//! Load: N calls placed at once through the API to a sipp UAS that answers
//! every call (PCMU), echoes all RTP (`-rtp_echo`) and hangs up after
//! `HOLD_MS`; the agent's engine is `echo`, so each call carries 50 packets/s
//! each way, decoded, jitter-buffered, echoed and re-encoded by the sidecar.
//! While all N calls are up, the sidecar process's CPU time
//! (`/proc/<pid>/stat` utime+stime) is sampled over `WINDOW_MS` and its RSS
//! (`/proc/<pid>/status` VmRSS) in the middle of that window.
//!
//! Latency: one real call (API -> edge -> sidecar -> SIP to sipp), where sipp
//! only does the SIP: its answer's SDP points at a tiny RTP peer in this
//! process. The peer sends a PCMU packet every 20 ms whose payload carries its
//! sequence number (mu-law codes that survive decode + encode unchanged) and
//! times when the echo engine's copy comes back. Optionally it drops 1% of
//! what it sends (loss on the way to the sidecar, which its jitter buffer
//! conceals). A full call rather than driving `MediaSession` in-process: it
//! measures the sidecar binary as deployed (its tokio runtime, the call task,
//! the engine hop), and sipp already speaks the SIP, so no SIP code is needed
//! here.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voxline_e2e::{json, repo_root, Edge, TestTenant};
use voxline_testkit::free_tcp_udp_port;

/// How long sipp holds each load call before its BYE.
const HOLD_MS: u64 = 12_000;
/// CPU sampling window, inside the hold, once all calls are answered.
const WINDOW_MS: u64 = 6_000;
/// Idle CPU sampling window, before the calls.
const IDLE_MS: u64 = 3_000;
const LOAD_NS_FULL: &[usize] = &[1, 10, 25, 50, 100];
const LOAD_NS_QUICK: &[usize] = &[1, 10];
/// Packets whose round trip is timed per latency run (after a 1 s warm-up).
const LATENCY_PACKETS: usize = 500;

/// `VOXLINE_BENCH_QUICK=1`: fewer runs and calls everywhere, for iterating
/// on the bench itself (figures then are not for docs/bench.md).
pub fn quick() -> bool {
    std::env::var("VOXLINE_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// `full`, or `quick` under `VOXLINE_BENCH_QUICK=1`.
pub fn count(full: usize, quick_n: usize) -> usize {
    if quick() {
        quick_n
    } else {
        full
    }
}

pub fn load_ns() -> &'static [usize] {
    if quick() {
        LOAD_NS_QUICK
    } else {
        LOAD_NS_FULL
    }
}

pub fn load_runs() -> usize {
    count(3, 1)
}

pub fn latency_runs() -> usize {
    count(5, 1)
}

#[derive(Debug, Clone, Copy)]
pub struct LoadRun {
    pub calls: usize,
    /// Whole-process CPU, percent of one core.
    pub cpu_pct: f64,
    /// The same sidecar before the calls (its lease long-poll only).
    pub idle_cpu_pct: f64,
    pub idle_rss_kib: f64,
    pub rss_kib: f64,
    /// The sidecar process died after the sampling window (as the calls
    /// ended); its figures are kept, the run is reported as such.
    pub died: bool,
}

impl LoadRun {
    pub fn cpu_per_call(&self) -> f64 {
        (self.cpu_pct - self.idle_cpu_pct).max(0.0) / self.calls as f64
    }
    /// One progress line: process CPU and RSS, idle and per call.
    pub fn summary(&self) -> String {
        format!(
            "{} calls: {:.1}% CPU (idle {:.1}%; {:.2}% per call), RSS {:.0} KiB idle -> {:.0} KiB ({:.0} KiB per call)",
            self.calls,
            self.cpu_pct,
            self.idle_cpu_pct,
            self.cpu_per_call(),
            self.idle_rss_kib,
            self.rss_kib,
            self.kib_per_call()
        )
    }

    pub fn kib_per_call(&self) -> f64 {
        (self.rss_kib - self.idle_rss_kib) / self.calls as f64
    }
}

#[derive(Debug, Clone)]
pub struct LatencyRun {
    pub loss_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub measured: usize,
    pub dropped: usize,
    /// Every timed round trip (ms), for the plots.
    pub samples: Vec<f64>,
}

pub(crate) struct Proc {
    child: Child,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
    /// SIGTERM, then SIGKILL after 5 s.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant whose limits never get in the way, with the `echo` engine.
pub fn echo_tenant(edge: &Edge) -> Result<TestTenant, String> {
    bench_tenant(edge, "media-bench", "echo", None)
}

/// A tenant whose limits never get in the way; its default agent uses
/// `engine` (and `prompt` as its system prompt, when given).
pub fn bench_tenant(
    edge: &Edge,
    name: &str,
    engine: &str,
    prompt: Option<&str>,
) -> Result<TestTenant, String> {
    let t = edge.provision_tenant(name);
    let limits = json!({"rate_limits": {"per_key": {"limit": 1_000_000, "window_seconds": 60},
                                        "per_ip": {"limit": 1_000_000, "window_seconds": 60},
                                        "per_number": {"limit": 1_000_000, "window_seconds": 60}}});
    let r = edge.admin("PATCH", &format!("/admin/tenants/{}", t.id), Some(&limits));
    if r.status != 200 {
        return Err(format!(
            "raising the media bench tenant's limits: {} {}",
            r.status, r.text
        ));
    }
    let mut agent = json!({"default_engine": engine});
    if let Some(p) = prompt {
        agent["system_prompt"] = json!(p);
    }
    let r = edge.admin(
        "PATCH",
        &format!("/admin/tenants/{}/agents/{}", t.id, t.agent_id),
        Some(&agent),
    );
    if r.status != 200 {
        return Err(format!(
            "setting the {engine} engine: {} {}",
            r.status, r.text
        ));
    }
    Ok(t)
}

/// The release sidecar with one trunk (sipp on `trunk_port`), `capacity` calls.
pub(crate) fn start_sidecar(
    edge: &Edge,
    bin: &Path,
    dir: &Path,
    id: &str,
    trunk_port: u16,
    capacity: usize,
) -> Result<Proc, String> {
    start_sidecar_with(
        edge,
        bin,
        dir,
        id,
        &edge.base,
        &[],
        trunk_port,
        capacity,
        1000,
    )
}

/// As [`start_sidecar`], leasing from `edge_url` (e.g. `https+h3://` via
/// caddy) with `env` added and the given lease long-poll wait.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_sidecar_with(
    edge: &Edge,
    bin: &Path,
    dir: &Path,
    id: &str,
    edge_url: &str,
    env: &[(&str, String)],
    trunk_port: u16,
    capacity: usize,
    lease_wait_ms: u32,
) -> Result<Proc, String> {
    let cred = edge.admin(
        "POST",
        "/admin/sidecars",
        Some(&json!({"sidecar_id": id, "region": "local"})),
    );
    if cred.status != 201 {
        return Err(format!(
            "sidecar credentials: {} {}",
            cred.status, cred.text
        ));
    }
    let config = format!(
        "edge_url = \"{edge_url}\"\nsidecar_id = \"{id}\"\nregion = \"local\"\ncapacity = {capacity}\nlease_wait_ms = {lease_wait_ms}\n\n\
         [telephony]\nbind_ip = \"127.0.0.1\"\nrtp_port_min = 30000\nrtp_port_max = 30999\nring_timeout_seconds = 20\n\n\
         [[telephony.trunks]]\nname = \"sipp\"\nhost = \"127.0.0.1\"\nport = {trunk_port}\nfrom_number = \"+15550001111\"\n\n\
         [engine]\nallowed_hosts = [\"127.0.0.1\"]\n"
    );
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let log = dir.join(format!("{id}.log"));
    let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .env(
            "VOXLINE_SIDECAR_SECRET",
            cred.json["secret"].as_str().unwrap_or_default(),
        )
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let p = Proc { child, log };
    let until = Instant::now() + Duration::from_secs(15);
    while !p.log().contains("registered with the edge") {
        if Instant::now() > until {
            return Err(format!("sidecar {id} did not register:\n{}", p.log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(p)
}

/// Where sipp's answer points the sidecar's RTP, and what sipp sends.
#[derive(Clone, Copy)]
pub(crate) enum SippMedia<'a> {
    /// A peer elsewhere (in this process) on that port; sipp sends no RTP.
    Peer(u16),
    /// sipp's own media port, echoing every packet back (`-rtp_echo`).
    Echo(u16),
    /// sipp's own media port, playing this pcap (RTP) once the call is answered.
    Pcap(u16, &'a Path),
}

/// sipp answering `calls` calls with the hold-then-BYE scenario
/// (`tests/sipp/bench-uas-pcap.xml` when it plays a pcap).
/// How long the bench's callee rings between 180 and 200 (ms):
/// `VOXLINE_BENCH_RING_MS`, default 1000 (a real phone rings for seconds;
/// the sidecar prepares the call's engine meanwhile).
pub fn ring_ms() -> u64 {
    std::env::var("VOXLINE_BENCH_RING_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn ring_pause() -> String {
    match ring_ms() {
        0 => String::new(),
        ms => format!("<pause milliseconds=\"{ms}\"/>"),
    }
}

pub(crate) fn start_sipp(
    dir: &Path,
    name: &str,
    port: u16,
    calls: usize,
    hold_ms: u64,
    media: SippMedia,
    extra: &[&str],
) -> Result<Proc, String> {
    let file = if matches!(media, SippMedia::Pcap(..)) {
        "tests/sipp/bench-uas-pcap.xml"
    } else {
        "tests/sipp/uas_hold_bye.xml"
    };
    let template =
        std::fs::read_to_string(repo_root().join(file)).map_err(|e| format!("{file}: {e}"))?;
    let (media_port, pcap) = match media {
        SippMedia::Peer(p) => (p.to_string(), String::new()),
        SippMedia::Echo(_) => ("[media_port]".to_string(), String::new()),
        SippMedia::Pcap(_, f) => ("[media_port]".to_string(), f.display().to_string()),
    };
    let scenario = dir.join(format!("{name}.xml"));
    std::fs::write(
        &scenario,
        template
            .replace("MEDIA_PORT", &media_port)
            .replace("HOLD_MS", &hold_ms.to_string())
            .replace("<!-- RING_PAUSE -->", &ring_pause())
            .replace("PCAP_FILE", &pcap),
    )
    .map_err(|e| e.to_string())?;
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(voxline_testkit::SIPP.path()?);
    cmd.arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    match media {
        SippMedia::Peer(_) => {}
        SippMedia::Echo(mp) => {
            cmd.args(["-mi", "127.0.0.1", "-mp", &mp.to_string(), "-rtp_echo"]);
        }
        SippMedia::Pcap(mp, _) => {
            cmd.args(["-mi", "127.0.0.1", "-mp", &mp.to_string()]);
        }
    }
    cmd.args(extra);
    cmd.args([
        "-m",
        &calls.to_string(),
        "-nostdin",
        "-timeout",
        "90s",
        "-timeout_error",
    ])
    .arg("-trace_err")
    .arg("-error_file")
    .arg(dir.join(format!("{name}-errors.log")))
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(file.try_clone().map_err(|e| e.to_string())?)
    .stderr(file);
    let child = cmd
        .spawn()
        .map_err(|e| format!("sipp (Debian sip-tester): {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Proc { child, log })
}

pub(crate) fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("bad /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or("bad /proc stat field")
    };
    Ok(num(14)? + num(15)?)
}

pub(crate) fn rss_kib(pid: u32) -> Result<f64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

pub(crate) fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Places one call per phone, all at once; returns their ids in order.
pub(crate) fn place_calls(
    edge: &Edge,
    key: &str,
    phones: &[String],
) -> Result<Vec<String>, String> {
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = phones
            .iter()
            .map(|phone| {
                s.spawn(move || {
                    let r = edge.call("POST", "/v1/calls", key, Some(&json!({"phone": phone})));
                    match r.json["id"].as_str() {
                        Some(id) if r.status == 201 => Ok(id.to_string()),
                        _ => Err(format!("POST /v1/calls: {} {}", r.status, r.text)),
                    }
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

pub(crate) fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// What a load run's callee does and how long it is timed.
#[derive(Clone, Copy)]
pub(crate) struct LoadSpec<'a> {
    /// Names the run's files and sidecar; also keeps phone numbers apart.
    pub name: &'a str,
    /// Digits after `+1` for the numbers called (distinct per spec).
    pub prefix: &'a str,
    /// `None`: sipp echoes; `Some(pcap)`: sipp plays that pcap.
    pub pcap: Option<&'a Path>,
    pub hold_ms: u64,
    /// Wait after all calls are answered before sampling (engines starting).
    pub settle_ms: u64,
    pub window_ms: u64,
}

/// The echo-engine load of the media section.
const ECHO_LOAD: LoadSpec<'static> = LoadSpec {
    name: "load",
    prefix: "556",
    pcap: None,
    hold_ms: HOLD_MS,
    settle_ms: 500,
    window_ms: WINDOW_MS,
};

/// One load run: a fresh sidecar, `n` calls at once, CPU and RSS while all are up.
pub fn load_run(
    edge: &Edge,
    tenant: &TestTenant,
    bin: &Path,
    dir: &Path,
    n: usize,
    run: usize,
) -> Result<LoadRun, String> {
    load_run_with(edge, tenant, bin, dir, n, run, &ECHO_LOAD).map(|r| r.0)
}

/// A load run as `spec` says; also returns the calls' ids.
pub(crate) fn load_run_with(
    edge: &Edge,
    tenant: &TestTenant,
    bin: &Path,
    dir: &Path,
    n: usize,
    run: usize,
    spec: &LoadSpec,
) -> Result<(LoadRun, Vec<String>), String> {
    let (name, hold_ms, window_ms) = (spec.name, spec.hold_ms, spec.window_ms);
    let sipp_port = free_tcp_udp_port();
    let media_port = free_tcp_udp_port() & !1;
    let media = match spec.pcap {
        Some(p) => SippMedia::Pcap(media_port, p),
        None => SippMedia::Echo(media_port),
    };
    let mut sipp = start_sipp(
        dir,
        &format!("{name}-sipp-{n}-{run}"),
        sipp_port,
        n,
        hold_ms,
        media,
        &[],
    )?;
    let id = format!("{name}-{n}-{run}");
    let sidecar = start_sidecar(edge, bin, dir, &id, sipp_port, n.max(2))?;
    let pid = sidecar.pid();
    std::thread::sleep(Duration::from_millis(1_000));
    let idle = rss_kib(pid)?;
    let hz = clock_ticks_per_sec();
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    std::thread::sleep(Duration::from_millis(IDLE_MS));
    let idle_cpu_pct = (cpu_ticks(pid)? - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let phones: Vec<String> = (0..n)
        .map(|i| format!("+1{}{run:02}{n:03}{i:04}", spec.prefix))
        .collect();
    let ids = place_calls(edge, &tenant.key, &phones)?;
    let until = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let log = sidecar.log();
        if count_lines(&log, "media negotiated") >= n {
            break log;
        }
        if Instant::now() > until {
            return Err(format!(
                "only {} of {n} calls answered; sidecar log tail:\n{}",
                count_lines(&log, "media negotiated"),
                tail(&log, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if count_lines(&first, "media stopped") > 0 {
        return Err(format!("a call ended before all {n} were up: placing them took too long for a {hold_ms} ms hold"));
    }
    std::thread::sleep(Duration::from_millis(spec.settle_ms));
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    std::thread::sleep(Duration::from_millis(window_ms / 2));
    let rss = rss_kib(pid)?;
    std::thread::sleep(Duration::from_millis(window_ms / 2));
    let (c1, t1) = (cpu_ticks(pid)?, Instant::now());
    let log = sidecar.log();
    if count_lines(&log, "media stopped") > 0 {
        return Err(format!("calls ended inside the sampling window (a {hold_ms} ms hold is too short for {n} calls); see {}", sidecar.log.display()));
    }
    let cpu_pct = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64() * 100.0;
    let sipp_end = sipp.wait_exit(Duration::from_secs(hold_ms / 1000 + 30));
    let mut sidecar = sidecar;
    // A sidecar that crashed as the calls ended fails sipp's BYEs; the
    // window's figures stand, and the run says it died.
    let died = sidecar.child.try_wait().ok().flatten();
    if let Some(status) = died {
        println!(
            "  the sidecar died ({status}) after the sampling window; log tail:\n{}",
            tail(&sidecar.log(), 3)
        );
    } else {
        match sipp_end {
            Some(s) if s.success() => {}
            other => {
                return Err(format!(
                    "sipp ({n} calls) did not finish cleanly: {other:?}; see {}",
                    sipp.log.display()
                ))
            }
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    while count_lines(&sidecar.log(), "call released") < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let released = count_lines(&sidecar.log(), "call released");
    let log_path = sidecar.log.display().to_string();
    sidecar.stop();
    drop(sipp);
    // A stopped sidecar's last long-poll stays open in the queue for up to
    // the edge's max wait (2 s in the bench): let it lapse.
    std::thread::sleep(Duration::from_millis(2_500));
    // Calls whose task never ended after sipp's BYE were stuck (not working)
    // during the window: the figures would be of idle calls.
    if died.is_none() && released < n {
        return Err(format!("only {released} of {n} calls were released after sipp hung up: call tasks stuck; see {log_path}"));
    }
    Ok((
        LoadRun {
            calls: n,
            cpu_pct,
            idle_cpu_pct,
            idle_rss_kib: idle,
            rss_kib: rss,
            died: died.is_some(),
        },
        ids,
    ))
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Mu-law codes 0x20..=0x2F and 0x55 decode and re-encode to themselves.
fn tag(seq: u16) -> [u8; 5] {
    [
        0x20 | (seq >> 12) as u8 & 0xF,
        0x20 | (seq >> 8) as u8 & 0xF,
        0x20 | (seq >> 4) as u8 & 0xF,
        0x20 | seq as u8 & 0xF,
        0x55,
    ]
}

fn untag(p: &[u8]) -> Option<u16> {
    if p.len() < 5 || p[4] != 0x55 || !p[..4].iter().all(|b| b & 0xF0 == 0x20) {
        return None;
    }
    Some(
        p[..4]
            .iter()
            .fold(0u16, |acc, b| (acc << 4) | u16::from(b & 0xF)),
    )
}

/// One latency run: one call, the RTP peer here, `loss` of sent packets dropped.
pub fn latency_run(
    edge: &Edge,
    tenant: &TestTenant,
    bin: &Path,
    dir: &Path,
    loss: f64,
    run: usize,
) -> Result<LatencyRun, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let rtp_port = sock.local_addr().map_err(|e| e.to_string())?.port();
    let sipp_port = free_tcp_udp_port();
    let name = format!("lat-{}-{run}", (loss * 100.0) as u32);
    let mut sipp = start_sipp(
        dir,
        &format!("{name}-sipp"),
        sipp_port,
        1,
        20 * (LATENCY_PACKETS as u64 + 50) + 3_000,
        SippMedia::Peer(rtp_port),
        &[],
    )?;
    let sidecar = start_sidecar(edge, bin, dir, &name, sipp_port, 2)?;
    let phone = format!("+1557{run:02}{:03}0001", (loss * 100.0) as u32);
    place_calls(edge, &tenant.key, &[phone])?;
    // The sidecar's first packet tells where its RTP socket is.
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let (_, remote) = sock
        .recv_from(&mut buf)
        .map_err(|e| format!("no RTP from the sidecar: {e}"))?;
    let total = LATENCY_PACKETS + 50;
    let sent_at: Vec<std::sync::OnceLock<Instant>> =
        (0..total).map(|_| std::sync::OnceLock::new()).collect();
    let mut back: Vec<Option<Instant>> = vec![None; total];
    let mut dropped = 0;
    let start = Instant::now() + Duration::from_millis(20);
    std::thread::scope(|s| -> Result<(), String> {
        let sender = s.spawn(|| -> Result<usize, String> {
            let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ (run as u64 + 1);
            let mut dropped = 0;
            for (i, sent) in sent_at.iter().enumerate() {
                let at = start + Duration::from_millis(20 * i as u64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng % 10_000) as f64 / 10_000.0 < loss && i >= 50 {
                    dropped += 1;
                    continue;
                }
                let seq = i as u16;
                let mut pkt = Vec::with_capacity(172);
                pkt.extend_from_slice(&[0x80, 0x00]);
                pkt.extend_from_slice(&seq.to_be_bytes());
                pkt.extend_from_slice(&((i as u32) * 160).to_be_bytes());
                pkt.extend_from_slice(&0x5EED_0001u32.to_be_bytes());
                let mut payload = [0xFFu8; 160];
                payload[..5].copy_from_slice(&tag(seq));
                pkt.extend_from_slice(&payload);
                let _ = sent.set(Instant::now());
                sock.send_to(&pkt, remote).map_err(|e| e.to_string())?;
            }
            Ok(dropped)
        });
        let deadline = start + Duration::from_millis(20 * total as u64 + 1_000);
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        while Instant::now() < deadline {
            let Ok((len, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let now = Instant::now();
            if len < 12 + 5 || buf[1] & 0x7F != 0 {
                continue;
            }
            let cc = (buf[0] & 0x0F) as usize;
            if let Some(seq) = untag(&buf[12 + 4 * cc..len]) {
                let i = seq as usize;
                if i < total && back[i].is_none() {
                    back[i] = Some(now);
                }
            }
        }
        dropped = sender.join().map_err(|_| "sender panicked".to_string())??;
        Ok(())
    })?;
    let mut lat: Vec<f64> = (50..total)
        .filter_map(|i| Some((back[i]? - *sent_at[i].get()?).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let _ = sipp.wait_exit(Duration::from_secs(HOLD_MS / 1000 + 10));
    sidecar.stop();
    drop(sipp);
    std::thread::sleep(Duration::from_millis(2_500));
    if lat.len() < LATENCY_PACKETS / 2 {
        return Err(format!(
            "only {} of {LATENCY_PACKETS} tagged packets came back",
            lat.len()
        ));
    }
    Ok(LatencyRun {
        loss_pct: loss * 100.0,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        measured: lat.len(),
        dropped,
        samples: lat,
    })
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[derive(Debug, Default)]
pub struct MediaBench {
    pub load: Vec<LoadRun>,
    pub latency: Vec<LatencyRun>,
}

/// Both media sections against a running edge; `bin` is the release sidecar.
pub fn media_bench(edge: &Edge, bin: &Path, dir: &Path) -> Result<MediaBench, String> {
    let tenant = echo_tenant(edge)?;
    let mut out = MediaBench::default();
    // `VOXLINE_BENCH_ONLY=load|latency` for one part (for `bench-media`;
    // leave it unset for the whole bench).
    let only = std::env::var("VOXLINE_BENCH_ONLY").unwrap_or_default();
    let want = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    let load_ns: &[usize] = if want("load") { load_ns() } else { &[] };
    let losses: &[f64] = if want("latency") { &[0.0, 0.01] } else { &[] };
    for &n in load_ns {
        for run in 0..load_runs() {
            let r = crate::step(
                &format!("sidecar load, {n} concurrent calls, run {}", run + 1),
                || load_run(edge, &tenant, bin, dir, n, run),
            )?;
            println!("  {}", r.summary());
            out.load.push(r);
        }
    }
    for &loss in losses {
        for run in 0..latency_runs() {
            let r = crate::step(
                &format!(
                    "sidecar media latency, {:.0}% loss, run {}",
                    loss * 100.0,
                    run + 1
                ),
                || latency_run(edge, &tenant, bin, dir, loss, run),
            )?;
            println!(
                "  p50 {:.2} ms, p99 {:.2} ms ({} timed, {} dropped)",
                r.p50_ms, r.p99_ms, r.measured, r.dropped
            );
            out.latency.push(r);
        }
    }
    Ok(out)
}

/// Table rows for load runs: per N, the medians over runs, then each run's
/// CPU and memory per call (`cpu_digits` decimals for CPU per call).
pub fn load_rows(all: &[LoadRun], ns: &[usize], cpu_digits: usize) -> String {
    let mut rows = String::new();
    for &n in ns {
        let runs: Vec<&LoadRun> = all.iter().filter(|r| r.calls == n).collect();
        if runs.is_empty() {
            continue;
        }
        let med = |f: fn(&LoadRun) -> f64| median(runs.iter().map(|r| f(r)).collect());
        let per_run = |f: fn(&LoadRun) -> f64, d: usize| {
            runs.iter()
                .map(|r| format!("{:.*}", d, f(r)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        rows.push_str(&format!(
            "| {n} | {:.1} | {:.1} | {:.*} | {:.0} | {:.0} | {:.0} | {} | {} |\n",
            med(|r| r.cpu_pct),
            med(|r| r.idle_cpu_pct),
            cpu_digits,
            med(|r| r.cpu_per_call()),
            med(|r| r.idle_rss_kib),
            med(|r| r.rss_kib),
            med(|r| r.kib_per_call()),
            per_run(|r| r.cpu_per_call(), cpu_digits),
            per_run(|r| r.kib_per_call(), 0),
        ));
    }
    rows
}

/// The report's media sections (markdown).
pub fn report(m: &MediaBench) -> String {
    let load = load_rows(&m.load, load_ns(), 2);
    let mut lat = String::new();
    for loss in [0.0, 1.0] {
        let runs: Vec<&LatencyRun> = m.latency.iter().filter(|r| r.loss_pct == loss).collect();
        if runs.is_empty() {
            continue;
        }
        let per_run = |f: fn(&LatencyRun) -> f64| {
            runs.iter()
                .map(|r| format!("{:.1}", f(r)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        lat.push_str(&format!(
            "| {loss:.0}% | {:.1} | {:.1} | {} | {} | {} |\n",
            median(runs.iter().map(|r| r.p50_ms).collect()),
            median(runs.iter().map(|r| r.p99_ms).collect()),
            per_run(|r| r.p50_ms),
            per_run(|r| r.p99_ms),
            runs.iter()
                .map(|r| format!("{}/{}", r.measured, r.dropped))
                .collect::<Vec<_>>()
                .join(" / "),
        ));
    }
    format!(
        "## Media sidecar: CPU and memory per concurrent G.711 call\n\n\
         N calls placed at once through `POST /v1/calls` (distinct numbers, the tenant's limits raised),\n\
         leased by one release-built sidecar and dialled over SIP/UDP to one sipp UAS that answers them\n\
         all (PCMU, 20 ms), echoes every RTP packet (`-rtp_echo`) and sends BYE after {hold} s. The\n\
         agent's engine is `echo`, so every call carries 50 packets/s each way through the whole media\n\
         path: RTP receive, jitter buffer, mu-law decode, the call task and engine, re-encode, send, RTCP.\n\
         A fresh sidecar per run; idle RSS is read 1 s after it registers, idle CPU over the next {idle} s\n\
         (its lease long-poll and nothing else). Once all N calls are answered\n\
         (its log), CPU time (`/proc/<pid>/stat` utime+stime, {hz} ticks/s) is sampled over {window} s\n\
         and RSS (`VmRSS`) in the middle of that window; no call ends inside it (checked). CPU is percent\n\
         of one core for the whole process (SIP, edge link and info logging included); CPU per call is\n\
         (CPU with N calls - idle CPU) / N and KiB per call (RSS with N calls - idle RSS) / N. {runs} runs per N; medians, then per-run values. sipp and\n\
         `wrangler dev` run on the same 2 cores.\n\n\
         | calls | CPU % (process) | idle CPU % | CPU % per call | idle RSS KiB | RSS KiB | KiB per call | CPU % per call, per run | KiB per call, per run |\n\
         |---|---|---|---|---|---|---|---|---|\n{load}\n\
         ## Media latency added by the sidecar (RTP in -> echo engine -> RTP out)\n\n\
         One real call (API, edge, sidecar, SIP to sipp), but sipp only does the SIP: its answer's SDP\n\
         points at a small RTP peer inside the bench, which sends a PCMU packet every 20 ms whose payload\n\
         carries its sequence number (mu-law codes that decode and re-encode unchanged) and times when\n\
         the echo engine's copy of that payload comes back (first copy; a concealed loss can repeat a\n\
         frame). A full call rather than `MediaSession` + `EchoEngine` in-process, so the figure is the\n\
         deployed binary's: its tokio runtime, the 20 ms media tick, the jitter buffer, the call task and\n\
         the engine hop. With 1% loss the peer drops 1% of the packets it sends (after a 1 s warm-up, never\n\
         sent), which the sidecar's jitter buffer conceals. {lpk} packets timed per run (after 50 warm-up\n\
         packets), {lruns} runs per loss rate; medians of the per-run p50/p99, then per-run values.\n\
         Loopback adds ~0.1 ms; the rest is the sidecar, and it comes in whole 20 ms media ticks: a\n\
         packet waits in the jitter buffer (target depth 20 ms) for the tick that plays it out, and the\n\
         echoed frame for the next tick that sends it, so a run sits at 40 or 60 ms depending on the\n\
         phase between the peer's clock and the sidecar's tick; the spread inside a run is under 1 ms.\n\n\
         | loss | p50 ms (median) | p99 ms (median) | p50 per run | p99 per run | timed/dropped per run |\n\
         |---|---|---|---|---|---|\n{lat}\n\
         ![Media latency, CDF, 0% and 1% loss, all runs' packets](bench/media_latency.png)\n\n{died}",
        died = if m.load.iter().any(|r| r.died) {
            format!("**The sidecar process died as the calls ended in {} of {} echo load runs** (after the sampling window).\n\n", m.load.iter().filter(|r| r.died).count(), m.load.len())
        } else {
            String::new()
        },
        hold = HOLD_MS / 1000,
        hz = clock_ticks_per_sec(),
        window = WINDOW_MS / 1000,
        idle = IDLE_MS / 1000,
        runs = load_runs(),
        lpk = LATENCY_PACKETS,
        lruns = latency_runs(),
    )
}

/// For the partial bench commands: the release sidecar built, the edge built
/// if missing, and a fresh `wrangler dev` for `name`. (edge, state dir, sidecar binary).
/// Set to a sidecar binary to measure that one instead of this tree's
/// release build (A/B against another commit's sidecar; the edge is this tree's).
pub const SIDECAR_BIN_VAR: &str = "VOXLINE_BENCH_SIDECAR_BIN";

pub fn bench_edge(name: &str) -> Result<(Edge, PathBuf, PathBuf), String> {
    let given = std::env::var_os(SIDECAR_BIN_VAR).map(PathBuf::from);
    if given.is_none() {
        crate::step("media sidecar build (release)", || {
            crate::run(Command::new("cargo").args([
                "build",
                "--release",
                "-p",
                "voxline-media-sidecar",
            ]))
        })?;
    }
    if !crate::root().join("edge/build/worker/shim.mjs").exists() {
        crate::step("edge wasm build", crate::build_edge)?;
    }
    let mut opts = voxline_e2e::EdgeOptions::fresh(name);
    let dir = opts
        .state_dir
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| repo_root().join("target/e2e").join(name));
    opts.vars = vec![("DISPATCH_MAX_WAIT_MS".into(), "2000".into())];
    let edge = crate::step("start edge", || Edge::start(opts))?;
    let bin = given.unwrap_or_else(|| cargo_target_dir().join("release/voxline-media-sidecar"));
    println!("  sidecar: {}", bin.display());
    Ok((edge, dir, bin))
}

/// `cargo xtask bench-media`: only the media figures, printed, no report.
pub fn run_media_only() -> Result<(), String> {
    let (edge, dir, bin) = bench_edge("bench-media")?;
    let m = media_bench(&edge, &bin, &dir)?;
    drop(edge);
    print!("{}", report(&m));
    Ok(())
}

pub(crate) fn cargo_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => crate::root().join(dir),
        None => crate::root().join("target"),
    }
}
