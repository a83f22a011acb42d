//! `weft mount` and `weft statedump`.
//!
//! A mount serves a graph read from a volfile (`--volfile FILE`) or fetched from a
//! management daemon by volume name (`HOST[:PORT]:/VOLUME`, backups in
//! `--backup-volfile-servers`). A mount by name then follows the volume: it keeps a
//! long-poll open on the servers and applies each new version while it stays mounted
//! (see [`follow`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::volfile_cmd;

/// Arguments of `weft mount`: `weft mount HOST[:PORT]:/VOLUME DIR` or
/// `weft mount --volfile FILE DIR`.
///
/// Both positionals are optional to clap (so options may come anywhere between them);
/// [`run`] sorts them out: with `--volfile` the one positional is the mountpoint.
#[derive(Args, Clone, Debug)]
pub struct MountArgs {
    /// The volume to mount, by name: its volfile is fetched from the management daemon
    /// (weft mgmtd) at HOST (port 24100 unless given), and the mount follows the volume's
    /// changes. Not with --volfile.
    #[arg(value_name = "HOST[:PORT]:/VOLUME")]
    pub source: Option<String>,
    /// An existing, empty, unmounted directory.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: Option<PathBuf>,
    /// Serve the graph of this client volfile instead of fetching one by volume name.
    #[arg(long, value_name = "FILE")]
    pub volfile: Option<PathBuf>,
    /// Management daemons to ask, in order, when HOST does not answer (comma-separated,
    /// each HOST or HOST:PORT); also used to follow the volume's changes.
    #[arg(long, value_name = "HOST[:PORT],...", value_delimiter = ',')]
    pub backup_volfile_servers: Vec<String>,
    /// Stay in the foreground (logs to stderr) instead of detaching.
    #[arg(short, long)]
    pub foreground: bool,
    /// Seconds the kernel may cache attributes [default: the volume's md-cache-timeout
    /// when its bricks tell the mount about changes (cache-invalidation), otherwise 1].
    #[arg(long, value_name = "SECONDS")]
    pub attr_timeout: Option<f64>,
    /// Seconds the kernel may cache name lookups [default: as --attr-timeout].
    #[arg(long, value_name = "SECONDS")]
    pub entry_timeout: Option<f64>,
    /// Pass SELinux labels (the security.selinux xattr) to and from the bricks. Without
    /// it the mount has no labels: getting or setting one fails with "Operation not
    /// supported" (as GlusterFS without its selinux option).
    #[arg(long)]
    pub selinux: bool,
    /// The kernel's read-ahead window for this mount's files, in KiB (0: the kernel's
    /// default, 128). Needs root; set as the mount comes up.
    #[arg(long, value_name = "KIB", default_value_t = weft_fuse::DEFAULT_READ_AHEAD_KB)]
    pub read_ahead_kb: u32,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log file for a detached mount [default: /var/log/weft/mnt-<mountpoint>.log].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

fn timeout(name: &str, secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        anyhow::anyhow!("--{name} must be a non-negative number of seconds, not {secs}")
    })
}

fn default_log_file(mountpoint: &Path) -> PathBuf {
    let tag: String = mountpoint
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = PathBuf::from("/var/log/weft");
    let dir = if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("mnt-{tag}.log"))
}

/// Runs `weft mount`: everything is checked here, in the caller's terminal, before the
/// mount detaches; a detached mount reports success only once the kernel shows it.
pub fn run(a: MountArgs) -> Result<()> {
    let (a, mp) = sort_positionals(a)?;
    let attr_timeout = a
        .attr_timeout
        .map(|t| timeout("attr-timeout", t))
        .transpose()?;
    let entry_timeout = a
        .entry_timeout
        .map(|t| timeout("entry-timeout", t))
        .transpose()?;
    let origin = Origin::of(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("weft-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (vf, version) = match &origin {
        Origin::File(path) => {
            let vf = volfile_cmd::load(path)?;
            weft_core::Graph::check(&vf, &crate::registry::registry())
                .with_context(|| format!("bad volfile {}", path.display()))?;
            (vf, None)
        }
        Origin::Server { volume, servers } => {
            let f = rt
                .block_on(weft_client::fetch_volfile(servers, volume))
                .with_context(|| format!("cannot fetch the volfile of volume {volume}"))?;
            let vf = weft_core::volfile::Volfile::parse(&f.volfile)
                .map_err(anyhow::Error::from)
                .and_then(|vf| {
                    weft_core::Graph::check(&vf, &crate::registry::registry())?;
                    Ok(vf)
                })
                .with_context(|| {
                    format!(
                        "bad volfile for volume {volume} (version {}) from {}",
                        f.version, f.server
                    )
                })?;
            (vf, Some(f.version))
        }
    };
    check_mountpoint(&mp)?;
    if !a.foreground {
        drop(rt);
        return detach(&a, &mp);
    }
    init_logging(&a.log_level)?;
    let volume = rt
        .block_on(weft_client::Volume::from_volfile(
            &vf.to_string(),
            crate::registry::registry(),
            weft_client::OpenOptions::default(),
        ))
        .with_context(|| format!("cannot open the volume of {}", origin.describe()))?;
    let volume = Arc::new(volume);
    let cfg = weft_fuse::MountConfig {
        attr_timeout,
        entry_timeout,
        fsname: origin.fsname(),
        selinux: a.selinux,
        read_ahead_kb: a.read_ahead_kb,
        ..Default::default()
    };
    // Watched before the mount exists: a SIGTERM or SIGINT that comes as soon as the
    // mountpoint answers (before the loop below) still unmounts cleanly instead of
    // killing the process with the mount left behind.
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_rt = rt.enter();
        (
            signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        )
    };
    let mount = Arc::new(weft_fuse::mount(volume, &mp, &cfg, rt.handle().clone())?);
    tracing::info!(
        "mounted {}{} at {}",
        origin.describe(),
        version
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default(),
        mp.display()
    );
    let follower = match (&origin, version) {
        (Origin::Server { volume, servers }, Some(v)) => {
            Some(rt.spawn(follow(mount.clone(), servers.clone(), volume.clone(), v)))
        }
        _ => None,
    };
    rt.block_on(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: unmounting"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: unmounting"); break; }
                _ = tick.tick() => if mount.is_finished() { tracing::info!("unmounted from outside"); break; },
            }
        }
        if let Some(f) = follower {
            f.abort();
            let _ = f.await;
        }
        let mount = Arc::into_inner(mount).expect("the follower is gone: the mount is ours alone");
        mount.unmount().await.context("unmount failed")?;
        tracing::info!("unmounted {}", mp.display());
        anyhow::Ok(())
    })
}

/// Sorts out the positionals: `SOURCE MOUNTPOINT`, or with `--volfile` the one given is
/// the mountpoint. Returns the arguments (without a source for a volfile mount) and the
/// mountpoint.
fn sort_positionals(mut a: MountArgs) -> Result<(MountArgs, PathBuf)> {
    const USAGE: &str = "weft mount HOST[:PORT]:/VOLUME DIR, or weft mount --volfile FILE DIR";
    let mp = match (&a.volfile, a.source.take(), a.mountpoint.take()) {
        (Some(_), Some(dir), None) => PathBuf::from(dir),
        // Built in code (weft demo) rather than parsed.
        (Some(_), None, Some(dir)) => dir,
        (Some(_), Some(_), Some(_)) => {
            bail!("give either HOST[:PORT]:/VOLUME or --volfile FILE, not both ({USAGE})")
        }
        (None, Some(src), Some(dir)) => {
            a.source = Some(src);
            dir
        }
        (None, Some(src), None) if src.contains(":/") => bail!("no mountpoint given ({USAGE})"),
        (None, Some(_), None) => bail!("nothing to mount given ({USAGE})"),
        (_, None, _) => bail!("nothing to mount given ({USAGE})"),
    };
    if a.volfile.is_some() && !a.backup_volfile_servers.is_empty() {
        bail!("--backup-volfile-servers goes with HOST[:PORT]:/VOLUME, not with --volfile");
    }
    Ok((a, mp))
}

/// Where a mount's graph comes from.
enum Origin {
    /// A volfile on disk.
    File(PathBuf),
    /// A volume by name, from these management daemons (the one named first, then the
    /// backups).
    Server {
        volume: String,
        servers: Vec<weft_client::VolfileServer>,
    },
}

impl Origin {
    fn of(a: &MountArgs) -> Result<Origin> {
        match (&a.volfile, &a.source) {
            (Some(path), None) => Ok(Origin::File(path.clone())),
            (None, Some(src)) => {
                let spec = weft_client::VolumeSpec::parse(src).map_err(anyhow::Error::msg)?;
                let mut servers = vec![spec.server];
                for b in &a.backup_volfile_servers {
                    if b.trim().is_empty() {
                        continue;
                    }
                    let s = weft_client::VolfileServer::parse(b)
                        .map_err(|e| anyhow::anyhow!("--backup-volfile-servers: {e}"))?;
                    if !servers.contains(&s) {
                        servers.push(s);
                    }
                }
                Ok(Origin::Server {
                    volume: spec.volume,
                    servers,
                })
            }
            (Some(_), Some(_)) => bail!("give either HOST:/VOLUME or --volfile FILE, not both"),
            (None, None) => {
                bail!("give the volume to mount: HOST[:PORT]:/VOLUME or --volfile FILE")
            }
        }
    }

    /// For messages.
    fn describe(&self) -> String {
        match self {
            Origin::File(p) => p.display().to_string(),
            Origin::Server { volume, servers } => format!("{}:/{volume}", servers[0]),
        }
    }

    /// The mount's source in /proc/mounts: `HOST:/VOLUME` as GlusterFS shows it, or
    /// `weft:FILE`.
    fn fsname(&self) -> String {
        match self {
            Origin::File(p) => format!("weft:{}", p.display()),
            Origin::Server { volume, servers } => format!("{}:/{volume}", servers[0].host),
        }
    }
}

/// How long one long-poll asks the server to wait for a change.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// Retry delays while no server answers.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Follows volume `volume` from `version` on: a long-poll on `servers` (in order, the first
/// that answers), and each new version applied to `mount` by [`apply`]. While no server
/// answers (or the volume is gone) it retries with backoff and the mount serves on with
/// the graph it has. Runs until aborted.
async fn follow(
    mount: Arc<weft_fuse::Mount>,
    servers: Vec<weft_client::VolfileServer>,
    volume: String,
    mut version: u64,
) {
    let mut retry = RETRY_MIN;
    let mut failing: Option<String> = None;
    loop {
        let started = Instant::now();
        match weft_client::poll_volfile(&servers, &volume, version, POLL_WAIT).await {
            Ok(r) => {
                if let Some(why) = failing.take() {
                    tracing::info!("volfile servers answer again (after: {why})");
                }
                retry = RETRY_MIN;
                match r {
                    Some(f) if f.version > version => {
                        apply(&mount, &volume, &f).await;
                        version = f.version;
                    }
                    Some(f) => {
                        tracing::warn!(
                            "{} answered version {} when asked for one after {version}; asking again shortly",
                            f.server, f.version
                        );
                        tokio::time::sleep(RETRY_MAX / 10).await;
                    }
                    // A server that answers "no change" at once is not waiting: do not spin.
                    None if started.elapsed() < Duration::from_secs(1) => {
                        tokio::time::sleep(Duration::from_secs(1)).await
                    }
                    None => {}
                }
            }
            Err(e) => {
                let why = if e.is_unknown_volume() {
                    format!("{e} (deleted?); the mount keeps its current graph")
                } else {
                    e.to_string()
                };
                if failing.as_deref() != Some(why.as_str()) {
                    tracing::warn!("cannot follow volume {volume}: {why}; retrying");
                    failing = Some(why);
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Applies a new version of the volume's volfile to the mount: when the graph keeps its
/// shape, the translators whose options changed are reconfigured in place; when it does
/// not (or a translator cannot take its new options live), a new graph is built and, once
/// it is up, serves new requests while files already open finish on the old one. A
/// volfile that does not check, or a new graph that does not come up, is logged and the
/// mount keeps serving the graph it has.
async fn apply(mount: &weft_fuse::Mount, volume: &str, f: &weft_client::FetchedVolfile) {
    let v = f.version;
    let registry = crate::registry::registry();
    let vf = match weft_core::volfile::Volfile::parse(&f.volfile)
        .map_err(weft_core::ReconfigureError::Invalid)
        .and_then(|vf| {
            weft_core::Graph::check(&vf, &registry)
                .map(|()| vf)
                .map_err(weft_core::ReconfigureError::Invalid)
        }) {
        Ok(vf) => vf,
        Err(e) => {
            tracing::error!(
                "volume {volume} version {v} from {}: {e}; keeping the current graph",
                f.server
            );
            return;
        }
    };
    let current = mount.volume();
    let why_new = match current.graph().shape_change(&vf) {
        Some(why) => why,
        None => match current.graph().reconfigure(&vf, &registry).await {
            Ok(r) if r.refused.is_empty() => {
                if r.applied.is_empty() {
                    tracing::info!("volume {volume} version {v}: no option of this graph changed");
                }
                for (name, keys) in &r.applied {
                    tracing::info!(
                        "volume {volume} version {v}: reconfigured {name} ({})",
                        keys.join(", ")
                    );
                }
                return;
            }
            Ok(r) => {
                for (name, keys) in &r.applied {
                    tracing::info!(
                        "volume {volume} version {v}: reconfigured {name} ({})",
                        keys.join(", ")
                    );
                }
                r.refused
                    .iter()
                    .map(|(name, keys, why)| {
                        format!("{name} cannot change {} live: {why}", keys.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Err(e) => {
                tracing::error!("volume {volume} version {v}: {e}; keeping the current graph");
                return;
            }
        },
    };
    tracing::info!("volume {volume} version {v}: a new graph is needed ({why_new}); building it");
    let opened = weft_client::Volume::from_volfile(
        &f.volfile,
        registry,
        weft_client::OpenOptions::default(),
    )
    .await;
    match opened {
        Ok(new) => {
            let n = mount.switch_volume(Arc::new(new));
            tracing::info!("volume {volume} version {v}: now serving graph {n}");
            let moved = mount.migrate_open_files().await;
            if moved > 0 {
                tracing::info!("volume {volume}: {moved} open file(s) moved to graph {n}");
            }
        }
        Err(e) => tracing::error!(
            "volume {volume} version {v}: the new graph did not come up ({e}); keeping the current graph"
        ),
    }
}

fn check_mountpoint(mp: &Path) -> Result<()> {
    match std::fs::metadata(mp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mountpoint {} does not exist", mp.display())
        }
        Err(e) => bail!("mountpoint {}: {e}", mp.display()),
        Ok(m) if !m.is_dir() => bail!("mountpoint {} is not a directory", mp.display()),
        Ok(_) => {}
    }
    if weft_fuse::is_mounted(mp) {
        bail!(
            "mountpoint {} is already mounted; unmount it first (umount {})",
            mp.display(),
            mp.display()
        );
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing: load the fuse module (modprobe fuse) or install fuse3");
    }
    Ok(())
}

/// Starts this same command in the foreground in a new session, its output to the log
/// file, and waits until the mount is up (or the child fails, whose log is then shown).
fn detach(a: &MountArgs, mp: &Path) -> Result<()> {
    let log = a.log_file.clone().unwrap_or_else(|| default_log_file(mp));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the weft binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount").arg("--foreground");
    if let Some(vf) = &a.volfile {
        cmd.arg("--volfile").arg(vf);
    }
    if let Some(src) = &a.source {
        cmd.arg(src);
    }
    if !a.backup_volfile_servers.is_empty() {
        cmd.arg("--backup-volfile-servers")
            .arg(a.backup_volfile_servers.join(","));
    }
    cmd.arg(mp);
    if let Some(t) = a.attr_timeout {
        cmd.arg("--attr-timeout").arg(t.to_string());
    }
    if let Some(t) = a.entry_timeout {
        cmd.arg("--entry-timeout").arg(t.to_string());
    }
    if a.selinux {
        cmd.arg("--selinux");
    }
    cmd.arg("--read-ahead-kb").arg(a.read_ahead_kb.to_string());
    cmd.arg("--log-level")
        .arg(&a.log_level)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the mount process")?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if weft_fuse::is_mounted(mp) {
            println!(
                "weft: mounted at {} (pid {}, log {})",
                mp.display(),
                child.id(),
                log.display()
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            bail!(
                "mount process exited ({status}) before mounting; last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    bail!("mount did not appear within 30 s; see {}", log.display())
}

pub fn init_logging(level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("bad --log-level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .ok();
    Ok(())
}

/// Prints the statedump of the volume mounted at `mountpoint`.
pub fn statedump(mountpoint: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if !weft_fuse::is_mounted(mountpoint) {
        bail!("{} is not a mountpoint", mountpoint.display());
    }
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
    let name = std::ffi::CString::new(weft_fuse::STATEDUMP_XATTR)?;
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: both strings are NUL-terminated and buf is valid for its length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        bail!(
            "{} does not answer a statedump ({}): is it a weft mount?",
            mountpoint.display(),
            std::io::Error::last_os_error()
        );
    }
    buf.truncate(n as usize);
    print!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}
