//! End-to-end: schemathesis (PyPI, pinned in `.tools/venv` by `cargo xtask
//! bootstrap`) fuzzes the live edge from its own OpenAPI document.
//!
//! Every operation of `GET /v1/openapi.json` is driven by schema-derived data,
//! valid and invalid, in all four phases (examples, coverage, fuzzing,
//! stateful) with every check schemathesis has (`--checks all`): no 5xx,
//! documented statuses, content types, headers and bodies, invalid data
//! refused, valid data accepted, auth not ignored, deleted resources gone. A
//! single failure of any check fails the case. The one adjustment, a check
//! of our own in `tests/schemathesis/hooks.py`, is explained there: a
//! schema-valid request may be refused only for the few reasons no schema can
//! state (an id that does not exist, a time in the past, ...), each named.
//!
//! The seed is fixed so CI is repeatable; `VOXLINE_API_FUZZ_SEED=<n>` and
//! `VOXLINE_API_FUZZ_EXAMPLES=<n>` explore further by hand.

use std::path::PathBuf;
use std::process::Command;
use voxline_e2e::*;

struct Ctx {
    edge: Edge,
    tenant: TestTenant,
    dir: PathBuf,
}

impl SuiteContext for Ctx {
    fn diagnostics(&self) -> String {
        self.edge.log_tail(40)
    }
}

fn schemathesis_bin() -> PathBuf {
    repo_root().join(".tools/venv/bin/schemathesis")
}

fn setup() -> Result<Ctx, String> {
    if !schemathesis_bin().exists() {
        return Err(format!(
            "{} is missing: run `cargo xtask bootstrap`",
            schemathesis_bin().display()
        ));
    }
    let opts = EdgeOptions::fresh("api_fuzz");
    let dir = opts
        .log_path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let edge = Edge::start(opts)?;
    let tenant = edge.provision_tenant("api-fuzz");
    // Thousands of requests in a minute: the rate limits are not under test here.
    let big = json!({"limit": 1_000_000, "window_seconds": 60});
    edge.admin(
        "PATCH",
        &format!("/admin/tenants/{}", tenant.id),
        Some(&json!({"rate_limits": {"per_key": big, "per_ip": big, "per_number": big}})),
    )
    .expect(200);
    Ok(Ctx { edge, tenant, dir })
}

/// Runs schemathesis on the operations whose path matches `paths`, with
/// `token` as the bearer; Err with the failures section when any check failed.
fn schemathesis(ctx: &Ctx, name: &str, paths: &str, token: &str, examples: u32) {
    let seed = std::env::var("VOXLINE_API_FUZZ_SEED").unwrap_or_else(|_| "20261203".into());
    let examples = std::env::var("VOXLINE_API_FUZZ_EXAMPLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(examples);
    let hooks = repo_root().join("tests/schemathesis/hooks.py");
    // Known ids, so path parameters reach real objects and not only 404s.
    let config = format!(
        "# written by tests/api_fuzz.rs\n\
         hooks = {hooks:?}\n\
         [checks.positive_data_acceptance]\n\
         # 400/422 to schema-valid data are judged by hooks.py's `semantic_rejections_only`.\n\
         expected-statuses = [\"2xx\", \"3xx\", \"400\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\", \"5xx\"]\n\
         [checks.negative_data_rejection]\n\
         # A schema-violating body over the size limit is refused as too large (413, documented).\n\
         expected-statuses = [\"400\", \"401\", \"403\", \"404\", \"405\", \"406\", \"409\", \"413\", \"415\", \"422\", \"428\", \"429\", \"5xx\"]\n\
         [parameters]\n\
         tenant_id = {tenant:?}\n\
         agent_id = {agent:?}\n\
         key_id = {key:?}\n",
        hooks = hooks.display().to_string(),
        tenant = ctx.tenant.id,
        agent = ctx.tenant.agent_id,
        key = ctx.tenant.key_id,
    );
    let config_path = ctx.dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).expect("write schemathesis config");
    let log_path = ctx.dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).expect("create schemathesis log");
    let started = std::time::Instant::now();
    let status = Command::new(schemathesis_bin())
        .arg("--config-file")
        .arg(&config_path)
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/v1/openapi.json", ctx.edge.base))
        .args(["--include-path-regex", paths])
        // Deleting the fixture agent (a known `agent_id`) would turn the rest of
        // the run into 404s; DELETE agent is covered natively and end to end.
        .args(["--exclude-operation-id", "deleteAgent"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed])
        // One worker: CPython 3.11's AST constructor keeps its recursion depth in shared
        // state, and hypothesis parsing lambdas in two threads at once fails at random
        // with "AST constructor recursion depth mismatch" (python/cpython#106905).
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--output-truncate", "false"])
        .current_dir(&ctx.dir)
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .status()
        .expect("run schemathesis");
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    let summary: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains("generated,")
                || l.contains(" passed")
                || l.contains("failed")
                || l.contains("Selected:")
        })
        .collect();
    println!(
        "  schemathesis {name} (seed {seed}, {examples} examples per operation, {:.0} s):\n    {}",
        started.elapsed().as_secs_f64(),
        summary.join("\n    ")
    );
    if !status.success() {
        let failures = out.find("FAILURES").map(|i| &out[i..]).unwrap_or(&out);
        let shown: String = failures.chars().take(12_000).collect();
        panic!(
            "schemathesis found failures ({status}); full log: {}\n{shown}",
            log_path.display()
        );
    }
}

fn v1_operations(ctx: &Ctx) {
    // Not Calldock's `/v1/make-call`: a dialect, with its own credentials (tests/dialects.rs).
    // The console's page and assets (no credentials) with them.
    schemathesis(
        ctx,
        "v1",
        "^/(v1/(?!make-call$)|healthz|console)",
        &ctx.tenant.key,
        60,
    );
}

/// After the /v1 case: admin operations may disable the tenant or revoke its key.
fn admin_operations(ctx: &Ctx) {
    schemathesis(ctx, "admin", "^/admin", &ctx.edge.admin_token, 40);
}

fn main() -> std::process::ExitCode {
    run_suite(
        "api_fuzz",
        setup,
        &[
            ("v1_operations", v1_operations),
            ("admin_operations", admin_operations),
        ],
    )
}
