"""Hidden entries: names matching a pattern never show in directory listings.

Config: patterns=GLOB[,GLOB...] (required): shell-style globs (fnmatch) matched against
each entry's name (not its path), in every directory.

Two classes (`option class`):

- HideEntries: a hidden name is left out of every listing (`ls`, `ls -a`, `find`,
  os.scandir) but still works when named: `stat`, `cat`, `cd`, `rm` of it succeed, like a
  dotfile that even `ls -a` does not show. Only readdir and readdirp enter Python.
- HideEntriesStrict: a hidden name does not exist as far as the mount is concerned: its
  lookup answers ENOENT (so `stat` and `open` fail), and creating, linking or renaming
  anything to such a name fails with EPERM (nothing appears under a name nobody could see).
"""

import errno
import fnmatch
import re

import weft


class HideEntries:
    def __init__(self, init: weft.Init) -> None:
        raw = init.config.get("patterns", "")
        globs = [g for g in raw.split(",") if g]
        if not globs:
            raise ValueError("set option config patterns=GLOB[,GLOB...]")
        # One regular expression for all the globs.
        self.hidden = re.compile("|".join(fnmatch.translate(g) for g in globs)).match

    def is_hidden(self, name) -> bool:
        return name is not None and name not in (".", "..") and self.hidden(name) is not None

    # ==== listings ====

    def readdir(self, ctx: weft.Context, args) -> list:
        while True:
            entries = ctx.wind()
            if not entries:
                return entries  # the end of the directory
            kept = [e for e in entries if not self.is_hidden(e.name)]
            if kept:
                return kept
            # Every entry of this batch is hidden. An empty answer would tell the kernel
            # the directory ends here: read on from the last entry's cookie instead.
            args.offset = entries[-1].offset

    readdirp = readdir  # the same, with attributes (the kernel's usual readdirplus)


class HideEntriesStrict(HideEntries):
    """HideEntries, and hidden names cannot be reached or made either."""

    def lookup(self, ctx, args):
        if self.is_hidden(args.loc.name):
            raise weft.Error(errno.ENOENT)
        return ctx.wind()

    def refuse_hidden(self, ctx, loc):
        if self.is_hidden(loc.name):
            raise weft.Error(errno.EPERM)
        return ctx.wind()

    def create(self, ctx, args):
        return self.refuse_hidden(ctx, args.loc)

    def mkdir(self, ctx, args):
        return self.refuse_hidden(ctx, args.loc)

    def mknod(self, ctx, args):
        return self.refuse_hidden(ctx, args.loc)

    def symlink(self, ctx, args):
        return self.refuse_hidden(ctx, args.loc)

    def link(self, ctx, args):
        return self.refuse_hidden(ctx, args.new)

    def rename(self, ctx, args):
        return self.refuse_hidden(ctx, args.new)
