//! Call recordings. A sidecar uploads each answered attempt's stereo WAV
//! (`POST /v1/sidecar/recording`: the body streams into R2, which checks it
//! against the signed manifest's SHA-256), the API serves the newest attempt's
//! (`GET /v1/calls/{id}/recording`), and `recording.saved` tells webhooks.
//!
//! Split like the rest of the edge: this module decides (authentication,
//! manifest checks, the stored metadata, the event); `glue::recordings` only
//! moves the bytes between the request, R2 and the response.

use serde_json::Value;
use voxline_shared::sidecar_link::{self, RecordingManifest, RecordingReceipt, PROTOCOL_VERSION};
use voxline_shared::signing::SignedHeaders;

use crate::calls::store::{Calls, RecordingInfo};
use crate::dispatch::port::DispatchQueues;
use crate::dispatch::sidecar_link::{SidecarEnvelope, SidecarMessage};
use crate::dispatch::sidecar_request::authenticate_sidecar;
use crate::engine_keys::SealingKey;
use crate::error::{ApiError, ErrorCode};
use crate::http::ApiResponse;
use crate::ids::rfc3339_ms;
use crate::store::Kv;

/// The R2 binding recordings live in.
pub const BUCKET_BINDING: &str = "RECORDINGS";
pub const CONTENT_TYPE: &str = "audio/wav";
/// A WAV header alone is 44 bytes.
const MIN_BYTES: u64 = 44;

/// Where one attempt's recording is in R2.
pub fn object_key(tenant_id: &str, call_id: &str, attempt: u32) -> String {
    format!("recordings/{tenant_id}/{call_id}/{attempt}.wav")
}

/// An upload that may go ahead: where to put the bytes and how to check them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedUpload {
    pub manifest: RecordingManifest,
    pub object_key: String,
    /// The manifest's digest, decoded, for the object store's integrity check.
    pub sha256: Vec<u8>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRecordingManifest, message)
}

/// Checks an upload before any of its body is read: the sidecar's signature
/// over the manifest (header `x-voxline-recording`), the manifest itself,
/// that the call exists, wanted a recording, and that this very attempt was
/// held by the uploading sidecar (409 `recording_not_held` otherwise), then
/// spends the request's nonce in the region's queue, where every link
/// request's nonce is kept (a replay: 401 `replayed_request`).
/// `content_length`, when the request declared one, must equal the
/// manifest's `bytes`.
#[allow(clippy::too_many_arguments)]
pub async fn admit_upload(
    kv: &impl Kv,
    sealing: Option<&SealingKey>,
    calls: &dyn Calls,
    queues: &impl DispatchQueues,
    headers: &SignedHeaders<'_>,
    manifest_raw: Option<&str>,
    content_length: Option<u64>,
    now_ms: u64,
) -> Result<AdmittedUpload, ApiError> {
    let raw = manifest_raw.ok_or_else(|| {
        invalid(format!(
            "missing the {} header",
            sidecar_link::HEADER_RECORDING_MANIFEST
        ))
    })?;
    let target = voxline_shared::signing::Target::post(sidecar_link::paths::RECORDING);
    let sidecar =
        authenticate_sidecar(kv, sealing, headers, target, raw.as_bytes(), now_ms).await?;
    let m: RecordingManifest = serde_json::from_str(raw)
        .map_err(|e| invalid(format!("the manifest is not valid: {e}")))?;
    sidecar_link::check_version(m.protocol_version)
        .map_err(|v| ApiError::new(ErrorCode::UnsupportedProtocolVersion, v.to_string()))?;
    if m.sidecar_id != sidecar.id {
        return Err(invalid("the manifest's sidecar_id is not the signer's"));
    }
    if m.content_type != CONTENT_TYPE {
        return Err(invalid(format!("content_type must be {CONTENT_TYPE}")));
    }
    if m.bytes < MIN_BYTES {
        return Err(invalid(format!(
            "{} bytes cannot be a WAV recording",
            m.bytes
        )));
    }
    if m.bytes > sidecar_link::MAX_RECORDING_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{} bytes: recordings are taken up to {} bytes",
                m.bytes,
                sidecar_link::MAX_RECORDING_BYTES
            ),
        ));
    }
    if content_length.is_some_and(|n| n != m.bytes) {
        return Err(invalid("Content-Length differs from the manifest's bytes"));
    }
    let sha256 = match hex::decode(&m.sha256) {
        Ok(d) if d.len() == 32 && m.sha256.bytes().all(|b| !b.is_ascii_uppercase()) => d,
        _ => return Err(invalid("sha256 must be 64 lowercase hex digits")),
    };
    if m.attempt == 0
        || !crate::ids::is_id(&m.call_id, "call")
        || !crate::ids::is_id(&m.tenant_id, "ten")
    {
        return Err(invalid("tenant_id, call_id or attempt is malformed"));
    }
    let not_found = || {
        ApiError::new(
            ErrorCode::CallNotFound,
            format!("no call '{}' for tenant '{}'", m.call_id, m.tenant_id),
        )
    };
    let (record, holder) = calls
        .attempt_holder(&m.tenant_id, &m.call_id, m.attempt)
        .await?
        .ok_or_else(not_found)?;
    // Another region's sidecar never held this call.
    if record.region != sidecar.region {
        return Err(not_found());
    }
    if !record.record {
        return Err(ApiError::new(
            ErrorCode::RecordingNotRequested,
            format!("call '{}' was placed without record: true", m.call_id),
        ));
    }
    if m.attempt > record.attempts.max(1) {
        return Err(invalid(format!(
            "attempt {} of a call dialled {} times",
            m.attempt, record.attempts
        )));
    }
    // Attempts dialled before holders were recorded have none: for them the
    // region check above is all there is.
    if holder.as_deref().is_some_and(|h| h != sidecar.id) {
        return Err(ApiError::new(
            ErrorCode::RecordingNotHeld,
            format!(
                "attempt {} of call '{}' was not held by sidecar '{}'",
                m.attempt, m.call_id, sidecar.id
            ),
        ));
    }
    spend_nonce(queues, &sidecar.region, &sidecar.id, headers).await?;
    let object_key = object_key(&m.tenant_id, &m.call_id, m.attempt);
    Ok(AdmittedUpload {
        manifest: m,
        object_key,
        sha256,
    })
}

/// Spends the upload's nonce in its region's queue, like any link request's.
async fn spend_nonce(
    queues: &impl DispatchQueues,
    region: &str,
    sidecar_id: &str,
    headers: &SignedHeaders<'_>,
) -> Result<(), ApiError> {
    let envelope = SidecarEnvelope {
        sidecar_id: sidecar_id.to_string(),
        nonce: headers.nonce.unwrap_or_default().to_string(),
        message: SidecarMessage::Recording,
    };
    let (status, reply) = queues.sidecar(region, &envelope).await?;
    if status == 200 {
        return Ok(());
    }
    let code = reply["error"]["code"]
        .as_str()
        .and_then(|c| ErrorCode::ALL.iter().copied().find(|k| k.as_str() == c))
        .unwrap_or(ErrorCode::StorageUnavailable);
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or("the region's queue refused the upload")
        .to_string();
    Err(ApiError::new(code, message))
}

/// Records a stored upload; the call's store queues `recording.saved`.
/// Idempotent: the same upload again changes nothing and sends no second
/// event; an older attempt's upload never replaces a newer one's.
pub async fn record_saved(
    calls: &dyn Calls,
    up: &AdmittedUpload,
    now_ms: u64,
) -> Result<ApiResponse, ApiError> {
    let m = &up.manifest;
    let info = RecordingInfo {
        attempt: m.attempt,
        object_key: up.object_key.clone(),
        content_type: m.content_type.clone(),
        bytes: m.bytes,
        sha256: m.sha256.clone(),
        duration_ms: m.duration_ms,
        saved_at: rfc3339_ms(now_ms),
    };
    calls
        .recording_saved(&m.tenant_id, &m.call_id, &info)
        .await?;
    let receipt = RecordingReceipt {
        protocol_version: PROTOCOL_VERSION,
        call_id: m.call_id.clone(),
        attempt: m.attempt,
        bytes: m.bytes,
    };
    Ok(ApiResponse::json(
        200,
        &serde_json::to_value(&receipt).unwrap_or(Value::Null),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::store::{memory::MemoryCalls, CallRows, SqlCallRows};
    use crate::engine_keys::{SecretOwner, StoredSecret};
    use crate::model::{keys, test_call, CallRecord, SidecarRecord};
    use crate::sql::sqlite::LimitedSqlite;
    use crate::store::memory::MemoryKv;
    use crate::store::put_json;
    use crate::webhooks::delivery::Outbox;
    use futures::executor::block_on;
    use voxline_shared::signing;

    const NOW: u64 = 1_780_000_000_000;
    const TENANT: &str = "ten_0123456789abcdef";
    const CALL: &str = "call_0123456789abcdef";
    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    type TestCalls = MemoryCalls<SqlCallRows<LimitedSqlite>>;

    fn key() -> SealingKey {
        crate::webhooks::delivery::tests_support::sealing_key()
    }

    fn put_sidecar(kv: &MemoryKv, id: &str, secret: &str) {
        let sidecar = SidecarRecord {
            id: id.into(),
            region: "local".into(),
            secret: StoredSecret::seal(&key(), SecretOwner::Sidecar(id), secret),
            created_at: rfc3339_ms(NOW),
            revoked_at: None,
        };
        block_on(put_json(kv, &keys::sidecar(id), &sidecar, None)).unwrap();
    }

    /// The dispatch queue reports that `sidecar` acked (holds) `attempt` of the call.
    fn report_dialing(calls: &TestCalls, seq: u64, sidecar: &str, attempt: u32) {
        use crate::calls::store::{CallStoreRequest, CallStoreTransport, Report, ReportItem};
        use crate::dispatch::queue::{CallChange, CallUpdate};
        let mut call = calls.rows(TENANT).call(CALL).unwrap().unwrap();
        call.status = voxline_shared::CallStatus::Queued;
        calls.rows(TENANT).put_call(&call).unwrap();
        let update = CallUpdate {
            call_id: CALL.into(),
            tenant_id: TENANT.into(),
            at_ms: NOW,
            change: CallChange::Dialing {
                sidecar_id: sidecar.into(),
                attempt,
            },
        };
        block_on(calls.send(
            TENANT,
            CallStoreRequest::Reports {
                region: "local".into(),
                reports: vec![Report {
                    seq,
                    item: ReportItem::Call { update },
                }],
            },
        ))
        .unwrap();
        // The attempt was answered and ended since.
        let mut call = calls.rows(TENANT).call(CALL).unwrap().unwrap();
        call.status = voxline_shared::CallStatus::Completed;
        calls.rows(TENANT).put_call(&call).unwrap();
    }

    /// A recorded call whose first attempt sidecar `sc-1` held.
    fn store() -> (MemoryKv, TestCalls, CallRecord) {
        let calls = TestCalls::new(|| SqlCallRows::open(LimitedSqlite::new()).unwrap());
        let kv = MemoryKv::default();
        put_sidecar(&kv, "sc-1", "scs_secret");
        let mut call = test_call(voxline_shared::CallStatus::Completed);
        call.id = CALL.into();
        call.record = true;
        call.attempts = 1;
        calls.rows(TENANT).put_call(&call).unwrap();
        report_dialing(&calls, 1, "sc-1", 1);
        let call = calls.rows(TENANT).call(CALL).unwrap().unwrap();
        (kv, calls, call)
    }

    fn manifest(call: &CallRecord) -> RecordingManifest {
        RecordingManifest {
            protocol_version: PROTOCOL_VERSION,
            sidecar_id: "sc-1".into(),
            tenant_id: TENANT.into(),
            call_id: call.id.clone(),
            attempt: 1,
            content_type: CONTENT_TYPE.into(),
            bytes: 32_044,
            sha256: SHA.into(),
            duration_ms: 1_000,
        }
    }

    /// An upload by sidecar `sc-1` with a fresh nonce.
    fn admit(
        kv: &MemoryKv,
        calls: &TestCalls,
        m: &RecordingManifest,
        secret: &str,
    ) -> Result<AdmittedUpload, ApiError> {
        let nonce = hex::encode(crate::ids::random_bytes::<16>());
        admit_as(kv, calls, m, "sc-1", secret, &nonce)
    }

    fn admit_as(
        kv: &MemoryKv,
        calls: &TestCalls,
        m: &RecordingManifest,
        sidecar: &str,
        secret: &str,
        nonce: &str,
    ) -> Result<AdmittedUpload, ApiError> {
        let raw = serde_json::to_string(m).unwrap();
        let h = signing::signed_headers(
            sidecar,
            secret.as_bytes(),
            NOW / 1000,
            nonce,
            signing::Target::post(sidecar_link::paths::RECORDING),
            raw.as_bytes(),
        );
        let headers = SignedHeaders::from_lookup(|name| {
            h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
        });
        calls.dispatch_queues.now_ms.set(NOW);
        block_on(admit_upload(
            kv,
            Some(&key()),
            calls,
            &calls.dispatch_queues,
            &headers,
            Some(&raw),
            Some(m.bytes),
            NOW,
        ))
    }

    fn saved(calls: &TestCalls, call_id: &str) -> RecordingInfo {
        crate::calls::store::recording(&*calls.rows(TENANT), call_id)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_signed_manifest_for_a_recorded_call_is_admitted_and_saved_once() {
        let (kv, calls, call) = store();
        let m = manifest(&call);
        let up = admit(&kv, &calls, &m, "scs_secret").expect("admitted");
        assert_eq!(
            up.object_key,
            format!("recordings/{}/{}/1.wav", m.tenant_id, call.id)
        );
        assert_eq!(up.sha256.len(), 32);
        let outbox = Outbox::default();
        crate::webhooks::delivery::tests_support::endpoint(&kv, TENANT, &["recording.saved"]);
        let r = block_on(record_saved(&calls, &up, NOW)).unwrap();
        block_on(calls.drain(&kv, &outbox)).unwrap();
        let jobs = outbox.take();
        assert_eq!(jobs.len(), 1);
        let p: Value = serde_json::from_str(&jobs[0].payload).unwrap();
        assert_eq!(
            (
                p["type"].as_str(),
                p["data"]["sha256"].as_str(),
                p["data"]["attempt"].as_u64()
            ),
            (Some("recording.saved"), Some(SHA), Some(1))
        );
        assert_eq!(
            (r.status, r.body_json()["bytes"].as_u64()),
            (200, Some(32_044))
        );
        let info = saved(&calls, &call.id);
        assert_eq!(
            (info.attempt, info.bytes, info.sha256.as_str()),
            (1, 32_044, SHA)
        );
        // The same upload again: the same answer, nothing new stored.
        calls.now_ms.set(NOW + 5);
        assert_eq!(
            block_on(record_saved(&calls, &up, NOW + 5)).unwrap().status,
            200
        );
        assert_eq!(saved(&calls, &call.id).saved_at, info.saved_at);
        block_on(calls.drain(&kv, &outbox)).unwrap();
        assert!(outbox.take().is_empty(), "no second recording.saved");
    }

    #[test]
    fn bad_uploads_are_refused_with_their_codes() {
        let (kv, calls, call) = store();
        let code = |m: &RecordingManifest, secret: &str| {
            admit(&kv, &calls, m, secret).map(|_| ()).unwrap_err().code
        };
        let m = manifest(&call);
        assert_eq!(code(&m, "scs_wrong"), ErrorCode::InvalidSignature);
        assert_eq!(
            code(
                &RecordingManifest {
                    bytes: 10,
                    ..m.clone()
                },
                "scs_secret"
            ),
            ErrorCode::InvalidRecordingManifest
        );
        assert_eq!(
            code(
                &RecordingManifest {
                    bytes: sidecar_link::MAX_RECORDING_BYTES + 1,
                    ..m.clone()
                },
                "scs_secret"
            ),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            code(
                &RecordingManifest {
                    sha256: SHA.to_uppercase(),
                    ..m.clone()
                },
                "scs_secret"
            ),
            ErrorCode::InvalidRecordingManifest
        );
        assert_eq!(
            code(
                &RecordingManifest {
                    content_type: "audio/mpeg".into(),
                    ..m.clone()
                },
                "scs_secret"
            ),
            ErrorCode::InvalidRecordingManifest
        );
        assert_eq!(
            code(
                &RecordingManifest {
                    sidecar_id: "sc-2".into(),
                    ..m.clone()
                },
                "scs_secret"
            ),
            ErrorCode::InvalidRecordingManifest
        );
        assert_eq!(
            code(
                &RecordingManifest {
                    attempt: 2,
                    ..m.clone()
                },
                "scs_secret"
            ),
            ErrorCode::InvalidRecordingManifest
        );
        let other = format!("call_{}", "e".repeat(20));
        assert_eq!(
            code(
                &RecordingManifest {
                    call_id: other,
                    ..m.clone()
                },
                "scs_secret"
            ),
            ErrorCode::CallNotFound
        );
        // A call placed without record: true.
        calls
            .rows(TENANT)
            .put_call(&CallRecord {
                record: false,
                ..call.clone()
            })
            .unwrap();
        assert_eq!(code(&m, "scs_secret"), ErrorCode::RecordingNotRequested);
        // Another region's call.
        calls
            .rows(TENANT)
            .put_call(&CallRecord {
                region: "eu".into(),
                ..call.clone()
            })
            .unwrap();
        assert_eq!(code(&m, "scs_secret"), ErrorCode::CallNotFound);
        // No manifest at all.
        let headers = SignedHeaders::from_lookup(|_| None);
        assert_eq!(
            block_on(admit_upload(
                &kv,
                Some(&key()),
                &calls,
                &calls.dispatch_queues,
                &headers,
                None,
                None,
                NOW
            ))
            .unwrap_err()
            .code,
            ErrorCode::InvalidRecordingManifest
        );
    }

    #[test]
    fn only_the_sidecar_that_held_the_attempt_uploads_it_and_each_nonce_once() {
        let (kv, calls, call) = store();
        put_sidecar(&kv, "sc-2", "scs_other");
        let m = manifest(&call);
        // Another sidecar of the same region, signing correctly as itself.
        let as_other = RecordingManifest {
            sidecar_id: "sc-2".into(),
            ..m.clone()
        };
        let refused = admit_as(
            &kv,
            &calls,
            &as_other,
            "sc-2",
            "scs_other",
            "aa".repeat(16).as_str(),
        )
        .unwrap_err();
        assert_eq!(
            (refused.code, refused.status()),
            (ErrorCode::RecordingNotHeld, 409)
        );
        // The holder's upload is admitted once; the same signed request again is a replay.
        let nonce = "bb".repeat(16);
        assert!(admit_as(&kv, &calls, &m, "sc-1", "scs_secret", &nonce).is_ok());
        let replay = admit_as(&kv, &calls, &m, "sc-1", "scs_secret", &nonce).unwrap_err();
        assert_eq!(
            (replay.code, replay.status()),
            (ErrorCode::ReplayedRequest, 401)
        );
        // The nonce store is the region's, shared with the other link requests.
        assert!(!calls
            .dispatch_queues
            .queues
            .borrow_mut()
            .get_mut("local")
            .unwrap()
            .remember_nonce(&nonce, NOW, 300_000));
        // A retry with a fresh nonce (what the sidecar sends) goes through.
        assert!(admit(&kv, &calls, &m, "scs_secret").is_ok());
        // A later attempt held by sc-2: sc-2 uploads that one, not sc-1's.
        report_dialing(&calls, 2, "sc-2", 2);
        let second = RecordingManifest {
            attempt: 2,
            ..as_other.clone()
        };
        assert!(admit_as(&kv, &calls, &second, "sc-2", "scs_other", &"cc".repeat(16)).is_ok());
        assert_eq!(
            admit(
                &kv,
                &calls,
                &RecordingManifest {
                    attempt: 2,
                    ..m.clone()
                },
                "scs_secret"
            )
            .unwrap_err()
            .code,
            ErrorCode::RecordingNotHeld
        );
        assert!(
            admit(&kv, &calls, &m, "scs_secret").is_ok(),
            "sc-1 still uploads attempt 1"
        );
    }

    #[test]
    fn an_older_attempt_never_replaces_a_newer_recording() {
        let (kv, calls, _) = store();
        report_dialing(&calls, 2, "sc-1", 2);
        let call = calls.rows(TENANT).call(CALL).unwrap().unwrap();
        let second = admit(
            &kv,
            &calls,
            &RecordingManifest {
                attempt: 2,
                ..manifest(&call)
            },
            "scs_secret",
        )
        .unwrap();
        let first = admit(&kv, &calls, &manifest(&call), "scs_secret").unwrap();
        block_on(record_saved(&calls, &second, NOW)).unwrap();
        block_on(record_saved(&calls, &first, NOW + 1)).unwrap();
        assert_eq!(saved(&calls, &call.id).attempt, 2);
    }
}
