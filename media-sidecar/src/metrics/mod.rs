//! Operations: Prometheus metrics and the health answer (issue 19).
//!
//! One process-wide [`Metrics`] ([`global`]) that the call tasks, the media
//! tasks and the lease driver record into with one call per place; every
//! counter, gauge and histogram is an atomic, so recording never waits on a
//! scrape. [`server`] serves `GET /metrics` (OpenMetrics text) and
//! `GET /healthz` on `[metrics] listen` when configured. Metric names are
//! listed in docs/operator.md; `voxline_` is the prefix of ours, the
//! `process_*` ones are Prometheus' standard names.

pub mod mos;
pub mod process;
pub mod server;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use voxline_shared::sidecar_link::EventKind;
use voxline_shared::{CallStatus, EndedReason};

use crate::media::{Codec, MediaStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub status: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipCodeLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodecLabels {
    pub codec: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    pub engine: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    pub path: &'static str,
    /// `2xx`, `4xx`, `5xx`, other classes, or `error` (no HTTP answer).
    pub result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn ratio_buckets() -> Histogram {
    Histogram::new([0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
}

fn jitter_buckets() -> Histogram {
    Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2])
}

fn mos_buckets() -> Histogram {
    Histogram::new([1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4])
}

/// Whether the SIP side is needed and up (for `/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SipState {
    /// No trunk configured (or `--simulate-answer`): nothing to bind.
    NotUsed = 0,
    /// Trunks configured; the SIP socket is not bound (yet).
    NotBound = 1,
    Bound = 2,
}

/// What `/healthz` answers from.
#[derive(Debug, Default)]
pub struct Health {
    registered: AtomicBool,
    draining: AtomicBool,
    sip: AtomicU8,
}

impl Health {
    /// `Ok` while the sidecar can take calls: registered with the edge, not
    /// draining, its SIP socket bound when it dials; else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining: the sidecar is stopping and takes no new calls");
        }
        if !self.registered.load(Ordering::Relaxed) {
            return Err("not registered with the edge");
        }
        if self.sip.load(Ordering::Relaxed) == SipState::NotBound as u8 {
            return Err("SIP socket not bound");
        }
        Ok(())
    }

    pub fn set_sip(&self, s: SipState) {
        self.sip.store(s as u8, Ordering::Relaxed);
    }
}

/// Every metric of the sidecar.
pub struct Metrics {
    registry: Registry,
    pub health: Health,
    calls_active: Gauge,
    calls_started: Counter,
    calls_ended: Family<OutcomeLabels, Counter>,
    sip_final: Family<SipCodeLabels, Counter>,
    rtp_packets_received: Family<CodecLabels, Counter>,
    rtp_packets_lost: Family<CodecLabels, Counter>,
    rtp_loss_ratio: HistogramFamily<CodecLabels>,
    rtp_jitter_seconds: HistogramFamily<CodecLabels>,
    mos: HistogramFamily<CodecLabels>,
    engine_connect_seconds: HistogramFamily<EngineLabels>,
    answer_to_first_audio_seconds: HistogramFamily<EngineLabels>,
    edge_registered: Gauge,
    draining: Gauge,
    edge_request_seconds: HistogramFamily<LinkLabels>,
    reloads: Family<ReloadLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `failed`.
    pub result: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The label value of a call's engine (bounded: unknown names are one value).
pub fn engine_label(engine: &voxline_shared::engine::OfferedEngine) -> &'static str {
    engine
        .known()
        .map_or("unknown", voxline_shared::EngineKind::as_str)
}

/// `ended_reason` as the API spells it (exhaustive: a new reason must be named here).
fn reason_label(r: EndedReason) -> &'static str {
    use EndedReason as R;
    match r {
        R::HangupRequested => "hangup_requested",
        R::CalleeHangup => "callee_hangup",
        R::AgentHangup => "agent_hangup",
        R::MaxDurationReached => "max_duration_reached",
        R::NoAnswer => "no_answer",
        R::Busy => "busy",
        R::Declined => "declined",
        R::Rejected => "rejected",
        R::TrunkError => "trunk_error",
        R::MediaLost => "media_lost",
        R::EngineError => "engine_error",
        R::DispatchUnavailable => "dispatch_unavailable",
        R::SilenceTimeout => "silence_timeout",
        R::Transferred => "transferred",
        R::AnsweringMachine => "answering_machine",
        R::Voicemail => "voicemail",
        R::QueueTimeout => "queue_timeout",
    }
}

fn codec_label(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "pcmu",
        Codec::Pcma => "pcma",
        Codec::Opus => "opus",
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("voxline");
        let m = Metrics {
            registry: Registry::default(),
            health: Health::default(),
            calls_active: Gauge::default(),
            calls_started: Counter::default(),
            calls_ended: Family::default(),
            sip_final: Family::default(),
            rtp_packets_received: Family::default(),
            rtp_packets_lost: Family::default(),
            rtp_loss_ratio: Family::new_with_constructor(ratio_buckets),
            rtp_jitter_seconds: Family::new_with_constructor(jitter_buckets),
            mos: Family::new_with_constructor(mos_buckets),
            engine_connect_seconds: Family::new_with_constructor(seconds_buckets),
            answer_to_first_audio_seconds: Family::new_with_constructor(seconds_buckets),
            edge_registered: Gauge::default(),
            draining: Gauge::default(),
            edge_request_seconds: Family::new_with_constructor(seconds_buckets),
            reloads: Family::default(),
        };
        r.register(
            "calls_active",
            "Calls whose task runs now (dialing to ended).",
            m.calls_active.clone(),
        );
        r.register(
            "calls_started",
            "Calls taken from the edge and started.",
            m.calls_started.clone(),
        );
        r.register(
            "calls_ended",
            "Calls ended, by status and ended_reason (as reported to the edge).",
            m.calls_ended.clone(),
        );
        r.register(
            "sip_final_responses",
            "Final SIP responses to our INVITEs, by code (a 2xx answer counts as 200; each trunk failed over counts its own).",
            m.sip_final.clone(),
        );
        r.register(
            "rtp_packets_received",
            "RTP packets received from callees, by codec (counted when a call's media stops).",
            m.rtp_packets_received.clone(),
        );
        r.register(
            "rtp_packets_lost",
            "RTP packets lost on the way from callees (RFC 3550 cumulative loss), by codec.",
            m.rtp_packets_lost.clone(),
        );
        r.register(
            "rtp_loss_ratio",
            "Per call: fraction of the callee's RTP packets lost, by codec.",
            m.rtp_loss_ratio.clone(),
        );
        r.register(
            "rtp_jitter_seconds",
            "Per call: RFC 3550 interarrival jitter of the callee's RTP at the call's end, by codec.",
            m.rtp_jitter_seconds.clone(),
        );
        r.register(
            "call_mos",
            "Per call: MOS estimate (E-model R-factor from loss, jitter and RTCP round trip; 1 to 4.5), by codec.",
            m.mos.clone(),
        );
        r.register(
            "engine_connect_seconds",
            "Time to connect a call's speech engine (asked at the first ringing), by engine.",
            m.engine_connect_seconds.clone(),
        );
        r.register(
            "answer_to_first_audio_seconds",
            "From the callee's answer to the engine's first audio handed to RTP, by engine.",
            m.answer_to_first_audio_seconds.clone(),
        );
        r.register(
            "edge_registered",
            "1 while registered with the edge (the lease link is up), else 0.",
            m.edge_registered.clone(),
        );
        r.register(
            "draining",
            "1 while stopping (no new calls taken), else 0.",
            m.draining.clone(),
        );
        r.register(
            "edge_request_seconds",
            "Round trip of requests to the edge, by path and result (lease long-polls include the edge's hold).",
            m.edge_request_seconds.clone(),
        );
        r.register(
            "config_reloads",
            "SIGHUP reloads of trunks and limits, by result.",
            m.reloads.clone(),
        );
        // Prometheus' standard names, without our prefix.
        root.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            registry: root,
            ..m
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A call task started.
    pub fn call_started(&self) {
        self.calls_started.inc();
    }

    /// How many call tasks run now.
    pub fn set_calls_active(&self, n: usize) {
        self.calls_active.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A call event reported to the edge: counts an `ended`'s outcome.
    pub fn call_event(&self, kind: &EventKind) {
        if let EventKind::Ended { status, reason, .. } = kind {
            self.call_ended(*status, *reason);
        }
    }

    /// A call ended with this status and reason.
    pub fn call_ended(&self, status: CallStatus, reason: EndedReason) {
        self.calls_ended
            .get_or_create(&OutcomeLabels {
                status: status.as_str(),
                reason: reason_label(reason),
            })
            .inc();
    }

    /// A final SIP response to one of our INVITEs.
    pub fn sip_final_response(&self, code: u16) {
        if (200..700).contains(&code) {
            self.sip_final.get_or_create(&SipCodeLabels { code }).inc();
        }
    }

    /// What a dialog event says about final responses: an answer (2xx), or
    /// the final code that ended the call.
    pub fn dialog_event(&self, ev: &crate::sip::DialogEvent) {
        match ev {
            crate::sip::DialogEvent::Answered(_) => self.sip_final_response(200),
            crate::sip::DialogEvent::Ended(end) => {
                if let Some(code) = end.sip_code {
                    self.sip_final_response(code);
                }
            }
            _ => {}
        }
    }

    /// A call's media stopped with these statistics.
    pub fn media_ended(&self, codec: Codec, s: &MediaStats) {
        let l = CodecLabels {
            codec: codec_label(codec),
        };
        self.rtp_packets_received
            .get_or_create(&l)
            .inc_by(s.packets_received);
        let lost = u64::try_from(s.cumulative_lost).unwrap_or(0);
        self.rtp_packets_lost.get_or_create(&l).inc_by(lost);
        if s.expected == 0 {
            // Nothing heard (one-way media or an instant hangup): no quality to estimate.
            return;
        }
        let loss = (lost as f64 / s.expected as f64).clamp(0.0, 1.0);
        self.rtp_loss_ratio.get_or_create(&l).observe(loss);
        self.rtp_jitter_seconds
            .get_or_create(&l)
            .observe(s.jitter_ms / 1000.0);
        let one_way_ms = s.rtt_ms.map_or(0.0, |rtt| rtt / 2.0);
        let r = mos::r_factor(codec, loss, s.jitter_ms, one_way_ms);
        self.mos.get_or_create(&l).observe(mos::mos(r));
    }

    /// The link's state, as the lease driver sees it after each step.
    pub fn link_state(&self, registered: bool, draining: bool) {
        self.health.registered.store(registered, Ordering::Relaxed);
        self.health.draining.store(draining, Ordering::Relaxed);
        self.edge_registered.set(i64::from(registered));
        self.draining.set(i64::from(draining));
    }

    /// One request to the edge: `status` is the HTTP status, `None` when
    /// no answer came.
    pub fn edge_request(&self, path: &'static str, status: Option<u16>, took: std::time::Duration) {
        let result = match status {
            None => "error",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
        };
        self.edge_request_seconds
            .get_or_create(&LinkLabels { path, result })
            .observe(took.as_secs_f64());
    }

    /// A SIGHUP reload was applied (`true`) or refused.
    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }
}

/// One call's engine timings: kept by the call task, recorded once each.
#[derive(Debug, Default)]
pub struct CallLatency {
    engine_asked: Option<Instant>,
    answered: Option<Instant>,
}

impl CallLatency {
    pub fn engine_asked(&mut self, now: Instant) {
        self.engine_asked = Some(now);
    }

    pub fn engine_connected(&mut self, engine: &'static str, now: Instant) {
        if let Some(t) = self.engine_asked.take() {
            global()
                .engine_connect_seconds
                .get_or_create(&EngineLabels { engine })
                .observe(now.saturating_duration_since(t).as_secs_f64());
        }
    }

    /// The conversation starts (callee answered, media up).
    pub fn answered(&mut self, now: Instant) {
        self.answered = Some(now);
    }

    /// Engine audio goes to RTP; the first after the answer is measured.
    pub fn audio_sent(&mut self, engine: &'static str, now: Instant) {
        if let Some(t) = self.answered.take() {
            global()
                .answer_to_first_audio_seconds
                .get_or_create(&EngineLabels { engine })
                .observe(now.saturating_duration_since(t).as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, line_start: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn outcomes_codes_and_media_are_encoded_with_their_labels() {
        let m = Metrics::new();
        m.call_started();
        m.set_calls_active(1);
        m.call_ended(CallStatus::Busy, EndedReason::Busy);
        m.call_ended(CallStatus::Busy, EndedReason::Busy);
        m.sip_final_response(486);
        m.sip_final_response(100); // provisional: not a final response
        let stats = MediaStats {
            packets_received: 98,
            cumulative_lost: 2,
            expected: 100,
            jitter_ms: 4.0,
            ..Default::default()
        };
        m.media_ended(Codec::Pcma, &stats);
        m.link_state(true, false);
        let t = m.encode();
        assert_eq!(sample(&t, "voxline_calls_started_total "), Some("1"), "{t}");
        assert_eq!(sample(&t, "voxline_calls_active "), Some("1"));
        assert_eq!(
            sample(
                &t,
                "voxline_calls_ended_total{status=\"busy\",reason=\"busy\"}"
            ),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(&t, "voxline_sip_final_responses_total{code=\"486\"}"),
            Some("1")
        );
        assert!(!t.contains("code=\"100\""));
        assert_eq!(
            sample(&t, "voxline_rtp_packets_lost_total{codec=\"pcma\"}"),
            Some("2")
        );
        assert_eq!(
            sample(&t, "voxline_call_mos_count{codec=\"pcma\"}"),
            Some("1")
        );
        assert_eq!(sample(&t, "voxline_edge_registered "), Some("1"));
        assert!(
            t.lines()
                .any(|l| l.starts_with("process_resident_memory_bytes ")),
            "{t}"
        );
        assert!(t.trim_end().ends_with("# EOF"));
        assert_eq!(m.health.check(), Ok(()));
    }

    #[test]
    fn reason_labels_are_the_api_names() {
        use EndedReason as R;
        for r in [
            R::HangupRequested,
            R::CalleeHangup,
            R::AgentHangup,
            R::MaxDurationReached,
            R::NoAnswer,
            R::Busy,
            R::Declined,
            R::Rejected,
            R::TrunkError,
            R::MediaLost,
            R::EngineError,
            R::DispatchUnavailable,
            R::SilenceTimeout,
            R::AnsweringMachine,
            R::Transferred,
            R::Voicemail,
            R::QueueTimeout,
        ] {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", reason_label(r))
            );
        }
    }

    /// The example dashboard (deploy/grafana-dashboard.json) asks only for
    /// metrics this build exports.
    #[test]
    fn the_example_dashboard_uses_our_metric_names() {
        let dash = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana-dashboard.json"
        ))
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&dash).expect("valid JSON");
        let exported = Metrics::new().encode();
        let declared: std::collections::HashSet<&str> = exported
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut used = 0;
        for panel in json["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !(word.starts_with("voxline_") || word.starts_with("process_")) {
                        continue;
                    }
                    let base = ["_bucket", "_count", "_sum", "_total"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    assert!(
                        declared.contains(base),
                        "{word} in `{expr}` is not exported"
                    );
                    used += 1;
                }
            }
        }
        assert!(used >= 10, "{used}");
    }

    #[test]
    fn health_names_why_not() {
        let h = Health::default();
        assert_eq!(h.check(), Err("not registered with the edge"));
        h.registered.store(true, Ordering::Relaxed);
        h.set_sip(SipState::NotBound);
        assert_eq!(h.check(), Err("SIP socket not bound"));
        h.set_sip(SipState::Bound);
        assert_eq!(h.check(), Ok(()));
        h.draining.store(true, Ordering::Relaxed);
        assert!(h.check().unwrap_err().starts_with("draining"));
    }
}
