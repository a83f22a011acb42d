//! Python translators on real mounts: `ctx.path` on fd FOPs before and after `mv` of the
//! file and of its directories, the `hide.py` example hiding entries from `ls`, a statfs
//! override seen by `df` and statvfs(2), and names that are not UTF-8 passing through a
//! Python translator unchanged.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::process::Command;

use common::*;

const PROBES: &str = r#"
import os

import weft


class PathLog:
    """Writes one line per fd FOP: the FOP and ctx.path."""

    def __init__(self, init):
        self.out = open(init.config["log"], "a", buffering=1)

    def rec(self, ctx, args):
        self.out.write(f"{ctx.fop} {ctx.path} {args.fd.path}\n")
        return ctx.wind()

    readv = writev = flush = fsync = fgetxattr = fallocate = rec


class SmallDisk:
    """Answers statfs with a made-up 4000 KiB disk: 1000 blocks of 4 KiB, 600 free."""

    def __init__(self, init):
        pass

    def statfs(self, ctx, args):
        s = ctx.wind()
        s.bsize = s.frsize = 4096
        s.blocks, s.bfree, s.bavail = 1000, 600, 500
        s.files, s.ffree = 70, 30
        return s


class NameLog:
    """Passes every name FOP on, writing the bytes of each name it saw (hex of os.fsencode)."""

    def __init__(self, init):
        self.out = open(init.config["log"], "a", buffering=1)

    def rec(self, ctx, args):
        for loc in [getattr(args, k, None) for k in ("loc", "old", "new")]:
            if loc is not None and loc.name is not None:
                assert isinstance(loc.name, str)
                self.out.write(f"{ctx.fop} {os.fsencode(loc.name).hex()}\n")
        return ctx.wind()

    lookup = create = mkdir = unlink = rmdir = rename = symlink = rec

    def readdir(self, ctx, args):
        entries = ctx.wind()
        for e in entries:
            self.out.write(f"{ctx.fop}-entry {os.fsencode(e.name).hex()}\n")
        return entries

    readdirp = readdir
"#;

fn probes() -> tempfile::TempDir {
    let d = scratch("py-probes");
    std::fs::write(d.path().join("probes.py"), PROBES).unwrap();
    d
}

/// Drops the page cache of `f`, so the next read reaches the mount.
fn drop_cache(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fadvise on a descriptor we own.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
}

fn read_at(f: &std::fs::File, off: u64) -> Vec<u8> {
    drop_cache(f);
    let mut buf = vec![0u8; 5];
    let n = f.read_at(&mut buf, off).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn ctx_path_on_fd_fops_follows_mv_of_the_file_and_its_directories() {
    let logdir = scratch("path-log");
    let log = logdir.path().join("paths.log");
    let py = probes();
    let vol = Volume::python(
        "paths",
        py.path(),
        "probes",
        "PathLog",
        &format!("log={}", log.display()),
    );
    let m = vol.mount();
    let mnt = &vol.mnt;
    std::fs::create_dir(mnt.join("d")).unwrap();
    std::fs::write(mnt.join("d/f"), b"hello world").unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("d/f"))
        .unwrap();
    let mark = |what: &str| {
        use std::io::Write;
        let mut l = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(l, "-- {what}").unwrap();
    };
    mark("open");
    assert_eq!(read_at(&f, 0), b"hello");

    // mv of the directory holding the open file.
    std::fs::rename(mnt.join("d"), mnt.join("e")).unwrap();
    mark("mv d e");
    assert_eq!(read_at(&f, 6), b"world");
    f.write_at(b"HELLO", 0).unwrap();

    // mv of the file itself, then of its directory into another one.
    std::fs::rename(mnt.join("e/f"), mnt.join("e/g")).unwrap();
    std::fs::create_dir(mnt.join("x")).unwrap();
    std::fs::rename(mnt.join("e"), mnt.join("x/e2")).unwrap();
    mark("mv e/f e/g; mv e x/e2");
    assert_eq!(read_at(&f, 0), b"HELLO");
    f.sync_all().unwrap();
    drop(f);

    // A new open under the new name agrees.
    let g = std::fs::File::open(mnt.join("x/e2/g")).unwrap();
    mark("reopen");
    assert_eq!(read_at(&g, 0), b"HELLO");
    drop(g);

    let text = std::fs::read_to_string(&log).unwrap();
    let section = |from: &str| -> Vec<&str> {
        text.lines()
            .skip_while(|l| *l != format!("-- {from}"))
            .skip(1)
            .take_while(|l| !l.starts_with("-- "))
            .collect()
    };
    let opened = section("open");
    assert_eq!(opened, ["readv /d/f /d/f"], "{text}\n{}", m.log_text());
    let moved = section("mv d e");
    assert!(moved.contains(&"readv /e/f /e/f"), "{text}");
    assert!(moved.contains(&"writev /e/f /e/f"), "{text}");
    let moved2 = section("mv e/f e/g; mv e x/e2");
    for want in [
        "readv /x/e2/g /x/e2/g",
        "fsync /x/e2/g /x/e2/g",
        "flush /x/e2/g /x/e2/g",
    ] {
        assert!(moved2.contains(&want), "no {want:?}:\n{text}");
    }
    assert!(
        section("reopen").contains(&"readv /x/e2/g /x/e2/g"),
        "{text}"
    );
    // No fd FOP ever went without a path.
    assert!(!text.contains(" None"), "{text}");
}

#[test]
fn hide_example_keeps_matching_entries_out_of_listings() {
    let vol = Volume::python(
        "hide",
        &python_examples(),
        "hide",
        "HideEntries",
        "patterns=secret*,*.tmp",
    );
    std::fs::create_dir(vol.brick.join("d")).unwrap();
    for n in ["a", "secret", "secret.txt", "b.tmp", "c", "tmp.keep"] {
        std::fs::write(vol.brick.join("d").join(n), n).unwrap();
    }
    std::fs::create_dir(vol.brick.join("d/secret-dir")).unwrap();
    // A directory whose first listing batches hold nothing but hidden names.
    std::fs::create_dir(vol.brick.join("many")).unwrap();
    for i in 0..400 {
        std::fs::write(vol.brick.join(format!("many/secret-{i:04}")), b"").unwrap();
    }
    std::fs::write(vol.brick.join("many/visible"), b"v").unwrap();
    let m = vol.mount();
    let mnt = &vol.mnt;

    let mut listed: Vec<String> = std::fs::read_dir(mnt.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ["a", "c", "tmp.keep"], "{}", m.log_text());
    let ls = Command::new("ls")
        .arg("-a")
        .arg(mnt.join("d"))
        .output()
        .unwrap();
    let ls = String::from_utf8(ls.stdout).unwrap();
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        [".", "..", "a", "c", "tmp.keep"]
    );
    let many: Vec<String> = std::fs::read_dir(mnt.join("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(many, ["visible"]);
    let find = Command::new("find").arg(mnt).output().unwrap();
    let find = String::from_utf8(find.stdout).unwrap();
    assert!(!find.contains("secret") && !find.contains(".tmp"), "{find}");

    // Hidden, not gone: a hidden name still works when named.
    assert_eq!(
        std::fs::read(mnt.join("d/secret.txt")).unwrap(),
        b"secret.txt"
    );
    assert!(std::fs::metadata(mnt.join("d/secret-dir"))
        .unwrap()
        .is_dir());
    std::fs::write(mnt.join("d/new.tmp"), b"made").unwrap();
    assert_eq!(std::fs::read(mnt.join("d/new.tmp")).unwrap(), b"made");
    assert_eq!(std::fs::read_dir(mnt.join("d")).unwrap().count(), 3);
    assert!(vol.brick.join("d/new.tmp").exists());
}

#[test]
fn hide_example_strict_makes_hidden_names_unreachable() {
    let vol = Volume::python(
        "hides",
        &python_examples(),
        "hide",
        "HideEntriesStrict",
        "patterns=secret*",
    );
    std::fs::write(vol.brick.join("secret"), b"s").unwrap();
    std::fs::write(vol.brick.join("open"), b"o").unwrap();
    let _m = vol.mount();
    let mnt = &vol.mnt;
    let listed: Vec<_> = std::fs::read_dir(mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listed, ["open"]);
    assert_eq!(
        errno_of(std::fs::metadata(mnt.join("secret"))),
        libc::ENOENT
    );
    assert_eq!(errno_of(std::fs::read(mnt.join("secret"))), libc::ENOENT);
    assert_eq!(
        errno_of(std::fs::write(mnt.join("secret2"), b"x")),
        libc::EPERM
    );
    assert_eq!(
        errno_of(std::fs::create_dir(mnt.join("secretdir"))),
        libc::EPERM
    );
    assert_eq!(
        errno_of(std::fs::rename(mnt.join("open"), mnt.join("secret3"))),
        libc::EPERM
    );
    assert_eq!(std::fs::read(mnt.join("open")).unwrap(), b"o");
    assert!(!vol.brick.join("secret2").exists() && !vol.brick.join("secretdir").exists());
}

#[test]
fn hide_example_without_patterns_refuses_to_mount() {
    let vol = Volume::python("hiden", &python_examples(), "hide", "HideEntries", "");
    let out = weft_output(&["volfile", "check", "--build", vol.volfile.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set option config patterns="), "{err}");
}

#[test]
fn statfs_override_is_what_df_and_statvfs_show() {
    let py = probes();
    let vol = Volume::python("small", py.path(), "probes", "SmallDisk", "");
    let m = vol.mount();
    let c = CString::new(vol.mnt.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string and a zeroed statvfs to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(r, 0, "{}", m.log_text());
    assert_eq!(
        (
            st.f_frsize,
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree
        ),
        (4096, 1000, 600, 500, 70, 30)
    );
    let df = Command::new("df")
        .args(["-B1", "--output=size,avail"])
        .arg(&vol.mnt)
        .output()
        .unwrap();
    let df = String::from_utf8(df.stdout).unwrap();
    let nums: Vec<&str> = df.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(nums, ["4096000", "2048000"], "{df}");
}

const NAMES_SCRIPT: &str = r#"
import os, sys
d = os.fsencode(sys.argv[1])
names = [b"caf\xe9", b"\xff\xfe\xfd", bytes(b for b in range(1, 256) if b != ord("/"))[:200]]
for n in names:
    with open(d + b"/" + n, "wb") as f:
        f.write(n)
    os.mkdir(d + b"/" + n + b".dir")
listed = set(os.listdir(d))
for n in names:
    assert n in listed and n + b".dir" in listed, (n, listed)
    assert open(d + b"/" + n, "rb").read() == n
    os.rename(d + b"/" + n, d + b"/" + n[:-1] + b"\xe0")
    assert open(d + b"/" + n[:-1] + b"\xe0", "rb").read() == n
print("ok")
"#;

#[test]
fn names_that_are_not_utf8_pass_through_a_python_translator_unchanged() {
    let logdir = scratch("name-log");
    let log = logdir.path().join("names.log");
    let py = probes();
    let vol = Volume::python(
        "pynames",
        py.path(),
        "probes",
        "NameLog",
        &format!("log={}", log.display()),
    );
    let m = vol.mount();
    std::fs::create_dir(vol.mnt.join("n")).unwrap();
    let out = Command::new("/usr/bin/python3")
        .args(["-c", NAMES_SCRIPT])
        .arg(vol.mnt.join("n"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
    // The brick holds the very bytes.
    let on_brick: Vec<Vec<u8>> = std::fs::read_dir(vol.brick.join("n"))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert!(on_brick.contains(&b"caf\xe0".to_vec()), "{on_brick:x?}");
    assert!(on_brick.contains(&b"caf\xe9.dir".to_vec()), "{on_brick:x?}");
    // Python saw each name as a str whose os.fsencode is the same bytes, in every FOP.
    let text = std::fs::read_to_string(&log).unwrap();
    for want in [
        "create 636166e9",
        "mkdir 636166e92e646972",
        "rename 636166e9",
        "rename 636166e0",
        "create fffefd",
    ] {
        assert!(text.lines().any(|l| l == want), "no {want:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l == "readdirp-entry 636166e9" || l == "readdir-entry 636166e9"),
        "{text}"
    );
    assert!(
        !m.log_text().contains("failing it with EIO"),
        "{}",
        m.log_text()
    );
}
