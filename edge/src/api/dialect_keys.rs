//! The admin routes for dialect credentials: mint, list, revoke
//! (`/admin/tenants/{tenant}/dialect-keys`). A credential lets a client of one
//! seed API (docs/dialects.md) place calls for the tenant, or for one agent
//! where the vendor scopes keys so (VoiceB, Calldock).
//!
//! Kept like native API keys: the token's SHA-256 is the lookup key and the
//! clear token is shown once. Where the vendor's protocol needs a secret again
//! it is also kept sealed: VoiceB's API Secret (the request HMAC's key) and
//! BuildVoiceAI's token (its webhooks are signed with the key that placed the call).

use crate::api::fields::parse_request;
use crate::api::list::{list_response, list_values};
use crate::dialects::{Dialect, Scope};
use crate::dispatch::port::DispatchQueues;
use crate::engine_keys::{secrets_sealing_key, SecretOwner, StoredSecret};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::limits::{API_KEY_NAME_MAX, ID_FIELD_MAX};
use crate::model::{keys, DialectKeyAuth, DialectKeyInfo, Tenant};
use crate::store::{put_json, Kv};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use crate::api::env::{Env, Result};

/// Characters of the token kept in the listing, to tell keys apart.
const PREFIX_CHARS: usize = 12;

pub(crate) async fn create_dialect_key<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let f = parse_request(req, &["dialect", "agent_id", "name"])?;
    let dialect_name = f.str_req("dialect", 32)?;
    let dialect = Dialect::parse(&dialect_name).ok_or_else(|| {
        let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
        ApiError::field(
            ErrorCode::InvalidValue,
            "dialect",
            format!("dialect must be one of {}", names.join(", ")),
        )
    })?;
    let name = f.str_opt("name", API_KEY_NAME_MAX)?;
    let agent_id = f.str_opt("agent_id", ID_FIELD_MAX)?;
    let agent_id = match (dialect.scope(), agent_id) {
        (Scope::Agent, None) => {
            return Err(ApiError::field(
                ErrorCode::MissingField,
                "agent_id",
                format!(
                    "{} credentials belong to one agent: give agent_id",
                    dialect.name()
                ),
            ))
        }
        (Scope::Agent, Some(aid)) => {
            // Unknown agent: 404 agent_not_found, like the agent routes.
            let not_found =
                || ApiError::new(ErrorCode::AgentNotFound, format!("no agent '{aid}'"));
            let agent: crate::model::Agent = env
                .load_by_id(&aid, "agt", &keys::agent(&tenant.id, &aid), not_found)
                .await?;
            Some(agent.id)
        }
        (Scope::Tenant, Some(_)) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "agent_id",
                format!(
                    "{} credentials belong to the tenant (requests name their agent_id, else the default agent): leave agent_id out",
                    dialect.name()
                ),
            ))
        }
        (Scope::Tenant, None) => None,
    };
    // Every dialect but Calldock keeps a secret sealed; Calldock's webhook
    // secret is its endpoint's. Without the sealing key nothing is minted.
    let needs_sealing = matches!(dialect, Dialect::VoiceB | Dialect::BuildVoiceAi);
    let sealing = if needs_sealing {
        Some(secrets_sealing_key(env.sealing_key)?)
    } else {
        None
    };
    let token = dialect.token(&ids::random_bytes::<24>());
    let key_id = ids::random_id("dky");
    let owner = || SecretOwner::DialectKey {
        tenant: &tenant.id,
        key_id: &key_id,
    };
    let request_secret = (dialect == Dialect::VoiceB)
        .then(|| format!("vbs_{}", URL_SAFE_NO_PAD.encode(ids::random_bytes::<32>())));
    let sealed_request_secret = match (sealing, &request_secret) {
        (Some(k), Some(secret)) => Some(StoredSecret::seal(k, owner(), secret)),
        _ => None,
    };
    let signing_token = match (sealing, dialect) {
        (Some(k), Dialect::BuildVoiceAi) => Some(StoredSecret::seal(k, owner(), &token)),
        _ => None,
    };
    let hash = ids::hash_api_key(&token);
    let info = DialectKeyInfo {
        id: key_id.clone(),
        dialect,
        agent_id: agent_id.clone(),
        name,
        prefix: token.chars().take(PREFIX_CHARS).collect(),
        hash: hash.clone(),
        created_at: rfc3339_ms(env.now_ms),
        revoked_at: None,
        signing_token,
    };
    let auth = DialectKeyAuth {
        key_id: key_id.clone(),
        tenant_id: tenant.id.clone(),
        agent_id,
        request_secret: sealed_request_secret,
    };
    put_json(env.kv, &keys::dialect_key(&tenant.id, &key_id), &info, None).await?;
    put_json(
        env.kv,
        &keys::dialect_key_by_hash(dialect, &hash),
        &auth,
        None,
    )
    .await?;
    let mut body = info.to_public();
    // The only time the token (and VoiceB's secret) leave the edge.
    body["token"] = json!(token);
    body["secret"] = json!(request_secret);
    Ok(ApiResponse::json(201, &body))
}

pub(crate) async fn list_dialect_keys<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let list: Vec<DialectKeyInfo> =
        list_values(env, &keys::dialect_keys_prefix(&tenant.id)).await?;
    Ok(list_response(
        list.iter().map(DialectKeyInfo::to_public).collect(),
    ))
}

/// Stops the credential at once (its lookup record is deleted); the listing
/// keeps it with `revoked_at`. Idempotent.
pub(crate) async fn revoke_dialect_key<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    kid: &str,
) -> Result<ApiResponse> {
    let not_found = || {
        ApiError::new(
            ErrorCode::DialectKeyNotFound,
            format!("no dialect key '{kid}'"),
        )
    };
    let mut info: DialectKeyInfo = env
        .load_by_id(kid, "dky", &keys::dialect_key(&tenant.id, kid), not_found)
        .await?;
    if info.revoked_at.is_none() {
        env.kv
            .delete(&keys::dialect_key_by_hash(info.dialect, &info.hash))
            .await?;
        info.revoked_at = Some(rfc3339_ms(env.now_ms));
        put_json(env.kv, &keys::dialect_key(&tenant.id, kid), &info, None).await?;
    }
    Ok(ApiResponse::json(200, &info.to_public()))
}
