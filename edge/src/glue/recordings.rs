//! wasm32-only: moves recording bytes between the request, R2 and the
//! response. What may be stored, and what it means, is decided in
//! [`crate::calls::recordings`].

use crate::calls::recordings::{self, BUCKET_BINDING};
use crate::error::{ApiError, ErrorCode};
use crate::glue::env::{WorkersKv, KV_BINDING};
use crate::http::ApiResponse;
use voxline_shared::sidecar_link::HEADER_RECORDING_MANIFEST;
use voxline_shared::signing::SignedHeaders;
use worker::{
    console_log, Date, Env, FixedLengthStream, Headers, HttpMetadata, Request, Response,
    ResponseBody, Result,
};

fn json_response(resp: &ApiResponse) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(resp.body.clone())?
        .with_status(resp.status)
        .with_headers(headers))
}

fn log(path: &str, resp: &ApiResponse, started: u64) {
    console_log!(
        "POST {path} {} {} {}ms",
        resp.status,
        resp.error_code.unwrap_or("-"),
        Date::now().as_millis().saturating_sub(started)
    );
}

/// `POST /v1/sidecar/recording`: admit on the signed manifest, stream the body
/// into R2 with its SHA-256 for R2 to verify, then record it.
pub async fn upload(mut req: Request, env: &Env, started: u64) -> Result<Response> {
    let path = req.path();
    let resp = match store_upload(&mut req, env, started).await {
        Ok(r) => r,
        Err(e) => ApiResponse::error(&e),
    };
    log(&path, &resp, started);
    json_response(&resp)
}

async fn store_upload(
    req: &mut Request,
    env: &Env,
    now_ms: u64,
) -> std::result::Result<ApiResponse, ApiError> {
    let internal = |what: &str, e: worker::Error| {
        console_log!("recording upload: {what}: {e}");
        ApiError::new(
            ErrorCode::StorageUnavailable,
            format!("{what} failed; retry with backoff"),
        )
    };
    let scheme = req
        .url()
        .map(|u| u.scheme().to_string())
        .unwrap_or_default();
    crate::dispatch::sidecar_link::check_transport(&scheme, crate::glue::env::dev_mode(env))?;
    let headers = req.headers().clone();
    let owned: Vec<(String, String)> = headers
        .entries()
        .filter(|(k, _)| k.starts_with("x-voxline-"))
        .collect();
    let signed = SignedHeaders::from_lookup(|name| {
        owned
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    });
    let manifest = owned
        .iter()
        .find(|(k, _)| k == HEADER_RECORDING_MANIFEST)
        .map(|(_, v)| v.as_str());
    let declared: Option<u64> = headers
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok());
    let kv = WorkersKv(env.kv(KV_BINDING).map_err(|e| internal("KV", e))?);
    let calls = crate::glue::stubs::WorkersCalls(env);
    let sealing = crate::glue::env::sealing_key(env);
    let dispatch_queues = crate::glue::stubs::WorkersDispatchQueues(env);
    let admitted = recordings::admit_upload(
        &kv,
        sealing.as_ref(),
        &calls,
        &dispatch_queues,
        &signed,
        manifest,
        declared,
        now_ms,
    )
    .await?;
    let bucket = env
        .bucket(BUCKET_BINDING)
        .map_err(|e| internal("the recordings bucket", e))?;
    let bytes = admitted.manifest.bytes;
    // A body of known length streams straight through; a chunked one (no
    // Content-Length) is counted on the way, and a wrong length fails the put.
    let body: worker::Data = match (declared, req.inner().body()) {
        (Some(_), Some(stream)) => stream.into(),
        _ => FixedLengthStream::wrap(
            req.stream().map_err(|e| internal("reading the body", e))?,
            bytes,
        )
        .into(),
    };
    let meta = HttpMetadata {
        content_type: Some(recordings::CONTENT_TYPE.into()),
        ..Default::default()
    };
    let put = bucket
        .put(&admitted.object_key, body)
        .http_metadata(meta)
        .sha256(admitted.sha256.clone())
        .execute()
        .await;
    if let Err(e) = put {
        let msg = e.to_string();
        console_log!(
            "recording upload {}: put failed: {msg}",
            admitted.manifest.call_id
        );
        let lower = msg.to_ascii_lowercase();
        // R2 refuses a body whose digest or length is not the manifest's.
        if lower.contains("sha-256")
            || lower.contains("sha256")
            || lower.contains("digest")
            || lower.contains("length")
            || lower.contains("checksum")
        {
            return Err(ApiError::new(
                ErrorCode::RecordingChecksumMismatch,
                "the body does not match the manifest's bytes and sha256",
            ));
        }
        return Err(ApiError::new(
            ErrorCode::StorageUnavailable,
            "storing the recording failed; retry with backoff",
        ));
    }
    recordings::record_saved(&calls, &admitted, now_ms).await
}

/// Serves an answer whose body is an R2 object (`ApiResponse::stored_object`).
pub async fn serve_stored(
    env: &Env,
    resp: &ApiResponse,
    key: &str,
    headers: Headers,
) -> Result<Response> {
    let object = match env.bucket(BUCKET_BINDING)?.get(key).execute().await {
        Ok(Some(o)) => o,
        Ok(None) => {
            // The call store says stored, R2 has nothing: never a silent empty body.
            console_log!("recording {key}: listed by its call store but missing from R2");
            let e = ApiError::new(
                ErrorCode::InternalError,
                "the recording is listed but its bytes are missing; it has been logged",
            );
            return json_response(&ApiResponse::error(&e));
        }
        Err(e) => {
            console_log!("recording {key}: R2 get failed: {e}");
            let e = ApiError::new(
                ErrorCode::StorageUnavailable,
                "storage did not answer; retry with backoff",
            );
            return json_response(&ApiResponse::error(&e));
        }
    };
    let Some(body) = object.body() else {
        return json_response(&ApiResponse::error(&ApiError::new(
            ErrorCode::InternalError,
            "the recording has no body",
        )));
    };
    // Through a JS FixedLengthStream: a body of known length, so clients get
    // Content-Length rather than a chunked body (a Rust stream loses it).
    let fixed: worker::worker_sys::FixedLengthStream =
        FixedLengthStream::wrap(body.stream()?, object.size()).into();
    let readable = fixed.readable();
    Ok(Response::from_body(ResponseBody::Stream(readable))?
        .with_status(resp.status)
        .with_headers(headers))
}
