//! The edge's request-body validation: what a tenant (or a sidecar) can send.

use voxline_edge::api::fields::parse_object;
use voxline_edge::api::validate;
use voxline_edge::calling_window;
use voxline_edge::dispatch::sidecar_link::{self, SidecarOp};
use voxline_edge::engine_keys;
use voxline_edge::error::ApiError;
use voxline_edge::url_guard;

/// 2026-01-01T00:00:00Z.
const NOW_MS: u64 = 1_767_225_600_000;

fn check_error(e: &ApiError) {
    assert!(!e.code.as_str().is_empty());
    let status = e.status();
    assert!((400..600).contains(&status), "status {status} for {e:?}");
}

/// `edge_json`: first byte picks the endpoint (and content type), the rest is the body.
pub fn edge_json(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let content_type = match sel >> 4 {
        0 => None,
        1 => Some("text/plain"),
        2 => Some("application/json; charset=utf-8"),
        3 => Some("APPLICATION/JSON"),
        _ => Some("application/json"),
    };
    match sel % 8 {
        0 | 1 => match validate::create_call(content_type, body, NOW_MS) {
            Ok(c) => {
                validate::check_e164("phone", &c.phone).expect("accepted phone is E.164");
                if let Some(u) = &c.engine_base_url {
                    let _ = engine_keys::check_base_url(u, false);
                    let _ = engine_keys::check_base_url(u, true);
                }
                if let Some(s) = &c.schedule_at {
                    assert!(
                        voxline_edge::ids::parse_rfc3339_utc_ms(s).is_some(),
                        "schedule_at {s:?} does not read back"
                    );
                }
                if let Some(m) = &c.metadata {
                    assert!(m.as_str().len() <= voxline_edge::limits::MAX_METADATA_BYTES);
                }
            }
            Err(e) => check_error(&e),
        },
        2 | 3 => match validate::agent(content_type, body, sel % 8 == 2, sel % 16 < 8) {
            Ok(a) => {
                if let Some(Some(w)) = &a.calling_window {
                    for at in [0, NOW_MS, NOW_MS + 123_456_789, u64::MAX / 2] {
                        if let Some(t) = w.earliest_start(at) {
                            assert!(t >= at, "window start {t} before {at}");
                        }
                    }
                }
                if let Some(Some(u)) = &a.engine_base_url {
                    let _ = engine_keys::check_base_url(u, false);
                }
            }
            Err(e) => check_error(&e),
        },
        4 => {
            let ops = [
                SidecarOp::Register,
                SidecarOp::Lease,
                SidecarOp::Ack,
                SidecarOp::Events,
                SidecarOp::Deregister,
            ];
            let op = ops[(sel as usize >> 3) % ops.len()];
            if let Err(e) = sidecar_link::parse_message(op, body, "sc-1") {
                check_error(&e);
            }
        }
        5 => {
            // The strict field reader on its own, with every getter.
            match parse_object(content_type, body, 4096, &["a", "b", "c", "n", "l"]) {
                Ok(f) => {
                    let _ = f.str_opt("a", 10);
                    let _ = f.str_req("b", 3);
                    let _ = f.int_opt("n", -5, 5);
                    let _ = f.bool_opt("c");
                    let _ = f.object_opt("a");
                    let _ = f.int_list_opt("l", 0, 6, 7);
                    let _ = f.str_list_opt("l", 8, 16);
                }
                Err(e) => check_error(&e),
            }
        }
        6 => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
                if let Ok(w) = calling_window::parse(&v) {
                    let _ = w.earliest_start(NOW_MS);
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let _ = url_guard::check(&text, false);
            let _ = url_guard::check_webhook(&text, false);
            let _ = engine_keys::check_base_url(&text, false);
            let _ = engine_keys::check_key(&text);
        }
    }
}
