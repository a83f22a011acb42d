"""A computed xattr: `user.weft.sha256` is the SHA-256 of a regular file's content.

    $ getfattr -n user.weft.sha256 --only-values /mnt/vol/report.pdf
    9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

Computed on every read of the xattr, by reading the file down the graph through the
context's helpers. Other xattrs pass through; listxattr does not list it.
"""

import errno
import hashlib

import weft

NAME = "user.weft.sha256"
PIECE = 4 << 20


class Sha256Xattr:
    def __init__(self, init: weft.Init) -> None:
        pass

    def getxattr(self, ctx, args):
        if args.name != NAME:
            return ctx.wind()
        gfid = ctx.gfid
        if gfid is None or not ctx.stat(gfid).is_file:
            raise weft.Error(errno.ENODATA)
        h = hashlib.sha256()
        offset = 0
        while True:
            piece = ctx.read(gfid, offset, PIECE)
            h.update(piece)
            offset += len(piece)
            if len(piece) < PIECE:
                break
        return {NAME: h.hexdigest().encode()}

    def setxattr(self, ctx, args):
        if NAME in args.attrs:
            raise weft.Error(errno.EPERM)  # computed, not stored
        return ctx.wind()
