//! Bounds on what a cloud engine's server may make us hold. The server is
//! untrusted (its URL may be a tenant's), so every message, every decoded
//! audio chunk, every announced sample rate, every string kept and every map
//! that grows per message is bounded here; going past a bound ends the
//! session with [`EngineError::Protocol`](super::EngineError::Protocol)
//! (the call then ends `engine_error`), never with an allocation the server
//! chose.

use std::collections::VecDeque;

/// Largest WebSocket message (and frame) we accept from an engine: 1 MiB.
///
/// The largest legitimate messages are (a) audio chunks: OpenAI's mu-law at
/// 8 kHz is about 10.7 KB of base64 per second and Gemini's PCM16 at 24 kHz
/// 64 KB per second, sent in chunks of 20 to 500 ms (at most ~32 KB); and
/// (b) the session echoes (`session.created`/`session.updated`), which repeat
/// our own instructions and tools, bounded by the edge at 20,000 prompt
/// characters and 16 KiB of metadata (~140 KB JSON-escaped at worst). 1 MiB
/// is 16 s of Gemini audio in one message and 7x the largest echo, while
/// tungstenite's defaults (64 MiB messages, 16 MiB frames) would let a
/// hostile server make each call hold tens of megabytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Most engine audio one server message may carry, in milliseconds at the
/// rate it is sent at: far above any real chunk (well under a second), low
/// enough that a call never holds minutes of audio from one message.
pub const MAX_AUDIO_MS_PER_MESSAGE: u64 = 10_000;

/// Sample rates an engine may announce for its PCM output (each checked to
/// resample to 8 kHz at the right length). Anything else (0, 1 Hz, 10 MHz,
/// a garbled value) ends the session: the resampler's filter and blocks are
/// sized from the rate.
pub const SANE_RATES: [u32; 8] = [
    8_000, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];

/// Longest id or function name we keep (item ids, call ids): real ones are
/// 20 to 40 characters; OpenAI caps function names at 64.
pub const MAX_ID_BYTES: usize = 256;

/// Most entries of any per-session map (items, function calls, user turns
/// awaiting their transcript); the oldest goes first.
pub const MAX_TRACKED: usize = 64;

/// Most transcript text gathered for one turn from streamed chunks (the
/// edge keeps 4,000 characters of a turn, at most 16 KB of UTF-8).
pub const MAX_TURN_TEXT_BYTES: usize = 16 * 1024;

/// `rate` if it is one of [`SANE_RATES`].
pub fn sane_rate(rate: u32) -> Result<u32, String> {
    if SANE_RATES.contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "the engine announced audio at {rate} Hz; accepted: {SANE_RATES:?}"
        ))
    }
}

/// Checks an id (or name) from the server before it is kept.
pub fn checked_id<'a>(what: &str, id: &'a str) -> Result<&'a str, String> {
    if id.len() > MAX_ID_BYTES {
        Err(format!(
            "{what} of {} bytes (at most {MAX_ID_BYTES})",
            id.len()
        ))
    } else {
        Ok(id)
    }
}

/// Refuses base64 whose decoded size would exceed `max_bytes`, before decoding it.
pub fn check_b64_len(b64: &str, max_bytes: usize, what: &str) -> Result<(), String> {
    let decoded = b64.len() / 4 * 3;
    if decoded > max_bytes + 3 {
        Err(format!(
            "{what}: about {decoded} bytes of audio in one message (at most {max_bytes})"
        ))
    } else {
        Ok(())
    }
}

/// Appends `add` to `text`, never past `cap` bytes (cut on a char boundary).
pub fn push_capped(text: &mut String, add: &str, cap: usize) {
    let room = cap.saturating_sub(text.len());
    if add.len() <= room {
        text.push_str(add);
    } else {
        let mut end = room;
        while !add.is_char_boundary(end) {
            end -= 1;
        }
        text.push_str(&add[..end]);
    }
}

/// A small map keyed by server ids that keeps at most [`MAX_TRACKED`]
/// entries, dropping the oldest (linear lookups: it is always small).
#[derive(Debug, Clone)]
pub struct BoundedMap<V> {
    entries: VecDeque<(String, V)>,
}

impl<V> Default for BoundedMap<V> {
    fn default() -> Self {
        BoundedMap {
            entries: VecDeque::new(),
        }
    }
}

impl<V> BoundedMap<V> {
    pub fn insert(&mut self, key: String, value: V) {
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() >= MAX_TRACKED {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        self.entries.remove(i).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys held (for the tests' bound checks).
    pub fn key_bytes(&self) -> usize {
        self.entries.iter().map(|(k, _)| k.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_keeps_the_newest_entries() {
        let mut m = BoundedMap::default();
        for i in 0..1000 {
            m.insert(format!("id{i}"), i);
        }
        assert_eq!(m.len(), MAX_TRACKED);
        assert_eq!(m.get("id999"), Some(&999));
        assert_eq!(m.get("id0"), None);
        m.insert("id999".into(), 1);
        assert_eq!(m.len(), MAX_TRACKED);
        assert_eq!(m.remove("id999"), Some(1));
        assert_eq!(m.len(), MAX_TRACKED - 1);
    }

    #[test]
    fn text_is_capped_on_a_char_boundary() {
        let mut t = String::new();
        for _ in 0..100 {
            push_capped(&mut t, "héllo wörld ", 50);
        }
        assert!(t.len() <= 50 && t.len() >= 46, "{}", t.len());
        assert!(t.starts_with("héllo"));
    }

    #[test]
    fn rates_ids_and_base64_sizes() {
        assert_eq!(sane_rate(24_000), Ok(24_000));
        for r in [0, 1, 7_999, 96_000, 1_000_000, u32::MAX] {
            assert!(sane_rate(r).is_err(), "{r}");
        }
        assert!(checked_id("item id", &"x".repeat(MAX_ID_BYTES)).is_ok());
        assert!(checked_id("item id", &"x".repeat(MAX_ID_BYTES + 1)).is_err());
        assert!(check_b64_len(&"A".repeat(400), 300, "audio").is_ok());
        assert!(check_b64_len(&"A".repeat(404), 300, "audio").is_ok());
        assert!(check_b64_len(&"A".repeat(408), 300, "audio").is_err());
    }
}
