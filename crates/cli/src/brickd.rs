//! `weft brickd`: the brick server process, and its control commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use weft_protocol::server::{control, limits};
use weft_wire::msg::{ControlReply, ControlRequest};

/// Arguments of `weft brickd`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BrickdArgs {
    #[command(subcommand)]
    command: Option<BrickdCmd>,
    // Boxed: the limits make these the largest arguments of any `weft` command.
    #[command(flatten)]
    serve: Box<ServeArgs>,
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
    /// Besides root (and the user brickd runs as), members of this group (name or gid) may
    /// use the control socket; it is then mode 0660 and owned by the group.
    #[arg(long, value_name = "GROUP")]
    control_group: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What one peer may make the server hold (docs/ARCHITECTURE.md, "Limits"). A limit hit is
/// logged, at most once every 10 s per kind.
#[derive(Args, Debug)]
struct LimitArgs {
    /// Connections served at once; more are refused [default: 4096, fewer when
    /// RLIMIT_NOFILE is low].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Connections from one address (one IPv6 /64) at once; more are refused [default: 256].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_addr: Option<u64>,
    /// Files and directories open over all connections; more opens fail with EMFILE
    /// [default: RLIMIT_NOFILE minus --max-connections minus 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_fds: Option<u64>,
    /// Files and directories one connection may hold open; more opens fail with EMFILE
    /// [default: 65536, within --max-fds]. One connection is a whole client machine's
    /// mount, with all its processes' open files.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    client_max_fds: Option<u64>,
    /// Requests one connection may have in flight; more closes it [default: 4096].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    client_max_requests: Option<u64>,
    /// Bytes one connection may have in flight (requests and what they make the server
    /// build); beyond it its next request waits [default: 256M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    client_max_bytes: Option<u64>,
    /// Seconds a new connection has to complete its handshake [default: 10].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    handshake_timeout: Option<std::time::Duration>,
    /// Seconds after which a connection that sends nothing, or does not read what it is
    /// sent, is closed [default: 60].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    idle_timeout: Option<std::time::Duration>,
    /// Pings a second read from one connection; beyond it the server reads from it more
    /// slowly (0: no limit) [default: 100].
    #[arg(long, value_name = "N")]
    max_ping_rate: Option<u32>,
    /// Requests of one connection running at once, lock requests aside; more wait their
    /// turn [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    client_max_running: Option<u64>,
    /// Bytes of reads, writes, checksums and directory reads one connection may have
    /// running at once; more wait their turn [default: 4M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    client_max_work: Option<u64>,
}

/// A size in bytes, with an optional K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number of bytes, or with K, M or G)"))?;
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 {
        return Err("must be more than 0".into());
    }
    Ok(v)
}

/// A positive number of seconds (fractions allowed).
fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v > 0.0 && v <= 1e9) {
        return Err(format!("{s:?}: must be more than 0 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

impl LimitArgs {
    /// The limits: defaults for a process allowed `nofile` descriptors, then the flags.
    fn limits(&self, nofile: u64) -> weft_protocol::Limits {
        let mut l = weft_protocol::Limits::for_nofile(nofile);
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        if let Some(c) = self.max_connections {
            l.max_connections = n(c);
            l.max_fds = weft_protocol::Limits::fds_for(nofile, l.max_connections);
            l.max_connections_per_addr = l.max_connections_per_addr.min(l.max_connections);
        }
        if let Some(c) = self.max_connections_per_addr {
            l.max_connections_per_addr = n(c);
        }
        if let Some(f) = self.max_fds {
            l.max_fds = n(f);
        }
        l.max_fds_per_client = l.max_fds_per_client.min(l.max_fds);
        if let Some(f) = self.client_max_fds {
            l.max_fds_per_client = n(f);
        }
        if let Some(r) = self.client_max_requests {
            l.max_inflight = n(r);
        }
        if let Some(b) = self.client_max_bytes {
            l.max_inflight_bytes = n(b);
        }
        if let Some(t) = self.handshake_timeout {
            l.handshake_timeout = t;
        }
        if let Some(t) = self.idle_timeout {
            l.idle_timeout = t;
        }
        if let Some(p) = self.max_ping_rate {
            l.max_pings_per_sec = p;
        }
        if let Some(r) = self.client_max_running {
            l.max_running = n(r);
        }
        if let Some(w) = self.client_max_work {
            l.max_work_bytes = n(w);
        }
        l
    }
}

/// The gid of `group` (a name, or a number).
fn group_id(group: &str) -> Result<u32> {
    if let Ok(g) = group.parse::<u32>() {
        return Ok(g);
    }
    let name = std::ffi::CString::new(group).map_err(|_| anyhow!("bad group name {group:?}"))?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: all-zero is a valid `group` (null pointers, gid 0) for getgrnam_r to fill.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes into `grp` and `buf`, of the sizes given, and sets `out`.
    let r = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if r != 0 || out.is_null() {
        bail!("--control-group: no group named {group:?}");
    }
    Ok(grp.gr_gid)
}

/// Writes the pid file: mode 0644 whatever the umask, replaced atomically (a file written
/// beside it and renamed, so a link planted at the path is replaced, never followed).
fn write_pid_file(p: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    control::make_private_parent(&dir).map_err(|e| anyhow!("pid file: {e}"))?;
    let name = p
        .file_name()
        .ok_or_else(|| anyhow!("pid file {} names no file", p.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("cannot write pid file {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| writeln!(f, "{}", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, p))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow!("cannot write pid file {}: {e}", p.display())
        })
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
    /// Change the options of bricks a running brickd serves, in place: the volfile's
    /// graphs must be served with the same shape; clients stay connected (with their open
    /// files and locks) unless the new access policy refuses them.
    Reconfigure {
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
        None => rt.block_on(serve(*a.serve)),
        Some(BrickdCmd::Attach { control, volfile }) => {
            let text = std::fs::read_to_string(&volfile)
                .with_context(|| format!("cannot read {}", volfile.display()))?;
            rt.block_on(ctl(&control, ControlRequest::Attach { volfile: text }))
        }
        Some(BrickdCmd::Reconfigure { control, volfile }) => {
            let text = std::fs::read_to_string(&volfile)
                .with_context(|| format!("cannot read {}", volfile.display()))?;
            rt.block_on(ctl(&control, ControlRequest::Reconfigure { volfile: text }))
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
    let access = control::ControlAccess {
        group: a.control_group.as_deref().map(group_id).transpose()?,
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => {
            Some(weft_protocol::tls::acceptor(c, k, a.tls_ca.as_deref()).map_err(|e| anyhow!(e))?)
        }
        _ => None,
    };
    // As many descriptors as the hard limit allows, then limits that fit in them.
    let nofile = match limits::raise_nofile_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot raise RLIMIT_NOFILE to its hard limit: {e}");
            limits::nofile_limit()
        }
    };
    let lim = a.limits.limits(nofile);
    tracing::info!(
        nofile,
        max_connections = lim.max_connections,
        max_connections_per_addr = lim.max_connections_per_addr,
        max_fds = lim.max_fds,
        client_max_fds = lim.max_fds_per_client,
        client_max_requests = lim.max_inflight,
        client_max_bytes = lim.max_inflight_bytes,
        client_max_running = lim.max_running,
        client_max_work = lim.max_work_bytes,
        "limits"
    );
    if lim.fds_needed() > nofile {
        tracing::warn!(
            "--max-connections {} and --max-fds {} (plus {} spare) need more descriptors than RLIMIT_NOFILE allows ({nofile}): when the process runs out, new connections are closed at once until descriptors are free",
            lim.max_connections,
            lim.max_fds,
            limits::FD_RESERVE
        );
    }
    let server = weft_protocol::BrickServer::new(crate::registry::registry(), tls, lim);
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
    let control = control::bind(&control_path, &access)
        .await
        .map_err(|e| anyhow!(e))?;
    // Signals are watched before the pid file and the "listening" line exist, so a
    // supervisor that stops us as soon as it sees either gets a clean stop.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    if let Some(p) = &a.pid_file {
        write_pid_file(p)?;
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
    let ctl_task = tokio::spawn(control::serve(server.clone(), control, access));
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
