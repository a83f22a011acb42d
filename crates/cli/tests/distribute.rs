//! `cluster/distribute` on real FUSE mounts: four in-process `storage/posix` bricks (each
//! under features/locks), and three bricks served by three `weft brickd` processes through
//! protocol/client. What each brick holds is checked on the brick directories themselves.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use weft_cluster::distribute::hash::name_hash;
use weft_cluster::distribute::layout::{Layout, Piece, LAYOUT_XATTR};
use weft_cluster::distribute::LINKTO_XATTR;

/// A distributed volume over `n` local bricks, mounted.
struct Dist {
    /// Unmounted first.
    m: MountGuard,
    bricks: Vec<PathBuf>,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dist {
    fn local(tag: &str, n: usize, extra: &[&str]) -> Dist {
        let dir = scratch(tag);
        let mut vf = String::new();
        let mut bricks = Vec::new();
        let mut subs = Vec::new();
        for i in 0..n {
            let b = dir.path().join(format!("brick{i}"));
            std::fs::create_dir(&b).unwrap();
            vf.push_str(&format!(
                "volume {tag}-p{i}\n    type storage/posix\n    option directory {}\nend-volume\n\n\
                 volume {tag}-b{i}\n    type features/locks\n    subvolumes {tag}-p{i}\nend-volume\n\n",
                b.display()
            ));
            subs.push(format!("{tag}-b{i}"));
            bricks.push(b);
        }
        vf.push_str(&format!(
            "volume {tag}-dht\n    type cluster/distribute\n    subvolumes {}\nend-volume\n\n\
             volume {tag}\n    type debug/io-stats\n    subvolumes {tag}-dht\nend-volume\n",
            subs.join(" ")
        ));
        let vol = dir.path().join("client.vol");
        std::fs::write(&vol, vf).unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let m = mount_volfile(&vol, &mnt, &dir.path().join("mount.log"), extra);
        Dist {
            m,
            bricks,
            mnt,
            _dir: dir,
        }
    }
}

/// What one brick's copy of a directory holds: data entries and link files, by name.
#[derive(Default, Debug)]
struct BrickDir {
    data: BTreeSet<String>,
    links: BTreeSet<String>,
}

fn brick_dir(brick: &Path, sub: &str) -> BrickDir {
    let mut out = BrickDir::default();
    let d = brick.join(sub);
    for e in std::fs::read_dir(&d).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ".weft" {
            continue;
        }
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        let is_link = md.is_file()
            && md.mode() & 0o7777 == 0o1000
            && md.len() == 0
            && getxattr(&e.path(), LINKTO_XATTR).is_ok();
        if is_link {
            out.links.insert(name);
        } else {
            out.data.insert(name);
        }
    }
    out
}

fn bricks_view(bricks: &[PathBuf], sub: &str) -> Vec<BrickDir> {
    bricks.iter().map(|b| brick_dir(b, sub)).collect()
}

/// The layout of directory `sub` as its copies on the bricks carry it.
fn layout_of(bricks: &[PathBuf], sub: &str) -> Layout {
    let pieces: Vec<Option<Piece>> = bricks
        .iter()
        .map(|b| {
            getxattr(&b.join(sub), LAYOUT_XATTR)
                .ok()
                .and_then(|v| Piece::decode(&v))
        })
        .collect();
    let (l, bad) = Layout::from_pieces(&pieces);
    assert!(
        !bad.any(),
        "layout of {sub:?} has holes or overlaps: {bad:?}"
    );
    l
}

/// Names listed by `ls -f` (every entry, unsorted, with . and ..) and how many lines.
fn ls_f(dir: &Path) -> (usize, BTreeSet<String>) {
    let out = Command::new("ls").arg("-f").arg(dir).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    (lines.len(), lines.iter().map(|s| s.to_string()).collect())
}

fn write(p: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    f.write_all(data).unwrap();
}

#[test]
fn files_spread_over_four_bricks_and_list_once() {
    let v = Dist::local("dspread", 4, &[]);
    let d = v.mnt.join("spread");
    std::fs::create_dir(&d).unwrap();
    for i in 0..4000 {
        write(&d.join(format!("file-{i}.txt")), format!("{i}").as_bytes());
    }
    let view = bricks_view(&v.bricks, "spread");
    let total: usize = view.iter().map(|b| b.data.len()).sum();
    assert_eq!(total, 4000, "every file exactly once on the bricks");
    for (i, b) in view.iter().enumerate() {
        let share = b.data.len() as f64 / 4000.0;
        assert!((0.15..=0.35).contains(&share), "brick {i} holds {share}");
        assert!(b.links.is_empty(), "no link files after plain creates");
    }
    // Each file sits where the directory's layout says.
    let l = layout_of(&v.bricks, "spread");
    for (i, b) in view.iter().enumerate() {
        for n in &b.data {
            assert_eq!(l.subvol_for(name_hash(n.as_bytes())), Some(i), "{n}");
        }
    }
    assert!(l.complete);
    // The directory exists on every brick with one gfid.
    let gfids: BTreeSet<Vec<u8>> = v
        .bricks
        .iter()
        .map(|b| getxattr(&b.join("spread"), "trusted.weft.gfid").unwrap())
        .collect();
    assert_eq!(gfids.len(), 1);
    let (lines, names) = ls_f(&d);
    assert_eq!(lines, 4002);
    assert_eq!(names.len(), 4002);
    assert_eq!(
        std::fs::read_to_string(d.join("file-1234.txt")).unwrap(),
        "1234"
    );
    v.m.alive().unwrap();
}

#[test]
fn a_directory_of_20000_entries_is_listed_exactly_once() {
    let v = Dist::local("dbig", 4, &[]);
    let d = v.mnt.join("big");
    std::fs::create_dir(&d).unwrap();
    let mut want = BTreeSet::new();
    for i in 0..20_000 {
        let n = format!("entry-with-a-longer-name-{i:05}");
        std::fs::File::create(d.join(&n)).unwrap();
        want.insert(n);
    }
    for i in 0..20 {
        let n = format!("subdir-{i}");
        std::fs::create_dir(d.join(&n)).unwrap();
        want.insert(n);
    }
    let (lines, mut names) = ls_f(&d);
    assert_eq!(lines, 20_022, "ls -f line count");
    assert!(names.remove(".") && names.remove(".."));
    assert_eq!(names, want);
    // readdir(3) through std: every name exactly once.
    let mut seen = HashMap::new();
    for e in std::fs::read_dir(&d).unwrap() {
        *seen
            .entry(e.unwrap().file_name().to_string_lossy().into_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 20_020);
    assert!(seen.values().all(|&c| c == 1));
    // Entry d_ino matches st_ino through readdirplus.
    let out = Command::new("find")
        .arg(&d)
        .args(["-maxdepth", "1", "-type", "d"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 21);
    v.m.alive().unwrap();
}

#[test]
fn renames_across_hash_ranges_keep_content_and_inode() {
    let v = Dist::local("dren", 4, &[]);
    let d = v.mnt.join("r");
    std::fs::create_dir(&d).unwrap();
    let mut ino = HashMap::new();
    for i in 0..200 {
        let p = d.join(format!("old-{i}"));
        write(&p, format!("content {i}").as_bytes());
        ino.insert(i, std::fs::metadata(&p).unwrap().ino());
    }
    for i in 0..200 {
        std::fs::rename(d.join(format!("old-{i}")), d.join(format!("new-{i}"))).unwrap();
    }
    for i in 0..200 {
        let p = d.join(format!("new-{i}"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("content {i}"));
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.ino(), ino[&i], "st_ino kept across the rename of {i}");
        assert_eq!(md.nlink(), 1);
        assert!(!d.join(format!("old-{i}")).exists());
    }
    let (lines, names) = ls_f(&d);
    assert_eq!(lines, 202, "no link file is visible: {names:?}");
    // On the bricks: data stayed where it was created, and names hashed elsewhere got a
    // link file on their hashed brick pointing at the data.
    let l = layout_of(&v.bricks, "r");
    let view = bricks_view(&v.bricks, "r");
    let mut linked = 0;
    for i in 0..200 {
        let n = format!("new-{i}");
        let data: Vec<usize> = (0..4).filter(|&b| view[b].data.contains(&n)).collect();
        assert_eq!(data.len(), 1, "{n} has one data copy");
        let h = l.subvol_for(name_hash(n.as_bytes())).unwrap();
        let links: Vec<usize> = (0..4).filter(|&b| view[b].links.contains(&n)).collect();
        if h == data[0] {
            assert!(links.is_empty(), "{n}");
        } else {
            assert_eq!(links, vec![h], "{n}");
            linked += 1;
        }
    }
    assert!(linked > 50, "most renamed names hash elsewhere ({linked})");
    // Rename over an existing name whose data is on another brick: the old data goes.
    for i in 0..50 {
        std::fs::rename(
            d.join(format!("new-{i}")),
            d.join(format!("new-{}", i + 100)),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join(format!("new-{}", i + 100))).unwrap(),
            format!("content {i}")
        );
    }
    let view = bricks_view(&v.bricks, "r");
    let data: usize = view.iter().map(|b| b.data.len()).sum();
    assert_eq!(data, 150, "replaced data was removed");
    // Unlink everything: no link file or data left anywhere.
    for e in std::fs::read_dir(&d).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (i, b) in bricks_view(&v.bricks, "r").iter().enumerate() {
        assert!(b.data.is_empty() && b.links.is_empty(), "brick {i}: {b:?}");
    }
    std::fs::remove_dir(&d).unwrap();
    for b in &v.bricks {
        assert!(!b.join("r").exists());
    }
    v.m.alive().unwrap();
}

#[test]
fn hard_links_and_directory_moves() {
    let v = Dist::local("dlink", 4, &[]);
    let d = v.mnt.join("h");
    std::fs::create_dir(&d).unwrap();
    for i in 0..60 {
        write(&d.join(format!("f{i}")), format!("data {i}").as_bytes());
        std::fs::hard_link(d.join(format!("f{i}")), d.join(format!("g{i}"))).unwrap();
    }
    for i in 0..60 {
        let (f, g) = (d.join(format!("f{i}")), d.join(format!("g{i}")));
        let (mf, mg) = (
            std::fs::metadata(&f).unwrap(),
            std::fs::metadata(&g).unwrap(),
        );
        assert_eq!(mf.ino(), mg.ino());
        assert_eq!(mf.nlink(), 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&g)
            .unwrap()
            .write_all(b"+")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), format!("data {i}+"));
        std::fs::remove_file(&f).unwrap();
        assert_eq!(std::fs::metadata(&g).unwrap().nlink(), 1);
    }
    assert_eq!(ls_f(&d).0, 62);
    // mv of a directory tree, with mv(1).
    let t = v.mnt.join("tree");
    std::fs::create_dir_all(t.join("a/b/c")).unwrap();
    for i in 0..40 {
        write(&t.join(format!("a/b/c/x{i}")), b"deep");
        write(&t.join(format!("a/y{i}")), b"shallow");
    }
    let st = Command::new("mv")
        .arg(t.join("a"))
        .arg(v.mnt.join("moved"))
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!t.join("a").exists());
    for i in 0..40 {
        assert_eq!(
            std::fs::read(v.mnt.join(format!("moved/b/c/x{i}"))).unwrap(),
            b"deep"
        );
        assert_eq!(
            std::fs::read(v.mnt.join(format!("moved/y{i}"))).unwrap(),
            b"shallow"
        );
    }
    for b in &v.bricks {
        assert!(b.join("moved/b/c").is_dir() && !b.join("tree/a").exists());
    }
    layout_of(&v.bricks, "moved/b/c");
    // A non-empty directory cannot be removed, even when only one brick holds its file.
    assert_eq!(
        errno_of(std::fs::remove_dir(v.mnt.join("moved/b"))),
        libc::ENOTEMPTY
    );
    let st = Command::new("rm")
        .arg("-rf")
        .arg(v.mnt.join("moved"))
        .status()
        .unwrap();
    assert!(st.success());
    for b in &v.bricks {
        assert!(!b.join("moved").exists());
    }
    v.m.alive().unwrap();
}

/// A link file whose maker died between making it and naming its target (a rebalance
/// mover killed mid-move) is an empty link-mode file with no linkto on the name's hashed
/// brick while another brick holds the data under the same name and gfid: a lookup
/// serves the data (not an empty file) and points the link at it.
#[test]
fn an_orphan_link_file_does_not_hide_the_data() {
    let d = Dist::local("orphan-link", 2, &[]);
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    write(&d.mnt.join("victim"), &data);
    let h = (0..2)
        .find(|&i| d.bricks[i].join("victim").exists())
        .expect("the file on a brick");
    let o = 1 - h;
    let gfid = getxattr(&d.bricks[h].join("victim"), "trusted.weft.gfid").unwrap();
    assert_eq!(gfid.len(), 16);
    let vol = d.mnt.parent().unwrap().join("client.vol");
    let log = d.mnt.parent().unwrap().join("mount2.log");
    let Dist {
        m,
        bricks,
        mnt,
        _dir,
    } = d;
    drop(m);
    // The data moved to brick o with its gfid (and gfid handle), as a move leaves it...
    let hex: String = gfid.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let moved = bricks[o].join("victim");
    std::fs::copy(bricks[h].join("victim"), &moved).unwrap();
    let st = Command::new("setfattr")
        .args(["-n", "trusted.weft.gfid", "-v", &format!("0x{hex}")])
        .arg(&moved)
        .status()
        .unwrap();
    assert!(st.success());
    let handles = bricks[o]
        .join(".weft/handles")
        .join(&uuid[0..2])
        .join(&uuid[2..4]);
    std::fs::create_dir_all(&handles).unwrap();
    std::fs::hard_link(&moved, handles.join(&uuid)).unwrap();
    // ...and on the hashed brick, an empty link-mode file naming no target.
    let stub = bricks[h].join("victim");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stub)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o1000)).unwrap();
    let _m = mount_volfile(&vol, &mnt, &log, &[]);
    let got = std::fs::read(mnt.join("victim")).unwrap();
    assert!(
        got == data,
        "victim read {} bytes, {} written",
        got.len(),
        data.len()
    );
    assert_eq!(
        getxattr(&stub, LINKTO_XATTR).unwrap(),
        format!("orphan-link-b{o}").into_bytes(),
        "the link was not pointed at the data"
    );
    // A real empty file in link mode stays what it is.
    std::fs::write(mnt.join("empty"), b"").unwrap();
    std::fs::set_permissions(mnt.join("empty"), std::fs::Permissions::from_mode(0o1000)).unwrap();
    assert_eq!(std::fs::metadata(mnt.join("empty")).unwrap().len(), 0);
}

#[test]
fn statfs_is_the_sum_of_the_bricks() {
    let v = Dist::local("dstatfs", 4, &[]);
    let sv = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a zeroed statvfs filled by the call.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s
    };
    let m = sv(&v.mnt);
    let bytes: u128 = v
        .bricks
        .iter()
        .map(|b| {
            let s = sv(b);
            s.f_blocks as u128 * s.f_frsize as u128
        })
        .sum();
    assert_eq!(m.f_blocks as u128 * m.f_frsize as u128, bytes);
    let files: u64 = v.bricks.iter().map(|b| sv(b).f_files).sum();
    assert_eq!(m.f_files, files);
    v.m.alive().unwrap();
}

#[test]
fn rsync_style_temporaries_rename_on_one_brick() {
    let v = Dist::local("dtemp", 4, &[]);
    let d = v.mnt.join("t");
    std::fs::create_dir(&d).unwrap();
    for i in 0..100 {
        let final_name = format!("doc-{i}.txt");
        for tmp in [
            format!(".{final_name}.Xy{i:04}"),
            format!(".{final_name}.aB{i:04}~"),
        ] {
            write(&d.join(&tmp), format!("v {i}").as_bytes());
            let before: Vec<bool> = bricks_view(&v.bricks, "t")
                .iter()
                .map(|b| b.data.contains(&tmp))
                .collect();
            std::fs::rename(d.join(&tmp), d.join(&final_name)).unwrap();
            let view = bricks_view(&v.bricks, "t");
            let after: Vec<bool> = view.iter().map(|b| b.data.contains(&final_name)).collect();
            assert_eq!(before, after, "{tmp} and {final_name} on one brick");
            assert!(
                view.iter().all(|b| b.links.is_empty()),
                "no link file for {tmp}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(d.join(&final_name)).unwrap(),
            format!("v {i}")
        );
    }
    assert_eq!(ls_f(&d).0, 102);
    v.m.alive().unwrap();
}

#[test]
fn posix_suite_on_four_distributed_bricks() {
    let v = Dist::local("dposix", 4, &[]);
    std::fs::set_permissions(&v.mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_behaves_like_local(&v.mnt, &v.m);
}

/// Three bricks, each served by its own `weft brickd`, mounted through protocol/client.
struct NetDist {
    m: MountGuard,
    servers: Vec<Brickd>,
    bricks: Vec<PathBuf>,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl NetDist {
    fn new(tag: &str, n: usize) -> NetDist {
        let dir = scratch(tag);
        let mut servers = Vec::new();
        let mut bricks = Vec::new();
        let mut client = String::new();
        let mut subs = Vec::new();
        for i in 0..n {
            let b = dir.path().join(format!("brick{i}"));
            std::fs::create_dir(&b).unwrap();
            let sd = dir.path().join(format!("srv{i}"));
            std::fs::create_dir(&sd).unwrap();
            let name = format!("{tag}{i}");
            let sv = sd.join("server.vol");
            std::fs::write(&sv, brick_graph(&name, &b, &[])).unwrap();
            let s = Brickd::start(&sd, &sv, &[]);
            client.push_str(&client_volfile(&name, s.port, &[("ping-timeout", "5")]));
            client.push('\n');
            subs.push(format!("{name}-client"));
            servers.push(s);
            bricks.push(b);
        }
        client.push_str(&format!(
            "volume {tag}\n    type cluster/distribute\n    subvolumes {}\nend-volume\n",
            subs.join(" ")
        ));
        let cvf = dir.path().join("client.vol");
        std::fs::write(&cvf, client).unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let m = mount_volfile(
            &cvf,
            &mnt,
            &dir.path().join("mount.log"),
            &["--attr-timeout", "0", "--entry-timeout", "0"],
        );
        NetDist {
            m,
            servers,
            bricks,
            mnt,
            _dir: dir,
        }
    }
}

#[test]
fn three_brick_servers_and_a_missing_brick() {
    let mut v = NetDist::new("dnet", 3);
    let d = v.mnt.join("n");
    std::fs::create_dir(&d).unwrap();
    for i in 0..600 {
        write(&d.join(format!("f{i}")), format!("net {i}").as_bytes());
    }
    let view = bricks_view(&v.bricks, "n");
    for (i, b) in view.iter().enumerate() {
        let share = b.data.len() as f64 / 600.0;
        assert!((0.2..=0.47).contains(&share), "brick {i}: {share}");
    }
    // Renames across ranges and listings over the network.
    for i in 0..100 {
        std::fs::rename(d.join(format!("f{i}")), d.join(format!("moved-{i}"))).unwrap();
    }
    let (lines, _) = ls_f(&d);
    assert_eq!(lines, 602);
    assert_eq!(std::fs::read_to_string(d.join("moved-7")).unwrap(), "net 7");
    let l = layout_of(&v.bricks, "n");
    // Names never renamed, by brick.
    let kept = |b: usize| -> Vec<String> {
        view[b]
            .data
            .iter()
            .filter(|n| n[1..].parse::<u32>().is_ok_and(|i| i >= 100))
            .cloned()
            .collect()
    };
    let (on2, elsewhere) = (kept(2), kept(0));
    assert!(!on2.is_empty() && !elsewhere.is_empty());

    // Brick 2 goes away.
    v.servers[2].kill9();
    let t = Instant::now();
    loop {
        match std::fs::read_to_string(d.join(&on2[0])) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break,
            r => {
                assert!(t.elapsed() < Duration::from_secs(20), "still {r:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Files on the other bricks stay readable and writable.
    for n in elsewhere.iter().take(50) {
        let p = d.join(n);
        let old = std::fs::read_to_string(&p).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{old}!"));
    }
    // Creates land on their hashed brick or fail with ENOTCONN, never elsewhere.
    let (mut ok, mut refused) = (0, 0);
    for i in 0..90 {
        let n = format!("new-{i}");
        let h = l.subvol_for(name_hash(n.as_bytes())).unwrap();
        let r = std::fs::File::create(d.join(&n));
        if h == 2 {
            assert_eq!(
                errno_of(r),
                libc::ENOTCONN,
                "{n} hashes to the missing brick"
            );
            refused += 1;
        } else {
            r.unwrap_or_else(|e| panic!("{n} on brick {h}: {e}"));
            assert!(v.bricks[h].join("n").join(&n).exists());
            ok += 1;
        }
    }
    assert!(ok > 0 && refused > 0);
    // A name that would be on the missing brick is not said to be absent.
    assert_eq!(errno_of(std::fs::metadata(d.join(&on2[0]))), libc::ENOTCONN);

    // Back again: everything is there.
    v.servers[2].restart();
    let t = Instant::now();
    while std::fs::read_to_string(d.join(&on2[0])).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "brick 2 did not come back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (lines, _) = ls_f(&d);
    assert_eq!(lines, 602 + ok);
    v.m.alive().unwrap();
}

/// A layout writer part-way through (another node's rebalance, another client's heal)
/// holds the layout lock: a client that reads the half-written pieces (overlaps) waits
/// for it and keeps what it wrote, instead of writing an equal layout over it.
#[test]
fn a_half_written_layout_is_waited_for_not_healed_over() {
    use weft_cluster::distribute::layout_lock::lock_layout;
    use weft_cluster::distribute::INTERNAL_XDATA_KEY;
    use weft_core::{Ctx, Loc, XattrMap, Xdata};
    let d = scratch("dist-layout-lock");
    let bricks: Vec<PathBuf> = (0..2).map(|i| d.path().join(format!("b{i}"))).collect();
    let mut text = String::new();
    for (i, b) in bricks.iter().enumerate() {
        std::fs::create_dir(b).unwrap();
        text.push_str(&format!(
            "volume v-posix{i}\n    type storage/posix\n    option directory {}\nend-volume\n\n\
             volume v-locks{i}\n    type features/locks\n    subvolumes v-posix{i}\nend-volume\n\n",
            b.display()
        ));
    }
    text.push_str(
        "volume v\n    type cluster/distribute\n    subvolumes v-locks0 v-locks1\nend-volume\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut reg = weft_xlators::registry();
        weft_cluster::register(&mut reg);
        let vol = std::sync::Arc::new(
            weft_client::Volume::from_volfile(&text, reg, weft_client::OpenOptions::default())
                .await
                .unwrap(),
        );
        let dir = vol.mkdir("/d", 0o755).await.unwrap().gfid;
        let old = layout_of(&bricks, "d");
        let subs = vol.top().children().to_vec();
        // The other writer: holds the lock, has written its new layout's piece on the
        // second brick only.
        let lock = lock_layout(&subs[0], dir).await.unwrap();
        // Equal ranges the other way round from the directory's.
        let new = (0..2)
            .map(|r| Layout::equal(&[0, 1], r, old.gen.wrapping_add(1), false))
            .find(|l| l.ranges != old.ranges)
            .unwrap();
        let write = |i: usize| {
            let mut attrs = XattrMap::new();
            attrs.insert(LAYOUT_XATTR.to_string(), new.piece(i).encode());
            let mut xd = Xdata::new();
            xd.set(INTERNAL_XDATA_KEY, Vec::new());
            let sub = subs[i].clone();
            async move {
                sub.setxattr(&Ctx::internal(), &Loc::inode(dir), &attrs, 0, xd)
                    .await
                    .unwrap();
            }
        };
        write(1).await;
        let looking = {
            let vol = vol.clone();
            tokio::spawn(async move { vol.lookup("/d").await.map(|(_, ia)| ia.gfid) })
        };
        // The lookup found the overlaps and waits for the lock (the brick shows it).
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                !looking.is_finished(),
                "a lookup healed the half-written layout instead of waiting for its writer"
            );
            let dump = subs[0].dump();
            if dump.contains("weft.dht.layout") && dump.contains("waiting") {
                break;
            }
            assert!(
                Instant::now() < until,
                "no lookup waits for the lock:\n{dump}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let piece0 = getxattr(&bricks[0].join("d"), LAYOUT_XATTR).unwrap();
        assert_eq!(
            Piece::decode(&piece0).unwrap().gen,
            old.gen,
            "brick 0's piece was rewritten"
        );
        write(0).await;
        lock.unlock().await;
        assert_eq!(looking.await.unwrap().unwrap(), dir);
        let got = layout_of(&bricks, "d");
        assert_eq!(got, new, "the writer's layout was replaced");
    });
}
