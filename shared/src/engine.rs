//! The speech engines a call can run on: one list for the edge (validation,
//! records, the OpenAPI document) and the sidecar (which engine to start).

use serde::{Deserialize, Serialize};

/// Which speech engine runs the conversation. JSON: its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// Offline: VAD + pocketsphinx + scripted dialog + flite.
    Local,
    OpenaiRealtime,
    GeminiLive,
    /// Diagnostic: plays back what the callee says (a line test; no AI).
    Echo,
}

impl EngineKind {
    /// Every kind, in the order of [`EngineKind::NAMES`].
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Local,
        EngineKind::OpenaiRealtime,
        EngineKind::GeminiLive,
        EngineKind::Echo,
    ];
    /// The wire names, as serde writes them.
    pub const NAMES: [&'static str; 4] = ["local", "openai_realtime", "gemini_live", "echo"];

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Local => "local",
            EngineKind::OpenaiRealtime => "openai_realtime",
            EngineKind::GeminiLive => "gemini_live",
            EngineKind::Echo => "echo",
        }
    }

    pub fn parse(s: &str) -> Option<EngineKind> {
        EngineKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl core::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine an offer names: a kind this build knows, or the name of one
/// added after it (a newer edge), kept so the sidecar can refuse the offer
/// (`unsupported_engine`) instead of failing to read the whole lease reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OfferedEngine {
    Known(EngineKind),
    Unknown(String),
}

impl OfferedEngine {
    pub fn known(&self) -> Option<EngineKind> {
        match self {
            OfferedEngine::Known(k) => Some(*k),
            OfferedEngine::Unknown(_) => None,
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            OfferedEngine::Known(k) => k.as_str(),
            OfferedEngine::Unknown(s) => s,
        }
    }
}

impl From<EngineKind> for OfferedEngine {
    fn from(k: EngineKind) -> Self {
        OfferedEngine::Known(k)
    }
}

impl core::fmt::Display for OfferedEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_serde_writes_and_parse_reads() {
        for (kind, name) in EngineKind::ALL.into_iter().zip(EngineKind::NAMES) {
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(EngineKind::parse(name), Some(kind));
            assert_eq!(kind.to_string(), name);
        }
        assert_eq!(EngineKind::parse("Local"), None);
    }

    #[test]
    fn an_offered_engine_of_a_newer_edge_is_kept_by_name() {
        let known: OfferedEngine = serde_json::from_str("\"gemini_live\"").unwrap();
        assert_eq!(known.known(), Some(EngineKind::GeminiLive));
        let newer: OfferedEngine = serde_json::from_str("\"quantum_voice\"").unwrap();
        assert_eq!((newer.known(), newer.as_str()), (None, "quantum_voice"));
        assert_eq!(serde_json::to_string(&newer).unwrap(), "\"quantum_voice\"");
        assert_eq!(
            serde_json::to_string(&OfferedEngine::from(EngineKind::Echo)).unwrap(),
            "\"echo\""
        );
    }
}
