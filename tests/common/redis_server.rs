//! A real Redis for the proxy-cluster tests: Debian's `redis-server` on a free loopback port,
//! persistence off, killed on drop; `redis-cli` to look inside and to stop and restart it.

use super::{free_port, wait_until, Proc, TempDir};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    pub dir: TempDir,
    proc: Option<Proc>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = TempDir::new("redis");
        let mut r = RedisServer {
            port: free_port(),
            dir,
            proc: None,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start it (again) on the same port, empty.
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("redis log");
        let proc = Proc::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--dir", &self.dir.path().display().to_string()])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(Stdio::null()),
        );
        self.proc = Some(proc);
        assert!(
            wait_until(Duration::from_secs(10), || self.cli(&["PING"]) == "PONG"),
            "redis-server on {} did not answer PING",
            self.port
        );
    }

    /// Kill it (SIGKILL): proxies see a dead Redis.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Run `redis-cli` against it; its stdout, trimmed ("" when it failed).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}
