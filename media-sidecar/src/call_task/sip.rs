//! The SIP call task: the tokio driver of one call's [`Bridge`]. It places
//! the call (RTP ports, SDP offer, the trunks through [`Telephony`]'s SIP
//! socket), then loops: wait for whatever comes first — a dialog event, the
//! edge's hangup command, a frame heard from the callee, an engine event, the
//! bridge's timer — feed it to the bridge, and perform the actions it returns
//! (emit, start media and engine, move audio, hang up, finish). Every
//! decision is the bridge's; this file only does IO.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use voxline_shared::sidecar_link::{Offer, SecretText};
use voxline_shared::EndedReason;

use super::bridge::{Action, Bridge, BridgeConfig, CallEnd, DtmfVia, TransferOrder};
use super::tools::TOOL_DIGIT_MS;
use super::transfer::LegTarget;
use super::{Emitter, HangupCause};
use crate::engine::guard::AllowedHosts;
use crate::engine::{BoxedEngine, Engine, EngineConfig, EngineError, EngineEvent};
use crate::lease::driver::{now_ms, Msg};
use crate::media::{self, MediaConfig, MediaHandle, MediaSession, PayloadMap};
use crate::sip::sdp::{Negotiated, OfferConfig};
use crate::sip::udp::{CallHandle, CallSpec, Event, IncomingCall};
use crate::telephony::Telephony;

/// The driver's clock (tokio's, so paused-time tests see the same time).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// What the media task gave: a frame heard from the callee, or an event.
enum MediaInput {
    Heard(Vec<i16>),
    Event(media::MediaEvent),
    /// The media task is gone.
    Closed,
}

/// The next frame heard from the callee or media event (a key the callee
/// pressed, our keys sent), or waits forever without media.
async fn media_input(media: &mut Option<MediaHandle>) -> MediaInput {
    let Some(m) = media else {
        return std::future::pending().await;
    };
    let (frames, events) = m.receivers();
    tokio::select! {
        f = frames.recv() => f.map_or(MediaInput::Closed, MediaInput::Heard),
        Some(e) = events.recv() => MediaInput::Event(e),
    }
}

/// An engine being connected (it may take seconds: the call goes on meanwhile).
type EngineStart<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<BoxedEngine, EngineError>> + Send + 'a>,
>;

async fn engine_connected(start: &mut Option<EngineStart<'_>>) -> Result<BoxedEngine, EngineError> {
    match start {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The next event of the transfer's second leg, or waits forever without one.
async fn leg_event(leg: &mut Option<CallHandle>) -> Option<Event> {
    match leg {
        Some(c) => c.next_event().await,
        None => std::future::pending().await,
    }
}

/// The next frame heard from the transferee, or waits forever without media.
async fn leg_frame(media: &mut Option<MediaHandle>) -> Option<Vec<i16>> {
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

/// The edge's hangup command, once (a fired receiver is not polled again).
async fn command(
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Result<HangupCause, oneshot::error::RecvError> {
    match hangup {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The edge's transfer commands for this call (their sender gone: none
/// will come).
async fn transfer_order(orders: &mut mpsc::Receiver<TransferOrder>) -> TransferOrder {
    match orders.recv().await {
        Some(order) => order,
        None => std::future::pending().await,
    }
}

/// Runs one real call to its end and reports every step to the edge.
pub async fn run_sip_call(
    offer: Offer,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: oneshot::Receiver<HangupCause>,
    transfers: mpsc::Receiver<TransferOrder>,
) {
    run_dialog(offer, tel, tx, Some(hangup), transfers, Start::Place).await
}

/// Runs a call a trunk placed to us (issue 16) as an outbound one runs,
/// from the answer on: the same bridge, media, engine, events and
/// recording. `incoming` is ringing; it is answered here (200 with our SDP).
pub async fn run_inbound_call(
    offer: Offer,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: oneshot::Receiver<HangupCause>,
    transfers: mpsc::Receiver<TransferOrder>,
    incoming: IncomingCall,
) {
    run_dialog(
        offer,
        tel,
        tx,
        Some(hangup),
        transfers,
        Start::Answer(incoming),
    )
    .await
}

/// A call answered and with its media running, handed to the bridge (a
/// queue caller the offer's agent takes over, issue 16).
pub(crate) struct AnsweredCall {
    pub call: CallHandle,
    pub media: MediaHandle,
    /// What the answer settled.
    pub neg: Negotiated,
    /// The events reported so far (`answered` included).
    pub timings: voxline_shared::sidecar_link::Timings,
}

/// Runs an answered call's agent from now on (its engine starts at once),
/// to the end: as [`run_inbound_call`] after the answer. `hangup`: the
/// edge's command, unless it came already; `transfers`: its transfer
/// commands.
pub(crate) async fn run_answered_call(
    offer: Offer,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: Option<oneshot::Receiver<HangupCause>>,
    transfers: mpsc::Receiver<TransferOrder>,
    answered: AnsweredCall,
) {
    run_dialog(
        offer,
        tel,
        tx,
        hangup,
        transfers,
        Start::Answered(Box::new(answered)),
    )
    .await
}

/// How a dialog starts.
enum Start {
    /// Place the offer's call.
    Place,
    /// Answer a ringing inbound call.
    Answer(IncomingCall),
    /// Already answered, media running.
    Answered(Box<AnsweredCall>),
}

async fn run_dialog(
    offer: Offer,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: Option<oneshot::Receiver<HangupCause>>,
    transfers: mpsc::Receiver<TransferOrder>,
    start: Start,
) {
    let e = Emitter::new(&offer.call_id, tx.clone());
    let mut bridge_cfg = BridgeConfig::for_offer(&offer);
    // The dial plan in force (SIGHUP may change it).
    bridge_cfg.amd_detector.max_decision =
        Duration::from_millis(u64::from(tel.dial_plan().cfg.amd_decision_ms));
    let mut answered_neg = None;
    let (incoming, call, media, bridge) = match start {
        Start::Place => (
            None,
            None,
            None,
            Bridge::new(&offer.call_id, bridge_cfg, now(), now_ms()),
        ),
        Start::Answer(incoming) => (
            Some(incoming),
            None,
            None,
            Bridge::new(&offer.call_id, bridge_cfg, now(), now_ms()),
        ),
        Start::Answered(a) => {
            answered_neg = Some(a.neg.clone());
            let bridge = Bridge::taking_over(
                &offer.call_id,
                bridge_cfg,
                now(),
                now_ms(),
                a.timings,
                &a.neg,
            );
            (None, Some(a.call), Some(a.media), bridge)
        }
    };
    // Tool answers come back here; tasks outliving the call send into nothing.
    let (tool_tx, tool_rx) = mpsc::channel(super::customer_tools::MAX_TOOL_CALLS_PER_CALL);
    let mut io = CallIo {
        offer: &offer,
        tel: &tel,
        emitter: &e,
        link: tx.clone(),
        tool_tx,
        tool_rx,
        call,
        bound: None,
        media,
        engine: None,
        engine_start: None,
        hangup,
        transfers,
        latency: Default::default(),
        incoming,
        transferee: None,
        transferee_bound: None,
        transferee_media: None,
        neg: answered_neg,
        to_queue: None,
    };
    let end = io.run(bridge).await;
    // A blind transfer to a queue: the answered leg waits there now.
    let mut lost = None;
    let to_queue = match (
        io.to_queue.take(),
        io.call.take(),
        io.media.take(),
        io.neg.take(),
    ) {
        (Some((plan, timings)), Some(call), Some(media), Some(neg)) => Some((
            *plan,
            super::sip::AnsweredCall {
                call,
                media,
                neg,
                timings,
            },
            io.hangup.take(),
            std::mem::replace(&mut io.transfers, mpsc::channel(1).1),
        )),
        // Handed over without a dialog or media (gone meanwhile): the call
        // is lost, not left unreported.
        (Some((_, timings)), call, media, _) => {
            if let Some(call) = call {
                call.hangup(EndedReason::MediaLost).await;
            }
            if let Some(m) = media {
                m.stop().await;
            }
            lost = Some(timings);
            None
        }
        _ => None,
    };
    // The IO (its engine connection under way, if any) borrows the offer.
    drop(io);
    if let Some((plan, answered, hangup, transfers)) = to_queue {
        tracing::info!(call_id = %offer.call_id, queue_pk = plan.queue_pk, "transferred to a queue");
        // Boxed: the queue's agent overflow comes back here.
        Box::pin(super::queue_call::run_transferred_queue_call(
            offer, plan, tel, tx, hangup, transfers, answered,
        ))
        .await;
        return;
    }
    if let Some(mut timings) = lost {
        timings.ended_ms = now_ms();
        let kind = voxline_shared::sidecar_link::EventKind::Ended {
            status: voxline_shared::CallStatus::Failed,
            reason: EndedReason::MediaLost,
            sip_code: None,
            timings,
            retry_after_s: None,
        };
        report_end(&offer, &tel, &tx, &e, kind, timings.ended_ms).await;
        return;
    }
    let Some(end) = end else {
        // The sidecar is stopping: the call was hung up, the edge re-leases nothing.
        let _ = tx
            .send(Msg::CallDone {
                call_id: offer.call_id,
            })
            .await;
        return;
    };
    report_end(&offer, &tel, &tx, &e, end.event(), end.timings.ended_ms).await;
}

/// Reports a call's `ended` (`kind`, at `at_ms`), then hands its recording
/// (if any) to the uploader and says the call is done: every call task's
/// last steps. An answered call without an agent (a person's, a queue's, a
/// voicemail message: no engine heard it) is transcribed from its recording
/// first (issue 16), off the call's slot: the slot is freed at once, the
/// transcript and then the recording go to the edge when it is done.
pub(crate) async fn report_end(
    offer: &Offer,
    tel: &Telephony,
    tx: &mpsc::Sender<Msg>,
    e: &Emitter,
    kind: voxline_shared::sidecar_link::EventKind,
    at_ms: u64,
) {
    let answered = matches!(
        &kind,
        voxline_shared::sidecar_link::EventKind::Ended { timings, .. } if timings.answered_ms.is_some()
    );
    let transcribe = answered && offer.agent_id.is_empty();
    e.emit_at(kind, at_ms).await;
    let wav = recording_path(offer, tel);
    let mut upload = None;
    if let Some(wav) = wav.clone().filter(|p| p.is_file()) {
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
            Ok(Ok(u)) => {
                tracing::info!(call_id = %offer.call_id, bytes = u.manifest.bytes, duration_ms = u.manifest.duration_ms, "recording ready for upload");
                upload = Some(u);
            }
            Ok(Err(err)) => {
                tracing::warn!(call_id = %offer.call_id, error = %err, "recording not uploaded: cannot read it")
            }
            Err(err) => {
                tracing::warn!(call_id = %offer.call_id, error = %err, "recording not uploaded")
            }
        }
    }
    if transcribe {
        let (tx, offer) = (tx.clone(), offer.clone());
        let recorded = upload.as_ref().map(|u| u.path.clone());
        // Its own task: transcribing takes about the call's length of CPU.
        tokio::spawn(async move {
            let t = post_call_transcript(&offer, recorded).await;
            let spooled = match &wav {
                Some(wav) => {
                    let (wav, t2) = (wav.clone(), t.clone());
                    tokio::task::spawn_blocking(move || {
                        crate::recordings::spool_transcript(&wav, &t2)
                    })
                    .await
                    .ok()
                    .and_then(|r| {
                        r.map_err(|err| tracing::warn!(call_id = %offer.call_id, error = %err, "post-call transcript not spooled; sent from memory"))
                            .ok()
                    })
                }
                None => None,
            };
            let t = spooled.unwrap_or(crate::lease::TranscriptUpload {
                transcript: t,
                spool: None,
            });
            let _ = tx.send(Msg::Transcript(t)).await;
            // The WAV is deleted once uploaded: only after it was read.
            if let Some(u) = upload {
                let _ = tx.send(Msg::Upload(u)).await;
            }
        });
    } else if let Some(u) = upload {
        let _ = tx.send(Msg::Upload(u)).await;
    }
    let _ = tx
        .send(Msg::CallDone {
            call_id: offer.call_id.clone(),
        })
        .await;
}

/// The transcript of a call no engine heard, from its recording `wav`
/// (issue 16). No recording, no local engine in this build, or a recording
/// that cannot be read: no turns (the edge then sends its events empty).
async fn post_call_transcript(
    offer: &Offer,
    wav: Option<std::path::PathBuf>,
) -> voxline_shared::sidecar_link::CallTranscript {
    #[cfg(feature = "local-engine")]
    let (source, turns) = match wav {
        Some(wav) => {
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || crate::transcribe::transcribe_file(&wav))
                .await
            {
                Ok(Ok(turns)) => {
                    tracing::info!(call_id = %offer.call_id, turns = turns.len(), took_ms = started.elapsed().as_millis() as u64, "recording transcribed");
                    ("local", turns)
                }
                Ok(Err(err)) => {
                    tracing::warn!(call_id = %offer.call_id, code = err.code(), error = %err, "recording not transcribed");
                    ("local", Vec::new())
                }
                Err(err) => {
                    tracing::warn!(call_id = %offer.call_id, error = %err, "recording not transcribed");
                    ("local", Vec::new())
                }
            }
        }
        None => ("none", Vec::new()),
    };
    #[cfg(not(feature = "local-engine"))]
    let (source, turns) = {
        let _ = wav;
        ("none", Vec::new())
    };
    voxline_shared::sidecar_link::CallTranscript {
        protocol_version: voxline_shared::sidecar_link::PROTOCOL_VERSION,
        sidecar_id: String::new(),
        tenant_id: offer.tenant_id.clone(),
        call_id: offer.call_id.clone(),
        attempt: offer.attempt,
        source: source.into(),
        turns,
    }
}

/// One call's IO: what the bridge's actions act on.
struct CallIo<'a> {
    offer: &'a Offer,
    tel: &'a Telephony,
    emitter: &'a Emitter,
    /// The lease driver: tool calls go to the edge through it.
    link: mpsc::Sender<Msg>,
    /// Answers of the tool calls asked ([`Action::AskTool`]), by tool call id.
    tool_tx: mpsc::Sender<(String, voxline_shared::sidecar_link::ToolCallAnswer)>,
    tool_rx: mpsc::Receiver<(String, voxline_shared::sidecar_link::ToolCallAnswer)>,
    call: Option<CallHandle>,
    /// The RTP ports, bound before the offer, until the answer starts media.
    bound: Option<media::driver::BoundMedia>,
    media: Option<MediaHandle>,
    engine: Option<BoxedEngine>,
    /// The engine while it connects (from the first provisional response).
    engine_start: Option<EngineStart<'a>>,
    /// `None` once the command came (or its sender went).
    hangup: Option<oneshot::Receiver<HangupCause>>,
    /// The edge's transfer commands (issue 16).
    transfers: mpsc::Receiver<TransferOrder>,
    /// Engine timings for the metrics.
    latency: crate::metrics::CallLatency,
    /// An inbound call, ringing: answered instead of placing one.
    incoming: Option<IncomingCall>,
    /// The transfer's second leg (issue 16), its RTP ports until it
    /// answers, then its media.
    transferee: Option<CallHandle>,
    transferee_bound: Option<media::driver::BoundMedia>,
    transferee_media: Option<MediaHandle>,
    /// What the call's answer settled (a callee handed to a queue needs it).
    neg: Option<Negotiated>,
    /// The bridge handed the callee to a queue ([`Action::HandToQueue`]).
    to_queue: Option<(
        Box<voxline_shared::sidecar_link::QueuePlan>,
        voxline_shared::sidecar_link::Timings,
    )>,
}

impl CallIo<'_> {
    /// Places the call and drives the bridge to its end: how it ended, or
    /// `None` when the sidecar is stopping at once (no `ended`).
    async fn run(&mut self, mut bridge: Bridge) -> Option<CallEnd> {
        if let Some(end) = self.perform_all(&mut bridge).await {
            return end;
        }
        let placed = match self.incoming.take() {
            Some(incoming) => self.answer(incoming).await,
            // Handed over answered: nothing to place.
            None if self.call.is_some() => Ok(()),
            None => self.place().await,
        };
        if let Err(reason) = placed {
            bridge.not_placed(now(), reason);
        }
        loop {
            if let Some(end) = self.perform_all(&mut bridge).await {
                return end;
            }
            let Some(call) = self.call.as_mut() else {
                // No dialog: a call not placed, whose bridge has finished
                // above. Should one ever get here, it ends like a lost dialog.
                bridge.dialog_lost(now());
                continue;
            };
            let deadline = bridge.poll_timeout();
            tokio::select! {
                ev = call.next_event() => match ev {
                    None => bridge.dialog_lost(now()),
                    Some(Event::Failover { trunk, end }) => {
                        end.sip_code.inspect(|c| crate::metrics::global().sip_final_response(*c));
                        tracing::info!(call_id = %self.offer.call_id, trunk, detail = %end.detail, code = ?end.sip_code, "trunk failed over");
                    }
                    Some(Event::Call(ev)) => {
                        crate::metrics::global().dialog_event(&ev);
                        bridge.handle_dialog_event(now(), ev)
                    }
                },
                r = command(&mut self.hangup) => {
                    self.hangup = None;
                    bridge.hangup_command(now(), r.ok());
                }
                order = transfer_order(&mut self.transfers) => bridge.transfer_command(now(), order),
                input = media_input(&mut self.media) => match input {
                    MediaInput::Heard(pcm) => bridge.heard(now(), pcm),
                    MediaInput::Event(media::MediaEvent::Dtmf(d)) => bridge.keypad(now(), d.digit),
                    MediaInput::Event(media::MediaEvent::DtmfSent) => bridge.media_dtmf_sent(now()),
                    MediaInput::Event(_) => {}
                    MediaInput::Closed => self.media = None,
                },
                r = engine_connected(&mut self.engine_start) => {
                    self.engine_start = None;
                    match r {
                        Ok(en) => {
                            self.latency.engine_connected(crate::metrics::engine_label(&self.offer.engine), now());
                            self.engine = Some(en);
                            bridge.engine_started(now());
                        }
                        Err(err) => bridge.engine_failed(now(), &err),
                    }
                }
                ev = engine_event(&mut self.engine) => match ev {
                    Ok(ev) => bridge.handle_engine_event(now(), ev),
                    Err(err) => {
                        self.engine = None;
                        bridge.engine_failed(now(), &err);
                    }
                },
                Some((tool_call_id, answer)) = self.tool_rx.recv() => {
                    bridge.tool_answered(now(), &tool_call_id, &answer);
                }
                ev = leg_event(&mut self.transferee) => match ev {
                    Some(Event::Failover { trunk, end }) => {
                        tracing::info!(call_id = %self.offer.call_id, trunk, detail = %end.detail, code = ?end.sip_code, "transfer leg: trunk failed over");
                    }
                    Some(Event::Call(ev)) => {
                        let last = matches!(ev, crate::sip::DialogEvent::Ended(_));
                        bridge.transferee_event(now(), ev);
                        if last {
                            self.drop_transferee().await;
                        }
                    }
                    None => {
                        self.drop_transferee().await;
                        bridge.transferee_event(now(), crate::sip::DialogEvent::Ended(crate::sip::DialogEnd {
                            status: voxline_shared::CallStatus::Failed,
                            reason: EndedReason::TrunkError,
                            sip_code: None,
                            try_next_trunk: false,
                            detail: "dialog_lost".into(),
                            retry_after_s: None,
                        }));
                    }
                },
                pcm = leg_frame(&mut self.transferee_media) => match pcm {
                    Some(pcm) => bridge.transferee_heard(now(), pcm),
                    None => self.transferee_media = None,
                },
                _ = until(deadline) => bridge.handle_timeout(now()),
            }
        }
    }

    /// Binds the RTP ports: they and our SDP settings (the codecs of the
    /// dial plan in force now).
    fn bind_media(
        &self,
    ) -> Result<
        (
            media::driver::BoundMedia,
            OfferConfig,
            Arc<crate::telephony::DialPlan>,
        ),
        EndedReason,
    > {
        bind_media(self.offer, self.tel)
    }

    /// Answers a ringing inbound call (200 with our SDP answer; our BYE
    /// after the offer's `max_seconds`).
    async fn answer(&mut self, incoming: IncomingCall) -> Result<(), EndedReason> {
        let (bound, sdp, _plan) = self.bind_media()?;
        let max = Duration::from_secs(u64::from(self.offer.max_seconds));
        let call = incoming.answer(sdp, Some(max)).await.map_err(|why| {
            tracing::warn!(call_id = %self.offer.call_id, %why, "inbound call not answered");
            EndedReason::MediaLost
        })?;
        self.bound = Some(bound);
        self.call = Some(call);
        Ok(())
    }

    /// Binds the RTP ports and sends the INVITE; the reason the call fails
    /// with if either cannot be done.
    async fn place(&mut self) -> Result<(), EndedReason> {
        let (offer, tel) = (self.offer, self.tel);
        let (bound, sdp, plan) = self.bind_media()?;
        let spec = call_spec(offer, plan.trunks(), &plan.from_number, &plan.cfg, sdp);
        let call = tel.sip.start_call(spec).await.map_err(|err| {
            tracing::warn!(call_id = %offer.call_id, error = %err, "SIP driver refused the call");
            EndedReason::TrunkError
        })?;
        self.bound = Some(bound);
        self.call = Some(call);
        Ok(())
    }

    /// Dials the transfer's second leg (its own RTP ports; the call's
    /// caller ID): a number through the trunks in force, a contact URI at
    /// its address.
    async fn dial_transferee(&mut self, target: &LegTarget) -> Result<(), DialError> {
        // A person: their phone registered here most recently (the one
        // that lapses last), reached where its REGISTER came from.
        let person = match target {
            LegTarget::User { user_pk, .. } => {
                let contacts = self
                    .tel
                    .sip
                    .phone_contacts(&self.offer.tenant_id, *user_pk)
                    .await
                    .map_err(|e| DialError::Failed(e.to_string()))?;
                let newest = contacts
                    .into_iter()
                    .max_by_key(|c| c.expires_at_ms)
                    .ok_or(DialError::NoContact)?;
                Some(newest)
            }
            _ => None,
        };
        let (bound, sdp, plan) = self
            .bind_media()
            .map_err(|_| DialError::Failed("no RTP ports for the second leg".into()))?;
        let contact_trunk = |uri: &str| {
            super::transfer::contact_leg(uri)
                .ok_or_else(|| DialError::Failed(format!("cannot dial contact {uri:?}")))
        };
        let (trunks, user) = match target {
            LegTarget::Number(n) => (plan.trunks(), n.clone()),
            LegTarget::Contact(uri) => {
                let (trunk, user) = contact_trunk(uri)?;
                (vec![trunk], user)
            }
            LegTarget::User { .. } => {
                let Some(c) = &person else {
                    return Err(DialError::NoContact);
                };
                let (mut trunk, user) = contact_trunk(&c.uri)?;
                // Behind NAT the phone is reached where it registered from.
                trunk.addr = c.source;
                (vec![trunk], user)
            }
        };
        let mut spec = call_spec(self.offer, trunks, &plan.from_number, &plan.cfg, sdp);
        spec.to_user = user;
        spec.ring_timeout = super::transfer::TRANSFER_RING_TIMEOUT;
        // The callee's leg keeps the call's `max_seconds` (its end ends this one).
        spec.max_duration = None;
        let call = self
            .tel
            .sip
            .start_call(spec)
            .await
            .map_err(|e| DialError::Failed(e.to_string()))?;
        tracing::info!(call_id = %self.offer.call_id, ?target, "transfer: dialling the second leg");
        self.transferee_bound = Some(bound);
        self.transferee = Some(call);
        Ok(())
    }

    /// The second leg is over: its handle and media go.
    async fn drop_transferee(&mut self) {
        self.transferee = None;
        self.transferee_bound = None;
        if let Some(m) = self.transferee_media.take() {
            let stats = m.stop().await;
            tracing::info!(call_id = %self.offer.call_id, ?stats, "transfer leg media stopped");
        }
    }

    /// Performs the bridge's actions until none is left; `Some` once it has
    /// finished (engine closed, media stopped).
    async fn perform_all(&mut self, bridge: &mut Bridge) -> Option<Option<CallEnd>> {
        while let Some(action) = bridge.poll_action() {
            match action {
                Action::Emit { kind, at_ms } => {
                    self.emitter.emit_at(kind, at_ms).await;
                }
                Action::StartMedia(neg) => {
                    self.neg = Some(neg.clone());
                    match start_media(self.offer, self.tel, self.bound.take(), &neg) {
                        Ok(m) => {
                            self.media = Some(m);
                            bridge.media_started(now());
                        }
                        Err(why) => bridge.media_failed(now(), &why),
                    }
                }
                Action::SetMediaRemote(addr) => {
                    if let Some(m) = &self.media {
                        let _ = m.set_remote(addr, None).await;
                    }
                }
                Action::SetMediaSending(on) => {
                    if let Some(m) = &self.media {
                        let _ = m.set_sending(on).await;
                    }
                }
                Action::EngineHold(on) => {
                    if let Some(en) = self.engine.as_mut() {
                        en.hold(on);
                    }
                }
                Action::SendToMedia(pcm) => {
                    self.latency
                        .audio_sent(crate::metrics::engine_label(&self.offer.engine), now());
                    if let Some(m) = &self.media {
                        let _ = m.send(pcm).await;
                    }
                }
                Action::PlayMessage(text) => {
                    let pcm = synthesize_message(self.offer, text).await;
                    bridge.message_audio(now(), pcm);
                }
                Action::FlushMedia => {
                    if let Some(m) = &self.media {
                        m.flush();
                    }
                }
                Action::StartEngine => {
                    self.latency.engine_asked(now());
                    let (offer, tel) = (self.offer, self.tel);
                    self.engine_start =
                        Some(Box::pin(make_engine(offer, &tel.engine_allowed_hosts)));
                }
                Action::EngineAnswered => {
                    self.latency.answered(now());
                    if let Some(en) = self.engine.as_mut() {
                        en.answered();
                    }
                }
                Action::SendToEngine(pcm) => {
                    if let Some(en) = self.engine.as_mut() {
                        if let Err(err) = en.send_audio(&pcm).await {
                            self.engine = None;
                            bridge.engine_failed(now(), &err);
                        }
                    }
                }
                Action::EnginePlayed(ms) => {
                    if let Some(en) = self.engine.as_mut() {
                        en.played(ms);
                    }
                }
                Action::EngineKeypad(digits) => {
                    if let Some(en) = self.engine.as_mut() {
                        if let Err(err) = en.keypad(&digits).await {
                            self.engine = None;
                            bridge.engine_failed(now(), &err);
                        }
                    }
                }
                Action::AskTool(ask) => {
                    tracing::info!(call_id = %self.offer.call_id, tool = %ask.name, tool_call_id = %ask.tool_call_id, "tool call: asking the edge");
                    // Never awaited here: media and the engine go on meanwhile.
                    let (link, tool_tx) = (self.link.clone(), self.tool_tx.clone());
                    let (call_id, attempt) = (self.offer.call_id.clone(), self.offer.attempt);
                    tokio::spawn(async move {
                        let id = ask.tool_call_id.clone();
                        let answer =
                            super::customer_tools::ask_edge(link, call_id, attempt, ask).await;
                        let _ = tool_tx.send((id, answer)).await;
                    });
                }
                Action::FunctionResult { call_id, output } => {
                    if let Some(en) = self.engine.as_mut() {
                        if let Err(err) = en.function_result(&call_id, &output).await {
                            self.engine = None;
                            bridge.engine_failed(now(), &err);
                        }
                    }
                }
                Action::SendDtmf { digits, via } => match via {
                    DtmfVia::Rtp => {
                        let sent = match &self.media {
                            Some(m) => m
                                .send_dtmf(&digits, TOOL_DIGIT_MS)
                                .await
                                .map_err(|e| e.to_string()),
                            None => Err("no media".into()),
                        };
                        // Played: the media's `DtmfSent` says when.
                        if let Err(why) = sent {
                            bridge.dtmf_sent(now(), Err(why));
                        }
                    }
                    DtmfVia::SipInfo => match &self.call {
                        // Answered by the dialog's `KeysSent`.
                        Some(call) => call.send_dtmf_info(&digits, TOOL_DIGIT_MS).await,
                        None => bridge.dtmf_sent(now(), Err("no SIP dialog".into())),
                    },
                },
                Action::Hangup(reason) => {
                    if let Some(call) = &self.call {
                        call.hangup(reason).await;
                    }
                }
                Action::Refer { destination } => match &self.call {
                    Some(call) => call.refer(&destination).await,
                    None => bridge.transferee_failed(now(), "no SIP dialog"),
                },
                Action::DialTransferee { target } => match self.dial_transferee(&target).await {
                    Ok(()) => {}
                    Err(DialError::NoContact) => bridge.transferee_unavailable(now()),
                    Err(DialError::Failed(why)) => bridge.transferee_failed(now(), &why),
                },
                Action::PlayHold(pcm) => {
                    if let Some(m) = &self.media {
                        // One chunk; the bridge's FlushMedia cuts it.
                        let _ = m.sender().try_send(pcm);
                    }
                }
                Action::SynthesizeBriefing(text) => {
                    let pcm = synthesize_message(self.offer, text).await;
                    bridge.briefing_audio(now(), pcm);
                }
                Action::PlayToTransferee(pcm) => {
                    if let Some(m) = &self.transferee_media {
                        let _ = m.sender().try_send(pcm);
                    }
                }
                Action::StartTransfereeMedia(neg) => {
                    match start_media_unrecorded(self.transferee_bound.take(), &neg) {
                        Ok(m) => {
                            self.transferee_media = Some(m);
                            bridge.transferee_media_started(now());
                        }
                        Err(why) => bridge.transferee_media_failed(now(), &why),
                    }
                }
                Action::SetTransfereeRemote(addr) => {
                    if let Some(m) = &self.transferee_media {
                        let _ = m.set_remote(addr, None).await;
                    }
                }
                Action::SendToTransferee(pcm) => {
                    if let Some(m) = &self.transferee_media {
                        // Never waits: a leg that cannot keep up loses audio.
                        let _ = m.sender().try_send(pcm);
                    }
                }
                Action::HangupTransferee(reason) => {
                    if let Some(leg) = &self.transferee {
                        leg.hangup(reason).await;
                    }
                }
                Action::DetachEngine => {
                    self.engine_start = None;
                    if let Some(mut en) = self.engine.take() {
                        tracing::info!(call_id = %self.offer.call_id, "transferred: engine detached");
                        en.close().await;
                    }
                }
                Action::HandToQueue { plan, timings } => {
                    // The call and its media stay up: `run_dialog` hands
                    // them to the queue call.
                    self.engine_start = None;
                    self.engine = None;
                    self.drop_transferee().await;
                    self.to_queue = Some((plan, timings));
                    return Some(None);
                }
                Action::Finish(end) => {
                    // Never answered, or over before the engine was up: a
                    // connection under way is dropped, a live one closed.
                    self.engine_start = None;
                    if let Some(mut en) = self.engine.take() {
                        // An answered call whose agent asked for it: the
                        // engine's own analysis, before the end is reported.
                        let answered = end.is_some_and(|e| e.timings.answered_ms.is_some());
                        if let (true, Some(plan)) = (answered, self.offer.analysis.as_ref()) {
                            if let Some(analysis) = en.analyse(plan).await {
                                let at_ms = end.map_or(0, |e| e.timings.ended_ms);
                                self.emitter
                                    .emit_at(
                                        voxline_shared::sidecar_link::EventKind::Analysis {
                                            analysis,
                                        },
                                        at_ms,
                                    )
                                    .await;
                            }
                        }
                        en.close().await;
                    }
                    if let Some(m) = self.media.take() {
                        let stats = m.stop().await;
                        tracing::info!(call_id = %self.offer.call_id, ?stats, "media stopped");
                    }
                    // A second leg still up is hung up as its handle goes.
                    self.drop_transferee().await;
                    return Some(end);
                }
            }
        }
        None
    }
}

/// Binds a leg's RTP ports: they, our SDP settings (the codecs of the
/// dial plan in force now, the public address behind NAT) and that plan;
/// `media_lost` when no port is free.
pub(crate) fn bind_media(
    offer: &Offer,
    tel: &Telephony,
) -> Result<
    (
        media::driver::BoundMedia,
        OfferConfig,
        Arc<crate::telephony::DialPlan>,
    ),
    EndedReason,
> {
    let bound = MediaSession::bind(&tel.ports).map_err(|err| {
        tracing::warn!(call_id = %offer.call_id, error = %err, "no RTP ports: call not placed");
        EndedReason::MediaLost
    })?;
    // Behind NAT the SDP names the public address (same port: the NAT
    // maps the RTP range 1:1); RTP is symmetric, so media comes back.
    let rtp = bound.local_rtp();
    let advertised_rtp = match tel.cfg.public_ip {
        Some(ip) => std::net::SocketAddr::new(ip, rtp.port()),
        None => rtp,
    };
    // The dial plan in force now (SIGHUP swaps it); this call keeps it.
    let plan = tel.dial_plan();
    let mut sdp = OfferConfig::new(advertised_rtp);
    sdp.codecs = plan.cfg.codecs.clone();
    Ok((bound, sdp, plan))
}

/// Why a transfer's second leg was not dialled.
enum DialError {
    /// The person has no phone registered here (`user_unavailable`).
    NoContact,
    Failed(String),
}

/// `leave_message`'s text (and a warm transfer's briefing) in the offer's voice (flite, the local engine's
/// TTS, off the async threads); `None` without the local engine or when
/// flite fails (the bridge lets the agent speak then).
#[cfg(feature = "local-engine")]
pub(crate) async fn synthesize_message(offer: &Offer, text: String) -> Option<Vec<i16>> {
    use crate::engine::local::tts::{synthesize, Voice};
    let voice = offer
        .voice
        .as_deref()
        .and_then(Voice::parse)
        .unwrap_or(Voice::Kal16);
    match tokio::task::spawn_blocking(move || synthesize(&text, voice)).await {
        Ok(Ok(pcm)) => Some(pcm.to_vec()),
        Ok(Err(err)) => {
            tracing::warn!(call_id = %offer.call_id, error = %err, "flite failed on the message");
            None
        }
        Err(_) => None,
    }
}

#[cfg(not(feature = "local-engine"))]
pub(crate) async fn synthesize_message(_offer: &Offer, _text: String) -> Option<Vec<i16>> {
    None
}

/// What the SIP endpoint is asked to dial for `offer`: its number from the
/// trunks' caller ID, its caller name (if any) as the From display-name over
/// any other, the configured timers and the call's duration cap.
pub(crate) fn call_spec(
    offer: &Offer,
    trunks: Vec<crate::sip::endpoint::Trunk>,
    from_number: &str,
    cfg: &crate::config::Telephony,
    sdp: OfferConfig,
) -> CallSpec {
    // The call's own caller ID number over the trunks' (the edge sends only
    // a tenant's E.164 number; checked again, so nothing else reaches the header).
    let from_number = match offer.caller_number.as_deref() {
        Some(n) if is_e164(n) => n,
        _ => from_number,
    };
    let mut spec = CallSpec::new(trunks, &offer.phone, from_number, sdp);
    if let Some(name) = &offer.caller_name {
        // Quoted, cleaned and bounded where the header is written.
        spec.from_display = Some(name.clone());
    }
    spec.ring_timeout = Duration::from_secs(u64::from(cfg.ring_timeout_seconds));
    spec.max_duration = Some(Duration::from_secs(u64::from(offer.max_seconds)));
    spec.failover_timeout = Some(Duration::from_millis(u64::from(cfg.failover_timeout_ms)));
    spec.max_redirects = cfg.max_redirects;
    spec.redirect_allowed = cfg.redirect_allowed_addresses.clone();
    spec
}

use super::tools::is_e164;

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
    // Started while the phone rings; the bridge says when the callee answered.
    cfg.greet_on_answer = true;
    cfg.first_speaker = offer.first_speaker;
    cfg.system_prompt = offer.system_prompt.clone();
    // A cloud engine is told whom its `transfer` tool may reach (the local
    // engine's prompt is its script: it names extensions itself).
    if matches!(
        offer.engine.known(),
        Some(voxline_shared::EngineKind::OpenaiRealtime | voxline_shared::EngineKind::GeminiLive)
    ) {
        if let Some(people) = super::transfer::people_instruction(&offer.transfer_people) {
            cfg.system_prompt = Some(match cfg.system_prompt.take() {
                Some(p) => format!("{p}\n\n{people}"),
                None => people,
            });
        }
    }
    cfg.voice = offer.voice.clone();
    cfg.model = offer.model.clone();
    cfg.metadata = offer.metadata.clone();
    cfg.tools = offer.tools.clone();
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
    use voxline_shared::EngineKind;
    match offer.engine.known() {
        Some(EngineKind::Echo) => Ok(BoxedEngine::new(crate::engine::echo::EchoEngine::new())),
        #[cfg(feature = "local-engine")]
        Some(EngineKind::Local) => Ok(BoxedEngine::new(
            crate::engine::local::LocalEngine::connect(cfg).await?,
        )),
        #[cfg(not(feature = "local-engine"))]
        Some(EngineKind::Local) => Err(EngineError::Unavailable(
            "this sidecar was built without the local engine (cargo feature `local-engine`)".into(),
        )),
        Some(EngineKind::OpenaiRealtime) => {
            credentials(
                &mut cfg,
                "VOXLINE_OPENAI_API_KEY",
                "VOXLINE_OPENAI_BASE_URL",
            )?;
            Ok(BoxedEngine::new(crate::engine::openai::connect(cfg).await?))
        }
        Some(EngineKind::GeminiLive) => {
            credentials(
                &mut cfg,
                "VOXLINE_GEMINI_API_KEY",
                "VOXLINE_GEMINI_BASE_URL",
            )?;
            Ok(BoxedEngine::new(crate::engine::gemini::connect(cfg).await?))
        }
        // Refused at the offer already (`unsupported_engine`); kept for safety.
        None => Err(EngineError::Unavailable(format!(
            "engine `{}` is not supported by this sidecar",
            offer.engine
        ))),
    }
}

/// Where this attempt's recording goes, when the offer asks for one.
pub(crate) fn recording_path(offer: &Offer, tel: &Telephony) -> Option<std::path::PathBuf> {
    match (&tel.cfg.recordings_dir, offer.record) {
        (Some(dir), true) => Some(crate::recordings::wav_path(
            dir,
            &offer.call_id,
            offer.attempt,
        )),
        _ => None,
    }
}

/// A leg's media without recording (the transfer's second leg: the
/// callee's leg records both sides).
pub(crate) fn start_media_unrecorded(
    bound: Option<media::driver::BoundMedia>,
    neg: &Negotiated,
) -> Result<MediaHandle, String> {
    let bound = bound.ok_or("media already started")?;
    let payload = PayloadMap {
        audio: neg.pt,
        telephone_event: neg.dtmf_pt,
        comfort_noise: None,
    };
    let mut cfg = MediaConfig::new(neg.codec, payload, neg.remote_rtp);
    cfg.srtp = neg.srtp.as_ref().map(|s| s.keys.clone());
    bound.start(cfg).map_err(|e| e.to_string())
}

pub(crate) fn start_media(
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
    let mut cfg = MediaConfig::new(neg.codec, payload, neg.remote_rtp);
    cfg.record_path = recording_path(offer, tel);
    cfg.srtp = neg.srtp.as_ref().map(|s| s.keys.clone());
    bound.start(cfg).map_err(|e| e.to_string())
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn an_offers_caller_name_is_the_invites_from_display_name() {
        use crate::random::SeededRandom;
        use crate::sip::endpoint::{Endpoint, EndpointConfig, Trunk};
        use std::time::Instant;
        let from_with = |caller_name: Option<&str>, caller_number: Option<&str>| {
            let offer = Offer {
                caller_name: caller_name.map(str::to_string),
                caller_number: caller_number.map(str::to_string),
                ..offer_with_engine_url("wss://api.openai.com/v1/realtime")
            };
            let trunks = vec![Trunk::new("198.51.100.1:5060".parse().unwrap())];
            let sdp = OfferConfig::new("192.0.2.1:40000".parse().unwrap());
            let spec = call_spec(
                &offer,
                trunks,
                "+14155550199",
                &crate::config::Telephony::default(),
                sdp,
            );
            let now = Instant::now();
            let local = "192.0.2.1:5060".parse().unwrap();
            let mut ep = Endpoint::new(
                EndpointConfig::new(local),
                Box::new(SeededRandom::new(7)),
                now,
            );
            ep.start_call(spec, now).unwrap();
            let invite = ep.poll_transmit().expect("the INVITE");
            let invite = crate::sip::msg::parse(&invite.bytes).unwrap();
            assert_eq!(invite.method(), Some("INVITE"));
            invite.header("From").unwrap().to_string()
        };
        let from_of = |caller_name: Option<&str>| from_with(caller_name, None);
        let named = from_of(Some("Reminder"));
        assert!(
            named.starts_with("\"Reminder\" <sip:+14155550199@192.0.2.1:5060>;tag="),
            "{named}"
        );
        let plain = from_of(None);
        assert!(
            plain.starts_with("<sip:+14155550199@192.0.2.1:5060>;tag="),
            "{plain}"
        );
        // A name the edge should have refused still cannot break the header.
        let hostile = from_of(Some("A\r\nContact: <sip:x@evil>"));
        assert!(
            hostile.starts_with("\"AContact: <sip:x@evil>\" <sip:+14155550199@"),
            "{hostile}"
        );
        // The call's own caller ID number is the From user part; anything
        // but an E.164 number leaves the trunk's.
        let own = from_with(None, Some("+15559876543"));
        assert!(
            own.starts_with("<sip:+15559876543@192.0.2.1:5060>;tag="),
            "{own}"
        );
        for bad in ["+1555x", "15559876543", "+1@evil", ""] {
            let kept = from_with(None, Some(bad));
            assert!(kept.starts_with("<sip:+14155550199@"), "{bad}: {kept}");
        }
    }

    fn offer_with_engine_url(url: &str) -> Offer {
        Offer {
            tenant_id: "ten_1".into(),
            lease_id: "l_1".into(),
            call_id: "c_guard".into(),
            attempt: 1,
            phone: "+14155550100".into(),
            caller_name: None,
            caller_number: None,
            agent_id: "ag_1".into(),
            system_prompt: None,
            voice: None,
            language: "en-US".into(),
            engine: voxline_shared::EngineKind::OpenaiRealtime.into(),
            model: None,
            max_seconds: 600,
            record: false,
            metadata: None,
            engine_api_key: Some(SecretText::new("sk-tenant-SECRET-0123456789".to_string())),
            engine_base_url: Some(url.to_string()),
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
