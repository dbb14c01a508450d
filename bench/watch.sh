#!/usr/bin/env bash
# weir watch vs watchexec on the ~5,000-file repository of the hook harness
# (../shared/bench/hooks.sh builds it):
#   1. latency from a file write to the job's process start, over CHANGES changes, with the
#      default debounce (100 ms; watchexec is given the same);
#   2. idle CPU over IDLE seconds with nothing changing.
# Both tools run the same command, `date +%s%N >> FILE`, for a change to a `.rs` file; weir's
# job reads every `.rs` file of the repository (its key covers ~3,600 files).
#
# Usage: cargo build --release && bash bench/watch.sh
# Knobs: ROOT (default /tmp/weir-bench/watch), HOOKS_ROOT (/tmp/weir-bench/hooks), WEIR
# (./target/release/weir), WATCHEXEC (watchexec on PATH, else ~/.cargo/bin/watchexec),
# CHANGES (50), IDLE (60). Installs watchexec with `cargo install watchexec-cli` if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$PWD
ROOT=${ROOT:-/tmp/weir-bench/watch}
HOOKS_ROOT=${HOOKS_ROOT:-/tmp/weir-bench/hooks}
WEIR=${WEIR:-$HERE/target/release/weir}
CHANGES=${CHANGES:-50}
IDLE=${IDLE:-60}
DEBOUNCE_MS=100

[ -x "$WEIR" ] || { echo "build weir first: cargo build --release" >&2; exit 1; }
WATCHEXEC=${WATCHEXEC:-$(command -v watchexec || echo "$HOME/.cargo/bin/watchexec")}
if [ ! -x "$WATCHEXEC" ]; then
  cargo install --locked watchexec-cli
  WATCHEXEC=$HOME/.cargo/bin/watchexec
fi
if [ ! -d "$HOOKS_ROOT/repo/.git" ]; then
  ROOT=$HOOKS_ROOT bash "$HERE/../shared/bench/hooks.sh" setup
fi

mkdir -p "$ROOT/results"
REPO=$ROOT/repo
rm -rf "$REPO"
git clone -q "$HOOKS_ROOT/repo" "$REPO"
TARGET=$(cd "$REPO" && git ls-files '*.rs' | awk 'NR == 1')
echo "repository: $(cd "$REPO" && git ls-files | wc -l) files; changing $TARGET"

cat > "$REPO/.pipeline.toml" <<EOF
[env]
STARTS = "$ROOT/starts-weir"

[jobs.stamp]
on = ["watch"]
inputs = ["**/*.rs"]
cache = false
run = "date +%s%N >> \$STARTS"
EOF
(cd "$REPO" && git add .pipeline.toml && git -c user.name=bench -c user.email=bench@localhost \
  commit -q --no-verify -m "weir pipeline")

# measure NAME COMMAND...: starts the watcher, measures latency and idle CPU, stops it.
measure() {
  local name=$1; shift
  local starts=$ROOT/starts-$name
  rm -f "$starts"; touch "$starts"
  (cd "$REPO" && exec "$@" >"$ROOT/results/$name.log" 2>&1) &
  local pid=$!
  sleep 3
  python3 - "$REPO/$TARGET" "$starts" "$CHANGES" "$ROOT/results/$name-latency.txt" <<'PY'
import os, sys, time
target, starts, changes, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
original = open(target, "rb").read()
def count():
    with open(starts) as f:
        return f.read().split()
# The watcher's first run (weir runs its jobs at start) settles before measuring.
time.sleep(1)
latencies = []
try:
    for i in range(changes):
        before = len(count())
        t0 = time.time_ns()
        with open(target, "wb") as f:
            f.write(original + b"// weir bench %d %d\n" % (i, t0))
        deadline = time.time() + 10
        while len(count()) <= before:
            if time.time() > deadline:
                sys.exit("no run started within 10 s of a change")
            time.sleep(0.0005)
        started = int(count()[before])
        latencies.append((started - t0) / 1e6)
        time.sleep(0.3)
finally:
    with open(target, "wb") as f:
        f.write(original)
with open(out, "w") as f:
    f.write("\n".join("%.2f" % l for l in latencies) + "\n")
PY
  sleep 2
  local ticks=$(getconf CLK_TCK)
  local before after
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep "$IDLE"
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 -c "print('%.3f' % (($after - $before) / $ticks / $IDLE * 100))" > "$ROOT/results/$name-idle.txt"
}

measure weir "$WEIR" watch
measure watchexec "$WATCHEXEC" --postpone --debounce ${DEBOUNCE_MS}ms --exts rs --shell=none \
  -- sh -c "date +%s%N >> $ROOT/starts-watchexec"

python3 - "$ROOT/results" "$DEBOUNCE_MS" <<'PY' | tee "$ROOT/results/summary.md"
import statistics, sys
res, debounce = sys.argv[1], int(sys.argv[2])
def lat(name):
    return [float(l) for l in open(f"{res}/{name}-latency.txt") if l.strip()]
def idle(name):
    return float(open(f"{res}/{name}-idle.txt").read())
w, x = lat("weir"), lat("watchexec")
mw, mx = statistics.median(w), statistics.median(x)
q = lambda v, p: sorted(v)[min(len(v) - 1, int(len(v) * p))]
print(f"| tool | changes | median ms | p10 ms | p90 ms | idle CPU (% of a core) |")
print(f"|---|---:|---:|---:|---:|---:|")
for name, v in (("weir watch", w), ("watchexec", x)):
    key = "weir" if name == "weir watch" else "watchexec"
    print(f"| {name} | {len(v)} | {statistics.median(v):.1f} | {q(v, .1):.1f} | {q(v, .9):.1f} | {idle(key):.3f} |")
print()
print(f"weir/watchexec median latency: {mw / mx:.2f}x")
goal = debounce + 20
print(f"latency goal (median <= debounce + 20 = {goal} ms): {'MET' if mw <= goal else 'NOT MET'} ({mw:.1f} ms)")
print(f"idle goal (<= 1% of a core): {'MET' if idle('weir') <= 1 else 'NOT MET'} ({idle('weir'):.3f}%)")
PY
