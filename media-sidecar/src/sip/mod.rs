//! SIP signalling for outbound calls (issue 4), sans-IO with a thin tokio driver.
//!
//! - [`msg`]: parse/serialise (framing, Content-Length, compact names, line
//!   folding, strict start lines; stable error codes; rsip 0.4 typed view).
//! - [`auth`]: Digest (MD5/SHA-256, qop=auth, hex nonce count).
//! - [`sdp`]: offer PCMU/PCMA/opus/telephone-event; parse the answer.
//! - [`redirect`]: which 3xx Contact a call may follow (configured hosts only).
//! - [`session_timer`]: RFC 4028 header values and arithmetic.
//! - [`transaction`]: RFC 3261 INVITE / non-INVITE client transactions.
//! - [`call`]: the UAC dialog: INVITE -> 1xx -> 2xx/ACK -> BYE, CANCEL,
//!   auth retry, final-response mapping, trunk failover signal, and the
//!   server side for in-dialog BYE / re-INVITE / UPDATE / OPTIONS.
//! - [`endpoint`]: many calls on one address, sans-IO: Call-ID demux,
//!   stateless 481 / OPTIONS replies, trunk failover, bounds.
//! - [`text_message`]: texts (SMS) as out-of-dialog MESSAGE (RFC 3428):
//!   the client transaction with Digest retry, inbound parsing (text,
//!   IMDN delivery notifications, CPIM), the inbound server transactions.
//! - [`dns`]: trunk hosts resolved as RFC 3263 says (NAPTR, SRV with
//!   weights, A/AAAA; TTL refresh), sans-IO, with a hickory-resolver driver.
//! - [`registrar`]: the registrar for users' phones (issue 16): Digest
//!   challenges with stateless nonces, 423, `Contact: *`, bounds; the edge
//!   checks the answers and holds the bindings.
//! - [`register`]: a trunk's registration (REGISTER with Digest, refresh
//!   before expiry, 423, retry with backoff, un-REGISTER on shutdown).
//! - [`transport`]: UDP / TCP / TLS as the endpoint sees them ([`transport::Flow`]),
//!   and one TCP/TLS connection's protocol, sans-IO (framing, keep-alives).
//! - [`udp`]: the tokio driver of the endpoint (one UDP socket, and the
//!   TCP/TLS connections of [`stream`]), an async API for the call task.
//! - [`stream`]: the tokio side of TCP/TLS connections (connect, TLS, read
//!   and write around [`transport::StreamConn`]).

pub mod auth;
pub mod call;
pub mod dns;
pub mod endpoint;
pub mod msg;
pub mod redirect;
pub mod register;
pub mod registrar;
pub mod sdp;
pub mod session_timer;
pub mod stream;
pub mod text_message;
pub mod transaction;
pub mod transport;
pub mod uas;
pub mod udp;

pub use call::{Call, CallConfig, DialogEnd, DialogEvent, ReferEvent};
pub use endpoint::{CallId, Endpoint, EndpointConfig};
