//! Call transcripts: turns reported by the sidecar, stored per call in KV by
//! the region's dispatch queue (the single writer for its calls), served as
//! JSON or as plain text (`[hh:mm:ss] AI: ...`, one line per turn).

use crate::model::keys;
use crate::store::{get_json, put_json, Kv, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// `ai` or `user`.
    pub role: String,
    pub text: String,
    /// Offsets from the moment the call was answered.
    pub start_ms: u64,
    pub end_ms: u64,
}

/// A turn to append to a call's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnUpdate {
    pub tenant_id: String,
    pub call_id: String,
    pub turn: Turn,
}

/// Appends turns in order (a read-modify-write per call: safe because only
/// the region's queue object writes transcripts of its calls).
pub async fn append(kv: &impl Kv, updates: &[TurnUpdate]) -> Result<(), StoreError> {
    let mut i = 0;
    while i < updates.len() {
        let (tid, cid) = (&updates[i].tenant_id, &updates[i].call_id);
        let key = keys::transcript(tid, cid);
        let mut turns: Vec<Turn> = get_json(kv, &key).await?.unwrap_or_default();
        while i < updates.len() && &updates[i].tenant_id == tid && &updates[i].call_id == cid {
            turns.push(updates[i].turn.clone());
            i += 1;
        }
        put_json(kv, &key, &turns, None).await?;
    }
    Ok(())
}

pub async fn load(kv: &impl Kv, tid: &str, cid: &str) -> Result<Vec<Turn>, StoreError> {
    Ok(get_json(kv, &keys::transcript(tid, cid)).await?.unwrap_or_default())
}

fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// `[00:00:01] AI: Hello` lines, in turn order.
pub fn render_text(turns: &[Turn]) -> String {
    turns
        .iter()
        .map(|t| format!("[{}] {}: {}\n", clock(t.start_ms), if t.role == "ai" { "AI" } else { "USER" }, t.text))
        .collect()
}

pub fn to_json(call_id: &str, turns: &[Turn]) -> Value {
    json!({"object": "transcript", "call_id": call_id, "turns": turns, "text": render_text(turns)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryKv;
    use futures::executor::block_on;

    fn turn(role: &str, text: &str, start_ms: u64) -> Turn {
        Turn { role: role.into(), text: text.into(), start_ms, end_ms: start_ms + 900 }
    }

    #[test]
    fn turns_append_per_call_and_render_as_lines() {
        let kv = MemoryKv::default();
        let up = |cid: &str, t: Turn| TurnUpdate { tenant_id: "ten_1".into(), call_id: cid.into(), turn: t };
        block_on(append(&kv, &[up("c1", turn("ai", "Hi, can you make it?", 200)), up("c2", turn("ai", "Other", 0))])).unwrap();
        block_on(append(&kv, &[up("c1", turn("user", "yes I can", 3_700))])).unwrap();
        let turns = block_on(load(&kv, "ten_1", "c1")).unwrap();
        assert_eq!(render_text(&turns), "[00:00:00] AI: Hi, can you make it?\n[00:00:03] USER: yes I can\n");
        assert_eq!(block_on(load(&kv, "ten_1", "c2")).unwrap().len(), 1);
        assert!(block_on(load(&kv, "ten_1", "c3")).unwrap().is_empty());
        assert_eq!(clock(3_723_000), "01:02:03");
    }
}
