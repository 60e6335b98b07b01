//! A sidecar's request as the Worker receives it: authenticated by its HMAC
//! signature (no bearer token), checked, and forwarded to its region's
//! dispatch queue, where [`crate::dispatch::sidecar_link`] handles it.

use crate::dispatch::port::DispatchQueues;
use crate::dispatch::sidecar_link::{check_transport, parse_message, SidecarEnvelope, SidecarOp};
use crate::engine_keys::{secret_unavailable, SealingKey, SecretOwner};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::limits::MAX_BODY_BYTES;
use crate::model::{keys, SidecarRecord};
use crate::store::{get_json, Kv};
use voxline_shared::signing::{self, SignedHeaders};

/// The signing sidecar, if it exists, is not revoked, and signed `signed`
/// (the body, or a recording upload's manifest) within the window.
pub async fn authenticate_sidecar(
    kv: &impl Kv,
    sealing_key: Option<&SealingKey>,
    headers: &SignedHeaders<'_>,
    target: signing::Target<'_>,
    signed: &[u8],
    now_ms: u64,
) -> Result<SidecarRecord, ApiError> {
    let unknown = || ApiError::new(ErrorCode::InvalidCredentials, "unknown or revoked sidecar");
    let sid = headers
        .sidecar
        .filter(|s| voxline_shared::sidecar_link::is_valid_id(s))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidSignature,
                format!("missing or malformed {}", signing::HEADER_SIDECAR),
            )
        })?;
    let sidecar: SidecarRecord = get_json(kv, &keys::sidecar(sid))
        .await?
        .filter(|s: &SidecarRecord| s.revoked_at.is_none())
        .ok_or_else(unknown)?;
    let secret = sidecar
        .secret
        .open(sealing_key, SecretOwner::Sidecar(&sidecar.id))
        .map_err(secret_unavailable)?;
    signing::verify(
        secret.as_bytes(),
        headers,
        target,
        signed,
        now_ms / 1000,
        signing::DEFAULT_WINDOW_SECONDS,
    )
    .map_err(|e| match e {
        // Not a wrong secret: an old (or newer) signer; its own code, so
        // the sidecar can stop and say so rather than retry forever.
        signing::SignatureError::UnsupportedVersion => {
            ApiError::new(ErrorCode::SignatureVersionUnsupported, e.to_string())
        }
        _ => ApiError::new(
            ErrorCode::InvalidSignature,
            format!("signature refused: {e}"),
        ),
    })?;
    Ok(sidecar)
}

/// The largest body a link request to `path` may have: a post-call
/// transcript's is larger than the others'.
pub fn max_body_bytes(path: &str) -> usize {
    if path == voxline_shared::sidecar_link::paths::TRANSCRIPTS {
        voxline_shared::sidecar_link::MAX_TRANSCRIPT_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

/// A media sidecar's request: authenticated by its HMAC signature (no bearer
/// token), checked, and forwarded to its region's dispatch queue, which also
/// refuses replayed nonces.
pub async fn sidecar_request<D: DispatchQueues>(
    kv: &impl Kv,
    queues: &D,
    sealing_key: Option<&SealingKey>,
    now_ms: u64,
    dev_mode: bool,
    req: &ApiRequest,
    op: SidecarOp,
) -> Result<ApiResponse, ApiError> {
    check_transport(&req.scheme, dev_mode)?;
    // Before the signature: the glue never buffers an oversized body, so its
    // signature cannot match, and a 401 would make the sidecar re-register
    // and resend the same batch forever. 413 says what is wrong.
    let declared: Option<usize> = req
        .header("content-length")
        .and_then(|v| v.trim().parse().ok());
    let size = declared.unwrap_or(0).max(req.body.len());
    let limit = max_body_bytes(&req.path);
    if size > limit {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is {size} bytes; the limit is {limit}"),
        ));
    }
    let headers = SignedHeaders::from_lookup(|name| req.header(name));
    let path_and_query = signing::path_and_query(&req.path, &req.query);
    let target = signing::Target {
        method: &req.method,
        path: &path_and_query,
    };
    let sidecar =
        authenticate_sidecar(kv, sealing_key, &headers, target, &req.body, now_ms).await?;
    let sid = sidecar.id.as_str();
    let message = parse_message(op, &req.body, sid)?;
    if let Some(region) = message.region() {
        if region != sidecar.region {
            return Err(ApiError::new(
                ErrorCode::RegionMismatch,
                format!(
                    "sidecar {sid} belongs to region '{}', not '{region}'",
                    sidecar.region
                ),
            ));
        }
    }
    let envelope = SidecarEnvelope {
        sidecar_id: sid.to_string(),
        nonce: headers.nonce.unwrap_or_default().to_string(),
        message,
    };
    let (status, reply) = queues.sidecar(&sidecar.region, &envelope).await?;
    let mut resp = ApiResponse::json(status, &reply);
    resp.error_code = reply["error"]["code"]
        .as_str()
        .and_then(|c| ErrorCode::ALL.iter().find(|k| k.as_str() == c))
        .map(|k| k.as_str());
    Ok(resp)
}
