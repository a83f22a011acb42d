//! features/python over storage/posix, driven without FUSE, for the FOPs and rules added
//! after the first set: `ctx.path` on fd FOPs (from the fd's path source, following
//! renames), readdir/readdirp overrides (hiding entries, bad entries failing with EIO),
//! statfs, fallocate/discard/zerofill/seek/fsyncdir, and names that are not UTF-8 passing
//! through Python unchanged (as `str` with surrogate escapes, or `bytes` given back).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use bytes::Bytes;
use weft_core::inode::InodeTable;
use weft_core::volfile::{Volfile, VolumeDecl};
use weft_core::{
    Ctx, Errno, Fd, FdRef, FileType, Gfid, Graph, Loc, Registry, SeekWhat, Xdata, XlatorRef,
    GFID_REQ_KEY,
};

const PROBE: &str = r#"
import errno
import os
import sys

import weft


class Probe:
    def __init__(self, init):
        self.out = open(init.config["log"], "a", buffering=1)
        self.hide = init.config.get("hide", "secret")
        self.rec("init", sys.flags.utf8_mode, sys.getfilesystemencoding())

    def rec(self, *parts):
        self.out.write(" ".join(str(p) for p in parts) + "\n")

    # ==== paths on fd FOPs ====

    def readv(self, ctx, args):
        self.rec("readv", ascii(ctx.path), ascii(args.fd.path))
        return ctx.wind()

    def fstat(self, ctx, args):
        self.rec("fstat", ascii(ctx.path))
        return ctx.wind()

    # ==== directories ====

    def listing(self, ctx, args):
        if "probe.bad" in args.xdata:
            return [weft.Dirent(b"a/b", offset=1)]
        if "probe.notalist" in args.xdata:
            return 42
        if "probe.invent" in args.xdata:
            return [weft.Dirent("invented-\udce9", offset=1, kind=0o040000, ino=77)]
        while True:
            entries = ctx.wind()
            if not entries:
                return entries
            kept = [e for e in entries if self.hide not in e.name]
            self.rec(ctx.fop, ascii(ctx.path), *[ascii(e.name) for e in entries])
            if kept:
                return kept
            # Everything in this batch is hidden: an empty answer would end the listing.
            args.offset = entries[-1].offset

    readdir = listing
    readdirp = listing

    def fsyncdir(self, ctx, args):
        self.rec("fsyncdir", args.datasync, ascii(ctx.path))
        return ctx.wind()

    # ==== statfs ====

    def statfs(self, ctx, args):
        s = ctx.wind()
        self.rec("statfs", ascii(args.loc.path), type(s).__name__)
        s.blocks, s.bfree, s.bavail, s.files, s.ffree = 1000, 600, 500, 70, 30
        return s

    # ==== the fallocate family, seek ====

    def fallocate(self, ctx, args):
        self.rec("fallocate", args.mode, args.offset, args.len, ascii(ctx.path))
        if args.len == 13:
            raise weft.Error(errno.ENOSPC)
        return ctx.wind()

    def discard(self, ctx, args):
        self.rec("discard", args.offset, args.len)
        return ctx.wind()

    def zerofill(self, ctx, args):
        self.rec("zerofill", args.offset, args.len)
        return ctx.wind()

    def seek(self, ctx, args):
        self.rec("seek", args.offset, args.what == os.SEEK_DATA)
        if args.offset == 999:
            return 5
        return ctx.wind()

    # ==== names ====

    def create(self, ctx, args):
        n = args.loc.name
        self.rec("create", type(n).__name__, ascii(n), os.fsencode(n).hex(), ascii(args.loc.path))
        if n.startswith("swap"):
            # Hand back bytes: they go down exactly as given.
            args.loc.name = b"swapped-\xff"
            args.loc.path = b"/swapped-\xff"
        return ctx.wind()

    def lookup(self, ctx, args):
        n = args.loc.name
        if n is not None and n.startswith("via-helper"):
            # The helper takes the same str (surrogates and all) back.
            return ctx.lookup("/" + n[len("via-helper-"):])
        return ctx.wind()
"#;

struct Setup {
    _dir: tempfile::TempDir,
    graph: Graph,
    log: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("brick")).unwrap();
    std::fs::create_dir_all(d.join("py")).unwrap();
    std::fs::write(d.join("py/probe.py"), PROBE).unwrap();
    let log = d.join("probe.log");
    let vf = Volfile {
        volumes: vec![
            VolumeDecl::new("p-posix", "storage/posix")
                .option("directory", d.join("brick").display()),
            VolumeDecl::new("p-py", "features/python")
                .option("module", "probe")
                .option("path", d.join("py").display())
                .option("class", "Probe")
                .option("config", format!("log={}", log.display()))
                .subvolumes(&["p-posix"]),
        ],
    };
    let mut r: Registry = weft_xlators::registry();
    weft_python::register(&mut r);
    let graph = Graph::build(&vf, &r).expect("graph");
    Setup {
        _dir: dir,
        graph,
        log,
    }
}

impl Setup {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `f` on a runtime worker (Python then runs on the blocking pool).
    fn run<F, Fut>(&self, f: F)
    where
        F: FnOnce(XlatorRef) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let top = self.graph.top().clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { tokio::spawn(f(top)).await.unwrap() });
    }
}

fn gfid_xdata() -> (Gfid, Xdata) {
    let g = Gfid::random();
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, g.0.to_vec());
    (g, xd)
}

async fn mkdir(top: &XlatorRef, parent: Gfid, name: &[u8], path: &str) -> Gfid {
    let (_, xd) = gfid_xdata();
    let loc = Loc::entry(parent, OsStr::from_bytes(name)).with_path(path);
    top.mkdir(&Ctx::internal(), &loc, 0o755, 0, xd)
        .await
        .unwrap()
        .0
        .gfid
}

async fn create(top: &XlatorRef, parent: Gfid, name: &[u8], path: &[u8]) -> (Gfid, FdRef) {
    let (g, xd) = gfid_xdata();
    let fd = Fd::new(g, libc::O_RDWR, false);
    let loc = Loc::entry(parent, OsStr::from_bytes(name)).with_path(OsStr::from_bytes(path));
    let ia = top
        .create(&Ctx::internal(), &loc, &fd, 0o644, 0, xd)
        .await
        .unwrap()
        .0;
    (ia.gfid, fd)
}

async fn opendir(top: &XlatorRef, g: Gfid, paths: Option<Arc<InodeTable>>) -> FdRef {
    let fd = Fd::new(g, libc::O_RDONLY | libc::O_DIRECTORY, true);
    if let Some(t) = paths {
        fd.set_path_source(t);
    }
    top.opendir(&Ctx::internal(), &Loc::inode(g), &fd, Xdata::new())
        .await
        .unwrap();
    fd
}

#[test]
fn the_interpreter_runs_in_utf8_mode() {
    let s = setup();
    assert!(s.log().starts_with("init 1 utf-8\n"), "{}", s.log());
}

#[test]
fn fd_fops_know_the_path_and_follow_renames() {
    let s = setup();
    s.run(|top| async move {
        let ctx = Ctx::internal();
        let table = Arc::new(InodeTable::new());
        let d = mkdir(&top, Gfid::ROOT, b"d", "/d").await;
        let di = table.remember(d, FileType::Directory, 1, OsStr::new("d"));
        let (f, _) = create(&top, d, b"f", b"/d/f").await;
        table.remember(f, FileType::Regular, di, OsStr::new("f"));
        let fd = Fd::new(f, libc::O_RDONLY, false);
        fd.set_path_source(table.clone());
        top.open(&ctx, &Loc::inode(f), &fd, Xdata::new())
            .await
            .unwrap();
        top.readv(&ctx, &fd, 10, 0, Xdata::new()).await.unwrap();
        top.fstat(&ctx, &fd, Xdata::new()).await.unwrap();
        // The directory moves: the fd's path follows.
        table.renamed(1, OsStr::new("d"), 1, OsStr::new("e"), false);
        top.readv(&ctx, &fd, 10, 0, Xdata::new()).await.unwrap();
        // The file is removed: its path is no longer known.
        table.removed(di, OsStr::new("f"));
        top.readv(&ctx, &fd, 10, 0, Xdata::new()).await.unwrap();
        // An fd without a path source has no path.
        let bare = Fd::new(f, libc::O_RDONLY, false);
        top.open(&ctx, &Loc::inode(f), &bare, Xdata::new())
            .await
            .unwrap();
        top.readv(&ctx, &bare, 10, 0, Xdata::new()).await.unwrap();
    });
    let log = s.log();
    let reads: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("readv") || l.starts_with("fstat"))
        .collect();
    assert_eq!(
        reads,
        [
            "readv '/d/f' '/d/f'",
            "fstat '/d/f'",
            "readv '/e/f' '/e/f'",
            "readv None None",
            "readv None None",
        ],
        "{log}"
    );
}

#[test]
fn readdir_overrides_hide_entries_and_bad_answers_fail_with_eio() {
    let s = setup();
    s.run(|top| async move {
        let ctx = Ctx::internal();
        let d = mkdir(&top, Gfid::ROOT, b"d", "/d").await;
        for n in ["a", "secret-1", "b", "secret-2"] {
            create(&top, d, n.as_bytes(), format!("/d/{n}").as_bytes()).await;
        }
        let table = Arc::new(InodeTable::new());
        table.remember(d, FileType::Directory, 1, OsStr::new("d"));
        let fd = opendir(&top, d, Some(table)).await;
        for plus in [false, true] {
            let mut names = Vec::new();
            let mut offset = 0;
            loop {
                // Small reads: some batches hold only hidden names.
                let r = if plus {
                    top.readdirp(&ctx, &fd, 64, offset, Xdata::new()).await
                } else {
                    top.readdir(&ctx, &fd, 64, offset, Xdata::new()).await
                };
                let ents = r.unwrap().0;
                let Some(last) = ents.last() else { break };
                offset = last.offset;
                for e in &ents {
                    assert_eq!(e.iatt.is_some(), plus && e.name != b"." && e.name != b"..");
                    names.push(String::from_utf8(e.name.clone()).unwrap());
                }
            }
            names.sort();
            assert_eq!(names, [".", "..", "a", "b"], "plus={plus}");
        }
        let mut xd = Xdata::new();
        xd.set("probe.bad", Vec::new());
        let r = top.readdir(&ctx, &fd, 4096, 0, xd).await;
        assert_eq!(r.unwrap_err(), Errno::EIO);
        let mut xd = Xdata::new();
        xd.set("probe.notalist", Vec::new());
        let r = top.readdirp(&ctx, &fd, 4096, 0, xd).await;
        assert_eq!(r.unwrap_err(), Errno::EIO);
        // Entries Python makes up come out as it made them.
        let mut xd = Xdata::new();
        xd.set("probe.invent", Vec::new());
        let ents = top.readdir(&ctx, &fd, 4096, 0, xd).await.unwrap().0;
        assert_eq!(ents.len(), 1);
        assert_eq!(ents[0].name, b"invented-\xe9");
        assert_eq!(ents[0].kind, FileType::Directory);
        assert_eq!((ents[0].ino, ents[0].offset), (77, 1));
        top.fsyncdir(&ctx, &fd, true, Xdata::new()).await.unwrap();
        top.releasedir(&ctx, &fd, Xdata::new()).await.unwrap();
    });
    let log = s.log();
    assert!(log.contains("readdir '/d' "), "{log}");
    assert!(log.contains("readdirp '/d' "), "{log}");
    // Some batch held only hidden names, and the listing still went on past it.
    assert!(
        log.lines()
            .any(|l| l == "readdirp '/d' 'secret-1'" || l == "readdirp '/d' 'secret-2'"),
        "{log}"
    );
    assert!(log.contains("fsyncdir True '/d'"), "{log}");
}

#[test]
fn statfs_and_the_fallocate_family_can_be_overridden() {
    let s = setup();
    s.run(|top| async move {
        let ctx = Ctx::internal();
        let (_, fd) = create(&top, Gfid::ROOT, b"f", b"/f").await;
        let st = top
            .statfs(&ctx, &Loc::root(), Xdata::new())
            .await
            .unwrap()
            .0;
        assert_eq!(
            (st.blocks, st.bfree, st.bavail, st.files, st.ffree),
            (1000, 600, 500, 70, 30)
        );
        assert!(st.bsize > 0 && st.namemax > 0);
        top.fallocate(&ctx, &fd, 0, 0, 8192, Xdata::new())
            .await
            .unwrap();
        let e = top.fallocate(&ctx, &fd, 0, 0, 13, Xdata::new()).await;
        assert_eq!(e.unwrap_err(), Errno(libc::ENOSPC));
        top.writev(&ctx, &fd, Bytes::from_static(b"data"), 0, Xdata::new())
            .await
            .unwrap();
        top.zerofill(&ctx, &fd, 0, 2, Xdata::new()).await.unwrap();
        let (data, _) = top.readv(&ctx, &fd, 4, 0, Xdata::new()).await.unwrap();
        assert_eq!(&data[..], b"\0\0ta");
        let _ = top.discard(&ctx, &fd, 4096, 4096, Xdata::new()).await;
        let at = top
            .seek(&ctx, &fd, 999, SeekWhat::Hole, Xdata::new())
            .await
            .unwrap()
            .0;
        assert_eq!(at, 5);
        let at = top
            .seek(&ctx, &fd, 0, SeekWhat::Data, Xdata::new())
            .await
            .unwrap()
            .0;
        assert_eq!(at, 0);
    });
    let log = s.log();
    for want in [
        "statfs '/' StatVfs",
        "fallocate 0 0 8192 None",
        "fallocate 0 0 13 None",
        "zerofill 0 2",
        "discard 4096 4096",
        "seek 999 False",
        "seek 0 True",
    ] {
        assert!(log.contains(want), "no {want:?} in\n{log}");
    }
}

#[test]
fn names_that_are_not_utf8_pass_through_python_unchanged() {
    let s = setup();
    let brick = s._dir.path().join("brick");
    s.run(|top| async move {
        let ctx = Ctx::internal();
        // Latin-1 and every byte but / and NUL.
        let every: Vec<u8> = (1u8..=255).filter(|&b| b != b'/').take(200).collect();
        let mut names: Vec<Vec<u8>> = vec![b"caf\xe9".to_vec(), b"\xff\xfe".to_vec(), every];
        names.push("utf8-é".as_bytes().to_vec());
        for n in &names {
            let mut path = b"/".to_vec();
            path.extend_from_slice(n);
            let (g, fd) = create(&top, Gfid::ROOT, n, &path).await;
            top.release(&ctx, &fd, Xdata::new()).await.unwrap();
            // Looked up through Python's ctx.lookup with the str Python was given.
            let mut via = b"via-helper-".to_vec();
            via.extend_from_slice(n);
            if via.len() <= 255 {
                let loc = Loc::entry(Gfid::ROOT, OsStr::from_bytes(&via));
                let ia = top.lookup(&ctx, &loc, Xdata::new()).await.unwrap().0;
                assert_eq!(ia.gfid, g);
            }
        }
        // A translator may hand back bytes.
        let (_, fd) = create(&top, Gfid::ROOT, b"swap", b"/swap").await;
        top.release(&ctx, &fd, Xdata::new()).await.unwrap();
        // Listing through the readdir override gives the same bytes back.
        let dfd = opendir(&top, Gfid::ROOT, None).await;
        let ents = top
            .readdir(&ctx, &dfd, 65536, 0, Xdata::new())
            .await
            .unwrap()
            .0;
        let listed: Vec<&[u8]> = ents.iter().map(|e| e.name.as_slice()).collect();
        for n in &names {
            assert!(listed.contains(&n.as_slice()), "{n:x?} not in {listed:x?}");
        }
        assert!(listed.contains(&&b"swapped-\xff"[..]), "{listed:x?}");
        assert!(!listed.contains(&&b"swap"[..]));
    });
    let on_brick: Vec<Vec<u8>> = std::fs::read_dir(&brick)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert!(on_brick.contains(&b"caf\xe9".to_vec()), "{on_brick:x?}");
    assert!(
        on_brick.contains(&b"swapped-\xff".to_vec()),
        "{on_brick:x?}"
    );
    let log = s.log();
    // Python saw str, with the undecodable byte as a surrogate and valid UTF-8 decoded;
    // os.fsencode gives the bytes back.
    assert!(
        log.contains("create str 'caf\\udce9' 636166e9 '/caf\\udce9'"),
        "{log}"
    );
    assert!(
        log.contains("create str 'utf8-\\xe9' 757466382dc3a9 '/utf8-\\xe9'"),
        "{log}"
    );
    assert!(log.contains("create str '\\udcff\\udcfe' fffe "), "{log}");
}
