//! Zero-copy fan-out of a merged write: the batch is copied once into a pipe, and each player
//! gets it with `tee` (the pipe's pages, referenced, into a scratch pipe) and `splice` (those
//! page references into the socket). The kernel then copies nothing per player on the sending
//! side; with one `sendmsg` per player it copies the whole batch once per player, which is most
//! of what a large merged write costs.
//!
//! Only for batches that fit the pipe and are large enough to be worth the extra system call.

use std::io;
use std::os::unix::io::RawFd;

/// Pipe size asked for (Linux's default `fs.pipe-max-size` for unprivileged users).
const WANT_PIPE: libc::c_int = 1 << 20;

/// A pipe's two ends, closed on drop.
struct Pipe {
    read: RawFd,
    write: RawFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read: fds[0],
            write: fds[1],
        })
    }

    /// Grow to `WANT_PIPE` if allowed; the capacity it has.
    fn grow(&self) -> usize {
        // SAFETY: plain fcntl calls on a descriptor we own.
        unsafe {
            libc::fcntl(self.write, libc::F_SETPIPE_SZ, WANT_PIPE);
            libc::fcntl(self.write, libc::F_GETPIPE_SZ).max(0) as usize
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors are ours and closed once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

/// What a splice to one socket did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The whole batch.
    All,
    /// This many bytes; the socket is full (the caller hands the rest to the writer task).
    Part(usize),
}

/// One per shard: the source pipe a batch is written into and the scratch pipe each player's
/// copy passes through.
pub struct SpliceFanout {
    source: Pipe,
    scratch: Pipe,
    devnull: RawFd,
    capacity: usize,
    /// Bytes of the current batch in `source` (0: none loaded).
    loaded: usize,
}

impl SpliceFanout {
    /// Two fresh pipes (loading and spare); fails when the process is out of descriptors.
    pub fn new() -> io::Result<SpliceFanout> {
        let (source, scratch) = (Pipe::new()?, Pipe::new()?);
        let capacity = source.grow().min(scratch.grow());
        // SAFETY: a plain open of a path we pass as a C string.
        let devnull =
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if devnull < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SpliceFanout {
            source,
            scratch,
            devnull,
            capacity,
            loaded: 0,
        })
    }

    /// Bytes of the loaded batch.
    pub fn loaded(&self) -> usize {
        self.loaded
    }

    /// Is a batch of `len` bytes worth splicing (at least `min`, which is not 0) and does it
    /// fit? Below a few pages, copying costs less than the second system call per player.
    pub fn fits(&self, len: usize, min: usize) -> bool {
        min > 0 && (min..=self.capacity).contains(&len)
    }

    /// Copy the batch into the source pipe. False when it did not all go in (nothing is kept:
    /// the caller writes this batch the ordinary way).
    pub fn load(&mut self, iovs: &[libc::iovec]) -> bool {
        self.unload();
        let total: usize = iovs.iter().map(|v| v.iov_len).sum();
        let mut done = 0usize;
        let mut at = 0usize;
        while at < iovs.len() {
            let n = (iovs.len() - at).min(1024);
            // SAFETY: the iovecs point into buffers the caller keeps alive for this call.
            let r = unsafe { libc::writev(self.source.write, iovs[at..].as_ptr(), n as i32) };
            if r < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            let r = r as usize;
            done += r;
            let chunk: usize = iovs[at..at + n].iter().map(|v| v.iov_len).sum();
            if r < chunk {
                break; // the pipe is full: give up on this batch
            }
            at += n;
        }
        self.loaded = done;
        if done != total {
            self.unload();
            return false;
        }
        true
    }

    /// Send the loaded batch to socket `fd` (which must be non-blocking).
    pub fn send_to(&self, fd: RawFd) -> io::Result<Sent> {
        let len = self.loaded;
        // SAFETY: tee and splice between descriptors we own and the caller's socket.
        let teed = unsafe {
            libc::tee(
                self.source.read,
                self.scratch.write,
                len,
                libc::SPLICE_F_NONBLOCK,
            )
        };
        if teed < 0 || teed as usize != len {
            let e = io::Error::last_os_error();
            self.drain_scratch();
            return Err(if teed < 0 {
                e
            } else {
                io::Error::other("tee took part of the batch")
            });
        }
        let mut sent = 0usize;
        let result = loop {
            if sent == len {
                break Ok(Sent::All);
            }
            // SAFETY: splice(2) between two descriptors we hold open; no pointers are passed.
            let r = unsafe {
                libc::splice(
                    self.scratch.read,
                    std::ptr::null_mut(),
                    fd,
                    std::ptr::null_mut(),
                    len - sent,
                    libc::SPLICE_F_NONBLOCK,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            if r == 0 {
                break Ok(Sent::Part(sent));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => break Ok(Sent::Part(sent)),
                _ => break Err(e),
            }
        };
        if !matches!(result, Ok(Sent::All)) {
            self.drain_scratch();
        }
        result
    }

    /// Empty the source pipe (after every player has its copy).
    pub fn unload(&mut self) {
        if self.loaded > 0 {
            drain(self.source.read, self.devnull);
            self.loaded = 0;
        }
    }

    fn drain_scratch(&self) {
        drain(self.scratch.read, self.devnull);
    }
}

impl Drop for SpliceFanout {
    fn drop(&mut self) {
        // SAFETY: ours, closed once.
        unsafe {
            libc::close(self.devnull);
        }
    }
}

/// Discard whatever is in the pipe `read` (page references are dropped, nothing is copied).
fn drain(read: RawFd, devnull: RawFd) {
    loop {
        // SAFETY: splice between two descriptors we own.
        let r = unsafe {
            libc::splice(
                read,
                std::ptr::null_mut(),
                devnull,
                std::ptr::null_mut(),
                1 << 30,
                libc::SPLICE_F_NONBLOCK,
            )
        };
        if r <= 0 {
            if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
    }
}

/// Make a socket non-blocking, so a splice into it never waits.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::io::AsRawFd;
    use std::os::unix::net::UnixStream;

    const MIN: usize = 16 * 1024;

    fn iov(b: &[u8]) -> libc::iovec {
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }
    }

    #[test]
    fn a_batch_reaches_every_socket_intact() {
        let mut f = SpliceFanout::new().unwrap();
        let a: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let b = vec![7u8; 9_000];
        assert!(f.fits(a.len() + b.len(), MIN));
        assert!(f.load(&[iov(&a), iov(&b)]));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = UnixStream::pair().unwrap();
            set_nonblocking(tx.as_raw_fd()).unwrap();
            assert_eq!(f.send_to(tx.as_raw_fd()).unwrap(), Sent::All);
            readers.push((tx, rx));
        }
        f.unload();
        for (tx, mut rx) in readers {
            drop(tx);
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            assert_eq!(&got[..a.len()], &a[..]);
            assert_eq!(&got[a.len()..], &b[..]);
        }
    }

    #[test]
    fn a_full_socket_takes_part_and_nothing_is_left_for_the_next() {
        let mut f = SpliceFanout::new().unwrap();
        let a: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        if !f.fits(a.len(), MIN) {
            return; // pipes cannot grow here; nothing to check
        }
        assert!(f.load(&[iov(&a)]));
        let (tx, mut rx) = UnixStream::pair().unwrap();
        set_nonblocking(tx.as_raw_fd()).unwrap();
        let n = match f.send_to(tx.as_raw_fd()).unwrap() {
            Sent::Part(n) => n,
            Sent::All => panic!("600 kB went into a socket nobody reads"),
        };
        assert!(n < a.len());
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(got, &a[..n], "the part sent is the batch's start");

        // The scratch pipe was emptied: the next batch goes out alone and whole.
        let b = vec![9u8; MIN];
        assert!(f.load(&[iov(&b)]));
        let (tx, mut rx) = UnixStream::pair().unwrap();
        set_nonblocking(tx.as_raw_fd()).unwrap();
        assert_eq!(f.send_to(tx.as_raw_fd()).unwrap(), Sent::All);
        f.unload();
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(got, b);
    }

    #[test]
    fn small_and_oversized_batches_are_not_spliced() {
        let f = SpliceFanout::new().unwrap();
        assert!(!f.fits(MIN - 1, MIN));
        assert!(!f.fits(64 << 20, MIN));
        assert!(!f.fits(MIN, 0), "0 turns splicing off");
    }
}
