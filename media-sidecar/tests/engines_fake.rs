//! The cloud engines against protocol-faithful local fake servers (loopback
//! WebSocket, tokio-tungstenite). Each fake speaks the documented events of
//! its service; every test is bounded in time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use voxline_media_sidecar::engine::openai::{self, Flavor, OpenAiOptions};
use voxline_media_sidecar::engine::{BoxedEngine, Engine, EngineConfig, EngineError, EngineEvent};
use voxline_media_sidecar::media::g711::Law;
use voxline_shared::sidecar_link::Role;
use voxline_testkit::{amp_at, tone};

const KEY: &str = "sk-fake-SECRET-key-0123456789";
const T: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- fake server

#[derive(Debug)]
enum Cmd {
    Send(Message, Option<oneshot::Sender<Instant>>),
    /// Stop reading the socket (no pongs, nothing): a hung server.
    Deaf,
    /// Drop the TCP connection without a close frame.
    Drop,
}

/// One accepted connection, seen from the test.
struct Conn {
    uri: String,
    headers: Vec<(String, String)>,
    rx: mpsc::UnboundedReceiver<(Instant, Message)>,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Conn {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn send(&self, v: Value) {
        self.tx
            .send(Cmd::Send(Message::text(v.to_string()), None))
            .unwrap();
    }

    fn send_binary_json(&self, v: Value) {
        self.tx
            .send(Cmd::Send(Message::binary(v.to_string().into_bytes()), None))
            .unwrap();
    }

    /// Sends and returns the instant just before the frame was written.
    async fn send_timed(&self, v: Value) -> Instant {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Send(Message::text(v.to_string()), Some(tx)))
            .unwrap();
        rx.await.unwrap()
    }

    fn close(&self, code: CloseCode, reason: &str) {
        let f = CloseFrame {
            code,
            reason: reason.to_string().into(),
        };
        self.tx
            .send(Cmd::Send(Message::Close(Some(f)), None))
            .unwrap();
    }

    /// The next JSON message the client sent (text or binary), skipping control frames.
    async fn recv_json(&mut self) -> (Instant, Value) {
        loop {
            let (at, m) = timeout(T, self.rx.recv())
                .await
                .expect("client message in time")
                .expect("connection open");
            let text = match m {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => String::from_utf8(b.to_vec()).unwrap(),
                _ => continue,
            };
            return (at, serde_json::from_str(&text).unwrap());
        }
    }

    /// The next message of type `typ` (OpenAI) skipping others.
    async fn recv_type(&mut self, typ: &str) -> (Instant, Value) {
        loop {
            let (at, v) = self.recv_json().await;
            if v["type"] == typ {
                return (at, v);
            }
        }
    }

    /// Everything the client sent so far, without waiting.
    fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok((_, m)) = self.rx.try_recv() {
            if let Message::Text(t) = m {
                out.push(serde_json::from_str(t.as_str()).unwrap());
            } else if let Message::Binary(b) = m {
                if let Ok(v) = serde_json::from_slice(&b) {
                    out.push(v);
                }
            }
        }
        out
    }
}

/// Auto replies may ask for a binary frame (`{"__binary": msg}`) or a close (`{"__close": [code, reason]}`).
fn reply_frame(r: Value) -> Message {
    if let Some(b) = r.get("__binary") {
        return Message::binary(b.to_string().into_bytes());
    }
    if let Some(c) = r.get("__close") {
        let code = CloseCode::from(c[0].as_u64().unwrap() as u16);
        return Message::Close(Some(CloseFrame {
            code,
            reason: c[1].as_str().unwrap().to_string().into(),
        }));
    }
    Message::text(r.to_string())
}

type AutoReply = Arc<dyn Fn(&Value) -> Vec<Value> + Send + Sync>;

struct Fake {
    url: String,
    conns: mpsc::UnboundedReceiver<Conn>,
}

impl Fake {
    /// `reject`: answer the handshake with this HTTP status. `hello`: sent on
    /// connect. `auto`: protocol replies to each client message.
    async fn start(reject: Option<u16>, hello: Vec<Value>, auto: AutoReply) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", l.local_addr().unwrap());
        let (ctx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let ctx = ctx.clone();
                let hello = hello.clone();
                let auto = auto.clone();
                tokio::spawn(async move {
                    let seen = Arc::new(Mutex::new((String::new(), Vec::new())));
                    let seen2 = seen.clone();
                    #[allow(clippy::result_large_err)] // the signature tungstenite asks for
                    let cb = move |req: &Request,
                                   resp: Response|
                          -> Result<Response, ErrorResponse> {
                        let mut s = seen2.lock().unwrap();
                        s.0 = req.uri().to_string();
                        s.1 = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        if let Some(code) = reject {
                            let mut r = ErrorResponse::new(Some(
                                r#"{"error":{"type":"invalid_request_error","code":"invalid_api_key"}}"#.to_string(),
                            ));
                            *r.status_mut() =
                                tokio_tungstenite::tungstenite::http::StatusCode::from_u16(code)
                                    .unwrap();
                            return Err(r);
                        }
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                        return;
                    };
                    let (uri, headers) = seen.lock().unwrap().clone();
                    let (mtx, rx) = mpsc::unbounded_channel();
                    let (tx, mut crx) = mpsc::unbounded_channel();
                    let _ = ctx.send(Conn {
                        uri,
                        headers,
                        rx,
                        tx,
                    });
                    for h in hello {
                        let _ = ws.send(Message::text(h.to_string())).await;
                    }
                    let mut deaf = false;
                    loop {
                        tokio::select! {
                            cmd = crx.recv() => match cmd {
                                Some(Cmd::Send(m, stamp)) => {
                                    if let Some(s) = stamp { let _ = s.send(Instant::now()); }
                                    let close = matches!(m, Message::Close(_));
                                    if ws.send(m).await.is_err() || close { if close { let _ = ws.flush().await; tokio::time::sleep(Duration::from_millis(50)).await; } break; }
                                }
                                Some(Cmd::Deaf) => deaf = true,
                                Some(Cmd::Drop) | None => break,
                            },
                            m = ws.next(), if !deaf => match m {
                                Some(Ok(m)) => {
                                    let replies = match &m {
                                        Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).map(|v| auto(&v)).unwrap_or_default(),
                                        Message::Binary(b) => serde_json::from_slice::<Value>(b).map(|v| auto(&v)).unwrap_or_default(),
                                        _ => Vec::new(),
                                    };
                                    let _ = mtx.send((Instant::now(), m));
                                    for r in replies { let _ = ws.send(reply_frame(r)).await; }
                                }
                                _ => break,
                            },
                        }
                    }
                });
            }
        });
        Fake { url, conns }
    }

    async fn conn(&mut self) -> Conn {
        timeout(T, self.conns.recv())
            .await
            .expect("a connection in time")
            .unwrap()
    }
}

// ------------------------------------------------------------- OpenAI fake

/// OpenAI Realtime: `session.created` on connect, `session.updated` echoing each `session.update`.
async fn openai_fake(reject: Option<u16>) -> Fake {
    let hello = vec![json!({"type": "session.created", "event_id": "event_1",
        "session": {"id": "sess_1", "object": "realtime.session", "model": "gpt-realtime"}})];
    Fake::start(
        reject,
        hello,
        Arc::new(|v: &Value| {
            if v["type"] == "session.update" {
                vec![json!({"type": "session.updated", "event_id": "event_2", "session": v["session"]})]
            } else {
                Vec::new()
            }
        }),
    )
    .await
}

fn cfg(base: &str) -> EngineConfig {
    capture_logs(); // every test's logs are scanned for the key
    let mut c = EngineConfig::new("call_test_1", "en-US");
    c.system_prompt = Some("You are Ava from Acme Dental. Confirm the appointment.".into());
    c.voice = Some("marin".into());
    c.model = Some("gpt-realtime-test".into());
    c.api_key = Some(voxline_shared::sidecar_link::SecretText::new(KEY));
    c.base_url = Some(base.into());
    c
}

fn fast_opts(flavor: Flavor) -> OpenAiOptions {
    OpenAiOptions {
        flavor,
        connect_timeout: Duration::from_secs(2),
        ..OpenAiOptions::default()
    }
}

async fn next(e: &mut impl Engine) -> EngineEvent {
    timeout(T, e.next_event())
        .await
        .expect("event in time")
        .expect("event")
}

/// Runs the engine (flushing what it owes the server) for `d`, expecting no event.
async fn idle(e: &mut impl Engine, d: Duration) {
    if let Ok(r) = timeout(d, e.next_event()).await {
        panic!("unexpected engine event: {r:?}");
    }
}

/// All 256 mu-law codes except 0x7F ("negative zero", which expands to the
/// same linear 0 as 0xFF and so re-encodes as 0xFF).
fn all_mu_codes() -> Vec<u8> {
    (0u8..=255).filter(|&c| c != 0x7F).collect()
}

fn mu_expand(codes: &[u8]) -> Vec<i16> {
    let mut out = Vec::new();
    Law::Mu.decode(codes, &mut out);
    out
}

fn mu_encode(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    Law::Mu.encode(pcm, &mut out);
    out
}

/// Names of one API generation's events.
struct Names {
    audio_delta: &'static str,
    audio_done: &'static str,
    transcript_done: &'static str,
}
const GA: Names = Names {
    audio_delta: "response.output_audio.delta",
    audio_done: "response.output_audio.done",
    transcript_done: "response.output_audio_transcript.done",
};
const BETA: Names = Names {
    audio_delta: "response.audio.delta",
    audio_done: "response.audio.done",
    transcript_done: "response.audio_transcript.done",
};

fn delta(n: &Names, item: &str, bytes: &[u8]) -> Value {
    json!({"type": n.audio_delta, "event_id": "ev", "response_id": "resp_1", "item_id": item,
           "output_index": 0, "content_index": 0, "delta": B64.encode(bytes)})
}

/// Session setup, greeting, audio both ways (exact mu-law bytes), transcripts of both roles.
async fn openai_conversation(flavor: Flavor, n: &Names) {
    let mut fake = openai_fake(None).await;
    let mut eng = timeout(T, openai::connect_with(cfg(&fake.url), fast_opts(flavor)))
        .await
        .unwrap()
        .unwrap();
    let mut conn = fake.conn().await;

    // Handshake: model in the query, bearer key in the header.
    assert_eq!(conn.uri, "/v1/realtime?model=gpt-realtime-test");
    assert_eq!(
        conn.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        conn.header("openai-beta"),
        (flavor == Flavor::Beta).then_some("realtime=v1")
    );

    // session.update content.
    let (_, up) = conn.recv_type("session.update").await;
    let s = &up["session"];
    assert_eq!(
        s["instructions"],
        "You are Ava from Acme Dental. Confirm the appointment."
    );
    match flavor {
        Flavor::Ga => {
            assert_eq!(s["type"], "realtime");
            assert_eq!(s["audio"]["input"]["format"]["type"], "audio/pcmu");
            assert_eq!(s["audio"]["output"]["format"]["type"], "audio/pcmu");
            assert_eq!(s["audio"]["output"]["voice"], "marin");
            assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
            assert_eq!(
                s["audio"]["input"]["turn_detection"]["interrupt_response"],
                true
            );
            assert_eq!(s["audio"]["input"]["transcription"]["language"], "en");
            assert!(s["audio"]["input"]["transcription"]["model"].is_string());
        }
        Flavor::Beta => {
            assert_eq!(s["input_audio_format"], "g711_ulaw");
            assert_eq!(s["output_audio_format"], "g711_ulaw");
            assert_eq!(s["voice"], "marin");
            assert_eq!(s["turn_detection"]["type"], "server_vad");
            assert!(s["input_audio_transcription"]["model"].is_string());
        }
    }
    // Greeting: a response is requested as soon as the session is set up.
    let (_, rc) = conn.recv_json().await;
    assert_eq!(rc["type"], "response.create");

    // Callee audio -> input_audio_buffer.append with the exact mu-law bytes.
    let codes = all_mu_codes();
    let pcm = mu_expand(&codes);
    for f in pcm.chunks(160) {
        timeout(T, eng.send_audio(f)).await.unwrap().unwrap();
    }
    let mut got = Vec::new();
    while got.len() < codes.len() {
        let (_, a) = conn.recv_type("input_audio_buffer.append").await;
        got.extend(B64.decode(a["audio"].as_str().unwrap()).unwrap());
    }
    assert_eq!(got, codes, "mu-law bytes reach the server unchanged");

    // Engine audio -> Audio events whose re-encoding is byte-exact.
    conn.send(
        json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
    );
    conn.send(
        json!({"type": "response.output_item.added", "response_id": "resp_1", "output_index": 0,
        "item": {"id": "item_a1", "type": "message", "role": "assistant", "content": []}}),
    );
    let (a, b) = codes.split_at(100);
    conn.send(delta(n, "item_a1", a));
    conn.send(delta(n, "item_a1", b));
    conn.send(json!({"type": n.audio_done, "response_id": "resp_1", "item_id": "item_a1", "output_index": 0, "content_index": 0}));
    conn.send(json!({"type": n.transcript_done, "response_id": "resp_1", "item_id": "item_a1", "output_index": 0,
        "content_index": 0, "transcript": "Hi, this is Ava from Acme Dental."}));
    conn.send(json!({"type": "response.done", "response": {"id": "resp_1", "status": "completed", "output": []}}));
    let mut heard = Vec::new();
    let ai_turn = loop {
        match next(&mut eng).await {
            EngineEvent::Audio(p) => heard.extend(p),
            t @ EngineEvent::Transcript { .. } => break t,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(mu_encode(&heard), codes, "engine audio round-trips exactly");
    match ai_turn {
        EngineEvent::Transcript {
            role,
            text,
            start_ms,
            end_ms,
        } => {
            assert_eq!(role, Role::Agent);
            assert_eq!(text, "Hi, this is Ava from Acme Dental.");
            // 255 samples = 31 ms of audio.
            assert_eq!(end_ms - start_ms, 31);
        }
        _ => unreachable!(),
    }

    // The callee's turn: VAD span + transcription -> a user Transcript with the VAD offsets.
    eng.played(31);
    conn.send(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 1200, "item_id": "item_u1"}));
    assert_eq!(next(&mut eng).await, EngineEvent::Interrupt);
    conn.send(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2750, "item_id": "item_u1"}));
    conn.send(json!({"type": "input_audio_buffer.committed", "previous_item_id": "item_a1", "item_id": "item_u1"}));
    conn.send(json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u1",
        "content_index": 0, "transcript": " Yes, Tuesday works. "}));
    assert_eq!(
        next(&mut eng).await,
        EngineEvent::Transcript {
            role: Role::Callee,
            text: "Yes, Tuesday works.".into(),
            start_ms: 1200,
            end_ms: 2750
        }
    );
    // The item was fully played and done: no truncate for it.
    idle(&mut eng, Duration::from_millis(100)).await;
    assert!(conn
        .drain()
        .iter()
        .all(|v| v["type"] != "conversation.item.truncate"));

    // A function call, the name coming from output_item.added (beta) or the event itself (GA).
    conn.send(json!({"type": "response.output_item.added", "response_id": "resp_2", "output_index": 0,
        "item": {"id": "item_f1", "type": "function_call", "call_id": "call_9", "name": "book_slot", "arguments": ""}}));
    conn.send(json!({"type": "response.function_call_arguments.done", "response_id": "resp_2", "item_id": "item_f1",
        "output_index": 0, "call_id": "call_9", "arguments": "{\"day\":\"tue\"}"}));
    assert_eq!(
        next(&mut eng).await,
        EngineEvent::FunctionCall {
            name: "book_slot".into(),
            call_id: "call_9".into(),
            arguments: "{\"day\":\"tue\"}".into()
        }
    );
    timeout(T, eng.function_result("call_9", "{\"ok\":true}"))
        .await
        .unwrap()
        .unwrap();
    let (_, out) = conn.recv_type("conversation.item.create").await;
    assert_eq!(out["item"]["type"], "function_call_output");
    assert_eq!(out["item"]["call_id"], "call_9");
    let (_, _) = conn.recv_type("response.create").await;

    timeout(T, eng.close()).await.unwrap();
}

#[tokio::test]
async fn openai_ga_names_session_audio_and_transcripts() {
    openai_conversation(Flavor::Ga, &GA).await;
}

#[tokio::test]
async fn openai_beta_names_session_audio_and_transcripts() {
    openai_conversation(Flavor::Beta, &BETA).await;
}

#[tokio::test]
async fn openai_ga_session_understands_beta_event_names_too() {
    // A GA session fed beta-named events (servers in transition) still works.
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.send(delta(&BETA, "i1", &[0x10, 0x20]));
    conn.send(delta(&GA, "i1", &[0x30]));
    assert_eq!(
        next(&mut eng).await,
        EngineEvent::Audio(mu_expand(&[0x10, 0x20]))
    );
    assert_eq!(next(&mut eng).await, EngineEvent::Audio(mu_expand(&[0x30])));
}

#[tokio::test]
async fn openai_barge_in_interrupts_at_once_and_truncates_at_played() {
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let mut conn = fake.conn().await;
    conn.recv_type("response.create").await;

    // 300 ms of assistant audio in three deltas.
    for _ in 0..3 {
        conn.send(delta(&GA, "item_a1", &[0x55; 800]));
    }
    let mut samples = 0;
    while samples < 2400 {
        match next(&mut eng).await {
            EngineEvent::Audio(p) => samples += p.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The callee has heard 120 ms of it when they start talking.
    eng.played(120);
    let sent_at = conn
        .send_timed(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 900, "item_id": "item_u1"}))
        .await;
    let ev = next(&mut eng).await;
    let got_at = Instant::now();
    assert_eq!(ev, EngineEvent::Interrupt);
    let lag = got_at - sent_at;
    eprintln!("openai barge-in: Interrupt {lag:?} after speech_started was written");
    assert!(
        lag < Duration::from_millis(20),
        "Interrupt {lag:?} after speech_started"
    );

    // The caller drops its queue and reports the final position (unchanged: 120 ms);
    // the engine then truncates the item at exactly that point.
    eng.played(120);
    // A late delta of the interrupted item must not be played.
    conn.send(delta(&GA, "item_a1", &[0x55; 800]));
    idle(&mut eng, Duration::from_millis(150)).await;
    let msgs = conn.drain();
    let tr: Vec<&Value> = msgs
        .iter()
        .filter(|v| v["type"] == "conversation.item.truncate")
        .collect();
    assert_eq!(tr.len(), 1, "one truncate: {msgs:?}");
    assert_eq!(tr[0]["item_id"], "item_a1");
    assert_eq!(tr[0]["content_index"], 0);
    assert_eq!(tr[0]["audio_end_ms"], 120);

    // The next response's audio is placed where playback stopped: a second
    // barge-in 40 ms into it truncates it at 40 ms.
    conn.send(delta(&GA, "item_a2", &[0x44; 800]));
    assert_eq!(
        next(&mut eng).await,
        EngineEvent::Audio(vec![Law::Mu.decode_sample(0x44); 800])
    );
    eng.played(160);
    conn.send(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 3000, "item_id": "item_u2"}));
    assert_eq!(next(&mut eng).await, EngineEvent::Interrupt);
    idle(&mut eng, Duration::from_millis(100)).await;
    let (_, t2) = conn.recv_type("conversation.item.truncate").await;
    assert_eq!(t2["item_id"], "item_a2");
    assert_eq!(t2["audio_end_ms"], 40);
}

#[tokio::test]
async fn openai_end_call_function_ends_the_call() {
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.send(json!({"type": "response.function_call_arguments.done", "response_id": "r", "item_id": "i",
        "output_index": 0, "call_id": "c1", "name": "end_call", "arguments": "{\"reason\":\"voicemail\"}"}));
    assert!(
        matches!(next(&mut eng).await, EngineEvent::FunctionCall { ref name, .. } if name == "end_call")
    );
    assert_eq!(
        next(&mut eng).await,
        EngineEvent::EndCall {
            reason: "voicemail".into()
        }
    );
}

/// Issue 18: after the call the session is asked for the post-call
/// analysis (a text-only response in the same conversation) and its JSON
/// answer, checked against the plan, is the engine's analysis; a server that
/// answers with prose gives none (the edge's rules then stand in).
#[tokio::test]
async fn openai_gives_the_post_call_analysis_in_its_session() {
    use voxline_shared::analysis::{AnalysisPlan, AnalysisSource, Sentiment};
    let plan = AnalysisPlan {
        success_outcomes: vec![],
        success_criteria: Some("The patient confirms the appointment.".into()),
        data_schema: Some(json!({"type": "object", "properties": {
            "confirmed": {"type": "boolean"}, "day": {"type": "string", "enum": ["Tuesday"]}}})),
    };
    for (reply, want) in [
        (
            r#"{"summary": "The patient confirmed Tuesday.", "sentiment": "positive", "success": true, "data": {"confirmed": true, "day": "Tuesday"}}"#,
            true,
        ),
        ("I'm sorry, I can only speak.", false),
    ] {
        let mut fake = openai_fake(None).await;
        let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
            .await
            .unwrap();
        let mut conn = fake.conn().await;
        conn.recv_type("session.update").await;
        let server = tokio::spawn(async move {
            // (The greeting's `response.create` came first.)
            let asked = loop {
                let (_, v) = conn.recv_type("response.create").await;
                if v["response"].is_object() {
                    break v;
                }
            };
            let (half, rest) = reply.split_at(reply.len() / 2);
            for d in [half, rest] {
                conn.send(
                    json!({"type": "response.output_text.delta", "response_id": "resp_a",
                    "item_id": "item_a", "output_index": 0, "content_index": 0, "delta": d}),
                );
            }
            conn.send(
                json!({"type": "response.output_text.done", "response_id": "resp_a",
                "item_id": "item_a", "output_index": 0, "content_index": 0, "text": reply}),
            );
            (asked, conn)
        });
        let got = timeout(T, eng.analyse(&plan)).await.expect("in time");
        let (asked, _conn) = server.await.unwrap();
        assert_eq!(asked["response"]["output_modalities"], json!(["text"]));
        let instructions = asked["response"]["instructions"].as_str().unwrap();
        assert!(
            instructions.contains("The patient confirms the appointment.")
                && instructions.contains("\"confirmed\""),
            "{instructions}"
        );
        if want {
            let a = got.expect("an analysis");
            assert_eq!(
                (a.summary.as_deref(), a.sentiment, a.success, a.source),
                (
                    Some("The patient confirmed Tuesday."),
                    Sentiment::Positive,
                    Some(true),
                    AnalysisSource::Engine
                )
            );
            assert_eq!(
                Value::Object(a.data.unwrap()),
                json!({"confirmed": true, "day": "Tuesday"})
            );
        } else {
            assert_eq!(got, None);
        }
        eng.close().await;
    }
}

/// Issue 17: an engine started while the callee's phone rings opens and
/// configures its session at once, but asks for the greeting only when told
/// the callee answered; a call never answered just closes it.
#[tokio::test]
async fn openai_started_while_ringing_greets_only_at_the_answer() {
    let mut fake = openai_fake(None).await;
    let mut c = cfg(&fake.url);
    c.greet_on_answer = true;
    let mut eng = openai::connect_with(c, fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let mut conn = fake.conn().await;
    conn.recv_type("session.update").await;
    // Ringing: the engine runs (the call task keeps polling it) but asks for nothing.
    idle(&mut eng, Duration::from_millis(300)).await;
    let sent = conn.drain();
    assert!(
        sent.iter().all(|v| v["type"] != "response.create"),
        "greeted before the answer: {sent:?}"
    );
    eng.answered();
    idle(&mut eng, Duration::from_millis(50)).await;
    conn.recv_type("response.create").await;

    // Never answered: closed, and it never greeted.
    let mut c = cfg(&fake.url);
    c.greet_on_answer = true;
    let mut eng = openai::connect_with(c, fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let mut conn = fake.conn().await;
    conn.recv_type("session.update").await;
    idle(&mut eng, Duration::from_millis(100)).await;
    eng.close().await;
    let mut closed = false;
    while let Ok(Some((_, m))) = timeout(T, conn.rx.recv()).await {
        match m {
            Message::Close(_) => {
                closed = true;
                break;
            }
            Message::Text(t) => assert!(!t.contains("response.create"), "{t}"),
            _ => {}
        }
    }
    assert!(closed, "the session was not closed");
}

/// Issue 17, a whole call: the call task opens and configures the cloud
/// session while the callee's phone rings (sipp rings forever), before any
/// answer; the edge's hangup cancels the call and the session is closed,
/// never having greeted.
#[tokio::test]
async fn a_call_opens_its_engine_session_while_ringing_and_closes_it_unanswered() {
    use voxline_media_sidecar::call_task::{sip::run_sip_call, HangupCause};
    use voxline_media_sidecar::engine::guard::AllowedHosts;
    use voxline_media_sidecar::lease::driver::Msg;
    use voxline_media_sidecar::telephony::Telephony;
    use voxline_shared::sidecar_link::{EventKind, Offer, SecretText};

    let mut fake = openai_fake(None).await;
    // sipp as the trunk: 100, 180, then waits for our CANCEL.
    let sipp_bin = voxline_testkit::SIPP.require();
    let port = voxline_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("voxline-ring-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uas_ring_cancel.xml");
    let mut sipp = tokio::process::Command::new(sipp_bin)
        .current_dir(&dir)
        .args(["-sf", scenario.to_str().unwrap(), "-i", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "20s", "-timeout_error"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp");
    let t0 = Instant::now();
    while !voxline_testkit::udp_port_bound(port) {
        assert!(t0.elapsed() < T, "sipp did not bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cfg: voxline_media_sidecar::config::Telephony = toml::from_str(&format!(
        "bind_ip = \"127.0.0.1\"\n[[trunks]]\nname = \"sipp\"\nhost = \"127.0.0.1\"\n\
         port = {port}\nfrom_number = \"+14155550199\"\n"
    ))
    .unwrap();
    let tel = Telephony::start(&cfg, AllowedHosts::parse(&["127.0.0.1"]).unwrap())
        .await
        .unwrap();
    let offer = Offer {
        tenant_id: "ten_1".into(),
        lease_id: "l_1".into(),
        call_id: "c_ring".into(),
        attempt: 1,
        phone: "+14155550100".into(),
        caller_name: None,
        caller_number: None,
        agent_id: "ag_1".into(),
        system_prompt: Some("Greet the callee.".into()),
        voice: None,
        language: "en-US".into(),
        engine: voxline_shared::EngineKind::OpenaiRealtime.into(),
        model: None,
        max_seconds: 60,
        record: false,
        metadata: None,
        engine_api_key: Some(SecretText::new(KEY.to_string())),
        engine_base_url: Some(fake.url.clone()),
        engine_key_unavailable: false,
        silence_timeout_seconds: None,
        ack_deadline_ms: 0,
        first_speaker: voxline_shared::sidecar_link::FirstSpeaker::Agent,
        analysis: None,
        amd: Default::default(),
        amd_message: None,
        tools: Vec::new(),
        connect: None,
        transfer_people: Vec::new(),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (hangup_tx, hangup_rx) = oneshot::channel();
    let call = tokio::spawn(run_sip_call(
        offer,
        std::sync::Arc::new(tel),
        tx,
        hangup_rx,
        tokio::sync::mpsc::channel(1).1,
    ));

    // The session opens and is configured while the phone rings.
    let mut conn = fake.conn().await;
    conn.recv_type("session.update").await;
    let mut kinds = vec![];
    while let Ok(Msg::Event { kind, .. }) = rx.try_recv() {
        kinds.push(kind.name());
    }
    assert!(!kinds.contains(&"answered"), "{kinds:?}");
    // Nobody answers: the edge hangs up (CANCEL).
    hangup_tx.send(HangupCause::Requested).unwrap();
    let mut ended = None;
    while let Ok(Some(m)) = timeout(T, rx.recv()).await {
        match m {
            Msg::Event {
                kind: EventKind::Ended { status, .. },
                ..
            } => ended = Some(status),
            Msg::Event { kind, .. } => kinds.push(kind.name()),
            Msg::CallDone { .. } => break,
            _ => {}
        }
    }
    assert_eq!(
        ended,
        Some(voxline_shared::CallStatus::Cancelled),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"ringing") && !kinds.contains(&"answered"),
        "{kinds:?}"
    );
    // The session was closed, and never asked for the greeting.
    let mut closed = false;
    while let Ok(Some((_, m))) = timeout(T, conn.rx.recv()).await {
        match m {
            Message::Close(_) => {
                closed = true;
                break;
            }
            Message::Text(t) => assert!(!t.contains("response.create"), "{t}"),
            _ => {}
        }
    }
    assert!(closed, "the engine session was left open");
    timeout(T, call).await.expect("call task ends").unwrap();
    let status = timeout(T, sipp.wait()).await.expect("sipp exits").unwrap();
    assert!(status.success(), "sipp: {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn openai_handshake_401_is_auth() {
    let fake = openai_fake(Some(401)).await;
    let r = timeout(
        T,
        openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga)),
    )
    .await
    .unwrap();
    let e = r.err().expect("rejected");
    assert_eq!(e.code(), "auth", "{e}");
}

#[tokio::test]
async fn openai_error_event_invalid_api_key_is_auth() {
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    // A benign error does not end the session...
    conn.send(json!({"type": "error", "event_id": "e1", "error": {"type": "invalid_request_error",
        "code": "item_truncate_invalid_item_id", "message": "Item not found", "param": null, "event_id": null}}));
    conn.send(delta(&GA, "i", &[1, 2, 3]));
    assert!(matches!(next(&mut eng).await, EngineEvent::Audio(_)));
    // ...a key error does, and stays.
    conn.send(json!({"type": "error", "event_id": "e2", "error": {"type": "invalid_request_error",
        "code": "invalid_api_key", "message": format!("Incorrect API key provided: {KEY}."), "param": null}}));
    let e = timeout(T, eng.next_event()).await.unwrap().unwrap_err();
    assert_eq!(e.code(), "auth");
    assert!(!e.to_string().contains(KEY));
    assert_eq!(
        timeout(T, eng.send_audio(&[0; 160]))
            .await
            .unwrap()
            .unwrap_err()
            .code(),
        "auth"
    );
}

#[tokio::test]
async fn openai_close_and_drop_are_disconnected() {
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.send(delta(&GA, "i", &[9; 16]));
    conn.close(CloseCode::Away, "server going away");
    assert!(matches!(next(&mut eng).await, EngineEvent::Audio(_)));
    let e = timeout(T, eng.next_event()).await.unwrap().unwrap_err();
    assert!(matches!(e, EngineError::Disconnected(_)), "{e:?}");

    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.tx.send(Cmd::Drop).unwrap();
    let e = timeout(T, eng.next_event()).await.unwrap().unwrap_err();
    assert_eq!(e.code(), "disconnected", "{e:?}");
    // And it stays so.
    assert_eq!(
        timeout(T, eng.next_event())
            .await
            .unwrap()
            .unwrap_err()
            .code(),
        "disconnected"
    );
}

#[tokio::test]
async fn openai_silent_server_times_out_but_quiet_healthy_one_does_not() {
    let opts = OpenAiOptions {
        idle_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(100),
        ..fast_opts(Flavor::Ga)
    };
    // Healthy but quiet: it answers our pings, so 700 ms of no events is fine.
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), opts.clone())
        .await
        .unwrap();
    let _conn = fake.conn().await;
    idle(&mut eng, Duration::from_millis(700)).await;

    // Hung: reads nothing, answers nothing.
    let mut eng = openai::connect_with(cfg(&fake.url), opts.clone())
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.tx.send(Cmd::Deaf).unwrap();
    let t0 = Instant::now();
    let e = timeout(T, eng.next_event()).await.unwrap().unwrap_err();
    assert_eq!(e.code(), "timeout", "{e:?}");
    assert!(t0.elapsed() < Duration::from_millis(1000));

    // Never says session.created: connect times out.
    let silent = Fake::start(None, vec![], Arc::new(|_: &Value| Vec::new())).await;
    let opts = OpenAiOptions {
        connect_timeout: Duration::from_millis(300),
        ..opts
    };
    let e = timeout(T, openai::connect_with(cfg(&silent.url), opts))
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(e.code(), "timeout");
}

#[tokio::test]
async fn openai_unreachable_is_unavailable() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    drop(l);
    let e = timeout(T, openai::connect_with(cfg(&url), fast_opts(Flavor::Ga)))
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(e.code(), "unavailable", "{e}");
}

// ------------------------------------------------------------ logging / Send

#[path = "common/log_capture.rs"]
mod log_capture;
use log_capture::Capture;

/// Every test's logs land in one buffer (TRACE); the key tests assert no
/// key appears anywhere.
fn capture_logs() -> Capture {
    log_capture::capture_logs(tracing::Level::TRACE)
}

#[tokio::test]
async fn openai_key_never_logged() {
    let cap = capture_logs();
    // A full session with a barge-in, a benign error that quotes the key, then an auth failure.
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.send(delta(&GA, "i", &[1; 80]));
    assert!(matches!(next(&mut eng).await, EngineEvent::Audio(_)));
    conn.send(
        json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 5, "item_id": "u"}),
    );
    assert_eq!(next(&mut eng).await, EngineEvent::Interrupt);
    conn.send(
        json!({"type": "error", "error": {"type": "invalid_request_error", "code": "x",
        "message": format!("something about {KEY}")}}),
    );
    conn.send(json!({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_api_key",
        "message": format!("Incorrect API key provided: {KEY}")}}));
    let _ = timeout(T, eng.next_event()).await.unwrap().unwrap_err();
    eng.close().await;
    // Handshake rejection and an unparsable URL with the key in it.
    let rej = openai_fake(Some(401)).await;
    let _ = openai::connect_with(cfg(&rej.url), fast_opts(Flavor::Ga))
        .await
        .err()
        .unwrap();
    let logs = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("openai realtime session started"),
        "capture works: {logs}"
    );
    assert!(logs.contains("auth"), "the failure is logged: {logs}");
    assert!(!logs.contains(KEY), "key leaked into logs:\n{logs}");
    assert!(
        !logs.contains("SECRET"),
        "part of the key leaked into logs:\n{logs}"
    );
}

#[tokio::test]
async fn engines_can_be_spawned_and_boxed() {
    fn spawn_generic<E: Engine + 'static>(mut e: E) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _ = e.send_audio(&[0; 160]).await;
            let _ = timeout(Duration::from_millis(50), e.next_event()).await;
            e.close().await;
        })
    }
    let mut fake = openai_fake(None).await;
    let eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let _c = fake.conn().await;
    spawn_generic(BoxedEngine::new(eng)).await.unwrap();
}

// ------------------------------------------------------------- Gemini fake

use voxline_media_sidecar::engine::gemini::{self, GeminiOptions};

const GKEY: &str = "AIzaFAKE-SECRET-gemini-key-42";

/// Gemini Live: answers `setup` with `setupComplete` in a binary frame (as the service does).
async fn gemini_fake() -> Fake {
    Fake::start(
        None,
        vec![],
        Arc::new(|v: &Value| {
            if v.get("setup").is_some() {
                vec![json!({"__binary": {"setupComplete": {}}})]
            } else {
                Vec::new()
            }
        }),
    )
    .await
}

fn gcfg(base: &str) -> EngineConfig {
    capture_logs();
    let mut c = EngineConfig::new("call_g_1", "en-US");
    c.system_prompt = Some("You are Ava from Acme Dental.".into());
    c.voice = Some("Puck".into());
    c.model = Some("gemini-live-test".into());
    c.api_key = Some(voxline_shared::sidecar_link::SecretText::new(GKEY));
    c.base_url = Some(base.into());
    c.metadata = Some(
        json!({"tools": [{"type": "function", "name": "book_slot", "description": "Book",
        "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}}]}),
    );
    c
}

fn gopts() -> GeminiOptions {
    GeminiOptions {
        connect_timeout: Duration::from_secs(2),
        ..GeminiOptions::default()
    }
}

fn pcm_b64(pcm: &[i16]) -> String {
    B64.encode(
        pcm.iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn model_audio(pcm: &[i16]) -> Value {
    json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": pcm_b64(pcm)}}]}}})
}

#[tokio::test]
async fn gemini_setup_audio_both_ways_and_transcripts() {
    let mut fake = gemini_fake().await;
    let mut eng = timeout(T, gemini::connect_with(gcfg(&fake.url), gopts()))
        .await
        .unwrap()
        .unwrap();
    let mut conn = fake.conn().await;
    assert_eq!(
        conn.uri,
        format!("/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key={GKEY}")
    );

    // setup content.
    let (_, v) = conn.recv_json().await;
    let s = &v["setup"];
    assert_eq!(s["model"], "models/gemini-live-test");
    assert_eq!(
        s["systemInstruction"]["parts"][0]["text"],
        "You are Ava from Acme Dental."
    );
    assert_eq!(
        s["generationConfig"]["responseModalities"],
        json!(["AUDIO"])
    );
    assert_eq!(
        s["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
        "Puck"
    );
    assert_eq!(
        s["generationConfig"]["speechConfig"]["languageCode"],
        "en-US"
    );
    assert_eq!(s["inputAudioTranscription"], json!({}));
    assert_eq!(s["outputAudioTranscription"], json!({}));
    assert_eq!(
        s["tools"][0]["functionDeclarations"][0]["name"],
        "book_slot"
    );
    // Greeting turn.
    let (_, g) = conn.recv_json().await;
    assert_eq!(g["clientContent"]["turnComplete"], true);
    assert_eq!(g["clientContent"]["turns"][0]["role"], "user");

    // Callee audio: 8 kHz -> 16 kHz PCM16LE, tone preserved, no image at 8 kHz - f.
    let input = tone(8000, &[(1000.0, 8000.0)], 8000);
    for f in input.chunks(160) {
        timeout(T, eng.send_audio(f)).await.unwrap().unwrap();
    }
    let mut up = Vec::new();
    while up.len() < 15_000 {
        let (_, v) = conn.recv_json().await;
        let a = &v["realtimeInput"]["audio"];
        assert_eq!(a["mimeType"], "audio/pcm;rate=16000");
        let b = B64.decode(a["data"].as_str().unwrap()).unwrap();
        up.extend(b.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
    }
    let mid = &up[2000..14000];
    assert!(
        (amp_at(mid, 16000, 1000.0) - 8000.0).abs() < 300.0,
        "1 kHz kept: {}",
        amp_at(mid, 16000, 1000.0)
    );
    assert!(
        amp_at(mid, 16000, 7000.0) < 100.0,
        "image at 7 kHz: {}",
        amp_at(mid, 16000, 7000.0)
    );

    // The callee's words, then the model's audio (24 kHz: 1 kHz wanted + 5 kHz that must not alias to 3 kHz).
    conn.send_binary_json(json!({"serverContent": {"inputTranscription": {"text": "Yes, "}}}));
    conn.send_binary_json(
        json!({"serverContent": {"inputTranscription": {"text": "that works."}}}),
    );
    let model = tone(24000, &[(1000.0, 6000.0), (5000.0, 6000.0)], 7200); // 300 ms
    for (i, c) in model.chunks(1000).enumerate() {
        conn.send_binary_json(model_audio(c));
        if i == 0 {
            conn.send_binary_json(
                json!({"serverContent": {"outputTranscription": {"text": "Great, "}}}),
            );
        }
    }
    conn.send_binary_json(
        json!({"serverContent": {"outputTranscription": {"text": "see you Tuesday."}}}),
    );
    conn.send_binary_json(json!({"serverContent": {"generationComplete": true}}));
    conn.send_binary_json(json!({"serverContent": {"turnComplete": true}}));

    match next(&mut eng).await {
        EngineEvent::Transcript {
            role: Role::Callee,
            text,
            start_ms,
            end_ms,
        } => {
            assert_eq!(text, "Yes, that works.");
            assert!(end_ms >= start_ms);
        }
        other => panic!("user turn first, got {other:?}"),
    }
    let mut out = Vec::new();
    let ai = loop {
        match next(&mut eng).await {
            EngineEvent::Audio(p) => out.extend(p),
            t @ EngineEvent::Transcript { .. } => break t,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(out.len(), 2400, "300 ms at 8 kHz after the turn's flush");
    let mid = &out[200..2200];
    assert!(
        (amp_at(mid, 8000, 1000.0) - 6000.0).abs() < 300.0,
        "1 kHz kept: {}",
        amp_at(mid, 8000, 1000.0)
    );
    assert!(
        amp_at(mid, 8000, 3000.0) < 100.0,
        "5 kHz aliased to 3 kHz: {}",
        amp_at(mid, 8000, 3000.0)
    );
    match ai {
        EngineEvent::Transcript {
            role: Role::Agent,
            text,
            start_ms,
            end_ms,
        } => {
            assert_eq!(text, "Great, see you Tuesday.");
            assert_eq!(end_ms - start_ms, 300);
        }
        _ => unreachable!(),
    }

    // Tool call and its answer.
    conn.send_binary_json(
        json!({"toolCall": {"functionCalls": [{"id": "fc_1", "name": "book_slot", "args": {"day": "tue"}}]}}),
    );
    assert_eq!(
        next(&mut eng).await,
        EngineEvent::FunctionCall {
            name: "book_slot".into(),
            call_id: "fc_1".into(),
            arguments: "{\"day\":\"tue\"}".into()
        }
    );
    timeout(T, eng.function_result("fc_1", "{\"ok\":true}"))
        .await
        .unwrap()
        .unwrap();
    let r = loop {
        let (_, v) = conn.recv_json().await;
        if v.get("realtimeInput").is_none() {
            break v;
        }
    };
    assert_eq!(
        r["toolResponse"]["functionResponses"][0],
        json!({"id": "fc_1", "name": "book_slot", "response": {"ok": true}})
    );
    timeout(T, eng.close()).await.unwrap();
}

#[tokio::test]
async fn gemini_interrupted_is_an_immediate_interrupt() {
    let mut fake = gemini_fake().await;
    let mut eng = gemini::connect_with(
        gcfg(&fake.url),
        GeminiOptions {
            greeting: None,
            ..gopts()
        },
    )
    .await
    .unwrap();
    let conn = fake.conn().await;
    let model = tone(24000, &[(440.0, 5000.0)], 24000); // 1 s
    conn.send_binary_json(
        json!({"serverContent": {"outputTranscription": {"text": "Let me tell you about our offer"}}}),
    );
    for c in model.chunks(4800) {
        conn.send_binary_json(model_audio(c));
    }
    let mut n = 0;
    while n < 7900 {
        match next(&mut eng).await {
            EngineEvent::Audio(p) => n += p.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    eng.played(250);
    let sent = conn
        .send_timed(json!({"serverContent": {"interrupted": true}}))
        .await;
    assert_eq!(next(&mut eng).await, EngineEvent::Interrupt);
    let lag = Instant::now() - sent;
    eprintln!("gemini barge-in: Interrupt {lag:?} after interrupted was written");
    assert!(
        lag < Duration::from_millis(20),
        "Interrupt {lag:?} after interrupted"
    );
    // The cut turn's transcript lasts what the callee heard.
    match next(&mut eng).await {
        EngineEvent::Transcript {
            role: Role::Agent,
            start_ms,
            end_ms,
            ..
        } => assert_eq!(end_ms - start_ms, 250),
        other => panic!("unexpected {other:?}"),
    }
    // Nothing of the cut turn is left in the resampler: the next turn starts clean.
    conn.send_binary_json(json!({"serverContent": {"turnComplete": true}}));
    idle(&mut eng, Duration::from_millis(100)).await;
}

/// Seen while fuzzing the Gemini client (`cargo xtask fuzz engine_gemini`):
/// the output rate comes from the server's `mimeType`, and a resampler for
/// `rate=4000000000` takes hundreds of MB and a second of CPU per call.
/// Tenants choose the engine endpoint, so only plausible rates are accepted.
#[tokio::test]
async fn gemini_absurd_output_rate_is_a_protocol_error() {
    for rate in ["4000000000", "7", "0"] {
        let mut fake = gemini_fake().await;
        let o = GeminiOptions {
            greeting: None,
            ..gopts()
        };
        let mut eng = gemini::connect_with(gcfg(&fake.url), o).await.unwrap();
        let conn = fake.conn().await;
        let pcm = pcm_b64(&[100i16; 480]);
        conn.send_binary_json(json!({"serverContent": {"modelTurn": {"parts": [
            {"inlineData": {"mimeType": format!("audio/pcm;rate={rate}"), "data": pcm}}]}}}));
        let r = timeout(T, eng.next_event()).await.unwrap();
        assert!(
            matches!(&r, Err(e) if e.code() == "protocol"),
            "rate={rate}: {r:?}"
        );
    }
}

#[tokio::test]
async fn gemini_errors_map_to_engine_errors() {
    // Handshake rejected.
    let rej = Fake::start(Some(403), vec![], Arc::new(|_: &Value| Vec::new())).await;
    let e = timeout(T, gemini::connect_with(gcfg(&rej.url), gopts()))
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(e.code(), "auth", "{e}");

    // Invalid key: the service closes the socket after `setup` with a reason about the key.
    let bad = Fake::start(
        None,
        vec![],
        Arc::new(|v: &Value| {
            if v.get("setup").is_some() {
                vec![json!({"__close": [1007, "API key not valid. Please pass a valid API key."]})]
            } else {
                Vec::new()
            }
        }),
    )
    .await;
    let e = timeout(T, gemini::connect_with(gcfg(&bad.url), gopts()))
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(e.code(), "auth", "{e}");

    // No setupComplete.
    let silent = Fake::start(None, vec![], Arc::new(|_: &Value| Vec::new())).await;
    let o = GeminiOptions {
        connect_timeout: Duration::from_millis(300),
        ..gopts()
    };
    let e = timeout(T, gemini::connect_with(gcfg(&silent.url), o))
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(e.code(), "timeout", "{e}");

    // goAway, close, drop -> disconnected; a hung server -> timeout.
    let mut fake = gemini_fake().await;
    let mut eng = gemini::connect_with(gcfg(&fake.url), gopts())
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.send_binary_json(json!({"goAway": {"timeLeft": "5s"}}));
    assert_eq!(
        timeout(T, eng.next_event())
            .await
            .unwrap()
            .unwrap_err()
            .code(),
        "disconnected"
    );

    let mut eng = gemini::connect_with(gcfg(&fake.url), gopts())
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.close(CloseCode::Normal, "session over");
    assert_eq!(
        timeout(T, eng.next_event())
            .await
            .unwrap()
            .unwrap_err()
            .code(),
        "disconnected"
    );

    let mut eng = gemini::connect_with(gcfg(&fake.url), gopts())
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.tx.send(Cmd::Drop).unwrap();
    assert_eq!(
        timeout(T, eng.next_event())
            .await
            .unwrap()
            .unwrap_err()
            .code(),
        "disconnected"
    );

    let o = GeminiOptions {
        idle_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(100),
        ..gopts()
    };
    let mut eng = gemini::connect_with(gcfg(&fake.url), o).await.unwrap();
    let conn = fake.conn().await;
    conn.tx.send(Cmd::Deaf).unwrap();
    assert_eq!(
        timeout(T, eng.next_event())
            .await
            .unwrap()
            .unwrap_err()
            .code(),
        "timeout"
    );
}

#[tokio::test]
async fn gemini_key_never_logged() {
    let cap = capture_logs();
    let mut fake = gemini_fake().await;
    let mut eng = gemini::connect_with(gcfg(&fake.url), gopts())
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.send_binary_json(model_audio(&[100; 480]));
    assert!(matches!(next(&mut eng).await, EngineEvent::Audio(_)));
    conn.close(CloseCode::Policy, &format!("API key not valid: {GKEY}"));
    let e = timeout(T, eng.next_event()).await.unwrap().unwrap_err();
    assert_eq!(e.code(), "auth");
    assert!(!e.to_string().contains(GKEY));
    let rej = Fake::start(Some(401), vec![], Arc::new(|_: &Value| Vec::new())).await;
    let e = gemini::connect_with(gcfg(&rej.url), gopts())
        .await
        .err()
        .unwrap();
    assert!(!e.to_string().contains(GKEY));
    let logs = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("gemini live session started"),
        "capture works: {logs}"
    );
    assert!(
        !logs.contains(GKEY) && !logs.contains("SECRET"),
        "key leaked into logs:\n{logs}"
    );
}

// ------------------------------------------- untrusted servers (issue 12)
//
// An engine URL may be a tenant's: its server may send anything. Whatever it
// sends, the session ends with a clean error (the call ends `engine_error`),
// never with memory the server chose, and a URL whose host is not a public
// address is not connected to at all.

use voxline_media_sidecar::engine::guard::AllowedHosts;
use voxline_media_sidecar::engine::limits;

async fn next_err(e: &mut impl Engine) -> EngineError {
    loop {
        match timeout(T, e.next_event())
            .await
            .expect("an outcome in time")
        {
            Ok(_) => continue,
            Err(e) => return e,
        }
    }
}

#[tokio::test]
async fn openai_message_over_the_size_limit_is_a_protocol_error() {
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    // One valid audio delta, 1.2 MiB on the wire (tungstenite's default allows 64 MiB).
    conn.send(delta(&GA, "item_big", &vec![0x55; 900 * 1024]));
    let e = timeout(T, eng.next_event())
        .await
        .unwrap()
        .expect_err("the oversized message is refused");
    assert_eq!(e.code(), "protocol", "{e}");
    // The engine stays failed.
    assert!(eng.send_audio(&[0; 160]).await.is_err());
}

#[tokio::test]
async fn openai_audio_in_one_message_is_bounded() {
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    // 10 s of mu-law passes; 15 s (160 KB of base64, under the message limit) does not.
    conn.send(delta(&GA, "item_1", &vec![0x55; 80_000]));
    match next(&mut eng).await {
        EngineEvent::Audio(pcm) => assert_eq!(pcm.len(), 80_000),
        other => panic!("{other:?}"),
    }
    conn.send(delta(&GA, "item_1", &vec![0x55; 120_000]));
    let e = timeout(T, eng.next_event())
        .await
        .unwrap()
        .expect_err("15 s of audio in one event is refused");
    assert_eq!(e.code(), "protocol", "{e}");
}

#[tokio::test]
async fn openai_state_kept_per_server_message_stays_bounded() {
    let mut fake = openai_fake(None).await;
    let mut eng = openai::connect_with(cfg(&fake.url), fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    // Turns that never get a transcript, function calls never answered, items.
    for i in 0..300 {
        conn.send(json!({"type": "input_audio_buffer.speech_started", "item_id": format!("user_item_{i:0>200}"), "audio_start_ms": i}));
        conn.send(json!({"type": "input_audio_buffer.speech_stopped", "item_id": format!("other_item_{i:0>200}"), "audio_end_ms": i}));
        conn.send(
            json!({"type": "response.output_item.added", "item": {"type": "function_call",
            "call_id": format!("call_{i:0>200}"), "name": format!("fn_{i:0>200}")}}),
        );
        conn.send(delta(&GA, &format!("asst_item_{i:0>200}"), &[1; 8]));
    }
    conn.send(json!({"type": "response.done", "response": {"status": "completed"}}));
    // Every speech_started hands out an Interrupt, every delta audio; then quiet.
    let mut events = 0;
    while let Ok(Ok(_)) = timeout(Duration::from_millis(300), eng.next_event()).await {
        events += 1;
    }
    assert!(events >= 600, "{events} events");
    let (entries, bytes) = eng.tracked();
    assert!(entries <= 4 * limits::MAX_TRACKED, "{entries} entries kept");
    assert!(
        bytes <= 4 * limits::MAX_TRACKED * limits::MAX_ID_BYTES,
        "{bytes} bytes of ids kept"
    );

    // An absurd id is refused, not kept.
    conn.send(json!({"type": "input_audio_buffer.speech_started", "item_id": "x".repeat(100_000)}));
    assert_eq!(next_err(&mut eng).await.code(), "protocol");
}

async fn gemini_session(fake: &mut Fake) -> (gemini::GeminiEngine, Conn) {
    let eng = gemini::connect_with(gcfg(&fake.url), gopts())
        .await
        .unwrap();
    let conn = fake.conn().await;
    (eng, conn)
}

#[tokio::test]
async fn gemini_absurd_sample_rates_end_the_session() {
    let mut fake = gemini_fake().await;
    for rate in ["0", "1", "1000000", "99999999999", "fast"] {
        let (mut eng, conn) = gemini_session(&mut fake).await;
        conn.send_binary_json(
            json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
            "mimeType": format!("audio/pcm;rate={rate}"), "data": pcm_b64(&[100; 960])}}]}}}),
        );
        let e = next_err(&mut eng).await;
        assert_eq!(e.code(), "protocol", "rate {rate}: {e}");
    }
    // A sane rate other than 24 kHz is fine.
    let (mut eng, conn) = gemini_session(&mut fake).await;
    conn.send_binary_json(json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=16000", "data": pcm_b64(&[100; 3200])}}]}, "turnComplete": true}}));
    assert!(matches!(next(&mut eng).await, EngineEvent::Audio(_)));
}

#[tokio::test]
async fn gemini_audio_in_one_message_is_bounded() {
    let mut fake = gemini_fake().await;
    let (mut eng, conn) = gemini_session(&mut fake).await;
    // 12 s at 24 kHz in two parts of one message (576 KB of base64, under the message limit).
    let part = json!({"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": pcm_b64(&vec![100; 6 * 24_000])}});
    conn.send_binary_json(json!({"serverContent": {"modelTurn": {"parts": [part.clone(), part]}}}));
    assert_eq!(next_err(&mut eng).await.code(), "protocol");
    // Over the message limit.
    let (mut eng, conn) = gemini_session(&mut fake).await;
    conn.send_binary_json(model_audio(&vec![100; 500_000]));
    assert_eq!(next_err(&mut eng).await.code(), "protocol");
}

#[tokio::test]
async fn gemini_transcript_text_of_a_turn_is_bounded() {
    let mut fake = gemini_fake().await;
    let (mut eng, conn) = gemini_session(&mut fake).await;
    let chunk = "word ".repeat(200);
    for _ in 0..200 {
        conn.send_binary_json(json!({"serverContent": {"outputTranscription": {"text": chunk}}}));
        conn.send_binary_json(json!({"serverContent": {"inputTranscription": {"text": chunk}}}));
    }
    for i in 0..300 {
        conn.send_binary_json(json!({"toolCall": {"functionCalls": [{"id": format!("c{i:0>200}"), "name": "book_slot", "args": {}}]}}));
    }
    let mut calls = 0;
    while calls < 300 {
        if let EngineEvent::FunctionCall { .. } = next(&mut eng).await {
            calls += 1;
        }
    }
    let (entries, bytes) = eng.tracked();
    assert!(entries <= limits::MAX_TRACKED, "{entries} entries");
    assert!(
        bytes <= 2 * limits::MAX_TURN_TEXT_BYTES + limits::MAX_TRACKED * limits::MAX_ID_BYTES,
        "{bytes} bytes kept"
    );
    conn.send_binary_json(json!({"serverContent": {"turnComplete": true}}));
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let EngineEvent::Transcript { text, .. } = next(&mut eng).await {
            texts.push(text);
        }
    }
    for t in texts {
        assert!(
            t.len() <= limits::MAX_TURN_TEXT_BYTES && t.len() > 10_000,
            "{} bytes",
            t.len()
        );
    }
}

/// Whether a TCP connection reached `l` (any connect has returned by now,
/// so the kernel has queued it already).
fn was_reached(l: &TcpListener) -> bool {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    matches!(l.poll_accept(&mut cx), Poll::Ready(Ok(_)))
}

#[tokio::test]
async fn a_guarded_engine_url_is_vetted_before_connecting() {
    // Loopback, not allowed: refused before any connection, key not in the error.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = cfg(&format!("ws://{}", l.local_addr().unwrap()));
    c.url_guard = Some(AllowedHosts::default());
    let e = openai::connect_with(c, fast_opts(Flavor::Ga))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), "refused", "{e}");
    assert!(
        e.to_string().contains("loopback") && !e.to_string().contains(KEY),
        "{e}"
    );
    assert!(!was_reached(&l));
    // A name that resolves to loopback: the same.
    let mut g = gcfg(&format!(
        "ws://localhost:{}",
        l.local_addr().unwrap().port()
    ));
    g.url_guard = Some(AllowedHosts::default());
    let e = gemini::connect_with(g, gopts()).await.err().unwrap();
    assert_eq!(e.code(), "refused", "{e}");
    assert!(!e.to_string().contains(GKEY), "{e}");
    assert!(!was_reached(&l));

    // Allowed by the operator (by address): a normal session.
    let mut fake = openai_fake(None).await;
    let mut c = cfg(&fake.url);
    c.url_guard = Some(AllowedHosts::parse(&["127.0.0.0/8"]).unwrap());
    let mut eng = openai::connect_with(c, fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    conn.send(delta(&GA, "i", &[1; 80]));
    assert!(matches!(next(&mut eng).await, EngineEvent::Audio(_)));
    // By name: localhost is connected to at the address it resolved to.
    let port = fake.url.rsplit(':').next().unwrap().to_string();
    let mut g = cfg(&format!("ws://LocalHost:{port}"));
    g.url_guard = Some(AllowedHosts::parse(&["localhost"]).unwrap());
    let _eng = openai::connect_with(g, fast_opts(Flavor::Ga))
        .await
        .unwrap();
    let conn = fake.conn().await;
    // Host (and SNI, with wss) stay the name.
    let host = conn.header("host").unwrap_or("");
    assert!(
        host.eq_ignore_ascii_case(&format!("localhost:{port}")),
        "{host}"
    );
}
