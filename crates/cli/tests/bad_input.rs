//! Bad input to `weft mount` and `weft volfile check`: a clear message naming the problem,
//! a non-zero exit, and nothing left mounted.

mod common;

use common::*;

fn refuse(vol: &Volume, text: &str, expect: &[&str]) {
    std::fs::write(&vol.volfile, text).unwrap();
    let out = weft_output(&[
        "mount",
        "--volfile",
        vol.volfile.to_str().unwrap(),
        vol.mnt.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted:\n{text}");
    for e in expect {
        assert!(err.contains(e), "message {err:?} lacks {e:?} for:\n{text}");
    }
    assert!(!is_mounted(&vol.mnt), "left a mount behind");
    let check = weft_output(&["volfile", "check", "--build", vol.volfile.to_str().unwrap()]);
    assert!(!check.status.success());
}

#[test]
fn malformed_volfiles_are_refused_with_line_and_reason() {
    let vol = Volume::new("badvol");
    let b = vol.brick.display().to_string();
    let posix = format!("volume p\n  type storage/posix\n  option directory {b}\nend-volume\n");
    refuse(
        &vol,
        &format!("volume p\n  type storage/nosuch\n  option directory {b}\nend-volume\n"),
        &["line 2", "unknown translator type \"storage/nosuch\""],
    );
    refuse(
        &vol,
        &format!("{posix}volume t\n  type debug/trace\n  subvolumes q\nend-volume\n"),
        &["line 7", "\"q\", which is not declared"],
    );
    refuse(&vol, "volume a\n  type debug/trace\n  subvolumes b\nend-volume\nvolume b\n  type debug/trace\n  subvolumes a\nend-volume\n", &["cycle"]);
    refuse(&vol, &format!("volume p\n  type storage/posix\n  option directory {b}\n  option colour blue\nend-volume\n"), &["line 4", "unknown option \"colour\""]);
    refuse(
        &vol,
        "volume p\n  type storage/posix\n  option directory relative/path\nend-volume\n",
        &["line 3", "not an absolute path"],
    );
    refuse(&vol, &format!("{posix}volume t\n  type debug/trace\n  option log-level loud\n  subvolumes p\nend-volume\n"), &["line 7", "bad value for option \"log-level\""]);
    refuse(
        &vol,
        "volume p\n  type storage/posix\nend-volume\n",
        &["missing required option \"directory\""],
    );
    refuse(&vol, "volume p\n  type storage/posix\n", &["no end-volume"]);
    refuse(
        &vol,
        "volume p\n  kind storage/posix\nend-volume\n",
        &["line 2", "unknown keyword"],
    );
    refuse(&vol, "", &["no volumes"]);
}

#[test]
fn bad_brick_directories_are_refused() {
    let vol = Volume::new("badbrick");
    let missing = vol.dir.path().join("nope");
    refuse(
        &vol,
        &format!(
            "volume p\n  type storage/posix\n  option directory {}\nend-volume\n",
            missing.display()
        ),
        &["does not exist"],
    );
    let file = vol.dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    refuse(
        &vol,
        &format!(
            "volume p\n  type storage/posix\n  option directory {}\nend-volume\n",
            file.display()
        ),
        &["not a directory"],
    );
    // tmpfs takes no trusted.* xattrs for... it does on new kernels; /proc never does.
    refuse(
        &vol,
        "volume p\n  type storage/posix\n  option directory /proc/self\nend-volume\n",
        &["xattr"],
    );
}

#[test]
fn bad_mountpoints_are_refused() {
    let vol = Volume::new("badmnt");
    let v = vol.volfile.to_str().unwrap().to_string();
    let missing = vol.dir.path().join("nowhere");
    let out = weft_output(&["mount", "--volfile", &v, missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = weft_output(&["mount", "--volfile", &v, vol.volfile.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    let _m = vol.mount();
    let out = weft_output(&["mount", "--volfile", &v, vol.mnt.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already mounted"));
    let out = weft_output(&[
        "mount",
        "--volfile",
        &v,
        "--attr-timeout=-1",
        vol.mnt.to_str().unwrap(),
    ]);
    // `=-1` reaches Weft's validation (a separate `-1` is refused by the argument parser).
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a non-negative number"));
    let out = weft_output(&["mount", "--volfile", &v]);
    assert!(
        !out.status.success(),
        "missing mountpoint argument accepted"
    );
}

#[test]
fn help_and_version_answer() {
    let out = weft_output(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("weft "));
    for sub in [
        &["--help"][..],
        &["mount", "--help"],
        &["volfile", "check", "--help"],
        &["demo", "--help"],
        &["statedump", "--help"],
    ] {
        let out = weft_output(sub);
        assert!(out.status.success(), "{sub:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{sub:?}"
        );
    }
}

#[test]
fn brickd_refuses_bad_volfiles_and_options_clearly() {
    let dir = scratch("bad-brickd");
    let ctl = dir.path().join("ctl.sock");
    let ctl = ctl.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let cases = [
        (
            write("noserver.vol", &format!("volume p\n type storage/posix\n option directory {}\nend-volume\n", brick.display())),
            "no protocol/server volume",
        ),
        (
            write("nosub.vol", "volume s\n type protocol/server\nend-volume\n"),
            "takes 1 subvolume(s)",
        ),
        (
            write("nodir.vol", "volume p\n type storage/posix\n option directory /nonexistent/weft\nend-volume\nvolume s\n type protocol/server\n subvolumes p\nend-volume\n"),
            "does not exist",
        ),
        (
            write("auth.vol", &format!("volume p\n type storage/posix\n option directory {}\nend-volume\nvolume s\n type protocol/server\n option auth.reject 10.0.0.0/99\n subvolumes p\nend-volume\n", brick.display())),
            "auth.reject",
        ),
        (
            write("tls.vol", &format!("volume p\n type storage/posix\n option directory {}\nend-volume\nvolume s\n type protocol/server\n option transport.socket.ssl-enabled on\n subvolumes p\nend-volume\n", brick.display())),
            "requires TLS",
        ),
        ("/nonexistent/server.vol".to_string(), "cannot read"),
    ];
    for (vf, want) in cases {
        let out = weft_output(&[
            "brickd",
            "--listen",
            "127.0.0.1:0",
            "--control",
            ctl,
            "--volfile",
            &vf,
        ]);
        assert!(!out.status.success(), "{vf} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{vf}: {err}");
        assert!(
            !std::path::Path::new(ctl).exists(),
            "a refused brickd left its socket"
        );
    }
    let out = weft_output(&["brickd", "--listen", "not-an-address"]);
    assert!(!out.status.success());
    let out = weft_output(&["brickd", "status", "--control", ctl]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `weft brickd` running?"));
}
