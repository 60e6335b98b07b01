//! `POST /v1/sidecar/tool-calls` (issue 18): the engine of a call a sidecar
//! holds called one of its agent's customer tools. The sidecar link admitted
//! the request (signature, fields, nonce) and the region's queue checked that
//! this sidecar holds that attempt of the call and named its tenant; here the
//! tool is found on the call's agent (KV), its secret opened, and
//! [`webhooks::tool_calls::call_tool`] POSTs it. The answer is always 200 with
//! a [`ToolCallAnswer`]: a failed tool is an answer the engine hears, not a
//! link error. The tool's URL and secret never leave the edge. Each tool call
//! the call's record names is one entry of the tenant's delivery log (`kind:
//! tool_call`: URL, status, the answer's start, latency), written before the
//! answer goes back.

use crate::api::env::{Env, Result};
use crate::dispatch::port::DispatchQueues;
use crate::engine_keys::SecretOwner;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::model::{keys, Agent};
use crate::store::{get_json, put_json, Kv};
use crate::webhooks::tool_calls::{call_tool, failed, ToolInvocation, ToolRequestLog};
use serde_json::Value;
use voxline_shared::sidecar_link::{tool_errors, ToolCall, ToolCallAnswer};

/// `admitted`: the queue's answer (`tenant_id`, `agent_id`).
pub(crate) async fn tool_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    admitted: &Value,
) -> Result<ApiResponse> {
    // Parsed and checked once already (`sidecar_link::parse_message`).
    let call: ToolCall = serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidType,
            format!("not a valid protocol message: {e}"),
        )
    })?;
    let tenant_id = admitted["tenant_id"].as_str().unwrap_or_default();
    let (answer, log) = answer(env, tenant_id, &call).await?;
    // The delivery log's entry. Its loss must not cost the engine its
    // answer: a failed write is left out of the log (the transcript's
    // `tool` turn still has the call and its result).
    let entry = log.record(&call.call_id, &answer);
    let _ = put_json(
        env.kv,
        &keys::webhook_delivery(tenant_id, &entry.id),
        &entry,
        Some(&entry.list_metadata()),
    )
    .await;
    let body = serde_json::to_value(&answer).unwrap_or(Value::Null);
    let mut resp = ApiResponse::json(200, &body);
    // The Worker's request log names a failed tool by its code.
    resp.error_code = answer
        .error
        .as_ref()
        .and_then(|e| TOOL_ERROR_CODES.iter().copied().find(|c| *c == e.code));
    Ok(resp)
}

const TOOL_ERROR_CODES: [&str; 8] = [
    tool_errors::TIMEOUT,
    tool_errors::HTTP_ERROR,
    tool_errors::UNKNOWN,
    tool_errors::BLOCKED_URL,
    tool_errors::BAD_ARGUMENTS,
    tool_errors::RESPONSE_TOO_LARGE,
    tool_errors::BUSY,
    tool_errors::UNAVAILABLE,
];

async fn answer<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
    call: &ToolCall,
) -> Result<(ToolCallAnswer, ToolRequestLog)> {
    let record = env
        .calls
        .get(tenant_id, &call.call_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::CallNotFound,
                format!("no call '{}'", call.call_id),
            )
        })?;
    let agent: Option<Agent> = get_json(env.kv, &keys::agent(tenant_id, &record.agent_id)).await?;
    let Some(agent) = agent else {
        return Ok((
            failed(
                tool_errors::UNKNOWN,
                "the call's agent no longer exists",
                None,
            ),
            ToolRequestLog::not_sent("", env.now_ms),
        ));
    };
    let tool = agent.tools.iter().find(|t| t.name == call.name);
    let secret = match (&agent.tools_secret, tool) {
        (Some(sealed), Some(_)) => match sealed.open(
            env.sealing_key,
            SecretOwner::AgentTools {
                tenant: tenant_id,
                agent: &agent.id,
            },
        ) {
            Ok(s) => s,
            Err(_) => {
                return Ok((
                    failed(
                        tool_errors::UNAVAILABLE,
                        "the agent's tools secret cannot be opened",
                        None,
                    ),
                    ToolRequestLog::not_sent(tool.map_or("", |t| t.url.as_str()), env.now_ms),
                ))
            }
        },
        // No tool of that name: `call_tool` says so; nothing to sign.
        _ => String::new(),
    };
    let inv = ToolInvocation {
        call_id: &record.id,
        agent_id: &record.agent_id,
        tool_call_id: &call.tool_call_id,
        arguments: &call.arguments,
        metadata: record
            .metadata
            .as_ref()
            .map_or(Value::Null, crate::model::Metadata::to_value),
        secret: &secret,
        now_ms: env.now_ms,
        dev_mode: env.dev_mode,
    };
    Ok(call_tool(env.tool_http, tool, &call.name, &inv).await)
}
