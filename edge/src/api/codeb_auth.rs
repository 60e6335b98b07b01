//! Who is calling CodeB's paths: the token endpoint (`POST /oidc.ashx/token`,
//! the OAuth 2.0 password grant for tenant users) and the bearer check of
//! the REST paths ([`authenticate`]: a native `ak_` API key or an access
//! token `cbt_...` from the token endpoint). CodeB isolates tenants per host:
//! the request's host names the tenant (`Tenant.codeb_host`, KV index
//! `codebhost/{host}`), and a credential works only at its tenant's host.

use crate::api::auth::{authenticate_tenant, bearer, client_ip};
use crate::api::codeb_users::tenant_at_host;
use crate::dialects::codeb::{
    self, CodebError, TokenError, TOKEN_LIFETIME_SECONDS, TOKEN_RESPONSE_HEADERS,
};
use crate::dialects::codeb_users;
use crate::dispatch::port::DispatchQueues;
use crate::error::ErrorCode;
use crate::http::{ApiRequest, ApiResponse};
use crate::ids;
use crate::model::{keys, CodebUser, Tenant};
use crate::password;
use crate::store::{get_json, Kv};
use crate::traffic::{self, tokens::IssueToken, RateLimit, RateVerdict};

use crate::api::env::Env;

/// Who called a CodeB REST path, and with what.
#[derive(Debug, Clone, PartialEq)]
pub struct CodebPrincipal {
    pub tenant: Tenant,
    pub caller: CodebCaller,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodebCaller {
    /// A native API key (`ak_...`), by its id.
    ApiKey { key_id: String },
    /// A tenant user, through an access token from `/oidc.ashx/token`.
    User { username: String },
}

impl CodebPrincipal {
    /// The id the per-credential rate limit counts under (`key:{this}`,
    /// `api::auth::key_and_ip_checks`): the API key's id, or the user's
    /// name behind a prefix no key id has (all of a user's tokens share it).
    pub fn limit_key_id(&self) -> String {
        match &self.caller {
            CodebCaller::ApiKey { key_id } => key_id.clone(),
            CodebCaller::User { username } => format!("codeb-user:{username}"),
        }
    }
}

/// The host the request was sent to (the Worker glue passes the URL's as
/// `host`), normalised as `codeb_host` is; `None` when absent or malformed.
pub(crate) fn request_host(req: &ApiRequest) -> Option<String> {
    req.header("host").and_then(codeb_users::normalize_host)
}

/// A credential that failed, counted against the client address like a
/// wrong native API key: `Unauthorized`, or `RateLimited` once the address
/// has spent its failures (as on the other dialects' paths).
async fn failed_credential<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> CodebError {
    CodebError::from(&crate::api::dialects::failed_credential(env, req).await)
}

/// Whether a credential of `tenant` may be used at `host`: at its
/// `codeb_host` when it has one; else (an API key of a tenant without one)
/// at any host that serves no other tenant.
async fn host_allows<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    host: Option<&str>,
) -> Result<bool, CodebError> {
    if let Some(own) = &tenant.codeb_host {
        return Ok(host == Some(own.as_str()));
    }
    let Some(host) = host else {
        return Ok(true);
    };
    let other = tenant_at_host(env, host)
        .await
        .map_err(|_| CodebError::Internal)?;
    Ok(other.is_none_or(|t| t.id == tenant.id))
}

/// The bearer check of CodeB's REST paths. `Authorization: Bearer ak_...`
/// is a native API key (same lookup and wrong-key throttling as `/v1`; a
/// key minted with `require_signature` is refused: CodeB clients do not
/// sign); `Bearer cbt_...` an access token, checked in its tenant's
/// `RateLimiter` object. A credential used at another tenant's host is
/// `Unauthorized` (it is scoped to the tenant host that issued it); a
/// disabled tenant or one with `api_access` off is `Forbidden`.
// Called by the REST endpoints (`api::codeb`) once they are wired.
pub(crate) async fn authenticate<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<CodebPrincipal, CodebError> {
    let token = bearer(req).map_err(|_| CodebError::Unauthorized)?;
    let host = request_host(req);
    if token.starts_with("ak_") {
        let (tenant, auth) = match authenticate_tenant(env, req).await {
            Ok(found) => found,
            Err(e) if e.code == ErrorCode::InvalidCredentials => {
                return Err(failed_credential(env, req).await)
            }
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::TenantDisabled | ErrorCode::ApiAccessDisabled
                ) =>
            {
                return Err(CodebError::Forbidden)
            }
            Err(_) => return Err(CodebError::Internal),
        };
        if auth.signing_secret.is_some() || !host_allows(env, &tenant, host.as_deref()).await? {
            return Err(CodebError::Unauthorized);
        }
        return Ok(CodebPrincipal {
            tenant,
            caller: CodebCaller::ApiKey {
                key_id: auth.key_id,
            },
        });
    }
    let Some(tenant_id) = codeb_users::token_tenant(token) else {
        return Err(failed_credential(env, req).await);
    };
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(tenant_id))
        .await
        .map_err(|_| CodebError::Internal)?;
    let Some(tenant) = tenant else {
        return Err(failed_credential(env, req).await);
    };
    // A token works only at the host that issued it.
    if tenant.codeb_host.is_none() || tenant.codeb_host != host {
        return Err(CodebError::Unauthorized);
    }
    let username = env
        .traffic
        .check_token(&tenant.id, &ids::hash_api_key(token))
        .await
        .map_err(|_| CodebError::Internal)?;
    let Some(username) = username else {
        return Err(failed_credential(env, req).await);
    };
    if tenant.disabled || !tenant.api_access {
        return Err(CodebError::Forbidden);
    }
    Ok(CodebPrincipal {
        tenant,
        caller: CodebCaller::User { username },
    })
}

// ---- the token endpoint ----

/// RFC 6749 §5.1/5.2 answers carry `Cache-Control: no-store`, errors too.
fn token_answer(status: u16, body: String) -> ApiResponse {
    let mut resp = ApiResponse::json_text(status, body);
    for (name, value) in TOKEN_RESPONSE_HEADERS {
        resp = resp.with_header(name, value);
    }
    resp
}

fn token_error(e: &TokenError) -> ApiResponse {
    let (status, code, _) = e.parts();
    let mut resp = token_answer(status, e.body());
    if let TokenError::SlowDown {
        retry_after_seconds,
    } = e
    {
        resp = resp.with_header("Retry-After", retry_after_seconds.to_string());
    }
    resp.error_code = Some(code);
    resp
}

/// `POST /oidc.ashx/token`.
pub(crate) async fn token<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> ApiResponse {
    if req.method != "POST" {
        let e = CodebError::MethodNotAllowed { allow: "POST" };
        let mut resp = ApiResponse::json_text(e.status(), e.body());
        for (name, value) in e.headers() {
            resp = resp.with_header(name, value);
        }
        resp.error_code = Some(e.parts().1);
        return resp;
    }
    match issue(env, req).await {
        Ok(resp) => resp,
        Err(e) => token_error(&e),
    }
}

/// The throttles a login counts against: the client address's (every wrong
/// credential, as for API keys) and the user's (`traffic::LOGIN_FAILURES`).
fn login_scopes<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant_id: &str,
    username: Option<&str>,
) -> Vec<(String, RateLimit)> {
    let mut scopes = vec![(
        traffic::auth_failure_scope(client_ip(req)),
        env.auth_failures,
    )];
    if let Some(u) = username {
        scopes.push((
            traffic::login_failure_scope(tenant_id, u),
            traffic::LOGIN_FAILURES,
        ));
    }
    scopes
}

fn slow_down(v: &RateVerdict) -> TokenError {
    TokenError::SlowDown {
        retry_after_seconds: v.reset_seconds.max(1),
    }
}

async fn issue<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse, TokenError> {
    let asked = codeb::read_token_request(req.content_type.as_deref(), &req.body)?;
    let unknown_host = || TokenError::InvalidRequest("No tenant is served at this host".into());
    let host = request_host(req).ok_or_else(unknown_host)?;
    let tenant = tenant_at_host(env, &host)
        .await
        .map_err(|_| TokenError::ServerError)?
        .ok_or_else(unknown_host)?;
    if tenant.disabled || !tenant.api_access {
        return Err(TokenError::InvalidGrant);
    }
    // A name that cannot be a user's is looked up nowhere, but still costs a
    // hash and counts against the address.
    let username = codeb_users::normalize_username(&asked.username);
    let scopes = login_scopes(env, req, &tenant.id, username.as_deref());
    // Before any hashing: an address or a user over its failures waits.
    for (scope, limit) in &scopes {
        let v = env
            .traffic
            .auth_attempt(scope, *limit, false)
            .await
            .map_err(|_| TokenError::ServerError)?;
        if !v.allowed {
            return Err(slow_down(&v));
        }
    }
    let user: Option<CodebUser> = match &username {
        Some(u) => get_json(env.kv, &keys::codeb_user(&tenant.id, u))
            .await
            .map_err(|_| TokenError::ServerError)?,
        None => None,
    };
    // An unknown user costs one verification too (of a hash nobody knows the password of).
    let phc = user
        .as_ref()
        .map_or(password::DUMMY_HASH, |u| u.password_hash.as_str());
    let password_ok = password::verify(asked.password.expose(), phc);
    let Some(user) = user.filter(|u| password_ok && !u.disabled) else {
        for (scope, limit) in &scopes {
            match env.traffic.auth_attempt(scope, *limit, true).await {
                Ok(v) if !v.allowed => return Err(slow_down(&v)),
                // Counted, or the count failed: the answer is invalid_grant either way.
                _ => {}
            }
        }
        return Err(TokenError::InvalidGrant);
    };
    let token = codeb_users::mint_token(&tenant.id);
    let issued = env
        .traffic
        .issue_token(
            &tenant.id,
            &IssueToken {
                token_hash: ids::hash_api_key(&token),
                username: user.username.clone(),
                credential: password::credential_stamp(&user.password_hash),
                expires_ms: env.now_ms + TOKEN_LIFETIME_SECONDS * 1000,
            },
        )
        .await
        .map_err(|_| TokenError::ServerError)?;
    if !issued {
        // The password checked was a stale copy: changed, disabled or deleted since.
        return Err(TokenError::InvalidGrant);
    }
    Ok(token_answer(
        200,
        codeb::token_body(&token, asked.scope.as_deref()),
    ))
}
