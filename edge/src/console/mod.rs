//! The operator console: one HTML page and its script and style sheet,
//! compiled into the Worker (`include_str!`), served at `GET /console` and
//! `GET /console/{asset}`. The page holds no data: its script calls the
//! JSON API with the credentials the user typed (kept in `sessionStorage`,
//! sent as `Authorization: Bearer`, never in a URL), so nothing here reads
//! storage or needs a credential. Every answer carries a strict
//! Content-Security-Policy: scripts, styles and connections to this origin
//! only, media from `blob:` (the recording, fetched with the key), no
//! framing, no inline script.
//!
//! A leaf: it imports only [`crate::http`] and [`crate::error`] (and the
//! shared call statuses and engine kinds).

use crate::error::{ApiError, ErrorCode};
use crate::http::ApiResponse;
use voxline_shared::{CallStatus, EngineKind};

/// The page (`GET /console`).
const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Every console answer's policy. `blob:` for media: the recording is
/// fetched with the API key and played from an object URL. No `unsafe-inline`:
/// the page's script and style are files, and the SVG plots are built as DOM
/// nodes, with attribute styles only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; \
form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The assets under `/console/`: (name, content type, body).
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("app.css", "text/css; charset=utf-8", APP_CSS),
];

fn with_security_headers(resp: ApiResponse, content_type: &str) -> ApiResponse {
    resp.with_header("Content-Type", content_type)
        .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("X-Frame-Options", "DENY")
}

fn text(body: &str) -> ApiResponse {
    ApiResponse {
        status: 200,
        headers: Vec::new(),
        body: body.to_string(),
        error_code: None,
        stored_object: None,
    }
}

/// `GET /console`: the page (every view of the console is this page; the
/// view is in the URL's fragment, `#/calls`, `#/calls/{id}`, ...).
pub fn page() -> ApiResponse {
    with_security_headers(text(&render_page()), "text/html; charset=utf-8")
}

/// The page with what the code knows filled in: the call statuses of the
/// calls list's filter and the engines of the agent form (so they cannot
/// drift from [`CallStatus::ALL`] and [`EngineKind::NAMES`]).
pub fn render_page() -> String {
    let options = |names: &mut dyn Iterator<Item = &str>| -> String {
        names
            .map(|s| format!("<option value=\"{s}\">{s}</option>"))
            .collect()
    };
    INDEX_HTML
        .replace(
            "<!--STATUS_OPTIONS-->",
            &options(&mut CallStatus::ALL.iter().map(|s| s.as_str())),
        )
        .replace(
            "<!--ENGINE_OPTIONS-->",
            &options(&mut EngineKind::NAMES.iter().copied()),
        )
}

/// `GET /console/{asset}`: the script or the style sheet; 404 `not_found` otherwise.
pub fn asset(name: &str) -> Result<ApiResponse, ApiError> {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => Ok(with_security_headers(text(body), content_type)),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no console asset '{name}'; assets: app.js, app.css"),
        )),
    }
}

#[cfg(test)]
mod tests;
