//! wasm32-only adapter between workers-rs and [`crate::api`]. It parses the
//! HTTP request into plain values, supplies KV / clock / secrets, and writes
//! one access-log line per request (never headers, never bodies).

mod call_store;
mod dispatch_queue;
mod rate_limiter;
mod recordings;
mod webhook_queue;

use crate::api::validate::MAX_BODY_BYTES;
use crate::api::{self, Env as ServiceEnv};
use crate::http::ApiRequest;
use crate::store::{Kv, KvEntry, KvPage, StoreError};
use serde_json::Value;
use worker::{event, kv::KvStore, Context, Env, Headers, Request, Response, Result};

pub(crate) const KV_BINDING: &str = "VOXLINE_KV";
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

pub(crate) struct WorkersKv(pub KvStore);

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Kv for WorkersKv {
    async fn get(&self, key: &str) -> std::result::Result<Option<String>, StoreError> {
        self.0.get(key).text().await.map_err(unavailable)
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        metadata: Option<&Value>,
    ) -> std::result::Result<(), StoreError> {
        let mut put = self.0.put(key, value).map_err(unavailable)?;
        if let Some(m) = metadata {
            put = put.metadata(m).map_err(unavailable)?;
        }
        put.execute().await.map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> std::result::Result<(), StoreError> {
        self.0.delete(key).await.map_err(unavailable)
    }

    async fn list(
        &self,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> std::result::Result<KvPage, StoreError> {
        let mut list = self
            .0
            .list()
            .prefix(prefix.to_string())
            .limit(u64::from(limit));
        if let Some(c) = cursor {
            list = list.cursor(c.to_string());
        }
        let page = list.execute().await.map_err(unavailable)?;
        Ok(KvPage {
            keys: page
                .keys
                .into_iter()
                .map(|k| KvEntry {
                    name: k.name,
                    metadata: k.metadata,
                })
                .collect(),
            cursor: if page.list_complete {
                None
            } else {
                page.cursor.filter(|c| !c.is_empty())
            },
        })
    }
}

pub(crate) fn var_u64(env: &Env, name: &str) -> Option<u64> {
    secret_or_var(env, name).and_then(|v| v.trim().parse().ok())
}

fn secret_or_var(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
}

/// `VOXLINE_ENV=development`: loopback webhooks, plain-http sidecar link.
pub(crate) fn dev_mode(env: &Env) -> bool {
    secret_or_var(env, "VOXLINE_ENV").is_some_and(|v| v == "development")
}

/// `VOXLINE_SEALING_KEY`, when set and well-formed (a bad one is logged and
/// treated as absent: engine keys are refused rather than sealed wrongly).
pub(crate) fn sealing_key(env: &Env) -> Option<crate::engine_keys::SealingKey> {
    let text = secret_or_var(env, "VOXLINE_SEALING_KEY")?;
    crate::engine_keys::SealingKey::from_secret(&text)
        .map_err(|e| worker::console_log!("VOXLINE_SEALING_KEY ignored: {e}"))
        .ok()
}

/// `AUTH_FAILURE_LIMIT` / `AUTH_FAILURE_WINDOW_SECONDS`, each defaulting to
/// `traffic::AUTH_FAILURES` (out-of-range values too).
fn auth_failures(env: &Env) -> crate::traffic::RateLimit {
    let d = crate::traffic::AUTH_FAILURES;
    let within = |v: Option<u64>, max: u32, default: u32| {
        v.filter(|n| (1..=u64::from(max)).contains(n))
            .map_or(default, |n| n as u32)
    };
    crate::traffic::RateLimit {
        limit: within(
            var_u64(env, "AUTH_FAILURE_LIMIT"),
            crate::traffic::LIMIT_MAX,
            d.limit,
        ),
        window_seconds: within(
            var_u64(env, "AUTH_FAILURE_WINDOW_SECONDS"),
            crate::traffic::WINDOW_SECONDS_MAX,
            d.window_seconds,
        ),
    }
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let started = worker::Date::now().as_millis();
    let url = req.url()?;
    // The method as the client sent it: workers-rs maps methods it does not
    // know (QUERY, PROPFIND, PURGE, ...) to GET, which would serve them as
    // GETs; the service answers those 405 with Allow.
    let method = req.inner().method();
    // The one body that is not JSON and is streamed, never buffered.
    if method == "POST" && url.path() == voxline_shared::protocol::paths::RECORDING {
        return crate::glue::recordings::upload(req, &env, started).await;
    }
    let headers = req.headers().clone();
    let declared_len: Option<usize> = headers
        .get("content-length")?
        .and_then(|v| v.trim().parse().ok());
    // Refuse oversized bodies before buffering them; the service re-checks
    // the real length (chunked uploads carry no Content-Length).
    let body = match declared_len {
        Some(n) if n > MAX_BODY_BYTES => vec![0; MAX_BODY_BYTES + 1],
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
                name.starts_with("x-voxline-") || PASSED_HEADERS.contains(&name.as_str())
            })
            .collect(),
    };
    let admin_token = secret_or_var(&env, "ADMIN_TOKEN");
    let dev_mode = dev_mode(&env);
    let default_region =
        secret_or_var(&env, "DEFAULT_REGION").unwrap_or_else(|| "local".to_string());
    let kv = WorkersKv(env.kv(KV_BINDING)?);
    let dispatch = crate::glue::dispatch_queue::WorkersDispatcher(&env);
    let traffic = crate::glue::rate_limiter::WorkersTraffic(&env);
    let calls = crate::glue::call_store::WorkersCalls(&env);
    let outbox = crate::webhooks::Outbox::default();
    let sealing_key = sealing_key(&env);
    let senv = ServiceEnv {
        kv: &kv,
        dispatch: &dispatch,
        now_ms: started,
        admin_token: admin_token.as_deref(),
        dev_mode,
        default_region: &default_region,
        traffic: &traffic,
        calls: &calls,
        outbox: &outbox,
        sealing_key: sealing_key.as_ref(),
        auth_failures: auth_failures(&env),
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
