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
//! - `transfer` `{"destination": "+14155550100", "mode": "blind"}` or
//!   `{"extension": "1001", "mode": "warm"}` (issue 16; `mode` optional,
//!   `blind` by default): hands the callee to the destination, or to a
//!   person of the tenant the offer lists in `transfer_people` (any other
//!   extension is refused: a model never names an address). A warm
//!   transfer holds the callee and briefs the person first. By REFER where the call's trunk takes it (`refer`),
//!   else the sidecar dials the destination and bridges the two legs
//!   ([`super::transfer`]). Answered once the destination answered
//!   (`{"ok": true, "destination": ..., "method": "refer"|"bridge"}`; the
//!   engine is then detached) or with an error whose `error` is one of
//!   [`TRANSFER_ERRORS`] (the agent says so and the call goes on).
//!
//! In the transcript a tool call is one agent turn, `[tool NAME ARGS ->
//! RESULT]` ([`tool_turn_text`]), from the call to its result.

use serde_json::{json, Value};

/// Presses keys on the call.
pub const SEND_DTMF: &str = "send_dtmf";
/// Ends the call after the pending audio.
pub const END_CALL: &str = "end_call";
/// Hands the callee to another number (issue 16).
pub const TRANSFER: &str = "transfer";

/// The stable `error` codes of a failed `transfer`: the destination was
/// busy, did not answer in time, refused (4xx-6xx other than busy), or the
/// transfer could not be tried (`transfer_failed`: no trunk, no media, the
/// dial plan refused it), or one is already under way.
pub const TRANSFER_ERRORS: [&str; 7] = voxline_shared::sidecar_link::transfer_errors::ALL;

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
    /// Hand the callee to a number (checked: E.164) or a person of the
    /// tenant by extension (the bridge checks it against the offer's
    /// `transfer_people`: a model never names an address).
    Transfer {
        to: TransferTo,
        mode: voxline_shared::sidecar_link::TransferMode,
    },
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

/// Whom the `transfer` tool names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTo {
    Number(String),
    Extension(String),
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
        TRANSFER => {
            use voxline_shared::sidecar_link::TransferMode;
            let refuse = |why: &str| ToolRequest::Refused {
                output: error_output("invalid_arguments", why),
            };
            let mode = match args.get("mode") {
                None | Some(Value::Null) => TransferMode::Blind,
                Some(Value::String(m)) if m == "blind" => TransferMode::Blind,
                Some(Value::String(m)) if m == "warm" => TransferMode::Warm,
                Some(_) => return refuse("mode must be \"blind\" or \"warm\""),
            };
            let to = match (
                args.get("destination").and_then(Value::as_str),
                args.get("extension").and_then(Value::as_str),
            ) {
                (Some(_), Some(_)) => return refuse("give destination or extension, not both"),
                (Some(d), None) => {
                    let d = d.trim();
                    if !is_e164(d) {
                        return refuse("destination must be an E.164 number (+ and 7-15 digits)");
                    }
                    TransferTo::Number(d.to_string())
                }
                (None, Some(e)) => {
                    let e = e.trim();
                    if !is_extension(e) {
                        return refuse("extension must be 2-16 digits");
                    }
                    TransferTo::Extension(e.to_string())
                }
                (None, None) => {
                    return refuse(
                        "destination (an E.164 number) or extension (a person's) is required",
                    )
                }
            };
            ToolRequest::Transfer { to, mode }
        }
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

/// A directory extension: 2 to 16 digits.
pub fn is_extension(e: &str) -> bool {
    (2..=16).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_digit())
}

/// `+` then 7 to 15 digits, the first not 0.
pub fn is_e164(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// `transfer`'s result once the destination answered (`method`: `refer`
/// or `bridge`).
pub fn transfer_output(destination: &str, method: &str) -> String {
    json!({"ok": true, "destination": destination, "method": method}).to_string()
}

/// `transfer`'s error result for a final SIP answer `code` from the
/// destination (or 408 for no answer in time): its [`TRANSFER_ERRORS`] code.
pub fn transfer_error_code(code: u16) -> &'static str {
    match code {
        486 | 600 => "busy",
        408 | 480 | 487 => "no_answer",
        400..=699 => "rejected",
        _ => "transfer_failed",
    }
}

/// `transfer`'s error result: `error` one of [`TRANSFER_ERRORS`] (for a
/// final SIP answer, [`transfer_error_code`]); `sip_code` included when known.
pub fn transfer_error_output(error: &str, code: Option<u16>, message: &str) -> String {
    json!({"ok": false, "error": error, "message": message, "sip_code": code}).to_string()
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
        json!({
            "type": "function",
            "name": TRANSFER,
            "description": "Transfer the caller to another phone number or to a person of this company by extension. Say that you are transferring them first. Answered once the other party picked up (you are then disconnected), or with an error (busy, no_answer, rejected, user_unavailable, transfer_failed) after which the call goes on with you.",
            "parameters": {
                "type": "object",
                "properties": {
                    "destination": {"type": "string", "description": "The number to transfer to, E.164 (e.g. +14155550100). Give this or extension."},
                    "extension": {"type": "string", "description": "A person's extension (e.g. 1001), one you were told you may transfer to. Give this or destination."},
                    "mode": {"type": "string", "enum": ["blind", "warm"], "description": "blind (default): connect as soon as they answer; warm: the caller waits on hold and the person hears a short briefing first."},
                },
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
        for name in [SEND_DTMF, END_CALL, TRANSFER] {
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
    fn transfer_takes_an_e164_destination_or_an_extension_blind_or_warm() {
        use voxline_shared::sidecar_link::TransferMode;
        assert_eq!(
            request(TRANSFER, r#"{"destination":"+14155550100"}"#),
            ToolRequest::Transfer {
                to: TransferTo::Number("+14155550100".into()),
                mode: TransferMode::Blind,
            }
        );
        assert_eq!(
            request(
                TRANSFER,
                r#"{"destination":" +14155550100 ","mode":"blind"}"#
            ),
            ToolRequest::Transfer {
                to: TransferTo::Number("+14155550100".into()),
                mode: TransferMode::Blind,
            }
        );
        assert_eq!(
            request(TRANSFER, r#"{"extension":"1001","mode":"warm"}"#),
            ToolRequest::Transfer {
                to: TransferTo::Extension("1001".into()),
                mode: TransferMode::Warm,
            }
        );
        for bad in [
            r#"{}"#,
            r#"{"destination":"14155550100"}"#,
            r#"{"destination":"+1415x"}"#,
            r#"{"destination":"+1@evil"}"#,
            r#"{"destination":"+14155550100","mode":"attended"}"#,
            r#"{"destination":"+14155550100","extension":"1001"}"#,
            r#"{"extension":"sip:alice@192.0.2.5"}"#,
            r#"{"extension":"1"}"#,
            r#"{"destination":5}"#,
        ] {
            let ToolRequest::Refused { output } = request(TRANSFER, bad) else {
                panic!("{bad} was taken");
            };
            let v: Value = serde_json::from_str(&output).unwrap();
            assert_eq!(v["error"], "invalid_arguments", "{bad}");
        }
    }

    #[test]
    fn transfer_failures_have_stable_codes() {
        for (code, want) in [
            (486, "busy"),
            (600, "busy"),
            (408, "no_answer"),
            (480, "no_answer"),
            (487, "no_answer"),
            (404, "rejected"),
            (603, "rejected"),
            (500, "rejected"),
            (200, "transfer_failed"),
        ] {
            assert_eq!(transfer_error_code(code), want, "{code}");
            assert!(TRANSFER_ERRORS.contains(&want));
        }
        let v: Value = serde_json::from_str(&transfer_error_output(
            "busy",
            Some(486),
            "the line is busy",
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"ok": false, "error": "busy", "message": "the line is busy", "sip_code": 486})
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
        assert_eq!(names, ["end_call", "send_dtmf", "transfer"]);
        assert_eq!(all[0]["description"], "mine");
        assert_eq!(with_builtins(None).len(), 3);
    }
}
