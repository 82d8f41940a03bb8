//! Where an upstream's connections go and the stream they are: TCP or a Unix socket, one type
//! so that one pool holds either.

use std::io::{self, IoSlice};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp};

use super::error::UpstreamError;
use crate::http::h1::TryRead;
use crate::http::limits::UPSTREAM_CONNECT_TIMEOUT;
use crate::http::unix_connection::{UnixConnection, UnixReadHalf, UnixWriteHalf};

/// Where connections go.
pub enum Dialer {
    /// `host:port`.
    Tcp(String),
    Unix(PathBuf),
}

impl Dialer {
    /// A new connection within `UPSTREAM_CONNECT_TIMEOUT`; `describe` names the upstream in the
    /// error.
    pub async fn connect(&self, describe: &str) -> Result<Stream, UpstreamError> {
        let unreachable = |err: io::Error| UpstreamError::Unreachable(format!("{describe}: {err}"));
        let timed_out = |_| {
            UpstreamError::Unreachable(format!(
                "{describe}: no connection within {UPSTREAM_CONNECT_TIMEOUT:?}"
            ))
        };
        match self {
            Self::Tcp(address) => {
                let stream =
                    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(address))
                        .await
                        .map_err(timed_out)?
                        .map_err(unreachable)?;
                // Metadata requests are tiny: send each at once.
                let _ = stream.set_nodelay(true);
                Ok(Stream::Tcp(stream))
            }
            Self::Unix(path) => {
                let stream =
                    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, UnixStream::connect(path))
                        .await
                        .map_err(timed_out)?
                        .map_err(unreachable)?;
                // Watched for reading only (`unix_connection.rs` says why).
                let stream = UnixConnection::from_tokio(stream).map_err(unreachable)?;
                Ok(Stream::Unix(stream))
            }
        }
    }
}

/// A connection to an upstream.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixConnection),
}

impl Stream {
    /// Its reading and writing halves, for a pipelined connection's two tasks.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Tcp(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Tcp(read), WriteHalf::Tcp(write))
            }
            Self::Unix(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Unix(read), WriteHalf::Unix(write))
            }
        }
    }
}

/// The reading half of a connection.
pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(UnixReadHalf),
}

/// The writing half of a connection.
pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(UnixWriteHalf),
}

impl TryRead for Stream {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.try_read(buf),
            Self::Unix(stream) => stream.try_read(buf),
        }
    }
}

/// `AsyncRead` for an enum of a TCP and a Unix variant: each call goes to the variant.
macro_rules! read_through {
    ($ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
                    Self::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
                }
            }
        }
    };
}

/// `AsyncWrite` for an enum of a TCP and a Unix variant: each call goes to the variant, the
/// vectored write too (or tokio would write only the first of the head and body slices at a
/// time).
macro_rules! write_through {
    ($ty:ty) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
                    Self::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
                    Self::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Tcp(stream) => stream.is_write_vectored(),
                    Self::Unix(stream) => stream.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
                    Self::Unix(stream) => Pin::new(stream).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
                    Self::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
                }
            }
        }
    };
}

read_through!(Stream);
read_through!(ReadHalf);
write_through!(Stream);
write_through!(WriteHalf);
