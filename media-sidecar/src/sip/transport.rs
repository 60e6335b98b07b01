//! SIP transports (UDP, TCP, TLS) as the endpoint sees them, sans-IO.
//!
//! - [`Transport`]: what a trunk is reached over, and what that means on the
//!   wire (Via's transport token, Contact's `transport` parameter, the
//!   default port) and for the transactions (no retransmissions over a
//!   reliable transport, RFC 3261 17.1.1.2 / 17.1.2.2).
//! - [`Flow`]: where a message goes or came from: a transport and the remote
//!   address (for TLS also the name the peer's certificate must carry). The
//!   driver keeps one connection per TCP/TLS flow, reused by every call.
//! - [`StreamConn`]: one TCP/TLS connection's protocol, fed bytes and time:
//!   Content-Length framing ([`super::msg::StreamFramer`], bounded; a framing
//!   error closes the connection), RFC 5626 4.4.1 keep-alives (a double-CRLF
//!   ping when nothing was sent for the keep-alive interval; a single-CRLF
//!   pong to the peer's ping).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::msg::{Frame, Message, ParseError, StreamFramer};

/// How a trunk is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 26.2: `SIP/2.0/TLS` in Via).
    Tls,
}

impl Transport {
    /// Via's transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The `transport=` URI parameter we put on Contact and the Request-URI
    /// (none for UDP, the default).
    pub fn uri_param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => None,
            Transport::Tcp => Some("tcp"),
            Transport::Tls => Some("tls"),
        }
    }

    /// Stream transports deliver or fail: no request is retransmitted.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The port a URI without one means (RFC 3261 19.1.2): 5061 for TLS.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Udp | Transport::Tcp => 5060,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a SIP message goes or came from. On TCP/TLS the driver keeps one
/// connection per flow; a response goes back on the flow its request came
/// on (RFC 3261 18.2.2), which is then the same connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// TLS only: the name the peer's certificate is checked against (and
    /// the SNI sent): the trunk's host or its `tls_server_name`.
    pub tls_name: Option<String>,
}

impl Flow {
    pub fn udp(addr: SocketAddr) -> Flow {
        Flow {
            transport: Transport::Udp,
            addr,
            tls_name: None,
        }
    }

    /// The same transport (and TLS name) to another address.
    pub fn to(&self, addr: SocketAddr) -> Flow {
        Flow {
            transport: self.transport,
            addr,
            tls_name: self.tls_name.clone(),
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)?;
        if let Some(n) = &self.tls_name {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// RFC 5626 3.5.1: the keep-alive ping a client sends, and the pong.
pub const PING: &[u8] = b"\r\n\r\n";
pub const PONG: &[u8] = b"\r\n";

/// The default keep-alive interval (RFC 5626 4.4.1 suggests a few tens of seconds).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// Why a connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("framing error: {0}")]
    Framing(ParseError),
}

impl StreamError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            StreamError::Framing(e) => e.code(),
        }
    }
}

/// One TCP/TLS connection's SIP protocol, sans-IO: bytes and time in,
/// messages and bytes to write out. The driver owns the socket.
#[derive(Debug)]
pub struct StreamConn {
    framer: StreamFramer,
    keepalive: Option<Duration>,
    /// When the last bytes were written (or the connection opened).
    last_sent: Instant,
    out: VecDeque<Vec<u8>>,
    failed: Option<StreamError>,
    pings_answered: u64,
    pongs_seen: u64,
}

impl StreamConn {
    /// `keepalive`: ping when nothing was written for this long (`None`: never).
    pub fn new(now: Instant, keepalive: Option<Duration>) -> StreamConn {
        StreamConn {
            framer: StreamFramer::new(),
            keepalive: keepalive.filter(|d| !d.is_zero()),
            last_sent: now,
            out: VecDeque::new(),
            failed: None,
            pings_answered: 0,
            pongs_seen: 0,
        }
    }

    /// Queues one message for writing.
    pub fn send(&mut self, now: Instant, bytes: Vec<u8>) {
        self.last_sent = now;
        self.out.push_back(bytes);
    }

    /// Bytes read from the connection.
    pub fn on_bytes(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// The next whole message read; a ping is answered (its pong queued)
    /// on the way. `Some(Err)`: the stream is corrupt; close the connection
    /// (and every later call says so again).
    pub fn poll_message(&mut self, now: Instant) -> Option<Result<Message, StreamError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        loop {
            match self.framer.next_frame()? {
                Ok(Frame::Message(m)) => return Some(Ok(m)),
                Ok(Frame::Ping) => {
                    self.pings_answered += 1;
                    self.send(now, PONG.to_vec());
                }
                Ok(Frame::Pong) => self.pongs_seen += 1,
                Err(e) => {
                    let e = StreamError::Framing(e);
                    self.failed = Some(e.clone());
                    return Some(Err(e));
                }
            }
        }
    }

    /// Bytes to write now, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// When [`StreamConn::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keepalive.map(|k| self.last_sent + k)
    }

    /// Queues a ping when the keep-alive interval passed without a write.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            self.send(now, PING.to_vec());
        }
    }

    /// Pings of the peer answered so far.
    pub fn pings_answered(&self) -> u64 {
        self.pings_answered
    }

    /// Pongs to our pings seen so far.
    pub fn pongs_seen(&self) -> u64 {
        self.pongs_seen
    }

    /// Bytes read but not yet a whole message (bounded by
    /// [`super::msg::MAX_STREAM_BUFFER`]).
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: q\r\nCSeq: 2 OPTIONS\r\nContent-Length: 5\r\n\r\nhello";

    fn drain(c: &mut StreamConn) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    #[test]
    fn transports_say_their_wire_names_and_defaults() {
        assert_eq!(
            [Transport::Udp, Transport::Tcp, Transport::Tls].map(|t| (
                t.via_token(),
                t.uri_param(),
                t.is_reliable(),
                t.default_port()
            )),
            [
                ("UDP", None, false, 5060),
                ("TCP", Some("tcp"), true, 5060),
                ("TLS", Some("tls"), true, 5061)
            ]
        );
    }

    #[test]
    fn messages_are_framed_by_content_length_across_reads_and_pings_answered() {
        let t0 = Instant::now();
        let mut c = StreamConn::new(t0, None);
        let mut wire = Vec::new();
        wire.extend_from_slice(PING);
        wire.extend_from_slice(OPTIONS.as_bytes());
        wire.extend_from_slice(OPTIONS.as_bytes());
        wire.extend_from_slice(PONG);
        let mut got = Vec::new();
        for chunk in wire.chunks(9) {
            c.on_bytes(chunk);
            while let Some(m) = c.poll_message(t0) {
                got.push(m.unwrap());
            }
        }
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|m| m.body == b"hello"));
        // The ping got exactly one pong; the peer's pong needs no answer.
        assert_eq!(drain(&mut c), vec![PONG.to_vec()]);
        assert_eq!((c.pings_answered(), c.pongs_seen()), (1, 1));
    }

    #[test]
    fn a_framing_error_fails_the_connection_for_good() {
        let t0 = Instant::now();
        let mut c = StreamConn::new(t0, None);
        c.on_bytes(OPTIONS.replace("Content-Length: 5\r\n", "").as_bytes());
        let e = c.poll_message(t0).unwrap().unwrap_err();
        assert_eq!(e.code(), "missing_content_length");
        // Even a good message after it is not read: the stream is lost.
        c.on_bytes(OPTIONS.as_bytes());
        assert!(c.poll_message(t0).unwrap().is_err());
    }

    #[test]
    fn an_endless_header_is_refused_not_buffered() {
        let t0 = Instant::now();
        let mut c = StreamConn::new(t0, None);
        c.on_bytes(b"INVITE sip:x@y SIP/2.0\r\nX-Long: ");
        let chunk = vec![b'a'; 8_192];
        let mut failed = None;
        for _ in 0..40 {
            c.on_bytes(&chunk);
            if let Some(r) = c.poll_message(t0) {
                failed = Some(r.unwrap_err());
                break;
            }
        }
        assert_eq!(failed.map(|e| e.code()), Some("too_large"));
        assert!(c.buffered() <= crate::sip::msg::MAX_STREAM_BUFFER);
    }

    #[test]
    fn keepalive_pings_only_after_the_interval_without_writes() {
        let t0 = Instant::now();
        let every = Duration::from_secs(30);
        let mut c = StreamConn::new(t0, Some(every));
        assert_eq!(c.poll_timeout(), Some(t0 + every));
        // A write at 10 s pushes the ping out to 40 s.
        c.send(t0 + Duration::from_secs(10), OPTIONS.as_bytes().to_vec());
        drain(&mut c);
        c.handle_timeout(t0 + every);
        assert!(drain(&mut c).is_empty(), "no ping 20 s after a write");
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(40)));
        c.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(drain(&mut c), vec![PING.to_vec()]);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(70)));
        // Off: never.
        let c = StreamConn::new(t0, Some(Duration::ZERO));
        assert_eq!(c.poll_timeout(), None);
    }
}
