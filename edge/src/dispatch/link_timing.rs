//! The sidecar link's timing as the region's dispatch queue sees it (issue
//! 19: the operators' "latency of the sidecars"). The one figure the edge can
//! measure on its own clock alone is a lease poll's *turnaround*: from the
//! moment the queue answered a sidecar's poll to the moment that sidecar's
//! next poll reached it. A sidecar polls again as soon as it has read an
//! answer, so the turnaround is the link's round trip (Worker <-> sidecar,
//! both ways, and the Worker <-> object hops) plus the sidecar's own time to
//! turn round; no clock of the sidecar is involved.
//!
//! Samples are kept exact and bounded: the newest [`MAX_LINK_SAMPLES`] per
//! sidecar, one row each in the object's `q_link` table (written as
//! [`LinkTiming::take_new`] hands them over, older rows deleted).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Samples kept per sidecar (at one poll per lease wait, minutes of history).
pub const MAX_LINK_SAMPLES: usize = 120;
/// A poll arriving longer than this after the last answer is a reconnect
/// (the sidecar backed off, restarted or lost the link), not a turnaround.
pub const MAX_TURNAROUND_MS: u64 = 30_000;

/// One lease poll's turnaround.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSample {
    /// When the poll arrived (unix ms, the object's clock).
    pub at_ms: u64,
    pub turnaround_ms: u64,
}

/// New samples (sidecar, sample) to insert, and per sidecar the time of its
/// oldest sample kept (older rows go): [`LinkTiming::take_new`].
pub type LinkChanges = (Vec<(String, LinkSample)>, Vec<(String, u64)>);

/// The samples of a region's sidecars, and those not stored yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkTiming {
    samples: BTreeMap<String, VecDeque<LinkSample>>,
    new: Vec<(String, LinkSample)>,
}

impl LinkTiming {
    /// Back from stored rows (any order): the newest [`MAX_LINK_SAMPLES`] of each sidecar.
    pub fn from_rows(rows: Vec<(String, LinkSample)>) -> LinkTiming {
        let mut t = LinkTiming::default();
        let mut rows = rows;
        rows.sort_by_key(|(_, s)| s.at_ms);
        for (sidecar, sample) in rows {
            t.keep(&sidecar, sample);
        }
        t
    }

    fn keep(&mut self, sidecar_id: &str, sample: LinkSample) {
        let list = self.samples.entry(sidecar_id.to_string()).or_default();
        list.push_back(sample);
        while list.len() > MAX_LINK_SAMPLES {
            list.pop_front();
        }
    }

    /// A poll of `sidecar_id` arrived at `now`; the queue last answered one
    /// of its polls at `last_answered_ms`. Records the turnaround, unless the
    /// gap is a reconnect or the poll overlapped the answer.
    pub fn poll_arrived(&mut self, sidecar_id: &str, last_answered_ms: Option<u64>, now: u64) {
        let Some(answered) = last_answered_ms else {
            return;
        };
        if now < answered || now - answered > MAX_TURNAROUND_MS {
            return;
        }
        // One sample per millisecond per sidecar (the row's key).
        if self
            .samples
            .get(sidecar_id)
            .and_then(|l| l.back())
            .is_some_and(|s| s.at_ms >= now)
        {
            return;
        }
        let sample = LinkSample {
            at_ms: now,
            turnaround_ms: now - answered,
        };
        self.keep(sidecar_id, sample);
        self.new.push((sidecar_id.to_string(), sample));
    }

    /// The samples of one sidecar, oldest first.
    pub fn samples(&self, sidecar_id: &str) -> Vec<LinkSample> {
        self.samples
            .get(sidecar_id)
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The samples recorded since the last call (to insert as rows), and per
    /// sidecar they belong to, the time of its oldest sample still kept: rows
    /// older than that are deleted.
    pub fn take_new(&mut self) -> LinkChanges {
        let new = std::mem::take(&mut self.new);
        let mut oldest: Vec<(String, u64)> = Vec::new();
        for (sidecar, _) in &new {
            if oldest.iter().any(|(s, _)| s == sidecar) {
                continue;
            }
            if let Some(first) = self.samples.get(sidecar).and_then(|l| l.front()) {
                oldest.push((sidecar.clone(), first.at_ms));
            }
        }
        (new, oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turnaround_is_from_the_answer_to_the_next_poll() {
        let mut t = LinkTiming::default();
        // The first poll has no answer before it.
        t.poll_arrived("sc-1", None, 1_000);
        assert!(t.samples("sc-1").is_empty());
        t.poll_arrived("sc-1", Some(1_500), 1_512);
        t.poll_arrived("sc-1", Some(2_000), 2_003);
        assert_eq!(
            t.samples("sc-1"),
            vec![
                LinkSample {
                    at_ms: 1_512,
                    turnaround_ms: 12
                },
                LinkSample {
                    at_ms: 2_003,
                    turnaround_ms: 3
                }
            ]
        );
        // A reconnect after a long gap, a poll before the answer: no sample.
        t.poll_arrived("sc-1", Some(3_000), 3_000 + MAX_TURNAROUND_MS + 1);
        t.poll_arrived("sc-1", Some(50_000), 49_999);
        assert_eq!(t.samples("sc-1").len(), 2);
        assert!(t.samples("sc-2").is_empty());
        let (new, oldest) = t.take_new();
        assert_eq!(new.len(), 2);
        assert_eq!(oldest, vec![("sc-1".to_string(), 1_512)]);
        assert_eq!(t.take_new(), (Vec::new(), Vec::new()));
    }

    #[test]
    fn samples_are_bounded_per_sidecar_and_survive_a_reload() {
        let mut t = LinkTiming::default();
        for i in 0..(MAX_LINK_SAMPLES as u64 + 30) {
            let at = 10_000 + i * 1_000;
            t.poll_arrived("sc-1", Some(at - 5 - i % 7), at);
        }
        t.poll_arrived("sc-2", Some(99), 100);
        let kept = t.samples("sc-1");
        assert_eq!(kept.len(), MAX_LINK_SAMPLES);
        assert_eq!(kept[0].at_ms, 10_000 + 30 * 1_000);
        let (new, oldest) = t.take_new();
        assert_eq!(new.len(), MAX_LINK_SAMPLES + 31);
        assert!(oldest.contains(&("sc-1".to_string(), 40_000)));
        // What the rows hold (newest per sidecar, any order) reads back the same.
        let mut rows: Vec<(String, LinkSample)> = new;
        rows.reverse();
        let back = LinkTiming::from_rows(rows);
        assert_eq!(back.samples("sc-1"), kept);
        assert_eq!(back.samples("sc-2").len(), 1);
    }
}
