//! A scriptable HTTP hook receiver standing in for an SRS-style callback server.

use super::{wait_until, Worker};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
    /// HTTP 200 with this body, after waiting this long (a slow peer).
    Delay(Duration, String),
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
        HookReply::Delay(wait, text) => {
            let until = Instant::now() + wait;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                thread::sleep(Duration::from_millis(10));
            }
            (200, text)
        }
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
