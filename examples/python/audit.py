"""Audit log: one line for every change made through the volume.

    2026-11-24T10:15:02.123Z uid=1000 gid=1000 pid=4242 mkdir /projects/new ok
    2026-11-24T10:15:02.456Z uid=1000 gid=1000 pid=4243 unlink /projects/old ENOENT

Config: log=FILE (default /var/log/weft/audit.log). Every change FOP is overridden; reads,
lookups and stats are not, so they never enter Python.
"""

import errno
import os
import time

import weft


class Audit:
    def __init__(self, init: weft.Init) -> None:
        self.path = init.config.get("log", "/var/log/weft/audit.log")
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # Line-buffered: each record reaches the file as soon as it is written.
        self.out = open(self.path, "a", buffering=1)

    # ==== helpers ====

    def record(self, ctx: weft.Context, what: str, target: str, outcome: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        stamp += ".%03dZ" % (int(now * 1000) % 1000)
        self.out.write(
            f"{stamp} uid={ctx.uid} gid={ctx.gid} pid={ctx.pid} {what} {target} {outcome}\n"
        )

    def audited(self, ctx: weft.Context, what: str, target: str):
        """Passes the FOP down and records it with its outcome."""
        try:
            result = ctx.wind()
        except weft.Error as e:
            self.record(ctx, what, target, errno.errorcode.get(e.errno, str(e.errno)))
            raise
        self.record(ctx, what, target, "ok")
        return result

    @staticmethod
    def where(loc: weft.Loc) -> str:
        return loc.path or f"<gfid:{loc.gfid or loc.parent}>/{loc.name or ''}"

    @staticmethod
    def fd_where(fd: weft.Fd) -> str:
        # Where the file is now (the FUSE front end follows renames), else its gfid.
        return fd.path or f"<gfid:{fd.gfid}>"

    # ==== FOPs ====

    def create(self, ctx, args):
        return self.audited(ctx, "create", self.where(args.loc))

    def open(self, ctx, args):
        r = ctx.wind()
        if args.fd.flags & os.O_ACCMODE != os.O_RDONLY and args.fd.flags & os.O_TRUNC:
            self.record(ctx, "truncate", self.where(args.loc), "ok")
        return r

    def writev(self, ctx, args):
        what = f"write[{args.offset}+{len(args.data)}]"
        return self.audited(ctx, what, self.fd_where(args.fd))

    def mkdir(self, ctx, args):
        return self.audited(ctx, "mkdir", self.where(args.loc))

    def mknod(self, ctx, args):
        return self.audited(ctx, "mknod", self.where(args.loc))

    def symlink(self, ctx, args):
        return self.audited(ctx, f"symlink->{args.target}", self.where(args.loc))

    def link(self, ctx, args):
        return self.audited(ctx, f"link<-{self.where(args.old)}", self.where(args.new))

    def unlink(self, ctx, args):
        return self.audited(ctx, "unlink", self.where(args.loc))

    def rmdir(self, ctx, args):
        return self.audited(ctx, "rmdir", self.where(args.loc))

    def rename(self, ctx, args):
        return self.audited(ctx, f"rename->{self.where(args.new)}", self.where(args.old))

    def setattr(self, ctx, args):
        return self.audited(ctx, self.describe(args.attr), self.where(args.loc))

    def fsetattr(self, ctx, args):
        return self.audited(ctx, self.describe(args.attr), self.fd_where(args.fd))

    def truncate(self, ctx, args):
        return self.audited(ctx, f"truncate[{args.size}]", self.where(args.loc))

    def ftruncate(self, ctx, args):
        return self.audited(ctx, f"truncate[{args.size}]", self.fd_where(args.fd))

    def setxattr(self, ctx, args):
        return self.audited(ctx, "setxattr:" + ",".join(args.attrs), self.where(args.loc))

    def removexattr(self, ctx, args):
        return self.audited(ctx, "removexattr:" + args.name, self.where(args.loc))

    @staticmethod
    def describe(attr: weft.SetAttr) -> str:
        parts = []
        if attr.mode is not None:
            parts.append("chmod=%o" % (attr.mode & 0o7777))
        if attr.uid is not None or attr.gid is not None:
            parts.append(f"chown={attr.uid}:{attr.gid}")
        if attr.size is not None:
            parts.append(f"truncate={attr.size}")
        if attr.atime_ns is not None or attr.mtime_ns is not None or attr.atime_now or attr.mtime_now:
            parts.append("utimes")
        return "setattr[" + ",".join(parts) + "]"
