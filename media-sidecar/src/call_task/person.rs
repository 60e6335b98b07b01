//! A person's calls (issue 16), the tokio driver: calls without an engine
//! whose other end is a directory person's SIP phone.
//!
//! - [`run_ring_user`]: an inbound call the edge routes to a person
//!   (`InboundDecision::RingUser`). The caller's INVITE stays ringing (180:
//!   ringback) while one INVITE goes to each of the person's contacts
//!   registered here ([`ring_until_answered`], the pure
//!   [`RingFork`] deciding); the first phone to answer wins, the caller is
//!   answered (200, our SDP) and the two legs are bridged
//!   ([`relay_until_one_ends`]: 20 ms frames through
//!   [`transfer::Relay`], each leg's media decoding and encoding its own
//!   codec), recorded both sides when the offer says `record` (right: the
//!   caller, left: the person). Nobody answering: the forward number,
//!   else voicemail, else `480`/`no_answer` (`486`/`busy` when the phones
//!   said busy), per [`after_nobody_answered`].
//! - [`run_click_to_call`]: an outbound offer with
//!   `connect: click_to_call`: the person's phones ring first (showing the
//!   destination as the caller); once one answers, the destination is
//!   dialled through the trunks with the offer's caller ID (the person
//!   hearing ringback meanwhile: [`super::ring_user::Ringback`]) and
//!   bridged (right: the destination, left: the person).
//!
//! The building blocks ([`LegPlan`], [`ring_until_answered`],
//! [`answer_caller`], [`relay_until_one_ends`], [`close_leg`]) are what a
//! queue call reuses: ring some contacts until one answers, then relay two
//! answered legs until one ends.
//!
//! Events: every phone or number dialled reports `leg` events (`dialing`,
//! `ringing`, `answered`, `ended` with its `user_pk` or `destination`,
//! `sip_code` and `talk_ms`). The call itself reports `answered` (the
//! caller answered; for click-to-call: `dialing`, `ringing`, `answered` of
//! the destination) and `ended`: `completed` with `callee_hangup` when the
//! call's callee (the inbound caller, the click-to-call destination) hung
//! up, `agent_hangup` when the person's side did (on a person's call the
//! person stands where the agent does); `completed` / `voicemail` after a
//! message. An inbound call is created `ringing` by the edge, so no
//! `ringing` is reported for it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use voxline_shared::sidecar_link::{Connect, EventKind, LegStep, Offer, RingUser, Timings};
use voxline_shared::{CallStatus, EndedReason};

use super::ring_user::{
    after_nobody_answered, bridged_end, ForkAction, HungUp, MessageTake, NoAnswerNext, RingFork,
    MAX_FORKED_LEGS, MESSAGE_MAX, MESSAGE_SILENCE,
};
use super::transfer::{self, LegTarget, Relay};
use super::{Emitter, HangupCause, SHUTDOWN_REASON};
use crate::lease::driver::{now_ms, Msg};
use crate::media::{self, MediaConfig, MediaHandle, PayloadMap};
use crate::registrations::PhoneContact;
use crate::sip::sdp::Negotiated;
use crate::sip::transport::Transport;
use crate::sip::udp::{CallHandle, Event, IncomingCall};
use crate::sip::{DialogEnd, DialogEvent};
use crate::telephony::Telephony;

/// The driver's clock (tokio's, so paused-time tests see the same time).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Whom a leg's `leg` events name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegInfo {
    /// A phone of this directory user.
    pub user_pk: Option<u64>,
    /// A number dialled (a forward, a click-to-call destination).
    pub destination: Option<String>,
}

/// One leg to dial: where, as whom, and whom its events name.
#[derive(Debug, Clone)]
pub struct LegPlan {
    pub target: LegTarget,
    /// Sent to this address rather than the contact URI's (a phone's
    /// REGISTER source, behind NAT).
    pub send_to: Option<SocketAddr>,
    /// The From user part (the caller ID the phone or callee sees).
    pub from_user: String,
    pub from_display: Option<String>,
    pub info: LegInfo,
}

impl LegPlan {
    /// One leg per registered contact of user `user_pk` (at most
    /// [`MAX_FORKED_LEGS`]), showing `from_user` as the caller.
    pub fn phones(
        contacts: &[PhoneContact],
        user_pk: u64,
        from_user: &str,
        from_display: Option<String>,
    ) -> Vec<LegPlan> {
        contacts
            .iter()
            .take(MAX_FORKED_LEGS)
            .map(|c| LegPlan {
                target: LegTarget::Contact(c.uri.clone()),
                // Over UDP requests go where the REGISTER came from.
                send_to: (c.transport == Transport::Udp).then_some(c.source),
                from_user: from_user.to_string(),
                from_display: from_display.clone(),
                info: LegInfo {
                    user_pk: Some(user_pk),
                    destination: None,
                },
            })
            .collect()
    }

    /// A number through the trunks, showing `from_user` as the caller.
    pub fn number(number: &str, from_user: &str) -> LegPlan {
        LegPlan {
            target: LegTarget::Number(number.to_string()),
            send_to: None,
            from_user: from_user.to_string(),
            from_display: None,
            info: LegInfo {
                user_pk: None,
                destination: Some(number.to_string()),
            },
        }
    }
}

/// What the legs of one call share: its offer, the telephony, its events.
pub(crate) struct LegCtx<'a> {
    pub offer: &'a Offer,
    pub tel: &'a Telephony,
    pub emitter: &'a Emitter,
}

impl LegCtx<'_> {
    /// Reports a `leg` event.
    pub(crate) async fn leg_event(
        &self,
        info: &LegInfo,
        step: LegStep,
        sip_code: Option<u16>,
        talk_ms: u64,
    ) {
        self.emitter
            .emit(EventKind::Leg {
                step,
                user_pk: info.user_pk,
                destination: info.destination.clone(),
                sip_code,
                talk_ms,
            })
            .await;
    }
}

/// A leg that answered, its media running.
pub(crate) struct AnsweredLeg {
    pub call: CallHandle,
    pub media: MediaHandle,
    /// `None`: the call's own leg (the inbound caller), which reports no
    /// `leg` events.
    pub info: Option<LegInfo>,
    pub answered_at: tokio::time::Instant,
    /// What its answer settled (a queue's caller handed to the agent needs it).
    pub neg: Box<Negotiated>,
}

/// How [`ring_until_answered`] ended.
pub(crate) enum RingOutcome<A> {
    /// The first leg to answer, its media started.
    Answered(AnsweredLeg),
    /// Nobody answered (in time): the fork's verdict, and the last leg's
    /// own end if one ended by itself.
    Refused {
        sip_code: u16,
        status: CallStatus,
        reason: EndedReason,
        last: Option<DialogEnd>,
    },
    /// `abort` finished first: every leg was cancelled.
    Aborted(A),
}

/// How [`ring_until_answered`] reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct RingOptions {
    /// The winner's media records here (right: the leg, left: what it hears).
    pub record: Option<PathBuf>,
    /// The first leg ringing is the call's own `ringing` event too.
    pub call_ringing: bool,
}

/// A leg being rung.
pub(crate) struct RingingLeg {
    pub call: CallHandle,
    pub bound: Option<media::driver::BoundMedia>,
    rang: bool,
}

/// Dials one leg (its own RTP ports; the call's `max_seconds` as its cap).
pub(crate) async fn dial(
    ctx: &LegCtx<'_>,
    plan: &LegPlan,
    ring_for: Duration,
) -> Result<RingingLeg, String> {
    let (bound, sdp, dial_plan) = super::sip::bind_media(ctx.offer, ctx.tel)
        .map_err(|_| "no RTP ports for the leg".to_string())?;
    let (trunks, user) = match &plan.target {
        LegTarget::Number(n) => (dial_plan.trunks(), n.clone()),
        LegTarget::Contact(uri) => {
            let (mut trunk, user) =
                transfer::contact_leg(uri).ok_or_else(|| format!("cannot dial contact {uri:?}"))?;
            if let Some(addr) = plan.send_to {
                trunk.addr = addr;
            }
            (vec![trunk], user)
        }
    };
    let mut spec = super::sip::call_spec(ctx.offer, trunks, &plan.from_user, &dial_plan.cfg, sdp);
    spec.to_user = user;
    // The leg's caller ID is the plan's, not the offer's.
    spec.from_user = plan.from_user.clone();
    spec.from_display = plan.from_display.clone();
    // The fork decides when ringing is over; this is only a backstop.
    spec.ring_timeout = ring_for + Duration::from_secs(5);
    let call = ctx
        .tel
        .sip
        .start_call(spec)
        .await
        .map_err(|e| e.to_string())?;
    Ok(RingingLeg {
        call,
        bound: Some(bound),
        rang: false,
    })
}

/// Starts a leg's media, recording to `record` if given.
pub(crate) fn start_leg_media(
    bound: Option<media::driver::BoundMedia>,
    neg: &Negotiated,
    record: Option<PathBuf>,
) -> Result<MediaHandle, String> {
    let bound = bound.ok_or("media already started")?;
    let payload = PayloadMap {
        audio: neg.pt,
        telephone_event: neg.dtmf_pt,
        comfort_noise: None,
    };
    let mut cfg = MediaConfig::new(neg.codec, payload, neg.remote_rtp);
    cfg.record_path = record;
    cfg.srtp = neg.srtp.as_ref().map(|s| s.keys.clone());
    bound.start(cfg).map_err(|e| e.to_string())
}

/// The next event of any leg still ringing (never, without one).
fn next_leg_event(
    legs: &mut [Option<RingingLeg>],
) -> impl Future<Output = (usize, Option<Event>)> + '_ {
    std::future::poll_fn(move |cx| {
        for (i, leg) in legs.iter_mut().enumerate() {
            if let Some(l) = leg {
                if let Poll::Ready(ev) = l.call.poll_event(cx) {
                    return Poll::Ready((i, ev));
                }
            }
        }
        Poll::Pending
    })
}

/// Rings `plans` at once until one answers (its media started: see
/// [`RingOptions`]), every one failed, `ring_timeout` passed, or `abort`
/// finished (every leg then cancelled). The legs' `leg` events are
/// reported; `ringing_ms` gets when the first one rang. The losers are
/// cancelled (or hung up, if their answer crossed).
pub(crate) async fn ring_until_answered<A, F: Future<Output = A>>(
    ctx: &LegCtx<'_>,
    plans: &[LegPlan],
    ring_timeout: Duration,
    opts: &RingOptions,
    ringing_ms: &mut Option<u64>,
    abort: F,
) -> RingOutcome<A> {
    let n = plans.len().min(MAX_FORKED_LEGS);
    let mut legs: Vec<Option<RingingLeg>> = (0..n).map(|_| None).collect();
    let (mut fork, first) = RingFork::start(n, now(), ring_timeout);
    let mut pending: std::collections::VecDeque<ForkAction> = first.into();
    let mut answer: Option<(usize, Negotiated)> = None;
    let mut last: Option<DialogEnd> = None;
    tokio::pin!(abort);
    loop {
        while let Some(action) = pending.pop_front() {
            match action {
                ForkAction::Dial { leg } => {
                    let plan = &plans[leg];
                    ctx.leg_event(&plan.info, LegStep::Dialing, None, 0).await;
                    match dial(ctx, plan, ring_timeout).await {
                        Ok(l) => legs[leg] = Some(l),
                        Err(why) => {
                            tracing::warn!(call_id = %ctx.offer.call_id, leg, %why, "leg not dialled");
                            ctx.leg_event(&plan.info, LegStep::Ended, None, 0).await;
                            pending.extend(fork.leg_failed(leg, None));
                        }
                    }
                }
                ForkAction::Ringing => {
                    ringing_ms.get_or_insert_with(now_ms);
                    if opts.call_ringing {
                        ctx.emitter.emit(EventKind::Ringing).await;
                    }
                }
                ForkAction::Drop { leg } => {
                    if let Some(l) = legs[leg].take() {
                        l.call.hangup(EndedReason::HangupRequested).await;
                        ctx.leg_event(&plans[leg].info, LegStep::Ended, None, 0)
                            .await;
                    }
                }
                ForkAction::Connect { leg } => {
                    let Some(mut l) = legs[leg].take() else {
                        continue;
                    };
                    let neg = match answer.take() {
                        Some((i, neg)) if i == leg => neg,
                        _ => continue,
                    };
                    let info = plans[leg].info.clone();
                    match start_leg_media(l.bound.take(), &neg, opts.record.clone()) {
                        Ok(media) => {
                            ctx.leg_event(&info, LegStep::Answered, None, 0).await;
                            return RingOutcome::Answered(AnsweredLeg {
                                call: l.call,
                                media,
                                info: Some(info),
                                answered_at: tokio::time::Instant::now(),
                                neg: Box::new(neg),
                            });
                        }
                        Err(why) => {
                            tracing::warn!(call_id = %ctx.offer.call_id, %why, "leg media failed");
                            l.call.hangup(EndedReason::MediaLost).await;
                            ctx.leg_event(&info, LegStep::Ended, None, 0).await;
                            return RingOutcome::Refused {
                                sip_code: 480,
                                status: CallStatus::Failed,
                                reason: EndedReason::MediaLost,
                                last: None,
                            };
                        }
                    }
                }
                ForkAction::Refuse {
                    sip_code,
                    status,
                    reason,
                } => {
                    return RingOutcome::Refused {
                        sip_code,
                        status,
                        reason,
                        last,
                    }
                }
                // Only from `caller_cancelled`, handled where `abort` fires.
                ForkAction::CallerGone => {}
            }
        }
        let deadline = fork.poll_timeout();
        tokio::select! {
            (i, ev) = next_leg_event(&mut legs) => match ev {
                Some(Event::Call(DialogEvent::Ringing { .. })) => {
                    if let Some(l) = legs[i].as_mut() {
                        if !l.rang {
                            l.rang = true;
                            ctx.leg_event(&plans[i].info, LegStep::Ringing, None, 0).await;
                        }
                    }
                    pending.extend(fork.leg_ringing(i));
                }
                Some(Event::Call(DialogEvent::Answered(neg))) => {
                    answer = Some((i, neg));
                    pending.extend(fork.leg_answered(i));
                }
                Some(Event::Call(DialogEvent::Ended(end))) => {
                    legs[i] = None;
                    ctx.leg_event(&plans[i].info, LegStep::Ended, end.sip_code, 0).await;
                    pending.extend(fork.leg_failed(i, end.sip_code));
                    last = Some(end);
                }
                Some(_) => {}
                None => {
                    legs[i] = None;
                    ctx.leg_event(&plans[i].info, LegStep::Ended, None, 0).await;
                    pending.extend(fork.leg_failed(i, None));
                }
            },
            a = &mut abort => {
                for action in fork.caller_cancelled() {
                    if let ForkAction::Drop { leg } = action {
                        if let Some(l) = legs[leg].take() {
                            l.call.hangup(EndedReason::HangupRequested).await;
                            ctx.leg_event(&plans[leg].info, LegStep::Ended, None, 0).await;
                        }
                    }
                }
                return RingOutcome::Aborted(a);
            }
            _ = until(deadline) => pending.extend(fork.handle_timeout(now())),
        }
    }
}

/// Answers a ringing inbound call (200 with our SDP; our BYE at the
/// offer's `max_seconds`) and starts its media, recording to `record`.
pub(crate) async fn answer_caller(
    ctx: &LegCtx<'_>,
    incoming: IncomingCall,
    record: Option<PathBuf>,
) -> Result<AnsweredLeg, String> {
    let (bound, sdp, _) =
        super::sip::bind_media(ctx.offer, ctx.tel).map_err(|_| "no RTP ports".to_string())?;
    let max = Duration::from_secs(u64::from(ctx.offer.max_seconds));
    let mut call = incoming.answer(sdp, Some(max)).await?;
    // Its first event is the answer, with what was negotiated.
    loop {
        match call.next_event().await {
            Some(Event::Call(DialogEvent::Answered(neg))) => {
                let media = start_leg_media(Some(bound), &neg, record)?;
                return Ok(AnsweredLeg {
                    call,
                    media,
                    info: None,
                    answered_at: tokio::time::Instant::now(),
                    neg: Box::new(neg),
                });
            }
            Some(Event::Call(DialogEvent::Ended(end))) => {
                return Err(format!("the caller's leg ended: {}", end.detail))
            }
            Some(_) => {}
            None => return Err("the caller's leg is gone".into()),
        }
    }
}

/// Which of the two legs of [`relay_until_one_ends`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

/// How [`relay_until_one_ends`] ended.
pub(crate) enum RelayEnd<X> {
    /// Leg `side`'s dialog ended (its BYE, or our cap), as `end` says.
    Ended { side: Side, end: Option<DialogEnd> },
    /// `abort` finished first; both legs are still up.
    Aborted(X),
}

/// Relays audio between two answered legs, both ways, in 20 ms frames
/// ([`Relay`]; each leg's media transcodes its own codec) until either
/// leg's dialog ends or `abort` finishes. Follows a leg's re-INVITE to a
/// new address. Neither leg is hung up here: see [`close_leg`].
pub(crate) async fn relay_until_one_ends<X, F: Future<Output = X>>(
    a: &mut AnsweredLeg,
    b: &mut AnsweredLeg,
    abort: F,
) -> RelayEnd<X> {
    use transfer::Leg;
    let mut relay = Relay::default();
    let (to_a, to_b) = (a.media.sender(), b.media.sender());
    let (mut a_open, mut b_open) = (true, true);
    tokio::pin!(abort);
    loop {
        tokio::select! {
            ev = a.call.next_event() => match ev {
                Some(Event::Call(DialogEvent::Ended(end))) => {
                    return RelayEnd::Ended { side: Side::A, end: Some(end) }
                }
                Some(Event::Call(DialogEvent::MediaUpdated(neg))) => {
                    let _ = a.media.set_remote(neg.remote_rtp, None).await;
                }
                Some(_) => {}
                None => return RelayEnd::Ended { side: Side::A, end: None },
            },
            ev = b.call.next_event() => match ev {
                Some(Event::Call(DialogEvent::Ended(end))) => {
                    return RelayEnd::Ended { side: Side::B, end: Some(end) }
                }
                Some(Event::Call(DialogEvent::MediaUpdated(neg))) => {
                    let _ = b.media.set_remote(neg.remote_rtp, None).await;
                }
                Some(_) => {}
                None => return RelayEnd::Ended { side: Side::B, end: None },
            },
            pcm = a.media.recv(), if a_open => match pcm {
                Some(pcm) => {
                    relay.heard(Leg::Callee, &pcm);
                    while let Some(f) = relay.next_frame(Leg::Transferee) {
                        // Never waits: a leg that cannot keep up loses audio.
                        let _ = to_b.try_send(f);
                    }
                }
                None => a_open = false,
            },
            pcm = b.media.recv(), if b_open => match pcm {
                Some(pcm) => {
                    relay.heard(Leg::Transferee, &pcm);
                    while let Some(f) = relay.next_frame(Leg::Callee) {
                        let _ = to_a.try_send(f);
                    }
                }
                None => b_open = false,
            },
            x = &mut abort => return RelayEnd::Aborted(x),
        }
    }
}

/// Hangs up an answered leg (BYE, unless its dialog ended already: then
/// nothing goes out), stops its media (closing its recording) and reports
/// its `leg` `ended` with how long it talked.
pub(crate) async fn close_leg(
    ctx: &LegCtx<'_>,
    leg: AnsweredLeg,
    reason: EndedReason,
    sip_code: Option<u16>,
) {
    let talk_ms = leg.answered_at.elapsed().as_millis() as u64;
    leg.call.hangup(reason).await;
    let stats = leg.media.stop().await;
    tracing::debug!(call_id = %ctx.offer.call_id, ?stats, "leg media stopped");
    if let Some(info) = &leg.info {
        ctx.leg_event(info, LegStep::Ended, sip_code, talk_ms).await;
    }
}

/// What stopped a ring or a bridge besides the legs themselves.
enum Stop {
    /// The edge's hangup command (`None`: the sidecar is stopping at once).
    Command(Option<HangupCause>),
    /// The inbound caller cancelled before an answer.
    CallerGone,
    /// The person's answered phone hung up (click-to-call, while the
    /// destination rings).
    PersonGone(Option<DialogEnd>),
}

/// The edge's hangup command, once.
async fn command(hangup: &mut Option<oneshot::Receiver<HangupCause>>) -> Stop {
    let r = match hangup.as_mut() {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    };
    *hangup = None;
    Stop::Command(r)
}

/// The command, or the ringing caller's CANCEL.
async fn caller_or_command(
    incoming: &mut IncomingCall,
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Stop {
    let caller = async {
        loop {
            match incoming.next_event().await {
                Some(Event::Call(DialogEvent::Ended(_))) | None => return Stop::CallerGone,
                Some(_) => {}
            }
        }
    };
    tokio::select! {
        s = caller => s,
        s = command(hangup) => s,
    }
}

/// The command, or the answered leg `leg` ending.
async fn leg_or_command(
    leg: &mut CallHandle,
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Stop {
    let ended = async {
        loop {
            match leg.next_event().await {
                Some(Event::Call(DialogEvent::Ended(end))) => return Stop::PersonGone(Some(end)),
                None => return Stop::PersonGone(None),
                Some(_) => {}
            }
        }
    };
    tokio::select! {
        s = ended => s,
        s = command(hangup) => s,
    }
}

/// The `ended` of a call the edge told to hang up: `None` when the sidecar
/// is stopping at once (no `ended`).
fn commanded_end(cause: Option<HangupCause>, answered: bool) -> Option<(CallStatus, EndedReason)> {
    match (cause?, answered) {
        (HangupCause::Shutdown, _) => Some((CallStatus::Failed, SHUTDOWN_REASON)),
        (HangupCause::Requested, false) => {
            Some((CallStatus::Cancelled, EndedReason::HangupRequested))
        }
        (HangupCause::Requested, true) => {
            Some((CallStatus::Completed, EndedReason::HangupRequested))
        }
    }
}

/// A call's outcome: its `ended` fields, or `None` (no `ended`).
pub(crate) struct Outcome {
    /// `None`: the sidecar stops at once (no `ended`).
    pub end: Option<(CallStatus, EndedReason)>,
    pub sip_code: Option<u16>,
}

impl Outcome {
    fn of(status: CallStatus, reason: EndedReason, sip_code: Option<u16>) -> Outcome {
        Outcome {
            end: Some((status, reason)),
            sip_code,
        }
    }
}

/// Reports the outcome (and uploads the recording), or only says the call
/// is done when there is no `ended` to report.
async fn finish(
    offer: &Offer,
    tel: &Telephony,
    tx: &mpsc::Sender<Msg>,
    e: &Emitter,
    mut t: Timings,
    out: Outcome,
) {
    let Some((status, reason)) = out.end else {
        let _ = tx
            .send(Msg::CallDone {
                call_id: offer.call_id.clone(),
            })
            .await;
        return;
    };
    t.ended_ms = now_ms();
    let kind = EventKind::Ended {
        status,
        reason,
        sip_code: out.sip_code,
        timings: t,
        retry_after_s: None,
    };
    super::sip::report_end(offer, tel, tx, e, kind, t.ended_ms).await;
}

/// The most an inbound caller is kept ringing beyond the person's ring
/// timeout (a forward's ringing).
fn caller_ring_budget(ring: &RingUser, tel: &Telephony) -> Duration {
    let own = Duration::from_secs(u64::from(ring.ring_timeout_seconds.max(1)));
    let forward = ring
        .forward_number
        .as_ref()
        .map(|_| Duration::from_secs(u64::from(tel.dial_plan().cfg.ring_timeout_seconds)))
        .unwrap_or_default();
    own + forward + Duration::from_secs(5)
}

/// Runs an inbound call routed to a person (`ring_user`) to its end.
pub async fn run_ring_user(
    offer: Offer,
    ring: RingUser,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: oneshot::Receiver<HangupCause>,
    mut incoming: IncomingCall,
) {
    let e = Emitter::new(&offer.call_id, tx.clone());
    let ctx = LegCtx {
        offer: &offer,
        tel: &tel,
        emitter: &e,
    };
    let started = now_ms();
    // The edge created the call ringing: the caller hears ringback already.
    let mut t = Timings {
        dispatched_ms: started,
        ringing_ms: Some(started),
        answered_ms: None,
        ended_ms: 0,
    };
    let mut hangup = Some(hangup);
    incoming.keep_ringing(caller_ring_budget(&ring, &tel)).await;
    let contacts = tel
        .sip
        .phone_contacts(&offer.tenant_id, ring.user_pk)
        .await
        .unwrap_or_default();
    tracing::info!(call_id = %offer.call_id, user_pk = ring.user_pk, phones = contacts.len(), "ringing a person");
    let plans = LegPlan::phones(&contacts, ring.user_pk, &offer.phone, None);
    let ring_timeout = Duration::from_secs(u64::from(ring.ring_timeout_seconds.max(1)));
    let mut unused = None;
    let mut outcome = ring_until_answered(
        &ctx,
        &plans,
        ring_timeout,
        &RingOptions::default(),
        &mut unused,
        caller_or_command(&mut incoming, &mut hangup),
    )
    .await;
    let mut forwarded = false;
    let out = loop {
        match outcome {
            RingOutcome::Answered(person) => {
                break bridge_caller(&ctx, incoming, person, &mut t, &mut hangup).await;
            }
            RingOutcome::Aborted(stop) => {
                break ringing_stopped(incoming, stop).await;
            }
            RingOutcome::Refused {
                sip_code,
                status,
                reason,
                last,
            } => match after_nobody_answered(&ring, forwarded) {
                NoAnswerNext::Forward(number) => {
                    forwarded = true;
                    tracing::info!(call_id = %offer.call_id, "nobody answered: forwarding");
                    let plan = [LegPlan::number(&number, &offer.phone)];
                    let for_ =
                        Duration::from_secs(u64::from(tel.dial_plan().cfg.ring_timeout_seconds));
                    outcome = ring_until_answered(
                        &ctx,
                        &plan,
                        for_,
                        &RingOptions::default(),
                        &mut unused,
                        caller_or_command(&mut incoming, &mut hangup),
                    )
                    .await;
                }
                NoAnswerNext::Voicemail => {
                    break take_message(&ctx, incoming, &ring, &mut t, &mut hangup).await;
                }
                NoAnswerNext::Refuse => {
                    // A forward's own outcome is the call's (a busy forward: busy).
                    let (code, status, reason) = match (&last, forwarded) {
                        (Some(end), true) if end.status != CallStatus::Completed => {
                            (end.sip_code.unwrap_or(sip_code), end.status, end.reason)
                        }
                        _ => (sip_code, status, reason),
                    };
                    let code = if (400..700).contains(&code) {
                        code
                    } else {
                        480
                    };
                    incoming.refuse(code).await;
                    break Outcome::of(status, reason, Some(code));
                }
            },
        }
    };
    finish(&offer, &tel, &tx, &e, t, out).await;
}

/// The caller gave up, or the edge said to hang up, while phones rang.
async fn ringing_stopped(incoming: IncomingCall, stop: Stop) -> Outcome {
    match stop {
        Stop::CallerGone => {
            Outcome::of(CallStatus::Cancelled, EndedReason::CalleeHangup, Some(487))
        }
        Stop::Command(cause) => {
            incoming.refuse(480).await;
            Outcome {
                end: commanded_end(cause, false),
                sip_code: None,
            }
        }
        Stop::PersonGone(_) => Outcome::of(CallStatus::Failed, EndedReason::MediaLost, None),
    }
}

/// A phone answered: answer the caller and bridge them until either hangs up.
async fn bridge_caller(
    ctx: &LegCtx<'_>,
    incoming: IncomingCall,
    person: AnsweredLeg,
    t: &mut Timings,
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Outcome {
    let record = super::sip::recording_path(ctx.offer, ctx.tel);
    let mut caller = match answer_caller(ctx, incoming, record).await {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(call_id = %ctx.offer.call_id, %why, "caller not answered");
            close_leg(ctx, person, EndedReason::MediaLost, None).await;
            return Outcome::of(CallStatus::Failed, EndedReason::MediaLost, None);
        }
    };
    t.answered_ms = Some(ctx.emitter.emit(EventKind::Answered).await);
    let mut person = person;
    // On a call here: queues skip them meanwhile.
    let _in_use = person
        .info
        .as_ref()
        .and_then(|i| i.user_pk)
        .map(|pk| super::queue_call::InUse::new(&ctx.offer.tenant_id, pk));
    let end = relay_until_one_ends(&mut caller, &mut person, command(hangup)).await;
    bridged_outcome(ctx, caller, person, end).await
}

/// Closes both legs of a bridge (`a`: the call's callee, `b`: the
/// person's side) and says how the call ended.
async fn bridged_outcome(
    ctx: &LegCtx<'_>,
    a: AnsweredLeg,
    b: AnsweredLeg,
    end: RelayEnd<Stop>,
) -> Outcome {
    match end {
        RelayEnd::Ended { side, end } => {
            let who = match side {
                Side::A => HungUp::Callee,
                Side::B => HungUp::Person,
            };
            let (status, reason) = bridged_end(who, end.as_ref());
            let code = end.as_ref().and_then(|e| e.sip_code);
            // The one that ended reports its own code; the other gets our BYE.
            let (a_code, b_code) = match side {
                Side::A => (code, None),
                Side::B => (None, code),
            };
            close_leg(ctx, a, reason, a_code).await;
            close_leg(ctx, b, reason, b_code).await;
            Outcome::of(status, reason, None)
        }
        RelayEnd::Aborted(stop) => {
            let cause = match stop {
                Stop::Command(c) => c,
                _ => None,
            };
            let reason = match cause {
                Some(HangupCause::Shutdown) => SHUTDOWN_REASON,
                _ => EndedReason::HangupRequested,
            };
            close_leg(ctx, a, reason, None).await;
            close_leg(ctx, b, reason, None).await;
            Outcome {
                end: commanded_end(cause, true),
                sip_code: None,
            }
        }
    }
}

/// The greeting of a person's voicemail.
fn greeting_text(ring: &RingUser) -> String {
    let name: String = ring
        .display_name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '\'')
        .take(64)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "The person you called is not available. Please leave a message after the tone.".into()
    } else {
        format!("You have reached {name}. Please leave a message after the tone.")
    }
}

/// A `hz` sine of `ms`, 8 kHz.
fn tone(hz: f64, ms: usize, amplitude: f64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / 8_000.0).sin()) as i16)
        .collect()
}

/// Voicemail: answer the caller, play the greeting (flite with the local
/// engine, else a short two-tone prompt) and a beep, then record them
/// until they hang up, [`MESSAGE_MAX`] passes or [`MESSAGE_SILENCE`] of
/// silence. The message is the call's recording.
async fn take_message(
    ctx: &LegCtx<'_>,
    incoming: IncomingCall,
    ring: &RingUser,
    t: &mut Timings,
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Outcome {
    let record = super::sip::recording_path(ctx.offer, ctx.tel);
    let caller = match answer_caller(ctx, incoming, record).await {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(call_id = %ctx.offer.call_id, %why, "caller not answered for voicemail");
            return Outcome::of(CallStatus::Failed, EndedReason::MediaLost, None);
        }
    };
    t.answered_ms = Some(ctx.emitter.emit(EventKind::Answered).await);
    take_message_on(ctx, caller, greeting_text(ring), hangup).await
}

/// Voicemail on an answered caller (a queue's overflow too): `greeting`,
/// a beep, then the message as [`take_message`] records it.
pub(crate) async fn take_message_on(
    ctx: &LegCtx<'_>,
    caller: AnsweredLeg,
    greeting: String,
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Outcome {
    let mut caller = caller;
    let mut prompt = super::sip::synthesize_message(ctx.offer, greeting)
        .await
        .unwrap_or_else(|| {
            let mut p = tone(440.0, 300, 6_000.0);
            p.extend(vec![0; 8 * 150]);
            p.extend(tone(660.0, 300, 6_000.0));
            p
        });
    prompt.extend(vec![0i16; 8 * 300]);
    prompt.extend(tone(1_000.0, 500, 8_000.0));
    let frames: Vec<Vec<i16>> = prompt
        .chunks(crate::media::codec::FRAME_8K)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(crate::media::codec::FRAME_8K, 0);
            f
        })
        .collect();
    let sender = caller.media.sender();
    let mut queued = frames.into_iter();
    let mut next = queued.next();
    // The beep has played once the last frame is queued and sent: the
    // media sends 20 ms per frame, so the take starts after that much.
    let mut take: Option<MessageTake> = None;
    let mut prompt_done_at: Option<std::time::Instant> = None;
    let (status, reason, stop_reason) = loop {
        let deadline = match (&take, prompt_done_at) {
            (Some(m), _) => Some(m.poll_timeout()),
            (None, Some(at)) => Some(at),
            (None, None) => None,
        };
        tokio::select! {
            r = async { sender.send(next.clone().unwrap_or_default()).await }, if next.is_some() => {
                if r.is_err() {
                    next = None;
                } else {
                    next = queued.next();
                }
                if next.is_none() && prompt_done_at.is_none() {
                    // What is queued still plays (the media holds ~1 s).
                    prompt_done_at = Some(now() + Duration::from_millis(1_000));
                }
            }
            ev = caller.call.next_event() => match ev {
                Some(Event::Call(DialogEvent::Ended(end))) => {
                    if end.reason == EndedReason::MaxDurationReached {
                        break (CallStatus::Completed, EndedReason::MaxDurationReached, None);
                    }
                    break (CallStatus::Completed, EndedReason::Voicemail, None);
                }
                Some(_) => {}
                None => break (CallStatus::Completed, EndedReason::Voicemail, None),
            },
            pcm = caller.media.recv() => match pcm {
                Some(pcm) => {
                    if let Some(m) = take.as_mut() {
                        m.heard(now(), &pcm);
                    }
                }
                None => break (CallStatus::Failed, EndedReason::MediaLost, Some(EndedReason::MediaLost)),
            },
            stop = command(hangup) => {
                let cause = match stop { Stop::Command(c) => c, _ => None };
                match commanded_end(cause, true) {
                    Some((s, r)) => break (s, r, Some(r)),
                    None => {
                        close_leg(ctx, caller, EndedReason::HangupRequested, None).await;
                        return Outcome { end: None, sip_code: None };
                    }
                }
            }
            _ = until(deadline) => {
                match take.as_ref() {
                    None => {
                        tracing::debug!(call_id = %ctx.offer.call_id, "voicemail: recording the message");
                        take = Some(MessageTake::start(now(), MESSAGE_MAX, MESSAGE_SILENCE));
                    }
                    Some(m) => if let Some(why) = m.is_over(now()) {
                        tracing::info!(call_id = %ctx.offer.call_id, ?why, "voicemail: message over");
                        break (CallStatus::Completed, EndedReason::Voicemail, Some(EndedReason::Voicemail));
                    }
                }
            }
        }
    };
    // Our BYE when we ended it; after the caller's, nothing goes out.
    let bye = stop_reason.unwrap_or(EndedReason::Voicemail);
    close_leg(ctx, caller, bye, None).await;
    Outcome::of(status, reason, None)
}

/// Runs a click-to-call offer (`connect: click_to_call`) to its end: the
/// person's phones, then the destination, bridged.
pub async fn run_click_to_call(
    offer: Offer,
    tel: Arc<Telephony>,
    tx: mpsc::Sender<Msg>,
    hangup: oneshot::Receiver<HangupCause>,
) {
    let Some(Connect::ClickToCall { user }) = offer.connect.clone() else {
        return super::sip::run_sip_call(offer, tel, tx, hangup).await;
    };
    let e = Emitter::new(&offer.call_id, tx.clone());
    let ctx = LegCtx {
        offer: &offer,
        tel: &tel,
        emitter: &e,
    };
    let mut t = Timings {
        dispatched_ms: now_ms(),
        ringing_ms: None,
        answered_ms: None,
        ended_ms: 0,
    };
    let mut hangup = Some(hangup);
    let out = click_to_call(&ctx, &user, &mut t, &mut hangup).await;
    finish(&offer, &tel, &tx, &e, t, out).await;
}

async fn click_to_call(
    ctx: &LegCtx<'_>,
    user: &RingUser,
    t: &mut Timings,
    hangup: &mut Option<oneshot::Receiver<HangupCause>>,
) -> Outcome {
    let (offer, tel) = (ctx.offer, ctx.tel);
    let contacts = tel
        .sip
        .phone_contacts(&offer.tenant_id, user.user_pk)
        .await
        .unwrap_or_default();
    tracing::info!(call_id = %offer.call_id, user_pk = user.user_pk, phones = contacts.len(), "click-to-call: ringing the person");
    // Their phone shows whom they are about to call.
    let plans = LegPlan::phones(&contacts, user.user_pk, &offer.phone, None);
    let ring_timeout = Duration::from_secs(u64::from(user.ring_timeout_seconds.max(1)));
    let mut person_rang = None;
    let person = match ring_until_answered(
        ctx,
        &plans,
        ring_timeout,
        &RingOptions::default(),
        &mut person_rang,
        command(hangup),
    )
    .await
    {
        RingOutcome::Answered(p) => p,
        RingOutcome::Refused {
            sip_code,
            status,
            reason,
            ..
        } => return Outcome::of(status, reason, Some(sip_code)),
        RingOutcome::Aborted(stop) => {
            let cause = match stop {
                Stop::Command(c) => c,
                _ => None,
            };
            return Outcome {
                end: commanded_end(cause, false),
                sip_code: None,
            };
        }
    };
    // On a call here: queues skip them meanwhile.
    let _in_use = super::queue_call::InUse::new(&offer.tenant_id, user.user_pk);
    // The destination, through the trunks, with the call's caller ID.
    let dial_plan = tel.dial_plan();
    let from = match offer.caller_number.as_deref() {
        Some(n) if super::tools::is_e164(n) => n.to_string(),
        _ => dial_plan.from_number.clone(),
    };
    let mut plan = LegPlan::number(&offer.phone, &from);
    plan.from_display = offer.caller_name.clone();
    let opts = RingOptions {
        record: super::sip::recording_path(offer, tel),
        call_ringing: true,
    };
    ctx.emitter.emit(EventKind::Dialing).await;
    let ring_for = Duration::from_secs(u64::from(dial_plan.cfg.ring_timeout_seconds));
    let mut person = person;
    // The person hears ringback until the destination answers or fails.
    let to_person = person.media.sender();
    let ringback = tokio::spawn({
        let to_person = to_person.clone();
        async move {
            let mut tone = super::ring_user::Ringback::default();
            // `send` waits while a second is queued: paced by the media.
            while to_person.send(tone.next_frame()).await.is_ok() {}
        }
    });
    let outcome = ring_until_answered(
        ctx,
        std::slice::from_ref(&plan),
        ring_for,
        &opts,
        &mut t.ringing_ms,
        leg_or_command(&mut person.call, hangup),
    )
    .await;
    ringback.abort();
    let _ = ringback.await;
    // What ringback is still queued never plays.
    to_person.flush();
    match outcome {
        RingOutcome::Answered(mut callee) => {
            t.answered_ms = Some(ctx.emitter.emit(EventKind::Answered).await);
            let end = relay_until_one_ends(&mut callee, &mut person, command(hangup)).await;
            bridged_outcome(ctx, callee, person, end).await
        }
        RingOutcome::Refused {
            sip_code,
            status,
            reason,
            last,
        } => {
            close_leg(ctx, person, EndedReason::HangupRequested, None).await;
            match last {
                // The destination's own answer (busy, declined, no answer...).
                Some(end) => Outcome::of(end.status, end.reason, end.sip_code),
                None => Outcome::of(status, reason, Some(sip_code)),
            }
        }
        RingOutcome::Aborted(stop) => match stop {
            Stop::PersonGone(end) => {
                close_leg(
                    ctx,
                    person,
                    EndedReason::AgentHangup,
                    end.and_then(|e| e.sip_code),
                )
                .await;
                Outcome::of(CallStatus::Cancelled, EndedReason::AgentHangup, None)
            }
            Stop::Command(cause) => {
                let reason = match cause {
                    Some(HangupCause::Shutdown) => SHUTDOWN_REASON,
                    _ => EndedReason::HangupRequested,
                };
                close_leg(ctx, person, reason, None).await;
                Outcome {
                    end: commanded_end(cause, false),
                    sip_code: None,
                }
            }
            Stop::CallerGone => {
                close_leg(ctx, person, EndedReason::HangupRequested, None).await;
                Outcome::of(CallStatus::Cancelled, EndedReason::HangupRequested, None)
            }
        },
    }
}
