//! An agent's `tools` setting (issue 18): customer tools the engine may call
//! mid-call. Pure: [`parse`] reads the JSON the admin API was given, and the
//! URLs go through the same SSRF guard as webhook endpoints.

use crate::error::{ApiError, ErrorCode};
use crate::limits::{
    MAX_AGENT_TOOLS, TOOL_DESCRIPTION_MAX, TOOL_NAME_MAX, TOOL_PARAMETERS_MAX_BYTES,
    TOOL_TIMEOUT_MS, WEBHOOK_URL_MAX,
};
use crate::model::AgentTool;
use crate::url_guard;
use serde_json::{Map, Value};
use voxline_shared::sidecar_link::BUILT_IN_TOOLS;

/// The keys a tool object may have.
pub const TOOL_FIELDS: [&str; 5] = ["name", "description", "parameters", "url", "timeout_ms"];

type Result<T> = std::result::Result<T, ApiError>;

/// Whether `name` is a tool name: 1-64 of `A-Za-z0-9_-` (what OpenAI and
/// Gemini accept as a function name).
pub fn is_tool_name(name: &str) -> bool {
    (1..=TOOL_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `tools` array: at most [`MAX_AGENT_TOOLS`], names unique and not
/// built-in, each URL https to a public host (loopback http in `dev_mode`).
/// `null` is an empty list (PATCH: removes them).
pub fn parse(value: &Value, dev_mode: bool) -> Result<Vec<AgentTool>> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::field(
                ErrorCode::InvalidType,
                "tools",
                "'tools' must be an array of tool objects",
            ))
        }
    };
    if items.len() > MAX_AGENT_TOOLS {
        return Err(ApiError::field(
            ErrorCode::OutOfRange,
            "tools",
            format!(
                "'tools' has {} items; the limit is {MAX_AGENT_TOOLS}",
                items.len()
            ),
        ));
    }
    let mut tools: Vec<AgentTool> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let tool = parse_one(i, item, dev_mode)?;
        if tools.iter().any(|t| t.name == tool.name) {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                &format!("tools[{i}].name"),
                format!("two tools are named '{}'", tool.name),
            ));
        }
        tools.push(tool);
    }
    Ok(tools)
}

fn parse_one(i: usize, item: &Value, dev_mode: bool) -> Result<AgentTool> {
    let at = |key: &str| format!("tools[{i}].{key}");
    let Value::Object(m) = item else {
        return Err(ApiError::field(
            ErrorCode::InvalidType,
            &format!("tools[{i}]"),
            "each tool must be a JSON object",
        ));
    };
    if let Some(unknown) = m.keys().find(|k| !TOOL_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::field(
            ErrorCode::UnknownField,
            &at(unknown),
            format!(
                "unknown tool field '{unknown}'; allowed: {}",
                TOOL_FIELDS.join(", ")
            ),
        ));
    }
    let name = string(m, "name", &at("name"), TOOL_NAME_MAX)?.ok_or_else(|| {
        ApiError::field(
            ErrorCode::MissingField,
            &at("name"),
            "a tool needs a 'name'",
        )
    })?;
    if !is_tool_name(&name) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            &at("name"),
            "a tool name is 1-64 of A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    if BUILT_IN_TOOLS.contains(&name.as_str()) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            &at("name"),
            format!(
                "'{name}' is a built-in tool; built-in names ({}) cannot be declared",
                BUILT_IN_TOOLS.join(", ")
            ),
        ));
    }
    let description =
        string(m, "description", &at("description"), TOOL_DESCRIPTION_MAX)?.unwrap_or_default();
    let parameters = match m.get("parameters") {
        None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
        Some(Value::Object(schema)) => {
            let size = serde_json::to_vec(schema).map_or(usize::MAX, |b| b.len());
            if size > TOOL_PARAMETERS_MAX_BYTES {
                return Err(ApiError::field(
                    ErrorCode::ValueTooLong,
                    &at("parameters"),
                    format!("the schema is {size} bytes; the limit is {TOOL_PARAMETERS_MAX_BYTES}"),
                ));
            }
            // The engines take an object's schema as a function's parameters.
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(ApiError::field(
                    ErrorCode::InvalidValue,
                    &at("parameters"),
                    "'parameters' must be a JSON Schema with \"type\": \"object\"",
                ));
            }
            Value::Object(schema.clone())
        }
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::InvalidType,
                &at("parameters"),
                "'parameters' must be a JSON Schema object",
            ))
        }
    };
    let url = string(m, "url", &at("url"), WEBHOOK_URL_MAX)?.ok_or_else(|| {
        ApiError::field(ErrorCode::MissingField, &at("url"), "a tool needs a 'url'")
    })?;
    url_guard::check_webhook(&url, dev_mode)
        .map_err(|why| ApiError::field(ErrorCode::InvalidUrl, &at("url"), why))?;
    let (min, max, default) = TOOL_TIMEOUT_MS;
    let timeout_ms = match m.get("timeout_ms") {
        None | Some(Value::Null) => default,
        // JSON Schema's integers include `8000.0`, as the API's other integers do.
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (min as f64..=max as f64).contains(&f) => f as i64,
            Some(f) if f.fract() == 0.0 => {
                return Err(ApiError::field(
                    ErrorCode::OutOfRange,
                    &at("timeout_ms"),
                    format!("'timeout_ms' must be between {min} and {max}"),
                ))
            }
            _ => {
                return Err(ApiError::field(
                    ErrorCode::InvalidType,
                    &at("timeout_ms"),
                    "'timeout_ms' must be an integer",
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::InvalidType,
                &at("timeout_ms"),
                "'timeout_ms' must be an integer",
            ))
        }
    };
    Ok(AgentTool {
        name,
        description,
        parameters,
        url,
        timeout_ms: timeout_ms as u32,
    })
}

fn string(m: &Map<String, Value>, key: &str, field: &str, max: usize) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n > max {
                return Err(ApiError::field(
                    ErrorCode::ValueTooLong,
                    field,
                    format!("'{key}' is {n} characters; the limit is {max}"),
                ));
            }
            Ok(Some(s.clone()))
        }
        Some(_) => Err(ApiError::field(
            ErrorCode::InvalidType,
            field,
            format!("'{key}' must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(extra: Value) -> Value {
        let mut t = json!({"name": "lookup_order", "description": "Find an order",
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
            "url": "https://tools.example.com/lookup"});
        if let (Value::Object(t), Value::Object(e)) = (&mut t, extra) {
            t.extend(e);
        }
        t
    }

    fn refused(v: Value) -> (ErrorCode, String) {
        let e = parse(&v, false).unwrap_err();
        (e.code, e.field.unwrap_or_default())
    }

    #[test]
    fn a_valid_tool_is_read_with_its_default_timeout() {
        let tools = parse(&json!([tool(json!({}))]), false).unwrap();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].name, "lookup_order");
        assert_eq!(tools[0].timeout_ms, 8_000);
        assert_eq!(tools[0].parameters["properties"]["order"]["type"], "string");
        let t = parse(
            &json!([tool(json!({"timeout_ms": 20000, "parameters": null}))]),
            false,
        )
        .unwrap();
        assert_eq!(t[0].timeout_ms, 20_000);
        assert_eq!(t[0].parameters["type"], "object");
        assert!(parse(&Value::Null, false).unwrap().is_empty());
    }

    #[test]
    fn bad_tools_are_refused_naming_the_field() {
        assert_eq!(
            refused(json!([tool(json!({"name": "end_call"}))])),
            (ErrorCode::InvalidValue, "tools[0].name".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"name": "has space"}))])),
            (ErrorCode::InvalidValue, "tools[0].name".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"name": "x".repeat(65)}))])),
            (ErrorCode::ValueTooLong, "tools[0].name".into())
        );
        assert_eq!(
            refused(json!([tool(json!({})), tool(json!({}))])),
            (ErrorCode::InvalidValue, "tools[1].name".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"url": "http://tools.example.com/x"}))])),
            (ErrorCode::InvalidUrl, "tools[0].url".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"url": "https://10.0.0.5/x"}))])),
            (ErrorCode::InvalidUrl, "tools[0].url".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"timeout_ms": 20001}))])),
            (ErrorCode::OutOfRange, "tools[0].timeout_ms".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"timeout_ms": 500.5}))])),
            (ErrorCode::InvalidType, "tools[0].timeout_ms".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"timeout_ms": "500"}))])),
            (ErrorCode::InvalidType, "tools[0].timeout_ms".into())
        );
        let whole = parse(&json!([tool(json!({"timeout_ms": 500.0}))]), false).unwrap();
        assert_eq!(whole[0].timeout_ms, 500);
        assert_eq!(
            refused(json!([tool(json!({"parameters": {"type": "string"}}))])),
            (ErrorCode::InvalidValue, "tools[0].parameters".into())
        );
        let big = json!({"type": "object", "description": "x".repeat(9000)});
        assert_eq!(
            refused(json!([tool(json!({ "parameters": big }))])),
            (ErrorCode::ValueTooLong, "tools[0].parameters".into())
        );
        assert_eq!(
            refused(json!([tool(json!({"secret": "x"}))])),
            (ErrorCode::UnknownField, "tools[0].secret".into())
        );
        let many: Vec<Value> = (0..17)
            .map(|i| tool(json!({"name": format!("t{i}")})))
            .collect();
        assert_eq!(
            refused(Value::Array(many)),
            (ErrorCode::OutOfRange, "tools".into())
        );
        assert_eq!(
            refused(json!("x")),
            (ErrorCode::InvalidType, "tools".into())
        );
    }

    #[test]
    fn loopback_http_is_allowed_in_development_only() {
        let local = json!([tool(json!({"url": "http://127.0.0.1:9000/tool"}))]);
        assert!(parse(&local, true).is_ok());
        assert_eq!(
            refused(local),
            (ErrorCode::InvalidUrl, "tools[0].url".into())
        );
    }
}
