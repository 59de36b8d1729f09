//! Command line: `shardcast-bench <play|publish|fanout> [options]` for load runs, and
//! `shardcast-bench compare` for the benchmark script's report. Parsing yields typed, validated
//! settings; everything derived from them (stream names, schedule) is computed elsewhere.

use serde::Serialize;
use std::path::PathBuf;
use thiserror::Error;

pub const USAGE: &str = "usage: shardcast-bench <play|publish|fanout> [options]
       shardcast-bench compare --out FILE.json [--svg FILE.svg] [--baseline LABEL] RUN.json...
       shardcast-bench lb-report --out FILE.json [--svg FILE.svg] [--setup TEXT]
                                 [--threshold F] RUN.json...

modes:
  play      N players (RTMP or HTTP-FLV) of one or many URLs (spread round-robin)
  publish   M publishers looping an FLV file in real time
  fanout    M publishers x N players per stream in one process, with end-to-end latency
  compare   fold runs of scripts/bench-compare.sh into a table, JSON and SVG
  lb-report fold runs with --node-api (scripts/lb-bench.sh; label = balancing mode) into a
            table per mode and player count, JSON and SVG; --threshold is the kept-up
            fraction a step must reach to count as every player keeping up     [0.99]

load options:
  --url URL          stream URL; repeatable for play. `{i}` is replaced by the stream index
                     (publish/fanout: publisher i; play: 0..--streams). rtmp://host[:port]/app/
                     stream, or for players http://host[:port]/app/stream.flv: HTTP-FLV (GET,
                     chunked or plain FLV body) instead of RTMP
  --http-url URL     fanout: players play HTTP-FLV from this http:// URL (`{i}` = publisher i)
                     while the publishers stay on the rtmp:// --url; latency is measured the same
  --play-url URL     fanout: players play from this URL (rtmp:// or http://, `{i}` = publisher
                     i), e.g. an edge of the origin the publishers publish to
  --file FLV         media the publishers loop (publish, fanout)
  -n, --players N    play: total players; fanout: players per stream        [1]
  -m, --publishers M publish/fanout: publishers, one stream each            [1]
  --streams S        play: expand `{i}` in each URL to streams 0..S          [1]
  --ramp R           new connections per second, 0 for all at once          [500]
  --warmup S         seconds between the last connection and the window     [3]
  --window S         measurement window in seconds                          [10]
  --duration S       hard bound on the whole run in seconds    [ramp+warmup+window+3]
  --fps F            video frame rate for the kept-up check   [from timestamps]
  --batch-ms MS      kept-up check: how far behind a player may be at either window edge
                     beyond the 3%: the server's merged read + write windows, whose batches
                     make a player's lag swing by that much                     [0]
  --threads K        executor threads (one pinned per CPU)   [CPUs in --cores, else all]
  --cores LIST       CPUs to run on, e.g. `1`, `0-3` or `0,2`
  --json FILE        write the summary as JSON
  --label TEXT       name of the run in the summary (e.g. the server under test)
  --server-pid PID   sample this server's CPU and RSS (with its child processes)
  --start-ts MS      first publisher timestamp (16777000 exercises extended timestamps) [0]
  --chunk-size N     publisher chunk size                                   [4096]
  --buffer-ms N      buffer length players announce                         [1000]
  --per-player       include every player's figures in the JSON
  --node-api URL     play/fanout behind a balancer: a node's HTTP API (http://host:port),
                     repeatable. At the window's edges the bench reads each node's /api/v1/
                     clients, summaries and lb, finds its players on the nodes by their local
                     ip:port (the nodes see it through PROXY headers) and reports per node:
                     players landed, kept up, egress Mbit/s and the agent's weight
  --node-every S     with --node-api, also read every node each S seconds (progress line and
                     JSON `nodes.ticks`)                                  [window edges only]
  -q, --quiet        no progress line
  -h, --help         this text";

#[derive(Debug, Error)]
pub enum ArgError {
    #[error("{0}")]
    Parse(#[from] lexopt::Error),
    #[error("missing mode: play, publish, fanout, compare or lb-report")]
    NoMode,
    #[error("unknown mode `{0}`")]
    UnknownMode(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Play,
    Publish,
    Fanout,
}

impl Mode {
    pub fn has_players(self) -> bool {
        self != Mode::Publish
    }

    pub fn has_publishers(self) -> bool {
        self != Mode::Play
    }
}

/// Settings of one load run, as given (defaults filled in). Also echoed into the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct LoadArgs {
    pub mode: Mode,
    pub urls: Vec<String>,
    /// Fanout: the URL players use instead of the publishers' (HTTP-FLV), `{i}` per stream.
    pub http_url: Option<String>,
    pub file: Option<PathBuf>,
    pub players: usize,
    pub publishers: usize,
    pub streams: usize,
    pub ramp: f64,
    pub warmup: f64,
    pub window: f64,
    pub duration: Option<f64>,
    pub fps: Option<f64>,
    /// Slack of the kept-up check in ms (the server's batching).
    pub batch_ms: f64,
    pub threads: Option<usize>,
    pub cores: Option<Vec<usize>>,
    pub json: Option<PathBuf>,
    pub label: Option<String>,
    pub server_pids: Vec<i32>,
    pub start_ts: u32,
    pub chunk_size: u32,
    pub buffer_ms: u32,
    pub per_player: bool,
    /// Nodes' HTTP APIs for the per-node report (players behind a balancer).
    pub node_apis: Vec<String>,
    /// Seconds between periodic node reads (`None`: window edges only).
    pub node_every: Option<f64>,
    #[serde(skip)]
    pub quiet: bool,
}

#[derive(Debug, Clone)]
pub struct CompareArgs {
    pub out: PathBuf,
    pub svg: Option<PathBuf>,
    /// Label the other servers are divided by in the ratio table.
    pub baseline: String,
    pub runs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct LbReportArgs {
    pub out: PathBuf,
    pub svg: Option<PathBuf>,
    /// How the runs were arranged (CPUs, nodes, balancer), copied into the JSON.
    pub setup: Option<String>,
    /// Kept-up fraction a step must reach to count as every player keeping up.
    pub threshold: f64,
    pub runs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum Command {
    Load(Box<LoadArgs>),
    Compare(CompareArgs),
    LbReport(LbReportArgs),
    Help,
}

impl LoadArgs {
    fn new(mode: Mode) -> Self {
        LoadArgs {
            mode,
            urls: Vec::new(),
            http_url: None,
            file: None,
            players: 1,
            publishers: 1,
            streams: 1,
            ramp: 500.0,
            warmup: 3.0,
            window: 10.0,
            duration: None,
            fps: None,
            batch_ms: 0.0,
            threads: None,
            cores: None,
            json: None,
            label: None,
            server_pids: Vec::new(),
            start_ts: 0,
            chunk_size: 4096,
            buffer_ms: 1000,
            per_player: false,
            node_apis: Vec::new(),
            node_every: None,
            quiet: false,
        }
    }

    /// Total player connections of the run.
    pub fn total_players(&self) -> usize {
        match self.mode {
            Mode::Play => self.players,
            Mode::Publish => 0,
            Mode::Fanout => self.players * self.publishers,
        }
    }

    /// Total publisher connections of the run.
    pub fn total_publishers(&self) -> usize {
        if self.mode.has_publishers() {
            self.publishers
        } else {
            0
        }
    }

    /// The URL publisher `i` publishes to.
    pub fn publish_url(&self, i: usize) -> String {
        self.urls[0].replace("{i}", &i.to_string())
    }

    /// Every URL players choose from, `{i}` expanded. In fanout, entry `s` is stream `s`.
    pub fn play_urls(&self) -> Vec<String> {
        match self.mode {
            Mode::Publish => Vec::new(),
            Mode::Fanout => (0..self.publishers)
                .map(|i| match &self.http_url {
                    Some(u) => u.replace("{i}", &i.to_string()),
                    None => self.publish_url(i),
                })
                .collect(),
            Mode::Play => self
                .urls
                .iter()
                .flat_map(|u| {
                    let n = if u.contains("{i}") { self.streams } else { 1 };
                    (0..n).map(move |i| u.replace("{i}", &i.to_string()))
                })
                .collect(),
        }
    }

    /// What the players speak, for the report: `RTMP`, `HTTP-FLV` or both (play mode).
    pub fn player_protocol(&self) -> &'static str {
        let urls = self.play_urls();
        let http = urls.iter().filter(|u| u.starts_with("http://")).count();
        match http {
            0 => "RTMP",
            n if n == urls.len() => "HTTP-FLV",
            _ => "RTMP + HTTP-FLV",
        }
    }

    fn validate(&self) -> Result<(), ArgError> {
        let bad = |m: &str| Err(ArgError::Invalid(m.to_string()));
        if self.urls.is_empty() {
            return bad("--url is required");
        }
        for u in &self.urls {
            let probe = u.replace("{i}", "0");
            if probe.starts_with("http://") {
                if self.mode != Mode::Play {
                    return Err(ArgError::Invalid(format!(
                        "`{u}`: publishers speak RTMP; give them an rtmp:// --url (fanout takes \
                         --http-url for HTTP-FLV players)"
                    )));
                }
                if crate::httpflv::split_url(&probe).is_none() {
                    return Err(ArgError::Invalid(format!(
                        "`{u}` is not an http://host[:port]/app/stream.flv URL"
                    )));
                }
            } else if shardcast::rtmp::client::ClientConfig::from_url(
                &probe,
                shardcast::rtmp::client::ClientRole::Play,
            )
            .is_none()
            {
                return Err(ArgError::Invalid(format!(
                    "`{u}` is not an rtmp://host[:port]/app/stream or http://host[:port]/app/stream.flv URL"
                )));
            }
        }
        if let Some(u) = &self.http_url {
            if self.mode != Mode::Fanout {
                return bad("--http-url is for fanout; play takes http:// URLs in --url");
            }
            let probe = u.replace("{i}", "0");
            let rtmp = shardcast::rtmp::client::ClientConfig::from_url(
                &probe,
                shardcast::rtmp::client::ClientRole::Play,
            )
            .is_some();
            if !rtmp && crate::httpflv::split_url(&probe).is_none() {
                return Err(ArgError::Invalid(format!(
                    "--play-url `{u}` is not an rtmp://host[:port]/app/stream or http://host[:port]/app/stream.flv URL"
                )));
            }
            if self.publishers > 1 && !u.contains("{i}") {
                return bad("several publishers need `{i}` in --http-url so players spread over their streams");
            }
        }
        if self.mode.has_publishers() {
            if self.urls.len() != 1 {
                return bad(
                    "publish and fanout take exactly one --url (use `{i}` for many streams)",
                );
            }
            if self.file.is_none() {
                return bad("--file FLV is required to publish");
            }
            if self.publishers == 0 {
                return bad("--publishers must be at least 1");
            }
            if self.publishers > 1 && !self.urls[0].contains("{i}") {
                return bad("several publishers need `{i}` in --url so each has its own stream");
            }
        }
        if self.mode.has_players() && self.players == 0 {
            return bad("--players must be at least 1");
        }
        if self.streams == 0 {
            return bad("--streams must be at least 1");
        }
        if !(self.ramp >= 0.0 && self.ramp.is_finite()) {
            return bad("--ramp must be 0 or more");
        }
        if !(self.warmup >= 0.0 && self.warmup < 86_400.0) {
            return bad("--warmup must be between 0 and 86400 seconds");
        }
        if !(0.0..=60_000.0).contains(&self.batch_ms) {
            return bad("--batch-ms must be 0 to 60000");
        }
        if !(self.window > 0.0 && self.window < 86_400.0) {
            return bad("--window must be above 0 and below 86400 seconds");
        }
        if let Some(d) = self.duration {
            if !(d > 0.0 && d < 86_400.0) {
                return bad("--duration must be above 0 and below 86400 seconds");
            }
        }
        if let Some(f) = self.fps {
            if !(f > 0.0 && f <= 1000.0) {
                return bad("--fps must be above 0 and at most 1000");
            }
        }
        if self.threads == Some(0) {
            return bad("--threads must be at least 1");
        }
        if self.cores.as_ref().is_some_and(Vec::is_empty) {
            return bad("--cores lists no CPU");
        }
        if !self.node_apis.is_empty() && !self.mode.has_players() {
            return bad("--node-api is for play and fanout (it finds the players on the nodes)");
        }
        for u in &self.node_apis {
            if crate::nodes::api_hostport(u).is_none() {
                return Err(ArgError::Invalid(format!(
                    "--node-api `{u}` is not an http://host[:port] URL"
                )));
            }
        }
        if let Some(e) = self.node_every {
            if self.node_apis.is_empty() {
                return bad("--node-every needs --node-api");
            }
            if !(0.5..=3600.0).contains(&e) {
                return bad("--node-every must be between 0.5 and 3600 seconds");
            }
        }
        if !(128..=65536).contains(&self.chunk_size) {
            return bad("--chunk-size must be between 128 and 65536");
        }
        Ok(())
    }
}

/// Parses a CPU list such as `1`, `0-3` or `0,2,4-5`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, ArgError> {
    let bad = || ArgError::Invalid(format!("bad CPU list `{s}` (e.g. 1, 0-3 or 0,2)"));
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn num<T: std::str::FromStr>(p: &mut lexopt::Parser, name: &str) -> Result<T, ArgError> {
    let v = p.value()?;
    let s = v.to_string_lossy();
    s.parse()
        .map_err(|_| ArgError::Invalid(format!("{name}: `{s}` is not a valid number")))
}

fn string(p: &mut lexopt::Parser) -> Result<String, ArgError> {
    Ok(p.value()?.to_string_lossy().into_owned())
}

pub fn parse<I>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mode = match p.next()? {
        Some(Value(v)) => v.to_string_lossy().into_owned(),
        Some(Short('h') | Long("help")) => return Ok(Command::Help),
        Some(other) => return Err(other.unexpected().into()),
        None => return Err(ArgError::NoMode),
    };
    let mode = match mode.as_str() {
        "play" => Mode::Play,
        "publish" => Mode::Publish,
        "fanout" => Mode::Fanout,
        "compare" => return parse_compare(p),
        "lb-report" => return parse_lb_report(p),
        "help" => return Ok(Command::Help),
        _ => return Err(ArgError::UnknownMode(mode)),
    };
    let mut a = LoadArgs::new(mode);
    while let Some(arg) = p.next()? {
        match arg {
            Long("url") => a.urls.push(string(&mut p)?),
            Long("http-url") | Long("play-url") => a.http_url = Some(string(&mut p)?),
            Long("file") => a.file = Some(p.value()?.into()),
            Short('n') | Long("players") => a.players = num(&mut p, "--players")?,
            Short('m') | Long("publishers") => a.publishers = num(&mut p, "--publishers")?,
            Long("streams") => a.streams = num(&mut p, "--streams")?,
            Long("ramp") => a.ramp = num(&mut p, "--ramp")?,
            Long("warmup") => a.warmup = num(&mut p, "--warmup")?,
            Long("window") => a.window = num(&mut p, "--window")?,
            Long("batch-ms") => a.batch_ms = num(&mut p, "--batch-ms")?,
            Long("duration") => a.duration = Some(num(&mut p, "--duration")?),
            Long("fps") => a.fps = Some(num(&mut p, "--fps")?),
            Long("threads") => a.threads = Some(num(&mut p, "--threads")?),
            Long("cores") => a.cores = Some(parse_cpu_list(&string(&mut p)?)?),
            Long("json") => a.json = Some(p.value()?.into()),
            Long("label") => a.label = Some(string(&mut p)?),
            Long("server-pid") => a.server_pids.push(num(&mut p, "--server-pid")?),
            Long("start-ts") => a.start_ts = num(&mut p, "--start-ts")?,
            Long("chunk-size") => a.chunk_size = num(&mut p, "--chunk-size")?,
            Long("buffer-ms") => a.buffer_ms = num(&mut p, "--buffer-ms")?,
            Long("per-player") => a.per_player = true,
            Long("node-api") => a.node_apis.push(string(&mut p)?),
            Long("node-every") => a.node_every = Some(num(&mut p, "--node-every")?),
            Short('q') | Long("quiet") => a.quiet = true,
            Short('h') | Long("help") => return Ok(Command::Help),
            _ => return Err(arg.unexpected().into()),
        }
    }
    a.validate()?;
    Ok(Command::Load(Box::new(a)))
}

fn parse_compare(mut p: lexopt::Parser) -> Result<Command, ArgError> {
    use lexopt::prelude::*;
    let mut out = None;
    let mut svg = None;
    let mut baseline = "nginx-rtmp".to_string();
    let mut runs = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Long("out") => out = Some(p.value()?.into()),
            Long("svg") => svg = Some(p.value()?.into()),
            Long("baseline") => baseline = string(&mut p)?,
            Value(v) => runs.push(v.into()),
            Short('h') | Long("help") => return Ok(Command::Help),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let out = out.ok_or_else(|| ArgError::Invalid("compare needs --out FILE.json".into()))?;
    if runs.is_empty() {
        return Err(ArgError::Invalid(
            "compare needs at least one run JSON".into(),
        ));
    }
    Ok(Command::Compare(CompareArgs {
        out,
        svg,
        baseline,
        runs,
    }))
}

fn parse_lb_report(mut p: lexopt::Parser) -> Result<Command, ArgError> {
    use lexopt::prelude::*;
    let mut out = None;
    let mut svg = None;
    let mut setup = None;
    let mut threshold = 0.99;
    let mut runs = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Long("out") => out = Some(p.value()?.into()),
            Long("svg") => svg = Some(p.value()?.into()),
            Long("setup") => setup = Some(string(&mut p)?),
            Long("threshold") => threshold = num(&mut p, "--threshold")?,
            Value(v) => runs.push(v.into()),
            Short('h') | Long("help") => return Ok(Command::Help),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let out = out.ok_or_else(|| ArgError::Invalid("lb-report needs --out FILE.json".into()))?;
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(ArgError::Invalid(
            "--threshold must be above 0 and at most 1".into(),
        ));
    }
    if runs.is_empty() {
        return Err(ArgError::Invalid(
            "lb-report needs at least one run JSON".into(),
        ));
    }
    Ok(Command::LbReport(LbReportArgs {
        out,
        svg,
        setup,
        threshold,
        runs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<LoadArgs, ArgError> {
        match parse(args.iter().copied())? {
            Command::Load(a) => Ok(*a),
            other => panic!("not a load command: {other:?}"),
        }
    }

    #[test]
    fn fanout_expands_streams() {
        let a = load(&[
            "fanout",
            "--url",
            "rtmp://127.0.0.1:1935/live/s{i}",
            "--file",
            "x.flv",
            "-m",
            "3",
            "-n",
            "10",
            "--cores",
            "1",
        ])
        .unwrap();
        assert_eq!(a.total_players(), 30);
        assert_eq!(a.total_publishers(), 3);
        assert_eq!(a.publish_url(2), "rtmp://127.0.0.1:1935/live/s2");
        assert_eq!(a.play_urls().len(), 3);
        assert_eq!(a.cores, Some(vec![1]));
    }

    #[test]
    fn http_flv_players() {
        let a = load(&[
            "fanout",
            "--url",
            "rtmp://127.0.0.1:1935/live/s{i}",
            "--http-url",
            "http://127.0.0.1:8080/live/s{i}.flv",
            "--file",
            "x.flv",
            "-m",
            "2",
        ])
        .unwrap();
        assert_eq!(a.publish_url(1), "rtmp://127.0.0.1:1935/live/s1");
        assert_eq!(a.player_protocol(), "HTTP-FLV");
        assert_eq!(
            a.play_urls(),
            vec![
                "http://127.0.0.1:8080/live/s0.flv",
                "http://127.0.0.1:8080/live/s1.flv"
            ]
        );
        let a = load(&[
            "play",
            "--url",
            "http://h:8080/live/a.flv",
            "--url",
            "rtmp://h/live/b",
            "-n",
            "4",
        ])
        .unwrap();
        assert_eq!(a.play_urls().len(), 2);
        assert_eq!(a.player_protocol(), "RTMP + HTTP-FLV");
    }

    #[test]
    fn play_urls_round_robin_sources() {
        let a = load(&[
            "play",
            "--url",
            "rtmp://h/live/a",
            "--url",
            "rtmp://h/live/b{i}",
            "--streams",
            "2",
            "-n",
            "7",
        ])
        .unwrap();
        assert_eq!(
            a.play_urls(),
            vec!["rtmp://h/live/a", "rtmp://h/live/b0", "rtmp://h/live/b1"]
        );
        assert_eq!(a.total_publishers(), 0);
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(matches!(parse(["x"]), Err(ArgError::UnknownMode(_))));
        assert!(matches!(parse(Vec::<String>::new()), Err(ArgError::NoMode)));
        assert!(load(&["play"]).is_err(), "no url");
        assert!(load(&["play", "--url", "ftp://x/a/b"]).is_err());
        assert!(load(&["play", "--url", "http://x"]).is_err(), "no path");
        assert!(
            load(&["publish", "--url", "http://h/live/s.flv", "--file", "f"]).is_err(),
            "publishing over HTTP"
        );
        assert!(
            load(&[
                "play",
                "--url",
                "rtmp://h/live/s",
                "--http-url",
                "http://h/live/s.flv"
            ])
            .is_err(),
            "--http-url outside fanout"
        );
        assert!(
            load(&[
                "fanout",
                "--url",
                "rtmp://h/live/s{i}",
                "--http-url",
                "http://h/live/s.flv",
                "--file",
                "f",
                "-m",
                "2"
            ])
            .is_err(),
            "two streams, one HTTP-FLV URL"
        );
        assert!(
            load(&["publish", "--url", "rtmp://h/live/s"]).is_err(),
            "no file"
        );
        assert!(
            load(&[
                "publish",
                "--url",
                "rtmp://h/live/s",
                "--file",
                "f",
                "-m",
                "2"
            ])
            .is_err(),
            "two publishers on one stream"
        );
        assert!(load(&["play", "--url", "rtmp://h/live/s", "--window", "0"]).is_err());
        assert!(load(&["play", "--url", "rtmp://h/live/s", "--ramp", "x"]).is_err());
        assert!(load(&["play", "--url", "rtmp://h/live/s", "--bogus"]).is_err());
    }

    #[test]
    fn node_apis() {
        let a = load(&[
            "play",
            "--url",
            "rtmp://127.0.0.1:1935/live/s",
            "--node-api",
            "http://127.0.0.1:19861",
            "--node-api",
            "http://127.0.0.1:19862/",
            "--node-every",
            "2",
        ])
        .unwrap();
        assert_eq!(a.node_apis.len(), 2);
        assert_eq!(a.node_every, Some(2.0));
        let url = ["--url", "rtmp://h/live/s"];
        let with = |extra: &[&str]| {
            let mut v = vec!["play"];
            v.extend_from_slice(&url);
            v.extend_from_slice(extra);
            load(&v)
        };
        assert!(
            with(&["--node-api", "127.0.0.1:19861"]).is_err(),
            "no scheme"
        );
        assert!(
            with(&["--node-api", "http://h:1/api/v1"]).is_err(),
            "a path"
        );
        assert!(with(&["--node-every", "2"]).is_err(), "no --node-api");
        assert!(with(&["--node-api", "http://h:1", "--node-every", "0.1"]).is_err());
        assert!(
            load(&[
                "publish",
                "--url",
                "rtmp://h/live/s",
                "--file",
                "f",
                "--node-api",
                "http://h:1"
            ])
            .is_err(),
            "publishers only"
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpu_list("4,0-1,1").unwrap(), vec![0, 1, 4]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn compare_command() {
        match parse(["compare", "--out", "o.json", "a.json", "b.json"]).unwrap() {
            Command::Compare(c) => {
                assert_eq!(c.runs.len(), 2);
                assert!(c.svg.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(["compare", "a.json"]).is_err());
    }

    #[test]
    fn lb_report_command() {
        match parse([
            "lb-report",
            "--out",
            "o.json",
            "--setup",
            "2 cores",
            "a.json",
        ])
        .unwrap()
        {
            Command::LbReport(c) => {
                assert_eq!(c.runs.len(), 1);
                assert_eq!(c.threshold, 0.99);
                assert_eq!(c.setup.as_deref(), Some("2 cores"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(["lb-report", "a.json"]).is_err(), "no --out");
        assert!(parse(["lb-report", "--out", "o", "--threshold", "2", "a"]).is_err());
        assert!(parse(["lb-report", "--out", "o"]).is_err(), "no runs");
    }
}
