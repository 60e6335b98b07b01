//! Serves the seed APIs' call requests (docs/dialects.md): the dialect's own
//! credential and body are read by its pure module in [`crate::dialects`],
//! turned into the native create-call body, validated, admitted and placed by
//! the same code as `POST /v1/calls`, and answered in the dialect's words.
//!
//! Order of checks, as VoiceB's error table implies: credential headers, the
//! credential, the tenant, the agent, the signature (VoiceB), the body, the
//! rate limits, then the call itself.

use crate::api::auth::{bearer, client_ip, key_and_ip_checks};
use crate::api::calls::{new_call_checks, place_call};
use crate::api::validate;
use crate::dialects::{buildvoiceai, calldock, voiceb, Dialect, Refusal, Scope};
use crate::dispatch::port::DispatchQueues;
use crate::engine_keys::SecretOwner;
use crate::http::{ApiRequest, ApiResponse};
use crate::ids;
use crate::model::{keys, Agent, DialectKeyAuth, PlacedWith, Tenant};
use crate::store::{get_json, Kv};
use crate::traffic::{self, Admission, IdemVerdict};
use serde_json::value::RawValue;
use voxline_shared::CallStatus;

use crate::api::env::Env;

/// A dialect request's call, as the dialect's module read it.
struct Wanted {
    phone: String,
    name: Option<String>,
    email: Option<String>,
    /// BuildVoiceAI only: the body's agent, else the default agent.
    agent_id: Option<String>,
    metadata: Option<Box<RawValue>>,
}

/// The whole answer to a request on a dialect path.
pub(crate) async fn serve<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    dialect: Dialect,
) -> ApiResponse {
    if !req.method.eq_ignore_ascii_case("POST") {
        let e = crate::error::ApiError::new(
            crate::error::ErrorCode::MethodNotAllowed,
            format!("{} takes POST only", req.path),
        );
        return ApiResponse::error(&e).with_header("Allow", "POST");
    }
    let mut rate_headers = Vec::new();
    let answer = match place(env, req, dialect, &mut rate_headers).await {
        Ok((call_id, status)) => {
            let body = match dialect {
                Dialect::VoiceB => voiceb::accepted_body(&call_id, status.as_str()),
                Dialect::BuildVoiceAi => buildvoiceai::accepted_body(&call_id),
                Dialect::Calldock => calldock::accepted_body(&call_id, env.now_ms),
            };
            json_answer(200, body)
        }
        Err(refusal) => refused(dialect, &refusal),
    };
    let mut answer = answer;
    answer.headers.extend(rate_headers);
    answer
}

fn json_answer(status: u16, body: String) -> ApiResponse {
    let mut resp = ApiResponse::json_text(status, body);
    // Not a native error: keep the access log's code column empty.
    resp.error_code = None;
    resp
}

/// The refusal in the dialect's shape, with `Retry-After` on a 429.
fn refused(dialect: Dialect, refusal: &Refusal) -> ApiResponse {
    let (status, body) = match dialect {
        Dialect::VoiceB => {
            let e = voiceb::CtcError::from(refusal);
            (e.status(), e.body())
        }
        Dialect::BuildVoiceAi => {
            let e = buildvoiceai::BviError::from(refusal);
            (e.status(), e.body())
        }
        Dialect::Calldock => {
            let e = calldock::CalldockError::from(refusal);
            (e.status(), e.body())
        }
    };
    let resp = json_answer(status, body);
    match refusal {
        Refusal::RateLimited {
            retry_after_seconds,
        } => resp.with_header("Retry-After", retry_after_seconds.to_string()),
        _ => resp,
    }
}

/// Places the call; its id and status, or why not.
async fn place<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    dialect: Dialect,
    rate_headers: &mut Vec<(String, String)>,
) -> Result<(String, CallStatus), Refusal> {
    // 1. The credential headers.
    let (token, signature, claimed_agent) = match dialect {
        Dialect::VoiceB => {
            let h = voiceb::read_headers(
                req.header(voiceb::HEADER_KEY),
                req.header(voiceb::HEADER_SIGNATURE),
            )
            .map_err(|_| Refusal::MissingCredentials)?;
            (h.api_key, Some(h.signature), None)
        }
        Dialect::BuildVoiceAi => (
            bearer(req).map_err(|_| Refusal::MissingCredentials)?,
            None,
            None,
        ),
        Dialect::Calldock => {
            let (key, agent) = calldock::read_headers(
                req.header(calldock::HEADER_KEY),
                req.header(calldock::HEADER_AGENT),
            )
            .map_err(|_| Refusal::MissingCredentials)?;
            (key, None, Some(agent))
        }
    };
    // 2. The credential (a failure counts against the client's address).
    let auth = match lookup(env, dialect, token).await? {
        Some(auth) if claimed_agent.is_none_or(|a| auth.agent_id.as_deref() == Some(a)) => auth,
        _ => return Err(failed_credential(env, req).await),
    };
    // 3. The tenant.
    let tenant: Tenant = get_json(env.kv, &keys::tenant(&auth.tenant_id))
        .await
        .map_err(|_| Refusal::Internal)?
        .ok_or(Refusal::InvalidCredentials)?;
    if tenant.disabled || !tenant.api_access {
        return Err(Refusal::AccessDisabled);
    }
    // 4. The body (BuildVoiceAI's names the agent), then the agent.
    let wanted = read_body(dialect, &req.body);
    let agent = match dialect.scope() {
        Scope::Agent => auth.agent_id.clone(),
        Scope::Tenant => match &wanted {
            Ok(w) => w.agent_id.clone(),
            Err(_) => None,
        }
        .or_else(|| tenant.default_agent_id.clone()),
    };
    let agent = load_agent(env, &tenant, agent.as_deref()).await?;
    // 5. VoiceB's signature over the raw body, with the credential's secret.
    if let Some(signature) = signature {
        let secret = auth
            .request_secret
            .as_ref()
            .ok_or(Refusal::Internal)?
            .open(
                env.sealing_key,
                SecretOwner::DialectKey {
                    tenant: &tenant.id,
                    key_id: &auth.key_id,
                },
            )
            .map_err(|_| Refusal::Internal)?;
        if !voiceb::signature_matches(secret.as_bytes(), &req.body, signature) {
            // Counted like a wrong credential: the address is throttled either way.
            return Err(match failed_credential(env, req).await {
                limited @ Refusal::RateLimited { .. } => limited,
                _ => Refusal::InvalidSignature,
            });
        }
    }
    let wanted = wanted?;
    // 6. The native command, validated exactly as POST /v1/calls validates it.
    let native = native_body(&wanted, &agent.id, dialect);
    let input = validate::create_call(Some("application/json"), &native, env.now_ms)
        .map_err(|e| Refusal::from_native(&e))?;
    // 7. Admission: the credential's, the address's and the number's limits.
    admit_new_call(
        env,
        req,
        &tenant,
        &agent,
        &auth.key_id,
        &input.phone,
        rate_headers,
    )
    .await?;
    // 8. The call, on the native path.
    let placed_with = PlacedWith {
        dialect,
        key_id: auth.key_id.clone(),
    };
    let origin = crate::api::calls::CallOrigin {
        placed_with: Some(placed_with),
        ..Default::default()
    };
    let record = place_call(env, &tenant, input, agent, None, origin)
        .await
        .map_err(|e| Refusal::from_native(&e))?;
    Ok((record.id, record.status))
}

/// Admits a dialect's new call in the tenant's traffic object, as `POST
/// /v1/calls` is admitted: the credential's (`key:{key_id}`) and the client
/// address's request limits, the number's and the agent's per-address limit;
/// the tightest limit's `X-RateLimit-*` go into `rate_headers`.
pub(crate) async fn admit_new_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    agent: &Agent,
    key_id: &str,
    phone: &str,
    rate_headers: &mut Vec<(String, String)>,
) -> Result<(), Refusal> {
    let limits = tenant.rate_limits;
    let admission = Admission {
        checks: key_and_ip_checks(&limits, key_id, req)
            .into_iter()
            .chain(new_call_checks(agent, &limits, phone, client_ip(req)))
            .collect(),
        idempotency: None,
        signature: None,
    };
    let admitted = env
        .traffic
        .admit(&tenant.id, &admission)
        .await
        .map_err(|_| Refusal::Internal)?;
    rate_headers.extend(admitted.rate.headers());
    if !admitted.rate.allowed {
        return Err(Refusal::RateLimited {
            retry_after_seconds: admitted.rate.reset_seconds,
        });
    }
    debug_assert!(matches!(admitted.idempotency, IdemVerdict::None));
    Ok(())
}

async fn lookup<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    dialect: Dialect,
    token: &str,
) -> Result<Option<DialectKeyAuth>, Refusal> {
    if !dialect.plausible_token(token) {
        return Ok(None);
    }
    let key = keys::dialect_key_by_hash(dialect, &ids::hash_api_key(token));
    get_json(env.kv, &key).await.map_err(|_| Refusal::Internal)
}

/// Counts a wrong credential against the client's address; once the address
/// has spent its failures the answer is a 429 instead (as on native routes).
pub(crate) async fn failed_credential<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Refusal {
    let scope = traffic::auth_failure_scope(client_ip(req));
    match env
        .traffic
        .auth_attempt(&scope, env.auth_failures, true)
        .await
    {
        Ok(v) if !v.allowed => Refusal::RateLimited {
            retry_after_seconds: v.reset_seconds,
        },
        _ => Refusal::InvalidCredentials,
    }
}

async fn load_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    agent_id: Option<&str>,
) -> Result<Agent, Refusal> {
    let aid = agent_id.ok_or(Refusal::AgentNotConfigured)?;
    if !ids::is_id(aid, "agt") {
        return Err(Refusal::AgentNotConfigured);
    }
    let agent: Agent = get_json(env.kv, &keys::agent(&tenant.id, aid))
        .await
        .map_err(|_| Refusal::AgentLookupFailed)?
        .ok_or(Refusal::AgentNotConfigured)?;
    if !agent.enabled {
        return Err(Refusal::AgentDisabled);
    }
    Ok(agent)
}

fn read_body(dialect: Dialect, body: &[u8]) -> Result<Wanted, Refusal> {
    match dialect {
        Dialect::VoiceB => {
            let phone = voiceb::read_phone(body)
                .map_err(|e| Refusal::InvalidRequest(e.parts().1.to_string()))?;
            Ok(Wanted {
                phone,
                name: None,
                email: None,
                agent_id: None,
                metadata: None,
            })
        }
        Dialect::BuildVoiceAi => {
            let t = buildvoiceai::read_trigger_call(body)
                .map_err(|e| Refusal::InvalidRequest(e.message()))?;
            Ok(Wanted {
                phone: t.phone,
                name: t.name,
                email: t.email,
                agent_id: t.agent_id,
                metadata: t.metadata,
            })
        }
        Dialect::Calldock => {
            let m = calldock::read_make_call(body).map_err(|e| {
                let (_, _, message) = e.parts();
                Refusal::InvalidRequest(message)
            })?;
            Ok(Wanted {
                phone: m.phone,
                name: m.name,
                email: m.email,
                agent_id: None,
                metadata: m.metadata,
            })
        }
    }
}

/// The native create-call body for this request: what a `POST /v1/calls`
/// client would send, so the one validator decides (sizes, email, metadata).
/// The native request for a dialect's call. Calldock's calls are recorded:
/// its product records every call and its `post_call` webhook always carries
/// a `recording_url`. VoiceB's and BuildVoiceAI's are not (their documents
/// promise no recording).
fn native_body(w: &Wanted, agent_id: &str, dialect: Dialect) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Native<'a> {
        phone: &'a str,
        agent_id: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        record: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        email: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<&'a RawValue>,
    }
    serde_json::to_vec(&Native {
        phone: &w.phone,
        agent_id,
        record: dialect == Dialect::Calldock,
        name: w.name.as_deref(),
        email: w.email.as_deref(),
        metadata: w.metadata.as_deref(),
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_body_is_what_the_native_validator_reads() {
        let metadata = RawValue::from_string(r#"{"source":"form","n":1.50}"#.into()).unwrap();
        let w = Wanted {
            phone: "+34612345678".into(),
            name: Some("Jane".into()),
            email: Some("jane@example.com".into()),
            agent_id: None,
            metadata: Some(metadata),
        };
        let body = native_body(&w, "agt_0123456789", Dialect::VoiceB);
        let input = validate::create_call(Some("application/json"), &body, 0).unwrap();
        assert!(!input.record);
        for (dialect, recorded) in [(Dialect::BuildVoiceAi, false), (Dialect::Calldock, true)] {
            let body = native_body(&w, "agt_0123456789", dialect);
            let other = validate::create_call(Some("application/json"), &body, 0).unwrap();
            assert_eq!(other.record, recorded, "{dialect:?}");
        }
        assert_eq!(input.phone, "+34612345678");
        assert_eq!(input.agent_id.as_deref(), Some("agt_0123456789"));
        assert_eq!(input.name.as_deref(), Some("Jane"));
        // The client's metadata text, unchanged (1.50 stays 1.50).
        assert_eq!(
            input.metadata.as_ref().map(|m| m.raw().get()),
            Some(r#"{"source":"form","n":1.50}"#)
        );
    }
}
