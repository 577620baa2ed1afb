//! `sluice`: run a pipeline file, validate one, or use the bundled tools.

use clap::{Parser, Subcommand};
use sluice::app::{App, ConfigSource};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Telemetry collector: OTLP and AWF events in, Mimir/Loki/Tempo out, nothing lost"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Pipeline file: TOML, or Alloy syntax (`.alloy`/`.river`, docs/alloy.md). Without one,
    /// the built-in default (configs/dev.toml) runs.
    file: Option<PathBuf>,
    /// Same as the positional FILE.
    #[arg(long = "config", conflicts_with = "file")]
    config: Option<PathBuf>,
    /// Admin HTTP server (/-/ready, /-/healthy, /-/reload, /metrics).
    #[arg(
        long = "server.http.listen-addr",
        default_value = "127.0.0.1:12345",
        env = "SLUICE_HTTP_LISTEN_ADDR"
    )]
    listen_addr: SocketAddr,
    /// Serve the watcher's webhooks and approvals on this address instead of the admin
    /// server, so Grafana/Alertmanager can reach them without reaching `/-/reload` and the
    /// rest of the admin API (docs/deploying-with-grafana.md).
    #[arg(
        long = "server.webhooks.listen-addr",
        env = "SLUICE_WEBHOOKS_LISTEN_ADDR"
    )]
    webhooks_addr: Option<SocketAddr>,
    #[command(flatten)]
    admin_tls: ListenerTlsArgs<AdminListener>,
    #[command(flatten)]
    webhooks_tls: ListenerTlsArgs<WebhooksListener>,
    /// File holding the admin token: with one (or `SLUICE_ADMIN_TOKEN` set), `/-/reload` and
    /// the API's writes need `Authorization: Bearer <token>`.
    #[arg(long = "server.http.admin-token-file", env = "SLUICE_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Where spools live. Data acknowledged to clients stays here until delivered.
    #[arg(
        long = "storage.path",
        default_value = "data-sluice",
        env = "SLUICE_STORAGE_PATH"
    )]
    storage_path: PathBuf,
    /// How long SIGTERM may spend delivering spooled data before leaving it for the next start.
    #[arg(long = "shutdown.timeout", default_value = "30s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Alloy's flag, accepted so Alloy's command line works: Sluice's components have no
    /// stability levels, so every level runs everything (docs/alloy.md).
    #[arg(
        long = "stability.level",
        default_value = "generally-available",
        value_parser = ["experimental", "public-preview", "generally-available"]
    )]
    stability_level: String,
    /// Alloy's flag, accepted so Alloy's command line works: Sluice sends no usage reports.
    #[arg(
        long = "disable-reporting",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::value_parser!(bool)
    )]
    disable_reporting: Option<bool>,
    #[command(flatten)]
    log: LogArgs,
}

/// The `--server.<listener>.tls.*` flags of one listener, named by `L`.
#[derive(clap::Args)]
// Flattened once per listener: clap's default group, named after the struct, would clash.
#[group(skip)]
struct ListenerTlsArgs<L: TlsListener> {
    /// Serve over TLS with this PEM certificate chain (with the key-file flag).
    #[arg(id = L::CERT, long = L::CERT, value_name = "FILE", alias = L::CERT_ALIAS, env = L::CERT_ENV)]
    cert_file: Option<PathBuf>,
    /// PEM private key of the cert-file flag.
    #[arg(id = L::KEY, long = L::KEY, value_name = "FILE", alias = L::KEY_ALIAS, env = L::KEY_ENV)]
    key_file: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate one of them signed (mTLS).
    #[arg(id = L::CLIENT_CA, long = L::CLIENT_CA, value_name = "FILE", alias = L::CLIENT_CA_ALIAS, env = L::CLIENT_CA_ENV)]
    client_ca_file: Option<PathBuf>,
    #[arg(skip)]
    listener: std::marker::PhantomData<L>,
}

/// Names one listener's TLS flags (`server.<listener>.tls.*`, with the underscore spellings
/// as aliases) and environment variables.
trait TlsListener: Clone + Send + Sync + 'static {
    /// `<listener>` in the flags.
    const NAME: &'static str;
    const CERT: &'static str;
    const CERT_ALIAS: &'static str;
    const CERT_ENV: &'static str;
    const KEY: &'static str;
    const KEY_ALIAS: &'static str;
    const KEY_ENV: &'static str;
    const CLIENT_CA: &'static str;
    const CLIENT_CA_ALIAS: &'static str;
    const CLIENT_CA_ENV: &'static str;
}

macro_rules! tls_listener {
    ($type:ident, $name:literal, $env:literal) => {
        #[derive(Clone)]
        struct $type;
        impl TlsListener for $type {
            const NAME: &'static str = $name;
            const CERT: &'static str = concat!("server.", $name, ".tls.cert-file");
            const CERT_ALIAS: &'static str = concat!("server.", $name, ".tls.cert_file");
            const CERT_ENV: &'static str = concat!("SLUICE_", $env, "_TLS_CERT_FILE");
            const KEY: &'static str = concat!("server.", $name, ".tls.key-file");
            const KEY_ALIAS: &'static str = concat!("server.", $name, ".tls.key_file");
            const KEY_ENV: &'static str = concat!("SLUICE_", $env, "_TLS_KEY_FILE");
            const CLIENT_CA: &'static str = concat!("server.", $name, ".tls.client-ca-file");
            const CLIENT_CA_ALIAS: &'static str = concat!("server.", $name, ".tls.client_ca_file");
            const CLIENT_CA_ENV: &'static str = concat!("SLUICE_", $env, "_TLS_CLIENT_CA_FILE");
        }
    };
}
tls_listener!(AdminListener, "http", "HTTP");
tls_listener!(WebhooksListener, "webhooks", "WEBHOOKS");

#[derive(clap::Args)]
struct LogArgs {
    /// Log filter: error, warn, info (default), debug, trace, or per-module directives. An
    /// Alloy file's `logging { level }` applies when this is not given.
    #[arg(long = "log.level", env = "SLUICE_LOG")]
    level: Option<String>,
    /// `text` (default) or `json`. An Alloy file's `logging { format }` applies when not given.
    #[arg(long = "log.format", value_parser = ["text", "json"])]
    format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines of a config file.
    Run(Box<RunArgs>),
    /// Check config files without starting anything; exits non-zero with file:line: key: reason.
    /// A directory stands for its *.toml, *.alloy and *.river files. With several files, a
    /// live progress line on a terminal and a summary at the end.
    Validate {
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        files: Vec<PathBuf>,
    },
    /// Print the Sluice TOML equivalent of an Alloy config file (docs/alloy.md); with several
    /// files (or a directory: its *.alloy and *.river files), write each to --output-dir.
    Convert {
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        files: Vec<PathBuf>,
        /// Write `<name>.toml` here for each input instead of printing (needed for several).
        #[arg(short = 'o', long = "output-dir")]
        output_dir: Option<PathBuf>,
    },
    /// Items backends refused for good (docs/validation.md): list, show, replay, purge.
    DeadLetter(sluice::dead_letter::cli::Args),
    /// Send OTLP traces at a given rate and report throughput and latency.
    #[cfg(feature = "loadgen")]
    Loadgen(sluice_loadgen::loadgen::LoadgenArgs),
    /// An OTLP endpoint that accepts and counts everything (a backend for benchmarks).
    #[cfg(feature = "loadgen")]
    Sink(sluice_loadgen::sink::SinkArgs),
    /// Simulate AWF's API: executions listing, SSE event streams, faults, control endpoints.
    #[cfg(feature = "awf-sim")]
    AwfSim(AwfSimArgs),
}

#[cfg(feature = "awf-sim")]
#[derive(clap::Args)]
struct AwfSimArgs {
    /// Address of the simulated AWF API.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Seed of every random choice (same seed, same workflows).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Target events per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Simulated time runs this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Also POST every event to this push endpoint (e.g. http://127.0.0.1:4320/v1/awf/events).
    #[arg(long)]
    push_url: Option<String>,
    /// Stop starting executions after this many.
    #[arg(long)]
    max_executions: Option<u64>,
    #[command(flatten)]
    log: LogArgs,
}

use sluice_core::config::parse_duration;

fn init_logging(log: &LogArgs) {
    let level = log.level.as_deref().unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("invalid --log.level {level:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if log.format.as_deref() == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

// The exporters' translation allocates per series and label; glibc's allocator spent a third of
// their time (benches/RESULTS.md), mimalloc a fraction of it, and it returns memory promptly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::DeadLetter(args) => sluice::dead_letter::cli::run(args),
        Command::Validate { files } => validate(&files),
        Command::Convert { files, output_dir } => convert_files(&files, output_dir.as_deref()),
        #[cfg(feature = "awf-sim")]
        Command::AwfSim(args) => {
            init_logging(&args.log);
            let cfg = sluice_awf_sim::SimConfig {
                listen: args.listen,
                seed: args.seed,
                events_per_second: args.rate,
                speed: args.speed,
                push_url: args.push_url,
                max_executions: args.max_executions,
                ..Default::default()
            };
            if let Err(e) = cfg.validate() {
                eprintln!("awf-sim: {e}");
                return ExitCode::FAILURE;
            }
            println!(
                "AWF simulator on http://{} (GET /executions, /executions/{{id}}/events; POST /sim/faults)",
                cfg.listen
            );
            match runtime().and_then(|rt| {
                rt.block_on(sluice_awf_sim::run_simulator(cfg, tokio::signal::ctrl_c()))
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("awf-sim: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "loadgen")]
        Command::Sink(args) => {
            match runtime().and_then(|rt| rt.block_on(sluice_loadgen::sink::run(args))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sink: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "loadgen")]
        Command::Loadgen(args) => {
            match runtime().and_then(|rt| rt.block_on(sluice_loadgen::loadgen::run(args.clone()))) {
                Ok(report) => {
                    sluice_loadgen::loadgen::print(&report, args.json);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(mut args) => {
            if let Some(l) = args
                .config
                .as_ref()
                .or(args.file.as_ref())
                .and_then(|p| sluice::alloy::logging(p, &std::fs::read_to_string(p).ok()?))
            {
                args.log.level = args.log.level.or(l.level);
                let format = l
                    .format
                    .map(|f| if f == "logfmt" { "text".into() } else { f });
                args.log.format = args.log.format.or(format);
            }
            init_logging(&args.log);
            match runtime().and_then(|rt| rt.block_on(run(*args))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("sluice: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `sluice validate FILE_OR_DIR...`: each file's result as it is checked (progress in
/// `sluice::progress`); fails if any file does.
fn validate(args: &[PathBuf]) -> ExitCode {
    let files = match sluice::progress::expand_inputs(args, sluice::progress::CONFIG_FILES) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut progress =
        sluice::progress::FileProgress::stderr("validating", "validated", files.len());
    let mut failed = false;
    for file in &files {
        progress.begin(file);
        let result = sluice::config::load_file(file);
        progress.end(result.is_ok());
        match result {
            Ok(c) => println!(
                "{}: ok ({} receivers, {} processors, {} exporters, {} pipelines)",
                file.display(),
                c.receivers.len(),
                c.processors.len(),
                c.exporters.len(),
                c.pipelines.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    progress.finish();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `sluice convert FILE_OR_DIR... [--output-dir DIR]`: one file to stdout, or each to
/// `DIR/<name>.toml`; fails if any file does.
fn convert_files(args: &[PathBuf], output_dir: Option<&std::path::Path>) -> ExitCode {
    let files = match sluice::progress::expand_inputs(args, sluice::progress::ALLOY_FILES) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if files.len() > 1 && output_dir.is_none() {
        eprintln!(
            "{} files to convert: give --output-dir DIR to write each as DIR/<name>.toml",
            files.len()
        );
        return ExitCode::FAILURE;
    }
    let mut stems = std::collections::BTreeMap::new();
    for file in &files {
        if let Some(first) = stems.insert(file.file_stem(), file) {
            eprintln!(
                "{} and {} would both be written as {}.toml; convert them separately",
                first.display(),
                file.display(),
                file.file_stem().unwrap_or_default().to_string_lossy()
            );
            return ExitCode::FAILURE;
        }
    }
    if let Some(dir) = output_dir
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("--output-dir {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut progress =
        sluice::progress::FileProgress::stderr("converting", "converted", files.len());
    let mut failed = false;
    for file in &files {
        progress.begin(file);
        let result = convert(file);
        progress.end(result.is_ok());
        let written = result.and_then(|toml| match output_dir {
            None => {
                print!("{toml}");
                Ok(None)
            }
            Some(dir) => {
                let stem = file.file_stem().unwrap_or(file.as_os_str());
                let out = dir.join(stem).with_extension("toml");
                std::fs::write(&out, toml)
                    .map(|()| Some(out.clone()))
                    .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", out.display()))
            }
        });
        match written {
            Ok(Some(out)) => println!("{} -> {}", file.display(), out.display()),
            Ok(None) => {}
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    progress.finish();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One Alloy file as Sluice TOML, returned only when it also passes the checks `run` makes.
fn convert(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read config file: {e}", file.display()))?;
    if !sluice_alloy::is_alloy(file, &text) {
        anyhow::bail!(
            "{}: not Alloy syntax (expected .alloy/.river, or a file starting with a block); TOML needs no conversion",
            file.display()
        );
    }
    let env = |v: &str| std::env::var(v).ok();
    let converted = sluice::alloy::convert(file, &text, &env)?;
    sluice::alloy::parse(file, &text, &env)?;
    Ok(converted.toml)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    const ITEMS: &[f64] = &[
        1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 50000.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("items".into()), ITEMS)?
        .install_recorder()?;
    metrics::gauge!("sluice_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// The admin token from `file` (trimmed) or `SLUICE_ADMIN_TOKEN`; an empty one is an error.
fn admin_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let token = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    anyhow::anyhow!("--server.http.admin-token-file {}: {e}", path.display())
                })?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("SLUICE_ADMIN_TOKEN").ok(),
    };
    match token {
        Some(t) if t.is_empty() || axum::http::HeaderValue::from_str(&t).is_err() => Err(
            anyhow::anyhow!("the admin token is empty or does not fit in an HTTP header"),
        ),
        token => Ok(token),
    }
}

/// Server TLS for the admin or webhooks listener from its `--server.<listener>.tls.*` flags,
/// with the receivers' machinery (PEM files, optional client certificates); `None` without
/// flags. Errors name the flag and the file.
fn listener_tls<L: TlsListener>(
    flags: ListenerTlsArgs<L>,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let prefix = format!("--server.{}.", L::NAME);
    let ListenerTlsArgs {
        cert_file,
        key_file,
        client_ca_file,
        ..
    } = flags;
    match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) => {
            let config = sluice_http_server::ServerTlsConfig {
                cert_file,
                key_file,
                client_ca_file,
            };
            sluice_http_server::tls::acceptor(&config, &prefix, &[b"h2", b"http/1.1"]).map(Some)
        }
        (None, None) if client_ca_file.is_none() => Ok(None),
        _ => Err(anyhow::anyhow!(
            "{prefix}tls.cert-file and {prefix}tls.key-file must both be given (client-ca-file needs them too)"
        )),
    }
}

/// Serves `router` on `addr` with the shared listener limits (slow clients, connection cap).
fn serve_admin(
    flag: &str,
    name: &'static str,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
) -> anyhow::Result<()> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("{flag} {addr}: {e}"))?;
    let listener = sluice_http_server::Listener::new(
        listener,
        sluice_http_server::ConnectionLimits::default(),
        tls,
        sluice_http_server::Labels::new("admin", name),
    )
    .map_err(|e| anyhow::anyhow!("{flag} {addr}: {e}"))?;
    tokio::spawn(sluice_http_server::serve_http(
        listener,
        sluice_http_server::TowerToHyperService::new(router),
        std::future::pending(),
        Duration::from_secs(5),
    ));
    tracing::info!(%addr, "{name} server listening");
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let source = match args.config.or(args.file) {
        Some(p) => ConfigSource::File(p),
        None => ConfigSource::Embedded {
            name: "<built-in configs/dev.toml>",
            text: sluice::EMBEDDED_DEFAULT,
        },
    };
    tracing::debug!(
        stability_level = %args.stability_level,
        disable_reporting = ?args.disable_reporting,
        "Alloy flags accepted; they change nothing in Sluice (docs/alloy.md)"
    );
    let _lock = sluice::storage::lock(&args.storage_path)?;
    let metrics = install_metrics()?;
    let admin_token = admin_token(args.admin_token_file.as_deref())?;
    if admin_token.is_none() && !args.listen_addr.ip().is_loopback() {
        tracing::warn!(addr = %args.listen_addr, "the admin server is reachable from other hosts and /-/reload needs no token: set SLUICE_ADMIN_TOKEN or --server.http.admin-token-file");
    }
    let app = Arc::new(
        App::new(
            source,
            args.storage_path.clone(),
            args.shutdown_timeout,
            Some(metrics),
        )
        .with_admin_token(admin_token),
    );

    let admin_tls = listener_tls(args.admin_tls)?;
    let webhooks_tls = listener_tls(args.webhooks_tls)?;
    if webhooks_tls.is_some() && args.webhooks_addr.is_none() {
        anyhow::bail!("--server.webhooks.tls.* needs --server.webhooks.listen-addr");
    }
    let separate_webhooks = args.webhooks_addr.is_some();
    let admin = sluice::admin::admin_router(app.clone(), !separate_webhooks);
    serve_admin(
        "--server.http.listen-addr",
        "admin",
        args.listen_addr,
        admin_tls,
        admin,
    )?;
    if let Some(addr) = args.webhooks_addr {
        let webhooks = sluice::admin::webhooks_router(app.clone());
        serve_admin(
            "--server.webhooks.listen-addr",
            "webhooks",
            addr,
            webhooks_tls,
            webhooks,
        )?;
    }

    app.start().await?;
    // The banner is for the person at the terminal; logs (text or JSON) stay on stderr.
    if let Some((config, _)) = app.running().await {
        println!(
            "{}",
            sluice::api::banner(&config, args.listen_addr, &args.storage_path)
        );
    }
    sluice::api::spawn_summary(app.clone(), Duration::from_secs(10));

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = app.reload().await;
            }
        }
    }
    tracing::info!(deadline = ?app.shutdown_timeout, "stopping: intake closed, draining spooled data");
    app.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap's own checks (unique ids and groups, e.g. of the TLS flags flattened per
    /// listener), which otherwise fire only when the binary parses its arguments.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_listener_reads_its_own_tls_flags() {
        let cli = Cli::try_parse_from([
            "sluice",
            "run",
            "--server.http.tls.cert-file=/a.pem",
            "--server.webhooks.tls.key_file=/b.key",
        ])
        .expect("valid flags");
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.admin_tls.cert_file, Some(PathBuf::from("/a.pem")));
        assert_eq!(args.admin_tls.key_file, None);
        assert_eq!(args.webhooks_tls.key_file, Some(PathBuf::from("/b.key")));
        assert_eq!(args.webhooks_tls.cert_file, None);
    }
}
