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
