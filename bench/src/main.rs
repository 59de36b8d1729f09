//! shardcast-bench: RTMP load generator (work in progress).

fn main() {
    eprintln!("shardcast-bench: not built yet");
    std::process::exit(2);
}
