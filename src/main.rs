//! `shardcast [-c FILE] [-t]`: run the server, or check a config and exit.

use shardcast::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: shardcast [-c FILE] [-t]
  -c, --config FILE   load this TOML config (default: the embedded conf/shardcast.toml)
  -t, --test          check the config and exit (like nginx -t)
  -h, --help          this text
  -V, --version       print the version";

struct Args {
    config: Option<PathBuf>,
    test: bool,
}

fn parse_args() -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        config: None,
        test: false,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Short('c') | Long("config") => args.config = Some(p.value()?.into()),
            Short('t') | Long("test") => args.test = true,
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("shardcast {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardcast: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cfg = match &args.config {
        Some(path) => Config::load(path),
        None => Config::embedded(),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast: {e}");
            return ExitCode::from(1);
        }
    };
    if args.test {
        let origin = args
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "embedded default".into());
        println!("shardcast: config {origin} is ok");
        return ExitCode::SUCCESS;
    }
    match shardcast::runtime::run(cfg, args.config.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardcast: {e}");
            ExitCode::from(1)
        }
    }
}
