//! protocol/client's connection to its brick: connect, handshake, requests in flight
//! matched to replies by id, pings, and reconnection with backoff.
//!
//! While connected, [`Session::call`] sends a request and waits for its reply. When the
//! connection drops (or the server stops answering pings for `ping-timeout`), every
//! request in flight fails with ENOTCONN at once and new ones fail the same way until the
//! next connection is up; nothing hangs. After a reconnect, the files the client had open
//! are opened again before the session reports child-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use weft_core::{Ctx, Errno, Event, EventSender, Fd, Loc, Xdata};
use weft_wire::msg::{self, FopRequest, Handshake, HandshakeReply, Reply, Request, Response};
use weft_wire::{Frame, Kind};

use crate::stream::{BoxStream, FrameReader, FrameSink};

/// Where and how to connect.
pub(crate) struct Config {
    pub host: String,
    pub port: u16,
    pub brick: String,
    pub ping_timeout: Duration,
    pub tls: Option<tokio_rustls::TlsConnector>,
}

/// The server's number for an open file, valid for one connection generation.
pub(crate) struct RemoteFd {
    num: AtomicU64,
    generation: AtomicU64,
    /// A POSIX or inode lock was granted through this fd. The server drops a lost
    /// client's locks, so such an fd is not reopened after a reconnect: it fails with
    /// EBADF rather than let the application write believing it still holds its lock.
    locked: AtomicBool,
}

impl RemoteFd {
    /// Records that a lock was granted through this fd.
    pub(crate) fn mark_locked(&self) {
        self.locked.store(true, Ordering::Release);
    }
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
    generation: u64,
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
}

/// A protocol/client's session with its brick.
pub(crate) struct Session {
    name: String,
    cfg: Config,
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
        })
    }

    /// Keeps a connection up until [`Session::stop`]. Run on its own task.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_MIN;
        let mut was_up = false;
        while !self.stopped.load(Ordering::Acquire) {
            match self.connect().await {
                Ok((conn, reader)) => {
                    backoff = BACKOFF_MIN;
                    // Replies to the reopens arrive through the serving loop, so it runs
                    // from the start; FOPs only see the connection once files are reopened.
                    let serving = self.serve(&conn, reader);
                    tokio::pin!(serving);
                    let died = tokio::select! {
                        why = &mut serving => Some(why),
                        _ = self.reopen_fds(&conn) => None,
                    };
                    let why = match died {
                        Some(why) => why,
                        None => {
                            *self.conn.lock() = Some(conn.clone());
                            *self.last_error.lock() = None;
                            tracing::info!(
                                "{}: connected to {}:{} brick {:?}",
                                self.name,
                                self.cfg.host,
                                self.cfg.port,
                                self.cfg.brick
                            );
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

    /// Stops reconnecting and closes the connection.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Some(c) = self.conn.lock().take() {
            c.kill();
        }
    }

    /// TCP (and TLS) connect and handshake.
    async fn connect(
        &self,
    ) -> Result<(Arc<Conn>, FrameReader<tokio::io::ReadHalf<BoxStream>>), String> {
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
            msg::encode(&hs),
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
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let conn = Arc::new(Conn {
            tx,
            killed: tokio::sync::watch::channel(false).0,
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
            generation,
            detached: Arc::new(AtomicUsize::new(0)),
        });
        Ok((conn, reader))
    }

    /// Routes replies to their callers and pings the server, until the connection ends.
    async fn serve(
        &self,
        conn: &Arc<Conn>,
        mut reader: FrameReader<tokio::io::ReadHalf<BoxStream>>,
    ) -> String {
        let timeout = self.cfg.ping_timeout;
        let interval = (timeout / 3).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let mut tick = tokio::time::interval(interval);
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
                        k => return format!("unexpected {k:?} frame from the server"),
                    }
                }
                _ = tick.tick() => {
                    if self.stopped.load(Ordering::Acquire) {
                        return "stopped".into();
                    }
                    if last_rx.elapsed() > timeout {
                        return format!("no answer to pings for {timeout:?} (ping-timeout)");
                    }
                    conn.send_detached(Kind::Ping, 0);
                }
            }
        }
    }

    /// Opens again, on a new connection, every file the client still has open.
    async fn reopen_fds(&self, conn: &Conn) {
        let fds: Vec<(Arc<Fd>, Arc<RemoteFd>)> = {
            let mut map = self.fds.lock();
            map.retain(|_, (w, _)| w.strong_count() > 0);
            map.values()
                .filter_map(|(w, r)| w.upgrade().map(|f| (f, r.clone())))
                .collect()
        };
        let (mut ok, mut failed) = (0, 0);
        for (fd, remote) in fds {
            if remote.locked.load(Ordering::Acquire) {
                failed += 1;
                tracing::warn!(
                    "{}: not reopening {:?}: it held locks, which the server dropped with the old connection; it fails with EBADF",
                    self.name,
                    fd
                );
                continue;
            }
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
            let req = Request {
                ctx: Ctx::internal(),
                xdata: Xdata::default(),
                fop,
            };
            let res = conn.call(msg::encode(&req), Bytes::new()).await;
            match res.map(|f| msg::decode::<Response>(Kind::Reply, &f.meta)) {
                Ok(Ok(Response {
                    result: Ok(Reply::Opened { fd: n }),
                    ..
                })) => {
                    remote.num.store(n, Ordering::Release);
                    remote.generation.store(conn.generation, Ordering::Release);
                    ok += 1;
                    // Released while it was being reopened: release the new one too.
                    if !self.fds.lock().contains_key(&fd.id) {
                        let fop = if fd.is_dir {
                            FopRequest::Releasedir { fd: n }
                        } else {
                            FopRequest::Release { fd: n }
                        };
                        let req = Request {
                            ctx: Ctx::internal(),
                            xdata: Xdata::default(),
                            fop,
                        };
                        let _ = conn.call(msg::encode(&req), Bytes::new()).await;
                    }
                }
                other => {
                    failed += 1;
                    tracing::warn!(
                        "{}: cannot reopen {:?} after reconnect: {other:?}",
                        self.name,
                        fd
                    );
                }
            }
        }
        if ok + failed > 0 {
            tracing::info!("{}: reopened {ok} open files ({failed} failed)", self.name);
        }
    }

    /// Remembers the server's number for `fd` on the current connection.
    pub(crate) fn bind_fd(&self, fd: &Arc<Fd>, num: u64, generation: u64) -> Arc<RemoteFd> {
        let r = Arc::new(RemoteFd {
            num: AtomicU64::new(num),
            generation: AtomicU64::new(generation),
            locked: AtomicBool::new(false),
        });
        self.fds
            .lock()
            .insert(fd.id, (Arc::downgrade(fd), r.clone()));
        r
    }

    /// Forgets `fd` (released).
    pub(crate) fn unbind_fd(&self, fd: &Fd) {
        self.fds.lock().remove(&fd.id);
    }

    /// The server's number for `remote` if it is valid on the current connection.
    pub(crate) fn fd_num(&self, remote: &RemoteFd) -> Result<u64, Errno> {
        let cur = self.conn.lock().as_ref().map(|c| c.generation);
        match cur {
            None => Err(Errno::ENOTCONN),
            Some(g) if g == remote.generation.load(Ordering::Acquire) => {
                Ok(remote.num.load(Ordering::Acquire))
            }
            // Opened on a connection that is gone and could not be reopened.
            Some(_) => Err(Errno::EBADF),
        }
    }

    /// Sends one FOP; returns its reply, xdata and data part, and the connection
    /// generation it was answered on.
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
            Ok(r) => Ok((r, resp.xdata, f.data, conn.generation)),
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
        format!(
            "remote={}:{} brick={} connected={} generation={} in_flight={} open_fds={} last_error={}\n",
            self.cfg.host,
            self.cfg.port,
            self.cfg.brick,
            conn.is_some(),
            self.generation.load(Ordering::Relaxed),
            pending,
            self.fds.lock().len(),
            self.last_error.lock().as_deref().unwrap_or("-"),
        )
    }
}
