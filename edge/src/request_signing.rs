//! Signed API requests, an option per API key (`require_signature`). Pure.
//!
//! ```text
//! X-Signature: t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(signing_secret, "{t}.{raw body}")>
//! ```
//!
//! The HMAC key is the UTF-8 bytes of the whole `signing_secret` string
//! (`sks_...`), as shown once when the key was minted. A request is accepted
//! when `t` is within [`WINDOW_SECS`] of now (either way) and one `v1` matches;
//! the tenant's `RateLimiter` object then refuses the same signature a second
//! time while it could still be accepted (replay).
//!
//! What is signed is the timestamp and the body only (the format asked for):
//! method and path are not bound, so two identical bodies signed in the same
//! second have the same signature and the second counts as a replay.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "x-signature";
/// Tolerance, both ways, between `t` and now.
pub const WINDOW_SECS: u64 = 300;
/// More `v1=` entries than this is malformed (room for a rotation overlap).
const MAX_SIGNATURES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    /// `t` is more than the window away from now.
    Stale,
    /// No `v1` matches (wrong secret, or the body was changed).
    Mismatch,
}

impl SignatureError {
    pub fn message(self) -> &'static str {
        match self {
            SignatureError::Missing => "this API key requires signed requests: send X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(signing_secret, \"{t}.{raw body}\")>",
            SignatureError::Malformed => "X-Signature must be t=<unix seconds>,v1=<64 lowercase hex>",
            SignatureError::Stale => "X-Signature's t is more than 300 s away from now; sign each request when sending it",
            SignatureError::Mismatch => "X-Signature does not match this request's body and timestamp",
        }
    }
}

/// An accepted signature: what the replay check remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub t: u64,
    /// The matching `v1`, lowercase hex.
    pub v1: String,
}

impl Accepted {
    /// Until when a replay of it could still pass the timestamp check.
    pub fn replayable_until_ms(&self) -> u64 {
        (self.t + WINDOW_SECS + 1) * 1000
    }
}

fn mac(secret: &[u8], t: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value a client sends (also used by tests).
pub fn header_value(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

/// Checks `X-Signature` against the raw body. Unknown `k=v` entries are
/// ignored (room for later schemes); several `v1` may be given.
pub fn verify(
    header: Option<&str>,
    secret: &[u8],
    body: &[u8],
    now_secs: u64,
) -> Result<Accepted, SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k.trim() {
            "t" if t.is_none() => {
                let v = v.trim();
                if v.is_empty() || v.len() > 11 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                t = Some(v.parse::<u64>().map_err(|_| SignatureError::Malformed)?);
            }
            "t" => return Err(SignatureError::Malformed),
            "v1" => {
                let v = v.trim();
                let raw = hex::decode(v).map_err(|_| SignatureError::Malformed)?;
                if raw.len() != 32 {
                    return Err(SignatureError::Malformed);
                }
                sigs.push((v.to_ascii_lowercase(), raw));
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() || sigs.len() > MAX_SIGNATURES {
        return Err(SignatureError::Malformed);
    }
    if t.abs_diff(now_secs) > WINDOW_SECS {
        return Err(SignatureError::Stale);
    }
    for (v1, raw) in sigs {
        // Constant-time comparison.
        if mac(secret, t, body).verify_slice(&raw).is_ok() {
            return Ok(Accepted { t, v1 });
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"sks_test";
    const NOW: u64 = 1_764_082_200;

    #[test]
    fn a_signed_body_verifies_and_anything_else_is_refused() {
        let body = br#"{"phone":"+14155550100"}"#;
        let h = header_value(SECRET, NOW, body);
        let ok = verify(Some(&h), SECRET, body, NOW + 10).unwrap();
        assert_eq!((ok.t, ok.v1.len()), (NOW, 64));
        assert_eq!(ok.replayable_until_ms(), (NOW + 301) * 1000);
        // Tampered body, wrong secret, stale either way, missing, malformed.
        assert_eq!(
            verify(Some(&h), SECRET, br#"{"phone":"+14155550101"}"#, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&h), b"sks_other", body, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&h), SECRET, body, NOW + 300).map(|a| a.t),
            Ok(NOW)
        );
        assert_eq!(
            verify(Some(&h), SECRET, body, NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&h), SECRET, body, NOW - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(None, SECRET, body, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("  "), SECRET, body, NOW),
            Err(SignatureError::Missing)
        );
        for bad in [
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "garbage",
            &format!("t={NOW},v1=zz"),
            &format!("t={NOW},t={NOW},{}", &h[h.find("v1").unwrap()..]),
        ] {
            assert_eq!(
                verify(Some(bad), SECRET, body, NOW),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // Extra entries and a second (old-secret) signature are fine; spaces too.
        let old = header_value(b"sks_old", NOW, body);
        let both = format!(
            "t={NOW}, {}, {}, x=1",
            &old[old.find("v1").unwrap()..],
            &h[h.find("v1").unwrap()..]
        );
        assert_eq!(verify(Some(&both), SECRET, body, NOW).unwrap().v1, ok.v1);
        // Uppercase hex is read, and remembered lowercase (one replay identity).
        let upper = h
            .to_ascii_uppercase()
            .replace("T=", "t=")
            .replace("V1=", "v1=");
        assert_eq!(verify(Some(&upper), SECRET, body, NOW).unwrap().v1, ok.v1);
    }
}
