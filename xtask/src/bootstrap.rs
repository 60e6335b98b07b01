//! Installs what a fresh Debian 12 machine lacks, idempotently: the wasm32
//! targets (the Worker's, and wasip1 for the CPU bench), pinned worker-build and wasm-bindgen-cli in `.tools/`, the npm
//! packages of package-lock.json (wrangler, binaryen), and apt packages.
//! Each check is cheap, so a warm run takes about a second.

use crate::{root, run};
use std::path::PathBuf;
use std::process::Command;

/// Pinned together: wasm-bindgen CLI must equal the library in Cargo.lock.
const WORKER_BUILD_VERSION: &str = "0.8.7";
const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// Debian packages the test suites need: caddy terminates QUIC/HTTP/3 in
/// front of `wrangler dev`, as Cloudflare does in production; python3-venv
/// for the webhook suite's receiver (below); sip-tester (sipp) as SIP trunk/callee,
/// kamailio with its TLS module as the TLS front of SIP-over-TLS tests;
/// libopus-dev + pkg-config for audiopus (Opus); baresip-core (a real SIP
/// phone) and flite (its synthetic speech) as the telephony suite's callee.
pub const APT_PACKAGES: &[&str] = &[
    "caddy",
    "python3-venv",
    "sip-tester",
    // The TLS front of the SIP-over-TLS tests (media-sidecar/tests/sip_streams.rs):
    // Debian's sipp is built without TLS.
    "kamailio",
    "kamailio-tls-modules",
    "libopus-dev",
    "pkg-config",
    "baresip-core",
    "flite",
    // The local engine links pocketsphinx (STT, with its en-us model) and flite (TTS).
    "libpocketsphinx-dev",
    "pocketsphinx-en-us",
    "flite1-dev",
    // `cargo xtask bench` draws its plots' text with DejaVu Sans (no fontconfig needed).
    "fonts-dejavu-core",
    // The name server of the sidecar's trunk DNS tests (NAPTR/SRV/A, media-sidecar/tests/sip_sipp.rs);
    // the program alone, without the system service of the `dnsmasq` package.
    "dnsmasq-base",
    // The console's e2e (tests/console.rs): headless Chromium driven by Selenium through chromedriver.
    "chromium",
    "chromium-driver",
    "python3-selenium",
];
/// The reference Standard Webhooks library the webhook e2e receiver
/// (tests/webhooks/receiver.py) verifies deliveries with, unmodified.
const STANDARDWEBHOOKS_VERSION: &str = "1.1.0";
/// The wasm engine `cargo xtask bench` runs the edge's CPU bench in
/// (edge/bench-wasm/run_wasmtime.py): wasmtime's Python embedding, whose
/// wheel ships the runtime, so no cargo install of wasmtime-cli.
pub const WASMTIME_PY_VERSION: &str = "50.0.1";
/// The schema-driven API fuzzer the `api_fuzz` e2e suite runs against
/// `wrangler dev` from the edge's own OpenAPI document (tests/api_fuzz.rs).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// The HTTP client the seed documents' own Python samples use (the dialect
/// suite runs them as written, tests/dialects.rs); also a schemathesis dependency.
const REQUESTS_VERSION: &str = "2.34.2";
/// The e2e suites' local SMTP sink (tests/mail/smtp_sink.py) for transcript emails.
const AIOSMTPD_VERSION: &str = "1.4.6";
/// CodeB's documented webhook verifier sample is a Flask app (issue 14's e2e).
const FLASK_VERSION: &str = "3.1.3";
/// Rust targets: the Worker's, and WASI for the CPU bench (edge/bench-wasm).
const RUST_TARGETS: &[&str] = &["wasm32-unknown-unknown", "wasm32-wasip1"];

pub fn tools_dir() -> PathBuf {
    root().join(".tools")
}

pub fn tools_bin() -> PathBuf {
    tools_dir().join("bin")
}

pub fn ensure_all() -> Result<(), String> {
    ensure_wasm_targets()?;
    ensure_cargo_tool("worker-build", "worker-build", WORKER_BUILD_VERSION, true)?;
    // Without --locked: its lockfile pins a webpki-roots the registry no longer serves.
    ensure_cargo_tool(
        "wasm-bindgen-cli",
        "wasm-bindgen",
        WASM_BINDGEN_VERSION,
        false,
    )?;
    ensure_npm()?;
    ensure_apt(APT_PACKAGES)?;
    ensure_venv()
}

pub fn venv_python() -> PathBuf {
    tools_dir().join("venv/bin/python")
}

/// `.tools/venv` with the pinned `standardwebhooks`, `wasmtime`, `schemathesis`,
/// `requests`, `aiosmtpd` and `flask` from PyPI.
fn ensure_venv() -> Result<(), String> {
    let venv = tools_dir().join("venv");
    let python = venv_python();
    let pins = [
        ("standardwebhooks", STANDARDWEBHOOKS_VERSION),
        ("wasmtime", WASMTIME_PY_VERSION),
        ("schemathesis", SCHEMATHESIS_VERSION),
        ("requests", REQUESTS_VERSION),
        ("aiosmtpd", AIOSMTPD_VERSION),
        ("flask", FLASK_VERSION),
    ];
    let probe = "import importlib.metadata as m, sys\nfor p in sys.argv[1:]:\n    try: print(m.version(p))\n    except Exception: print('-')";
    let have = output(
        Command::new(&python)
            .args(["-c", probe])
            .args(pins.iter().map(|p| p.0)),
    )
    .unwrap_or_default();
    let have: Vec<&str> = have.lines().map(str::trim).collect();
    let wanted: Vec<&str> = pins.iter().map(|p| p.1).collect();
    let shown = pins
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if have == wanted {
        println!("  python venv ({shown}): present");
        return Ok(());
    }
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(pins.iter().map(|(n, v)| format!("{n}=={v}"))))
}

fn output(cmd: &mut Command) -> Option<String> {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn ensure_wasm_targets() -> Result<(), String> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    let missing: Vec<&str> = RUST_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        println!("  rust targets ({}): present", RUST_TARGETS.join(", "));
        return Ok(());
    }
    run(Command::new("rustup")
        .args(["target", "add"])
        .args(&missing))
}

fn ensure_cargo_tool(krate: &str, bin: &str, version: &str, locked: bool) -> Result<(), String> {
    let path = tools_bin().join(bin);
    let current = output(Command::new(&path).arg("--version")).unwrap_or_default();
    if current
        .split_whitespace()
        .any(|w| w.trim_start_matches('v') == version)
    {
        println!("  {bin} {version}: present");
        return Ok(());
    }
    println!("  {bin} {version}: installing into .tools (several minutes on a cold machine)");
    let mut cmd = Command::new("cargo");
    cmd.args(["install", krate, "--version", version, "--root"])
        .arg(tools_dir());
    if locked {
        cmd.arg("--locked");
    }
    // A separate target dir keeps the workspace's build cache out of it.
    cmd.env("CARGO_TARGET_DIR", tools_dir().join("target"));
    run(&mut cmd)
}

/// `npm ci` when node_modules does not match package-lock.json.
fn ensure_npm() -> Result<(), String> {
    let lock = root().join("package-lock.json");
    let stamp = root().join("node_modules/.voxline-package-lock.json");
    let want = std::fs::read(&lock).map_err(|e| format!("read package-lock.json: {e}"))?;
    let have_bins = root().join("node_modules/.bin/wrangler").exists()
        && root().join("node_modules/.bin/wasm-opt").exists();
    if have_bins && std::fs::read(&stamp).ok().as_deref() == Some(want.as_slice()) {
        println!("  npm packages (wrangler, binaryen): present");
        return Ok(());
    }
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]))?;
    std::fs::write(&stamp, want).map_err(|e| format!("write npm stamp: {e}"))
}

fn ensure_apt(packages: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        if !packages.is_empty() {
            println!("  apt packages ({}): present", packages.join(", "));
        }
        return Ok(());
    }
    let sudo = output(Command::new("id").arg("-u")).is_some_and(|u| u.trim() != "0");
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}
