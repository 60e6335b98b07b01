//! Text messages (SMS, sent and received through a sidecar's SIP trunk as
//! SIP MESSAGE): the record a tenant's call store keeps of each, its status
//! machine, and the internal events its changes cause. Data the dispatch
//! queue, the call store, the webhooks and the API all hold, so a leaf.
//!
//! Outbound: `queued` (waiting in the region's queue) -> `sending` (handed
//! to a sidecar in a lease answer, at most once) -> `sent` (the trunk said
//! 2xx) | `failed` (a final non-2xx, no result by the deadline, no sidecar)
//! -> `delivered` | `undelivered` (the carrier's IMDN delivery report).
//! Inbound: `received`, and nothing after.

use crate::ids::rfc3339_ms;
use crate::model::{public_record_json, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long a sidecar has, from the lease answer that handed it a message,
/// to report the trunk's final answer (`MessageOffer::deadline_ms`); after it
/// the message is `failed` with `no_result`. A SIP MESSAGE transaction times
/// out after 32 s (Timer F), digest challenges included.
pub const RESULT_DEADLINE_MS: u64 = 60_000;
/// How long a message waits in its region's queue for a sidecar to poll;
/// after it the message is `failed` with `no_sidecar`.
pub const QUEUED_TTL_MS: u64 = 15 * 60_000;

/// `failure_reason` words the edge itself gives (besides the sidecar's:
/// `rejected`, `timeout`, `transport`, `expired`, `no_trunk`).
pub mod reasons {
    /// Handed to a sidecar, but no result came by its deadline.
    pub const NO_RESULT: &str = "no_result";
    /// No sidecar of the region polled while it waited.
    pub const NO_SIDECAR: &str = "no_sidecar";
    /// The region's queue did not answer when the message was created.
    pub const DISPATCH_UNAVAILABLE: &str = "dispatch_unavailable";
    /// A failure the sidecar reported without a reason.
    pub const FAILED: &str = "failed";
}

/// Longest `failure_reason` / IMDN status word kept.
pub const MAX_REASON_CHARS: usize = 64;
/// Longest IMDN `Message-ID`, SIP Call-ID or inbound sender the edge takes
/// from a sidecar (they become lookup keys).
pub const MAX_MATCH_ID_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageDirection {
    Outbound,
    Inbound,
}

impl MessageDirection {
    pub const ALL: [MessageDirection; 2] = [MessageDirection::Outbound, MessageDirection::Inbound];
    pub fn as_str(self) -> &'static str {
        match self {
            MessageDirection::Outbound => "outbound",
            MessageDirection::Inbound => "inbound",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Failed,
    Delivered,
    Undelivered,
    Received,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Failed,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
        MessageStatus::Received,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Received => "received",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One text message of a tenant: a row in its call store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// `msg_<hex>`, sorting newest first.
    pub id: String,
    pub direction: MessageDirection,
    pub status: MessageStatus,
    /// E.164: outbound, one of the tenant's numbers; inbound, the sender as the trunk gave it.
    pub from: String,
    /// E.164: outbound, the recipient; inbound, the tenant's number.
    pub to: String,
    pub body: String,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// The region whose sidecars send it (outbound) or whose sidecar received it.
    pub region: String,
    /// The sidecar it was handed to, or that received it.
    #[serde(default)]
    pub sidecar_id: Option<String>,
    /// The trunk's final SIP status code.
    #[serde(default)]
    pub sip_code: Option<u16>,
    /// Why it failed or was not delivered: a stable word (see [`reasons`]).
    #[serde(default)]
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub sending_at: Option<String>,
    #[serde(default)]
    pub sent_at: Option<String>,
    #[serde(default)]
    pub failed_at: Option<String>,
    #[serde(default)]
    pub delivered_at: Option<String>,
    #[serde(default)]
    pub received_at: Option<String>,
    /// The IMDN `Message-ID` the sidecar put on the MESSAGE (matches a
    /// delivery report). Not public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdn_message_id: Option<String>,
    /// Inbound: the MESSAGE's SIP Call-ID (with `from`, the dedupe key). Not public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_call_id: Option<String>,
}

impl MessageRecord {
    /// The API's and the webhooks' shape: `object: "message"`, internal
    /// matching fields left out, `metadata` as the client wrote it.
    pub fn to_public_json(&self) -> String {
        public_record_json(
            self,
            "message",
            &["imdn_message_id", "sip_call_id", "sidecar_id", "region"],
            &[],
            self.metadata.as_ref(),
        )
    }

    pub fn to_public(&self) -> Value {
        serde_json::from_str(&self.to_public_json()).unwrap_or(Value::Null)
    }

    /// A listing row: the record without its metadata.
    pub fn summary(&self) -> Value {
        let mut v = self.to_public();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
        }
        v
    }
}

/// A change to an outbound message, from the region's queue (`Sending`,
/// `Sent`, `Failed`) or a delivery report (`Delivered`, `Undelivered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageChange {
    Sending {
        sidecar_id: String,
    },
    Sent {
        sip_code: Option<u16>,
        imdn_message_id: Option<String>,
    },
    Failed {
        reason: String,
        sip_code: Option<u16>,
        #[serde(default)]
        imdn_message_id: Option<String>,
    },
    Delivered,
    Undelivered {
        /// The IMDN status word (`failed`, `forbidden`, `error`).
        reason: String,
    },
}

/// A change the tenant's call store applies to one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageUpdate {
    pub message_id: String,
    pub tenant_id: String,
    pub at_ms: u64,
    pub change: MessageChange,
}

/// What happened to a message that endpoints hear about: one internal event,
/// which each webhook format renders in its own words (native:
/// `message.sent` and so on, with the public record as `data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageEvent {
    /// The trunk accepted an outbound message (2xx).
    Sent,
    /// An outbound message could not be sent.
    Failed,
    /// A message to one of the tenant's numbers arrived.
    Received,
    /// The carrier reported an outbound message delivered.
    Delivered,
    /// The carrier reported an outbound message not delivered.
    Undelivered,
}

/// Why a change was not applied: the message is past it (first result wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    pub from: MessageStatus,
}

/// Applies `change` at `at_ms`; returns the event it causes. A change the
/// message's status does not allow (a second result, a report about a failed
/// message, anything on an inbound one) changes nothing.
pub fn apply(
    record: &mut MessageRecord,
    change: &MessageChange,
    at_ms: u64,
) -> Result<Option<MessageEvent>, Unchanged> {
    use MessageStatus as S;
    let unchanged = Unchanged {
        from: record.status,
    };
    if record.direction != MessageDirection::Outbound {
        return Err(unchanged);
    }
    let at = rfc3339_ms(at_ms);
    let event = match (record.status, change) {
        (S::Queued, MessageChange::Sending { sidecar_id }) => {
            record.status = S::Sending;
            record.sidecar_id = Some(sidecar_id.clone());
            record.sending_at = Some(at.clone());
            None
        }
        (
            S::Queued | S::Sending,
            MessageChange::Sent {
                sip_code,
                imdn_message_id,
            },
        ) => {
            record.status = S::Sent;
            record.sip_code = *sip_code;
            record.imdn_message_id.clone_from(imdn_message_id);
            record.sent_at = Some(at.clone());
            Some(MessageEvent::Sent)
        }
        (
            S::Queued | S::Sending,
            MessageChange::Failed {
                reason,
                sip_code,
                imdn_message_id,
            },
        ) => {
            record.status = S::Failed;
            record.sip_code = *sip_code;
            record.failure_reason = Some(bounded_word(reason));
            record.imdn_message_id.clone_from(imdn_message_id);
            record.failed_at = Some(at.clone());
            Some(MessageEvent::Failed)
        }
        // A report may overtake the sidecar's result on its way here.
        (S::Sending | S::Sent, MessageChange::Delivered) => {
            record.status = S::Delivered;
            record.delivered_at = Some(at.clone());
            Some(MessageEvent::Delivered)
        }
        (S::Sending | S::Sent, MessageChange::Undelivered { reason }) => {
            record.status = S::Undelivered;
            record.failure_reason = Some(bounded_word(reason));
            record.failed_at = Some(at.clone());
            Some(MessageEvent::Undelivered)
        }
        _ => return Err(unchanged),
    };
    record.updated_at = at;
    Ok(event)
}

/// E.164 as the API takes it: `+`, no leading zero, 7 to 15 digits (the
/// same rule as `api::validate::check_e164`, which gives the API's error).
pub fn is_e164(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or("");
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// A stable word from the sidecar: kept short.
pub fn bounded_word(s: &str) -> String {
    let w: String = s.chars().take(MAX_REASON_CHARS).collect();
    if w.is_empty() {
        reasons::FAILED.to_string()
    } else {
        w
    }
}

/// What an IMDN delivery-notification status word means (RFC 5438 §7.2.1.1):
/// `delivered`: delivered; `failed`, `forbidden`, `error`: not; anything
/// else (a display or processing notification): no change.
pub fn delivery_change(imdn_status: &str) -> Option<MessageChange> {
    match imdn_status.trim().to_ascii_lowercase().as_str() {
        "delivered" => Some(MessageChange::Delivered),
        "failed" | "forbidden" | "error" => Some(MessageChange::Undelivered {
            reason: imdn_status.trim().to_ascii_lowercase(),
        }),
        _ => None,
    }
}

/// A plain outbound message for unit tests.
#[cfg(test)]
pub fn test_message(status: MessageStatus) -> MessageRecord {
    MessageRecord {
        id: "msg_ffffffffffff0000000001".into(),
        direction: MessageDirection::Outbound,
        status,
        from: "+14155550100".into(),
        to: "+14155550199".into(),
        body: "hello".into(),
        metadata: None,
        region: "local".into(),
        sidecar_id: None,
        sip_code: None,
        failure_reason: None,
        created_at: rfc3339_ms(0),
        updated_at: rfc3339_ms(0),
        sending_at: None,
        sent_at: None,
        failed_at: None,
        delivered_at: None,
        received_at: None,
        imdn_message_id: None,
        sip_call_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus as S;

    fn sent() -> MessageChange {
        MessageChange::Sent {
            sip_code: Some(202),
            imdn_message_id: Some("imdn-1".into()),
        }
    }
    fn failed(reason: &str) -> MessageChange {
        MessageChange::Failed {
            reason: reason.into(),
            sip_code: Some(403),
            imdn_message_id: None,
        }
    }

    #[test]
    fn an_outbound_message_goes_queued_sending_sent_delivered() {
        let mut m = test_message(S::Queued);
        let sending = MessageChange::Sending {
            sidecar_id: "sc-1".into(),
        };
        assert_eq!(apply(&mut m, &sending, 10), Ok(None));
        assert_eq!(
            (m.status, m.sidecar_id.as_deref()),
            (S::Sending, Some("sc-1"))
        );
        assert_eq!(apply(&mut m, &sent(), 20), Ok(Some(MessageEvent::Sent)));
        assert_eq!(
            (m.status, m.sip_code, m.imdn_message_id.as_deref()),
            (S::Sent, Some(202), Some("imdn-1"))
        );
        assert_eq!(m.sent_at, Some(rfc3339_ms(20)));
        assert_eq!(
            apply(&mut m, &MessageChange::Delivered, 30),
            Ok(Some(MessageEvent::Delivered))
        );
        assert_eq!(
            (m.status, m.delivered_at.clone()),
            (S::Delivered, Some(rfc3339_ms(30)))
        );
        // Nothing after the end; a second report changes nothing.
        assert!(apply(&mut m, &MessageChange::Delivered, 40).is_err());
        assert!(apply(&mut m, &failed("rejected"), 40).is_err());
        assert_eq!(m.updated_at, rfc3339_ms(30));
    }

    #[test]
    fn the_first_result_wins_and_failures_keep_their_reason() {
        let mut m = test_message(S::Sending);
        assert_eq!(
            apply(&mut m, &failed("rejected"), 5),
            Ok(Some(MessageEvent::Failed))
        );
        assert_eq!(
            (m.status, m.failure_reason.as_deref(), m.sip_code),
            (S::Failed, Some("rejected"), Some(403))
        );
        assert!(
            apply(&mut m, &sent(), 6).is_err(),
            "a late success is not applied"
        );
        assert!(apply(&mut m, &MessageChange::Delivered, 7).is_err());
        assert_eq!(m.status, S::Failed);
        let mut m = test_message(S::Sent);
        assert!(apply(&mut m, &failed("no_result"), 5).is_err());
        let undelivered = MessageChange::Undelivered {
            reason: "forbidden".into(),
        };
        assert_eq!(
            apply(&mut m, &undelivered, 8),
            Ok(Some(MessageEvent::Undelivered))
        );
        assert_eq!(m.failure_reason.as_deref(), Some("forbidden"));
        // An empty or overlong reason is bounded.
        let mut m = test_message(S::Queued);
        apply(&mut m, &failed(&"x".repeat(500)), 1).unwrap();
        assert_eq!(m.failure_reason.map(|r| r.len()), Some(MAX_REASON_CHARS));
    }

    #[test]
    fn an_inbound_message_never_changes() {
        let mut m = test_message(S::Received);
        m.direction = MessageDirection::Inbound;
        for change in [sent(), failed("x"), MessageChange::Delivered] {
            assert!(apply(&mut m, &change, 1).is_err());
        }
        assert!(
            apply(&mut test_message(S::Queued), &MessageChange::Delivered, 1).is_err(),
            "a queued message was never sent"
        );
    }

    #[test]
    fn imdn_words_map_to_delivered_undelivered_or_nothing() {
        assert_eq!(delivery_change("delivered"), Some(MessageChange::Delivered));
        assert_eq!(
            delivery_change(" Forbidden "),
            Some(MessageChange::Undelivered {
                reason: "forbidden".into()
            })
        );
        assert_eq!(delivery_change("displayed"), None);
    }

    #[test]
    fn the_public_record_hides_matching_fields_and_keeps_metadata_text() {
        let mut m = test_message(S::Sent);
        m.imdn_message_id = Some("imdn-1".into());
        m.metadata = Metadata::from_json_text(r#"{"b": 1.50, "a": 1}"#);
        let text = m.to_public_json();
        assert!(text.contains(r#""metadata":{"b":1.50,"a":1}"#), "{text}");
        let v = m.to_public();
        assert_eq!(
            (v["object"].as_str(), v["status"].as_str()),
            (Some("message"), Some("sent"))
        );
        for hidden in ["imdn_message_id", "sip_call_id", "sidecar_id", "region"] {
            assert!(v.get(hidden).is_none(), "{hidden}");
        }
        assert!(m.summary().get("metadata").is_none());
        // Round trip through storage.
        let back: MessageRecord =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
