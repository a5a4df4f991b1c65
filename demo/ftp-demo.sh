#!/usr/bin/env bash
# fwx demo: an FTP server published through fwx-gateway, downloaded with curl.
#
#   demo/ftp-demo.sh [BUILD_DIR]        (default: build; `./run demo` calls it)
#
# Hosts are distinct loopback addresses: the gateway is 127.0.0.1, the client (curl) 127.0.0.2,
# the FTP server (vsftpd) 127.0.0.3. The gateway publishes the server's control port, with the
# conn-logger sample plugin loaded, and curl fetches a 5 MiB file through it in passive and in
# active mode; the SHA-256 of each copy is compared with the original.
#
# The FTP filter plugin does not exist yet, so only the control connection goes through the
# gateway: data connections go straight between curl and vsftpd (see demo/README.md).
#
# Needs root (vsftpd runs as root; vsftpd and curl are installed with apt-get if missing).
# Exits 0 only if both downloads match. Everything it starts is stopped, and its temporary
# directory removed, whatever happens.
# SPDX-License-Identifier: MIT
set -euo pipefail

BUILD=${1:-build}
GATEWAY=$BUILD/examples/fwx-gateway/fwx-gateway
FWXCTL=$BUILD/examples/fwxctl/fwxctl
PLUGIN_DIR=$BUILD/plugins/conn-logger

GW_IP=127.0.0.1
CLIENT_IP=127.0.0.2
SERVER_IP=127.0.0.3
PASV_MIN=47100 # vsftpd's passive ports: a fixed range, far from the ephemeral ones
PASV_MAX=47199
FILE_MIB=5

STEP="setting up"
TMP=""
VSFTPD_PID=""
GW_PID=""

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Stops one process we started: SIGTERM, then a bounded wait, then SIGKILL. Prints its status.
stop_pid() { # stop_pid PID NAME -> sets STOPPED_RC
    local pid=$1 name=$2 i
    STOPPED_RC=""
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do # 5 s
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: $name did not stop within 5 s of SIGTERM, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    set +e
    wait "$pid" 2>/dev/null
    STOPPED_RC=$?
    set -e
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "$GW_PID" fwx-gateway
    stop_pid "$VSFTPD_PID" vsftpd
    [ -n "$TMP" ] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints the failed step and the end of each log, then exits 1 (cleanup runs from the trap).
fail() {
    echo >&2
    echo "demo: FAILED while $STEP: $*" >&2
    local f
    for f in gateway.log vsftpd.log vsftpd.out curl.err; do
        if [ -n "$TMP" ] && [ -s "$TMP/$f" ]; then
            echo "---- last lines of $f ----" >&2
            tail -n 25 "$TMP/$f" >&2
        fi
    done
    exit 1
}

# A free TCP port on an address (the kernel picks one; it is closed again at once).
free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

# Waits (at most 5 s) until something listens on ADDR:PORT, while process PID runs. Looks with ss(8) when it can, so
# that the probe does not show up as a session in the gateway's log.
wait_listening() { # wait_listening ADDR PORT PID
    local addr=$1 port=$2 pid=$3 i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1 # it has exited already
        if command -v ss >/dev/null 2>&1; then
            ss -Hltn "( sport = :$port )" 2>/dev/null | grep -qF "$addr:$port" && return 0
        elif python3 -c 'import socket,sys; socket.create_connection((sys.argv[1],int(sys.argv[2])),0.2).close()' \
            "$addr" "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Copies stdin to a file slowly (about 4 MiB/s) and prints nothing. curl writes the download
# into it through a pipe, so the FTP session stays open long enough for fwxctl to see it
# (curl 7.88 ignores --limit-rate for FTP downloads).
SLOW_WRITER='
import sys, time
with open(sys.argv[1], "wb") as out:
    for _ in range(100000):
        chunk = sys.stdin.buffer.read(256 * 1024)
        if not chunk:
            break
        out.write(chunk)
        time.sleep(0.06)
'

# ---- 1. what we need --------------------------------------------------------------------------

STEP="checking the build"
for f in "$GATEWAY" "$FWXCTL" "$PLUGIN_DIR/conn-logger.so"; do
    [ -e "$f" ] || fail "$f is missing (build first: meson setup $BUILD && ninja -C $BUILD)"
done

STEP="installing vsftpd and curl"
missing=()
command -v vsftpd >/dev/null 2>&1 || [ -x /usr/sbin/vsftpd ] || missing+=(vsftpd)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || fail "need root to install ${missing[*]} (and to run vsftpd)"
    echo "demo: installing ${missing[*]}"
    # Bounded: another apt-get may hold the lock for a while.
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
        --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { timeout 300 apt-get update -qq -o DPkg::Lock::Timeout=120 >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
              --no-install-recommends "${missing[@]}" >/dev/null 2>&1; } ||
        fail "apt-get install ${missing[*]} failed"
fi
VSFTPD=$(command -v vsftpd 2>/dev/null || echo /usr/sbin/vsftpd)
[ "$(id -u)" -eq 0 ] || fail "vsftpd must be started as root"
command -v python3 >/dev/null || fail "python3 is missing"

TMP=$(mktemp -d /tmp/fwx-demo.XXXXXX)
mkdir -p "$TMP/pub" "$TMP/empty"
chmod 755 "$TMP" "$TMP/pub"  # the anonymous user reads it after vsftpd drops root
chmod 555 "$TMP/empty"

say "a ${FILE_MIB} MiB file to serve"
STEP="generating the file"
head -c $((FILE_MIB * 1024 * 1024)) /dev/urandom >"$TMP/pub/payload.bin"
chmod 644 "$TMP/pub/payload.bin"
WANT=$(sha256sum "$TMP/pub/payload.bin" | cut -d' ' -f1)
note "payload.bin  sha256 $WANT"

# ---- 2. the FTP server --------------------------------------------------------------------------

STEP="starting vsftpd"
FTP_PORT=$(free_port $SERVER_IP)
GW_PORT=$(free_port $GW_IP)
FTP_USER=ftp
getent passwd ftp >/dev/null || FTP_USER=nobody
cat >"$TMP/vsftpd.conf" <<EOF
# Written by demo/ftp-demo.sh: anonymous read-only FTP on $SERVER_IP:$FTP_PORT.
listen=YES
listen_ipv6=NO
listen_address=$SERVER_IP
listen_port=$FTP_PORT
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$TMP/pub
ftp_username=$FTP_USER
local_enable=NO
write_enable=NO
anon_upload_enable=NO
anon_mkdir_write_enable=NO
secure_chroot_dir=$TMP/empty
pasv_enable=YES
pasv_min_port=$PASV_MIN
pasv_max_port=$PASV_MAX
# The control connection reaches vsftpd from the gateway (full proxy), while the data
# connections go straight to and from curl at $CLIENT_IP: vsftpd must not insist that both
# come from the same address. The FTP filter will make this unnecessary.
pasv_promiscuous=YES
port_promiscuous=YES
port_enable=YES
connect_from_port_20=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
syslog_enable=NO
vsftpd_log_file=$TMP/vsftpd.log
xferlog_enable=YES
dual_log_enable=YES
log_ftp_protocol=YES
idle_session_timeout=60
data_connection_timeout=30
EOF
"$VSFTPD" "$TMP/vsftpd.conf" >"$TMP/vsftpd.out" 2>&1 &
VSFTPD_PID=$!
wait_listening $SERVER_IP "$FTP_PORT" $VSFTPD_PID || fail "vsftpd is not listening on $SERVER_IP:$FTP_PORT"
say "vsftpd (pid $VSFTPD_PID) serves $TMP/pub on $SERVER_IP:$FTP_PORT, passive ports $PASV_MIN-$PASV_MAX"

# ---- 3. the gateway -----------------------------------------------------------------------------

STEP="starting fwx-gateway"
SOCK=$TMP/fwx.sock
"$GATEWAY" --listen $GW_IP:"$GW_PORT" --upstream $SERVER_IP:"$FTP_PORT" \
    --plugin conn-logger --plugin-dir "$PLUGIN_DIR" --control "$SOCK" --name fwx-demo \
    >"$TMP/gateway.log" 2>&1 &
GW_PID=$!
wait_listening $GW_IP "$GW_PORT" $GW_PID || fail "fwx-gateway is not listening on $GW_IP:$GW_PORT"
for ((i = 0; i < 50; i++)); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || fail "no control socket at $SOCK"
say "fwx-gateway (pid $GW_PID) publishes ftp://$GW_IP:$GW_PORT/ -> $SERVER_IP:$FTP_PORT"
note "\$ fwx-gateway --listen $GW_IP:$GW_PORT --upstream $SERVER_IP:$FTP_PORT --plugin conn-logger --control fwx.sock"
echo
"$FWXCTL" --socket "$SOCK" plugins | sed 's/^/    /' || fail "fwxctl plugins"

# ---- 4. the downloads ---------------------------------------------------------------------------

echo
echo "    NOTE: only the FTP control connection goes through the gateway. Data connections"
echo "    bypass the gateway until the FTP filter lands: in passive mode curl connects straight"
echo "    to the address vsftpd advertises, in active mode vsftpd connects straight to curl."

URL=ftp://$GW_IP:$GW_PORT/payload.bin
SHOWN=0

# Shows the gateway's own view once, while the first session is live.
show_live_view() {
    local i
    for ((i = 0; i < 100; i++)); do # 10 s at most
        if "$FWXCTL" --socket "$SOCK" --json sessions 2>/dev/null | grep -q '"kind":"session"'; then
            echo
            echo "    the gateway while curl downloads (fwxctl --socket fwx.sock ...):"
            echo "    \$ fwxctl sessions"
            "$FWXCTL" --socket "$SOCK" sessions | sed 's/^/      /'
            echo "    \$ fwxctl connections"
            "$FWXCTL" --socket "$SOCK" connections | sed 's/^/      /'
            echo "    \$ fwxctl stats"
            "$FWXCTL" --socket "$SOCK" stats | sed 's/^/      /'
            return 0
        fi
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

download() { # download MODE OUTFILE curl-options...
    local mode=$1 out=$2 pid rc got
    shift 2
    STEP="downloading in $mode mode"
    say "curl, $mode mode: $URL"
    note "\$ curl --interface $CLIENT_IP $* $URL"
    rm -f "$TMP/curl.rc"
    { curl --silent --show-error --max-time 60 --connect-timeout 5 --interface $CLIENT_IP \
          -o - "$@" "$URL" 2>"$TMP/curl.err"; echo $? >"$TMP/curl.rc"; } |
        python3 -c "$SLOW_WRITER" "$out" &
    pid=$!
    if [ $SHOWN -eq 0 ] && show_live_view $pid; then SHOWN=1; fi
    set +e
    wait $pid
    set -e
    rc=$(cat "$TMP/curl.rc" 2>/dev/null || echo "unknown")
    [ "$rc" = 0 ] || fail "curl exited with $rc: $(tail -n 1 "$TMP/curl.err" 2>/dev/null)"
    got=$(sha256sum "$out" | cut -d' ' -f1)
    note "got $(stat -c %s "$out") bytes, sha256 $got"
    [ "$got" = "$WANT" ] || fail "the $mode-mode copy differs from the original"
    note "checksum matches"
}

download passive "$TMP/passive.bin" --ftp-pasv --no-ftp-skip-pasv-ip
download active "$TMP/active.bin" --ftp-port $CLIENT_IP

[ $SHOWN -eq 1 ] || echo "    (the sessions ended before fwxctl could show them)"

# ---- 5. the gateway's log, and a clean stop -----------------------------------------------------

STEP="reading the gateway's state"
for ((i = 0; i < 50; i++)); do # the sessions close as soon as curl has quit
    "$FWXCTL" --socket "$SOCK" --json stats | grep -q '"sessions":0,' && break
    sleep 0.1
done
say "after both downloads: fwxctl stats"
"$FWXCTL" --socket "$SOCK" stats | sed 's/^/    /'

STEP="stopping fwx-gateway"
stop_pid "$GW_PID" fwx-gateway
GW_PID=""
say "the gateway's event log (conn-logger lines come from the plugin)"
sed 's/^/    /' "$TMP/gateway.log"
[ "$STOPPED_RC" = 0 ] || fail "fwx-gateway exited with status $STOPPED_RC on SIGTERM (expected 0)"
[ ! -e "$SOCK" ] || fail "fwx-gateway left its control socket $SOCK behind"
note "fwx-gateway exited 0 on SIGTERM and removed its control socket"

say "vsftpd's transfer log"
grep -h -i -E 'OK DOWNLOAD|FAIL' "$TMP/vsftpd.log" 2>/dev/null | sed 's/^/    /' || true

say "demo passed: both downloads through the published FTP server match the original"
