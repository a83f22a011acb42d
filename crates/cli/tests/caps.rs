//! File capabilities behave as on ext4 although the mount remembers for a moment that a
//! file has none (the kernel asks before every write): set through the mount, they are
//! seen at once, and a write by an unprivileged user removes them.

mod common;

use common::*;

const SCRIPT: &str = r#"
import os, struct, subprocess, sys
d = sys.argv[1]
p = f"{d}/prog"
with open(p, "wb") as f:
    f.write(b"x" * 100)
os.chmod(p, 0o666)
# The kernel looks for capabilities before this write: none, remembered by the mount.
with open(p, "r+b") as f:
    f.write(b"y")
caps = struct.pack("<IIIII", 0x02000000, 1 << 13, 0, 0, 0)  # VFS_CAP_REVISION_2, CAP_NET_RAW
os.setxattr(p, "security.capability", caps)
assert os.getxattr(p, "security.capability") == caps, "not seen right after set"
# A write by uid 65534 drops them, as on ext4.
r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    "sh", "-c", f"printf z >> '{p}'"])
assert r.returncode == 0
try:
    os.getxattr(p, "security.capability")
    print("kept")
except OSError:
    print("dropped")
"#;

fn run(dir: &std::path::Path) -> String {
    python_ok(SCRIPT, &[dir.as_os_str()])
}

#[test]
fn capabilities_are_seen_and_dropped_as_on_ext4() {
    let local = scratch("caps-local");
    let want = run(local.path());
    assert_eq!(want, "dropped", "ext4 itself");
    let vol = Volume::new("caps");
    let _m = vol.mount();
    assert_eq!(run(&vol.mnt), want);
}
