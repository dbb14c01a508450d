#!/bin/sh
# weir hook shim: written by `weir install`, removed by `weir uninstall`.
# Runs the hook that was here before weir (kept as @HOOK@.weir-chained) first, then weir.
hook=@HOOK@
weir=@WEIR@
# The directory of this file, without starting `dirname`: a hook's every millisecond counts.
case $0 in
*/*) here=${0%/*} here=${here:-/} ;;
*) here=. ;;
esac
chained="$here/$hook.weir-chained"

# git may run hooks with a minimal PATH, so the binary that installed the shim comes first.
if [ ! -f "$weir" ] || [ ! -x "$weir" ]; then
    installed=$weir
    weir=$(command -v weir 2>/dev/null) || weir=
    if [ -z "$weir" ]; then
        printf 'weir: the %s hook cannot find the weir binary (was %s, and weir is not on PATH)\n' "$hook" "$installed" >&2
        printf 'help: reinstall weir and run `weir install` again, or remove this hook: rm %s\n' "$0" >&2
        if [ -e "$chained" ]; then
            printf 'help: then put the original hook back: mv %s %s\n' "$chained" "$0" >&2
        fi
        exit 1
    fi
fi

if [ -x "$chained" ]; then
    case $hook in
    pre-push | post-receive)
        # git sends ref updates on stdin and both hooks need all of it. Two descriptors opened
        # on one temp file have their own offsets; unlinking it at once leaves nothing behind,
        # even though `exec` below means no trap would ever run.
        input=$(mktemp "${TMPDIR:-/tmp}/weir-$hook.XXXXXX") || exit 1
        cat >"$input"
        exec 3<"$input" 4<"$input"
        rm -f "$input"
        "$chained" "$@" <&3 3<&- 4<&-
        status=$?
        [ "$status" -eq 0 ] || exit "$status"
        exec "$weir" hook "$hook" "$@" <&4 3<&- 4<&-
        ;;
    *)
        "$chained" "$@"
        status=$?
        [ "$status" -eq 0 ] || exit "$status"
        ;;
    esac
fi

exec "$weir" hook "$hook" "$@"
