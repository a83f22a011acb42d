//! Frame I/O over any byte stream (TCP, TLS over TCP, a unix socket).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use weft_wire::{Frame, FrameError, Header, HEADER_LEN};

/// A byte stream a connection runs over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`], so plain and TLS connections share one code path.
pub type BoxStream = Box<dyn Stream>;

/// Why a connection ended while reading.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection between frames.
    #[error("connection closed by peer")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
    /// The bytes received are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// A frame is longer than this reader takes at this point (see
    /// [`FrameReader::set_max_frame`]).
    #[error("a frame of {len} bytes is longer than the {max} bytes allowed here")]
    TooLarge {
        /// The frame's metadata and data length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Reads whole frames from a stream, buffering at most one maximal frame.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame: Option<usize>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `io`.
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
            max_frame: None,
        }
    }

    /// Refuses frames whose two parts together are longer than `max` bytes (checked as
    /// soon as the header is in, before any body is buffered); `None` allows the protocol's
    /// own limits. A server reads a handshake this way.
    pub fn set_max_frame(&mut self, max: Option<usize>) {
        self.max_frame = max;
    }

    /// The next frame, or why there is none.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
            let head = self.buf.get(..HEADER_LEN);
            let head = head.and_then(|b| <&[u8; HEADER_LEN]>::try_from(b).ok());
            if let (Some(max), Some(h)) = (self.max_frame, head) {
                let h = Header::parse(h)?;
                let len = h.meta_len as usize + h.data_len as usize;
                if len > max {
                    return Err(ReadError::TooLarge { len, max });
                }
            }
            if let Some(f) = Frame::decode(&mut self.buf)? {
                return Ok(f);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            let n = self.io.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    ReadError::Closed
                } else {
                    ReadError::Truncated(self.buf.len())
                });
            }
        }
    }
}

/// Writes frames queued on a channel, flushing when the queue runs dry so that frames
/// sent together share system calls. Returns when every sender is gone or the socket
/// fails.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    io: W,
    mut rx: mpsc::Receiver<Frame>,
) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(256 * 1024, io);
    while let Some(f) = rx.recv().await {
        write_one(&mut w, &f).await?;
        while let Ok(f) = rx.try_recv() {
            write_one(&mut w, &f).await?;
        }
        w.flush().await?;
    }
    w.shutdown().await
}

async fn write_one<W: AsyncWrite + Unpin>(w: &mut BufWriter<W>, f: &Frame) -> std::io::Result<()> {
    w.write_all(&f.header.to_bytes()).await?;
    w.write_all(&f.meta).await?;
    w.write_all(&f.data).await
}

/// Writes frames straight from the task that has one to send, one whole frame at a time
/// under a lock: no hand-off to a writer task, so a small request or reply costs one
/// system call and no extra thread wake-up.
///
/// A send cancelled halfway (its future dropped) would leave part of a frame on the
/// wire; the sink then refuses every later send, so the connection ends instead of
/// carrying a corrupt stream.
pub struct FrameSink {
    inner: tokio::sync::Mutex<SinkState>,
    progress: std::sync::Arc<Progress>,
}

struct SinkState {
    w: BufWriter<Box<dyn AsyncWrite + Unpin + Send>>,
    broken: bool,
}

/// When the socket last took bytes, and how many sends are under way: a sink with sends
/// waiting and no progress for a long time has a peer that stopped reading.
struct Progress {
    base: Instant,
    /// Milliseconds after `base` of the last write or flush that made progress.
    last_ms: AtomicU64,
    /// Sends started and not finished (waiting for the lock or writing).
    sending: AtomicUsize,
}

impl Progress {
    fn touch(&self) {
        let now = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }
}

/// Counts one send as under way until dropped (also when the send is cancelled).
struct Busy<'a>(&'a Progress);

impl<'a> Busy<'a> {
    fn enter(p: &'a Progress) -> Busy<'a> {
        if p.sending.fetch_add(1, Ordering::AcqRel) == 0 {
            // Idle until now: the wait for the socket starts here.
            p.touch();
        }
        Busy(p)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A writer that records in [`Progress`] each time the socket takes bytes.
struct Tracked<W> {
    io: W,
    progress: std::sync::Arc<Progress>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tracked<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                self.progress.touch();
            }
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = &r {
            self.progress.touch();
        }
        r
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The sink is closed or broken; the connection is over.
#[derive(Debug)]
pub struct SinkClosed;

impl FrameSink {
    /// A sink writing to `w`.
    pub fn new<W: AsyncWrite + Unpin + Send + 'static>(w: W) -> std::sync::Arc<FrameSink> {
        let progress = std::sync::Arc::new(Progress {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            sending: AtomicUsize::new(0),
        });
        let io = Tracked {
            io: w,
            progress: progress.clone(),
        };
        std::sync::Arc::new(FrameSink {
            inner: tokio::sync::Mutex::new(SinkState {
                w: BufWriter::with_capacity(64 * 1024, Box::new(io)),
                broken: false,
            }),
            progress,
        })
    }

    /// How long sends have been waiting without the socket taking a byte: zero when no
    /// send is under way. A peer that does not read its socket makes this grow.
    pub fn stalled_for(&self) -> Duration {
        let p = &self.progress;
        if p.sending.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let now = p.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(p.last_ms.load(Ordering::Relaxed)))
    }

    /// Writes and flushes one frame.
    pub async fn send(&self, f: Frame) -> Result<(), SinkClosed> {
        let _busy = Busy::enter(&self.progress);
        let mut st = self.inner.lock().await;
        if st.broken {
            return Err(SinkClosed);
        }
        // Stays set if this future is dropped before the frame is all out.
        st.broken = true;
        if write_one(&mut st.w, &f).await.is_err() || st.w.flush().await.is_err() {
            return Err(SinkClosed);
        }
        st.broken = false;
        Ok(())
    }

    /// Closes the write side; later sends fail.
    pub async fn shutdown(&self) {
        let mut st = self.inner.lock().await;
        st.broken = true;
        let _ = st.w.shutdown().await;
    }
}
