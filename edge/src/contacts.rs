//! Contacts: a tenant's address book (a phone number, optionally a name and
//! an email, and the client's metadata), one row per contact in its call
//! store, with the webhook events their changes cause (`contact.created`,
//! `contact.updated`, `contact.deleted`; Voice360's `CONTACT_*`). Data the
//! call store, the webhooks and the API all hold, so a leaf.

use crate::ids::rfc3339_ms;
use crate::model::{public_record_json, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most contacts a tenant keeps (`contacts_full` beyond).
pub const MAX_CONTACTS: u64 = 100_000;
/// Longest `first_name` / `last_name`, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest `email`, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// One contact of a tenant: a row in its call store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// `con_<hex>`, sorting newest first.
    pub id: String,
    /// E.164, unique among the tenant's contacts.
    pub phone: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    pub created_at: String,
    pub updated_at: String,
}

impl ContactRecord {
    /// The API's and the webhooks' shape: `object: "contact"`, `metadata`
    /// as the client wrote it.
    pub fn to_public_json(&self) -> String {
        public_record_json(self, "contact", &[], &[], self.metadata.as_ref())
    }

    pub fn to_public(&self) -> Value {
        serde_json::from_str(&self.to_public_json()).unwrap_or(Value::Null)
    }

    /// A listing row: the record without its metadata.
    pub fn summary(&self) -> Value {
        let mut v = self.to_public();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
        }
        v
    }
}

/// What a `PATCH` does to one optional field: leave it (absent), clear it
/// (`null`), or set it. Serialized as such (not as an `Option<Option<_>>`,
/// which JSON cannot tell apart) on its way to the call store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldChange<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone + PartialEq> FieldChange<T> {
    /// Applies the change to `slot`; true when the value changed.
    fn apply(&self, slot: &mut Option<T>) -> bool {
        let new = match self {
            FieldChange::Keep => return false,
            FieldChange::Clear => None,
            FieldChange::Set(v) => Some(v.clone()),
        };
        if *slot == new {
            return false;
        }
        *slot = new;
        true
    }
}

/// A validated `PATCH /v1/contacts/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactPatch {
    /// E.164; the phone cannot be cleared.
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub first_name: FieldChange<String>,
    #[serde(default)]
    pub last_name: FieldChange<String>,
    #[serde(default)]
    pub email: FieldChange<String>,
    #[serde(default)]
    pub metadata: FieldChange<Metadata>,
}

/// The fields a contact has, in the order `updated_fields` lists them.
pub const CONTACT_FIELDS: [&str; 5] = ["phone", "first_name", "last_name", "email", "metadata"];

/// Applies `patch` at `at_ms`: the names of the fields whose value changed
/// (in [`CONTACT_FIELDS`] order; empty: nothing changed, `updated_at` kept).
pub fn apply_patch(
    record: &mut ContactRecord,
    patch: &ContactPatch,
    at_ms: u64,
) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if let Some(phone) = &patch.phone {
        if *phone != record.phone {
            record.phone.clone_from(phone);
            changed.push("phone");
        }
    }
    if patch.first_name.apply(&mut record.first_name) {
        changed.push("first_name");
    }
    if patch.last_name.apply(&mut record.last_name) {
        changed.push("last_name");
    }
    if patch.email.apply(&mut record.email) {
        changed.push("email");
    }
    if patch.metadata.apply(&mut record.metadata) {
        changed.push("metadata");
    }
    if !changed.is_empty() {
        record.updated_at = rfc3339_ms(at_ms);
    }
    changed
}

/// What happened to a contact that endpoints hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactEvent {
    Created,
    Updated,
    Deleted,
}

/// A plain contact for unit tests.
#[cfg(test)]
pub fn test_contact(id: &str, phone: &str) -> ContactRecord {
    ContactRecord {
        id: id.into(),
        phone: phone.into(),
        first_name: Some("John".into()),
        last_name: Some("Doe".into()),
        email: Some("john@example.com".into()),
        metadata: None,
        created_at: rfc3339_ms(0),
        updated_at: rfc3339_ms(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_reports_only_the_fields_whose_value_changed() {
        let mut c = test_contact("con_00000000000001", "+15551234567");
        let patch = ContactPatch {
            phone: Some("+15551234567".into()),
            first_name: FieldChange::Set("Jane".into()),
            last_name: FieldChange::Set("Doe".into()),
            email: FieldChange::Clear,
            metadata: FieldChange::Keep,
        };
        assert_eq!(apply_patch(&mut c, &patch, 5), ["first_name", "email"]);
        assert_eq!(
            (c.first_name.as_deref(), c.email.as_deref()),
            (Some("Jane"), None)
        );
        assert_eq!(c.updated_at, rfc3339_ms(5));
        // The same patch again changes nothing, not even `updated_at`.
        assert!(apply_patch(&mut c, &patch, 9).is_empty());
        assert_eq!(c.updated_at, rfc3339_ms(5));
    }

    #[test]
    fn a_patch_keeps_absent_and_null_apart_on_its_way_to_the_store() {
        let patch = ContactPatch {
            email: FieldChange::Clear,
            first_name: FieldChange::Set("A".into()),
            ..ContactPatch::default()
        };
        let text = serde_json::to_string(&patch).unwrap();
        let back: ContactPatch = serde_json::from_str(&text).unwrap();
        assert_eq!(back, patch);
        assert_eq!(back.last_name, FieldChange::Keep);
    }

    #[test]
    fn the_public_record_is_a_contact_with_its_metadata_text() {
        let mut c = test_contact("con_00000000000001", "+15551234567");
        c.metadata = Metadata::from_json_text(r#"{"b": 1.50, "a": 1}"#);
        let text = c.to_public_json();
        assert!(text.contains(r#""metadata":{"b":1.50,"a":1}"#), "{text}");
        assert_eq!(c.to_public()["object"], "contact");
        assert!(c.summary().get("metadata").is_none());
        let back: ContactRecord =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
