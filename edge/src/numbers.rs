//! A tenant's phone numbers (DIDs): the numbers its calls and texts come from
//! and the numbers people call and text it on. Configuration, so KV
//! (`number/{e164}`, global: a number is one tenant's), written by the admin
//! API (`/admin/tenants/{tenant}/numbers/{e164}`); who holds a number is
//! decided exactly by a claim in a Durable Object, never by reading KV back.
//!
//! Where a number leads (`route`) is read on every inbound call or text, so a
//! change may take up to a minute (KV staleness) to reach every location.

use serde::{Deserialize, Serialize};

/// KV key layout of numbers.
pub mod keys {
    /// A number's record, by its E.164 form (`+` and digits): the lookup an
    /// inbound call or text makes.
    pub fn number(e164: &str) -> String {
        format!("number/{e164}")
    }
    /// The tenant's index entry for a number (listing; holds no data).
    pub fn tenant_number(tid: &str, e164: &str) -> String {
        format!("numberid/{tid}/{e164}")
    }
    pub fn tenant_numbers_prefix(tid: &str) -> String {
        format!("numberid/{tid}/")
    }
}

/// Whether a number can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NumberStatus {
    /// In service: calls and texts to and from it work.
    #[default]
    Active,
    /// Held but out of service: inbound is refused, nothing is sent from it.
    Inactive,
    /// Being ported in from another carrier: not yet in service.
    Porting,
}

impl NumberStatus {
    pub const NAMES: [&'static str; 3] = ["active", "inactive", "porting"];

    pub fn parse(s: &str) -> Option<NumberStatus> {
        match s {
            "active" => Some(NumberStatus::Active),
            "inactive" => Some(NumberStatus::Inactive),
            "porting" => Some(NumberStatus::Porting),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NumberStatus::Active => "active",
            NumberStatus::Inactive => "inactive",
            NumberStatus::Porting => "porting",
        }
    }
}

/// Where calls to a number go. JSON: `{"kind": "agent", "agent_id": ...}`,
/// `{"kind": "user", "user_id": 12}`, `{"kind": "queue", "queue_id": 3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NumberRoute {
    /// An AI agent of the tenant answers.
    Agent { agent_id: String },
    /// A person (a Voice360 user, by `pk`): their phones ring.
    User { user_id: u64 },
    /// A call queue (by `pk`).
    Queue { queue_id: u64 },
}

/// One phone number of a tenant (`number/{e164}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneNumber {
    /// E.164: `+` and 7-15 digits (`api::validate::check_e164`).
    pub number: String,
    /// A small integer naming the number in the tenant (Voice360's `pk`),
    /// allocated once per number by the tenant's directory.
    #[serde(default)]
    pub pk: u64,
    pub tenant_id: String,
    /// A label for people (`"Main Line"`).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: NumberStatus,
    /// Where inbound calls go; `None`: inbound calls are refused.
    #[serde(default)]
    pub route: Option<NumberRoute>,
    /// Texts may be sent from and received on it.
    #[serde(default)]
    pub sms_enabled: bool,
    #[serde(default)]
    pub mms_enabled: bool,
    /// The user (`pk`) who receives its texts (Voice360's `sms_assigned_user_id`).
    #[serde(default)]
    pub sms_user_id: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
}

impl PhoneNumber {
    /// Texts can be sent from it now.
    pub fn can_send_text(&self) -> bool {
        self.status == NumberStatus::Active && self.sms_enabled
    }

    pub fn to_public(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        v["object"] = serde_json::json!("phone_number");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_number_reads_with_its_defaults_and_routes_are_tagged() {
        let n: PhoneNumber = serde_json::from_value(json!({
            "number": "+14155550100", "tenant_id": "acme",
            "created_at": "2026-12-04T00:00:00Z", "updated_at": "2026-12-04T00:00:00Z",
            "route": {"kind": "queue", "queue_id": 3}
        }))
        .unwrap();
        assert_eq!(n.status, NumberStatus::Active);
        assert!(!n.can_send_text(), "texts need sms_enabled");
        assert_eq!(n.route, Some(NumberRoute::Queue { queue_id: 3 }));
        let v = n.to_public();
        assert_eq!(v["object"], "phone_number");
        assert_eq!(v["route"], json!({"kind": "queue", "queue_id": 3}));
        assert_eq!(keys::number("+14155550100"), "number/+14155550100");
    }
}
