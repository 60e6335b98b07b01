//! The SIP driver's TCP and TLS connections: one tokio task per
//! [`Flow`], around the sans-IO [`StreamConn`] (framing, keep-alives).
//!
//! The driver ([`super::udp`]) hands every message for a TCP/TLS flow to
//! [`Connections::send`]: the flow's connection if it has one, else a new
//! one (connected in its task; messages wait in its queue meanwhile). One
//! connection per flow is reused by every call to that trunk. A connection
//! that fails (connect, TLS handshake, read, write, a framing error, or the
//! peer closing it) reports [`ConnEvent::Closed`] once; the driver then tells
//! the endpoint ([`super::endpoint::Endpoint::handle_flow_failed`]) and the
//! next message to that flow opens a new connection.
//!
//! TLS: tokio-rustls over the sidecar's one ring-only rustls configuration
//! ([`crate::transport::tls::client_config`]): the trunk's `ca_cert` or the
//! system roots; the flow's TLS name is the SNI and the name checked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::msg::Message;
use super::transport::{Flow, StreamConn, Transport, DEFAULT_KEEPALIVE};

/// How the driver's TCP/TLS connections behave.
#[derive(Clone)]
pub struct StreamOptions {
    /// A double-CRLF ping when nothing was written for this long (RFC 5626
    /// 4.4.1); `None`: no pings.
    pub keepalive: Option<Duration>,
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// TLS client configurations by TLS name (a trunk's host or its
    /// `tls_server_name`); a TLS flow whose name is not here cannot connect.
    pub tls: HashMap<String, Arc<rustls::ClientConfig>>,
    /// Connections open at once (flows); a message for one more is dropped
    /// and its flow reported failed.
    pub max_connections: usize,
    /// Messages waiting per connection (e.g. while it connects).
    pub queue: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            keepalive: Some(DEFAULT_KEEPALIVE),
            connect_timeout: Duration::from_secs(5),
            tls: HashMap::new(),
            max_connections: 256,
            queue: 256,
        }
    }
}

impl std::fmt::Debug for StreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOptions")
            .field("keepalive", &self.keepalive)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_names", &self.tls.keys().collect::<Vec<_>>())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// What a connection task tells the driver.
#[derive(Debug)]
pub enum ConnEvent {
    /// A whole message read off the connection.
    Message { flow: Flow, msg: Box<Message> },
    /// The connection is gone (`id` tells it from a later one of the flow).
    Closed { flow: Flow, id: u64, reason: String },
}

/// Why a message could not be handed to a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("too many SIP connections open")]
    TooManyConnections,
    #[error("the connection's queue is full")]
    QueueFull,
    #[error("the connection is closed")]
    Closed,
    #[error("not a stream transport")]
    NotStream,
}

impl SendError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::TooManyConnections => "too_many_connections",
            SendError::QueueFull => "queue_full",
            SendError::Closed => "connection_closed",
            SendError::NotStream => "not_stream",
        }
    }
}

struct Handle {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The driver's open connections, one per flow.
pub struct Connections {
    opts: StreamOptions,
    conns: HashMap<Flow, Handle>,
    next_id: u64,
    events: mpsc::Sender<ConnEvent>,
}

impl Connections {
    /// Connection tasks report on `events`.
    pub fn new(opts: StreamOptions, events: mpsc::Sender<ConnEvent>) -> Connections {
        Connections {
            opts,
            conns: HashMap::new(),
            next_id: 0,
            events,
        }
    }

    /// Connections open (or opening).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Queues `bytes` on `flow`'s connection, opening one if there is none.
    /// `Err`: not sent; the caller reports the flow failed. A connection
    /// whose task already ended (its `Closed` not read yet) counts as
    /// failed now, and its later `Closed` is ignored.
    pub fn send(&mut self, flow: &Flow, bytes: Vec<u8>) -> Result<(), SendError> {
        if !flow.transport.is_reliable() {
            return Err(SendError::NotStream);
        }
        if let Some(h) = self.conns.get(flow) {
            return match h.tx.try_send(bytes) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => Err(SendError::QueueFull),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.conns.remove(flow);
                    Err(SendError::Closed)
                }
            };
        }
        if self.conns.len() >= self.opts.max_connections {
            return Err(SendError::TooManyConnections);
        }
        self.next_id += 1;
        let id = self.next_id;
        let (tx, rx) = mpsc::channel(self.opts.queue.max(1));
        // A fresh channel has room for one message.
        let _ = tx.try_send(bytes);
        let tls = match flow.transport {
            Transport::Tls => flow
                .tls_name
                .as_ref()
                .and_then(|n| self.opts.tls.get(n))
                .cloned(),
            _ => None,
        };
        tracing::info!(%flow, conn = id, "SIP connection opening");
        tokio::spawn(run(
            flow.clone(),
            id,
            tls,
            self.opts.keepalive,
            self.opts.connect_timeout,
            rx,
            self.events.clone(),
        ));
        self.conns.insert(flow.clone(), Handle { id, tx });
        Ok(())
    }

    /// A connection's `Closed`: `true` when it is the flow's current one
    /// (the endpoint must hear of it); it is forgotten.
    pub fn closed(&mut self, flow: &Flow, id: u64) -> bool {
        if self.conns.get(flow).is_some_and(|h| h.id == id) {
            self.conns.remove(flow);
            return true;
        }
        false
    }
}

/// One connection's task: connect (and TLS), then read, write and ping
/// until something fails; says `Closed` once at the end.
async fn run(
    flow: Flow,
    id: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
    keepalive: Option<Duration>,
    connect_timeout: Duration,
    rx: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<ConnEvent>,
) {
    let reason = match connect_and_serve(&flow, tls, keepalive, connect_timeout, rx, &events).await
    {
        Ok(()) => "closed".to_string(),
        Err(e) => e,
    };
    tracing::info!(%flow, conn = id, %reason, "SIP connection closed");
    let _ = events.send(ConnEvent::Closed { flow, id, reason }).await;
}

async fn connect_and_serve(
    flow: &Flow,
    tls: Option<Arc<rustls::ClientConfig>>,
    keepalive: Option<Duration>,
    connect_timeout: Duration,
    rx: mpsc::Receiver<Vec<u8>>,
    events: &mpsc::Sender<ConnEvent>,
) -> Result<(), String> {
    let deadline = Instant::now() + connect_timeout;
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(flow.addr))
        .await
        .map_err(|_| "connect_timeout".to_string())?
        .map_err(|e| format!("connect_failed: {e}"))?;
    // Signalling is small and latency-bound.
    let _ = tcp.set_nodelay(true);
    match flow.transport {
        Transport::Tcp => serve(tcp, flow, keepalive, rx, events).await,
        Transport::Tls => {
            let name = flow.tls_name.clone().unwrap_or_default();
            let config = tls.ok_or_else(|| format!("tls_not_configured: {name}"))?;
            let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| format!("tls_bad_name: {name}"))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let stream = tokio::time::timeout_at(deadline, connector.connect(server_name, tcp))
                .await
                .map_err(|_| "tls_handshake_timeout".to_string())?
                .map_err(|e| format!("tls_handshake_failed: {e}"))?;
            serve(stream, flow, keepalive, rx, events).await
        }
        Transport::Udp => Err("not_stream".into()),
    }
}

/// Most bytes read at once.
const READ_CHUNK: usize = 16 * 1024;

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    flow: &Flow,
    keepalive: Option<Duration>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    events: &mpsc::Sender<ConnEvent>,
) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut conn = StreamConn::new(std::time::Instant::now(), keepalive);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let mut wrote = false;
        while let Some(bytes) = conn.poll_transmit() {
            wr.write_all(&bytes)
                .await
                .map_err(|e| format!("write_failed: {e}"))?;
            wrote = true;
        }
        if wrote {
            // TLS buffers records until flushed.
            wr.flush().await.map_err(|e| format!("write_failed: {e}"))?;
        }
        let far = Instant::now() + Duration::from_secs(3_600);
        let ping_at = conn.poll_timeout().map_or(far, Instant::from_std);
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = r.map_err(|e| format!("read_failed: {e}"))?;
                if n == 0 {
                    return Err("closed_by_peer".into());
                }
                conn.on_bytes(buf.get(..n).unwrap_or_default());
                let now = std::time::Instant::now();
                while let Some(m) = conn.poll_message(now) {
                    let m = m.map_err(|e| format!("framing_error: {}", e.code()))?;
                    let ev = ConnEvent::Message { flow: flow.clone(), msg: Box::new(m) };
                    if events.send(ev).await.is_err() {
                        return Ok(()); // the driver is gone
                    }
                }
            }
            bytes = rx.recv() => match bytes {
                Some(b) => conn.send(std::time::Instant::now(), b),
                None => return Ok(()), // the driver is gone
            },
            _ = tokio::time::sleep_until(ping_at) => {
                conn.handle_timeout(std::time::Instant::now());
            }
        }
    }
}
