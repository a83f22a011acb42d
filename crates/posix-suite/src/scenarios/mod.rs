//! Scenario implementations and helpers shared between them.

pub(crate) mod attrs;
pub(crate) mod dirs;
pub(crate) mod files;
pub(crate) mod links;
pub(crate) mod locks;
pub(crate) mod multi;
pub(crate) mod perms;
pub(crate) mod rename;
pub(crate) mod sparse;
pub(crate) mod xattrs;

use crate::child::ChildOutput;
use crate::sys::{self, Stat};
use crate::Transcript;
use std::path::{Path, PathBuf};

/// Starts scenario `name`: sets the transcript scope and creates
/// `dir/name` with mode 0755 (explicitly, independent of the umask).
pub(crate) fn setup(dir: &Path, name: &str, t: &mut Transcript) -> PathBuf {
    t.set_scope(name);
    let p = dir.join(name);
    let r = sys::mkdir(&p, 0o755).and_then(|_| sys::chmod(&p, 0o755));
    t.res("setup", &r);
    p
}

/// Short name of the file type in `mode`.
pub(crate) fn ftype(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "reg",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "lnk",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "chr",
        libc::S_IFBLK => "blk",
        libc::S_IFSOCK => "sock",
        _ => "unknown",
    }
}

/// Permission bits (including setuid/setgid/sticky) as 4 octal digits.
pub(crate) fn perm(st: &Stat) -> String {
    format!("{:04o}", st.st_mode & 0o7777)
}

/// `type=..,mode=....`
pub(crate) fn type_mode(st: &Stat) -> String {
    format!("type={},mode={}", ftype(st.st_mode), perm(st))
}

/// `uid=..,gid=..`
pub(crate) fn owner(st: &Stat) -> String {
    format!("uid={},gid={}", st.st_uid, st.st_gid)
}

/// `size=..`
pub(crate) fn size(st: &Stat) -> String {
    format!("size={}", st.st_size)
}

/// Escaped rendering of (small) file contents: `data=...`.
pub(crate) fn show(data: &[u8]) -> String {
    let s: String = data
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    format!("data={s}")
}

/// FNV-1a 64-bit checksum, hex.
pub(crate) fn fnv(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `len=..,fnv=..` summary of larger contents.
pub(crate) fn digest(data: &[u8]) -> String {
    format!("len={},fnv={}", data.len(), fnv(data))
}

/// True when every byte is zero.
pub(crate) fn all_zero(data: &[u8]) -> bool {
    data.iter().all(|b| *b == 0)
}

/// Deterministic non-zero byte pattern.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed) | 1)
        .collect()
}

/// Records the lines printed by a python child (prefixed by `prefix`), and
/// a `<prefix>run` step if the child did not finish cleanly.
pub(crate) fn record_child(t: &mut Transcript, prefix: &str, out: ChildOutput) {
    for (name, outcome) in out.lines {
        t.record(&format!("{prefix}{name}"), outcome);
    }
    if let Some(e) = out.failure {
        t.record(&format!("{prefix}run"), format!("child_failed:{e}"));
    }
}
