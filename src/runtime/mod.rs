//! Process glue around [`server::start`]: the open-files limit, the
//! signals (SIGINT/SIGTERM stop, SIGTERM drains first with `server.shutdown_grace_secs`,
//! SIGHUP reloads) and the reload checks.

use crate::config::Config;
use crate::lb::agent::AdminState;
use crate::server::board::media_sessions;
use crate::server::global::Global;
use crate::server::{self, Controller, StartError};
use log::{error, info, warn};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why the server did not run.
#[derive(Debug, Error)]
pub enum RunError {
    /// Start-up or a shard failed.
    #[error("{0}")]
    Start(#[from] StartError),
    /// The config names no usable address.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// Signal handlers could not be installed.
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
    if old.lb.agent_listen != new.lb.agent_listen {
        v.push("lb.agent_listen");
    }
    v
}

/// SIGHUP: load the config again; a bad one is refused and the running one stays. Returns
/// the config now in force.
fn reload(path: Option<&Path>, running: Config, ctl: &Controller) -> Config {
    let loaded = match path {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    };
    match loaded {
        Err(e) => {
            error!("config reload refused, keeping the running config: {e}");
            running
        }
        Ok(new) => {
            for key in restart_only_changes(&running, &new) {
                warn!("config reload: `{key}` changed; it takes effect only after a restart");
            }
            let generation = ctl.reload(Arc::new(new.clone()));
            info!("config reload accepted (generation {generation}): forward destinations, access rules, hooks and limits apply to new requests");
            new
        }
    }
}

/// How often a drain looks whether the last client has left.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// SIGTERM with a grace period: tell the balancer (agent `drain`, `/healthz` 503), keep serving
/// the publishers and players there are until they leave or `grace` ends, then stop.
pub fn drain_then_stop(global: &Global, ctl: &Controller, grace: Duration) {
    global.lb.set_admin(AdminState::Drain);
    let deadline = Instant::now() + grace;
    // The board is refreshed every 250 ms: give it a moment to show what the shards hold.
    std::thread::sleep(DRAIN_POLL * 2);
    loop {
        let left = media_sessions(&global.board.read());
        if left == 0 {
            info!("drain: no publishers or players left, stopping");
            break;
        }
        if Instant::now() >= deadline {
            info!("drain: grace period over with {left} sessions left, stopping");
            break;
        }
        std::thread::sleep(DRAIN_POLL);
    }
    ctl.shutdown();
}

/// Run the server until SIGINT/SIGTERM; SIGHUP reloads `config_path` (or the embedded default).
pub fn run(cfg: Config, config_path: Option<PathBuf>) -> Result<(), RunError> {
    let addr = cfg.listen_addr()?;
    let shards = cfg.shard_count();
    let nofile = raise_nofile_limit();
    // Each connection holds two descriptors (reader and writer halves).
    let capacity = (nofile.saturating_sub(64) / 2).min(cfg.server.max_connections as u64);
    info!(
        "shardcast {} starting: rtmp={addr} shards={shards} open-files limit={nofile} connection capacity={capacity}",
        env!("CARGO_PKG_VERSION")
    );
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(RunError::Signals)?;
    let sig_handle = signals.handle();
    let running = cfg.clone();
    let handle = server::start(cfg)?;
    let ctl = handle.controller();
    let global = handle.global().clone();
    std::thread::spawn(move || {
        let mut running = running;
        let mut draining = false;
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                running = reload(config_path.as_deref(), running, &ctl);
                continue;
            }
            let grace = Duration::from_secs(running.server.shutdown_grace_secs);
            if sig == signal_hook::consts::SIGTERM && !grace.is_zero() && !draining {
                // Drain first; a second signal stops at once.
                draining = true;
                info!("signal {sig}: draining for up to {} s, then stopping (signal again to stop now)", grace.as_secs());
                let (ctl, global) = (ctl.clone(), global.clone());
                std::thread::spawn(move || drain_then_stop(&global, &ctl, grace));
                continue;
            }
            info!("signal {sig}: stopping");
            ctl.shutdown();
            break;
        }
    });
    let result = handle.wait();
    sig_handle.close();
    Ok(result?)
}
