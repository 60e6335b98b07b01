//! Call quality from RTP statistics: the ITU-T G.107 E-model reduced to
//! what a media endpoint can measure, as SBCs and RTP probes commonly do
//! (no echo, loudness or noise terms: those defaults are in the 93.2).
//!
//! ```text
//! delay   d  = one-way delay (RTCP round trip / 2) + jitter buffer (2 x jitter) + 10 ms codec
//! Id         = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)            (G.107, simplified)
//! Ie_eff     = Ie + (95 - Ie) x Ppl / (Ppl + Bpl)                   (G.107 7.4)
//! R          = 93.2 - Id - Ie_eff, clamped to 0..=100
//! MOS        = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)              (G.107 Annex B)
//! ```
//!
//! `Ie`/`Bpl` per codec: G.711 with packet-loss concealment, 0 / 25.1
//! (G.113 Appendix I). G.113 gives no values for Opus; at the wideband
//! bitrates we send it is at least as good as G.711, so its estimate uses
//! G.711's values (a conservative estimate, named as such in the docs).

use crate::media::Codec;

/// Equipment impairment `Ie` and packet-loss robustness `Bpl` of a codec.
fn impairment(codec: Codec) -> (f64, f64) {
    match codec {
        Codec::Pcmu | Codec::Pcma | Codec::Opus => (0.0, 25.1),
    }
}

/// The E-model R-factor (0..=100) for a call on `codec` with `loss`
/// (fraction 0..=1 of packets lost), `jitter_ms` and `one_way_ms`.
pub fn r_factor(codec: Codec, loss: f64, jitter_ms: f64, one_way_ms: f64) -> f64 {
    let clean = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
    let d = clean(one_way_ms) + 2.0 * clean(jitter_ms) + 10.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let (ie, bpl) = impairment(codec);
    let ppl = clean(loss).min(1.0) * 100.0;
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS (1.0..=4.5) of an R-factor (G.107 Annex B).
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    (1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_g711_call_scores_as_toll_quality() {
        let r = r_factor(Codec::Pcmu, 0.0, 0.0, 0.0);
        // d = 10 ms: Id = 0.24.
        assert!((r - 92.96).abs() < 1e-9, "{r}");
        let m = mos(r);
        assert!((4.39..=4.42).contains(&m), "{m}");
    }

    #[test]
    fn loss_jitter_and_delay_lower_the_score_monotonically() {
        let base = r_factor(Codec::Pcma, 0.0, 0.0, 20.0);
        let lossy = r_factor(Codec::Pcma, 0.05, 0.0, 20.0);
        let jittery = r_factor(Codec::Pcma, 0.0, 40.0, 20.0);
        let far = r_factor(Codec::Pcma, 0.0, 0.0, 300.0);
        assert!(lossy < base && jittery < base && far < base);
        // 5% loss with G.711's Bpl 25.1: Ie_eff = 95 x 5 / 30.1 = 15.78.
        assert!((base - lossy - 95.0 * 5.0 / 30.1).abs() < 1e-9);
        // Past 177.3 ms one-way the delay term steepens.
        let (a, b) = (
            r_factor(Codec::Pcmu, 0.0, 0.0, 100.0) - r_factor(Codec::Pcmu, 0.0, 0.0, 150.0),
            r_factor(Codec::Pcmu, 0.0, 0.0, 250.0) - r_factor(Codec::Pcmu, 0.0, 0.0, 300.0),
        );
        assert!(b > a, "{a} {b}");
        assert!(mos(lossy) < mos(base));
    }

    #[test]
    fn nonsense_input_stays_in_range() {
        for (l, j, d) in [
            (f64::NAN, 0.0, 0.0),
            (2.0, 1e9, 1e9),
            (-1.0, -5.0, f64::INFINITY),
        ] {
            let r = r_factor(Codec::Opus, l, j, d);
            assert!((0.0..=100.0).contains(&r), "{r}");
            assert!((1.0..=4.5).contains(&mos(r)));
        }
        assert_eq!(mos(0.0), 1.0);
        assert_eq!(mos(100.0), 4.5);
    }
}
