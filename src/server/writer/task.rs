//! The writer task: owns the socket's writing half until the connection closes. It writes
//! control bytes at once, finishes what a merged write could not, and (without a flusher)
//! writes media as it comes.

use super::conn_writer::ConnWriter;
use super::sys::{send_nonblocking, Cursor, Progress};
use crate::server::splice;
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

/// Flush what is queued and wait (briefly) for the writer task to end.
pub async fn close_and_wait(w: &ConnWriter, task: glommio::Task<()>) {
    w.close();
    let _ = glommio::timer::timeout(Duration::from_secs(2), async {
        task.await;
        Ok(())
    })
    .await;
}

/// The writer task of one connection.
pub async fn run_writer(w: Rc<ConnWriter>, mut stream: TcpStream) {
    // Merged writes may splice into the socket, which must then never block the shard.
    // (glommio sends and receives with MSG_DONTWAIT and io_uring, which this does not change.)
    if let Err(e) = splice::set_nonblocking(stream.as_raw_fd()) {
        w.fail(format!("cannot make the socket non-blocking: {e}"));
    }
    w.fd.set(stream.as_raw_fd());
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        w.notify.wait().await;
        if w.failed.get() {
            break;
        }
        if w.held.get() && !w.closing.get() {
            continue;
        }
        w.busy.set(true);
        {
            let mut pending = w.pending.borrow_mut();
            batch.append(&mut pending);
            shrink_if_large(&mut pending);
        }
        w.queue.borrow_mut().take_all(&mut batch);
        if !batch.is_empty() {
            match write_batch(&mut stream, &batch, w.stall_timeout).await {
                Ok(n) => w.count_write(n),
                Err(e) => {
                    w.fail(e.to_string());
                    break;
                }
            }
            batch.clear();
            shrink_if_large(&mut batch);
        }
        w.busy.set(false);
        if w.closing.get() {
            w.fd.set(-1);
            if w.shutdown_after.get() {
                let _ = stream.shutdown(std::net::Shutdown::Both).await;
            }
            return;
        }
    }
    // A failed write: unblock the reader so the connection is cleaned up.
    w.fd.set(-1);
    let _ = stream.shutdown(std::net::Shutdown::Both).await;
}

/// Give back the room a burst (a join's GOP) took, so idle connections stay small.
fn shrink_if_large(v: &mut Vec<Bytes>) {
    if v.capacity() > 16 && v.is_empty() {
        *v = Vec::new();
    }
}

/// Write all of `bufs`: vectored non-blocking sendmsg while the socket takes it, and the
/// io_uring send (which waits for room) for the rest of a buffer when it does not.
async fn write_batch(
    stream: &mut TcpStream,
    bufs: &[Bytes],
    stall_timeout: Duration,
) -> std::io::Result<usize> {
    let fd = stream.as_raw_fd();
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut at = Cursor::default();
    while at.idx < bufs.len() {
        let (_, result) = send_nonblocking(fd, bufs, at);
        match result? {
            Progress::All => break,
            Progress::Full(stop) => {
                // Socket full: let io_uring wait for room for the rest of this buffer, but not
                // forever: a peer that stopped reading is dropped.
                let rest = &bufs[stop.idx][stop.off..];
                glommio::timer::timeout(stall_timeout, async {
                    stream.write_all(rest).await.map_err(Into::into)
                })
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("peer took no data for {} s", stall_timeout.as_secs()),
                    )
                })?;
                at = Cursor {
                    idx: stop.idx + 1,
                    off: 0,
                };
            }
        }
    }
    Ok(total)
}
