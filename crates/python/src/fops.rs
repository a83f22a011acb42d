//! The FOPs a Python class may override, written once in [`python_fops!`].
//!
//! For every FOP in the list the macro makes:
//! - an args struct (`StatArgs { loc, xd }`) implementing [`FopArgs`]: its Python form (a
//!   `types.SimpleNamespace` with one attribute per argument plus `xdata`), the way back,
//!   and the call to the child with those arguments;
//! - a field of [`Methods`], the class's bound method for that FOP or `None`;
//! - the [`weft_core::Xlator`] method of [`PythonXlator`]: with no Python method it calls
//!   the child at once (no GIL, no thread hop); otherwise it runs the Python method.
//!
//! FOPs not in the list (rchecksum, xattrop/fxattrop and the lock FOPs) always pass
//! through; a class defining one of them is refused at load time ([`UNSUPPORTED`]).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyType};
use weft_core::*;

use crate::convert::{Lend, Own, PyArg, PyOut};
use crate::xlator::PythonXlator;

/// A boxed child call.
pub type FopFuture<T> = Pin<Box<dyn Future<Output = Fop<T>> + Send>>;

/// The owned arguments of one FOP call: what Python sees and how to call the child.
pub trait FopArgs: Send + Sized + 'static {
    /// The FOP's result value.
    type Out: PyOut;
    /// The FOP's name (the Python method's name).
    const NAME: &'static str;
    /// The args object handed to Python.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
    /// Reads an args object back (after Python may have changed it).
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self>;
    /// The first inode (gfid, path) the arguments name.
    fn target(&self) -> (Option<Gfid>, Option<PathBuf>);
    /// Calls `child`'s FOP with these arguments.
    fn wind(self, child: XlatorRef, ctx: Ctx) -> FopFuture<Self::Out>;
}

/// A `types.SimpleNamespace` holding `fields`.
pub fn namespace<'py>(
    py: Python<'py>,
    fields: &[(&str, Bound<'py, PyAny>)],
) -> PyResult<Bound<'py, PyAny>> {
    static NS: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    let ns = NS.import(py, "types", "SimpleNamespace")?;
    let kw = PyDict::new(py);
    for (k, v) in fields {
        kw.set_item(*k, v)?;
    }
    ns.call((), Some(&kw))
}

/// The FOP names Python translators cannot override yet; a class defining one is refused.
pub const UNSUPPORTED: &[&str] = &[
    "rchecksum",
    "xattrop",
    "fxattrop",
    "lk",
    "inodelk",
    "finodelk",
    "entrylk",
];

macro_rules! python_fops {
    ($( $fop:ident / $Args:ident ( $($a:ident: $t:ty => $o:ty),* ) -> $ret:ty; )*) => {
        $(
            #[doc = concat!("The owned arguments of one `", stringify!($fop), "` call.")]
            pub struct $Args {
                $(
                    #[doc = concat!("`", stringify!($a), "`")]
                    pub $a: $o,
                )*
                /// The call's xdata.
                pub xd: Xdata,
            }

            impl FopArgs for $Args {
                type Out = $ret;
                const NAME: &'static str = stringify!($fop);
                fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    namespace(py, &[
                        $((stringify!($a), PyArg::to_py(&self.$a, py)?),)*
                        ("xdata", PyArg::to_py(&self.xd, py)?),
                    ])
                }
                fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
                    Ok($Args {
                        $($a: PyArg::from_py(&ob.getattr(stringify!($a))?)?,)*
                        xd: PyArg::from_py(&ob.getattr("xdata")?)?,
                    })
                }
                fn target(&self) -> (Option<Gfid>, Option<PathBuf>) {
                    None$(.or_else(|| PyArg::target(&self.$a)))*.unwrap_or((None, None))
                }
                fn wind(self, child: XlatorRef, ctx: Ctx) -> FopFuture<$ret> {
                    Box::pin(async move {
                        let $Args { $($a,)* xd } = self;
                        child.$fop(&ctx, $(Lend::lend(&$a),)* xd).await
                    })
                }
            }
        )*

        /// The class's bound method for each FOP it overrides.
        #[derive(Default)]
        pub struct Methods {
            $(
                #[doc = concat!("`", stringify!($fop), "`, if the class defines it.")]
                pub $fop: Option<Arc<Py<PyAny>>>,
            )*
        }

        impl Methods {
            /// Every FOP name a class may override.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($fop)),*];

            /// The methods `obj` defines, by FOP name; an attribute of that name that is
            /// not callable is an error message.
            pub fn find(obj: &Bound<'_, PyAny>) -> Result<Methods, String> {
                let mut m = Methods::default();
                $(
                    m.$fop = crate::loader::method(obj, stringify!($fop))?.map(Arc::new);
                )*
                Ok(m)
            }

            /// The names of the overridden FOPs, in list order.
            pub fn overridden(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $( if self.$fop.is_some() { v.push(stringify!($fop)); } )*
                v
            }
        }

        #[async_trait::async_trait]
        impl Xlator for PythonXlator {
            fn name(&self) -> &str {
                self.name()
            }
            fn children(&self) -> &[XlatorRef] {
                self.children()
            }
            fn dump(&self) -> String {
                self.dump_state()
            }
            $(
                async fn $fop(&self, ctx: &Ctx, $($a: $t,)* xd: Xdata) -> Fop<$ret> {
                    match &self.methods().$fop {
                        None => self.child()?.$fop(ctx, $($a,)* xd).await,
                        Some(m) => self.call(m, ctx, $Args { $($a: Own::own($a),)* xd }).await,
                    }
                }
            )*
        }
    };
}

python_fops! {
    lookup / LookupArgs(loc: &Loc => Loc) -> Iatt;
    stat / StatArgs(loc: &Loc => Loc) -> Iatt;
    fstat / FstatArgs(fd: &FdRef => FdRef) -> Iatt;
    access / AccessArgs(loc: &Loc => Loc, mask: u32 => u32) -> ();
    setattr / SetattrArgs(loc: &Loc => Loc, attr: &SetAttr => SetAttr) -> Iatt;
    fsetattr / FsetattrArgs(fd: &FdRef => FdRef, attr: &SetAttr => SetAttr) -> Iatt;
    truncate / TruncateArgs(loc: &Loc => Loc, size: u64 => u64) -> Iatt;
    ftruncate / FtruncateArgs(fd: &FdRef => FdRef, size: u64 => u64) -> Iatt;
    readlink / ReadlinkArgs(loc: &Loc => Loc) -> PathBuf;
    statfs / StatfsArgs(loc: &Loc => Loc) -> StatVfs;
    mkdir / MkdirArgs(loc: &Loc => Loc, mode: u32 => u32, umask: u32 => u32) -> Iatt;
    rmdir / RmdirArgs(loc: &Loc => Loc) -> ();
    unlink / UnlinkArgs(loc: &Loc => Loc) -> ();
    rename / RenameArgs(old: &Loc => Loc, new: &Loc => Loc, flags: u32 => u32) -> ();
    link / LinkArgs(old: &Loc => Loc, new: &Loc => Loc) -> Iatt;
    symlink / SymlinkArgs(target: &std::path::Path => PathBuf, loc: &Loc => Loc, umask: u32 => u32) -> Iatt;
    mknod / MknodArgs(loc: &Loc => Loc, mode: u32 => u32, rdev: u64 => u64, umask: u32 => u32) -> Iatt;
    open / OpenArgs(loc: &Loc => Loc, fd: &FdRef => FdRef) -> ();
    create / CreateArgs(loc: &Loc => Loc, fd: &FdRef => FdRef, mode: u32 => u32, umask: u32 => u32) -> Iatt;
    readv / ReadvArgs(fd: &FdRef => FdRef, size: u32 => u32, offset: u64 => u64) -> Bytes;
    writev / WritevArgs(fd: &FdRef => FdRef, data: Bytes => Bytes, offset: u64 => u64) -> u64;
    flush / FlushArgs(fd: &FdRef => FdRef) -> ();
    fsync / FsyncArgs(fd: &FdRef => FdRef, datasync: bool => bool) -> ();
    release / ReleaseArgs(fd: &FdRef => FdRef) -> ();
    fallocate / FallocateArgs(fd: &FdRef => FdRef, mode: i32 => i32, offset: u64 => u64, len: u64 => u64) -> ();
    discard / DiscardArgs(fd: &FdRef => FdRef, offset: u64 => u64, len: u64 => u64) -> ();
    zerofill / ZerofillArgs(fd: &FdRef => FdRef, offset: u64 => u64, len: u64 => u64) -> ();
    seek / SeekArgs(fd: &FdRef => FdRef, offset: u64 => u64, what: SeekWhat => SeekWhat) -> u64;
    opendir / OpendirArgs(loc: &Loc => Loc, fd: &FdRef => FdRef) -> ();
    readdir / ReaddirArgs(fd: &FdRef => FdRef, size: u32 => u32, offset: u64 => u64) -> Vec<Dirent>;
    readdirp / ReaddirpArgs(fd: &FdRef => FdRef, size: u32 => u32, offset: u64 => u64) -> Vec<Dirent>;
    fsyncdir / FsyncdirArgs(fd: &FdRef => FdRef, datasync: bool => bool) -> ();
    releasedir / ReleasedirArgs(fd: &FdRef => FdRef) -> ();
    getxattr / GetxattrArgs(loc: &Loc => Loc, name: Option<&str> => Option<String>) -> XattrMap;
    fgetxattr / FgetxattrArgs(fd: &FdRef => FdRef, name: Option<&str> => Option<String>) -> XattrMap;
    setxattr / SetxattrArgs(loc: &Loc => Loc, attrs: &XattrMap => XattrMap, flags: i32 => i32) -> ();
    fsetxattr / FsetxattrArgs(fd: &FdRef => FdRef, attrs: &XattrMap => XattrMap, flags: i32 => i32) -> ();
    removexattr / RemovexattrArgs(loc: &Loc => Loc, name: &str => String) -> ();
    fremovexattr / FremovexattrArgs(fd: &FdRef => FdRef, name: &str => String) -> ();
}
