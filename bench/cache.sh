#!/usr/bin/env bash
# Cache benchmark: weir against Turborepo and moon on the same generated 50-package workspace
# (fully cached no-op, restore of deleted outputs, one leaf edit), with `git status`, `cp -r` and
# the plain build as lower bounds. The workload and the tools' installation are the shared
# harness's (../shared/bench/cache.sh, described in its README); this runs it from the project
# root against an installed copy of the release build (bench/installed.sh).
#
#   cargo build --release && bash bench/cache.sh          # setup + bench (~10 min at N=50)
#   bash bench/cache.sh summary                           # print the last summary again
#
# Knobs are the harness's: ROOT, N, RUNS, WARMUP, WEIR (a binary to run instead of the copy),
# TURBO_VERSION, MOON_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/installed.sh
harness=${HARNESS:-../shared/bench/cache.sh}
[ -f "$harness" ] || { echo "the shared harness is not at $harness (set HARNESS)" >&2; exit 2; }
exec bash "$harness" "$@"
