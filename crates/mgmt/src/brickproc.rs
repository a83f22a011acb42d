//! The node's one multiplexed brick process (`weft brickd`): started, watched and started
//! again by mgmtd, and told which brick graphs to serve through its control socket.
//!
//! The brick process outlives mgmtd on purpose (as GlusterFS's bricks outlive glusterd): a
//! restarted mgmtd finds it through its control socket and pid file and adopts it, so
//! clients never notice a management restart. Which graphs it serves is remembered in the
//! local store, so an adopted process is not reattached needlessly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader};
use weft_protocol::server::control;
use weft_wire::msg::{ControlReply, ControlRequest};

use crate::store::LocalStore;
use crate::types::LocalBricks;

/// How to start the brick process.
#[derive(Clone, Debug)]
pub struct BrickProcConfig {
    /// The `weft` executable (its `brickd` subcommand is run).
    pub exe: PathBuf,
    /// Where it serves bricks.
    pub listen: SocketAddr,
    /// Its control socket.
    pub control: PathBuf,
    /// Its pid file.
    pub pid_file: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
}

#[derive(Default)]
struct ProcState {
    restarts: u32,
    started_at: u64,
    ever_seen: bool,
    errors: BTreeMap<String, String>,
}

/// The supervisor of the brick process.
pub struct BrickProc {
    cfg: BrickProcConfig,
    store: LocalStore,
    state: parking_lot::Mutex<ProcState>,
    /// Serialises start, attach and detach.
    op: tokio::sync::Mutex<()>,
}

const ATTACHED: &str = "attached/";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl BrickProc {
    /// A supervisor; nothing is started until [`BrickProc::ensure_running`].
    pub fn new(cfg: BrickProcConfig, store: LocalStore) -> BrickProc {
        BrickProc {
            cfg,
            store,
            state: parking_lot::Mutex::new(ProcState::default()),
            op: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BrickProcConfig {
        &self.cfg
    }

    async fn ask(&self, req: ControlRequest) -> Result<String, String> {
        match tokio::time::timeout(
            Duration::from_secs(10),
            control::request(&self.cfg.control, &req),
        )
        .await
        {
            Err(_) => Err("the brick process did not answer in 10 s".into()),
            Ok(Err(e)) => Err(e),
            Ok(Ok(ControlReply::Ok(t))) => Ok(t),
            Ok(Ok(ControlReply::Err(e))) => Err(e),
        }
    }

    fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.cfg.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Served bricks and their client counts, if the process answers.
    async fn served(&self) -> Option<BTreeMap<String, u32>> {
        let text = self.ask(ControlRequest::Status).await.ok()?;
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(clients)) = (words.next(), words.next()) else {
                continue;
            };
            if let Some(n) = clients.strip_prefix("clients=") {
                out.insert(name.to_string(), n.parse().unwrap_or(0));
            }
        }
        Some(out)
    }

    /// Starts the brick process unless one answers on the control socket (a running one,
    /// perhaps left by a previous mgmtd, is adopted). A dead one is counted as a restart
    /// and every brick it served is forgotten (to be attached again).
    pub async fn ensure_running(&self) -> Result<(), String> {
        let _g = self.op.lock().await;
        if self.served().await.is_some() {
            let mut st = self.state.lock();
            if !st.ever_seen {
                st.ever_seen = true;
                st.started_at = std::fs::metadata(&self.cfg.pid_file)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or_else(now);
            }
            return Ok(());
        }
        // A process that holds the pid file but does not answer is stuck: replace it.
        let old = self.pid();
        if old > 0 && is_brickd(old) {
            tracing::warn!(pid = old, "the brick process does not answer; killing it");
            // SAFETY: kill has no memory preconditions; the pid was checked to be a brickd.
            unsafe { libc::kill(old as i32, libc::SIGKILL) };
            for _ in 0..50 {
                if !is_brickd(old) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let was_seen = self.state.lock().ever_seen;
        for (k, _) in self.store.scan(ATTACHED).map_err(|e| e.to_string())? {
            self.store.delete(&k).map_err(|e| e.to_string())?;
        }
        self.spawn().await?;
        let mut st = self.state.lock();
        if was_seen {
            st.restarts += 1;
            tracing::warn!(
                restarts = st.restarts,
                "the brick process had died; started it again"
            );
        }
        st.ever_seen = true;
        st.started_at = now();
        Ok(())
    }

    async fn spawn(&self) -> Result<(), String> {
        if let Some(dir) = self.cfg.log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.log)
            .map_err(|e| format!("cannot open {}: {e}", self.cfg.log.display()))?;
        let mut cmd = tokio::process::Command::new(&self.cfg.exe);
        cmd.arg("brickd")
            .arg("--listen")
            .arg(self.cfg.listen.to_string())
            .arg("--control")
            .arg(&self.cfg.control)
            .arg("--pid-file")
            .arg(&self.cfg.pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(false);
        // Its own session: a terminal's or a supervisor's signals to mgmtd do not reach it.
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {} brickd: {e}", self.cfg.exe.display()))?;
        let out = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(out).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        // Reap it whenever it exits, so it never lingers as a zombie.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match first {
            Ok(Ok(Some(l))) if l.contains("listening") => {
                tracing::info!("brick process: {l}");
                Ok(())
            }
            Ok(Ok(_)) => Err(format!(
                "the brick process exited at start (see {})",
                self.cfg.log.display()
            )),
            Ok(Err(e)) => Err(format!("reading the brick process's output: {e}")),
            Err(_) => Err("the brick process did not start within 20 s".into()),
        }
    }

    /// Makes the process serve exactly `want` (brick name -> server volfile): attaches the
    /// missing, reconfigures in place those whose volfile changed (reattaching them when
    /// that is refused), detaches the rest. Errors per brick are kept for `volume status`.
    pub async fn converge(&self, want: &BTreeMap<String, String>) -> Result<(), String> {
        self.ensure_running().await?;
        let _g = self.op.lock().await;
        let served = self.served().await.unwrap_or_default();
        let known: BTreeMap<String, String> = self
            .store
            .scan(ATTACHED)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| {
                (
                    k[ATTACHED.len()..].to_string(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        for name in served.keys() {
            let stale = match want.get(name) {
                None => true,
                Some(vf) if known.get(name) == Some(vf) => false,
                // Another volfile for a served brick (an option set or reset): applied in
                // place, so its clients keep their connections, open files and locks
                // (only those the new access policy refuses are disconnected). A change of
                // shape, or a brick process too old to know the request, is refused: then
                // the brick is detached and attached again.
                Some(vf) => match self
                    .ask(ControlRequest::Reconfigure {
                        volfile: vf.clone(),
                    })
                    .await
                {
                    Ok(_) => {
                        tracing::info!(brick = %name, "reconfigured in place");
                        self.store
                            .put(&format!("{ATTACHED}{name}"), vf.as_bytes())
                            .map_err(|e| e.to_string())?;
                        false
                    }
                    Err(e) => {
                        tracing::warn!(brick = %name, "cannot reconfigure in place ({e}): detaching and attaching it again");
                        true
                    }
                },
            };
            if stale {
                match self
                    .ask(ControlRequest::Detach {
                        brick: name.clone(),
                    })
                    .await
                {
                    Ok(_) => tracing::info!(brick = %name, "detached"),
                    Err(e) => tracing::warn!(brick = %name, "detach failed: {e}"),
                }
                self.store
                    .delete(&format!("{ATTACHED}{name}"))
                    .map_err(|e| e.to_string())?;
            }
        }
        let served = self.served().await.unwrap_or_default();
        let mut errors = BTreeMap::new();
        for (name, vf) in want {
            if served.contains_key(name) {
                continue;
            }
            match self
                .ask(ControlRequest::Attach {
                    volfile: vf.clone(),
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(brick = %name, "attached");
                    self.store
                        .put(&format!("{ATTACHED}{name}"), vf.as_bytes())
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => {
                    tracing::warn!(brick = %name, "attach failed: {e}");
                    errors.insert(name.clone(), e);
                }
            }
        }
        self.state.lock().errors = errors;
        Ok(())
    }

    /// What this node's brick process serves now.
    pub async fn local_status(&self) -> LocalBricks {
        let served = self.served().await;
        let st = self.state.lock();
        LocalBricks {
            online: served.is_some(),
            pid: if served.is_some() { self.pid() } else { 0 },
            port: self.cfg.listen.port(),
            restarts: st.restarts,
            started_at: st.started_at,
            attached: served.unwrap_or_default(),
            errors: st.errors.clone(),
        }
    }

    /// Every brick graph's statedump, as the brick process prints it.
    pub async fn statedump(&self) -> Result<String, String> {
        self.ask(ControlRequest::Statedump).await
    }
}

/// True when `pid` is a live `weft brickd` (its command line says so), so a recycled pid
/// of another program is never killed.
fn is_brickd(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => c.split(|b| *b == 0).any(|w| w == b"brickd"),
        Err(_) => false,
    }
}
