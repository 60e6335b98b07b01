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
    --check-config        Validate the configuration, print it (secret redacted), exit
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

EXIT STATUS: 0 after a clean stop (nothing held or undelivered), 2 for a bad
configuration, 3 when calls or events were abandoned (drain timeout, second signal).

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
    if args.check {
        println!("{cfg:#?}");
        return ExitCode::SUCCESS;
    }
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
        let mode = match args.simulate {
            Some(talk) => CallMode::SimulateAnswer(talk),
            None if cfg.telephony.trunks.is_empty() => {
                tracing::warn!("no [[telephony.trunks]] configured: calls are accepted but not dialled");
                CallMode::Placeholder
            }
            None => match voxline_media_sidecar::telephony::Telephony::start(&cfg.telephony, cfg.engine_allowed_hosts.clone()).await {
                Ok(tel) => CallMode::Sip(Arc::new(tel)),
                Err(e) => {
                    eprintln!("voxline-media-sidecar: telephony: {e}");
                    return ExitCode::from(2);
                }
            },
        };
        let opts = RunOptions {
            mode,
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
