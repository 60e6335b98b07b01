use super::*;
use serde_json::json;

fn check(scope: &str, limit: u32, window_seconds: u32) -> Check {
    Check {
        scope: scope.into(),
        limit: RateLimit {
            limit,
            window_seconds,
        },
        new_work_only: false,
    }
}

#[test]
fn expired_windows_are_forgotten_without_walking_the_live_ones() {
    let mut l = Limiter::default();
    let hour = RateLimit {
        limit: 5,
        window_seconds: 3_600,
    };
    let minute = RateLimit {
        limit: 5,
        window_seconds: 60,
    };
    for i in 0..1_000 {
        l.admit(
            &[Check {
                scope: format!("number:{i}"),
                limit: hour,
                new_work_only: true,
            }],
            1_000,
        );
    }
    l.admit(
        &[Check {
            scope: "key:a".into(),
            limit: minute,
            new_work_only: false,
        }],
        1_000,
    );
    assert_eq!(l.len(), 1_001);
    // The minute window ends; the hour windows stay, counts intact.
    l.admit(
        &[Check {
            scope: "key:b".into(),
            limit: minute,
            new_work_only: false,
        }],
        61_000,
    );
    assert_eq!(l.len(), 1_001, "key:a forgotten, key:b new");
    assert!(!l.knows("key:a") && l.knows("number:7"));
    assert_eq!(l.window("number:7").map(|w| w.count), Some(1));
    // A window used again in a later period moves in the index.
    l.admit(
        &[Check {
            scope: "key:b".into(),
            limit: minute,
            new_work_only: false,
        }],
        130_000,
    );
    l.admit(
        &[Check {
            scope: "key:c".into(),
            limit: minute,
            new_work_only: false,
        }],
        185_000,
    );
    assert!(
        l.knows("key:c") && !l.knows("key:b"),
        "key:b's second window ended at 180 s"
    );
    l.admit(
        &[Check {
            scope: "key:c".into(),
            limit: minute,
            new_work_only: false,
        }],
        3_601_000,
    );
    assert_eq!(l.len(), 1, "every hour window ended");
}

#[test]
fn fixed_window_is_exact_and_resets_on_the_boundary() {
    let mut l = Limiter::default();
    let c = [check("key:a", 3, 60)];
    let t0 = 120_000; // a window start
    let got: Vec<(bool, u32)> = (0..5)
        .map(|i| l.admit(&c, t0 + i))
        .map(|v| (v.allowed, v.remaining))
        .collect();
    assert_eq!(
        got,
        [(true, 2), (true, 1), (true, 0), (false, 0), (false, 0)]
    );
    let refused = l.admit(&c, t0 + 59_001);
    assert_eq!((refused.allowed, refused.reset_seconds), (false, 1));
    assert_eq!(l.admit(&c, t0 + 30_000).reset_seconds, 30);
    let next = l.admit(&c, t0 + 60_000);
    assert_eq!(
        (next.allowed, next.remaining, next.reset_seconds),
        (true, 2, 60)
    );
}

#[test]
fn scopes_are_checked_together_and_refusals_consume_nothing() {
    let mut l = Limiter::default();
    let key_ip = [check("key:a", 10, 60), check("ip:1", 2, 60)];
    assert!(l.admit(&key_ip, 0).allowed);
    let v = l.admit(&key_ip, 1);
    // The IP scope is the tightest.
    assert_eq!(
        (v.allowed, v.scope.as_str(), v.limit, v.remaining),
        (true, "ip:1", 2, 0)
    );
    let refused = l.admit(&key_ip, 2);
    assert_eq!((refused.allowed, refused.scope.as_str()), (false, "ip:1"));
    // The key scope did not count the refused request: 10 - 2 used.
    let other_ip = [check("key:a", 10, 60), check("ip:2", 100, 60)];
    let v = l.admit(&other_ip, 3);
    assert_eq!((v.scope.as_str(), v.remaining), ("key:a", 7));
    // Among exhausted scopes, Retry-After is the later reset.
    let mut l = Limiter::default();
    let both = [check("a", 1, 10), check("b", 1, 3600)];
    assert!(l.admit(&both, 0).allowed);
    let r = l.admit(&both, 1);
    assert_eq!((r.scope.as_str(), r.reset_seconds), ("b", 3600));
    let h = r.headers();
    assert!(h.contains(&("Retry-After".to_string(), "3600".to_string())));
}

#[test]
fn idempotency_replays_refuses_mismatch_and_in_flight() {
    let (out, e) = idem_begin(None, "f1", 0);
    assert_eq!(out, IdemVerdict::Proceed);
    let e = e.unwrap();
    assert_eq!(idem_begin(Some(&e), "f1", 10).0, IdemVerdict::InFlight);
    assert_eq!(idem_begin(Some(&e), "f2", 10).0, IdemVerdict::Mismatch);
    // Abandoned in-flight keys can be taken over.
    assert_eq!(
        idem_begin(Some(&e), "f1", IDEMPOTENCY_STALE_MS).0,
        IdemVerdict::Proceed
    );
    let resp = StoredResponse {
        status: 201,
        body: "{}".into(),
        headers: vec![],
    };
    let done = complete_entry(Some(&e), &resp, 20).unwrap();
    assert_eq!(
        idem_begin(Some(&done), "f1", 30).0,
        IdemVerdict::Replay {
            response: resp.clone()
        }
    );
    assert_eq!(idem_begin(Some(&done), "f2", 30).0, IdemVerdict::Mismatch);
    // Expired after 24 h: a new request.
    assert_eq!(
        idem_begin(Some(&done), "f2", 20 + IDEMPOTENCY_TTL_MS).0,
        IdemVerdict::Proceed
    );
    // Completing a key that is not in flight changes nothing.
    assert_eq!(complete_entry(Some(&done), &resp, 40), None);
    assert!(valid_idempotency_key("order-42_a.b"));
    assert!(
        !valid_idempotency_key("")
            && !valid_idempotency_key("a b")
            && !valid_idempotency_key(&"a".repeat(256))
    );
}

#[test]
fn rate_limited_requests_do_not_begin_their_key() {
    let mut l = Limiter::default();
    let a = Admission {
        checks: vec![check("key:a", 1, 60)],
        idempotency: Some(IdemRequest {
            key: "k".into(),
            fingerprint: "f".into(),
        }),
        signature: None,
    };
    let (first, entry) = admit(&mut l, None, false, &a, 0);
    assert_eq!(first.idempotency, IdemVerdict::Proceed);
    assert!(entry.is_some());
    let (second, entry) = admit(&mut l, None, false, &a, 1);
    assert!(!second.rate.allowed);
    assert_eq!((second.idempotency, entry), (IdemVerdict::None, None));
}

#[test]
fn replays_do_not_count_against_new_work_limits() {
    let mut l = Limiter::default();
    let number = Check {
        new_work_only: true,
        ..check("number:+1", 1, 3600)
    };
    let a = Admission {
        checks: vec![check("key:a", 10, 60), number],
        idempotency: Some(IdemRequest {
            key: "k".into(),
            fingerprint: "f".into(),
        }),
        signature: None,
    };
    let (first, entry) = admit(&mut l, None, false, &a, 0);
    assert_eq!(
        (first.rate.allowed, first.idempotency),
        (true, IdemVerdict::Proceed)
    );
    let entry = entry.unwrap();
    // In flight, then done: both answered without spending the number's budget.
    let (second, _) = admit(&mut l, Some(&entry), false, &a, 1);
    assert_eq!(
        (
            second.rate.allowed,
            second.idempotency,
            second.rate.scope.as_str()
        ),
        (true, IdemVerdict::InFlight, "key:a")
    );
    let done = complete_entry(
        Some(&entry),
        &StoredResponse {
            status: 201,
            body: "{}".into(),
            headers: vec![],
        },
        2,
    )
    .unwrap();
    assert!(matches!(
        admit(&mut l, Some(&done), false, &a, 3).0.idempotency,
        IdemVerdict::Replay { .. }
    ));
    // A new key is new work: the number is spent.
    let b = Admission {
        idempotency: Some(IdemRequest {
            key: "k2".into(),
            fingerprint: "g".into(),
        }),
        ..a.clone()
    };
    assert!(!admit(&mut l, None, false, &b, 4).0.rate.allowed);
}

#[test]
fn a_replayed_signature_is_refused_before_counting() {
    let mut l = Limiter::default();
    let sig = SignatureUse {
        key: signature_storage_key(301_000, "ab"),
        until_ms: 301_000,
    };
    let a = Admission {
        checks: vec![check("key:a", 2, 60)],
        idempotency: None,
        signature: Some(sig),
    };
    let (first, _) = admit(&mut l, None, false, &a, 0);
    assert!(first.rate.allowed && !first.replayed);
    let (again, entry) = admit(&mut l, None, true, &a, 1);
    assert!(again.replayed && entry.is_none());
    assert_eq!(
        again.rate.remaining, 0,
        "the state as it stands: one left, this one not counted"
    );
    assert!(
        admit(&mut l, None, false, &a, 2).0.rate.allowed,
        "the replay spent nothing"
    );
    assert_eq!(
        parse_signature_storage_key(&a.signature.as_ref().unwrap().key),
        Some(301_000)
    );
    assert!(
        signature_storage_key(9_000, "x") < signature_storage_key(10_000, "a"),
        "sorted by expiry"
    );
}

#[test]
fn rate_limit_settings_parse_and_validate() {
    let d = RateLimits::default();
    let got =
        parse_rate_limits(&json!({"per_key": {"limit": 5, "window_seconds": 10}}), d).unwrap();
    assert_eq!(
        (got.per_key, got.per_ip),
        (
            RateLimit {
                limit: 5,
                window_seconds: 10
            },
            d.per_ip
        )
    );
    assert_eq!(
        parse_rate_limits(&json!({"per_x": {}}), d).unwrap_err().0,
        "rate_limits.per_x"
    );
    assert_eq!(
        parse_rate_limits(&json!({"per_ip": {"limit": 0, "window_seconds": 1}}), d)
            .unwrap_err()
            .0,
        "rate_limits.per_ip.limit"
    );
    assert_eq!(
        parse_rate_limits(
            &json!({"per_ip": {"limit": 1, "window_seconds": 86_401}}),
            d
        )
        .unwrap_err()
        .0,
        "rate_limits.per_ip.window_seconds"
    );
    assert_eq!(
        parse_rate_limits(&json!({"per_ip": {"limit": 1}}), d)
            .unwrap_err()
            .0,
        "rate_limits.per_ip.window_seconds"
    );
    assert_eq!(
        parse_rate_limits(
            &json!({"per_ip": {"limit": 1, "window_seconds": 1, "x": 1}}),
            d
        )
        .unwrap_err()
        .0,
        "rate_limits.per_ip.x"
    );
    assert!(parse_rate_limits(&json!([]), d).is_err());
    // 60.0 is an integer to JSON Schema (the OpenAPI `RateLimit`); 1.5 is not.
    assert_eq!(
        parse_rate_limit(&json!({"limit": 5.0, "window_seconds": 60.0}), "x"),
        Ok(RateLimit {
            limit: 5,
            window_seconds: 60
        })
    );
    assert!(parse_rate_limit(&json!({"limit": 1.5, "window_seconds": 60}), "x").is_err());
}

#[test]
fn failed_credentials_block_an_address_for_the_rest_of_its_window() {
    let mut l = Limiter::default();
    let scope = auth_failure_scope("203.0.113.7");
    let start = 1_800_000_000_000 / 300_000 * 300_000;
    for i in 0..AUTH_FAILURES.limit {
        let v = auth_attempt(&mut l, &scope, AUTH_FAILURES, true, start + u64::from(i));
        assert!(v.allowed, "failure {i} is only counted");
    }
    // Spent: every further check is refused, failing or not, and counts nothing.
    let blocked = auth_attempt(&mut l, &scope, AUTH_FAILURES, false, start + 1_000);
    assert!(!blocked.allowed);
    assert_eq!(blocked.reset_seconds, 299);
    assert!(!auth_attempt(&mut l, &scope, AUTH_FAILURES, true, start + 2_000).allowed);
    assert_eq!(l.window(&scope).unwrap().count, AUTH_FAILURES.limit);
    // Other addresses are not affected; the next window starts afresh.
    assert!(
        auth_attempt(
            &mut l,
            &auth_failure_scope("203.0.113.8"),
            AUTH_FAILURES,
            false,
            start
        )
        .allowed
    );
    assert!(auth_attempt(&mut l, &scope, AUTH_FAILURES, false, start + 300_000).allowed);
    // Looking never counts.
    let mut fresh = Limiter::default();
    for _ in 0..100 {
        assert!(auth_attempt(&mut fresh, &scope, AUTH_FAILURES, false, start).allowed);
    }
    assert!(fresh.is_empty());
}

#[test]
fn an_ipv6_address_is_throttled_by_its_64() {
    assert_eq!(auth_failure_scope("203.0.113.7"), "authfail:203.0.113.7");
    assert_eq!(
        auth_failure_scope("2001:db8:1:2:aaaa::1"),
        auth_failure_scope("2001:db8:1:2:ffff:1:2:3")
    );
    assert_eq!(
        auth_failure_scope("2001:db8:1:2::9"),
        "authfail:2001:db8:1:2::/64"
    );
    assert_ne!(
        auth_failure_scope("2001:db8:1:2::1"),
        auth_failure_scope("2001:db8:1:3::1")
    );
    assert_eq!(auth_failure_scope("::ffff:192.0.2.1"), "authfail:192.0.2.1");
}

#[test]
fn every_rate_limiter_request_and_answer_round_trips_through_serde() {
    let limit = RateLimit {
        limit: 5,
        window_seconds: 60,
    };
    let response = StoredResponse {
        status: 201,
        body: "{}".into(),
        headers: vec![("Location".into(), "/v1/calls/call_1".into())],
    };
    let requests = [
        RateLimiterRequest::Admit {
            admission: Admission {
                checks: vec![check("key:k1", 5, 60)],
                idempotency: Some(IdemRequest {
                    key: "idem-1".into(),
                    fingerprint: "f".into(),
                }),
                signature: Some(SignatureUse {
                    key: "sig:1".into(),
                    until_ms: 9,
                }),
            },
        },
        RateLimiterRequest::Complete {
            key: "idem-1".into(),
            response: response.clone(),
        },
        RateLimiterRequest::Release {
            key: "idem-1".into(),
        },
        RateLimiterRequest::AuthAttempt {
            scope: format!("{AUTH_FAILURE_PREFIX}203.0.113.9"),
            limit,
            failed: true,
        },
    ];
    for request in requests {
        let text = serde_json::to_string(&request).unwrap();
        let back: RateLimiterRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, request, "{text}");
    }
    let verdict = RateVerdict {
        allowed: true,
        scope: "key:k1".into(),
        limit: 5,
        remaining: 4,
        reset_seconds: 60,
    };
    let answers = [
        RateLimiterAnswer::Admitted {
            admitted: Admitted {
                rate: verdict.clone(),
                idempotency: IdemVerdict::Replay { response },
                replayed: false,
            },
        },
        RateLimiterAnswer::Done,
        RateLimiterAnswer::AuthAttempt { verdict },
    ];
    for answer in answers {
        let text = serde_json::to_string(&answer).unwrap();
        let back: RateLimiterAnswer = serde_json::from_str(&text).unwrap();
        assert_eq!(back, answer, "{text}");
    }
    // The tag names the operation, as the object's log shows it.
    assert_eq!(
        serde_json::to_value(RateLimiterRequest::Release { key: "k".into() }).unwrap(),
        json!({"op": "release", "key": "k"})
    );
}
