//! A tenant's text messages in its call store: one row per message, beside
//! its calls. The same object rather than a sibling one, because a message
//! needs everything the call store already is: the one writer of the
//! tenant's records, the idempotency claims, the outbox drained into the
//! webhook queue (with its alarm), and the numbered reports from the region's
//! queue, applied once. A sibling object would repeat all four.
//!
//! This file: what the store is asked and answers about messages; the
//! operations themselves are `calls::store`'s (`create_message`,
//! `apply_message_update`, `inbound_message`), pure like a call's: a change
//! and the event it causes are written in one synchronous step.

use crate::dispatch::message_line::QueuedMessage;
use crate::messages::{MessageDirection, MessageRecord, MessageStatus};
use crate::traffic::IdemRequest;
use serde::{Deserialize, Serialize};

/// What a listing of messages asks for: newest first, after a cursor, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageFilter {
    pub direction: Option<MessageDirection>,
    pub statuses: Vec<MessageStatus>,
    pub after_id: Option<String>,
    pub limit: u32,
}

/// A new outbound message as the API built it: the record, its queue
/// entry, and the `Idempotency-Key` it came with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub record: MessageRecord,
    pub queued: QueuedMessage,
    #[serde(default)]
    pub idempotency: Option<IdemRequest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum MessageCreated {
    Created {
        record: MessageRecord,
    },
    /// This `Idempotency-Key` created this message before (same request).
    Existing {
        record: MessageRecord,
    },
    /// This `Idempotency-Key` was used for a different request.
    KeyReused,
    /// The region's queue holds all it may: nothing was created.
    QueueFull,
    /// The queue did not answer: the message was stored as failed.
    DispatchUnavailable {
        record: MessageRecord,
    },
}

/// What became of an inbound MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum InboundVerdict {
    /// A new text message, stored as `received`.
    Stored { message_id: String },
    /// The same MESSAGE (sender and SIP Call-ID) again: stored before.
    Duplicate { message_id: String },
    /// A delivery report about this outbound message (applied, or already).
    Reported { message_id: String },
    /// A delivery report about no message of the tenant.
    NoSuchMessage,
    /// A kind this build does not know: acknowledged, nothing stored.
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::store::memory::test_calls;
    use crate::calls::store::{apply_message_update as apply_update, CallRows, Calls};
    use crate::dispatch::message_line::MessageRow;
    use crate::messages::test_message;
    use crate::messages::{MessageChange, MessageUpdate};
    use futures::executor::block_on;
    use voxline_shared::sidecar_link::{InboundContent, InboundMessage};

    fn new_message(id: &str, idem: Option<(&str, &str)>) -> NewMessage {
        let mut record = test_message(MessageStatus::Queued);
        record.id = id.into();
        NewMessage {
            queued: QueuedMessage {
                message_id: id.into(),
                tenant_id: "ten_1".into(),
                from: record.from.clone(),
                to: record.to.clone(),
                body: record.body.clone(),
                queued_ms: 0,
            },
            record,
            idempotency: idem.map(|(k, f)| IdemRequest {
                key: k.into(),
                fingerprint: f.into(),
            }),
        }
    }

    fn events(rows: &impl CallRows) -> Vec<String> {
        rows.events(100)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.event_type.to_string())
            .collect()
    }

    #[test]
    fn a_message_is_stored_queued_and_an_idempotency_key_returns_it() {
        let calls = test_calls();
        let first = block_on(calls.create_message(
            "ten_1",
            &new_message("msg_00000000000001", Some(("k1", "f1"))),
        ))
        .unwrap();
        let MessageCreated::Created { record } = first else {
            panic!("{first:?}")
        };
        assert_eq!(record.status, MessageStatus::Queued);
        let again = block_on(calls.create_message(
            "ten_1",
            &new_message("msg_00000000000002", Some(("k1", "f1"))),
        ))
        .unwrap();
        assert_eq!(again, MessageCreated::Existing { record });
        let reused = block_on(calls.create_message(
            "ten_1",
            &new_message("msg_00000000000003", Some(("k1", "f2"))),
        ))
        .unwrap();
        assert_eq!(reused, MessageCreated::KeyReused);
        let q = calls.dispatch_queues.queues.borrow();
        assert_eq!(q["local"].messages.rows.len(), 1, "queued once");
    }

    #[test]
    fn reports_move_a_message_through_sending_and_sent_with_one_event_each() {
        let calls = test_calls();
        block_on(calls.create_message("ten_1", &new_message("msg_00000000000001", None))).unwrap();
        let rows = calls.rows("ten_1");
        let update = |change| MessageUpdate {
            message_id: "msg_00000000000001".into(),
            tenant_id: "ten_1".into(),
            at_ms: 5,
            change,
        };
        let mut log = Vec::new();
        let sending = update(MessageChange::Sending {
            sidecar_id: "sc-1".into(),
        });
        apply_update(&*rows, &sending, 5, &mut |m| log.push(m)).unwrap();
        let sent = update(MessageChange::Sent {
            sip_code: Some(200),
            imdn_message_id: Some("imdn-1".into()),
        });
        apply_update(&*rows, &sent, 6, &mut |m| log.push(m)).unwrap();
        // A second result (a resend the queue let through) changes nothing.
        let failed = update(MessageChange::Failed {
            reason: "no_result".into(),
            sip_code: None,
            imdn_message_id: None,
        });
        apply_update(&*rows, &failed, 7, &mut |m| log.push(m)).unwrap();
        let m = rows.message("msg_00000000000001").unwrap().unwrap();
        assert_eq!(m.status, MessageStatus::Sent);
        assert_eq!(events(&*rows), ["message.sent"]);
        assert_eq!(log.len(), 1, "{log:?}");
    }

    fn inbound_text(from: &str, call_id: &str) -> InboundMessage {
        InboundMessage {
            protocol_version: 1,
            sidecar_id: "sc-1".into(),
            region: "local".into(),
            from: from.into(),
            to: "+14155550100".into(),
            content: InboundContent::Text {
                body: "hi there".into(),
            },
            sip_call_id: call_id.into(),
            received_ms: 1_000,
        }
    }

    #[test]
    fn an_inbound_text_is_stored_once_per_sender_and_call_id() {
        let calls = test_calls();
        let first =
            block_on(calls.inbound_message("ten_1", &inbound_text("+14155550123", "c1"))).unwrap();
        let InboundVerdict::Stored { message_id } = first else {
            panic!("{first:?}")
        };
        let again =
            block_on(calls.inbound_message("ten_1", &inbound_text("+14155550123", "c1"))).unwrap();
        assert_eq!(
            again,
            InboundVerdict::Duplicate {
                message_id: message_id.clone()
            }
        );
        // Another sender with the same Call-ID is another message.
        let other =
            block_on(calls.inbound_message("ten_1", &inbound_text("+14155550124", "c1"))).unwrap();
        assert!(matches!(other, InboundVerdict::Stored { .. }));
        let rows = calls.rows("ten_1");
        let m = rows.message(&message_id).unwrap().unwrap();
        assert_eq!(
            (m.status, m.direction, m.body.as_str()),
            (
                MessageStatus::Received,
                MessageDirection::Inbound,
                "hi there"
            )
        );
        assert_eq!(events(&*rows), ["message.received", "message.received"]);
    }

    #[test]
    fn a_delivery_report_finds_the_message_by_its_imdn_id() {
        let calls = test_calls();
        block_on(calls.create_message("ten_1", &new_message("msg_00000000000001", None))).unwrap();
        let rows = calls.rows("ten_1");
        let sent = MessageUpdate {
            message_id: "msg_00000000000001".into(),
            tenant_id: "ten_1".into(),
            at_ms: 5,
            change: MessageChange::Sent {
                sip_code: Some(202),
                imdn_message_id: Some("imdn-7".into()),
            },
        };
        apply_update(&*rows, &sent, 5, &mut |_| {}).unwrap();
        let report = |imdn: &str, status: &str| InboundMessage {
            content: InboundContent::DeliveryReport {
                imdn_message_id: imdn.into(),
                status: status.into(),
            },
            ..inbound_text("+14155550199", "r1")
        };
        assert_eq!(
            block_on(calls.inbound_message("ten_1", &report("imdn-nope", "delivered"))).unwrap(),
            InboundVerdict::NoSuchMessage
        );
        let done = InboundVerdict::Reported {
            message_id: "msg_00000000000001".into(),
        };
        assert_eq!(
            block_on(calls.inbound_message("ten_1", &report("imdn-7", "delivered"))).unwrap(),
            done
        );
        // The same report again: the same answer, no second event.
        assert_eq!(
            block_on(calls.inbound_message("ten_1", &report("imdn-7", "failed"))).unwrap(),
            done
        );
        let m = rows.message("msg_00000000000001").unwrap().unwrap();
        assert_eq!(m.status, MessageStatus::Delivered);
        assert_eq!(events(&*rows), ["message.sent", "message.delivered"]);
        // Another tenant's store knows nothing of it.
        assert_eq!(
            block_on(calls.inbound_message("ten_2", &report("imdn-7", "delivered"))).unwrap(),
            InboundVerdict::NoSuchMessage
        );
    }

    #[test]
    fn a_message_a_full_queue_refuses_leaves_no_row_and_no_claim() {
        let calls = test_calls();
        {
            let mut queues = calls.dispatch_queues.queues.borrow_mut();
            let q = queues.entry("local".into()).or_default();
            for i in 0..crate::dispatch::message_line::MAX_MESSAGES {
                let mut m = new_message("msg_0000000000ffff", None).queued;
                m.message_id = format!("msg_{i:016x}");
                q.messages
                    .rows
                    .insert(m.message_id.clone(), MessageRow::Waiting { message: m });
            }
        }
        let full = block_on(calls.create_message(
            "ten_1",
            &new_message("msg_00000000000001", Some(("k", "f"))),
        ))
        .unwrap();
        assert_eq!(full, MessageCreated::QueueFull);
        let rows = calls.rows("ten_1");
        assert!(rows.message("msg_00000000000001").unwrap().is_none());
        assert!(rows.idem("k").unwrap().is_none());
    }
}
