//! Identifiers, secrets and timestamps.
//!
//! API keys are 192 random bits, so a plain SHA-256 of the key is a safe
//! lookup handle (no salt/KDF needed: there is nothing to brute-force), and
//! only that hash is stored. The clear key exists once, in the mint response.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Random bytes from the platform CSPRNG (crypto.getRandomValues in the Worker).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // Only fails if the platform has no CSPRNG at all, which no Worker or
    // supported host lacks; there is no safe fallback.
    getrandom::getrandom(&mut buf).expect("platform CSPRNG unavailable");
    buf
}

pub fn random_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random_bytes::<10>()))
}

/// Call ids sort newest first under a tenant's KV prefix, so listing pages
/// come out in reverse creation order without reading the records.
pub fn call_id(now_ms: u64) -> String {
    let inverted = 0xFFFF_FFFF_FFFFu64.saturating_sub(now_ms);
    format!("call_{inverted:012x}{}", hex::encode(random_bytes::<5>()))
}

/// True for strings shaped like an id we mint (`prefix_` + lowercase hex).
/// Checked before a KV lookup so junk never reaches storage keys.
pub fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|hexpart| {
            (10..=40).contains(&hexpart.len())
                && hexpart
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

pub struct MintedKey {
    /// Shown to the caller once; never stored.
    pub clear: String,
    pub hash: String,
    /// Enough to recognise a key in listings: `ak_` + first 6 characters.
    pub prefix: String,
}

pub fn mint_api_key() -> MintedKey {
    let clear = format!("ak_{}", URL_SAFE_NO_PAD.encode(random_bytes::<24>()));
    let hash = hash_api_key(&clear);
    let prefix = clear[..9].to_string();
    MintedKey {
        clear,
        hash,
        prefix,
    }
}

pub fn hash_api_key(clear: &str) -> String {
    hex::encode(Sha256::digest(clear.as_bytes()))
}

/// What an `Idempotency-Key` is bound to: SHA-256 over method, path and raw
/// body (length-prefixed so no two requests share an encoding).
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [
        method.to_ascii_uppercase().as_bytes(),
        path.as_bytes(),
        body,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub fn mint_webhook_secret() -> String {
    format!("whsec_{}", STANDARD.encode(random_bytes::<32>()))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `2026-11-25T14:50:00.123Z`
pub fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let secs = t
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    format!("{secs}.{:03}Z", ms % 1000)
}

/// Parses RFC 3339 and insists on UTC (`Z` or `+00:00`); returns unix ms.
pub fn parse_rfc3339_utc_ms(s: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    if !t.offset().is_utc() {
        return None;
    }
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_sort_newest_first_and_are_recognised() {
        let older = call_id(1_700_000_000_000);
        let newer = call_id(1_700_000_000_001);
        assert!(newer < older);
        assert!(is_id(&older, "call"));
        assert!(!is_id(&older, "agt"));
        assert!(!is_id("call_../../x", "call"));
        assert!(!is_id("call_ABC0000000", "call"));
    }

    #[test]
    fn api_keys_hash_stably_and_prefix_is_short() {
        let k = mint_api_key();
        assert!(k.clear.starts_with("ak_") && k.clear.len() == 35);
        assert_eq!(k.hash, hash_api_key(&k.clear));
        assert_eq!(k.hash.len(), 64);
        assert!(!k.hash.contains(&k.clear[3..]));
        assert!(k.clear.starts_with(&k.prefix));
        assert_ne!(mint_api_key().clear, k.clear);
    }

    #[test]
    fn timestamps_round_trip_and_require_utc() {
        assert_eq!(rfc3339_ms(1_764_082_200_123), "2025-11-25T14:50:00.123Z");
        assert_eq!(
            parse_rfc3339_utc_ms("2025-11-25T14:50:00.123Z"),
            Some(1_764_082_200_123)
        );
        assert_eq!(
            parse_rfc3339_utc_ms("2025-11-25T14:50:00+00:00"),
            Some(1_764_082_200_000)
        );
        assert_eq!(parse_rfc3339_utc_ms("2025-11-25T14:50:00+01:00"), None);
        assert_eq!(parse_rfc3339_utc_ms("2025-11-25 14:50"), None);
        assert!(
            constant_time_eq("abc", "abc")
                && !constant_time_eq("abc", "abd")
                && !constant_time_eq("a", "ab")
        );
    }
}
