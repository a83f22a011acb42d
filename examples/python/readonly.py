"""Read-only subtree: every change under a path prefix fails with EROFS.

Config: prefix=/PATH (default /readonly), relative to the volume root. Reads, lookups and
stats are not overridden and never enter Python. The policy decides by the paths the
front end passes (the FUSE mount always knows them).
"""

import errno
import os

import weft


class ReadOnlyPrefix:
    def __init__(self, init: weft.Init) -> None:
        self.prefix = "/" + init.config.get("prefix", "/readonly").strip("/")

    def covered(self, loc: weft.Loc) -> bool:
        p = loc.path
        return p is not None and (p == self.prefix or p.startswith(self.prefix + "/"))

    def guard(self, ctx, *locs):
        if any(self.covered(loc) for loc in locs):
            raise weft.Error(errno.EROFS)
        return ctx.wind()

    def open(self, ctx, args):
        writes = args.fd.flags & os.O_ACCMODE != os.O_RDONLY or args.fd.flags & os.O_TRUNC
        return self.guard(ctx, args.loc) if writes else ctx.wind()

    def create(self, ctx, args):
        return self.guard(ctx, args.loc)

    def mkdir(self, ctx, args):
        return self.guard(ctx, args.loc)

    def mknod(self, ctx, args):
        return self.guard(ctx, args.loc)

    def symlink(self, ctx, args):
        return self.guard(ctx, args.loc)

    def link(self, ctx, args):
        return self.guard(ctx, args.new)

    def unlink(self, ctx, args):
        return self.guard(ctx, args.loc)

    def rmdir(self, ctx, args):
        return self.guard(ctx, args.loc)

    def rename(self, ctx, args):
        return self.guard(ctx, args.old, args.new)

    def setattr(self, ctx, args):
        return self.guard(ctx, args.loc)

    def truncate(self, ctx, args):
        return self.guard(ctx, args.loc)

    def setxattr(self, ctx, args):
        return self.guard(ctx, args.loc)

    def removexattr(self, ctx, args):
        return self.guard(ctx, args.loc)
