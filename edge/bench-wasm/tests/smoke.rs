//! Keeps the CPU bench from rotting: a few iterations natively, every one a
//! created call with a queued, signed webhook event (run() asserts both).

#[test]
fn ten_requests_run_and_report() {
    let report = voxline_edge_bench::run(10, 2, 2);
    assert_eq!(report.rounds.len(), 2);
    let json = report.to_json();
    assert_eq!(json["iterations"], 10);
    let ns = json["ns_per_request"].as_f64().unwrap();
    assert!(ns > 0.0 && ns.is_finite(), "{json}");
    assert!(json["p50_ns_per_request"].as_f64().unwrap() > 0.0, "{json}");
    assert!(json["sign_ns"].as_f64().unwrap() > 0.0, "{json}");
}

#[test]
fn password_verification_is_measured() {
    let json = voxline_edge_bench::password_verify(1);
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.iter().any(|c| c["shipped"] == true), "{json}");
    assert!(
        cases.iter().all(|c| c["p50_ns"].as_f64().unwrap() > 0.0),
        "{json}"
    );
}
