//! The operations and schemas of contacts (`/v1/contacts`) and of their
//! webhook events.

use super::builders::*;
use super::patterns::{E164_PATTERN, EMAIL_PATTERN};
use crate::api::router::RouteId;
use crate::contacts::{MAX_CONTACTS, MAX_EMAIL_CHARS, MAX_NAME_CHARS};
use crate::error::ErrorCode;
use crate::limits::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, MAX_METADATA_BYTES};
use crate::webhooks::events::WebhookEvent;
use serde_json::{json, Map, Value};

/// The operation of a contact route; `None` for every other route.
pub(super) fn operation(id: RouteId) -> Option<Value> {
    use ErrorCode as E;
    let contacts = |id: &str, summary: &str, description: &str| {
        op(id, "contacts", Auth::ApiKey, summary, description)
    };
    let body_errors = [
        E::InvalidValue,
        E::ValueTooLong,
        E::InvalidPhoneNumber,
        E::InvalidEmail,
        E::MetadataTooLarge,
    ];
    Some(match id {
        RouteId::CreateContact => contacts(
            "createContact",
            "Create a contact",
            &format!("Adds a contact to the tenant's address book: 201 with it, and a `contact.created` event (Voice360 endpoints: `CONTACT_CREATED`). `phone` is unique among the tenant's contacts: another contact's is 409 `contact_exists` (decided exactly, in the tenant's Durable Object). A tenant keeps at most {MAX_CONTACTS} contacts (409 `contacts_full`)."),
        )
        .body("CreateContactRequest", true)
        .ok_with_headers(201, "The contact.", "Contact", json!({"Location": {"description": "The contact's URL, `/v1/contacts/{contact_id}`.", "schema": {"type": "string"}}}))
        .errors(&[E::MissingField, E::ContactExists, E::ContactsFull])
        .errors(&body_errors)
        .build(),
        RouteId::ListContacts => contacts(
            "listContacts",
            "List contacts",
            "The tenant's contacts, newest first, as summaries (without `metadata`). Unknown or repeated query parameters are refused with 400 `invalid_parameter`.",
        )
        .query(json!([
            {"name": "phone", "in": "query", "required": false, "description": "Only the contact with this number (E.164, `+` written `%2B`): at most one.",
             "schema": {"type": "string", "pattern": E164_PATTERN}},
            {"name": "limit", "in": "query", "required": false, "description": "Page size.",
             "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}},
            {"name": "cursor", "in": "query", "required": false,
             "description": "`next_cursor` of the previous page; only valid with the same `phone` filter (else 400 `invalid_cursor`).",
             "schema": {"type": "string", "minLength": 1}}
        ]))
        .ok(200, "A page of contacts.", "ContactList")
        .errors(&[E::InvalidParameter, E::InvalidCursor])
        .build(),
        RouteId::GetContact => contacts("getContact", "Get a contact", "One contact of the tenant.")
            .ok(200, "The contact.", "Contact")
            .errors(&[E::ContactNotFound])
            .build(),
        RouteId::UpdateContact => contacts(
            "updateContact",
            "Update a contact",
            "Changes the given fields; `null` clears `first_name`, `last_name`, `email` or `metadata` (`phone` cannot be cleared). When a value changed, a `contact.updated` event names the changed fields in `updated_fields` (Voice360 endpoints: `CONTACT_UPDATED`, when `phone`, a name or `email` changed); a request that changes nothing sends none. A new `phone` that is another contact's is 409 `contact_exists`.",
        )
        .body("UpdateContactRequest", true)
        .ok(200, "The contact as it is now.", "Contact")
        .errors(&[E::ContactNotFound, E::ContactExists])
        .errors(&body_errors)
        .build(),
        RouteId::DeleteContact => contacts(
            "deleteContact",
            "Delete a contact",
            "Removes the contact, with a `contact.deleted` event carrying it as it was (Voice360 endpoints: `CONTACT_DELETED`). Its phone may then be another contact's.",
        )
        .ok(200, "The deleted contact's id.", "ContactDeleted")
        .errors(&[E::ContactNotFound])
        .build(),
        _ => return None,
    })
}

/// A name field: 1 to [`MAX_NAME_CHARS`] characters, not blank, no
/// control characters (as `api::contacts` checks).
fn name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
        "pattern": r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"})
}

fn email() -> Value {
    json!({"type": "string", "maxLength": MAX_EMAIL_CHARS, "pattern": EMAIL_PATTERN})
}

fn phone() -> Value {
    json!({"type": "string", "pattern": E164_PATTERN, "description": "E.164; unique among the tenant's contacts."})
}

fn metadata() -> Value {
    json!({"type": "object", "description": format!("Your own JSON object, returned with the contact and its webhooks; at most {MAX_METADATA_BYTES} bytes serialized.")})
}

pub(super) fn schemas(add: &mut Map<String, Value>) {
    let mut put = |name: &str, v: Value| {
        add.insert(name.to_string(), v);
    };
    let fields = |full: bool| {
        let mut f = vec![
            ("id", id_schema("con")),
            ("object", object_const("contact")),
            ("phone", phone()),
            ("first_name", nullable(name())),
            ("last_name", nullable(name())),
            ("email", nullable(email())),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
        ];
        if full {
            f.push(("metadata", nullable(metadata())));
        }
        f
    };
    put(
        "Contact",
        record("A contact of the tenant's address book.", fields(true)),
    );
    put(
        "ContactSummary",
        record(
            "A contact as listed (`Contact` without `metadata`).",
            fields(false),
        ),
    );
    put(
        "ContactList",
        list_of("A page of contacts, newest first.", "ContactSummary"),
    );
    put(
        "ContactDeleted",
        record(
            "A deleted contact.",
            vec![
                ("id", id_schema("con")),
                ("object", object_const("contact")),
                ("deleted", json!({"const": true})),
            ],
        ),
    );
    let request = |required: &[&str], description: &str| {
        input(
            description,
            vec![
                ("phone", phone()),
                ("first_name", nullable(name())),
                ("last_name", nullable(name())),
                ("email", nullable(email())),
                ("metadata", nullable(metadata())),
            ],
            required,
        )
    };
    put(
        "CreateContactRequest",
        request(&["phone"], "A new contact; null is the same as absent."),
    );
    put(
        "UpdateContactRequest",
        request(
            &[],
            "The fields to change; absent ones are kept, null clears one (not `phone`).",
        ),
    );
    let mut data = fields(true);
    data.push((
        "updated_fields",
        json!({"type": "array", "items": {"type": "string", "enum": crate::contacts::CONTACT_FIELDS},
            "description": "`contact.updated` only: the fields whose value changed, in this order: phone, first_name, last_name, email, metadata."}),
    ));
    let data = json!({"type": "object", "description": "The contact (`contact.deleted`: as it was), and for `contact.updated` `updated_fields`.",
        "required": fields(true).iter().map(|(k, _)| *k).collect::<Vec<_>>(), "properties": props(data)});
    put(
        "WebhookContactEvent",
        record(
            "The body POSTed for the `contact.*` events, signed like every event.",
            vec![
                (
                    "id",
                    json!({"type": "string", "pattern": "^evt_", "description": "Equals the `webhook-id` header."}),
                ),
                (
                    "type",
                    json!({"type": "string", "enum": WebhookEvent::ALL.iter().filter(|e| e.contact_event().is_some()).map(|e| e.as_str()).collect::<Vec<_>>()}),
                ),
                ("timestamp", timestamp()),
                ("data", data),
            ],
        ),
    );
}
