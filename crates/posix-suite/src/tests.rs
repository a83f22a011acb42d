//! Self-tests: the suite must agree with itself on two local directories and
//! produce the outcomes the kernel's local filesystems are known to give.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("weft-posix-suite-")
        .tempdir_in("/tmp")
        .expect("create tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod tempdir");
    d
}

fn step(name: &str, outcome: &str) -> Step {
    Step {
        name: name.into(),
        outcome: outcome.into(),
    }
}

#[test]
fn diff_names_changed_missing_and_extra_steps() {
    let a = vec![
        step("s.a", "ok"),
        step("s.b", "err:ENOENT"),
        step("s.c", "ok"),
    ];
    let b = vec![step("s.a", "ok"), step("s.b", "ok"), step("s.d", "ok")];
    let d = diff(&a, &b);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert!(d[0].contains("s.b") && d[0].contains("err:ENOENT"));
    assert!(d[1].contains("s.c") && d[1].contains("missing"));
    assert!(d[2].contains("s.d") && d[2].contains("extra"));
    assert!(diff(&a, &a).is_empty());
}

#[test]
fn transcript_prefixes_and_dedups_names() {
    let mut t = Transcript::new();
    t.set_scope("x");
    t.record("a", "ok");
    t.record("a", "ok");
    t.res("b", &Err::<(), _>(nix::errno::Errno::EWOULDBLOCK));
    let names: Vec<_> = t.steps().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["x.a", "x.a#2", "x.b"]);
    assert_eq!(t.steps()[2].outcome, "err:EAGAIN");
    assert!(run_one(Path::new("/nonexistent"), "no_such_scenario").is_none());
}

#[test]
fn child_failures_are_recorded_without_paths() {
    let out = crate::child::run_py(
        "step('first', lambda: 'v')\nraise ValueError('/tmp/some/path')",
        &[],
        None,
    );
    assert_eq!(out.lines, [("first".to_string(), "ok:v".to_string())]);
    assert_eq!(out.failure.as_deref(), Some("exit:Some(1):ValueError"));
}

/// Outcomes ext4 (and the kernel VFS) are known to produce. Exact strings
/// unless the expectation starts with `~`, which means "contains".
const EXPECTED: &[(&str, &str)] = &[
    ("open_flags.creat_excl_existing", "err:EEXIST"),
    ("open_flags.append_interleaved", "ok:data=AAAACCDD,app_pos=8"),
    ("open_flags.append_pwrite_ignores_offset", "ok:data=AAAACCDDEE"),
    ("open_flags.open_missing", "err:ENOENT"),
    ("open_flags.open_dir_wronly", "err:EISDIR"),
    ("open_flags.o_directory_on_file", "err:ENOTDIR"),
    ("open_flags.name_256", "err:ENAMETOOLONG"),
    ("rw_offsets.pread_short", "ok:data=abc"),
    ("rw_offsets.pread_at_eof", "ok:n=0"),
    ("rw_offsets.pread_big", "~match=true"),
    ("truncate.after_100", "ok:len=100,data=hello,rest_zero=true"),
    ("truncate.shrink_grow", r"ok:data=ab\x00\x00\x00\x00\x00\x00"),
    ("truncate.path_truncate_seen_by_fd", "ok:n=10"),
    ("sparse.fstat", "ok:size=5368709124"),
    ("sparse.read_back", "ok:data=weft"),
    ("sparse.read_hole_1g", "ok:n=4096,zero=true"),
    ("sparse.blocks", "ok:blocks_lt_size=true"),
    ("sparse.seek_data_0", "ok:off=5368709120"),
    ("sparse.seek_hole_0", "ok:off=0"),
    ("sparse.seek_data_past_eof", "err:ENXIO"),
    ("fallocate.size_after_alloc", "ok:size=8192"),
    ("fallocate.size_after_keep", "ok:size=8192"),
    ("fallocate.content_after_punch", "~as_expected=true"),
    ("fallocate.content_after_zero", "~as_expected=true"),
    ("rename.target_content", "ok:data=AAA"),
    ("rename.dir_over_empty_dir", "ok"),
    ("rename.dir_over_nonempty_dir", "err:ENOTEMPTY"),
    ("rename.file_over_dir", "err:EISDIR"),
    ("rename.dir_over_file", "err:ENOTDIR"),
    ("rename.missing_source", "err:ENOENT"),
    ("rename.dir_into_own_subdir", "err:EINVAL"),
    ("rename.noreplace_existing", "err:EEXIST"),
    ("rename.to_itself", "ok"),
    ("hardlinks.nlink_f", "ok:nlink=2"),
    ("hardlinks.nlink_g_after", "ok:nlink=1"),
    ("hardlinks.link_dir", "err:EPERM"),
    ("hardlinks.link_onto_existing", "err:EEXIST"),
    ("hardlinks.content_f", "ok:data=SHARED"),
    ("symlinks.readlink", "ok:exact=true,data=target/with/some/path"),
    ("symlinks.lstat", "ok:type=lnk,size=21"),
    ("symlinks.stat_dangling", "err:ENOENT"),
    ("symlinks.stat_dir_link", "ok:dir"),
    ("symlinks.open_nofollow", "err:ELOOP"),
    ("chmod.file_4755", "ok:mode=4755"),
    ("chmod.dir_1777", "ok:type=dir,mode=1777"),
    ("chown.to_1234_5678", "ok:uid=1234,gid=5678"),
    ("chown.gid_only", "ok:uid=1234,gid=0"),
    ("chown.neither", "ok:uid=0,gid=0"),
    (
        "utimes.explicit_ns",
        "ok:atime=1600000000.123456789,mtime=1500000000.987654321",
    ),
    (
        "utimes.omit_atime",
        "ok:atime=1600000000.123456789,mtime=1400000000.500000000",
    ),
    (
        "utimes.now_mtime",
        "ok:mtime_recent=true,changed=true,atime_kept=true",
    ),
    ("mknod.lstat_fifo", "~type=fifo"),
    ("mknod.mkfifo_existing", "err:EEXIST"),
    ("xattrs.get_alpha", "ok:data=one"),
    ("xattrs.size_query", "ok:len=3"),
    (
        "xattrs.list",
        "ok:names=[user.alpha,user.beta],size_query_matches=true",
    ),
    ("xattrs.create_existing", "err:EEXIST"),
    ("xattrs.replace_missing", "err:ENODATA"),
    ("xattrs.get_removed", "err:ENODATA"),
    ("xattrs.get_never_set", "err:ENODATA"),
    ("xattrs.get_too_small", "err:ERANGE"),
    (
        "big_dir.readdir_full",
        "ok:count=10000,distinct=10000,each_once=true,matches_expected=true,dot=1,dotdot=1,dtype_reg=true",
    ),
    ("big_dir.readdir_half", "~count=5000,distinct=5000,each_once=true,matches_expected=true"),
    ("big_dir.readdir_empty", "~count=0,distinct=0,each_once=true,matches_expected=true,dot=1,dotdot=1"),
    ("big_dir.rmdir", "ok"),
    ("unlinked_open.fstat", "ok:nlink=0,size=13"),
    ("unlinked_open.read_more", "ok:data=before unlink and after"),
    ("fsync.fsync", "ok"),
    ("fsync.fsync_dir", "ok"),
    (
        "statfs.statvfs_dir",
        "ok:bsize_pos=true,frsize_pos=true,blocks_pos=true,bfree_le_blocks=true,bavail_le_bfree=true,namemax_ge_255=true",
    ),
    ("fcntl_locks.getlk_self", "ok:type=F_UNLCK"),
    (
        "fcntl_locks.c1.getlk_conflict",
        "ok:type=F_WRLCK,start=100,len=100,pid_is_parent=True",
    ),
    ("fcntl_locks.c1.setlk_conflict", "err:EAGAIN"),
    ("fcntl_locks.c2.setlk_after", "ok"),
    ("fcntl_locks.c6.setlk_after_close", "ok"),
    ("flock.other_ofd_ex_nb", "err:EAGAIN"),
    ("flock.c1.ex", "err:EAGAIN"),
    ("flock.c2.ex_after_unlock", "ok"),
    ("permissions.nobody.whoami", "ok:uid=65534,gid=65534,groups=0"),
    ("permissions.nobody.read_secret", "err:EACCES"),
    ("permissions.nobody.create_in_ro", "err:EACCES"),
    ("permissions.nobody.unlink_in_ro", "err:EACCES"),
    ("permissions.nobody.chmod_root_file", "err:EPERM"),
    ("permissions.nobody.create_in_pub", "ok:data=mine"),
    ("permissions.nobody.sticky_unlink_root", "err:EPERM"),
    ("permissions.root_sees_mine", "ok:uid=65534,gid=65534,type=reg,mode=0600"),
    ("mkdir_rmdir.mkdir_existing", "err:EEXIST"),
    ("mkdir_rmdir.nlink_two_subdirs", "ok:nlink=4"),
    ("mkdir_rmdir.rmdir_nonempty", "err:ENOTEMPTY"),
    ("mkdir_rmdir.rmdir_file", "err:ENOTDIR"),
    ("mkdir_rmdir.unlink_dir", "err:EISDIR"),
];

/// Structural problems and mismatches with [`EXPECTED`] in one transcript.
fn check_transcript(steps: &[Step]) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, _) in SCENARIOS {
        let setup = format!("{name}.setup");
        match steps.iter().find(|s| s.name == setup) {
            Some(s) if s.outcome == "ok" => {}
            other => bad.push(format!("{setup}: {other:?}")),
        }
        let n = steps
            .iter()
            .filter(|s| s.name.starts_with(&format!("{name}.")))
            .count();
        if n < 5 {
            bad.push(format!("{name}: only {n} steps"));
        }
    }
    for s in steps {
        let known = SCENARIOS
            .iter()
            .any(|(n, _)| s.name.starts_with(&format!("{n}.")));
        if !known || s.name.contains('#') {
            bad.push(format!("bad step name {}", s.name));
        }
        if s.outcome.starts_with("child_failed") || s.outcome.starts_with("exc:") {
            bad.push(format!("{}: {}", s.name, s.outcome));
        }
    }
    for (name, want) in EXPECTED {
        let got = steps.iter().find(|s| s.name == *name).map(|s| &s.outcome);
        let ok = match (got, want.strip_prefix('~')) {
            (Some(g), Some(part)) => g.starts_with("ok") && g.contains(part),
            (Some(g), None) => g == want,
            (None, _) => false,
        };
        if !ok {
            bad.push(format!("{name}: expected `{want}`, got {got:?}"));
        }
    }
    bad
}

#[test]
fn local_runs_agree_and_match_known_outcomes() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "the POSIX suite self-test must run as root"
    );
    let (a, b, c) = (tempdir(), tempdir(), tempdir());
    let ta = run_all(a.path());
    let tb = run_all(b.path());
    let d = diff(&ta, &tb);
    assert!(d.is_empty(), "two local runs differ:\n{}", d.join("\n"));
    let bad = check_transcript(&ta);
    assert!(bad.is_empty(), "unexpected outcomes:\n{}", bad.join("\n"));

    // Scenarios run one by one (as the FUSE integration test may) produce
    // the same transcript as run_all.
    let mut tc = Vec::new();
    for (name, _) in SCENARIOS {
        tc.extend(run_one(c.path(), name).expect("known scenario"));
    }
    assert_eq!(ta, tc);

    // diff notices a changed outcome.
    let mut altered = ta.clone();
    altered[3].outcome = "err:EIO".into();
    let d = diff(&ta, &altered);
    assert_eq!(d.len(), 1);
    assert!(d[0].starts_with(&ta[3].name), "{d:?}");
}
