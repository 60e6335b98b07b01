//! Gemini Live (BidiGenerateContent) over WebSocket.
//!
//! - Connects `{base_url or wss://generativelanguage.googleapis.com}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=..`,
//!   sends `setup` (model, system instruction, prebuilt voice, language,
//!   AUDIO responses, input and output audio transcription, tools from
//!   `metadata.tools` and the offer's customer tools) and waits for `setupComplete` (bounded). Then sends a
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
//!
//! The protocol itself is pure ([`GeminiTranslator`]: messages, audio and time in,
//! events and messages out, tested without sockets); connecting, setup
//! timeout, keepalive, sending and closing are the shared
//! [`super::session`] driver's.

use std::collections::VecDeque;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use voxline_shared::sidecar_link::Role;

use super::limits::{self, checked_id, BoundedMap};
use super::session::{
    api_key, base_url, urlencode, Dial, Incoming, Timeouts, Translator, WsSession,
};
use super::ws::redact;
use super::{EngineConfig, EngineError, EngineEvent, FRAME_SAMPLES};
use crate::media::resample::StreamResampler;

pub const DEFAULT_BASE_URL: &str = "wss://generativelanguage.googleapis.com";
pub const DEFAULT_MODEL: &str = "models/gemini-live-2.5-flash-preview";
pub const PATH: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
pub const INPUT_RATE: u32 = 16_000;
pub const OUTPUT_RATE: u32 = 24_000;
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

/// A Gemini Live session: the [`GeminiTranslator`] over the shared driver.
pub type GeminiEngine = WsSession<GeminiTranslator>;

/// The Gemini Live protocol, pure: server messages in, [`EngineEvent`]s and
/// client messages out (audio resampled both ways).
pub struct GeminiTranslator {
    call_id: String,
    secret: String,
    greeting: Option<String>,
    /// Hold the greeting for the answer ([`EngineConfig::greet_on_answer`]).
    greet_on_answer: bool,
    events: VecDeque<EngineEvent>,
    transmit: VecDeque<Value>,
    up: StreamResampler,
    down: Option<StreamResampler>,
    /// Played timeline (8 kHz samples): what the callee heard / where queued audio ends.
    played: u64,
    queued_end: u64,
    /// Current model turn: played-timeline start and samples delivered.
    ai_turn: Option<(u64, u64)>,
    ai_text: Option<Turn>,
    user_text: Option<Turn>,
    /// Function call id -> name, until its result is sent.
    fn_names: BoundedMap<String>,
}

pub async fn connect(cfg: EngineConfig) -> Result<GeminiEngine, EngineError> {
    connect_with(cfg, GeminiOptions::default()).await
}

pub async fn connect_with(
    cfg: EngineConfig,
    opts: GeminiOptions,
) -> Result<GeminiEngine, EngineError> {
    let key = api_key(&cfg, "Gemini")?;
    let url = format!(
        "{}{PATH}?key={}",
        base_url(&cfg, DEFAULT_BASE_URL),
        urlencode(&key)
    );
    let translator = GeminiTranslator::new(&cfg, &opts, key.clone())?;
    let timeouts = Timeouts {
        connect: opts.connect_timeout,
        idle: opts.idle_timeout,
        ping: opts.ping_interval,
    };
    let dial = Dial::new(&cfg, &url, vec![key.clone(), urlencode(&key)], timeouts);
    WsSession::open(dial, translator).await
}

fn parse(msg: Incoming<'_>) -> Result<Value, String> {
    match msg {
        Incoming::Text(t) => serde_json::from_str(t),
        Incoming::Binary(b) => serde_json::from_slice(b),
    }
    .map_err(|e| format!("bad server message: {e}"))
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
    if let Some(p) = cfg.instructions() {
        setup["systemInstruction"] = json!({"parts": [{"text": p}]});
    }
    // The agent's tools (`metadata.tools`, its customer tools) and the built-in ones.
    let declared = Value::Array(cfg.declared_tools());
    let tools = crate::call_task::tools::with_builtins(Some(&declared));
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

fn close_error(c: Option<&CloseFrame>, key: &str) -> EngineError {
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

/// The rate in a mimeType like `audio/pcm;rate=24000` (24 kHz when absent);
/// a rate that is not one of [`limits::SANE_RATES`] is refused.
fn rate_of(mime: &str) -> Result<u32, String> {
    match mime.split(';').find_map(|p| p.trim().strip_prefix("rate=")) {
        None => Ok(OUTPUT_RATE),
        Some(r) => limits::sane_rate(
            r.trim()
                .parse()
                .map_err(|_| "the engine announced an unreadable sample rate".to_string())?,
        ),
    }
}

impl GeminiTranslator {
    /// Queues the `setup` message; `key` is only used to redact error texts.
    pub fn new(cfg: &EngineConfig, opts: &GeminiOptions, key: String) -> Result<Self, EngineError> {
        let up = StreamResampler::new(super::SAMPLE_RATE, INPUT_RATE, FRAME_SAMPLES)
            .map_err(EngineError::Unavailable)?;
        Ok(GeminiTranslator {
            call_id: cfg.call_id.clone(),
            secret: key,
            // A callee who speaks first is answered by Gemini's own
            // activity detection: no greeting turn of ours.
            greeting: opts
                .greeting
                .clone()
                .filter(|_| cfg.first_speaker == super::FirstSpeaker::Agent),
            greet_on_answer: cfg.greet_on_answer,
            events: VecDeque::new(),
            transmit: VecDeque::from([setup_message(cfg)]),
            up,
            down: None,
            played: 0,
            queued_end: 0,
            ai_turn: None,
            ai_text: None,
            user_text: None,
            fn_names: BoundedMap::default(),
        })
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
        *samples = samples.saturating_add(n);
        self.queued_end = self.queued_end.max(self.played).saturating_add(n);
        self.events.push_back(EngineEvent::Audio(pcm));
    }

    /// Entries and bytes held across messages: function names awaiting a
    /// result, and the transcript text of the turns in progress (for the tests
    /// that check a server cannot make them grow).
    pub fn tracked(&self) -> (usize, usize) {
        let text = |t: &Option<Turn>| t.as_ref().map_or(0, |t| t.text.len());
        (
            self.fn_names.len(),
            self.fn_names.key_bytes() + text(&self.ai_text) + text(&self.user_text),
        )
    }

    fn flush_user_turn(&mut self) {
        if let Some(t) = self.user_text.take() {
            let text = t.text.trim().to_string();
            if !text.is_empty() {
                self.events.push_back(EngineEvent::Transcript {
                    role: Role::Callee,
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
                self.events.push_back(EngineEvent::Transcript {
                    role: Role::Agent,
                    text,
                    start_ms: t.start_ms,
                    end_ms: t.start_ms.saturating_add(dur_ms),
                });
            }
        }
    }

    fn on_server_content(&mut self, sc: &Value, now: u64) -> Result<(), EngineError> {
        if let Some(t) = sc["inputTranscription"]["text"].as_str() {
            let u = self.user_text.get_or_insert_with(|| Turn {
                start_ms: now,
                ..Turn::default()
            });
            limits::push_capped(&mut u.text, t, limits::MAX_TURN_TEXT_BYTES);
            u.end_ms = now;
        }
        if let Some(parts) = sc["modelTurn"]["parts"].as_array() {
            // Audio in this message so far, in ms at the rates it came at.
            let mut audio_ms = 0u64;
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
                let rate = rate_of(mime).map_err(EngineError::Protocol)?;
                let data = d["data"].as_str().unwrap_or("");
                // PCM16: two bytes per sample.
                let room_ms = limits::MAX_AUDIO_MS_PER_MESSAGE.saturating_sub(audio_ms);
                limits::check_b64_len(
                    data,
                    (room_ms * u64::from(rate) / 1000 * 2) as usize,
                    "inlineData",
                )
                .map_err(EngineError::Protocol)?;
                let bytes = B64
                    .decode(data)
                    .map_err(|e| EngineError::Protocol(format!("inlineData is not base64: {e}")))?;
                audio_ms += bytes.len() as u64 * 1000 / (2 * u64::from(rate));
                let pcm: Vec<i16> = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
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
                    if let Some(d) = self.down.as_mut() {
                        d.process(&pcm, &mut out);
                    }
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
            limits::push_capped(&mut a.text, t, limits::MAX_TURN_TEXT_BYTES);
            a.end_ms = now;
        }
        if sc["interrupted"].as_bool() == Some(true) {
            if let Some(d) = self.down.as_mut() {
                d.reset();
            }
            // Unplayed audio is dropped by the caller: later audio starts where playback stopped.
            self.events.push_back(EngineEvent::Interrupt);
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

    fn on_message(&mut self, v: Value, now: u64) -> Result<(), EngineError> {
        if let Some(sc) = v.get("serverContent") {
            self.on_server_content(sc, now)?;
        }
        if let Some(calls) = v["toolCall"]["functionCalls"].as_array() {
            for c in calls {
                let name = checked_id("function name", c["name"].as_str().unwrap_or(""))
                    .map_err(EngineError::Protocol)?
                    .to_string();
                let call_id = checked_id("function call id", c["id"].as_str().unwrap_or(""))
                    .map_err(EngineError::Protocol)?
                    .to_string();
                let args = c.get("args").cloned().unwrap_or(json!({}));
                self.fn_names.insert(call_id.clone(), name.clone());
                self.events.push_back(EngineEvent::FunctionCall {
                    name: name.clone(),
                    call_id,
                    arguments: args.to_string(),
                });
                if name == "end_call" {
                    let reason = args["reason"]
                        .as_str()
                        .unwrap_or("agent_hangup")
                        .to_string();
                    self.events.push_back(EngineEvent::EndCall { reason });
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
}

impl Translator for GeminiTranslator {
    const NAME: &'static str = "gemini live";
    const READY: &'static str = "setupComplete";

    fn setup_message(&mut self, msg: Incoming<'_>) -> Result<bool, EngineError> {
        let v = parse(msg).map_err(EngineError::Protocol)?;
        if v.get("setupComplete").is_some() {
            return Ok(true);
        }
        if v.get("goAway").is_some() {
            return Err(EngineError::Disconnected("goAway during setup".into()));
        }
        Ok(false)
    }

    fn opened(&mut self) {
        if !self.greet_on_answer {
            self.answered();
        }
    }

    fn answered(&mut self) {
        if let Some(g) = self.greeting.take() {
            self.transmit.push_back(
                json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": g}]}], "turnComplete": true}}),
            );
        }
    }

    fn message(&mut self, msg: Incoming<'_>, now_ms: u64) -> Result<(), EngineError> {
        match parse(msg) {
            Ok(v) => self.on_message(v, now_ms),
            Err(e) => {
                tracing::warn!(call_id = %self.call_id, "unparsable gemini message: {e}");
                Ok(())
            }
        }
    }

    fn audio(&mut self, frame: &[i16]) {
        let mut up = Vec::with_capacity(frame.len() * 2);
        self.up.process(frame, &mut up);
        if !up.is_empty() {
            let bytes: Vec<u8> = up.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.transmit.push_back(json!({"realtimeInput": {"audio": {
                "data": B64.encode(&bytes), "mimeType": format!("audio/pcm;rate={INPUT_RATE}")}}}));
        }
    }

    fn played(&mut self, played_ms: u64) {
        // The counter comes from outside: saturate rather than overflow.
        self.played = self.played.max(played_ms.saturating_mul(SPMS));
    }

    fn function_result(&mut self, call_id: &str, output: &str) {
        let name = self.fn_names.remove(call_id).unwrap_or_default();
        let response = match serde_json::from_str::<Value>(output) {
            Ok(v @ Value::Object(_)) => v,
            Ok(v) => json!({"result": v}),
            Err(_) => json!({"result": output}),
        };
        self.transmit.push_back(
            json!({"toolResponse": {"functionResponses": [{"id": call_id, "name": name, "response": response}]}}),
        );
    }

    fn keypad(&mut self, text: &str) {
        self.transmit.push_back(
            json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": true}}),
        );
    }

    fn close_error(&self, frame: Option<&CloseFrame>) -> EngineError {
        close_error(frame, &self.secret)
    }

    fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    fn poll_transmit(&mut self) -> Option<Value> {
        self.transmit.pop_front()
    }
}

impl GeminiEngine {
    /// See [`GeminiTranslator::tracked`].
    #[doc(hidden)]
    pub fn tracked(&self) -> (usize, usize) {
        self.translator().tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FirstSpeaker;

    #[test]
    fn rates() {
        assert_eq!(rate_of("audio/pcm;rate=24000"), Ok(24000));
        assert_eq!(rate_of("audio/pcm; rate=16000"), Ok(16000));
        assert_eq!(rate_of("audio/pcm"), Ok(24000));
        for bad in [
            "audio/pcm;rate=0",
            "audio/pcm;rate=1",
            "audio/pcm;rate=1000000",
            "audio/pcm;rate=99999999999",
            "audio/pcm;rate=fast",
            "audio/pcm;rate=",
        ] {
            assert!(rate_of(bad).is_err(), "{bad}");
        }
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

    fn translator(greeting: Option<&str>) -> GeminiTranslator {
        let opts = GeminiOptions {
            greeting: greeting.map(str::to_string),
            ..GeminiOptions::default()
        };
        GeminiTranslator::new(&EngineConfig::new("call-1", "en-US"), &opts, "g-key".into()).unwrap()
    }

    fn feed(t: &mut GeminiTranslator, v: Value, now_ms: u64) -> Result<(), EngineError> {
        let text = v.to_string();
        t.message(Incoming::Text(&text), now_ms)
    }

    fn events(t: &mut GeminiTranslator) -> Vec<EngineEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    fn sent(t: &mut GeminiTranslator) -> Vec<Value> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    /// A modelTurn at 8 kHz (no resampling, so the samples are exact).
    fn model_audio_8k(pcm: &[i16]) -> Value {
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
            "mimeType": "audio/pcm;rate=8000", "data": B64.encode(bytes)}}]}}})
    }

    /// Issue 17, `first_speaker: callee`: no greeting turn of ours, at
    /// setup or at the answer.
    #[test]
    fn a_callee_first_call_sends_no_greeting_turn() {
        for greet_on_answer in [false, true] {
            let mut cfg = EngineConfig::new("call-1", "en-US");
            cfg.first_speaker = FirstSpeaker::Callee;
            cfg.greet_on_answer = greet_on_answer;
            let opts = GeminiOptions {
                greeting: Some("Hello now.".into()),
                ..GeminiOptions::default()
            };
            let mut t = GeminiTranslator::new(&cfg, &opts, "g-key".into()).unwrap();
            sent(&mut t);
            t.opened();
            t.answered();
            assert_eq!(sent(&mut t), Vec::<Value>::new());
            // The same call with the agent first greets.
            cfg.first_speaker = FirstSpeaker::Agent;
            let mut t = GeminiTranslator::new(&cfg, &opts, "g-key".into()).unwrap();
            sent(&mut t);
            t.opened();
            t.answered();
            assert_eq!(sent(&mut t).len(), 1);
        }
    }

    #[test]
    fn setup_first_then_greeting_once_complete() {
        let mut t = translator(Some("Hello now."));
        assert_eq!(
            sent(&mut t),
            vec![setup_message(&EngineConfig::new("call-1", "en-US"))]
        );
        assert!(!t.setup_message(Incoming::Text("{}")).unwrap());
        assert!(t
            .setup_message(Incoming::Binary(br#"{"setupComplete": {}}"#))
            .unwrap());
        t.opened();
        assert_eq!(
            sent(&mut t),
            vec![
                json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Hello now."}]}],
                        "turnComplete": true}})
            ]
        );
        let mut t = translator(None);
        let e = t
            .setup_message(Incoming::Text(r#"{"goAway": {"timeLeft": "1s"}}"#))
            .unwrap_err();
        assert_eq!(e.code(), "disconnected");
        assert_eq!(
            t.setup_message(Incoming::Text("[")).unwrap_err().code(),
            "protocol"
        );
    }

    #[test]
    fn a_turn_gives_the_callee_transcript_audio_and_the_agent_transcript() {
        let mut t = translator(None);
        sent(&mut t);
        feed(
            &mut t,
            json!({"serverContent": {"inputTranscription": {"text": "Is it "}}}),
            100,
        )
        .unwrap();
        feed(
            &mut t,
            json!({"serverContent": {"inputTranscription": {"text": "Tuesday?"}}}),
            300,
        )
        .unwrap();
        let pcm: Vec<i16> = (0..800).map(|i| (i * 7 % 2000 - 1000) as i16).collect();
        feed(&mut t, model_audio_8k(&pcm), 400).unwrap();
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": " Yes, Tuesday. "}}}),
            450,
        )
        .unwrap();
        feed(
            &mut t,
            json!({"serverContent": {"turnComplete": true}}),
            900,
        )
        .unwrap();
        assert_eq!(
            events(&mut t),
            vec![
                EngineEvent::Transcript {
                    role: Role::Callee,
                    text: "Is it Tuesday?".into(),
                    start_ms: 100,
                    end_ms: 300
                },
                EngineEvent::Audio(pcm),
                // 800 samples: 100 ms from the first audio.
                EngineEvent::Transcript {
                    role: Role::Agent,
                    text: "Yes, Tuesday.".into(),
                    start_ms: 400,
                    end_ms: 500
                },
            ]
        );
    }

    #[test]
    fn callee_audio_goes_up_to_16k() {
        let mut t = translator(None);
        sent(&mut t);
        for _ in 0..5 {
            t.audio(&[1000; FRAME_SAMPLES]);
        }
        let out = sent(&mut t);
        assert!(!out.is_empty());
        let mut samples = 0;
        for m in &out {
            let a = &m["realtimeInput"]["audio"];
            assert_eq!(a["mimeType"], "audio/pcm;rate=16000");
            samples += B64.decode(a["data"].as_str().unwrap()).unwrap().len() / 2;
        }
        // Twice the input, less what the resampler still holds (its delay).
        assert!(
            (3 * FRAME_SAMPLES..=2 * 5 * FRAME_SAMPLES).contains(&samples),
            "{samples}"
        );
    }

    #[test]
    fn interrupted_cuts_the_turn_at_what_was_heard() {
        let mut t = translator(None);
        sent(&mut t);
        feed(&mut t, model_audio_8k(&[5; 1600]), 1000).unwrap();
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": "A long answer"}}}),
            1010,
        )
        .unwrap();
        t.played(50);
        feed(
            &mut t,
            json!({"serverContent": {"interrupted": true}}),
            1100,
        )
        .unwrap();
        assert_eq!(
            events(&mut t),
            vec![
                EngineEvent::Audio(vec![5; 1600]),
                EngineEvent::Interrupt,
                EngineEvent::Transcript {
                    role: Role::Agent,
                    text: "A long answer".into(),
                    start_ms: 1000,
                    end_ms: 1050
                },
            ]
        );
    }

    #[test]
    fn tool_calls_end_call_results_and_go_away() {
        let mut t = translator(None);
        sent(&mut t);
        feed(
            &mut t,
            json!({"toolCall": {"functionCalls": [
            {"id": "f1", "name": "book_slot", "args": {"day": "tue"}},
            {"id": "f2", "name": "end_call", "args": {"reason": "done"}}]}}),
            0,
        )
        .unwrap();
        assert_eq!(
            events(&mut t),
            vec![
                EngineEvent::FunctionCall {
                    name: "book_slot".into(),
                    call_id: "f1".into(),
                    arguments: r#"{"day":"tue"}"#.into()
                },
                EngineEvent::FunctionCall {
                    name: "end_call".into(),
                    call_id: "f2".into(),
                    arguments: r#"{"reason":"done"}"#.into()
                },
                EngineEvent::EndCall {
                    reason: "done".into()
                },
            ]
        );
        t.function_result("f1", "booked");
        assert_eq!(
            sent(&mut t),
            vec![json!({"toolResponse": {"functionResponses": [
                {"id": "f1", "name": "book_slot", "response": {"result": "booked"}}]}})]
        );
        let e = feed(&mut t, json!({"goAway": {"timeLeft": "2s"}}), 0).unwrap_err();
        assert_eq!(e.code(), "disconnected");
        assert!(t.message(Incoming::Text("nonsense"), 0).is_ok());
    }

    /// Issue 18: the callee's keys are a client text turn.
    #[test]
    fn keys_are_a_client_text_turn() {
        let mut t = translator(None);
        sent(&mut t);
        t.keypad(&crate::engine::dtmf_text("7"));
        assert_eq!(
            sent(&mut t),
            vec![
                json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "[DTMF 7]"}]}],
                        "turnComplete": true}})
            ]
        );
        let setup = setup_message(&EngineConfig::new("c", "en-US"));
        let decls = &setup["setup"]["tools"][0]["functionDeclarations"];
        assert_eq!(decls[0]["name"], "send_dtmf");
        assert_eq!(decls[1]["name"], "end_call");
    }

    /// `played_ms * 8` and the timeline sums overflowed on huge counters
    /// (a panic in debug builds).
    #[test]
    fn huge_played_counters_saturate_instead_of_overflowing() {
        let mut t = translator(None);
        t.played(u64::MAX);
        feed(&mut t, model_audio_8k(&[1; 160]), 10).unwrap();
        feed(&mut t, model_audio_8k(&[1; 160]), 20).unwrap();
        feed(
            &mut t,
            json!({"serverContent": {"outputTranscription": {"text": "hi"}}}),
            20,
        )
        .unwrap();
        feed(&mut t, json!({"serverContent": {"interrupted": true}}), 30).unwrap();
        assert_eq!(
            events(&mut t).last(),
            Some(&EngineEvent::Transcript {
                role: Role::Agent,
                text: "hi".into(),
                start_ms: 10,
                end_ms: 10
            })
        );
    }

    #[test]
    fn offered_customer_tools_are_function_declarations() {
        let mut cfg = EngineConfig::new("c1", "en-US");
        cfg.tools = vec![voxline_shared::sidecar_link::OfferedTool {
            name: "lookup_order".into(),
            description: "Look up an order".into(),
            parameters: json!({"type": "object"}),
        }];
        let setup = super::setup_message(&cfg);
        let decls = &setup["setup"]["tools"][0]["functionDeclarations"];
        assert_eq!(decls[0]["name"], "lookup_order");
        assert_eq!(decls[0]["description"], "Look up an order");
        let text = setup["setup"]["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(text.contains("One moment, please."), "{text}");
    }
}
