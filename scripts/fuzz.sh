#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a fixed time each and reports what they did.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 600 s each, every target)
#
# - Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is missing.
# - Only stable Rust is needed: cargo-fuzz's nightly flags (-Zsanitizer, sancov) are unlocked
#   with RUSTC_BOOTSTRAP=1 for the fuzz crate's build only. AddressSanitizer works that way;
#   FUZZ_SANITIZER=none (or a failing ASan build, which falls back to none) builds without it.
# - The corpus grows in fuzz/corpus/<target> (gitignored); the committed seeds in
#   fuzz/seeds/<target> are read as a second corpus directory and never written.
#   Regenerate the seeds with: cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
# - Prints a table (target, seconds, execs, exec/s, cov, ft, corpus, crashes) and writes the same
#   as JSON to fuzz/results/<date>.json. Full libFuzzer logs go to fuzz/logs/.
# - Exits 1 if any target crashed (naming the crash file), 2 on a build or setup failure.
#
# Environment: FUZZ_SANITIZER (address|none, default address), FUZZ_RUN_GRACE (extra
# seconds each run may take beyond SECONDS before it is killed, default 180),
# FUZZ_BUILD_TIMEOUT (default 3600 s), FUZZ_INPUT_TIMEOUT (per-input hang limit, default 10 s).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ALL_TARGETS=(handshake chunk_decoder amf0 session http_head)
SECONDS_EACH=${1:-600}
shift $(($# > 0 ? 1 : 0))
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL_TARGETS[@]}")

if ! [[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || ((SECONDS_EACH < 1)); then
  echo "usage: $0 [SECONDS] [TARGET...]   targets: ${ALL_TARGETS[*]}" >&2
  exit 2
fi
for t in "${TARGETS[@]}"; do
  if [[ ! -f "fuzz/fuzz_targets/$t.rs" ]]; then
    echo "unknown target '$t' (have: ${ALL_TARGETS[*]})" >&2
    exit 2
  fi
done

GRACE=${FUZZ_RUN_GRACE:-180}
BUILD_TIMEOUT=${FUZZ_BUILD_TIMEOUT:-3600}
INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-10}
SANITIZER=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

# Longest input libFuzzer may generate, per target: room for a whole handshake plus chunks, and
# for HTTP heads past the 8192-byte limit.
max_len() {
  case "$1" in
    handshake) echo 8192 ;;
    chunk_decoder | session) echo 16384 ;;
    http_head) echo 10000 ;;
    *) echo 4096 ;;
  esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  if ! timeout 1800 cargo install cargo-fuzz --locked; then
    echo "cargo install cargo-fuzz failed" >&2
    exit 2
  fi
fi

HOST=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR="$ROOT/fuzz/target/$HOST/release"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p fuzz/results fuzz/logs
BUILD_LOG="fuzz/logs/$STAMP-build.log"
build() {
  timeout --kill-after=30 "$BUILD_TIMEOUT" \
    cargo fuzz build --sanitizer "$1" --target "$HOST" 2>&1 | tee -a "$BUILD_LOG"
}
echo "building fuzz targets (sanitizer: $SANITIZER, log: $BUILD_LOG)"
if ! build "$SANITIZER"; then
  # Fall back only when the sanitizer itself is the problem, not the code.
  if [[ "$SANITIZER" != none ]] && grep -qiE 'sanitizer|asan|librustc-[a-z]+_rt' "$BUILD_LOG" &&
    ! grep -qE '^error\[E[0-9]+\]' "$BUILD_LOG"; then
    echo "WARNING: build with --sanitizer $SANITIZER failed; retrying with --sanitizer none" >&2
    SANITIZER=none
    build none || { echo "cargo fuzz build failed (see $BUILD_LOG)" >&2; exit 2; }
  else
    echo "cargo fuzz build failed (see $BUILD_LOG)" >&2
    exit 2
  fi
fi

for t in "${TARGETS[@]}"; do
  [[ -x "$BIN_DIR/$t" ]] || { echo "missing $BIN_DIR/$t after build" >&2; exit 2; }
done

RESULT_JSON="fuzz/results/$STAMP.json"

rows=()
json_rows=()
crash_files=()
failed=0

for t in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$t"
  artifacts="fuzz/artifacts/$t"
  seeds="fuzz/seeds/$t"
  log="fuzz/logs/$STAMP-$t.log"
  mkdir -p "$corpus" "$artifacts" "$seeds"
  marker=$(mktemp)
  echo "fuzzing $t for ${SECONDS_EACH}s (log: $log)"
  start=$(date +%s)
  # The binaries built above are run directly (as `cargo fuzz run` would, same ASAN_OPTIONS),
  # so every target fuzzes the same build even if the sources change meanwhile.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} \
    timeout --kill-after=30 $((SECONDS_EACH + GRACE)) \
    "$BIN_DIR/$t" \
    -max_total_time="$SECONDS_EACH" \
    -rss_limit_mb=2048 \
    -timeout="$INPUT_TIMEOUT" \
    -max_len="$(max_len "$t")" \
    -print_final_stats=1 \
    -artifact_prefix="$ROOT/$artifacts/" \
    "$corpus" "$seeds" >"$log" 2>&1
  rc=$?
  wall=$(($(date +%s) - start))
  # Fuzzing time as libFuzzer counts it (loading the corpus is not fuzzing).
  elapsed=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$log" | tail -n 1)
  elapsed=${elapsed:-$wall}

  # Final status line ("#N DONE cov: .. ft: .. corp: files/size ..") or the last status line.
  status=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
  [[ -n "$execs" ]] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$status")
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$status" | grep -oE '[0-9]+')
  ft=$(grep -oE 'ft: [0-9]+' <<<"$status" | grep -oE '[0-9]+')
  corp=$(grep -oE 'corp: [0-9]+' <<<"$status" | grep -oE '[0-9]+')
  execs=${execs:-0}
  cov=${cov:-0}
  ft=${ft:-0}
  corp=${corp:-0}
  if [[ -z "$rate" ]]; then
    rate=$((elapsed > 0 ? execs / elapsed : execs))
  fi

  # Artifacts written by this run: crash-*, leak-*, timeout-*, oom-*, slow-unit-* excluded.
  mapfile -t new_artifacts < <(find "$artifacts" -maxdepth 1 -type f -newer "$marker" \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  rm -f "$marker"
  crashes=${#new_artifacts[@]}
  note=""
  if ((crashes > 0)); then
    failed=1
    crash_files+=("${new_artifacts[@]}")
    note="crash"
  elif ((rc == 124 || rc == 137)); then
    failed=1
    note="killed after $((SECONDS_EACH + GRACE))s"
  elif ((rc != 0)); then
    failed=1
    note="exit $rc, no artifact (see $log)"
  fi

  rows+=("$(printf '%-14s %7s %12s %9s %7s %7s %8s %8s  %s' \
    "$t" "$elapsed" "$execs" "$rate" "$cov" "$ft" "$corp" "$crashes" "$note")")
  files_json=""
  for f in "${new_artifacts[@]}"; do
    files_json+="${files_json:+, }\"$f\""
  done
  json_rows+=("$(printf '    {"target": "%s", "seconds": %d, "execs": %d, "exec_per_sec": %d, "cov": %d, "ft": %d, "corpus": %d, "crashes": %d, "crash_files": [%s], "exit_code": %d, "wall_seconds": %d, "log": "%s"}' \
    "$t" "$elapsed" "$execs" "$rate" "$cov" "$ft" "$corp" "$crashes" "$files_json" "$rc" "$wall" "$log")")
done

{
  printf '{\n  "date": "%s",\n  "seconds_per_target": %d,\n  "sanitizer": "%s",\n' \
    "$STAMP" "$SECONDS_EACH" "$SANITIZER"
  printf '  "rustc": "%s",\n  "targets": [\n' "$(rustc --version)"
  for i in "${!json_rows[@]}"; do
    sep=","
    ((i == ${#json_rows[@]} - 1)) && sep=""
    printf '%s%s\n' "${json_rows[$i]}" "$sep"
  done
  printf '  ]\n}\n'
} >"$RESULT_JSON"

echo
printf '%-14s %7s %12s %9s %7s %7s %8s %8s\n' target seconds execs exec/s cov ft corpus crashes
for r in "${rows[@]}"; do
  echo "$r"
done
echo
echo "sanitizer: $SANITIZER; results: $RESULT_JSON"

if ((${#crash_files[@]})); then
  echo
  echo "CRASHES:"
  for f in "${crash_files[@]}"; do
    target=$(basename "$(dirname "$f")")
    echo "  $f"
    echo "    reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $SANITIZER $target $f"
    echo "    minimize:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin --sanitizer $SANITIZER $target $f"
  done
fi
exit $failed
