//! Standard Webhooks v1 signatures (<https://www.standardwebhooks.com/>).
//!
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! where the key is the base64-decoded part of the `whsec_...` secret. During
//! a secret rotation's overlap several signatures are sent, space-separated;
//! a receiver accepts the message when any of them verifies.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSecret;

impl std::fmt::Display for BadSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the webhook secret is not whsec_ + base64")
    }
}

/// The HMAC key inside a `whsec_` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD.decode(b64).map_err(|_| BadSecret)?;
    if key.is_empty() {
        return Err(BadSecret);
    }
    Ok(key)
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &str, msg_id: &str, timestamp: u64, body: &[u8]) -> Result<String, BadSecret> {
    let key = secret_key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The three Standard Webhooks headers, one signature per secret (newest first).
pub fn headers(
    secrets: &[&str],
    msg_id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, BadSecret> {
    let sigs = secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![
        ("webhook-id", msg_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sigs.join(" ")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference vector of the Standard Webhooks libraries' test suites.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1_614_265_330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        assert_eq!(sign(SECRET, MSG_ID, TS, BODY.as_bytes()).unwrap(), EXPECTED);
        // The prefix is optional on input, as in the reference libraries.
        assert_eq!(
            sign(&SECRET[6..], MSG_ID, TS, BODY.as_bytes()).unwrap(),
            EXPECTED
        );
    }

    #[test]
    fn any_change_changes_the_signature() {
        assert_ne!(
            sign(SECRET, MSG_ID, TS + 1, BODY.as_bytes()).unwrap(),
            EXPECTED
        );
        assert_ne!(
            sign(SECRET, "msg_other", TS, BODY.as_bytes()).unwrap(),
            EXPECTED
        );
        assert_ne!(
            sign(SECRET, MSG_ID, TS, br#"{"test": 2432232315}"#).unwrap(),
            EXPECTED
        );
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let other = crate::ids::mint_webhook_secret();
        let h = headers(&[&other, SECRET], MSG_ID, TS, BODY.as_bytes()).unwrap();
        assert_eq!(h[0], ("webhook-id", MSG_ID.to_string()));
        assert_eq!(h[1], ("webhook-timestamp", TS.to_string()));
        let sigs: Vec<&str> = h[2].1.split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[1], EXPECTED);
        assert!(sigs[0].starts_with("v1,") && sigs[0] != EXPECTED);
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(sign("whsec_!!!", MSG_ID, TS, b"x"), Err(BadSecret));
        assert_eq!(sign("whsec_", MSG_ID, TS, b"x"), Err(BadSecret));
    }
}
