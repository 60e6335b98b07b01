//! Engine targets: the OpenAI Realtime and Gemini Live clients fed server
//! messages over a real websocket on loopback (their event handling is
//! private to the engines, so the target plays the server rather than
//! reaching inside).
//!
//! Input: lines. A line is a text frame the server sends, except
//! - `!bin <text>`: the same as a binary frame,
//! - `!play <ms>` / `!send` / `!result`: what the call task does after the
//!   next event it receives (report playout, send a frame of callee audio,
//!   answer the last function call), in order.
//!
//! The server sends its handshake message (`session.created` /
//! `setupComplete`), every frame, then closes; the client reads events until
//! it reports an error (which it must, at the latest on the close).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use voxline_media_sidecar::engine::gemini::{self, GeminiOptions};
use voxline_media_sidecar::engine::openai::{self, OpenAiOptions};
use voxline_media_sidecar::engine::{Engine, EngineConfig, EngineEvent, FRAME_SAMPLES};
use voxline_shared::sidecar_link::SecretText;

/// Everything a run waits for, at most (a hang is a finding too).
const RUN_TIMEOUT: Duration = Duration::from_secs(5);
/// Events read per input, at most.
const MAX_EVENTS: usize = 4_096;

struct Loopback {
    rt: tokio::runtime::Runtime,
    listener: TcpListener,
    addr: SocketAddr,
}

thread_local! {
    static LOOPBACK: Loopback = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        Loopback { rt, listener, addr }
    };
}

enum Control {
    Play(u64),
    Send,
    FunctionResult,
}

struct Script {
    frames: Vec<Message>,
    controls: Vec<Control>,
}

fn script(data: &[u8]) -> Script {
    let mut s = Script {
        frames: Vec::new(),
        controls: Vec::new(),
    };
    for line in data.split(|b| *b == b'\n').take(512) {
        let text = String::from_utf8_lossy(line).into_owned();
        if let Some(rest) = text.strip_prefix("!bin ") {
            s.frames.push(Message::binary(rest.as_bytes().to_vec()));
        } else if let Some(ms) = text.strip_prefix("!play ") {
            // Milliseconds of audio played in this call: a u32 is 49 days.
            let ms: u32 = ms.trim().parse().unwrap_or(u32::MAX);
            s.controls.push(Control::Play(u64::from(ms)));
        } else if text == "!send" {
            s.controls.push(Control::Send);
        } else if text == "!result" {
            s.controls.push(Control::FunctionResult);
        } else {
            s.frames.push(Message::text(text));
        }
    }
    s
}

/// The server side: handshake, the greeting, the frames, close; then drain
/// what the client sends until it goes away.
async fn serve(listener: &TcpListener, hello: &str, frames: Vec<Message>) {
    let Ok((tcp, _)) = listener.accept().await else {
        return;
    };
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    if ws.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    for f in frames {
        if ws.feed(f).await.is_err() {
            return;
        }
    }
    let _ = ws.send(Message::Close(None)).await;
    while let Some(Ok(_)) = ws.next().await {}
}

/// The call task's side: read events until the engine fails.
async fn drive<E: Engine>(mut engine: E, controls: Vec<Control>) {
    let mut controls = controls.into_iter();
    let mut last_call: Option<String> = None;
    for _ in 0..MAX_EVENTS {
        match engine.next_event().await {
            Ok(ev) => {
                match &ev {
                    EngineEvent::Audio(pcm) => assert!(!pcm.is_empty(), "empty audio event"),
                    EngineEvent::Transcript {
                        start_ms, end_ms, ..
                    } => assert!(start_ms <= end_ms, "transcript ends before it starts"),
                    EngineEvent::FunctionCall { call_id, .. } => last_call = Some(call_id.clone()),
                    _ => {}
                }
                match controls.next() {
                    Some(Control::Play(ms)) => engine.played(ms),
                    Some(Control::Send) => {
                        let _ = engine.send_audio(&[100i16; FRAME_SAMPLES]).await;
                    }
                    Some(Control::FunctionResult) => {
                        let id = last_call.clone().unwrap_or_default();
                        let _ = engine.function_result(&id, "{\"ok\":true}").await;
                    }
                    None => {}
                }
            }
            Err(e) => {
                assert!(!e.code().is_empty());
                engine.close().await;
                return;
            }
        }
    }
    panic!("more than {MAX_EVENTS} events from one script");
}

fn config(addr: SocketAddr) -> EngineConfig {
    let mut cfg = EngineConfig::new("call-fuzz", "en-US");
    cfg.api_key = Some(SecretText::new("sk-fuzz-key"));
    cfg.base_url = Some(format!("ws://{addr}"));
    cfg.system_prompt = Some("Be brief.".into());
    cfg
}

fn run(data: &[u8], gemini: bool) {
    let Script { frames, controls } = script(data);
    LOOPBACK.with(|lb| {
        let cfg = config(lb.addr);
        lb.rt.block_on(async {
            let client = async {
                if gemini {
                    let opts = GeminiOptions {
                        connect_timeout: RUN_TIMEOUT,
                        idle_timeout: RUN_TIMEOUT,
                        ping_interval: RUN_TIMEOUT,
                        greeting: Some("Hello.".into()),
                    };
                    match gemini::connect_with(cfg, opts).await {
                        Ok(e) => drive(e, controls).await,
                        Err(e) => panic!("gemini connect failed: {e}"),
                    }
                } else {
                    let opts = OpenAiOptions {
                        connect_timeout: RUN_TIMEOUT,
                        idle_timeout: RUN_TIMEOUT,
                        ping_interval: RUN_TIMEOUT,
                        ..OpenAiOptions::default()
                    };
                    match openai::connect_with(cfg, opts).await {
                        Ok(e) => drive(e, controls).await,
                        Err(e) => panic!("openai connect failed: {e}"),
                    }
                }
            };
            let hello = if gemini {
                r#"{"setupComplete":{}}"#
            } else {
                r#"{"type":"session.created","session":{"id":"sess_1"}}"#
            };
            let both = async { tokio::join!(serve(&lb.listener, hello, frames), client) };
            if tokio::time::timeout(RUN_TIMEOUT * 2, both).await.is_err() {
                panic!("engine run did not finish within {:?}", RUN_TIMEOUT * 2);
            }
        });
    });
}

/// `engine_openai`: server events into the OpenAI Realtime client.
pub fn engine_openai(data: &[u8]) {
    run(data, false);
}

/// `engine_gemini`: server messages into the Gemini Live client.
pub fn engine_gemini(data: &[u8]) {
    run(data, true);
}
