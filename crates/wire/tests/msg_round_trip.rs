//! Every `FopRequest` and every `Reply` variant round-tripped through `encode`/`decode`,
//! inside a full `Request`/`Response`, with non-UTF-8 names and paths. `request_case` and
//! `reply_case` are exhaustive matches (no `_` arm): adding a variant to either enum fails to
//! compile here until it has a case in `requests()`/`replies()`, and the tests check that
//! every arm is reached by some case.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use weft_core::{
    Checksum, Ctx, Dirent, EntrylkCmd, EntrylkType, FileType, Flock, Gfid, Iatt, LkCmd, Loc,
    LockType, SeekWhat, SetAttr, SetTime, StatVfs, Timespec, XattrMap, XattropOp, Xdata,
};
use weft_wire::msg::{decode, encode, FopRequest, Reply, Request, Response};
use weft_wire::Kind;

/// Bytes that are not UTF-8 (a lone continuation byte, an invalid lead, a NUL-free mix).
fn odd_bytes(tag: &str) -> Vec<u8> {
    let mut v = vec![0xff, b'n', 0x80, 0xc3, b'-'];
    v.extend_from_slice(tag.as_bytes());
    v.push(0xfe);
    v
}

fn odd_name(tag: &str) -> OsString {
    OsString::from_vec(odd_bytes(tag))
}

fn odd_path(tag: &str) -> PathBuf {
    let mut v = b"/dir\xe9/".to_vec();
    v.extend(odd_bytes(tag));
    PathBuf::from(OsString::from_vec(v))
}

fn gfid(n: u8) -> Gfid {
    Gfid([
        n,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        n.wrapping_add(1),
    ])
}

/// Locations of every shape: inode only, entry with a non-UTF-8 name and path, root, empty.
fn locs() -> Vec<Loc> {
    vec![
        Loc::inode(gfid(7)),
        Loc::entry(gfid(8), odd_name("e")).with_path(odd_path("e")),
        Loc {
            gfid: Some(gfid(9)),
            parent: Some(Gfid::ROOT),
            name: Some(odd_name("full")),
            path: Some(odd_path("full")),
        },
        Loc::root(),
        Loc::default(),
    ]
}

fn loc(i: usize) -> Loc {
    let l = locs();
    l[i % l.len()].clone()
}

fn xattrs() -> XattrMap {
    let mut m = XattrMap::new();
    m.insert("user.a".into(), vec![]);
    m.insert("trusted.afr.x".into(), vec![0, 0, 0, 1, 0xff, 0xfe]);
    m.insert("user.é".into(), odd_bytes("v"));
    m
}

fn flock(kind: LockType) -> Flock {
    Flock {
        kind,
        start: 17,
        len: u64::MAX,
        pid: 4242,
        owner: 0xdead_beef_0000_0001,
    }
}

fn iatt(mode: u32) -> Iatt {
    Iatt {
        gfid: gfid(3),
        ino: u64::MAX - 1,
        mode,
        nlink: 2,
        uid: 65534,
        gid: 1,
        rdev: 0x0801,
        size: 1 << 40,
        blksize: 4096,
        blocks: 12,
        atime: Timespec {
            sec: -1,
            nsec: 999_999_999,
        },
        mtime: Timespec {
            sec: 1_700_000_000,
            nsec: 1,
        },
        ctime: Timespec {
            sec: i64::MAX,
            nsec: 0,
        },
    }
}

/// Names each `FopRequest` variant (exhaustively: a new variant does not compile until it
/// is listed here) and gives its index among the arms.
fn request_case(r: &FopRequest) -> usize {
    use FopRequest::*;
    match r {
        Lookup { .. } => 0,
        Stat { .. } => 1,
        Fstat { .. } => 2,
        Access { .. } => 3,
        Setattr { .. } => 4,
        Fsetattr { .. } => 5,
        Truncate { .. } => 6,
        Ftruncate { .. } => 7,
        Readlink { .. } => 8,
        Statfs { .. } => 9,
        Mkdir { .. } => 10,
        Rmdir { .. } => 11,
        Unlink { .. } => 12,
        Rename { .. } => 13,
        Link { .. } => 14,
        Symlink { .. } => 15,
        Mknod { .. } => 16,
        Open { .. } => 17,
        Create { .. } => 18,
        Writev { .. } => 19,
        Readv { .. } => 20,
        Flush { .. } => 21,
        Fsync { .. } => 22,
        Release { .. } => 23,
        Fallocate { .. } => 24,
        Discard { .. } => 25,
        Zerofill { .. } => 26,
        Seek { .. } => 27,
        Rchecksum { .. } => 28,
        Opendir { .. } => 29,
        Readdir { .. } => 30,
        Readdirp { .. } => 31,
        Fsyncdir { .. } => 32,
        Releasedir { .. } => 33,
        Getxattr { .. } => 34,
        Fgetxattr { .. } => 35,
        Setxattr { .. } => 36,
        Fsetxattr { .. } => 37,
        Removexattr { .. } => 38,
        Fremovexattr { .. } => 39,
        Xattrop { .. } => 40,
        Fxattrop { .. } => 41,
        Lk { .. } => 42,
        Inodelk { .. } => 43,
        Finodelk { .. } => 44,
        Entrylk { .. } => 45,
    }
}
const REQUEST_ARMS: usize = 46;

/// Names each `Reply` variant, as `request_case` does.
fn reply_case(r: &Reply) -> usize {
    match r {
        Reply::Unit => 0,
        Reply::Iatt(_) => 1,
        Reply::Path(_) => 2,
        Reply::StatVfs(_) => 3,
        Reply::Opened { .. } => 4,
        Reply::Created { .. } => 5,
        Reply::Data => 6,
        Reply::Count(_) => 7,
        Reply::Dirents(_) => 8,
        Reply::Xattrs(_) => 9,
        Reply::Flock(_) => 10,
        Reply::Checksum(_) => 11,
    }
}
const REPLY_ARMS: usize = 12;

fn requests() -> Vec<FopRequest> {
    use FopRequest::*;
    let full_attr = SetAttr {
        mode: Some(0o4755),
        uid: Some(0),
        gid: Some(u32::MAX),
        size: Some(u64::MAX),
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::At(Timespec { sec: -5, nsec: 7 })),
    };
    let mut v = Vec::new();
    for i in 0..locs().len() {
        v.push(Lookup { loc: loc(i) });
    }
    v.extend([
        Stat { loc: loc(1) },
        Fstat { fd: u64::MAX },
        Access {
            loc: loc(2),
            mask: 7,
        },
        Setattr {
            loc: loc(1),
            attr: full_attr,
        },
        Setattr {
            loc: loc(0),
            attr: SetAttr::default(),
        },
        Fsetattr {
            fd: 3,
            attr: full_attr,
        },
        Truncate {
            loc: loc(1),
            size: 1 << 50,
        },
        Ftruncate { fd: 0, size: 0 },
        Readlink { loc: loc(2) },
        Statfs { loc: loc(3) },
        Mkdir {
            loc: loc(1),
            mode: 0o755,
            umask: 0o22,
        },
        Rmdir { loc: loc(1) },
        Unlink { loc: loc(2) },
        Rename {
            old: loc(1),
            new: loc(2),
            flags: 2,
        },
        Link {
            old: loc(0),
            new: loc(1),
        },
        Symlink {
            target: odd_path("target"),
            loc: loc(1),
            umask: 0o77,
        },
        Symlink {
            target: PathBuf::from(OsString::from_vec(odd_bytes("rel"))),
            loc: loc(2),
            umask: 0,
        },
        Mknod {
            loc: loc(1),
            mode: 0o20644,
            rdev: 0x0103,
            umask: 0o22,
        },
        Open {
            loc: loc(0),
            gfid: gfid(5),
            flags: libc_o_flags(),
        },
        Create {
            loc: loc(1),
            gfid: gfid(6),
            flags: -1,
            mode: 0o600,
            umask: 0o27,
        },
        Writev {
            fd: 9,
            offset: u64::MAX - 4096,
        },
        Readv {
            fd: 9,
            size: u32::MAX,
            offset: 1,
        },
        Flush { fd: 1 },
        Fsync {
            fd: 1,
            datasync: true,
        },
        Fsync {
            fd: 2,
            datasync: false,
        },
        Release { fd: 12 },
        Fallocate {
            fd: 4,
            mode: 3,
            offset: 10,
            len: 20,
        },
        Discard {
            fd: 4,
            offset: 0,
            len: u64::MAX,
        },
        Zerofill {
            fd: 4,
            offset: 5,
            len: 6,
        },
        Seek {
            fd: 4,
            offset: 100,
            what: SeekWhat::Data,
        },
        Seek {
            fd: 4,
            offset: 100,
            what: SeekWhat::Hole,
        },
        Rchecksum {
            fd: 4,
            offset: 0,
            len: 1 << 20,
        },
        Opendir {
            loc: loc(2),
            gfid: Gfid::ROOT,
        },
        Readdir {
            fd: 5,
            size: 4096,
            offset: u64::MAX,
        },
        Readdirp {
            fd: 5,
            size: 1 << 20,
            offset: 0,
        },
        Fsyncdir {
            fd: 5,
            datasync: true,
        },
        Releasedir { fd: 5 },
        Getxattr {
            loc: loc(1),
            name: Some("user.é".into()),
        },
        Getxattr {
            loc: loc(0),
            name: None,
        },
        Fgetxattr { fd: 6, name: None },
        Fgetxattr {
            fd: 6,
            name: Some("security.capability".into()),
        },
        Setxattr {
            loc: loc(1),
            attrs: xattrs(),
            flags: 1,
        },
        Fsetxattr {
            fd: 6,
            attrs: XattrMap::new(),
            flags: 2,
        },
        Removexattr {
            loc: loc(2),
            name: "user.a".into(),
        },
        Fremovexattr {
            fd: 6,
            name: String::new(),
        },
        Xattrop {
            loc: loc(2),
            op: XattropOp::AddArray32,
            attrs: xattrs(),
        },
        Fxattrop {
            fd: 6,
            op: XattropOp::AddArray64,
            attrs: xattrs(),
        },
        Lk {
            fd: 7,
            cmd: LkCmd::Get,
            lock: flock(LockType::Read),
        },
        Lk {
            fd: 7,
            cmd: LkCmd::Set,
            lock: flock(LockType::Write),
        },
        Lk {
            fd: 7,
            cmd: LkCmd::SetWait,
            lock: flock(LockType::Unlock),
        },
        Inodelk {
            domain: "afr".into(),
            loc: loc(1),
            cmd: LkCmd::SetWait,
            lock: flock(LockType::Write),
        },
        Finodelk {
            domain: String::new(),
            fd: 8,
            cmd: LkCmd::Set,
            lock: flock(LockType::Read),
        },
        Entrylk {
            domain: "dht".into(),
            loc: loc(2),
            basename: Some(odd_name("base")),
            cmd: EntrylkCmd::Lock,
            kind: EntrylkType::Write,
        },
        Entrylk {
            domain: "dht".into(),
            loc: loc(0),
            basename: None,
            cmd: EntrylkCmd::LockNonBlocking,
            kind: EntrylkType::Read,
        },
        Entrylk {
            domain: "x".into(),
            loc: loc(3),
            basename: Some(OsString::from("plain")),
            cmd: EntrylkCmd::Unlock,
            kind: EntrylkType::Read,
        },
    ]);
    v
}

fn libc_o_flags() -> i32 {
    0o2 | 0o100 | 0o2000 | 0o4010000
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Unit,
        Reply::Iatt(iatt(0o100644)),
        Reply::Path(odd_path("link")),
        Reply::Path(PathBuf::from(OsString::from_vec(odd_bytes("relative")))),
        Reply::Path(PathBuf::new()),
        Reply::StatVfs(StatVfs {
            bsize: 4096,
            frsize: 4096,
            blocks: u64::MAX,
            bfree: 1,
            bavail: 0,
            files: 1 << 33,
            ffree: 7,
            namemax: 255,
        }),
        Reply::StatVfs(StatVfs::default()),
        Reply::Opened { fd: 0 },
        Reply::Opened { fd: u64::MAX },
        Reply::Created {
            fd: 3,
            iatt: iatt(0o100600),
        },
        Reply::Data,
        Reply::Count(0),
        Reply::Count(u64::MAX),
        Reply::Dirents(vec![]),
        Reply::Dirents(vec![
            Dirent {
                name: b".".to_vec(),
                offset: 1,
                kind: FileType::Directory,
                ino: 1,
                iatt: None,
            },
            Dirent {
                name: odd_bytes("d"),
                offset: 2,
                kind: FileType::Regular,
                ino: 9,
                iatt: Some(iatt(0o100644)),
            },
            Dirent {
                name: vec![],
                offset: u64::MAX,
                kind: FileType::Symlink,
                ino: 0,
                iatt: None,
            },
            Dirent {
                name: b"f".to_vec(),
                offset: 3,
                kind: FileType::Fifo,
                ino: 3,
                iatt: None,
            },
            Dirent {
                name: b"c".to_vec(),
                offset: 4,
                kind: FileType::CharDevice,
                ino: 4,
                iatt: None,
            },
            Dirent {
                name: b"b".to_vec(),
                offset: 5,
                kind: FileType::BlockDevice,
                ino: 5,
                iatt: None,
            },
            Dirent {
                name: b"s".to_vec(),
                offset: 6,
                kind: FileType::Socket,
                ino: 6,
                iatt: Some(iatt(0o140777)),
            },
        ]),
        Reply::Xattrs(XattrMap::new()),
        Reply::Xattrs(xattrs()),
        Reply::Flock(flock(LockType::Unlock)),
        Reply::Flock(flock(LockType::Write)),
        Reply::Checksum(Checksum {
            weak: u32::MAX,
            strong: vec![0; 32],
        }),
        Reply::Checksum(Checksum {
            weak: 0,
            strong: vec![],
        }),
    ]
}

fn xdata() -> Xdata {
    let mut x = Xdata::default();
    x.0.insert("gfid-req".into(), gfid(1).0.to_vec());
    x.0.insert("odd".into(), odd_bytes("x"));
    x
}

/// Encodes, decodes back the same value, and checks every strict prefix is refused.
fn round_trip<T>(kind: Kind, msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode(msg);
    assert!(!bytes.is_empty(), "{msg:?} encoded to nothing");
    let back: T = decode(kind, &bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
    assert_eq!(&back, msg);
    // Encoding is deterministic: the decoded value encodes to the same bytes.
    assert_eq!(encode(&back), bytes, "{msg:?}");
    for cut in 0..bytes.len() {
        assert!(
            decode::<T>(kind, &bytes[..cut]).is_err(),
            "{msg:?} cut to {cut} of {} bytes decoded",
            bytes.len()
        );
    }
}

#[test]
fn every_request_variant_round_trips() {
    let all = requests();
    let seen: BTreeSet<usize> = all.iter().map(request_case).collect();
    let missing: Vec<usize> = (0..REQUEST_ARMS).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "request arms without a case: {missing:?}"
    );
    let names: BTreeSet<&str> = all.iter().map(FopRequest::name).collect();
    assert_eq!(names.len(), REQUEST_ARMS, "each variant has its own name");
    let ctxs = [
        Ctx::default(),
        Ctx {
            uid: 65534,
            gid: u32::MAX,
            pid: 1,
            lk_owner: u64::MAX,
            client: 77,
        },
    ];
    for (i, fop) in all.into_iter().enumerate() {
        round_trip(Kind::Request, &fop);
        let r = Request {
            ctx: ctxs[i % 2].clone(),
            xdata: if i % 3 == 0 {
                Xdata::default()
            } else {
                xdata()
            },
            fop,
        };
        round_trip(Kind::Request, &r);
    }
}

#[test]
fn every_reply_variant_round_trips() {
    let all = replies();
    let seen: BTreeSet<usize> = all.iter().map(reply_case).collect();
    let missing: Vec<usize> = (0..REPLY_ARMS).filter(|i| !seen.contains(i)).collect();
    assert!(missing.is_empty(), "reply arms without a case: {missing:?}");
    for (i, reply) in all.into_iter().enumerate() {
        round_trip(Kind::Reply, &reply);
        let r = Response {
            xdata: if i % 2 == 0 {
                xdata()
            } else {
                Xdata::default()
            },
            result: Ok(reply),
        };
        round_trip(Kind::Reply, &r);
    }
    for errno in [1, 2, 5, 11, 116, i32::MAX, -1] {
        round_trip(
            Kind::Reply,
            &Response {
                xdata: Xdata::default(),
                result: Err(errno),
            },
        );
    }
}

#[test]
fn non_utf8_names_and_paths_survive_byte_for_byte() {
    let l = loc(2);
    let Request {
        fop: FopRequest::Lookup { loc: back },
        ..
    } = decode::<Request>(
        Kind::Request,
        &encode(&Request {
            ctx: Ctx::default(),
            xdata: Xdata::default(),
            fop: FopRequest::Lookup { loc: l.clone() },
        }),
    )
    .unwrap()
    else {
        panic!("not a lookup")
    };
    assert_eq!(back.name.unwrap().into_vec(), odd_bytes("full"));
    assert_eq!(
        back.path.unwrap().into_os_string().into_vec(),
        odd_path("full").into_os_string().into_vec()
    );
    let Reply::Path(p) =
        decode::<Reply>(Kind::Reply, &encode(&Reply::Path(odd_path("t")))).unwrap()
    else {
        panic!("not a path")
    };
    assert!(p.to_str().is_none(), "the test path must not be UTF-8");
    assert_eq!(
        p.into_os_string().into_vec(),
        odd_path("t").into_os_string().into_vec()
    );
}
