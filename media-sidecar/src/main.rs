//! `voxline-media-sidecar`: see `--help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use voxline_media_sidecar::call_task::CallMode;
use voxline_media_sidecar::config::Config;
use voxline_media_sidecar::lease::driver::{run, RunOptions, Stop};
use voxline_media_sidecar::transport::{AnyTransport, Transport};

const HELP: &str = "\
voxline-media-sidecar: leases calls from the voxline edge and runs them.

USAGE:
    voxline-media-sidecar [--config PATH] [--simulate-answer[=SECONDS]] [--check-config]

OPTIONS:
    --config PATH         TOML config file (default: $VOXLINE_SIDECAR_CONFIG; optional
                          when the environment sets everything)
    --check-config        Check the configuration and name every problem found; exit 0
                          (and print it, secrets redacted) or 1. Starts nothing
    --simulate-answer[=S] DEV/TEST AID ONLY (no SIP): every call
                          pretends to ring, be answered, and end after S seconds
                          (default 5, fractions allowed) as completed/agent_hangup.
                          No phone is called. Never use it in production.
    --drain-timeout S     On SIGINT/SIGTERM, wait up to S seconds (default 30) for held
                          calls to end; a second signal exits at once
    -h, --help            This text
    -V, --version         The version

CONFIG (file keys; each overridable by the environment variable shown):
    edge_url       VOXLINE_EDGE_URL        http://, https:// or https+h3://
    sidecar_id     VOXLINE_SIDECAR_ID
    region         VOXLINE_REGION
    secret         VOXLINE_SIDECAR_SECRET
    capacity       VOXLINE_CAPACITY        concurrent calls
    transport      VOXLINE_TRANSPORT       \"h3\" | \"http1\" (default: h3 for https+h3://, else http1)
    ca_cert        VOXLINE_CA_CERT         PEM CA to trust instead of the system store
    lease_wait_ms  VOXLINE_LEASE_WAIT_MS   long-poll wait until the edge sets it
    [metrics] listen VOXLINE_METRICS_LISTEN  IP:port (a bare port: loopback) for GET /metrics
                                           and GET /healthz; off when unset

SIGNALS: SIGINT/SIGTERM drain and stop (see --drain-timeout). SIGHUP reloads the
trunks and limits ([telephony] trunks, ring/failover timeouts, redirects, codecs;
capacity) from the config file: new calls use them, calls in progress keep theirs.
A config with problems is refused whole (they are logged) and the old one stays.

EXIT STATUS: 0 after a clean stop (nothing held or undelivered), 2 for a bad
configuration, 3 when calls or events were abandoned (drain timeout, second signal).
With --check-config: 0 when the configuration is good, 1 when it is not.

LOGS: stderr; filter with VOXLINE_LOG (or RUST_LOG), e.g. `debug` or
`voxline_media_sidecar=debug,info`. Default `info`.
";

struct Args {
    config: Option<PathBuf>,
    check: bool,
    simulate: Option<Duration>,
    drain_timeout: Duration,
}

fn parse_secs(s: &str, what: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{what}: `{s}` is not a number of seconds"))?;
    if !(v.is_finite() && (0.0..=86_400.0).contains(&v)) {
        return Err(format!("{what}: `{s}` is not in 0..=86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        config: None,
        check: false,
        simulate: None,
        drain_timeout: Duration::from_secs(30),
    };
    let mut it = std::env::args().skip(1).peekable();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("voxline-media-sidecar {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--config" => a.config = Some(it.next().ok_or("--config needs a path")?.into()),
            "--check-config" => a.check = true,
            "--simulate-answer" => {
                // An optional value: taken only if the next argument is a number.
                let secs = match it.peek().filter(|n| n.parse::<f64>().is_ok()) {
                    Some(_) => parse_secs(&it.next().unwrap(), "--simulate-answer")?,
                    None => Duration::from_secs(5),
                };
                a.simulate = Some(secs);
            }
            "--drain-timeout" => {
                a.drain_timeout = parse_secs(
                    &it.next().ok_or("--drain-timeout needs seconds")?,
                    "--drain-timeout",
                )?
            }
            other => {
                if let Some(v) = other.strip_prefix("--config=") {
                    a.config = Some(v.into());
                } else if let Some(v) = other.strip_prefix("--simulate-answer=") {
                    a.simulate = Some(parse_secs(v, "--simulate-answer")?);
                } else if let Some(v) = other.strip_prefix("--drain-timeout=") {
                    a.drain_timeout = parse_secs(v, "--drain-timeout")?;
                } else {
                    return Err(format!("unknown argument `{other}` (see --help)"));
                }
            }
        }
    }
    if a.config.is_none() {
        a.config = std::env::var_os("VOXLINE_SIDECAR_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
    }
    Ok(Some(a))
}

fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let spec = std::env::var("VOXLINE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter: tracing_subscriber::filter::Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("bad log filter `{spec}` ({e}); using `info`");
        "info".parse().expect("a valid filter")
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxline-media-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        return check_config(args.config.as_deref());
    }
    let mut cfg = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("voxline-media-sidecar: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // Recordings always have a spool (uploads resume from it after a restart).
    let spool = voxline_media_sidecar::recordings::spool_dir(
        cfg.telephony.recordings_dir.as_deref(),
        &cfg.sidecar_id,
    );
    // Private (0700, not a symlink): recordings are the callee's voice.
    let made = spool
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| voxline_media_sidecar::event_spool::private_dir(&spool));
    if let Err(e) = made {
        eprintln!(
            "voxline-media-sidecar: cannot use the recordings directory {}: {e}",
            spool.display()
        );
        return ExitCode::from(2);
    }
    // Unacknowledged events beside it (0700), so a crash cannot lose a call's end.
    let events_dir = voxline_media_sidecar::event_spool::spool_dir(&spool);
    if let Err(e) = voxline_media_sidecar::event_spool::EventSpool::open(&events_dir) {
        eprintln!(
            "voxline-media-sidecar: cannot use the event spool {}: {e}",
            events_dir.display()
        );
        return ExitCode::from(2);
    }
    cfg.telephony.recordings_dir = Some(spool);
    init_logs();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxline-media-sidecar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // First: SIGHUP's default action would end the process.
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let metrics = voxline_media_sidecar::metrics::global();
        if let Some(addr) = cfg.metrics_listen {
            match voxline_media_sidecar::metrics::server::start(addr, metrics).await {
                Ok(local) => tracing::info!(%local, "metrics on http://{local}/metrics and /healthz"),
                Err(e) => {
                    eprintln!("voxline-media-sidecar: cannot serve metrics on {addr}: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        let transport = match AnyTransport::from_config(&cfg) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                eprintln!("voxline-media-sidecar: cannot set up the {} transport: {e}", cfg.transport.as_str());
                return ExitCode::from(2);
            }
        };
        if let Some(d) = args.simulate {
            tracing::warn!(talk = ?d, "--simulate-answer: calls are SIMULATED (dev/test aid); no phone is dialled");
        }
        tracing::info!(edge = %cfg.edge.url(""), transport = transport.name(), "edge link");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(Stop::Run);
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let mut n = 0;
            loop {
                let term_fut = async {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term_fut => {}
                }
                n += 1;
                let _ = stop_tx.send(if n == 1 { Stop::Drain } else { Stop::Now });
            }
        });
        use voxline_media_sidecar::metrics::SipState;
        let dials = args.simulate.is_none() && !cfg.telephony.trunks.is_empty();
        metrics.health.set_sip(if dials { SipState::NotBound } else { SipState::NotUsed });
        let mode = match args.simulate {
            Some(talk) => CallMode::SimulateAnswer(talk),
            None if cfg.telephony.trunks.is_empty() => {
                tracing::warn!("no [[telephony.trunks]] configured: calls are accepted but not dialled");
                CallMode::Placeholder
            }
            None => match voxline_media_sidecar::telephony::Telephony::start(&cfg.telephony, cfg.engine_allowed_hosts.clone()).await {
                Ok(tel) => {
                    metrics.health.set_sip(SipState::Bound);
                    CallMode::Sip(Arc::new(tel))
                }
                Err(e) => {
                    eprintln!("voxline-media-sidecar: telephony: {e}");
                    return ExitCode::from(2);
                }
            },
        };
        let (capacity_tx, capacity_rx) = tokio::sync::watch::channel(cfg.capacity);
        if let Some(mut hangups) = hangups.take() {
            let telephony = match &mode {
                CallMode::Sip(tel) => Some(tel.clone()),
                _ => None,
            };
            let (path, start) = (args.config.clone(), cfg.clone());
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let ok = reload(path.as_deref(), &start, telephony.as_deref(), &capacity_tx).await;
                    metrics.reloaded(ok);
                }
            });
        }
        let opts = RunOptions {
            mode,
            capacity_updates: Some(capacity_rx),
            drain_timeout: args.drain_timeout,
            recordings_dir: cfg.telephony.recordings_dir.clone(),
            events_dir: Some(events_dir),
            ..RunOptions::default()
        };
        let summary =
            run(transport, voxline_media_sidecar::lease_settings(&cfg), cfg.secret.clone(), opts, stop_rx).await;
        if let Some(why) = summary.halted {
            // A configuration or version mismatch: restarting as is cannot help.
            eprintln!("voxline-media-sidecar: the edge refused the link: {why}");
            return ExitCode::from(2);
        }
        if summary.clean_exit {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        }
    })
}

/// `--check-config`: every problem at once, nothing started or created.
fn check_config(path: Option<&std::path::Path>) -> ExitCode {
    match Config::check(path) {
        Ok(cfg) => {
            println!("{cfg:#?}");
            println!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            let n = problems.len();
            eprintln!(
                "voxline-media-sidecar: the configuration has {n} problem{}:",
                if n == 1 { "" } else { "s" }
            );
            for p in problems {
                eprintln!("  - {p}");
            }
            ExitCode::from(1)
        }
    }
}

/// SIGHUP: reads the config again and applies what can change while calls
/// run (trunks and limits). A config with problems changes nothing.
async fn reload(
    path: Option<&std::path::Path>,
    start: &Config,
    telephony: Option<&voxline_media_sidecar::telephony::Telephony>,
    capacity: &tokio::sync::watch::Sender<u32>,
) -> bool {
    tracing::info!("SIGHUP: reloading trunks and limits");
    let new = match Config::check(path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                tracing::error!(problem = %p, "reload refused: the configuration has problems");
            }
            return false;
        }
    };
    let restart_only = [
        ("edge_url", new.edge != start.edge),
        ("sidecar_id", new.sidecar_id != start.sidecar_id),
        ("region", new.region != start.region),
        ("secret", new.secret != start.secret),
        ("transport", new.transport != start.transport),
        ("ca_cert", new.ca_cert != start.ca_cert),
        ("lease_wait_ms", new.lease_wait_ms != start.lease_wait_ms),
        ("metrics.listen", new.metrics_listen != start.metrics_listen),
        (
            "engine.allowed_hosts",
            new.engine_allowed_hosts != start.engine_allowed_hosts,
        ),
    ];
    for (key, _) in restart_only.iter().filter(|(_, changed)| *changed) {
        tracing::warn!(
            key,
            "changed in the config, but applies only after a restart"
        );
    }
    match telephony {
        Some(tel) => match tel.reload(&new.telephony).await {
            Ok(kept) => {
                for key in kept {
                    tracing::warn!(key = %format!("telephony.{key}"), "changed in the config, but applies only after a restart");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused: trunks unchanged");
                return false;
            }
        },
        None if !new.telephony.trunks.is_empty() => {
            tracing::warn!("trunks configured, but this sidecar started without SIP: they apply after a restart")
        }
        None => {}
    }
    capacity.send_replace(new.capacity);
    tracing::info!(capacity = new.capacity, "reload applied");
    true
}
