//! Shared harness of the end-to-end tests: the real `shardcast` binary, real ffmpeg / ffprobe /
//! rtmpdump, and hand-made clients built on the crate's sans-I/O RTMP library, all on 127.0.0.1.
//!
//! Rules kept here so each test file does not have to: every child process is killed when its
//! guard drops, every wait has a deadline, every loop is bounded, and a failing test prints the
//! tail of the server log (the [`Server`] guard does it while the panic unwinds).
//!
//! One module per thing driven, all re-exported here (tests `use common::*`):
//! [`process`] child processes and the CLI, [`server`] the server under test, [`ffmpeg`]
//! ffmpeg / ffprobe, [`libclient`] RTMP clients on the crate's session, [`raw`] hand-made RTMP
//! bytes, [`http`] HTTP and HTTP-FLV (on the bench crate's parsers), [`metrics`] the Prometheus
//! text, [`hooks`] an HTTP hook receiver, [`redis_server`] a real redis-server. Each test binary compiles all of it and uses a part.
#![allow(dead_code)]

pub mod ffmpeg;
pub mod hooks;
pub mod http;
pub mod libclient;
pub mod metrics;
pub mod process;
pub mod raw;
pub mod redis_server;
pub mod server;

// Each test binary uses a part of these.
#[allow(unused_imports)]
pub use self::{
    ffmpeg::*, hooks::*, http::*, libclient::*, metrics::*, process::*, raw::*, redis_server::*,
    server::*,
};

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The vhost the server names streams under when the client gives none.
pub const VHOST: &str = "__defaultVhost__";

/// Heavy tests of one test binary run one at a time (cargo runs the tests of a binary in
/// parallel, and this machine has two cores). A failed test poisons nothing.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A port nobody listens on right now (bind port 0, read it, let it go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `N` distinct free ports: each is held until all are chosen (two `free_port()` calls in a row
/// can get the same port back; a test once gave two nodes one agent port).
#[allow(dead_code)]
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local addr").port())
}

// ---------------------------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under cargo's per-target temp dir, removed on drop unless a test is failing
/// (then it is kept, and named, for the post-mortem).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "e2e-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("(kept {} for inspection)", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A helper thread that runs until its stop flag is set: stopped and joined when dropped.
pub struct Worker<T = ()> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Run `f` on a new thread with the stop flag it must watch.
    pub fn spawn(f: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static) -> Worker<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Worker {
            stop,
            handle: Some(thread::spawn(move || f(flag))),
        }
    }

    /// Set the flag and wait for the thread: its result (None if it panicked, or was already
    /// stopped).
    pub fn stop(&mut self) -> Option<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok())
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
