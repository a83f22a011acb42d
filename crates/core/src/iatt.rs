//! Inode attributes (`iatt`), directory entries and filesystem statistics as FOPs carry them.

use crate::Gfid;

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FileType {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A unix-domain socket.
    Socket,
}

impl FileType {
    /// The type encoded in the `S_IFMT` bits of a mode; `None` for an unknown format.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileType::Regular,
            libc::S_IFDIR => FileType::Directory,
            libc::S_IFLNK => FileType::Symlink,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            libc::S_IFSOCK => FileType::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits for this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => libc::S_IFREG,
            FileType::Directory => libc::S_IFDIR,
            FileType::Symlink => libc::S_IFLNK,
            FileType::Fifo => libc::S_IFIFO,
            FileType::CharDevice => libc::S_IFCHR,
            FileType::BlockDevice => libc::S_IFBLK,
            FileType::Socket => libc::S_IFSOCK,
        }
    }
}

/// A timestamp with nanosecond precision (seconds since the epoch may be negative).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timespec {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub sec: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nsec: u32,
}

/// The attributes of one inode: a `struct stat` keyed by gfid instead of device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Iatt {
    /// The inode's identity.
    pub gfid: Gfid,
    /// The inode number clients show (derived from the gfid).
    pub ino: u64,
    /// Type and permission bits, as in `st_mode`.
    pub mode: u32,
    /// Number of names the inode has, as the application should see it.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for device files.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Preferred I/O block size.
    pub blksize: u32,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last data change.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
}

impl Iatt {
    /// The attributes as bytes for an xdata value (postcard), read by [`Iatt::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Attributes from [`Iatt::to_bytes`]; `None` for bytes that are not.
    pub fn from_bytes(b: &[u8]) -> Option<Iatt> {
        postcard::from_bytes(b).ok()
    }

    /// The inode's type, `None` if the mode carries an unknown format.
    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    /// True when the inode is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
}

/// A new value for one timestamp in a setattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SetTime {
    /// The server's current time.
    Now,
    /// This exact time.
    At(Timespec),
}

/// The attributes a setattr changes; `None` fields are left as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetAttr {
    /// New permission bits (the file-type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (a truncate).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
}

/// One directory entry from readdir or readdirp.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dirent {
    /// The entry's name (no slashes; may be `.` or `..`).
    pub name: Vec<u8>,
    /// The cookie to pass as the offset of the next readdir to continue after this entry.
    pub offset: u64,
    /// The entry's type.
    pub kind: FileType,
    /// The entry's inode number as the brick reports it (only meaningful with `iatt: None`).
    pub ino: u64,
    /// Full attributes, filled by readdirp (never for `.` and `..`).
    pub iatt: Option<Iatt>,
}

impl Dirent {
    /// The bytes a listing's size counts an entry with a `name_len`-byte name for: what a
    /// FUSE reply spends on it (header, name, 8-byte alignment), with `plus` the entry-out
    /// attributes of readdirplus too. Bricks fill a reply to the size asked by it.
    pub const fn cost(name_len: usize, plus: bool) -> usize {
        let base = if plus { 24 + 128 } else { 24 };
        (base + name_len + 7) & !7
    }
}

/// Filesystem statistics, as `statvfs` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatVfs {
    /// Block size for the block counts.
    pub bsize: u64,
    /// Fragment size.
    pub frsize: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest file name.
    pub namemax: u64,
}
