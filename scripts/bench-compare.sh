#!/usr/bin/env bash
# Compares shardcast with nginx-rtmp under the same fan-out load on this machine, loopback only.
#
# Both servers run on CPU 0 (taskset), every client (the publisher and all players, one
# shardcast-bench process) on CPU 1. For each player count and server it measures, over a fixed
# window after warm-up: server CPU seconds per GB delivered, the fraction of players that kept up
# with real time, server RSS per player, join time and end-to-end latency. A last series runs a
# 2-shard shardcast on both cores with the clients sharing them (labelled as such). With
# --http-flv, one more series: 1-shard shardcast (mw_latency 350, [http] on a second port) with
# the publisher on RTMP and every player on HTTP-FLV (shardcast-mw350-httpflv).
#
# Two more series (issue #13), with 0.5 Mbit/s H.264 + AAC streams, servers on CPU 0 with one
# shard, `shardcast-bench` on CPU 1:
#   ingest       M publishers (one stream each), no players: the server's CPU share of a core
#                and RSS. nginx-rtmp, shardcast at its shipped defaults (shardcast-default: mr
#                150 ms, mw 100 ms), without merged reads (shardcast-mr0) and with 350 ms ones
#                (shardcast-mr350).
#   many-streams M streams x 2 players each: CPU s/GB, kept-up, RSS. nginx-rtmp,
#                shardcast-default, shardcast-mw0-mr0 (lowest latency) and shardcast-mr350-mw350.
#                With two shards (unless --no-2shard) ingest also runs shardcast-2shard-default:
#                2 shards on CPUs 0,1, the publishers sharing CPU 1 (server CPU per publisher vs 1
#                shard; the shared core means it shows the cross-shard overhead, not a speed-up).
# With --repeat R, the ingest and many-streams series measure nginx-rtmp and shardcast-default
# (and ingest's shardcast-2shard-default) R times, alternating (round 1 of each, then round 2,
# ...; the other variants run in round 1 only): both servers' figures move 10-25% between runs on a shared VM, so the table shows each
# figure's median and range and the ratios pair the runs of the same round.
# The fan-out series runs nginx-rtmp, shardcast-default, shardcast-mw350 and shardcast-mw0-mr0.
# Without a series option all three run (fan-out, ingest, many-streams); --fanout, --ingest and
# --many-streams pick only the ones given.
#
# Writes bench/results/<date>.json and .svg (CPU s/GB and kept-up vs players; ingest: CPU share
# vs publishers) and prints a table
# with each server's ratio to nginx-rtmp. Load runs hold an exclusive flock on
# /tmp/shardcast-load.lock so only one load runs on the machine at a time.
#
#   scripts/bench-compare.sh                  # N = 250 500 1000 1500, 20 s window
#   scripts/bench-compare.sh --quick          # N = 50 100, M = 100, 5 s window (smoke test)
#   scripts/bench-compare.sh --ingest --many-streams --publishers "200 1000" --streams "200 1000"
#   scripts/bench-compare.sh --ingest --publishers 1000 --repeat 5 --no-2shard
#   scripts/bench-compare.sh --players "100 200" --window 10 --no-2shard
#   scripts/bench-compare.sh --http-flv       # adds the HTTP-FLV player series
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PLAYERS="250 500 1000 1500"
WINDOW=20
WARMUP=5
RAMP=250
QUICK=0
NGINX=1
TWO_SHARD=1
HTTP_FLV=0
PORT_BASE=19350
BATCH_MS=0
BITRATE=1000k
# ingest / many-streams series: stream bitrate, publishers (ingest) and streams (many-streams).
SMALL_BITRATE=500k
PUBLISHERS="200 1000"
STREAMS="200 1000"
PLAYERS_PER_STREAM=2
FANOUT=0
INGEST=0
MANY=0
REPEAT=1

# The header comment above, without its leading "# ".
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while (($#)); do
  case "$1" in
    --quick) QUICK=1; PLAYERS="50 100"; PUBLISHERS=100; STREAMS=100; WINDOW=5; WARMUP=2 ;;
    --fanout) FANOUT=1 ;;
    --ingest) INGEST=1 ;;
    --many-streams) MANY=1 ;;
    --publishers) PUBLISHERS="$2"; shift ;;
    --streams) STREAMS="$2"; shift ;;
    --players) PLAYERS="$2"; shift ;;
    --window) WINDOW="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --ramp) RAMP="$2"; shift ;;
    --repeat) REPEAT="$2"; shift ;;
    --port-base) PORT_BASE="$2"; shift ;;
    --no-nginx) NGINX=0 ;;
    --no-2shard) TWO_SHARD=0 ;;
    --http-flv) HTTP_FLV=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

[[ "$REPEAT" =~ ^[1-9][0-9]?$ ]] || { echo "--repeat takes 1-99" >&2; exit 2; }

# No series picked: all of them.
if ((FANOUT + INGEST + MANY == 0)); then FANOUT=1; INGEST=1; MANY=1; fi

log() { printf '[bench-compare] %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/shardcast-compare.XXXXXX)
SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------------------------
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
RTMP_MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if ((NGINX)); then
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
  [ -f "$RTMP_MODULE" ] || need+=(libnginx-mod-rtmp)
fi
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  # Keep the package's own nginx service from starting (it would listen on port 80).
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    added_policy=1
  fi
  # Wait for other apt/dpkg users rather than failing on their lock.
  ok=1
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get -o DPkg::Lock::Timeout=600 \
      install -y -qq --no-install-recommends "${need[@]}" >/dev/null || ok=0
  if ((added_policy)); then $SUDO rm -f "$policy"; fi
  ((ok)) || { log "installing ${need[*]} failed"; exit 1; }
fi

log "building release binaries"
timeout 1800 cargo build --release -q -p shardcast -p shardcast-bench
SERVER_BIN="$ROOT/target/release/shardcast"
BENCH_BIN="$ROOT/target/release/shardcast-bench"
[ -n "${CARGO_TARGET_DIR:-}" ] && SERVER_BIN="$CARGO_TARGET_DIR/release/shardcast" && BENCH_BIN="$CARGO_TARGET_DIR/release/shardcast-bench"

# --- media -------------------------------------------------------------------------------------
MEDIA="$WORK/media.flv"
if ((FANOUT)); then
  log "generating a ${BITRATE}bit/s H.264 + AAC FLV with a 2 s GOP"
  timeout 300 ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 30 -c:v libx264 -preset veryfast -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize 2000k \
    -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k "$MEDIA"
fi
SMALL_MEDIA="$WORK/media-small.flv"
if ((INGEST || MANY)); then
  log "generating a ${SMALL_BITRATE}bit/s H.264 + AAC FLV with a 2 s GOP (ingest, many-streams)"
  timeout 300 ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 30 -c:v libx264 -preset veryfast -b:v 436k -maxrate 436k -bufsize 872k \
    -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k "$SMALL_MEDIA"
fi

# --- servers -----------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=$PORT_BASE
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
# shardcast's HTTP port (HTTP-FLV players), only used with --http-flv.
HTTP_PORT=$((PORT + 1))
while ! port_free "$HTTP_PORT"; do HTTP_PORT=$((HTTP_PORT + 1)); done

# wait_listening [PORT]: until the server listens on PORT (default $PORT), and is still up a
# moment later (a server that lost the port to another process exits at once).
wait_listening() {
  local port=${1:-$PORT}
  for _ in $(seq 100); do
    if ! port_free "$port"; then
      sleep 0.3
      kill -0 "$SERVER_PID" 2>/dev/null && return 0
      break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server did not listen on $port within 10 s"
  else
    log "server exited early:"
    tail -5 "$WORK/shardcast.log" "$WORK/nginx/error.log" 2>/dev/null >&2
  fi
  return 1
}

# wait_port_free: a port the last server (or anything else) still holds is waited for, up to 5 s.
wait_port_free() {
  for _ in $(seq 50); do
    port_free "$PORT" && return 0
    sleep 0.1
  done
  log "port $PORT still in use"
  return 1
}

# start_nginx: nginx-rtmp, one worker, pinned to CPU 0; $SERVER_PID is the master.
start_nginx() {
  local dir="$WORK/nginx"
  BATCH_MS=0 # nginx-rtmp writes each message as it comes
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
load_module $RTMP_MODULE;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 20000; }
rtmp {
  server {
    listen 127.0.0.1:$PORT;
    chunk_size 4096;
    application live { live on; }
  }
}
EOF
  wait_port_free
  taskset -c 0 nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  SERVER_PID=$!
  wait_listening
}

# start_shardcast SHARDS MW_LATENCY_MS CPUS [HTTP_PORT]: with HTTP_PORT, [http] (HTTP-FLV) on it.
# MW_LATENCY_MS "-" keeps the shipped default; MR=ms in the environment sets rtmp.mr_latency_ms
# (merged reads), unset keeps the shipped defaults (mr 150 ms, mw 100 ms).
start_shardcast() {
  local conf="$WORK/shardcast.toml"
  printf '[server]\nlisten = "127.0.0.1:%s"\nshards = %s\n\n[rtmp]\n' "$PORT" "$1" >"$conf"
  [ "$2" = "-" ] || printf 'mw_latency_ms = %s\n' "$2" >>"$conf"
  [ -z "${MR:-}" ] || printf 'mr_latency_ms = %s\n' "$MR" >>"$conf"
  if [ -n "${4:-}" ]; then
    printf '\n[http]\nenabled = true\nlisten = "127.0.0.1:%s"\n' "$4" >>"$conf"
  fi
  # The kept-up check allows a player to be one read + one write window behind at either edge
  # (the shipped windows are mr 150 ms and mw 100 ms).
  local mw=$2
  [ "$mw" = "-" ] && mw=100
  BATCH_MS=$((${MR:-150} + mw))
  wait_port_free
  RUST_LOG=warn taskset -c "$3" "$SERVER_BIN" -c "$conf" 2>"$WORK/shardcast.log" &
  SERVER_PID=$!
  wait_listening && { [ -z "${4:-}" ] || wait_listening "$4"; }
}

# measure LABEL N CLIENT_CPUS THREADS [BENCH_OPTION...]: one fan-out run (1 publisher x N
# players) against the server on $PORT, the summary in $WORK/runs/. Extra options go to the
# bench (e.g. --http-url for HTTP-FLV players).
measure() {
  local label=$1 n=$2 cpus=$3 threads=$4
  shift 4
  local bound
  bound=$(awk -v n="$n" -v r="$RAMP" -v w="$WARMUP" -v win="$WINDOW" 'BEGIN { printf "%d", n / r + w + win + 60 }')
  log "$label: $n players"
  timeout "$bound" taskset -c "$cpus" "$BENCH_BIN" fanout \
    --url "rtmp://127.0.0.1:$PORT/live/s{i}" --file "$MEDIA" -m 1 -n "$n" \
    --ramp "$RAMP" --warmup "$WARMUP" --window "$WINDOW" --threads "$threads" --cores "$cpus" \
    --server-pid "$SERVER_PID" --label "$label" --json "$WORK/runs/$label-$n.json" -q \
    --batch-ms "$BATCH_MS" "$@" \
    | sed 's/^/    /' >&2 || log "$label at $n players failed (exit $?)"
}

# measure_ingest LABEL M [ROUND]: M publishers (no players) on CPU 1 for the window; the
# server's CPU share of a core and RSS come from --server-pid.
measure_ingest() {
  local label=$1 m=$2 round=${3:-1} bound
  bound=$(awk -v m="$m" -v r="$RAMP" -v w="$WARMUP" -v win="$WINDOW" 'BEGIN { printf "%d", m / r + w + win + 60 }')
  log "$label: $m publishers, no players"
  timeout "$bound" taskset -c 1 "$BENCH_BIN" publish \
    --url "rtmp://127.0.0.1:$PORT/live/s{i}" --file "$SMALL_MEDIA" -m "$m" \
    --ramp "$RAMP" --warmup "$WARMUP" --window "$WINDOW" --threads 1 --cores 1 \
    --server-pid "$SERVER_PID" --label "$label" --json "$WORK/runs/ingest-$label-$m-r$(printf %02d "$round").json" -q \
    | sed 's/^/    /' >&2 || log "$label at $m publishers failed (exit $?)"
}

# measure_many LABEL M [ROUND]: M streams x $PLAYERS_PER_STREAM players each, all clients on
# CPU 1.
measure_many() {
  local label=$1 m=$2 round=${3:-1} bound
  bound=$(awk -v m="$m" -v k="$PLAYERS_PER_STREAM" -v r="$RAMP" -v w="$WARMUP" -v win="$WINDOW" \
    'BEGIN { printf "%d", m * (k + 1) / r + w + win + 60 }')
  log "$label: $m streams x $PLAYERS_PER_STREAM players"
  timeout "$bound" taskset -c 1 "$BENCH_BIN" fanout \
    --url "rtmp://127.0.0.1:$PORT/live/s{i}" --file "$SMALL_MEDIA" -m "$m" -n "$PLAYERS_PER_STREAM" \
    --ramp "$RAMP" --warmup "$WARMUP" --window "$WINDOW" --threads 1 --cores 1 \
    --server-pid "$SERVER_PID" --label "$label" --json "$WORK/runs/many-$label-$m-r$(printf %02d "$round").json" -q \
    --batch-ms "$BATCH_MS" \
    | sed 's/^/    /' >&2 || log "$label at $m streams failed (exit $?)"
}

mkdir -p "$WORK/runs" bench/results
exec 9>/tmp/shardcast-load.lock
log "waiting for the load lock"
flock -w 3600 9
((FANOUT)) || PLAYERS=""
for n in $PLAYERS; do
  if ((NGINX)); then
    start_nginx && measure nginx-rtmp "$n" 1 1
    stop_server
  fi
  start_shardcast 1 - 0 && measure shardcast-default "$n" 1 1
  stop_server
  start_shardcast 1 350 0 && measure shardcast-mw350 "$n" 1 1
  stop_server
  MR=0 start_shardcast 1 0 0 && measure shardcast-mw0-mr0 "$n" 1 1
  stop_server
  if ((TWO_SHARD)); then
    start_shardcast 2 350 0,1 && measure "shardcast-2shard-mw350-shared-cores" "$n" 0,1 2
    stop_server
  fi
  if ((HTTP_FLV)); then
    start_shardcast 1 350 0 "$HTTP_PORT" && measure shardcast-mw350-httpflv "$n" 1 1 \
      --http-url "http://127.0.0.1:$HTTP_PORT/live/s{i}.flv"
    stop_server
  fi
done
if ((INGEST)); then
  for m in $PUBLISHERS; do
    for round in $(seq "$REPEAT"); do
      if ((NGINX)); then
        start_nginx && measure_ingest nginx-rtmp "$m" "$round"
        stop_server
      fi
      start_shardcast 1 - 0 && measure_ingest shardcast-default "$m" "$round"
      stop_server
      if ((TWO_SHARD)); then
        # Scaling over cores: 2 shards on CPUs 0 and 1, the publishers sharing CPU 1 with
        # shard 1 (per round too: it is read against shardcast-default of the same round).
        start_shardcast 2 - 0,1 && measure_ingest shardcast-2shard-default "$m" "$round"
        stop_server
      fi
    done
    MR=0 start_shardcast 1 - 0 && measure_ingest shardcast-mr0 "$m"
    stop_server
    MR=350 start_shardcast 1 - 0 && measure_ingest shardcast-mr350 "$m"
    stop_server
  done
fi
if ((MANY)); then
  for m in $STREAMS; do
    for round in $(seq "$REPEAT"); do
      if ((NGINX)); then
        start_nginx && measure_many nginx-rtmp "$m" "$round"
        stop_server
      fi
      start_shardcast 1 - 0 && measure_many shardcast-default "$m" "$round"
      stop_server
    done
    MR=0 start_shardcast 1 0 0 && measure_many shardcast-mw0-mr0 "$m"
    stop_server
    MR=350 start_shardcast 1 350 0 && measure_many shardcast-mr350-mw350 "$m"
    stop_server
  done
fi
flock -u 9

shopt -s nullglob
runs=("$WORK"/runs/*.json)
if ((${#runs[@]} == 0)); then
  log "no run produced a summary"
  exit 1
fi
stamp=$(date +%Y-%m-%d-%H%M%S)
((QUICK)) && stamp="$stamp-quick"
"$BENCH_BIN" compare --baseline nginx-rtmp --out "bench/results/$stamp.json" \
  --svg "bench/results/$stamp.svg" "${runs[@]}"
log "wrote bench/results/$stamp.json and bench/results/$stamp.svg"
