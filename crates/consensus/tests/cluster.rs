//! Real clusters: every node runs in-process behind its own HTTP server on
//! 127.0.0.1 (port 0) with its own redb file in a tempdir.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft_consensus::{Consensus, Error, NodeId, Options, Secret, StateMachine};

const SECRET: &str = "pool-secret-for-tests";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Kv {
    map: BTreeMap<String, String>,
    counter: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Cmd {
    SetIfAbsent { key: String, value: String },
    Incr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Resp {
    Set,
    Exists { current: String },
    Counter(u64),
}

impl StateMachine for Kv {
    type Command = Cmd;
    type Response = Resp;
    fn apply(&mut self, cmd: &Cmd) -> Resp {
        match cmd {
            Cmd::SetIfAbsent { key, value } => match self.map.get(key) {
                Some(cur) => Resp::Exists {
                    current: cur.clone(),
                },
                None => {
                    self.map.insert(key.clone(), value.clone());
                    Resp::Set
                }
            },
            Cmd::Incr => {
                self.counter += 1;
                Resp::Counter(self.counter)
            }
        }
    }
}

fn set(key: &str, value: &str) -> Cmd {
    Cmd::SetIfAbsent {
        key: key.into(),
        value: value.into(),
    }
}

fn secret() -> Secret {
    Arc::new(parking_lot_rw(SECRET))
}

fn parking_lot_rw(s: &str) -> weft_consensus::parking_lot::RwLock<String> {
    weft_consensus::parking_lot::RwLock::new(s.to_string())
}

struct Node {
    id: NodeId,
    c: Consensus<Kv>,
    port: u16,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

fn db_path(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node{id}.redb"))
}

/// Opens the redb file, retrying briefly while a just-stopped node's last
/// tasks still hold it.
async fn open_db(path: &Path) -> Arc<redb::Database> {
    for _ in 0..100 {
        match redb::Database::create(path) {
            Ok(db) => return Arc::new(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
    panic!("{} still open after 5 s", path.display());
}

async fn start(dir: &Path, id: NodeId, port: u16, opts: Options) -> Node {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = db_path(dir, id);
    let db = open_db(&path).await;
    let c = Consensus::<Kv>::open_with(db, id, format!("http://127.0.0.1:{port}"), secret(), opts)
        .await
        .unwrap();
    let (tx, rx) = oneshot::channel();
    let app = c.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Node {
        id,
        c,
        port,
        path,
        stop: Some(tx),
        server: Some(server),
    }
}

impl Node {
    /// Stops raft and the HTTP server and drops everything of this node but
    /// its redb file; returns (port, db path) for a restart.
    async fn kill(mut self) -> (u16, PathBuf) {
        self.c.shutdown().await;
        let _ = self.stop.take().unwrap().send(());
        let server = self.server.take().unwrap();
        if tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .is_err()
        {
            panic!("node {} server did not stop", self.id);
        }
        (self.port, self.path.clone())
    }
}

fn opts() -> Options {
    Options::default()
}

/// Polls `f` every 50 ms until it is true, for at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs}s waiting for: {what}");
}

/// Starts three nodes; node 1 initializes and adds 2 and 3 as voters.
async fn three(dir: &Path, o: Options) -> Vec<Node> {
    let n1 = start(dir, 1, 0, o.clone()).await;
    let n2 = start(dir, 2, 0, o.clone()).await;
    let n3 = start(dir, 3, 0, o).await;
    n1.c.initialize_single().await.unwrap();
    n1.c.add_voter(2, n2.c.addr().to_string()).await.unwrap();
    n1.c.add_voter(3, n3.c.addr().to_string()).await.unwrap();
    for n in [&n1, &n2, &n3] {
        let c = n.c.clone();
        eventually(5, "all see 3 voters", || {
            let c = c.clone();
            async move { c.members().iter().filter(|m| m.voter).count() == 3 }
        })
        .await;
    }
    vec![n1, n2, n3]
}

async fn converge(nodes: &[&Consensus<Kv>], want: &Kv, secs: u64) {
    for c in nodes {
        let c = (*c).clone();
        eventually(secs, &format!("node {} converges", c.id()), || {
            let c = c.clone();
            let want = want.clone();
            async move { c.state() == want }
        })
        .await;
    }
}

async fn wait_leader_among(nodes: &[&Consensus<Kv>], secs: u64) -> NodeId {
    let ids: Vec<NodeId> = nodes.iter().map(|c| c.id()).collect();
    let cs: Vec<Consensus<Kv>> = nodes.iter().map(|c| (*c).clone()).collect();
    let mut found = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if let Some(c) = cs.iter().find(|c| c.is_leader()) {
            found = Some(c.id());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l = found.unwrap_or_else(|| panic!("no leader among {ids:?} within {secs}s"));
    assert!(ids.contains(&l));
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path(), 1, 0, opts()).await;
    assert!(matches!(
        n.c.propose(Cmd::Incr).await,
        Err(Error::NotMember(1))
    ));
    n.c.initialize_single().await.unwrap();
    n.c.initialize_single().await.unwrap(); // idempotent
    assert_eq!(n.c.propose(set("a", "1")).await.unwrap(), Resp::Set);
    assert_eq!(n.c.propose(Cmd::Incr).await.unwrap(), Resp::Counter(1));
    assert_eq!(n.c.state().map["a"], "1");
    assert_eq!(n.c.read_consistent().await.unwrap().counter, 1);
    assert_eq!(n.c.leader(), Some(1));
    let members = n.c.members();
    assert_eq!(members.len(), 1);
    assert!(members[0].voter);
    let before = n.c.state();

    let (port, _) = n.kill().await;
    let n = start(dir.path(), 1, port, opts()).await;
    // Restored from redb before any leader exists.
    assert_eq!(n.c.state(), before);
    n.c.initialize_single().await.unwrap();
    assert_eq!(
        n.c.propose(set("a", "2")).await.unwrap(),
        Resp::Exists {
            current: "1".into()
        }
    );
    assert_eq!(n.c.propose(Cmd::Incr).await.unwrap(), Resp::Counter(2));
    let mut watch = n.c.subscribe();
    let seen = *watch.borrow_and_update();
    assert_eq!(n.c.propose(Cmd::Incr).await.unwrap(), Resp::Counter(3));
    assert!(watch.has_changed().unwrap());
    assert!(*watch.borrow() > seen);
    n.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_forward_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(dir.path(), opts()).await;
    let leader = nodes[0].c.leader().unwrap();
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();
    // Forwarded to the leader, and visible locally once it returns.
    assert_eq!(follower.c.propose(set("k", "v")).await.unwrap(), Resp::Set);
    assert_eq!(follower.c.state().map["k"], "v");
    assert_eq!(
        follower.c.propose(Cmd::Incr).await.unwrap(),
        Resp::Counter(1)
    );
    // A consistent read on any node sees everything.
    for n in &nodes {
        let s = n.c.read_consistent().await.unwrap();
        assert_eq!(s.counter, 1);
        assert_eq!(s.map["k"], "v");
    }
    let want = follower.c.state();
    let cs: Vec<&Consensus<Kv>> = nodes.iter().map(|n| &n.c).collect();
    converge(&cs, &want, 5).await;
    // add_voter of an existing voter is idempotent; remove + re-add works.
    nodes[1]
        .c
        .add_voter(3, nodes[2].c.addr().to_string())
        .await
        .unwrap();
    nodes[1].c.remove_node(3).await.unwrap();
    assert_eq!(nodes[0].c.members().len(), 2);
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_and_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three(dir.path(), opts()).await;
    nodes[0].c.propose(set("before", "1")).await.unwrap();
    let leader = nodes[0].c.leader().unwrap();
    let idx = nodes.iter().position(|n| n.id == leader).unwrap();
    let dead = nodes.remove(idx);
    let dead_id = dead.id;
    let t0 = std::time::Instant::now();
    let (port, _) = dead.kill().await;

    let cs: Vec<&Consensus<Kv>> = nodes.iter().map(|n| &n.c).collect();
    let new_leader = wait_leader_among(&cs, 10).await;
    eprintln!("new leader {new_leader} after {:?}", t0.elapsed());
    assert_ne!(new_leader, dead_id);
    for n in &nodes {
        n.c.propose(Cmd::Incr).await.unwrap();
    }
    assert_eq!(
        nodes[0].c.propose(set("after", "2")).await.unwrap(),
        Resp::Set
    );
    let want = nodes[0].c.read_consistent().await.unwrap();
    assert_eq!(want.counter, 2);

    let back = start(dir.path(), dead_id, port, opts()).await;
    let mut cs: Vec<&Consensus<Kv>> = nodes.iter().map(|n| &n.c).collect();
    cs.push(&back.c);
    converge(&cs, &want, 10).await;
    // The returning node takes part again: proposals through it work.
    assert_eq!(back.c.propose(Cmd::Incr).await.unwrap(), Resp::Counter(3));
    back.kill().await;
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_follower_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        snapshot_every: 5,
        keep_logs_after_snapshot: 0,
        ..opts()
    };
    let mut nodes = three(dir.path(), o.clone()).await;
    let leader = nodes[0].c.leader().unwrap();
    let idx = nodes.iter().position(|n| n.id != leader).unwrap();
    let down = nodes.remove(idx);
    let down_id = down.id;
    let down_applied = down.c.applied_index();
    let (port, _) = down.kill().await;

    for i in 0..20 {
        nodes[i % 2]
            .c
            .propose(set(&format!("k{i}"), "x"))
            .await
            .unwrap();
        nodes[i % 2].c.propose(Cmd::Incr).await.unwrap();
    }
    let want = nodes[0].c.read_consistent().await.unwrap();
    assert_eq!(want.counter, 20);
    // The leader compacted past what the stopped follower has: it can only
    // catch up through install-snapshot.
    let lc = nodes.iter().find(|n| n.id == leader).unwrap().c.clone();
    eventually(10, "leader purges its log", || {
        let lc = lc.clone();
        async move { lc.purged_index().unwrap_or(0) > down_applied + 1 }
    })
    .await;

    let back = start(dir.path(), down_id, port, o).await;
    converge(&[&back.c], &want, 15).await;
    assert!(back.c.snapshot_index().unwrap_or(0) > down_applied);
    // And it keeps applying ordinary log entries afterwards.
    back.c.propose(Cmd::Incr).await.unwrap();
    let want = nodes[0].c.read_consistent().await.unwrap();
    let mut cs: Vec<&Consensus<Kv>> = nodes.iter().map(|n| &n.c).collect();
    cs.push(&back.c);
    converge(&cs, &want, 5).await;
    // Restart it once more: it reloads the installed snapshot + its state.
    let (port, _) = back.kill().await;
    let back = start(dir.path(), down_id, port, Options::default()).await;
    assert_eq!(back.c.state(), want);
    back.kill().await;
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_proposals_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(dir.path(), opts()).await;
    for round in 0..3 {
        let key = format!("vol{round}");
        let (a, b) = tokio::join!(
            nodes[1].c.propose(set(&key, "from-2")),
            nodes[2].c.propose(set(&key, "from-3")),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let wins = [&a, &b].iter().filter(|r| ***r == Resp::Set).count();
        assert_eq!(wins, 1, "round {round}: {a:?} {b:?}");
        let winner = if a == Resp::Set { "from-2" } else { "from-3" };
        let loser = if a == Resp::Set { &b } else { &a };
        assert_eq!(
            loser,
            &Resp::Exists {
                current: winner.into()
            }
        );
        for n in &nodes {
            assert_eq!(n.c.read_consistent().await.unwrap().map[&key], winner);
        }
    }
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_then_join_another_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), 1, 0, opts()).await;
    a.c.initialize_single().await.unwrap();
    a.c.propose(set("mine", "a")).await.unwrap();
    a.c.reset().await.unwrap();
    assert_eq!(a.c.state(), Kv::default());
    assert!(a.c.members().is_empty());
    assert_eq!(a.c.applied_index(), 0);
    assert!(matches!(
        a.c.propose(Cmd::Incr).await,
        Err(Error::NotMember(1))
    ));

    let b = start(dir.path(), 2, 0, opts()).await;
    b.c.initialize_single().await.unwrap();
    b.c.propose(set("theirs", "b")).await.unwrap();
    b.c.add_voter(1, a.c.addr().to_string()).await.unwrap();
    let want = b.c.state();
    converge(&[&a.c], &want, 5).await;
    assert!(!a.c.state().map.contains_key("mine"));
    assert_eq!(a.c.propose(Cmd::Incr).await.unwrap(), Resp::Counter(1));
    assert_eq!(a.c.members().len(), 2);

    // The reset survives a restart (the wipe is durable).
    let (port, _) = a.kill().await;
    let a = start(dir.path(), 1, port, opts()).await;
    assert_eq!(a.c.state().counter, 1);
    a.kill().await;
    b.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_need_the_pool_secret() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path(), 1, 0, opts()).await;
    n.c.initialize_single().await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}/raft/{p}", n.port);
    let vote = serde_json::json!({"vote": {"leader_id": {"term": 99, "node_id": 7}, "committed": false}, "last_log_id": null});

    let r = http.post(url("vote")).json(&vote).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(url("vote"))
        .bearer_auth("wrong")
        .json(&vote)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for p in [
        "append-entries",
        "install-snapshot",
        "forward-propose",
        "forward-membership",
        "read-index",
    ] {
        let r = http.post(url(p)).json(&vote).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{p}");
    }
    let r = http.get(url("ping")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(url("ping"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The refused vote (term 99) changed nothing: still leader in term 1.
    assert!(n.c.is_leader());
    n.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_fails_clearly_and_local_reads_work() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        propose_timeout: Duration::from_secs(2),
        ..opts()
    };
    let mut nodes = three(dir.path(), o).await;
    nodes[0].c.propose(Cmd::Incr).await.unwrap();
    let want = nodes[0].c.read_consistent().await.unwrap();
    converge(&nodes.iter().map(|n| &n.c).collect::<Vec<_>>(), &want, 5).await;
    let survivor = nodes.remove(2);
    for n in nodes {
        n.kill().await;
    }
    let t0 = std::time::Instant::now();
    let err = survivor.c.propose(Cmd::Incr).await.unwrap_err();
    let msg = err.to_string();
    eprintln!("propose without quorum after {:?}: {msg}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        msg.contains("no quorum: 1 of 3 voting members reachable (need 2)"),
        "{msg}"
    );
    let err = survivor.c.read_consistent().await.unwrap_err();
    assert!(err.to_string().contains("no quorum"), "{err}");
    assert_eq!(survivor.c.state(), want);
    survivor.kill().await;
}
