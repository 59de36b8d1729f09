//! The control thread's HTTP side: one reqwest client (connection reuse, async name lookups on
//! tokio's blocking pool), every call bounded by its own timeout and answer size, each call a
//! task of its own so a slow peer holds up only its caller.

use super::{CallError, HttpAnswer, HttpCall, Job, Method, Reply, MAX_ANSWER};
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::sync::mpsc;

/// Run calls until every sender is gone; registry requests go to `registry` (proxies).
pub(super) async fn serve(
    mut rx: mpsc::Receiver<Job>,
    registry: Option<std::sync::Arc<super::registry::Service>>,
) {
    if let Some(svc) = registry.clone() {
        tokio::spawn(async move {
            loop {
                // Every third of the claim TTL, and at once when the store comes back, so
                // claims placed while it was down are written within a round trip.
                futures_lite::future::or(
                    tokio::time::sleep(svc.maintain_every()),
                    svc.store_back(),
                )
                .await;
                svc.maintain().await;
            }
        });
    }
    let client = match reqwest::Client::builder()
        .user_agent(concat!("shardcast/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            log::error!("control plane: no HTTP client: {e}");
            return;
        }
    };
    while let Some(job) = rx.recv().await {
        let (call, reply) = match job {
            Job::Http { call, reply } => (call, reply),
            Job::Registry { req, reply } => {
                let Some(svc) = registry.clone() else {
                    let _ = reply.send(Err(super::registry::RegistryFailure::Disabled));
                    continue;
                };
                tokio::spawn(async move {
                    let bound = svc.timeout();
                    let r = tokio::time::timeout(bound, svc.handle(req))
                        .await
                        .unwrap_or_else(|_| {
                            Err(super::registry::RegistryFailure::Unavailable(format!(
                                "no answer within {bound:?}"
                            )))
                        });
                    let _ = reply.send(r);
                });
                continue;
            }
            Job::Resolve {
                host,
                port,
                timeout,
                reply,
            } => {
                tokio::spawn(async move {
                    let ms = timeout.as_millis() as u64;
                    let found = tokio::time::timeout(
                        timeout,
                        tokio::net::lookup_host((host.as_str(), port)),
                    )
                    .await
                    .map_err(|_| CallError::Timeout(ms))
                    .and_then(|r| {
                        r.map(|a| a.collect::<Vec<_>>())
                            .map_err(|e| CallError::Connect(format!("cannot resolve {host}: {e}")))
                    });
                    let _ = reply.send(found);
                });
                continue;
            }
        };
        let client = client.clone();
        tokio::spawn(async move {
            let url = call.url.clone();
            let result = run(&client, call).await;
            match reply {
                Reply::Wait(tx) => {
                    let _ = tx.send(result);
                }
                Reply::Log(label) => match result {
                    Ok(a) if (200..300).contains(&a.status) => {}
                    Ok(a) => log::warn!("{label} to {url}: answered HTTP {}", a.status),
                    Err(e) => log::warn!("{label} to {url} not delivered: {e}"),
                },
            }
        });
    }
}

/// Check that `url` is an http:// URL with a host (before any I/O).
pub fn check_url(url: &str) -> Result<url::Url, CallError> {
    let bad = |why: &str| CallError::BadUrl(url.to_string(), why.to_string());
    let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if u.scheme() != "http" {
        return Err(bad("only http:// is supported"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(u)
}

async fn run(client: &reqwest::Client, call: HttpCall) -> Result<HttpAnswer, CallError> {
    let url = check_url(&call.url)?;
    let ms = call.timeout.as_millis() as u64;
    let fut = async {
        let req = match call.method {
            Method::Get => client.get(url),
            Method::Post => client
                .post(url)
                .header("Content-Type", "application/json")
                .body(call.json.unwrap_or_default()),
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| CallError::Connect(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let mut body = BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CallError::Connect(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(CallError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpAnswer {
            status,
            body: Bytes::from(body),
        })
    };
    tokio::time::timeout(call.timeout, fut)
        .await
        .map_err(|_| CallError::Timeout(ms))?
}

/// reqwest's error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::check_url;
    use std::io::{Read, Write};

    /// A one-shot HTTP server on a std thread answering `answer` to the first request.
    fn serve_once(
        answer: &'static [u8],
        delay: Duration,
    ) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).unwrap_or(0);
            std::thread::sleep(delay);
            let _ = s.write_all(answer);
            req.truncate(n);
            req
        });
        (port, h)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        glommio::LocalExecutor::default().run(f)
    }

    #[test]
    fn a_post_is_answered_and_its_body_sent() {
        let calls = Calls::start().unwrap();
        let (port, srv) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"code\":0}\n",
            Duration::ZERO,
        );
        let body = serde_json::json!({"action": "on_publish"});
        let url = format!("http://127.0.0.1:{port}/hook");
        let a = block_on(calls.http(HttpCall::post_json(&url, &body, Duration::from_secs(5))))
            .expect("answered");
        assert_eq!(a.status, 200);
        assert_eq!(&a.body[..], b"{\"code\":0}\n");
        let req = String::from_utf8(srv.join().unwrap()).unwrap();
        assert!(req.starts_with("POST /hook HTTP/1.1\r\n"), "{req}");
        assert!(req.ends_with("{\"action\":\"on_publish\"}"), "{req}");
    }

    #[test]
    fn a_slow_peer_times_out_and_a_dead_one_fails_fast() {
        let calls = Calls::start().unwrap();
        let (port, _srv) = serve_once(b"HTTP/1.1 200 OK\r\n\r\n", Duration::from_millis(1500));
        let url = format!("http://127.0.0.1:{port}/");
        let t0 = std::time::Instant::now();
        let r = block_on(calls.http(HttpCall::get(&url, Duration::from_millis(200))));
        assert_eq!(r, Err(CallError::Timeout(200)));
        assert!(t0.elapsed() < Duration::from_secs(1));
        // Port 9: nothing listens, the connect is refused at once.
        let r = block_on(calls.http(HttpCall::get("http://127.0.0.1:9/", Duration::from_secs(5))));
        assert!(matches!(r, Err(CallError::Connect(_))), "{r:?}");
    }

    #[test]
    fn bad_urls_are_refused_before_any_io() {
        assert!(check_url("https://x/").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url("http://hooks.local:8085/a?b=c").is_ok());
    }
}
