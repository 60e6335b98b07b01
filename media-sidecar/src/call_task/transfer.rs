//! Transfers out of a call (issues 16 and 18), the pure parts: the media
//! relay between the two legs of a bridged call, and the rules the bridge
//! ([`super::bridge`]) follows for the `transfer` tool.
//!
//! A transfer goes one of two ways:
//! - **REFER** (RFC 3515), where the call's trunk is configured for it
//!   (`refer = true`): the trunk calls the destination itself; its NOTIFYs
//!   say how that goes, and once the destination answered (sipfrag 2xx) our
//!   side hangs up (`ended` reason `transferred`).
//! - **Bridge** (B2BUA) otherwise, or when the trunk refuses REFER as a
//!   method ([`refer_falls_back`]): the sidecar dials the destination as a
//!   second leg through the trunks, and once it answers detaches the engine
//!   and relays audio between the legs through its own media sessions. Each
//!   leg's [`crate::media::MediaHandle`] decodes its own codec to 8 kHz PCM
//!   and encodes to it, so legs with different codecs (PCMU and PCMA, or
//!   Opus) are transcoded on the way; the callee's leg keeps recording
//!   (right: the callee, left: what they hear, now the transferred-to
//!   party). Either side's BYE hangs up the other.
//!
//! The [`Relay`] moves audio in 20 ms frames with a bounded backlog per
//! direction: a leg whose media cannot take audio as fast as the other
//! gives it (clock drift, a stalled socket) loses its oldest audio, so the
//! delay through the bridge never grows past [`MAX_RELAY_BACKLOG_MS`].

use std::collections::VecDeque;
use std::time::Duration;

use crate::media::codec::FRAME_8K;
use crate::sip::endpoint::Trunk;

/// How long the second leg may ring before the transfer fails `no_answer`.
pub const TRANSFER_RING_TIMEOUT: Duration = Duration::from_secs(30);

/// A REFER whose NOTIFYs have not reported the destination's answer by
/// then fails `no_answer` (the trunk's own ring time is usually shorter).
pub const REFER_TIMEOUT: Duration = Duration::from_secs(45);

/// The most audio one direction of the relay holds back.
pub const MAX_RELAY_BACKLOG_MS: usize = 200;

const SAMPLES_PER_MS: usize = 8;

/// Whether a trunk's refusal of a REFER (`code`) means it does not do
/// REFER at all (405, 501; 420 or 489 for its extension or event package),
/// so the transfer goes on as a bridge; any other refusal is the transfer's
/// failure.
pub fn refer_falls_back(code: u16) -> bool {
    matches!(code, 405 | 420 | 489 | 501)
}

/// Where a second leg goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegTarget {
    /// A number (E.164), dialled through the trunks in force, as the call was
    /// (the `transfer` tool's only kind: an engine never names an address).
    Number(String),
    /// A SIP contact URI with an IP address (a registered user's phone,
    /// e.g. `sip:alice@192.0.2.5:5062`), dialled directly: see [`contact_leg`].
    Contact(String),
    /// A person of the tenant (the edge resolved their extension): their
    /// phone registered with this sidecar most recently
    /// ([`crate::registrations`]), dialled as a [`LegTarget::Contact`]; none
    /// registered here: the transfer fails `user_unavailable`.
    User { user_pk: u64, extension: String },
}

/// What a cloud engine is told of the people its `transfer` tool may
/// reach (the offer's `transfer_people`), added to its instructions; `None`
/// when there are none. Names are the tenant's directory's, cleaned of
/// control characters and cut at 64 characters.
pub fn people_instruction(
    people: &[voxline_shared::sidecar_link::TransferPerson],
) -> Option<String> {
    if people.is_empty() {
        return None;
    }
    let listed: Vec<String> = people
        .iter()
        .map(|p| {
            let name: String = p
                .display_name
                .as_deref()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            match name.trim() {
                "" => p.extension.clone(),
                n => format!("{} ({n})", p.extension),
            }
        })
        .collect();
    Some(format!(
        "You can transfer the caller to these people with the transfer tool's `extension`: {}. \
         No other extension can be reached.",
        listed.join(", ")
    ))
}

/// Hold audio is made this much longer than the ring time, so the callee
/// never hears it run out before the transfer has its answer.
pub const HOLD_AUDIO_MARGIN: Duration = Duration::from_secs(5);

/// What a callee on hold hears during a warm transfer, 8 kHz PCM of
/// `length`: a soft two-tone chime (440 Hz then 554 Hz, 250 ms each, about
/// -20 dBFS) every 3 s over silence, so they know the line is alive.
pub fn hold_audio(length: Duration) -> Vec<i16> {
    const PERIOD: usize = 3 * 8_000;
    const NOTE: usize = 2_000;
    let n = (length.as_millis() as usize) * SAMPLES_PER_MS;
    (0..n)
        .map(|i| {
            let at = i % PERIOD;
            let hz = match at {
                a if a < NOTE => 440.0,
                a if a < 2 * NOTE => 554.37,
                _ => return 0,
            };
            // A short fade in and out of each note, so it does not click.
            let into = at % NOTE;
            let fade = (into.min(NOTE - into) as f64 / 160.0).min(1.0);
            let phase = 2.0 * std::f64::consts::PI * hz * i as f64 / 8_000.0;
            (3_000.0 * fade * phase.sin()) as i16
        })
        .collect()
}

/// The "trunk" and user a contact URI is dialled as: its address (an IP
/// literal and port; no DNS here) over UDP, and its user part. `None` for
/// a URI without a user, with a host name, or that does not parse.
pub fn contact_leg(uri: &str) -> Option<(Trunk, String)> {
    let addr = crate::sip::call::uri_socket_addr(uri)?;
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let user = rest.rsplit_once('@').map_or("", |(u, _)| u);
    if user.is_empty()
        || user
            .chars()
            .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | ' '))
    {
        return None;
    }
    let mut trunk = Trunk::new(addr);
    // Requests in its dialog come from the phone itself.
    trunk.in_dialog_from_trunk_only = true;
    Some((trunk, user.to_string()))
}

/// One of the two legs of a bridged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The call's own leg: the person the agent talked to.
    Callee,
    /// The leg the sidecar dialled: who the callee was transferred to.
    Transferee,
}

impl Leg {
    fn other(self) -> Leg {
        match self {
            Leg::Callee => Leg::Transferee,
            Leg::Transferee => Leg::Callee,
        }
    }
}

/// What the relay has moved and dropped, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Frames handed to the transferee / to the callee.
    pub to_transferee_frames: u64,
    pub to_callee_frames: u64,
    /// Samples dropped because a direction's backlog was full.
    pub dropped_samples: u64,
}

/// The media relay of a bridged call, sans-IO: audio heard on one leg
/// ([`Relay::heard`], 8 kHz PCM of any length) comes out for the other leg
/// in whole 20 ms frames ([`Relay::next_frame`]).
#[derive(Debug, Clone)]
pub struct Relay {
    to_callee: VecDeque<i16>,
    to_transferee: VecDeque<i16>,
    max_samples: usize,
    stats: RelayStats,
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new(MAX_RELAY_BACKLOG_MS)
    }
}

impl Relay {
    /// A relay holding back at most `max_backlog_ms` per direction (at
    /// least one frame).
    pub fn new(max_backlog_ms: usize) -> Relay {
        Relay {
            to_callee: VecDeque::new(),
            to_transferee: VecDeque::new(),
            max_samples: (max_backlog_ms * SAMPLES_PER_MS).max(FRAME_8K),
            stats: RelayStats::default(),
        }
    }

    fn queue(&mut self, to: Leg) -> &mut VecDeque<i16> {
        match to {
            Leg::Callee => &mut self.to_callee,
            Leg::Transferee => &mut self.to_transferee,
        }
    }

    /// Audio heard on leg `from`: queued for the other leg; beyond the
    /// backlog the oldest samples go.
    pub fn heard(&mut self, from: Leg, pcm: &[i16]) {
        let max = self.max_samples;
        let q = self.queue(from.other());
        q.extend(pcm.iter().copied());
        let excess = q.len().saturating_sub(max);
        q.drain(..excess);
        self.stats.dropped_samples += excess as u64;
    }

    /// The next whole 20 ms frame (160 samples) for leg `to`, if one is queued.
    pub fn next_frame(&mut self, to: Leg) -> Option<Vec<i16>> {
        let q = self.queue(to);
        if q.len() < FRAME_8K {
            return None;
        }
        let frame: Vec<i16> = q.drain(..FRAME_8K).collect();
        match to {
            Leg::Callee => self.stats.to_callee_frames += 1,
            Leg::Transferee => self.stats.to_transferee_frames += 1,
        }
        Some(frame)
    }

    /// Samples waiting for leg `to`.
    pub fn backlog(&self, to: Leg) -> usize {
        match to {
            Leg::Callee => self.to_callee.len(),
            Leg::Transferee => self.to_transferee.len(),
        }
    }

    pub fn stats(&self) -> RelayStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Law;

    fn tone(hz: f64, n: usize, from: usize) -> Vec<i16> {
        (from..from + n)
            .map(|i| {
                (8_000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8_000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn audio_goes_to_the_other_leg_in_whole_frames_in_order() {
        let mut r = Relay::default();
        // 100 samples: no frame yet; 120 more: one frame, 60 left.
        let a = tone(440.0, 100, 0);
        let b = tone(440.0, 120, 100);
        r.heard(Leg::Callee, &a);
        assert_eq!(r.next_frame(Leg::Transferee), None);
        assert_eq!(r.next_frame(Leg::Callee), None, "nothing goes back");
        r.heard(Leg::Callee, &b);
        let f = r.next_frame(Leg::Transferee).expect("a frame");
        assert_eq!(f.len(), FRAME_8K);
        let whole: Vec<i16> = a.iter().chain(&b).copied().collect();
        assert_eq!(f, whole[..FRAME_8K]);
        assert_eq!(r.backlog(Leg::Transferee), 60);
        // The other direction is independent.
        r.heard(Leg::Transferee, &tone(1000.0, 160, 0));
        assert_eq!(r.next_frame(Leg::Callee), Some(tone(1000.0, 160, 0)));
        assert_eq!(
            r.stats(),
            RelayStats {
                to_transferee_frames: 1,
                to_callee_frames: 1,
                dropped_samples: 0
            }
        );
    }

    #[test]
    fn a_leg_that_falls_behind_loses_its_oldest_audio_not_the_delay_bound() {
        let mut r = Relay::new(100); // 800 samples
        for k in 0..10 {
            r.heard(Leg::Transferee, &tone(300.0, FRAME_8K, k * FRAME_8K));
        }
        assert_eq!(r.backlog(Leg::Callee), 800);
        assert_eq!(r.stats().dropped_samples, 1600 - 800);
        // What is left is the newest audio.
        let first = r.next_frame(Leg::Callee).unwrap();
        assert_eq!(first, tone(300.0, FRAME_8K, 800));
    }

    /// Legs with different G.711 laws: what the callee's leg decodes
    /// (PCMU) is relayed and encoded for the other (PCMA); the tone arrives
    /// within G.711's quantisation.
    #[test]
    fn a_pcmu_leg_is_transcoded_to_a_pcma_leg() {
        let sent = tone(440.0, FRAME_8K * 3, 0);
        let mut r = Relay::default();
        let (mut ulaw, mut heard) = (Vec::new(), Vec::new());
        Law::Mu.encode(&sent, &mut ulaw);
        Law::Mu.decode(&ulaw, &mut heard);
        r.heard(Leg::Callee, &heard);
        let mut out = Vec::new();
        while let Some(f) = r.next_frame(Leg::Transferee) {
            let mut alaw = Vec::new();
            Law::A.encode(&f, &mut alaw);
            Law::A.decode(&alaw, &mut out);
        }
        assert_eq!(out.len(), sent.len());
        let err: f64 = sent
            .iter()
            .zip(&out)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / sent.len() as f64;
        let power: f64 =
            sent.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>() / sent.len() as f64;
        // G.711 twice: still about 30 dB signal to noise.
        assert!(10.0 * (power / err).log10() > 25.0, "SNR too low");
    }

    #[test]
    fn a_contact_uri_is_dialled_at_its_address_as_its_user() {
        let (t, user) = contact_leg("sip:alice@192.0.2.5:5062;transport=udp").unwrap();
        assert_eq!(
            (t.addr, user.as_str()),
            ("192.0.2.5:5062".parse().unwrap(), "alice")
        );
        let (t, user) = contact_leg("sip:bob@[2001:db8::7]").unwrap();
        assert_eq!(
            (t.addr, user.as_str()),
            ("[2001:db8::7]:5060".parse().unwrap(), "bob")
        );
        for bad in [
            "sip:alice@phone.example",
            "sip:192.0.2.5:5062",
            "tel:+14155550100",
            "sip:a b@192.0.2.5",
            "nonsense",
        ] {
            assert!(contact_leg(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_people_the_engine_may_transfer_to_are_named_to_it() {
        use voxline_shared::sidecar_link::TransferPerson;
        assert_eq!(people_instruction(&[]), None);
        let text = people_instruction(&[
            TransferPerson {
                user_pk: 7,
                extension: "1001".into(),
                display_name: Some("Alice\nSmith".into()),
            },
            TransferPerson {
                user_pk: 8,
                extension: "1002".into(),
                display_name: None,
            },
        ])
        .unwrap();
        assert!(
            text.contains("`extension`: 1001 (AliceSmith), 1002."),
            "{text}"
        );
    }

    #[test]
    fn hold_audio_chimes_every_three_seconds_over_silence() {
        let pcm = hold_audio(Duration::from_secs(7));
        assert_eq!(pcm.len(), 7 * 8_000);
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        for start in [0, 24_000, 48_000] {
            assert!(
                rms(&pcm[start..start + 4_000]) > 1_000.0,
                "a chime at {start}"
            );
            assert_eq!(rms(&pcm[start + 4_000..start + 8_000]), 0.0, "then silence");
        }
        assert!(pcm.iter().all(|s| s.unsigned_abs() <= 3_000), "soft");
    }

    #[test]
    fn only_method_refusals_fall_back_to_a_bridge() {
        for c in [405, 420, 489, 501] {
            assert!(refer_falls_back(c), "{c}");
        }
        for c in [403, 404, 480, 486, 503, 603] {
            assert!(!refer_falls_back(c), "{c}");
        }
    }
}
