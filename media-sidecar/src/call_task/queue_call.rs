//! The tokio driver of a queue call (issue 16): an inbound call the edge
//! put in a queue ([`QueuePlan`]). It answers the caller, runs the caller's
//! media (recorded when the offer says `record`, or for a voicemail
//! overflow), plays [`HoldPlayer`]'s audio at the media's pace, dials the
//! members' phones registered here as the pure [`QueueCall`] says, bridges
//! the winner through a [`Relay`], and on an `agent` overflow hands the
//! answered caller to the bridge ([`super::sip::run_answered_call`]).
//! Every decision is [`QueueCall`]'s; this file only does IO.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use voxline_shared::sidecar_link::{EventKind, Offer, QueueOverflow, QueuePlan, Timings};
use voxline_shared::{CallStatus, EndedReason};

use super::hold_audio::{self, HoldPlayer};
use super::queue::{LegId, QueueAction, QueueCall};
use super::transfer::{Leg, Relay};
use super::{Emitter, HangupCause, SHUTDOWN_REASON};
use crate::lease::driver::{now_ms, Msg};
use crate::media::{driver::BoundMedia, MediaHandle};
use crate::sip::sdp::Negotiated;
use crate::sip::udp::{CallHandle, Event, IncomingCall};
use crate::sip::DialogEvent;
use crate::telephony::Telephony;

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// How long the caller's answer (the ACK's `Answered`) may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

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

/// One member leg being rung: its dialog's events come through a task
/// (aborting it drops the handle: CANCEL or BYE).
struct MemberLeg {
    events: JoinHandle<()>,
    bound: Option<BoundMedia>,
    neg: Option<Negotiated>,
}

impl Drop for MemberLeg {
    fn drop(&mut self) {
        self.events.abort();
    }
}

/// The member bridged to the caller.
struct Bridged {
    leg: LegId,
    _member: MemberLeg,
    media: MediaHandle,
    _in_use: InUse,
}

async fn member_frame(b: &mut Option<Bridged>) -> Option<Vec<i16>> {
    match b {
        Some(b) => b.media.recv().await,
        None => std::future::pending().await,
    }
}

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

/// Runs a queue call from the ringing caller to `ended` (or to the agent).
pub async fn run_queue_call(
    mut offer: Offer,
    plan: QueuePlan,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: oneshot::Receiver<HangupCause>,
    incoming: IncomingCall,
) {
    if plan.overflow == QueueOverflow::Voicemail {
        // The message is the call's recording.
        offer.record = true;
    }
    let e = Emitter::new(&offer.call_id, tx.clone());
    let mut timings = Timings {
        dispatched_ms: e.emit(EventKind::Dialing).await,
        ringing_ms: None,
        answered_ms: None,
        ended_ms: 0,
    };
    let answered = answer_caller(&offer, &tel, incoming).await;
    let (caller, media, neg) = match answered {
        Ok(a) => a,
        Err(reason) => {
            timings.ended_ms = now_ms();
            let end = EventKind::Ended {
                status: CallStatus::Failed,
                reason,
                sip_code: None,
                timings,
                retry_after_s: None,
            };
            e.emit_at(end, timings.ended_ms).await;
            let _ = tx
                .send(Msg::CallDone {
                    call_id: offer.call_id,
                })
                .await;
            return;
        }
    };
    timings.answered_ms = Some(e.emit(EventKind::Answered).await);
    tracing::info!(call_id = %offer.call_id, queue_pk = plan.queue_pk, members = plan.members.len(), ring_all = plan.ring_all, "queue: caller answered, waiting");
    let (leg_tx, leg_rx) = mpsc::channel(64);
    let mut io = QueueIo {
        offer: &offer,
        plan: &plan,
        tel: &tel,
        emitter: &e,
        caller,
        media,
        hangup: Some(hangup),
        legs: HashMap::new(),
        leg_tx,
        leg_rx,
        bridged: None,
        relay: Relay::default(),
        player: HoldPlayer::new(),
        dropped: HashSet::new(),
    };
    let q = QueueCall::enter(&plan, now());
    let outcome = io.run(q).await;
    let QueueIo {
        caller,
        media,
        hangup,
        ..
    } = io;
    match outcome {
        Outcome::Agent => {
            tracing::info!(call_id = %offer.call_id, "queue: nobody answered; the agent takes the call");
            let answered = super::sip::AnsweredCall {
                call: caller,
                media,
                neg,
                timings,
            };
            super::sip::run_answered_call(offer, tel, tx, hangup, answered).await;
        }
        Outcome::Ended {
            status,
            reason,
            sip_code,
        } => {
            drop(caller);
            let stats = media.stop().await;
            tracing::info!(call_id = %offer.call_id, ?stats, ?status, ?reason, "queue call over");
            timings.ended_ms = now_ms();
            let end = EventKind::Ended {
                status,
                reason,
                sip_code,
                timings,
                retry_after_s: None,
            };
            e.emit_at(end, timings.ended_ms).await;
            super::sip::upload_recording(&offer, &tel, &tx).await;
            let _ = tx
                .send(Msg::CallDone {
                    call_id: offer.call_id,
                })
                .await;
        }
        Outcome::Stopping => {
            drop(caller);
            media.stop().await;
            let _ = tx
                .send(Msg::CallDone {
                    call_id: offer.call_id,
                })
                .await;
        }
    }
}

/// 200 with our SDP to the caller, then its media (recorded per the offer).
async fn answer_caller(
    offer: &Offer,
    tel: &Telephony,
    incoming: IncomingCall,
) -> Result<(CallHandle, MediaHandle, Negotiated), EndedReason> {
    let (bound, sdp, _plan) = super::sip::bind_media(offer, tel)?;
    let max = Duration::from_secs(u64::from(offer.max_seconds));
    let mut call = incoming.answer(sdp, Some(max)).await.map_err(|why| {
        tracing::warn!(call_id = %offer.call_id, %why, "queue: inbound call not answered");
        EndedReason::MediaLost
    })?;
    let neg = loop {
        match tokio::time::timeout(ANSWER_WITHIN, call.next_event()).await {
            Ok(Some(Event::Call(DialogEvent::Answered(neg)))) => break neg,
            Ok(Some(Event::Call(DialogEvent::Ended(end)))) => {
                tracing::info!(call_id = %offer.call_id, detail = %end.detail, "queue: caller gone before the answer");
                return Err(EndedReason::MediaLost);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(EndedReason::MediaLost),
        }
    };
    let media = super::sip::start_media(offer, tel, Some(bound), &neg).map_err(|why| {
        tracing::warn!(call_id = %offer.call_id, %why, "queue: caller media did not start");
        EndedReason::MediaLost
    })?;
    Ok((call, media, neg))
}

enum Outcome {
    Agent,
    Ended {
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
    },
    /// The sidecar stops at once: no `ended`.
    Stopping,
}

struct QueueIo<'a> {
    offer: &'a Offer,
    plan: &'a QueuePlan,
    tel: &'a Telephony,
    emitter: &'a Emitter,
    caller: CallHandle,
    media: MediaHandle,
    hangup: Option<oneshot::Receiver<HangupCause>>,
    legs: HashMap<LegId, MemberLeg>,
    leg_tx: mpsc::Sender<(LegId, Option<Event>)>,
    leg_rx: mpsc::Receiver<(LegId, Option<Event>)>,
    bridged: Option<Bridged>,
    relay: Relay,
    player: HoldPlayer,
    /// Legs dropped by us: their late events mean nothing.
    dropped: HashSet<LegId>,
}

impl QueueIo<'_> {
    async fn run(&mut self, mut q: QueueCall) -> Outcome {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(out) = self.perform(&mut q).await {
                return out;
            }
            let (frames, _events) = self.media.receivers();
            tokio::select! {
                ev = self.caller.next_event() => match ev {
                    Some(Event::Call(DialogEvent::Ended(end))) => {
                        q.caller_ended(now(), end.status, end.reason, end.sip_code);
                    }
                    Some(Event::Call(DialogEvent::MediaUpdated(neg))) => {
                        let _ = self.media.set_remote(neg.remote_rtp, None).await;
                    }
                    Some(_) => {}
                    None => q.caller_ended(now(), CallStatus::Failed, EndedReason::MediaLost, None),
                },
                heard = frames.recv() => match heard {
                    Some(pcm) => {
                        if let Some(b) = &self.bridged {
                            self.relay.heard(Leg::Callee, &pcm);
                            while let Some(f) = self.relay.next_frame(Leg::Transferee) {
                                // Never waits: a leg that cannot keep up loses audio.
                                let _ = b.media.sender().try_send(f);
                            }
                        }
                    }
                    None => q.caller_ended(now(), CallStatus::Failed, EndedReason::MediaLost, None),
                },
                pcm = member_frame(&mut self.bridged) => match pcm {
                    Some(pcm) => {
                        self.relay.heard(Leg::Transferee, &pcm);
                        while let Some(f) = self.relay.next_frame(Leg::Callee) {
                            let _ = self.media.sender().try_send(f);
                        }
                    }
                    None => {
                        // The member's media stopped: as the leg ending.
                        if let Some(b) = self.bridged.take() {
                            q.leg_ended(now(), b.leg, None);
                        }
                    }
                },
                Some((leg, ev)) = self.leg_rx.recv() => self.leg_event(&mut q, leg, ev).await,
                r = command(&mut self.hangup) => {
                    self.hangup = None;
                    match r {
                        Ok(HangupCause::Requested) => q.hang_up(now(), CallStatus::Completed, EndedReason::HangupRequested),
                        Ok(HangupCause::Shutdown) => q.hang_up(now(), CallStatus::Failed, SHUTDOWN_REASON),
                        Err(_) => {
                            self.caller.hangup(EndedReason::HangupRequested).await;
                            self.legs.clear();
                            self.bridged = None;
                            return Outcome::Stopping;
                        }
                    }
                }
                _ = tick.tick(), if self.bridged.is_none() => {
                    if let Some(f) = self.player.next_frame() {
                        let _ = self.media.sender().try_send(f);
                    }
                }
                _ = until(q.poll_timeout()) => q.handle_timeout(now()),
            }
        }
    }

    /// A member leg's dialog event (`None`: its dialog went away).
    async fn leg_event(&mut self, q: &mut QueueCall, leg: LegId, ev: Option<Event>) {
        if self.dropped.contains(&leg) {
            return;
        }
        match ev {
            Some(Event::Call(DialogEvent::Ringing { .. })) => q.leg_ringing(now(), leg),
            Some(Event::Call(DialogEvent::Answered(neg))) => {
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.neg = Some(neg);
                }
                q.leg_answered(now(), leg);
            }
            Some(Event::Call(DialogEvent::MediaUpdated(neg))) => {
                if let Some(b) = self.bridged.as_ref().filter(|b| b.leg == leg) {
                    let _ = b.media.set_remote(neg.remote_rtp, None).await;
                }
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
                    self.emitter.emit(kind).await;
                }
                QueueAction::Hold(on) => {
                    self.player.set_hold(on);
                    if !on {
                        self.player.clear();
                        self.media.flush();
                    }
                }
                QueueAction::Announce { position } => {
                    let pcm = self.spoken(hold_audio::position_words(position)).await;
                    let pcm = pcm.unwrap_or_else(|| hold_audio::position_tones(position));
                    self.player.play(&pcm);
                }
                QueueAction::Voicemail => {
                    if let Some(pcm) = self.spoken(hold_audio::VOICEMAIL_WORDS.to_string()).await {
                        self.player.play(&pcm);
                    }
                    self.player.play(&hold_audio::beep());
                }
                QueueAction::Ring { member, user_pk } => self.ring(q, member, user_pk).await,
                QueueAction::Drop { leg } => {
                    self.dropped.insert(leg);
                    // Its task goes, its handle with it: CANCEL or BYE.
                    self.legs.remove(&leg);
                    if self.bridged.as_ref().is_some_and(|b| b.leg == leg) {
                        if let Some(b) = self.bridged.take() {
                            b.media.stop().await;
                        }
                    }
                }
                QueueAction::Connect { leg } => self.connect(q, leg),
                QueueAction::AgentTakesOver => {
                    self.legs.clear();
                    self.player = HoldPlayer::new();
                    self.media.flush();
                    return Some(Outcome::Agent);
                }
                QueueAction::HangupCaller(reason) => self.caller.hangup(reason).await,
                QueueAction::Finish {
                    status,
                    reason,
                    sip_code,
                } => {
                    self.legs.clear();
                    if let Some(b) = self.bridged.take() {
                        b.media.stop().await;
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

    /// Words in the offer's voice, or `None` without flite.
    async fn spoken(&self, text: String) -> Option<Vec<i16>> {
        super::sip::synthesize_message(self.offer, text).await
    }

    /// Dials every phone of `user_pk` registered here (none if this sidecar
    /// bridges them now), as the legs the queue gives.
    async fn ring(&mut self, q: &mut QueueCall, member: usize, user_pk: u64) {
        let tenant = &self.offer.tenant_id;
        let contacts = if user_in_use(tenant, user_pk) {
            tracing::info!(call_id = %self.offer.call_id, user_pk, "queue: member on a call here; skipped");
            Vec::new()
        } else {
            self.tel
                .sip
                .phone_contacts(tenant, user_pk)
                .await
                .unwrap_or_default()
        };
        let mut prepared = Vec::new();
        for c in contacts {
            let Some((mut trunk, user)) = super::transfer::contact_leg(&c.uri) else {
                tracing::warn!(call_id = %self.offer.call_id, user_pk, uri = %c.uri, "queue: cannot dial this contact");
                continue;
            };
            // Requests go where its REGISTER came from (NAT), over its transport.
            trunk.addr = c.source;
            trunk.transport = c.transport;
            let Ok((bound, sdp, plan)) = super::sip::bind_media(self.offer, self.tel) else {
                continue;
            };
            let mut spec =
                super::sip::call_spec(self.offer, vec![trunk], &plan.from_number, &plan.cfg, sdp);
            spec.to_user = user;
            // The member's phone shows the caller, and which queue.
            if super::tools::is_e164(&self.offer.phone) {
                spec.from_user = self.offer.phone.clone();
            }
            spec.from_display = Some(self.plan.name.clone());
            // The queue decides when a phone has rung enough.
            spec.ring_timeout = Duration::from_secs(u64::from(self.plan.max_wait_seconds) + 60);
            spec.max_duration = None;
            prepared.push((bound, spec));
        }
        let ids = q.ring_started(now(), member, prepared.len());
        for (id, (bound, spec)) in ids.into_iter().zip(prepared) {
            match self.tel.sip.start_call(spec).await {
                Ok(mut call) => {
                    tracing::info!(call_id = %self.offer.call_id, user_pk, leg = id, "queue: ringing a member's phone");
                    let tx = self.leg_tx.clone();
                    let events = tokio::spawn(async move {
                        loop {
                            let ev = call.next_event().await;
                            let last =
                                matches!(ev, None | Some(Event::Call(DialogEvent::Ended(_))));
                            if tx.send((id, ev)).await.is_err() || last {
                                break;
                            }
                        }
                        // The handle goes here: a leg still up is hung up.
                    });
                    self.legs.insert(
                        id,
                        MemberLeg {
                            events,
                            bound: Some(bound),
                            neg: None,
                        },
                    );
                }
                Err(err) => {
                    tracing::warn!(call_id = %self.offer.call_id, user_pk, error = %err, "queue: member leg not dialled");
                    q.leg_ended(now(), id, None);
                }
            }
        }
    }

    /// Bridges the caller and leg `leg` (its media starts now).
    fn connect(&mut self, q: &mut QueueCall, leg: LegId) {
        let started = self.legs.remove(&leg).and_then(|mut l| {
            let neg = l.neg.take()?;
            match super::sip::start_media_unrecorded(l.bound.take(), &neg) {
                Ok(m) => Some((l, m)),
                Err(why) => {
                    tracing::warn!(call_id = %self.offer.call_id, %why, "queue: member media did not start");
                    None
                }
            }
        });
        let Some((member, media)) = started else {
            q.leg_ended(now(), leg, None);
            return;
        };
        let user_pk = q.member_of(leg).unwrap_or_default();
        tracing::info!(call_id = %self.offer.call_id, user_pk, leg, "queue: member answered; bridged");
        self.player = HoldPlayer::new();
        self.relay = Relay::default();
        self.bridged = Some(Bridged {
            leg,
            _member: member,
            media,
            _in_use: InUse::new(&self.offer.tenant_id, user_pk),
        });
    }
}
