//! The brick server's control socket: a unix socket (mode 0600, so only its owner may
//! use it) taking [`ControlRequest`]s framed like everything else.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{UnixListener, UnixStream};
use weft_wire::msg::{self, ControlReply, ControlRequest};
use weft_wire::{Frame, Kind};

use super::BrickServer;
use crate::stream::{write_frames, FrameReader};

/// Binds the control socket at `path`, replacing a stale socket file left by a server
/// that is gone (but refusing to take over one that still answers).
pub async fn bind(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(format!(
                "control socket {} is in use by a running server",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    Ok(l)
}

/// Answers control requests on `listener` until the task is dropped.
pub async fn serve(server: Arc<BrickServer>, listener: UnixListener) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let (rd, wr) = sock.into_split();
            let mut reader = FrameReader::new(rd);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let writer = tokio::spawn(write_frames(wr, rx));
            while let Ok(f) = reader.next().await {
                let reply = match (
                    f.header.kind,
                    msg::decode::<ControlRequest>(Kind::Control, &f.meta),
                ) {
                    (Kind::Control, Ok(req)) => handle(&server, req).await,
                    (Kind::Control, Err(e)) => ControlReply::Err(e.to_string()),
                    (k, _) => ControlReply::Err(format!("expected a control request, got {k:?}")),
                };
                let frame = Frame::new(
                    Kind::ControlReply,
                    f.header.id,
                    msg::encode(&reply),
                    Bytes::new(),
                );
                if tx.send(frame).await.is_err() {
                    break;
                }
            }
            drop(tx);
            let _ = writer.await;
        });
    }
}

async fn handle(server: &BrickServer, req: ControlRequest) -> ControlReply {
    match req {
        ControlRequest::Attach { volfile } => match server.attach(&volfile).await {
            Ok(names) => ControlReply::Ok(format!("attached {}\n", names.join(", "))),
            Err(e) => ControlReply::Err(e),
        },
        ControlRequest::Detach { brick } => match server.detach(&brick).await {
            Ok(()) => ControlReply::Ok(format!("detached {brick}\n")),
            Err(e) => ControlReply::Err(e),
        },
        ControlRequest::Status => ControlReply::Ok(server.status()),
        ControlRequest::Statedump => {
            let dump = server.statedump();
            if weft_wire::Frame::fits(dump.len() + 16, 0) {
                ControlReply::Ok(dump)
            } else {
                ControlReply::Err(format!(
                    "the statedump is {} bytes, more than one reply carries; detach bricks or use the mount's statedump",
                    dump.len()
                ))
            }
        }
    }
}

/// Sends one control request to the server whose control socket is `path`.
pub async fn request(path: &Path, req: &ControlRequest) -> Result<ControlReply, String> {
    let sock = UnixStream::connect(path).await.map_err(|e| {
        format!(
            "cannot reach the brick server's control socket {}: {e} (is `weft brickd` running?)",
            path.display()
        )
    })?;
    let (rd, wr) = sock.into_split();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let writer = tokio::spawn(write_frames(wr, rx));
    tx.send(Frame::new(Kind::Control, 1, msg::encode(req), Bytes::new()))
        .await
        .map_err(|_| "control connection closed".to_string())?;
    let f = FrameReader::new(rd)
        .next()
        .await
        .map_err(|e| format!("no answer from the brick server: {e}"))?;
    drop(tx);
    let _ = writer.await;
    msg::decode(Kind::ControlReply, &f.meta).map_err(|e| e.to_string())
}
