//! The brick is a boundary: an attacker who speaks the wire protocol to a real `weft brickd`
//! (FOPs with hand-made locations, not what a FUSE client would send) or who races renames
//! through a real FUSE mount as an unprivileged user never reads, writes, lists or stamps
//! anything outside the brick directory.

mod common;

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use weft_client::{OpenOptions, Volume as ClientVolume};
use weft_core::{
    Ctx, Errno, Fd, Gfid, Loc, Registry, SetAttr, XattrMap, XattropOp, Xdata, GFID_REQ_KEY,
};

fn registry() -> Registry {
    let mut r = weft_xlators::registry();
    weft_protocol::register(&mut r);
    r
}

/// One inode outside the brick: path, mode, owner, links, size, mtime, xattr names + data.
type Seen = (PathBuf, u32, u32, u32, u64, i64, Vec<u8>);

/// What lies outside the brick, to compare before and after an attack.
#[derive(Debug, PartialEq)]
struct Outside {
    entries: Vec<Seen>,
}

fn snapshot(dir: &Path) -> Outside {
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let xattrs = xattr_names(&p);
            if m.is_dir() {
                stack.push(p.clone());
            }
            let data = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            entries.push((
                p,
                m.mode(),
                m.uid(),
                m.nlink() as u32,
                m.size(),
                m.mtime(),
                [xattrs, data].concat(),
            ));
        }
    }
    let m = std::fs::metadata(dir).unwrap();
    entries.push((
        dir.to_path_buf(),
        m.mode(),
        m.uid(),
        m.nlink() as u32,
        0,
        m.mtime(),
        xattr_names(dir),
    ));
    Outside { entries }
}

fn xattr_names(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: c is a valid C string and buf a writable buffer of the length given.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    buf
}

struct Attack {
    _brickd: Brickd,
    vol: ClientVolume,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Attack {
    fn new(tag: &str) -> Attack {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&brick).unwrap();
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("secret"), b"host data").unwrap();
        std::fs::write(outside.join("sub/inner"), b"more host data").unwrap();
        let vf = dir.path().join("server.vol");
        std::fs::write(&vf, brick_graph("b", &brick, &[])).unwrap();
        let brickd = Brickd::start(dir.path(), &vf, &[]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = client_volfile("b", brickd.port, &[]);
        let vol = rt
            .block_on(ClientVolume::from_volfile(
                &client,
                registry(),
                OpenOptions::default(),
            ))
            .unwrap();
        Attack {
            _brickd: brickd,
            vol,
            dir,
            rt,
        }
    }
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }
    fn brick(&self) -> PathBuf {
        self.dir.path().join("brick")
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.rt.block_on(self.vol.close());
    }
}

fn xd_gfid(g: Gfid) -> Xdata {
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, g.0.to_vec());
    xd
}

/// Every entry and inode FOP with a symlink (to a host directory, absolute or relative) as
/// its parent or target is refused, and nothing outside the brick changes.
#[test]
fn a_symlink_never_leads_a_wire_client_out_of_its_brick() {
    let a = Attack::new("escape-wire");
    let outside = a.outside();
    let before = snapshot(&outside);
    let top = a.vol.top().clone();
    let ctx = Ctx::internal();
    let rt = &a.rt;
    let abs = rt
        .block_on(a.vol.symlink(outside.to_str().unwrap(), "/esc"))
        .unwrap();
    let rel = rt
        .block_on(a.vol.symlink("../outside", "/esc-rel"))
        .unwrap();
    let file_link = rt
        .block_on(
            a.vol
                .symlink(outside.join("secret").to_str().unwrap(), "/f-esc"),
        )
        .unwrap();
    rt.block_on(a.vol.write_file("/mine", b"brick data"))
        .unwrap();
    let (mine, _) = rt.block_on(a.vol.lookup("/mine")).unwrap();
    let mine = mine.gfid.unwrap();
    rt.block_on(a.vol.mkdir("/d", 0o755)).unwrap();

    for parent in [abs.gfid, rel.gfid] {
        let e = |n: &str| Loc::entry(parent, n);
        let outcome: Vec<(&str, Result<(), Errno>)> = rt.block_on(async {
            let fd = || Fd::new(parent, libc::O_RDWR, false);
            vec![
                (
                    "lookup",
                    top.lookup(&ctx, &e("secret"), Xdata::new())
                        .await
                        .map(|_| ()),
                ),
                (
                    "lookup sub",
                    top.lookup(&ctx, &e("sub"), Xdata::new()).await.map(|_| ()),
                ),
                (
                    "create",
                    top.create(
                        &ctx,
                        &e("planted"),
                        &Fd::new(Gfid::random(), libc::O_RDWR | libc::O_CREAT, false),
                        0o644,
                        0,
                        xd_gfid(Gfid::random()),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "create existing",
                    top.create(
                        &ctx,
                        &e("secret"),
                        &Fd::new(Gfid::random(), libc::O_RDWR | libc::O_TRUNC, false),
                        0o644,
                        0,
                        xd_gfid(Gfid::random()),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "mkdir",
                    top.mkdir(&ctx, &e("pdir"), 0o755, 0, xd_gfid(Gfid::random()))
                        .await
                        .map(|_| ()),
                ),
                (
                    "mknod",
                    top.mknod(
                        &ctx,
                        &e("pnod"),
                        libc::S_IFIFO | 0o644,
                        0,
                        0,
                        xd_gfid(Gfid::random()),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "symlink",
                    top.symlink(
                        &ctx,
                        Path::new("/etc"),
                        &e("pl"),
                        0,
                        xd_gfid(Gfid::random()),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "link",
                    top.link(&ctx, &Loc::inode(mine), &e("plink"), Xdata::new())
                        .await
                        .map(|_| ()),
                ),
                (
                    "rename in",
                    top.rename(
                        &ctx,
                        &Loc::entry(Gfid::ROOT, "mine"),
                        &e("moved"),
                        0,
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "rename out",
                    top.rename(
                        &ctx,
                        &e("secret"),
                        &Loc::entry(Gfid::ROOT, "stolen"),
                        0,
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "rename exchange",
                    top.rename(
                        &ctx,
                        &e("sub"),
                        &Loc::entry(Gfid::ROOT, "d"),
                        libc::RENAME_EXCHANGE,
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "unlink",
                    top.unlink(&ctx, &e("secret"), Xdata::new())
                        .await
                        .map(|_| ()),
                ),
                (
                    "rmdir",
                    top.rmdir(&ctx, &e("sub"), Xdata::new()).await.map(|_| ()),
                ),
                (
                    "opendir",
                    top.opendir(
                        &ctx,
                        &Loc::inode(parent),
                        &Fd::new(parent, libc::O_RDONLY, true),
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "open",
                    top.open(&ctx, &Loc::inode(parent), &fd(), Xdata::new())
                        .await
                        .map(|_| ()),
                ),
                (
                    "chmod",
                    top.setattr(
                        &ctx,
                        &Loc::inode(parent),
                        &SetAttr {
                            mode: Some(0o777),
                            ..Default::default()
                        },
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "truncate",
                    top.truncate(&ctx, &Loc::inode(parent), 0, Xdata::new())
                        .await
                        .map(|_| ()),
                ),
                (
                    "setxattr",
                    top.setxattr(
                        &ctx,
                        &Loc::inode(parent),
                        &XattrMap::from([("user.x".to_string(), b"1".to_vec())]),
                        0,
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                ),
                (
                    "access",
                    top.access(&ctx, &e("secret"), 4, Xdata::new())
                        .await
                        .map(|_| ()),
                ),
                (
                    "xattrop",
                    top.xattrop(
                        &ctx,
                        &e("secret"),
                        XattropOp::AddArray32,
                        &XattrMap::from([("user.n".to_string(), vec![0, 0, 0, 1])]),
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                ),
            ]
        });
        for (op, r) in &outcome {
            assert!(r.is_err(), "{op} with a symlink parent succeeded");
        }
    }
    // The symlink to a host file: opening, truncating or chmodding it never reaches the file.
    rt.block_on(async {
        let fd = Fd::new(file_link.gfid, libc::O_RDWR | libc::O_TRUNC, false);
        assert!(top
            .open(&ctx, &Loc::inode(file_link.gfid), &fd, Xdata::new())
            .await
            .is_err());
        let chmod = SetAttr {
            mode: Some(0o777),
            ..Default::default()
        };
        assert!(top
            .setattr(&ctx, &Loc::inode(file_link.gfid), &chmod, Xdata::new())
            .await
            .is_err());
        assert!(top
            .truncate(&ctx, &Loc::inode(file_link.gfid), 0, Xdata::new())
            .await
            .is_err());
        // Names that try to climb, and gfids that name nothing.
        for bad in ["..", ".", "a/../../outside", "../outside"] {
            let r = top
                .lookup(&ctx, &Loc::entry(Gfid::ROOT, bad), Xdata::new())
                .await;
            assert_eq!(r.err(), Some(Errno::EINVAL), "lookup {bad:?}");
        }
        let ghost = Gfid::random();
        assert_eq!(
            top.stat(&ctx, &Loc::inode(ghost), Xdata::new()).await.err(),
            Some(Errno::ESTALE)
        );
        assert_eq!(
            top.lookup(&ctx, &Loc::entry(ghost, "secret"), Xdata::new())
                .await
                .err(),
            Some(Errno::ESTALE)
        );
        // The private folder is out of reach too.
        assert!(top
            .lookup(&ctx, &Loc::entry(Gfid::ROOT, ".weft"), Xdata::new())
            .await
            .is_err());
        assert!(top
            .mkdir(
                &ctx,
                &Loc::entry(Gfid::ROOT, ".weft"),
                0o755,
                0,
                Xdata::new()
            )
            .await
            .is_err());
    });
    assert_eq!(
        snapshot(&outside),
        before,
        "something outside the brick changed"
    );
    // The symlinks themselves are intact, readable as links.
    assert_eq!(std::fs::read_link(a.brick().join("esc")).unwrap(), outside);
    assert_eq!(
        rt.block_on(a.vol.read_file("/mine")).unwrap().as_ref(),
        b"brick data"
    );
}

/// A directory swapped for a symlink while a client works inside it: whatever the timing,
/// nothing is created, read or listed outside (a rename through the wire, racing creates
/// and listings by gfid of the directory).
#[test]
fn swapping_a_directory_for_a_symlink_mid_flight_stays_inside() {
    let a = Attack::new("escape-swap");
    let outside = a.outside();
    let before = snapshot(&outside);
    let rt = &a.rt;
    rt.block_on(a.vol.mkdir("/work", 0o777)).unwrap();
    let (work, _) = rt.block_on(a.vol.lookup("/work")).unwrap();
    let work = work.gfid.unwrap();
    rt.block_on(a.vol.symlink(outside.to_str().unwrap(), "/bait"))
        .unwrap();
    let top = a.vol.top().clone();
    let stop = Instant::now() + Duration::from_secs(3);
    rt.block_on(async {
        let swapper = {
            let top = top.clone();
            tokio::spawn(async move {
                let ctx = Ctx::internal();
                let mut n = 0u64;
                while Instant::now() < stop {
                    let _ = top
                        .rename(
                            &ctx,
                            &Loc::entry(Gfid::ROOT, "work"),
                            &Loc::entry(Gfid::ROOT, "bait"),
                            libc::RENAME_EXCHANGE,
                            Xdata::new(),
                        )
                        .await;
                    n += 1;
                }
                n
            })
        };
        let ctx = Ctx::internal();
        let mut i = 0u64;
        while Instant::now() < stop {
            let name = OsString::from(format!("f{i}"));
            let fd = Fd::new(Gfid::random(), libc::O_RDWR | libc::O_CREAT, false);
            let _ = top
                .create(
                    &ctx,
                    &Loc::entry(work, &name),
                    &fd,
                    0o644,
                    0,
                    xd_gfid(Gfid::random()),
                )
                .await;
            let _ = top
                .lookup(&ctx, &Loc::entry(work, "secret"), Xdata::new())
                .await;
            let dfd = Fd::new(work, libc::O_RDONLY, true);
            if top
                .opendir(&ctx, &Loc::inode(work), &dfd, Xdata::new())
                .await
                .is_ok()
            {
                if let Ok((ents, _)) = top.readdirp(&ctx, &dfd, 65536, 0, Xdata::new()).await {
                    assert!(
                        ents.iter().all(|e| e.name != b"secret" && e.name != b"sub"),
                        "a listing showed host files"
                    );
                }
                let _ = top.releasedir(&ctx, &dfd, Xdata::new()).await;
            }
            i += 1;
        }
        let swaps = swapper.await.unwrap();
        assert!(
            swaps > 10 && i > 10,
            "the race did not run ({swaps} swaps, {i} creates)"
        );
    });
    assert_eq!(
        snapshot(&outside),
        before,
        "something outside the brick changed"
    );
}

/// Through a real FUSE mount, an unprivileged user racing renameat2(RENAME_EXCHANGE)
/// between a directory and a symlink to a root-owned host directory, while creating files
/// through an open descriptor of that directory, creates nothing outside.
#[test]
fn an_unprivileged_rename_race_through_fuse_creates_nothing_outside() {
    let vol = Volume::new("escape-fuse");
    let outside = vol.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let before = snapshot(&outside);
    let m = vol.mount();
    let play = vol.mnt.join("play");
    std::fs::create_dir(&play).unwrap();
    std::fs::set_permissions(&play, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = r#"
import ctypes, os, sys, time, threading
play, target = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir(f"{play}/d")
os.symlink(target, f"{play}/l")
dfd = os.open(f"{play}/d", os.O_RDONLY | os.O_DIRECTORY)
stop = time.time() + 3
swaps = [0]
def swap():
    while time.time() < stop:
        libc.renameat2(-100, f"{play}/d".encode(), -100, f"{play}/l".encode(), 2)
        swaps[0] += 1
t = threading.Thread(target=swap); t.start()
made = 0
i = 0
while time.time() < stop:
    try:
        os.close(os.open(f"x{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd)); made += 1
    except OSError:
        pass
    try:
        os.close(os.open(f"{play}/d/y{i}", os.O_CREAT | os.O_WRONLY, 0o644)); made += 1
    except OSError:
        pass
    i += 1
t.join()
print(swaps[0], made)
"#;
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(&play)
        .arg(&outside)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "attacker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        nums.len() == 2 && nums[0] > 10 && nums[1] > 10,
        "the race did not run: {text}"
    );
    assert!(is_mounted(&vol.mnt), "the mount died");
    drop(m);
    assert_eq!(
        snapshot(&outside),
        before,
        "the attacker created something outside the brick"
    );
}

/// Paths as long as a local filesystem takes (4,090 bytes below the mount point) work, now
/// that the brick's own prefix no longer counts against PATH_MAX.
#[test]
fn paths_up_to_path_max_below_the_mount_work() {
    let vol = Volume::new("longpath");
    let _m = vol.mount();
    // Walk down with relative paths, as a program working deep in a tree does.
    let script = r#"
import os, sys
os.chdir(sys.argv[1])
comp = "d" * 200
rel = []
while 4090 - (len("/".join(rel)) + 1 if rel else 0) > 255:
    os.mkdir(comp); os.chdir(comp); rel.append(comp)
os.chdir(sys.argv[1])
prefix = "/".join(rel) + "/"
name = "f" * (4090 - len(prefix))
path = prefix + name
assert len(path) == 4090, len(path)
with open(path, "wb") as f: f.write(b"deep")
with open(path, "rb") as f: assert f.read() == b"deep"
assert os.stat(path).st_size == 4
os.rename(path, prefix + "g")
os.unlink(prefix + "g")
print("ok")
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&vol.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "deep path failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
