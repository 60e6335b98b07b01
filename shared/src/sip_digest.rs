//! SIP Digest authentication math (RFC 3261 22, RFC 2617, RFC 7616/8760),
//! pure: the sidecar's UAC answers trunks' challenges with it
//! (`media-sidecar/src/sip/auth.rs`), the sidecar's registrar reads phones'
//! `Authorization` headers with [`auth_params`], and the edge checks their
//! `response` against the HA1 it stores ([`verify`]), so both halves hash the
//! same way and nothing is written twice.
//!
//! The edge never stores a phone's password: only HA1 =
//! H(`username:realm:password`) per base algorithm (MD5 and SHA-256), from
//! which every algorithm here (and its `-sess` form) can be checked.

use md5::Md5;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// RFC 7616's token, any case.
    pub fn parse(s: &str) -> Option<Algorithm> {
        Some(match s.to_ascii_uppercase().as_str() {
            "MD5" => Algorithm::Md5,
            "MD5-SESS" => Algorithm::Md5Sess,
            "SHA-256" => Algorithm::Sha256,
            "SHA-256-SESS" => Algorithm::Sha256Sess,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Lowercase hex of the algorithm's hash of `s`.
    pub fn hash(self, s: &str) -> String {
        self.hash_bytes(s.as_bytes())
    }

    pub fn hash_bytes(self, b: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(b)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex::encode(Sha256::digest(b)),
        }
    }

    /// Higher is stronger: SHA-256(-sess) over MD5(-sess).
    pub fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 0,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 1,
        }
    }

    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// The algorithm whose HA1 (over `username:realm:password`) this one
    /// starts from: MD5 for MD5(-sess), SHA-256 for SHA-256(-sess).
    pub fn base(self) -> Algorithm {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => Algorithm::Sha256,
        }
    }
}

/// H(`username:realm:password`) with `alg`'s base hash: what the edge stores.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.base().hash(&format!("{username}:{realm}:{password}"))
}

/// The fields of one Digest answer (the `Authorization` header's, or what a
/// UAC is about to send), everything [`response`] needs besides HA1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestInput<'a> {
    pub algorithm: Algorithm,
    pub nonce: &'a str,
    pub method: &'a str,
    /// The `uri` parameter exactly as sent.
    pub uri: &'a str,
    /// `auth`, `auth-int` or none (RFC 2069 style).
    pub qop: Option<&'a str>,
    /// 8 hex digits.
    pub nc: &'a str,
    pub cnonce: &'a str,
    /// The body, for `auth-int`.
    pub body: &'a [u8],
}

/// The `response` value from the base HA1 (see [`ha1`]).
pub fn response(ha1_base: &str, d: &DigestInput<'_>) -> String {
    let alg = d.algorithm;
    let ha1 = if alg.is_sess() {
        alg.hash(&format!("{ha1_base}:{}:{}", d.nonce, d.cnonce))
    } else {
        ha1_base.to_string()
    };
    let ha2 = match d.qop {
        Some("auth-int") => {
            let hb = alg.hash_bytes(d.body);
            alg.hash(&format!("{}:{}:{hb}", d.method, d.uri))
        }
        _ => alg.hash(&format!("{}:{}", d.method, d.uri)),
    };
    match d.qop {
        Some(q) => alg.hash(&format!(
            "{ha1}:{}:{}:{}:{q}:{ha2}",
            d.nonce, d.nc, d.cnonce
        )),
        None => alg.hash(&format!("{ha1}:{}:{ha2}", d.nonce)),
    }
}

/// Whether `answered` (the client's `response`) is right for `d` under the
/// stored base HA1. Compared in constant time: the time taken says nothing
/// about how much of a guess was right.
pub fn verify(ha1_base: &str, d: &DigestInput<'_>, answered: &str) -> bool {
    use subtle::ConstantTimeEq;
    let want = response(ha1_base, d);
    let answered = answered.to_ascii_lowercase();
    want.len() == answered.len() && bool::from(want.as_bytes().ct_eq(answered.as_bytes()))
}

/// Why an auth header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthParamsError;

impl std::fmt::Display for AuthParamsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed Digest parameters")
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// The `key=value` / `key="quoted"` pairs of a Digest challenge or answer
/// (after the scheme), keys lowercased, quoted values unescaped.
pub fn auth_params(s: &str) -> Result<Vec<(String, String)>, AuthParamsError> {
    let c: Vec<char> = s.chars().collect();
    let (n, mut i) = (c.len(), 0);
    let mut out = Vec::new();
    loop {
        while i < n && (c[i] == ' ' || c[i] == '\t' || c[i] == ',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let ks = i;
        while i < n && is_token_char(c[i]) {
            i += 1;
        }
        if ks == i {
            return Err(AuthParamsError);
        }
        let key: String = c[ks..i].iter().collect::<String>().to_ascii_lowercase();
        while i < n && (c[i] == ' ' || c[i] == '\t') {
            i += 1;
        }
        if i >= n || c[i] != '=' {
            return Err(AuthParamsError);
        }
        i += 1;
        while i < n && (c[i] == ' ' || c[i] == '\t') {
            i += 1;
        }
        let mut v = String::new();
        if i < n && c[i] == '"' {
            i += 1;
            let mut closed = false;
            while i < n {
                let ch = c[i];
                i += 1;
                if ch == '\\' && i < n {
                    v.push(c[i]);
                    i += 1;
                } else if ch == '"' {
                    closed = true;
                    break;
                } else {
                    v.push(ch);
                }
            }
            if !closed {
                return Err(AuthParamsError);
            }
        } else {
            while i < n && c[i] != ',' && c[i] != ' ' && c[i] != '\t' {
                v.push(c[i]);
                i += 1;
            }
        }
        out.push((key, v));
    }
    Ok(out)
}

/// `s` as a quoted-string's inside (`\` and `"` escaped).
pub fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(alg: Algorithm, qop: Option<&'a str>) -> DigestInput<'a> {
        DigestInput {
            algorithm: alg,
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method: "GET",
            uri: "/dir/index.html",
            qop,
            nc: "00000001",
            cnonce: "0a4f113b",
            body: b"",
        }
    }

    #[test]
    fn rfc2617_vector_verifies_and_a_wrong_answer_does_not() {
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let d = input(Algorithm::Md5, Some("auth"));
        assert_eq!(response(&h, &d), "6629fae49393a05397450978507c4ef1");
        assert!(verify(&h, &d, "6629FAE49393A05397450978507C4EF1"));
        assert!(!verify(&h, &d, "6629fae49393a05397450978507c4ef2"));
        assert!(!verify(&h, &d, "6629fae4"));
    }

    #[test]
    fn rfc7616_sha256_vector() {
        // RFC 7616 3.9.1: SHA-256, qop=auth.
        let h = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let d = DigestInput {
            algorithm: Algorithm::Sha256,
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            method: "GET",
            uri: "/dir/index.html",
            qop: Some("auth"),
            nc: "00000001",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            body: b"",
        };
        assert_eq!(
            response(&h, &d),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn sess_algorithms_start_from_the_base_ha1() {
        let h = ha1(Algorithm::Sha256Sess, "u", "r", "p");
        assert_eq!(h, Algorithm::Sha256.hash("u:r:p"));
        let d = input(Algorithm::Sha256Sess, Some("auth"));
        let sess = Algorithm::Sha256.hash(&format!("{h}:{}:{}", d.nonce, d.cnonce));
        let ha2 = Algorithm::Sha256.hash("GET:/dir/index.html");
        let want = Algorithm::Sha256.hash(&format!(
            "{sess}:{}:00000001:{}:auth:{ha2}",
            d.nonce, d.cnonce
        ));
        assert!(verify(&h, &d, &want));
    }

    #[test]
    fn params_parse_quoted_commas_and_escapes() {
        let p = auth_params(r#"username="a\"b", realm="x, y", nc=00000001, qop=auth"#).unwrap();
        assert_eq!(p[0], ("username".into(), "a\"b".into()));
        assert_eq!(p[1], ("realm".into(), "x, y".into()));
        assert_eq!(p[2], ("nc".into(), "00000001".into()));
        assert!(auth_params(r#"realm="x"#).is_err());
        assert!(auth_params("=x").is_err());
        assert_eq!(quote(r#"a"b\"#), r#"a\"b\\"#);
    }
}
