//! Registration of a trunk's binding (RFC 3261 10), sans-IO, for
//! [`super::endpoint::Endpoint`] to run: a trunk that only takes calls from
//! registered users (Telnyx credential connections, Vonage, a PBX, ...) knows
//! where we are because we REGISTER our Contact under its address-of-record.
//!
//! ```text
//!  new(cfg, now)          REGISTER (Expires: cfg.expires_s) ready at once
//!  401/407                one Digest retry per challenge (strongest per realm, sip::auth)
//!  423 + Min-Expires      again with the larger interval
//!  2xx                    bound for the granted expiry (our Contact's `expires`,
//!                         else Expires, else what we asked); refreshed at
//!                         max(expiry/2, expiry - 60 s)
//!  failure (4xx-6xx, no   retried after Retry-After, else backoff: 30 s doubling
//!  answer: Timer F)       up to 30 min, 50-100 % jitter (RFC 5626 4.5's numbers)
//!  unregister(now)        REGISTER with Expires: 0 (when a binding may exist)
//! ```
//!
//! One Call-ID for the registration's life, CSeq counting up (RFC 3261
//! 10.2.4). A refresh answers the last challenge again at once (the next nonce
//! count), so a registrar that keeps its nonce does not challenge every
//! refresh. While a refresh fails, the binding still counts until the expiry
//! it was granted: calls keep going out through it.
//!
//! Time is milliseconds on the endpoint's clock; randomness (Call-ID, tags,
//! branches, cnonces, jitter) comes from an injected [`Random`].

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::auth::{self, Challenge, Credentials, DigestClient};
use super::call::{new_branch, Transmit};
use super::msg::{self, Message};
use super::transaction::{NonInviteClient, Timers, TxEvent};
use crate::random::Random;

/// Retry backoff of a failed registration: the first wait (RFC 5626 4.5's
/// base time when no flow is up) and the cap.
pub const RETRY_BASE_MS: u64 = 30_000;
pub const RETRY_MAX_MS: u64 = 1_800_000;
/// A refresh goes out at least this long before the binding lapses (or at
/// half its life, whichever is later).
pub const REFRESH_MARGIN_MS: u64 = 60_000;
/// 423s followed in a row at most (each must raise the interval).
const MAX_423_ROUNDS: u32 = 3;
/// Digest rounds per REGISTER at most (a new nonce, a stale one).
const MAX_AUTH_ROUNDS: u32 = 2;

/// One trunk's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterConfig {
    /// The trunk's name (status, logs, the calls' [`super::endpoint::Trunk::registration`]).
    pub name: String,
    /// Where REGISTERs go: the registrar's address, or the outbound proxy's.
    pub dest: SocketAddr,
    /// Request-URI: `sip:registrar[:port]` (the registrar's domain, no user).
    pub registrar_uri: String,
    /// User part of the address-of-record (the account's username).
    pub user: String,
    /// Host[:port] of the address-of-record (To and From), and the From
    /// domain of the calls through the binding.
    pub domain: String,
    /// Our Contact URI, the binding (`sip:user@our-address`).
    pub contact: String,
    /// The outbound proxy's pre-loaded Route (`<sip:proxy;lr>`), if any.
    pub route: Option<String>,
    /// Our address (Via sent-by).
    pub local: SocketAddr,
    /// Digest credentials (their username may differ from `user`).
    pub credentials: Option<Credentials>,
    /// The Expires asked for, seconds (a 423 raises it).
    pub expires_s: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub timers: Timers,
    pub user_agent: String,
}

impl RegisterConfig {
    /// Defaults: Expires 3600, the RFC's timers, the backoff above.
    pub fn new(name: &str, dest: SocketAddr, user: &str, domain: &str, local: SocketAddr) -> Self {
        RegisterConfig {
            name: name.into(),
            dest,
            registrar_uri: format!("sip:{domain}"),
            user: user.into(),
            domain: domain.into(),
            contact: format!("sip:{user}@{local}"),
            route: None,
            local,
            credentials: None,
            expires_s: 3_600,
            retry_base_ms: RETRY_BASE_MS,
            retry_max_ms: RETRY_MAX_MS,
            timers: Timers::default(),
            user_agent: concat!("voxline/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// The address-of-record, `sip:user@domain`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }
}

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationState {
    /// The first REGISTER (or one after a failure) is out.
    Registering,
    /// Bound; refreshed before it lapses.
    Registered,
    /// The last attempt failed; retried later (a binding granted before
    /// still counts until it lapses).
    Failed,
    /// The un-REGISTER is out.
    Unregistering,
    /// No binding (removed, or never made before the shutdown).
    Unregistered,
}

/// Why a registration attempt failed (stable codes, for status and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("no final answer to REGISTER (Timer F)")]
    Timeout,
    #[error("the registrar refused the REGISTER")]
    Rejected,
    #[error("the registrar refused our credentials (or asked for none we have)")]
    AuthFailed,
    #[error("423 without a usable larger Min-Expires")]
    IntervalTooBrief,
    #[error("the 2xx dropped our binding (expires=0)")]
    BindingRefused,
}

impl RegisterError {
    /// Stable machine code.
    pub fn code(self) -> &'static str {
        match self {
            RegisterError::Timeout => "register_timeout",
            RegisterError::Rejected => "register_rejected",
            RegisterError::AuthFailed => "register_auth_failed",
            RegisterError::IntervalTooBrief => "register_interval_too_brief",
            RegisterError::BindingRefused => "register_binding_refused",
        }
    }
}

/// What the health/metrics side reads of one registration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegistrationStatus {
    /// The trunk's name.
    pub name: String,
    pub state: RegistrationState,
    /// A binding is live now: calls may go out through it.
    pub bound: bool,
    /// The expiry the registrar granted last, seconds.
    pub granted_expires_s: Option<u32>,
    /// Successful REGISTERs so far (first registration and refreshes).
    pub registrations: u64,
    /// Failed attempts in a row (0 once one succeeds).
    pub failures: u32,
    /// The final status code of the last answer, if one came.
    pub last_code: Option<u16>,
    /// [`RegisterError::code`] of the last failure, until one succeeds.
    pub last_error: Option<&'static str>,
}

/// One trunk's registration client; see the module docs.
pub struct Registration {
    cfg: RegisterConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegistrationState,
    tx: Option<NonInviteClient>,
    /// The Expires of the REGISTER in flight (0: the un-REGISTER).
    sent_expires_s: u32,
    /// What we ask for (raised by a 423).
    expires_s: u32,
    digest: DigestClient,
    /// The challenges answered last, re-answered on every REGISTER, with the
    /// header name each goes in.
    challenges: Vec<(&'static str, Challenge)>,
    auth_rounds: u32,
    rounds_423: u32,
    /// Until when the last granted binding lasts (ms).
    bound_until: Option<u64>,
    granted_s: Option<u32>,
    refresh_at: Option<u64>,
    retry_at: Option<u64>,
    failures: u32,
    successes: u64,
    last_code: Option<u16>,
    last_error: Option<RegisterError>,
    out: VecDeque<Transmit>,
    random: Box<dyn Random>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.cfg.name)
            .field("state", &self.state)
            .finish()
    }
}

/// When to refresh a binding granted for `granted_s` seconds, ms after the grant.
pub fn refresh_after_ms(granted_s: u32) -> u64 {
    let life = u64::from(granted_s) * 1_000;
    (life / 2).max(life.saturating_sub(REFRESH_MARGIN_MS))
}

/// The binding's expiry a 2xx grants: our Contact's `expires` parameter,
/// else the `Expires` header, else what we asked for.
pub fn granted_expires(r: &Message, contact: &str, asked_s: u32) -> u32 {
    let ours = |uri: &str| {
        let base = |u: &str| u.split(';').next().unwrap_or("").to_ascii_lowercase();
        base(uri) == base(contact)
    };
    let from_contact = r
        .header_list("Contact")
        .into_iter()
        .filter_map(|v| msg::parse_name_addr(v).ok())
        .find(|a| ours(&a.uri))
        .and_then(|a| {
            a.param("expires")
                .and_then(|e| e.trim().parse::<u32>().ok())
        });
    from_contact
        .or_else(|| r.header("Expires").and_then(|e| e.trim().parse().ok()))
        .unwrap_or(asked_s)
}

impl Registration {
    /// Starts it: the first REGISTER is ready at once.
    pub fn new(cfg: RegisterConfig, now: u64, mut random: Box<dyn Random>) -> Registration {
        let call_id = format!("{}@voxline", random.hex(12));
        let from_tag = random.hex(6);
        let mut r = Registration {
            call_id,
            from_tag,
            cseq: 0,
            state: RegistrationState::Registering,
            tx: None,
            sent_expires_s: cfg.expires_s,
            expires_s: cfg.expires_s,
            digest: DigestClient::default(),
            challenges: Vec::new(),
            auth_rounds: 0,
            rounds_423: 0,
            bound_until: None,
            granted_s: None,
            refresh_at: None,
            retry_at: None,
            failures: 0,
            successes: 0,
            last_code: None,
            last_error: None,
            out: VecDeque::new(),
            random,
            cfg,
        };
        tracing::info!(trunk = %r.cfg.name, aor = %r.cfg.aor(), registrar = %r.cfg.dest, "REGISTER");
        r.send(now, r.expires_s);
        r
    }

    pub fn config(&self) -> &RegisterConfig {
        &self.cfg
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// A binding is live at `now`: calls may go out through it.
    pub fn is_bound(&self, now: u64) -> bool {
        !matches!(
            self.state,
            RegistrationState::Unregistering | RegistrationState::Unregistered
        ) && self.bound_until.is_some_and(|until| until > now)
    }

    /// When the next attempt goes out (after a failure), if one is planned.
    pub fn retry_at(&self) -> Option<u64> {
        self.retry_at
    }

    pub fn status(&self, now: u64) -> RegistrationStatus {
        RegistrationStatus {
            name: self.cfg.name.clone(),
            state: self.state,
            bound: self.is_bound(now),
            granted_expires_s: self.granted_s,
            registrations: self.successes,
            failures: self.failures,
            last_code: self.last_code,
            last_error: self.last_error.map(RegisterError::code),
        }
    }

    /// The REGISTER (`expires_s` 0: the un-REGISTER), as a new transaction.
    fn send(&mut self, now: u64, expires_s: u32) {
        self.cseq = self.cseq.saturating_add(1);
        self.sent_expires_s = expires_s;
        let branch = new_branch(self.random.as_mut());
        let req = self.build(&branch, expires_s);
        self.tx = Some(NonInviteClient::new(&req, branch, now, self.cfg.timers));
        self.drain_tx();
    }

    fn build(&mut self, branch: &str, expires_s: u32) -> Message {
        let mut m = Message::request("REGISTER", &self.cfg.registrar_uri);
        m.push(
            "Via",
            format!("SIP/2.0/UDP {};rport;branch={branch}", self.cfg.local),
        );
        if let Some(route) = &self.cfg.route {
            m.push("Route", route.clone());
        }
        m.push("Max-Forwards", "70");
        let aor = self.cfg.aor();
        m.push("From", format!("<{aor}>;tag={}", self.from_tag));
        m.push("To", format!("<{aor}>"));
        m.push("Call-ID", self.call_id.clone());
        m.push("CSeq", format!("{} REGISTER", self.cseq));
        if expires_s == 0 {
            m.push("Contact", format!("<{}>;expires=0", self.cfg.contact));
        } else {
            m.push("Contact", format!("<{}>", self.cfg.contact));
        }
        m.push("Expires", expires_s.to_string());
        if let Some(cred) = &self.cfg.credentials {
            for (name, ch) in &self.challenges {
                let cnonce = self.random.hex(8);
                let v = self.digest.authorize(
                    ch,
                    cred,
                    "REGISTER",
                    &self.cfg.registrar_uri,
                    &cnonce,
                    b"",
                );
                m.push(name, v);
            }
        }
        m.push("Allow", super::call::ALLOW_OUT_OF_DIALOG);
        m.push("User-Agent", self.cfg.user_agent.clone());
        m
    }

    fn drain_tx(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            while let Some(bytes) = tx.poll_transmit() {
                self.out.push_back(Transmit {
                    dest: self.cfg.dest,
                    bytes,
                });
            }
        }
    }

    /// A response with our Call-ID (matched to the REGISTER in flight by branch).
    pub fn handle_response(&mut self, now: u64, r: &Message) {
        if r.is_request() || r.call_id() != self.call_id || r.cseq().1 != "REGISTER" {
            return;
        }
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        if r.top_branch().as_deref() == Some(tx.branch.as_str()) {
            tx.on_response(r, now);
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if let Some(tx) = self.tx.as_mut() {
            tx.on_timer(now);
        }
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_at = None;
            self.auth_rounds = 0;
            self.rounds_423 = 0;
            tracing::debug!(trunk = %self.cfg.name, "refreshing the registration");
            self.send(now, self.expires_s);
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.auth_rounds = 0;
            self.rounds_423 = 0;
            self.state = RegistrationState::Registering;
            tracing::info!(trunk = %self.cfg.name, failures = self.failures, "REGISTER (retry)");
            self.send(now, self.expires_s);
        }
        self.pump(now);
    }

    pub fn next_timeout(&self) -> Option<u64> {
        [
            self.tx.as_ref().and_then(NonInviteClient::next_timer),
            self.refresh_at,
            self.retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Removes the binding (shutdown): REGISTER with Expires 0 when one may
    /// exist (bound, or a REGISTER in flight that may have made one);
    /// otherwise straight to [`RegistrationState::Unregistered`].
    pub fn unregister(&mut self, now: u64) {
        if matches!(
            self.state,
            RegistrationState::Unregistering | RegistrationState::Unregistered
        ) {
            return;
        }
        self.refresh_at = None;
        self.retry_at = None;
        let in_flight = self.tx.as_ref().is_some_and(|tx| {
            !matches!(
                tx.state(),
                super::transaction::NictState::Completed
                    | super::transaction::NictState::Terminated
            )
        });
        if self.is_bound(now) || in_flight {
            tracing::info!(trunk = %self.cfg.name, "un-REGISTER");
            self.state = RegistrationState::Unregistering;
            self.auth_rounds = 0;
            self.send(now, 0);
        } else {
            self.state = RegistrationState::Unregistered;
            self.tx = None;
        }
        self.bound_until = None;
    }

    /// Done with its un-REGISTER (or had nothing to remove).
    pub fn is_unregistered(&self) -> bool {
        self.state == RegistrationState::Unregistered
    }

    fn pump(&mut self, now: u64) {
        self.drain_tx();
        // Events of the transaction in flight; an auth retry or a 423 puts
        // a new one there (polled on, it has none yet).
        while let Some(ev) = self.tx.as_mut().and_then(NonInviteClient::poll_event) {
            match ev {
                TxEvent::Provisional(_) => {}
                TxEvent::Timeout => self.fail(now, RegisterError::Timeout, None, None),
                TxEvent::Final(r) => self.on_final(now, &r),
            }
            self.drain_tx();
        }
        if self.state == RegistrationState::Unregistered
            && self.tx.as_ref().is_some_and(NonInviteClient::is_terminated)
        {
            self.tx = None;
        }
    }

    fn on_final(&mut self, now: u64, r: &Message) {
        let code = r.code().unwrap_or(500);
        self.last_code = Some(code);
        if (code == 401 || code == 407) && self.try_auth(r, now) {
            return;
        }
        if self.state == RegistrationState::Unregistering {
            // Whatever the answer, we are going away.
            tracing::info!(trunk = %self.cfg.name, code, "unregistered");
            self.state = RegistrationState::Unregistered;
            return;
        }
        match code {
            200..=299 => {
                let granted = granted_expires(r, &self.cfg.contact, self.sent_expires_s);
                if granted == 0 {
                    self.fail(now, RegisterError::BindingRefused, Some(code), None);
                    return;
                }
                let was = self.state;
                self.state = RegistrationState::Registered;
                self.bound_until = Some(now.saturating_add(u64::from(granted) * 1_000));
                self.granted_s = Some(granted);
                self.refresh_at = Some(now.saturating_add(refresh_after_ms(granted)));
                self.failures = 0;
                self.last_error = None;
                self.successes += 1;
                if was == RegistrationState::Registered {
                    tracing::debug!(trunk = %self.cfg.name, expires_s = granted, "registration refreshed");
                } else {
                    tracing::info!(trunk = %self.cfg.name, expires_s = granted, contact = %self.cfg.contact, "registered");
                }
            }
            423 => {
                let min = r
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|m| *m > self.expires_s);
                match min {
                    Some(min) if self.rounds_423 < MAX_423_ROUNDS => {
                        self.rounds_423 += 1;
                        tracing::info!(trunk = %self.cfg.name, min_expires_s = min, "423: asking for the registrar's minimum");
                        self.expires_s = min;
                        self.send(now, min);
                    }
                    _ => self.fail(now, RegisterError::IntervalTooBrief, Some(code), None),
                }
            }
            401 | 407 => self.fail(now, RegisterError::AuthFailed, Some(code), None),
            _ => {
                let retry_after = r
                    .header("Retry-After")
                    .and_then(msg::retry_after_seconds)
                    .filter(|s| *s > 0);
                self.fail(now, RegisterError::Rejected, Some(code), retry_after);
            }
        }
    }

    /// An attempt failed: retried after `retry_after_s`, else after the backoff.
    fn fail(
        &mut self,
        now: u64,
        why: RegisterError,
        code: Option<u16>,
        retry_after_s: Option<u32>,
    ) {
        if self.state == RegistrationState::Unregistering {
            tracing::warn!(trunk = %self.cfg.name, error = why.code(), "un-REGISTER failed; giving up");
            self.state = RegistrationState::Unregistered;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(why);
        self.state = RegistrationState::Failed;
        self.refresh_at = None;
        let wait = match retry_after_s {
            Some(s) => u64::from(s) * 1_000,
            None => self.backoff_ms(),
        };
        self.retry_at = Some(now.saturating_add(wait));
        let bound = self.is_bound(now);
        tracing::warn!(trunk = %self.cfg.name, error = why.code(), ?code, failures = self.failures, retry_in_ms = wait, still_bound = bound, "registration failed");
    }

    /// 50-100 % of base * 2^(failures-1), capped.
    fn backoff_ms(&mut self) -> u64 {
        let doublings = self.failures.saturating_sub(1).min(20);
        let full = self
            .cfg
            .retry_base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.cfg.retry_max_ms)
            .max(1);
        let mut b = [0u8; 8];
        self.random.fill(&mut b);
        let half = full / 2;
        half + u64::from_le_bytes(b) % (full - half + 1)
    }

    /// Answers a 401/407: per realm the strongest challenge, once per nonce
    /// (a stale one again); `false` when not answerable.
    fn try_auth(&mut self, r: &Message, now: u64) -> bool {
        let Some(cred) = self.cfg.credentials.clone() else {
            return false;
        };
        if self.auth_rounds >= MAX_AUTH_ROUNDS {
            return false;
        }
        let Ok((auth_name, chosen)) = auth::challenges_to_answer(r, cred.realm.as_deref()) else {
            return false;
        };
        // The nonce we just answered, again and not stale: the credentials are wrong.
        let repeated = self.auth_rounds > 0
            && chosen.iter().any(|ch| {
                !ch.stale
                    && self
                        .challenges
                        .iter()
                        .any(|(_, old)| old.nonce == ch.nonce && old.realm == ch.realm)
            });
        if repeated {
            return false;
        }
        self.auth_rounds += 1;
        // A 401 and a 407 may both come (registrar behind a proxy): keep the other kind.
        self.challenges.retain(|(n, _)| *n != auth_name);
        self.challenges
            .extend(chosen.into_iter().map(|ch| (auth_name, ch)));
        self.send(now, self.sent_expires_s);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use crate::sip::msg::response_to;

    const LOCAL: &str = "192.0.2.1:5060";
    const REGISTRAR: &str = "198.51.100.7:5060";

    fn cfg() -> RegisterConfig {
        let mut c = RegisterConfig::new(
            "carrier",
            REGISTRAR.parse().unwrap(),
            "acct",
            "sip.carrier.example",
            LOCAL.parse().unwrap(),
        );
        c.credentials = Some(Credentials {
            username: "acct-auth".into(),
            password: "pw".into(),
            realm: None,
        });
        c
    }

    fn sent(r: &mut Registration) -> Vec<Message> {
        std::iter::from_fn(|| r.poll_transmit())
            .map(|t| {
                assert_eq!(t.dest, REGISTRAR.parse().unwrap());
                msg::parse(&t.bytes).unwrap()
            })
            .collect()
    }

    fn one(r: &mut Registration) -> Message {
        let mut v = sent(r);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn reply(req: &Message, code: u16, extra: &[(&str, &str)]) -> Message {
        let mut m = response_to(req, code, Some("reg1"));
        for (n, v) in extra {
            m.push(n, *v);
        }
        msg::parse(&m.to_bytes()).unwrap()
    }

    /// Runs every timer due up to `until`, returning what was sent.
    fn advance(r: &mut Registration, now: &mut u64, until: u64) -> Vec<(u64, Message)> {
        let mut out = Vec::new();
        while let Some(t) = r.next_timeout().filter(|t| *t <= until) {
            *now = t.max(*now);
            r.handle_timeout(*now);
            out.extend(sent(r).into_iter().map(|m| (*now, m)));
        }
        *now = until;
        out
    }

    /// Runs the timers until something is sent: when, and what.
    fn next_send(r: &mut Registration, now: &mut u64) -> (u64, Message) {
        loop {
            let t = r.next_timeout().expect("a timer");
            *now = t.max(*now);
            r.handle_timeout(*now);
            if let Some(m) = sent(r).into_iter().next() {
                return (*now, m);
            }
        }
    }

    const CHALLENGE: &str = "Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\", algorithm=MD5";

    /// New, challenged, answered, bound for `granted` seconds; returns the
    /// registration and the clock.
    fn registered(granted: &str) -> (Registration, u64) {
        let mut r = Registration::new(cfg(), 0, Box::new(SeededRandom::new(1)));
        let first = one(&mut r);
        r.handle_response(10, &reply(&first, 401, &[("WWW-Authenticate", CHALLENGE)]));
        let second = one(&mut r);
        r.handle_response(20, &reply(&second, 200, &[("Expires", granted)]));
        assert!(sent(&mut r).is_empty());
        (r, 20)
    }

    #[test]
    fn registers_with_contact_and_expires_and_answers_the_challenge() {
        let mut r = Registration::new(cfg(), 0, Box::new(SeededRandom::new(1)));
        assert_eq!(r.state(), RegistrationState::Registering);
        assert!(!r.is_bound(0));
        let first = one(&mut r);
        assert_eq!(
            (first.method(), first.uri()),
            (Some("REGISTER"), Some("sip:sip.carrier.example"))
        );
        assert_eq!(first.header("To"), Some("<sip:acct@sip.carrier.example>"));
        assert!(first
            .header("From")
            .is_some_and(|f| f.starts_with("<sip:acct@sip.carrier.example>;tag=")));
        assert_eq!(first.header("Contact"), Some("<sip:acct@192.0.2.1:5060>"));
        assert_eq!(first.header("Expires"), Some("3600"));
        assert_eq!(first.cseq(), (1, "REGISTER"));
        assert!(first.header("Authorization").is_none());
        // Several challenges: the strongest of the realm is answered, once.
        let sha = "Digest realm=\"carrier\", nonce=\"n2\", qop=\"auth\", algorithm=SHA-256";
        r.handle_response(
            10,
            &reply(
                &first,
                401,
                &[("WWW-Authenticate", CHALLENGE), ("WWW-Authenticate", sha)],
            ),
        );
        let second = one(&mut r);
        assert_eq!(second.cseq(), (2, "REGISTER"));
        assert_eq!(second.call_id(), first.call_id());
        assert_eq!(second.header("From"), first.header("From"));
        assert_ne!(second.top_branch(), first.top_branch());
        let auth = second.header_lines("Authorization");
        assert_eq!(auth.len(), 1, "{auth:?}");
        assert!(auth[0].contains("username=\"acct-auth\""), "{}", auth[0]);
        assert!(auth[0].contains("algorithm=SHA-256"), "{}", auth[0]);
        assert!(
            auth[0].contains("uri=\"sip:sip.carrier.example\""),
            "{}",
            auth[0]
        );
        // The 200 grants our Contact 120 s (its parameter over Expires).
        r.handle_response(
            20,
            &reply(
                &second,
                200,
                &[
                    ("Contact", "<sip:other@203.0.113.1>;expires=3000"),
                    (
                        "Contact",
                        "<sip:acct@192.0.2.1:5060;transport=udp>;expires=120",
                    ),
                    ("Expires", "3600"),
                ],
            ),
        );
        assert_eq!(r.state(), RegistrationState::Registered);
        assert!(r.is_bound(20) && r.is_bound(120_019) && !r.is_bound(120_020));
        let s = r.status(20);
        assert_eq!(
            (s.bound, s.granted_expires_s, s.registrations, s.last_code),
            (true, Some(120), 1, Some(200))
        );
    }

    #[test]
    fn refreshes_at_half_life_or_a_minute_before_expiry() {
        assert_eq!(refresh_after_ms(3_600), 3_540_000);
        assert_eq!(refresh_after_ms(120), 60_000);
        assert_eq!(refresh_after_ms(60), 30_000);
        assert_eq!(refresh_after_ms(1), 500);
        let (mut r, mut now) = registered("3600");
        assert!(advance(&mut r, &mut now, 20 + 3_539_999).is_empty());
        let out = advance(&mut r, &mut now, 20 + 3_540_000);
        assert_eq!(out.len(), 1);
        let (at, refresh) = &out[0];
        assert_eq!(*at, 20 + 3_540_000);
        assert_eq!(refresh.cseq(), (3, "REGISTER"));
        // The last challenge answered again at once, with the next nonce count.
        let auth = refresh.header("Authorization").unwrap();
        assert!(
            auth.contains("nonce=\"n1\"") && auth.contains("nc=00000002"),
            "{auth}"
        );
        // Still bound while the refresh is out; bound anew by its 200.
        assert!(r.is_bound(*at + 1));
        let t = *at + 50;
        r.handle_response(t, &reply(refresh, 200, &[("Expires", "600")]));
        assert!(r.is_bound(t + 599_999) && !r.is_bound(t + 600_000));
        assert_eq!(r.status(t).registrations, 2);
        let next = advance(&mut r, &mut now, t + 540_000);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0, t + 540_000);
    }

    #[test]
    fn a_refresh_challenged_with_a_new_nonce_is_answered() {
        let (mut r, mut now) = registered("60");
        let out = advance(&mut r, &mut now, 20 + 30_000);
        let refresh = &out[0].1;
        let new = "Digest realm=\"carrier\", nonce=\"n9\", qop=\"auth\", stale=true";
        r.handle_response(now, &reply(refresh, 401, &[("WWW-Authenticate", new)]));
        let again = one(&mut r);
        let auth = again.header("Authorization").unwrap();
        assert!(
            auth.contains("nonce=\"n9\"") && auth.contains("nc=00000001"),
            "{auth}"
        );
        r.handle_response(now + 5, &reply(&again, 200, &[]));
        // No Expires anywhere: what we asked for.
        assert_eq!(r.status(now).granted_expires_s, Some(3_600));
    }

    #[test]
    fn wrong_credentials_fail_and_are_retried_with_backoff() {
        let mut r = Registration::new(cfg(), 0, Box::new(SeededRandom::new(3)));
        let first = one(&mut r);
        r.handle_response(10, &reply(&first, 401, &[("WWW-Authenticate", CHALLENGE)]));
        let second = one(&mut r);
        // The same nonce, not stale: refused.
        r.handle_response(20, &reply(&second, 401, &[("WWW-Authenticate", CHALLENGE)]));
        assert!(sent(&mut r).is_empty());
        let s = r.status(20);
        assert_eq!(
            (s.state, s.bound, s.failures, s.last_error, s.last_code),
            (
                RegistrationState::Failed,
                false,
                1,
                Some("register_auth_failed"),
                Some(401)
            )
        );
        // 50-100 % of 30 s, then of 60 s, 120 s...; capped at 30 min.
        let mut now = 20;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let before = now;
            let (at, req) = next_send(&mut r, &mut now);
            waits.push(at - before);
            assert_eq!(r.state(), RegistrationState::Registering);
            r.handle_response(now, &reply(&req, 403, &[]));
            assert_eq!(r.state(), RegistrationState::Failed);
        }
        for (i, w) in waits.iter().enumerate() {
            let full = (30_000u64 << i).min(1_800_000);
            assert!((full / 2..=full).contains(w), "retry {i} after {w} ms");
        }
        assert_eq!(r.status(now).last_error, Some("register_rejected"));
        assert_eq!(r.status(now).failures, 11);
    }

    #[test]
    fn retry_after_decides_the_wait_and_a_success_resets_the_count() {
        let mut r = Registration::new(cfg(), 0, Box::new(SeededRandom::new(4)));
        let first = one(&mut r);
        r.handle_response(5, &reply(&first, 503, &[("Retry-After", "7")]));
        assert_eq!(r.retry_at(), Some(7_005));
        let mut now = 5;
        assert!(advance(&mut r, &mut now, 7_004).is_empty());
        let out = advance(&mut r, &mut now, 7_005);
        assert_eq!(out.len(), 1);
        r.handle_response(7_010, &reply(&out[0].1, 200, &[("Expires", "300")]));
        let s = r.status(7_010);
        assert_eq!((s.failures, s.last_error, s.bound), (0, None, true));
    }

    #[test]
    fn no_answer_is_a_timeout_failure_and_a_lapsed_binding_stops_counting() {
        let (mut r, mut now) = registered("120");
        // The refresh at 60 s gets no answer: Timer F (32 s) fails it.
        let out = advance(&mut r, &mut now, 20 + 60_000 + 32_000);
        assert!(out.len() > 1, "retransmitted: {}", out.len());
        assert!(out.iter().all(|(_, m)| m.cseq() == (3, "REGISTER")));
        let s = r.status(now);
        assert_eq!(
            (s.state, s.last_error, s.bound),
            (RegistrationState::Failed, Some("register_timeout"), true)
        );
        // Bound until the granted 120 s are up, not beyond.
        assert!(r.is_bound(20 + 119_999) && !r.is_bound(20 + 120_000));
    }

    #[test]
    fn a_423_is_retried_with_min_expires() {
        let mut c = cfg();
        c.credentials = None;
        c.expires_s = 60;
        let mut r = Registration::new(c, 0, Box::new(SeededRandom::new(5)));
        let first = one(&mut r);
        r.handle_response(5, &reply(&first, 423, &[("Min-Expires", "1800")]));
        let second = one(&mut r);
        assert_eq!(
            (second.header("Expires"), second.cseq()),
            (Some("1800"), (2, "REGISTER"))
        );
        r.handle_response(10, &reply(&second, 200, &[]));
        assert_eq!(r.status(10).granted_expires_s, Some(1_800));
        // A 423 that does not raise the interval is not followed.
        let mut now = 10;
        let out = advance(&mut r, &mut now, 10 + 1_740_000);
        let refresh = &out[0].1;
        assert_eq!(refresh.header("Expires"), Some("1800"));
        r.handle_response(now, &reply(refresh, 423, &[("Min-Expires", "1800")]));
        assert!(sent(&mut r).is_empty());
        assert_eq!(
            r.status(now).last_error,
            Some("register_interval_too_brief")
        );
    }

    #[test]
    fn unregister_sends_expires_zero_and_answers_its_challenge() {
        let (mut r, now) = registered("3600");
        r.unregister(now);
        assert_eq!(r.state(), RegistrationState::Unregistering);
        assert!(!r.is_bound(now));
        let un = one(&mut r);
        assert_eq!(
            (un.header("Expires"), un.header("Contact")),
            (Some("0"), Some("<sip:acct@192.0.2.1:5060>;expires=0"))
        );
        let fresh = "Digest realm=\"carrier\", nonce=\"n5\", qop=\"auth\"";
        r.handle_response(now + 5, &reply(&un, 401, &[("WWW-Authenticate", fresh)]));
        let again = one(&mut r);
        assert_eq!(again.header("Expires"), Some("0"));
        assert!(again
            .header("Authorization")
            .is_some_and(|a| a.contains("nonce=\"n5\"")));
        assert!(!r.is_unregistered());
        r.handle_response(now + 10, &reply(&again, 200, &[]));
        assert!(r.is_unregistered());
        // No refresh, no retry afterwards.
        let mut t = now + 10;
        assert!(advance(&mut r, &mut t, now + 10_000_000).is_empty());
        assert_eq!(r.next_timeout(), None);
    }

    #[test]
    fn unregister_without_a_binding_sends_nothing() {
        let mut r = Registration::new(cfg(), 0, Box::new(SeededRandom::new(6)));
        let first = one(&mut r);
        r.handle_response(5, &reply(&first, 403, &[]));
        r.unregister(10);
        assert!(sent(&mut r).is_empty());
        assert!(r.is_unregistered());
        assert_eq!(r.next_timeout(), None);
    }

    #[test]
    fn a_2xx_that_drops_our_binding_is_a_failure() {
        let mut c = cfg();
        c.credentials = None;
        let mut r = Registration::new(c, 0, Box::new(SeededRandom::new(7)));
        let first = one(&mut r);
        r.handle_response(
            5,
            &reply(
                &first,
                200,
                &[("Contact", "<sip:acct@192.0.2.1:5060>;expires=0")],
            ),
        );
        let s = r.status(5);
        assert_eq!(
            (s.state, s.bound, s.last_error),
            (
                RegistrationState::Failed,
                false,
                Some("register_binding_refused")
            )
        );
    }

    #[test]
    fn stray_and_hostile_responses_change_nothing() {
        let (mut r, now) = registered("3600");
        let mut other = Message::request("REGISTER", "sip:x");
        other.push("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKother");
        other.push("Call-ID", r.call_id().to_string());
        other.push("CSeq", "9 REGISTER");
        other.push("From", "<sip:a@b>;tag=1");
        other.push("To", "<sip:a@b>");
        r.handle_response(now, &reply(&other, 500, &[]));
        let mut invite = other.clone();
        invite.headers.retain(|(n, _)| n != "CSeq");
        invite.push("CSeq", "9 INVITE");
        r.handle_response(now, &reply(&invite, 500, &[]));
        assert_eq!(r.state(), RegistrationState::Registered);
        assert!(sent(&mut r).is_empty());
    }
}
