//! The edge <-> media sidecar dispatch protocol, version 1.
//!
//! The sidecar dials OUT to the edge (Workers cannot open UDP/QUIC) and speaks
//! plain JSON over HTTP POSTs, carried by HTTP/3 (QUIC) where the edge offers it
//! or by HTTP/1.1 keep-alive otherwise. Every request is signed (see
//! [`crate::signing`]). The endpoints:
//!
//! | path                     | request body        | 2xx response body  |
//! |--------------------------|---------------------|--------------------|
//! | `POST /v1/sidecar/register` | [`Registration`] | [`RegistrationAck`] |
//! | `POST /v1/sidecar/lease`    | [`LeaseRequest`] | [`LeaseResponse`] (long-poll) |
//! | `POST /v1/sidecar/ack`      | [`Ack`]          | [`AckReceipt`]      |
//! | `POST /v1/sidecar/events`   | [`EventBatch`]   | [`EventsAck`]       |
//! | `POST /v1/sidecar/deregister` | [`Deregistration`] | `{"protocol_version"}` |
//! | `POST /v1/sidecar/recording` | the WAV bytes (`audio/wav`); [`RecordingManifest`] in the `x-voxline-recording` header | [`RecordingReceipt`] |
//! | `POST /v1/sidecar/message-results` | [`MessageResult`] | [`MessageResultAck`] |
//! | `POST /v1/sidecar/inbound-messages` | [`InboundMessage`] | [`InboundMessageReceipt`] |
//! | `POST /v1/sidecar/inbound-calls` | [`InboundCall`] | [`InboundCallAnswer`] |
//! | `POST /v1/sidecar/registrations` | [`PhoneRegistration`] | [`PhoneRegistrationAnswer`] |
//! | `POST /v1/sidecar/transcripts` | [`CallTranscript`] | [`CallTranscriptReceipt`] |
//!
//! Calls a trunk places to one of a tenant's numbers (issue 16): the sidecar
//! rings the caller (180) and asks the edge with one [`InboundCall`]; the
//! edge answers in that round trip with an [`Offer`] the sidecar runs as it
//! runs a leased one (the call is already held by that sidecar: no ack), or
//! with the SIP code to refuse the caller with. No answer, or not a 2xx:
//! `480 Temporarily Unavailable`.
//!
//! Users' SIP phones register with a sidecar (issue 16): the sidecar
//! challenges a REGISTER with Digest, and forwards the answer with one
//! [`PhoneRegistration`]; the edge checks it against the HA1 it stores for
//! the user (see [`phone_accounts`]), records the bindings, and answers in
//! that round trip with the user and their bindings, or a refusal with the
//! SIP code to answer the phone with. No answer, or not a 2xx: `503`.
//!
//! Text messages (SMS sent as SIP MESSAGE, RFC 3428) ride the same lease:
//! [`LeaseResponse::messages`] hands a sidecar [`MessageOffer`]s to send
//! through its trunk. They are **at most once**: there is no ack step and no
//! re-lease; the sidecar sends each `message_id` once (it remembers the ids it
//! has sent) and reports the trunk's final answer as a [`MessageResult`]; the
//! edge fails a message whose result has not come by its `deadline_ms`
//! (a text sent twice is worse than one reported lost). A MESSAGE the trunk
//! sends us becomes an [`InboundMessage`]; the sidecar answers the trunk only
//! after the edge's answer (2xx: `200 OK`; `404`: the number is nobody's, `404
//! Not Found`; anything else or no answer: `480 Temporarily Unavailable`, so the
//! trunk retries and nothing is lost).
//!
//! The recording upload is the one request whose body is not JSON: what is
//! signed is the manifest (compact JSON, exactly as sent in the header), and
//! the manifest carries the body's length and SHA-256, which the edge has its
//! object store verify while it streams the body in (so the edge never holds a
//! whole recording in memory).
//!
//! ## Status codes the sidecar acts on
//! - `2xx`: done.
//! - `401` (signature or sidecar unknown) and `410` (registration expired, e.g.
//!   the edge declared the sidecar dead): the sidecar re-registers, then retries.
//! - `409` on `/ack`: the lease is no longer this sidecar's (ack deadline passed,
//!   re-leased): the sidecar must NOT dial that call.
//! - `400`, `413`, `422` on `/events`: the batch can never succeed; it is dropped
//!   (and logged) rather than wedging the queue.
//! - anything else (`429`, `5xx`, transport errors, timeouts): retry with backoff.
//!
//! ## Versioning
//! [`PROTOCOL_VERSION`] is carried in every top-level message (requests and
//! responses). Within one version, changes are additive only: new optional
//! fields (receivers ignore fields they do not know; serde's default), new
//! [`Command`] kinds (old sidecars parse them as [`Command::Unknown`] and ignore
//! them) and new [`EventKind`]s (edges parse them as [`EventKind::Unknown`] and
//! ignore them; `summary` came before that rule, so an edge must be deployed
//! before sidecars that send it). Anything else bumps the version; a receiver that gets a version it does
//! not speak answers `400` with error code `unsupported_protocol_version`.
//!
//! ## Time
//! All `*_ms` instants are unix epoch milliseconds; durations are named as such
//! in their docs. Nothing here reads a clock: callers pass time in.

use serde::{Deserialize, Serialize};

use crate::call::{CallStatus, EndedReason};
use crate::engine::OfferedEngine;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Request paths (all `POST`, JSON bodies, `Content-Type: application/json`).
pub mod paths {
    pub const REGISTER: &str = "/v1/sidecar/register";
    pub const LEASE: &str = "/v1/sidecar/lease";
    pub const ACK: &str = "/v1/sidecar/ack";
    pub const EVENTS: &str = "/v1/sidecar/events";
    pub const RECORDING: &str = "/v1/sidecar/recording";
    pub const DEREGISTER: &str = "/v1/sidecar/deregister";
    pub const MESSAGE_RESULTS: &str = "/v1/sidecar/message-results";
    pub const INBOUND_MESSAGES: &str = "/v1/sidecar/inbound-messages";
    pub const INBOUND_CALLS: &str = "/v1/sidecar/inbound-calls";
    pub const TOOL_CALLS: &str = "/v1/sidecar/tool-calls";
    pub const REGISTRATIONS: &str = "/v1/sidecar/registrations";
    pub const TRANSCRIPTS: &str = "/v1/sidecar/transcripts";
}

/// The header carrying a recording upload's [`RecordingManifest`].
pub const HEADER_RECORDING_MANIFEST: &str = "x-voxline-recording";

/// Largest recording the edge takes in one upload: an hour of 8 kHz stereo
/// 16-bit WAV is 115 MB. (Cloudflare's own request limit depends on the plan:
/// 100 MB on Free/Pro, 500 MB on Enterprise.)
pub const MAX_RECORDING_BYTES: u64 = 128 * 1024 * 1024;

/// What a recording upload carries besides its bytes. Signed in place of the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingManifest {
    pub protocol_version: u32,
    pub sidecar_id: String,
    /// From the [`Offer`]; with `call_id` it names the call record.
    pub tenant_id: String,
    pub call_id: String,
    pub attempt: u32,
    /// `audio/wav` (stereo: left = the AI, what the sidecar sent; right = the callee).
    pub content_type: String,
    /// Exact body length.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the body.
    pub sha256: String,
    pub duration_ms: u64,
}

/// The edge's 2xx answer to a recording upload: it is stored (idempotent: the
/// same upload again answers the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingReceipt {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub call_id: String,
    pub attempt: u32,
    pub bytes: u64,
}

/// Most turns in one [`CallTranscript`] (the edge answers 422 beyond).
pub const MAX_TRANSCRIPT_TURNS: usize = 1000;
/// Most characters of one turn's text in a [`CallTranscript`] (422 beyond).
pub const MAX_TRANSCRIPT_TURN_CHARS: usize = 2000;
/// Most characters of all turns' texts together (422 beyond): two hours of
/// speech are about 100,000.
pub const MAX_TRANSCRIPT_CHARS: usize = 200_000;
/// Largest `POST /v1/sidecar/transcripts` body, in bytes (413 beyond; other
/// link requests take 64 KiB): [`MAX_TRANSCRIPT_CHARS`] of text (up to 4
/// bytes each as UTF-8) is under 800 KiB, each turn's JSON adds under 100.
pub const MAX_TRANSCRIPT_BYTES: usize = 1024 * 1024;

/// `POST /v1/sidecar/transcripts`: the transcript of a call that had no engine
/// (a person's bridged call, a voicemail message), made after the call from
/// its recording. Sent after `ended`, retried like a recording upload and
/// spooled beside it. The edge keeps the turns only for a call with no
/// transcript of its own, once per `(call_id, attempt)` (a repeat answers the
/// same receipt), then sends `transcript.saved` (and Voice360's
/// `TRANSCRIPTION_FINISHED`). More than [`MAX_TRANSCRIPT_TURNS`] turns or a
/// turn longer than [`MAX_TRANSCRIPT_TURN_CHARS`] is refused (422).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTranscript {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub tenant_id: String,
    pub call_id: String,
    pub attempt: u32,
    /// Which recogniser made it: `local` (the sidecar's pocketsphinx).
    pub source: String,
    /// Sorted by `start_ms`. `agent`: the person (the recording's left
    /// channel); `callee`: the other party (right).
    pub turns: Vec<CallTranscriptTurn>,
}

/// One turn of a [`CallTranscript`]: offsets from the recording's start, in ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTranscriptTurn {
    pub role: Role,
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// The edge's 2xx answer to a [`CallTranscript`]: `stored` is false when the
/// call already had a transcript (nothing changed; do not resend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTranscriptReceipt {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub call_id: String,
    pub attempt: u32,
    pub stored: bool,
}

/// Error code the edge uses (in its usual error body) for a version it does not speak.
pub const UNSUPPORTED_VERSION_CODE: &str = "unsupported_protocol_version";

/// Reasons a sidecar gives when it rejects an offer (`Ack.reason`).
pub mod reject_reasons {
    /// Every slot is taken.
    pub const AT_CAPACITY: &str = "at_capacity";
    /// The sidecar is shutting down and takes no new work.
    pub const DRAINING: &str = "draining";
    /// The sidecar already holds this call under another lease.
    pub const ALREADY_HELD: &str = "already_held";
    /// The offer names an engine this sidecar does not run.
    pub const UNSUPPORTED_ENGINE: &str = "unsupported_engine";
}

/// The longest long-poll the sidecar asks for; the edge clamps `wait_ms` to it.
pub const MAX_LEASE_WAIT_MS: u32 = 60_000;

/// Longest sidecar id / region accepted.
pub const MAX_ID_LEN: usize = 64;

/// Sidecar ids and regions: 1..=64 chars of `[A-Za-z0-9._-]`, starting with a
/// letter or digit. Both sides use this one rule.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A message arrived with a version this build does not speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionMismatch {
    pub got: u32,
    pub expected: u32,
}

impl core::fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "protocol version {} (this build speaks {})",
            self.got, self.expected
        )
    }
}

impl std::error::Error for VersionMismatch {}

/// `Ok` when `v` is [`PROTOCOL_VERSION`].
pub fn check_version(v: u32) -> Result<(), VersionMismatch> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(VersionMismatch {
            got: v,
            expected: PROTOCOL_VERSION,
        })
    }
}

fn default_version() -> u32 {
    PROTOCOL_VERSION
}

/// `POST /v1/sidecar/register`: a sidecar announces itself (at start, and again
/// after any `401`/`410`). Registering again is idempotent on the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub region: String,
    /// Concurrent calls this sidecar can hold.
    pub capacity: u32,
    /// The sidecar build (`CARGO_PKG_VERSION`), for logs and the dashboard.
    pub version: String,
}

/// `POST /v1/sidecar/deregister`: the sidecar is leaving (its last request).
/// The edge hands it nothing more, not even through a long-poll still open
/// on its behalf, returns its unacked offers to the queue and ends any call
/// it still holds as `media_lost` (retried per policy) at once, rather than
/// after the ack deadline or `dead_after_ms`. Registering again undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregistration {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub region: String,
}

/// The edge's answer to [`Registration`]: the link's timing contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationAck {
    pub protocol_version: u32,
    /// Duration: how long a lease long-poll should wait (the sidecar uses it as `wait_ms`).
    pub lease_wait_ms: u32,
    /// Duration: how long after leasing an offer the edge waits for its [`Ack`]
    /// before re-leasing it. The absolute per-offer deadline is [`Offer::ack_deadline_ms`].
    pub ack_deadline_ms: u64,
    /// Duration: a sidecar that has not polled `/lease` for this long is presumed
    /// dead; its calls are failed and retried per policy, and its next request gets `410`.
    pub dead_after_ms: u64,
}

/// `POST /v1/sidecar/lease`: long-poll for offers and commands. The edge answers
/// as soon as it has offers (never more than `free_slots`) or commands, or after
/// `wait_ms` with empty lists. Each poll is also the sidecar's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub region: String,
    /// How many offers the sidecar can take now. `0` = send only commands.
    pub free_slots: u32,
    /// Every call this sidecar holds: from its accepting ack until the edge has
    /// acknowledged the call's `ended` event. A call the edge believes is held
    /// here but which is missing from this list has been lost (e.g. a restart).
    pub held_calls: Vec<String>,
    /// Duration to wait for work before answering empty; clamped by the edge to
    /// [`MAX_LEASE_WAIT_MS`].
    pub wait_ms: u32,
}

/// The answer to a [`LeaseRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseResponse {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    #[serde(default)]
    pub offers: Vec<Offer>,
    #[serde(default)]
    pub commands: Vec<Command>,
    /// Text messages to send through the trunk (not counted in `free_slots`;
    /// at most [`MAX_MESSAGES_PER_LEASE`]). Absent from edges that predate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageOffer>,
}

impl LeaseResponse {
    pub fn empty() -> Self {
        LeaseResponse {
            protocol_version: PROTOCOL_VERSION,
            offers: vec![],
            commands: vec![],
            messages: vec![],
        }
    }
}

/// Most [`MessageOffer`]s in one [`LeaseResponse`].
pub const MAX_MESSAGES_PER_LEASE: usize = 20;

/// Longest text message body, in characters (Unicode scalar values). The
/// public APIs may bound it lower (Voice360: 160).
pub const MAX_MESSAGE_CHARS: usize = 1600;

/// One text message for a sidecar to send as a SIP MESSAGE (RFC 3428,
/// `Content-Type: text/plain;charset=UTF-8`) through its trunk, with the
/// trunk's digest credentials when challenged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageOffer {
    /// `msg_<hex>`: unique; the sidecar sends each id at most once.
    pub message_id: String,
    pub tenant_id: String,
    /// E.164: one of the tenant's numbers (the From user part).
    pub from: String,
    /// E.164 (the Request-URI and To user part).
    pub to: String,
    /// At most [`MAX_MESSAGE_CHARS`] characters.
    pub body: String,
    /// Absolute (unix ms, edge clock): after this the edge reports the
    /// message failed (`no_result`); a sidecar that has not sent it by then
    /// must not send it.
    pub deadline_ms: u64,
}

/// What became of a [`MessageOffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOutcome {
    /// The trunk answered 2xx (accepted for delivery; not yet delivered).
    Sent,
    /// A final non-2xx, a transaction timeout, or the sidecar could not send.
    Failed,
}

/// `POST /v1/sidecar/message-results`: the trunk's final answer to one
/// message. Idempotent on the edge (the first result of a message wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResult {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub message_id: String,
    pub outcome: MessageOutcome,
    /// The trunk's final status code; `None` when none came (timeout, transport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
    /// A stable word for a failure: `rejected` (final 4xx-6xx), `timeout`,
    /// `transport`, `expired` (the deadline passed before sending), `no_trunk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The IMDN `Message-ID` (RFC 5438) the sidecar put on the MESSAGE, so a
    /// later delivery notification can be matched to this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdn_message_id: Option<String>,
    /// When the final answer came (unix ms, sidecar clock).
    pub at_ms: u64,
}

/// The edge's 2xx answer to a [`MessageResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResultAck {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub message_id: String,
}

/// What a MESSAGE from the trunk carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundContent {
    /// A text message (`text/plain`), at most [`MAX_MESSAGE_CHARS`] characters.
    Text { body: String },
    /// A delivery notification (`message/imdn+xml`, RFC 5438) about a
    /// message we sent: `imdn_message_id` is the one in our [`MessageResult`];
    /// `status` is the IMDN word (`delivered`, `failed`, `forbidden`, `error`).
    DeliveryReport {
        imdn_message_id: String,
        status: String,
    },
    /// A kind added after this build: acknowledged and ignored.
    #[serde(other)]
    Unknown,
}

/// `POST /v1/sidecar/inbound-messages`: a MESSAGE the trunk sent us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub region: String,
    /// The sender (E.164 where the From user part is a number, else as given).
    pub from: String,
    /// The number it was sent to (E.164): decides the tenant.
    pub to: String,
    pub content: InboundContent,
    /// The SIP Call-ID of the MESSAGE: with `from`, the edge dedupes a
    /// retransmission the sidecar forwarded twice.
    pub sip_call_id: String,
    /// When it arrived (unix ms, sidecar clock).
    pub received_ms: u64,
}

/// The edge's 2xx answer to an [`InboundMessage`]: recorded (or a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessageReceipt {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    /// The message's id at the edge (`msg_<hex>`), or the one it reported on.
    pub message_id: String,
}

/// `POST /v1/sidecar/inbound-calls`: an INVITE a trunk sent us, ringing
/// now. Not retried by the sidecar (the caller is waiting): one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundCall {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub region: String,
    /// The number called (E.164, the Request-URI or To user part): decides
    /// the tenant and the route.
    pub called: String,
    /// Who calls (the From user part; E.164 where it is a number, else as given).
    pub caller: String,
    /// The INVITE's SIP Call-ID (logs).
    pub sip_call_id: String,
    /// When the INVITE arrived (unix ms, sidecar clock).
    pub received_ms: u64,
}

/// Why an [`InboundCall`] is refused (`reason` of [`InboundDecision::Refuse`]).
pub mod inbound_refusals {
    /// No tenant has the number, or it is not in service: `404`.
    pub const UNKNOWN_NUMBER: &str = "unknown_number";
    /// The number has no route this edge can answer (none, or a queue: not
    /// yet served): `480`.
    pub const NO_ROUTE: &str = "no_route";
    /// The number's agent is gone or disabled: `480`.
    pub const AGENT_UNAVAILABLE: &str = "agent_unavailable";
    /// The tenant's concurrent-call cap is reached: `486`.
    pub const AT_CAPACITY: &str = "at_capacity";
    /// The edge could not store the call: `503`.
    pub const UNAVAILABLE: &str = "unavailable";
    /// The number's person has no phone registered with the asking sidecar
    /// (and no forwarding), or is gone: `480`.
    pub const USER_UNAVAILABLE: &str = "user_unavailable";
}

/// How long a person's phones ring before the caller hears 480 (a user's
/// profile has no ring timeout of its own yet).
pub const DEFAULT_RING_TIMEOUT_SECONDS: u32 = 30;

/// The person an inbound call rings (issue 16): the sidecar forks an INVITE
/// to each contact it holds for `user_pk` of the offer's tenant, the first
/// answer is bridged to the caller, and nothing answering within
/// `ring_timeout_seconds` ends the call `no_answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingUser {
    /// The directory user's `pk`.
    pub user_pk: u64,
    pub extension: String,
    /// Their name on calls (the directory's `caller_id`).
    pub display_name: String,
    pub ring_timeout_seconds: u32,
    /// The profile forwards calls here (E.164): when none of their phones
    /// is registered here (the edge then answers with this alone) or none
    /// answers. Absent: no forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_number: Option<String>,
    /// The profile's voicemail is on: a call nobody answered (and not
    /// forwarded) is answered with a greeting and the caller's message is
    /// recorded (the call's recording; `ended` reason `voicemail`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voicemail: bool,
}

/// The most members one queue call rings ([`QueuePlan::members`]).
pub const MAX_QUEUE_MEMBERS: usize = 50;

/// A queue an inbound call waits in (issue 16), decided by the edge: the
/// sidecar answers the caller, plays hold audio and says their position,
/// rings the members (all at once, or one after another in the order
/// given: the edge orders them by the queue's strategy), bridges the first
/// that answers, and after `max_wait_seconds` overflows as `overflow` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePlan {
    /// The directory queue's `pk`.
    pub queue_pk: u64,
    pub name: String,
    pub extension: String,
    /// Ring every available member at once (`ringall`); otherwise one at a
    /// time, in `members`' order.
    pub ring_all: bool,
    /// At most [`MAX_QUEUE_MEMBERS`], in ring order. Members on a call (the
    /// edge's view) are left out unless the queue rings members in use.
    pub members: Vec<RingUser>,
    /// How long one member (or one ring-all round) rings.
    pub member_timeout_seconds: u32,
    /// The pause between two rounds of ringing.
    pub retry_seconds: u32,
    /// The longest the caller waits before the overflow.
    pub max_wait_seconds: u32,
    /// Say the caller's position every this many seconds (0: never).
    #[serde(default)]
    pub announce_every_seconds: u32,
    /// The caller's position when they entered (1: next), as the edge
    /// counted the calls waiting in this queue.
    #[serde(default = "first_position")]
    pub position: u32,
    pub overflow: QueueOverflow,
}

fn first_position() -> u32 {
    1
}

/// What happens to a caller nobody in the queue answered in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOverflow {
    /// The offer's agent answers (its engine starts on the caller's leg).
    Agent,
    /// The caller leaves a message (`ended` reason `voicemail`).
    Voicemail,
    /// The call ends `no_answer` / `queue_timeout`.
    #[default]
    Hangup,
}

/// A person's call the sidecar connects without an engine (issue 16),
/// carried by the offer ([`Offer::connect`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Connect {
    /// Click-to-call: ring `user`'s phones first (the contacts registered
    /// with the sidecar that leased the offer; none there: the call fails
    /// `no_answer` / 480); once one answers, dial the offer's `phone`
    /// through the trunks with the offer's `caller_number` as caller ID, and
    /// bridge the two legs (recorded both sides when the offer says
    /// `record`).
    ClickToCall { user: RingUser },
}

/// What the edge decided about an [`InboundCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum InboundDecision {
    /// Answer it and run this offer (its `phone` is the caller, its
    /// `caller_number` the number called; `lease_id` and `ack_deadline_ms`
    /// mean nothing: the call is this sidecar's already).
    Answer { offer: Box<Offer> },
    /// Ring a person's phones (the number routes to a user): the offer
    /// carries the call (its `agent_id` is empty, its engine runs nothing),
    /// `ring` says whom. Sidecars that predate it cannot read the answer and
    /// refuse the caller.
    RingUser { offer: Box<Offer>, ring: RingUser },
    /// Put the caller in a queue ([`QueuePlan`]); the offer carries the
    /// call and, with [`QueueOverflow::Agent`], the overflow agent's engine.
    Queue { offer: Box<Offer>, queue: QueuePlan },
    /// Refuse the caller with `sip_code` (see [`inbound_refusals`]).
    Refuse { sip_code: u16, reason: String },
}

/// The edge's 2xx answer to an [`InboundCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundCallAnswer {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    #[serde(flatten)]
    pub decision: InboundDecision,
}

/// How a user's SIP phone names its account (issue 16). One realm for
/// every tenant, so the HA1 the edge stores stays valid whichever sidecar
/// the phone registers with; one username per directory user that names
/// the tenant and the user, so any sidecar (serving many tenants) and the
/// edge find the user from what the phone sends alone.
pub mod phone_accounts {
    /// The Digest realm of every phone account.
    pub const REALM: &str = "voxline";

    /// `<user pk>.<tenant id>`, e.g. `7.ten_0123456789abcdef0123`: the pk
    /// (not the extension, which may change) keeps HA1 valid for the life
    /// of the user.
    pub fn username(tenant_id: &str, user_pk: u64) -> String {
        format!("{user_pk}.{tenant_id}")
    }

    /// (tenant id, user pk) of a [`username`]; `None` for anything else.
    pub fn parse_username(username: &str) -> Option<(&str, u64)> {
        let (pk, tenant) = username.split_once('.')?;
        let pk_ok = !pk.is_empty()
            && pk.len() <= 16
            && !pk.starts_with('0')
            && pk.bytes().all(|b| b.is_ascii_digit());
        let tenant_ok = tenant.strip_prefix("ten_").is_some_and(|h| {
            (10..=40).contains(&h.len())
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !pk_ok || !tenant_ok {
            return None;
        }
        Some((tenant, pk.parse().ok()?))
    }
}

/// Most contacts one [`PhoneRegistration`] may carry, and most bindings the
/// edge keeps per user.
pub const MAX_PHONE_CONTACTS: usize = 10;

/// The Digest answer of a REGISTER, as the phone sent it (`Authorization`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestAnswer {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// The request's method (`REGISTER`): part of what is hashed.
    pub method: String,
    pub response: String,
    /// `MD5` when the phone named none.
    pub algorithm: String,
    #[serde(default)]
    pub qop: Option<String>,
    #[serde(default)]
    pub nc: Option<String>,
    #[serde(default)]
    pub cnonce: Option<String>,
}

/// One Contact of a REGISTER with the expiry the sidecar grants it
/// (already within its configured bounds; 0 removes the binding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedContact {
    pub uri: String,
    pub expires_seconds: u32,
}

/// `POST /v1/sidecar/registrations`: a phone's REGISTER whose Digest
/// answer the sidecar could not check itself (it holds no credentials).
/// Not retried by the sidecar (the phone retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneRegistration {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub region: String,
    pub digest: DigestAnswer,
    /// The REGISTER's Call-ID and CSeq number: the edge applies a binding's
    /// change only in order (RFC 3261 10.3 step 7).
    pub sip_call_id: String,
    pub cseq: u32,
    /// The bindings to add, refresh (expiry > 0) or remove (0). Empty:
    /// the REGISTER only asks for the current list.
    #[serde(default)]
    pub contacts: Vec<RequestedContact>,
    /// `Contact: *` with `Expires: 0`: every binding of the user goes.
    #[serde(default)]
    pub remove_all: bool,
    /// Where the REGISTER came from (`ip:port`) and over what (`udp`,
    /// `tcp`, `tls`): the phone is reached there, through this sidecar.
    pub source: String,
    pub transport: String,
    /// When the REGISTER arrived (unix ms, sidecar clock).
    pub received_ms: u64,
}

/// Why a [`PhoneRegistration`] is refused (`reason` of [`PhoneRegistrationDecision::Refuse`]).
pub mod registration_refusals {
    /// The username names no user (or the tenant is gone or disabled): `404`.
    pub const UNKNOWN_USER: &str = "unknown_user";
    /// The Digest answer is wrong, or the user has no SIP password: `403`.
    pub const BAD_CREDENTIALS: &str = "bad_credentials";
    /// The user holds [`super::MAX_PHONE_CONTACTS`] bindings already: `403`.
    pub const TOO_MANY_BINDINGS: &str = "too_many_bindings";
    /// A REGISTER of the same Call-ID with a CSeq not above the binding's
    /// (a retransmission or a reordering): `500`.
    pub const OUT_OF_ORDER: &str = "out_of_order";
    /// The edge could not store it: `503`.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// One live binding of a user (what a 200 to REGISTER lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneBinding {
    pub contact: String,
    /// Seconds left.
    pub expires_seconds: u32,
    /// The sidecar holding it (a phone is reached only through it).
    pub sidecar_id: String,
}

/// What the edge decided about a [`PhoneRegistration`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum PhoneRegistrationDecision {
    /// Recorded: the user, and all their live bindings (any sidecar's).
    Accept {
        tenant_id: String,
        user_pk: u64,
        extension: String,
        bindings: Vec<PhoneBinding>,
    },
    /// Answer the phone with `sip_code` (see [`registration_refusals`]).
    Refuse { sip_code: u16, reason: String },
}

/// The edge's 2xx answer to a [`PhoneRegistration`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneRegistrationAnswer {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    #[serde(flatten)]
    pub decision: PhoneRegistrationDecision,
}

/// Longest [`Offer::caller_name`], in characters (the create-call API's bound too).
pub const MAX_CALLER_NAME_CHARS: usize = 64;

/// One call offered to a sidecar under a lease. The sidecar must [`Ack`] it
/// (accept or reject) before `ack_deadline_ms`, and dials only once the edge
/// has confirmed an accepting ack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Unique per leasing of a call; a re-lease gets a new one.
    pub lease_id: String,
    pub call_id: String,
    /// The call's tenant (names the call in a recording upload). Empty from
    /// edges that predate it.
    #[serde(default)]
    pub tenant_id: String,
    /// 1 for the first try, +1 per retry of the same call.
    pub attempt: u32,
    /// E.164.
    pub phone: String,
    /// The caller-ID label the callee is shown: the From header's
    /// display-name for this call, over the trunk's (at most
    /// [`MAX_CALLER_NAME_CHARS`] characters; the sidecar bounds and quotes
    /// it again). Absent from edges that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    /// The caller ID number (E.164) the callee is shown: the From header's
    /// user part for this call, over the trunk's own. The edge sends only
    /// one of the tenant's numbers. Absent from edges that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_number: Option<String>,
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// BCP-47.
    pub language: String,
    /// `local`, `openai_realtime`, `gemini_live`, ...; a kind this build
    /// does not know is kept by name (the sidecar refuses the offer with
    /// [`reject_reasons::UNSUPPORTED_ENGINE`]).
    pub engine: OfferedEngine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Hard cap on the call's duration once answered.
    pub max_seconds: u32,
    /// Hang up after this long with neither side speaking (`None`: the sidecar's default, 30 s).
    /// Sent as `silence_timeout_secs` by edges before the rename; read either way.
    #[serde(
        default,
        alias = "silence_timeout_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub silence_timeout_seconds: Option<u32>,
    pub record: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// The engine API key of this call (its own or its agent's): use it for
    /// this call only, never store or log it. `None`: the sidecar's own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_api_key: Option<SecretText>,
    /// The engine endpoint of this call (its own or its agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_base_url: Option<String>,
    /// The call has a key the edge could not open (its sealing secret
    /// changed): fail the engine rather than fall back to the sidecar's key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub engine_key_unavailable: bool,
    /// Absolute (unix ms, edge clock): the ack must reach the edge before this.
    pub ack_deadline_ms: u64,
    /// Who speaks first once the callee answers (the call's agent setting):
    /// the agent greets at the answer, or waits for the callee's first words.
    /// Absent (and so `agent`) from edges that predate it.
    #[serde(default, skip_serializing_if = "FirstSpeaker::is_agent")]
    pub first_speaker: FirstSpeaker,
    /// The agent's post-call analysis plan: an engine that can read the
    /// call (a cloud engine) is asked for its analysis before the end is
    /// reported. Absent: none (and from edges that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<crate::analysis::AnalysisPlan>,
    /// Answering-machine detection and what to do about a machine (the
    /// call's or its agent's `amd`, issue 18). Absent (and so `off`) from
    /// edges that predate it.
    #[serde(default, skip_serializing_if = "AmdMode::is_off")]
    pub amd: AmdMode,
    /// With `amd: leave_message`: the words to leave on a machine after its
    /// beep (synthesised by the sidecar's local TTS); `None`: the agent
    /// speaks its own greeting instead. Then the sidecar hangs up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd_message: Option<String>,
    /// The customer tools of the call's agent (issue 18): what the engine
    /// declares to the model. Never their URLs or secrets: the edge calls
    /// them ([`ToolCall`]). Absent (none) from edges that predate it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<OfferedTool>,
    /// A person's call, connected without an engine (issue 16): absent for
    /// an agent's call. Sidecars that predate it would run it as an agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Connect>,
    /// The people of the tenant the agent's `transfer` tool may name by
    /// extension (issue 16): the only extensions it can reach (a model
    /// never names an address). At most [`MAX_TRANSFER_PEOPLE`]. Absent
    /// (none) from edges that predate it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfer_people: Vec<TransferPerson>,
}

/// The most people an offer lists for the `transfer` tool.
pub const MAX_TRANSFER_PEOPLE: usize = 100;

/// A person the agent may transfer to ([`Offer::transfer_people`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferPerson {
    pub user_pk: u64,
    pub extension: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Answering-machine detection for a call (issue 18): whether the sidecar
/// classifies who answered and what it does when a machine did. The same
/// words in the API, in KV and on the sidecar link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmdMode {
    /// No detection: the conversation starts at the answer.
    #[default]
    Off,
    /// A machine is hung up on at once (`ended_reason` `answering_machine`).
    Hangup,
    /// A machine gets a message after its beep (or the end of its greeting),
    /// then the call ends.
    LeaveMessage,
    /// Detect and report only; the conversation runs as usual.
    Continue,
}

impl AmdMode {
    pub const ALL: [AmdMode; 4] = [
        AmdMode::Off,
        AmdMode::Hangup,
        AmdMode::LeaveMessage,
        AmdMode::Continue,
    ];

    /// The wire and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            AmdMode::Off => "off",
            AmdMode::Hangup => "hangup",
            AmdMode::LeaveMessage => "leave_message",
            AmdMode::Continue => "continue",
        }
    }

    /// The API name back (`None` for anything else).
    pub fn parse(s: &str) -> Option<AmdMode> {
        AmdMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn is_off(&self) -> bool {
        *self == AmdMode::Off
    }
}

/// Who answered a call, as answering-machine detection decided (the call's
/// `answered_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    Machine,
    /// No decision within the detector's time bound (silence, or speech that
    /// fits neither pattern).
    Unknown,
}

impl AnsweredBy {
    pub const ALL: [AnsweredBy; 3] = [AnsweredBy::Human, AnsweredBy::Machine, AnsweredBy::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::Machine => "machine",
            AnsweredBy::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<AnsweredBy> {
        AnsweredBy::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A customer tool as the engine declares it to the model (an agent's
/// `tools` entry without its URL and timeout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedTool {
    /// `[A-Za-z0-9_-]{1,64}`, never a built-in tool's name.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A JSON Schema object (the function's parameters).
    pub parameters: serde_json::Value,
}

/// Tools the sidecar runs itself (never an agent's tool name).
pub const BUILT_IN_TOOLS: [&str; 3] = ["end_call", "send_dtmf", "transfer"];

/// Longest [`ToolCall::arguments`] (bytes of JSON text) a sidecar sends.
pub const MAX_TOOL_ARGUMENTS_BYTES: usize = 16 * 1024;
/// Longest [`ToolCallAnswer::output`] (bytes) the edge returns: the tool's
/// answer, cut to this.
pub const MAX_TOOL_OUTPUT_BYTES: usize = 64 * 1024;

/// `POST /v1/sidecar/tool-calls`: the engine of a call this sidecar holds
/// called one of the call's customer tools; the edge POSTs it to the
/// tenant's URL and answers with the result ([`ToolCallAnswer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub call_id: String,
    pub attempt: u32,
    /// The engine's id of this invocation (OpenAI `call_id`, Gemini `id`).
    pub tool_call_id: String,
    pub name: String,
    /// The model's arguments, a JSON text (at most [`MAX_TOOL_ARGUMENTS_BYTES`]).
    pub arguments: String,
}

/// Why a tool call gave no result (`error.code` of a [`ToolCallAnswer`]).
pub mod tool_errors {
    /// The tool's URL did not answer within its `timeout_ms`.
    pub const TIMEOUT: &str = "tool_timeout";
    /// The tool's URL answered with a status outside 2xx, or the request failed.
    pub const HTTP_ERROR: &str = "tool_http_error";
    /// The call's agent has no tool of that name (any more).
    pub const UNKNOWN: &str = "tool_unknown";
    /// The tool's URL is refused by the edge's SSRF guard.
    pub const BLOCKED_URL: &str = "tool_blocked_url";
    /// The model's arguments are not a JSON object.
    pub const BAD_ARGUMENTS: &str = "tool_bad_arguments";
    /// The answer was larger than [`super::MAX_TOOL_OUTPUT_BYTES`].
    pub const RESPONSE_TOO_LARGE: &str = "tool_response_too_large";
    /// The sidecar already runs its limit of tool calls for this call.
    pub const BUSY: &str = "tool_busy";
    /// The edge could not be asked, or could not answer (link error).
    pub const UNAVAILABLE: &str = "tool_unavailable";
}

/// A tool call's failure: a stable code (see [`tool_errors`]) and words for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The edge's 2xx answer to a [`ToolCall`]: the tool's answer (`ok`), or why
/// there is none. Either way the engine gets an output and the call goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallAnswer {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub ok: bool,
    /// The tool's response body (JSON text or plain text) when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolError>,
    /// How long the tool's URL took (ms), when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Who speaks first once a call is answered (an agent's `first_speaker`,
/// issue 17). The same words in the API, in KV and on the sidecar link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstSpeaker {
    /// The agent greets as soon as the callee answers.
    #[default]
    Agent,
    /// The agent waits for the callee's first words (a person who answers
    /// with "Hello?"), then greets; a callee who stays silent is greeted
    /// after the engine's own silence wait.
    Callee,
}

impl FirstSpeaker {
    pub const ALL: [FirstSpeaker; 2] = [FirstSpeaker::Agent, FirstSpeaker::Callee];

    /// The wire and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            FirstSpeaker::Agent => "agent",
            FirstSpeaker::Callee => "callee",
        }
    }

    /// The API name back (`None` for anything else).
    pub fn parse(s: &str) -> Option<FirstSpeaker> {
        FirstSpeaker::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn is_agent(&self) -> bool {
        *self == FirstSpeaker::Agent
    }
}

/// A secret inside a message: a plain JSON string on the wire, never shown by
/// `Debug` (offers are logged; their keys must not be).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(s: impl Into<String>) -> Self {
        SecretText(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl core::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretText(***)")
    }
}

/// A command for a call the sidecar holds, delivered through its lease.
/// Commands are idempotent: the edge may repeat one until it sees its effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// End the call (`POST /v1/calls/{id}/hangup`). The sidecar answers with an
    /// `ended` event whose reason is `hangup_requested`.
    Hangup { call_id: String },
    /// Hand the callee of an answered AI call to `target`
    /// (`POST /v1/calls/{id}/transfer`, issue 16), as the agent's own
    /// `transfer` tool does: REFER where the call's trunk takes it, else a
    /// second leg bridged by the sidecar. One transfer at a time per call:
    /// the sidecar runs a `transfer_id` once and refuses another while one
    /// is under way. It answers with a `transferred` event (the callee was
    /// handed over) or `transfer_failed`. Sidecars before it ignore it
    /// ([`Command::Unknown`]).
    Transfer {
        call_id: String,
        /// The API's id for this request (`xfr_...`).
        transfer_id: String,
        target: TransferTarget,
        #[serde(default)]
        mode: TransferMode,
        /// `warm`: what the person hears before they are connected (else
        /// the sidecar's own briefing). At most [`MAX_TRANSFER_MESSAGE_CHARS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A command kind added after this build; ignored.
    #[serde(other)]
    Unknown,
}

/// The longest `message` of a warm transfer, in characters.
pub const MAX_TRANSFER_MESSAGE_CHARS: usize = 1_000;

/// Whom a transfer hands the callee to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransferTarget {
    /// A number (E.164), dialled through the trunks (or REFERred to).
    Number { destination: String },
    /// A person of the tenant's directory (the edge resolved `extension`):
    /// the sidecar rings that user's phones registered with it; with none,
    /// the transfer fails `user_unavailable`. Never REFERred (the trunk
    /// cannot reach a phone registered with us).
    User {
        user_pk: u64,
        extension: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
    },
    /// A queue of the tenant (blind only; the edge resolved it into a plan
    /// as for an inbound call to the queue, its members those with a phone
    /// registered with the sidecar holding the call): the engine is
    /// detached, the `transferred` event sent (method `queue`), and the
    /// callee's answered leg waits in the queue as an inbound queue caller
    /// does (hold audio, rounds, `queue` and `leg` events, the member
    /// bridged). The plan's [`QueueOverflow::Agent`] means back to the
    /// call's own agent (the offer's, who transferred them). Sidecars
    /// before it cannot read a lease answer carrying it: deploy sidecars
    /// before the edge that sends it.
    Queue { plan: Box<QueuePlan> },
    /// A target kind added after this build: the command still parses (the
    /// rest of the lease answer is kept) and the transfer fails
    /// `transfer_failed`. Never sent.
    #[serde(other)]
    Unknown,
}

impl TransferTarget {
    /// What the `transferred` event and webhook name: the number, or the
    /// person's extension.
    pub fn label(&self) -> &str {
        match self {
            TransferTarget::Number { destination } => destination,
            TransferTarget::User { extension, .. } => extension,
            TransferTarget::Queue { plan } => &plan.extension,
            TransferTarget::Unknown => "",
        }
    }
}

/// How a transfer connects the callee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// The callee is handed over as soon as the other side answers.
    #[default]
    Blind,
    /// The callee waits on hold; the person who answers hears a briefing
    /// first, then the two are connected (a bridge, never a REFER).
    Warm,
}

impl TransferMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::Blind => "blind",
            TransferMode::Warm => "warm",
        }
    }
}

/// The stable codes of a failed transfer (the `transfer` tool's `error`,
/// the `transfer_failed` event's `error`).
pub mod transfer_errors {
    /// The destination answered busy (486, 600).
    pub const BUSY: &str = "busy";
    /// Nobody answered in time (408, 480, 487).
    pub const NO_ANSWER: &str = "no_answer";
    /// The destination or the trunk refused (another 4xx-6xx).
    pub const REJECTED: &str = "rejected";
    /// It could not be tried: no trunk, no media, the call is ending.
    pub const TRANSFER_FAILED: &str = "transfer_failed";
    /// Another transfer of this call is under way.
    pub const TRANSFER_IN_PROGRESS: &str = "transfer_in_progress";
    /// The person has no phone registered with the sidecar holding the call.
    pub const USER_UNAVAILABLE: &str = "user_unavailable";
    /// A warm transfer's briefing cannot be spoken by this sidecar.
    pub const WARM_UNSUPPORTED: &str = "warm_unsupported";
    pub const ALL: [&str; 7] = [
        BUSY,
        NO_ANSWER,
        REJECTED,
        TRANSFER_FAILED,
        TRANSFER_IN_PROGRESS,
        USER_UNAVAILABLE,
        WARM_UNSUPPORTED,
    ];
}

/// `POST /v1/sidecar/ack`: accept or reject one offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub lease_id: String,
    pub call_id: String,
    pub accepted: bool,
    /// Why it was rejected (see [`reject_reasons`]); `None` when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The edge's 2xx answer to an [`Ack`]. A `409` instead means the lease is
/// gone (too late, or re-leased): the sidecar must not dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckReceipt {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    pub lease_id: String,
}

/// Who spoke in a transcript turn: our agent or the person called. The same
/// words on the sidecar link, in the call store and in the public API. Edges
/// before 2026-12 wrote `ai` / `user`: still read (stored turns, old sidecars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[serde(alias = "ai")]
    Agent,
    #[serde(alias = "user")]
    Callee,
    /// A customer tool's call and its result (issue 18), recorded by the edge
    /// from [`EventKind::ToolCall`]; sidecars never send it as a turn's role.
    Tool,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Agent, Role::Callee, Role::Tool];

    /// The wire and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Callee => "callee",
            Role::Tool => "tool",
        }
    }
}

/// When the steps of a call happened (unix ms, sidecar clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// The sidecar started the call (after its accepting ack was confirmed).
    pub dispatched_ms: u64,
    #[serde(default)]
    pub ringing_ms: Option<u64>,
    #[serde(default)]
    pub answered_ms: Option<u64>,
    pub ended_ms: u64,
}

/// The steps of a person's leg ([`EventKind::Leg`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegStep {
    Dialing,
    Ringing,
    Answered,
    Ended,
}

/// The steps of a caller's wait in a queue ([`EventKind::Queue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStep {
    /// Answered and waiting (hold audio from now).
    Entered,
    /// Their position was said again.
    Announced,
    /// A ring round ended with nobody answering (Voice360 `QUEUE_NO_ANSWER`).
    NoAnswer,
    /// A member answered: the caller leaves the queue, bridged.
    Connected,
    /// The longest wait passed: the caller leaves for the overflow.
    TimedOut,
    /// The caller hung up while waiting.
    Abandoned,
}

/// What happened in a call. JSON: an object tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Dialing,
    Ringing,
    Answered,
    TranscriptTurn {
        role: Role,
        text: String,
        /// Offsets from the answer, in ms.
        start_ms: u64,
        end_ms: u64,
    },
    /// What the engine concluded (the local engine's script outcome, a cloud
    /// engine's summary); either may be absent. The last one given wins.
    Summary {
        #[serde(default)]
        summary: Option<String>,
        #[serde(default)]
        outcome: Option<String>,
    },
    /// The post-call analysis the call's engine gave (a cloud engine's
    /// language model read the call; issue 18), sent before `ended`. The
    /// edge keeps it over its own rules. Older edges ignore it.
    Analysis {
        analysis: crate::analysis::CallAnalysis,
    },
    /// Answering-machine detection decided (once per attempt, only when
    /// the offer's `amd` is not `off`).
    AnsweredBy {
        answered_by: AnsweredBy,
        /// From the answer to the decision, in ms.
        decision_ms: u64,
    },
    /// A customer tool the engine called and what came back (issue 18):
    /// the edge keeps it as a `tool` turn of the transcript. Older edges
    /// ignore it ([`EventKind::Unknown`]).
    ToolCall {
        tool_call_id: String,
        name: String,
        /// The model's arguments (JSON text, as sent to the edge).
        arguments: String,
        ok: bool,
        /// The tool's answer (`ok`), as given to the engine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// A [`tool_errors`] code (not `ok`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
        /// Offsets from the answer, in ms: the engine's call, the result.
        start_ms: u64,
        end_ms: u64,
    },
    /// The callee was handed to another party (issue 16, the `transfer`
    /// tool): `method` `refer` (the trunk took the call over: our side ends
    /// next) or `bridge` (the sidecar dialled `destination` and relays the
    /// two legs; the recording keeps the callee on the right and the
    /// transferred-to party on the left). Older edges ignore it.
    Transferred {
        destination: String,
        method: String,
        /// Offset from the answer, in ms: when the destination answered.
        at_offset_ms: u64,
        /// A transfer to a person: their extension (`destination` is then
        /// the extension too). Older edges ignore it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extension: Option<String>,
        /// `blind` or `warm` (absent: blind, sidecars before it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<TransferMode>,
        /// The API's transfer this was (absent: the agent's own tool).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_id: Option<String>,
    },
    /// A transfer did not happen (issue 16): the callee stays with the
    /// agent. `error` is a [`transfer_errors`] code. Older edges ignore it.
    TransferFailed {
        destination: String,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sip_code: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_id: Option<String>,
    },
    /// A person's leg of the call (issue 16): a phone of `user_pk` rung
    /// (the person a number routes to, a queue member, the click-to-call
    /// extension), or the number dialled (`destination`: a forward, the
    /// click-to-call callee). Older edges ignore it.
    Leg {
        step: LegStep,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_pk: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<String>,
        /// `ended`: the leg's final SIP code, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sip_code: Option<u16>,
        /// `ended`: how long the leg talked (0 if it never answered).
        #[serde(default)]
        talk_ms: u64,
    },
    /// The caller's wait in a queue (issue 16). Older edges ignore it.
    Queue {
        step: QueueStep,
        queue_pk: u64,
        /// The caller's position (1: next), at `entered` and each
        /// announcement.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<u32>,
        /// Since the caller entered, in ms.
        #[serde(default)]
        wait_ms: u64,
    },
    /// Always the last event of a call (for one attempt).
    Ended {
        /// Terminal: completed | failed | no_answer | busy | cancelled.
        status: CallStatus,
        reason: EndedReason,
        #[serde(default)]
        sip_code: Option<u16>,
        timings: Timings,
        /// Dial again no earlier than this many seconds from now (the
        /// trunk's or callee's SIP `Retry-After`, at most an hour); absent
        /// when none was given. Older edges ignore it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u32>,
    },
    /// An event kind added after this build: acknowledged and ignored, so a
    /// sidecar newer than its edge never has a batch refused for it.
    #[serde(other)]
    Unknown,
}

impl EventKind {
    pub fn is_ended(&self) -> bool {
        matches!(self, EventKind::Ended { .. })
    }

    /// The `type` tag.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Dialing => "dialing",
            EventKind::Ringing => "ringing",
            EventKind::Answered => "answered",
            EventKind::TranscriptTurn { .. } => "transcript_turn",
            EventKind::Summary { .. } => "summary",
            EventKind::Analysis { .. } => "analysis",
            EventKind::AnsweredBy { .. } => "answered_by",
            EventKind::ToolCall { .. } => "tool_call",
            EventKind::Transferred { .. } => "transferred",
            EventKind::TransferFailed { .. } => "transfer_failed",
            EventKind::Leg { .. } => "leg",
            EventKind::Queue { .. } => "queue",
            EventKind::Unknown => "unknown",
            EventKind::Ended { .. } => "ended",
        }
    }
}

/// One event of one call. Delivery is at least once: the edge dedupes on
/// `(call_id, attempt, seq)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    pub call_id: String,
    /// The offer's `attempt` (seq restarts at 1 for every attempt).
    #[serde(default = "one")]
    pub attempt: u32,
    /// 1, 2, 3... per (call, attempt), in the order the events happened.
    pub seq: u32,
    /// When it happened (unix ms, sidecar clock).
    pub at_ms: u64,
    pub kind: EventKind,
}

fn one() -> u32 {
    1
}

/// `POST /v1/sidecar/events`: events, in order, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub protocol_version: u32,
    pub sidecar_id: String,
    pub events: Vec<CallEvent>,
}

/// The edge's 2xx answer to an [`EventBatch`]: the whole batch is durably
/// recorded (duplicates included), so the sidecar forgets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsAck {
    #[serde(default = "default_version")]
    pub protocol_version: u32,
    /// How many of the batch's events were new (not duplicates).
    pub accepted: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_messages_ride_the_lease_and_old_peers_ignore_them() {
        // An edge that predates messages sends none; a sidecar that predates
        // them ignores the unknown member (serde's default).
        let r: LeaseResponse =
            serde_json::from_value(json!({"protocol_version":1,"offers":[],"commands":[]}))
                .unwrap();
        assert!(r.messages.is_empty());
        assert!(serde_json::to_value(LeaseResponse::empty())
            .unwrap()
            .get("messages")
            .is_none());
        let m = MessageOffer {
            message_id: "msg_1".into(),
            tenant_id: "acme".into(),
            from: "+14155550100".into(),
            to: "+14155550111".into(),
            body: "hi".into(),
            deadline_ms: 5,
        };
        let mut r = LeaseResponse::empty();
        r.messages.push(m.clone());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["messages"][0]["message_id"], "msg_1");
        assert_eq!(
            serde_json::from_value::<LeaseResponse>(v).unwrap().messages,
            vec![m]
        );

        let inbound: InboundMessage = serde_json::from_value(json!({"protocol_version":1,
            "sidecar_id":"sc","region":"eu","from":"+1","to":"+2","sip_call_id":"x","received_ms":1,
            "content":{"type":"delivery_report","imdn_message_id":"m1","status":"delivered"}}))
        .unwrap();
        assert_eq!(
            inbound.content,
            InboundContent::DeliveryReport {
                imdn_message_id: "m1".into(),
                status: "delivered".into()
            }
        );
        let later: InboundContent =
            serde_json::from_value(json!({"type":"read_receipt","x":1})).unwrap();
        assert_eq!(later, InboundContent::Unknown);
        let result: MessageResult = serde_json::from_value(json!({"protocol_version":1,
            "sidecar_id":"sc","message_id":"msg_1","outcome":"failed","sip_code":488,
            "reason":"rejected","at_ms":9}))
        .unwrap();
        assert_eq!(result.outcome, MessageOutcome::Failed);
    }

    #[test]
    fn an_inbound_call_is_answered_with_an_offer_or_refused_with_a_code() {
        let refuse: InboundCallAnswer = serde_json::from_value(json!({"protocol_version":1,
            "decision":"refuse","sip_code":404,"reason":"unknown_number"}))
        .unwrap();
        assert_eq!(
            refuse.decision,
            InboundDecision::Refuse {
                sip_code: 404,
                reason: inbound_refusals::UNKNOWN_NUMBER.into()
            }
        );
        let answer: InboundCallAnswer = serde_json::from_value(json!({"protocol_version":1,
            "decision":"answer","offer":{"lease_id":"inbound","call_id":"c","attempt":1,
            "phone":"+14155550111","caller_number":"+14155550100","agent_id":"a","language":"en",
            "engine":"echo","max_seconds":60,"record":false,"ack_deadline_ms":0}}))
        .unwrap();
        let InboundDecision::Answer { offer } = &answer.decision else {
            panic!("{answer:?}")
        };
        assert_eq!(offer.caller_number.as_deref(), Some("+14155550100"));
        let v = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            (v["decision"].as_str(), v["offer"]["call_id"].as_str()),
            (Some("answer"), Some("c"))
        );
        assert_eq!(
            serde_json::from_value::<InboundCallAnswer>(v).unwrap(),
            answer
        );
    }

    #[test]
    fn ids_follow_one_rule() {
        for ok in ["sc-1", "eu-west.2", "A_b", "9"] {
            assert!(is_valid_id(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-x", ".x", "a b", "a/b", "é", long.as_str()] {
            assert!(!is_valid_id(bad), "{bad}");
        }
        assert!(is_valid_id(&"a".repeat(64)));
    }

    #[test]
    fn version_check() {
        assert!(check_version(1).is_ok());
        let e = check_version(2).unwrap_err();
        assert_eq!(
            e,
            VersionMismatch {
                got: 2,
                expected: 1
            }
        );
        assert!(e.to_string().contains("protocol version 2"));
    }

    #[test]
    fn registration_round_trip() {
        let r = Registration {
            protocol_version: PROTOCOL_VERSION,
            sidecar_id: "sc-1".into(),
            region: "eu".into(),
            capacity: 8,
            version: "0.1.0".into(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"protocol_version":1,"sidecar_id":"sc-1","region":"eu","capacity":8,"version":"0.1.0"})
        );
        assert_eq!(serde_json::from_value::<Registration>(v).unwrap(), r);

        let ack: RegistrationAck = serde_json::from_value(json!({
            "protocol_version":1,"lease_wait_ms":25000,"ack_deadline_ms":5000,"dead_after_ms":60000
        }))
        .unwrap();
        assert_eq!(ack.lease_wait_ms, 25_000);
    }

    #[test]
    fn offer_optional_fields_may_be_absent_or_null() {
        let o: Offer = serde_json::from_value(json!({
            "lease_id":"l_1","call_id":"c_1","attempt":1,"phone":"+14155550100","agent_id":"ag_1",
            "system_prompt":null,"language":"en-US","engine":"local","max_seconds":600,"record":false,
            "ack_deadline_ms":1700000005000u64
        }))
        .unwrap();
        assert_eq!(o.system_prompt, None);
        assert_eq!(o.metadata, None);
        let back = serde_json::to_value(&o).unwrap();
        assert!(back.get("voice").is_none(), "None is omitted: {back}");
        let o2: Offer = serde_json::from_value(back).unwrap();
        assert_eq!(o, o2);
    }

    #[test]
    fn the_silence_timeout_is_read_by_either_name_and_sent_by_the_new_one() {
        let base = json!({"lease_id":"l","call_id":"c","attempt":1,"phone":"+1","agent_id":"a",
            "language":"en","engine":"local","max_seconds":60,"record":false,"ack_deadline_ms":1});
        for name in ["silence_timeout_secs", "silence_timeout_seconds"] {
            let mut v = base.clone();
            v[name] = json!(12);
            let o: Offer = serde_json::from_value(v).unwrap();
            assert_eq!(o.silence_timeout_seconds, Some(12), "{name}");
            let back = serde_json::to_value(&o).unwrap();
            assert_eq!(back["silence_timeout_seconds"], 12);
            assert!(back.get("silence_timeout_secs").is_none());
        }
    }

    /// Issue 17: an offer from an edge before `first_speaker` lets the agent
    /// speak first; `agent` is not sent (old sidecars), `callee` is.
    #[test]
    fn the_first_speaker_is_the_agent_unless_the_offer_says_callee() {
        let old = json!({"lease_id":"l","call_id":"c","attempt":1,"phone":"+1","agent_id":"a",
            "language":"en","engine":"local","max_seconds":60,"record":false,"ack_deadline_ms":1});
        let o: Offer = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(o.first_speaker, FirstSpeaker::Agent);
        assert!(serde_json::to_value(&o)
            .unwrap()
            .get("first_speaker")
            .is_none());
        let mut callee = old;
        callee["first_speaker"] = json!("callee");
        let o: Offer = serde_json::from_value(callee).unwrap();
        assert_eq!(o.first_speaker, FirstSpeaker::Callee);
        assert_eq!(serde_json::to_value(&o).unwrap()["first_speaker"], "callee");
        for f in FirstSpeaker::ALL {
            assert_eq!(FirstSpeaker::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        assert_eq!(FirstSpeaker::parse("caller"), None);
    }

    /// Issue 18: an offer from an edge before `amd` detects nothing; `off` is
    /// not sent (old sidecars), the others are, with the message; the
    /// `answered_by` event round-trips and an old sidecar's batch never has it.
    #[test]
    fn amd_is_off_unless_the_offer_says_otherwise() {
        let old = json!({"lease_id":"l","call_id":"c","attempt":1,"phone":"+1","agent_id":"a",
            "language":"en","engine":"local","max_seconds":60,"record":false,"ack_deadline_ms":1});
        let o: Offer = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(o.amd, AmdMode::Off);
        assert_eq!(o.amd_message, None);
        let v = serde_json::to_value(&o).unwrap();
        assert!(v.get("amd").is_none() && v.get("amd_message").is_none());
        let mut lm = old;
        lm["amd"] = json!("leave_message");
        lm["amd_message"] = json!("Call us back");
        let o: Offer = serde_json::from_value(lm).unwrap();
        assert_eq!(o.amd, AmdMode::LeaveMessage);
        assert_eq!(o.amd_message.as_deref(), Some("Call us back"));
        assert_eq!(serde_json::to_value(&o).unwrap()["amd"], "leave_message");
        for m in AmdMode::ALL {
            assert_eq!(AmdMode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        for a in AnsweredBy::ALL {
            assert_eq!(AnsweredBy::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        let ev = EventKind::AnsweredBy {
            answered_by: AnsweredBy::Machine,
            decision_ms: 2500,
        };
        let j = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            j,
            json!({"type":"answered_by","answered_by":"machine","decision_ms":2500})
        );
        assert_eq!(serde_json::from_value::<EventKind>(j).unwrap(), ev);
        assert_eq!(
            serde_json::to_value(EndedReason::AnsweringMachine).unwrap(),
            "answering_machine"
        );
    }

    #[test]
    fn the_caller_name_is_optional_both_ways() {
        let old = json!({"lease_id":"l","call_id":"c","attempt":1,"phone":"+1","agent_id":"a",
            "language":"en","engine":"local","max_seconds":60,"record":false,"ack_deadline_ms":1});
        // From an edge that predates it: none; and a peer that predates it is sent none.
        let o: Offer = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(o.caller_name, None);
        assert!(serde_json::to_value(&o)
            .unwrap()
            .get("caller_name")
            .is_none());
        let mut named = old;
        named["caller_name"] = json!("Reminder");
        let o: Offer = serde_json::from_value(named).unwrap();
        assert_eq!(o.caller_name.as_deref(), Some("Reminder"));
        assert_eq!(serde_json::to_value(&o).unwrap()["caller_name"], "Reminder");
    }

    #[test]
    fn an_offer_of_an_engine_kind_this_build_does_not_know_still_parses() {
        let r: LeaseResponse = serde_json::from_value(json!({"protocol_version":1,"offers":[
            {"lease_id":"l","call_id":"c","attempt":1,"phone":"+1","agent_id":"a","language":"en",
             "engine":"quantum_voice","max_seconds":60,"record":false,"ack_deadline_ms":1},
            {"lease_id":"l2","call_id":"c2","attempt":1,"phone":"+1","agent_id":"a","language":"en",
             "engine":"gemini_live","max_seconds":60,"record":false,"ack_deadline_ms":1}],
            "commands":[]}))
        .unwrap();
        assert_eq!(
            (r.offers[0].engine.known(), r.offers[0].engine.as_str()),
            (None, "quantum_voice")
        );
        assert_eq!(
            r.offers[1].engine.known(),
            Some(crate::EngineKind::GeminiLive)
        );
    }

    #[test]
    fn lease_response_with_offers_and_commands() {
        let v = json!({
            "protocol_version":1,
            "offers":[{"lease_id":"l_1","call_id":"c_1","attempt":2,"phone":"+14155550100",
                "agent_id":"ag_1","system_prompt":"Be brief.","voice":"alloy","language":"en-US",
                "engine":"openai_realtime","model":"gpt-realtime","max_seconds":300,"record":true,
                "metadata":{"crm":"42"},"ack_deadline_ms":1700000005000u64}],
            "commands":[{"kind":"hangup","call_id":"c_0"},{"kind":"mute","call_id":"c_9","leg":"callee"}]
        });
        let r: LeaseResponse = serde_json::from_value(v).unwrap();
        assert_eq!(r.offers.len(), 1);
        assert_eq!(r.offers[0].metadata, Some(json!({"crm":"42"})));
        assert_eq!(
            r.commands[0],
            Command::Hangup {
                call_id: "c_0".into()
            }
        );
        assert_eq!(
            r.commands[1],
            Command::Unknown,
            "future command kinds are tolerated"
        );
        let engine_key: Offer = serde_json::from_value(json!({"lease_id":"l","call_id":"c","attempt":1,"phone":"+1","agent_id":"a",
            "language":"en","engine":"openai_realtime","max_seconds":60,"record":false,"ack_deadline_ms":1,"engine_api_key":"sk-1"})).unwrap();
        assert_eq!(
            engine_key.engine_api_key.as_ref().map(SecretText::expose),
            Some("sk-1")
        );
        assert!(
            !format!("{engine_key:?}").contains("sk-1"),
            "offers are logged; keys must not be"
        );
        // A future event kind is acknowledged and ignored, not a refused batch.
        let batch: EventBatch =
            serde_json::from_value(json!({"protocol_version":1,"sidecar_id":"s","events":[
            {"call_id":"c","seq":1,"at_ms":1,"kind":{"type":"dtmf_received","digit":"5"}}]}))
            .unwrap();
        assert_eq!(batch.events[0].kind, EventKind::Unknown);
        let empty: LeaseResponse = serde_json::from_str("{\"offers\":[],\"commands\":[]}").unwrap();
        assert_eq!(empty, LeaseResponse::empty());
        assert_eq!(
            serde_json::to_value(Command::Hangup {
                call_id: "c_1".into()
            })
            .unwrap(),
            json!({"kind":"hangup","call_id":"c_1"})
        );
    }

    #[test]
    fn transfer_to_a_queue_wire_form() {
        let plan = QueuePlan {
            queue_pk: 3,
            name: "Sales".into(),
            extension: "600".into(),
            ring_all: true,
            members: vec![],
            member_timeout_seconds: 15,
            retry_seconds: 5,
            max_wait_seconds: 60,
            announce_every_seconds: 0,
            position: 1,
            overflow: QueueOverflow::Agent,
        };
        let cmd = Command::Transfer {
            call_id: "c_1".into(),
            transfer_id: "xfr_3".into(),
            target: TransferTarget::Queue {
                plan: Box::new(plan.clone()),
            },
            mode: TransferMode::Blind,
            message: None,
        };
        let v = serde_json::to_value(&cmd).unwrap();
        assert_eq!(v["target"]["kind"], "queue");
        assert_eq!(v["target"]["plan"]["queue_pk"], 3);
        assert_eq!(v["target"]["plan"]["overflow"], "agent");
        let back: Command = serde_json::from_value(v).unwrap();
        assert_eq!(back, cmd);
        if let Command::Transfer { target, .. } = back {
            assert_eq!(target.label(), "600");
        }
    }

    /// A target kind this build does not know still parses (the rest of
    /// a lease answer is not lost with it): `unknown`.
    #[test]
    fn a_transfer_to_a_target_kind_added_later_parses_as_unknown() {
        let cmd: Command = serde_json::from_value(json!({"kind":"transfer","call_id":"c_1",
            "transfer_id":"xfr_1","target":{"kind":"conference","room":"7"}}))
        .unwrap();
        assert!(
            matches!(
                &cmd,
                Command::Transfer {
                    target: TransferTarget::Unknown,
                    ..
                }
            ),
            "{cmd:?}"
        );
    }

    #[test]
    fn transfer_command_wire_form() {
        let blind: Command = serde_json::from_value(json!({"kind":"transfer","call_id":"c_1",
            "transfer_id":"xfr_1","target":{"kind":"number","destination":"+14155550100"}}))
        .unwrap();
        assert_eq!(
            blind,
            Command::Transfer {
                call_id: "c_1".into(),
                transfer_id: "xfr_1".into(),
                target: TransferTarget::Number {
                    destination: "+14155550100".into()
                },
                mode: TransferMode::Blind,
                message: None,
            }
        );
        let warm = Command::Transfer {
            call_id: "c_1".into(),
            transfer_id: "xfr_2".into(),
            target: TransferTarget::User {
                user_pk: 7,
                extension: "1001".into(),
                display_name: None,
            },
            mode: TransferMode::Warm,
            message: Some("A customer about order 17.".into()),
        };
        assert_eq!(
            serde_json::to_value(&warm).unwrap(),
            json!({"kind":"transfer","call_id":"c_1","transfer_id":"xfr_2",
                "target":{"kind":"user","user_pk":7,"extension":"1001"},
                "mode":"warm","message":"A customer about order 17."})
        );
        let ev: EventKind = serde_json::from_value(json!({"type":"transfer_failed",
            "destination":"1001","error":"user_unavailable"}))
        .unwrap();
        assert_eq!(ev.name(), "transfer_failed");
        // A `transferred` event of a sidecar before warm transfers still reads.
        let old: EventKind = serde_json::from_value(json!({"type":"transferred",
            "destination":"+1415","method":"bridge","at_offset_ms":5}))
        .unwrap();
        assert!(matches!(
            old,
            EventKind::Transferred {
                mode: None,
                extension: None,
                ..
            }
        ));
    }

    #[test]
    fn ack_wire_form() {
        let a = Ack {
            protocol_version: 1,
            sidecar_id: "sc-1".into(),
            lease_id: "l_1".into(),
            call_id: "c_1".into(),
            accepted: false,
            reason: Some(reject_reasons::AT_CAPACITY.into()),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"protocol_version":1,"sidecar_id":"sc-1","lease_id":"l_1","call_id":"c_1",
                   "accepted":false,"reason":"at_capacity"})
        );
        let ok = Ack {
            accepted: true,
            reason: None,
            ..a
        };
        assert!(serde_json::to_value(&ok).unwrap().get("reason").is_none());
    }

    #[test]
    fn ended_carries_retry_after_only_when_given() {
        let json = r#"{"type":"ended","status":"failed","reason":"trunk_error","sip_code":503,
            "timings":{"dispatched_ms":1,"ended_ms":2},"retry_after_s":300}"#;
        let kind: EventKind = serde_json::from_str(json).unwrap();
        assert!(matches!(
            kind,
            EventKind::Ended {
                retry_after_s: Some(300),
                ..
            }
        ));
        // An older sidecar's event has none.
        let old = json.replace(r#","retry_after_s":300"#, "");
        let kind: EventKind = serde_json::from_str(&old).unwrap();
        assert!(matches!(
            kind,
            EventKind::Ended {
                retry_after_s: None,
                ..
            }
        ));
        assert!(!serde_json::to_string(&kind)
            .unwrap()
            .contains("retry_after"));
    }

    #[test]
    fn events_wire_form() {
        let ended = CallEvent {
            call_id: "c_1".into(),
            attempt: 1,
            seq: 4,
            at_ms: 1_700_000_010_000,
            kind: EventKind::Ended {
                status: CallStatus::Completed,
                reason: EndedReason::AgentHangup,
                retry_after_s: None,
                sip_code: None,
                timings: Timings {
                    dispatched_ms: 1_700_000_000_000,
                    ringing_ms: Some(1_700_000_000_100),
                    answered_ms: Some(1_700_000_000_300),
                    ended_ms: 1_700_000_010_000,
                },
            },
        };
        let v = serde_json::to_value(&ended).unwrap();
        assert_eq!(
            v,
            json!({"call_id":"c_1","attempt":1,"seq":4,"at_ms":1700000010000u64,"kind":{
                "type":"ended","status":"completed","reason":"agent_hangup","sip_code":null,
                "timings":{"dispatched_ms":1700000000000u64,"ringing_ms":1700000000100u64,
                           "answered_ms":1700000000300u64,"ended_ms":1700000010000u64}}})
        );
        assert_eq!(serde_json::from_value::<CallEvent>(v).unwrap(), ended);

        let turn: CallEvent = serde_json::from_value(json!({"call_id":"c_1","seq":3,"at_ms":5,
            "kind":{"type":"transcript_turn","role":"ai","text":"Hello","start_ms":0,"end_ms":900}}))
        .unwrap();
        assert_eq!(turn.attempt, 1, "attempt defaults to 1");
        assert_eq!(turn.kind.name(), "transcript_turn");
        assert!(matches!(
            turn.kind,
            EventKind::TranscriptTurn {
                role: Role::Agent,
                ..
            }
        ));

        for (kind, name) in [
            (EventKind::Dialing, "dialing"),
            (EventKind::Ringing, "ringing"),
            (EventKind::Answered, "answered"),
        ] {
            assert_eq!(
                serde_json::to_value(&kind).unwrap(),
                json!({ "type": name })
            );
            assert!(!kind.is_ended());
        }
        assert!(ended.kind.is_ended());

        // A status outside the terminal set is representable but must be rejected
        // by the edge; an unknown status never parses.
        let bad = serde_json::from_value::<EventKind>(json!({"type":"ended","status":"exploded",
            "reason":"agent_hangup","timings":{"dispatched_ms":1,"ended_ms":2}}));
        assert!(bad.is_err());

        let batch = EventBatch {
            protocol_version: 1,
            sidecar_id: "sc-1".into(),
            events: vec![ended],
        };
        let back: EventBatch =
            serde_json::from_str(&serde_json::to_string(&batch).unwrap()).unwrap();
        assert_eq!(back, batch);
        let ea: EventsAck = serde_json::from_str("{\"accepted\":1}").unwrap();
        assert_eq!(
            ea,
            EventsAck {
                protocol_version: 1,
                accepted: 1
            }
        );
    }

    #[test]
    fn a_phone_account_names_its_tenant_and_user() {
        let name = phone_accounts::username("ten_0123456789abcdef0123", 7);
        assert_eq!(name, "7.ten_0123456789abcdef0123");
        assert_eq!(
            phone_accounts::parse_username(&name),
            Some(("ten_0123456789abcdef0123", 7))
        );
        for bad in [
            "",
            "7",
            "07.ten_0123456789abcdef0123",
            "x.ten_0123456789abcdef0123",
            "7.ten_XYZ",
            "7.agt_0123456789abcdef0123",
            "7.ten_0123456789abcdef0123.x",
            "99999999999999999.ten_0123456789abcdef0123",
        ] {
            assert_eq!(phone_accounts::parse_username(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_phone_registration_is_accepted_with_bindings_or_refused_with_a_code() {
        let accept: PhoneRegistrationAnswer = serde_json::from_str(
            r#"{"protocol_version":1,"decision":"accept","tenant_id":"ten_1","user_pk":7,"extension":"1002",
                "bindings":[{"contact":"sip:a@127.0.0.1:5062","expires_seconds":60,"sidecar_id":"sc1"}]}"#,
        )
        .unwrap();
        let PhoneRegistrationDecision::Accept { bindings, .. } = &accept.decision else {
            panic!("{accept:?}")
        };
        assert_eq!(bindings[0].expires_seconds, 60);
        let refuse: PhoneRegistrationAnswer = serde_json::from_str(
            r#"{"decision":"refuse","sip_code":403,"reason":"bad_credentials"}"#,
        )
        .unwrap();
        assert_eq!(
            refuse.decision,
            PhoneRegistrationDecision::Refuse {
                sip_code: 403,
                reason: registration_refusals::BAD_CREDENTIALS.into()
            }
        );
    }
}
