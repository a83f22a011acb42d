//! Attribute scenarios: chmod, chown, timestamps and special files.

use super::{ftype, owner, perm, setup, show, type_mode};
use crate::sys::{self, ts, Stat, SysResult};
use crate::Transcript;
use libc::{O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, UTIME_NOW, UTIME_OMIT};
use std::path::Path;

fn mode(st: &Stat) -> String {
    format!("mode={}", perm(st))
}

/// chmod/fchmod including setuid, setgid and sticky bits on files and
/// directories, chmod through a symlink and setgid directory inheritance.
pub fn scenario_chmod(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "chmod", t);
    let f = d.join("file");
    let sub = d.join("dir");
    t.res("create", &sys::write_file(&f, b"x"));
    t.res("mkdir", &sys::mkdir(&sub, 0o755));
    for m in [0o640, 0o4755, 0o2755, 0o1644, 0o7777, 0o0000, 0o644] {
        let name = format!("file_{m:04o}");
        let r = sys::chmod(&f, m).and_then(|_| sys::lstat(&f));
        t.res_with(&name, &r, mode);
    }
    for m in [0o1777, 0o2755, 0o0700, 0o3777, 0o755] {
        let name = format!("dir_{m:04o}");
        let r = sys::chmod(&sub, m).and_then(|_| sys::lstat(&sub));
        t.res_with(&name, &r, type_mode);
    }
    let r = sys::open(&f, O_RDONLY, 0).and_then(|fd| {
        sys::fchmod(&fd, 0o600)?;
        sys::fstat(&fd)
    });
    t.res_with("fchmod", &r, mode);
    t.res_with("stat_after_fchmod", &sys::stat(&f), mode);
    t.res("chmod_missing", &sys::chmod(&d.join("missing"), 0o644));
    t.res("symlink", &sys::symlink(b"file", &d.join("link")));
    t.res("chmod_via_symlink", &sys::chmod(&d.join("link"), 0o604));
    t.res_with("target_mode", &sys::lstat(&f), mode);
    t.res_with("link_itself", &sys::lstat(&d.join("link")), type_mode);

    // A setgid directory passes its group (and, to subdirs, the bit) on.
    let sg = d.join("sgid");
    let r = sys::mkdir(&sg, 0o755)
        .and_then(|_| sys::chown(&sg, None, Some(5678)))
        .and_then(|_| sys::chmod(&sg, 0o2775));
    t.res("setgid_dir", &r);
    t.res("create_in_setgid", &sys::write_file(&sg.join("f"), b"f"));
    t.res_with("file_in_setgid", &sys::lstat(&sg.join("f")), owner);
    t.res("mkdir_in_setgid", &sys::mkdir(&sg.join("sub"), 0o755));
    t.res_with("dir_in_setgid", &sys::lstat(&sg.join("sub")), |st| {
        format!("{},setgid={}", owner(st), st.st_mode & libc::S_ISGID != 0)
    });
}

/// chown/fchown/lchown to 1234:5678 and back, -1 arguments, and clearing
/// of setuid/setgid bits by chown on regular files.
pub fn scenario_chown(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "chown", t);
    let f = d.join("file");
    t.res("create", &sys::write_file(&f, b"x"));
    let steps: [(&str, Option<u32>, Option<u32>); 5] = [
        ("to_1234_5678", Some(1234), Some(5678)),
        ("gid_only", None, Some(0)),
        ("uid_only", Some(0), None),
        ("neither", None, None),
        ("both_again", Some(1234), Some(5678)),
    ];
    for (name, u, g) in steps {
        let r = sys::chown(&f, u, g).and_then(|_| sys::lstat(&f));
        t.res_with(name, &r, owner);
    }
    let r = sys::open(&f, O_RDONLY, 0).and_then(|fd| {
        sys::fchown(&fd, Some(0), Some(0))?;
        sys::fstat(&fd)
    });
    t.res_with("fchown_back", &r, owner);
    t.res(
        "chown_missing",
        &sys::chown(&d.join("missing"), Some(1), Some(1)),
    );

    let l = d.join("link");
    t.res("symlink", &sys::symlink(b"file", &l));
    let r = sys::lchown(&l, Some(1234), Some(5678)).and_then(|_| sys::lstat(&l));
    t.res_with("lchown_link", &r, owner);
    t.res_with("lchown_target_untouched", &sys::lstat(&f), owner);
    let r = sys::chown(&l, Some(42), Some(43)).and_then(|_| sys::lstat(&f));
    t.res_with("chown_follows_link", &r, owner);

    let s = d.join("suid");
    let r = sys::write_file(&s, b"#!/bin/sh\n")
        .and_then(|_| sys::chmod(&s, 0o6755))
        .and_then(|_| sys::chown(&s, Some(1234), None))
        .and_then(|_| sys::lstat(&s));
    t.res_with("chown_clears_suid", &r, |st| {
        format!("{},{}", mode(st), owner(st))
    });
    let sd = d.join("sgid_dir");
    let r = sys::mkdir(&sd, 0o755)
        .and_then(|_| sys::chmod(&sd, 0o2755))
        .and_then(|_| sys::chown(&sd, Some(1234), Some(5678)))
        .and_then(|_| sys::lstat(&sd));
    t.res_with("chown_dir_keeps_sgid", &r, |st| {
        format!("{},{}", mode(st), owner(st))
    });
}

const T1: (i64, i64) = (1_600_000_000, 123_456_789);
const T2: (i64, i64) = (1_500_000_000, 987_654_321);
const T3: (i64, i64) = (1_400_000_000, 500_000_000);

fn times(st: &Stat) -> String {
    format!(
        "atime={}.{:09},mtime={}.{:09}",
        st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec
    )
}

fn mtime(st: &Stat) -> (i64, i64) {
    (st.st_mtime, st.st_mtime_nsec)
}

/// Whether `st`'s mtime is "now": within [before - 1 s, now + 1 s] (coarse
/// filesystem clocks may lag the realtime clock slightly).
fn recent(st: &Stat, before: (i64, i64)) -> bool {
    let after = sys::now();
    st.st_mtime >= before.0 - 1 && st.st_mtime <= after.0 + 1
}

/// utimensat/futimens with exact nanoseconds, UTIME_OMIT, UTIME_NOW, on
/// symlinks (AT_SYMLINK_NOFOLLOW) and mtime updates by write/truncate/create.
pub fn scenario_utimes(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "utimes", t);
    let f = d.join("file");
    t.res("create", &sys::write_file(&f, b"x"));
    let set = |p: &Path, a: (i64, i64), m: (i64, i64), fl: i32| {
        sys::utimensat(p, [ts(a.0, a.1), ts(m.0, m.1)], fl)
    };
    let r = set(&f, T1, T2, 0).and_then(|_| sys::lstat(&f));
    t.res_with("explicit_ns", &r, times);
    let r = set(&f, (0, UTIME_OMIT), T3, 0).and_then(|_| sys::lstat(&f));
    t.res_with("omit_atime", &r, times);
    let r = set(&f, (0, UTIME_OMIT), (0, UTIME_OMIT), 0).and_then(|_| sys::lstat(&f));
    t.res_with("omit_both", &r, times);
    let before = sys::now();
    let r = set(&f, (0, UTIME_OMIT), (0, UTIME_NOW), 0).and_then(|_| sys::lstat(&f));
    t.res_with("now_mtime", &r, |st| {
        format!(
            "mtime_recent={},changed={},atime_kept={}",
            recent(st, before),
            mtime(st) != T3,
            (st.st_atime, st.st_atime_nsec) == T1
        )
    });
    t.res("invalid_nsec", &set(&f, T1, (5, 1_000_000_000), 0));
    t.res("missing", &set(&d.join("missing"), T1, T2, 0));

    match sys::open(&f, O_RDWR, 0) {
        Ok(fd) => {
            let r = sys::futimens(&fd, [ts(T1.0, T1.1), ts(T1.0, T1.1)]);
            t.res_with("futimens", &r.and_then(|_| sys::fstat(&fd)), times);
            let before = sys::now();
            let r = sys::pwrite_all(&fd, b"more", 1).and_then(|_| sys::fstat(&fd));
            t.res_with("write_updates_mtime", &r, |st| {
                format!("changed={},recent={}", mtime(st) != T1, recent(st, before))
            });
            let r = sys::futimens(&fd, [ts(T1.0, T1.1), ts(T2.0, T2.1)])
                .and_then(|_| sys::ftruncate(&fd, 2))
                .and_then(|_| sys::fstat(&fd));
            t.res_with("truncate_updates_mtime", &r, |st| {
                format!("changed={},recent={}", mtime(st) != T2, recent(st, before))
            });
        }
        Err(e) => t.res("open", &Err::<(), _>(e)),
    }

    let l = d.join("link");
    t.res("symlink", &sys::symlink(b"file", &l));
    let r = set(&f, T3, T3, 0)
        .and_then(|_| set(&l, T1, T2, libc::AT_SYMLINK_NOFOLLOW))
        .and_then(|_| sys::lstat(&l));
    t.res_with("nofollow_link", &r, |st| {
        format!("mtime={}.{:09}", st.st_mtime, st.st_mtime_nsec)
    });
    t.res_with("nofollow_target_untouched", &sys::lstat(&f), times);

    let sub = d.join("sub");
    let r = sys::mkdir(&sub, 0o755)
        .and_then(|_| set(&sub, T1, T2, 0))
        .and_then(|_| sys::lstat(&sub));
    t.res_with("dir_explicit", &r, times);
    let before = sys::now();
    let r = sys::write_file(&sub.join("new"), b"n").and_then(|_| sys::lstat(&sub));
    t.res_with("create_updates_dir_mtime", &r, |st| {
        format!("changed={},recent={}", mtime(st) != T2, recent(st, before))
    });
    let r = set(&sub, T1, T2, 0)
        .and_then(|_| sys::unlink(&sub.join("new")))
        .and_then(|_| sys::lstat(&sub));
    t.res_with("unlink_updates_dir_mtime", &r, |st| {
        format!("changed={},recent={}", mtime(st) != T2, recent(st, before))
    });
}

/// mknod of FIFOs, regular files, character devices and sockets; FIFO I/O.
pub fn scenario_mknod(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "mknod", t);
    let p = |n: &str| d.join(n);
    let fifo = p("fifo");
    t.res("mknod_fifo", &sys::mknod(&fifo, libc::S_IFIFO | 0o644, 0));
    t.res_with("lstat_fifo", &sys::lstat(&fifo), type_mode);
    t.res("mkfifo_existing", &sys::mkfifo(&fifo, 0o644));
    t.res(
        "mknod_existing",
        &sys::mknod(&fifo, libc::S_IFIFO | 0o644, 0),
    );
    t.res("mkfifo_second", &sys::mkfifo(&p("fifo2"), 0o600));
    t.res_with("lstat_fifo2", &sys::lstat(&p("fifo2")), type_mode);
    t.res(
        "mknod_reg",
        &sys::mknod(&p("reg"), libc::S_IFREG | 0o600, 0),
    );
    t.res_with("lstat_reg", &sys::lstat(&p("reg")), |st| {
        format!("{},size={}", type_mode(st), st.st_size)
    });
    let dev = libc::makedev(1, 3);
    t.res(
        "mknod_chr",
        &sys::mknod(&p("chr"), libc::S_IFCHR | 0o600, dev),
    );
    t.res_with("lstat_chr", &sys::lstat(&p("chr")), |st| {
        format!(
            "{},rdev={}:{}",
            type_mode(st),
            libc::major(st.st_rdev),
            libc::minor(st.st_rdev)
        )
    });
    t.res(
        "mknod_sock",
        &sys::mknod(&p("sock"), libc::S_IFSOCK | 0o644, 0),
    );
    t.res_with("lstat_sock", &sys::lstat(&p("sock")), |st| {
        ftype(st.st_mode).to_string()
    });

    // FIFO I/O goes through the kernel pipe code on any filesystem. A FIFO connects
    // the processes of one kernel: its ends on two mounts (two clients) never meet, as
    // on NFS, so its I/O steps run on one side.
    let r = sys::open(&p("fifo2"), O_WRONLY | O_NONBLOCK, 0);
    t.res("fifo_write_no_reader", &r);
    let r = sys::one_side(|| -> SysResult<String> {
        let rd = sys::open(&fifo, O_RDONLY | O_NONBLOCK, 0)?;
        let wr = sys::open(&fifo, O_WRONLY | O_NONBLOCK, 0)?;
        sys::write(&wr, b"ping")?;
        let got = sys::read(&rd, 16)?;
        let st = sys::fstat(&rd)?;
        Ok(format!("{},type={}", show(&got), ftype(st.st_mode)))
    });
    t.res_with("fifo_io", &r, String::clone);
    let r = (|| -> SysResult<usize> {
        let rd = sys::open(&fifo, O_RDONLY | O_NONBLOCK, 0)?;
        sys::read(&rd, 16).map(|b| b.len())
    })();
    t.res_with("fifo_read_no_writer", &r, |n| format!("n={n}"));
    t.res_with("listing", &sys::list_names(&d), |n| n.join(","));
}

fn ctime(st: &Stat) -> (i64, i64) {
    (st.st_ctime, st.st_ctime_nsec)
}

/// Runs `op` between two lstats of `of` (20 ms apart from the first, longer than a
/// coarse clock tick) and records `changed=<ctime moved>` or the error.
fn ctime_step(t: &mut Transcript, name: &str, of: &Path, op: impl FnOnce() -> SysResult<()>) {
    ctime_moved(t, name, of, of, op)
}

/// [`ctime_step`] for an operation after which the inode has another name.
fn ctime_moved(
    t: &mut Transcript,
    name: &str,
    before: &Path,
    after: &Path,
    op: impl FnOnce() -> SysResult<()>,
) {
    let r = (|| -> SysResult<bool> {
        let was = ctime(&sys::lstat(before)?);
        std::thread::sleep(std::time::Duration::from_millis(20));
        op()?;
        Ok(ctime(&sys::lstat(after)?) != was)
    })();
    t.res_with(name, &r, |c| format!("changed={c}"));
}

/// ctime moves where POSIX says it does (write, truncate, chmod, chown, utimes, link,
/// unlink of another name, rename, set/remove of an xattr; a directory's on entries
/// added and removed) and not on reads, stats, xattr reads and listings.
pub fn scenario_ctime(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "ctime", t);
    let f = d.join("file");
    t.res("create", &sys::write_file(&f, b"ctime"));
    let fd = match sys::open(&f, O_RDWR, 0) {
        Ok(fd) => fd,
        Err(e) => {
            t.res("open", &Err::<(), _>(e));
            return;
        }
    };
    ctime_step(t, "write", &f, || sys::pwrite_all(&fd, b"C", 0));
    ctime_step(t, "ftruncate", &f, || sys::ftruncate(&fd, 3));
    ctime_step(t, "truncate", &f, || sys::truncate(&f, 2));
    ctime_step(t, "chmod", &f, || sys::chmod(&f, 0o640));
    ctime_step(t, "chown", &f, || sys::chown(&f, Some(1234), None));
    ctime_step(t, "utimes", &f, || {
        sys::utimensat(&f, [ts(T1.0, T1.1), ts(T2.0, T2.1)], 0)
    });
    ctime_step(t, "link", &f, || sys::link(&f, &d.join("second")));
    ctime_step(t, "unlink_other_name", &f, || {
        sys::unlink(&d.join("second"))
    });
    ctime_step(t, "setxattr", &f, || {
        sys::setxattr(sys::X::Path(&f), "user.c", b"c", 0)
    });
    ctime_step(t, "removexattr", &f, || sys::removexattr(&f, "user.c"));
    let g = d.join("moved");
    ctime_moved(t, "rename", &f, &g, || sys::rename(&f, &g));
    ctime_step(t, "read", &g, || sys::pread(&fd, 16, 0).map(drop));
    ctime_step(t, "stat", &g, || sys::stat(&g).map(drop));
    ctime_step(t, "getxattr_missing", &g, || {
        match sys::getxattr(sys::X::Path(&g), "user.none", 16) {
            Err(nix::errno::Errno::ENODATA) => Ok(()),
            r => r.map(drop),
        }
    });
    ctime_step(t, "listxattr", &g, || sys::listxattr(&g, 1024).map(drop));
    ctime_step(t, "dir_create_entry", &d, || {
        sys::write_file(&d.join("new"), b"n")
    });
    ctime_step(t, "dir_remove_entry", &d, || sys::unlink(&d.join("new")));
    ctime_step(t, "dir_listing", &d, || sys::list_names(&d).map(drop));
    t.res("close", &fd.close());
}
