//! Regular-file scenarios: open flags, positional I/O, truncate, unlinked
//! open files and fsync.

use super::{all_zero, digest, pattern, setup, show, size, type_mode};
use crate::sys::{self, SysResult};
use crate::Transcript;
use libc::{
    O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, SEEK_CUR,
    SEEK_END, SEEK_SET,
};
use std::path::Path;

/// Open flags: `O_CREAT|O_EXCL` on new and existing files, `O_TRUNC`,
/// `O_APPEND` interleaved with another fd, ENOENT/EISDIR/ENOTDIR/EBADF
/// cases and name length limits.
pub fn scenario_open_flags(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "open_flags", t);
    let f = d.join("file");
    let sub = d.join("dir");
    t.res("mkdir_sub", &sys::mkdir(&sub, 0o755));

    let r = sys::open(&f, O_CREAT | O_EXCL | O_WRONLY, 0o644);
    t.res("creat_excl_new", &r);
    if let Ok(fd) = r {
        t.res_with("write_initial", &sys::write(&fd, b"hello"), |n| {
            format!("n={n}")
        });
        t.res("close", &fd.close());
    }
    t.res_with("stat_new", &sys::lstat(&f), |st| {
        format!("{},{}", type_mode(st), size(st))
    });
    let r = sys::open(&f, O_CREAT | O_EXCL | O_WRONLY, 0o644);
    t.res("creat_excl_existing", &r);
    let r = sys::open(&f, O_CREAT | O_RDWR, 0o600).and_then(|fd| sys::fstat(&fd));
    t.res_with("creat_existing_keeps", &r, |st| {
        format!("{},{}", type_mode(st), size(st))
    });

    let r = sys::open(&f, O_WRONLY | O_TRUNC, 0).and_then(|fd| sys::fstat(&fd));
    t.res_with("o_trunc_fstat", &r, size);
    t.res_with("o_trunc_stat", &sys::stat(&f), size);

    // O_APPEND: writes through an appending fd always land at EOF, even
    // after another fd extended the file, and even with pwrite (Linux).
    let r = (|| -> SysResult<String> {
        let plain = sys::open(&f, O_WRONLY, 0)?;
        let app = sys::open(&f, O_WRONLY | O_APPEND, 0)?;
        sys::write(&plain, b"AAAA")?;
        sys::write(&app, b"BB")?;
        sys::write(&plain, b"CC")?;
        sys::write(&app, b"DD")?;
        let pos = sys::lseek(&app, 0, SEEK_CUR)?;
        Ok(format!("{},app_pos={pos}", show(&sys::read_file(&f)?)))
    })();
    t.res_with("append_interleaved", &r, String::clone);
    let r = (|| -> SysResult<String> {
        let app = sys::open(&f, O_RDWR | O_APPEND, 0)?;
        sys::pwrite(&app, b"EE", 0)?;
        Ok(show(&sys::read_file(&f)?))
    })();
    t.res_with("append_pwrite_ignores_offset", &r, String::clone);

    t.res("open_missing", &sys::open(&d.join("missing"), O_RDONLY, 0));
    t.res(
        "open_missing_parent",
        &sys::open(&d.join("nodir/x"), O_CREAT | O_WRONLY, 0o644),
    );
    t.res("open_under_file", &sys::open(&f.join("x"), O_RDONLY, 0));
    t.res("open_dir_wronly", &sys::open(&sub, O_WRONLY, 0));
    t.res("open_dir_rdwr", &sys::open(&sub, O_RDWR, 0));
    t.res("open_dir_rdonly", &sys::open(&sub, O_RDONLY, 0));
    t.res(
        "open_dir_creat",
        &sys::open(&sub, O_CREAT | O_WRONLY, 0o644),
    );
    t.res(
        "open_dir_creat_excl",
        &sys::open(&sub, O_CREAT | O_EXCL | O_WRONLY, 0o644),
    );
    t.res(
        "o_directory_on_file",
        &sys::open(&f, O_RDONLY | O_DIRECTORY, 0),
    );
    t.res(
        "o_directory_on_dir",
        &sys::open(&sub, O_RDONLY | O_DIRECTORY, 0),
    );

    let r = sys::open(&f, O_WRONLY, 0).and_then(|fd| sys::read(&fd, 4));
    t.res("read_on_wronly", &r);
    let r = sys::open(&f, O_RDONLY, 0).and_then(|fd| sys::write(&fd, b"x"));
    t.res("write_on_rdonly", &r);

    let n255 = "n".repeat(255);
    let r = sys::open(&d.join(&n255), O_CREAT | O_WRONLY, 0o644);
    t.res("name_255", &r);
    let r = sys::open(&d.join(format!("{n255}x")), O_CREAT | O_WRONLY, 0o644);
    t.res("name_256", &r);
}

/// read/write/pread/pwrite at offsets, lseek, short reads and EOF reads,
/// and a multi-megabyte unaligned write read back.
pub fn scenario_rw_offsets(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "rw_offsets", t);
    let f = d.join("file");
    let fd = match sys::open(&f, O_CREAT | O_RDWR, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            t.res("open", &Err::<(), _>(e));
            return;
        }
    };
    t.res_with("pwrite_0", &sys::pwrite(&fd, b"0123456789", 0), |n| {
        format!("n={n}")
    });
    t.res_with("pwrite_20", &sys::pwrite(&fd, b"abc", 20), |n| {
        format!("n={n}")
    });
    t.res_with("fstat", &sys::fstat(&fd), size);
    t.res_with("pread_all", &sys::pread(&fd, 64, 0), |b| show(b));
    t.res_with("pread_short", &sys::pread(&fd, 10, 20), |b| show(b));
    t.res_with("pread_at_eof", &sys::pread(&fd, 10, 23), |b| {
        format!("n={}", b.len())
    });
    t.res_with("pread_past_eof", &sys::pread(&fd, 10, 1000), |b| {
        format!("n={}", b.len())
    });
    t.res_with("lseek_set", &sys::lseek(&fd, 5, SEEK_SET), |p| {
        format!("pos={p}")
    });
    t.res_with("read_3", &sys::read(&fd, 3), |b| show(b));
    t.res_with("lseek_cur", &sys::lseek(&fd, 0, SEEK_CUR), |p| {
        format!("pos={p}")
    });
    t.res_with("lseek_end", &sys::lseek(&fd, -3, SEEK_END), |p| {
        format!("pos={p}")
    });
    t.res_with("read_tail", &sys::read(&fd, 10), |b| show(b));
    t.res_with("read_eof", &sys::read(&fd, 10), |b| {
        format!("n={}", b.len())
    });
    t.res("lseek_negative", &sys::lseek(&fd, -1, SEEK_SET));
    let r = sys::lseek(&fd, 30, SEEK_SET).and_then(|_| sys::write(&fd, b"xyz"));
    t.res_with("write_after_seek", &r, |n| format!("n={n}"));
    t.res_with("stat_after_write", &sys::stat(&f), size);
    t.res_with("pread_middle_gap", &sys::pread(&fd, 7, 23), |b| show(b));

    // Multi-megabyte write at an unaligned offset (crosses FUSE write
    // chunking boundaries), then a small overwrite in the middle.
    let big = pattern(3 * 1024 * 1024 + 17, 7);
    let off = 4093i64;
    // The exact count each call returns: a short write or read shows, not looped over.
    t.res_with("pwrite_big", &sys::pwrite_counted(&fd, &big, off), |c| {
        format!("calls={c:?}")
    });
    t.res_with("stat_big", &sys::fstat(&fd), size);
    t.res_with("pread_big_once", &sys::pread(&fd, big.len(), off), |b| {
        format!("n={}", b.len())
    });
    let r = sys::pread_full(&fd, big.len(), off);
    t.res_with("pread_big", &r, |b| {
        format!("{},match={}", digest(b), *b == big)
    });
    let mid = off + 1024 * 1024 - 2;
    t.res("overwrite_mid", &sys::pwrite_all(&fd, b"ZZZZ", mid));
    let r = sys::pread(&fd, 8, mid - 2);
    t.res_with("read_mid", &r, |b| {
        format!(
            "ok_window={}",
            b.len() == 8 && b.get(2..6) == Some(&b"ZZZZ"[..])
        )
    });
    let r = sys::pread_full(&fd, off as usize, 0);
    t.res_with("head_before_big", &r, |b| {
        format!("len={},head={}", b.len(), show(&b[..b.len().min(10)]))
    });
    let dfd = sys::open(&d, O_RDONLY | O_DIRECTORY, 0);
    t.res("pread_dir", &dfd.and_then(|dfd| sys::pread(&dfd, 10, 0)));
    t.res("close", &fd.close());
}

/// truncate(2) and ftruncate(2) up and down with content checks.
pub fn scenario_truncate(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "truncate", t);
    let f = d.join("file");
    t.res("create", &sys::write_file(&f, b"hello world"));
    let content = |f: &Path| sys::read_file(f);

    t.res("truncate_5", &sys::truncate(&f, 5));
    t.res_with("after_5", &content(&f), |b| show(b));
    t.res("truncate_100", &sys::truncate(&f, 100));
    t.res_with("after_100", &content(&f), |b| {
        format!(
            "len={},{},rest_zero={}",
            b.len(),
            show(&b[..b.len().min(5)]),
            all_zero(&b[b.len().min(5)..])
        )
    });
    let fd = match sys::open(&f, O_RDWR, 0) {
        Ok(fd) => fd,
        Err(e) => {
            t.res("open", &Err::<(), _>(e));
            return;
        }
    };
    t.res("ftruncate_3", &sys::ftruncate(&fd, 3));
    t.res_with("fstat_3", &sys::fstat(&fd), size);
    t.res_with("stat_3", &sys::stat(&f), size);
    t.res_with("after_3", &sys::pread_to_end(&fd), |b| show(b));
    t.res("ftruncate_8192", &sys::ftruncate(&fd, 8192));
    t.res_with("after_8192", &sys::pread_to_end(&fd), |b| {
        format!(
            "len={},{},rest_zero={}",
            b.len(),
            show(&b[..b.len().min(3)]),
            all_zero(&b[b.len().min(3)..])
        )
    });
    // Shrink then grow: the cut-off bytes must come back as zeros.
    let r = (|| -> SysResult<Vec<u8>> {
        sys::pwrite_all(&fd, b"abcdefgh", 0)?;
        sys::ftruncate(&fd, 2)?;
        sys::ftruncate(&fd, 8)?;
        sys::pread_to_end(&fd)
    })();
    t.res_with("shrink_grow", &r, |b| show(b));
    // Truncate by path while an fd has cached data.
    let r = (|| -> SysResult<String> {
        sys::pwrite_all(&fd, &pattern(10000, 3), 0)?;
        sys::truncate(&f, 10)?;
        let b = sys::pread(&fd, 100, 0)?;
        Ok(format!("n={}", b.len()))
    })();
    t.res_with("path_truncate_seen_by_fd", &r, String::clone);
    // Writing past EOF after a shrink extends with zeros.
    let r = (|| -> SysResult<String> {
        sys::ftruncate(&fd, 4)?;
        sys::pwrite_all(&fd, b"END", 10)?;
        let b = sys::pread_to_end(&fd)?;
        Ok(format!(
            "len={},gap_zero={}",
            b.len(),
            b.get(4..10).is_some_and(all_zero)
        ))
    })();
    t.res_with("write_past_eof_after_shrink", &r, String::clone);
    t.res("truncate_0", &sys::truncate(&f, 0));
    t.res_with("stat_0", &sys::stat(&f), size);
    t.res("truncate_missing", &sys::truncate(&d.join("missing"), 1));
    t.res("truncate_dir", &sys::truncate(&d, 1));
    t.res("truncate_negative", &sys::truncate(&f, -1));
    let r = sys::open(&f, O_RDONLY, 0).and_then(|fd| sys::ftruncate(&fd, 1));
    t.res("ftruncate_rdonly", &r);
    t.res("close", &fd.close());
}

/// A file stays usable through an open fd after its last name is removed.
pub fn scenario_unlinked_open(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "unlinked_open", t);
    let f = d.join("file");
    let fd = match sys::open(&f, O_CREAT | O_RDWR, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            t.res("open", &Err::<(), _>(e));
            return;
        }
    };
    t.res("write", &sys::pwrite_all(&fd, b"before unlink", 0));
    t.res("unlink", &sys::unlink(&f));
    t.res("stat_path", &sys::stat(&f));
    t.res_with("fstat", &sys::fstat(&fd), |st| {
        format!("nlink={},{}", st.st_nlink, size(st))
    });
    t.res_with("read_back", &sys::pread_to_end(&fd), |b| show(b));
    t.res("write_more", &sys::pwrite_all(&fd, b" and after", 13));
    t.res_with("read_more", &sys::pread_to_end(&fd), |b| show(b));
    t.res_with("fstat_more", &sys::fstat(&fd), |st| {
        format!("nlink={},{}", st.st_nlink, size(st))
    });
    t.res("recreate_name", &sys::write_file(&f, b"new"));
    t.res_with("new_is_independent", &sys::read_file(&f), |b| show(b));
    t.res_with("old_unchanged", &sys::pread_to_end(&fd), |b| show(b));
    t.res_with("listing", &sys::list_names(&d), |n| n.join(","));
    t.res("ftruncate_unlinked", &sys::ftruncate(&fd, 6));
    t.res_with("after_ftruncate", &sys::pread_to_end(&fd), |b| show(b));
    t.res("close", &fd.close());
    t.res_with("listing_after_close", &sys::list_names(&d), |n| n.join(","));
}

/// fsync/fdatasync on files and directories.
pub fn scenario_fsync(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "fsync", t);
    let f = d.join("file");
    match sys::open(&f, O_CREAT | O_RDWR, 0o644) {
        Ok(fd) => {
            t.res("write", &sys::pwrite_all(&fd, b"durable", 0));
            t.res("fsync", &sys::fsync(&fd));
            t.res("fdatasync", &sys::fdatasync(&fd));
            t.res("close", &fd.close());
        }
        Err(e) => t.res("open", &Err::<(), _>(e)),
    }
    let r = sys::open(&f, O_RDONLY, 0).and_then(|fd| sys::fsync(&fd));
    t.res("fsync_rdonly", &r);
    let r = sys::open(&d, O_RDONLY | O_DIRECTORY, 0).and_then(|fd| sys::fsync(&fd));
    t.res("fsync_dir", &r);
    let r = sys::open(&d, O_RDONLY | O_DIRECTORY, 0).and_then(|fd| sys::fdatasync(&fd));
    t.res("fdatasync_dir", &r);
    t.res_with("content", &sys::read_file(&f), |b| show(b));
}
