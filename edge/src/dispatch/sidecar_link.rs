//! The edge's half of the sidecar dispatch protocol (`voxline_shared::sidecar_link`),
//! run inside the region's `DispatchQueue` object after the Worker verified the
//! request's signature. Pure: fed an envelope and the clock, it mutates the
//! [`Queue`] and returns the reply, the call updates to report to the call stores,
//! and, for an empty lease poll, how long to hold the poll open.

use crate::dispatch::message_line::ResultVerdict;
use crate::dispatch::queue::{
    self, AckVerdict, CallUpdate, Command, DispatchTimings, EventVerdict, HeldEvent, Lease, Queue,
};
use crate::dispatch::queued_call::OfferBody;
use crate::engine_keys::SealingKey;
use crate::error::{ApiError, ErrorCode};
use crate::messages::{MessageUpdate, MAX_MATCH_ID_CHARS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{
    check_version, Ack, AckReceipt, CallTranscript, Deregistration, EventBatch, EventKind,
    InboundCall, InboundContent, InboundMessage, LeaseRequest, LeaseResponse, MessageOffer,
    MessageResult, MessageResultAck, PhoneRegistration, Registration, RegistrationAck, ToolCall,
    MAX_MESSAGES_PER_LEASE, MAX_MESSAGE_CHARS, MAX_PHONE_CONTACTS, MAX_TOOL_ARGUMENTS_BYTES,
    MAX_TRANSCRIPT_CHARS, MAX_TRANSCRIPT_TURNS, MAX_TRANSCRIPT_TURN_CHARS, PROTOCOL_VERSION,
};

/// How long an accepted call may be missing from the sidecar's `held_calls`
/// before it counts as lost (a poll may have been sent just before the ack).
pub const HELD_GRACE_MS: u64 = 5_000;
/// Longest Contact URI of a phone's binding, in characters.
pub const MAX_CONTACT_URI_CHARS: usize = 512;
pub const NONCE_WINDOW_MS: u64 = voxline_shared::signing::DEFAULT_WINDOW_SECONDS * 1000;

/// Outside development the link is taken over HTTPS only: it carries signed
/// requests, offers with engine keys, and recordings. Checked before anything
/// else is read, so a sidecar pointed at `http://` learns at once and no offer
/// ever leaves in clear.
///
/// `scheme` is the scheme of the request URL as the Worker sees it. Cloudflare
/// sets it from the client's own connection to its edge (`http` on port 80,
/// `https` once TLS ended there), so a client cannot claim it; headers such as
/// `X-Forwarded-Proto` or `CF-Visitor` are not read, because to a Worker they
/// are whatever the client, or a proxy in front, wrote. `wrangler dev` serves
/// `http://`, hence development is exempt (`VOXLINE_ENV=development`).
pub fn check_transport(scheme: &str, dev_mode: bool) -> Result<(), ApiError> {
    if dev_mode || scheme.eq_ignore_ascii_case("https") {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::HttpsRequired,
        "the sidecar link is served over https only outside development: set the sidecar's edge_url to https:// (or https+h3://)",
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SidecarOp {
    Register,
    Lease,
    Ack,
    Events,
    Deregister,
    /// A recording upload, after the Worker admitted it: only its nonce is
    /// spent here (the same replay store as every other link request). Never
    /// routed from a path: uploads have their own (`recordings`).
    Recording,
    /// The trunk's final answer to a text message this sidecar was handed.
    MessageResults,
    /// A text message (or a delivery report) the trunk sent us.
    InboundMessages,
    /// A call a trunk placed to one of our numbers, ringing now (issue 16).
    InboundCalls,
    /// A customer tool the engine of a held call called (issue 18).
    ToolCalls,
    /// A user's SIP phone REGISTERed with the sidecar (issue 16).
    Registrations,
    /// The transcript of a call that had no engine, made from its recording
    /// after the call (issue 16).
    Transcripts,
}

impl SidecarOp {
    pub fn from_path(path: &str) -> Option<SidecarOp> {
        use voxline_shared::sidecar_link::paths;
        match path {
            paths::REGISTER => Some(SidecarOp::Register),
            paths::LEASE => Some(SidecarOp::Lease),
            paths::ACK => Some(SidecarOp::Ack),
            paths::EVENTS => Some(SidecarOp::Events),
            paths::DEREGISTER => Some(SidecarOp::Deregister),
            paths::MESSAGE_RESULTS => Some(SidecarOp::MessageResults),
            paths::INBOUND_MESSAGES => Some(SidecarOp::InboundMessages),
            paths::INBOUND_CALLS => Some(SidecarOp::InboundCalls),
            paths::TOOL_CALLS => Some(SidecarOp::ToolCalls),
            paths::REGISTRATIONS => Some(SidecarOp::Registrations),
            paths::TRANSCRIPTS => Some(SidecarOp::Transcripts),
            _ => None,
        }
    }
}

/// A sidecar link request, parsed and checked by the Worker (see
/// [`parse_message`]). JSON: `{"op": ..., "body": <the protocol message>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "body", rename_all = "snake_case")]
pub enum SidecarMessage {
    Register(Registration),
    Lease(LeaseRequest),
    Ack(Ack),
    Events(EventBatch),
    Deregister(Deregistration),
    /// A recording upload the Worker admitted: only its nonce is spent here.
    Recording,
    MessageResult(MessageResult),
    /// Only its nonce is spent here; the Worker then stores it in the
    /// tenant's call store (the number's tenant, from KV).
    InboundMessage(InboundMessage),
    /// Only its nonce is spent here; the Worker then finds the number's
    /// route (KV) and has the tenant's call store create the call, which
    /// this queue then holds for the sidecar (`QueuedCall::held_by`).
    InboundCall(InboundCall),
    /// Checked here (this sidecar holds that attempt of the call) and
    /// answered with the call's tenant and agent; the Worker then calls the
    /// tool (`api::tool_calls`).
    ToolCall(ToolCall),
    /// Only its nonce is spent here; the Worker then has the tenant's
    /// directory check the phone's answer and record its bindings.
    PhoneRegistration(Box<PhoneRegistration>),
    /// Checked (bounds) and its nonce spent here; the Worker then has the
    /// call's tenant's call store keep it (`api::post_call_transcripts`).
    Transcript(Box<CallTranscript>),
}

impl SidecarMessage {
    /// The region the message names, when it names one.
    pub fn region(&self) -> Option<&str> {
        match self {
            SidecarMessage::Register(m) => Some(&m.region),
            SidecarMessage::Lease(m) => Some(&m.region),
            SidecarMessage::Deregister(m) => Some(&m.region),
            SidecarMessage::InboundMessage(m) => Some(&m.region),
            SidecarMessage::InboundCall(m) => Some(&m.region),
            SidecarMessage::PhoneRegistration(m) => Some(&m.region),
            SidecarMessage::Ack(_)
            | SidecarMessage::Events(_)
            | SidecarMessage::Recording
            | SidecarMessage::ToolCall(_)
            | SidecarMessage::Transcript(_)
            | SidecarMessage::MessageResult(_) => None,
        }
    }
}

/// What the Worker forwards to the region's object once the signature checks out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarEnvelope {
    pub sidecar_id: String,
    pub nonce: String,
    /// The protocol message, already parsed and version-checked by the Worker.
    pub message: SidecarMessage,
}

/// What a lease poll is answered with, before each offer gets its body
/// (which the Durable Object keeps apart from the queue) and its key opened.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseAnswer {
    pub leases: Vec<Lease>,
    pub commands: Vec<Command>,
    /// Text messages handed out with this answer (already `sending`).
    pub messages: Vec<MessageOffer>,
}

impl LeaseAnswer {
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.commands.is_empty() && self.messages.is_empty()
    }

    /// The protocol answer. A call's body is its own when it still has it,
    /// else `stored_body(call_id)`; a call with neither is left out (its
    /// lease lapses and it is offered again) rather than sent incomplete,
    /// and its id returned for the log.
    pub fn into_response(
        self,
        mut stored_body: impl FnMut(&str) -> Option<OfferBody>,
        key: Option<&SealingKey>,
    ) -> (LeaseResponse, Vec<String>) {
        let mut missing = Vec::new();
        let mut offers = Vec::with_capacity(self.leases.len());
        for lease in self.leases {
            match lease
                .call
                .offer
                .clone()
                .or_else(|| stored_body(&lease.call.call_id))
            {
                Some(body) => offers.push(queue::offer(&lease, body, key)),
                None => missing.push(lease.call.call_id),
            }
        }
        let response = LeaseResponse {
            protocol_version: PROTOCOL_VERSION,
            offers,
            commands: self.commands,
            messages: self.messages,
        };
        (response, missing)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// The answer's body; `Null` for a lease answer until [`Reply::finish`].
    pub body: Value,
    /// A lease answer, until [`Reply::finish`] makes it the body.
    pub lease: Option<LeaseAnswer>,
    pub updates: Vec<CallUpdate>,
    /// Transcript turns to append (held calls only, duplicates dropped).
    pub turns: Vec<crate::transcript::TranscriptUpdate>,
    /// Text message changes to report to the tenants' call stores.
    pub messages: Vec<MessageUpdate>,
    /// An empty lease poll: hold it open until this time or until work arrives.
    pub hold_open_until: Option<u64>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            lease: None,
            updates: Vec::new(),
            turns: Vec::new(),
            messages: Vec::new(),
            hold_open_until: None,
        }
    }
    fn error(e: ApiError) -> Reply {
        Reply {
            status: e.status(),
            body: e.to_json(),
            lease: None,
            updates: Vec::new(),
            turns: Vec::new(),
            messages: Vec::new(),
            hold_open_until: None,
        }
    }
}

impl Reply {
    /// Makes a lease answer the body (see [`LeaseAnswer::into_response`]);
    /// returns the calls left out for want of a body.
    pub fn finish(
        &mut self,
        stored_body: impl FnMut(&str) -> Option<OfferBody>,
        key: Option<&SealingKey>,
    ) -> Vec<String> {
        let Some(answer) = self.lease.take() else {
            return Vec::new();
        };
        let (response, missing) = answer.into_response(stored_body, key);
        self.body = serde_json::to_value(response).unwrap_or(Value::Null);
        missing
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    serde_json::from_value(body.clone()).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidType,
            format!("not a valid protocol message: {e}"),
        )
    })
}

/// Checks a raw protocol body in the Worker before it is forwarded: JSON,
/// the right message type, a version we speak, and the signer's own id.
pub fn parse_message(op: SidecarOp, raw: &[u8], signer: &str) -> Result<SidecarMessage, ApiError> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let message = match op {
        SidecarOp::Register => SidecarMessage::Register(parse(&value)?),
        SidecarOp::Lease => SidecarMessage::Lease(parse(&value)?),
        SidecarOp::Ack => SidecarMessage::Ack(parse(&value)?),
        SidecarOp::Events => SidecarMessage::Events(parse(&value)?),
        SidecarOp::Deregister => SidecarMessage::Deregister(parse(&value)?),
        SidecarOp::MessageResults => SidecarMessage::MessageResult(parse(&value)?),
        SidecarOp::InboundMessages => SidecarMessage::InboundMessage(parse(&value)?),
        SidecarOp::InboundCalls => SidecarMessage::InboundCall(parse(&value)?),
        SidecarOp::ToolCalls => SidecarMessage::ToolCall(parse(&value)?),
        SidecarOp::Registrations => SidecarMessage::PhoneRegistration(parse(&value)?),
        SidecarOp::Transcripts => SidecarMessage::Transcript(parse(&value)?),
        SidecarOp::Recording => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "recordings are uploaded with their manifest (recordings::admit_upload)",
            ))
        }
    };
    let (version, sidecar_id) = match &message {
        SidecarMessage::Register(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::Lease(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::Ack(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::Events(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::Deregister(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::MessageResult(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::InboundMessage(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::InboundCall(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::ToolCall(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::PhoneRegistration(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::Transcript(m) => (m.protocol_version, &m.sidecar_id),
        SidecarMessage::Recording => (PROTOCOL_VERSION, &String::new()),
    };
    check_version(version)
        .map_err(|e| ApiError::new(ErrorCode::UnsupportedProtocolVersion, e.to_string()))?;
    if sidecar_id != signer {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            "the body's sidecar_id is not the signer's",
        ));
    }
    check_message_fields(&message)?;
    Ok(message)
}

/// The text-message fields that become storage keys or records: bounded,
/// so a sidecar cannot make keys or rows of any size. 422: never retried.
fn check_message_fields(message: &SidecarMessage) -> Result<(), ApiError> {
    let too_long = |field: &str, s: &str, max: usize| {
        (s.chars().count() > max).then(|| {
            ApiError::field(
                ErrorCode::ValueTooLong,
                field,
                format!("{field} is longer than {max} characters"),
            )
        })
    };
    let problem = match message {
        SidecarMessage::MessageResult(r) => {
            let id = (!crate::ids::is_id(&r.message_id, "msg")).then(|| {
                ApiError::field(ErrorCode::InvalidValue, "message_id", "not a message id")
            });
            id.or_else(|| {
                too_long(
                    "imdn_message_id",
                    r.imdn_message_id.as_deref().unwrap_or(""),
                    MAX_MATCH_ID_CHARS,
                )
            })
        }
        SidecarMessage::InboundMessage(m) => {
            let body = match &m.content {
                InboundContent::Text { body } => too_long("content.body", body, MAX_MESSAGE_CHARS),
                InboundContent::DeliveryReport {
                    imdn_message_id,
                    status,
                } => too_long(
                    "content.imdn_message_id",
                    imdn_message_id,
                    MAX_MATCH_ID_CHARS,
                )
                .or_else(|| too_long("content.status", status, MAX_MATCH_ID_CHARS)),
                InboundContent::Unknown => None,
            };
            too_long("from", &m.from, MAX_MATCH_ID_CHARS)
                .or_else(|| too_long("sip_call_id", &m.sip_call_id, MAX_MATCH_ID_CHARS))
                .or(body)
                .or_else(|| {
                    (!crate::messages::is_e164(&m.to)).then(|| {
                        ApiError::field(ErrorCode::InvalidPhoneNumber, "to", "to must be E.164")
                    })
                })
        }
        SidecarMessage::InboundCall(c) => too_long("caller", &c.caller, MAX_MATCH_ID_CHARS)
            .or_else(|| too_long("sip_call_id", &c.sip_call_id, MAX_MATCH_ID_CHARS))
            .or_else(|| {
                (!crate::messages::is_e164(&c.called)).then(|| {
                    ApiError::field(
                        ErrorCode::InvalidPhoneNumber,
                        "called",
                        "called must be E.164",
                    )
                })
            }),
        SidecarMessage::PhoneRegistration(r) => {
            let d = &r.digest;
            let digest = [
                ("digest.username", &d.username),
                ("digest.realm", &d.realm),
                ("digest.nonce", &d.nonce),
                ("digest.uri", &d.uri),
                ("digest.method", &d.method),
                ("digest.response", &d.response),
                ("digest.algorithm", &d.algorithm),
                ("sip_call_id", &r.sip_call_id),
                ("source", &r.source),
                ("transport", &r.transport),
            ];
            let optional = [
                ("digest.qop", &d.qop),
                ("digest.nc", &d.nc),
                ("digest.cnonce", &d.cnonce),
            ];
            digest
                .iter()
                .find_map(|(f, v)| too_long(f, v, MAX_MATCH_ID_CHARS))
                .or_else(|| {
                    optional.iter().find_map(|(f, v)| {
                        too_long(f, v.as_deref().unwrap_or(""), MAX_MATCH_ID_CHARS)
                    })
                })
                .or_else(|| {
                    (r.contacts.len() > MAX_PHONE_CONTACTS).then(|| {
                        ApiError::field(
                            ErrorCode::ValueTooLong,
                            "contacts",
                            format!("at most {MAX_PHONE_CONTACTS} contacts"),
                        )
                    })
                })
                .or_else(|| {
                    r.contacts
                        .iter()
                        .find_map(|c| too_long("contacts.uri", &c.uri, MAX_CONTACT_URI_CHARS))
                })
        }
        SidecarMessage::ToolCall(t) => {
            too_long("tool_call_id", &t.tool_call_id, MAX_MATCH_ID_CHARS)
                .or_else(|| too_long("call_id", &t.call_id, MAX_MATCH_ID_CHARS))
                .or_else(|| {
                    let name_ok = (1..=64).contains(&t.name.len())
                        && t.name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    (!name_ok).then(|| {
                        ApiError::field(ErrorCode::InvalidValue, "name", "not a tool name")
                    })
                })
                .or_else(|| {
                    (t.arguments.len() > MAX_TOOL_ARGUMENTS_BYTES).then(|| {
                        ApiError::field(
                            ErrorCode::ValueTooLong,
                            "arguments",
                            format!("arguments are longer than {MAX_TOOL_ARGUMENTS_BYTES} bytes"),
                        )
                    })
                })
        }
        SidecarMessage::Transcript(t) => check_transcript(t),
        _ => None,
    };
    problem.map_or(Ok(()), Err)
}

/// A post-call transcript's bounds (422: never retried): its ids, at most
/// [`MAX_TRANSCRIPT_TURNS`] turns of at most [`MAX_TRANSCRIPT_TURN_CHARS`]
/// characters, [`MAX_TRANSCRIPT_CHARS`] in all, roles `agent` / `callee`.
fn check_transcript(t: &CallTranscript) -> Option<ApiError> {
    let too_long = |field: &str, max: usize, what: &str| {
        Some(ApiError::field(
            ErrorCode::ValueTooLong,
            field,
            format!("at most {max} {what}"),
        ))
    };
    if t.attempt == 0
        || !crate::ids::is_id(&t.call_id, "call")
        || !crate::ids::is_id(&t.tenant_id, "ten")
    {
        return Some(ApiError::field(
            ErrorCode::InvalidValue,
            "call_id",
            "tenant_id, call_id or attempt is malformed",
        ));
    }
    if t.source.is_empty() || t.source.len() > 32 {
        return Some(ApiError::field(
            ErrorCode::InvalidValue,
            "source",
            "source is 1 to 32 characters",
        ));
    }
    if t.turns.len() > MAX_TRANSCRIPT_TURNS {
        return too_long("turns", MAX_TRANSCRIPT_TURNS, "turns");
    }
    let mut total = 0;
    for turn in &t.turns {
        let n = turn.text.chars().count();
        if n > MAX_TRANSCRIPT_TURN_CHARS {
            return too_long("turns.text", MAX_TRANSCRIPT_TURN_CHARS, "characters a turn");
        }
        if turn.role == voxline_shared::sidecar_link::Role::Tool || turn.end_ms < turn.start_ms {
            return Some(ApiError::field(
                ErrorCode::InvalidValue,
                "turns",
                "a turn is an agent's or the callee's, and ends after it starts",
            ));
        }
        total += n;
    }
    if total > MAX_TRANSCRIPT_CHARS {
        return too_long("turns.text", MAX_TRANSCRIPT_CHARS, "characters in all");
    }
    None
}

fn not_registered() -> ApiError {
    ApiError::new(
        ErrorCode::SidecarNotRegistered,
        "this sidecar is not registered (or was presumed dead): register again",
    )
}

pub fn handle(q: &mut Queue, env: &SidecarEnvelope, now: u64, t: &DispatchTimings) -> Reply {
    if !q.remember_nonce(&env.nonce, now, NONCE_WINDOW_MS) {
        return Reply::error(ApiError::new(
            ErrorCode::ReplayedRequest,
            "this request's nonce was already used",
        ));
    }
    match handle_op(q, env, now, t) {
        Ok(reply) => reply,
        Err(e) => Reply::error(e),
    }
}

fn handle_op(
    q: &mut Queue,
    env: &SidecarEnvelope,
    now: u64,
    t: &DispatchTimings,
) -> Result<Reply, ApiError> {
    let sid = env.sidecar_id.as_str();
    match &env.message {
        SidecarMessage::Recording
        | SidecarMessage::InboundMessage(_)
        | SidecarMessage::InboundCall(_)
        | SidecarMessage::PhoneRegistration(_)
        | SidecarMessage::Transcript(_) => {
            Ok(Reply::ok(json!({"protocol_version": PROTOCOL_VERSION})))
        }
        SidecarMessage::ToolCall(t) => {
            // Only the sidecar holding this attempt may spend the tenant's tools.
            let held = q
                .held
                .get(&t.call_id)
                .filter(|h| h.sidecar_id == sid && h.call.attempt == t.attempt)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::CallNotHeld,
                        format!(
                            "call {} (attempt {}) is not held by this sidecar",
                            t.call_id, t.attempt
                        ),
                    )
                })?;
            Ok(Reply::ok(json!({
                "protocol_version": PROTOCOL_VERSION,
                "tenant_id": held.call.tenant_id,
                "agent_id": held.call.agent_id,
            })))
        }
        SidecarMessage::MessageResult(result) => {
            let ack = MessageResultAck {
                protocol_version: PROTOCOL_VERSION,
                message_id: result.message_id.clone(),
            };
            let mut reply = Reply::ok(serde_json::to_value(ack).unwrap_or(Value::Null));
            // A second result, a late one, another sidecar's: acknowledged
            // (resending could never succeed) and dropped: the first wins.
            if let ResultVerdict::Recorded(update) = q.messages.result(sid, result, now) {
                reply.messages.push(update);
            }
            Ok(reply)
        }
        SidecarMessage::Register(reg) => {
            q.register(sid, reg.capacity, now);
            let ack = RegistrationAck {
                protocol_version: PROTOCOL_VERSION,
                lease_wait_ms: t.max_wait_ms as u32,
                ack_deadline_ms: t.ack_deadline_ms,
                dead_after_ms: t.dead_after_ms,
            };
            Ok(Reply::ok(serde_json::to_value(ack).unwrap_or(Value::Null)))
        }
        SidecarMessage::Deregister(_) => {
            let mut reply = Reply::ok(json!({"protocol_version": PROTOCOL_VERSION}));
            reply.updates = q.deregister(sid, now);
            Ok(reply)
        }
        SidecarMessage::Lease(req) => {
            if !q.sidecars.contains_key(sid) {
                return Err(not_registered());
            }
            q.poll_arrived(sid, req.free_slots, now);
            let updates = q.reconcile(sid, &req.held_calls, now, HELD_GRACE_MS);
            let mut reply = lease_reply(q, sid, req.free_slots, now, t);
            reply.updates = updates;
            let empty = reply.lease.as_ref().is_some_and(LeaseAnswer::is_empty);
            if empty && req.wait_ms > 0 {
                reply.hold_open_until = Some(now + u64::from(req.wait_ms).min(t.max_wait_ms));
            }
            Ok(reply)
        }
        SidecarMessage::Ack(ack) => {
            let (outcome, update) = q.ack(sid, &ack.lease_id, ack.accepted, now);
            if outcome == AckVerdict::Stale {
                return Err(ApiError::new(
                    ErrorCode::LeaseNotHeld,
                    format!(
                        "lease {} is not this sidecar's (expired and re-leased?): do not dial {}",
                        ack.lease_id, ack.call_id
                    ),
                ));
            }
            let receipt = AckReceipt {
                protocol_version: PROTOCOL_VERSION,
                lease_id: ack.lease_id.clone(),
            };
            let mut reply = Reply::ok(serde_json::to_value(receipt).unwrap_or(Value::Null));
            reply.updates.extend(update);
            Ok(reply)
        }
        SidecarMessage::Events(batch) => {
            if !q.sidecars.contains_key(sid) {
                return Err(not_registered());
            }
            let mut updates = Vec::new();
            let mut turns = Vec::new();
            for ev in &batch.events {
                let held_event = match &ev.kind {
                    EventKind::Ringing => HeldEvent::Ringing,
                    EventKind::Answered => HeldEvent::Answered,
                    EventKind::Ended {
                        status,
                        reason,
                        sip_code,
                        retry_after_s,
                        ..
                    } => HeldEvent::Ended {
                        status: *status,
                        reason: *reason,
                        sip_code: *sip_code,
                        retry_after_s: *retry_after_s,
                    },
                    EventKind::Dialing
                    | EventKind::TranscriptTurn { .. }
                    | EventKind::Summary { .. }
                    | EventKind::Analysis { .. }
                    | EventKind::AnsweredBy { .. }
                    | EventKind::ToolCall { .. }
                    | EventKind::Transferred { .. }
                    | EventKind::TransferFailed { .. }
                    | EventKind::Leg { .. }
                    | EventKind::Queue { .. }
                    | EventKind::Unknown => HeldEvent::Other,
                };
                let tenant_id = q.held.get(&ev.call_id).map(|h| h.call.tenant_id.clone());
                // Duplicates and events of calls no longer held are acknowledged
                // too: resending them could never succeed.
                let (outcome, update) = q.event_at(
                    sid,
                    &ev.call_id,
                    ev.attempt,
                    ev.seq,
                    held_event,
                    ev.at_ms,
                    now,
                );
                updates.extend(update);
                let (EventVerdict::Applied, Some(tenant_id)) = (outcome, tenant_id) else {
                    continue;
                };
                use crate::transcript::{Change, TranscriptUpdate, Turn};
                let change = match &ev.kind {
                    EventKind::TranscriptTurn {
                        role,
                        text,
                        start_ms,
                        end_ms,
                    } => Change::Turn(Turn {
                        role: *role,
                        text: crate::transcript::bound_turn_text(text),
                        start_ms: *start_ms,
                        end_ms: *end_ms,
                    }),
                    EventKind::Summary { summary, outcome } => Change::Summary {
                        summary: summary.clone(),
                        outcome: outcome.clone(),
                    },
                    EventKind::Analysis { analysis } => Change::Analysis(Box::new(
                        crate::transcript::bound_analysis(analysis.clone()),
                    )),
                    EventKind::Transferred {
                        destination,
                        method,
                        at_offset_ms,
                        extension,
                        mode,
                        transfer_id,
                    } => Change::Transferred {
                        // Bounded: a sidecar's text, kept in the outbox.
                        destination: destination.chars().take(64).collect(),
                        method: method.chars().take(16).collect(),
                        at_offset_ms: *at_offset_ms,
                        extension: extension.as_ref().map(|e| e.chars().take(16).collect()),
                        mode: *mode,
                        transfer_id: transfer_id.as_ref().map(|t| t.chars().take(64).collect()),
                    },
                    // Only the API's transfers are on the record.
                    EventKind::TransferFailed {
                        error,
                        sip_code,
                        transfer_id: Some(transfer_id),
                        ..
                    } => Change::TransferFailed {
                        error: error.chars().take(32).collect(),
                        sip_code: *sip_code,
                        transfer_id: transfer_id.chars().take(64).collect(),
                    },
                    EventKind::Leg {
                        step,
                        user_pk,
                        destination,
                        sip_code,
                        talk_ms,
                    } => Change::Leg {
                        step: *step,
                        user_pk: *user_pk,
                        // Bounded: a sidecar's text, kept in the outbox.
                        destination: destination.as_ref().map(|d| d.chars().take(64).collect()),
                        sip_code: *sip_code,
                        talk_ms: *talk_ms,
                    },
                    EventKind::Queue {
                        step,
                        queue_pk,
                        position,
                        wait_ms,
                    } => Change::Queue {
                        step: *step,
                        queue_pk: *queue_pk,
                        position: *position,
                        wait_ms: *wait_ms,
                    },
                    EventKind::AnsweredBy {
                        answered_by,
                        decision_ms,
                    } => Change::AnsweredBy {
                        answered_by: *answered_by,
                        decision_ms: *decision_ms,
                    },
                    EventKind::ToolCall {
                        name,
                        arguments,
                        output,
                        error_code,
                        start_ms,
                        end_ms,
                        ..
                    } => Change::Turn(Turn {
                        role: crate::transcript::Role::Tool,
                        text: crate::transcript::tool_turn_text(
                            name,
                            arguments,
                            output.as_deref(),
                            error_code.as_deref(),
                        ),
                        start_ms: *start_ms,
                        end_ms: *end_ms,
                    }),
                    _ => continue,
                };
                turns.push(TranscriptUpdate {
                    tenant_id,
                    call_id: ev.call_id.clone(),
                    change,
                });
            }
            let mut reply = Reply::ok(
                json!({"protocol_version": PROTOCOL_VERSION, "accepted": batch.events.len()}),
            );
            reply.updates = updates;
            reply.turns = turns;
            Ok(reply)
        }
    }
}

/// Leases what the sidecar can take now; used for the first answer to a poll
/// and again when a held-open poll wakes up. The offers' bodies and keys are
/// added by [`Reply::finish`].
pub fn lease_reply(
    q: &mut Queue,
    sidecar_id: &str,
    free_slots: u32,
    now: u64,
    t: &DispatchTimings,
) -> Reply {
    let (leases, commands) = q.lease(sidecar_id, free_slots, now, t);
    // The start of the next turnaround (a held-open poll's answer moves it on).
    q.poll_answered(sidecar_id, now);
    // Texts need no call slot; a departed sidecar's open poll gets none.
    let (messages, sending) = if q.departed.contains_key(sidecar_id) {
        (Vec::new(), Vec::new())
    } else {
        q.messages.hand_out(sidecar_id, now, MAX_MESSAGES_PER_LEASE)
    };
    let mut reply = Reply::ok(Value::Null);
    reply.lease = Some(LeaseAnswer {
        leases,
        commands,
        messages,
    });
    reply.messages = sending;
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::queue::CallChange;
    use crate::dispatch::queued_call::QueuedCall;

    #[test]
    fn the_link_is_https_only_outside_development() {
        assert_eq!(check_transport("https", false), Ok(()));
        assert_eq!(check_transport("HTTPS", false), Ok(()));
        for scheme in ["http", "", "ws"] {
            let e = check_transport(scheme, false).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::HttpsRequired, 403));
            assert!(e.message.contains("https://"), "{}", e.message);
            assert_eq!(check_transport(scheme, true), Ok(()), "development");
        }
    }
    use voxline_shared::sidecar_link::Offer;
    use voxline_shared::{CallStatus, EndedReason};

    const T: DispatchTimings = DispatchTimings {
        ack_deadline_ms: 1_000,
        dead_after_ms: 5_000,
        max_wait_ms: 2_000,
        lost_margin_ms: 1_000,
    };

    /// A request of sidecar `sc-1`, as the Worker forwards it (parsed and checked).
    fn env(op: SidecarOp, nonce: &str, body: Value) -> SidecarEnvelope {
        SidecarEnvelope {
            sidecar_id: "sc-1".into(),
            nonce: nonce.into(),
            message: parse_message(op, body.to_string().as_bytes(), "sc-1").unwrap(),
        }
    }

    fn queued() -> QueuedCall {
        QueuedCall {
            call_id: "call_1".into(),
            tenant_id: "ten_1".into(),
            ready_at_ms: 0,
            attempt: 1,
            retries: 0,
            retry_delay_ms: 60_000,
            offer: Some(OfferBody::example("+14155550100")),
            scheduled: false,
            agent_id: "agt_1".into(),
            phone: "+14155550100".into(),
            ..QueuedCall::default()
        }
    }

    #[test]
    fn register_lease_ack_events_round_trip_in_protocol_types() {
        let mut q = Queue::default();
        let reg = json!({"protocol_version": 1, "sidecar_id": "sc-1", "region": "local", "capacity": 2, "version": "0.1.0"});
        assert_eq!(
            parse_message(SidecarOp::Register, reg.to_string().as_bytes(), "sc-1").unwrap(),
            SidecarMessage::Register(serde_json::from_value(reg.clone()).unwrap())
        );
        // What the Worker sends the region's object reads back as sent.
        let forwarded = env(SidecarOp::Register, "n0", reg.clone());
        let text = serde_json::to_string(&forwarded).unwrap();
        assert_eq!(
            serde_json::from_str::<SidecarEnvelope>(&text).unwrap(),
            forwarded
        );
        let r = handle(&mut q, &env(SidecarOp::Register, "n1", reg), 0, &T);
        let ack: RegistrationAck = serde_json::from_value(r.body).unwrap();
        assert_eq!(ack.ack_deadline_ms, 1_000);

        let poll = json!({"protocol_version": 1, "sidecar_id": "sc-1", "region": "local", "free_slots": 2, "held_calls": [], "wait_ms": 1500});
        let r = handle(&mut q, &env(SidecarOp::Lease, "n2", poll.clone()), 10, &T);
        assert_eq!(r.hold_open_until, Some(1_510), "empty poll is held open");
        q.enqueue(queued());
        assert!(q.has_work_for("sc-1", 20));
        let mut r = lease_reply(&mut q, "sc-1", 2, 20, &T);
        assert_eq!(r.finish(|_| None, None), Vec::<String>::new());
        let lease: LeaseResponse = serde_json::from_value(r.body).unwrap();
        let offer: &Offer = &lease.offers[0];
        assert_eq!(
            (offer.call_id.as_str(), offer.ack_deadline_ms),
            ("call_1", 1_020)
        );

        let ack = json!({"protocol_version": 1, "sidecar_id": "sc-1", "lease_id": offer.lease_id, "call_id": "call_1", "accepted": true});
        let r = handle(&mut q, &env(SidecarOp::Ack, "n3", ack.clone()), 30, &T);
        assert_eq!(r.status, 200);
        assert!(matches!(r.updates[0].change, CallChange::Dialing { .. }));
        // The same ack again (its answer was lost): accepted again, nothing applied twice.
        let r = handle(&mut q, &env(SidecarOp::Ack, "n4", ack), 31, &T);
        assert_eq!((r.status, r.updates.len()), (200, 0));
        let stale = json!({"protocol_version": 1, "sidecar_id": "sc-1", "lease_id": "lease_ff", "call_id": "call_1", "accepted": true});
        let r = handle(&mut q, &env(SidecarOp::Ack, "n4b", stale), 32, &T);
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (409, Some("lease_not_held"))
        );

        let events = json!({"protocol_version": 1, "sidecar_id": "sc-1", "events": [
            {"call_id": "call_1", "attempt": 1, "seq": 1, "at_ms": 40, "kind": {"type": "ringing"}},
            {"call_id": "call_1", "attempt": 1, "seq": 1, "at_ms": 40, "kind": {"type": "ringing"}},
            {"call_id": "call_1", "attempt": 1, "seq": 2, "at_ms": 50, "kind": {"type": "answered"}},
            {"call_id": "call_1", "attempt": 1, "seq": 3, "at_ms": 60, "kind": {"type": "ended", "status": "completed",
              "reason": "callee_hangup", "timings": {"dispatched_ms": 30, "ringing_ms": 40, "answered_ms": 50, "ended_ms": 60}}}
        ]});
        let r = handle(&mut q, &env(SidecarOp::Events, "n5", events), 70, &T);
        assert_eq!(r.body["accepted"], 4);
        let changes: Vec<_> = r.updates.iter().map(|u| u.change.clone()).collect();
        // Each at the time the sidecar stamped it, not the batch's arrival (70).
        let times: Vec<u64> = r.updates.iter().map(|u| u.at_ms).collect();
        assert_eq!(times, [40, 50, 60]);
        assert_eq!(
            changes,
            vec![
                CallChange::Ringing,
                CallChange::Answered,
                CallChange::Ended {
                    status: CallStatus::Completed,
                    reason: EndedReason::CalleeHangup,
                    sip_code: None
                }
            ]
        );
    }

    /// A queue whose one call (`call_1`) sidecar `sc-1` leased at 10 and
    /// acked at 20 (nonces `n1`, `n2` spent).
    fn held_call() -> Queue {
        let mut q = Queue::default();
        let reg = json!({"protocol_version": 1, "sidecar_id": "sc-1", "region": "local", "capacity": 1, "version": "0.1.0"});
        handle(&mut q, &env(SidecarOp::Register, "n1", reg), 0, &T);
        q.enqueue(queued());
        let mut r = lease_reply(&mut q, "sc-1", 1, 10, &T);
        r.finish(|_| None, None);
        let lease: LeaseResponse = serde_json::from_value(r.body).unwrap();
        let ack = json!({"protocol_version": 1, "sidecar_id": "sc-1", "lease_id": lease.offers[0].lease_id, "call_id": "call_1", "accepted": true});
        assert_eq!(
            handle(&mut q, &env(SidecarOp::Ack, "n2", ack), 20, &T).status,
            200
        );
        q
    }

    /// Issue 21: a 180 and a 200 in the same millisecond, reported in one
    /// batch, gave `ringing_at == answered_at` (both the batch's arrival).
    #[test]
    fn events_keep_the_sidecars_times_and_their_order() {
        let mut q = held_call();
        let events = json!({"protocol_version": 1, "sidecar_id": "sc-1", "events": [
            {"call_id": "call_1", "attempt": 1, "seq": 1, "at_ms": 35, "kind": {"type": "ringing"}},
            {"call_id": "call_1", "attempt": 1, "seq": 2, "at_ms": 35, "kind": {"type": "answered"}}
        ]});
        let r = handle(&mut q, &env(SidecarOp::Events, "n3", events), 900, &T);
        let mut record = crate::model::test_call(CallStatus::Dialing);
        for u in &r.updates {
            crate::calls::state::apply(&mut record, u).unwrap();
        }
        let (ringing, answered) = (record.ringing_at.unwrap(), record.answered_at.unwrap());
        assert_eq!(ringing, crate::ids::rfc3339_ms(35), "the sidecar's time");
        assert!(answered > ringing, "{ringing} {answered}");
        // A sidecar clock ahead of ours is held to now; one behind, to when
        // the call was held; never before the previous event.
        let events = json!({"protocol_version": 1, "sidecar_id": "sc-1", "events": [
            {"call_id": "call_1", "attempt": 1, "seq": 3, "at_ms": 5, "kind": {"type": "transcript_turn", "role": "user", "text": "hi", "start_ms": 0, "end_ms": 1}},
            {"call_id": "call_1", "attempt": 1, "seq": 4, "at_ms": 99_999, "kind": {"type": "ended", "status": "completed",
              "reason": "callee_hangup", "timings": {"dispatched_ms": 20, "ended_ms": 99_999}}}
        ]});
        let r = handle(&mut q, &env(SidecarOp::Events, "n4", events), 1_000, &T);
        assert_eq!(only_at(&r.updates), 1_000);
        assert_eq!(
            crate::dispatch::queue::event_time(5, 20, Some(36), 1_000),
            37
        );
        assert_eq!(crate::dispatch::queue::event_time(5, 20, None, 1_000), 20);
    }

    fn only_at(updates: &[CallUpdate]) -> u64 {
        assert_eq!(updates.len(), 1, "{updates:?}");
        updates[0].at_ms
    }

    #[test]
    fn a_transcript_turn_longer_than_the_limit_is_cut_on_a_char_boundary() {
        use crate::transcript::{Change, MAX_TURN_CHARS, TRUNCATED_MARKER};
        let mut q = held_call();
        // Multi-byte characters: a byte cut would split one.
        let long = "é".repeat(MAX_TURN_CHARS * 3);
        let events = json!({"protocol_version": 1, "sidecar_id": "sc-1", "events": [
            {"call_id": "call_1", "attempt": 1, "seq": 1, "at_ms": 30, "kind": {"type": "answered"}},
            {"call_id": "call_1", "attempt": 1, "seq": 2, "at_ms": 40, "kind": {"type": "transcript_turn", "role": "user", "text": long, "start_ms": 0, "end_ms": 1}},
            {"call_id": "call_1", "attempt": 1, "seq": 3, "at_ms": 50, "kind": {"type": "transcript_turn", "role": "ai", "text": "short", "start_ms": 2, "end_ms": 3}}
        ]});
        let r = handle(&mut q, &env(SidecarOp::Events, "n3", events), 60, &T);
        assert_eq!(r.status, 200);
        let texts: Vec<&str> = r
            .turns
            .iter()
            .filter_map(|t| match &t.change {
                Change::Turn(turn) => Some(turn.text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts.len(), 2);
        assert_eq!(texts[0].chars().count(), MAX_TURN_CHARS);
        assert!(
            texts[0].ends_with(TRUNCATED_MARKER) && texts[0].starts_with("éé"),
            "cut with a marker"
        );
        assert_eq!(texts[1], "short", "a turn within the limit is kept as sent");
    }

    #[test]
    fn replays_unknown_sidecars_and_bad_messages_are_refused() {
        let mut q = Queue::default();
        let poll = json!({"protocol_version": 1, "sidecar_id": "sc-1", "region": "local", "free_slots": 1, "held_calls": [], "wait_ms": 0});
        let r = handle(&mut q, &env(SidecarOp::Lease, "n1", poll.clone()), 0, &T);
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (410, Some("sidecar_not_registered"))
        );
        let r = handle(&mut q, &env(SidecarOp::Lease, "n1", poll.clone()), 1, &T);
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (401, Some("replayed_request"))
        );
        let wrong_version = json!({"protocol_version": 2, "sidecar_id": "sc-1", "region": "local", "free_slots": 1, "held_calls": [], "wait_ms": 0});
        let e = parse_message(
            SidecarOp::Lease,
            wrong_version.to_string().as_bytes(),
            "sc-1",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedProtocolVersion);
        assert_eq!(
            parse_message(SidecarOp::Lease, poll.to_string().as_bytes(), "sc-2")
                .unwrap_err()
                .code,
            ErrorCode::InvalidSignature
        );
        assert_eq!(
            parse_message(SidecarOp::Ack, poll.to_string().as_bytes(), "sc-1")
                .unwrap_err()
                .code,
            ErrorCode::InvalidType
        );
        assert_eq!(
            parse_message(SidecarOp::Ack, b"{", "sc-1")
                .unwrap_err()
                .code,
            ErrorCode::InvalidJson
        );
    }
}
