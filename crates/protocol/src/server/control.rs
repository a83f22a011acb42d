//! The brick server's control socket: a unix socket taking [`ControlRequest`]s framed like
//! everything else. An `attach` can load any translator (Python ones included), so the
//! socket is as powerful as root: it is created with mode 0600 (0660 with a control group)
//! from the start, by binding it inside a fresh 0700 folder and renaming it into place, and
//! every connection's peer credentials (`SO_PEERCRED`, `SO_PEERGROUPS`) are checked: only
//! root, the server's own user, or a member of the control group may use it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{UnixListener, UnixStream};
use weft_wire::msg::{self, ControlReply, ControlRequest};
use weft_wire::{Frame, Kind};

use super::limits::{more, LimitLog};
use super::BrickServer;
use crate::stream::{write_frames, FrameReader};

/// Who may use the control socket besides root and the server's own user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlAccess {
    /// Members of this group (by gid), as the peer's primary or supplementary group.
    pub group: Option<u32>,
}

/// Why a control socket cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another server answers on the socket.
    #[error("control socket {0} is in use by a running server")]
    InUse(PathBuf),
    /// Something other than a socket is in the way.
    #[error("{0} exists and is not a socket; not replacing it")]
    NotASocket(PathBuf),
    /// A file system call failed.
    #[error("{what} {path}: {err}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BindError {
    let path = path.to_path_buf();
    move |err| BindError::Io { what, path, err }
}

/// Creates `dir` and any missing parents with mode 0755 (whatever the umask), and
/// tightens an existing `dir` owned by this user that everyone may write to without the
/// sticky bit (an older server created /run/weft 0777) to 0755, with a log line.
pub fn make_private_parent(dir: &Path) -> Result<(), BindError> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && std::fs::symlink_metadata(at).is_err() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(0o755).create(d) {
            Ok(()) => std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .map_err(io("cannot set the mode of", d))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("cannot create", d)(e)),
        }
    }
    if missing.is_empty() {
        let m = std::fs::metadata(dir).map_err(io("cannot stat", dir))?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let mode = m.mode() & 0o7777;
        if m.uid() == me && mode & 0o002 != 0 && mode & 0o1000 == 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io("cannot set the mode of", dir))?;
            tracing::warn!(
                "{} was mode {mode:o} (writable by others): set to 755",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Binds the control socket at `path`: mode 0600 from the moment it appears there (0660
/// and owned by the group when `access` names one), never under the umask's control. The
/// socket is bound inside a fresh 0700 folder beside `path` and renamed into place, so no
/// one else can reach it in between. A stale socket left by a server that is gone is
/// replaced; one that a running server answers is refused, as is anything but a socket.
/// Missing parent folders are created 0755.
pub async fn bind(path: &Path, access: &ControlAccess) -> Result<UnixListener, BindError> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            return Err(BindError::NotASocket(path.to_path_buf()));
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    make_private_parent(&parent)?;
    let (tmp, listener) = bind_in_private_dir(&parent, access)?;
    let sock = tmp.join("s");
    let r = std::fs::rename(&sock, path).map_err(io("cannot move the control socket to", path));
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_dir(&tmp);
    r?;
    Ok(listener)
}

/// Makes a fresh 0700 folder in `parent` and binds socket `s` in it with its final mode.
fn bind_in_private_dir(
    parent: &Path,
    access: &ControlAccess,
) -> Result<(PathBuf, UnixListener), BindError> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = loop {
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = parent.join(format!(".weft-{}-{n}", std::process::id()));
        // mkdir applies the umask, which can only take bits away from 0700.
        match std::fs::DirBuilder::new().mode(0o700).create(&t) {
            Ok(()) => break t,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("cannot create a private folder in", parent)(e)),
        }
    };
    let sock = tmp.join("s");
    let done = (|| {
        let l = std::os::unix::net::UnixListener::bind(&sock)
            .map_err(io("cannot bind control socket", &sock))?;
        let mode = if let Some(gid) = access.group {
            std::os::unix::fs::chown(&sock, None, Some(gid))
                .map_err(io("cannot give the control socket to its group:", &sock))?;
            0o660
        } else {
            0o600
        };
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(mode))
            .map_err(io("cannot set the mode of", &sock))?;
        l.set_nonblocking(true)
            .map_err(io("cannot set up control socket", &sock))?;
        UnixListener::from_std(l).map_err(io("cannot set up control socket", &sock))
    })();
    match done {
        Ok(l) => Ok((tmp, l)),
        Err(e) => {
            let _ = std::fs::remove_file(&sock);
            let _ = std::fs::remove_dir(&tmp);
            Err(e)
        }
    }
}

/// `SO_PEERGROUPS`: the peer's supplementary groups (Linux 4.13).
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEERGROUPS: libc::c_int = 59;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEERGROUPS: libc::c_int = 0x3d;

/// The peer's supplementary groups, as the kernel recorded them at connect time.
fn peer_groups(sock: &UnixStream) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<u32>()) as libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes; the kernel writes at most that many.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<u32>();
        if r == 0 {
            groups.truncate(n);
            return groups;
        }
        let e = std::io::Error::last_os_error().raw_os_error();
        if e == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Vec::new();
    }
}

/// Whether the peer of `sock` may use the control socket: root, this process's user, or a
/// member of `access.group`. Otherwise the reason, naming the peer.
fn check_peer(sock: &UnixStream, access: &ControlAccess) -> Result<(), String> {
    let cred = sock
        .peer_cred()
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let (uid, gid) = (cred.uid(), cred.gid());
    if uid == 0 || uid == me {
        return Ok(());
    }
    if let Some(g) = access.group {
        if gid == g || peer_groups(sock).contains(&g) {
            return Ok(());
        }
    }
    let pid = cred.pid().map_or("?".to_string(), |p| p.to_string());
    let who = match access.group {
        Some(g) => format!("root or members of group {g}"),
        None => "root".to_string(),
    };
    Err(format!(
        "permission denied: uid {uid} (pid {pid}) may not use this control socket; only {who} may (weft brickd --control-group)"
    ))
}

/// Answers control requests on `listener` until the task is dropped. A peer that may not
/// use the socket (not root, not this process's user, not a member of `access.group`)
/// gets one `Err` reply saying so and is closed, with a log line.
pub async fn serve(server: Arc<BrickServer>, listener: UnixListener, access: ControlAccess) {
    let refusals = Arc::new(LimitLog::default());
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let server = server.clone();
        let verdict = check_peer(&sock, &access);
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let (rd, wr) = sock.into_split();
            let mut reader = FrameReader::new(rd);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let writer = tokio::spawn(write_frames(wr, rx));
            if let Err(why) = verdict {
                refusals.hit("control", |n| {
                    tracing::warn!("control socket: refused a connection: {why}{}", more(n))
                });
                // Read its request (a small one only) so the answer is not lost to a reset.
                reader.set_max_frame(Some(64 << 10));
                let first = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next());
                let id = match first.await {
                    Ok(Ok(f)) => f.header.id,
                    _ => 0,
                };
                let reply = ControlReply::Err(why);
                let frame = Frame::new(Kind::ControlReply, id, msg::encode(&reply), Bytes::new());
                let _ = tx.send(frame).await;
                drop(tx);
                let _ = writer.await;
                return;
            }
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
        ControlRequest::Reconfigure { volfile } => match server.reconfigure(&volfile).await {
            Ok(names) => ControlReply::Ok(format!("reconfigured {}\n", names.join(", "))),
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
