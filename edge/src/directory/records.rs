//! The rows of a tenant's directory, as stored (JSON per row) and as the
//! admin API shows them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Who has an extension: a person (their SIP phones ring) or one of the
/// tenant's AI agents (a call from or to it is an AI call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    #[default]
    Person,
    AiAgent,
}

impl UserKind {
    pub const NAMES: [&'static str; 2] = ["person", "ai_agent"];

    pub fn parse(s: &str) -> Option<UserKind> {
        match s {
            "person" => Some(UserKind::Person),
            "ai_agent" => Some(UserKind::AiAgent),
            _ => None,
        }
    }
}

/// What the admin API sets on a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFields {
    #[serde(default)]
    pub kind: UserKind,
    /// The agent of an `ai_agent` user.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// 2-16 digits, unique among the tenant's users and queues.
    pub extension: String,
    pub first_name: String,
    pub last_name: String,
    /// The display name on calls (`callerID`).
    pub caller_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub voicemail_enabled: bool,
    #[serde(default)]
    pub forward_enabled: bool,
    #[serde(default)]
    pub forward_number: Option<String>,
    /// IANA time zone.
    pub time_zone: String,
}

/// A user of the tenant's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub pk: u64,
    /// The id of the user's SIP endpoint (Voice360's `asterisk_user_id`).
    pub sip_endpoint_id: u64,
    #[serde(flatten)]
    pub fields: UserFields,
    pub created_at: String,
    pub updated_at: String,
    /// The user's SIP phone account, once a password was set (issue 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<SipCredentials>,
}

/// A person's SIP phone account: the username phones register with and the
/// Digest HA1s of its password (RFC 7616: H(`username:realm:password`) with
/// MD5 and with SHA-256). The password itself is shown once when set and
/// never stored; an HA1 opens only this realm's account, and is never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipCredentials {
    /// `voxline_shared::sidecar_link::phone_accounts::username`.
    pub username: String,
    pub realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub password_set_at: String,
}

impl SipCredentials {
    /// The account of `username` with `password`, set at `now`.
    pub fn new(username: String, realm: &str, password: &str, now: String) -> SipCredentials {
        use voxline_shared::sip_digest::{ha1, Algorithm};
        SipCredentials {
            ha1_md5: ha1(Algorithm::Md5, &username, realm, password),
            ha1_sha256: ha1(Algorithm::Sha256, &username, realm, password),
            username,
            realm: realm.to_string(),
            password_set_at: now,
        }
    }

    /// The stored HA1 an algorithm starts from.
    pub fn ha1_for(&self, alg: voxline_shared::sip_digest::Algorithm) -> &str {
        match alg.base() {
            voxline_shared::sip_digest::Algorithm::Sha256 => &self.ha1_sha256,
            _ => &self.ha1_md5,
        }
    }

    /// What the admin API shows: never an HA1.
    pub fn to_public(&self) -> Value {
        json!({
            "username": self.username,
            "realm": self.realm,
            "password_set_at": self.password_set_at,
        })
    }
}

impl DirectoryUser {
    pub fn to_public(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["object"] = json!("directory_user");
        v["sip"] = self
            .sip
            .as_ref()
            .map_or(Value::Null, SipCredentials::to_public);
        v["registrations"] = json!([]);
        v
    }

    /// How a sidecar rings this person (issue 16): their extension, their
    /// `callerID` as the display name, the default ring time; `forward_number`
    /// when the call may forward, `voicemail` when a call nobody answered
    /// goes to their voicemail.
    pub fn ring_user(
        &self,
        forward_number: Option<String>,
        voicemail: bool,
    ) -> voxline_shared::sidecar_link::RingUser {
        voxline_shared::sidecar_link::RingUser {
            user_pk: self.pk,
            extension: self.fields.extension.clone(),
            display_name: self.fields.caller_id.clone(),
            ring_timeout_seconds: voxline_shared::sidecar_link::DEFAULT_RING_TIMEOUT_SECONDS,
            forward_number,
            voicemail,
        }
    }

    /// [`DirectoryUser::to_public`] with the user's live `bindings`.
    pub fn to_public_with(&self, bindings: &[BindingRow]) -> Value {
        let mut v = self.to_public();
        v["registrations"] = Value::Array(bindings.iter().map(BindingRow::to_public).collect());
        v
    }
}

/// One binding of a user's phone, as the directory stores it (a row of
/// `bindings`) and the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRow {
    pub user_pk: u64,
    pub contact: String,
    pub sidecar_id: String,
    pub region: String,
    pub source: String,
    pub transport: String,
    pub expires_ms: u64,
    pub sip_call_id: String,
    pub cseq: u32,
}

impl BindingRow {
    pub fn to_public(&self) -> Value {
        json!({
            "contact": self.contact,
            "sidecar_id": self.sidecar_id,
            "region": self.region,
            "source": self.source,
            "transport": self.transport,
            "expires_at": crate::ids::rfc3339_ms(self.expires_ms),
        })
    }
}

/// What the admin API sets on a call queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFields {
    pub name: String,
    pub extension: String,
    /// Asterisk's word (`ringall`, `leastrecent`, `fewestcalls`, `random`,
    /// `rrmemory`, `linear`).
    pub strategy: String,
    pub musiconhold: String,
    /// Seconds a member rings.
    pub timeout: u32,
    /// Seconds before the next member is tried.
    pub retry: u32,
    pub wrapuptime: u32,
    /// 0: unlimited.
    pub maxlen: u32,
    pub joinempty: bool,
    pub leavewhenempty: bool,
    pub ringinuse: bool,
    /// Users (`pk`) in the queue, in order.
    #[serde(default)]
    pub members: Vec<u64>,
    /// The longest a caller waits before the overflow (issue 16).
    #[serde(default = "default_max_wait_seconds")]
    pub max_wait_seconds: u32,
    /// Say a waiting caller's position every this many seconds (0: never).
    #[serde(default)]
    pub announce_every_seconds: u32,
    /// What happens to a caller nobody answered in `max_wait_seconds`.
    #[serde(default)]
    pub overflow: QueueOverflowRule,
}

/// A queue's `max_wait_seconds` when not set (queues stored before it too).
pub const DEFAULT_MAX_WAIT_SECONDS: u32 = 300;

fn default_max_wait_seconds() -> u32 {
    DEFAULT_MAX_WAIT_SECONDS
}

/// A queue's overflow (issue 16): JSON `{"kind": "agent", "agent_id"}`,
/// `{"kind": "voicemail"}` or `{"kind": "hangup"}` (the default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueOverflowRule {
    /// The tenant's AI agent answers the caller.
    Agent { agent_id: String },
    /// The caller leaves a message (the call's recording).
    Voicemail,
    /// The call ends (`no_answer`, reason `queue_timeout`).
    #[default]
    Hangup,
}

impl QueueOverflowRule {
    pub const KINDS: [&'static str; 3] = ["agent", "voicemail", "hangup"];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryQueue {
    pub pk: u64,
    #[serde(flatten)]
    pub fields: QueueFields,
    pub created_at: String,
    pub updated_at: String,
}

impl DirectoryQueue {
    pub fn to_public(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["object"] = json!("queue");
        v
    }
}

/// The two kinds of Voice360 `X-API-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum V360KeyKind {
    /// One user's own profile, numbers and texts.
    User,
    /// The whole account (`v360_dev_...`).
    Developer,
}

/// A Voice360 API key, stored by the SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V360Key {
    /// `v360k_<hex>`: names the key for listing and revoking.
    pub id: String,
    pub hash: String,
    pub kind: V360KeyKind,
    /// The user a user key belongs to.
    #[serde(default)]
    pub user_pk: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    pub created_at: String,
}

impl V360Key {
    /// What the admin API shows: never the hash.
    pub fn to_public(&self) -> Value {
        json!({
            "object": "voice360_key",
            "id": self.id,
            "kind": self.kind,
            "user_pk": self.user_pk,
            "name": self.name,
            "created_at": self.created_at,
        })
    }
}
