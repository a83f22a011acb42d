"""Negative-lookup cache: remembers names that do not exist, for `ttl` seconds.

Applications that probe many missing names (compilers walking include paths, Python
walking sys.path) pay for each miss with a lookup down the graph; this answers repeats
with ENOENT at once. Creating a name through the volume (create, mkdir, mknod, symlink,
link, rename onto it) forgets it. A name created behind the volume's back (on a brick by
hand, or by another client) stays hidden until the entry expires.

Config: ttl=SECONDS (default 5), max=ENTRIES (default 65536).
The virtual xattr `user.weft.negcache` on any inode reads `hits=H misses=M entries=N`.
"""

import errno
import time

import weft

STATS_XATTR = "user.weft.negcache"


class NegativeCache:
    def __init__(self, init: weft.Init) -> None:
        self.ttl = float(init.config.get("ttl", "5"))
        self.max = int(init.config.get("max", "65536"))
        self.missing: dict[tuple[str, str], float] = {}
        self.hits = 0
        self.misses = 0

    def lookup(self, ctx, args):
        loc = args.loc
        if loc.parent is None or loc.name is None:
            return ctx.wind()  # by gfid: nothing to cache
        key = (loc.parent, loc.name)
        expiry = self.missing.get(key)
        if expiry is not None:
            if time.monotonic() < expiry:
                self.hits += 1
                raise weft.Error(errno.ENOENT)
            del self.missing[key]
        try:
            return ctx.wind()
        except weft.Error as e:
            if e.errno == errno.ENOENT:
                self.misses += 1
                if len(self.missing) >= self.max:
                    self.missing.clear()
                self.missing[key] = time.monotonic() + self.ttl
            raise

    def forget(self, loc: weft.Loc) -> None:
        self.missing.pop((loc.parent, loc.name), None)

    def create(self, ctx, args):
        self.forget(args.loc)
        return ctx.wind()

    def mkdir(self, ctx, args):
        self.forget(args.loc)
        return ctx.wind()

    def mknod(self, ctx, args):
        self.forget(args.loc)
        return ctx.wind()

    def symlink(self, ctx, args):
        self.forget(args.loc)
        return ctx.wind()

    def link(self, ctx, args):
        self.forget(args.new)
        return ctx.wind()

    def rename(self, ctx, args):
        self.forget(args.new)
        return ctx.wind()

    def getxattr(self, ctx, args):
        if args.name != STATS_XATTR:
            return ctx.wind()
        text = f"hits={self.hits} misses={self.misses} entries={len(self.missing)}"
        return {STATS_XATTR: text.encode()}
