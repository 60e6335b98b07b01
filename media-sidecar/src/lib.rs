//! The voxline media sidecar: leases calls from the edge over a signed,
//! long-polling link (HTTP/3 or HTTP/1.1), and (from issue 4 on) dials them.
//!
//! - [`lease`]: the sans-IO lease client (the protocol's state machine).
//! - [`carrier`]: the two wires (HTTP/1.1 keep-alive, HTTP/3 over QUIC).
//! - [`runtime`]: the tokio driver; [`call_task`]: one task per call
//!   ([`call_task::bridge`]: the per-call bridge, sans-IO); [`telephony`]: what
//!   the SIP calls share.
//! - [`config`]: TOML file + environment.
//! - [`recordings`], [`event_spool`]: what survives a restart (uploads, unacknowledged events).

pub mod call_task;
pub mod carrier;
pub mod config;
pub mod engine;
pub mod event_spool;
pub mod lease;
pub mod media;
pub mod random;
pub mod recordings;
pub mod runtime;
pub mod sip;
pub mod telephony;

use lease::LeaseSettings;

/// The lease settings a config implies.
pub fn lease_settings(cfg: &config::Config) -> LeaseSettings {
    let mut s = LeaseSettings::new(cfg.sidecar_id.clone(), cfg.region.clone(), cfg.capacity);
    if let Some(w) = cfg.lease_wait_ms {
        s.lease_wait_ms = w;
    }
    s
}
