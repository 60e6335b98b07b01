//! The built-in tools every engine may call (issue 18), pure: what a tool
//! call asks for, its checks, and the JSON results the engine gets back.
//! The bridge ([`super::bridge`]) runs them; no tool call ever goes
//! unanswered (an unknown name gets an error result at once).
//!
//! - `send_dtmf` `{"digits": "123#"}`: presses keys on the call (RFC 4733
//!   telephone-events, or SIP INFO `application/dtmf-relay` when the callee
//!   negotiated no `telephone-event`); answered `{"ok": true, "digits":
//!   "123#", "method": "rfc4733"|"sip_info"}` once the keys have been played.
//! - `end_call` `{"reason": "..."}` (optional): answered `{"ok": true}` at
//!   once; the call ends after the agent's pending audio has played.
//!
//! In the transcript a tool call is one agent turn, `[tool NAME ARGS ->
//! RESULT]` ([`tool_turn_text`]), from the call to its result.

use serde_json::{json, Value};

/// Presses keys on the call.
pub const SEND_DTMF: &str = "send_dtmf";
/// Ends the call after the pending audio.
pub const END_CALL: &str = "end_call";

/// The keys `send_dtmf` may press (RFC 4733 events 0-15), upper case.
pub const KEYS: &str = "0123456789*#ABCD";

/// The most keys one `send_dtmf` presses.
pub const MAX_TOOL_DIGITS: usize = 32;

/// How long each key is held (RFC 4733 event duration).
pub const TOOL_DIGIT_MS: u32 = 120;

/// Longest argument or result text kept in a transcript turn.
const MAX_TURN_JSON_CHARS: usize = 400;

/// What a tool call asks the bridge to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolRequest {
    /// Press these keys (checked: 1..=[`MAX_TOOL_DIGITS`] of [`KEYS`]).
    SendDtmf { digits: String },
    /// End the call after the pending audio.
    EndCall,
    /// Not run: answer the engine with this error result at once.
    Refused { output: String },
}

/// An error result: `{"ok": false, "error": CODE, "message": ...}`.
pub fn error_output(code: &str, message: &str) -> String {
    json!({"ok": false, "error": code, "message": message}).to_string()
}

/// `digits` as keys to press, upper case, or why not.
pub fn check_digits(digits: &str) -> Result<String, String> {
    let keys: String = digits
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if keys.is_empty() {
        return Err("digits is empty".into());
    }
    if keys.chars().count() > MAX_TOOL_DIGITS {
        return Err(format!("at most {MAX_TOOL_DIGITS} digits at a time"));
    }
    if let Some(bad) = keys.chars().find(|c| !KEYS.contains(*c)) {
        return Err(format!("{bad:?} is not a key (0-9, *, #, A-D)"));
    }
    Ok(keys)
}

/// What the engine's call of tool `name` with JSON `arguments` asks for.
pub fn request(name: &str, arguments: &str) -> ToolRequest {
    let args: Value = if arguments.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return ToolRequest::Refused {
                    output: error_output("invalid_arguments", "arguments must be a JSON object"),
                }
            }
        }
    };
    match name {
        SEND_DTMF => {
            let Some(digits) = args.get("digits").and_then(Value::as_str) else {
                return ToolRequest::Refused {
                    output: error_output("invalid_arguments", "digits (a string) is required"),
                };
            };
            match check_digits(digits) {
                Ok(digits) => ToolRequest::SendDtmf { digits },
                Err(why) => ToolRequest::Refused {
                    output: error_output("invalid_arguments", &why),
                },
            }
        }
        END_CALL => ToolRequest::EndCall,
        _ => ToolRequest::Refused {
            output: error_output(
                "unknown_tool",
                &format!("no tool named {:?}", cut(name, 64)),
            ),
        },
    }
}

/// `send_dtmf`'s result once the keys have been played.
pub fn dtmf_output(digits: &str, method: &str) -> String {
    json!({"ok": true, "digits": digits, "method": method}).to_string()
}

/// `end_call`'s result.
pub fn end_call_output() -> String {
    json!({"ok": true}).to_string()
}

fn cut(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The transcript text of one tool call: `[tool NAME ARGS -> RESULT]`
/// (arguments and result cut at 400 characters, control characters dropped).
pub fn tool_turn_text(name: &str, arguments: &str, output: &str) -> String {
    let clean = |s: &str, n: usize| cut(&s.replace(|c: char| c.is_control(), " "), n);
    let args = if arguments.trim().is_empty() {
        "{}".to_string()
    } else {
        clean(arguments.trim(), MAX_TURN_JSON_CHARS)
    };
    format!(
        "[tool {} {} -> {}]",
        clean(name, 64),
        args,
        clean(output, MAX_TURN_JSON_CHARS)
    )
}

/// The built-in tools' declarations for the cloud engines (OpenAI's
/// `{type, name, description, parameters}`; Gemini takes name,
/// description and parameters of each).
pub fn declarations() -> Vec<Value> {
    vec![
        json!({
            "type": "function",
            "name": SEND_DTMF,
            "description": "Press keys on the phone's keypad (DTMF), e.g. to choose an option of an automated menu. Answered once the keys have been played.",
            "parameters": {
                "type": "object",
                "properties": {"digits": {"type": "string", "description": "Keys to press in order: 0-9, *, #, A-D (at most 32)."}},
                "required": ["digits"],
            },
        }),
        json!({
            "type": "function",
            "name": END_CALL,
            "description": "Hang up the call once what you are saying has been played.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why the call ends."}},
            },
        }),
    ]
}

/// The tools a cloud engine declares: the agent's own (`metadata.tools`, an
/// array) and the built-in ones it does not declare itself.
pub fn with_builtins(declared: Option<&Value>) -> Vec<Value> {
    let mut tools: Vec<Value> = declared
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for b in declarations() {
        if !tools.iter().any(|t| t.get("name") == b.get("name")) {
            tools.push(b);
        }
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the bridge runs are the ones the edge refuses for an
    /// agent's own tools (one list of reserved names on the link).
    #[test]
    fn the_built_in_names_are_reserved_on_the_link() {
        for name in [SEND_DTMF, END_CALL] {
            assert!(
                voxline_shared::sidecar_link::BUILT_IN_TOOLS.contains(&name),
                "{name}"
            );
        }
    }

    #[test]
    fn send_dtmf_takes_only_bounded_keys() {
        assert_eq!(
            request(SEND_DTMF, r#"{"digits":"12 3#a"}"#),
            ToolRequest::SendDtmf {
                digits: "123#A".into()
            }
        );
        for bad in [
            r#"{"digits":""}"#,
            r#"{"digits":"12x"}"#,
            r#"{"digits":5}"#,
            r#"{}"#,
            r#"[1]"#,
            "not json",
        ] {
            let ToolRequest::Refused { output } = request(SEND_DTMF, bad) else {
                panic!("{bad} was taken");
            };
            let v: Value = serde_json::from_str(&output).unwrap();
            assert_eq!(
                (v["ok"].as_bool(), v["error"].as_str()),
                (Some(false), Some("invalid_arguments")),
                "{bad}"
            );
        }
        let long = format!(r#"{{"digits":"{}"}}"#, "1".repeat(MAX_TOOL_DIGITS + 1));
        assert!(matches!(
            request(SEND_DTMF, &long),
            ToolRequest::Refused { .. }
        ));
        let most = format!(r#"{{"digits":"{}"}}"#, "9".repeat(MAX_TOOL_DIGITS));
        assert!(matches!(
            request(SEND_DTMF, &most),
            ToolRequest::SendDtmf { .. }
        ));
    }

    #[test]
    fn unknown_tools_are_refused_and_end_call_needs_no_arguments() {
        let ToolRequest::Refused { output } = request("book_slot", "{}") else {
            panic!()
        };
        assert!(output.contains("unknown_tool") && output.contains("book_slot"));
        assert_eq!(request(END_CALL, ""), ToolRequest::EndCall);
        assert_eq!(
            request(END_CALL, r#"{"reason":"done"}"#),
            ToolRequest::EndCall
        );
    }

    #[test]
    fn a_tool_turn_is_one_bounded_line() {
        let out = dtmf_output("2", "rfc4733");
        assert_eq!(
            tool_turn_text(SEND_DTMF, r#"{"digits":"2"}"#, &out),
            format!(r#"[tool send_dtmf {{"digits":"2"}} -> {out}]"#)
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, json!({"ok": true, "digits": "2", "method": "rfc4733"}));
        let t = tool_turn_text("x\r\ny", &"a".repeat(5_000), "{}");
        assert!(!t.contains('\n') && t.len() < 600, "{t}");
    }

    #[test]
    fn builtins_join_the_agents_tools_unless_it_declares_them() {
        let own = json!([{"type": "function", "name": "end_call", "description": "mine"}]);
        let all = with_builtins(Some(&own));
        let names: Vec<_> = all.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["end_call", "send_dtmf"]);
        assert_eq!(all[0]["description"], "mine");
        assert_eq!(with_builtins(None).len(), 2);
    }
}
