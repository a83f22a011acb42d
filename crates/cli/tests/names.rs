//! Any name a local filesystem takes works on a network volume: Latin-1, invalid UTF-8 and
//! every byte but `/` and NUL, created, listed, renamed, locked and removed through a real
//! mount, without disturbing the connection.

mod common;

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
    let v = NetVolume::new("names", 1, false);
    let mnt = v.mnt(0).to_path_buf();
    let brick = v.brick.clone();
    std::fs::create_dir(mnt.join("n")).unwrap();
    assert_eq!(python_ok(SCRIPT, &[mnt.join("n").as_os_str()]), "ok");
    // One connection for the whole run: nothing was dropped and reconnected.
    let log = v.brickd.log_text();
    assert_eq!(log.matches("client connected").count(), 1, "{log}");
    assert!(!log.contains("connection closed"), "{log}");
    // The names are on the brick as the same bytes.
    assert!(std::fs::read_dir(brick.join("n")).unwrap().next().is_none());
}
