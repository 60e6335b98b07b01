//! Listings: the limit, cursor and filter query parameters and the `{"data": [...]}` page
//! shared by every list route.

use crate::limits::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};

use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::ApiResponse;
use crate::store::Kv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::api::env::{Env, Result};

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ListCursor {
    /// The last id of the page before.
    k: String,
    /// The status filter it was issued for.
    f: String,
}

/// A listing's query string: each of `names` at most once, nothing else
/// (`invalid_parameter` naming the parameter).
pub(crate) fn parse_query_params<const N: usize>(
    query: &str,
    names: [&str; N],
) -> Result<[Option<String>; N]> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let Some(slot) = names.iter().position(|n| *n == k).map(|i| &mut values[i]) else {
            return Err(ApiError::field(
                ErrorCode::InvalidParameter,
                &k,
                format!(
                    "unknown query parameter '{}'; allowed: {}",
                    k.chars().take(64).collect::<String>(),
                    names.join(", ")
                ),
            ));
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(ApiError::field(
                ErrorCode::InvalidParameter,
                &k,
                format!("'{k}' is given twice"),
            ));
        }
    }
    Ok(values)
}

/// A comma-separated list filter (`status=a,b`): absent, no filter; given, one
/// or more of `allowed`, exactly (`status=` or `status=a,,b` is a mistake, not
/// "everything").
pub(crate) fn parse_list_filter(
    name: &str,
    text: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<String>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|s| {
            if allowed.contains(&s) {
                Ok(s.to_string())
            } else {
                Err(ApiError::field(
                    ErrorCode::InvalidParameter,
                    name,
                    format!(
                        "{name} must be one or more of {} (comma-separated)",
                        allowed.join(", ")
                    ),
                ))
            }
        })
        .collect()
}

/// `limit` of a listing: 1..=LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT when absent.
pub(crate) fn parse_list_limit(limit: Option<String>) -> Result<u32> {
    match limit {
        None => Ok(LIST_LIMIT_DEFAULT),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=LIST_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidParameter,
                    "limit",
                    format!("limit must be an integer from 1 to {LIST_LIMIT_MAX}"),
                )
            }),
    }
}

/// A listing cursor: where the page before ended, with the filters it was issued for.
pub(crate) fn encode_list_cursor(kv_cursor: String, filter_text: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&ListCursor {
            k: kv_cursor,
            f: filter_text.to_string(),
        })
        .unwrap_or_default(),
    )
}

/// Where the page before ended, if `cursor` was issued by us for these same filters.
pub(crate) fn decode_list_cursor(
    cursor: Option<String>,
    filter_text: &str,
) -> Result<Option<String>> {
    let Some(c) = cursor else { return Ok(None) };
    let bad = || {
        ApiError::field(
            ErrorCode::InvalidCursor,
            "cursor",
            "cursor was not issued by this API for this query",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(c.as_bytes()).map_err(|_| bad())?;
    let cur: ListCursor = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if cur.f != filter_text || cur.k.is_empty() {
        return Err(bad());
    }
    Ok(Some(cur.k))
}

pub(crate) fn list_response(data: Vec<Value>) -> ApiResponse {
    ApiResponse::json(
        200,
        &json!({"object": "list", "data": data, "has_more": false, "next_cursor": null}),
    )
}

/// Reads every record under a small admin prefix (agents, keys, webhooks: a
/// handful per tenant). Call records never go through here.
pub(crate) async fn list_values<K: Kv, D: DispatchQueues, T: serde::de::DeserializeOwned>(
    env: &Env<'_, K, D>,
    prefix: &str,
) -> Result<Vec<T>> {
    Ok(crate::store::get_all_json(env.kv, prefix).await?)
}
