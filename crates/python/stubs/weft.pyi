"""Type stubs for `weft`, the module Weft's Python translators import.

The module is built into the `weft` binary; this file only tells editors and type
checkers what it holds. Put its folder on your editor's stub path (for mypy:
`MYPYPATH=crates/python/stubs`). See docs/PYTHON-TRANSLATORS.md.

Names and paths (Loc.name, Loc.path, Context.path, Fd.path, Dirent.name, symlink targets)
are `str`: the bytes decoded as UTF-8 with "surrogateescape", so a byte that is not valid
UTF-8 is a lone surrogate (b"caf\xe9" is "caf\udce9"). `os.fsencode(name)` gives the bytes
back (Weft's interpreter runs in UTF-8 mode). Where a translator sets a name or path it may
give `str` (encoded the same way) or `bytes`.
"""

from typing import Any, Optional, Union

Name = Union[str, bytes]
"""What a name or path may be set to."""

class Error(Exception):
    """Fails the FOP with `errno`: `raise weft.Error(errno.EROFS)`.

    `Context.wind()` and the `Context` helpers raise it when the call below fails."""

    errno: int
    def __init__(self, errno: int, message: Optional[str] = None) -> None: ...

class Init:
    """What the class's constructor receives."""

    name: str
    """The translator's volfile name."""
    config: dict[str, str]
    """`option config`, parsed from space-separated key=value pairs."""

class Loc:
    """Where a FOP acts: `gfid` (an existing inode) or `parent` + `name` (an entry)."""

    gfid: Optional[str]
    parent: Optional[str]
    @property
    def name(self) -> Optional[str]:
        """The entry's name in `parent`."""
    @name.setter
    def name(self, value: Optional[Name]) -> None: ...
    @property
    def path(self) -> Optional[str]:
        """From the volume root, where the caller knows it; informational."""
    @path.setter
    def path(self, value: Optional[Name]) -> None: ...
    def __init__(
        self,
        gfid: Optional[str] = None,
        parent: Optional[str] = None,
        name: Optional[Name] = None,
        path: Optional[Name] = None,
    ) -> None: ...

class Fd:
    """An open file or directory (read-only to Python)."""

    @property
    def id(self) -> int: ...
    @property
    def gfid(self) -> str: ...
    @property
    def flags(self) -> int:
        """The open(2) flags (os.O_*)."""
    @property
    def is_dir(self) -> bool: ...
    @property
    def path(self) -> Optional[str]:
        """The file's path from the volume root as it is now: it follows renames of the
        file and of its directories. None where the front end does not know it (fds made
        by the client library or on a brick server), or once its last known name is gone."""

class Iatt:
    """An inode's attributes, as stat reports them."""

    gfid: str
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    @property
    def is_dir(self) -> bool: ...
    @property
    def is_file(self) -> bool: ...

class SetAttr:
    """What a setattr changes; None leaves a field alone."""

    mode: Optional[int]
    uid: Optional[int]
    gid: Optional[int]
    size: Optional[int]
    atime_ns: Optional[int]
    mtime_ns: Optional[int]
    atime_now: bool
    mtime_now: bool

class Dirent:
    """One directory entry, as readdir and readdirp return them."""

    @property
    def name(self) -> str: ...
    @name.setter
    def name(self, value: Name) -> None: ...
    offset: int
    """The cookie the next readdir passes as `offset` to continue after this entry."""
    kind: int
    """The entry's type as S_IFMT bits: stat.S_IFREG, stat.S_IFDIR, ..."""
    ino: int
    """The inode number the brick reports (used when `iatt` is None)."""
    iatt: Optional[Iatt]
    """The attributes (readdirp fills them, except for "." and ".."), or None."""
    def __init__(
        self,
        name: Name,
        offset: int = 0,
        kind: int = 0o100000,
        ino: int = 0,
        iatt: Optional[Iatt] = None,
    ) -> None: ...
    @property
    def is_dir(self) -> bool: ...

class StatVfs:
    """Filesystem statistics, as statvfs(2) reports them (df shows blocks * frsize)."""

    bsize: int
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    namemax: int
    def __init__(
        self,
        bsize: int = 4096,
        frsize: int = 4096,
        blocks: int = 0,
        bfree: int = 0,
        bavail: int = 0,
        files: int = 0,
        ffree: int = 0,
        namemax: int = 255,
    ) -> None: ...

class Context:
    """One FOP call: who asks, what it acts on, and how to call down the graph.

    Every call down releases the GIL while it waits."""

    uid: int
    gid: int
    pid: int
    fop: str
    """The FOP's name, e.g. "lookup"."""
    translator: str
    """The translator's volfile name."""
    gfid: Optional[str]
    """The inode the FOP acts on (the first loc's gfid, or the fd's), where known."""
    path: Optional[str]
    """The path the FOP acts on, where known: the first loc's path, or for fd FOPs the
    fd's current path (`Fd.path`, following renames)."""
    @property
    def reply_xdata(self) -> dict[str, bytes]:
        """The xdata this FOP will reply with (from the last wind)."""
    def wind(self, args: Any = None) -> Any:
        """Passes the FOP down (with `args`, default the args object the method got, with
        any changes) and returns the result; raises Error if it fails."""
    def lookup(self, path: Name) -> Iatt:
        """Resolves a path from the volume root below this translator."""
    def stat(self, gfid: str) -> Iatt: ...
    def read(self, gfid: str, offset: int = 0, size: Optional[int] = None) -> bytes:
        """Opens, reads (to the end by default) and releases a file below this translator."""
    def getxattr(self, gfid: str, name: str) -> bytes: ...
    def setxattr(self, gfid: str, name: str, value: bytes, flags: int = 0) -> None: ...

# FOP methods a translator class may define, with `args` attributes and what to return
# (each args also has `xdata: dict[str, bytes]`):
#   lookup(loc) -> Iatt            stat(loc) -> Iatt          fstat(fd) -> Iatt
#   access(loc, mask) -> None      setattr(loc, attr) -> Iatt fsetattr(fd, attr) -> Iatt
#   truncate(loc, size) -> Iatt    ftruncate(fd, size) -> Iatt
#   readlink(loc) -> str           mkdir(loc, mode, umask) -> Iatt
#   rmdir(loc) -> None             unlink(loc) -> None
#   rename(old, new, flags) -> None                           link(old, new) -> Iatt
#   symlink(target, loc, umask) -> Iatt                       mknod(loc, mode, rdev, umask) -> Iatt
#   open(loc, fd) -> None          create(loc, fd, mode, umask) -> Iatt
#   readv(fd, size, offset) -> bytes                          writev(fd, data, offset) -> int
#   flush(fd) -> None              fsync(fd, datasync) -> None  release(fd) -> None
#   statfs(loc) -> StatVfs
#   fallocate(fd, mode, offset, len) -> None                  (mode: FALLOC_FL_* bits)
#   discard(fd, offset, len) -> None                          zerofill(fd, offset, len) -> None
#   seek(fd, offset, what) -> int                             (what: os.SEEK_DATA or os.SEEK_HOLE)
#   opendir(loc, fd) -> None       releasedir(fd) -> None
#   readdir(fd, size, offset) -> list[Dirent]                 (offset: a Dirent.offset cookie)
#   readdirp(fd, size, offset) -> list[Dirent]                (with Dirent.iatt filled)
#   fsyncdir(fd, datasync) -> None
#   getxattr(loc, name) -> dict[str, bytes]    (name None: list all)
#   fgetxattr(fd, name) -> dict[str, bytes]
#   setxattr(loc, attrs, flags) -> None        fsetxattr(fd, attrs, flags) -> None
#   removexattr(loc, name) -> None             fremovexattr(fd, name) -> None
# Not overridable (a class defining one is refused): rchecksum, xattrop, fxattrop, lk,
# inodelk, finodelk, entrylk.
