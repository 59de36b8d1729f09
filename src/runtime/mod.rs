//! glommio glue: the pool of pinned executors (one shard per core), the cross-shard mesh, the
//! process limits and the signals that stop it all.

use crate::config::Config;
use crate::server::mesh::ShardMsg;
use crate::server::shard::Global;
use crate::server::{run_shard, ShardError};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use log::{error, info, warn};
use std::path::{Path, PathBuf};

/// Submission-queue depth of each shard's io_uring rings.
const RING_DEPTH: usize = 4096;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    PortInUse {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("could not start the shard executors ({0}); io_uring needs locked memory: raise the memlock limit, e.g. `ulimit -l 65536` or LimitMEMLOCK= in a systemd unit")]
    Executors(String),
    #[error("shard failed: {0}")]
    Shard(#[from] ShardError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Raise the open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

/// Fails early, with a clear error, when someone else holds the port.
fn check_port_free(addr: std::net::SocketAddr) -> Result<(), RunError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| RunError::PortInUse { addr, source })
}

/// Keys a reload cannot change (the listeners and the shard layout are set up once).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.server.listen != new.server.listen {
        v.push("server.listen");
    }
    if old.server.shards != new.server.shards {
        v.push("server.shards");
    }
    if old.server.mesh_channel_capacity != new.server.mesh_channel_capacity {
        v.push("server.mesh_channel_capacity");
    }
    if old.rtmp.mw_latency_ms != new.rtmp.mw_latency_ms {
        v.push("rtmp.mw_latency_ms");
    }
    if old.http.enabled != new.http.enabled || old.http.listen != new.http.listen {
        v.push("http.listen / http.enabled");
    }
    v
}

/// SIGHUP: load the config again; a bad one is refused and the running one stays.
fn reload(path: Option<&Path>, running: &Config, global: &Global) {
    let loaded = match path {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    };
    match loaded {
        Err(e) => error!("config reload refused, keeping the running config: {e}"),
        Ok(new) => {
            for key in restart_only_changes(running, &new) {
                warn!("config reload: `{key}` changed; it takes effect only after a restart");
            }
            let generation = global.publish_config(Arc::new(new));
            info!("config reload accepted (generation {generation}): forward destinations, access rules, hooks and limits apply to new requests");
        }
    }
}

/// Run the server until SIGINT/SIGTERM; SIGHUP reloads `config_path` (or the embedded default).
pub fn run(cfg: Config, config_path: Option<PathBuf>) -> Result<(), RunError> {
    let addr = cfg.listen_addr()?;
    check_port_free(addr)?;
    if cfg.http.enabled {
        check_port_free(cfg.http_addr()?)?;
    }
    let shards = cfg.shard_count();
    let nofile = raise_nofile_limit();
    // Each connection holds two descriptors (reader and writer halves).
    let capacity = (nofile.saturating_sub(64) / 2).min(cfg.server.max_connections as u64);
    info!(
        "shardcast {} starting: rtmp={addr} shards={shards} open-files limit={nofile} connection capacity={capacity}",
        env!("CARGO_PKG_VERSION")
    );

    let global = Arc::new(Global::new(shards));
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(RunError::Signals)?;
    let g = global.clone();
    let sig_handle = signals.handle();
    let running = cfg.clone();
    std::thread::spawn(move || {
        let mut running = running;
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                reload(config_path.as_deref(), &running, &g);
                if let Some((_, c)) = g.reloaded() {
                    running = (*c).clone();
                }
                continue;
            }
            info!("signal {sig}: stopping");
            g.shutdown.store(true, Ordering::Relaxed);
            break;
        }
    });

    let cfg = Arc::new(cfg);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let placement = if shards <= cpus {
        PoolPlacement::MaxSpread(shards, None)
    } else {
        warn!("{shards} shards on {cpus} cores: executors are not pinned");
        PoolPlacement::Unbound(shards)
    };
    let mesh = MeshBuilder::<ShardMsg, _>::full(shards, cfg.server.mesh_channel_capacity);
    // glommio's MeshBuilder shares an `Rc` between its clones, so cloning or dropping one on
    // two executor threads at once races on the count (seen as a segfault at start-up, about
    // one start in fifty). Every clone is made here on this thread, each shard takes its own
    // by move, and `mesh` outlives the executors, so the count never reaches zero on a shard.
    let per_shard = Arc::new(std::sync::Mutex::new(
        (0..shards).map(|_| Some(mesh.clone())).collect::<Vec<_>>(),
    ));
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        // A deeper ring gives io_uring's cancel table more buckets: every reactor sleep cancels
        // a poll, and the kernel scans one bucket shared by all pending player reads
        // (8 buckets at the default depth of 128, 256 from 4096 up).
        .ring_depth(RING_DEPTH)
        .on_all_shards(move || {
            let cfg = cfg.clone();
            let global = global.clone();
            let mesh = per_shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter_mut()
                .find_map(Option::take)
                .expect("one mesh builder per shard");
            async move {
                let r = run_shard(cfg, global.clone(), mesh).await;
                if r.is_err() {
                    // One shard down means the server is down: stop the others too.
                    global.shutdown.store(true, Ordering::Relaxed);
                }
                r
            }
        })
        .map_err(|e| RunError::Executors(e.to_string()))?;
    let mut first_err = None;
    for r in handles.join_all() {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(RunError::Shard(e));
            }
            Err(e) => {
                first_err.get_or_insert(RunError::Executors(e.to_string()));
            }
        }
    }
    sig_handle.close();
    // Only now, with every shard stopped (see above).
    drop(mesh);
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
