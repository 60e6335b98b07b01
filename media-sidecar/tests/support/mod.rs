//! Test rigs, all on loopback: a tiny hyper HTTP/1.1 server and a fake edge
//! that speaks the sidecar protocol (verifying signatures with the shared
//! code). The throwaway PKI, caddy (the QUIC/HTTP/3 front), ports and
//! temporary directories are `voxline_testkit`'s.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use voxline_shared::sidecar_link::*;
use voxline_shared::signing::{self, SignedHeaders};
use voxline_testkit::now_ms;

/// Every network test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// Which accepted TCP connection (1-based) carried it.
    pub conn: usize,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type Handler =
    Arc<dyn Fn(SeenRequest) -> Pin<Box<dyn Future<Output = (u16, Vec<u8>)> + Send>> + Send + Sync>;

/// A plain HTTP/1.1 keep-alive server on 127.0.0.1.
pub struct TestServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(handler: Handler) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c2, s2) = (connections.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let conn = c2.fetch_add(1, Ordering::SeqCst) + 1;
                let handler = handler.clone();
                let seen = s2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let handler = handler.clone();
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let r = SeenRequest {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                version: parts.version,
                                headers: parts.headers,
                                body,
                                conn,
                            };
                            seen.lock().unwrap().push(r.clone());
                            let (status, body) = handler(r).await;
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestServer {
            addr,
            connections,
            seen,
            task,
        }
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

// ------------------------------------------------------------------ fake edge

/// What the fake edge recorded and what it will hand out.
#[derive(Default)]
pub struct EdgeState {
    pub secret: Vec<u8>,
    pub reg_ack: Option<RegistrationAck>,
    nonces: HashSet<String>,
    pub signature_failures: Vec<String>,
    pub registrations: Vec<Registration>,
    pub leases: Vec<LeaseRequest>,
    pub acks: Vec<Ack>,
    pub events: Vec<CallEvent>,
    seen_events: BTreeSet<(String, u32, u32)>,
    pub offers: VecDeque<Offer>,
    pub commands: VecDeque<Command>,
    /// The `x-client-proto` header caddy adds (`{http.request.proto}`), per request.
    pub client_protos: Vec<String>,
    /// Answer the next N requests to this path with this status (before verifying).
    pub fail_next: Vec<(String, u16)>,
    /// Answer every request with this status and error code (before verifying).
    pub refuse_all: Option<(u16, &'static str)>,
    /// Text messages to hand out with the next lease answer.
    pub messages: VecDeque<MessageOffer>,
    /// `POST /message-results` received, in order (duplicates included).
    pub message_results: Vec<MessageResult>,
    /// `POST /inbound-messages` received, in order.
    pub inbound: Vec<InboundMessage>,
    /// The status `/inbound-messages` answers (0: 200).
    pub inbound_status: u16,
    /// `POST /inbound-calls` received, in order.
    pub inbound_calls: Vec<voxline_shared::sidecar_link::InboundCall>,
    /// What `/inbound-calls` decides, in order (none left: refuse 404).
    pub inbound_decisions: VecDeque<voxline_shared::sidecar_link::InboundDecision>,
    /// Phone accounts (SIP username, password) `/registrations` knows.
    pub phone_accounts: Vec<(String, String)>,
    /// `POST /registrations` received, in order, with what was decided.
    pub phone_registrations: Vec<(PhoneRegistration, PhoneRegistrationDecision)>,
    /// Live bindings: (username, contact) -> expiry (unix ms).
    pub phone_bindings: std::collections::BTreeMap<(String, String), u64>,
    /// `POST /transcripts` received, in order (post-call transcripts, issue 16).
    pub transcripts: Vec<voxline_shared::sidecar_link::CallTranscript>,
}

impl EdgeState {
    /// What the edge decides about a phone's REGISTER, as the real one
    /// does: the Digest answer checked (the shared `sip_digest::verify`)
    /// against the HA1 of the account's password, then the bindings.
    fn decide_registration(
        &mut self,
        r: &PhoneRegistration,
        now: u64,
    ) -> PhoneRegistrationDecision {
        use voxline_shared::sip_digest::{ha1, verify, Algorithm, DigestInput};
        let refuse = |sip_code: u16, reason: &str| PhoneRegistrationDecision::Refuse {
            sip_code,
            reason: reason.into(),
        };
        let d = &r.digest;
        let Some((_, password)) = self.phone_accounts.iter().find(|(u, _)| *u == d.username) else {
            return refuse(404, "unknown_user");
        };
        let Some(alg) = Algorithm::parse(&d.algorithm) else {
            return refuse(403, "bad_credentials");
        };
        let input = DigestInput {
            algorithm: alg,
            nonce: &d.nonce,
            method: &d.method,
            uri: &d.uri,
            qop: d.qop.as_deref(),
            nc: d.nc.as_deref().unwrap_or(""),
            cnonce: d.cnonce.as_deref().unwrap_or(""),
            body: b"",
        };
        if d.realm != phone_accounts::REALM
            || !verify(
                &ha1(alg, &d.username, &d.realm, password),
                &input,
                &d.response,
            )
        {
            return refuse(403, "bad_credentials");
        }
        let user = d.username.clone();
        self.phone_bindings.retain(|_, exp| *exp > now);
        if r.remove_all {
            self.phone_bindings.retain(|(u, _), _| *u != user);
        }
        for c in &r.contacts {
            let key = (user.clone(), c.uri.clone());
            if c.expires_seconds == 0 {
                self.phone_bindings.remove(&key);
            } else {
                self.phone_bindings
                    .insert(key, now + u64::from(c.expires_seconds) * 1000);
            }
        }
        let (tenant, pk) = phone_accounts::parse_username(&user).unwrap_or(("", 0));
        PhoneRegistrationDecision::Accept {
            tenant_id: tenant.to_string(),
            user_pk: pk,
            extension: "1002".into(),
            bindings: self
                .phone_bindings
                .iter()
                .filter(|((u, _), _)| *u == user)
                .map(|((_, c), exp)| PhoneBinding {
                    contact: c.clone(),
                    expires_seconds: (exp.saturating_sub(now) / 1000) as u32,
                    sidecar_id: r.sidecar_id.clone(),
                })
                .collect(),
        }
    }
}

pub struct FakeEdge {
    pub server: TestServer,
    pub state: Arc<Mutex<EdgeState>>,
    pub wake: Arc<Notify>,
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> (u16, Vec<u8>) {
    (status, serde_json::to_vec(v).unwrap())
}

fn err(status: u16, code: &str) -> (u16, Vec<u8>) {
    (
        status,
        serde_json::to_vec(&serde_json::json!({"error":{"code":code,"message":code}})).unwrap(),
    )
}

impl FakeEdge {
    pub async fn start(secret: &str, reg_ack: RegistrationAck) -> FakeEdge {
        let state = Arc::new(Mutex::new(EdgeState {
            secret: secret.as_bytes().to_vec(),
            reg_ack: Some(reg_ack),
            ..Default::default()
        }));
        let wake = Arc::new(Notify::new());
        let (st, wk) = (state.clone(), wake.clone());
        let handler: Handler = Arc::new(move |req: SeenRequest| {
            let st = st.clone();
            let wk = wk.clone();
            Box::pin(async move { FakeEdge::handle(st, wk, req).await })
        });
        FakeEdge {
            server: TestServer::start(handler).await,
            state,
            wake,
        }
    }

    async fn handle(
        st: Arc<Mutex<EdgeState>>,
        wake: Arc<Notify>,
        req: SeenRequest,
    ) -> (u16, Vec<u8>) {
        {
            let mut s = st.lock().unwrap();
            if let Some(p) = req.header("x-client-proto") {
                s.client_protos.push(p.to_string());
            }
            if let Some(i) = s.fail_next.iter().position(|(p, _)| *p == req.path) {
                let (_, code) = s.fail_next.remove(i);
                return err(code, "injected");
            }
            if let Some((status, code)) = s.refuse_all {
                return err(status, code);
            }
            let h = SignedHeaders::from_lookup(|n| req.header(n));
            let now = now_ms() / 1000;
            // Method and path as this edge routes on them (no base path).
            let target = signing::Target {
                method: &req.method,
                path: &req.path,
            };
            if let Err(e) = signing::verify(
                &s.secret,
                &h,
                target,
                &req.body,
                now,
                signing::DEFAULT_WINDOW_SECONDS,
            ) {
                s.signature_failures.push(e.to_string());
                return err(401, e.code());
            }
            let nonce = h.nonce.unwrap().to_string();
            if !s.nonces.insert(nonce) {
                s.signature_failures.push("replayed nonce".into());
                return err(401, "replayed_nonce");
            }
        }
        match req.path.as_str() {
            paths::REGISTER => {
                let r: Registration = serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                assert_eq!(Some(r.sidecar_id.as_str()), req.header("x-voxline-sidecar"));
                s.registrations.push(r);
                json(200, &s.reg_ack.unwrap())
            }
            paths::LEASE => {
                let l: LeaseRequest = serde_json::from_slice(&req.body).unwrap();
                st.lock().unwrap().leases.push(l.clone());
                let deadline =
                    tokio::time::Instant::now() + Duration::from_millis(u64::from(l.wait_ms));
                loop {
                    let notified = wake.notified();
                    {
                        let mut s = st.lock().unwrap();
                        let n = (l.free_slots as usize).min(s.offers.len());
                        let offers: Vec<Offer> = s.offers.drain(..n).collect();
                        let commands: Vec<Command> = s.commands.drain(..).collect();
                        let m = s.messages.len().min(MAX_MESSAGES_PER_LEASE);
                        let messages: Vec<MessageOffer> = s.messages.drain(..m).collect();
                        if !offers.is_empty() || !commands.is_empty() || !messages.is_empty() {
                            return json(
                                200,
                                &LeaseResponse {
                                    protocol_version: 1,
                                    offers,
                                    commands,
                                    messages,
                                },
                            );
                        }
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(deadline) => return json(200, &LeaseResponse::empty()),
                    }
                }
            }
            paths::ACK => {
                let a: Ack = serde_json::from_slice(&req.body).unwrap();
                let lease_id = a.lease_id.clone();
                st.lock().unwrap().acks.push(a);
                json(
                    200,
                    &AckReceipt {
                        protocol_version: 1,
                        lease_id,
                    },
                )
            }
            paths::EVENTS => {
                let b: EventBatch = serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                let mut accepted = 0;
                for e in b.events {
                    if s.seen_events.insert((e.call_id.clone(), e.attempt, e.seq)) {
                        accepted += 1;
                        s.events.push(e);
                    }
                }
                json(
                    200,
                    &EventsAck {
                        protocol_version: 1,
                        accepted,
                    },
                )
            }
            paths::MESSAGE_RESULTS => {
                let r: MessageResult = serde_json::from_slice(&req.body).unwrap();
                let message_id = r.message_id.clone();
                st.lock().unwrap().message_results.push(r);
                json(
                    200,
                    &MessageResultAck {
                        protocol_version: 1,
                        message_id,
                    },
                )
            }
            paths::INBOUND_MESSAGES => {
                let m: InboundMessage = serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                s.inbound.push(m);
                match s.inbound_status {
                    0 | 200 => json(
                        200,
                        &InboundMessageReceipt {
                            protocol_version: 1,
                            message_id: format!("msg_in{}", s.inbound.len()),
                        },
                    ),
                    code => err(code, "number_unknown"),
                }
            }
            paths::INBOUND_CALLS => {
                use voxline_shared::sidecar_link::{InboundCallAnswer, InboundDecision};
                let c: voxline_shared::sidecar_link::InboundCall =
                    serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                s.inbound_calls.push(c);
                let decision = s
                    .inbound_decisions
                    .pop_front()
                    .unwrap_or(InboundDecision::Refuse {
                        sip_code: 404,
                        reason: "unknown_number".into(),
                    });
                json(
                    200,
                    &InboundCallAnswer {
                        protocol_version: 1,
                        decision,
                    },
                )
            }
            paths::REGISTRATIONS => {
                let r: PhoneRegistration = serde_json::from_slice(&req.body).unwrap();
                let mut s = st.lock().unwrap();
                let decision = s.decide_registration(&r, now_ms());
                s.phone_registrations.push((r, decision.clone()));
                json(
                    200,
                    &PhoneRegistrationAnswer {
                        protocol_version: 1,
                        decision,
                    },
                )
            }
            paths::TRANSCRIPTS => {
                let t: voxline_shared::sidecar_link::CallTranscript =
                    serde_json::from_slice(&req.body).unwrap();
                let (call_id, attempt) = (t.call_id.clone(), t.attempt);
                st.lock().unwrap().transcripts.push(t);
                json(
                    200,
                    &voxline_shared::sidecar_link::CallTranscriptReceipt {
                        protocol_version: 1,
                        call_id,
                        attempt,
                        stored: true,
                    },
                )
            }
            _ => err(404, "not_found"),
        }
    }

    /// What the next `/inbound-calls` decides.
    pub fn decide_inbound(&self, d: voxline_shared::sidecar_link::InboundDecision) {
        self.state.lock().unwrap().inbound_decisions.push_back(d);
    }

    /// A text message for the next lease answer.
    pub fn message(&self, m: MessageOffer) {
        self.state.lock().unwrap().messages.push_back(m);
        self.wake.notify_waiters();
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn offer(&self, o: Offer) {
        self.state.lock().unwrap().offers.push_back(o);
        self.wake.notify_waiters();
    }

    pub fn command(&self, c: Command) {
        self.state.lock().unwrap().commands.push_back(c);
        self.wake.notify_waiters();
    }

    /// Polls `f` on the state every 20 ms until it returns `Some`, or panics after `within`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut f: impl FnMut(&EdgeState) -> Option<T>,
    ) -> T {
        let until = Instant::now() + within;
        loop {
            if let Some(v) = f(&self.state.lock().unwrap()) {
                return v;
            }
            if Instant::now() > until {
                let s = self.state.lock().unwrap();
                panic!(
                    "timed out waiting for {what}; registrations={} leases={} acks={:?} events={:?} sigfail={:?}",
                    s.registrations.len(),
                    s.leases.len(),
                    s.acks,
                    s.events.iter().map(|e| (&e.call_id, e.seq, e.kind.name())).collect::<Vec<_>>(),
                    s.signature_failures
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The event kinds recorded for a call, in seq order.
    pub fn kinds_of(&self, call_id: &str) -> Vec<&'static str> {
        let s = self.state.lock().unwrap();
        let mut evs: Vec<&CallEvent> = s.events.iter().filter(|e| e.call_id == call_id).collect();
        evs.sort_by_key(|e| e.seq);
        evs.iter().map(|e| e.kind.name()).collect()
    }
}

pub fn offer(call: &str, max_seconds: u32) -> Offer {
    Offer {
        tenant_id: "ten_1".into(),
        lease_id: format!("lease-{call}"),
        call_id: call.to_string(),
        attempt: 1,
        phone: "+14155550100".into(),
        caller_name: None,
        caller_number: None,
        agent_id: "ag_1".into(),
        system_prompt: Some("Be brief.".into()),
        voice: None,
        language: "en-US".into(),
        engine: voxline_shared::EngineKind::Local.into(),
        model: None,
        max_seconds,
        record: false,
        metadata: None,
        engine_api_key: None,
        engine_base_url: None,
        engine_key_unavailable: false,
        silence_timeout_seconds: None,
        ack_deadline_ms: now_ms() + 5_000,
        first_speaker: voxline_shared::sidecar_link::FirstSpeaker::Agent,
        analysis: None,
        amd: Default::default(),
        amd_message: None,
        tools: Vec::new(),
        connect: None,
        transfer_people: Vec::new(),
    }
}

/// `[telephony]` with one UDP trunk on 127.0.0.1:`trunk_port` (no
/// credentials, no registration) and RTP on `rtp_ports`.
#[allow(dead_code)]
pub fn one_trunk_telephony(
    trunk_port: u16,
    rtp_ports: (u16, u16),
) -> voxline_media_sidecar::config::Telephony {
    use voxline_media_sidecar::config;
    config::Telephony {
        rtp_port_min: rtp_ports.0,
        rtp_port_max: rtp_ports.1,
        trunks: vec![config::Trunk {
            name: "trunk".into(),
            host: "127.0.0.1".into(),
            port: Some(trunk_port),
            transport: config::SipTransport::Udp,
            ca_cert: None,
            tls_server_name: None,
            username: None,
            password: None,
            realm: None,
            in_dialog_from_trunk_only: None,
            require_100rel: false,
            refer: false,
            session_expires_seconds: 1800,
            min_se_seconds: 90,
            srtp: Default::default(),
            from_number: "+15550001111".into(),
            identity_header: config::IdentityHeaderKind::None,
            priority: 0,
            register: false,
            register_expires_seconds: 3_600,
            registrar: None,
            auth_username: None,
            outbound_proxy: None,
        }],
        ..config::Telephony::default()
    }
}

/// The whole sidecar with this `[telephony]` (engine URLs on `allowed`
/// hosts let through), linked to `edge` over HTTP/1.1 with `secret`, in a
/// runtime of its own; its summary when `stop_rx` stops it.
#[allow(dead_code)]
pub fn spawn_sip_sidecar(
    edge: &FakeEdge,
    secret: &str,
    telephony: voxline_media_sidecar::config::Telephony,
    allowed: voxline_media_sidecar::engine::guard::AllowedHosts,
    settings: voxline_media_sidecar::lease::LeaseSettings,
    opts: voxline_media_sidecar::lease::driver::RunOptions,
    stop_rx: tokio::sync::watch::Receiver<voxline_media_sidecar::lease::driver::Stop>,
) -> std::thread::JoinHandle<voxline_media_sidecar::lease::driver::RunSummary> {
    use voxline_media_sidecar::call_task::CallMode;
    use voxline_media_sidecar::config::{EdgeUrl, Secret};
    use voxline_media_sidecar::lease::driver::{run, RunOptions};
    use voxline_media_sidecar::telephony::Telephony;
    use voxline_media_sidecar::transport::http1::Http1Transport;

    let carrier = Http1Transport::new(
        EdgeUrl::parse(&format!("http://{}", edge.addr())).unwrap(),
        None,
    );
    let secret = Secret::new(secret);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let summary = rt.block_on(async move {
            let tel = Telephony::start(&telephony, allowed).await.unwrap();
            let opts = RunOptions {
                mode: CallMode::Sip(Arc::new(tel)),
                ..opts
            };
            run(Arc::new(carrier), settings, secret, opts, stop_rx).await
        });
        rt.shutdown_timeout(Duration::ZERO);
        summary
    })
}
