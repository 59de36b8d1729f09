//! Everything one shard runs, until shutdown: the mesh's receivers and outboxes, the control
//! inbox, the flusher, the stats ticker and the accept loops. Effects the roles hand back are
//! carried out here.

use super::accept::{accept_loop, Listener};
use super::global::Global;
use super::inbox::ControlInbox;
use super::mesh::ShardMsg;
use super::roles::Effect;
use super::shard::Shard;
use super::{agent, forward, heartbeat, proxy_conn, rtmp_conn, ticker, upstream};
use crate::config::Config;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;
use log::{info, warn};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a shard could not run.
#[derive(Debug, Error)]
pub enum ShardError {
    /// glommio's mesh could not be joined.
    #[error("could not join the cross-shard channels")]
    Mesh,
}

/// The sockets one shard serves, bound before the executors start.
pub struct ShardSockets {
    /// The RTMP listener.
    pub rtmp: std::net::TcpListener,
    /// The HTTP listener, when HTTP is enabled.
    pub http: Option<std::net::TcpListener>,
    /// The agent-check listener (shard 0 only, when `lb.agent_listen` is set).
    pub agent: Option<std::net::TcpListener>,
    /// A proxy's system API listener.
    pub api: Option<std::net::TcpListener>,
}

/// What each shard takes once it knows its id: its sockets and its control inbox (the
/// controller's sender `i` reaches shard `i`).
pub type ShardSlots = std::sync::Arc<std::sync::Mutex<Vec<Option<(ShardSockets, ControlInbox)>>>>;

/// Handle a message and carry out what it asks of the shard.
fn dispatch(shard: &Rc<Shard>, msg: ShardMsg) {
    if let Some(effect) = shard.handle_msg(msg) {
        apply(shard, effect);
    }
}

fn apply(shard: &Rc<Shard>, effect: Effect) {
    match effect {
        Effect::SpawnForward(h) => {
            glommio::spawn_local(forward::run(shard.clone(), h)).detach();
        }
        Effect::SpawnUpstream(h) => {
            glommio::spawn_local(upstream::run(shard.clone(), h)).detach();
        }
    }
}

fn listener(sock: std::net::TcpListener) -> TcpListener {
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    // SAFETY: a bound, listening socket whose ownership moves into the glommio listener.
    unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) }
}

/// Run one shard until it is told to shut down.
pub async fn run_shard(
    cfg: Arc<Config>,
    global: Arc<Global>,
    mesh: MeshBuilder<ShardMsg, Full>,
    slots: ShardSlots,
) -> Result<(), ShardError> {
    let (senders, mut receivers) = mesh.join().await.map_err(|_| ShardError::Mesh)?;
    let id = senders.peer_id();
    let (sockets, inbox) = slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(id)
        .and_then(Option::take)
        .ok_or(ShardError::Mesh)?;
    let shards = senders.nr_consumers();
    let shard = Shard::new(id, shards, cfg.clone(), global);
    let senders = Rc::new(senders);

    for dest in 0..shards {
        let outbox = shard.outbox(dest);
        if dest == id {
            let sh = shard.clone();
            glommio::spawn_local(outbox.run_local(move |m| dispatch(&sh, m))).detach();
        } else {
            glommio::spawn_local(outbox.run_remote(senders.clone(), dest)).detach();
        }
    }
    for (_peer, rx) in receivers.streams() {
        let sh = shard.clone();
        glommio::spawn_local(async move {
            while let Some(m) = rx.recv().await {
                dispatch(&sh, m);
            }
        })
        .detach();
    }
    let sh = shard.clone();
    glommio::spawn_local(inbox.run(move |m| sh.control(m))).detach();
    glommio::spawn_local(ticker::run(shard.clone())).detach();
    if let Some(f) = shard.flusher() {
        let sh = shard.clone();
        glommio::spawn_local(f.run(move |keys| sh.write_stream_batches(keys))).detach();
    }

    let rtmp = listener(sockets.rtmp);
    if let Ok(addr) = rtmp.local_addr() {
        info!("shard={id} listening on {addr} (cpu-pinned executor {id} of {shards})");
    }
    let http = sockets.http.map(|h| {
        let l = listener(h);
        if let Ok(addr) = l.local_addr() {
            info!("shard={id} http listening on {addr}");
        }
        glommio::spawn_local(accept_loop(
            shard.clone(),
            Listener::Http,
            l,
            crate::http::serve,
        ))
    });
    if id == 0 {
        glommio::spawn_local(agent::run_sampler(shard.clone())).detach();
    }
    let agent_task = sockets.agent.map(|a| {
        let l = listener(a);
        if let Ok(addr) = l.local_addr() {
            info!("shard={id} agent-check listening on {addr}");
        }
        glommio::spawn_local(agent::serve(shard.clone(), l))
    });
    let api_task = sockets.api.map(|a| {
        let l = listener(a);
        if let Ok(addr) = l.local_addr() {
            info!("shard={id} system api listening on {addr}");
        }
        glommio::spawn_local(accept_loop(
            shard.clone(),
            Listener::Api,
            l,
            crate::http::sysapi::serve,
        ))
    });
    if id == 0 && cfg.cluster.register.enabled() {
        glommio::spawn_local(heartbeat::run(shard.clone())).detach();
    }
    shard.global().lb.shard_ready();
    if cfg.is_proxy() {
        accept_loop(shard.clone(), Listener::Rtmp, rtmp, proxy_conn::serve).await;
    } else {
        accept_loop(shard.clone(), Listener::Rtmp, rtmp, rtmp_conn::serve).await;
    }
    if let Some(a) = api_task {
        a.await;
    }
    if let Some(a) = agent_task {
        a.await;
    }
    if let Some(h) = http {
        h.await;
    }

    // Shutdown: wake every connection's read with EOF, then give them a moment to clean up.
    shard.conns.shutdown_all();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !shard.conns.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let left = shard.conns.len();
    if left > 0 {
        warn!("shard={id} {left} connections still open at exit");
    }
    info!("shard={id} stopped");
    Ok(())
}
