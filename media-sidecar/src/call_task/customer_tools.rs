//! Customer tools mid-call (issue 18), the sidecar's half. The engine calls
//! a tool that is not built in ([`is_customer_tool`]); the call never waits
//! on it: the bridge hands out [`Action::AskTool`](super::bridge::Action)
//! and goes on with the media, the call task asks the edge over the link
//! ([`ask_edge`]: `POST /v1/sidecar/tool-calls`; the edge alone knows the
//! tool's URL and secret and makes the HTTP request), and the answer comes
//! back to the bridge, which gives the engine its output and reports a
//! `tool_call` event (the edge keeps it as a `tool` turn of the transcript).
//!
//! [`ToolCalls`] is the sans-IO bookkeeping: at most
//! [`MAX_TOOL_CALLS_PER_CALL`] at once per call (more are answered
//! `tool_busy` at once), arguments bounded, one answer per tool call id.

use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};
use voxline_shared::sidecar_link::{
    tool_errors, EventKind, ToolCall, ToolCallAnswer, BUILT_IN_TOOLS, MAX_TOOL_ARGUMENTS_BYTES,
};

use crate::lease::driver::Msg;
use crate::lease::tool_failure;

/// Tool calls one call may have waiting at once.
pub const MAX_TOOL_CALLS_PER_CALL: usize = 4;

/// Whether `name` is a customer tool (declared by the agent, called by the
/// edge) rather than one the sidecar runs itself.
pub fn is_customer_tool(name: &str) -> bool {
    !BUILT_IN_TOOLS.contains(&name)
}

/// What the call task asks the edge for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolAsk {
    pub tool_call_id: String,
    pub name: String,
    pub arguments: String,
}

/// What the engine gets and what is reported once a tool call is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDone {
    /// The engine's id of the call (`function_result`'s `call_id`).
    pub tool_call_id: String,
    /// What the engine is told: the tool's answer, or `{"error": code, "message": ...}`.
    pub output: String,
    /// The `tool_call` event.
    pub event: EventKind,
}

#[derive(Debug, Clone)]
struct Pending {
    name: String,
    arguments: String,
    start_ms: u64,
}

/// One call's tool calls in flight.
#[derive(Debug, Default)]
pub struct ToolCalls {
    pending: BTreeMap<String, Pending>,
}

/// What became of an engine's tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Ask the edge.
    Ask(ToolAsk),
    /// Answered at once (too many in flight, arguments too long, a
    /// repeated id): give the engine this.
    Done(ToolDone),
}

impl ToolCalls {
    /// Tool calls waiting for the edge.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The engine called `name`; `at_ms` is the offset from the answer.
    pub fn start(
        &mut self,
        tool_call_id: String,
        name: String,
        arguments: String,
        at_ms: u64,
    ) -> Started {
        let refuse = |code: &str, message: &str| {
            Started::Done(done(
                &tool_call_id,
                &name,
                &arguments,
                &tool_failure(code, message),
                at_ms,
                at_ms,
            ))
        };
        if self.pending.contains_key(&tool_call_id) {
            return refuse(tool_errors::BUSY, "this tool call is already running");
        }
        if self.pending.len() >= MAX_TOOL_CALLS_PER_CALL {
            return refuse(
                tool_errors::BUSY,
                "too many tool calls at once in this call",
            );
        }
        if arguments.len() > MAX_TOOL_ARGUMENTS_BYTES {
            return refuse(tool_errors::BAD_ARGUMENTS, "the arguments are too long");
        }
        self.pending.insert(
            tool_call_id.clone(),
            Pending {
                name: name.clone(),
                arguments: arguments.clone(),
                start_ms: at_ms,
            },
        );
        Started::Ask(ToolAsk {
            tool_call_id,
            name,
            arguments,
        })
    }

    /// The edge's answer to `tool_call_id` (`None`: not ours, or answered already).
    pub fn finish(
        &mut self,
        tool_call_id: &str,
        answer: &ToolCallAnswer,
        at_ms: u64,
    ) -> Option<ToolDone> {
        let p = self.pending.remove(tool_call_id)?;
        Some(done(
            tool_call_id,
            &p.name,
            &p.arguments,
            answer,
            p.start_ms,
            at_ms.max(p.start_ms),
        ))
    }
}

/// The engine's output for `answer`: the tool's own answer, or an error the
/// model can read and tell the caller about.
pub fn engine_output(answer: &ToolCallAnswer) -> String {
    match (&answer.output, &answer.error) {
        (Some(out), None) if answer.ok => out.clone(),
        (_, Some(e)) => serde_json::json!({"error": e.code, "message": e.message}).to_string(),
        _ => serde_json::json!({"error": tool_errors::UNAVAILABLE}).to_string(),
    }
}

fn done(
    tool_call_id: &str,
    name: &str,
    arguments: &str,
    answer: &ToolCallAnswer,
    start_ms: u64,
    end_ms: u64,
) -> ToolDone {
    let output = engine_output(answer);
    ToolDone {
        tool_call_id: tool_call_id.to_string(),
        event: EventKind::ToolCall {
            tool_call_id: tool_call_id.to_string(),
            name: name.to_string(),
            arguments: arguments.to_string(),
            ok: answer.ok,
            output: answer.ok.then(|| output.clone()),
            error_code: answer.error.as_ref().map(|e| e.code.clone()),
            start_ms,
            end_ms,
        },
        output,
    }
}

/// Asks the edge through the lease driver; a driver that is gone answers
/// `tool_unavailable`.
pub async fn ask_edge(
    tx: mpsc::Sender<Msg>,
    call_id: String,
    attempt: u32,
    ask: ToolAsk,
) -> ToolCallAnswer {
    let (answer_tx, answer_rx) = oneshot::channel();
    let call = ToolCall {
        protocol_version: voxline_shared::sidecar_link::PROTOCOL_VERSION,
        sidecar_id: String::new(),
        call_id,
        attempt,
        tool_call_id: ask.tool_call_id,
        name: ask.name,
        arguments: ask.arguments,
    };
    let sent = tx
        .send(Msg::ToolCall {
            call,
            answer: answer_tx,
        })
        .await;
    if sent.is_err() {
        return tool_failure(tool_errors::UNAVAILABLE, "the sidecar is stopping");
    }
    answer_rx
        .await
        .unwrap_or_else(|_| tool_failure(tool_errors::UNAVAILABLE, "the sidecar is stopping"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_shared::sidecar_link::PROTOCOL_VERSION;

    fn ok(output: &str) -> ToolCallAnswer {
        ToolCallAnswer {
            protocol_version: PROTOCOL_VERSION,
            ok: true,
            output: Some(output.into()),
            error: None,
            duration_ms: Some(5),
        }
    }

    fn start(t: &mut ToolCalls, id: &str, at: u64) -> Started {
        t.start(id.into(), "lookup".into(), r#"{"q":1}"#.into(), at)
    }

    #[test]
    fn built_in_names_are_not_customer_tools() {
        assert!(is_customer_tool("lookup_order"));
        for name in ["end_call", "send_dtmf", "transfer"] {
            assert!(!is_customer_tool(name));
        }
    }

    #[test]
    fn a_call_is_asked_then_answered_once_with_its_event() {
        let mut t = ToolCalls::default();
        let Started::Ask(ask) = start(&mut t, "fc_1", 1_000) else {
            panic!("asked")
        };
        assert_eq!(
            (ask.tool_call_id.as_str(), ask.name.as_str()),
            ("fc_1", "lookup")
        );
        assert_eq!(t.in_flight(), 1);
        let d = t.finish("fc_1", &ok(r#"{"found":true}"#), 1_800).unwrap();
        assert_eq!(d.output, r#"{"found":true}"#);
        assert_eq!(
            d.event,
            EventKind::ToolCall {
                tool_call_id: "fc_1".into(),
                name: "lookup".into(),
                arguments: r#"{"q":1}"#.into(),
                ok: true,
                output: Some(r#"{"found":true}"#.into()),
                error_code: None,
                start_ms: 1_000,
                end_ms: 1_800,
            }
        );
        // A second answer (or one for an unknown id) is dropped.
        assert!(t.finish("fc_1", &ok("{}"), 1_900).is_none());
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn errors_reach_the_engine_as_json_with_their_code() {
        let mut t = ToolCalls::default();
        start(&mut t, "fc_1", 0);
        let d = t
            .finish("fc_1", &tool_failure(tool_errors::TIMEOUT, "slow"), 8_000)
            .unwrap();
        let out: serde_json::Value = serde_json::from_str(&d.output).unwrap();
        assert_eq!(out["error"], "tool_timeout");
        assert!(matches!(
            d.event,
            EventKind::ToolCall { ok: false, output: None, error_code: Some(ref c), .. } if c == "tool_timeout"
        ));
    }

    #[test]
    fn at_most_four_at_once_and_arguments_are_bounded() {
        let mut t = ToolCalls::default();
        for i in 0..MAX_TOOL_CALLS_PER_CALL {
            assert!(matches!(
                start(&mut t, &format!("fc_{i}"), 0),
                Started::Ask(_)
            ));
        }
        let Started::Done(busy) = start(&mut t, "fc_9", 0) else {
            panic!("refused")
        };
        assert!(busy.output.contains("tool_busy"), "{}", busy.output);
        // The same id twice is refused too.
        t.finish("fc_0", &ok("{}"), 1);
        assert!(matches!(start(&mut t, "fc_1", 2), Started::Done(_)));
        let long = "x".repeat(MAX_TOOL_ARGUMENTS_BYTES + 1);
        let Started::Done(d) = t.start("fc_big".into(), "lookup".into(), long, 3) else {
            panic!("refused")
        };
        assert!(d.output.contains("tool_bad_arguments"));
    }
}
