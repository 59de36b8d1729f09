//! Shared harness of the end-to-end tests: the real `shardcast` binary, real ffmpeg / ffprobe /
//! rtmpdump, and hand-made clients built on the crate's sans-I/O RTMP library, all on 127.0.0.1.
//!
//! Rules kept here so each test file does not have to: every child process is killed when its
//! guard drops, every wait has a deadline, every loop is bounded, and a failing test prints the
//! tail of the server log (the [`Server`] guard does it while the panic unwinds).
#![allow(dead_code)]

use bytes::BytesMut;
use shardcast::media::{Frame, FrameKind};
use shardcast::rtmp::amf0::{encode_all, Amf0Value, DecodeLimits};
use shardcast::rtmp::chunk::{encode_message, ChunkDecoder, DecoderLimits};
use shardcast::rtmp::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use shardcast::rtmp::handshake::ClientHandshake;
use shardcast::rtmp::message::{self, Message};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
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

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e} (is it installed?)"));
        Proc {
            name: name.to_string(),
            child,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait at most `timeout` for the process to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.try_status().is_some());
        self.try_status()
    }

    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.pid(), sig);
            }
        }
    }

    /// SIGKILL and reap (idempotent).
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    /// `None` when it had to be killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn describe(&self) -> String {
        format!(
            "status={:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.elapsed,
            tail(&self.stdout, 40),
            tail(&self.stderr, 40)
        )
    }
}

/// Run a command to its end, killing it at `timeout`. Stdin is closed; stdout and stderr are
/// collected.
/// The `shardcast` binary with `args` and `-c config`, to completion (20 s at most).
pub fn shardcast_cli(args: &[&str], config: &Path) -> Output {
    run(
        Command::new(env!("CARGO_BIN_EXE_shardcast"))
            .args(args)
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "1"),
        Duration::from_secs(20),
    )
}

/// `shardcast -t -c FILE` on `text`.
pub fn check_config(text: &str) -> Output {
    let dir = TempDir::new("config");
    let path = dir.join("shardcast.toml");
    fs::write(&path, text).expect("write config");
    shardcast_cli(&["-t"], &path)
}

pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let name = format!("{:?}", cmd.get_program());
    let started = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(&name, cmd);
    let out = p.child.stdout.take().expect("stdout pipe");
    let err = p.child.stderr.take().expect("stderr pipe");
    let reader = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out_t = reader(Box::new(out));
    let err_t = reader(Box::new(err));
    let status = p.wait_timeout(timeout);
    p.kill(); // at the deadline; closes the pipes so the readers end
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The server

/// Settings for one server; everything not named keeps the binary's default.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    pub shards: usize,
    /// Extra `key = value` lines for `[server]`.
    pub server: String,
    /// Extra `key = value` lines for `[rtmp]`.
    pub rtmp: String,
    /// Serve HTTP (API, metrics, HTTP-FLV) on a free port: `Server::http_port`.
    pub http: bool,
    /// Extra `key = value` lines for `[http]` (with `http: true`).
    pub http_extra: String,
    /// Whole extra sections appended at the end (`[forward]`, `[security]`, `[hooks]`, ...).
    pub extra: String,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            shards: 2,
            server: "handshake_timeout_secs = 2\n".into(),
            rtmp: String::new(),
            http: false,
            http_extra: String::new(),
            extra: String::new(),
        }
    }
}

/// A running `shardcast` with its stderr log in a file. Killed on drop; when dropped during a
/// panic it prints the tail of its log first.
pub struct Server {
    pub port: u16,
    /// The HTTP port when started with `ServerOpts::http`.
    pub http_port: Option<u16>,
    /// The config file it runs with (rewrite it and send SIGHUP to reload).
    pub config_path: PathBuf,
    pub shards: usize,
    pub dir: TempDir,
    log_path: PathBuf,
    proc: Option<Proc>,
    /// Whether the test itself signalled the server (to tell an outside kill apart).
    signalled: std::cell::Cell<bool>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(ServerOpts::default())
    }

    pub fn start_with(opts: ServerOpts) -> Server {
        // The free port may be taken between probing and binding: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let http_port = opts.http.then(free_port);
            let dir = TempDir::new("server");
            let conf = dir.join("shardcast.toml");
            let http = match http_port {
                Some(h) => format!(
                    "[http]\nenabled = true\nlisten = \"127.0.0.1:{h}\"\n{}\n",
                    opts.http_extra
                ),
                None => String::new(),
            };
            fs::write(
                &conf,
                format!(
                    "[server]\nlisten = \"127.0.0.1:{port}\"\nshards = {}\n{}\n[rtmp]\n{}\n{http}{}\n",
                    opts.shards, opts.server, opts.rtmp, opts.extra
                ),
            )
            .expect("write config");
            let log_path = dir.join("server.log");
            let log = fs::File::create(&log_path).expect("create log");
            let proc = Proc::spawn(
                "shardcast",
                Command::new(env!("CARGO_BIN_EXE_shardcast"))
                    .arg("-c")
                    .arg(&conf)
                    .env("RUST_LOG", "info")
                    .env_remove("RUST_BACKTRACE")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log),
            );
            let mut server = Server {
                port,
                http_port,
                config_path: conf.clone(),
                shards: opts.shards,
                dir,
                log_path,
                proc: Some(proc),
                signalled: std::cell::Cell::new(false),
            };
            let shards = opts.shards;
            let want_http = if http_port.is_some() { shards } else { 0 };
            let ready = wait_until(Duration::from_secs(15), || {
                let rtmp = server.count_lines(|l| {
                    l.contains(" listening on ") && !l.contains(" http listening on ")
                });
                let http = server.count_lines(|l| l.contains(" http listening on "));
                (rtmp >= shards && http >= want_http) || server.proc_mut().try_status().is_some()
            });
            if ready && server.proc_mut().try_status().is_none() {
                return server;
            }
            last = server.log();
            let status = server.proc_mut().try_status();
            server.proc_mut().kill();
            if !last.contains("cannot listen") {
                last = format!("exit status {status:?}\n{last}");
                break;
            }
        }
        panic!("shardcast did not start; its log:\n{}", tail(&last, 40));
    }

    fn proc_mut(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("server process")
    }

    pub fn pid(&self) -> i32 {
        self.proc.as_ref().expect("server process").pid()
    }

    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    /// The stream key the server logs for `live/NAME`.
    pub fn key(name: &str) -> String {
        format!("{VHOST}/live/{name}")
    }

    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log().lines().map(str::to_string).collect()
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log(), n)
    }

    pub fn count_lines(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.log().lines().filter(|l| pred(l)).count()
    }

    /// The first log line containing every one of `parts`, waiting up to `timeout` for it.
    pub fn wait_for_log(&self, parts: &[&str], timeout: Duration) -> Option<String> {
        self.wait_for_line(timeout, |l| parts.iter().all(|p| l.contains(p)))
    }

    /// The first log line `pred` accepts, waiting up to `timeout` for it.
    pub fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.log().lines().find(|l| pred(l)).map(str::to_string);
            found.is_some()
        });
        found
    }

    /// Like [`Server::wait_for_log`], but panics (with the log tail) when the line never comes.
    pub fn expect_log(&self, parts: &[&str], timeout: Duration) -> String {
        self.wait_for_log(parts, timeout).unwrap_or_else(|| {
            panic!(
                "no log line with {parts:?} within {timeout:?}; log tail:\n{}",
                self.log_tail(40)
            )
        })
    }

    /// The owner shard the server logged for `name` (from any publish or play line).
    pub fn owner_of(&self, name: &str) -> Option<usize> {
        let needle = format!("stream={} owner=", Server::key(name));
        self.log().lines().find_map(|l| {
            let i = l.find(&needle)?;
            l[i + needle.len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    }

    pub fn signal(&self, sig: i32) {
        if let Some(p) = &self.proc {
            self.signalled.set(true);
            p.signal(sig);
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc_mut().wait_timeout(timeout)
    }

    pub fn is_running(&mut self) -> bool {
        self.proc_mut().try_status().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        if thread::panicking() {
            eprintln!(
                "---- shardcast log tail (127.0.0.1:{}) ----\n{}\n----",
                self.port,
                self.log_tail(60)
            );
            if !self.signalled.get() && self.log().contains(": stopping") {
                eprintln!(
                    "NOTE: this server was stopped by a signal the test did not send: another \
                     process on this machine killed it (e.g. `pkill shardcast`)."
                );
            }
        }
    }
}

/// Field `key=value` of a log line (value up to the next space).
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let i = line.find(&pat)? + pat.len();
    line[i..].split_whitespace().next()
}

// ---------------------------------------------------------------------------------------------
// Test media and ffmpeg helpers

/// A 10 s FLV (h264 320x240 25 fps, GOP 50, AAC 44.1 kHz) made once and kept in cargo's
/// per-target temp dir.
pub fn test_media() -> PathBuf {
    static MEDIA: OnceLock<PathBuf> = OnceLock::new();
    MEDIA
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-media");
            fs::create_dir_all(&dir).expect("media dir");
            let path = dir.join("testsrc2-320x240-25fps-g50-aac.flv");
            if fs::metadata(&path).is_ok_and(|m| m.len() > 100_000) {
                return path;
            }
            let tmp = dir.join(format!("partial-{}.flv", std::process::id()));
            let out = run(
                Command::new("ffmpeg")
                    .args([
                        "-nostdin",
                        "-v",
                        "error",
                        "-y",
                        "-f",
                        "lavfi",
                        "-i",
                        "testsrc2=size=320x240:rate=25",
                        "-f",
                        "lavfi",
                        "-i",
                        "sine=frequency=440:sample_rate=44100",
                        "-t",
                        "10",
                        "-c:v",
                        "libx264",
                        "-preset",
                        "veryfast",
                        "-g",
                        "50",
                        "-pix_fmt",
                        "yuv420p",
                        "-c:a",
                        "aac",
                        "-b:a",
                        "64k",
                    ])
                    .arg(&tmp),
                Duration::from_secs(120),
            );
            assert!(
                out.success(),
                "making test media failed: {}",
                out.describe()
            );
            fs::rename(&tmp, &path).expect("rename media");
            path
        })
        .clone()
}

/// `ffmpeg -re -stream_loop -1 -i MEDIA -c copy -f flv URL`, stderr into `log`.
pub fn spawn_ffmpeg_publisher(url: &str, log: &Path) -> Proc {
    let media = test_media();
    let err = fs::File::create(log).expect("publisher log");
    Proc::spawn(
        "ffmpeg publisher",
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&media)
            .args(["-c", "copy", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err),
    )
}

/// Start an ffmpeg publisher of `live/NAME` and wait for the server to log its publish.
pub fn publish(server: &Server, name: &str) -> Proc {
    let log = server
        .dir
        .join(&format!("publisher-{name}-{}.log", free_port()));
    let mut p = spawn_ffmpeg_publisher(&server.url(name), &log);
    let key = Server::key(name);
    let want = format!("publish stream={key} ");
    let started = wait_until(Duration::from_secs(15), || {
        server.count_lines(|l| l.contains(&want)) > 0 || p.try_status().is_some()
    });
    assert!(
        started && p.try_status().is_none(),
        "publisher of {name} did not start (status {:?}); its stderr:\n{}",
        p.try_status(),
        fs::read_to_string(&log).unwrap_or_default()
    );
    p
}

/// One line of `ffprobe -show_streams`: codec type, codec name, width, height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedStream {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// The streams ffprobe sees in `input` (a URL or a file).
pub fn ffprobe_streams(input: &str, timeout: Duration) -> Result<Vec<ProbedStream>, String> {
    let out = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "compact=nokey=0",
            input,
        ]),
        timeout,
    );
    if !out.success() {
        return Err(out.describe());
    }
    let streams = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("stream|"))
        .map(|l| {
            let get = |k: &str| {
                l.split('|')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .map(str::to_string)
            };
            ProbedStream {
                codec_type: get("codec_type").unwrap_or_default(),
                codec_name: get("codec_name").unwrap_or_default(),
                width: get("width").and_then(|v| v.parse().ok()),
                height: get("height").and_then(|v| v.parse().ok()),
            }
        })
        .collect();
    Ok(streams)
}

/// Asserts the streams are exactly h264 320x240 and aac, in any order.
pub fn assert_test_streams(streams: &[ProbedStream], context: &str) {
    let video: Vec<_> = streams.iter().filter(|s| s.codec_type == "video").collect();
    let audio: Vec<_> = streams.iter().filter(|s| s.codec_type == "audio").collect();
    assert_eq!(
        streams.len(),
        2,
        "{context}: want 2 streams, got {streams:?}"
    );
    assert_eq!(
        video.len(),
        1,
        "{context}: want one video stream: {streams:?}"
    );
    assert_eq!(
        audio.len(),
        1,
        "{context}: want one audio stream: {streams:?}"
    );
    assert_eq!(video[0].codec_name, "h264", "{context}: {streams:?}");
    assert_eq!(
        (video[0].width, video[0].height),
        (Some(320), Some(240)),
        "{context}: {streams:?}"
    );
    assert_eq!(audio[0].codec_name, "aac", "{context}: {streams:?}");
}

// ---------------------------------------------------------------------------------------------
// Library clients (ClientSession over a blocking std TcpStream)

/// A client of the crate's sans-I/O session on a blocking socket.
pub struct LibClient {
    pub sock: TcpStream,
    pub session: ClientSession,
    buf: Vec<u8>,
}

impl LibClient {
    pub fn connect(port: u16, name: &str, role: ClientRole) -> io::Result<LibClient> {
        let url = format!("rtmp://127.0.0.1:{port}/live/{name}");
        let cfg = ClientConfig::from_url(&url, role).expect("valid url");
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_nodelay(true)?;
        let seed = u64::from(sock.local_addr()?.port()) ^ 0x5eed_5eed;
        let mut c = LibClient {
            sock,
            session: ClientSession::new(cfg, seed, 0),
            buf: vec![0; 64 * 1024],
        };
        c.flush()?;
        Ok(c)
    }

    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        while let Some(b) = self.session.poll_transmit() {
            self.sock.write_all(&b)?;
        }
        Ok(())
    }

    /// Send what is queued, wait up to `wait` for bytes, feed them, and return the events.
    /// `Err` when the connection ended or the session failed.
    pub fn pump(&mut self, wait: Duration) -> Result<Vec<ClientEvent>, String> {
        self.flush().map_err(|e| format!("write: {e}"))?;
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let n = match self.sock.read(&mut self.buf) {
            Ok(0) => return Err("closed by server".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        if n > 0 {
            let data = self.buf[..n].to_vec();
            self.session
                .handle_input(&data)
                .map_err(|e| format!("session: {e}"))?;
        }
        let mut events = Vec::new();
        while let Some(ev) = self.session.poll_event() {
            events.push(ev);
        }
        self.flush().map_err(|e| format!("write: {e}"))?;
        Ok(events)
    }

    /// Pump until an event `want` accepts arrives; returns every event seen up to it.
    pub fn pump_until(
        &mut self,
        timeout: Duration,
        want: impl Fn(&ClientEvent) -> bool,
    ) -> Result<Vec<ClientEvent>, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            for ev in self.pump(Duration::from_millis(50))? {
                let done = want(&ev);
                seen.push(ev);
                if done {
                    return Ok(seen);
                }
            }
        }
        Err(format!("timed out after {timeout:?}; events: {seen:?}"))
    }

    pub fn send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.session.send_frame(frame, false);
        self.flush()
    }
}

/// What a library player saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Connected,
    PlayStarted,
    Status(String),
    Media {
        kind: FrameKind,
        ts: u32,
        keyframe: bool,
        sequence_header: bool,
        metadata: bool,
    },
    Eof,
    /// The connection ended (why).
    Ended(String),
}

#[derive(Debug, Default)]
pub struct PlayerState {
    pub seen: Vec<Seen>,
    pub local_port: u16,
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

/// A library player on its own thread, recording everything it receives. Stops when dropped,
/// at its lifetime limit, or when the connection ends.
pub struct LibPlayer {
    pub name: String,
    pub video: Arc<AtomicU64>,
    pub audio: Arc<AtomicU64>,
    state: Arc<Mutex<PlayerState>>,
    worker: Worker,
}

impl LibPlayer {
    /// Start playing `live/NAME`; gives up by itself after `lifetime`.
    pub fn start(port: u16, name: &str, lifetime: Duration) -> LibPlayer {
        let video = Arc::new(AtomicU64::new(0));
        let audio = Arc::new(AtomicU64::new(0));
        let state = Arc::new(Mutex::new(PlayerState::default()));
        let (v, a, st) = (video.clone(), audio.clone(), state.clone());
        let stream = name.to_string();
        let worker = Worker::spawn(move |s| {
            let record = |x: Seen| st.lock().unwrap_or_else(|e| e.into_inner()).seen.push(x);
            let mut c = match LibClient::connect(port, &stream, ClientRole::Play) {
                Ok(c) => c,
                Err(e) => return record(Seen::Ended(format!("connect: {e}"))),
            };
            st.lock().unwrap_or_else(|e| e.into_inner()).local_port = c.local_port();
            let deadline = Instant::now() + lifetime;
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= deadline {
                    return record(Seen::Ended("lifetime over".into()));
                }
                let events = match c.pump(Duration::from_millis(50)) {
                    Ok(evs) => evs,
                    Err(e) => return record(Seen::Ended(e)),
                };
                for ev in events {
                    let x = match ev {
                        ClientEvent::Connected => Seen::Connected,
                        ClientEvent::PlayStarted => Seen::PlayStarted,
                        ClientEvent::PublishStarted => continue,
                        ClientEvent::Status { code, .. } => Seen::Status(code),
                        ClientEvent::StreamEof => Seen::Eof,
                        ClientEvent::Media { frame, metadata } => {
                            match frame.kind {
                                FrameKind::Video => v.fetch_add(1, Ordering::Relaxed),
                                FrameKind::Audio => a.fetch_add(1, Ordering::Relaxed),
                                FrameKind::Data => 0,
                            };
                            Seen::Media {
                                kind: frame.kind,
                                ts: frame.timestamp,
                                keyframe: frame.keyframe,
                                sequence_header: frame.sequence_header,
                                metadata,
                            }
                        }
                    };
                    record(x);
                }
            }
            let _ = c.sock.shutdown(Shutdown::Both);
            record(Seen::Ended("stopped".into()));
        });
        LibPlayer {
            name: name.to_string(),
            video,
            audio,
            state,
            worker,
        }
    }

    pub fn video_frames(&self) -> u64 {
        self.video.load(Ordering::Relaxed)
    }

    pub fn audio_frames(&self) -> u64 {
        self.audio.load(Ordering::Relaxed)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .clone()
    }

    pub fn local_port(&self) -> u16 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .local_port
    }

    pub fn has_seen(&self, pred: impl Fn(&Seen) -> bool) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .iter()
            .any(pred)
    }

    /// Why the player thread ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .iter()
            .find_map(|s| match s {
                Seen::Ended(why) => Some(why.clone()),
                _ => None,
            })
    }

    /// Wait until the video frame count exceeds `count`.
    pub fn wait_video_above(&self, count: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.video_frames() > count)
    }

    pub fn stop(&mut self) {
        self.worker.stop();
    }
}

/// Synthetic FLV tag bodies for library publishers: AVC and AAC shaped enough for the server's
/// codec sniffing (sequence headers, key and inter frames).
pub mod synth {
    use bytes::Bytes;

    pub fn avc_sequence_header() -> Bytes {
        Bytes::from_static(&[
            0x17, 0x00, 0, 0, 0, // key frame, AVC, sequence header, cts 0
            0x01, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x42, 0xC0, 0x1E, 0x01, 0x00,
            0x04, 0x68, 0xCE, 0x3C, 0x80,
        ])
    }

    /// A key (IDR) or inter NALU frame carrying `n` as a marker byte.
    pub fn avc_frame(key: bool, n: u8) -> Bytes {
        let (b0, nal) = if key { (0x17, 0x65) } else { (0x27, 0x41) };
        Bytes::from(vec![b0, 0x01, 0, 0, 0, 0, 0, 0, 3, nal, 0x9A, n])
    }

    pub fn aac_sequence_header() -> Bytes {
        Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10])
    }

    pub fn aac_frame(n: u8) -> Bytes {
        Bytes::from(vec![0xAF, 0x01, 0x21, 0x10, n, 0x00])
    }
}

// ---------------------------------------------------------------------------------------------
// Raw connections for bad input

/// `n` connections to `port` that have finished the handshake (so the server counts them).
pub fn handshaken_conns(port: u16, n: usize) -> Vec<RawConn> {
    (0..n)
        .map(|i| {
            let mut c = RawConn::open(port);
            c.handshake()
                .unwrap_or_else(|e| panic!("connection {i} within the limit: {e}"));
            c
        })
        .collect()
}

/// A plain TCP connection for hand-made (often hostile) RTMP bytes.
pub struct RawConn {
    pub sock: TcpStream,
    pub port: u16,
    decoder: ChunkDecoder,
    /// Chunk size used by [`RawConn::send`].
    pub chunk_size: u32,
}

impl RawConn {
    pub fn open(server_port: u16) -> RawConn {
        let sock = TcpStream::connect(("127.0.0.1", server_port)).expect("connect to server");
        sock.set_nodelay(true).expect("nodelay");
        let port = sock.local_addr().expect("local addr").port();
        RawConn {
            sock,
            port,
            decoder: ChunkDecoder::new(DecoderLimits {
                max_message_len: 64 * 1024 * 1024,
                ..DecoderLimits::default()
            }),
            chunk_size: 128,
        }
    }

    /// The `peer=` value the server logs for this connection.
    pub fn peer(&self) -> String {
        format!("peer=127.0.0.1:{}", self.port)
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// A plain client handshake (C0C1, read S0S1S2, C2).
    pub fn handshake(&mut self) -> Result<(), String> {
        let mut hs = ClientHandshake::new(u64::from(self.port), 0, false);
        let c0c1 = hs.start();
        self.write(&c0c1).map_err(|e| format!("write C0C1: {e}"))?;
        self.sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        for _ in 0..100 {
            let n = self
                .sock
                .read(&mut buf)
                .map_err(|e| format!("read S0S1S2: {e}"))?;
            if n == 0 {
                return Err("closed during handshake".into());
            }
            let p = hs.feed(&buf[..n]).map_err(|e| format!("handshake: {e}"))?;
            if !p.reply.is_empty() {
                self.write(&p.reply).map_err(|e| format!("write C2: {e}"))?;
            }
            if p.done {
                self.decoder.push(&buf[p.consumed..n]);
                return Ok(());
            }
        }
        Err("handshake did not finish".into())
    }

    /// One whole message, chunked at `self.chunk_size`.
    pub fn send(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        let mut out = BytesMut::new();
        encode_message(
            &mut out,
            self.chunk_size,
            csid,
            ts,
            type_id,
            stream_id,
            payload,
        );
        // The server may already have hung up on earlier bad bytes: that is for the caller's
        // close check to see, not an error here.
        let _ = self.write(&out);
    }

    pub fn command(&mut self, stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>) {
        let mut vals = vec![Amf0Value::string(name), Amf0Value::Number(txn)];
        vals.extend(args);
        let csid = if stream_id == 0 { 3 } else { 5 };
        self.send(csid, 0, 20, stream_id, &encode_all(&vals));
    }

    /// `connect` to app `live`, waiting for its `_result`.
    pub fn rtmp_connect(&mut self) -> Result<(), String> {
        let obj = Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("tcUrl", Amf0Value::string("rtmp://127.0.0.1/live")),
        ]);
        self.command(0, "connect", 1.0, vec![obj]);
        self.wait_command(Duration::from_secs(5), |c| {
            c.name == "_result" && c.transaction_id == 1.0
        })
        .map(|_| ())
    }

    /// `createStream`, returning the stream id from its `_result`.
    pub fn create_stream(&mut self) -> Result<u32, String> {
        self.command(0, "createStream", 2.0, vec![Amf0Value::Null]);
        let r = self.wait_command(Duration::from_secs(5), |c| {
            c.name == "_result" && c.transaction_id == 2.0
        })?;
        r.args
            .first()
            .and_then(|v| v.as_f64())
            .map(|v| v as u32)
            .ok_or_else(|| format!("createStream result without an id: {r:?}"))
    }

    /// Read and decode until a command `want` accepts arrives.
    pub fn wait_command(
        &mut self,
        timeout: Duration,
        want: impl Fn(&message::Command) -> bool,
    ) -> Result<message::Command, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        let mut seen = Vec::new();
        loop {
            while let Some(raw) = self.decoder.next_message().map_err(|e| e.to_string())? {
                if let Ok(Message::Command(c)) = message::decode(&raw, &DecodeLimits::default()) {
                    if want(&c) {
                        return Ok(c);
                    }
                    seen.push(c.name);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no such command in time; saw {seen:?}"));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Err(format!("closed by server; saw {seen:?}")),
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) => return Err(format!("read: {e}; saw {seen:?}")),
            }
        }
    }

    /// Wait until the server closes the connection: `Ok(how long it took)` when a read returns
    /// end-of-file or a reset within `timeout`; anything still open then is an `Err`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut buf = [0u8; 16 * 1024];
        let mut drained = 0usize;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "still open after {timeout:?} ({drained} bytes read)"
                ));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(started.elapsed()),
                Ok(n) => drained += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Ok(started.elapsed()), // reset: closed too
            }
        }
    }
}

// =============================================================================================
// BEGIN: HTTP and forward helpers (used by tests/e2e_http.rs and tests/e2e_forward.rs)
//
// A tiny HTTP/1.1 client on std's TcpStream (whole responses, and an open chunked stream for
// HTTP-FLV), ffmpeg decoding, and crashing / restarting a server on the same port.

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names as sent; look them up with [`HttpResponse::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// From connecting to the end of the body.
    pub elapsed: Duration,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; `Err` shows the body.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {:?}", tail(&self.text(), 5)))
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response head: status, headers, and the head's length in bytes.
pub type HttpHead = (u16, Vec<(String, String)>, usize);

/// A response head at the start of `buf`: status, headers and the head's length.
/// `Ok(None)` while the head is incomplete.
pub fn parse_http_head(buf: &[u8]) -> Result<Option<HttpHead>, String> {
    let Some(end) = find_bytes(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("response head larger than 64 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| format!("response head is not UTF-8: {:?}", &buf[..end.min(200)]))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("bad header line {l:?} in {head:?}"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Some((status, headers, end + 4)))
}

/// Decodes `Transfer-Encoding: chunked` framing as bytes arrive.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    buf: Vec<u8>,
    /// The last (zero-size) chunk was seen.
    pub done: bool,
}

impl ChunkedDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole chunk's data; `Ok(None)` when more bytes are needed or after the last
    /// chunk. `Err` on broken framing.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.done {
            return Ok(None);
        }
        let Some(eol) = find_bytes(&self.buf, b"\r\n") else {
            if self.buf.len() > 64 {
                return Err(format!(
                    "no chunk-size line in {:?}",
                    &self.buf[..self.buf.len().min(64)]
                ));
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(&self.buf[..eol])
            .map_err(|_| format!("chunk-size line is not text: {:?}", &self.buf[..eol]))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk-size line {line:?}"))?;
        let need = eol + 2 + size + 2;
        if self.buf.len() < need {
            return Ok(None);
        }
        if &self.buf[need - 2..need] != b"\r\n" {
            return Err(format!("chunk of {size} bytes not followed by CRLF"));
        }
        let data = self.buf[eol + 2..eol + 2 + size].to_vec();
        self.buf.drain(..need);
        if size == 0 {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(data))
    }
}

/// The body of a response whose head said `headers`, if `rest` holds all of it.
fn complete_body(headers: &[(String, String)], rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let chunked = find_header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut d = ChunkedDecoder::default();
        d.push(rest);
        let mut body = Vec::new();
        while let Some(c) = d.next_chunk()? {
            body.extend_from_slice(&c);
        }
        return Ok(d.done.then_some(body));
    }
    match find_header(headers, "content-length") {
        Some(v) => {
            let n: usize = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            Ok((rest.len() >= n).then(|| rest[..n].to_vec()))
        }
        None => Ok(None), // to the end of the connection
    }
}

/// Send `raw` bytes as a request on a new connection and read one whole response (to its
/// Content-Length, its last chunk, or the end of the connection), all within `timeout`.
/// A write the server cut short (it may answer and close before reading everything) is not an
/// error by itself: the answer is still read.
pub fn http_send(port: u16, raw: &[u8], timeout: Duration) -> Result<HttpResponse, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut sock = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    let _ = sock.set_nodelay(true);
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let write_error = sock.write_all(raw).err();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut head: Option<HttpHead> = None;
    loop {
        if head.is_none() {
            head = parse_http_head(&buf)?;
        }
        if let Some((status, headers, len)) = &head {
            if let Some(body) = complete_body(headers, &buf[*len..])? {
                return Ok(HttpResponse {
                    status: *status,
                    headers: headers.clone(),
                    body,
                    elapsed: started.elapsed(),
                });
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no whole response within {timeout:?}; got {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf[..buf.len().min(300)])
            ));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let ended = match sock.read(&mut chunk) {
            Ok(0) => Some("end of connection".to_string()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                None
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => Some(format!("read: {e}")),
        };
        if let Some(why) = ended {
            return match head {
                // No length and not chunked: the body runs to the end of the connection.
                Some((status, headers, len))
                    if find_header(&headers, "content-length").is_none()
                        && find_header(&headers, "transfer-encoding").is_none() =>
                {
                    Ok(HttpResponse {
                        status,
                        headers,
                        body: buf[len..].to_vec(),
                        elapsed: started.elapsed(),
                    })
                }
                _ => Err(format!(
                    "{why} before a whole response (write error: {write_error:?}); got {} bytes: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf[..buf.len().min(300)])
                )),
            };
        }
    }
}

/// `METHOD path HTTP/1.1` with `Connection: close`, read to the end of the response.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shardcast-e2e\r\nAccept: */*\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    http_send(port, req.as_bytes(), timeout)
}

/// `GET path`, panicking when no whole response comes within 10 s.
pub fn http_get(port: u16, path: &str) -> HttpResponse {
    http_request(port, "GET", path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// An API call: status and JSON body (panics when the body is not JSON).
pub fn api_call(port: u16, method: &str, path: &str) -> (u16, serde_json::Value) {
    let r = http_request(port, method, path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let v = r
        .json()
        .unwrap_or_else(|e| panic!("{method} {path} -> {}: {e}", r.status));
    (r.status, v)
}

/// An open streaming response (HTTP-FLV): the head is read, the body comes chunk by chunk.
pub struct HttpStream {
    pub sock: TcpStream,
    /// 0 until the head is read.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    head_buf: Vec<u8>,
    chunks: ChunkedDecoder,
}

impl HttpStream {
    /// Connect and send `GET path`, without waiting for an answer.
    pub fn request(port: u16, path: &str) -> Result<HttpStream, String> {
        let mut sock =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
                .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        let _ = sock.set_nodelay(true);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shardcast-e2e\r\nAccept: */*\r\n\r\n"
        );
        sock.write_all(req.as_bytes())
            .map_err(|e| format!("write request: {e}"))?;
        Ok(HttpStream {
            sock,
            status: 0,
            headers: Vec::new(),
            head_buf: Vec::new(),
            chunks: ChunkedDecoder::default(),
        })
    }

    /// Read the response head within `timeout`.
    pub fn read_head(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((status, headers, len)) = parse_http_head(&self.head_buf)? {
                self.status = status;
                self.headers = headers;
                self.chunks.push(&self.head_buf[len..]);
                self.head_buf.clear();
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no response head within {timeout:?}; got {:?}",
                    String::from_utf8_lossy(&self.head_buf)
                ));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "closed before a response head; got {:?}",
                        String::from_utf8_lossy(&self.head_buf)
                    ))
                }
                Ok(n) => self.head_buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("read head: {e}")),
            }
        }
    }

    /// `GET path` and read the response head within `timeout`.
    pub fn open(port: u16, path: &str, timeout: Duration) -> Result<HttpStream, String> {
        let mut s = HttpStream::request(port, path)?;
        s.read_head(timeout)?;
        Ok(s)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The next chunk of the body within `timeout`. `Err` on timeout, on the end of the body
    /// or the connection, and on broken chunk framing.
    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        if self.status == 0 {
            self.read_head(timeout)?;
        }
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(c) = self.chunks.next_chunk()? {
                return Ok(c);
            }
            if self.chunks.done {
                return Err("the body ended (last chunk)".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no chunk within {timeout:?}"));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Err("connection closed mid-body".into()),
                Ok(n) => self.chunks.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("read body: {e}")),
            }
        }
    }
}

/// `ffmpeg -v error -i URL -t SECS -f null -`, killed after `SECS + 25` s.
pub fn ffmpeg_decode(url: &str, secs: u32) -> Output {
    run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i", url, "-t"])
            .arg(secs.to_string())
            .args(["-f", "null", "-"]),
        Duration::from_secs(u64::from(secs) + 25),
    )
}

impl Server {
    /// SIGKILL the server, as a crash would (nothing is logged, nothing closed cleanly).
    pub fn crash(&mut self) {
        self.signalled.set(true);
        if let Some(p) = self.proc.as_mut() {
            p.kill();
        }
    }

    /// Start the server again with the same config (so the same ports) after a crash or an
    /// exit; the log goes on in the same file. Returns once every shard listens again.
    pub fn restart(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill();
        }
        let is_rtmp = |l: &str| l.contains(" listening on ") && !l.contains(" http listening on ");
        let is_http = |l: &str| l.contains(" http listening on ");
        let (rtmp0, http0) = (self.count_lines(is_rtmp), self.count_lines(is_http));
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("open the server log to append");
        self.proc = Some(Proc::spawn(
            "shardcast",
            Command::new(env!("CARGO_BIN_EXE_shardcast"))
                .arg("-c")
                .arg(&self.config_path)
                .env("RUST_LOG", "info")
                .env_remove("RUST_BACKTRACE")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        ));
        self.signalled.set(false);
        let shards = self.shards;
        let want_http = if self.http_port.is_some() { shards } else { 0 };
        let ready = wait_until(Duration::from_secs(15), || {
            (self.count_lines(is_rtmp) >= rtmp0 + shards
                && self.count_lines(is_http) >= http0 + want_http)
                || self.proc_mut().try_status().is_some()
        });
        assert!(
            ready && self.is_running(),
            "shardcast did not restart on 127.0.0.1:{}; log tail:\n{}",
            self.port,
            self.log_tail(30)
        );
    }
}

// END: HTTP and forward helpers
// =============================================================================================

// =============================================================================================
// BEGIN: security and robustness helpers (used by tests/e2e_security.rs, tests/e2e_bad_input.rs
// and tests/e2e_slow.rs)
//
// Process memory, open-files limit, publish attempts that may be refused, a scriptable HTTP hook
// receiver, and a library publisher of synthetic media at a chosen bitrate.

/// Resident set size of process `pid` in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raise this process's open-files soft limit to at least `want` (up to the hard limit);
/// returns the soft limit now in force.
pub fn raise_nofile_soft(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                lim = new;
            }
        }
    }
    lim.rlim_cur
}

/// The shard the server logged for the client at local port `port` (any of its lines).
pub fn shard_of_peer(server: &Server, port: u16, timeout: Duration) -> Option<usize> {
    let peer = format!("peer=127.0.0.1:{port} ");
    let line = server.wait_for_line(timeout, |l| l.contains(&peer))?;
    log_field(&line, "shard")?.parse().ok()
}

/// How an ffmpeg publish attempt ended.
pub enum PublishAttempt {
    /// The server logged `publish stream=KEY`; the publisher is still running.
    Accepted(Proc),
    /// ffmpeg gave up (or never got its publish accepted within the deadline).
    Refused {
        stderr: String,
        status: Option<ExitStatus>,
        elapsed: Duration,
    },
}

impl PublishAttempt {
    pub fn is_accepted(&self) -> bool {
        matches!(self, PublishAttempt::Accepted(_))
    }

    pub fn describe(&self) -> String {
        match self {
            PublishAttempt::Accepted(p) => format!("accepted (ffmpeg pid {})", p.pid()),
            PublishAttempt::Refused {
                stderr,
                status,
                elapsed,
            } => format!(
                "refused: ffmpeg status {status:?} after {elapsed:?}; stderr:\n{}",
                tail(stderr, 20)
            ),
        }
    }

    /// The running publisher; panics (with `context`) when the publish was refused.
    pub fn expect_accepted(self, context: &str) -> Proc {
        match self {
            PublishAttempt::Accepted(p) => p,
            other => panic!("{context}: publish {}", other.describe()),
        }
    }

    /// ffmpeg's stderr; panics (with `context`) when the publish was accepted.
    pub fn expect_refused(self, context: &str) -> String {
        match self {
            PublishAttempt::Refused { stderr, .. } => stderr,
            other => panic!(
                "{context}: publish should be refused, but was {}",
                other.describe()
            ),
        }
    }
}

/// Publish the test media to `url` with ffmpeg; `key` is the stream key the server logs
/// (`vhost/app/stream`). Accepted once the server logs one more `publish stream=KEY` line than
/// before; refused when ffmpeg exits first (or nothing happens within `timeout`).
pub fn try_ffmpeg_publish(
    server: &Server,
    url: &str,
    key: &str,
    timeout: Duration,
) -> PublishAttempt {
    let want = format!("publish stream={key} ");
    let before = server.count_lines(|l| l.contains(&want));
    let log = server.dir.join(&format!("try-publish-{}.log", free_port()));
    let started = Instant::now();
    let mut p = spawn_ffmpeg_publisher(url, &log);
    let mut accepted = false;
    wait_until(timeout, || {
        accepted = server.count_lines(|l| l.contains(&want)) > before;
        accepted || p.try_status().is_some()
    });
    if accepted && p.try_status().is_none() {
        return PublishAttempt::Accepted(p);
    }
    let elapsed = started.elapsed();
    p.kill();
    PublishAttempt::Refused {
        stderr: fs::read_to_string(&log).unwrap_or_default(),
        status: p.try_status(),
        elapsed,
    }
}

/// One request a [`HookServer`] received.
#[derive(Debug, Clone)]
pub struct HookRequest {
    pub path: String,
    pub body: serde_json::Value,
    /// When its body was complete.
    pub at: Instant,
}

impl HookRequest {
    /// String field `key` of the JSON body ("" when missing).
    pub fn field(&self, key: &str) -> &str {
        self.body.get(key).and_then(|v| v.as_str()).unwrap_or("")
    }
}

/// What a [`HookServer`] answers a request with.
#[derive(Debug, Clone)]
pub enum HookReply {
    /// HTTP 200 with this body.
    Ok(String),
    /// This status with an empty body.
    Status(u16),
    /// No answer: hold the connection open until the hook server is dropped (at most 30 s).
    Hold,
}

type HookScript = dyn Fn(&str, &serde_json::Value) -> HookReply + Send + Sync;

/// A tiny HTTP server on 127.0.0.1 standing in for an SRS-style callback receiver: every
/// request's JSON body is recorded, the answer comes from a script. Stops when dropped.
pub struct HookServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<HookRequest>>>,
    _worker: Worker,
}

impl HookServer {
    pub fn start(
        script: impl Fn(&str, &serde_json::Value) -> HookReply + Send + Sync + 'static,
    ) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("hook addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<HookScript> = Arc::new(script);
        let reqs = requests.clone();
        let worker = Worker::spawn(move |st| {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (reqs, st, script) = (reqs.clone(), st.clone(), script.clone());
                        thread::spawn(move || serve_hook(sock, &reqs, &st, &*script));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        HookServer {
            port,
            requests,
            _worker: worker,
        }
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn requests(&self) -> Vec<HookRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first request `pred` accepts, waiting up to `timeout` for it.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&HookRequest) -> bool,
    ) -> Option<HookRequest> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.requests().into_iter().find(|r| pred(r));
            found.is_some()
        });
        found
    }
}

fn serve_hook(
    mut sock: TcpStream,
    requests: &Mutex<Vec<HookRequest>>,
    stop: &AtomicBool,
    script: &HookScript,
) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (path, body) = loop {
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string();
            let body = serde_json::from_slice(&buf[end + 4..end + 4 + len])
                .unwrap_or(serde_json::Value::Null);
            break (path, body);
        }
    };
    let reply = script(&path, &body);
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(HookRequest {
            path,
            body,
            at: Instant::now(),
        });
    let (status, text) = match reply {
        HookReply::Ok(text) => (200, text),
        HookReply::Status(s) => (s, String::new()),
        HookReply::Hold => {
            let until = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
            return;
        }
    };
    let answer = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = sock.write_all(answer.as_bytes());
    let _ = sock.shutdown(Shutdown::Write);
}

/// A library publisher of synthetic H.264-shaped video (and AAC-shaped audio) on its own thread,
/// paced in real time: `fps` video frames a second of `frame_bytes` each, a keyframe every
/// `gop` frames. Stops when dropped, at its lifetime, or when the connection ends.
pub struct SynthPublisher {
    /// Video frames sent so far.
    pub sent: Arc<AtomicU64>,
    result: Arc<Mutex<Option<String>>>,
    worker: Worker,
}

impl SynthPublisher {
    pub fn start(
        port: u16,
        name: &str,
        frame_bytes: usize,
        fps: u32,
        gop: u32,
        lifetime: Duration,
    ) -> SynthPublisher {
        let sent = Arc::new(AtomicU64::new(0));
        let result = Arc::new(Mutex::new(None));
        let (sn, res) = (sent.clone(), result.clone());
        let name = name.to_string();
        let worker = Worker::spawn(move |st| {
            let why = synth_publish(
                port,
                &name,
                frame_bytes,
                fps.max(1),
                gop.max(1),
                lifetime,
                &st,
                &sn,
            );
            *res.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        });
        SynthPublisher {
            sent,
            result,
            worker,
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Why the publisher ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stop(&mut self) {
        self.worker.stop();
    }
}

#[allow(clippy::too_many_arguments)]
fn synth_publish(
    port: u16,
    name: &str,
    frame_bytes: usize,
    fps: u32,
    gop: u32,
    lifetime: Duration,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> String {
    let mut c = match LibClient::connect(port, name, ClientRole::Publish) {
        Ok(c) => c,
        Err(e) => return format!("connect: {e}"),
    };
    if let Err(e) = c.pump_until(Duration::from_secs(10), |e| {
        *e == ClientEvent::PublishStarted
    }) {
        return format!("publish not started: {e}");
    }
    let headers = [
        Frame::video(0, synth::avc_sequence_header()),
        Frame::audio(0, synth::aac_sequence_header()),
    ];
    for f in &headers {
        if let Err(e) = c.send_frame(f) {
            return format!("write: {e}");
        }
    }
    let started = Instant::now();
    let deadline = started + lifetime;
    let frame_ms = 1000 / fps;
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= deadline {
            return "lifetime over".into();
        }
        let ts = n * frame_ms;
        let key = n.is_multiple_of(gop);
        let mut payload = Vec::with_capacity(frame_bytes.max(16));
        payload.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
        let nal_len = frame_bytes.saturating_sub(9).max(3);
        payload.extend_from_slice(&(nal_len as u32).to_be_bytes());
        payload.push(if key { 0x65 } else { 0x41 });
        payload.extend((1..nal_len).map(|i| (i as u8).wrapping_mul(7) ^ n as u8));
        let video = Frame::video(ts, bytes::Bytes::from(payload));
        let audio = Frame::audio(ts, synth::aac_frame(n as u8));
        for f in [&video, &audio] {
            if let Err(e) = c.send_frame(f) {
                return format!("write: {e}");
            }
        }
        sent.fetch_add(1, Ordering::Relaxed);
        n += 1;
        // Real-time pacing; the pump also answers the server (acks, pings).
        let due = started + Duration::from_millis(u64::from(n * frame_ms));
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            if let Err(e) = c.pump((due - now).min(Duration::from_millis(20))) {
                return e;
            }
        }
    }
    let _ = c.sock.shutdown(Shutdown::Both);
    "stopped".into()
}

// END: security and robustness helpers
// =============================================================================================
