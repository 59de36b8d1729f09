#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and end-to-end tests where real ffmpeg / ffprobe /
# rtmpdump / headless Chromium talk to the real shardcast binary over loopback. Installs the
# tools when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v rtmpdump >/dev/null 2>&1 || need+=(rtmpdump)
# The web console test (tests/e2e_http.rs) drives Debian's chromium with Node + playwright-core.
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The balancer tests (tests/e2e_lb.rs) start Debian's HAProxy themselves.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# The proxy-cluster tests (tests/e2e_proxy.rs) start Debian's Redis themselves.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The console's player library (www/mpegts.js) and the browser test's driver (playwright-core,
# which uses the system chromium and downloads no browser of its own).
bash scripts/console-deps.sh >/dev/null
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

cargo test --workspace --all-targets "$@"
