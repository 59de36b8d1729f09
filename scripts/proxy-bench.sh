#!/usr/bin/env bash
# Proxy-tier relay benchmark (issue #11), loopback only, one load at a time
# (flock /tmp/shardcast-load.lock):
#
# One origin (1 shard, CPU 1) and, in turn, two relays in front of it, each alone on CPU 0:
#   proxy    a shardcast proxy (1 shard, [cluster] mode = "proxy", registry memory), the origin
#            registering with it ([cluster.register], 1 s heartbeats), splicing both legs
#            (the publisher's towards the origin and the players');
#   rechunk  the same proxy with `relay_splice = false`: every message of both legs decoded and
#            re-chunked (the relay before splicing; the A/B of the splice with one binary);
#   haproxy  Debian's HAProxy 2.6 in TCP mode (nbthread 1, one backend = the origin).
# The same fan-out load each time from one shardcast-bench on CPU 1: 1 publisher x N players
# (1 Mbit/s H.264 + AAC, 2 s GOP), players through the relay, --server-pid = the relay, so the
# CPU per GB is the relay's own. Relays alternate REPS times per N. The publisher goes through the
# relay too: the proxy can only route a play of a stream it placed (a stream published straight
# to the origin is unmapped, NetStream.Play.StreamNotFound), and HAProxy gets the same path. A
# last run per N has publisher and players straight at the origin (direct): the baseline
# latency. "added p99" = relay p99 - direct p99, i.e. both relayed legs (publish + play).
#
# Writes bench/results/<date>-proxy.json and prints a table (relay CPU s/GB, proxy/haproxy ratio,
# kept-up, latency p50/p99, added p99 vs direct).
#
#   scripts/proxy-bench.sh                         # N = 200 500, 12 s windows, 2 reps
#   PLAYERS="100" WINDOW=5 REPS=1 scripts/proxy-bench.sh
#   KEEP=1 scripts/proxy-bench.sh                  # keep the logs and run summaries
#   RELAYS="proxy haproxy" scripts/proxy-bench.sh  # a subset of the relays (default all three)
#   MERGE_MS=0 scripts/proxy-bench.sh              # origin and proxies at mw/mr_latency_ms = 0
#                                                  # (default: the shipped 100 ms)
#   PERF=1 scripts/proxy-bench.sh                  # perf record -g each proxy run's window
#                                                  # (perf.data per run, kept with KEEP=1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PLAYERS=${PLAYERS:-"200 500"}
WINDOW=${WINDOW:-12}
WARMUP=${WARMUP:-3}
REPS=${REPS:-2}
RELAYS=${RELAYS:-"proxy rechunk haproxy"}
BITRATE=1000k

log() { printf '[proxy-bench] %s\n' "$*" >&2; }
WORK=$(mktemp -d /tmp/shardcast-proxy-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for t in ffmpeg haproxy taskset curl python3; do
  command -v "$t" >/dev/null || { log "needs $t (apt-get install $t)"; exit 1; }
done
log "building release binaries"
timeout 1800 cargo build --release -q -p shardcast -p shardcast-bench
BIN="$ROOT/target/release/shardcast"
BENCH="$ROOT/target/release/shardcast-bench"
[ -n "${CARGO_TARGET_DIR:-}" ] && BIN="$CARGO_TARGET_DIR/release/shardcast" && BENCH="$CARGO_TARGET_DIR/release/shardcast-bench"

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
PO=$(next_port 19550); HO=$(next_port $((PO + 1)))    # origin RTMP, HTTP
PP=$(next_port $((HO + 1))); HP=$(next_port $((PP + 1))); AP=$(next_port $((HP + 1)))  # proxy
PH=$(next_port $((AP + 1)))                           # haproxy frontend

wait_port() { # NAME PID PORT
  for _ in $(seq 100); do
    port_free "$3" || return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  log "$1 did not start"; cat "$WORK/$1.log" >&2 2>/dev/null || true; exit 1
}
stop() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# The origin: 1 shard on CPU 1, heartbeating every second to the proxy's API (a proxy that is
# not running costs only the failed POST).
cat >"$WORK/origin.toml" <<EOF
[server]
listen = "127.0.0.1:$PO"
shards = 1
[http]
enabled = true
listen = "127.0.0.1:$HO"
[cluster]
mode = "origin"
[cluster.register]
urls = ["http://127.0.0.1:$AP/api/v1/srs/register"]
interval_ms = 1000
EOF
cat >"$WORK/proxy.toml" <<EOF
[server]
listen = "127.0.0.1:$PP"
shards = 1
[http]
enabled = true
listen = "127.0.0.1:$HP"
[cluster]
mode = "proxy"
[proxy]
api_listen = "127.0.0.1:$AP"
registry = "memory"
heartbeat_interval_ms = 1000
EOF
if [ -n "${MERGE_MS:-}" ]; then
  # Origin and proxies at another merged-write/read window than the shipped 100 ms.
  for f in origin proxy; do
    printf '[rtmp]\nmw_latency_ms = %s\nmr_latency_ms = %s\n' "$MERGE_MS" "$MERGE_MS" >>"$WORK/$f.toml"
  done
fi
sed 's/^heartbeat_interval_ms = 1000$/&\nrelay_splice = false/' "$WORK/proxy.toml" >"$WORK/rechunk.toml"
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend rtmp
  bind 127.0.0.1:$PH
  default_backend origin
backend origin
  server origin 127.0.0.1:$PO
EOF

exec 9>/tmp/shardcast-load.lock
log "waiting for the load lock"
flock -w 3600 9

RUST_LOG=warn taskset -c 1 "$BIN" -c "$WORK/origin.toml" 2>"$WORK/origin.log" &
ORIGIN=$!
PIDS+=("$ORIGIN")
wait_port origin "$ORIGIN" "$PO"

RELAY=""
start_relay() { # proxy|rechunk|haproxy -> $RELAY (pid), $RELAY_PORT
  case "$1" in
    proxy|rechunk)
      RUST_LOG=warn taskset -c 0 "$BIN" -c "$WORK/$1.toml" 2>"$WORK/$1.log" &
      RELAY=$!; RELAY_PORT=$PP
      PIDS+=("$RELAY")
      wait_port proxy "$RELAY" "$PP"
      # Until the origin's heartbeat has made it a live origin of this proxy.
      for _ in $(seq 150); do
        curl -sf "http://127.0.0.1:$AP/api/v1/proxy/origins" | grep -q '"alive":true' && return 0
        sleep 0.1
      done
      log "the origin did not register with the proxy"; exit 1 ;;
    haproxy)
      taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
      RELAY=$!; RELAY_PORT=$PH
      PIDS+=("$RELAY")
      wait_port haproxy "$RELAY" "$PH" ;;
  esac
}

fan() { # LABEL N PUBLISH_PORT PLAY_PORT SERVER_PID
  log "$1: $2 players"
  local perf=""
  if [ -n "${PERF:-}" ] && [ "${1%%-*}" != direct ] && [ "${1%%-*}" != haproxy ]; then
    # The measured window only: after the ramp and the warm-up.
    ( sleep $(($2 / 250 + WARMUP + 2))
      exec perf record -g -F 999 -p "$5" -o "$WORK/perf-$1-$2.data" -- sleep "$WINDOW" \
        >/dev/null 2>&1 ) &
    perf=$!
  fi
  timeout $(($2 / 250 + WARMUP + WINDOW + 60)) taskset -c 1 "$BENCH" fanout \
    --url "rtmp://127.0.0.1:$3/live/s{i}" --play-url "rtmp://127.0.0.1:$4/live/s{i}" \
    --file "$MEDIA" -m 1 -n "$2" --ramp 250 --warmup "$WARMUP" --window "$WINDOW" --cores 1 \
    --server-pid "$5" --label "$1" --json "$WORK/runs/$1-$2.json" -q | sed 's/^/    /' >&2 \
    || log "$1 at $2 players failed (exit $?)"
  if [ -n "$perf" ]; then
    wait "$perf" 2>/dev/null || true
    perf report -i "$WORK/perf-$1-$2.data" --no-children --percent-limit 1.5 --stdio \
      2>/dev/null | grep -E '^ +[0-9]' | head -25 >"$WORK/perf-$1-$2.txt" || true
    log "perf top symbols of $1 at $2 players: $WORK/perf-$1-$2.txt"
  fi
}

mkdir -p "$WORK/runs"
for n in $PLAYERS; do
  for rep in $(seq "$REPS"); do
    for relay in $RELAYS; do
      start_relay "$relay"
      fan "$relay-$rep" "$n" "$RELAY_PORT" "$RELAY_PORT" "$RELAY"
      stop "$RELAY"
    done
  done
  # Baseline: publisher and players straight at the origin (--server-pid = the origin).
  fan "direct" "$n" "$PO" "$PO" "$ORIGIN"
done
stop "$ORIGIN"
flock -u 9

stamp=$(date +%Y-%m-%d-%H%M%S)
mkdir -p bench/results
python3 - "$WORK/runs" "$stamp" "$PLAYERS" "$WINDOW" "$REPS" <<'EOF'
import glob, json, os, statistics, sys
runs, stamp, players, window, reps = sys.argv[1:6]
def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d
rows = {}
for f in sorted(glob.glob(f"{runs}/*.json")):
    d = json.load(open(f))
    label, n = os.path.basename(f)[:-5].rsplit("-", 1)
    relay = label.split("-")[0]
    rows.setdefault(int(n), {}).setdefault(relay, []).append({
        "label": label,
        "cpu_s_per_gb": get(d, "server", "cpu_s_per_gb"),
        "kept_up_fraction": get(d, "players", "kept_up_fraction"),
        "latency_p50_ms": get(d, "latency", "p50_ms"),
        "latency_p99_ms": get(d, "latency", "p99_ms"),
        "generator": get(d, "generator"),
        "host": get(d, "host"),
    })
def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None
out = {"players": [int(x) for x in players.split()], "window_s": int(window), "reps": int(reps),
       "setup": "origin 1 shard on CPU 1 with the clients; relay alone on CPU 0; publisher and "
                "players through the relay; direct = both straight at the origin",
       "points": []}
hdr = f"{'N':>5} {'relay':<8} {'CPU s/GB (runs)':<22} {'mean':>6} {'vs haproxy':>10} {'kept up':>8} {'lat p50':>8} {'lat p99':>8} {'added p99':>9} {'other cores':>11}"
print(hdr); print("-" * len(hdr))
fmt = lambda x, p=2: "-" if x is None else f"{x:.{p}f}"
for n in sorted(rows):
    r = rows[n]
    direct_p99 = mean(x["latency_p99_ms"] for x in r.get("direct", []))
    hap = mean(x["cpu_s_per_gb"] for x in r.get("haproxy", []))
    for relay in ("proxy", "rechunk", "haproxy", "direct"):
        xs = r.get(relay, [])
        if not xs:
            continue
        cpu = mean(x["cpu_s_per_gb"] for x in xs)
        p99 = mean(x["latency_p99_ms"] for x in xs)
        pt = {"players": n, "relay": relay, "runs": xs,
              "cpu_s_per_gb": cpu,
              "ratio_to_haproxy": cpu / hap if cpu and hap and relay != "direct" else None,
              "kept_up_fraction": min(x["kept_up_fraction"] or 0 for x in xs),
              "latency_p50_ms": mean(x["latency_p50_ms"] for x in xs),
              "latency_p99_ms": p99,
              "added_p99_ms": p99 - direct_p99 if p99 is not None and direct_p99 is not None and relay != "direct" else None}
        out["points"].append(pt)
        runs_s = ", ".join(fmt(x["cpu_s_per_gb"]) for x in xs)
        if relay == "direct":
            runs_s = f"(origin) {runs_s}"
        print(f"{n:>5} {relay:<8} {runs_s:<22} {fmt(cpu):>6} {fmt(pt['ratio_to_haproxy']) + ('x' if pt['ratio_to_haproxy'] else ''):>10} "
              f"{pt['kept_up_fraction']*100:>7.1f}% {fmt(pt['latency_p50_ms'],1):>8} {fmt(p99,1):>8} {fmt(pt['added_p99_ms'],1):>9} {fmt(max((get(x, 'host', 'other_cores') or 0) for x in xs)):>11}")
json.dump(out, open(f"bench/results/{stamp}-proxy.json", "w"), indent=2)
print(f"targets: proxy CPU/GB <= 1.5x haproxy, added p99 <= 2 ms (latencies in ms, kept up = the worst run; other cores = busy cores outside relay and generator, the most of any run: the origin in relay runs, anything else on the machine)")
print(f"wrote bench/results/{stamp}-proxy.json")
EOF
