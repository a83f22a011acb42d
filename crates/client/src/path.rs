//! Resolving volume paths to locations, one lookup per component from the root.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use weft_core::{Errno, Iatt, Loc, Xdata};

use crate::Volume;

/// The components of an absolute volume path; EINVAL for relative paths, `.` or `..`.
fn components(path: &str) -> Result<Vec<&OsStr>, Errno> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(Errno::EINVAL);
    }
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => return Err(Errno::EINVAL),
        }
    }
    Ok(out)
}

/// Looks up `path` component by component; every component but the last must be a
/// directory (a symlink there is ENOTDIR: symlinks are not followed).
pub(crate) async fn resolve(vol: &Volume, path: &str) -> Result<(Loc, Iatt), Errno> {
    let comps = components(path)?;
    let mut loc = Loc::root();
    let (mut ia, _) = vol.top().lookup(vol.ctx(), &loc, Xdata::new()).await?;
    let mut at = PathBuf::from("/");
    for name in comps {
        if !ia.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        at.push(name);
        let l = Loc::entry(ia.gfid, name).with_path(&at);
        let (next, _) = vol.top().lookup(vol.ctx(), &l, Xdata::new()).await?;
        loc = l.with_gfid(next.gfid);
        ia = next;
    }
    Ok((loc, ia))
}

/// The location of the (possibly not yet existing) entry `path`: its parent resolved,
/// its name; EINVAL for the root.
pub(crate) async fn parent_loc(vol: &Volume, path: &str) -> Result<Loc, Errno> {
    let comps = components(path)?;
    let Some((name, _)) = comps.split_last() else {
        return Err(Errno::EINVAL);
    };
    let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
    let (_, pia) = resolve(vol, &parent.to_string_lossy()).await?;
    if !pia.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(Loc::entry(pia.gfid, name).with_path(path))
}

/// The location of the existing entry `path`, with parent, name and gfid.
pub(crate) async fn entry_loc(vol: &Volume, path: &str) -> Result<Loc, Errno> {
    let mut loc = parent_loc(vol, path).await?;
    let (l, _) = resolve(vol, path).await?;
    loc.gfid = l.gfid;
    Ok(loc)
}
