//! Traffic control, sans-IO: per-tenant rate limits and idempotency keys.
//!
//! Exactness comes from one `RateLimiter` Durable Object per tenant (glue in
//! `glue/rate_limiter.rs`) being the single writer of that tenant's counters and
//! idempotency records: [`admit`] is a synchronous decision with no I/O in
//! the middle, so one round trip checks every scope of a request at once
//! (API key, client IP, destination number) and begins its idempotency key.
//!
//! Rate limits are FIXED windows aligned on multiples of `window_seconds`
//! since the unix epoch: a counter per (scope, window). Chosen over a
//! sliding window because it is exact, O(1) in memory per scope and its
//! `Reset` is a fact rather than an estimate; the cost is that a client may
//! spend up to 2x the limit across one window boundary. A rejected request
//! consumes nothing in any scope.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::store::StoreError;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// An in-flight key older than this is presumed abandoned (its request died)
/// and may be taken over by a retry.
pub const IDEMPOTENCY_STALE_MS: u64 = 60_000;
pub const IDEMPOTENCY_KEY_MAX: usize = 255;
pub const LIMIT_MAX: u32 = 1_000_000;
pub const WINDOW_SECONDS_MAX: u32 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

/// A tenant's limits. Defaults are generous for the API (per key and per
/// IP: 1,000 requests a minute) and protective for callees (per number: 20
/// call requests an hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    pub per_key: RateLimit,
    pub per_ip: RateLimit,
    pub per_number: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_key: RateLimit {
                limit: 1_000,
                window_seconds: 60,
            },
            per_ip: RateLimit {
                limit: 1_000,
                window_seconds: 60,
            },
            per_number: RateLimit {
                limit: 20,
                window_seconds: 3_600,
            },
        }
    }
}

/// One scope to count a request against, e.g. `key:key_ab12` with its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub scope: String,
    pub limit: RateLimit,
    /// Counts only requests that do new work: not idempotent replays (the
    /// destination-number limit counts calls placed, not answers repeated).
    #[serde(default)]
    pub new_work_only: bool,
}

/// One scope's counter in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub count: u32,
}

/// The rate-limit outcome, reported for the tightest applicable limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateVerdict {
    pub allowed: bool,
    /// The scope reported (the one that refused, or the tightest one).
    pub scope: String,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until that scope's window resets (rounded up, at least 1).
    #[serde(rename = "reset_secs")]
    pub reset_seconds: u64,
}

impl RateVerdict {
    /// `X-RateLimit-*` headers (and `Retry-After` when refused).
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("X-RateLimit-Limit".to_string(), self.limit.to_string()),
            (
                "X-RateLimit-Remaining".to_string(),
                self.remaining.to_string(),
            ),
            (
                "X-RateLimit-Reset".to_string(),
                self.reset_seconds.to_string(),
            ),
        ];
        if !self.allowed {
            h.push(("Retry-After".to_string(), self.reset_seconds.to_string()));
        }
        h
    }
}

/// Fixed-window counters of one tenant, by scope, with an expiry index: a
/// tenant that called 10,000 numbers this hour has 10,000 live windows, and
/// a request must not walk them all to forget the expired ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limiter {
    windows: BTreeMap<String, Window>,
    /// (end, scope) of every window, oldest end first.
    by_end: std::collections::BTreeSet<(u64, String)>,
}

impl Limiter {
    pub fn knows(&self, scope: &str) -> bool {
        self.windows.contains_key(scope)
    }

    /// Puts back a window read from storage (the object loads scopes lazily).
    pub fn restore(&mut self, scope: &str, w: Window) {
        if !self.windows.contains_key(scope) {
            self.set(scope, w);
        }
    }

    fn set(&mut self, scope: &str, w: Window) {
        if let Some(old) = self.windows.insert(scope.to_string(), w) {
            if old.end_ms != w.end_ms {
                self.by_end.remove(&(old.end_ms, scope.to_string()));
            }
        }
        self.by_end.insert((w.end_ms, scope.to_string()));
    }

    /// Forgets windows that ended by `now_ms`: only those are visited.
    fn expire(&mut self, now_ms: u64) {
        while let Some((end, scope)) = self.by_end.first().cloned() {
            if end > now_ms {
                break;
            }
            self.by_end.pop_first();
            if self.windows.get(&scope).is_some_and(|w| w.end_ms == end) {
                self.windows.remove(&scope);
            }
        }
    }

    /// Live windows (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    pub fn window(&self, scope: &str) -> Option<Window> {
        self.windows.get(scope).copied()
    }

    /// `c`'s current fixed window at `now_ms`: (start, requests counted, end).
    fn usage(&self, c: &Check, now_ms: u64) -> (u64, u32, u64) {
        let len = u64::from(c.limit.window_seconds.max(1)) * 1000;
        let start = now_ms / len * len;
        let used = self
            .windows
            .get(&c.scope)
            .filter(|w| w.start_ms == start)
            .map_or(0, |w| w.count);
        (start, used, start + len)
    }

    /// Where `c` stands, counting nothing: refused when its window is spent.
    pub fn peek(&self, c: &Check, now_ms: u64) -> RateVerdict {
        let (_, used, end) = self.usage(c, now_ms);
        RateVerdict {
            allowed: used < c.limit.limit,
            scope: c.scope.clone(),
            limit: c.limit.limit,
            remaining: c.limit.limit.saturating_sub(used),
            reset_seconds: end.saturating_sub(now_ms).div_ceil(1000).max(1),
        }
    }

    /// Counts the request against every check, or against none if any is
    /// exhausted. `checks` must not be empty.
    pub fn admit(&mut self, checks: &[Check], now_ms: u64) -> RateVerdict {
        self.expire(now_ms);
        let state: Vec<(u64, u32, u64)> = checks.iter().map(|c| self.usage(c, now_ms)).collect();
        let reset = |end: u64| end.saturating_sub(now_ms).div_ceil(1000).max(1);
        // Refused by the exhausted scope that frees up last (Retry-After must suffice).
        let refused = checks
            .iter()
            .zip(&state)
            .filter(|(c, (_, used, _))| *used >= c.limit.limit)
            .max_by_key(|(_, (_, _, end))| *end);
        if let Some((c, (_, _, end))) = refused {
            return RateVerdict {
                allowed: false,
                scope: c.scope.clone(),
                limit: c.limit.limit,
                remaining: 0,
                reset_seconds: reset(*end),
            };
        }
        for (c, (start, used, end)) in checks.iter().zip(&state) {
            self.set(
                &c.scope,
                Window {
                    start_ms: *start,
                    end_ms: *end,
                    count: used + 1,
                },
            );
        }
        // Tightest: fewest remaining, then the one resetting last.
        let (c, (_, used, end)) = checks
            .iter()
            .zip(&state)
            .min_by_key(|(c, (_, used, end))| (c.limit.limit - used - 1, std::cmp::Reverse(*end)))
            .expect("at least one check");
        RateVerdict {
            allowed: true,
            scope: c.scope.clone(),
            limit: c.limit.limit,
            remaining: c.limit.limit - used - 1,
            reset_seconds: reset(*end),
        }
    }
}

// ---- failed credentials, per client address ----

/// Requests with wrong credentials (an unknown or revoked API key, a wrong
/// admin token) one client address may make per fixed window; the next one
/// is answered 429 `too_many_failed_attempts` until the window ends. The
/// default; the Worker vars `AUTH_FAILURE_LIMIT` and
/// `AUTH_FAILURE_WINDOW_SECONDS` change it.
pub const AUTH_FAILURES: RateLimit = RateLimit {
    limit: 20,
    window_seconds: 300,
};

/// Prefix of the failure scopes, and of the objects that keep them.
pub const AUTH_FAILURE_PREFIX: &str = "authfail:";

/// The scope (and `RateLimiter` object name) of a client address's failed
/// credentials: an IPv4 address, or the /64 of an IPv6 one (a single host
/// commonly holds a whole /64, so per address it could rotate through 2^64).
/// Anything that is not an address is kept as given (bounded by the caller).
pub fn auth_failure_scope(client_ip: &str) -> String {
    use std::net::IpAddr;
    let client = match client_ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
        Err(_) => client_ip.trim().to_string(),
    };
    format!("{AUTH_FAILURE_PREFIX}{client}")
}

/// One credential check from a client address, decided in that address's
/// own object in one step (exact under parallel requests). `failed`: the
/// credentials were wrong, count it. Refused (nothing counted) once the
/// address has spent its failures in this window, whether this one failed
/// or not; a check that did not fail only looks.
pub fn auth_attempt(
    limiter: &mut Limiter,
    scope: &str,
    limit: RateLimit,
    failed: bool,
    now_ms: u64,
) -> RateVerdict {
    let check = Check {
        scope: scope.to_string(),
        limit,
        new_work_only: false,
    };
    if failed {
        limiter.admit(std::slice::from_ref(&check), now_ms)
    } else {
        limiter.peek(&check, now_ms)
    }
}

// ---- idempotency ----

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    /// Headers worth replaying (e.g. `Location`).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdemEntry {
    InFlight {
        fingerprint: String,
        started_ms: u64,
    },
    Done {
        fingerprint: String,
        created_ms: u64,
        response: StoredResponse,
    },
}

impl IdemEntry {
    pub fn expired(&self, now_ms: u64) -> bool {
        match self {
            IdemEntry::InFlight { started_ms, .. } => started_ms + IDEMPOTENCY_TTL_MS <= now_ms,
            IdemEntry::Done { created_ms, .. } => created_ms + IDEMPOTENCY_TTL_MS <= now_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemRequest {
    pub key: String,
    /// SHA-256 of method, path and raw body.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IdemOutcome {
    /// No key was given.
    None,
    /// First use (or an expired/abandoned one): run the request, then complete or release.
    Proceed,
    Replay {
        response: StoredResponse,
    },
    /// Same key, different request.
    Mismatch,
    /// Same key, same request, still running.
    InFlight,
}

/// Decides an idempotency key against its current entry; returns the entry to store, if it changes.
pub fn idem_begin(
    entry: Option<&IdemEntry>,
    fingerprint: &str,
    now_ms: u64,
) -> (IdemOutcome, Option<IdemEntry>) {
    let fresh = || {
        (
            IdemOutcome::Proceed,
            Some(IdemEntry::InFlight {
                fingerprint: fingerprint.to_string(),
                started_ms: now_ms,
            }),
        )
    };
    match entry {
        None => fresh(),
        Some(e) if e.expired(now_ms) => fresh(),
        Some(
            IdemEntry::InFlight { fingerprint: f, .. } | IdemEntry::Done { fingerprint: f, .. },
        ) if f != fingerprint => (IdemOutcome::Mismatch, None),
        Some(IdemEntry::Done { response, .. }) => (
            IdemOutcome::Replay {
                response: response.clone(),
            },
            None,
        ),
        Some(IdemEntry::InFlight { started_ms, .. })
            if started_ms + IDEMPOTENCY_STALE_MS <= now_ms =>
        {
            fresh()
        }
        Some(IdemEntry::InFlight { .. }) => (IdemOutcome::InFlight, None),
    }
}

/// A verified request signature (`X-Signature`, keys with `require_signature`):
/// accepted once, then refused as a replay while its timestamp is still valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureUse {
    /// Storage key in the tenant's object ([`signature_storage_key`]).
    pub key: String,
    /// Forgotten after this (a replay would be stale by then).
    pub until_ms: u64,
}

/// One request's admission: the rate-limit checks and, optionally, its idempotency key
/// and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    pub checks: Vec<Check>,
    pub idempotency: Option<IdemRequest>,
    #[serde(default)]
    pub signature: Option<SignatureUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admitted {
    pub rate: RateVerdict,
    pub idempotency: IdemOutcome,
    /// The signature was accepted before: refuse the request (it counted nowhere).
    #[serde(default)]
    pub replayed: bool,
}

/// The whole decision for one request. A replayed signature is refused first
/// and counts nowhere; a rate-limited request neither counts, nor begins its
/// idempotency key, nor spends its signature. Returns the idempotency entry
/// to persist; the signature is to be remembered when `rate.allowed && !replayed`.
pub fn admit(
    limiter: &mut Limiter,
    idem_entry: Option<&IdemEntry>,
    signature_seen: bool,
    a: &Admission,
    now_ms: u64,
) -> (Admitted, Option<IdemEntry>) {
    if a.signature.is_some() && signature_seen {
        // The limits' state as it stands, without counting this request.
        let rate = limiter.clone().admit(&a.checks, now_ms);
        return (
            Admitted {
                rate,
                idempotency: IdemOutcome::None,
                replayed: true,
            },
            None,
        );
    }
    let (idempotency, entry) = match &a.idempotency {
        None => (IdemOutcome::None, None),
        Some(r) => idem_begin(idem_entry, &r.fingerprint, now_ms),
    };
    let new_work = matches!(idempotency, IdemOutcome::None | IdemOutcome::Proceed);
    let checks: Vec<Check> = a
        .checks
        .iter()
        .filter(|c| new_work || !c.new_work_only)
        .cloned()
        .collect();
    let rate = limiter.admit(&checks, now_ms);
    if !rate.allowed {
        return (
            Admitted {
                rate,
                idempotency: IdemOutcome::None,
                replayed: false,
            },
            None,
        );
    }
    (
        Admitted {
            rate,
            idempotency,
            replayed: false,
        },
        entry,
    )
}

/// Storage key of an accepted signature: sorted by when it may be forgotten,
/// so a sweep lists only what is due, and derived from the signature alone,
/// so a replay finds it.
pub fn signature_storage_key(until_ms: u64, v1: &str) -> String {
    format!("sig:{until_ms:015}:{v1}")
}

/// The forget-after time in a signature storage key.
pub fn parse_signature_storage_key(k: &str) -> Option<u64> {
    k.strip_prefix("sig:")?.split_once(':')?.0.parse().ok()
}

/// Storage key of an idempotency record in the tenant's object.
pub fn idem_storage_key(key: &str) -> String {
    format!("idem:{key}")
}

/// Expiry index entry: sorts by expiry so a sweep lists only what is due.
pub fn idem_expiry_key(expires_ms: u64, key: &str) -> String {
    format!("idemx:{expires_ms:015}:{key}")
}

/// Parses an expiry index key back into (expires_ms, idempotency key).
pub fn parse_idem_expiry_key(k: &str) -> Option<(u64, &str)> {
    let rest = k.strip_prefix("idemx:")?;
    let (at, key) = rest.split_once(':')?;
    Some((at.parse().ok()?, key))
}

/// Storage key of a rate-limit window.
pub fn window_storage_key(scope: &str) -> String {
    format!("rl:{scope}")
}

/// Idempotency keys: 1-255 visible ASCII characters.
pub fn valid_idempotency_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX && k.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads `rate_limits` from an admin body: any of `per_key`, `per_ip`,
/// `per_number`, each `{limit, window_seconds}`; unnamed ones keep `current`.
pub fn parse_rate_limits(v: &Value, current: RateLimits) -> Result<RateLimits, (String, String)> {
    let obj = v.as_object().ok_or_else(|| {
        (
            "rate_limits".to_string(),
            "rate_limits must be an object".to_string(),
        )
    })?;
    let mut out = current;
    for (name, lv) in obj {
        let slot = match name.as_str() {
            "per_key" => &mut out.per_key,
            "per_ip" => &mut out.per_ip,
            "per_number" => &mut out.per_number,
            _ => {
                return Err((
                    format!("rate_limits.{name}"),
                    "unknown rate limit; known: per_key, per_ip, per_number".into(),
                ))
            }
        };
        *slot = parse_rate_limit(lv, &format!("rate_limits.{name}"))?;
    }
    Ok(out)
}

/// `{limit: 1..=1_000_000, window_seconds: 1..=86_400}`.
pub fn parse_rate_limit(v: &Value, field: &str) -> Result<RateLimit, (String, String)> {
    let obj = v.as_object().ok_or_else(|| {
        (
            field.to_string(),
            format!("{field} must be an object {{limit, window_seconds}}"),
        )
    })?;
    if let Some(k) = obj.keys().find(|k| *k != "limit" && *k != "window_seconds") {
        return Err((
            format!("{field}.{k}"),
            "unknown field; known: limit, window_seconds".into(),
        ));
    }
    let int = |k: &str, max: u32| -> Result<u32, (String, String)> {
        obj.get(k)
            // 60.0 is an integer in JSON's eyes (and the OpenAPI document's).
            .and_then(|v| {
                v.as_u64().or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(f))
                        .map(|f| f as u64)
                })
            })
            .filter(|n| (1..=u64::from(max)).contains(n))
            .map(|n| n as u32)
            .ok_or_else(|| {
                (
                    format!("{field}.{k}"),
                    format!("{k} must be an integer from 1 to {max}"),
                )
            })
    };
    Ok(RateLimit {
        limit: int("limit", LIMIT_MAX)?,
        window_seconds: int("window_seconds", WINDOW_SECONDS_MAX)?,
    })
}

// ---- the port ----

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The tenant's traffic-control object (the `RateLimiter` Durable Object in
/// the Worker). Object-safe so `api::env::Env` needs no extra type parameter.
pub trait Traffic {
    fn admit<'a>(
        &'a self,
        tenant_id: &'a str,
        a: &'a Admission,
    ) -> LocalFuture<'a, Result<Admitted, StoreError>>;
    /// Stores the response of a request that began `key` (for replays).
    fn complete<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
        response: &'a StoredResponse,
    ) -> LocalFuture<'a, Result<(), StoreError>>;
    /// Forgets an in-flight key whose request failed on our side (5xx), so a retry runs again.
    fn release<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
    ) -> LocalFuture<'a, Result<(), StoreError>>;
    /// [`auth_attempt`] in the object of the client address's `scope`
    /// ([`auth_failure_scope`]): failures have no tenant to be counted under.
    fn auth_attempt<'a>(
        &'a self,
        scope: &'a str,
        limit: RateLimit,
        failed: bool,
    ) -> LocalFuture<'a, Result<RateVerdict, StoreError>>;
}

/// The entry after `complete`: only an in-flight key becomes done.
pub fn complete_entry(
    entry: Option<&IdemEntry>,
    response: &StoredResponse,
    now_ms: u64,
) -> Option<IdemEntry> {
    match entry {
        Some(IdemEntry::InFlight { fingerprint, .. }) => Some(IdemEntry::Done {
            fingerprint: fingerprint.clone(),
            created_ms: now_ms,
            response: response.clone(),
        }),
        _ => None,
    }
}

/// In-process [`Traffic`] over the same pure logic, for native tests and
/// (`bench-support`) the CPU bench.
#[cfg(any(test, feature = "bench-support"))]
pub mod memory {
    use super::*;
    use std::cell::{Cell, RefCell};

    #[derive(Default)]
    pub struct MemoryTraffic {
        pub limiters: RefCell<BTreeMap<String, Limiter>>,
        pub idem: RefCell<BTreeMap<(String, String), IdemEntry>>,
        /// Accepted signatures: (tenant, storage key).
        pub signatures: RefCell<std::collections::BTreeSet<(String, String)>>,
        pub now_ms: Cell<u64>,
    }

    impl Traffic for MemoryTraffic {
        fn admit<'a>(
            &'a self,
            tenant_id: &'a str,
            a: &'a Admission,
        ) -> LocalFuture<'a, Result<Admitted, StoreError>> {
            Box::pin(async move {
                let now = self.now_ms.get();
                let mut limiters = self.limiters.borrow_mut();
                let limiter = limiters.entry(tenant_id.to_string()).or_default();
                let key = a
                    .idempotency
                    .as_ref()
                    .map(|r| (tenant_id.to_string(), r.key.clone()));
                let current = key
                    .as_ref()
                    .and_then(|k| self.idem.borrow().get(k).cloned());
                let sig = a
                    .signature
                    .as_ref()
                    .map(|s| (tenant_id.to_string(), s.key.clone()));
                let seen = sig
                    .as_ref()
                    .is_some_and(|k| self.signatures.borrow().contains(k));
                let (admitted, entry) = admit(limiter, current.as_ref(), seen, a, now);
                if let (Some(k), Some(e)) = (key, entry) {
                    self.idem.borrow_mut().insert(k, e);
                }
                if let (Some(k), true, false) = (sig, admitted.rate.allowed, admitted.replayed) {
                    self.signatures.borrow_mut().insert(k);
                }
                Ok(admitted)
            })
        }
        fn complete<'a>(
            &'a self,
            tenant_id: &'a str,
            key: &'a str,
            response: &'a StoredResponse,
        ) -> LocalFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                let k = (tenant_id.to_string(), key.to_string());
                let mut idem = self.idem.borrow_mut();
                if let Some(done) = complete_entry(idem.get(&k), response, self.now_ms.get()) {
                    idem.insert(k, done);
                }
                Ok(())
            })
        }
        fn release<'a>(
            &'a self,
            tenant_id: &'a str,
            key: &'a str,
        ) -> LocalFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                self.idem
                    .borrow_mut()
                    .remove(&(tenant_id.to_string(), key.to_string()));
                Ok(())
            })
        }
        fn auth_attempt<'a>(
            &'a self,
            scope: &'a str,
            limit: RateLimit,
            failed: bool,
        ) -> LocalFuture<'a, Result<RateVerdict, StoreError>> {
            Box::pin(async move {
                // Like the Worker: one object per address, named by its scope.
                let mut limiters = self.limiters.borrow_mut();
                let limiter = limiters.entry(scope.to_string()).or_default();
                Ok(auth_attempt(
                    limiter,
                    scope,
                    limit,
                    failed,
                    self.now_ms.get(),
                ))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(scope: &str, limit: u32, window_seconds: u32) -> Check {
        Check {
            scope: scope.into(),
            limit: RateLimit {
                limit,
                window_seconds,
            },
            new_work_only: false,
        }
    }

    #[test]
    fn expired_windows_are_forgotten_without_walking_the_live_ones() {
        let mut l = Limiter::default();
        let hour = RateLimit {
            limit: 5,
            window_seconds: 3_600,
        };
        let minute = RateLimit {
            limit: 5,
            window_seconds: 60,
        };
        for i in 0..1_000 {
            l.admit(
                &[Check {
                    scope: format!("number:{i}"),
                    limit: hour,
                    new_work_only: true,
                }],
                1_000,
            );
        }
        l.admit(
            &[Check {
                scope: "key:a".into(),
                limit: minute,
                new_work_only: false,
            }],
            1_000,
        );
        assert_eq!(l.len(), 1_001);
        // The minute window ends; the hour windows stay, counts intact.
        l.admit(
            &[Check {
                scope: "key:b".into(),
                limit: minute,
                new_work_only: false,
            }],
            61_000,
        );
        assert_eq!(l.len(), 1_001, "key:a forgotten, key:b new");
        assert!(!l.knows("key:a") && l.knows("number:7"));
        assert_eq!(l.window("number:7").map(|w| w.count), Some(1));
        // A window used again in a later period moves in the index.
        l.admit(
            &[Check {
                scope: "key:b".into(),
                limit: minute,
                new_work_only: false,
            }],
            130_000,
        );
        l.admit(
            &[Check {
                scope: "key:c".into(),
                limit: minute,
                new_work_only: false,
            }],
            185_000,
        );
        assert!(
            l.knows("key:c") && !l.knows("key:b"),
            "key:b's second window ended at 180 s"
        );
        l.admit(
            &[Check {
                scope: "key:c".into(),
                limit: minute,
                new_work_only: false,
            }],
            3_601_000,
        );
        assert_eq!(l.len(), 1, "every hour window ended");
    }

    #[test]
    fn fixed_window_is_exact_and_resets_on_the_boundary() {
        let mut l = Limiter::default();
        let c = [check("key:a", 3, 60)];
        let t0 = 120_000; // a window start
        let got: Vec<(bool, u32)> = (0..5)
            .map(|i| l.admit(&c, t0 + i))
            .map(|v| (v.allowed, v.remaining))
            .collect();
        assert_eq!(
            got,
            [(true, 2), (true, 1), (true, 0), (false, 0), (false, 0)]
        );
        let refused = l.admit(&c, t0 + 59_001);
        assert_eq!((refused.allowed, refused.reset_seconds), (false, 1));
        assert_eq!(l.admit(&c, t0 + 30_000).reset_seconds, 30);
        let next = l.admit(&c, t0 + 60_000);
        assert_eq!(
            (next.allowed, next.remaining, next.reset_seconds),
            (true, 2, 60)
        );
    }

    #[test]
    fn scopes_are_checked_together_and_refusals_consume_nothing() {
        let mut l = Limiter::default();
        let key_ip = [check("key:a", 10, 60), check("ip:1", 2, 60)];
        assert!(l.admit(&key_ip, 0).allowed);
        let v = l.admit(&key_ip, 1);
        // The IP scope is the tightest.
        assert_eq!(
            (v.allowed, v.scope.as_str(), v.limit, v.remaining),
            (true, "ip:1", 2, 0)
        );
        let refused = l.admit(&key_ip, 2);
        assert_eq!((refused.allowed, refused.scope.as_str()), (false, "ip:1"));
        // The key scope did not count the refused request: 10 - 2 used.
        let other_ip = [check("key:a", 10, 60), check("ip:2", 100, 60)];
        let v = l.admit(&other_ip, 3);
        assert_eq!((v.scope.as_str(), v.remaining), ("key:a", 7));
        // Among exhausted scopes, Retry-After is the later reset.
        let mut l = Limiter::default();
        let both = [check("a", 1, 10), check("b", 1, 3600)];
        assert!(l.admit(&both, 0).allowed);
        let r = l.admit(&both, 1);
        assert_eq!((r.scope.as_str(), r.reset_seconds), ("b", 3600));
        let h = r.headers();
        assert!(h.contains(&("Retry-After".to_string(), "3600".to_string())));
    }

    #[test]
    fn idempotency_replays_refuses_mismatch_and_in_flight() {
        let (out, e) = idem_begin(None, "f1", 0);
        assert_eq!(out, IdemOutcome::Proceed);
        let e = e.unwrap();
        assert_eq!(idem_begin(Some(&e), "f1", 10).0, IdemOutcome::InFlight);
        assert_eq!(idem_begin(Some(&e), "f2", 10).0, IdemOutcome::Mismatch);
        // Abandoned in-flight keys can be taken over.
        assert_eq!(
            idem_begin(Some(&e), "f1", IDEMPOTENCY_STALE_MS).0,
            IdemOutcome::Proceed
        );
        let resp = StoredResponse {
            status: 201,
            body: "{}".into(),
            headers: vec![],
        };
        let done = complete_entry(Some(&e), &resp, 20).unwrap();
        assert_eq!(
            idem_begin(Some(&done), "f1", 30).0,
            IdemOutcome::Replay {
                response: resp.clone()
            }
        );
        assert_eq!(idem_begin(Some(&done), "f2", 30).0, IdemOutcome::Mismatch);
        // Expired after 24 h: a new request.
        assert_eq!(
            idem_begin(Some(&done), "f2", 20 + IDEMPOTENCY_TTL_MS).0,
            IdemOutcome::Proceed
        );
        // Completing a key that is not in flight changes nothing.
        assert_eq!(complete_entry(Some(&done), &resp, 40), None);
        assert!(valid_idempotency_key("order-42_a.b"));
        assert!(
            !valid_idempotency_key("")
                && !valid_idempotency_key("a b")
                && !valid_idempotency_key(&"a".repeat(256))
        );
    }

    #[test]
    fn rate_limited_requests_do_not_begin_their_key() {
        let mut l = Limiter::default();
        let a = Admission {
            checks: vec![check("key:a", 1, 60)],
            idempotency: Some(IdemRequest {
                key: "k".into(),
                fingerprint: "f".into(),
            }),
            signature: None,
        };
        let (first, entry) = admit(&mut l, None, false, &a, 0);
        assert_eq!(first.idempotency, IdemOutcome::Proceed);
        assert!(entry.is_some());
        let (second, entry) = admit(&mut l, None, false, &a, 1);
        assert!(!second.rate.allowed);
        assert_eq!((second.idempotency, entry), (IdemOutcome::None, None));
    }

    #[test]
    fn replays_do_not_count_against_new_work_limits() {
        let mut l = Limiter::default();
        let number = Check {
            new_work_only: true,
            ..check("number:+1", 1, 3600)
        };
        let a = Admission {
            checks: vec![check("key:a", 10, 60), number],
            idempotency: Some(IdemRequest {
                key: "k".into(),
                fingerprint: "f".into(),
            }),
            signature: None,
        };
        let (first, entry) = admit(&mut l, None, false, &a, 0);
        assert_eq!(
            (first.rate.allowed, first.idempotency),
            (true, IdemOutcome::Proceed)
        );
        let entry = entry.unwrap();
        // In flight, then done: both answered without spending the number's budget.
        let (second, _) = admit(&mut l, Some(&entry), false, &a, 1);
        assert_eq!(
            (
                second.rate.allowed,
                second.idempotency,
                second.rate.scope.as_str()
            ),
            (true, IdemOutcome::InFlight, "key:a")
        );
        let done = complete_entry(
            Some(&entry),
            &StoredResponse {
                status: 201,
                body: "{}".into(),
                headers: vec![],
            },
            2,
        )
        .unwrap();
        assert!(matches!(
            admit(&mut l, Some(&done), false, &a, 3).0.idempotency,
            IdemOutcome::Replay { .. }
        ));
        // A new key is new work: the number is spent.
        let b = Admission {
            idempotency: Some(IdemRequest {
                key: "k2".into(),
                fingerprint: "g".into(),
            }),
            ..a.clone()
        };
        assert!(!admit(&mut l, None, false, &b, 4).0.rate.allowed);
    }

    #[test]
    fn a_replayed_signature_is_refused_before_counting() {
        let mut l = Limiter::default();
        let sig = SignatureUse {
            key: signature_storage_key(301_000, "ab"),
            until_ms: 301_000,
        };
        let a = Admission {
            checks: vec![check("key:a", 2, 60)],
            idempotency: None,
            signature: Some(sig),
        };
        let (first, _) = admit(&mut l, None, false, &a, 0);
        assert!(first.rate.allowed && !first.replayed);
        let (again, entry) = admit(&mut l, None, true, &a, 1);
        assert!(again.replayed && entry.is_none());
        assert_eq!(
            again.rate.remaining, 0,
            "the state as it stands: one left, this one not counted"
        );
        assert!(
            admit(&mut l, None, false, &a, 2).0.rate.allowed,
            "the replay spent nothing"
        );
        assert_eq!(
            parse_signature_storage_key(&a.signature.as_ref().unwrap().key),
            Some(301_000)
        );
        assert!(
            signature_storage_key(9_000, "x") < signature_storage_key(10_000, "a"),
            "sorted by expiry"
        );
    }

    #[test]
    fn rate_limit_settings_parse_and_validate() {
        let d = RateLimits::default();
        let got =
            parse_rate_limits(&json!({"per_key": {"limit": 5, "window_seconds": 10}}), d).unwrap();
        assert_eq!(
            (got.per_key, got.per_ip),
            (
                RateLimit {
                    limit: 5,
                    window_seconds: 10
                },
                d.per_ip
            )
        );
        assert_eq!(
            parse_rate_limits(&json!({"per_x": {}}), d).unwrap_err().0,
            "rate_limits.per_x"
        );
        assert_eq!(
            parse_rate_limits(&json!({"per_ip": {"limit": 0, "window_seconds": 1}}), d)
                .unwrap_err()
                .0,
            "rate_limits.per_ip.limit"
        );
        assert_eq!(
            parse_rate_limits(
                &json!({"per_ip": {"limit": 1, "window_seconds": 86_401}}),
                d
            )
            .unwrap_err()
            .0,
            "rate_limits.per_ip.window_seconds"
        );
        assert_eq!(
            parse_rate_limits(&json!({"per_ip": {"limit": 1}}), d)
                .unwrap_err()
                .0,
            "rate_limits.per_ip.window_seconds"
        );
        assert_eq!(
            parse_rate_limits(
                &json!({"per_ip": {"limit": 1, "window_seconds": 1, "x": 1}}),
                d
            )
            .unwrap_err()
            .0,
            "rate_limits.per_ip.x"
        );
        assert!(parse_rate_limits(&json!([]), d).is_err());
        // 60.0 is an integer to JSON Schema (the OpenAPI `RateLimit`); 1.5 is not.
        assert_eq!(
            parse_rate_limit(&json!({"limit": 5.0, "window_seconds": 60.0}), "x"),
            Ok(RateLimit {
                limit: 5,
                window_seconds: 60
            })
        );
        assert!(parse_rate_limit(&json!({"limit": 1.5, "window_seconds": 60}), "x").is_err());
    }

    #[test]
    fn failed_credentials_block_an_address_for_the_rest_of_its_window() {
        let mut l = Limiter::default();
        let scope = auth_failure_scope("203.0.113.7");
        let start = 1_800_000_000_000 / 300_000 * 300_000;
        for i in 0..AUTH_FAILURES.limit {
            let v = auth_attempt(&mut l, &scope, AUTH_FAILURES, true, start + u64::from(i));
            assert!(v.allowed, "failure {i} is only counted");
        }
        // Spent: every further check is refused, failing or not, and counts nothing.
        let blocked = auth_attempt(&mut l, &scope, AUTH_FAILURES, false, start + 1_000);
        assert!(!blocked.allowed);
        assert_eq!(blocked.reset_seconds, 299);
        assert!(!auth_attempt(&mut l, &scope, AUTH_FAILURES, true, start + 2_000).allowed);
        assert_eq!(l.window(&scope).unwrap().count, AUTH_FAILURES.limit);
        // Other addresses are not affected; the next window starts afresh.
        assert!(
            auth_attempt(
                &mut l,
                &auth_failure_scope("203.0.113.8"),
                AUTH_FAILURES,
                false,
                start
            )
            .allowed
        );
        assert!(auth_attempt(&mut l, &scope, AUTH_FAILURES, false, start + 300_000).allowed);
        // Looking never counts.
        let mut fresh = Limiter::default();
        for _ in 0..100 {
            assert!(auth_attempt(&mut fresh, &scope, AUTH_FAILURES, false, start).allowed);
        }
        assert!(fresh.is_empty());
    }

    #[test]
    fn an_ipv6_address_is_throttled_by_its_64() {
        assert_eq!(auth_failure_scope("203.0.113.7"), "authfail:203.0.113.7");
        assert_eq!(
            auth_failure_scope("2001:db8:1:2:aaaa::1"),
            auth_failure_scope("2001:db8:1:2:ffff:1:2:3")
        );
        assert_eq!(
            auth_failure_scope("2001:db8:1:2::9"),
            "authfail:2001:db8:1:2::/64"
        );
        assert_ne!(
            auth_failure_scope("2001:db8:1:2::1"),
            auth_failure_scope("2001:db8:1:3::1")
        );
        assert_eq!(auth_failure_scope("::ffff:192.0.2.1"), "authfail:192.0.2.1");
    }
}
