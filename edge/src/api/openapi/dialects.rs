//! The seed-API dialects' paths (docs/dialects.md), one tag per dialect. They
//! answer in their vendor's shapes, not the `Error` schema, so their
//! operations are written whole here; the statuses and error codes come from
//! the dialect modules, so the document follows their tables.

use crate::dialects::{buildvoiceai, calldock, voiceb, Dialect, Refusal};
use serde_json::{json, Map, Value};

/// (tag, description) per dialect, for the document's `tags`.
pub(super) fn tags() -> Vec<Value> {
    Dialect::ALL
        .iter()
        .map(|d| {
            let (title, seed) = match d {
                Dialect::VoiceB => ("VoiceB click-to-call", "voiceb-click-to-call.txt"),
                Dialect::BuildVoiceAi => ("BuildVoiceAI API", "buildvoiceai-api-webhooks.txt"),
                Dialect::Calldock => ("Calldock API v1", "calldock-api.txt"),
            };
            json!({"name": d.name(), "description": format!(
                "Dialect: the {title} (seed document `{seed}`) served on the same call pipeline as `POST /v1/calls`, in its vendor's own paths, headers, bodies and errors. Credentials: `POST /admin/tenants/{{tenant_id}}/dialect-keys` with `dialect: {}`.", d.name())})
        })
        .collect()
}

/// The security schemes the dialect operations name.
pub(super) fn security_schemes() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("voicebApiKey".into(), json!({"type": "apiKey", "in": "header", "name": voiceb::HEADER_KEY,
        "description": "VoiceB: the credential's `token` (its API Token); every request also carries `signature`, the lowercase hex HMAC-SHA256 of the raw body keyed with the credential's `secret` (its API Secret)."}));
    m.insert("buildvoiceaiBearer".into(), json!({"type": "http", "scheme": "bearer", "bearerFormat": "bvai_...",
        "description": "BuildVoiceAI: `Authorization: Bearer <token>` of a `buildvoiceai` dialect credential; 403 when wrong or when the tenant's `api_access` is off."}));
    m.insert("calldockApiKey".into(), json!({"type": "apiKey", "in": "header", "name": calldock::HEADER_KEY,
        "description": "Calldock: `X-API-Key: ck_live_...` of a `calldock` credential, with `X-Agent-ID` naming the agent it belongs to."}));
    m
}

fn answer(description: &str, schema: Value, example: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema, "example": example}}})
}

fn phone_body(extra: Vec<(&str, Value)>, required: &[&str], description: &str) -> Value {
    let mut props = Map::new();
    props.insert(
        "phone".into(),
        json!({"type": "string", "maxLength": 64, "description": "The number to call."}),
    );
    for (k, v) in extra {
        props.insert(k.into(), v);
    }
    json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "properties": props, "required": required,
        "description": description}}}})
}

fn optional_text(max: usize, description: &str) -> Value {
    json!({"type": "string", "maxLength": max, "description": description})
}

fn metadata() -> Value {
    json!({"type": "object", "description": "Arbitrary JSON object, kept as sent (key order and numbers) and passed to the call's webhooks."})
}

fn voiceb_operation() -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), answer("The call was accepted.",
        json!({"type": "object", "required": ["success", "call_id", "status"], "additionalProperties": false,
               "properties": {"success": {"const": true}, "call_id": {"type": "string", "pattern": "^call_[0-9a-f]{22}$"},
                              "status": {"type": "string", "enum": ["queued", "scheduled"]}}}),
        json!({"success": true, "call_id": "call_fe5dc0d9e5c3f78c3f576f", "status": "queued"})));
    let mut by_status: std::collections::BTreeMap<u16, Vec<voiceb::CtcError>> = Default::default();
    for e in voiceb::CtcError::ALL {
        by_status.entry(e.status()).or_default().push(e);
    }
    for (status, errors) in by_status {
        let codes: Vec<&str> = errors.iter().map(|e| e.parts().0).collect();
        let table: Vec<String> = errors
            .iter()
            .map(|e| format!("`{}` {}", e.parts().0, e.parts().1))
            .collect();
        let first = errors[0].parts();
        responses.insert(status.to_string(), answer(&table.join("; "),
            json!({"type": "object", "required": ["code", "message"], "additionalProperties": false,
                   "properties": {"code": {"type": "string", "enum": codes}, "message": {"type": "string"}}}),
            json!({"code": first.0, "message": first.1})));
    }
    json!({"operationId": "voicebClickToCall", "tags": [Dialect::VoiceB.name()],
        "summary": "VoiceB: place a click-to-call call",
        "description": "Calls `phone` for the credential's agent. `phone` is read leniently (spaces, dashes, dots, parentheses; a leading `00` becomes `+`), then must be E.164. No timestamp is signed, so a repeated request is legitimate: `ctc:007` while its call is live, and the rate limits (`ctc:010`, with `Retry-After`). `ctc:009` and `ctc:010` are ours (the document's table has no code for a bad body or a rate limit).",
        "security": [{"voicebApiKey": []}],
        "parameters": [{"name": voiceb::HEADER_SIGNATURE, "in": "header", "required": true, "schema": {"type": "string"},
            "description": "Lowercase hex HMAC-SHA256 of the raw request body, keyed with the credential's `secret`."}],
        "requestBody": phone_body(vec![], &["phone"], "Unknown fields are ignored."),
        "responses": responses})
}

fn buildvoiceai_operation() -> Value {
    let failed = |example: &str| {
        answer(
            "Refused; `error` says why.",
            json!({"type": "object", "required": ["success", "error"], "additionalProperties": false,
               "properties": {"success": {"const": false}, "error": {"type": "string"}}}),
            json!({"success": false, "error": example}),
        )
    };
    let mut responses = Map::new();
    responses.insert("200".into(), answer("The call was accepted.",
        json!({"type": "object", "required": ["success", "call_id"], "additionalProperties": false,
               "properties": {"success": {"const": true}, "call_id": {"type": "string", "pattern": "^call_[0-9a-f]{22}$"}}}),
        json!({"success": true, "call_id": "call_fe5dc0d85a016ed8b34444"})));
    for refusal in [
        Refusal::InvalidRequest("phone must be in E.164 format (e.g. +15551234567)".into()),
        Refusal::InvalidCredentials,
        Refusal::CallInProgress,
        Refusal::RateLimited {
            retry_after_seconds: 1,
        },
        Refusal::Internal,
    ] {
        let e = buildvoiceai::BviError::from(&refusal);
        responses.insert(e.status().to_string(), failed(&e.message()));
    }
    json!({"operationId": "buildvoiceaiTriggerCall", "tags": [Dialect::BuildVoiceAi.name()],
        "summary": "BuildVoiceAI: trigger an outbound call",
        "description": "Calls `phone` (E.164) with `agent_id`, else the tenant's default agent. 403 for a wrong key or API access switched off (the tenant's `api_access`); 400 for a field, an unknown or disabled agent; 409 while a call from this agent to this number is live; 429 with `Retry-After`.",
        "security": [{"buildvoiceaiBearer": []}],
        "requestBody": phone_body(vec![
            ("name", optional_text(200, "The callee's name, passed to the agent.")),
            ("email", optional_text(254, "The callee's email.")),
            ("agent_id", optional_text(64, "An agent of the tenant (`agt_...`); absent: the default agent.")),
            ("metadata", metadata()),
        ], &["phone"], "As the document's curl sends it; unknown fields are ignored."),
        "responses": responses})
}

fn calldock_operation() -> Value {
    let failed = |code: &str, message: &str| {
        answer(
            "Refused; `error.code` is stable.",
            json!({"type": "object", "required": ["success", "error"], "additionalProperties": false,
               "properties": {"success": {"const": false}, "error": {"type": "object", "required": ["code", "message"],
                   "additionalProperties": false, "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}),
            json!({"success": false, "error": {"code": code, "message": message}}),
        )
    };
    let mut responses = Map::new();
    responses.insert("200".into(), answer("The call was accepted.",
        json!({"type": "object", "required": ["success", "data"], "additionalProperties": false,
               "properties": {"success": {"const": true}, "data": {"type": "object", "required": ["callId", "status", "timestamp"], "additionalProperties": false,
                   "properties": {"callId": {"type": "string", "pattern": "^call_[0-9a-f]{22}$"}, "status": {"const": "initiated"},
                                  "timestamp": {"type": "string", "format": "date-time"}}}}}),
        json!({"success": true, "data": {"callId": "call_fe5dc0d819e9098239887e", "status": "initiated", "timestamp": "2026-12-04T03:45:09Z"}})));
    for refusal in [
        Refusal::InvalidRequest("Missing required field: phone".into()),
        Refusal::InvalidCredentials,
        Refusal::RateLimited {
            retry_after_seconds: 1,
        },
        Refusal::Internal,
    ] {
        let e = calldock::CalldockError::from(&refusal);
        let (status, code, message) = e.parts();
        responses.insert(status.to_string(), failed(code, &message));
    }
    json!({"operationId": "calldockMakeCall", "tags": [Dialect::Calldock.name()],
        "summary": "Calldock: make a call",
        "description": "Calls `phone` (with its country code; read leniently as for VoiceB) for the credential's agent. 400 `bad_request` for the body, `call_in_progress` while a call from this agent to this number is live; 401 `unauthorized` for a wrong key or another agent's `X-Agent-ID`; 429 `rate_limited` (the tenant's limits and the agent's `per_number_limit` and `per_ip_limit`) with `Retry-After`.",
        "security": [{"calldockApiKey": []}],
        "parameters": [{"name": calldock::HEADER_AGENT, "in": "header", "required": true, "schema": {"type": "string", "maxLength": 128},
            "description": "The id of the agent the key belongs to (`agt_...`)."}],
        "requestBody": phone_body(vec![
            ("name", optional_text(200, "Contact name for personalization.")),
            ("email", optional_text(254, "Contact email address.")),
            ("metadata", metadata()),
        ], &["phone"], "As the document's curl sends it; unknown fields are ignored."),
        "responses": responses})
}

/// (path, path item) per dialect operation.
pub(super) fn paths() -> Vec<(&'static str, Value)> {
    Dialect::ALL
        .iter()
        .flat_map(|d| {
            d.routes().iter().map(move |(method, path)| {
                let op = match d {
                    Dialect::VoiceB => voiceb_operation(),
                    Dialect::BuildVoiceAi => buildvoiceai_operation(),
                    Dialect::Calldock => calldock_operation(),
                };
                (*path, json!({ method.to_ascii_lowercase(): op }))
            })
        })
        .collect()
}
