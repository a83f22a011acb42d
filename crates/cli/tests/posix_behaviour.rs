//! The POSIX behaviour suite: every scenario runs on a real FUSE mount of a one-brick volume
//! and on a plain local directory, and both must give the same results and errno values,
//! pass the suite's absolute checks, and leave the mount alive. The graphs include
//! features/locks, so fcntl, OFD and flock locks are Weft's, not the kernel's.

mod common;

use common::*;

#[test]
fn mount_behaves_like_a_local_directory() {
    let vol = Volume::new("posix");
    std::fs::write(
        &vol.volfile,
        format!(
            "volume px-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
             volume px-locks\n    type features/locks\n    subvolumes px-posix\nend-volume\n\n\
             volume px\n    type debug/io-stats\n    subvolumes px-locks\nend-volume\n",
            vol.brick.display()
        ),
    )
    .unwrap();
    let m = vol.mount();
    assert_behaves_like_local(&vol.mnt, &m);
}

#[test]
fn with_write_behind_the_mount_still_behaves_like_a_local_directory() {
    let vol = Volume::new("posix-wb");
    std::fs::write(
        &vol.volfile,
        format!(
            "volume wb-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
             volume wb-locks\n    type features/locks\n    subvolumes wb-posix\nend-volume\n\n\
             volume wb\n    type performance/write-behind\n    subvolumes wb-locks\nend-volume\n",
            vol.brick.display()
        ),
    )
    .unwrap();
    let m = vol.mount();
    assert_behaves_like_local(&vol.mnt, &m);
}

/// The harness notices a mount that died: the scenario's comparison reports it (before,
/// later scenarios would have compared a bare directory with a bare directory).
#[test]
fn a_mount_that_dies_fails_the_comparison() {
    let vol = Volume::new("posix-dead");
    let m = vol.mount();
    let local = scratch("posix-dead-local");
    let expected = weft_posix_suite::run_one(local.path(), "fsync").unwrap();
    let run = || weft_posix_suite::run_one(&vol.mnt, "fsync").unwrap();
    assert_eq!(
        compare_scenario("fsync", &expected, run, &[&m]),
        Vec::<String>::new()
    );
    // SAFETY: kill(2) on the mount process this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let problems = compare_scenario("fsync", &expected, Vec::new, &[&m]);
    assert!(
        problems.iter().any(|p| p.contains("after the scenario")),
        "{problems:#?}"
    );
    // An empty transcript fails the absolute checks even where a diff of two empty
    // directories' transcripts would not.
    assert!(
        problems.iter().any(|p| p.contains("fsync.setup")),
        "{problems:#?}"
    );
}
