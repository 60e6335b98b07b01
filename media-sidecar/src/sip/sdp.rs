//! SDP offer/answer (RFC 3264/4566) for one audio stream.
//!
//! Hand-written (~250 lines) rather than webrtc-rs' `sdp` crate: we need one
//! audio m-line, four codecs and a tolerant answer parser; `sdp` models the
//! whole WebRTC surface (ICE/DTLS/extmap), pulls in `url`/`rand`, and its
//! strict parser rejects SDP some SIP trunks send (e.g. stray spaces or
//! unknown line types). Tolerant here: unknown lines are ignored.
//!
//! SDES-SRTP (RFC 4568): with a trunk's `srtp` on, the offer carries one
//! `a=crypto` line per suite we speak (`AES_CM_128_HMAC_SHA1_80` first), each
//! with its own fresh key; `mandatory` offers `RTP/SAVP`, `optional` offers
//! `RTP/AVP` (best effort: SRTP if the answer takes a line, plain RTP if it
//! has none). The answer's line must name a tag and suite we offered, with
//! one `inline:` key of exactly the suite's length (base64), no MKI, a
//! lifetime of at least 2^20 packets if any, and no session parameter but
//! `KDR=0` and `WSH=`. After the answer our SDP (re-INVITEs, answers to the
//! callee's) carries the one negotiated line.

use std::net::{IpAddr, SocketAddr};

use crate::media::srtp::{MasterKey, SrtpKeys, SrtpPolicy, SrtpSuite};
use crate::random::Random;

/// The codecs we can offer: the sidecar's one codec enum, named here too
/// because SDP is where most of its users meet it. PT of `Opus` is dynamic
/// (set in [`OfferConfig`]).
pub use crate::media::Codec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// What we answer to this direction (RFC 3264 6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferConfig {
    /// Our RTP address (c= and m= port).
    pub rtp_addr: SocketAddr,
    /// Preference order.
    pub codecs: Vec<Codec>,
    pub opus_pt: u8,
    /// `None`: no telephone-event.
    pub dtmf_pt: Option<u8>,
    pub ptime_ms: u32,
    pub session_id: u64,
    /// SDES-SRTP for this attempt (the trunk's `srtp`; set by the endpoint).
    pub srtp: SrtpPolicy,
    /// The suites offered when `srtp` is on, most preferred first.
    pub srtp_suites: Vec<SrtpSuite>,
    /// Our `a=crypto` lines (tag, suite, key), made fresh for each attempt by
    /// [`OfferConfig::ensure_srtp_keys`] when the dialog starts.
    pub crypto: Vec<CryptoOffer>,
}

/// One `a=crypto` line we offer: its tag, suite and our key (we send with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoOffer {
    pub tag: u32,
    pub suite: SrtpSuite,
    pub key: MasterKey,
}

impl OfferConfig {
    pub fn new(rtp_addr: SocketAddr) -> Self {
        OfferConfig {
            rtp_addr,
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
            opus_pt: 111,
            dtmf_pt: Some(101),
            ptime_ms: 20,
            session_id: 0,
            srtp: SrtpPolicy::Off,
            srtp_suites: SrtpSuite::OFFER.to_vec(),
            crypto: Vec::new(),
        }
    }

    /// With SRTP on and no keys yet: one fresh key per suite (tags 1, 2, ...).
    pub fn ensure_srtp_keys(&mut self, random: &mut dyn Random) {
        if self.srtp.is_on() && self.crypto.is_empty() {
            self.crypto = (1..)
                .zip(&self.srtp_suites)
                .map(|(tag, &suite)| CryptoOffer {
                    tag,
                    suite,
                    key: MasterKey::generate(suite, random),
                })
                .collect();
        }
    }

    pub fn pt_of(&self, c: Codec) -> u8 {
        match c {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::Opus => self.opus_pt,
        }
    }
}

fn ip_line(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("IN IP4 {a}"),
        IpAddr::V6(a) => format!("IN IP6 {a}"),
    }
}

/// Our session description. `version` is bumped only when content changes.
pub fn build(cfg: &OfferConfig, version: u64, dir: Direction) -> String {
    build_with(cfg, None, version, dir)
}

/// Our session description once `negotiated` (if any) settled the media:
/// then it carries only the negotiated `a=crypto` line, or none.
pub fn build_with(
    cfg: &OfferConfig,
    negotiated: Option<&Negotiated>,
    version: u64,
    dir: Direction,
) -> String {
    let ip = cfg.rtp_addr.ip();
    let proto = if cfg.srtp == SrtpPolicy::Mandatory {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    let crypto_lines: Vec<String> = match negotiated {
        _ if !cfg.srtp.is_on() => Vec::new(),
        None => cfg.crypto.iter().map(crypto_line).collect(),
        Some(n) => n
            .srtp
            .as_ref()
            .map(|s| {
                crypto_line(&CryptoOffer {
                    tag: s.tag,
                    suite: s.keys.suite,
                    key: s.keys.local.clone(),
                })
            })
            .into_iter()
            .collect(),
    };
    let mut pts: Vec<String> = cfg
        .codecs
        .iter()
        .map(|c| cfg.pt_of(*c).to_string())
        .collect();
    if let Some(d) = cfg.dtmf_pt {
        pts.push(d.to_string());
    }
    let mut s = String::new();
    s.push_str("v=0\r\n");
    s.push_str(&format!(
        "o=voxline {} {} {}\r\n",
        cfg.session_id,
        version,
        ip_line(ip)
    ));
    s.push_str("s=voxline\r\n");
    s.push_str(&format!("c={}\r\n", ip_line(ip)));
    s.push_str("t=0 0\r\n");
    s.push_str(&format!(
        "m=audio {} {proto} {}\r\n",
        cfg.rtp_addr.port(),
        pts.join(" ")
    ));
    for c in &cfg.codecs {
        let pt = cfg.pt_of(*c);
        match c {
            Codec::Opus => {
                s.push_str(&format!("a=rtpmap:{pt} opus/48000/2\r\n"));
                s.push_str(&format!("a=fmtp:{pt} useinbandfec=1\r\n"));
            }
            c => s.push_str(&format!(
                "a=rtpmap:{pt} {}/{}\r\n",
                c.encoding_name(),
                c.clock_rate()
            )),
        }
    }
    if let Some(d) = cfg.dtmf_pt {
        s.push_str(&format!(
            "a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-16\r\n"
        ));
    }
    s.push_str(&format!("a=ptime:{}\r\n", cfg.ptime_ms));
    s.push_str(&format!("a={}\r\n", dir.attr()));
    for l in crypto_lines {
        s.push_str(&l);
    }
    s
}

fn crypto_line(c: &CryptoOffer) -> String {
    format!(
        "a=crypto:{} {} inline:{}\r\n",
        c.tag,
        c.suite.name(),
        c.key.to_base64()
    )
}

/// A remote `a=crypto` line we can use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteCrypto {
    tag: u32,
    suite: SrtpSuite,
    key: MasterKey,
}

/// `a=crypto` lines read per audio stream at most (the rest are ignored).
const MAX_CRYPTO_LINES: usize = 16;

/// The shortest key lifetime accepted (log2 of packets): we never rekey,
/// and the longest call (`max_seconds` 3600) sends and receives 180,000
/// packets of 20 ms each way, below 2^18.
const MIN_KEY_LIFETIME_LOG2: u32 = 20;

/// Parses the value of an `a=crypto` attribute (after `crypto:`):
/// `<tag> <suite> inline:<key||salt>[|<lifetime>][|<MKI>:<len>] [<session params>]`.
/// `None` for a line we cannot use (unknown suite, bad key, MKI, several
/// keys, a short lifetime, a session parameter we do not do).
fn parse_crypto(val: &str) -> Option<RemoteCrypto> {
    if val.len() > 1024 {
        return None;
    }
    let mut it = val.split_ascii_whitespace();
    let tag = it.next()?;
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tag: u32 = tag.parse().ok()?;
    let suite = SrtpSuite::from_name(it.next()?)?;
    let key_params = it.next()?;
    // One key only: several (`;`-separated) need MKIs, which we do not do.
    if key_params.contains(';') {
        return None;
    }
    let inline = key_params
        .get(..7)
        .filter(|m| m.eq_ignore_ascii_case("inline:"))
        .and(key_params.get(7..))?;
    let mut parts = inline.split('|');
    let b64 = parts.next()?;
    if b64.len() > 64 {
        return None;
    }
    let lifetime = parts.next();
    if parts.next().is_some() {
        return None; // an MKI
    }
    if let Some(l) = lifetime {
        if l.contains(':') {
            return None; // `|MKI:len` without a lifetime
        }
        let log2 = match l.strip_prefix("2^") {
            Some(e) => e.parse::<u32>().ok()?,
            None => {
                let n: u64 = l.parse().ok()?;
                63 - n.max(1).leading_zeros()
            }
        };
        if log2 < MIN_KEY_LIFETIME_LOG2 {
            return None;
        }
    }
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = zeroize::Zeroizing::new(engine.decode(b64).ok()?);
    let key = MasterKey::from_bytes(suite, &bytes)?;
    for p in it {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        match name.to_ascii_uppercase().as_str() {
            // A window size hint: ours is fixed.
            "WSH" => {}
            // Key derivation rate 0 (derive once) is what we do.
            "KDR" if value == "0" => {}
            // UNENCRYPTED_SRTP/SRTCP, UNAUTHENTICATED_SRTP, FEC_*, other
            // rates, unknown parameters: not what this line can get from us.
            _ => return None,
        }
    }
    Some(RemoteCrypto { tag, suite, key })
}

/// The remote line to use: the first (in the remote's order) whose suite we
/// offered and, when its tag is one of ours, with that tag's suite (an
/// answer echoes our tag; a callee's new offer has its own tags).
fn pick_crypto(cfg: &OfferConfig, remote: &[RemoteCrypto]) -> Option<NegotiatedSrtp> {
    remote.iter().find_map(|r| {
        let ours = match cfg.crypto.iter().find(|c| c.tag == r.tag) {
            Some(c) if c.suite == r.suite => c,
            Some(_) => return None,
            None => cfg.crypto.iter().find(|c| c.suite == r.suite)?,
        };
        Some(NegotiatedSrtp {
            tag: r.tag,
            keys: SrtpKeys {
                suite: r.suite,
                local: ours.key.clone(),
                remote: r.key.clone(),
            },
        })
    })
}

/// What the answer (or an updated offer) settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub remote_rtp: SocketAddr,
    pub codec: Codec,
    /// The PT to send/receive the codec with (the answer's number).
    pub pt: u8,
    pub dtmf_pt: Option<u8>,
    pub ptime_ms: u32,
    /// The remote side's direction attribute.
    pub direction: Direction,
    /// SRTP, when the offer/answer settled a crypto line.
    pub srtp: Option<NegotiatedSrtp>,
}

/// The `a=crypto` line both sides use: its tag and the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedSrtp {
    pub tag: u32,
    pub keys: SrtpKeys,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    NotUtf8,
    NoAudio,
    /// The audio stream was rejected (port 0).
    AudioRejected,
    NoConnection,
    BadLine(String),
    NoCommonCodec,
    /// SRTP is mandatory (or the remote asked for it) and no `a=crypto`
    /// line of the remote SDP is one we can use.
    NoAcceptableCrypto,
}

impl SdpError {
    pub fn code(&self) -> &'static str {
        match self {
            SdpError::NotUtf8 => "sdp_not_utf8",
            SdpError::NoAudio => "sdp_no_audio",
            SdpError::AudioRejected => "sdp_audio_rejected",
            SdpError::NoConnection => "sdp_no_connection",
            SdpError::BadLine(_) => "sdp_bad_line",
            SdpError::NoCommonCodec => "sdp_no_common_codec",
            SdpError::NoAcceptableCrypto => "sdp_no_acceptable_crypto",
        }
    }
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::BadLine(l) => write!(f, "sdp_bad_line: {l}"),
            e => f.write_str(e.code()),
        }
    }
}

impl std::error::Error for SdpError {}

fn parse_conn(v: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 1.2.3.4[/ttl]
    let mut it = v.split_whitespace();
    let (nt, _at, addr) = (it.next(), it.next(), it.next());
    if nt != Some("IN") {
        return Err(SdpError::BadLine(format!("c={v}")));
    }
    let addr = addr.ok_or_else(|| SdpError::BadLine(format!("c={v}")))?;
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| SdpError::BadLine(format!("c={v}")))
}

fn parse_dir(a: &str) -> Option<Direction> {
    Some(match a {
        "sendrecv" => Direction::SendRecv,
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        _ => return None,
    })
}

/// Parses the remote SDP and picks the codec: the first payload type on the
/// remote audio m-line that we offered (RFC 3264 6.1: the answerer's order).
pub fn negotiate(cfg: &OfferConfig, remote: &[u8]) -> Result<Negotiated, SdpError> {
    let text = std::str::from_utf8(remote).map_err(|_| SdpError::NotUtf8)?;
    let mut session_c: Option<IpAddr> = None;
    let mut session_dir = Direction::SendRecv;
    struct Audio {
        port: u16,
        secure_profile: bool,
        crypto: Vec<RemoteCrypto>,
        crypto_lines: usize,
        pts: Vec<u8>,
        c: Option<IpAddr>,
        rtpmap: Vec<(u8, String, u32)>,
        ptime: Option<u32>,
        dir: Option<Direction>,
    }
    let mut audio: Option<Audio> = None;
    let mut in_media = false;
    let mut in_audio = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "m" => {
                in_media = true;
                let mut it = v.split_whitespace();
                let media = it.next().unwrap_or("");
                let port = it.next().unwrap_or("");
                let proto = it.next().unwrap_or("");
                in_audio = media == "audio" && audio.is_none();
                if in_audio {
                    let port: u16 = port
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .parse()
                        .map_err(|_| SdpError::BadLine(format!("m={v}")))?;
                    let pts = it.filter_map(|p| p.parse::<u8>().ok()).collect();
                    audio = Some(Audio {
                        port,
                        // RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP...
                        secure_profile: proto.to_ascii_uppercase().contains("SAVP"),
                        crypto: Vec::new(),
                        crypto_lines: 0,
                        pts,
                        c: None,
                        rtpmap: vec![],
                        ptime: None,
                        dir: None,
                    });
                }
            }
            "c" => {
                let ip = parse_conn(v)?;
                if !in_media {
                    session_c = Some(ip);
                } else if in_audio {
                    if let Some(a) = audio.as_mut() {
                        a.c = Some(ip);
                    }
                }
            }
            "a" => {
                let (name, val) = v.split_once(':').unwrap_or((v, ""));
                if !in_media {
                    if let Some(d) = parse_dir(name) {
                        session_dir = d;
                    }
                    continue;
                }
                let Some(a) = audio.as_mut().filter(|_| in_audio) else {
                    continue;
                };
                if let Some(d) = parse_dir(name) {
                    a.dir = Some(d);
                } else if name == "rtpmap" {
                    let mut it = val.splitn(2, ' ');
                    let pt = it.next().and_then(|p| p.trim().parse::<u8>().ok());
                    let enc = it.next().unwrap_or("").trim();
                    let mut e = enc.split('/');
                    let ename = e.next().unwrap_or("").to_string();
                    let rate = e.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                    if let Some(pt) = pt {
                        a.rtpmap.push((pt, ename, rate));
                    }
                } else if name == "ptime" {
                    a.ptime = val.trim().parse().ok().filter(|p| (1..=1000).contains(p));
                } else if name == "crypto" && cfg.srtp.is_on() {
                    a.crypto_lines += 1;
                    if a.crypto_lines <= MAX_CRYPTO_LINES {
                        a.crypto.extend(parse_crypto(val));
                    }
                }
            }
            _ => {}
        }
    }
    let a = audio.ok_or(SdpError::NoAudio)?;
    if a.port == 0 {
        return Err(SdpError::AudioRejected);
    }
    let ip = a.c.or(session_c).ok_or(SdpError::NoConnection)?;
    let codec_of = |pt: u8| -> Option<Codec> {
        if let Some((_, name, rate)) = a.rtpmap.iter().find(|(p, _, _)| *p == pt) {
            return Codec::from_rtpmap(name, *rate);
        }
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    };
    let (pt, codec) = a
        .pts
        .iter()
        .filter_map(|pt| codec_of(*pt).map(|c| (*pt, c)))
        .find(|(_, c)| cfg.codecs.contains(c))
        .ok_or(SdpError::NoCommonCodec)?;
    let dtmf_pt = if cfg.dtmf_pt.is_some() {
        a.rtpmap
            .iter()
            .find(|(p, n, r)| {
                n.eq_ignore_ascii_case("telephone-event") && *r == 8000 && a.pts.contains(p)
            })
            .map(|(p, _, _)| *p)
    } else {
        None
    };
    let srtp = match cfg.srtp {
        SrtpPolicy::Off => None,
        SrtpPolicy::Mandatory => {
            Some(pick_crypto(cfg, &a.crypto).ok_or(SdpError::NoAcceptableCrypto)?)
        }
        // Plain RTP only when the remote asked for no SRTP at all: with a
        // crypto line or a secure profile it would send SRTP we cannot read.
        SrtpPolicy::Optional => match pick_crypto(cfg, &a.crypto) {
            Some(s) => Some(s),
            None if a.crypto_lines > 0 || a.secure_profile => {
                return Err(SdpError::NoAcceptableCrypto)
            }
            None => None,
        },
    };
    Ok(Negotiated {
        remote_rtp: SocketAddr::new(ip, a.port),
        codec,
        pt,
        dtmf_pt,
        ptime_ms: a.ptime.unwrap_or(20),
        direction: a.dir.unwrap_or(session_dir),
        srtp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OfferConfig {
        OfferConfig::new("127.0.0.1:40000".parse().unwrap())
    }

    #[test]
    fn offer_lists_the_four_payloads() {
        let s = build(&cfg(), 1, Direction::SendRecv);
        assert!(s.contains("m=audio 40000 RTP/AVP 0 8 111 101\r\n"), "{s}");
        assert!(s.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(s.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(s.contains("a=rtpmap:111 opus/48000/2\r\n"));
        assert!(s.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n"));
        // Our own offer parses as an answer to itself.
        let n = negotiate(&cfg(), s.as_bytes()).unwrap();
        assert_eq!((n.codec, n.pt, n.dtmf_pt), (Codec::Pcmu, 0, Some(101)));
    }

    #[test]
    fn answer_order_wins_and_media_c_overrides_session_c() {
        let ans = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 5004 RTP/AVP 96 8 97\r\nc=IN IP4 10.0.0.2\r\na=rtpmap:96 opus/48000/2\r\n\
                   a=rtpmap:97 telephone-event/8000\r\na=ptime:30\r\na=sendonly\r\n";
        let n = negotiate(&cfg(), ans.as_bytes()).unwrap();
        assert_eq!(n.codec, Codec::Opus);
        assert_eq!(n.pt, 96);
        assert_eq!(n.dtmf_pt, Some(97));
        assert_eq!(n.remote_rtp, "10.0.0.2:5004".parse().unwrap());
        assert_eq!(n.ptime_ms, 30);
        assert_eq!(n.direction, Direction::SendOnly);
    }

    #[test]
    fn static_pt_without_rtpmap_and_errors() {
        let ans = "v=0\nc=IN IP4 1.2.3.4\nm=audio 7000 RTP/AVP 8\n";
        let n = negotiate(&cfg(), ans.as_bytes()).unwrap();
        assert_eq!(
            (n.codec, n.pt, n.direction),
            (Codec::Pcma, 8, Direction::SendRecv)
        );
        assert_eq!(
            negotiate(&cfg(), b"v=0\nc=IN IP4 1.2.3.4\nm=audio 0 RTP/AVP 0\n"),
            Err(SdpError::AudioRejected)
        );
        assert_eq!(
            negotiate(&cfg(), b"v=0\nc=IN IP4 1.2.3.4\nm=audio 9 RTP/AVP 18\n"),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(
            negotiate(&cfg(), b"v=0\nm=audio 9 RTP/AVP 0\n"),
            Err(SdpError::NoConnection)
        );
        assert_eq!(
            negotiate(&cfg(), b"v=0\nc=IN IP4 1.2.3.4\nm=video 9 RTP/AVP 31\n"),
            Err(SdpError::NoAudio)
        );
        assert!(negotiate(&cfg(), &[0xff, 0xfe]).is_err());
    }

    // ---- SDES-SRTP (RFC 4568)

    use crate::random::SeededRandom;

    fn srtp_cfg(policy: SrtpPolicy) -> OfferConfig {
        let mut c = cfg();
        c.srtp = policy;
        c.ensure_srtp_keys(&mut SeededRandom::new(5));
        c
    }

    /// A base64 key of `n` bytes, all `b`.
    fn key64(b: u8, n: usize) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(vec![b; n])
    }

    fn answer_with(proto: &str, crypto: &[String]) -> String {
        let mut a = format!("v=0\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 7078 {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
        for c in crypto {
            a.push_str(&format!("a=crypto:{c}\r\n"));
        }
        a
    }

    fn crypto_lines(sdp: &str) -> Vec<&str> {
        sdp.lines().filter(|l| l.starts_with("a=crypto:")).collect()
    }

    #[test]
    fn a_mandatory_offer_is_savp_with_a_fresh_key_per_suite() {
        let c = srtp_cfg(SrtpPolicy::Mandatory);
        let s = build(&c, 1, Direction::SendRecv);
        assert!(s.contains("m=audio 40000 RTP/SAVP 0 8 111 101\r\n"), "{s}");
        let lines = crypto_lines(&s);
        assert_eq!(lines.len(), 3, "{s}");
        for (line, (tag, suite)) in lines.iter().zip([
            (1, "AES_CM_128_HMAC_SHA1_80"),
            (2, "AEAD_AES_128_GCM"),
            (3, "AES_CM_128_HMAC_SHA1_32"),
        ]) {
            let want = format!("a=crypto:{tag} {suite} inline:");
            assert!(line.starts_with(&want), "{line}");
            let parsed = parse_crypto(line.trim_start_matches("a=crypto:")).unwrap();
            assert_eq!(parsed.suite.name(), suite);
            assert_eq!(parsed.key, c.crypto[tag as usize - 1].key);
        }
        // Keys differ per suite and per attempt (another draw of the generator).
        assert_ne!(
            c.crypto[0].key.as_bytes()[..16],
            c.crypto[2].key.as_bytes()[..16]
        );
        let mut other = cfg();
        other.srtp = SrtpPolicy::Mandatory;
        other.ensure_srtp_keys(&mut SeededRandom::new(6));
        assert_ne!(other.crypto[0].key, c.crypto[0].key);
        // Optional: the same lines, in RTP/AVP; off: none.
        let s = build(&srtp_cfg(SrtpPolicy::Optional), 1, Direction::SendRecv);
        assert!(s.contains("m=audio 40000 RTP/AVP 0 8 111 101\r\n"), "{s}");
        assert_eq!(crypto_lines(&s).len(), 3);
        let s = build(&srtp_cfg(SrtpPolicy::Off), 1, Direction::SendRecv);
        assert!(crypto_lines(&s).is_empty() && s.contains("RTP/AVP"), "{s}");
    }

    #[test]
    fn the_answers_suite_and_key_are_taken_and_our_sdp_keeps_that_line_only() {
        let c = srtp_cfg(SrtpPolicy::Mandatory);
        let theirs = key64(0x42, 28);
        let ans = answer_with("RTP/SAVP", &[format!("2 AEAD_AES_128_GCM inline:{theirs}")]);
        let n = negotiate(&c, ans.as_bytes()).unwrap();
        let srtp = n.srtp.clone().expect("SRTP negotiated");
        assert_eq!(srtp.tag, 2);
        assert_eq!(srtp.keys.suite, SrtpSuite::AeadAes128Gcm);
        assert_eq!(srtp.keys.remote.as_bytes(), &[0x42; 28][..]);
        assert_eq!(srtp.keys.local, c.crypto[1].key);
        // Our next SDP carries only the negotiated line, with our key.
        let s = build_with(&c, Some(&n), 2, Direction::SendRecv);
        assert_eq!(
            crypto_lines(&s),
            vec![format!(
                "a=crypto:2 AEAD_AES_128_GCM inline:{}",
                c.crypto[1].key.to_base64()
            )
            .as_str()]
        );
        assert!(s.contains("RTP/SAVP"), "{s}");
        // Of several lines the first usable one wins (the answerer's order).
        let ans = answer_with(
            "RTP/SAVP",
            &[
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^10", key64(1, 30)),
                format!("3 AES_CM_128_HMAC_SHA1_32 inline:{}|2^31", key64(3, 30)),
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", key64(4, 30)),
            ],
        );
        let n = negotiate(&c, ans.as_bytes()).unwrap().srtp.unwrap();
        assert_eq!((n.tag, n.keys.suite), (3, SrtpSuite::AesCm128HmacSha1_32));
        assert_eq!(n.keys.remote.as_bytes(), &[3; 30][..]);
    }

    #[test]
    fn mandatory_refuses_an_answer_without_acceptable_crypto() {
        let c = srtp_cfg(SrtpPolicy::Mandatory);
        let k = key64(7, 30);
        let refused = [
            vec![],
            // Tag 1 is our AES_CM_128_HMAC_SHA1_80, not GCM.
            vec![format!("1 AEAD_AES_128_GCM inline:{}", key64(7, 28))],
            vec![format!("1 AES_256_CM_HMAC_SHA1_80 inline:{}", key64(7, 46))],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", key64(7, 29))],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", key64(7, 31))],
            vec!["1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64!!notbase64!!notbase64!!".into()],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31|1:4")],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:4")],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^19")],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1000")],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k};inline:{k}")],
            vec![format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k} UNENCRYPTED_SRTCP"
            )],
            vec![format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k} UNAUTHENTICATED_SRTP"
            )],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k} KDR=24")],
            vec![format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k} FEC_ORDER=FEC_SRTP"
            )],
            vec![format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{k}")],
            vec![format!("x AES_CM_128_HMAC_SHA1_80 inline:{k}")],
            vec![format!("1 AES_CM_128_HMAC_SHA1_80 key:{k}")],
            vec!["1 AES_CM_128_HMAC_SHA1_80".into()],
        ];
        for crypto in refused {
            assert_eq!(
                negotiate(&c, answer_with("RTP/SAVP", &crypto).as_bytes()),
                Err(SdpError::NoAcceptableCrypto),
                "{crypto:?}"
            );
        }
        // Accepted: a long enough lifetime, KDR=0, a window size hint, case.
        for ok in [
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^48 KDR=0 WSH=64"),
            format!("1 aes_cm_128_hmac_sha1_80 INLINE:{k}|1048576"),
            format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{}",
                k.trim_end_matches('=')
            ),
        ] {
            let n = negotiate(
                &c,
                answer_with("RTP/SAVP", std::slice::from_ref(&ok)).as_bytes(),
            );
            assert_eq!(n.map(|n| n.srtp.map(|s| s.tag)), Ok(Some(1)), "{ok}");
        }
        assert_eq!(
            SdpError::NoAcceptableCrypto.code(),
            "sdp_no_acceptable_crypto"
        );
    }

    #[test]
    fn optional_falls_back_to_plain_rtp_only_when_the_answer_has_no_srtp() {
        let c = srtp_cfg(SrtpPolicy::Optional);
        let plain = negotiate(&c, answer_with("RTP/AVP", &[]).as_bytes()).unwrap();
        assert_eq!(plain.srtp, None);
        // Our next SDP has no crypto then.
        let s = build_with(&c, Some(&plain), 2, Direction::SendRecv);
        assert!(crypto_lines(&s).is_empty(), "{s}");
        // Crypto taken in RTP/AVP (best effort), as in RTP/SAVP.
        let k = key64(9, 30);
        let ans = answer_with(
            "RTP/AVP",
            &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}")],
        );
        assert!(negotiate(&c, ans.as_bytes()).unwrap().srtp.is_some());
        // The remote wants SRTP we cannot do: no plain fallback.
        for ans in [
            answer_with("RTP/SAVP", &[]),
            answer_with(
                "RTP/AVP",
                &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^8")],
            ),
        ] {
            assert_eq!(
                negotiate(&c, ans.as_bytes()),
                Err(SdpError::NoAcceptableCrypto),
                "{ans}"
            );
        }
        // Off: crypto in the answer is ignored (as before SRTP existed).
        let off = srtp_cfg(SrtpPolicy::Off);
        assert_eq!(negotiate(&off, ans.as_bytes()).unwrap().srtp, None);
    }

    #[test]
    fn hostile_crypto_lines_never_panic() {
        let c = srtp_cfg(SrtpPolicy::Mandatory);
        let mut r = SeededRandom::new(3);
        let alphabet = b"0123456789 :|^;=+/ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcinle\t\xc3\xa9";
        for len in 0..200usize {
            for _ in 0..20 {
                let mut b = vec![0u8; len];
                r.fill(&mut b);
                let line: Vec<u8> = b
                    .iter()
                    .map(|x| alphabet[*x as usize % alphabet.len()])
                    .collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                let _ = parse_crypto(&line);
                let ans = answer_with(
                    "RTP/SAVP",
                    &[line.clone(), format!("1 AES_CM_128_HMAC_SHA1_80 {line}")],
                );
                let _ = negotiate(&c, ans.as_bytes());
            }
        }
        // Thousands of lines are read only up to the bound.
        let many: Vec<String> = (0..5_000)
            .map(|_| "1 AES_CM_128_HMAC_SHA1_80 inline:x".to_string())
            .collect();
        assert_eq!(
            negotiate(&c, answer_with("RTP/SAVP", &many).as_bytes()),
            Err(SdpError::NoAcceptableCrypto)
        );
        assert!(parse_crypto(&format!(
            "1 AES_CM_128_HMAC_SHA1_80 inline:{}",
            "A".repeat(5_000)
        ))
        .is_none());
    }
}
