//! SIP over TCP and TLS against real peers on loopback (issue 21).
//!
//! - TCP: sipp (Debian `sip-tester`) is the trunk with `-t t1` (one TCP
//!   connection), running a scenario from `tests/sipp/`; it must exit 0.
//! - TLS: Debian's sipp is built without TLS (`sipp -v` says
//!   `-SCTP-PCAP-RTPSTREAM`, no `-TLS`), so kamailio (its `tls` module,
//!   Debian `kamailio-tls-modules`) is the trunk's TLS front: it takes our
//!   TLS connection with a certificate from the testkit's throwaway PKI,
//!   record-routes, and relays to sipp over UDP.
//! - Keep-alives and a lost connection: the test itself holds the trunk's
//!   end of the TCP connection (a listener), to see the bytes on the wire.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use voxline_media_sidecar::sip::call::{DialogEnd, DialogEvent};
use voxline_media_sidecar::sip::endpoint::EndpointConfig;
use voxline_media_sidecar::sip::sdp::OfferConfig;
use voxline_media_sidecar::sip::stream::StreamOptions;
use voxline_media_sidecar::sip::transport::Transport;
use voxline_media_sidecar::sip::udp::{CallHandle, CallSpec, Event, SipUdp, Trunk};
use voxline_shared::{CallStatus, EndedReason};
use voxline_testkit::{
    free_tcp_port, free_udp_port, make_pki, temp_dir, udp_port_bound, ChildGuard, SIPP,
};

const SIPP_TIMEOUT_S: u32 = 20;

/// Whether something listens on TCP 127.0.0.1:`port` (from /proc/net/tcp,
/// so the check opens no connection the peer would see).
fn tcp_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X} 00000000:0000 0A");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|s| s.lines().any(|l| l.contains(&want)))
        .unwrap_or(false)
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(5), "{what} in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Sipp {
    child: Child,
    dir: PathBuf,
    name: String,
}

impl Sipp {
    /// sipp running `scenario` once on `port`, over `transport` (`u1`, `t1`),
    /// logging every message to `messages.log`.
    async fn start(scenario: &str, port: u16, transport: &str) -> Sipp {
        let sipp = SIPP.require();
        let sf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(format!("{scenario}.xml"));
        let dir = temp_dir(&format!("sipp-stream-{port}"));
        let child = Command::new(sipp)
            .current_dir(&dir)
            .args([
                "-sf",
                sf.to_str().unwrap(),
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
            ])
            .args(["-p", &port.to_string(), "-t", transport])
            .args(["-m", "1", "-nostdin", "-timeout_error"])
            .args(["-timeout", &format!("{SIPP_TIMEOUT_S}s")])
            .args(["-trace_err", "-trace_msg"])
            .args(["-error_file", dir.join("errors.log").to_str().unwrap()])
            .args(["-message_file", dir.join("messages.log").to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sipp");
        if transport == "t1" {
            wait_until("sipp listens on TCP", || tcp_listening(port)).await;
        } else {
            wait_until("sipp binds UDP", || udp_port_bound(port)).await;
        }
        Sipp {
            child,
            dir,
            name: scenario.to_string(),
        }
    }

    /// Waits for sipp to finish, requires exit status 0; returns its message log.
    async fn success(mut self) -> String {
        let status = tokio::time::timeout(
            Duration::from_secs(u64::from(SIPP_TIMEOUT_S) + 5),
            self.child.wait(),
        )
        .await
        .expect("sipp exits in time")
        .unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        let errors = std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        let messages = std::fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default();
        assert!(
            status.success(),
            "sipp {} exited {status}: {err}\n{errors}\n{messages}",
            self.name
        );
        let _ = std::fs::remove_dir_all(&self.dir);
        messages
    }
}

/// INVITEs sipp received (request lines in its message log).
fn invites_received(log: &str) -> usize {
    log.lines().filter(|l| l.starts_with("INVITE sip:")).count()
}

fn trunk(addr: SocketAddr, transport: Transport) -> Trunk {
    let mut t = Trunk::new(addr);
    t.transport = transport;
    t
}

fn spec(trunks: Vec<Trunk>) -> CallSpec {
    let media = OfferConfig::new("127.0.0.1:40000".parse().unwrap());
    CallSpec::new(trunks, "+14155550100", "+14155550199", media)
}

async fn endpoint(streams: StreamOptions) -> SipUdp {
    let config = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    SipUdp::bind_with_streams(config, streams).await.unwrap().0
}

async fn next(h: &mut CallHandle) -> Event {
    tokio::time::timeout(Duration::from_secs(10), h.next_event())
        .await
        .expect("event in time")
        .expect("event")
}

async fn until_answered(h: &mut CallHandle) {
    loop {
        match next(h).await {
            Event::Call(DialogEvent::Ringing { .. }) => {}
            Event::Call(DialogEvent::Answered(_)) => return,
            e => panic!("unexpected {e:?}"),
        }
    }
}

async fn ended(h: &mut CallHandle) -> DialogEnd {
    loop {
        match next(h).await {
            Event::Call(DialogEvent::Ended(o)) => return o,
            Event::Call(DialogEvent::Ringing { .. }) => {}
            e => panic!("unexpected {e:?}"),
        }
    }
}

/// A call over TCP: Via/Contact/Request-URI say TCP (the scenario checks),
/// the INVITE is sent once although sipp answers only after 1.6 s, and
/// ACK and BYE go over the same connection.
#[tokio::test]
async fn a_call_over_tcp_is_not_retransmitted_and_hangs_up_on_its_connection() {
    let port = free_tcp_port();
    let sipp = Sipp::start("uas_stream_answer", port, "t1").await;
    let sip = endpoint(StreamOptions::default()).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut h = sip
        .start_call(spec(vec![trunk(addr, Transport::Tcp)]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    h.hangup(EndedReason::HangupRequested).await;
    let end = ended(&mut h).await;
    assert_eq!(
        (end.status, end.reason),
        (CallStatus::Completed, EndedReason::HangupRequested)
    );
    let log = sipp.success().await;
    assert_eq!(invites_received(&log), 1, "{log}");
    assert!(log.contains("TCP message received"), "{log}");
}

/// The callee's BYE comes over our TCP connection; its 200 goes back on it
/// (sipp waits for it), and two calls share one connection.
#[tokio::test]
async fn the_callee_bye_over_tcp_is_answered_on_the_same_connection() {
    let port = free_tcp_port();
    let sipp = Sipp::start("uas_callee_bye", port, "t1").await;
    let sip = endpoint(StreamOptions::default()).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut h = sip
        .start_call(spec(vec![trunk(addr, Transport::Tcp)]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    let end = ended(&mut h).await;
    assert_eq!(
        (end.status, end.reason),
        (CallStatus::Completed, EndedReason::CalleeHangup)
    );
    sipp.success().await;
}

/// A TCP trunk that refuses the connection: the call fails over to the
/// next trunk (sipp over UDP) at once, saying why.
#[tokio::test]
async fn a_refused_connection_fails_over_to_the_next_trunk() {
    let dead = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let port = free_udp_port();
    let sipp = Sipp::start("uas_answer", port, "u1").await;
    let sip = endpoint(StreamOptions::default()).await;
    let live = SocketAddr::from(([127, 0, 0, 1], port));
    let t0 = Instant::now();
    let mut h = sip
        .start_call(spec(vec![
            trunk(dead, Transport::Tcp),
            trunk(live, Transport::Udp),
        ]))
        .await
        .unwrap();
    match next(&mut h).await {
        Event::Failover { trunk: 0, end } => {
            assert_eq!(
                (end.reason, end.detail.as_str()),
                (EndedReason::TrunkError, "transport_error")
            );
        }
        e => panic!("expected a failover, got {e:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1_500),
        "failover on the refusal, not on the 2 s no-response timer"
    );
    until_answered(&mut h).await;
    h.hangup(EndedReason::HangupRequested).await;
    ended(&mut h).await;
    sipp.success().await;
}

/// sipp dies mid-call (the kernel closes its socket): the answered call
/// ends at once, `failed` / `trunk_error` (`transport_error`).
#[tokio::test]
async fn a_connection_lost_mid_call_ends_the_call_with_transport_error() {
    let port = free_tcp_port();
    let mut sipp = Sipp::start("uas_stream_answer", port, "t1").await;
    let sip = endpoint(StreamOptions::default()).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut h = sip
        .start_call(spec(vec![trunk(addr, Transport::Tcp)]))
        .await
        .unwrap();
    until_answered(&mut h).await;
    sipp.child.kill().await.unwrap();
    let end = ended(&mut h).await;
    assert_eq!(
        (end.status, end.reason, end.detail.as_str()),
        (
            CallStatus::Failed,
            EndedReason::TrunkError,
            "transport_error"
        )
    );
    let _ = std::fs::remove_dir_all(&sipp.dir);
}

/// RFC 5626 4.4.1 on the wire: after the keep-alive interval without a
/// write we send a double CRLF; a double CRLF from the peer gets a single
/// CRLF back; and a trunk closing the connection ends the unanswered call
/// (only trunk: no failover) with `transport_error`.
#[tokio::test]
async fn keepalives_ping_when_idle_answer_pings_and_a_closed_connection_ends_the_call() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let every = Duration::from_millis(400);
    let sip = endpoint(StreamOptions {
        keepalive: Some(every),
        ..StreamOptions::default()
    })
    .await;
    let mut h = sip
        .start_call(spec(vec![trunk(addr, Transport::Tcp)]))
        .await
        .unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the sidecar connects")
        .unwrap();
    // The INVITE, whole (it ends with its SDP body).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(11).any(|w| w == b"a=sendrecv\r") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the INVITE in time")
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    let invite = String::from_utf8_lossy(&got).to_string();
    assert!(invite.starts_with("INVITE sip:"), "{invite}");
    assert!(
        invite.contains("\r\nVia: SIP/2.0/TCP 127.0.0.1:"),
        "{invite}"
    );
    let sent_at = Instant::now();
    let mut rest = Vec::new();
    while !rest.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("a ping in time")
            .unwrap();
        assert!(n > 0, "closed early");
        rest.extend_from_slice(&buf[..n]);
    }
    let waited = sent_at.elapsed();
    assert_eq!(rest, b"\r\n\r\n", "only a ping, not an INVITE again");
    assert!(
        waited >= every - Duration::from_millis(100),
        "pinged after {waited:?}"
    );
    // Our ping to it: one CRLF back.
    conn.write_all(b"\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .expect("a pong in time")
        .unwrap();
    assert_eq!(&buf[..n], b"\r\n");
    drop(conn);
    let end = ended(&mut h).await;
    assert_eq!(
        (
            end.status,
            end.reason,
            end.detail.as_str(),
            end.try_next_trunk
        ),
        (
            CallStatus::Failed,
            EndedReason::TrunkError,
            "transport_error",
            true
        )
    );
}

// ------------------------------------------------------------------ TLS

/// kamailio as a TLS front on `tls_port`, relaying to sipp on UDP
/// `sipp_port` (record-routing, so in-dialog requests come back through it
/// and reach us over our connection: RFC 5923 `alias`).
struct Kamailio {
    /// Stopped with SIGTERM on drop: the main process then stops its
    /// children (a SIGKILL would leave them running).
    child: ChildGuard,
    dir: PathBuf,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.child.terminate(Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Kamailio {
    fn binary() -> Option<PathBuf> {
        ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    async fn start(tls_port: u16, sipp_port: u16, cert: &Path, key: &Path) -> Kamailio {
        let bin = Self::binary().expect(
            "kamailio is not installed: `apt-get install -y kamailio kamailio-tls-modules` \
             (`cargo xtask bootstrap` installs it)",
        );
        let dir = temp_dir(&format!("kamailio-{tls_port}"));
        let udp_port = free_udp_port();
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
disable_tcp=no
enable_tls=yes
tcp_accept_aliases=yes
auto_aliases=no
listen=tls:127.0.0.1:{tls_port}
listen=udp:127.0.0.1:{udp_port}
alias="127.0.0.1:{tls_port}"

loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"

modparam("tls", "certificate", "{cert}")
modparam("tls", "private_key", "{key}")
modparam("tls", "verify_certificate", 0)
modparam("tls", "require_certificate", 0)
modparam("tls", "tls_method", "TLSv1.2+")
modparam("rr", "enable_double_rr", 1)

request_route {{
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{ t_relay(); }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    record_route();
    $du = "sip:127.0.0.1:{sipp_port};transport=udp";
    t_relay();
}}
"#,
            cert = cert.display(),
            key = key.display(),
        );
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = std::process::Command::new(bin)
            .current_dir(&dir)
            .args(["-f", cfg_path.to_str().unwrap()])
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .args(["-P", dir.join("kamailio.pid").to_str().unwrap()])
            .args(["-Y", dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).unwrap())
            .spawn()
            .expect("spawn kamailio");
        let child = ChildGuard(child);
        let log = dir.join("kamailio.log");
        let t0 = Instant::now();
        while !tcp_listening(tls_port) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "kamailio listens on TLS: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Kamailio { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }
}

/// TLS trunk whose certificate chains to the configured CA, checked for
/// the trunk's name (`localhost`, not the address dialled): the call is
/// answered and hung up through kamailio's TLS; no INVITE repeated; our Via
/// and Contact say TLS (the scenario checks, behind kamailio's Via).
#[tokio::test]
async fn a_call_over_tls_is_verified_answered_and_hung_up() {
    let dir = temp_dir("sip-tls-pki");
    let pki = make_pki(&dir);
    let sipp_port = free_udp_port();
    let tls_port = free_tcp_port();
    let sipp = Sipp::start("uas_stream_answer", sipp_port, "u1").await;
    let kamailio = Kamailio::start(tls_port, sipp_port, &pki.cert_pem, &pki.key_pem).await;
    let sip = endpoint(tls_streams(&pki.ca_pem, "localhost")).await;
    let mut t = trunk(SocketAddr::from(([127, 0, 0, 1], tls_port)), Transport::Tls);
    t.tls_name = Some("localhost".into());
    let mut h = sip.start_call(spec(vec![t])).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), until_answered(&mut h)).await;
    assert!(answered.is_ok(), "answered over TLS: {}", kamailio.log());
    h.hangup(EndedReason::HangupRequested).await;
    let end = ended(&mut h).await;
    assert_eq!(
        (end.status, end.reason, end.detail.as_str()),
        (
            CallStatus::Completed,
            EndedReason::HangupRequested,
            "bye_answered"
        ),
        "{}",
        kamailio.log()
    );
    // (No INVITE count here: kamailio's own UDP leg to sipp retransmits
    // while sipp waits; a TLS retransmission of ours it would absorb.)
    sipp.success().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn tls_streams(ca: &Path, name: &str) -> StreamOptions {
    let tls = voxline_media_sidecar::transport::tls::client_config(Some(ca)).unwrap();
    let mut streams = StreamOptions::default();
    streams.tls.insert(name.into(), std::sync::Arc::new(tls));
    streams
}

/// The callee hangs up: kamailio sends the BYE over the TLS connection we
/// opened (it reuses it for our Via's address: RFC 5923 `alias`), we
/// answer 200 on it, and sipp gets that 200 through kamailio.
#[tokio::test]
async fn the_callee_bye_over_tls_comes_back_on_our_connection() {
    let dir = temp_dir("sip-tls-pki-bye");
    let pki = make_pki(&dir);
    let sipp_port = free_udp_port();
    let tls_port = free_tcp_port();
    let sipp = Sipp::start("uas_stream_callee_bye", sipp_port, "u1").await;
    let kamailio = Kamailio::start(tls_port, sipp_port, &pki.cert_pem, &pki.key_pem).await;
    let sip = endpoint(tls_streams(&pki.ca_pem, "localhost")).await;
    let mut t = trunk(SocketAddr::from(([127, 0, 0, 1], tls_port)), Transport::Tls);
    t.tls_name = Some("localhost".into());
    let mut h = sip.start_call(spec(vec![t])).await.unwrap();
    until_answered(&mut h).await;
    let end = ended(&mut h).await;
    assert_eq!(
        (end.status, end.reason),
        (CallStatus::Completed, EndedReason::CalleeHangup),
        "{}",
        kamailio.log()
    );
    sipp.success().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A certificate that does not carry the trunk's TLS name is refused (the
/// same kamailio and CA as above, only the name differs): the handshake
/// fails at once, the call ends `transport_error` (only trunk, so no
/// failover) without waiting for any timer.
#[tokio::test]
async fn a_tls_trunk_with_the_wrong_name_is_refused() {
    let dir = temp_dir("sip-tls-pki-wrong");
    let pki = make_pki(&dir);
    let tls_port = free_tcp_port();
    let kamailio = Kamailio::start(tls_port, free_udp_port(), &pki.cert_pem, &pki.key_pem).await;
    let sip = endpoint(tls_streams(&pki.ca_pem, "sip.carrier.example")).await;
    let mut t = trunk(SocketAddr::from(([127, 0, 0, 1], tls_port)), Transport::Tls);
    t.tls_name = Some("sip.carrier.example".into());
    let t0 = Instant::now();
    let mut h = sip.start_call(spec(vec![t])).await.unwrap();
    let end = ended(&mut h).await;
    assert_eq!(
        (end.status, end.reason, end.detail.as_str()),
        (
            CallStatus::Failed,
            EndedReason::TrunkError,
            "transport_error"
        )
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        tcp_listening(tls_port),
        "kamailio was there: {}",
        kamailio.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
