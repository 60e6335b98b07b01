//! Idempotency keys and the one-step admission of a request (its rate
//! limits and its key), plus the storage keys the object keeps them under.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::traffic::rate::*;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// An in-flight key older than this is presumed abandoned (its request died)
/// and may be taken over by a retry.
pub const IDEMPOTENCY_STALE_MS: u64 = 60_000;
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

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
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum IdemVerdict {
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
) -> (IdemVerdict, Option<IdemEntry>) {
    let fresh = || {
        (
            IdemVerdict::Proceed,
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
        ) if f != fingerprint => (IdemVerdict::Mismatch, None),
        Some(IdemEntry::Done { response, .. }) => (
            IdemVerdict::Replay {
                response: response.clone(),
            },
            None,
        ),
        Some(IdemEntry::InFlight { started_ms, .. })
            if started_ms + IDEMPOTENCY_STALE_MS <= now_ms =>
        {
            fresh()
        }
        Some(IdemEntry::InFlight { .. }) => (IdemVerdict::InFlight, None),
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
    pub idempotency: IdemVerdict,
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
                idempotency: IdemVerdict::None,
                replayed: true,
            },
            None,
        );
    }
    let (idempotency, entry) = match &a.idempotency {
        None => (IdemVerdict::None, None),
        Some(r) => idem_begin(idem_entry, &r.fingerprint, now_ms),
    };
    let new_work = matches!(idempotency, IdemVerdict::None | IdemVerdict::Proceed);
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
                idempotency: IdemVerdict::None,
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
