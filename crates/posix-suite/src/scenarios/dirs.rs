//! Directory scenarios: mkdir/rmdir rules, a 10,000-entry directory and
//! statvfs sanity.

use super::{setup, type_mode};
use crate::sys::{self, Fd, SysResult};
use crate::Transcript;
use libc::{O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_WRONLY};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// mkdir/rmdir/unlink error rules and directory link counts.
pub fn scenario_mkdir_rmdir(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "mkdir_rmdir", t);
    let a = d.join("a");
    let f = d.join("file");
    let nlink = |p: &Path| sys::lstat(p).map(|st| st.st_nlink);
    let show_nlink = |n: &u64| format!("nlink={n}");

    t.res("mkdir", &sys::mkdir(&a, 0o755));
    t.res_with("stat_new", &sys::lstat(&a), |st| {
        format!("{},nlink={}", type_mode(st), st.st_nlink)
    });
    t.res_with("listing_empty", &sys::list_names(&a), |n| n.join(","));
    t.res("mkdir_existing", &sys::mkdir(&a, 0o755));
    t.res("create_file", &sys::write_file(&f, b"x"));
    t.res("mkdir_over_file", &sys::mkdir(&f, 0o755));
    t.res(
        "mkdir_missing_parent",
        &sys::mkdir(&d.join("nope/x"), 0o755),
    );
    t.res("mkdir_under_file", &sys::mkdir(&f.join("x"), 0o755));
    t.res("mkdir_s1", &sys::mkdir(&a.join("s1"), 0o755));
    t.res("mkdir_s2", &sys::mkdir(&a.join("s2"), 0o755));
    t.res_with("nlink_two_subdirs", &nlink(&a), show_nlink);
    t.res("create_in_a", &sys::write_file(&a.join("file"), b"y"));
    t.res_with("nlink_after_file", &nlink(&a), show_nlink);
    t.res_with("listing", &sys::list_names(&a), |n| n.join(","));
    t.res("rmdir_nonempty", &sys::rmdir(&a));
    t.res("rmdir_file", &sys::rmdir(&a.join("file")));
    t.res("unlink_dir", &sys::unlink(&a.join("s1")));
    t.res("rmdir_missing", &sys::rmdir(&d.join("missing")));
    t.res("unlink_missing", &sys::unlink(&d.join("missing")));
    t.res("rmdir_dot", &sys::rmdir(&a.join("s2/.")));
    t.res("rmdir_dotdot", &sys::rmdir(&a.join("s2/..")));
    t.res("rmdir_file_slash", &sys::rmdir(&d.join("file/")));
    t.res("rmdir_s1", &sys::rmdir(&a.join("s1")));
    t.res_with("nlink_after_rmdir", &nlink(&a), show_nlink);
    t.res("unlink_file", &sys::unlink(&a.join("file")));
    t.res("rmdir_s2", &sys::rmdir(&a.join("s2")));
    t.res_with("nlink_emptied", &nlink(&a), show_nlink);
    t.res("rmdir_a", &sys::rmdir(&a));
    t.res("stat_removed", &sys::lstat(&a));
    t.res_with("nlink_parent", &nlink(&d), show_nlink);
    t.res("mkdir_trailing_slash", &sys::mkdir(&d.join("t/"), 0o755));
    t.res("mkdir_0700", &sys::mkdir(&d.join("m"), 0o700));
    t.res_with("mode_0700", &sys::lstat(&d.join("m")), type_mode);
    t.res_with("listing_parent", &sys::list_names(&d), |n| n.join(","));
}

const ENTRIES: usize = 10_000;

fn entry(i: usize) -> String {
    format!("entry-{i:05}")
}

/// Normalized facts about one readdir pass compared with `expected` names.
fn check_listing(list: &[sys::DirEntry], expected: &BTreeSet<String>) -> String {
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for (n, _, _) in list {
        *counts.entry(n.as_slice()).or_insert(0) += 1;
    }
    let dot = counts.get(&b"."[..]).copied().unwrap_or(0);
    let dotdot = counts.get(&b".."[..]).copied().unwrap_or(0);
    let others: Vec<&sys::DirEntry> = list
        .iter()
        .filter(|(n, _, _)| n != b"." && n != b"..")
        .collect();
    let distinct = counts.len() - usize::from(dot > 0) - usize::from(dotdot > 0);
    let once = others.iter().all(|(n, _, _)| counts[n.as_slice()] == 1);
    let set: BTreeSet<String> = others
        .iter()
        .map(|(n, _, _)| String::from_utf8_lossy(n).into_owned())
        .collect();
    // Strict: every entry is a regular file and says so (DT_UNKNOWN is not accepted).
    let dtype_ok = others.iter().all(|(_, ty, _)| *ty == libc::DT_REG);
    format!(
        "count={},distinct={distinct},each_once={once},matches_expected={},dot={dot},dotdot={dotdot},dtype_reg={dtype_ok}",
        others.len(),
        set == *expected
    )
}

/// Runs `f` on every index, stopping at the first error; returns how many
/// succeeded.
fn for_each_entry(
    idx: impl Iterator<Item = usize>,
    mut f: impl FnMut(usize) -> SysResult<()>,
) -> SysResult<usize> {
    let mut n = 0;
    for i in idx {
        f(i)?;
        n += 1;
    }
    Ok(n)
}

fn record_listing(t: &mut Transcript, step: &str, p: &Path, expected: &BTreeSet<String>) {
    match sys::list_dir_passes(p, 2) {
        Ok(passes) => {
            let names = [step.to_string(), format!("{step}_rewound")];
            for (name, pass) in names.iter().zip(&passes) {
                t.record(name, format!("ok:{}", check_listing(pass, expected)));
            }
        }
        Err(e) => t.res(step, &Err::<(), _>(e)),
    }
}

/// 10,000 entries in one directory: every name listed exactly once (order
/// ignored), `.`/`..` once each, then half and all of them removed.
pub fn scenario_big_dir(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "big_dir", t);
    let b = d.join("big");
    t.res("mkdir", &sys::mkdir(&b, 0o755));
    let dfd: Fd = match sys::open(&b, O_RDONLY | O_DIRECTORY, 0) {
        Ok(fd) => fd,
        Err(e) => {
            t.res("open_dir", &Err::<(), _>(e));
            return;
        }
    };
    let create = |i: usize| {
        sys::openat(&dfd, &entry(i), O_CREAT | O_EXCL | O_WRONLY, 0o644).and_then(Fd::close)
    };
    let r = for_each_entry(0..ENTRIES, create);
    t.res_with("create", &r, |n| format!("created={n}"));
    let all: BTreeSet<String> = (0..ENTRIES).map(entry).collect();
    record_listing(t, "readdir_full", &b, &all);
    t.res_with("nlink", &sys::lstat(&b), |st| {
        format!("nlink={}", st.st_nlink)
    });
    t.res("create_duplicate", &create(1234));
    t.res("stat_one", &sys::lstat(&b.join(entry(4321))));

    let r = for_each_entry((0..ENTRIES).step_by(2), |i| {
        sys::unlinkat(&dfd, &entry(i), 0)
    });
    t.res_with("unlink_even", &r, |n| format!("removed={n}"));
    let odd: BTreeSet<String> = (1..ENTRIES).step_by(2).map(entry).collect();
    record_listing(t, "readdir_half", &b, &odd);
    t.res("stat_removed", &sys::lstat(&b.join(entry(4320))));
    t.res("rmdir_nonempty", &sys::rmdir(&b));

    let r = for_each_entry((1..ENTRIES).step_by(2), |i| {
        sys::unlinkat(&dfd, &entry(i), 0)
    });
    t.res_with("unlink_odd", &r, |n| format!("removed={n}"));
    record_listing(t, "readdir_empty", &b, &BTreeSet::new());
    drop(dfd);
    t.res("rmdir", &sys::rmdir(&b));
    t.res_with("listing_parent", &sys::list_names(&d), |n| n.join(","));
}

fn statvfs_facts(s: &libc::statvfs) -> String {
    format!(
        "bsize_pos={},frsize_pos={},blocks_pos={},bfree_le_blocks={},bavail_le_bfree={},namemax_ge_255={}",
        s.f_bsize > 0,
        s.f_frsize > 0,
        s.f_blocks > 0,
        s.f_bfree <= s.f_blocks,
        s.f_bavail <= s.f_bfree,
        s.f_namemax >= 255
    )
}

/// statvfs/fstatvfs sanity facts (no absolute numbers).
pub fn scenario_statfs(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "statfs", t);
    let f = d.join("file");
    t.res("create", &sys::write_file(&f, b"x"));
    t.res_with("statvfs_dir", &sys::statvfs(&d), statvfs_facts);
    t.res_with("statvfs_file", &sys::statvfs(&f), statvfs_facts);
    let r = sys::open(&d, O_RDONLY | O_DIRECTORY, 0).and_then(|fd| sys::fstatvfs(&fd));
    t.res_with("fstatvfs_dir", &r, statvfs_facts);
    t.res("statvfs_missing", &sys::statvfs(&d.join("missing")));
}
