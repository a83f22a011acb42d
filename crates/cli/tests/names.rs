//! Any name a local filesystem takes works on a network volume: Latin-1, invalid UTF-8 and
//! every byte but `/` and NUL, created, listed, renamed, locked and removed through a real
//! mount, without disturbing the connection.

mod common;

use std::process::Command;

use common::*;

const SCRIPT: &str = r#"
import fcntl, os, sys
d = os.fsencode(sys.argv[1])
every = bytes(b for b in range(1, 256) if b != ord("/"))
names = [b"caf\xe9", b"\xff\xfe\xfd", b"a\x01b\x7fc", every[:200], every[200:], b"-" + every[:250]]
for n in names:
    p = d + b"/" + n
    with open(p, "wb") as f:
        f.write(n)
    os.mkdir(p + b".dir")
listed = set(os.listdir(d))
for n in names:
    assert n in listed, f"{n!r} not listed"
    assert n + b".dir" in listed
    assert open(d + b"/" + n, "rb").read() == n
    fd = os.open(d + b"/" + n, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    fcntl.lockf(fd, fcntl.LOCK_UN)
    os.close(fd)
    os.rename(d + b"/" + n, d + b"/" + n[:-1] + b"\xe0")
    assert open(d + b"/" + n[:-1] + b"\xe0", "rb").read() == n
    os.symlink(n, d + b"/" + n[:100] + b".lnk")
    assert os.readlink(d + b"/" + n[:100] + b".lnk") == n
    os.unlink(d + b"/" + n[:100] + b".lnk")
    os.unlink(d + b"/" + n[:-1] + b"\xe0")
    os.rmdir(d + b"/" + n + b".dir")
assert os.listdir(d) == []
print("ok")
"#;

#[test]
fn every_byte_but_slash_and_nul_is_a_name_over_the_network() {
    let dir = scratch("names");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("server.vol");
    std::fs::write(&vf, brick_graph("nm", &brick, &[])).unwrap();
    let brickd = Brickd::start(dir.path(), &vf, &[]);
    let cvf = dir.path().join("client.vol");
    std::fs::write(&cvf, client_volfile("nm", brickd.port, &[])).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_volfile(&cvf, &mnt, &dir.path().join("m.log"), &[]);
    std::fs::create_dir(mnt.join("n")).unwrap();
    let out = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .arg(mnt.join("n"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
    // One connection for the whole run: nothing was dropped and reconnected.
    let log = brickd.log_text();
    assert_eq!(log.matches("client connected").count(), 1, "{log}");
    assert!(!log.contains("connection closed"), "{log}");
    // The names are on the brick as the same bytes.
    assert!(std::fs::read_dir(brick.join("n")).unwrap().next().is_none());
}
