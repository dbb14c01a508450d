#!/usr/bin/env bash
# Hook overhead: what weir's pre-commit hook adds to `git commit` next to pre-commit, prek and
# lefthook on the same ~5,000-file repository (1 and 1,000 staged files, fresh content every run;
# and weir's cache hit on identical staged content). The corpus and the tools' installation are
# the shared harness's (../shared/bench/hooks.sh, described in its README).
#
#   cargo build --release && bash bench/hooks.sh          # setup + bench (5-10 min)
#   bash bench/hooks.sh summary                           # print the last summary again
#
# Knobs are the harness's: ROOT, RUNS, WARMUP, WEIR (a binary to run instead of the copy).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/installed.sh
harness=${HARNESS:-../shared/bench/hooks.sh}
[ -f "$harness" ] || { echo "the shared harness is not at $harness (set HARNESS)" >&2; exit 2; }
exec bash "$harness" "$@"
