//! rename(2) and renameat2(2) semantics.

use super::{ftype, setup, show};
use crate::sys::{self, SysResult};
use crate::Transcript;
use libc::{O_CREAT, O_RDWR};
use std::path::Path;

const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
const EXCHANGE: u32 = libc::RENAME_EXCHANGE;

fn kind(p: &Path) -> SysResult<String> {
    sys::lstat(p).map(|st| ftype(st.st_mode).to_string())
}

/// rename over files and directories, error cases, renameat2 flags, moves
/// across directories and renames of open files.
pub fn scenario_rename(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "rename", t);
    let p = |n: &str| d.join(n);
    let mk = |n: &str| sys::mkdir(&d.join(n), 0o755);
    let setup_r = (|| -> SysResult<()> {
        sys::write_file(&p("a"), b"AAA")?;
        sys::write_file(&p("b"), b"BBBB")?;
        sys::write_file(&p("c"), b"C")?;
        mk("d1")?;
        mk("d2")?;
        mk("d3")?;
        sys::write_file(&p("d3/inner"), b"inner")?;
        mk("d4")?;
        mk("d4/sub")
    })();
    t.res("create_tree", &setup_r);

    t.res("file_over_file", &sys::rename(&p("a"), &p("b")));
    t.res("source_gone", &sys::lstat(&p("a")));
    t.res_with("target_content", &sys::read_file(&p("b")), |b| show(b));
    t.res("dir_over_empty_dir", &sys::rename(&p("d1"), &p("d2")));
    t.res("dir_source_gone", &sys::lstat(&p("d1")));
    t.res_with("dir_target_kind", &kind(&p("d2")), String::clone);
    t.res("dir_over_nonempty_dir", &sys::rename(&p("d2"), &p("d3")));
    t.res("file_over_dir", &sys::rename(&p("b"), &p("d3")));
    t.res("dir_over_file", &sys::rename(&p("d3"), &p("b")));
    t.res("missing_source", &sys::rename(&p("missing"), &p("x")));
    t.res("into_missing_dir", &sys::rename(&p("c"), &p("nodir/c")));
    t.res(
        "dir_into_own_subdir",
        &sys::rename(&p("d4"), &p("d4/sub/x")),
    );
    t.res("dir_onto_own_subdir", &sys::rename(&p("d4"), &p("d4/sub")));
    t.res(
        "noreplace_existing",
        &sys::renameat2(&p("c"), &p("b"), NOREPLACE),
    );
    t.res_with("noreplace_kept_target", &sys::read_file(&p("b")), |b| {
        show(b)
    });
    t.res(
        "noreplace_new",
        &sys::renameat2(&p("c"), &p("c2"), NOREPLACE),
    );
    t.res_with("noreplace_moved", &sys::read_file(&p("c2")), |b| show(b));
    t.res("to_itself", &sys::rename(&p("b"), &p("b")));
    t.res_with("itself_content", &sys::read_file(&p("b")), |b| show(b));

    // Renaming one hard link onto another link of the same inode is a no-op.
    t.res("link_for_same_inode", &sys::link(&p("b"), &p("h")));
    t.res("onto_same_inode", &sys::rename(&p("b"), &p("h")));
    t.res_with("same_inode_src", &sys::lstat(&p("b")), |st| {
        format!("nlink={}", st.st_nlink)
    });
    t.res_with("same_inode_dst", &sys::lstat(&p("h")), |st| {
        format!("nlink={}", st.st_nlink)
    });

    // RENAME_EXCHANGE swaps two existing names atomically.
    t.res("exchange", &sys::renameat2(&p("b"), &p("c2"), EXCHANGE));
    t.res_with("exchange_b", &sys::read_file(&p("b")), |b| show(b));
    t.res_with("exchange_c2", &sys::read_file(&p("c2")), |b| show(b));
    t.res(
        "exchange_missing",
        &sys::renameat2(&p("b"), &p("zz"), EXCHANGE),
    );

    // Moves across directories, including a directory with contents.
    t.res(
        "move_file_across",
        &sys::rename(&p("d3/inner"), &p("d2/inner")),
    );
    t.res_with("moved_content", &sys::read_file(&p("d2/inner")), |b| {
        show(b)
    });
    t.res("old_location_gone", &sys::lstat(&p("d3/inner")));
    t.res(
        "nonempty_src_ready",
        &sys::write_file(&p("d3/keep"), b"keep"),
    );
    let nl = |n: &str| sys::lstat(&d.join(n)).map(|st| st.st_nlink as i64);
    let counts = || -> SysResult<(i64, i64)> { Ok((nl(".")?, nl("d2")?)) };
    let before = counts();
    t.res("move_dir_across", &sys::rename(&p("d3"), &p("d2/moved")));
    let r = before.and_then(|(a, b)| {
        counts().map(|(c, e)| format!("parent_delta={},newparent_delta={}", c - a, e - b))
    });
    t.res_with("move_dir_nlinks", &r, String::clone);
    t.res_with(
        "moved_dir_child",
        &sys::read_file(&p("d2/moved/keep")),
        |b| show(b),
    );
    let r = sys::one_side(|| -> SysResult<bool> {
        let a = sys::stat(&p("d2/moved/.."))?;
        let b = sys::stat(&p("d2"))?;
        Ok(a.st_ino == b.st_ino && a.st_dev == b.st_dev)
    });
    t.res_with("dotdot_is_new_parent", &r, |v| format!("{v}"));
    t.res_with("listing_root", &sys::list_names(&d), |n| n.join(","));
    t.res_with("listing_d2", &sys::list_names(&p("d2")), |n| n.join(","));

    // An open fd follows the file across a rename.
    let r = (|| -> SysResult<String> {
        let fd = sys::open(&p("open"), O_CREAT | O_RDWR, 0o644)?;
        sys::pwrite_all(&fd, b"opened", 0)?;
        sys::rename(&p("open"), &p("d2/open2"))?;
        sys::pwrite_all(&fd, b"+more", 6)?;
        let via_fd = sys::pread_to_end(&fd)?;
        let via_path = sys::read_file(&p("d2/open2"))?;
        Ok(format!("{},same={}", show(&via_fd), via_fd == via_path))
    })();
    t.res_with("open_fd_survives", &r, String::clone);
    t.res("rename_dot", &sys::rename(&p("d2/."), &p("d5")));
    t.res("onto_dotdot", &sys::rename(&p("d4"), &p("d4/..")));
}
