use super::*;
use std::net::SocketAddr;
use voxline_shared::sidecar_link::PhoneBinding;
use voxline_shared::sip_digest::{ha1, response, DigestInput};

const USER: &str = "7.ten_0123456789abcdef0123";
const TENANT: &str = "ten_0123456789abcdef0123";
const PHONE: &str = "127.0.0.1:5062";

fn phone() -> Flow {
    Flow::udp(PHONE.parse::<SocketAddr>().unwrap())
}

fn registrar(config: RegistrarConfig) -> Registrar {
    Registrar::new(config, [7u8; 32])
}

/// A REGISTER for USER with these extra header lines.
fn register(cseq: u32, lines: &[String]) -> Message {
    let mut text = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{cseq}x\r\n\
         From: <sip:{USER}@127.0.0.1>;tag=ph1\r\n\
         To: <sip:{USER}@127.0.0.1>\r\n\
         Call-ID: reg-1@phone\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Max-Forwards: 70\r\n"
    );
    for l in lines {
        text.push_str(l);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    msg::parse(text.as_bytes()).unwrap()
}

/// The nonce and algorithms of a 401.
fn challenges(r: &Message) -> Vec<(String, String, bool)> {
    assert_eq!(r.code(), Some(401));
    r.header_lines("WWW-Authenticate")
        .iter()
        .map(|v| {
            let p = auth_params(v.strip_prefix("Digest ").unwrap()).unwrap();
            let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            assert_eq!(get("realm").as_deref(), Some("voxline"));
            assert_eq!(get("qop").as_deref(), Some("auth"));
            (
                get("nonce").unwrap(),
                get("algorithm").unwrap(),
                get("stale").as_deref() == Some("true"),
            )
        })
        .collect()
}

/// An `Authorization` line answering `nonce` with `password`.
fn authorization(nonce: &str, password: &str) -> String {
    let h = ha1(Algorithm::Md5, USER, "voxline", password);
    let d = DigestInput {
        algorithm: Algorithm::Md5,
        nonce,
        method: "REGISTER",
        uri: "sip:127.0.0.1",
        qop: Some("auth"),
        nc: "00000001",
        cnonce: "abc",
        body: b"",
    };
    format!(
        "Authorization: Digest username=\"{USER}\", realm=\"voxline\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\"",
        response(&h, &d)
    )
}

fn reply(step: RegistrarStep) -> Message {
    match step {
        RegistrarStep::Reply(m) => m,
        other => panic!("not a reply: {other:?}"),
    }
}

fn asked(step: RegistrarStep) -> (PendingId, PhoneRegistration) {
    match step {
        RegistrarStep::AskEdge(id, r) => (id, *r),
        other => panic!("the edge is not asked: {other:?}"),
    }
}

/// The edge's acceptance listing `contacts` [(uri, expires)].
fn accept(contacts: &[(&str, u32)]) -> Option<PhoneRegistrationAnswer> {
    Some(PhoneRegistrationAnswer {
        protocol_version: 1,
        decision: PhoneRegistrationDecision::Accept {
            tenant_id: TENANT.into(),
            user_pk: 7,
            extension: "1002".into(),
            bindings: contacts
                .iter()
                .map(|(u, e)| PhoneBinding {
                    contact: u.to_string(),
                    expires_seconds: *e,
                    sidecar_id: "sc1".into(),
                })
                .collect(),
        },
    })
}

/// A nonce the registrar issued at `now_ms`.
fn nonce_at(r: &mut Registrar, now_ms: u64) -> String {
    let c = reply(r.on_register(now_ms, &phone(), &register(1, &[]), "t"));
    challenges(&c)[0].0.clone()
}

#[test]
fn a_register_without_credentials_is_challenged_with_md5_and_sha256_when_asked() {
    let algorithms = |r: &mut Registrar| {
        let c = reply(r.on_register(1_000, &phone(), &register(1, &[]), "t1"));
        challenges(&c).into_iter().map(|c| c.1).collect::<Vec<_>>()
    };
    assert_eq!(
        algorithms(&mut registrar(RegistrarConfig::default())),
        ["MD5"]
    );
    let mut r = registrar(RegistrarConfig {
        digest_sha256: true,
        ..RegistrarConfig::default()
    });
    assert_eq!(algorithms(&mut r), ["SHA-256", "MD5"]);
    let c = reply(r.on_register(1_000, &phone(), &register(1, &[]), "t1"));
    let ch = challenges(&c);
    assert_eq!(ch[0].0, ch[1].0, "one nonce for both");
    assert!(!ch[0].2);
    assert_eq!(c.to_tag().as_deref(), Some("t1"));
    // An answer to a nonce that is not ours is challenged again.
    let forged = format!("{}0", &ch[0].0[..ch[0].0.len() - 1]);
    let m = register(
        2,
        &[
            authorization(&forged, "pw"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
        ],
    );
    let again = reply(r.on_register(2_000, &phone(), &m, "t1"));
    assert!(!challenges(&again)[0].2, "not stale: unknown");
}

#[test]
fn an_answered_register_goes_to_the_edge_and_its_acceptance_is_the_200() {
    let mut r = registrar(RegistrarConfig::default());
    let nonce = nonce_at(&mut r, 1_000);
    let m = register(
        2,
        &[
            authorization(&nonce, "pw"),
            "Contact: <sip:1002@127.0.0.1:5062>;expires=120".into(),
            "Contact: <sip:1002@127.0.0.1:5064;transport=tcp>".into(),
            "Expires: 300".into(),
        ],
    );
    let (id, reg) = asked(r.on_register(2_000, &phone(), &m, "t2"));
    assert_eq!(reg.digest.username, USER);
    assert_eq!(reg.digest.nonce, nonce);
    assert_eq!(reg.digest.method, "REGISTER");
    assert_eq!((reg.sip_call_id.as_str(), reg.cseq), ("reg-1@phone", 2));
    assert_eq!(
        reg.contacts,
        vec![
            RequestedContact {
                uri: "sip:1002@127.0.0.1:5062".into(),
                expires_seconds: 120
            },
            RequestedContact {
                uri: "sip:1002@127.0.0.1:5064;transport=tcp".into(),
                expires_seconds: 300
            },
        ]
    );
    assert_eq!(
        (reg.source.as_str(), reg.transport.as_str()),
        (PHONE, "udp")
    );
    // A retransmission while the edge decides is absorbed.
    assert_eq!(
        r.on_register(2_100, &phone(), &m, "t2"),
        RegistrarStep::Absorbed
    );
    let (flow, ok) = r
        .on_edge_answer(
            2_500,
            id,
            accept(&[
                ("sip:1002@127.0.0.1:5062", 120),
                ("sip:1002@127.0.0.1:5064;transport=tcp", 300),
            ]),
        )
        .unwrap();
    assert_eq!(flow, phone());
    assert_eq!(ok.code(), Some(200));
    assert_eq!(
        ok.header_lines("Contact"),
        [
            "<sip:1002@127.0.0.1:5062>;expires=120",
            "<sip:1002@127.0.0.1:5064;transport=tcp>;expires=300"
        ]
    );
    let held = r.registrations().contacts_for(TENANT, 7, 3_000);
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].source, PHONE.parse::<SocketAddr>().unwrap());
    assert_eq!(held[0].expires_at_ms, 2_500 + 120_000);
    // Answered once only.
    assert!(r.on_edge_answer(2_600, id, accept(&[])).is_none());
    // Expiry: the first lapses, the second stays until its own.
    assert_eq!(r.registrations().contacts_for(TENANT, 7, 122_500).len(), 1);
    assert_eq!(r.registrations().contacts_for(TENANT, 7, 302_500).len(), 0);
}

#[test]
fn a_stale_nonce_is_challenged_again_with_stale_true() {
    let mut r = registrar(RegistrarConfig::default());
    let nonce = nonce_at(&mut r, 1_000);
    let m = register(
        2,
        &[
            authorization(&nonce, "pw"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
        ],
    );
    let late = 1_000 + NONCE_LIFETIME_MS + 1;
    let c = reply(r.on_register(late, &phone(), &m, "t"));
    let ch = challenges(&c);
    assert!(ch.iter().all(|c| c.2), "stale=true on every challenge");
    assert_ne!(ch[0].0, nonce, "a fresh nonce");
    // The fresh one is taken.
    let m = register(
        3,
        &[
            authorization(&ch[0].0, "pw"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
        ],
    );
    asked(r.on_register(late + 10, &phone(), &m, "t"));
}

#[test]
fn too_short_an_expiry_is_423_and_too_long_one_is_shortened() {
    let mut r = registrar(RegistrarConfig::default());
    let nonce = nonce_at(&mut r, 0);
    let m = register(
        2,
        &[
            authorization(&nonce, "pw"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
            "Expires: 30".into(),
        ],
    );
    let c = reply(r.on_register(10, &phone(), &m, "t"));
    assert_eq!(c.code(), Some(423));
    assert_eq!(c.header("Min-Expires"), Some("60"));
    let m = register(
        3,
        &[
            authorization(&nonce, "pw"),
            "Contact: <sip:a@127.0.0.1:5062>;expires=99999".into(),
        ],
    );
    let (_, reg) = asked(r.on_register(10, &phone(), &m, "t"));
    assert_eq!(reg.contacts[0].expires_seconds, 3_600);
    // No expiry asked: the default.
    let m = register(
        4,
        &[
            authorization(&nonce, "pw"),
            "Contact: <sip:b@127.0.0.1:5062>".into(),
        ],
    );
    let (_, reg) = asked(r.on_register(10, &phone(), &m, "t"));
    assert_eq!(reg.contacts[0].expires_seconds, 600);
}

#[test]
fn contact_star_with_expires_0_removes_every_binding() {
    let mut r = registrar(RegistrarConfig::default());
    let nonce = nonce_at(&mut r, 0);
    let m = register(
        2,
        &[
            authorization(&nonce, "pw"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
            "Contact: <sip:b@127.0.0.1:5062>".into(),
        ],
    );
    let (id, _) = asked(r.on_register(10, &phone(), &m, "t"));
    r.on_edge_answer(
        20,
        id,
        accept(&[("sip:a@127.0.0.1:5062", 600), ("sip:b@127.0.0.1:5062", 600)]),
    );
    assert_eq!(r.registrations().contacts_for(TENANT, 7, 30).len(), 2);
    // `*` needs Expires: 0 and to be alone.
    let bad = register(
        3,
        &[
            authorization(&nonce, "pw"),
            "Contact: *".into(),
            "Expires: 60".into(),
        ],
    );
    assert_eq!(
        reply(r.on_register(30, &phone(), &bad, "t")).code(),
        Some(400)
    );
    let m = register(
        4,
        &[
            authorization(&nonce, "pw"),
            "Contact: *".into(),
            "Expires: 0".into(),
        ],
    );
    let (id, reg) = asked(r.on_register(40, &phone(), &m, "t"));
    assert!(reg.remove_all && reg.contacts.is_empty());
    let (_, ok) = r.on_edge_answer(50, id, accept(&[])).unwrap();
    assert_eq!(ok.code(), Some(200));
    assert!(ok.header("Contact").is_none());
    assert!(r.registrations().contacts_for(TENANT, 7, 60).is_empty());
    assert!(r.registrations().is_empty());
}

#[test]
fn bindings_are_bounded_per_user_and_in_total() {
    let config = RegistrarConfig {
        max_bindings_per_user: 2,
        max_bindings: 3,
        ..RegistrarConfig::default()
    };
    let mut r = registrar(config);
    let nonce = nonce_at(&mut r, 0);
    let c = |u: &str| format!("Contact: <sip:{u}@127.0.0.1:5062>");
    let m = register(2, &[authorization(&nonce, "pw"), c("a"), c("b")]);
    let (id, _) = asked(r.on_register(10, &phone(), &m, "t"));
    r.on_edge_answer(
        20,
        id,
        accept(&[("sip:a@127.0.0.1:5062", 600), ("sip:b@127.0.0.1:5062", 600)]),
    );
    let third = register(3, &[authorization(&nonce, "pw"), c("c")]);
    assert_eq!(
        reply(r.on_register(30, &phone(), &third, "t")).code(),
        Some(403)
    );
    // A refresh of a held binding is not a new one.
    let refresh = register(4, &[authorization(&nonce, "pw"), c("a")]);
    asked(r.on_register(30, &phone(), &refresh, "t"));
    // Another user: one more fits in the total, two do not.
    let other = USER.replace("7.", "8.");
    let m = register(
        5,
        &[
            authorization(&nonce, "pw").replace(USER, &other),
            c("x"),
            c("y"),
        ],
    );
    assert_eq!(
        reply(r.on_register(40, &phone(), &m, "t")).code(),
        Some(503)
    );
}

#[test]
fn the_edges_refusal_is_the_phones_answer_and_no_answer_is_503() {
    let mut r = registrar(RegistrarConfig::default());
    let nonce = nonce_at(&mut r, 0);
    let m = register(
        2,
        &[
            authorization(&nonce, "wrong"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
        ],
    );
    let (id, _) = asked(r.on_register(10, &phone(), &m, "t"));
    let refused = Some(PhoneRegistrationAnswer {
        protocol_version: 1,
        decision: PhoneRegistrationDecision::Refuse {
            sip_code: 403,
            reason: "bad_credentials".into(),
        },
    });
    let (_, no) = r.on_edge_answer(20, id, refused).unwrap();
    assert_eq!(no.code(), Some(403));
    assert!(r.registrations().is_empty());
    // The edge never answers: 503 with Retry-After once the wait is over.
    let m = register(
        3,
        &[
            authorization(&nonce, "pw"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
        ],
    );
    asked(r.on_register(30, &phone(), &m, "t"));
    assert_eq!(r.next_deadline_ms(), Some(30 + EDGE_WITHIN_MS));
    assert!(r.expire(30 + EDGE_WITHIN_MS - 1).is_empty());
    let late = r.expire(30 + EDGE_WITHIN_MS);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1.code(), Some(503));
    assert!(late[0].1.header("Retry-After").is_some());
    // A username that names nobody: 404 without asking the edge.
    let m = register(
        4,
        &[
            authorization(&nonce, "pw").replace(USER, "bob"),
            "Contact: <sip:a@127.0.0.1:5062>".into(),
        ],
    );
    assert_eq!(
        reply(r.on_register(40, &phone(), &m, "t")).code(),
        Some(404)
    );
}
