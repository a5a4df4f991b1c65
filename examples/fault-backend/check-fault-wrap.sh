#!/usr/bin/env bash
# fwx tests - the fault-injecting wrapper built out of tree against an installed fwx, and the
# proxy backend driven through it (proxy_faults.c).
#
# usage: check-fault-wrap.sh BUILD_DIR
#
# 1. meson install --no-rebuild --destdir TMP (no root needed), as tests/install does;
# 2. make -C this folder with O=TMP/obj and only `pkg-config fwx` from the installed fwx.pc:
#    the wrapper and the test include <fwx/...> and nothing of the source tree;
# 3. checks that proxy_faults resolves libfwx from TMP, then runs it.
# Exit 0 on success, 77 (meson: skipped) when a tool is missing or loopback cannot stand for
# three hosts, 1 on failure.
# SPDX-License-Identifier: MIT
set -u

SKIP=77
fail() { echo "check-fault-wrap: FAIL: $*" >&2; exit 1; }
skip() { echo "check-fault-wrap: SKIP: $*" >&2; exit $SKIP; }

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd) || fail "no build directory $1"
src=${BASH_SOURCE[0]}
case $src in */*) here=$(cd "${src%/*}" && pwd) ;; *) here=$PWD ;; esac

command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"
command -v make >/dev/null 2>&1 || skip "make is not installed"
MESON=${MESON:-meson}
command -v "$MESON" >/dev/null 2>&1 || skip "meson is not on PATH"
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || skip "no C compiler ($CC)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fwx-fault-wrap-XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
mkdir -p "$tmp/obj"

echo "check-fault-wrap: meson install -C $build --no-rebuild --destdir $dest"
if ! "$MESON" install -C "$build" --no-rebuild --destdir "$dest" >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log" >&2
    fail "meson install failed"
fi
pc=$(find "$dest" -name fwx.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "fwx.pc was not installed"
# The .pc holds the target's absolute paths: the sysroot maps its -I and -L into the DESTDIR.
export PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_SYSROOT_DIR=$dest
libdir=$(pkg-config --variable=libdir fwx) || fail "pkg-config cannot read $pc"
case $libdir in "$dest"/*) ;; *) libdir=$dest$libdir ;; esac
[ -d "$libdir" ] || fail "the installed libdir $libdir is missing"

# The build's sanitizers must be linked into the program too, or the installed library
# cannot be loaded.
san=$("$MESON" introspect --buildoptions "$build" 2>/dev/null |
      tr '{' '\n' | sed -n 's/.*"name": *"b_sanitize".*"value": *"\([^"]*\)".*/\1/p' | head -n 1)
sanflags=""
if [ -n "$san" ] && [ "$san" != "none" ]; then
    sanflags="-fsanitize=$san"
fi

echo "check-fault-wrap: make -C $here O=$tmp/obj (pkg-config: $(pkg-config --cflags --libs fwx))"
if ! make -C "$here" O="$tmp/obj" CC="$CC" CFLAGS="-O1 -g $sanflags" LDFLAGS="$sanflags" >"$tmp/make.log" 2>&1; then
    cat "$tmp/make.log" >&2
    fail "the wrapper or proxy_faults.c does not build against the installed fwx"
fi
# No path into the source tree's headers or libraries: only the installed ones.
if grep -E -- "-I[^ ]*(/include|/lib)( |$)" "$tmp/make.log" | grep -v -- "-I$dest" | grep -q .; then
    cat "$tmp/make.log" >&2
    fail "the build used headers outside $dest"
fi
if ! LD_LIBRARY_PATH="$libdir" ldd "$tmp/obj/proxy_faults" | grep -q "$libdir/libfwx.so"; then
    LD_LIBRARY_PATH="$libdir" ldd "$tmp/obj/proxy_faults" >&2
    fail "proxy_faults does not resolve libfwx from $libdir"
fi

echo "check-fault-wrap: running proxy_faults"
LD_LIBRARY_PATH="$libdir" "$tmp/obj/proxy_faults"
rc=$?
[ $rc -eq $SKIP ] && skip "proxy_faults cannot run here"
[ $rc -eq 0 ] || fail "proxy_faults exited with $rc"
echo "check-fault-wrap: ok"
exit 0
