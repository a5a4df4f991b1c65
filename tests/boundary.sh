#!/bin/sh
# The backend boundary (doc/architecture.md; include/fwx/backend.h, pump.h): every file of every
# backend under lib/backends (the user-mode data path, proxy, nft, and any added later) includes
# only public headers (<fwx/...>), the leaf util/util.h and its own folder's headers: never the
# core's (core/, objects/, policy/, policy_impl.h among them) and never another backend's
# private ones. What a backend needs of the core or of the user-mode data path goes through
# calls a backend written outside libfwx could make too; there are no exemptions.
# Usage: boundary.sh <source root>   checks <source root>/lib/backends; exit 1 naming each
#                                     file and line that crosses the boundary
#        boundary.sh --self-test     proves the check fails on a tree that crosses it
self=$0

# check <lib dir>: prints each crossing, returns 1 if there was one, 2 if nothing to check.
check() {
    cd "$1" || return 2
    files=$(find backends -name '*.[ch]' | sort)
    [ -n "$files" ] || { echo "boundary: no sources found under $1/backends"; return 2; }
    bad=0
    for f in $files; do
        dir=${f%/*}
        # Every include of a file of the tree, quoted or in angle brackets (<fwx/...> and
        # system headers are outside lib/ and pass).
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]' "$f" | while IFS= read -r line; do
            inc=$(printf '%s\n' "$line" | sed 's/.*#[[:space:]]*include[[:space:]]*["<]\([^">]*\)[">].*/\1/')
            case "$inc" in
            util/util.h | "$dir"/*) ;;
            backends/*) echo "$f:${line%%:*}: includes $inc, another backend's private header"; exit 1 ;;
            core/* | objects/* | policy/*) echo "$f:${line%%:*}: includes $inc, a header of the core"; exit 1 ;;
            */*)
                if [ -e "$inc" ]; then
                    echo "$f:${line%%:*}: includes $inc, not a public header"
                    exit 1
                fi ;;
            *)
                case "$line" in
                *'"'*) [ -f "$dir/$inc" ] || { echo "$f:${line%%:*}: includes $inc, not a file of $dir"; exit 1; } ;;
                esac ;;
            esac
        done || bad=1
    done
    if [ "$bad" -ne 0 ]; then
        echo "boundary: the files above reach past the public API; add a public call instead" \
            "(include/fwx/backend.h, host.h, pump.h)"
        return 1
    fi
    echo "boundary: $(echo "$files" | wc -l) files under lib/backends include only public headers," \
        "util/util.h and their own folder's"
    return 0
}

if [ "$1" = --self-test ]; then
    # A tree with one clean backend file, then each kind of crossing in turn: the check must
    # pass the first and fail each of the others naming the line.
    t=$(mktemp -d "${TMPDIR:-/tmp}/fwx-boundary-$$.XXXXXX") || exit 2
    trap 'rm -rf "$t"' EXIT
    mkdir -p "$t/lib/backends/a" "$t/lib/backends/b" "$t/lib/core" "$t/lib/util"
    : >"$t/lib/core/internal.h"
    : >"$t/lib/backends/b/b_impl.h"
    printf '#include <fwx/fwx.h>\n#include "util/util.h"\n#include "a_own.h"\n#include "backends/a/a_own.h"\n' \
        >"$t/lib/backends/a/a.c"
    : >"$t/lib/backends/a/a_own.h"
    out=$(check "$t/lib") || { echo "self-test: a clean tree was refused: $out"; exit 1; }
    for inc in '"core/internal.h"' '<core/internal.h>' '"policy/policy_impl.h"' '"objects/ipfilter.h"' \
        '"backends/b/b_impl.h"' '"b_impl.h"'; do
        printf '#include %s\n' "$inc" >"$t/lib/backends/a/bad.c"
        if out=$(check "$t/lib"); then
            echo "self-test: #include $inc was let through: $out"
            exit 1
        fi
        case "$out" in
        *backends/a/bad.c:1:*) ;;
        *) echo "self-test: #include $inc refused without naming backends/a/bad.c:1: $out"; exit 1 ;;
        esac
    done
    echo "boundary self-test: a clean tree passes; core, policy_impl.h, objects and another backend's headers are refused"
    exit 0
fi

root=${1:?usage: boundary.sh <source root> | --self-test}
check "$root/lib"
