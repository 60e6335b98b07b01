//! The seed-API dialects: vendors' APIs served byte for byte on the one call
//! pipeline (design: docs/dialects.md). One module per dialect; each is pure
//! (requests in, native inputs and vendor-shaped answers and webhook bodies
//! out) and is wired to the Worker by the API layer.

pub mod body;
pub mod buildvoiceai;
pub mod calldock;
pub mod codeb;
pub mod codeb_users;
pub mod js_json;
pub mod phone;
pub mod post_call;
pub mod refusal;
pub mod voice360;
pub mod voiceb;

pub use refusal::Refusal;

/// The request headers dialects read besides `authorization` (lowercase, as
/// the Worker glue passes them on).
pub const REQUEST_HEADERS: &[&str] = &["api-key", "signature", "x-api-key", "x-agent-id"];

/// Every dialect served. Serialised as its [`Dialect::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    VoiceB,
    BuildVoiceAi,
    Calldock,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::VoiceB, Dialect::BuildVoiceAi, Dialect::Calldock];

    /// The name in credentials, endpoint `format`s, logs and docs.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::VoiceB => "voiceb",
            Dialect::BuildVoiceAi => "buildvoiceai",
            Dialect::Calldock => "calldock",
        }
    }

    pub fn parse(s: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The (method, path) of each operation it serves.
    pub fn routes(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Dialect::VoiceB => &[("POST", voiceb::PATH)],
            Dialect::BuildVoiceAi => &[("POST", buildvoiceai::PATH)],
            Dialect::Calldock => &[("POST", calldock::PATH)],
        }
    }
}

/// Whom a dialect's credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One agent places every call (VoiceB, Calldock: "each agent has its own credentials").
    Agent,
    /// The tenant: the body's `agent_id`, else the default agent (BuildVoiceAI).
    Tenant,
}

impl Dialect {
    pub fn scope(self) -> Scope {
        match self {
            Dialect::VoiceB | Dialect::Calldock => Scope::Agent,
            Dialect::BuildVoiceAi => Scope::Tenant,
        }
    }

    /// A new credential's token: the dialect's prefix, then 32 characters from
    /// `random` (192 bits for base64url, 128 for Calldock's hex, as its document's
    /// `ck_live_` + 32 characters shows).
    pub fn token(self, random: &[u8; 24]) -> String {
        use base64::Engine as _;
        match self {
            Dialect::VoiceB => format!(
                "vbk_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
            ),
            Dialect::BuildVoiceAi => format!(
                "bvai_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
            ),
            Dialect::Calldock => format!("{}{}", calldock::KEY_PREFIX, hex::encode(&random[..16])),
        }
    }

    /// Whether `token` could be one of this dialect's (checked before any lookup).
    pub fn plausible_token(self, token: &str) -> bool {
        let prefix = match self {
            Dialect::VoiceB => "vbk_",
            Dialect::BuildVoiceAi => "bvai_",
            Dialect::Calldock => calldock::KEY_PREFIX,
        };
        token.starts_with(prefix) && token.len() <= 96
    }
}

/// The dialect serving `path`, whatever the method (a wrong method is the
/// dialect's to answer). Paths are exact: no dialect path is a native one.
pub fn route(path: &str) -> Option<Dialect> {
    Dialect::ALL
        .into_iter()
        .find(|d| d.routes().iter().any(|(_, p)| *p == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_disjoint_and_never_native() {
        let mut seen = std::collections::HashSet::new();
        for d in Dialect::ALL {
            assert_eq!(Dialect::parse(d.name()), Some(d));
            for (method, path) in d.routes() {
                assert!(seen.insert(*path), "{path} served twice");
                assert_eq!(route(path), Some(d));
                // The native router must not know the path (else one would shadow the other).
                assert!(
                    matches!(
                        crate::api::router::route(method, path),
                        crate::api::router::Match::NotFound
                    ),
                    "{path} is also a native route"
                );
            }
        }
        assert_eq!(route("/v1/calls"), None);
    }

    #[test]
    fn codebs_prefixes_are_no_native_routes_and_no_dialects_paths() {
        for (_, pattern, _) in crate::api::router::ROUTES {
            assert!(
                !codeb::PATH_PREFIXES.iter().any(|p| pattern.starts_with(p)),
                "{pattern}"
            );
        }
        for d in Dialect::ALL {
            for (method, path) in d.routes() {
                assert_eq!(codeb::route(method, path), None, "{path}");
            }
        }
    }

    #[test]
    fn every_header_a_dialect_reads_reaches_it() {
        for h in [
            voiceb::HEADER_KEY,
            voiceb::HEADER_SIGNATURE,
            calldock::HEADER_KEY,
            calldock::HEADER_AGENT,
        ] {
            assert!(
                REQUEST_HEADERS.contains(&h.to_ascii_lowercase().as_str()),
                "{h}"
            );
        }
    }

    #[test]
    fn serialised_name_is_the_name_and_tokens_fit_their_check() {
        for d in Dialect::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), d.name());
            let token = d.token(&[7; 24]);
            assert!(d.plausible_token(&token), "{token}");
            for other in Dialect::ALL.into_iter().filter(|o| *o != d) {
                assert!(
                    !other.plausible_token(&token),
                    "{token} also fits {other:?}"
                );
            }
        }
        // The document's form: ck_live_ + 32 characters.
        assert_eq!(
            Dialect::Calldock.token(&[0xab; 24]).len(),
            "ck_live_".len() + 32
        );
    }
}
