//! The admin routes of a tenant's phone numbers
//! (`/admin/tenants/{tenant}/numbers/{number}`). A number is one tenant's:
//! the claim is decided in the claims object (exact), then the record is
//! written to KV (`number/{e164}`, read by inbound calls and texts) with the
//! tenant's index entry (`numberid/{tenant}/{e164}`, for listing).

use crate::api::fields::{parse_request, Fields};
use crate::api::list::list_response;
use crate::api::validate::check_e164;
use crate::directory::{claim_kinds, ops};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::rfc3339_ms;
use crate::model::{keys as model_keys, Tenant};
use crate::numbers::{keys, NumberRoute, NumberStatus, PhoneNumber};
use crate::store::{get_json, put_json, Kv};
use serde_json::{json, Map, Value};

use crate::api::env::{Env, Result};

/// Longest `name` of a number.
pub const NAME_MAX: usize = 100;

/// The number a path segment names: E.164, its `+` written as is or `%2B`.
pub fn path_number(segment: &str) -> Option<String> {
    let n = match segment.get(..3) {
        Some(p) if p.eq_ignore_ascii_case("%2b") => format!("+{}", &segment[3..]),
        _ => segment.to_string(),
    };
    check_e164("number", &n).ok().map(|_| n)
}

fn not_found(segment: &str) -> ApiError {
    let shown: String = segment.chars().take(24).collect();
    ApiError::new(
        ErrorCode::NumberNotFound,
        format!("the tenant has no number '{shown}'"),
    )
}

/// The tenant's number `segment` names (its KV record, which says whose it is).
pub(crate) async fn load_number<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    segment: &str,
) -> Result<PhoneNumber> {
    let number = path_number(segment).ok_or_else(|| not_found(segment))?;
    match get_json::<PhoneNumber>(env.kv, &keys::number(&number)).await? {
        Some(n) if n.tenant_id == tenant.id => Ok(n),
        _ => Err(not_found(segment)),
    }
}

/// Every number of the tenant, in number order.
pub(crate) async fn tenant_numbers<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
) -> Result<Vec<PhoneNumber>> {
    let entries = env
        .kv
        .list(&keys::tenant_numbers_prefix(tenant_id), 1000, None)
        .await?;
    let mut out = Vec::new();
    for entry in entries.keys {
        let Some(number) = entry.name.rsplit('/').next() else {
            continue;
        };
        if let Some(n) = get_json::<PhoneNumber>(env.kv, &keys::number(number)).await? {
            if n.tenant_id == tenant_id {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// `route` from the body: `null` (no inbound route) or one target of the tenant.
async fn read_route<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    v: &Map<String, Value>,
) -> Result<NumberRoute> {
    // JSON has one number type: `3.0` is the integer 3 (as the schema says).
    let mut v = v.clone();
    for key in ["user_id", "queue_id"] {
        if let Some(f) = v.get(key).and_then(Value::as_f64) {
            if f.fract() == 0.0 && (1.0..=crate::directory::MAX_PK as f64).contains(&f) {
                v.insert(key.to_string(), Value::from(f as u64));
            }
        }
    }
    let route: NumberRoute = serde_json::from_value(Value::Object(v)).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidValue,
            "route",
            "'route' must be {\"kind\":\"agent\",\"agent_id\"}, {\"kind\":\"user\",\"user_id\"} or {\"kind\":\"queue\",\"queue_id\"}",
        )
    })?;
    let exists = match &route {
        NumberRoute::Agent { agent_id } => {
            crate::ids::is_id(agent_id, "agt")
                && env
                    .kv
                    .get(&model_keys::agent(&tenant.id, agent_id))
                    .await?
                    .is_some()
        }
        NumberRoute::User { user_id } => ops::users(env.directory, &tenant.id)
            .await?
            .iter()
            .any(|u| u.pk == *user_id),
        NumberRoute::Queue { queue_id } => ops::queues(env.directory, &tenant.id)
            .await?
            .iter()
            .any(|q| q.pk == *queue_id),
    };
    if !exists {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "route",
            "'route' names no agent, user or queue of this tenant",
        ));
    }
    Ok(route)
}

fn status_field(f: &Fields) -> Result<Option<NumberStatus>> {
    let Some(s) = f.str_opt("status", 16)? else {
        return Ok(None);
    };
    NumberStatus::parse(&s).map(Some).ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidValue,
            "status",
            format!("'status' must be one of {}", NumberStatus::NAMES.join(", ")),
        )
    })
}

/// `PUT`: adds the number to the tenant (201) or replaces its settings
/// (200). A number another tenant holds is 409 `number_taken`.
pub(crate) async fn put_number<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    segment: &str,
) -> Result<ApiResponse> {
    let Some(number) = path_number(segment) else {
        return Err(ApiError::field(
            ErrorCode::InvalidPhoneNumber,
            "number",
            "the path's number must be E.164: '+' (or %2B) then 7 to 15 digits",
        ));
    };
    let f = parse_request(
        req,
        &[
            "name",
            "status",
            "route",
            "sms_enabled",
            "mms_enabled",
            "sms_user_id",
        ],
    )?;
    let route = match f.object_opt("route")? {
        Some(v) => Some(read_route(env, tenant, &v).await?),
        None => None,
    };
    let sms_user_id = match f.int_opt("sms_user_id", 1, crate::directory::MAX_PK as i64)? {
        Some(pk) => {
            let pk = pk as u64;
            let known = ops::users(env.directory, &tenant.id)
                .await?
                .iter()
                .any(|u| u.pk == pk);
            if !known {
                return Err(ApiError::field(
                    ErrorCode::InvalidValue,
                    "sms_user_id",
                    "'sms_user_id' names no user of this tenant",
                ));
            }
            Some(pk)
        }
        None => None,
    };
    if !ops::claim(env.directory, claim_kinds::NUMBER, &number, &tenant.id).await? {
        return Err(ApiError::new(
            ErrorCode::NumberTaken,
            format!("another tenant holds {number}"),
        ));
    }
    let pk = ops::pk_for(env.directory, &tenant.id, "number", &number).await?;
    let key = keys::number(&number);
    let now = rfc3339_ms(env.now_ms);
    // Read only to keep `created_at` (shown, never decided on).
    let earlier = get_json::<PhoneNumber>(env.kv, &key)
        .await?
        .filter(|n| n.tenant_id == tenant.id);
    let record = PhoneNumber {
        number: number.clone(),
        pk,
        tenant_id: tenant.id.clone(),
        name: f.str_opt("name", NAME_MAX)?,
        status: status_field(&f)?.unwrap_or_default(),
        route,
        sms_enabled: f.bool_opt("sms_enabled")?.unwrap_or(false),
        mms_enabled: f.bool_opt("mms_enabled")?.unwrap_or(false),
        sms_user_id,
        created_at: earlier
            .as_ref()
            .map_or_else(|| now.clone(), |n| n.created_at.clone()),
        updated_at: now,
    };
    put_json(env.kv, &key, &record, None).await?;
    env.kv
        .put(&keys::tenant_number(&tenant.id, &number), "{}", None)
        .await?;
    let status = if earlier.is_some() { 200 } else { 201 };
    Ok(ApiResponse::json(status, &record.to_public()))
}

pub(crate) async fn list_numbers<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let numbers = tenant_numbers(env, &tenant.id).await?;
    Ok(list_response(
        numbers.iter().map(PhoneNumber::to_public).collect(),
    ))
}

pub(crate) async fn get_number<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    segment: &str,
) -> Result<ApiResponse> {
    let n = load_number(env, tenant, segment).await?;
    Ok(ApiResponse::json(200, &n.to_public()))
}

/// Releases the number: its record and index entry go, then the claim.
pub(crate) async fn delete_number<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    segment: &str,
) -> Result<ApiResponse> {
    let n = load_number(env, tenant, segment).await?;
    env.kv.delete(&keys::number(&n.number)).await?;
    env.kv
        .delete(&keys::tenant_number(&tenant.id, &n.number))
        .await?;
    ops::release(env.directory, claim_kinds::NUMBER, &n.number, &tenant.id).await?;
    Ok(ApiResponse::json(
        200,
        &json!({"number": n.number, "object": "phone_number", "deleted": true}),
    ))
}
