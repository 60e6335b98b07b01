//! Text messages in a region's dispatch queue, sans-IO: waiting for a
//! sidecar's lease poll, then out with that sidecar until its result or
//! deadline. At most once: a message handed out is never handed out again;
//! without a result by its deadline it fails (`no_result`), and a result
//! that comes later is acknowledged and dropped (the first outcome wins).
//!
//! One row per message in the `DispatchQueue` object (like the calls), so
//! only what changed is written.

use crate::messages::{reasons, MessageChange, MessageUpdate, QUEUED_TTL_MS, RESULT_DEADLINE_MS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use voxline_shared::sidecar_link::{MessageOffer, MessageOutcome, MessageResult};

/// Most messages a region's queue holds (waiting and out); beyond, new ones
/// are refused (the tenant's rate limits keep it far from this).
pub const MAX_MESSAGES: usize = 10_000;

/// A message as the queue keeps it: what the sidecar needs to send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub message_id: String,
    pub tenant_id: String,
    pub from: String,
    pub to: String,
    pub body: String,
    /// When it was queued (edge clock): it waits at most [`QUEUED_TTL_MS`].
    pub queued_ms: u64,
}

/// Where a message is in the queue, as stored in its row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MessageRow {
    Waiting {
        message: QueuedMessage,
    },
    /// Handed to `sidecar_id`; its result is due by `deadline_ms`.
    Out {
        message: QueuedMessage,
        sidecar_id: String,
        deadline_ms: u64,
    },
}

impl MessageRow {
    fn message(&self) -> &QueuedMessage {
        match self {
            MessageRow::Waiting { message } | MessageRow::Out { message, .. } => message,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum EnqueueMessageVerdict {
    Accepted,
    /// Already queued (a retried enqueue): nothing changed.
    AlreadyKnown,
    /// The region holds [`MAX_MESSAGES`]: refused.
    Full,
}

/// What became of a sidecar's [`MessageResult`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultVerdict {
    /// Out with this sidecar: the change for the tenant's call store.
    Recorded(MessageUpdate),
    /// Not out (its result or its deadline came first, or never queued
    /// here): acknowledged, nothing changes.
    Unknown,
    /// Out with another sidecar: acknowledged, nothing changes.
    NotHolder,
}

/// The messages of one region's queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageLine {
    pub rows: BTreeMap<String, MessageRow>,
    /// Messages changed since the last [`MessageLine::take_changes`].
    #[serde(skip)]
    pub changed: BTreeSet<String>,
}

/// A message id and its new row (`None`: delete the row).
pub type MessageRowChange = (String, Option<MessageRow>);

impl MessageLine {
    pub fn from_rows(rows: Vec<MessageRow>) -> MessageLine {
        MessageLine {
            rows: rows
                .into_iter()
                .map(|r| (r.message().message_id.clone(), r))
                .collect(),
            changed: BTreeSet::new(),
        }
    }

    pub fn take_changes(&mut self) -> Vec<MessageRowChange> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|id| {
                let row = self.rows.get(&id).cloned();
                (id, row)
            })
            .collect()
    }

    pub fn enqueue(&mut self, message: QueuedMessage) -> EnqueueMessageVerdict {
        if self.rows.contains_key(&message.message_id) {
            return EnqueueMessageVerdict::AlreadyKnown;
        }
        if self.rows.len() >= MAX_MESSAGES {
            return EnqueueMessageVerdict::Full;
        }
        self.changed.insert(message.message_id.clone());
        self.rows
            .insert(message.message_id.clone(), MessageRow::Waiting { message });
        EnqueueMessageVerdict::Accepted
    }

    pub fn has_waiting(&self) -> bool {
        self.rows
            .values()
            .any(|r| matches!(r, MessageRow::Waiting { .. }))
    }

    /// Hands `sidecar_id` up to `max` waiting messages, oldest first: each is
    /// out with it from now on and never handed out again. Returns the
    /// offers and the `sending` changes for the call stores.
    pub fn hand_out(
        &mut self,
        sidecar_id: &str,
        now: u64,
        max: usize,
    ) -> (Vec<MessageOffer>, Vec<MessageUpdate>) {
        let mut waiting: Vec<(u64, String)> = self
            .rows
            .values()
            .filter_map(|r| match r {
                MessageRow::Waiting { message } => {
                    Some((message.queued_ms, message.message_id.clone()))
                }
                MessageRow::Out { .. } => None,
            })
            .collect();
        waiting.sort();
        let deadline_ms = now + RESULT_DEADLINE_MS;
        let mut offers = Vec::new();
        let mut updates = Vec::new();
        for (_, id) in waiting.into_iter().take(max) {
            let Some(MessageRow::Waiting { message }) = self.rows.remove(&id) else {
                continue;
            };
            offers.push(MessageOffer {
                message_id: message.message_id.clone(),
                tenant_id: message.tenant_id.clone(),
                from: message.from.clone(),
                to: message.to.clone(),
                body: message.body.clone(),
                deadline_ms,
            });
            updates.push(MessageUpdate {
                message_id: message.message_id.clone(),
                tenant_id: message.tenant_id.clone(),
                at_ms: now,
                change: MessageChange::Sending {
                    sidecar_id: sidecar_id.to_string(),
                },
            });
            self.changed.insert(id.clone());
            self.rows.insert(
                id,
                MessageRow::Out {
                    message,
                    sidecar_id: sidecar_id.to_string(),
                    deadline_ms,
                },
            );
        }
        (offers, updates)
    }

    /// A sidecar's result: applied once, and only from the sidecar the
    /// message is out with; the message then leaves the queue.
    pub fn result(&mut self, sidecar_id: &str, r: &MessageResult, now: u64) -> ResultVerdict {
        let Some(MessageRow::Out {
            sidecar_id: holder,
            message,
            ..
        }) = self.rows.get(&r.message_id)
        else {
            return ResultVerdict::Unknown;
        };
        if holder != sidecar_id {
            return ResultVerdict::NotHolder;
        }
        let tenant_id = message.tenant_id.clone();
        self.rows.remove(&r.message_id);
        self.changed.insert(r.message_id.clone());
        let imdn_message_id = r.imdn_message_id.as_deref().map(|s| {
            s.chars()
                .take(crate::messages::MAX_MATCH_ID_CHARS)
                .collect()
        });
        let change = match r.outcome {
            MessageOutcome::Sent => MessageChange::Sent {
                sip_code: r.sip_code,
                imdn_message_id,
            },
            MessageOutcome::Failed => MessageChange::Failed {
                reason: r.reason.clone().unwrap_or_else(|| reasons::FAILED.into()),
                sip_code: r.sip_code,
                imdn_message_id,
            },
        };
        // The sidecar's clock placed within what we know: not after now.
        ResultVerdict::Recorded(MessageUpdate {
            message_id: r.message_id.clone(),
            tenant_id,
            at_ms: r.at_ms.min(now),
            change,
        })
    }

    /// Time passes: messages out past their deadline fail with `no_result`,
    /// messages that waited too long with `no_sidecar`.
    pub fn tick(&mut self, now: u64) -> Vec<MessageUpdate> {
        let over: Vec<(String, &'static str)> = self
            .rows
            .iter()
            .filter_map(|(id, r)| match r {
                MessageRow::Out { deadline_ms, .. } if *deadline_ms <= now => {
                    Some((id.clone(), reasons::NO_RESULT))
                }
                MessageRow::Waiting { message } if message.queued_ms + QUEUED_TTL_MS <= now => {
                    Some((id.clone(), reasons::NO_SIDECAR))
                }
                _ => None,
            })
            .collect();
        let mut updates = Vec::new();
        for (id, reason) in over {
            let Some(row) = self.rows.remove(&id) else {
                continue;
            };
            self.changed.insert(id.clone());
            updates.push(MessageUpdate {
                message_id: id,
                tenant_id: row.message().tenant_id.clone(),
                at_ms: now,
                change: MessageChange::Failed {
                    reason: reason.to_string(),
                    sip_code: None,
                    imdn_message_id: None,
                },
            });
        }
        updates
    }

    /// The next time [`MessageLine::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        self.rows
            .values()
            .map(|r| match r {
                MessageRow::Out { deadline_ms, .. } => *deadline_ms,
                MessageRow::Waiting { message } => message.queued_ms + QUEUED_TTL_MS,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: &str, at: u64) -> QueuedMessage {
        QueuedMessage {
            message_id: id.into(),
            tenant_id: "ten_1".into(),
            from: "+14155550100".into(),
            to: "+14155550199".into(),
            body: format!("text {id}"),
            queued_ms: at,
        }
    }

    fn result(id: &str, outcome: MessageOutcome) -> MessageResult {
        MessageResult {
            protocol_version: 1,
            sidecar_id: "sc-1".into(),
            message_id: id.into(),
            outcome,
            sip_code: Some(202),
            reason: None,
            imdn_message_id: Some("imdn-1".into()),
            at_ms: 1_500,
        }
    }

    #[test]
    fn messages_are_handed_out_oldest_first_at_most_max_and_only_once() {
        let mut line = MessageLine::default();
        for (id, at) in [("msg_c", 30), ("msg_a", 10), ("msg_b", 20)] {
            assert_eq!(
                line.enqueue(queued(id, at)),
                EnqueueMessageVerdict::Accepted
            );
        }
        assert_eq!(
            line.enqueue(queued("msg_a", 10)),
            EnqueueMessageVerdict::AlreadyKnown
        );
        let (offers, updates) = line.hand_out("sc-1", 1_000, 2);
        let ids: Vec<&str> = offers.iter().map(|o| o.message_id.as_str()).collect();
        assert_eq!(ids, ["msg_a", "msg_b"]);
        assert_eq!(offers[0].deadline_ms, 1_000 + RESULT_DEADLINE_MS);
        assert_eq!(
            updates[0].change,
            MessageChange::Sending {
                sidecar_id: "sc-1".into()
            }
        );
        // The next poll, of any sidecar, gets only what was never handed out.
        let (offers, _) = line.hand_out("sc-2", 1_001, 20);
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].message_id, "msg_c");
        assert!(line.hand_out("sc-1", 1_002, 20).0.is_empty());
        assert!(!line.has_waiting());
    }

    #[test]
    fn a_result_is_applied_once_and_only_from_the_holder() {
        let mut line = MessageLine::default();
        line.enqueue(queued("msg_a", 0));
        line.hand_out("sc-1", 1_000, 20);
        let mut other = result("msg_a", MessageOutcome::Sent);
        other.sidecar_id = "sc-2".into();
        assert_eq!(line.result("sc-2", &other, 1_100), ResultVerdict::NotHolder);
        let r = result("msg_a", MessageOutcome::Sent);
        let ResultVerdict::Recorded(update) = line.result("sc-1", &r, 2_000) else {
            panic!("not recorded");
        };
        assert_eq!(
            (update.tenant_id.as_str(), update.at_ms, update.change),
            (
                "ten_1",
                1_500,
                MessageChange::Sent {
                    sip_code: Some(202),
                    imdn_message_id: Some("imdn-1".into())
                }
            )
        );
        assert_eq!(
            line.result("sc-1", &r, 2_001),
            ResultVerdict::Unknown,
            "once"
        );
        let failed = MessageResult {
            reason: Some("rejected".into()),
            sip_code: Some(403),
            ..result("msg_a", MessageOutcome::Failed)
        };
        assert_eq!(line.result("sc-1", &failed, 2_002), ResultVerdict::Unknown);
        assert!(line.rows.is_empty());
    }

    #[test]
    fn without_a_result_by_the_deadline_a_message_fails_and_a_late_result_is_dropped() {
        let mut line = MessageLine::default();
        line.enqueue(queued("msg_a", 0));
        line.hand_out("sc-1", 1_000, 20);
        assert_eq!(line.next_deadline(), Some(1_000 + RESULT_DEADLINE_MS));
        assert!(line.tick(1_000 + RESULT_DEADLINE_MS - 1).is_empty());
        let failed = line.tick(1_000 + RESULT_DEADLINE_MS);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].change,
            MessageChange::Failed {
                reason: "no_result".into(),
                sip_code: None,
                imdn_message_id: None
            }
        );
        let late = result("msg_a", MessageOutcome::Sent);
        assert_eq!(line.result("sc-1", &late, 70_000), ResultVerdict::Unknown);
        assert!(
            line.hand_out("sc-1", 70_001, 20).0.is_empty(),
            "never re-sent"
        );
        assert_eq!(line.next_deadline(), None);
    }

    #[test]
    fn a_message_no_sidecar_takes_fails_no_sidecar_and_the_line_is_bounded() {
        let mut line = MessageLine::default();
        line.enqueue(queued("msg_a", 100));
        assert_eq!(line.next_deadline(), Some(100 + QUEUED_TTL_MS));
        let failed = line.tick(100 + QUEUED_TTL_MS);
        assert!(
            matches!(&failed[0].change, MessageChange::Failed { reason, .. } if reason == "no_sidecar")
        );
        for i in 0..MAX_MESSAGES {
            line.enqueue(queued(&format!("msg_{i}"), 0));
        }
        assert_eq!(
            line.enqueue(queued("msg_x", 0)),
            EnqueueMessageVerdict::Full
        );
    }

    #[test]
    fn rows_written_after_each_step_load_back_as_the_same_line() {
        let mut line = MessageLine::default();
        let mut stored: BTreeMap<String, MessageRow> = BTreeMap::new();
        let flush = |line: &mut MessageLine, stored: &mut BTreeMap<String, MessageRow>| {
            for (id, row) in line.take_changes() {
                match row {
                    Some(r) => stored.insert(id, r),
                    None => stored.remove(&id),
                };
            }
        };
        line.enqueue(queued("msg_a", 0));
        line.enqueue(queued("msg_b", 1));
        flush(&mut line, &mut stored);
        line.hand_out("sc-1", 10, 1);
        flush(&mut line, &mut stored);
        let loaded = MessageLine::from_rows(stored.values().cloned().collect());
        assert_eq!(loaded.rows, line.rows);
        line.result("sc-1", &result("msg_a", MessageOutcome::Sent), 20);
        flush(&mut line, &mut stored);
        assert_eq!(stored.len(), 1, "the decided message's row is deleted");
    }
}
