//! Signed API requests, an option per API key (`require_signature`). Pure.
//!
//! ```text
//! X-Signature: t=<unix seconds>,v2=<lowercase hex HMAC-SHA256(signing_secret,
//!              "{t}\n{METHOD}\n{path and query}\n{raw body}")>
//! ```
//!
//! The HMAC key is the UTF-8 bytes of the whole `signing_secret` string
//! (`sks_...`), as shown once when the key was minted; `\n` is one line feed;
//! `METHOD` is uppercase; `path and query` is the request target as the edge
//! receives it: the path, then `?` and the query string only when the query
//! is not empty (`/v1/calls?status=queued&limit=50`), byte for byte as sent
//! (no re-encoding, no reordering). A request is accepted when `t` is within
//! [`WINDOW_SECONDS`] of now (either way) and one `v2` matches; the tenant's
//! `RateLimiter` object then refuses the same signature a second time while
//! it could still be accepted (replay).
//!
//! Method and path are bound, so a signature captured on `GET /v1/calls/{id}`
//! authorises nothing on `POST /v1/calls/{id}/hangup`. `v1` (`"{t}.{raw body}"`,
//! method and path unbound) is refused with its own error,
//! [`SignatureError::VersionUnsupported`], when no `v2` is given; a client may
//! send both during its own upgrade (an edge that knows `v2` reads only `v2`).
//! No `v2` string is a `v1` string (`t`'s digits are followed by `\n`, not `.`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "x-signature";
/// Tolerance, both ways, between `t` and now.
pub const WINDOW_SECONDS: u64 = 300;
/// More `v2=` entries than this is malformed (room for a rotation overlap).
const MAX_SIGNATURES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    /// `t` is more than the window away from now.
    Stale,
    /// No `v2` matches (wrong secret, or the method, path or body was changed).
    Mismatch,
    /// Only `v1` (body only) signatures: the client must sign with `v2`.
    VersionUnsupported,
}

impl SignatureError {
    pub fn message(self) -> &'static str {
        match self {
            SignatureError::Missing => "this API key requires signed requests: send X-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(signing_secret, \"{t}\\n{METHOD}\\n{path and query}\\n{raw body}\")>",
            SignatureError::Malformed => "X-Signature must be t=<unix seconds>,v2=<64 lowercase hex>",
            SignatureError::Stale => "X-Signature's t is more than 300 s away from now; sign each request when sending it",
            SignatureError::Mismatch => "X-Signature does not match this request's method, path and query, body and timestamp",
            SignatureError::VersionUnsupported => "X-Signature v1 (body only) is no longer accepted: sign with v2=<hex HMAC-SHA256(signing_secret, \"{t}\\n{METHOD}\\n{path and query}\\n{raw body}\")>, which binds method and path",
        }
    }
}

/// An accepted signature: what the replay check remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub t: u64,
    /// The matching `v2`, lowercase hex.
    pub signature: String,
}

impl Accepted {
    /// Until when a replay of it could still pass the timestamp check.
    pub fn replayable_until_ms(&self) -> u64 {
        (self.t + WINDOW_SECONDS + 1) * 1000
    }
}

/// What is signed besides the timestamp and body: the request's method and
/// its path and query (see [`voxline_shared::signing::path_and_query`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
}

fn mac(secret: &[u8], t: u64, target: Target<'_>, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    for field in [
        t.to_string().as_bytes(),
        target.method.to_ascii_uppercase().as_bytes(),
        target.path_and_query.as_bytes(),
    ] {
        m.update(field);
        m.update(b"\n");
    }
    m.update(body);
    m
}

/// The header value a client sends (also used by tests).
pub fn header_value(secret: &[u8], t: u64, target: Target<'_>, body: &[u8]) -> String {
    format!(
        "t={t},v2={}",
        hex::encode(mac(secret, t, target, body).finalize().into_bytes())
    )
}

fn signature_hex(v: &str) -> Result<(String, Vec<u8>), SignatureError> {
    let v = v.trim();
    let raw = hex::decode(v).map_err(|_| SignatureError::Malformed)?;
    if raw.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    Ok((v.to_ascii_lowercase(), raw))
}

/// Checks `X-Signature` against the request. Unknown `k=v` entries are
/// ignored (room for later schemes); several `v2` may be given; `v1` entries
/// are ignored beside a `v2` and refused alone.
pub fn verify(
    header: Option<&str>,
    secret: &[u8],
    target: Target<'_>,
    body: &[u8],
    now_seconds: u64,
) -> Result<Accepted, SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut sigs = Vec::new();
    let mut v1_given = false;
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
            "v2" => sigs.push(signature_hex(v)?),
            "v1" => v1_given = true,
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() && v1_given {
        return Err(SignatureError::VersionUnsupported);
    }
    if sigs.is_empty() || sigs.len() > MAX_SIGNATURES {
        return Err(SignatureError::Malformed);
    }
    if t.abs_diff(now_seconds) > WINDOW_SECONDS {
        return Err(SignatureError::Stale);
    }
    for (signature, raw) in sigs {
        // Constant-time comparison.
        if mac(secret, t, target, body).verify_slice(&raw).is_ok() {
            return Ok(Accepted { t, signature });
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"sks_test";
    const NOW: u64 = 1_764_082_200;
    const CREATE: Target<'static> = Target {
        method: "POST",
        path_and_query: "/v1/calls",
    };

    #[test]
    fn known_vectors() {
        // The README's worked example. Computed independently:
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"sks_test",
        //   b"1764082200\nPOST\n/v1/calls\n{\"phone\":\"+14155550100\"}", hashlib.sha256).hexdigest())'
        assert_eq!(
            header_value(SECRET, NOW, CREATE, br#"{"phone":"+14155550100"}"#),
            "t=1764082200,v2=8fcda60a70653b2c16bf453045f5d47d904271726568b26ce56b1afebad984ab"
        );
        let list = Target {
            method: "GET",
            path_and_query: "/v1/calls?status=queued&limit=50",
        };
        assert_eq!(
            header_value(SECRET, NOW, list, b""),
            "t=1764082200,v2=ededc3b7e7e1afe890ca336410ca2de98107cb0b9b8869a7967edd4e29960b5e"
        );
    }

    #[test]
    fn a_signed_request_verifies_and_anything_else_is_refused() {
        let body = br#"{"phone":"+14155550100"}"#;
        let h = header_value(SECRET, NOW, CREATE, body);
        let ok = verify(Some(&h), SECRET, CREATE, body, NOW + 10).unwrap();
        assert_eq!((ok.t, ok.signature.len()), (NOW, 64));
        assert_eq!(ok.replayable_until_ms(), (NOW + 301) * 1000);
        // Tampered body, wrong secret, stale either way, missing, malformed.
        assert_eq!(
            verify(
                Some(&h),
                SECRET,
                CREATE,
                br#"{"phone":"+14155550101"}"#,
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&h), b"sks_other", CREATE, body, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&h), SECRET, CREATE, body, NOW + 300).map(|a| a.t),
            Ok(NOW)
        );
        assert_eq!(
            verify(Some(&h), SECRET, CREATE, body, NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&h), SECRET, CREATE, body, NOW - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(None, SECRET, CREATE, body, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("  "), SECRET, CREATE, body, NOW),
            Err(SignatureError::Missing)
        );
        for bad in [
            "t=1",
            "v2=00",
            "t=x,v2=00",
            "garbage",
            &format!("t={NOW},v2=zz"),
            &format!("t={NOW},t={NOW},{}", &h[h.find("v2").unwrap()..]),
        ] {
            assert_eq!(
                verify(Some(bad), SECRET, CREATE, body, NOW),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // Extra entries and a second (old-secret) signature are fine; spaces too.
        let old = header_value(b"sks_old", NOW, CREATE, body);
        let both = format!(
            "t={NOW}, {}, {}, x=1",
            &old[old.find("v2").unwrap()..],
            &h[h.find("v2").unwrap()..]
        );
        assert_eq!(
            verify(Some(&both), SECRET, CREATE, body, NOW)
                .unwrap()
                .signature,
            ok.signature
        );
        // Uppercase hex is read, and remembered lowercase (one replay identity).
        let upper = h
            .to_ascii_uppercase()
            .replace("T=", "t=")
            .replace("V2=", "v2=");
        assert_eq!(
            verify(Some(&upper), SECRET, CREATE, body, NOW)
                .unwrap()
                .signature,
            ok.signature
        );
    }

    /// A signature captured on a read authorises no other method or path
    /// (the issue: a signed GET replayed as a POST hangup).
    #[test]
    fn a_signature_is_bound_to_method_path_and_query() {
        let get = Target {
            method: "GET",
            path_and_query: "/v1/calls/c_1",
        };
        let h = header_value(SECRET, NOW, get, b"");
        assert!(verify(Some(&h), SECRET, get, b"", NOW).is_ok());
        for other in [
            Target {
                method: "POST",
                path_and_query: "/v1/calls/c_1/hangup",
            },
            Target {
                method: "POST",
                path_and_query: "/v1/calls/c_1",
            },
            Target {
                method: "GET",
                path_and_query: "/v1/calls/c_2",
            },
            Target {
                method: "GET",
                path_and_query: "/v1/calls/c_1?x=1",
            },
        ] {
            assert_eq!(
                verify(Some(&h), SECRET, other, b"", NOW),
                Err(SignatureError::Mismatch),
                "{other:?}"
            );
        }
        // The method is compared in uppercase (a Worker normalises `get`).
        let lower = Target {
            method: "get",
            ..get
        };
        assert!(verify(Some(&h), SECRET, lower, b"", NOW).is_ok());
    }

    /// `v1` alone gets its own error naming v2; beside a `v2` it is ignored.
    #[test]
    fn a_v1_only_signature_is_refused_as_an_old_version() {
        use hmac::Mac;
        let body = br#"{"phone":"+14155550100"}"#;
        // A correct v1 under the old rule: HMAC(secret, "{t}.{raw body}").
        let mut m = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        m.update(format!("{NOW}.").as_bytes());
        m.update(body);
        let v1 = format!("v1={}", hex::encode(m.finalize().into_bytes()));
        let e = verify(Some(&format!("t={NOW},{v1}")), SECRET, CREATE, body, NOW).unwrap_err();
        assert_eq!(e, SignatureError::VersionUnsupported);
        assert!(e.message().contains("v2="), "{}", e.message());
        let v2 = header_value(SECRET, NOW, CREATE, body);
        let both = format!("{v2},{v1}");
        assert!(verify(Some(&both), SECRET, CREATE, body, NOW).is_ok());
        let wrong_v2 = format!("t={NOW},v2={},{v1}", "0".repeat(64));
        assert_eq!(
            verify(Some(&wrong_v2), SECRET, CREATE, body, NOW),
            Err(SignatureError::Mismatch)
        );
    }
}
