//! The two transports for real, on loopback: HTTP/1.1 against a local hyper
//! server (plain) and through caddy (TLS); HTTP/3 through caddy, proven by
//! caddy's own access log (`"proto":"HTTP/3.0"`) and by the protocol caddy
//! reports to the upstream.

mod support;

use std::sync::Arc;

use support::*;
use voxline_media_sidecar::config::EdgeUrl;
use voxline_media_sidecar::transport::h3::H3Transport;
use voxline_media_sidecar::transport::http1::Http1Transport;
use voxline_media_sidecar::transport::{tls, Transport, TransportError};
use voxline_testkit::*;

fn echo() -> Handler {
    Arc::new(|r: SeenRequest| {
        Box::pin(async move {
            let status = if r.path.ends_with("/teapot") {
                418
            } else {
                200
            };
            let v = serde_json::json!({
                "path": r.path,
                "len": r.body.len(),
                "sig": r.header("x-voxline-signature"),
                "proto": r.header("x-client-proto"),
            });
            (status, serde_json::to_vec(&v).unwrap())
        })
    })
}

fn sig_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    voxline_shared::signing::signed_headers(
        "sc-1",
        b"secret",
        1_700_000_000,
        "00112233445566778899aabbccddeeff",
        voxline_shared::signing::Target::post("/v1/sidecar/lease"),
        body,
    )
    .to_vec()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test exceeded its time bound")
}

#[tokio::test]
async fn http1_plain_keeps_one_connection_alive() {
    bounded(async {
        let server = TestServer::start(echo()).await;
        let edge = EdgeUrl::parse(&format!("http://{}/base", server.addr)).unwrap();
        let c = Http1Transport::new(edge, None);
        assert_eq!(c.name(), "http1");
        for i in 0..5 {
            let body = format!("{{\"n\":{i}}}").into_bytes();
            let r = c
                .post("/v1/sidecar/lease", sig_headers(&body), body.clone())
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.version, http::Version::HTTP_11);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["path"], "/base/v1/sidecar/lease");
            assert_eq!(v["len"], body.len());
        }
        let r = c.post("/teapot", vec![], b"{}".to_vec()).await.unwrap();
        assert_eq!(r.status, 418, "statuses pass through untouched");

        let seen = server.seen();
        assert_eq!(seen.len(), 6);
        assert_eq!(
            server.connections.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "keep-alive: one TCP connection"
        );
        let first = &seen[0];
        assert_eq!(first.method, "POST");
        assert_eq!(first.version, http::Version::HTTP_11);
        assert_eq!(first.header("content-type"), Some("application/json"));
        assert_eq!(first.header("content-length"), Some("7"));
        assert_eq!(first.body, b"{\"n\":0}");
        assert_eq!(first.header("x-voxline-sidecar"), Some("sc-1"));
        assert_eq!(first.header("x-voxline-timestamp"), Some("1700000000"));
        assert!(first
            .header("x-voxline-signature")
            .unwrap()
            .starts_with("v2="));
    })
    .await
}

#[tokio::test]
async fn http1_connection_refused_is_a_connect_error() {
    bounded(async {
        let port = free_tcp_udp_port(); // nothing listens there
        let c = Http1Transport::new(
            EdgeUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            None,
        );
        let e = c
            .post("/v1/sidecar/register", vec![], b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(e, TransportError::Connect(_)), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn http1_over_tls_through_caddy_trusts_the_configured_ca() {
    bounded(async {
        let dir = temp_dir("h1tls");
        let pki = make_pki(&dir);
        let upstream = TestServer::start(echo()).await;
        let caddy = Caddy::start(&upstream.addr.to_string(), &pki, &dir);
        let edge = EdgeUrl::parse(&format!("https://127.0.0.1:{}", caddy.port)).unwrap();
        let c = Http1Transport::new(
            edge.clone(),
            Some(tls::client_config(Some(&pki.ca_pem)).unwrap()),
        );
        for _ in 0..3 {
            let r = c
                .post("/v1/sidecar/events", sig_headers(b"{}"), b"{}".to_vec())
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["proto"], "HTTP/1.1");
        }
        let log = caddy.wait_entries(3);
        assert_eq!(log.len(), 3, "{log:?}");
        for e in &log {
            assert_eq!(e["request"]["proto"], "HTTP/1.1", "{e}");
            assert_eq!(e["request"]["tls"]["resumed"], false);
        }
        // Keep-alive through TLS: one client TCP connection (same remote port).
        let ports: std::collections::BTreeSet<String> = log
            .iter()
            .map(|e| e["request"]["remote_port"].to_string())
            .collect();
        assert_eq!(ports.len(), 1, "{ports:?}");

        // A CA that did not sign caddy's certificate is refused.
        let other_dir = temp_dir("h1tls-other");
        let other = make_pki(&other_dir);
        let bad = Http1Transport::new(edge, Some(tls::client_config(Some(&other.ca_pem)).unwrap()));
        let e = bad
            .post("/v1/sidecar/events", vec![], b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(e, TransportError::Tls(_)), "{e:?}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    })
    .await
}

#[tokio::test]
async fn h3_through_caddy_is_really_http3_and_multiplexes_on_one_connection() {
    bounded(async {
        let dir = temp_dir("h3");
        let pki = make_pki(&dir);
        let upstream = TestServer::start(echo()).await;
        let caddy = Caddy::start(&upstream.addr.to_string(), &pki, &dir);
        let edge = EdgeUrl::parse(&format!("https+h3://127.0.0.1:{}", caddy.port)).unwrap();
        let c = Arc::new(
            H3Transport::new(edge, tls::client_config(Some(&pki.ca_pem)).unwrap()).unwrap(),
        );
        assert_eq!(c.name(), "h3");

        let body = br#"{"protocol_version":1}"#.to_vec();
        let r = c
            .post("/v1/sidecar/register", sig_headers(&body), body.clone())
            .await
            .unwrap_or_else(|e| {
                panic!("h3 request failed: {e}\ncaddy stderr:\n{}", caddy.stderr())
            });
        assert_eq!(r.status, 200);
        assert_eq!(r.version, http::Version::HTTP_3);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v["proto"], "HTTP/3.0",
            "caddy told the upstream the client spoke HTTP/3"
        );
        assert_eq!(v["len"], body.len());

        // Eight concurrent requests: streams on the same QUIC connection.
        let mut tasks = vec![];
        for i in 0..8 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let b = format!("{{\"i\":{i}}}").into_bytes();
                c.post("/v1/sidecar/ack", sig_headers(&b), b).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().status, 200);
        }
        let r = c.post("/teapot", vec![], b"{}".to_vec()).await.unwrap();
        assert_eq!(r.status, 418);

        let log = caddy.wait_entries(10);
        assert_eq!(log.len(), 10, "{log:?}");
        for e in &log {
            assert_eq!(e["request"]["proto"], "HTTP/3.0", "caddy access log: {e}");
        }
        let ports: std::collections::BTreeSet<String> = log
            .iter()
            .map(|e| e["request"]["remote_port"].to_string())
            .collect();
        assert_eq!(
            ports.len(),
            1,
            "one QUIC connection (one client UDP port): {ports:?}"
        );

        // The upstream saw the signature headers and bodies through the proxy.
        let seen = upstream.seen();
        assert_eq!(seen.len(), 10);
        assert!(seen
            .iter()
            .all(|s| s.header("x-client-proto") == Some("HTTP/3.0")));
        assert_eq!(seen[0].header("x-voxline-sidecar"), Some("sc-1"));
        assert_eq!(seen[0].body, body);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

fn ports_of(log: &[serde_json::Value]) -> Vec<String> {
    log.iter()
        .map(|e| e["request"]["remote_port"].to_string())
        .collect()
}

/// quinn's idle timeout closes a silent connection; keep-alive pings keep it.
/// Short timers (idle 1.5 s, ping every 0.4 s) stand in for the real ones.
#[tokio::test]
async fn h3_keep_alive_holds_an_idle_connection_open() {
    bounded(async {
        let dir = temp_dir("h3ka");
        let pki = make_pki(&dir);
        let upstream = TestServer::start(echo()).await;
        let caddy = Caddy::start(&upstream.addr.to_string(), &pki, &dir);
        let edge = EdgeUrl::parse(&format!("https+h3://127.0.0.1:{}", caddy.port)).unwrap();
        let idle = std::time::Duration::from_millis(1_500);
        let ping = Some(std::time::Duration::from_millis(400));
        let with = H3Transport::with_timers(
            edge.clone(),
            tls::client_config(Some(&pki.ca_pem)).unwrap(),
            ping,
            idle,
        )
        .unwrap();
        let without = H3Transport::with_timers(
            edge,
            tls::client_config(Some(&pki.ca_pem)).unwrap(),
            None,
            idle,
        )
        .unwrap();

        for c in [&with, &without] {
            assert_eq!(
                c.post("/a", vec![], b"{}".to_vec()).await.unwrap().status,
                200
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await; // > idle, silent
        for c in [&with, &without] {
            assert_eq!(
                c.post("/b", vec![], b"{}".to_vec()).await.unwrap().status,
                200
            );
        }
        let log = caddy.wait_entries(4);
        let p = ports_of(&log);
        assert_eq!(p.len(), 4, "{log:?}");
        // Entries are in arrival order: with/a, without/a, with/b, without/b.
        assert_eq!(
            p[0], p[2],
            "keep-alive: the same connection after the silence"
        );
        assert_ne!(
            p[1], p[3],
            "no keep-alive: the idle connection died and a new one was made"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// The edge's QUIC endpoint vanishes (caddy SIGKILLed: no CONNECTION_CLOSE)
/// and comes back on the same port: the transport replaces the dead connection.
#[tokio::test]
async fn h3_recovers_when_the_edge_restarts() {
    bounded(async {
        let dir = temp_dir("h3re");
        let pki = make_pki(&dir);
        let upstream = TestServer::start(echo()).await;
        let first = Caddy::start_on(
            &upstream.addr.to_string(),
            &pki,
            &dir.join("1").tap_mkdir(),
            free_tcp_udp_port(),
        );
        let port = first.port;
        let edge = EdgeUrl::parse(&format!("https+h3://127.0.0.1:{port}")).unwrap();
        let c = H3Transport::with_timers(
            edge,
            tls::client_config(Some(&pki.ca_pem)).unwrap(),
            Some(std::time::Duration::from_millis(300)),
            std::time::Duration::from_millis(1_500),
        )
        .unwrap();
        assert_eq!(
            c.post("/before", vec![], b"{}".to_vec())
                .await
                .unwrap()
                .status,
            200
        );
        first.kill();
        let second = Caddy::start_on(
            &upstream.addr.to_string(),
            &pki,
            &dir.join("2").tap_mkdir(),
            port,
        );

        let started = std::time::Instant::now();
        let mut failures = vec![];
        let ok = loop {
            match tokio::time::timeout(
                std::time::Duration::from_secs(3),
                c.post("/after", vec![], b"{}".to_vec()),
            )
            .await
            {
                Ok(Ok(r)) => break r,
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(_) => failures.push("timed out".into()),
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(15),
                "no recovery: {failures:?}"
            );
        };
        assert_eq!(ok.status, 200);
        eprintln!(
            "recovered after {:?}; failures: {failures:?}",
            started.elapsed()
        );
        assert!(failures.len() <= 2, "{failures:?}");
        let log = second.wait_entries(1);
        assert_eq!(log[0]["request"]["proto"], "HTTP/3.0");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[tokio::test]
async fn h3_refuses_an_untrusted_certificate() {
    bounded(async {
        let dir = temp_dir("h3bad");
        let pki = make_pki(&dir);
        let other_dir = temp_dir("h3bad-other");
        let other = make_pki(&other_dir);
        let upstream = TestServer::start(echo()).await;
        let caddy = Caddy::start(&upstream.addr.to_string(), &pki, &dir);
        let edge = EdgeUrl::parse(&format!("https+h3://127.0.0.1:{}", caddy.port)).unwrap();
        let c = H3Transport::new(edge, tls::client_config(Some(&other.ca_pem)).unwrap()).unwrap();
        let e = c
            .post("/v1/sidecar/register", vec![], b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(e, TransportError::Tls(_)), "{e:?}");
        assert!(
            e.to_string().to_lowercase().contains("certificate")
                || e.to_string().contains("crypto"),
            "{e}"
        );
        assert!(upstream.seen().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    })
    .await
}

#[tokio::test]
async fn bad_ca_files_are_clear_config_errors() {
    let dir = temp_dir("badca");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = tls::client_config(Some(&empty)).unwrap_err();
    assert!(
        matches!(e, TransportError::Config(ref m) if m.contains("no certificate")),
        "{e:?}"
    );
    let e = tls::client_config(Some(&dir.join("missing.pem"))).unwrap_err();
    assert!(
        matches!(e, TransportError::Config(ref m) if m.contains("cannot read CA file")),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
