//! The admin routes for a tenant's saved prompts
//! (`/admin/tenants/{tenant}/prompts/{slug}`): instructions a create request
//! names by slug instead of sending them (CodeB's `systemPrompt: "reminder"`).
//! Configuration, so KV.

use crate::api::env::{Env, Result};
use crate::api::fields::parse_request;
use crate::api::list::{list_response, list_values};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::rfc3339_ms;
use crate::limits::MAX_PROMPT_CHARS;
use crate::model::{keys, SavedPrompt, Tenant};
use crate::store::{get_json, put_json, Kv};

/// Longest slug (CodeB reads a `systemPrompt` of this shape as a slug).
pub const SLUG_MAX: usize = 64;

/// One word of lowercase letters, digits and dashes, not starting with a
/// dash: the shape `dialects::codeb::CreateCall::prompt_slug` looks up.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SLUG_MAX
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn not_found(slug: &str) -> ApiError {
    let shown: String = slug.chars().take(SLUG_MAX).collect();
    ApiError::new(
        ErrorCode::PromptNotFound,
        format!("no saved prompt '{shown}'"),
    )
}

/// `PUT`: creates or replaces the prompt (200 either way, with the prompt).
pub(crate) async fn put_prompt<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    slug: &str,
) -> Result<ApiResponse> {
    if !is_slug(slug) {
        return Err(ApiError::field(
            ErrorCode::InvalidParameter,
            "slug",
            format!("a slug is 1 to {SLUG_MAX} lowercase letters, digits and dashes, not starting with a dash"),
        ));
    }
    let f = parse_request(req, &["text"])?;
    let text = f.str_req("text", MAX_PROMPT_CHARS)?;
    if text.trim().is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "text",
            "text must not be blank",
        ));
    }
    let key = keys::prompt(&tenant.id, slug);
    let now = rfc3339_ms(env.now_ms);
    // Read only to keep `created_at` (shown, never decided on).
    let earlier: Option<SavedPrompt> = get_json(env.kv, &key).await?;
    let prompt = SavedPrompt {
        slug: slug.to_string(),
        text,
        created_at: earlier.map_or_else(|| now.clone(), |p| p.created_at),
        updated_at: now,
    };
    put_json(env.kv, &key, &prompt, None).await?;
    Ok(ApiResponse::json(200, &prompt.to_public()))
}

pub(crate) async fn list_prompts<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let list: Vec<SavedPrompt> = list_values(env, &keys::prompts_prefix(&tenant.id)).await?;
    Ok(list_response(
        list.iter().map(SavedPrompt::to_public).collect(),
    ))
}

pub(crate) async fn get_prompt<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    slug: &str,
) -> Result<ApiResponse> {
    if !is_slug(slug) {
        return Err(not_found(slug));
    }
    let prompt: SavedPrompt = get_json(env.kv, &keys::prompt(&tenant.id, slug))
        .await?
        .ok_or_else(|| not_found(slug))?;
    Ok(ApiResponse::json(200, &prompt.to_public()))
}

/// Idempotent: 200 whether or not it existed.
pub(crate) async fn delete_prompt<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    slug: &str,
) -> Result<ApiResponse> {
    if !is_slug(slug) {
        return Err(not_found(slug));
    }
    env.kv.delete(&keys::prompt(&tenant.id, slug)).await?;
    Ok(ApiResponse::json(
        200,
        &serde_json::json!({"slug": slug, "object": "prompt", "deleted": true}),
    ))
}
