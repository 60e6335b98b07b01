//! A real caddy on loopback: TLS on TCP (HTTP/1.1, HTTP/2) and QUIC on UDP
//! (HTTP/3) in front of an HTTP/1.1 upstream, as Cloudflare fronts the edge.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::Pki;

/// A running caddy serving `https://127.0.0.1:<port>` with the test PKI,
/// reverse-proxying to its upstream and adding
/// `X-Client-Proto: {http.request.proto}` (what the client spoke), with a
/// JSON access log. Its files go to the directory given (`Caddyfile`,
/// `caddy-access.json`, stderr in `caddy.log`, `caddy-*` state). Killed
/// when dropped.
pub struct Caddy {
    child: Child,
    pub port: u16,
    pub access_log: PathBuf,
    pub dir: PathBuf,
}

impl Caddy {
    /// On a free TCP+UDP port. `upstream` is `host:port` (or an `http://` URL).
    pub fn start(upstream: &str, pki: &Pki, dir: &Path) -> Caddy {
        Caddy::start_on(upstream, pki, dir, crate::free_tcp_udp_port())
    }

    /// On `port` (to come back on the port a killed one had).
    pub fn start_on(upstream: &str, pki: &Pki, dir: &Path, port: u16) -> Caddy {
        let bin = crate::CADDY.require();
        let upstream = upstream.trim_start_matches("http://");
        let access_log = dir.join("caddy-access.json");
        let caddyfile = dir.join("Caddyfile");
        std::fs::write(
            &caddyfile,
            format!(
                r#"{{
	admin off
	auto_https disable_redirects
	skip_install_trust
	storage file_system {storage}
	servers {{
		protocols h1 h2 h3
	}}
}}

https://127.0.0.1:{port} {{
	bind 127.0.0.1
	tls {cert} {key}
	log {{
		output file {log}
		format json
	}}
	reverse_proxy {upstream} {{
		header_up X-Client-Proto {{http.request.proto}}
	}}
}}
"#,
                storage = dir.join("caddy-storage").display(),
                cert = pki.cert_pem.display(),
                key = pki.key_pem.display(),
                log = access_log.display(),
            ),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", caddyfile.display()));
        let stderr = std::fs::File::create(dir.join("caddy.log")).expect("caddy.log");
        let child = Command::new(bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("caddy-data"))
            .env("XDG_CONFIG_HOME", dir.join("caddy-config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("caddy starts");
        let mut c = Caddy {
            child,
            port,
            access_log,
            dir: dir.to_path_buf(),
        };
        // Ready when it serves TLS on TCP (the UDP listener starts with it).
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            let exited = c.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > until {
                panic!("caddy did not start ({exited:?}): {}", c.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        c
    }

    /// Kills it hard (SIGKILL): no CONNECTION_CLOSE reaches the clients.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Parsed access-log entries so far.
    pub fn access_entries(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The access log once it has at least `n` entries (what it has after 5 s).
    pub fn wait_entries(&self, n: usize) -> Vec<serde_json::Value> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let e = self.access_entries();
            if e.len() >= n || Instant::now() > until {
                return e;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What caddy wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs caddy (skipped, saying so, where it is not installed). The
    /// proxying itself is proven by the media sidecar's transport tests.
    #[test]
    fn starts_on_a_free_port_and_a_kill_frees_it() {
        if let Err(e) = crate::CADDY.path() {
            eprintln!("skipped: {e}");
            return;
        }
        let dir = crate::temp_dir("caddy");
        let pki = crate::make_pki(&dir);
        let caddy = Caddy::start("http://127.0.0.1:9", &pki, &dir);
        let port = caddy.port;
        assert!(crate::wait_tcp(port, Duration::from_secs(1)));
        assert!(caddy.access_entries().is_empty());
        caddy.kill();
        assert!(!crate::wait_tcp(port, Duration::from_millis(200)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
