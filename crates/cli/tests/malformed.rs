//! Hostile and broken peers against a real `weft brickd`: each bad connection is closed
//! with a log line, while a real client of the same brick keeps working and the server's
//! memory stays bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use weft_core::{Ctx, Flock, Gfid, LkCmd, Loc, LockType, Xdata};
use weft_wire::msg::{self, FopRequest, Handshake, HandshakeReply, Reply, Request, Response};
use weft_wire::{Frame, Header, Kind, HEADER_LEN};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

fn send(s: &mut TcpStream, f: &Frame) {
    s.write_all(&f.encode()).unwrap();
}

fn recv(s: &mut TcpStream) -> Frame {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).unwrap();
    let header = Header::parse(&h).unwrap();
    let mut meta = vec![0; header.meta_len as usize];
    s.read_exact(&mut meta).unwrap();
    let mut data = vec![0; header.data_len as usize];
    s.read_exact(&mut data).unwrap();
    Frame {
        header,
        meta: meta.into(),
        data: data.into(),
    }
}

/// True when the server closes the connection (EOF or reset) within 15 s, reading and
/// discarding whatever it still sends.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 65536];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

fn handshake(port: u16, brick: &str) -> TcpStream {
    let mut s = connect(port);
    let hs = Handshake {
        brick: brick.into(),
        client_name: "raw-test".into(),
    };
    send(
        &mut s,
        &Frame::new(Kind::Handshake, 0, msg::encode(&hs), Bytes::new()),
    );
    let f = recv(&mut s);
    let r: HandshakeReply = msg::decode(Kind::HandshakeReply, &f.meta).unwrap();
    assert!(matches!(r, HandshakeReply::Accepted { .. }), "{r:?}");
    s
}

fn request(id: u64, owner: u64, fop: FopRequest) -> Frame {
    let req = Request {
        ctx: Ctx {
            lk_owner: owner,
            ..Ctx::internal()
        },
        xdata: Xdata::default(),
        fop,
    };
    Frame::new(Kind::Request, id, msg::encode(&req), Bytes::new())
}

fn call(s: &mut TcpStream, id: u64, fop: FopRequest) -> Reply {
    send(s, &request(id, 1, fop));
    let f = recv(s);
    assert_eq!(f.header.id, id);
    let r: Response = msg::decode(Kind::Reply, &f.meta).unwrap();
    r.result.unwrap()
}

/// A `/proc/PID/status` figure in KiB: `VmRSS:` (touched memory) or `VmData:` (every
/// private writable mapping, so also buffers reserved and never touched).
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn malformed_peers_lose_only_their_own_connection() {
    let dir = scratch("net-bad");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("server.vol");
    std::fs::write(&vf, brick_graph("bad", &brick, &[])).unwrap();
    let bd = Brickd::start(dir.path(), &vf, &[]);
    let cv = dir.path().join("c.vol");
    std::fs::write(&cv, client_volfile("bad", bd.port, &[])).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_volfile(&cv, &mnt, &dir.path().join("m.log"), &[]);
    std::fs::write(mnt.join("f"), b"still here").unwrap();
    let works = |round: &str| {
        assert_eq!(
            std::fs::read(mnt.join("f")).unwrap(),
            b"still here",
            "the real client broke after {round}"
        );
        std::fs::write(mnt.join(round), round).unwrap();
    };

    // Not a Weft peer at all.
    let mut s = connect(bd.port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut s));
    works("http");

    // A newer major version: a refusal that says why, then close.
    let mut s = connect(bd.port);
    let mut f = Frame::new(
        Kind::Handshake,
        0,
        msg::encode(&Handshake {
            brick: "bad".into(),
            client_name: "future".into(),
        }),
        Bytes::new(),
    );
    f.header.major = 9;
    f.header.minor = 0;
    send(&mut s, &f);
    let r: HandshakeReply = msg::decode(Kind::HandshakeReply, &recv(&mut s).meta).unwrap();
    match r {
        HandshakeReply::Refused { reason, .. } => {
            assert!(reason.contains("protocol version 9.0"), "{reason}")
        }
        other => panic!("accepted a foreign major version: {other:?}"),
    }
    assert!(closed_by_server(&mut s));
    works("version");

    // A truncated frame, then the peer goes away.
    let mut s = handshake(bd.port, "bad");
    let whole = request(1, 1, FopRequest::Stat { loc: Loc::root() }).encode();
    s.write_all(&whole[..whole.len() / 2]).unwrap();
    drop(s);
    works("truncated");

    // An absurd length.
    let mut s = handshake(bd.port, "bad");
    let mut h = request(1, 1, FopRequest::Stat { loc: Loc::root() }).header;
    h.data_len = u32::MAX;
    s.write_all(&h.to_bytes()).unwrap();
    assert!(closed_by_server(&mut s));
    works("length");

    // An unknown message kind.
    let mut s = handshake(bd.port, "bad");
    let mut b = request(1, 1, FopRequest::Stat { loc: Loc::root() }).encode();
    b[6] = 200;
    s.write_all(&b).unwrap();
    assert!(closed_by_server(&mut s));
    works("kind");

    // Garbage after the handshake, and a request whose body does not decode.
    let mut s = handshake(bd.port, "bad");
    s.write_all(&[0xA5; 4096]).unwrap();
    assert!(closed_by_server(&mut s));
    let mut s = handshake(bd.port, "bad");
    send(
        &mut s,
        &Frame::new(
            Kind::Request,
            1,
            Bytes::from_static(&[0xff; 40]),
            Bytes::new(),
        ),
    );
    assert!(closed_by_server(&mut s));
    works("garbage");

    // A flood of requests that cannot finish: lock waits behind a lock held by another
    // owner of the same connection. The server cuts the connection at its limit.
    let mut s = handshake(bd.port, "bad");
    let gfid = match call(
        &mut s,
        1,
        FopRequest::Lookup {
            loc: Loc::entry(Gfid::ROOT, "f"),
        },
    ) {
        Reply::Iatt(ia) => ia.gfid,
        other => panic!("{other:?}"),
    };
    let fd = match call(
        &mut s,
        2,
        FopRequest::Open {
            loc: Loc::inode(gfid),
            gfid,
            flags: libc::O_RDWR,
        },
    ) {
        Reply::Opened { fd } => fd,
        other => panic!("{other:?}"),
    };
    let lock = |owner| Flock {
        kind: LockType::Write,
        start: 0,
        len: 0,
        pid: 1,
        owner,
    };
    call(
        &mut s,
        3,
        FopRequest::Lk {
            fd,
            cmd: LkCmd::Set,
            lock: lock(1),
        },
    );
    let before = status_kib(bd.pid(), "VmRSS:");
    let data_before = status_kib(bd.pid(), "VmData:");
    let mut burst = Vec::new();
    for id in 0..6000u64 {
        burst.extend_from_slice(
            &request(
                100 + id,
                2,
                FopRequest::Lk {
                    fd,
                    cmd: LkCmd::SetWait,
                    lock: lock(2),
                },
            )
            .encode(),
        );
    }
    let _ = s.write_all(&burst);
    assert!(closed_by_server(&mut s), "the flood was not cut off");
    works("flood");

    // Many connections each announcing a maximal frame and sending little of it.
    let mut hogs = Vec::new();
    for _ in 0..64 {
        let mut s = handshake(bd.port, "bad");
        let mut h = request(1, 1, FopRequest::Stat { loc: Loc::root() }).header;
        h.data_len = 16 << 20;
        s.write_all(&h.to_bytes()).unwrap();
        s.write_all(&[0u8; 1000]).unwrap();
        hogs.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    works("hogs");
    let after = status_kib(bd.pid(), "VmRSS:");
    assert!(
        after < before + 200 * 1024,
        "server memory grew from {before} KiB to {after} KiB"
    );
    // 64 announced 16 MiB frames would be 1 GiB if buffers were sized from the header:
    // reserved but untouched memory shows in VmData, not in VmRSS.
    let data_after = status_kib(bd.pid(), "VmData:");
    assert!(
        data_after < data_before + 256 * 1024,
        "server mappings grew from {data_before} KiB to {data_after} KiB: buffers sized from announced lengths?"
    );
    drop(hogs);

    let log = bd.log_text();
    for want in [
        "bad magic",
        "protocol version 9.0 is not supported",
        "closed in the middle of a frame",
        "exceeds the limit",
        "unknown message kind 200",
        "malformed Request message",
        "too many requests in flight",
    ] {
        assert!(log.contains(want), "no log line with {want:?}:\n{log}");
    }
    drop(m);
}
