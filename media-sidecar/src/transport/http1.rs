//! HTTP/1.1 keep-alive transport (hyper 1 + hyper-util's pooled client).
//!
//! Why not reqwest: we want exactly an HTTP/1.1-only keep-alive pool whose TLS
//! is the same rustls/ring `ClientConfig` the QUIC transport uses; hyper-util's
//! legacy client is that pool with nothing on top, while reqwest would bring its
//! own TLS provider choice, features we do not use, and hide the pool settings.
//! Concurrent requests (a long-poll plus acks/events) use separate pooled
//! connections; idle ones are kept 90 s and reused.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{Transport, TransportError, TransportResponse, MAX_RESPONSE_BYTES};
use crate::config::EdgeUrl;

pub struct Http1Transport {
    edge: EdgeUrl,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http1Transport {
    /// `tls`: the client config for `https://` edges (`None` for `http://`).
    pub fn new(edge: EdgeUrl, tls: Option<rustls::ClientConfig>) -> Http1Transport {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        tcp.set_keepalive(Some(Duration::from_secs(30)));
        let builder = match tls {
            Some(cfg) => HttpsConnectorBuilder::new()
                .with_tls_config(cfg)
                .https_or_http(),
            // No TLS config: only plain http:// is ever dialled (https would fail at connect).
            None => HttpsConnectorBuilder::new()
                .with_tls_config(super::tls::empty_roots_config())
                .https_or_http(),
        };
        let connector = builder.enable_http1().wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(8)
            .build(connector);
        Http1Transport { edge, client }
    }
}

/// Is a rustls error anywhere in the chain? (hyper-rustls wraps the handshake's
/// `io::Error(rustls::Error)` in another `io::Error`, whose `source()` skips it.)
fn has_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.is::<rustls::Error>() {
        return true;
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if has_rustls(inner) {
            return true;
        }
    }
    e.source().is_some_and(has_rustls)
}

fn classify(e: &hyper_util::client::legacy::Error) -> TransportError {
    use std::error::Error as _;
    let mut chain = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    chain.dedup();
    let msg = chain.join(": ");
    if e.source().is_some_and(has_rustls) {
        TransportError::Tls(msg)
    } else if e.is_connect() {
        TransportError::Connect(msg)
    } else {
        TransportError::Io(msg)
    }
}

impl Transport for Http1Transport {
    fn name(&self) -> &'static str {
        "http1"
    }

    async fn post(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<TransportResponse, TransportError> {
        let req = super::post_request(self.edge.url(path), headers, body.len());
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        let version = resp.version();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    TransportError::BodyTooLarge
                } else {
                    TransportError::Io(e.to_string())
                }
            })?;
        Ok(TransportResponse {
            status,
            body: body.to_bytes().to_vec(),
            version,
        })
    }
}
