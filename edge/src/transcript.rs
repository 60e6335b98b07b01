//! Call transcripts: turns reported by the sidecar, stored one row per turn
//! by the tenant's `CallStore` (see `calls::store`), served as JSON or as plain
//! text (`[hh:mm:ss] AGENT: ...`, one line per turn).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
pub use voxline_shared::sidecar_link::Role;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// `agent` or `callee` (turns stored before 2026-12 say `ai` / `user`; read as these).
    pub role: Role,
    pub text: String,
    /// Offsets from the moment the call was answered.
    pub start_ms: u64,
    pub end_ms: u64,
}

/// Longest turn text the edge keeps (characters): a sidecar (or an engine
/// behind it) cannot make one turn, and so a transcript, grow without bound.
pub const MAX_TURN_CHARS: usize = 4_000;
/// Ends a turn text cut at [`MAX_TURN_CHARS`], so a reader sees it was cut.
pub const TRUNCATED_MARKER: &str = " [truncated]";

/// `text` if it fits in [`MAX_TURN_CHARS`]; else its start, cut on a char
/// boundary, plus [`TRUNCATED_MARKER`], at most [`MAX_TURN_CHARS`] in all.
pub fn bound_turn_text(text: &str) -> String {
    if text.chars().count() <= MAX_TURN_CHARS {
        return text.to_string();
    }
    let keep = MAX_TURN_CHARS - TRUNCATED_MARKER.chars().count();
    let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    format!("{}{TRUNCATED_MARKER}", &text[..cut])
}

/// What a call's transcript holds: its turns in order, and what the engine
/// concluded when it said so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub turns: Vec<Turn>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
}

/// One change to one call's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Turn(Turn),
    /// Fields given replace earlier ones; absent ones keep them.
    Summary {
        summary: Option<String>,
        outcome: Option<String>,
    },
    /// Answering-machine detection's verdict (issue 18): not a line of the
    /// transcript but the call record's `answered_by` and
    /// `amd_decision_ms`, carried in the same order as the turns so it
    /// lands before the `ended` change of the same batch (and so is in
    /// `call.completed`).
    AnsweredBy {
        answered_by: voxline_shared::sidecar_link::AnsweredBy,
        decision_ms: u64,
    },
    /// The engine's post-call analysis (kept over the edge's own rules).
    Analysis(Box<voxline_shared::analysis::CallAnalysis>),
    /// The agent transferred the callee (issue 16): `call.transferred`.
    Transferred {
        destination: String,
        method: String,
        at_offset_ms: u64,
    },
    /// A person's leg of the call (issue 16): `call.leg`.
    Leg {
        step: voxline_shared::sidecar_link::LegStep,
        user_pk: Option<u64>,
        destination: Option<String>,
        sip_code: Option<u16>,
        talk_ms: u64,
    },
    /// The caller's wait in a queue (issue 16): `call.queue`.
    Queue {
        step: voxline_shared::sidecar_link::QueueStep,
        queue_pk: u64,
        position: Option<u32>,
        wait_ms: u64,
    },
}

/// An engine's analysis as the edge keeps it: marked `engine`, its summary
/// and text values bounded, at most the fields a plan may have (the plan
/// check happened at the sidecar; this bounds what any sidecar can store).
pub fn bound_analysis(
    mut a: voxline_shared::analysis::CallAnalysis,
) -> voxline_shared::analysis::CallAnalysis {
    use voxline_shared::analysis::{
        cut, AnalysisSource, MAX_DATA_FIELDS, MAX_SUMMARY_CHARS, MAX_VALUE_CHARS,
    };
    a.source = AnalysisSource::Engine;
    a.summary = a.summary.map(|s| cut(&s, MAX_SUMMARY_CHARS));
    if let Some(data) = a.data.as_mut() {
        let keep: Vec<String> = data.keys().take(MAX_DATA_FIELDS).cloned().collect();
        data.retain(|k, _| keep.contains(k));
        for v in data.values_mut() {
            match v {
                serde_json::Value::String(s) => *s = cut(s, MAX_VALUE_CHARS),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    *v = serde_json::Value::Null
                }
                _ => {}
            }
        }
    }
    a
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptUpdate {
    pub tenant_id: String,
    pub call_id: String,
    pub change: Change,
}

fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// `[00:00:01] AGENT: Hello` lines, in turn order.
pub fn render_text(turns: &[Turn]) -> String {
    turns
        .iter()
        .map(|t| {
            format!(
                "[{}] {}: {}\n",
                clock(t.start_ms),
                match t.role {
                    Role::Agent => "AGENT",
                    Role::Callee => "CALLEE",
                    Role::Tool => "TOOL",
                },
                t.text
            )
        })
        .collect()
}

pub fn to_json(call_id: &str, t: &Transcript) -> Value {
    json!({"object": "transcript", "call_id": call_id, "turns": t.turns, "summary": t.summary,
           "outcome": t.outcome, "text": render_text(&t.turns)})
}

/// Longest arguments / output a tool turn's text quotes (characters each).
const TOOL_TURN_QUOTE_CHARS: usize = 1_000;

/// A tool turn's text: `name {arguments} -> output` or `name {arguments} ->
/// error code`, each part cut to [`TOOL_TURN_QUOTE_CHARS`].
pub fn tool_turn_text(
    name: &str,
    arguments: &str,
    output: Option<&str>,
    error: Option<&str>,
) -> String {
    let cut = |s: &str| -> String {
        if s.chars().count() <= TOOL_TURN_QUOTE_CHARS {
            s.to_string()
        } else {
            let head: String = s.chars().take(TOOL_TURN_QUOTE_CHARS).collect();
            format!("{head}{TRUNCATED_MARKER}")
        }
    };
    let result = match (output, error) {
        (_, Some(code)) => format!("error {code}"),
        (Some(out), None) => cut(out),
        (None, None) => String::new(),
    };
    bound_turn_text(&format!("{name} {} -> {result}", cut(arguments)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_render_as_timed_lines() {
        let turn = |role: Role, text: &str, start_ms: u64| Turn {
            role,
            text: text.into(),
            start_ms,
            end_ms: start_ms + 900,
        };
        let t = Transcript {
            turns: vec![
                turn(Role::Agent, "Hi, can you make it?", 200),
                turn(Role::Callee, "yes I can", 3_700),
            ],
            summary: Some("said yes".into()),
            outcome: None,
        };
        assert_eq!(
            render_text(&t.turns),
            "[00:00:00] AGENT: Hi, can you make it?\n[00:00:03] CALLEE: yes I can\n"
        );
        let j = to_json("c1", &t);
        assert_eq!(
            (j["summary"].as_str(), j["turns"].as_array().map(Vec::len)),
            (Some("said yes"), Some(2))
        );
        assert_eq!(clock(3_723_000), "01:02:03");
    }

    #[test]
    fn turns_stored_with_the_old_role_names_are_read() {
        let old: Turn =
            serde_json::from_str(r#"{"role":"ai","text":"hi","start_ms":0,"end_ms":1}"#).unwrap();
        let old_callee: Turn =
            serde_json::from_str(r#"{"role":"user","text":"yo","start_ms":2,"end_ms":3}"#).unwrap();
        assert_eq!((old.role, old_callee.role), (Role::Agent, Role::Callee));
        let written = serde_json::to_value(&old).unwrap();
        assert_eq!(written["role"], "agent");
        assert!(serde_json::from_str::<Turn>(
            r#"{"role":"bot","text":"","start_ms":0,"end_ms":0}"#
        )
        .is_err());
    }
}
