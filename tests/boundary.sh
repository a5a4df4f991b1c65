#!/bin/sh
# The backend boundary (doc: include/fwx/pump.h, include/fwx/backend.h): the user-mode data
# path and the proxy backend include only public headers (<fwx/...>), the leaf util/util.h and
# their own folders' headers, never the core's (core/, objects/, policy/), so that everything
# they need of the core goes through calls a backend written outside libfwx could make too.
# Usage: boundary.sh <source root>. Exit 1 naming each file and line that crosses it.
root=${1:?usage: boundary.sh <source root>}
cd "$root/lib" || exit 2
# socks.c still reads the core's rules on addresses (fwx__firewall_forbidden_host and the like):
# the one file of the proxy backend left to move behind public calls.
files=$(ls backends/usermode/*.[ch] backends/proxy/*.[ch] | grep -v '^backends/proxy/socks\.c$')
[ -n "$files" ] || { echo "boundary: no sources found under $root/lib/backends"; exit 2; }
bad=0
for f in $files; do
    dir=${f%/*}
    # every quoted include: allowed are util/util.h and the file's own folder
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
        inc=$(printf '%s\n' "$line" | sed 's/.*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/')
        case "$inc" in
        util/util.h | "$dir"/*) ;;
        backends/usermode/*) [ "$dir" = backends/proxy ] || { echo "$f:${line%%:*}: includes $inc"; exit 1; } ;;
        */*) echo "$f:${line%%:*}: includes $inc, a core header"; exit 1 ;;
        *) [ -f "$dir/$inc" ] || { echo "$f:${line%%:*}: includes $inc, not a file of $dir"; exit 1; } ;;
        esac
    done || bad=1
done
if [ "$bad" -ne 0 ]; then
    echo "boundary: the files above reach into the core; add a public accessor instead (include/fwx/host.h, pump.h)"
    exit 1
fi
echo "boundary: $(echo "$files" | wc -l) files include only public headers, util/util.h and their own"
