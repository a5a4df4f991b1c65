#!/usr/bin/env bash
# fwx kernel-path benchmark: kernel-mode secondary connections made by fwx's
# "nft" backend against plain routed forwarding, the kernel's own NAT and the kernel's own FTP
# helper, on one topology, in one run; and the permission set-up latency of the FTP filter
# (PASV/PORT line in -> rewritten line out) in user mode and in kernel mode, p50 and p99.
#
#   bench/kernel.sh [BUILD_DIR]          full mode (default BUILD_DIR: build), about 10 minutes
#   QUICK=1 bench/kernel.sh [BUILD_DIR]  quick mode, about 1 minute
#
# Needs root. Builds nothing of fwx: expects BUILD_DIR/lib/libfwx.so, the FTP and conn-logger
# plugins and examples/fwx-gateway/fwx-gateway. Compiles its own tools (bench/tcpbench.c,
# bench/kperm.c, bench/ksetup.c) into a temp dir, kperm and ksetup against the public headers.
# Missing Debian packages (iperf3 vsftpd curl nftables conntrack) are installed with apt-get.
# Traffic stays inside the namespaces fwxk-cli-PID, fwxk-gw-PID and fwxk-srv-PID (10.99.1.0/24,
# 10.99.2.0/24), which this script creates and deletes (nft tables live and die with them).
# A benchmark, not a test: prints figures, exits 0 unless the harness itself broke.
#
# Knobs: QUICK=1, PIN=0 (do not pin), KEEP=1 (keep the temp dir), RESULTS=FILE (copy the raw
# TSV), REPEAT=N (rounds), TP_REPEAT=N (rounds of the throughput section; default 8, quick REPEAT), SETUP_N=N (latency iterations per row and round), SETUP_ROUNDS=N (rounds of the latency
# section, each over every row; default 3, quick 1; kreport judges medians over them), FTP_MB=N (FTP file size, MiB),
# RT=1 (latency section under SCHED_FIFO), SECTIONS="tput ftp setup ctfilter" (a subset), SETUP_GRANTS=N
# (the outstanding grants of the kernel-ftp-10k row, default 10000; 0: no such row), FTP_FB=N (sessions that fetch
# a 4 KiB file under curl --trace-time: one before each FTP row's transfer, on the fresh gateway, as ROW-cold, and N
# after it; bench/ftpphases.py splits their time to first byte into the session's exchanges, p50/p90 per row; the
# transfer's own first byte is then a gateway's second session; default: enough for 40 sessions per row over the
# REPEAT rounds, quick 0; kreport judges time to first byte on their p50 when there are any; pinned, the fwx row runs
# N more with fwx on the load CPU, ROW-samecpu, and tcpbench wake measures wake-ups beside them), SETUP_ROWS="ROW..." (only
# those rows of the latency section; default all), FWX_FTP=gateway|kperm (who carries the fwx-ftp-kernel row; default: fwx-gateway if its
# config file takes `backend = "nft"`, else kperm), CTF_PERF=FILE (perf profile of fwx over the ctfilter own-flow run; CTF_PERF_ROW=owned_life for the whole-life run), RATE_PERF=DIR (perf profile of the load CPUs over each connection-rate run, DIR/ROW-ROUND.perf: where the forwarding CPU's time goes per row), TP_DIAG=1 (two more rows of the
# throughput section, kernel-nat-acct and kernel-nat-ev: kernel-nat-ct's accounting and its event listener, each alone), KPERM_WRAP="valgrind --tool=callgrind ..." (kperm run
# under a profiler: its CPU figures then mean nothing, the profile says where the time goes).
# SPDX-License-Identifier: MIT
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
GW_BIN="$BUILD/examples/fwx-gateway/fwx-gateway"
QUICK=${QUICK:-0}
PIN=${PIN:-1}

if [ "$QUICK" = 1 ]; then
    TPUT_S=2 RATE_S=2 REPEAT=${REPEAT:-1} TP_REPEAT=${TP_REPEAT:-${REPEAT:-1}} FTP_MB=${FTP_MB:-1024} SETUP_N=${SETUP_N:-200} SETUP_ROUNDS=${SETUP_ROUNDS:-1}
    FTP_FB=${FTP_FB:-0}
else
    # The latency section in rounds: one pass's p99 moved by 100+ us between full runs on the
    # same code, so the shares are judged on the median over rounds (bench/kreport.py).
    # The throughput section judges the median of its rounds' paired ratios (kreport): more,
    # shorter rounds, an even number so that each row comes first and last as often.
    TPUT_S=4 RATE_S=4 REPEAT=${REPEAT:-5} TP_REPEAT=${TP_REPEAT:-8} FTP_MB=${FTP_MB:-2048} SETUP_N=${SETUP_N:-1000} SETUP_ROUNDS=${SETUP_ROUNDS:-3}
    # Time to first byte is judged on the traced sessions: at least 40 per row over the run,
    # since vsftpd's banner and login alone move a median of a few sessions by more than the
    # 1 ms target (bench/README.md, issue 13 part 5).
    FTP_FB=${FTP_FB:-$(( REPEAT > 0 ? (40 + REPEAT - 1) / REPEAT : 0 ))}
fi
RATE_CONC=64 RATE_SIZE=64

NS_C=fwxk-cli-$$ NS_G=fwxk-gw-$$ NS_S=fwxk-srv-$$   # the pid: two runs on one machine never share one
C_IP=10.99.1.2 G_IN=10.99.1.1 G_OUT=10.99.2.1 S_IP=10.99.2.2
INTERNAL=10.99.1.0/24
P_IPERF=5201 P_ECHO=7000 P_FTP=21 P_PUB=2121
FWX_NAME=kbench FWX_TABLE=fwx_kbench
export FWX_CONN_LOGGER_FILE=/dev/null   # the conn-logger plugin of the kernel-relay baseline
FTP_GUID="{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"
CL_GUID="{c82feda9-0c53-49fd-9f2e-a761501d650f}"

log() { printf '[kbench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "HARNESS ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (network namespaces, nftables)"
for f in "$GW_BIN" "$BUILD/lib/libfwx.so" "$BUILD/plugins/ftp/ftp.so" "$BUILD/plugins/conn-logger/conn-logger.so"; do
    [ -e "$f" ] || fail "$f not found: build fwx first (meson setup build && ninja -C build)"
done

# ---- tools -------------------------------------------------------------------------------------
need=()
command -v iperf3 >/dev/null || need+=(iperf3)
[ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
command -v curl >/dev/null || need+=(curl)
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v cc >/dev/null || need+=(gcc)
command -v python3 >/dev/null || need+=(python3)
pkg-config --exists libuv 2>/dev/null || [ -e /usr/include/uv.h ] || need+=(libuv1-dev)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq >/dev/null && timeout 600 apt-get install -y -qq "${need[@]}" >/dev/null \
        || fail "apt-get install ${need[*]} failed"
fi
for svc in vsftpd iperf3; do  # this benchmark runs its own servers only
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif service "$svc" status >/dev/null 2>&1; then
        service "$svc" stop >/dev/null 2>&1 || true
    fi
done

# ---- temp dir, cleanup ---------------------------------------------------------------------------
T=$(mktemp -d /tmp/fwxkbench.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do kill_tree "$p"; done
    # The namespaces take their nft tables and conntrack entries with them.
    for n in $NS_C $NS_G $NS_S; do ip netns del "$n" 2>/dev/null; done
    if [ "${KEEP:-0}" = 1 ]; then log "temp dir kept: $T"; else rm -rf "$T"; fi
    exit $rc
}
descendants() {
    local k
    for k in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$k"
        descendants "$k"
    done
}
# Kills a process this script started and its descendants, by pid: TERM, then KILL what remains.
kill_tree() {
    local p=$1 kids k
    [ -n "$p" ] && [ -d /proc/"$p" ] || return 0
    kids=$(descendants "$p")
    kill -TERM "$p" $kids 2>/dev/null || true
    for _ in $(seq 1 60); do
        local alive=0
        for k in "$p" $kids; do
            [ -d /proc/"$k" ] && ! grep -q '^State:.*Z' /proc/"$k"/status 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.05
    done
    for k in "$p" $kids; do [ -d /proc/"$k" ] && kill -KILL "$k" 2>/dev/null; done
    wait "$p" 2>/dev/null || true
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Snapshot of the gateway, the library and the plugins (a rebuild during the run must not change
# what is measured); the gateway's RUNPATH is $ORIGIN/../../lib.
F="$T/fwx"
mkdir -p "$F/examples/fwx-gateway" "$F/lib" "$F/plugins"
cp -L "$GW_BIN" "$F/examples/fwx-gateway/fwx-gateway"
for l in "$BUILD"/lib/libfwx.so*; do [ -f "$l" ] && cp -L "$l" "$F/lib/"; done
cp -L "$BUILD/plugins/ftp/ftp.so" "$BUILD/plugins/conn-logger/conn-logger.so" "$F/plugins/"
GW_DESC="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown), binary $(date -r "$GW_BIN" '+%F %T')"
GW_BIN="$F/examples/fwx-gateway/fwx-gateway"
UV_CFLAGS=$(pkg-config --cflags libuv 2>/dev/null || true)
UV_LIBS=$(pkg-config --libs libuv 2>/dev/null || echo -luv)
cc -O2 -Wall -o "$T/tcpbench" "$HERE/tcpbench.c" || fail "cannot compile bench/tcpbench.c"
cc -O2 -Wall -o "$T/ksetup" "$HERE/ksetup.c" || fail "cannot compile bench/ksetup.c"
# shellcheck disable=SC2086
cc -O2 -Wall -std=gnu11 -I"$REPO/include" -I"$BUILD/include" $UV_CFLAGS -o "$T/kperm" "$HERE/kperm.c" -L"$F/lib" -lfwx $UV_LIBS \
    -Wl,-rpath,"$F/lib" || fail "cannot compile bench/kperm.c"
TB="$T/tcpbench" KP="$T/kperm" KS="$T/ksetup"

# Does this fwx-gateway take `backend = "nft"` in its config file?
cat >"$T/probe.cfg" <<EOF
gateway = { backend = "nft"; };
EOF
GW_NFT=0
"$GW_BIN" --config "$T/probe.cfg" --check >/dev/null 2>&1 && GW_NFT=1
FWX_FTP=${FWX_FTP:-$([ $GW_NFT = 1 ] && echo gateway || echo kperm)}
[ "$FWX_FTP" = gateway ] && [ $GW_NFT = 0 ] && fail "FWX_FTP=gateway, but this fwx-gateway has no backend option"

# ---- topology ------------------------------------------------------------------------------------
for n in $NS_C $NS_G $NS_S; do ip netns del "$n" 2>/dev/null || true; done  # leftovers of a crashed run
ip netns add $NS_C && ip netns add $NS_G && ip netns add $NS_S || fail "ip netns add"
ip -n $NS_C link add c0 type veth peer name g0 netns $NS_G || fail "veth c0/g0"
ip -n $NS_S link add s0 type veth peer name g1 netns $NS_G || fail "veth s0/g1"
ip -n $NS_C addr add $C_IP/24 dev c0
ip -n $NS_G addr add $G_IN/24 dev g0
ip -n $NS_G addr add $G_OUT/24 dev g1
ip -n $NS_S addr add $S_IP/24 dev s0
for n in $NS_C $NS_G $NS_S; do ip -n $n link set lo up; done
ip -n $NS_C link set c0 up; ip -n $NS_G link set g0 up; ip -n $NS_G link set g1 up; ip -n $NS_S link set s0 up
ip -n $NS_C route add default via $G_IN
ip -n $NS_S route add default via $G_OUT
for n in $NS_C $NS_G $NS_S; do
    ip netns exec $n sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 \
        net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
done
ip netns exec $NS_G sysctl -qw net.ipv4.ip_forward=1
# Permanent neighbour entries on both links: no ARP resolution inside any measurement (an entry
# gone stale between two rows cost a first connection several milliseconds).
mac() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
ip -n $NS_C neigh replace $G_IN lladdr "$(mac $NS_G g0)" dev c0 nud permanent
ip -n $NS_G neigh replace $C_IP lladdr "$(mac $NS_C c0)" dev g0 nud permanent
ip -n $NS_G neigh replace $S_IP lladdr "$(mac $NS_S s0)" dev g1 nud permanent
ip -n $NS_S neigh replace $G_OUT lladdr "$(mac $NS_G g1)" dev s0 nud permanent
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    FWX_CPU=$((NCPU - 1)); LOAD_CPUS="0-$((NCPU - 2))"
    FWX_PIN=(taskset -c "$FWX_CPU"); LOAD_PIN=(taskset -c "$LOAD_CPUS")
else
    FWX_CPU=any LOAD_CPUS=any; FWX_PIN=(); LOAD_PIN=()
fi
inc() { ip netns exec $NS_C "${LOAD_PIN[@]}" "$@"; }   # a load generator in the client namespace
# RT=1: the latency section runs fwx and ksetup under SCHED_FIFO, so that other work on a shared
# machine does not preempt them (it measures fwx, not the scheduler); default: normal scheduling.
RT_PRIO=()
[ "${RT:-0}" = 1 ] && RT_PRIO=(chrt -f 20)
ing() { ip netns exec $NS_G "$@"; }

ip netns exec $NS_S "${LOAD_PIN[@]}" iperf3 -s -p $P_IPERF >"$T/iperf3-server.log" 2>&1 &
PIDS+=($!)
ip netns exec $NS_S "${LOAD_PIN[@]}" "$TB" serve $P_ECHO >"$T/echo-server.log" 2>&1 &
PIDS+=($!)
listening() { ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q .; }
for _ in $(seq 1 50); do listening $NS_S $P_ECHO && listening $NS_S $P_IPERF && break; sleep 0.1; done
listening $NS_S $P_ECHO && listening $NS_S $P_IPERF || fail "servers did not start"
inc timeout 10 "$TB" rr $S_IP $P_ECHO 0.1 1 16 >/dev/null 2>&1 || fail "no route client -> server through the gateway namespace"

RES="$T/results.tsv"; : >"$RES"
NOTES="$T/notes.txt"; : >"$NOTES"
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; }
note() { printf '%s\n' "$*" >>"$NOTES"; log "NOTE: $*"; }
kv() { awk -v k="$1" '$1==k{ $1=""; sub(/^ /,""); print; exit }' "$2"; }
CLK=$(getconf CLK_TCK)
cpu_ticks() { # user+system ticks of a pid so far (0 if gone)
    awk '{sub(/^.*\) /,""); print $12+$13+$14+$15}' /proc/"$1"/stat 2>/dev/null || echo 0
}
softirq_ticks() { awk '/^cpu /{print $8}' /proc/stat; }   # system-wide softirq time (forwarding)

# ---- the gateway's configurations --------------------------------------------------------------
# Every row starts from an empty ruleset and an empty conntrack table in the gateway namespace.
gw_reset() {
    ing nft flush ruleset 2>/dev/null || true
    ing conntrack -F >/dev/null 2>&1 || true
    # The kernel-nat-ct row turns byte accounting on (fwx restores what it switched on when it
    # exits); every row starts from the default.
    ing sysctl -qw net.netfilter.nf_conntrack_acct=0 2>/dev/null || true
}
nft_nat() { # the kernel's own NAT: forward accept, masquerade out of g1
    ing nft -f - <<EOF
table inet fwxk_nat {
    chain forward { type filter hook forward priority filter; policy accept; ct state established,related accept; }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "g1" masquerade; }
}
EOF
}
nft_ftp_helper() { # the kernel's FTP helper on port 21, masquerade; nothing else is forwarded
    ing nft -f - <<EOF
table inet fwxk_ftph {
    ct helper ftp-21 { type "ftp" protocol tcp; l3proto inet; }
    chain prerouting { type filter hook prerouting priority filter; policy accept; iifname "g0" tcp dport $P_FTP ct helper set "ftp-21"; }
    chain forward { type filter hook forward priority filter; policy drop; ct state established,related accept;
                    iifname "g0" tcp dport $P_FTP ct state new accept; }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "g1" masquerade; }
}
EOF
}

FWX_PID="" FWX_OUT="" FWX_SCHED=()
# kperm ARGS...: fwx's own harness in the gateway namespace, pinned; waits for "ready".
start_kperm() {
    local tag=$1; shift
    FWX_OUT="$T/kperm-$tag.out"
    ing "${FWX_PIN[@]}" "${FWX_SCHED[@]}" timeout 900 ${KPERM_WRAP:-} "$KP" --name $FWX_NAME --local $G_IN,$G_OUT --internal $INTERNAL "$@" \
        >"$FWX_OUT" 2>"$T/kperm-$tag.err" &
    FWX_PID=$!; PIDS+=("$FWX_PID")
    for _ in $(seq 1 400); do grep -q '^ready' "$FWX_OUT" && break; [ -d /proc/$FWX_PID ] || break; sleep 0.05; done
    if ! grep -q '^ready' "$FWX_OUT"; then
        note "kperm ($tag) did not get ready: $(tail -c 400 "$T/kperm-$tag.err" | tr '\n' ' ')"
        kill_tree $FWX_PID; FWX_PID=
        return 1
    fi
    # the pid to read CPU from: kperm itself under ip netns exec / taskset / timeout
    FWX_CPU_PID=$(pgrep -n -f "$KP --name" || echo $FWX_PID) # the newest: kperm (or its KPERM_WRAP)
}
# fwx-gateway with a config file, in the gateway namespace, pinned; waits for a listening port.
start_gateway() { # TAG CONFIG_FILE PORT_TO_WAIT_FOR_OR_-
    local tag=$1 cfg=$2 port=$3
    FWX_OUT="$T/gw-$tag.log"
    ing "${FWX_PIN[@]}" "${FWX_SCHED[@]}" timeout 900 "$GW_BIN" --config "$cfg" >"$FWX_OUT" 2>&1 &
    FWX_PID=$!; PIDS+=("$FWX_PID")
    for _ in $(seq 1 100); do
        [ -d /proc/$FWX_PID ] || break
        if [ "$port" = - ]; then ing nft list table inet $FWX_TABLE >/dev/null 2>&1 && break
        else listening $NS_G "$port" && break; fi
        sleep 0.05
    done
    sleep 0.2
    if ! [ -d /proc/$FWX_PID ]; then
        note "fwx-gateway ($tag) did not start: $(tail -c 400 "$FWX_OUT" | tr '\n' ' ')"
        FWX_PID=
        return 1
    fi
    FWX_CPU_PID=$(pgrep -n -f "^$GW_BIN " || echo $FWX_PID)
}
stop_fwx() { # SIGTERM: a clean exit deletes fwx's table (on_stop = "open"); say if it did not
    [ -n "$FWX_PID" ] || return 0
    kill -TERM "$FWX_CPU_PID" 2>/dev/null || true
    local waits=60; [ -z "${KPERM_WRAP:-}" ] || waits=600 # a profiler writes its data at exit
    for _ in $(seq 1 $waits); do [ -d /proc/$FWX_CPU_PID ] || break; sleep 0.05; done
    kill_tree $FWX_PID
    if ing nft list table inet $FWX_TABLE >/dev/null 2>&1; then
        note "fwx's table inet $FWX_TABLE was still there after fwx exited"
    fi
    FWX_PID=
    return 0
}
fwx_cpu_ticks() { if [ -n "$FWX_PID" ]; then cpu_ticks "$FWX_CPU_PID"; else echo 0; fi; }

# ---- throughput and connection rate ----------------------------------------------------------------
TP_ROWS="routed kernel-nat kernel-nat-ct fwx-kernel"
# TP_DIAG=1: kernel-nat-ct's two parts apart, to say which one costs the NAT its rate:
# kernel-nat-acct (byte accounting only) and kernel-nat-ev (the event listener only).
[ "${TP_DIAG:-0}" = 1 ] && TP_ROWS="routed kernel-nat kernel-nat-acct kernel-nat-ev kernel-nat-ct fwx-kernel"
CTEV_PID=
ELEM_RE="$C_IP \. $S_IP \. (6|tcp) \. "
row_up() { # NAME ROUND
    gw_reset
    case $1 in
    routed) ;;
    kernel-nat) nft_nat || { note "kernel-nat: nft failed"; return 1; } ;;
    kernel-nat-ct | kernel-nat-acct | kernel-nat-ev)
        # The kernel's NAT plus what fwx's conntrack follower adds to the kernel's work: byte
        # accounting on, and a ctnetlink listener on NEW and DESTROY events (no fwx at all);
        # TP_DIAG's rows take one of the two each.
        nft_nat || { note "$1: nft failed"; return 1; }
        [ "$1" = kernel-nat-ev ] || ing sysctl -qw net.netfilter.nf_conntrack_acct=1
        if [ "$1" != kernel-nat-acct ]; then
            ing "${FWX_PIN[@]}" timeout 900 conntrack -E -e NEW,DESTROY -b 8388608 >/dev/null 2>"$T/ctev-$2.err" &
            CTEV_PID=$!; PIDS+=("$CTEV_PID")
            sleep 0.3
        fi
        ;;
    fwx-kernel)
        start_kperm "tp$2" --client $C_IP --allow $S_IP:$P_IPERF --allow $S_IP:$P_ECHO || return 1
        # Really kernel mode: the permissions are elements of fwx's nftables set, and the
        # forward chain's policy is drop (nothing else lets the flows through).
        local t="$T/fwx-kernel-table-$2.txt"
        ing nft -n list table inet $FWX_TABLE >"$t" 2>&1 || true
        if grep -Eq "$ELEM_RE$P_IPERF" "$t" && grep -Eq "$ELEM_RE$P_ECHO" "$t" &&
            grep -Eq 'hook forward priority (filter|0); policy drop;' "$t"; then
            put fwx-kernel kernel_elements yes
            [ "$2" = 1 ] && grep -E -B1 "set allow4|$ELEM_RE|hook forward" "$t" | grep -v -e '^--' -e comment \
                | sed 's/^[[:space:]]*//' >"$T/fwx-kernel-elements.txt"
        else
            put fwx-kernel kernel_elements no
            note "fwx-kernel: table inet $FWX_TABLE does not hold the permission elements (see $t)"
        fi
        ;;
    esac
    return 0
}
row_down() { # NAME
    if [ -n "$CTEV_PID" ]; then
        [ -d /proc/$CTEV_PID ] || note "$1: the conntrack -E listener died: $(head -c 200 "$T"/ctev-*.err | tr '\n' ' ')"
        kill_tree $CTEV_PID; CTEV_PID=
    fi
    if [ "$1" = fwx-kernel ] && [ -n "$FWX_PID" ]; then
        stop_fwx
        for k in kernel_secondaries_seen kernel_secondaries_max user_secondaries_max; do
            put fwx-kernel "$k" "$(kv $k "$FWX_OUT")"
        done
    fi
    gw_reset
    return 0
}

test_tput() { # NAME ROUND
    local name=$1 f c0 c1 s0 s1 bps
    f="$T/$name-iperf-$2.json"
    c0=$(fwx_cpu_ticks); s0=$(softirq_ticks)
    inc timeout $((TPUT_S + 20)) iperf3 -c $S_IP -p $P_IPERF -t $TPUT_S -J >"$f" 2>&1 || true
    c1=$(fwx_cpu_ticks); s1=$(softirq_ticks)
    bps=$(python3 -c 'import json,sys
try:
    j=json.load(open(sys.argv[1])); print(j["end"]["sum_received"]["bits_per_second"]/1e9)
except Exception: print("")' "$f")
    if [ -n "$bps" ]; then
        put "$name" tput_gbps "$bps"
        put "$name" tput_softirq_pct "$(python3 -c "print(100.0*($s1-$s0)/$CLK/$TPUT_S)")"
        [ "$name" = fwx-kernel ] && put "$name" tput_fwx_cpu_pct "$(python3 -c "print(100.0*($c1-$c0)/$CLK/$TPUT_S)")"
    else
        note "$name: iperf3 (round $2) failed: $(head -c 300 "$f" | tr '\n' ' ')"
        put "$name" tput_gbps FAIL
    fi
    return 0
}
test_rate() { # NAME ROUND
    local name=$1 f c0 c1 cps conns errs perf_pid=
    f="$T/$name-rate-$2.out"
    if [ -n "${RATE_PERF:-}" ]; then # a profile of the load CPUs (where the forwarding runs) over the run only
        mkdir -p "$RATE_PERF"
        perf record -e cpu-clock -F 2999 -C "$LOAD_CPUS" -o "$RATE_PERF/$name-$2.perf" -- sleep "$RATE_S" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    c0=$(fwx_cpu_ticks)
    inc timeout $((RATE_S + 30)) "$TB" rate $S_IP $P_ECHO $RATE_S $RATE_CONC $RATE_SIZE >"$f" 2>&1 || note "$name: rate: $(tail -c 300 "$f" | tr '\n' ' ')"
    c1=$(fwx_cpu_ticks)
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    cps=$(kv conns_per_s "$f"); conns=$(kv conns "$f"); errs=$(kv errors "$f")
    if [ -n "$cps" ]; then
        put "$name" rate_cps "$cps"
        put "$name" rate_errors "${errs:-0}"
        put "$name" rate_conn_p99_us "$(kv conn_p99_us "$f")"
        [ "$name" = fwx-kernel ] && [ "${conns:-0}" -gt 0 ] && put "$name" rate_fwx_cpu_us_per_conn "$(python3 -c "print(1e6*($c1-$c0)/$CLK/$conns)")"
        [ "$name" = fwx-kernel ] && put "$name" rate_conns "$conns"
        [ "${errs:-0}" -gt 0 ] && note "$name: connection rate (round $2): $errs failed connections (of $((conns + errs)))"
    else
        put "$name" rate_cps FAIL
    fi
    put "$name" conntrack_after_rate "$(ing cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo none)"
    return 0
}

# ---- FTP transfers --------------------------------------------------------------------------------
FTP_ROWS="direct kernel-ftp-helper fwx-ftp-kernel"
FTPD="$T/ftp"
mkdir -p "$FTPD/root" "$FTPD/empty"
chmod 755 "$FTPD" "$FTPD/root"; chmod 555 "$FTPD/empty"
truncate -s "${FTP_MB}M" "$FTPD/root/big.bin"   # sparse: the server reads zero pages, the disk is out of it
truncate -s 4K "$FTPD/root/small.bin"             # FTP_FB's sessions: the exchanges, not the transfer
chmod 644 "$FTPD/root/big.bin" "$FTPD/root/small.bin"
mkdir -p "$T/fb"
FTP_BYTES=$((FTP_MB * 1024 * 1024))
FTP_USER=$(getent passwd ftp >/dev/null && echo ftp || echo nobody)
cat >"$FTPD/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$S_IP
listen_port=$P_FTP
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$FTPD/root
ftp_username=$FTP_USER
local_enable=NO
write_enable=NO
secure_chroot_dir=$FTPD/empty
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30999
port_enable=YES
connect_from_port_20=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
syslog_enable=NO
xferlog_enable=NO
idle_session_timeout=60
data_connection_timeout=30
accept_timeout=10
connect_timeout=10
max_per_ip=0
use_sendfile=YES
EOF
start_vsftpd() {
    ip netns exec $NS_S "${LOAD_PIN[@]}" timeout 900 /usr/sbin/vsftpd "$FTPD/vsftpd.conf" >"$T/vsftpd.log" 2>&1 &
    VSFTPD_PID=$!; PIDS+=("$VSFTPD_PID")
    for _ in $(seq 1 50); do listening $NS_S $P_FTP && break; sleep 0.1; done
    listening $NS_S $P_FTP || fail "vsftpd did not start: $(tail -c 300 "$T/vsftpd.log")"
}

# The fwx gateway of the fwx-ftp-kernel row and of the kernel-mode latency test: transparent,
# the nft backend, port 21 bound to FILTER (the FTP filter, or conn-logger for the baseline).
fwx_transparent_up() { # TAG PLUGIN_NAME FILTER_GUID
    local tag=$1 plugin=$2 guid=$3
    if [ "$FWX_FTP" = gateway ]; then
        cat >"$T/gw-$tag.cfg" <<EOF
gateway = { name = "$FWX_NAME"; backend = "nft"; log_level = "${FWX_LOG_LEVEL:-warn}"; plugin_dir = "$F/plugins";
            control_socket = "$T/ctl-$tag.sock";   # not /run/fwx's: another gateway on this host may hold it
            plugins = [ "$plugin" ]; local_addresses = [ "$G_IN", "$G_OUT" ];
            on_stop = "open"; };   # the kernel-only rows run in this namespace after it stops
networks = { internal = { ranges = [ "$INTERNAL" ]; }; };
relationships = ( { from = "internal"; to = "external"; type = "nat"; } );
protocols = ( { name = "ftp"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-0000000b0021}"; protocol = "tcp"; port = $P_FTP;
                direction = "outbound"; filters = [ "$guid" ]; } );
rules = ( { name = "ftp out"; action = "allow"; from = [ "internal" ]; to = [ "external" ]; protocols = [ "ftp" ]; } );
EOF
        start_gateway "$tag" "$T/gw-$tag.cfg" - || return 1
    else
        start_kperm "$tag" --plugin "$F/plugins/$plugin.so" --filter "$guid" || return 1
    fi
    # interception in place: fwx's table redirects port 21
    ing nft -n list table inet $FWX_TABLE >"$T/table-$tag.txt" 2>&1 || true
    if ! grep -q "dport @I[0-9]* redirect to" "$T/table-$tag.txt"; then
        note "$tag: fwx's table has no redirect rule (see $T/table-$tag.txt)"
    fi
    return 0
}

ftp_row_up() { # NAME ROUND
    gw_reset
    case $1 in
    direct) ;;
    kernel-ftp-helper) nft_ftp_helper || { note "kernel-ftp-helper: nft failed"; return 1; } ;;
    fwx-ftp-kernel) fwx_transparent_up "ftp$2" ftp "$FTP_GUID" || return 1 ;;
    esac
    return 0
}
ftp_row_down() {
    if [ "$1" = fwx-ftp-kernel ] && [ -n "$FWX_PID" ]; then
        stop_fwx
        if [ "$FWX_FTP" = kperm ]; then
            put fwx-ftp-kernel kernel_secondaries_seen "$(kv kernel_secondaries_seen "$FWX_OUT")"
            put fwx-ftp-kernel user_secondaries_max "$(kv user_secondaries_max "$FWX_OUT")"
        fi
    fi
    gw_reset
    return 0
}
test_ftp() { # NAME ROUND
    local name=$1 f c0 c1 ct
    f="$T/$name-curl-$2.out"
    # FTP_FB: one traced session first, on the row's fresh gateway (the session the first-byte
    # figure is otherwise taken from: fwx's first after its start), written as ROW-cold
    [ "$FTP_FB" -gt 0 ] && fb_session "$name-cold" "$2"
    c0=$(fwx_cpu_ticks)
    inc timeout 300 curl -s -S -o /dev/null --max-time 240 --ftp-pasv \
        -w 'code %{response_code}\nsize %{size_download}\ntotal %{time_total}\npretransfer %{time_pretransfer}\nstart %{time_starttransfer}\n' \
        "ftp://$S_IP/big.bin" >"$f" 2>&1 || true
    c1=$(fwx_cpu_ticks)
    local size total start
    size=$(kv size "$f"); total=$(kv total "$f"); start=$(kv start "$f")
    if [ "${size:-0}" = "$FTP_BYTES" ]; then
        put "$name" ftp_gbps "$(python3 -c "print($size*8/($total-$start)/1e9)")"
        put "$name" ftp_first_byte_ms "$(python3 -c "print(1e3*$start)")"
        [ "$name" = fwx-ftp-kernel ] && put "$name" ftp_fwx_cpu_s "$(python3 -c "print(($c1-$c0)/$CLK)")"
    else
        note "$name: FTP transfer (round $2) failed or short: $(tr '\n' ' ' <"$f" | head -c 300)"
        put "$name" ftp_gbps FAIL
    fi
    # the data connection in conntrack: who carried it (helper / fwx's mark), while entries remain
    ct=$(ing conntrack -L -p tcp --dport 30000:30999 2>/dev/null | head -1)
    [ "$2" = 1 ] && [ -n "$ct" ] && put "$name" ftp_data_conntrack "$ct"
    # FTP_FB: the same kind of session again, traced, on a gateway that has carried some already
    local i
    for i in $(seq 1 "$FTP_FB"); do fb_session "$name" $(( ($2 - 1) * FTP_FB + i )); done
    # ... and as many with fwx moved onto the load CPU, where curl, vsftpd and the kernel's own
    # packet work (and so the FTP helper) run: each exchange fwx relays then wakes no idle CPU
    # (ROW-samecpu, a diagnostic; bench/README.md, issue 13 part 10)
    if [ "$name" = fwx-ftp-kernel ] && [ "$FWX_CPU" != any ] && [ -n "$FWX_PID" ]; then
        taskset -a -p -c "$LOAD_CPUS" "$FWX_CPU_PID" >/dev/null
        for i in $(seq 1 "$FTP_FB"); do fb_session "$name-samecpu" $(( ($2 - 1) * FTP_FB + i )); done
        taskset -a -p -c "$FWX_CPU" "$FWX_CPU_PID" >/dev/null
    fi
    return 0
}
# What waking a sleeping process costs on this machine, on one CPU and from the load CPU to
# fwx's: a relayed FTP exchange is two more such wake-ups than a direct one (FTP_FB's
# diagnostic; tcpbench wake: round trips of one byte, each after 200 us of sleep).
wake_cost() {
    [ "$FWX_CPU" != any ] || return 0
    local lc=${LOAD_CPUS%%-*} f pair
    for pair in "same $lc $lc" "cross $lc $FWX_CPU"; do
        set -- $pair
        f="$T/wake-$1.out"
        "$TB" wake "$2" "$3" 200 2000 >"$f" 2>&1 || { note "tcpbench wake $1 failed: $(head -c 200 "$f")"; continue; }
        put machine "wake_$1_p50_us" "$(kv p50_us "$f")"
        put machine "wake_$1_p90_us" "$(kv p90_us "$f")"
    done
}
fb_session() { # LABEL N: one passive session fetching small.bin, traced into $T/fb/LABEL.N.trace
    inc timeout 30 curl -s -S -o /dev/null --max-time 20 --ftp-pasv --trace-time \
        --trace-ascii "$T/fb/$1.$2.trace" "ftp://$S_IP/small.bin" >/dev/null 2>&1 || true
}

# ---- permission set-up latency ------------------------------------------------------------------------
# SETUP_RD: the round of the latency section (SETUP_ROUNDS) test_setup is measuring.
test_setup() { # ROW MODE(pasv|port) CONNECT_IP CONNECT_PORT DATA
    local row=$1 mode=$2 f="$T/setup-$1-$2-$SETUP_RD.out"
    inc "${RT_PRIO[@]}" timeout 150 "$KS" "$mode" $NS_C $NS_S "$3" "$4" $P_FTP "$SETUP_N" "$5" >"$f" 2>"$f.err" || true
    if [ -n "$(kv p99_us "$f")" ]; then
        # The round first: kreport pairs it with this round's p50_us and p99_us (ksetup prints
        # both whenever it prints p99_us), to subtract the baseline row of the same round.
        put "$row" "${mode}_round" "$SETUP_RD"
        for k in samples errors p50_us p90_us p99_us max_us cycle_p50_us cycle_p99_us data_ok data_fail data_slow data_connect_p99_us line first_error; do
            local v
            v=$(kv $k "$f")
            [ -n "$v" ] && put "$row" "${mode}_$k" "$v"
        done
    else
        note "$row $mode (round $SETUP_RD): ksetup failed: $(cat "$f" "$f.err" | tr '\n' ' ' | head -c 400)"
    fi
    return 0
}
user_gateway_up() { # TAG WITH_FTP(0|1): fwx-gateway, proxy backend, publishing G_IN:2121 -> S_IP:21
    local tag=$1 ftp=$2 filt="" plug=""
    [ "$ftp" = 1 ] && filt=" filters = [ \"$FTP_GUID\" ];" plug=" plugins = [ \"ftp\" ];"
    cat >"$T/gw-$tag.cfg" <<EOF
gateway = { name = "$FWX_NAME-u"; log_level = "warn"; plugin_dir = "$F/plugins";$plug
            control_socket = "$T/ctl-$tag.sock";
            local_addresses = [ "$G_IN", "$G_OUT" ]; };
protocols = ( { name = "ftp-in"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-0000000b2121}"; protocol = "tcp"; port = $P_PUB;
                direction = "inbound";$filt } );
rules = ( { name = "publish"; action = "allow"; from = [ "localhost", "external" ];
            to = [ "localhost", "external" ]; protocols = [ "ftp-in" ]; } );
publishing = ( { name = "ftp"; listen = "$G_IN:$P_PUB"; server = "$S_IP:$P_FTP"; protocol = "ftp-in";
                 full_proxy = true; } );
EOF
    start_gateway "$tag" "$T/gw-$tag.cfg" $P_PUB
}

# ---- conntrack events of flows that are not fwx's (SECTIONS: ctfilter) ------------------------------
# fwx (kperm, kernel mode, two permissions) runs while the gateway namespace carries flows that
# are not fwx's: the gateway's own traffic, clients connecting to a service of the gateway
# (G_IN:P_LOCAL) and a process of the gateway talking to itself over loopback. Every forwarded
# flow is fwx's (its forward policy drops what no grant or rule of its own lets through), so
# these are the unrelated flows a gateway's conntrack tracks; tests/netns/check_ct.c ("kernel
# filter unrelated zero") has unrelated forwarded, UDP and loopback flows, without fwx's table.
# fwx's event socket has the kernel's filter on its mark: the events of these flows never reach
# it (target: 0 us of fwx CPU per unrelated flow). Then the same fwx's own flows (connections
# its permissions admit, reported to its core as secondary connections; target <= 5 us each).
# `conntrack -E` counts the events the namespace made meanwhile, so the row shows they existed.
# fwx's CPU is read from schedstat (ns) and compared with as long a spell of no traffic.
P_LOCAL=7001
CTF_ROWS="fwx-ct-unrelated"
# fwx's CPU time in ns, every thread (schedstat: exact, where the tick count moves by 10 ms)
fwx_cpu_ns() {
    [ -n "$FWX_PID" ] || { echo 0; return; }
    cat /proc/"$FWX_CPU_PID"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'
}
ctfilter_rate() { # ROW KEY_PREFIX NS HOST PORT: a connection rate run, fwx's CPU per connection
    local row=$1 k=$2 ns=$3 f="$T/ctf-$2.out" c0 c1 i0 i1 conns ev0 ev1
    # fwx's own background for as long (its loop's timers), with no traffic at all
    i0=$(fwx_cpu_ns); sleep $RATE_S; i1=$(fwx_cpu_ns)
    ev0=$(wc -l <"$T/ctf-events.txt")
    local perf_pid=
    if [ "$k" = "${CTF_PERF_ROW:-owned}" ] && [ -n "${CTF_PERF:-}" ]; then # a profile of fwx over the measured run only
        perf record -e cpu-clock -F 4999 -g -p "$FWX_CPU_PID" -o "$CTF_PERF" -- sleep "$RATE_S" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    c0=$(fwx_cpu_ns)
    ip netns exec "$ns" "${LOAD_PIN[@]}" timeout $((RATE_S + 30)) "$TB" rate "$4" "$5" $RATE_S $RATE_CONC $RATE_SIZE \
        >"$f" 2>&1 || note "$row $k: rate: $(tail -c 300 "$f" | tr '\n' ' ')"
    c1=$(fwx_cpu_ns)
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    sleep 0.5   # the last events reach the listener
    ev1=$(wc -l <"$T/ctf-events.txt")
    conns=$(kv conns "$f")
    ctf_put "$row" "$k" "${conns:-0}" "$(kv conns_per_s "$f")" "$c0" "$c1" "$i0" "$i1" "$((ev1 - ev0))"
}
ctf_put() { # ROW KEY_PREFIX CONNS CONN/S C0 C1 I0 I1 NEW_EVENTS: a ctfilter row's figures (CPU in ns)
    local row=$1 k=$2 conns=$3
    if [ "$conns" -gt 0 ]; then
        put "$row" "${k}_conns" "$conns"
        put "$row" "${k}_cps" "$4"
        put "$row" "${k}_fwx_ms" "$(python3 -c "print(($6-$5)/1e6)")"
        put "$row" "${k}_fwx_idle_ms" "$(python3 -c "print(($8-$7)/1e6)")"
        # what the connections cost fwx beyond its idle background, per connection
        put "$row" "${k}_fwx_cpu_us_per_conn" "$(python3 -c "print(max(0.0, ($6-$5)-($8-$7))/1e3/$conns)")"
        put "$row" "${k}_ct_new_events" "$9"
    else
        put "$row" "${k}_conns" FAIL
    fi
}
ctfilter_steady() { # ROW KEY_PREFIX NS HOST PORT: fwx's CPU per own flow in a steady state
    # The load runs 2 * RATE_S; fwx's CPU and the namespace's NEW events are counted over
    # RATE_S - 1 seconds of its second half, when (TIME_WAIT at 1 s) flows end as fast as they
    # begin and the heap has stopped growing: each flow's NEW, its end (DESTROY) and its
    # connection's close are in the figure, per NEW event of the window.
    local row=$1 k=$2 ns=$3 f="$T/ctf-$2.out" c0 c1 i0 i1 ev0 ev1 w=$((RATE_S - 1)) lp perf_pid=
    i0=$(fwx_cpu_ns); sleep $w; i1=$(fwx_cpu_ns)
    ip netns exec "$ns" "${LOAD_PIN[@]}" timeout $((2 * RATE_S + 30)) "$TB" rate "$4" "$5" $((2 * RATE_S)) $RATE_CONC \
        $RATE_SIZE >"$f" 2>&1 &
    lp=$!
    sleep $RATE_S
    if [ "$k" = "${CTF_PERF_ROW:-owned}" ] && [ -n "${CTF_PERF:-}" ]; then
        perf record -e cpu-clock -F 4999 -g -p "$FWX_CPU_PID" -o "$CTF_PERF" -- sleep "$w" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    c0=$(fwx_cpu_ns); ev0=$(wc -l <"$T/ctf-events.txt")
    sleep $w
    c1=$(fwx_cpu_ns); ev1=$(wc -l <"$T/ctf-events.txt")
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    wait $lp || note "$row $k: rate: $(tail -c 300 "$f" | tr '\n' ' ')"
    local new=$((ev1 - ev0))
    [ "$(kv conns "$f")" -gt 0 ] 2>/dev/null || new=0 # the load itself failed
    ctf_put "$row" "$k" "$new" "$(python3 -c "print($new/$w)")" "$c0" "$c1" "$i0" "$i1" "$new"
}
test_ctfilter() { # ROUND
    local row=fwx-ct-unrelated ctev
    gw_reset
    ing "${LOAD_PIN[@]}" timeout 900 "$TB" serve $P_LOCAL >"$T/ctf-local-server.log" 2>&1 &
    PIDS+=($!); local srv=$!
    for _ in $(seq 1 50); do listening $NS_G $P_LOCAL && break; sleep 0.1; done
    start_kperm "ctf$1" --client $C_IP --allow $S_IP:$P_IPERF --allow $S_IP:$P_ECHO || { kill_tree $srv; return 1; }
    # the namespace's NEW events, counted by conntrack's own listener (not fwx)
    : >"$T/ctf-events.txt"
    ing "${LOAD_PIN[@]}" timeout 900 stdbuf -oL conntrack -E -e NEW -b 8388608 >"$T/ctf-events.txt" 2>"$T/ctf-ctev.err" &
    PIDS+=($!); ctev=$!
    sleep 0.3
    ctfilter_rate $row unrelated_in $NS_C $G_IN $P_LOCAL
    ctfilter_rate $row unrelated_lo $NS_G 127.0.0.1 $P_LOCAL
    ctfilter_rate $row owned $NS_C $S_IP $P_ECHO
    # The same flows' whole life in a steady state (ctfilter_steady), with the namespace's
    # TIME_WAIT at 1 s so they end within the run. The table is emptied first (the run above left
    # its flows in TIME_WAIT for 120 s: the new ones would reuse their ports and end them inside
    # this run), and fwx is given the time to read the flush's DESTROY events.
    ing conntrack -F >/dev/null 2>&1 || true
    sleep 3
    ing sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=1
    ctfilter_steady $row owned_life $NS_C $S_IP $P_ECHO
    ing sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=120
    kill_tree $ctev
    stop_fwx
    put $row kernel_secondaries_seen "$(kv kernel_secondaries_seen "$FWX_OUT")"
    kill_tree $srv
    gw_reset
}

# ================================================================================================
START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "mode: $([ "$QUICK" = 1 ] && echo quick || echo full); rounds: $REPEAT; fwx CPU: $FWX_CPU, load CPUs: $LOAD_CPUS; fwx-ftp-kernel by: $FWX_FTP"
SECTIONS=${SECTIONS:-tput ftp setup ctfilter}
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
want tput || TP_ROWS=""
want ftp || FTP_ROWS=""
# Rows in the order given in odd rounds and reversed in even ones: the machine's speed drifts
# within a round as well as between rounds (other guests of its host), and a row that always came
# last would carry that drift in every ratio (bench/README.md, issue 13 part 10).
in_order() { # ROUND ROW...: the round's rows
    local rd=$1; shift
    if [ $((rd % 2)) = 1 ]; then echo "$@"; else printf '%s\n' "$@" | tac | tr '\n' ' '; fi
}
for rd in $(seq 1 $TP_REPEAT); do
    for name in $(in_order "$rd" $TP_ROWS); do
        log "round $rd/$TP_REPEAT, $name: throughput, connection rate"
        if row_up "$name" "$rd"; then
            test_tput "$name" "$rd"
            sleep 0.5
            test_rate "$name" "$rd"
        else
            put "$name" tput_gbps FAIL; put "$name" rate_cps FAIL
        fi
        row_down "$name"
        sleep 1
    done
done

[ -n "$FTP_ROWS" ] && start_vsftpd
[ -n "$FTP_ROWS" ] && [ "$FTP_FB" -gt 0 ] && wake_cost
[ -n "$FTP_ROWS" ] && cat "$FTPD/root/big.bin" >/dev/null   # into the page cache (a sparse file's holes too), before any row
for rd in $(seq 1 $REPEAT); do
    for name in $(in_order "$rd" $FTP_ROWS); do
        log "round $rd/$REPEAT, $name: FTP download of $FTP_MB MiB"
        if ftp_row_up "$name" "$rd"; then
            test_ftp "$name" "$rd"
        else
            put "$name" ftp_gbps FAIL
        fi
        ftp_row_down "$name"
        sleep 0.5
    done
done
[ -n "$FTP_ROWS" ] && kill_tree "$VSFTPD_PID"   # port 21 is the scripted server's now
# Each traced session's time to first byte into the results: kreport judges the target on them
if [ "$FTP_FB" -gt 0 ] && [ -n "$FTP_ROWS" ]; then
    python3 "$HERE/ftpphases.py" --tsv "$T/fb" >>"$RES" || note "ftpphases.py --tsv failed"
fi

if want setup; then
    # SETUP_ROWS="kernel-ftp-kperm kernel-ftp-10k ...": only those rows of the section (default: all)
    srow() { [ -z "${SETUP_ROWS:-}" ] && return 0; case " $SETUP_ROWS " in *" $1 "*) return 0 ;; esac; return 1; }
    FWX_SCHED=("${RT_PRIO[@]}")
    SETUP_GRANTS=${SETUP_GRANTS:-10000}
    SETUP_T0=$(date +%s)
    # SETUP_ROUNDS passes over every row, each row's fwx started afresh in each: the baseline
    # rows (user-relay, kernel-relay) run in the same pass as the rows kreport subtracts them
    # from, so a spell of other load falls on both sides of a share.
    # The baselines relay both lines: a row's PORT is measured against a relayed PORT (client ->
    # server), its 227 against a relayed 227 (server -> client).
    for SETUP_RD in $(seq 1 "$SETUP_ROUNDS"); do
        log "round $SETUP_RD/$SETUP_ROUNDS, permission set-up latency: $SETUP_N exchanges per row$([ "${RT:-0}" = 1 ] && echo ', SCHED_FIFO')"
        gw_reset
        if srow user-ftp && user_gateway_up "user-ftp$SETUP_RD" 1; then
            test_setup user-ftp pasv $G_IN $P_PUB 1
            test_setup user-ftp port $G_IN $P_PUB 1
            test_setup user-ftp-nodata pasv $G_IN $P_PUB 0
            test_setup user-ftp-nodata port $G_IN $P_PUB 0
            stop_fwx
        fi
        if srow user-relay && user_gateway_up "user-relay$SETUP_RD" 0; then
            test_setup user-relay pasv $G_IN $P_PUB 0
            test_setup user-relay port $G_IN $P_PUB 0
            stop_fwx
        fi
        gw_reset
        if srow kernel-ftp && fwx_transparent_up "setup-kftp$SETUP_RD" ftp "$FTP_GUID"; then
            test_setup kernel-ftp pasv $S_IP $P_FTP 1
            test_setup kernel-ftp port $S_IP $P_FTP 1
            test_setup kernel-ftp-nodata pasv $S_IP $P_FTP 0
            test_setup kernel-ftp-nodata port $S_IP $P_FTP 0
            stop_fwx
        fi
        # The FTP filter with 10,000 other grants outstanding (kperm --grants: one-shot permissions
        # of another client, elements of once4), against the same harness with none: set-up latency
        # must not grow with the grants the table holds.
        if [ "$SETUP_GRANTS" -gt 0 ]; then
            for row in kernel-ftp-kperm kernel-ftp-10k; do
                srow $row || continue
                gw_reset
                ng=0; [ $row = kernel-ftp-10k ] && ng=$SETUP_GRANTS
                if start_kperm "setup-$row$SETUP_RD" --plugin "$F/plugins/ftp.so" --filter "$FTP_GUID" --grants "$ng"; then
                    for k in grants grants_add_p50_us grants_add_p99_us grants_add_total_ms; do
                        v=$(kv $k "$FWX_OUT"); [ -n "$v" ] && put $row "$k" "$v"
                    done
                    put $row grants_in_table "$(ing nft -n list set inet $FWX_TABLE once4 | grep -o ' \. 6 \. ' | wc -l)"
                    test_setup $row pasv $S_IP $P_FTP 1
                    test_setup $row port $S_IP $P_FTP 1
                    stop_fwx
                fi
            done
        fi
        gw_reset
        if srow kernel-relay && fwx_transparent_up "setup-krelay$SETUP_RD" conn-logger "$CL_GUID"; then
            test_setup kernel-relay pasv $S_IP $P_FTP 0
            test_setup kernel-relay port $S_IP $P_FTP 0
            stop_fwx
        fi
        gw_reset
        srow kernel-nat-fwd && nft_nat
        srow kernel-nat-fwd && test_setup kernel-nat-fwd pasv $S_IP $P_FTP 0
        gw_reset
    done
    SETUP_S=$(( $(date +%s) - SETUP_T0 ))
    log "permission set-up latency: $SETUP_ROUNDS rounds in ${SETUP_S}s"
fi
if want ctfilter; then
    FWX_SCHED=()
    for rd in $(seq 1 $REPEAT); do
        log "round $rd/$REPEAT, fwx-ct-unrelated: flows that are not fwx's, then fwx's own"
        test_ctfilter "$rd" || put fwx-ct-unrelated unrelated_in_conns FAIL
    done
fi
ELAPSED=$(( $(date +%s) - START ))

[ -n "${RESULTS:-}" ] && cp "$RES" "$RESULTS"
python3 "$HERE/kreport.py" "$RES" "$NOTES" \
    "mode=$([ "$QUICK" = 1 ] && echo quick || echo full) nproc=$NCPU kernel=$(uname -r) fwx_cpu=$FWX_CPU load_cpus=$LOAD_CPUS elapsed=${ELAPSED}s tput=${TPUT_S}s rate=${RATE_S}s/${RATE_CONC}conc repeat=$REPEAT tp_repeat=$TP_REPEAT ftp=${FTP_MB}MiB setup_n=$SETUP_N setup_rounds=$SETUP_ROUNDS${SETUP_S:+ (${SETUP_S}s)} ftp_fb=$FTP_FB rt=${RT:-0} sections=${SECTIONS// /,} fwx-ftp-kernel=$FWX_FTP loadavg start $LOAD0 end $(cut -d' ' -f1-3 /proc/loadavg)" \
    "fwx $GW_DESC; $(iperf3 -v 2>/dev/null | head -1 | awk '{print "iperf3", $2}'); $(curl -V 2>/dev/null | head -1 | awk '{print "curl", $2}'); vsftpd $(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null); $(nft -v 2>/dev/null)" \
    "$([ -f "$T/fwx-kernel-elements.txt" ] && cat "$T/fwx-kernel-elements.txt")" \
    || fail "report failed"
if [ "$FTP_FB" -gt 0 ] && [ -n "$FTP_ROWS" ]; then
    echo
    echo "FTP_FB: time to first byte by exchange, ms (bench/ftpphases.py; ROW-cold: each round's first session, on a fresh gateway; ROW: $FTP_FB sessions per round after the transfer; a 4 KiB file)"
    python3 "$HERE/ftpphases.py" "$T/fb" || fail "ftpphases.py failed"
fi
exit 0
