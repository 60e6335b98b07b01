//! The voxline media sidecar: leases calls from the edge over a signed,
//! long-polling link (HTTP/3 or HTTP/1.1), and (from issue 4 on) dials them.
//!
//! - [`lease`]: the sans-IO lease client (the protocol's state machine).
//! - [`transport`]: the two wires (HTTP/1.1 keep-alive, HTTP/3 over QUIC).
//! - [`lease::driver`]: the tokio driver of the lease client; [`call_task`]: one
//!   task per call ([`call_task::bridge`]: the per-call bridge, sans-IO);
//!   [`telephony`]: what the SIP calls share.
//! - [`config`]: TOML file + environment.
//! - [`recordings`], [`event_spool`]: what survives a restart (uploads, unacknowledged events).
//! - [`registrations`]: the users' phones registered here (issue 16).

pub mod call_task;
pub mod config;
pub mod engine;
pub mod event_spool;
pub mod lease;
pub mod media;
pub mod metrics;
pub mod random;
pub mod recordings;
pub mod registrations;
pub mod sip;
pub mod telephony;
#[cfg(feature = "local-engine")]
pub mod transcribe;
pub mod transport;

use lease::LeaseSettings;

/// The lease settings a config implies.
pub fn lease_settings(cfg: &config::Config) -> LeaseSettings {
    let mut s = LeaseSettings::new(cfg.sidecar_id.clone(), cfg.region.clone(), cfg.capacity);
    if let Some(w) = cfg.lease_wait_ms {
        s.lease_wait_ms = w;
    }
    s
}
