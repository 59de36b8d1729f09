//! The server under test: a running `shardcast` with its config and log in a temp dir, killed on
//! drop (printing its log tail when a test fails), crashed and restarted on the same ports, and
//! what its log and /proc say about it.

use super::{free_port, tail, wait_until, Proc, TempDir, VHOST};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

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
    /// Listen on these (RTMP, HTTP) ports instead of free ones picked at start (for servers
    /// that must know each other's addresses before they start, like coworkers).
    pub ports: Option<(u16, u16)>,
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
            ports: None,
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
            let (port, http_port) = match opts.ports {
                Some((p, h)) => (p, opts.http.then_some(h)),
                None => (free_port(), opts.http.then(free_port)),
            };
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
        self.wait_for_line_since(0, timeout, pred)
    }

    /// Where the log ends now: lines after it are [`Server::wait_for_line_since`]'s.
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    /// The lines logged after `mark` (see [`Server::wait_for_line_since`]).
    pub fn log_lines_since(&self, mark: usize) -> Vec<String> {
        let log = self.log();
        let new = log.get(mark..).unwrap_or(&log);
        new.lines().map(str::to_string).collect()
    }

    /// Like [`Server::wait_for_line`], among the lines logged after `mark` only (a client's
    /// ephemeral port may have been an earlier client's, whose lines name the same peer).
    pub fn wait_for_line_since(
        &self,
        mark: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.log_lines_since(mark).into_iter().find(|l| pred(l));
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

/// The shard the server logged for the client at local port `port` (any of its lines).
pub fn shard_of_peer(server: &Server, port: u16, timeout: Duration) -> Option<usize> {
    let peer = format!("peer=127.0.0.1:{port} ");
    let line = server.wait_for_line(timeout, |l| l.contains(&peer))?;
    log_field(&line, "shard")?.parse().ok()
}

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
