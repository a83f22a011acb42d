//! Weft POSIX behaviour suite.
//!
//! Runs a fixed set of filesystem scenarios inside a directory using raw
//! syscalls and records a [`Transcript`] of normalized outcomes (`ok`,
//! `ok:size=4096`, `err:ENOENT`, ...). Running the suite on a Weft FUSE mount
//! and on a local directory and comparing the two transcripts with [`diff`]
//! shows where Weft deviates from the kernel's local filesystem semantics.
//!
//! Outcomes never contain values that legitimately differ between
//! filesystems (inode numbers, devices, current times, exact block counts,
//! directory order); such facts are recorded in normalized form.
//!
//! The suite expects to run as root: some scenarios chown files, create
//! device nodes, and drop to uid/gid 65534 in a `python3` child process.
//!
//! # Requirements on the directory under test
//!
//! - Its ancestors must be traversable by uid 65534 (mode 0755 or more);
//!   the suite makes its own subdirectories 0755 but never touches ancestors.
//! - A FUSE mount must be mounted with `allow_other` (root's python children
//!   and uid 65534 access it) and `default_permissions` (or equivalent
//!   permission checks in the filesystem), and without `nodev`-style
//!   restrictions on *creating* device nodes (they are never opened).
//! - Features exercised: user xattrs, fallocate (including punch hole and
//!   zero range), SEEK_DATA/SEEK_HOLE, renameat2 NOREPLACE and EXCHANGE,
//!   mknod of FIFOs/char devices/sockets, POSIX and flock locks, sub-second
//!   timestamps, 5 GiB sparse files.
//! - `python3` must be available (preferably `/usr/bin/python3`, which an
//!   unprivileged user can execute).

#![deny(missing_docs)]

mod check;
mod child;
mod scenarios;
mod sys;
mod transcript;

use std::path::Path;

pub use check::check;
pub use scenarios::attrs::{
    scenario_chmod, scenario_chown, scenario_ctime, scenario_mknod, scenario_utimes,
};
pub use scenarios::dirs::{scenario_big_dir, scenario_mkdir_rmdir, scenario_statfs};
pub use scenarios::files::{
    scenario_fsync, scenario_open_flags, scenario_rw_offsets, scenario_truncate,
    scenario_unlinked_open,
};
pub use scenarios::links::{scenario_hardlinks, scenario_symlinks};
pub use scenarios::locks::{scenario_fcntl_locks, scenario_flock};
pub use scenarios::multi::{
    multi_appends, multi_coherence, multi_lock_handoff, multi_locked_counter,
};
pub use scenarios::perms::scenario_permissions;
pub use scenarios::rename::scenario_rename;
pub use scenarios::sparse::{scenario_fallocate, scenario_sparse};
pub use scenarios::xattrs::scenario_xattrs;
pub use sys::{with_sides, SysResult};
pub use transcript::{diff, errno_name, outcome, outcome_with, Step, Transcript};

/// Signature shared by all scenarios: run inside `dir` (each scenario uses
/// its own subdirectory named after it) and record steps into the transcript.
pub type ScenarioFn = fn(&Path, &mut Transcript);

/// Every scenario, by name, in the order [`run_all`] runs them. The name is
/// also the scenario's subdirectory and the prefix of its step names.
pub const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("open_flags", scenario_open_flags),
    ("rw_offsets", scenario_rw_offsets),
    ("truncate", scenario_truncate),
    ("sparse", scenario_sparse),
    ("fallocate", scenario_fallocate),
    ("rename", scenario_rename),
    ("hardlinks", scenario_hardlinks),
    ("symlinks", scenario_symlinks),
    ("chmod", scenario_chmod),
    ("chown", scenario_chown),
    ("utimes", scenario_utimes),
    ("ctime", scenario_ctime),
    ("mknod", scenario_mknod),
    ("xattrs", scenario_xattrs),
    ("big_dir", scenario_big_dir),
    ("unlinked_open", scenario_unlinked_open),
    ("fsync", scenario_fsync),
    ("statfs", scenario_statfs),
    ("fcntl_locks", scenario_fcntl_locks),
    ("flock", scenario_flock),
    ("permissions", scenario_permissions),
    ("mkdir_rmdir", scenario_mkdir_rmdir),
];

/// Runs one scenario by name inside `dir`, returning its steps, or `None`
/// if no scenario has that name.
pub fn run_one(dir: &Path, name: &str) -> Option<Vec<Step>> {
    let (_, f) = SCENARIOS.iter().find(|(n, _)| *n == name)?;
    let mut t = Transcript::new();
    f(dir, &mut t);
    Some(t.into_steps())
}

/// Runs one scenario by name with its steps spread over two clients: `a` and `b` are
/// the same directory seen through two mounts, and every path-taking call alternates
/// between them (see [`with_sides`]); descriptors stay where they were opened. On one
/// local directory (`a == b`) this is [`run_one`]. `None` for an unknown name.
pub fn run_one_two(a: &Path, b: &Path, name: &str) -> Option<Vec<Step>> {
    with_sides(a, b, || run_one(a, name))
}

/// Signature of the multi-client scenarios: `a` and `b` are the same directory seen by
/// two clients (one local directory twice for the reference run).
pub type MultiFn = fn(&Path, &Path, &mut Transcript);

/// The scenarios that need two clients, by name (also their subdirectory).
pub const MULTI: &[(&str, MultiFn)] = &[
    ("mc_coherence", multi_coherence),
    ("mc_lock_handoff", multi_lock_handoff),
    ("mc_appends", multi_appends),
    ("mc_locked_counter", multi_locked_counter),
];

/// Runs one multi-client scenario by name on `a` and `b`, or `None` for an unknown name.
pub fn run_multi(a: &Path, b: &Path, name: &str) -> Option<Vec<Step>> {
    let (_, f) = MULTI.iter().find(|(n, _)| *n == name)?;
    let mut t = Transcript::new();
    f(a, b, &mut t);
    Some(t.into_steps())
}

/// Runs every scenario inside `dir` (an empty, existing directory, which the
/// suite may fill) and returns the transcript.
pub fn run_all(dir: &Path) -> Vec<Step> {
    let mut t = Transcript::new();
    for (_, f) in SCENARIOS {
        f(dir, &mut t);
    }
    t.into_steps()
}

#[cfg(test)]
mod tests;
