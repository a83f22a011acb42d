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
/// system call and no extra thread wake-up. A send with others waiting behind it leaves
/// its frame buffered for the last of them to flush: a burst of frames (the replies to a
/// window of writes) goes out in one system call.
///
/// A send cancelled halfway (its future dropped) would leave part of a frame on the
/// wire; the sink then refuses every later send, so the connection ends instead of
/// carrying a corrupt stream. A send cancelled while it waited, when it was the one
/// the frames before it left their flush to, has the flush done in the background.
pub struct FrameSink {
    inner: tokio::sync::Mutex<SinkState>,
    progress: std::sync::Arc<Progress>,
    me: std::sync::Weak<FrameSink>,
}

struct SinkState {
    w: BufWriter<Box<dyn AsyncWrite + Unpin + Send>>,
    broken: bool,
    /// Frames are buffered that a later send is to flush.
    owed: bool,
}

/// Buffered bytes past which a send flushes even with others waiting.
const FLUSH_AT: usize = 48 * 1024;

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
struct Busy<'a> {
    sink: &'a FrameSink,
    /// The send wrote its frame (and flushed, or left the flush to a later send).
    done: bool,
}

impl<'a> Busy<'a> {
    fn enter(sink: &'a FrameSink) -> Busy<'a> {
        let p = &sink.progress;
        if p.sending.fetch_add(1, Ordering::AcqRel) == 0 {
            // Idle until now: the wait for the socket starts here.
            p.touch();
        }
        Busy { sink, done: false }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.sink.progress.sending.fetch_sub(1, Ordering::AcqRel);
        if !self.done {
            // Cancelled before its frame went: the frames buffered before it may have
            // counted on it to flush them.
            if let (Some(sink), Ok(rt)) = (
                self.sink.me.upgrade(),
                tokio::runtime::Handle::try_current(),
            ) {
                rt.spawn(async move { sink.flush_owed().await });
            }
        }
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
        std::sync::Arc::new_cyclic(|me| FrameSink {
            inner: tokio::sync::Mutex::new(SinkState {
                w: BufWriter::with_capacity(64 * 1024, Box::new(io)),
                broken: false,
                owed: false,
            }),
            progress,
            me: me.clone(),
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

    /// Writes one frame; it is on the socket when this returns, or buffered for a send
    /// already waiting behind it to flush.
    pub async fn send(&self, f: Frame) -> Result<(), SinkClosed> {
        let mut busy = Busy::enter(self);
        let mut st = self.inner.lock().await;
        let r = self.send_locked(&mut st, &f).await;
        // Not cancelled: uncounted while the lock is still held, so the next send sees
        // exactly the sends still to come.
        busy.done = true;
        drop(busy);
        drop(st);
        r
    }

    async fn send_locked(&self, st: &mut SinkState, f: &Frame) -> Result<(), SinkClosed> {
        if st.broken {
            return Err(SinkClosed);
        }
        // Stays set if this future is dropped before the frame is all out.
        st.broken = true;
        write_one(&mut st.w, f).await.map_err(|_| SinkClosed)?;
        // Others waiting (counted before they wait for the lock): the last flushes.
        if self.progress.sending.load(Ordering::Acquire) > 1 && st.w.buffer().len() < FLUSH_AT {
            st.owed = true;
            st.broken = false;
            return Ok(());
        }
        st.w.flush().await.map_err(|_| SinkClosed)?;
        st.owed = false;
        st.broken = false;
        Ok(())
    }

    /// Flushes frames a cancelled send was to flush (counted as a send meanwhile, for
    /// [`FrameSink::stalled_for`]). A sink a cancelled send left broken is shut down: the
    /// frames it holds can never go, and the peer must see the connection end now rather
    /// than wait for replies to them.
    async fn flush_owed(&self) {
        let p = &self.progress;
        if p.sending.fetch_add(1, Ordering::AcqRel) == 0 {
            p.touch();
        }
        let mut st = self.inner.lock().await;
        if st.broken {
            let _ = st.w.get_mut().shutdown().await;
        } else if st.owed {
            st.broken = true;
            if st.w.flush().await.is_ok() {
                st.owed = false;
                st.broken = false;
            }
        }
        p.sending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Closes the write side; later sends fail.
    pub async fn shutdown(&self) {
        let mut st = self.inner.lock().await;
        st.broken = true;
        let _ = st.w.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;
    use weft_wire::Kind;

    /// A socket end that counts the flushes reaching it.
    struct Counting {
        io: tokio::io::DuplexStream,
        flushes: Arc<AtomicUsize>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    fn frame(id: u64) -> Frame {
        Frame::new(
            Kind::Reply,
            id,
            Bytes::from(id.to_le_bytes().to_vec()),
            Bytes::from(vec![7u8; 100]),
        )
    }

    fn sink(flushes: &Arc<AtomicUsize>) -> (Arc<FrameSink>, FrameReader<tokio::io::DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let sink = FrameSink::new(Counting {
            io: a,
            flushes: flushes.clone(),
        });
        (sink, FrameReader::new(b))
    }

    /// Sends queued behind one another share flushes, and every frame of a send that
    /// returned `Ok` goes out, also when the last queued send is cancelled before its turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_sends_share_flushes_and_a_cancelled_last_one_still_flushes() {
        const N: u64 = 20;
        for cancel_last in [false, true] {
            let flushes = Arc::new(AtomicUsize::new(0));
            let (sink, mut reader) = sink(&flushes);
            // Hold the lock so every send queues.
            let held = sink.inner.lock().await;
            let mut tasks = Vec::new();
            for i in 0..N {
                let s = sink.clone();
                tasks.push(tokio::spawn(async move { s.send(frame(i)).await.is_ok() }));
                // In order: each counted and waiting before the next starts.
                while sink.progress.sending.load(Ordering::Acquire) < i as usize + 1 {
                    tokio::task::yield_now().await;
                }
            }
            let last = tasks.pop().unwrap();
            if cancel_last {
                last.abort();
                assert!(last.await.unwrap_err().is_cancelled());
            } else {
                tasks.push(last);
            }
            drop(held);
            for t in tasks {
                assert!(t.await.unwrap());
            }
            let want = if cancel_last { N - 1 } else { N };
            for i in 0..want {
                let f = tokio::time::timeout(Duration::from_secs(5), reader.next())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("frame {i} stayed buffered (cancel_last {cancel_last})")
                    })
                    .unwrap();
                assert_eq!(u64::from_le_bytes(f.meta[..8].try_into().unwrap()), i);
            }
            let n = flushes.load(Ordering::Relaxed);
            assert!(
                n < 4,
                "{n} flushes for {want} queued frames (cancel_last {cancel_last})"
            );
        }
    }

    /// A send cancelled while its frame is half out leaves the sink refusing later sends,
    /// and a cancelled waiter behind it then shuts the socket: the peer sees the end at
    /// once instead of waiting for frames that can never go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_sink_is_shut_down_by_a_cancelled_waiter() {
        // A pipe smaller than one frame, not read: a big send blocks half way.
        let (a, b) = tokio::io::duplex(1024);
        let flushes = Arc::new(AtomicUsize::new(0));
        let sink = FrameSink::new(Counting {
            io: a,
            flushes: flushes.clone(),
        });
        let big = Frame::new(
            Kind::Reply,
            1,
            Bytes::from(vec![1u8; 8]),
            Bytes::from(vec![0u8; 256 * 1024]),
        );
        let s = sink.clone();
        let stuck = tokio::spawn(async move { s.send(big).await });
        while sink.progress.sending.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = sink.clone();
        let waiter = tokio::spawn(async move { s.send(frame(2)).await });
        while sink.progress.sending.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        stuck.abort();
        let _ = stuck.await;
        waiter.abort();
        let _ = waiter.await;
        assert!(
            sink.send(frame(3)).await.is_err(),
            "a broken sink took a send"
        );
        // Reading what came: the half frame, then the end of the stream.
        let mut reader = FrameReader::new(b);
        let r = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
        assert!(
            matches!(r, Ok(Err(_))),
            "the peer did not see the connection end: {r:?}"
        );
    }
}
