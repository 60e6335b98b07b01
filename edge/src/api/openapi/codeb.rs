//! CodeB's paths (docs/dialects.md "CodeB", seed `codeb-outbound-ai-rest.txt`)
//! under the `codeb` tag. They answer in CodeB's shapes, so they are written
//! whole here; statuses and codes come from `dialects::codeb`.

use crate::dialects::codeb::{self, CodebError, TokenError};
use serde_json::{json, Map, Value};

pub(super) const TAG: &str = "codeb";

pub(super) fn tag() -> Value {
    json!({"name": TAG, "description": "Dialect: CodeB's outbound AI REST API (seed document `codeb-outbound-ai-rest.txt`) on the same call pipeline as `POST /v1/calls`. Bearer: an access token from `POST /oidc.ashx/token` (a tenant user of the admin API, at the tenant's `codeb_host`) or a native `ak_` API key."})
}

pub(super) fn security_schemes() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("codebBearer".into(), json!({"type": "http", "scheme": "bearer",
        "description": "CodeB: `Authorization: Bearer <access_token>` from `POST /oidc.ashx/token`, or a native `ak_` API key of the tenant. Wrong bearers count against the client address (then 429)."}));
    m
}

fn answer(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn failed_schema() -> Value {
    json!({"type": "object", "required": ["ok", "error", "message"], "additionalProperties": false,
           "properties": {"ok": {"const": false}, "error": {"type": "string"}, "message": {"type": "string"}}})
}

/// The REST refusals an operation can answer, one response per status.
fn refusals(responses: &mut Map<String, Value>, errors: &[CodebError]) {
    for e in errors {
        let (status, code, message) = e.parts();
        let entry = responses
            .entry(status.to_string())
            .or_insert_with(|| answer("Refused.", failed_schema()));
        let text = format!("`{code}`: {message}");
        let d = entry["description"]
            .as_str()
            .unwrap_or("Refused.")
            .to_string();
        entry["description"] = json!(if d == "Refused." {
            text
        } else {
            format!("{d}; {text}")
        });
    }
}

fn call_id_param() -> Value {
    json!({"name": "call_id", "in": "path", "required": true,
           "description": "The CodeB call id (`oac-` and 22 hex digits). Another shape answers 404.",
           "schema": {"type": "string", "pattern": "^oac-[0-9a-f]{22}$"}})
}

fn call_data() -> Value {
    let opt_time = json!({"type": ["string", "null"], "format": "date-time"});
    json!({"type": "object", "additionalProperties": false,
        "required": ["callId", "phone", "displayName", "status", "endedReason", "durationSec", "dispatchedAtUtc", "answeredAtUtc", "endedAtUtc", "transcriptPath", "attempt", "retriesLeft"],
        "properties": {
            "callId": {"type": "string", "pattern": "^oac-[0-9a-f]{22}$"},
            "phone": {"type": "string"},
            "displayName": {"type": "string"},
            "status": {"type": "string", "enum": ["scheduled", "in-flight", "ended-success", "ended-failed-final", "cancelled"]},
            "endedReason": {"type": ["string", "null"]},
            "durationSec": {"type": "integer", "minimum": 0},
            "dispatchedAtUtc": opt_time.clone(), "answeredAtUtc": opt_time.clone(), "endedAtUtc": opt_time,
            "transcriptPath": {"type": ["string", "null"], "description": "`outbound-ai-YYYYMMDD-HHMMSS-<callId>.txt` once an answered call has ended."},
            "attempt": {"type": "integer", "minimum": 0},
            "retriesLeft": {"type": "integer", "minimum": 0}}})
}

fn rest(summary: &str, description: &str, id: &str) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("operationId".into(), json!(id));
    op.insert("tags".into(), json!([TAG]));
    op.insert("summary".into(), json!(summary));
    op.insert("description".into(), json!(description));
    op.insert("security".into(), json!([{"codebBearer": []}]));
    op
}

fn with_responses(
    mut op: Map<String, Value>,
    ok: (&str, &str, Value),
    errors: &[CodebError],
) -> Value {
    let mut responses = Map::new();
    responses.insert(ok.0.into(), answer(ok.1, ok.2));
    let mut all = vec![
        CodebError::Unauthorized,
        CodebError::Forbidden,
        CodebError::RateLimited {
            retry_after_seconds: 1,
        },
        CodebError::Internal,
    ];
    all.extend(errors.iter().cloned());
    refusals(&mut responses, &all);
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

fn token_operation() -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), answer("An access token.",
        json!({"type": "object", "required": ["access_token", "token_type", "expires_in"], "additionalProperties": false,
               "properties": {"access_token": {"type": "string"}, "token_type": {"const": "Bearer"},
                              "expires_in": {"const": codeb::TOKEN_LIFETIME_SECONDS}, "scope": {"type": "string"}}})));
    for e in [
        TokenError::InvalidRequest("x".into()),
        TokenError::InvalidGrant,
        TokenError::SlowDown {
            retry_after_seconds: 1,
        },
        TokenError::ServerError,
    ] {
        let (status, code, _) = e.parts();
        let entry = responses.entry(status.to_string()).or_insert_with(|| {
            answer(
                "An RFC 6749 §5.2 error.",
                json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}}),
            )
        });
        let d = entry["description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        entry["description"] = json!(format!("{d} `{code}`"));
    }
    json!({"operationId": "codebToken", "tags": [TAG],
        "summary": "CodeB: exchange a username and password for an access token",
        "description": "OAuth 2.0 password grant (RFC 6749 §4.3) for a tenant user (admin API `/admin/tenants/{tenant_id}/users`) at the tenant's `codeb_host`. `invalid_grant` for a wrong username or password (the same answer); failed logins are throttled per user and per client address (`slow_down`, 429, with `Retry-After`). `Cache-Control: no-store`.",
        "security": [],
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["grant_type", "username", "password"],
            "properties": {"grant_type": {"const": "password"}, "username": {"type": "string"},
                           "password": {"type": "string"}, "scope": {"type": "string"}}}}}},
        "responses": responses})
}

fn create_operation() -> Value {
    let text = |max: usize, d: &str| json!({"type": "string", "maxLength": max, "description": d});
    let int = |min: u32, max: u32, d: &str| json!({"type": "integer", "minimum": min, "maximum": max, "description": d});
    let mut op = rest(
        "CodeB: schedule an AI assistant call",
        "The document's body; unknown fields are ignored. `phone` is normalised (spaces, dashes, parentheses, a leading `00` -> `+`) and must then be E.164; the number is added to the tenant's whitelist (`whitelistAdded`: it was not there before). `systemPrompt` is plain text, or the slug of a saved prompt (admin API `/admin/tenants/{tenant_id}/prompts/{slug}`). `apiKey` is this call's engine key: sealed into the call's offer, never stored in clear or returned. `email` gets the transcript and outcome when the call ends. Placed with the tenant's default agent, through the same validation and limits as `POST /v1/calls` (refusals name CodeB's fields).",
        "codebCreateCall",
    );
    op.insert("requestBody".into(), json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["phone", "email", "systemPrompt", "apiKey"],
        "properties": {
            "phone": text(64, "E.164, e.g. +4915157610183."),
            "displayName": text(200, "The caller name the callee sees (SIP From display name); default: the phone."),
            "email": text(254, "Where the transcript and outcome are mailed when the call ends."),
            "systemPrompt": text(20_000, "Instructions, or a saved prompt's slug."),
            "apiKey": text(512, "The engine key for this call only."),
            "model": text(128, "Engine model id; default: the agent's."),
            "voice": text(64, "Default Aoede."),
            "language": text(35, "BCP-47; default en-US."),
            "maxSeconds": int(10, 3600, "Default 300."),
            "retries": int(0, 10, "Redials on no-answer / busy; default 0."),
            "retryDelayMinutes": int(1, 1440, "Default 5."),
            "scheduleAtUtc": {"type": "string", "format": "date-time", "description": "ISO-8601 UTC; absent: dial now."}}}}}}));
    with_responses(
        op,
        (
            "200",
            "The call was accepted.",
            json!({"type": "object", "additionalProperties": false,
            "required": ["ok", "callId", "tenant", "whitelistAdded", "whitelistError", "bridgeReply"],
            "properties": {"ok": {"const": true}, "callId": {"type": "string", "pattern": "^oac-[0-9a-f]{22}$"},
                "tenant": {"type": "string"}, "whitelistAdded": {"type": "boolean"},
                "whitelistError": {"type": ["string", "null"]},
                "bridgeReply": {"type": "string", "description": "The native call (`POST /v1/calls`'s answer) as JSON text."}}}),
        ),
        &[
            CodebError::BadRequest("x".into()),
            CodebError::CallInProgress,
        ],
    )
}

fn list_operation() -> Value {
    let mut op = rest(
        "CodeB: list calls",
        "Newest first. `status`: comma-separated words (scheduled, in-flight, ended-success, ended-failed-final, cancelled); `limit` 1-200 (default 50), `offset` 0-10000.",
        "codebListCalls",
    );
    op.insert("parameters".into(), json!([
        {"name": "status", "in": "query", "required": false, "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": codeb::LIST_MAX_LIMIT}},
        {"name": "offset", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "maximum": codeb::LIST_MAX_OFFSET}}]));
    with_responses(
        op,
        (
            "200",
            "A page of calls.",
            json!({"type": "object", "additionalProperties": false,
            "required": ["ok", "tenant", "calls", "limit", "offset"],
            "properties": {"ok": {"const": true}, "tenant": {"type": "string"},
                "calls": {"type": "array", "items": call_data()},
                "limit": {"type": "integer"}, "offset": {"type": "integer"}}}),
        ),
        &[CodebError::BadRequest("x".into())],
    )
}

fn get_operation() -> Value {
    let op = rest(
        "CodeB: one call",
        "Status, outcome, transcript path, attempt counter and retry budget.",
        "codebGetCall",
    );
    with_responses(
        op,
        (
            "200",
            "The call.",
            json!({"type": "object", "additionalProperties": false,
            "required": ["ok", "tenant", "call"],
            "properties": {"ok": {"const": true}, "tenant": {"type": "string"}, "call": call_data()}}),
        ),
        &[CodebError::NotFound],
    )
}

fn hangup_operation() -> Value {
    let op = rest(
        "CodeB: cancel or hang up a call",
        "Cancels a scheduled call or ends a live one. Idempotent: the same answer for a call already ended.",
        "codebHangupCall",
    );
    with_responses(
        op,
        (
            "200",
            "The call's status after the request.",
            json!({"type": "object", "additionalProperties": false,
            "required": ["ok", "callId", "status"],
            "properties": {"ok": {"const": true}, "callId": {"type": "string"},
                "status": {"type": "string", "enum": ["scheduled", "in-flight", "ended-success", "ended-failed-final", "cancelled"]}}}),
        ),
        &[CodebError::NotFound],
    )
}

fn transcript_operation() -> Value {
    let op = rest(
        "CodeB: a call's transcript file",
        "`outbound-ai-YYYYMMDD-HHMMSS-oac-<id>.txt` (one line per turn, `[hh:mm:ss] AI: ...` / `USER: ...`, UTC clock time) or `.json` (per-turn timestamps and role labels), under the name the call's answers and webhooks give; served once an answered call has ended.",
        "codebGetTranscript",
    );
    let mut v = with_responses(
        op,
        (
            "200",
            "The transcript (`.json`).",
            json!({"type": "object"}),
        ),
        &[CodebError::NotFound],
    );
    v["responses"]["200"]["content"]["text/plain"] = json!({"schema": {"type": "string"}});
    v
}

/// (path, path item) of each CodeB operation.
pub(super) fn paths() -> Vec<(&'static str, Value)> {
    vec![
        (codeb::TOKEN_PATH, json!({"post": token_operation()})),
        (
            codeb::CALLS_PATH,
            json!({"post": create_operation(), "get": list_operation()}),
        ),
        (
            "/api.ashx/v1/calls/{call_id}",
            json!({"parameters": [call_id_param()], "get": get_operation()}),
        ),
        (
            "/api.ashx/v1/calls/{call_id}/hangup",
            json!({"parameters": [call_id_param()], "post": hangup_operation()}),
        ),
        (
            "/api.ashx/v1/transcripts/{name}",
            json!({"parameters": [{"name": "name", "in": "path", "required": true,
                "description": "The transcript's file name.",
                "schema": {"type": "string", "pattern": "^outbound-ai-[0-9]{8}-[0-9]{6}-oac-[0-9a-f]{22}\\.(txt|json)$"}}],
                "get": transcript_operation()}),
        ),
    ]
}
