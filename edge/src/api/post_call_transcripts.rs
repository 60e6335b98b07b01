//! `POST /v1/sidecar/transcripts` (issue 16): the transcript a sidecar made
//! from a call's recording after the call, for calls no engine listened to
//! (a person's bridged call, a queue's, a voicemail message). The sidecar
//! link admitted it (signature, bounds, nonce); here the call is found in its
//! tenant's call store, the signer checked against the sidecar that held
//! that attempt (as for its recording), and the turns kept there
//! ([`crate::calls::store::post_call_transcript`]), which sends
//! `transcript.saved` (so Voice360's `TRANSCRIPTION_FINISHED`). Idempotent:
//! a resent transcript answers 200 with `stored: false`.

use crate::api::env::{Env, Result};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::model::{keys, SidecarRecord};
use crate::store::{get_json, Kv};
use crate::transcript::Turn;
use voxline_shared::sidecar_link::{CallTranscript, CallTranscriptReceipt, PROTOCOL_VERSION};

pub(crate) async fn post_call_transcript<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    // Parsed and checked once already (`sidecar_link::parse_message`).
    let t: CallTranscript = serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidType,
            format!("not a valid protocol message: {e}"),
        )
    })?;
    let not_found = || {
        ApiError::new(
            ErrorCode::CallNotFound,
            format!("no call '{}' for tenant '{}'", t.call_id, t.tenant_id),
        )
    };
    // The signer, authenticated already: its region.
    let sidecar: SidecarRecord = get_json(env.kv, &keys::sidecar(&t.sidecar_id))
        .await?
        .ok_or_else(not_found)?;
    let (record, holder) = env
        .calls
        .attempt_holder(&t.tenant_id, &t.call_id, t.attempt)
        .await?
        .ok_or_else(not_found)?;
    // Another region's sidecar never held this call.
    if record.region != sidecar.region || t.attempt > record.attempts.max(1) {
        return Err(not_found());
    }
    if holder.as_deref().is_some_and(|h| h != sidecar.id) {
        return Err(ApiError::new(
            ErrorCode::CallNotHeld,
            format!(
                "attempt {} of call '{}' was not held by sidecar '{}'",
                t.attempt, t.call_id, sidecar.id
            ),
        ));
    }
    let turns: Vec<Turn> = t
        .turns
        .iter()
        .map(|turn| Turn {
            role: turn.role,
            text: turn.text.clone(),
            start_ms: turn.start_ms,
            end_ms: turn.end_ms,
        })
        .collect();
    let stored = env
        .calls
        .post_call_transcript(&t.tenant_id, &t.call_id, t.attempt, &turns)
        .await?;
    let receipt = CallTranscriptReceipt {
        protocol_version: PROTOCOL_VERSION,
        call_id: t.call_id.clone(),
        attempt: t.attempt,
        stored,
    };
    Ok(ApiResponse::json(
        200,
        &serde_json::to_value(&receipt).unwrap_or_default(),
    ))
}
