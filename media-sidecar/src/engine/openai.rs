//! OpenAI Realtime over WebSocket.
//!
//! - Connects `{base_url or wss://api.openai.com}/v1/realtime?model=..` with
//!   `Authorization: Bearer <key>`, waits for `session.created`, sends one
//!   `session.update` (instructions, voice, `audio/pcmu` in and out, server
//!   VAD that creates and interrupts responses, input transcription), then
//!   `response.create` so the agent greets the callee as soon as the call is
//!   answered. Mu-law both ways: the trunk's 8 kHz audio is sent as is and
//!   the engine's audio is expanded with `media::g711`, no resampling.
//! - Receives both the GA event names (`response.output_audio.delta`, ..)
//!   and the beta ones (`response.audio.delta`, ..); [`Flavor`] only picks
//!   what we *send* (GA session shape, or beta shape + `OpenAI-Beta` header).
//! - Barge-in: `input_audio_buffer.speech_started` yields
//!   [`EngineEvent::Interrupt`] at once; the next time the engine runs (the
//!   call task calls `next_event` again right away), it sends
//!   `conversation.item.truncate` for the assistant item being played, with
//!   `audio_end_ms` = how much of that item the callee heard, derived from
//!   [`Engine::played`]. Late deltas of that item are dropped.
//! - `played_ms` semantics: the total duration of engine audio the callee
//!   has heard on this call (monotonic; silence and audio dropped on an
//!   Interrupt are not counted). Each assistant item is placed on that
//!   timeline where its first sample will be heard.
//! - Errors: HTTP 401/403 at the handshake and `error` events about the key
//!   -> `Auth`; a closed socket or `session_expired` -> `Disconnected`; no
//!   frame from the server (events or pongs to our pings) for
//!   `idle_timeout` -> `Timeout`. After an error the engine stays failed.
//! - Tools: `metadata.tools` (array of `{type:"function",name,description,parameters}`)
//!   and the offer's customer tools ([`EngineConfig::declared_tools`]) are
//!   passed to the session, with [`super::TOOL_FILLER_INSTRUCTION`] added to
//!   the instructions when there are customer tools; a call of a function named `end_call` also
//!   yields [`EngineEvent::EndCall`] (reason from its `reason` argument).
//!
//! The API key is sent in a header only and redacted from every error text.
//! Nothing here logs the config.
//!
//! The protocol itself is pure ([`OpenAiTranslator`]: messages, audio and time in,
//! events and messages out, tested without sockets); connecting, setup
//! timeout, keepalive, sending and closing are the shared
//! [`super::session`] driver's.

use std::collections::VecDeque;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::http::{header, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use voxline_shared::sidecar_link::Role;

use super::limits::{self, checked_id, BoundedMap};
use super::session::{
    api_key, base_url, urlencode, Dial, Incoming, Timeouts, Translator, WsSession,
};
use super::ws::redact;
use super::{EngineConfig, EngineError, EngineEvent};
use crate::media::g711::Law;
use voxline_shared::analysis::{engine_instructions, AnalysisPlan};

pub const DEFAULT_BASE_URL: &str = "wss://api.openai.com";
pub const DEFAULT_MODEL: &str = "gpt-realtime";

/// 8 kHz: samples per millisecond.
const SPMS: u64 = 8;

/// Which session shape we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// The GA interface (`session.type = "realtime"`, `audio.input.format = {type: "audio/pcmu"}`).
    #[default]
    Ga,
    /// The beta interface (`OpenAI-Beta: realtime=v1`, `input_audio_format = "g711_ulaw"`).
    Beta,
}

#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    pub flavor: Flavor,
    /// Handshake plus `session.created`.
    pub connect_timeout: Duration,
    /// No frame at all from the server (events, or pongs to our pings) for this long -> `Timeout`.
    pub idle_timeout: Duration,
    /// We ping when the server has been quiet this long, so a quiet but
    /// healthy conversation is never mistaken for a dead socket.
    pub ping_interval: Duration,
    /// Ask for a first response (the greeting) right after setup.
    pub greet: bool,
    pub transcription_model: String,
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        OpenAiOptions {
            flavor: Flavor::Ga,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            ping_interval: Duration::from_secs(5),
            greet: true,
            transcription_model: "gpt-4o-mini-transcribe".into(),
        }
    }
}

/// One assistant audio item, placed on the played timeline.
#[derive(Debug, Clone)]
struct AsstItem {
    id: String,
    /// Played-timeline position (8 kHz samples) of its first sample.
    start: u64,
    /// Samples delivered so far.
    samples: u64,
    /// Ms since the call was answered when its first audio arrived.
    first_ms: u64,
    /// Its audio is complete (`*.audio.done` / `response.done`).
    done: bool,
    /// Heard samples when it was truncated.
    truncated_at: Option<u64>,
}

/// An OpenAI Realtime session: the [`OpenAiTranslator`] over the shared driver.
pub type OpenAiEngine = WsSession<OpenAiTranslator>;

/// The OpenAI Realtime protocol, pure: server events in, [`EngineEvent`]s
/// and client events out.
pub struct OpenAiTranslator {
    call_id: String,
    secret: String,
    /// `session.update` (and `response.create` when greeting), sent once `session.created` came.
    opening: Vec<Value>,
    /// The greeting's `response.create`, held for the answer
    /// ([`EngineConfig::greet_on_answer`]).
    greet_on_answer: Option<Value>,
    events: VecDeque<EngineEvent>,
    transmit: VecDeque<Value>,
    /// What the callee heard, in samples (from `played`).
    played: u64,
    /// Played-timeline position where the next delivered audio will start.
    queued_end: u64,
    current: Option<AsstItem>,
    /// Finished or truncated items, by id, for transcript timing (bounded).
    past: VecDeque<AsstItem>,
    /// Set by speech_started; the truncate is computed and sent once the Interrupt was handed out.
    truncate_due: bool,
    /// Item ids whose further audio must be dropped.
    dropped_items: Vec<String>,
    /// User items: (audio_start_ms, audio_end_ms) from the VAD events.
    user_spans: BoundedMap<(u64, Option<u64>)>,
    /// Function call id -> name (from `response.output_item.added`).
    fn_names: BoundedMap<String>,
    /// Which session shape we send (the analysis request differs).
    flavor: Flavor,
    /// The post-call analysis: asked for (text so far), and its whole text.
    analysis: Option<String>,
    analysis_done: Option<String>,
}

/// Longest post-call analysis text kept (the model's JSON answer).
const MAX_ANALYSIS_TEXT: usize = 64 * 1024;

/// Connects with the default options (GA flavor).
pub async fn connect(cfg: EngineConfig) -> Result<OpenAiEngine, EngineError> {
    connect_with(cfg, OpenAiOptions::default()).await
}

pub async fn connect_with(
    cfg: EngineConfig,
    opts: OpenAiOptions,
) -> Result<OpenAiEngine, EngineError> {
    let key = api_key(&cfg, "OpenAI")?;
    let model = cfg.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into());
    let url = format!(
        "{}/v1/realtime?model={}",
        base_url(&cfg, DEFAULT_BASE_URL),
        urlencode(&model)
    );
    let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| EngineError::Auth("API key is not a valid header value".into()))?;
    auth.set_sensitive(true);
    let timeouts = Timeouts {
        connect: opts.connect_timeout,
        idle: opts.idle_timeout,
        ping: opts.ping_interval,
    };
    let mut dial = Dial::new(&cfg, &url, vec![key.clone()], timeouts);
    dial.headers.push((header::AUTHORIZATION, auth));
    if opts.flavor == Flavor::Beta {
        dial.headers.push((
            HeaderName::from_static("openai-beta"),
            HeaderValue::from_static("realtime=v1"),
        ));
    }
    let translator = OpenAiTranslator::new(&cfg, &model, &opts, key.clone());
    tracing::debug!(call_id = %cfg.call_id, flavor = ?opts.flavor, "opening openai realtime session");
    WsSession::open(dial, translator).await
}

/// ISO 639-1 part of a BCP 47 tag ("en-US" -> "en").
pub(crate) fn primary_language(tag: &str) -> Option<String> {
    let p = tag
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    (p.len() == 2 || p.len() == 3).then_some(p)
}

/// The agent's tools (`metadata.tools`, its customer tools, issue 18) and
/// the built-in ones ([`crate::call_task::tools`]).
fn tools(cfg: &EngineConfig) -> Value {
    let declared = Value::Array(cfg.declared_tools());
    Value::Array(crate::call_task::tools::with_builtins(Some(&declared)))
}

/// The `session.update` we send (public for the tests' expectations).
pub fn session_update(cfg: &EngineConfig, model: &str, opts: &OpenAiOptions) -> Value {
    let vad = json!({"type": "server_vad", "create_response": true, "interrupt_response": true});
    let mut transcription = json!({"model": opts.transcription_model});
    if let Some(l) = primary_language(&cfg.language) {
        transcription["language"] = json!(l);
    }
    let mut s = match opts.flavor {
        Flavor::Ga => {
            let mut output = json!({"format": {"type": "audio/pcmu"}});
            if let Some(v) = &cfg.voice {
                output["voice"] = json!(v);
            }
            json!({
                "type": "realtime",
                "model": model,
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}, "transcription": transcription, "turn_detection": vad},
                    "output": output,
                },
            })
        }
        Flavor::Beta => {
            let mut s = json!({
                "modalities": ["audio", "text"],
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw",
                "input_audio_transcription": transcription,
                "turn_detection": vad,
            });
            if let Some(v) = &cfg.voice {
                s["voice"] = json!(v);
            }
            s
        }
    };
    if let Some(p) = cfg.instructions() {
        s["instructions"] = json!(p);
    }
    s["tools"] = tools(cfg);
    s["tool_choice"] = json!("auto");
    json!({"type": "session.update", "session": s})
}

/// Maps an `error` event's `error` object. Returns the error and whether it ends the session.
fn classify_error(err: &Value, key: &str) -> (EngineError, bool) {
    let typ = err["type"].as_str().unwrap_or("");
    let code = err["code"].as_str().unwrap_or("");
    let mut msg = String::new();
    limits::push_capped(
        &mut msg,
        &redact(err["message"].as_str().unwrap_or("(no message)"), &[key]),
        500,
    );
    let text = format!("{typ}/{code}: {msg}");
    let lower = msg.to_ascii_lowercase();
    if code == "invalid_api_key"
        || typ == "authentication_error"
        || typ == "permission_error"
        || lower.contains("api key")
        || lower.contains("unauthorized")
    {
        (EngineError::Auth(text), true)
    } else if code == "session_expired" {
        (EngineError::Disconnected(text), true)
    } else if code == "rate_limit_exceeded"
        || code == "insufficient_quota"
        || typ == "rate_limit_error"
    {
        (EngineError::Unavailable(text), true)
    } else if typ == "invalid_request_error" {
        // e.g. a truncate past the end of an item, a cancel with no response: the session lives on.
        (EngineError::Protocol(text), false)
    } else {
        (EngineError::Protocol(text), true)
    }
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
                || lower.contains("unauthorized")
            {
                EngineError::Auth(text)
            } else if c.code == CloseCode::Again || c.code == CloseCode::Restart {
                EngineError::Unavailable(text)
            } else {
                EngineError::Disconnected(text)
            }
        }
    }
}

impl OpenAiTranslator {
    /// `key` is only used to redact error texts.
    pub fn new(cfg: &EngineConfig, model: &str, opts: &OpenAiOptions, key: String) -> Self {
        let mut opening = vec![session_update(cfg, model, opts)];
        let mut greet_on_answer = None;
        // A callee who speaks first is answered by the server's VAD turn
        // (`create_response`): no greeting of our own.
        if opts.greet && cfg.first_speaker == super::FirstSpeaker::Agent {
            let greet = json!({"type": "response.create"});
            if cfg.greet_on_answer {
                greet_on_answer = Some(greet);
            } else {
                opening.push(greet);
            }
        }
        OpenAiTranslator {
            call_id: cfg.call_id.clone(),
            secret: key,
            opening,
            greet_on_answer,
            events: VecDeque::new(),
            transmit: VecDeque::new(),
            played: 0,
            queued_end: 0,
            current: None,
            past: VecDeque::new(),
            truncate_due: false,
            dropped_items: Vec::new(),
            user_spans: BoundedMap::default(),
            fn_names: BoundedMap::default(),
            flavor: opts.flavor,
            analysis: None,
            analysis_done: None,
        }
    }

    /// After the Interrupt was handed out: truncate the item being played at what was heard.
    fn prepare_truncate(&mut self) {
        if !self.truncate_due || self.events.contains(&EngineEvent::Interrupt) {
            return;
        }
        self.truncate_due = false;
        let played = self.played;
        if let Some(mut item) = self.current.take() {
            let heard = played.saturating_sub(item.start).min(item.samples);
            // `played` has 1 ms resolution: within a millisecond of the end counts as heard.
            let fully_played = item.done && item.samples - heard < SPMS;
            if !fully_played {
                let audio_end_ms = heard / SPMS;
                tracing::debug!(call_id = %self.call_id, item = %item.id, audio_end_ms, "truncating interrupted item");
                self.transmit.push_back(json!({
                    "type": "conversation.item.truncate",
                    "item_id": item.id,
                    "content_index": 0,
                    "audio_end_ms": audio_end_ms,
                }));
                item.truncated_at = Some(heard);
                self.dropped_items.push(item.id.clone());
                if self.dropped_items.len() > 16 {
                    self.dropped_items.remove(0);
                }
            }
            self.remember(item);
        }
        // Unplayed audio was dropped by the caller: the next item starts where playback stopped.
        self.queued_end = played;
    }

    fn remember(&mut self, item: AsstItem) {
        self.past.retain(|p| p.id != item.id);
        self.past.push_back(item);
        if self.past.len() > 16 {
            self.past.pop_front();
        }
    }

    fn find_item(&self, id: &str) -> Option<&AsstItem> {
        self.current
            .iter()
            .chain(self.past.iter())
            .find(|i| i.id == id)
    }

    fn on_audio_delta(&mut self, v: &Value, now: u64) -> Result<(), EngineError> {
        let item_id = checked_id("item id", v["item_id"].as_str().unwrap_or(""))
            .map_err(EngineError::Protocol)?
            .to_string();
        if self.dropped_items.contains(&item_id) {
            return Ok(());
        }
        let delta = v["delta"].as_str().unwrap_or("");
        // Mu-law: one byte per 8 kHz sample.
        limits::check_b64_len(
            delta,
            (limits::MAX_AUDIO_MS_PER_MESSAGE * SPMS) as usize,
            "audio delta",
        )
        .map_err(EngineError::Protocol)?;
        let bytes = B64
            .decode(delta)
            .map_err(|e| EngineError::Protocol(format!("audio delta is not base64: {e}")))?;
        if bytes.is_empty() {
            return Ok(());
        }
        let n = bytes.len() as u64;
        let new_item = self
            .current
            .as_ref()
            .map(|c| c.id != item_id)
            .unwrap_or(true);
        if new_item {
            if let Some(prev) = self.current.take() {
                self.remember(prev);
            }
            let start = self.queued_end.max(self.played);
            self.current = Some(AsstItem {
                id: item_id,
                start,
                samples: 0,
                first_ms: now,
                done: false,
                truncated_at: None,
            });
            self.queued_end = start;
        }
        if let Some(c) = self.current.as_mut() {
            c.samples = c.samples.saturating_add(n);
        }
        self.queued_end = self.queued_end.saturating_add(n);
        let mut pcm = Vec::with_capacity(bytes.len());
        Law::Mu.decode(&bytes, &mut pcm);
        self.events.push_back(EngineEvent::Audio(pcm));
        Ok(())
    }

    fn mark_done(&mut self, item_id: Option<&str>) {
        if let Some(c) = self.current.as_mut() {
            if item_id.map(|i| i == c.id).unwrap_or(true) {
                c.done = true;
            }
        }
    }

    /// Handles one server event at `now` ms since the answer. `Err` ends the session.
    fn on_event(&mut self, v: Value, now: u64) -> Result<(), EngineError> {
        let typ = v["type"].as_str().unwrap_or("").to_string();
        match typ.as_str() {
            "response.output_audio.delta" | "response.audio.delta" => {
                self.on_audio_delta(&v, now)?
            }
            "response.output_audio.done" | "response.audio.done" => {
                self.mark_done(v["item_id"].as_str())
            }
            "response.done" => {
                self.mark_done(None);
                let r = &v["response"];
                if r["status"].as_str() == Some("failed") {
                    let err = &r["status_details"]["error"];
                    let (e, _) = classify_error(err, &self.secret);
                    tracing::warn!(call_id = %self.call_id, error = %e, "openai response failed");
                    if let EngineError::Auth(_) = e {
                        return Err(e);
                    }
                }
            }
            "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
                let id = v["item_id"].as_str().unwrap_or("");
                let text = v["transcript"].as_str().unwrap_or("").trim().to_string();
                if !text.is_empty() {
                    let (start_ms, end_ms) = match self.find_item(id) {
                        Some(i) => {
                            let heard = i.truncated_at.unwrap_or(i.samples);
                            (i.first_ms, i.first_ms.saturating_add(heard / SPMS))
                        }
                        None => (now, now),
                    };
                    self.events.push_back(EngineEvent::Transcript {
                        role: Role::Agent,
                        text,
                        start_ms,
                        end_ms,
                    });
                }
            }
            "input_audio_buffer.speech_started" => {
                if let Some(id) = v["item_id"].as_str() {
                    let id = checked_id("item id", id).map_err(EngineError::Protocol)?;
                    let at = v["audio_start_ms"].as_u64().unwrap_or(now);
                    self.user_spans.insert(id.to_string(), (at, None));
                }
                self.events.push_back(EngineEvent::Interrupt);
                self.truncate_due = true;
            }
            "input_audio_buffer.speech_stopped" => {
                if let Some(id) = v["item_id"].as_str() {
                    let id = checked_id("item id", id).map_err(EngineError::Protocol)?;
                    let at = v["audio_end_ms"].as_u64().unwrap_or(now);
                    match self.user_spans.get_mut(id) {
                        Some(span) => span.1 = Some(at),
                        None => self.user_spans.insert(id.to_string(), (at, Some(at))),
                    }
                }
            }
            "conversation.item.input_audio_transcription.completed" => {
                let id = v["item_id"].as_str().unwrap_or("");
                let text = v["transcript"].as_str().unwrap_or("").trim().to_string();
                let (start_ms, end_ms) = match self.user_spans.remove(id) {
                    Some((s, e)) => (s, e.unwrap_or(now).max(s)),
                    None => (now, now),
                };
                if !text.is_empty() {
                    self.events.push_back(EngineEvent::Transcript {
                        role: Role::Callee,
                        text,
                        start_ms,
                        end_ms,
                    });
                }
            }
            "conversation.item.input_audio_transcription.failed" => {
                tracing::warn!(call_id = %self.call_id, "openai input transcription failed for one turn");
            }
            "response.output_item.added"
            | "response.output_item.done"
            | "conversation.item.created"
            | "conversation.item.added"
            | "conversation.item.done" => {
                let item = &v["item"];
                if item["type"].as_str() == Some("function_call") {
                    if let (Some(c), Some(n)) = (item["call_id"].as_str(), item["name"].as_str()) {
                        let c = checked_id("function call id", c).map_err(EngineError::Protocol)?;
                        let n = checked_id("function name", n).map_err(EngineError::Protocol)?;
                        self.fn_names.insert(c.to_string(), n.to_string());
                    }
                }
            }
            "response.function_call_arguments.done" => {
                let call_id = v["call_id"].as_str().unwrap_or("").to_string();
                let name = v["name"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| self.fn_names.remove(&call_id))
                    .unwrap_or_default();
                let arguments = v["arguments"].as_str().unwrap_or("{}").to_string();
                if name == "end_call" {
                    let reason = serde_json::from_str::<Value>(&arguments)
                        .ok()
                        .and_then(|a| a["reason"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "agent_hangup".into());
                    self.events.push_back(EngineEvent::FunctionCall {
                        name: name.clone(),
                        call_id: call_id.clone(),
                        arguments,
                    });
                    self.events.push_back(EngineEvent::EndCall { reason });
                } else {
                    self.events.push_back(EngineEvent::FunctionCall {
                        name,
                        call_id,
                        arguments,
                    });
                }
            }
            // Text only comes from the post-call analysis (the call's
            // responses are audio): its deltas, then the whole text.
            "response.output_text.delta" | "response.text.delta" => {
                if let (Some(text), Some(d)) = (self.analysis.as_mut(), v["delta"].as_str()) {
                    limits::push_capped(text, d, MAX_ANALYSIS_TEXT);
                }
            }
            "response.output_text.done" | "response.text.done" => {
                if let Some(mut text) = self.analysis.take() {
                    if let Some(whole) = v["text"].as_str() {
                        text.clear();
                        limits::push_capped(&mut text, whole, MAX_ANALYSIS_TEXT);
                    }
                    self.analysis_done = Some(text);
                }
            }
            "error" => {
                let (e, fatal) = classify_error(&v["error"], &self.secret);
                if fatal {
                    return Err(e);
                }
                tracing::warn!(call_id = %self.call_id, error = %e, "openai realtime error event (session continues)");
            }
            _ => {}
        }
        Ok(())
    }

    /// Entries and id bytes held in the per-session maps and lists (for the
    /// tests that check a server cannot make them grow).
    pub fn tracked(&self) -> (usize, usize) {
        let items = self.current.iter().chain(self.past.iter());
        let entries = self.user_spans.len()
            + self.fn_names.len()
            + self.dropped_items.len()
            + self.past.len()
            + usize::from(self.current.is_some());
        let bytes = self.user_spans.key_bytes()
            + self.fn_names.key_bytes()
            + self.dropped_items.iter().map(String::len).sum::<usize>()
            + items.map(|i| i.id.len()).sum::<usize>();
        (entries, bytes)
    }
}

impl Translator for OpenAiTranslator {
    const NAME: &'static str = "openai realtime";
    const READY: &'static str = "session.created";

    fn setup_message(&mut self, msg: Incoming<'_>) -> Result<bool, EngineError> {
        let Incoming::Text(t) = msg else {
            return Ok(false);
        };
        let v: Value = serde_json::from_str(t)
            .map_err(|e| EngineError::Protocol(format!("bad server event: {e}")))?;
        match v["type"].as_str().unwrap_or("") {
            "session.created" => Ok(true),
            "error" => Err(classify_error(&v["error"], &self.secret).0),
            _ => Ok(false),
        }
    }

    fn opened(&mut self) {
        self.transmit.extend(self.opening.drain(..));
    }

    fn answered(&mut self) {
        if let Some(g) = self.greet_on_answer.take() {
            self.transmit.push_back(g);
        }
    }

    fn message(&mut self, msg: Incoming<'_>, now_ms: u64) -> Result<(), EngineError> {
        let Incoming::Text(t) = msg else {
            return Ok(()); // binary frames carry nothing in this API
        };
        match serde_json::from_str::<Value>(t) {
            Ok(v) => self.on_event(v, now_ms),
            Err(e) => {
                tracing::warn!(call_id = %self.call_id, "unparsable openai event: {e}");
                Ok(())
            }
        }
    }

    fn audio(&mut self, frame: &[i16]) {
        let mut mu = Vec::with_capacity(frame.len());
        Law::Mu.encode(frame, &mut mu);
        self.transmit
            .push_back(json!({"type": "input_audio_buffer.append", "audio": B64.encode(&mu)}));
        self.prepare_truncate();
    }

    fn played(&mut self, played_ms: u64) {
        // The counter comes from outside: saturate rather than overflow.
        self.played = self.played.max(played_ms.saturating_mul(SPMS));
    }

    fn function_result(&mut self, call_id: &str, output: &str) {
        self.transmit.push_back(json!({
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": output},
        }));
        self.transmit.push_back(json!({"type": "response.create"}));
    }

    /// A text-only response in the call's own conversation, whose
    /// instructions ask for the analysis as one JSON object.
    fn request_analysis(&mut self, plan: &AnalysisPlan) -> bool {
        let instructions = engine_instructions(plan);
        let response = match self.flavor {
            Flavor::Ga => json!({"output_modalities": ["text"], "instructions": instructions}),
            Flavor::Beta => json!({"modalities": ["text"], "instructions": instructions}),
        };
        self.transmit
            .push_back(json!({"type": "response.create", "response": response}));
        self.analysis = Some(String::new());
        self.analysis_done = None;
        true
    }

    fn analysis_reply(&mut self) -> Option<String> {
        self.analysis_done.take()
    }

    fn keypad(&mut self, text: &str) {
        self.transmit.push_back(json!({
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        }));
        self.transmit.push_back(json!({"type": "response.create"}));
    }

    fn close_error(&self, frame: Option<&CloseFrame>) -> EngineError {
        close_error(frame, &self.secret)
    }

    fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    fn poll_transmit(&mut self) -> Option<Value> {
        self.prepare_truncate();
        self.transmit.pop_front()
    }
}

impl OpenAiEngine {
    /// See [`OpenAiTranslator::tracked`].
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
    fn auth_errors_are_recognised_and_redacted() {
        let key = "sk-test-SECRET-123456";
        let (e, fatal) = classify_error(
            &json!({"type": "invalid_request_error", "code": "invalid_api_key",
                    "message": format!("Incorrect API key provided: {key}")}),
            key,
        );
        assert!(fatal);
        assert_eq!(e.code(), "auth");
        assert!(!e.to_string().contains(key), "{e}");
        let (e, fatal) = classify_error(
            &json!({"type": "invalid_request_error", "code": "x", "message": "m"}),
            key,
        );
        assert!(!fatal);
        assert_eq!(e.code(), "protocol");
    }

    #[test]
    fn languages() {
        assert_eq!(primary_language("en-US").as_deref(), Some("en"));
        assert_eq!(primary_language("de").as_deref(), Some("de"));
        assert_eq!(primary_language(""), None);
    }

    fn translator() -> OpenAiTranslator {
        let mut cfg = EngineConfig::new("call-1", "en-US");
        cfg.system_prompt = Some("Be brief.".into());
        let opts = OpenAiOptions::default();
        OpenAiTranslator::new(&cfg, "gpt-realtime", &opts, "sk-test-key".into())
    }

    fn feed(t: &mut OpenAiTranslator, v: Value, now_ms: u64) {
        let text = v.to_string();
        t.message(Incoming::Text(&text), now_ms).unwrap();
    }

    fn events(t: &mut OpenAiTranslator) -> Vec<EngineEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    fn sent(t: &mut OpenAiTranslator) -> Vec<Value> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    fn delta(item: &str, bytes: &[u8]) -> Value {
        json!({"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": item,
               "output_index": 0, "content_index": 0, "delta": B64.encode(bytes)})
    }

    fn mu(bytes: &[u8]) -> Vec<i16> {
        let mut pcm = Vec::new();
        Law::Mu.decode(bytes, &mut pcm);
        pcm
    }

    #[test]
    fn setup_then_session_update_and_greeting() {
        let mut t = translator();
        assert!(sent(&mut t).is_empty(), "nothing before session.created");
        let hello = json!({"type": "session.created", "session": {"id": "sess_1"}}).to_string();
        assert!(!t
            .setup_message(Incoming::Text(r#"{"type":"ping"}"#))
            .unwrap());
        assert!(!t.setup_message(Incoming::Binary(b"x")).unwrap());
        assert!(t.setup_message(Incoming::Text(&hello)).unwrap());
        t.opened();
        let mut cfg = EngineConfig::new("call-1", "en-US");
        cfg.system_prompt = Some("Be brief.".into());
        let update = session_update(&cfg, "gpt-realtime", &OpenAiOptions::default());
        assert_eq!(update["session"]["instructions"], "Be brief.");
        assert_eq!(
            sent(&mut t),
            vec![update, json!({"type": "response.create"})]
        );

        let mut t = translator();
        let err = json!({"type": "error", "error": {"type": "invalid_request_error",
            "code": "invalid_api_key", "message": "Incorrect API key provided: sk-test-key"}});
        let e = t
            .setup_message(Incoming::Text(&err.to_string()))
            .unwrap_err();
        assert_eq!(e.code(), "auth");
        assert!(!e.to_string().contains("sk-test-key"), "{e}");
        assert_eq!(
            t.setup_message(Incoming::Text("{")).unwrap_err().code(),
            "protocol"
        );
    }

    /// Issue 17, `first_speaker: callee`: no `response.create` of ours, at
    /// setup or at the answer; the server VAD's turn answers the callee.
    #[test]
    fn a_callee_first_call_sends_no_greeting() {
        for (first, greet_on_answer) in [
            (FirstSpeaker::Agent, true),
            (FirstSpeaker::Callee, true),
            (FirstSpeaker::Callee, false),
        ] {
            let mut cfg = EngineConfig::new("call-1", "en-US");
            cfg.first_speaker = first;
            cfg.greet_on_answer = greet_on_answer;
            let opts = OpenAiOptions::default();
            let mut t = OpenAiTranslator::new(&cfg, "gpt-realtime", &opts, "sk".into());
            t.opened();
            t.answered();
            let creates = sent(&mut t)
                .into_iter()
                .filter(|m| m["type"] == "response.create")
                .count();
            let expected = usize::from(first == FirstSpeaker::Agent);
            assert_eq!(
                creates, expected,
                "{first:?} greet_on_answer={greet_on_answer}"
            );
        }
        // The server's VAD still creates the responses.
        let mut cfg = EngineConfig::new("call-1", "en-US");
        cfg.first_speaker = FirstSpeaker::Callee;
        let update = session_update(&cfg, "gpt-realtime", &OpenAiOptions::default());
        assert_eq!(
            update["session"]["audio"]["input"]["turn_detection"]["create_response"],
            true
        );
    }

    #[test]
    fn audio_both_ways_and_transcripts_are_timed_on_the_played_timeline() {
        let mut t = translator();
        t.opened();
        sent(&mut t);
        // Callee audio: the exact mu-law bytes, base64.
        let frame: Vec<i16> = mu(&[0x00, 0x10, 0x80, 0x90]);
        t.audio(&frame);
        assert_eq!(
            sent(&mut t),
            vec![
                json!({"type": "input_audio_buffer.append", "audio": B64.encode([0x00, 0x10, 0x80, 0x90])})
            ]
        );
        // 255 samples of engine audio in two deltas, first at 1000 ms.
        feed(&mut t, delta("item_a1", &[0x55; 100]), 1000);
        feed(&mut t, delta("item_a1", &[0x44; 155]), 1010);
        feed(
            &mut t,
            json!({"type": "response.output_audio.done", "item_id": "item_a1"}),
            1020,
        );
        feed(
            &mut t,
            json!({"type": "response.output_audio_transcript.done", "item_id": "item_a1",
                   "transcript": " Hi there. "}),
            1030,
        );
        assert_eq!(
            events(&mut t),
            vec![
                EngineEvent::Audio(mu(&[0x55; 100])),
                EngineEvent::Audio(mu(&[0x44; 155])),
                EngineEvent::Transcript {
                    role: Role::Agent,
                    text: "Hi there.".into(),
                    start_ms: 1000,
                    end_ms: 1031
                },
            ]
        );
        // The callee's turn: VAD offsets from the server, text from the transcription.
        t.played(31);
        feed(
            &mut t,
            json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 1200, "item_id": "item_u1"}),
            1300,
        );
        feed(
            &mut t,
            json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2750, "item_id": "item_u1"}),
            2800,
        );
        feed(
            &mut t,
            json!({"type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u1", "transcript": " Yes. "}),
            3000,
        );
        assert_eq!(
            events(&mut t),
            vec![
                EngineEvent::Interrupt,
                EngineEvent::Transcript {
                    role: Role::Callee,
                    text: "Yes.".into(),
                    start_ms: 1200,
                    end_ms: 2750
                },
            ]
        );
        // Fully played and done: no truncate.
        assert!(sent(&mut t).is_empty());
    }

    #[test]
    fn barge_in_truncates_at_what_was_heard_once_the_interrupt_is_handed_out() {
        let mut t = translator();
        for _ in 0..3 {
            feed(&mut t, delta("item_a1", &[0x55; 800]), 500);
        }
        assert_eq!(events(&mut t).len(), 3);
        t.played(120);
        feed(
            &mut t,
            json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 900, "item_id": "item_u1"}),
            800,
        );
        // Not before the call task has taken the Interrupt (it reports played first).
        assert!(sent(&mut t).is_empty());
        assert_eq!(t.poll_event(), Some(EngineEvent::Interrupt));
        assert_eq!(
            sent(&mut t),
            vec![
                json!({"type": "conversation.item.truncate", "item_id": "item_a1",
                        "content_index": 0, "audio_end_ms": 120})
            ]
        );
        // A late delta of the cut item is dropped; the next item starts where playback stopped.
        feed(&mut t, delta("item_a1", &[0x55; 800]), 900);
        assert!(events(&mut t).is_empty());
        feed(&mut t, delta("item_a2", &[0x44; 800]), 1000);
        assert_eq!(events(&mut t), vec![EngineEvent::Audio(mu(&[0x44; 800]))]);
        t.played(160);
        feed(
            &mut t,
            json!({"type": "input_audio_buffer.speech_started", "item_id": "item_u2"}),
            1100,
        );
        assert_eq!(events(&mut t), vec![EngineEvent::Interrupt]);
        // The truncate is computed when the driver next sends (here: with callee audio).
        t.audio(&[0; 160]);
        let out = sent(&mut t);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["type"], "input_audio_buffer.append");
        assert_eq!(
            out[1],
            json!({"type": "conversation.item.truncate", "item_id": "item_a2",
                   "content_index": 0, "audio_end_ms": 40})
        );
    }

    #[test]
    fn function_calls_end_call_and_results() {
        let mut t = translator();
        feed(
            &mut t,
            json!({"type": "response.output_item.added", "item": {"id": "item_f1",
            "type": "function_call", "call_id": "call_9", "name": "book_slot"}}),
            0,
        );
        feed(
            &mut t,
            json!({"type": "response.function_call_arguments.done", "item_id": "item_f1",
            "call_id": "call_9", "arguments": "{\"day\":\"tue\"}"}),
            0,
        );
        feed(
            &mut t,
            json!({"type": "response.function_call_arguments.done", "call_id": "c2",
            "name": "end_call", "arguments": "{\"reason\":\"voicemail\"}"}),
            0,
        );
        assert_eq!(
            events(&mut t),
            vec![
                EngineEvent::FunctionCall {
                    name: "book_slot".into(),
                    call_id: "call_9".into(),
                    arguments: "{\"day\":\"tue\"}".into()
                },
                EngineEvent::FunctionCall {
                    name: "end_call".into(),
                    call_id: "c2".into(),
                    arguments: "{\"reason\":\"voicemail\"}".into()
                },
                EngineEvent::EndCall {
                    reason: "voicemail".into()
                },
            ]
        );
        t.function_result("call_9", "{\"ok\":true}");
        assert_eq!(
            sent(&mut t),
            vec![
                json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
                       "call_id": "call_9", "output": "{\"ok\":true}"}}),
                json!({"type": "response.create"}),
            ]
        );
    }

    /// Issue 18: after the call, a text-only response asks for the
    /// analysis; its text (deltas, then the whole) is the reply.
    #[test]
    fn the_post_call_analysis_is_a_text_response_in_the_same_conversation() {
        let mut t = translator();
        let plan = AnalysisPlan {
            success_criteria: Some("They confirm.".into()),
            ..AnalysisPlan::default()
        };
        assert!(t.request_analysis(&plan));
        let asked = sent(&mut t);
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert_eq!(asked[0]["type"], "response.create");
        assert_eq!(asked[0]["response"]["output_modalities"], json!(["text"]));
        assert!(asked[0]["response"]["instructions"]
            .as_str()
            .unwrap()
            .contains("They confirm."));
        assert_eq!(t.analysis_reply(), None);
        feed(
            &mut t,
            json!({"type": "response.output_text.delta", "delta": "{\"summary\":"}),
            10,
        );
        assert_eq!(t.analysis_reply(), None);
        feed(
            &mut t,
            json!({"type": "response.output_text.done", "text": "{\"summary\": \"ok\"}"}),
            11,
        );
        assert_eq!(t.analysis_reply().as_deref(), Some("{\"summary\": \"ok\"}"));
        assert_eq!(t.analysis_reply(), None, "handed out once");
        // Text that was not asked for is not an analysis.
        feed(
            &mut t,
            json!({"type": "response.output_text.done", "text": "hello"}),
            12,
        );
        assert_eq!(t.analysis_reply(), None);
        // A server that never sends the whole text: the deltas, bounded.
        assert!(t.request_analysis(&plan));
        let big = "x".repeat(MAX_ANALYSIS_TEXT);
        feed(
            &mut t,
            json!({"type": "response.text.delta", "delta": big}),
            13,
        );
        feed(
            &mut t,
            json!({"type": "response.text.delta", "delta": "more"}),
            14,
        );
        feed(&mut t, json!({"type": "response.text.done"}), 15);
        assert_eq!(t.analysis_reply().map(|r| r.len()), Some(MAX_ANALYSIS_TEXT));
    }

    /// Issue 18: the callee's keys are a user text item, then a response;
    /// the built-in tools are declared beside the agent's own.
    #[test]
    fn keys_are_user_text_and_builtin_tools_are_declared() {
        let mut t = translator();
        t.keypad(&crate::engine::dtmf_text("12#"));
        assert_eq!(
            sent(&mut t),
            vec![
                json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "[DTMF 12#]"}]}}),
                json!({"type": "response.create"}),
            ]
        );
        let mut cfg = EngineConfig::new("c", "en-US");
        cfg.metadata = Some(json!({"tools": [{"type": "function", "name": "book_slot"}]}));
        let u = session_update(&cfg, "m", &OpenAiOptions::default());
        let names: Vec<_> = u["session"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["book_slot", "send_dtmf", "end_call", "transfer"]);
    }

    #[test]
    fn fatal_and_non_fatal_error_events() {
        let mut t = translator();
        let soft = json!({"type": "error", "error": {"type": "invalid_request_error", "code": "x", "message": "m"}});
        assert!(t.message(Incoming::Text(&soft.to_string()), 0).is_ok());
        assert!(t.message(Incoming::Text("not json"), 0).is_ok());
        let hard = json!({"type": "error", "error": {"type": "server_error", "code": "session_expired", "message": "m"}});
        let e = t.message(Incoming::Text(&hard.to_string()), 0).unwrap_err();
        assert_eq!(e.code(), "disconnected");
    }

    /// `played` is a counter from outside the translator: `played_ms * 8`
    /// overflowed (a panic in debug builds, a wrap to a tiny position in
    /// release) for values past u64::MAX / 8.
    #[test]
    fn huge_played_counters_saturate_instead_of_overflowing() {
        let mut t = translator();
        t.played(u64::MAX / 2);
        t.played(u64::MAX);
        feed(&mut t, delta("item_a1", &[0x55; 800]), 10);
        feed(&mut t, delta("item_a1", &[0x55; 800]), 20);
        feed(
            &mut t,
            json!({"type": "input_audio_buffer.speech_started", "item_id": "u1"}),
            30,
        );
        assert_eq!(events(&mut t).len(), 3);
        // The item starts at the (saturated) end of the timeline: nothing of it was heard.
        assert_eq!(
            sent(&mut t),
            vec![
                json!({"type": "conversation.item.truncate", "item_id": "item_a1",
                        "content_index": 0, "audio_end_ms": 0})
            ]
        );
        feed(
            &mut t,
            json!({"type": "response.output_audio_transcript.done", "item_id": "item_a1",
            "transcript": "x"}),
            40,
        );
        t.played(5);
        feed(&mut t, delta("item_a2", &[0x55; 800]), 50);
        assert_eq!(
            events(&mut t),
            vec![
                EngineEvent::Transcript {
                    role: Role::Agent,
                    text: "x".into(),
                    start_ms: 10,
                    end_ms: 10
                },
                EngineEvent::Audio(mu(&[0x55; 800])),
            ]
        );
    }

    #[test]
    fn offered_customer_tools_are_declared_with_the_filler_instruction() {
        let mut cfg = EngineConfig::new("c1", "en-US");
        cfg.system_prompt = Some("Be brief.".into());
        cfg.metadata = Some(
            json!({"tools": [{"type": "function", "name": "from_metadata",
            "parameters": {"type": "object"}}]}),
        );
        cfg.tools = vec![voxline_shared::sidecar_link::OfferedTool {
            name: "lookup_order".into(),
            description: "Look up an order".into(),
            parameters: json!({"type": "object", "properties": {"order": {"type": "string"}}}),
        }];
        let update = session_update(&cfg, "gpt-realtime", &OpenAiOptions::default());
        let tools = update["session"]["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "from_metadata",
                "lookup_order",
                "send_dtmf",
                "end_call",
                "transfer"
            ]
        );
        assert_eq!(tools[1]["type"], "function");
        assert_eq!(
            tools[1]["parameters"]["properties"]["order"]["type"],
            "string"
        );
        let instructions = update["session"]["instructions"].as_str().unwrap();
        assert!(instructions.starts_with("Be brief."));
        assert!(instructions.contains("One moment, please."));
        // Without customer tools the prompt is sent as written.
        cfg.tools.clear();
        let update = session_update(&cfg, "gpt-realtime", &OpenAiOptions::default());
        assert_eq!(update["session"]["instructions"], "Be brief.");
    }
}
