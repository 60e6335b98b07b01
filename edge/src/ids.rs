//! Identifiers, secrets and timestamps.
//!
//! API keys are 192 random bits, so a plain SHA-256 of the key is a safe
//! lookup handle (no salt/KDF needed: there is nothing to brute-force), and
//! only that hash is stored. The clear key exists once, in the mint response.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jiff::civil::DateTime;
use jiff::SignedDuration;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// Message ids sort newest first like call ids (`msg_` + inverted time + random).
pub fn message_id(now_ms: u64) -> String {
    let inverted = 0xFFFF_FFFF_FFFFu64.saturating_sub(now_ms);
    format!("msg_{inverted:012x}{}", hex::encode(random_bytes::<5>()))
}

/// Contact ids sort newest first like call ids (`con_` + inverted time + random).
pub fn contact_id(now_ms: u64) -> String {
    let inverted = 0xFFFF_FFFF_FFFFu64.saturating_sub(now_ms);
    format!("con_{inverted:012x}{}", hex::encode(random_bytes::<5>()))
}

/// Campaign ids sort newest first like call ids (`cmp_` + inverted time + random).
pub fn campaign_id(now_ms: u64) -> String {
    let inverted = 0xFFFF_FFFF_FFFFu64.saturating_sub(now_ms);
    format!("cmp_{inverted:012x}{}", hex::encode(random_bytes::<5>()))
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
    /// Shown to the client once; never stored.
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

const UNIX_EPOCH: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// UTC wall-clock time `ms` after the epoch, whole seconds; the epoch itself
/// past 9999-12-31T23:59:59 (jiff's civil range, which is also RFC 3339's).
fn utc_seconds(ms: u64) -> DateTime {
    i64::try_from(ms / 1000)
        .ok()
        .and_then(|secs| UNIX_EPOCH.checked_add(SignedDuration::from_secs(secs)).ok())
        .unwrap_or(UNIX_EPOCH)
}

/// `2026-11-25T14:50:00.123Z`
pub fn rfc3339_ms(ms: u64) -> String {
    // A whole-second DateTime displays as `YYYY-MM-DDTHH:MM:SS`.
    format!("{}.{:03}Z", utc_seconds(ms), ms % 1000)
}

/// `2024-01-15T10:35:00Z`: RFC 3339, whole seconds, UTC.
pub fn rfc3339_seconds(ms: u64) -> String {
    format!("{}Z", utc_seconds(ms))
}

/// Parses RFC 3339 and insists on UTC (`Z` or `+00:00`); returns unix ms.
pub fn parse_rfc3339_utc_ms(s: &str) -> Option<u64> {
    u64::try_from(parse_rfc3339_utc_nanos(s)? / 1_000_000).ok()
}

/// True for a well-formed RFC 3339 UTC time before 1970 (no unix ms).
pub fn is_rfc3339_utc_before_epoch(s: &str) -> bool {
    parse_rfc3339_utc_nanos(s).is_some_and(|n| n < 0)
}

/// Unix nanoseconds of an RFC 3339 `date-time` in UTC (`Z`, `+00:00` or
/// `-00:00`); None when malformed or at another offset.
///
/// jiff's parser reads a superset (RFC 9557/Temporal: `T15:04Z`, `+0000`,
/// `[UTC]`, basic format), so the RFC 3339 grammar is checked here first and
/// jiff validates the calendar. As the API always did: any ASCII byte between
/// date and time, a fraction of any length (read to the nanosecond), and a
/// leap second only as the last second of a month (read as `:59.999999999`).
fn parse_rfc3339_utc_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let shape = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && b.get(10).is_some_and(u8::is_ascii)
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    if !shape {
        return None;
    }
    let (fraction, offset) = match s.get(19..)?.strip_prefix('.') {
        Some(rest) => {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            rest.split_at(end)
        }
        None => ("", s.get(19..)?),
    };
    if !matches!(offset, "Z" | "z" | "+00:00" | "-00:00") {
        return None;
    }
    let leap_second = s.get(17..19)? == "60";
    let seconds = if leap_second { "59" } else { s.get(17..19)? };
    let nanos = fraction.get(..9).unwrap_or(fraction);
    let text = format!("{}T{}:{seconds}.{nanos:0<9}", s.get(..10)?, s.get(11..16)?);
    let mut t: DateTime = text.parse().ok()?;
    if leap_second {
        if (t.hour(), t.minute(), t.day()) != (23, 59, t.days_in_month()) {
            return None;
        }
        t = t.with().subsec_nanosecond(999_999_999).build().ok()?;
    }
    Some(t.duration_since(UNIX_EPOCH).as_nanos())
}

/// An HTTP date (`Retry-After`) as RFC 2822 reads it; unix seconds. A
/// weekday that does not match the date is ignored, as it always was here.
pub fn parse_rfc2822_unix_seconds(s: &str) -> Option<i64> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .relaxed_weekday(true)
        .parse_timestamp(s)
        .ok()
        .map(|t| t.as_second())
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

    /// The edge's timestamps as `time` wrote and read them before jiff: the
    /// oracle the jiff versions must equal byte for byte.
    mod with_time {
        use time::format_description::well_known::{Rfc2822, Rfc3339};
        use time::OffsetDateTime;

        pub fn rfc3339_ms(ms: u64) -> String {
            let nanos = i128::from(ms) * 1_000_000;
            let t = OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let secs = t
                .format(&time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]"
                ))
                .unwrap_or_default();
            format!("{secs}.{:03}Z", ms % 1000)
        }

        pub fn rfc3339_seconds(unix_ms: u64) -> String {
            let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
            OffsetDateTime::from_unix_timestamp(secs)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
        }

        pub fn parse_rfc3339_utc_ms(s: &str) -> Option<u64> {
            let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
            if !t.offset().is_utc() {
                return None;
            }
            u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
        }

        pub fn is_pre_epoch_utc(s: &str) -> bool {
            OffsetDateTime::parse(s, &Rfc3339)
                .is_ok_and(|t| t.offset().is_utc() && t.unix_timestamp() < 0)
        }

        pub fn rfc2822_unix_seconds(s: &str) -> Option<i64> {
            OffsetDateTime::parse(s, &Rfc2822)
                .ok()
                .map(|t| t.unix_timestamp())
        }
    }

    /// Deterministic spread of values (an LCG), no randomness in tests.
    fn spread(n: usize, seed: u64) -> impl Iterator<Item = u64> {
        let mut x = seed;
        (0..n).map(move |_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x
        })
    }

    #[test]
    fn timestamps_are_written_exactly_as_before() {
        let last_ms = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let mut cases = vec![
            0,
            1,
            999,
            1000,
            1_705_314_600_000,
            1_764_000_000_123,
            951_782_400_000, // 2000-02-29
            last_ms - 1000,
            last_ms,
            last_ms + 1,
            u64::MAX / 1000,
            i64::MAX as u64,
            u64::MAX,
        ];
        cases.extend(spread(20_000, 1).map(|x| x % (last_ms + 10_000_000)));
        cases.extend(spread(200, 2));
        for ms in cases {
            assert_eq!(rfc3339_ms(ms), with_time::rfc3339_ms(ms), "{ms}");
            assert_eq!(rfc3339_seconds(ms), with_time::rfc3339_seconds(ms), "{ms}");
        }
        assert_eq!(rfc3339_ms(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(rfc3339_seconds(1_705_314_600_999), "2024-01-15T10:30:00Z");
    }

    #[test]
    fn rfc3339_is_read_exactly_as_before() {
        let bases = [
            "2026-01-02T15:04:05Z",
            "2026-01-02T15:04:05.123456789123Z",
            "1969-12-31T23:59:59.9999999+00:00",
            "2016-12-31T23:59:60Z",
            "9999-12-31T23:59:59.999-00:00",
            "0000-01-01 00:00:00z",
            "2024-02-29t12:00:00.5+01:00",
        ];
        let mut inputs: Vec<String> = bases.iter().map(|s| s.to_string()).collect();
        inputs.extend(
            [
                "2026-01-02T15:04Z",
                "20260102T150405Z",
                "2026-01-02T15:04:05+0000",
                "2026-01-02T15:04:05+00",
                "2026-01-02T15:04:05Z[UTC]",
                "2026-01-02T15:04:05,5Z",
                "2026-01-02T15:04:05.Z",
                "2026-01-02T15:04:05+24:00",
                "2026-01-02T15:04:05-00:60",
                "2026-01-02x15:04:05Z",
                "2026-01-02é15:04:05Z",
                "2026-06-30T23:59:60Z",
                "2026-06-29T23:59:60Z",
                "2026-06-30T23:58:60Z",
                "2026-06-30T23:59:60.25Z",
                "2026-02-29T00:00:00Z",
                "2026-13-01T00:00:00Z",
                "2026-01-02T24:00:00Z",
                "+2026-01-02T15:04:05Z",
                " 2026-01-02T15:04:05Z",
                "2026-01-02T15:04:05Z ",
                "",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        // Every one-character change of the bases: replaced, dropped, added.
        let alphabet = "0123569-:.Tt xZz+é,";
        for base in bases {
            let chars: Vec<char> = base.chars().collect();
            for i in 0..=chars.len() {
                for c in alphabet.chars() {
                    let mut v = chars.clone();
                    v.insert(i, c);
                    inputs.push(v.iter().collect());
                    if i < chars.len() {
                        let mut v = chars.clone();
                        v[i] = c;
                        inputs.push(v.iter().collect());
                    }
                }
                if i < chars.len() {
                    let mut v = chars.clone();
                    v.remove(i);
                    inputs.push(v.iter().collect());
                }
            }
        }
        for ms in spread(5_000, 3).map(|x| x % 253_402_300_800_000) {
            inputs.push(rfc3339_ms(ms));
        }
        let mut accepted = 0;
        for s in &inputs {
            let got = parse_rfc3339_utc_ms(s);
            assert_eq!(got, with_time::parse_rfc3339_utc_ms(s), "{s:?}");
            assert_eq!(
                is_rfc3339_utc_before_epoch(s),
                with_time::is_pre_epoch_utc(s),
                "{s:?}"
            );
            accepted += usize::from(got.is_some());
        }
        assert!(accepted > 5_000, "the corpus exercises the happy path");
        assert_eq!(parse_rfc3339_utc_ms("1970-01-01T00:00:01.5Z"), Some(1500));
    }

    #[test]
    fn http_dates_are_read_as_before() {
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "21 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 +0000",
            "Wed, 21 Oct 2015 07:28:00 -0130",
            "Wed, 21 Oct 2015 07:28 GMT",
            "Wed, 21 Oct 2015 07:28:00 UT",
            "Wed, 21 Oct 2015 07:28:00 EST",
            "Wed, 21 Oct 2015 07:28:00 Z",
            "Thu, 21 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 15 07:28:00 GMT",
            "Wed, 1 Oct 2025 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "Wed, 21 Oct 2015 07:28:00 GMT ",
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Thu, 30 Dec 9999 22:00:00 GMT",
            "120",
            "",
        ] {
            assert_eq!(
                parse_rfc2822_unix_seconds(s),
                with_time::rfc2822_unix_seconds(s),
                "{s:?}"
            );
        }
        // The one difference: jiff's instants end 26 hours before 9999's
        // end (any offset must keep the civil time in range), so a
        // Retry-After dated in that last day is ignored, where `time` capped
        // it at the longest wait.
        let last_day = "Fri, 31 Dec 9999 23:59:59 GMT";
        assert_eq!(parse_rfc2822_unix_seconds(last_day), None);
        assert_eq!(
            with_time::rfc2822_unix_seconds(last_day),
            Some(253_402_300_799)
        );
    }
}
