//! Users' SIP phones (issue 16): a phone REGISTERs with a sidecar, which
//! challenges it and forwards the Digest answer with one
//! `POST /v1/sidecar/registrations` ([`PhoneRegistration`]). The username
//! names the tenant and the user (`phone_accounts::username`); the tenant's
//! `Directory` object checks the answer against the HA1 it stores and
//! records the bindings (`directory::register_phone`), so a password never
//! reaches the sidecar and the edge knows which sidecar reaches each phone.
//!
//! Also the admin call that sets a user's SIP password (shown once) and
//! the live bindings the admin API and the Voice360 presence read.

use crate::api::env::{Env, Result};
use crate::directory::{ops, BindingRow, DirectoryRefusal, SipCredentials, UserKind};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::rfc3339_ms;
use crate::model::{keys, Tenant};
use crate::store::{get_json, Kv};
use serde_json::json;
use voxline_shared::sidecar_link::{
    phone_accounts, registration_refusals, PhoneRegistration, PhoneRegistrationAnswer,
    PhoneRegistrationDecision, PROTOCOL_VERSION,
};

const REFUSALS: [&str; 5] = [
    registration_refusals::UNKNOWN_USER,
    registration_refusals::BAD_CREDENTIALS,
    registration_refusals::TOO_MANY_BINDINGS,
    registration_refusals::OUT_OF_ORDER,
    registration_refusals::UNAVAILABLE,
];

/// Characters of a generated SIP password: 24 of 62 symbols (~143 bits),
/// typed into a phone's settings once.
const PASSWORD_CHARS: usize = 24;

/// `POST /v1/sidecar/registrations` once the sidecar link admitted it
/// (signature, fields, region, nonce): always 200 with the decision (a
/// refusal is an answer the sidecar gives the phone).
pub(crate) async fn register<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    use crate::api::inbound_calls::{admitted_message, decided};
    let registration: PhoneRegistration = admitted_message(req)?;
    let decision = decide(env, registration).await?;
    let refused = match &decision {
        PhoneRegistrationDecision::Refuse { reason, .. } => {
            REFUSALS.iter().copied().find(|r| r == reason)
        }
        PhoneRegistrationDecision::Accept { .. } => None,
    };
    let answer = PhoneRegistrationAnswer {
        protocol_version: PROTOCOL_VERSION,
        decision,
    };
    Ok(decided(&answer, refused))
}

/// The user the username names (an enabled tenant's), the answer checked
/// and the bindings changed in that tenant's directory.
pub async fn decide<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    registration: PhoneRegistration,
) -> Result<PhoneRegistrationDecision> {
    let unknown = || PhoneRegistrationDecision::Refuse {
        sip_code: 404,
        reason: registration_refusals::UNKNOWN_USER.to_string(),
    };
    let Some((tenant_id, user_pk)) = phone_accounts::parse_username(&registration.digest.username)
    else {
        return Ok(unknown());
    };
    let tenant_id = tenant_id.to_string();
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(&tenant_id)).await?;
    if tenant.is_none_or(|t| t.disabled) {
        return Ok(unknown());
    }
    let decision = ops::register_phone(env.directory, &tenant_id, user_pk, registration).await?;
    Ok(match decision {
        PhoneRegistrationDecision::Accept {
            user_pk,
            extension,
            bindings,
            ..
        } => PhoneRegistrationDecision::Accept {
            tenant_id,
            user_pk,
            extension,
            bindings,
        },
        refused => refused,
    })
}

/// `POST /admin/tenants/{t}/directory/users/{pk}/sip-password`: a new
/// random SIP password for a person, in this answer only; the directory
/// keeps its HA1s. The user's phones registered with the old one are
/// forgotten (they must register again with the new one).
pub(crate) async fn set_password<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    pk: u64,
    not_found: ApiError,
) -> Result<ApiResponse> {
    let users = ops::users(env.directory, &tenant.id).await?;
    let Some(user) = users.iter().find(|u| u.pk == pk) else {
        return Err(not_found);
    };
    if user.fields.kind != UserKind::Person {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            "only a person has SIP phones: this user is an ai_agent",
        ));
    }
    let password = random_password();
    let username = phone_accounts::username(&tenant.id, pk);
    let sip = SipCredentials::new(
        username.clone(),
        phone_accounts::REALM,
        &password,
        rfc3339_ms(env.now_ms),
    );
    let user = ops::set_sip(env.directory, &tenant.id, pk, Some(sip))
        .await?
        .map_err(|r| match r {
            DirectoryRefusal::UserNotFound => not_found,
            other => ApiError::new(ErrorCode::InternalError, format!("{other:?}")),
        })?;
    let mut shown = user.to_public();
    shown["sip"]["password"] = json!(password);
    Ok(ApiResponse::json(201, &shown))
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // 256 = 4 * 62 + 8: bytes of 248 and up are skipped, so every symbol is
    // equally likely.
    let mut out = String::with_capacity(PASSWORD_CHARS);
    while out.len() < PASSWORD_CHARS {
        for b in crate::ids::random_bytes::<32>() {
            if b < 248 && out.len() < PASSWORD_CHARS {
                out.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// The live bindings of the tenant's phones, by user.
pub async fn bindings_by_user<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
) -> Result<std::collections::BTreeMap<u64, Vec<BindingRow>>> {
    let mut by_user: std::collections::BTreeMap<u64, Vec<BindingRow>> = Default::default();
    for b in ops::bindings(env.directory, tenant_id).await? {
        if b.expires_ms > env.now_ms {
            by_user.entry(b.user_pk).or_default().push(b);
        }
    }
    Ok(by_user)
}
