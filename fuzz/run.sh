#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: bash fuzz/run.sh [seconds-per-target] (default 30).
#
# Installs cargo-fuzz if missing. Works on the stable toolchain: libFuzzer's coverage
# instrumentation needs no nightly flag, only the sanitizers do, and none is used (`seqd`'s
# one unsafe block is a prefetch hint that cannot fault; `--debug-assertions` turns on
# overflow checks instead). First every input of a fixed issue (regressions/) runs 1,000
# times; then each target fuzzes a temporary copy of its checked-in seeds, so corpus/ stays
# small. Fails if an input or the fuzzer finds a crash (a panic: a failed property), a hang
# (-timeout) or runs out of memory; a new input is saved under fuzz/artifacts/<target>/ and the
# command to reproduce it is printed.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-30}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A target directory of its own: the main crate's builds use other flags, and sharing one
# would make each rebuild the other's dependencies. (.ci/run exports CARGO_TARGET_DIR.)
export CARGO_TARGET_DIR="${SEQD_FUZZ_TARGET_DIR:-$HOME/.cache/seqd-fuzz-target}"

start=$(date +%s)
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION:-0.13.2}" --locked
fi

flags=(--sanitizer none --debug-assertions)
cargo fuzz build "${flags[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

# Prints why a run failed: the panic message first (a backtrace would push it out of a tail).
report() {
  grep -A4 -E 'panicked at' "$1" | head -20 || true
  grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$1" | grep -v -E '^ +([0-9]+: | +at )' | tail -40
}

# The inputs of fixed issues first (regressions/README.md), each many times: some were races.
for dir in regressions/*/; do
  target=$(basename "$dir")
  for input in "$dir"*; do
    echo "=== regression $target/$(basename "$input") x${SEQD_FUZZ_REGRESSION_RUNS:-1000}"
    if ! cargo fuzz run "${flags[@]}" "$target" "$input" -- \
      -runs="${SEQD_FUZZ_REGRESSION_RUNS:-1000}" -timeout=60 >"$work/regression.log" 2>&1; then
      failed+=("$target/$(basename "$input")")
      report "$work/regression.log"
    fi
  done
done
for target in $(cargo fuzz list); do
  mkdir -p "$work/$target"
  cp corpus/"$target"/seed-* "$work/$target/"
  echo "=== fuzz $target for ${seconds}s ($(date +%T))"
  # -timeout: an input running this long is a hang (one should take milliseconds).
  if cargo fuzz run "${flags[@]}" "$target" "$work/$target" -- \
    -max_total_time="$seconds" -timeout=60 >"$work/$target.log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$target.log" || true
  else
    failed+=("$target")
    report "$work/$target.log"
  fi
done

echo "fuzz: $(($(date +%s) - start))s in all"
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}; inputs in $PWD/artifacts/<target>/" >&2
  echo "fuzz: reproduce: cd fuzz && cargo fuzz run ${flags[*]} <target> artifacts/<target>/<file>" >&2
  exit 1
fi
echo "fuzz: no crashes"
