#!/usr/bin/env bash
# Players through HAProxy onto two shardcast nodes, one of them costlier per player: the same
# player ramp with plain `balance leastconn` and with leastconn + the nodes' agent-check
# weights (README "Behind HAProxy"), on this machine, loopback only.
#
# Node-2 is the costlier one: its stream (live/s0, published straight to it) is the 8 Mbit/s
# 1280x720 rendition, node-1's is 2 Mbit/s 640x360, so a player costs node-2 about four times
# the egress (and every byte also passes HAProxy). Both nodes are configured alike
# (max_egress_mbps = --egress-mbps, agents on); only HAProxy's server lines differ. Each step
# starts the nodes, HAProxy and the publishers afresh, then ramps N players through HAProxy and
# reads each node's API (shardcast-bench --node-api): players landed, kept up, egress, weight.
#
# CPUs: both nodes (1 shard each) and HAProxy (1 thread) on CPU 0, every client (one
# shardcast-bench play process for the players, two publish processes) on CPU 1.
#
# Writes bench/results/<date>-lb.json and -lb.svg (kept-up fraction and node-2's share of the
# players against players, per mode) and prints the table, with the highest step at which every
# player kept up (>= 99%) per mode. Holds the exclusive flock on /tmp/shardcast-load.lock that
# scripts/bench-compare.sh takes, so two loads never run together.
#
#   scripts/lb-bench.sh                     # N = 1000 1500 2000 2500, ramp 60/s, 10 s window
#   scripts/lb-bench.sh --quick             # N = 200 400, 5 s window (smoke test)
#   scripts/lb-bench.sh --steps "600 1200" --egress-mbps 3000 --ramp 40
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

STEPS="1000 1500 2000 2500"
MODES="leastconn agent"
RAMP=60
WARMUP=5
WINDOW=10
EGRESS=4000
AGENT_INTER=1s
PORT_BASE=19650
QUICK=0
# Whole-script bound on the load part (seconds); steps that would start later are skipped.
BUDGET=900

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --quick) QUICK=1; STEPS="200 400"; WINDOW=5; WARMUP=2 ;;
    --steps) STEPS="$2"; shift ;;
    --modes) MODES="$2"; shift ;;
    --ramp) RAMP="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --window) WINDOW="$2"; shift ;;
    --egress-mbps) EGRESS="$2"; shift ;;
    --port-base) PORT_BASE="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for m in $MODES; do
  case "$m" in leastconn|agent) ;; *) echo "unknown mode: $m (leastconn, agent)" >&2; exit 2 ;; esac
done

log() { printf '[lb-bench] %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/shardcast-lb-bench.XXXXXX)
PIDS=()
# stop_all: every process this step started, by its id (TERM, then KILL after 5 s).
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------------------------
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  # Keep the package's own haproxy service from starting.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    added_policy=1
  fi
  ok=1
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get -o DPkg::Lock::Timeout=600 \
      install -y -qq --no-install-recommends "${need[@]}" >/dev/null || ok=0
  if ((added_policy)); then $SUDO rm -f "$policy"; fi
  ((ok)) || { log "installing ${need[*]} failed"; exit 1; }
fi
HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)

log "building release binaries"
timeout 1800 cargo build --release -q -p shardcast -p shardcast-bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVER_BIN="$TARGET/release/shardcast"
BENCH_BIN="$TARGET/release/shardcast-bench"

# --- media -------------------------------------------------------------------------------------
# encode NAME SIZE BITRATE: a 20 s, 25 fps, 2 s GOP, constant-bitrate H.264 + AAC FLV.
encode() {
  timeout 300 ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=$2:rate=25" -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 20 -c:v libx264 -preset veryfast -b:v "$3" -minrate "$3" -maxrate "$3" -bufsize "$3" \
    -x264-params nal-hrd=cbr -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p \
    -c:a aac -b:a 64k "$WORK/$1.flv"
}
log "generating the renditions: 2 Mbit/s 640x360 (node-1), 8 Mbit/s 1280x720 (node-2)"
encode low 640x360 2000k
encode high 1280x720 8000k

# --- ports -------------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NEXT_PORT=$PORT_BASE
# take_port: the next free loopback port from NEXT_PORT (bounded search).
take_port() {
  local i
  for i in $(seq 200); do
    NEXT_PORT=$((NEXT_PORT + 1))
    if port_free "$NEXT_PORT"; then
      echo "$NEXT_PORT"
      return 0
    fi
  done
  log "no free port near $PORT_BASE"
  return 1
}
FRONT=$(take_port); NEXT_PORT=$FRONT
STATS=$(take_port); NEXT_PORT=$STATS
RTMP1=$(take_port); NEXT_PORT=$RTMP1
RTMP2=$(take_port); NEXT_PORT=$RTMP2
HTTP1=$(take_port); NEXT_PORT=$HTTP1
HTTP2=$(take_port); NEXT_PORT=$HTTP2
AGENT1=$(take_port); NEXT_PORT=$AGENT1
AGENT2=$(take_port); NEXT_PORT=$AGENT2
log "ports: HAProxy $FRONT (stats $STATS), node-1 rtmp $RTMP1 http $HTTP1 agent $AGENT1, node-2 rtmp $RTMP2 http $HTTP2 agent $AGENT2"

# http_get PORT PATH: the body of a GET on 127.0.0.1:PORT (3 s bound).
http_get() { curl -sf -m 3 "http://127.0.0.1:$1$2" 2>/dev/null; }

# wait_until SECONDS CMD...: runs CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_until() {
  local n=$(($1 * 5))
  shift
  for _ in $(seq "$n"); do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}

# --- one step ----------------------------------------------------------------------------------
# start_node I RTMP HTTP AGENT: shardcast node I on CPU 0; its pid is appended to PIDS.
start_node() {
  local conf="$WORK/node-$1.toml"
  cat >"$conf" <<EOF
[server]
listen = "127.0.0.1:$2"
shards = 1
# Players come through HAProxy with a PROXY v2 header; the publisher connects straight.
proxy_protocol = "optional"
max_connections = 10000

[rtmp]
mw_latency_ms = 100

[http]
enabled = true
listen = "127.0.0.1:$3"

[lb]
trusted_proxies = ["127.0.0.3"]
agent_listen = "127.0.0.1:$4"
max_egress_mbps = $EGRESS
EOF
  RUST_LOG=warn taskset -c 0 "$SERVER_BIN" -c "$conf" 2>>"$WORK/node-$1.log" &
  PIDS+=($!)
}

# start_haproxy MODE: HAProxy on CPU 0 in front of both nodes; leastconn, plus agent checks in
# agent mode. Its pid is appended to PIDS and kept in HAP_PID.
start_haproxy() {
  local agent1="" agent2="" maxconn nofile
  if [ "$1" = agent ]; then
    agent1="agent-check agent-port $AGENT1 agent-inter $AGENT_INTER"
    agent2="agent-check agent-port $AGENT2 agent-inter $AGENT_INTER"
  fi
  # Two descriptors per proxied connection, within the open-files limit.
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=65536
  maxconn=$(((nofile - 200) / 2))
  ((maxconn > 10000)) && maxconn=10000
  cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $maxconn
    stats socket $WORK/haproxy.sock mode 600 level admin
defaults
    mode tcp
    maxconn $maxconn
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend stats
    mode http
    bind 127.0.0.1:$STATS
    stats enable
    stats uri /stats
frontend rtmp
    bind 127.0.0.1:$FRONT
    default_backend nodes
backend nodes
    balance leastconn
    source 127.0.0.3
    server node-1 127.0.0.1:$RTMP1 weight 100 check inter 1s send-proxy-v2 $agent1
    server node-2 127.0.0.1:$RTMP2 weight 100 check inter 1s send-proxy-v2 $agent2
EOF
  taskset -c 0 "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg" 2>>"$WORK/haproxy.log" &
  HAP_PID=$!
  PIDS+=("$HAP_PID")
}

# haproxy_stat SERVER FIELD: a `show stat` field of a backend server (stats page CSV).
haproxy_stat() {
  http_get "$STATS" "/stats;csv" | awk -F, -v s="$1" -v f="$2" '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "nodes" && $2 == s { print $col[f]; exit }'
}
both_up() { [ "$(haproxy_stat node-1 status)" = UP ] && [ "$(haproxy_stat node-2 status)" = UP ]; }
publishing() { http_get "$1" /api/v1/summaries | grep -q '"publishers":1'; }

# run_step MODE N: everything afresh, one ramp of N players, the summary in $WORK/runs/.
run_step() {
  local mode=$1 n=$2 bound life
  bound=$(awk -v n="$n" -v r="$RAMP" -v w="$WARMUP" -v win="$WINDOW" 'BEGIN { printf "%d", n / r + w + win + 60 }')
  life=$((bound + 30))
  start_node 1 "$RTMP1" "$HTTP1" "$AGENT1"
  local n1=${PIDS[-1]}
  start_node 2 "$RTMP2" "$HTTP2" "$AGENT2"
  local n2=${PIDS[-1]}
  wait_until 10 eval '! port_free $RTMP1 && ! port_free $RTMP2 && ! port_free $HTTP1 && ! port_free $HTTP2' ||
    { log "the nodes did not start (see $WORK/node-*.log)"; return 1; }
  start_haproxy "$mode"
  wait_until 10 both_up || { log "HAProxy does not see both nodes UP"; return 1; }
  taskset -c 1 "$BENCH_BIN" publish --url "rtmp://127.0.0.1:$RTMP1/live/s{i}" --file "$WORK/low.flv" \
    -m 1 --duration "$life" --cores 1 --threads 1 -q >"$WORK/pub-1.log" 2>&1 &
  PIDS+=($!)
  taskset -c 1 "$BENCH_BIN" publish --url "rtmp://127.0.0.1:$RTMP2/live/s{i}" --file "$WORK/high.flv" \
    -m 1 --duration "$life" --cores 1 --threads 1 -q >"$WORK/pub-2.log" 2>&1 &
  PIDS+=($!)
  wait_until 10 publishing "$HTTP1" && wait_until 10 publishing "$HTTP2" ||
    { log "the publishers are not live on both nodes"; return 1; }
  log "$mode: $n players at $RAMP/s"
  timeout "$bound" taskset -c 1 "$BENCH_BIN" play --url "rtmp://127.0.0.1:$FRONT/live/s0" \
    -n "$n" --ramp "$RAMP" --warmup "$WARMUP" --window "$WINDOW" --fps 25 --threads 1 --cores 1 \
    --node-api "http://127.0.0.1:$HTTP1" --node-api "http://127.0.0.1:$HTTP2" --node-every 2 \
    --server-pid "$n1" --server-pid "$n2" --server-pid "$HAP_PID" \
    --label "$mode" --json "$WORK/runs/$mode-$n.json" -q | sed 's/^/    /' >&2 ||
    log "$mode at $n players failed (exit $?)"
  log "HAProxy at the end: node-1 weight $(haproxy_stat node-1 weight), node-2 weight $(haproxy_stat node-2 weight)"
}

mkdir -p "$WORK/runs" bench/results
exec 9>/tmp/shardcast-load.lock
log "waiting for the load lock"
flock -w 3600 9
START=$SECONDS
for n in $STEPS; do
  for mode in $MODES; do
    if ((SECONDS - START > BUDGET)); then
      log "over the ${BUDGET}s budget: skipping $mode at $n players"
      continue
    fi
    run_step "$mode" "$n" || log "$mode at $n players: step failed"
    stop_all
  done
done
flock -u 9

shopt -s nullglob
runs=("$WORK"/runs/*.json)
if ((${#runs[@]} == 0)); then
  log "no run produced a summary"
  exit 1
fi
stamp=$(date +%Y-%m-%d-%H%M%S)
((QUICK)) && stamp="$stamp-quick"
SETUP="2 CPUs. CPU 0: node-1 and node-2 (shardcast, 1 shard each, mw_latency_ms 100, \
max_egress_mbps $EGRESS) and HAProxy $("$HAPROXY_BIN" -v | awk 'NR==1 {print $3}') (1 thread; \
balance leastconn, send-proxy-v2, source 127.0.0.3; agent mode adds agent-check every \
$AGENT_INTER). CPU 1: the players (one shardcast-bench play, 1 thread, through HAProxy) and two \
publishers (shardcast-bench publish, straight to each node). live/s0 is 2 Mbit/s 640x360 on \
node-1 and 8 Mbit/s 1280x720 on node-2. Players ramp at $RAMP/s, warm-up ${WARMUP}s, window \
${WINDOW}s; nodes, HAProxy and publishers restart for every run."
# lb-report takes the runs in mode order, so the table lists the modes as given.
ordered=()
for mode in $MODES; do
  for f in "${runs[@]}"; do
    case "$(basename "$f")" in "$mode"-*) ordered+=("$f") ;; esac
  done
done
echo "$SETUP" | fold -s -w 100
echo
"$BENCH_BIN" lb-report --setup "$SETUP" --out "bench/results/$stamp-lb.json" \
  --svg "bench/results/$stamp-lb.svg" "${ordered[@]}"
fold -s -w 100 <<'NOTE'

What this arrangement can show: on two cores the nodes share CPU 0 with HAProxy, which relays every byte and is most of that core's work, so node-2's extra cost per player is bytes, and the balancing comes from the egress term of the agent's weight (each node's own shard CPU stays low). What it cannot: per-node capacity (a core or a NIC each): both nodes run out together when CPU 0 is full. A 'gen' near 90% or more means the figures may be limited by the load generator's one core; 'other' is work on the machine outside this run (another build or load).
NOTE
log "wrote bench/results/$stamp-lb.json and bench/results/$stamp-lb.svg"
