//! The thin tokio driver: one UDP socket, any number of [`Call`]s, an async
//! API for the call task, and trunk failover.
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
//!
//! Requests for Call-IDs we do not know get a stateless 481 (OPTIONS: 200).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use voxline_shared::EndedReason;

use super::auth::Credentials;
use super::call::{random_hex, Call, CallConfig, DialogEnd, DialogEvent, ALLOW};
use super::msg::{self, response_to};
use super::sdp::OfferConfig;
use super::transaction::Timers;

/// One SIP trunk (next hop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub addr: SocketAddr,
    /// Host part of the Request-URI/To (default: `addr`).
    pub domain: Option<String>,
    pub credentials: Option<Credentials>,
}

impl Trunk {
    pub fn new(addr: SocketAddr) -> Self {
        Trunk {
            addr,
            domain: None,
            credentials: None,
        }
    }
}

/// What the call task asks for.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// Tried in order; the next one only after a failover outcome.
    pub trunks: Vec<Trunk>,
    /// The number dialled (user part of the Request-URI).
    pub to_user: String,
    /// Our caller ID (user part of From).
    pub from_user: String,
    pub from_display: Option<String>,
    pub media: OfferConfig,
    pub ring_timeout: Duration,
    pub max_duration: Option<Duration>,
    /// A trunk that sends nothing back within this is skipped (when another remains).
    pub failover_timeout: Option<Duration>,
    pub timers: Timers,
}

impl CallSpec {
    pub fn new(trunks: Vec<Trunk>, to_user: &str, from_user: &str, media: OfferConfig) -> Self {
        CallSpec {
            trunks,
            to_user: to_user.into(),
            from_user: from_user.into(),
            from_display: None,
            media,
            ring_timeout: Duration::from_secs(60),
            max_duration: None,
            failover_timeout: Some(Duration::from_secs(2)),
            timers: Timers::default(),
        }
    }
}

/// What the call task receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The attempt on `trunk` (index into [`CallSpec::trunks`]) failed this
    /// way; the next trunk is being tried now.
    Failover {
        trunk: usize,
        end: DialogEnd,
    },
    Call(DialogEvent),
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no trunk configured")]
    NoTrunk,
    #[error("the SIP driver has stopped")]
    Stopped,
}

enum Cmd {
    Start {
        spec: Box<CallSpec>,
        events: mpsc::Sender<Event>,
        reply: oneshot::Sender<u64>,
    },
    Hangup {
        id: u64,
        reason: EndedReason,
    },
}

/// Handle on one outbound call (across failover attempts).
#[derive(Debug)]
pub struct CallHandle {
    id: u64,
    events: mpsc::Receiver<Event>,
    cmd: mpsc::Sender<Cmd>,
}

impl CallHandle {
    /// The next event; `None` after the `Ended` event (or if the driver stopped).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
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
        let (cmd, rx) = mpsc::channel(256);
        tokio::spawn(run(sock, advertise, rx));
        SipUdp {
            cmd,
            local: advertise,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
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
        let id = rrx.await.map_err(|_| DriverError::Stopped)?;
        Ok(CallHandle {
            id,
            events: erx,
            cmd: self.cmd.clone(),
        })
    }
}

struct Owner {
    spec: Box<CallSpec>,
    trunk: usize,
    call_id: String,
    events: mpsc::Sender<Event>,
    hangup: bool,
}

fn call_config(spec: &CallSpec, trunk: usize, local: SocketAddr) -> CallConfig {
    let t = &spec.trunks[trunk];
    let mut c = CallConfig::new(
        t.addr,
        local,
        &spec.to_user,
        &spec.from_user,
        spec.media.clone(),
    );
    if let Some(d) = &t.domain {
        c.request_uri = format!("sip:{}@{d}", spec.to_user);
        c.to_uri = c.request_uri.clone();
    }
    c.from_display = spec.from_display.clone();
    c.credentials = t.credentials.clone();
    c.ring_timeout_ms = spec.ring_timeout.as_millis() as u64;
    c.max_duration_ms = spec.max_duration.map(|d| d.as_millis() as u64);
    // Fail over quickly only when there is somewhere to fail over to.
    if trunk + 1 < spec.trunks.len() {
        c.no_response_timeout_ms = spec.failover_timeout.map(|d| d.as_millis() as u64);
    }
    c.timers = spec.timers;
    c
}

struct Driver {
    sock: UdpSocket,
    local: SocketAddr,
    start: Instant,
    calls: HashMap<String, (Call, Option<u64>)>,
    owners: HashMap<u64, Owner>,
    next_id: u64,
}

impl Driver {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn flush(&mut self) {
        let now = self.now();
        // A dropped CallHandle hangs its call up.
        for o in self.owners.values_mut() {
            if !o.hangup && o.events.is_closed() {
                o.hangup = true;
                if let Some((call, _)) = self.calls.get_mut(&o.call_id) {
                    tracing::info!(call_id = %o.call_id, "call handle dropped; hanging up");
                    call.hangup(now, EndedReason::HangupRequested);
                }
            }
        }
        let mut sends = Vec::new();
        let mut evs = Vec::new();
        for (cid, (call, owner)) in self.calls.iter_mut() {
            while let Some(t) = call.poll_transmit() {
                sends.push(t);
            }
            while let Some(e) = call.poll_event() {
                if let Some(o) = owner {
                    evs.push((*o, cid.clone(), e));
                }
            }
        }
        for t in sends {
            if let Err(e) = self.sock.send_to(&t.bytes, t.dest).await {
                tracing::warn!(dest = %t.dest, error = %e, "sip send failed");
            }
        }
        let mut again = false;
        for (oid, cid, e) in evs {
            let Some(o) = self.owners.get_mut(&oid) else {
                continue;
            };
            if o.call_id != cid {
                continue;
            }
            if let DialogEvent::Ended(out) = &e {
                if out.try_next_trunk && !o.hangup && o.trunk + 1 < o.spec.trunks.len() {
                    let failed = o.trunk;
                    o.trunk += 1;
                    tracing::info!(trunk = failed, code = ?out.sip_code, detail = %out.detail, "trunk failed; trying the next");
                    let _ = o.events.try_send(Event::Failover {
                        trunk: failed,
                        end: out.clone(),
                    });
                    let call = Call::new(call_config(&o.spec, o.trunk, self.local), now);
                    o.call_id = call.call_id().to_string();
                    if let Some((_, ow)) = self.calls.get_mut(&cid) {
                        *ow = None;
                    }
                    self.calls.insert(o.call_id.clone(), (call, Some(oid)));
                    again = true;
                    continue;
                }
                let _ = o.events.try_send(Event::Call(e));
                self.owners.remove(&oid);
                if let Some((_, ow)) = self.calls.get_mut(&cid) {
                    *ow = None;
                }
                continue;
            }
            if o.events.try_send(Event::Call(e)).is_err() {
                tracing::warn!(call_id = %cid, "call task not reading its SIP events; one dropped");
            }
        }
        self.calls.retain(|_, (c, _)| !c.is_done());
        if again {
            Box::pin(self.flush()).await;
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.calls
            .values()
            .filter_map(|(c, _)| c.next_timeout())
            .min()
    }

    async fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        let now = self.now();
        let m = match msg::parse(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%from, error = %e, "unparseable SIP datagram dropped");
                return;
            }
        };
        if let Some((call, _)) = self.calls.get_mut(m.call_id()) {
            call.handle_message(now, from, &m);
            return;
        }
        if m.is_request() && m.method() != Some("ACK") {
            let code = if m.method() == Some("OPTIONS") {
                200
            } else {
                481
            };
            let mut r = response_to(&m, code, Some(&random_hex(6)));
            if code == 200 {
                r.push("Allow", ALLOW);
                r.push("Accept", "application/sdp");
            }
            let _ = self.sock.send_to(&r.to_bytes(), from).await;
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let now = self.now();
        match cmd {
            Cmd::Start {
                spec,
                events,
                reply,
            } => {
                self.next_id += 1;
                let id = self.next_id;
                let call = Call::new(call_config(&spec, 0, self.local), now);
                let call_id = call.call_id().to_string();
                tracing::info!(%call_id, to = %spec.to_user, trunk = %spec.trunks[0].addr, "INVITE");
                self.calls.insert(call_id.clone(), (call, Some(id)));
                self.owners.insert(
                    id,
                    Owner {
                        spec,
                        trunk: 0,
                        call_id,
                        events,
                        hangup: false,
                    },
                );
                let _ = reply.send(id);
            }
            Cmd::Hangup { id, reason } => {
                if let Some(o) = self.owners.get_mut(&id) {
                    o.hangup = true;
                    if let Some((call, _)) = self.calls.get_mut(&o.call_id) {
                        call.hangup(now, reason);
                    }
                }
            }
        }
    }
}

async fn run(sock: UdpSocket, local: SocketAddr, mut rx: mpsc::Receiver<Cmd>) {
    let mut d = Driver {
        sock,
        local,
        start: Instant::now(),
        calls: HashMap::new(),
        owners: HashMap::new(),
        next_id: 0,
    };
    let mut buf = vec![0u8; 65_536];
    let mut open = true;
    loop {
        d.flush().await;
        if !open && d.calls.is_empty() {
            break;
        }
        let deadline = d
            .next_deadline()
            .map(|ms| d.start + Duration::from_millis(ms));
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            r = d.sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let data = buf[..n].to_vec();
                    d.on_datagram(&data, from).await;
                }
                // ICMP port unreachable surfaces here on some OSes; keep going.
                Err(e) => tracing::debug!(error = %e, "sip recv error"),
            },
            cmd = rx.recv(), if open => match cmd {
                Some(c) => d.on_cmd(c),
                None => open = false,
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => {
                let now = d.now();
                for (c, _) in d.calls.values_mut() {
                    if c.next_timeout().is_some_and(|t| t <= now) {
                        c.handle_timeout(now);
                    }
                }
            }
        }
    }
}
