//! Weft's FUSE front end: serves a translator [`Graph`] as a kernel mount through fuser.
//!
//! [`mount`] checks the mountpoint, mounts, and returns a [`Mount`] whose
//! [`Mount::unmount`] ends it cleanly. Requests are answered concurrently by several
//! request threads that wait on the tokio runtime given, with 1 MiB writes where the kernel allows, readdirplus, and the
//! attribute and entry timeouts of [`MountConfig`]. Inode numbers are gfid-derived, so the
//! root is inode 1. The virtual xattr [`STATEDUMP_XATTR`] on the mount root returns a
//! statedump of the whole graph (`getfattr -n weft.statedump MOUNTPOINT`).

mod convert;
mod fs;
mod inner;
mod invalidate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use inner::STATEDUMP_XATTR;
use weft_client::Volume;

/// Why a mount could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The mountpoint does not exist.
    #[error("mountpoint {0} does not exist")]
    Missing(PathBuf),
    /// The mountpoint is not a directory.
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Something is already mounted there.
    #[error("mountpoint {0} is already mounted; unmount it first (umount {0})")]
    AlreadyMounted(PathBuf),
    /// The kernel or fuser refused.
    #[error("cannot mount at {0}: {1}")]
    Mount(PathBuf, std::io::Error),
}

/// How a mount behaves.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// How long the kernel may cache attributes; `None`: the volume's `md-cache-timeout`
    /// when its graph has `performance/md-cache` on with `cache-invalidation` (the bricks
    /// tell the mount about other clients' changes, and the mount tells the kernel),
    /// otherwise 1 s.
    pub attr_timeout: Option<Duration>,
    /// How long the kernel may cache name lookups; `None` as for `attr_timeout`.
    pub entry_timeout: Option<Duration>,
    /// Largest write request to ask the kernel for.
    pub max_write: u32,
    /// Threads reading and serving requests from /dev/fuse (each serves one at a time).
    pub reader_threads: usize,
    /// Name shown as the mount's source in /proc/mounts.
    pub fsname: String,
    /// Let users other than the mounter use the mount (needs root or user_allow_other).
    pub allow_other: bool,
    /// Pass SELinux labels (`security.selinux`) to and from the bricks. Off by default,
    /// as GlusterFS's `selinux` mount option: the mount then has no labels (the name is
    /// refused with EOPNOTSUPP and not listed).
    pub selinux: bool,
    /// The kernel's read-ahead window for files of this mount, in KiB (the mount's
    /// `/sys/class/bdi/.../read_ahead_kb`); 0 leaves the kernel's default (128 KiB).
    /// Set once the kernel has taken the mount's INIT reply (the reply cannot raise it:
    /// the kernel caps it at its default there).
    pub read_ahead_kb: u32,
}

/// The read-ahead window a mount asks for unless told otherwise: 1 MiB. With the kernel's
/// 128 KiB a sequential reader has one 128 KiB READ at a time on the network (1 GiB read
/// after `drop_caches`, `SEQ=1 MOUNT_ARGS="--read-ahead-kb N" scripts/bench/fop-profile.sh`:
/// 166 MiB/s at 128 KiB; 417 at 1 MiB; 498 at 4 MiB; 711 at 16 MiB), while larger windows
/// slow 4 KiB random reads of a cold file (same script: 2,217-2,593 IOPS at 128 KiB, 2,018
/// at 1 MiB, 1,684 at 4 MiB, 1,095-1,252 at 16 MiB): the kernel reads ahead around each miss.
pub const DEFAULT_READ_AHEAD_KB: u32 = 1024;

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            attr_timeout: None,
            entry_timeout: None,
            max_write: 1 << 20,
            reader_threads: 8,
            fsname: "weft".into(),
            allow_other: true,
            selinux: false,
            read_ahead_kb: DEFAULT_READ_AHEAD_KB,
        }
    }
}

/// The kernel timeouts a mount of `volume` follows: its `md-cache-timeout`, when its graph
/// caches metadata and its bricks tell it about other clients' changes.
pub fn volume_cache_timeout(volume: &Volume) -> Option<Duration> {
    let o = volume.graph().options_of_type("performance/md-cache")?;
    (o.bool("enable") && o.bool("cache-invalidation")).then(|| o.duration("md-cache-timeout"))
}

/// True when `path` is a mountpoint (the kernel's own list says so).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    text.lines().any(|l| {
        l.split(' ').nth(4).map(unescape_mountinfo).as_deref()
            == Some(canon.as_os_str().to_str().unwrap_or(""))
    })
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A live mount. Dropping it without [`Mount::unmount`] also unmounts.
pub struct Mount {
    mountpoint: PathBuf,
    unmounter: Option<fuser::SessionUnmounter>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    inner: Arc<inner::Inner>,
    /// Turns invalidations from every graph served into kernel notifications.
    invalidator: Arc<invalidate::Invalidator>,
}

/// Mounts `volume` at `mountpoint`, answering requests on `rt`. POSIX locks go to the
/// volume (and so are seen by every client of it) when its graph has a lock translator or
/// reaches bricks over the network; otherwise the kernel keeps them local to this mount.
pub fn mount(
    volume: Arc<Volume>,
    mountpoint: &Path,
    cfg: &MountConfig,
    rt: tokio::runtime::Handle,
) -> Result<Mount, MountError> {
    let mp = mountpoint.to_path_buf();
    match std::fs::metadata(mountpoint) {
        Err(_) => return Err(MountError::Missing(mp)),
        Ok(m) if !m.is_dir() => return Err(MountError::NotADirectory(mp)),
        Ok(_) => {}
    }
    if is_mounted(mountpoint) {
        return Err(MountError::AlreadyMounted(mp));
    }
    let posix_locks =
        volume.graph().has_type("features/locks") || volume.graph().has_type("protocol/client");
    let follow = volume_cache_timeout(&volume).unwrap_or(Duration::from_secs(1));
    let inner = Arc::new(inner::Inner::new(volume.clone(), rt.clone()));
    let notifier = Arc::new(std::sync::OnceLock::new());
    let no_caps: Arc<parking_lot::Mutex<std::collections::HashMap<u64, std::time::Instant>>> =
        Default::default();
    let invalidator = invalidate::Invalidator::start(
        notifier.clone(),
        inner.inodes.clone(),
        no_caps.clone(),
        inner.fresh.clone(),
        rt.clone(),
    );
    volume.on_upcall(invalidator.handler());
    let attr_ttl = cfg.attr_timeout.unwrap_or(follow);
    let keep_cache = volume_cache_timeout(&volume).is_some() && !attr_ttl.is_zero();
    let fs = fs::WeftFs {
        inner: inner.clone(),
        rt,
        attr_ttl,
        entry_ttl: cfg.entry_timeout.unwrap_or(follow),
        fresh: invalidator.freshness(),
        max_write: cfg.max_write,
        posix_locks,
        posix_acl: false,
        selinux: cfg.selinux,
        keep_cache,
        killpriv_v2: std::env::var_os("WEFT_FUSE_KILLPRIV_V2").is_some_and(|v| v == "1"),
        notifier: notifier.clone(),
        interrupts: Default::default(),
        no_caps,
    };
    use fuser::MountOption as O;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        O::FSName(cfg.fsname.clone()),
        // As a kernel option (fuser hands O::Subtype only to fusermount): /proc/mounts,
        // findmnt and df -T then say fuse.weft.
        O::CUSTOM("subtype=weft".into()),
        O::DefaultPermissions,
        O::RW,
    ];
    if cfg.allow_other {
        config.acl = fuser::SessionACL::All;
        config.mount_options.push(O::CUSTOM("allow_other".into()));
    }
    config.n_threads = Some(cfg.reader_threads.max(1));
    config.clone_fd = cfg.reader_threads > 1;
    let mut session = fuser::Session::new(fs, mountpoint, &config)
        .map_err(|e| MountError::Mount(mp.clone(), e))?;
    let _ = notifier.set(session.notifier());
    let unmounter = session.unmount_callable();
    let thread = std::thread::Builder::new()
        .name("weft-fuse".into())
        .spawn(move || session.run())
        .map_err(|e| MountError::Mount(mp.clone(), e))?;
    if cfg.read_ahead_kb > 0 {
        set_read_ahead_once_up(mp.clone(), cfg.read_ahead_kb);
    }
    Ok(Mount {
        mountpoint: mp,
        unmounter: Some(unmounter),
        thread: Some(thread),
        inner,
        invalidator,
    })
}

/// Sets the mount's read-ahead window (`kb` KiB) once the kernel has its INIT reply: a
/// thread asks statfs of the mountpoint (a request the kernel always sends, and holds
/// until INIT is done; its answer does not matter), then writes the mount's
/// backing-device `read_ahead_kb`. Only logs when it cannot (not root).
fn set_read_ahead_once_up(mp: PathBuf, kb: u32) {
    let spawned = std::thread::Builder::new()
        .name("weft-read-ahead".into())
        .spawn(move || {
            use std::os::unix::fs::MetadataExt;
            if let Ok(c) = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()) {
                // SAFETY: c is a valid NUL-terminated path and buf a statfs to fill.
                let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
                unsafe { libc::statfs(c.as_ptr(), &mut buf) };
            }
            let dev = match std::fs::metadata(&mp) {
                Ok(m) => m.dev(),
                Err(e) => {
                    tracing::info!("read-ahead not set: cannot stat {}: {e}", mp.display());
                    return;
                }
            };
            let path = format!(
                "/sys/class/bdi/{}:{}/read_ahead_kb",
                libc::major(dev),
                libc::minor(dev)
            );
            match std::fs::write(&path, kb.to_string()) {
                Ok(()) => tracing::debug!("read-ahead of {} set to {kb} KiB", mp.display()),
                Err(e) => tracing::info!("read-ahead left at the kernel's: {path}: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::info!("read-ahead not set: {e}");
    }
}

impl Mount {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// A statedump of the graph being served.
    pub fn statedump(&self) -> String {
        self.inner.statedump()
    }

    /// The volume new requests go to (the one mounted, or the last one switched to).
    pub fn volume(&self) -> Arc<Volume> {
        self.inner.cur().volume.clone()
    }

    /// Serves `volume` (a new graph of the same volume, already up) from now on, without
    /// unmounting: new lookups, opens and path requests go to it, while files already open
    /// stay on the graph they were opened on until released. The old graph is torn down
    /// when nothing uses it any more. Returns the new graph's number (the first is 1).
    ///
    /// Whether POSIX locks go to the volume or stay in the kernel was decided at mount
    /// time and stays so.
    pub fn switch_volume(&self, volume: Arc<Volume>) -> u64 {
        volume.on_upcall(self.invalidator.handler());
        let n = self.inner.switch(volume);
        // What the kernel holds came from the old graph's answers, which its bricks will
        // not tell the new graph's connections about.
        self.invalidator.drop_all();
        n
    }

    /// Moves files open on older graphs to the current one, except those that asked for
    /// locks: their locks live in the old graph's connections. Returns how many moved.
    pub async fn migrate_open_files(&self) -> usize {
        self.inner.migrate_open_files().await
    }

    /// True once the kernel side has ended (e.g. `umount` from outside).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Unmounts, waits for the request loop to end, and tears the graph down.
    pub async fn unmount(mut self) -> std::io::Result<()> {
        let r = self.unmount_now();
        self.inner.shutdown().await;
        r
    }

    fn unmount_now(&mut self) -> std::io::Result<()> {
        let mut r = Ok(());
        let mut lazy = false;
        if let Some(mut u) = self.unmounter.take() {
            // A session that already ended was unmounted from outside; whatever is
            // mounted at the path now (a newer mount) is not ours to unmount.
            let ended = self.thread.as_ref().is_some_and(|t| t.is_finished());
            if !ended && is_mounted(&self.mountpoint) {
                r = u.unmount();
                if r.is_err() {
                    // Busy: detach it now so nothing is left behind; the kernel finishes
                    // when the last user lets go.
                    let c =
                        std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()).ok();
                    if let Some(c) = c {
                        // SAFETY: c is a valid NUL-terminated path.
                        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                            r = Ok(());
                            lazy = true;
                        }
                    }
                }
            }
        }
        if let Some(t) = self.thread.take() {
            // After a lazy detach the session lasts until its last user leaves: do not
            // wait for that here.
            if r.is_ok() && !lazy {
                let _ = t.join();
            }
        }
        r
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.unmount_now();
    }
}
