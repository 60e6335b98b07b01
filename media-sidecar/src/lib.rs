//! The voxline media sidecar: leases calls from the edge over a signed,
//! long-polling link (HTTP/3 or HTTP/1.1), and (from issue 4 on) dials them.

pub mod lease;
