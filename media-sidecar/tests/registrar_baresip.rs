//! The sidecar as registrar for users' phones (issue 16), against a real
//! phone: baresip (Debian `baresip-core`) registers with the whole sidecar
//! (its SIP endpoint, the registrar, the lease client) on loopback, with
//! Digest; the fake edge checks the answers as the edge does (the shared
//! `sip_digest`, against the HA1 of the account's password) and keeps the
//! bindings. baresip registers, re-registers before its binding lapses,
//! and un-registers when it quits; one with a wrong password is refused.

mod support;

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use voxline_media_sidecar::lease::driver::{RunOptions, RunSummary, Stop};
use voxline_media_sidecar::lease::LeaseSettings;
use voxline_shared::sidecar_link::{PhoneRegistrationDecision, RegistrationAck};
use voxline_testkit::{
    free_sip_port, free_udp_port, start_registering_baresip, temp_dir, ChildGuard,
};

const LINK_SECRET: &str = "test-secret-0123456789abcdef";
const USER: &str = "7.ten_0123456789abcdef0123";
const PASSWORD: &str = "Sx9kQ2mZr7LwP4vN8cTb1yHd";

/// baresip registering `USER` at the sidecar's `sidecar_port` every
/// `regint` seconds with `password`, quitting after `secs`.
fn start_phone(
    dir: &Path,
    name: &str,
    sidecar_port: u16,
    password: &str,
    regint: u32,
    secs: u32,
) -> ChildGuard {
    let registrar = format!("127.0.0.1:{sidecar_port}");
    start_registering_baresip(dir, name, USER, &registrar, password, regint, secs)
        .expect("baresip (Debian package baresip-core)")
}

/// The whole sidecar (one unused trunk, the registrar on `sip_port`)
/// linked to `edge`, in its own runtime.
fn spawn_sidecar(
    edge: &support::FakeEdge,
    sip_port: u16,
    stop_rx: watch::Receiver<Stop>,
) -> std::thread::JoinHandle<RunSummary> {
    use voxline_media_sidecar::config;
    // One trunk nothing listens on: only phones talk to this sidecar.
    let mut telephony = support::one_trunk_telephony(free_udp_port(), (47_000, 47_099));
    telephony.sip_port = sip_port;
    telephony.registrar = config::Registrar {
        enabled: true,
        min_expires_seconds: 10,
        default_expires_seconds: 20,
        ..config::Registrar::default()
    };
    support::spawn_sip_sidecar(
        edge,
        LINK_SECRET,
        telephony,
        Default::default(),
        LeaseSettings::new("sc-reg", "local", 2),
        RunOptions::default(),
        stop_rx,
    )
}

/// (Call-ID, CSeq, contacts with their expiry, remove_all, accepted) of
/// every REGISTER the edge was asked about.
type Seen = Vec<(String, u32, Vec<(String, u32)>, bool, Option<u16>)>;

fn seen(edge: &support::FakeEdge) -> Seen {
    edge.state
        .lock()
        .unwrap()
        .phone_registrations
        .iter()
        .map(|(r, d)| {
            (
                r.sip_call_id.clone(),
                r.cseq,
                r.contacts
                    .iter()
                    .map(|c| (c.uri.clone(), c.expires_seconds))
                    .collect(),
                r.remove_all,
                match d {
                    PhoneRegistrationDecision::Accept { .. } => None,
                    PhoneRegistrationDecision::Refuse { sip_code, .. } => Some(*sip_code),
                },
            )
        })
        .collect()
}

/// Whether the edge holds a binding of `USER`.
fn bound(edge: &support::FakeEdge) -> bool {
    edge.state
        .lock()
        .unwrap()
        .phone_bindings
        .keys()
        .any(|(u, _)| u == USER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_re_registers_and_unregisters_with_digest() {
    let dir = temp_dir("registrar-baresip");
    let edge = support::FakeEdge::start(
        LINK_SECRET,
        RegistrationAck {
            protocol_version: 1,
            lease_wait_ms: 1_000,
            ack_deadline_ms: 5_000,
            dead_after_ms: 30_000,
        },
    )
    .await;
    edge.state
        .lock()
        .unwrap()
        .phone_accounts
        .push((USER.into(), PASSWORD.into()));
    let sip_port = free_sip_port();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let sidecar = spawn_sidecar(&edge, sip_port, stop_rx);
    let t = Duration::from_secs(20);
    edge.wait_for("the sidecar's link registration", t, |s| {
        (!s.registrations.is_empty()).then_some(())
    })
    .await;

    // Registers (after our 401), then refreshes the 10 s binding before it lapses.
    let mut phone = start_phone(&dir, "good", sip_port, PASSWORD, 10, 16);
    let log = || std::fs::read_to_string(dir.join("baresip-good.log")).unwrap_or_default();
    let registered = edge
        .wait_for("two accepted REGISTERs", Duration::from_secs(25), |s| {
            let accepted: Vec<_> = s
                .phone_registrations
                .iter()
                .filter(|(r, d)| {
                    matches!(d, PhoneRegistrationDecision::Accept { .. })
                        && r.contacts.iter().any(|c| c.expires_seconds > 0)
                })
                .map(|(r, _)| r.clone())
                .collect();
            (accepted.len() >= 2).then_some(accepted)
        })
        .await;
    let (first, refresh) = (&registered[0], &registered[1]);
    assert_eq!(first.digest.username, USER);
    assert_eq!(first.digest.realm, "voxline");
    assert_eq!(first.sip_call_id, refresh.sip_call_id, "one registration");
    assert!(refresh.cseq > first.cseq, "{registered:?}");
    assert_eq!(first.contacts.len(), 1, "{first:?}");
    assert_eq!(first.contacts[0].expires_seconds, 10);
    assert!(first.source.starts_with("127.0.0.1:"), "{first:?}");
    assert_eq!(first.transport, "udp");
    assert!(
        log().contains("200 OK"),
        "baresip saw its registration accepted:\n{}",
        log()
    );
    let contact = first.contacts[0].uri.clone();
    assert!(edge
        .state
        .lock()
        .unwrap()
        .phone_bindings
        .contains_key(&(USER.to_string(), contact.clone())));

    // baresip quits: its un-REGISTER removes the binding.
    phone.wait_exit(Duration::from_secs(20));
    edge.wait_for("the un-REGISTER", Duration::from_secs(10), |s| {
        s.phone_registrations
            .iter()
            .any(|(r, d)| {
                matches!(d, PhoneRegistrationDecision::Accept { .. })
                    && (r.remove_all || r.contacts.iter().any(|c| c.expires_seconds == 0))
            })
            .then_some(())
    })
    .await;
    assert!(!bound(&edge), "{:?}", seen(&edge));

    // A wrong password: the edge refuses it and the phone hears 403.
    let before = seen(&edge).len();
    let mut wrong = start_phone(&dir, "wrong", sip_port, "guess", 10, 4);
    edge.wait_for("a refused REGISTER", Duration::from_secs(10), |s| {
        s.phone_registrations[before..]
            .iter()
            .any(|(_, d)| matches!(d, PhoneRegistrationDecision::Refuse { sip_code: 403, .. }))
            .then_some(())
    })
    .await;
    wrong.wait_exit(Duration::from_secs(10));
    let wrong_log = std::fs::read_to_string(dir.join("baresip-wrong.log")).unwrap_or_default();
    assert!(wrong_log.contains("403"), "{wrong_log}");
    assert!(!bound(&edge), "no binding from a wrong password");

    stop.send(Stop::Now).unwrap();
    tokio::task::spawn_blocking(move || sidecar.join())
        .await
        .unwrap()
        .unwrap();
}
