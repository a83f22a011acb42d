//! protocol/client's connection to its brick: connect, handshake, requests in flight
//! matched to replies by id, pings, and reconnection with backoff.
//!
//! While connected, [`Session::call`] sends a request and waits for its reply. When the
//! connection drops (or the server stops answering pings for `ping-timeout`), every
//! request in flight fails with ENOTCONN at once and new ones fail the same way until the
//! next connection is up; nothing hangs.
//!
//! Every handshake carries this client's random [`SessionId`]. A brick that kept this
//! client's state (a reconnect within its `grace-timeout`) says so, and the session goes
//! on with the same server fds and locks: what the application closed meanwhile is
//! released then. Otherwise (the brick restarted, or the grace ended) the brick holds
//! nothing of this client: a new **epoch** begins, every open file is opened again by gfid
//! and every lock in [`LockTable`] is taken again (non-blocking). A lock another client
//! was granted meanwhile is **lost**: every fd of that owner on that file fails with EIO
//! from then on, with a log line naming the file and the owner. All of it happens before
//! the connection serves FOPs and before child-up.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use weft_core::{
    Ctx, Errno, Event, EventSender, Fd, Flock, Invalidation, LkCmd, Loc, LockType, Xdata,
};
use weft_wire::msg::{self, FopRequest, Handshake, HandshakeReply, Reply, Request, Response};
use weft_wire::{Frame, Kind};

use super::locks::{Held, LockTable};
use crate::resume::{self, SessionId};
use crate::stream::{BoxStream, FrameReader, FrameSink};

/// Where and how to connect.
pub(crate) struct Config {
    pub host: String,
    pub port: u16,
    pub brick: String,
    pub ping_timeout: Duration,
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Ask the brick for upcalls (cache invalidations) and raise them as events.
    pub upcalls: bool,
}

/// The server's number for an open file, valid in one server session (epoch).
pub(crate) struct RemoteFd {
    num: AtomicU64,
    epoch: AtomicU64,
    /// An inode lock (`finodelk`) was granted through this fd. Those are not taken again
    /// in a new server session, so such an fd is not reopened there: it fails with EBADF
    /// rather than let its user go on believing it holds its lock.
    inode_locked: AtomicBool,
    /// 0, or the errno every FOP on this fd fails with from now on (EIO once a lock of its
    /// owner on its file was lost).
    lost: AtomicI32,
    /// The process (thread) that opened it (`Ctx::pid`); 0 for internal opens.
    opener: u32,
    /// Lock owners seen on it (`lk`, `flush`).
    owners: Mutex<Vec<u64>>,
}

impl RemoteFd {
    /// Records that an inode lock was granted through this fd.
    pub(crate) fn mark_inode_locked(&self) {
        self.inode_locked.store(true, Ordering::Release);
    }

    /// Records that lock owner `owner` used this fd.
    pub(crate) fn note_owner(&self, owner: u64) {
        if owner == 0 {
            return;
        }
        let mut o = self.owners.lock();
        if !o.contains(&owner) && o.len() < 64 {
            o.push(owner);
        }
    }
}

/// The errno of an fd whose owner lost its lock on its file.
const LOST: i32 = libc::EIO;

/// Reopens and lock requests a restore keeps in flight at once.
const RESTORE_WINDOW: usize = 64;

/// Why a restore stopped.
const RESTORE_LOST: &str = "connection lost while reopening files and taking locks again";

/// The result a reply frame carries (EIO when it does not decode).
fn reply_of(f: &Frame) -> Result<Reply, Errno> {
    match msg::decode::<Response>(Kind::Reply, &f.meta) {
        Ok(Response { result: Ok(r), .. }) => Ok(r),
        Ok(Response { result: Err(e), .. }) => Err(Errno(e)),
        Err(_) => Err(Errno::EIO),
    }
}

/// What the application let go of while no connection was up, sent once the brick says it
/// kept this client's state (a `Flush` that drops an owner's locks, a `Release`).
struct Deferred {
    epoch: u64,
    ctx: Ctx,
    fop: FopRequest,
}

/// What to do with an fd being released.
pub(crate) enum ReleaseTo {
    /// Send `Release` with this number.
    Send(u64),
    /// Nothing: the server holds nothing of it (it was never reopened in the current
    /// server session), or it was queued for when the connection is back.
    Done,
}

type Pending = HashMap<u64, oneshot::Sender<Frame>>;

/// Files open through this client, by [`Fd::id`], kept to reopen them after a reconnect.
type OpenFds = HashMap<u64, (Weak<Fd>, Arc<RemoteFd>)>;

/// One live connection.
struct Conn {
    tx: Arc<FrameSink>,
    /// Set when the connection is dead, to wake callers still waiting to send.
    killed: tokio::sync::watch::Sender<bool>,
    /// `None` once the connection is dead: nothing new may wait on it.
    pending: Mutex<Option<Pending>>,
    next_id: AtomicU64,
    /// The server session this connection serves (fds and locks are valid in one).
    epoch: u64,
    /// Pings and pongs being sent; more are dropped (a peer that does not read gets no
    /// pile of tasks, only the ping-timeout).
    detached: Arc<AtomicUsize>,
}

/// Pings and pongs one connection may have waiting to be sent at once.
const MAX_DETACHED: usize = 2;

impl Conn {
    /// Sends a request and waits for its reply frame; ENOTCONN if the connection dies
    /// first.
    async fn call(&self, meta: Bytes, data: Bytes) -> Result<Frame, Errno> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.pending.lock().as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(Errno::ENOTCONN),
        };
        let mut killed = self.killed.subscribe();
        let sent = tokio::select! {
            r = self.tx.send(Frame::new(Kind::Request, id, meta, data)) => r.is_ok(),
            _ = killed.wait_for(|k| *k) => false,
        };
        if !sent {
            if let Some(p) = self.pending.lock().as_mut() {
                p.remove(&id);
            }
            return Err(Errno::ENOTCONN);
        }
        rx.await.map_err(|_| Errno::ENOTCONN)
    }

    fn kill(&self) {
        // Dropping the senders wakes every waiter with ENOTCONN; the flag wakes those
        // still waiting to send (a cancelled send leaves the sink refusing the rest).
        self.pending.lock().take();
        self.killed.send_replace(true);
    }

    /// Sends a ping or pong from its own task, so the read loop never waits to write.
    fn send_detached(&self, kind: Kind, id: u64) {
        if self.detached.fetch_add(1, Ordering::AcqRel) >= MAX_DETACHED {
            self.detached.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let tx = self.tx.clone();
        let mut killed = self.killed.subscribe();
        let detached = self.detached.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tx.send(Frame::new(kind, id, Bytes::new(), Bytes::new())) => {}
                _ = killed.wait_for(|k| *k) => {}
            }
            detached.fetch_sub(1, Ordering::AcqRel);
        });
    }
    /// Answers upcall `id` once `done` resolves (every holder of its ack let go), from its
    /// own task. Never dropped for being one too many, unlike pings: the brick waits for it.
    fn ack_when(&self, id: u64, done: weft_core::upcall::AckWait) {
        let tx = self.tx.clone();
        let mut killed = self.killed.subscribe();
        tokio::spawn(async move {
            let send = async {
                let _ = done.await;
                let ack = Frame::new(Kind::UpcallAck, id, Bytes::new(), Bytes::new());
                let _ = tx.send(ack).await;
            };
            tokio::select! {
                _ = send => {}
                _ = killed.wait_for(|k| *k) => {}
            }
        });
    }
}

/// A protocol/client's session with its brick.
pub(crate) struct Session {
    name: String,
    pub(crate) cfg: Config,
    conn: Mutex<Option<Arc<Conn>>>,
    generation: AtomicU64,
    events: EventSender,
    fds: Mutex<OpenFds>,
    last_error: Mutex<Option<String>>,
    stopped: AtomicBool,
    /// Bounds this client's requests in flight well under the server's limit.
    slots: Semaphore,
    /// Lock requests (which may wait for as long as another client holds a lock) have
    /// places of their own, so thousands of waiters never starve other FOPs.
    lock_slots: Semaphore,
    client_name: String,
    /// Sent in every handshake, so the brick can tell this client's reconnects.
    session_id: SessionId,
    /// The current server session: bumped whenever a brick says it holds nothing of ours.
    epoch: AtomicU64,
    /// The locks the application holds through this client.
    locks: Mutex<LockTable>,
    /// Releases and flushes waiting for the connection to come back.
    deferred: Mutex<Vec<Deferred>>,
    /// How the last connection began, for statedumps.
    last_restore: Mutex<String>,
    /// `ping-timeout` in milliseconds: starts as the config's, changed live by
    /// [`Session::set_ping_timeout`].
    ping_timeout_ms: AtomicU64,
}

/// Requests one client keeps in flight at most (the server allows 4096).
const MAX_INFLIGHT: usize = 1024;
/// Lock requests one client keeps in flight at most, beside [`MAX_INFLIGHT`] (together
/// within the server's 4096).
const MAX_LOCKS_INFLIGHT: usize = 3000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

impl Session {
    pub(crate) fn new(name: String, cfg: Config, events: EventSender) -> Arc<Session> {
        let cfg_ping_ms = cfg.ping_timeout.as_millis().min(u64::MAX as u128) as u64;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        Arc::new(Session {
            client_name: format!("{host}:{}:{name}", std::process::id()),
            name,
            cfg,
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
            events,
            fds: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
            stopped: AtomicBool::new(false),
            slots: Semaphore::new(MAX_INFLIGHT),
            lock_slots: Semaphore::new(MAX_LOCKS_INFLIGHT),
            session_id: SessionId::random(),
            epoch: AtomicU64::new(0),
            locks: Mutex::new(LockTable::default()),
            deferred: Mutex::new(Vec::new()),
            last_restore: Mutex::new("-".into()),
            ping_timeout_ms: AtomicU64::new(cfg_ping_ms),
        })
    }

    /// The ping timeout now in force.
    pub(crate) fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms.load(Ordering::Acquire))
    }

    /// Changes the ping timeout; the connection's pings follow from their next tick.
    pub(crate) fn set_ping_timeout(&self, d: Duration) {
        self.ping_timeout_ms.store(
            d.as_millis().min(u64::MAX as u128) as u64,
            Ordering::Release,
        );
    }

    /// Keeps a connection up until [`Session::stop`]. Run on its own task.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_MIN;
        let mut was_up = false;
        while !self.stopped.load(Ordering::Acquire) {
            match self.connect().await {
                Ok((conn, reader, resumed)) => {
                    backoff = BACKOFF_MIN;
                    // Replies to the reopens arrive through the serving loop, so it runs
                    // from the start; FOPs only see the connection once files are reopened
                    // and locks taken again.
                    let serving = self.serve(&conn, reader);
                    tokio::pin!(serving);
                    let died = tokio::select! {
                        why = &mut serving => Some(why),
                        r = self.restore(&conn, resumed) => r.err(),
                    };
                    let why = match died {
                        Some(why) => why,
                        None => {
                            self.publish(&conn);
                            *self.last_error.lock() = None;
                            tracing::info!(
                                "{}: connected to {}:{} brick {:?}",
                                self.name,
                                self.cfg.host,
                                self.cfg.port,
                                self.cfg.brick
                            );
                            // Whatever was cached before may have changed meanwhile.
                            self.raise_upcall(vec![Invalidation::All], weft_core::Ack::none());
                            self.events
                                .send(&self.name, Event::ChildUp(self.name.clone()));
                            was_up = true;
                            serving.await
                        }
                    };
                    conn.kill();
                    self.conn.lock().take();
                    if !self.stopped.load(Ordering::Acquire) {
                        tracing::warn!(
                            "{}: disconnected from {}:{}: {why}; requests fail with ENOTCONN until it is back",
                            self.name,
                            self.cfg.host,
                            self.cfg.port
                        );
                        *self.last_error.lock() = Some(why);
                        // Changes made now reach no invalidation to this client.
                        self.raise_upcall(vec![Invalidation::All], weft_core::Ack::none());
                        self.events
                            .send(&self.name, Event::ChildDown(self.name.clone()));
                    }
                }
                Err(why) => {
                    let changed = self.last_error.lock().as_deref() != Some(why.as_str());
                    if changed {
                        tracing::error!("{}: {why}", self.name);
                        self.events.send(
                            &self.name,
                            Event::ChildError(self.name.clone(), why.clone()),
                        );
                        if !was_up {
                            self.events
                                .send(&self.name, Event::ChildDown(self.name.clone()));
                        }
                    }
                    *self.last_error.lock() = Some(why);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Raises invalidations as an [`Event::Upcall`] for the graph's caches (only when this
    /// client asked its brick for upcalls: otherwise nothing above caches on their strength).
    fn raise_upcall(&self, invalidations: Vec<Invalidation>, ack: weft_core::Ack) {
        if self.cfg.upcalls {
            let u = weft_core::Upcall {
                client: 0,
                invalidations,
                ack,
            };
            self.events.send(&self.name, Event::Upcall(u));
        }
    }

    /// Stops reconnecting and closes the connection.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Some(c) = self.conn.lock().take() {
            c.kill();
        }
    }

    /// TCP (and TLS) connect and handshake; also says whether the brick kept this client's
    /// state from an earlier connection.
    async fn connect(
        &self,
    ) -> Result<(Arc<Conn>, FrameReader<tokio::io::ReadHalf<BoxStream>>, bool), String> {
        let addr = format!("{}:{}", self.cfg.host, self.cfg.port);
        let sock = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
            .await
            .map_err(|_| format!("cannot connect to {addr}: timed out"))?
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = sock.set_nodelay(true);
        let stream: BoxStream = match &self.cfg.tls {
            Some(c) => {
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::try_from(self.cfg.host.clone())
                        .map_err(|e| {
                            format!("{:?} is not a TLS server name: {e}", self.cfg.host)
                        })?;
                Box::new(
                    c.connect(name, sock)
                        .await
                        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?,
                )
            }
            None => Box::new(sock),
        };
        let (rd, wr) = tokio::io::split(stream);
        let mut reader = FrameReader::new(rd);
        let tx = FrameSink::new(wr);
        let hs = Handshake {
            brick: self.cfg.brick.clone(),
            client_name: self.client_name.clone(),
        };
        tx.send(Frame::new(
            Kind::Handshake,
            0,
            if self.cfg.upcalls {
                resume::with_upcalls_and_session_id(&msg::encode(&hs), self.session_id)
            } else {
                resume::with_session_id(&msg::encode(&hs), self.session_id)
            },
            Bytes::new(),
        ))
        .await
        .map_err(|_| format!("connection to {addr} closed during handshake"))?;
        let f = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .map_err(|_| format!("no handshake reply from {addr} within 10s"))?
            .map_err(|e| format!("handshake with {addr} failed: {e}"))?;
        if f.header.major != weft_wire::VERSION_MAJOR {
            return Err(format!(
                "{addr} speaks protocol version {}.{}; this client speaks {}.{}",
                f.header.major,
                f.header.minor,
                weft_wire::VERSION_MAJOR,
                weft_wire::VERSION_MINOR
            ));
        }
        if f.header.kind != Kind::HandshakeReply {
            return Err(format!(
                "{addr} answered the handshake with {:?}",
                f.header.kind
            ));
        }
        match msg::decode::<HandshakeReply>(Kind::HandshakeReply, &f.meta) {
            Ok(HandshakeReply::Accepted { .. }) => {}
            Ok(HandshakeReply::Refused { reason, .. }) => {
                return Err(format!("server {addr} refused the connection: {reason}"))
            }
            Err(e) => return Err(format!("bad handshake reply from {addr}: {e}")),
        }
        // The brick kept our fds and locks only if it says so; otherwise they are gone
        // there and a new epoch begins (what we hold is taken again in it).
        let resumed = resume::resumed(&f.meta) && self.epoch.load(Ordering::Acquire) > 0;
        let epoch = if resumed {
            self.epoch.load(Ordering::Acquire)
        } else {
            self.epoch.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        let conn = Arc::new(Conn {
            tx,
            killed: tokio::sync::watch::channel(false).0,
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
            epoch,
            detached: Arc::new(AtomicUsize::new(0)),
        });
        Ok((conn, reader, resumed))
    }

    /// Routes replies to their callers and pings the server, until the connection ends.
    async fn serve(
        &self,
        conn: &Arc<Conn>,
        mut reader: FrameReader<tokio::io::ReadHalf<BoxStream>>,
    ) -> String {
        let mut timeout = self.ping_timeout();
        let every = |t: Duration| (t / 3).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let mut tick = tokio::time::interval(every(timeout));
        let mut last_rx = Instant::now();
        loop {
            tokio::select! {
                f = reader.next() => {
                    let f = match f {
                        Ok(f) => f,
                        Err(e) => return e.to_string(),
                    };
                    last_rx = Instant::now();
                    match f.header.kind {
                        Kind::Reply => {
                            let waiter = conn.pending.lock().as_mut().and_then(|p| p.remove(&f.header.id));
                            if let Some(w) = waiter {
                                let _ = w.send(f);
                            }
                        }
                        Kind::Pong => {}
                        Kind::Ping => conn.send_detached(Kind::Pong, f.header.id),
                        Kind::Upcall if self.cfg.upcalls => {
                            let invalidations: weft_wire::msg::UpcallMsg =
                                match msg::decode(Kind::Upcall, &f.meta) {
                                    Ok(v) => v,
                                    Err(e) => return e.to_string(),
                                };
                            let (ack, done) = weft_core::Ack::new();
                            conn.ack_when(f.header.id, done);
                            self.raise_upcall(invalidations, ack);
                        }
                        k => return format!("unexpected {k:?} frame from the server"),
                    }
                }
                _ = tick.tick() => {
                    if self.stopped.load(Ordering::Acquire) {
                        return "stopped".into();
                    }
                    let now = self.ping_timeout();
                    if now != timeout {
                        timeout = now;
                        tick = tokio::time::interval(every(timeout));
                        tick.tick().await;
                    }
                    if last_rx.elapsed() > timeout {
                        return format!("no answer to pings for {timeout:?} (ping-timeout)");
                    }
                    conn.send_detached(Kind::Ping, 0);
                }
            }
        }
    }

    /// Makes a new connection serve FOPs, and sends what was deferred while none was up.
    fn publish(self: &Arc<Self>, conn: &Arc<Conn>) {
        let late: Vec<Deferred> = {
            let mut cur = self.conn.lock();
            *cur = Some(conn.clone());
            // Under the connection's lock: whatever is deferred after this sees it up.
            std::mem::take(&mut *self.deferred.lock())
        };
        let late: Vec<Deferred> = late.into_iter().filter(|d| d.epoch == conn.epoch).collect();
        if late.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let n = late.len();
            for d in late {
                if let Err(e) = me.call(&d.ctx, Xdata::default(), d.fop, Bytes::new()).await {
                    tracing::debug!("{}: deferred release or flush: {e}", me.name);
                }
            }
            tracing::debug!(
                "{}: sent {n} releases and flushes deferred while disconnected",
                me.name
            );
        });
    }

    /// Gets a new connection ready: on a brick that kept our state, nothing to do but
    /// what an interrupted earlier restore left; otherwise every open file is opened again
    /// by gfid and every lock taken again. Errs when the connection is lost meanwhile.
    async fn restore(&self, conn: &Arc<Conn>, resumed: bool) -> Result<(), String> {
        let start = Instant::now();
        let (reopened, failed) = self.reopen_fds(conn).await?;
        let (retaken, lost) = self.retake_locks(conn).await?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let summary = if resumed {
            format!(
                "resumed: the brick kept our open files and locks (epoch {})",
                conn.epoch
            )
        } else {
            format!(
                "new session on the brick (epoch {}): reopened {reopened} open files ({failed} failed), took {retaken} locks again ({lost} lost) in {ms:.1} ms",
                conn.epoch
            )
        };
        if resumed || reopened + failed + retaken + lost > 0 {
            tracing::info!("{}: {summary}", self.name);
        }
        *self.last_restore.lock() = summary;
        Ok(())
    }

    /// Sends one request on `conn` during a restore.
    async fn call_on(
        &self,
        conn: &Conn,
        ctx: Ctx,
        xdata: Xdata,
        fop: FopRequest,
    ) -> Result<Result<Reply, Errno>, String> {
        let req = Request { ctx, xdata, fop };
        let f = conn
            .call(msg::encode(&req), Bytes::new())
            .await
            .map_err(|_| RESTORE_LOST.to_string())?;
        Ok(reply_of(&f))
    }

    /// Sends `reqs` on `conn`, [`RESTORE_WINDOW`] in flight at once, and returns their
    /// answers in order; errs when the connection is lost meanwhile.
    async fn call_many(
        conn: &Arc<Conn>,
        reqs: Vec<Request>,
    ) -> Result<Vec<Result<Reply, Errno>>, String> {
        let n = reqs.len();
        let mut out: Vec<Option<Result<Reply, Errno>>> = (0..n).map(|_| None).collect();
        let mut tasks = tokio::task::JoinSet::new();
        let mut reqs = reqs.into_iter().enumerate();
        loop {
            while tasks.len() < RESTORE_WINDOW {
                let Some((i, req)) = reqs.next() else { break };
                let c = conn.clone();
                tasks.spawn(async move { (i, c.call(msg::encode(&req), Bytes::new()).await) });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done {
                Ok((i, Ok(f))) => out[i] = Some(reply_of(&f)),
                _ => return Err(RESTORE_LOST.to_string()),
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or(Err(Errno::EIO)))
            .collect())
    }

    /// Opens again, in `conn`'s server session, every file still open that is not open
    /// there yet; returns how many were reopened and how many failed.
    async fn reopen_fds(&self, conn: &Arc<Conn>) -> Result<(usize, usize), String> {
        let fds: Vec<(Arc<Fd>, Arc<RemoteFd>)> = {
            let mut map = self.fds.lock();
            map.retain(|_, (w, _)| w.strong_count() > 0);
            map.values()
                .filter(|(_, r)| {
                    r.epoch.load(Ordering::Acquire) != conn.epoch
                        && r.lost.load(Ordering::Acquire) == 0
                })
                .filter_map(|(w, r)| w.upgrade().map(|f| (f, r.clone())))
                .collect()
        };
        let (mut ok, mut failed) = (0, 0);
        let mut todo = Vec::new();
        for (fd, remote) in fds {
            if remote.inode_locked.load(Ordering::Acquire) {
                failed += 1;
                tracing::warn!(
                    "{}: not reopening {:?}: it held inode locks, which the brick no longer holds and which are not taken again; it fails with EBADF",
                    self.name,
                    fd
                );
                continue;
            }
            todo.push((fd, remote));
        }
        let reqs = todo
            .iter()
            .map(|(fd, _)| {
                let loc = Loc::inode(fd.gfid);
                let fop = if fd.is_dir {
                    FopRequest::Opendir { loc, gfid: fd.gfid }
                } else {
                    let flags = fd.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
                    FopRequest::Open {
                        loc,
                        gfid: fd.gfid,
                        flags,
                    }
                };
                Request {
                    ctx: Ctx::internal(),
                    xdata: Xdata::default(),
                    fop,
                }
            })
            .collect();
        let answers = Self::call_many(conn, reqs).await?;
        for ((fd, remote), answer) in todo.into_iter().zip(answers) {
            match answer {
                Ok(Reply::Opened { fd: n }) => {
                    remote.num.store(n, Ordering::Release);
                    remote.epoch.store(conn.epoch, Ordering::Release);
                    ok += 1;
                    // Released while it was being reopened: release the new one too.
                    if !self.fds.lock().contains_key(&fd.id) {
                        let fop = if fd.is_dir {
                            FopRequest::Releasedir { fd: n }
                        } else {
                            FopRequest::Release { fd: n }
                        };
                        let _ = self
                            .call_on(conn, Ctx::internal(), Xdata::default(), fop)
                            .await?;
                    }
                }
                other => {
                    failed += 1;
                    let path = fd.path().map(|p| p.display().to_string());
                    tracing::warn!(
                        "{}: cannot reopen {:?} ({}) after reconnecting: {other:?}; it fails with EBADF",
                        self.name,
                        fd,
                        path.as_deref().unwrap_or("path unknown")
                    );
                }
            }
        }
        Ok((ok, failed))
    }

    /// Takes again, in `conn`'s server session, every lock held that is not held there
    /// yet (without waiting); returns how many were taken and how many lost.
    async fn retake_locks(&self, conn: &Arc<Conn>) -> Result<(usize, usize), String> {
        let (mut ok, mut lost) = (0, 0);
        // More than one pass only when a late reply changed the table meanwhile.
        for pass in 0.. {
            let stale = self.locks.lock().stale(conn.epoch);
            if stale.is_empty() {
                break;
            }
            let mut todo = Vec::new();
            for h in stale {
                if pass >= 4 {
                    lost += 1;
                    self.lose(&h, "it kept changing while it was being taken again");
                    continue;
                }
                let remote = self.fds.lock().get(&h.fd).map(|(_, r)| r.clone());
                let num = remote.as_ref().and_then(|r| {
                    (r.epoch.load(Ordering::Acquire) == conn.epoch
                        && r.lost.load(Ordering::Acquire) == 0)
                        .then(|| r.num.load(Ordering::Acquire))
                });
                match num {
                    Some(num) => todo.push((h, num)),
                    None => {
                        lost += 1;
                        self.lose(
                            &h,
                            "the file it was taken through could not be opened again",
                        );
                    }
                }
            }
            let reqs = todo
                .iter()
                .map(|(h, num)| {
                    let mut xdata = Xdata::default();
                    if h.flock {
                        xdata.set(weft_core::LK_FLOCK_KEY, Vec::new());
                    }
                    Request {
                        ctx: Ctx {
                            pid: h.caller,
                            lk_owner: h.owner,
                            ..Ctx::internal()
                        },
                        xdata,
                        fop: FopRequest::Lk {
                            fd: *num,
                            cmd: LkCmd::Set,
                            lock: Flock {
                                kind: h.kind,
                                start: h.start,
                                len: h.len(),
                                pid: h.pid,
                                owner: h.owner,
                            },
                        },
                    }
                })
                .collect();
            let answers = Self::call_many(conn, reqs).await?;
            for ((h, _), answer) in todo.into_iter().zip(answers) {
                match answer {
                    Ok(Reply::Flock(_)) => {
                        ok += 1;
                        self.locks.lock().retaken(&h, conn.epoch);
                    }
                    Err(Errno::EAGAIN) => {
                        lost += 1;
                        self.lose(&h, "another client was granted a conflicting lock while the brick did not hold ours");
                    }
                    other => {
                        lost += 1;
                        self.lose(&h, &format!("taking it again failed: {other:?}"));
                    }
                }
            }
        }
        Ok((ok, lost))
    }

    /// Lock `h` is lost: every lock of its owner on its file is forgotten, and every fd of
    /// that owner on that file fails with EIO from now on: the fds its locks were taken
    /// through and, for POSIX locks, the fds of that file its process opened or its owner
    /// used. Logs which file and which owner.
    fn lose(&self, h: &Held, why: &str) {
        let gone = self.locks.lock().drop_owner(h.gfid, h.flock, h.owner);
        let mut fds: HashSet<u64> = gone.iter().map(|g| g.fd).collect();
        fds.insert(h.fd);
        let mut pids: HashSet<u32> = HashSet::new();
        if !h.flock {
            for g in gone.iter().chain(std::iter::once(h)) {
                pids.insert(g.pid);
                pids.insert(g.caller);
            }
            pids.remove(&0);
        }
        let mut failed = 0;
        let mut path = None;
        for (id, (w, r)) in self.fds.lock().iter() {
            let Some(f) = w.upgrade() else { continue };
            if f.gfid != h.gfid {
                continue;
            }
            let mine = fds.contains(id)
                || (!h.flock && (pids.contains(&r.opener) || r.owners.lock().contains(&h.owner)));
            if mine {
                r.lost.store(LOST, Ordering::Release);
                failed += 1;
                if path.is_none() {
                    path = f.path();
                }
            }
        }
        let what = if h.flock { "flock" } else { "POSIX" };
        let file = match path {
            Some(p) => p.display().to_string(),
            None => format!("gfid {}", h.gfid),
        };
        tracing::error!(
            "{}: lost the {what} lock(s) of lock owner {:#x} (pid {}) on {file}: {why}; its {failed} open files on it fail with EIO from now on",
            self.name,
            h.owner,
            h.pid
        );
    }

    /// Records what a granted `lk` (or an unlock) changed, for taking it again later.
    /// `epoch` is the server session that answered.
    pub(crate) fn lock_changed(&self, fd: &Fd, ctx: &Ctx, lock: &Flock, flock: bool, epoch: u64) {
        let Some((start, end)) = super::locks::range(lock.start, lock.len) else {
            return;
        };
        if lock.kind == LockType::Unlock {
            self.locks
                .lock()
                .unlocked(fd.gfid, flock, lock.owner, start, end);
            return;
        }
        let h = Held {
            gfid: fd.gfid,
            flock,
            owner: lock.owner,
            kind: lock.kind,
            start,
            end,
            pid: lock.pid,
            caller: ctx.pid,
            fd: fd.id,
            epoch,
        };
        self.locks.lock().granted(h.clone());
        if epoch != self.epoch.load(Ordering::Acquire) {
            // Granted by a server session that ended as the reply came: whether it was
            // taken again cannot be told, so it counts as lost.
            self.lose(
                &h,
                "it was granted just as the connection to the brick was lost",
            );
        }
    }

    /// Records a flush (close(2)) of `fd` by `owner`: its POSIX locks on the file are
    /// gone.
    pub(crate) fn flushed(&self, fd: &Fd, owner: u64) {
        self.locks.lock().flushed(fd.gfid, owner);
    }

    /// Keeps a `Flush` for the brick until the connection is back, if the brick may still
    /// hold this client's state (so that the owner's locks go).
    pub(crate) fn defer_flush(&self, remote: &RemoteFd, owner: u64) {
        let epoch = remote.epoch.load(Ordering::Acquire);
        let cur = self.conn.lock();
        match cur.as_ref() {
            Some(c) if c.epoch == epoch => {}
            _ if epoch == self.epoch.load(Ordering::Acquire) => {
                self.deferred.lock().push(Deferred {
                    epoch,
                    ctx: Ctx {
                        lk_owner: owner,
                        ..Ctx::internal()
                    },
                    fop: FopRequest::Flush {
                        fd: remote.num.load(Ordering::Acquire),
                    },
                });
            }
            _ => {}
        }
    }

    /// Where the release of `remote` goes: its number if the current connection's server
    /// holds it; queued for the next connection if none is up and the brick may keep it
    /// for us; nowhere if the brick no longer has it.
    pub(crate) fn release_to(&self, remote: &RemoteFd, dir: bool) -> ReleaseTo {
        let epoch = remote.epoch.load(Ordering::Acquire);
        let num = remote.num.load(Ordering::Acquire);
        let cur = self.conn.lock();
        match cur.as_ref() {
            Some(c) if c.epoch == epoch => ReleaseTo::Send(num),
            Some(_) => ReleaseTo::Done,
            None => {
                if epoch == self.epoch.load(Ordering::Acquire) {
                    let fop = if dir {
                        FopRequest::Releasedir { fd: num }
                    } else {
                        FopRequest::Release { fd: num }
                    };
                    self.deferred.lock().push(Deferred {
                        epoch,
                        ctx: Ctx::internal(),
                        fop,
                    });
                }
                ReleaseTo::Done
            }
        }
    }

    /// Queues a release that could not be sent (the connection was lost as it went).
    pub(crate) fn defer_release(&self, remote: &RemoteFd, dir: bool) {
        let _ = self.release_to(remote, dir);
    }

    /// Remembers the server's number for `fd`, opened by `ctx`, in server session `epoch`.
    pub(crate) fn bind_fd(&self, fd: &Arc<Fd>, ctx: &Ctx, num: u64, epoch: u64) -> Arc<RemoteFd> {
        let r = Arc::new(RemoteFd {
            num: AtomicU64::new(num),
            epoch: AtomicU64::new(epoch),
            inode_locked: AtomicBool::new(false),
            lost: AtomicI32::new(0),
            opener: ctx.pid,
            owners: Mutex::new(Vec::new()),
        });
        self.fds
            .lock()
            .insert(fd.id, (Arc::downgrade(fd), r.clone()));
        r
    }

    /// Forgets `fd` (released) and the locks taken through it.
    pub(crate) fn unbind_fd(&self, fd: &Fd) {
        self.fds.lock().remove(&fd.id);
        self.locks.lock().released(fd.id);
    }

    /// The server's number for `remote` if it is valid on the current connection: ENOTCONN
    /// without one, EIO once its owner lost its lock on the file, EBADF if it could not be
    /// opened again in the brick's current session.
    pub(crate) fn fd_num(&self, remote: &RemoteFd) -> Result<u64, Errno> {
        let cur = self.conn.lock().as_ref().map(|c| c.epoch);
        let Some(e) = cur else {
            return Err(Errno::ENOTCONN);
        };
        match remote.lost.load(Ordering::Acquire) {
            0 => {}
            errno => return Err(Errno(errno)),
        }
        if e == remote.epoch.load(Ordering::Acquire) {
            Ok(remote.num.load(Ordering::Acquire))
        } else {
            // Opened in a server session that is gone and could not be reopened.
            Err(Errno::EBADF)
        }
    }

    /// Sends one FOP; returns its reply, xdata and data part, and the server session
    /// (epoch) it was answered in.
    pub(crate) async fn call(
        &self,
        ctx: &Ctx,
        xdata: Xdata,
        fop: FopRequest,
        data: Bytes,
    ) -> Result<(Reply, Xdata, Bytes, u64), Errno> {
        let pool = if matches!(
            fop,
            FopRequest::Lk { .. }
                | FopRequest::Inodelk { .. }
                | FopRequest::Finodelk { .. }
                | FopRequest::Entrylk { .. }
        ) {
            &self.lock_slots
        } else {
            &self.slots
        };
        let _slot = pool.acquire().await.map_err(|_| Errno::ENOTCONN)?;
        let conn = self.conn.lock().clone().ok_or(Errno::ENOTCONN)?;
        let name = fop.name();
        let req = Request {
            ctx: ctx.clone(),
            xdata,
            fop,
        };
        let meta = msg::try_encode(&req).map_err(|e| {
            tracing::warn!("{}: cannot encode {name}: {e}; failing it alone", self.name);
            Errno::EINVAL
        })?;
        if !Frame::fits(meta.len(), data.len()) {
            // Larger than one frame may carry (a write over 16 MiB): the caller splits.
            return Err(Errno::EINVAL);
        }
        let f = conn.call(meta, data).await?;
        let resp: Response = msg::decode(Kind::Reply, &f.meta).map_err(|e| {
            tracing::error!("{}: bad reply to {name}: {e}", self.name);
            Errno::EIO
        })?;
        match resp.result {
            Ok(r) => Ok((r, resp.xdata, f.data, conn.epoch)),
            Err(e) => Err(Errno(e)),
        }
    }

    /// One paragraph for statedumps.
    pub(crate) fn dump(&self) -> String {
        let conn = self.conn.lock().clone();
        let pending = conn
            .as_ref()
            .and_then(|c| c.pending.lock().as_ref().map(|p| p.len()))
            .unwrap_or(0);
        let lost = self
            .fds
            .lock()
            .values()
            .filter(|(_, r)| r.lost.load(Ordering::Relaxed) != 0)
            .count();
        format!(
            "remote={}:{} brick={} connected={} generation={} epoch={} in_flight={} open_fds={} locks_held={} lost_fds={} last_error={}\nlast_connect={}\n",
            self.cfg.host,
            self.cfg.port,
            self.cfg.brick,
            conn.is_some(),
            self.generation.load(Ordering::Relaxed),
            self.epoch.load(Ordering::Relaxed),
            pending,
            self.fds.lock().len(),
            self.locks.lock().len(),
            lost,
            self.last_error.lock().as_deref().unwrap_or("-"),
            self.last_restore.lock(),
        )
    }
}
