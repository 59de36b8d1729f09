//! The accept loop of one shard: every shard listens on the same port (SO_REUSEPORT) and keeps
//! the connections the kernel hands it, each admitted under the limits before it gets a task.
//! On a listener with `proxy_protocol` on, the task first reads the balancer's PROXY header
//! ([`proxy_prelude`](super::proxy_prelude)) and the client it names is the connection's peer
//! from then on: per-IP limits, rules, hooks, logs and the API all see it.

use super::conns::Slot;
use super::ids::ConnId;
use super::proxy_prelude::{self, Prelude};
use super::shard::Shard;
use crate::lb::trust::{decide, should_read_header, Decision, ProxyMode, Seen};
use glommio::net::{TcpListener, TcpStream};
use log::{debug, warn};
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
    /// A proxy's system API port (index 2 is the agent-check's).
    Api = 3,
}

impl Listener {
    /// The listener's PROXY protocol mode and how long a client has for its first bytes.
    fn proxy_mode(self, shard: &Shard) -> (ProxyMode, Duration) {
        let cfg = shard.cfg();
        match self {
            Listener::Rtmp => (
                cfg.server.proxy_protocol,
                Duration::from_secs(cfg.server.handshake_timeout_secs),
            ),
            Listener::Http => (
                cfg.http.proxy_protocol,
                Duration::from_secs(cfg.http.header_timeout_secs),
            ),
            Listener::Api => (
                ProxyMode::Off,
                Duration::from_secs(cfg.http.header_timeout_secs),
            ),
        }
    }
}

/// Accept until shutdown; each connection gets its own task on this shard running `serve`,
/// which is handed the client's address and the bytes already read (after a PROXY header).
pub async fn accept_loop<F, Fut>(shard: Rc<Shard>, which: Listener, listener: TcpListener, serve: F)
where
    F: Fn(Rc<Shard>, TcpStream, ConnId, SocketAddr, Slot, Vec<u8>) -> Fut + Copy + 'static,
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
        let (mode, timeout) = which.proxy_mode(&shard);
        if mode == ProxyMode::Off {
            let Some(slot) = admit(&shard, id, peer, false) else {
                continue;
            };
            debug!("shard={} client={id} peer={peer} accepted", shard.id());
            glommio::spawn_local(serve(shard.clone(), stream, id, peer, slot, Vec::new())).detach();
            continue;
        }
        let trusted = shard.cfg().lb.trusted.contains(peer.ip());
        if !should_read_header(mode, trusted) {
            if let Decision::Reject(why) = decide(mode, trusted, Seen::Nothing) {
                warn!(
                    "shard={} client={id} peer={peer} refused: {why}",
                    shard.id()
                );
            }
            continue;
        }
        // Counted per IP once the header names the client: the balancer is one address.
        let Some(slot) = admit(&shard, id, peer, true) else {
            continue;
        };
        let sh = shard.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            let mut slot = slot;
            match proxy_prelude::read(&mut stream, peer, mode, trusted, timeout).await {
                Ok(Prelude::Serve { client, initial }) => {
                    if let Err(limit) = slot.bind_ip(client.ip(), &sh.cfg().server) {
                        warn!(
                            "shard={} client={id} peer={client} refused: {limit}",
                            sh.id()
                        );
                        return;
                    }
                    debug!(
                        "shard={} client={id} peer={client} accepted via {peer}",
                        sh.id()
                    );
                    serve(sh, stream, id, client, slot, initial).await;
                }
                Ok(Prelude::HealthCheck) => {
                    debug!("shard={} peer={peer} balancer health check", sh.id());
                }
                Err(e) => warn!("shard={} client={id} peer={peer} refused: {e}", sh.id()),
            }
        })
        .detach();
    }
}

/// A slot under the limits (the per-IP one left for later when `unbound`), or one log line.
fn admit(shard: &Shard, id: ConnId, peer: SocketAddr, unbound: bool) -> Option<Slot> {
    let cfg = shard.cfg();
    let slot = if unbound {
        shard.conns.admit_unbound(shard.global(), &cfg.server)
    } else {
        shard.conns.admit(shard.global(), &cfg.server, peer)
    };
    slot.map_err(|limit| {
        warn!(
            "shard={} client={id} peer={peer} refused: {limit}",
            shard.id()
        )
    })
    .ok()
}
