//! Request signing for the sidecar -> edge link.
//!
//! Every sidecar request carries four headers:
//!
//! ```text
//! x-voxline-sidecar:   <sidecar id>
//! x-voxline-timestamp: <unix seconds, decimal>
//! x-voxline-nonce:     <16..=64 hex chars, fresh per request>
//! x-voxline-signature: v2=<lowercase hex HMAC-SHA256(secret,
//!                      "{timestamp}\n{nonce}\n{METHOD}\n{path}\n{raw body}")>
//! ```
//!
//! `METHOD` is the HTTP method in uppercase (`POST`), `path` the API path the
//! edge routes on (`/v1/sidecar/lease`: without the sidecar's configured base
//! path, with `?query` only if there is one), `\n` one line feed. Binding
//! method and path means a signature captured on one endpoint authorises
//! nothing on another. A line feed cannot occur in a method, a path or the
//! timestamp and nonce, so the fields cannot slide into one another; and the
//! string starts with the timestamp's digits then `\n`, where `v1`'s had a
//! `.`, so no `v1` signature is ever a `v2` one.
//!
//! `v1` (`"{timestamp}.{nonce}.{raw body}"`, method and path unbound) is
//! refused with its own code, [`SignatureError::UnsupportedVersion`]
//! (`signature_version_unsupported`), so an old sidecar learns it must be
//! upgraded rather than that its secret is wrong.
//!
//! The edge looks the secret up by the sidecar id, calls [`verify`], checks that
//! the body's `sidecar_id` equals the header, and rejects a nonce it has already
//! seen within the window (replay). The sidecar id is not in the signed string:
//! it only selects the secret, and a wrong id selects a wrong secret.
//!
//! Pure: the caller supplies the clock (`now_seconds`) and the nonce's randomness.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_SIDECAR: &str = "x-voxline-sidecar";
pub const HEADER_TIMESTAMP: &str = "x-voxline-timestamp";
pub const HEADER_NONCE: &str = "x-voxline-nonce";
pub const HEADER_SIGNATURE: &str = "x-voxline-signature";

/// The scheme prefix of the signature header value.
pub const SCHEME_PREFIX: &str = "v2=";
/// The signing scheme this build speaks, as named in the header.
pub const SCHEME_VERSION: &str = "v2";
/// Default tolerance, both ways, between the request's timestamp and `now`.
pub const DEFAULT_WINDOW_SECONDS: u64 = 300;
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
    /// The HMAC does not match (wrong secret, tampered body, method, path,
    /// timestamp or nonce).
    BadSignature,
    /// The signature is of another scheme (`v1=`, which binds neither
    /// method nor path, or a newer one): the signer must be upgraded (or
    /// the edge, for a newer one). Not a wrong secret.
    UnsupportedVersion,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "missing_header",
            SignatureError::Malformed(_) => "malformed",
            SignatureError::Stale => "stale",
            SignatureError::BadSignature => "bad_signature",
            SignatureError::UnsupportedVersion => "signature_version_unsupported",
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
            SignatureError::UnsupportedVersion => f.write_str(
                "signature_version_unsupported: x-voxline-signature must be v2=<hex HMAC-SHA256(secret, \"{timestamp}\\n{nonce}\\n{METHOD}\\n{path}\\n{raw body}\")>, which binds method and path (v1 is no longer accepted): upgrade the signer",
            ),
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

/// What a signature binds besides the body: the request's method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The HTTP method; signed in uppercase whatever its case here.
    pub method: &'a str,
    /// The API path with `?query` when there is one ([`path_and_query`]).
    pub path: &'a str,
}

impl<'a> Target<'a> {
    /// `POST` to `path`: every request of the sidecar link.
    pub const fn post(path: &'a str) -> Self {
        Target {
            method: "POST",
            path,
        }
    }
}

/// The path as signed: `path`, then `?query` only when the query is not empty.
pub fn path_and_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

fn mac(secret: &[u8], timestamp: &str, nonce: &str, target: Target<'_>, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    for field in [
        timestamp.as_bytes(),
        nonce.as_bytes(),
        target.method.to_ascii_uppercase().as_bytes(),
        target.path.as_bytes(),
    ] {
        m.update(field);
        m.update(b"\n");
    }
    m.update(body);
    m
}

/// The `x-voxline-signature` value: `v2=<hex hmac>`.
pub fn sign(
    secret: &[u8],
    timestamp_seconds: u64,
    nonce: &str,
    target: Target<'_>,
    body: &[u8],
) -> String {
    let tag = mac(secret, &timestamp_seconds.to_string(), nonce, target, body)
        .finalize()
        .into_bytes();
    format!("{SCHEME_PREFIX}{}", hex::encode(tag))
}

/// All four headers for one request, ready to send.
pub fn signed_headers(
    sidecar_id: &str,
    secret: &[u8],
    timestamp_seconds: u64,
    nonce: &str,
    target: Target<'_>,
    body: &[u8],
) -> [(&'static str, String); 4] {
    [
        (HEADER_SIDECAR, sidecar_id.to_string()),
        (HEADER_TIMESTAMP, timestamp_seconds.to_string()),
        (HEADER_NONCE, nonce.to_string()),
        (
            HEADER_SIGNATURE,
            sign(secret, timestamp_seconds, nonce, target, body),
        ),
    ]
}

/// Lowercase hex SHA-256 of `bytes` (a recording manifest's `sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(bytes))
}

/// Hex-encodes caller-supplied random bytes into a nonce (16 bytes -> 32 chars).
pub fn nonce_from_bytes(random: &[u8; 16]) -> String {
    hex::encode(random)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `true` for a `v<digits>=` prefix other than ours: a scheme this build
/// does not speak (as opposed to a garbled header).
fn other_scheme(sig: &str) -> bool {
    sig.split_once('=')
        .and_then(|(scheme, _)| scheme.strip_prefix('v'))
        .is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 3
                && n.bytes().all(|b| b.is_ascii_digit())
                && Some(n) != SCHEME_VERSION.strip_prefix('v')
        })
}

/// Checks a request's signature headers against `secret`, the request's
/// method and path, and the raw body.
///
/// Order: presence of each header, then form (a signature of another scheme,
/// such as `v1=`, is [`SignatureError::UnsupportedVersion`]), then freshness
/// (`|now - ts| <= window_seconds`), then the HMAC, compared in constant time.
/// Replay (a nonce seen before within the window) is the caller's check.
pub fn verify(
    secret: &[u8],
    headers: &SignedHeaders<'_>,
    target: Target<'_>,
    body: &[u8],
    now_seconds: u64,
    window_seconds: u64,
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

    if !crate::sidecar_link::is_valid_id(sidecar) {
        return Err(SignatureError::Malformed(HEADER_SIDECAR));
    }
    // Digits only: `str::parse::<u64>` would also take a leading `+`.
    if ts.is_empty() || ts.len() > MAX_TIMESTAMP_DIGITS || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed(HEADER_TIMESTAMP));
    }
    let ts_seconds: u64 = ts
        .parse()
        .map_err(|_| SignatureError::Malformed(HEADER_TIMESTAMP))?;
    if nonce.len() < MIN_NONCE_LEN || nonce.len() > MAX_NONCE_LEN || !is_hex(nonce) {
        return Err(SignatureError::Malformed(HEADER_NONCE));
    }
    if other_scheme(sig) {
        return Err(SignatureError::UnsupportedVersion);
    }
    let hex_tag = sig
        .strip_prefix(SCHEME_PREFIX)
        .ok_or(SignatureError::Malformed(HEADER_SIGNATURE))?;
    if hex_tag.len() != 64 {
        return Err(SignatureError::Malformed(HEADER_SIGNATURE));
    }
    let tag = hex::decode(hex_tag).map_err(|_| SignatureError::Malformed(HEADER_SIGNATURE))?;

    if now_seconds.abs_diff(ts_seconds) > window_seconds {
        return Err(SignatureError::Stale);
    }
    // The timestamp is signed as sent (digits, possibly with leading zeros).
    mac(secret, ts, nonce, target, body)
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
    const LEASE: Target<'static> = Target::post("/v1/sidecar/lease");

    fn headers<'a>(h: &'a [(&'static str, String); 4]) -> SignedHeaders<'a> {
        SignedHeaders::from_lookup(|name| {
            h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn known_vector() {
        // Computed independently: python3 -c "import hmac,hashlib; print(hmac.new(b'key',
        // b'1\\n0000000000000000\\nPOST\\n/v1/sidecar/lease\\nbody', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"key", 1, "0000000000000000", LEASE, b"body"),
            "v2=2ae19ac5cd8eef33af0d6b682ec7c524eaad6c9900af15356db7b0371714a4f5"
        );
    }

    #[test]
    fn round_trip() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
        assert_eq!(h[3].1.len(), 3 + 64);
        assert!(h[3].1.starts_with("v2="));
        assert_eq!(
            verify(
                SECRET,
                &headers(&h),
                LEASE,
                BODY,
                NOW,
                DEFAULT_WINDOW_SECONDS
            ),
            Ok(())
        );
        // Uppercase hex in the signature is accepted (hex decoding is case-insensitive).
        let mut upper = h.clone();
        upper[3].1 = format!("v2={}", upper[3].1[3..].to_uppercase());
        assert_eq!(
            verify(
                SECRET,
                &headers(&upper),
                LEASE,
                BODY,
                NOW,
                DEFAULT_WINDOW_SECONDS
            ),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_fails() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
        let tampered = br#"{"protocol_version":1,"sidecar_id":"sc-2"}"#;
        assert_eq!(
            verify(SECRET, &headers(&h), LEASE, tampered, NOW, 300),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, &headers(&h), LEASE, b"", NOW, 300),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn tampered_nonce_or_timestamp_fails() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
        let mut n = h.clone();
        n[2].1 = "1123456789abcdef0123456789abcdef".into();
        assert_eq!(
            verify(SECRET, &headers(&n), LEASE, BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
        let mut t = h.clone();
        t[1].1 = (NOW + 1).to_string();
        assert_eq!(
            verify(SECRET, &headers(&t), LEASE, BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn wrong_secret_fails() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
        assert_eq!(
            verify(b"another-secret", &headers(&h), LEASE, BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify(b"", &headers(&h), LEASE, BODY, NOW, 300),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
        let hs = headers(&h);
        // At the edges of the window it still passes.
        assert_eq!(verify(SECRET, &hs, LEASE, BODY, NOW + 300, 300), Ok(()));
        assert_eq!(verify(SECRET, &hs, LEASE, BODY, NOW - 300, 300), Ok(()));
        // One second past: stale, whichever way the clocks disagree.
        assert_eq!(
            verify(SECRET, &hs, LEASE, BODY, NOW + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &hs, LEASE, BODY, NOW - 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &hs, LEASE, BODY, 0, 300),
            Err(SignatureError::Stale)
        );
        // Staleness is judged before the HMAC: a stale request with a wrong secret says stale.
        assert_eq!(
            verify(b"x", &hs, LEASE, BODY, NOW + 1000, 300),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
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
            let e = verify(SECRET, &hs, LEASE, BODY, NOW, 300).unwrap_err();
            assert_eq!(e, SignatureError::MissingHeader(name));
            assert_eq!(e.code(), "missing_header");
            assert_eq!(e.header(), Some(name));
        }
        assert_eq!(
            verify(SECRET, &SignedHeaders::default(), LEASE, BODY, NOW, 300)
                .unwrap_err()
                .code(),
            "missing_header"
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
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
                    signature: Some("v2=zz"),
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
            let e = verify(SECRET, &hs, LEASE, BODY, NOW, 300).unwrap_err();
            assert_eq!(e, SignatureError::Malformed(name), "{hs:?}");
            assert_eq!(e.code(), "malformed");
        }
        // 64 characters that are not all hex.
        let not_hex = format!("v2={}", "g".repeat(64));
        let e = verify(
            SECRET,
            &SignedHeaders {
                signature: Some(&not_hex),
                ..full
            },
            LEASE,
            BODY,
            NOW,
            300,
        )
        .unwrap_err();
        assert_eq!(e, SignatureError::Malformed(HEADER_SIGNATURE));
    }

    /// A signature captured on one endpoint (or method) authorises nothing
    /// on another: method and path are signed.
    #[test]
    fn a_signature_binds_method_and_path() {
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
        let hs = headers(&h);
        for other in [
            Target::post("/v1/sidecar/deregister"),
            Target::post("/v1/sidecar/lease?x=1"),
            Target::post("/v1/sidecar/lease/"),
            Target {
                method: "GET",
                path: "/v1/sidecar/lease",
            },
        ] {
            assert_eq!(
                verify(SECRET, &hs, other, BODY, NOW, 300),
                Err(SignatureError::BadSignature),
                "{other:?}"
            );
        }
        // The method is signed in uppercase, as a Worker sees it.
        let lower = Target {
            method: "post",
            path: LEASE.path,
        };
        assert_eq!(verify(SECRET, &hs, lower, BODY, NOW, 300), Ok(()));
        assert_eq!(path_and_query("/a", ""), "/a");
        assert_eq!(path_and_query("/a", "b=1"), "/a?b=1");
    }

    /// `v1` (method and path unbound) gets its own code, not `bad_signature`,
    /// even when its HMAC is right under the v1 rule; so does a newer scheme.
    #[test]
    fn another_signature_version_is_refused_with_its_own_code() {
        use hmac::Mac;
        let mut v1 = HmacSha256::new_from_slice(SECRET).unwrap();
        v1.update(format!("{NOW}.{NONCE}.").as_bytes());
        v1.update(BODY);
        let v1 = format!("v1={}", hex::encode(v1.finalize().into_bytes()));
        let v3 = format!("v3={}", "0".repeat(64));
        let h = signed_headers("sc-1", SECRET, NOW, NONCE, LEASE, BODY);
        for sig in [v1.as_str(), v3.as_str(), "v1=00"] {
            let hs = SignedHeaders {
                signature: Some(sig),
                ..headers(&h)
            };
            let e = verify(SECRET, &hs, LEASE, BODY, NOW, 300).unwrap_err();
            assert_eq!(e, SignatureError::UnsupportedVersion, "{sig}");
            assert_eq!(e.code(), "signature_version_unsupported");
            assert!(e.to_string().contains("v2="), "{e}");
        }
        // Not a version: garbled.
        for sig in ["v=00", "vx=00", "x1=00", "V2=00"] {
            let hs = SignedHeaders {
                signature: Some(sig),
                ..headers(&h)
            };
            assert_eq!(
                verify(SECRET, &hs, LEASE, BODY, NOW, 300),
                Err(SignatureError::Malformed(HEADER_SIGNATURE)),
                "{sig}"
            );
        }
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
