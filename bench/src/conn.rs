//! One RTMP connection's socket side, shared by players and publishers: connect with a bound,
//! register the descriptor so the thread can cut every blocked read at the end of the run, and
//! flush whatever the client state machine has queued.

use crate::runner::{Role, ThreadCtx};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use shardcast::rtmp::client::ClientSession;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

/// How long a TCP connect may take before it counts as an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Conn {
    pub stream: TcpStream,
    ctx: Rc<ThreadCtx>,
    id: u64,
}

impl Conn {
    pub async fn open(ctx: &Rc<ThreadCtx>, addr: SocketAddr, role: Role) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .await
            .map_err(std::io::Error::from)?;
        // Small control messages (acks, commands) should not wait for Nagle.
        stream.set_nodelay(true).map_err(std::io::Error::from)?;
        let id = ctx.register(stream.as_raw_fd(), role);
        Ok(Conn {
            stream,
            ctx: ctx.clone(),
            id,
        })
    }

    /// The connection's own address, as the peer sees it (`None` if the kernel will not say).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// Writes everything the session has queued; returns the bytes written.
    pub async fn flush(&mut self, session: &mut ClientSession) -> std::io::Result<usize> {
        let mut n = 0;
        while let Some(out) = session.poll_transmit() {
            self.stream.write_all(&out).await?;
            n += out.len();
        }
        Ok(n)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Before the stream closes the descriptor, so a stop never shuts down a reused number.
        self.ctx.unregister(self.id);
    }
}
