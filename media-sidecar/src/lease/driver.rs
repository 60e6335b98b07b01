//! The thin tokio driver around [`LeaseClient`]: it signs and sends what the
//! core asks for (each request its own task, bounded by the request's timeout),
//! feeds replies and call events back, runs one task per call, and sleeps until
//! the core's next deadline.
//!
//! Stopping: [`Stop::Drain`] (first SIGINT/SIGTERM) stops taking work and waits
//! up to `drain_timeout` for held calls to end and their events to be delivered.
//! Calls still live then are hung up ([`HangupCause::Shutdown`]: BYE, or CANCEL
//! before the answer) and end `failed` / [`crate::call_task::SHUTDOWN_REASON`]; the
//! sidecar waits up to `hangup_grace` more for the SIP requests to go out and
//! the `ended` events to be delivered. An `ended` not delivered by then stays
//! in the event spool for the next run; a call whose task has not reported
//! its end by then is ended by the driver. [`Stop::Now`] (second signal)
//! exits at once; calls still held then are failed by the edge once it stops
//! hearing from this sidecar.
//!
//! Texts: [`Action::SendMessage`] runs as its own task through the
//! telephony's SIP endpoint (no trunk: it fails `no_trunk` at once) and
//! comes back as [`Msg::MessageDone`]; texts the trunks send us are read from
//! [`crate::telephony::Telephony::take_inbound`], forwarded by the core, and
//! the edge's answer goes back to the SIP side by the text's token.
//!
//! Restarts: uploads left in the recording spool are resumed, and events left
//! unacknowledged in the event spool ([`crate::event_spool`]) are loaded into
//! the core before it first registers (their calls are held again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use voxline_shared::sidecar_link::{EventKind, InboundDecision};
use voxline_shared::signing::{signed_headers, Target};

use crate::call_task::{run_call, CallMode, HangupCause, SHUTDOWN_REASON};
use crate::config::Secret;
use crate::lease::{
    Action, LeaseClient, LeaseSettings, LinkRefusal, MessageReport, Notice, Reply, Request,
    RequestId, Transmit,
};
use crate::sip::udp::{InboundRequest, IncomingCall, PhoneRegisterRequest};
use crate::transport::Transport;
use voxline_shared::sidecar_link::HEADER_RECORDING_MANIFEST;

/// Wall-clock unix milliseconds (the core's `now`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Messages into the driver loop.
#[derive(Debug)]
pub enum Msg {
    Reply {
        id: RequestId,
        reply: Reply,
    },
    Event {
        call_id: String,
        at_ms: u64,
        kind: EventKind,
    },
    CallDone {
        call_id: String,
    },
    /// A call's finished recording, to upload.
    Upload(crate::lease::Upload),
    /// A call's transcript made from its recording (issue 16), to send.
    Transcript(crate::lease::TranscriptUpload),
    /// How a text handed out by [`Action::SendMessage`] ended.
    MessageDone {
        message_id: String,
        report: MessageReport,
    },
    /// A call task asks the edge to call a customer tool (issue 18); the
    /// answer comes back on `answer`.
    ToolCall {
        call: voxline_shared::sidecar_link::ToolCall,
        answer: oneshot::Sender<voxline_shared::sidecar_link::ToolCallAnswer>,
    },
}

/// What the owner of the sidecar asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Run,
    Drain,
    Now,
}

/// See [`RunOptions::hangup_grace`]: a trunk answers a BYE or CANCEL within
/// a round trip; the edge takes an event batch within one more.
pub const DEFAULT_HANGUP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: CallMode,
    pub drain_timeout: Duration,
    /// After the drain timeout: how long the calls still live get to hang
    /// up (BYE/CANCEL answered) and their `ended` events to be delivered.
    pub hangup_grace: Duration,
    /// The recording spool: uploads a previous run left there are resumed.
    pub recordings_dir: Option<std::path::PathBuf>,
    /// The event spool (see [`crate::event_spool`]): every unacknowledged
    /// event is kept there, and a previous run's are sent first. `None`:
    /// events live in memory only.
    pub events_dir: Option<std::path::PathBuf>,
    /// A new capacity (SIGHUP reload): offered from the next lease poll on;
    /// calls held beyond it keep going.
    pub capacity_updates: Option<watch::Receiver<u32>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: CallMode::Placeholder,
            drain_timeout: Duration::from_secs(30),
            hangup_grace: DEFAULT_HANGUP_GRACE,
            recordings_dir: None,
            events_dir: None,
            capacity_updates: None,
        }
    }
}

/// What a run did, for the exit log and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub calls_started: u64,
    /// Nothing was left held or undelivered at exit.
    pub clean_exit: bool,
    /// The run stopped by itself: the edge refused the link for good (a
    /// configuration or version mismatch). What to do about it.
    pub halted: Option<String>,
}

fn random_nonce() -> String {
    let mut b = [0u8; 16];
    crate::random::fill(&mut b);
    voxline_shared::signing::nonce_from_bytes(&b)
}

fn log_notice(n: Notice) {
    use tracing::{error, info, warn};
    match n {
        Notice::Registered(a) => info!(
            lease_wait_ms = a.lease_wait_ms,
            ack_deadline_ms = a.ack_deadline_ms,
            dead_after_ms = a.dead_after_ms,
            "registered with the edge"
        ),
        Notice::RegisterFailed {
            status,
            detail,
            retry_at_ms,
        } => {
            warn!(?status, %detail, retry_in_ms = retry_at_ms.saturating_sub(now_ms()), "registration failed")
        }
        Notice::CredentialsRefused { status, hanging_up } => {
            error!(
                status,
                ?hanging_up,
                "the edge refused our credentials (revoked?); hanging up every call held here"
            )
        }
        Notice::Reregistering { path, status } => {
            warn!(path, status, "edge no longer knows us; registering again")
        }
        Notice::LeaseFailed {
            status,
            detail,
            retry_at_ms,
        } => {
            warn!(?status, %detail, retry_in_ms = retry_at_ms.saturating_sub(now_ms()), "lease poll failed")
        }
        Notice::ProtocolMismatch { path, got } => {
            error!(path, got, "edge speaks another protocol version")
        }
        Notice::OfferAccepted { call_id, lease_id } => {
            info!(%call_id, %lease_id, "offer accepted; acking")
        }
        Notice::OfferRejected {
            call_id,
            lease_id,
            reason,
        } => info!(%call_id, %lease_id, reason, "offer rejected"),
        Notice::OfferLost {
            call_id,
            lease_id,
            why,
        } => warn!(%call_id, %lease_id, %why, "offer lost; not dialling"),
        Notice::ClockSkew {
            call_id,
            ack_deadline_ms,
            now_ms,
        } => {
            warn!(%call_id, ack_deadline_ms, now_ms, "offer's ack deadline already past on our clock: check clock sync")
        }
        Notice::AckFailed {
            call_id,
            status,
            detail,
            retry_at_ms,
        } => {
            warn!(%call_id, ?status, %detail, retry_in_ms = retry_at_ms.saturating_sub(now_ms()), "ack failed")
        }
        Notice::EventsFailed {
            status,
            detail,
            retry_at_ms,
        } => {
            warn!(?status, %detail, retry_in_ms = retry_at_ms.saturating_sub(now_ms()), "event batch failed")
        }
        Notice::EventsDropped {
            count,
            status,
            detail,
        } => {
            error!(count, status, %detail, "edge refused an event batch as invalid; dropped")
        }
        Notice::EventsDuplicates { sent, accepted } => {
            tracing::debug!(sent, accepted, "edge already had some events")
        }
        Notice::HangupForUnknownCall { call_id } => {
            info!(%call_id, "hangup for a call we do not hold")
        }
        Notice::TransferNotRunning { call_id } => {
            info!(%call_id, "transfer for a call not running here; ignored")
        }
        Notice::EventsNotSaved {
            call_id,
            attempt,
            detail,
        } => {
            error!(%call_id, attempt, %detail, "event spool write failed; these events would not survive a restart")
        }
        Notice::CallRestored {
            call_id,
            attempt,
            events,
            lost,
        } => {
            info!(%call_id, attempt, events, lost, "holding a call an earlier run left unacknowledged; resending its events")
        }
        Notice::RestoreSkipped { call_id, events } => {
            warn!(%call_id, events, "spooled events of a call already held; skipped")
        }
        Notice::UnknownCommand => warn!("edge sent a command kind this build does not know"),
        Notice::CallReleased { call_id } => info!(%call_id, "call released; slot free"),
        Notice::UploadFailed {
            call_id,
            status,
            detail,
            retry_at_ms,
        } => {
            warn!(%call_id, ?status, %detail, retry_in_ms = retry_at_ms.saturating_sub(now_ms()), "recording upload failed")
        }
        Notice::UploadRefused {
            call_id,
            status,
            detail,
            path,
        } => {
            error!(%call_id, ?status, %detail, path = %path.display(), "recording upload given up; the file stays on disk")
        }
        Notice::TranscriptFailed {
            call_id,
            status,
            detail,
            retry_at_ms,
        } => {
            warn!(%call_id, ?status, %detail, retry_in_ms = retry_at_ms.saturating_sub(now_ms()), "post-call transcript not sent")
        }
        Notice::TranscriptRefused {
            call_id,
            status,
            detail,
        } => {
            error!(%call_id, ?status, %detail, "post-call transcript given up; its spool file stays on disk")
        }
        Notice::MessageDuplicate { message_id } => {
            info!(%message_id, "text offered again; it was sent once already")
        }
        Notice::MessageExpired { message_id } => {
            warn!(%message_id, "text offered after its deadline; not sent")
        }
        Notice::MessageRefused { message_id, why } => {
            warn!(%message_id, why, "text offer cannot be sent")
        }
        Notice::MessageResultFailed {
            message_id,
            status,
            detail,
            retry_at_ms,
        } => {
            warn!(%message_id, ?status, %detail, retry_in_ms = retry_at_ms.saturating_sub(now_ms()), "text result not delivered")
        }
        Notice::MessageResultDropped {
            message_id,
            status,
            detail,
        } => error!(%message_id, status, %detail, "edge refused a text result; given up"),
        Notice::InboundNotTaken { status, detail } => {
            warn!(?status, %detail, "edge did not take an inbound text; the trunk gets 480")
        }
        Notice::PhoneRegistrationNotTaken { status, detail } => {
            warn!(?status, %detail, "edge gave no answer to a phone's REGISTER; the phone gets 503")
        }
    }
}

/// The call tasks, each known by its call: a task that dies (panic, abort)
/// says nothing itself, so its call is ended for it.
#[derive(Default)]
pub(crate) struct CallTasks {
    set: JoinSet<()>,
    calls: HashMap<tokio::task::Id, String>,
}

/// A call task that ended without finishing its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadCall {
    pub call_id: String,
    pub panicked: bool,
}

impl CallTasks {
    pub(crate) fn spawn<F>(&mut self, call_id: String, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let h = self.set.spawn(task);
        self.calls.insert(h.id(), call_id);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Call tasks running (not reaped yet).
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// The calls whose tasks have not been reaped yet.
    pub(crate) fn call_ids(&self) -> impl Iterator<Item = &String> {
        self.calls.values()
    }

    /// Waits for the next task to die rather than return (a task that
    /// returns reported its own end). `None`: no task is left.
    /// Cancel-safe (`join_next_with_id` is; nothing is held across it).
    pub(crate) async fn next_dead(&mut self) -> Option<DeadCall> {
        loop {
            let joined = self.set.join_next_with_id().await?;
            if let Some(dead) = self.reap(joined) {
                return Some(dead);
            }
        }
    }

    fn reap(
        &mut self,
        joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    ) -> Option<DeadCall> {
        match joined {
            Ok((id, ())) => {
                self.calls.remove(&id);
                None
            }
            Err(e) => {
                let call_id = self.calls.remove(&e.id())?;
                Some(DeadCall {
                    call_id,
                    panicked: e.is_panic(),
                })
            }
        }
    }

    fn abort_all(&mut self) {
        self.set.abort_all();
        self.calls.clear();
    }
}

/// The reason a dead call task's call ends with. No reason names an internal
/// sidecar fault; `engine_error` is the nearest (the call's own machinery
/// failed, not the trunk or the callee) and needs no protocol change.
pub(crate) const DEAD_TASK_REASON: voxline_shared::EndedReason =
    voxline_shared::EndedReason::EngineError;

fn bury(
    core: &mut LeaseClient,
    calls: &mut HashMap<String, oneshot::Sender<HangupCause>>,
    dead: DeadCall,
) {
    calls.remove(&dead.call_id);
    let how = if dead.panicked {
        "panicked"
    } else {
        "was cancelled"
    };
    tracing::error!(call_id = %dead.call_id, "call task {how}; ending the call as failed");
    match core.fail_call(now_ms(), &dead.call_id, DEAD_TASK_REASON) {
        Ok(_) => crate::metrics::global()
            .call_ended(voxline_shared::CallStatus::Failed, DEAD_TASK_REASON),
        // It got its own `ended` out before it died: nothing to add.
        Err(crate::lease::EmitError::AlreadyEnded) => {}
        Err(e) => tracing::warn!(call_id = %dead.call_id, ?e, "could not end the dead call's task"),
    }
}

fn handle_msg<C: Transport>(core: &mut LeaseClient, d: &mut Driver<C>, msg: Msg) {
    match msg {
        Msg::Reply { id, reply } => core.handle_reply(now_ms(), id, reply),
        Msg::Event {
            call_id,
            at_ms,
            kind,
        } => {
            crate::metrics::global().call_event(&kind);
            if let Err(e) = core.emit(at_ms, &call_id, kind) {
                tracing::warn!(%call_id, ?e, "event not recorded");
            }
        }
        Msg::CallDone { call_id } => {
            d.calls.remove(&call_id);
            d.transfers.remove(&call_id);
            d.hangups_requested.remove(&call_id);
        }
        Msg::Upload(upload) => core.queue_upload(upload),
        Msg::Transcript(t) => core.queue_transcript(t),
        Msg::MessageDone { message_id, report } => {
            tracing::info!(%message_id, outcome = ?report.outcome, sip_code = ?report.sip_code, reason = ?report.reason, "text ended");
            core.message_done(now_ms(), &message_id, report);
        }
        Msg::ToolCall { call, answer } => {
            d.next_tool_call += 1;
            let token = d.next_tool_call;
            // Callers that stopped waiting (their call ended) are dropped here.
            d.tools_waiting.retain(|_, a| !a.is_closed());
            d.tools_waiting.insert(token, answer);
            core.forward_tool_call(token, call);
        }
    }
}

struct Driver<C: Transport> {
    transport: Arc<C>,
    secret: Secret,
    sidecar_id: String,
    tx: mpsc::Sender<Msg>,
    requests: JoinSet<()>,
    call_tasks: CallTasks,
    /// Live calls that can still be told to hang up.
    calls: HashMap<String, oneshot::Sender<HangupCause>>,
    /// Live calls' transfer commands (issue 16).
    transfers: HashMap<String, mpsc::Sender<crate::call_task::bridge::TransferOrder>>,
    /// Calls the edge asked to hang up (their end is `hangup_requested`, never retried).
    hangups_requested: std::collections::HashSet<String>,
    mode: CallMode,
    started: u64,
    /// Set by [`Action::Halt`]: stop once the call tasks have ended.
    halted: Option<LinkRefusal>,
    /// Inbound texts waiting for the edge's answer, by token.
    inbound_waiting: HashMap<u64, oneshot::Sender<u16>>,
    next_inbound: u64,
    /// Inbound calls ringing while the edge decides, by token.
    calls_ringing: HashMap<u64, IncomingCall>,
    /// Call tasks waiting for a tool's answer, by token.
    tools_waiting: HashMap<u64, oneshot::Sender<voxline_shared::sidecar_link::ToolCallAnswer>>,
    next_tool_call: u64,
    /// Phones' REGISTERs waiting for the edge's answer, by token (issue 16).
    registrations_waiting: HashMap<
        u64,
        oneshot::Sender<Option<voxline_shared::sidecar_link::PhoneRegistrationAnswer>>,
    >,
}

impl<C: Transport> Driver<C> {
    fn send(&mut self, t: Transmit) {
        let transport = self.transport.clone();
        let secret = self.secret.clone();
        let sidecar_id = self.sidecar_id.clone();
        let tx = self.tx.clone();
        self.requests.spawn(async move {
            let path = t.request.path();
            let signed = t.request.body();
            let mut headers = signed_headers(&sidecar_id, secret.expose(), now_ms() / 1000, &random_nonce(), Target::post(path), &signed).to_vec();
            // A recording: the signed manifest rides in a header, the file is the body.
            let body = match &t.request {
                Request::Recording(upload) => match crate::recordings::read(upload).await {
                    Ok(wav) => {
                        headers.push((HEADER_RECORDING_MANIFEST, String::from_utf8_lossy(&signed).into_owned()));
                        headers.push(("content-type", "audio/wav".to_string()));
                        wav
                    }
                    Err(why) => {
                        let _ = tx.send(Msg::Reply { id: t.id, reply: Reply::Unsendable(why) }).await;
                        return;
                    }
                },
                _ => signed,
            };
            let limit = Duration::from_millis(t.request.timeout_ms());
            tracing::debug!(id = t.id, path, bytes = body.len(), "request");
            let sent = std::time::Instant::now();
            let reply = match tokio::time::timeout(limit, transport.post(path, headers, body)).await {
                Ok(Ok(r)) => {
                    crate::metrics::global().edge_request(path, Some(r.status), sent.elapsed());
                    tracing::debug!(id = t.id, path, status = r.status, version = ?r.version, "response");
                    Reply::Http { status: r.status, body: r.body }
                }
                Ok(Err(e)) => Reply::Failed(e.to_string()),
                Err(_) => Reply::Failed(format!("no answer within {} ms", limit.as_millis())),
            };
            if matches!(reply, Reply::Failed(_)) {
                crate::metrics::global().edge_request(path, None, sent.elapsed());
            }
            let _ = tx.send(Msg::Reply { id: t.id, reply }).await;
        });
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::StartCall(offer) => {
                tracing::info!(
                    call_id = %offer.call_id, attempt = offer.attempt, phone = %offer.phone,
                    engine = %offer.engine, max_seconds = offer.max_seconds, "starting call"
                );
                if self.calls.contains_key(&offer.call_id) {
                    return;
                }
                let (hang_tx, hang_rx) = oneshot::channel();
                self.calls.insert(offer.call_id.clone(), hang_tx);
                let (transfer_tx, transfer_rx) = mpsc::channel(crate::call_task::TRANSFER_ORDERS);
                self.transfers.insert(offer.call_id.clone(), transfer_tx);
                self.started += 1;
                crate::metrics::global().call_started();
                let call_id = offer.call_id.clone();
                self.call_tasks.spawn(
                    call_id,
                    run_call(
                        *offer,
                        self.mode.clone(),
                        self.tx.clone(),
                        hang_rx,
                        transfer_rx,
                    ),
                );
            }
            Action::Hangup { call_id } => match self.calls.remove(&call_id) {
                Some(h) => {
                    tracing::info!(%call_id, "hangup requested");
                    let _ = h.send(HangupCause::Requested);
                    self.hangups_requested.insert(call_id);
                }
                None => tracing::debug!(%call_id, "hangup for a call that already finished"),
            },
            Action::Transfer { call_id, order } => match self.transfers.get(&call_id) {
                Some(t) => {
                    tracing::info!(%call_id, transfer_id = %order.transfer_id, "transfer requested");
                    if t.try_send(order).is_err() {
                        tracing::warn!(%call_id, "transfer command dropped: the call is not taking commands");
                    }
                }
                None => tracing::debug!(%call_id, "transfer for a call that already finished"),
            },
            Action::TranscriptDone(t) => {
                tracing::info!(call_id = %t.transcript.call_id, turns = t.transcript.turns.len(), "post-call transcript sent");
                if let Some(path) = &t.spool {
                    crate::recordings::remove_transcript(path);
                }
            }
            Action::UploadDone(upload) => {
                tracing::info!(call_id = %upload.manifest.call_id, attempt = upload.manifest.attempt, bytes = upload.manifest.bytes, "recording uploaded");
                crate::recordings::remove(&upload);
            }
            Action::Notice(n) => log_notice(n),
            Action::SendMessage(offer) => {
                let tx = self.tx.clone();
                let telephony = match &self.mode {
                    CallMode::Sip(tel) => Some(tel.clone()),
                    _ => None,
                };
                tracing::info!(message_id = %offer.message_id, to = %offer.to, "sending text");
                self.requests.spawn(async move {
                    let (end, imdn) = match telephony {
                        Some(tel) => {
                            let imdn = tel.cfg.text_imdn.then(|| offer.message_id.clone());
                            (tel.send_message(&offer, now_ms()).await, imdn)
                        }
                        None => (
                            crate::sip::text_message::MessageEnd::failed(
                                crate::sip::text_message::reasons::NO_TRUNK,
                                None,
                            ),
                            None,
                        ),
                    };
                    let report = MessageReport {
                        outcome: end.outcome,
                        sip_code: end.sip_code,
                        reason: end.reason.map(str::to_string),
                        // Matched by the edge against later delivery notifications.
                        imdn_message_id: imdn.filter(|_| {
                            end.outcome == voxline_shared::sidecar_link::MessageOutcome::Sent
                        }),
                    };
                    let _ = tx
                        .send(Msg::MessageDone {
                            message_id: offer.message_id.clone(),
                            report,
                        })
                        .await;
                });
            }
            Action::InboundCallDecided { token, decision } => {
                let Some(incoming) = self.calls_ringing.remove(&token) else {
                    return;
                };
                match (decision, &self.mode) {
                    (InboundDecision::Answer { offer }, CallMode::Sip(tel)) => {
                        tracing::info!(
                            call_id = %offer.call_id, caller = %offer.phone, called = ?offer.caller_number,
                            engine = %offer.engine, "answering inbound call"
                        );
                        if self.calls.contains_key(&offer.call_id) {
                            return;
                        }
                        let (hang_tx, hang_rx) = oneshot::channel();
                        self.calls.insert(offer.call_id.clone(), hang_tx);
                        let (transfer_tx, transfer_rx) =
                            mpsc::channel(crate::call_task::TRANSFER_ORDERS);
                        self.transfers.insert(offer.call_id.clone(), transfer_tx);
                        self.started += 1;
                        crate::metrics::global().call_started();
                        let call_id = offer.call_id.clone();
                        self.call_tasks.spawn(
                            call_id,
                            crate::call_task::sip::run_inbound_call(
                                *offer,
                                tel.clone(),
                                self.tx.clone(),
                                hang_rx,
                                transfer_rx,
                                incoming,
                            ),
                        );
                    }
                    (InboundDecision::Answer { .. }, _) => {
                        self.requests.spawn(incoming.refuse(480));
                    }
                    (InboundDecision::RingUser { offer, ring }, CallMode::Sip(tel)) => {
                        tracing::info!(
                            call_id = %offer.call_id, caller = %offer.phone, user_pk = ring.user_pk,
                            "inbound call rings a person"
                        );
                        if self.calls.contains_key(&offer.call_id) {
                            return;
                        }
                        let (hang_tx, hang_rx) = oneshot::channel();
                        self.calls.insert(offer.call_id.clone(), hang_tx);
                        self.started += 1;
                        crate::metrics::global().call_started();
                        let call_id = offer.call_id.clone();
                        self.call_tasks.spawn(
                            call_id,
                            crate::call_task::person::run_ring_user(
                                *offer,
                                ring,
                                tel.clone(),
                                self.tx.clone(),
                                hang_rx,
                                incoming,
                            ),
                        );
                    }
                    (InboundDecision::Queue { offer, queue }, CallMode::Sip(tel)) => {
                        // A queue (issue 16): answered, hold audio, members
                        // rung here, the first to answer bridged, overflow.
                        tracing::info!(
                            call_id = %offer.call_id, caller = %offer.phone, queue_pk = queue.queue_pk,
                            members = queue.members.len(), overflow = ?queue.overflow, "inbound call queued"
                        );
                        if self.calls.contains_key(&offer.call_id) {
                            return;
                        }
                        let (hang_tx, hang_rx) = oneshot::channel();
                        self.calls.insert(offer.call_id.clone(), hang_tx);
                        // The agent an overflow hands the caller to takes
                        // the edge's transfer commands.
                        let (transfer_tx, transfer_rx) =
                            mpsc::channel(crate::call_task::TRANSFER_ORDERS);
                        self.transfers.insert(offer.call_id.clone(), transfer_tx);
                        self.started += 1;
                        crate::metrics::global().call_started();
                        let call_id = offer.call_id.clone();
                        self.call_tasks.spawn(
                            call_id,
                            crate::call_task::queue_call::run_queue_call(
                                *offer,
                                queue,
                                tel.clone(),
                                self.tx.clone(),
                                hang_rx,
                                transfer_rx,
                                incoming,
                            ),
                        );
                    }
                    (
                        InboundDecision::RingUser { offer, .. }
                        | InboundDecision::Queue { offer, .. },
                        _,
                    ) => {
                        // A person's or a queue's call needs telephony: without
                        // it the caller hears 480 and the edge's call ends
                        // `no_answer`, never left ringing.
                        tracing::warn!(
                            call_id = %offer.call_id,
                            "inbound call for a person or a queue without telephony; 480"
                        );
                        self.requests.spawn(incoming.refuse(480));
                        let e = crate::call_task::Emitter::new(&offer.call_id, self.tx.clone());
                        let tx = self.tx.clone();
                        self.requests.spawn(async move {
                            let at = now_ms();
                            e.emit_at(
                                EventKind::Ended {
                                    status: voxline_shared::CallStatus::NoAnswer,
                                    reason: voxline_shared::EndedReason::NoAnswer,
                                    sip_code: Some(480),
                                    timings: voxline_shared::sidecar_link::Timings {
                                        dispatched_ms: at,
                                        ringing_ms: None,
                                        answered_ms: None,
                                        ended_ms: at,
                                    },
                                    retry_after_s: None,
                                },
                                at,
                            )
                            .await;
                            let _ = tx
                                .send(Msg::CallDone {
                                    call_id: offer.call_id,
                                })
                                .await;
                        });
                    }
                    (InboundDecision::Refuse { sip_code, reason }, _) => {
                        tracing::info!(sip_call_id = %incoming.offer.sip_call_id, sip_code, %reason, "inbound call refused");
                        let code = if (400..700).contains(&sip_code) {
                            sip_code
                        } else {
                            480
                        };
                        self.requests.spawn(incoming.refuse(code));
                    }
                }
            }
            Action::ToolCallAnswered { token, answer } => {
                if let Some(waiting) = self.tools_waiting.remove(&token) {
                    let _ = waiting.send(answer);
                }
            }
            Action::PhoneRegistrationAnswered { token, answer } => {
                if let Some(waiting) = self.registrations_waiting.remove(&token) {
                    let _ = waiting.send(answer);
                }
            }
            Action::InboundAnswered { token, sip_code } => {
                if let Some(answer) = self.inbound_waiting.remove(&token) {
                    let _ = answer.send(sip_code);
                }
            }
            Action::Halt(r) => {
                tracing::error!(
                    path = r.path, status = r.status, code = %r.code, detail = %r.detail,
                    held_calls = self.calls.len(),
                    "the edge refused the link for good: {}; hanging up and stopping", r.hint
                );
                self.halted = Some(r);
            }
        }
    }
}

/// The next inbound text, if the telephony gives them (else never).
async fn next_inbound(rx: &mut Option<mpsc::Receiver<InboundRequest>>) -> Option<InboundRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn forward_inbound<C: Transport>(core: &mut LeaseClient, d: &mut Driver<C>, req: InboundRequest) {
    d.next_inbound += 1;
    let token = d.next_inbound;
    // Answers that never came (the SIP side answered 480 itself) are dropped here.
    d.inbound_waiting.retain(|_, a| !a.is_closed());
    d.inbound_waiting.insert(token, req.answer);
    let t = req.text;
    core.forward_inbound(
        token,
        voxline_shared::sidecar_link::InboundMessage {
            protocol_version: voxline_shared::sidecar_link::PROTOCOL_VERSION,
            sidecar_id: String::new(),
            region: String::new(),
            from: t.from,
            to: t.to,
            content: t.content,
            sip_call_id: t.sip_call_id,
            received_ms: now_ms(),
        },
    );
}

/// The next phone REGISTER, if the telephony has a registrar (else never).
async fn next_phone_registration(
    rx: &mut Option<mpsc::Receiver<PhoneRegisterRequest>>,
) -> Option<PhoneRegisterRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn forward_phone_registration<C: Transport>(
    core: &mut LeaseClient,
    d: &mut Driver<C>,
    req: PhoneRegisterRequest,
) {
    d.next_inbound += 1;
    let token = d.next_inbound;
    // Answers nobody waits for any more (the phone got 503) are dropped here.
    d.registrations_waiting.retain(|_, a| !a.is_closed());
    d.registrations_waiting.insert(token, req.answer);
    core.forward_phone_registration(now_ms(), token, req.registration);
}

/// The next inbound call, if the telephony gives them (else never).
async fn next_inbound_call(rx: &mut Option<mpsc::Receiver<IncomingCall>>) -> Option<IncomingCall> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Asks the edge about a ringing inbound call; it rings until the decision.
fn forward_inbound_call<C: Transport>(
    core: &mut LeaseClient,
    d: &mut Driver<C>,
    incoming: IncomingCall,
) {
    d.next_inbound += 1;
    let token = d.next_inbound;
    let o = &incoming.offer;
    let call = voxline_shared::sidecar_link::InboundCall {
        protocol_version: voxline_shared::sidecar_link::PROTOCOL_VERSION,
        sidecar_id: String::new(),
        region: String::new(),
        called: o.called.clone(),
        caller: o.caller.clone(),
        sip_call_id: o.sip_call_id.clone(),
        received_ms: now_ms(),
    };
    tracing::info!(sip_call_id = %o.sip_call_id, called = %o.called, caller = %o.caller, "inbound call ringing; asking the edge");
    d.calls_ringing.insert(token, incoming);
    core.forward_inbound_call(token, call);
}

/// The next capacity a reload set (else never; a closed channel: never again).
async fn capacity_update(rx: &mut Option<watch::Receiver<u32>>) -> Option<u32> {
    match rx {
        Some(r) => match r.changed().await {
            Ok(()) => Some(*r.borrow_and_update()),
            Err(_) => {
                *rx = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// Tells every live call to hang up because the sidecar is stopping.
fn hang_up_for_shutdown(calls: &mut HashMap<String, oneshot::Sender<HangupCause>>) {
    for (call_id, h) in calls.drain() {
        tracing::info!(%call_id, "hanging up: the sidecar is stopping");
        let _ = h.send(HangupCause::Shutdown);
    }
}

/// At exit: every call whose task has not reported its end gets one from
/// the driver (recorded in the event spool, delivered by this run or the
/// next), rather than being left for the edge to presume lost.
fn end_unfinished_calls<C: Transport>(core: &mut LeaseClient, d: &Driver<C>) {
    let now = now_ms();
    for call_id in d.call_tasks.call_ids() {
        let reason = if d.hangups_requested.contains(call_id) {
            voxline_shared::EndedReason::HangupRequested
        } else {
            SHUTDOWN_REASON
        };
        // An error: its own `ended` is in, or it was never started; nothing to add.
        if core.fail_call(now, call_id, reason).is_ok() {
            crate::metrics::global().call_ended(voxline_shared::CallStatus::Failed, reason);
            tracing::warn!(%call_id, ?reason, "call did not finish hanging up in time; ended as failed");
        }
    }
}

/// How long a stopping sidecar waits for its un-REGISTERs to be answered.
const UNREGISTER_WITHIN: Duration = Duration::from_secs(2);

/// Runs the sidecar until `stop` says so (or its sender is dropped: `Now`).
pub async fn run<C: Transport>(
    transport: Arc<C>,
    settings: LeaseSettings,
    secret: Secret,
    opts: RunOptions,
    mut stop: watch::Receiver<Stop>,
) -> RunSummary {
    tracing::info!(
        sidecar_id = %settings.sidecar_id, region = %settings.region, capacity = settings.capacity,
        transport = transport.name(), mode = ?opts.mode, "sidecar starting"
    );
    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let mut d = Driver {
        transport,
        secret,
        sidecar_id: settings.sidecar_id.clone(),
        tx,
        requests: JoinSet::new(),
        call_tasks: CallTasks::default(),
        calls: HashMap::new(),
        transfers: HashMap::new(),
        hangups_requested: Default::default(),
        mode: opts.mode.clone(),
        started: 0,
        halted: None,
        inbound_waiting: HashMap::new(),
        next_inbound: 0,
        calls_ringing: HashMap::new(),
        tools_waiting: HashMap::new(),
        registrations_waiting: HashMap::new(),
        next_tool_call: 0,
    };
    let mut inbound_call_rx = match &opts.mode {
        CallMode::Sip(tel) => tel.sip.take_inbound_calls().await.ok(),
        _ => None,
    };
    let mut inbound_rx = match &opts.mode {
        CallMode::Sip(tel) => tel.take_inbound(),
        _ => None,
    };
    let mut phone_registration_rx = match &opts.mode {
        CallMode::Sip(tel) if tel.cfg.registrar.enabled => {
            tel.sip.take_phone_registrations().await.ok()
        }
        _ => None,
    };
    let mut core = LeaseClient::new(settings);
    if let Some(dir) = &opts.recordings_dir {
        for upload in crate::recordings::leftovers(dir) {
            tracing::info!(call_id = %upload.manifest.call_id, path = %upload.path.display(), "resuming a recording upload left by an earlier run");
            core.queue_upload(upload);
        }
        for t in crate::recordings::transcript_leftovers(dir) {
            tracing::info!(call_id = %t.transcript.call_id, "resuming a post-call transcript left by an earlier run");
            core.queue_transcript(t);
        }
    }
    // Before the first registration: the calls found there are in `held_calls`
    // from the first poll on, so the edge keeps them rather than re-dialling them.
    if let Some(dir) = &opts.events_dir {
        match crate::event_spool::EventSpool::open(dir) {
            Ok(spool) => {
                let leftovers = spool.load();
                core.set_event_store(Box::new(spool));
                if !leftovers.is_empty() {
                    let n = leftovers.len();
                    let calls = core.restore_events(now_ms(), leftovers);
                    tracing::info!(
                        events = n,
                        calls,
                        "resending events an earlier run left unacknowledged"
                    );
                }
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "no event spool: events will not survive a restart")
            }
        }
    }
    let mut capacity_updates = opts.capacity_updates.clone();
    let mut drain_until: Option<tokio::time::Instant> = None;
    // Set when the drain timed out and the live calls were told to hang up.
    let mut hanging_up = false;
    let far = Duration::from_secs(3600);

    let begin_drain = |core: &mut LeaseClient, drain_until: &mut Option<tokio::time::Instant>| {
        if drain_until.is_none() {
            tracing::info!(timeout = ?opts.drain_timeout, "draining: taking no new calls");
            core.begin_drain();
            *drain_until = Some(tokio::time::Instant::now() + opts.drain_timeout);
        }
    };
    match *stop.borrow_and_update() {
        Stop::Run => {}
        Stop::Drain => begin_drain(&mut core, &mut drain_until),
        Stop::Now => {
            return RunSummary {
                calls_started: 0,
                clean_exit: true,
                halted: None,
            }
        }
    }

    loop {
        loop {
            let now = now_ms();
            let mut progressed = false;
            while let Some(t) = core.poll_transmit(now) {
                progressed = true;
                d.send(t);
            }
            while let Some(a) = core.poll_action() {
                progressed = true;
                d.act(a);
            }
            if !progressed {
                break;
            }
        }
        crate::metrics::global().link_state(core.is_registered(), core.is_draining());
        crate::metrics::global().set_calls_active(d.call_tasks.len());
        if drain_until.is_some() && core.is_idle() {
            tracing::info!("drained");
            break;
        }
        // Halted: nothing more can reach the edge; wait only for the calls
        // being hung up (bounded by the drain timeout), then stop.
        if d.halted.is_some() {
            if d.call_tasks.is_empty() {
                break;
            }
            begin_drain(&mut core, &mut drain_until);
        }
        // Reap finished request tasks so the set does not grow.
        while d.requests.try_join_next().is_some() {}

        let sleep = if d.halted.is_some() {
            // Look again soon whether the last call task is gone.
            Duration::from_millis(100)
        } else {
            core.next_wakeup_ms()
                .map_or(far, |w| Duration::from_millis(w.saturating_sub(now_ms())))
        };
        let drain_at = drain_until.unwrap_or_else(|| tokio::time::Instant::now() + far);
        tokio::select! {
            Some(msg) = rx.recv() => handle_msg(&mut core, &mut d, msg),
            Some(req) = next_inbound(&mut inbound_rx) => forward_inbound(&mut core, &mut d, req),
            Some(call) = next_inbound_call(&mut inbound_call_rx) => forward_inbound_call(&mut core, &mut d, call),
            Some(reg) = next_phone_registration(&mut phone_registration_rx) => forward_phone_registration(&mut core, &mut d, reg),
            Some(dead) = d.call_tasks.next_dead(), if !d.call_tasks.is_empty() => {
                // Whatever the task sent before it died comes first (its
                // `ended`, if it got that far).
                while let Ok(msg) = rx.try_recv() {
                    handle_msg(&mut core, &mut d, msg);
                }
                d.hangups_requested.remove(&dead.call_id);
                d.transfers.remove(&dead.call_id);
                bury(&mut core, &mut d.calls, dead);
            }
            _ = tokio::time::sleep(sleep) => {}
            Some(capacity) = capacity_update(&mut capacity_updates) => {
                tracing::info!(capacity, "capacity reloaded");
                core.set_capacity(capacity);
            }
            changed = stop.changed() => {
                let s = if changed.is_ok() { *stop.borrow_and_update() } else { Stop::Now };
                match s {
                    Stop::Run => {}
                    Stop::Drain => begin_drain(&mut core, &mut drain_until),
                    Stop::Now => {
                        tracing::info!("stopping now");
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(drain_at), if drain_until.is_some() => {
                if !hanging_up && !d.calls.is_empty() {
                    tracing::warn!(live = d.calls.len(), grace = ?opts.hangup_grace, "drain timed out; hanging up the calls still live");
                    hanging_up = true;
                    hang_up_for_shutdown(&mut d.calls);
                    drain_until = Some(tokio::time::Instant::now() + opts.hangup_grace);
                    continue;
                }
                // What the call tasks already said comes first (their own `ended`).
                while let Ok(msg) = rx.try_recv() {
                    handle_msg(&mut core, &mut d, msg);
                }
                end_unfinished_calls(&mut core, &d);
                tracing::warn!(held = ?core.held_calls(), pending_events = core.pending_events(), pending_uploads = core.pending_uploads(), "drain timed out");
                break;
            }
        }
    }
    let clean_exit = core.is_idle();
    d.requests.abort_all();
    // Say goodbye, briefly: otherwise a long-poll of ours still open at the
    // edge could take an offer nobody will ack (it waits out the ack deadline).
    if let Some(bye) = core.farewell() {
        let body = bye.body();
        let headers = signed_headers(
            &d.sidecar_id,
            d.secret.expose(),
            now_ms() / 1000,
            &random_nonce(),
            Target::post(bye.path()),
            &body,
        );
        let limit = Duration::from_millis(bye.timeout_ms());
        match tokio::time::timeout(limit, d.transport.post(bye.path(), headers.to_vec(), body))
            .await
        {
            Ok(Ok(r)) if (200..300).contains(&r.status) => {
                tracing::info!("deregistered from the edge")
            }
            Ok(Ok(r)) => tracing::info!(
                status = r.status,
                "the edge did not take the deregistration (an older edge?)"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "deregistration not sent"),
            Err(_) => tracing::warn!("deregistration unanswered"),
        }
    }
    // The calls are over: remove our bindings at the trunks' registrars, so
    // they stop sending calls to an address nobody answers.
    if let CallMode::Sip(tel) = &d.mode {
        tel.unregister(UNREGISTER_WITHIN).await;
    }
    d.calls.clear();
    d.call_tasks.abort_all();
    tracing::info!(calls_started = d.started, clean_exit, "sidecar stopped");
    RunSummary {
        calls_started: d.started,
        clean_exit,
        halted: d
            .halted
            .map(|r| format!("{} ({} {}: {})", r.hint, r.status, r.code, r.detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call task that panics is reported with its call id (so the call is
    /// ended for it); one that returns is not (it reported its own end).
    #[tokio::test]
    async fn a_dead_call_task_is_known_by_its_call() {
        let mut t = CallTasks::default();
        t.spawn("c_ok".into(), async {});
        t.spawn("c_panics".into(), async { panic!("engine blew up") });
        let mut dead = vec![];
        while !t.is_empty() {
            if let Some(d) = t.next_dead().await {
                dead.push(d);
            }
        }
        assert_eq!(
            dead,
            vec![DeadCall {
                call_id: "c_panics".into(),
                panicked: true
            }]
        );
        assert!(
            t.calls.is_empty(),
            "every task's id is forgotten once reaped"
        );

        // Aborted (cancelled) counts as dead too.
        t.spawn("c_stuck".into(), std::future::pending());
        t.set.abort_all();
        assert_eq!(
            t.next_dead().await,
            Some(DeadCall {
                call_id: "c_stuck".into(),
                panicked: false
            })
        );
    }
}
