//! The admin routes of a tenant's directory (`/admin/tenants/{t}/directory/
//! users|queues`), its Voice360 API keys (`/admin/tenants/{t}/voice360-keys`)
//! and its `voice360_account` (the `{account_id}` Voice360 clients put in
//! their paths). The rows live in the tenant's `Directory` object
//! (`crate::directory`); every decision (extension free, `pk`, key lookup) is
//! made there.

use crate::api::fields::{parse_request, Fields};
use crate::api::list::list_response;
use crate::dialects::voice360;
use crate::directory::{
    claim_kinds, ops, DirectoryRefusal, DirectoryRequest, QueueFields, QueueOverflowRule,
    UserFields, UserKind, V360Key, V360KeyKind, DEFAULT_MAX_WAIT_SECONDS, MAX_PK,
};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::model::{keys, Tenant};
use crate::store::{put_json, Kv};
use serde_json::json;

use crate::api::env::{Env, Result};

const NAME_MAX: usize = 100;
const TIME_ZONE_MAX: usize = 64;

fn user_not_found(pk: &str) -> ApiError {
    let shown: String = pk.chars().take(24).collect();
    ApiError::new(
        ErrorCode::DirectoryUserNotFound,
        format!("no directory user {shown}"),
    )
}

fn queue_not_found(pk: &str) -> ApiError {
    let shown: String = pk.chars().take(24).collect();
    ApiError::new(ErrorCode::QueueNotFound, format!("no queue {shown}"))
}

/// A `pk` path segment: digits, no leading zero, at most [`MAX_PK`].
fn path_pk(segment: &str) -> Option<u64> {
    let ok = !segment.is_empty()
        && segment.len() <= 16
        && !segment.starts_with('0')
        && segment.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| segment.parse().ok())
        .flatten()
        .filter(|pk| *pk <= MAX_PK)
}

fn refusal(r: DirectoryRefusal) -> ApiError {
    match r {
        DirectoryRefusal::ExtensionTaken { extension } => ApiError::field(
            ErrorCode::ExtensionTaken,
            "extension",
            format!("extension {extension} is taken by another user or queue"),
        ),
        DirectoryRefusal::UserNotFound => {
            ApiError::new(ErrorCode::DirectoryUserNotFound, "no such directory user")
        }
        DirectoryRefusal::QueueNotFound => ApiError::new(ErrorCode::QueueNotFound, "no such queue"),
        DirectoryRefusal::UnknownMember { user_pk } => ApiError::field(
            ErrorCode::InvalidValue,
            "members",
            format!("'members' names {user_pk}, which is no user of this tenant"),
        ),
        DirectoryRefusal::Full => ApiError::new(
            ErrorCode::DirectoryFull,
            format!(
                "the directory holds {} of these already",
                crate::directory::MAX_ITEMS
            ),
        ),
    }
}

fn extension(f: &Fields) -> Result<String> {
    let ext = f.str_req("extension", voice360::MAX_EXTENSION_DIGITS)?;
    if !voice360::extension_ok(&ext) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "extension",
            format!(
                "'extension' must be 2 to {} digits",
                voice360::MAX_EXTENSION_DIGITS
            ),
        ));
    }
    Ok(ext)
}

const USER_FIELDS: [&str; 11] = [
    "kind",
    "agent_id",
    "extension",
    "first_name",
    "last_name",
    "caller_id",
    "email",
    "voicemail_enabled",
    "forward_enabled",
    "forward_number",
    "time_zone",
];

/// The whole user from the body (create and replace take the same body).
async fn user_fields<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<UserFields> {
    let f = parse_request(req, &USER_FIELDS)?;
    let kind = match f.str_opt("kind", 16)? {
        None => UserKind::Person,
        Some(k) => UserKind::parse(&k).ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidValue,
                "kind",
                format!("'kind' must be one of {}", UserKind::NAMES.join(", ")),
            )
        })?,
    };
    let agent_id = f.str_opt("agent_id", 64)?;
    match (kind, &agent_id) {
        (UserKind::AiAgent, None) => {
            return Err(ApiError::field(
                ErrorCode::MissingField,
                "agent_id",
                "an ai_agent user names its agent in 'agent_id'",
            ))
        }
        (UserKind::Person, Some(_)) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "agent_id",
                "only an ai_agent user has an 'agent_id'",
            ))
        }
        (UserKind::AiAgent, Some(aid)) => {
            let exists = ids::is_id(aid, "agt")
                && env.kv.get(&keys::agent(&tenant.id, aid)).await?.is_some();
            if !exists {
                return Err(ApiError::field(
                    ErrorCode::UnknownAgent,
                    "agent_id",
                    format!("no agent '{aid}'"),
                ));
            }
        }
        (UserKind::Person, None) => {}
    }
    let first_name = f.str_req("first_name", NAME_MAX)?;
    let last_name = f.str_opt("last_name", NAME_MAX)?.unwrap_or_default();
    let caller_id = match f.str_opt("caller_id", NAME_MAX)? {
        Some(c) => c,
        None => format!("{first_name} {last_name}").trim().to_string(),
    };
    let email = f.str_opt("email", 254)?;
    if let Some(e) = &email {
        crate::api::validate::check_email(e)?;
    }
    let forward_number = f.str_opt("forward_number", 16)?;
    if let Some(n) = &forward_number {
        crate::api::validate::check_e164("forward_number", n)?;
    }
    let time_zone = f
        .str_opt("time_zone", TIME_ZONE_MAX)?
        .unwrap_or_else(|| "UTC".to_string());
    if chrono_tz_ok(&time_zone).is_none() {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "time_zone",
            "'time_zone' must be an IANA time zone (e.g. America/New_York)",
        ));
    }
    Ok(UserFields {
        kind,
        agent_id,
        extension: extension(&f)?,
        first_name,
        last_name,
        caller_id,
        email,
        voicemail_enabled: f.bool_opt("voicemail_enabled")?.unwrap_or(false),
        forward_enabled: f.bool_opt("forward_enabled")?.unwrap_or(false),
        forward_number,
        time_zone,
    })
}

/// The calling window's list of zones (one list for the edge).
fn chrono_tz_ok(tz: &str) -> Option<()> {
    crate::calling_window::time_zone_names()
        .binary_search_by(|n| n.as_str().cmp(tz))
        .ok()
        .map(|_| ())
}

const QUEUE_FIELDS: [&str; 15] = [
    "name",
    "extension",
    "strategy",
    "musiconhold",
    "timeout",
    "retry",
    "wrapuptime",
    "maxlen",
    "joinempty",
    "leavewhenempty",
    "ringinuse",
    "members",
    "max_wait_seconds",
    "announce_every_seconds",
    "overflow",
];

/// A queue's `max_wait_seconds`: 10 s to an hour.
pub const MAX_WAIT_SECONDS: (i64, i64) = (10, 3_600);
/// A queue's `announce_every_seconds`: 0 (never) to 10 minutes.
pub const ANNOUNCE_EVERY_SECONDS: (i64, i64) = (0, 600);

async fn queue_fields<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<QueueFields> {
    let f = parse_request(req, &QUEUE_FIELDS)?;
    let overflow = match f.object_opt("overflow")? {
        None => QueueOverflowRule::Hangup,
        Some(o) => overflow_rule(env, tenant, &o).await?,
    };
    let strategy = f
        .str_opt("strategy", 16)?
        .unwrap_or_else(|| "ringall".to_string());
    if voice360::Strategy::parse(&strategy).is_none() {
        let names: Vec<&str> = voice360::Strategy::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "strategy",
            format!("'strategy' must be one of {}", names.join(", ")),
        ));
    }
    let secs = |name: &str, default: u32| -> Result<u32> {
        Ok(f.int_opt(name, 0, 86_400)?.map_or(default, |n| n as u32))
    };
    let members = f
        .int_list_opt("members", 200, 1, MAX_PK as i64)?
        .unwrap_or_default()
        .into_iter()
        .map(|n| n as u64)
        .collect();
    Ok(QueueFields {
        name: f.str_req("name", NAME_MAX)?,
        extension: extension(&f)?,
        strategy,
        musiconhold: f
            .str_opt("musiconhold", 64)?
            .unwrap_or_else(|| "default".to_string()),
        timeout: secs("timeout", 20)?,
        retry: secs("retry", 5)?,
        wrapuptime: secs("wrapuptime", 0)?,
        maxlen: f.int_opt("maxlen", 0, 10_000)?.map_or(0, |n| n as u32),
        joinempty: f.bool_opt("joinempty")?.unwrap_or(true),
        leavewhenempty: f.bool_opt("leavewhenempty")?.unwrap_or(false),
        ringinuse: f.bool_opt("ringinuse")?.unwrap_or(false),
        members,
        max_wait_seconds: f
            .int_opt("max_wait_seconds", MAX_WAIT_SECONDS.0, MAX_WAIT_SECONDS.1)?
            .map_or(DEFAULT_MAX_WAIT_SECONDS, |n| n as u32),
        announce_every_seconds: f
            .int_opt(
                "announce_every_seconds",
                ANNOUNCE_EVERY_SECONDS.0,
                ANNOUNCE_EVERY_SECONDS.1,
            )?
            .map_or(0, |n| n as u32),
        overflow,
    })
}

/// A queue's `overflow`: `{"kind": "agent", "agent_id"}` (an agent of the
/// tenant: 422 `unknown_agent` otherwise), `{"kind": "voicemail"}` or
/// `{"kind": "hangup"}`; nothing else in it.
async fn overflow_rule<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    o: &serde_json::Map<String, serde_json::Value>,
) -> Result<QueueOverflowRule> {
    let bad = |message: String| ApiError::field(ErrorCode::InvalidValue, "overflow", message);
    let kind = match o.get("kind") {
        Some(serde_json::Value::String(k)) => k.as_str(),
        Some(_) => return Err(bad("'overflow.kind' must be a string".into())),
        None => {
            return Err(ApiError::field(
                ErrorCode::MissingField,
                "overflow",
                "'overflow' names its 'kind'",
            ))
        }
    };
    let allowed: &[&str] = if kind == "agent" {
        &["kind", "agent_id"]
    } else {
        &["kind"]
    };
    if let Some(extra) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::field(
            ErrorCode::UnknownField,
            "overflow",
            format!("'overflow' of kind '{kind}' has no '{extra}'"),
        ));
    }
    match kind {
        "voicemail" => Ok(QueueOverflowRule::Voicemail),
        "hangup" => Ok(QueueOverflowRule::Hangup),
        "agent" => {
            let aid = match o.get("agent_id") {
                Some(serde_json::Value::String(a)) => a.clone(),
                Some(_) => return Err(bad("'overflow.agent_id' must be a string".into())),
                None => {
                    return Err(ApiError::field(
                        ErrorCode::MissingField,
                        "overflow",
                        "an agent overflow names its agent in 'overflow.agent_id'",
                    ))
                }
            };
            let exists = ids::is_id(&aid, "agt")
                && env.kv.get(&keys::agent(&tenant.id, &aid)).await?.is_some();
            if !exists {
                return Err(ApiError::field(
                    ErrorCode::UnknownAgent,
                    "overflow",
                    format!("no agent '{aid}'"),
                ));
            }
            Ok(QueueOverflowRule::Agent { agent_id: aid })
        }
        other => Err(bad(format!(
            "'overflow.kind' must be one of {}, not '{other}'",
            QueueOverflowRule::KINDS.join(", ")
        ))),
    }
}

pub(crate) async fn route<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: crate::api::router::RouteId,
    tenant: &Tenant,
    sub: &str,
) -> Result<ApiResponse> {
    use crate::api::router::RouteId;
    let d = env.directory;
    let t = tenant.id.as_str();
    match id {
        RouteId::CreateDirectoryUser => {
            let fields = user_fields(env, req, tenant).await?;
            let user = ops::save_user(d, t, None, fields).await?.map_err(refusal)?;
            Ok(ApiResponse::json(201, &user.to_public()))
        }
        RouteId::ListDirectoryUsers => {
            let users = ops::users(d, t).await?;
            let bindings = crate::api::phone_registrations::bindings_by_user(env, t).await?;
            Ok(list_response(
                users
                    .iter()
                    .map(|u| u.to_public_with(bindings.get(&u.pk).map_or(&[][..], Vec::as_slice)))
                    .collect(),
            ))
        }
        RouteId::SetSipPassword => {
            let pk = path_pk(sub).ok_or_else(|| user_not_found(sub))?;
            crate::api::phone_registrations::set_password(env, tenant, pk, user_not_found(sub))
                .await
        }
        RouteId::UpdateDirectoryUser => {
            let pk = path_pk(sub).ok_or_else(|| user_not_found(sub))?;
            // Which user first: a missing one is 404 whatever the body.
            if !ops::users(d, t).await?.iter().any(|u| u.pk == pk) {
                return Err(user_not_found(sub));
            }
            let fields = user_fields(env, req, tenant).await?;
            let user = ops::save_user(d, t, Some(pk), fields)
                .await?
                .map_err(refusal)?;
            let bindings = crate::api::phone_registrations::bindings_by_user(env, t).await?;
            let shown = user.to_public_with(bindings.get(&pk).map_or(&[][..], Vec::as_slice));
            Ok(ApiResponse::json(200, &shown))
        }
        RouteId::DeleteDirectoryUser => {
            let pk = path_pk(sub).ok_or_else(|| user_not_found(sub))?;
            if !ops::remove(d, t, DirectoryRequest::DeleteUser { pk }).await? {
                return Err(user_not_found(sub));
            }
            Ok(ApiResponse::json(
                200,
                &json!({"pk": pk, "object": "directory_user", "deleted": true}),
            ))
        }
        RouteId::CreateQueue => {
            let fields = queue_fields(env, req, tenant).await?;
            let queue = ops::save_queue(d, t, None, fields)
                .await?
                .map_err(refusal)?;
            Ok(ApiResponse::json(201, &queue.to_public()))
        }
        RouteId::ListQueues => {
            let queues = ops::queues(d, t).await?;
            Ok(list_response(
                queues.iter().map(|q| q.to_public()).collect(),
            ))
        }
        RouteId::UpdateQueue => {
            let pk = path_pk(sub).ok_or_else(|| queue_not_found(sub))?;
            if !ops::queues(d, t).await?.iter().any(|q| q.pk == pk) {
                return Err(queue_not_found(sub));
            }
            let fields = queue_fields(env, req, tenant).await?;
            let queue = ops::save_queue(d, t, Some(pk), fields)
                .await?
                .map_err(refusal)?;
            Ok(ApiResponse::json(200, &queue.to_public()))
        }
        RouteId::DeleteQueue => {
            let pk = path_pk(sub).ok_or_else(|| queue_not_found(sub))?;
            if !ops::remove(d, t, DirectoryRequest::DeleteQueue { pk }).await? {
                return Err(queue_not_found(sub));
            }
            Ok(ApiResponse::json(
                200,
                &json!({"pk": pk, "object": "queue", "deleted": true}),
            ))
        }
        RouteId::CreateVoice360Key => create_key(env, req, tenant).await,
        RouteId::ListVoice360Keys => {
            let keys = ops::keys(d, t).await?;
            Ok(list_response(keys.iter().map(V360Key::to_public).collect()))
        }
        RouteId::RevokeVoice360Key => {
            let gone = || {
                ApiError::new(
                    ErrorCode::Voice360KeyNotFound,
                    "no Voice360 key with this id",
                )
            };
            if !ids::is_id(sub, "v360k") {
                return Err(gone());
            }
            let request = DirectoryRequest::RevokeKey {
                id: sub.to_string(),
            };
            if !ops::remove(d, t, request).await? {
                return Err(gone());
            }
            Ok(ApiResponse::json(
                200,
                &json!({"id": sub, "object": "voice360_key", "revoked": true}),
            ))
        }
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    }
}

/// Mints a Voice360 key: `{kind: "developer"}` for the account, `{kind:
/// "user", user_pk}` for one user. The key is in this answer only.
async fn create_key<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let f = parse_request(req, &["kind", "user_pk", "name"])?;
    let kind = match f.str_req("kind", 16)?.as_str() {
        "developer" => V360KeyKind::Developer,
        "user" => V360KeyKind::User,
        _ => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "kind",
                "'kind' must be user or developer",
            ))
        }
    };
    let user_pk = f.int_opt("user_pk", 1, MAX_PK as i64)?.map(|n| n as u64);
    match (kind, user_pk) {
        (V360KeyKind::User, None) => {
            return Err(ApiError::field(
                ErrorCode::MissingField,
                "user_pk",
                "a user key names its user in 'user_pk'",
            ))
        }
        (V360KeyKind::Developer, Some(_)) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "user_pk",
                "a developer key is the account's: no 'user_pk'",
            ))
        }
        _ => {}
    }
    let clear = match kind {
        V360KeyKind::User => voice360::KeyKind::User,
        V360KeyKind::Developer => voice360::KeyKind::Developer,
    }
    .mint(&ids::random_bytes::<24>());
    let key = V360Key {
        id: ids::random_id("v360k"),
        hash: ids::hash_api_key(&clear),
        kind,
        user_pk,
        name: f.str_opt("name", NAME_MAX)?,
        created_at: rfc3339_ms(env.now_ms),
    };
    ops::add_key(env.directory, &tenant.id, key.clone())
        .await?
        .map_err(|r| match (r, user_pk) {
            // A body that names a user who does not exist is a bad request
            // (422, like an unknown `agent_id`), not a missing resource.
            (DirectoryRefusal::UserNotFound, Some(pk)) => ApiError::field(
                ErrorCode::InvalidValue,
                "user_pk",
                format!("'user_pk' names {pk}, which is no user of this tenant"),
            ),
            (r, _) => refusal(r),
        })?;
    let mut shown = key.to_public();
    shown["key"] = json!(clear);
    Ok(ApiResponse::json(201, &shown))
}

/// `voice360_account` of a tenant create or update: `Some(None)` removes it.
pub(crate) fn account_field(f: &Fields) -> Result<Option<Option<String>>> {
    if f.is_null("voice360_account") {
        return Ok(Some(None));
    }
    let Some(a) = f.str_opt("voice360_account", voice360::MAX_ACCOUNT_ID_CHARS)? else {
        return Ok(None);
    };
    if !voice360::account_id_ok(&a) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "voice360_account",
            "'voice360_account' must be 1 to 64 of A-Z a-z 0-9 - _",
        ));
    }
    Ok(Some(Some(a)))
}

/// Claims `account` for `tenant_id` across tenants (409 when another holds it).
pub(crate) async fn claim_account<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    account: &str,
    tenant_id: &str,
) -> Result<()> {
    if ops::claim(
        env.directory,
        claim_kinds::VOICE360_ACCOUNT,
        account,
        tenant_id,
    )
    .await?
    {
        Ok(())
    } else {
        Err(ApiError::field(
            ErrorCode::Voice360AccountTaken,
            "voice360_account",
            format!("another tenant is served as Voice360 account '{account}'"),
        ))
    }
}

/// After the tenant is saved: the KV index `voice360acct/{account}` -> tenant,
/// and the previous account's index entry and claim released.
pub(crate) async fn index_account<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    previous: Option<&str>,
) -> Result<()> {
    if let Some(old) = previous {
        if tenant.voice360_account.as_deref() != Some(old) {
            env.kv.delete(&keys::voice360_account(old)).await?;
            ops::release(
                env.directory,
                claim_kinds::VOICE360_ACCOUNT,
                old,
                &tenant.id,
            )
            .await?;
        }
    }
    if let Some(account) = &tenant.voice360_account {
        put_json(env.kv, &keys::voice360_account(account), &tenant.id, None).await?;
    }
    Ok(())
}
