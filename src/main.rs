//! The `ai-incident-mcp` binary: the CLI adapter. Each subcommand parses its
//! arguments, makes one service call and prints the result.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// mimalloc: the server allocates many short-lived buffers per call (JSON-RPC
/// messages, incident bodies); measured faster than the system allocator under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use ai_incident_mcp::app;
use ai_incident_mcp::config::Config;
use ai_incident_mcp::detect::{Engine, Source};
use ai_incident_mcp::http::{self, HttpOptions};
use ai_incident_mcp::mcp::IncidentMcp;
use ai_incident_mcp::service::{ListInput, ReportInput, ServiceError};
use ai_incident_mcp::store::StoreError;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "ai-incident-mcp",
    version,
    about = "Self-hosted AI incident response server (MCP over stdio, Streamable HTTP and legacy SSE)",
    long_about = "Self-hosted AI incident response server. Agents attach it as an MCP tool server and call \
screen_prompt on user input and tool output; people report, escalate and verify incidents through MCP tools \
or this CLI. Every change is on an append-only, SHA-256 hash-chained timeline.\n\n\
Start with `ai-incident-mcp serve` (HTTP on 127.0.0.1:8080) or let an MCP client launch `ai-incident-mcp serve --stdio`."
)]
struct Cli {
    /// Store: a SQLite file path (created if missing), or a postgres:// URL (see
    /// docs/deployment.md). Env AI_INCIDENT_DB.
    #[arg(
        long,
        global = true,
        env = "AI_INCIDENT_DB",
        default_value = "./ai-incident.db"
    )]
    db: String,
    /// Configuration file (TOML); embedded defaults apply to every key it leaves out.
    /// `ai-incident-mcp config --print-default` prints the full default file. Env AI_INCIDENT_CONFIG.
    #[arg(long, global = true, env = "AI_INCIDENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Largest text screen_prompt accepts, in bytes (overrides screening.max_prompt_bytes).
    #[arg(long, global = true, env = "AI_INCIDENT_MAX_PROMPT_BYTES")]
    max_prompt_bytes: Option<usize>,
    /// Who the timeline records for changes made over stdio and the CLI (default: the OS user,
    /// from $USER). Env AI_INCIDENT_ACTOR.
    #[arg(long, global = true, env = "AI_INCIDENT_ACTOR")]
    actor: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the MCP server. Without --stdio or --http: HTTP on 127.0.0.1:8080.
    Serve {
        /// Speak MCP on stdin/stdout (what MCP clients launch). Logs go to stderr.
        #[arg(long, conflicts_with = "http")]
        stdio: bool,
        /// Serve HTTP on this address (IP:PORT, [IPv6]:PORT or HOST:PORT): Streamable HTTP at /mcp,
        /// legacy SSE at /sse, /healthz.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Extra Host header names to accept (loopback names are always accepted).
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
        /// Extra browser Origins to accept, e.g. https://ops.example.com.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
        /// Bearer token required on every HTTP request but /healthz. Required when binding a
        /// non-loopback address. Env AI_INCIDENT_TOKEN.
        #[arg(long, env = "AI_INCIDENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Serve reads only: write tools are not listed over MCP, write endpoints answer 403,
        /// e-mail intake refuses mail (same as `[server] read_only = true`).
        #[arg(long)]
        read_only: bool,
        /// Folder of the data files the monitor checks (overrides monitor.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Folder of the MCP tool catalogs the monitor checks and pins (overrides monitor.catalog_dir).
        #[arg(long, value_name = "DIR")]
        catalog_dir: Option<PathBuf>,
        /// Expose only these tools: names or groups (screening, incidents, lifecycle, monitoring,
        /// detectors, all), comma-separated. Overrides `[mcp] tools`.
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        tools: Vec<String>,
    },
    /// Screen texts in batch: reads JSON lines {"id","text",["source"]} from FILE ("-" for stdin)
    /// and writes one line {"id","verdict","risk_score","categories"} per input. Opens no incidents.
    Screen {
        /// The JSONL file to screen.
        #[arg(long, value_name = "FILE")]
        jsonl: PathBuf,
        /// Use these model weights instead of the built-in ones (cross-validation).
        #[arg(long, value_name = "WEIGHTS", hide = true)]
        model: Option<PathBuf>,
        /// Rules only: no learned model.
        #[arg(long)]
        no_model: bool,
        /// Scale of the learned model's contribution (default 1).
        #[arg(long, hide = true)]
        model_weight: Option<f32>,
    },
    /// Report an incident.
    Report {
        /// security, performance, data_quality or other.
        #[arg(long = "type")]
        incident_type: String,
        /// What happened.
        #[arg(long)]
        description: String,
        /// Reporter's e-mail.
        #[arg(long)]
        email: String,
        /// critical, high, medium or low (assessed from the description if omitted).
        #[arg(long)]
        severity: Option<String>,
        /// Affected system.
        #[arg(long)]
        system: Option<String>,
    },
    /// Read incidents.
    Incidents {
        #[command(subcommand)]
        cmd: IncidentsCmd,
    },
    /// Escalate an incident one level.
    Escalate {
        /// Incident id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Verify the audit log: the hash chain, that the incident and containment rows match what
    /// the events imply, and (with --checkpoints) every signed checkpoint. Exits 1 if anything
    /// fails.
    VerifyAudit {
        /// Witness file of signed checkpoints (JSON lines, see docs/security.md).
        #[arg(long, value_name = "FILE", requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// Public key to verify the checkpoints with: a PEM or hex file (from keygen), or 64 hex
        /// digits. Repeat it for checkpoints signed by an earlier key.
        #[arg(long = "public-key", value_name = "KEY")]
        public_key: Vec<String>,
    },
    /// Make an Ed25519 key for signing audit checkpoints: writes FILE (private, mode 0600) and
    /// FILE.pub, and prints the public key. Point `[audit] signing_key_file` at FILE.
    Keygen {
        /// Where to write the private key (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the data-quality checks once (data files, tool catalogs, tool pins) and print the
    /// findings as JSON; each finding opens or updates an incident. Exits 1 when there are findings.
    CheckData,
    /// Apply pending database migrations to --db and exit (the server also applies them when it
    /// starts). Refuses a database whose schema is newer than this binary.
    Migrate,
    /// Write the whole database (incidents, timeline events in chain order, outbox rows) as JSON
    /// lines, to move it to another backend with `import`. Export from a quiet database.
    Export {
        /// Where to write (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Read an `export` file into --db, which must be empty: every event must continue the
    /// chain exactly, and the audit log must verify at the end (exit 1 otherwise).
    Import {
        /// The export file; `-` reads stdin.
        file: PathBuf,
    },
    /// Guard proxy: sit between an agent and one MCP server, screen every tool argument and
    /// result, time every call and pin the live tool list (see docs/proxy.md). Serves the agent
    /// on stdio unless --http is given. Without --name, fronts every [[proxy.upstreams]] server
    /// of --config as one.
    ///
    /// Example: ai-incident-mcp proxy --name crm -- python3 crm_server.py
    Proxy {
        /// The upstream's name in incidents, metrics, pins and containment, e.g. crm. Leave it
        /// out to aggregate the [[proxy.upstreams]] of --config.
        #[arg(long)]
        name: Option<String>,
        /// A Streamable HTTP upstream (instead of a command after --).
        #[arg(long, value_name = "URL")]
        upstream_url: Option<String>,
        /// Serve the agent over Streamable HTTP at /mcp on this address instead of stdio.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Bearer token required from HTTP clients (needed for a non-loopback --http).
        /// Env AI_INCIDENT_TOKEN.
        #[arg(long, env = "AI_INCIDENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The user the agent acts for (overrides proxy.user_id).
        #[arg(long = "user", value_name = "ID")]
        user_id: Option<String>,
        /// The agent's session (overrides proxy.session_id).
        #[arg(long = "session", value_name = "ID")]
        session_id: Option<String>,
        /// The upstream MCP server's command and arguments (after `--`, or as the last
        /// arguments: everything from the first one on belongs to the upstream).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Show or check the configuration.
    Config {
        /// Print the full default configuration file, with comments.
        #[arg(long)]
        print_default: bool,
    },
}

#[derive(Subcommand)]
enum IncidentsCmd {
    /// List incidents as JSON, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long = "type")]
        incident_type: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// 1 to 200.
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one incident with its timeline, as JSON.
    Get {
        /// Incident id.
        id: String,
    },
}

fn init_logs() {
    // rmcp logs the client's whole `peer_info` (and every notification) at INFO; we log the
    // client's name and version ourselves, so rmcp speaks at WARN unless the filter names it.
    let spec = std::env::var("AI_INCIDENT_LOG").unwrap_or_else(|_| "info".into());
    let spec = if spec.contains("rmcp") {
        spec
    } else {
        format!("{spec},rmcp=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// The CLI's sentence for an unknown incident id (the service's names the MCP tool).
fn unknown_id(id: &str) -> String {
    format!("no incident with id {id}; `ai-incident-mcp incidents list` shows the ids that exist")
}

/// Prints `v` as pretty JSON on stdout. A closed pipe (`… | head`) is not an error.
fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let r = writeln!(out, "{}", serde_json::to_string_pretty(v)?).and_then(|()| out.flush());
    quiet_epipe(r.map_err(anyhow::Error::from))
}

/// `Ok` for a write that failed only because the reader of stdout went away.
fn quiet_epipe(r: Result<()>) -> Result<()> {
    match r {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// A command that ran and found problems (exit 1); its output says which.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ChecksFailed(String);

/// Something the person running the command must change (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UserError(String);

/// The process exit code for a failed run — the one place exit codes are decided (the table is
/// in README.md, "Exit codes"):
///
/// | code | meaning |
/// |---|---|
/// | 0 | done |
/// | 1 | the command ran and found problems (`check-data` findings, `verify-audit` failure, an `import` whose copy does not verify, `screen` lines that could not be screened) |
/// | 2 | the command line is wrong (clap's usage error) |
/// | 3 | something to change: a bad argument, an unknown id, an illegal change, the configuration, the `--db` path or URL (credentials, TLS, database name), an `import` file with a bad line or a target that is not empty |
/// | 4 | a fault on our side: the database, a file, the network |
/// | 5 | the database cannot be reached now (server down, connection refused): try again later |
fn exit_code(e: &anyhow::Error) -> u8 {
    use ai_incident_mcp::store::transfer::TransferError;
    let unavailable = |c: &(dyn std::error::Error + 'static)| {
        c.downcast_ref::<ServiceError>()
            .is_some_and(ServiceError::is_unavailable)
            || c.downcast_ref::<StoreError>()
                .is_some_and(StoreError::is_unavailable)
            || matches!(c.downcast_ref::<TransferError>(), Some(TransferError::Store(s)) if s.is_unavailable())
    };
    if e.chain().any(unavailable) {
        return 5;
    }
    for c in e.chain() {
        if c.is::<ChecksFailed>() {
            return 1;
        }
        if c.is::<UserError>() || c.is::<ai_incident_mcp::config::ConfigError>() {
            return 3;
        }
        if let Some(s) = c.downcast_ref::<ServiceError>() {
            return if s.is_caller_error() { 3 } else { 4 };
        }
        if let Some(t) = c.downcast_ref::<TransferError>() {
            return match t {
                TransferError::Bad { .. }
                | TransferError::NotEmpty(_)
                | TransferError::Store(StoreError::Domain(_)) => 3,
                TransferError::Unverified(_) => 1,
                TransferError::Store(_) | TransferError::Write(_) | TransferError::Read(_) => 4,
            };
        }
        if let Some(a) = c.downcast_ref::<app::AppError>() {
            return match a {
                app::AppError::Store {
                    source: StoreError::Open { .. },
                    ..
                } => 3,
                app::AppError::Store { .. } | app::AppError::Prober(_) => 4,
                _ => 3,
            };
        }
    }
    4
}

fn main() -> std::process::ExitCode {
    init_logs();
    let cli = Cli::parse();
    // The guard proxy's stdio relay runs on one thread: its work is short hops between the
    // agent, the upstream and the screening threads (which have their own OS threads), and on
    // a multi-thread runtime those hops bounce between workers that wake and park each other.
    // Measured (docs/proxy.md "Overhead"): at 1 call in flight, proxy CPU per call -15 % during
    // the runs and the added p99 halved; 32 in flight unchanged. `serve` and `proxy --http`
    // keep the multi-thread runtime.
    let one_thread = matches!(&cli.cmd, Cmd::Proxy { http: None, .. });
    let mut builder = if one_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    rt.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> std::process::ExitCode {
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if e.is::<ChecksFailed>() {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::Config { print_default } = &cli.cmd {
        let text = if *print_default {
            Config::default_toml().to_owned()
        } else {
            let cfg = Config::load(cli.config.as_deref())?;
            format!("{}\n", toml::to_string_pretty(&cfg)?)
        };
        let mut out = std::io::stdout().lock();
        return quiet_epipe(
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(anyhow::Error::from),
        );
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(n) = cli.max_prompt_bytes {
        config.screening.max_prompt_bytes = n;
    }
    if let Cmd::Serve {
        data_dir,
        catalog_dir,
        read_only,
        ..
    } = &cli.cmd
    {
        if *read_only {
            config.server.read_only = true;
        }
        if let Some(d) = data_dir {
            config.monitor.data_dir = d.clone();
        }
        if let Some(d) = catalog_dir {
            config.monitor.catalog_dir = d.clone();
        }
    }
    if let Some(r) = store_command(&cli.cmd, &cli.db).await {
        return r;
    }
    if let Cmd::Proxy {
        user_id,
        session_id,
        ..
    } = &cli.cmd
    {
        config.proxy.user_id = user_id.clone().or(config.proxy.user_id.take());
        config.proxy.session_id = session_id.clone().or(config.proxy.session_id.take());
    }
    let config = Arc::new(config);
    let actor = cli
        .actor
        .clone()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "cli".to_string());
    let max_prompt_bytes = config.screening.max_prompt_bytes;
    match cli.cmd {
        Cmd::Migrate | Cmd::Export { .. } | Cmd::Import { .. } => Ok(()),
        Cmd::Config { .. } => Ok(()),
        Cmd::Screen {
            jsonl,
            model,
            no_model,
            model_weight,
        } => {
            let weights = match &model {
                Some(p) => {
                    Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?)
                }
                None => None,
            };
            let choice = match (&weights, no_model) {
                (Some(bytes), _) => app::ModelChoice::Weights(bytes),
                (None, true) => app::ModelChoice::None,
                (None, false) => app::ModelChoice::Builtin,
            };
            let mut engine = app::build_engine_with(&config, choice)?;
            if let Some(w) = model_weight {
                engine.set_model_weight(w);
            }
            quiet_epipe(screen_jsonl(&engine, &jsonl, max_prompt_bytes))
        }
        Cmd::Serve {
            stdio,
            http: addr,
            allow_hosts,
            allow_origins,
            token,
            tools,
            ..
        } => {
            if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                bail!(UserError(
                    "--token (or AI_INCIDENT_TOKEN) is empty: no client could authenticate; pass a non-empty token or leave it unset".into()
                ));
            }
            let svc = app::build_service(&cli.db, config.clone())?;
            match svc.audit_signing_key()? {
                Some(k) => {
                    tracing::info!(key_id = %k.public().key_id(), witness = %config.audit.witness_file.display(), "audit checkpoints on")
                }
                None => tracing::info!(
                    "audit checkpoints off: no signing key (see `ai-incident-mcp keygen`)"
                ),
            }
            let ct = CancellationToken::new();
            let monitor = ai_incident_mcp::monitor::spawn(svc.clone(), ct.clone());
            let selection = if tools.is_empty() {
                config.mcp.tools.clone()
            } else {
                tools
            };
            let handler = IncidentMcp::with_tools(svc, &selection).map_err(UserError)?;
            if config.server.read_only {
                tracing::info!("read-only mode: write tools and write endpoints are off");
            }
            if stdio {
                let handler = handler
                    .with_principal(ai_incident_mcp::mcp::principal::Principal::admin(actor));
                tracing::info!(db = %app::display_db(&cli.db), "serving MCP on stdio");
                let r = ai_incident_mcp::mcp::stdio::serve_process_stdio(handler).await;
                ct.cancel();
                let _ = monitor.await;
                r.context("stdio transport failed")?;
                return Ok(());
            }
            let (addr, addr_host) = match addr {
                Some(a) => http::resolve_listen_addr(&a)
                    .await
                    .map_err(|e| UserError(e.to_string()))?,
                None => (SocketAddr::from(([127, 0, 0, 1], 8080)), None),
            };
            if !addr.ip().is_loopback() && token.is_none() && config.auth.tokens.is_empty() {
                bail!(UserError(format!(
                    "refusing to serve on non-loopback address {addr} without a bearer token: pass --token or set AI_INCIDENT_TOKEN"
                )));
            }
            let mut opts = HttpOptions {
                bearer_token: token,
                tokens: config.auth.tokens.clone(),
                read_only: config.server.read_only,
                allowed_origins: allow_origins,
                max_body_bytes: (max_prompt_bytes * 2).max(4 * 1024 * 1024),
                limits: config.http.clone(),
                ..HttpOptions::default()
            };
            opts.allowed_hosts.extend(allow_hosts);
            opts.allowed_hosts.extend(addr_host);
            if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
                opts.allowed_hosts.push(addr.ip().to_string());
            }
            let intake_svc = handler.service().clone();
            let local = http::serve(handler, addr, opts, ct.clone())
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            if let Some(smtp) = config.intake.smtp.clone() {
                let listen = smtp.listen.clone();
                let at = ai_incident_mcp::intake::serve_smtp(intake_svc, smtp, ct.clone())
                    .await
                    .with_context(|| {
                        format!("cannot listen for e-mail on [intake.smtp] listen = {listen:?}")
                    })?;
                eprintln!("e-mail intake (SMTP) at smtp://{at}");
            }
            eprintln!(
                "ai-incident-mcp {} listening on http://{local}\n  \
                 Streamable HTTP MCP:  http://{local}/mcp\n  \
                 legacy HTTP+SSE MCP:  http://{local}/sse\n  \
                 health:               http://{local}/healthz\n  \
                 store:                {}\n\
                 Attach a client, e.g.:  npx @modelcontextprotocol/inspector --cli http://{local}/mcp --method tools/list\n\
                 Stop with Ctrl-C.",
                env!("CARGO_PKG_VERSION"),
                app::display_db(&cli.db)
            );
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
            ct.cancel();
            let _ = monitor.await;
            Ok(())
        }
        Cmd::Proxy {
            name,
            upstream_url,
            http: addr,
            token,
            command,
            ..
        } => {
            use ai_incident_mcp::proxy::{self, ProxyOptions, Target, UpstreamSpec};
            let specs = match (name, upstream_url, command.is_empty()) {
                (Some(name), Some(u), true) => vec![UpstreamSpec {
                    opts: ProxyOptions {
                        name,
                        target: Target::Url(u),
                    },
                    prefix: String::new(),
                }],
                (Some(name), None, false) => vec![UpstreamSpec {
                    opts: ProxyOptions {
                        name,
                        target: Target::Command(command),
                    },
                    prefix: String::new(),
                }],
                (_, Some(_), false) => {
                    bail!(UserError(
                        "give either --upstream-url or a command after --, not both".into()
                    ))
                }
                (Some(_), None, true) => bail!(UserError(
                    "no upstream: give its command after --, e.g. `proxy --name crm -- python3 server.py`, or --upstream-url http://host/mcp".into()
                )),
                (None, None, true) if !config.proxy.upstreams.is_empty() => {
                    proxy::configured_upstreams(&config.proxy)
                }
                (None, _, _) => bail!(UserError(
                    "give the upstream a --name (e.g. `proxy --name crm -- python3 server.py`), or leave out --name, the URL and the command and list the servers in [[proxy.upstreams]] in --config".into()
                )),
            };
            let svc = app::build_service(&cli.db, config.clone())?;
            let Some(addr) = addr else {
                tracing::info!(db = %app::display_db(&cli.db), upstreams = specs.len(), "guard proxy serving MCP on stdio");
                return proxy::run_stdio_all(svc, specs)
                    .await
                    .context("guard proxy failed");
            };
            let (addr, addr_host) = http::resolve_listen_addr(&addr)
                .await
                .map_err(|e| UserError(e.to_string()))?;
            if !addr.ip().is_loopback() && token.as_deref().is_none_or(|t| t.trim().is_empty()) {
                bail!(UserError(format!(
                    "refusing to serve on non-loopback address {addr} without a bearer token: pass --token or set AI_INCIDENT_TOKEN"
                )));
            }
            let mut hopts = HttpOptions {
                bearer_token: token,
                max_body_bytes: (max_prompt_bytes * 2).max(4 * 1024 * 1024),
                limits: config.http.clone(),
                ..HttpOptions::default()
            };
            hopts.allowed_hosts.extend(addr_host);
            let started = proxy::start_all(svc, specs).await?;
            let local = proxy::serve_http(&started, addr, hopts).await?;
            eprintln!(
                "guard proxy listening on http://{local}/mcp (store {}); stop with Ctrl-C",
                app::display_db(&cli.db)
            );
            let _ = tokio::signal::ctrl_c().await;
            started.shutdown().await;
            Ok(())
        }
        Cmd::Report {
            incident_type,
            description,
            email,
            severity,
            system,
        } => {
            let svc = app::build_service(&cli.db, config.clone())?;
            let inc = svc
                .report(ReportInput {
                    incident_type,
                    description,
                    reporter_email: email,
                    severity,
                    affected_system: system,
                })
                .await?;
            print_json(&ai_incident_mcp::view::ReportIncidentOutput::new(
                &inc,
                svc.response_sla_for(&inc),
            ))
        }
        Cmd::Incidents { cmd } => {
            let svc = app::build_service(&cli.db, config.clone())?;
            match cmd {
                IncidentsCmd::List {
                    status,
                    severity,
                    incident_type,
                    since,
                    limit,
                    cursor,
                } => {
                    let page = svc
                        .list(ListInput {
                            status,
                            severity,
                            incident_type,
                            since,
                            limit,
                            cursor,
                            open_only: false,
                        })
                        .await?;
                    print_json(&ai_incident_mcp::view::ListIncidentsOutput::from(page))
                }
                IncidentsCmd::Get { id } => {
                    let (inc, tl) = match svc.get(&id).await {
                        Err(ServiceError::NotFound(id)) => bail!(UserError(unknown_id(&id))),
                        r => r?,
                    };
                    let response = svc.response_metrics(&inc, &tl);
                    print_json(&ai_incident_mcp::view::IncidentDetail::new(
                        inc, tl, response,
                    ))
                }
            }
        }
        Cmd::Escalate { id, reason } => {
            let svc = app::build_service(&cli.db, config.clone())?;
            let inc = match svc.escalate(&id, reason, &actor).await {
                Err(ServiceError::NotFound(id)) => bail!(UserError(unknown_id(&id))),
                r => r?,
            };
            print_json(&ai_incident_mcp::view::EscalateOutput::from(&inc))
        }
        Cmd::CheckData => {
            let svc = app::build_service(&cli.db, config.clone())?;
            let r = svc.check_data_quality().await?;
            print_json(&r)?;
            if !r.ran {
                bail!(UserError(format!(
                    "neither {} nor {} exists; set monitor.data_dir / monitor.catalog_dir",
                    config.monitor.data_dir.display(),
                    config.monitor.catalog_dir.display()
                )));
            }
            if !r.findings.is_empty() {
                bail!(ChecksFailed(format!(
                    "{} data-quality finding(s)",
                    r.findings.len()
                )));
            }
            Ok(())
        }
        Cmd::Keygen { out } => keygen(&out),
        Cmd::VerifyAudit {
            checkpoints,
            public_key,
        } => {
            let svc = app::build_service(&cli.db, config.clone())?;
            let r = match checkpoints {
                Some(file) => {
                    let keys = public_key
                        .iter()
                        .map(|k| ai_incident_mcp::service::load_public_key(k))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(UserError)?;
                    svc.verify_audit(Some(file), keys).await?
                }
                None => svc.verify_audit_log().await?,
            };
            print_json(&r)?;
            if !r.ok {
                bail!(ChecksFailed(
                    "the audit log does not verify (see the report)".into()
                ));
            }
            Ok(())
        }
    }
}

/// `migrate`, `export` and `import`: store commands that need no service (`None`: another command).
async fn store_command(cmd: &Cmd, db: &str) -> Option<Result<()>> {
    use ai_incident_mcp::store::transfer;
    let r = match cmd {
        Cmd::Migrate => app::migrate_store(db)
            .map_err(anyhow::Error::from)
            .and_then(|applied| {
                print_json(&serde_json::json!({ "applied": applied, "up_to_date": true }))
            }),
        Cmd::Export { out } => {
            async {
                let store = app::open_store(db)?;
                let counts = match out {
                    Some(p) => {
                        let f = std::fs::File::create(p)
                            .with_context(|| format!("cannot create {}", p.display()))?;
                        let mut w = std::io::BufWriter::new(f);
                        transfer::export(&*store, &mut w).await?
                    }
                    None => {
                        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                        transfer::export(&*store, &mut w).await?
                    }
                };
                tracing::info!(?counts, "exported");
                Ok(())
            }
            .await
        }
        Cmd::Import { file } => {
            async {
                let store = app::open_store(db)?;
                let counts = if file.as_os_str() == "-" {
                    transfer::import(&*store, std::io::stdin().lock()).await?
                } else {
                    let f = std::fs::File::open(file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    transfer::import(&*store, std::io::BufReader::new(f)).await?
                };
                print_json(&serde_json::json!({ "imported": counts, "verified": true }))
            }
            .await
        }
        _ => return None,
    };
    Some(r)
}

fn keygen(out: &std::path::Path) -> Result<()> {
    use ai_incident_mcp::domain::checkpoint::SigningKey;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let key = SigningKey::from_seed(seed);
    seed.fill(0);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    f.write_all(key.to_pkcs8_pem().as_bytes())?;
    f.sync_all()?;
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    let pk = key.public();
    std::fs::write(&pub_path, pk.to_spki_pem())
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    println!(
        "private key: {} (keep it off the database host's backups; never in the database)\n\
         public key:  {} (give it to auditors)\nkey id:      {}\npublic key (hex): {}\n\n\
         Configure:\n  [audit]\n  signing_key_file = \"{}\"\n\
         Verify:\n  ai-incident-mcp verify-audit --checkpoints <witness file> --public-key {}",
        out.display(),
        pub_path.display(),
        pk.key_id(),
        pk.to_hex(),
        out.display(),
        pub_path.display()
    );
    Ok(())
}

fn screen_jsonl(engine: &Engine, path: &std::path::Path, max_bytes: usize) -> Result<()> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut n, mut bad) = (0usize, 0usize);
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        n += 1;
        let parsed: Result<serde_json::Value, String> =
            serde_json::from_slice(&line).map_err(|e| format!("line {}: not JSON: {e}", i + 1));
        let result = parsed.and_then(|v| {
            let id = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| format!("line {}: no string field \"text\"", i + 1))?;
            if text.len() > max_bytes {
                return Err(format!("line {}: text is over {max_bytes} bytes", i + 1));
            }
            let src = v
                .get("screen_source")
                .or_else(|| v.get("source"))
                .and_then(|s| s.as_str())
                .and_then(Source::parse)
                .unwrap_or(Source::User);
            let s = engine.screen(text, src);
            Ok(serde_json::json!({
                "id": id,
                "verdict": s.verdict.as_str(),
                "risk_score": s.risk_score,
                "categories": s.categories.iter().map(|c| c.category.as_str()).collect::<Vec<_>>(),
            }))
        });
        match result {
            Ok(v) => writeln!(out, "{v}")?,
            Err(e) => {
                bad += 1;
                writeln!(out, "{}", serde_json::json!({"line": i + 1, "error": e}))?;
            }
        }
    }
    out.flush()?;
    if bad > 0 {
        bail!(ChecksFailed(format!(
            "screened {} of {n} lines; {bad} could not be screened (see the error lines)",
            n - bad
        )));
    }
    Ok(())
}
