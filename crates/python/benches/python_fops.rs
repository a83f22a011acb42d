//! What a pass-through Python translator costs. Two graphs over storage/posix, called the
//! way the FUSE front end calls them (a thread allowed to block, `Handle::block_on` of a
//! multi-thread runtime):
//! - `plain`: debug/io-stats > storage/posix;
//! - `python`: debug/io-stats > features/python > storage/posix, the class defining only
//!   `lookup` (which passes the call on).
//!
//! stat and 4 KiB readv never enter Python; lookup shows the price of a FOP that does.
//! `cargo bench -p weft-python --bench python_fops`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use weft_core::volfile::{Volfile, VolumeDecl};
use weft_core::{Ctx, Fd, FdRef, Gfid, Graph, Loc, Registry, Xdata, XlatorRef, GFID_REQ_KEY};

const PASS: &str = "class Pass:\n    def __init__(self, init):\n        pass\n\n    def lookup(self, ctx, args):\n        return ctx.wind()\n";

fn graph(dir: &std::path::Path, python: bool) -> Graph {
    let brick = dir.join("brick");
    std::fs::create_dir_all(&brick).expect("brick");
    std::fs::write(dir.join("pass.py"), PASS).expect("module");
    let mut volumes =
        vec![VolumeDecl::new("b-posix", "storage/posix").option("directory", brick.display())];
    let mut below = "b-posix";
    if python {
        volumes.push(
            VolumeDecl::new("b-py", "features/python")
                .option("module", "pass")
                .option("path", dir.display())
                .option("class", "Pass")
                .subvolumes(&["b-posix"]),
        );
        below = "b-py";
    }
    volumes.push(VolumeDecl::new("b", "debug/io-stats").subvolumes(&[below]));
    let mut r: Registry = weft_xlators::registry();
    weft_python::register(&mut r);
    Graph::build(&Volfile { volumes }, &r).expect("graph")
}

fn setup(rt: &tokio::runtime::Handle, top: &XlatorRef) -> (FdRef, Loc) {
    let ctx = Ctx::internal();
    let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
    let loc = Loc::entry(Gfid::ROOT, "f").with_path("/f");
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
    rt.block_on(async {
        top.create(&ctx, &loc, &fd, 0o644, 0, xd)
            .await
            .expect("create");
        top.writev(&ctx, &fd, Bytes::from(vec![7u8; 4096]), 0, Xdata::new())
            .await
            .expect("write");
    });
    (fd, loc)
}

fn fops(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let h = rt.handle().clone();
    weft_core::blocking::allow_inline_blocking();
    let ctx = Ctx::internal();
    for python in [false, true] {
        let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
        let g = graph(dir.path(), python);
        let top = g.top().clone();
        let (fd, loc) = setup(&h, &top);
        let inode = Loc::inode(fd.gfid);
        let tag = if python { "python" } else { "plain" };
        c.bench_function(&format!("{tag}: stat (gfid)"), |b| {
            b.iter(|| {
                h.block_on(top.stat(&ctx, &inode, Xdata::new()))
                    .expect("stat")
            })
        });
        c.bench_function(&format!("{tag}: readv 4 KiB"), |b| {
            b.iter(|| {
                h.block_on(top.readv(&ctx, &fd, 4096, 0, Xdata::new()))
                    .expect("read")
            })
        });
        c.bench_function(&format!("{tag}: lookup (entry)"), |b| {
            b.iter(|| {
                h.block_on(top.lookup(&ctx, &loc, Xdata::new()))
                    .expect("lookup")
            })
        });
    }
}

criterion_group!(benches, fops);
criterion_main!(benches);
