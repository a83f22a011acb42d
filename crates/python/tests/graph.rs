//! features/python in a graph over storage/posix, driven without FUSE: changing arguments,
//! changing results, answering, failing, reply xdata, and FOPs the class does not define
//! never reaching Python. Runs FOPs both from a runtime worker (Python on the blocking pool)
//! and from a thread marked for inline blocking (Python in place, as on FUSE threads).

use std::sync::Arc;

use bytes::Bytes;
use weft_core::volfile::{Volfile, VolumeDecl};
use weft_core::{Ctx, Errno, Fd, Gfid, Graph, Loc, Registry, Xdata, XlatorRef, GFID_REQ_KEY};

const MODULE: &str = r#"
import errno
import weft

class Tweak:
    def __init__(self, init):
        self.suffix = init.config.get("suffix", "")

    def lookup(self, ctx, args):
        # Change the arguments: "alias" means "real".
        if args.loc.name == "alias":
            args.loc.name = "real"
            args.loc.path = "/real"
        if args.loc.name == "forbidden":
            raise weft.Error(errno.EPERM)
        ia = ctx.wind()
        # Change the result on the way back.
        ia.mode = (ia.mode & ~0o777) | 0o600
        return ia

    def readv(self, ctx, args):
        if args.size == 7:  # answer without asking the child
            return b"answered"
        data = ctx.wind()
        return data.upper() + self.suffix.encode()

    def getxattr(self, ctx, args):
        r = ctx.wind()
        return r

    def writev(self, ctx, args):
        args.xdata["seen-by"] = ctx.translator.encode()
        n = ctx.wind()
        return n
"#;

fn graph(dir: &std::path::Path) -> Graph {
    std::fs::create_dir_all(dir.join("brick")).unwrap();
    std::fs::create_dir_all(dir.join("py")).unwrap();
    std::fs::write(dir.join("py/tweak.py"), MODULE).unwrap();
    let vf = Volfile {
        volumes: vec![
            VolumeDecl::new("g-posix", "storage/posix")
                .option("directory", dir.join("brick").display()),
            VolumeDecl::new("g-py", "features/python")
                .option("module", "tweak")
                .option("path", dir.join("py").display())
                .option("class", "Tweak")
                .option("config", "suffix=!")
                .subvolumes(&["g-posix"]),
        ],
    };
    let mut r: Registry = weft_xlators::registry();
    weft_python::register(&mut r);
    Graph::build(&vf, &r).expect("graph")
}

async fn scenario(top: XlatorRef) {
    let ctx = Ctx::internal();
    let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
    let loc = Loc::entry(Gfid::ROOT, "real").with_path("/real");
    let (ia, _) = top.create(&ctx, &loc, &fd, 0o644, 0, xd).await.unwrap();
    top.writev(&ctx, &fd, Bytes::from_static(b"hello"), 0, Xdata::new())
        .await
        .unwrap();

    let (found, _) = top
        .lookup(&ctx, &Loc::entry(Gfid::ROOT, "alias"), Xdata::new())
        .await
        .unwrap();
    assert_eq!(found.gfid, ia.gfid);
    assert_eq!(found.mode & 0o777, 0o600);
    let err = top
        .lookup(&ctx, &Loc::entry(Gfid::ROOT, "forbidden"), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(err, Errno::EPERM);
    // stat is not overridden: the real mode, straight from posix.
    let (st, _) = top
        .stat(&ctx, &Loc::inode(ia.gfid), Xdata::new())
        .await
        .unwrap();
    assert_eq!(st.mode & 0o777, 0o644);

    let (data, _) = top.readv(&ctx, &fd, 100, 0, Xdata::new()).await.unwrap();
    assert_eq!(&data[..], b"HELLO!");
    let (data, _) = top.readv(&ctx, &fd, 7, 0, Xdata::new()).await.unwrap();
    assert_eq!(&data[..], b"answered");
    top.release(&ctx, &fd, Xdata::new()).await.unwrap();
}

fn python_calls(g: &Graph) -> u64 {
    let dump = g.get("g-py").unwrap().dump();
    let line = dump
        .lines()
        .find(|l| l.starts_with("python calls = "))
        .unwrap();
    line["python calls = ".len()..].parse().unwrap()
}

#[test]
fn python_methods_change_arguments_and_results_from_a_runtime_worker() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let g = graph(dir.path());
    let top = g.top().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move { tokio::spawn(scenario(top)).await.unwrap() });
    // lookup x2 + readv x2 + writev; create, stat and release never entered Python.
    assert_eq!(python_calls(&g), 5);
}

#[test]
fn python_methods_run_in_place_on_threads_that_may_block() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let g = Arc::new(graph(dir.path()));
    let top = g.top().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        weft_core::blocking::allow_inline_blocking();
        handle.block_on(scenario(top));
    })
    .join()
    .unwrap();
    assert_eq!(python_calls(&g), 5);
}
