//! The admin API of CodeB tenant users (`/admin/tenants/{t}/users`) and of
//! a tenant's `codeb_host` index. Users are config (KV `user/{tenant}/{name}`,
//! the password as an Argon2id PHC string); their access tokens live in the
//! tenant's `RateLimiter` object, which is told first of every change that
//! must end them (a new password, disabling, deleting), so a failed change
//! leaves the old tokens revoked rather than a new password with live ones.

use crate::api::fields::parse_request;
use crate::api::list::{list_response, list_values};
use crate::dialects::codeb_users::{self, PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::rfc3339_ms;
use crate::model::{keys, CodebUser, Tenant};
use crate::password;
use crate::store::{get_json, put_json, Kv};
use serde_json::json;

use crate::api::env::{Env, Result};

fn user_not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::UserNotFound, format!("no user '{name}'"))
}

async fn load_user<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    name: &str,
) -> Result<CodebUser> {
    let username = codeb_users::normalize_username(name).ok_or_else(|| user_not_found(name))?;
    get_json(env.kv, &keys::codeb_user(&tenant.id, &username))
        .await?
        .ok_or_else(|| user_not_found(name))
}

/// A new password from the body, hashed; `None` when the field is absent.
fn new_password_hash(f: &crate::api::fields::Fields) -> Result<Option<String>> {
    let Some(clear) = f.str_opt("password", PASSWORD_MAX)? else {
        return Ok(None);
    };
    if !codeb_users::password_ok(&clear) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "password",
            format!("'password' must be {PASSWORD_MIN}-{PASSWORD_MAX} characters"),
        ));
    }
    password::hash(&clear)
        .map(Some)
        .ok_or_else(|| ApiError::new(ErrorCode::InternalError, "the password could not be hashed"))
}

/// What the tenant's object must hold for this user: the stamp of the
/// password tokens may be minted with, none while the user is disabled.
fn credential(user: &CodebUser) -> Option<String> {
    (!user.disabled).then(|| password::credential_stamp(&user.password_hash))
}

pub(crate) async fn route<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: crate::api::router::RouteId,
    tenant: &Tenant,
    name: &str,
) -> Result<ApiResponse> {
    use crate::api::router::RouteId;
    match id {
        RouteId::CreateUser => create_user(env, req, tenant).await,
        RouteId::ListUsers => {
            let users: Vec<CodebUser> =
                list_values(env, &keys::codeb_users_prefix(&tenant.id)).await?;
            Ok(list_response(
                users.iter().map(CodebUser::to_public).collect(),
            ))
        }
        RouteId::GetUser => Ok(ApiResponse::json(
            200,
            &load_user(env, tenant, name).await?.to_public(),
        )),
        RouteId::UpdateUser => update_user(env, req, tenant, name).await,
        RouteId::DeleteUser => delete_user(env, tenant, name).await,
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    }
}

async fn create_user<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let f = parse_request(req, &["username", "password", "disabled"])?;
    let given = f.str_req("username", USERNAME_MAX)?;
    let username = codeb_users::normalize_username(&given).ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidValue,
            "username",
            format!("'username' must be 1-{USERNAME_MAX} of a-z 0-9 . _ @ -"),
        )
    })?;
    if !f.has("password") {
        return Err(ApiError::field(
            ErrorCode::MissingField,
            "password",
            "'password' is required",
        ));
    }
    let disabled = f.bool_opt("disabled")?.unwrap_or(false);
    let key = keys::codeb_user(&tenant.id, &username);
    if env.kv.get(&key).await?.is_some() {
        return Err(ApiError::field(
            ErrorCode::UserExists,
            "username",
            format!("the tenant already has a user '{username}'"),
        ));
    }
    let Some(password_hash) = new_password_hash(&f)? else {
        return Err(ApiError::field(
            ErrorCode::MissingField,
            "password",
            "'password' is required",
        ));
    };
    let now = rfc3339_ms(env.now_ms);
    let user = CodebUser {
        username,
        password_hash,
        disabled,
        created_at: now.clone(),
        updated_at: now,
    };
    env.traffic
        .set_user_credential(&tenant.id, &user.username, credential(&user).as_deref())
        .await?;
    put_json(env.kv, &key, &user, None).await?;
    Ok(ApiResponse::json(201, &user.to_public()))
}

async fn update_user<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    name: &str,
) -> Result<ApiResponse> {
    let mut user = load_user(env, tenant, name).await?;
    let f = parse_request(req, &["password", "disabled"])?;
    let new_hash = new_password_hash(&f)?;
    let disabled = f.bool_opt("disabled")?;
    if new_hash.is_none() && disabled.is_none() {
        return Ok(ApiResponse::json(200, &user.to_public()));
    }
    if let Some(h) = new_hash {
        user.password_hash = h;
    }
    if let Some(d) = disabled {
        user.disabled = d;
    }
    user.updated_at = rfc3339_ms(env.now_ms);
    // A new password or disabling revokes the user's tokens (enabling keeps none to revoke).
    env.traffic
        .set_user_credential(&tenant.id, &user.username, credential(&user).as_deref())
        .await?;
    put_json(
        env.kv,
        &keys::codeb_user(&tenant.id, &user.username),
        &user,
        None,
    )
    .await?;
    Ok(ApiResponse::json(200, &user.to_public()))
}

async fn delete_user<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    name: &str,
) -> Result<ApiResponse> {
    let user = load_user(env, tenant, name).await?;
    env.traffic
        .set_user_credential(&tenant.id, &user.username, None)
        .await?;
    env.kv
        .delete(&keys::codeb_user(&tenant.id, &user.username))
        .await?;
    Ok(ApiResponse::json(
        200,
        &json!({"object": "user", "username": user.username, "deleted": true}),
    ))
}

// ---- the tenant's codeb_host ----

/// `codeb_host` from a tenant create or update body: `Ok(None)` when absent,
/// `Ok(Some(None))` for an explicit null (update: clear it).
pub(crate) fn codeb_host_field(f: &crate::api::fields::Fields) -> Result<Option<Option<String>>> {
    if f.is_null("codeb_host") {
        return Ok(Some(None));
    }
    let Some(given) = f.str_opt("codeb_host", codeb_users::HOST_MAX)? else {
        return Ok(None);
    };
    let host = codeb_users::normalize_host(&given).ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidValue,
            "codeb_host",
            "'codeb_host' must be a host name (a-z 0-9 - labels joined by dots), optionally with :port",
        )
    })?;
    Ok(Some(Some(host)))
}

/// The tenant `host` serves, by the index, if that tenant still claims it
/// (an index entry left behind by a change that failed half way is ignored).
pub(crate) async fn tenant_at_host<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    host: &str,
) -> Result<Option<Tenant>> {
    let Some(tid) = get_json::<String>(env.kv, &keys::codeb_host(host)).await? else {
        return Ok(None);
    };
    if !crate::ids::is_id(&tid, "ten") {
        return Ok(None);
    }
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(&tid)).await?;
    Ok(tenant.filter(|t| t.codeb_host.as_deref() == Some(host)))
}

/// Refuses a host another tenant is served at (409 `codeb_host_taken`).
pub(crate) async fn check_host_free<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    host: &str,
    tenant_id: &str,
) -> Result<()> {
    let taken = || {
        ApiError::field(
            ErrorCode::CodebHostTaken,
            "codeb_host",
            format!("another tenant is served at '{host}'"),
        )
    };
    // Hosts set before claims existed are only in the KV index.
    if let Some(other) = tenant_at_host(env, host).await? {
        if other.id != tenant_id {
            return Err(taken());
        }
    }
    // Decided exactly by the claims object, never by reading KV back.
    let kind = crate::directory::claim_kinds::CODEB_HOST;
    if !crate::directory::ops::claim(env.directory, kind, host, tenant_id).await? {
        return Err(taken());
    }
    Ok(())
}

/// After the tenant record is written: the index follows its `codeb_host`
/// (`previous`: the one it had before).
pub(crate) async fn index_host<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    previous: Option<&str>,
) -> Result<()> {
    if let Some(host) = &tenant.codeb_host {
        put_json(env.kv, &keys::codeb_host(host), &tenant.id, None).await?;
    }
    if let Some(old) = previous.filter(|old| Some(*old) != tenant.codeb_host.as_deref()) {
        // Only our own entry: another tenant may have claimed it since.
        let owner: Option<String> = get_json(env.kv, &keys::codeb_host(old)).await?;
        if owner.as_deref() == Some(tenant.id.as_str()) {
            env.kv.delete(&keys::codeb_host(old)).await?;
        }
        let kind = crate::directory::claim_kinds::CODEB_HOST;
        crate::directory::ops::release(env.directory, kind, old, &tenant.id).await?;
    }
    Ok(())
}
