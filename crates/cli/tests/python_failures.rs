//! Python translators that go wrong: an exception, a wrong return type or an errno fails
//! that one FOP (EIO, logged with the translator's name) and the mount keeps serving; a
//! method that spins does not stall FOPs that bypass Python; a syntax error, a missing
//! class or a failing constructor stops `weft mount` with a clear message and no mount.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const FAULTY: &str = r#"
import errno
import time
import weft


class Faulty:
    def __init__(self, init):
        self.spin = float(init.config.get("spin", "3"))

    def lookup(self, ctx, args):
        name = args.loc.name or ""
        if name.startswith("boom"):
            raise RuntimeError("boom on purpose")
        if name.startswith("wrong"):
            return "not an iatt"
        if name.startswith("denied"):
            raise weft.Error(errno.EACCES)
        if name.startswith("badwind"):
            args.loc = 42
            return ctx.wind()
        if name.startswith("slow"):
            end = time.monotonic() + self.spin
            while time.monotonic() < end:
                pass  # spins, holding the GIL
            raise weft.Error(errno.ENOENT)
        return ctx.wind()

    def getxattr(self, ctx, args):
        if args.name == "user.count":
            return {"user.count": 7}  # an int where bytes belong
        return ctx.wind()
"#;

fn module_dir(tag: &str, file: &str, text: &str) -> tempfile::TempDir {
    let d = scratch(tag);
    std::fs::write(d.path().join(file), text).unwrap();
    d
}

#[test]
fn exceptions_and_wrong_types_fail_one_fop_and_the_mount_keeps_serving() {
    let py = module_dir("faulty-py", "faulty.py", FAULTY);
    let vol = Volume::python("faulty", py.path(), "faulty", "Faulty", "");
    let mut g = vol.mount();
    let m = &vol.mnt;
    std::fs::write(m.join("file"), b"still here").unwrap();

    assert_eq!(errno_of(std::fs::metadata(m.join("boom"))), libc::EIO);
    assert_eq!(errno_of(std::fs::metadata(m.join("wrong"))), libc::EIO);
    assert_eq!(errno_of(std::fs::metadata(m.join("badwind"))), libc::EIO);
    assert_eq!(errno_of(std::fs::metadata(m.join("denied"))), libc::EACCES);
    assert_eq!(getxattr(&m.join("file"), "user.count"), Err(libc::EIO));

    // Still serving, through Python and around it.
    assert_eq!(std::fs::read(m.join("file")).unwrap(), b"still here");
    std::fs::write(m.join("file2"), b"more").unwrap();
    assert_eq!(std::fs::read(m.join("file2")).unwrap(), b"more");
    // The mount process still runs (not a zombie) and the kernel still shows the mount.
    g.alive().unwrap();

    let log = g.log_text();
    for want in [
        "python translator faulty-py: lookup raised an exception; failing it with EIO",
        "RuntimeError: boom on purpose",
        "faulty.py\", line 14, in lookup",
        "python translator faulty-py: lookup returned a str, expected weft.Iatt; failing it with EIO",
        "python translator faulty-py: getxattr returned a dict, expected dict[str, bytes]",
        "TypeError",
    ] {
        assert!(log.contains(want), "log lacks {want:?}:\n{log}");
    }
    let dump = String::from_utf8_lossy(&weft_output(&["statedump", m.to_str().unwrap()]).stdout)
        .to_string();
    assert!(
        dump.contains("[faulty-py]") && dump.contains("overridden = lookup getxattr"),
        "{dump}"
    );
    assert_eq!(g.stop_with(libc::SIGTERM).code(), Some(0));
}

#[test]
fn a_spinning_method_does_not_stall_fops_that_bypass_python() {
    let py = module_dir("spin-py", "faulty.py", FAULTY);
    let vol = Volume::python("spin", py.path(), "faulty", "Faulty", "spin=5");
    let _g = vol.mount();
    let m = vol.mnt.clone();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.join("busy"))
        .unwrap();
    let slow = std::thread::spawn(move || {
        let t = Instant::now();
        let r = errno_of(std::fs::metadata(m.join("slow")));
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    // Writes, fsyncs and reads on an open file never enter Python. Had they waited for the
    // GIL they would take the whole 5 s spin.
    let t = Instant::now();
    for i in 0..20u64 {
        f.write_all_at(&i.to_be_bytes(), i * 8).unwrap();
        f.sync_data().unwrap();
    }
    let mut buf = [0u8; 8];
    f.read_exact_at(&mut buf, 19 * 8).unwrap();
    assert_eq!(u64::from_be_bytes(buf), 19);
    let fast = t.elapsed();
    let (r, slow_took) = slow.join().unwrap();
    assert_eq!(r, libc::ENOENT);
    assert!(slow_took >= Duration::from_millis(4500), "{slow_took:?}");
    assert!(
        fast < Duration::from_millis(2500),
        "FOPs that bypass Python took {fast:?} while Python spun"
    );
}

/// Runs `weft mount --foreground` on a volume whose Python translator cannot load.
fn refused(tag: &str, module_text: &str, class: &str, expect: &[&str]) {
    let py = module_dir(&format!("{tag}-py"), "broken.py", module_text);
    let vol = Volume::python(tag, py.path(), "broken", class, "");
    let out = weft()
        .args(["mount", "--foreground", "--volfile"])
        .arg(&vol.volfile)
        .arg(&vol.mnt)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted anyway");
    assert!(!is_mounted(&vol.mnt), "left a mount behind");
    for e in expect {
        assert!(err.contains(e), "message lacks {e:?}:\n{err}");
    }
    let check = weft_output(&["volfile", "check", "--build", vol.volfile.to_str().unwrap()]);
    assert!(!check.status.success());
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains(expect[0]), "{err}");
}

#[test]
fn load_errors_stop_the_mount_with_a_clear_message() {
    refused(
        "syntax",
        "import weft\n\nclass Translator:\n    def stat(self, ctx, args:\n        return ctx.wind()\n",
        "Translator",
        &[
            "cannot import python module \"broken\"",
            "broken.py\", line 4",
            "SyntaxError",
            "(features/python)",
        ],
    );
    refused(
        "noclass",
        "class Other:\n    pass\n",
        "Translator",
        &["has no class \"Translator\"", "classes there: Other"],
    );
    refused(
        "initfail",
        "class T:\n    def __init__(self, init):\n        raise ValueError('no config')\n",
        "T",
        &[
            "python class \"T\" failed to start",
            "ValueError: no config",
        ],
    );
    refused(
        "importfail",
        "import no_such_module_here\n",
        "T",
        &["ModuleNotFoundError", "no_such_module_here"],
    );
    refused(
        "unsupported",
        "class T:\n    def __init__(self, init): pass\n    def rchecksum(self, ctx, args): pass\n",
        "T",
        &["defines rchecksum, which Python translators cannot override yet"],
    );
    refused(
        "notcallable",
        "class T:\n    stat = 5\n    def __init__(self, init): pass\n",
        "T",
        &["stat is not a method"],
    );
}

#[test]
fn a_missing_module_folder_is_refused() {
    let vol = Volume::python("nopath", Path::new("/nonexistent/weft-py"), "x", "T", "");
    let out = weft_output(&["volfile", "check", "--build", vol.volfile.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("python path /nonexistent/weft-py is not a directory"),
        "{err}"
    );
}
