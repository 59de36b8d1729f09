#!/usr/bin/env bash
# Soak test (issue #13): one shardcast (1 shard, CPU 0) under churn for a bounded time, watching
# for leaks. Every client runs on CPU 1:
#   - one `shardcast-bench publish` process with K streams (0.5 Mbit/s H.264 + AAC), all along;
#   - two churn loops: repeated `shardcast-bench play` runs with a random player count (1..MAXP)
#     spread over the K streams and a random length (5..30 s), a random pause between them;
#   - slow players: a `shardcast-bench play` process with 2 players that is stopped (SIGSTOP)
#     3 s out of every 5 s, so it reads well below real time for the whole run.
# Every INTERVAL seconds (30 s, 60 s for runs over 10 minutes) it samples the server's RSS, open
# descriptors (/proc/PID/fd) and CPU share of a core. At the end the churn and the slow players
# stop and, once only the publishers are left, their sockets are counted again.
#
# Fails (exit 1) when, after the warm-up (a third of the run, at least one interval), RSS or
# descriptors never go down from one sample to the next and grow by more than the tolerance
# (RSS: 8 MiB and 10 %, descriptors: 16), when the sockets with only the publishers left
# exceed those before the churn by more than 4, or when the server dies. Prints a table and
# writes bench/results/<date>-soak.json.
#
#   scripts/soak.sh            # 300 s
#   scripts/soak.sh 180 --streams 20 --max-players 30
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=300
STREAMS=20
MAXP=30
PORT_BASE=19450
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --streams) STREAMS="$2"; shift ;;
    --max-players) MAXP="$2"; shift ;;
    --port-base) PORT_BASE="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    [0-9]*) DURATION="$1" ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
((DURATION >= 60)) || { echo "DURATION must be at least 60 s" >&2; exit 2; }
INTERVAL=30
((DURATION > 600)) && INTERVAL=60
WARM=$((DURATION / 3))
((WARM < INTERVAL)) && WARM=$INTERVAL

log() { printf '[soak] %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/shardcast-soak.XXXXXX)
SERVER_PID=""
PUB_PID=""
SLOW_PID=""
CHURN_PIDS=()
kill_tree() { # PID: the process and its children, each by id
  local pid=$1 c
  [ -n "$pid" ] || return 0
  for c in $(pgrep -P "$pid" 2>/dev/null); do kill_tree "$c"; done
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
}
stop_churn() {
  local p
  for p in "${CHURN_PIDS[@]}"; do kill_tree "$p"; done
  kill_tree "$SLOW_PID"
  for p in "${CHURN_PIDS[@]}" $SLOW_PID; do wait "$p" 2>/dev/null || true; done
  CHURN_PIDS=()
  SLOW_PID=""
}
cleanup() {
  stop_churn
  kill_tree "$PUB_PID"
  wait "$PUB_PID" 2>/dev/null || true
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v ffmpeg >/dev/null 2>&1 || { log "ffmpeg is needed"; exit 1; }
log "building release binaries"
timeout 1800 cargo build --release -q -p shardcast -p shardcast-bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVER_BIN="$TARGET/release/shardcast"
BENCH_BIN="$TARGET/release/shardcast-bench"

MEDIA="$WORK/media.flv"
log "generating a 0.5 Mbit/s H.264 + AAC FLV with a 2 s GOP"
timeout 300 ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -t 30 -c:v libx264 -preset veryfast -b:v 436k -maxrate 436k -bufsize 872k \
  -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k "$MEDIA"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=$PORT_BASE
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
URL="rtmp://127.0.0.1:$PORT/live/s{i}"

# SOAK_LOCK=/other/file: a long soak that must not hold benchmarks back (it is light: its
# figures are growth, not CPU) takes a lock of its own instead of the shared one.
exec 9>"${SOAK_LOCK:-/tmp/shardcast-load.lock}"
log "waiting for the load lock"
flock -w 3600 9

printf '[server]\nlisten = "127.0.0.1:%s"\nshards = 1\n' "$PORT" >"$WORK/shardcast.toml"
RUST_LOG=warn taskset -c 0 "$SERVER_BIN" -c "$WORK/shardcast.toml" 2>"$WORK/shardcast.log" &
SERVER_PID=$!
for _ in $(seq 100); do port_free "$PORT" || break; sleep 0.1; done
port_free "$PORT" && { log "server did not listen"; exit 1; }

TICK=$(getconf CLK_TCK)
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
fds() { find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# Sockets only: each shard also opens 10 descriptors once, at its first merged write to players
# (the zero-copy fan-out's pipes and /dev/null), which the count before any player lacks.
sockets() { find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
alive() { kill -0 "$SERVER_PID" 2>/dev/null; }

# Publishers for the whole run (and a margin for the final count).
log "$STREAMS publishers"
taskset -c 1 "$BENCH_BIN" publish --url "$URL" --file "$MEDIA" -m "$STREAMS" --ramp 50 \
  --duration $((DURATION + 40)) --threads 1 --cores 1 -q >"$WORK/publish.log" 2>&1 &
PUB_PID=$!
sleep 5
FDS_PUBLISHERS_ONLY=$(sockets)
RSS_START=$(rss_kib)

START=$(date +%s)
END=$((START + DURATION))

# churn SEED: play runs of random size and length until the end of the run.
churn() {
  RANDOM=$1
  local runs=0 n len left
  while :; do
    left=$((END - $(date +%s)))
    ((left > 8)) || break
    n=$((1 + RANDOM % MAXP))
    len=$((5 + RANDOM % 26))
    ((len > left - 3)) && len=$((left - 3))
    timeout $((len + 15)) taskset -c 1 "$BENCH_BIN" play --url "$URL" --streams "$STREAMS" \
      -n "$n" --ramp 20 --warmup 1 --window $((len > 4 ? len - 3 : 1)) --threads 1 --cores 1 -q \
      >/dev/null 2>&1 || true
    runs=$((runs + 1))
    sleep "$((RANDOM % 4)).$((RANDOM % 10))"
  done
  echo "$runs" >"$WORK/churn-$1.runs"
}
churn 11 &
CHURN_PIDS+=($!)
churn 23 &
CHURN_PIDS+=($!)

# Slow players: stopped 3 s out of every 5 s.
taskset -c 1 "$BENCH_BIN" play --url "rtmp://127.0.0.1:$PORT/live/s0" -n 2 --ramp 10 \
  --warmup 1 --window $((DURATION - 5)) --threads 1 --cores 1 -q >"$WORK/slow.log" 2>&1 &
SLOW_PID=$!
(
  while kill -0 "$SLOW_PID" 2>/dev/null && (($(date +%s) < END)); do
    sleep 2
    kill -STOP "$SLOW_PID" 2>/dev/null || break
    sleep 3
    kill -CONT "$SLOW_PID" 2>/dev/null || break
  done
) &
CHURN_PIDS+=($!)

# Samples: t, RSS KiB, fds, CPU share over the interval.
SAMPLES=()
prev_ticks=$(cpu_ticks)
prev_t=$START
log "sampling every ${INTERVAL} s for ${DURATION} s (warm-up ${WARM} s)"
printf '%6s %10s %6s %8s\n' "t s" "RSS MiB" "fds" "CPU" >&2
while (($(date +%s) < END)); do
  next=$((prev_t + INTERVAL))
  ((next > END)) && next=$END
  while (($(date +%s) < next)); do
    alive || break 2
    sleep 1
  done
  alive || break
  now=$(date +%s)
  ticks=$(cpu_ticks)
  share=$(awk -v d=$((ticks - prev_ticks)) -v t="$TICK" -v w=$((now - prev_t)) \
    'BEGIN { printf "%.3f", (w > 0) ? d / t / w : 0 }')
  r=$(rss_kib)
  f=$(fds)
  SAMPLES+=("$((now - START)) $r $f $share")
  printf '%6d %10.1f %6d %8s\n' $((now - START)) "$(awk -v k="$r" 'BEGIN { print k / 1024 }')" \
    "$f" "$share" >&2
  prev_ticks=$ticks
  prev_t=$now
done

SERVER_DIED=0
alive || SERVER_DIED=1
log "stopping the churn and the slow players"
stop_churn
sleep 5
FDS_END=-1
RSS_END=0
if alive; then
  FDS_END=$(sockets)
  RSS_END=$(rss_kib)
fi
CHURN_RUNS=$(cat "$WORK"/churn-*.runs 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')

# Verdict: growth after the warm-up.
verdict=$(printf '%s\n' "${SAMPLES[@]}" | awk -v warm="$WARM" '
  $1 >= warm { n++; r[n] = $2; f[n] = $3 }
  END {
    if (n < 2) { print "ok ok too-few-samples"; exit }
    rmono = 1; fmono = 1
    for (i = 2; i <= n; i++) { if (r[i] < r[i-1]) rmono = 0; if (f[i] < f[i-1]) fmono = 0 }
    rg = r[n] - r[1]; fg = f[n] - f[1]
    rtol = 8192; if (r[1] * 0.10 > rtol) rtol = r[1] * 0.10
    rs = (rmono && rg > rtol) ? "growing" : "ok"
    fs = (fmono && fg > 16) ? "growing" : "ok"
    printf "%s %s rss_growth_kib=%d fd_growth=%d samples=%d\n", rs, fs, rg, fg, n
  }')
read -r RSS_VERDICT FD_VERDICT DETAIL <<<"$verdict"
FD_LEFT="ok"
if ((FDS_END < 0)); then FD_LEFT="server-gone"
elif ((FDS_END > FDS_PUBLISHERS_ONLY + 4)); then FD_LEFT="leaked"; fi

FAIL=0
((SERVER_DIED)) && FAIL=1
[ "$RSS_VERDICT" = ok ] || FAIL=1
[ "$FD_VERDICT" = ok ] || FAIL=1
[ "$FD_LEFT" = ok ] || FAIL=1

mkdir -p bench/results
OUT="bench/results/$(date +%Y-%m-%d-%H%M%S)-soak.json"
{
  printf '{\n  "duration_s": %d,\n  "interval_s": %d,\n  "warmup_s": %d,\n' "$DURATION" "$INTERVAL" "$WARM"
  printf '  "streams": %d,\n  "max_players_per_churn_run": %d,\n  "churn_runs": %d,\n' "$STREAMS" "$MAXP" "$CHURN_RUNS"
  printf '  "setup": "shardcast 1 shard on CPU 0 (shipped defaults), clients on CPU 1, 0.5 Mbit/s streams, 2 churn loops, 2 slow players (SIGSTOP 3 s of 5 s)",\n'
  printf '  "rss_start_kib": %d,\n  "sockets_publishers_only_start": %d,\n' "$RSS_START" "$FDS_PUBLISHERS_ONLY"
  printf '  "sockets_publishers_only_end": %d,\n  "rss_end_kib": %d,\n' "$FDS_END" "$RSS_END"
  printf '  "samples": [\n'
  i=0
  for s in "${SAMPLES[@]}"; do
    read -r t r f c <<<"$s"
    i=$((i + 1))
    sep=","
    ((i == ${#SAMPLES[@]})) && sep=""
    printf '    {"t_s": %d, "rss_kib": %d, "fds": %d, "cpu_share": %s}%s\n' "$t" "$r" "$f" "$c" "$sep"
  done
  printf '  ],\n  "rss": "%s",\n  "fds": "%s",\n  "fds_after_players_left": "%s",\n' "$RSS_VERDICT" "$FD_VERDICT" "$FD_LEFT"
  printf '  "detail": "%s",\n  "server_died": %s,\n  "pass": %s\n}\n' "$DETAIL" \
    "$( ((SERVER_DIED)) && echo true || echo false)" "$( ((FAIL)) && echo false || echo true)"
} >"$OUT"

log "churn runs: $CHURN_RUNS; RSS $RSS_VERDICT, fds $FD_VERDICT ($DETAIL)"
log "sockets with only the publishers: $FDS_PUBLISHERS_ONLY before the churn, $FDS_END after ($FD_LEFT)"
log "wrote $OUT"
if ((FAIL)); then
  log "FAIL"
  tail -n 20 "$WORK/shardcast.log" >&2 || true
  exit 1
fi
log "PASS"
