//! The whole sidecar link, driver included, against a fake edge that speaks
//! the protocol and verifies every signature with the shared code: over
//! HTTP/1.1 directly, and over HTTP/3 through a real caddy.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::EdgeState;
use support::*;
use tokio::sync::watch;
use voxline_media_sidecar::call_task::CallMode;
use voxline_media_sidecar::config::{EdgeUrl, Secret};
use voxline_media_sidecar::lease::driver::{run, RunOptions, RunSummary, Stop};
use voxline_media_sidecar::lease::LeaseSettings;
use voxline_media_sidecar::transport::h3::H3Transport;
use voxline_media_sidecar::transport::http1::Http1Transport;
use voxline_media_sidecar::transport::{tls, Transport};
use voxline_shared::sidecar_link::{Command, EventKind, RegistrationAck};
use voxline_shared::{CallStatus, EndedReason};
use voxline_testkit::*;

const SECRET: &str = "test-secret-0123456789abcdef";

fn reg_ack() -> RegistrationAck {
    RegistrationAck {
        protocol_version: 1,
        lease_wait_ms: 1_000,
        ack_deadline_ms: 5_000,
        dead_after_ms: 30_000,
    }
}

struct Running {
    stop: watch::Sender<Stop>,
    task: tokio::task::JoinHandle<RunSummary>,
}

fn start<C: Transport>(transport: C, capacity: u32, secret: &str, mode: CallMode) -> Running {
    start_with(
        transport,
        capacity,
        secret,
        RunOptions {
            mode,
            drain_timeout: Duration::from_secs(10),
            ..RunOptions::default()
        },
    )
}

fn start_with<C: Transport>(
    transport: C,
    capacity: u32,
    secret: &str,
    opts: RunOptions,
) -> Running {
    let (stop, rx) = watch::channel(Stop::Run);
    let mut settings = LeaseSettings::new("sc-test", "local", capacity);
    settings.backoff_initial_ms = 100;
    settings.backoff_max_ms = 400;
    let task = tokio::spawn(run(
        Arc::new(transport),
        settings,
        Secret::new(secret),
        opts,
        rx,
    ));
    Running { stop, task }
}

impl Running {
    async fn drain(self) -> RunSummary {
        self.stop.send(Stop::Drain).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("drains in time")
            .unwrap()
    }
}

fn ended_in(s: &EdgeState, call: &str) -> Option<(CallStatus, EndedReason)> {
    s.events.iter().find_map(|e| match &e.kind {
        EventKind::Ended { status, reason, .. } if e.call_id == call => Some((*status, *reason)),
        _ => None,
    })
}

fn ended_of(edge: &FakeEdge, call: &str) -> Option<(CallStatus, EndedReason)> {
    ended_in(&edge.state.lock().unwrap(), call)
}

fn kinds_in(s: &EdgeState, call: &str) -> Vec<&'static str> {
    let mut evs: Vec<_> = s.events.iter().filter(|e| e.call_id == call).collect();
    evs.sort_by_key(|e| e.seq);
    evs.iter().map(|e| e.kind.name()).collect()
}

/// The scenario both transports run: a simulated call end to end, a hangup of an
/// answered call, a placeholder-style hangup, and a clean drain.
async fn scenario<C: Transport>(edge: &FakeEdge, transport: C) {
    let sc = start(
        transport,
        2,
        SECRET,
        CallMode::SimulateAnswer(Duration::from_millis(400)),
    );
    let t = Duration::from_secs(15);
    edge.wait_for("registration", t, |s| {
        (!s.registrations.is_empty()).then_some(())
    })
    .await;
    edge.wait_for("a lease poll", t, |s| (!s.leases.is_empty()).then_some(()))
        .await;
    {
        let s = edge.state.lock().unwrap();
        let r = &s.registrations[0];
        assert_eq!(
            (
                r.protocol_version,
                r.sidecar_id.as_str(),
                r.region.as_str(),
                r.capacity
            ),
            (1, "sc-test", "local", 2)
        );
        let l = &s.leases[0];
        assert_eq!((l.free_slots, l.wait_ms), (2, 1_000));
    }

    // 1. A call runs end to end (simulated answer).
    edge.offer(offer("c_1", 600));
    edge.wait_for("c_1 ended", t, |s| ended_in(s, "c_1")).await;
    assert_eq!(
        edge.kinds_of("c_1"),
        vec!["dialing", "ringing", "answered", "ended"]
    );
    assert_eq!(
        ended_of(edge, "c_1"),
        Some((CallStatus::Completed, EndedReason::AgentHangup))
    );
    {
        let s = edge.state.lock().unwrap();
        let ack = s.acks.iter().find(|a| a.call_id == "c_1").expect("acked");
        assert!(ack.accepted);
        assert_eq!(ack.lease_id, "lease-c_1");
        // While it ran, a lease poll listed it as held with one slot fewer.
        assert!(s
            .leases
            .iter()
            .any(|l| l.held_calls == vec!["c_1".to_string()] && l.free_slots == 1));
        let evs: Vec<_> = s.events.iter().filter(|e| e.call_id == "c_1").collect();
        assert_eq!(
            evs.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let EventKind::Ended { timings, .. } = &evs[3].kind else {
            panic!()
        };
        assert!(timings.dispatched_ms <= timings.ringing_ms.unwrap());
        assert!(timings.ringing_ms.unwrap() <= timings.answered_ms.unwrap());
        assert!(timings.answered_ms.unwrap() + 400 <= timings.ended_ms);
    }
    // Released: a later poll holds nothing again.
    edge.wait_for("c_1 released", t, |s| {
        s.leases
            .last()
            .filter(|l| l.held_calls.is_empty() && l.free_slots == 2)
            .map(|_| ())
    })
    .await;

    // 2. A hangup command ends an answered call: completed / hangup_requested.
    let mut long = offer("c_2", 600);
    long.max_seconds = 600;
    edge.offer(long);
    edge.wait_for("c_2 answered", t, |s| {
        kinds_in(s, "c_2").contains(&"answered").then_some(())
    })
    .await;
    edge.command(Command::Hangup {
        call_id: "c_2".into(),
    });
    edge.wait_for("c_2 ended", t, |s| ended_in(s, "c_2")).await;
    assert_eq!(
        ended_of(edge, "c_2"),
        Some((CallStatus::Completed, EndedReason::HangupRequested))
    );

    // 3. max_seconds caps the simulated talk time.
    edge.offer(offer("c_3", 0));
    edge.wait_for("c_3 ended", t, |s| ended_in(s, "c_3")).await;
    assert_eq!(
        ended_of(edge, "c_3"),
        Some((CallStatus::Completed, EndedReason::MaxDurationReached))
    );

    let summary = sc.drain().await;
    assert_eq!(
        summary,
        RunSummary {
            calls_started: 3,
            clean_exit: true,
            halted: None
        }
    );
    let s = edge.state.lock().unwrap();
    assert!(
        s.signature_failures.is_empty(),
        "{:?}",
        s.signature_failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_over_http1() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        scenario(&edge, transport).await;
        assert_eq!(
            edge.server
                .seen()
                .iter()
                .filter(|r| r.version != http::Version::HTTP_11)
                .count(),
            0
        );
    })
    .await
    .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_over_h3_through_caddy() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = temp_dir("link-h3");
        let pki = make_pki(&dir);
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        let caddy = Caddy::start(&edge.addr().to_string(), &pki, &dir);
        let url = EdgeUrl::parse(&format!("https+h3://127.0.0.1:{}", caddy.port)).unwrap();
        let transport =
            H3Transport::new(url, tls::client_config(Some(&pki.ca_pem)).unwrap()).unwrap();
        scenario(&edge, transport).await;
        // Every request the edge saw came over HTTP/3 (as caddy reports it).
        let protos = edge.state.lock().unwrap().client_protos.clone();
        assert!(protos.len() > 10, "{protos:?}");
        assert!(protos.iter().all(|p| p == "HTTP/3.0"), "{protos:?}");
        let log = caddy.access_entries();
        assert!(log.iter().all(|e| e["request"]["proto"] == "HTTP/3.0"));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_calls_hold_their_slot_until_hung_up() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        let sc = start(transport, 1, SECRET, CallMode::Placeholder);
        let t = Duration::from_secs(15);
        edge.offer(offer("p_1", 600));
        edge.wait_for("dialing", t, |s| {
            (kinds_in(s, "p_1") == vec!["dialing"]).then_some(())
        })
        .await;
        // Full: the next polls ask for nothing, and a queued offer stays queued.
        edge.offer(offer("p_2", 600));
        let n = edge.state.lock().unwrap().leases.len();
        edge.wait_for("two more polls", t, |s| {
            (s.leases.len() >= n + 2).then_some(())
        })
        .await;
        {
            let s = edge.state.lock().unwrap();
            assert!(s.leases[n..]
                .iter()
                .all(|l| l.free_slots == 0 && l.held_calls == vec!["p_1".to_string()]));
            assert_eq!(s.offers.len(), 1, "not handed out while full");
        }
        assert_eq!(
            edge.kinds_of("p_1"),
            vec!["dialing"],
            "nothing else happens without SIP"
        );
        edge.command(Command::Hangup {
            call_id: "p_1".into(),
        });
        edge.wait_for("p_1 ended", t, |s| ended_in(s, "p_1")).await;
        assert_eq!(
            ended_of(&edge, "p_1"),
            Some((CallStatus::Cancelled, EndedReason::HangupRequested))
        );
        // The slot frees and the queued offer is taken.
        edge.wait_for("p_2 dialing", t, |s| {
            (kinds_in(s, "p_2") == vec!["dialing"]).then_some(())
        })
        .await;
        sc.stop.send(Stop::Now).unwrap();
        let summary = tokio::time::timeout(Duration::from_secs(5), sc.task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            summary,
            RunSummary {
                calls_started: 2,
                clean_exit: false,
                halted: None
            },
            "p_2 was abandoned"
        );
    })
    .await
    .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_and_retried_with_backoff() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        let sc = start(transport, 1, "not-the-secret", CallMode::Placeholder);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        sc.stop.send(Stop::Now).unwrap();
        tokio::time::timeout(Duration::from_secs(5), sc.task)
            .await
            .unwrap()
            .unwrap();
        let s = edge.state.lock().unwrap();
        assert!(s.registrations.is_empty());
        // 100, 200, 400, 400 ms apart: 3 to 5 tries in 1.2 s, not a hot loop.
        let n = s.signature_failures.len();
        assert!((2..=6).contains(&n), "{n}: {:?}", s.signature_failures);
        assert!(
            s.signature_failures.iter().all(|f| f == "bad_signature"),
            "{:?}",
            s.signature_failures
        );
    })
    .await
    .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_edge_errors_and_reregisters_on_410() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        edge.state.lock().unwrap().fail_next = vec![
            ("/v1/sidecar/register".into(), 503),
            ("/v1/sidecar/lease".into(), 410),
            ("/v1/sidecar/events".into(), 500),
        ];
        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        let sc = start(
            transport,
            1,
            SECRET,
            CallMode::SimulateAnswer(Duration::from_millis(100)),
        );
        let t = Duration::from_secs(15);
        edge.wait_for("registered twice (after the 410)", t, |s| {
            (s.registrations.len() >= 2).then_some(())
        })
        .await;
        edge.offer(offer("r_1", 600));
        edge.wait_for("r_1 ended", t, |s| ended_in(s, "r_1")).await;
        assert_eq!(
            edge.kinds_of("r_1"),
            vec!["dialing", "ringing", "answered", "ended"],
            "no event lost to the 500"
        );
        assert!(edge.state.lock().unwrap().fail_next.is_empty());
        assert_eq!(
            sc.drain().await,
            RunSummary {
                calls_started: 1,
                clean_exit: true,
                halted: None
            }
        );
    })
    .await
    .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resends_spooled_events_and_holds_their_calls_until_acked() {
    use voxline_media_sidecar::event_spool::{spool_dir, EventSpool};
    use voxline_media_sidecar::lease::EventStore;
    use voxline_shared::sidecar_link::{CallEvent, Timings};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        // What a run that crashed left: s_1 ended, the edge never acknowledged it.
        let events_dir = spool_dir(&temp_dir("evspool"));
        let at = now_ms() - 2_000;
        let left = vec![
            CallEvent {
                call_id: "s_1".into(),
                attempt: 1,
                seq: 1,
                at_ms: at,
                kind: EventKind::Dialing,
            },
            CallEvent {
                call_id: "s_1".into(),
                attempt: 1,
                seq: 2,
                at_ms: at + 1_000,
                kind: EventKind::Ended {
                    status: CallStatus::Completed,
                    reason: EndedReason::AgentHangup,
                    retry_after_s: None,
                    sip_code: None,
                    timings: Timings {
                        dispatched_ms: at,
                        ringing_ms: None,
                        answered_ms: None,
                        ended_ms: at + 1_000,
                    },
                },
            },
        ];
        EventSpool::open(&events_dir)
            .unwrap()
            .save("s_1", 1, &left)
            .unwrap();
        let file = events_dir.join("s_1-1.events.json");
        assert!(file.exists());

        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        let opts = RunOptions {
            mode: CallMode::Placeholder,
            drain_timeout: Duration::from_secs(10),
            events_dir: Some(events_dir.clone()),
            ..RunOptions::default()
        };
        let sc = start_with(transport, 1, SECRET, opts);
        let t = Duration::from_secs(15);
        edge.wait_for("s_1 ended", t, |s| ended_in(s, "s_1")).await;
        assert_eq!(edge.kinds_of("s_1"), vec!["dialing", "ended"]);
        assert_eq!(
            ended_of(&edge, "s_1"),
            Some((CallStatus::Completed, EndedReason::AgentHangup))
        );
        {
            let s = edge.state.lock().unwrap();
            let first = &s.leases[0];
            assert_eq!(
                (first.held_calls.clone(), first.free_slots),
                (vec!["s_1".to_string()], 0),
                "held from the first poll"
            );
        }
        // Released once acknowledged: the next polls hold nothing, and the file is gone.
        edge.wait_for("s_1 released", t, |s| {
            s.leases
                .iter()
                .any(|l| l.held_calls.is_empty() && l.free_slots == 1)
                .then_some(())
        })
        .await;
        assert!(!file.exists(), "forgotten once acknowledged");
        // A new call's events pass through the spool too, and leave it when acked.
        edge.offer(offer("s_2", 600));
        edge.wait_for("s_2 dialing", t, |s| {
            (kinds_in(s, "s_2") == vec!["dialing"]).then_some(())
        })
        .await;
        edge.command(Command::Hangup {
            call_id: "s_2".into(),
        });
        edge.wait_for("s_2 ended", t, |s| ended_in(s, "s_2")).await;
        assert_eq!(
            sc.drain().await,
            RunSummary {
                calls_started: 1,
                clean_exit: true,
                halted: None
            }
        );
        assert_eq!(
            std::fs::read_dir(&events_dir).unwrap().count(),
            0,
            "nothing left in the spool"
        );
    })
    .await
    .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_credentials_hang_up_the_calls_held() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        let sc = start(transport, 1, SECRET, CallMode::Placeholder);
        let t = Duration::from_secs(15);
        edge.offer(offer("v_1", 600));
        edge.wait_for("dialing", t, |s| {
            (kinds_in(s, "v_1") == vec!["dialing"]).then_some(())
        })
        .await;
        // Revoked: every request is refused, the registration too.
        edge.state.lock().unwrap().secret = b"revoked".to_vec();
        edge.wait_for("a refused lease and registration", t, |s| {
            (s.signature_failures.len() >= 2).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            ended_of(&edge, "v_1"),
            None,
            "nothing gets through while revoked"
        );
        // Taken back: the call had been hung up meanwhile; its end is delivered now.
        edge.state.lock().unwrap().secret = SECRET.as_bytes().to_vec();
        edge.wait_for("v_1 ended", t, |s| ended_in(s, "v_1")).await;
        assert_eq!(
            ended_of(&edge, "v_1"),
            Some((CallStatus::Cancelled, EndedReason::HangupRequested))
        );
        assert_eq!(
            sc.drain().await,
            RunSummary {
                calls_started: 1,
                clean_exit: true,
                halted: None
            }
        );
    })
    .await
    .expect("bounded")
}

/// A drain that times out hangs up the calls still live and reports their
/// end (`failed` / `media_lost`, as the edge would have presumed) before
/// exiting, instead of leaving them for the edge to notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_times_out_ends_the_live_calls() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        let opts = RunOptions {
            mode: CallMode::SimulateAnswer(Duration::from_secs(600)),
            drain_timeout: Duration::from_millis(300),
            ..RunOptions::default()
        };
        let sc = start_with(transport, 2, SECRET, opts);
        let t = Duration::from_secs(15);
        let mut talking = offer("d_1", 600);
        talking.max_seconds = 600;
        edge.offer(talking);
        edge.wait_for("d_1 answered", t, |s| {
            kinds_in(s, "d_1").contains(&"answered").then_some(())
        })
        .await;
        assert_eq!(
            sc.drain().await,
            RunSummary {
                calls_started: 1,
                clean_exit: true,
                halted: None
            }
        );
        assert_eq!(
            edge.kinds_of("d_1"),
            vec!["dialing", "ringing", "answered", "ended"]
        );
        assert_eq!(
            ended_of(&edge, "d_1"),
            Some((CallStatus::Failed, EndedReason::MediaLost))
        );
    })
    .await
    .expect("bounded")
}

/// An edge that stops taking this sidecar's signatures (here: a newer scheme)
/// mid-call: the sidecar hangs its call up and stops by itself, saying why,
/// rather than retrying forever. The drain timeout is far beyond the test's
/// bound, so stopping proves the call task ended (it was hung up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signature_scheme_hangs_up_and_stops_the_sidecar() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let edge = FakeEdge::start(SECRET, reg_ack()).await;
        let transport = Http1Transport::new(
            EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
            None,
        );
        let sc = start_with(
            transport,
            1,
            SECRET,
            RunOptions {
                mode: CallMode::SimulateAnswer(Duration::from_secs(3_600)),
                drain_timeout: Duration::from_secs(3_600),
                ..RunOptions::default()
            },
        );
        let t = Duration::from_secs(15);
        edge.offer(offer("c_1", 3_600));
        edge.wait_for("c_1 answered", t, |s| {
            kinds_in(s, "c_1").contains(&"answered").then_some(())
        })
        .await;
        edge.state.lock().unwrap().refuse_all = Some((401, "signature_version_unsupported"));
        let summary = tokio::time::timeout(t, sc.task)
            .await
            .expect("stops by itself once the call is hung up")
            .unwrap();
        assert_eq!(summary.calls_started, 1);
        assert!(!summary.clean_exit, "c_1's end could not be reported");
        let why = summary.halted.expect("halted");
        assert!(why.contains("signature_version_unsupported"), "{why}");
        assert!(why.contains("same release"), "{why}");
    })
    .await
    .expect("test bounded");
}
