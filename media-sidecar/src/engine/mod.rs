//! Speech AI engines behind one trait (issue 5).
//!
//! A call task feeds the callee's audio in 20 ms frames of 8 kHz mono PCM16
//! ([`FRAME_SAMPLES`] samples) with [`Engine::send_audio`] and pulls
//! [`EngineEvent`]s with [`Engine::next_event`]. Engine audio comes back at
//! 8 kHz, any length. [`Engine::played`] tells the engine how much of its
//! audio the callee has actually heard, so a barge-in truncates the engine's
//! view of the conversation at the right point.
//!
//! Engines: [`openai`] (OpenAI Realtime), [`gemini`] (Gemini Live), and the
//! offline `local` engine (default).
//!
//! Send-ness: the trait methods are declared as `fn .. -> impl Future + Send`
//! (not bare `async fn`) so that a generic `E: Engine` can be driven from
//! inside `tokio::spawn`. Implementations still write plain `async fn` in
//! their `impl Engine for ..` block; the compiler checks their futures are
//! `Send`. For runtime selection (`Box<dyn ..>`), see [`DynEngine`] /
//! [`BoxedEngine`].

use std::future::Future;
use std::pin::Pin;
use voxline_shared::analysis::{AnalysisPlan, CallAnalysis};

pub use voxline_shared::sidecar_link::FirstSpeaker;

pub mod echo;
pub mod gemini;
pub mod guard;
pub mod limits;
/// The offline engine: links pocketsphinx and flite (C libraries from Debian),
/// so it sits behind the default `local-engine` feature; SIP, media and the
/// other engines build and test without them.
#[cfg(feature = "local-engine")]
pub mod local;
pub mod openai;
pub mod session;
pub mod ws;

/// 20 ms of 8 kHz mono 16-bit PCM (160 samples) in; engine audio out in any length at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// Sample rate of the audio crossing the trait, both ways.
pub const SAMPLE_RATE: u32 = 8_000;

/// How keys the callee pressed (DTMF) are written, the same for every engine
/// and in the transcript: `[DTMF 12#]` (one group of keys pressed within
/// [`crate::call_task::bridge::KEYPAD_GAP`] of each other).
pub fn dtmf_text(digits: &str) -> String {
    format!("[DTMF {digits}]")
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub call_id: String,
    pub system_prompt: Option<String>,
    pub voice: Option<String>,
    pub language: String,
    pub model: Option<String>,
    /// Per call, never logged (`Debug` shows `***`).
    pub api_key: Option<voxline_shared::sidecar_link::SecretText>,
    pub base_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// `Some` when `base_url` is a tenant's (the call's or its agent's):
    /// every address its host resolves to must be public, or allowed by
    /// these operator exceptions ([`guard`]). `None`: the operator's own URL
    /// or the vendor's default, connected to as is.
    pub url_guard: Option<guard::AllowedHosts>,
    /// The engine is started while the callee's phone rings (issue 17): it
    /// sets up (session configured, recognizer loaded, greeting synthesised)
    /// but starts the conversation (the greeting, its clock) only at
    /// [`Engine::answered`]. `false`: the call is already answered, start at once.
    pub greet_on_answer: bool,
    /// Who speaks first (the agent's `first_speaker`): with
    /// [`FirstSpeaker::Callee`] the engine greets only after the callee's
    /// first words, not at the answer.
    pub first_speaker: FirstSpeaker,
    /// The agent's customer tools (issue 18; the offer's `tools`), declared
    /// to the model beside any in `metadata.tools`.
    pub tools: Vec<voxline_shared::sidecar_link::OfferedTool>,
}

/// Added to the instructions of a cloud engine whose call has customer
/// tools: a tool's answer comes from the customer's server (up to its
/// timeout), and the model, not the sidecar, is the voice on the line, so
/// the model is asked to say so before it waits (the honest filler: no
/// sidecar audio is mixed into the model's).
pub const TOOL_FILLER_INSTRUCTION: &str = "Some of your tools take a few seconds to answer. \
Before you call one, briefly tell the caller that you are checking (for example \"One moment, please.\"), \
then call it. If a tool answers with an error, tell the caller you could not get that information right now.";

impl EngineConfig {
    /// The function declarations for the model, OpenAI's shape
    /// (`{type: "function", name, description, parameters}`): those in
    /// `metadata.tools` as given, then the agent's customer tools (a name
    /// already declared in the metadata is not declared twice).
    pub fn declared_tools(&self) -> Vec<serde_json::Value> {
        let mut out: Vec<serde_json::Value> = self
            .metadata
            .as_ref()
            .and_then(|m| m.get("tools"))
            .and_then(|t| t.as_array())
            .cloned()
            .unwrap_or_default();
        for t in &self.tools {
            if out.iter().any(|d| d["name"] == t.name.as_str()) {
                continue;
            }
            out.push(serde_json::json!({"type": "function", "name": t.name,
                "description": t.description, "parameters": t.parameters}));
        }
        out
    }

    /// The system prompt, with [`TOOL_FILLER_INSTRUCTION`] when the call has
    /// customer tools.
    pub fn instructions(&self) -> Option<String> {
        match (&self.system_prompt, self.tools.is_empty()) {
            (p, true) => p.clone(),
            (Some(p), false) => Some(format!("{p}\n\n{TOOL_FILLER_INSTRUCTION}")),
            (None, false) => Some(TOOL_FILLER_INSTRUCTION.to_string()),
        }
    }

    /// A config with only the call id and language set.
    pub fn new(call_id: impl Into<String>, language: impl Into<String>) -> Self {
        EngineConfig {
            call_id: call_id.into(),
            system_prompt: None,
            voice: None,
            language: language.into(),
            model: None,
            api_key: None,
            base_url: None,
            metadata: None,
            url_guard: None,
            greet_on_answer: false,
            first_speaker: FirstSpeaker::Agent,
            tools: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// PCM 8 kHz mono to play to the callee, in order.
    Audio(Vec<i16>),
    /// The callee started talking over us: drop any audio not yet played, now.
    Interrupt,
    /// One finished turn (offsets in ms from the moment the call was answered).
    Transcript {
        role: voxline_shared::sidecar_link::Role,
        text: String,
        start_ms: u64,
        end_ms: u64,
    },
    /// The engine (or its script) wants the call to end after pending audio is played.
    EndCall { reason: String },
    /// A tool/function call surfaced by the engine.
    FunctionCall {
        name: String,
        call_id: String,
        arguments: String,
    },
    /// Outcome/summary fields for the transcript JSON, when the engine gives them.
    Summary {
        summary: Option<String>,
        outcome: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("auth: {0}")]
    Auth(String),
    #[error("disconnected: {0}")]
    Disconnected(String),
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The engine URL leads to an address this sidecar may not reach ([`guard`]).
    #[error("refused: {0}")]
    Refused(String),
}

impl EngineError {
    /// Stable short code: "auth" | "disconnected" | "timeout" | "protocol" |
    /// "unavailable" | "refused".
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Auth(_) => "auth",
            EngineError::Disconnected(_) => "disconnected",
            EngineError::Timeout(_) => "timeout",
            EngineError::Protocol(_) => "protocol",
            EngineError::Unavailable(_) => "unavailable",
            EngineError::Refused(_) => "refused",
        }
    }
}

/// One conversation. `played_ms` reports how much of our audio the callee has actually heard (for barge-in truncation).
///
/// Implementations may write `async fn send_audio(..)` etc. in their impl
/// block; the futures must be `Send`.
pub trait Engine: Send {
    fn send_audio(&mut self, frame: &[i16])
        -> impl Future<Output = Result<(), EngineError>> + Send;
    fn next_event(&mut self) -> impl Future<Output = Result<EngineEvent, EngineError>> + Send;
    fn played(&mut self, played_ms: u64);
    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// The callee put the call on hold (`true`: a re-INVITE made us
    /// recvonly or inactive) or took it off (`false`). While held the bridge
    /// feeds the engine none of the callee's audio (hold music is not
    /// speech) and none of its audio reaches the callee. Engines keep their
    /// session as it is; the default ignores it.
    fn hold(&mut self, on_hold: bool) {
        let _ = on_hold;
    }

    /// The callee answered. An engine created with
    /// [`EngineConfig::greet_on_answer`] starts the conversation now (its
    /// greeting, and the clock its transcript offsets count from); until then
    /// it yields no events. Others ignore it.
    fn answered(&mut self) {}

    /// The callee pressed `digits` (one group; 0-9 * # A-D). Cloud engines
    /// take it as the callee's text [`dtmf_text`] and answer it; the local
    /// engine matches the keys against its script. The default ignores it.
    fn keypad(&mut self, digits: &str) -> impl Future<Output = Result<(), EngineError>> + Send {
        let _ = digits;
        async { Ok(()) }
    }

    /// Answers a [`EngineEvent::FunctionCall`] (`output` is usually JSON).
    /// Engines without tools ignore it.
    fn function_result(
        &mut self,
        call_id: &str,
        output: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        let _ = (call_id, output);
        async { Ok(()) }
    }

    /// After the call (issue 18): the engine's own post-call analysis per
    /// `plan`, within its time bound, or `None` (it has no language model
    /// to read the call, it failed, or it gave no usable answer; the edge
    /// then applies its keyword rules).
    fn analyse(
        &mut self,
        plan: &AnalysisPlan,
    ) -> impl Future<Output = Option<CallAnalysis>> + Send {
        let _ = plan;
        async { None }
    }
}

/// A boxed future, as returned by [`DynEngine`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe twin of [`Engine`], implemented for every `Engine`, so a call
/// task can hold whichever engine the call asked for as a [`BoxedEngine`].
pub trait DynEngine: Send {
    fn send_audio_dyn<'a>(&'a mut self, frame: &'a [i16])
        -> BoxFuture<'a, Result<(), EngineError>>;
    fn next_event_dyn(&mut self) -> BoxFuture<'_, Result<EngineEvent, EngineError>>;
    fn played_dyn(&mut self, played_ms: u64);
    fn hold_dyn(&mut self, on_hold: bool);
    fn answered_dyn(&mut self);
    fn close_dyn(&mut self) -> BoxFuture<'_, ()>;
    fn keypad_dyn<'a>(&'a mut self, digits: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
    fn function_result_dyn<'a>(
        &'a mut self,
        call_id: &'a str,
        output: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    fn analyse_dyn<'a>(&'a mut self, plan: &'a AnalysisPlan)
        -> BoxFuture<'a, Option<CallAnalysis>>;
}

impl<E: Engine> DynEngine for E {
    fn send_audio_dyn<'a>(
        &'a mut self,
        frame: &'a [i16],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.send_audio(frame))
    }
    fn next_event_dyn(&mut self) -> BoxFuture<'_, Result<EngineEvent, EngineError>> {
        Box::pin(self.next_event())
    }
    fn played_dyn(&mut self, played_ms: u64) {
        self.played(played_ms)
    }
    fn hold_dyn(&mut self, on_hold: bool) {
        self.hold(on_hold)
    }
    fn answered_dyn(&mut self) {
        self.answered()
    }
    fn close_dyn(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.close())
    }
    fn keypad_dyn<'a>(&'a mut self, digits: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.keypad(digits))
    }
    fn function_result_dyn<'a>(
        &'a mut self,
        call_id: &'a str,
        output: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.function_result(call_id, output))
    }
    fn analyse_dyn<'a>(
        &'a mut self,
        plan: &'a AnalysisPlan,
    ) -> BoxFuture<'a, Option<CallAnalysis>> {
        Box::pin(self.analyse(plan))
    }
}

/// Any engine, chosen at run time. It is itself an [`Engine`].
pub struct BoxedEngine(pub Box<dyn DynEngine>);

impl BoxedEngine {
    pub fn new<E: Engine + 'static>(e: E) -> Self {
        BoxedEngine(Box::new(e))
    }
}

impl Engine for BoxedEngine {
    async fn send_audio(&mut self, frame: &[i16]) -> Result<(), EngineError> {
        self.0.send_audio_dyn(frame).await
    }
    async fn next_event(&mut self) -> Result<EngineEvent, EngineError> {
        self.0.next_event_dyn().await
    }
    fn played(&mut self, played_ms: u64) {
        self.0.played_dyn(played_ms)
    }
    fn hold(&mut self, on_hold: bool) {
        self.0.hold_dyn(on_hold)
    }
    fn answered(&mut self) {
        self.0.answered_dyn()
    }
    async fn close(&mut self) {
        self.0.close_dyn().await
    }
    async fn keypad(&mut self, digits: &str) -> Result<(), EngineError> {
        self.0.keypad_dyn(digits).await
    }
    async fn function_result(&mut self, call_id: &str, output: &str) -> Result<(), EngineError> {
        self.0.function_result_dyn(call_id, output).await
    }
    async fn analyse(&mut self, plan: &AnalysisPlan) -> Option<CallAnalysis> {
        self.0.analyse_dyn(plan).await
    }
}
