//! The accept loop of one shard: every shard listens on the same port (SO_REUSEPORT) and keeps
//! the connections the kernel hands it, each admitted under the limits before it gets a task.

use super::conns::Slot;
use super::ids::ConnId;
use super::shard::Shard;
use glommio::net::{TcpListener, TcpStream};
use log::warn;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Which of the shard's listeners (each waits on its own shutdown wake-up).
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    /// The RTMP port.
    Rtmp = 0,
    /// The HTTP port.
    Http = 1,
}

/// Accept until shutdown; each connection gets its own task on this shard running `serve`.
pub async fn accept_loop<F, Fut>(shard: Rc<Shard>, which: Listener, listener: TcpListener, serve: F)
where
    F: Fn(Rc<Shard>, TcpStream, ConnId, SocketAddr, Slot) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stopped(which as usize).await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                warn!("shard={} accept failed: {e}", shard.id());
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let id = shard.new_conn_id();
        let slot = match shard.conns.admit(shard.global(), &shard.cfg().server, peer) {
            Ok(s) => s,
            Err(limit) => {
                warn!(
                    "shard={} client={id} peer={peer} refused: {limit}",
                    shard.id()
                );
                continue;
            }
        };
        log::debug!("shard={} client={id} peer={peer} accepted", shard.id());
        glommio::spawn_local(serve(shard.clone(), stream, id, peer, slot)).detach();
    }
}
