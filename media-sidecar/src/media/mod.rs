//! Media core for SIP calls: G.711 and Opus codecs, RTP/RTCP, jitter buffer,
//! DTMF (RFC 4733), recording, and a thin tokio driver per call.
//!
//! Layering (sans-IO like [`crate::lease`]):
//! - pure building blocks: [`g711`], [`resample`], [`codec`], [`rtp`],
//!   [`rtcp`], [`jitter`], [`dtmf`], [`record`], [`srtp`] (SRTP/SRTCP, a
//!   transform the driver applies to each datagram when the call negotiated it);
//! - [`session::RtpSession`]: one call's RTP/RTCP state machine. It owns no
//!   socket and no clock: the driver feeds it datagrams and the time, and ticks
//!   it every 20 ms; it answers with datagrams to send, 20 ms PCM frames heard,
//!   and events;
//! - [`driver`]: [`driver::MediaSession`], the tokio task per call that binds
//!   the UDP ports (from a configured range), runs the session, and hands the
//!   call side a [`driver::MediaHandle`] (send/recv 8 kHz PCM frames, DTMF,
//!   stats, stop).
//!
//! The call side always works in **8 kHz mono 16-bit PCM, 20 ms frames (160
//! samples)**, whatever the codec on the wire.

pub mod amd;
pub mod codec;
pub mod driver;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod record;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod srtp;

pub use codec::FRAME_8K;
pub use driver::{
    MediaConfig, MediaError, MediaEvent, MediaHandle, MediaSession, MediaStats, PortAllocator,
};
pub use session::PayloadMap;

/// The audio codecs we speak: the one codec enum of the sidecar (RTP, SDP
/// offers and answers, and `[telephony] codecs` in the config, spelled
/// `"pcmu"`, `"pcma"`, `"opus"` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// G.711 mu-law, static payload type 0, `PCMU/8000`.
    Pcmu,
    /// G.711 A-law, static payload type 8, `PCMA/8000`.
    Pcma,
    /// Opus, dynamic payload type, `opus/48000/2` (RFC 7587).
    Opus,
}

impl Codec {
    /// RTP clock rate.
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48_000,
        }
    }

    /// The SDP `a=rtpmap` encoding name.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// Channels named in the rtpmap (Opus is always `opus/48000/2`, RFC 7587).
    pub const fn channels(self) -> u8 {
        match self {
            Codec::Pcmu | Codec::Pcma => 1,
            Codec::Opus => 2,
        }
    }

    /// Timestamp units in one 20 ms frame.
    pub const fn frame_ts(self) -> u32 {
        self.clock_rate() / 50
    }

    /// The static payload type, if the codec has one.
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::Opus => None,
        }
    }

    /// The SDP `a=rtpmap` encoding name/clock[/channels].
    pub const fn rtpmap(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::Opus => "opus/48000/2",
        }
    }

    /// Parses an rtpmap encoding name (case-insensitive) and clock rate.
    pub fn from_rtpmap(name: &str, clock: u32) -> Option<Codec> {
        match (name.to_ascii_lowercase().as_str(), clock) {
            ("pcmu", 8000) => Some(Codec::Pcmu),
            ("pcma", 8000) => Some(Codec::Pcma),
            ("opus", 48_000) => Some(Codec::Opus),
            _ => None,
        }
    }
}
