//! Call transcripts: turns reported by the sidecar, stored per call in KV by
//! the region's dispatch queue (the single writer for its calls), served as
//! JSON or as plain text (`[hh:mm:ss] AI: ...`, one line per turn).

use crate::model::{keys, CallRecord};
use voxline_shared::CallStatus;
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

/// What a call's transcript holds: its turns in order, and what the engine
/// concluded when it said so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub turns: Vec<Turn>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
}

/// The stored form; transcripts written before summaries existed are a bare
/// list of turns.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Whole(Transcript),
    TurnsOnly(Vec<Turn>),
}

/// One change to one call's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Turn(Turn),
    /// Fields given replace earlier ones; absent ones keep them.
    Summary { summary: Option<String>, outcome: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptUpdate {
    pub tenant_id: String,
    pub call_id: String,
    pub change: Change,
}

/// Applies changes in order (a read-modify-write per call: safe because only
/// the region's queue object writes transcripts of its calls).
pub async fn apply(kv: &impl Kv, updates: &[TranscriptUpdate]) -> Result<(), StoreError> {
    let mut i = 0;
    while i < updates.len() {
        let (tid, cid) = (&updates[i].tenant_id, &updates[i].call_id);
        let mut t = load(kv, tid, cid).await?;
        while i < updates.len() && &updates[i].tenant_id == tid && &updates[i].call_id == cid {
            match &updates[i].change {
                Change::Turn(turn) => t.turns.push(turn.clone()),
                Change::Summary { summary, outcome } => {
                    if summary.is_some() {
                        t.summary = summary.clone();
                    }
                    if outcome.is_some() {
                        t.outcome = outcome.clone();
                    }
                }
            }
            i += 1;
        }
        put_json(kv, &keys::transcript(tid, cid), &t, None).await?;
    }
    Ok(())
}

pub async fn load(kv: &impl Kv, tid: &str, cid: &str) -> Result<Transcript, StoreError> {
    Ok(match get_json::<Stored>(kv, &keys::transcript(tid, cid)).await? {
        Some(Stored::Whole(t)) => t,
        Some(Stored::TurnsOnly(turns)) => Transcript { turns, ..Transcript::default() },
        None => Transcript::default(),
    })
}

/// `transcript.saved`, once a call that was answered has ended (its turns
/// were stored before the ending was mirrored: the queue applies them first).
pub async fn emit_saved(
    kv: &impl Kv,
    tenant_id: &str,
    before: CallStatus,
    record: &CallRecord,
    now_ms: u64,
) -> Result<Vec<crate::webhooks::DeliveryJob>, StoreError> {
    if !record.status.is_terminal() || before.is_terminal() || record.answered_at.is_none() {
        return Ok(Vec::new());
    }
    let t = load(kv, tenant_id, &record.id).await?;
    let mut data = to_json(&record.id, &t);
    data["call_status"] = json!(record.status);
    data["url"] = json!(format!("/v1/calls/{}/transcript", record.id));
    crate::webhooks::emit_event(kv, tenant_id, "transcript.saved", &record.id, now_ms, |event_id| {
        crate::webhooks::event_payload("transcript.saved", event_id, now_ms, data)
    })
    .await
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

pub fn to_json(call_id: &str, t: &Transcript) -> Value {
    json!({"object": "transcript", "call_id": call_id, "turns": t.turns, "summary": t.summary,
           "outcome": t.outcome, "text": render_text(&t.turns)})
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
        let up = |cid: &str, change: Change| TranscriptUpdate { tenant_id: "ten_1".into(), call_id: cid.into(), change };
        let summary = |s: Option<&str>, o: Option<&str>| Change::Summary { summary: s.map(Into::into), outcome: o.map(Into::into) };
        block_on(apply(&kv, &[up("c1", Change::Turn(turn("ai", "Hi, can you make it?", 200))), up("c2", Change::Turn(turn("ai", "Other", 0)))])).unwrap();
        block_on(apply(&kv, &[up("c1", Change::Turn(turn("user", "yes I can", 3_700))), up("c1", summary(Some("said yes"), Some("confirmed")))]))
            .unwrap();
        block_on(apply(&kv, &[up("c1", summary(Some("said yes, twice"), None))])).unwrap();
        let t = block_on(load(&kv, "ten_1", "c1")).unwrap();
        assert_eq!(render_text(&t.turns), "[00:00:00] AI: Hi, can you make it?\n[00:00:03] USER: yes I can\n");
        assert_eq!((t.summary.as_deref(), t.outcome.as_deref()), (Some("said yes, twice"), Some("confirmed")));
        let j = to_json("c1", &t);
        assert_eq!((j["summary"].as_str(), j["outcome"].as_str(), j["turns"].as_array().map(Vec::len)), (Some("said yes, twice"), Some("confirmed"), Some(2)));
        assert_eq!(block_on(load(&kv, "ten_1", "c2")).unwrap().turns.len(), 1);
        assert_eq!(block_on(load(&kv, "ten_1", "c3")).unwrap(), Transcript::default());
        assert_eq!(clock(3_723_000), "01:02:03");
    }

    #[test]
    fn transcript_saved_goes_out_once_when_an_answered_call_ends() {
        use crate::model::test_call;
        let kv = MemoryKv::default();
        let hook = crate::webhooks::tests_support::endpoint(&kv, "ten_1", &["transcript.saved"]);
        block_on(apply(&kv, &[TranscriptUpdate { tenant_id: "ten_1".into(), call_id: "call_1".into(), change: Change::Turn(turn("ai", "Hello", 0)) }])).unwrap();
        let mut done = test_call(CallStatus::Completed);
        done.answered_at = Some("2026-11-25T14:50:01.000Z".into());
        let jobs = block_on(emit_saved(&kv, "ten_1", CallStatus::InProgress, &done, 1)).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].endpoint_id, hook);
        let p: Value = serde_json::from_str(&jobs[0].payload).unwrap();
        assert_eq!((p["type"].as_str(), p["data"]["call_status"].as_str()), (Some("transcript.saved"), Some("completed")));
        assert_eq!(p["data"]["text"], "[00:00:00] AI: Hello\n");
        // Already ended before, still live, or never answered: nothing.
        assert!(block_on(emit_saved(&kv, "ten_1", CallStatus::Completed, &done, 1)).unwrap().is_empty());
        assert!(block_on(emit_saved(&kv, "ten_1", CallStatus::Ringing, &test_call(CallStatus::InProgress), 1)).unwrap().is_empty());
        assert!(block_on(emit_saved(&kv, "ten_1", CallStatus::Ringing, &test_call(CallStatus::NoAnswer), 1)).unwrap().is_empty());
    }

    #[test]
    fn transcripts_stored_as_a_bare_list_still_load() {
        let kv = MemoryKv::default();
        block_on(put_json(&kv, &keys::transcript("ten_1", "c1"), &vec![turn("ai", "Hello", 0)], None)).unwrap();
        let t = block_on(load(&kv, "ten_1", "c1")).unwrap();
        assert_eq!((t.turns.len(), t.summary), (1, None));
    }
}
