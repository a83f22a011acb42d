//! Debug translators: `debug/trace` and `debug/io-stats`.
//!
//! Both sit on a single child and watch every FOP go by. [`observe_all_fops`] writes the
//! pass-through of every FOP once; each translator supplies an `observed` method that wraps
//! the child's future with what it records.

pub mod io_stats;
pub mod trace;

/// Formats a FOP's arguments for logs, each `Debug` form cut to a readable length.
#[macro_export]
macro_rules! fmt_args {
    ($($a:ident),*) => {{
        let mut s = String::new();
        $(
            if !s.is_empty() { s.push_str(", "); }
            s.push_str(stringify!($a));
            s.push('=');
            s.push_str(&$crate::debug::clip(format!("{:?}", $a)));
        )*
        s
    }};
}

/// Cuts `s` to at most 160 characters, marking the cut.
pub fn clip(mut s: String) -> String {
    if s.len() > 160 {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Implements [`weft_core::Xlator`] for a type with fields `name: String` and
/// `children: Vec<XlatorRef>` and methods `wants_args()`, `observed(fop, args, future)` and
/// `dump_state()`,
/// passing every FOP to the single child through `observed`. With `extra: { ... }` the
/// given methods replace the generated readv and writev (for translators that look at
/// the data).
#[macro_export]
macro_rules! observe_all_fops {
    ($ty:ty $(, extra: { $($extra:tt)* })?) => {
        $crate::observe_all_fops!(@pick $ty; [ $($($extra)*)? ];
            io {
                readv(fd: &FdRef, size: u32, offset: u64) -> bytes::Bytes;
                writev(fd: &FdRef, data: bytes::Bytes, offset: u64) -> u64;
            }
            rest {
                lookup(loc: &Loc) -> Iatt;
                stat(loc: &Loc) -> Iatt;
                fstat(fd: &FdRef) -> Iatt;
                access(loc: &Loc, mask: u32) -> ();
                setattr(loc: &Loc, attr: &SetAttr) -> Iatt;
                fsetattr(fd: &FdRef, attr: &SetAttr) -> Iatt;
                truncate(loc: &Loc, size: u64) -> Iatt;
                ftruncate(fd: &FdRef, size: u64) -> Iatt;
                readlink(loc: &Loc) -> std::path::PathBuf;
                statfs(loc: &Loc) -> StatVfs;
                mkdir(loc: &Loc, mode: u32, umask: u32) -> Iatt;
                rmdir(loc: &Loc) -> ();
                unlink(loc: &Loc) -> ();
                rename(old: &Loc, new: &Loc, flags: u32) -> ();
                link(old: &Loc, new: &Loc) -> Iatt;
                symlink(target: &std::path::Path, loc: &Loc, umask: u32) -> Iatt;
                mknod(loc: &Loc, mode: u32, rdev: u64, umask: u32) -> Iatt;
                open(loc: &Loc, fd: &FdRef) -> ();
                create(loc: &Loc, fd: &FdRef, mode: u32, umask: u32) -> Iatt;
                flush(fd: &FdRef) -> ();
                fsync(fd: &FdRef, datasync: bool) -> ();
                release(fd: &FdRef) -> ();
                fallocate(fd: &FdRef, mode: i32, offset: u64, len: u64) -> ();
                discard(fd: &FdRef, offset: u64, len: u64) -> ();
                zerofill(fd: &FdRef, offset: u64, len: u64) -> ();
                seek(fd: &FdRef, offset: u64, what: SeekWhat) -> u64;
                rchecksum(fd: &FdRef, offset: u64, len: u32) -> Checksum;
                opendir(loc: &Loc, fd: &FdRef) -> ();
                readdir(fd: &FdRef, size: u32, offset: u64) -> Vec<Dirent>;
                readdirp(fd: &FdRef, size: u32, offset: u64) -> Vec<Dirent>;
                fsyncdir(fd: &FdRef, datasync: bool) -> ();
                releasedir(fd: &FdRef) -> ();
                getxattr(loc: &Loc, name: Option<&str>) -> XattrMap;
                fgetxattr(fd: &FdRef, name: Option<&str>) -> XattrMap;
                setxattr(loc: &Loc, attrs: &XattrMap, flags: i32) -> ();
                fsetxattr(fd: &FdRef, attrs: &XattrMap, flags: i32) -> ();
                removexattr(loc: &Loc, name: &str) -> ();
                fremovexattr(fd: &FdRef, name: &str) -> ();
                xattrop(loc: &Loc, op: XattropOp, attrs: &XattrMap) -> XattrMap;
                fxattrop(fd: &FdRef, op: XattropOp, attrs: &XattrMap) -> XattrMap;
                lk(fd: &FdRef, cmd: LkCmd, lock: &Flock) -> Flock;
                inodelk(domain: &str, loc: &Loc, cmd: LkCmd, lock: &Flock) -> ();
                finodelk(domain: &str, fd: &FdRef, cmd: LkCmd, lock: &Flock) -> ();
                entrylk(domain: &str, loc: &Loc, basename: Option<&std::ffi::OsString>, cmd: EntrylkCmd, kind: EntrylkType) -> ();
            });
    };
    (@pick $ty:ty; [ ]; io { $($io:tt)* } rest { $($rest:tt)* }) => {
        $crate::observe_all_fops!(@gen $ty; [ ]; $($io)* $($rest)*);
    };
    (@pick $ty:ty; [ $($extra:tt)+ ]; io { $($io:tt)* } rest { $($rest:tt)* }) => {
        $crate::observe_all_fops!(@gen $ty; [ $($extra)+ ]; $($rest)*);
    };
    (@gen $ty:ty; [ $($extra:tt)* ]; $( $fop:ident($($a:ident: $t:ty),*) -> $ret:ty; )*) => {
        #[async_trait::async_trait]
        impl weft_core::Xlator for $ty {
            fn name(&self) -> &str { &self.name }
            fn children(&self) -> &[weft_core::XlatorRef] { &self.children }
            fn dump(&self) -> String { self.dump_state() }
            $($extra)*
            $(
                async fn $fop(&self, ctx: &Ctx, $($a: $t,)* xd: Xdata) -> Fop<$ret> {
                    let child = self.child()?;
                    let args = if self.wants_args() { $crate::fmt_args!(ctx, $($a,)* xd) } else { String::new() };
                    self.observed(stringify!($fop), args, child.$fop(ctx, $($a,)* xd)).await
                }
            )*
        }
    };
}
