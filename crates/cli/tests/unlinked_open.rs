//! An open file whose last name is gone still answers every fd FOP: data, attributes and
//! extended attributes (fsetxattr, fgetxattr, flistxattr, fremovexattr), locally and over
//! the network.

mod common;

use common::*;

const SCRIPT: &str = r#"
import fcntl, os, sys
d = sys.argv[1]
p = f"{d}/doomed"
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"precious data")
os.unlink(p)
os.setxattr(fd, "user.k", b"v1")
assert os.getxattr(fd, "user.k") == b"v1"
assert "user.k" in os.listxattr(fd)
os.setxattr(fd, "user.k", b"v2", os.XATTR_REPLACE)
assert os.getxattr(fd, "user.k") == b"v2"
os.removexattr(fd, "user.k")
assert "user.k" not in os.listxattr(fd)
os.fchmod(fd, 0o600)
assert os.fstat(fd).st_mode & 0o777 == 0o600
assert os.fstat(fd).st_nlink == 0
os.ftruncate(fd, 7)
assert os.pread(fd, 100, 0) == b"precious"[:7]
fcntl.lockf(fd, fcntl.LOCK_EX)
os.close(fd)
print("ok")
"#;

fn run(dir: &std::path::Path) {
    assert_eq!(python_ok(SCRIPT, &[dir.as_os_str()]), "ok");
}

#[test]
fn fd_fops_work_on_an_unlinked_open_file() {
    let local = scratch("unl-local");
    run(local.path());
    let vol = Volume::new("unlinked");
    let _m = vol.mount();
    run(&vol.mnt);
    let net = NetVolume::new("unl-net", 1, false);
    run(net.mnt(0));
}
