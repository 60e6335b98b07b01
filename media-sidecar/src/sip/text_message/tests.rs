use super::*;
use crate::random::SeededRandom;
use crate::sip::auth::Challenge;
use crate::sip::msg::parse;

const TRUNK: &str = "198.51.100.1:5060";
const LOCAL: &str = "192.0.2.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cfg(credentials: Option<Credentials>) -> MessageConfig {
    MessageConfig {
        trunk: addr(TRUNK),
        request_uri: "sip:+14155550111@trunk.example.com".into(),
        to_uri: "sip:+14155550111@trunk.example.com".into(),
        from_uri: format!("sip:+14155550100@{LOCAL}"),
        local: addr(LOCAL),
        transport: Transport::Udp,
        credentials,
        content_type: "text/plain;charset=UTF-8".into(),
        body: "héllo".as_bytes().to_vec(),
        timers: Timers::default(),
        user_agent: "voxline/test".into(),
        route: None,
    }
}

fn creds() -> Credentials {
    Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        realm: None,
    }
}

fn client(credentials: Option<Credentials>) -> MessageClient {
    MessageClient::new(cfg(credentials), 0, Box::new(SeededRandom::new(7)))
}

fn sent(c: &mut MessageClient) -> Vec<Message> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|t| {
            assert_eq!(t.dest, addr(TRUNK));
            parse(&t.bytes).unwrap()
        })
        .collect()
}

fn reply(req: &Message, code: u16, extra: &[(&str, &str)]) -> Message {
    let mut r = response_to(req, code, Some("t1"));
    for (n, v) in extra {
        r.push(n, *v);
    }
    parse(&r.to_bytes()).unwrap()
}

const CHALLENGE: &str =
    r#"Digest realm="trunk.test", nonce="n1", qop="auth", algorithm=MD5, opaque="o""#;

#[test]
fn the_message_is_an_out_of_dialog_request_with_the_text() {
    let mut c = client(None);
    let m = sent(&mut c).pop().unwrap();
    assert_eq!(m.method(), Some("MESSAGE"));
    assert_eq!(m.uri(), Some("sip:+14155550111@trunk.example.com"));
    assert_eq!(m.header("To"), Some("<sip:+14155550111@trunk.example.com>"));
    assert!(m.to_tag().is_none(), "out of dialog");
    assert!(m.from_tag().is_some());
    assert!(m
        .header("From")
        .unwrap()
        .starts_with("<sip:+14155550100@192.0.2.1:5060>;tag="));
    assert_eq!(m.cseq(), (1, "MESSAGE"));
    assert_eq!(m.content_type(), Some("text/plain;charset=UTF-8"));
    assert_eq!(m.body, "héllo".as_bytes());
    assert!(m.header("Contact").is_none(), "RFC 3428: no Contact");
}

#[test]
fn a_202_means_sent_and_retransmissions_are_absorbed_until_timer_k() {
    let mut c = client(None);
    let m = sent(&mut c).pop().unwrap();
    c.handle_response(100, &reply(&m, 202, &[]));
    let end = c.poll_end().unwrap();
    assert_eq!(
        (end.outcome, end.sip_code, end.reason),
        (MessageOutcome::Sent, Some(202), None)
    );
    c.handle_response(150, &reply(&m, 202, &[]));
    assert_eq!(c.poll_end(), None, "one end only");
    assert!(!c.is_done(), "Timer K still absorbs retransmissions");
    c.handle_timeout(100 + 5_000);
    assert!(c.is_done());
}

#[test]
fn a_401_is_answered_once_with_digest_then_the_answer_decides() {
    let mut c = client(Some(creds()));
    let first = sent(&mut c).pop().unwrap();
    c.handle_response(10, &reply(&first, 401, &[("WWW-Authenticate", CHALLENGE)]));
    assert_eq!(c.poll_end(), None);
    let second = sent(&mut c).pop().expect("re-sent with credentials");
    assert_eq!(second.cseq(), (2, "MESSAGE"));
    assert_eq!(second.call_id(), first.call_id());
    assert_eq!(second.from_tag(), first.from_tag());
    assert_ne!(second.top_branch(), first.top_branch(), "a new transaction");
    let auth = second.header("Authorization").unwrap();
    assert!(auth.contains("username=\"alice\""), "{auth}");
    assert!(
        auth.contains("uri=\"sip:+14155550111@trunk.example.com\""),
        "{auth}"
    );
    assert!(auth.contains("qop=auth, nc=00000001"), "{auth}");
    // The expected response for MESSAGE (not INVITE) over this URI.
    let cnonce = auth
        .split("cnonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut digest = DigestClient::default();
    let expected = digest.authorize(
        &Challenge::parse(CHALLENGE).unwrap(),
        &creds(),
        "MESSAGE",
        "sip:+14155550111@trunk.example.com",
        cnonce,
        b"",
    );
    assert_eq!(auth, expected);
    // A late retransmission of the 401 (old branch) changes nothing.
    c.handle_response(20, &reply(&first, 401, &[("WWW-Authenticate", CHALLENGE)]));
    assert!(sent(&mut c).is_empty() && c.poll_end().is_none());
    c.handle_response(30, &reply(&second, 200, &[]));
    assert_eq!(c.poll_end().unwrap().outcome, MessageOutcome::Sent);
}

#[test]
fn a_407_gets_proxy_authorization() {
    let mut c = client(Some(creds()));
    let first = sent(&mut c).pop().unwrap();
    c.handle_response(
        10,
        &reply(&first, 407, &[("Proxy-Authenticate", CHALLENGE)]),
    );
    let second = sent(&mut c).pop().unwrap();
    assert!(second.header("Proxy-Authorization").is_some());
    assert!(second.header("Authorization").is_none());
}

#[test]
fn a_second_challenge_for_the_same_nonce_is_a_rejection() {
    let mut c = client(Some(creds()));
    let first = sent(&mut c).pop().unwrap();
    c.handle_response(10, &reply(&first, 401, &[("WWW-Authenticate", CHALLENGE)]));
    let second = sent(&mut c).pop().unwrap();
    c.handle_response(20, &reply(&second, 401, &[("WWW-Authenticate", CHALLENGE)]));
    assert!(sent(&mut c).is_empty(), "no third try");
    let end = c.poll_end().unwrap();
    assert_eq!(
        (end.outcome, end.sip_code, end.reason),
        (MessageOutcome::Failed, Some(401), Some(reasons::REJECTED))
    );
}

#[test]
fn a_challenge_without_credentials_is_a_rejection() {
    let mut c = client(None);
    let first = sent(&mut c).pop().unwrap();
    c.handle_response(10, &reply(&first, 401, &[("WWW-Authenticate", CHALLENGE)]));
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.poll_end().unwrap().sip_code, Some(401));
}

#[test]
fn finals_map_to_rejected_and_only_503_fails_over() {
    for (code, next) in [
        (488, false),
        (404, false),
        (480, false),
        (503, true),
        (603, false),
    ] {
        let mut c = client(None);
        let m = sent(&mut c).pop().unwrap();
        c.handle_response(10, &reply(&m, code, &[("Retry-After", "30")]));
        let end = c.poll_end().unwrap();
        assert_eq!(
            (end.outcome, end.sip_code, end.reason, end.try_next_trunk),
            (
                MessageOutcome::Failed,
                Some(code),
                Some(reasons::REJECTED),
                next
            ),
            "{code}"
        );
        assert_eq!(end.retry_after_s, Some(30));
    }
}

#[test]
fn timer_e_retransmits_and_timer_f_times_out() {
    let mut c = client(None);
    let first = sent(&mut c);
    let mut resent = vec![];
    while let Some(at) = c.next_timeout() {
        c.handle_timeout(at);
        for m in sent(&mut c) {
            assert_eq!(m.to_bytes(), first[0].to_bytes());
            resent.push(at);
        }
        if let Some(end) = c.poll_end() {
            assert_eq!(
                (end.outcome, end.sip_code, end.reason),
                (MessageOutcome::Failed, None, Some(reasons::TIMEOUT))
            );
            assert_eq!(at, 32_000, "Timer F = 64*T1");
            break;
        }
    }
    assert_eq!(&resent[..5], &[500, 1_500, 3_500, 7_500, 11_500]);
}

#[test]
fn a_provisional_does_not_end_it_and_a_stray_response_is_ignored() {
    let mut c = client(None);
    let m = sent(&mut c).pop().unwrap();
    c.handle_response(5, &reply(&m, 100, &[]));
    assert_eq!(c.poll_end(), None);
    let mut other = reply(&m, 200, &[]);
    other.headers.retain(|(n, _)| n != "Call-ID");
    other.push("Call-ID", "someone-else");
    c.handle_response(6, &other);
    assert_eq!(c.poll_end(), None);
}

#[test]
fn cpim_carries_the_imdn_request() {
    let imdn = Imdn {
        message_id: "msg_1".into(),
        date_time: rfc3339_utc(1_700_000_000_123),
    };
    let body = cpim_body("sip:+1@a", "sip:+2@b", "hi", &imdn);
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("imdn.Message-ID: msg_1\r\n"));
    assert!(text.contains("DateTime: 2023-11-14T22:13:20.123Z\r\n"));
    assert!(
        text.contains("imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n")
    );
    // What we send, we read back.
    assert_eq!(
        body_content("message/cpim", &body, true),
        Ok(Some(InboundContent::Text { body: "hi".into() }))
    );
    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
}

// ------------------------------------------------------------------ inbound

fn inbound(to: &str, from: &str, content_type: Option<&str>, body: &[u8]) -> Message {
    let mut m = Message::request("MESSAGE", "sip:voxline@192.0.2.1:5060");
    m.push("Via", "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKin1");
    m.push("From", format!("<{from}>;tag=f1"));
    m.push("To", format!("<{to}>"));
    m.push("Call-ID", "in-1@trunk");
    m.push("CSeq", "1 MESSAGE");
    if let Some(ct) = content_type {
        m.push("Content-Type", ct);
    }
    m.body = body.to_vec();
    parse(&m.to_bytes()).unwrap()
}

fn text(body: &str) -> InboundContent {
    InboundContent::Text { body: body.into() }
}

#[test]
fn a_text_is_read_with_its_numbers_in_e164() {
    let m = inbound(
        "sip:14155550100@192.0.2.1;user=phone",
        "sip:+1-415-555-0111@trunk.example.com",
        Some("text/plain; charset=\"UTF-8\""),
        "Hi there ☺".as_bytes(),
    );
    assert_eq!(
        parse_inbound(&m),
        Inbound::Forward(InboundText {
            from: "+14155550111".into(),
            to: "+14155550100".into(),
            content: text("Hi there ☺"),
            sip_call_id: "in-1@trunk".into(),
        })
    );
    // tel: URIs and an alphanumeric sender.
    let m = inbound(
        "tel:+14155550100",
        "sip:ACME@sms.example",
        Some("text/plain"),
        b"x",
    );
    let Inbound::Forward(t) = parse_inbound(&m) else {
        panic!()
    };
    assert_eq!((t.to.as_str(), t.from.as_str()), ("+14155550100", "ACME"));
}

#[test]
fn inbound_refusals_have_their_codes() {
    let ok_to = "sip:+14155550100@192.0.2.1";
    let from = "sip:+14155550111@t";
    let cases: Vec<(Message, u16)> = vec![
        (
            inbound("sip:voxline@192.0.2.1", from, Some("text/plain"), b"x"),
            404,
        ),
        (
            inbound("sip:+1234567890123456@h", from, Some("text/plain"), b"x"),
            404,
        ),
        (inbound(ok_to, from, Some("image/png"), b"x"), 415),
        (inbound(ok_to, from, None, b"x"), 415),
        (
            inbound(ok_to, from, Some("text/plain;charset=ISO-8859-1"), b"x"),
            415,
        ),
        (inbound(ok_to, from, Some("text/plain"), b"\xff\xfe"), 415),
        (
            inbound(
                ok_to,
                from,
                Some("text/plain"),
                "é".repeat(MAX_MESSAGE_CHARS + 1).as_bytes(),
            ),
            413,
        ),
        (
            inbound(
                ok_to,
                from,
                Some("text/plain"),
                &vec![b'a'; MAX_TEXT_BODY_BYTES + 1],
            ),
            413,
        ),
        (
            inbound(ok_to, from, Some("message/imdn+xml"), b"<imdn><oops"),
            400,
        ),
        (
            inbound(ok_to, from, Some("message/cpim"), b"no blank line"),
            400,
        ),
    ];
    for (m, code) in cases {
        assert_eq!(parse_inbound(&m), Inbound::Refuse(code), "{m:?}");
    }
    // Exactly the bound is fine.
    let m = inbound(
        ok_to,
        from,
        Some("text/plain"),
        "é".repeat(MAX_MESSAGE_CHARS).as_bytes(),
    );
    assert!(matches!(parse_inbound(&m), Inbound::Forward(_)));
    // A 415 says what we take.
    let r = answer_to(&inbound(ok_to, from, Some("image/png"), b"x"), 415, "tg");
    assert_eq!(r.header("Accept"), Some(ACCEPT));
}

const DELIVERED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="urn:ietf:params:xml:ns:imdn">
  <message-id>34jk324j</message-id>
  <datetime>2008-04-04T12:16:49-05:00</datetime>
  <recipient-uri>im:bob@example.com</recipient-uri>
  <original-recipient-uri>im:bob@example.com</original-recipient-uri>
  <delivery-notification>
    <status>
      <delivered/>
    </status>
  </delivery-notification>
</imdn>"#;

#[test]
fn imdn_delivery_notifications_are_read() {
    assert_eq!(
        parse_imdn(DELIVERED.as_bytes()),
        Ok(Some(("34jk324j".into(), "delivered".into())))
    );
    let prefixed = r#"<i:imdn xmlns:i="urn:ietf:params:xml:ns:imdn"><i:message-id> a&amp;b&#x43;<![CDATA[<d>]]> </i:message-id>
        <i:delivery-notification><i:status><i:failed/></i:status></i:delivery-notification></i:imdn>"#;
    assert_eq!(
        parse_imdn(prefixed.as_bytes()),
        Ok(Some(("a&bC<d>".into(), "failed".into())))
    );
    let display = DELIVERED
        .replace("delivery-notification", "display-notification")
        .replace("<delivered/>", "<displayed/>");
    assert_eq!(
        parse_imdn(display.as_bytes()),
        Ok(None),
        "not a delivery notification"
    );
    // Through the MESSAGE: bare, and wrapped in CPIM as RFC 5438 sends it.
    let to = "sip:+14155550100@192.0.2.1";
    let m = inbound(
        to,
        "sip:+14155550111@t",
        Some("message/imdn+xml"),
        DELIVERED.as_bytes(),
    );
    let report = InboundContent::DeliveryReport {
        imdn_message_id: "34jk324j".into(),
        status: "delivered".into(),
    };
    assert!(matches!(parse_inbound(&m), Inbound::Forward(t) if t.content == report));
    let cpim = format!(
        "From: <im:bob@example.com>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: x\r\n\r\n\
         Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\nContent-Length: {}\r\n\r\n{DELIVERED}",
        DELIVERED.len()
    );
    let m = inbound(
        to,
        "sip:+14155550111@t",
        Some("message/cpim"),
        cpim.as_bytes(),
    );
    assert!(matches!(parse_inbound(&m), Inbound::Forward(t) if t.content == report));
    let m = inbound(
        to,
        "sip:+14155550111@t",
        Some("message/imdn+xml"),
        display.as_bytes(),
    );
    assert_eq!(parse_inbound(&m), Inbound::Ignore);
}

#[test]
fn hostile_imdn_is_refused_without_panics() {
    let long_id = format!(
        "<imdn><message-id>{}</message-id><delivery-notification><status><delivered/></status></delivery-notification></imdn>",
        "x".repeat(MAX_IMDN_ID_CHARS + 1)
    );
    let deep = format!("<imdn>{}</imdn>", "<a>".repeat(100) + &"</a>".repeat(100));
    let entity = r#"<!DOCTYPE imdn [<!ENTITY lol "lol">]><imdn><message-id>&lol;</message-id><delivery-notification><status><delivered/></status></delivery-notification></imdn>"#;
    let no_status =
        "<imdn><message-id>m</message-id><delivery-notification></delivery-notification></imdn>";
    for (doc, want) in [
        (long_id.as_str(), Err(ImdnError::NoMessageId)),
        (deep.as_str(), Err(ImdnError::TooDeep)),
        (no_status, Err(ImdnError::NoStatus)),
        ("<imdn></imdn>", Err(ImdnError::NoMessageId)),
    ] {
        assert_eq!(parse_imdn(doc.as_bytes()), want, "{doc}");
    }
    assert!(matches!(
        parse_imdn(entity.as_bytes()),
        Err(ImdnError::Xml(_))
    ));
    assert!(parse_imdn(b"\xff<imdn>").is_err());
    // Every prefix and many byte flips of a real one: no panic.
    let mut random = SeededRandom::new(5);
    let doc = DELIVERED.as_bytes();
    for n in 0..doc.len() {
        let _ = parse_imdn(&doc[..n]);
    }
    for _ in 0..3_000 {
        let mut b = doc.to_vec();
        let mut r = [0u8; 3];
        random.fill(&mut r);
        let at = usize::from(u16::from_le_bytes([r[0], r[1]])) % b.len();
        b[at] = r[2];
        let _ = parse_imdn(&b);
        let m = inbound("sip:+1@h", "sip:+2@h", Some("message/cpim"), &b);
        let _ = parse_inbound(&m);
    }
}

#[test]
fn the_inbound_table_absorbs_retransmissions_and_repeats_its_answer() {
    let timers = Timers::default();
    let mut table = InboundTable::default();
    let m = inbound("sip:+1@h", "sip:+2@h", Some("text/plain"), b"x");
    let from = addr(TRUNK);
    assert_eq!(table.step(&m), InboundStep::New);
    let id = table.wait(0, from, &m, "tg".into());
    assert_eq!(
        table.step(&m),
        InboundStep::Repeat(None),
        "waiting: absorbed"
    );
    assert_eq!(table.next_timeout(), Some(ANSWER_WITHIN_MS));
    let answer = table.answer(100, id, 200, timers).unwrap();
    let parsed = parse(&answer.bytes).unwrap();
    assert_eq!(
        (parsed.code(), parsed.to_tag().as_deref()),
        (Some(200), Some("tg"))
    );
    assert_eq!(
        table.answer(150, id, 404, timers),
        None,
        "the first answer counts"
    );
    assert_eq!(table.step(&m), InboundStep::Repeat(Some(answer)));
    // Forgotten after Timer J.
    let (out, due) = table.handle_timeout(100 + timers.t64(), timers);
    assert!(out.is_empty() && due.is_empty() && table.is_empty());

    // Unanswered: 480 at the bound.
    let id = table.wait(1_000, from, &m, "tg".into());
    let (out, due) = table.handle_timeout(1_000 + ANSWER_WITHIN_MS, timers);
    assert_eq!(due, vec![id]);
    assert_eq!(parse(&out[0].bytes).unwrap().code(), Some(480));
    assert_eq!(table.answer(9_500, id, 200, timers), None, "too late");
}
