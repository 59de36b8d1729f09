//! Who may do what: allow/deny rules by address, publish secrets, and HTTP callbacks (hooks).
//! The session raises requests; the connection asks here before it accepts them.

pub mod hooks;
pub mod rules;

use crate::config::Config;
use crate::control_plane::{Calls, HttpCall};
use crate::rtmp::session::query_param;
use rules::Action;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

/// `url` with the values of `secret` and `token` query parameters masked, for logs and the API.
pub fn redact(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == "secret" || k == "token" => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

/// A refusal: a short reason for the client, the full cause for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Reason sent to the client (e.g. in the `onStatus` description).
    pub client: String,
    /// Full cause for the server log.
    pub log: String,
}

impl Refusal {
    fn plain(reason: &str) -> Refusal {
        Refusal {
            client: reason.to_string(),
            log: reason.to_string(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.log)
    }
}

/// The client a decision is about.
pub struct ClientInfo<'a> {
    /// Connection id (as in the API and logs).
    pub id: u64,
    /// Client address.
    pub ip: IpAddr,
    /// Vhost the client selected.
    pub vhost: &'a str,
    /// Application name.
    pub app: &'a str,
    /// `tcUrl` from `connect`.
    pub tc_url: &'a str,
}

impl ClientInfo<'_> {
    fn body(&self, action: &str, stream: Option<(&str, &str)>) -> Value {
        let mut v = json!({
            "action": action,
            "client_id": self.id.to_string(),
            "ip": self.ip.to_string(),
            "vhost": self.vhost,
            "app": self.app,
            "tcUrl": self.tc_url,
            "pageUrl": "",
        });
        if let Some((name, query)) = stream {
            v["stream"] = json!(name);
            v["param"] = json!(if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            });
        }
        v
    }
}

async fn run_hooks(
    calls: &Calls,
    urls: &[String],
    body: &Value,
    timeout: Duration,
) -> Result<(), Refusal> {
    for url in urls {
        hooks::call(calls, url, body, timeout)
            .await
            .map_err(|e| Refusal {
                // Hook addresses and answers stay in the server's log.
                client: format!(
                    "refused by the {} hook",
                    body["action"].as_str().unwrap_or("")
                ),
                log: e.to_string(),
            })?;
    }
    Ok(())
}

fn hook_timeout(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.hooks.timeout_ms)
}

fn check_rules(cfg: &Config, action: Action, c: &ClientInfo<'_>) -> Result<(), Refusal> {
    cfg.security
        .parsed
        .check(action, c.ip)
        .map_err(|rule| Refusal::plain(&format!("denied by rule `{rule}`")))
}

/// May this client connect? (on_connect hooks)
pub async fn check_connect(cfg: &Config, calls: &Calls, c: &ClientInfo<'_>) -> Result<(), Refusal> {
    run_hooks(
        calls,
        &cfg.hooks.on_connect,
        &c.body("on_connect", None),
        hook_timeout(cfg),
    )
    .await
}

/// May this client publish `stream`? Rules, then the publish secret, then on_publish hooks.
pub async fn check_publish(
    cfg: &Config,
    calls: &Calls,
    c: &ClientInfo<'_>,
    stream: &str,
    query: &str,
) -> Result<(), Refusal> {
    check_rules(cfg, Action::Publish, c)?;
    if let Some(secret) = cfg.publish_secret(c.vhost, c.app) {
        let tc_query = c.tc_url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let given = [query, tc_query]
            .into_iter()
            .find_map(|q| query_param(q, "secret").or_else(|| query_param(q, "token")));
        if given != Some(secret) {
            return Err(Refusal::plain(match given {
                Some(_) => "wrong publish secret",
                None => "publish secret missing (?secret=...)",
            }));
        }
    }
    let body = c.body("on_publish", Some((stream, query)));
    run_hooks(calls, &cfg.hooks.on_publish, &body, hook_timeout(cfg)).await
}

/// May this client play `stream`? Rules, then on_play hooks.
pub async fn check_play(
    cfg: &Config,
    calls: &Calls,
    c: &ClientInfo<'_>,
    stream: &str,
    query: &str,
) -> Result<(), Refusal> {
    check_rules(cfg, Action::Play, c)?;
    let body = c.body("on_play", Some((stream, query)));
    run_hooks(calls, &cfg.hooks.on_play, &body, hook_timeout(cfg)).await
}

/// Tell the on_unpublish / on_stop hooks, without waiting (their answer changes nothing; a
/// failure is logged by the control plane).
pub fn notify(
    cfg: &Config,
    calls: &Calls,
    action: &'static str,
    c: &ClientInfo<'_>,
    stream: &str,
    query: &str,
) {
    let urls = match action {
        "on_unpublish" => &cfg.hooks.on_unpublish,
        _ => &cfg.hooks.on_stop,
    };
    if urls.is_empty() {
        return;
    }
    let body = c.body(action, Some((stream, query)));
    for url in urls {
        let call = HttpCall::post_json(url, &body, hook_timeout(cfg));
        if let Err(e) = calls.notify(call, format!("{action} notice")) {
            log::warn!("{action} notice to {url} not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client<'a>(ip: &str, tc_url: &'a str) -> ClientInfo<'a> {
        ClientInfo {
            id: 1,
            ip: ip.parse().unwrap(),
            vhost: "__defaultVhost__",
            app: "live",
            tc_url,
        }
    }

    #[test]
    fn rules_and_secrets_decide_without_hooks() {
        let cfg = Config::from_toml(
            "[security]\nrules = [\"deny publish 10.0.0.0/8\", \"deny play 192.168.0.0/16\"]\npublish_secret = \"k\"\n",
            "t",
        )
        .unwrap();
        let calls = Calls::start().unwrap();
        glommio::LocalExecutor::default().run(async {
            let tc = "rtmp://h/live";
            let ok = check_publish(&cfg, &calls, &client("127.0.0.1", tc), "s", "secret=k").await;
            assert_eq!(ok, Ok(()));
            let token = check_publish(&cfg, &calls, &client("127.0.0.1", tc), "s", "token=k").await;
            assert_eq!(token, Ok(()));
            let c = client("127.0.0.1", "rtmp://h/live?secret=k");
            assert_eq!(check_publish(&cfg, &calls, &c, "s", "").await, Ok(()));
            let wrong =
                check_publish(&cfg, &calls, &client("127.0.0.1", tc), "s", "secret=x").await;
            assert_eq!(wrong.unwrap_err().client, "wrong publish secret");
            let missing = check_publish(&cfg, &calls, &client("127.0.0.1", tc), "s", "").await;
            assert!(missing.unwrap_err().client.contains("missing"));
            let denied =
                check_publish(&cfg, &calls, &client("10.1.1.1", tc), "s", "secret=k").await;
            assert!(denied
                .unwrap_err()
                .client
                .contains("deny publish 10.0.0.0/8"));
            assert!(
                check_play(&cfg, &calls, &client("192.168.1.1", tc), "s", "")
                    .await
                    .is_err()
            );
            assert!(check_play(&cfg, &calls, &client("127.0.0.1", tc), "s", "")
                .await
                .is_ok());
            assert!(check_connect(&cfg, &calls, &client("127.0.0.1", tc))
                .await
                .is_ok());
        });
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            redact("rtmp://h/live?secret=abc&vhost=v&token=t"),
            "rtmp://h/live?secret=***&vhost=v&token=***"
        );
        assert_eq!(redact("rtmp://h/live"), "rtmp://h/live");
    }

    #[test]
    fn unreachable_hook_fails_closed() {
        // Port 9 on loopback: nothing listens there, so the connect is refused at once.
        let cfg = Config::from_toml(
            "[hooks]\non_publish = [\"http://127.0.0.1:9/hook\"]\ntimeout_ms = 500\n",
            "t",
        )
        .unwrap();
        let calls = Calls::start().unwrap();
        glommio::LocalExecutor::default().run(async {
            let r =
                check_publish(&cfg, &calls, &client("127.0.0.1", "rtmp://h/live"), "s", "").await;
            let e = r.unwrap_err();
            assert_eq!(e.client, "refused by the on_publish hook");
            assert!(e.log.contains("127.0.0.1:9"), "{}", e.log);
        });
    }
}
