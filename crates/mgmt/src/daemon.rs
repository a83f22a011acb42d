//! `weft mgmtd`: opens the workdir's store, joins or starts the pool's consensus, serves
//! the REST API, runs the brick process and reconciles it with the pool state, and runs
//! background tasks.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use weft_consensus::Consensus;
use weft_core::Registry;

use crate::brick_check;
use crate::brickproc::{BrickProc, BrickProcConfig};
use crate::client::PeerClient;
use crate::model::{self, Command, PoolState};
use crate::node::{Identity, Node};
use crate::store::LocalStore;

/// How to run a mgmtd.
#[derive(Clone, Debug)]
pub struct Config {
    /// The host (name or address) it listens on and peers reach it by.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The brick process's port.
    pub brick_port: u16,
    /// Where its state lives.
    pub workdir: PathBuf,
    /// The `weft` executable, run as `weft brickd`.
    pub exe: PathBuf,
    /// The highest op-version to claim (normally [`model::OP_VERSION`]; lower it to test
    /// mixed-version pools).
    pub max_op_version: u32,
    /// A pid file to write once serving.
    pub pid_file: Option<PathBuf>,
}

/// Why mgmtd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or socket could not be set up.
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StartError + '_ {
    move |e| StartError::Setup(format!("{what}: {e}"))
}

/// The token file in `workdir`.
pub fn token_path(workdir: &Path) -> PathBuf {
    workdir.join("token")
}

/// Writes the token file, mode 0600, replacing it atomically.
pub fn write_token(workdir: &Path, token: &str) -> std::io::Result<()> {
    let tmp = workdir.join(".token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, token_path(workdir))
}

fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The node's uuid and consensus id, made at its first start.
fn identity(store: &LocalStore) -> Result<(String, u64), StartError> {
    if let (Some(u), Some(i)) = (
        store.get("uuid").map_err(setup("store"))?,
        store.get("node-id").map_err(setup("store"))?,
    ) {
        let id = u64::from_le_bytes(
            i.as_slice()
                .try_into()
                .map_err(|_| StartError::Setup("store: a bad node id".into()))?,
        );
        return Ok((String::from_utf8_lossy(&u).into_owned(), id));
    }
    let u = uuid::Uuid::new_v4();
    let id = u64::from_le_bytes(u.as_bytes()[..8].try_into().expect("8 bytes")) >> 1 | 1;
    store
        .put("uuid", u.to_string().as_bytes())
        .map_err(setup("store"))?;
    store
        .put("node-id", &id.to_le_bytes())
        .map_err(setup("store"))?;
    Ok((u.to_string(), id))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, StartError> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| StartError::Setup(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| StartError::Setup(format!("{host} has no address")))
}

/// Runs mgmtd until SIGTERM or SIGINT. Prints one line to stdout when it serves.
pub async fn run(cfg: Config, registry: Arc<Registry>) -> Result<(), StartError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.workdir)
        .map_err(setup("cannot create the workdir"))?;
    std::fs::set_permissions(&cfg.workdir, std::fs::Permissions::from_mode(0o700))
        .map_err(setup("workdir"))?;
    let store = LocalStore::open(&cfg.workdir).map_err(|e| {
        StartError::Setup(format!(
            "{e} (is another mgmtd using {}?)",
            cfg.workdir.display()
        ))
    })?;
    let (uuid, id) = identity(&store)?;
    let token = match std::fs::read_to_string(token_path(&cfg.workdir)) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let t = new_token();
            write_token(&cfg.workdir, &t).map_err(setup("cannot write the token file"))?;
            t
        }
    };
    let listen = resolve(&cfg.host, cfg.port)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| StartError::Setup(format!("cannot listen on {listen}: {e}")))?;
    let secret: weft_consensus::Secret = Arc::new(parking_lot::RwLock::new(token));
    let addr = format!("http://{}:{}", cfg.host, cfg.port);
    let consensus = Consensus::<PoolState>::open(store.db(), id, addr, secret.clone())
        .await
        .map_err(setup("consensus"))?;
    let run_dir = cfg.workdir.join("run");
    std::fs::create_dir_all(&run_dir).map_err(setup("run dir"))?;
    let bricks = BrickProc::new(
        BrickProcConfig {
            exe: cfg.exe.clone(),
            listen: SocketAddr::new(listen.ip(), cfg.brick_port),
            control: run_dir.join("brickd.sock"),
            pid_file: run_dir.join("brickd.pid"),
            log: cfg.workdir.join("log").join("brickd.log"),
        },
        store.clone(),
    );
    let tasks = crate::tasks::Tasks::new(store.clone(), cfg.host.clone(), crate::tasks::kinds());
    let node = Arc::new(Node {
        mounts: Default::default(),
        me: Identity {
            uuid,
            id,
            host: cfg.host.clone(),
            port: cfg.port,
            brick_port: cfg.brick_port,
            max_op_version: cfg.max_op_version,
        },
        workdir: cfg.workdir.clone(),
        store,
        consensus,
        token: secret,
        bricks,
        registry,
        peers: PeerClient,
        tasks,
    });
    let app = crate::api::router(node.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // A node of no pool becomes a pool of one (a fresh node, or one reset by a join that
    // never completed); a member waits for its pool.
    let members = node.consensus.members();
    if members.is_empty() {
        node.consensus
            .initialize_single()
            .await
            .map_err(setup("consensus"))?;
    }
    let n2 = node.clone();
    tokio::spawn(async move { register_self(n2).await });
    let n3 = node.clone();
    let reconciler = tokio::spawn(async move { reconcile_loop(n3).await });
    node.tasks.resume_all();
    let n4 = node.clone();
    let shd = tokio::spawn(async move {
        // The self-heal daemon: pending entries on this node's bricks start a heal task.
        loop {
            tokio::time::sleep(crate::heal::SHD_INTERVAL).await;
            n4.shd_tick().await;
        }
    });

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(setup("SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup("SIGINT"))?;
    if let Some(p) = &cfg.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id())).map_err(setup("pid file"))?;
    }
    // Announced once the pool's records hold this node (a fresh one adds itself in the
    // background, above), so a `volume create` naming it right after finds it; at most
    // 5 s, since a node waiting to be probed into a pool is in none yet.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !node.state().peers.contains_key(&node.me.id) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    println!(
        "weft mgmtd: listening on {listen}, node {}, workdir {}",
        node.me.uuid,
        cfg.workdir.display()
    );
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping (the brick process keeps serving)"),
        _ = int.recv() => tracing::info!("SIGINT: stopping (the brick process keeps serving)"),
        r = server => tracing::error!("the API server ended: {r:?}"),
    }
    node.tasks.shutdown();
    reconciler.abort();
    shd.abort();
    node.consensus.shutdown().await;
    if let Some(p) = &cfg.pid_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Makes sure the pool lists this node (and how to reach it) once it is a member.
async fn register_self(node: Arc<Node>) {
    loop {
        let s = node.state();
        let me = node.self_peer();
        let known = s.peers.get(&node.me.id);
        let member = node.consensus.members().iter().any(|m| m.id == node.me.id);
        if member {
            match known {
                // Keep the name the pool knows it by (what `peer probe` was given).
                Some(p)
                    if p.mgmt_port == me.mgmt_port
                        && p.brick_port == me.brick_port
                        && p.max_op_version == me.max_op_version => {}
                Some(p) => {
                    let mut upd = me.clone();
                    upd.host = p.host.clone();
                    if let Err(e) = node.propose(Command::AddPeer(upd)).await {
                        tracing::debug!("updating this node's record: {e}");
                    }
                }
                None if s.peers.is_empty() => {
                    if let Err(e) = node.propose(Command::AddPeer(me)).await {
                        tracing::debug!("adding this node to its pool: {e}");
                    }
                }
                None => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Makes this node's bricks match the pool state: directories and markers for every
/// volume with a brick here, the brick process running, exactly the bricks of started
/// volumes served; markers of deleted volumes removed. Runs on every state change and
/// every 2 s (which is also how a dead brick process is noticed and started again).
async fn reconcile_loop(node: Arc<Node>) {
    let mut rx = node.consensus.subscribe();
    loop {
        let state = node.state();
        if let Err(e) = reconcile(&node, &state).await {
            tracing::warn!("reconcile: {e}");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.changed()).await;
    }
}

const MARKED: &str = "marked/";

async fn reconcile(node: &Node, state: &PoolState) -> Result<(), String> {
    // Markers: every brick of this node belongs to its volume.
    let mut mine: BTreeMap<String, String> = BTreeMap::new();
    for v in state.volumes.values() {
        for b in v.bricks.iter().filter(|b| b.node == node.me.id) {
            mine.insert(b.path.clone(), v.id.clone());
        }
    }
    for (path, id) in &mine {
        let p = Path::new(path);
        if brick_check::marker(p).as_deref() == Some(id.as_str()) {
            continue;
        }
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
        {
            tracing::warn!("cannot create brick directory {path}: {e}");
            continue;
        }
        match brick_check::set_marker(p, id) {
            Ok(()) => node
                .store
                .put(&format!("{MARKED}{path}"), id.as_bytes())
                .map_err(|e| e.to_string())?,
            Err(e) => tracing::warn!("cannot mark brick {path}: {e}"),
        }
    }
    for (k, id) in node.store.scan(MARKED).map_err(|e| e.to_string())? {
        let path = &k[MARKED.len()..];
        let id = String::from_utf8_lossy(&id);
        if mine.get(path).map(String::as_str) != Some(&*id) {
            let p = Path::new(path);
            if brick_check::marker(p).as_deref() == Some(&*id) {
                if let Err(e) = brick_check::clear_marker(p) {
                    tracing::warn!("cannot clear the marker of {path}: {e}");
                    continue;
                }
            }
            node.store.delete(&k).map_err(|e| e.to_string())?;
        }
    }
    let want = node.wanted_bricks(state);
    node.bricks.converge(&want).await
}

/// What `model` a fresh binary claims: re-exported for the CLI's defaults.
pub const DEFAULT_OP_VERSION: u32 = model::OP_VERSION;
