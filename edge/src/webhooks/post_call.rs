//! Dialect webhook endpoints (`format` `buildvoiceai`, `calldock` or
//! `codeb`, see docs/dialects.md): deliveries when a call has ended (one;
//! CodeB's two), with the vendor's bodies and signature headers. The bodies
//! are rendered when the delivery jobs are made, in the call's store (where
//! the record and the transcript are), by the dialect's pure renderers; the
//! headers at each attempt.

use crate::dialects::post_call::{sentiment, EndedCall, Speaker, Turn};
use crate::dialects::{buildvoiceai, calldock, codeb};
use crate::ids::parse_rfc3339_utc_ms;
use crate::model::{CallRecord, WebhookFormat};
use crate::recording_links::RecordingLinks;
use crate::transcript::{Role, Transcript};

/// The language as the vendors' examples write it: the primary subtag of the
/// call's BCP-47 tag (`en-US` -> `en`).
fn primary_language(tag: &str) -> &str {
    tag.split('-').next().unwrap_or(tag)
}

/// The dialects know two speakers; a tool turn (issue 18) is neither and is
/// left out of their transcripts.
fn speaker(role: Role) -> Option<Speaker> {
    match role {
        Role::Agent => Some(Speaker::Agent),
        Role::Callee => Some(Speaker::Callee),
        Role::Tool => None,
    }
}

/// The call as the dialects' renderers read it, from its record and
/// transcript. Times the record does not hold read as `now_ms` (the end) or
/// absent. Left empty for want of a source: `from_phone` (the caller ID is the
/// sidecar's trunk's, unknown here). `recording_url` is [`recording_url`]'s.
pub fn ended_call<'a>(
    record: &'a CallRecord,
    transcript: &'a Transcript,
    agent_name: &'a str,
    recording_url: Option<String>,
    now_ms: u64,
) -> EndedCall<'a> {
    let ms = |t: &Option<String>| t.as_deref().and_then(parse_rfc3339_utc_ms);
    let callee_words = transcript
        .turns
        .iter()
        .filter(|t| t.role == Role::Callee)
        .map(|t| t.text.as_str());
    EndedCall {
        call_id: &record.id,
        agent_id: &record.agent_id,
        agent_name,
        phone: &record.phone,
        from_phone: record.caller_number.as_deref(),
        status: record.status,
        ended_reason: record.ended_reason,
        attempt: record.attempts,
        retries_left: record
            .retries
            .saturating_sub(record.attempts.saturating_sub(1)),
        name: record.name.as_deref(),
        caller_name: record.caller_name.as_deref(),
        email: record.email.as_deref(),
        metadata: record.metadata.as_ref().map(crate::model::Metadata::raw),
        language: primary_language(&record.language),
        dispatched_ms: ms(&record.dispatched_at),
        answered_ms: ms(&record.answered_at),
        ended_ms: ms(&record.ended_at).unwrap_or(now_ms),
        // The call's post-call analysis when its agent asked for one (a
        // cloud engine's reading may differ from the lexicon's).
        summary: record
            .analysis
            .as_ref()
            .and_then(|a| a.summary.as_deref())
            .or(transcript.summary.as_deref()),
        outcome: transcript.outcome.as_deref(),
        sentiment: Some(
            record
                .analysis
                .as_ref()
                .map_or_else(
                    || sentiment(transcript.outcome.as_deref(), callee_words),
                    |a| a.sentiment,
                )
                .as_str(),
        ),
        turns: transcript
            .turns
            .iter()
            .filter_map(|t| {
                Some(Turn {
                    speaker: speaker(t.role)?,
                    text: &t.text,
                    start_ms: t.start_ms,
                })
            })
            .collect(),
        recording_url,
    }
}

/// A call's `recording_url`: a signed link to its recording
/// (`recording_links`, working for a week from `now_ms`) when the call
/// was placed with `record: true` and the deployment can make links
/// (`PUBLIC_BASE_URL` and `VOXLINE_SEALING_KEY` set); else none. The
/// recording is uploaded after the call ends, so the link may answer 404
/// `recording_not_found` for a while (and always, for a call never answered).
pub fn recording_url(
    links: Option<&RecordingLinks>,
    tenant_id: &str,
    record: &CallRecord,
    now_ms: u64,
) -> Option<String> {
    links
        .filter(|_| record.record)
        .map(|l| l.url(tenant_id, &record.id, now_ms))
}

/// The bodies a `format` endpoint is sent for an ended call, one delivery
/// each, in order (none for native, whose bodies are the events' own).
/// CodeB: `outbound-ai.finished` for every ended call, then
/// `transcript.saved` for an answered call with at least one turn;
/// `codeb_tenant` is its bodies' `tenant`.
pub fn bodies(
    format: WebhookFormat,
    call: &EndedCall<'_>,
    codeb_tenant: &str,
    now_ms: u64,
) -> Vec<String> {
    match format {
        // Rendered per endpoint (one event type each): `voice360_body`.
        WebhookFormat::Native | WebhookFormat::Voice360 => vec![],
        WebhookFormat::BuildVoiceAi => vec![buildvoiceai::call_completed_body(call)],
        WebhookFormat::Calldock => vec![calldock::post_call_body(call, now_ms)],
        WebhookFormat::Codeb => {
            let saved = if call.turns.is_empty() {
                None
            } else {
                codeb::transcript_saved_body(call, codeb_tenant, now_ms)
            };
            std::iter::once(codeb::finished_body(call, codeb_tenant, now_ms))
                .chain(saved)
                .collect()
        }
    }
}

/// The body a `voice360` endpoint listening for `event_type` is sent about
/// this call, if any. `USER_DIAL` (at the call's creation) and `USER_HANGUP`
/// (at its end) are about a user's call: only calls placed from a directory
/// user's extension (`from_user`). `CALL_ENDED` is every call's end;
/// `TRANSCRIPTION_FINISHED` follows `transcript.saved` (an answered call's
/// transcript; provider and model are the call's engine, `total_tokens` 0 as
/// no engine reports tokens to the edge).
pub fn voice360_body(
    event_type: &str,
    call: &EndedCall<'_>,
    record: &CallRecord,
    account_id: &str,
    now_ms: u64,
) -> Option<String> {
    use crate::dialects::voice360::{self as v360, EventType as T};
    let user = record.from_user.map(|pk| pk.to_string());
    let body = |event: v360::Event<'_>| event.body(account_id, now_ms);
    Some(match T::parse(event_type)? {
        T::UserDial => body(v360::user_dial(call, user.as_deref()?)),
        T::UserHangup => body(v360::user_hangup(call, user.as_deref()?)),
        // An inbound call: the caller, our number, the person who took it
        // (the one rung, or the queue member whose leg answered).
        T::CallEnded if record.direction == crate::model::CallDirection::Inbound => {
            let to_user = record
                .answered_user
                .or(record.rings_user)
                .map(|pk| pk.to_string());
            body(v360::Event::CallEnded(v360::CallEnded {
                caller_id_number: Some(call.phone),
                dnis: call.from_phone.unwrap_or(""),
                uniqueid: call.call_id,
                call_direction: v360::Direction::Inbound,
                to_user_id: to_user.as_deref(),
                duration: call.duration_seconds(),
            }))
        }
        T::CallEnded => match &user {
            Some(u) => body(v360::call_ended(call, u)),
            None => body(v360::Event::CallEnded(v360::CallEnded {
                caller_id_number: call.from_phone,
                dnis: call.phone,
                uniqueid: call.call_id,
                call_direction: v360::Direction::Outbound,
                to_user_id: None,
                duration: call.duration_seconds(),
            })),
        },
        T::TranscriptionFinished => {
            let heard = !call.turns.is_empty();
            let transcription = heard.then(|| {
                v360::transcription_json(
                    call,
                    account_id,
                    call.call_id,
                    &v360::Recap::default(),
                    now_ms,
                )
            });
            body(v360::Event::TranscriptionFinished(
                v360::TranscriptionFinished {
                    uniqueid: call.call_id,
                    transcription,
                    provider: record.engine.as_str(),
                    model: record.model.as_deref().unwrap_or(""),
                    total_tokens: 0,
                    success: heard,
                    error: (!heard).then_some("no speech was transcribed"),
                },
            ))
        }
        _ => return None,
    })
}

/// The `INCOMING_EXTERNAL_CALL` body of an inbound call, sent once when the
/// edge creates it (its one `call.ringing`: an inbound call is created
/// ringing and never reported ringing again), before anyone answers: the
/// caller, their name (null: the sidecar's `InboundCall` carries none), our
/// number called, our call id. None for another event type or an outbound
/// call's ringing.
pub fn voice360_incoming_body(
    event_type: &str,
    record: &CallRecord,
    account_id: &str,
    now_ms: u64,
) -> Option<String> {
    use crate::dialects::voice360::{self as v360, EventType as T};
    if T::parse(event_type)? != T::IncomingExternalCall
        || record.direction != crate::model::CallDirection::Inbound
    {
        return None;
    }
    let event = v360::Event::IncomingExternalCall(v360::IncomingExternalCall {
        caller_id_number: &record.phone,
        caller_id_name: record.name.as_deref(),
        dnis: record.caller_number.as_deref().unwrap_or(""),
        uniqueid: &record.id,
    });
    Some(event.body(account_id, now_ms))
}

/// The bodies (none or one) a `voice360` endpoint listening for
/// `event_type` is sent about a step of a call (issue 16), rendered from the
/// native `call.leg` / `call.queue` payload's step (`data.leg`,
/// `data.queue`) and the call's record:
///
/// - a leg of a queue call (the record's `queue`) with a person:
///   `QUEUE_MEMBER_DIAL` (dialing), `QUEUE_MEMBER_ANSWER` (answered),
///   `QUEUE_MEMBER_DIAL_HANGUP` (ended; `duration` the leg's talk seconds);
/// - a person's leg answering an inbound call (rung, or a queue member):
///   `USER_ANSWER`;
/// - the caller's wait: `QUEUE_ENTER` (entered), `QUEUE_NO_ANSWER` (a ring
///   round nobody answered), `QUEUE_HANGUP` (the caller leaves the queue:
///   connected, timed out or abandoned; `duration` the seconds waited, with
///   hundredths), `QUEUE_HANGUP_TIMEOUT`, `QUEUE_HANGUP_ABANDONED`.
///
/// `uniqueid` and `queuecall_id` are the call id, `queue_id` and `queuename`
/// the queue's `pk` as text (the API's queue `name`), `queue_name` its name,
/// `dnis` the number called, `caller_id_number` the caller.
pub fn voice360_step_bodies(
    event_type: &str,
    native_payload: &str,
    record: &CallRecord,
    account_id: &str,
    now_ms: u64,
) -> Vec<String> {
    voice360_step_body(event_type, native_payload, record, account_id, now_ms)
        .into_iter()
        .collect()
}

fn voice360_step_body(
    event_type: &str,
    native_payload: &str,
    record: &CallRecord,
    account_id: &str,
    now_ms: u64,
) -> Option<String> {
    use crate::dialects::js_json::JsNumber;
    use crate::dialects::voice360::{self as v360, EventType as T, APP_QUEUE};
    let payload: serde_json::Value = serde_json::from_str(native_payload).ok()?;
    let data = &payload["data"];
    let call_id = record.id.as_str();
    let caller = record.phone.as_str();
    let dnis = record.caller_number.as_deref().unwrap_or("");
    let inbound = record.direction == crate::model::CallDirection::Inbound;
    let event = T::parse(event_type)?;
    let body = |event: v360::Event<'_>| Some(event.body(account_id, now_ms));
    if let Some(leg) = data.get("leg").filter(|l| l.is_object()) {
        let step = leg["step"].as_str()?;
        let user = leg["user_pk"].as_u64()?.to_string();
        let queued = record.queue.is_some();
        return match (event, step) {
            (T::UserAnswer, "answered") if inbound => {
                body(v360::Event::UserAnswer(v360::UserAnswer {
                    caller_id_number: caller,
                    to_user_id: &user,
                    uniqueid: call_id,
                }))
            }
            (T::QueueMemberDial, "dialing") if queued => {
                body(v360::Event::QueueMemberDial(v360::QueueMemberDial {
                    app_name: APP_QUEUE,
                    to_user_id: &user,
                    from_user_id: None,
                    uniqueid: call_id,
                    caller_id_number: caller,
                    dnis,
                    queuecall_id: call_id,
                }))
            }
            (T::QueueMemberAnswer, "answered") if queued => {
                body(v360::Event::QueueMemberAnswer(v360::QueueMemberAnswer {
                    app_name: APP_QUEUE,
                    to_user_id: &user,
                    caller_id_number: caller,
                    uniqueid: call_id,
                    dnis,
                    queuecall_id: call_id,
                }))
            }
            (T::QueueMemberDialHangup, "ended") if queued => body(
                v360::Event::QueueMemberDialHangup(v360::QueueMemberDialHangup {
                    app_name: APP_QUEUE,
                    to_user_id: &user,
                    from_user_id: None,
                    uniqueid: call_id,
                    caller_id_number: caller,
                    dnis,
                    queuecall_id: call_id,
                    duration: leg["talk_ms"].as_u64().unwrap_or(0) / 1000,
                }),
            ),
            _ => None,
        };
    }
    let queue = data.get("queue").filter(|q| q.is_object())?;
    let step = queue["step"].as_str()?;
    let queue_id = queue["queue_pk"].as_u64()?.to_string();
    let queue_name = queue["name"].as_str().unwrap_or("");
    let wait_ms = queue["wait_ms"].as_u64().unwrap_or(0);
    let wait = || v360::QueueWait {
        caller_id_number: caller,
        queue_name,
        queue_id: &queue_id,
        wait_time: wait_ms / 1000,
    };
    match (event, step) {
        (T::QueueEnter, "entered") => body(v360::Event::QueueEnter(v360::QueueEnter {
            queue_id: &queue_id,
            queuecall_id: call_id,
            uniqueid: call_id,
            queuename: &queue_id,
            callerid_number: caller,
            callerid_name: record.name.as_deref(),
        })),
        (T::QueueHangup, "connected" | "timed_out" | "abandoned") => {
            body(v360::Event::QueueHangup(v360::QueueHangup {
                app_name: APP_QUEUE,
                queue_id: &queue_id,
                queuecall_id: call_id,
                uniqueid: call_id,
                queuename: &queue_id,
                // Seconds with hundredths, as the document's 16.59.
                duration: JsNumber((wait_ms as f64 / 10.0).round() / 100.0),
                dnis,
                dialed_number: dnis,
                caller_id_number: caller,
            }))
        }
        (T::QueueNoAnswer, "no_answer") => body(v360::Event::QueueNoAnswer(wait())),
        (T::QueueHangupTimeout, "timed_out") => body(v360::Event::QueueHangupTimeout(wait())),
        (T::QueueHangupAbandoned, "abandoned") => body(v360::Event::QueueHangupAbandoned(wait())),
        _ => None,
    }
}

/// The body a `voice360` endpoint listening for `event_type` is sent about a
/// text message, from the native event's payload (its `data` is the public
/// message record): `SMS_SENT` (the trunk took it), `SMS_RECEIVED`,
/// `SMS_DELIVERED` (the carrier's delivery report). `sms_sent_by_user_id` is
/// null: the record does not say which user's key sent it.
pub fn voice360_message_body(
    event_type: &str,
    native_payload: &str,
    account_id: &str,
    now_ms: u64,
) -> Option<String> {
    use crate::dialects::voice360::{self as v360, EventType as T};
    let payload: serde_json::Value = serde_json::from_str(native_payload).ok()?;
    let data = &payload["data"];
    let text = |k: &str| data[k].as_str().unwrap_or("");
    let (from, to, body, id) = (text("from"), text("to"), text("body"), text("id"));
    let event = match T::parse(event_type)? {
        T::SmsSent => v360::Event::SmsSent(v360::SmsSent {
            from_number: from,
            to_number: vec![to],
            body,
            message_id: id,
            sms_sent_by_user_id: None,
        }),
        T::SmsReceived => v360::Event::SmsReceived(v360::SmsReceived {
            from_number: from,
            to_number: to,
            body,
            message_id: id,
        }),
        T::SmsDelivered => v360::Event::SmsDelivered(v360::SmsDelivered {
            to_number: vec![to],
            message_id: id,
            status: "delivered",
        }),
        _ => return None,
    };
    Some(event.body(account_id, now_ms))
}

/// The Voice360 body of a contact event for an endpoint listening to
/// `event_type`, rendered from the native payload's `data` (the public
/// contact): `CONTACT_CREATED`, `CONTACT_UPDATED` (`updated_fields`: the
/// changed fields the document names, `phone`, `first_name`, `last_name`,
/// `email`; a change of `metadata` alone is not one of them and sends
/// nothing), `CONTACT_DELETED`. `contact_id` is our contact id (`con_...`).
pub fn voice360_contact_body(
    event_type: &str,
    native_payload: &str,
    account_id: &str,
    now_ms: u64,
) -> Option<String> {
    use crate::dialects::voice360::{self as v360, EventType as T};
    let payload: serde_json::Value = serde_json::from_str(native_payload).ok()?;
    let data = &payload["data"];
    let (contact_id, phone) = (data["id"].as_str()?, data["phone"].as_str()?);
    let event = match T::parse(event_type)? {
        T::ContactCreated => v360::Event::ContactCreated(v360::ContactCreated {
            contact_id,
            phone,
            first_name: data["first_name"].as_str(),
            last_name: data["last_name"].as_str(),
            email: data["email"].as_str(),
        }),
        T::ContactUpdated => {
            let updated_fields: Vec<&str> = data["updated_fields"]
                .as_array()?
                .iter()
                .filter_map(|f| f.as_str())
                .filter(|f| ["phone", "first_name", "last_name", "email"].contains(f))
                .collect();
            if updated_fields.is_empty() {
                return None;
            }
            v360::Event::ContactUpdated(v360::ContactUpdated {
                contact_id,
                updated_fields,
                phone,
            })
        }
        T::ContactDeleted => {
            v360::Event::ContactDeleted(v360::ContactDeleted { contact_id, phone })
        }
        _ => return None,
    };
    Some(event.body(account_id, now_ms))
}

/// Voice360's header: `X-Voice360-Signature: sha256=<hex HMAC-SHA256 of the
/// raw body>` keyed with the endpoint's secret string (UTF-8 bytes).
pub fn voice360_headers(secret: &str, body: &str) -> Vec<(String, String)> {
    vec![(
        crate::dialects::voice360::HEADER_SIGNATURE.to_string(),
        crate::dialects::voice360::signature(secret.as_bytes(), body.as_bytes()),
    )]
}

/// BuildVoiceAI's header: `X-Signature`, hex HMAC-SHA256 of the raw body
/// keyed with the credential's token.
pub fn buildvoiceai_headers(token: &str, body: &str) -> Vec<(String, String)> {
    vec![(
        buildvoiceai::HEADER_SIGNATURE.to_string(),
        buildvoiceai::signature(token, body.as_bytes()),
    )]
}

/// CodeB's header: `X-CodeB-Signature`, hex HMAC-SHA256 of the raw body
/// keyed with the endpoint's secret string as UTF-8 bytes (the subscription
/// secret, as the document's Python verifier uses it).
pub fn codeb_headers(secret: &str, body: &str) -> Vec<(String, String)> {
    vec![(
        codeb::HEADER_SIGNATURE.to_string(),
        codeb::signature(secret.as_bytes(), body.as_bytes()),
    )]
}

/// Calldock's headers: `X-Calldock-Event: post_call` and
/// `X-Calldock-Signature`, hex HMAC-SHA256 of the body keyed with the
/// endpoint's secret string as UTF-8 bytes (the document's Node verifier:
/// `crypto.createHmac('sha256', webhookSecret)`).
pub fn calldock_headers(secret: &str, body: &str) -> Vec<(String, String)> {
    vec![
        (
            calldock::HEADER_EVENT.to_string(),
            calldock::EVENT_POST_CALL.to_string(),
        ),
        (
            calldock::HEADER_SIGNATURE.to_string(),
            calldock::signature(secret.as_bytes(), body.as_bytes()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Turn as StoredTurn;
    use voxline_shared::CallStatus;

    fn turn(role: Role, text: &str, start_ms: u64) -> StoredTurn {
        StoredTurn {
            role,
            text: text.into(),
            start_ms,
            end_ms: start_ms + 500,
        }
    }

    #[test]
    fn an_ended_call_reads_the_record_and_the_transcript() {
        let record = CallRecord {
            status: CallStatus::Completed,
            name: Some("Ada".into()),
            metadata: crate::model::Metadata::from_json_text(r#"{"b":1.50,"a":1}"#),
            dispatched_at: Some("2024-01-15T10:29:55.000Z".into()),
            answered_at: Some("2024-01-15T10:30:00.000Z".into()),
            ended_at: Some("2024-01-15T10:32:21.400Z".into()),
            ..crate::model::test_call(CallStatus::Completed)
        };
        let transcript = Transcript {
            turns: vec![
                turn(Role::Agent, "Hello, is this Ada?", 1_200),
                turn(Role::Callee, "Yes, I'm interested.", 5_000),
            ],
            summary: Some("Ada is interested.".into()),
            outcome: None,
        };
        let call = ended_call(&record, &transcript, "Sales", None, 0);
        assert_eq!(
            (call.call_id, call.agent_name, call.language),
            ("call_1", "Sales", "en")
        );
        assert_eq!(call.duration_seconds(), 141);
        assert_eq!(call.metadata.map(|m| m.get()), Some(r#"{"b":1.50,"a":1}"#));
        assert_eq!(
            (call.summary, call.sentiment),
            (Some("Ada is interested."), Some("positive"))
        );
        assert_eq!(call.turns.len(), 2);
        assert_eq!(call.turns[1].speaker, Speaker::Callee);
        assert!(call.recording_url.is_none() && call.from_phone.is_none());
        let bvai = bodies(WebhookFormat::BuildVoiceAi, &call, "", 0);
        assert_eq!(bvai.len(), 1);
        let bvai: serde_json::Value = serde_json::from_str(&bvai[0]).unwrap();
        assert_eq!(bvai["transcript"][1]["role"], "human");
        assert_eq!(bvai["started_at"], "2024-01-15T10:30:00Z");
        assert!(bodies(WebhookFormat::Native, &call, "", 0).is_empty());
        // A call that never got an end time ends now.
        let open = CallRecord {
            ended_at: None,
            ..record
        };
        assert_eq!(ended_call(&open, &transcript, "", None, 7).ended_ms, 7);
    }

    /// The document's Python verifier: `hmac.compare_digest(hmac.new(secret,
    /// raw_body, sha256).hexdigest(), header.strip())`.
    fn codeb_verifies(secret: &str, raw_body: &str, header: &str) -> bool {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(raw_body.as_bytes());
        let expected = hex::encode(mac.finalize().into_bytes());
        expected.as_bytes() == header.trim().as_bytes()
    }

    #[test]
    fn codeb_sends_finished_and_transcript_saved_for_an_answered_call_signed_verifiably() {
        let record = CallRecord {
            id: "call_0123456789ab".into(),
            status: CallStatus::Completed,
            caller_name: Some("Reminder".into()),
            name: Some("Alex".into()),
            ended_reason: Some(voxline_shared::EndedReason::CalleeHangup),
            attempts: 1,
            dispatched_at: Some("2026-06-23T12:00:00.000Z".into()),
            answered_at: Some("2026-06-23T12:00:05.500Z".into()),
            ended_at: Some("2026-06-23T12:02:30.000Z".into()),
            ..crate::model::test_call(CallStatus::Completed)
        };
        let transcript = Transcript {
            turns: vec![
                turn(Role::Agent, "Hello, this is your reminder service.", 500),
                turn(Role::Callee, "Yes, this is Alex.", 3_600),
            ],
            summary: None,
            outcome: None,
        };
        let call = ended_call(&record, &transcript, "", None, 0);
        let sent = bodies(WebhookFormat::Codeb, &call, "phone.yourtenant.com", 1_000);
        assert_eq!(sent.len(), 2, "{sent:?}");
        let finished: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
        assert_eq!(finished["type"], "outbound-ai.finished");
        assert_eq!(finished["tenant"], "phone.yourtenant.com");
        assert_eq!(finished["data"]["callId"], "oac-0123456789ab");
        // displayName is the caller-ID label, not the callee's name.
        assert_eq!(finished["data"]["displayName"], "Reminder");
        assert_eq!(finished["data"]["status"], "ended-success");
        assert_eq!(finished["data"]["durationSec"], 145);
        let saved: serde_json::Value = serde_json::from_str(&sent[1]).unwrap();
        assert_eq!(saved["type"], "transcript.saved");
        assert_eq!(
            saved["data"]["transcriptPath"],
            "outbound-ai-20260623-120000-oac-0123456789ab.txt"
        );
        assert_eq!(saved["data"]["turns"], 2);
        for body in &sent {
            let h = codeb_headers("whsec_sub", body);
            assert_eq!(h.len(), 1);
            assert_eq!(h[0].0, "X-CodeB-Signature");
            assert!(codeb_verifies("whsec_sub", body, &h[0].1));
            assert!(!codeb_verifies("whsec_other", body, &h[0].1));
            assert!(!codeb_verifies("whsec_sub", &format!("{body} "), &h[0].1));
        }
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_abc",b"{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            codeb_headers("whsec_abc", "{}")[0].1,
            "a7e20c39a3bd9a0d00109906483a125cba27c676f9feabcde8702361770cc020"
        );

        // No caller name: the phone. Answered without a word: no transcript.saved.
        let silent = CallRecord {
            caller_name: None,
            ..record.clone()
        };
        let empty = Transcript::default();
        let call = ended_call(&silent, &empty, "", None, 0);
        let sent = bodies(WebhookFormat::Codeb, &call, "t", 0);
        assert_eq!(sent.len(), 1);
        let finished: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
        assert_eq!(finished["data"]["displayName"], "+14155550100");
    }

    #[test]
    fn codeb_sends_only_finished_for_an_unanswered_call() {
        let record = CallRecord {
            id: "call_0123456789ab".into(),
            status: CallStatus::NoAnswer,
            ended_reason: Some(voxline_shared::EndedReason::NoAnswer),
            attempts: 1,
            dispatched_at: Some("2026-06-23T12:00:00.000Z".into()),
            ended_at: Some("2026-06-23T12:01:00.000Z".into()),
            ..crate::model::test_call(CallStatus::NoAnswer)
        };
        let empty = Transcript::default();
        let call = ended_call(&record, &empty, "", None, 0);
        let sent = bodies(WebhookFormat::Codeb, &call, "t", 0);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let finished: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
        assert_eq!(finished["type"], "outbound-ai.finished");
        assert_eq!(finished["data"]["status"], "ended-failed-final");
        assert_eq!(finished["data"]["endedReason"], "no-answer");
        assert_eq!(finished["data"]["transcriptPath"], serde_json::Value::Null);
    }

    #[test]
    fn headers_are_the_documents() {
        let h = calldock_headers("whsec_abc", "{}");
        assert_eq!(h[0], ("X-Calldock-Event".into(), "post_call".into()));
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_abc",b"{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            h[1],
            (
                "X-Calldock-Signature".into(),
                "a7e20c39a3bd9a0d00109906483a125cba27c676f9feabcde8702361770cc020".into()
            )
        );
        assert_eq!(
            buildvoiceai_headers("bvk_1", "{}"),
            vec![(
                "X-Signature".to_string(),
                "2881cd45a0be0dda4d532db65fa6bcd9c6fa442fb9f367c571c7298bb0876c2a".to_string()
            )]
        );
    }

    /// The document's USER_ANSWER and QUEUE_* examples, rendered from the
    /// native `call.leg` / `call.queue` payloads of an inbound queue call
    /// with the example's values, byte for byte once the examples are
    /// compacted. Ours differ only where the document's are placeholders:
    /// `uniqueid` and `queuecall_id` are both the call id, `queue_id` and
    /// `queuename` the queue's `pk` as text; the example's 16.59 s wait.
    #[test]
    fn leg_and_queue_bodies_are_the_documents_examples() {
        use crate::webhooks::events::{call_step_payload, leg_json, queue_json, WebhookEvent};
        use voxline_shared::sidecar_link::{LegStep, QueueStep};
        const NOW: u64 = 1_704_067_200_000;
        let record = CallRecord {
            id: "call_1".into(),
            phone: "+15551234567".into(),
            direction: crate::model::CallDirection::Inbound,
            caller_number: Some("+15559876543".into()),
            queue: Some(crate::model::CallQueue {
                pk: 123,
                name: "Sales Queue".into(),
                left: false,
            }),
            ..crate::model::test_call(CallStatus::InProgress)
        };
        let leg = |step, talk_ms, event: &str| {
            let payload = call_step_payload(
                WebhookEvent::CallLeg,
                "evt_1",
                &record,
                NOW,
                "leg",
                leg_json(step, Some(67890), None, None, talk_ms),
            );
            voice360_step_bodies(event, &payload, &record, "12345", NOW + 999)
        };
        let queue = |step, wait_ms, event: &str| {
            let payload = call_step_payload(
                WebhookEvent::CallQueue,
                "evt_2",
                &record,
                NOW,
                "queue",
                queue_json(step, 123, Some("Sales Queue"), Some(1), wait_ms),
            );
            voice360_step_bodies(event, &payload, &record, "12345", NOW + 999)
        };
        let envelope = |name: &str, metadata: &str| {
            vec![format!(
                r#"{{"event_name":"{name}","account_id":"12345","timestamp":1704067200,"metadata":{metadata}}}"#
            )]
        };
        assert_eq!(
            leg(LegStep::Answered, 0, "USER_ANSWER"),
            envelope(
                "USER_ANSWER",
                r#"{"caller_id_number":"+15551234567","to_user_id":"67890","uniqueid":"call_1"}"#
            )
        );
        assert_eq!(
            leg(LegStep::Dialing, 0, "QUEUE_MEMBER_DIAL"),
            envelope(
                "QUEUE_MEMBER_DIAL",
                r#"{"App-Name":"Queue","to_user_id":"67890","from_user_id":null,"uniqueid":"call_1","caller_id_number":"+15551234567","dnis":"+15559876543","queuecall_id":"call_1"}"#
            )
        );
        assert_eq!(
            leg(LegStep::Answered, 0, "QUEUE_MEMBER_ANSWER"),
            envelope(
                "QUEUE_MEMBER_ANSWER",
                r#"{"App-Name":"Queue","to_user_id":"67890","caller_id_number":"+15551234567","uniqueid":"call_1","dnis":"+15559876543","queuecall_id":"call_1"}"#
            )
        );
        assert_eq!(
            leg(LegStep::Ended, 120_400, "QUEUE_MEMBER_DIAL_HANGUP"),
            envelope(
                "QUEUE_MEMBER_DIAL_HANGUP",
                r#"{"App-Name":"Queue","to_user_id":"67890","from_user_id":null,"uniqueid":"call_1","caller_id_number":"+15551234567","dnis":"+15559876543","queuecall_id":"call_1","duration":120}"#
            )
        );
        assert_eq!(
            queue(QueueStep::Entered, 0, "QUEUE_ENTER"),
            envelope(
                "QUEUE_ENTER",
                r#"{"queue_id":"123","queuecall_id":"call_1","uniqueid":"call_1","queuename":"123","callerid_number":"+15551234567","callerid_name":null}"#
            )
        );
        for step in [
            QueueStep::Connected,
            QueueStep::TimedOut,
            QueueStep::Abandoned,
        ] {
            assert_eq!(
                queue(step, 16_594, "QUEUE_HANGUP"),
                envelope(
                    "QUEUE_HANGUP",
                    r#"{"App-Name":"Queue","queue_id":"123","queuecall_id":"call_1","uniqueid":"call_1","queuename":"123","duration":16.59,"dnis":"+15559876543","dialed_number":"+15559876543","caller_id_number":"+15551234567"}"#
                ),
                "{step:?}"
            );
        }
        for (step, name, wait_ms, wait) in [
            (QueueStep::NoAnswer, "QUEUE_NO_ANSWER", 60_000, 60),
            (QueueStep::TimedOut, "QUEUE_HANGUP_TIMEOUT", 300_999, 300),
            (QueueStep::Abandoned, "QUEUE_HANGUP_ABANDONED", 45_000, 45),
        ] {
            assert_eq!(
                queue(step, wait_ms, name),
                envelope(
                    name,
                    &format!(
                        r#"{{"caller_id_number":"+15551234567","queue_name":"Sales Queue","queue_id":"123","wait_time":{wait}}}"#
                    )
                )
            );
        }
        // Steps without the endpoint's event render nothing: a queue's
        // announcement, a member's ringing, a leg to a number, a call not
        // in a queue for the member events.
        assert!(queue(QueueStep::Announced, 1, "QUEUE_ENTER").is_empty());
        assert!(queue(QueueStep::Entered, 1, "QUEUE_HANGUP").is_empty());
        assert!(leg(LegStep::Ringing, 0, "QUEUE_MEMBER_DIAL").is_empty());
        assert!(leg(LegStep::Answered, 0, "QUEUE_ENTER").is_empty());
        let not_queued = CallRecord {
            queue: None,
            ..record.clone()
        };
        let payload = call_step_payload(
            WebhookEvent::CallLeg,
            "evt_3",
            &not_queued,
            NOW,
            "leg",
            leg_json(LegStep::Answered, Some(67890), None, None, 0),
        );
        assert!(
            voice360_step_bodies("QUEUE_MEMBER_ANSWER", &payload, &not_queued, "12345", NOW)
                .is_empty()
        );
        assert_eq!(
            voice360_step_bodies("USER_ANSWER", &payload, &not_queued, "12345", NOW).len(),
            1
        );
        let to_number = call_step_payload(
            WebhookEvent::CallLeg,
            "evt_4",
            &record,
            NOW,
            "leg",
            leg_json(LegStep::Answered, None, Some("+15550001111"), None, 0),
        );
        assert!(voice360_step_bodies("USER_ANSWER", &to_number, &record, "12345", NOW).is_empty());
    }

    /// The document's INCOMING_EXTERNAL_CALL example (its values, its field
    /// order, compacted), rendered from an inbound call's record with the
    /// example's caller name; nothing for an outbound call or another event.
    #[test]
    fn incoming_external_call_is_the_documents_example_for_inbound_calls_only() {
        const NOW: u64 = 1_704_067_200_000;
        let record = CallRecord {
            id: "1704067200.12345".into(),
            phone: "+15551234567".into(),
            name: Some("John Doe".into()),
            direction: crate::model::CallDirection::Inbound,
            caller_number: Some("+15559876543".into()),
            ..crate::model::test_call(CallStatus::Ringing)
        };
        assert_eq!(
            voice360_incoming_body("INCOMING_EXTERNAL_CALL", &record, "12345", NOW).as_deref(),
            Some(
                r#"{"event_name":"INCOMING_EXTERNAL_CALL","account_id":"12345","timestamp":1704067200,"metadata":{"caller_id_number":"+15551234567","caller_id_name":"John Doe","dnis":"+15559876543","uniqueid":"1704067200.12345"}}"#
            )
        );
        assert_eq!(
            voice360_incoming_body("USER_ANSWER", &record, "12345", NOW),
            None
        );
        let outbound = CallRecord {
            direction: crate::model::CallDirection::Outbound,
            ..record
        };
        assert_eq!(
            voice360_incoming_body("INCOMING_EXTERNAL_CALL", &outbound, "12345", NOW),
            None
        );
    }

    /// The document's CONTACT_* examples, rendered from the native payloads
    /// of a contact with the example's values (its id `98765`; ours are
    /// `con_...`), byte for byte once the examples are compacted.
    #[test]
    fn contact_bodies_are_the_documents_examples() {
        use crate::contacts::{test_contact, ContactEvent};
        use crate::webhooks::events::contact_event_payload;
        const NOW: u64 = 1_704_067_200_000;
        let c = test_contact("98765", "+15551234567");
        let body = |event, fields: &[&str], event_type| {
            let native = contact_event_payload(event, "evt_1", &c, fields, NOW);
            voice360_contact_body(event_type, &native, "12345", NOW + 999)
        };
        assert_eq!(
            body(ContactEvent::Created, &[], "CONTACT_CREATED").as_deref(),
            Some(
                r#"{"event_name":"CONTACT_CREATED","account_id":"12345","timestamp":1704067200,"metadata":{"contact_id":"98765","phone":"+15551234567","first_name":"John","last_name":"Doe","email":"john@example.com"}}"#
            )
        );
        assert_eq!(
            body(
                ContactEvent::Updated,
                &["first_name", "email"],
                "CONTACT_UPDATED"
            )
            .as_deref(),
            Some(
                r#"{"event_name":"CONTACT_UPDATED","account_id":"12345","timestamp":1704067200,"metadata":{"contact_id":"98765","updated_fields":["first_name","email"],"phone":"+15551234567"}}"#
            )
        );
        assert_eq!(
            body(ContactEvent::Deleted, &[], "CONTACT_DELETED").as_deref(),
            Some(
                r#"{"event_name":"CONTACT_DELETED","account_id":"12345","timestamp":1704067200,"metadata":{"contact_id":"98765","phone":"+15551234567"}}"#
            )
        );
        // Fields the document does not name are left out; none left: no body.
        assert_eq!(
            body(ContactEvent::Updated, &["metadata"], "CONTACT_UPDATED"),
            None
        );
        // A contact without names or email: nulls, as the metadata's fields are.
        let mut bare = c.clone();
        (bare.first_name, bare.last_name, bare.email) = (None, None, None);
        let native = contact_event_payload(ContactEvent::Created, "evt_2", &bare, &[], NOW);
        let v: serde_json::Value = serde_json::from_str(
            &voice360_contact_body("CONTACT_CREATED", &native, "12345", NOW).unwrap(),
        )
        .unwrap();
        assert_eq!(v["metadata"]["first_name"], serde_json::Value::Null);
        // A message event type is no contact body.
        assert_eq!(
            voice360_contact_body("SMS_SENT", &native, "12345", NOW),
            None
        );
    }
}
