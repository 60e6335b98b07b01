//! The lease client: a sans-IO state machine for the sidecar's side of the
//! sidecar link (see `voxline_shared::sidecar_link`).
//!
//! It owns no socket, no clock and no task. The driver feeds it the time
//! (`now_ms`, unix milliseconds), the replies to the requests it asked for, and
//! the events of the calls it runs; it answers with requests to send
//! ([`LeaseClient::poll_transmit`]), things to do ([`LeaseClient::poll_action`])
//! and when to wake it next ([`LeaseClient::next_wakeup_ms`]).
//!
//! ```text
//!            +-------------+  2xx RegistrationAck   +------------+
//!  start --> | Unregistered| ---------------------> | Registered |----+
//!            +-------------+ <--------------------- +------------+    | lease long-poll loop,
//!                 ^   | failure: backoff   401/410 on any request     | acks, event batches
//!                 +---+ (401/403: hang up every call)                 |
//!                                                                     v
//!  offer --(slot free?)--> accept: reserve slot, ack(accepted) --2xx--> StartCall (dial)
//!        \                                  \--409 / deadline passed--> release slot, never dial
//!         \--(full / draining / dup)--> ack(rejected, reason)
//!
//!  call: Acking --ack 2xx--> Active --emit(ended)--> Ending --events 2xx--> released
//! ```
//!
//! Rules it keeps:
//! - `free_slots + held_calls.len() == capacity` (0 free while draining); a
//!   lease poll with no free slot asks only for commands, never for work.
//! - Every offer gets an ack, sent at once and retried (100 ms doubling, at most
//!   1 s apart) until its deadline: accepted if a slot is free, else rejected
//!   with `at_capacity` (or `draining`, `already_held`). A call is dialled only
//!   after the edge confirms the accepting ack (2xx), so a lost ack can never
//!   cause a double dial: the edge re-leases, we never start.
//! - Register and lease failures back off exponentially without jitter
//!   (`backoff_initial_ms` doubling up to `backoff_max_ms`), reset on success.
//!   `401`/`410` on any request re-registers at once.
//! - Events are numbered per call and attempt (`seq` from 1) and kept until a
//!   2xx acknowledges the batch holding them: at least once, in order. A call
//!   stays held (and listed in `held_calls`) until its `ended` event is acked.
//! - Unacknowledged events also survive the process: each change to a call
//!   attempt's unacknowledged events is handed to the [`EventStore`] (the
//!   driver's is [`crate::event_spool`]) before any batch can carry them, and
//!   the empty set once they are acked. At start the driver gives a previous
//!   run's leftovers to [`LeaseClient::restore_events`]: their calls are held
//!   again (listed in `held_calls` from the first poll, so the edge does not
//!   presume them lost and dial them again) and their events go first, with
//!   their seq numbers; a call without an `ended` event died with the process
//!   and ends `failed`/`media_lost`, as the edge would have concluded.
//! - A registration refused for good (`401`/`403`: the credentials are revoked
//!   or unknown) hangs up every call held here (the edge may give them to
//!   another sidecar; a callee must not be rung twice), then registering goes
//!   on with backoff. A `hangup` command for a call held here is always
//!   obeyed, whether or not the edge still counts the call as ours.
//! - Recordings are uploaded one at a time after the events ahead of them,
//!   retried with backoff until a 2xx; one the edge refuses for good (`400`,
//!   `404`, `409`, `413`, `422`) or that cannot be read is given up, and its
//!   file left on disk for the operator. Draining waits for them too.
//! - A refusal no retry can fix ([`LinkRefusal`]: the edge does not take this
//!   build's signature scheme, or takes the link over https only) halts the
//!   client: every call held here is hung up as for refused credentials, no
//!   request goes out any more, and [`Action::Halt`] tells the driver to stop
//!   and say why, rather than retry forever with a warning per try.
//! - Text messages ([`MessageOffer`]s in a lease answer) are sent at most
//!   once: each `message_id` is remembered (the last
//!   [`MAX_REMEMBERED_MESSAGES`], for [`REMEMBER_MESSAGES_MS`]) before
//!   [`Action::SendMessage`] asks the driver to send it, and a repeat is
//!   ignored. One whose deadline has passed is not sent (`expired`). Each
//!   end is reported as a [`MessageResult`], retried with backoff until a
//!   2xx, or dropped on an answer no retry can fix (`400`, `404`, `409`,
//!   `413`, `422`).
//! - A text the trunk sent us is forwarded once ([`LeaseClient::forward_inbound`]);
//!   the edge's answer becomes the trunk's ([`Action::InboundAnswered`]:
//!   2xx -> 200, 404 -> 404, anything else or no answer -> 480, and the
//!   trunk retries).
//!
//! [`driver`] is the thin tokio shell that runs it.

pub mod driver;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use voxline_shared::sidecar_link::{
    check_version, paths, reject_reasons, Ack, CallEvent, CallTranscript, Command, Deregistration,
    EventBatch, EventKind, EventsAck, InboundCall, InboundCallAnswer, InboundDecision,
    InboundMessage, LeaseRequest, LeaseResponse, MessageOffer, MessageOutcome, MessageResult,
    Offer, PhoneRegistration, PhoneRegistrationAnswer, RecordingManifest, Registration,
    RegistrationAck, Timings, ToolCall, ToolCallAnswer, MAX_LEASE_WAIT_MS, MAX_MESSAGE_CHARS,
    PROTOCOL_VERSION,
};
use voxline_shared::{CallStatus, EndedReason};

/// Identifies one request handed out by [`LeaseClient::poll_transmit`].
pub type RequestId = u64;

/// Keeps unacknowledged events where a restart finds them (the driver's is
/// [`crate::event_spool::EventSpool`]). A trait the client calls rather than an
/// action it queues: an event must be stored before any batch can carry it,
/// and an action would only be done after [`LeaseClient::poll_transmit`] could
/// already have handed out that batch.
pub trait EventStore: Send + std::fmt::Debug {
    /// The unacknowledged events of `call_id`'s `attempt` are now exactly
    /// `unacked` (oldest first); empty: forget the attempt. An error is
    /// reported as [`Notice::EventsNotSaved`]; the events are still sent.
    fn save(&mut self, call_id: &str, attempt: u32, unacked: &[CallEvent]) -> Result<(), String>;
}

/// Tunables of the lease client. [`LeaseSettings::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub sidecar_id: String,
    pub region: String,
    pub capacity: u32,
    /// This build, sent in the registration.
    pub version: String,
    /// Long-poll wait used until the edge's [`RegistrationAck::lease_wait_ms`] says otherwise.
    pub lease_wait_ms: u32,
    /// First delay after a failed register/lease/events request; doubles per failure.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// First delay before re-sending a failed ack; doubles, capped at [`ACK_RETRY_MAX_MS`].
    pub ack_retry_initial_ms: u64,
    /// After an empty lease answer, the next poll starts no sooner than this
    /// after the previous one started (guards against an edge that answers at once).
    pub min_empty_poll_interval_ms: u64,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Most bytes of serialised events in one batch (see [`MAX_BATCH_BYTES`]).
    pub max_batch_bytes: usize,
    /// Ack window assumed until the edge's [`RegistrationAck::ack_deadline_ms`] is known.
    pub default_ack_window_ms: u64,
}

/// The edge refuses bodies over 64 KiB (edge `validate::MAX_BODY_BYTES`),
/// and a refused batch never gets through: batches stay well under it.
pub const MAX_BATCH_BYTES: usize = 48 * 1024;

/// A transcript turn's or summary's text is cut to this many characters, so
/// one event always fits a batch (JSON escaping is at most 6 bytes a char).
pub const MAX_TEXT_CHARS: usize = 4_000;
/// A summary's `outcome` is a short label.
pub const MAX_OUTCOME_CHARS: usize = 200;
/// Appended to cut text.
pub const TRUNCATED_MARKER: &str = " [truncated]";

/// Cuts `text` to at most `max` characters (marker included), on a char boundary.
pub fn bound_text(text: &mut String, max: usize) {
    if text.chars().count() <= max {
        return;
    }
    let keep = max.saturating_sub(TRUNCATED_MARKER.chars().count());
    let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    text.truncate(cut);
    text.push_str(TRUNCATED_MARKER);
}

/// Bounds the free text an event carries (see [`MAX_TEXT_CHARS`]).
fn bound_event(kind: &mut EventKind) {
    match kind {
        EventKind::TranscriptTurn { text, .. } => bound_text(text, MAX_TEXT_CHARS),
        EventKind::Analysis { analysis } => {
            if let Some(t) = analysis.summary.as_mut() {
                bound_text(t, voxline_shared::analysis::MAX_SUMMARY_CHARS);
            }
        }
        EventKind::Summary { summary, outcome } => {
            if let Some(t) = summary {
                bound_text(t, MAX_TEXT_CHARS);
            }
            if let Some(t) = outcome {
                bound_text(t, MAX_OUTCOME_CHARS);
            }
        }
        _ => {}
    }
}

/// Text message ids remembered as sent (at most this many)...
pub const MAX_REMEMBERED_MESSAGES: usize = 10_000;
/// ...for at most this long: the edge never offers a message again later.
pub const REMEMBER_MESSAGES_MS: u64 = 24 * 3_600 * 1_000;
/// Results waiting for the edge at most; beyond, the oldest is given up
/// (the edge fails a message whose result never comes, `no_result`).
pub const MAX_PENDING_RESULTS: usize = 10_000;
/// Longest `message_id` taken (a longer one is not a message of ours).
pub const MAX_MESSAGE_ID_CHARS: usize = 128;
/// Forwarding an inbound text gets this long before the trunk is told 480
/// (the SIP side answers 480 itself after 8 s).
pub const INBOUND_FORWARD_TIMEOUT_MS: u64 = 7_000;
/// Asking the edge about an inbound call gets this long before the caller
/// is refused with 480 (the SIP side itself refuses after 10 s).
pub const INBOUND_CALL_TIMEOUT_MS: u64 = 6_000;
/// A tool call's request: the edge waits up to a tool's 20 s timeout, plus
/// the link's own time.
pub const TOOL_CALL_TIMEOUT_MS: u64 = 25_000;
/// Tool calls waiting to be sent (all calls together); more are answered
/// `tool_busy` at once.
pub const MAX_QUEUED_TOOL_CALLS: usize = 64;
/// A phone's REGISTER asked of the edge (issue 16): the phone retransmits
/// meanwhile, and the SIP side answers 503 itself after 20 s.
pub const PHONE_REGISTRATION_TIMEOUT_MS: u64 = 10_000;
/// Phones' REGISTERs waiting to be sent; more are answered at once (503).
pub const MAX_QUEUED_PHONE_REGISTRATIONS: usize = 128;

/// How one text message ended, for its [`MessageResult`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReport {
    pub outcome: MessageOutcome,
    pub sip_code: Option<u16>,
    pub reason: Option<String>,
    pub imdn_message_id: Option<String>,
}

/// Acks are retried at most this far apart.
pub const ACK_RETRY_MAX_MS: u64 = 1_000;

impl LeaseSettings {
    pub fn new(sidecar_id: impl Into<String>, region: impl Into<String>, capacity: u32) -> Self {
        LeaseSettings {
            sidecar_id: sidecar_id.into(),
            region: region.into(),
            capacity,
            version: env!("CARGO_PKG_VERSION").to_string(),
            lease_wait_ms: 25_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            ack_retry_initial_ms: 100,
            min_empty_poll_interval_ms: 250,
            max_batch_events: 100,
            max_batch_bytes: MAX_BATCH_BYTES,
            default_ack_window_ms: 5_000,
        }
    }
}

/// A request the driver must sign and POST.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Register(Registration),
    Lease(LeaseRequest),
    Ack(Ack),
    Events(EventBatch),
    /// A recording upload: the body is the file at `path`; the manifest is
    /// what is signed (see [`Request::body`]) and goes in a header.
    Recording(Upload),
    /// The last request, as the sidecar exits (see [`LeaseClient::farewell`]).
    Deregister(Deregistration),
    /// How a text message ended.
    MessageResult(MessageResult),
    /// A text the trunk sent us.
    InboundMessage(InboundMessage),
    /// A call a trunk placed to us, ringing.
    InboundCall(InboundCall),
    /// A customer tool the engine of a held call called (issue 18).
    ToolCall(ToolCall),
    /// A user's phone REGISTERed with us (issue 16).
    PhoneRegistration(Box<PhoneRegistration>),
    /// A call's transcript made from its recording after the call (issue 16).
    Transcript(Box<CallTranscript>),
}

/// One post-call transcript to send, and where it is spooled (removed once
/// the edge has it; none when the call had no recordings directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptUpload {
    pub transcript: CallTranscript,
    pub spool: Option<PathBuf>,
}

/// One recording to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub manifest: RecordingManifest,
    pub path: PathBuf,
}

impl Request {
    pub fn path(&self) -> &'static str {
        match self {
            Request::Register(_) => paths::REGISTER,
            Request::Lease(_) => paths::LEASE,
            Request::Ack(_) => paths::ACK,
            Request::Events(_) => paths::EVENTS,
            Request::Recording(_) => paths::RECORDING,
            Request::Deregister(_) => paths::DEREGISTER,
            Request::MessageResult(_) => paths::MESSAGE_RESULTS,
            Request::InboundMessage(_) => paths::INBOUND_MESSAGES,
            Request::InboundCall(_) => paths::INBOUND_CALLS,
            Request::ToolCall(_) => paths::TOOL_CALLS,
            Request::PhoneRegistration(_) => paths::REGISTRATIONS,
            Request::Transcript(_) => paths::TRANSCRIPTS,
        }
    }

    /// The JSON body, exactly as it must be signed and sent (for a recording:
    /// the manifest, signed and sent as a header; the file is the body).
    pub fn body(&self) -> Vec<u8> {
        let r = match self {
            Request::Recording(u) => serde_json::to_vec(&u.manifest),
            Request::Deregister(m) => serde_json::to_vec(m),
            Request::Register(m) => serde_json::to_vec(m),
            Request::Lease(m) => serde_json::to_vec(m),
            Request::Ack(m) => serde_json::to_vec(m),
            Request::Events(m) => serde_json::to_vec(m),
            Request::MessageResult(m) => serde_json::to_vec(m),
            Request::InboundMessage(m) => serde_json::to_vec(m),
            Request::InboundCall(m) => serde_json::to_vec(m),
            Request::ToolCall(m) => serde_json::to_vec(m),
            Request::PhoneRegistration(m) => serde_json::to_vec(m),
            Request::Transcript(m) => serde_json::to_vec(m),
        };
        r.expect("protocol types always serialize")
    }

    /// How long the driver should let this request run before reporting a timeout.
    pub fn timeout_ms(&self) -> u64 {
        match self {
            Request::Lease(l) => u64::from(l.wait_ms) + 15_000,
            // At least 64 KB/s: an hour of stereo G.711-rate audio in 30 minutes.
            Request::Recording(u) => 30_000 + u.manifest.bytes / 64,
            // Sent while exiting: an edge that does not answer fast is not waited for.
            Request::Deregister(_) => 2_000,
            // The trunk waits for our answer: inside the SIP side's bound.
            Request::InboundMessage(_) => INBOUND_FORWARD_TIMEOUT_MS,
            Request::InboundCall(_) => INBOUND_CALL_TIMEOUT_MS,
            Request::ToolCall(_) => TOOL_CALL_TIMEOUT_MS,
            Request::PhoneRegistration(_) => PHONE_REGISTRATION_TIMEOUT_MS,
            _ => 15_000,
        }
    }
}

/// One request to send, with the id its [`Reply`] must carry back.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub id: RequestId,
    pub request: Request,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The edge answered (any status).
    Http { status: u16, body: Vec<u8> },
    /// No answer: connect/TLS/IO failure or timeout (the driver enforces [`Request::timeout_ms`]).
    Failed(String),
    /// Not sent: the driver could not build it (a recording file cannot be
    /// read). Sending it again cannot help.
    Unsendable(String),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The edge confirmed our accepting ack: run this call (emit `dialing` first).
    /// Boxed: an offer is many times the size of the other actions.
    StartCall(Box<Offer>),
    /// End this running call; its `ended` event must carry reason `hangup_requested`.
    Hangup { call_id: String },
    /// Transfer this running call's callee (the edge's command, issue 16).
    Transfer {
        call_id: String,
        order: crate::call_task::bridge::TransferOrder,
    },
    /// The edge stored this recording: its local files can go.
    UploadDone(Upload),
    /// The edge has this post-call transcript: its spool file can go.
    TranscriptDone(TranscriptUpload),
    /// Worth a log line; no action needed.
    Notice(Notice),
    /// The edge refused the link for good: stop once the calls being hung
    /// up have ended, and report why (a configuration or version mismatch).
    Halt(LinkRefusal),
    /// Send this text through the trunk, once; report its end with
    /// [`LeaseClient::message_done`].
    SendMessage(Box<MessageOffer>),
    /// The edge answered inbound text `token` (see
    /// [`LeaseClient::forward_inbound`]): answer the trunk with `sip_code`.
    InboundAnswered { token: u64, sip_code: u16 },
    /// The decision about inbound call `token` (see
    /// [`LeaseClient::forward_inbound_call`]): answer it and run the offer
    /// (the call is held here already), or refuse the caller with a code.
    InboundCallDecided {
        token: u64,
        decision: InboundDecision,
    },
    /// The answer to tool call `token` (see [`LeaseClient::forward_tool_call`]):
    /// the edge's, or a failure with a `tool_errors` code.
    ToolCallAnswered { token: u64, answer: ToolCallAnswer },
    /// The edge's answer to phone REGISTER `token` (see
    /// [`LeaseClient::forward_phone_registration`]); `None`: no usable
    /// answer (the phone gets 503).
    PhoneRegistrationAnswered {
        token: u64,
        answer: Option<PhoneRegistrationAnswer>,
    },
}

/// A refusal of the link that no retry can fix, read from an error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRefusal {
    /// The request that was refused.
    pub path: &'static str,
    pub status: u16,
    /// The edge's `error.code`.
    pub code: String,
    /// The edge's `error.message`.
    pub detail: String,
    /// What the operator should do.
    pub hint: &'static str,
}

/// The refusal in an edge's error answer, if it is one retrying cannot fix.
///
/// - `signature_version_unsupported`: the edge does not take this build's
///   signature scheme (`v2`): an older sidecar, or a newer edge.
/// - `https_required`: the edge takes the link over https only.
/// - `invalid_signature` saying `malformed: x-voxline-signature`: an edge
///   from before `v2`, which reads only `v1` (this build always sends a
///   well-formed `v2`, so nothing else makes that header malformed).
pub fn link_refusal(path: &'static str, reply: &Reply) -> Option<LinkRefusal> {
    let Reply::Http { status, body } = reply else {
        return None;
    };
    if !(400..500).contains(status) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v["error"]["code"].as_str()?;
    let detail = v["error"]["message"].as_str().unwrap_or("");
    let hint = match code {
        "signature_version_unsupported" => {
            "the edge does not accept this sidecar's request signatures (v2, binding method and path): run a sidecar and an edge of the same release"
        }
        "https_required" => {
            "the edge takes the sidecar link over https only (it is not in development mode): set edge_url to https:// or https+h3://"
        }
        "invalid_signature" if detail.contains("malformed: x-voxline-signature") => {
            "the edge predates v2 request signatures (it reads only v1): upgrade the edge first"
        }
        _ => return None,
    };
    let mut detail = detail.to_string();
    bound_text(&mut detail, 500);
    Some(LinkRefusal {
        path,
        status: *status,
        code: code.chars().take(64).collect(),
        detail,
        hint,
    })
}

/// Things that happened, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Registered(RegistrationAck),
    /// Register failed; the next try is at `retry_at_ms`.
    RegisterFailed {
        status: Option<u16>,
        detail: String,
        retry_at_ms: u64,
    },
    /// The edge refused our credentials for good (`401`/`403` on register):
    /// these calls are being hung up (or cancelled before they are dialled).
    CredentialsRefused {
        status: u16,
        hanging_up: Vec<String>,
    },
    /// A `401`/`410` on `path`: registering again.
    Reregistering {
        path: &'static str,
        status: u16,
    },
    LeaseFailed {
        status: Option<u16>,
        detail: String,
        retry_at_ms: u64,
    },
    /// An answer had a protocol version this build does not speak.
    ProtocolMismatch {
        path: &'static str,
        got: u32,
    },
    OfferAccepted {
        call_id: String,
        lease_id: String,
    },
    OfferRejected {
        call_id: String,
        lease_id: String,
        reason: &'static str,
    },
    /// An accepted offer will not be run: the edge said `409` or the ack deadline passed.
    OfferLost {
        call_id: String,
        lease_id: String,
        why: String,
    },
    /// An offer's absolute ack deadline was already past on our clock when it arrived.
    ClockSkew {
        call_id: String,
        ack_deadline_ms: u64,
        now_ms: u64,
    },
    AckFailed {
        call_id: String,
        status: Option<u16>,
        detail: String,
        retry_at_ms: u64,
    },
    EventsFailed {
        status: Option<u16>,
        detail: String,
        retry_at_ms: u64,
    },
    /// A batch the edge refused as invalid (`400`/`413`/`422`); retrying cannot help.
    EventsDropped {
        count: usize,
        status: u16,
        detail: String,
    },
    /// The edge recorded fewer new events than sent (duplicates of a retried batch).
    EventsDuplicates {
        sent: usize,
        accepted: u32,
    },
    HangupForUnknownCall {
        call_id: String,
    },
    /// A transfer command for a call that is not running here (unknown,
    /// not started yet, or ending): dropped; the edge's transfer fails by
    /// time (no `transferred`).
    TransferNotRunning {
        call_id: String,
    },
    /// The [`EventStore`] failed: these events will not survive a restart.
    EventsNotSaved {
        call_id: String,
        attempt: u32,
        detail: String,
    },
    /// A call a previous run held, taken back with its unacknowledged events;
    /// `lost`: it had not ended, so it ends here as `failed`/`media_lost`.
    CallRestored {
        call_id: String,
        attempt: u32,
        events: usize,
        lost: bool,
    },
    /// Restored events of a call already held here: not taken.
    RestoreSkipped {
        call_id: String,
        events: usize,
    },
    UnknownCommand,
    /// A call's `ended` event was acknowledged: its slot is free.
    CallReleased {
        call_id: String,
    },
    UploadFailed {
        call_id: String,
        status: Option<u16>,
        detail: String,
        retry_at_ms: u64,
    },
    /// Given up: the edge refused it for good, or it could not be read. The file stays.
    UploadRefused {
        call_id: String,
        status: Option<u16>,
        detail: String,
        path: PathBuf,
    },
    TranscriptFailed {
        call_id: String,
        status: Option<u16>,
        detail: String,
        retry_at_ms: u64,
    },
    /// Given up (the edge refused it for good). Its spool file stays.
    TranscriptRefused {
        call_id: String,
        status: Option<u16>,
        detail: String,
    },
    /// A text already sent (or reported) here was offered again: ignored.
    MessageDuplicate {
        message_id: String,
    },
    /// A text whose deadline had passed: not sent, reported `expired`.
    MessageExpired {
        message_id: String,
    },
    /// A text offer that cannot be sent (bad number, body or id): reported
    /// `rejected` when it has a usable id, else dropped.
    MessageRefused {
        message_id: String,
        why: &'static str,
    },
    MessageResultFailed {
        message_id: String,
        status: Option<u16>,
        detail: String,
        retry_at_ms: u64,
    },
    /// A result the edge refused for good (or does not know): given up.
    MessageResultDropped {
        message_id: String,
        status: u16,
        detail: String,
    },
    /// The edge did not take an inbound text (the trunk gets 480 and retries).
    InboundNotTaken {
        status: Option<u16>,
        detail: String,
    },
    /// The edge gave no usable answer to a phone's REGISTER (503 to the phone).
    PhoneRegistrationNotTaken {
        status: Option<u16>,
        detail: String,
    },
}

/// Why [`LeaseClient::emit`] refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// Not a call this sidecar runs (never started, or already released).
    UnknownCall,
    /// The call is not started yet (its ack is not confirmed).
    NotStarted,
    /// The call already emitted its `ended` event.
    AlreadyEnded,
}

/// Exponential backoff without jitter, on the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    failures: u32,
}

impl Backoff {
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        Backoff {
            initial_ms: initial_ms.max(1),
            max_ms: max_ms.max(1),
            failures: 0,
        }
    }

    /// Records a failure and returns the delay before the next try:
    /// initial, 2x, 4x, ... capped at max.
    pub fn fail(&mut self) -> u64 {
        let shift = self.failures.min(32);
        self.failures = self.failures.saturating_add(1);
        self.initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_ms)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Register at or after `at_ms`.
    Unregistered {
        at_ms: u64,
    },
    Registering {
        id: RequestId,
    },
    Registered,
}

#[derive(Debug, Clone, PartialEq)]
enum CallState {
    /// Slot reserved, accepting ack not yet confirmed. Keeps the offer to start it.
    Acking {
        offer: Box<Offer>,
        hangup_requested: bool,
    },
    Active {
        hangup_sent: bool,
    },
    /// `ended` emitted with this seq; released once it is acknowledged.
    Ending {
        ended_seq: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct HeldCall {
    lease_id: String,
    attempt: u32,
    last_seq: u32,
    state: CallState,
    /// When its events said it got where (for an `ended` we must make up).
    reached: Reached,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reached {
    first_ms: Option<u64>,
    ringing_ms: Option<u64>,
    answered_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
struct PendingAck {
    ack: Ack,
    next_try_ms: u64,
    give_up_ms: u64,
    retry: Backoff,
    in_flight: Option<RequestId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    Register,
    Lease {
        sent_ms: u64,
    },
    /// Keyed by lease id in `acks`.
    Ack,
    Events {
        count: usize,
    },
    Upload,
    MessageResult,
    Inbound {
        token: u64,
    },
    InboundCall {
        token: u64,
    },
    ToolCall {
        token: u64,
    },
    PhoneRegistration {
        token: u64,
    },
    Transcript,
}

impl InFlight {
    fn path(self) -> &'static str {
        match self {
            InFlight::Register => paths::REGISTER,
            InFlight::Lease { .. } => paths::LEASE,
            InFlight::Ack => paths::ACK,
            InFlight::Events { .. } => paths::EVENTS,
            InFlight::Upload => paths::RECORDING,
            InFlight::MessageResult => paths::MESSAGE_RESULTS,
            InFlight::Inbound { .. } => paths::INBOUND_MESSAGES,
            InFlight::InboundCall { .. } => paths::INBOUND_CALLS,
            InFlight::ToolCall { .. } => paths::TOOL_CALLS,
            InFlight::PhoneRegistration { .. } => paths::REGISTRATIONS,
            InFlight::Transcript => paths::TRANSCRIPTS,
        }
    }
}

/// How a status code is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Ok,
    Reauth,
    Conflict,
    Invalid,
    Retry,
}

fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Ok,
        401 | 410 => Class::Reauth,
        409 => Class::Conflict,
        400 | 413 | 422 => Class::Invalid,
        _ => Class::Retry,
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}...")
    } else {
        s.to_string()
    }
}

/// A tool call's failed answer, made on this side of the link.
pub fn tool_failure(code: &str, message: &str) -> ToolCallAnswer {
    ToolCallAnswer {
        protocol_version: PROTOCOL_VERSION,
        ok: false,
        output: None,
        error: Some(voxline_shared::sidecar_link::ToolError {
            code: code.to_string(),
            message: message.to_string(),
        }),
        duration_ms: None,
    }
}

/// How an upload of something spooled (a recording, a post-call
/// transcript) went: a 404 (the call is gone) is final like any refusal,
/// a failed send is retried.
fn spooled_class(reply: &Reply) -> Class {
    match reply {
        Reply::Http { status: 404, .. } => Class::Invalid,
        Reply::Http { status, .. } => classify(*status),
        Reply::Failed(_) => Class::Retry,
        Reply::Unsendable(_) => Class::Invalid,
    }
}

fn describe(reply: &Reply) -> (Option<u16>, String) {
    match reply {
        Reply::Http { status, body } => (Some(*status), snippet(body)),
        Reply::Failed(e) | Reply::Unsendable(e) => (None, e.clone()),
    }
}

/// The sans-IO lease client. See the module docs.
#[derive(Debug)]
pub struct LeaseClient {
    s: LeaseSettings,
    phase: Phase,
    timing: Option<RegistrationAck>,
    link_backoff: Backoff,
    events_backoff: Backoff,
    next_id: RequestId,
    in_flight: BTreeMap<RequestId, InFlight>,
    lease_in_flight: bool,
    next_lease_at_ms: u64,
    calls: BTreeMap<String, HeldCall>,
    /// By lease id.
    acks: BTreeMap<String, PendingAck>,
    events: VecDeque<CallEvent>,
    events_in_flight: bool,
    events_retry_at_ms: u64,
    uploads: VecDeque<Upload>,
    upload_in_flight: bool,
    uploads_retry_at_ms: u64,
    uploads_backoff: Backoff,
    /// Post-call transcripts to send, oldest first (the front may be in flight).
    transcripts: VecDeque<TranscriptUpload>,
    transcript_in_flight: bool,
    transcripts_retry_at_ms: u64,
    transcripts_backoff: Backoff,
    actions: VecDeque<Action>,
    draining: bool,
    store: Option<Box<dyn EventStore>>,
    /// Set once the edge refused the link for good: nothing more is sent.
    halted: Option<LinkRefusal>,
    /// Text message ids sent (or reported) here, with when; and their order.
    sent_messages: BTreeMap<String, u64>,
    sent_order: VecDeque<(u64, String)>,
    /// Texts handed to the driver whose end has not come yet.
    sending: std::collections::BTreeSet<String>,
    /// Results to deliver, oldest first (the front may be in flight).
    results: VecDeque<MessageResult>,
    result_in_flight: bool,
    results_retry_at_ms: u64,
    results_backoff: Backoff,
    /// Inbound texts to forward now, with the driver's token.
    inbound: VecDeque<(u64, InboundMessage)>,
    /// Inbound calls to ask the edge about now, with the driver's token.
    inbound_calls: VecDeque<(u64, InboundCall)>,
    /// Tool calls to send now, with the driver's token (bounded:
    /// [`MAX_QUEUED_TOOL_CALLS`]).
    tool_calls: VecDeque<(u64, ToolCall)>,
    /// Phones' REGISTERs to send now, with the driver's token (bounded:
    /// [`MAX_QUEUED_PHONE_REGISTRATIONS`]).
    phone_registrations: VecDeque<(u64, PhoneRegistration)>,
}

impl LeaseClient {
    pub fn new(settings: LeaseSettings) -> Self {
        let link_backoff = Backoff::new(settings.backoff_initial_ms, settings.backoff_max_ms);
        LeaseClient {
            events_backoff: link_backoff,
            link_backoff,
            s: settings,
            phase: Phase::Unregistered { at_ms: 0 },
            timing: None,
            next_id: 1,
            in_flight: BTreeMap::new(),
            lease_in_flight: false,
            next_lease_at_ms: 0,
            calls: BTreeMap::new(),
            acks: BTreeMap::new(),
            events: VecDeque::new(),
            events_in_flight: false,
            events_retry_at_ms: 0,
            uploads: VecDeque::new(),
            upload_in_flight: false,
            uploads_retry_at_ms: 0,
            uploads_backoff: link_backoff,
            transcripts: VecDeque::new(),
            transcript_in_flight: false,
            transcripts_retry_at_ms: 0,
            transcripts_backoff: link_backoff,
            actions: VecDeque::new(),
            draining: false,
            store: None,
            halted: None,
            sent_messages: BTreeMap::new(),
            sent_order: VecDeque::new(),
            sending: Default::default(),
            results: VecDeque::new(),
            result_in_flight: false,
            results_retry_at_ms: 0,
            results_backoff: link_backoff,
            inbound: VecDeque::new(),
            inbound_calls: VecDeque::new(),
            tool_calls: VecDeque::new(),
            phone_registrations: VecDeque::new(),
        }
    }

    /// Keeps every unacknowledged event in `store` from now on (see [`EventStore`]).
    pub fn set_event_store(&mut self, store: Box<dyn EventStore>) {
        self.store = Some(store);
    }

    /// Hands the store the current unacknowledged events of one call attempt.
    fn persist(&mut self, call_id: &str, attempt: u32) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let unacked: Vec<CallEvent> = self
            .events
            .iter()
            .filter(|e| e.call_id == call_id && e.attempt == attempt)
            .cloned()
            .collect();
        if let Err(detail) = store.save(call_id, attempt, &unacked) {
            self.notice(Notice::EventsNotSaved {
                call_id: call_id.to_string(),
                attempt,
                detail,
            });
        }
    }

    /// Takes back the unacknowledged events a previous run left (see the
    /// module docs). Meant for start-up, before the first registration: the
    /// events go ahead of any queued since. Each call is held again, as its
    /// highest attempt; one whose events have no `ended` gets one now
    /// (`failed`/`media_lost`, the timings it reached). Events of a call
    /// already held here are skipped. Returns how many calls are held again.
    pub fn restore_events(&mut self, now_ms: u64, events: Vec<CallEvent>) -> usize {
        // By call, then attempt, then seq: duplicates collapse, order is restored.
        let mut by_call: BTreeMap<String, BTreeMap<u32, BTreeMap<u32, CallEvent>>> =
            BTreeMap::new();
        for ev in events {
            by_call
                .entry(ev.call_id.clone())
                .or_default()
                .entry(ev.attempt)
                .or_default()
                .insert(ev.seq, ev);
        }
        let mut groups: Vec<Vec<CallEvent>> = Vec::new();
        let mut restored = 0;
        for (call_id, attempts) in by_call {
            if self.calls.contains_key(&call_id) {
                let events = attempts.values().map(BTreeMap::len).sum();
                self.notice(Notice::RestoreSkipped { call_id, events });
                continue;
            }
            let Some((&attempt, _)) = attempts.last_key_value() else {
                continue;
            };
            for (a, by_seq) in attempts {
                let mut evs: Vec<CallEvent> = by_seq.into_values().collect();
                if a != attempt {
                    groups.push(evs); // an earlier attempt's leftovers: delivered, not held
                    continue;
                }
                let last_seq = evs.last().map_or(0, |e| e.seq);
                let ended_seq = evs.iter().rev().find(|e| e.kind.is_ended()).map(|e| e.seq);
                let lost = ended_seq.is_none();
                let ended_seq = ended_seq.unwrap_or_else(|| {
                    // Died with the previous process: say so, with what it reached.
                    let at = |k: &str| evs.iter().find(|e| e.kind.name() == k).map(|e| e.at_ms);
                    let dispatched_ms = evs.first().map_or(now_ms, |e| e.at_ms);
                    let timings = Timings {
                        dispatched_ms,
                        ringing_ms: at("ringing"),
                        answered_ms: at("answered"),
                        ended_ms: now_ms,
                    };
                    let kind = EventKind::Ended {
                        status: CallStatus::Failed,
                        reason: EndedReason::MediaLost,
                        retry_after_s: None,
                        sip_code: None,
                        timings,
                    };
                    evs.push(CallEvent {
                        call_id: call_id.clone(),
                        attempt,
                        seq: last_seq + 1,
                        at_ms: now_ms,
                        kind,
                    });
                    last_seq + 1
                });
                self.notice(Notice::CallRestored {
                    call_id: call_id.clone(),
                    attempt,
                    events: evs.len(),
                    lost,
                });
                self.calls.insert(
                    call_id.clone(),
                    HeldCall {
                        // Not kept on disk and not needed: the lease is confirmed, and
                        // an offer can never match this (an empty lease id).
                        lease_id: String::new(),
                        attempt,
                        last_seq: last_seq.max(ended_seq),
                        state: CallState::Ending { ended_seq },
                        reached: Reached::default(),
                    },
                );
                restored += 1;
                groups.push(evs);
            }
        }
        // Oldest first across calls; each call's events stay in seq order.
        groups.sort_by_key(|g| g.first().map_or(0, |e| e.at_ms));
        let restored_events: Vec<CallEvent> = groups.into_iter().flatten().collect();
        let touched: std::collections::BTreeSet<(String, u32)> = restored_events
            .iter()
            .map(|e| (e.call_id.clone(), e.attempt))
            .collect();
        if self.events_in_flight {
            // The in-flight batch is the queue's front: keep it there.
            self.events.extend(restored_events);
        } else {
            for ev in restored_events.into_iter().rev() {
                self.events.push_front(ev);
            }
        }
        // Rewritten as held now (adds the `ended` of a lost call; drops duplicates).
        for (call_id, attempt) in touched {
            self.persist(&call_id, attempt);
        }
        restored
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.s
    }

    pub fn is_registered(&self) -> bool {
        self.phase == Phase::Registered
    }

    /// The timing contract from the last registration.
    pub fn timing(&self) -> Option<RegistrationAck> {
        self.timing
    }

    /// Calls holding a slot (acking, running, or ended but not yet acknowledged).
    pub fn held_calls(&self) -> Vec<String> {
        self.calls.keys().cloned().collect()
    }

    pub fn holds(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    /// A new capacity (a SIGHUP reload): the free slots of the next lease
    /// poll follow it; calls held beyond it keep going. Bounded as the
    /// config is (1..=[`crate::config::MAX_CAPACITY`]).
    pub fn set_capacity(&mut self, capacity: u32) {
        self.s.capacity = capacity.clamp(1, crate::config::MAX_CAPACITY);
    }

    /// Slots we can offer the edge now (`0` while draining).
    pub fn free_slots(&self) -> u32 {
        if self.draining {
            0
        } else {
            self.s.capacity.saturating_sub(self.calls.len() as u32)
        }
    }

    /// Events waiting for the edge's acknowledgement (including an in-flight batch).
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Stop taking work: later lease polls ask for no offers; offers are rejected
    /// with `draining`. Polling continues (hangup commands still arrive).
    pub fn begin_drain(&mut self) {
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The message to send as the process exits, so the edge stops handing
    /// this sidecar work (a long-poll of ours may still be open there) and
    /// fails what it still holds at once. `None` if never registered.
    pub fn farewell(&self) -> Option<Request> {
        (self.timing.is_some() && self.halted.is_none()).then(|| {
            Request::Deregister(Deregistration {
                protocol_version: PROTOCOL_VERSION,
                sidecar_id: self.s.sidecar_id.clone(),
                region: self.s.region.clone(),
            })
        })
    }

    /// Recordings waiting to be uploaded (including one in flight).
    pub fn pending_uploads(&self) -> usize {
        self.uploads.len()
    }

    /// Queues a recording for upload (after the events already queued).
    pub fn queue_upload(&mut self, upload: Upload) {
        self.uploads.push_back(upload);
    }

    /// Queues a post-call transcript (after the events already queued:
    /// the edge has the call's `ended` first).
    pub fn queue_transcript(&mut self, t: TranscriptUpload) {
        self.transcripts.push_back(t);
    }

    /// Transcripts waiting to be sent (including one in flight).
    pub fn pending_transcripts(&self) -> usize {
        self.transcripts.len()
    }

    /// Nothing held, nothing left to tell the edge.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty()
            && self.events.is_empty()
            && self.acks.is_empty()
            && self.uploads.is_empty()
            && self.transcripts.is_empty()
            && self.sending.is_empty()
            && self.results.is_empty()
    }

    /// Message results waiting for the edge (including one in flight).
    pub fn pending_message_results(&self) -> usize {
        self.results.len()
    }

    /// Texts handed to the driver and not yet ended.
    pub fn messages_sending(&self) -> usize {
        self.sending.len()
    }

    /// Remembers `message_id` as sent (bounded: see [`MAX_REMEMBERED_MESSAGES`]).
    fn remember_message(&mut self, now_ms: u64, message_id: &str) {
        while let Some((at, _)) = self.sent_order.front() {
            let old = now_ms.saturating_sub(*at) >= REMEMBER_MESSAGES_MS;
            if !old && self.sent_order.len() < MAX_REMEMBERED_MESSAGES {
                break;
            }
            if let Some((_, id)) = self.sent_order.pop_front() {
                self.sent_messages.remove(&id);
            }
        }
        self.sent_messages.insert(message_id.to_string(), now_ms);
        self.sent_order.push_back((now_ms, message_id.to_string()));
    }

    fn on_message_offer(&mut self, now_ms: u64, m: MessageOffer) {
        let message_id = m.message_id.clone();
        let id_ok = !message_id.is_empty()
            && message_id.chars().count() <= MAX_MESSAGE_ID_CHARS
            && message_id.chars().all(|c| !c.is_control());
        if !id_ok {
            let shown: String = message_id.chars().take(MAX_MESSAGE_ID_CHARS).collect();
            return self.notice(Notice::MessageRefused {
                message_id: shown,
                why: "unusable message_id",
            });
        }
        if self.sent_messages.contains_key(&message_id) {
            return self.notice(Notice::MessageDuplicate { message_id });
        }
        self.remember_message(now_ms, &message_id);
        let refused = if !crate::sip::text_message::is_e164(&m.to) {
            Some("`to` is not an E.164 number")
        } else if !crate::sip::text_message::is_e164(&m.from) {
            Some("`from` is not an E.164 number")
        } else if m.body.chars().count() > MAX_MESSAGE_CHARS {
            Some("body over MAX_MESSAGE_CHARS")
        } else {
            None
        };
        let failed = |reason: &str| MessageReport {
            outcome: MessageOutcome::Failed,
            sip_code: None,
            reason: Some(reason.to_string()),
            imdn_message_id: None,
        };
        if let Some(why) = refused {
            self.notice(Notice::MessageRefused {
                message_id: message_id.clone(),
                why,
            });
            return self.queue_result(now_ms, &message_id, failed("rejected"));
        }
        if m.deadline_ms <= now_ms {
            self.notice(Notice::MessageExpired {
                message_id: message_id.clone(),
            });
            return self.queue_result(now_ms, &message_id, failed("expired"));
        }
        self.sending.insert(message_id);
        self.actions.push_back(Action::SendMessage(Box::new(m)));
    }

    /// How a text handed out by [`Action::SendMessage`] ended: reported to the
    /// edge (once; a second report of the same id is ignored).
    pub fn message_done(&mut self, now_ms: u64, message_id: &str, report: MessageReport) {
        if self.sending.remove(message_id) {
            self.queue_result(now_ms, message_id, report);
        }
    }

    fn queue_result(&mut self, now_ms: u64, message_id: &str, r: MessageReport) {
        if self.results.len() >= MAX_PENDING_RESULTS {
            // Not the front while it is in flight: its reply pops it.
            let oldest = usize::from(self.result_in_flight);
            if let Some(dropped) = self.results.remove(oldest) {
                self.notice(Notice::MessageResultDropped {
                    message_id: dropped.message_id,
                    status: 0,
                    detail: "too many results waiting for the edge".into(),
                });
            }
        }
        self.results.push_back(MessageResult {
            protocol_version: PROTOCOL_VERSION,
            sidecar_id: self.s.sidecar_id.clone(),
            message_id: message_id.to_string(),
            outcome: r.outcome,
            sip_code: r.sip_code,
            reason: r.reason,
            imdn_message_id: r.imdn_message_id,
            at_ms: now_ms,
        });
    }

    /// Forwards a text the trunk sent us (`sidecar_id`, `region` and the
    /// version are filled in here). Its answer comes back as
    /// [`Action::InboundAnswered`] with `token`; at once (480) when the
    /// sidecar is not registered.
    pub fn forward_inbound(&mut self, token: u64, mut m: InboundMessage) {
        if self.phase != Phase::Registered || self.halted.is_some() {
            self.actions.push_back(Action::InboundAnswered {
                token,
                sip_code: 480,
            });
            return;
        }
        m.protocol_version = PROTOCOL_VERSION;
        m.sidecar_id = self.s.sidecar_id.clone();
        m.region = self.s.region.clone();
        self.inbound.push_back((token, m));
    }

    /// Asks the edge about a call a trunk placed to us, ringing now
    /// (`sidecar_id`, `region` and the version are filled in here). The
    /// decision comes back as [`Action::InboundCallDecided`] with `token`:
    /// at once when this sidecar cannot take it (not registered, draining:
    /// 480; every slot taken: 503, so the trunk may try another sidecar).
    pub fn forward_inbound_call(&mut self, token: u64, mut call: InboundCall) {
        let refuse = |sip_code: u16| InboundDecision::Refuse {
            sip_code,
            reason: "sidecar_unavailable".into(),
        };
        let decision = if self.phase != Phase::Registered || self.halted.is_some() || self.draining
        {
            Some(refuse(480))
        } else if self.free_slots() == 0 {
            Some(refuse(503))
        } else {
            None
        };
        if let Some(decision) = decision {
            self.actions
                .push_back(Action::InboundCallDecided { token, decision });
            return;
        }
        call.protocol_version = PROTOCOL_VERSION;
        call.sidecar_id = self.s.sidecar_id.clone();
        call.region = self.s.region.clone();
        self.inbound_calls.push_back((token, call));
    }

    /// Asks the edge to call a customer tool for a call held here (issue
    /// 18; `sidecar_id` and the version are filled in here). The answer
    /// comes back as [`Action::ToolCallAnswered`] with `token`: at once,
    /// failed, when the link cannot carry it now.
    pub fn forward_tool_call(&mut self, token: u64, mut call: ToolCall) {
        use voxline_shared::sidecar_link::tool_errors;
        let refused = if self.phase != Phase::Registered || self.halted.is_some() {
            Some((
                tool_errors::UNAVAILABLE,
                "the sidecar is not linked to the edge",
            ))
        } else if self.tool_calls.len() >= MAX_QUEUED_TOOL_CALLS {
            Some((tool_errors::BUSY, "too many tool calls waiting"))
        } else {
            None
        };
        if let Some((code, message)) = refused {
            let answer = tool_failure(code, message);
            self.actions
                .push_back(Action::ToolCallAnswered { token, answer });
            return;
        }
        call.protocol_version = PROTOCOL_VERSION;
        call.sidecar_id = self.s.sidecar_id.clone();
        self.tool_calls.push_back((token, call));
    }

    /// Asks the edge about a phone's REGISTER (`sidecar_id`, `region`, the
    /// version and the time are filled in here). The answer comes back as
    /// [`Action::PhoneRegistrationAnswered`] with `token`: at once, `None`,
    /// when the link cannot carry it now.
    pub fn forward_phone_registration(
        &mut self,
        now_ms: u64,
        token: u64,
        mut registration: PhoneRegistration,
    ) {
        if self.phase != Phase::Registered
            || self.halted.is_some()
            || self.phone_registrations.len() >= MAX_QUEUED_PHONE_REGISTRATIONS
        {
            self.actions.push_back(Action::PhoneRegistrationAnswered {
                token,
                answer: None,
            });
            return;
        }
        registration.protocol_version = PROTOCOL_VERSION;
        registration.sidecar_id = self.s.sidecar_id.clone();
        registration.region = self.s.region.clone();
        registration.received_ms = now_ms;
        self.phone_registrations.push_back((token, registration));
    }

    fn on_phone_registration(&mut self, now_ms: u64, token: u64, reply: Reply) {
        let answer = match &reply {
            Reply::Http { status, body } if (200..300).contains(status) => {
                serde_json::from_slice::<PhoneRegistrationAnswer>(body).ok()
            }
            Reply::Http {
                status: status @ (401 | 410),
                ..
            } => {
                self.reregister(now_ms, paths::REGISTRATIONS, *status);
                None
            }
            _ => None,
        };
        if answer.is_none() {
            let (status, detail) = describe(&reply);
            self.notice(Notice::PhoneRegistrationNotTaken { status, detail });
        }
        self.actions
            .push_back(Action::PhoneRegistrationAnswered { token, answer });
    }

    fn on_tool_call(&mut self, now_ms: u64, token: u64, reply: Reply) {
        let answer = match &reply {
            Reply::Http { status, body } if (200..300).contains(status) => {
                serde_json::from_slice::<ToolCallAnswer>(body).ok()
            }
            Reply::Http {
                status: status @ (401 | 410),
                ..
            } => {
                self.reregister(now_ms, paths::TOOL_CALLS, *status);
                None
            }
            _ => None,
        };
        let answer = answer.unwrap_or_else(|| {
            let (status, detail) = describe(&reply);
            let message = match status {
                Some(s) => format!("the edge answered {s}: {detail}"),
                None => format!("the edge did not answer: {detail}"),
            };
            tool_failure(
                voxline_shared::sidecar_link::tool_errors::UNAVAILABLE,
                &message,
            )
        });
        self.actions
            .push_back(Action::ToolCallAnswered { token, answer });
    }

    /// An inbound call the edge created for us is held here from now on,
    /// like an acked offer: in `held_calls`, a slot taken, its events numbered.
    fn hold_inbound(&mut self, offer: &Offer) {
        self.calls
            .entry(offer.call_id.clone())
            .or_insert_with(|| HeldCall {
                lease_id: offer.lease_id.clone(),
                attempt: offer.attempt,
                last_seq: 0,
                state: CallState::Active { hangup_sent: false },
                reached: Reached::default(),
            });
    }

    fn on_inbound_call(&mut self, now_ms: u64, token: u64, reply: Reply) {
        let answer = match &reply {
            Reply::Http { status, body } if (200..300).contains(status) => {
                serde_json::from_slice::<InboundCallAnswer>(body).ok()
            }
            Reply::Http {
                status: status @ (401 | 410),
                ..
            } => {
                self.reregister(now_ms, paths::INBOUND_CALLS, *status);
                None
            }
            _ => None,
        };
        let decision = match answer.map(|a| a.decision) {
            Some(InboundDecision::Answer { offer }) => {
                self.hold_inbound(&offer);
                InboundDecision::Answer { offer }
            }
            Some(InboundDecision::RingUser { offer, ring }) => {
                self.hold_inbound(&offer);
                InboundDecision::RingUser { offer, ring }
            }
            Some(InboundDecision::Queue { offer, queue }) => {
                self.hold_inbound(&offer);
                InboundDecision::Queue { offer, queue }
            }
            Some(refused @ InboundDecision::Refuse { .. }) => refused,
            None => {
                let (status, detail) = describe(&reply);
                self.notice(Notice::InboundNotTaken { status, detail });
                InboundDecision::Refuse {
                    sip_code: 480,
                    reason: "edge_unavailable".into(),
                }
            }
        };
        self.actions
            .push_back(Action::InboundCallDecided { token, decision });
    }

    fn wait_ms(&self) -> u32 {
        let mut wait = match self.timing {
            Some(t) if t.lease_wait_ms > 0 => t.lease_wait_ms,
            _ => self.s.lease_wait_ms,
        };
        wait = wait.min(MAX_LEASE_WAIT_MS);
        if let Some(t) = self.timing {
            if t.dead_after_ms > 0 {
                // Poll again well before the edge presumes us dead.
                wait = wait.min(u32::try_from(t.dead_after_ms / 2).unwrap_or(u32::MAX));
            }
        }
        wait
    }

    fn ack_window_ms(&self) -> u64 {
        match self.timing {
            Some(t) if t.ack_deadline_ms > 0 => t.ack_deadline_ms,
            _ => self.s.default_ack_window_ms,
        }
    }

    fn new_id(&mut self, what: InFlight) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(id, what);
        id
    }

    fn notice(&mut self, n: Notice) {
        self.actions.push_back(Action::Notice(n));
    }

    /// The next thing to do (start a call, hang one up, or a notice to log).
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Why the edge refused the link for good, once it did (see [`LinkRefusal`]).
    pub fn halted(&self) -> Option<&LinkRefusal> {
        self.halted.as_ref()
    }

    /// The next request to send now, if any. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Transmit> {
        if self.halted.is_some() {
            return None;
        }
        self.expire_acks(now_ms);
        match self.phase {
            Phase::Unregistered { at_ms } if now_ms >= at_ms => {
                let id = self.new_id(InFlight::Register);
                self.phase = Phase::Registering { id };
                return Some(Transmit {
                    id,
                    request: Request::Register(Registration {
                        protocol_version: PROTOCOL_VERSION,
                        sidecar_id: self.s.sidecar_id.clone(),
                        region: self.s.region.clone(),
                        capacity: self.s.capacity,
                        version: self.s.version.clone(),
                    }),
                });
            }
            _ => {}
        }

        // Acks first: they race a deadline, so they go out even while
        // re-registering (a 401/410 just schedules another try).
        let due = self
            .acks
            .iter()
            .find(|(_, a)| a.in_flight.is_none() && now_ms >= a.next_try_ms)
            .map(|(k, _)| k.clone());
        if let Some(lease_id) = due {
            let id = self.new_id(InFlight::Ack);
            let pending = self.acks.get_mut(&lease_id).expect("found above");
            pending.in_flight = Some(id);
            return Some(Transmit {
                id,
                request: Request::Ack(pending.ack.clone()),
            });
        }
        if self.phase != Phase::Registered {
            return None;
        }

        // A caller is waiting for the answer.
        if let Some((token, call)) = self.inbound_calls.pop_front() {
            let id = self.new_id(InFlight::InboundCall { token });
            return Some(Transmit {
                id,
                request: Request::InboundCall(call),
            });
        }
        // A phone is waiting (and retransmitting) for the answer.
        if let Some((token, registration)) = self.phone_registrations.pop_front() {
            let id = self.new_id(InFlight::PhoneRegistration { token });
            return Some(Transmit {
                id,
                request: Request::PhoneRegistration(Box::new(registration)),
            });
        }
        // An engine (and a callee) is waiting for the answer.
        if let Some((token, call)) = self.tool_calls.pop_front() {
            let id = self.new_id(InFlight::ToolCall { token });
            return Some(Transmit {
                id,
                request: Request::ToolCall(call),
            });
        }
        // The trunk is waiting for the answer.
        if let Some((token, m)) = self.inbound.pop_front() {
            let id = self.new_id(InFlight::Inbound { token });
            return Some(Transmit {
                id,
                request: Request::InboundMessage(m),
            });
        }

        if !self.events_in_flight && !self.events.is_empty() && now_ms >= self.events_retry_at_ms {
            let max_count = self.events.len().min(self.s.max_batch_events.max(1));
            // Bounded by size too: the first event always goes (each is
            // bounded by `bound_event`), the rest while the body stays small.
            let envelope = 64 + self.s.sidecar_id.len();
            let mut bytes = envelope;
            let mut events: Vec<CallEvent> = Vec::with_capacity(max_count);
            for e in self.events.iter().take(max_count) {
                let size = serde_json::to_vec(e).map_or(0, |v| v.len()) + 1;
                if !events.is_empty() && bytes + size > self.s.max_batch_bytes {
                    break;
                }
                bytes += size;
                events.push(e.clone());
            }
            let count = events.len();
            self.events_in_flight = true;
            let id = self.new_id(InFlight::Events { count });
            return Some(Transmit {
                id,
                request: Request::Events(EventBatch {
                    protocol_version: PROTOCOL_VERSION,
                    sidecar_id: self.s.sidecar_id.clone(),
                    events,
                }),
            });
        }

        if !self.result_in_flight && now_ms >= self.results_retry_at_ms {
            if let Some(front) = self.results.front() {
                let result = front.clone();
                self.result_in_flight = true;
                let id = self.new_id(InFlight::MessageResult);
                return Some(Transmit {
                    id,
                    request: Request::MessageResult(result),
                });
            }
        }

        // Behind the events: a recording never delays a call's status.
        if !self.upload_in_flight && self.events.is_empty() && now_ms >= self.uploads_retry_at_ms {
            if let Some(front) = self.uploads.front() {
                let mut upload = front.clone();
                upload.manifest.sidecar_id = self.s.sidecar_id.clone();
                upload.manifest.protocol_version = PROTOCOL_VERSION;
                self.upload_in_flight = true;
                let id = self.new_id(InFlight::Upload);
                return Some(Transmit {
                    id,
                    request: Request::Recording(upload),
                });
            }
        }

        if !self.transcript_in_flight
            && self.events.is_empty()
            && now_ms >= self.transcripts_retry_at_ms
        {
            if let Some(front) = self.transcripts.front() {
                let mut t = front.transcript.clone();
                t.sidecar_id = self.s.sidecar_id.clone();
                t.protocol_version = PROTOCOL_VERSION;
                self.transcript_in_flight = true;
                let id = self.new_id(InFlight::Transcript);
                return Some(Transmit {
                    id,
                    request: Request::Transcript(Box::new(t)),
                });
            }
        }

        if !self.lease_in_flight && now_ms >= self.next_lease_at_ms {
            self.lease_in_flight = true;
            let id = self.new_id(InFlight::Lease { sent_ms: now_ms });
            return Some(Transmit {
                id,
                request: Request::Lease(LeaseRequest {
                    protocol_version: PROTOCOL_VERSION,
                    sidecar_id: self.s.sidecar_id.clone(),
                    region: self.s.region.clone(),
                    free_slots: self.free_slots(),
                    held_calls: self.held_calls(),
                    wait_ms: self.wait_ms(),
                }),
            });
        }
        None
    }

    /// When to call [`poll_transmit`](Self::poll_transmit) again if no input
    /// arrives before (`None`: only an input can make progress).
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if self.halted.is_some() {
            return None;
        }
        let mut t: Option<u64> = None;
        let mut at = |x: u64| t = Some(t.map_or(x, |t| t.min(x)));
        match self.phase {
            Phase::Unregistered { at_ms } => at(at_ms),
            Phase::Registering { .. } => {}
            Phase::Registered => {
                if !self.lease_in_flight {
                    at(self.next_lease_at_ms);
                }
                if !self.events_in_flight && !self.events.is_empty() {
                    at(self.events_retry_at_ms);
                }
                if !self.upload_in_flight && self.events.is_empty() && !self.uploads.is_empty() {
                    at(self.uploads_retry_at_ms);
                }
                if !self.transcript_in_flight
                    && self.events.is_empty()
                    && !self.transcripts.is_empty()
                {
                    at(self.transcripts_retry_at_ms);
                }
                if !self.result_in_flight && !self.results.is_empty() {
                    at(self.results_retry_at_ms);
                }
                if !self.inbound.is_empty()
                    || !self.inbound_calls.is_empty()
                    || !self.tool_calls.is_empty()
                    || !self.phone_registrations.is_empty()
                {
                    at(0);
                }
            }
        }
        for a in self.acks.values().filter(|a| a.in_flight.is_none()) {
            at(a.next_try_ms.min(a.give_up_ms));
        }
        t
    }

    /// Gives up acks whose deadline passed without a confirmation in flight.
    fn expire_acks(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .acks
            .iter()
            .filter(|(_, a)| a.in_flight.is_none() && now_ms >= a.give_up_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for lease_id in expired {
            self.ack_lost(
                &lease_id,
                "ack deadline passed without a confirmation".into(),
            );
        }
    }

    fn ack_lost(&mut self, lease_id: &str, why: String) {
        let Some(pending) = self.acks.remove(lease_id) else {
            return;
        };
        let call_id = pending.ack.call_id.clone();
        if pending.ack.accepted {
            let was_acking = self.calls.get(&call_id).is_some_and(|c| {
                c.lease_id == lease_id && matches!(c.state, CallState::Acking { .. })
            });
            if was_acking {
                self.calls.remove(&call_id);
                self.notice(Notice::OfferLost {
                    call_id,
                    lease_id: lease_id.to_string(),
                    why,
                });
            }
        }
    }

    fn reregister(&mut self, now_ms: u64, path: &'static str, status: u16) {
        if self.phase == Phase::Registered {
            self.phase = Phase::Unregistered { at_ms: now_ms };
            self.notice(Notice::Reregistering { path, status });
        }
    }

    /// Feeds the reply to request `id`. Unknown ids are ignored.
    pub fn handle_reply(&mut self, now_ms: u64, id: RequestId, reply: Reply) {
        let Some(what) = self.in_flight.remove(&id) else {
            return;
        };
        if self.halted.is_some() {
            return;
        }
        if let Some(refusal) = link_refusal(what.path(), &reply) {
            // Every request is signed and sent alike: the rest would be
            // refused too. Hang up as for refused credentials, then stop.
            self.credentials_refused(refusal.status);
            self.halted = Some(refusal.clone());
            self.actions.push_back(Action::Halt(refusal));
            return;
        }
        match what {
            InFlight::Register => self.on_register(now_ms, id, reply),
            InFlight::Lease { sent_ms } => self.on_lease(now_ms, sent_ms, reply),
            InFlight::Ack => self.on_ack(now_ms, id, reply),
            InFlight::Events { count } => self.on_events(now_ms, count, reply),
            InFlight::Upload => self.on_upload(now_ms, reply),
            InFlight::Transcript => self.on_transcript(now_ms, reply),
            InFlight::MessageResult => self.on_message_result(now_ms, reply),
            InFlight::Inbound { token } => self.on_inbound(now_ms, token, reply),
            InFlight::InboundCall { token } => self.on_inbound_call(now_ms, token, reply),
            InFlight::ToolCall { token } => self.on_tool_call(now_ms, token, reply),
            InFlight::PhoneRegistration { token } => {
                self.on_phone_registration(now_ms, token, reply)
            }
        }
    }

    fn on_message_result(&mut self, now_ms: u64, reply: Reply) {
        self.result_in_flight = false;
        let Some(message_id) = self.results.front().map(|r| r.message_id.clone()) else {
            return;
        };
        let class = match &reply {
            // An edge without the path, or that does not know the message: never better.
            Reply::Http { status: 404, .. } => Class::Invalid,
            Reply::Http { status, .. } => classify(*status),
            Reply::Failed(_) | Reply::Unsendable(_) => Class::Retry,
        };
        let (status, detail) = describe(&reply);
        match class {
            Class::Ok => {
                self.results_backoff.reset();
                self.results.pop_front();
            }
            Class::Invalid | Class::Conflict => {
                self.results_backoff.reset();
                self.results.pop_front();
                self.notice(Notice::MessageResultDropped {
                    message_id,
                    status: status.unwrap_or(0),
                    detail,
                });
            }
            Class::Reauth => {
                if let Some(code) = status {
                    self.reregister(now_ms, paths::MESSAGE_RESULTS, code);
                }
                self.results_retry_at_ms = now_ms;
            }
            Class::Retry => {
                let delay = self.results_backoff.fail();
                self.results_retry_at_ms = now_ms + delay;
                self.notice(Notice::MessageResultFailed {
                    message_id,
                    status,
                    detail,
                    retry_at_ms: now_ms + delay,
                });
            }
        }
    }

    fn on_inbound(&mut self, now_ms: u64, token: u64, reply: Reply) {
        let sip_code = match &reply {
            Reply::Http { status, .. } if (200..300).contains(status) => 200,
            Reply::Http { status: 404, .. } => 404,
            _ => {
                if let Reply::Http {
                    status: status @ (401 | 410),
                    ..
                } = &reply
                {
                    self.reregister(now_ms, paths::INBOUND_MESSAGES, *status);
                }
                let (status, detail) = describe(&reply);
                self.notice(Notice::InboundNotTaken { status, detail });
                480
            }
        };
        self.actions
            .push_back(Action::InboundAnswered { token, sip_code });
    }

    fn on_register(&mut self, now_ms: u64, id: RequestId, reply: Reply) {
        if self.phase != (Phase::Registering { id }) {
            return;
        }
        if let Reply::Http { status, body } = &reply {
            if classify(*status) == Class::Ok {
                match serde_json::from_slice::<RegistrationAck>(body) {
                    Ok(ack) if check_version(ack.protocol_version).is_ok() => {
                        self.phase = Phase::Registered;
                        self.timing = Some(ack);
                        self.link_backoff.reset();
                        self.next_lease_at_ms = now_ms;
                        self.notice(Notice::Registered(ack));
                        return;
                    }
                    Ok(ack) => self.notice(Notice::ProtocolMismatch {
                        path: paths::REGISTER,
                        got: ack.protocol_version,
                    }),
                    Err(e) => {
                        let delay = self.link_backoff.fail();
                        self.phase = Phase::Unregistered {
                            at_ms: now_ms + delay,
                        };
                        self.notice(Notice::RegisterFailed {
                            status: Some(*status),
                            detail: format!("unreadable registration ack: {e}"),
                            retry_at_ms: now_ms + delay,
                        });
                        return;
                    }
                }
            }
        }
        if let Reply::Http {
            status: status @ (401 | 403),
            ..
        } = &reply
        {
            self.credentials_refused(*status);
        }
        let delay = self.link_backoff.fail();
        let (status, detail) = describe(&reply);
        self.phase = Phase::Unregistered {
            at_ms: now_ms + delay,
        };
        self.notice(Notice::RegisterFailed {
            status,
            detail,
            retry_at_ms: now_ms + delay,
        });
    }

    /// The edge refused our credentials for good: it may hand our calls to
    /// another sidecar, so none of them may go on here. Running calls are hung
    /// up, accepted ones not yet confirmed are cancelled before dialling; the
    /// ones already ended just wait for their events to be delivered.
    fn credentials_refused(&mut self, status: u16) {
        let mut hanging_up = Vec::new();
        let mut running = Vec::new();
        for (call_id, call) in self.calls.iter_mut() {
            match &mut call.state {
                CallState::Acking {
                    hangup_requested, ..
                } if !*hangup_requested => {
                    *hangup_requested = true;
                    hanging_up.push(call_id.clone());
                }
                CallState::Active { hangup_sent } if !*hangup_sent => {
                    *hangup_sent = true;
                    hanging_up.push(call_id.clone());
                    running.push(call_id.clone());
                }
                _ => {}
            }
        }
        if !hanging_up.is_empty() {
            self.notice(Notice::CredentialsRefused { status, hanging_up });
        }
        for call_id in running {
            self.actions.push_back(Action::Hangup { call_id });
        }
    }

    fn lease_failed(&mut self, now_ms: u64, status: Option<u16>, detail: String) {
        let delay = self.link_backoff.fail();
        self.next_lease_at_ms = now_ms + delay;
        self.notice(Notice::LeaseFailed {
            status,
            detail,
            retry_at_ms: now_ms + delay,
        });
    }

    fn on_lease(&mut self, now_ms: u64, sent_ms: u64, reply: Reply) {
        self.lease_in_flight = false;
        let (status, body) = match reply {
            Reply::Failed(e) | Reply::Unsendable(e) => return self.lease_failed(now_ms, None, e),
            Reply::Http { status, body } => (status, body),
        };
        match classify(status) {
            Class::Ok => {}
            Class::Reauth => {
                self.next_lease_at_ms = now_ms;
                return self.reregister(now_ms, paths::LEASE, status);
            }
            _ => return self.lease_failed(now_ms, Some(status), snippet(&body)),
        }
        let resp: LeaseResponse = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return self.lease_failed(
                    now_ms,
                    Some(status),
                    format!("unreadable lease response: {e}"),
                )
            }
        };
        if check_version(resp.protocol_version).is_err() {
            self.notice(Notice::ProtocolMismatch {
                path: paths::LEASE,
                got: resp.protocol_version,
            });
            return self.lease_failed(now_ms, Some(status), "protocol version mismatch".into());
        }
        self.link_backoff.reset();
        let empty = resp.offers.is_empty() && resp.commands.is_empty() && resp.messages.is_empty();
        self.next_lease_at_ms = if empty {
            sent_ms + self.s.min_empty_poll_interval_ms
        } else {
            now_ms
        };
        for cmd in resp.commands {
            self.on_command(cmd);
        }
        for offer in resp.offers {
            self.on_offer(now_ms, offer);
        }
        for m in resp.messages {
            self.on_message_offer(now_ms, m);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let call_id = match cmd {
            Command::Hangup { call_id } => call_id,
            Command::Transfer {
                call_id,
                transfer_id,
                target,
                mode,
                message,
            } => {
                let running = self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| matches!(c.state, CallState::Active { hangup_sent: false }));
                if !running {
                    return self.notice(Notice::TransferNotRunning { call_id });
                }
                let order = crate::call_task::bridge::TransferOrder {
                    transfer_id,
                    target,
                    mode,
                    message,
                };
                self.actions.push_back(Action::Transfer { call_id, order });
                return;
            }
            Command::Unknown => return self.notice(Notice::UnknownCommand),
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return self.notice(Notice::HangupForUnknownCall { call_id });
        };
        match &mut call.state {
            CallState::Acking {
                hangup_requested, ..
            } => *hangup_requested = true,
            CallState::Active { hangup_sent } => {
                if !*hangup_sent {
                    *hangup_sent = true;
                    self.actions.push_back(Action::Hangup { call_id });
                }
            }
            CallState::Ending { .. } => {}
        }
    }

    fn on_offer(&mut self, now_ms: u64, offer: Offer) {
        if self.acks.contains_key(&offer.lease_id) {
            return; // Re-delivered while our ack is pending: that ack answers it.
        }
        let window = self.ack_window_ms();
        let give_up_ms = if offer.ack_deadline_ms > now_ms {
            offer.ack_deadline_ms.min(now_ms + window)
        } else {
            // Already past on our clock: clocks disagree (or the offer was slow).
            // Try within the edge's announced window; a 409 will tell.
            self.notice(Notice::ClockSkew {
                call_id: offer.call_id.clone(),
                ack_deadline_ms: offer.ack_deadline_ms,
                now_ms,
            });
            now_ms + window
        };

        let reject = |reason: &'static str| (false, Some(reason));
        let (accepted, reason) = match self.calls.get(&offer.call_id) {
            Some(held) if held.lease_id == offer.lease_id => (true, None), // repeat of a confirmed lease
            Some(_) => reject(reject_reasons::ALREADY_HELD),
            None if self.draining => reject(reject_reasons::DRAINING),
            None if self.free_slots() == 0 => reject(reject_reasons::AT_CAPACITY),
            // A kind added by a newer edge: refused, so another sidecar may take it.
            None if offer.engine.known().is_none() => reject(reject_reasons::UNSUPPORTED_ENGINE),
            None => (true, None),
        };
        if accepted && !self.calls.contains_key(&offer.call_id) {
            self.calls.insert(
                offer.call_id.clone(),
                HeldCall {
                    lease_id: offer.lease_id.clone(),
                    attempt: offer.attempt,
                    last_seq: 0,
                    state: CallState::Acking {
                        offer: Box::new(offer.clone()),
                        hangup_requested: false,
                    },
                    reached: Reached::default(),
                },
            );
            self.notice(Notice::OfferAccepted {
                call_id: offer.call_id.clone(),
                lease_id: offer.lease_id.clone(),
            });
        } else if let Some(reason) = reason {
            self.notice(Notice::OfferRejected {
                call_id: offer.call_id.clone(),
                lease_id: offer.lease_id.clone(),
                reason,
            });
        }
        self.acks.insert(
            offer.lease_id.clone(),
            PendingAck {
                ack: Ack {
                    protocol_version: PROTOCOL_VERSION,
                    sidecar_id: self.s.sidecar_id.clone(),
                    lease_id: offer.lease_id,
                    call_id: offer.call_id,
                    accepted,
                    reason: reason.map(str::to_string),
                },
                next_try_ms: now_ms,
                give_up_ms,
                retry: Backoff::new(self.s.ack_retry_initial_ms, ACK_RETRY_MAX_MS),
                in_flight: None,
            },
        );
    }

    fn on_ack(&mut self, now_ms: u64, id: RequestId, reply: Reply) {
        let Some(lease_id) = self
            .acks
            .iter()
            .find(|(_, a)| a.in_flight == Some(id))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let class = match &reply {
            Reply::Http { status, .. } => classify(*status),
            Reply::Failed(_) | Reply::Unsendable(_) => Class::Retry,
        };
        match class {
            Class::Ok => {
                let pending = self.acks.remove(&lease_id).expect("found above");
                if pending.ack.accepted {
                    self.confirm_call(now_ms, &pending.ack.call_id, &lease_id);
                }
            }
            // 409: the lease is gone. 400/413/422: this ack can never succeed. Never dial.
            Class::Conflict | Class::Invalid => {
                let (status, detail) = describe(&reply);
                let why = format!("edge answered {}: {detail}", status.unwrap_or(409));
                self.ack_lost(&lease_id, why);
                self.acks.remove(&lease_id);
            }
            Class::Reauth | Class::Retry => {
                if let (Class::Reauth, Reply::Http { status, .. }) = (class, &reply) {
                    self.reregister(now_ms, paths::ACK, *status);
                }
                let (status, detail) = describe(&reply);
                let pending = self.acks.get_mut(&lease_id).expect("found above");
                pending.in_flight = None;
                let retry_at_ms = now_ms + pending.retry.fail();
                let call_id = pending.ack.call_id.clone();
                if retry_at_ms >= pending.give_up_ms {
                    self.ack_lost(
                        &lease_id,
                        format!("ack failed ({detail}) and its deadline passes before a retry"),
                    );
                    self.acks.remove(&lease_id);
                } else {
                    pending.next_try_ms = retry_at_ms;
                    self.notice(Notice::AckFailed {
                        call_id,
                        status,
                        detail,
                        retry_at_ms,
                    });
                }
            }
        }
    }

    fn confirm_call(&mut self, now_ms: u64, call_id: &str, lease_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.lease_id != lease_id {
            return;
        }
        let CallState::Acking { .. } = call.state else {
            return;
        }; // a repeat: already running
        let CallState::Acking {
            offer,
            hangup_requested,
        } = std::mem::replace(&mut call.state, CallState::Active { hangup_sent: false })
        else {
            unreachable!()
        };
        if hangup_requested {
            // Hung up before it started: never dial, tell the edge it is cancelled.
            let kind = EventKind::Ended {
                status: CallStatus::Cancelled,
                reason: EndedReason::HangupRequested,
                retry_after_s: None,
                sip_code: None,
                timings: Timings {
                    dispatched_ms: now_ms,
                    ringing_ms: None,
                    answered_ms: None,
                    ended_ms: now_ms,
                },
            };
            let _ = self.emit(now_ms, call_id, kind);
        } else {
            self.actions.push_back(Action::StartCall(offer));
        }
    }

    /// Ends a running call whose task died without saying how it ended
    /// (panicked or cancelled): `ended(failed, reason)` with the timings it
    /// reached, so the edge learns of it and the slot frees once acked.
    /// `AlreadyEnded` if the task got its `ended` out first.
    pub fn fail_call(
        &mut self,
        now_ms: u64,
        call_id: &str,
        reason: EndedReason,
    ) -> Result<u32, EmitError> {
        let r = self
            .calls
            .get(call_id)
            .ok_or(EmitError::UnknownCall)?
            .reached;
        let timings = Timings {
            dispatched_ms: r.first_ms.unwrap_or(now_ms),
            ringing_ms: r.ringing_ms,
            answered_ms: r.answered_ms,
            ended_ms: now_ms,
        };
        let kind = EventKind::Ended {
            status: CallStatus::Failed,
            reason,
            retry_after_s: None,
            sip_code: None,
            timings,
        };
        self.emit(now_ms, call_id, kind)
    }

    /// Queues an event of a running call; returns its `seq`. An `ended` event is
    /// the call's last: the slot frees once the edge acknowledges it.
    pub fn emit(
        &mut self,
        now_ms: u64,
        call_id: &str,
        mut kind: EventKind,
    ) -> Result<u32, EmitError> {
        let call = self.calls.get_mut(call_id).ok_or(EmitError::UnknownCall)?;
        match call.state {
            CallState::Acking { .. } => return Err(EmitError::NotStarted),
            CallState::Ending { .. } => return Err(EmitError::AlreadyEnded),
            CallState::Active { .. } => {}
        }
        call.last_seq += 1;
        let seq = call.last_seq;
        bound_event(&mut kind);
        let r = &mut call.reached;
        r.first_ms.get_or_insert(now_ms);
        match kind {
            EventKind::Ringing => r.ringing_ms = r.ringing_ms.or(Some(now_ms)),
            EventKind::Answered => r.answered_ms = r.answered_ms.or(Some(now_ms)),
            _ => {}
        }
        if kind.is_ended() {
            call.state = CallState::Ending { ended_seq: seq };
        }
        let attempt = call.attempt;
        self.events.push_back(CallEvent {
            call_id: call_id.to_string(),
            attempt,
            seq,
            at_ms: now_ms,
            kind,
        });
        // On disk before any batch can carry it.
        self.persist(call_id, attempt);
        Ok(seq)
    }

    fn on_transcript(&mut self, now_ms: u64, reply: Reply) {
        self.transcript_in_flight = false;
        let Some(front) = self.transcripts.front() else {
            return;
        };
        let call_id = front.transcript.call_id.clone();
        let (status, detail) = describe(&reply);
        let class = spooled_class(&reply);
        match class {
            Class::Ok => {
                self.transcripts_backoff.reset();
                if let Some(done) = self.transcripts.pop_front() {
                    self.actions.push_back(Action::TranscriptDone(done));
                }
            }
            Class::Invalid | Class::Conflict => {
                self.transcripts_backoff.reset();
                self.transcripts.pop_front();
                self.notice(Notice::TranscriptRefused {
                    call_id,
                    status,
                    detail,
                });
            }
            Class::Reauth => {
                if let Some(code) = status {
                    self.reregister(now_ms, paths::TRANSCRIPTS, code);
                }
                self.transcripts_retry_at_ms = now_ms;
            }
            Class::Retry => {
                let delay = self.transcripts_backoff.fail();
                self.transcripts_retry_at_ms = now_ms + delay;
                self.notice(Notice::TranscriptFailed {
                    call_id,
                    status,
                    detail,
                    retry_at_ms: now_ms + delay,
                });
            }
        }
    }

    fn on_upload(&mut self, now_ms: u64, reply: Reply) {
        self.upload_in_flight = false;
        let Some(front) = self.uploads.front() else {
            return;
        };
        let call_id = front.manifest.call_id.clone();
        let (status, detail) = describe(&reply);
        let class = spooled_class(&reply);
        match class {
            Class::Ok => {
                self.uploads_backoff.reset();
                if let Some(done) = self.uploads.pop_front() {
                    self.actions.push_back(Action::UploadDone(done));
                }
            }
            Class::Invalid | Class::Conflict => {
                self.uploads_backoff.reset();
                if let Some(given_up) = self.uploads.pop_front() {
                    self.notice(Notice::UploadRefused {
                        call_id,
                        status,
                        detail,
                        path: given_up.path,
                    });
                }
            }
            Class::Reauth => {
                if let Some(code) = status {
                    self.reregister(now_ms, paths::RECORDING, code);
                }
                self.uploads_retry_at_ms = now_ms;
            }
            Class::Retry => {
                let delay = self.uploads_backoff.fail();
                self.uploads_retry_at_ms = now_ms + delay;
                self.notice(Notice::UploadFailed {
                    call_id,
                    status,
                    detail,
                    retry_at_ms: now_ms + delay,
                });
            }
        }
    }

    fn on_events(&mut self, now_ms: u64, count: usize, reply: Reply) {
        self.events_in_flight = false;
        let class = match &reply {
            Reply::Http { status, .. } => classify(*status),
            Reply::Failed(_) | Reply::Unsendable(_) => Class::Retry,
        };
        match class {
            Class::Ok | Class::Invalid => {
                let delivered: Vec<CallEvent> =
                    self.events.drain(..count.min(self.events.len())).collect();
                self.events_backoff.reset();
                self.events_retry_at_ms = now_ms;
                if let Reply::Http { status, body } = &reply {
                    if class == Class::Invalid {
                        self.notice(Notice::EventsDropped {
                            count: delivered.len(),
                            status: *status,
                            detail: snippet(body),
                        });
                    } else if let Ok(ack) = serde_json::from_slice::<EventsAck>(body) {
                        if (ack.accepted as usize) < delivered.len() {
                            self.notice(Notice::EventsDuplicates {
                                sent: delivered.len(),
                                accepted: ack.accepted,
                            });
                        }
                    }
                }
                // Acknowledged or never deliverable: either way not needed after a restart.
                let touched: std::collections::BTreeSet<(&str, u32)> = delivered
                    .iter()
                    .map(|e| (e.call_id.as_str(), e.attempt))
                    .collect();
                for (call_id, attempt) in touched {
                    self.persist(call_id, attempt);
                }
                // Whether acknowledged or dropped as invalid, an ended call is done here.
                for ev in delivered.iter().filter(|e| e.kind.is_ended()) {
                    let done = self.calls.get(&ev.call_id).is_some_and(|c| {
                        c.state == CallState::Ending { ended_seq: ev.seq }
                            && c.attempt == ev.attempt
                    });
                    if done {
                        self.calls.remove(&ev.call_id);
                        self.notice(Notice::CallReleased {
                            call_id: ev.call_id.clone(),
                        });
                    }
                }
            }
            Class::Reauth => {
                if let Reply::Http { status, .. } = &reply {
                    self.reregister(now_ms, paths::EVENTS, *status);
                }
                self.events_retry_at_ms = now_ms;
            }
            Class::Conflict | Class::Retry => {
                let delay = self.events_backoff.fail();
                let (status, detail) = describe(&reply);
                self.events_retry_at_ms = now_ms + delay;
                self.notice(Notice::EventsFailed {
                    status,
                    detail,
                    retry_at_ms: now_ms + delay,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
