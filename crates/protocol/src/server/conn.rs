//! One client connection to the brick server: handshake, then requests answered in any
//! order, each on its own task. Anything malformed closes this connection only, with a log
//! line naming the peer and the reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use weft_core::{Ctx, FdRef, Xdata};
use weft_wire::msg::{self, FopRequest, Handshake, HandshakeReply, Request};
use weft_wire::{Frame, Kind, VERSION_MAJOR, VERSION_MINOR};

use super::{dispatch, Brick, BrickServer};
use crate::stream::{BoxStream, FrameReader, FrameSink, ReadError};
use crate::tls::TLS_HANDSHAKE_BYTE;

/// The fds one connection has open, by the numbers the client knows them by.
/// Fd numbers are unique across every connection of the process, so a number a client
/// kept from a closed connection names nothing on a new one (EBADF), never another file.
static NEXT_FD_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Default)]
pub(super) struct FdTable {
    fds: Mutex<HashMap<u64, FdRef>>,
}

impl FdTable {
    pub(super) fn insert(&self, fd: FdRef) -> u64 {
        let n = NEXT_FD_NUMBER.fetch_add(1, Ordering::Relaxed);
        self.fds.lock().insert(n, fd);
        n
    }
    pub(super) fn get(&self, n: u64) -> Option<FdRef> {
        self.fds.lock().get(&n).cloned()
    }
    pub(super) fn remove(&self, n: u64) -> Option<FdRef> {
        self.fds.lock().remove(&n)
    }
    fn drain(&self) -> Vec<FdRef> {
        self.fds.lock().drain().map(|(_, f)| f).collect()
    }
}

/// Serves one accepted TCP connection to the end, logging why it ended.
pub(super) async fn serve(server: Arc<BrickServer>, sock: TcpStream, peer: SocketAddr) {
    let limits = server.limits;
    let setup = tokio::time::timeout(limits.handshake_timeout, open(&server, sock, peer)).await;
    let (brick, reader, tx, tls) = match setup {
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
    let client = server.next_client.fetch_add(1, Ordering::Relaxed);
    brick.clients.fetch_add(1, Ordering::AcqRel);
    // Counted before looking: a detach that began meanwhile either waits for this
    // connection or is seen here, and then the graph is never touched.
    if *brick.detached.borrow() {
        brick.clients.fetch_sub(1, Ordering::AcqRel);
        tracing::info!(%peer, brick = %brick.name, "closing connection: brick detached");
        return;
    }
    tracing::info!(%peer, brick = %brick.name, client, tls, "client connected");
    let fds = Arc::new(FdTable::default());
    let reason = run(&brick, reader, &tx, client, &fds, limits).await;
    tracing::info!(%peer, brick = %brick.name, client, "connection closed: {reason}");
    // Release what the client left open, then anything else it held (locks).
    let ctx = Ctx {
        client,
        ..Ctx::internal()
    };
    for fd in fds.drain() {
        let r = if fd.is_dir {
            brick.top().releasedir(&ctx, &fd, Xdata::default()).await
        } else {
            brick.top().release(&ctx, &fd, Xdata::default()).await
        };
        if let Err(e) = r {
            tracing::debug!(client, "release on disconnect: {e}");
        }
    }
    brick.top().forget_client(client).await;
    brick.clients.fetch_sub(1, Ordering::AcqRel);
    // A client that stopped reading must not hold this task forever.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tx.shutdown()).await;
}

type Opened = (
    Arc<Brick>,
    FrameReader<tokio::io::ReadHalf<BoxStream>>,
    Arc<FrameSink>,
    bool,
);

/// TLS (if the client starts with a TLS record), then the handshake.
async fn open(server: &BrickServer, sock: TcpStream, peer: SocketAddr) -> Result<Opened, String> {
    let mut first = [0u8; 1];
    let n = sock
        .peek(&mut first)
        .await
        .map_err(|e| format!("read failed: {e}"))?;
    if n == 0 {
        return Err("closed before the handshake".into());
    }
    let (stream, tls): (BoxStream, bool) = if first[0] == TLS_HANDSHAKE_BYTE {
        let Some(acc) = &server.tls else {
            return Err("client speaks TLS but this server has no certificate (--tls-cert)".into());
        };
        let s = acc
            .accept(sock)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        (Box::new(s), true)
    } else {
        (Box::new(sock), false)
    };
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FrameReader::new(rd);
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
    let refusal = match server.brick(&hs.brick) {
        None => Err((
            format!(
                "no brick named {:?} here ({})",
                hs.brick,
                server.brick_list()
            ),
            libc::ENOENT,
        )),
        Some(b) => {
            if let Err(why) = crate::auth::check(&b.policy.allow, &b.policy.reject, peer.ip()) {
                Err((
                    format!("brick {:?} refuses {}: {why}", hs.brick, hs.client_name),
                    libc::EACCES,
                ))
            } else if b.policy.tls_required && !tls {
                Err((
                    format!(
                        "brick {:?} requires TLS (transport.socket.ssl-enabled)",
                        hs.brick
                    ),
                    libc::EACCES,
                ))
            } else {
                Ok(b)
            }
        }
    };
    match refusal {
        Err((reason, errno)) => {
            let r = refuse(reason, errno).await;
            Err(r)
        }
        Ok(b) => {
            let ok = HandshakeReply::Accepted {
                server_version: format!("{VERSION_MAJOR}.{VERSION_MINOR}"),
            };
            tx.send(Frame::new(
                Kind::HandshakeReply,
                f.header.id,
                msg::encode(&ok),
                Bytes::new(),
            ))
            .await
            .map_err(|_| "connection lost during handshake".to_string())?;
            Ok((b, reader, tx, tls))
        }
    }
}

/// Serves requests until the connection ends; returns why it ended.
async fn run(
    brick: &Arc<Brick>,
    mut reader: FrameReader<tokio::io::ReadHalf<BoxStream>>,
    tx: &Arc<FrameSink>,
    client: u64,
    fds: &Arc<FdTable>,
    limits: super::Limits,
) -> String {
    let mut tasks = JoinSet::new();
    let inflight = Arc::new(AtomicUsize::new(0));
    let inflight_bytes = Arc::new(AtomicUsize::new(0));
    let mut detached = brick.detached.subscribe();
    let reason = loop {
        let frame = tokio::select! {
            biased;
            _ = detached.wait_for(|d| *d) => break "brick detached".to_string(),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            f = tokio::time::timeout(limits.idle_timeout, reader.next()) => f,
        };
        let f = match frame {
            Err(_) => {
                break format!(
                    "nothing received for {:?} (clients ping at least every 10 s)",
                    limits.idle_timeout
                )
            }
            Ok(f) => f,
        };
        let f = match f {
            Ok(f) => f,
            Err(ReadError::Closed) => break "closed by client".into(),
            Err(e) => break e.to_string(),
        };
        match f.header.kind {
            Kind::Ping => {
                // Sent from its own task: the read loop never waits behind a big reply.
                let tx = tx.clone();
                tokio::spawn(async move {
                    let pong = Frame::new(Kind::Pong, f.header.id, Bytes::new(), Bytes::new());
                    let _ = tx.send(pong).await;
                });
            }
            Kind::Request => {
                let req: Request = match msg::decode(Kind::Request, &f.meta) {
                    Ok(r) => r,
                    Err(e) => break e.to_string(),
                };
                let cost = f.meta.len()
                    + f.data.len()
                    + match &req.fop {
                        FopRequest::Readv { size, .. } => *size as usize,
                        _ => 0,
                    };
                let n = inflight.fetch_add(1, Ordering::AcqRel) + 1;
                let b = inflight_bytes.fetch_add(cost, Ordering::AcqRel) + cost;
                if n > limits.max_inflight {
                    break format!(
                        "too many requests in flight (more than {})",
                        limits.max_inflight
                    );
                }
                if b > limits.max_inflight_bytes {
                    break format!(
                        "too many bytes in flight (more than {} MiB)",
                        limits.max_inflight_bytes >> 20
                    );
                }
                let (top, tx, fds) = (brick.top().clone(), tx.clone(), fds.clone());
                let (inflight, inflight_bytes) = (inflight.clone(), inflight_bytes.clone());
                let id = f.header.id;
                tasks.spawn(async move {
                    let mut ctx = req.ctx;
                    ctx.client = client;
                    let (resp, data) =
                        dispatch::dispatch(&top, &fds, &ctx, req.xdata, req.fop, f.data).await;
                    let mut meta = msg::encode(&resp);
                    let mut data = data;
                    if !Frame::fits(meta.len(), data.len()) {
                        tracing::warn!(client, "reply too large for one frame ({} + {} bytes): failing the request with EIO", meta.len(), data.len());
                        meta = msg::encode(&weft_wire::msg::Response {
                            xdata: Xdata::default(),
                            result: Err(libc::EIO),
                        });
                        data = Bytes::new();
                    }
                    let frame = Frame::new(Kind::Reply, id, meta, data);
                    let _ = tx.send(frame).await;
                    inflight.fetch_sub(1, Ordering::AcqRel);
                    inflight_bytes.fetch_sub(cost, Ordering::AcqRel);
                });
            }
            Kind::Pong => {}
            other => break format!("unexpected {other:?} frame after the handshake"),
        }
    };
    // Requests still running are abandoned (a lock wait, a slow read); their replies would
    // have nowhere to go.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    reason
}
