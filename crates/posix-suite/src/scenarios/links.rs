//! Hard links and symbolic links.

use super::{ftype, setup, show, size, type_mode};
use crate::sys::{self, SysResult};
use crate::Transcript;
use libc::{O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR, O_WRONLY};
use std::path::Path;

fn nlink(st: &sys::Stat) -> String {
    format!("nlink={}", st.st_nlink)
}

/// link(2): shared content, link counts, and EPERM/EEXIST/ENOENT cases.
pub fn scenario_hardlinks(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "hardlinks", t);
    let (f, g) = (d.join("f"), d.join("g"));
    t.res("create", &sys::write_file(&f, b"shared"));
    let fd = sys::open(&f, O_RDWR, 0);
    t.res("open", &fd);
    t.res("link", &sys::link(&f, &g));
    t.res_with("nlink_f", &sys::lstat(&f), nlink);
    t.res_with("nlink_g", &sys::lstat(&g), nlink);
    if let Ok(fd) = &fd {
        t.res_with("fstat_open_fd", &sys::fstat(fd), nlink);
    }
    let r = sys::one_side(|| -> SysResult<bool> {
        let (a, b) = (sys::lstat(&f)?, sys::lstat(&g)?);
        Ok(a.st_ino == b.st_ino && a.st_dev == b.st_dev)
    });
    t.res_with("same_inode", &r, |v| format!("{v}"));
    t.res_with("content_g", &sys::read_file(&g), |b| show(b));
    let r = sys::open(&g, O_WRONLY, 0).and_then(|fd| sys::pwrite_all(&fd, b"SHARED", 0));
    t.res("write_via_g", &r);
    t.res_with("content_f", &sys::read_file(&f), |b| show(b));
    let r = sys::open(&f, O_WRONLY, 0).and_then(|fd| sys::pwrite_all(&fd, b"+tail", 6));
    t.res("extend_via_f", &r);
    t.res_with("size_g", &sys::lstat(&g), size);
    t.res("unlink_f", &sys::unlink(&f));
    t.res_with("nlink_g_after", &sys::lstat(&g), nlink);
    if let Ok(fd) = &fd {
        t.res_with("fstat_after_unlink", &sys::fstat(fd), nlink);
    }
    t.res_with("content_g_after", &sys::read_file(&g), |b| show(b));

    let sub = d.join("sub");
    t.res("mkdir", &sys::mkdir(&sub, 0o755));
    t.res("link_dir", &sys::link(&sub, &d.join("subl")));
    t.res("create_other", &sys::write_file(&d.join("other"), b"o"));
    t.res("link_onto_existing", &sys::link(&g, &d.join("other")));
    t.res(
        "link_missing_source",
        &sys::link(&d.join("missing"), &d.join("x")),
    );
    t.res("link_into_missing_dir", &sys::link(&g, &d.join("nodir/x")));
    t.res("link_into_subdir", &sys::link(&g, &sub.join("g2")));
    t.res_with("nlink_cross_dir", &sys::lstat(&sub.join("g2")), nlink);
    t.res("symlink", &sys::symlink(b"g", &d.join("sl")));
    t.res("link_symlink", &sys::link(&d.join("sl"), &d.join("sl2")));
    t.res_with("linked_symlink", &sys::lstat(&d.join("sl2")), |st| {
        format!("type={},{}", ftype(st.st_mode), nlink(st))
    });
    t.res_with("listing", &sys::list_names(&d), |n| n.join(","));
}

/// symlink/readlink/lstat, dangling links, links to directories, loops and
/// O_NOFOLLOW.
pub fn scenario_symlinks(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "symlinks", t);
    let p = |n: &str| d.join(n);
    let target = b"target/with/some/path";
    t.res("symlink_dangling", &sys::symlink(target, &p("dangling")));
    t.res_with("readlink", &sys::readlink(&p("dangling")), |b| {
        format!("exact={},{}", b.as_slice() == target, show(b))
    });
    t.res_with("lstat", &sys::lstat(&p("dangling")), |st| {
        format!("type={},{}", ftype(st.st_mode), size(st))
    });
    t.res("stat_dangling", &sys::stat(&p("dangling")));
    t.res(
        "open_nofollow_dangling",
        &sys::open(&p("dangling"), O_RDONLY | O_NOFOLLOW, 0),
    );
    t.res("symlink_existing", &sys::symlink(b"x", &p("dangling")));
    t.res("readlink_missing", &sys::readlink(&p("missing")));

    t.res("create_file", &sys::write_file(&p("file"), b"via link"));
    t.res("symlink_file", &sys::symlink(b"file", &p("to_file")));
    t.res_with("stat_follows", &sys::stat(&p("to_file")), |st| {
        format!("{},{}", type_mode(st), size(st))
    });
    t.res_with("read_via_link", &sys::read_file(&p("to_file")), |b| show(b));
    t.res(
        "open_nofollow",
        &sys::open(&p("to_file"), O_RDONLY | O_NOFOLLOW, 0),
    );
    t.res("readlink_regular", &sys::readlink(&p("file")));

    t.res("mkdir", &sys::mkdir(&p("sub"), 0o755));
    t.res("create_in_sub", &sys::write_file(&p("sub/inner"), b"inner"));
    t.res("symlink_dir", &sys::symlink(b"sub", &p("to_dir")));
    t.res_with("stat_dir_link", &sys::stat(&p("to_dir")), |st| {
        ftype(st.st_mode).to_string()
    });
    t.res_with("lstat_dir_link", &sys::lstat(&p("to_dir")), |st| {
        ftype(st.st_mode).to_string()
    });
    t.res_with(
        "read_through_dir_link",
        &sys::read_file(&p("to_dir/inner")),
        |b| show(b),
    );
    t.res_with(
        "list_through_dir_link",
        &sys::list_names(&p("to_dir")),
        |n| n.join(","),
    );
    t.res("rmdir_dir_link", &sys::rmdir(&p("to_dir")));
    t.res(
        "absolute_target",
        &sys::symlink(b"/nonexistent/abs", &p("abs")),
    );
    t.res_with("readlink_absolute", &sys::readlink(&p("abs")), |b| show(b));

    let long = vec![b'L'; 1000];
    t.res("symlink_long", &sys::symlink(&long, &p("long")));
    t.res_with("readlink_long", &sys::readlink(&p("long")), |b| {
        format!("len={},exact={}", b.len(), *b == long)
    });
    t.res_with("lstat_long", &sys::lstat(&p("long")), size);

    t.res("loop_a", &sys::symlink(b"loop_b", &p("loop_a")));
    t.res("loop_b", &sys::symlink(b"loop_a", &p("loop_b")));
    t.res("stat_loop", &sys::stat(&p("loop_a")));

    // O_CREAT through a dangling link creates the target; O_EXCL refuses.
    t.res(
        "symlink_to_new",
        &sys::symlink(b"created_via_link", &p("maker")),
    );
    t.res(
        "creat_excl_via_link",
        &sys::open(&p("maker"), O_CREAT | O_EXCL | O_WRONLY, 0o644),
    );
    t.res(
        "creat_via_link",
        &sys::open(&p("maker"), O_CREAT | O_WRONLY, 0o644),
    );
    t.res_with(
        "created_target",
        &sys::lstat(&p("created_via_link")),
        |st| ftype(st.st_mode).to_string(),
    );
    t.res("unlink_link", &sys::unlink(&p("to_file")));
    t.res_with("target_survives", &sys::read_file(&p("file")), |b| show(b));
    t.res_with("listing", &sys::list_names(&d), |n| n.join(","));
}
