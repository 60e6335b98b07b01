//! The tests' schema checker: the document's components closed (so an
//! undocumented response field fails) and a jsonschema validator over them.

use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;

/// The spec's components with every object schema that lists its
/// properties closed, so a response field the spec does not know fails.
/// (The served spec leaves responses open so clients tolerate additions.)
pub(super) fn closed_components(spec: &Value) -> Value {
    fn close(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                    m.insert("additionalProperties".into(), json!(false));
                }
                m.values_mut().for_each(close);
            }
            Value::Array(a) => a.iter_mut().for_each(close),
            _ => {}
        }
    }
    let mut c = spec["components"].clone();
    close(&mut c["schemas"]);
    c
}

pub(super) struct Checker {
    components: Value,
    cache: RefCell<HashMap<String, jsonschema::Validator>>,
}

impl Checker {
    pub(super) fn new(spec: &Value) -> Checker {
        Checker {
            components: closed_components(spec),
            cache: RefCell::default(),
        }
    }

    /// Validates `instance` against `schema`, whose `$ref`s point into the spec's components.
    pub(super) fn check(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut cache = self.cache.borrow_mut();
        let v = cache.entry(schema.to_string()).or_insert_with(|| {
            let root = json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
                              "components": self.components, "allOf": [schema]});
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
        });
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{e} (at '{}')", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

pub(super) fn matches_pattern(pattern: &str, s: &str) -> bool {
    jsonschema::draft202012::new(&json!({"type": "string", "pattern": pattern}))
        .unwrap()
        .is_valid(&json!(s))
}
