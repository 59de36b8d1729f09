//! The server: one shard per core, each accepting RTMP and HTTP on the same ports.
//!
//! # Layout, leaves first (each module uses only those above it)
//! - [`ids`], [`time`], [`notify`], [`counters`], [`key`], [`kinds`]: identifiers, clocks,
//!   the wake-up flag, byte totals, stream keys, typed roles and close reasons.
//! - [`cpu`], [`lb_state`]: a shard's CPU use; the node's standing with a balancer.
//! - [`board`], [`global`]: the stats board and the process-wide counters.
//! - [`packet`], [`player_queue`], [`splice`]: a frame encoded once; a player's bounded queue;
//!   zero-copy fan-out through a pipe.
//! - [`writer`]: a connection's sending half, the shard's merged-write flusher, raw sendmsg;
//!   [`merged_read`]: publishers read on a shard-wide tick (raw recv).
//! - [`stream`]: a stream's fan-out to this shard's players (GOP cache, batches).
//! - [`registry`], [`mesh`], [`links`]: the owner's directory, what crosses between shards,
//!   and a shard's ties to the others.
//! - [`forward_peer`]: a forward destination's state, as the shard sees it.
//! - [`roles`]: owner, source, sink and forward host: what a shard does for each message.
//! - [`conns`]: the connection table and admission (an RAII slot per connection).
//! - [`proxy_prelude`]: a connection's PROXY header, when its listener reads one.
//! - [`shard`]: one shard's state and message dispatch.
//! - [`conn`]: the one connection lifecycle (open the writer half, close with a reason).
//! - [`parked_publisher`]: a merged-read publisher's session fed by the read tick while its
//!   task sleeps.
//! - tasks on top: [`rtmp_conn`] (an RTMP client), [`forward`] (a forward peer),
//!   [`forward_backend`] (asks `forward.backend` where else a publish goes), [`upstream`] (a
//!   pulled stream: edge or relay), [`traverse`] (an edge's token check at an origin),
//!   [`ticker`] (stats), [`agent`] (HAProxy agent-check and the load behind it), [`heartbeat`]
//!   (an origin's register heartbeats to the proxy tier), [`proxy_conn`] (a proxy's client,
//!   relayed to its origin over [`proxy_upstream`]), [`accept`], [`inbox`] (control from other
//!   threads), [`run`] (a shard's tasks).
//! - [`start`]: the whole server in this process, as `runtime::run` and the tests use it.

pub mod accept;
pub mod agent;
pub mod batch_iov;
pub mod board;
pub mod cluster_gate;
pub mod conn;
pub mod conns;
pub mod counters;
pub mod cpu;
pub mod discovery;
pub mod forward;
pub mod forward_backend;
pub mod forward_peer;
pub mod global;
pub mod gop_entry;
pub mod heartbeat;
pub mod ids;
pub mod inbox;
pub mod key;
pub mod kinds;
pub mod lb_state;
pub mod links;
pub mod merged_read;
pub mod mesh;
pub mod notify;
pub mod packet;
pub mod parked_publisher;
pub mod player_queue;
pub mod proxy_conn;
pub mod proxy_prelude;
pub mod proxy_publish;
pub mod proxy_upstream;
pub mod registry;
pub mod roles;
pub mod rtmp_conn;
pub mod run;
pub mod shard;
pub mod splice;
pub mod stream;
pub mod ticker;
pub mod time;
pub mod traverse;
pub mod upstream;
pub mod upstream_peer;
pub mod writer;

use crate::config::Config;
use global::Global;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use ids::ConnId;
use inbox::{control_channel, ControlSender};
use log::warn;
use mesh::{ControlMsg, ShardMsg};
use run::{run_shard, ShardError, ShardSlots, ShardSockets};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Submission-queue depth of each shard's io_uring rings. A deeper ring gives io_uring's cancel
/// table more buckets: every reactor sleep cancels a poll, and the kernel scans one bucket
/// shared by all pending player reads (8 buckets at the default depth of 128, 256 from 4096 up;
/// `io_poll_find` was 4-5% of server CPU at 1000 players).
const RING_DEPTH: usize = 4096;

/// Why the server could not start (or a shard stopped with an error).
#[derive(Debug, Error)]
pub enum StartError {
    /// Someone else holds a port.
    #[error("cannot listen on {addr}: {source}")]
    PortInUse {
        /// The address.
        addr: SocketAddr,
        /// What bind said.
        source: std::io::Error,
    },
    /// The config names no usable address.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The executors did not start.
    #[error("could not start the shard executors ({0}); io_uring needs locked memory: raise the memlock limit, e.g. `ulimit -l 65536` or LimitMEMLOCK= in a systemd unit")]
    Executors(String),
    /// A control channel could not be made.
    #[error("cannot create a control channel: {0}")]
    Control(std::io::Error),
    /// A shard stopped with an error.
    #[error("shard failed: {0}")]
    Shard(#[from] ShardError),
}

/// A listening socket every shard binds on the same address: SO_REUSEPORT spreads connections
/// over the shards, SO_REUSEADDR lets a restart bind while old connections are in TIME_WAIT.
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(4096)?;
    Ok(sk.into())
}

/// One listener per shard on `addr`; port 0 picks a free port, shared by all of them.
fn bind_group(addr: SocketAddr, shards: usize) -> Result<Vec<std::net::TcpListener>, StartError> {
    if addr.port() != 0 {
        // A plain bind fails when anyone holds the port, also another SO_REUSEPORT server.
        std::net::TcpListener::bind(addr)
            .map(drop)
            .map_err(|source| StartError::PortInUse { addr, source })?;
    }
    let first = bind_shared(addr).map_err(|source| StartError::PortInUse { addr, source })?;
    let bound = first
        .local_addr()
        .map_err(|source| StartError::PortInUse { addr, source })?;
    let mut all = vec![first];
    for _ in 1..shards {
        let l = bind_shared(bound).map_err(|source| StartError::PortInUse {
            addr: bound,
            source,
        })?;
        all.push(l);
    }
    Ok(all)
}

/// Sends control messages to every shard; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Controller {
    senders: Vec<ControlSender>,
    generation: Arc<AtomicU64>,
}

impl Controller {
    /// Ask every shard to stop.
    pub fn shutdown(&self) {
        for s in &self.senders {
            s.send(ControlMsg::Shutdown);
        }
    }

    /// Give every shard a new config; returns its generation.
    pub fn reload(&self, cfg: Arc<Config>) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        for s in &self.senders {
            s.send(ControlMsg::Reload {
                cfg: cfg.clone(),
                generation,
            });
        }
        generation
    }

    /// Disconnect client `id` (on the shard its id names).
    pub fn kick(&self, id: ConnId) {
        if let Some(s) = self.senders.get(id.shard()) {
            s.send(ControlMsg::Kick(id));
        }
    }
}

/// A running server: its addresses, its controller, and its shards to wait for.
pub struct Handle {
    /// Where RTMP is served.
    pub rtmp_addr: SocketAddr,
    /// Where HTTP is served, when enabled.
    pub http_addr: Option<SocketAddr>,
    /// Where the agent-check responder listens, when enabled.
    pub agent_addr: Option<SocketAddr>,
    /// Where a proxy's system API listens.
    pub api_addr: Option<SocketAddr>,
    controller: Controller,
    global: Arc<Global>,
    pool: Option<PoolThreadHandles<Result<(), ShardError>>>,
    /// Kept until every shard has stopped (see `start`).
    mesh: Option<MeshBuilder<ShardMsg, Full>>,
}

/// Start the server in this process: bind the listeners, start one pinned executor per shard,
/// and return at once. `runtime::run` adds signals; tests call this directly.
pub fn start(cfg: Config) -> Result<Handle, StartError> {
    let shards = cfg.shard_count();
    let listen = cfg.listen_addr()?;
    let rtmp = bind_group(listen, shards)?;
    let rtmp_addr = rtmp[0]
        .local_addr()
        .map_err(|source| StartError::PortInUse {
            addr: listen,
            source,
        })?;
    let http = if cfg.http.enabled {
        Some(bind_group(cfg.http_addr()?, shards)?)
    } else {
        None
    };
    let http_addr = http.as_ref().and_then(|h| h[0].local_addr().ok());
    let mut agent = match cfg.agent_addr() {
        None => None,
        Some(Err(reason)) => {
            return Err(StartError::Config(crate::config::ConfigError::Invalid {
                key: "lb.agent_listen",
                reason,
            }))
        }
        Some(Ok(addr)) => Some(bind_group(addr, 1)?.remove(0)),
    };
    let agent_addr = agent.as_ref().and_then(|a| a.local_addr().ok());
    let api = if cfg.is_proxy() {
        Some(bind_group(cfg.proxy_api_addr()?, shards)?)
    } else {
        None
    };
    let api_addr = api.as_ref().and_then(|a| a[0].local_addr().ok());
    let mut api = api.map(|v| v.into_iter());
    let mut senders = Vec::new();
    let mut slots = Vec::new();
    let mut meshes = Vec::new();
    let mut http = http.map(|v| v.into_iter());
    let cfg = Arc::new(cfg);
    let mesh = MeshBuilder::<ShardMsg, _>::full(shards, cfg.server.mesh_channel_capacity);
    for rtmp in rtmp {
        let (tx, inbox) = control_channel().map_err(StartError::Control)?;
        senders.push(tx);
        let sockets = ShardSockets {
            rtmp,
            http: http.as_mut().and_then(|h| h.next()),
            agent: agent.take(),
            api: api.as_mut().and_then(|a| a.next()),
        };
        slots.push(Some((sockets, inbox)));
        // glommio's MeshBuilder shares an `Rc` between its clones, so cloning or dropping one
        // on two executor threads at once races on the count (seen as a segfault at start-up,
        // about one start in fifty). Every clone is made here on this thread, each shard takes
        // its own by move, and `mesh` outlives the executors (kept in the handle).
        meshes.push(Some(mesh.clone()));
    }
    let controller = Controller {
        senders,
        generation: Arc::new(AtomicU64::new(0)),
    };
    let registry = cfg
        .is_proxy()
        .then(|| crate::control_plane::registry::RegistrySetup::from_config(&cfg.proxy));
    let calls = crate::control_plane::Calls::start_with(registry).map_err(StartError::Control)?;
    let global = Arc::new(Global::new(shards, calls));
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let placement = if shards <= cpus {
        PoolPlacement::MaxSpread(shards, None)
    } else {
        warn!("{shards} shards on {cpus} cores: executors are not pinned");
        PoolPlacement::Unbound(shards)
    };
    let meshes = Arc::new(Mutex::new(meshes));
    let slots: ShardSlots = Arc::new(Mutex::new(slots));
    let (g, ctl) = (global.clone(), controller.clone());
    let pool = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        .ring_depth(RING_DEPTH)
        .on_all_shards(move || {
            let mesh = meshes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter_mut()
                .find_map(Option::take)
                .expect("one mesh builder per shard");
            async move {
                // The shard's id comes from the mesh; it then takes slot `id`.
                let r = run_shard(cfg, g, mesh, slots).await;
                if r.is_err() {
                    // One shard down means the server is down: stop the others too.
                    ctl.shutdown();
                }
                r
            }
        })
        .map_err(|e| StartError::Executors(e.to_string()))?;
    Ok(Handle {
        rtmp_addr,
        http_addr,
        agent_addr,
        api_addr,
        controller,
        global,
        pool: Some(pool),
        mesh: Some(mesh),
    })
}

impl Handle {
    /// A controller for this server (for another thread: signals, tests).
    pub fn controller(&self) -> Controller {
        self.controller.clone()
    }

    /// The process-wide figures (the stats board the API reads).
    pub fn global(&self) -> &Arc<Global> {
        &self.global
    }

    /// Wait until every shard has stopped.
    pub fn wait(mut self) -> Result<(), StartError> {
        self.join()
    }

    /// Stop the server and wait for it.
    pub fn shutdown(mut self) -> Result<(), StartError> {
        self.controller.shutdown();
        self.join()
    }

    fn join(&mut self) -> Result<(), StartError> {
        let Some(pool) = self.pool.take() else {
            return Ok(());
        };
        let mut first_err = None;
        for r in pool.join_all() {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(StartError::Shard(e));
                }
                Err(e) => {
                    first_err.get_or_insert(StartError::Executors(e.to_string()));
                }
            }
        }
        // Only now, with every shard stopped (see `start`).
        drop(self.mesh.take());
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.pool.is_some() {
            self.controller.shutdown();
            let _ = self.join();
        }
    }
}
