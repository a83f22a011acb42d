//! For the performance translators' unit tests: a real brick (storage/posix) in a temporary
//! directory, and the calls the tests make through a translator above it.

use weft_core::volfile::{Volfile, VolumeDecl};
use weft_core::*;

/// A storage/posix brick in a temporary directory, named `p` in its graph.
pub(super) struct TestBrick {
    pub dir: tempfile::TempDir,
    pub graph: Graph,
}

impl TestBrick {
    pub fn new() -> TestBrick {
        let dir = tempfile::tempdir().unwrap();
        let vf = Volfile {
            volumes: vec![
                VolumeDecl::new("p", "storage/posix").option("directory", dir.path().display())
            ],
        };
        let graph = Graph::build(&vf, &crate::registry()).unwrap();
        TestBrick { dir, graph }
    }

    /// The brick's translator.
    pub fn posix(&self) -> XlatorRef {
        self.graph.get("p").unwrap().clone()
    }

    /// Where `rel` is in the brick's directory.
    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }
}

/// Writes `data` as file `name` on the brick directly and looks it up through `x`; its gfid.
pub(super) async fn file(x: &dyn Xlator, brick: &TestBrick, name: &str, data: &[u8]) -> Gfid {
    std::fs::write(brick.path(name), data).unwrap();
    x.lookup(
        &Ctx::internal(),
        &Loc::entry(Gfid::ROOT, name),
        Xdata::new(),
    )
    .await
    .unwrap()
    .0
    .gfid
}

/// Opens `g` with `flags` through `x`.
pub(super) async fn open(x: &dyn Xlator, g: Gfid, flags: i32) -> FdRef {
    let fd = Fd::new(g, flags, false);
    x.open(&Ctx::internal(), &Loc::inode(g), &fd, Xdata::new())
        .await
        .unwrap();
    fd
}

/// Reads `size` bytes at `offset` of `fd` through `x`.
pub(super) async fn read(x: &dyn Xlator, fd: &FdRef, size: u32, offset: u64) -> Vec<u8> {
    x.readv(&Ctx::internal(), fd, size, offset, Xdata::new())
        .await
        .unwrap()
        .0
        .to_vec()
}
