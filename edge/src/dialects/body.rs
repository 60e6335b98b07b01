//! Reading the members of a dialect's JSON body, leniently as the vendors'
//! servers do (unknown members ignored) but bounded. Problems come back as a
//! message naming the member; each dialect wraps it in its own error.

use serde_json::value::RawValue;
use serde_json::Value;

/// An optional string member: `None` when absent or `null`.
pub fn optional_string(
    value: &Value,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, String> {
    match value.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max_chars => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("{name} is longer than {max_chars} characters")),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// The `metadata` object's JSON text exactly as sent (key order, number
/// forms), `None` when absent or `null`. `value` is `body` parsed.
pub fn metadata(value: &Value, body: &[u8]) -> Result<Option<Box<RawValue>>, String> {
    const NOT_AN_OBJECT: &str = "metadata must be an object";
    match value.get("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(_)) => {
            #[derive(serde::Deserialize)]
            struct Only {
                metadata: Box<RawValue>,
            }
            serde_json::from_slice::<Only>(body)
                .map(|o| Some(o.metadata))
                .map_err(|_| NOT_AN_OBJECT.to_string())
        }
        Some(_) => Err(NOT_AN_OBJECT.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_metadata() {
        let body = br#"{"name":"Ann","n":3,"long":"abcd","metadata":{"b": 1.50, "a": [1]}}"#;
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(optional_string(&v, "name", 10), Ok(Some("Ann".into())));
        assert_eq!(optional_string(&v, "absent", 10), Ok(None));
        assert_eq!(
            optional_string(&v, "n", 10),
            Err("n must be a string".into())
        );
        assert_eq!(
            optional_string(&v, "long", 3),
            Err("long is longer than 3 characters".into())
        );
        assert_eq!(
            metadata(&v, body).unwrap().unwrap().get(),
            r#"{"b": 1.50, "a": [1]}"#
        );
        let bad = br#"{"metadata":[1]}"#;
        let v: Value = serde_json::from_slice(bad).unwrap();
        assert_eq!(metadata(&v, bad).unwrap_err(), "metadata must be an object");
    }
}
