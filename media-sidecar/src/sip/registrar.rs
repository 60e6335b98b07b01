//! The registrar for users' SIP phones (issue 16), sans-IO: fed a parsed
//! REGISTER and the time, it answers at once (401 challenge, 423, 400,
//! 403, 503) or asks the edge ([`RegistrarStep::AskEdge`]); the edge's
//! answer ([`Registrar::on_edge_answer`]) becomes the phone's 200 (with the
//! user's bindings) or refusal, and the local binding table
//! ([`Registrations`]) the later "ring a user" reads.
//!
//! The sidecar holds no credentials: it checks only that the Digest answer
//! is to one of its own nonces, fresh, and then the edge checks `response`
//! against the HA1 it stores. Nonces are stateless: the issue time and an
//! HMAC-SHA256 over it keyed per process, so any nonce can be checked
//! without remembering it, one older than [`NONCE_LIFETIME_MS`] is
//! answered with a new challenge marked `stale=true` (RFC 7616 3.3), and a
//! restart invalidates every old nonce (phones simply re-authenticate).
//!
//! REGISTER rules (RFC 3261 10.3): `Contact: *` only alone and with
//! `Expires: 0` (every binding of the user goes); each Contact's expiry is
//! its `expires` parameter, else the `Expires` header, else the default; a
//! non-zero one below the minimum is 423 with `Min-Expires`, one above the
//! maximum is shortened. Bindings are bounded per user and in total.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use voxline_shared::sidecar_link::{
    phone_accounts, DigestAnswer, PhoneRegistration, PhoneRegistrationAnswer,
    PhoneRegistrationDecision, RequestedContact, MAX_PHONE_CONTACTS, PROTOCOL_VERSION,
};
use voxline_shared::sip_digest::{auth_params, quote, Algorithm};

use super::msg::{self, parse_name_addr, Message};
use super::transport::{Flow, Transport};
use crate::registrations::{PhoneContact, Registrations, UserKey};

/// How long a nonce is taken before a fresh one is asked for (`stale=true`).
pub const NONCE_LIFETIME_MS: u64 = 5 * 60 * 1000;

/// REGISTERs waiting for the edge at once; more get 503.
pub const MAX_PENDING: usize = 256;

/// How long a REGISTER waits for the edge before the phone gets 503.
pub const EDGE_WITHIN_MS: u64 = 20_000;

/// Seconds a phone is told to wait after a 503.
const RETRY_AFTER_SECONDS: u32 = 30;

/// The registrar's settings (`[registrar]` in the sidecar's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shortest expiry taken (shorter: 423 with `Min-Expires`).
    pub min_expires_seconds: u32,
    /// Longest expiry granted (longer ones are shortened to it).
    pub max_expires_seconds: u32,
    /// The expiry of a Contact that asks for none.
    pub default_expires_seconds: u32,
    /// Bindings one user may hold here (at most [`MAX_PHONE_CONTACTS`]).
    pub max_bindings_per_user: usize,
    /// Bindings held here in all.
    pub max_bindings: usize,
    /// Challenge with SHA-256 too (first, RFC 8760), not only MD5. Off by
    /// default: some phones refuse a whole 401 that names an algorithm they
    /// lack (baresip 1.0 / libre: "Function not implemented").
    pub digest_sha256: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires_seconds: 60,
            max_expires_seconds: 3_600,
            default_expires_seconds: 600,
            max_bindings_per_user: 5,
            max_bindings: 10_000,
            digest_sha256: false,
        }
    }
}

/// One REGISTER waiting for the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PendingId(pub u64);

/// What a REGISTER comes to now.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrarStep {
    /// Answer the phone with this, over the flow it came from.
    Reply(Message),
    /// Ask the edge (`sidecar_id`, `region` filled in by the lease client);
    /// its answer goes to [`Registrar::on_edge_answer`] with this id.
    AskEdge(PendingId, Box<PhoneRegistration>),
    /// A retransmission of a REGISTER already waiting: nothing to do.
    Absorbed,
}

struct Pending {
    request: Message,
    flow: Flow,
    to_tag: String,
    user: UserKey,
    contacts: Vec<RequestedContact>,
    remove_all: bool,
    asked_ms: u64,
}

/// The registrar: nonces, the REGISTERs waiting for the edge, the bindings.
pub struct Registrar {
    config: RegistrarConfig,
    key: [u8; 32],
    pending: HashMap<PendingId, Pending>,
    next_id: u64,
    table: Registrations,
}

/// The Contacts of a REGISTER, read.
enum Contacts {
    /// `Contact: *` (with `Expires: 0`).
    All,
    List(Vec<RequestedContact>),
}

impl Registrar {
    /// `key`: random per process (the nonces' HMAC key).
    pub fn new(config: RegistrarConfig, key: [u8; 32]) -> Registrar {
        Registrar {
            config,
            key,
            pending: HashMap::new(),
            next_id: 0,
            table: Registrations::default(),
        }
    }

    /// The bindings held here.
    pub fn registrations(&self) -> &Registrations {
        &self.table
    }

    fn hmac(&self, issued_hex: &str) -> Option<Hmac<Sha256>> {
        // HMAC takes a key of any length: this is never `None`.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        mac.update(issued_hex.as_bytes());
        Some(mac)
    }

    fn mac(&self, issued_hex: &str) -> String {
        self.hmac(issued_hex)
            .map(|m| hex::encode(&m.finalize().into_bytes()[..16]))
            .unwrap_or_default()
    }

    /// A nonce issued at `now_ms`: `<ms hex>.<HMAC hex>`.
    fn nonce(&self, now_ms: u64) -> String {
        let issued = format!("{now_ms:x}");
        let mac = self.mac(&issued);
        format!("{issued}.{mac}")
    }

    /// `Some(true)`: ours and fresh; `Some(false)`: ours but stale; `None`: not ours.
    fn check_nonce(&self, nonce: &str, now_ms: u64) -> Option<bool> {
        let (issued, mac) = nonce.split_once('.')?;
        let mac = hex::decode(mac).ok().filter(|m| m.len() == 16)?;
        // Compared in constant time by the hmac crate.
        if issued.len() > 16 || self.hmac(issued)?.verify_truncated_left(&mac).is_err() {
            return None;
        }
        let at = u64::from_str_radix(issued, 16).ok()?;
        Some(at <= now_ms && now_ms - at <= NONCE_LIFETIME_MS)
    }

    /// 401 with a fresh nonce: MD5, and with `digest_sha256` SHA-256 before
    /// it (RFC 8760 2.4: one challenge per algorithm, the preferred first).
    fn challenge(&self, m: &Message, to_tag: &str, now_ms: u64, stale: bool) -> Message {
        let mut r = msg::response_to(m, 401, Some(to_tag));
        let nonce = self.nonce(now_ms);
        let algorithms: &[Algorithm] = if self.config.digest_sha256 {
            &[Algorithm::Sha256, Algorithm::Md5]
        } else {
            &[Algorithm::Md5]
        };
        for alg in algorithms {
            let mut v = format!(
                "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
                phone_accounts::REALM,
                quote(&nonce),
                alg.name()
            );
            if stale {
                v.push_str(", stale=true");
            }
            r.push("WWW-Authenticate", v);
        }
        r
    }

    fn reply(m: &Message, code: u16, to_tag: &str) -> Message {
        let mut r = msg::response_to(m, code, Some(to_tag));
        if code == 503 {
            r.push("Retry-After", RETRY_AFTER_SECONDS.to_string());
        }
        r
    }

    /// The Contacts and the expiry each asks for, or the answer to give.
    fn contacts(&self, m: &Message) -> Result<Contacts, u16> {
        let expires_header = match m.header("Expires") {
            Some(v) => Some(v.trim().parse::<u32>().map_err(|_| 400u16)?),
            None => None,
        };
        let values = m.header_list("Contact");
        if values.iter().any(|v| v.trim() == "*") {
            if values.len() != 1 || expires_header != Some(0) {
                return Err(400);
            }
            return Ok(Contacts::All);
        }
        if values.len() > MAX_PHONE_CONTACTS {
            return Err(403);
        }
        let mut out = Vec::new();
        for v in values {
            let a = parse_name_addr(v).map_err(|_| 400u16)?;
            let asked = match a.param("expires") {
                Some(e) => e.trim().parse::<u32>().map_err(|_| 400u16)?,
                None => expires_header.unwrap_or(self.config.default_expires_seconds),
            };
            let granted = match asked {
                0 => 0,
                e if e < self.config.min_expires_seconds => return Err(423),
                e => e.min(self.config.max_expires_seconds),
            };
            if !out.iter().any(|c: &RequestedContact| c.uri == a.uri) {
                out.push(RequestedContact {
                    uri: a.uri,
                    expires_seconds: granted,
                });
            }
        }
        Ok(Contacts::List(out))
    }

    /// A REGISTER from `from` (a phone's: never a trunk's) at `now_ms`;
    /// `to_tag` is the To tag our answer carries.
    pub fn on_register(
        &mut self,
        now_ms: u64,
        from: &Flow,
        m: &Message,
        to_tag: &str,
    ) -> RegistrarStep {
        self.table.purge(now_ms);
        let (cseq, _) = m.cseq();
        if self
            .pending
            .values()
            .any(|p| p.request.call_id() == m.call_id() && p.request.cseq().0 == cseq)
        {
            return RegistrarStep::Absorbed;
        }
        // No answer, or one to another realm or to no nonce of ours: a challenge.
        let Some(auth) = m
            .header_lines("Authorization")
            .into_iter()
            .find_map(|v| read_authorization(v, phone_accounts::REALM))
        else {
            return RegistrarStep::Reply(self.challenge(m, to_tag, now_ms, false));
        };
        match self.check_nonce(&auth.nonce, now_ms) {
            None => return RegistrarStep::Reply(self.challenge(m, to_tag, now_ms, false)),
            Some(false) => return RegistrarStep::Reply(self.challenge(m, to_tag, now_ms, true)),
            Some(true) => {}
        }
        let Some((tenant, user_pk)) = phone_accounts::parse_username(&auth.username) else {
            return RegistrarStep::Reply(Self::reply(m, 404, to_tag));
        };
        let user: UserKey = (tenant.to_string(), user_pk);
        let (contacts, remove_all) = match self.contacts(m) {
            Ok(Contacts::All) => (Vec::new(), true),
            Ok(Contacts::List(c)) => (c, false),
            Err(423) => {
                let mut r = msg::response_to(m, 423, Some(to_tag));
                r.push("Min-Expires", self.config.min_expires_seconds.to_string());
                return RegistrarStep::Reply(r);
            }
            Err(code) => return RegistrarStep::Reply(Self::reply(m, code, to_tag)),
        };
        // The bounds, before the edge is asked: new bindings past them are refused.
        let new = contacts
            .iter()
            .filter(|c| c.expires_seconds > 0 && !self.table.holds(&user, &c.uri, now_ms))
            .count();
        if new > 0 {
            if self.table.count_for(&user, now_ms) + new > self.config.max_bindings_per_user {
                return RegistrarStep::Reply(Self::reply(m, 403, to_tag));
            }
            if self.table.len() + new > self.config.max_bindings {
                return RegistrarStep::Reply(Self::reply(m, 503, to_tag));
            }
        }
        if self.pending.len() >= MAX_PENDING {
            return RegistrarStep::Reply(Self::reply(m, 503, to_tag));
        }
        self.next_id += 1;
        let id = PendingId(self.next_id);
        let registration = PhoneRegistration {
            protocol_version: PROTOCOL_VERSION,
            sidecar_id: String::new(),
            region: String::new(),
            digest: auth,
            sip_call_id: m.call_id().to_string(),
            cseq,
            contacts: contacts.clone(),
            remove_all,
            source: from.addr.to_string(),
            transport: transport_name(from.transport).to_string(),
            received_ms: 0,
        };
        self.pending.insert(
            id,
            Pending {
                request: m.clone(),
                flow: from.clone(),
                to_tag: to_tag.to_string(),
                user,
                contacts,
                remove_all,
                asked_ms: now_ms,
            },
        );
        RegistrarStep::AskEdge(id, Box::new(registration))
    }

    /// The edge's answer to REGISTER `id` (`None`: no usable answer): the
    /// phone's response and the flow it goes over; `None` when `id` is not
    /// waiting (answered already, or given up).
    pub fn on_edge_answer(
        &mut self,
        now_ms: u64,
        id: PendingId,
        answer: Option<PhoneRegistrationAnswer>,
    ) -> Option<(Flow, Message)> {
        let p = self.pending.remove(&id)?;
        let m = &p.request;
        let r = match answer.map(|a| a.decision) {
            Some(PhoneRegistrationDecision::Accept { bindings, .. }) => {
                if p.remove_all {
                    self.table.remove_user(&p.user);
                }
                for c in &p.contacts {
                    if c.expires_seconds == 0 {
                        self.table.remove(&p.user, &c.uri);
                    } else {
                        self.table.upsert(
                            p.user.clone(),
                            PhoneContact {
                                uri: c.uri.clone(),
                                source: p.flow.addr,
                                transport: p.flow.transport,
                                expires_at_ms: now_ms
                                    .saturating_add(u64::from(c.expires_seconds) * 1000),
                            },
                        );
                    }
                }
                let held: Vec<&str> = bindings.iter().map(|b| b.contact.as_str()).collect();
                self.table.retain_only(&p.user, &held);
                let mut r = msg::response_to(m, 200, Some(&p.to_tag));
                for b in &bindings {
                    r.push(
                        "Contact",
                        format!("<{}>;expires={}", b.contact, b.expires_seconds),
                    );
                }
                r
            }
            Some(PhoneRegistrationDecision::Refuse { sip_code, reason }) => {
                tracing::info!(sip_call_id = %m.call_id(), sip_code, %reason, "phone REGISTER refused by the edge");
                let code = if (400..700).contains(&sip_code) {
                    sip_code
                } else {
                    500
                };
                Self::reply(m, code, &p.to_tag)
            }
            None => Self::reply(m, 503, &p.to_tag),
        };
        Some((p.flow, r))
    }

    /// REGISTERs that waited [`EDGE_WITHIN_MS`] for the edge: 503 each.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(Flow, Message)> {
        let late: Vec<PendingId> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.asked_ms) >= EDGE_WITHIN_MS)
            .map(|(id, _)| *id)
            .collect();
        late.into_iter()
            .filter_map(|id| self.on_edge_answer(now_ms, id, None))
            .collect()
    }

    /// When [`Registrar::expire`] has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|p| p.asked_ms + EDGE_WITHIN_MS)
            .min()
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

/// A Digest `Authorization` value for `realm`, read; `None` when it is not
/// one (another scheme or realm, a field missing, too long).
fn read_authorization(v: &str, realm: &str) -> Option<DigestAnswer> {
    let v = v.trim();
    let (scheme, rest) = v.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Digest") || v.len() > 4_096 {
        return None;
    }
    let params = auth_params(rest).ok()?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let answer = DigestAnswer {
        username: get("username")?,
        realm: get("realm")?,
        nonce: get("nonce")?,
        uri: get("uri")?,
        method: "REGISTER".to_string(),
        response: get("response")?,
        algorithm: get("algorithm").unwrap_or_else(|| "MD5".to_string()),
        qop: get("qop"),
        nc: get("nc"),
        cnonce: get("cnonce"),
    };
    (answer.realm == realm).then_some(answer)
}

#[cfg(test)]
mod tests;
