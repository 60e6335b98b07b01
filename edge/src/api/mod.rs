//! Request handling as pure async Rust over the [`Kv`] port: routing, auth,
//! validation, records. The Worker glue only converts HTTP values and supplies
//! KV, the clock and secrets, so everything here is unit-tested natively.
//!
//! This file: [`handle`] and `route_request` (the route table's answer to
//! a handler), and the traffic control around every `/v1` call route. The
//! handlers: [`calls`] (incl. the recording), [`admin`] (tenants, agents, API
//! keys, sidecars), [`webhooks`] (endpoints and the delivery log); [`auth`]
//! says who is asking; [`env`](mod@env) and [`list`] are leaves every handler uses.
//! The sidecar link is routed to [`crate::dispatch::sidecar_request`].

pub mod admin;
pub mod agent_tools;
pub mod auth;
pub mod calls;
pub mod campaigns;
pub mod codeb;
pub mod codeb_auth;
pub mod codeb_users;
pub mod contacts;
pub mod dialect_keys;
pub mod dialects;
pub mod directory;
pub mod env;
pub mod fields;
pub mod inbound_calls;
pub mod list;
pub mod messages;
pub mod numbers;
pub mod openapi;
pub mod phone_registrations;
pub mod post_call_transcripts;
pub mod prompts;
pub mod request_signing;
pub mod router;
pub mod tool_calls;
pub mod transfers;
pub mod validate;
pub mod voice360;
pub mod webhooks;

use crate::api::admin::admin_route;
use crate::api::auth::{
    authenticate_admin, authenticate_tenant, client_ip, failed_api_key, too_many_failed_attempts,
};
use crate::api::calls::{
    create_call, get_call, get_transcript, hangup_call, list_calls, prepare_call,
};
use crate::api::router::{route, Match, RouteId};
use crate::campaigns::Action;
use crate::engine_keys::secret_unavailable;

use crate::dispatch::port::DispatchQueues;
use crate::dispatch::sidecar_link::SidecarOp;
use crate::engine_keys::SecretOwner;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self};
use crate::store::Kv;
use crate::traffic::{self, Admission, IdemRequest, IdemVerdict, SignatureUse, StoredResponse};
use serde_json::json;
use voxline_shared::signing::{self};

use crate::api::env::{Env, Result};

pub async fn handle<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> ApiResponse {
    match route_request(env, req).await {
        Ok(resp) => resp,
        Err(e) => {
            let resp = ApiResponse::error(&e);
            if e.code == ErrorCode::MethodNotAllowed {
                let allowed = match route(&req.method, &req.path) {
                    Match::WrongMethod(m) => m.join(", "),
                    // The sidecar link is routed outside the table: POST only.
                    _ if SidecarOp::from_path(&req.path).is_some() => "POST".to_string(),
                    _ => String::new(),
                };
                return resp.with_header("Allow", allowed);
            }
            resp
        }
    }
}

/// The handler's answer for `req`, or the error [`handle`] turns into a response.
async fn route_request<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    // The seed APIs' paths first: none is a native path (checked by a test).
    if let Some(routed) = crate::dialects::codeb::route(&req.method, &req.path) {
        return Ok(crate::api::codeb::serve(env, req, routed).await);
    }
    if let Some(routed) = crate::dialects::voice360::route(&req.method, &req.path) {
        return Ok(crate::api::voice360::serve(env, req, routed).await);
    }
    if let Some(dialect) = crate::dialects::route(&req.path) {
        return Ok(crate::api::dialects::serve(env, req, dialect).await);
    }
    if let Some(op) = SidecarOp::from_path(&req.path) {
        if !req.method.eq_ignore_ascii_case("POST") {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} takes POST only", req.path),
            ));
        }
        let resp = crate::dispatch::sidecar_request::sidecar_request(
            env.kv,
            env.dispatch_queues,
            env.sealing_key,
            env.now_ms,
            env.dev_mode,
            req,
            op,
        )
        .await?;
        // An inbound text, admitted (signature, fields, nonce): to its number's tenant.
        if op == SidecarOp::InboundMessages && resp.status == 200 {
            return crate::api::messages::inbound_message(env, req).await;
        }
        // An inbound call, admitted likewise: its number's route answers.
        if op == SidecarOp::InboundCalls && resp.status == 200 {
            return crate::api::inbound_calls::inbound_call(env, req).await;
        }
        // A phone's REGISTER, admitted likewise: its user's directory decides.
        if op == SidecarOp::Registrations && resp.status == 200 {
            return crate::api::phone_registrations::register(env, req).await;
        }
        // A post-call transcript, admitted likewise: to the call's tenant.
        if op == SidecarOp::Transcripts && resp.status == 200 {
            return crate::api::post_call_transcripts::post_call_transcript(env, req).await;
        }
        // A tool call of a call this sidecar holds: the edge calls the tool.
        if op == SidecarOp::ToolCalls && resp.status == 200 {
            let admitted: serde_json::Value =
                serde_json::from_str(&resp.body).unwrap_or(serde_json::Value::Null);
            return crate::api::tool_calls::tool_call(env, req, &admitted).await;
        }
        return Ok(resp);
    }
    let (id, params) = match route(&req.method, &req.path) {
        Match::Found(id, params) => (id, params),
        Match::WrongMethod(allowed) => {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!(
                    "{} is not allowed on {}; allowed: {}",
                    req.method,
                    req.path,
                    allowed.join(", ")
                ),
            ))
        }
        Match::NotFound => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no route {} {}", req.method, req.path),
            ))
        }
    };
    let p = |i: usize| params.get(i).copied().unwrap_or("");
    match id {
        RouteId::Health => Ok(ApiResponse::json(200, &json!({"ok": true}))),
        RouteId::OpenApi => Ok(ApiResponse::json(200, &crate::api::openapi::spec())),
        RouteId::Console => Ok(crate::console::page()),
        RouteId::ConsoleAsset => crate::console::asset(p(0)),
        RouteId::CreateCall
        | RouteId::ListCalls
        | RouteId::GetCall
        | RouteId::GetTranscript
        | RouteId::GetTranscriptAs
        | RouteId::GetRecording
        | RouteId::HangupCall
        | RouteId::TransferCall
        | RouteId::CreateMessage
        | RouteId::ListMessages
        | RouteId::GetMessage
        | RouteId::CreateContact
        | RouteId::ListContacts
        | RouteId::GetContact
        | RouteId::UpdateContact
        | RouteId::DeleteContact
        | RouteId::CreateCampaign
        | RouteId::ListCampaigns
        | RouteId::GetCampaign
        | RouteId::StartCampaign
        | RouteId::PauseCampaign
        | RouteId::ResumeCampaign
        | RouteId::CancelCampaign => v1_route(env, req, id, p(0)).await,
        RouteId::ListDeliveries | RouteId::GetDelivery | RouteId::RedeliverDelivery => {
            v1_route(env, req, id, p(0)).await
        }
        // A capability link: its signature is its credential (no bearer key).
        RouteId::GetRecordingByLink => {
            crate::api::calls::get_recording_by_link(env, req, p(0), p(1)).await
        }
        admin => {
            // Admin tokens are chosen by people and may be guessable, so
            // every admin request asks the address's object (admin requests
            // are few: one round trip), which in one step refuses an address
            // over its failures or counts this failure: exact under parallel
            // guesses. The token is compared here first, but a refused
            // address's answer never depends on it: a guess over the limit
            // teaches nothing, even a right one.
            let scope = traffic::auth_failure_scope(client_ip(req));
            let checked = authenticate_admin(env, req);
            let failed = matches!(&checked, Err(e) if e.code == ErrorCode::InvalidCredentials);
            let standing = env
                .traffic
                .auth_attempt(&scope, env.auth_failures, failed)
                .await?;
            if !standing.allowed {
                return Ok(too_many_failed_attempts(&standing));
            }
            checked?;
            admin_route(env, req, admin, p(0), p(1)).await
        }
    }
}

// ---- authentication ----

/// The request's `Idempotency-Key`, bound to its method, path and body.
fn idempotency_of(req: &ApiRequest) -> Result<Option<IdemRequest>> {
    let Some(key) = req.header("idempotency-key") else {
        return Ok(None);
    };
    if !traffic::valid_idempotency_key(key) {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "Idempotency-Key",
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ));
    }
    Ok(Some(IdemRequest {
        key: key.to_string(),
        fingerprint: ids::fingerprint(&req.method, &req.path, &req.body),
    }))
}

/// Authenticates once, then admits the request in the tenant's `RateLimiter`
/// object in one round trip (API key, client IP and, for a new call, the
/// destination number, plus the `Idempotency-Key`), runs the route, and
/// stamps the `X-RateLimit-*` headers of the tightest limit on the answer.
async fn v1_route<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: RouteId,
    cid: &str,
) -> Result<ApiResponse> {
    let (tenant, auth) = match authenticate_tenant(env, req).await {
        Ok(found) => found,
        Err(e) if e.code == ErrorCode::InvalidCredentials => {
            return failed_api_key(env, req, e).await
        }
        Err(e) => return Err(e),
    };
    // A key minted with require_signature: checked here (pure), spent once in
    // the tenant's object below (same round trip as the rate limits).
    let signature = match &auth.signing_secret {
        None => None,
        Some(sealed) => {
            let owner = SecretOwner::ApiKeySigning {
                tenant: &auth.tenant_id,
                key_id: &auth.key_id,
            };
            let secret = sealed
                .open(env.sealing_key, owner)
                .map_err(secret_unavailable)?;
            let path_and_query = signing::path_and_query(&req.path, &req.query);
            let target = request_signing::Target {
                method: &req.method,
                path_and_query: &path_and_query,
            };
            let ok = request_signing::verify(
                req.header(request_signing::HEADER),
                secret.as_bytes(),
                target,
                &req.body,
                env.now_ms / 1000,
            )
            .map_err(|e| {
                let code = match e {
                    request_signing::SignatureError::VersionUnsupported => {
                        ErrorCode::SignatureVersionUnsupported
                    }
                    _ => ErrorCode::InvalidRequestSignature,
                };
                ApiError::new(code, e.message())
            })?;
            let until_ms = ok.replayable_until_ms();
            Some(SignatureUse {
                key: traffic::signature_storage_key(until_ms, &ok.signature),
                until_ms,
            })
        }
    };
    let limits = tenant.rate_limits;
    let mut checks = crate::api::auth::key_and_ip_checks(&limits, &auth.key_id, req);
    let mut idempotency = None;
    // A new call is validated (pure) and its agent resolved before admission,
    // so its number joins the same round trip; an invalid one still counts.
    let prepared = if id == RouteId::CreateCall {
        let prepared = prepare_call(env, req, &tenant).await;
        match &prepared {
            Ok((input, crate::api::calls::CallFrom::Agent(agent))) => checks.extend(
                crate::api::calls::new_call_checks(agent, &limits, &input.phone, client_ip(req)),
            ),
            Ok((input, crate::api::calls::CallFrom::Person(_))) => {
                checks.extend(crate::api::calls::person_call_checks(&limits, &input.phone))
            }
            Err(_) => {}
        }
        idempotency = idempotency_of(req)?;
        Some(prepared)
    } else {
        None
    };
    if matches!(id, RouteId::CreateMessage | RouteId::CreateCampaign) {
        idempotency = idempotency_of(req)?;
    }
    let admission = Admission {
        checks,
        idempotency,
        signature,
    };
    let admitted = env.traffic.admit(&tenant.id, &admission).await?;
    if admitted.replayed {
        return Err(ApiError::new(
            ErrorCode::ReplayedRequest,
            "this X-Signature was already used; sign each request anew",
        ));
    }
    let rate_headers = admitted.rate.headers();
    let stamp = |mut resp: ApiResponse| {
        resp.headers.extend(rate_headers.iter().cloned());
        resp
    };
    if !admitted.rate.allowed {
        let e = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit of {} requests exceeded ({}); retry after {} s",
                admitted.rate.limit,
                admitted.rate.scope.split(':').next().unwrap_or(""),
                admitted.rate.reset_seconds
            ),
        );
        return Ok(stamp(ApiResponse::error(&e)));
    }
    let idem_key = admission.idempotency.as_ref().map(|r| r.key.as_str());
    match admitted.idempotency {
        IdemVerdict::Replay { response } => {
            let mut resp = ApiResponse {
                status: response.status,
                headers: response.headers,
                body: response.body,
                error_code: None,
                stored_object: None,
            };
            resp.headers
                .push(("Idempotent-Replayed".into(), "true".into()));
            return Ok(stamp(resp));
        }
        IdemVerdict::Mismatch => {
            let e = ApiError::field(
                ErrorCode::IdempotencyKeyReused,
                "Idempotency-Key",
                "this Idempotency-Key was used with a different request",
            );
            return Ok(stamp(ApiResponse::error(&e)));
        }
        IdemVerdict::InFlight => {
            let e = ApiError::field(
                ErrorCode::IdempotencyKeyInFlight,
                "Idempotency-Key",
                "a request with this Idempotency-Key is still in progress; retry shortly",
            );
            return Ok(stamp(ApiResponse::error(&e)));
        }
        IdemVerdict::None | IdemVerdict::Proceed => {}
    }
    let result = match (id, prepared) {
        (RouteId::CreateCall, Some(prepared)) => match prepared {
            Ok((input, from)) => {
                create_call(env, &tenant, input, from, admission.idempotency.clone()).await
            }
            Err(e) => Err(e),
        },
        (RouteId::ListCalls, _) => list_calls(env, req, &tenant).await,
        (RouteId::GetCall, _) => get_call(env, &tenant, cid).await,
        (RouteId::GetTranscript | RouteId::GetTranscriptAs, _) => {
            get_transcript(env, req, &tenant, cid).await
        }
        (RouteId::GetRecording, _) => crate::api::calls::get_recording(env, &tenant.id, cid).await,
        (RouteId::HangupCall, _) => hangup_call(env, req, &tenant, cid).await,
        (RouteId::TransferCall, _) => {
            crate::api::transfers::transfer_call(env, req, &tenant, cid).await
        }
        (RouteId::CreateMessage, _) => {
            let idem = admission.idempotency.clone();
            crate::api::messages::create_message(env, req, &tenant, idem).await
        }
        (RouteId::ListMessages, _) => crate::api::messages::list_messages(env, req, &tenant).await,
        (RouteId::GetMessage, _) => crate::api::messages::get_message(env, &tenant, cid).await,
        (RouteId::CreateContact, _) => contacts::create_contact(env, req, &tenant).await,
        (RouteId::ListContacts, _) => contacts::list_contacts(env, req, &tenant).await,
        (RouteId::GetContact, _) => contacts::get_contact(env, &tenant, cid).await,
        (RouteId::UpdateContact, _) => contacts::update_contact(env, req, &tenant, cid).await,
        (RouteId::DeleteContact, _) => contacts::delete_contact(env, &tenant, cid).await,
        (RouteId::CreateCampaign, _) => campaigns::create_campaign(env, req, &tenant).await,
        (RouteId::ListCampaigns, _) => campaigns::list_campaigns(env, req, &tenant).await,
        (RouteId::GetCampaign, _) => campaigns::get_campaign(env, &tenant, cid).await,
        (RouteId::StartCampaign, _) => {
            campaigns::control_campaign(env, req, &tenant, cid, Action::Start).await
        }
        (RouteId::PauseCampaign, _) => {
            campaigns::control_campaign(env, req, &tenant, cid, Action::Pause).await
        }
        (RouteId::ResumeCampaign, _) => {
            campaigns::control_campaign(env, req, &tenant, cid, Action::Resume).await
        }
        (RouteId::CancelCampaign, _) => {
            campaigns::control_campaign(env, req, &tenant, cid, Action::Cancel).await
        }
        (RouteId::ListDeliveries | RouteId::GetDelivery | RouteId::RedeliverDelivery, _) => {
            crate::api::webhooks::tenant_route(env, req, id, &tenant, cid).await
        }
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    };
    let resp = result.unwrap_or_else(|e| ApiResponse::error(&e));
    if let Some(key) = idem_key {
        // 5xx is our failure, and 429 (a full concurrency cap) a "not now",
        // not an answer: let a retry run again.
        let done = if resp.status >= 500 || resp.status == 429 {
            env.traffic.release(&tenant.id, key).await
        } else {
            let headers = resp
                .headers
                .iter()
                .filter(|(h, _)| h == "Location")
                .cloned()
                .collect();
            env.traffic
                .complete(
                    &tenant.id,
                    key,
                    &StoredResponse {
                        status: resp.status,
                        body: resp.body.clone(),
                        headers,
                    },
                )
                .await
        };
        // The call exists either way; a lost record only costs a replay (it expires as abandoned).
        if let Err(e) = done {
            let _ = e;
        }
    }
    Ok(stamp(resp))
}

#[cfg(test)]
mod tests;
