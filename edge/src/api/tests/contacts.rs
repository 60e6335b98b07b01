//! Contacts over the in-memory ports: the five `/v1/contacts` routes, their
//! native webhook events, and the Voice360 `CONTACT_*` bodies.

use super::World;
use crate::http::ApiResponse;
use serde_json::{json, Value};

/// A tenant with an API key and a native endpoint for every event; the
/// outbox emptied.
fn tenant(w: &World) -> (String, String) {
    let (tid, key) = w.tenant(false);
    w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/webhooks"),
        Some(json!({"url": "https://hooks.example.com/c"})),
    );
    w.outbox.take();
    (tid, key)
}

fn call(w: &World, key: &str, method: &str, path: &str, body: Option<Value>) -> ApiResponse {
    w.send(method, path, Some(key), body)
}

/// The native webhook bodies queued since the last call: (type, data).
fn native_events(w: &World) -> Vec<(String, Value)> {
    w.outbox
        .take()
        .into_iter()
        .map(|j| {
            assert_eq!(j.call_id, None, "a contact event is about no call");
            let p: Value = serde_json::from_str(&j.payload).unwrap();
            (j.event_type, p["data"].clone())
        })
        .collect()
}

#[test]
fn a_contact_is_created_read_changed_and_deleted_with_one_event_per_change() {
    let w = World::new();
    let (_tid, key) = tenant(&w);
    let r = call(
        &w,
        &key,
        "POST",
        "/v1/contacts",
        Some(
            json!({"phone": "+15551234567", "first_name": "John", "last_name": "Doe",
                    "email": "john@example.com", "metadata": {"crm": 1.50}}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.body_json();
    let id = c["id"].as_str().unwrap().to_string();
    assert!(crate::ids::is_id(&id, "con"), "{id}");
    assert_eq!(
        super::header(&r, "Location"),
        Some(format!("/v1/contacts/{id}").as_str())
    );
    assert_eq!(
        (
            c["object"].as_str(),
            c["phone"].as_str(),
            c["email"].as_str()
        ),
        (
            Some("contact"),
            Some("+15551234567"),
            Some("john@example.com")
        )
    );
    assert_eq!(c["metadata"], json!({"crm": 1.5}));
    let events = native_events(&w);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "contact.created");
    assert_eq!(events[0].1, c);

    let path = format!("/v1/contacts/{id}");
    let got = call(&w, &key, "GET", &path, None);
    assert_eq!((got.status, got.body_json()), (200, c.clone()));

    // null clears; absent keeps; a value equal to the old one is no change.
    let r = call(
        &w,
        &key,
        "PATCH",
        &path,
        Some(json!({"first_name": "Jane", "email": null, "last_name": "Doe"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let patched = r.body_json();
    assert_eq!(
        (&patched["first_name"], &patched["email"], &patched["phone"]),
        (&json!("Jane"), &Value::Null, &json!("+15551234567"))
    );
    let events = native_events(&w);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "contact.updated");
    assert_eq!(
        events[0].1["updated_fields"],
        json!(["first_name", "email"])
    );
    // Nothing changed: 200, no event.
    let r = call(
        &w,
        &key,
        "PATCH",
        &path,
        Some(json!({"first_name": "Jane"})),
    );
    assert_eq!(r.status, 200);
    assert!(native_events(&w).is_empty());

    let r = call(&w, &key, "DELETE", &path, None);
    assert_eq!(
        (r.status, r.body_json()),
        (200, json!({"id": id, "object": "contact", "deleted": true}))
    );
    let events = native_events(&w);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1["first_name"].as_str()),
        ("contact.deleted", Some("Jane"))
    );
    for method in ["GET", "PATCH", "DELETE"] {
        let body = (method == "PATCH").then(|| json!({"first_name": "X"}));
        let r = call(&w, &key, method, &path, body);
        assert_eq!(
            (r.status, World::code(&r)),
            (404, "contact_not_found".into()),
            "{method}"
        );
    }
    // Not an id of ours, or another tenant's: 404 too.
    let r = call(&w, &key, "GET", "/v1/contacts/con_nothex", None);
    assert_eq!(World::code(&r), "contact_not_found");
    let (_other, other_key) = tenant(&w);
    let mine = call(
        &w,
        &key,
        "POST",
        "/v1/contacts",
        Some(json!({"phone": "+15550000001"})),
    )
    .body_json();
    let r = call(
        &w,
        &other_key,
        "GET",
        &format!("/v1/contacts/{}", mine["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(World::code(&r), "contact_not_found");
}

#[test]
fn fields_are_validated_and_a_phone_is_one_contacts() {
    let w = World::new();
    let (_tid, key) = tenant(&w);
    let post = |body: Value| call(&w, &key, "POST", "/v1/contacts", Some(body));
    for (body, status, code) in [
        (json!({}), 422, "missing_field"),
        (json!({"phone": null}), 422, "missing_field"),
        (json!({"phone": "555-1234"}), 422, "invalid_phone_number"),
        (json!({"phone": 15551234567u64}), 422, "invalid_type"),
        (
            json!({"phone": "+15551234567", "email": "nope"}),
            422,
            "invalid_email",
        ),
        (
            json!({"phone": "+15551234567", "first_name": " "}),
            422,
            "invalid_value",
        ),
        (
            json!({"phone": "+15551234567", "last_name": "x".repeat(101)}),
            422,
            "value_too_long",
        ),
        (
            json!({"phone": "+15551234567", "metadata": "x"}),
            422,
            "invalid_type",
        ),
        (
            json!({"phone": "+15551234567", "nickname": "J"}),
            400,
            "unknown_field",
        ),
    ] {
        let r = post(body.clone());
        assert_eq!((r.status, World::code(&r)), (status, code.into()), "{body}");
    }
    assert!(w.outbox.take().is_empty(), "a refused request has no event");
    let first = post(json!({"phone": "+15551234567"})).body_json();
    let r = post(json!({"phone": "+15551234567", "first_name": "Again"}));
    assert_eq!((r.status, World::code(&r)), (409, "contact_exists".into()));
    assert!(r.body.contains(first["id"].as_str().unwrap()));
    // Moving another contact onto it: 409; clearing the phone: refused.
    let second = post(json!({"phone": "+15550000002"})).body_json();
    let path = format!("/v1/contacts/{}", second["id"].as_str().unwrap());
    let r = call(
        &w,
        &key,
        "PATCH",
        &path,
        Some(json!({"phone": "+15551234567"})),
    );
    assert_eq!((r.status, World::code(&r)), (409, "contact_exists".into()));
    let r = call(&w, &key, "PATCH", &path, Some(json!({"phone": null})));
    assert_eq!((r.status, World::code(&r)), (422, "invalid_value".into()));
    let r = call(&w, &key, "PATCH", &path, Some(json!({"email": "a@b"})));
    assert_eq!((r.status, World::code(&r)), (422, "invalid_email".into()));
}

#[test]
fn the_list_pages_newest_first_and_finds_a_phone() {
    let w = World::new();
    let (_tid, key) = tenant(&w);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            w.now.set(w.now.get() + 1_000);
            call(
                &w,
                &key,
                "POST",
                "/v1/contacts",
                Some(json!({"phone": format!("+1555000000{i}"), "metadata": {"i": i}})),
            )
            .body_json()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let page = |q: &str| call(&w, &key, "GET", &format!("/v1/contacts?{q}"), None);
    let p1 = page("limit=2").body_json();
    let got: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    assert!(p1["data"][0].get("metadata").is_none(), "summaries");
    assert_eq!(p1["has_more"], true);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = page(&format!("limit=2&cursor={cursor}")).body_json();
    assert_eq!(p2["data"][0]["id"], ids[0].as_str());
    assert_eq!(
        (&p2["has_more"], &p2["next_cursor"]),
        (&json!(false), &Value::Null)
    );
    // The cursor is bound to the phone filter.
    let r = page(&format!("phone=%2B15550000001&cursor={cursor}"));
    assert_eq!((r.status, World::code(&r)), (400, "invalid_cursor".into()));
    let one = page("phone=%2B15550000001").body_json();
    assert_eq!(one["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["data"][0]["id"], ids[1].as_str());
    assert_eq!(page("phone=%2B15559999999").body_json()["data"], json!([]));
    for bad in [
        "phone=5550000001",
        "limit=0",
        "order=asc",
        "limit=1&limit=2",
    ] {
        let r = page(bad);
        assert_eq!(
            (r.status, World::code(&r)),
            (400, "invalid_parameter".into()),
            "{bad}"
        );
    }
}

#[test]
fn voice360_endpoints_get_the_documents_contact_events() {
    let w = World::new();
    let (tid, key) = tenant(&w);
    w.admin(
        "PATCH",
        &format!("/admin/tenants/{tid}"),
        Some(json!({"voice360_account": "12345"})),
    );
    let hook = |event: &str| {
        super::dialect_webhooks::endpoint(
            &w,
            &tid,
            json!({"url": format!("https://hooks.example.com/{event}"), "format": "voice360",
                   "voice360_event": event}),
        )
    };
    let hooks = [
        hook("CONTACT_CREATED"),
        hook("CONTACT_UPDATED"),
        hook("CONTACT_DELETED"),
        hook("SMS_SENT"),
    ];
    w.outbox.take();
    let to = |jobs: &[crate::webhooks::delivery::DeliveryJob], i: usize| -> Vec<String> {
        jobs.iter()
            .filter(|j| j.endpoint_id == hooks[i]["id"].as_str().unwrap())
            .map(|j| j.payload.clone())
            .collect()
    };
    let ts = w.now.get() / 1000;
    let c = call(
        &w,
        &key,
        "POST",
        "/v1/contacts",
        Some(
            json!({"phone": "+15551234567", "first_name": "John", "last_name": "Doe",
                    "email": "john@example.com"}),
        ),
    )
    .body_json();
    let id = c["id"].as_str().unwrap();
    let jobs = w.outbox.take();
    // The document's example but for our id and the time.
    assert_eq!(
        to(&jobs, 0),
        [format!(
            r#"{{"event_name":"CONTACT_CREATED","account_id":"12345","timestamp":{ts},"metadata":{{"contact_id":"{id}","phone":"+15551234567","first_name":"John","last_name":"Doe","email":"john@example.com"}}}}"#
        )]
    );
    assert!(to(&jobs, 1).is_empty() && to(&jobs, 2).is_empty() && to(&jobs, 3).is_empty());
    let path = format!("/v1/contacts/{id}");
    call(
        &w,
        &key,
        "PATCH",
        &path,
        Some(json!({"first_name": "Johnny", "email": "johnny@example.com", "metadata": {"a": 1}})),
    );
    let jobs = w.outbox.take();
    assert_eq!(
        to(&jobs, 1),
        [format!(
            r#"{{"event_name":"CONTACT_UPDATED","account_id":"12345","timestamp":{ts},"metadata":{{"contact_id":"{id}","updated_fields":["first_name","email"],"phone":"+15551234567"}}}}"#
        )]
    );
    // A change of metadata alone is no change the document names: nothing sent.
    call(
        &w,
        &key,
        "PATCH",
        &path,
        Some(json!({"metadata": {"a": 2}})),
    );
    let jobs = w.outbox.take();
    assert!(to(&jobs, 1).is_empty(), "{jobs:?}");
    assert_eq!(jobs.len(), 1, "the native endpoint hears it");
    call(&w, &key, "DELETE", &path, None);
    let jobs = w.outbox.take();
    assert_eq!(
        to(&jobs, 2),
        [format!(
            r#"{{"event_name":"CONTACT_DELETED","account_id":"12345","timestamp":{ts},"metadata":{{"contact_id":"{id}","phone":"+15551234567"}}}}"#
        )]
    );
}

#[test]
fn a_dialect_never_meets_a_contact_refusal() {
    use crate::dialects::Refusal;
    use crate::error::{ApiError, ErrorCode};
    for code in [
        ErrorCode::ContactNotFound,
        ErrorCode::ContactExists,
        ErrorCode::ContactsFull,
    ] {
        assert_eq!(
            Refusal::from_native(&ApiError::new(code, "x")),
            Refusal::Internal
        );
    }
}
