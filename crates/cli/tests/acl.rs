//! POSIX ACLs on a network volume are enforced as ext4 enforces them, through either of two
//! mounts: deny and allow entries, the mask in the mode's group bits, default ACLs
//! inherited by new files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

/// Runs `argv` as user nobody (uid/gid 65534, no supplementary groups).
fn as_nobody(argv: &[&str]) -> Output {
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(argv))
}

fn nobody_reads(p: &Path) -> bool {
    as_nobody(&["cat", p.to_str().unwrap()]).status.success()
}

fn nobody_appends(p: &Path) -> bool {
    as_nobody(&["sh", "-c", &format!("echo more >> '{}'", p.display())])
        .status
        .success()
}

fn setfacl(args: &[&str], p: &Path) {
    let o = run(Command::new("setfacl").args(args).arg(p));
    assert!(
        o.status.success(),
        "setfacl {args:?} {}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn getfacl(p: &Path) -> String {
    let o = run(Command::new("getfacl").args(["-cp"]).arg(p));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn acls_are_enforced_on_both_mounts() {
    let v = NetVolume::new("acl", 2, false);
    let (a, b) = (v.mnt(0).to_path_buf(), v.mnt(1).to_path_buf());
    let brick = v.brick.clone();

    // A deny entry for a user on a world-readable file.
    let f = a.join("denied");
    std::fs::write(&f, b"secret\n").unwrap();
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o644)).unwrap();
    assert!(nobody_reads(&f), "nobody reads a 0644 file before the ACL");
    setfacl(&["-m", "u:nobody:---"], &f);
    assert!(getfacl(&f).contains("user:nobody:---"), "{}", getfacl(&f));
    assert!(!nobody_reads(&f), "a deny entry did not deny (mount a)");

    // An allow entry on a 0600 file owned by root.
    let g = a.join("allowed");
    std::fs::write(&g, b"shared\n").unwrap();
    std::fs::set_permissions(&g, PermissionsExt::from_mode(0o600)).unwrap();
    assert!(!nobody_reads(&g));
    setfacl(&["-m", "u:nobody:rw"], &g);
    assert!(nobody_reads(&g), "an allow entry did not allow (mount a)");
    assert!(
        nobody_appends(&g),
        "an rw entry did not allow writing (mount a)"
    );
    // The mask shows in the group bits, as ls -l shows it.
    assert_eq!(mode(&g) & 0o070, 0o060, "mode {:o}", mode(&g));
    setfacl(&["-m", "m::r"], &g);
    assert_eq!(mode(&g) & 0o070, 0o040, "mode {:o}", mode(&g));
    assert!(!nobody_appends(&g), "the mask did not limit the named user");
    assert!(nobody_reads(&g));

    // A default ACL on a directory is inherited by what is created in it.
    let d = a.join("team");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, PermissionsExt::from_mode(0o755)).unwrap();
    setfacl(&["-d", "-m", "u:nobody:rwx"], &d);
    let newf = d.join("new");
    std::fs::write(&newf, b"x\n").unwrap();
    let acl = getfacl(&newf);
    assert!(
        acl.contains("user:nobody:rwx") && acl.contains("mask::rw-"),
        "not inherited: {acl}\nbrick dir: {}\nbrick file: {}",
        getfacl(&brick.join("team")),
        getfacl(&brick.join("team/new"))
    );
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let acl = getfacl(&sub);
    assert!(
        acl.contains("user:nobody:rwx") && acl.contains("default:user:nobody:rwx"),
        "not inherited by a subdirectory: {acl}"
    );
    assert!(nobody_appends(&newf), "inherited entry not enforced");

    // The same, seen through the second mount once its attribute cache has expired.
    std::thread::sleep(Duration::from_millis(1300));
    let (fb, gb, newb) = (b.join("denied"), b.join("allowed"), b.join("team/new"));
    assert!(getfacl(&fb).contains("user:nobody:---"));
    assert!(!nobody_reads(&fb), "a deny entry did not deny (mount b)");
    assert!(nobody_reads(&gb), "an allow entry did not allow (mount b)");
    assert!(!nobody_appends(&gb), "the mask did not limit (mount b)");
    assert_eq!(mode(&gb) & 0o070, 0o040);
    assert!(getfacl(&newb).contains("user:nobody:rwx"));
    assert!(
        nobody_appends(&newb),
        "inherited entry not enforced (mount b)"
    );

    // Removing the ACL restores plain mode-bit checks everywhere.
    setfacl(&["-b"], &fb);
    std::thread::sleep(Duration::from_millis(1300));
    assert!(nobody_reads(&f), "a removed ACL still denies (mount a)");
}

/// Mount B's listings send the entries its kernel already holds without a lookup, so the
/// kernel keeps what it caches on them (their ACLs); that never hides mount A's changes:
/// right after them (no waiting for a timeout), a listing on B shows a chmod, a new size
/// and a file replaced by a rename, and B enforces an ACL set on A.
#[test]
fn listings_keep_cached_acls_and_show_the_other_mounts_changes() {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    let two = TwoMounts::caching("acl-listing", true);
    let (a, b) = (two.a.mnt.clone(), two.b.mnt.clone());
    std::fs::create_dir(a.join("d")).unwrap();
    for i in 0..20 {
        let p = a.join(format!("d/f{i}"));
        std::fs::write(&p, b"x\n").unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
    }
    // What `ls -l` does on B: list, stat, and ask each file's ACL.
    let list = |dir: &Path| -> HashMap<String, (u32, u64, u64)> {
        let mut out = HashMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let _ = getfacl(&e.path());
            let name = e.file_name().to_string_lossy().into_owned();
            out.insert(name, (m.mode() & 0o7777, m.len(), m.ino()));
        }
        out
    };
    for _ in 0..3 {
        let l = list(&b.join("d"));
        assert_eq!(l.len(), 20, "{l:?}");
        assert!(nobody_reads(&b.join("d/f3")));
    }
    // Changes on A.
    setfacl(&["-m", "u:nobody:---"], &a.join("d/f3"));
    std::fs::set_permissions(a.join("d/f4"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(a.join("d/f5"), b"longer content\n").unwrap();
    std::fs::write(a.join("d/new"), b"replacement\n").unwrap();
    std::fs::rename(a.join("d/new"), a.join("d/f6")).unwrap();
    let f6 = std::fs::metadata(a.join("d/f6")).unwrap().ino();
    // B at once, through a listing.
    let l = list(&b.join("d"));
    assert_eq!(
        l["f4"].0,
        0o600,
        "mount B lists f4's old mode: {l:?}\n{}",
        two.logs()
    );
    assert_eq!(l["f5"].1, 15, "mount B lists f5's old size: {l:?}");
    assert_eq!(l["f6"].2, f6, "mount B lists the replaced f6: {l:?}");
    assert_eq!(std::fs::read(b.join("d/f6")).unwrap(), b"replacement\n");
    let acl = getfacl(&b.join("d/f3"));
    assert!(acl.contains("user:nobody:---"), "mount B: {acl}");
    assert!(
        !nobody_reads(&b.join("d/f3")),
        "mount B still grants what an ACL set on mount A denies"
    );
}
