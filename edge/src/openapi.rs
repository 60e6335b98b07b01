//! The OpenAPI 3.1 description served at `GET /v1/openapi.json`.
use serde_json::{json, Value};

pub fn spec() -> Value {
    json!({"openapi": "3.1.0"})
}
