//! Gemini Live (BidiGenerateContent) over WebSocket.
//!
//! - Connects `{base_url or wss://generativelanguage.googleapis.com}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=..`,
//!   sends `setup` (model, system instruction, prebuilt voice, language,
//!   AUDIO responses, input and output audio transcription, tools from
//!   `metadata.tools`) and waits for `setupComplete` (bounded). Then sends a
//!   `clientContent` turn asking the model to greet, unless disabled.
//! - Callee audio: 8 kHz -> 16 kHz (rubato FFT resampler, anti-aliased) ->
//!   `realtimeInput.audio` base64 PCM16LE `audio/pcm;rate=16000`.
//! - Engine audio: `serverContent.modelTurn.parts[].inlineData` PCM16LE at
//!   the rate its mimeType says (24 kHz) -> 8 kHz, properly filtered.
//! - `serverContent.interrupted` -> [`EngineEvent::Interrupt`] (the model
//!   already cut its turn server-side; we drop the resampler's buffered tail).
//!   `input`/`outputTranscription` chunks are gathered into one
//!   [`EngineEvent::Transcript`] per turn. `toolCall` -> `FunctionCall`
//!   (`end_call` also yields `EndCall`). `goAway` or a closed socket ->
//!   `Disconnected`; a close whose reason is about the API key, or HTTP
//!   401/403 at the handshake -> `Auth`.
//! - The key travels in the URL query (as the service requires) and is
//!   redacted from every error text; the URL is never logged.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use voxline_shared::protocol::Role;

use super::resample::StreamResampler;
use super::ws::{self, redact, Outbox, WsStream};
use super::{Engine, EngineConfig, EngineError, EngineEvent, FRAME_SAMPLES};

pub const DEFAULT_BASE_URL: &str = "wss://generativelanguage.googleapis.com";
pub const DEFAULT_MODEL: &str = "models/gemini-live-2.5-flash-preview";
pub const PATH: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
pub const INPUT_RATE: u32 = 16_000;
pub const OUTPUT_RATE: u32 = 24_000;
/// Output rates we resample from (Gemini Live sends 24 kHz).
pub const MIN_OUTPUT_RATE: u32 = 8_000;
pub const MAX_OUTPUT_RATE: u32 = 48_000;
const SPMS: u64 = 8;

#[derive(Debug, Clone)]
pub struct GeminiOptions {
    /// Handshake plus `setupComplete`.
    pub connect_timeout: Duration,
    /// No frame at all from the server (messages, or pongs to our pings) for this long -> `Timeout`.
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    /// Sent as a user turn right after setup so the agent speaks first; `None`: wait for the callee.
    pub greeting: Option<String>,
}

impl Default for GeminiOptions {
    fn default() -> Self {
        GeminiOptions {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            ping_interval: Duration::from_secs(5),
            greeting: Some(
                "The call has just been answered. Greet the person now, briefly.".into(),
            ),
        }
    }
}

#[derive(Default)]
struct Turn {
    text: String,
    start_ms: u64,
    end_ms: u64,
}

pub struct GeminiEngine {
    call_id: String,
    ws: WsStream,
    outbox: Outbox,
    pending: VecDeque<EngineEvent>,
    dead: Option<EngineError>,
    opts: GeminiOptions,
    secret: String,
    started: Instant,
    last_rx: Instant,
    last_ping: Instant,
    up: StreamResampler,
    down: Option<StreamResampler>,
    /// Played timeline (8 kHz samples): what the callee heard / where queued audio ends.
    played: u64,
    queued_end: u64,
    /// Current model turn: played-timeline start and samples delivered.
    ai_turn: Option<(u64, u64)>,
    ai_text: Option<Turn>,
    user_text: Option<Turn>,
    fn_names: HashMap<String, String>,
}

pub async fn connect(cfg: EngineConfig) -> Result<GeminiEngine, EngineError> {
    connect_with(cfg, GeminiOptions::default()).await
}

pub async fn connect_with(
    cfg: EngineConfig,
    opts: GeminiOptions,
) -> Result<GeminiEngine, EngineError> {
    let key = cfg
        .api_key
        .as_ref()
        .map(|k| k.expose().to_string())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| EngineError::Auth("no Gemini API key configured".into()))?;
    let base = cfg
        .base_url
        .clone()
        .unwrap_or_else(|| DEFAULT_BASE_URL.into());
    let url = format!(
        "{}{PATH}?key={}",
        base.trim_end_matches('/'),
        urlencode(&key)
    );
    let deadline = Instant::now() + opts.connect_timeout;
    let mut socket = ws::connect(
        &url,
        Vec::new(),
        opts.connect_timeout,
        &[&key, &urlencode(&key)],
    )
    .await?;
    drop(url);

    let mut outbox = Outbox::default();
    outbox.push(Message::text(setup_message(&cfg).to_string()));
    outbox
        .flush(&mut socket)
        .await
        .map_err(|e| EngineError::Disconnected(redact(&e.to_string(), &[&key])))?;
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws::next_frame(&mut socket)).await {
            Err(_) => {
                return Err(EngineError::Timeout(format!(
                    "no setupComplete within {} ms",
                    opts.connect_timeout.as_millis()
                )))
            }
            Ok(f) => f,
        };
        match frame {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                let v = parse(&m).map_err(EngineError::Protocol)?;
                if v.get("setupComplete").is_some() {
                    break;
                }
                if v.get("goAway").is_some() {
                    return Err(EngineError::Disconnected("goAway during setup".into()));
                }
            }
            Some(Ok(Message::Close(c))) => return Err(close_error(c.as_ref(), &key)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(EngineError::Disconnected(redact(&e.to_string(), &[&key]))),
            None => {
                return Err(EngineError::Disconnected(
                    "closed before setupComplete".into(),
                ))
            }
        }
    }

    let now = Instant::now();
    let up = StreamResampler::new(super::SAMPLE_RATE, INPUT_RATE, FRAME_SAMPLES)
        .map_err(EngineError::Unavailable)?;
    let mut eng = GeminiEngine {
        call_id: cfg.call_id.clone(),
        ws: socket,
        outbox,
        pending: VecDeque::new(),
        dead: None,
        opts,
        secret: key,
        started: now,
        last_rx: now,
        last_ping: now,
        up,
        down: None,
        played: 0,
        queued_end: 0,
        ai_turn: None,
        ai_text: None,
        user_text: None,
        fn_names: HashMap::new(),
    };
    if let Some(g) = eng.opts.greeting.clone() {
        eng.push_json(
            json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": g}]}], "turnComplete": true}}),
        );
        if let Err(e) = eng.outbox.flush(&mut eng.ws).await {
            return Err(EngineError::Disconnected(redact(
                &e.to_string(),
                &[&eng.secret],
            )));
        }
    }
    tracing::info!(call_id = %eng.call_id, "gemini live session started");
    Ok(eng)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse(m: &Message) -> Result<Value, String> {
    let r = match m {
        Message::Text(t) => serde_json::from_str(t.as_str()),
        Message::Binary(b) => serde_json::from_slice(b),
        _ => return Err("not a data frame".into()),
    };
    r.map_err(|e| format!("bad server message: {e}"))
}

/// The `setup` message (public for the tests' expectations).
pub fn setup_message(cfg: &EngineConfig) -> Value {
    let model = cfg.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into());
    let model = if model.starts_with("models/") {
        model
    } else {
        format!("models/{model}")
    };
    let mut speech = json!({});
    if let Some(v) = &cfg.voice {
        speech["voiceConfig"] = json!({"prebuiltVoiceConfig": {"voiceName": v}});
    }
    if !cfg.language.is_empty() {
        speech["languageCode"] = json!(cfg.language);
    }
    let mut setup = json!({
        "model": model,
        "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": speech},
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
    });
    if let Some(p) = &cfg.system_prompt {
        setup["systemInstruction"] = json!({"parts": [{"text": p}]});
    }
    if let Some(tools) = cfg
        .metadata
        .as_ref()
        .and_then(|m| m.get("tools"))
        .and_then(|t| t.as_array())
    {
        // Same declarations as for OpenAI ({type, name, description, parameters}).
        let decls: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t["name"]});
                if let Some(x) = t.get("description") {
                    d["description"] = x.clone();
                }
                if let Some(x) = t.get("parameters") {
                    d["parameters"] = x.clone();
                }
                d
            })
            .collect();
        setup["tools"] = json!([{"functionDeclarations": decls}]);
    }
    json!({"setup": setup})
}

fn close_error(c: Option<&tungstenite::protocol::CloseFrame>, key: &str) -> EngineError {
    match c {
        None => EngineError::Disconnected("server closed the socket".into()),
        Some(c) => {
            let reason = redact(c.reason.as_str(), &[key]);
            let lower = reason.to_ascii_lowercase();
            let text = format!("server closed the socket ({}): {reason}", u16::from(c.code));
            if lower.contains("api key")
                || lower.contains("api_key")
                || lower.contains("permission")
            {
                EngineError::Auth(text)
            } else if lower.contains("quota")
                || lower.contains("resource_exhausted")
                || lower.contains("unavailable")
            {
                EngineError::Unavailable(text)
            } else {
                EngineError::Disconnected(text)
            }
        }
    }
}

/// The rate in a mimeType like `audio/pcm;rate=24000` (24 kHz when absent).
fn rate_of(mime: &str) -> u32 {
    mime.split(';')
        .filter_map(|p| p.trim().strip_prefix("rate="))
        .find_map(|r| r.parse().ok())
        .unwrap_or(OUTPUT_RATE)
}

impl GeminiEngine {
    fn push_json(&mut self, v: Value) {
        self.outbox.push(Message::text(v.to_string()));
    }

    fn since_start_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn fail(&mut self, e: EngineError) -> EngineError {
        if self.dead.is_none() {
            tracing::warn!(call_id = %self.call_id, code = e.code(), error = %e, "gemini live engine failed");
            self.dead = Some(e.clone());
        }
        self.dead.clone().unwrap_or(e)
    }

    fn ws_error(&mut self, e: tungstenite::Error) -> EngineError {
        let text = redact(&e.to_string(), &[&self.secret]);
        self.fail(EngineError::Disconnected(text))
    }

    fn emit_audio(&mut self, pcm: Vec<i16>) {
        if pcm.is_empty() {
            return;
        }
        let n = pcm.len() as u64;
        let (_, samples) = self.ai_turn.get_or_insert_with(|| {
            let start = self.queued_end.max(self.played);
            (start, 0)
        });
        *samples += n;
        self.queued_end = self.queued_end.max(self.played) + n;
        self.pending.push_back(EngineEvent::Audio(pcm));
    }

    fn flush_user_turn(&mut self) {
        if let Some(t) = self.user_text.take() {
            let text = t.text.trim().to_string();
            if !text.is_empty() {
                self.pending.push_back(EngineEvent::Transcript {
                    role: Role::User,
                    text,
                    start_ms: t.start_ms,
                    end_ms: t.end_ms,
                });
            }
        }
    }

    /// Ends the model turn: its transcript, timed by the audio the callee got (or heard, if cut).
    fn end_ai_turn(&mut self, interrupted: bool) {
        let turn = self.ai_turn.take();
        if let Some(t) = self.ai_text.take() {
            let text = t.text.trim().to_string();
            if !text.is_empty() {
                let dur_ms = match turn {
                    Some((start, samples)) => {
                        let heard = if interrupted {
                            self.played.saturating_sub(start).min(samples)
                        } else {
                            samples
                        };
                        heard / SPMS
                    }
                    None => t.end_ms.saturating_sub(t.start_ms),
                };
                self.pending.push_back(EngineEvent::Transcript {
                    role: Role::Ai,
                    text,
                    start_ms: t.start_ms,
                    end_ms: t.start_ms + dur_ms,
                });
            }
        }
    }

    fn on_server_content(&mut self, sc: &Value) -> Result<(), EngineError> {
        let now = self.since_start_ms();
        if let Some(t) = sc["inputTranscription"]["text"].as_str() {
            let u = self.user_text.get_or_insert_with(|| Turn {
                start_ms: now,
                ..Turn::default()
            });
            u.text.push_str(t);
            u.end_ms = now;
        }
        if let Some(parts) = sc["modelTurn"]["parts"].as_array() {
            for p in parts {
                let Some(d) = p.get("inlineData") else {
                    continue;
                };
                let mime = d["mimeType"].as_str().unwrap_or("audio/pcm;rate=24000");
                if !mime.starts_with("audio/pcm") {
                    continue;
                }
                // The model answers: the callee's turn is over.
                self.flush_user_turn();
                let bytes = B64
                    .decode(d["data"].as_str().unwrap_or(""))
                    .map_err(|e| EngineError::Protocol(format!("inlineData is not base64: {e}")))?;
                let pcm: Vec<i16> = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                let rate = rate_of(mime);
                // The server names the rate; a resampler for an absurd one
                // costs hundreds of MB (tenants choose the endpoint).
                if !(MIN_OUTPUT_RATE..=MAX_OUTPUT_RATE).contains(&rate) {
                    return Err(EngineError::Protocol(format!(
                        "unsupported output audio rate {rate}"
                    )));
                }
                let mut out = Vec::with_capacity(pcm.len() / 2);
                if rate == super::SAMPLE_RATE {
                    out = pcm;
                } else {
                    if self
                        .down
                        .as_ref()
                        .map(|d| d.rates().0 != rate)
                        .unwrap_or(true)
                    {
                        self.down = Some(
                            StreamResampler::new(rate, super::SAMPLE_RATE, (rate / 50) as usize)
                                .map_err(EngineError::Protocol)?,
                        );
                    }
                    self.down.as_mut().expect("set").process(&pcm, &mut out);
                }
                if self.ai_text.is_none() {
                    self.ai_text = Some(Turn {
                        start_ms: now,
                        ..Turn::default()
                    });
                }
                self.emit_audio(out);
            }
        }
        if let Some(t) = sc["outputTranscription"]["text"].as_str() {
            let a = self.ai_text.get_or_insert_with(|| Turn {
                start_ms: now,
                ..Turn::default()
            });
            a.text.push_str(t);
            a.end_ms = now;
        }
        if sc["interrupted"].as_bool() == Some(true) {
            if let Some(d) = self.down.as_mut() {
                d.reset();
            }
            // Unplayed audio is dropped by the caller: later audio starts where playback stopped.
            self.pending.push_back(EngineEvent::Interrupt);
            self.end_ai_turn(true);
            self.queued_end = self.played;
        }
        if sc["turnComplete"].as_bool() == Some(true) {
            let mut tail = Vec::new();
            if let Some(d) = self.down.as_mut() {
                d.flush(&mut tail);
            }
            self.emit_audio(tail);
            self.flush_user_turn();
            self.end_ai_turn(false);
        }
        Ok(())
    }

    fn on_message(&mut self, v: Value) -> Result<(), EngineError> {
        if let Some(sc) = v.get("serverContent") {
            self.on_server_content(sc)?;
        }
        if let Some(calls) = v["toolCall"]["functionCalls"].as_array() {
            for c in calls {
                let name = c["name"].as_str().unwrap_or("").to_string();
                let call_id = c["id"].as_str().unwrap_or("").to_string();
                let args = c.get("args").cloned().unwrap_or(json!({}));
                self.fn_names.insert(call_id.clone(), name.clone());
                self.pending.push_back(EngineEvent::FunctionCall {
                    name: name.clone(),
                    call_id,
                    arguments: args.to_string(),
                });
                if name == "end_call" {
                    let reason = args["reason"]
                        .as_str()
                        .unwrap_or("agent_hangup")
                        .to_string();
                    self.pending.push_back(EngineEvent::EndCall { reason });
                }
            }
        }
        if let Some(g) = v.get("goAway") {
            let left = g["timeLeft"].as_str().unwrap_or("?");
            return Err(EngineError::Disconnected(format!(
                "server sent goAway (time left {left})"
            )));
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), EngineError> {
        match frame {
            None => Err(EngineError::Disconnected("connection closed".into())),
            Some(Err(e)) => Err(EngineError::Disconnected(redact(
                &e.to_string(),
                &[&self.secret],
            ))),
            Some(Ok(Message::Close(c))) => Err(close_error(c.as_ref(), &self.secret)),
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => match parse(&m) {
                Ok(v) => self.on_message(v),
                Err(e) => {
                    tracing::warn!(call_id = %self.call_id, "unparsable gemini message: {e}");
                    Ok(())
                }
            },
            Some(Ok(_)) => Ok(()),
        }
    }
}

impl Engine for GeminiEngine {
    async fn send_audio(&mut self, frame: &[i16]) -> Result<(), EngineError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let mut up = Vec::with_capacity(frame.len() * 2);
        self.up.process(frame, &mut up);
        if !up.is_empty() {
            let bytes: Vec<u8> = up.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.push_json(json!({"realtimeInput": {"audio": {
                "data": B64.encode(&bytes), "mimeType": format!("audio/pcm;rate={INPUT_RATE}")}}}));
        }
        if let Err(e) = self.outbox.flush(&mut self.ws).await {
            return Err(self.ws_error(e));
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Result<EngineEvent, EngineError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            if let Some(e) = &self.dead {
                return Err(e.clone());
            }
            if !self.outbox.is_empty() {
                if let Err(e) = self.outbox.flush(&mut self.ws).await {
                    return Err(self.ws_error(e));
                }
            }
            let deadline = self.last_rx + self.opts.idle_timeout;
            let ping_at = self.last_rx.max(self.last_ping) + self.opts.ping_interval;
            tokio::select! {
                biased;
                f = ws::next_frame(&mut self.ws) => {
                    self.last_rx = Instant::now();
                    if let Err(e) = self.on_frame(f) {
                        let e = self.fail(e);
                        if let Some(ev) = self.pending.pop_front() {
                            return Ok(ev);
                        }
                        return Err(e);
                    }
                }
                _ = tokio::time::sleep_until(deadline.min(ping_at)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        let e = EngineError::Timeout(format!(
                            "no frame from the server for {} ms",
                            self.opts.idle_timeout.as_millis()
                        ));
                        return Err(self.fail(e));
                    }
                    self.last_ping = now;
                    self.outbox.push(Message::Ping(Vec::new().into()));
                }
            }
        }
    }

    fn played(&mut self, played_ms: u64) {
        self.played = self.played.max(played_ms * SPMS);
    }

    async fn close(&mut self) {
        if self.dead.is_none() {
            self.dead = Some(EngineError::Disconnected("closed by us".into()));
            self.outbox.push(Message::Close(None));
            let _ =
                tokio::time::timeout(Duration::from_secs(1), self.outbox.flush(&mut self.ws)).await;
        }
        tracing::info!(call_id = %self.call_id, "gemini live session closed");
    }

    async fn function_result(&mut self, call_id: &str, output: &str) -> Result<(), EngineError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        let name = self.fn_names.get(call_id).cloned().unwrap_or_default();
        let response = match serde_json::from_str::<Value>(output) {
            Ok(v @ Value::Object(_)) => v,
            Ok(v) => json!({"result": v}),
            Err(_) => json!({"result": output}),
        };
        self.push_json(
            json!({"toolResponse": {"functionResponses": [{"id": call_id, "name": name, "response": response}]}}),
        );
        if let Err(e) = self.outbox.flush(&mut self.ws).await {
            return Err(self.ws_error(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(rate_of("audio/pcm;rate=24000"), 24000);
        assert_eq!(rate_of("audio/pcm; rate=16000"), 16000);
        assert_eq!(rate_of("audio/pcm"), 24000);
    }

    #[test]
    fn setup_shape() {
        let mut c = EngineConfig::new("c", "de-DE");
        c.voice = Some("Kore".into());
        c.system_prompt = Some("sei nett".into());
        c.model = Some("gemini-x".into());
        let s = setup_message(&c);
        assert_eq!(s["setup"]["model"], "models/gemini-x");
        assert_eq!(
            s["setup"]["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
                ["voiceName"],
            "Kore"
        );
        assert_eq!(
            s["setup"]["generationConfig"]["speechConfig"]["languageCode"],
            "de-DE"
        );
        assert_eq!(
            s["setup"]["systemInstruction"]["parts"][0]["text"],
            "sei nett"
        );
    }
}
