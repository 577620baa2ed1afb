//! One accepted connection: it holds a slot of the listener's connection limit for as long
//! as it lives, and ends itself (a read error) once its client has sent nothing for the idle
//! timeout while none of its requests was being answered.

use crate::metrics::Labels;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A slot of the connection limit; gives it back (and updates the open gauge) when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    labels: Arc<Labels>,
}

impl Slot {
    pub(crate) fn new(permit: OwnedSemaphorePermit, labels: Arc<Labels>) -> Slot {
        labels.opened();
        Slot {
            _permit: permit,
            labels,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.labels.closed();
    }
}

/// Requests of one connection being answered; the idle timer does not fire while any is.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(crate) fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

pub(crate) struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP connection under the listener's limits.
pub struct Conn {
    stream: TcpStream,
    idle_timeout: Duration,
    last_read: Instant,
    deadline: Pin<Box<Sleep>>,
    in_flight: InFlight,
    labels: Arc<Labels>,
    _slot: Slot,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        idle_timeout: Duration,
        in_flight: InFlight,
        slot: Slot,
        labels: Arc<Labels>,
    ) -> Conn {
        let now = Instant::now();
        Conn {
            stream,
            idle_timeout,
            last_read: now,
            deadline: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            in_flight,
            labels,
            _slot: slot,
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    /// Called when the read side has nothing: `Ready(Err)` once the connection idled out.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            // The deadline is only moved when it fires, not on every read.
            let due = self.last_read + self.idle_timeout;
            if due > now {
                self.deadline.as_mut().reset(due);
            } else if self.in_flight.busy() {
                self.deadline.as_mut().reset(now + self.idle_timeout);
            } else {
                self.labels.closed_for("idle_timeout");
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for longer than idle_timeout",
                ));
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A served connection: plain, or TLS over the limited TCP connection.
pub enum ServerIo {
    Plain(Conn),
    Tls(Box<tokio_rustls::server::TlsStream<Conn>>),
}

impl ServerIo {
    fn tcp(&self) -> &TcpStream {
        match self {
            ServerIo::Plain(conn) => conn.tcp(),
            ServerIo::Tls(tls) => tls.get_ref().0.tcp(),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $io:ident => $call:expr) => {
        match $self.get_mut() {
            ServerIo::Plain($io) => {
                let $io = Pin::new($io);
                $call
            }
            ServerIo::Tls($io) => {
                let $io = Pin::new($io.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(conn) => conn.is_write_vectored(),
            ServerIo::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_shutdown(cx))
    }
}

impl tonic::transport::server::Connected for ServerIo {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}
