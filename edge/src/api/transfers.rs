//! `POST /v1/calls/{id}/transfer` (issue 16): the checks, the target
//! resolved (a number, a person's extension, a queue planned for the
//! sidecar holding the call), the command handed to the call's store.
//! Apart from `calls` because a queue's plan is the inbound queue
//! logic's (`inbound_calls::plan_queue`), which reads live calls.

use crate::api::calls::{call_not_found, load_call};
use crate::api::env::{Env, Result};
use crate::api::fields::parse_request;
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids;
use crate::model::{CallRecord, Tenant};
use crate::store::Kv;
use voxline_shared::CallStatus;

/// `POST /v1/calls/{id}/transfer` (issue 16): hands an answered AI call's
/// callee to a number (`destination`), a person of the tenant
/// (`extension`), `blind` or `warm`, or a queue (`queue`, blind only). The sidecar holding the call is told
/// through its lease; 202 with the call, its `transfer_request` `requested`. The
/// outcome comes later: `transfer_request.status` `completed` (and
/// `call.transferred`) or `failed` with a stable `error`.
pub(crate) async fn transfer_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    cid: &str,
) -> Result<ApiResponse> {
    use crate::calls::store::{TransferAsk, TransferRefusal};
    use voxline_shared::sidecar_link::{TransferMode, TransferTarget, MAX_TRANSFER_MESSAGE_CHARS};
    let f = parse_request(
        req,
        &["destination", "extension", "queue", "mode", "message"],
    )?;
    if !ids::is_id(cid, "call") {
        return Err(call_not_found(cid));
    }
    // A call that does not exist is that, whatever the body says.
    let call = load_call(env, &tenant.id, cid).await?;
    let destination = f.str_opt("destination", 16)?;
    let extension = f.str_opt("extension", 16)?;
    let queue = f.int_opt("queue", 1, crate::directory::MAX_PK as i64)?;
    let mode = match f.str_opt("mode", 8)?.as_deref() {
        None | Some("blind") => TransferMode::Blind,
        Some("warm") => TransferMode::Warm,
        Some(other) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "mode",
                format!("'{other}': blind or warm"),
            ))
        }
    };
    let message = f
        .str_opt("message", MAX_TRANSFER_MESSAGE_CHARS)?
        .filter(|m| !m.trim().is_empty());
    if message.is_some() && mode != TransferMode::Warm {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "message",
            "a message is what the person hears in a warm transfer: give mode warm, or no message",
        ));
    }
    let target = match (destination, extension) {
        _ if queue.is_some() && (f.has("destination") || f.has("extension")) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "queue",
                "give one of destination, extension or queue",
            ))
        }
        _ if queue.is_some() && mode == TransferMode::Warm => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "mode",
                "a transfer to a queue is blind: nobody is there to brief",
            ))
        }
        (None, None) if queue.is_some() => {
            let pk = u64::try_from(queue.unwrap_or_default()).unwrap_or_default();
            queue_target(env, tenant, &call, pk).await?
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "extension",
                "give destination or extension, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::field(
                ErrorCode::MissingField,
                "destination",
                "destination (an E.164 number), extension (a person's) or queue (a queue's pk) is required",
            ))
        }
        (Some(d), None) => {
            crate::api::validate::check_e164("destination", &d)?;
            TransferTarget::Number { destination: d }
        }
        (None, Some(e)) => {
            if !(2..=16).contains(&e.len()) || !e.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::field(
                    ErrorCode::InvalidValue,
                    "extension",
                    "an extension is 2-16 digits",
                ));
            }
            let users = crate::directory::ops::users(env.directory, &tenant.id).await?;
            let person = users
                .into_iter()
                .find(|u| {
                    u.fields.extension == e
                        && u.fields.kind == crate::directory::records::UserKind::Person
                })
                .ok_or_else(|| {
                    ApiError::field(
                        ErrorCode::UnknownExtension,
                        "extension",
                        format!("no person has extension {e}"),
                    )
                })?;
            TransferTarget::User {
                user_pk: person.pk,
                extension: e,
                display_name: Some(person.fields.caller_id).filter(|n| !n.is_empty()),
            }
        }
    };
    let ask = TransferAsk {
        target,
        mode,
        message,
    };
    let record = match env.calls.transfer(&tenant.id, cid, &ask).await? {
        None => return Err(call_not_found(cid)),
        Some(Ok(record)) => record,
        Some(Err(refusal)) => {
            let (code, message) = match refusal {
                TransferRefusal::Ended => (ErrorCode::CallEnded, "the call has ended"),
                TransferRefusal::NotAnswered => {
                    (ErrorCode::CallNotAnswered, "the call is not answered yet")
                }
                TransferRefusal::NotAnAgentsCall => (
                    ErrorCode::CallNotTransferable,
                    "the call rings a person, not an AI agent",
                ),
                TransferRefusal::NotHeld => (
                    ErrorCode::CallNotTransferable,
                    "the sidecar holding the call cannot be reached now",
                ),
                TransferRefusal::InProgress => (
                    ErrorCode::TransferInProgress,
                    "a transfer of this call is under way or done",
                ),
            };
            return Err(ApiError::new(code, message));
        }
    };
    Ok(ApiResponse::json_text(202, record.to_public_json()))
}

/// A transfer to queue `pk` of the tenant: its plan for the sidecar
/// holding `call` (members with a phone registered there, the queue's
/// order, the caller's position), as for an inbound call to the queue
/// ([`crate::api::inbound_calls::plan_queue`]). The queue's overflow:
/// `agent` (whichever agent the queue names) brings the caller back to
/// this call's own agent, the one they were transferred from; `voicemail`
/// and `hangup` as configured. 422 `unknown_queue`; a full queue, or one
/// with no member to ring that takes no callers then, 409
/// `call_not_transferable`.
async fn queue_target<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    call: &CallRecord,
    pk: u64,
) -> Result<voxline_shared::sidecar_link::TransferTarget> {
    use crate::api::inbound_calls::{plan_queue, QueueRefusal};
    use crate::directory::QueueOverflowRule;
    use voxline_shared::sidecar_link::{QueueOverflow, TransferTarget};
    let unknown = || ApiError::field(ErrorCode::UnknownQueue, "queue", format!("no queue {pk}"));
    let queues = crate::directory::ops::queues(env.directory, &tenant.id).await?;
    let q = queues
        .into_iter()
        .find(|q| q.pk == pk)
        .ok_or_else(unknown)?;
    // A call that cannot be transferred says why before its sidecar is
    // looked for (the same refusals as the call store's).
    if call.status.is_terminal() || call.hangup_requested_at.is_some() {
        return Err(ApiError::new(ErrorCode::CallEnded, "the call has ended"));
    }
    if call.rings_user.is_some() || call.agent_id.is_empty() {
        return Err(ApiError::new(
            ErrorCode::CallNotTransferable,
            "the call rings a person, not an AI agent",
        ));
    }
    if call.status != CallStatus::InProgress {
        return Err(ApiError::new(
            ErrorCode::CallNotAnswered,
            "the call is not answered yet",
        ));
    }
    // The sidecar holding the call's attempt: its members' phones ring.
    let holder = env
        .calls
        .attempt_holder(&tenant.id, &call.id, call.attempts.max(1))
        .await?
        .and_then(|(_, holder)| holder);
    let Some(sidecar_id) = holder else {
        return Err(ApiError::new(
            ErrorCode::CallNotTransferable,
            "the sidecar holding the call cannot be reached now",
        ));
    };
    let mut planned = match plan_queue(env, tenant, &q, &sidecar_id).await? {
        Ok(p) => p,
        Err(QueueRefusal::Full) => {
            return Err(ApiError::new(
                ErrorCode::CallNotTransferable,
                "the queue is full",
            ))
        }
        Err(QueueRefusal::NoMember | QueueRefusal::LeaveWhenEmpty { .. }) => {
            return Err(ApiError::new(
                ErrorCode::CallNotTransferable,
                "no member of the queue can take calls on the sidecar holding the call",
            ))
        }
    };
    if matches!(q.fields.overflow, QueueOverflowRule::Agent { .. }) {
        planned.plan.overflow = QueueOverflow::Agent;
    }
    Ok(TransferTarget::Queue {
        plan: Box::new(planned.plan),
    })
}
