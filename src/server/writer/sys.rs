//! Raw socket calls of the write path: non-blocking vectored `sendmsg` over a list of buffers,
//! with one cursor type for "how far did we get". The merged write, the flusher's pass and the
//! writer task all use it (they used to carry three copies of the same iovec arithmetic).

use bytes::Bytes;
use std::io;
use std::os::unix::io::RawFd;

/// Most iovecs per sendmsg (Linux IOV_MAX).
pub const MAX_IOV: usize = 1024;

/// Iovecs held on the stack for a call; more go to the heap (rare: a catching-up player).
const STACK_IOV: usize = 64;

/// Where a partly written list of buffers stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The first buffer not fully written.
    pub idx: usize,
    /// Bytes of that buffer already written.
    pub off: usize,
}

impl Cursor {
    /// Move past `n` more written bytes, skipping empty buffers.
    pub fn advance<B: IoBufs + ?Sized>(&mut self, bufs: &B, mut n: usize) {
        while self.idx < bufs.count() {
            let left = bufs.len_of(self.idx) - self.off;
            if n < left {
                self.off += n;
                return;
            }
            n -= left;
            self.idx += 1;
            self.off = 0;
        }
    }
}

/// A list of buffers a vectored write can take: shared `Bytes`, or ready-made iovecs (the
/// merged write builds those once per stream and reuses them for every player).
pub trait IoBufs {
    /// How many buffers.
    fn count(&self) -> usize;
    /// Length of buffer `i`.
    fn len_of(&self, i: usize) -> usize;
    /// Base pointer of buffer `i`.
    fn base_of(&self, i: usize) -> *const u8;
}

impl IoBufs for [Bytes] {
    fn count(&self) -> usize {
        self.len()
    }
    fn len_of(&self, i: usize) -> usize {
        self[i].len()
    }
    fn base_of(&self, i: usize) -> *const u8 {
        self[i].as_ptr()
    }
}

impl IoBufs for [libc::iovec] {
    fn count(&self) -> usize {
        self.len()
    }
    fn len_of(&self, i: usize) -> usize {
        self[i].iov_len
    }
    fn base_of(&self, i: usize) -> *const u8 {
        self[i].iov_base as *const u8
    }
}

/// How a non-blocking write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Everything was written.
    All,
    /// The socket filled up; the rest starts here.
    Full(Cursor),
}

/// Write `bufs` from `at` with non-blocking vectored sendmsg calls while the socket takes them.
/// Returns the bytes written (also when an error ended the write) and how it ended.
pub fn send_nonblocking<B: IoBufs + ?Sized>(
    fd: RawFd,
    bufs: &B,
    mut at: Cursor,
) -> (usize, io::Result<Progress>) {
    let mut written = 0;
    while at.idx < bufs.count() {
        match sendmsg(fd, bufs, at) {
            Ok(0) => return (written, Ok(Progress::Full(at))),
            Ok(n) => {
                written += n;
                at.advance(bufs, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return (written, Ok(Progress::Full(at)))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(Progress::All))
}

/// One sendmsg(MSG_DONTWAIT) of up to `MAX_IOV` buffers from `at`.
fn sendmsg<B: IoBufs + ?Sized>(fd: RawFd, bufs: &B, at: Cursor) -> io::Result<usize> {
    let n = (bufs.count() - at.idx).min(MAX_IOV);
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut stack = [empty; STACK_IOV];
    let mut heap: Vec<libc::iovec> = Vec::new();
    let slots: &mut [libc::iovec] = if n <= STACK_IOV {
        &mut stack[..n]
    } else {
        heap.resize(n, empty);
        &mut heap[..]
    };
    for (k, slot) in slots.iter_mut().enumerate() {
        let i = at.idx + k;
        let skip = if k == 0 { at.off } else { 0 };
        // SAFETY: `skip` is within buffer `i` (the cursor never passes a buffer's end).
        slot.iov_base = unsafe { bufs.base_of(i).add(skip) } as *mut libc::c_void;
        slot.iov_len = bufs.len_of(i) - skip;
    }
    // SAFETY: an all-zero msghdr is valid; only the iovec fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = slots.as_mut_ptr();
    msg.msg_iovlen = slots.len() as _;
    // SAFETY: the iovecs point into buffers the caller keeps alive for this call.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::io::AsRawFd;

    #[test]
    fn cursor_skips_empty_buffers_and_stops_inside_one() {
        let bufs = [
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ];
        let mut c = Cursor::default();
        c.advance(&bufs[..], 2);
        assert_eq!(c, Cursor { idx: 2, off: 0 });
        c.advance(&bufs[..], 1);
        assert_eq!(c, Cursor { idx: 2, off: 1 });
        c.advance(&bufs[..], 2);
        assert_eq!(c.idx, 3);
    }

    #[test]
    fn writes_bytes_and_iovecs_from_a_cursor() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let bufs = [Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
        let (n, r) = send_nonblocking(a.as_raw_fd(), &bufs[..], Cursor { idx: 0, off: 3 });
        assert_eq!((n, r.unwrap()), (8, Progress::All));
        let iovs: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let (n, r) = send_nonblocking(a.as_raw_fd(), &iovs[..], Cursor { idx: 1, off: 0 });
        assert_eq!((n, r.unwrap()), (5, Progress::All));
        drop(a);
        let mut got = String::new();
        b.read_to_string(&mut got).unwrap();
        assert_eq!(got, "lo worldworld");
    }

    #[test]
    fn a_full_socket_says_where_the_rest_starts() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let bufs = vec![big; 8];
        let (n, r) = send_nonblocking(a.as_raw_fd(), &bufs[..], Cursor::default());
        match r.unwrap() {
            Progress::Full(c) => assert_eq!(c.idx * (1 << 20) + c.off, n),
            Progress::All => panic!("8 MiB fit into a unix socket buffer"),
        }
    }
}
