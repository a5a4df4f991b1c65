#!/usr/bin/env bash
# fwx-gateway's event loops: connections per relay-CPU-second at 1 and at 2 loops (--threads),
# and the aggregate connection rate, through three network namespaces of its own.
#
#   bench/loops.sh [BUILD_DIR]          (default BUILD_DIR: build; QUICK=1: shorter rounds)
#
# Needs root. The gateway publishes an echo server (bench/tcpbench.c, compiled here) on a wildcard
# address; the load comes from CLIENTS client addresses at once (one tcpbench each, each to its own
# gateway address so that the route picks its source), because fwx-gateway sends each client
# address to one loop. The relay's CPU time is read from /proc (every thread), so the figure is
# connections per second of relay CPU, whatever the load side's share of the machine. With more
# than 2 CPUs the relay gets CPUs of its own (taskset); with 2 it shares them with the load, and
# the report says so. Called from bench/run.sh; a benchmark, not a test: exits 0 unless the
# harness broke. Namespaces fwxl<pid>-{c,g,s}, 10.97.11.0/24 and 10.97.12.0/24, deleted at exit.
# SPDX-License-Identifier: MIT
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${1:-build}
[ "${BUILD#/}" != "$BUILD" ] || BUILD="$(cd "$HERE/.." && pwd)/$BUILD"   # relative to the repository
GW_BIN=$BUILD/examples/fwx-gateway/fwx-gateway CTL_BIN=$BUILD/examples/fwxctl/fwxctl
QUICK=${QUICK:-0}
SECS=$([ "$QUICK" = 1 ] && echo 3 || echo 8)
ROUNDS=$([ "$QUICK" = 1 ] && echo 1 || echo 3)
CLIENTS=8 CONC=8 SIZE=64 PORT=7000

log() { printf '[loops %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "HARNESS ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root (network namespaces)"
[ -x "$GW_BIN" ] && [ -x "$CTL_BIN" ] || fail "build fwx first (fwx-gateway, fwxctl in $BUILD)"

NS_C=fwxl$$-c NS_G=fwxl$$-g NS_S=fwxl$$-s
T=$(mktemp -d /tmp/fwx-loops.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for n in $NS_C $NS_G $NS_S; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
cc -O2 -Wall -o "$T/tcpbench" "$HERE/tcpbench.c" || fail "cannot compile bench/tcpbench.c"

ip netns add $NS_C && ip netns add $NS_G && ip netns add $NS_S || fail "ip netns add"
ip -n $NS_C link add c0 type veth peer name g0 netns $NS_G || fail "veth c0/g0"
ip -n $NS_S link add s0 type veth peer name g1 netns $NS_G || fail "veth s0/g1"
for i in $(seq 1 $CLIENTS); do
    ip -n $NS_G addr add 10.97.11.$i/24 dev g0
    ip -n $NS_C addr add 10.97.11.$((100 + i))/24 dev c0
done
ip -n $NS_G addr add 10.97.12.1/24 dev g1
ip -n $NS_S addr add 10.97.12.2/24 dev s0
for n in $NS_C $NS_G $NS_S; do ip -n $n link set lo up; done
ip -n $NS_C link set c0 up; ip -n $NS_G link set g0 up; ip -n $NS_G link set g1 up; ip -n $NS_S link set s0 up
# Client i reaches gateway address i from its own address i.
for i in $(seq 1 $CLIENTS); do
    ip -n $NS_C route replace 10.97.11.$i/32 dev c0 src 10.97.11.$((100 + i))
done
# Many short connections: ports reused quickly, long accept queues; user mode: no forwarding.
tune() { ip netns exec "$1" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 \
             net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096 net.ipv4.ip_forward=0; }
tune $NS_C; tune $NS_G; tune $NS_S
[ "$(ulimit -n)" -ge 65536 ] || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NCPU=$(nproc)
if [ "$NCPU" -ge 4 ]; then
    RELAY_CPUS="$((NCPU - 2))-$((NCPU - 1))" LOAD_CPUS="0-$((NCPU - 3))" SHARED=no
else
    RELAY_CPUS="0-$((NCPU - 1))" LOAD_CPUS="0-$((NCPU - 1))" SHARED=yes
fi
ip netns exec $NS_S taskset -c "$LOAD_CPUS" "$T/tcpbench" serve $PORT >"$T/echo.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do ip netns exec $NS_S ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done

cat >"$T/gw.cfg" <<CFG
gateway = { log_level = "warn"; };
protocols = ( { name = "echo"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-00000000$(printf %04x $PORT)}"; protocol = "tcp";
                port = $PORT; direction = "inbound"; } );
rules = ( { name = "publish"; action = "allow"; from = [ "localhost", "external" ];
            to = [ "localhost", "external" ]; protocols = [ "echo" ]; } );
publishing = ( { name = "echo"; listen = "0.0.0.0:$PORT"; server = "10.97.12.2:$PORT"; protocol = "echo";
                 full_proxy = true; } );
CFG

CLK=$(getconf CLK_TCK)
ticks() { awk '{sub(/^.*\) /,""); print $12+$13}' /proc/"$1"/stat; }   # utime+stime, every thread

# One measurement: LOOPS loops, every client at once for SECS; prints "conns cpu_ticks served..."
measure() {
    local loops=$1 sock="$T/ctl.sock" gw t0 t1 i total=0
    ip netns exec $NS_G taskset -c "$RELAY_CPUS" "$GW_BIN" --config "$T/gw.cfg" --threads "$loops" \
        --control "$sock" >"$T/gw-$loops.log" 2>&1 &
    gw=$!
    PIDS+=($gw)
    for _ in $(seq 1 50); do [ -S "$sock" ] && "$CTL_BIN" -s "$sock" stats >/dev/null 2>&1 && break; sleep 0.1; done
    "$CTL_BIN" -s "$sock" stats >/dev/null 2>&1 || fail "fwx-gateway --threads $loops did not start: $(tail -3 "$T/gw-$loops.log")"
    t0=$(ticks $gw)
    local pids=()
    for i in $(seq 1 $CLIENTS); do
        ip netns exec $NS_C taskset -c "$LOAD_CPUS" timeout $((SECS + 30)) "$T/tcpbench" rate 10.97.11.$i $PORT \
            "$SECS" $CONC $SIZE >"$T/rate-$loops-$i.out" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    t1=$(ticks $gw)
    for i in $(seq 1 $CLIENTS); do
        total=$((total + $(awk '$1=="conns"{print $2}' "$T/rate-$loops-$i.out" | head -1)))
    done
    local served
    served=$("$CTL_BIN" -s "$sock" -j loops | python3 -c 'import json,sys
print(" ".join(str(json.loads(l)["connections_served"]) for l in sys.stdin if "\"loop\"" in l))')
    kill $gw; wait $gw 2>/dev/null || true
    echo "$total $((t1 - t0)) $served"
}

log "relay CPUs $RELAY_CPUS, load CPUs $LOAD_CPUS (shared: $SHARED), $CLIENTS clients x $CONC in flight, ${SECS}s x $ROUNDS rounds"
declare -A CONNS CPU
for r in $(seq 1 $ROUNDS); do
    for loops in 1 2; do
        read -r c t served <<<"$(measure $loops)"
        CONNS[$loops]=$(( ${CONNS[$loops]:-0} + c )); CPU[$loops]=$(( ${CPU[$loops]:-0} + t ))
        log "round $r, $loops loop(s): $c connections, $(python3 -c "print('%.2f' % ($t / $CLK))") s relay CPU, served by loop: $served"
    done
done
python3 - "${CONNS[1]}" "${CPU[1]}" "${CONNS[2]}" "${CPU[2]}" "$CLK" "$SECS" "$ROUNDS" "$SHARED" <<'PY'
import sys
c1, t1, c2, t2, clk, secs, rounds = (float(x) for x in sys.argv[1:8])
shared = sys.argv[8]
e1, e2 = c1 / (t1 / clk), c2 / (t2 / clk)
print("event loops (fwx-gateway --threads), %d s x %d rounds, load side %s" % (secs, rounds,
      "sharing the relay's CPUs (2 CPUs)" if shared == "yes" else "on CPUs of its own"))
print("  1 loop : %8.0f connections per relay-CPU-second, %7.0f connections/s" % (e1, c1 / (secs * rounds)))
print("  2 loops: %8.0f connections per relay-CPU-second, %7.0f connections/s (aggregate)" % (e2, c2 / (secs * rounds)))
ratio = e2 / e1 if e1 else 0
print("  verdict: per relay-CPU-second, 2 loops are %.2fx of 1 (target within 10%%): %s" %
      (ratio, "MET" if abs(ratio - 1) <= 0.10 else "MISSED by %.0f%%" % (100 * (abs(ratio - 1) - 0.10))))
PY
