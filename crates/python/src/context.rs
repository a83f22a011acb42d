//! `weft.Context`: what a FOP method learns about its call, and how it calls down the graph.
//!
//! Every call down ([`Context::wind`] and the helpers) releases the GIL first and then waits
//! for the child's future on the current thread with the runtime's [`Handle`]. The GIL is
//! therefore never held while a call is down the graph, and a Python translator below this
//! one (or another thread of this one) can run meanwhile.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::runtime::Handle;
use weft_core::{Ctx, Errno, Fd, Gfid, Loc, XattrMap, Xdata, XlatorRef};

use crate::convert::FsName;
use crate::module::error_for;
use crate::types::{parse_gfid, PyIatt};

/// Reads down the graph are made of pieces this big.
const READ_PIECE: u32 = 128 * 1024;

/// Waits for `fut` on this thread. Works on a tokio blocking-pool thread and on a thread
/// inside a multi-thread runtime's `Handle::block_on` (the FUSE request threads), which
/// `block_in_place` steps out of first; never call it on a runtime worker.
pub fn block_on<F: Future>(handle: &Handle, fut: F) -> F::Output {
    tokio::task::block_in_place(|| handle.block_on(fut))
}

/// The type-erased `ctx.wind(args)` of one FOP: reads the args object back, calls the
/// child, stores the reply's xdata, returns the value's Python form.
pub type Winder =
    Box<dyn Fn(Python<'_>, &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> + Send + Sync + 'static>;

/// Everything needed to call down the graph from Python.
pub struct Down {
    /// The Python translator's child.
    pub child: XlatorRef,
    /// The runtime the FOP came from.
    pub handle: Handle,
    /// The caller.
    pub ctx: Ctx,
}

impl Down {
    /// Runs `f` on the child with the GIL released; a failure becomes `weft.Error`.
    fn call<T, F, Fut>(&self, py: Python<'_>, f: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(XlatorRef, Ctx) -> Fut + Send,
        Fut: Future<Output = Result<T, Errno>> + Send,
    {
        let (child, ctx) = (self.child.clone(), self.ctx.clone());
        let r = py.allow_threads(|| block_on(&self.handle, f(child, ctx)));
        r.map_err(|e| error_for(py, e))
    }
}

/// The context of one FOP call, handed to a Python method as `ctx`. Valid during the call.
#[pyclass(module = "weft", name = "Context", frozen)]
pub struct Context {
    /// The calling process's effective uid.
    #[pyo3(get)]
    uid: u32,
    /// The calling process's effective gid.
    #[pyo3(get)]
    gid: u32,
    /// The calling process's pid (0 for Weft's own work).
    #[pyo3(get)]
    pid: u32,
    /// The FOP's name.
    #[pyo3(get)]
    fop: &'static str,
    /// The translator's volfile name.
    #[pyo3(get)]
    translator: String,
    /// The gfid of the inode the FOP acts on, where known.
    #[pyo3(get)]
    gfid: Option<String>,
    /// The path (from the volume root) the FOP acts on, where known.
    path: Option<OsString>,
    down: Down,
    winder: Winder,
    args: Py<PyAny>,
    reply: Arc<Mutex<Xdata>>,
}

impl Context {
    /// A context for FOP `fop` of translator `translator` on target (`gfid`, `path`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fop: &'static str,
        translator: String,
        target: (Option<Gfid>, Option<std::path::PathBuf>),
        down: Down,
        winder: Winder,
        args: Py<PyAny>,
        reply: Arc<Mutex<Xdata>>,
    ) -> Context {
        Context {
            uid: down.ctx.uid,
            gid: down.ctx.gid,
            pid: down.ctx.pid,
            fop,
            translator,
            gfid: target.0.map(|g| g.to_string()),
            path: target.1.map(|p| p.into_os_string()),
            down,
            winder,
            args,
            reply,
        }
    }
}

#[pymethods]
impl Context {
    /// Passes the FOP down with `args` (default: the args object the method received, with
    /// any changes made to it) and returns the child's result; raises `weft.Error` if it
    /// fails. The reply's xdata becomes this FOP's reply xdata.
    #[pyo3(signature = (args=None))]
    fn wind(&self, py: Python<'_>, args: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let args = args.unwrap_or_else(|| self.args.bind(py).clone());
        (self.winder)(py, &args)
    }

    /// The path (from the volume root) the FOP acts on, where known: the first loc's
    /// path, or the fd's current path (following renames), as `str` (see
    /// [`crate::convert`]).
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::convert::opt_name_to_py(py, self.path.as_deref())
    }

    /// The xdata the FOP will reply with (from the last `wind`), as a dict[str, bytes].
    #[getter]
    fn reply_xdata(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let xd = self.reply.lock().clone();
        Ok(crate::convert::PyArg::to_py(&xd, py)?.unbind())
    }

    /// Looks up `path` (from the volume root, `/`-separated; str or bytes) below this
    /// translator.
    fn lookup(&self, py: Python<'_>, path: FsName) -> PyResult<PyIatt> {
        let names: Vec<OsString> = path
            .0
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(|c| OsStr::from_bytes(c).to_owned())
            .collect();
        let ia = self.down.call(py, move |child, ctx| async move {
            let mut ia = child.stat(&ctx, &Loc::root(), Xdata::new()).await?.0;
            let mut at = std::path::PathBuf::from("/");
            for n in names {
                at.push(&n);
                let loc = Loc::entry(ia.gfid, &n).with_path(&at);
                ia = child.lookup(&ctx, &loc, Xdata::new()).await?.0;
            }
            Ok(ia)
        })?;
        Ok(PyIatt::from_iatt(&ia))
    }

    /// The attributes of inode `gfid`, from below this translator.
    fn stat(&self, py: Python<'_>, gfid: &str) -> PyResult<PyIatt> {
        let g = parse_gfid(gfid)?;
        let ia = self.down.call(py, move |child, ctx| async move {
            Ok(child.stat(&ctx, &Loc::inode(g), Xdata::new()).await?.0)
        })?;
        Ok(PyIatt::from_iatt(&ia))
    }

    /// Reads `size` bytes (default: to the end) at `offset` of file `gfid`, opening and
    /// releasing it below this translator.
    #[pyo3(signature = (gfid, offset=0, size=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        gfid: &str,
        offset: u64,
        size: Option<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let g = parse_gfid(gfid)?;
        let data = self.down.call(py, move |child, ctx| async move {
            let fd = Fd::new(g, libc::O_RDONLY, false);
            child.open(&ctx, &Loc::inode(g), &fd, Xdata::new()).await?;
            let r = read_all(&child, &ctx, &fd, offset, size).await;
            let _ = child.release(&ctx, &fd, Xdata::new()).await;
            r
        })?;
        Ok(PyBytes::new(py, &data))
    }

    /// The value of xattr `name` of inode `gfid`, from below this translator.
    fn getxattr<'py>(
        &self,
        py: Python<'py>,
        gfid: &str,
        name: String,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let g = parse_gfid(gfid)?;
        let m = self.down.call(py, move |child, ctx| async move {
            let loc = Loc::inode(g);
            Ok(child
                .getxattr(&ctx, &loc, Some(&name), Xdata::new())
                .await?
                .0)
        })?;
        let v = m.into_values().next().unwrap_or_default();
        Ok(PyBytes::new(py, &v))
    }

    /// Sets xattr `name` of inode `gfid` to `value` below this translator.
    #[pyo3(signature = (gfid, name, value, flags=0))]
    fn setxattr(
        &self,
        py: Python<'_>,
        gfid: &str,
        name: String,
        value: Vec<u8>,
        flags: i32,
    ) -> PyResult<()> {
        let g = parse_gfid(gfid)?;
        self.down.call(py, move |child, ctx| async move {
            let attrs = XattrMap::from([(name, value)]);
            let loc = Loc::inode(g);
            child
                .setxattr(&ctx, &loc, &attrs, flags, Xdata::new())
                .await?;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Context(fop={:?}, translator={:?}, uid={}, gid={}, pid={}, gfid={:?}, path={:?})",
            self.fop, self.translator, self.uid, self.gid, self.pid, self.gfid, self.path
        )
    }
}

async fn read_all(
    child: &XlatorRef,
    ctx: &Ctx,
    fd: &weft_core::FdRef,
    mut offset: u64,
    size: Option<u64>,
) -> Result<bytes::Bytes, Errno> {
    let mut out = BytesMut::new();
    let mut left = size.unwrap_or(u64::MAX);
    while left > 0 {
        let want = READ_PIECE.min(u32::try_from(left).unwrap_or(u32::MAX));
        let (piece, _) = child.readv(ctx, fd, want, offset, Xdata::new()).await?;
        let n = piece.len() as u64;
        out.extend_from_slice(&piece);
        if n < u64::from(want) {
            break;
        }
        offset += n;
        left -= n;
    }
    Ok(out.freeze())
}
