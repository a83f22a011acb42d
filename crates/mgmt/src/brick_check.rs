//! Checks a node makes of a brick directory of its own before a volume may use it, and the
//! marker xattr that says which volume a brick belongs to. The checks change nothing; the
//! marker is written once the volume exists (see `reconcile`).

use std::path::{Component, Path};

/// The xattr on a brick root naming the volume (its id) the brick belongs to.
pub const MARKER_XATTR: &str = "trusted.weft.volume-id";

/// The volume id a brick root is marked with, if any.
pub fn marker(path: &Path) -> Option<String> {
    match xattr::get(path, MARKER_XATTR) {
        Ok(Some(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    }
}

/// Marks `path` as a brick of volume `id`.
pub fn set_marker(path: &Path, id: &str) -> std::io::Result<()> {
    xattr::set(path, MARKER_XATTR, id.as_bytes())
}

/// Removes the marker (the volume was deleted); a missing marker is not an error.
pub fn clear_marker(path: &Path) -> std::io::Result<()> {
    match xattr::remove(path, MARKER_XATTR) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Checks that `path` can become a new brick on this node: an absolute, normal path that
/// is not `/`; no brick marker on it or on any folder above it; if it exists, a real
/// directory (not a symlink), and empty unless `force`. A missing directory is created when
/// the volume is made. The error says which rule failed.
pub fn check_new_brick(path: &str, force: bool) -> Result<(), String> {
    check_brick_path(path)?;
    let p = Path::new(path);
    for a in p.ancestors().skip(1) {
        if let Some(id) = marker(a) {
            return Err(format!(
                "brick {path} is inside {} which is a brick of volume id {id}",
                a.display()
            ));
        }
    }
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => Err(format!("brick path {path} is a symbolic link")),
        Ok(m) if !m.is_dir() => Err(format!("brick path {path} exists and is not a directory")),
        Ok(_) => {
            if let Some(id) = marker(p) {
                return Err(format!(
                    "{path} is already part of a volume (volume id {id})"
                ));
            }
            let mut entries = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read brick directory {path}: {e}"))?;
            if !force && entries.next().is_some() {
                return Err(format!(
                    "brick directory {path} is not empty (use force to use it anyway)"
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut up = p.parent();
            while let Some(a) = up {
                match std::fs::symlink_metadata(a) {
                    Ok(m) if m.is_dir() => return Ok(()),
                    Ok(_) => {
                        return Err(format!(
                            "{} (above brick {path}) is not a directory",
                            a.display()
                        ))
                    }
                    Err(_) => up = a.parent(),
                }
            }
            Ok(())
        }
        Err(e) => Err(format!("cannot check brick path {path}: {e}")),
    }
}

/// Checks the form of a brick path alone (no filesystem access): absolute, normal, not `/`.
pub fn check_brick_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("brick path {path} is not absolute"));
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || path.contains("//")
        || (path.len() > 1 && path.ends_with('/'))
    {
        return Err(format!(
            "brick path {path} is not in normal form (no //, ., .. or trailing /)"
        ));
    }
    if p == Path::new("/") {
        return Err("the root directory cannot be a brick".into());
    }
    Ok(())
}

/// The data files under brick directory `root`: regular files other than distribute's
/// empty link files (mode `---------T`, size 0), outside Weft's own `.weft` folder. Their
/// number and the relative paths of the first `sample` of them.
pub fn data_files(root: &str, sample: usize) -> std::io::Result<(u64, Vec<String>)> {
    use std::os::unix::fs::PermissionsExt;
    let root = std::path::Path::new(root);
    let mut count = 0u64;
    let mut first = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let p = e.path();
            if dir == root && e.file_name() == ".weft" {
                continue;
            }
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if m.is_dir() {
                stack.push(p);
            } else if !(m.is_file() && m.permissions().mode() & 0o7777 == 0o1000 && m.len() == 0) {
                count += 1;
                if first.len() < sample {
                    first.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
                }
            }
        }
    }
    Ok((count, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_str().unwrap();
        assert!(check_new_brick("rel/b", false)
            .unwrap_err()
            .contains("not absolute"));
        assert!(check_new_brick(&format!("{root}/a/../b"), false)
            .unwrap_err()
            .contains("normal form"));
        check_new_brick(&format!("{root}/new/deeper"), false).unwrap();
        std::fs::create_dir(format!("{root}/full")).unwrap();
        std::fs::write(format!("{root}/full/x"), b"x").unwrap();
        assert!(check_new_brick(&format!("{root}/full"), false)
            .unwrap_err()
            .contains("not empty"));
        check_new_brick(&format!("{root}/full"), true).unwrap();
        std::fs::write(format!("{root}/file"), b"x").unwrap();
        assert!(check_new_brick(&format!("{root}/file"), true)
            .unwrap_err()
            .contains("not a directory"));
        std::os::unix::fs::symlink("/tmp", format!("{root}/link")).unwrap();
        assert!(check_new_brick(&format!("{root}/link"), true)
            .unwrap_err()
            .contains("symbolic link"));
        std::fs::create_dir(format!("{root}/b1")).unwrap();
        if set_marker(Path::new(&format!("{root}/b1")), "vid").is_ok() {
            assert!(check_new_brick(&format!("{root}/b1"), true)
                .unwrap_err()
                .contains("already part of a volume"));
            assert!(check_new_brick(&format!("{root}/b1/sub"), true)
                .unwrap_err()
                .contains("inside"));
            clear_marker(Path::new(&format!("{root}/b1"))).unwrap();
            clear_marker(Path::new(&format!("{root}/b1"))).unwrap();
            check_new_brick(&format!("{root}/b1"), false).unwrap();
        }
    }
}
