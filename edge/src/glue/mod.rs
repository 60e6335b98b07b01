//! wasm32-only adapter between workers-rs and [`crate::api`]. It parses the
//! HTTP request into plain values, supplies KV / clock / secrets, and writes
//! one access-log line per request (never headers, never bodies).

mod call_store;
mod campaign;
mod directory;
mod dispatch_queue;
mod env;
mod mail;
mod rate_limiter;
mod recordings;
mod stubs;
mod tool_http;
mod webhook_queue;

use crate::api;
use crate::api::env::Env as ServiceEnv;
use crate::glue::env::{
    auth_failures, dev_mode, sealing_key, secret_or_var, WorkersKv, KV_BINDING,
};
use crate::http::ApiRequest;
use crate::limits::MAX_BODY_BYTES;
use worker::{event, Context, Env, Headers, Request, Response, Result};

/// Request headers the service reads besides `x-voxline-*` (traffic control).
/// `content-length`: the sidecar link answers 413 for a declared oversize body
/// (never buffered here) before checking its signature.
const PASSED_HEADERS: &[&str] = &[
    "accept",
    "cf-connecting-ip",
    "content-length",
    "idempotency-key",
    "x-signature",
];

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let started = worker::Date::now().as_millis();
    let url = req.url()?;
    // The method as the client sent it: workers-rs maps methods it does not
    // know (QUERY, PROPFIND, PURGE, ...) to GET, which would serve them as
    // GETs; the service answers those 405 with Allow.
    let method = req.inner().method();
    // The one body that is not JSON and is streamed, never buffered.
    if method == "POST" && url.path() == voxline_shared::sidecar_link::paths::RECORDING {
        return crate::glue::recordings::upload(req, &env, started).await;
    }
    let headers = req.headers().clone();
    let declared_len: Option<usize> = headers
        .get("content-length")?
        .and_then(|v| v.trim().parse().ok());
    // Refuse oversized bodies before buffering them; the service re-checks
    // the real length (chunked uploads carry no Content-Length). A campaign's
    // contact list may be larger than any other body.
    let max_body = if method == "POST" && url.path() == "/v1/campaigns" {
        crate::limits::MAX_CAMPAIGN_BODY_BYTES
    } else if url.path() == voxline_shared::sidecar_link::paths::TRANSCRIPTS {
        crate::dispatch::sidecar_request::max_body_bytes(url.path())
    } else {
        MAX_BODY_BYTES
    };
    let body = match declared_len {
        Some(n) if n > max_body => vec![0; max_body + 1],
        _ => match req.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                // A body we could not read is never treated as empty.
                let err = crate::error::ApiError::new(
                    crate::error::ErrorCode::InvalidJson,
                    format!("the request body could not be read: {e}"),
                );
                return Ok(Response::ok(err.to_json().to_string())?.with_status(err.status()));
            }
        },
    };
    let api_req = ApiRequest {
        method,
        scheme: url.scheme().to_string(),
        path: url.path().to_string(),
        query: url.query().unwrap_or("").to_string(),
        content_type: headers.get("content-type")?,
        authorization: headers.get("authorization")?,
        body,
        headers: headers
            .entries()
            .filter(|(name, _)| {
                name.starts_with("x-voxline-")
                    || PASSED_HEADERS.contains(&name.as_str())
                    || crate::dialects::REQUEST_HEADERS.contains(&name.as_str())
            })
            // The host the request was sent to, as the URL has it (lowercase,
            // default port left out): CodeB serves one tenant per host.
            .chain(url.host_str().map(|host| {
                let host = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                };
                ("host".to_string(), host)
            }))
            .collect(),
    };
    let admin_token = secret_or_var(&env, "ADMIN_TOKEN");
    let dev_mode = dev_mode(&env);
    let default_region =
        secret_or_var(&env, "DEFAULT_REGION").unwrap_or_else(|| "local".to_string());
    let kv = WorkersKv(env.kv(KV_BINDING)?);
    let dispatch_queues = crate::glue::stubs::WorkersDispatchQueues(&env);
    let traffic = crate::glue::stubs::WorkersTraffic(&env);
    let calls = crate::glue::stubs::WorkersCalls(&env);
    let directory = crate::glue::stubs::WorkersDirectory(&env);
    let outbox = crate::webhooks::delivery::Outbox::default();
    let sealing_key = sealing_key(&env);
    let campaigns = crate::glue::stubs::WorkersCampaigns(&env);
    let senv = ServiceEnv {
        kv: &kv,
        dispatch_queues: &dispatch_queues,
        now_ms: started,
        admin_token: admin_token.as_deref(),
        dev_mode,
        default_region: &default_region,
        traffic: &traffic,
        calls: &calls,
        directory: &directory,
        outbox: &outbox,
        sealing_key: sealing_key.as_ref(),
        auth_failures: auth_failures(&env),
        tool_http: &crate::glue::tool_http::FetchToolHttp,
        campaigns: &campaigns,
    };
    let resp = api::handle(&senv, &api_req).await;
    // Webhook jobs go to the queue before the answer, so an accepted change's
    // events are queued by the time the client hears of it.
    crate::glue::webhook_queue::send_jobs(&env, outbox.take()).await;
    worker::console_log!(
        "{} {} {} {} {}ms",
        api_req.method,
        api_req.path,
        resp.status,
        resp.error_code.unwrap_or("-"),
        worker::Date::now().as_millis().saturating_sub(started)
    );
    let out_headers = Headers::new();
    out_headers.set("content-type", "application/json")?;
    out_headers.set("cache-control", "no-store")?;
    for (name, value) in &resp.headers {
        out_headers.set(name, value)?;
    }
    if let Some(key) = &resp.stored_object {
        return crate::glue::recordings::serve_stored(&env, &resp, key, out_headers).await;
    }
    Ok(Response::ok(resp.body)?
        .with_status(resp.status)
        .with_headers(out_headers))
}
