//! SIP parser: RFC 4475 torture fixtures, framing, and a fuzz-style loop
//! (mutated messages must never panic the parser, the SDP/auth parsers or a call).

use std::path::PathBuf;

use voxline_media_sidecar::sip::auth::Challenge;
use voxline_media_sidecar::sip::call::{Call, CallConfig};
use voxline_media_sidecar::sip::msg::{parse, Message, ParseError, StreamFramer};
use voxline_media_sidecar::sip::sdp::{self, OfferConfig};

fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rfc4475")
        .join(kind);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Valid messages rsip 0.4 cannot represent (extension method / URI forms it lacks).
const RSIP_CANNOT: &[&str] = &["esc02", "intmeth", "semiuri", "unkscm"];

#[test]
fn rfc4475_valid_messages_parse() {
    let all = fixtures("valid");
    assert_eq!(all.len(), 14);
    let mut rsip_failed = vec![];
    for (name, bytes) in &all {
        let m = parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!m.call_id().is_empty(), "{name}");
        // Re-serialised, it parses again to the same message.
        let again = parse(&m.to_bytes()).unwrap_or_else(|e| panic!("{name} round trip: {e}"));
        // Same message; only Content-Length moves (we always write it last).
        let no_cl = |m: &Message| {
            m.headers
                .iter()
                .filter(|(n, _)| n != "Content-Length")
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (&again.start, no_cl(&again), &again.body),
            (&m.start, no_cl(&m), &m.body),
            "{name} round trip"
        );
        if let Err(e) = m.to_rsip() {
            assert_eq!(e.code(), "rsip_unrepresentable");
            rsip_failed.push(name.clone());
        }
    }
    let mut want: Vec<String> = RSIP_CANNOT.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        rsip_failed, want,
        "which valid messages rsip 0.4 cannot represent"
    );
}

#[test]
fn wsinv_details() {
    let (_, bytes) = fixtures("valid")
        .into_iter()
        .find(|(n, _)| n == "wsinv")
        .unwrap();
    let m = parse(&bytes).unwrap();
    assert_eq!(m.method(), Some("INVITE"));
    assert_eq!(m.cseq(), (9, "INVITE"));
    assert_eq!(m.header("Max-Forwards"), Some("0068"));
    assert_eq!(m.body.len(), 150);
    let vias = m.header_list("Via");
    assert_eq!(vias.len(), 3);
    assert_eq!(m.top_branch().as_deref(), Some("390skdjuw"));
    let v2 = voxline_media_sidecar::sip::msg::parse_via(vias[1]).unwrap();
    assert_eq!(
        (v2.transport.as_str(), v2.sent_by.as_str(), v2.branch()),
        ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8"))
    );
    let v3 = voxline_media_sidecar::sip::msg::parse_via(vias[2]).unwrap();
    assert_eq!(v3.branch(), Some("z9hG4bK30239"));
    assert_eq!(m.to_tag().as_deref(), Some("1918181833n"));
    assert_eq!(m.from_tag().as_deref(), Some("98asjd8"));
    assert_eq!(
        m.from().unwrap().display.as_deref(),
        Some("J Rosenberg \\\"")
    );
    assert_eq!(m.header("Subject"), Some(""));
    assert_eq!(
        m.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(m.contact_uri().as_deref(), Some("sip:jdrosen@example.com"));
    let c = voxline_media_sidecar::sip::msg::parse_name_addr(m.header("Contact").unwrap()).unwrap();
    assert_eq!(c.param("q"), Some("0.33"));
    assert!(c.has_param("secondparam"));
    // The rsip typed view agrees.
    let r = m.to_rsip().unwrap();
    assert!(matches!(r, rsip::SipMessage::Request(ref q) if q.method == rsip::Method::Invite));
}

#[test]
fn dblreq_keeps_the_first_message_only() {
    let (_, bytes) = fixtures("valid")
        .into_iter()
        .find(|(n, _)| n == "dblreq")
        .unwrap();
    let m = parse(&bytes).unwrap();
    assert_eq!(m.method(), Some("REGISTER"));
    assert!(
        m.body.is_empty(),
        "Content-Length: 0 wins over the datagram's extra bytes"
    );
}

#[test]
fn rfc4475_invalid_messages_are_rejected_with_stable_codes() {
    let want = [
        ("badaspec", "bad_address"),
        ("baddn", "bad_address"),
        ("badinv01", "bad_via"),
        ("badvers", "bad_version"),
        ("bigcode", "bad_status_code"),
        ("clerr", "body_truncated"),
        ("escruri", "bad_start_line"),
        ("insuf", "missing_header"),
        ("ltgtruri", "bad_start_line"),
        ("lwsruri", "bad_start_line"),
        ("lwsstart", "bad_start_line"),
        ("mcl01", "duplicate_header"),
        ("mismatch01", "cseq_method_mismatch"),
        ("mismatch02", "cseq_method_mismatch"),
        ("multi01", "duplicate_header"),
        ("ncl", "bad_content_length"),
        ("quotbal", "bad_address"),
        ("regbadct", "bad_address"),
        ("scalar02", "bad_cseq"),
        ("scalarlg", "bad_cseq"),
        ("trws", "bad_start_line"),
    ];
    let all = fixtures("invalid");
    assert_eq!(all.len(), want.len());
    for ((name, bytes), (wname, code)) in all.iter().zip(want) {
        assert_eq!(name, wname);
        match parse(bytes) {
            Ok(m) => panic!("{name} parsed: {m:?}"),
            Err(e) => assert_eq!(e.code(), code, "{name}: {e}"),
        }
    }
}

const INVITE: &str = "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKx1\r\n\
f: <sip:alice@127.0.0.1>;tag=a1\r\n\
t: <sip:bob@127.0.0.1>\r\n\
i: call-1@h\r\n\
CSeq: 1 INVITE\r\n\
m: <sip:alice@127.0.0.1:5060>\r\n\
k: timer\r\n\
c: application/sdp\r\n\
l: 34\r\n\r\n\
v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio\r\n";

#[test]
fn compact_names_are_normalised() {
    let m = parse(INVITE.as_bytes()).unwrap();
    let names: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Supported",
            "Content-Type",
            "Content-Length"
        ]
    );
    assert_eq!(m.call_id(), "call-1@h");
    assert!(m.has_sdp());
    let out = String::from_utf8(m.to_bytes()).unwrap();
    assert!(
        out.contains("\r\nCall-ID: call-1@h\r\n")
            && out.ends_with("Content-Length: 34\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio\r\n")
    );
    // rsip, fed the normalised text, now sees typed headers instead of Header::Other.
    let r = m.to_rsip().unwrap();
    use rsip::headers::UntypedHeader;
    use rsip::prelude::HeadersExt;
    assert_eq!(r.call_id_header().unwrap().value(), "call-1@h");
}

#[test]
fn udp_content_length_rules() {
    // Extra bytes past Content-Length are dropped.
    let mut extra = INVITE.as_bytes().to_vec();
    extra.extend_from_slice(b"garbage");
    assert_eq!(parse(&extra).unwrap().body.len(), 34);
    // Shorter than declared: rejected.
    let short = &INVITE.as_bytes()[..INVITE.len() - 5];
    assert!(matches!(
        parse(short),
        Err(ParseError::BodyTruncated {
            declared: 34,
            got: 29
        })
    ));
    // No Content-Length over UDP: the body runs to the end of the datagram.
    let no_cl = INVITE.replace("l: 34\r\n", "");
    assert_eq!(parse(no_cl.as_bytes()).unwrap().body.len(), 34);
    assert_eq!(parse(b"").unwrap_err().code(), "empty");
    assert_eq!(parse(b"\r\n\r\n").unwrap_err().code(), "empty");
    assert_eq!(
        parse(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n")
            .unwrap_err()
            .code(),
        "no_header_end"
    );
}

#[test]
fn tcp_framing_uses_content_length() {
    let one = INVITE.as_bytes();
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n\r\n"); // keep-alive
    stream.extend_from_slice(one);
    stream.extend_from_slice(one);
    let mut f = StreamFramer::new();
    let mut got = 0;
    for chunk in stream.chunks(7) {
        f.push(chunk);
        while let Some(m) = f.next_message() {
            assert_eq!(m.unwrap().body.len(), 34);
            got += 1;
        }
    }
    assert_eq!(got, 2);
    let mut f = StreamFramer::new();
    f.push(INVITE.replace("l: 34\r\n", "").as_bytes());
    assert_eq!(
        f.next_message().unwrap().unwrap_err().code(),
        "missing_content_length"
    );
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b";",
    b",",
    b"\"",
    b"<",
    b">",
    b"\\",
    b" ",
    b"\t",
    b"\0",
    b"\xff",
    b"\xc3",
    b"Content-Length: 99999999999999\r\n",
    b"l: -1\r\n",
    b"CSeq: 4294967296 INVITE\r\n",
    b"Via: SIP/2.0/UDP\r\n",
    b"v: ;;;\r\n",
    b"To: \"\r\n",
    b"SIP/2.0 ",
    b"%",
    b"=",
    b"/",
    b"@",
    b"[::1]",
    b"tag=",
    b"branch=z9hG4bK",
    b"\r\n m",
    b"\xe2\x82\xac",
];

fn mutate(rng: &mut Rng, base: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let end = (at + rng.below(20)).min(v.len());
                v.drain(at.min(end)..end);
            }
            2 => {
                let s = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, s.iter().copied());
            }
            3 => v.truncate(at),
            4 => {
                // Splice in a slice of another message.
                let o = &pool[rng.below(pool.len())];
                let s = rng.below(o.len());
                let e = (s + rng.below(80)).min(o.len());
                v.splice(at..at, o[s..e].iter().copied());
            }
            5 if !v.is_empty() => {
                // Duplicate a line.
                let s = rng.below(v.len());
                let e = (s + rng.below(60)).min(v.len());
                let line = v[s..e].to_vec();
                v.splice(at..at, line);
            }
            6 => {
                let i = rng.below(v.len().max(1));
                if i < v.len() {
                    v[i] = rng.next() as u8;
                }
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

#[test]
fn fuzz_mutated_messages_never_panic() {
    let mut pool: Vec<Vec<u8>> = fixtures("valid")
        .into_iter()
        .chain(fixtures("invalid"))
        .map(|(_, b)| b)
        .collect();
    pool.push(INVITE.as_bytes().to_vec());
    pool.push(
        b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx1\r\nFrom: <sip:a@b>;tag=1\r\n\
          To: <sip:b@c>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
          WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth,auth-int\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    );
    let cfg = OfferConfig::new("127.0.0.1:40000".parse().unwrap());
    let from: std::net::SocketAddr = "127.0.0.1:5070".parse().unwrap();
    let mut call = Call::new(
        CallConfig::new(
            from,
            "127.0.0.1:5060".parse().unwrap(),
            "bob",
            "alice",
            cfg.clone(),
        ),
        0,
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut err) = (0u32, 0u32);
    let iterations = 20_000;
    for i in 0..iterations {
        let base = pool[rng.below(pool.len())].clone();
        let m = mutate(&mut rng, &base, &pool);
        match parse(&m) {
            Ok(msg) => {
                ok += 1;
                // Every accessor and the rsip view must be total too.
                let _ = (
                    msg.cseq(),
                    msg.from_tag(),
                    msg.to_tag(),
                    msg.top_branch(),
                    msg.contact_uri(),
                    msg.record_route(),
                );
                let _ = msg.to_rsip();
                let _ = parse(&msg.to_bytes());
                for v in msg.header_lines("WWW-Authenticate") {
                    let _ = Challenge::parse(v);
                }
                let _ = sdp::negotiate(&cfg, &msg.body);
            }
            Err(e) => {
                err += 1;
                assert!(!e.code().is_empty());
            }
        }
        // The call state machine swallows anything.
        let _ = call.handle_datagram(i as u64, from, &m);
        call.handle_timeout(i as u64);
        while call.poll_transmit().is_some() {}
        while call.poll_event().is_some() {}
        let _ = Challenge::parse(&String::from_utf8_lossy(&m));
        let mut f = StreamFramer::new();
        for c in m.chunks(1 + rng.below(64)) {
            f.push(c);
            while let Some(r) = f.next_message() {
                if r.is_err() {
                    break;
                }
            }
        }
    }
    // Both outcomes are exercised in volume.
    assert!(ok > 1_000 && err > 1_000, "ok {ok} err {err}");
}

#[test]
fn message_builder_round_trip() {
    let mut m = Message::request("OPTIONS", "sip:x@127.0.0.1");
    m.push("Via", "SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKa");
    m.push("From", "<sip:a@b>;tag=1");
    m.push("To", "<sip:x@127.0.0.1>");
    m.push("Call-ID", "q");
    m.push("CSeq", "2 OPTIONS");
    m.body = b"hello".to_vec();
    let p = parse(&m.to_bytes()).unwrap();
    assert_eq!(p.header("Content-Length"), Some("5"));
    assert_eq!(p.body, b"hello");
}
