//! Request signing for the sidecar -> edge link.
//!
//! Every sidecar request carries four headers:
//!
//! ```text
//! x-voxline-sidecar:   <sidecar id>
//! x-voxline-timestamp: <unix seconds, decimal>
//! x-voxline-nonce:     <16..=64 hex chars, fresh per request>
//! x-voxline-signature: v1=<lowercase hex HMAC-SHA256(secret, "{timestamp}.{nonce}.{raw body}")>
//! ```
//!
//! The edge looks the secret up by the sidecar id, calls [`verify`], checks that
//! the body's `sidecar_id` equals the header, and rejects a nonce it has already
//! seen within the window (replay). The sidecar id is not in the signed string:
//! it only selects the secret, and a wrong id selects a wrong secret.
//!
//! Pure: the caller supplies the clock (`now_secs`) and the nonce's randomness.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_SIDECAR: &str = "x-voxline-sidecar";
pub const HEADER_TIMESTAMP: &str = "x-voxline-timestamp";
pub const HEADER_NONCE: &str = "x-voxline-nonce";
pub const HEADER_SIGNATURE: &str = "x-voxline-signature";

/// The scheme prefix of the signature header value.
pub const SCHEME_PREFIX: &str = "v1=";
/// Default tolerance, both ways, between the request's timestamp and `now`.
pub const DEFAULT_WINDOW_SECS: u64 = 300;
pub const MIN_NONCE_LEN: usize = 16;
pub const MAX_NONCE_LEN: usize = 64;
/// Timestamps longer than this many digits are malformed (year 5138 and beyond).
const MAX_TIMESTAMP_DIGITS: usize = 11;

/// Why a request's signature was refused. The codes ([`SignatureError::code`])
/// are stable and may be shown to the sidecar in the edge's error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// A required header is absent; names it.
    MissingHeader(&'static str),
    /// A header is present but not in the expected form; names it.
    Malformed(&'static str),
    /// The timestamp is further than the window from now (past or future).
    Stale,
    /// The HMAC does not match (wrong secret, tampered body, headers or nonce).
    BadSignature,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "missing_header",
            SignatureError::Malformed(_) => "malformed",
            SignatureError::Stale => "stale",
            SignatureError::BadSignature => "bad_signature",
        }
    }

    /// The header concerned, when there is one.
    pub fn header(self) -> Option<&'static str> {
        match self {
            SignatureError::MissingHeader(h) | SignatureError::Malformed(h) => Some(h),
            _ => None,
        }
    }
}

impl core::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SignatureError::MissingHeader(h) => write!(f, "missing_header: {h}"),
            SignatureError::Malformed(h) => write!(f, "malformed: {h}"),
            SignatureError::Stale => f.write_str("stale: timestamp outside the allowed window"),
            SignatureError::BadSignature => f.write_str("bad_signature"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// The signature header values of one request, as received (`None` = absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    pub sidecar: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl<'a> SignedHeaders<'a> {
    /// Collects the four headers through any case-insensitive lookup.
    pub fn from_lookup(mut get: impl FnMut(&'static str) -> Option<&'a str>) -> Self {
        SignedHeaders {
            sidecar: get(HEADER_SIDECAR),
            timestamp: get(HEADER_TIMESTAMP),
            nonce: get(HEADER_NONCE),
            signature: get(HEADER_SIGNATURE),
        }
    }
}

fn mac(secret: &[u8], timestamp: &str, nonce: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(nonce.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `x-voxline-signature` value: `v1=<hex hmac>`.
pub fn sign(secret: &[u8], timestamp_secs: u64, nonce: &str, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp_secs.to_string(), nonce, body)
        .finalize()
        .into_bytes();
    format!("{SCHEME_PREFIX}{}", hex::encode(tag))
}

/// All four headers for one request, ready to send.
pub fn signed_headers(
    sidecar_id: &str,
    secret: &[u8],
    timestamp_secs: u64,
    nonce: &str,
    body: &[u8],
) -> [(&'static str, String); 4] {
    [
        (HEADER_SIDECAR, sidecar_id.to_string()),
        (HEADER_TIMESTAMP, timestamp_secs.to_string()),
        (HEADER_NONCE, nonce.to_string()),
        (HEADER_SIGNATURE, sign(secret, timestamp_secs, nonce, body)),
    ]
}

/// Hex-encodes caller-supplied random bytes into a nonce (16 bytes -> 32 chars).
/// Lowercase hex SHA-256 of `bytes` (a recording manifest's `sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(bytes))
}

pub fn nonce_from_bytes(random: &[u8; 16]) -> String {
    hex::encode(random)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a request's signature headers against `secret` and the raw body.
///
/// Order: presence of each header, then form, then freshness (`|now - ts| <=
/// window_secs`), then the HMAC, compared in constant time. Replay (a nonce seen
/// before within the window) is the caller's check.
pub fn verify(
    secret: &[u8],
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now_secs: u64,
    window_secs: u64,
) -> Result<(), SignatureError> {
    let sidecar = headers
        .sidecar
        .ok_or(SignatureError::MissingHeader(HEADER_SIDECAR))?;
    let ts = headers
        .timestamp
        .ok_or(SignatureError::MissingHeader(HEADER_TIMESTAMP))?;
    let nonce = headers
        .nonce
        .ok_or(SignatureError::MissingHeader(HEADER_NONCE))?;
    let sig = headers
        .signature
        .ok_or(SignatureError::MissingHeader(HEADER_SIGNATURE))?;

    if !crate::protocol::is_valid_id(sidecar) {
        return Err(SignatureError::Malformed(HEADER_SIDECAR));
    }
    // Digits only: `str::parse::<u64>` would also take a leading `+`.
    if ts.is_empty() || ts.len() > MAX_TIMESTAMP_DIGITS || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed(HEADER_TIMESTAMP));
    }
    let ts_secs: u64 = ts
        .parse()
        .map_err(|_| SignatureError::Malformed(HEADER_TIMESTAMP))?;
    if nonce.len() < MIN_NONCE_LEN || nonce.len() > MAX_NONCE_LEN || !is_hex(nonce) {
        return Err(SignatureError::Malformed(HEADER_NONCE));
    }
    let hex_tag = sig
        .strip_prefix(SCHEME_PREFIX)
        .ok_or(SignatureError::Malformed(HEADER_SIGNATURE))?;
    if hex_tag.len() != 64 {
        return Err(SignatureError::Malformed(HEADER_SIGNATURE));
    }
    let tag = hex::decode(hex_tag).map_err(|_| SignatureError::Malformed(HEADER_SIGNATURE))?;

    if now_secs.abs_diff(ts_secs) > window_secs {
        return Err(SignatureError::Stale);
    }
    // The timestamp is signed as sent (digits, possibly with leading zeros).
    mac(secret, ts, nonce, body)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret-for-sc-1-0123456789abcdef";
    const NOW: u64 = 1_700_000_000;
    const NONCE: &str = "0123456789abcdef0123456789abcdef";
    const BODY: &[u8] = br#"{"protocol_version":1,"sidecar_id":"sc-1"}"#;

    fn headers<'a>(h: &'a [(&'static str, String); 4]) -> SignedHeaders<'a> {
        SignedHeaders::from_lookup(|name| {
            h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn known_vector() {
        // Computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b'key', b'1.0000000000000000.body', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"key", 1, "0000000000000000", b"body"),
            "v1=870d1d3d9fe4ebad7d2bb8ae95b66226258a7bbd52670a50baa8bd8415a59d37"
        );
    }

    #[test]
    fn round_trip() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, BODY);
        assert_eq!(h[3].1.len(), 3 + 64);
        assert!(h[3].1.starts_with("v1="));
        assert_eq!(
            verify(SECRET, &headers(&h), BODY, NOW, DEFAULT_WINDOW_SECS),
            Ok(())
        );
        // Uppercase hex in the signature is accepted (hex decoding is case-insensitive).
        let mut upper = h.clone();
        upper[3].1 = format!("v1={}", upper[3].1[3..].to_uppercase());
        assert_eq!(
            verify(SECRET, &headers(&upper), BODY, NOW, DEFAULT_WINDOW_SECS),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_fails() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, BODY);
        let tampered = br#"{"protocol_version":1,"sidecar_id":"sc-2"}"#;
        assert_eq!(
            verify(SECRET, &headers(&h), tampered, NOW, 300),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, &headers(&h), b"", NOW, 300),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn tampered_nonce_or_timestamp_fails() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, BODY);
        let mut n = h.clone();
        n[2].1 = "1123456789abcdef0123456789abcdef".into();
        assert_eq!(
            verify(SECRET, &headers(&n), BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
        let mut t = h.clone();
        t[1].1 = (NOW + 1).to_string();
        assert_eq!(
            verify(SECRET, &headers(&t), BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn wrong_secret_fails() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, BODY);
        assert_eq!(
            verify(b"another-secret", &headers(&h), BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify(b"", &headers(&h), BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, BODY);
        let hs = headers(&h);
        // At the edges of the window it still passes.
        assert_eq!(verify(SECRET, &hs, BODY, NOW + 300, 300), Ok(()));
        assert_eq!(verify(SECRET, &hs, BODY, NOW - 300, 300), Ok(()));
        // One second past: stale, whichever way the clocks disagree.
        assert_eq!(
            verify(SECRET, &hs, BODY, NOW + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &hs, BODY, NOW - 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &hs, BODY, 0, 300),
            Err(SignatureError::Stale)
        );
        // Staleness is judged before the HMAC: a stale request with a wrong secret says stale.
        assert_eq!(
            verify(b"x", &hs, BODY, NOW + 1000, 300),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, BODY);
        let full = headers(&h);
        let cases = [
            (
                SignedHeaders {
                    sidecar: None,
                    ..full
                },
                HEADER_SIDECAR,
            ),
            (
                SignedHeaders {
                    timestamp: None,
                    ..full
                },
                HEADER_TIMESTAMP,
            ),
            (
                SignedHeaders {
                    nonce: None,
                    ..full
                },
                HEADER_NONCE,
            ),
            (
                SignedHeaders {
                    signature: None,
                    ..full
                },
                HEADER_SIGNATURE,
            ),
        ];
        for (hs, name) in cases {
            let e = verify(SECRET, &hs, BODY, NOW, 300).unwrap_err();
            assert_eq!(e, SignatureError::MissingHeader(name));
            assert_eq!(e.code(), "missing_header");
            assert_eq!(e.header(), Some(name));
        }
        assert_eq!(
            verify(SECRET, &SignedHeaders::default(), BODY, NOW, 300)
                .unwrap_err()
                .code(),
            "missing_header"
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, BODY);
        let full = headers(&h);
        let sig_ok = h[3].1.clone();
        let long_nonce = "a".repeat(65);
        let long_sig = format!("{sig_ok}00");
        let cases: Vec<(SignedHeaders<'_>, &str)> = vec![
            (
                SignedHeaders {
                    sidecar: Some("bad id"),
                    ..full
                },
                HEADER_SIDECAR,
            ),
            (
                SignedHeaders {
                    sidecar: Some(""),
                    ..full
                },
                HEADER_SIDECAR,
            ),
            (
                SignedHeaders {
                    timestamp: Some(""),
                    ..full
                },
                HEADER_TIMESTAMP,
            ),
            (
                SignedHeaders {
                    timestamp: Some("+1700000000"),
                    ..full
                },
                HEADER_TIMESTAMP,
            ),
            (
                SignedHeaders {
                    timestamp: Some("-5"),
                    ..full
                },
                HEADER_TIMESTAMP,
            ),
            (
                SignedHeaders {
                    timestamp: Some("1.5"),
                    ..full
                },
                HEADER_TIMESTAMP,
            ),
            (
                SignedHeaders {
                    timestamp: Some("1700000000000"),
                    ..full
                },
                HEADER_TIMESTAMP,
            ),
            (
                SignedHeaders {
                    nonce: Some("abc"),
                    ..full
                },
                HEADER_NONCE,
            ),
            (
                SignedHeaders {
                    nonce: Some("0123456789abcdeg"),
                    ..full
                },
                HEADER_NONCE,
            ),
            (
                SignedHeaders {
                    nonce: Some(&long_nonce),
                    ..full
                },
                HEADER_NONCE,
            ),
            (
                SignedHeaders {
                    signature: Some(&sig_ok[3..]),
                    ..full
                },
                HEADER_SIGNATURE,
            ),
            (
                SignedHeaders {
                    signature: Some("v2=00"),
                    ..full
                },
                HEADER_SIGNATURE,
            ),
            (
                SignedHeaders {
                    signature: Some("v1=zz"),
                    ..full
                },
                HEADER_SIGNATURE,
            ),
            (
                SignedHeaders {
                    signature: Some(&long_sig),
                    ..full
                },
                HEADER_SIGNATURE,
            ),
        ];
        for (hs, name) in cases {
            let e = verify(SECRET, &hs, BODY, NOW, 300).unwrap_err();
            assert_eq!(e, SignatureError::Malformed(name), "{hs:?}");
            assert_eq!(e.code(), "malformed");
        }
        // 64 characters that are not all hex.
        let not_hex = format!("v1={}", "g".repeat(64));
        let e = verify(
            SECRET,
            &SignedHeaders {
                signature: Some(&not_hex),
                ..full
            },
            BODY,
            NOW,
            300,
        )
        .unwrap_err();
        assert_eq!(e, SignatureError::Malformed(HEADER_SIGNATURE));
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(SignatureError::Stale.code(), "stale");
        assert_eq!(SignatureError::BadSignature.code(), "bad_signature");
        assert_eq!(SignatureError::BadSignature.to_string(), "bad_signature");
        assert_eq!(
            SignatureError::Malformed(HEADER_NONCE).to_string(),
            "malformed: x-voxline-nonce"
        );
        assert_eq!(nonce_from_bytes(&[0xab; 16]), "ab".repeat(16));
    }
}
