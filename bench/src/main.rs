//! shardcast-bench: a flazr-style RTMP load generator. Players (RTMP or HTTP-FLV), publishers,
//! or both in one process (fanout, with end-to-end latency), thread-per-core on glommio, driving
//! the `shardcast::rtmp::client::ClientSession` state machine over real sockets.

use shardcast_bench::args::{self, Command, USAGE};
use shardcast_bench::{compare, lbreport, report, runner};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Compare(c) => match compare::run(&c) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shardcast-bench compare: {e}");
                ExitCode::from(1)
            }
        },
        Command::LbReport(c) => match lbreport::run(&c) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shardcast-bench lb-report: {e}");
                ExitCode::from(1)
            }
        },
        Command::Load(a) => load(*a),
    }
}

fn load(args: args::LoadArgs) -> ExitCode {
    let out = match runner::run(args.clone()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("shardcast-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let summary = report::summarize(&args, &out, args.per_player);
    print!("{}", report::table(&summary));
    if let Some(path) = &args.json {
        let body = match serde_json::to_string_pretty(&summary) {
            Ok(b) => b + "\n",
            Err(e) => {
                eprintln!("shardcast-bench: cannot encode the summary: {e}");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = std::fs::write(path, body) {
            eprintln!("shardcast-bench: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
