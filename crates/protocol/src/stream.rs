//! Frame I/O over any byte stream (TCP, TLS over TCP, a unix socket).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use weft_wire::{Frame, FrameError};

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
}

/// Reads whole frames from a stream, buffering at most one maximal frame.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `io`.
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The next frame, or why there is none.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
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
}

struct SinkState {
    w: BufWriter<Box<dyn AsyncWrite + Unpin + Send>>,
    broken: bool,
}

/// The sink is closed or broken; the connection is over.
#[derive(Debug)]
pub struct SinkClosed;

impl FrameSink {
    /// A sink writing to `w`.
    pub fn new<W: AsyncWrite + Unpin + Send + 'static>(w: W) -> std::sync::Arc<FrameSink> {
        std::sync::Arc::new(FrameSink {
            inner: tokio::sync::Mutex::new(SinkState {
                w: BufWriter::with_capacity(64 * 1024, Box::new(w)),
                broken: false,
            }),
        })
    }

    /// Writes and flushes one frame.
    pub async fn send(&self, f: Frame) -> Result<(), SinkClosed> {
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
