//! The contact routes: `POST /v1/contacts`, `GET /v1/contacts/{contact_id}`,
//! `GET /v1/contacts` (list, optionally by `phone`), `PATCH
//! /v1/contacts/{contact_id}`, `DELETE /v1/contacts/{contact_id}`. The
//! tenant's call store keeps them and decides phone uniqueness and the bound.

use crate::api::fields::{parse_request, Fields};
use crate::api::list::{
    decode_list_cursor, encode_list_cursor, parse_list_limit, parse_query_params,
};
use crate::api::validate;
use crate::calls::contacts::{ContactCreated, ContactFilter, ContactUpdated};
use crate::contacts::{
    ContactPatch, ContactRecord, FieldChange, MAX_CONTACTS, MAX_EMAIL_CHARS, MAX_NAME_CHARS,
};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::model::Tenant;
use crate::store::Kv;
use serde_json::json;

use crate::api::env::{Env, Result};

/// The fields of `POST /v1/contacts` and `PATCH /v1/contacts/{id}`.
pub const CONTACT_FIELDS: &[&str] = &["phone", "first_name", "last_name", "email", "metadata"];

/// A name: at most [`MAX_NAME_CHARS`], not blank, no control characters.
fn name(f: &Fields, field: &str) -> Result<Option<String>> {
    let v = f.str_opt(field, MAX_NAME_CHARS)?;
    if let Some(n) = &v {
        if n.trim().is_empty() || n.chars().any(char::is_control) {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                field,
                format!("'{field}' must not be blank or hold control characters (null clears it)"),
            ));
        }
    }
    Ok(v)
}

fn email(f: &Fields) -> Result<Option<String>> {
    let v = f.str_opt("email", MAX_EMAIL_CHARS)?;
    if let Some(e) = &v {
        validate::check_email(e)?;
    }
    Ok(v)
}

fn phone(f: &Fields) -> Result<Option<String>> {
    // Long enough for any number; check_e164 says what is wrong with it.
    let v = f.str_opt("phone", 32)?;
    if let Some(p) = &v {
        validate::check_e164("phone", p)?;
    }
    Ok(v)
}

/// An optional field of a `PATCH`: absent keeps it, `null` clears it.
fn change<T>(f: &Fields, field: &str, value: Option<T>) -> FieldChange<T> {
    match value {
        Some(v) => FieldChange::Set(v),
        None if f.is_null(field) => FieldChange::Clear,
        None => FieldChange::Keep,
    }
}

/// `POST /v1/contacts`: 201 with the contact.
pub(crate) async fn create_contact<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let f = parse_request(req, CONTACT_FIELDS)?;
    let phone = phone(&f)?
        .ok_or_else(|| ApiError::field(ErrorCode::MissingField, "phone", "'phone' is required"))?;
    let now = rfc3339_ms(env.now_ms);
    let record = ContactRecord {
        id: ids::contact_id(env.now_ms),
        phone,
        first_name: name(&f, "first_name")?,
        last_name: name(&f, "last_name")?,
        email: email(&f)?,
        metadata: validate::metadata(&f, &req.body)?,
        created_at: now.clone(),
        updated_at: now,
    };
    match env.calls.create_contact(&tenant.id, &record).await? {
        ContactCreated::Created { record } => {
            Ok(ApiResponse::json_text(201, record.to_public_json())
                .with_header("Location", format!("/v1/contacts/{}", record.id)))
        }
        ContactCreated::PhoneTaken { contact_id } => Err(phone_taken(&contact_id)),
        ContactCreated::Full => Err(ApiError::new(
            ErrorCode::ContactsFull,
            format!("this tenant keeps {MAX_CONTACTS} contacts already; delete some first"),
        )),
    }
}

fn phone_taken(contact_id: &str) -> ApiError {
    ApiError::field(
        ErrorCode::ContactExists,
        "phone",
        format!("contact {contact_id} has this phone"),
    )
}

fn contact_not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::new(ErrorCode::ContactNotFound, format!("no contact '{shown}'"))
}

/// `id` if it is shaped like a contact id (junk never reaches storage).
fn contact_id(id: &str) -> Result<&str> {
    if ids::is_id(id, "con") {
        Ok(id)
    } else {
        Err(contact_not_found(id))
    }
}

pub(crate) async fn get_contact<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    id: &str,
) -> Result<ApiResponse> {
    let record = env
        .calls
        .get_contact(&tenant.id, contact_id(id)?)
        .await?
        .ok_or_else(|| contact_not_found(id))?;
    Ok(ApiResponse::json_text(200, record.to_public_json()))
}

/// `PATCH /v1/contacts/{id}`: 200 with the contact as it is now. `null`
/// clears an optional field; `phone` cannot be cleared.
pub(crate) async fn update_contact<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    id: &str,
) -> Result<ApiResponse> {
    let id = contact_id(id)?;
    let f = parse_request(req, CONTACT_FIELDS)?;
    if f.is_null("phone") {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "phone",
            "'phone' cannot be cleared; give a new E.164 number",
        ));
    }
    let patch = ContactPatch {
        phone: phone(&f)?,
        first_name: change(&f, "first_name", name(&f, "first_name")?),
        last_name: change(&f, "last_name", name(&f, "last_name")?),
        email: change(&f, "email", email(&f)?),
        metadata: change(&f, "metadata", validate::metadata(&f, &req.body)?),
    };
    match env.calls.update_contact(&tenant.id, id, &patch).await? {
        ContactUpdated::Updated { record, .. } => {
            Ok(ApiResponse::json_text(200, record.to_public_json()))
        }
        ContactUpdated::NotFound => Err(contact_not_found(id)),
        ContactUpdated::PhoneTaken { contact_id } => Err(phone_taken(&contact_id)),
    }
}

/// `DELETE /v1/contacts/{id}`: 200 `{id, object, deleted: true}`.
pub(crate) async fn delete_contact<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    id: &str,
) -> Result<ApiResponse> {
    let record = env
        .calls
        .delete_contact(&tenant.id, contact_id(id)?)
        .await?
        .ok_or_else(|| contact_not_found(id))?;
    Ok(ApiResponse::json(
        200,
        &json!({"id": record.id, "object": "contact", "deleted": true}),
    ))
}

/// `GET /v1/contacts`: newest first, a page at a time, optionally the one
/// with `phone` (E.164).
pub(crate) async fn list_contacts<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let [phone, limit, cursor] = parse_query_params(&req.query, ["phone", "limit", "cursor"])?;
    if let Some(p) = &phone {
        validate::check_e164("phone", p).map_err(|mut e| {
            e.code = ErrorCode::InvalidParameter;
            e
        })?;
    }
    // The cursor is bound to the filter.
    let filter_text = phone.clone().unwrap_or_default();
    let limit = parse_list_limit(limit)?;
    let after_id = decode_list_cursor(cursor, &filter_text)?;
    let filter = ContactFilter {
        phone,
        after_id,
        // One row more than asked tells whether another page follows.
        limit: limit + 1,
    };
    let mut data = env.calls.list_contacts(&tenant.id, &filter).await?;
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_cursor = if has_more {
        data.last()
            .and_then(|r| r["id"].as_str())
            .map(|id| encode_list_cursor(id.to_string(), &filter_text))
    } else {
        None
    };
    Ok(ApiResponse::json(
        200,
        &json!({"object": "list", "data": data, "has_more": has_more, "next_cursor": next_cursor}),
    ))
}
