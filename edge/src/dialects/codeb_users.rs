//! CodeB's callers, pure: the tenant host, usernames and passwords of tenant
//! users, and the shape of the access tokens `/oidc.ashx/token` mints.
//! Storage and checks are in `api::codeb_auth` and `api::codeb_users`.

use crate::ids;

/// Longest `codeb_host` (a DNS name's limit; the port comes on top of it in
/// practice, but one bound is simpler to state).
pub const HOST_MAX: usize = 253;
pub const USERNAME_MAX: usize = 64;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 1024;
/// Prefix of CodeB access tokens: `cbt_{tenant id}_{64 hex}`.
pub const TOKEN_PREFIX: &str = "cbt_";
/// Longest bearer token looked at (longer ones are refused unread).
pub const MAX_BEARER_CHARS: usize = 128;

/// [`normalize_host`] as a regular expression (any case; with `maxLength`
/// [`HOST_MAX`]), for the OpenAPI document: a test pins the two together.
pub const HOST_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$";

/// [`normalize_username`] as a regular expression (any case; with
/// `maxLength` [`USERNAME_MAX`]).
pub const USERNAME_PATTERN: &str = r"^[A-Za-z0-9._@-]+$";

/// A tenant's `codeb_host`, lowercased: DNS labels of `a-z 0-9 -` (1-63
/// characters, no `-` at either end) joined by dots, then optionally `:`
/// and a port 1-65535; at most [`HOST_MAX`] characters. `None`: not one.
pub fn normalize_host(input: &str) -> Option<String> {
    let host = input.to_ascii_lowercase();
    if host.is_empty() || host.len() > HOST_MAX {
        return None;
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host.as_str(), None),
    };
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return None;
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return None;
        }
    }
    Some(host)
}

/// A username as stored: lowercased, 1-[`USERNAME_MAX`] of `a-z 0-9 . _ @ -`.
/// `None`: it cannot be a user's.
pub fn normalize_username(input: &str) -> Option<String> {
    let name = input.to_ascii_lowercase();
    let ok = (1..=USERNAME_MAX).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'@' | b'-')
        });
    ok.then_some(name)
}

/// Whether a new password is acceptable: [`PASSWORD_MIN`]-[`PASSWORD_MAX`] characters.
pub fn password_ok(password: &str) -> bool {
    (PASSWORD_MIN..=PASSWORD_MAX).contains(&password.chars().count())
}

/// A fresh access token of the tenant: `cbt_{tenant id}_{64 hex}` (256
/// random bits); the tenant id names the `RateLimiter` object that knows it.
pub fn mint_token(tenant_id: &str) -> String {
    format!(
        "{TOKEN_PREFIX}{tenant_id}_{}",
        hex::encode(ids::random_bytes::<32>())
    )
}

/// The tenant id a well-formed access token names; `None` for anything else.
pub fn token_tenant(token: &str) -> Option<&str> {
    if token.len() > MAX_BEARER_CHARS {
        return None;
    }
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (tenant_id, secret) = rest.rsplit_once('_')?;
    let secret_ok = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (secret_ok && ids::is_id(tenant_id, "ten")).then_some(tenant_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lowercase_names_with_an_optional_port() {
        for (input, want) in [
            ("phone.yourtenant.com", Some("phone.yourtenant.com")),
            ("Phone.YourTenant.COM", Some("phone.yourtenant.com")),
            ("127.0.0.1:8787", Some("127.0.0.1:8787")),
            ("localhost:65535", Some("localhost:65535")),
            ("a-b.c", Some("a-b.c")),
            ("", None),
            ("-a.com", None),
            ("a-.com", None),
            ("a..com", None),
            ("a.com.", None),
            ("a_b.com", None),
            ("a.com:0", None),
            ("a.com:65536", None),
            ("a.com:080", None),
            ("a.com:", None),
            ("a.com:1:2", None),
            ("https://a.com", None),
            ("a.com/x", None),
        ] {
            assert_eq!(normalize_host(input).as_deref(), want, "{input}");
        }
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert!(long.len() > HOST_MAX);
        assert_eq!(normalize_host(&long), None);
        assert_eq!(normalize_host(&"a".repeat(64)), None, "label over 63");
    }

    #[test]
    fn the_documented_patterns_accept_exactly_what_is_accepted() {
        let host = regex_lite::Regex::new(HOST_PATTERN).unwrap();
        let user = regex_lite::Regex::new(USERNAME_PATTERN).unwrap();
        let label63 = "b".repeat(63);
        let mut hosts: Vec<String> = [
            "a",
            "A.b",
            "phone.yourtenant.com",
            "a-b.c",
            "-a",
            "a-",
            "a..b",
            "a.",
            ".a",
            "a_b",
            "a b",
            " a",
            "a ",
            "a:0",
            "a:1",
            "a:9999",
            "a:10000",
            "a:59999",
            "a:60000",
            "a:64999",
            "a:65000",
            "a:65499",
            "a:65500",
            "a:65529",
            "a:65530",
            "a:65535",
            "a:65536",
            "a:99999",
            "a:100000",
            "a:01",
            "a:",
            "a:1:2",
            "é.com",
            "a/b",
            "1.2.3.4:8787",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        hosts.push(format!("{label63}.c"));
        hosts.push(format!("b{label63}.c"));
        for h in &hosts {
            let documented = host.is_match(h) && h.chars().count() <= HOST_MAX;
            assert_eq!(documented, normalize_host(h).is_some(), "{h:?}");
        }
        for u in ["a", "A.b_c@d-e", "a b", "a/b", "é", "a:b", ""] {
            assert_eq!(user.is_match(u), normalize_username(u).is_some(), "{u:?}");
        }
    }

    #[test]
    fn usernames_and_passwords() {
        assert_eq!(
            normalize_username("Alice@Example.com").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(normalize_username("a.b_c-d").as_deref(), Some("a.b_c-d"));
        assert_eq!(
            normalize_username(&"a".repeat(64)).map(|s| s.len()),
            Some(64)
        );
        for bad in ["", "a b", "a/b", "ä", "a:b"] {
            assert_eq!(normalize_username(bad), None, "{bad}");
        }
        assert_eq!(normalize_username(&"a".repeat(65)), None);
        assert!(password_ok("12345678"));
        assert!(!password_ok("1234567"));
        assert!(password_ok(&"é".repeat(1024)));
        assert!(!password_ok(&"x".repeat(1025)));
    }

    #[test]
    fn tokens_name_their_tenant() {
        let t = mint_token("ten_0123456789abcdef0123");
        assert_eq!(token_tenant(&t), Some("ten_0123456789abcdef0123"));
        assert_ne!(t, mint_token("ten_0123456789abcdef0123"));
        assert!(t.len() <= MAX_BEARER_CHARS);
        for bad in [
            "ak_x",
            "cbt_",
            "cbt_ten_0123456789abcdef0123",
            "cbt_ten_0123456789abcdef0123_abc",
            "cbt_tenx_0123456789_0000000000000000000000000000000000000000000000000000000000000000",
            "cbt_agt_0123456789abcdef0123_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(token_tenant(bad), None, "{bad}");
        }
    }
}
