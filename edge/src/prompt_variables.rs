//! Dynamic variables in a call's prompt: `{{name}}`, `{{phone}}`,
//! `{{metadata.KEY}}` and the call's own `variables` (`{{KEY}}`), filled in
//! once when the call is placed, so the stored and offered prompt is the one
//! the engine speaks from. Pure: no storage, no clock.
//!
//! A placeholder is `{{`, optional blanks, a name (letters, digits, `_`,
//! one `metadata.` prefix), optional blanks, `}}`. Any other text between
//! braces is left as written, so prompts that show JSON keep working. A
//! placeholder naming a variable the call does not have is refused with the
//! name, never left in or replaced by nothing: the agent would read it aloud.

use serde_json::{Map, Value};

/// The variables a call declares (`variables`) at most.
pub const MAX_VARIABLES: usize = 64;
/// Longest variable name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest variable value, in characters.
pub const MAX_VALUE_CHARS: usize = 1_000;
/// Names the call's own `variables` may not take: they are built in.
pub const RESERVED: [&str; 3] = ["name", "phone", "metadata"];

/// What a prompt's placeholders are filled from.
#[derive(Debug, Clone, Copy)]
pub struct Variables<'a> {
    /// The callee's name (`name` of the call); `{{name}}` without one is unknown.
    pub name: Option<&'a str>,
    /// The number called (E.164).
    pub phone: &'a str,
    /// The call's metadata object; `{{metadata.KEY}}` reads its top-level
    /// strings, numbers and booleans.
    pub metadata: Option<&'a Map<String, Value>>,
    /// The call's `variables`.
    pub custom: &'a [(String, String)],
}

/// Why a prompt could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A placeholder names a variable the call does not have.
    Unknown(String),
    /// `{{metadata.KEY}}` names an object, an array or null.
    NotText(String),
}

/// True for a name a variable may have: `[A-Za-z_][A-Za-z0-9_]*`, at most
/// [`MAX_NAME_BYTES`].
pub fn is_variable_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && s.len() <= MAX_NAME_BYTES
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `template` with every placeholder replaced.
pub fn render(template: &str, vars: &Variables<'_>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match placeholder(after) {
            Some((name, consumed)) => {
                out.push_str(&value_of(name, vars)?);
                rest = &after[consumed..];
            }
            None => {
                // Not a placeholder: keep one brace and look again after it.
                out.push('{');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The name of the placeholder `s` starts with (after `{{`) and the bytes
/// it spans through `}}`.
fn placeholder(s: &str) -> Option<(&str, usize)> {
    let close = s.find("}}")?;
    let name = s[..close].trim_matches(|c| c == ' ' || c == '\t');
    let plain = match name.strip_prefix("metadata.") {
        Some(key) => key,
        None => name,
    };
    is_variable_name(plain).then_some((name, close + 2))
}

fn value_of(name: &str, vars: &Variables<'_>) -> Result<String, RenderError> {
    let unknown = || RenderError::Unknown(name.to_string());
    if let Some(key) = name.strip_prefix("metadata.") {
        let v = vars.metadata.and_then(|m| m.get(key)).ok_or_else(unknown)?;
        return match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(RenderError::NotText(name.to_string())),
        };
    }
    match name {
        "name" => vars.name.map(str::to_string).ok_or_else(unknown),
        "phone" => Ok(vars.phone.to_string()),
        _ => vars
            .custom
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars<'a>(meta: &'a Map<String, Value>, custom: &'a [(String, String)]) -> Variables<'a> {
        Variables {
            name: Some("Ada"),
            phone: "+14155550100",
            metadata: Some(meta),
            custom,
        }
    }

    fn meta() -> Map<String, Value> {
        match json!({"crm": 7, "plan": "gold", "vip": true, "nested": {"a": 1}, "none": null}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn built_ins_metadata_and_the_calls_variables_are_filled_in() {
        let m = meta();
        let custom = [("order_id".to_string(), "A-17".to_string())];
        let v = vars(&m, &custom);
        assert_eq!(
            render("Hi {{name}} ({{ phone }}), order {{order_id}}, plan {{metadata.plan}} #{{metadata.crm}} vip={{metadata.vip}}.", &v),
            Ok("Hi Ada (+14155550100), order A-17, plan gold #7 vip=true.".to_string())
        );
    }

    #[test]
    fn text_that_is_not_a_placeholder_is_kept_as_written() {
        let m = meta();
        let v = vars(&m, &[]);
        for t in [
            "Answer as JSON: {\"a\": {{\"b\": 1}}}",
            "{{ }} and {{x y}} and {{1abc}} and {{ unclosed",
            "{{{",
            "}}",
            "",
            "plain",
            "é{{é}}",
        ] {
            assert_eq!(render(t, &v), Ok(t.to_string()), "{t:?}");
        }
        // A brace before a placeholder stays; the placeholder is filled.
        assert_eq!(render("{{{name}}}", &v), Ok("{Ada}".to_string()));
    }

    #[test]
    fn an_unknown_variable_is_refused_by_name() {
        let m = meta();
        let v = vars(&m, &[]);
        assert_eq!(
            render("Hello {{customer}}", &v),
            Err(RenderError::Unknown("customer".into()))
        );
        assert_eq!(
            render("{{metadata.missing}}", &v),
            Err(RenderError::Unknown("metadata.missing".into()))
        );
        assert_eq!(
            render("{{metadata.nested}}", &v),
            Err(RenderError::NotText("metadata.nested".into()))
        );
        assert_eq!(
            render("{{metadata.none}}", &v),
            Err(RenderError::NotText("metadata.none".into()))
        );
        let anonymous = Variables { name: None, ..v };
        assert_eq!(
            render("Hi {{name}}", &anonymous),
            Err(RenderError::Unknown("name".into()))
        );
        let no_meta = Variables {
            metadata: None,
            ..v
        };
        assert_eq!(
            render("{{metadata.crm}}", &no_meta),
            Err(RenderError::Unknown("metadata.crm".into()))
        );
    }

    #[test]
    fn a_value_is_inserted_once_never_read_as_a_template_again() {
        let m = meta();
        let custom = [("x".to_string(), "{{name}}".to_string())];
        assert_eq!(render("{{x}}", &vars(&m, &custom)), Ok("{{name}}".into()));
    }

    #[test]
    fn variable_names() {
        for ok in ["a", "_", "order_id", "A9", &"x".repeat(MAX_NAME_BYTES)] {
            assert!(is_variable_name(ok), "{ok}");
        }
        for bad in [
            "",
            "9a",
            "a-b",
            "a.b",
            "é",
            " a",
            &"x".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}
