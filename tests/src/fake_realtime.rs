//! A protocol-faithful stand-in for the OpenAI Realtime API (GA event names)
//! on 127.0.0.1, for end-to-end calls that must not reach a paid service.
//! It checks the bearer key at the WebSocket handshake (401 otherwise, as the
//! real service does), sends `session.created`, acknowledges
//! `session.update`, and answers each `response.create` with a spoken turn:
//! one second of a 440 Hz tone as `audio/pcmu` deltas and its transcript,
//! after a fixed delay ([`FakeRealtime::start_with_delay`], 0 by default) so
//! a bench can tell the sidecar's share from the service's.
//! What each connection sent is kept for the test.
//!
//! With a [`Behaviour`] it also calls a function after its first turn (as
//! the model does for a tool: `response.output_item.added` of type
//! `function_call`, then `response.function_call_arguments.done`), keeps the
//! `function_call_output` items it is given, and answers a text-only
//! `response.create` (the post-call analysis) with a text response.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::Message;

/// What the fake says each time it is asked for a response.
pub const FAKE_AI_LINE: &str = "Hello, this is the fake realtime server.";

/// One WebSocket connection, as seen by the fake.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Path and query of the upgrade request.
    pub uri: String,
    pub authorization: Option<String>,
    /// Refused at the handshake (wrong key).
    pub refused: bool,
    /// The `type` of every JSON message the client sent, in order.
    pub received: Vec<String>,
    /// `(call_id, output)` of every `function_call_output` item it was given.
    pub function_outputs: Vec<(String, String)>,
    /// The instructions of each text-only `response.create` (the analysis).
    pub text_requests: Vec<String>,
}

/// What the fake does besides speaking.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// After its first spoken turn, call this function: (name, arguments JSON).
    pub tool_call: Option<(String, String)>,
    /// The text it answers a text-only response with.
    pub text_reply: Option<String>,
}

pub struct FakeRealtime {
    /// `ws://127.0.0.1:<port>`: the engine base URL to give a call.
    pub url: String,
    connections: Arc<Mutex<Vec<Connection>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRealtime {
    /// Serves until dropped; only `Bearer {key}` is let in.
    pub fn start(key: &str) -> FakeRealtime {
        Self::start_with_delay(key, Duration::ZERO)
    }

    /// As [`FakeRealtime::start`], answering each `response.create` only
    /// after `delay` (a stand-in for the service's own time to first audio).
    pub fn start_with_delay(key: &str, delay: Duration) -> FakeRealtime {
        Self::start_with(key, delay, Behaviour::default())
    }

    /// As [`FakeRealtime::start_with_delay`], doing what `behaviour` says too.
    pub fn start_with(key: &str, delay: Duration, behaviour: Behaviour) -> FakeRealtime {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake realtime server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let url = format!("ws://{}", listener.local_addr().expect("local addr"));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (conns, halt, key) = (connections.clone(), stop.clone(), format!("Bearer {key}"));
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (conns, halt, key) = (conns.clone(), halt.clone(), key.clone());
                        let behaviour = behaviour.clone();
                        std::thread::spawn(move || {
                            serve(stream, &key, &conns, &halt, delay, &behaviour)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeRealtime {
            url,
            connections,
            stop,
        }
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.connections
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
fn serve(
    stream: TcpStream,
    key: &str,
    conns: &Mutex<Vec<Connection>>,
    halt: &AtomicBool,
    delay: Duration,
    behaviour: &Behaviour,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let seen = std::cell::RefCell::new(Connection::default());
    let accepted = tungstenite::accept_hdr(
        stream,
        |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let mut seen = seen.borrow_mut();
            seen.uri = req.uri().to_string();
            seen.authorization = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            if seen.authorization.as_deref() != Some(key) {
                seen.refused = true;
                let body = r#"{"error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key provided."}}"#;
                let mut refusal = ErrorResponse::new(Some(body.to_string()));
                *refusal.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
                return Err(refusal);
            }
            Ok(resp)
        },
    );
    let index = {
        let mut all = conns.lock().unwrap_or_else(|e| e.into_inner());
        all.push(seen.borrow().clone());
        all.len() - 1
    };
    let Ok(mut ws) = accepted else { return };
    let send = |ws: &mut tungstenite::WebSocket<TcpStream>, v: Value| {
        ws.send(Message::text(v.to_string())).is_ok()
    };
    if !send(
        &mut ws,
        json!({"type": "session.created", "event_id": "ev_0", "session": {"id": "sess_fake", "type": "realtime"}}),
    ) {
        return;
    }
    let mut responses = 0;
    while !halt.load(Ordering::SeqCst) {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let kind = v["type"].as_str().unwrap_or("").to_string();
        if let Ok(mut all) = conns.lock() {
            all[index].received.push(kind.clone());
        }
        match kind.as_str() {
            "session.update" => {
                send(
                    &mut ws,
                    json!({"type": "session.updated", "event_id": "ev_1", "session": v["session"]}),
                );
            }
            "conversation.item.create"
                if v["item"]["type"].as_str() == Some("function_call_output") =>
            {
                let (call_id, output) = (
                    v["item"]["call_id"].as_str().unwrap_or("").to_string(),
                    v["item"]["output"].as_str().unwrap_or("").to_string(),
                );
                if let Ok(mut all) = conns.lock() {
                    all[index].function_outputs.push((call_id, output));
                }
            }
            "response.create"
                if v["response"]["output_modalities"]
                    .as_array()
                    .is_some_and(|m| m.iter().all(|m| m == "text")) =>
            {
                let instructions = v["response"]["instructions"].as_str().unwrap_or("");
                if let Ok(mut all) = conns.lock() {
                    all[index].text_requests.push(instructions.to_string());
                }
                if let Some(reply) = &behaviour.text_reply {
                    for event in text_turn(reply) {
                        if !send(&mut ws, event) {
                            return;
                        }
                    }
                }
            }
            "response.create" => {
                responses += 1;
                std::thread::sleep(delay);
                for event in spoken_turn(responses) {
                    if !send(&mut ws, event) {
                        return;
                    }
                }
                if let (1, Some((name, arguments))) = (responses, &behaviour.tool_call) {
                    for event in function_call(name, arguments) {
                        if !send(&mut ws, event) {
                            return;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The model calling a function: its item, then its arguments.
fn function_call(name: &str, arguments: &str) -> Vec<Value> {
    let (resp, item, call_id) = ("resp_fc", "item_fc_1", "call_fc_1");
    vec![
        json!({"type": "response.created", "response": {"id": resp, "status": "in_progress"}}),
        json!({"type": "response.output_item.added", "response_id": resp, "output_index": 0,
               "item": {"id": item, "type": "function_call", "call_id": call_id, "name": name, "arguments": ""}}),
        json!({"type": "response.function_call_arguments.done", "response_id": resp, "item_id": item,
               "output_index": 0, "call_id": call_id, "name": name, "arguments": arguments}),
        json!({"type": "response.done", "response": {"id": resp, "status": "completed", "output": []}}),
    ]
}

/// A text-only response: its text in two deltas, then whole.
fn text_turn(text: &str) -> Vec<Value> {
    let (resp, item) = ("resp_text", "item_text_1");
    let cut = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let mut out = vec![
        json!({"type": "response.created", "response": {"id": resp, "status": "in_progress"}}),
    ];
    for d in [&text[..cut], &text[cut..]] {
        out.push(
            json!({"type": "response.output_text.delta", "response_id": resp, "item_id": item,
                        "output_index": 0, "content_index": 0, "delta": d}),
        );
    }
    out.push(
        json!({"type": "response.output_text.done", "response_id": resp, "item_id": item,
                    "output_index": 0, "content_index": 0, "text": text}),
    );
    out.push(json!({"type": "response.done", "response": {"id": resp, "status": "completed", "output": []}}));
    out
}

/// One response: created, the item, 1 s of audio in 200 ms deltas, done.
fn spoken_turn(n: u32) -> Vec<Value> {
    let (resp, item) = (format!("resp_{n}"), format!("item_ai_{n}"));
    let mut out = vec![
        json!({"type": "response.created", "response": {"id": resp, "status": "in_progress"}}),
        json!({"type": "response.output_item.added", "response_id": resp, "output_index": 0,
               "item": {"id": item, "type": "message", "role": "assistant", "content": []}}),
    ];
    let tone: Vec<u8> = voxline_testkit::tone(8000, &[(440.0, 8000.0)], 8000)
        .into_iter()
        .map(voxline_testkit::mulaw_encode)
        .collect();
    for chunk in tone.chunks(1600) {
        out.push(json!({"type": "response.output_audio.delta", "response_id": resp, "item_id": item, "output_index": 0,
                        "content_index": 0, "delta": B64.encode(chunk)}));
    }
    out.push(json!({"type": "response.output_audio.done", "response_id": resp, "item_id": item, "output_index": 0, "content_index": 0}));
    out.push(json!({"type": "response.output_audio_transcript.done", "response_id": resp, "item_id": item, "output_index": 0,
                    "content_index": 0, "transcript": FAKE_AI_LINE}));
    out.push(json!({"type": "response.done", "response": {"id": resp, "status": "completed", "output": []}}));
    out
}
