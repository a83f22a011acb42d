//! `weft demo`: a one-node pool under ./.weft (a management daemon and its brick process),
//! a one-brick volume `demo` in it, mounted at ./mnt, for a first look.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use weft_mgmt::client::Api;
use weft_mgmt::types::{CreateVolumeRequest, Done, StartRequest, VolumeInfo};

/// Arguments of `weft demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// What to do.
    #[arg(value_enum, default_value_t = DemoAction::Start)]
    action: DemoAction,
    /// Where the pool's state, the brick and the logs live.
    #[arg(long, default_value = ".weft")]
    state_dir: PathBuf,
    /// Where to mount.
    #[arg(long, default_value = "mnt")]
    mountpoint: PathBuf,
    /// Where the demo's management daemon listens (HOST[:PORT]).
    #[arg(long, default_value = "127.0.0.1")]
    listen: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum DemoAction {
    /// Start the pool, create and start the volume if needed, and mount it.
    Start,
    /// Unmount, and stop the management daemon and the brick process (state is kept).
    Stop,
    /// Say what runs.
    Status,
}

fn pid_alive(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

fn stop_pid(pid_file: &Path, what: &str) {
    if let Some(pid) = pid_alive(pid_file) {
        // SAFETY: kill(2) of the process our own pid file names.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        // Until the process itself is gone (its pid file goes a little earlier).
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        for _ in 0..200 {
            if !running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("weft demo: stopped the {what} (pid {pid})");
    }
}

/// Starts the demo's mgmtd (detached, in its own session) unless it runs.
fn start_mgmtd(a: &DemoArgs, state: &Path) -> Result<()> {
    let pid_file = state.join("mgmtd.pid");
    if pid_alive(&pid_file).is_some() {
        return Ok(());
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("mgmtd.log"))?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["mgmtd", "--listen", &a.listen, "--workdir"])
        .arg(state.join("mgmtd"))
        .arg("--pid-file")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the daemon leaves this terminal's session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start weft mgmtd")?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
        &mut line,
    )?;
    if !line.contains("listening") {
        bail!(
            "weft mgmtd did not start; see {}",
            state.join("mgmtd.log").display()
        );
    }
    Ok(())
}

/// Runs the demo action.
pub fn run(a: DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&a.state_dir)
        .with_context(|| format!("cannot create {}", a.state_dir.display()))?;
    let state = a.state_dir.canonicalize()?;
    let mp = std::env::current_dir()?.join(&a.mountpoint);
    let (host, port) = weft_mgmt::node::split_host_port(&a.listen, weft_core::MGMT_PORT)
        .map_err(|e| anyhow::anyhow!("--listen: {e}"))?;
    match a.action {
        DemoAction::Status => {
            match pid_alive(&state.join("mgmtd.pid")) {
                Some(p) => println!("weft demo: mgmtd runs (pid {p}) on {host}:{port}"),
                None => println!("weft demo: mgmtd is not running"),
            }
            if weft_fuse::is_mounted(&mp) {
                println!("weft demo: mounted at {}", mp.display());
            } else {
                println!("weft demo: not mounted");
            }
            Ok(())
        }
        DemoAction::Stop => {
            if weft_fuse::is_mounted(&mp) {
                let st = Command::new("umount")
                    .arg(&mp)
                    .status()
                    .context("cannot run umount")?;
                if !st.success() {
                    bail!(
                        "umount {} failed: is something still using it?",
                        mp.display()
                    );
                }
                println!("weft demo: unmounted {}", mp.display());
            }
            stop_pid(&state.join("mgmtd.pid"), "management daemon");
            stop_pid(&state.join("mgmtd/run/brickd.pid"), "brick process");
            Ok(())
        }
        DemoAction::Start => {
            if weft_fuse::is_mounted(&mp) {
                println!("weft demo: already mounted at {}", mp.display());
                return Ok(());
            }
            start_mgmtd(&a, &state)?;
            let token = std::fs::read_to_string(state.join("mgmtd/token"))?;
            let api = Api::new(
                &format!("http://{host}:{port}"),
                Some(token.trim().to_string()),
                Duration::from_secs(60),
            );
            let brick = state.join("demo-brick");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let vols: Vec<VolumeInfo> = api.get("/v1/volumes").await?;
                    let demo = vols.iter().find(|v| v.name == "demo");
                    if demo.is_none() {
                        let _: Done = api
                            .post(
                                "/v1/volumes",
                                &CreateVolumeRequest {
                                    name: "demo".into(),
                                    bricks: vec![format!("{host}:{}", brick.display())],
                                    force: true,
                                    ..Default::default()
                                },
                            )
                            .await?;
                    }
                    // Force: also when already started, so it returns once the brick is
                    // served (after a restart the brick process may still be coming up).
                    let _: Done = api
                        .post("/v1/volumes/demo/start", &StartRequest { force: true })
                        .await?;
                    anyhow::Ok(())
                })?;
            std::fs::create_dir_all(&mp)?;
            crate::mount::run(crate::mount::MountArgs {
                source: Some(format!("{host}:{port}:/demo")),
                volfile: None,
                backup_volfile_servers: Vec::new(),
                mountpoint: Some(mp.clone()),
                foreground: false,
                attr_timeout: None,
                entry_timeout: None,
                selinux: false,
                read_ahead_kb: weft_fuse::DEFAULT_READ_AHEAD_KB,
                log_level: "info".into(),
                log_file: Some(state.join("demo-mount.log")),
            })?;
            println!(
                "\nWeft demo pool is up: one node, volume `demo` with one brick.\n  brick:   {b} (plain files; look with ls)\n  mount:   {m}\n  state:   {s}\n\nTry:\n  echo hello > {m}/hello.txt && cat {m}/hello.txt\n  export WEFT_MGMT={host}:{port} WEFT_TOKEN_FILE={s}/mgmtd/token\n  weft volume info demo; weft volume status demo\n  weft volume set demo performance.write-behind off   # reaches the mount at once\n  weft statedump {m}     # per-FOP counts and latencies\nStop it with:\n  weft demo stop   (unmounts and stops the daemons; the volume is kept)",
                b = brick.display(),
                m = mp.display(),
                s = state.display(),
            );
            Ok(())
        }
    }
}
