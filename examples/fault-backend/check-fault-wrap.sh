#!/usr/bin/env bash
# fwx tests - the fault-injecting wrapper built out of tree against an installed fwx, and the
# proxy backend driven through it (proxy_faults.c).
#
# usage: check-fault-wrap.sh BUILD_DIR
#
# 1. meson install --no-rebuild --destdir TMP (no root needed), as tests/install does;
# 2. make -C this folder with O=TMP/obj and only `pkg-config fwx` from the installed fwx.pc:
#    the wrapper and the test include <fwx/...> and nothing of the source tree;
# 3. checks that proxy_faults resolves libfwx from TMP, then runs it on loopback, and (as root,
#    with iproute2) again with the client and the server in namespaces of their own, the
#    gateway between them with an address on each side and IP forwarding off.
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
tag=check-fault-wrap
# The install into a DESTDIR and the sanitizer flags, shared with fwx's own install test.
# shellcheck source=SCRIPTDIR/../../tests/install/destdir.sh
. "$here/../../tests/install/destdir.sh"

command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"
command -v make >/dev/null 2>&1 || skip "make is not installed"
MESON=${MESON:-meson}
command -v "$MESON" >/dev/null 2>&1 || skip "meson is not on PATH"
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || skip "no C compiler ($CC)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fwx-fault-wrap-XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/obj"

install_to_destdir
# The .pc holds the target's absolute paths: the sysroot maps its -I and -L into the DESTDIR.
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_SYSROOT_DIR=$dest
libdir=$(pkg-config --variable=libdir fwx) || fail "pkg-config cannot read $pc"
case $libdir in "$dest"/*) ;; *) libdir=$dest$libdir ;; esac
[ -d "$libdir" ] || fail "the installed libdir $libdir is missing"

# The build's sanitizers must be linked into the program too, or the installed library
# cannot be loaded.
build_sanflags

echo "check-fault-wrap: make -C $here O=$tmp/obj (pkg-config: $(pkg-config --cflags --libs fwx))"
if ! make -C "$here" O="$tmp/obj" CC="$CC" CFLAGS="-O1 -g $sanflags" LDFLAGS="$sanflags" >"$tmp/make.log" 2>&1; then
    cat "$tmp/make.log" >&2
    fail "the wrapper or proxy_faults.c does not build against the installed fwx"
fi
grep "^$CC " "$tmp/make.log"
# No path into the source tree's headers or libraries: only the installed ones.
if grep -E -- "-I[^ ]*(/include|/lib)( |$)" "$tmp/make.log" | grep -v -- "-I$dest" | grep -q .; then
    cat "$tmp/make.log" >&2
    fail "the build used headers outside $dest"
fi
if ! LD_LIBRARY_PATH="$libdir" ldd "$tmp/obj/proxy_faults" | grep -q "$libdir/libfwx.so"; then
    LD_LIBRARY_PATH="$libdir" ldd "$tmp/obj/proxy_faults" >&2
    fail "proxy_faults does not resolve libfwx from $libdir"
fi

echo "check-fault-wrap: running proxy_faults on loopback"
LD_LIBRARY_PATH="$libdir" "$tmp/obj/proxy_faults"
rc=$?
[ $rc -eq $SKIP ] && skip "proxy_faults cannot run here"
[ $rc -eq 0 ] || fail "proxy_faults exited with $rc"

# Then on the topology users run: the client and the server in namespaces of their own, the
# gateway between them with an address on each side and IP forwarding off, so only what the
# proxy relays gets across. Named after this shell's pid, so parallel runs never collide;
# namespaces of runs that died are deleted first.
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null 2>&1; then
    echo "check-fault-wrap: the namespace run is skipped: it needs root and iproute2 (loopback passed)"
    echo "check-fault-wrap: ok"
    exit 0
fi
for ns in $(ip netns list 2>/dev/null | sed -n 's/^\(fwxf-[0-9]*-[cgs]\).*/\1/p'); do
    pid=${ns#fwxf-}; pid=${pid%-*}
    kill -0 "$pid" 2>/dev/null || ip netns del "$ns" 2>/dev/null
done
c=fwxf-$$-c g=fwxf-$$-g s=fwxf-$$-s
down() { for n in "$c" "$g" "$s"; do ip netns del "$n" 2>/dev/null; done; }
trap 'down; rm -rf "$tmp"' EXIT
up() {
    ip netns add "$c" && ip netns add "$g" && ip netns add "$s" &&
    ip -n "$c" link add eth0 type veth peer name cl0 netns "$g" &&
    ip -n "$s" link add eth0 type veth peer name sv0 netns "$g" &&
    ip -n "$c" addr add 10.97.1.2/24 dev eth0 && ip -n "$g" addr add 10.97.1.1/24 dev cl0 &&
    ip -n "$s" addr add 10.97.2.2/24 dev eth0 && ip -n "$g" addr add 10.97.2.1/24 dev sv0 &&
    for n in "$c" "$g" "$s"; do ip -n "$n" link set lo up || return 1; done &&
    ip -n "$c" link set eth0 up && ip -n "$s" link set eth0 up &&
    ip -n "$g" link set cl0 up && ip -n "$g" link set sv0 up &&
    ip -n "$c" route add default via 10.97.1.1 && ip -n "$s" route add default via 10.97.2.1 &&
    ip netns exec "$g" sysctl -qw net.ipv4.ip_forward=0
}
if ! up >"$tmp/netns.log" 2>&1; then
    cat "$tmp/netns.log" >&2
    fail "could not make the namespaces (root, but ip netns failed)"
fi
# Forwarding off: the server is not reachable from the client except through fwx.
fwd=$(ip netns exec "$g" sysctl -n net.ipv4.ip_forward 2>/dev/null)
[ "$fwd" = 0 ] || fail "IP forwarding is \"$fwd\" in the gateway's namespace, want 0"
echo "check-fault-wrap: running proxy_faults in namespaces $c | $g | $s"
FAULT_NS_CLIENT=/run/netns/$c FAULT_NS_SERVER=/run/netns/$s FAULT_GW_IN=10.97.1.1 FAULT_GW_OUT=10.97.2.1 \
    FAULT_CLIENT=10.97.1.2 FAULT_SERVER=10.97.2.2 LD_LIBRARY_PATH="$libdir" \
    ip netns exec "$g" "$tmp/obj/proxy_faults"
rc=$?
[ $rc -eq 0 ] || fail "proxy_faults in namespaces exited with $rc"
echo "check-fault-wrap: ok"
exit 0
