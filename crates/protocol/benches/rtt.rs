//! Round trips over loopback TCP through protocol/client → brick server → features/locks
//! → storage/posix, all in one process: a no-op FOP (flush, which posix answers without a
//! syscall) and 4 KiB / 1 MiB reads and writes.
//! `cargo bench -p weft-protocol --bench rtt`.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weft_core::{Ctx, Event, Fd, Gfid, Graph, Loc, Xdata, XlatorRef, GFID_REQ_KEY};

fn registry() -> weft_core::Registry {
    let mut r = weft_xlators::registry();
    weft_protocol::register(&mut r);
    r
}

fn rtt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(weft_core::blocking::allow_block_in_place)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let (top, _graph, _server) = rt.block_on(async {
        let server = weft_protocol::BrickServer::new(registry(), None, Default::default());
        let vf = format!(
            "volume b-posix\n type storage/posix\n option directory {}\nend-volume\n\
             volume b\n type features/locks\n subvolumes b-posix\nend-volume\n\
             volume b-server\n type protocol/server\n subvolumes b\nend-volume\n",
            dir.path().display()
        );
        server.attach(&vf).await.expect("attach");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(server.clone().serve(listener));
        let cv = format!(
            "volume c\n type protocol/client\n option remote-host 127.0.0.1\n option remote-port {port}\n option remote-subvolume b\nend-volume\n"
        );
        let graph = Arc::new(
            Graph::build(&weft_core::volfile::Volfile::parse(&cv).expect("volfile"), &registry())
                .expect("graph"),
        );
        let mut events = graph.take_events().expect("events");
        loop {
            let (from, ev) = events.recv().await.expect("event");
            if let Event::ChildUp(_) = ev {
                break;
            }
            assert!(!matches!(ev, Event::ChildError(..)), "{from}: {ev:?}");
        }
        (graph.top().clone(), graph, server)
    });
    let top: XlatorRef = top;
    let ctx = Ctx::internal();
    let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
    rt.block_on(async {
        top.create(&ctx, &Loc::entry(Gfid::ROOT, "f"), &fd, 0o644, 0, xd)
            .await
            .expect("create");
        top.writev(&ctx, &fd, Bytes::from(vec![1u8; 1 << 20]), 0, Xdata::new())
            .await
            .expect("fill");
    });

    c.bench_function("rtt/noop (flush)", |b| {
        b.iter(|| {
            rt.block_on(top.flush(&ctx, &fd, Xdata::new()))
                .expect("flush")
        })
    });
    let mut g = c.benchmark_group("rtt");
    for size in [4096usize, 1 << 20] {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("readv", size), &size, |b, &size| {
            b.iter(|| {
                rt.block_on(top.readv(&ctx, &fd, size as u32, 0, Xdata::new()))
                    .expect("read")
            })
        });
        let data = Bytes::from(vec![2u8; size]);
        g.bench_with_input(BenchmarkId::new("writev", size), &size, |b, _| {
            b.iter(|| {
                rt.block_on(top.writev(&ctx, &fd, data.clone(), 0, Xdata::new()))
                    .expect("write")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, rtt);
criterion_main!(benches);
