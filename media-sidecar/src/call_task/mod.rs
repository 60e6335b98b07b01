//! The call task: one tokio task per call, from the offer to `ended`.
//!
//! - [`run_call`] picks how by [`CallMode`]: with trunks configured the call
//!   is placed over SIP ([`sip`], the driver of the pure per-call [`bridge`]);
//!   without any, a call only says `dialing` and then holds its slot until
//!   the edge hangs it up (a stand-in, below).
//! - [`Emitter`] reports the call's events to the lease driver; [`HangupCause`]
//!   says why a call is told to hang up.
//!
//! `--simulate-answer` (dev/test aid ONLY, for exercising the sidecar link end
//! to end without a trunk): the call goes dialing -> ringing (+100 ms) ->
//! answered (+300 ms) -> ended(completed, agent_hangup) after the given talk
//! time (capped by the offer's `max_seconds`, then `max_duration_reached`).
//! No phone is called.

pub mod bridge;
pub mod customer_tools;
pub mod hold_audio;
pub mod person;
pub mod queue;
pub mod queue_call;
pub mod ring_user;
pub mod sip;
pub mod tools;
pub mod transfer;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use voxline_shared::sidecar_link::{EventKind, Offer, Timings};
use voxline_shared::{CallStatus, EndedReason};

use crate::lease::driver::{now_ms, Msg};

/// How a call task behaves.
#[derive(Debug, Clone, Default)]
pub enum CallMode {
    /// No trunk configured: emits `dialing`, then waits for a hangup.
    #[default]
    Placeholder,
    /// Dial for real through the configured trunks (see [`sip`]).
    Sip(std::sync::Arc<crate::telephony::Telephony>),
    /// Dev/test aid: pretend the callee answered and talked for this long.
    SimulateAnswer(Duration),
}

/// Transfer commands a call task holds before it takes them (a command
/// repeats at most a few times).
pub const TRANSFER_ORDERS: usize = 4;

/// Why a call task is told to hang up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupCause {
    /// The edge's hangup command (`hangup_requested`).
    Requested,
    /// The sidecar is stopping and its drain timed out with the call still
    /// live: BYE (or CANCEL), and the call ends `failed` /
    /// [`SHUTDOWN_REASON`].
    Shutdown,
}

/// The reason a call cut short by the sidecar's shutdown ends with, status
/// `failed`. No reason names a sidecar going away; `media_lost` is what the
/// edge itself records for the calls of a sidecar that stops answering, so a
/// clean shutdown reports the same outcome (retried like any failure while
/// attempts remain) and needs no protocol change, only sooner and with the
/// callee hung up properly.
pub const SHUTDOWN_REASON: EndedReason = EndedReason::MediaLost;

pub const SIM_RING_AFTER: Duration = Duration::from_millis(100);
pub const SIM_ANSWER_AFTER: Duration = Duration::from_millis(300);

/// Reports a call's events to the lease driver (which batches them to the edge).
pub(crate) struct Emitter {
    call_id: String,
    tx: mpsc::Sender<Msg>,
}

impl Emitter {
    pub(crate) fn new(call_id: &str, tx: mpsc::Sender<Msg>) -> Emitter {
        Emitter {
            call_id: call_id.to_string(),
            tx,
        }
    }

    pub(crate) async fn emit(&self, kind: EventKind) -> u64 {
        self.emit_at(kind, now_ms()).await
    }

    pub(crate) async fn emit_at(&self, kind: EventKind, at: u64) -> u64 {
        tracing::info!(call_id = %self.call_id, event = kind.name(), "call event");
        let _ = self
            .tx
            .send(Msg::Event {
                call_id: self.call_id.clone(),
                at_ms: at,
                kind,
            })
            .await;
        at
    }
}

fn ended(status: CallStatus, reason: EndedReason, timings: Timings) -> EventKind {
    EventKind::Ended {
        status,
        reason,
        retry_after_s: None,
        sip_code: None,
        timings,
    }
}

/// Runs one call to its end. `hangup` fires when the call must be hung up
/// (see [`HangupCause`]); if it is dropped instead (the sidecar is stopping
/// at once), the task hangs up and returns without an `ended` event.
/// `transfers` brings the edge's transfer commands (only a SIP call acts on
/// them).
pub async fn run_call(
    offer: Offer,
    mode: CallMode,
    tx: mpsc::Sender<Msg>,
    hangup: oneshot::Receiver<HangupCause>,
    transfers: mpsc::Receiver<bridge::TransferOrder>,
) {
    match mode {
        // Click-to-call: a person's phone first, no engine (issue 16).
        CallMode::Sip(tel) if offer.connect.is_some() => {
            person::run_click_to_call(offer, tel, tx, hangup).await
        }
        CallMode::Sip(tel) => sip::run_sip_call(offer, tel, tx, hangup, transfers).await,
        CallMode::Placeholder => run_stand_in(offer, None, tx, hangup).await,
        CallMode::SimulateAnswer(talk) => run_stand_in(offer, Some(talk), tx, hangup).await,
    }
}

/// No trunk (`talk` = None) or the `--simulate-answer` test aid.
async fn run_stand_in(
    offer: Offer,
    talk: Option<Duration>,
    tx: mpsc::Sender<Msg>,
    mut hangup: oneshot::Receiver<HangupCause>,
) {
    let e = Emitter {
        call_id: offer.call_id.clone(),
        tx: tx.clone(),
    };
    let dispatched_ms = e.emit(EventKind::Dialing).await;
    let mut t = Timings {
        dispatched_ms,
        ringing_ms: None,
        answered_ms: None,
        ended_ms: 0,
    };

    /// What ended a wait.
    enum Woke {
        Hangup(HangupCause),
        /// The sidecar is stopping at once: no `ended`.
        Stopping,
        Elapsed,
    }
    async fn wait(hangup: &mut oneshot::Receiver<HangupCause>, d: Option<Duration>) -> Woke {
        let got = |r: Result<HangupCause, _>| r.map_or(Woke::Stopping, Woke::Hangup);
        match d {
            Some(d) => tokio::select! {
                r = hangup => got(r),
                _ = tokio::time::sleep(d) => Woke::Elapsed,
            },
            None => got(hangup.await),
        }
    }
    // A hangup before the answer cancels; after it, completes. A shutdown fails.
    let hung_up = |cause: HangupCause, answered: bool| match (cause, answered) {
        (HangupCause::Shutdown, _) => Some((CallStatus::Failed, SHUTDOWN_REASON)),
        (HangupCause::Requested, false) => {
            Some((CallStatus::Cancelled, EndedReason::HangupRequested))
        }
        (HangupCause::Requested, true) => {
            Some((CallStatus::Completed, EndedReason::HangupRequested))
        }
    };

    let end = match talk {
        None => match wait(&mut hangup, None).await {
            Woke::Hangup(cause) => hung_up(cause, false),
            _ => None,
        },
        Some(talk) => 'sim: {
            match wait(&mut hangup, Some(SIM_RING_AFTER)).await {
                Woke::Hangup(cause) => break 'sim hung_up(cause, false),
                Woke::Stopping => break 'sim None,
                Woke::Elapsed => {}
            }
            t.ringing_ms = Some(e.emit(EventKind::Ringing).await);
            match wait(&mut hangup, Some(SIM_ANSWER_AFTER - SIM_RING_AFTER)).await {
                Woke::Hangup(cause) => break 'sim hung_up(cause, false),
                Woke::Stopping => break 'sim None,
                Woke::Elapsed => {}
            }
            t.answered_ms = Some(e.emit(EventKind::Answered).await);
            let cap = Duration::from_secs(u64::from(offer.max_seconds));
            let (d, reason) = if talk > cap {
                (cap, EndedReason::MaxDurationReached)
            } else {
                (talk, EndedReason::AgentHangup)
            };
            match wait(&mut hangup, Some(d)).await {
                Woke::Hangup(cause) => hung_up(cause, true),
                Woke::Stopping => None,
                Woke::Elapsed => Some((CallStatus::Completed, reason)),
            }
        }
    };
    if let Some((status, reason)) = end {
        t.ended_ms = now_ms();
        e.emit_at(ended(status, reason, t), t.ended_ms).await;
    }
    let _ = tx
        .send(Msg::CallDone {
            call_id: offer.call_id,
        })
        .await;
}
