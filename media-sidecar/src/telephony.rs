//! Real calls: SIP through the region's trunks, RTP media, and the speech
//! engine bridged between them. One task per call ([`run_sip_call`]); the SIP
//! socket and the RTP port pool are shared by all calls of the sidecar.
//!
//! The task is a single `select!` loop over: SIP events, the edge's hangup
//! command, audio heard from the callee (fed to the engine), engine events
//! (audio played to the callee, barge-in, transcript turns, end of call),
//! and the deferred hangup after the engine's last words have been played.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use voxline_shared::protocol::{EventKind, Offer, SecretText, Timings};
use voxline_shared::{CallStatus, EndedReason};

use crate::calls::{Emitter, HangupCause, SHUTDOWN_REASON};
use crate::config;
use crate::engine::guard::AllowedHosts;
use crate::engine::{BoxedEngine, Engine, EngineConfig, EngineError, EngineEvent};
use crate::lease::driver::{now_ms, Msg};
use crate::media::{self, MediaConfig, MediaHandle, MediaSession, PayloadMap, PortAllocator};
use crate::sip::auth::Credentials;
use crate::sip::sdp::{Codec as SdpCodec, Negotiated, OfferConfig};
use crate::sip::udp::{CallSpec, Event, SipUdp, Trunk};
use crate::sip::CallEvent;

/// What every call of this sidecar shares.
pub struct Telephony {
    sip: SipUdp,
    ports: Arc<PortAllocator>,
    trunks: Vec<Trunk>,
    from_number: String,
    cfg: config::Telephony,
    /// The operator's exceptions to the guard on tenants' engine URLs.
    engine_allowed_hosts: AllowedHosts,
}

impl std::fmt::Debug for Telephony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Telephony(sip {}, {} trunks)",
            self.sip.local_addr(),
            self.trunks.len()
        )
    }
}

impl Telephony {
    /// Binds the SIP socket and resolves the trunks (in priority order).
    /// `engine_allowed_hosts`: `[engine] allowed_hosts` from the config.
    pub async fn start(
        cfg: &config::Telephony,
        engine_allowed_hosts: AllowedHosts,
    ) -> Result<Telephony, String> {
        let first = cfg
            .trunks
            .first()
            .ok_or("no [[telephony.trunks]] configured")?;
        let mut trunks = Vec::new();
        for t in &cfg.trunks {
            let addr = tokio::net::lookup_host((t.host.as_str(), t.port))
                .await
                .map_err(|e| format!("trunk `{}`: cannot resolve {}: {e}", t.name, t.host))?
                .next()
                .ok_or_else(|| format!("trunk `{}`: {} has no address", t.name, t.host))?;
            let credentials = match (&t.username, &t.password) {
                (Some(u), Some(p)) => Some(Credentials {
                    username: u.clone(),
                    password: String::from_utf8_lossy(p.expose()).into_owned(),
                    realm: t.realm.clone(),
                }),
                _ => None,
            };
            trunks.push(Trunk {
                addr,
                domain: Some(t.host.clone()),
                credentials,
            });
        }
        let sip = SipUdp::bind(SocketAddr::new(cfg.bind_ip, cfg.sip_port))
            .await
            .map_err(|e| format!("cannot bind SIP on {}:{}: {e}", cfg.bind_ip, cfg.sip_port))?;
        let ports = PortAllocator::new(cfg.bind_ip, cfg.rtp_port_min..=cfg.rtp_port_max);
        tracing::info!(sip = %sip.local_addr(), trunks = trunks.len(), "telephony ready");
        Ok(Telephony {
            sip,
            ports,
            trunks,
            from_number: first.from_number.clone(),
            cfg: cfg.clone(),
            engine_allowed_hosts,
        })
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.sip.local_addr()
    }
}

fn sdp_codec(c: config::CodecName) -> SdpCodec {
    match c {
        config::CodecName::Pcmu => SdpCodec::Pcmu,
        config::CodecName::Pcma => SdpCodec::Pcma,
        config::CodecName::Opus => SdpCodec::Opus,
    }
}

fn media_codec(c: SdpCodec) -> media::Codec {
    match c {
        SdpCodec::Pcmu => media::Codec::Pcmu,
        SdpCodec::Pcma => media::Codec::Pcma,
        SdpCodec::Opus => media::Codec::Opus,
    }
}

/// Which key goes to which endpoint. A key travels only with its own URL:
/// the offer's pair (the call's or its agent's, as the edge chose) when it
/// names either, else the operator's pair from the environment. A tenant's
/// URL without a key gets no key at all: the operator's key is never sent to
/// an endpoint the operator did not configure.
fn engine_credentials(
    offer_key: Option<SecretText>,
    offer_url: Option<String>,
    operator_key: Option<SecretText>,
    operator_url: Option<String>,
) -> (Option<SecretText>, Option<String>) {
    if offer_key.is_some() || offer_url.is_some() {
        (offer_key, offer_url)
    } else {
        (operator_key, operator_url)
    }
}

/// The engine the offer asks for: keys and base URLs from the offer (the
/// call's or agent's) or from the sidecar's environment (never logged).
/// A base URL from the offer is a tenant's: its host must resolve to public
/// addresses only, or be one the operator allows (`allowed_hosts`).
async fn make_engine(
    offer: &Offer,
    allowed_hosts: &AllowedHosts,
) -> Result<BoxedEngine, EngineError> {
    let mut cfg = EngineConfig::new(offer.call_id.clone(), offer.language.clone());
    cfg.system_prompt = offer.system_prompt.clone();
    cfg.voice = offer.voice.clone();
    cfg.model = offer.model.clone();
    cfg.metadata = offer.metadata.clone();
    // The call's key and endpoint (its own or its agent's) win over the
    // sidecar's environment; a key the edge could not open is an auth failure.
    let credentials =
        |cfg: &mut EngineConfig, key_var: &str, url_var: &str| -> Result<(), EngineError> {
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            if offer.engine_key_unavailable {
                return Err(EngineError::Auth(
                    "the call's engine API key could not be unsealed at the edge".into(),
                ));
            }
            (cfg.api_key, cfg.base_url) = engine_credentials(
                offer.engine_api_key.clone(),
                offer.engine_base_url.clone(),
                env(key_var).map(SecretText::new),
                env(url_var),
            );
            // The offer's URL, when it names one, is the one used (see engine_credentials).
            cfg.url_guard = offer
                .engine_base_url
                .as_ref()
                .map(|_| allowed_hosts.clone());
            Ok(())
        };
    match offer.engine.as_str() {
        "echo" => Ok(BoxedEngine::new(crate::engine::echo::EchoEngine::new())),
        #[cfg(feature = "local-engine")]
        "local" => Ok(BoxedEngine::new(
            crate::engine::local::LocalEngine::connect(cfg).await?,
        )),
        #[cfg(not(feature = "local-engine"))]
        "local" => Err(EngineError::Unavailable(
            "this sidecar was built without the local engine (cargo feature `local-engine`)".into(),
        )),
        "openai_realtime" => {
            credentials(
                &mut cfg,
                "VOXLINE_OPENAI_API_KEY",
                "VOXLINE_OPENAI_BASE_URL",
            )?;
            Ok(BoxedEngine::new(crate::engine::openai::connect(cfg).await?))
        }
        "gemini_live" => {
            credentials(
                &mut cfg,
                "VOXLINE_GEMINI_API_KEY",
                "VOXLINE_GEMINI_BASE_URL",
            )?;
            Ok(BoxedEngine::new(crate::engine::gemini::connect(cfg).await?))
        }
        other => Err(EngineError::Unavailable(format!(
            "engine `{other}` is not supported by this sidecar"
        ))),
    }
}

/// How much engine audio the callee has heard: audio is played in order at
/// real time from when it is queued, and a barge-in drops what was not heard.
#[derive(Debug, Clone, Copy)]
struct PlayoutClock {
    /// Audio fully played before the current backlog.
    heard_ms: u64,
    backlog_start: Instant,
    backlog_ms: u64,
}

impl PlayoutClock {
    fn new(now: Instant) -> Self {
        PlayoutClock {
            heard_ms: 0,
            backlog_start: now,
            backlog_ms: 0,
        }
    }

    fn heard(&self, now: Instant) -> u64 {
        let into = now
            .saturating_duration_since(self.backlog_start)
            .as_millis() as u64;
        self.heard_ms + into.min(self.backlog_ms)
    }

    fn enqueue(&mut self, now: Instant, ms: u64) {
        if now >= self.done_at() {
            self.heard_ms += self.backlog_ms;
            self.backlog_start = now;
            self.backlog_ms = 0;
        }
        self.backlog_ms += ms;
    }

    /// Barge-in: what was not heard is dropped.
    fn interrupt(&mut self, now: Instant) {
        self.heard_ms = self.heard(now);
        self.backlog_start = now;
        self.backlog_ms = 0;
    }

    fn done_at(&self) -> Instant {
        self.backlog_start + Duration::from_millis(self.backlog_ms)
    }
}

/// Hangs up a call nobody speaks in (`silence_timeout`). Speech is audio
/// above a speech level, the callee's as heard and the engine's until it has
/// played out (silent frames, e.g. the echo engine's, do not count), and any
/// transcript or barge-in from the engine.
#[derive(Debug, Clone, Copy)]
struct SilenceWatch {
    timeout: Duration,
    last_activity: Instant,
}

/// RMS of a 20 ms frame above which the callee counts as speaking (about
/// -38 dBFS: above line noise and comfort noise, below quiet speech).
const SPEECH_RMS: f64 = 400.0;

/// The default when the offer names none (the edge always does).
const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

impl SilenceWatch {
    fn new(now: Instant, timeout: Duration) -> Self {
        SilenceWatch {
            timeout,
            last_activity: now,
        }
    }

    fn is_speech(pcm: &[i16]) -> bool {
        let energy: f64 = pcm
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / pcm.len().max(1) as f64;
        energy.sqrt() > SPEECH_RMS
    }

    /// A frame heard from the callee now.
    fn heard(&mut self, now: Instant, pcm: &[i16]) {
        if Self::is_speech(pcm) {
            self.activity(now);
        }
    }

    /// Engine audio queued now that finishes playing at `plays_until`.
    fn engine_audio(&mut self, pcm: &[i16], plays_until: Instant) {
        if Self::is_speech(pcm) {
            self.activity(plays_until);
        }
    }

    fn activity(&mut self, at: Instant) {
        self.last_activity = self.last_activity.max(at);
    }

    fn deadline(&self) -> Instant {
        self.last_activity + self.timeout
    }
}

/// Receives one frame heard from the callee, or waits forever without media.
async fn heard(media: &mut Option<MediaHandle>) -> Option<Vec<i16>> {
    match media {
        Some(m) => m.recv().await,
        None => std::future::pending().await,
    }
}

async fn engine_event(engine: &mut Option<BoxedEngine>) -> Result<EngineEvent, EngineError> {
    match engine {
        Some(e) => e.next_event().await,
        None => std::future::pending().await,
    }
}

async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs one real call to its end and reports every step to the edge.
pub async fn run_sip_call(
    offer: Offer,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    mut hangup: oneshot::Receiver<HangupCause>,
) {
    let e = Emitter::new(&offer.call_id, tx.clone());
    let dispatched_ms = e.emit(EventKind::Dialing).await;
    let mut t = Timings {
        dispatched_ms,
        ringing_ms: None,
        answered_ms: None,
        ended_ms: 0,
    };
    let (status, reason, sip_code) = match place(&offer, &tel, &e, &mut t, &mut hangup).await {
        Some(end) => end,
        None => {
            // The sidecar is stopping: the call was hung up, the edge re-leases nothing.
            let _ = tx
                .send(Msg::CallDone {
                    call_id: offer.call_id,
                })
                .await;
            return;
        }
    };
    t.ended_ms = now_ms();
    e.emit_at(
        EventKind::Ended {
            status,
            reason,
            sip_code,
            timings: t,
        },
        t.ended_ms,
    )
    .await;
    if let Some(wav) = recording_path(&offer, &tel).filter(|p| p.is_file()) {
        // After `ended`: the call's outcome never waits for the upload.
        let (tenant, call, attempt) = (
            offer.tenant_id.clone(),
            offer.call_id.clone(),
            offer.attempt,
        );
        let prepared = tokio::task::spawn_blocking(move || {
            crate::recordings::prepare(&wav, &tenant, &call, attempt)
        })
        .await;
        match prepared {
            Ok(Ok(upload)) => {
                tracing::info!(call_id = %offer.call_id, bytes = upload.manifest.bytes, duration_ms = upload.manifest.duration_ms, "recording ready for upload");
                let _ = tx.send(Msg::Upload(upload)).await;
            }
            Ok(Err(err)) => {
                tracing::warn!(call_id = %offer.call_id, error = %err, "recording not uploaded: cannot read it")
            }
            Err(err) => {
                tracing::warn!(call_id = %offer.call_id, error = %err, "recording not uploaded")
            }
        }
    }
    let _ = tx
        .send(Msg::CallDone {
            call_id: offer.call_id,
        })
        .await;
}

type End = (CallStatus, EndedReason, Option<u16>);

async fn place(
    offer: &Offer,
    tel: &Telephony,
    e: &Emitter,
    t: &mut Timings,
    hangup: &mut oneshot::Receiver<HangupCause>,
) -> Option<End> {
    let bound = match MediaSession::bind(&tel.ports) {
        Ok(b) => b,
        Err(err) => {
            tracing::warn!(call_id = %offer.call_id, error = %err, "no RTP ports: call not placed");
            return Some((CallStatus::Failed, EndedReason::MediaLost, None));
        }
    };
    let mut sdp = OfferConfig::new(bound.local_rtp());
    sdp.codecs = tel.cfg.codecs.iter().map(|&c| sdp_codec(c)).collect();
    let mut spec = CallSpec::new(tel.trunks.clone(), &offer.phone, &tel.from_number, sdp);
    spec.ring_timeout = Duration::from_secs(u64::from(tel.cfg.ring_timeout_secs));
    spec.max_duration = Some(Duration::from_secs(u64::from(offer.max_seconds)));
    spec.failover_timeout = Some(Duration::from_millis(u64::from(
        tel.cfg.failover_timeout_ms,
    )));
    let mut call = match tel.sip.start_call(spec).await {
        Ok(c) => c,
        Err(err) => {
            tracing::warn!(call_id = %offer.call_id, error = %err, "SIP driver refused the call");
            return Some((CallStatus::Failed, EndedReason::TrunkError, None));
        }
    };
    let mut bound = Some(bound);
    let mut media: Option<MediaHandle> = None;
    let mut engine: Option<BoxedEngine> = None;
    let mut playout = PlayoutClock::new(Instant::now());
    let mut hangup_at: Option<Instant> = None;
    let mut hangup_sent: Option<EndedReason> = None;
    // Armed at the answer.
    let mut silence: Option<SilenceWatch> = None;
    let silence_timeout = offer
        .silence_timeout_secs
        .map_or(DEFAULT_SILENCE_TIMEOUT, |s| {
            Duration::from_secs(u64::from(s))
        });
    let mut stopping = false;
    let mut shutdown = false;

    let end = loop {
        let silence_deadline = silence.map(|w| w.deadline());
        tokio::select! {
            ev = call.next_event() => match ev {
                None => break (CallStatus::Failed, EndedReason::TrunkError, None),
                Some(Event::Failover { trunk, outcome }) => {
                    tracing::info!(call_id = %offer.call_id, trunk, detail = %outcome.detail, code = ?outcome.sip_code, "trunk failed over");
                }
                Some(Event::Call(CallEvent::Ringing { .. })) => {
                    if t.ringing_ms.is_none() {
                        t.ringing_ms = Some(e.emit(EventKind::Ringing).await);
                    }
                }
                Some(Event::Call(CallEvent::EarlyMedia(_))) => {}
                Some(Event::Call(CallEvent::Answered(neg))) => {
                    t.answered_ms = Some(e.emit(EventKind::Answered).await);
                    silence = Some(SilenceWatch::new(Instant::now(), silence_timeout));
                    tracing::info!(call_id = %offer.call_id, codec = neg.codec.encoding_name(), pt = neg.pt, remote = %neg.remote_rtp, "answered; media negotiated");
                    match start_media(offer, tel, bound.take(), &neg) {
                        Ok(m) => media = Some(m),
                        Err(why) => {
                            tracing::warn!(call_id = %offer.call_id, %why, "media did not start; hanging up");
                            call.hangup(EndedReason::MediaLost).await;
                            hangup_sent = Some(EndedReason::MediaLost);
                            continue;
                        }
                    }
                    match make_engine(offer, &tel.engine_allowed_hosts).await {
                        Ok(en) => engine = Some(en),
                        Err(err) => {
                            // Never leave the callee in dead air: end at once.
                            tracing::warn!(call_id = %offer.call_id, code = err.code(), error = %err, "engine failed to start; hanging up");
                            call.hangup(EndedReason::EngineError).await;
                            hangup_sent = Some(EndedReason::EngineError);
                        }
                    }
                }
                Some(Event::Call(CallEvent::MediaUpdated(neg))) => {
                    if let Some(m) = &media {
                        let _ = m.set_remote(neg.remote_rtp, None).await;
                    }
                }
                Some(Event::Call(CallEvent::Ended(outcome))) => {
                    // `detail` says why (e.g. `auth_realm_mismatch`, `bye_timeout`).
                    tracing::info!(call_id = %offer.call_id, detail = %outcome.detail, code = ?outcome.sip_code, "SIP call ended");
                    // A hangup we asked for keeps our reason; otherwise the SIP outcome's.
                    let reason = match (hangup_sent, outcome.status) {
                        (Some(r), _) => r,
                        (None, _) => outcome.reason,
                    };
                    let status = match (hangup_sent, outcome.status) {
                        (Some(EndedReason::EngineError | EndedReason::MediaLost), CallStatus::Completed) => CallStatus::Failed,
                        // Cut short by the sidecar's shutdown, even before the answer.
                        _ if shutdown => CallStatus::Failed,
                        (_, s) => s,
                    };
                    break (status, reason, outcome.sip_code);
                }
            },
            r = &mut *hangup, if hangup_sent.is_none() && !stopping => {
                let reason = match r {
                    Ok(HangupCause::Requested) => EndedReason::HangupRequested,
                    Ok(HangupCause::Shutdown) => {
                        tracing::warn!(call_id = %offer.call_id, "the sidecar is shutting down; hanging up");
                        shutdown = true;
                        SHUTDOWN_REASON
                    }
                    Err(_) => {
                        stopping = true;
                        EndedReason::HangupRequested
                    }
                };
                call.hangup(reason).await;
                hangup_sent = Some(reason);
            }
            frame = heard(&mut media) => match frame {
                Some(pcm) => {
                    if let Some(w) = silence.as_mut() {
                        w.heard(Instant::now(), &pcm);
                    }
                    if let Some(en) = engine.as_mut() {
                        en.played(playout.heard(Instant::now()));
                        if let Err(err) = en.send_audio(&pcm).await {
                            tracing::warn!(call_id = %offer.call_id, code = err.code(), error = %err, "engine failed; hanging up");
                            engine = None;
                            if hangup_sent.is_none() {
                                call.hangup(EndedReason::EngineError).await;
                                hangup_sent = Some(EndedReason::EngineError);
                            }
                        }
                    }
                }
                None => media = None,
            },
            ev = engine_event(&mut engine) => match ev {
                Ok(EngineEvent::Audio(pcm)) => {
                    playout.enqueue(Instant::now(), pcm.len() as u64 / 8);
                    if let Some(w) = silence.as_mut() {
                        w.engine_audio(&pcm, playout.done_at());
                    }
                    if let Some(m) = &media {
                        let _ = m.send(pcm).await;
                    }
                }
                Ok(EngineEvent::Interrupt) => {
                    let now = Instant::now();
                    if let Some(w) = silence.as_mut() {
                        w.activity(now);
                    }
                    // Tell the engine what was really heard (it truncates its turn there).
                    if let Some(en) = engine.as_mut() {
                        en.played(playout.heard(now));
                    }
                    playout.interrupt(now);
                    if let Some(m) = &media {
                        m.flush();
                    }
                }
                Ok(EngineEvent::Transcript { role, text, start_ms, end_ms }) => {
                    if let Some(w) = silence.as_mut() {
                        w.activity(Instant::now());
                    }
                    e.emit(EventKind::TranscriptTurn { role, text, start_ms, end_ms }).await;
                }
                Ok(EngineEvent::EndCall { reason }) => {
                    tracing::info!(call_id = %offer.call_id, %reason, "engine ends the call");
                    hangup_at = Some(playout.done_at().max(Instant::now()) + Duration::from_millis(300));
                }
                Ok(EngineEvent::FunctionCall { name, .. }) => {
                    tracing::info!(call_id = %offer.call_id, %name, "engine function call (not handled)");
                }
                Ok(EngineEvent::Summary { summary, outcome }) => {
                    e.emit(EventKind::Summary { summary, outcome }).await;
                }
                Err(err) => {
                    tracing::warn!(call_id = %offer.call_id, code = err.code(), error = %err, "engine failed; hanging up");
                    engine = None;
                    if hangup_sent.is_none() {
                        call.hangup(EndedReason::EngineError).await;
                        hangup_sent = Some(EndedReason::EngineError);
                    }
                }
            },
            _ = until(hangup_at), if hangup_sent.is_none() => {
                call.hangup(EndedReason::AgentHangup).await;
                hangup_sent = Some(EndedReason::AgentHangup);
            }
            _ = until(silence_deadline), if hangup_sent.is_none() => {
                tracing::info!(call_id = %offer.call_id, timeout_s = silence_timeout.as_secs(), "nobody spoke; hanging up");
                call.hangup(EndedReason::SilenceTimeout).await;
                hangup_sent = Some(EndedReason::SilenceTimeout);
            }
        }
    };
    if let Some(mut en) = engine.take() {
        en.close().await;
    }
    if let Some(m) = media.take() {
        let stats = m.stop().await;
        tracing::info!(call_id = %offer.call_id, ?stats, "media stopped");
    }
    if stopping {
        return None;
    }
    Some(end)
}

/// Where this attempt's recording goes, when the offer asks for one.
fn recording_path(offer: &Offer, tel: &Telephony) -> Option<std::path::PathBuf> {
    match (&tel.cfg.recordings_dir, offer.record) {
        (Some(dir), true) => Some(crate::recordings::wav_path(
            dir,
            &offer.call_id,
            offer.attempt,
        )),
        _ => None,
    }
}

fn start_media(
    offer: &Offer,
    tel: &Telephony,
    bound: Option<media::driver::BoundMedia>,
    neg: &Negotiated,
) -> Result<MediaHandle, String> {
    let bound = bound.ok_or("media already started")?;
    let payload = PayloadMap {
        audio: neg.pt,
        telephone_event: neg.dtmf_pt,
        comfort_noise: None,
    };
    let mut cfg = MediaConfig::new(media_codec(neg.codec), payload, neg.remote_rtp);
    cfg.record_path = recording_path(offer, tel);
    bound.start(cfg).map_err(|e| e.to_string())
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    fn offer_with_engine_url(url: &str) -> Offer {
        Offer {
            tenant_id: "ten_1".into(),
            lease_id: "l_1".into(),
            call_id: "c_guard".into(),
            attempt: 1,
            phone: "+14155550100".into(),
            agent_id: "ag_1".into(),
            system_prompt: None,
            voice: None,
            language: "en-US".into(),
            engine: "openai_realtime".into(),
            model: None,
            max_seconds: 600,
            record: false,
            metadata: None,
            engine_api_key: Some(SecretText::new("sk-tenant-SECRET-0123456789".to_string())),
            engine_base_url: Some(url.to_string()),
            engine_key_unavailable: false,
            silence_timeout_secs: None,
            ack_deadline_ms: 0,
        }
    }

    /// Whether a TCP connection reached `l` (the connect has returned, so
    /// the kernel has queued it already).
    fn was_reached(l: &tokio::net::TcpListener) -> bool {
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        matches!(l.poll_accept(&mut cx), Poll::Ready(Ok(_)))
    }

    #[tokio::test]
    async fn a_tenant_engine_url_to_a_private_address_is_refused_before_any_connection() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", l.local_addr().unwrap());
        let offer = offer_with_engine_url(&url);
        let err = make_engine(&offer, &AllowedHosts::default())
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), "refused", "{err}");
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(!was_reached(&l), "a refused engine URL was connected to");

        // The operator allows it: the sidecar connects (and this fake hangs up).
        let allowed = AllowedHosts::parse(&["127.0.0.1"]).unwrap();
        let accept = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            drop(tcp);
        });
        let err = make_engine(&offer, &allowed)
            .await
            .err()
            .expect("no engine there");
        assert_ne!(err.code(), "refused", "{err}");
        tokio::time::timeout(Duration::from_secs(5), accept)
            .await
            .expect("connected in time")
            .unwrap();
    }

    #[test]
    fn a_key_only_ever_travels_with_its_own_endpoint() {
        let key = |k: &str| Some(SecretText::new(k.to_string()));
        let shown =
            |(k, u): (Option<SecretText>, Option<String>)| (k.map(|k| k.expose().to_string()), u);
        let op = || {
            (
                key("sk-operator"),
                Some("wss://operator.example".to_string()),
            )
        };
        // A tenant's URL alone: no key, least of all the operator's.
        let (ok, ou) = op();
        assert_eq!(
            shown(engine_credentials(
                None,
                Some("wss://attacker.example".into()),
                ok,
                ou
            )),
            (None, Some("wss://attacker.example".into()))
        );
        // A tenant's key alone: the vendor's own endpoint, not the operator's URL.
        let (ok, ou) = op();
        assert_eq!(
            shown(engine_credentials(key("sk-tenant"), None, ok, ou)),
            (Some("sk-tenant".into()), None)
        );
        // Neither: the operator's pair.
        let (ok, ou) = op();
        assert_eq!(
            shown(engine_credentials(None, None, ok, ou)),
            (
                Some("sk-operator".into()),
                Some("wss://operator.example".into())
            )
        );
        // Both: the tenant's pair.
        let (ok, ou) = op();
        assert_eq!(
            shown(engine_credentials(
                key("sk-t"),
                Some("wss://t.example".into()),
                ok,
                ou
            )),
            (Some("sk-t".into()), Some("wss://t.example".into()))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_counted_from_the_last_speech_or_the_end_of_playback() {
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        let speech = [3_000i16, -3_000].repeat(80);
        let mut w = SilenceWatch::new(t0, Duration::from_secs(10));
        assert_eq!(w.deadline(), t0 + ms(10_000));
        // Line noise does not count; a spoken frame does.
        w.heard(t0 + ms(2_000), &[100i16; 160]);
        assert_eq!(w.deadline(), t0 + ms(10_000));
        w.heard(t0 + ms(3_000), &speech);
        assert_eq!(w.deadline(), t0 + ms(13_000));
        // The engine's speech counts until it has played; its silence never.
        w.engine_audio(&[0i16; 160], t0 + ms(9_000));
        assert_eq!(w.deadline(), t0 + ms(13_000));
        w.engine_audio(&speech, t0 + ms(8_000));
        assert_eq!(w.deadline(), t0 + ms(18_000));
        // Never backwards.
        w.heard(t0 + ms(5_000), &speech);
        assert_eq!(w.deadline(), t0 + ms(18_000));
        w.activity(t0 + ms(20_000));
        assert_eq!(w.deadline(), t0 + ms(30_000));
    }

    #[test]
    fn playout_clock_counts_only_audio_heard() {
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        let mut c = PlayoutClock::new(t0);
        c.enqueue(t0, 1_000);
        c.enqueue(t0 + ms(100), 500); // queued behind the first second
        assert_eq!(c.heard(t0 + ms(400)), 400);
        assert_eq!(c.done_at(), t0 + ms(1_500));
        c.interrupt(t0 + ms(600)); // barge-in: 900 ms never heard
        assert_eq!(c.heard(t0 + ms(5_000)), 600);
        c.enqueue(t0 + ms(5_000), 200); // silence in between does not count
        assert_eq!(c.heard(t0 + ms(5_100)), 700);
        assert_eq!(c.heard(t0 + ms(9_000)), 800);
        c.enqueue(t0 + ms(9_000), 100);
        assert_eq!(c.heard(t0 + ms(9_050)), 850);
    }
}
