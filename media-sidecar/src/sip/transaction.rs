//! RFC 3261 17.1 client transactions as sans-IO state machines. Over a
//! reliable transport ([`Timers::reliable`]) nothing is retransmitted
//! (Timers A and E are not set, D and K are zero), while Timers B and F
//! still bound the wait for a final response (RFC 3261 17.1.1.2, 17.1.2.2).
//!
//! Each is fed responses (already matched to it by branch + CSeq method) and
//! the time (`now`, milliseconds on any monotonic clock), and yields datagrams
//! to send ([`poll_transmit`](InviteClient::poll_transmit)), events for the
//! transaction user ([`poll_event`](InviteClient::poll_event)) and its next
//! deadline ([`next_timer`](InviteClient::next_timer)).

use std::collections::VecDeque;

use super::msg::{Message, StartLine};

/// RFC 3261 timer base values, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: u64,
    pub t2: u64,
    pub t4: u64,
    /// The transport is TCP or TLS: no retransmissions, no lingering
    /// to absorb them.
    pub reliable: bool,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: 500,
            t2: 4_000,
            t4: 5_000,
            reliable: false,
        }
    }
}

impl Timers {
    /// Timer B / F / H / J: 64*T1.
    pub fn t64(&self) -> u64 {
        self.t1.saturating_mul(64)
    }

    /// The first retransmission interval (Timer A / E): none when reliable.
    pub fn retransmit_after(&self) -> Option<u64> {
        (!self.reliable).then_some(self.t1)
    }

    /// How long a completed transaction lingers to absorb retransmissions:
    /// Timer D (64*T1; 0 when reliable), Timer K (T4; 0 when reliable).
    pub fn timer_d(&self) -> u64 {
        if self.reliable {
            0
        } else {
            self.t64()
        }
    }

    pub fn timer_k(&self) -> u64 {
        if self.reliable {
            0
        } else {
            self.t4
        }
    }
}

/// What a client transaction tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// 1xx (never 100 for a non-INVITE: also passed, the TU may ignore it).
    Provisional(Message),
    /// The final response (first one only; retransmissions are absorbed).
    Final(Message),
    /// Timer B / F fired: no final response.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IctState {
    Calling,
    Proceeding,
    Completed,
    Terminated,
}

/// INVITE client transaction (RFC 3261 17.1.1; 2xx ends it, the TU ACKs 2xx).
#[derive(Debug)]
pub struct InviteClient {
    pub branch: String,
    pub cseq: u32,
    request: Message,
    wire: Vec<u8>,
    timers: Timers,
    state: IctState,
    a_at: Option<u64>,
    a_interval: u64,
    b_at: Option<u64>,
    d_at: Option<u64>,
    ack: Option<Vec<u8>>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<TxEvent>,
}

/// What every client transaction gives its owner: datagrams to send and
/// events, polled until empty.
pub trait ClientTransaction {
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn poll_event(&mut self) -> Option<TxEvent>;
}

impl ClientTransaction for InviteClient {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        InviteClient::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<TxEvent> {
        InviteClient::poll_event(self)
    }
}

impl ClientTransaction for NonInviteClient {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        NonInviteClient::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<TxEvent> {
        NonInviteClient::poll_event(self)
    }
}

impl InviteClient {
    /// Starts the transaction: the request is queued for sending at once.
    pub fn new(request: Message, branch: String, now: u64, timers: Timers) -> Self {
        let wire = request.to_bytes();
        let cseq = request.cseq().0;
        let mut t = InviteClient {
            branch,
            cseq,
            request,
            wire: wire.clone(),
            timers,
            state: IctState::Calling,
            a_at: timers.retransmit_after().map(|t1| now + t1),
            a_interval: timers.t1,
            b_at: Some(now + timers.t64()),
            d_at: None,
            ack: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        t.out.push_back(wire);
        t
    }

    pub fn state(&self) -> IctState {
        self.state
    }

    /// A terminated transaction standing in for one given up (its
    /// connection was lost): no timer, nothing to send.
    pub fn abandoned(timers: Timers) -> Self {
        let mut t = InviteClient::new(
            Message::request("INVITE", "sip:invalid"),
            String::new(),
            0,
            timers,
        );
        t.out.clear();
        t.terminate();
        t
    }

    pub fn request(&self) -> &Message {
        &self.request
    }

    pub fn on_response(&mut self, resp: &Message, now: u64) {
        let Some(code) = resp.code() else { return };
        match (self.state, code) {
            (IctState::Calling | IctState::Proceeding, 100..=199) => {
                self.state = IctState::Proceeding;
                self.a_at = None;
                self.b_at = None;
                self.events.push_back(TxEvent::Provisional(resp.clone()));
            }
            (IctState::Calling | IctState::Proceeding, 200..=299) => {
                self.terminate();
                self.events.push_back(TxEvent::Final(resp.clone()));
            }
            (IctState::Calling | IctState::Proceeding, 300..=699) => {
                self.state = IctState::Completed;
                self.a_at = None;
                self.b_at = None;
                // Timer D: 64*T1 (= 32 s with the default T1) on UDP, 0 on TCP/TLS.
                self.d_at = Some(now + self.timers.timer_d());
                let ack = non2xx_ack(&self.request, resp).to_bytes();
                self.out.push_back(ack.clone());
                self.ack = Some(ack);
                self.events.push_back(TxEvent::Final(resp.clone()));
            }
            (IctState::Completed, 300..=699) => {
                if let Some(a) = &self.ack {
                    self.out.push_back(a.clone());
                }
            }
            _ => {}
        }
    }

    pub fn on_timer(&mut self, now: u64) {
        if let Some(b) = self.b_at {
            if now >= b {
                self.terminate();
                self.events.push_back(TxEvent::Timeout);
                return;
            }
        }
        if let Some(a) = self.a_at {
            if now >= a {
                self.out.push_back(self.wire.clone());
                self.a_interval = self.a_interval.saturating_mul(2);
                self.a_at = Some(now + self.a_interval);
            }
        }
        if let Some(d) = self.d_at {
            if now >= d {
                self.terminate();
            }
        }
    }

    fn terminate(&mut self) {
        self.state = IctState::Terminated;
        self.a_at = None;
        self.b_at = None;
        self.d_at = None;
    }

    pub fn next_timer(&self) -> Option<u64> {
        [self.a_at, self.b_at, self.d_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }
}

/// RFC 3261 17.1.1.3: the ACK for a non-2xx final response.
pub fn non2xx_ack(req: &Message, resp: &Message) -> Message {
    let uri = req.uri().unwrap_or("").to_string();
    let mut ack = Message::request("ACK", &uri);
    if let Some(v) = req.header_list("Via").first() {
        ack.push("Via", *v);
    }
    for r in req.header_lines("Route") {
        ack.push("Route", r);
    }
    ack.push("Max-Forwards", "70");
    if let Some(f) = req.header("From") {
        ack.push("From", f);
    }
    ack.push("To", resp.header("To").or(req.header("To")).unwrap_or(""));
    ack.push("Call-ID", req.call_id());
    ack.push("CSeq", format!("{} ACK", req.cseq().0));
    ack
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NictState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE client transaction (RFC 3261 17.1.2): BYE, CANCEL, OPTIONS...
#[derive(Debug)]
pub struct NonInviteClient {
    pub branch: String,
    pub method: String,
    wire: Vec<u8>,
    timers: Timers,
    state: NictState,
    e_at: Option<u64>,
    e_interval: u64,
    f_at: Option<u64>,
    k_at: Option<u64>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<TxEvent>,
}

impl NonInviteClient {
    pub fn new(request: &Message, branch: String, now: u64, timers: Timers) -> Self {
        let wire = request.to_bytes();
        let method = match &request.start {
            StartLine::Request { method, .. } => method.clone(),
            StartLine::Response { .. } => String::new(),
        };
        let mut t = NonInviteClient {
            branch,
            method,
            wire: wire.clone(),
            timers,
            state: NictState::Trying,
            e_at: timers.retransmit_after().map(|t1| now + t1),
            e_interval: timers.t1,
            f_at: Some(now + timers.t64()),
            k_at: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        t.out.push_back(wire);
        t
    }

    pub fn state(&self) -> NictState {
        self.state
    }

    pub fn on_response(&mut self, resp: &Message, now: u64) {
        let Some(code) = resp.code() else { return };
        match (self.state, code) {
            (NictState::Trying, 100..=199) => {
                self.state = NictState::Proceeding;
                self.events.push_back(TxEvent::Provisional(resp.clone()));
            }
            (NictState::Trying | NictState::Proceeding, 200..=699) => {
                self.state = NictState::Completed;
                self.e_at = None;
                self.f_at = None;
                self.k_at = Some(now + self.timers.timer_k());
                self.events.push_back(TxEvent::Final(resp.clone()));
            }
            _ => {}
        }
    }

    pub fn on_timer(&mut self, now: u64) {
        if let Some(f) = self.f_at {
            if now >= f {
                self.state = NictState::Terminated;
                self.e_at = None;
                self.f_at = None;
                self.events.push_back(TxEvent::Timeout);
                return;
            }
        }
        if let Some(e) = self.e_at {
            if now >= e {
                self.out.push_back(self.wire.clone());
                self.e_interval = if self.state == NictState::Proceeding {
                    self.timers.t2
                } else {
                    self.e_interval.saturating_mul(2).min(self.timers.t2)
                };
                self.e_at = Some(now + self.e_interval);
            }
        }
        if let Some(k) = self.k_at {
            if now >= k {
                self.state = NictState::Terminated;
                self.k_at = None;
            }
        }
    }

    pub fn next_timer(&self) -> Option<u64> {
        [self.e_at, self.f_at, self.k_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NictState::Terminated
    }

    /// Gives the transaction up (its connection was lost): terminated, no
    /// timer, nothing more to send, no event.
    pub fn abandon(&mut self) {
        self.state = NictState::Terminated;
        self.e_at = None;
        self.f_at = None;
        self.k_at = None;
        self.out.clear();
    }

    /// Sends the request again now, while no final response has come (the
    /// TU saw a sign it was lost, e.g. a reliable 1xx retransmitted at us
    /// while its PRACK is out); timers are unchanged.
    pub fn retransmit_now(&mut self) {
        if matches!(self.state, NictState::Trying | NictState::Proceeding) {
            self.out.push_back(self.wire.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::parse;

    fn invite() -> Message {
        parse(
            b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\n\
              Route: <sip:p1.example.com;lr>\r\n\
              From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
              Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    fn resp(code: u16, method: &str) -> Message {
        parse(
            format!(
                "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\n\
                 From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>;tag=9\r\nCall-ID: c1\r\n\
                 CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn drain(t: &mut InviteClient) -> usize {
        let mut n = 0;
        while t.poll_transmit().is_some() {
            n += 1;
        }
        n
    }

    #[test]
    fn timer_a_doubles_from_t1_and_timer_b_times_out() {
        let timers = Timers::default();
        let mut t = InviteClient::new(invite(), "z9hG4bKabc".into(), 0, timers);
        assert_eq!(drain(&mut t), 1);
        // Retransmits at 500, 1500, 3500, 7500, 15500, 31500 (intervals 500, 1000, 2000...).
        let mut sends = vec![];
        let mut now = 0;
        while let Some(at) = t.next_timer() {
            now = at;
            t.on_timer(now);
            if drain(&mut t) > 0 {
                sends.push(now);
            }
            if t.state() == IctState::Terminated {
                break;
            }
        }
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(now, 32_000);
        assert_eq!(t.poll_event(), Some(TxEvent::Timeout));
    }

    #[test]
    fn provisional_stops_retransmits_and_non2xx_is_acked_in_the_transaction() {
        let mut t = InviteClient::new(invite(), "z9hG4bKabc".into(), 0, Timers::default());
        drain(&mut t);
        t.on_response(&resp(180, "INVITE"), 100);
        assert_eq!(t.state(), IctState::Proceeding);
        assert_eq!(t.next_timer(), None, "no A/B once proceeding");
        assert!(matches!(t.poll_event(), Some(TxEvent::Provisional(_))));
        t.on_response(&resp(486, "INVITE"), 200);
        assert_eq!(t.state(), IctState::Completed);
        let ack = parse(&t.poll_transmit().unwrap()).unwrap();
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.uri(), Some("sip:bob@127.0.0.1"));
        assert_eq!(ack.cseq(), (1, "ACK"));
        assert_eq!(ack.top_branch().as_deref(), Some("z9hG4bKabc"));
        assert_eq!(ack.to_tag().as_deref(), Some("9"));
        assert_eq!(ack.header("Route"), Some("<sip:p1.example.com;lr>"));
        assert!(matches!(t.poll_event(), Some(TxEvent::Final(m)) if m.code() == Some(486)));
        // A retransmitted 486 is ACKed again, not passed up.
        t.on_response(&resp(486, "INVITE"), 300);
        assert!(t.poll_transmit().is_some());
        assert_eq!(t.poll_event(), None);
        // Timer D (32 s on UDP).
        assert_eq!(t.next_timer(), Some(32_200));
        t.on_timer(32_200);
        assert_eq!(t.state(), IctState::Terminated);
    }

    #[test]
    fn two_xx_terminates_and_is_passed_up() {
        let mut t = InviteClient::new(invite(), "z9hG4bKabc".into(), 0, Timers::default());
        drain(&mut t);
        t.on_response(&resp(200, "INVITE"), 50);
        assert_eq!(t.state(), IctState::Terminated);
        assert!(t.poll_transmit().is_none(), "the TU sends the 2xx ACK");
        assert!(matches!(t.poll_event(), Some(TxEvent::Final(m)) if m.code() == Some(200)));
    }

    #[test]
    fn non_invite_timer_e_caps_at_t2_and_f_times_out() {
        let bye = Message::request("BYE", "sip:bob@127.0.0.1");
        let mut t = NonInviteClient::new(&bye, "z9hG4bKb".into(), 0, Timers::default());
        assert!(t.poll_transmit().is_some());
        let mut sends = vec![];
        while let Some(at) = t.next_timer() {
            t.on_timer(at);
            while t.poll_transmit().is_some() {
                sends.push(at);
            }
            if t.is_terminated() {
                break;
            }
        }
        assert_eq!(&sends[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!(t.poll_event(), Some(TxEvent::Timeout));
    }

    /// RFC 3261 17.1.1.2 / 17.1.2.2: over TCP/TLS the request goes out
    /// once; Timer B/F still end the wait; D and K do not linger.
    #[test]
    fn reliable_transports_send_once_and_keep_timers_b_and_f() {
        let timers = Timers {
            reliable: true,
            ..Timers::default()
        };
        let mut t = InviteClient::new(invite(), "z9hG4bKabc".into(), 0, timers);
        assert_eq!(drain(&mut t), 1);
        assert_eq!(t.next_timer(), Some(32_000), "only Timer B");
        t.on_timer(32_000);
        assert_eq!(drain(&mut t), 0, "never retransmitted");
        assert_eq!(t.poll_event(), Some(TxEvent::Timeout));
        // A non-2xx is ACKed once and the transaction ends at once (D = 0).
        let mut t = InviteClient::new(invite(), "z9hG4bKabc".into(), 0, timers);
        drain(&mut t);
        t.on_response(&resp(486, "INVITE"), 100);
        assert_eq!(drain(&mut t), 1, "the ACK");
        assert_eq!(t.next_timer(), Some(100));
        t.on_timer(100);
        assert_eq!(t.state(), IctState::Terminated);
        // Non-INVITE: no Timer E, Timer F at 64*T1, no Timer K.
        let bye = Message::request("BYE", "sip:bob@127.0.0.1");
        let mut t = NonInviteClient::new(&bye, "z9hG4bKb".into(), 0, timers);
        assert!(t.poll_transmit().is_some());
        assert_eq!(t.next_timer(), Some(32_000));
        t.on_timer(32_000);
        assert!(t.poll_transmit().is_none());
        assert_eq!(t.poll_event(), Some(TxEvent::Timeout));
        let mut t = NonInviteClient::new(&bye, "z9hG4bKb".into(), 0, timers);
        t.poll_transmit();
        t.on_response(&resp(200, "BYE"), 20);
        t.on_timer(20);
        assert!(t.is_terminated());
    }

    #[test]
    fn non_invite_final_then_timer_k() {
        let bye = Message::request("BYE", "sip:bob@127.0.0.1");
        let mut t = NonInviteClient::new(&bye, "z9hG4bKb".into(), 0, Timers::default());
        t.poll_transmit();
        t.on_response(&resp(100, "BYE"), 10);
        assert_eq!(t.state(), NictState::Proceeding);
        t.on_response(&resp(200, "BYE"), 20);
        assert_eq!(t.state(), NictState::Completed);
        t.poll_event();
        assert!(matches!(t.poll_event(), Some(TxEvent::Final(_))));
        assert_eq!(t.next_timer(), Some(5_020));
        t.on_timer(5_020);
        assert!(t.is_terminated());
    }
}
