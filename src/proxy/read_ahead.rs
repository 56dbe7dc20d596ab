//! Reading an intercepted client's TLS bytes in large pieces.
//!
//! rustls asks its transport for at most 4 KiB per read, so a 200 KB request body arriving
//! through a CONNECT tunnel cost about fifty `recv` calls. [`ReadAhead`] sits between the
//! tunnel and the TLS server: it reads up to [`READ_AHEAD`] bytes at once and hands them out
//! in the pieces rustls asks for. Writes pass straight through. Nothing is reordered or held
//! back: a read returns as soon as any bytes are there, as the socket's own read would.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read from the socket may take.
pub const READ_AHEAD: usize = 64 * 1024;

/// A read smaller than this means no bulk transfer is under way: the buffer is let go once it
/// is drained, so an idle keep-alive connection holds no read-ahead memory.
const BULK: usize = 16 * 1024;

pub struct ReadAhead<T> {
    inner: T,
    /// Bytes read from `inner` and not handed out yet.
    buf: BytesMut,
    /// Whether the last read from `inner` was a bulk one (keep the buffer for the next).
    bulk: bool,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            bulk: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if out.remaining() >= READ_AHEAD {
                // The caller's buffer is as large as ours would be: no copy.
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buf.reserve(READ_AHEAD);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.buf
            ))?;
            this.bulk = read >= BULK;
            if read == 0 {
                // End of stream: the caller's read stays empty, as the socket's would.
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() && !this.bulk {
            this.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_come_out_in_order_in_small_reads_and_writes_pass_through() {
        let (near, mut far) = tokio::io::duplex(256 * 1024);
        let mut reader = ReadAhead::new(near);
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        while got.len() < sent.len() {
            let n = reader.read(&mut piece).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, sent);

        reader.write_all(b"reply").await.unwrap();
        let mut reply = [0u8; 5];
        far.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");

        drop(far);
        assert_eq!(reader.read(&mut piece).await.unwrap(), 0, "end of stream");
    }
}
