#!/usr/bin/env bash
# Hook overhead: what weir's pre-commit hook adds to `git commit` next to pre-commit, prek and
# lefthook on the same ~5,000-file repository (1 and 1,000 staged files, fresh content every run;
# and weir's cache hit on identical staged content). The corpus and the tools' installation are
# the shared harness's (../shared/bench/hooks.sh, described in its README).
#
#   cargo build --release && bash bench/hooks.sh          # setup + bench (10-15 min)
#   bash bench/hooks.sh summary                           # print the last summary again
#
# Knobs are the harness's: ROOT, RUNS, WARMUP, WEIR (a binary to run instead of the copy). RUNS
# defaults to 40 here, not 15: in the 1,000-file phase every tool's commits are bimodal (git
# hashes the racily clean files again, or not, depending on where a second boundary falls), and
# medians of 15 such runs swung from one run of the harness to the next (bench/README.md).
set -euo pipefail
export RUNS=${RUNS:-40}
cd "$(dirname "$0")/.."
. bench/installed.sh
harness=${HARNESS:-../shared/bench/hooks.sh}
[ -f "$harness" ] || { echo "the shared harness is not at $harness (set HARNESS)" >&2; exit 2; }
exec bash "$harness" "$@"
