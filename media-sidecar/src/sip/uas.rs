//! One inbound call's dialog, our side answering (UAS; issue 16), sans-IO:
//! fed the caller's requests and time, it returns what to send and
//! [`DialogEvent`]s, the same events an outbound dialog ([`super::call`])
//! gives, so a call task runs either alike.
//!
//! ```text
//!  INVITE  --> 100 Trying, 180 Ringing (at once: ringback while the edge decides)
//!  answer(media) --> 200 + SDP answer (retransmitted, Timer G, until the ACK;
//!                    Timer H without one ends the call)      => Answered(Negotiated)
//!  refuse(code)  --> 4xx/5xx (retransmitted until its ACK)  => Ended
//!  CANCEL before the answer --> 200 (CANCEL) + 487 (INVITE)  => Ended(cancelled)
//!  BYE from the caller --> 200                               => Ended(completed, callee_hangup)
//!  hangup(reason) once answered --> our BYE (Timer E/F)      => Ended(completed, reason)
//! ```
//!
//! Requests go to the address the INVITE came from (only a trunk's is
//! taken, see [`super::endpoint::EndpointConfig::inbound_trunks`]).

use std::collections::VecDeque;
use std::net::SocketAddr;

use voxline_shared::{CallStatus, EndedReason};

use super::call::{dtmf_relay_body, DialogEnd, DialogEvent, Transmit, MAX_INFO_KEYS};
use super::msg::{response_to, Message};
use super::sdp::{self, Negotiated, OfferConfig, SdpError};
use super::transaction::{NonInviteClient, Timers, TxEvent};
use crate::random::Random;

/// A ringing call neither answered nor refused within this (the edge's
/// decision lost, the driver gone) is refused with 480.
pub const DECIDE_WITHIN_MS: u64 = 10_000;

/// The longest [`Uas::keep_ringing`] keeps a call ringing (a ring timeout
/// plus a forward's ringing; RFC 3261's Timer C is 3 minutes).
pub const MAX_RINGING_MS: u64 = 170_000;

/// Where the dialog stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasPhase {
    /// 180 sent; waiting for [`Uas::answer`] or [`Uas::refuse`].
    Ringing,
    /// 200 sent; retransmitted until the ACK.
    Answered,
    /// The ACK came.
    Confirmed,
    /// A final non-2xx sent; retransmitted until its ACK.
    Refused,
    /// Our BYE is out.
    Terminating,
    /// Over; lingering only to absorb retransmissions.
    Done,
}

/// A final response (or our BYE) being retransmitted.
#[derive(Debug)]
struct Resend {
    bytes: Vec<u8>,
    next: u64,
    interval: u64,
    /// Give up (Timer H for a final response, F for a request).
    deadline: u64,
}

/// The UAS dialog of one inbound INVITE.
pub struct Uas {
    invite: Message,
    from: SocketAddr,
    to_tag: String,
    local: SocketAddr,
    timers: Timers,
    user_agent: String,
    phase: UasPhase,
    /// The provisional answer, repeated to INVITE retransmissions before the final one.
    provisional: Vec<u8>,
    /// The final answer to the INVITE (repeated to INVITE retransmissions).
    final_bytes: Option<Vec<u8>>,
    resend: Option<Resend>,
    /// Our BYE's branch, to match its answer.
    bye_branch: Option<String>,
    /// The CSeq of our last request in the dialog (INFO, BYE).
    local_cseq: u32,
    /// Keys still to send as SIP INFO ([`Uas::send_dtmf_info`]); the
    /// first is in flight on `info`.
    info_keys: VecDeque<char>,
    info_key_ms: u32,
    info: Option<NonInviteClient>,
    negotiated: Option<Negotiated>,
    /// Our SDP answer (repeated in a session-refresh re-INVITE's 200).
    answer_sdp: Option<String>,
    /// Forget the dialog after this (lingering to absorb retransmissions).
    linger_until: Option<u64>,
    /// While ringing: refuse with 480 at this time ([`DECIDE_WITHIN_MS`]).
    decide_by: u64,
    /// Once answered: our BYE at this time (`max_duration_reached`).
    max_until: Option<u64>,
    ended: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DialogEvent>,
    random: Box<dyn Random>,
}

impl std::fmt::Debug for Uas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uas")
            .field("call_id", &self.invite.call_id())
            .field("phase", &self.phase)
            .finish()
    }
}

fn end(status: CallStatus, reason: EndedReason, sip_code: Option<u16>, detail: &str) -> DialogEnd {
    DialogEnd {
        status,
        reason,
        sip_code,
        try_next_trunk: false,
        detail: detail.into(),
        retry_after_s: None,
    }
}

impl Uas {
    /// Takes the INVITE from `from` and answers 100 and 180 at once.
    /// `local` is our advertised SIP address (Contact, Via of our BYE).
    pub fn new(
        invite: &Message,
        from: SocketAddr,
        local: SocketAddr,
        timers: Timers,
        now: u64,
        mut random: Box<dyn Random>,
    ) -> Uas {
        let to_tag = random.hex(8);
        let mut uas = Uas {
            invite: invite.clone(),
            from,
            to_tag,
            local,
            timers,
            user_agent: concat!("voxline/", env!("CARGO_PKG_VERSION")).to_string(),
            phase: UasPhase::Ringing,
            provisional: Vec::new(),
            final_bytes: None,
            resend: None,
            bye_branch: None,
            local_cseq: 0,
            info_keys: VecDeque::new(),
            info_key_ms: 0,
            info: None,
            negotiated: None,
            answer_sdp: None,
            linger_until: None,
            decide_by: now.saturating_add(DECIDE_WITHIN_MS),
            max_until: None,
            ended: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            random,
        };
        let trying = uas.response(100).to_bytes();
        uas.send(trying);
        let mut ringing = uas.response(180);
        ringing.push("Contact", uas.contact());
        uas.provisional = ringing.to_bytes();
        uas.send(uas.provisional.clone());
        uas
    }

    pub fn phase(&self) -> UasPhase {
        self.phase
    }

    pub fn call_id(&self) -> &str {
        self.invite.call_id()
    }

    fn contact(&self) -> String {
        format!("<sip:voxline@{}>", self.local)
    }

    fn response(&self, code: u16) -> Message {
        let mut r = response_to(&self.invite, code, Some(&self.to_tag));
        r.push("Server", self.user_agent.clone());
        r
    }

    fn send(&mut self, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            dest: self.from,
            bytes,
        });
    }

    fn finish(&mut self, now: u64, e: DialogEnd) {
        if !self.ended {
            self.ended = true;
            self.events.push_back(DialogEvent::Ended(e));
        }
        self.phase = UasPhase::Done;
        self.resend = None;
        self.info = None;
        self.info_keys.clear();
        let linger = if self.timers.reliable {
            0
        } else {
            self.timers.t64()
        };
        self.linger_until = Some(now.saturating_add(linger));
    }

    /// Sends `bytes` as the INVITE's final answer, retransmitted (UDP)
    /// until the ACK (Timer G), given up after Timer H.
    fn send_final(&mut self, now: u64, bytes: Vec<u8>) {
        self.final_bytes = Some(bytes.clone());
        self.send(bytes.clone());
        if !self.timers.reliable {
            self.resend = Some(Resend {
                bytes,
                next: now.saturating_add(self.timers.t1),
                interval: self.timers.t1,
                deadline: now.saturating_add(self.timers.t64()),
            });
        } else {
            // No retransmissions; still wait for the ACK for Timer H.
            self.resend = Some(Resend {
                bytes: Vec::new(),
                next: u64::MAX,
                interval: 0,
                deadline: now.saturating_add(self.timers.t64()),
            });
        }
    }

    /// Answers with 200 and our SDP answer to the INVITE's offer, built
    /// from `media` (our RTP address, codecs in preference). The call is
    /// [`DialogEvent::Answered`] from now (the caller may send media at
    /// once). An offer we cannot take gets 488 and ends the call.
    pub fn answer(&mut self, now: u64, media: &OfferConfig) -> Result<(), SdpError> {
        if self.phase != UasPhase::Ringing {
            return Ok(());
        }
        let negotiated = if self.invite.has_sdp() {
            sdp::negotiate(media, &self.invite.body)
        } else {
            // A delayed offer (INVITE without SDP) is not taken yet.
            Err(SdpError::NoAudio)
        };
        let negotiated = match negotiated {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(sip_call_id = %self.call_id(), error = %e, "inbound offer not acceptable: 488");
                self.refuse(now, 488);
                if let Some(DialogEvent::Ended(end)) = self.events.back_mut() {
                    end.detail = e.code().into();
                }
                return Err(e);
            }
        };
        // The answer names only the codec chosen (RFC 3264 6.1), with its
        // number from the offer, and telephone-event when both have it.
        let mut cfg = media.clone();
        cfg.codecs = vec![negotiated.codec];
        if negotiated.codec == sdp::Codec::Opus {
            cfg.opus_pt = negotiated.pt;
        }
        cfg.dtmf_pt = negotiated.dtmf_pt;
        let body = sdp::build_with(&cfg, Some(&negotiated), 1, negotiated.direction.reversed());
        let mut ok = self.response(200);
        ok.push("Contact", self.contact());
        ok.push("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO");
        ok.push("Content-Type", "application/sdp");
        ok.body = body.clone().into_bytes();
        self.answer_sdp = Some(body);
        self.phase = UasPhase::Answered;
        self.send_final(now, ok.to_bytes());
        self.negotiated = Some(negotiated.clone());
        self.events.push_back(DialogEvent::Answered(negotiated));
        Ok(())
    }

    /// Once answered, the call lasts at most `ms` from `now`: then our BYE
    /// ends it `completed` / `max_duration_reached`.
    pub fn limit(&mut self, now: u64, ms: u64) {
        self.max_until = Some(now.saturating_add(ms));
    }

    /// Keeps a ringing call ringing until at least `until` (ms) instead of
    /// refusing it at [`DECIDE_WITHIN_MS`]: the call task rings a person's
    /// phones for their ring timeout (issue 16). Bounded by
    /// [`MAX_RINGING_MS`] from now; nothing once answered or refused.
    pub fn keep_ringing(&mut self, now: u64, until: u64) {
        if self.phase == UasPhase::Ringing {
            let until = until.min(now.saturating_add(MAX_RINGING_MS));
            self.decide_by = self.decide_by.max(until);
        }
    }

    /// Refuses the call with a final `code` (4xx-6xx), before any answer.
    pub fn refuse(&mut self, now: u64, code: u16) {
        if self.phase != UasPhase::Ringing {
            return;
        }
        let r = self.response(code).to_bytes();
        self.phase = UasPhase::Refused;
        self.send_final(now, r);
        let e = end(
            CallStatus::Failed,
            EndedReason::Rejected,
            Some(code),
            "refused",
        );
        self.ended = true;
        self.events.push_back(DialogEvent::Ended(e));
    }

    /// Our side ends the call: before the answer, 480; once answered, BYE.
    pub fn hangup(&mut self, now: u64, reason: EndedReason) {
        match self.phase {
            UasPhase::Ringing => self.refuse(now, 480),
            UasPhase::Answered | UasPhase::Confirmed => self.send_bye(now, reason),
            _ => {}
        }
    }

    /// A request of ours in the dialog (the next CSeq) and its branch;
    /// `None` when the INVITE had no usable From.
    fn dialog_request(&mut self, method: &str) -> Option<(Message, String)> {
        let caller = self.invite.from()?;
        // The caller's Contact is its target; its Record-Route our route set.
        let target = self
            .invite
            .contact_uri()
            .unwrap_or_else(|| caller.uri.clone());
        let branch = format!("z9hG4bK{}", self.random.hex(12));
        let mut m = Message::request(method, &target);
        m.push(
            "Via",
            format!("SIP/2.0/UDP {};branch={branch};rport", self.local),
        );
        m.push("Max-Forwards", "70");
        for r in self.invite.record_route() {
            m.push("Route", r);
        }
        // From and To swap: we are the INVITE's To (with our tag).
        let to = self.invite.header("To").unwrap_or_default();
        m.push("From", format!("{to};tag={}", self.to_tag));
        m.push("To", self.invite.header("From").unwrap_or_default());
        m.push("Call-ID", self.invite.call_id());
        self.local_cseq += 1;
        m.push("CSeq", format!("{} {method}", self.local_cseq));
        m.push("User-Agent", self.user_agent.clone());
        Some((m, branch))
    }

    /// Presses `keys` (checked by the caller) as SIP INFO
    /// `application/dtmf-relay`, one transaction per key, each after the
    /// previous one's 2xx; [`DialogEvent::KeysSent`] once all are answered
    /// (at once with an error before the answer or after the end).
    pub fn send_dtmf_info(&mut self, now: u64, keys: &str, key_ms: u32) {
        let refuse = |u: &mut Uas, why: &str| {
            u.events
                .push_back(DialogEvent::KeysSent(Err(why.to_string())));
        };
        if !matches!(self.phase, UasPhase::Answered | UasPhase::Confirmed) {
            return refuse(self, "the call is not answered");
        }
        if self.info_keys.len() + keys.chars().count() > MAX_INFO_KEYS {
            return refuse(self, "too many keys queued");
        }
        // Keys are queued while an INFO is in flight (its key first).
        let idle = self.info_keys.is_empty();
        self.info_key_ms = key_ms;
        self.info_keys.extend(keys.chars());
        if idle {
            self.send_info(now);
        }
    }

    fn send_info(&mut self, now: u64) {
        let Some(&key) = self.info_keys.front() else {
            return;
        };
        let Some((mut m, branch)) = self.dialog_request("INFO") else {
            self.info_keys.clear();
            self.events.push_back(DialogEvent::KeysSent(Err(
                "no caller address to send INFO to".into(),
            )));
            return;
        };
        m.push("Contact", self.contact());
        m.push("Content-Type", "application/dtmf-relay");
        m.body = dtmf_relay_body(key, self.info_key_ms).into_bytes();
        self.info = Some(NonInviteClient::new(&m, branch, now, self.timers));
        self.pump_info(now);
    }

    /// Sends what the INFO transaction has to send and acts on its events.
    fn pump_info(&mut self, now: u64) {
        let Some(t) = self.info.as_mut() else { return };
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| t.poll_transmit()).collect();
        let events: Vec<TxEvent> = std::iter::from_fn(|| t.poll_event()).collect();
        for bytes in out {
            self.send(bytes);
        }
        for ev in events {
            let failed = match ev {
                TxEvent::Provisional(_) => continue,
                TxEvent::Final(r) if matches!(r.code(), Some(200..=299)) => {
                    self.info_keys.pop_front();
                    if self.info_keys.is_empty() {
                        self.events.push_back(DialogEvent::KeysSent(Ok(())));
                        None
                    } else if matches!(self.phase, UasPhase::Answered | UasPhase::Confirmed) {
                        self.send_info(now);
                        None
                    } else {
                        Some("the call ended".to_string())
                    }
                }
                TxEvent::Final(r) => Some(format!(
                    "the caller answered the INFO {}",
                    r.code().unwrap_or(0)
                )),
                TxEvent::Timeout => Some("no answer to the INFO".into()),
            };
            if let Some(why) = failed {
                self.info_keys.clear();
                self.events.push_back(DialogEvent::KeysSent(Err(why)));
            }
        }
    }

    fn send_bye(&mut self, now: u64, reason: EndedReason) {
        let Some((bye, branch)) = self.dialog_request("BYE") else {
            self.finish(now, end(CallStatus::Completed, reason, None, "no_from"));
            return;
        };
        let bytes = bye.to_bytes();
        self.send(bytes.clone());
        self.bye_branch = Some(branch);
        self.phase = UasPhase::Terminating;
        self.resend = Some(Resend {
            bytes: if self.timers.reliable {
                Vec::new()
            } else {
                bytes
            },
            next: if self.timers.reliable {
                u64::MAX
            } else {
                now.saturating_add(self.timers.t1)
            },
            interval: self.timers.t1,
            deadline: now.saturating_add(self.timers.t64()),
        });
        // The call is over for us now; the BYE's answer only stops its retransmissions.
        if !self.ended {
            self.ended = true;
            self.events.push_back(DialogEvent::Ended(end(
                CallStatus::Completed,
                reason,
                None,
                "bye_sent",
            )));
        }
    }

    /// A message of this dialog (same Call-ID) from `from`.
    pub fn handle_message(&mut self, now: u64, m: &Message) {
        if !m.is_request() {
            if let Some(t) = self
                .info
                .as_mut()
                .filter(|t| m.top_branch().as_deref() == Some(t.branch.as_str()))
            {
                t.on_response(m, now);
                self.pump_info(now);
                return;
            }
            // The answer to our BYE.
            let ours = m.top_branch().is_some() && m.top_branch() == self.bye_branch;
            if ours && m.code().is_some_and(|c| c >= 200) {
                self.finish(
                    now,
                    end(CallStatus::Completed, EndedReason::AgentHangup, None, "bye"),
                );
            }
            return;
        }
        let method = m.method().unwrap_or_default().to_string();
        let same_invite = method == "INVITE" && m.top_branch() == self.invite.top_branch();
        match method.as_str() {
            "INVITE" if same_invite => {
                // A retransmission: the last answer again.
                let again = self
                    .final_bytes
                    .clone()
                    .unwrap_or_else(|| self.provisional.clone());
                self.send(again);
            }
            "ACK" => {
                if self.phase == UasPhase::Answered {
                    self.phase = UasPhase::Confirmed;
                    self.resend = None;
                } else if self.phase == UasPhase::Refused {
                    self.finish(
                        now,
                        end(CallStatus::Failed, EndedReason::Rejected, None, "refused"),
                    );
                }
            }
            "CANCEL" => {
                let ok = response_to(m, 200, Some(&self.to_tag)).to_bytes();
                self.send(ok);
                if self.phase == UasPhase::Ringing {
                    let terminated = self.response(487).to_bytes();
                    self.phase = UasPhase::Refused;
                    self.send_final(now, terminated);
                    self.ended = true;
                    self.events.push_back(DialogEvent::Ended(end(
                        CallStatus::Cancelled,
                        EndedReason::CalleeHangup,
                        Some(487),
                        "cancelled",
                    )));
                }
            }
            "BYE" => {
                let ok = response_to(m, 200, Some(&self.to_tag)).to_bytes();
                self.send(ok);
                let reason = EndedReason::CalleeHangup;
                match self.phase {
                    UasPhase::Answered | UasPhase::Confirmed | UasPhase::Terminating => self
                        .finish(
                            now,
                            end(CallStatus::Completed, reason, None, "bye_received"),
                        ),
                    _ => {}
                }
            }
            "INVITE" => {
                // A re-INVITE (session refresh, hold): our same answer.
                let mut r = response_to(m, 200, Some(&self.to_tag));
                r.push("Contact", self.contact());
                if let Some(sdp) = &self.answer_sdp {
                    r.push("Content-Type", "application/sdp");
                    r.body = sdp.clone().into_bytes();
                }
                self.send(r.to_bytes());
            }
            "OPTIONS" | "UPDATE" | "INFO" => {
                let ok = response_to(m, 200, Some(&self.to_tag)).to_bytes();
                self.send(ok);
                let talking = matches!(self.phase, UasPhase::Answered | UasPhase::Confirmed);
                if method == "INFO" && talking {
                    if let Some(key) = super::call::info_dtmf_key(m) {
                        self.events.push_back(DialogEvent::KeyPressed(key));
                    }
                }
            }
            _ => {
                let r = response_to(m, 405, Some(&self.to_tag)).to_bytes();
                self.send(r);
            }
        }
    }

    /// The dialog's transport failed (TCP/TLS): the call is over.
    pub fn transport_failed(&mut self, now: u64) {
        if !matches!(self.phase, UasPhase::Done) {
            self.finish(
                now,
                end(
                    CallStatus::Failed,
                    EndedReason::MediaLost,
                    None,
                    "transport_error",
                ),
            );
        }
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if let Some(t) = self.info.as_mut() {
            t.on_timer(now);
            self.pump_info(now);
        }
        if self.phase == UasPhase::Ringing && self.decide_by <= now {
            tracing::warn!(sip_call_id = %self.call_id(), "inbound call not decided in time: 480");
            self.refuse(now, 480);
        }
        let talking = matches!(self.phase, UasPhase::Answered | UasPhase::Confirmed);
        if talking && self.max_until.is_some_and(|at| at <= now) {
            self.max_until = None;
            self.send_bye(now, EndedReason::MaxDurationReached);
        }
        if let Some(until) = self.linger_until {
            if until <= now {
                self.linger_until = None;
            }
        }
        let Some(r) = self.resend.as_mut() else {
            return;
        };
        if r.deadline <= now {
            self.resend = None;
            match self.phase {
                UasPhase::Answered => self.finish(
                    now,
                    end(
                        CallStatus::Failed,
                        EndedReason::MediaLost,
                        None,
                        "timer_h_no_ack",
                    ),
                ),
                UasPhase::Refused | UasPhase::Terminating => self.finish(
                    now,
                    end(CallStatus::Failed, EndedReason::Rejected, None, "over"),
                ),
                _ => {}
            }
            return;
        }
        if r.next <= now {
            let bytes = r.bytes.clone();
            r.interval = r.interval.saturating_mul(2).min(self.timers.t2);
            r.next = now.saturating_add(r.interval);
            self.send(bytes);
        }
    }

    pub fn next_timeout(&self) -> Option<u64> {
        let deciding = (self.phase == UasPhase::Ringing).then_some(self.decide_by);
        let talking = matches!(self.phase, UasPhase::Answered | UasPhase::Confirmed);
        let limit = self.max_until.filter(|_| talking);
        self.resend
            .as_ref()
            .map(|r| r.next.min(r.deadline))
            .into_iter()
            .chain(self.info.as_ref().and_then(|t| t.next_timer()))
            .chain(self.linger_until)
            .chain(deciding)
            .chain(limit)
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    /// Over and done lingering: it can be forgotten.
    pub fn is_done(&self) -> bool {
        self.phase == UasPhase::Done && self.linger_until.is_none()
    }
}
