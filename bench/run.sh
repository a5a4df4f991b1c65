#!/usr/bin/env bash
# fwx relay benchmark: fwx-gateway against HAProxy (splice / no splice), nginx stream, socat and
# plain kernel forwarding, in one run, on one machine, through three network namespaces.
#
#   bench/run.sh [BUILD_DIR]          full mode (default BUILD_DIR: build)
#   QUICK=1 bench/run.sh [BUILD_DIR]  quick mode, under 2 minutes
#
# Needs root. Builds nothing of fwx: expects BUILD_DIR/examples/fwx-gateway/fwx-gateway. It
# compiles its own load tool (bench/tcpbench.c) into a temp dir. Missing Debian packages
# (haproxy nginx libnginx-mod-stream socat iperf3) are installed with apt-get.
# Traffic stays inside the namespaces fwxb-cli, fwxb-gw and fwxb-srv (10.99.1.0/24, 10.99.2.0/24),
# which this script creates and deletes. It is a benchmark, not a test: it prints figures and
# exits 0 unless the harness itself broke. Not part of `meson test`.
#
# Environment knobs: QUICK=1, PIN=0 (don't pin the relay to its own CPU), ONLY="fwx haproxy-splice"
# (subset of relays), KEEP=1 (keep the temp dir), RESULTS=FILE (copy the raw results TSV there),
# PERF=1 (record a perf profile of fwx during the connection-rate and latency tests), CGROUP=0 (no
# memory cgroup per relay: the kernel memory figure falls back to the system-wide slab delta),
# LOOPS=0 (skip bench/loops.sh, the event-loop figures).
# SPDX-License-Identifier: MIT
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
GW_BIN="$BUILD/examples/fwx-gateway/fwx-gateway"
QUICK=${QUICK:-0}
# Syscalls per connection are part of every full run (an extra short run under strace -c).
STRACE=${STRACE:-$([ "$QUICK" = 1 ] && echo 0 || echo 1)}
PIN=${PIN:-1}
ALL_RELAYS="fwx haproxy-splice haproxy-nosplice nginx socat kernel"
ONLY=${ONLY:-$ALL_RELAYS}

if [ "$QUICK" = 1 ]; then
    TPUT_S=2 RATE_S=2 RR_S=2 REPEAT=1
else
    TPUT_S=8 RATE_S=5 RR_S=5 REPEAT=3
fi
IDLE_N=1000    # idle relayed connections for the memory figure
RATE_CONC=64   # connections in flight in the connection-rate test
RR_CONCS="1 16" # persistent connections in the latency tests (one run each), one request outstanding on each
RR_SIZE=64     # request and response size, bytes

# Named with our pid: two runs at once (other engineers' benches) never touch each other's.
NS_C=fwxb-cli-$$ NS_G=fwxb-gw-$$ NS_S=fwxb-srv-$$
C_IP=10.99.1.2 G_IN=10.99.1.1 G_OUT=10.99.2.1 S_IP=10.99.2.2
P_IPERF=5201 P_ECHO=7000

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "HARNESS ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (network namespaces)"
[ -x "$GW_BIN" ] || fail "$GW_BIN not found: build fwx first (meson setup build && ninja -C build)"

# ---- tools -------------------------------------------------------------------------------------
need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v socat >/dev/null || need+=(socat)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v cc >/dev/null || need+=(gcc)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null || fail "apt-get install ${need[*]} failed"
fi
# The packages may start system services; this benchmark runs its own servers only.
for svc in haproxy nginx iperf3; do
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif service "$svc" status >/dev/null 2>&1; then
        service "$svc" stop >/dev/null 2>&1 || true
    fi
done

# ---- temp dir, cleanup ---------------------------------------------------------------------------
T=$(mktemp -d /tmp/fwxbench.XXXXXX)
PIDS=()   # every process this script started (killed by pid at exit)
cleanup() {
    local rc=$?
    set +e
    for p in "${PIDS[@]}"; do kill_tree "$p"; done
    for n in $NS_C $NS_G $NS_S; do ip netns del "$n" 2>/dev/null; done
    cg_remove
    if [ "${KEEP:-0}" = 1 ]; then log "temp dir kept: $T"; else rm -rf "$T"; fi
    exit $rc
}
# Every descendant of a pid (children first found, then theirs), by pid.
descendants() {
    local k
    for k in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$k"
        descendants "$k"
    done
}
# Kills a process this script started and all its descendants (socat forks, nginx workers, the
# timeout/tcpbench under a backgrounded shell function), by pid: TERM first, KILL what remains.
kill_tree() {
    local p=$1 kids k
    [ -n "$p" ] && [ -d /proc/"$p" ] || return 0
    kids=$(descendants "$p")
    kill -TERM "$p" $kids 2>/dev/null
    for _ in $(seq 1 40); do
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
# ---- the relay's own kernel memory: a memory cgroup per relay ---------------------------------
# The system-wide slab delta (slab_kb below) counts the client's and server's sockets and whatever
# else the machine does meanwhile; it moved by more than the difference between relays. A memory
# cgroup of the relay's own charges it only what its processes allocate: the sockets it accepts
# and opens, their epoll items, files, pipes and socket buffers. Made as a child of this
# script's own memory cgroup (so the relay stays inside whatever limits this script runs under),
# named with our pid, removed at exit. cgroup v2 (memory.stat: kernel + sock) if the memory
# controller is there, else v1 (memory.kmem.usage_in_bytes + memory.kmem.tcp.usage_in_bytes);
# neither: the figure is left out and the report falls back to the slab delta.
CG_MODE= CG_BASE=
if [ "${CGROUP:-1}" = 1 ]; then
    cg2=$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup 2>/dev/null || true)
    cg1=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup 2>/dev/null || true)
    if [ -n "$cg2" ] && [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers \
        && grep -qw memory "/sys/fs/cgroup${cg2%/}/cgroup.subtree_control" 2>/dev/null; then
        CG_MODE=v2 CG_BASE=/sys/fs/cgroup${cg2%/}
    elif [ -n "$cg1" ] && [ -f "/sys/fs/cgroup/memory${cg1%/}/memory.kmem.usage_in_bytes" ]; then
        CG_MODE=v1 CG_BASE=/sys/fs/cgroup/memory${cg1%/}
    fi
fi
# By name (cg_enter runs in a command substitution, a subshell: it cannot keep a list for us).
cg_remove() {
    local d
    [ -n "$CG_BASE" ] || return 0
    for d in "$CG_BASE"/fwxb-$$-*; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
    return 0
}
# cg_enter NAME PID...: a fresh cgroup fwxb-<our pid>-NAME with the given processes in it; echoes its path
cg_enter() {
    local name=$1 d p; shift
    [ -n "$CG_MODE" ] || return 1
    d="$CG_BASE/fwxb-$$-$name"
    [ -d "$d" ] && rmdir "$d" 2>/dev/null
    mkdir "$d" 2>/dev/null || return 1
    # v1 counts socket buffers (kmem.tcp) only once a limit is set; an unreachable one
    [ "$CG_MODE" = v1 ] && echo 9223372036854771712 2>/dev/null >"$d/memory.kmem.tcp.limit_in_bytes"
    for p in "$@"; do echo "$p" >"$d/cgroup.procs" 2>/dev/null || return 1; done
    echo "$d"
}
# cg_kernel_kb DIR: kernel memory charged to the cgroup, KiB (slab, stacks, page tables, socket buffers)
cg_kernel_kb() {
    case $CG_MODE in
    v2) awk '$1=="kernel"{k=$2} $1=="sock"{s=$2} END{printf "%d\n", (k+s)/1024}' "$1/memory.stat" ;;
    v1) echo $(( ($(cat "$1/memory.kmem.usage_in_bytes") + $(cat "$1/memory.kmem.tcp.usage_in_bytes")) / 1024 )) ;;
    esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -Wall -o "$T/tcpbench" "$HERE/tcpbench.c" || fail "cannot compile bench/tcpbench.c"
# Snapshot the gateway and its library (RUNPATH $ORIGIN/../../lib): a rebuild of BUILD during the
# run must not change what is measured half-way.
mkdir -p "$T/fwx/examples/fwx-gateway" "$T/fwx/lib"
cp -L "$GW_BIN" "$T/fwx/examples/fwx-gateway/fwx-gateway"
for l in "$BUILD"/lib/libfwx.so*; do [ -f "$l" ] && cp -L "$l" "$T/fwx/lib/"; done
GW_DESC="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown), binary $(date -r "$GW_BIN" '+%F %T')"
GW_BIN="$T/fwx/examples/fwx-gateway/fwx-gateway"
TB="$T/tcpbench"

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
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    RELAY_CPU=$((NCPU - 1)); LOAD_CPUS="0-$((NCPU - 2))"
    RELAY_PIN=(taskset -c $RELAY_CPU); LOAD_PIN=(taskset -c $LOAD_CPUS)
else
    RELAY_CPU=any LOAD_CPUS=any; RELAY_PIN=(); LOAD_PIN=()
fi
inc() { ip netns exec $NS_C "${LOAD_PIN[@]}" "$@"; }   # a load generator in the client namespace

# servers (whole run): iperf3 and the echo server
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

# ---- the quick form of fwx-gateway (checked once, reported) -------------------------------------
ip netns exec $NS_G timeout 3 "$GW_BIN" --listen $G_IN:7999 --upstream $S_IP:$P_ECHO >"$T/fwx-quickform.log" 2>&1 &
qf=$!; PIDS+=($qf)
for _ in $(seq 1 20); do listening $NS_G 7999 && break; [ -d /proc/$qf ] || break; sleep 0.1; done
if ! listening $NS_G 7999; then
    note "fwx-gateway quick form (--listen/--upstream, no --plugin) refused to start: $(head -c 300 "$T/fwx-quickform.log" | tr '\n' ' ') -- using --config with the same policy (publishing rule, full_proxy) instead"
fi
kill_tree $qf

# ---- relays ----------------------------------------------------------------------------------------
RELAY_PID=
# start_relay NAME LISTEN_PORT UPSTREAM_PORT: runs the relay in the gateway namespace, pinned.
start_relay() {
    local name=$1 lp=$2 up=$3 d="$T/$1-$2"
    mkdir -p "$d"
    case $name in
    fwx)
        cat >"$d/fwx.cfg" <<EOF
# What the quick form builds (examples/fwx-gateway/gateway.c quick_policy), without the empty filter
# list, and with log_level warn so that logging does not weigh on the relay.
gateway = { log_level = "warn"; };
protocols = ( { name = "published"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-00000000$(printf %04x "$lp")}";
                protocol = "tcp"; port = $lp; direction = "inbound"; } );
rules = ( { name = "publish"; action = "allow"; from = [ "localhost", "external" ];
            to = [ "localhost", "external" ]; protocols = [ "published" ]; } );
publishing = ( { name = "bench"; listen = "$G_IN:$lp"; server = "$S_IP:$up"; protocol = "published";
                 full_proxy = true; } );
EOF
        ip netns exec $NS_G "${RELAY_PIN[@]}" "$GW_BIN" --config "$d/fwx.cfg" >"$d/log" 2>&1 &
        ;;
    haproxy-splice | haproxy-nosplice)
        local opt="option splice-auto" glob=""
        [ $name = haproxy-nosplice ] && opt="" glob="nosplice"
        cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000
    $glob
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    $opt
frontend f
    bind $G_IN:$lp backlog 4096
    default_backend b
backend b
    server s $S_IP:$up
EOF
        ip netns exec $NS_G "${RELAY_PIN[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/log" 2>&1 &
        ;;
    nginx)
        cat >"$d/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 20000; }
stream {
    server {
        listen $G_IN:$lp backlog=4096;
        proxy_pass $S_IP:$up;
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
    }
}
EOF
        ip netns exec $NS_G "${RELAY_PIN[@]}" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" >"$d/log" 2>&1 &
        ;;
    socat)
        ip netns exec $NS_G "${RELAY_PIN[@]}" socat TCP4-LISTEN:$lp,bind=$G_IN,reuseaddr,fork,backlog=4096 \
            TCP4:$S_IP:$up >"$d/log" 2>&1 &
        ;;
    esac
    RELAY_PID=$!
    PIDS+=($RELAY_PID)
    for _ in $(seq 1 50); do listening $NS_G "$lp" && break; [ -d /proc/$RELAY_PID ] || break; sleep 0.1; done
    if ! listening $NS_G "$lp"; then
        note "$name did not start listening on $G_IN:$lp: $(tail -c 400 "$d/log" | tr '\n' ' ')"
        kill_tree $RELAY_PID; RELAY_PID=
        return 1
    fi
    sleep 0.2
}
stop_relay() { [ -n "$RELAY_PID" ] && kill_tree "$RELAY_PID"; RELAY_PID=; }
relay_alive() { [ -n "$RELAY_PID" ] && [ -d /proc/$RELAY_PID ] && ! grep -q '^State:.*Z' /proc/$RELAY_PID/status 2>/dev/null; }
check_alive() { # NAME TEST PORT
    if ! relay_alive; then
        local st=0
        wait "$RELAY_PID" 2>/dev/null || st=$?
        note "$1 DIED during the $2 test (exit status $st): $(tail -c 600 "$T/$1-$3/log" | tr '\n' ' ')"
        put "$1" "crashed_in" "$2"
        RELAY_PID=
        return 1
    fi
}
# pids of the relay and its children (nginx worker, socat forks)
tree_pids() { [ -n "$RELAY_PID" ] || return 0; echo "$RELAY_PID"; pgrep -P "$RELAY_PID" 2>/dev/null || true; }
# "rss_kB pss_kB" summed over the relay's processes
mem_kb() {
    local r=0 s=0 p v
    for p in $(tree_pids); do
        v=$(awk '/^Rss:/{r=$2} /^Pss:/{s=$2} END{print r+0, s+0}' /proc/"$p"/smaps_rollup 2>/dev/null || echo "0 0")
        r=$((r + ${v% *})); s=$((s + ${v#* }))
    done
    echo "$r $s"
}
# pipes the relay's processes hold open (each pipe is two fds; counted as fds / 2)
pipe_count() {
    local n=0 p
    for p in $(tree_pids); do
        n=$((n + $(ls -l /proc/"$p"/fd 2>/dev/null | grep -c 'pipe:')))
    done
    echo $((n / 2))
}
# CPU ticks (user+system, children included) used by the relay's processes so far
cpu_ticks() {
    local t=0 p v
    for p in $(tree_pids); do
        v=$(awk '{sub(/^.*\) /,""); print $12+$13+$14+$15}' /proc/"$p"/stat 2>/dev/null || echo 0)
        t=$((t + v))
    done
    echo $t
}
CLK=$(getconf CLK_TCK)
# kernel slab in use, system-wide, KiB: active objects x object size over every cache (/proc/slabinfo).
# Counting active objects (not Slab: in /proc/meminfo) keeps free objects cached by earlier tests
# out of the figure.
slab_kb() { awk 'NR>2{t+=$2*$4} END{printf "%d\n", t/1024}' /proc/slabinfo; }
kv() { awk -v k="$1" '$1==k{print $2}' "$2"; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(statistics.median(v) if v else "")' "$@"; }

# ---- the tests ------------------------------------------------------------------------------------
# target host/port a client uses for relay NAME
host_of() { [ "$1" = kernel ] && echo $S_IP || echo $G_IN; }

test_throughput() { # NAME ROUND
    local name=$1 rd=$2 host c0 c1 f bps
    host=$(host_of "$name")
    if [ "$name" != kernel ]; then start_relay "$name" $P_IPERF $P_IPERF || { put "$name" tput_gbps FAIL; return 0; }; fi
    f="$T/$name-iperf-$rd.json"
    c0=$(cpu_ticks)
    inc timeout $((TPUT_S + 20)) iperf3 -c "$host" -p $P_IPERF -t $TPUT_S -J >"$f" 2>&1 || true
    c1=$(cpu_ticks)
    bps=$(python3 -c 'import json,sys
try:
    j=json.load(open(sys.argv[1])); print(j["end"]["sum_received"]["bits_per_second"]/1e9)
except Exception: print("")' "$f")
    if [ -n "$bps" ]; then
        put "$name" tput_gbps "$bps"
        [ "$name" != kernel ] && put "$name" tput_relay_cpu_pct "$(python3 -c "print(100.0*($c1-$c0)/$CLK/$TPUT_S)")"
    else
        note "$name: iperf3 (round $rd) failed: $(head -c 300 "$f" | tr '\n' ' ')"
        put "$name" tput_gbps FAIL
    fi
    if [ "$name" != kernel ]; then check_alive "$name" throughput $P_IPERF && stop_relay; fi
    return 0
}

test_idle_memory() { # NAME: RSS/PSS of the relay and kernel slab before/after IDLE_N idle relayed connections
    local name=$1 host f m0 m1 s0 s1 q0 q1 ipid ok ct cg= k0= k1=
    host=$(host_of "$name")
    # the relay's processes in a cgroup of their own, before the warm-up: what they allocate
    # from now on is charged there (what they allocated before stays where it was)
    [ "$name" != kernel ] && cg=$(cg_enter "$name" $(tree_pids)) || cg=
    # warm up (first-connection allocations), then open the idle connections
    inc timeout 10 "$TB" rr "$host" $P_ECHO 0.3 2 16 >/dev/null 2>&1 || true
    sleep 0.5
    [ -n "$cg" ] && k0=$(cg_kernel_kb "$cg")
    m0=$(mem_kb); s0=$(slab_kb); q0=$(pipe_count)
    f="$T/$name-idle.out"
    ip netns exec $NS_C "${LOAD_PIN[@]}" timeout 120 "$TB" idle "$host" $P_ECHO $IDLE_N 90 >"$f" 2>&1 &
    ipid=$!; PIDS+=($ipid)
    for _ in $(seq 1 700); do grep -q '^ready' "$f" && break; [ -d /proc/$ipid ] || break; sleep 0.1; done
    sleep 1
    m1=$(mem_kb); s1=$(slab_kb); q1=$(pipe_count)
    [ -n "$cg" ] && k1=$(cg_kernel_kb "$cg")
    ok=$(awk '/^ready/{print $2}' "$f")
    ct=$(ip netns exec $NS_G cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo "")
    kill_tree $ipid
    if [ -n "$ok" ] && [ "$ok" -gt 0 ]; then
        put "$name" idle_ok "$ok"
        if [ "$name" != kernel ]; then
            put "$name" mem_rss_kb_per_conn "$(python3 -c "print((${m1% *}-${m0% *})/$ok)")"
            put "$name" mem_pss_kb_per_conn "$(python3 -c "print((${m1#* }-${m0#* })/$ok)")"
            put "$name" mem_rss_base_kb "${m0% *}"
            put "$name" pipes_per_idle_conn "$(python3 -c "print(($q1-$q0)/$ok)")"
            [ -n "$k0" ] && [ -n "$k1" ] && put "$name" cg_kernel_kb_per_conn "$(python3 -c "print(($k1-$k0)/$ok)")"
        fi
        put "$name" slab_kb_per_conn "$(python3 -c "print(($s1-$s0)/$ok)")"
        [ "$name" = kernel ] && put "$name" conntrack_entries "${ct:-none}"
        [ "$ok" -lt "$IDLE_N" ] && note "$name: only $ok of $IDLE_N idle connections were relayed"
    else
        note "$name: idle connections failed: $(head -c 300 "$f" | tr '\n' ' ')"
        put "$name" idle_ok 0
    fi
    sleep 1
}

perf_start() { # WHAT: profile fwx-gateway during the next test (PERF=1, first round only)
    PERF_PID=
    if [ "${PERF:-0}" = 1 ] && [ "$1" = fwx ] && [ "$3" = 1 ] && command -v perf >/dev/null; then
        perf record -q -g -p "$RELAY_PID" -o "$T/perf-fwx-$2.data" -- sleep "$4" >/dev/null 2>&1 &
        PERF_PID=$!; PIDS+=($PERF_PID)
    fi
}
perf_wait() { [ -n "${PERF_PID:-}" ] && wait "$PERF_PID" 2>/dev/null || true; }

test_echo_suite() { # NAME ROUND: (round 1: memory per idle connection,) latency, connection rate
    local name=$1 rd=$2 host f c0 c1 cps conns errs
    host=$(host_of "$name")
    if [ "$name" != kernel ]; then
        start_relay "$name" $P_ECHO $P_ECHO || { put "$name" rate_cps FAIL; put "$name" rr_p99_us FAIL; return 0; }
    fi
    if [ "$rd" = 1 ]; then
        test_idle_memory "$name"
        if [ "$name" != kernel ]; then check_alive "$name" idle-memory $P_ECHO || return 0; fi
    fi

    # latency, at 1 and at 16 connections (the first run's figures are the table's rr_*)
    local cc pre
    for cc in $RR_CONCS; do
        pre=rr$cc
        [ "$cc" = "${RR_CONCS%% *}" ] && pre=rr
        perf_start "$name" "rr$cc" "$rd" "$RR_S"
        f="$T/$name-rr$cc-$rd.out"
        inc timeout $((RR_S + 30)) "$TB" rr "$host" $P_ECHO $RR_S $cc $RR_SIZE >"$f" 2>&1 || note "$name: rr ($cc conn): $(tail -c 300 "$f" | tr '\n' ' ')"
        perf_wait
        for k in p50_us p99_us p999_us rr_per_s errors; do
            put "$name" "${pre}_$k" "$(kv $k "$f")"
        done
        sleep 0.2
    done
    if [ "$name" != kernel ]; then check_alive "$name" latency $P_ECHO || return 0; fi
    sleep 0.5

    # connection rate
    perf_start "$name" rate "$rd" "$RATE_S"
    f="$T/$name-rate-$rd.out"
    c0=$(cpu_ticks)
    inc timeout $((RATE_S + 30)) "$TB" rate "$host" $P_ECHO $RATE_S $RATE_CONC $RR_SIZE >"$f" 2>&1 || note "$name: rate: $(tail -c 300 "$f" | tr '\n' ' ')"
    c1=$(cpu_ticks)
    perf_wait
    cps=$(kv conns_per_s "$f"); conns=$(kv conns "$f"); errs=$(kv errors "$f")
    if [ -n "$cps" ]; then
        put "$name" rate_cps "$cps"
        put "$name" rate_errors "${errs:-0}"
        put "$name" rate_conn_p99_us "$(kv conn_p99_us "$f")"
        [ "${conns:-0}" -gt 0 ] && [ "$name" != kernel ] && put "$name" rate_relay_cpu_us_per_conn "$(python3 -c "print(1e6*($c1-$c0)/$CLK/$conns)")"
        [ "${errs:-0}" -gt 0 ] && note "$name: connection rate (round $rd): $errs failed connections (of $((conns + errs)))"
    else
        put "$name" rate_cps FAIL
    fi
    if [ "$name" != kernel ]; then check_alive "$name" connection-rate $P_ECHO || return 0; fi

    # syscalls per relayed connection (STRACE=1, round 1): a short extra rate run under strace -c
    if [ "${STRACE:-0}" = 1 ] && [ "$rd" = 1 ] && [ "$name" != kernel ] && command -v strace >/dev/null; then
        sleep 0.5
        local sp
        strace -c -f -o "$T/strace-$name.txt" -p "$RELAY_PID" >/dev/null 2>&1 &
        sp=$!; PIDS+=($sp)
        sleep 0.5
        inc timeout 30 "$TB" rate "$host" $P_ECHO 2 $RATE_CONC $RR_SIZE >"$T/$name-strace-rate.out" 2>&1 || true
        kill -INT $sp 2>/dev/null || true
        wait $sp 2>/dev/null || true
        conns=$(kv conns "$T/$name-strace-rate.out")
        if [ -s "$T/strace-$name.txt" ] && [ "${conns:-0}" -gt 0 ]; then
            put "$name" syscalls_per_conn "$(awk -v n="$conns" '$NF=="total"{print $4/n}' "$T/strace-$name.txt")"
            awk -v n="$conns" 'NR>2 && $NF!="total" && $1 ~ /^[0-9.]+$/ && $4/n >= 0.05 {printf "%s %.2f, ", $NF, $4/n}' \
                "$T/strace-$name.txt" >"$T/strace-$name.per-conn"
            put "$name" syscall_mix "$(cat "$T/strace-$name.per-conn")"
        fi
    fi
    sleep 1 # let TIME_WAIT sockets age a little (tw_reuse is on)
    [ "$name" != kernel ] && stop_relay
    return 0
}

START=$(date +%s)
log "mode: $([ "$QUICK" = 1 ] && echo quick || echo full); relays: $ONLY; rounds: $REPEAT; relay CPU: $RELAY_CPU, load CPUs: $LOAD_CPUS"
for name in $ONLY; do
    case " $ALL_RELAYS " in *" $name "*) ;; *) fail "unknown relay $name" ;; esac
done
# Rounds interleave the relays, so that a burst of other load on the machine spreads over all of
# them instead of falling on one; the report takes the median of the rounds.
for rd in $(seq 1 $REPEAT); do
    for name in $ONLY; do
        log "round $rd/$REPEAT, $name: throughput"
        test_throughput "$name" "$rd"
        log "round $rd/$REPEAT, $name: $([ "$rd" = 1 ] && echo 'idle memory, ')latency, connection rate"
        test_echo_suite "$name" "$rd"
    done
done
ELAPSED=$(( $(date +%s) - START ))

if [ "${PERF:-0}" = 1 ]; then
    for w in rate rr1 rr16; do
        [ -f "$T/perf-fwx-$w.data" ] || continue
        perf report -i "$T/perf-fwx-$w.data" --no-children --sort symbol --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | grep '%' | head -25 >"$T/perf-fwx-$w.txt" || true
        log "perf profile of fwx-gateway during the $w test (top symbols, self time):"
        cat "$T/perf-fwx-$w.txt" >&2
    done
fi

[ "${LOOPS:-1}" = 0 ] || QUICK=$QUICK "$HERE/loops.sh" "$BUILD" || note "bench/loops.sh (event loops) failed: its lines above say why"
[ -n "${RESULTS:-}" ] && cp "$RES" "$RESULTS"
python3 "$HERE/report.py" "$RES" "$NOTES" \
    "mode=$([ "$QUICK" = 1 ] && echo quick || echo full) nproc=$NCPU kernel=$(uname -r) relay_cpu=$RELAY_CPU load_cpus=$LOAD_CPUS elapsed=${ELAPSED}s tput=${TPUT_S}s rate=${RATE_S}s/${RATE_CONC}conc rr=${RR_S}s/${RR_CONCS// /+}conn/${RR_SIZE}B repeat=$REPEAT idle=$IDLE_N" \
    "fwx-gateway $GW_DESC; $(haproxy -v 2>/dev/null | head -1 | awk '{print "haproxy", $3}'); $(nginx -v 2>&1 | sed 's/.*nginx\//nginx /'); $(socat -V 2>/dev/null | awk '/socat version/{print "socat", $3}'); $(iperf3 -v 2>/dev/null | head -1 | awk '{print "iperf3", $2}')" \
    || fail "report failed"
exit 0
