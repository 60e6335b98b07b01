//! What a tenant's call store tells a campaign's object about one of its
//! calls (placed, ended). Common ground: the call store's outbox drain
//! (`calls`, through `webhooks::delivery::QueueJob`) makes it and the
//! campaign object (`campaigns`) applies it, and `campaigns` imports
//! `webhooks`, so the type lives here.

use serde::{Deserialize, Serialize};
use voxline_shared::CallStatus;

/// A call of a campaign was placed or changed status, as its record says
/// when the event leaves the call store's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallNotice {
    pub campaign_id: String,
    /// The campaign contact's row the call is for.
    pub row: u32,
    pub call_id: String,
    pub status: CallStatus,
}
