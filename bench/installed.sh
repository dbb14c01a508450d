# Sourced by bench/cache.sh and bench/hooks.sh from the project root. Unless WEIR names a
# binary, weir runs as an installed copy of the release build, as `cargo install` leaves it:
# on this machine the linker's own output file ran 0.4–1.1 ms slower per process than a fresh
# copy of the same bytes (bench/README.md). The other tools run from files their installers
# wrote.
if [ -z "${WEIR:-}" ] && [ -x target/release/weir ]; then
  installed=${TMPDIR:-/tmp}/weir-bench-bin
  mkdir -p "$installed"
  rm -f "$installed/weir"
  cp target/release/weir "$installed/weir"
  export WEIR=$installed/weir
fi
