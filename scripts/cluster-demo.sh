#!/usr/bin/env bash
# The proxy cluster on loopback, as a user would try it: Redis, two proxies sharing it, two
# origins heartbeating to both, and an edge of the origins. Prints the URLs to publish and play
# and stops everything on Ctrl-C. Logs go to $DEMO_DIR (default: a temp dir).
#   scripts/cluster-demo.sh            # uses target/release/shardcast (built when missing)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)"; exit 1; }
bin=target/release/shardcast
[ -x "$bin" ] || cargo build --release
dir=${DEMO_DIR:-$(mktemp -d -t shardcast-demo.XXXXXX)}
pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "logs kept in $dir"
}
trap stop INT TERM EXIT

redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no >"$dir/redis.log" 2>&1 &
pids+=($!)
for c in proxy proxy-2 origin-a origin-b edge; do
  RUST_LOG=info "$bin" -c "conf/cluster/$c.toml" 2>"$dir/$c.log" &
  pids+=($!)
done
sleep 4   # the origins' first heartbeats
echo "registered origins (proxy 1):"
curl -s http://127.0.0.1:12025/api/v1/proxy/origins; echo
cat <<TXT

  publish (either proxy):  ffmpeg -re -i input.flv -c copy -f flv rtmp://127.0.0.1:11935/live/s
  play (either proxy):     ffplay rtmp://127.0.0.1:11936/live/s
  play (the edge):         ffplay rtmp://127.0.0.1:19352/live/s
  who has what:            curl http://127.0.0.1:12026/api/v1/proxy/streams
  registry figures:        curl -s http://127.0.0.1:18080/metrics | grep registry
  Redis:                   redis-cli keys 'srs-proxy-*'; redis-cli zrange shardcast-proxy-origins 0 -1 withscores

logs in $dir; Ctrl-C stops everything.
TXT
wait
