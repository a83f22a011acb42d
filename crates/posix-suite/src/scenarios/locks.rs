//! POSIX record locks (fcntl) and BSD flock locks, observed from a second
//! process (a python3 child that opens the file itself).

use super::{record_child, setup};
use crate::child::run_py;
use crate::sys::{self, Fd};
use crate::Transcript;
use libc::{
    F_GETLK, F_RDLCK, F_SETLK, F_UNLCK, F_WRLCK, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, O_RDWR,
};
use std::path::Path;

/// Child program: opens argv[1] O_RDWR and runs ops `name:kind:args...`
/// (`getlk:t:start:len`, `setlk:t:start:len`, `flock:ex|sh|un`), printing
/// one `name=outcome` line each. argv[2] is the parent's pid.
const BODY: &str = r#"
path = sys.argv[1]; ppid = int(sys.argv[2])
fd = os.open(path, os.O_RDWR)
T = {'r': fcntl.F_RDLCK, 'w': fcntl.F_WRLCK, 'u': fcntl.F_UNLCK}
N = {fcntl.F_RDLCK: 'F_RDLCK', fcntl.F_WRLCK: 'F_WRLCK', fcntl.F_UNLCK: 'F_UNLCK'}
FMT = 'hhqqi4x'
def lk(cmd, ty, start, ln):
    b = struct.pack(FMT, T[ty], 0, int(start), int(ln), 0)
    return struct.unpack(FMT, fcntl.fcntl(fd, cmd, b))
def getlk(ty, start, ln):
    t, w, s, l, p = lk(fcntl.F_GETLK, ty, start, ln)
    if t == fcntl.F_UNLCK:
        return 'type=F_UNLCK'
    return 'type=%s,start=%d,len=%d,pid_is_parent=%s' % (N.get(t, t), s, l, p == ppid)
def setlk(ty, start, ln):
    lk(fcntl.F_SETLK, ty, start, ln)
FL = {'ex': fcntl.LOCK_EX | fcntl.LOCK_NB, 'sh': fcntl.LOCK_SH | fcntl.LOCK_NB, 'un': fcntl.LOCK_UN}
for op in sys.argv[3:]:
    name, kind, *a = op.split(':')
    if kind == 'getlk':
        step(name, lambda: getlk(*a))
    elif kind == 'setlk':
        step(name, lambda: setlk(*a))
    elif kind == 'flock':
        step(name, lambda: fcntl.flock(fd, FL[a[0]]))
"#;

fn child(t: &mut Transcript, prefix: &str, path: &Path, ops: &[&str]) {
    let mut args = vec![
        path.to_string_lossy().into_owned(),
        std::process::id().to_string(),
    ];
    args.extend(ops.iter().map(|s| s.to_string()));
    record_child(t, prefix, run_py(BODY, &args, None));
}

fn lk(fd: &Fd, cmd: i32, ty: i32, start: i64, len: i64) -> sys::SysResult<libc::flock> {
    sys::fcntl_lock(fd, cmd, ty, start, len)
}

fn lock_type(fl: &libc::flock) -> String {
    match i32::from(fl.l_type) {
        F_UNLCK => "type=F_UNLCK".to_string(),
        F_RDLCK => "type=F_RDLCK".to_string(),
        F_WRLCK => "type=F_WRLCK".to_string(),
        other => format!("type={other}"),
    }
}

fn open_rw(t: &mut Transcript, d: &Path) -> Option<(std::path::PathBuf, Fd)> {
    let f = d.join("file");
    let r = sys::write_file(&f, &[b'l'; 1000]).and_then(|_| sys::open(&f, O_RDWR, 0));
    match r {
        Ok(fd) => Some((f, fd)),
        Err(e) => {
            t.res("open", &Err::<(), _>(e));
            None
        }
    }
}

/// fcntl F_SETLK/F_GETLK: own locks invisible to F_GETLK, conflicts seen by
/// another process (type, range, owner pid), EAGAIN, unlock, shared locks,
/// lock splitting and release on close of any fd.
pub fn scenario_fcntl_locks(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "fcntl_locks", t);
    let Some((f, fd)) = open_rw(t, &d) else {
        return;
    };
    t.res("setlk_write", &lk(&fd, F_SETLK, F_WRLCK, 100, 100));
    t.res_with("getlk_self", &lk(&fd, F_GETLK, F_WRLCK, 150, 10), lock_type);
    child(
        t,
        "c1.",
        &f,
        &[
            "getlk_conflict:getlk:w:150:10",
            "setlk_conflict:setlk:w:150:10",
            "setlk_read_conflict:setlk:r:199:1",
            "getlk_free:getlk:w:300:10",
            "setlk_free:setlk:w:300:10",
            "setlk_adjacent:setlk:w:200:10",
        ],
    );
    t.res("unlock", &lk(&fd, F_SETLK, F_UNLCK, 100, 100));
    child(
        t,
        "c2.",
        &f,
        &["getlk_after:getlk:w:150:10", "setlk_after:setlk:w:150:10"],
    );

    t.res("setlk_read_whole", &lk(&fd, F_SETLK, F_RDLCK, 0, 0));
    child(
        t,
        "c3.",
        &f,
        &[
            "setlk_shared:setlk:r:10:10",
            "setlk_excl:setlk:w:10:10",
            "getlk_excl:getlk:w:10:10",
        ],
    );
    t.res("upgrade_write_whole", &lk(&fd, F_SETLK, F_WRLCK, 0, 0));
    child(t, "c4.", &f, &["getlk_upgraded:getlk:r:5000:1"]);

    // Unlocking the middle of a locked range splits it.
    t.res("unlock_middle", &lk(&fd, F_SETLK, F_UNLCK, 40, 20));
    child(
        t,
        "c5.",
        &f,
        &[
            "getlk_hole:getlk:w:40:20",
            "getlk_left:getlk:w:0:50",
            "getlk_right:getlk:w:55:10",
        ],
    );

    // Closing any fd of the file drops all of the process's POSIX locks.
    let r = sys::open(&f, O_RDWR, 0).and_then(|fd2| fd2.close());
    t.res("close_other_fd", &r);
    child(t, "c6.", &f, &["setlk_after_close:setlk:w:0:0"]);
    t.res("close", &fd.close());
}

/// flock: exclusive/shared locks per open file description, EWOULDBLOCK
/// from another description (in-process and in a child), dup sharing,
/// unlock, and independence from fcntl locks.
pub fn scenario_flock(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "flock", t);
    let Some((f, fd1)) = open_rw(t, &d) else {
        return;
    };
    t.res("lock_ex", &sys::flock(&fd1, LOCK_EX));
    let fd2 = sys::open(&f, O_RDWR, 0);
    if let Ok(fd2) = &fd2 {
        t.res("other_ofd_ex_nb", &sys::flock(fd2, LOCK_EX | LOCK_NB));
        t.res("other_ofd_sh_nb", &sys::flock(fd2, LOCK_SH | LOCK_NB));
    }
    let dup = sys::dup(&fd1);
    if let Ok(dup) = &dup {
        t.res("dup_shares_lock", &sys::flock(dup, LOCK_EX | LOCK_NB));
    }
    child(
        t,
        "c1.",
        &f,
        &[
            "ex:flock:ex",
            "sh:flock:sh",
            "fcntl_independent:setlk:w:0:0",
        ],
    );
    t.res("unlock", &sys::flock(&fd1, LOCK_UN));
    child(
        t,
        "c2.",
        &f,
        &["ex_after_unlock:flock:ex", "unlock:flock:un"],
    );

    t.res("lock_sh", &sys::flock(&fd1, LOCK_SH));
    child(
        t,
        "c3.",
        &f,
        &["sh_shared:flock:sh", "ex_vs_shared:flock:ex"],
    );
    if let Ok(fd2) = &fd2 {
        t.res("other_ofd_sh_while_sh", &sys::flock(fd2, LOCK_SH | LOCK_NB));
        t.res("other_ofd_unlock", &sys::flock(fd2, LOCK_UN));
    }
    // The lock belongs to the open file description: it survives closing
    // one of two descriptors referring to it.
    t.res("close_fd1", &fd1.close());
    child(t, "c4.", &f, &["ex_while_dup_open:flock:ex"]);
    if let Ok(dup) = dup {
        t.res("close_dup", &dup.close());
    }
    child(t, "c5.", &f, &["ex_after_all_closed:flock:ex"]);
    drop(fd2);
}
