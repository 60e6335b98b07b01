//! Capability links to one call's recording, for those who hold no API key:
//! the `recording_url` of dialect webhooks (Calldock's `post_call` says "an
//! absolute URL that works").
//!
//! `{PUBLIC_BASE_URL}/v1/recordings/{tenant_id}/{call_id}?expires={unix s}&signature={hex}`
//! where `signature` is the lowercase hex HMAC-SHA256 of
//! `"{tenant_id}\n{call_id}\n{expires}"` under [`RecordingLinkKey`], a key
//! derived from the deployment's `VOXLINE_SEALING_KEY` (HMAC-SHA256 of
//! `"voxline recording link v1"` keyed with the sealing key's 32 bytes, see
//! `engine_keys`): the sealing key itself never keys an HMAC, and rotating it
//! invalidates every link.
//!
//! A link works for [`LINK_LIFETIME_SECONDS`] (7 days) from when it was made
//! (when the webhook body was rendered), then answers 403. It names the
//! recording, not an attempt: it serves whatever `GET
//! /v1/calls/{call_id}/recording` serves at the time (404 until uploaded).

pub use crate::engine_keys::RecordingLinkKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a link works after it was made: a week, long enough for a
/// webhook's retries and a human to click it, short enough that a leaked
/// link does not serve a recording for ever.
pub const LINK_LIFETIME_SECONDS: u64 = 7 * 24 * 3600;

/// The lowercase hex signature of a link.
pub fn sign(key: &RecordingLinkKey, tenant_id: &str, call_id: &str, expires: u64) -> String {
    hex::encode(
        mac(key, tenant_id, call_id, expires)
            .finalize()
            .into_bytes(),
    )
}

fn mac(key: &RecordingLinkKey, tenant_id: &str, call_id: &str, expires: u64) -> Hmac<Sha256> {
    let mut mac = key.mac();
    mac.update(format!("{tenant_id}\n{call_id}\n{expires}").as_bytes());
    mac
}

/// Whether `query` (the link's query string, without `?`) carries a
/// signature of this tenant's call that has not expired at `now_s`.
pub fn verify(
    key: &RecordingLinkKey,
    tenant_id: &str,
    call_id: &str,
    query: &str,
    now_s: u64,
) -> Result<(), LinkRefusal> {
    let q = LinkQuery::parse(query)?;
    // Constant-time comparison of the MAC.
    mac(key, tenant_id, call_id, q.expires)
        .verify_slice(&q.signature)
        .map_err(|_| LinkRefusal::WrongSignature)?;
    if now_s > q.expires {
        return Err(LinkRefusal::Expired);
    }
    Ok(())
}

/// The longest query a link route reads; ours are about 100 characters.
const MAX_QUERY_CHARS: usize = 512;
/// The longest `PUBLIC_BASE_URL` accepted.
pub const MAX_BASE_URL_CHARS: usize = 512;

/// Why a link is refused (all answer 403 `invalid_recording_link`; none says
/// whether the call exists: the signature is checked before anything is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// `expires` or `signature` missing, repeated or malformed, or the query too long.
    Malformed(&'static str),
    WrongSignature,
    /// Signed by us, but its time is up.
    Expired,
}

impl LinkRefusal {
    pub fn message(self) -> String {
        match self {
            LinkRefusal::Malformed(why) => format!("malformed recording link: {why}"),
            LinkRefusal::WrongSignature => {
                "the recording link's signature does not match".to_string()
            }
            LinkRefusal::Expired => {
                "the recording link has expired; a new webhook delivery carries a fresh one"
                    .to_string()
            }
        }
    }
}

/// The two parameters a link carries; others are ignored.
struct LinkQuery {
    expires: u64,
    signature: [u8; 32],
}

impl LinkQuery {
    fn parse(query: &str) -> Result<LinkQuery, LinkRefusal> {
        if query.len() > MAX_QUERY_CHARS {
            return Err(LinkRefusal::Malformed("the query is too long"));
        }
        let mut expires = None;
        let mut signature = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "expires" => &mut expires,
                "signature" => &mut signature,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(LinkRefusal::Malformed("a parameter is repeated"));
            }
        }
        let expires = expires
            .filter(|v| (1..=20).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(LinkRefusal::Malformed("expires must be unix seconds"))?;
        let mut bytes = [0u8; 32];
        signature
            .filter(|v| v.len() == 64)
            .and_then(|v| hex::decode_to_slice(v, &mut bytes).ok())
            .ok_or(LinkRefusal::Malformed("signature must be 64 hex digits"))?;
        Ok(LinkQuery {
            expires,
            signature: bytes,
        })
    }
}

/// What making links needs: the deployment's public base URL and the link
/// key. The Worker builds it from `PUBLIC_BASE_URL` and `VOXLINE_SEALING_KEY`;
/// without either there is none, and `recording_url` stays null.
#[derive(Debug, Clone)]
pub struct RecordingLinks {
    /// Scheme, host and optional path prefix, without a trailing `/`.
    base_url: String,
    key: RecordingLinkKey,
}

impl RecordingLinks {
    /// `base_url` must be an absolute `http(s)://` URL without credentials,
    /// query or fragment (a path prefix is kept).
    pub fn new(base_url: &str, key: &RecordingLinkKey) -> Result<RecordingLinks, String> {
        let base = base_url.trim().trim_end_matches('/');
        if base.is_empty() || base.len() > MAX_BASE_URL_CHARS {
            return Err(format!("must be 1 to {MAX_BASE_URL_CHARS} characters"));
        }
        let parsed = url::Url::parse(base).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err("must be an http(s):// URL with a host".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not carry credentials".into());
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("must not have a query or fragment".into());
        }
        Ok(RecordingLinks {
            base_url: base.to_string(),
            key: key.clone(),
        })
    }

    /// The link to a call's recording, working for [`LINK_LIFETIME_SECONDS`] from `now_ms`.
    pub fn url(&self, tenant_id: &str, call_id: &str, now_ms: u64) -> String {
        let expires = (now_ms / 1000).saturating_add(LINK_LIFETIME_SECONDS);
        let signature = sign(&self.key, tenant_id, call_id, expires);
        format!(
            "{}{}?expires={expires}&signature={signature}",
            self.base_url,
            path(tenant_id, call_id)
        )
    }
}

/// The route's path for a call: `/v1/recordings/{tenant_id}/{call_id}`.
pub fn path(tenant_id: &str, call_id: &str) -> String {
    format!("/v1/recordings/{tenant_id}/{call_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: u64 = 1_764_082_200;
    const TEN: &str = "ten_0123456789abcdef";
    const CALL: &str = "call_0123456789abcdef";

    fn key() -> RecordingLinkKey {
        RecordingLinkKey::derive(&[7u8; 32])
    }

    fn query_of(url: &str) -> &str {
        url.split_once('?').unwrap().1
    }

    #[test]
    fn a_link_verifies_for_its_call_until_it_expires() {
        let links = RecordingLinks::new("https://edge.example.com/", &key()).unwrap();
        let url = links.url(TEN, CALL, NOW_S * 1000 + 999);
        let expires = NOW_S + LINK_LIFETIME_SECONDS;
        assert_eq!(
            url,
            format!(
                "https://edge.example.com/v1/recordings/{TEN}/{CALL}?expires={expires}&signature={}",
                sign(&key(), TEN, CALL, expires)
            )
        );
        let q = query_of(&url);
        assert_eq!(verify(&key(), TEN, CALL, q, NOW_S), Ok(()));
        assert_eq!(
            verify(&key(), TEN, CALL, q, expires),
            Ok(()),
            "the last second"
        );
        assert_eq!(
            verify(&key(), TEN, CALL, q, expires + 1),
            Err(LinkRefusal::Expired)
        );
        // Parameters in another order, and others beside them, are fine.
        let (e, s) = q.split_once('&').unwrap();
        assert_eq!(
            verify(&key(), TEN, CALL, &format!("x=1&{s}&{e}"), NOW_S),
            Ok(())
        );
    }

    #[test]
    fn tampering_with_any_part_breaks_the_signature() {
        let expires = NOW_S + 60;
        let sig = sign(&key(), TEN, CALL, expires);
        let q = format!("expires={expires}&signature={sig}");
        let wrong = Err(LinkRefusal::WrongSignature);
        assert_eq!(
            verify(&key(), "ten_0123456789abcdee", CALL, &q, NOW_S),
            wrong
        );
        assert_eq!(
            verify(&key(), TEN, "call_0123456789abcdee", &q, NOW_S),
            wrong
        );
        let later = format!("expires={}&signature={sig}", expires + 1);
        assert_eq!(verify(&key(), TEN, CALL, &later, NOW_S), wrong);
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = format!(
            "expires={expires}&signature={}",
            String::from_utf8(flipped).unwrap()
        );
        assert_eq!(verify(&key(), TEN, CALL, &flipped, NOW_S), wrong);
        // Another deployment's key, and the sealing key used directly, do not sign it.
        let other = RecordingLinkKey::derive(&[8u8; 32]);
        assert_eq!(verify(&other, TEN, CALL, &q, NOW_S), wrong);
        let mut raw = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
        raw.update(format!("{TEN}\n{CALL}\n{expires}").as_bytes());
        assert_ne!(hex::encode(raw.finalize().into_bytes()), sig);
        // Uppercase hex is the same bytes.
        let upper = format!("expires={expires}&signature={}", sig.to_uppercase());
        assert_eq!(verify(&key(), TEN, CALL, &upper, NOW_S), Ok(()));
    }

    #[test]
    fn malformed_queries_are_refused_without_panicking() {
        let sig = sign(&key(), TEN, CALL, NOW_S);
        for q in [
            String::new(),
            "expires".into(),
            "signature".into(),
            format!("signature={sig}"),
            format!("expires={NOW_S}"),
            format!("expires=&signature={sig}"),
            format!("expires=-1&signature={sig}"),
            format!("expires=+{NOW_S}&signature={sig}"),
            format!("expires=99999999999999999999&signature={sig}"),
            format!("expires=1{}&signature={sig}", "0".repeat(30)),
            format!("expires={NOW_S}&signature={}", &sig[..63]),
            format!("expires={NOW_S}&signature={sig}0"),
            format!("expires={NOW_S}&signature={}zz", &sig[..62]),
            format!("expires={NOW_S}&signature={}é", &sig[..62]),
            format!("expires={NOW_S}&expires={NOW_S}&signature={sig}"),
            format!("expires={NOW_S}&signature={sig}&signature={sig}"),
            format!("expires={NOW_S}&signature={sig}&pad={}", "a".repeat(600)),
            "&&&==&=".into(),
        ] {
            assert!(
                matches!(
                    verify(&key(), TEN, CALL, &q, NOW_S),
                    Err(LinkRefusal::Malformed(_))
                ),
                "{q}"
            );
        }
        assert!(LinkRefusal::Expired.message().contains("expired"));
    }

    #[test]
    fn base_urls_are_checked() {
        let k = key();
        for ok in [
            "https://edge.example.com",
            "http://127.0.0.1:8787/",
            "https://example.com/voxline",
        ] {
            let links = RecordingLinks::new(ok, &k).unwrap();
            assert!(links
                .url(TEN, CALL, 0)
                .starts_with(ok.trim_end_matches('/')));
        }
        for bad in [
            "",
            "/",
            "edge.example.com",
            "ftp://edge.example.com",
            "https://user:pw@edge.example.com",
            "https://edge.example.com/?a=1",
            "https://edge.example.com/#x",
        ] {
            assert!(RecordingLinks::new(bad, &k).is_err(), "{bad}");
        }
        assert!(RecordingLinks::new(&format!("https://e.com/{}", "a".repeat(600)), &k).is_err());
        assert_eq!(format!("{k:?}"), "RecordingLinkKey(***)");
    }
}
