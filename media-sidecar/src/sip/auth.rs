//! Digest authentication for a UAC (RFC 3261 22, RFC 2617, RFC 7616/8760).
//!
//! Works around rsip 0.4's gaps: `qop="auth,auth-int"` lists parse, the
//! nonce count is printed as 8 hex digits, and `-sess` algorithms hash
//! H(user:realm:pass):nonce:cnonce as the RFC says.
//!
//! A 401/407 may carry several challenges (RFC 8760: one per algorithm, the
//! preferred first). We answer exactly one, the strongest ([`choose`]:
//! SHA-256 before MD5), and, when the trunk's realm is configured, only a
//! challenge for that realm: credentials are never hashed for a realm the
//! operator did not name.

pub use voxline_shared::sip_digest::Algorithm;
use voxline_shared::sip_digest::{quote, response, DigestInput};

use super::msg::{Message, ParseError};

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The qop values offered (`auth`, `auth-int`, ...), from a quoted list.
    pub qop: Vec<String>,
    pub stale: bool,
}

/// `key=value` / `key="quoted"` pairs (the shared Digest parser).
fn auth_params(s: &str) -> Result<Vec<(String, String)>, ParseError> {
    voxline_shared::sip_digest::auth_params(s)
        .map_err(|_| ParseError::BadHeader("Digest challenge".into()))
}

impl Challenge {
    /// Parses one challenge header value. Only the Digest scheme is supported.
    pub fn parse(v: &str) -> Result<Challenge, ParseError> {
        let v = v.trim();
        let (scheme, rest) = v.split_once([' ', '\t']).unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(ParseError::BadHeader("not a Digest challenge".into()));
        }
        let mut c = Challenge {
            realm: String::new(),
            nonce: String::new(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop: Vec::new(),
            stale: false,
        };
        let mut have_nonce = false;
        for (k, val) in auth_params(rest)? {
            match k.as_str() {
                "realm" => c.realm = val,
                "nonce" => {
                    c.nonce = val;
                    have_nonce = true
                }
                "opaque" => c.opaque = Some(val),
                "algorithm" => {
                    c.algorithm = Algorithm::parse(&val).ok_or_else(|| {
                        ParseError::BadHeader(format!("unsupported algorithm {val}"))
                    })?
                }
                "qop" => {
                    c.qop = val
                        .split(',')
                        .map(|q| q.trim().to_ascii_lowercase())
                        .filter(|q| !q.is_empty())
                        .collect()
                }
                "stale" => c.stale = val.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        if !have_nonce {
            return Err(ParseError::BadHeader("challenge without nonce".into()));
        }
        Ok(c)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Answer only challenges for this realm (compared exactly). `None`: any realm.
    pub realm: Option<String>,
}

/// Why no challenge of a 401/407 is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChooseError {
    /// No Digest challenge we can compute (none, or only unknown algorithms).
    NoChallenge,
    /// Challenges only for realms other than the configured one.
    RealmMismatch,
}

impl ChooseError {
    /// Stable machine code (a dialog end's `detail`).
    pub fn code(self) -> &'static str {
        match self {
            ChooseError::NoChallenge => "auth_no_usable_challenge",
            ChooseError::RealmMismatch => "auth_realm_mismatch",
        }
    }
}

/// The one challenge to answer: among those for `realm` (any realm when
/// `None`), the strongest algorithm; between equals, the first offered (the
/// server lists its preference first, RFC 8760 2.4).
pub fn choose<'a>(
    challenges: &'a [Challenge],
    realm: Option<&str>,
) -> Result<&'a Challenge, ChooseError> {
    if challenges.is_empty() {
        return Err(ChooseError::NoChallenge);
    }
    let mut best: Option<&Challenge> = None;
    for c in challenges
        .iter()
        .filter(|c| realm.is_none_or(|r| r == c.realm))
    {
        if best.is_none_or(|b| c.algorithm.strength() > b.algorithm.strength()) {
            best = Some(c);
        }
    }
    best.ok_or(ChooseError::RealmMismatch)
}

/// What a 401 or 407 asks us to answer: the header the answer goes in
/// (`Authorization`, or `Proxy-Authorization` for a 407) and the challenges
/// [`choose_per_realm`] picks among its `WWW-Authenticate` /
/// `Proxy-Authenticate` headers (unparsable and non-Digest ones skipped).
pub fn challenges_to_answer(
    r: &Message,
    realm: Option<&str>,
) -> Result<(&'static str, Vec<Challenge>), ChooseError> {
    let (challenge_name, answer_name) = if r.code() == Some(407) {
        ("Proxy-Authenticate", "Proxy-Authorization")
    } else {
        ("WWW-Authenticate", "Authorization")
    };
    let challenges: Vec<Challenge> = r
        .header_lines(challenge_name)
        .into_iter()
        .filter_map(|v| Challenge::parse(v).ok())
        .collect();
    let chosen = choose_per_realm(&challenges, realm)?;
    Ok((answer_name, chosen.into_iter().cloned().collect()))
}

/// The challenges to answer, one per realm (RFC 3261 22.3: a forking proxy
/// may aggregate challenges of several realms; RFC 8760 2.4 / RFC 7616 3.7:
/// of one realm's challenges, one per algorithm, answer only one): for each
/// realm (only `realm` when set), the strongest supported algorithm, the
/// first offered between equals. In the order the realms first appear.
pub fn choose_per_realm<'a>(
    challenges: &'a [Challenge],
    realm: Option<&str>,
) -> Result<Vec<&'a Challenge>, ChooseError> {
    if challenges.is_empty() {
        return Err(ChooseError::NoChallenge);
    }
    let mut best: Vec<&Challenge> = Vec::new();
    for c in challenges
        .iter()
        .filter(|c| realm.is_none_or(|r| r == c.realm))
    {
        match best.iter_mut().find(|b| b.realm == c.realm) {
            Some(b) if c.algorithm.strength() > b.algorithm.strength() => *b = c,
            Some(_) => {}
            None => best.push(c),
        }
    }
    if best.is_empty() {
        return Err(ChooseError::RealmMismatch);
    }
    Ok(best)
}

/// Computes `Authorization`/`Proxy-Authorization` values. Keeps the nonce
/// count per nonce (RFC 2617 3.2.2: nc counts requests sent with one nonce).
#[derive(Debug, Clone, Default)]
pub struct DigestClient {
    nonce: String,
    nc: u32,
}

impl DigestClient {
    /// The header value for `method uri` (the Request-URI text exactly as sent).
    /// `cnonce` is the client nonce (random, hex); `body` for qop=auth-int.
    pub fn authorize(
        &mut self,
        ch: &Challenge,
        cred: &Credentials,
        method: &str,
        uri: &str,
        cnonce: &str,
        body: &[u8],
    ) -> String {
        if self.nonce != ch.nonce {
            self.nonce = ch.nonce.clone();
            self.nc = 0;
        }
        self.nc = self.nc.wrapping_add(1);
        let alg = ch.algorithm;
        let qop = if ch.qop.iter().any(|q| q == "auth") {
            Some("auth")
        } else if ch.qop.iter().any(|q| q == "auth-int") {
            Some("auth-int")
        } else {
            None
        };
        let nc = format!("{:08x}", self.nc);
        let ha1 = voxline_shared::sip_digest::ha1(alg, &cred.username, &ch.realm, &cred.password);
        let response = response(
            &ha1,
            &DigestInput {
                algorithm: alg,
                nonce: &ch.nonce,
                method,
                uri,
                qop,
                nc: &nc,
                cnonce,
                body,
            },
        );
        let q = quote;
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            q(&cred.username),
            q(&ch.realm),
            q(&ch.nonce),
            q(uri),
            response,
            alg.name()
        );
        if let Some(o) = &ch.opaque {
            v.push_str(&format!(", opaque=\"{}\"", q(o)));
        }
        if let Some(qv) = qop {
            v.push_str(&format!(", qop={qv}, nc={nc}, cnonce=\"{}\"", q(cnonce)));
        }
        v
    }

    pub fn nonce_count(&self) -> u32 {
        self.nc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qop_list_and_quoted_commas_parse() {
        let c = Challenge::parse(
            r#"Digest realm="voxline, test", nonce="abc", qop="auth,auth-int", algorithm=MD5, opaque="xyz", stale=TRUE"#,
        )
        .unwrap();
        assert_eq!(c.realm, "voxline, test");
        assert_eq!(c.qop, vec!["auth", "auth-int"]);
        assert_eq!(c.opaque.as_deref(), Some("xyz"));
        assert!(c.stale);
        assert!(Challenge::parse("Basic realm=\"x\"").is_err());
        assert!(Challenge::parse("Digest realm=\"x\"").is_err());
        assert!(Challenge::parse("Digest realm=\"x, nonce=1").is_err());
    }

    #[test]
    fn rfc2617_vector_and_hex_nonce_count() {
        // RFC 2617 3.5 example (HTTP, but the digest math is the same).
        let ch = Challenge {
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            algorithm: Algorithm::Md5,
            qop: vec!["auth".into(), "auth-int".into()],
            stale: false,
        };
        let cred = Credentials {
            username: "Mufasa".into(),
            password: "Circle Of Life".into(),
            realm: None,
        };
        let mut d = DigestClient::default();
        let v = d.authorize(&ch, &cred, "GET", "/dir/index.html", "0a4f113b", b"");
        assert!(
            v.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{v}"
        );
        assert!(v.contains("nc=00000001"));
        for _ in 0..9 {
            d.authorize(&ch, &cred, "GET", "/dir/index.html", "0a4f113b", b"");
        }
        let v = d.authorize(&ch, &cred, "GET", "/dir/index.html", "0a4f113b", b"");
        assert!(v.contains("nc=0000000b"), "{v}");
        // A new nonce restarts the count.
        let ch2 = Challenge {
            nonce: "other".into(),
            ..ch
        };
        assert!(d
            .authorize(&ch2, &cred, "GET", "/", "c", b"")
            .contains("nc=00000001"));
    }

    #[test]
    fn no_qop_is_rfc2069_style() {
        let ch = Challenge {
            realm: "r".into(),
            nonce: "n".into(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop: vec![],
            stale: false,
        };
        let cred = Credentials {
            username: "u".into(),
            password: "p".into(),
            realm: None,
        };
        let v = DigestClient::default().authorize(&ch, &cred, "INVITE", "sip:a@b", "c", b"");
        let ha1 = Algorithm::Md5.hash("u:r:p");
        let ha2 = Algorithm::Md5.hash("INVITE:sip:a@b");
        let want = Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}"));
        assert!(v.contains(&format!("response=\"{want}\"")));
        assert!(!v.contains("qop"));
    }

    fn challenge(realm: &str, nonce: &str, alg: Algorithm) -> Challenge {
        Challenge {
            realm: realm.into(),
            nonce: nonce.into(),
            opaque: None,
            algorithm: alg,
            qop: vec!["auth".into()],
            stale: false,
        }
    }

    #[test]
    fn the_strongest_challenge_is_answered() {
        use Algorithm::*;
        // MD5 listed first (an old-fashioned server): SHA-256 still wins.
        let offered = [
            challenge("r", "n1", Md5),
            challenge("r", "n2", Sha256),
            challenge("r", "n3", Sha256Sess),
        ];
        assert_eq!(choose(&offered, None).unwrap().nonce, "n2");
        let offered = [
            challenge("r", "n1", Md5Sess),
            challenge("r", "n2", Sha256Sess),
        ];
        assert_eq!(choose(&offered, None).unwrap().algorithm, Sha256Sess);
        // Equal strength: the server's first.
        let offered = [challenge("r", "n1", Md5), challenge("r", "n2", Md5Sess)];
        assert_eq!(choose(&offered, None).unwrap().nonce, "n1");
        assert_eq!(choose(&[], None), Err(ChooseError::NoChallenge));
    }

    #[test]
    fn only_the_configured_realm_is_answered() {
        use Algorithm::*;
        let offered = [
            challenge("evil.example", "n1", Sha256),
            challenge("trunk.example", "n2", Md5),
        ];
        // The stronger challenge is for a realm we were not told about.
        assert_eq!(choose(&offered, Some("trunk.example")).unwrap().nonce, "n2");
        assert_eq!(
            choose(&offered[..1], Some("trunk.example")),
            Err(ChooseError::RealmMismatch)
        );
        assert_eq!(
            choose(&offered[..1], Some("trunk.example"))
                .unwrap_err()
                .code(),
            "auth_realm_mismatch"
        );
    }
}
