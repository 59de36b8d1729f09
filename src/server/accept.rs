//! The accept loop of one shard: every shard listens on the same port (SO_REUSEPORT) and keeps
//! the connections the kernel hands it.

use super::shard::Shard;
use glommio::net::{TcpListener, TcpStream};
use log::warn;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Resolves once shutdown has been requested.
pub async fn shutdown_requested(shard: &Shard) {
    while !shard.global.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Accept until shutdown; each connection gets its own task on this shard running `serve`.
pub async fn accept_loop<F, Fut>(shard: Rc<Shard>, listener: TcpListener, serve: F)
where
    F: Fn(Rc<Shard>, TcpStream, u64, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown_requested(&shard).await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                warn!("shard={} accept failed: {e}", shard.id);
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let id = shard.new_id();
        if let Err(limit) = shard.admit(peer) {
            warn!(
                "shard={} client={id} peer={peer} refused: {limit}",
                shard.id
            );
            drop(stream);
            continue;
        }
        log::debug!("shard={} client={id} peer={peer} accepted", shard.id);
        glommio::spawn_local(serve(shard.clone(), stream, id, peer)).detach();
    }
}
