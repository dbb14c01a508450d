#!/usr/bin/env bash
# Scheduler overhead: 500 trivial jobs (`true`) in a wide DAG, `weir run -j 2`, against
# `xargs -P 2 -n 1 sh -c` over the same 500 commands, in one hyperfine run. The jobs opt out of
# the cache (`cache = false`) so that every run runs all 500.
#
#   cargo build --release && bash bench/scheduler.sh
#
# Knobs: N (jobs, 500), WIDTH (jobs per level, 100), RUNS (20), WARMUP (3), ROOT (/tmp/weir-bench/scheduler),
# WEIR (./target/release/weir).
set -euo pipefail

N=${N:-500}
WIDTH=${WIDTH:-100}
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
ROOT=${ROOT:-/tmp/weir-bench/scheduler}
WEIR=$(realpath "${WEIR:-./target/release/weir}")

command -v hyperfine >/dev/null || { echo "hyperfine is needed (apt-get install hyperfine)" >&2; exit 2; }
[ -x "$WEIR" ] || { echo "no weir binary at $WEIR: run cargo build --release" >&2; exit 2; }

rm -rf "$ROOT" && mkdir -p "$ROOT/repo" "$ROOT/results"
cd "$ROOT/repo"
git init -q -b main
{
  # Levels of WIDTH jobs; each job needs the job above it in the previous level.
  for ((i = 0; i < N; i++)); do
    printf '[jobs.j%03d]\nrun = "true"\ncache = false\n' "$i"
    if ((i >= WIDTH)); then printf 'needs = ["j%03d"]\n' $((i - WIDTH)); fi
    printf '\n'
  done
} > .pipeline.toml
for ((i = 0; i < N; i++)); do echo true; done > "$ROOT/commands"
"$WEIR" validate
git add .pipeline.toml && git -c user.name=bench -c user.email=bench@localhost commit -qm pipeline

hyperfine --runs "$RUNS" --warmup "$WARMUP" --export-json "$ROOT/results/scheduler.json" \
  --export-markdown "$ROOT/results/scheduler.md" \
  -n "weir run -j 2" "$WEIR run -j 2 >/dev/null 2>&1" \
  -n "xargs -P 2" "xargs -P 2 -n 1 sh -c < $ROOT/commands"

python3 - "$ROOT/results/scheduler.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
weir, xargs = results["weir run -j 2"]["median"], results["xargs -P 2"]["median"]
print(f"median: weir {weir*1000:.1f} ms, xargs {xargs*1000:.1f} ms, ratio {weir/xargs:.2f}x (goal <= 1.5x)")
PY

peak=$(/usr/bin/time -f "%M" -o "$ROOT/results/peak" "$WEIR" run -j 2 >/dev/null 2>&1; cat "$ROOT/results/peak")
echo "weir peak RSS: $((peak / 1024)) MiB (${peak} KiB; goal <= 30 MiB)"
