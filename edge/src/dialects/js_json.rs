//! JSON exactly as JavaScript's `JSON.stringify` writes it, for webhook bodies
//! whose vendor verifies the signature over `JSON.stringify(JSON.parse(body))`
//! (Calldock): the bytes we sign and send must survive that round trip.
//!
//! serde_json's compact writer already agrees with `JSON.stringify` on
//! everything but numbers: no spaces, keys in the order a struct declares them,
//! non-ASCII left as is, the same short escapes (`\b \t \n \f \r \" \\`) and
//! `\u00xx` (lower-case hex) for the other control characters, `/` and
//! U+2028/U+2029 unescaped. Numbers differ: serde_json writes `141.0` and
//! `1e21` where JavaScript writes `141` and `1e+21`, so every non-integer
//! number goes through [`JsNumber`] (ECMAScript `Number::toString`, by the
//! `ryu-js` crate, which the Boa JavaScript engine uses for exactly this).

use serde::ser::Error as _;
use serde::{Serialize, Serializer};

/// A number written as JavaScript writes it; non-finite values as `null`
/// (what `JSON.stringify` does with them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsNumber(pub f64);

/// `JSON.stringify(x)` for one number.
pub fn number(x: f64) -> String {
    if x.is_finite() {
        ryu_js::Buffer::new().format_finite(x).to_string()
    } else {
        "null".to_string()
    }
}

impl Serialize for JsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw =
            serde_json::value::RawValue::from_string(number(self.0)).map_err(S::Error::custom)?;
        raw.serialize(s)
    }
}

/// The compact JSON text of `value` (see the module doc for why it matches
/// `JSON.stringify` when numbers are [`JsNumber`]s or integers).
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_javascript_prints_them() {
        // Expected values are what node prints for `JSON.stringify(x)`.
        for (x, js) in [
            (2.35, "2.35"),
            (141.0, "141"),
            (0.9, "0.9"),
            (0.527, "0.527"),
            (-0.0, "0"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (123456789012345680000.0, "123456789012345680000"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ] {
            assert_eq!(number(x), js, "{x}");
        }
    }

    #[test]
    fn strings_escape_as_javascript_does() {
        #[derive(Serialize)]
        struct Body<'a> {
            b: &'a str,
            a: JsNumber,
        }
        let text = to_string(&Body {
            b: "é \u{1} \u{1f} \u{7f} / \u{2028} \"q\" \\ \n\t\r\u{8}\u{c} 😀",
            a: JsNumber(2.0),
        })
        .unwrap();
        // node: JSON.stringify({b: "é \x01 \x1f \x7f / \u2028 \"q\" \\ \n\t\r\b\f 😀", a: 2})
        assert_eq!(
            text,
            "{\"b\":\"é \\u0001 \\u001f \u{7f} / \u{2028} \\\"q\\\" \\\\ \\n\\t\\r\\b\\f 😀\",\"a\":2}"
        );
    }
}
