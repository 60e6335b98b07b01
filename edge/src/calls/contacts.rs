//! A tenant's contacts in its call store: one row per contact, beside its
//! calls and messages, for the same reasons as messages (`calls::messages`):
//! the store is the one writer of the tenant's records and owns the outbox
//! their events leave through. Phone uniqueness and the bound on their
//! number are decided here, in the object, so two requests cannot both pass.
//!
//! This file: what the store is asked and answers about contacts; the
//! operations themselves are `calls::store`'s (`create_contact`,
//! `update_contact`, `delete_contact`), each synchronous from its first read
//! to its last write (no await): one implicit transaction in the Durable
//! Object, the change and its event together.

use crate::contacts::ContactRecord;
use serde::{Deserialize, Serialize};

/// What a listing of contacts asks for: newest first, after a cursor, at
/// most `limit`, optionally the one with this phone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactFilter {
    #[serde(default)]
    pub phone: Option<String>,
    pub after_id: Option<String>,
    pub limit: u32,
}

/// What became of a new contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ContactCreated {
    Created {
        record: ContactRecord,
    },
    /// Another contact of the tenant has this phone.
    PhoneTaken {
        contact_id: String,
    },
    /// The tenant has `contacts::MAX_CONTACTS` already.
    Full,
}

/// What became of a change to a contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ContactUpdated {
    /// Applied (`updated_fields` empty: nothing changed, no event).
    Updated {
        record: ContactRecord,
        updated_fields: Vec<String>,
    },
    NotFound,
    /// Another contact of the tenant has the new phone.
    PhoneTaken {
        contact_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::store::memory::test_calls;
    use crate::calls::store::{
        create_contact, delete_contact, update_contact, CallRows, Calls,
        CONTACT_COUNT_KEY as COUNT_KEY,
    };
    use crate::contacts::{test_contact, FieldChange};
    use crate::contacts::{ContactPatch, MAX_CONTACTS};
    use futures::executor::block_on;
    use serde_json::Value;

    /// The outbox: (event type, payload data).
    fn events(rows: &impl CallRows) -> Vec<(String, Value)> {
        rows.events(100)
            .unwrap()
            .into_iter()
            .map(|(_, e)| {
                let p: Value = serde_json::from_str(&e.payload).unwrap();
                assert_eq!(p["type"], e.event_type.as_str());
                assert_eq!(e.call_id, p["data"]["id"].as_str().unwrap());
                (e.event_type.to_string(), p["data"].clone())
            })
            .collect()
    }

    #[test]
    fn a_phone_belongs_to_one_contact_of_a_tenant() {
        let calls = test_calls();
        let a = test_contact("con_00000000000001", "+15551234567");
        let b = test_contact("con_00000000000002", "+15551234567");
        let created = block_on(calls.create_contact("ten_1", &a)).unwrap();
        assert_eq!(created, ContactCreated::Created { record: a.clone() });
        assert_eq!(
            block_on(calls.create_contact("ten_1", &b)).unwrap(),
            ContactCreated::PhoneTaken {
                contact_id: a.id.clone()
            }
        );
        // Another tenant's address book is its own.
        assert!(matches!(
            block_on(calls.create_contact("ten_2", &b)).unwrap(),
            ContactCreated::Created { .. }
        ));
        // Moving another contact onto the phone is refused too; onto its own, fine.
        let c = test_contact("con_00000000000003", "+15550000003");
        block_on(calls.create_contact("ten_1", &c)).unwrap();
        let onto = |phone: &str| ContactPatch {
            phone: Some(phone.into()),
            ..ContactPatch::default()
        };
        assert_eq!(
            block_on(calls.update_contact("ten_1", &c.id, &onto("+15551234567"))).unwrap(),
            ContactUpdated::PhoneTaken {
                contact_id: a.id.clone()
            }
        );
        let same = block_on(calls.update_contact("ten_1", &c.id, &onto("+15550000003"))).unwrap();
        assert!(
            matches!(&same, ContactUpdated::Updated { updated_fields, .. } if updated_fields.is_empty()),
            "{same:?}"
        );
        // Once deleted, the phone is free again.
        block_on(calls.delete_contact("ten_1", &a.id)).unwrap();
        assert!(matches!(
            block_on(calls.create_contact("ten_1", &b)).unwrap(),
            ContactCreated::Created { .. }
        ));
    }

    #[test]
    fn a_tenant_keeps_at_most_max_contacts() {
        let calls = test_calls();
        let rows = calls.rows("ten_1");
        // As if MAX_CONTACTS - 1 were stored (the bound reads the counter).
        rows.put_value(COUNT_KEY, &(MAX_CONTACTS - 1).to_string())
            .unwrap();
        let last = test_contact("con_00000000000001", "+15550000001");
        assert!(matches!(
            create_contact(&*rows, last.clone(), 1).unwrap(),
            ContactCreated::Created { .. }
        ));
        let over = test_contact("con_00000000000002", "+15550000002");
        assert_eq!(
            create_contact(&*rows, over.clone(), 2).unwrap(),
            ContactCreated::Full
        );
        assert!(rows.contact(&over.id).unwrap().is_none());
        // A deletion makes room.
        delete_contact(&*rows, &last.id, 3).unwrap();
        assert!(matches!(
            create_contact(&*rows, over, 4).unwrap(),
            ContactCreated::Created { .. }
        ));
    }

    #[test]
    fn each_change_writes_its_event_with_the_row() {
        let calls = test_calls();
        let rows = calls.rows("ten_1");
        let c = test_contact("con_00000000000001", "+15551234567");
        create_contact(&*rows, c.clone(), 1).unwrap();
        let patch = ContactPatch {
            first_name: FieldChange::Set("Jane".into()),
            email: FieldChange::Clear,
            ..ContactPatch::default()
        };
        let updated = update_contact(&*rows, &c.id, &patch, 2).unwrap();
        let ContactUpdated::Updated {
            record,
            updated_fields,
        } = updated
        else {
            panic!("{updated:?}")
        };
        assert_eq!(updated_fields, ["first_name", "email"]);
        assert_eq!(rows.contact(&c.id).unwrap(), Some(record.clone()));
        // No change: no event.
        update_contact(&*rows, &c.id, &patch, 3).unwrap();
        assert_eq!(
            update_contact(&*rows, "con_00000000000009", &patch, 3).unwrap(),
            ContactUpdated::NotFound
        );
        assert_eq!(delete_contact(&*rows, &c.id, 4).unwrap(), Some(record));
        assert_eq!(delete_contact(&*rows, &c.id, 5).unwrap(), None);
        assert!(rows.contact(&c.id).unwrap().is_none());
        let events = events(&*rows);
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            ["contact.created", "contact.updated", "contact.deleted"]
        );
        assert_eq!(events[0].1["first_name"], "John");
        assert_eq!(
            events[1].1["updated_fields"],
            serde_json::json!(["first_name", "email"])
        );
        assert_eq!(
            (events[1].1["first_name"].as_str(), &events[1].1["email"]),
            (Some("Jane"), &Value::Null)
        );
        assert!(events[0].1.get("updated_fields").is_none());
        assert_eq!(events[2].1["phone"], "+15551234567");
    }

    #[test]
    fn contacts_list_newest_first_after_a_cursor_and_by_phone() {
        let calls = test_calls();
        for (id, phone) in [
            ("con_00000000000003", "+15550000003"),
            ("con_00000000000001", "+15550000001"),
            ("con_00000000000002", "+15550000002"),
        ] {
            block_on(calls.create_contact("ten_1", &test_contact(id, phone))).unwrap();
        }
        let ids = |f: ContactFilter| -> Vec<String> {
            block_on(calls.list_contacts("ten_1", &f))
                .unwrap()
                .iter()
                .map(|r| {
                    assert!(r.get("metadata").is_none());
                    r["id"].as_str().unwrap().to_string()
                })
                .collect()
        };
        let page = |after: Option<&str>| ContactFilter {
            phone: None,
            after_id: after.map(String::from),
            limit: 2,
        };
        assert_eq!(
            ids(page(None)),
            ["con_00000000000001", "con_00000000000002"]
        );
        assert_eq!(
            ids(page(Some("con_00000000000002"))),
            ["con_00000000000003"]
        );
        let by_phone = ContactFilter {
            phone: Some("+15550000002".into()),
            after_id: None,
            limit: 10,
        };
        assert_eq!(ids(by_phone), ["con_00000000000002"]);
        assert_eq!(
            block_on(calls.get_contact("ten_1", "con_00000000000003"))
                .unwrap()
                .map(|c| c.phone),
            Some("+15550000003".into())
        );
        assert_eq!(
            block_on(calls.get_contact("ten_2", "con_00000000000003")).unwrap(),
            None
        );
    }
}
