//! A Unix-socket connection the runtime's poller watches for reading only. Linux tells a Unix
//! socket's writer "writable" each time its peer reads what was written (TCP says so only after
//! a write found the send buffer full), so a connection watched for writing too wakes its
//! thread once more per request for nothing: the ns-proxy when the agent reads the request it
//! relayed, the agent when the ns-proxy reads its answer. Writes go straight to the socket;
//! only a write that would block has the connection watched for writing, through a second
//! descriptor (one epoll instance watches a descriptor once), until a write goes through.

use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::h1::TryRead;

/// A connected Unix socket, watched for reading.
pub struct UnixConnection {
    socket: AsyncFd<UnixStream>,
    /// Watches for writing while a write waits for room.
    writable: Option<AsyncFd<OwnedFd>>,
}

impl UnixConnection {
    /// Takes `stream` (made non-blocking) into the current runtime's poller.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        // SAFETY: a `UnixStream` owns its descriptor: it stays open, and is the one `as_raw_fd`
        // returns, until the stream is dropped, which only the `AsyncFd` does.
        let socket = unsafe { AsyncFd::register_with_interest(stream, Interest::READABLE) }?;
        Ok(Self {
            socket,
            writable: None,
        })
    }

    /// A connection taken from tokio's stream (its own registration, for both directions, ends).
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<Self> {
        Self::new(stream.into_std()?)
    }

    /// Its reading and writing halves, for two tasks.
    pub fn into_split(self) -> (UnixReadHalf, UnixWriteHalf) {
        let socket = Arc::new(self.socket);
        (
            UnixReadHalf(socket.clone()),
            UnixWriteHalf {
                socket,
                writable: self.writable,
            },
        )
    }
}

/// The reading half of a [`UnixConnection`].
pub struct UnixReadHalf(Arc<AsyncFd<UnixStream>>);

/// The writing half of a [`UnixConnection`]; dropped, it shuts the socket's writing down (the
/// peer reads the end), as tokio's halves do.
pub struct UnixWriteHalf {
    socket: Arc<AsyncFd<UnixStream>>,
    writable: Option<AsyncFd<OwnedFd>>,
}

impl Drop for UnixWriteHalf {
    fn drop(&mut self) {
        let _ = self.socket.get_ref().shutdown(Shutdown::Write);
    }
}

/// Reads what `socket` has into `buf`, waiting for the poller while there is nothing.
fn poll_read(
    socket: &AsyncFd<UnixStream>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let mut ready = ready!(socket.poll_read_ready(cx))?;
        // SAFETY: `recv` below only writes into these bytes, and nothing here marks a byte of
        // `buf` uninitialised.
        let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
        let room = unfilled.len();
        let read = ready.try_io(|socket| socket2::SockRef::from(socket.get_ref()).recv(unfilled));
        if let Ok(read) = read {
            let n = read?;
            // Less than there was room for: the socket is empty, and the next read waits for
            // the poller instead of finding that out (tokio's own streams do the same).
            if n > 0 && n < room {
                ready.clear_ready();
            }
            // SAFETY: `recv` wrote the first `n` bytes of the unfilled part.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        // It would have blocked: the readiness is cleared, wait for the next.
    }
}

/// Writes `bufs` on `socket` at once (one `writev`); while that would block, `writable` watches
/// for room.
fn poll_write(
    mut socket: &UnixStream,
    writable: &mut Option<AsyncFd<OwnedFd>>,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    loop {
        let Some(watch) = writable else {
            match socket.write_vectored(bufs) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let copy = socket.as_fd().try_clone_to_owned()?;
                    // SAFETY: as in `UnixConnection::new`, for the copy the `OwnedFd` owns.
                    let watch =
                        unsafe { AsyncFd::register_with_interest(copy, Interest::WRITABLE) };
                    *writable = Some(watch?);
                    continue;
                }
                done => return Poll::Ready(done),
            }
        };
        let mut ready = ready!(watch.poll_write_ready(cx))?;
        if let Ok(done) = ready.try_io(|_| socket.write_vectored(bufs)) {
            // Room again: back to writing unwatched.
            *writable = None;
            return Poll::Ready(done);
        }
    }
}

impl AsyncRead for UnixConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.socket, cx, buf)
    }
}

impl AsyncRead for UnixReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.0, cx, buf)
    }
}

impl TryRead for UnixConnection {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut socket = self.socket.get_ref();
        socket.read(buf)
    }
}

/// `AsyncWrite` for a type with a `socket` and its `writable` watch.
macro_rules! write_unwatched {
    ($ty:ty) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_vectored(cx, &[IoSlice::new(buf)])
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let this = self.get_mut();
                poll_write(this.socket.get_ref(), &mut this.writable, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.socket.get_ref().shutdown(Shutdown::Write))
            }
        }
    };
}

write_unwatched!(UnixConnection);
write_unwatched!(UnixWriteHalf);

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsRawFd;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// `EPOLLOUT`, as `/proc/self/fdinfo` shows an epoll instance's masks.
    const EPOLLOUT: u32 = 0x4;
    /// `EPOLLIN`.
    const EPOLLIN: u32 = 0x1;

    /// The inode of the socket `fd` is.
    fn inode(fd: i32) -> u64 {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let target = target.to_string_lossy();
        let number = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'));
        number.unwrap().parse().unwrap()
    }

    /// The event masks the process's epoll instances watch the socket `inode` with, one per
    /// descriptor watched (other tests' sockets may have the same descriptor numbers, and an
    /// instance may have two descriptors: mio keeps a copy).
    fn watched(inode: u64) -> Vec<u32> {
        let mut masks = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let is_epoll = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]");
            let info = format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy());
            // An instance may close meanwhile (another test's runtime).
            let Some(info) = is_epoll
                .then(|| std::fs::read_to_string(info).ok())
                .flatten()
            else {
                continue;
            };
            // tfd: 7 events: 80002019 data: … pos:0 ino:1f2e sdev:8
            for line in info.lines().filter(|line| line.starts_with("tfd:")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let field =
                    |name: &str| words.iter().position(|w| *w == name).map(|i| words[i + 1]);
                let ino = words.iter().find_map(|w| w.strip_prefix("ino:"));
                if ino.and_then(|i| u64::from_str_radix(i, 16).ok()) == Some(inode)
                    && let Some(mask) = field("events:")
                {
                    let watch = (
                        field("tfd:").map(str::to_owned),
                        field("data:").map(str::to_owned),
                    );
                    masks.insert(watch, u32::from_str_radix(mask, 16).unwrap());
                }
            }
        }
        masks.into_values().collect()
    }

    /// How many of `masks` watch for writing.
    fn for_writing(masks: &[u32]) -> usize {
        masks.iter().filter(|mask| *mask & EPOLLOUT != 0).count()
    }

    #[tokio::test]
    async fn a_connection_is_watched_for_reading_only_until_a_write_blocks() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let socket = inode(ours.as_raw_fd());
        let mut connection = UnixConnection::new(ours).unwrap();
        let masks = watched(socket);
        assert_eq!(masks.len(), 1, "{masks:x?}");
        assert_eq!(masks[0] & (EPOLLIN | EPOLLOUT), EPOLLIN, "{masks:x?}");

        // More than the socket holds: the write waits for its peer to read, watched meanwhile.
        let big: Vec<u8> = (0..8 << 20).map(|i: u32| i as u8).collect();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut got = vec![0; 8 << 20];
            theirs.read_exact(&mut got).unwrap();
            theirs.write_all(b"thanks").unwrap();
            (got, theirs)
        });
        let writing = connection.write_all(&big);
        tokio::pin!(writing);
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(100), &mut writing);
        assert!(blocked.await.is_err(), "8 MiB fit in the socket");
        let masks = watched(socket);
        assert_eq!((masks.len(), for_writing(&masks)), (2, 1), "{masks:x?}");
        writing.await.unwrap();
        let (got, _theirs) = reader.join().unwrap();
        assert!(got == big, "the bytes arrived whole and in order");
        // The write went through: watched for reading only again.
        let masks = watched(socket);
        assert_eq!((masks.len(), for_writing(&masks)), (1, 0), "{masks:x?}");
        let mut thanks = [0; 6];
        connection.read_exact(&mut thanks).await.unwrap();
        assert_eq!(&thanks, b"thanks");
    }

    #[tokio::test]
    async fn halves_read_and_write_and_a_dropped_writer_ends_the_stream() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let connection = UnixConnection::new(ours).unwrap();
        assert_eq!(
            connection.try_read(&mut [0]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "open, nothing to read"
        );
        let (mut reader, mut writer) = connection.into_split();
        writer
            .write_all_buf(&mut &b"GET / HTTP/1.1\r\n\r\n"[..])
            .await
            .unwrap();
        let mut request = [0; 18];
        theirs.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"GET / HTTP/1.1\r\n\r\n");
        theirs.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        let mut answer = [0; 17];
        reader.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n");
        drop(writer);
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        drop(theirs);
        assert_eq!(
            reader.read(&mut [0; 8]).await.unwrap(),
            0,
            "the peer closed"
        );
    }
}
