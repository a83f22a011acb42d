//! Large sparse files, SEEK_DATA/SEEK_HOLE and fallocate(2) modes.

use super::{all_zero, digest, pattern, setup, show, size};
use crate::sys::{self, SysResult};
use crate::Transcript;
use libc::{O_CREAT, O_RDWR, SEEK_DATA, SEEK_HOLE};
use std::path::Path;

const GIB: i64 = 1024 * 1024 * 1024;
const REGION2: i64 = 64 * 1024 * 1024;

/// A few bytes written at 5 GiB: size, read-back, zero holes, SEEK_DATA /
/// SEEK_HOLE results and sparse allocation (`st_blocks*512 < size`).
pub fn scenario_sparse(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "sparse", t);
    let f = d.join("big");
    let fd = match sys::open(&f, O_CREAT | O_RDWR, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            t.res("open", &Err::<(), _>(e));
            return;
        }
    };
    let off = 5 * GIB;
    t.res_with("pwrite_5g", &sys::pwrite(&fd, b"weft", off), |n| {
        format!("n={n}")
    });
    t.res_with("fstat", &sys::fstat(&fd), size);
    t.res_with("stat", &sys::stat(&f), size);
    t.res_with("read_back", &sys::pread(&fd, 4, off), |b| show(b));
    t.res_with("read_across_hole_edge", &sys::pread(&fd, 6, off - 2), |b| {
        show(b)
    });
    t.res_with("read_hole_1g", &sys::pread(&fd, 4096, GIB), |b| {
        format!("n={},zero={}", b.len(), all_zero(b))
    });
    t.res_with("read_hole_start", &sys::pread(&fd, 65536, 0), |b| {
        format!("n={},zero={}", b.len(), all_zero(b))
    });
    t.res_with("read_at_eof", &sys::pread(&fd, 16, off + 4), |b| {
        format!("n={}", b.len())
    });
    t.res_with("blocks", &sys::fstat(&fd), |st| {
        format!("blocks_lt_size={}", st.st_blocks * 512 < st.st_size)
    });
    let seek = |o: i64, w: i32| sys::lseek(&fd, o, w);
    t.res_with("seek_data_0", &seek(0, SEEK_DATA), |p| format!("off={p}"));
    t.res_with("seek_hole_0", &seek(0, SEEK_HOLE), |p| format!("off={p}"));
    t.res_with("seek_hole_in_data", &seek(off, SEEK_HOLE), |p| {
        format!("off={p}")
    });
    t.res_with("seek_data_in_data", &seek(off + 1, SEEK_DATA), |p| {
        format!("off={p}")
    });
    t.res("seek_data_at_eof", &seek(off + 4, SEEK_DATA));
    t.res("seek_data_past_eof", &seek(6 * GIB, SEEK_DATA));
    t.res("seek_hole_past_eof", &seek(6 * GIB, SEEK_HOLE));

    // Second data region at 64 MiB: SEEK_DATA finds it first; the hole after
    // it starts somewhere past it (granularity is filesystem specific).
    t.res("pwrite_64m", &sys::pwrite_all(&fd, b"x", REGION2));
    t.res_with("seek_data_0_two_regions", &seek(0, SEEK_DATA), |p| {
        format!("off={p}")
    });
    t.res_with("seek_hole_after_64m", &seek(REGION2, SEEK_HOLE), |p| {
        format!("in_range={}", *p > REGION2 && *p <= off)
    });
    t.res_with("seek_data_after_hole", &seek(2 * GIB, SEEK_DATA), |p| {
        format!("off={p}")
    });
    t.res("truncate_small", &sys::ftruncate(&fd, 16));
    t.res_with("after_truncate", &sys::fstat(&fd), size);
    t.res("close", &fd.close());
    t.res("unlink", &sys::unlink(&f));
}

const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE;

/// fallocate modes: 0 extends, KEEP_SIZE does not, PUNCH_HOLE|KEEP_SIZE and
/// ZERO_RANGE zero ranges; invalid combinations.
pub fn scenario_fallocate(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "fallocate", t);
    let f = d.join("file");
    let fd = match sys::open(&f, O_CREAT | O_RDWR, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            t.res("open", &Err::<(), _>(e));
            return;
        }
    };
    t.res("alloc_0_8192", &sys::fallocate(&fd, 0, 0, 8192));
    t.res_with("size_after_alloc", &sys::fstat(&fd), size);
    t.res_with("content_after_alloc", &sys::pread_to_end(&fd), |b| {
        format!("len={},zero={}", b.len(), all_zero(b))
    });
    t.res("keep_size_alloc", &sys::fallocate(&fd, KEEP, 8192, 8192));
    t.res_with("size_after_keep", &sys::fstat(&fd), size);

    let data = pattern(16384, 11);
    t.res("write_pattern", &sys::pwrite_all(&fd, &data, 0));
    t.res(
        "punch_4096_4096",
        &sys::fallocate(&fd, PUNCH | KEEP, 4096, 4096),
    );
    t.res_with("size_after_punch", &sys::fstat(&fd), size);
    let mut expect = data.clone();
    expect[4096..8192].fill(0);
    t.res_with("content_after_punch", &sys::pread_to_end(&fd), |b| {
        format!("{},as_expected={}", digest(b), *b == expect)
    });
    t.res(
        "punch_unaligned",
        &sys::fallocate(&fd, PUNCH | KEEP, 10000, 100),
    );
    expect[10000..10100].fill(0);
    t.res_with(
        "content_after_punch_unaligned",
        &sys::pread_to_end(&fd),
        |b| format!("{},as_expected={}", digest(b), *b == expect),
    );
    t.res(
        "zero_range_1000_3000",
        &sys::fallocate(&fd, ZERO, 1000, 3000),
    );
    expect[1000..4000].fill(0);
    t.res_with("content_after_zero", &sys::pread_to_end(&fd), |b| {
        format!("{},as_expected={}", digest(b), *b == expect)
    });
    t.res_with("size_after_zero", &sys::fstat(&fd), size);
    t.res("zero_range_extend", &sys::fallocate(&fd, ZERO, 16384, 4096));
    t.res_with("size_after_zero_extend", &sys::fstat(&fd), size);
    t.res(
        "zero_range_keep_past_eof",
        &sys::fallocate(&fd, ZERO | KEEP, 20480, 4096),
    );
    t.res_with("size_after_zero_keep", &sys::fstat(&fd), size);
    t.res("alloc_past_eof", &sys::fallocate(&fd, 0, 20480, 100));
    t.res_with("size_after_alloc_past_eof", &sys::fstat(&fd), size);
    let r = (|| -> SysResult<String> {
        let b = sys::pread_to_end(&fd)?;
        Ok(format!(
            "len={},tail_zero={},head_ok={}",
            b.len(),
            all_zero(&b[16384.min(b.len())..]),
            b.len() >= 16384 && b[..16384] == expect[..]
        ))
    })();
    t.res_with("content_final", &r, String::clone);
    t.res("punch_without_keep", &sys::fallocate(&fd, PUNCH, 0, 4096));
    t.res("zero_len", &sys::fallocate(&fd, 0, 0, 0));
    t.res("negative_offset", &sys::fallocate(&fd, 0, -1, 10));
    t.res("close", &fd.close());
}
