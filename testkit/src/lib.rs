//! One copy of the test-harness helpers that more than one test crate needs:
//! the end-to-end suites (`tests/`, crate `voxline-e2e`, and `cargo xtask`
//! through it) and the media sidecar's integration tests
//! (`media-sidecar/tests/`, a dev-dependency).
//!
//! What belongs here: helpers with no knowledge of the edge or the sidecar
//! link, used (or useful) on both sides:
//! - [`pki`]: a throwaway CA and a server certificate for 127.0.0.1;
//! - [`caddy`]: a real caddy as the TLS / HTTP/3 front of a loopback upstream;
//! - [`net`]: free loopback ports (TCP, UDP, both, SIP pairs), "is it bound yet";
//! - [`process`]: child processes stopped on drop, external tools located
//!   (caddy, sipp, baresip, flite, dnsmasq) with the Debian package to install, a
//!   baresip phone as a callee and dnsmasq as a test zone's name server;
//! - [`dsp`]: test signals (tones), G.711 mu-law as a reference independent of
//!   the product's codec, resampling to 8 kHz, correlation and alignment;
//! - [`files`]: temporary directories, WAV files, log tails, the wall clock.
//!
//! What does not: anything that starts or talks to the edge (`wrangler dev`,
//! the admin API, sidecar processes configured against an edge, the webhook
//! receiver) stays in `tests/src`; fakes of the sidecar link (the fake edge)
//! stay in `media-sidecar/tests/support`. Everything here is blocking (std
//! only), so both the sync suites and `#[tokio::test]`s can use it; each
//! helper panics with a clear message when the harness itself fails.

pub mod caddy;
pub mod dsp;
pub mod files;
pub mod net;
pub mod pki;
pub mod process;

pub use caddy::Caddy;
pub use dsp::{
    amp_at, best_lag, find_in, flite_8k, mulaw_decode, mulaw_encode, ncc, resample_to_8k, tone,
};
pub use files::{log_tails, now_ms, read_wav, temp_dir, write_pcap, write_wav};
pub use net::{
    free_sip_port, free_tcp_port, free_tcp_udp_port, free_udp_port, udp_port_bound, wait_tcp,
};
pub use pki::{make_pki, Pki};
pub use process::{
    start_baresip, start_baresip_with, start_dnsmasq, start_registering_baresip,
    start_registering_phone, BaresipExtras, ChildGuard, PhoneBehaviour, Tool, BARESIP, CADDY,
    DNSMASQ, FLITE, SIPP,
};
