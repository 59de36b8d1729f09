//! Control messages from outside the shards (the signal thread, a test's `Handle`) into one
//! shard. The sender pushes onto a small locked queue and writes one byte to a socket pair; the
//! shard's inbox task sleeps in an io_uring read of the other end, so nothing polls.

use super::mesh::ControlMsg;
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::io::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};

/// The sending end, usable from any thread.
#[derive(Clone)]
pub struct ControlSender {
    queue: Arc<Mutex<VecDeque<ControlMsg>>>,
    wake: Arc<Mutex<StdUnixStream>>,
}

impl ControlSender {
    /// Queue `msg` for the shard and wake it. False when the shard is gone.
    pub fn send(&self, msg: ControlMsg) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(msg);
        let mut w = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        // One byte per message; a full socket buffer already holds a wake-up.
        match w.write_all(&[1]) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

/// The receiving end, moved into its shard; `into_receiver` is called on the shard's thread.
pub struct ControlInbox {
    queue: Arc<Mutex<VecDeque<ControlMsg>>>,
    read_end: OwnedFd,
}

/// A control channel into one shard.
pub fn control_channel() -> std::io::Result<(ControlSender, ControlInbox)> {
    let (w, r) = StdUnixStream::pair()?;
    w.set_nonblocking(true)?;
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    Ok((
        ControlSender {
            queue: queue.clone(),
            wake: Arc::new(Mutex::new(w)),
        },
        ControlInbox {
            queue,
            read_end: OwnedFd::from(r),
        },
    ))
}

impl ControlInbox {
    /// Receive messages on the shard, calling `handle` for each, until the sender is gone.
    pub async fn run(self, mut handle: impl FnMut(ControlMsg)) {
        use futures_lite::AsyncReadExt;
        // SAFETY: the descriptor is ours (moved in) and becomes the glommio stream's.
        let mut wake =
            unsafe { glommio::net::UnixStream::from_raw_fd(self.read_end.into_raw_fd()) };
        let mut buf = [0u8; 64];
        loop {
            match wake.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            loop {
                let msg = self
                    .queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                match msg {
                    Some(m) => handle(m),
                    None => break,
                }
            }
        }
    }
}
