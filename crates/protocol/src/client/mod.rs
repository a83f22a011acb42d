//! `protocol/client`: a translator whose FOPs run on a brick in a brick server.
//!
//! Options carry GlusterFS's names: `remote-host`, `remote-port`, `remote-subvolume`,
//! `ping-timeout`, and `transport.socket.ssl-*` for TLS. The translator raises child-up
//! when its connection is up and child-down when it drops (see its `session` module for how
//! requests behave meanwhile, and how open files and locks survive a reconnect).

mod locks;
mod session;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::{
    Checksum, Ctx, Dirent, EntrylkCmd, EntrylkType, Errno, FdRef, Flock, Fop, Iatt, LkCmd, Loc,
    SeekWhat, SetAttr, StatVfs, XattrMap, XattropOp, Xdata, Xlator, XlatorInit, XlatorRef,
    XlatorType,
};
use weft_wire::msg::{FopRequest as F, Reply};

use session::{Config, ReleaseTo, RemoteFd, Session};

const CLIENT_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "remote-host",
        kind: OptionKind::Str,
        default: None,
        description: "Host name or address of the brick server.",
    },
    OptionSpec {
        key: "remote-port",
        kind: OptionKind::Int { min: 1, max: 65535 },
        default: Some("24009"),
        description: "TCP port of the brick server (weft brickd --listen).",
    },
    OptionSpec {
        key: "remote-subvolume",
        kind: OptionKind::Str,
        default: None,
        description: "The brick to use: the volume under protocol/server in the server's volfile.",
    },
    OptionSpec {
        key: "ping-timeout",
        kind: OptionKind::Duration,
        default: Some("42"),
        description: "A server silent this long is taken as dead: requests in flight fail with ENOTCONN and the client reconnects.",
    },
    OptionSpec {
        key: "transport.socket.ssl-enabled",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "Connect with TLS, verifying the server against ssl-ca-list.",
    },
    OptionSpec {
        key: "transport.socket.ssl-ca-list",
        kind: OptionKind::Str,
        default: Some(""),
        description: "PEM file of the CA certificates that sign servers (required with TLS).",
    },
    OptionSpec {
        key: "transport.socket.ssl-own-cert",
        kind: OptionKind::Str,
        default: Some(""),
        description: "PEM certificate this client presents (for servers that demand one).",
    },
    OptionSpec {
        key: "transport.socket.ssl-private-key",
        kind: OptionKind::Str,
        default: Some(""),
        description: "PEM private key of ssl-own-cert.",
    },
    OptionSpec {
        key: "cache-invalidation",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "Ask the brick to tell this client (upcalls) when another client changes what it has seen, and pass those invalidations up the graph to its caches (set when the graph has performance/md-cache with cache-invalidation on).",
    },
];

/// The `protocol/client` type.
pub struct ClientType;

impl XlatorType for ClientType {
    fn type_name(&self) -> &'static str {
        "protocol/client"
    }
    fn description(&self) -> &'static str {
        "Runs FOPs on a brick served by a remote brick server (weft brickd)."
    }
    fn options(&self) -> &'static [OptionSpec] {
        CLIENT_OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (0, 0)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let o = &init.options;
        let tls = if o.bool("transport.socket.ssl-enabled") {
            let ca = o.str("transport.socket.ssl-ca-list");
            if ca.is_empty() {
                return Err("transport.socket.ssl-enabled needs transport.socket.ssl-ca-list (the CA that signs the server)".into());
            }
            let cert = o.str("transport.socket.ssl-own-cert");
            let key = o.str("transport.socket.ssl-private-key");
            let own = match (cert.is_empty(), key.is_empty()) {
                (true, true) => None,
                (false, false) => Some((Path::new(cert), Path::new(key))),
                _ => return Err("ssl-own-cert and ssl-private-key go together".into()),
            };
            Some(crate::tls::connector(Path::new(ca), own)?)
        } else {
            None
        };
        let cfg = Config {
            host: o.str("remote-host").to_string(),
            port: o.int("remote-port") as u16,
            brick: o.str("remote-subvolume").to_string(),
            ping_timeout: o
                .duration("ping-timeout")
                .max(std::time::Duration::from_millis(100)),
            tls,
            upcalls: o.bool("cache-invalidation"),
        };
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| "protocol/client must be built inside a tokio runtime".to_string())?;
        let session = Session::new(init.name.clone(), cfg, init.events);
        let task = rt.spawn(session.clone().run());
        Ok(Arc::new(Client {
            name: init.name,
            session,
            task: parking_lot::Mutex::new(Some(task)),
            options: parking_lot::Mutex::new(init.options),
        }))
    }
}

/// A live `protocol/client`.
struct Client {
    name: String,
    session: Arc<Session>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The options in force (to tell what a reconfigure changes).
    options: parking_lot::Mutex<Options>,
}

/// The only option of protocol/client that changes live; the others (where and how to
/// connect) need a new graph.
const LIVE_OPTIONS: &[&str] = &["ping-timeout"];

/// The reply was of another shape than the FOP promises: a server bug.
fn shape(name: &str, fop: &str, r: &Reply) -> Errno {
    tracing::error!("{name}: {fop} answered with {r:?}");
    Errno::EIO
}

macro_rules! expect {
    ($self:ident, $fop:literal, $r:expr, $pat:pat => $val:expr) => {
        match $r {
            ($pat, xd, _, _) => Ok(($val, xd)),
            (other, _, _, _) => Err(shape(&$self.name, $fop, &other)),
        }
    };
}

impl Client {
    async fn call(
        &self,
        ctx: &Ctx,
        xd: Xdata,
        fop: F,
    ) -> Result<(Reply, Xdata, Bytes, u64), Errno> {
        self.session.call(ctx, xd, fop, Bytes::new()).await
    }

    fn remote(&self, fd: &FdRef) -> Result<u64, Errno> {
        let r = fd.ctx::<RemoteFd>(&self.name).ok_or(Errno::EBADF)?;
        self.session.fd_num(&r)
    }

    async fn iatt(&self, ctx: &Ctx, xd: Xdata, fop: F) -> Fop<Iatt> {
        let name = fop.name();
        match self.call(ctx, xd, fop).await? {
            (Reply::Iatt(i), xd, _, _) => Ok((i, xd)),
            (other, _, _, _) => Err(shape(&self.name, name, &other)),
        }
    }

    async fn unit(&self, ctx: &Ctx, xd: Xdata, fop: F) -> Fop<()> {
        let name = fop.name();
        match self.call(ctx, xd, fop).await? {
            (Reply::Unit, xd, _, _) => Ok(((), xd)),
            (other, _, _, _) => Err(shape(&self.name, name, &other)),
        }
    }

    async fn xattrs(&self, ctx: &Ctx, xd: Xdata, fop: F) -> Fop<XattrMap> {
        let name = fop.name();
        match self.call(ctx, xd, fop).await? {
            (Reply::Xattrs(x), xd, _, _) => Ok((x, xd)),
            (other, _, _, _) => Err(shape(&self.name, name, &other)),
        }
    }

    async fn dirents(&self, ctx: &Ctx, xd: Xdata, fop: F) -> Fop<Vec<Dirent>> {
        let name = fop.name();
        match self.call(ctx, xd, fop).await? {
            (Reply::Dirents(d), xd, _, _) => Ok((d, xd)),
            (other, _, _, _) => Err(shape(&self.name, name, &other)),
        }
    }

    async fn opened(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata, fop: F) -> Fop<()> {
        let (r, xd, _, epoch) = self.call(ctx, xd, fop).await?;
        match r {
            Reply::Opened { fd: n } => {
                let remote = self.session.bind_fd(fd, ctx, n, epoch);
                fd.set_ctx(&self.name, remote);
                Ok(((), xd))
            }
            other => Err(shape(&self.name, "open", &other)),
        }
    }

    async fn released(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata, dir: bool) -> Fop<()> {
        self.session.unbind_fd(fd);
        let Some(r) = fd.take_ctx::<RemoteFd>(&self.name) else {
            return Ok(((), Xdata::default()));
        };
        // Not connected: sent when the connection is back if the brick kept it for us.
        // Opened in a server session that is gone: the brick holds nothing of it.
        let ReleaseTo::Send(n) = self.session.release_to(&r, dir) else {
            return Ok(((), Xdata::default()));
        };
        let fop = if dir {
            F::Releasedir { fd: n }
        } else {
            F::Release { fd: n }
        };
        match self.unit(ctx, xd, fop).await {
            Err(Errno::ENOTCONN) => {
                self.session.defer_release(&r, dir);
                Ok(((), Xdata::default()))
            }
            r => r,
        }
    }
}

#[async_trait]
impl Xlator for Client {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &[]
    }
    fn dump(&self) -> String {
        self.session.dump()
    }
    async fn fini(&self) {
        self.session.stop();
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }
    async fn forget_client(&self, _client: u64) {}

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let changed = self.options.lock().changed_keys(options);
        let fixed: Vec<&String> = changed
            .iter()
            .filter(|k| !LIVE_OPTIONS.contains(&k.as_str()))
            .collect();
        if !fixed.is_empty() {
            return Err(format!(
                "{} cannot change while connected (only ping-timeout can)",
                fixed
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let ping = options
            .duration("ping-timeout")
            .max(std::time::Duration::from_millis(100));
        self.session.set_ping_timeout(ping);
        *self.options.lock() = options.clone();
        tracing::info!("{}: ping-timeout is now {ping:?}", self.name);
        Ok(())
    }

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.iatt(ctx, xd, F::Lookup { loc: loc.clone() }).await
    }
    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.iatt(ctx, xd, F::Stat { loc: loc.clone() }).await
    }
    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        let fd = self.remote(fd)?;
        self.iatt(ctx, xd, F::Fstat { fd }).await
    }
    async fn access(&self, ctx: &Ctx, loc: &Loc, mask: u32, xd: Xdata) -> Fop<()> {
        self.unit(
            ctx,
            xd,
            F::Access {
                loc: loc.clone(),
                mask,
            },
        )
        .await
    }
    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let fop = F::Setattr {
            loc: loc.clone(),
            attr: *attr,
        };
        self.iatt(ctx, xd, fop).await
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let fd = self.remote(fd)?;
        self.iatt(ctx, xd, F::Fsetattr { fd, attr: *attr }).await
    }
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        self.iatt(
            ctx,
            xd,
            F::Truncate {
                loc: loc.clone(),
                size,
            },
        )
        .await
    }
    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        let fd = self.remote(fd)?;
        self.iatt(ctx, xd, F::Ftruncate { fd, size }).await
    }
    async fn readlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<PathBuf> {
        let r = self.call(ctx, xd, F::Readlink { loc: loc.clone() }).await?;
        expect!(self, "readlink", r, Reply::Path(p) => p)
    }
    async fn statfs(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<StatVfs> {
        let r = self.call(ctx, xd, F::Statfs { loc: loc.clone() }).await?;
        expect!(self, "statfs", r, Reply::StatVfs(s) => s)
    }
    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, mut xd: Xdata) -> Fop<Iatt> {
        if !self.session.cfg.upcalls {
            // A lease is only good with its recalls: this client would never hear them.
            xd.0.remove(weft_core::LEASE_KEY);
        }
        let fop = F::Mkdir {
            loc: loc.clone(),
            mode,
            umask,
        };
        self.iatt(ctx, xd, fop).await
    }
    async fn rmdir(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        self.unit(ctx, xd, F::Rmdir { loc: loc.clone() }).await
    }
    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        self.unit(ctx, xd, F::Unlink { loc: loc.clone() }).await
    }
    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        let fop = F::Rename {
            old: old.clone(),
            new: new.clone(),
            flags,
        };
        self.unit(ctx, xd, fop).await
    }
    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, xd: Xdata) -> Fop<Iatt> {
        let fop = F::Link {
            old: old.clone(),
            new: new.clone(),
        };
        self.iatt(ctx, xd, fop).await
    }
    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let fop = F::Symlink {
            target: target.to_path_buf(),
            loc: loc.clone(),
            umask,
        };
        self.iatt(ctx, xd, fop).await
    }
    async fn mknod(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let fop = F::Mknod {
            loc: loc.clone(),
            mode,
            rdev,
            umask,
        };
        self.iatt(ctx, xd, fop).await
    }
    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let fop = F::Open {
            loc: loc.clone(),
            gfid: fd.gfid,
            flags: fd.flags,
        };
        self.opened(ctx, fd, xd, fop).await
    }
    async fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let fop = F::Create {
            loc: loc.clone(),
            gfid: fd.gfid,
            flags: fd.flags,
            mode,
            umask,
        };
        let (r, xd, _, epoch) = self.call(ctx, xd, fop).await?;
        match r {
            Reply::Created { fd: n, iatt } => {
                let remote = self.session.bind_fd(fd, ctx, n, epoch);
                fd.set_ctx(&self.name, remote);
                Ok((iatt, xd))
            }
            other => Err(shape(&self.name, "create", &other)),
        }
    }
    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        if size > weft_wire::frame::MAX_DATA {
            return Err(Errno::EINVAL);
        }
        let fd = self.remote(fd)?;
        let r = self.call(ctx, xd, F::Readv { fd, size, offset }).await?;
        match r {
            (Reply::Data, xd, data, _) => Ok((data, xd)),
            (other, _, _, _) => Err(shape(&self.name, "readv", &other)),
        }
    }
    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let fd = self.remote(fd)?;
        let r = self
            .session
            .call(ctx, xd, F::Writev { fd, offset }, data)
            .await?;
        expect!(self, "writev", r, Reply::Count(n) => n)
    }
    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let remote = fd.ctx::<RemoteFd>(&self.name).ok_or(Errno::EBADF)?;
        // close(2): the owner's POSIX locks on the file go, whatever the brick answers.
        self.session.flushed(fd, ctx.lk_owner);
        let r = match self.session.fd_num(&remote) {
            Ok(n) => self.unit(ctx, xd, F::Flush { fd: n }).await,
            Err(e) => Err(e),
        };
        if r == Err(Errno::ENOTCONN) {
            // The brick may keep this client's locks for its grace period: drop the
            // owner's there once the connection is back.
            self.session.defer_flush(&remote, ctx.lk_owner);
        }
        r
    }
    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let fd = self.remote(fd)?;
        self.unit(ctx, xd, F::Fsync { fd, datasync }).await
    }
    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.released(ctx, fd, xd, false).await
    }
    async fn fallocate(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        mode: i32,
        offset: u64,
        len: u64,
        xd: Xdata,
    ) -> Fop<()> {
        let fd = self.remote(fd)?;
        let fop = F::Fallocate {
            fd,
            mode,
            offset,
            len,
        };
        self.unit(ctx, xd, fop).await
    }
    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let fd = self.remote(fd)?;
        self.unit(ctx, xd, F::Discard { fd, offset, len }).await
    }
    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let fd = self.remote(fd)?;
        self.unit(ctx, xd, F::Zerofill { fd, offset, len }).await
    }
    async fn seek(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        what: SeekWhat,
        xd: Xdata,
    ) -> Fop<u64> {
        let fd = self.remote(fd)?;
        let r = self.call(ctx, xd, F::Seek { fd, offset, what }).await?;
        expect!(self, "seek", r, Reply::Count(n) => n)
    }
    async fn rchecksum(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        len: u32,
        xd: Xdata,
    ) -> Fop<Checksum> {
        if len > weft_wire::msg::MAX_RCHECKSUM_LEN {
            return Err(Errno::EINVAL);
        }
        let fd = self.remote(fd)?;
        let r = self.call(ctx, xd, F::Rchecksum { fd, offset, len }).await?;
        expect!(self, "rchecksum", r, Reply::Checksum(c) => c)
    }
    async fn opendir(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let fop = F::Opendir {
            loc: loc.clone(),
            gfid: fd.gfid,
        };
        self.opened(ctx, fd, xd, fop).await
    }
    async fn readdir(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let fd = self.remote(fd)?;
        self.dirents(ctx, xd, F::Readdir { fd, size, offset }).await
    }
    async fn readdirp(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let fd = self.remote(fd)?;
        self.dirents(ctx, xd, F::Readdirp { fd, size, offset })
            .await
    }
    async fn fsyncdir(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let fd = self.remote(fd)?;
        self.unit(ctx, xd, F::Fsyncdir { fd, datasync }).await
    }
    async fn releasedir(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.released(ctx, fd, xd, true).await
    }
    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        let fop = F::Getxattr {
            loc: loc.clone(),
            name: name.map(str::to_string),
        };
        self.xattrs(ctx, xd, fop).await
    }
    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let fd = self.remote(fd)?;
        let fop = F::Fgetxattr {
            fd,
            name: name.map(str::to_string),
        };
        self.xattrs(ctx, xd, fop).await
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let fop = F::Setxattr {
            loc: loc.clone(),
            attrs: attrs.clone(),
            flags,
        };
        self.unit(ctx, xd, fop).await
    }
    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let fd = self.remote(fd)?;
        let fop = F::Fsetxattr {
            fd,
            attrs: attrs.clone(),
            flags,
        };
        self.unit(ctx, xd, fop).await
    }
    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        let fop = F::Removexattr {
            loc: loc.clone(),
            name: name.to_string(),
        };
        self.unit(ctx, xd, fop).await
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        let fd = self.remote(fd)?;
        let fop = F::Fremovexattr {
            fd,
            name: name.to_string(),
        };
        self.unit(ctx, xd, fop).await
    }
    async fn xattrop(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let fop = F::Xattrop {
            loc: loc.clone(),
            op,
            attrs: attrs.clone(),
        };
        self.xattrs(ctx, xd, fop).await
    }
    async fn fxattrop(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let fd = self.remote(fd)?;
        let fop = F::Fxattrop {
            fd,
            op,
            attrs: attrs.clone(),
        };
        self.xattrs(ctx, xd, fop).await
    }
    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        let remote = fd.ctx::<RemoteFd>(&self.name).ok_or(Errno::EBADF)?;
        let n = self.session.fd_num(&remote)?;
        let flock = xd.has(weft_core::LK_FLOCK_KEY);
        remote.note_owner(lock.owner);
        let fop = F::Lk {
            fd: n,
            cmd,
            lock: *lock,
        };
        let r = self.call(ctx, xd, fop).await?;
        let epoch = r.3;
        let granted = expect!(self, "lk", r, Reply::Flock(l) => l)?;
        if cmd != LkCmd::Get {
            // Remembered, to be taken again on a brick that lost it.
            self.session.lock_changed(fd, ctx, lock, flock, epoch);
        }
        Ok(granted)
    }
    async fn inodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        let fop = F::Inodelk {
            domain: domain.to_string(),
            loc: loc.clone(),
            cmd,
            lock: *lock,
        };
        self.unit(ctx, xd, fop).await
    }
    async fn finodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        fd: &FdRef,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        let n = self.remote(fd)?;
        let fop = F::Finodelk {
            domain: domain.to_string(),
            fd: n,
            cmd,
            lock: *lock,
        };
        let r = self.unit(ctx, xd, fop).await;
        if r.is_ok() && cmd != LkCmd::Get && lock.kind != weft_core::LockType::Unlock {
            if let Some(remote) = fd.ctx::<RemoteFd>(&self.name) {
                remote.mark_inode_locked();
            }
        }
        r
    }
    async fn entrylk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        basename: Option<&OsString>,
        cmd: EntrylkCmd,
        kind: EntrylkType,
        xd: Xdata,
    ) -> Fop<()> {
        let fop = F::Entrylk {
            domain: domain.to_string(),
            loc: loc.clone(),
            basename: basename.cloned(),
            cmd,
            kind,
        };
        self.unit(ctx, xd, fop).await
    }
}
