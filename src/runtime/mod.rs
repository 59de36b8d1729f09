//! Process glue around [`server::start`]: the open-files limit, the
//! signals (SIGINT/SIGTERM stop, SIGHUP reloads) and the reload checks.

use crate::config::Config;
use crate::server::{self, Controller, StartError};
use log::{error, info, warn};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    std::thread::spawn(move || {
        let mut running = running;
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                running = reload(config_path.as_deref(), running, &ctl);
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
