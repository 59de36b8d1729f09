#!/usr/bin/env bash
# Memory per idle published stream (issue #13: "at most its GOP cache plus 32 KiB"). Starts one
# shardcast (1 shard, CPU 0, shipped defaults plus any --rtmp lines), reads its RSS idle, then
# drives M publishers of a 0.5 Mbit/s H.264 + AAC FLV with a 2 s GOP (`shardcast-bench publish`,
# CPU 1, no players) and samples, once warm:
#   - RSS (/proc/PID/status VmRSS) and the GOP caches' payload bytes (shardcast_gop_cache_bytes);
#   - per stream: (RSS - idle RSS) / M, GOP bytes / M (now and their peak so far), and the rest:
#     the first minus the GOP peak.
# The run is bounded (warm-up + samples, a hard timeout on the publishers) and takes the machine's
# load lock (/tmp/shardcast-load.lock) so it never overlaps another load measurement.
#
#   scripts/stream-memory.sh                    # 200 publishers
#   scripts/stream-memory.sh -m 1000 --samples 4
#   scripts/stream-memory.sh -m 200 --rtmp 'gop_cache = false'
#   scripts/stream-memory.sh --bin ./old-shardcast --media my.flv
#
# Options: -m M (publishers, 200), --port-base P (29935; RTMP on P, HTTP on P+1), --warmup S
# (seconds after the ramp, 6), --ramp R (publishers started a second, 500), --samples N (5,
# 2 s apart), --rtmp LINE (added to [rtmp], may repeat), --bin PATH / --bench PATH (default:
# this tree's release build, built if missing), --media FILE (default: made with ffmpeg),
# --no-lock.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

M=200
PORT=29935
WARMUP=6
RAMP=500
SAMPLES=5
RTMP_EXTRA=""
BIN=""
BENCH=""
MEDIA=""
LOCK=1
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    -m) M="$2"; shift ;;
    --port-base) PORT="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --ramp) RAMP="$2"; shift ;;
    --samples) SAMPLES="$2"; shift ;;
    --rtmp) RTMP_EXTRA+="$2"$'\n'; shift ;;
    --bin) BIN="$2"; shift ;;
    --bench) BENCH="$2"; shift ;;
    --media) MEDIA="$2"; shift ;;
    --no-lock) LOCK=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[stream-memory] $*" >&2; }
WORK=$(mktemp -d)
SERVER_PID=""
BENCH_PID=""
POLL_PID=""
cleanup() {
  [ -n "$POLL_PID" ] && kill "$POLL_PID" 2>/dev/null && wait "$POLL_PID" 2>/dev/null
  [ -n "$BENCH_PID" ] && kill "$BENCH_PID" 2>/dev/null && wait "$BENCH_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$BIN" ] || [ -z "$BENCH" ]; then
  if [ ! -x target/release/shardcast ] || [ ! -x target/release/shardcast-bench ]; then
    log "building release binaries"
    timeout 1800 cargo build --release -q -p shardcast -p shardcast-bench
  fi
  BIN=${BIN:-$ROOT/target/release/shardcast}
  BENCH=${BENCH:-$ROOT/target/release/shardcast-bench}
fi
if [ -z "$MEDIA" ]; then
  MEDIA="$WORK/media.flv"
  log "generating a 0.5 Mbit/s H.264 + AAC FLV with a 2 s GOP"
  timeout 300 ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 30 -c:v libx264 -preset veryfast -b:v 436k -maxrate 436k -bufsize 872k \
    -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k "$MEDIA"
fi

if ((LOCK)); then
  exec 9>/tmp/shardcast-load.lock
  log "waiting for the load lock"
  flock -w 1800 9 || { log "load lock busy for 30 min"; exit 1; }
fi

HTTP=$((PORT + 1))
printf '[server]\nlisten = "127.0.0.1:%d"\nshards = 1\n[http]\nenabled = true\nlisten = "127.0.0.1:%d"\n[rtmp]\n%s' \
  "$PORT" "$HTTP" "$RTMP_EXTRA" >"$WORK/server.toml"
RUST_LOG=warn taskset -c 0 "$BIN" -c "$WORK/server.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
gop() { curl -s "127.0.0.1:$HTTP/metrics" | awk '/^shardcast_gop_cache_bytes/ {s += $2} END {print s + 0}'; }
for _ in $(seq 50); do curl -s -o /dev/null "127.0.0.1:$HTTP/metrics" && break; sleep 0.1; done
sleep 1
IDLE=$(rss)

# Publishers join RAMP a second; sample once every one is up and the GOPs are full.
UP=$(((M + RAMP - 1) / RAMP + WARMUP))
RUN=$((UP + 2 * SAMPLES + 4))
timeout $((RUN + 30)) taskset -c 1 "$BENCH" publish --url "rtmp://127.0.0.1:$PORT/live/s{i}" \
  --file "$MEDIA" -m "$M" --ramp "$RAMP" --warmup "$UP" --window $((RUN - UP)) --threads 1 \
  --cores 1 -q >"$WORK/bench.log" 2>&1 &
BENCH_PID=$!
# The GOPs of publishers of one file started together fill and empty in step, and RSS is a
# high-water mark (the heap keeps what it once held), so the rest is counted against the peak of
# the GOP bytes since the first publisher (sampled every 0.1 s in the background, so the larger
# first GOP of an encoder's output counts too), not against whatever phase a sample catches.
PEAKS="$WORK/gop-peaks"
(
  for _ in $(seq $((RUN * 10))); do
    gop >>"$PEAKS"
    sleep 0.1
  done
) &
POLL_PID=$!
gop_peak() { sort -n "$PEAKS" | tail -1; }
sleep "$UP"
printf '%-6s %9s %9s %11s %11s %12s %10s\n' sample "idle KiB" "RSS KiB" "KiB/stream" "GOP KiB/st" "GOP peak/st" "rest KiB"
for i in $(seq "$SAMPLES"); do
  sleep 2
  G=$(gop)
  PEAK=$(gop_peak)
  kill -0 "$SERVER_PID" 2>/dev/null || { log "server died"; cat "$WORK/server.log" >&2; exit 1; }
  B=$(rss)
  printf '%-6s %s\n' "$i" "$(awk -v a="$IDLE" -v b="$B" -v g="$G" -v p="$PEAK" -v m="$M" \
    'BEGIN {printf "%9d %9d %11.1f %11.1f %12.1f %10.1f", a, b, (b - a) / m, g / 1024 / m, p / 1024 / m, (b - a) / m - p / 1024 / m}')"
done
wait "$BENCH_PID" || true
BENCH_PID=""
kill "$POLL_PID" 2>/dev/null
wait "$POLL_PID" 2>/dev/null || true
POLL_PID=""
awk -v a="$IDLE" -v b="$B" -v p="$PEAK" -v m="$M" 'BEGIN {printf "M=%d publishers: idle RSS %d KiB, with them %d KiB; per stream %.1f KiB = GOP payload (peak) %.1f KiB + rest %.1f KiB\n", m, a, b, (b - a) / m, p / 1024 / m, (b - a) / m - p / 1024 / m}'
