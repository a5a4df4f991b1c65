#!/bin/sh
# fwx tests - one version: libfwx's file is libfwx.so.VERSION and its SONAME libfwx.so.MAJOR,
# VERSION being meson's project version.  usage: check-soname.sh LIBFWX VERSION
# SPDX-License-Identifier: MIT
set -u
lib=$1
version=$2
major=${version%%.*}
command -v readelf >/dev/null 2>&1 || { echo "SKIP: readelf is not installed (binutils)"; exit 77; }
case "$lib" in
    */libfwx.so."$version") ;;
    *) echo "FAIL: the library is $lib, want libfwx.so.$version"; exit 1 ;;
esac
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libfwx.so.$major" ] || { echo "FAIL: SONAME \"$soname\", want libfwx.so.$major"; exit 1; }
echo "ok: $lib, SONAME $soname, version $version"
