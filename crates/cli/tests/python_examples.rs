//! The example Python translators in `examples/python`, each on a real mount, each changing
//! the mounted filesystem's behaviour as it promises.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn audit_logs_every_change_with_who_and_outcome() {
    let logdir = scratch("audit-log");
    let log = logdir.path().join("audit.log");
    let vol = Volume::python(
        "audit",
        &python_examples(),
        "audit",
        "Audit",
        &format!("log={}", log.display()),
    );
    let _m = vol.mount();
    let m = &vol.mnt;
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::write(m.join("d/f"), b"hello").unwrap();
    std::fs::set_permissions(m.join("d/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(m.join("d/f"), m.join("d/g")).unwrap();
    std::fs::write(m.join("d/keep"), b"x").unwrap();
    assert_eq!(errno_of(std::fs::remove_dir(m.join("d"))), libc::ENOTEMPTY);
    std::fs::remove_file(m.join("d/g")).unwrap();
    let before = std::fs::read_to_string(&log).unwrap();
    // Reads and stats are not changes: nothing is logged for them.
    assert_eq!(std::fs::read(m.join("d/keep")).unwrap(), b"x");
    let _ = std::fs::metadata(m.join("d/keep")).unwrap();
    let after = std::fs::read_to_string(&log).unwrap();
    assert_eq!(before, after, "reads were logged");

    let me = format!("uid={} gid={}", unsafe { libc::geteuid() }, unsafe {
        libc::getegid()
    });
    for want in [
        "mkdir /d ok",
        "create /d/f ok",
        "write[0+5] /d/f ok",
        "setattr[chmod=600] /d/f ok",
        "rename->/d/g /d/f ok",
        "rmdir /d ENOTEMPTY",
        "unlink /d/g ok",
    ] {
        let line = after
            .lines()
            .find(|l| l.ends_with(want))
            .unwrap_or_else(|| panic!("no {want:?} in the audit log:\n{after}"));
        assert!(line.contains(&me) && line.contains(" pid="), "{line}");
        assert!(
            line.starts_with("20") && line.contains('T'),
            "no timestamp: {line}"
        );
    }
}

#[test]
fn negative_lookup_cache_answers_repeated_misses() {
    let vol = Volume::python(
        "negcache",
        &python_examples(),
        "negcache",
        "NegativeCache",
        "ttl=60",
    );
    let _m = vol.mount();
    let m = &vol.mnt;
    assert_eq!(errno_of(std::fs::metadata(m.join("ghost"))), libc::ENOENT);
    // Put the name on the brick behind the volume's back: the cache still says ENOENT,
    // which shows the second lookup never went down the graph.
    std::fs::write(vol.brick.join("ghost"), b"boo").unwrap();
    assert_eq!(errno_of(std::fs::metadata(m.join("ghost"))), libc::ENOENT);
    assert_eq!(errno_of(std::fs::metadata(m.join("ghost"))), libc::ENOENT);
    let stats = String::from_utf8(getxattr(m, "user.weft.negcache").unwrap()).unwrap();
    assert!(stats.starts_with("hits=2 misses=1"), "{stats}");
    // Creating a cached name through the volume forgets it.
    assert_eq!(errno_of(std::fs::metadata(m.join("new"))), libc::ENOENT);
    std::fs::write(m.join("new"), b"here").unwrap();
    assert_eq!(std::fs::read(m.join("new")).unwrap(), b"here");
    assert_eq!(errno_of(std::fs::metadata(m.join("nd"))), libc::ENOENT);
    std::fs::create_dir(m.join("nd")).unwrap();
    assert!(std::fs::metadata(m.join("nd")).unwrap().is_dir());
}

#[test]
fn readonly_prefix_refuses_changes_with_erofs() {
    let vol = Volume::python(
        "readonly",
        &python_examples(),
        "readonly",
        "ReadOnlyPrefix",
        "prefix=/ro",
    );
    std::fs::create_dir(vol.brick.join("ro")).unwrap();
    std::fs::write(vol.brick.join("ro/file"), b"frozen").unwrap();
    let _m = vol.mount();
    let m = &vol.mnt;
    let ro = m.join("ro");
    assert_eq!(std::fs::read(ro.join("file")).unwrap(), b"frozen");
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 1);
    let erofs = libc::EROFS;
    assert_eq!(errno_of(std::fs::write(ro.join("file"), b"x")), erofs);
    assert_eq!(
        errno_of(
            std::fs::OpenOptions::new()
                .append(true)
                .open(ro.join("file"))
        ),
        erofs
    );
    assert_eq!(errno_of(std::fs::write(ro.join("new"), b"x")), erofs);
    assert_eq!(errno_of(std::fs::create_dir(ro.join("sub"))), erofs);
    assert_eq!(errno_of(std::fs::remove_file(ro.join("file"))), erofs);
    assert_eq!(
        errno_of(std::fs::rename(ro.join("file"), m.join("out"))),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::set_permissions(
            ro.join("file"),
            std::fs::Permissions::from_mode(0o600)
        )),
        erofs
    );
    assert_eq!(errno_of(std::fs::remove_dir(&ro)), erofs);
    assert_eq!(std::fs::read(vol.brick.join("ro/file")).unwrap(), b"frozen");
    // Outside the prefix (even a name that merely starts the same) all is writable.
    std::fs::create_dir(m.join("rw")).unwrap();
    std::fs::write(m.join("rw/f"), b"ok").unwrap();
    std::fs::write(m.join("rox"), b"ok").unwrap();
    std::fs::rename(m.join("rox"), m.join("rw/g")).unwrap();
    assert_eq!(std::fs::read(m.join("rw/g")).unwrap(), b"ok");
}

#[test]
fn sha256_xattr_is_computed_from_the_content() {
    let vol = Volume::python("sha", &python_examples(), "sha256", "Sha256Xattr", "");
    let _m = vol.mount();
    let m = &vol.mnt;
    // 9 MiB and a bit: several read pieces, a short last one.
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 123)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(m.join("big"), &big).unwrap();
    std::fs::write(m.join("small"), b"hello\n").unwrap();
    for name in ["big", "small"] {
        let out = std::process::Command::new("sha256sum")
            .arg(vol.brick.join(name))
            .output()
            .unwrap();
        let want = String::from_utf8_lossy(&out.stdout)[..64].to_string();
        let got = getxattr(&m.join(name), "user.weft.sha256").unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), want, "{name}");
    }
    // Changes show at once: it is computed on every read of the xattr.
    std::fs::write(m.join("small"), b"changed\n").unwrap();
    // sha256("changed\n"), fixed here so a stale, cached or wrong digest fails.
    let got = getxattr(&m.join("small"), "user.weft.sha256").unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "7f8b1dfc466b6249f06cbe55c9174df2578e7754da793fded244ef5cba2a38f1"
    );
    // Directories have none; other xattrs pass through; it cannot be set.
    std::fs::create_dir(m.join("dir")).unwrap();
    assert_eq!(
        getxattr(&m.join("dir"), "user.weft.sha256"),
        Err(libc::ENODATA)
    );
    assert_eq!(getxattr(&m.join("small"), "user.other"), Err(libc::ENODATA));
    let st = std::process::Command::new("setfattr")
        .args(["-n", "user.weft.sha256", "-v", "forged"])
        .arg(m.join("small"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success());
}
