//! WebSocket plumbing shared by the cloud engines: connect over rustls (ring,
//! system roots, the same config the carriers use), map handshake failures
//! to [`EngineError`]s, and send without losing messages when the caller's
//! future is dropped (the call task drives engines from `tokio::select!`).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Poll};
use std::time::Duration;

use futures_util::{Sink, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::EngineError;

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

fn tls() -> Result<Arc<rustls::ClientConfig>, EngineError> {
    static CFG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CFG.get_or_init(|| {
        crate::carrier::tls::client_config(None)
            .map(|mut c| {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(c)
            })
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(EngineError::Unavailable)
}

/// Opens `url` (ws:// or wss://) with extra headers, within `timeout`.
/// `secrets` are redacted from every error text.
pub async fn connect(
    url: &str,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    secrets: &[&str],
) -> Result<WsStream, EngineError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| EngineError::Protocol(redact(&format!("bad engine url: {e}"), secrets)))?;
    for (k, v) in headers {
        req.headers_mut().insert(k, v);
    }
    let connector = if url.starts_with("wss:") {
        Some(Connector::Rustls(tls()?))
    } else {
        None
    };
    let fut = tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector);
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(EngineError::Timeout(format!(
            "no websocket handshake within {} ms",
            timeout.as_millis()
        ))),
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(e)) => Err(map_handshake_error(e, secrets)),
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
