//! The metrics listener: `GET /metrics` (OpenMetrics text) and `GET
//! /healthz` (200 `ok`, or 503 with the reason) over HTTP/1.1, on a small
//! tokio task. Bounded: at most [`MAX_CONNECTIONS`] at once (others are
//! closed at accept), each given [`CONNECTION_TIMEOUT`] in all and no
//! keep-alive, request bodies never read. Nothing it does touches a call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Metrics;

/// Scrapers open one connection at a time; a few spare for people with curl.
pub const MAX_CONNECTIONS: usize = 8;
/// A connection's whole life (read the request, answer it).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenMetrics content type (Prometheus negotiates it; plain-text
/// readers such as curl see text).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn answer(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The answer to one request (pure: tested without sockets).
pub fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".to_string(),
        );
    }
    match path {
        "/metrics" => answer(StatusCode::OK, OPENMETRICS, metrics.encode()),
        "/healthz" => match metrics.health.check() {
            Ok(()) => answer(StatusCode::OK, TEXT, "ok\n".to_string()),
            Err(why) => answer(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
        },
        _ => answer(
            StatusCode::NOT_FOUND,
            TEXT,
            "GET /metrics or /healthz\n".to_string(),
        ),
    }
}

/// Binds `addr` now (so a taken port is a start-up error) and serves
/// `metrics` on a spawned task until the process exits.
pub async fn start(addr: SocketAddr, metrics: &'static Metrics) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "metrics and /healthz are served beyond this host: firewall the port to your scraper");
    }
    tokio::spawn(serve(listener, metrics));
    Ok(local)
}

async fn serve(listener: TcpListener, metrics: &'static Metrics) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin.
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many connections; closed");
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, Infallible>(respond(metrics, req.method(), req.uri().path()))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        let m = Metrics::new();
        let r = respond(&m, &Method::GET, "/metrics");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let r = respond(&m, &Method::GET, "/healthz");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        m.link_state(true, false);
        assert_eq!(
            respond(&m, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&m, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            respond(&m, &Method::GET, "/").status(),
            StatusCode::NOT_FOUND
        );
    }
}
