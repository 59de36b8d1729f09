#!/usr/bin/env bash
# A/B of two shardcast binaries under the same fan-out load, alternated to cancel drift on a
# shared machine: 1 shard on CPU 0, 1 publisher of a 1 Mbit/s stream and N players on CPU 1.
# Prints server CPU s/GB, kept-up and RSS per player for each run. Loopback only; one load at a
# time (flock /tmp/shardcast-load.lock).
#   scripts/ab-compare.sh OLD_BIN NEW_BIN [N=1000] [MW_LIST="350 33"] [REPS=2]
# e.g. git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build --release) &&
#      cargo build --release && scripts/ab-compare.sh /tmp/old/target/release/shardcast target/release/shardcast
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1; NEW=$2; N=${3:-1000}; MWS=${4:-"350 33"}; REPS=${5:-2}
BENCH=target/release/shardcast-bench
[ -x "$BENCH" ] || cargo build --release -q -p shardcast-bench
WORK=$(mktemp -d /tmp/shardcast-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=25 \
  -f lavfi -i sine=frequency=440:sample_rate=44100 -t 30 -c:v libx264 -preset veryfast \
  -b:v 1000k -maxrate 1000k -bufsize 2000k -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p \
  -c:a aac -b:a 64k "$WORK/m.flv"
port=19991
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
run() { # BIN MW LABEL
  printf '[server]\nlisten = "127.0.0.1:%s"\nshards = 1\n[rtmp]\nmw_latency_ms = %s\n' "$port" "$2" >"$WORK/c.toml"
  RUST_LOG=warn taskset -c 0 "$1" -c "$WORK/c.toml" 2>"$WORK/$3.log" &
  local s=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  timeout 120 taskset -c 1 "$BENCH" fanout --url "rtmp://127.0.0.1:$port/live/s{i}" --file "$WORK/m.flv" \
    -m 1 -n "$N" --ramp 250 --warmup 3 --window 15 --cores 1 --server-pid "$s" \
    --json "$WORK/$3.json" -q >/dev/null 2>&1 || true
  kill "$s"; wait "$s" 2>/dev/null || true
  python3 -c "
import json; d=json.load(open('$WORK/$3.json')); s=d['server']; p=d['players']
print(f\"$3 mw=$2 n=$N  CPU s/GB {s['cpu_s_per_gb']:.3f}  kept up {p['kept_up']}/{p['total']}  RSS/player {s['rss_per_player_kib']:.1f} KiB\")"
}
exec 9>/tmp/shardcast-load.lock
flock -w 3600 9
for r in $(seq "$REPS"); do
  for mw in $MWS; do
    run "$OLD" "$mw" "old-$mw-$r"
    run "$NEW" "$mw" "new-$mw-$r"
  done
done
