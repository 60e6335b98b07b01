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
}

impl DirectoryUser {
    pub fn to_public(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["object"] = json!("directory_user");
        v
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
