//! Engine credentials given with a call or an agent: an API key for the
//! speech engine (OpenAI, Gemini) and its base URL.
//!
//! The key is a tenant's secret. It is never written in clear: the edge seals
//! it (AES-256-GCM under the Worker secret `VOXLINE_SEALING_KEY`, bound to the
//! tenant as associated data) before it is stored anywhere (the agent record,
//! the dispatch queue's offer), opens it only when an offer is handed to a
//! sidecar (over the signed, TLS-protected link), and never returns it through
//! the API or writes it to a log. The sidecar holds it in memory for the one
//! call. A call's own key lives only in its queued offer, which the queue
//! drops when the call ends.
//!
//! The same key seals every other secret kept in KV that the edge must use
//! again ([`StoredSecret`]): sidecar HMAC secrets, webhook signing secrets and
//! request-signing secrets, each bound to its record kind and owner
//! ([`SecretOwner`]).
//!
//! The base URL is not secret (shown on the call and agent), but it makes the
//! sidecar connect somewhere: `wss://` to a public host only (`ws://`
//! loopback in local development), checked like webhook URLs.

use crate::error::{ApiError, ErrorCode};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Longest engine API key accepted.
pub const MAX_KEY_CHARS: usize = 512;
pub const MAX_BASE_URL_CHARS: usize = 2048;
const PREFIX: &str = "v1.";

/// The key recording links are signed with (`recording_links`):
/// HMAC-SHA256(sealing key bytes, [`RECORDING_LINK_KEY_LABEL`]), so the
/// sealing key itself never keys an HMAC, and rotating it voids every link.
#[derive(Clone)]
pub struct RecordingLinkKey([u8; 32]);

/// What the link key is derived with: versioned, so another derivation can
/// never yield the same key.
pub const RECORDING_LINK_KEY_LABEL: &[u8] = b"voxline recording link v1";

impl std::fmt::Debug for RecordingLinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingLinkKey(***)")
    }
}

impl RecordingLinkKey {
    pub(crate) fn derive(sealing_key: &[u8]) -> RecordingLinkKey {
        use hmac::Mac;
        let mut mac = hmac_sha256(sealing_key);
        mac.update(RECORDING_LINK_KEY_LABEL);
        RecordingLinkKey(mac.finalize().into_bytes().into())
    }

    /// An HMAC-SHA256 keyed with this key.
    pub(crate) fn mac(&self) -> hmac::Hmac<sha2::Sha256> {
        hmac_sha256(&self.0)
    }
}

fn hmac_sha256(key: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    match <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// The Worker secret's 32 bytes, and the keys derived from them.
#[derive(Clone)]
pub struct SealingKey {
    cipher: Aes256Gcm,
    /// Signs recording links (`recording_links`): a key of its own,
    /// derived once, so the sealing key itself never keys an HMAC.
    recording_link_key: RecordingLinkKey,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

impl SealingKey {
    /// From the secret's text: 32 bytes as base64 (standard or URL-safe) or hex.
    pub fn from_secret(text: &str) -> Result<SealingKey, String> {
        let t = text.trim();
        let bytes = hex::decode(t)
            .ok()
            .or_else(|| STANDARD.decode(t).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).ok())
            .ok_or("VOXLINE_SEALING_KEY is neither hex nor base64")?;
        if bytes.len() != 32 {
            return Err(format!(
                "VOXLINE_SEALING_KEY must be 32 bytes, not {}",
                bytes.len()
            ));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(SealingKey {
            cipher,
            recording_link_key: RecordingLinkKey::derive(&bytes),
        })
    }

    /// The key recording links are signed with (derived from this one).
    pub fn recording_link_key(&self) -> &RecordingLinkKey {
        &self.recording_link_key
    }

    /// `v1.` + base64url(nonce || ciphertext+tag); the tenant is the associated data.
    pub fn seal(&self, tenant_id: &str, plaintext: &str) -> String {
        let nonce = crate::ids::random_bytes::<12>();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: tenant_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short message cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The clear key, if `sealed` was sealed by this key for this tenant.
    pub fn open(&self, tenant_id: &str, sealed: &str) -> Result<String, String> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .ok_or("unknown sealing version")?;
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| "not base64url")?;
        if bytes.len() < 12 + 16 {
            return Err("too short".into());
        }
        let (nonce, body) = bytes.split_at(12);
        let clear = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: tenant_id.as_bytes(),
                },
            )
            .map_err(|_| "sealed under another key or for another tenant".to_string())?;
        String::from_utf8(clear).map_err(|_| "not UTF-8".into())
    }
}

/// Whose secret a [`StoredSecret`] is: the record kind and its owner's id
/// become the associated data, so a sealed value copied into another record
/// (another sidecar, another tenant's endpoint, another key) does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOwner<'a> {
    /// A media sidecar's HMAC secret (`sidecar/{id}`).
    Sidecar(&'a str),
    /// A webhook endpoint's signing secrets, current and previous.
    Webhook { tenant: &'a str, endpoint: &'a str },
    /// The request-signing secret of an API key minted with `require_signature`.
    ApiKeySigning { tenant: &'a str, key_id: &'a str },
    /// A dialect credential's secret: VoiceB's API Secret, BuildVoiceAI's token.
    DialectKey { tenant: &'a str, key_id: &'a str },
    /// An agent's tools secret: signs its customer tools' requests (issue 18).
    AgentTools { tenant: &'a str, agent: &'a str },
}

impl SecretOwner<'_> {
    /// Never a bare tenant id (what engine keys are bound to): the kinds cannot collide.
    fn associated_data(&self) -> String {
        match self {
            SecretOwner::Sidecar(id) => format!("secret:sidecar:{id}"),
            SecretOwner::Webhook { tenant, endpoint } => {
                format!("secret:webhook:{tenant}:{endpoint}")
            }
            SecretOwner::ApiKeySigning { tenant, key_id } => {
                format!("secret:api_key_signing:{tenant}:{key_id}")
            }
            SecretOwner::DialectKey { tenant, key_id } => {
                format!("secret:dialect_key:{tenant}:{key_id}")
            }
            SecretOwner::AgentTools { tenant, agent } => {
                format!("secret:agent_tools:{tenant}:{agent}")
            }
        }
    }
}

/// A symmetric secret the edge must use again (to verify a sidecar's or a
/// client's HMAC, to sign a webhook), as kept in a KV record.
///
/// Written sealed: `v1.` + base64url(nonce || ciphertext+tag), the same form
/// as engine keys, bound to its [`SecretOwner`]. Records written before
/// sealing hold the clear secret in the same field; such a value never starts
/// with `v1.` (the edge minted it as `scs_...`, `whsec_...` or `sks_...`), so
/// it is read as it is (legacy), and sealed whenever the admin API rewrites
/// its record ([`StoredSecret::sealed_if_clear`]).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct StoredSecret(String);

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_sealed() {
            "StoredSecret(sealed)"
        } else {
            "StoredSecret(legacy clear, ***)"
        })
    }
}

/// A stored secret that cannot be opened: the deployment has no (or another)
/// `VOXLINE_SEALING_KEY`, or the value was moved from another record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUnavailable(pub String);

impl std::fmt::Display for SecretUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StoredSecret {
    pub fn seal(key: &SealingKey, owner: SecretOwner<'_>, clear: &str) -> StoredSecret {
        StoredSecret(key.seal(&owner.associated_data(), clear))
    }

    /// A value as records written before sealing hold it (tests and old records).
    pub fn legacy_clear(clear: &str) -> StoredSecret {
        StoredSecret(clear.to_string())
    }

    pub fn is_sealed(&self) -> bool {
        self.0.starts_with(PREFIX)
    }

    /// The clear secret, opened only where it is used.
    pub fn open(
        &self,
        key: Option<&SealingKey>,
        owner: SecretOwner<'_>,
    ) -> Result<String, SecretUnavailable> {
        if !self.is_sealed() {
            return Ok(self.0.clone());
        }
        let key = key.ok_or_else(|| {
            SecretUnavailable("the secret is sealed and VOXLINE_SEALING_KEY is not set".into())
        })?;
        key.open(&owner.associated_data(), &self.0)
            .map_err(|why| SecretUnavailable(format!("the sealed secret does not open: {why}")))
    }

    /// A legacy clear value sealed (when a key is at hand); anything else unchanged.
    pub fn sealed_if_clear(self, key: Option<&SealingKey>, owner: SecretOwner<'_>) -> StoredSecret {
        match key {
            Some(k) if !self.is_sealed() => StoredSecret::seal(k, owner, &self.0),
            _ => self,
        }
    }
}

/// An engine API key as given: printable ASCII without spaces.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(format!("must be 1 to {MAX_KEY_CHARS} characters"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// An engine base URL: `wss://` to a public host; `ws://` loopback in development.
pub fn check_base_url(url: &str, dev_mode: bool) -> Result<(), String> {
    if url.chars().count() > MAX_BASE_URL_CHARS {
        return Err(format!("must be at most {MAX_BASE_URL_CHARS} characters"));
    }
    let (scheme, rest) = url.split_once("://").ok_or("needs a scheme (wss://)")?;
    // The webhook guard knows which hosts are public; map the WebSocket schemes onto its two.
    let as_http = match scheme.to_ascii_lowercase().as_str() {
        "wss" => format!("https://{rest}"),
        "ws" => format!("http://{rest}"),
        _ => return Err("must be a wss:// URL".into()),
    };
    // No user:pass@ either: the URL is shown on calls and agents, and a key
    // travels in the key field, sealed, never inside a URL.
    crate::url_guard::check_webhook(&as_http, dev_mode)
        .map_err(|e| e.replace("https", "wss").replace("http", "ws"))
}

/// The sealing key for sidecar, webhook and request-signing secrets: without
/// one they are not minted (never stored in clear), like engine keys.
pub(crate) fn secrets_sealing_key(key: Option<&SealingKey>) -> Result<&SealingKey, ApiError> {
    key.ok_or_else(|| {
        ApiError::new(
            ErrorCode::SecretsUnavailable,
            "this deployment cannot keep secrets (no VOXLINE_SEALING_KEY secret)",
        )
    })
}

/// A stored secret that does not open: the operator's problem, not the client's.
pub(crate) fn secret_unavailable(e: SecretUnavailable) -> ApiError {
    ApiError::new(
        ErrorCode::SecretsUnavailable,
        format!("a stored secret cannot be used: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_secret(&hex::encode([7u8; 32])).unwrap()
    }

    #[test]
    fn sealed_keys_open_only_for_their_tenant_and_key() {
        let k = key();
        let sealed = k.seal("ten_a", "sk-live-123");
        assert!(sealed.starts_with("v1.") && !sealed.contains("sk-live"));
        assert_ne!(
            sealed,
            k.seal("ten_a", "sk-live-123"),
            "a fresh nonce each time"
        );
        assert_eq!(k.open("ten_a", &sealed).unwrap(), "sk-live-123");
        assert!(k.open("ten_b", &sealed).is_err(), "bound to the tenant");
        let other = SealingKey::from_secret(&STANDARD.encode([9u8; 32])).unwrap();
        assert!(other.open("ten_a", &sealed).is_err());
        assert!(k.open("ten_a", "v1.AAAA").is_err());
        assert!(k.open("ten_a", "v2.x").is_err());
        assert!(SealingKey::from_secret("short").is_err());
        assert!(SealingKey::from_secret(&hex::encode([1u8; 16])).is_err());
        assert_eq!(format!("{k:?}"), "SealingKey(***)");
    }

    #[test]
    fn keys_and_base_urls_are_checked() {
        assert!(check_key("sk-proj-abc_123").is_ok());
        assert!(
            check_key("").is_err()
                && check_key("a b").is_err()
                && check_key(&"k".repeat(513)).is_err()
        );
        assert!(check_base_url("wss://api.openai.com", false).is_ok());
        assert!(check_base_url("https://api.openai.com", false).is_err());
        assert!(check_base_url("ws://api.openai.com", false).is_err());
        assert!(check_base_url("wss://10.0.0.5", false).is_err());
        assert!(check_base_url("wss://metadata.google.internal", false).is_err());
        assert!(check_base_url("ws://127.0.0.1:9000", false).is_err());
        assert!(check_base_url("ws://127.0.0.1:9000", true).is_ok());
        assert!(
            check_base_url("wss://user:sk-secret@realtime.example.com/v1", false).is_err(),
            "no credentials in the URL"
        );
    }
}
