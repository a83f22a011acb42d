//! The brick repairs itself: a lookup recreates a missing handle and gives a copy made
//! inside the brick its own gfid; `weft brick check` reports every disagreement offline
//! and `--repair` fixes them.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;

#[test]
fn a_lookup_restores_a_removed_handle_and_separates_copies() {
    let vol = Volume::new("repair");
    let m = vol.mount();
    std::fs::write(vol.mnt.join("f"), b"data").unwrap();
    let h = handle_path(&vol.brick, &vol.brick.join("f"));
    std::fs::remove_file(&h).unwrap();
    // chmod and setxattr by the kernel's cached inode: the handle is gone, the kernel is
    // told ESTALE, looks the name up again, and the lookup makes a new handle.
    std::fs::set_permissions(
        vol.mnt.join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let st = Command::new("setfattr")
        .args(["-n", "user.k", "-v", "v"])
        .arg(vol.mnt.join("f"))
        .status()
        .unwrap();
    assert!(st.success(), "setfattr after the handle was removed");
    assert!(h.exists(), "the handle was not recreated");
    assert_eq!(std::fs::metadata(vol.mnt.join("f")).unwrap().nlink(), 1);
    // cp -a inside the brick copies the gfid xattr too.
    let st = Command::new("cp")
        .arg("-a")
        .arg(vol.brick.join("f"))
        .arg(vol.brick.join("g"))
        .status()
        .unwrap();
    assert!(st.success());
    let (fi, gi) = (
        std::fs::metadata(vol.mnt.join("f")).unwrap().ino(),
        std::fs::metadata(vol.mnt.join("g")).unwrap().ino(),
    );
    assert_ne!(fi, gi, "a copy inside the brick shares its original's gfid");
    std::fs::write(vol.mnt.join("g"), b"changed copy").unwrap();
    assert_eq!(std::fs::read(vol.mnt.join("f")).unwrap(), b"data");
    drop(m);
}

#[test]
fn brick_check_reports_and_repairs_offline() {
    let vol = Volume::new("bcheck");
    {
        let _m = vol.mount();
        std::fs::create_dir(vol.mnt.join("d")).unwrap();
        std::fs::write(vol.mnt.join("d/f"), b"1").unwrap();
        std::fs::write(vol.mnt.join("lost-handle"), b"2").unwrap();
        std::fs::write(vol.mnt.join("gone"), b"3").unwrap();
    }
    let b = &vol.brick;
    std::fs::write(b.join("by-hand"), b"placed").unwrap();
    std::fs::remove_file(handle_path(b, &b.join("lost-handle"))).unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(b.join("d/f"))
        .arg(b.join("d/copy"))
        .status()
        .unwrap()
        .success());
    let stale = handle_path(b, &b.join("gone"));
    std::fs::remove_file(b.join("gone")).unwrap();
    let check = |repair: bool| {
        let mut c = weft();
        c.args(["brick", "check"]).arg(b);
        if repair {
            c.arg("--repair");
        }
        c.output().unwrap()
    };
    let out = check(false);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success(),
        "problems found must fail the check: {text}"
    );
    assert!(text.contains("by-hand: no gfid"), "{text}");
    assert!(
        text.contains("lost-handle: gfid") && text.contains("has no handle"),
        "{text}"
    );
    assert!(
        text.contains("copy: gfid") || text.contains("f: gfid"),
        "{text}"
    );
    assert!(text.contains("a copy made inside the brick"), "{text}");
    assert!(text.contains("has no inode left"), "{text}");
    assert!(text.contains("4 problems"), "{text}");
    assert!(stale.exists(), "a check without --repair changed the brick");
    let out = check(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stale.exists(), "the stale handle is still there");
    let out = check(false);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "problems left after --repair: {text}");
    assert!(text.contains("0 problems"), "{text}");
    // And the volume serves the repaired files, each with its own identity.
    let _m = vol.mount();
    assert_eq!(std::fs::read(vol.mnt.join("by-hand")).unwrap(), b"placed");
    assert_ne!(
        std::fs::metadata(vol.mnt.join("d/f")).unwrap().ino(),
        std::fs::metadata(vol.mnt.join("d/copy")).unwrap().ino()
    );
}
