//! End-to-end: real `voxline-media-sidecar` processes against real
//! `wrangler dev`, over HTTP/1.1 directly and over HTTP/3 through a real caddy
//! (the QUIC terminator, as Cloudflare is in production). Calls are "answered"
//! by the sidecar's `--simulate-answer` test aid until SIP lands (issue 4);
//! everything between the API and the sidecar is the production path.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use voxline_e2e::*;

struct World {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
}

impl SuiteContext for World {
    fn diagnostics(&self) -> String {
        let mut out = self.edge.diagnostics();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("\n--- {name} ---\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
            }
        }
        out
    }
}

fn sidecar_bin() -> PathBuf {
    repo_root().join("target/debug/voxline-media-sidecar")
}

/// A running sidecar process; dropped = SIGTERM then SIGKILL.
struct Sidecar {
    child: Option<Child>,
    log: PathBuf,
}

impl Sidecar {
    fn start(w: &World, id: &str, edge_url: &str, extra_env: &[(&str, String)], simulate_secs: f64) -> Sidecar {
        let cred = w.edge.admin("POST", "/admin/sidecars", Some(&json!({"sidecar_id": id, "region": "local"}))).expect(201);
        let log = w.dir.join(format!("sidecar-{id}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(sidecar_bin());
        cmd.arg(format!("--simulate-answer={simulate_secs}"))
            .env("VOXLINE_EDGE_URL", edge_url)
            .env("VOXLINE_SIDECAR_ID", id)
            .env("VOXLINE_REGION", "local")
            .env("VOXLINE_SIDECAR_SECRET", cred.json["secret"].as_str().unwrap())
            .env("VOXLINE_CAPACITY", "2")
            .env("VOXLINE_LEASE_WAIT_MS", "1000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the sidecar (built by `cargo build -p voxline-media-sidecar`)");
        Sidecar { child: Some(child), log }
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn place(w: &World, body: Value) -> String {
    let r = w.edge.call("POST", "/v1/calls", &w.tenant.key, Some(&body)).expect(201);
    r.json["id"].as_str().unwrap().to_string()
}

/// Waits for a status, recording every status seen on the way.
fn wait_status(w: &World, id: &str, want: &str, within: Duration) -> (Value, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let call = w.edge.call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None).expect(200).json;
        let s = call["status"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == want {
            return (call, seen);
        }
        assert!(Instant::now() < deadline, "call {id} never became {want}; saw {seen:?}: {call}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn a_call_is_leased_dialled_and_completed_over_http1(w: &World) {
    let _sc = Sidecar::start(w, "proc-h1", &w.edge.base, &[], 1.0);
    let id = place(w, json!({"phone": "+14155550201"}));
    let (call, seen) = wait_status(w, &id, "completed", Duration::from_secs(20));
    assert!(seen.contains(&"in_progress".to_string()), "statuses seen: {seen:?}");
    assert_eq!((call["ended_reason"].as_str(), call["attempts"].as_u64()), (Some("agent_hangup"), Some(1)));
    for field in ["dispatched_at", "answered_at", "ended_at"] {
        assert!(call[field].is_string(), "{field} missing: {call}");
    }
}

fn sigkill_mid_call_ends_media_lost_and_a_second_sidecar_takes_the_retry(w: &World) {
    let mut first = Sidecar::start(w, "proc-kill-a", &w.edge.base, &[], 60.0);
    let id = place(w, json!({"phone": "+14155550202", "retries": 1, "retry_delay_minutes": 1}));
    wait_status(w, &id, "in_progress", Duration::from_secs(20));
    first.sigkill();
    let (call, _) = wait_status(w, &id, "scheduled", Duration::from_secs(20));
    assert_eq!(call["ended_reason"], "media_lost", "{call}");
    let _second = Sidecar::start(w, "proc-kill-b", &w.edge.base, &[], 1.0);
    let (call, seen) = wait_status(w, &id, "completed", Duration::from_secs(30));
    assert_eq!(call["attempts"], 2, "{call}; saw {seen:?}");
    assert!(!first.log().is_empty());
}

fn hangup_through_the_api_reaches_the_sidecar(w: &World) {
    let sc = Sidecar::start(w, "proc-hang", &w.edge.base, &[], 60.0);
    let id = place(w, json!({"phone": "+14155550203"}));
    wait_status(w, &id, "in_progress", Duration::from_secs(20));
    w.edge.call("POST", &format!("/v1/calls/{id}/hangup"), &w.tenant.key, None).expect(202);
    let t = Instant::now();
    let (call, _) = loop {
        let call = w.edge.call("GET", &format!("/v1/calls/{id}"), &w.tenant.key, None).expect(200).json;
        if call["status"].as_str().is_some_and(|s| ["completed", "cancelled"].contains(&s)) {
            break (call, ());
        }
        assert!(t.elapsed() < Duration::from_secs(15), "hangup never took effect: {call}\n{}", sc.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(call["ended_reason"], "hangup_requested", "{call}");
}

// ---- HTTP/3 through caddy ----

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "voxline e2e CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let pki = Pki { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, leaf_cert.pem()).unwrap();
    std::fs::write(&pki.key, leaf_key.serialize_pem()).unwrap();
    pki
}

/// A port free on both TCP and UDP (caddy serves TLS on TCP and QUIC on UDP).
fn free_tcp_udp_port() -> u16 {
    for _ in 0..50 {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on TCP and UDP");
}

struct Caddy {
    child: Child,
    port: u16,
    access_log: PathBuf,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_caddy(dir: &Path, upstream: &str, pki: &Pki) -> Caddy {
    let port = free_tcp_udp_port();
    let access_log = dir.join("caddy-access.json");
    let caddyfile = dir.join("Caddyfile");
    let upstream = upstream.trim_start_matches("http://");
    std::fs::write(
        &caddyfile,
        format!(
            "{{\n\tadmin off\n\tauto_https disable_redirects\n\tskip_install_trust\n\tstorage file_system {storage}\n\tservers {{\n\t\tprotocols h1 h2 h3\n\t}}\n}}\n\n\
             https://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n\ttls {cert} {key}\n\tlog {{\n\t\toutput file {log}\n\t\tformat json\n\t}}\n\treverse_proxy {upstream}\n}}\n",
            storage = dir.join("caddy-storage").display(),
            cert = pki.cert.display(),
            key = pki.key.display(),
            log = access_log.display(),
        ),
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.join("caddy.log")).unwrap();
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("caddy-data"))
        .env("XDG_CONFIG_HOME", dir.join("caddy-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("caddy (Debian package `caddy`, installed by `cargo xtask bootstrap`)");
    let until = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "caddy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    Caddy { child, port, access_log }
}

fn the_whole_lease_ack_event_path_works_over_http3_through_caddy(w: &World) {
    let pki = make_pki(&w.dir);
    let caddy = start_caddy(&w.dir, &w.edge.base, &pki);
    let url = format!("https+h3://127.0.0.1:{}", caddy.port);
    let _sc = Sidecar::start(w, "proc-h3", &url, &[("VOXLINE_CA_CERT", pki.ca.display().to_string())], 1.0);
    let id = place(w, json!({"phone": "+14155550204"}));
    let (call, seen) = wait_status(w, &id, "completed", Duration::from_secs(30));
    assert!(seen.contains(&"in_progress".to_string()), "{seen:?}");
    assert_eq!(call["ended_reason"], "agent_hangup");
    // Caddy's access log proves every sidecar request arrived over HTTP/3.
    let entries: Vec<Value> = std::fs::read_to_string(&caddy.access_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let uri = |e: &Value| e["request"]["uri"].as_str().unwrap_or("").to_string();
    let proto = |e: &Value| e["request"]["proto"].as_str().unwrap_or("").to_string();
    for path in ["/v1/sidecar/register", "/v1/sidecar/lease", "/v1/sidecar/ack", "/v1/sidecar/events"] {
        assert!(entries.iter().any(|e| uri(e) == path), "no {path} in caddy's log");
    }
    let not_h3: Vec<String> = entries.iter().filter(|e| proto(e) != "HTTP/3.0").map(|e| format!("{} {}", proto(e), uri(e))).collect();
    assert!(not_h3.is_empty(), "requests not over HTTP/3: {not_h3:?}");
}

fn main() -> std::process::ExitCode {
    run_suite(
        "sidecar_process",
        || {
            if !sidecar_bin().exists() {
                return Err(format!("{} is missing: `cargo build -p voxline-media-sidecar`", sidecar_bin().display()));
            }
            let mut opts = EdgeOptions::fresh("sidecar_process");
            let dir = opts.state_dir.parent().unwrap().to_path_buf();
            opts.vars = vec![
                ("DISPATCH_ACK_DEADLINE_MS".into(), "2000".into()),
                ("DISPATCH_DEAD_AFTER_MS".into(), "3000".into()),
                ("DISPATCH_MAX_WAIT_MS".into(), "1000".into()),
                ("RETRY_DELAY_UNIT_MS".into(), "1000".into()),
            ];
            let edge = Edge::start(opts)?;
            let tenant = edge.provision_tenant("sidecars");
            Ok(World { edge, tenant, dir })
        },
        &[
            ("a_call_is_leased_dialled_and_completed_over_http1", a_call_is_leased_dialled_and_completed_over_http1),
            ("sigkill_mid_call_ends_media_lost_and_a_second_sidecar_takes_the_retry", sigkill_mid_call_ends_media_lost_and_a_second_sidecar_takes_the_retry),
            ("hangup_through_the_api_reaches_the_sidecar", hangup_through_the_api_reaches_the_sidecar),
            ("the_whole_lease_ack_event_path_works_over_http3_through_caddy", the_whole_lease_ack_event_path_works_over_http3_through_caddy),
        ],
    )
}
