//! Small builders for schemas and operations (references, nullable types,
//! records, list pages, error responses) that the document is written with.

use super::patterns::*;
use crate::error::ErrorCode;
use crate::limits::CONCURRENCY_RETRY_AFTER_SECONDS;
use serde_json::{json, Map, Value};
use voxline_shared::CallStatus;

pub(super) fn engine_key_doc(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": crate::engine_keys::MAX_KEY_CHARS, "pattern": "^[!-~]+$", "writeOnly": true,
        "description": format!("{what} Printable ASCII without spaces (422 `invalid_value`). Sealed (AES-256-GCM) before it is stored, handed only to the sidecar that runs the call, never returned or logged; a deployment without the `VOXLINE_SEALING_KEY` secret refuses it (503 `engine_keys_unavailable`).")})
}
pub(super) fn engine_url_doc(what: &str) -> Value {
    json!({"type": "string", "maxLength": crate::engine_keys::MAX_BASE_URL_CHARS, "pattern": ENGINE_URL_PATTERN,
        "description": format!("{what} `wss://` to a public host (`ws://` loopback in local development only); anything else is 422 `invalid_url`. The engine's path (`/v1/realtime`, Gemini's BidiGenerateContent) is appended.")})
}
pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
/// Lets a schema also be `null`: `"type": "x"` becomes `["x", "null"]` and an `enum` gains `null`.
pub(super) fn nullable(mut s: Value) -> Value {
    // No `type` to widen (e.g. a `$ref` in `allOf`): any of it or null.
    if s.get("type").is_none() && s.get("enum").is_none() {
        let description = s.as_object_mut().and_then(|o| o.remove("description"));
        let mut either = json!({"anyOf": [s, {"type": "null"}]});
        if let Some(d) = description {
            either["description"] = d;
        }
        return either;
    }
    match s.get("type").cloned() {
        Some(Value::String(t)) => s["type"] = json!([t, "null"]),
        Some(Value::Array(mut ts)) => {
            ts.push(json!("null"));
            s["type"] = Value::Array(ts);
        }
        _ => {}
    }
    if let Some(Value::Array(e)) = s.get_mut("enum") {
        e.push(Value::Null);
    }
    s
}
pub(super) fn with_description(mut s: Value, d: &str) -> Value {
    s["description"] = json!(d);
    s
}
pub(super) fn string_max(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}
pub(super) fn id_schema(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}_[0-9a-f]{{10,40}}$")})
}
pub(super) fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time", "description": "RFC 3339 in UTC with milliseconds, e.g. `2026-01-02T15:04:05.000Z`."})
}
pub(super) fn object_const(name: &str) -> Value {
    json!({"type": "string", "const": name})
}
pub(super) fn int_range((min, max, default): (i64, i64, i64)) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max, "default": default})
}
pub(super) fn props(fields: Vec<(&str, Value)>) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
/// A response record: every property is always present (optional ones as `null`).
pub(super) fn record(description: &str, fields: Vec<(&str, Value)>) -> Value {
    let properties = props(fields);
    let required: Vec<&String> = properties.keys().collect();
    json!({"type": "object", "description": description, "required": required, "properties": properties})
}
/// A request body: closed (`additionalProperties: false`), with these required.
pub(super) fn input(description: &str, fields: Vec<(&str, Value)>, required: &[&str]) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": false,
           "required": required, "properties": props(fields)})
}
pub(super) fn list_of(description: &str, item: &str) -> Value {
    record(
        description,
        vec![
            ("object", object_const("list")),
            ("data", json!({"type": "array", "items": schema_ref(item)})),
            (
                "has_more",
                json!({"type": "boolean", "description": "True when `next_cursor` leads to more items."}),
            ),
            (
                "next_cursor",
                nullable(
                    json!({"type": "string", "description": "Pass as `cursor` to get the next page; null on the last page."}),
                ),
            ),
        ],
    )
}
pub(super) fn status_names() -> Vec<&'static str> {
    CallStatus::ALL.iter().map(|s| s.as_str()).collect()
}
pub(super) fn ended_reason_names() -> Vec<Value> {
    ENDED_REASONS
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect()
}
pub(super) fn error_code_description() -> String {
    let mut d = String::from("Stable machine code. Codes never change meaning once shipped:\n");
    for c in ErrorCode::ALL {
        d.push_str(&format!(
            "- `{}` ({}): {}\n",
            c.as_str(),
            c.http_status(),
            c.describe()
        ));
    }
    d
}

// ---- components ----
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Auth {
    None,
    ApiKey,
    Admin,
}
pub(super) struct Op {
    value: Value,
    auth: Auth,
    success: Vec<(u16, Value)>,
    errors: Vec<ErrorCode>,
}
pub(super) fn op(
    operation_id: &str,
    tag: &str,
    auth: Auth,
    summary: &str,
    description: &str,
) -> Op {
    Op {
        value: json!({"operationId": operation_id, "tags": [tag], "summary": summary, "description": description}),
        auth,
        success: Vec::new(),
        errors: Vec::new(),
    }
}
impl Op {
    pub(super) fn ok(mut self, status: u16, description: &str, schema: &str) -> Op {
        self.success.push((status, json!({"description": description, "content": {"application/json": {"schema": schema_ref(schema)}}})));
        self
    }

    /// 200 as JSON (`schema`) or as plain text (`text_description`).
    pub(super) fn ok_json_or_text(
        mut self,
        description: &str,
        schema: &str,
        text_description: &str,
    ) -> Op {
        self.success.push((
            200,
            json!({"description": description, "content": {
            "application/json": {"schema": schema_ref(schema)},
            "text/plain": {"schema": {"type": "string", "description": text_description}}}}),
        ));
        self
    }

    /// A non-JSON body (`content_type`), with response headers.
    pub(super) fn ok_binary(mut self, description: &str, content_type: &str, headers: Value) -> Op {
        self.success.push((200, json!({"description": description, "headers": headers,
            "content": {content_type: {"schema": {"type": "string", "contentMediaType": content_type}}}})));
        self
    }

    /// A text body of one of `content_types` (HTML, script, style), with response headers.
    pub(super) fn ok_files(
        mut self,
        description: &str,
        content_types: &[&str],
        headers: Value,
    ) -> Op {
        let content: Map<String, Value> = content_types
            .iter()
            .map(|ct| (ct.to_string(), json!({"schema": {"type": "string"}})))
            .collect();
        self.success.push((
            200,
            json!({"description": description, "headers": headers, "content": content}),
        ));
        self
    }

    pub(super) fn ok_with_headers(
        mut self,
        status: u16,
        description: &str,
        schema: &str,
        headers: Value,
    ) -> Op {
        self.success.push((
            status,
            json!({"description": description, "headers": headers,
            "content": {"application/json": {"schema": schema_ref(schema)}}}),
        ));
        self
    }

    /// A JSON body; `parse_object`'s failures come with it.
    pub(super) fn body(mut self, schema: &str, required: bool) -> Op {
        self.value["requestBody"] = json!({"required": required, "content": {"application/json": {"schema": schema_ref(schema)}}});
        self.errors(&[
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::InvalidJson,
            ErrorCode::UnknownField,
            ErrorCode::InvalidType,
        ])
    }

    pub(super) fn errors(mut self, codes: &[ErrorCode]) -> Op {
        self.errors.extend_from_slice(codes);
        self
    }

    pub(super) fn query(mut self, params: Value) -> Op {
        self.value["parameters"] = params;
        self
    }

    pub(super) fn build(mut self) -> Value {
        match self.auth {
            Auth::None => self.value["security"] = json!([]),
            Auth::ApiKey => {
                self.value["security"] = json!([{"bearerAuth": []}]);
                self.errors.extend([
                    ErrorCode::MissingCredentials,
                    ErrorCode::InvalidCredentials,
                    ErrorCode::InvalidRequestSignature,
                    ErrorCode::SignatureVersionUnsupported,
                    ErrorCode::ReplayedRequest,
                    ErrorCode::TenantDisabled,
                    ErrorCode::ApiAccessDisabled,
                    ErrorCode::RateLimited,
                    ErrorCode::TooManyFailedAttempts,
                    ErrorCode::SecretsUnavailable,
                ]);
                // Keys with `require_signature` sign every request.
                let signature = json!({"name": "X-Signature", "in": "header", "required": false,
                    "description": "Required for API keys minted with `require_signature`: `t=<unix seconds>,v2=<hex HMAC-SHA256(signing_secret, \"{t}\\n{METHOD}\\n{path and query}\\n{raw body}\")>` (see `bearerAuth`).",
                    "schema": {"type": "string"}});
                match self
                    .value
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                {
                    Some(params) => params.push(signature),
                    None => self.value["parameters"] = json!([signature]),
                }
                // Every authenticated /v1 answer carries the tightest limit's state.
                for (_, r) in &mut self.success {
                    let headers = r
                        .as_object_mut()
                        .and_then(|o| o.entry("headers").or_insert(json!({})).as_object_mut());
                    if let Some(h) = headers {
                        h.extend(
                            rate_limit_headers(false)
                                .as_object()
                                .cloned()
                                .unwrap_or_default(),
                        );
                    }
                }
            }
            Auth::Admin => {
                self.value["security"] = json!([{"adminBearerAuth": []}]);
                self.errors.extend([
                    ErrorCode::MissingCredentials,
                    ErrorCode::InvalidCredentials,
                    ErrorCode::TooManyFailedAttempts,
                ]);
            }
        }
        if self.auth != Auth::None {
            // Every authenticated route reads storage.
            self.errors
                .extend([ErrorCode::InternalError, ErrorCode::StorageUnavailable]);
        }
        let mut responses = Map::new();
        for (status, r) in self.success {
            responses.insert(status.to_string(), r);
        }
        let mut statuses: Vec<u16> = self.errors.iter().map(|c| c.http_status()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        for status in statuses {
            // In ErrorCode::ALL order, each once.
            let codes: Vec<ErrorCode> = ErrorCode::ALL
                .iter()
                .copied()
                .filter(|c| c.http_status() == status && self.errors.contains(c))
                .collect();
            let mut r = error_response(status, &codes);
            if status == 429 {
                r["headers"] = rate_limit_headers(true);
            }
            responses.insert(status.to_string(), r);
        }
        self.value["responses"] = Value::Object(responses);
        self.value
    }
}
pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        413 => "Payload too large",
        415 => "Unsupported media type",
        422 => "Unprocessable content",
        429 => "Too many requests",
        500 => "Internal server error",
        503 => "Service unavailable",
        _ => "Error",
    }
}
/// `X-RateLimit-*` (and, on 429, `Retry-After`) as response headers.
pub(super) fn rate_limit_headers(refused: bool) -> Value {
    let int = |d: &str| json!({"description": d, "schema": {"type": "integer", "minimum": 0}});
    let mut h = json!({
        "X-RateLimit-Limit": int("The limit of the tightest applicable rate limit (per API key, client IP or, for a new call, destination number); on `too_many_failed_attempts`, the client address's limit of wrong credentials."),
        "X-RateLimit-Remaining": int("Requests left in that limit's current window."),
        "X-RateLimit-Reset": int("Seconds until that window resets."),
    });
    if refused {
        h["Retry-After"] = int(&format!("Seconds to wait before retrying: for `rate_limited` the refusing limit's reset; for `too_many_failed_attempts` the end of the client address's failure window; for `concurrency_limit_reached` a fixed {CONCURRENCY_RETRY_AFTER_SECONDS} s polling hint (a slot frees when a call ends)."));
    }
    h
}
/// The shared `Error` schema with `code` narrowed to what this operation can return with this status.
pub(super) fn error_response(status: u16, codes: &[ErrorCode]) -> Value {
    let mut d = format!("{}. `error.code` is one of:", reason_phrase(status));
    for c in codes {
        d.push_str(&format!("\n- `{}`: {}", c.as_str(), c.describe()));
    }
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    json!({
        "description": d,
        "content": {"application/json": {"schema": {"allOf": [
            schema_ref("Error"),
            {"properties": {"error": {"properties": {"code": {"enum": names}}}}}
        ]}}}
    })
}
/// The `{name}` parameters of a path template, in order, wherever they stand
/// in a segment (`transcript.{format}` has one too).
pub(super) fn template_params(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}
pub(super) fn path_item(pattern: &str) -> Value {
    let params: Vec<Value> = template_params(pattern)
        .into_iter()
        .map(|name| {
            let (prefix, what) = match name {
                "call_id" => ("call", "The call's id."),
                "tenant_id" => ("ten", "The tenant's id."),
                "agent_id" => ("agt", "The agent's id."),
                "key_id" => ("key", "The API key's id."),
                "sidecar_id" => ("", "The sidecar's id."),
                "webhook_id" => ("wh", "The webhook endpoint's id."),
                "delivery_id" => ("dlv", "The webhook delivery's id."),
                "format" => ("", "The file's format."),
                "slug" => ("", "The saved prompt's slug."),
                "username" => ("", "The CodeB user's name (matched lowercased)."),
                "number" => ("", "The phone number, E.164 (`+` as is or `%2B`)."),
                "pk" => ("", "The directory user's or queue's `pk`."),
                "voice360_key_id" => ("v360k", "The Voice360 key's id."),
                "contact_id" => ("con", "The contact's id."),
                "asset" => ("", "The console asset's file name."),
                _ => ("", "An id."),
            };
            let schema = match (name, prefix) {
                ("sidecar_id", _) => json!({"type": "string", "pattern": SIDECAR_ID_PATTERN}),
                ("format", _) => json!({"type": "string", "enum": ["txt", "json"]}),
                ("asset", _) => json!({"type": "string", "enum": crate::console::ASSETS.iter().map(|a| a.0).collect::<Vec<_>>()}),
                ("number", _) => json!({"type": "string", "pattern": "^(\\+|%2[bB])[1-9][0-9]{6,14}$"}),
                ("pk", _) => json!({"type": "string", "pattern": PK_PATTERN}),
                ("slug", _) => json!({"type": "string", "minLength": 1, "maxLength": crate::api::prompts::SLUG_MAX, "pattern": "^[a-z0-9][a-z0-9-]*$"}),
                (_, "") => json!({"type": "string", "minLength": 1}),
                _ => id_schema(prefix),
            };
            let description = if name == "format" || name == "asset" { what.to_string() } else { format!("{what} An id of another shape answers 404.") };
            json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
        })
        .collect();
    if params.is_empty() {
        json!({})
    } else {
        json!({"parameters": params})
    }
}
