use super::*;
use crate::api::router::{route, Match};

/// Replaces each `${...}` of a JS template literal with `x` (one path segment).
fn fill_template(t: &str) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        out.push('x');
        let mut depth = 0;
        let mut end = rest.len();
        for (j, ch) in rest[i + 1..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1 + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The leading string or template literal of `s` (`"..."` or `` `...` ``), filled.
fn literal(s: &str) -> Option<String> {
    let quote = s.chars().next()?;
    if quote != '"' && quote != '`' {
        return None;
    }
    let body = &s[1..];
    let mut depth = 0;
    for (i, ch) in body.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            c if c == quote && depth == 0 => return Some(fill_template(&body[..i])),
            _ => {}
        }
    }
    None
}

/// Every `api("METHOD", <literal path>` of the script, as (method, path without query).
fn api_calls_of_the_script() -> Vec<(String, String)> {
    let mut calls = Vec::new();
    for (i, _) in APP_JS.match_indices("api(\"") {
        let rest = &APP_JS[i + 5..];
        let Some(end) = rest.find('"') else { continue };
        let method = rest[..end].to_string();
        let arg = rest[end + 1..].trim_start_matches([',', ' ']);
        let path = if let Some(inner) = arg.strip_prefix("tenantPath(") {
            literal(inner).map(|p| format!("/admin/tenants/x{p}"))
        } else {
            literal(arg)
        };
        if let Some(p) = path {
            let p = p.split('?').next().unwrap_or("").to_string();
            calls.push((method, p));
        }
    }
    calls
}

#[test]
fn every_api_call_of_the_script_is_a_route_of_the_api() {
    let calls = api_calls_of_the_script();
    // Calls, transcript, recording, deliveries, redeliver, agents (list,
    // edit), keys (list, mint, revoke), webhooks (list, add, rotate, test),
    // sidecars, tenant.
    assert!(calls.len() >= 17, "{calls:?}");
    for (method, path) in &calls {
        assert!(
            matches!(route(method, path), Match::Found(..)),
            "the console calls {method} {path}, which the API does not serve"
        );
    }
    for wanted in [
        ("GET", "/v1/calls"),
        ("GET", "/v1/calls/x/recording"),
        ("GET", "/v1/calls/x/transcript"),
        ("POST", "/v1/webhooks/deliveries/x/redeliver"),
        ("POST", "/admin/tenants/x/api-keys"),
        ("DELETE", "/admin/tenants/x/api-keys/x"),
        ("POST", "/admin/tenants/x/webhooks/x/rotate"),
        ("POST", "/admin/tenants/x/webhooks/x/test"),
        ("PATCH", "/admin/tenants/x/agents/x"),
        ("GET", "/v1/webhooks/deliveries"),
        ("GET", "/v1/webhooks/deliveries/x"),
        ("GET", "/admin/sidecars"),
    ] {
        assert!(
            calls
                .iter()
                .any(|(m, p)| (m.as_str(), p.as_str()) == wanted),
            "the console never calls {wanted:?}: {calls:?}"
        );
    }
}

#[test]
fn the_page_lists_every_call_status_and_links_only_served_assets() {
    let page = render_page();
    assert!(!page.contains("<!--STATUS_OPTIONS-->"));
    assert!(!page.contains("<!--ENGINE_OPTIONS-->"));
    // Every view replaces <main>'s children, so the templates the script
    // reads after login live outside it.
    let main_end = page.find("</main>").expect("main");
    for t in ["id=\"status-options\"", "id=\"engine-options\""] {
        assert!(page.find(t).expect(t) > main_end, "{t} inside <main>");
    }
    // The agent form's engines are the engine kinds, in their template.
    let engines = &page[page.find("id=\"engine-options\"").expect("engine template")..];
    let engines = &engines[..engines.find("</template>").unwrap()];
    for e in EngineKind::NAMES {
        assert!(
            engines.contains(&format!("<option value=\"{e}\">{e}</option>")),
            "no engine option {e}"
        );
    }
    for s in CallStatus::ALL {
        let option = format!("<option value=\"{0}\">{0}</option>", s.as_str());
        assert!(
            page.contains(&option),
            "no filter option for {}",
            s.as_str()
        );
    }
    // Each /console/ reference of the page is an asset served.
    let mut referenced = 0;
    for (i, _) in page.match_indices("\"/console/") {
        let name = &page[i + 10..];
        let name = &name[..name.find('"').unwrap_or(0)];
        assert!(asset(name).is_ok(), "the page links /console/{name}");
        referenced += 1;
    }
    assert_eq!(referenced, ASSETS.len());
}

#[test]
fn nothing_the_policy_forbids_is_in_the_page_or_the_script() {
    let page = render_page();
    // No inline script or style: the policy allows only this origin's files.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains("<script type=\"module\" src=\"/console/app.js\"></script>"));
    assert!(!page.contains("<style"));
    assert!(!page.contains(" style="));
    for handler in [" onclick=", " onload=", " onsubmit=", "javascript:"] {
        assert!(!page.contains(handler), "{handler} in the page");
    }
    // The script builds nodes (textContent), never parses API data as markup,
    // keeps credentials in the tab only, and sets no inline style attribute.
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage",
        "document.cookie",
        "setAttribute(\"style\"",
    ] {
        assert!(!APP_JS.contains(forbidden), "{forbidden} in app.js");
    }
    assert!(APP_JS.contains("sessionStorage"));
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
}

#[test]
fn the_credentials_never_go_into_a_url() {
    // The only place a credential leaves the tab: the Authorization header.
    assert_eq!(APP_JS.matches("Bearer ").count(), 1);
    assert!(APP_JS.contains("headers.Authorization = `Bearer ${cred}`"));
    for leak in ["?key=", "&key=", "token=", "api_key="] {
        assert!(!APP_JS.contains(leak), "{leak} in app.js");
    }
    // fetch never sends cookies or a referrer.
    assert!(APP_JS.contains("credentials: \"omit\""));
}

#[test]
fn assets_carry_their_type_and_the_policy_and_unknown_names_are_404() {
    for (name, content_type, body) in ASSETS {
        let r = asset(name).expect("served");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, *body);
        let header = |h: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == h)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("Content-Type"), Some(*content_type));
        assert_eq!(
            header("Content-Security-Policy"),
            Some(CONTENT_SECURITY_POLICY)
        );
        assert_eq!(header("X-Content-Type-Options"), Some("nosniff"));
    }
    for bad in ["index.html", "app.js.map", "..", "APP.JS"] {
        let e = asset(bad).expect_err(bad);
        assert_eq!(e.code, ErrorCode::NotFound);
    }
    let p = page();
    assert!(p
        .headers
        .iter()
        .any(|(k, v)| k == "Content-Type" && v.starts_with("text/html")));
    assert!(p
        .headers
        .iter()
        .any(|(k, v)| k == "Content-Security-Policy" && v == CONTENT_SECURITY_POLICY));
}

#[test]
fn the_agent_form_edits_only_fields_the_agent_api_validates_and_labels_each() {
    let fields = &APP_JS[APP_JS.find("const AGENT_FIELDS = [").expect("AGENT_FIELDS")..];
    let fields = &fields[..fields.find("];").unwrap()];
    let names: Vec<&str> = fields
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!(names.len() >= 7, "{names:?}");
    for n in &names {
        assert!(
            crate::api::validate::AGENT_FIELDS.contains(n),
            "the console edits '{n}', which the agent API does not take"
        );
    }
    // Each input is labelled (for=) and described by its hint and error.
    assert!(APP_JS.contains("h(\"label\", { for: fid(f), text: label })"));
    assert!(APP_JS.contains("\"aria-describedby\": `${fid(f)}-hint ${fid(f)}-error`"));
    assert!(APP_JS.contains("setAttribute(\"aria-invalid\", \"true\")"));
}
