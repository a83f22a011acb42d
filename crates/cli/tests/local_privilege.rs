//! Local privilege (issue 12): brickd's control socket, pid file and the folders it makes
//! have fixed modes whatever the umask it starts with (the socket is 0600 from the moment
//! it appears), and a user other than root (or a member of `--control-group`) cannot use
//! the control socket, even when its mode would let them connect.

mod common;
mod hostile;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{brick_graph, scratch};
use hostile::*;

/// Watches `p` until it exists and then for a moment longer: every mode it had.
fn watch_modes(p: &Path) -> (Arc<AtomicBool>, std::thread::JoinHandle<BTreeSet<u32>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (p, st) = (p.to_path_buf(), stop.clone());
    let h = std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        while !st.load(Ordering::Relaxed) {
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                assert!(m.file_type().is_socket(), "{} is not a socket", p.display());
                seen.insert(m.mode() & 0o7777);
            }
        }
        seen
    });
    (stop, h)
}

#[test]
fn socket_pid_file_and_folders_have_fixed_modes_whatever_the_umask() {
    for umask in [0o000, 0o077] {
        let dir = scratch("priv-modes");
        let run = dir.path().join("run");
        let weft = run.join("weft");
        let control = weft.join("brickd.sock");
        let pid = weft.join("brickd.pid");
        let (stop, watcher) = watch_modes(&control);
        let brick = dir.path().join("brick");
        std::fs::create_dir(&brick).unwrap();
        let d = Daemon::start_in(
            dir,
            brick,
            Spawn {
                umask: Some(umask),
                control: Some(control.clone()),
                pid_file: Some(pid.clone()),
                ..Spawn::default()
            },
        );
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        assert_eq!(
            seen,
            BTreeSet::from([0o600]),
            "umask {umask:o}: the control socket was seen with modes {seen:?} (decimal)"
        );
        assert_eq!(mode_of(&control), 0o600);
        assert_eq!(mode_of(&run), 0o755, "umask {umask:o}");
        assert_eq!(mode_of(&weft), 0o755, "umask {umask:o}");
        assert_eq!(mode_of(&pid), 0o644, "umask {umask:o}");
        assert_eq!(
            std::fs::read_to_string(&pid).unwrap().trim(),
            d.pid().to_string()
        );
        let mut names: Vec<_> = std::fs::read_dir(&weft)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["brickd.pid", "brickd.sock"], "leftovers");
        assert_eq!(std::fs::metadata(&weft).unwrap().uid(), 0);
    }

    // A folder an older brickd left world-writable is set back to 0755.
    let dir = scratch("priv-0777");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let d = Daemon::start_in(
        dir,
        brick,
        Spawn {
            control: Some(run.join("brickd.sock")),
            ..Spawn::default()
        },
    );
    assert_eq!(mode_of(&run), 0o755);
    assert!(d.log_text().contains("(writable by others): set to 755"));
}

/// Runs `weft brickd SUB --control SOCK ARGS` as uid 65534 with gid `gid` and the
/// supplementary groups `groups`.
fn as_nobody(gid: u32, groups: &[u32], sock: &Path, sub: &str, args: &[&Path]) -> Output {
    let mut c = Command::new("setpriv");
    c.arg("--reuid=65534").arg(format!("--regid={gid}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        let g: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        c.arg(format!("--groups={}", g.join(",")));
    }
    c.arg(env!("CARGO_BIN_EXE_weft"))
        .args(["brickd", sub, "--control"])
        .arg(sock)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

fn root_ctl(sock: &Path, sub: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["brickd", sub, "--control"])
        .arg(sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A server volfile for brick `evil` in `dir`, readable by anyone.
fn evil_volfile(dir: &Path) -> std::path::PathBuf {
    let brick = dir.join("evil-brick");
    std::fs::create_dir_all(&brick).unwrap();
    let vf = dir.join("evil.vol");
    std::fs::write(&vf, brick_graph("evil", &brick, &[])).unwrap();
    vf
}

#[test]
fn only_root_or_the_control_group_may_use_the_control_socket() {
    let d = Daemon::start("priv-ctl", Spawn::default());
    let vf = evil_volfile(d.dir.path());

    // The socket is 0600: nobody cannot even connect.
    let out = as_nobody(65534, &[], &d.control, "attach", &[&vf]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Permission denied"), "{err}");

    // Even when its mode lets them connect (a socket made by an older brickd, a chmod by
    // hand), the server checks who is on the other end.
    std::fs::set_permissions(&d.control, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(65534, &[], &d.control, "attach", &[&vf]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("permission denied: uid 65534") && err.contains("only root may"),
        "{err}"
    );
    assert!(d.wait_log(
        "control socket: refused a connection",
        Duration::from_secs(5)
    ));
    let status = root_ctl(&d.control, "status");
    assert!(!status.contains("evil"), "{status}");
    assert!(status.contains("b clients="), "{status}");

    // With --control-group 4242: mode 0660, group 4242; members (primary or supplementary
    // group) may use it, others may not.
    let d = Daemon::start(
        "priv-grp",
        Spawn {
            args: vec!["--control-group".into(), "4242".into()],
            ..Spawn::default()
        },
    );
    let vf = evil_volfile(d.dir.path());
    assert_eq!(mode_of(&d.control), 0o660);
    assert_eq!(std::fs::metadata(&d.control).unwrap().gid(), 4242);
    let out = as_nobody(4242, &[], &d.control, "status", &[]);
    assert!(out.status.success(), "{out:?}");
    let out = as_nobody(65534, &[4242], &d.control, "attach", &[&vf]);
    assert!(out.status.success(), "{out:?}");
    assert!(root_ctl(&d.control, "status").contains("evil clients="));
    let out = as_nobody(65534, &[], &d.control, "status", &[]);
    assert!(!out.status.success());
    std::fs::set_permissions(&d.control, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(65534, &[], &d.control, "detach", &[Path::new("evil")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("only root or members of group 4242 may"),
        "{err}"
    );
    assert!(root_ctl(&d.control, "status").contains("evil clients="));
}

#[test]
fn an_unknown_control_group_is_refused_at_start() {
    let dir = scratch("priv-badgrp");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["brickd", "--listen", "127.0.0.1:0", "--control"])
        .arg(dir.path().join("s.sock"))
        .args(["--control-group", "no-such-group-here"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group named \"no-such-group-here\""));
}
