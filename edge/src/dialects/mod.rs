//! The seed-API dialects: vendors' APIs served byte for byte on the one call
//! pipeline (design: docs/dialects.md). One module per dialect; each is pure
//! (requests in, native inputs and vendor-shaped answers and webhook bodies
//! out) and is wired to the Worker by the API layer.

pub mod body;
pub mod buildvoiceai;
pub mod calldock;
pub mod js_json;
pub mod phone;
pub mod post_call;
pub mod voiceb;

/// Every dialect served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}
