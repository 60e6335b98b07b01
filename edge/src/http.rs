//! Plain request/response values between the Worker glue and the service.

use crate::error::ApiError;
use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    /// The request URL's scheme (`https`, `http`) as the Worker sees it:
    /// Cloudflare sets it from the client's connection. Empty: unknown.
    pub scheme: String,
    pub path: String,
    /// Raw query string without the `?`.
    pub query: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// Other headers the service reads (the sidecar link's `x-voxline-*`), lowercase names.
    pub headers: Vec<(String, String)>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The error code, for the access log.
    pub error_code: Option<&'static str>,
    /// Serve this object-store (R2) object as the body instead of `body`.
    pub stored_object: Option<String>,
}

impl ApiResponse {
    pub fn json(status: u16, body: &Value) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            error_code: None,
            stored_object: None,
        }
    }

    /// A JSON body already serialized (a call, whose metadata is kept as text).
    pub fn json_text(status: u16, body: String) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body,
            error_code: None,
            stored_object: None,
        }
    }

    pub fn error(e: &ApiError) -> ApiResponse {
        ApiResponse {
            status: e.status(),
            headers: Vec::new(),
            body: e.to_json().to_string(),
            error_code: Some(e.code.as_str()),
            stored_object: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body_json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}
