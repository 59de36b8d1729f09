//! The control plane: outbound calls that are not media (HTTP hooks, coworker queries, the
//! forward backend) run on one thread of their own with a small tokio runtime and a well-kept
//! HTTP client. A shard hands a call over a bounded queue and awaits the answer on a oneshot
//! (glommio wakes a task from a foreign thread), so no name lookup or slow peer ever blocks a
//! shard, and a full queue fails that call at once instead of piling up.

pub mod http;
pub mod redis_store;
pub mod registry;

use bytes::Bytes;
use registry::{RegistryAnswer, RegistryFailure, RegistryRequest, RegistrySetup, RegistryStats};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Calls queued for the control thread at most; past it a call fails with [`CallError::Busy`].
pub const QUEUE: usize = 4096;

/// Most bytes of an answer kept (hooks and APIs answer a few hundred).
pub const MAX_ANSWER: usize = 256 * 1024;

/// Why an outbound call failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CallError {
    /// The control thread has too many calls queued.
    #[error("control plane busy ({QUEUE} calls queued)")]
    Busy,
    /// The control thread is gone (the server is stopping).
    #[error("control plane stopped")]
    Gone,
    /// The URL is not a usable http:// URL.
    #[error("bad URL `{0}`: {1}")]
    BadUrl(String, String),
    /// Connecting or sending failed (name lookup, refused, reset).
    #[error("{0}")]
    Connect(String),
    /// No complete answer within the call's timeout.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The answer was larger than [`MAX_ANSWER`].
    #[error("answer over {MAX_ANSWER} bytes")]
    TooLarge,
}

/// An HTTP method the control plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
}

/// One HTTP call.
#[derive(Debug, Clone)]
pub struct HttpCall {
    /// GET or POST.
    pub method: Method,
    /// `http://host[:port]/path?query`.
    pub url: String,
    /// A JSON body (POST).
    pub json: Option<Vec<u8>>,
    /// The whole call (lookup, connect, answer) must finish within this.
    pub timeout: Duration,
}

impl HttpCall {
    /// POST `body` as JSON.
    pub fn post_json(url: &str, body: &serde_json::Value, timeout: Duration) -> HttpCall {
        HttpCall {
            method: Method::Post,
            url: url.to_string(),
            json: Some(serde_json::to_vec(body).unwrap_or_default()),
            timeout,
        }
    }

    /// GET `url`.
    pub fn get(url: &str, timeout: Duration) -> HttpCall {
        HttpCall {
            method: Method::Get,
            url: url.to_string(),
            json: None,
            timeout,
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The body (at most [`MAX_ANSWER`] bytes).
    pub body: Bytes,
}

/// Where a call's outcome goes.
enum Reply {
    /// To the task awaiting it.
    Wait(oneshot::Sender<Result<HttpAnswer, CallError>>),
    /// Nobody waits (a notice): a failure is logged with this label.
    Log(String),
}

/// Work for the control thread.
enum Job {
    /// An HTTP call.
    Http { call: HttpCall, reply: Reply },
    /// A name lookup (`host`, `port`), answered with its addresses.
    Resolve {
        host: String,
        port: u16,
        timeout: Duration,
        reply: oneshot::Sender<Result<Vec<std::net::SocketAddr>, CallError>>,
    },
    /// A registry request (proxies).
    Registry {
        req: RegistryRequest,
        reply: oneshot::Sender<Result<RegistryAnswer, RegistryFailure>>,
    },
}

/// A handle to the control thread: cheap to clone, usable from any shard or thread.
#[derive(Clone)]
pub struct Calls {
    tx: mpsc::Sender<Job>,
    registry: Option<(Arc<RegistryStats>, Duration)>,
}

impl Calls {
    /// Start the control thread. It ends when every handle is dropped.
    pub fn start() -> std::io::Result<Calls> {
        Calls::start_with(None)
    }

    /// Start the control thread, with the proxy registry when `registry` is set.
    pub fn start_with(registry: Option<RegistrySetup>) -> std::io::Result<Calls> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let service = match registry {
            None => None,
            Some(setup) => {
                // The lazy Redis connection manager needs the runtime it will run on.
                let _guard = rt.enter();
                Some(Arc::new(
                    registry::Service::new(setup).map_err(std::io::Error::other)?,
                ))
            }
        };
        let stats = service
            .as_ref()
            .map(|s| (s.stats.clone(), s.timeout() + Duration::from_millis(100)));
        std::thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || rt.block_on(http::serve(rx, service)))?;
        Ok(Calls {
            tx,
            registry: stats,
        })
    }

    /// The registry's figures, on a proxy.
    pub fn registry_stats(&self) -> Option<&Arc<RegistryStats>> {
        self.registry.as_ref().map(|(s, _)| s)
    }

    /// Ask the proxy registry (on a glommio executor); bounded by its timeout, time in the
    /// queue included.
    pub async fn registry(&self, req: RegistryRequest) -> Result<RegistryAnswer, RegistryFailure> {
        let Some((_, bound)) = self.registry else {
            return Err(RegistryFailure::Disabled);
        };
        let (reply, answer) = oneshot::channel();
        self.queue(Job::Registry { req, reply })
            .map_err(|e| RegistryFailure::Unavailable(e.to_string()))?;
        let gone = || RegistryFailure::Unavailable(CallError::Gone.to_string());
        let timed_out = || RegistryFailure::Unavailable(format!("no answer within {bound:?}"));
        // Awaited on a shard: the control thread bounds each request itself, and this bounds
        // the wait, a backlog in the queue included.
        let timer = async {
            glommio::timer::sleep(bound).await;
            Err(timed_out())
        };
        futures_lite::future::or(
            async { answer.await.unwrap_or_else(|_| Err(gone())) },
            timer,
        )
        .await
    }

    /// Make an HTTP call; the future may be awaited on any executor.
    pub async fn http(&self, call: HttpCall) -> Result<HttpAnswer, CallError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Job::Http {
            call,
            reply: Reply::Wait(reply),
        })?;
        answer.await.unwrap_or(Err(CallError::Gone))
    }

    /// The addresses of `host` (a name or an IP literal), looked up on the control thread.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<std::net::SocketAddr>, CallError> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            return Ok(vec![std::net::SocketAddr::new(ip, port)]);
        }
        let (reply, answer) = oneshot::channel();
        self.queue(Job::Resolve {
            host: host.to_string(),
            port,
            timeout,
            reply,
        })?;
        answer.await.unwrap_or(Err(CallError::Gone))
    }

    /// Queue a call whose answer nobody waits for (a notice); a failure, or a status other
    /// than 2xx, is logged on the control thread under `label`.
    pub fn notify(&self, call: HttpCall, label: String) -> Result<(), CallError> {
        self.queue(Job::Http {
            call,
            reply: Reply::Log(label),
        })
    }

    /// Queue a registry request nobody waits for (a release).
    pub fn registry_notice(&self, req: RegistryRequest) {
        if self.registry.is_some() {
            let (reply, _) = oneshot::channel();
            let _ = self.queue(Job::Registry { req, reply });
        }
    }

    fn queue(&self, job: Job) -> Result<(), CallError> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CallError::Busy,
            mpsc::error::TrySendError::Closed(_) => CallError::Gone,
        })
    }
}
