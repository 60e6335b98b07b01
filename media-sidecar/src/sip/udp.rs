//! The thin tokio driver around the sans-IO [`Endpoint`]: one UDP socket,
//! the TCP/TLS connections of [`super::stream`] (one per flow, opened on
//! the first message to it), a sleep until [`Endpoint::poll_timeout`], and
//! channels to the call tasks. Call-ID demux, stateless replies, trunk
//! failover and what goes over which transport are the endpoint's.
//!
//! ```ignore
//! let sip = SipUdp::bind("127.0.0.1:5060".parse()?).await?;
//! let mut call = sip.start_call(CallSpec::new(trunks, "+14155550100", "+14155550199", offer)).await?;
//! while let Some(ev) = call.next_event().await {
//!     match ev {
//!         Event::Call(DialogEvent::Answered(media)) => { /* start RTP to media.remote_rtp */ }
//!         Event::Call(DialogEvent::Ended(end)) => break,
//!         _ => {}
//!     }
//! }
//! // any time: call.hangup(EndedReason::HangupRequested).await;
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use voxline_shared::EndedReason;

use super::call::DialogEvent;
pub use super::endpoint::InboundCallOffer;
use super::endpoint::{
    CallId, Endpoint, EndpointConfig, InboundCallEvent, InboundCallId, MessageId, Outgoing,
    StartError,
};
pub use super::endpoint::{CallSpec, Event, Trunk};
use super::register::RegistrationStatus;
use super::registrar::PendingId;
use super::sdp::OfferConfig;
use super::stream::{ConnEvent, Connections, StreamOptions};
use super::text_message::{InboundId, InboundText, MessageEnd, MessageSpec};
use super::transport::{Flow, Transport};
use crate::random::OsRandom;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no trunk configured")]
    NoTrunk,
    #[error("too many SIP dialogs open")]
    TooManyDialogs,
    #[error("the SIP driver has stopped")]
    Stopped,
}

impl From<StartError> for DriverError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::NoTrunk => DriverError::NoTrunk,
            StartError::TooManyDialogs => DriverError::TooManyDialogs,
        }
    }
}

enum Cmd {
    Start {
        spec: Box<CallSpec>,
        events: mpsc::Sender<Event>,
        reply: oneshot::Sender<Result<CallId, StartError>>,
    },
    Hangup {
        id: CallKey,
        reason: EndedReason,
    },
    SendDtmfInfo {
        id: CallKey,
        keys: String,
        key_ms: u32,
    },
    Refer {
        id: CallKey,
        target: String,
    },
    /// Inbound calls go to this receiver from now on (a second one replaces it).
    TakeInboundCalls {
        calls: mpsc::Sender<IncomingCall>,
    },
    AnswerInbound {
        id: InboundCallId,
        media: Box<OfferConfig>,
        max_duration: Option<std::time::Duration>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    RefuseInbound {
        id: InboundCallId,
        code: u16,
        /// Answered once refused: the handle (whose drop hangs up with
        /// 480) must outlive the refusal.
        done: oneshot::Sender<()>,
    },
    KeepRinging {
        id: InboundCallId,
        for_: std::time::Duration,
    },
    SendMessage {
        spec: Box<MessageSpec>,
        reply: oneshot::Sender<Result<MessageEnd, StartError>>,
    },
    Registrations {
        reply: oneshot::Sender<Vec<RegistrationStatus>>,
    },
    /// Un-REGISTER every binding; answered once all are gone.
    Unregister {
        done: oneshot::Sender<()>,
    },
    /// Phones' REGISTERs go to this receiver from now on (issue 16).
    TakePhoneRegistrations {
        registrations: mpsc::Sender<PhoneRegisterRequest>,
    },
    /// The live contacts of a user's phones registered here.
    PhoneContacts {
        tenant: String,
        user_pk: u64,
        reply: oneshot::Sender<Vec<crate::registrations::PhoneContact>>,
    },
}

/// A phone's REGISTER waiting for the edge (issue 16): send the edge's
/// answer on `answer` (`None`, or dropped: the phone gets 503).
#[derive(Debug)]
pub struct PhoneRegisterRequest {
    pub registration: voxline_shared::sidecar_link::PhoneRegistration,
    pub answer: oneshot::Sender<Option<voxline_shared::sidecar_link::PhoneRegistrationAnswer>>,
}

/// A text the trunk sent us, waiting for the edge's answer: send the SIP
/// status for the trunk on `answer` (2xx, 404, 480...). Dropped: 480; not
/// answered within [`super::text_message::ANSWER_WITHIN_MS`]: 480.
#[derive(Debug)]
pub struct InboundRequest {
    pub text: InboundText,
    pub answer: oneshot::Sender<u16>,
}

/// Which call a handle is for: one we placed, or one a trunk placed to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CallKey {
    Out(CallId),
    In(InboundCallId),
}

/// A call a trunk placed to us, ringing (100 and 180 sent): answer it (the
/// call then runs on the returned [`CallHandle`], whose first event is
/// `Answered`) or refuse it with a SIP code. Dropped undecided: 480.
#[derive(Debug)]
pub struct IncomingCall {
    pub offer: InboundCallOffer,
    handle: CallHandle,
}

impl IncomingCall {
    /// 200 with our SDP answer from `media`; an offer we cannot take is
    /// refused (488) and its error returned.
    pub async fn answer(
        self,
        media: OfferConfig,
        max_duration: Option<std::time::Duration>,
    ) -> Result<CallHandle, String> {
        let CallKey::In(id) = self.handle.id else {
            return Err("not an inbound call".into());
        };
        let (reply, rx) = oneshot::channel();
        self.handle
            .cmd
            .send(Cmd::AnswerInbound {
                id,
                media: Box::new(media),
                max_duration,
                reply,
            })
            .await
            .map_err(|_| DriverError::Stopped.to_string())?;
        rx.await.map_err(|_| DriverError::Stopped.to_string())??;
        Ok(self.handle)
    }

    /// Keeps the call ringing (180 sent: the caller hears ringback) for
    /// `for_` more rather than refusing it 480 after
    /// [`super::uas::DECIDE_WITHIN_MS`] (at most
    /// [`super::uas::MAX_RINGING_MS`]): while a person's phones ring.
    pub async fn keep_ringing(&self, for_: std::time::Duration) {
        if let CallKey::In(id) = self.handle.id {
            let _ = self.handle.cmd.send(Cmd::KeepRinging { id, for_ }).await;
        }
    }

    /// The call's next event while it rings: `Ended` (cancelled) when the
    /// caller gives up before an answer; `None` once the driver stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.handle.next_event().await
    }

    /// Refuses the call with `code` (4xx-6xx). Returns once the driver
    /// has refused it: dropping the handle sooner could let the driver
    /// see it gone first and hang up with 480 instead.
    pub async fn refuse(self, code: u16) {
        if let CallKey::In(id) = self.handle.id {
            let (done, refused) = oneshot::channel();
            let sent = self
                .handle
                .cmd
                .send(Cmd::RefuseInbound { id, code, done })
                .await;
            if sent.is_ok() {
                let _ = refused.await;
            }
        }
    }
}

/// Handle on one call: outbound (across failover attempts) or inbound.
#[derive(Debug)]
pub struct CallHandle {
    id: CallKey,
    events: mpsc::Receiver<Event>,
    cmd: mpsc::Sender<Cmd>,
}

impl CallHandle {
    /// The next event; `None` after the `Ended` event (or if the driver stopped).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// [`CallHandle::next_event`] as a poll, to wait on many calls at once
    /// (the legs a person's call forks to).
    pub fn poll_event(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }

    /// Presses `keys` as SIP INFO (`application/dtmf-relay`), one request
    /// per key; `Event::Call(DialogEvent::KeysSent(_))` follows.
    pub async fn send_dtmf_info(&self, keys: &str, key_ms: u32) {
        let _ = self
            .cmd
            .send(Cmd::SendDtmfInfo {
                id: self.id,
                keys: keys.to_string(),
                key_ms,
            })
            .await;
    }

    /// Blind transfer to `target` (a SIP URI) by REFER;
    /// `Event::Call(DialogEvent::Refer(_))` events follow
    /// ([`super::ReferEvent::NotSupported`] at once for a call a trunk
    /// placed to us: not offered there yet).
    pub async fn refer(&self, target: &str) {
        let _ = self
            .cmd
            .send(Cmd::Refer {
                id: self.id,
                target: target.to_string(),
            })
            .await;
    }

    /// BYE if answered, CANCEL if not. Idempotent.
    pub async fn hangup(&self, reason: EndedReason) {
        let _ = self
            .cmd
            .send(Cmd::Hangup {
                id: self.id,
                reason,
            })
            .await;
    }
}

/// Dropping the handle hangs the call up (BYE or CANCEL), as `hangup(hangup_requested)`.
impl Drop for CallHandle {
    fn drop(&mut self) {
        let _ = self.cmd.try_send(Cmd::Hangup {
            id: self.id,
            reason: EndedReason::HangupRequested,
        });
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Start { .. } => "Start",
            Cmd::Hangup { .. } => "Hangup",
            Cmd::SendDtmfInfo { .. } => "SendDtmfInfo",
            Cmd::Refer { .. } => "Refer",
            Cmd::TakeInboundCalls { .. } => "TakeInboundCalls",
            Cmd::AnswerInbound { .. } => "AnswerInbound",
            Cmd::RefuseInbound { .. } => "RefuseInbound",
            Cmd::KeepRinging { .. } => "KeepRinging",
            Cmd::SendMessage { .. } => "SendMessage",
            Cmd::Registrations { .. } => "Registrations",
            Cmd::Unregister { .. } => "Unregister",
            Cmd::TakePhoneRegistrations { .. } => "TakePhoneRegistrations",
            Cmd::PhoneContacts { .. } => "PhoneContacts",
        })
    }
}

/// The SIP UDP endpoint.
#[derive(Debug, Clone)]
pub struct SipUdp {
    cmd: mpsc::Sender<Cmd>,
    local: SocketAddr,
}

impl SipUdp {
    /// Binds `addr` and starts the driver task. Via/Contact advertise the bound address.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<SipUdp> {
        let sock = UdpSocket::bind(addr).await?;
        let local = sock.local_addr()?;
        Ok(Self::start(sock, local))
    }

    /// Uses an already bound socket; `advertise` goes into Via/Contact (e.g. a public address).
    pub fn start(sock: UdpSocket, advertise: SocketAddr) -> SipUdp {
        Self::start_with(sock, EndpointConfig::new(advertise), None)
    }

    /// Binds `config.local` (port 0: any; the bound address is advertised)
    /// and starts the driver with `config`. The texts its trunks send us
    /// ([`EndpointConfig::inbound_trunks`]) come out of the receiver; while
    /// it is not read (full or dropped), they get 480.
    pub async fn bind_with(
        config: EndpointConfig,
    ) -> std::io::Result<(SipUdp, mpsc::Receiver<InboundRequest>)> {
        Self::bind_with_streams(config, StreamOptions::default()).await
    }

    /// As [`SipUdp::bind_with`], with TCP/TLS connections set up by
    /// `streams` (keep-alives, the TLS configurations of the trunks).
    pub async fn bind_with_streams(
        mut config: EndpointConfig,
        streams: StreamOptions,
    ) -> std::io::Result<(SipUdp, mpsc::Receiver<InboundRequest>)> {
        let sock = UdpSocket::bind(config.local).await?;
        config.local = sock.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        Ok((Self::start_full(sock, config, streams, Some(tx)), rx))
    }

    fn start_with(
        sock: UdpSocket,
        config: EndpointConfig,
        inbound: Option<mpsc::Sender<InboundRequest>>,
    ) -> SipUdp {
        Self::start_full(sock, config, StreamOptions::default(), inbound)
    }

    fn start_full(
        sock: UdpSocket,
        config: EndpointConfig,
        streams: StreamOptions,
        inbound: Option<mpsc::Sender<InboundRequest>>,
    ) -> SipUdp {
        let (cmd, rx) = mpsc::channel(256);
        let local = config.local;
        tokio::spawn(run(sock, config, streams, rx, inbound, cmd.downgrade()));
        SipUdp { cmd, local }
    }

    /// Sends a text as a SIP MESSAGE (see [`super::endpoint::Endpoint::send_message`])
    /// and waits for its end.
    pub async fn send_message(&self, spec: MessageSpec) -> Result<MessageEnd, DriverError> {
        if spec.trunks.is_empty() {
            return Err(DriverError::NoTrunk);
        }
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::SendMessage {
                spec: Box::new(spec),
                reply,
            })
            .await
            .map_err(|_| DriverError::Stopped)?;
        Ok(rx.await.map_err(|_| DriverError::Stopped)??)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Calls the trunks place to us ([`EndpointConfig::inbound_trunks`])
    /// from now on; while none is taken (full, dropped, never asked) they
    /// are refused with 480.
    pub async fn take_inbound_calls(&self) -> Result<mpsc::Receiver<IncomingCall>, DriverError> {
        let (tx, rx) = mpsc::channel(64);
        self.cmd
            .send(Cmd::TakeInboundCalls { calls: tx })
            .await
            .map_err(|_| DriverError::Stopped)?;
        Ok(rx)
    }

    /// Phones' REGISTERs ([`EndpointConfig::registrar`]) from now on;
    /// while none is taken they get 503.
    pub async fn take_phone_registrations(
        &self,
    ) -> Result<mpsc::Receiver<PhoneRegisterRequest>, DriverError> {
        let (tx, rx) = mpsc::channel(64);
        self.cmd
            .send(Cmd::TakePhoneRegistrations { registrations: tx })
            .await
            .map_err(|_| DriverError::Stopped)?;
        Ok(rx)
    }

    /// The live contacts of user `user_pk` of `tenant` registered here.
    pub async fn phone_contacts(
        &self,
        tenant: &str,
        user_pk: u64,
    ) -> Result<Vec<crate::registrations::PhoneContact>, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::PhoneContacts {
                tenant: tenant.to_string(),
                user_pk,
                reply,
            })
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Where the trunks' registrations stand ([`EndpointConfig::registrations`]).
    pub async fn registrations(&self) -> Result<Vec<RegistrationStatus>, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Registrations { reply })
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Removes every registered binding (REGISTER, Expires 0) and waits,
    /// at most `within`, until the registrars answered; `false` when some
    /// did not in time (or the driver stopped). Trunks that register are not
    /// dialled afterwards.
    pub async fn unregister(&self, within: std::time::Duration) -> bool {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Unregister { done }).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    pub async fn start_call(&self, spec: CallSpec) -> Result<CallHandle, DriverError> {
        if spec.trunks.is_empty() {
            return Err(DriverError::NoTrunk);
        }
        let (etx, erx) = mpsc::channel(32);
        let (reply, rrx) = oneshot::channel();
        self.cmd
            .send(Cmd::Start {
                spec: Box::new(spec),
                events: etx,
                reply,
            })
            .await
            .map_err(|_| DriverError::Stopped)?;
        let id = rrx.await.map_err(|_| DriverError::Stopped)??;
        Ok(CallHandle {
            id: CallKey::Out(id),
            events: erx,
            cmd: self.cmd.clone(),
        })
    }
}

struct Driver {
    sock: UdpSocket,
    /// The TCP/TLS connections, one per flow.
    streams: Connections,
    endpoint: Endpoint,
    /// Event senders of the calls not yet ended.
    handles: HashMap<CallKey, mpsc::Sender<Event>>,
    /// Where inbound calls go (`None`: refused with 480).
    inbound_calls: Option<mpsc::Sender<IncomingCall>>,
    /// The command channel, for the handles of inbound calls (weak: the
    /// driver stops when every [`SipUdp`] and handle is gone).
    cmd: mpsc::WeakSender<Cmd>,
    /// Who waits for each text's end.
    texts: HashMap<MessageId, oneshot::Sender<Result<MessageEnd, StartError>>>,
    /// Where inbound texts go (`None`: they get 480).
    inbound: Option<mpsc::Sender<InboundRequest>>,
    /// The edge's answers to inbound texts, back from their waiting tasks.
    answers: mpsc::Sender<(InboundId, u16)>,
    /// Who waits for the un-REGISTERs to finish.
    unregistered: Vec<oneshot::Sender<()>>,
    /// Where phones' REGISTERs go (`None`: 503).
    phone_registrations: Option<mpsc::Sender<PhoneRegisterRequest>>,
    /// The edge's answers to phones' REGISTERs, back from their waiting tasks.
    registration_answers: mpsc::Sender<(
        PendingId,
        Option<voxline_shared::sidecar_link::PhoneRegistrationAnswer>,
    )>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    /// Hangs up calls whose handle was dropped, sends what the endpoint has
    /// to send, and hands events to the call tasks.
    async fn flush(&mut self) {
        let endpoint = &mut self.endpoint;
        self.handles.retain(|id, events| {
            if events.is_closed() {
                tracing::info!(call = ?id, "call handle dropped; hanging up");
                match id {
                    CallKey::Out(id) => endpoint.hangup(*id, EndedReason::HangupRequested, now()),
                    CallKey::In(id) => {
                        endpoint.hangup_inbound_call(*id, EndedReason::HangupRequested, now())
                    }
                }
                return false;
            }
            true
        });
        // Sending can end calls (a TCP/TLS flow that cannot take a
        // message), and handing texts on can answer them (480): go round
        // until a round moves nothing, so no event waits for the next wake.
        for _ in 0..8 {
            self.send_all().await;
            let mut moved = false;
            while let Some((id, ev)) = self.endpoint.poll_event() {
                moved = true;
                self.deliver(CallKey::Out(id), ev);
            }
            while let Some((id, ev)) = self.endpoint.poll_inbound_call() {
                moved = true;
                match ev {
                    InboundCallEvent::Offered(offer) => self.offer_inbound_call(id, offer),
                    InboundCallEvent::Call(ev) => self.deliver(CallKey::In(id), Event::Call(ev)),
                }
            }
            while let Some((id, end)) = self.endpoint.poll_message_end() {
                moved = true;
                if let Some(reply) = self.texts.remove(&id) {
                    let _ = reply.send(Ok(end));
                }
            }
            while let Some((id, text)) = self.endpoint.poll_inbound() {
                moved = true;
                self.forward_inbound(id, text);
            }
            while let Some((id, registration)) = self.endpoint.poll_phone_registration() {
                moved = true;
                self.forward_phone_registration(id, registration);
            }
            if !moved {
                break;
            }
        }
        if !self.unregistered.is_empty() && self.endpoint.is_unregistered() {
            for done in self.unregistered.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Hands a call's event to its task; the last one forgets the call.
    fn deliver(&mut self, key: CallKey, ev: Event) {
        let last = matches!(ev, Event::Call(DialogEvent::Ended(_)));
        let Some(events) = self.handles.get(&key) else {
            return;
        };
        if events.try_send(ev).is_err() && !last {
            tracing::warn!(call = ?key, "call task not reading its SIP events; one dropped");
        }
        if last {
            self.handles.remove(&key);
        }
    }

    /// Hands a ringing inbound call to its taker (480 when there is none).
    fn offer_inbound_call(&mut self, id: InboundCallId, offer: InboundCallOffer) {
        let Some(cmd) = self.cmd.upgrade() else {
            self.endpoint.refuse_inbound_call(id, 480, now());
            return;
        };
        let (etx, erx) = mpsc::channel(32);
        let incoming = IncomingCall {
            offer,
            handle: CallHandle {
                id: CallKey::In(id),
                events: erx,
                cmd,
            },
        };
        // A taker that is full or gone drops the call (its handle's hangup: 480).
        let taken = self
            .inbound_calls
            .as_ref()
            .is_some_and(|tx| tx.try_send(incoming).is_ok());
        if taken {
            self.handles.insert(CallKey::In(id), etx);
        } else {
            tracing::warn!(inbound_call = id.0, "nobody takes inbound calls now: 480");
            self.endpoint.refuse_inbound_call(id, 480, now());
        }
    }

    /// Sends what the endpoint has to send: datagrams on the socket, the
    /// rest to their flows' connections. A flow whose message could not be
    /// queued is reported failed (its calls end or fail over), and what
    /// that queues goes out too; a few rounds at most.
    async fn send_all(&mut self) {
        for _ in 0..4 {
            let mut failed: Vec<Flow> = Vec::new();
            while let Some(Outgoing { flow, bytes }) = self.endpoint.poll_transmit() {
                if flow.transport == Transport::Udp {
                    if let Err(e) = self.sock.send_to(&bytes, flow.addr).await {
                        tracing::warn!(dest = %flow.addr, error = %e, "sip send failed");
                    }
                    continue;
                }
                if failed.contains(&flow) {
                    continue;
                }
                if let Err(e) = self.streams.send(&flow, bytes) {
                    tracing::warn!(%flow, error = e.code(), "sip send failed");
                    failed.push(flow);
                }
            }
            if failed.is_empty() {
                return;
            }
            for flow in &failed {
                self.endpoint.handle_flow_failed(now(), flow);
            }
        }
    }

    /// What a TCP/TLS connection reported.
    fn on_conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Message { flow, msg } => self.endpoint.handle_message(now(), flow, &msg),
            ConnEvent::Closed { flow, id, reason } => {
                if self.streams.closed(&flow, id) {
                    tracing::debug!(%flow, %reason, "SIP connection lost");
                    self.endpoint.handle_flow_failed(now(), &flow);
                }
            }
        }
    }

    /// Hands an inbound text to its reader; its answer comes back through
    /// `answers` (480 if the reader drops it or is not there).
    fn forward_inbound(&mut self, id: InboundId, text: InboundText) {
        let (answer, answered) = oneshot::channel();
        let taken = self
            .inbound
            .as_ref()
            .is_some_and(|tx| tx.try_send(InboundRequest { text, answer }).is_ok());
        if !taken {
            tracing::warn!(inbound = id.0, "nobody takes inbound texts now: 480");
            self.endpoint.answer_inbound(id, 480, now());
            return;
        }
        let answers = self.answers.clone();
        tokio::spawn(async move {
            let code = answered.await.unwrap_or(480);
            let _ = answers.send((id, code)).await;
        });
    }

    /// Hands a phone's REGISTER to the edge's asker (503 when there is none).
    fn forward_phone_registration(
        &mut self,
        id: PendingId,
        registration: voxline_shared::sidecar_link::PhoneRegistration,
    ) {
        let (answer, answered) = oneshot::channel();
        let taken = self.phone_registrations.as_ref().is_some_and(|tx| {
            tx.try_send(PhoneRegisterRequest {
                registration,
                answer,
            })
            .is_ok()
        });
        if !taken {
            tracing::warn!("nobody takes phones' REGISTERs now: 503");
            self.endpoint.answer_phone_registration(id, None, now());
            return;
        }
        let answers = self.registration_answers.clone();
        tokio::spawn(async move {
            let answer = answered.await.ok().flatten();
            let _ = answers.send((id, answer)).await;
        });
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start {
                spec,
                events,
                reply,
            } => {
                let started = self.endpoint.start_call(*spec, now());
                if let Ok(id) = started {
                    self.handles.insert(CallKey::Out(id), events);
                }
                let _ = reply.send(started);
            }
            Cmd::Hangup {
                id: CallKey::Out(id),
                reason,
            } => self.endpoint.hangup(id, reason, now()),
            Cmd::Hangup {
                id: CallKey::In(id),
                reason,
            } => self.endpoint.hangup_inbound_call(id, reason, now()),
            Cmd::SendDtmfInfo {
                id: CallKey::Out(id),
                keys,
                key_ms,
            } => self.endpoint.send_dtmf_info(id, &keys, key_ms, now()),
            Cmd::SendDtmfInfo {
                id: CallKey::In(id),
                keys,
                key_ms,
            } => self
                .endpoint
                .send_dtmf_info_inbound(id, &keys, key_ms, now()),
            Cmd::Refer {
                id: CallKey::Out(id),
                target,
            } => self.endpoint.refer(id, &target, now()),
            Cmd::Refer {
                id: key @ CallKey::In(_),
                ..
            } => self.deliver(
                key,
                Event::Call(DialogEvent::Refer(super::ReferEvent::NotSupported(
                    "inbound_call",
                ))),
            ),
            Cmd::TakeInboundCalls { calls } => self.inbound_calls = Some(calls),
            Cmd::AnswerInbound {
                id,
                media,
                max_duration,
                reply,
            } => {
                let r = self
                    .endpoint
                    .answer_inbound_call(id, &media, max_duration, now())
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Cmd::RefuseInbound { id, code, done } => {
                self.endpoint.refuse_inbound_call(id, code, now());
                let _ = done.send(());
            }
            Cmd::KeepRinging { id, for_ } => {
                self.endpoint.keep_ringing_inbound_call(id, for_, now())
            }
            Cmd::SendMessage { spec, reply } => match self.endpoint.send_message(*spec, now()) {
                Ok(id) => {
                    self.texts.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::Registrations { reply } => {
                let _ = reply.send(self.endpoint.registrations(now()));
            }
            Cmd::Unregister { done } => {
                self.endpoint.unregister_all(now());
                self.unregistered.push(done);
            }
            Cmd::TakePhoneRegistrations { registrations } => {
                self.phone_registrations = Some(registrations)
            }
            Cmd::PhoneContacts {
                tenant,
                user_pk,
                reply,
            } => {
                let _ = reply.send(self.endpoint.phone_contacts(&tenant, user_pk, now()));
            }
        }
    }
}

async fn run(
    sock: UdpSocket,
    config: EndpointConfig,
    streams: StreamOptions,
    mut rx: mpsc::Receiver<Cmd>,
    inbound: Option<mpsc::Sender<InboundRequest>>,
    cmd: mpsc::WeakSender<Cmd>,
) {
    let (answers, mut answers_rx) = mpsc::channel(64);
    let (registration_answers, mut registration_answers_rx) = mpsc::channel(64);
    let (conn_tx, mut conn_rx) = mpsc::channel(256);
    let mut d = Driver {
        sock,
        streams: Connections::new(streams, conn_tx),
        endpoint: Endpoint::new(config, Box::new(OsRandom), now()),
        handles: HashMap::new(),
        inbound_calls: None,
        cmd,
        texts: HashMap::new(),
        inbound,
        answers,
        unregistered: Vec::new(),
        phone_registrations: None,
        registration_answers,
    };
    let mut buf = vec![0u8; 65_536];
    let mut open = true;
    loop {
        d.flush().await;
        if !open && d.endpoint.is_idle() {
            break;
        }
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        let deadline = d.endpoint.poll_timeout().map_or(far, Instant::from_std);
        tokio::select! {
            r = d.sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let data = buf.get(..n).unwrap_or_default();
                    if let Err(e) = d.endpoint.handle_datagram(now(), from, data) {
                        tracing::debug!(%from, error = %e, "SIP datagram dropped");
                    }
                }
                // ICMP port unreachable surfaces here on some OSes; keep going.
                Err(e) => tracing::debug!(error = %e, "sip recv error"),
            },
            cmd = rx.recv(), if open => match cmd {
                Some(c) => d.on_cmd(c),
                None => open = false,
            },
            Some((id, code)) = answers_rx.recv() => d.endpoint.answer_inbound(id, code, now()),
            Some((id, answer)) = registration_answers_rx.recv() => {
                d.endpoint.answer_phone_registration(id, answer, now())
            }
            Some(ev) = conn_rx.recv() => d.on_conn_event(ev),
            _ = tokio::time::sleep_until(deadline) => d.endpoint.handle_timeout(now()),
        }
    }
}
