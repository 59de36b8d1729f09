//! Child processes: a guard that kills its process on drop, running a command to its end with a
//! deadline, and the `shardcast` binary as a command-line tool.

use super::{wait_until, TempDir};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

/// Run a command to its end, killing it at `timeout`. Stdin is closed; stdout and stderr are
/// collected.
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
