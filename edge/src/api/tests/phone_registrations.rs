//! Users' SIP phones (issue 16) over the in-memory ports: the admin call
//! that sets a person's SIP password (shown once, only HA1s kept), a
//! sidecar's `POST /v1/sidecar/registrations` checked against them, the
//! bindings it records, refreshes and removes (RFC 3261 10.3: one row per
//! binding, Call-ID/CSeq order, bounds, expiry), and the admin view.

use super::{TestSidecar, World};
use serde_json::{json, Value};
use voxline_shared::sidecar_link::{
    paths, phone_accounts, PhoneRegistrationAnswer, PhoneRegistrationDecision,
};
use voxline_shared::sip_digest::{ha1, response, Algorithm, DigestInput};

/// A phone account: SIP username and password.
pub(super) struct Phone {
    pub username: String,
    pub password: String,
}

/// The account of `pk` in `tid`, whether or not it exists.
fn phone_of(tid: &str, pk: u64) -> Phone {
    Phone {
        username: phone_accounts::username(tid, pk),
        password: String::new(),
    }
}

/// Sets a SIP password for person `pk` of `tid` (the admin call).
pub(super) fn sip_password(w: &World, tid: &str, pk: u64) -> Phone {
    let shown = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users/{pk}/sip-password"),
        None,
    );
    Phone {
        username: shown["sip"]["username"].as_str().unwrap().to_string(),
        password: shown["sip"]["password"].as_str().unwrap().to_string(),
    }
}

/// The REGISTER body a sidecar sends for `phone`, answered with `password`
/// by `alg`, for `contacts` [(uri, expires)].
pub(super) fn register_body(
    phone: &Phone,
    password: &str,
    alg: Algorithm,
    call_id: &str,
    cseq: u32,
    contacts: &[(&str, u32)],
) -> Value {
    let (nonce, uri, cnonce, nc) = ("n0nce", "sip:voxline.example", "c1", "00000001");
    let h = ha1(alg, &phone.username, phone_accounts::REALM, password);
    let d = DigestInput {
        algorithm: alg,
        nonce,
        method: "REGISTER",
        uri,
        qop: Some("auth"),
        nc,
        cnonce,
        body: b"",
    };
    json!({
        "region": "local",
        "digest": {"username": phone.username, "realm": phone_accounts::REALM, "nonce": nonce,
            "uri": uri, "method": "REGISTER", "response": response(&h, &d),
            "algorithm": alg.name(), "qop": "auth", "nc": nc, "cnonce": cnonce},
        "sip_call_id": call_id,
        "cseq": cseq,
        "contacts": contacts.iter().map(|(u, e)| json!({"uri": u, "expires_seconds": e})).collect::<Vec<_>>(),
        "source": "127.0.0.1:5062",
        "transport": "udp",
        "received_ms": 1,
    })
}

pub(super) fn decide(w: &World, sc: &TestSidecar, body: Value) -> PhoneRegistrationDecision {
    let answer = sc.send(w, paths::REGISTRATIONS, body);
    serde_json::from_value::<PhoneRegistrationAnswer>(answer)
        .unwrap()
        .decision
}

/// `decide` for `phone`'s REGISTER answered with its own password by MD5.
fn md5_register(
    w: &World,
    sc: &TestSidecar,
    phone: &Phone,
    call_id: &str,
    cseq: u32,
    contacts: &[(&str, u32)],
) -> PhoneRegistrationDecision {
    let body = register_body(
        phone,
        &phone.password,
        Algorithm::Md5,
        call_id,
        cseq,
        contacts,
    );
    decide(w, sc, body)
}

/// The contacts an accepted registration lists.
fn contacts(d: &PhoneRegistrationDecision) -> Vec<(String, u32)> {
    match d {
        PhoneRegistrationDecision::Accept { bindings, .. } => bindings
            .iter()
            .map(|b| (b.contact.clone(), b.expires_seconds))
            .collect(),
        PhoneRegistrationDecision::Refuse { sip_code, reason } => {
            panic!("refused {sip_code} {reason}")
        }
    }
}

fn refusal(d: &PhoneRegistrationDecision) -> (u16, &str) {
    match d {
        PhoneRegistrationDecision::Refuse { sip_code, reason } => (*sip_code, reason.as_str()),
        PhoneRegistrationDecision::Accept { .. } => panic!("accepted: {d:?}"),
    }
}

/// A tenant with person John at 1002 and a registered sidecar.
pub(super) fn tenant_with_person(w: &World, sc: &str) -> (String, u64, TestSidecar) {
    let (tid, _key) = w.tenant(false);
    let john = w.admin(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users"),
        Some(json!({"extension": "1002", "first_name": "John"})),
    );
    let sidecar = TestSidecar::create(w, sc);
    sidecar.send(
        w,
        paths::REGISTER,
        json!({"region": "local", "capacity": 4, "version": "t"}),
    );
    (tid, john["pk"].as_u64().unwrap(), sidecar)
}

fn listed_user(w: &World, tid: &str, pk: u64) -> Value {
    let list = w.admin(
        "GET",
        &format!("/admin/tenants/{tid}/directory/users"),
        None,
    );
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["pk"] == pk)
        .cloned()
        .unwrap()
}

#[test]
fn a_sip_password_is_shown_once_and_only_its_ha1s_are_kept() {
    let w = World::new();
    let (tid, pk, _sc) = tenant_with_person(&w, "sc-pw");
    let phone = sip_password(&w, &tid, pk);
    assert_eq!(phone.username, format!("{pk}.{tid}"));
    assert_eq!(
        phone_accounts::parse_username(&phone.username),
        Some((tid.as_str(), pk))
    );
    assert_eq!(phone.password.len(), 24);
    let user = listed_user(&w, &tid, pk);
    assert_eq!(user["sip"]["username"], phone.username);
    assert_eq!(user["sip"]["realm"], "voxline");
    let text = user.to_string();
    assert!(user["sip"].get("password").is_none(), "{user}");
    assert!(
        !text.contains(&phone.password) && !text.contains("ha1"),
        "{user}"
    );
    // What the directory stores: the HA1s, never the password.
    let stored = w.with_env(|env| {
        futures::executor::block_on(crate::directory::ops::users(env.directory, &tid)).unwrap()
    });
    let sip = stored[0].sip.clone().unwrap();
    assert_eq!(
        sip.ha1_md5,
        ha1(Algorithm::Md5, &phone.username, "voxline", &phone.password)
    );
    assert_eq!(
        sip.ha1_sha256,
        ha1(
            Algorithm::Sha256,
            &phone.username,
            "voxline",
            &phone.password
        )
    );
    assert!(!serde_json::to_string(&stored[0])
        .unwrap()
        .contains(&phone.password));
    // A rotation gives another password.
    let again = sip_password(&w, &tid, pk);
    assert_ne!(again.password, phone.password);
    // An AI agent's user has no phones.
    let (atid, aid, _) = super::dialects::tenant_with_agent(&w);
    let ai = w.admin(
        "POST",
        &format!("/admin/tenants/{atid}/directory/users"),
        Some(
            json!({"kind": "ai_agent", "agent_id": aid, "extension": "1001", "first_name": "Ava"}),
        ),
    );
    let r = w.send(
        "POST",
        &format!(
            "/admin/tenants/{atid}/directory/users/{}/sip-password",
            ai["pk"]
        ),
        Some(super::ADMIN),
        None,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = w.send(
        "POST",
        &format!("/admin/tenants/{tid}/directory/users/999/sip-password"),
        Some(super::ADMIN),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn a_phone_registers_refreshes_and_unregisters_with_its_digest() {
    let w = World::new();
    let (tid, pk, sc) = tenant_with_person(&w, "sc-reg");
    let phone = sip_password(&w, &tid, pk);
    let md5 = |phone: &Phone, call_id: &str, cseq: u32, contacts: &[(&str, u32)]| {
        md5_register(&w, &sc, phone, call_id, cseq, contacts)
    };
    let a = "sip:1002@127.0.0.1:5062";
    let b = "sip:1002@127.0.0.1:5064;transport=tcp";

    // MD5 and SHA-256 answers are both checked against the stored HA1s.
    let d = md5(&phone, "c1", 1, &[(a, 600)]);
    let PhoneRegistrationDecision::Accept {
        tenant_id,
        user_pk,
        extension,
        ..
    } = &d
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        (tenant_id.as_str(), *user_pk, extension.as_str()),
        (tid.as_str(), pk, "1002")
    );
    assert_eq!(contacts(&d), vec![(a.to_string(), 600)]);
    let d = decide(
        &w,
        &sc,
        register_body(
            &phone,
            &phone.password,
            Algorithm::Sha256Sess,
            "c2",
            1,
            &[(b, 300)],
        ),
    );
    assert_eq!(
        contacts(&d),
        vec![(a.to_string(), 600), (b.to_string(), 300)]
    );
    let user = listed_user(&w, &tid, pk);
    let regs = user["registrations"].as_array().unwrap();
    assert_eq!(regs.len(), 2, "{user}");
    assert_eq!(
        (
            regs[0]["sidecar_id"].as_str(),
            regs[0]["source"].as_str(),
            regs[0]["transport"].as_str()
        ),
        (Some("sc-reg"), Some("127.0.0.1:5062"), Some("udp"))
    );

    // A wrong password, an unknown user, a name that is nobody's.
    let wrong = decide(
        &w,
        &sc,
        register_body(&phone, "guess", Algorithm::Md5, "c1", 2, &[(a, 600)]),
    );
    assert_eq!(refusal(&wrong), (403, "bad_credentials"));
    let nobody = phone_of(&tid, 999);
    let d = decide(
        &w,
        &sc,
        register_body(&nobody, "x", Algorithm::Md5, "c9", 1, &[(a, 60)]),
    );
    assert_eq!(refusal(&d), (404, "unknown_user"));
    let stranger = phone_of("ten_00000000000000000000", pk);
    let d = decide(
        &w,
        &sc,
        register_body(&stranger, "x", Algorithm::Md5, "c9", 1, &[(a, 60)]),
    );
    assert_eq!(refusal(&d), (404, "unknown_user"));

    // The same Call-ID changes a binding only with a higher CSeq.
    let d = md5(&phone, "c1", 1, &[(a, 900)]);
    assert_eq!(refusal(&d), (500, "out_of_order"));
    let d = md5(&phone, "c1", 2, &[(a, 900)]);
    assert_eq!(contacts(&d)[0], (a.to_string(), 900));

    // Expires 0 removes one binding; a query (no contacts) lists the rest.
    let d = md5(&phone, "c1", 3, &[(a, 0)]);
    assert_eq!(contacts(&d), vec![(b.to_string(), 300)]);
    let d = md5(&phone, "c3", 1, &[]);
    assert_eq!(contacts(&d), vec![(b.to_string(), 300)]);

    // A binding lapses at its expiry.
    w.now.set(w.now.get() + 301_000);
    let d = md5(&phone, "c3", 2, &[]);
    assert_eq!(contacts(&d), vec![]);
    assert_eq!(listed_user(&w, &tid, pk)["registrations"], json!([]));

    // `Contact: *` removes all; a new password forgets the old phones.
    md5(&phone, "c4", 1, &[(a, 60), (b, 60)]);
    let mut all = register_body(&phone, &phone.password, Algorithm::Md5, "c5", 1, &[]);
    all["remove_all"] = json!(true);
    assert_eq!(contacts(&decide(&w, &sc, all)), vec![]);
    md5(&phone, "c4", 2, &[(a, 60)]);
    let new = sip_password(&w, &tid, pk);
    assert_eq!(listed_user(&w, &tid, pk)["registrations"], json!([]));
    let old = md5(&phone, "c4", 3, &[(a, 60)]);
    assert_eq!(refusal(&old), (403, "bad_credentials"));
    let d = md5(&new, "c4", 4, &[(a, 60)]);
    assert_eq!(contacts(&d).len(), 1);
}

#[test]
fn a_user_holds_a_bounded_number_of_bindings() {
    use voxline_shared::sidecar_link::MAX_PHONE_CONTACTS;
    let w = World::new();
    let (tid, pk, sc) = tenant_with_person(&w, "sc-bound");
    let phone = sip_password(&w, &tid, pk);
    let md5 = |phone: &Phone, call_id: &str, cseq: u32, contacts: &[(&str, u32)]| {
        md5_register(&w, &sc, phone, call_id, cseq, contacts)
    };
    let uris: Vec<String> = (0..=MAX_PHONE_CONTACTS)
        .map(|i| format!("sip:1002@127.0.0.1:{}", 6000 + i))
        .collect();
    let first: Vec<(&str, u32)> = uris[..MAX_PHONE_CONTACTS]
        .iter()
        .map(|u| (u.as_str(), 60))
        .collect();
    let d = md5(&phone, "c1", 1, &first);
    assert_eq!(contacts(&d).len(), MAX_PHONE_CONTACTS);
    let one_more = [(uris[MAX_PHONE_CONTACTS].as_str(), 60)];
    let d = md5(&phone, "c2", 1, &one_more);
    assert_eq!(refusal(&d), (403, "too_many_bindings"));
    // A refresh of a held binding is still taken.
    let d = md5(&phone, "c1", 2, &first[..1]);
    assert_eq!(contacts(&d).len(), MAX_PHONE_CONTACTS);
    // More contacts than the link allows in one request: 422 at the door.
    let too_many: Vec<(&str, u32)> = uris.iter().map(|u| (u.as_str(), 60)).collect();
    let mut body = register_body(&phone, &phone.password, Algorithm::Md5, "c3", 1, &too_many);
    body["protocol_version"] = json!(1);
    body["sidecar_id"] = json!("sc-bound");
    let req = sc.signed(&w, paths::REGISTRATIONS, body.to_string().into_bytes());
    assert_eq!(w.send_req(&req).status, 422);
}
