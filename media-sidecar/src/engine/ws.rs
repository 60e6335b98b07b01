//! WebSocket plumbing shared by the cloud engines: resolve the host once and
//! vet its addresses when the URL is a tenant's ([`super::guard`]), connect
//! over rustls (ring, system roots, the same config the carriers use) with
//! bounded messages ([`super::limits`]), map handshake failures to
//! [`EngineError`]s, and send without losing messages when the caller's
//! future is dropped (the call task drives engines from `tokio::select!`).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Poll};
use std::time::Duration;

use futures_util::{Sink, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::guard::{self, AllowedHosts};
use super::{limits, EngineError};

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Replaces every secret in `s` by `***` (secrets shorter than 4 chars are left: they would mask noise).
pub fn redact(s: &str, secrets: &[&str]) -> String {
    let mut s = s.to_string();
    for k in secrets {
        if k.len() >= 4 {
            s = s.replace(k, "***");
        }
    }
    s
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, EngineError> {
    static CFG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CFG.get_or_init(|| {
        crate::transport::tls::client_config(None)
            .map(|mut c| {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(c)
            })
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(EngineError::Unavailable)
}

/// What we accept from an engine's server: messages and frames of at most
/// [`limits::MAX_MESSAGE_BYTES`] (see there for why that number).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(limits::MAX_MESSAGE_BYTES))
}

/// Opens `url` (ws:// or wss://) with extra headers, within `timeout`.
/// `secrets` are redacted from every error text.
///
/// The host is resolved here, once; with a `guard` (a tenant's URL) every
/// address must pass [`guard::vet`] and the TCP connection goes to a vetted
/// address, so the name is never looked up again. TLS SNI and `Host` stay
/// the URL's host.
pub async fn connect(
    url: &str,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    secrets: &[&str],
    guard: Option<&AllowedHosts>,
) -> Result<WsStream, EngineError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| EngineError::Protocol(redact(&format!("bad engine url: {e}"), secrets)))?;
    for (k, v) in headers {
        req.headers_mut().insert(k, v);
    }
    let tls = match req.uri().scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(EngineError::Protocol(
                "the engine url must be ws:// or wss://".into(),
            ))
        }
    };
    let host = req
        .uri()
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| EngineError::Protocol("the engine url has no host".into()))?;
    let port = req.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
    let connector = if tls {
        Some(Connector::Rustls(tls_config()?))
    } else {
        None
    };
    let fut = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| {
                EngineError::Unavailable(redact(&format!("cannot resolve {host}: {e}"), secrets))
            })?
            .collect();
        if addrs.is_empty() {
            return Err(EngineError::Unavailable(redact(
                &format!("{host} has no address"),
                secrets,
            )));
        }
        if let Some(allowed) = guard {
            guard::vet(&host, &addrs, allowed)
                .map_err(|why| EngineError::Refused(redact(&why, secrets)))?;
        }
        let mut last_err = None;
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let tcp = match (tcp, last_err) {
            (Some(t), _) => t,
            (None, e) => {
                let e = e.map(|e| e.to_string()).unwrap_or_default();
                return Err(EngineError::Unavailable(redact(
                    &format!("cannot connect: {e}"),
                    secrets,
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio_tungstenite::client_async_tls_with_config(req, tcp, Some(ws_config()), connector)
            .await
            .map_err(|e| map_handshake_error(e, secrets))
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(EngineError::Timeout(format!(
            "no websocket handshake within {} ms",
            timeout.as_millis()
        ))),
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(e)) => Err(e),
    }
}

/// A read error on an open session: a message past our limits is the
/// server breaking the protocol; anything else, a lost connection.
pub fn stream_error(e: tungstenite::Error, secrets: &[&str]) -> EngineError {
    let text = redact(&e.to_string(), secrets);
    match e {
        tungstenite::Error::Capacity(_) => {
            EngineError::Protocol(format!("engine message over our limits: {text}"))
        }
        _ => EngineError::Disconnected(text),
    }
}

fn map_handshake_error(e: tungstenite::Error, secrets: &[&str]) -> EngineError {
    use tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let status = resp.status();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
                .unwrap_or_default();
            let msg = redact(
                &format!("handshake rejected with HTTP {status}: {body}"),
                secrets,
            );
            match status.as_u16() {
                401 | 403 => EngineError::Auth(msg),
                408 => EngineError::Timeout(msg),
                429 | 500..=599 => EngineError::Unavailable(msg),
                _ => EngineError::Protocol(msg),
            }
        }
        E::Io(io) => EngineError::Unavailable(redact(&format!("cannot connect: {io}"), secrets)),
        E::Tls(t) => EngineError::Unavailable(redact(&format!("tls: {t}"), secrets)),
        other => EngineError::Protocol(redact(&format!("handshake: {other}"), secrets)),
    }
}

/// Outgoing messages that survive a dropped future: a message leaves the
/// queue only once the sink has taken it.
#[derive(Default)]
pub struct Outbox {
    q: VecDeque<Message>,
}

impl Outbox {
    pub fn push(&mut self, m: Message) {
        self.q.push_back(m);
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Hands every queued message to `ws` and flushes. Cancel-safe.
    pub async fn flush(&mut self, ws: &mut WsStream) -> Result<(), tungstenite::Error> {
        while !self.q.is_empty() {
            poll_fn(|cx| {
                ready!(Pin::new(&mut *ws).poll_ready(cx))?;
                let m = self.q.pop_front().expect("non-empty");
                Poll::Ready(Pin::new(&mut *ws).start_send(m))
            })
            .await?;
        }
        ws.flush().await
    }
}

/// The next frame from the peer, or `None` when the stream ended.
pub async fn next_frame(ws: &mut WsStream) -> Option<Result<Message, tungstenite::Error>> {
    ws.next().await
}
