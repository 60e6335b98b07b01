//! Strict reading of JSON request bodies: exact content type, size cap, an
//! object at the top, no unknown fields, and typed getters that name the field
//! in every error. `null` counts as absent for optional fields.

use crate::error::{ApiError, ErrorCode};
use serde_json::{Map, Value};

/// [`parse_object`] of a request's body, capped at `MAX_BODY_BYTES`.
pub fn parse_request(req: &crate::http::ApiRequest, allowed: &[&str]) -> Result<Fields, ApiError> {
    parse_object(
        req.content_type.as_deref(),
        &req.body,
        crate::limits::MAX_BODY_BYTES,
        allowed,
    )
}

/// Parses a request body the way every JSON endpoint of the API does.
pub fn parse_object(
    content_type: Option<&str>,
    body: &[u8],
    max_bytes: usize,
    allowed: &[&str],
) -> Result<Fields, ApiError> {
    if body.len() > max_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request body is {} bytes; the limit is {max_bytes}",
                body.len()
            ),
        ));
    }
    if !is_json_content_type(content_type) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "expected Content-Type: application/json, got {}",
                content_type.map_or("none".to_string(), |c| format!("'{}'", truncate(c, 80)))
            ),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "request body is empty; send a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice::<StrictValue>(body)
        .map(|v| v.0)
        .map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("body is not valid JSON: {e}"),
            )
        })?;
    let Value::Object(map) = value else {
        return Err(ApiError::new(
            ErrorCode::InvalidType,
            "body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::field(
            ErrorCode::UnknownField,
            unknown,
            format!(
                "unknown field '{}'; allowed: {}",
                truncate(unknown, 64),
                allowed.join(", ")
            ),
        ));
    }
    Ok(Fields { map })
}

/// A JSON value that refuses duplicate object keys at any depth. Parsers
/// disagree on which duplicate wins (first, last, error), so a strict API
/// rejects them instead of guessing.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key '{}'",
                    truncate(&key, 64)
                )));
            }
            let StrictValue(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(Value::Object(map))
    }
}

/// `application/json`, optionally with parameters such as `; charset=utf-8`.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// How a JSON value reads as an integer.
enum JsonInteger {
    Int(i64),
    /// An integer, but past what any field allows (e.g. 18446744073709551616).
    FarOutOfRange,
    NotAnInteger,
}

fn json_integer(v: &Value) -> JsonInteger {
    let Value::Number(n) = v else {
        return JsonInteger::NotAnInteger;
    };
    match n.as_i64() {
        Some(i) => JsonInteger::Int(i),
        None if n.is_u64() => JsonInteger::FarOutOfRange,
        // 300.0 is an integer in JSON's eyes; 300.5 is not.
        None => match n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0) {
            Some(f) if f.abs() < 9.0e15 => JsonInteger::Int(f as i64),
            Some(_) => JsonInteger::FarOutOfRange,
            None => JsonInteger::NotAnInteger,
        },
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max_chars).collect();
        format!("{cut}...")
    }
}

pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    fn present(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn has(&self, name: &str) -> bool {
        self.present(name).is_some()
    }

    /// The field as given, `null` included (None: not in the body).
    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// Given as an explicit `null` (for the few PATCH fields where null removes a setting).
    pub fn is_null(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(Value::Null))
    }

    pub fn str_opt(&self, name: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
        let Some(v) = self.present(name) else {
            return Ok(None);
        };
        let Value::String(s) = v else {
            return Err(ApiError::field(
                ErrorCode::InvalidType,
                name,
                format!("'{name}' must be a string"),
            ));
        };
        let n = s.chars().count();
        if n > max_chars {
            return Err(ApiError::field(
                ErrorCode::ValueTooLong,
                name,
                format!("'{name}' is {n} characters; the limit is {max_chars}"),
            ));
        }
        Ok(Some(s.clone()))
    }

    /// A non-blank string, required.
    pub fn str_req(&self, name: &str, max_chars: usize) -> Result<String, ApiError> {
        match self.str_opt(name, max_chars)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(ApiError::field(
                ErrorCode::InvalidValue,
                name,
                format!("'{name}' must not be blank"),
            )),
            None => Err(ApiError::field(
                ErrorCode::MissingField,
                name,
                format!("'{name}' is required"),
            )),
        }
    }

    pub fn int_opt(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.present(name) else {
            return Ok(None);
        };
        let out_of_range = || {
            ApiError::field(
                ErrorCode::OutOfRange,
                name,
                format!("'{name}' must be between {min} and {max}"),
            )
        };
        let n = match json_integer(v) {
            JsonInteger::Int(n) => n,
            JsonInteger::FarOutOfRange => return Err(out_of_range()),
            JsonInteger::NotAnInteger => {
                return Err(ApiError::field(
                    ErrorCode::InvalidType,
                    name,
                    format!("'{name}' must be an integer"),
                ))
            }
        };
        if n < min || n > max {
            return Err(ApiError::field(
                ErrorCode::OutOfRange,
                name,
                format!("'{name}' must be between {min} and {max}, got {n}"),
            ));
        }
        Ok(Some(n))
    }

    pub fn bool_opt(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::field(
                ErrorCode::InvalidType,
                name,
                format!("'{name}' must be true or false"),
            )),
        }
    }

    pub fn object_opt(&self, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(ApiError::field(
                ErrorCode::InvalidType,
                name,
                format!("'{name}' must be a JSON object"),
            )),
        }
    }

    /// The array `name` (None when absent) of at most `max_items` items;
    /// `what` names the items in the type error ("integers").
    fn array_opt(
        &self,
        name: &str,
        max_items: usize,
        what: &str,
    ) -> Result<Option<&Vec<Value>>, ApiError> {
        let Some(v) = self.present(name) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(ApiError::field(
                ErrorCode::InvalidType,
                name,
                format!("'{name}' must be an array of {what}"),
            ));
        };
        if items.len() > max_items {
            return Err(ApiError::field(
                ErrorCode::OutOfRange,
                name,
                format!("'{name}' has more than {max_items} items"),
            ));
        }
        Ok(Some(items))
    }

    /// An array of integers, each within `min..=max`.
    pub fn int_list_opt(
        &self,
        name: &str,
        max_items: usize,
        min: i64,
        max: i64,
    ) -> Result<Option<Vec<i64>>, ApiError> {
        let Some(items) = self.array_opt(name, max_items, "integers")? else {
            return Ok(None);
        };
        let range = || {
            ApiError::field(
                ErrorCode::OutOfRange,
                name,
                format!("each item of '{name}' must be between {min} and {max}"),
            )
        };
        let wrong = || {
            ApiError::field(
                ErrorCode::InvalidType,
                name,
                format!("'{name}' must be an array of integers"),
            )
        };
        items
            .iter()
            .map(|item| {
                let n = match json_integer(item) {
                    JsonInteger::Int(n) => n,
                    JsonInteger::FarOutOfRange => return Err(range()),
                    JsonInteger::NotAnInteger => return Err(wrong()),
                };
                if (min..=max).contains(&n) {
                    Ok(n)
                } else {
                    Err(range())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn str_list_opt(
        &self,
        name: &str,
        max_items: usize,
        max_chars: usize,
    ) -> Result<Option<Vec<String>>, ApiError> {
        let Some(items) = self.array_opt(name, max_items, "strings")? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(s) if s.chars().count() <= max_chars => Ok(s.clone()),
                Value::String(_) => Err(ApiError::field(
                    ErrorCode::ValueTooLong,
                    name,
                    format!("an item of '{name}' is too long"),
                )),
                _ => Err(ApiError::field(
                    ErrorCode::InvalidType,
                    name,
                    format!("'{name}' must be an array of strings"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ct: Option<&str>, body: &str) -> Result<Fields, ApiError> {
        parse_object(ct, body.as_bytes(), 1024, &["a", "n", "b"])
    }

    #[test]
    fn rejects_each_kind_of_bad_body_with_its_own_code() {
        let j = Some("application/json");
        assert_eq!(
            parse(None, "{}").err().unwrap().code,
            ErrorCode::UnsupportedMediaType
        );
        assert_eq!(
            parse(Some("text/plain"), "{}").err().unwrap().code,
            ErrorCode::UnsupportedMediaType
        );
        assert_eq!(
            parse(Some("application/jsonx"), "{}").err().unwrap().code,
            ErrorCode::UnsupportedMediaType
        );
        assert_eq!(parse(j, "").err().unwrap().code, ErrorCode::InvalidJson);
        assert_eq!(
            parse(j, "{\"a\":").err().unwrap().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(parse(j, "[1]").err().unwrap().code, ErrorCode::InvalidType);
        let e = parse(j, "{\"zz\":1}").err().unwrap();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::UnknownField, Some("zz"))
        );
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(2000));
        assert_eq!(
            parse(j, &big).err().unwrap().code,
            ErrorCode::PayloadTooLarge
        );
        assert!(parse(Some("Application/JSON; charset=utf-8"), "{}").is_ok());
        assert_eq!(
            parse(j, r#"{"a":1,"a":1}"#).err().unwrap().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse(j, r#"{"a":{"x":[{"y":1,"y":2}]}}"#)
                .err()
                .unwrap()
                .code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse(
                j,
                &format!("{{\"a\":{}{}}}", "[".repeat(500), "]".repeat(500))
            )
            .err()
            .unwrap()
            .code,
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn typed_getters_name_the_field() {
        let f = parse(Some("application/json"), r#"{"a":"xyz","n":5.0,"b":null}"#).unwrap();
        assert_eq!(f.str_opt("a", 3).unwrap().as_deref(), Some("xyz"));
        assert_eq!(f.str_opt("a", 2).unwrap_err().code, ErrorCode::ValueTooLong);
        assert_eq!(f.int_opt("n", 0, 10).unwrap(), Some(5));
        assert_eq!(
            f.int_opt("n", 6, 10).unwrap_err().field.as_deref(),
            Some("n")
        );
        assert_eq!(
            f.int_opt("a", 0, 1).unwrap_err().code,
            ErrorCode::InvalidType
        );
        assert_eq!(f.bool_opt("b").unwrap(), None, "null is absent");
        assert_eq!(f.str_req("b", 5).unwrap_err().code, ErrorCode::MissingField);
        let f = parse(Some("application/json"), r#"{"n":5.5,"a":"  "}"#).unwrap();
        assert_eq!(
            f.int_opt("n", 0, 10).unwrap_err().code,
            ErrorCode::InvalidType
        );
        assert_eq!(f.str_req("a", 5).unwrap_err().code, ErrorCode::InvalidValue);
        let f = parse(
            Some("application/json"),
            r#"{"a":18446744073709551616,"n":-1e300,"b":1e300}"#,
        )
        .unwrap();
        assert_eq!(
            f.int_opt("a", 0, 10).unwrap_err().code,
            ErrorCode::OutOfRange
        );
        assert_eq!(
            f.int_opt("n", 0, 10).unwrap_err().code,
            ErrorCode::OutOfRange
        );
        assert_eq!(
            f.int_opt("b", 0, 10).unwrap_err().code,
            ErrorCode::OutOfRange
        );
        let f = parse(Some("application/json"), r#"{"a":18446744073709551615}"#).unwrap();
        assert_eq!(
            f.int_opt("a", 0, 10).unwrap_err().code,
            ErrorCode::OutOfRange
        );
    }
}
