//! Permission checks for an unprivileged user (uid/gid 65534), run in a
//! python3 child process with dropped privileges.

use super::{owner, perm, record_child, setup, type_mode};
use crate::child::run_py;
use crate::sys::{self, SysResult};
use crate::Transcript;
use std::path::Path;

/// The unprivileged uid/gid used for the checks.
const NOBODY: u32 = 65534;

/// Child program, argv[1] = scenario directory.
const BODY: &str = r#"
base = sys.argv[1]
P = lambda *a: os.path.join(base, *a)
def readf(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        return 'data=' + os.read(fd, 100).decode('latin-1')
    finally:
        os.close(fd)
def openw(p):
    os.close(os.open(p, os.O_WRONLY))
def create(p, data):
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
def create_read(p):
    create(p, b'mine')
    return readf(p)
def suid_write(p):
    create(p, b'#!')
    os.chmod(p, 0o4755)
    fd = os.open(p, os.O_WRONLY)
    try:
        os.write(fd, b'x')
    finally:
        os.close(fd)
    return 'mode=%04o' % (os.stat(p).st_mode & 0o7777)
def mode_of(p):
    return 'mode=%04o' % (os.stat(p).st_mode & 0o7777)
step('whoami', lambda: 'uid=%d,gid=%d,groups=%d' % (os.getuid(), os.getgid(), len(os.getgroups())))
step('read_secret', lambda: readf(P('secret')))
step('access_secret_r', lambda: 'allowed=%s' % os.access(P('secret'), os.R_OK))
step('read_public', lambda: readf(P('public')))
step('write_public', lambda: openw(P('public')))
step('truncate_public', lambda: os.truncate(P('public'), 0))
step('create_in_ro', lambda: create(P('ro', 'new'), b'x'))
step('mkdir_in_ro', lambda: os.mkdir(P('ro', 'sub')))
step('unlink_in_ro', lambda: os.unlink(P('ro', 'rootfile')))
step('rename_in_ro', lambda: os.rename(P('ro', 'rootfile'), P('ro', 'moved')))
step('chmod_root_file', lambda: os.chmod(P('public'), 0o777))
step('chown_root_file', lambda: os.chown(P('public'), 65534, -1))
step('utime_explicit_root_file', lambda: os.utime(P('public'), (1, 1)))
step('utime_now_root_file', lambda: os.utime(P('public')))
step('setxattr_root_file', lambda: os.setxattr(P('public'), 'user.x', b'x'))
step('traverse_0700', lambda: os.stat(P('private', 'inner')))
step('list_0700', lambda: os.listdir(P('private')))
step('stat_in_0711', lambda: mode_of(P('xonly', 'known')))
step('list_0711', lambda: os.listdir(P('xonly')))
step('create_in_pub', lambda: create_read(P('pub', 'mine')))
step('chmod_own', lambda: os.chmod(P('pub', 'mine'), 0o600))
step('mkdir_in_pub', lambda: os.mkdir(P('pub', 'nd'), 0o750))
step('rmdir_root_dir_in_pub', lambda: os.rmdir(P('pub', 'rootsub')))
step('write_clears_suid', lambda: suid_write(P('pub', 'suid')))
step('sticky_unlink_root', lambda: os.unlink(P('sticky', 'rootfile')))
step('sticky_rename_root', lambda: os.rename(P('sticky', 'rootfile'), P('sticky', 'moved')))
step('sticky_rmdir_root', lambda: os.rmdir(P('sticky', 'rootdir')))
step('sticky_create_own', lambda: create(P('sticky', 'mine'), b'm'))
step('sticky_unlink_own', lambda: os.unlink(P('sticky', 'mine')))
"#;

/// Builds the root-owned fixture tree used by the unprivileged child.
fn fixture(d: &Path) -> SysResult<()> {
    let p = |n: &str| d.join(n);
    let dir = |n: &str, m: u32| sys::mkdir(&p(n), 0o700).and_then(|_| sys::chmod(&p(n), m));
    let file = |n: &str, data: &[u8], m: u32| {
        sys::write_file(&p(n), data).and_then(|_| sys::chmod(&p(n), m))
    };
    file("secret", b"top secret", 0o600)?;
    file("public", b"public", 0o644)?;
    dir("ro", 0o755)?;
    file("ro/rootfile", b"r", 0o644)?;
    dir("private", 0o700)?;
    file("private/inner", b"i", 0o644)?;
    dir("xonly", 0o711)?;
    file("xonly/known", b"k", 0o644)?;
    dir("pub", 0o777)?;
    dir("pub/rootsub", 0o755)?;
    dir("sticky", 0o1777)?;
    file("sticky/rootfile", b"s", 0o644)?;
    dir("sticky/rootdir", 0o755)
}

/// EACCES/EPERM for uid 65534 on root-owned files and directories, sticky
/// directory rules, and ownership of files the unprivileged user creates.
pub fn scenario_permissions(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "permissions", t);
    t.res("fixture", &fixture(&d));
    let args = [d.to_string_lossy().into_owned()];
    record_child(t, "nobody.", run_py(BODY, &args, Some((NOBODY, NOBODY))));

    let p = |n: &str| d.join(n);
    t.res_with("root_sees_mine", &sys::lstat(&p("pub/mine")), |st| {
        format!("{},{}", owner(st), type_mode(st))
    });
    t.res_with("root_reads_mine", &sys::read_file(&p("pub/mine")), |b| {
        super::show(b)
    });
    t.res_with("root_sees_nd", &sys::lstat(&p("pub/nd")), |st| {
        format!("{},{}", owner(st), type_mode(st))
    });
    t.res_with("secret_unchanged", &sys::lstat(&p("secret")), |st| {
        format!("{},mode={}", owner(st), perm(st))
    });
    t.res_with("public_unchanged", &sys::read_file(&p("public")), |b| {
        super::show(b)
    });
    t.res("ro_rootfile_kept", &sys::lstat(&p("ro/rootfile")));
    t.res("ro_new_absent", &sys::lstat(&p("ro/new")));
    t.res("sticky_rootfile_kept", &sys::lstat(&p("sticky/rootfile")));
    t.res("rootsub_removed", &sys::lstat(&p("pub/rootsub")));
    t.res_with("listing_pub", &sys::list_names(&p("pub")), |n| n.join(","));
}
