#!/usr/bin/env bash
# fwx demo: a stock, strict vsftpd published through fwx-gateway with the FTP filter plugin,
# downloaded with curl in passive and active mode, then one refused attack.
#
#   demo/ftp-demo.sh [BUILD_DIR]        (default: build; `./run demo` calls it)
#
# As root, on a dual-homed topology of three network namespaces it makes and deletes itself:
#
#   client 10.77.1.2 --- 10.77.1.1 [fwx-gateway] 10.77.2.1 --- 10.77.2.2 vsftpd
#
# with IP forwarding off in the gateway, so that nothing crosses it but what fwx relays.
# Otherwise (not root, or no network namespaces here) on loopback addresses, and it says so:
# loopback shows the steps but proves no mode, since the gateway's two sides are one address.
# FWX_DEMO_TOPOLOGY=netns|loopback forces one (netns fails if it cannot be made).
#
# Exits 0 only if every download matches the original and the attack was refused by the
# gateway. Every process it starts is stopped, its namespaces deleted and its temporary
# directory removed, on every exit path. demo/README.md says what each step shows.
# SPDX-License-Identifier: MIT
set -euo pipefail

BUILD=${1:-build}
DEMO_DIR=$(cd "$(dirname "$0")" && pwd)
GATEWAY=$BUILD/examples/fwx-gateway/fwx-gateway
FWXCTL=$BUILD/examples/fwxctl/fwxctl
PLUGIN_DIR=$BUILD/plugins/ftp
FILE_MIB=5
PASV_MIN=47100 # vsftpd's passive ports: a fixed range, far from the ephemeral ones
PASV_MAX=47199
NS_PREFIX=fwxdemo- # fwxdemo-{cli,gw,srv}-<pid>

STEP="setting up"
TMP=""
VSFTPD_PID=""
GW_PID=""
NAMESPACES=()
CLIENT_CMD_PID=""

h1() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
proof() { printf '   -> %s\n' "$*"; }
indent() { sed 's/^/      /'; }

# ---- cleanup: every exit path ------------------------------------------------------------------

# Stops one process we started: SIGTERM, a bounded wait, then SIGKILL. Sets STOPPED_RC.
stop_pid() { # stop_pid PID NAME
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

# Deletes one of our namespaces after stopping what still runs in it (vsftpd's session
# processes, a client): everything in it was started by this demo.
delete_ns() { # delete_ns NAME
    local ns=$1 pids i
    for ((i = 0; i < 20; i++)); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] || break
        local sig=TERM
        [ $i -lt 10 ] || sig=KILL
        # shellcheck disable=SC2086 # a list of pids
        kill -$sig $pids 2>/dev/null || true
        sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null || echo "demo: could not delete network namespace $ns" >&2
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [ -n "$CLIENT_CMD_PID" ] && kill "$CLIENT_CMD_PID" 2>/dev/null
    stop_pid "$GW_PID" fwx-gateway
    stop_pid "$VSFTPD_PID" vsftpd
    local ns
    for ns in "${NAMESPACES[@]}"; do delete_ns "$ns"; done
    [ -n "$TMP" ] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "demo: interrupted, stopping everything it started" >&2; exit 130' INT
trap 'echo "demo: interrupted, stopping everything it started" >&2; exit 143' TERM

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

# ---- helpers ------------------------------------------------------------------------------------

# Runs a command in a role's namespace (cli, gw, srv); on loopback, here. Started with & it is
# a subshell: the daemons are started with the ns_exec prefix instead, so that $! is theirs.
in_ns() { # in_ns ROLE CMD...
    local role=$1
    shift
    ns_exec "$role"
    "${NS_EXEC[@]}" "$@"
}
ns_exec() { # ns_exec ROLE: sets NS_EXEC to the prefix that runs a command in that namespace
    NS_EXEC=()
    if [ "$TOPOLOGY" = netns ]; then
        local var="NS_${1^^}"
        NS_EXEC=(ip netns exec "${!var}")
    fi
}

# A free TCP port on an address (the kernel picks one; it is closed again at once).
free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

# Waits (at most 5 s) until something listens on ADDR:PORT in a role's namespace, while PID runs.
# Looks with ss(8), so that the probe does not show up as a session in the gateway's log.
wait_listening() { # wait_listening ROLE ADDR PORT PID
    local role=$1 addr=$2 port=$3 pid=$4 i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1 # it has exited already
        in_ns "$role" ss -Hltn "( sport = :$port )" 2>/dev/null | grep -qF "$addr:$port" && return 0
        sleep 0.1
    done
    return 1
}

ctl() { "$FWXCTL" --socket "$SOCK" "$@"; }

# Copies stdin to a file slowly (about 4 MiB/s). curl writes the download into it through a
# pipe, so that the transfer lasts long enough for fwxctl to show it (curl 7.88 ignores
# --limit-rate for FTP downloads).
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

# ---- 0. what we need ----------------------------------------------------------------------------

STEP="checking the build"
for f in "$GATEWAY" "$FWXCTL" "$PLUGIN_DIR/ftp.so"; do
    [ -e "$f" ] || fail "$f is missing (build first: meson setup $BUILD && ninja -C $BUILD)"
done
command -v python3 >/dev/null || fail "python3 is missing"
command -v ss >/dev/null || fail "ss is missing (Debian package iproute2)"
ROOT=0
[ "$(id -u)" -eq 0 ] && ROOT=1

# ./run demo installs these (and stops the system vsftpd the package starts); the demo only looks.
STEP="looking for vsftpd and curl"
missing=()
command -v vsftpd >/dev/null 2>&1 || [ -x /usr/sbin/vsftpd ] || missing+=(vsftpd)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ ${#missing[@]} -eq 0 ] || fail "${missing[*]} missing (Debian packages ${missing[*]}): run ./run demo"
VSFTPD=$(command -v vsftpd 2>/dev/null || echo /usr/sbin/vsftpd)

# ---- 1. the network -----------------------------------------------------------------------------

# Namespaces left by a demo that was killed with -9 (its pid is gone).
delete_stale_namespaces() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        [[ $ns =~ ^${NS_PREFIX}(cli|gw|srv)-([0-9]+)$ ]] || continue
        pid=${BASH_REMATCH[2]}
        kill -0 "$pid" 2>/dev/null && continue
        echo "demo: deleting $ns, left by a demo (pid $pid) that did not clean up"
        delete_ns "$ns"
    done
}

# client 10.77.1.2 --- cl0 10.77.1.1 [gateway] 10.77.2.1 sv0 --- 10.77.2.2 server; the veth
# pairs are made inside the client's and server's namespaces with their peers moved straight
# into the gateway's, so no interface ever appears in the host's namespace.
make_namespaces() {
    NS_CLI=${NS_PREFIX}cli-$$
    NS_GW=${NS_PREFIX}gw-$$
    NS_SRV=${NS_PREFIX}srv-$$
    local ns
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
        ip netns add "$ns" || return 1
        NAMESPACES+=("$ns")
    done
    ip -n "$NS_CLI" link add eth0 type veth peer name cl0 netns "$NS_GW" &&
        ip -n "$NS_SRV" link add eth0 type veth peer name sv0 netns "$NS_GW" &&
        ip -n "$NS_CLI" addr add $CLIENT_IP/24 dev eth0 &&
        ip -n "$NS_GW" addr add $GW_IN/24 dev cl0 &&
        ip -n "$NS_GW" addr add $GW_OUT/24 dev sv0 &&
        ip -n "$NS_SRV" addr add $SERVER_IP/24 dev eth0 &&
        ip -n "$NS_CLI" link set lo up && ip -n "$NS_CLI" link set eth0 up &&
        ip -n "$NS_GW" link set lo up && ip -n "$NS_GW" link set cl0 up && ip -n "$NS_GW" link set sv0 up &&
        ip -n "$NS_SRV" link set lo up && ip -n "$NS_SRV" link set eth0 up &&
        ip -n "$NS_CLI" route add default via $GW_IN &&
        ip -n "$NS_SRV" route add default via $GW_OUT &&
        # The user-mode (proxy) backend relays everything itself: the kernel must forward nothing.
        # (The namespaces have IPv4 addresses only.)
        ip netns exec "$NS_GW" sysctl -qw net.ipv4.ip_forward=0
}

TMP=$(mktemp -d /tmp/fwx-demo.XXXXXX)
mkdir -p "$TMP/pub" "$TMP/empty"
chmod 755 "$TMP" "$TMP/pub" # the anonymous user reads it after vsftpd drops root
chmod 555 "$TMP/empty"
SOCK=$TMP/fwx.sock

TOPOLOGY=${FWX_DEMO_TOPOLOGY:-auto}
case "$TOPOLOGY" in
auto | netns | loopback) ;;
*) fail "FWX_DEMO_TOPOLOGY must be netns, loopback or auto, not \"$TOPOLOGY\"" ;;
esac
WHY_LOOPBACK=""
if [ "$TOPOLOGY" != loopback ]; then
    CLIENT_IP=10.77.1.2 GW_IN=10.77.1.1 GW_OUT=10.77.2.1 SERVER_IP=10.77.2.2 THIRD_IP=10.77.2.3
    STEP="making the network namespaces"
    if [ $ROOT -eq 0 ]; then
        WHY_LOOPBACK="not root: network namespaces need root"
    elif ! command -v ip >/dev/null; then
        WHY_LOOPBACK="no ip(8) here (Debian package iproute2)"
    else
        delete_stale_namespaces
        if make_namespaces 2>"$TMP/netns.err"; then
            TOPOLOGY=netns
        else
            WHY_LOOPBACK="network namespaces cannot be made here: $(head -n 1 "$TMP/netns.err")"
            for ns in "${NAMESPACES[@]}"; do delete_ns "$ns"; done
            NAMESPACES=()
        fi
    fi
    if [ -n "$WHY_LOOPBACK" ]; then
        [ "$TOPOLOGY" = netns ] && fail "FWX_DEMO_TOPOLOGY=netns, but $WHY_LOOPBACK"
        TOPOLOGY=loopback
    fi
fi
if [ "$TOPOLOGY" = loopback ]; then
    CLIENT_IP=127.0.0.2 GW_IN=127.0.0.1 GW_OUT=127.0.0.1 SERVER_IP=127.0.0.3 THIRD_IP=127.0.0.4
fi

echo "fwx demo: an FTP server published through fwx-gateway, with the FTP filter plugin"
h1 "1. The network"
if [ "$TOPOLOGY" = netns ]; then
    say "three network namespaces, joined by two virtual links:"
    say ""
    say "  client $CLIENT_IP --- $GW_IN [ fwx-gateway ] $GW_OUT --- $SERVER_IP vsftpd"
    say "$(printf '  %-28s%-34s%s' "($NS_CLI)" "($NS_GW)" "($NS_SRV)")"
    say ""
    say "IP forwarding is off in the gateway: only what fwx-gateway relays gets across."
else
    say "LOOPBACK ONLY ($WHY_LOOPBACK):"
    say "  client $CLIENT_IP, fwx-gateway $GW_IN, vsftpd $SERVER_IP, on this host's loopback."
    say "The steps are the same, but this proves no mode: the gateway's two sides are one"
    say "address, and the client could reach the server without it. Run as root for the real"
    say "topology (three network namespaces, a gateway with two addresses)."
fi

# ---- 2. the FTP server --------------------------------------------------------------------------

STEP="generating the file"
head -c $((FILE_MIB * 1024 * 1024)) /dev/urandom >"$TMP/pub/payload.bin"
chmod 644 "$TMP/pub/payload.bin"
WANT=$(sha256sum "$TMP/pub/payload.bin" | cut -d' ' -f1)

STEP="starting vsftpd"
if [ "$TOPOLOGY" = netns ]; then
    FTP_PORT=21 GW_PORT=21
else
    FTP_PORT=$(free_port "$SERVER_IP") GW_PORT=$(free_port "$GW_IN")
fi
FTP_USER=ftp
getent passwd ftp >/dev/null || FTP_USER=nobody
{
    echo "# Written by demo/ftp-demo.sh: anonymous read-only FTP on $SERVER_IP:$FTP_PORT."
    echo "# Stock vsftpd rules: a data connection must come from (PASV) or go to (PORT) the"
    echo "# address of the control connection's peer. No pasv_promiscuous, no port_promiscuous."
    cat <<EOF
listen=YES
listen_ipv6=NO
listen_address=$SERVER_IP
listen_port=$FTP_PORT
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$TMP/pub
local_enable=NO
write_enable=NO
anon_upload_enable=NO
anon_mkdir_write_enable=NO
pasv_enable=YES
pasv_min_port=$PASV_MIN
pasv_max_port=$PASV_MAX
port_enable=YES
connect_from_port_20=NO
seccomp_sandbox=NO
syslog_enable=NO
xferlog_enable=YES
vsftpd_log_file=$TMP/vsftpd.log
log_ftp_protocol=YES
idle_session_timeout=60
data_connection_timeout=30
EOF
    if [ $ROOT -eq 1 ]; then
        echo "ftp_username=$FTP_USER"
        echo "secure_chroot_dir=$TMP/empty"
    else
        echo "run_as_launching_user=YES" # vsftpd otherwise insists on starting as root
    fi
} >"$TMP/vsftpd.conf"
ns_exec srv
"${NS_EXEC[@]}" "$VSFTPD" "$TMP/vsftpd.conf" >"$TMP/vsftpd.out" 2>&1 &
VSFTPD_PID=$!
wait_listening srv "$SERVER_IP" "$FTP_PORT" $VSFTPD_PID || fail "vsftpd is not listening on $SERVER_IP:$FTP_PORT"

h1 "2. The FTP server: vsftpd, strict"
say "vsftpd serves a ${FILE_MIB} MiB file on $SERVER_IP:$FTP_PORT, as it comes: it accepts a data"
say "connection only from or to the address of its control connection's peer."
say "payload.bin  sha256 $WANT"
if [ "$TOPOLOGY" = netns ]; then
    # vsftpd listens now: a refused connection would mean the packets got across. Only silence
    # (a time-out) shows that the gateway forwards nothing by itself.
    STEP="checking that the client cannot reach the server directly"
    set +e
    in_ns cli python3 -c '
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()
    sys.exit(1)
except socket.timeout:
    sys.exit(0)
except OSError as e:
    print(e)
    sys.exit(2)' "$SERVER_IP" "$FTP_PORT" >"$TMP/direct.out" 2>&1
    direct=$?
    set -e
    [ $direct -ne 1 ] || fail "the client reached $SERVER_IP:$FTP_PORT directly: the gateway forwards packets"
    [ $direct -eq 0 ] || fail "the client's direct connection to $SERVER_IP:$FTP_PORT: $(cat "$TMP/direct.out")"
    proof "the client's own connection to $SERVER_IP:$FTP_PORT gets no answer within 1 s:"
    proof "the gateway forwards nothing by itself"
fi

# ---- 3. the gateway -----------------------------------------------------------------------------

STEP="starting fwx-gateway"
GW_ARGS=(--listen "$GW_IN:$GW_PORT" --upstream "$SERVER_IP:$FTP_PORT" --plugin ftp --plugin-dir "$PLUGIN_DIR"
    --control "$SOCK" --name fwx-demo)
[ "$TOPOLOGY" = netns ] || GW_ARGS+=(--loopback-hosts) # 127.0.0.2 and .3 are hosts, not the gateway
ns_exec gw
"${NS_EXEC[@]}" "$GATEWAY" "${GW_ARGS[@]}" >"$TMP/gateway.log" 2>&1 &
GW_PID=$!
wait_listening gw "$GW_IN" "$GW_PORT" $GW_PID || fail "fwx-gateway is not listening on $GW_IN:$GW_PORT"
for ((i = 0; i < 50; i++)); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || fail "no control socket at $SOCK"

h1 "3. The gateway: fwx-gateway publishes the server, with the FTP filter"
say "\$ fwx-gateway ${GW_ARGS[*]//$TMP\//}"
say "(proxy backend, the default: fwx relays every byte in user mode)"
say "\$ fwxctl plugins"
ctl plugins | indent || fail "fwxctl plugins"
proof "clients connect to ftp://$GW_IN/ ; the FTP filter watches each control connection"

# ---- 4 and 5. downloads with curl ---------------------------------------------------------------

URL=ftp://$GW_IN:$GW_PORT/payload.bin
CURL_FROM=() # on loopback, curl must speak from the client's address, not the gateway's
[ "$TOPOLOGY" = netns ] || CURL_FROM=(--interface "$CLIENT_IP")
declare -A RESULT # mode -> "ok" or a reason

# Shows fwxctl connections once, while the download runs (the data connection has appeared).
show_connections() { # show_connections PID
    local i
    for ((i = 0; i < 100; i++)); do # 10 s at most
        if ctl --json connections 2>/dev/null | grep -q '"kind":"connection"' &&
            [ "$(ctl --json connections 2>/dev/null | grep -c '"kind":"connection"')" -ge 2 ]; then
            say "while curl downloads, the gateway's view:"
            say "\$ fwxctl connections"
            ctl connections | indent
            say "(the control connection, in user mode: the FTP filter reads every line; the data"
            say "connection, in kernel mode: no filter on it, the bytes are spliced through)"
            return 0
        fi
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Prints an FTP dialogue line as the client saw it (curl -v) and as the server saw it (vsftpd's
# log), for the data command of this mode.
show_rewrite() { # show_rewrite CLIENT-PATTERN CLIENT-LABEL SERVER-PATTERN SERVER-LABEL
    local c s
    c=$(grep -a -m1 -E "$1" "$TMP/curl.err" | sed 's/^[<>] //' | tr -d '\r' || true)
    s=$(grep -a -E "$3" "$TMP/vsftpd.log" | tail -n 1 | sed -E 's/.*"([^"]*)"$/\1/' || true)
    say "$(printf '%-16s' "$2") ${c:-(none)}"
    say "$(printf '%-16s' "$4") ${s:-(none)}"
}

download() { # download MODE OUTFILE curl-options...
    local mode=$1 out=$2 pid rc got
    shift 2
    STEP="downloading in $mode mode"
    say "\$ curl $* $URL"
    rm -f "$TMP/curl.rc"
    : >"$TMP/vsftpd.mark"
    { in_ns cli curl --verbose --silent --show-error --max-time 30 --connect-timeout 5 \
          -o - "$@" "$URL" 2>"$TMP/curl.err"; echo $? >"$TMP/curl.rc"; } |
        python3 -c "$SLOW_WRITER" "$out" &
    pid=$!
    CLIENT_CMD_PID=$pid
    show_connections $pid || say "(the transfer ended before fwxctl could show it)"
    set +e
    wait $pid
    set -e
    CLIENT_CMD_PID=""
    rc=$(cat "$TMP/curl.rc" 2>/dev/null || echo "unknown")
    if [ "$rc" != 0 ]; then
        RESULT[$mode]="curl exited with $rc: $(grep -a '^curl:' "$TMP/curl.err" | tail -n 1)"
        return 1
    fi
    got=$(sha256sum "$out" | cut -d' ' -f1)
    if [ "$got" != "$WANT" ]; then
        RESULT[$mode]="the copy differs from the original (sha256 $got)"
        return 1
    fi
    RESULT[$mode]=ok
    say "got $(stat -c %s "$out") bytes, sha256 $got"
    return 0
}

h1 "4. Passive mode: curl downloads through the gateway"
if download passive "$TMP/passive.bin" "${CURL_FROM[@]}" --ftp-pasv --disable-epsv; then
    show_rewrite '^< 227 ' "curl was told:" '"227 ' "vsftpd said:"
    proof "the FTP filter rewrote vsftpd's 227 with a port it bound on the gateway; curl"
    proof "connected there, and the gateway connected on to vsftpd's port from its server-side"
    proof "address $GW_OUT, the control connection's peer, so strict vsftpd accepted it."
    proof "The copy's checksum matches the original."
else
    say "FAILED: ${RESULT[passive]}"
fi

h1 "5. Active mode: vsftpd connects back, through the gateway"
if download active "$TMP/active.bin" "${CURL_FROM[@]}" --ftp-port "$CLIENT_IP" --disable-eprt; then
    show_rewrite '^> PORT ' "curl sent:" '"PORT ' "vsftpd received:"
    proof "the FTP filter rewrote curl's PORT with a redirect port on the gateway's server-side"
    proof "address $GW_OUT; vsftpd connected there, and the gateway connected on to curl's port."
    proof "The copy's checksum matches the original."
else
    say "FAILED: ${RESULT[active]}"
    show_rewrite '^> PORT ' "curl sent:" '"PORT ' "vsftpd received:"
    srv_reply=$(grep -a -A1 -E '"PORT ' "$TMP/vsftpd.log" | grep -a -o '"5[0-9][0-9] [^"]*"' | tail -n 1 || true)
    [ -z "$srv_reply" ] || say "$(printf '%-16s' "vsftpd answered:") ${srv_reply//\"/}"
fi

# ---- 6. the grants, one command at a time; 7. an attack ------------------------------------------

h1 "6. What the gateway grants, one command at a time (a scripted client)"
STEP="running the scripted client"
: >"$TMP/steps.out"
in_ns cli python3 "$DEMO_DIR/ftp-steps.py" --gateway "$GW_IN:$GW_PORT" --client-ip "$CLIENT_IP" \
    --third "$THIRD_IP" --file payload.bin "$FWXCTL" --socket "$SOCK" >"$TMP/steps.out" 2>&1 || true
sed -n '/^   PASV:/,/^   the attack:/p' "$TMP/steps.out" | sed '$d'
steps=$(grep '^steps: ' "$TMP/steps.out" || true)
[ -n "$steps" ] || { sed 's/^/   /' "$TMP/steps.out"; fail "the scripted client did not finish"; }
RESULT[scripted]="the download did not complete ($steps)"
if [[ $steps == *retr=226* ]] && [[ $steps == *"sha256=$WANT"* ]]; then
    RESULT[scripted]=ok
fi
proof "each grant names this client's session and its one peer, and is used once: the bound"
proof "port was gone as soon as its data connection arrived. An unused grant expires after"
proof "60 s (EXPIRES); when the session ends, whatever is left is withdrawn."

h1 "7. A refused attack: FTP bounce"
sed -n '/^   the attack:/,$p' "$TMP/steps.out" | grep -v '^steps: '
STEP="checking the refused bounce"
BOUNCE_ARG=$(echo "$THIRD_IP" | tr . ,)
refusal=""
for ((i = 0; i < 20; i++)); do # the log line is written as the reply goes out
    refusal=$(grep -a -F "refused \"PORT $BOUNCE_ARG," "$TMP/gateway.log" || true)
    [ -n "$refusal" ] && break
    sleep 0.1
done
say "the gateway's log:"
echo "${refusal:-(no refusal logged)}" | indent
BOUNCE=fail
if [[ $steps == *bounce=500* ]] && [ -n "$refusal" ] && ! grep -a -q -F "$BOUNCE_ARG," "$TMP/vsftpd.log"; then
    BOUNCE=refused
    proof "the gateway answered 500 itself: the command never reached vsftpd (its log has no"
    proof "$BOUNCE_ARG), so vsftpd was never asked to connect to $THIRD_IP."
else
    say "FAILED: the bounce was not refused by the gateway ($steps)"
fi

# ---- 8. a clean stop, and the verdict -----------------------------------------------------------

h1 "8. A clean stop"
STEP="stopping fwx-gateway"
for ((i = 0; i < 50; i++)); do # sessions close as soon as their clients have quit
    ctl --json stats 2>/dev/null | grep -q '"sessions":0,' && break
    sleep 0.1
done
say "\$ fwxctl stats"
ctl stats | indent
stop_pid "$GW_PID" fwx-gateway
GW_PID=""
STOP=ok
if [ "$STOPPED_RC" != 0 ]; then
    STOP="fwx-gateway exited with status $STOPPED_RC on SIGTERM (expected 0)"
elif [ -e "$SOCK" ]; then
    STOP="fwx-gateway left its control socket behind"
else
    proof "fwx-gateway exited 0 on SIGTERM and removed its control socket"
fi

h1 "Result ($TOPOLOGY topology)"
say "original        sha256 $WANT"
status=0
for mode in passive active scripted; do
    if [ "${RESULT[$mode]:-}" = ok ]; then
        if [ $mode = scripted ]; then
            got=$(sed -E 's/.*sha256=([0-9a-f]+).*/\1/' <<<"$steps")
        else
            got=$(sha256sum "$TMP/$mode.bin" | cut -d' ' -f1)
        fi
        say "$(printf '%-15s' "$mode copy") sha256 $got  matches"
    else
        say "$(printf '%-15s' "$mode copy") FAILED: ${RESULT[$mode]:-not run}"
        status=1
    fi
done
say "bounce          $BOUNCE"
[ "$BOUNCE" = refused ] || status=1
[ "$STOP" = ok ] || { say "stop            $STOP"; status=1; }
if [ $status -ne 0 ]; then
    STEP="checking the results"
    fail "see above"
fi
echo
if [ "$TOPOLOGY" = netns ]; then
    echo "demo passed: every download crossed the gateway and matches; the bounce was refused"
else
    echo "demo passed (loopback only: run as root for the dual-homed topology)"
fi
