//! The FOP hot paths of a one-brick graph (debug/io-stats over storage/posix), called the
//! way the FUSE front end calls them: on a thread allowed to block, so posix syscalls run
//! inline. `cargo bench -p weft-xlators --bench posix_fops`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use weft_core::volfile::{Volfile, VolumeDecl};
use weft_core::{Ctx, Fd, Graph, Loc, Xdata, XlatorRef};

fn graph(brick: &std::path::Path) -> Graph {
    let vf = Volfile {
        volumes: vec![
            VolumeDecl::new("b-posix", "storage/posix").option("directory", brick.display()),
            VolumeDecl::new("b", "debug/io-stats").subvolumes(&["b-posix"]),
        ],
    };
    Graph::build(&vf, &weft_xlators::registry()).expect("graph")
}

fn fops(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let g = graph(dir.path());
    let top: XlatorRef = g.top().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    weft_core::blocking::allow_inline_blocking();
    let ctx = Ctx::internal();
    let run = |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>| rt.block_on(f);

    // A file with 4 KiB of data to look up, stat and read.
    let fd = Fd::new(weft_core::Gfid::random(), libc::O_RDWR, false);
    let loc = Loc::entry(weft_core::Gfid::ROOT, "f");
    let mut xd = Xdata::new();
    xd.set(weft_core::GFID_REQ_KEY, fd.gfid.0.to_vec());
    run(Box::pin(async {
        top.create(&ctx, &loc, &fd, 0o644, 0, xd)
            .await
            .expect("create");
        top.writev(&ctx, &fd, Bytes::from(vec![7u8; 4096]), 0, Xdata::new())
            .await
            .expect("write");
    }));
    let inode = Loc::inode(fd.gfid);

    c.bench_function("lookup (entry)", |b| {
        b.iter(|| {
            run(Box::pin(async {
                top.lookup(&ctx, &loc, Xdata::new()).await.expect("lookup");
            }))
        })
    });
    c.bench_function("stat (gfid)", |b| {
        b.iter(|| {
            run(Box::pin(async {
                top.stat(&ctx, &inode, Xdata::new()).await.expect("stat");
            }))
        })
    });
    c.bench_function("readv 4 KiB", |b| {
        b.iter(|| {
            run(Box::pin(async {
                top.readv(&ctx, &fd, 4096, 0, Xdata::new())
                    .await
                    .expect("read");
            }))
        })
    });
    c.bench_function("writev 4 KiB", |b| {
        let data = Bytes::from(vec![1u8; 4096]);
        b.iter(|| {
            run(Box::pin(async {
                top.writev(&ctx, &fd, data.clone(), 0, Xdata::new())
                    .await
                    .expect("write");
            }))
        })
    });
    c.bench_function("create + release + unlink", |b| {
        let tmp = Loc::entry(weft_core::Gfid::ROOT, "tmp");
        b.iter(|| {
            run(Box::pin(async {
                let f = Fd::new(
                    weft_core::Gfid::random(),
                    libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                    false,
                );
                let mut xd = Xdata::new();
                xd.set(weft_core::GFID_REQ_KEY, f.gfid.0.to_vec());
                top.create(&ctx, &tmp, &f, 0o644, 0, xd)
                    .await
                    .expect("create");
                top.release(&ctx, &f, Xdata::new()).await.expect("release");
                top.unlink(&ctx, &tmp, Xdata::new()).await.expect("unlink");
            }))
        })
    });
}

criterion_group!(benches, fops);
criterion_main!(benches);
