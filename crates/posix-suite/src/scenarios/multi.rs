//! Scenarios that need two clients to mean anything: each takes the same directory seen
//! through mount A and through mount B (or one local directory twice, for the
//! reference transcript) and checks that what one side does the other sees at once.

use super::{owner, perm, record_child, setup, show, size};
use crate::child::run_py;
use crate::sys::{self, X};
use crate::Transcript;
use libc::{O_CREAT, O_RDONLY, O_RDWR};
use std::path::Path;

/// Starts a multi-client scenario: the directory on A (created) and on B.
fn setup2(
    a: &Path,
    b: &Path,
    name: &str,
    t: &mut Transcript,
) -> (std::path::PathBuf, std::path::PathBuf) {
    (setup(a, name, t), b.join(name))
}

/// Every change made through one side is seen through the other by the next call:
/// contents (through a fresh open and through a descriptor opened before the change),
/// sizes after truncate and ftruncate, modes, owners, times, xattrs, renames, unlinks,
/// links, symlinks and directory entries.
pub fn multi_coherence(a: &Path, b: &Path, t: &mut Transcript) {
    let (da, db) = setup2(a, b, "mc_coherence", t);
    let (fa, fb) = (da.join("f"), db.join("f"));
    t.res("a_create", &sys::write_file(&fa, b"one"));
    t.res_with("b_read_created", &sys::read_file(&fb), |v| show(v));
    let (Ok(wa), Ok(rb)) = (sys::open(&fa, O_RDWR, 0), sys::open(&fb, O_RDONLY, 0)) else {
        t.record("open_both", "err:open");
        return;
    };
    t.res("a_write", &sys::pwrite_all(&wa, b"TWO-TWO", 0));
    t.res_with("b_read_open_fd", &sys::pread(&rb, 64, 0), |v| show(v));
    t.res_with("b_fstat_open_fd", &sys::fstat(&rb), size);
    t.res_with("b_read_fresh", &sys::read_file(&fb), |v| show(v));
    t.res("b_truncate", &sys::truncate(&fb, 2));
    t.res_with("a_stat_after_truncate", &sys::stat(&fa), size);
    t.res_with("a_read_after_truncate", &sys::pread(&wa, 64, 0), |v| {
        show(v)
    });
    t.res("a_extend", &sys::pwrite_all(&wa, b"xyz", 6));
    t.res_with("b_read_extended", &sys::pread(&rb, 64, 0), |v| show(v));
    t.res("a_ftruncate", &sys::ftruncate(&wa, 4));
    t.res_with("b_fstat_after_ftruncate", &sys::fstat(&rb), size);
    t.res("a_chmod", &sys::chmod(&fa, 0o600));
    t.res_with("b_mode", &sys::lstat(&fb), |st| {
        format!("mode={}", perm(st))
    });
    t.res("b_chown", &sys::chown(&fb, Some(1234), Some(5678)));
    t.res_with("a_owner", &sys::lstat(&fa), owner);
    let t1 = [sys::ts(1_500_000_000, 5), sys::ts(1_400_000_000, 7)];
    t.res("a_utimes", &sys::utimensat(&fa, t1, 0));
    t.res_with("b_times", &sys::lstat(&fb), |st| {
        format!(
            "atime={}.{},mtime={}.{}",
            st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec
        )
    });
    t.res(
        "b_setxattr",
        &sys::setxattr(X::Path(&fb), "user.k", b"v1", 0),
    );
    t.res_with(
        "a_getxattr",
        &sys::getxattr(X::Path(&fa), "user.k", 64),
        |(_, v)| show(v),
    );
    t.res(
        "a_replace_xattr",
        &sys::setxattr(X::Path(&fa), "user.k", b"v2", libc::XATTR_REPLACE),
    );
    t.res_with(
        "b_getxattr_replaced",
        &sys::getxattr(X::Path(&fb), "user.k", 64),
        |(_, v)| show(v),
    );
    t.res("b_removexattr", &sys::removexattr(&fb, "user.k"));
    t.res(
        "a_getxattr_removed",
        &sys::getxattr(X::Path(&fa), "user.k", 64),
    );
    t.res("a_link", &sys::link(&fa, &da.join("g")));
    t.res_with("b_nlink", &sys::lstat(&fb), |st| {
        format!("nlink={}", st.st_nlink)
    });
    t.res("a_rename", &sys::rename(&fa, &da.join("renamed")));
    t.res("b_old_name", &sys::lstat(&fb));
    t.res_with("b_new_name", &sys::read_file(&db.join("renamed")), |v| {
        show(v)
    });
    t.res_with("b_open_fd_after_rename", &sys::pread(&rb, 64, 0), |v| {
        show(v)
    });
    t.res("b_unlink", &sys::unlink(&db.join("renamed")));
    t.res("a_stat_unlinked", &sys::lstat(&da.join("renamed")));
    t.res_with("a_other_link", &sys::lstat(&da.join("g")), |st| {
        format!("nlink={}", st.st_nlink)
    });
    t.res("b_unlink_last", &sys::unlink(&db.join("g")));
    t.res_with("a_fstat_unlinked", &sys::fstat(&wa), |st| {
        format!("nlink={}", st.st_nlink)
    });
    t.res_with("a_read_unlinked", &sys::pread(&wa, 64, 0), |v| show(v));
    t.res("a_mkdir", &sys::mkdir(&da.join("sub"), 0o755));
    t.res("b_create_in_sub", &sys::write_file(&db.join("sub/x"), b"x"));
    t.res_with("a_list_sub", &sys::list_names(&da.join("sub")), |n| {
        n.join(",")
    });
    t.res("b_symlink", &sys::symlink(b"sub/x", &db.join("sl")));
    t.res_with("a_readlink", &sys::readlink(&da.join("sl")), |v| show(v));
    t.res_with("a_read_via_symlink", &sys::read_file(&da.join("sl")), |v| {
        show(v)
    });
    t.res("a_unlink_in_sub", &sys::unlink(&da.join("sub/x")));
    t.res("b_rmdir", &sys::rmdir(&db.join("sub")));
    t.res("a_stat_rmdir", &sys::lstat(&da.join("sub")));
    t.res("a_recreate_sub", &sys::mkdir(&da.join("sub"), 0o700));
    t.res_with("b_recreated_mode", &sys::lstat(&db.join("sub")), |st| {
        format!("mode={}", perm(st))
    });
    t.res_with("b_listing", &sys::list_names(&db), |n| n.join(","));
    let _ = (wa.close(), rb.close());
}

/// Python helpers shared by the two-process programs: `lock(fd, kind, ex, wait)` and
/// `unlock(fd, kind)` for `posix` (fcntl), `ofd` (open file description) and `flock`.
const LOCKS: &str = r#"
import time
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
FMT = 'hhqqi4x'
def lock(fd, kind, ex, wait):
    if kind == 'flock':
        op = fcntl.LOCK_EX if ex else fcntl.LOCK_SH
        fcntl.flock(fd, op if wait else op | fcntl.LOCK_NB)
        return
    cmd = {('posix', False): fcntl.F_SETLK, ('posix', True): fcntl.F_SETLKW,
           ('ofd', False): F_OFD_SETLK, ('ofd', True): F_OFD_SETLKW}[(kind, wait)]
    fcntl.fcntl(fd, cmd, struct.pack(FMT, fcntl.F_WRLCK if ex else fcntl.F_RDLCK, 0, 0, 0, 0))
def unlock(fd, kind):
    if kind == 'flock':
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    cmd = fcntl.F_SETLK if kind == 'posix' else F_OFD_SETLK
    fcntl.fcntl(fd, cmd, struct.pack(FMT, fcntl.F_UNLCK, 0, 0, 0, 0))
def getlk(fd, kind):
    cmd = fcntl.F_GETLK if kind == 'posix' else F_OFD_GETLK
    t = struct.unpack(FMT, fcntl.fcntl(fd, cmd, struct.pack(FMT, fcntl.F_WRLCK, 0, 0, 0, 0)))[0]
    return {fcntl.F_UNLCK: 'F_UNLCK', fcntl.F_RDLCK: 'F_RDLCK', fcntl.F_WRLCK: 'F_WRLCK'}.get(t, t)
def pread_all(fd):
    return os.pread(fd, 1 << 20, 0)
def fork_other(fn):
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        except BaseException as e:
            sys.stdout.write('other.exception=exc:%s\n' % type(e).__name__)
            sys.stdout.flush()
            os._exit(1)
        os._exit(0)
    return pid
def join(pid):
    _, status = os.waitpid(pid, 0)
    step('other_exit', lambda: 'code=%d' % os.waitstatus_to_exitcode(status))
"#;

/// Handoff program: argv = kind, path on A, path on B. A takes the lock; B (another
/// process on the other mount) reads the file (so its mount caches it), is refused the
/// lock, sees it with GETLK, then waits for it;
/// A writes and lets go 0.4 s later; B gets it, sees A's write, writes its own and
/// lets go; A takes it again and sees B's write.
const HANDOFF: &str = r#"
kind, pa, pb = sys.argv[1], sys.argv[2], sys.argv[3]
fa = os.open(pa, os.O_RDWR)
step('a_lock', lambda: lock(fa, kind, True, False))
r, w = os.pipe()
def other():
    fb = os.open(pb, os.O_RDWR)
    # Read first, so B's mount has the old contents cached when the lock comes.
    step('b_reads_before', lambda: pread_all(fb).decode())
    step('b_trylock_ex', lambda: lock(fb, kind, True, False))
    step('b_trylock_sh', lambda: lock(fb, kind, False, False))
    if kind != 'flock':
        step('b_getlk', lambda: getlk(fb, kind))
    os.write(w, b'x')
    t0 = time.monotonic()
    step('b_wait', lambda: lock(fb, kind, True, True))
    step('b_waited_for_release', lambda: time.monotonic() - t0 >= 0.3)
    step('b_sees_a_write', lambda: pread_all(fb).decode())
    step('b_write', lambda: os.pwrite(fb, b'from-b', 0) and None)
    step('b_unlock', lambda: unlock(fb, kind))
pid = fork_other(other)
os.read(r, 1)
time.sleep(0.4)
step('a_write', lambda: os.pwrite(fa, b'from-a', 0) and None)
step('a_unlock', lambda: unlock(fa, kind))
join(pid)
step('a_relock', lambda: lock(fa, kind, True, False))
step('a_sees_b_write', lambda: pread_all(fa).decode())
step('a_unlock_again', lambda: unlock(fa, kind))
"#;

/// Lock handoff between two clients for fcntl (POSIX), OFD and flock locks: refusal,
/// GETLK, a waiter woken by the release, and the data written under the lock seen by
/// the next holder.
pub fn multi_lock_handoff(a: &Path, b: &Path, t: &mut Transcript) {
    let (da, db) = setup2(a, b, "mc_lock_handoff", t);
    for kind in ["posix", "ofd", "flock"] {
        let name = format!("{kind}_file");
        t.res(
            &format!("{kind}.create"),
            &sys::write_file(&da.join(&name), b"......"),
        );
        let args = [
            kind.to_string(),
            da.join(&name).to_string_lossy().into_owned(),
            db.join(&name).to_string_lossy().into_owned(),
        ];
        record_child(
            t,
            &format!("{kind}."),
            run_py(&format!("{LOCKS}{HANDOFF}"), &args, None),
        );
    }
}

/// Appending program: argv = path on A, path on B, records per side. Both sides append
/// 64-byte records (one write each) through O_APPEND descriptors at the same time;
/// then A checks that every record is whole, none lost, each side's in order.
const APPENDS: &str = r#"
pa, pb, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r, w = os.pipe()
def rec(tag, i):
    return ('%s%06d' % (tag, i)).encode().ljust(63, b'.') + b'\n'
def appender(path, tag):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    for i in range(n):
        assert os.write(fd, rec(tag, i)) == 64
    os.close(fd)
def other():
    os.read(r, 1)
    appender(pb, 'b')
pid = fork_other(other)
os.write(w, b'x')
step('a_appends', lambda: appender(pa, 'a'))
join(pid)
def verify(path):
    fd = os.open(path, os.O_RDONLY)
    data = pread_all(fd)
    os.close(fd)
    recs = [data[i:i + 64] for i in range(0, len(data), 64)]
    seq = {'a': [], 'b': []}
    intact = len(data) % 64 == 0
    for x in recs:
        tag = chr(x[0])
        if tag not in seq or not x.endswith(b'\n'):
            intact = False
            continue
        seq[tag].append(int(x[1:7]))
        intact = intact and x == rec(tag, seq[tag][-1])
    return 'records=%d,intact=%s,a_in_order=%s,b_in_order=%s' % (
        len(recs), intact, seq['a'] == list(range(n)), seq['b'] == list(range(n)))
step('seen_on_a', lambda: verify(pa))
step('seen_on_b', lambda: verify(pb))
"#;

/// Counter program: argv = kind, path on A, path on B, rounds per side. Both sides
/// increment a decimal counter in the file `rounds` times each, every time under an
/// exclusive lock of `kind` (read, add one, write back, unlock): a database's
/// read-modify-write. No increment may be lost.
const COUNTER: &str = r#"
kind, pa, pb, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r, w = os.pipe()
def incr(path):
    fd = os.open(path, os.O_RDWR)
    for _ in range(n):
        lock(fd, kind, True, True)
        v = int(os.pread(fd, 32, 0).split(b'\n')[0])
        os.pwrite(fd, b'%d\n' % (v + 1), 0)
        unlock(fd, kind)
    os.close(fd)
def other():
    os.read(r, 1)
    incr(pb)
pid = fork_other(other)
os.write(w, b'x')
step('a_increments', lambda: incr(pa))
join(pid)
def value(path):
    fd = os.open(path, os.O_RDONLY)
    v = os.pread(fd, 32, 0).split(b'\n')[0].decode()
    os.close(fd)
    return 'value=' + v
step('final_on_a', lambda: value(pa))
step('final_on_b', lambda: value(pb))
"#;

/// O_APPEND writes from both clients at once: 2 x 300 records, none lost or torn.
pub fn multi_appends(a: &Path, b: &Path, t: &mut Transcript) {
    let (da, db) = setup2(a, b, "mc_appends", t);
    t.res(
        "create",
        &sys::open(&da.join("log"), O_CREAT | O_RDWR, 0o644),
    );
    let args = [
        da.join("log").to_string_lossy().into_owned(),
        db.join("log").to_string_lossy().into_owned(),
        "300".to_string(),
    ];
    record_child(t, "", run_py(&format!("{LOCKS}{APPENDS}"), &args, None));
}

/// A read-modify-write counter incremented 2 x 150 times under fcntl, OFD and flock
/// locks from both clients: the final value is 300 each time.
pub fn multi_locked_counter(a: &Path, b: &Path, t: &mut Transcript) {
    let (da, db) = setup2(a, b, "mc_locked_counter", t);
    for kind in ["posix", "ofd", "flock"] {
        let name = format!("{kind}_counter");
        t.res(
            &format!("{kind}.create"),
            &sys::write_file(&da.join(&name), b"0\n"),
        );
        let args = [
            kind.to_string(),
            da.join(&name).to_string_lossy().into_owned(),
            db.join(&name).to_string_lossy().into_owned(),
            "150".to_string(),
        ];
        record_child(
            t,
            &format!("{kind}."),
            run_py(&format!("{LOCKS}{COUNTER}"), &args, None),
        );
    }
}
