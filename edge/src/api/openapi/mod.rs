//! The OpenAPI 3.1 description served at `GET /v1/openapi.json`.
//!
//! What the code already knows is generated from it, so the document cannot
//! drift: the operations come from [`router::ROUTES`] (an exhaustive match on
//! [`RouteId`] means a new route does not compile until it is documented), the
//! error codes and their statuses from [`ErrorCode::ALL`], call statuses from
//! [`CallStatus::ALL`], engines from [`Engine::NAMES`], webhook events from
//! [`WEBHOOK_EVENTS`], and the limits from [`crate::limits`] (which the
//! validators read too) and the modules that own the rest. Descriptions are
//! written here; the tests (`tests.rs`, with their own schema checker in
//! `checker.rs`) probe every documented limit against the real validators
//! and check every response of every route against its schema.
//!
//! Files by job: `patterns` (a leaf), `builders`, `schemas` (components),
//! `operations` (one per route), this file (the document).
//!
//! [`router::ROUTES`]: crate::api::router::ROUTES
//! [`RouteId`]: crate::api::router::RouteId
//! [`ErrorCode::ALL`]: crate::error::ErrorCode::ALL
//! [`CallStatus::ALL`]: voxline_shared::CallStatus::ALL
//! [`Engine::NAMES`]: crate::model::Engine::NAMES
//! [`WEBHOOK_EVENTS`]: crate::webhooks::events::WEBHOOK_EVENTS

mod builders;
mod campaigns;
#[cfg(test)]
mod checker;
mod codeb;
mod contacts;
mod dialects;
mod directory;
mod operations;
mod patterns;
mod schemas;
#[cfg(test)]
mod tests;
mod voice360;
#[cfg(test)]
mod voice360_tests;

use crate::api::router::ROUTES;
use crate::limits::MAX_BODY_BYTES;
use builders::path_item;
use operations::{operation, webhook_operations};
use schemas::schemas;
use serde_json::{json, Map, Value};

/// The whole document. Cheap enough to build per request (a few hundred nodes).
pub fn spec() -> Value {
    let mut paths = Map::new();
    for (method, pattern, id) in ROUTES {
        let item = paths
            .entry(pattern.to_string())
            .or_insert_with(|| path_item(pattern));
        item[method.to_ascii_lowercase().as_str()] = operation(*id);
    }
    for (path, item) in dialects::paths()
        .into_iter()
        .chain(codeb::paths())
        .chain(voice360::paths())
    {
        paths.insert(path.to_string(), item);
    }
    let mut tags = vec![
        json!({"name": "calls", "description": "Place, inspect and hang up calls. Authenticated with a tenant API key."}),
        json!({"name": "messages", "description": "Send text messages (SMS) from the tenant's numbers and read those sent and received. Authenticated with a tenant API key."}),
        json!({"name": "campaigns", "description": "Campaigns: a list of contacts (JSON or CSV, up to 100,000) dialled by one agent at a pacing rate within a concurrency limit and a calling window; start, pause, resume, cancel, progress counts and a `campaign.completed` webhook. Authenticated with a tenant API key."}),
        json!({"name": "contacts", "description": "The tenant's address book: contacts with a unique phone, a name, an email and your metadata; every change is a webhook event. Authenticated with a tenant API key."}),
        json!({"name": "admin", "description": "Operator API: tenants, agents, API keys, dialect credentials and webhook endpoints. Authenticated with the admin token."}),
        json!({"name": "webhooks", "description": "The tenant's webhook delivery log and redelivery. Authenticated with a tenant API key."}),
        json!({"name": "meta", "description": "Health and this document. No authentication."}),
        json!({"name": "console", "description": "The operator console: its page and assets. No authentication: the page asks for credentials and calls this API with them."}),
    ];
    tags.extend(dialects::tags());
    tags.push(codeb::tag());
    tags.push(voice360::tag());
    let mut security_schemes = json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ak_...",
            "description": "A tenant API key (`ak_` then 32 characters) minted by `POST /admin/tenants/{tenant_id}/api-keys`, sent as `Authorization: Bearer ak_...`.\n\nA key minted with `require_signature: true` must also sign every request: `X-Signature: t=<unix seconds>,v2=<lowercase hex HMAC-SHA256(signing_secret, \"{t}\\n{METHOD}\\n{path and query}\\n{raw body}\")>` (`\\n` is one line feed; the key is the UTF-8 bytes of the `signing_secret` string; `METHOD` in uppercase; `path and query` is the path, then `?` and the query string only when there is one, exactly as sent, e.g. `/v1/calls?status=queued&limit=50`; the body is the exact bytes sent, empty for GET). Missing, malformed, wrong, or `t` more than 300 s from now: 401 `invalid_request_signature`; only a `v1` (the retired body-only scheme): 401 `signature_version_unsupported`. Each signature is accepted once: the same `X-Signature` again within the window is 401 `replayed_request`. Unknown `k=v` entries are ignored, several `v2` may be given, and `v1` beside a `v2` is ignored.\n\nAn unknown or revoked key counts against the client address (`CF-Connecting-IP`; an IPv6 address by its /64): after 20 in 5 minutes (the defaults) further failing requests from it get 429 `too_many_failed_attempts` with `Retry-After` until the window ends; valid keys are not affected."
        },
        "adminBearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "The operator's admin token (the `ADMIN_TOKEN` secret of the Worker), sent as `Authorization: Bearer <token>`. Without that secret the admin API refuses every request. A wrong token counts against the client address (`CF-Connecting-IP`; an IPv6 address by its /64): after 20 in 5 minutes (the defaults) every admin request from it, right token or not, gets 429 `too_many_failed_attempts` with `Retry-After` until the window ends."
        }
    });
    if let Some(m) = security_schemes.as_object_mut() {
        m.extend(dialects::security_schemes());
        m.extend(codeb::security_schemes());
        m.extend(voice360::security_schemes());
    }
    let mut webhooks = webhook_operations();
    if let Some(m) = webhooks.as_object_mut() {
        m.extend(voice360::webhooks());
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "voxline API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Outbound AI phone calls: place a call to a phone number and an AI agent talks.",
            "description": info_description(),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "tags": tags,
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "securitySchemes": security_schemes,
            "schemas": schemas()
        }
    })
}
fn info_description() -> String {
    format!(
        "All request and response bodies are JSON. Request bodies must be sent with \
`Content-Type: application/json`, be at most {MAX_BODY_BYTES} bytes and be a JSON object without \
unknown fields; in them `null` means the same as leaving an optional field out.\n\n\
Every failure has one shape, `{{\"error\": {{\"code\", \"message\", \"field\"}}}}` (see the `Error` schema): \
`code` is stable and machine-readable, `field` names the offending field or query parameter or is null. \
Any path that is not listed here answers 404 `not_found`; a listed path called with another method \
answers 405 `method_not_allowed` with an `Allow` header.\n\n\
Tenant-scoped objects are only visible to their own tenant: another tenant's id answers 404, never 403.\n\n\
The paths tagged `voiceb`, `buildvoiceai` and `calldock` are seed-API dialects: they answer in their \
vendor's shapes (each operation documents its own), not the `Error` schema. So do `codeb` and `voice360` (Voice360's envelope, with its own `error_code`s).\n\n\
`/v1/sidecar/*` is the media sidecars' HMAC-signed sidecar link (see `voxline_shared::sidecar_link`), not part of this API; \
its error codes appear in the `Error` schema's `code` enum."
    )
}

// ---- schema helpers ----
