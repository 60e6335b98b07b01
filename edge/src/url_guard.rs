//! SSRF guard for webhook endpoint URLs, checked when an endpoint is created
//! or changed AND again before every delivery attempt (a rule change or a
//! stored record from an older version must not slip through).
//!
//! Production: `https` only, to a public host. Refused: private (RFC 1918,
//! ULA fc00::/7), loopback, link-local (169.254/16, fe80::/10), CGNAT
//! 100.64/10, 0.0.0.0/8 and other special ranges, cloud metadata hostnames,
//! single-label and internal-only names, IPv6 ranges that embed an IPv4
//! address (mapped, SIIT, NAT64, 6to4), Teredo, and webhook URLs with
//! credentials. The ranges are `voxline_shared::ip_ranges`, shared with the
//! sidecar's engine URL guard.
//! The URL is parsed by the `url` crate, a WHATWG URL parser like `fetch`'s,
//! and the rules apply to the host it reads, so IPv4 literals in any form
//! (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, `127.0.0.0x00001`) and
//! percent-encoded or full-width hosts are judged as the address they mean.
//! Development (`VOXLINE_ENV=development`): additionally loopback, over http
//! or https, so tests can run a local receiver.
//!
//! Limitation: a Worker cannot resolve DNS itself, so a public name whose
//! A/AAAA records point at a private address cannot be refused here. Workers'
//! `fetch` leaves from Cloudflare's network, where such addresses do not
//! route to the operator's internal network; redirects are not followed
//! (delivery uses `redirect: manual`), so a 3xx cannot bounce a delivery
//! to a refused address either.

use std::net::{Ipv4Addr, Ipv6Addr};

use voxline_shared::ip_ranges::{self, V6Class};

/// Names that reach cloud metadata services or only make sense internally.
const BLOCKED_NAMES: &[&str] = &[
    "localhost",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.tencentyun.com",
    "kubernetes.default",
];
/// Suffixes of names that never resolve to a public host.
const BLOCKED_SUFFIXES: &[&str] = &[
    ".localhost",
    ".internal",
    ".local",
    ".localdomain",
    ".home.arpa",
    ".intranet",
    ".lan",
    ".corp",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// Checks `url`; the error says why it is refused.
pub fn check(url: &str, dev_mode: bool) -> Result<(), String> {
    check_parsed(&parse(url)?, dev_mode)
}

/// [`check`] for a webhook endpoint, which also may not carry credentials
/// (`https://user:pass@host/`): endpoint URLs are shown in listings.
pub fn check_webhook(url: &str, dev_mode: bool) -> Result<(), String> {
    let parsed = parse(url)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not contain a user name or password".into());
    }
    check_parsed(&parsed, dev_mode)
}

/// Parsed as a WHATWG URL parser (what `fetch` uses) parses it, so the guard
/// and the request read the same host.
fn parse(url: &str) -> Result<url::Url, String> {
    // The parser would silently strip or drop these; refuse them instead.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL contains whitespace".into());
    }
    url::Url::parse(url).map_err(|e| format!("the URL is malformed: {e}"))
}

fn check_parsed(url: &url::Url, dev_mode: bool) -> Result<(), String> {
    let scheme = url.scheme();
    if scheme != "https" && scheme != "http" {
        return Err("the URL must be https".into());
    }
    let host = host_of(url)?;
    let loopback = is_loopback(&host);
    if dev_mode && loopback {
        return Ok(());
    }
    if scheme == "http" {
        return Err(
            "plain http is only allowed for loopback addresses in local development; use https"
                .into(),
        );
    }
    if loopback {
        return Err("loopback addresses are not allowed".into());
    }
    match &host {
        Host::V4(ip) => check_v4(*ip),
        Host::V6(ip) => check_v6(*ip),
        Host::Name(name) => check_name(name),
    }
}

/// The parsed host: IPv4 in every form WHATWG accepts already normalised,
/// names percent-decoded, lowercased and IDNA-mapped (punycode).
fn host_of(url: &url::Url) -> Result<Host, String> {
    match url.host() {
        None => Err("the URL has no host".into()),
        Some(url::Host::Ipv4(ip)) => Ok(Host::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Ok(Host::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            let name = name.strip_suffix('.').unwrap_or(&name);
            // Stricter than WHATWG, which allows empty labels and most punctuation.
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err("malformed host".into());
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                return Err("malformed host".into());
            }
            Ok(Host::Name(name.to_string()))
        }
    }
}

/// The host of `scheme://` + `rest`, as a WHATWG URL parser reads it.
pub fn parse_host(rest: &str) -> Result<Host, String> {
    host_of(&parse(&format!("https://{rest}"))?)
}

/// An IPv4 literal in any WHATWG form (`a.b.c.d`, `a.b.c`, `a.b`, `a`, each
/// part decimal, `0x` hex or `0`-prefixed octal); None if it is not one.
pub fn parse_v4(host: &str) -> Option<Ipv4Addr> {
    match parse_host(host) {
        Ok(Host::V4(ip)) if !host.contains(['/', '?', '#', '\\', '@', ':']) => Some(ip),
        _ => None,
    }
}

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::V4(ip) => ip.is_loopback(),
        Host::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
    }
}

/// The special ranges are `voxline_shared::ip_ranges`, the list the sidecar
/// also applies to the addresses engine URLs resolve to.
fn check_v4(ip: Ipv4Addr) -> Result<(), String> {
    match ip_ranges::special_v4(ip) {
        Some(why) => Err(format!("{ip} is not a public address: {why}")),
        None => Ok(()),
    }
}

/// Ranges that embed an IPv4 address (reaching it through a translator or
/// relay) are refused whatever they embed: the host is judged as written,
/// and nothing it could resolve to is known here.
fn check_v6(ip: Ipv6Addr) -> Result<(), String> {
    match ip_ranges::classify_v6(ip) {
        V6Class::Public => Ok(()),
        V6Class::Special(why) | V6Class::EmbedsV4(_, why) => {
            Err(format!("{ip} is not a public address: {why}"))
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if BLOCKED_NAMES.contains(&name) || BLOCKED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Err(format!("'{name}' is an internal or metadata host name"));
    }
    if !name.contains('.') {
        return Err(format!(
            "'{name}' is a single-label (intranet) host name; use a public name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_is_allowed() {
        for url in [
            "https://hooks.example.com/x",
            "HTTPS://Example.COM:8443/a?b#c",
            "https://93.184.216.34/h",
            "https://[2606:4700::1111]/h",
            "https://user:pw@example.com/h",
        ] {
            assert_eq!(check(url, false), Ok(()), "{url}");
        }
    }

    #[test]
    fn http_only_to_loopback_in_development() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/x",
            "http://[::1]:9/",
            "https://127.0.0.1/",
            "http://127.1/",
            "http://a.localhost/",
        ] {
            assert_eq!(check(url, true), Ok(()), "{url}");
            assert!(check(url, false).is_err(), "{url} allowed in production");
        }
        for url in [
            "http://example.com/hook",
            "http://10.0.0.1/",
            "ftp://example.com",
            "https://",
            "https://a b",
            "example.com",
        ] {
            assert!(check(url, true).is_err(), "{url}");
        }
    }

    #[test]
    fn private_and_special_addresses_are_refused_everywhere() {
        for host in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "[fc00::1]",
            "[fd12:3456::1]",
            "[fe80::1]",
            "[::]",
            "[::ffff:10.0.0.1]",
            "[::ffff:169.254.169.254]",
            "[64:ff9b::a9fe:a9fe]",
            "[ff02::1]",
        ] {
            for dev in [false, true] {
                assert!(
                    check(&format!("https://{host}/h"), dev).is_err(),
                    "{host} (dev {dev})"
                );
            }
        }
        for ok in [
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "11.0.0.1",
            "169.253.1.1",
        ] {
            assert_eq!(check(&format!("https://{ok}/h"), false), Ok(()), "{ok}");
        }
    }

    #[test]
    fn ipv4_literals_in_every_whatwg_form_are_decoded() {
        assert_eq!(parse_v4("2130706433"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_v4("0x7f000001"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_v4("0177.0.0.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_v4("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_v4("127.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(
            parse_v4("169.254.43518"),
            Some(Ipv4Addr::new(169, 254, 169, 254))
        );
        assert_eq!(
            parse_v4("0xa9.0xfe.0xa9.0xfe"),
            Some(Ipv4Addr::new(169, 254, 169, 254))
        );
        assert_eq!(parse_v4("012.0.0.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parse_v4("256.0.0.1"), None);
        assert_eq!(parse_v4("1.2.3.4.5"), None);
        assert_eq!(parse_v4("4294967296"), None);
        for host in [
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.1",
            "3232235777",
            "0xA9FEA9FE",
            "017700000001",
            "10.1",
            "127.0.0.1.",
        ] {
            assert!(check(&format!("https://{host}/"), false).is_err(), "{host}");
        }
        // A numeric last label that is not a valid address is refused, not treated as a name.
        assert!(check("https://1.2.3.999/", false).is_err());
        assert!(check("https://example.09/", false).is_err());
    }

    #[test]
    fn metadata_and_internal_names_are_refused() {
        for host in [
            "metadata",
            "metadata.google.internal",
            "METADATA.GOOGLE.INTERNAL.",
            "instance-data",
            "instance-data.ec2.internal",
            "foo.internal",
            "printer.local",
            "intranet",
            "localhost",
            "x.localhost",
            "metadata.azure.com",
        ] {
            assert!(
                check(&format!("https://{host}/h"), false).is_err(),
                "{host}"
            );
        }
    }

    #[test]
    fn parser_confusions_are_refused() {
        for url in [
            "https://%31%32%37.0.0.1/",
            "https://１２７.０.０.１/",
            "https://[::1/",
            "https://[fe80::1%25eth0]/",
            "https://a..b/",
            "https://exa mple.com/",
        ] {
            assert!(check(url, false).is_err(), "{url}");
        }
        // The part after the last @ is the host.
        assert!(check("https://example.com@10.0.0.1/", false).is_err());
        assert_eq!(check("https://10.0.0.1@example.com/", false), Ok(()));
        assert_eq!(
            parse_host("evil.com\\@127.0.0.1/"),
            Ok(Host::Name("evil.com".into()))
        );
    }

    #[test]
    fn the_host_is_read_as_a_whatwg_parser_reads_it() {
        // A hex last part with leading zeros: 127.0.0.1 to fetch.
        for url in [
            "https://127.0.0.0x0000000000001/",
            "https://127.0.0.0x00001/",
            "https://0x7f.0.0.0x0000000000001/",
            "https://10.0.0.0x000000001/",
        ] {
            assert!(check(url, false).is_err(), "{url}");
        }
        assert_eq!(
            parse_host("127.0.0.0x0000000000001/"),
            Ok(Host::V4(Ipv4Addr::new(127, 0, 0, 1)))
        );
        assert_eq!(
            parse_host("Ex%41mple.COM./x"),
            Ok(Host::Name("example.com".into()))
        );
        assert_eq!(
            check("http://127.0.0.0x0000000000001/", true),
            Ok(()),
            "loopback in development"
        );
    }

    #[test]
    fn ipv6_ranges_embedding_ipv4_and_discard_are_refused() {
        for host in [
            "[2002:5db8:d822::1]",
            "[2002::]",
            "[64:ff9b::5db8:d822]",
            "[64:ff9b:1::5db8:d822]",
            "[64:ff9b:1:ffff::1]",
            "[::ffff:93.184.216.34]",
            "[::ffff:0:5db8:d822]",
            "[::ffff:0:0a00:1]",
            "[100::1]",
            "[100::ffff:ffff:ffff:ffff]",
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
        ] {
            assert!(
                check(&format!("https://{host}/h"), false).is_err(),
                "{host}"
            );
        }
        for ok in [
            "[2003::1]",
            "[64:ff9b:2::1]",
            "[100:0:0:1::1]",
            "[2606:4700::1111]",
        ] {
            assert_eq!(check(&format!("https://{ok}/h"), false), Ok(()), "{ok}");
        }
        assert!(check("https://192.88.99.1/", false).is_err());
        assert!(check("https://192.88.99.255/", false).is_err());
        assert_eq!(check("https://192.88.98.1/", false), Ok(()));
        assert_eq!(check("https://192.88.100.1/", false), Ok(()));
    }

    #[test]
    fn webhook_urls_may_not_carry_credentials() {
        for url in [
            "https://user:pass@example.com/h",
            "https://user@example.com/h",
            "https://:pass@example.com/h",
            "https://u%40x:p@example.com/",
        ] {
            assert!(check_webhook(url, false).is_err(), "{url}");
            assert_eq!(
                check(url, false),
                Ok(()),
                "{url}: the generic guard judges the host only"
            );
        }
        assert_eq!(
            check_webhook("https://hooks.example.com/x?a=b@c", false),
            Ok(())
        );
        assert!(
            check_webhook("https://10.0.0.1/", false).is_err(),
            "the host rules still apply"
        );
    }
}
