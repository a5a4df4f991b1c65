# shellcheck shell=bash disable=SC2154,SC2034 # build, tmp, tag and MESON are the sourcing script's; it reads dest, pc, pcdir and sanflags
# fwx tests - sourced by tests/install/check-install.sh and
# examples/fault-backend/check-fault-wrap.sh: the build installed into a temporary DESTDIR, and
# the sanitizer flags a program linking the installed library needs. The sourcing script
# defines fail (prints its message and exits 1) and sets build (the build directory), tmp (a
# directory it removes at exit), tag (its name, for the lines it prints) and MESON.
# SPDX-License-Identifier: MIT

# meson install of $build into $tmp/dest: sets dest, and pc (the installed fwx.pc) and pcdir.
install_to_destdir() {
    dest=$tmp/dest
    echo "$tag: meson install -C $build --no-rebuild --destdir $dest"
    if ! "$MESON" install -C "$build" --no-rebuild --destdir "$dest" >"$tmp/install.log" 2>&1; then
        cat "$tmp/install.log" >&2
        fail "meson install failed"
    fi
    pc=$(find "$dest" -name fwx.pc -path '*/pkgconfig/*' | head -n 1)
    [ -n "$pc" ] || fail "fwx.pc was not installed"
    pcdir=$(dirname "$pc")
}

# The build's sanitizers (b_sanitize) as compiler flags in sanflags (empty without): a program
# that links the installed library must link them too, or the library cannot be loaded.
build_sanflags() {
    local san
    san=$("$MESON" introspect --buildoptions "$build" 2>/dev/null |
          tr '{' '\n' | sed -n 's/.*"name": *"b_sanitize".*"value": *"\([^"]*\)".*/\1/p' | head -n 1)
    sanflags=""
    if [ -n "$san" ] && [ "$san" != "none" ]; then
        sanflags="-fsanitize=$san"
    fi
}
