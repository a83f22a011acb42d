//! The POSIX behaviour suite: every scenario runs on a real FUSE mount of a one-brick volume
//! and on a plain local directory, and both must give the same results and errno values.

mod common;

use common::*;

#[test]
fn mount_behaves_like_a_local_directory() {
    let vol = Volume::new("posix");
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
