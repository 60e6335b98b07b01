//! End-to-end: the public call API and the admin API against real `wrangler dev`.
use voxline_e2e::*;

fn health(edge: &Edge) {
    let r = edge.request("GET", "/healthz", &[], None).unwrap().expect(200);
    assert_eq!(r.json, json!({"ok": true}));
}

fn main() -> std::process::ExitCode {
    run_suite("edge_api", || Edge::start(EdgeOptions::fresh("edge_api")), &[("health", health)])
}
