//! The tokio driver of a queue call (issue 16): an inbound call the edge
//! put in a queue ([`QueuePlan`]). Every decision is the pure
//! [`QueueCall`]'s; this file does the IO, on a person's call's blocks
//! ([`super::person`]): it answers the caller ([`person::answer_caller`];
//! recorded when the offer says `record`, or for a voicemail overflow),
//! plays [`HoldPlayer`]'s audio at the media's pace, dials the members'
//! phones registered here ([`person::LegPlan::phones`]), relays the
//! winner and the caller ([`person::relay_until_one_ends`]), and on the
//! overflow hands the answered caller to the agent's bridge
//! ([`super::sip::run_answered_call`]) or to a person's voicemail
//! ([`person::take_message_on`]).
//!
//! Why not [`person::ring_until_answered`] for the ringing: it is one
//! fork with its own time-out; a queue rings in rounds (one member or all
//! at once), plays hold audio and announcements meanwhile, drops a member
//! whose phone said busy for the round, and has one deadline over all of
//! it, so its ringing is one loop driven by [`QueueCall`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use voxline_shared::sidecar_link::{EventKind, Offer, QueueOverflow, QueuePlan, Timings};
use voxline_shared::{CallStatus, EndedReason};

use super::hold_audio::{self, HoldPlayer};
use super::person::{self, AnsweredLeg, LegCtx, LegPlan, RelayEnd, Side};
use super::queue::{LegId, QueueAction, QueueCall};
use super::{Emitter, HangupCause, SHUTDOWN_REASON};
use crate::lease::driver::{now_ms, Msg};
use crate::media::driver::BoundMedia;
use crate::sip::sdp::Negotiated;
use crate::sip::udp::{CallHandle, Event, IncomingCall};
use crate::sip::DialogEvent;
use crate::telephony::Telephony;

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The directory users this sidecar is bridging a call to right now
/// (tenant, user `pk`): a queue does not ring a member who is on a call
/// here. Counted, so overlapping calls of one user are all accounted.
fn users_in_use() -> &'static Mutex<HashMap<(String, u64), u32>> {
    static IN_USE: OnceLock<Mutex<HashMap<(String, u64), u32>>> = OnceLock::new();
    IN_USE.get_or_init(Default::default)
}

/// Whether this sidecar bridges a call to `user_pk` of `tenant` now.
pub fn user_in_use(tenant: &str, user_pk: u64) -> bool {
    let map = users_in_use().lock().unwrap_or_else(|e| e.into_inner());
    map.get(&(tenant.to_string(), user_pk))
        .is_some_and(|n| *n > 0)
}

/// Marks a user on a call here for as long as it lives (any bridged
/// person's leg should hold one).
#[derive(Debug)]
pub struct InUse {
    key: (String, u64),
}

impl InUse {
    pub fn new(tenant: &str, user_pk: u64) -> InUse {
        let key = (tenant.to_string(), user_pk);
        let mut map = users_in_use().lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(key.clone()).or_insert(0) += 1;
        InUse { key }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut map = users_in_use().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// One member leg being rung.
struct MemberLeg {
    call: CallHandle,
    bound: Option<BoundMedia>,
    neg: Option<Negotiated>,
}

/// The next event of any leg being rung (never, without one).
fn next_leg_event(
    legs: &mut BTreeMap<LegId, MemberLeg>,
) -> impl std::future::Future<Output = (LegId, Option<Event>)> + '_ {
    std::future::poll_fn(move |cx| {
        for (id, leg) in legs.iter_mut() {
            if let Poll::Ready(ev) = leg.call.poll_event(cx) {
                return Poll::Ready((*id, ev));
            }
        }
        Poll::Pending
    })
}

async fn command(
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Result<HangupCause, oneshot::error::RecvError> {
    match hangup {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

/// How far ahead of real time hold audio is queued to the media (which
/// sends a frame every 20 ms): never an empty slot, little delay.
const HOLD_LEAD_FRAMES: u64 = 3;

async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Runs a queue call from the ringing caller to `ended` (or to the agent).
pub async fn run_queue_call(
    mut offer: Offer,
    plan: QueuePlan,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: oneshot::Receiver<HangupCause>,
    transfers: mpsc::Receiver<super::bridge::TransferOrder>,
    incoming: IncomingCall,
) {
    if plan.overflow == QueueOverflow::Voicemail {
        // The message is the call's recording.
        offer.record = true;
    }
    let e = Emitter::new(&offer.call_id, tx.clone());
    let ctx = LegCtx {
        offer: &offer,
        tel: &tel,
        emitter: &e,
    };
    let mut timings = Timings {
        dispatched_ms: e.emit(EventKind::Dialing).await,
        ringing_ms: None,
        answered_ms: None,
        ended_ms: 0,
    };
    let record = super::sip::recording_path(&offer, &tel);
    let caller = match person::answer_caller(&ctx, incoming, record).await {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(call_id = %offer.call_id, %why, "queue: caller not answered");
            timings.ended_ms = now_ms();
            let end = ended(CallStatus::Failed, EndedReason::MediaLost, None, timings);
            super::sip::report_end(&offer, &tel, &tx, &e, end, timings.ended_ms).await;
            return;
        }
    };
    timings.answered_ms = Some(e.emit(EventKind::Answered).await);
    wait_in_queue(
        offer,
        plan,
        tel,
        tx,
        Some(hangup),
        transfers,
        caller,
        timings,
    )
    .await;
}

/// Runs a queue call for a callee an agent's call hands over answered
/// (a blind transfer to a queue, issue 16; the reverse of
/// [`super::sip::run_answered_call`]): no answer, no `dialing` or
/// `answered` again; the wait, the members and the overflow as for an
/// inbound queue call (an `agent` overflow hands them back to the offer's
/// agent, the one that transferred them). A voicemail overflow needs the
/// call's recording (the message is it): an unrecorded call hangs up
/// instead.
pub(crate) async fn run_transferred_queue_call(
    offer: Offer,
    mut plan: QueuePlan,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: Option<oneshot::Receiver<HangupCause>>,
    transfers: mpsc::Receiver<super::bridge::TransferOrder>,
    answered: super::sip::AnsweredCall,
) {
    if plan.overflow == QueueOverflow::Voicemail && !offer.record {
        plan.overflow = QueueOverflow::Hangup;
    }
    let caller = AnsweredLeg {
        call: answered.call,
        media: answered.media,
        info: None,
        answered_at: tokio::time::Instant::now(),
        neg: Box::new(answered.neg),
    };
    wait_in_queue(
        offer,
        plan,
        tel,
        tx,
        hangup,
        transfers,
        caller,
        answered.timings,
    )
    .await;
}

/// An answered caller's wait in the queue, to its end (or the agent).
#[allow(clippy::too_many_arguments)]
async fn wait_in_queue(
    offer: Offer,
    plan: QueuePlan,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: Option<oneshot::Receiver<HangupCause>>,
    transfers: mpsc::Receiver<super::bridge::TransferOrder>,
    caller: AnsweredLeg,
    mut timings: Timings,
) {
    let e = Emitter::new(&offer.call_id, tx.clone());
    let ctx = LegCtx {
        offer: &offer,
        tel: &tel,
        emitter: &e,
    };
    tracing::info!(call_id = %offer.call_id, queue_pk = plan.queue_pk, members = plan.members.len(), ring_all = plan.ring_all, "queue: caller answered, waiting");
    let mut io = QueueIo {
        ctx: &ctx,
        plan: &plan,
        caller,
        hangup,
        legs: BTreeMap::new(),
        bridged: None,
        player: HoldPlayer::new(),
        hold_clock: None,
    };
    let q = QueueCall::enter(&plan, now());
    let outcome = io.run(q).await;
    let QueueIo {
        caller, mut hangup, ..
    } = io;
    match outcome {
        Outcome::Agent => {
            tracing::info!(call_id = %offer.call_id, "queue: nobody answered; the agent takes the call");
            let answered = super::sip::AnsweredCall {
                call: caller.call,
                media: caller.media,
                neg: *caller.neg,
                timings,
            };
            super::sip::run_answered_call(offer, tel, tx, hangup, transfers, answered).await;
        }
        Outcome::Voicemail => {
            tracing::info!(call_id = %offer.call_id, "queue: nobody answered; voicemail");
            let out = person::take_message_on(
                &ctx,
                caller,
                hold_audio::VOICEMAIL_WORDS.to_string(),
                &mut hangup,
            )
            .await;
            match out.end {
                Some((status, reason)) => {
                    timings.ended_ms = now_ms();
                    let end = ended(status, reason, out.sip_code, timings);
                    super::sip::report_end(&offer, &tel, &tx, &e, end, timings.ended_ms).await;
                }
                None => call_done(&tx, &offer).await,
            }
        }
        Outcome::Ended {
            status,
            reason,
            sip_code,
        } => {
            let stats = caller.media.stop().await;
            drop(caller.call);
            tracing::info!(call_id = %offer.call_id, ?stats, ?status, ?reason, "queue call over");
            timings.ended_ms = now_ms();
            let end = ended(status, reason, sip_code, timings);
            super::sip::report_end(&offer, &tel, &tx, &e, end, timings.ended_ms).await;
        }
        Outcome::Stopping => {
            caller.call.hangup(EndedReason::HangupRequested).await;
            caller.media.stop().await;
            call_done(&tx, &offer).await;
        }
    }
}

fn ended(
    status: CallStatus,
    reason: EndedReason,
    sip_code: Option<u16>,
    timings: Timings,
) -> EventKind {
    EventKind::Ended {
        status,
        reason,
        sip_code,
        timings,
        retry_after_s: None,
    }
}

async fn call_done(tx: &mpsc::Sender<Msg>, offer: &Offer) {
    let _ = tx
        .send(Msg::CallDone {
            call_id: offer.call_id.clone(),
        })
        .await;
}

enum Outcome {
    Agent,
    Voicemail,
    Ended {
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
    },
    /// The sidecar stops at once: no `ended`.
    Stopping,
}

struct QueueIo<'a> {
    ctx: &'a LegCtx<'a>,
    plan: &'a QueuePlan,
    caller: AnsweredLeg,
    hangup: Option<oneshot::Receiver<HangupCause>>,
    legs: BTreeMap<LegId, MemberLeg>,
    /// The member bridged to the caller, and who they are.
    bridged: Option<(LegId, AnsweredLeg, InUse)>,
    player: HoldPlayer,
    /// Since when hold audio plays, and how many frames it queued.
    hold_clock: Option<(tokio::time::Instant, u64)>,
}

impl QueueIo<'_> {
    async fn run(&mut self, mut q: QueueCall) -> Outcome {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(out) = self.perform(&mut q).await {
                return out;
            }
            if let Some((leg, member, _)) = self.bridged.as_mut() {
                let leg = *leg;
                // Bridged: the relay runs until a leg ends or a command.
                match person::relay_until_one_ends(
                    &mut self.caller,
                    member,
                    command(&mut self.hangup),
                )
                .await
                {
                    RelayEnd::Ended { side: Side::A, end } => {
                        let (status, reason, code) = end
                            .map_or((CallStatus::Failed, EndedReason::MediaLost, None), |e| {
                                (e.status, e.reason, e.sip_code)
                            });
                        q.caller_ended(now(), status, reason, code);
                    }
                    RelayEnd::Ended { side: Side::B, end } => {
                        q.leg_ended(now(), leg, end.and_then(|e| e.sip_code));
                    }
                    RelayEnd::Aborted(r) => {
                        self.hangup = None;
                        if let Some(out) = self.commanded(&mut q, r).await {
                            return out;
                        }
                    }
                }
                continue;
            }
            let frames = self.caller.media.receivers().0;
            tokio::select! {
                ev = self.caller.call.next_event() => match ev {
                    Some(Event::Call(DialogEvent::Ended(end))) => {
                        q.caller_ended(now(), end.status, end.reason, end.sip_code);
                    }
                    Some(Event::Call(DialogEvent::MediaUpdated(neg))) => {
                        let _ = self.caller.media.set_remote(neg.remote_rtp, None).await;
                    }
                    Some(_) => {}
                    None => q.caller_ended(now(), CallStatus::Failed, EndedReason::MediaLost, None),
                },
                // What the caller says while waiting is only recorded.
                heard = frames.recv() => if heard.is_none() {
                    q.caller_ended(now(), CallStatus::Failed, EndedReason::MediaLost, None);
                },
                (leg, ev) = next_leg_event(&mut self.legs) => self.leg_event(&mut q, leg, ev),
                r = command(&mut self.hangup) => {
                    self.hangup = None;
                    if let Some(out) = self.commanded(&mut q, r).await {
                        return out;
                    }
                }
                _ = tick.tick() => self.play_hold(),
                _ = until(q.poll_timeout()) => q.handle_timeout(now()),
            }
        }
    }

    /// Queues what is due of the hold audio: as many frames as real time
    /// has passed since it started, [`HOLD_LEAD_FRAMES`] ahead (never
    /// waits: a full media queue drops the frame).
    fn play_hold(&mut self) {
        let now = tokio::time::Instant::now();
        loop {
            let (since, sent) = *self.hold_clock.get_or_insert((now, 0));
            let due = (now - since).as_millis() as u64 / 20 + HOLD_LEAD_FRAMES;
            if sent >= due {
                return;
            }
            let Some(f) = self.player.next_frame() else {
                // Nothing plays: the clock starts again with the next sound.
                self.hold_clock = None;
                return;
            };
            let _ = self.caller.media.sender().try_send(f);
            self.hold_clock = Some((since, sent + 1));
        }
    }

    /// The edge's hangup command (or its sender gone: the sidecar stops at
    /// once), fed to the queue.
    async fn commanded(
        &mut self,
        q: &mut QueueCall,
        r: Result<HangupCause, oneshot::error::RecvError>,
    ) -> Option<Outcome> {
        match r {
            Ok(HangupCause::Requested) => {
                q.hang_up(now(), CallStatus::Completed, EndedReason::HangupRequested)
            }
            Ok(HangupCause::Shutdown) => q.hang_up(now(), CallStatus::Failed, SHUTDOWN_REASON),
            Err(_) => {
                self.legs.clear();
                if let Some((_, member, _)) = self.bridged.take() {
                    person::close_leg(self.ctx, member, EndedReason::HangupRequested, None).await;
                }
                return Some(Outcome::Stopping);
            }
        }
        None
    }

    /// A member leg's dialog event (`None`: its dialog went away).
    fn leg_event(&mut self, q: &mut QueueCall, leg: LegId, ev: Option<Event>) {
        match ev {
            Some(Event::Call(DialogEvent::Ringing { .. })) => q.leg_ringing(now(), leg),
            Some(Event::Call(DialogEvent::Answered(neg))) => {
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.neg = Some(neg);
                }
                q.leg_answered(now(), leg);
            }
            Some(Event::Call(DialogEvent::Ended(end))) => {
                self.legs.remove(&leg);
                q.leg_ended(now(), leg, end.sip_code);
            }
            Some(_) => {}
            None => {
                self.legs.remove(&leg);
                q.leg_ended(now(), leg, None);
            }
        }
    }

    /// Performs the queue's actions until none is left; `Some` once the
    /// queue is over.
    async fn perform(&mut self, q: &mut QueueCall) -> Option<Outcome> {
        while let Some(action) = q.poll_action() {
            match action {
                QueueAction::Event(kind) => {
                    self.ctx.emitter.emit(kind).await;
                }
                QueueAction::Hold(on) => {
                    self.player.set_hold(on);
                    if !on {
                        self.player.clear();
                        self.hold_clock = None;
                        self.caller.media.flush();
                    }
                }
                QueueAction::Announce { position } => {
                    let words = hold_audio::position_words(position);
                    let pcm = super::sip::synthesize_message(self.ctx.offer, words)
                        .await
                        .unwrap_or_else(|| hold_audio::position_tones(position));
                    self.player.play(&pcm);
                }
                QueueAction::Ring { member, user_pk } => self.ring(q, member, user_pk).await,
                QueueAction::Drop { leg } => {
                    if let Some(l) = self.legs.remove(&leg) {
                        // CANCEL, or BYE if its answer crossed.
                        l.call.hangup(EndedReason::HangupRequested).await;
                    }
                    if self.bridged.as_ref().is_some_and(|b| b.0 == leg) {
                        if let Some((_, mut member, _)) = self.bridged.take() {
                            // The queue reports the leg's end itself.
                            member.info = None;
                            person::close_leg(self.ctx, member, EndedReason::CalleeHangup, None)
                                .await;
                        }
                    }
                }
                QueueAction::Connect { leg } => self.connect(q, leg),
                QueueAction::AgentTakesOver => {
                    self.legs.clear();
                    self.caller.media.flush();
                    return Some(Outcome::Agent);
                }
                QueueAction::Voicemail => {
                    self.legs.clear();
                    self.caller.media.flush();
                    return Some(Outcome::Voicemail);
                }
                QueueAction::HangupCaller(reason) => self.caller.call.hangup(reason).await,
                QueueAction::Finish {
                    status,
                    reason,
                    sip_code,
                } => {
                    self.legs.clear();
                    if let Some((_, mut member, _)) = self.bridged.take() {
                        member.info = None;
                        person::close_leg(self.ctx, member, reason, None).await;
                    }
                    return Some(Outcome::Ended {
                        status,
                        reason,
                        sip_code,
                    });
                }
            }
        }
        None
    }

    /// Dials every phone of `user_pk` registered here (none if this sidecar
    /// bridges them now), as the legs the queue gives.
    async fn ring(&mut self, q: &mut QueueCall, member: usize, user_pk: u64) {
        let (offer, tel) = (self.ctx.offer, self.ctx.tel);
        let contacts = if user_in_use(&offer.tenant_id, user_pk) {
            tracing::info!(call_id = %offer.call_id, user_pk, "queue: member on a call here; skipped");
            Vec::new()
        } else {
            tel.sip
                .phone_contacts(&offer.tenant_id, user_pk)
                .await
                .unwrap_or_default()
        };
        // The member's phone shows the caller, and which queue.
        let from_user = if super::tools::is_e164(&offer.phone) {
            offer.phone.clone()
        } else {
            tel.dial_plan().from_number.clone()
        };
        let plans = LegPlan::phones(&contacts, user_pk, &from_user, Some(self.plan.name.clone()));
        let ids = q.ring_started(now(), member, plans.len());
        // The queue decides when a phone has rung enough; this is a backstop.
        let ring_for = Duration::from_secs(u64::from(self.plan.max_wait_seconds) + 60);
        for (id, plan) in ids.into_iter().zip(&plans) {
            match person::dial(self.ctx, plan, ring_for).await {
                Ok(rung) => {
                    tracing::info!(call_id = %offer.call_id, user_pk, leg = id, "queue: ringing a member's phone");
                    self.legs.insert(
                        id,
                        MemberLeg {
                            call: rung.call,
                            bound: rung.bound,
                            neg: None,
                        },
                    );
                }
                Err(why) => {
                    tracing::warn!(call_id = %offer.call_id, user_pk, %why, "queue: member leg not dialled");
                    q.leg_ended(now(), id, None);
                }
            }
        }
    }

    /// Bridges the caller and leg `leg` (its media starts now; the caller's
    /// leg records both sides).
    fn connect(&mut self, q: &mut QueueCall, leg: LegId) {
        let Some(mut l) = self.legs.remove(&leg) else {
            q.leg_ended(now(), leg, None);
            return;
        };
        let started = l
            .neg
            .take()
            .ok_or_else(|| "no answer".to_string())
            .and_then(|neg| {
                person::start_leg_media(l.bound.take(), &neg, None).map(|media| (media, neg))
            });
        let (media, neg) = match started {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!(call_id = %self.ctx.offer.call_id, %why, "queue: member media did not start");
                q.leg_ended(now(), leg, None);
                return;
            }
        };
        let user_pk = q.member_of(leg).unwrap_or_default();
        tracing::info!(call_id = %self.ctx.offer.call_id, user_pk, leg, "queue: member answered; bridged");
        self.player = HoldPlayer::new();
        let member = AnsweredLeg {
            call: l.call,
            media,
            // The queue reports the member's `leg` events.
            info: None,
            answered_at: tokio::time::Instant::now(),
            neg: Box::new(neg),
        };
        let in_use = InUse::new(&self.ctx.offer.tenant_id, user_pk);
        self.bridged = Some((leg, member, in_use));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_in_use_while_any_of_their_calls_holds_a_mark() {
        let (tenant, other) = ("ten_inuse_test", "ten_inuse_other");
        assert!(!user_in_use(tenant, 5));
        let a = InUse::new(tenant, 5);
        let b = InUse::new(tenant, 5);
        assert!(user_in_use(tenant, 5));
        assert!(!user_in_use(tenant, 6), "another user");
        assert!(!user_in_use(other, 5), "another tenant's user 5");
        drop(a);
        assert!(user_in_use(tenant, 5), "one call left");
        drop(b);
        assert!(!user_in_use(tenant, 5));
    }
}
