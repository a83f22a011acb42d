//! Documented behaviours (docs/ARCHITECTURE.md) that no other test reached: each test
//! names the behaviour it checks and fails when it breaks.

mod common;

use common::*;

/// Internal `trusted.weft.*` xattrs are hidden through a mount: reading one gives
/// ENODATA, setting or removing one EPERM, and a listing leaves them out (while the
/// brick has them and a `user.*` xattr still works).
#[test]
fn internal_xattrs_are_hidden_through_a_mount() {
    let vol = Volume::new("doc-xattr");
    let m = vol.mount();
    let f = m.mnt.join("f");
    std::fs::write(&f, b"x").unwrap();
    assert_eq!(
        getxattr(&vol.brick.join("f"), "trusted.weft.gfid").map(|v| v.len()),
        Ok(16)
    );
    assert_eq!(getxattr(&f, "trusted.weft.gfid"), Err(libc::ENODATA));
    assert_eq!(getxattr(&m.mnt, "trusted.weft.gfid"), Err(libc::ENODATA));
    let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
    let val = [0u8; 16];
    for name in [c"trusted.weft.gfid", c"trusted.weft.other"] {
        // SAFETY: valid C strings and buffer.
        let r =
            unsafe { libc::setxattr(c.as_ptr(), name.as_ptr(), val.as_ptr().cast(), val.len(), 0) };
        assert_eq!(r, -1, "setxattr {name:?} accepted");
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );
        // SAFETY: valid C strings.
        let r = unsafe { libc::removexattr(c.as_ptr(), name.as_ptr()) };
        assert_eq!(r, -1, "removexattr {name:?} accepted");
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );
    }
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(c.as_ptr(), c"user.k".as_ptr(), val.as_ptr().cast(), 3, 0) };
    assert_eq!(r, 0);
    let mut buf = [0u8; 4096];
    // SAFETY: valid C string and buffer.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n > 0);
    let names: Vec<&[u8]> = buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(names, vec![&b"user.k"[..]]);
    // The brick's gfid is unchanged by the refused calls.
    assert_eq!(
        getxattr(&vol.brick.join("f"), "trusted.weft.gfid").map(|v| v.len()),
        Ok(16)
    );
    m.alive().unwrap();
}
