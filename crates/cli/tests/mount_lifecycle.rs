//! A mount's life: files land as plain files on the brick with gfids and handles; SIGINT
//! and SIGTERM unmount cleanly; a detached mount reports success only once mounted; the
//! statedump answers; the kernel's read-ahead window is the one asked for.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;

fn gfid_of(p: &std::path::Path) -> Vec<u8> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = c"trusted.weft.gfid";
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n > 0, "{} has no gfid xattr", p.display());
    buf[..n as usize].to_vec()
}

#[test]
fn files_are_plain_files_on_the_brick_with_gfid_and_handle() {
    let vol = Volume::new("layout");
    let _m = vol.mount();
    std::fs::create_dir_all(vol.mnt.join("a/b/c")).unwrap();
    std::fs::write(vol.mnt.join("a/b/c/file.txt"), b"hello brick").unwrap();
    std::os::unix::fs::symlink("file.txt", vol.mnt.join("a/b/c/link")).unwrap();
    std::fs::rename(vol.mnt.join("a/b"), vol.mnt.join("a/renamed")).unwrap();

    let on_brick = vol.brick.join("a/renamed/c/file.txt");
    assert_eq!(std::fs::read(&on_brick).unwrap(), b"hello brick");
    let g = gfid_of(&on_brick);
    assert_eq!(g.len(), 16);
    let h = handle_of_gfid(&vol.brick, &g);
    assert_eq!(
        std::fs::metadata(&h).unwrap().ino(),
        std::fs::metadata(&on_brick).unwrap().ino()
    );
    // A directory's handle resolves (through parent handles) to the directory, after a rename.
    let dg = gfid_of(&vol.brick.join("a/renamed/c"));
    let dh = handle_of_gfid(&vol.brick, &dg);
    assert!(std::fs::symlink_metadata(&dh)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::metadata(&dh).unwrap().ino(),
        std::fs::metadata(vol.brick.join("a/renamed/c"))
            .unwrap()
            .ino()
    );
    // The link count seen through the mount leaves the handle out.
    assert_eq!(
        std::fs::metadata(vol.mnt.join("a/renamed/c/file.txt"))
            .unwrap()
            .nlink(),
        1
    );
    // Internal xattrs and the private folder are hidden.
    let names: Vec<String> = std::fs::read_dir(&vol.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
    assert!(std::fs::metadata(vol.mnt.join(".weft")).is_err());
    let c = std::ffi::CString::new(
        vol.mnt
            .join("a/renamed/c/file.txt")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    // SAFETY: valid C string and buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0);
    assert!(!String::from_utf8_lossy(&buf[..n as usize]).contains("weft"));
    // Unlinking the last name removes the handle too (the brick's reaper does, a moment
    // after the unlink answers).
    std::fs::remove_file(vol.mnt.join("a/renamed/c/file.txt")).unwrap();
    let start = std::time::Instant::now();
    while std::fs::symlink_metadata(&h).is_ok() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(std::fs::symlink_metadata(&h).is_err());
}

#[test]
fn files_put_on_the_brick_by_hand_are_adopted() {
    let vol = Volume::new("adopt");
    std::fs::create_dir(vol.brick.join("old")).unwrap();
    std::fs::write(vol.brick.join("old/data"), b"from before").unwrap();
    let _m = vol.mount();
    assert_eq!(
        std::fs::read(vol.mnt.join("old/data")).unwrap(),
        b"from before"
    );
    let g = gfid_of(&vol.brick.join("old/data"));
    assert!(std::fs::metadata(handle_of_gfid(&vol.brick, &g)).is_ok());
}

#[test]
fn sigint_and_sigterm_unmount_cleanly() {
    let vol = Volume::new("signals");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut m = vol.mount();
        std::fs::write(vol.mnt.join("f"), b"x").unwrap();
        let st = m.stop_with(sig);
        assert!(
            st.success(),
            "exit {st} after signal {sig}:\n{}",
            m.log_text()
        );
        assert!(!is_mounted(&vol.mnt));
    }
}

#[test]
fn detached_mount_and_statedump() {
    let vol = Volume::new("detach");
    let log = vol.dir.path().join("d.log");
    let out = weft_output(&[
        "mount",
        "--volfile",
        vol.volfile.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        vol.mnt.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            if is_mounted(&self.0) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
    }
    let _u = Umount(vol.mnt.clone());
    assert!(is_mounted(&vol.mnt));
    std::fs::write(vol.mnt.join("f"), vec![7u8; 100_000]).unwrap();
    assert_eq!(std::fs::read(vol.mnt.join("f")).unwrap().len(), 100_000);
    let out = weft_output(&["statedump", vol.mnt.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("[detach]")
            && text.contains("writev")
            && text.contains("bytes written = 100000"),
        "{text}"
    );
    assert!(text.contains("[detach-posix]"));
}

#[test]
fn trace_and_io_stats_compose_in_one_graph() {
    let vol = Volume::new("stack");
    std::fs::write(
        &vol.volfile,
        format!(
            "volume stack-posix\n  type storage/posix\n  option directory {}\nend-volume\n\
             volume stack-trace\n  type debug/trace\n  option log-level info\n  subvolumes stack-posix\nend-volume\n\
             volume stack\n  type debug/io-stats\n  subvolumes stack-trace\nend-volume\n",
            vol.brick.display()
        ),
    )
    .unwrap();
    let m = vol.mount_with(&["--log-level", "info"]);
    std::fs::write(vol.mnt.join("traced.txt"), b"abc").unwrap();
    assert!(std::fs::metadata(vol.mnt.join("missing")).is_err());
    let log = m.log_text();
    assert!(
        log.contains("stack-trace: #") && log.contains("create(") && log.contains("traced.txt"),
        "{log}"
    );
    assert!(log.contains("lookup -> ENOENT"), "{log}");
    let out = weft_output(&["statedump", vol.mnt.to_str().unwrap()]);
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        dump.contains("[stack]") && dump.contains("[stack-trace]") && dump.contains("calls traced"),
        "{dump}"
    );
    assert!(
        dump.contains("create") && dump.contains("bytes written = 3"),
        "{dump}"
    );
}

/// The mount's read-ahead window in the kernel (KiB), waiting up to 10 s for `want`
/// (the mount sets it just after it comes up).
fn read_ahead_kb(mnt: &std::path::Path, want: u32) -> u32 {
    let dev = std::fs::metadata(mnt).unwrap().dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let read = || {
        std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let start = std::time::Instant::now();
    while read() != want && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    read()
}

#[test]
fn the_read_ahead_window_is_the_one_asked_for() {
    let vol = Volume::new("readahead");
    std::fs::write(vol.brick.join("f"), vec![7u8; 3 << 20]).unwrap();
    for (args, want) in [
        (&[][..], 1024),
        (&["--read-ahead-kb", "16384"][..], 16384),
        (&["--read-ahead-kb", "512"][..], 512),
        (&["--read-ahead-kb", "0"][..], 128),
    ] {
        let _m = vol.mount_with(args);
        assert_eq!(read_ahead_kb(&vol.mnt, want), want, "weft mount {args:?}");
        // Reads through the window see the file as it is.
        assert_eq!(
            std::fs::read(vol.mnt.join("f")).unwrap(),
            vec![7u8; 3 << 20]
        );
    }
    let out = weft()
        .args(["mount", "--read-ahead-kb", "lots", "--volfile"])
        .arg(&vol.volfile)
        .arg(&vol.mnt)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--read-ahead-kb"), "{err}");
}
