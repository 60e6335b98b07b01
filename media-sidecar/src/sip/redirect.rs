//! 3xx redirects (RFC 3261 8.1.3.4): which Contact of a 301/302 the call
//! may follow, pure. [`super::call::Call`] sends the new INVITE.
//!
//! Safety: a trunk names the target, so a hostile or broken trunk could
//! send our INVITE (and, worse, our credentials) anywhere. A target is
//! followed only when its host and port are one of the configured trunks
//! (its `host` as configured, or its resolved address) or an address the
//! operator allowed (`redirect_allowed_hosts`); it is dialled with that
//! trunk's credentials, an allowed address with none. No DNS is done here:
//! a host name that is not a configured trunk's is refused. Only `sip:`
//! URIs over UDP are followed (`sips:` or another `transport=` would need
//! TLS/TCP, which the sidecar does not have yet); `?headers` are dropped.
//! At most `max_redirects` hops per call, never to a URI already tried
//! (loops), and of one response's Contacts the highest `q` that qualifies.

use std::net::{IpAddr, SocketAddr};

use super::auth::Credentials;
use super::msg::{self, Message};

/// Contacts of one 3xx looked at (the rest are ignored).
pub const MAX_CONTACTS: usize = 16;

/// A place a redirect may lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTarget {
    /// Host as written in URIs (a domain, or an IP literal without brackets).
    pub host: String,
    pub port: u16,
    /// Where the INVITE goes.
    pub addr: SocketAddr,
    pub credentials: Option<Credentials>,
    pub in_dialog_from_trunk_only: bool,
}

/// How far redirects go, per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// Redirects followed per call at most; 0: none.
    pub max_redirects: u32,
    /// The configured trunks and allowed addresses.
    pub targets: Vec<RedirectTarget>,
}

impl Default for RedirectPolicy {
    fn default() -> Self {
        RedirectPolicy {
            max_redirects: 3,
            targets: Vec::new(),
        }
    }
}

/// Why a redirect was not followed (the call's `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectRefused {
    Limit,
    NoTarget,
    NotAllowed,
    Loop,
}

impl RedirectRefused {
    pub fn code(self) -> &'static str {
        match self {
            RedirectRefused::Limit => "redirect_limit",
            RedirectRefused::NoTarget => "redirect_no_target",
            RedirectRefused::NotAllowed => "redirect_target_not_allowed",
            RedirectRefused::Loop => "redirect_loop",
        }
    }
}

/// `(host, port)` of a `sip:` URI (port default 5060; IPv6 unbracketed),
/// `None` for any other scheme or a transport other than UDP.
pub fn sip_host_port(uri: &str) -> Option<(String, u16)> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") {
        return None;
    }
    let rest = rest.split('?').next()?;
    let hostpart = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let mut parts = hostpart.split(';');
    let hp = parts.next()?;
    let udp = parts.all(|p| match p.split_once('=') {
        Some((n, v)) if n.trim().eq_ignore_ascii_case("transport") => {
            v.trim().eq_ignore_ascii_case("udp")
        }
        _ => true,
    });
    if !udp {
        return None;
    }
    let (host, port) = if let Some(v6) = hp.strip_prefix('[') {
        let (ip, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 5060,
        };
        (ip.to_string(), port)
    } else {
        match hp.split_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (hp.to_string(), 5060),
        }
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// The configured target `uri` leads to, if any.
pub fn allowed<'a>(policy: &'a RedirectPolicy, uri: &str) -> Option<&'a RedirectTarget> {
    let (host, port) = sip_host_port(uri)?;
    let ip: Option<IpAddr> = host.parse().ok();
    policy.targets.iter().find(|t| {
        (t.host.eq_ignore_ascii_case(&host) && t.port == port)
            || ip.is_some_and(|ip| SocketAddr::new(ip, port) == t.addr)
    })
}

/// The Contact URIs of a 3xx, highest `q` first (equal `q`: as listed),
/// `?headers` dropped, at most [`MAX_CONTACTS`] looked at.
pub fn contacts_by_q(r: &Message) -> Vec<String> {
    let mut v: Vec<(u32, String)> = r
        .header_list("Contact")
        .into_iter()
        .take(MAX_CONTACTS)
        .filter_map(|c| msg::parse_name_addr(c).ok())
        .map(|a| {
            // q is 0 to 1 with up to 3 decimals: compare in thousandths.
            let q = a
                .param("q")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .map_or(1000, |q| (q * 1000.0).round() as u32);
            let uri = a.uri.split('?').next().unwrap_or("").to_string();
            (q, uri)
        })
        .filter(|(_, uri)| msg::check_request_uri(uri).is_ok())
        .collect();
    v.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
    v.into_iter().map(|(_, u)| u).collect()
}

/// The URI compared for loops: case-insensitive, without parameters.
pub fn loop_key(uri: &str) -> String {
    uri.split([';', '?'])
        .next()
        .unwrap_or(uri)
        .to_ascii_lowercase()
}

/// Picks what a 3xx leads to: the first Contact by `q` that is allowed and
/// not yet tried (`tried`: [`loop_key`]s), with its target.
pub fn choose(
    policy: &RedirectPolicy,
    r: &Message,
    tried: &[String],
    followed: u32,
) -> Result<(String, RedirectTarget), RedirectRefused> {
    if followed >= policy.max_redirects {
        return Err(RedirectRefused::Limit);
    }
    let mut why = RedirectRefused::NoTarget;
    for uri in contacts_by_q(r) {
        if tried.contains(&loop_key(&uri)) {
            why = RedirectRefused::Loop;
            continue;
        }
        if sip_host_port(&uri).is_none() {
            continue; // Not a sip: URI over UDP: nothing we can dial.
        }
        match allowed(policy, &uri) {
            Some(t) => return Ok((uri, t.clone())),
            None => {
                if why != RedirectRefused::Loop {
                    why = RedirectRefused::NotAllowed;
                }
            }
        }
    }
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::parse;

    fn target(host: &str, port: u16, addr: &str) -> RedirectTarget {
        RedirectTarget {
            host: host.into(),
            port,
            addr: addr.parse().unwrap(),
            credentials: None,
            in_dialog_from_trunk_only: true,
        }
    }

    fn policy() -> RedirectPolicy {
        RedirectPolicy {
            max_redirects: 3,
            targets: vec![
                target("sip.b.example", 5060, "198.51.100.2:5060"),
                target("127.0.0.1", 5072, "127.0.0.1:5072"),
            ],
        }
    }

    fn r302(contacts: &str) -> Message {
        let text = format!(
            "SIP/2.0 302 Moved\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: {contacts}\r\nContent-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn host_and_port_of_sip_uris_only() {
        assert_eq!(
            sip_host_port("sip:+1@SIP.B.example;user=phone"),
            Some(("sip.b.example".into(), 5060))
        );
        assert_eq!(
            sip_host_port("sip:[2001:db8::1]:5070"),
            Some(("2001:db8::1".into(), 5070))
        );
        assert_eq!(
            sip_host_port("sip:u@h:5080;transport=UDP"),
            Some(("h".into(), 5080))
        );
        for no in [
            "sips:u@h",
            "tel:+1555",
            "http://h/",
            "sip:u@h;transport=tcp",
            "sip:u@h:x",
            "sip:u@",
        ] {
            assert_eq!(sip_host_port(no), None, "{no}");
        }
    }

    #[test]
    fn only_configured_targets_by_q_never_twice() {
        let p = policy();
        // q order: the 0.9 one first even though listed second; the 1.0 one is not allowed.
        let r = r302("<sip:x@evil.example>;q=1, <sip:+1@127.0.0.1:5072?X-H=1>;q=0.9, <sip:+1@sip.b.example>;q=0.5");
        let (uri, t) = choose(&p, &r, &[], 0).unwrap();
        assert_eq!(uri, "sip:+1@127.0.0.1:5072");
        assert_eq!(t.addr, "127.0.0.1:5072".parse().unwrap());
        // Already tried: the next allowed one.
        let tried = [loop_key("sip:+1@127.0.0.1:5072;user=phone")];
        let (uri, t) = choose(&p, &r, &tried, 1).unwrap();
        assert_eq!(
            (uri.as_str(), t.addr),
            ("sip:+1@sip.b.example", "198.51.100.2:5060".parse().unwrap())
        );
        // An IP literal matching a trunk's resolved address is that trunk.
        let r = r302("<sip:+1@198.51.100.2>");
        assert_eq!(choose(&p, &r, &[], 0).unwrap().1.host, "sip.b.example");
        assert_eq!(
            choose(
                &p,
                &r302("<sip:x@evil.example>, <sips:+1@sip.b.example>"),
                &[],
                0
            ),
            Err(RedirectRefused::NotAllowed)
        );
        assert_eq!(
            choose(
                &p,
                &r302("<sip:+1@sip.b.example>"),
                &[loop_key("sip:+1@SIP.B.EXAMPLE")],
                1
            ),
            Err(RedirectRefused::Loop)
        );
        assert_eq!(
            choose(&p, &r302("<sip:+1@sip.b.example>"), &[], 3),
            Err(RedirectRefused::Limit)
        );
        assert_eq!(
            choose(&p, &r302("<tel:+1555>"), &[], 0),
            Err(RedirectRefused::NoTarget)
        );
    }
}
