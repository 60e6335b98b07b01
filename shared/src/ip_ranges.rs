//! Special-purpose IP ranges (IANA's IPv4 and IPv6 special-purpose address
//! registries, plus multicast and the ranges that embed an IPv4 address):
//! the addresses a URL chosen by a tenant must not reach. One list for both
//! halves: the edge's webhook URL guard judges the host a URL names, the
//! sidecar judges every address an engine URL resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public unicast IPv4 address (`None`: it is one).
pub fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    match (a, b, c) {
        (0, _, _) => Some("unspecified or this network (0.0.0.0/8)"),
        (10, _, _) => Some("private (10/8)"),
        (100, 64..=127, _) => Some("carrier-grade NAT (100.64/10)"),
        (127, _, _) => Some("loopback (127/8)"),
        (169, 254, _) => Some("link-local (169.254/16)"),
        (172, 16..=31, _) => Some("private (172.16/12)"),
        (192, 0, 0) => Some("IETF protocol assignments (192.0.0/24)"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("documentation"),
        (192, 88, 99) => Some("6to4 relay anycast (192.88.99/24)"),
        (192, 168, _) => Some("private (192.168/16)"),
        (198, 18..=19, _) => Some("benchmarking (198.18/15)"),
        (224..=239, _, _) => Some("multicast (224/4)"),
        (255, 255, 255) if d == 255 => Some("broadcast"),
        (240..=255, _, _) => Some("reserved (240/4)"),
        _ => None,
    }
}

/// What an IPv6 address is, for a guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Class {
    /// Global unicast outside every special range.
    Public,
    /// Loopback, private, link-local, multicast, a range that goes nowhere or
    /// only somewhere local (Teredo, local-use NAT64): never public, whatever
    /// follows the prefix.
    Special(&'static str),
    /// A range that carries an IPv4 address and reaches it through a
    /// translator or relay (mapped, SIIT, IPv4-compatible, NAT64 64:ff9b::/96,
    /// 6to4): as public as the address it embeds, at best.
    EmbedsV4(Ipv4Addr, &'static str),
}

/// Classifies an IPv6 address.
pub fn classify_v6(ip: Ipv6Addr) -> V6Class {
    let s = ip.segments();
    let low_v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if ip.is_unspecified() {
        V6Class::Special("unspecified (::)")
    } else if ip.is_loopback() {
        V6Class::Special("loopback (::1)")
    } else if s[0..6] == [0, 0, 0, 0, 0, 0xffff] {
        V6Class::EmbedsV4(low_v4, "IPv4-mapped (::ffff:0:0/96)")
    } else if s[0..6] == [0, 0, 0, 0, 0xffff, 0] {
        V6Class::EmbedsV4(low_v4, "IPv4-translated, SIIT (::ffff:0:0:0/96)")
    } else if s[0..6] == [0, 0, 0, 0, 0, 0] {
        V6Class::EmbedsV4(low_v4, "IPv4-compatible (::/96, deprecated)")
    } else if s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        V6Class::EmbedsV4(low_v4, "NAT64 (64:ff9b::/96)")
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // Its prefix length (/48../96) is the local network's choice, so where
        // the IPv4 address sits is unknown: refused whatever it embeds.
        V6Class::Special("local-use NAT64 (64:ff9b:1::/48)")
    } else if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        V6Class::EmbedsV4(v4, "6to4 (2002::/16)")
    } else if s[0] == 0x2001 && s[1] == 0 {
        V6Class::Special("Teredo (2001::/32)")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 || s[0] & 0xfff0 == 0x3ff0 {
        V6Class::Special("documentation (2001:db8::/32, 3fff::/20)")
    } else if s[0..4] == [0x100, 0, 0, 0] {
        V6Class::Special("discard-only (100::/64)")
    } else if s[0] & 0xfe00 == 0xfc00 {
        V6Class::Special("unique local (fc00::/7)")
    } else if s[0] & 0xffc0 == 0xfe80 {
        V6Class::Special("link-local (fe80::/10)")
    } else if s[0] & 0xffc0 == 0xfec0 {
        V6Class::Special("site-local (fec0::/10)")
    } else if s[0] & 0xff00 == 0xff00 {
        V6Class::Special("multicast (ff00::/8)")
    } else {
        V6Class::Public
    }
}

/// Why `ip` is not a public unicast address (`None`: it is one). An IPv6
/// range that embeds an IPv4 address is judged by the address it embeds, so
/// a NAT64 network's `64:ff9b::` + public IPv4 passes and `64:ff9b::10.0.0.1`
/// does not.
pub fn non_public(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4).map(str::to_string),
        IpAddr::V6(v6) => match classify_v6(v6) {
            V6Class::Public => None,
            V6Class::Special(why) => Some(why.to_string()),
            V6Class::EmbedsV4(v4, range) => {
                special_v4(v4).map(|why| format!("{range} embedding {v4}, {why}"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<&'static str> {
        special_v4(s.parse().unwrap())
    }

    fn judged(s: &str) -> Option<String> {
        non_public(s.parse().unwrap())
    }

    #[test]
    fn ipv4_special_ranges_and_their_edges() {
        for (ip, class) in [
            ("0.0.0.0", "0.0.0.0/8"),
            ("0.255.255.255", "0.0.0.0/8"),
            ("10.0.0.1", "10/8"),
            ("100.64.0.0", "100.64/10"),
            ("100.127.255.255", "100.64/10"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "172.16/12"),
            ("172.31.255.255", "172.16/12"),
            ("192.0.0.8", "192.0.0/24"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay"),
            ("192.168.0.1", "192.168/16"),
            ("198.18.0.1", "198.18/15"),
            ("198.19.255.255", "198.18/15"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
        ] {
            let why = v4(ip).unwrap_or_else(|| panic!("{ip} passed"));
            assert!(why.contains(class), "{ip}: {why}");
        }
        for ip in [
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(v4(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_special_ranges() {
        for (ip, class) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local"),
            ("fdff:ffff::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff:1::1", "documentation"),
            ("100::1", "discard"),
            ("100::ffff:ffff:ffff:ffff", "discard"),
            ("2001::1", "Teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("64:ff9b:1::5db8:d822", "local-use NAT64"),
            ("64:ff9b:1:ffff::1", "local-use NAT64"),
        ] {
            match classify_v6(ip.parse().unwrap()) {
                V6Class::Special(why) => assert!(why.contains(class), "{ip}: {why}"),
                other => panic!("{ip}: {other:?}"),
            }
        }
        for ip in [
            "2606:4700::1111",
            "2003::1",
            "2001:1::1",
            "2001:db9::1",
            "64:ff9b:2::1",
            "100:0:0:1::1",
            "3fef::1",
        ] {
            assert_eq!(classify_v6(ip.parse().unwrap()), V6Class::Public, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_embedding_ipv4_are_judged_by_the_address_they_embed() {
        for (ip, embedded) in [
            ("::ffff:10.0.0.1", "10.0.0.1"),
            ("::ffff:0:a9fe:a9fe", "169.254.169.254"),
            ("::127.0.0.1", "127.0.0.1"),
            ("::10.1.2.3", "10.1.2.3"),
            ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
            ("64:ff9b::10.0.0.1", "10.0.0.1"),
            ("2002:0a00:0001::1", "10.0.0.1"),
            ("2002:7f00:1::", "127.0.0.1"),
            ("2002::", "0.0.0.0"),
        ] {
            let why = judged(ip).unwrap_or_else(|| panic!("{ip} passed"));
            assert!(why.contains(embedded), "{ip}: {why}");
        }
        for ip in [
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "::ffff:0:5db8:d822",
        ] {
            assert_eq!(judged(ip), None, "{ip}");
            assert!(
                matches!(classify_v6(ip.parse().unwrap()), V6Class::EmbedsV4(..)),
                "{ip}"
            );
        }
        assert_eq!(judged("93.184.216.34"), None);
        assert!(judged("192.168.1.1").unwrap().contains("192.168/16"));
    }
}
