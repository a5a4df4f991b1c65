#!/usr/bin/env bash
# fwx tests - build the Debian packages and run the gateway from them in a clean root.
#
# usage: check-packages.sh SOURCE_DIR
#
# 1. copies the source tree (no build directories, no .git) and runs `dpkg-buildpackage -b`
#    there, as README's "Debian packages" section says;
# 2. checks that libfwx1, libfwx-dev, fwx-gateway and fwx-doc were built and hold what each
#    is for;
# 3. makes a clean root: a private mount namespace with an overlay over / (writes go to a tmpfs,
#    nothing reaches the machine) and a private network namespace, checks that no fwx is
#    installed there, installs the four packages with dpkg -i, and from the installed files
#    only: runs fwx-gateway --version and fwxctl --version, --check on the packaged example
#    config, verifies the packaged systemd unit (when systemd-analyze is there), renders the
#    man pages (when man is there), and relays real bytes through the packaged gateway with the
#    packaged FTP plugin loaded, comparing what the server received with what was sent.
# Exit 0 on success, 77 (meson: skipped) when it cannot run here (not root, a tool missing),
# 1 on failure.
# SPDX-License-Identifier: MIT
set -u

SKIP=77
fail() { echo "check-packages: FAIL: $*" >&2; exit 1; }
skip() { echo "check-packages: SKIP: $*" >&2; exit $SKIP; }

[ $# -eq 1 ] || { echo "usage: $0 SOURCE_DIR" >&2; exit 2; }
src=$(cd "$1" && pwd) || fail "no source directory $1"

[ "$(id -u)" -eq 0 ] || skip "needs root (an overlay mount and a chroot for the clean root)"
for tool in dpkg-buildpackage dh unshare chroot python3; do
    command -v $tool >/dev/null 2>&1 || skip "$tool is not installed (./run test installs dpkg-dev and debhelper)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fwx-packages-XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

# 1. Build, from a copy: dpkg-buildpackage writes into the source tree and its parent.
mkdir -p "$tmp/fwx"
tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./debian/.debhelper \
    --exclude='./debian/tmp' -cf - . | tar -C "$tmp/fwx" -xf - || fail "copying the source"
(cd "$tmp/fwx" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -b -us -uc) \
    >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log" >&2; fail "dpkg-buildpackage -b failed"; }

# 2. What each package holds.
version=$(cd "$tmp/fwx" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
declare -A deb=(
    [libfwx1]=$tmp/libfwx1_${version}_$arch.deb
    [libfwx-dev]=$tmp/libfwx-dev_${version}_$arch.deb
    [fwx-gateway]=$tmp/fwx-gateway_${version}_$arch.deb
    [fwx-doc]=$tmp/fwx-doc_${version}_all.deb
)
for p in "${!deb[@]}"; do
    [ -f "${deb[$p]}" ] || fail "package $p was not built (${deb[$p]##*/}); built: $(cd "$tmp" && ls *.deb 2>/dev/null | tr '\n' ' ')"
done
for p in "${!deb[@]}"; do
    dpkg-deb -c "${deb[$p]}" | awk '{print $6}' >"$tmp/$p.files" || fail "dpkg-deb -c ${deb[$p]}"
done
holds() { # holds PACKAGE PATTERN: the package has a file whose path matches PATTERN
    grep -Eq "$2" "$tmp/$1.files" || fail "$1 lacks $2"
}
holds libfwx1 '^\./usr/lib/[^/]+/libfwx\.so\.1\.'
holds libfwx-dev '^\./usr/include/fwx/sdk\.h$'
holds libfwx-dev '^\./usr/lib/[^/]+/pkgconfig/fwx\.pc$'
holds libfwx-dev '^\./usr/share/man/man3/libfwx\.3'
holds libfwx-dev '^\./usr/share/doc/libfwx-dev/examples/fwx-plugin\.map$'
holds fwx-gateway '^\./usr/bin/fwx-gateway$'
holds fwx-gateway '^\./usr/bin/fwxctl$'
holds fwx-gateway '^\./usr/lib/[^/]+/fwx/plugins/ftp\.so$'
holds fwx-gateway '^\./etc/fwx/fwx-gateway\.cfg$'
holds fwx-gateway 'systemd/system/fwx-gateway\.service$'
holds fwx-gateway '^\./usr/share/man/man8/fwx-gateway\.8'
holds fwx-doc '^\./usr/share/doc/fwx-doc/html/index\.html$'
holds fwx-doc '^\./usr/share/doc/fwx-doc/guides/writing-a-filter\.md'
# libfwx1 must not carry what belongs to -dev, and the runtime library must be alone there.
if grep -Eq '\.h$|/libfwx\.so$' "$tmp/libfwx1.files"; then
    fail "libfwx1 holds development files"
fi

# 3. The clean root. Everything below runs in new mount and network namespaces: the overlay,
# the chroot and the loopback traffic end with them.
mkdir -p "$tmp/debs" && cp "${deb[@]}" "$tmp/debs/"
cat >"$tmp/inroot.sh" <<'INNER'
set -eu
fail() { echo "check-packages (clean root): FAIL: $*" >&2; exit 1; }
if dpkg-query -W -f='${Status}' libfwx1 2>/dev/null | grep -q "ok installed"; then
    fail "libfwx1 is installed before the test installs it: not a clean root"
fi
[ ! -e /usr/bin/fwx-gateway ] || fail "/usr/bin/fwx-gateway exists before the packages are installed"
dpkg -i /debs/*.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -i"; }
for p in libfwx1 libfwx-dev fwx-gateway fwx-doc; do
    dpkg-query -W -f='${Status}' $p | grep -q "ok installed" || fail "$p is not installed"
done
v=$(fwx-gateway --version) || fail "fwx-gateway --version"
case $v in *"$FWX_VERSION"*) ;; *) fail "fwx-gateway --version says '$v', not $FWX_VERSION" ;; esac
fwxctl --version | grep -q "$FWX_VERSION" || fail "fwxctl --version"
out=$(fwx-gateway --check --config /etc/fwx/fwx-gateway.cfg 2>&1) || fail "--check of the packaged config: $out"
if command -v systemd-analyze >/dev/null 2>&1; then
    unit=$(dpkg -L fwx-gateway | grep 'systemd/system/fwx-gateway.service$')
    systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
    echo "unit verified: $unit"
fi
if command -v man >/dev/null 2>&1; then
    for page in $(dpkg -L fwx-gateway libfwx-dev | grep '/man/man[0-9]/'); do
        [ -f "$page" ] || continue
        man -l "$page" >/dev/null 2>&1 || fail "man -l $page"
    done
fi
pkg-config --modversion fwx | grep -qx "$FWX_VERSION" || fail "pkg-config fwx"
ip link set lo up
python3 /relay-check.py || fail "relay through the packaged gateway"
echo "clean root: packages installed, gateway ran from them"
INNER
cat >"$tmp/relay-check.py" <<'PY'
# Real traffic through the packaged fwx-gateway (quick form), twice: 64 KiB through a plain
# relay to an echo server, compared; then an FTP login dialogue with the packaged FTP plugin
# loaded, each reply compared with what the server sent.
import os, socket, subprocess, sys, threading, time

def serve(port, handler):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(4)
    def run():
        c, _ = ls.accept()
        with c:
            handler(c)
    threading.Thread(target=run, daemon=True).start()

def echo(c):
    while True:
        b = c.recv(65536)
        if not b:
            return
        c.sendall(b)

FTP = [(None, b"220 packaged test server\r\n"), (b"USER anonymous\r\n", b"331 Password please\r\n"),
       (b"PASS guest\r\n", b"230 Logged in\r\n"), (b"QUIT\r\n", b"221 Bye\r\n")]

def ftp(c):
    f = c.makefile("rb")
    for expect, reply in FTP:
        if expect is not None and f.readline() != expect:
            return
        c.sendall(reply)

def gateway(port, upstream, plugins):
    args = ["fwx-gateway", "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}",
            "--no-control", "--log-level", "info"]
    for p in plugins:
        args += ["--plugin", p]
    gw = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            return gw, socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if gw.poll() is not None or time.monotonic() > deadline:
                gw.kill()
                sys.exit("gateway did not come up: " + gw.communicate()[0])
            time.sleep(0.1)

def stop(gw):
    gw.terminate()
    try:
        out = gw.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        gw.kill(); out = gw.communicate()[0]
    print(out, end="")
    return out

ok = True
serve(7201, echo)
gw, s = gateway(7200, 7201, [])
payload = os.urandom(65536)
s.sendall(payload); s.shutdown(socket.SHUT_WR)
got = b""
while (b := s.recv(65536)):
    got += b
s.close()
stop(gw)
if got != payload:
    print(f"relay: sent {len(payload)} bytes, got back {len(got)} (different)"); ok = False
else:
    print("relay: 65536 bytes through the packaged gateway and back, identical")

serve(7211, ftp)
gw, s = gateway(7210, 7211, ["ftp"])
f = s.makefile("rb")
for send, reply in FTP:
    if send is not None:
        s.sendall(send)
    line = f.readline()
    if line != reply:
        print(f"ftp: expected {reply!r}, got {line!r}"); ok = False; break
s.close()
log = stop(gw)
if "fwx/plugins/ftp.so" not in log:
    print("ftp: the gateway did not load the packaged plugin"); ok = False
elif ok:
    print("ftp: login dialogue through the packaged gateway and FTP plugin, every reply identical")
sys.exit(0 if ok else 1)
PY
FWX_VERSION=$(sed -n "s/^ *version : '\([0-9.]*\)'.*/\1/p" "$src/meson.build" | head -1)
[ -n "$FWX_VERSION" ] || fail "no project version in meson.build"
export FWX_VERSION tmp
unshare --mount --net --fork bash -c '
    set -eu
    mount --make-rprivate /
    mkdir -p "$tmp/ov"
    mount -t tmpfs tmpfs "$tmp/ov"
    mkdir -p "$tmp/ov/upper" "$tmp/ov/work" "$tmp/ov/root"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/ov/upper,workdir=$tmp/ov/work" "$tmp/ov/root"
    r=$tmp/ov/root
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs tmpfs "$r/tmp"
    mount -t tmpfs tmpfs "$r/run"
    mkdir -p "$r/debs"
    cp "$tmp"/debs/*.deb "$r/debs/"
    cp "$tmp/inroot.sh" "$r/inroot.sh"
    cp "$tmp/relay-check.py" "$r/relay-check.py"
    chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin FWX_VERSION="$FWX_VERSION" bash /inroot.sh
' || fail "the clean-root run failed"
echo "check-packages: ok: ${!deb[*]} built, installed in a clean root, gateway ran from them"
