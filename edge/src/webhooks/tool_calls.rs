//! A customer tool's call (issue 18): the engine of a call asked for one of
//! its agent's tools, the sidecar asked the edge (`POST
//! /v1/sidecar/tool-calls`), and the edge, which alone knows the tool's URL
//! and the agent's tools secret, POSTs the arguments there, signed like a
//! webhook (Standard Webhooks), bounded in time and size. [`call_tool`] is
//! pure over the [`ToolHttp`] port (`fetch` in the Worker).

use crate::ids::rfc3339_ms;
use crate::model::AgentTool;
use crate::traffic::port::LocalFuture;
use crate::url_guard;
use crate::webhooks::delivery::{
    delivery_id, response_snippet, AttemptLog, DeliveryKind, DeliveryRecord, DeliveryStatus,
    TOOL_CALL_EVENT_TYPE,
};
use crate::webhooks::signing;
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{
    tool_errors, ToolCallAnswer, ToolError, MAX_TOOL_OUTPUT_BYTES, PROTOCOL_VERSION,
};

/// What a tool's URL answered: its status and at most `max_body_bytes` of
/// its body (`too_large` when it had more).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub too_large: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolHttpError {
    /// No (whole) answer within the timeout.
    Timeout,
    /// The request failed (connection, TLS, ...), described for the log.
    Failed(String),
}

/// One POST to a tool: abandoned after `timeout_ms`, redirects not followed
/// (a 3xx could bounce it to an address the URL guard refuses), the body read
/// up to `max_body_bytes`. Object-safe, like the other ports.
pub trait ToolHttp {
    fn post<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(String, String)],
        body: &'a str,
        timeout_ms: u64,
        max_body_bytes: usize,
    ) -> LocalFuture<'a, Result<ToolReply, ToolHttpError>>;
    /// Unix ms now (the Worker's clock), to time the call.
    fn now_ms(&self) -> u64;
}

/// A [`ToolHttp`] that reaches nothing (contexts that never call tools:
/// the campaign object, benches, tests of other routes).
pub struct NoToolHttp;

impl ToolHttp for NoToolHttp {
    fn post<'a>(
        &'a self,
        _url: &'a str,
        _headers: &'a [(String, String)],
        _body: &'a str,
        _timeout_ms: u64,
        _max_body_bytes: usize,
    ) -> LocalFuture<'a, Result<ToolReply, ToolHttpError>> {
        Box::pin(async { Err(ToolHttpError::Failed("no tool HTTP here".into())) })
    }
    fn now_ms(&self) -> u64 {
        0
    }
}

/// Everything the edge knows about one tool call, gathered by the API.
pub struct ToolInvocation<'a> {
    pub call_id: &'a str,
    pub agent_id: &'a str,
    pub tool_call_id: &'a str,
    /// The model's arguments as the sidecar sent them (JSON text).
    pub arguments: &'a str,
    /// The call's `metadata` as placed (null when none).
    pub metadata: Value,
    /// The clear `whsec_...` secret of the agent's tools.
    pub secret: &'a str,
    /// Unix ms (edge clock): the signature's timestamp.
    pub now_ms: u64,
    pub dev_mode: bool,
}

/// The JSON body a tool receives.
pub fn request_body(tool: &AgentTool, inv: &ToolInvocation<'_>, arguments: Value) -> Value {
    json!({
        "type": "tool.call",
        "call_id": inv.call_id,
        "agent_id": inv.agent_id,
        "tool_call_id": inv.tool_call_id,
        "name": tool.name,
        "arguments": arguments,
        "metadata": inv.metadata,
    })
}

/// A failed answer with its stable code.
pub fn failed(code: &str, message: impl Into<String>, duration_ms: Option<u64>) -> ToolCallAnswer {
    ToolCallAnswer {
        protocol_version: PROTOCOL_VERSION,
        ok: false,
        output: None,
        error: Some(ToolError {
            code: code.to_string(),
            message: message.into(),
        }),
        duration_ms,
    }
}

/// What the edge sent for one tool call and what came back: the tool
/// call's entry in the tenant's delivery log ([`ToolRequestLog::record`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolRequestLog {
    /// The tool's URL (empty when the agent has no tool of that name).
    pub url: String,
    /// The request's `webhook-id` (empty when nothing was signed).
    pub webhook_id: String,
    /// The signed request body (empty when nothing was sent).
    pub body: String,
    /// The tool's HTTP status; None when no answer came or nothing was sent.
    pub status_code: Option<u16>,
    pub response_snippet: Option<String>,
    /// Unix ms (edge clock) the call was asked for.
    pub at_ms: u64,
    pub duration_ms: u64,
}

impl ToolRequestLog {
    /// A tool call that sent nothing (no tool, bad arguments, a refused URL,
    /// no secret): its entry says why.
    pub fn not_sent(url: &str, at_ms: u64) -> ToolRequestLog {
        ToolRequestLog {
            url: url.to_string(),
            at_ms,
            ..ToolRequestLog::default()
        }
    }

    /// The delivery log entry (`kind: tool_call`, one attempt) of this
    /// request and the answer the engine got: `delivered` when the tool
    /// answered 2xx within its bounds, else `failed` with the answer's code.
    pub fn record(&self, call_id: &str, answer: &ToolCallAnswer) -> DeliveryRecord {
        let error = answer
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.code, e.message));
        let at = rfc3339_ms(self.at_ms);
        DeliveryRecord {
            id: delivery_id(self.at_ms),
            endpoint_id: String::new(),
            event_id: self.webhook_id.clone(),
            event_type: TOOL_CALL_EVENT_TYPE.to_string(),
            call_id: Some(call_id.to_string()),
            status: if answer.ok {
                DeliveryStatus::Delivered
            } else {
                DeliveryStatus::Failed
            },
            payload: self.body.clone(),
            attempts: vec![AttemptLog {
                attempt: 1,
                at: at.clone(),
                url: self.url.clone(),
                status_code: self.status_code,
                error: error.clone(),
                duration_ms: self.duration_ms,
                manual: false,
                response_snippet: self.response_snippet.clone(),
            }],
            next_attempt_at: None,
            last_error: error,
            created_at: at,
            updated_at: rfc3339_ms(self.at_ms + self.duration_ms),
            format: crate::model::WebhookFormat::Native,
            placed_with_key: None,
            kind: DeliveryKind::ToolCall,
        }
    }
}

/// Calls `tool` (`None`: the agent has no tool of the asked name) and says
/// what the engine gets back, with what was sent for the delivery log.
/// Never an `Err`: every failure is an answer with a [`tool_errors`] code,
/// so the engine can tell the callee.
pub async fn call_tool(
    http: &dyn ToolHttp,
    tool: Option<&AgentTool>,
    name: &str,
    inv: &ToolInvocation<'_>,
) -> (ToolCallAnswer, ToolRequestLog) {
    let Some(tool) = tool else {
        return (
            failed(
                tool_errors::UNKNOWN,
                format!("the call's agent has no tool '{name}'"),
                None,
            ),
            ToolRequestLog::not_sent("", inv.now_ms),
        );
    };
    let mut log = ToolRequestLog::not_sent(&tool.url, inv.now_ms);
    let arguments: Value = match serde_json::from_str(inv.arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            return (
                failed(
                    tool_errors::BAD_ARGUMENTS,
                    "the arguments are not a JSON object",
                    None,
                ),
                log,
            )
        }
    };
    // Checked again on every call: a rule change or an older record must not slip through.
    if let Err(why) = url_guard::check_webhook(&tool.url, inv.dev_mode) {
        return (failed(tool_errors::BLOCKED_URL, why, None), log);
    }
    let body = request_body(tool, inv, arguments).to_string();
    let msg_id = format!("msg_{}", inv.tool_call_id_digest());
    let headers = match signing::headers(&[inv.secret], &msg_id, inv.now_ms / 1000, body.as_bytes())
    {
        Ok(h) => h,
        Err(e) => return (failed(tool_errors::UNAVAILABLE, e.to_string(), None), log),
    };
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("user-agent".into(), "voxline-tools/1".into()));
    let started = http.now_ms();
    let reply = http
        .post(
            &tool.url,
            &headers,
            &body,
            u64::from(tool.timeout_ms),
            MAX_TOOL_OUTPUT_BYTES,
        )
        .await;
    let took_ms = http.now_ms().saturating_sub(started);
    let took = Some(took_ms);
    log.webhook_id = msg_id;
    log.duration_ms = took_ms;
    if let Ok(r) = &reply {
        log.status_code = Some(r.status);
        log.response_snippet = response_snippet(&r.body);
    }
    log.body = body;
    let answer = match reply {
        Err(ToolHttpError::Timeout) => failed(
            tool_errors::TIMEOUT,
            format!("no answer within {} ms", tool.timeout_ms),
            took,
        ),
        Err(ToolHttpError::Failed(why)) => failed(tool_errors::HTTP_ERROR, why, took),
        Ok(r) if r.too_large => failed(
            tool_errors::RESPONSE_TOO_LARGE,
            format!("the answer is larger than {MAX_TOOL_OUTPUT_BYTES} bytes"),
            took,
        ),
        Ok(r) if !(200..300).contains(&r.status) => failed(
            tool_errors::HTTP_ERROR,
            format!("the tool answered HTTP {}", r.status),
            took,
        ),
        Ok(r) => ToolCallAnswer {
            protocol_version: PROTOCOL_VERSION,
            ok: true,
            // JSON or text, given to the model as it came (lossy for other bytes).
            output: Some(String::from_utf8_lossy(&r.body).into_owned()),
            error: None,
            duration_ms: took,
        },
    };
    (answer, log)
}

impl ToolInvocation<'_> {
    /// The `webhook-id` of this call: stable for one tool call id (a
    /// receiver can dedupe a repeated request), opaque, header-safe.
    fn tool_call_id_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(format!("{}:{}", self.call_id, self.tool_call_id).as_bytes());
        d.iter().take(12).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use std::cell::RefCell;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// url, headers, body, timeout, body bound.
    type SeenPost = (String, Vec<(String, String)>, String, u64, usize);

    /// A tool server stand-in: records the request, answers as told.
    struct FakeTool {
        clock: std::cell::Cell<u64>,
        answer: Result<ToolReply, ToolHttpError>,
        seen: RefCell<Vec<SeenPost>>,
    }

    impl ToolHttp for FakeTool {
        fn post<'a>(
            &'a self,
            url: &'a str,
            headers: &'a [(String, String)],
            body: &'a str,
            timeout_ms: u64,
            max_body_bytes: usize,
        ) -> LocalFuture<'a, Result<ToolReply, ToolHttpError>> {
            self.seen.borrow_mut().push((
                url.into(),
                headers.to_vec(),
                body.into(),
                timeout_ms,
                max_body_bytes,
            ));
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
        fn now_ms(&self) -> u64 {
            self.clock.set(self.clock.get() + 40);
            self.clock.get()
        }
    }

    fn fake(answer: Result<ToolReply, ToolHttpError>) -> FakeTool {
        FakeTool {
            clock: std::cell::Cell::new(0),
            answer,
            seen: RefCell::new(Vec::new()),
        }
    }

    fn ok_reply(status: u16, body: &str) -> Result<ToolReply, ToolHttpError> {
        Ok(ToolReply {
            status,
            body: body.as_bytes().to_vec(),
            too_large: false,
        })
    }

    fn tool(url: &str) -> AgentTool {
        AgentTool {
            name: "lookup_order".into(),
            description: "Find an order".into(),
            parameters: json!({"type": "object"}),
            url: url.into(),
            timeout_ms: 3_000,
        }
    }

    fn inv<'a>(arguments: &'a str) -> ToolInvocation<'a> {
        ToolInvocation {
            call_id: "call_1",
            agent_id: "agt_1",
            tool_call_id: "fc_1",
            arguments,
            metadata: json!({"crm": 7}),
            secret: SECRET,
            now_ms: 1_764_082_200_000,
            dev_mode: false,
        }
    }

    fn run(http: &FakeTool, t: Option<&AgentTool>, args: &str) -> ToolCallAnswer {
        block_on(call_tool(http, t, "lookup_order", &inv(args))).0
    }

    #[test]
    fn the_tool_gets_a_signed_post_and_its_answer_is_the_output() {
        let http = fake(ok_reply(200, r#"{"status":"shipped"}"#));
        let t = tool("https://tools.example.com/lookup");
        let a = run(&http, Some(&t), r#"{"order":"A1"}"#);
        assert!(a.ok, "{a:?}");
        assert_eq!(a.output.as_deref(), Some(r#"{"status":"shipped"}"#));
        assert_eq!(a.duration_ms, Some(40));
        let seen = http.seen.borrow();
        let (url, headers, body, timeout, max) = &seen[0];
        assert_eq!(url, "https://tools.example.com/lookup");
        assert_eq!((*timeout, *max), (3_000, MAX_TOOL_OUTPUT_BYTES));
        let body_json: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body_json["arguments"], json!({"order": "A1"}));
        assert_eq!(body_json["metadata"], json!({"crm": 7}));
        assert_eq!(
            (
                body_json["call_id"].as_str(),
                body_json["tool_call_id"].as_str()
            ),
            (Some("call_1"), Some("fc_1"))
        );
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        // The signature verifies as Standard Webhooks defines it.
        let id = get("webhook-id");
        let ts: u64 = get("webhook-timestamp").parse().unwrap();
        assert_eq!(ts, 1_764_082_200);
        assert_eq!(
            get("webhook-signature"),
            signing::sign(SECRET, &id, ts, body.as_bytes()).unwrap()
        );
        assert!(id.starts_with("msg_"));
    }

    #[test]
    fn failures_have_stable_codes() {
        let t = tool("https://tools.example.com/lookup");
        let code = |a: ToolCallAnswer| {
            assert!(!a.ok && a.output.is_none());
            a.error.unwrap().code
        };
        assert_eq!(
            code(run(&fake(Err(ToolHttpError::Timeout)), Some(&t), "{}")),
            "tool_timeout"
        );
        assert_eq!(
            code(run(
                &fake(Err(ToolHttpError::Failed("refused".into()))),
                Some(&t),
                "{}"
            )),
            "tool_http_error"
        );
        assert_eq!(
            code(run(&fake(ok_reply(500, "oops")), Some(&t), "{}")),
            "tool_http_error"
        );
        let big = Ok(ToolReply {
            status: 200,
            body: vec![b'x'; 10],
            too_large: true,
        });
        assert_eq!(
            code(run(&fake(big), Some(&t), "{}")),
            "tool_response_too_large"
        );
        let http = fake(ok_reply(200, "{}"));
        assert_eq!(code(run(&http, None, "{}")), "tool_unknown");
        assert_eq!(code(run(&http, Some(&t), "[1]")), "tool_bad_arguments");
        assert_eq!(code(run(&http, Some(&t), "not json")), "tool_bad_arguments");
        let private = tool("https://192.168.1.10/lookup");
        assert_eq!(code(run(&http, Some(&private), "{}")), "tool_blocked_url");
        // None of those reached the network.
        assert!(http.seen.borrow().is_empty());
    }

    #[test]
    fn each_tool_call_is_one_logged_request_with_its_answer() {
        let t = tool("https://tools.example.com/lookup");
        let http = fake(ok_reply(200, r#"{"status":"shipped"}"#));
        let (answer, log) = block_on(call_tool(&http, Some(&t), "lookup_order", &inv("{}")));
        let r = log.record("call_1", &answer);
        assert_eq!(r.kind, DeliveryKind::ToolCall);
        assert_eq!(r.status, DeliveryStatus::Delivered);
        assert_eq!(r.call_id.as_deref(), Some("call_1"));
        assert_eq!(r.event_type, "tool.call");
        // The entry is what was sent: the signed body and its webhook-id.
        let (_, headers, body, _, _) = http.seen.borrow()[0].clone();
        assert_eq!(r.payload, body);
        assert!(headers
            .iter()
            .any(|(k, v)| k == "webhook-id" && *v == r.event_id));
        let a = &r.attempts[..];
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].url, "https://tools.example.com/lookup");
        assert_eq!(a[0].status_code, Some(200));
        assert_eq!(a[0].duration_ms, 40);
        assert_eq!(
            a[0].response_snippet.as_deref(),
            Some(r#"{"status":"shipped"}"#)
        );
        assert_eq!(a[0].error, None);

        // A failed tool: its status, answer and code are logged.
        let http = fake(ok_reply(503, "down for maintenance"));
        let (answer, log) = block_on(call_tool(&http, Some(&t), "lookup_order", &inv("{}")));
        let r = log.record("call_1", &answer);
        assert_eq!(r.status, DeliveryStatus::Failed);
        assert_eq!(r.attempts[0].status_code, Some(503));
        assert_eq!(
            r.attempts[0].response_snippet.as_deref(),
            Some("down for maintenance")
        );
        assert!(r.last_error.unwrap().starts_with("tool_http_error: "));

        // Nothing sent (a refused URL): logged with its URL and why, no status.
        let private = tool("https://192.168.1.10/lookup");
        let (answer, log) = block_on(call_tool(&http, Some(&private), "lookup_order", &inv("{}")));
        let r = log.record("call_1", &answer);
        assert_eq!(
            (r.attempts[0].url.as_str(), r.attempts[0].status_code),
            ("https://192.168.1.10/lookup", None)
        );
        assert!(r.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("tool_blocked_url"));
        assert_eq!(r.payload, "");
    }
}
