//! The one WebSocket session driver of the cloud engines (issue 20).
//!
//! A vendor adapter is a pure [`Translator`]: it is fed the vendor's
//! messages, the callee's audio, what the callee heard and the time (in ms
//! since the call was answered), and hands back the [`EngineEvent`]s for the
//! call task and the JSON messages to send. It never touches a socket or a
//! clock, so its tests feed vendor JSON and assert the exact output.
//!
//! [`WsSession`] is the thin tokio driver around one: it connects
//! ([`ws::connect`]: guard, TLS, message bounds), runs the setup exchange
//! within the connect timeout, sends what the translator queues without
//! losing it to a dropped future ([`Outbox`]), keeps the connection alive
//! ([`Keepalive`]: ping when quiet, `Timeout` when nothing at all arrives),
//! maps socket errors, and closes. Once failed, a session stays failed.

use std::time::Duration;
use voxline_shared::analysis::{from_engine_reply, AnalysisPlan, CallAnalysis};

use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::guard::AllowedHosts;
use super::ws::{self, redact, Outbox, WsStream};
use super::{Engine, EngineError, EngineEvent};

/// One data message from the vendor's server.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What a translator does when asked for its next step.
pub trait Translator: Send {
    /// For logs: "openai realtime", "gemini live".
    const NAME: &'static str;
    /// The setup message awaited before the session counts as open (for error texts).
    const READY: &'static str;

    /// A setup-phase message: `Ok(true)` once the session is ready, an error ends it.
    fn setup_message(&mut self, msg: Incoming<'_>) -> Result<bool, EngineError>;
    /// The session is open: queue what is sent first (session settings, and
    /// the greeting unless it waits for the answer).
    fn opened(&mut self);
    /// The callee answered ([`Engine::answered`]): queue the greeting if it
    /// waited for this.
    fn answered(&mut self) {}
    /// One message in an open session, at `now_ms` since the call was answered.
    /// An error ends the session (events queued before it are still handed out).
    fn message(&mut self, msg: Incoming<'_>, now_ms: u64) -> Result<(), EngineError>;
    /// 20 ms of the callee's audio (8 kHz PCM16).
    fn audio(&mut self, frame: &[i16]);
    /// Total ms of engine audio the callee has heard ([`Engine::played`]).
    fn played(&mut self, played_ms: u64);
    /// The answer to a [`EngineEvent::FunctionCall`].
    fn function_result(&mut self, call_id: &str, output: &str);
    /// After the call: queue the request for the post-call analysis
    /// (`false`: this engine cannot give one).
    fn request_analysis(&mut self, plan: &AnalysisPlan) -> bool {
        let _ = plan;
        false
    }
    /// The engine's whole answer to [`Translator::request_analysis`], once it came.
    fn analysis_reply(&mut self) -> Option<String> {
        None
    }
    /// The callee pressed keys: `text` is [`super::dtmf_text`] of them, sent
    /// as the callee's text with a request to answer it.
    fn keypad(&mut self, text: &str);
    /// The error a close frame from the server means.
    fn close_error(&self, frame: Option<&CloseFrame>) -> EngineError;
    /// Next event for the call task.
    fn poll_event(&mut self) -> Option<EngineEvent>;
    /// Next JSON message to send.
    fn poll_transmit(&mut self) -> Option<Value>;
}

/// How long the driver waits, per vendor options.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Handshake plus the setup exchange.
    pub connect: Duration,
    /// No frame at all from the server (messages, or pongs to our pings) for this long -> `Timeout`.
    pub idle: Duration,
    /// Ping when the server has been quiet this long.
    pub ping: Duration,
}

/// Liveness of a session, in time passed in: when to wake, and what waking means.
#[derive(Debug, Clone)]
pub struct Keepalive {
    idle: Duration,
    ping: Duration,
    last_rx: Instant,
    last_ping: Instant,
}

/// What the driver does when [`Keepalive::wake_at`] is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Ping,
    TimedOut,
}

impl Keepalive {
    pub fn new(now: Instant, idle: Duration, ping: Duration) -> Self {
        Keepalive {
            idle,
            ping,
            last_rx: now,
            last_ping: now,
        }
    }

    /// A frame (any frame) arrived.
    pub fn received(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// When the driver must wake if nothing arrives.
    pub fn wake_at(&self) -> Instant {
        let deadline = self.last_rx + self.idle;
        let ping_at = self.last_rx.max(self.last_ping) + self.ping;
        deadline.min(ping_at)
    }

    /// Woken at `now` (not before [`Self::wake_at`]).
    pub fn wake(&mut self, now: Instant) -> Wake {
        if now >= self.last_rx + self.idle {
            Wake::TimedOut
        } else {
            self.last_ping = now;
            Wake::Ping
        }
    }

    fn timeout_error(&self) -> EngineError {
        EngineError::Timeout(format!(
            "no frame from the server for {} ms",
            self.idle.as_millis()
        ))
    }
}

/// Where and how to connect.
pub struct Dial<'a> {
    pub call_id: &'a str,
    pub url: &'a str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Redacted from every error text (the API key in its spellings).
    pub secrets: Vec<String>,
    pub guard: Option<&'a AllowedHosts>,
    pub timeouts: Timeouts,
}

impl<'a> Dial<'a> {
    /// Dialling `url` for `cfg`'s call under its URL guard, with `secrets`
    /// redacted from errors; no extra headers.
    pub fn new(
        cfg: &'a super::EngineConfig,
        url: &'a str,
        secrets: Vec<String>,
        timeouts: Timeouts,
    ) -> Self {
        Dial {
            call_id: &cfg.call_id,
            url,
            headers: Vec::new(),
            secrets,
            guard: cfg.url_guard.as_ref(),
            timeouts,
        }
    }
}

/// The call's engine base URL, else the vendor's `default`, without a
/// trailing slash.
pub fn base_url(cfg: &super::EngineConfig, default: &str) -> String {
    cfg.base_url
        .as_deref()
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string()
}

/// A cloud engine: one [`Translator`] driven over one WebSocket.
pub struct WsSession<T> {
    call_id: String,
    ws: WsStream,
    outbox: Outbox,
    dead: Option<EngineError>,
    secrets: Vec<String>,
    started: Instant,
    keepalive: Keepalive,
    translator: T,
}

impl<T: Translator> WsSession<T> {
    /// Connects, sends what the translator queued up front, waits for its
    /// setup message (all within `timeouts.connect`), then sends what it
    /// queues once open.
    pub async fn open(dial: Dial<'_>, mut translator: T) -> Result<Self, EngineError> {
        let secret_refs: Vec<&str> = dial.secrets.iter().map(String::as_str).collect();
        let deadline = Instant::now() + dial.timeouts.connect;
        let mut ws = ws::connect(
            dial.url,
            dial.headers,
            dial.timeouts.connect,
            &secret_refs,
            dial.guard,
        )
        .await?;
        let mut outbox = Outbox::default();
        while let Some(v) = translator.poll_transmit() {
            outbox.push(Message::text(v.to_string()));
        }
        outbox
            .flush(&mut ws)
            .await
            .map_err(|e| EngineError::Disconnected(redact(&e.to_string(), &secret_refs)))?;
        loop {
            let frame = match tokio::time::timeout_at(deadline, ws::next_frame(&mut ws)).await {
                Err(_) => {
                    return Err(EngineError::Timeout(format!(
                        "no {} within {} ms",
                        T::READY,
                        dial.timeouts.connect.as_millis()
                    )))
                }
                Ok(f) => f,
            };
            let ready = match frame {
                Some(Ok(Message::Text(t))) => translator.setup_message(Incoming::Text(t.as_str())),
                Some(Ok(Message::Binary(b))) => translator.setup_message(Incoming::Binary(&b)),
                Some(Ok(Message::Close(c))) => Err(translator.close_error(c.as_ref())),
                Some(Ok(_)) => Ok(false),
                Some(Err(e)) => Err(ws::stream_error(e, &secret_refs)),
                None => Err(EngineError::Disconnected(format!(
                    "closed before {}",
                    T::READY
                ))),
            }?;
            if ready {
                break;
            }
        }
        translator.opened();
        let now = Instant::now();
        let mut session = WsSession {
            call_id: dial.call_id.to_string(),
            ws,
            outbox,
            dead: None,
            secrets: dial.secrets,
            started: now,
            keepalive: Keepalive::new(now, dial.timeouts.idle, dial.timeouts.ping),
            translator,
        };
        if let Err(e) = session.send_queued().await {
            return Err(EngineError::Disconnected(redact(
                &e.to_string(),
                &session.secret_refs(),
            )));
        }
        tracing::info!(call_id = %session.call_id, "{} session started", T::NAME);
        Ok(session)
    }

    /// The translator (for adapters' inspection helpers).
    pub fn translator(&self) -> &T {
        &self.translator
    }

    /// Time since the session opened (the call was answered).
    pub fn elapsed_since_answer(&self) -> Duration {
        self.started.elapsed()
    }

    fn secret_refs(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fail(&mut self, e: EngineError) -> EngineError {
        if self.dead.is_none() {
            tracing::warn!(call_id = %self.call_id, code = e.code(), error = %e, "{} engine failed", T::NAME);
            self.dead = Some(e.clone());
        }
        self.dead.clone().unwrap_or(e)
    }

    /// Moves what the translator queued into the outbox and flushes it. Cancel-safe.
    async fn send_queued(&mut self) -> Result<(), tungstenite::Error> {
        while let Some(v) = self.translator.poll_transmit() {
            self.outbox.push(Message::text(v.to_string()));
        }
        if self.outbox.is_empty() {
            return Ok(());
        }
        self.outbox.flush(&mut self.ws).await
    }

    async fn send_or_fail(&mut self) -> Result<(), EngineError> {
        if let Err(e) = self.send_queued().await {
            let text = redact(&e.to_string(), &self.secret_refs());
            return Err(self.fail(EngineError::Disconnected(text)));
        }
        Ok(())
    }

    fn alive(&self) -> Result<(), EngineError> {
        match &self.dead {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// One frame from the server, or the end of the stream.
    fn on_frame(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), EngineError> {
        let now_ms = self.now_ms();
        match frame {
            None => Err(EngineError::Disconnected("connection closed".into())),
            Some(Err(e)) => Err(ws::stream_error(e, &self.secret_refs())),
            Some(Ok(Message::Close(c))) => Err(self.translator.close_error(c.as_ref())),
            Some(Ok(Message::Text(t))) => {
                self.translator.message(Incoming::Text(t.as_str()), now_ms)
            }
            Some(Ok(Message::Binary(b))) => self.translator.message(Incoming::Binary(&b), now_ms),
            Some(Ok(_)) => Ok(()), // ping/pong
        }
    }
}

impl<T: Translator> Engine for WsSession<T> {
    async fn send_audio(&mut self, frame: &[i16]) -> Result<(), EngineError> {
        self.alive()?;
        self.translator.audio(frame);
        self.send_or_fail().await
    }

    async fn next_event(&mut self) -> Result<EngineEvent, EngineError> {
        loop {
            // Events decoded before a failure are still handed out first.
            if let Some(ev) = self.translator.poll_event() {
                return Ok(ev);
            }
            self.alive()?;
            self.send_or_fail().await?;
            tokio::select! {
                biased;
                f = ws::next_frame(&mut self.ws) => {
                    self.keepalive.received(Instant::now());
                    if let Err(e) = self.on_frame(f) {
                        self.fail(e);
                    }
                }
                _ = tokio::time::sleep_until(self.keepalive.wake_at()) => {
                    match self.keepalive.wake(Instant::now()) {
                        Wake::TimedOut => {
                            let e = self.keepalive.timeout_error();
                            return Err(self.fail(e));
                        }
                        Wake::Ping => self.outbox.push(Message::Ping(Vec::new().into())),
                    }
                }
            }
        }
    }

    fn played(&mut self, played_ms: u64) {
        self.translator.played(played_ms);
    }

    /// The call's clock (transcript offsets) starts now; the greeting, if it
    /// waited, goes with the next send.
    fn answered(&mut self) {
        self.started = Instant::now();
        self.translator.answered();
    }

    async fn close(&mut self) {
        if self.dead.is_none() {
            self.dead = Some(EngineError::Disconnected("closed by us".into()));
            self.outbox.push(Message::Close(None));
            let _ =
                tokio::time::timeout(Duration::from_secs(1), self.outbox.flush(&mut self.ws)).await;
        }
        tracing::info!(call_id = %self.call_id, "{} session closed", T::NAME);
    }

    async fn function_result(&mut self, call_id: &str, output: &str) -> Result<(), EngineError> {
        self.alive()?;
        self.translator.function_result(call_id, output);
        self.send_or_fail().await
    }

    /// Asks for the analysis and reads the session until its answer, for at
    /// most [`ANALYSIS_TIMEOUT`]; what else the ended call's session still
    /// says is dropped. Any failure is `None` (logged): the edge's rules
    /// then stand in.
    async fn analyse(&mut self, plan: &AnalysisPlan) -> Option<CallAnalysis> {
        if self.alive().is_err() || !self.translator.request_analysis(plan) {
            return None;
        }
        let deadline = Instant::now() + ANALYSIS_TIMEOUT;
        loop {
            if let Some(text) = self.translator.analysis_reply() {
                let analysis = from_engine_reply(plan, &text);
                if analysis.is_none() {
                    tracing::warn!(call_id = %self.call_id, "{}: the post-call analysis was no JSON object", T::NAME);
                }
                return analysis;
            }
            while self.translator.poll_event().is_some() {}
            if let Err(e) = self.send_or_fail().await {
                tracing::warn!(call_id = %self.call_id, error = %e, "{}: no post-call analysis", T::NAME);
                return None;
            }
            tokio::select! {
                f = ws::next_frame(&mut self.ws) => {
                    self.keepalive.received(Instant::now());
                    if let Err(e) = self.on_frame(f) {
                        let e = self.fail(e);
                        tracing::warn!(call_id = %self.call_id, error = %e, "{}: no post-call analysis", T::NAME);
                        return None;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(call_id = %self.call_id, "{}: no post-call analysis within {:?}", T::NAME, ANALYSIS_TIMEOUT);
                    return None;
                }
            }
        }
    }

    async fn keypad(&mut self, digits: &str) -> Result<(), EngineError> {
        self.alive()?;
        self.translator.keypad(&super::dtmf_text(digits));
        self.send_or_fail().await
    }
}

/// How long an engine's post-call analysis is waited for.
pub const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(15);

/// The call's API key for `vendor`, or `Auth` when there is none.
pub fn api_key(cfg: &super::EngineConfig, vendor: &str) -> Result<String, EngineError> {
    cfg.api_key
        .as_ref()
        .map(|k| k.expose().to_string())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| EngineError::Auth(format!("no {vendor} API key configured")))
}

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value (upper-case hex, UTF-8 bytes).
pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_pings_when_quiet_and_times_out_when_silent() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = Keepalive::new(t0, ms(1000), ms(300));
        assert_eq!(k.wake_at(), t0 + ms(300));
        assert_eq!(k.wake(t0 + ms(300)), Wake::Ping);
        // The next ping counts from the last one; the deadline from the last frame.
        assert_eq!(k.wake_at(), t0 + ms(600));
        assert_eq!(k.wake(t0 + ms(600)), Wake::Ping);
        assert_eq!(k.wake(t0 + ms(900)), Wake::Ping);
        assert_eq!(k.wake_at(), t0 + ms(1000));
        assert_eq!(k.wake(t0 + ms(1000)), Wake::TimedOut);
        // A pong (any frame) moves both.
        k.received(t0 + ms(950));
        assert_eq!(k.wake_at(), t0 + ms(1250));
        assert_eq!(k.wake(t0 + ms(1250)), Wake::Ping);
        assert_eq!(k.wake_at(), t0 + ms(1550));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("gpt-realtime_1.0~x"), "gpt-realtime_1.0~x");
        assert_eq!(urlencode("a b/c?d=&é"), "a%20b%2Fc%3Fd%3D%26%C3%A9");
        // Every ASCII character and some multi-byte ones, against the rule
        // spelled out: unreserved as is, every other byte as `%XX`.
        let all: String = (0u8..=127).map(char::from).chain("é€😀".chars()).collect();
        let spelled: String = all
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        assert_eq!(urlencode(&all), spelled);
    }
}
