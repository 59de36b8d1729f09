//! The server on one shard, in data-flow order: accept -> conn (handshake, session) ->
//! shard (registry, streams) -> stream fan-out -> writer; `mesh` carries what crosses shards.

pub mod accept;
pub mod conn;
pub mod forward;
pub mod key;
pub mod mesh;
pub mod packet;
pub mod player_queue;
pub mod registry;
pub mod shard;
pub mod splice;
pub mod stats;
pub mod stream;
pub mod writer;

use crate::config::Config;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;
use log::{info, warn};
use mesh::ShardMsg;
use shard::{Global, Shard};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("could not join the cross-shard channels")]
    Mesh,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Filler randomness for handshakes and backoff jitter (not for anything secret).
pub(crate) fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ 0x9E37_79B9_7F4A_7C15
}

/// A listening socket every shard binds on the same address: SO_REUSEPORT spreads connections
/// over the shards, SO_REUSEADDR lets a restart bind while old connections are in TIME_WAIT.
pub fn bind_shared(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(4096)?;
    // SAFETY: a bound, listening socket whose ownership moves into the listener.
    Ok(unsafe { TcpListener::from_raw_fd(sk.into_raw_fd()) })
}

/// Everything one shard runs, until shutdown.
pub async fn run_shard(
    cfg: Arc<Config>,
    global: Arc<Global>,
    mesh: MeshBuilder<ShardMsg, Full>,
) -> Result<(), ShardError> {
    let (senders, mut receivers) = mesh.join().await.map_err(|_| ShardError::Mesh)?;
    let id = senders.peer_id();
    let shards = senders.nr_consumers();
    let shard = Shard::new(id, shards, cfg.clone(), global);
    let senders = Rc::new(senders);

    for dest in 0..shards {
        let outbox = shard.outbox(dest);
        if dest == id {
            let sh = shard.clone();
            glommio::spawn_local(outbox.run_local(move |m| sh.handle_msg(m))).detach();
        } else {
            glommio::spawn_local(outbox.run_remote(senders.clone(), dest)).detach();
        }
    }
    glommio::spawn_local(stats::run_ticker(shard.clone())).detach();
    if let Some(f) = shard.flusher.clone() {
        let sh = shard.clone();
        glommio::spawn_local(f.run(move |keys| sh.write_stream_batches(keys))).detach();
    }
    for (_peer, rx) in receivers.streams() {
        let sh = shard.clone();
        glommio::spawn_local(async move {
            while let Some(m) = rx.recv().await {
                sh.handle_msg(m);
            }
        })
        .detach();
    }

    let addr = cfg.listen_addr().expect("validated");
    let listener = bind_shared(addr).map_err(|source| ShardError::Bind { addr, source })?;
    info!("shard={id} listening on {addr} (cpu-pinned executor {id} of {shards})");
    if cfg.http.enabled {
        let http_addr = cfg.http_addr().expect("validated");
        let http = bind_shared(http_addr).map_err(|source| ShardError::Bind {
            addr: http_addr,
            source,
        })?;
        info!("shard={id} http listening on {http_addr}");
        glommio::spawn_local(accept::accept_loop(shard.clone(), http, crate::http::serve)).detach();
    }
    accept::accept_loop(shard.clone(), listener, conn::serve).await;

    // Shutdown: wake every connection's read with EOF, then give them a moment to clean up.
    let open: Vec<i32> = shard.conns.borrow().values().map(|c| c.fd).collect();
    for fd in open {
        // SAFETY: shutdown(2) on a descriptor owned by a live connection task.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !shard.conns.borrow().is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let left = shard.conns.borrow().len();
    if left > 0 {
        warn!("shard={id} {left} connections still open at exit");
    }
    info!("shard={id} stopped");
    Ok(())
}
