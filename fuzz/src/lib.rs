//! The bodies of the fuzz targets: one function per target taking the
//! fuzzer's bytes. `cargo xtask fuzz` runs them under libFuzzer (coverage
//! guided, `fuzz_targets/*.rs`); `tests/replay.rs` runs every committed corpus
//! file and every regression input through the same functions in the normal
//! test run, uninstrumented.
//!
//! A target fails by panicking: the code under test panicked (on input from
//! the network or a tenant, which it must never do), or an invariant checked
//! here broke (e.g. the call state machine sent a datagram our own parser
//! rejects, or reported an event after `Ended`).
//!
//! Structure-aware targets decode their bytes with `arbitrary` into steps
//! (responses and requests built on the call's own Call-ID, tags and
//! branches; packet sequences with arrival times), so the fuzzer spends its
//! time inside the state machines rather than at their front door.

pub mod edge;
pub mod engine;
pub mod media;
pub mod sip;

/// A fuzz target: its name (the libFuzzer binary and `fuzz/corpus/<name>/`),
/// what it covers, and its body.
pub struct Target {
    pub name: &'static str,
    pub covers: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "sip_parser",
        covers: "SIP message parser, accessors, rsip view, re-serialisation, Digest challenges, TCP stream framer",
        run: sip::sip_parser,
    },
    Target {
        name: "sip_call",
        covers: "UAC call state machine fed responses and in-dialog requests built on its own Call-ID/tags/branch, with time",
        run: sip::sip_call,
    },
    Target {
        name: "sdp",
        covers: "SDP answer/offer negotiation against our offers",
        run: sip::sdp,
    },
    Target {
        name: "rtp_rtcp",
        covers: "RTP and RTCP packet parsers, writer round trip, sequence/timestamp unwrapping, receiver statistics",
        run: media::rtp_rtcp,
    },
    Target {
        name: "rtp_session",
        covers: "one call's RTP/RTCP session (latching, SSRC changes, decoding, DTMF, RTCP) fed packet sequences and ticks",
        run: media::rtp_session,
    },
    Target {
        name: "dtmf",
        covers: "RFC 4733 telephone-event receiver and sender",
        run: media::dtmf,
    },
    Target {
        name: "jitter",
        covers: "adaptive jitter buffer fed packets with arbitrary sequence/timestamp/arrival times",
        run: media::jitter,
    },
    Target {
        name: "edge_json",
        covers: "edge request-body validation (create call, agent create/patch, sidecar protocol messages, strict field reader)",
        run: edge::edge_json,
    },
    Target {
        name: "engine_openai",
        covers: "OpenAI Realtime client fed server events over a loopback websocket",
        run: engine::engine_openai,
    },
    Target {
        name: "engine_gemini",
        covers: "Gemini Live client fed server messages over a loopback websocket",
        run: engine::engine_gemini,
    },
];

/// `VOXLINE_FUZZ_DEBUG=1`: structure-aware targets print what they decoded
/// and what went back and forth (for reading a crash input).
pub fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("VOXLINE_FUZZ_DEBUG").is_some_and(|v| v == "1"))
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
