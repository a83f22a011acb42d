//! `features/arbiter`: the brick half of an arbiter (GlusterFS's arbiter translator). An
//! arbiter brick is the last replica of a `replica 3 arbiter 1` set: it holds every name,
//! directory, owner, mode, xattr and replication changelog, but no file data, so it costs
//! a fraction of a data brick's space while still counting for quorum and telling which
//! data copy is good.
//!
//! This translator sits directly above `storage/posix` in the arbiter's brick graph and
//! makes every change of file *contents* a no-op that succeeds:
//! - `writev` answers the length it was given and writes nothing;
//! - `truncate`/`ftruncate` answer the file's attributes unchanged (`setattr`/`fsetattr`
//!   drop the size and apply the rest);
//! - `fallocate`, `discard` and `zerofill` succeed and do nothing.
//!
//! Reads of contents (`readv`, `seek`, `rchecksum`) answer `EIO`: an arbiter has no data
//! to give, and `cluster/replicate` never asks it (a zero-length answer would be silently
//! wrong data). Everything else goes down unchanged, so files on an arbiter are zero
//! bytes long with the same names, gfids, attributes and xattrs as on the data bricks.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use weft_core::options::OptionSpec;
use weft_core::*;

/// The arbiter translator.
pub struct Arbiter {
    name: String,
    children: Vec<XlatorRef>,
}

impl Arbiter {
    fn child(&self) -> &XlatorRef {
        &self.children[0]
    }

    fn no_data(&self, what: &str) -> Errno {
        tracing::warn!(
            "{}: {what} asked of an arbiter brick, which holds no file data: EIO",
            self.name
        );
        Errno::EIO
    }
}

#[async_trait]
impl Xlator for Arbiter {
    fn name(&self) -> &str {
        &self.name
    }

    fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let _ = (ctx, fd, offset);
        Ok((data.len() as u64, xd))
    }

    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        let _ = size;
        let (ia, _) = self.child().stat(ctx, loc, Xdata::new()).await?;
        Ok((ia, xd))
    }

    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        let _ = size;
        let (ia, _) = self.child().fstat(ctx, fd, Xdata::new()).await?;
        Ok((ia, xd))
    }

    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let rest = SetAttr {
            size: None,
            ..*attr
        };
        if rest == SetAttr::default() {
            return self.child().stat(ctx, loc, xd).await;
        }
        self.child().setattr(ctx, loc, &rest, xd).await
    }

    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let rest = SetAttr {
            size: None,
            ..*attr
        };
        if rest == SetAttr::default() {
            return self.child().fstat(ctx, fd, xd).await;
        }
        self.child().fsetattr(ctx, fd, &rest, xd).await
    }

    async fn fallocate(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        mode: i32,
        offset: u64,
        len: u64,
        xd: Xdata,
    ) -> Fop<()> {
        let _ = (ctx, fd, mode, offset, len);
        Ok(((), xd))
    }

    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let _ = (ctx, fd, offset, len);
        Ok(((), xd))
    }

    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let _ = (ctx, fd, offset, len);
        Ok(((), xd))
    }

    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        let _ = (ctx, fd, size, offset, xd);
        Err(self.no_data("a read"))
    }

    async fn seek(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        what: SeekWhat,
        xd: Xdata,
    ) -> Fop<u64> {
        let _ = (ctx, fd, offset, what, xd);
        Err(self.no_data("a seek"))
    }

    async fn rchecksum(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        len: u32,
        xd: Xdata,
    ) -> Fop<Checksum> {
        let _ = (ctx, fd, offset, len, xd);
        Err(self.no_data("a checksum"))
    }
}

/// The `features/arbiter` translator type.
pub struct ArbiterType;

impl XlatorType for ArbiterType {
    fn type_name(&self) -> &'static str {
        "features/arbiter"
    }
    fn description(&self) -> &'static str {
        "The brick half of an arbiter: keeps names, attributes and changelogs but no file data (writes succeed and store nothing)."
    }
    fn options(&self) -> &'static [OptionSpec] {
        &[]
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(Arbiter {
            name: init.name,
            children: init.children,
        }))
    }
}
