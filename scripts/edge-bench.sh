#!/usr/bin/env bash
# Edge benchmarks (issue #10), loopback only, one load at a time (flock /tmp/shardcast-load.lock):
#
#  1. CPU per GB delivered: N players served by a 1-shard edge (CPU 0) that pulls the stream from
#     an origin, against the same N players served by a 1-shard server from a local publisher
#     (CPU 0). Clients (and the origin, whose load is one publisher and one player) on CPU 1.
#     Alternated local/edge, REPS times each.
#  2. Join to the first keyframe: STREAMS streams published to the origin, one player each at
#     the edge (each starts its stream's upstream: a cold join), then the same again while the
#     upstreams linger (a warm join).
#  3. Failover gap: an edge with origins [A, B]; a publisher on A and GAP_PLAYERS players on the
#     edge; A is killed and the publisher re-publishes to B; the longest gap any player saw,
#     and how much of it was the publisher's own restart.
#
#   scripts/edge-bench.sh                       # N=1000, 15 s windows, 2 reps, 50 streams
#   N=500 WINDOW=10 REPS=1 scripts/edge-bench.sh
#   KEEP=1 scripts/edge-bench.sh                # keep the logs and run summaries
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${N:-1000}
WINDOW=${WINDOW:-15}
REPS=${REPS:-2}
STREAMS=${STREAMS:-50}
GAP_PLAYERS=${GAP_PLAYERS:-20}
BITRATE=1000k

log() { printf '[edge-bench] %s\n' "$*" >&2; }
WORK=$(mktemp -d /tmp/shardcast-edge.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

command -v ffmpeg >/dev/null || { log "needs ffmpeg (apt-get install ffmpeg)"; exit 1; }
log "building release binaries"
timeout 1800 cargo build --release -q -p shardcast -p shardcast-bench
BIN="$ROOT/target/release/shardcast"
BENCH="$ROOT/target/release/shardcast-bench"

MEDIA="$WORK/media.flv"
timeout 300 ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -t 30 -c:v libx264 -preset veryfast -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize 2000k \
  -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k "$MEDIA"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}
PA=$(next_port 19450); HA=$(next_port $((PA + 1)))
PB=$(next_port $((HA + 1))); HB=$(next_port $((PB + 1)))
PE=$(next_port $((HB + 1))); HE=$(next_port $((PE + 1)))
PL=$(next_port $((HE + 1)))

# serve NAME CPUS RTMP_PORT HTTP_PORT [EXTRA]: a 1-shard server; its pid in $SERVED.
serve() {
  local conf="$WORK/$1.toml"
  printf '[server]\nlisten = "127.0.0.1:%s"\nshards = 1\n[http]\nenabled = true\nlisten = "127.0.0.1:%s"\n%s\n' \
    "$3" "$4" "${5:-}" >"$conf"
  RUST_LOG=warn taskset -c "$2" "$BIN" -c "$conf" 2>"$WORK/$1.log" &
  SERVED=$!
  PIDS+=("$SERVED")
  for _ in $(seq 100); do
    port_free "$3" || return 0
    sleep 0.1
  done
  log "$1 did not start"; cat "$WORK/$1.log" >&2; exit 1
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$3"; }

exec 9>/tmp/shardcast-load.lock
log "waiting for the load lock"
flock -w 3600 9

# --- 1. CPU per GB: local publisher vs edge upstream ------------------------------------------
fan() { # LABEL PUBLISH_URL PLAY_URL SERVER_PID
  timeout $((N / 250 + WINDOW + 60)) taskset -c 1 "$BENCH" fanout --url "$2" --play-url "$3" \
    --file "$MEDIA" -m 1 -n "$N" --ramp 250 --warmup 3 --window "$WINDOW" --cores 1 \
    --server-pid "$4" --label "$1" --json "$WORK/$1.json" -q | sed 's/^/    /' >&2
}
declare -a LOCAL EDGE
for rep in $(seq "$REPS"); do
  log "local publisher, $N players (rep $rep)"
  serve local 0 "$PL" "$(next_port $((PL + 1)))"
  L=$SERVED
  fan "local-$rep" "rtmp://127.0.0.1:$PL/live/s{i}" "rtmp://127.0.0.1:$PL/live/s{i}" "$L"
  stop "$L"
  LOCAL+=("$(json x "d['server']['cpu_s_per_gb']" "$WORK/local-$rep.json")")

  log "edge upstream, $N players (rep $rep)"
  serve origin 1 "$PA" "$HA"
  O=$SERVED
  serve edge 0 "$PE" "$HE" "[cluster]
mode = \"edge\"
origins = [\"127.0.0.1:$PA\"]"
  E=$SERVED
  fan "edge-$rep" "rtmp://127.0.0.1:$PA/live/s{i}" "rtmp://127.0.0.1:$PE/live/s{i}" "$E"
  stop "$E"; stop "$O"
  EDGE+=("$(json x "d['server']['cpu_s_per_gb']" "$WORK/edge-$rep.json")")
done

# --- 2. cold and warm joins at the edge ---------------------------------------------------------
log "joins: $STREAMS streams, one player each at the edge"
serve origin 1 "$PA" "$HA"
O=$SERVED
serve edge 0 "$PE" "$HE" "[cluster]
mode = \"edge\"
origins = [\"127.0.0.1:$PA\"]
idle_linger_ms = 30000"
E=$SERVED
timeout 120 taskset -c 1 "$BENCH" publish --url "rtmp://127.0.0.1:$PA/live/c{i}" --file "$MEDIA" \
  -m "$STREAMS" --ramp 100 --warmup 2 --window 40 --cores 1 -q >/dev/null 2>&1 &
PUB=$!
PIDS+=("$PUB")
sleep 4
for kind in cold warm; do
  timeout 60 taskset -c 1 "$BENCH" play --url "rtmp://127.0.0.1:$PE/live/c{i}" \
    --streams "$STREAMS" -n "$STREAMS" --ramp 0 --warmup 1 --window 3 --cores 1 \
    --label "join-$kind" --json "$WORK/join-$kind.json" -q >/dev/null 2>&1 || true
done
stop "$PUB"; stop "$E"; stop "$O"

# --- 3. failover gap ------------------------------------------------------------------------------
log "failover: origin A dies, the publisher moves to B"
serve origin-a 1 "$PA" "$HA"
A=$SERVED
serve origin-b 1 "$PB" "$HB"
B=$SERVED
serve edge 0 "$PE" "$HE" "[cluster]
mode = \"edge\"
origins = [\"127.0.0.1:$PA\", \"127.0.0.1:$PB\"]
backoff_initial_ms = 200
backoff_max_ms = 1000"
E=$SERVED
timeout 60 taskset -c 1 "$BENCH" publish --url "rtmp://127.0.0.1:$PA/live/fo" --file "$MEDIA" \
  --ramp 0 --warmup 1 --window 40 --cores 1 -q >/dev/null 2>&1 &
PUB=$!
PIDS+=("$PUB")
sleep 3
timeout 90 taskset -c 1 "$BENCH" play --url "rtmp://127.0.0.1:$PE/live/fo" -n "$GAP_PLAYERS" \
  --ramp 0 --warmup 2 --window 18 --cores 1 --per-player --label failover \
  --json "$WORK/failover.json" -q >/dev/null 2>&1 &
PLAY=$!
sleep 8
T0=$(date +%s.%N)
kill -KILL "$A"; stop "$PUB"
timeout 60 taskset -c 1 "$BENCH" publish --url "rtmp://127.0.0.1:$PB/live/fo" --file "$MEDIA" \
  --ramp 0 --warmup 1 --window 30 --cores 1 -q >/dev/null 2>&1 &
PUB=$!
PIDS+=("$PUB")
# The publisher's own restart: until origin B lists the stream as published.
for _ in $(seq 200); do
  if curl -sf "http://127.0.0.1:$HB/api/v1/streams" | grep -q '"publish":{"active":true'; then break; fi
  sleep 0.02
done
T1=$(date +%s.%N)
wait "$PLAY" || true
stop "$PUB"; stop "$E"; stop "$B"

# --- report ---------------------------------------------------------------------------------------
stamp=$(date +%Y-%m-%d-%H%M%S)
mkdir -p bench/results
python3 - "$WORK" "$stamp" "$N" "$T0" "$T1" "${LOCAL[*]}" "${EDGE[*]}" <<'EOF'
import json, sys, statistics
work, stamp, n, t0, t1, local, edge = sys.argv[1:8]
local = [float(x) for x in local.split()]
edge = [float(x) for x in edge.split()]
def load(name):
    try:
        return json.load(open(f"{work}/{name}.json"))
    except Exception:
        return None
cold, warm, fo = load("join-cold"), load("join-warm"), load("failover")
restart_ms = (float(t1) - float(t0)) * 1000
gaps = [p["longest_gap_ms"] for p in (fo or {}).get("per_player", [])] if fo else []
out = {
    "players": int(n),
    "cpu_s_per_gb": {"local": local, "edge": edge,
                     "ratio_edge_to_local": statistics.mean(edge) / statistics.mean(local)},
    "join_ms": {k: (v or {}).get("players", {}).get("join_ms") for k, v in (("cold", cold), ("warm", warm))},
    "failover": {"players": len(gaps), "longest_gap_ms": max(gaps) if gaps else None,
                 "publisher_restart_ms": restart_ms,
                 "kept_up": (fo or {}).get("players", {}).get("kept_up"),
                 "disconnects": (fo or {}).get("players", {}).get("disconnects")},
}
json.dump(out, open(f"bench/results/{stamp}-edge.json", "w"), indent=2)
print(f"CPU s/GB at {n} players: local {', '.join(f'{x:.2f}' for x in local)}; "
      f"edge {', '.join(f'{x:.2f}' for x in edge)}; edge/local {out['cpu_s_per_gb']['ratio_edge_to_local']:.2f}x")
for k in ("cold", "warm"):
    j = out["join_ms"][k] or {}
    print(f"{k} join to first keyframe: p50 {j.get('p50')} ms, p99 {j.get('p99')} ms ({j.get('count')} players)")
f = out["failover"]
gap = f["longest_gap_ms"]
print(f"failover: longest gap any edge player saw {gap:.0f} ms over {f['players']} players "
      f"(the publisher's own restart until origin B listed the stream: {restart_ms:.0f} ms, "
      f"polled every 20 ms); disconnects {f['disconnects']}, kept up {f['kept_up']}"
      if gap is not None else "failover: no figures")
print(f"wrote bench/results/{stamp}-edge.json")
EOF
