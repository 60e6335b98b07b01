//! Who is asking: tenant API keys (bearer tokens, optionally signed requests),
//! the admin token, and the failed-credential count per client address.

use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self};
use crate::model::{keys, ApiKeyAuth, Tenant};
use crate::store::{get_json, Kv};
use crate::traffic::{self};

use crate::api::env::{Env, Result};

pub(crate) fn bearer(req: &ApiRequest) -> Result<&str> {
    let header = req
        .authorization
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let Some(header) = header else {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "send Authorization: Bearer <key>",
        ));
    };
    match header.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "the Authorization header must be 'Bearer <key>'",
        )),
    }
}

pub(crate) fn invalid_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "the API key is unknown or revoked",
    )
}

/// Resolves the API key to its tenant. Only the key's SHA-256 touches storage.
pub(crate) async fn authenticate_tenant<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<(Tenant, ApiKeyAuth)> {
    let token = bearer(req)?;
    if !token.starts_with("ak_") || token.len() > 128 {
        return Err(invalid_key());
    }
    let auth: ApiKeyAuth = get_json(env.kv, &keys::api_key_by_hash(&ids::hash_api_key(token)))
        .await?
        .ok_or_else(invalid_key)?;
    let tenant: Tenant = get_json(env.kv, &keys::tenant(&auth.tenant_id))
        .await?
        .ok_or_else(invalid_key)?;
    if tenant.disabled {
        return Err(ApiError::new(
            ErrorCode::TenantDisabled,
            "this tenant is disabled",
        ));
    }
    if !tenant.api_access {
        return Err(ApiError::new(
            ErrorCode::ApiAccessDisabled,
            "API access is switched off for this tenant (api_access: false)",
        ));
    }
    Ok((tenant, auth))
}

/// 429 for an address whose credential failures are spent, with `Retry-After`
/// (and the `X-RateLimit-*` of that limit, like any 429 of a limit).
pub(crate) fn too_many_failed_attempts(v: &traffic::RateVerdict) -> ApiResponse {
    let e = ApiError::new(
        ErrorCode::TooManyFailedAttempts,
        format!(
            "more than {} requests with wrong credentials from this address; retry after {} s",
            v.limit, v.reset_seconds
        ),
    );
    let mut resp = ApiResponse::error(&e);
    // X-RateLimit-* of the failure limit, and Retry-After: its window's end.
    resp.headers.extend(v.headers());
    resp
}

/// An API key that failed: counted against the client address, and once the
/// address has spent its failures, answered 429 instead of 401. Only failures
/// pay this round trip: a valid key's request is never held up by it (and an
/// API key, 192 random bits, cannot be guessed, so a blocked address with a
/// valid key may go on).
pub(crate) async fn failed_api_key<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    e: ApiError,
) -> Result<ApiResponse> {
    let scope = traffic::auth_failure_scope(client_ip(req));
    match env
        .traffic
        .auth_attempt(&scope, env.auth_failures, true)
        .await
    {
        Ok(v) if !v.allowed => Ok(too_many_failed_attempts(&v)),
        // Counted, or the count failed: the answer is the 401 either way.
        _ => Err(e),
    }
}

pub(crate) fn authenticate_admin<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<()> {
    let token = bearer(req)?;
    match env.admin_token {
        Some(expected) if !expected.is_empty() && ids::constant_time_eq(token, expected) => Ok(()),
        Some(expected) if !expected.is_empty() => Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the admin token is wrong",
        )),
        _ => Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the admin API is closed: no ADMIN_TOKEN secret is set",
        )),
    }
}

// ---- calls ----

// ---- traffic control: rate limits and idempotency around every /v1 call route ----

/// Client IP for the per-IP limit: Cloudflare's `CF-Connecting-IP`; a fixed
/// loopback address when absent (local `wrangler dev`).
pub(crate) fn client_ip(req: &ApiRequest) -> &str {
    req.header("cf-connecting-ip")
        .map(str::trim)
        .filter(|ip| !ip.is_empty() && ip.len() <= 64)
        .unwrap_or("127.0.0.1")
}

/// The limits every authenticated request counts against: its credential's
/// (`key:<id>`, an API key or a dialect credential) and its address's.
pub(crate) fn key_and_ip_checks(
    limits: &traffic::RateLimits,
    key_id: &str,
    req: &ApiRequest,
) -> Vec<traffic::Check> {
    vec![
        traffic::Check {
            scope: format!("key:{key_id}"),
            limit: limits.per_key,
            new_work_only: false,
        },
        traffic::Check {
            scope: format!("ip:{}", client_ip(req)),
            limit: limits.per_ip,
            new_work_only: false,
        },
    ]
}
