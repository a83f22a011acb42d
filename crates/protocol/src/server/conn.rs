//! One client connection to the brick server: handshake, then requests answered in any
//! order, each on its own task. Anything malformed closes this connection only, with a log
//! line naming the peer and the reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use weft_core::{Errno, FdRef, Xdata};
use weft_wire::msg::{self, Handshake, HandshakeReply, Request};
use weft_wire::{Frame, Kind, HEADER_LEN, VERSION_MAJOR, VERSION_MINOR};

use super::limits::{more, ConnSlot, Counters, FdCount, FdLimit, FdSlot, Limits};
use super::{dispatch, sessions, Brick, BrickServer};
use crate::stream::{BoxStream, FrameReader, FrameSink, ReadError};
use crate::tls::TLS_HANDSHAKE_BYTE;
use crate::{identity, resume};

/// Largest handshake frame read (metadata and data together).
const MAX_HANDSHAKE: usize = 64 << 10;

/// The fds one connection has open, by the numbers the client knows them by.
/// Fd numbers are unique across every connection of the process, so a number a client
/// kept from a closed connection names nothing on a new one (EBADF), never another file.
static NEXT_FD_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(super) struct FdTable {
    fds: Mutex<HashMap<u64, FdRef>>,
    count: FdCount,
    counters: Arc<Counters>,
    client: u64,
    /// The address of the client's current (or last) connection, for logs.
    peer: Mutex<SocketAddr>,
}

impl FdTable {
    /// An empty table for client `client`, connected from `peer`.
    pub(super) fn new(
        counters: Arc<Counters>,
        limits: &Limits,
        client: u64,
        peer: SocketAddr,
    ) -> FdTable {
        FdTable {
            fds: Mutex::new(HashMap::new()),
            count: FdCount::new(counters.clone(), limits),
            counters,
            client,
            peer: Mutex::new(peer),
        }
    }

    /// The client reconnected from `peer`.
    pub(super) fn set_peer(&self, peer: SocketAddr) {
        *self.peer.lock() = peer;
    }

    /// How many fds are open.
    pub(super) fn open(&self) -> usize {
        self.count.open()
    }

    /// A place for one more open fd, taken before the open runs; `EMFILE` (with a
    /// rate-limited log line) when this connection or the process holds its limit.
    pub(super) fn reserve(&self) -> Result<FdSlot<'_>, Errno> {
        self.count.reserve().map_err(|limit| {
            let (client, peer) = (self.client, *self.peer.lock());
            match limit {
                FdLimit::Client(max) => self.counters.log.hit("fds-per-client", |n| {
                    tracing::warn!(%peer, client, "open refused with EMFILE: this client holds {max} open files (the per-connection limit, --client-max-fds){}", more(n))
                }),
                FdLimit::Process(max) => self.counters.log.hit("fds", |n| {
                    tracing::warn!(%peer, client, "open refused with EMFILE: the server holds {max} open files (the process limit, --max-fds){}", more(n))
                }),
            }
            Errno(libc::EMFILE)
        })
    }

    /// Enters an opened fd under a new number, keeping `slot`'s place for it.
    pub(super) fn insert(&self, slot: FdSlot<'_>, fd: FdRef) -> u64 {
        self.count.keep(slot);
        let n = NEXT_FD_NUMBER.fetch_add(1, Ordering::Relaxed);
        self.fds.lock().insert(n, fd);
        n
    }
    pub(super) fn get(&self, n: u64) -> Option<FdRef> {
        self.fds.lock().get(&n).cloned()
    }
    pub(super) fn remove(&self, n: u64) -> Option<FdRef> {
        let fd = self.fds.lock().remove(&n);
        if fd.is_some() {
            self.count.release(1);
        }
        fd
    }
    /// Takes every fd out of the table (to release them).
    pub(super) fn drain(&self) -> Vec<FdRef> {
        let fds: Vec<FdRef> = self.fds.lock().drain().map(|(_, f)| f).collect();
        self.count.release(fds.len());
        fds
    }
}

/// Serves one accepted TCP connection to the end, logging why it ended. `_slot` holds the
/// connection's place under the connection limits until it ends.
pub(super) async fn serve(
    server: Arc<BrickServer>,
    sock: TcpStream,
    peer: SocketAddr,
    _slot: ConnSlot,
) {
    let limits = server.limits;
    let setup = tokio::time::timeout(limits.handshake_timeout, open(&server, sock, peer)).await;
    let (brick, mut reader, tx, who, policy, hello) = match setup {
        Err(_) => {
            tracing::warn!(%peer, "closing connection: no handshake within {:?}", limits.handshake_timeout);
            return;
        }
        Ok(Err(reason)) => {
            tracing::warn!(%peer, "closing connection: {reason}");
            return;
        }
        Ok(Ok(x)) => x,
    };
    reader.set_max_frame(None);
    brick.clients.fetch_add(1, Ordering::AcqRel);
    // Counted before looking: a detach that began meanwhile either waits for this
    // connection or is seen here, and then the graph is never touched.
    if *brick.detached.borrow() {
        brick.clients.fetch_sub(1, Ordering::AcqRel);
        tracing::info!(%peer, brick = %brick.name, "closing connection: brick detached");
        return;
    }
    let claimed = sessions::claim(
        &server,
        &brick,
        hello.session,
        who.cert_name.clone(),
        &hello.client_name,
        peer,
    )
    .await;
    let claimed = match claimed {
        Ok(c) => c,
        Err(reason) => {
            brick.clients.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, brick = %brick.name, "refusing connection: {reason}");
            let reply = HandshakeReply::Refused {
                reason,
                errno: libc::EAGAIN,
            };
            let f = Frame::new(
                Kind::HandshakeReply,
                hello.id,
                msg::encode(&reply),
                Bytes::new(),
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = tx.send(f).await;
                tx.shutdown().await;
            })
            .await;
            return;
        }
    };
    let (state, resumed) = (claimed.state, claimed.resumed);
    let client = state.client;
    let (tls, cert) = (who.tls, who.cert_name.as_deref().unwrap_or("-"));
    let ok = HandshakeReply::Accepted {
        server_version: format!("{VERSION_MAJOR}.{VERSION_MINOR}"),
    };
    let meta = resume::with_resumed(&msg::encode(&ok), resumed);
    let (reason, keep) = match tx
        .send(Frame::new(
            Kind::HandshakeReply,
            hello.id,
            meta,
            Bytes::new(),
        ))
        .await
    {
        Err(_) => ("connection lost during handshake".to_string(), true),
        Ok(()) => {
            if resumed {
                tracing::info!(%peer, brick = %brick.name, client, tls, cert, open_fds = state.fds.open(), "client reconnected: {} gets its open files and locks back", hello.client_name);
            } else {
                tracing::info!(%peer, brick = %brick.name, client, tls, cert, "client connected");
            }
            let route = hello.upcalls.then(|| brick.upcalls.add(client, tx.clone()));
            let conn = Conn {
                client,
                peer,
                name: &hello.client_name,
                who: &who,
                route: route.as_ref(),
            };
            let ended = run(
                &server,
                &brick,
                reader,
                &tx,
                conn,
                &state.fds,
                claimed.kick,
                policy,
            )
            .await;
            if let Some(r) = &route {
                brick.upcalls.remove(client, r);
            }
            ended
        }
    };
    let open_fds = state.fds.open();
    tracing::info!(%peer, brick = %brick.name, client, open_fds, "connection closed: {reason}");
    // Kept for the grace period when the client can come back for it; otherwise (also
    // when the brick's policy no longer serves it) what it left open is released, then
    // anything else it held (locks).
    sessions::finish(&brick, state, keep).await;
    brick.clients.fetch_sub(1, Ordering::AcqRel);
    // A client that stopped reading must not hold this task forever.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tx.shutdown()).await;
}

/// What a client said in its handshake, beyond the brick it asked for.
struct Hello {
    /// The handshake frame's id (the reply carries it).
    id: u64,
    /// Its name (`HOST:PID:NAME`), for logs.
    client_name: String,
    /// Its session id ([`resume`]), when it sent one.
    session: Option<resume::SessionId>,
    /// It asked for upcalls (cache invalidations).
    upcalls: bool,
}

/// What a brick's access policy looks at in a connection, beyond its address.
pub(super) struct Who {
    /// Whether it speaks TLS.
    tls: bool,
    /// Its client certificate (DER), when it presented one (the TLS layer verified it).
    cert: Option<Vec<u8>>,
    /// The certificate's common name (logs, and a session takeover must present it).
    cert_name: Option<String>,
}

/// A connection past its handshake: its brick, its two halves, what the brick's policy
/// looks at, the policy it was admitted under (the receiver sees every later swap), and
/// its handshake.
type Opened = (
    Arc<Brick>,
    FrameReader<tokio::io::ReadHalf<BoxStream>>,
    Arc<FrameSink>,
    Who,
    tokio::sync::watch::Receiver<Arc<super::Policy>>,
    Hello,
);

/// TLS (if the client starts with a TLS record), then the handshake, up to (not including)
/// the reply that accepts it.
async fn open(server: &BrickServer, sock: TcpStream, peer: SocketAddr) -> Result<Opened, String> {
    let mut first = [0u8; 1];
    let n = sock
        .peek(&mut first)
        .await
        .map_err(|e| format!("read failed: {e}"))?;
    if n == 0 {
        return Err("closed before the handshake".into());
    }
    // The client's certificate (DER), when it presented one; the TLS layer verified it
    // against the client CA (--tls-ca).
    let mut cert: Option<Vec<u8>> = None;
    let (stream, tls): (BoxStream, bool) = if first[0] == TLS_HANDSHAKE_BYTE {
        let Some(st) = &server.tls else {
            return Err("client speaks TLS but this server has no certificate (--tls-cert)".into());
        };
        let s = st
            .acceptor
            .accept(sock)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        cert = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        (Box::new(s), true)
    } else {
        (Box::new(sock), false)
    };
    let cert_name = cert
        .as_deref()
        .and_then(|c| identity::common_names(c).into_iter().next());
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FrameReader::new(rd);
    // A handshake is a few names: a peer may not make the server buffer more for it.
    reader.set_max_frame(Some(MAX_HANDSHAKE));
    let tx = FrameSink::new(wr);
    let refuse = |reason: String, errno: i32| {
        let tx = tx.clone();
        async move {
            let reply = HandshakeReply::Refused {
                reason: reason.clone(),
                errno,
            };
            let _ = tx
                .send(Frame::new(
                    Kind::HandshakeReply,
                    0,
                    msg::encode(&reply),
                    Bytes::new(),
                ))
                .await;
            tx.shutdown().await;
            reason
        }
    };
    let f = reader
        .next()
        .await
        .map_err(|e| format!("before handshake: {e}"))?;
    if f.header.kind != Kind::Handshake {
        return Err(format!("expected a handshake, got {:?}", f.header.kind));
    }
    if f.header.major != VERSION_MAJOR {
        let r = refuse(
            format!(
                "protocol version {}.{} is not supported; this server speaks {VERSION_MAJOR}.{VERSION_MINOR}",
                f.header.major, f.header.minor
            ),
            libc::EPROTO,
        )
        .await;
        return Err(r);
    }
    let hs: Handshake = msg::decode(Kind::Handshake, &f.meta).map_err(|e| e.to_string())?;
    let verifies = server.tls.as_ref().is_some_and(|t| t.verifies_clients);
    let refusal = match server.brick(&hs.brick) {
        // A server with a client CA serves TLS clients that present a certificate it signed
        // (one it did not sign failed the TLS handshake).
        _ if tls && verifies && cert.is_none() => Err((
            format!(
                "{} presented no TLS client certificate: this server serves TLS clients with a certificate signed by its CA (transport.socket.ssl-own-cert)",
                hs.client_name
            ),
            libc::EACCES,
        )),
        // Never the names of the bricks that are here: a peer learns only about the one
        // it asked for.
        None => Err((format!("no brick named {:?} here", hs.brick), libc::ENOENT)),
        Some(b) => {
            // Subscribed before looking: a reconfigure from now on is seen by the
            // connection, which then checks itself against the new policy.
            let mut policy = b.policy.subscribe();
            let p = policy.borrow_and_update().clone();
            match p.refusal(&hs.brick, &hs.client_name, peer.ip(), tls, cert.as_deref()) {
                Some(why) => Err((why, libc::EACCES)),
                None => Ok((b, policy)),
            }
        }
    };
    match refusal {
        Err((reason, errno)) => {
            let r = refuse(reason, errno).await;
            Err(r)
        }
        Ok((b, policy)) => {
            let hello = Hello {
                id: f.header.id,
                session: resume::session_id(&f.meta),
                upcalls: resume::wants_upcalls(&f.meta),
                client_name: hs.client_name,
            };
            let who = Who {
                tls,
                cert,
                cert_name,
            };
            Ok((b, reader, tx, who, policy, hello))
        }
    }
}

/// Bytes and requests one connection has in flight.
#[derive(Default)]
struct Budget {
    requests: AtomicUsize,
    bytes: AtomicUsize,
}

/// One request's share of its connection's [`Budget`], given back when its task ends
/// (also when it is aborted).
struct Charge {
    budget: Arc<Budget>,
    cost: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.requests.fetch_sub(1, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.cost, Ordering::AcqRel);
    }
}

impl Budget {
    /// Charges a request of `cost` bytes if it fits in `max` bytes (one alone always fits,
    /// so no request waits forever).
    fn charge(self: &Arc<Self>, cost: usize, max: usize) -> Option<Charge> {
        let now = self.bytes.load(Ordering::Acquire);
        if now != 0 && now.saturating_add(cost) > max {
            return None;
        }
        self.bytes.fetch_add(cost, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        Some(Charge {
            budget: self.clone(),
            cost,
        })
    }
}

/// A token bucket of pings a connection may send: `rate` a second, bursts of `rate`.
struct PingBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl PingBucket {
    fn new(rate: u32) -> PingBucket {
        PingBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: Instant::now(),
        }
    }

    /// Takes one ping; returns how long to stop reading when the bucket is empty.
    fn take(&mut self) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate) - 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// A request read but not yet running: it waits for room in the connection's budget.
struct Held {
    id: u64,
    req: Request,
    data: Bytes,
    cost: usize,
    since: Instant,
}

/// What one connection's requests wait for before they run: a running place (all but lock
/// requests) and, for I/O, room in the connection's running work (in KiB).
struct Gates {
    running: Arc<Semaphore>,
    work: Arc<Semaphore>,
    work_kib: u32,
}

impl Gates {
    fn new(l: &Limits) -> Gates {
        let work_kib = u32::try_from(l.max_work_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX >> 4)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        Gates {
            running: Arc::new(Semaphore::new(
                l.max_running.clamp(1, Semaphore::MAX_PERMITS),
            )),
            work: Arc::new(Semaphore::new(work_kib as usize)),
            work_kib,
        }
    }

    /// Waits until `fop` may run; the permits it holds until dropped.
    async fn enter(
        &self,
        fop: &weft_wire::msg::FopRequest,
        data_len: usize,
    ) -> (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>) {
        let kib = dispatch::work_cost(fop, data_len).div_ceil(1024);
        let work = if kib > 0 {
            let n = u32::try_from(kib).unwrap_or(u32::MAX).min(self.work_kib);
            self.work.clone().acquire_many_owned(n).await.ok()
        } else {
            None
        };
        let running = if dispatch::may_wait(fop) {
            None
        } else {
            self.running.clone().acquire_owned().await.ok()
        };
        (work, running)
    }
}

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends one `Pong` each time it is woken, from its own task: the read loop never waits
/// for the socket, and pings that arrive while a pong is being sent share the next one, so
/// a peer that pings without reading costs one queued pong, never a task per ping.
fn pong_sender(tx: Arc<FrameSink>) -> (AbortOnDrop, Arc<Notify>, Arc<AtomicU64>) {
    let wake = Arc::new(Notify::new());
    let last_id = Arc::new(AtomicU64::new(0));
    let (w, id) = (wake.clone(), last_id.clone());
    let task = tokio::spawn(async move {
        loop {
            w.notified().await;
            let pong = Frame::new(
                Kind::Pong,
                id.load(Ordering::Relaxed),
                Bytes::new(),
                Bytes::new(),
            );
            if tx.send(pong).await.is_err() {
                return;
            }
        }
    });
    (AbortOnDrop(task), wake, last_id)
}

/// One admitted connection, as [`run`] knows it.
struct Conn<'a> {
    /// Its client number.
    client: u64,
    peer: SocketAddr,
    /// The client's name (`HOST:PID:NAME`).
    name: &'a str,
    who: &'a Who,
    /// Where its upcalls' acknowledgements go, when it takes upcalls.
    route: Option<&'a Arc<super::upcalls::Route>>,
}

/// Serves requests until the connection ends; returns why it ended, and whether its
/// client may be kept for its grace period (not when the brick's new policy refuses it:
/// it cannot come back).
#[allow(clippy::too_many_arguments)]
async fn run(
    server: &Arc<BrickServer>,
    brick: &Arc<Brick>,
    mut reader: FrameReader<tokio::io::ReadHalf<BoxStream>>,
    tx: &Arc<FrameSink>,
    conn: Conn<'_>,
    fds: &Arc<FdTable>,
    mut kick: tokio::sync::watch::Receiver<bool>,
    mut policy: tokio::sync::watch::Receiver<Arc<super::Policy>>,
) -> (String, bool) {
    let (client, peer) = (conn.client, conn.peer);
    // Who requests run as: read from the policy here, and again when it is swapped.
    let mut squash = policy.borrow().squash;
    let limits = server.limits;
    let log = &server.counters.log;
    let mut tasks = JoinSet::new();
    let budget = Arc::new(Budget::default());
    let gates = Arc::new(Gates::new(&limits));
    let mut detached = brick.detached.subscribe();
    let (_pong_task, pong, pong_id) = pong_sender(tx.clone());
    let mut pings = PingBucket::new(limits.max_pings_per_sec);
    // Reading stops while a request waits for budget, and for a moment after too many pings.
    let mut held: Option<Held> = None;
    let mut paused: Option<tokio::time::Instant> = None;
    let mut check = tokio::time::interval(
        (limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)),
    );
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rx = Instant::now();
    let reason = loop {
        if let Some(h) = held.take() {
            match budget.charge(h.cost, limits.max_inflight_bytes) {
                Some(charge) => {
                    let (top, tx, fds) = (brick.top().clone(), tx.clone(), fds.clone());
                    tasks.spawn(answer(top, tx, fds, gates.clone(), client, h, charge));
                }
                None => held = Some(h),
            }
        }
        let reading = held.is_none() && paused.is_none();
        let frame = tokio::select! {
            biased;
            _ = detached.wait_for(|d| *d) => break ("brick detached".to_string(), true),
            // (Err: nobody can kick this connection, it has no session id.)
            Ok(_) = kick.wait_for(|k| *k) => break ("a newer connection of this client took its place".to_string(), true),
            // The brick was reconfigured: this client is still served, or disconnected.
            Ok(()) = policy.changed() => {
                let p = policy.borrow_and_update().clone();
                let who = conn.who;
                if let Some(why) = p.refusal(&brick.name, conn.name, peer.ip(), who.tls, who.cert.as_deref()) {
                    break (format!("the brick's new access policy refuses it: {why}"), false);
                }
                if p.squash != squash {
                    tracing::debug!(%peer, brick = %brick.name, client, "squash options changed for this connection's requests");
                }
                squash = p.squash;
                continue;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = tokio::time::sleep_until(paused.unwrap_or_else(tokio::time::Instant::now)), if paused.is_some() => {
                paused = None;
                continue;
            }
            _ = check.tick() => {
                let stalled = tx.stalled_for();
                if stalled >= limits.idle_timeout {
                    break (format!("the client does not read: nothing could be sent to it for {stalled:?}"), true);
                }
                if let Some(h) = &held {
                    if h.since.elapsed() >= limits.idle_timeout {
                        break (format!(
                            "over its budget of {} MiB in flight for {:?} (--client-max-bytes)",
                            limits.max_inflight_bytes >> 20,
                            limits.idle_timeout
                        ), true);
                    }
                }
                if reading && last_rx.elapsed() >= limits.idle_timeout {
                    break (format!(
                        "nothing received for {:?} (clients ping at least every 10 s)",
                        limits.idle_timeout
                    ), true);
                }
                continue;
            }
            f = reader.next(), if reading => f,
        };
        last_rx = Instant::now();
        let f = match frame {
            Ok(f) => f,
            Err(ReadError::Closed) => break ("closed by client".into(), true),
            Err(e) => break (e.to_string(), true),
        };
        match f.header.kind {
            Kind::Ping | Kind::Pong => {
                if f.header.kind == Kind::Ping {
                    pong_id.store(f.header.id, Ordering::Relaxed);
                    pong.notify_one();
                }
                if let Some(wait) = pings.take() {
                    paused = Some(tokio::time::Instant::now() + wait);
                    log.hit("pings", |n| {
                        tracing::warn!(%peer, client, "client sends more than {} pings a second: reading from it more slowly (--max-ping-rate){}", limits.max_pings_per_sec, more(n))
                    });
                }
            }
            Kind::UpcallAck if conn.route.is_some() => {
                if let Some(r) = conn.route {
                    r.acked(f.header.id);
                }
            }
            Kind::Request => {
                let mut req: Request = match msg::decode(Kind::Request, &f.meta) {
                    Ok(r) => r,
                    Err(e) => break (e.to_string(), true),
                };
                // Who the request runs as: the client's ids, squashed as the brick says.
                squash.apply(&mut req.ctx);
                if squash.is_on() {
                    // A client answering creates behind a lease gives them its own ids.
                    req.xdata.0.remove(weft_core::LEASE_KEY);
                }
                if budget.requests.load(Ordering::Acquire) >= limits.max_inflight {
                    break (
                        format!(
                            "too many requests in flight (more than {}, --client-max-requests)",
                            limits.max_inflight
                        ),
                        true,
                    );
                }
                let cost = f.meta.len() + f.data.len() + dispatch::reply_cost(&req.fop);
                let in_flight = budget.bytes.load(Ordering::Acquire);
                if in_flight != 0 && in_flight.saturating_add(cost) > limits.max_inflight_bytes {
                    log.hit("bytes", |n| {
                        tracing::warn!(%peer, client, "client has {} MiB in flight, its limit: reading its next request when earlier ones finish (--client-max-bytes){}", limits.max_inflight_bytes >> 20, more(n))
                    });
                }
                held = Some(Held {
                    id: f.header.id,
                    req,
                    data: f.data,
                    cost,
                    since: Instant::now(),
                });
            }
            other => {
                break (
                    format!("unexpected {other:?} frame after the handshake"),
                    true,
                )
            }
        }
    };
    // Requests still running are abandoned (a lock wait, a slow read); their replies would
    // have nowhere to go.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    reason
}

/// Runs one request against the brick, once its connection's gates let it, and sends its
/// reply; `_charge` holds its share of the connection's budget until then.
async fn answer(
    top: weft_core::XlatorRef,
    tx: Arc<FrameSink>,
    fds: Arc<FdTable>,
    gates: Arc<Gates>,
    client: u64,
    h: Held,
    _charge: Charge,
) {
    let permits = gates.enter(&h.req.fop, h.data.len()).await;
    let mut ctx = h.req.ctx;
    ctx.client = client;
    let (resp, data) = dispatch::dispatch(&top, &fds, &ctx, h.req.xdata, h.req.fop, h.data).await;
    drop(permits);
    let mut meta = msg::encode(&resp);
    let mut data = data;
    if !Frame::fits(meta.len(), data.len()) {
        tracing::warn!(
            client,
            "reply too large for one frame ({} + {} bytes): failing the request with EIO",
            meta.len(),
            data.len()
        );
        meta = msg::encode(&weft_wire::msg::Response {
            xdata: Xdata::default(),
            result: Err(libc::EIO),
        });
        data = Bytes::new();
    }
    let _ = tx.send(Frame::new(Kind::Reply, h.id, meta, data)).await;
}

/// Tells a peer refused before its handshake (over a connection limit) why, then closes:
/// reads what it sends first (at most 4 KiB, for at most 1 s), answers a `Refused`
/// handshake reply with errno `EAGAIN` unless it speaks TLS, and closes. Takes at most 2 s.
pub(super) async fn refuse_early(mut sock: TcpStream, why: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 4096];
    let n = match tokio::time::timeout(Duration::from_secs(1), sock.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 && buf[0] != TLS_HANDSHAKE_BYTE => n,
        _ => return,
    };
    let id = buf
        .get(..HEADER_LEN)
        .filter(|_| n >= HEADER_LEN)
        .and_then(|b| <&[u8; HEADER_LEN]>::try_from(b).ok())
        .and_then(|h| weft_wire::Header::parse(h).ok())
        .map_or(0, |h| h.id);
    let reply = HandshakeReply::Refused {
        reason: why,
        errno: libc::EAGAIN,
    };
    let f = Frame::new(Kind::HandshakeReply, id, msg::encode(&reply), Bytes::new());
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sock.write_all(&f.encode()).await;
        let _ = sock.shutdown().await;
    })
    .await;
}
