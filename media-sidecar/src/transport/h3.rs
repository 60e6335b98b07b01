//! HTTP/3 transport: quinn 0.11 + h3 + h3-quinn on rustls (ring).
//!
//! One QUIC connection to the edge, opened on first use and reused for every
//! request (each request is one bidirectional stream, so the long-poll, acks
//! and event batches run side by side). QUIC keep-alive pings every
//! [`KEEP_ALIVE`] keep it open through the long-poll's silences (quinn's idle
//! timeout is 30 s with keep-alive off by default); a dead connection is
//! noticed (closed, or a request fails at the connection level) and replaced on
//! the next request.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use quinn::crypto::rustls::QuicClientConfig;
use tokio::sync::Mutex;

use super::{Transport, TransportError, TransportResponse, MAX_RESPONSE_BYTES};
use crate::config::EdgeUrl;

/// How often an idle connection is pinged.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A connection that has heard nothing (not even the ACK of a ping) for this
/// long is dead and replaced: a live peer answers pings within one round trip,
/// so this bounds how long a vanished edge (lost QUIC state, no stateless reset)
/// can stall the link. Kept under the edge's `dead_after_ms` (30 s by default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on resolving + the QUIC/TLS handshake + h3 setup.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

struct Live {
    quic: quinn::Connection,
    send: SendRequest,
    /// Kept so the endpoint outlives the connection's use.
    _endpoint: quinn::Endpoint,
}

pub struct H3Transport {
    edge: EdgeUrl,
    client_config: quinn::ClientConfig,
    live: Mutex<Option<Live>>,
}

impl H3Transport {
    /// `tls`: a client config without ALPN; `h3` is set here.
    pub fn new(edge: EdgeUrl, tls: rustls::ClientConfig) -> Result<H3Transport, TransportError> {
        H3Transport::with_timers(edge, tls, Some(KEEP_ALIVE), IDLE_TIMEOUT)
    }

    /// [`new`](Self::new) with other keep-alive / idle timers (tests use short ones).
    pub fn with_timers(
        edge: EdgeUrl,
        mut tls: rustls::ClientConfig,
        keep_alive: Option<Duration>,
        idle_timeout: Duration,
    ) -> Result<H3Transport, TransportError> {
        if !edge.tls {
            return Err(TransportError::Config(
                "HTTP/3 needs an https:// edge URL".into(),
            ));
        }
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic_tls = QuicClientConfig::try_from(Arc::new(tls))
            .map_err(|e| TransportError::Config(format!("TLS config unusable for QUIC: {e}")))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic_tls));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(keep_alive);
        let idle = idle_timeout
            .try_into()
            .map_err(|_| TransportError::Config(format!("idle timeout {idle_timeout:?}")))?;
        transport.max_idle_timeout(Some(idle));
        client_config.transport_config(Arc::new(transport));
        Ok(H3Transport {
            edge,
            client_config,
            live: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Live, TransportError> {
        let addr: SocketAddr = tokio::net::lookup_host((self.edge.host.as_str(), self.edge.port))
            .await
            .map_err(|e| TransportError::Connect(format!("resolve {}: {e}", self.edge.host)))?
            .next()
            .ok_or_else(|| {
                TransportError::Connect(format!("{} resolves to no address", self.edge.host))
            })?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(bind)
            .map_err(|e| TransportError::Connect(format!("UDP bind: {e}")))?;
        let connecting = endpoint
            .connect_with(self.client_config.clone(), addr, &self.edge.host)
            .map_err(|e| TransportError::Connect(format!("QUIC connect to {addr}: {e}")))?;
        let quic = connecting.await.map_err(|e| match e {
            quinn::ConnectionError::TransportError(ref t)
                if t.code.to_string().contains("crypto") =>
            {
                TransportError::Tls(format!("QUIC handshake with {addr}: {e}"))
            }
            quinn::ConnectionError::TimedOut => {
                TransportError::Connect(format!("QUIC handshake with {addr} timed out"))
            }
            other => TransportError::Connect(format!("QUIC handshake with {addr}: {other}")),
        })?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|e| TransportError::Protocol(format!("h3 setup: {e}")))?;
        // The h3 connection's control stream must be polled for the connection's life.
        tokio::spawn(async move {
            let reason = driver.wait_idle().await;
            tracing::debug!(%reason, "h3 connection closed");
        });
        tracing::debug!(%addr, "h3 connection established");
        Ok(Live {
            quic,
            send,
            _endpoint: endpoint,
        })
    }

    /// A request handle on a live connection, connecting if needed.
    async fn sender(&self) -> Result<(SendRequest, quinn::Connection), TransportError> {
        let mut guard = self.live.lock().await;
        if let Some(live) = guard.as_ref() {
            if live.quic.close_reason().is_none() {
                return Ok((live.send.clone(), live.quic.clone()));
            }
            tracing::debug!(reason = ?live.quic.close_reason(), "h3 connection gone; reconnecting");
        }
        *guard = None;
        let live = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| {
                TransportError::Connect(format!("no HTTP/3 connection within {CONNECT_TIMEOUT:?}"))
            })??;
        let out = (live.send.clone(), live.quic.clone());
        *guard = Some(live);
        Ok(out)
    }

    /// Forgets `quic` if it is still the cached connection (after a connection-level failure).
    async fn forget(&self, quic: &quinn::Connection) {
        let mut guard = self.live.lock().await;
        if guard
            .as_ref()
            .is_some_and(|l| l.quic.stable_id() == quic.stable_id())
        {
            *guard = None;
        }
    }

    /// Is the QUIC connection itself broken (as opposed to one stream)?
    fn connection_level(e: &h3::error::StreamError, quic: &quinn::Connection) -> bool {
        use h3::error::StreamError as E;
        // GOAWAY (RemoteClosing) also means: no new requests on this connection.
        quic.close_reason().is_some()
            || matches!(
                e,
                E::ConnectionError { .. } | E::RemoteClosing { .. } | E::Undefined { .. }
            )
    }

    async fn exchange(
        &self,
        send: &mut SendRequest,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<Result<TransportResponse, TransportError>, h3::error::StreamError> {
        let req = super::post_request(self.edge.url(path), headers, body.len());
        let req = req.body(()).expect("a valid URL and header names");
        let mut stream = send.send_request(req).await?;
        if !body.is_empty() {
            stream.send_data(Bytes::from(body)).await?;
        }
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        let status = resp.status().as_u16();
        let version = resp.version();
        let mut out = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            if out.len() + chunk.remaining() > MAX_RESPONSE_BYTES {
                stream.stop_sending(h3::error::Code::H3_REQUEST_CANCELLED);
                return Ok(Err(TransportError::BodyTooLarge));
            }
            while chunk.has_remaining() {
                let c = chunk.chunk();
                out.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        Ok(Ok(TransportResponse {
            status,
            body: out,
            version,
        }))
    }
}

impl Transport for H3Transport {
    fn name(&self) -> &'static str {
        "h3"
    }

    async fn post(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<TransportResponse, TransportError> {
        let (mut send, quic) = self.sender().await?;
        match self.exchange(&mut send, path, headers, body).await {
            Ok(r) => r,
            Err(e) => {
                let whole = Self::connection_level(&e, &quic);
                if whole {
                    self.forget(&quic).await;
                    Err(TransportError::Io(format!("h3 connection lost: {e}")))
                } else {
                    Err(TransportError::Io(format!("h3 stream failed: {e}")))
                }
            }
        }
    }
}
