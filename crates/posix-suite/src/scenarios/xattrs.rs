//! Extended attributes in the `user.` namespace.

use super::{setup, show};
use crate::sys::{self, SysResult, X};
use crate::Transcript;
use libc::{O_RDONLY, XATTR_CREATE, XATTR_REPLACE};
use std::path::Path;

/// Sorted names of every namespace from a listxattr buffer (an internal `trusted.weft.*`
/// name shows, and [`crate::check`] refuses it).
fn all_names(buf: &[u8]) -> String {
    let mut names: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    format!("names=[{}]", names.join(","))
}

fn list(p: &Path) -> SysResult<String> {
    let (n, _) = sys::listxattr(p, 0)?;
    let (m, buf) = sys::listxattr(p, n.max(1) + 256)?;
    Ok(format!("{},size_query_matches={}", all_names(&buf), m == n))
}

fn get(p: &Path, name: &str) -> SysResult<(usize, Vec<u8>)> {
    sys::getxattr(X::Path(p), name, 65536)
}

fn value((_, v): &(usize, Vec<u8>)) -> String {
    show(v)
}

/// set/get/list/remove of user xattrs with XATTR_CREATE/REPLACE, size
/// queries, ERANGE/ENODATA cases, binary values, fd and directory variants.
pub fn scenario_xattrs(dir: &Path, t: &mut Transcript) {
    let d = setup(dir, "xattrs", t);
    let f = d.join("file");
    t.res("create", &sys::write_file(&f, b"x"));
    let x = X::Path(&f);
    t.res("set_alpha", &sys::setxattr(x, "user.alpha", b"one", 0));
    t.res_with("get_alpha", &get(&f, "user.alpha"), value);
    let r = sys::getxattr(x, "user.alpha", 0);
    t.res_with("size_query", &r, |(n, _)| format!("len={n}"));
    t.res("set_empty", &sys::setxattr(x, "user.beta", b"", 0));
    t.res_with("get_empty", &get(&f, "user.beta"), |(n, v)| {
        format!("len={n},{}", show(v))
    });
    t.res_with("list", &list(&f), String::clone);
    let r = sys::listxattr(&f, 1);
    t.res("list_too_small", &r);

    t.res(
        "create_existing",
        &sys::setxattr(x, "user.alpha", b"x", XATTR_CREATE),
    );
    t.res(
        "replace_missing",
        &sys::setxattr(x, "user.gamma", b"x", XATTR_REPLACE),
    );
    t.res("get_after_failed_replace", &get(&f, "user.gamma"));
    t.res(
        "create_new",
        &sys::setxattr(x, "user.gamma", b"g", XATTR_CREATE),
    );
    t.res(
        "replace_existing",
        &sys::setxattr(x, "user.alpha", b"two-two", XATTR_REPLACE),
    );
    t.res_with("get_replaced", &get(&f, "user.alpha"), value);
    t.res("overwrite_plain", &sys::setxattr(x, "user.gamma", b"gg", 0));
    t.res_with("get_overwritten", &get(&f, "user.gamma"), value);
    t.res("get_too_small", &sys::getxattr(x, "user.alpha", 2));
    t.res_with("get_exact_size", &sys::getxattr(x, "user.alpha", 7), value);

    t.res("remove", &sys::removexattr(&f, "user.alpha"));
    t.res("get_removed", &get(&f, "user.alpha"));
    t.res("remove_again", &sys::removexattr(&f, "user.alpha"));
    t.res("get_never_set", &get(&f, "user.never"));
    t.res("size_query_missing", &sys::getxattr(x, "user.never", 0));
    t.res_with("list_after_remove", &list(&f), String::clone);

    let bin: Vec<u8> = vec![0, 1, 2, 0xff, 0, b'z', 0x80, 0];
    t.res("set_binary", &sys::setxattr(x, "user.bin", &bin, 0));
    t.res_with("get_binary", &get(&f, "user.bin"), |(n, v)| {
        format!("len={n},exact={}", *v == bin)
    });
    let big: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
    t.res("set_3000", &sys::setxattr(x, "user.big", &big, 0));
    t.res_with("get_3000", &get(&f, "user.big"), |(n, v)| {
        format!("len={n},exact={}", *v == big)
    });

    let r = sys::open(&f, O_RDONLY, 0).and_then(|fd| {
        sys::setxattr(X::Fd(&fd), "user.viafd", b"fd", 0)?;
        sys::getxattr(X::Fd(&fd), "user.viafd", 64)
    });
    t.res_with("fd_set_get", &r, value);
    t.res_with("fd_value_via_path", &get(&f, "user.viafd"), value);

    let sub = d.join("sub");
    t.res("mkdir", &sys::mkdir(&sub, 0o755));
    t.res(
        "set_on_dir",
        &sys::setxattr(X::Path(&sub), "user.dir", b"d", 0),
    );
    t.res_with("get_on_dir", &get(&sub, "user.dir"), value);
    t.res_with("list_dir", &list(&sub), String::clone);

    let l = d.join("link");
    t.res("symlink", &sys::symlink(b"file", &l));
    t.res(
        "lset_on_symlink",
        &sys::setxattr(X::Link(&l), "user.l", b"l", 0),
    );
    t.res_with("get_through_symlink", &get(&l, "user.gamma"), value);
    t.res(
        "lget_on_symlink",
        &sys::getxattr(X::Link(&l), "user.gamma", 64),
    );

    t.res("rename", &sys::rename(&f, &d.join("renamed")));
    t.res_with(
        "survives_rename",
        &get(&d.join("renamed"), "user.gamma"),
        value,
    );
    t.res("missing_file", &get(&d.join("missing"), "user.gamma"));
    // Weft's own xattrs are never visible through a mount.
    let g = d.join("renamed");
    t.res("get_internal_gfid", &get(&g, "trusted.weft.gfid"));
    t.res("get_internal_dir", &get(&sub, "trusted.weft.gfid"));
}
