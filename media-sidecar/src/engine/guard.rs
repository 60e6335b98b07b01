//! Where a tenant's engine URL may lead (SSRF guard).
//!
//! The sidecar runs inside the operator's network, and a call or an agent may
//! name its own engine endpoint (`engine_base_url`). The edge judges that URL
//! as written, but cannot resolve it; here the host is resolved once, EVERY
//! address it resolves to must be a public unicast address (the special
//! ranges of [`voxline_shared::ip_ranges`]: loopback, private, link-local,
//! CGNAT, ULA, multicast, reserved, and the IPv6 ranges that embed an IPv4
//! address judged by the address they embed), and the connection is then
//! made to one of those vetted addresses: no second lookup, so a name that
//! answers a public address first and a private one next (DNS rebinding)
//! gets nowhere. TLS SNI and `Host` stay the URL's host name.
//!
//! The operator may let some hosts through anyway (`[engine] allowed_hosts`
//! in the sidecar config, [`AllowedHosts`]): exact host names, whose every
//! address is then allowed, and IP addresses or CIDR networks, which allow
//! those addresses whatever name led to them. The operator's own engine URL
//! (`VOXLINE_OPENAI_BASE_URL`, ..) and the vendors' default endpoints are
//! trusted and not vetted.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The operator's exceptions to the guard (`[engine] allowed_hosts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Lowercase, without a trailing dot.
    names: Vec<String>,
    nets: Vec<IpNet>,
}

impl AllowedHosts {
    /// Parses the config entries: `"engine.internal"`, `"127.0.0.1"`,
    /// `"::1"`, `"10.20.0.0/16"`, `"fd00::/8"`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedHosts, String> {
        let mut out = AllowedHosts::default();
        for e in entries {
            let e = e.as_ref().trim();
            if let Ok(net) = e.parse::<IpNet>() {
                out.nets.push(net.trunc());
            } else if let Ok(ip) = e.trim_start_matches('[').trim_end_matches(']').parse() {
                out.nets.push(IpNet::from(canonical(ip)));
            } else {
                let name = normal_name(e);
                let valid = !name.is_empty()
                    && name.split('.').all(|l| !l.is_empty())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
                if !valid {
                    return Err(format!(
                        "`{e}` is not a host name, an IP address or a CIDR network"
                    ));
                }
                out.names.push(name);
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.nets.is_empty()
    }

    fn allows_name(&self, host: &str) -> bool {
        let host = normal_name(host);
        self.names.contains(&host)
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

fn normal_name(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    h.strip_suffix('.').unwrap_or(&h).to_string()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (for the allow-list).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Judges every address `host` resolved to. `Err` names the first refused
/// address and its class (never the URL: a Gemini key travels in its query).
pub fn vet(host: &str, addrs: &[SocketAddr], allowed: &AllowedHosts) -> Result<(), String> {
    if allowed.allows_name(host) {
        return Ok(());
    }
    for a in addrs {
        let ip = a.ip();
        if allowed.allows_ip(ip) {
            continue;
        }
        if let Some(class) = voxline_shared::ip_ranges::non_public(ip) {
            return Err(format!(
                "engine host `{host}` resolves to {ip}, {class}: not a public address (allow it in [engine] allowed_hosts if the operator means it)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ips: &[&str]) -> Vec<SocketAddr> {
        ips.iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), 443))
            .collect()
    }

    #[test]
    fn every_resolved_address_must_be_public() {
        let none = AllowedHosts::default();
        assert_eq!(
            vet("api.example.com", &addrs(&["93.184.216.34"]), &none),
            Ok(())
        );
        assert_eq!(
            vet(
                "api.example.com",
                &addrs(&["2606:4700::1111", "1.1.1.1"]),
                &none
            ),
            Ok(())
        );
        for (ips, class) in [
            (&["127.0.0.1"][..], "loopback"),
            (&["93.184.216.34", "10.0.0.5"][..], "private (10/8)"),
            (&["169.254.169.254"][..], "link-local"),
            (&["100.100.100.200"][..], "carrier-grade NAT"),
            (&["::1"][..], "loopback"),
            (&["fd00::1"][..], "unique local"),
            (&["fe80::1"][..], "link-local"),
            (&["::ffff:192.168.1.1"][..], "192.168/16"),
            (&["64:ff9b::a9fe:a9fe"][..], "link-local"),
            (&["2002:0a00:0001::1"][..], "private (10/8)"),
            (&["2001:0:4136:e378::1"][..], "Teredo"),
            (&["0.0.0.0"][..], "0.0.0.0/8"),
            (&["224.0.0.251"][..], "multicast"),
            (&["255.255.255.255"][..], "broadcast"),
            (&["240.1.2.3"][..], "reserved"),
            (&["198.18.0.1"][..], "benchmarking"),
            (&["192.0.0.170"][..], "192.0.0/24"),
            (&["192.88.99.1"][..], "6to4 relay"),
        ] {
            let e = vet("evil.example", &addrs(ips), &none).unwrap_err();
            assert!(e.contains(class), "{ips:?}: {e}");
        }
    }

    #[test]
    fn the_operator_may_allow_names_addresses_and_networks() {
        let allowed =
            AllowedHosts::parse(&["Fake.Internal.", "127.0.0.1", "10.20.0.0/16", "[fd00::7]"])
                .unwrap();
        assert!(!allowed.is_empty());
        // A name: every address it resolves to.
        assert_eq!(
            vet(
                "fake.internal",
                &addrs(&["192.168.1.1", "10.0.0.1"]),
                &allowed
            ),
            Ok(())
        );
        assert_eq!(
            vet("FAKE.internal.", &addrs(&["172.16.0.1"]), &allowed),
            Ok(())
        );
        // Addresses and networks, whatever the name.
        assert_eq!(vet("127.0.0.1", &addrs(&["127.0.0.1"]), &allowed), Ok(()));
        assert_eq!(
            vet("x.example", &addrs(&["::ffff:127.0.0.1"]), &allowed),
            Ok(())
        );
        assert_eq!(
            vet("y.example", &addrs(&["10.20.3.4", "8.8.8.8"]), &allowed),
            Ok(())
        );
        assert_eq!(vet("z.example", &addrs(&["fd00::7"]), &allowed), Ok(()));
        // Nothing more.
        assert!(vet("localhost", &addrs(&["127.0.0.2"]), &allowed).is_err());
        assert!(vet("y.example", &addrs(&["10.21.0.1"]), &allowed).is_err());
        assert!(vet("other.internal", &addrs(&["192.168.1.1"]), &allowed).is_err());
        assert!(vet("z.example", &addrs(&["fd00::8"]), &allowed).is_err());
        assert!(vet("sub.fake.internal", &addrs(&["10.0.0.1"]), &allowed).is_err());
    }

    #[test]
    fn bad_allow_list_entries_are_refused() {
        for bad in [
            "",
            "a..b",
            "10.0.0.0/33",
            "http://x.example",
            "x y",
            "fd00::/129",
        ] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
