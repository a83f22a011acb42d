//! `weft brickd`: the brick server process, and its control commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use weft_protocol::server::control;
use weft_wire::msg::{ControlReply, ControlRequest};

/// Arguments of `weft brickd`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BrickdArgs {
    #[command(subcommand)]
    command: Option<BrickdCmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Serving bricks.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Address and port to serve every brick on (port 0 picks a free port, printed).
    #[arg(long, default_value = "0.0.0.0:24009", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// A server volfile: one graph per brick, each topped by protocol/server. More
    /// bricks can be attached later.
    #[arg(long, value_name = "FILE")]
    volfile: Option<PathBuf>,
    /// The control socket [default: /run/weft/brickd-<port>.sock].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// PEM certificate for TLS connections (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Demand client certificates signed by this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Write the process id here; removed at exit.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum BrickdCmd {
    /// Serve the bricks of another server volfile in a running brickd.
    Attach {
        /// The running brickd's control socket.
        #[arg(
            long,
            default_value = "/run/weft/brickd-24009.sock",
            value_name = "PATH"
        )]
        control: PathBuf,
        /// The server volfile.
        volfile: PathBuf,
    },
    /// Stop serving one brick (its clients are disconnected).
    Detach {
        /// The running brickd's control socket.
        #[arg(
            long,
            default_value = "/run/weft/brickd-24009.sock",
            value_name = "PATH"
        )]
        control: PathBuf,
        /// The brick's name (the volume under protocol/server).
        brick: String,
    },
    /// Print every brick graph's statedump (locks held and waiting, translator state).
    Statedump {
        /// The running brickd's control socket.
        #[arg(
            long,
            default_value = "/run/weft/brickd-24009.sock",
            value_name = "PATH"
        )]
        control: PathBuf,
    },
    /// List the bricks a running brickd serves.
    Status {
        /// The running brickd's control socket.
        #[arg(
            long,
            default_value = "/run/weft/brickd-24009.sock",
            value_name = "PATH"
        )]
        control: PathBuf,
    },
}

/// Runs `weft brickd` or one of its control commands.
pub fn run(a: BrickdArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("weft-brickd")
        .on_thread_start(weft_core::blocking::allow_block_in_place)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match a.command {
        None => rt.block_on(serve(a.serve)),
        Some(BrickdCmd::Attach { control, volfile }) => {
            let text = std::fs::read_to_string(&volfile)
                .with_context(|| format!("cannot read {}", volfile.display()))?;
            rt.block_on(ctl(&control, ControlRequest::Attach { volfile: text }))
        }
        Some(BrickdCmd::Detach { control, brick }) => {
            rt.block_on(ctl(&control, ControlRequest::Detach { brick }))
        }
        Some(BrickdCmd::Status { control }) => rt.block_on(ctl(&control, ControlRequest::Status)),
        Some(BrickdCmd::Statedump { control }) => {
            rt.block_on(ctl(&control, ControlRequest::Statedump))
        }
    }
}

async fn ctl(path: &Path, req: ControlRequest) -> Result<()> {
    match control::request(path, &req).await.map_err(|e| anyhow!(e))? {
        ControlReply::Ok(text) => {
            print!("{text}");
            Ok(())
        }
        ControlReply::Err(e) => bail!("{e}"),
    }
}

async fn serve(a: ServeArgs) -> Result<()> {
    crate::mount::init_logging(&a.log_level)?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => {
            Some(weft_protocol::tls::acceptor(c, k, a.tls_ca.as_deref()).map_err(|e| anyhow!(e))?)
        }
        _ => None,
    };
    let server = weft_protocol::BrickServer::new(
        crate::registry::registry(),
        tls,
        weft_protocol::Limits::default(),
    );
    if let Some(vf) = &a.volfile {
        let text =
            std::fs::read_to_string(vf).with_context(|| format!("cannot read {}", vf.display()))?;
        server
            .attach(&text)
            .await
            .map_err(|e| anyhow!("{}: {e}", vf.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let control_path = a
        .control
        .unwrap_or_else(|| PathBuf::from(format!("/run/weft/brickd-{}.sock", addr.port())));
    let control = control::bind(&control_path).await.map_err(|e| anyhow!(e))?;
    if let Some(p) = &a.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", p.display()))?;
    }
    // The first line on stdout says where we listen (port 0 picks one); scripts wait for it.
    println!(
        "weft brickd: listening on {addr}, control socket {}",
        control_path.display()
    );
    tracing::info!(
        "serving: {}",
        server.status().trim_end().replace('\n', "; ")
    );
    let accept = tokio::spawn(server.clone().serve(listener));
    let ctl_task = tokio::spawn(control::serve(server.clone(), control));
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    accept.abort();
    ctl_task.abort();
    server.shutdown().await;
    let _ = std::fs::remove_file(&control_path);
    if let Some(p) = &a.pid_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
