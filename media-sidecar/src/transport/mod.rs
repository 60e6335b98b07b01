//! The wire under the lease client: one small trait, two transports.
//!
//! - [`http1::Http1Transport`]: HTTP/1.1 keep-alive over TCP (plain or TLS).
//! - [`h3::H3Transport`]: HTTP/3 over one long-lived QUIC connection (TLS 1.3).
//!
//! A transport only moves bytes: it POSTs a signed JSON body to a path of the edge
//! and hands back the status and body. Retrying, backoff and meaning belong to
//! the lease client; timeouts to the driver.

use std::future::Future;
use std::sync::Arc;

pub mod h3;
pub mod http1;
pub mod tls;

/// Largest response body a transport accepts (a lease answer is a few KB).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Name resolution or connection setup (TCP connect, QUIC handshake) failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The TLS handshake failed (untrusted certificate, wrong name, ...).
    #[error("tls: {0}")]
    Tls(String),
    /// The connection or stream broke mid-request.
    #[error("io: {0}")]
    Io(String),
    /// The peer broke the HTTP rules, or the request could not be built.
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("response body larger than {MAX_RESPONSE_BYTES} bytes")]
    BodyTooLarge,
    /// Local setup problem (bad CA file, ...): retrying will not help.
    #[error("config: {0}")]
    Config(String),
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// The HTTP version the answer came over (as the client saw it).
    pub version: http::Version,
}

/// POSTs to the edge. `path` is the API path (`/v1/sidecar/lease`); the transport
/// adds the configured base URL, `content-length`, `content-type:
/// application/json` unless the given headers name another, and the given
/// (signature) headers.
pub trait Transport: Send + Sync + 'static {
    /// `"http1"` or `"h3"`, for logs.
    fn name(&self) -> &'static str;

    fn post(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<TransportResponse, TransportError>> + Send;
}

impl<C: Transport> Transport for Arc<C> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn post(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<TransportResponse, TransportError>> + Send {
        (**self).post(path, headers, body)
    }
}

/// Either transport, chosen at run time from the config.
pub enum AnyTransport {
    Http1(http1::Http1Transport),
    H3(h3::H3Transport),
}

impl AnyTransport {
    /// Builds the transport the config asks for (no connection is made yet).
    pub fn from_config(cfg: &crate::config::Config) -> Result<AnyTransport, TransportError> {
        Ok(match cfg.transport {
            crate::config::Transport::Http1 => {
                let tls = if cfg.edge.tls {
                    Some(tls::client_config(cfg.ca_cert.as_deref())?)
                } else {
                    None
                };
                AnyTransport::Http1(http1::Http1Transport::new(cfg.edge.clone(), tls))
            }
            crate::config::Transport::H3 => AnyTransport::H3(h3::H3Transport::new(
                cfg.edge.clone(),
                tls::client_config(cfg.ca_cert.as_deref())?,
            )?),
        })
    }
}

/// The POST head both transports send: the length up front, and JSON
/// unless the caller names another content type.
fn post_request(
    url: String,
    headers: Vec<(&'static str, String)>,
    body_len: usize,
) -> http::request::Builder {
    let mut req = http::Request::post(url).header(http::header::CONTENT_LENGTH, body_len);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req
}

impl Transport for AnyTransport {
    fn name(&self) -> &'static str {
        match self {
            AnyTransport::Http1(c) => c.name(),
            AnyTransport::H3(c) => c.name(),
        }
    }

    async fn post(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<TransportResponse, TransportError> {
        match self {
            AnyTransport::Http1(c) => c.post(path, headers, body).await,
            AnyTransport::H3(c) => c.post(path, headers, body).await,
        }
    }
}
