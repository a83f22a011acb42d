//! `weft mount` and `weft statedump`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::volfile_cmd;

/// Arguments of `weft mount`.
#[derive(Args, Clone, Debug)]
pub struct MountArgs {
    /// The client volfile describing the graph to serve.
    #[arg(long, value_name = "FILE")]
    pub volfile: PathBuf,
    /// An existing, empty, unmounted directory.
    pub mountpoint: PathBuf,
    /// Stay in the foreground (logs to stderr) instead of detaching.
    #[arg(short, long)]
    pub foreground: bool,
    /// Seconds the kernel may cache attributes.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub attr_timeout: f64,
    /// Seconds the kernel may cache name lookups.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub entry_timeout: f64,
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
    let attr_timeout = timeout("attr-timeout", a.attr_timeout)?;
    let entry_timeout = timeout("entry-timeout", a.entry_timeout)?;
    let vf = volfile_cmd::load(&a.volfile)?;
    weft_core::Graph::check(&vf, &crate::registry::registry())
        .with_context(|| format!("bad volfile {}", a.volfile.display()))?;
    check_mountpoint(&a.mountpoint)?;
    if !a.foreground {
        return detach(&a);
    }
    init_logging(&a.log_level)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("weft-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let volume = rt
        .block_on(weft_client::Volume::from_volfile(
            &vf.to_string(),
            crate::registry::registry(),
            weft_client::OpenOptions::default(),
        ))
        .with_context(|| format!("cannot open the volume of {}", a.volfile.display()))?;
    let volume = Arc::new(volume);
    let cfg = weft_fuse::MountConfig {
        attr_timeout,
        entry_timeout,
        fsname: format!("weft:{}", a.volfile.display()),
        ..Default::default()
    };
    let mount = weft_fuse::mount(volume, &a.mountpoint, &cfg, rt.handle().clone())?;
    tracing::info!(
        "mounted {} at {}",
        a.volfile.display(),
        a.mountpoint.display()
    );
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: unmounting"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: unmounting"); break; }
                _ = tick.tick() => if mount.is_finished() { tracing::info!("unmounted from outside"); break; },
            }
        }
        mount.unmount().await.context("unmount failed")?;
        tracing::info!("unmounted {}", a.mountpoint.display());
        anyhow::Ok(())
    })
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
fn detach(a: &MountArgs) -> Result<()> {
    let log = a
        .log_file
        .clone()
        .unwrap_or_else(|| default_log_file(&a.mountpoint));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the weft binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg("--foreground")
        .arg("--volfile")
        .arg(&a.volfile)
        .arg(&a.mountpoint)
        .arg("--attr-timeout")
        .arg(a.attr_timeout.to_string())
        .arg("--entry-timeout")
        .arg(a.entry_timeout.to_string())
        .arg("--log-level")
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
        if weft_fuse::is_mounted(&a.mountpoint) {
            println!(
                "weft: mounted at {} (pid {}, log {})",
                a.mountpoint.display(),
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
        std::thread::sleep(Duration::from_millis(50));
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
