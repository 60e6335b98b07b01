//! SDP offer/answer (RFC 3264/4566) for one audio stream.
//!
//! Hand-written (~250 lines) rather than webrtc-rs' `sdp` crate: we need one
//! audio m-line, four codecs and a tolerant answer parser; `sdp` models the
//! whole WebRTC surface (ICE/DTLS/extmap), pulls in `url`/`rand`, and its
//! strict parser rejects SDP some SIP trunks send (e.g. stray spaces or
//! unknown line types). Tolerant here: unknown lines are ignored.

use std::net::{IpAddr, SocketAddr};

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
    let ip = cfg.rtp_addr.ip();
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
        "m=audio {} RTP/AVP {}\r\n",
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
    s
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
                let _proto = it.next();
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
    Ok(Negotiated {
        remote_rtp: SocketAddr::new(ip, a.port),
        codec,
        pt,
        dtmf_pt,
        ptime_ms: a.ptime.unwrap_or(20),
        direction: a.dir.unwrap_or(session_dir),
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
}
