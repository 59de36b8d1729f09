//! Runs a load: one pinned glommio executor per thread, each owning a round-robin share of the
//! connections (a task each). Threads share only immutable setup, the latency board and a
//! padded block of progress counters they refresh once a second; everything else is per thread
//! and merged after the join.

use crate::args::LoadArgs;
use crate::flv::FlvMedia;
use crate::latency::LatencyBoard;
use crate::player::{self, PlayerMeter, PlayerReport};
use crate::procstat::{self, ProcSample};
use crate::publisher::{self, PublisherReport};
use crate::pump::{self, Pump};
use crate::schedule::Schedule;
use crate::stats::Histogram;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use shardcast::rtmp::client::{ClientConfig, ClientRole};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a thread waits for its tasks to wind down after the stop.
const DRAIN: Duration = Duration::from_secs(2);
/// Bound on joining the executor threads once they reported done.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for the node watcher once the load is over (its requests are bounded).
const NODE_WATCH_JOIN: Duration = Duration::from_secs(30);
/// Publishers get this long to say goodbye before their sockets are cut.
const PUBLISHER_GOODBYE: Duration = Duration::from_millis(300);

#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Flv(#[from] crate::flv::FlvError),
    #[error("{0}")]
    Schedule(#[from] crate::schedule::ScheduleError),
    #[error("cannot resolve `{url}`: {reason}")]
    Resolve { url: String, reason: String },
    #[error("--cores {0:?} names no online CPU")]
    NoCpu(Vec<usize>),
    #[error("cannot start executors ({0}); io_uring needs locked memory: raise `ulimit -l`")]
    Executors(String),
    #[error("executor thread failed: {0}")]
    Thread(String),
    #[error("executor threads did not finish in time (stages: {0}); no summary")]
    Stuck(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Player,
    Publisher,
}

/// A stream URL resolved once, before the run.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub proto: Proto,
}

/// What a connection to a [`Target`] speaks.
#[derive(Debug, Clone)]
pub enum Proto {
    /// RTMP, with the client settings from the URL.
    Rtmp(ClientConfig),
    /// HTTP-FLV (players only): the request, built once and sent by every player of the URL.
    HttpFlv { request: String },
}

/// `host[:port]` to an address, `default_port` when none is given (IPv6 in brackets).
fn socket_addr(hostport: &str, default_port: u16) -> Result<SocketAddr, String> {
    let has_port = match hostport.rfind(']') {
        Some(close) => hostport[close..].contains(':'),
        None => hostport.contains(':'),
    };
    let hostport = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    hostport
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())
}

impl Target {
    /// An `rtmp://` URL (players and publishers) or an `http://` one (HTTP-FLV players).
    pub fn resolve(url: &str, role: ClientRole, buffer_ms: u32) -> Result<Target, RunError> {
        let err = |reason: &str| RunError::Resolve {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url.starts_with("http://") {
            if role != ClientRole::Play {
                return Err(err(
                    "only players speak HTTP-FLV; publishers need an rtmp:// URL",
                ));
            }
            let (hostport, path) =
                crate::httpflv::split_url(url).ok_or_else(|| err("not an http://host/path URL"))?;
            let addr = socket_addr(hostport, 80).map_err(|e| err(&e))?;
            return Ok(Target {
                addr,
                proto: Proto::HttpFlv {
                    request: crate::httpflv::request(hostport, path),
                },
            });
        }
        let mut cfg = ClientConfig::from_url(url, role).ok_or_else(|| err("not an RTMP URL"))?;
        cfg.buffer_ms = buffer_ms;
        let hostport = url
            .strip_prefix("rtmp://")
            .and_then(|r| r.split('/').next())
            .ok_or_else(|| err("no host"))?;
        let addr = socket_addr(hostport, 1935).map_err(|e| err(&e))?;
        Ok(Target {
            addr,
            proto: Proto::Rtmp(cfg),
        })
    }

    /// The RTMP client settings (`None` for an HTTP-FLV target).
    pub fn config(&self) -> Option<ClientConfig> {
        match &self.proto {
            Proto::Rtmp(cfg) => Some(cfg.clone()),
            Proto::HttpFlv { .. } => None,
        }
    }
}

/// One thread's progress figures, refreshed by its census task; padded against false sharing.
#[derive(Default)]
#[repr(align(128))]
pub struct ThreadCounters {
    pub playing: AtomicUsize,
    pub ok: AtomicUsize,
    pub bytes: AtomicU64,
    pub disconnects: AtomicUsize,
    pub errors: AtomicUsize,
    pub publishing: AtomicUsize,
    /// Where the thread is in its shutdown sequence ([`STAGES`]), reported if it hangs.
    pub stage: AtomicUsize,
    pub done: AtomicBool,
}

/// Names of [`ThreadCounters::stage`] values.
const STAGES: [&str; 6] = [
    "starting",
    "running",
    "stopping publishers",
    "draining tasks",
    "reporting",
    "done",
];

/// Immutable run setup shared by all threads (plus the latency board and counters).
pub struct Shared {
    pub args: LoadArgs,
    pub schedule: Schedule,
    pub epoch: Instant,
    pub media: Option<FlvMedia>,
    pub board: Option<LatencyBoard>,
    pub play_targets: Vec<Target>,
    pub publish_targets: Vec<Target>,
    /// Frame rate for the kept-up rule: --fps, else the file's (fanout), else per player.
    pub fps: Option<f64>,
    pub threads: usize,
    pub counters: Vec<ThreadCounters>,
    next_thread: AtomicUsize,
}

/// What one thread hands back when the run is over.
pub struct ThreadResult {
    pub players: Vec<PlayerReport>,
    pub publishers: Vec<PublisherReport>,
    pub latency_us: Histogram,
}

/// Per-thread context every task of the thread holds (`Rc`, never crosses threads).
pub struct ThreadCtx {
    pub shared: Arc<Shared>,
    stop_players: Cell<bool>,
    stop_publishers: Cell<bool>,
    sockets: RefCell<HashMap<u64, (RawFd, Role)>>,
    next_id: Cell<u64>,
    latency_us: RefCell<Histogram>,
    live_tasks: Cell<usize>,
    /// The one read buffer of every player of the thread: a player reads into it and handles
    /// the bytes before its next await, so nothing in it outlives the read (players keep only
    /// parser state), and the buffer stays hot in cache instead of one per connection.
    pub read_buf: RefCell<Box<[u8]>>,
    /// Playing connections, read once per tick by the thread's pump task.
    pub pump: Pump,
}

/// Publishers send what is due on a grid of this step ([`ThreadCtx::on_tick`]): frames go out
/// at most this late (their latency stamps are taken when they do), and a thread wakes up for
/// its publishers at most once per step rather than once per frame of each publisher.
pub const SEND_TICK: Duration = Duration::from_millis(1);

/// Bytes of the thread's shared player read buffer ([`ThreadCtx::read_buf`]).
pub const SHARED_READ_BUF: usize = 64 * 1024;

impl ThreadCtx {
    fn new(shared: Arc<Shared>) -> Self {
        ThreadCtx {
            shared,
            stop_players: Cell::new(false),
            stop_publishers: Cell::new(false),
            sockets: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            latency_us: RefCell::new(Histogram::default()),
            live_tasks: Cell::new(0),
            read_buf: RefCell::new(vec![0; SHARED_READ_BUF].into_boxed_slice()),
            pump: Pump::new().expect("epoll_create1"),
        }
    }

    pub fn register(&self, fd: RawFd, role: Role) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.sockets.borrow_mut().insert(id, (fd, role));
        id
    }

    pub fn unregister(&self, id: u64) {
        self.sockets.borrow_mut().remove(&id);
    }

    pub fn stopping(&self, role: Role) -> bool {
        match role {
            Role::Player => self.stop_players.get(),
            Role::Publisher => self.stop_publishers.get(),
        }
    }

    /// Sets the stop flag for `role`; with `cut`, also shuts its sockets down so every blocked
    /// read returns at once (cheaper than a timer per read).
    fn stop(&self, role: Role, cut: bool) {
        match role {
            Role::Player => self.stop_players.set(true),
            Role::Publisher => self.stop_publishers.set(true),
        }
        if cut {
            for &(fd, r) in self.sockets.borrow().values() {
                if r == role {
                    // SAFETY: the fd is registered only while its stream is open on this thread.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            }
        }
    }

    /// Time left until `offset` after the epoch (zero if past).
    pub fn until(&self, offset: Duration) -> Duration {
        (self.shared.epoch + offset).saturating_duration_since(Instant::now())
    }

    pub fn window(&self) -> (Instant, Instant) {
        let s = &self.shared.schedule;
        (
            self.shared.epoch + s.window_start,
            self.shared.epoch + s.window_end,
        )
    }

    /// `t` rounded up to the thread's next publisher tick ([`SEND_TICK`] after the epoch): the
    /// publishers of a thread wake together once per tick instead of once per frame each.
    pub fn on_tick(&self, t: Instant) -> Instant {
        round_up(self.shared.epoch, t, SEND_TICK)
    }

    /// Milliseconds since the epoch, for the handshake's time field.
    pub fn epoch_ms(&self) -> u32 {
        self.shared.epoch.elapsed().as_millis() as u32
    }

    pub fn since_epoch_ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.shared.epoch).as_nanos() as u64
    }

    pub fn record_latency_ns(&self, ns: u64) {
        self.latency_us.borrow_mut().record(ns / 1000);
    }

    /// Spawns a connection task, counted so the thread can wait for all of them to end.
    fn spawn(self: &Rc<Self>, f: impl Future<Output = ()> + 'static) {
        struct Live(Rc<ThreadCtx>);
        impl Drop for Live {
            fn drop(&mut self) {
                self.0.live_tasks.set(self.0.live_tasks.get() - 1);
            }
        }
        self.live_tasks.set(self.live_tasks.get() + 1);
        let live = Live(self.clone());
        glommio::spawn_local(async move {
            f.await;
            drop(live);
        })
        .detach();
    }
}

/// `t` rounded up to the next multiple of `step` after `epoch` (`epoch` itself for earlier).
fn round_up(epoch: Instant, t: Instant, step: Duration) -> Instant {
    let step = step.as_nanos().max(1);
    let since = t.saturating_duration_since(epoch).as_nanos();
    epoch + Duration::from_nanos((since.div_ceil(step) * step) as u64)
}

/// Refreshes this thread's progress counters from its connections.
fn census(
    c: &ThreadCounters,
    players: &[Rc<RefCell<PlayerMeter>>],
    pubs: &[Rc<RefCell<PublisherReport>>],
) {
    let now = Instant::now();
    let (mut playing, mut ok, mut bytes, mut disc, mut err) = (0, 0, 0, 0, 0);
    for m in players {
        let m = m.borrow();
        playing += usize::from(m.phase == player::Phase::Playing);
        ok += usize::from(m.live_ok(now));
        bytes += m.bytes();
        match m.outcome {
            player::Outcome::Disconnected => disc += 1,
            player::Outcome::Error(_) => err += 1,
            player::Outcome::Ok => {}
        }
    }
    let mut publishing = 0;
    for p in pubs {
        let p = p.borrow();
        publishing += usize::from(p.published && !p.disconnected && p.error.is_none());
        disc += usize::from(p.disconnected);
        err += usize::from(p.error.is_some());
    }
    c.playing.store(playing, Ordering::Relaxed);
    c.ok.store(ok, Ordering::Relaxed);
    c.bytes.store(bytes, Ordering::Relaxed);
    c.disconnects.store(disc, Ordering::Relaxed);
    c.errors.store(err, Ordering::Relaxed);
    c.publishing.store(publishing, Ordering::Relaxed);
}

async fn thread_main(shared: Arc<Shared>) -> ThreadResult {
    let index = shared.next_thread.fetch_add(1, Ordering::Relaxed);
    let ctx = Rc::new(ThreadCtx::new(shared.clone()));
    let k = shared.threads;
    let sched = &shared.schedule;

    let pubs: Vec<_> = (index..shared.args.total_publishers())
        .step_by(k)
        .map(|i| {
            let r = Rc::new(RefCell::new(PublisherReport {
                stream: i,
                ..Default::default()
            }));
            ctx.spawn(publisher::run(ctx.clone(), i, r.clone()));
            r
        })
        .collect();
    if index < shared.args.total_players() {
        ctx.spawn(pump::run(ctx.clone()));
    }
    let streams = shared.play_targets.len().max(1);
    let players: Vec<_> = (index..shared.args.total_players())
        .step_by(k)
        .map(|j| {
            let m = Rc::new(RefCell::new(PlayerMeter::new(j % streams)));
            ctx.spawn(player::run(ctx.clone(), j, m.clone()));
            m
        })
        .collect();

    let counters = &shared.counters[index];
    let stage = |i: usize| counters.stage.store(i, Ordering::Relaxed);
    stage(1);
    loop {
        census(counters, &players, &pubs);
        let left = ctx.until(sched.stop_players);
        if left.is_zero() {
            break;
        }
        glommio::timer::sleep(left.min(Duration::from_secs(1))).await;
    }
    ctx.stop(Role::Player, true);
    let players_stopped = Instant::now();
    census(counters, &players, &pubs);

    glommio::timer::sleep(ctx.until(sched.stop_publishers)).await;
    stage(2);
    ctx.stop(Role::Publisher, false);
    glommio::timer::sleep(PUBLISHER_GOODBYE).await;
    ctx.stop(Role::Publisher, true);

    stage(3);
    let deadline = Instant::now() + DRAIN;
    while ctx.live_tasks.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    census(counters, &players, &pubs);
    stage(4);
    let window = ctx.window();
    let result = ThreadResult {
        players: players
            .iter()
            .map(|m| {
                m.borrow()
                    .report(window, players_stopped, shared.fps, shared.args.batch_ms)
            })
            .collect(),
        publishers: pubs.iter().map(|p| p.borrow().clone()).collect(),
        latency_us: ctx.latency_us.take(),
    };
    stage(5);
    counters.done.store(true, Ordering::Release);
    result
}

/// Executor placement: MaxSpread over the allowed CPUs, or fenced/unbound when oversubscribed.
fn placement(args: &LoadArgs) -> Result<(PoolPlacement, usize), RunError> {
    let online = CpuSet::online().map_err(|e| RunError::Executors(e.to_string()))?;
    match &args.cores {
        Some(cores) => {
            let set = online.filter(|l| cores.contains(&l.cpu));
            if set.is_empty() {
                return Err(RunError::NoCpu(cores.clone()));
            }
            let k = args.threads.unwrap_or(set.len());
            if k <= set.len() {
                Ok((PoolPlacement::MaxSpread(k, Some(set)), k))
            } else {
                Ok((PoolPlacement::Fenced(k, set), k))
            }
        }
        None => {
            let n = online.len().max(1);
            let k = args.threads.unwrap_or(n);
            if k <= n {
                Ok((PoolPlacement::MaxSpread(k, None), k))
            } else {
                Ok((PoolPlacement::Unbound(k), k))
            }
        }
    }
}

/// Server-side samples taken by the main thread.
#[derive(Debug, Clone, Default)]
pub struct ServerSamples {
    pub idle: Option<ProcSample>,
    pub window_start: Option<ProcSample>,
    pub window_end: Option<ProcSample>,
    /// This process over the same window: is the generator itself near saturation?
    pub own_start: Option<ProcSample>,
    pub own_end: Option<ProcSample>,
    /// The whole machine over the same window.
    pub host_start: Option<procstat::HostSample>,
    pub host_end: Option<procstat::HostSample>,
}

/// Everything the report needs.
pub struct RunOutput {
    pub threads: usize,
    pub schedule: Schedule,
    pub fps: Option<f64>,
    pub media: Option<(u32, Option<f64>, bool)>,
    pub players: Vec<PlayerReport>,
    pub publishers: Vec<PublisherReport>,
    pub latency_us: Histogram,
    pub server: ServerSamples,
    pub latency_measured: bool,
    /// `--node-api`: what the nodes said at the window's edges (and ticks).
    pub nodes: Option<crate::nodes::NodeWatch>,
}

/// Raises the open-files soft limit to the hard limit (one descriptor per connection).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub fn run(args: LoadArgs) -> Result<RunOutput, RunError> {
    let schedule = Schedule::new(&args)?;
    let media = match (&args.file, args.mode.has_publishers()) {
        (Some(f), true) => Some(FlvMedia::load(f)?),
        _ => None,
    };
    let publish_targets = (0..args.total_publishers())
        .map(|i| Target::resolve(&args.publish_url(i), ClientRole::Publish, args.buffer_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let play_targets = args
        .play_urls()
        .iter()
        .map(|u| Target::resolve(u, ClientRole::Play, args.buffer_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let fanout = args.mode == crate::args::Mode::Fanout;
    let fps = args
        .fps
        .or_else(|| media.as_ref().filter(|_| fanout).and_then(|m| m.video_fps));
    let (placement, threads) = placement(&args)?;
    raise_nofile();
    let mut server = ServerSamples {
        idle: procstat::sample(&args.server_pids),
        ..Default::default()
    };
    let quiet = args.quiet;
    let pids = args.server_pids.clone();
    let media_info = media
        .as_ref()
        .map(|m| (m.loop_period_ms, m.video_fps, m.truncated));
    let shared = Arc::new(Shared {
        board: fanout.then(|| LatencyBoard::new(args.total_publishers())),
        schedule: schedule.clone(),
        epoch: Instant::now(),
        media,
        play_targets,
        publish_targets,
        fps,
        threads,
        counters: (0..threads).map(|_| ThreadCounters::default()).collect(),
        next_thread: AtomicUsize::new(0),
        args,
    });
    let s = shared.clone();
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("bench")
        .on_all_shards(move || {
            let s = s.clone();
            async move { thread_main(s).await }
        })
        .map_err(|e| RunError::Executors(e.to_string()))?;

    // The nodes are read from their own thread, so a slow node never holds up the progress line.
    let node_watch = (!shared.args.node_apis.is_empty()).then(|| {
        let plan = crate::nodes::WatchPlan {
            apis: shared.args.node_apis.clone(),
            window_start: schedule.window_start,
            window_end: schedule.window_end,
            every: shared.args.node_every.map(Duration::from_secs_f64),
            quiet,
        };
        let epoch = shared.epoch;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bench-nodes".into())
            .spawn(move || {
                let _ = tx.send(crate::nodes::watch(&plan, epoch));
            })
            .map(|_| rx)
    });

    if !watch(&shared, quiet, &pids, &mut server) {
        // Joining a hung executor would hang the run; report where each thread is instead.
        let stages: Vec<String> = shared
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let st = c.stage.load(Ordering::Relaxed).min(STAGES.len() - 1);
                format!("thread {i}: {}", STAGES[st])
            })
            .collect();
        return Err(RunError::Stuck(stages.join(", ")));
    }

    let mut out = RunOutput {
        threads,
        schedule,
        fps,
        media: media_info,
        players: Vec::new(),
        publishers: Vec::new(),
        latency_us: Histogram::default(),
        server,
        latency_measured: fanout,
        nodes: None,
    };
    // The threads have handed over their results; an executor that then hangs in its teardown
    // must not hang the run, so the join itself is bounded too.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handles.join_all());
    });
    let joined = rx
        .recv_timeout(JOIN_TIMEOUT)
        .map_err(|_| RunError::Stuck("executor teardown".into()))?;
    for r in joined {
        let r = r.map_err(|e| RunError::Thread(e.to_string()))?;
        out.players.extend(r.players);
        out.publishers.extend(r.publishers);
        out.latency_us.merge(&r.latency_us);
    }
    out.publishers.sort_by_key(|p| p.stream);
    out.nodes = match node_watch {
        Some(Ok(rx)) => match rx.recv_timeout(NODE_WATCH_JOIN) {
            Ok(w) => Some(w),
            Err(_) => {
                eprintln!("shardcast-bench: the nodes did not answer in time; no per-node figures");
                None
            }
        },
        Some(Err(e)) => {
            eprintln!("shardcast-bench: cannot start the node watcher: {e}");
            None
        }
        None => None,
    };
    Ok(out)
}

/// Main-thread loop while the executors run: the once-a-second progress line, and the server
/// samples at the window edges. False if the threads did not all finish in time.
fn watch(shared: &Shared, quiet: bool, pids: &[i32], server: &mut ServerSamples) -> bool {
    let s = &shared.schedule;
    let epoch = shared.epoch;
    let hard_stop = epoch + s.end() + DRAIN + Duration::from_secs(5);
    let total_players = shared.args.total_players();
    let total_pubs = shared.args.total_publishers();
    let mut next_tick = epoch + Duration::from_secs(1);
    let mut last_bytes = 0u64;
    let mut last_at = epoch;
    loop {
        let now = Instant::now();
        let me = [std::process::id() as i32];
        if server.own_start.is_none() && now >= epoch + s.window_start {
            server.window_start = procstat::sample(pids);
            server.own_start = procstat::sample(&me);
            server.host_start = procstat::host();
        }
        if server.own_end.is_none() && now >= epoch + s.window_end {
            server.window_end = procstat::sample(pids);
            server.own_end = procstat::sample(&me);
            server.host_end = procstat::host();
        }
        if shared
            .counters
            .iter()
            .all(|c| c.done.load(Ordering::Acquire))
        {
            return true;
        }
        if now >= hard_stop {
            return false;
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let sum =
                |f: &dyn Fn(&ThreadCounters) -> usize| shared.counters.iter().map(f).sum::<usize>();
            let bytes: u64 = shared
                .counters
                .iter()
                .map(|c| c.bytes.load(Ordering::Relaxed))
                .sum();
            let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
            let mbit = bytes.saturating_sub(last_bytes) as f64 * 8.0 / secs / 1e6;
            last_bytes = bytes;
            last_at = now;
            if !quiet {
                let t = now.duration_since(epoch);
                let phase = if t < s.window_start {
                    "warmup"
                } else if t < s.window_end {
                    "window"
                } else {
                    "stopping"
                };
                eprintln!(
                    "[{:6.1}s {phase:8}] players {}/{total_players} playing, {} ok | {:8.1} Mbit/s | publishers {}/{total_pubs} | disconnects {} errors {}",
                    t.as_secs_f64(),
                    sum(&|c| c.playing.load(Ordering::Relaxed)),
                    sum(&|c| c.ok.load(Ordering::Relaxed)),
                    mbit,
                    sum(&|c| c.publishing.load(Ordering::Relaxed)),
                    sum(&|c| c.disconnects.load(Ordering::Relaxed)),
                    sum(&|c| c.errors.load(Ordering::Relaxed)),
                );
            }
        }
        let mut wake = next_tick;
        for edge in [s.window_start, s.window_end] {
            if epoch + edge > now {
                wake = wake.min(epoch + edge);
            }
        }
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_to_the_grid() {
        let epoch = Instant::now();
        let ms = Duration::from_millis(1);
        let tick = |t| round_up(epoch, t, ms);
        assert_eq!(tick(epoch), epoch);
        assert_eq!(tick(epoch - ms), epoch);
        assert_eq!(tick(epoch + Duration::from_micros(1)), epoch + ms);
        assert_eq!(tick(epoch + 5 * ms), epoch + 5 * ms);
        assert_eq!(
            tick(epoch + 5 * ms + Duration::from_nanos(1)),
            epoch + 6 * ms
        );
    }

    #[test]
    fn resolves_urls_with_and_without_port() {
        let t = Target::resolve("rtmp://127.0.0.1/live/a", ClientRole::Play, 500).unwrap();
        assert_eq!(t.addr, "127.0.0.1:1935".parse().unwrap());
        assert_eq!(t.config().unwrap().buffer_ms, 500);
        assert_eq!(t.config().unwrap().stream, "a");
        let t = Target::resolve("rtmp://127.0.0.1:19350/live/b", ClientRole::Play, 0).unwrap();
        assert_eq!(t.addr.port(), 19350);
        let t = Target::resolve("rtmp://[::1]/live/c", ClientRole::Play, 0).unwrap();
        assert_eq!(t.addr, "[::1]:1935".parse().unwrap());
        assert!(Target::resolve("ftp://x/a/b", ClientRole::Play, 0).is_err());
    }

    #[test]
    fn resolves_http_flv_urls() {
        let t = Target::resolve("http://127.0.0.1/live/a.flv", ClientRole::Play, 0).unwrap();
        assert_eq!(t.addr, "127.0.0.1:80".parse().unwrap());
        assert!(t.config().is_none());
        let t = Target::resolve("http://[::1]:8080/live/b.flv?k=v", ClientRole::Play, 0).unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        match &t.proto {
            Proto::HttpFlv { request } => {
                assert!(request.starts_with("GET /live/b.flv?k=v HTTP/1.1\r\nHost: [::1]:8080\r\n"))
            }
            Proto::Rtmp(_) => panic!("not HTTP-FLV"),
        }
        assert!(Target::resolve("http://127.0.0.1/a.flv", ClientRole::Publish, 0).is_err());
        assert!(Target::resolve("http://127.0.0.1", ClientRole::Play, 0).is_err());
    }
}
