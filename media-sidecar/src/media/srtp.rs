//! SRTP and SRTCP (RFC 3711) for one call, sans-IO: a pure transform the
//! media driver applies to every datagram, outgoing ([`SrtpTransform::protect`])
//! and incoming ([`SrtpTransform::unprotect`]), with the keys the SDP
//! negotiation settled (SDES, RFC 4568: [`crate::sip::sdp`]).
//!
//! The ciphers are webrtc-rs' `webrtc-srtp` (see Cargo.toml for why). Around it:
//! - every incoming packet is checked first (RTP header length, SRTCP index and
//!   tag room, the SRTCP E bit) so the crate only sees packets it handles
//!   without panicking; an SRTCP packet without the E bit is refused (the crate
//!   would hand it over unauthenticated; we never negotiate unencrypted SRTCP);
//! - one decryption context per remote SSRC, created for a new SSRC only when
//!   its first packet authenticates, and at most [`MAX_REMOTE_SOURCES`] of them
//!   (least recently used goes): forged packets with made-up SSRCs cannot grow
//!   state or poison a stream's replay window or rollover counter;
//! - a replay window of [`REPLAY_WINDOW`] packets per source, RTP and RTCP.
//!
//! Packets that fail are dropped and counted ([`SrtpStats`]); nothing here
//! panics on network input.

use std::fmt;

use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::random::Random;

/// Whether calls to a trunk use SRTP (`[[telephony.trunks]] srtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// Plain RTP; no `a=crypto` offered, any in the answer ignored.
    #[default]
    Off,
    /// Best effort (what FreeSWITCH, Asterisk's optimistic mode and
    /// baresip's `mediaenc=srtp` do): `RTP/AVP` with `a=crypto` lines; SRTP
    /// when the answer takes one, plain RTP when it has none.
    Optional,
    /// `RTP/SAVP` with `a=crypto` lines; an answer without an acceptable
    /// one fails the call (`sdp_no_acceptable_crypto`).
    Mandatory,
}

impl SrtpPolicy {
    pub fn is_on(self) -> bool {
        self != SrtpPolicy::Off
    }
}

/// The crypto suites we speak (RFC 4568 6.2, RFC 7714 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: the one every SDES endpoint has.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: a 4-byte RTP tag (SRTCP keeps 10).
    AesCm128HmacSha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714): AES-GCM, 16-byte tag.
    AeadAes128Gcm,
}

impl SrtpSuite {
    /// Our offer, most preferred first.
    pub const OFFER: [SrtpSuite; 3] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AeadAes128Gcm,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The SDP name.
    pub const fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// Parses an SDP suite name (names are upper-case; read case-insensitively).
    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::OFFER
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    pub const fn key_len(self) -> usize {
        16
    }

    pub const fn salt_len(self) -> usize {
        match self {
            SrtpSuite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Bytes of the `inline:` key: master key then master salt.
    pub const fn master_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// Bytes SRTP adds after an RTP packet's payload.
    pub const fn rtp_tag_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
            SrtpSuite::AeadAes128Gcm => 16,
        }
    }

    /// Bytes SRTCP adds after the (encrypted) RTCP compound: the 4-byte
    /// E-flag/index word and the tag (for GCM the tag sits before the index).
    pub const fn rtcp_trailer_len(self) -> usize {
        SRTCP_INDEX_LEN
            + match self {
                SrtpSuite::AesCm128HmacSha1_80 | SrtpSuite::AesCm128HmacSha1_32 => 10,
                SrtpSuite::AeadAes128Gcm => 16,
            }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const SRTCP_INDEX_LEN: usize = 4;

/// Packets of reordering (or duplicates) the replay window tolerates.
pub const REPLAY_WINDOW: usize = 128;

/// Remote SSRCs with a decryption context at once (the session follows one
/// stream; a switch of SSRC keeps the old one until it is the oldest).
pub const MAX_REMOTE_SOURCES: usize = 4;

/// A master key and salt, concatenated (the SDES `inline:` value). Never
/// printed: `Debug` shows only its length. Zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(Vec<u8>);

impl MasterKey {
    /// A fresh key for `suite` from `random` (the OS generator in the
    /// product: [`crate::random::OsRandom`]).
    pub fn generate(suite: SrtpSuite, random: &mut dyn Random) -> MasterKey {
        let mut k = vec![0u8; suite.master_len()];
        random.fill(&mut k);
        MasterKey(k)
    }

    /// `bytes` as a key of `suite`, if it has the suite's length.
    pub fn from_bytes(suite: SrtpSuite, bytes: &[u8]) -> Option<MasterKey> {
        (bytes.len() == suite.master_len()).then(|| MasterKey(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base64 (RFC 4648, padded), as SDES writes it after `inline:`.
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    fn split(&self, suite: SrtpSuite) -> (&[u8], &[u8]) {
        self.0.split_at(suite.key_len().min(self.0.len()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({} bytes, redacted)", self.0.len())
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Best effort: the crate's own copies of the derived session keys
        // are beyond our reach.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// What the offer/answer settled for a call: the suite, the key we send
/// with (ours, from our offer) and the key we receive with (the callee's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: SrtpSuite,
    pub local: MasterKey,
    pub remote: MasterKey,
}

/// Why a packet was not protected or unprotected (stable codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Too short, not RTP/RTCP version 2, a bad header or extension length,
    /// or an SRTCP packet without the E (encrypted) flag.
    #[error("srtp_malformed")]
    Malformed,
    /// The authentication tag does not match (forged, corrupted, or another key).
    #[error("srtp_auth_failed")]
    AuthFailed,
    /// Seen before, or older than the replay window.
    #[error("srtp_replayed")]
    Replayed,
    /// Our own packet could not be protected (e.g. the key's packet limit).
    #[error("srtp_protect_failed")]
    ProtectFailed,
    /// The keys do not fit the suite.
    #[error("srtp_bad_key")]
    BadKey,
}

impl SrtpError {
    pub fn code(self) -> &'static str {
        match self {
            SrtpError::Malformed => "srtp_malformed",
            SrtpError::AuthFailed => "srtp_auth_failed",
            SrtpError::Replayed => "srtp_replayed",
            SrtpError::ProtectFailed => "srtp_protect_failed",
            SrtpError::BadKey => "srtp_bad_key",
        }
    }
}

/// Counters of one call's SRTP (in [`crate::media::MediaStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SrtpStats {
    pub protected: u64,
    pub unprotected: u64,
    pub malformed: u64,
    pub auth_failed: u64,
    pub replayed: u64,
    pub protect_failed: u64,
}

/// Whether a datagram is RTP or RTCP (the driver knows by socket, or by
/// packet type with rtcp-mux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    Rtp,
    Rtcp,
}

struct RemoteSource {
    ssrc: u32,
    ctx: Context,
    last_used: u64,
}

/// One call's SRTP state: see the module docs.
pub struct SrtpTransform {
    suite: SrtpSuite,
    remote_key: MasterKey,
    tx: Context,
    rx: Vec<RemoteSource>,
    uses: u64,
    stats: SrtpStats,
}

impl fmt::Debug for SrtpTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpTransform")
            .field("suite", &self.suite)
            .field("remote_sources", &self.rx.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn context(suite: SrtpSuite, key: &MasterKey, replay: bool) -> Result<Context, SrtpError> {
    let (k, salt) = key.split(suite);
    if k.len() != suite.key_len() || salt.len() != suite.salt_len() {
        return Err(SrtpError::BadKey);
    }
    let (rtp, rtcp) = if replay {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(k, salt, suite.profile(), rtp, rtcp).map_err(|_| SrtpError::BadKey)
}

/// The length of an RTP packet's header (fixed part, CSRCs, extension), if
/// it is a version 2 packet whose header fits.
fn rtp_header_len(data: &[u8]) -> Option<usize> {
    let b0 = *data.first()?;
    if b0 >> 6 != 2 || data.len() < 12 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(b0 & 0x0F);
    if b0 & 0x10 != 0 {
        let ext = data.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (len <= data.len()).then_some(len)
}

impl SrtpTransform {
    pub fn new(keys: &SrtpKeys) -> Result<SrtpTransform, SrtpError> {
        // Our key only ever encrypts our one SSRC: no replay state needed.
        let tx = context(keys.suite, &keys.local, false)?;
        // Checked now, so a bad remote key fails the call's media at once.
        context(keys.suite, &keys.remote, true)?;
        Ok(SrtpTransform {
            suite: keys.suite,
            remote_key: keys.remote.clone(),
            tx,
            rx: Vec::with_capacity(MAX_REMOTE_SOURCES),
            uses: 0,
            stats: SrtpStats::default(),
        })
    }

    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    pub fn stats(&self) -> SrtpStats {
        self.stats
    }

    /// Our plain RTP or RTCP packet, protected for the wire.
    pub fn protect(&mut self, kind: Packet, plain: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let r = match kind {
            Packet::Rtp if rtp_header_len(plain).is_some() => self.tx.encrypt_rtp(plain),
            Packet::Rtcp if plain.len() >= 8 && plain[0] >> 6 == 2 => self.tx.encrypt_rtcp(plain),
            _ => {
                self.stats.protect_failed += 1;
                return Err(SrtpError::Malformed);
            }
        };
        match r {
            Ok(b) => {
                self.stats.protected += 1;
                Ok(b.to_vec())
            }
            Err(_) => {
                self.stats.protect_failed += 1;
                Err(SrtpError::ProtectFailed)
            }
        }
    }

    /// A packet from the wire, authenticated and decrypted; `Err` (counted)
    /// when it must be dropped.
    pub fn unprotect(&mut self, kind: Packet, wire: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let r = self.try_unprotect(kind, wire);
        match r {
            Ok(_) => self.stats.unprotected += 1,
            Err(SrtpError::Malformed) => self.stats.malformed += 1,
            Err(SrtpError::Replayed) => self.stats.replayed += 1,
            Err(_) => self.stats.auth_failed += 1,
        }
        r
    }

    fn try_unprotect(&mut self, kind: Packet, wire: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let ssrc = match kind {
            Packet::Rtp => {
                let header = rtp_header_len(wire).ok_or(SrtpError::Malformed)?;
                if wire.len() < header + self.suite.rtp_tag_len() {
                    return Err(SrtpError::Malformed);
                }
                u32::from_be_bytes([wire[8], wire[9], wire[10], wire[11]])
            }
            Packet::Rtcp => {
                // Header and sender SSRC in the clear, the trailer after.
                if wire.len() < 8 + self.suite.rtcp_trailer_len() || wire[0] >> 6 != 2 {
                    return Err(SrtpError::Malformed);
                }
                let tag = self.suite.rtcp_trailer_len() - SRTCP_INDEX_LEN;
                let e_at = match self.suite {
                    SrtpSuite::AeadAes128Gcm => wire.len() - SRTCP_INDEX_LEN,
                    _ => wire.len() - tag - SRTCP_INDEX_LEN,
                };
                if wire[e_at] & 0x80 == 0 {
                    return Err(SrtpError::Malformed);
                }
                u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]])
            }
        };
        self.uses += 1;
        let uses = self.uses;
        if let Some(src) = self.rx.iter_mut().find(|s| s.ssrc == ssrc) {
            let r = decrypt(&mut src.ctx, kind, wire);
            if r.is_ok() {
                src.last_used = uses;
            }
            return r;
        }
        // A new source: its context is kept only once a packet authenticates.
        let mut ctx = context(self.suite, &self.remote_key, true)?;
        let plain = decrypt(&mut ctx, kind, wire)?;
        if self.rx.len() >= MAX_REMOTE_SOURCES {
            if let Some(oldest) = self
                .rx
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
            {
                self.rx.swap_remove(oldest);
            }
        }
        self.rx.push(RemoteSource {
            ssrc,
            ctx,
            last_used: uses,
        });
        Ok(plain)
    }
}

fn decrypt(ctx: &mut Context, kind: Packet, wire: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let r = match kind {
        Packet::Rtp => ctx.decrypt_rtp(wire),
        Packet::Rtcp => ctx.decrypt_rtcp(wire),
    };
    match r {
        Ok(b) => Ok(b.to_vec()),
        Err(
            webrtc_srtp::Error::SrtpSsrcDuplicated(..)
            | webrtc_srtp::Error::SrtcpSsrcDuplicated(..),
        ) => Err(SrtpError::Replayed),
        Err(_) => Err(SrtpError::AuthFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtcp;
    use crate::media::rtp::{self, RtpHeader};
    use crate::random::SeededRandom;

    fn keys(suite: SrtpSuite, seed: u64) -> (SrtpKeys, SrtpKeys) {
        let mut r = SeededRandom::new(seed);
        let a = MasterKey::generate(suite, &mut r);
        let b = MasterKey::generate(suite, &mut r);
        (
            SrtpKeys {
                suite,
                local: a.clone(),
                remote: b.clone(),
            },
            SrtpKeys {
                suite,
                local: b,
                remote: a,
            },
        )
    }

    fn rtp_packet(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut d = vec![];
        rtp::write(
            &RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: seq,
                timestamp: u32::from(seq) * 160,
                ssrc,
            },
            payload,
            &mut d,
        );
        d
    }

    fn rtcp_report(ssrc: u32) -> Vec<u8> {
        let mut d = vec![];
        rtcp::write_report(&mut d, ssrc, None, &[]);
        rtcp::write_sdes_cname(&mut d, ssrc, "voxline-test");
        d
    }

    #[test]
    fn rtp_and_rtcp_round_trip_in_every_suite_and_tampering_is_refused() {
        for suite in SrtpSuite::OFFER {
            let (ours, theirs) = keys(suite, 7);
            let mut a = SrtpTransform::new(&ours).unwrap();
            let mut b = SrtpTransform::new(&theirs).unwrap();
            let payload: Vec<u8> = (0..160u16).map(|i| (i * 7) as u8).collect();
            for seq in 65_530..=65_535u16 {
                let plain = rtp_packet(0xA1, seq, &payload);
                let wire = a.protect(Packet::Rtp, &plain).unwrap();
                assert_eq!(wire.len(), plain.len() + suite.rtp_tag_len(), "{suite}");
                assert_ne!(
                    &wire[12..172],
                    &plain[12..],
                    "{suite}: payload not encrypted"
                );
                assert_eq!(b.unprotect(Packet::Rtp, &wire).unwrap(), plain, "{suite}");
                // The same packet again is a replay.
                assert_eq!(
                    b.unprotect(Packet::Rtp, &wire),
                    Err(SrtpError::Replayed),
                    "{suite}"
                );
            }
            // Across the sequence wrap (the rollover counter follows).
            let plain = rtp_packet(0xA1, 0, &payload);
            let wire = a.protect(Packet::Rtp, &plain).unwrap();
            assert_eq!(b.unprotect(Packet::Rtp, &wire).unwrap(), plain, "{suite}");
            // One flipped bit anywhere: refused, and the stream goes on.
            let good = a
                .protect(Packet::Rtp, &rtp_packet(0xA1, 1, &payload))
                .unwrap();
            for at in [1, 5, 20, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x01;
                assert_eq!(
                    b.unprotect(Packet::Rtp, &bad),
                    Err(SrtpError::AuthFailed),
                    "{suite}: bit flipped at {at}"
                );
            }
            assert!(b.unprotect(Packet::Rtp, &good).is_ok(), "{suite}");
            // The other direction with the other key.
            let back = rtp_packet(0xB2, 100, &payload);
            let wire = b.protect(Packet::Rtp, &back).unwrap();
            assert_eq!(a.unprotect(Packet::Rtp, &wire).unwrap(), back, "{suite}");
            // A's own packets are not B's to send: A cannot read them back.
            let own = a
                .protect(Packet::Rtp, &rtp_packet(0xA1, 2, &payload))
                .unwrap();
            assert!(a.unprotect(Packet::Rtp, &own).is_err(), "{suite}");

            // SRTCP.
            let report = rtcp_report(0xA1);
            let wire = a.protect(Packet::Rtcp, &report).unwrap();
            assert_eq!(wire.len(), report.len() + suite.rtcp_trailer_len());
            assert_eq!(b.unprotect(Packet::Rtcp, &wire).unwrap(), report, "{suite}");
            assert_eq!(
                b.unprotect(Packet::Rtcp, &wire),
                Err(SrtpError::Replayed),
                "{suite}"
            );
            let mut bad = a.protect(Packet::Rtcp, &report).unwrap();
            bad[10] ^= 0x80;
            assert_eq!(
                b.unprotect(Packet::Rtcp, &bad),
                Err(SrtpError::AuthFailed),
                "{suite}"
            );
            let s = b.stats();
            assert_eq!((s.replayed, s.auth_failed), (7, 5), "{suite}: {s:?}");
        }
    }

    #[test]
    fn srtcp_without_the_e_flag_is_refused_not_taken_unauthenticated() {
        let (ours, theirs) = keys(SrtpSuite::AesCm128HmacSha1_80, 9);
        let mut a = SrtpTransform::new(&ours).unwrap();
        let mut b = SrtpTransform::new(&theirs).unwrap();
        // Establish the source first.
        let wire = a.protect(Packet::Rtcp, &rtcp_report(0xA1)).unwrap();
        b.unprotect(Packet::Rtcp, &wire).unwrap();
        // A forged BYE in the clear with E = 0, index and a junk tag.
        let mut forged = vec![];
        rtcp::write_bye(&mut forged, 0xA1);
        forged.extend_from_slice(&5u32.to_be_bytes());
        forged.extend_from_slice(&[0u8; 10]);
        assert_eq!(
            b.unprotect(Packet::Rtcp, &forged),
            Err(SrtpError::Malformed)
        );
        assert_eq!(b.stats().malformed, 1);
    }

    #[test]
    fn forged_sources_leave_no_state_and_a_wrong_key_authenticates_nothing() {
        let (ours, theirs) = keys(SrtpSuite::AeadAes128Gcm, 11);
        let mut b = SrtpTransform::new(&theirs).unwrap();
        // An attacker without the key: a thousand SSRCs, none kept.
        let (stranger, _) = keys(SrtpSuite::AeadAes128Gcm, 12);
        let mut s = SrtpTransform::new(&stranger).unwrap();
        for ssrc in 0..1_000u32 {
            let wire = s
                .protect(Packet::Rtp, &rtp_packet(ssrc, 1, &[1; 40]))
                .unwrap();
            assert_eq!(b.unprotect(Packet::Rtp, &wire), Err(SrtpError::AuthFailed));
        }
        assert!(b.rx.is_empty());
        // The real stream is unaffected, and sources stay bounded.
        let mut a = SrtpTransform::new(&ours).unwrap();
        for ssrc in 0..10u32 {
            let wire = a
                .protect(Packet::Rtp, &rtp_packet(ssrc, 1, &[1; 40]))
                .unwrap();
            assert!(b.unprotect(Packet::Rtp, &wire).is_ok());
        }
        assert_eq!(b.rx.len(), MAX_REMOTE_SOURCES);
    }

    #[test]
    fn hostile_datagrams_never_panic() {
        let (ours, theirs) = keys(SrtpSuite::AesCm128HmacSha1_32, 13);
        let mut a = SrtpTransform::new(&ours).unwrap();
        for suite in SrtpSuite::OFFER {
            let (_, theirs) = keys(suite, 13);
            let mut b = SrtpTransform::new(&theirs).unwrap();
            let mut r = SeededRandom::new(99);
            for len in 0..120usize {
                for _ in 0..20 {
                    let mut d = vec![0u8; len];
                    r.fill(&mut d);
                    if let Some(x) = d.first_mut() {
                        *x = (*x & 0x3F) | 0x80; // version 2, so it gets past the first check
                    }
                    let _ = b.unprotect(Packet::Rtp, &d);
                    let _ = b.unprotect(Packet::Rtcp, &d);
                    if let Some(x) = d.get_mut(1) {
                        *x = 200; // an RTCP type
                    }
                    if len >= 8 {
                        let e = len - 5;
                        d[e] |= 0x80;
                    }
                    let _ = b.unprotect(Packet::Rtcp, &d);
                    let _ = a.protect(Packet::Rtp, &d);
                    let _ = a.protect(Packet::Rtcp, &d);
                }
            }
        }
        let _ = theirs;
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let (ours, _) = keys(SrtpSuite::AesCm128HmacSha1_80, 1);
        let shown = format!("{ours:?}");
        assert!(!shown.contains(&ours.local.to_base64()), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(MasterKey::from_bytes(SrtpSuite::AeadAes128Gcm, &[0; 30]).is_none());
        assert!(MasterKey::from_bytes(SrtpSuite::AeadAes128Gcm, &[0; 28]).is_some());
    }
}
