#!/usr/bin/env bash
# fwx tests - install the build into a temporary DESTDIR and build a host against it.
#
# usage: check-install.sh BUILD_DIR TP_GOOD_SO VERSION
#
# 1. meson install --no-rebuild --destdir TMP (no root needed);
# 2. checks that the headers, libfwx.so.MAJOR (MAJOR of VERSION, meson's project version),
#    fwx.pc and the plugin directory were installed, and that the SONAME is libfwx.so.MAJOR;
# 3. compiles tests/install/embed_demo.c with only `pkg-config --cflags --libs fwx` from the
#    installed fwx.pc, runs it with LD_LIBRARY_PATH at the installed lib dir and the tp_good
#    plugin as its argument;
# 4. builds tests/install/log_plugin.c as a plugin with only `pkg-config --cflags fwx` (a
#    plugin does not link libfwx) and has check_log_plugin.py load it into the installed
#    fwx-gateway with --log-format json (needs python3; PYTHONPATH from FWX_SOURCE_ROOT).
# Exit 0 on success, 77 (meson: skipped) when a tool is missing, 1 on failure.
# SPDX-License-Identifier: MIT
set -u

SKIP=77
fail() { echo "check-install: FAIL: $*" >&2; exit 1; }
skip() { echo "check-install: SKIP: $*" >&2; exit $SKIP; }

[ $# -eq 3 ] || { echo "usage: $0 BUILD_DIR TP_GOOD_SO VERSION" >&2; exit 2; }
build=$(cd "$1" && pwd) || fail "no build directory $1"
plugin=$2
version=$3
major=${version%%.*}
src=${BASH_SOURCE[0]}
case $src in */*) here=$(cd "${src%/*}" && pwd) ;; *) here=$PWD ;; esac
tag=check-install
# shellcheck source=SCRIPTDIR/destdir.sh
. "$here/destdir.sh"

command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"
MESON=${MESON:-meson}
command -v "$MESON" >/dev/null 2>&1 || skip "meson is not on PATH"
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || skip "no C compiler ($CC)"
[ -f "$plugin" ] || fail "test plugin $plugin was not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fwx-install-XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
install_to_destdir

# What went where: the .pc file tells the prefix and libdir.
# The .pc holds absolute target paths: PKG_CONFIG_SYSROOT_DIR maps its -I/-L into the DESTDIR.
pcq() { PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH} PKG_CONFIG_SYSROOT_DIR=$dest pkg-config "$@"; }
# pkgconf prefixes --variable output with the sysroot, pkg-config does not: strip it, so that
# these are the paths on the target system.
pcvar() {
    local v
    v=$(pcq --variable="$1" fwx) || fail "pkg-config cannot read $pc"
    case $v in "$dest"/*) v=${v#"$dest"} ;; esac
    printf '%s\n' "$v"
}
prefix=$(pcvar prefix)
libdir=$(pcvar libdir)
includedir=$(pcvar includedir)
plugindir=$(pcvar plugindir)
[ -n "$libdir" ] && [ -n "$includedir" ] && [ -n "$plugindir" ] || fail "fwx.pc lacks libdir, includedir or plugindir"
echo "check-install: prefix $prefix, libdir $libdir, plugindir $plugindir"

for h in fwx.h common.h version.h log.h sdk.h plugin.h host.h backend.h policy_view.h proxy.h pump.h redirect.h plugin_helpers.h; do
    [ -f "$dest$includedir/fwx/$h" ] || fail "header fwx/$h missing under $dest$includedir"
done
[ -e "$dest$libdir/libfwx.so.$major" ] || fail "libfwx.so.$major missing in $dest$libdir"
[ -e "$dest$libdir/libfwx.so.$version" ] || fail "libfwx.so.$version missing in $dest$libdir"
if command -v readelf >/dev/null 2>&1; then
    soname=$(readelf -d "$dest$libdir/libfwx.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$soname" = "libfwx.so.$major" ] || fail "SONAME is \"$soname\", want libfwx.so.$major (version $version)"
fi
grep -q "^#define FWX_VERSION_STRING \"$version\"\$" "$dest$includedir/fwx/version.h" ||
    fail "the installed fwx/version.h does not say $version"
[ "$(pcq --modversion fwx)" = "$version" ] || fail "fwx.pc says $(pcq --modversion fwx), want $version"
[ -e "$dest$libdir/libfwx.so" ] || fail "libfwx.so (development link) missing in $dest$libdir"
[ -d "$dest$plugindir" ] || fail "plugin directory $plugindir missing"
case "$plugindir" in
    "$libdir"/fwx/plugins) ;;
    *) fail "plugindir $plugindir is not $libdir/fwx/plugins" ;;
esac
# Nothing internal may be installed.
if find "$dest" -name 'internal.h' -o -name 'util.h' -o -name 'libfwx_internal*' | grep -q .; then
    fail "internal files were installed"
fi

# The build's sanitizers (b_sanitize) must be linked into the demo as well, or the installed
# library cannot be loaded.
build_sanflags

flags=$(pcq --cflags --libs fwx) || fail "pkg-config --cflags --libs fwx failed"
echo "check-install: $CC -std=c11 -D_GNU_SOURCE $sanflags embed_demo.c $flags"
# shellcheck disable=SC2086 # flags are words
if ! "$CC" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $sanflags -o "$tmp/embed_demo" \
        "$here/embed_demo.c" $flags >"$tmp/cc.log" 2>&1; then
    cat "$tmp/cc.log" >&2
    fail "embed_demo.c does not build against the installed fwx"
fi

# The demo must use the installed library, not the build tree's.
if ! LD_LIBRARY_PATH="$dest$libdir" ldd "$tmp/embed_demo" | grep -q "$dest$libdir/libfwx.so.$major"; then
    LD_LIBRARY_PATH="$dest$libdir" ldd "$tmp/embed_demo" >&2
    fail "embed_demo does not resolve libfwx.so.$major from $dest$libdir"
fi

echo "check-install: running embed_demo $plugin"
LD_LIBRARY_PATH="$dest$libdir" "$tmp/embed_demo" "$plugin" "$version"
rc=$?
[ $rc -eq 0 ] || fail "embed_demo exited with $rc"

# A plugin built out of tree: the installed headers only, one exported symbol.
printf '{ global: fwx_entry; local: *; };\n' >"$tmp/plugin.map"
cflags=$(pcq --cflags fwx) || fail "pkg-config --cflags fwx failed"
echo "check-install: $CC -std=c11 -shared -fPIC log_plugin.c $cflags"
# shellcheck disable=SC2086 # flags are words
if ! "$CC" -std=c11 -Wall -Wextra -Werror -fPIC -shared $sanflags -o "$tmp/probe.so" "$here/log_plugin.c" $cflags \
        -Wl,--version-script="$tmp/plugin.map" >"$tmp/cc-plugin.log" 2>&1; then
    cat "$tmp/cc-plugin.log" >&2
    fail "log_plugin.c does not build against the installed headers"
fi
gateway=$dest$(pcvar prefix)/bin/fwx-gateway
[ -x "$gateway" ] || fail "fwx-gateway was not installed ($gateway)"
if command -v python3 >/dev/null 2>&1 && [ -n "${FWX_SOURCE_ROOT:-}" ]; then
    echo "check-install: the installed fwx-gateway loads probe.so, --log-format json"
    FWX_GATEWAY=$gateway LD_LIBRARY_PATH="$dest$libdir" PYTHONPATH="$FWX_SOURCE_ROOT/tests/gateway" \
        PYTHONDONTWRITEBYTECODE=1 python3 "$here/check_log_plugin.py" "$tmp/probe.so" "$version"
    rc=$?
    [ $rc -eq 0 ] || { [ $rc -eq $SKIP ] && skip "check_log_plugin.py skipped"; fail "check_log_plugin.py: exit $rc"; }
else
    echo "check-install: python3 or FWX_SOURCE_ROOT missing: the plugin was built, not run"
fi
echo "check-install: ok"
exit 0
