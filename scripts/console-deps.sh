#!/usr/bin/env bash
# Installs the web console's player library, mpegts.js (HTTP-FLV in the browser through Media
# Source Extensions), from the npm registry into www/, the default http.static_dir.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-www}"
if [ -s "$dest/mpegts.js" ]; then
  echo "console-deps: $dest/mpegts.js already there"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --silent --no-audit --no-fund --no-save mpegts.js@1 >/dev/null)
mkdir -p "$dest"
cp "$tmp/node_modules/mpegts.js/dist/mpegts.js" "$dest/mpegts.js"
echo "console-deps: installed $dest/mpegts.js ($(wc -c <"$dest/mpegts.js") bytes)"
