//! Absolute checks of a transcript: what must hold whatever another filesystem did.
//! A diff against a local directory cannot see a failure both sides share (a child that
//! cannot start, a setup that failed) nor one the local directory shares by accident;
//! [`check`] can.

use crate::Step;

/// Outcomes ext4 (and the kernel VFS) are known to produce. Exact strings
/// unless the expectation starts with `~`, which means "contains".
pub(crate) const EXPECTED: &[(&str, &str)] = &[
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
    ("rw_offsets.pwrite_big", "ok:calls=[3145745]"),
    ("rw_offsets.pread_big_once", "ok:n=3145745"),
    ("xattrs.get_internal_gfid", "err:ENODATA"),
    ("xattrs.get_internal_dir", "err:ENODATA"),
    ("ctime.write", "ok:changed=true"),
    ("ctime.ftruncate", "ok:changed=true"),
    ("ctime.truncate", "ok:changed=true"),
    ("ctime.chmod", "ok:changed=true"),
    ("ctime.chown", "ok:changed=true"),
    ("ctime.utimes", "ok:changed=true"),
    ("ctime.link", "ok:changed=true"),
    ("ctime.unlink_other_name", "ok:changed=true"),
    ("ctime.setxattr", "ok:changed=true"),
    ("ctime.removexattr", "ok:changed=true"),
    ("ctime.rename", "ok:changed=true"),
    ("ctime.read", "ok:changed=false"),
    ("ctime.stat", "ok:changed=false"),
    ("ctime.getxattr_missing", "ok:changed=false"),
    ("ctime.listxattr", "ok:changed=false"),
    ("ctime.dir_create_entry", "ok:changed=true"),
    ("ctime.dir_remove_entry", "ok:changed=true"),
    ("ctime.dir_listing", "ok:changed=false"),
    ("mc_coherence.b_read_created", "ok:data=one"),
    ("mc_coherence.b_read_open_fd", "ok:data=TWO-TWO"),
    ("mc_coherence.b_fstat_open_fd", "ok:size=7"),
    ("mc_coherence.b_read_fresh", "ok:data=TWO-TWO"),
    ("mc_coherence.a_stat_after_truncate", "ok:size=2"),
    ("mc_coherence.a_read_after_truncate", "ok:data=TW"),
    ("mc_coherence.b_read_extended", r"ok:data=TW\x00\x00\x00\x00xyz"),
    ("mc_coherence.b_fstat_after_ftruncate", "ok:size=4"),
    ("mc_coherence.b_mode", "ok:mode=0600"),
    ("mc_coherence.a_owner", "ok:uid=1234,gid=5678"),
    ("mc_coherence.b_times", "ok:atime=1500000000.5,mtime=1400000000.7"),
    ("mc_coherence.a_getxattr", "ok:data=v1"),
    ("mc_coherence.b_getxattr_replaced", "ok:data=v2"),
    ("mc_coherence.a_getxattr_removed", "err:ENODATA"),
    ("mc_coherence.b_nlink", "ok:nlink=2"),
    ("mc_coherence.b_old_name", "err:ENOENT"),
    ("mc_coherence.b_new_name", "ok:data=TW\\x00\\x00"),
    ("mc_coherence.a_stat_unlinked", "err:ENOENT"),
    ("mc_coherence.a_fstat_unlinked", "ok:nlink=0"),
    ("mc_coherence.a_list_sub", "ok:..:d,.:d,x:f"),
    ("mc_coherence.a_read_via_symlink", "ok:data=x"),
    ("mc_coherence.a_stat_rmdir", "err:ENOENT"),
    ("mc_coherence.b_recreated_mode", "ok:mode=0700"),
    ("mc_appends.seen_on_a", "ok:records=600,intact=True,a_in_order=True,b_in_order=True"),
    ("mc_appends.seen_on_b", "ok:records=600,intact=True,a_in_order=True,b_in_order=True"),
    ("mc_appends.other_exit", "ok:code=0"),
    ("mc_lock_handoff.posix.a_lock", "ok"),
    ("mc_lock_handoff.posix.b_reads_before", "ok:......"),
    ("mc_lock_handoff.posix.b_trylock_ex", "err:EAGAIN"),
    ("mc_lock_handoff.posix.b_trylock_sh", "err:EAGAIN"),
    ("mc_lock_handoff.posix.b_wait", "ok"),
    ("mc_lock_handoff.posix.b_waited_for_release", "ok:True"),
    ("mc_lock_handoff.posix.b_sees_a_write", "ok:from-a"),
    ("mc_lock_handoff.posix.a_sees_b_write", "ok:from-b"),
    ("mc_lock_handoff.posix.other_exit", "ok:code=0"),
    ("mc_locked_counter.posix.final_on_a", "ok:value=300"),
    ("mc_locked_counter.posix.final_on_b", "ok:value=300"),
    ("mc_locked_counter.posix.other_exit", "ok:code=0"),
    ("mc_lock_handoff.ofd.a_lock", "ok"),
    ("mc_lock_handoff.ofd.b_reads_before", "ok:......"),
    ("mc_lock_handoff.ofd.b_trylock_ex", "err:EAGAIN"),
    ("mc_lock_handoff.ofd.b_trylock_sh", "err:EAGAIN"),
    ("mc_lock_handoff.ofd.b_wait", "ok"),
    ("mc_lock_handoff.ofd.b_waited_for_release", "ok:True"),
    ("mc_lock_handoff.ofd.b_sees_a_write", "ok:from-a"),
    ("mc_lock_handoff.ofd.a_sees_b_write", "ok:from-b"),
    ("mc_lock_handoff.ofd.other_exit", "ok:code=0"),
    ("mc_locked_counter.ofd.final_on_a", "ok:value=300"),
    ("mc_locked_counter.ofd.final_on_b", "ok:value=300"),
    ("mc_locked_counter.ofd.other_exit", "ok:code=0"),
    ("mc_lock_handoff.flock.a_lock", "ok"),
    ("mc_lock_handoff.flock.b_reads_before", "ok:......"),
    ("mc_lock_handoff.flock.b_trylock_ex", "err:EAGAIN"),
    ("mc_lock_handoff.flock.b_trylock_sh", "err:EAGAIN"),
    ("mc_lock_handoff.flock.b_wait", "ok"),
    ("mc_lock_handoff.flock.b_waited_for_release", "ok:True"),
    ("mc_lock_handoff.flock.b_sees_a_write", "ok:from-a"),
    ("mc_lock_handoff.flock.a_sees_b_write", "ok:from-b"),
    ("mc_lock_handoff.flock.other_exit", "ok:code=0"),
    ("mc_locked_counter.flock.final_on_a", "ok:value=300"),
    ("mc_locked_counter.flock.final_on_b", "ok:value=300"),
    ("mc_locked_counter.flock.other_exit", "ok:code=0"),
    ("mc_lock_handoff.posix.b_getlk", "ok:F_WRLCK"),
    ("mc_lock_handoff.ofd.b_getlk", "ok:F_WRLCK"),
];

/// Marks that must never appear in an outcome: listings mark an entry whose `d_ino` or
/// `d_type` disagrees with lstat, and Weft's own xattrs must never be visible.
const FORBIDDEN: &[&str] = &[
    ":ino_mismatch",
    ":type_mismatch",
    ":lstat_failed",
    "trusted.weft",
];

/// Problems in the transcript of scenario `name` (a [`crate::SCENARIOS`] or
/// [`crate::MULTI`] name): a failed or missing setup, fewer than 5 steps, a step of another
/// scenario or a repeated name, a child process that failed or raised, a forbidden mark
/// (see the listing and xattr normalisers), and every known outcome in `EXPECTED` for
/// this scenario that differs (`~part`: an `ok` containing `part`). Empty when all hold.
pub fn check(name: &str, steps: &[Step]) -> Vec<String> {
    let mut bad = Vec::new();
    let prefix = format!("{name}.");
    let setup = format!("{name}.setup");
    match steps.iter().find(|s| s.name == setup) {
        Some(s) if s.outcome == "ok" => {}
        other => bad.push(format!("{setup}: {other:?}")),
    }
    if steps.len() < 5 {
        bad.push(format!("{name}: only {} steps", steps.len()));
    }
    for s in steps {
        if !s.name.starts_with(&prefix) || s.name.contains('#') {
            bad.push(format!("bad step name {}", s.name));
        }
        if s.outcome.starts_with("child_failed")
            || s.outcome.starts_with("exc:")
            || s.name.ends_with(".run")
        {
            bad.push(format!("{}: {}", s.name, s.outcome));
        }
        for f in FORBIDDEN {
            if s.outcome.contains(f) {
                bad.push(format!("{}: `{f}` in `{}`", s.name, s.outcome));
            }
        }
    }
    for (step, want) in EXPECTED.iter().filter(|(n, _)| n.starts_with(&prefix)) {
        let got = steps.iter().find(|s| s.name == *step).map(|s| &s.outcome);
        let ok = match (got, want.strip_prefix('~')) {
            (Some(g), Some(part)) => g.starts_with("ok") && g.contains(part),
            (Some(g), None) => g == want,
            (None, _) => false,
        };
        if !ok {
            bad.push(format!("{step}: expected `{want}`, got {got:?}"));
        }
    }
    bad
}
