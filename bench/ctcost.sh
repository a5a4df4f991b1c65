#!/bin/bash
# bench/ctcost.sh: what a conntrack event listener costs the kernel's own NAT, by how it reads.
#
#   sudo bench/ctcost.sh            5 interleaved rounds of 4 s, about 3 minutes
#   ROUNDS=N VARIANTS="nat read tick tick4" sudo bench/ctcost.sh
#
# The connection rate (bench/tcpbench.c `rate`, 64 in flight, 64-byte echo) through a gateway
# namespace doing the kernel's NAT, with: nothing else (nat); byte accounting on (acct); a
# listener on conntrack's NEW and DESTROY groups that reads each event as it comes (read), reads
# once a millisecond (tick) or every 4 ms (tick4: ct.c's CT_PACE_MS since issue 13 part 5), or
# never reads, so the kernel builds every event and drops it on a
# full socket (sleep). The load runs on CPU 0, the listener on CPU 1: what a variant costs the
# forwarding CPU shows as connections per second. No fwx here: this is the measurement behind
# the paced reading of lib/backends/nft/ct.c (bench/README.md, issue 13 part 4).
# Namespaces s7c-PID, s7g-PID, s7s-PID are created here and deleted at exit.
# SPDX-License-Identifier: MIT
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "ctcost.sh: needs root (network namespaces)" >&2; exit 1; }
for t in conntrack nft python3 cc taskset; do command -v $t >/dev/null || { echo "ctcost.sh: needs $t" >&2; exit 1; }; done
ROUNDS=${ROUNDS:-5}
VARIANTS=${VARIANTS:-nat acct read tick tick4 sleep}
C=s7c-$$ G=s7g-$$ S=s7s-$$
T=$(mktemp -d)
cleanup() {
    [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null
    for n in $C $G $S; do ip netns del $n 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
cc -O2 -o "$T/tcpbench" "$HERE/tcpbench.c" || exit 1
cat >"$T/listen.py" <<'PY'
# ctnetlink NEW and DESTROY groups; argv: mode (read | tick | tick4 | sleep), seconds
import socket, sys, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)               # SO_RCVBUFFORCE
s.bind((0, 0))
for g in (1, 3):                                           # NFNLGRP_CONNTRACK_NEW, _DESTROY
    s.setsockopt(270, 1, g)                                # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP
mode, end = sys.argv[1], time.time() + float(sys.argv[2])
if mode == "sleep":
    time.sleep(float(sys.argv[2]))
elif mode == "read":
    s.settimeout(0.5)
    while time.time() < end:
        try:
            s.recv(65536)
        except OSError:
            pass
else:
    s.setblocking(False)
    pace = 0.004 if mode == "tick4" else 0.001
    while time.time() < end:
        time.sleep(pace)
        for _ in range(100000):
            try:
                s.recv(65536)
            except OSError:
                break
PY
ip netns add $C && ip netns add $G && ip netns add $S || exit 1
ip -n $C link add c0 type veth peer name g0 netns $G
ip -n $S link add s0 type veth peer name g1 netns $G
ip -n $C addr add 10.98.1.2/24 dev c0; ip -n $G addr add 10.98.1.1/24 dev g0
ip -n $G addr add 10.98.2.1/24 dev g1; ip -n $S addr add 10.98.2.2/24 dev s0
for n in $C $G $S; do
    ip -n $n link set lo up
    ip netns exec $n sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 \
        net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
done
ip -n $C link set c0 up; ip -n $G link set g0 up; ip -n $G link set g1 up; ip -n $S link set s0 up
ip -n $C route add default via 10.98.1.1; ip -n $S route add default via 10.98.2.1
ip netns exec $G sysctl -qw net.ipv4.ip_forward=1
ip netns exec $S taskset -c 0 "$T/tcpbench" serve 7000 >/dev/null 2>&1 &
SRV=$!
sleep 0.5
ip netns exec $G nft -f - <<NFT || exit 1
table inet ctcost {
    chain forward { type filter hook forward priority filter; policy accept; ct state established,related accept; }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "g1" masquerade; }
}
NFT
one() { # VARIANT: conn/s
    ip netns exec $G conntrack -F >/dev/null 2>&1
    ip netns exec $G sysctl -qw net.netfilter.nf_conntrack_acct=0
    local lp=
    case $1 in
    acct) ip netns exec $G sysctl -qw net.netfilter.nf_conntrack_acct=1 ;;
    read | tick | tick4 | sleep) ip netns exec $G taskset -c 1 python3 "$T/listen.py" "$1" 8 & lp=$! ;;
    esac
    sleep 0.5
    ip netns exec $C taskset -c 0 "$T/tcpbench" rate 10.98.2.2 7000 4 64 64 2>/dev/null | awk '/conns_per_s/{print $2}'
    [ -z "$lp" ] || { kill $lp 2>/dev/null; wait $lp 2>/dev/null; }
}
for r in $(seq 1 "$ROUNDS"); do
    for v in $VARIANTS; do echo "$v $(one $v)"; sleep 1; done
done >"$T/out"
echo "connections/s through the kernel's NAT, $ROUNDS rounds of 4 s (median, then each round); ratio to nat"
nat=$(awk '$1=="nat"{print $2}' "$T/out" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
for v in $VARIANTS; do
    med=$(awk -v v=$v '$1==v{print $2}' "$T/out" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    printf '  %-6s %7s  (%s)  %s\n' "$v" "$med" "$(awk -v v=$v '$1==v{printf "%s ", $2}' "$T/out")" \
        "$(python3 -c "print(f'{$med/$nat:.2f}x' if '$nat' and '$med' else '')" 2>/dev/null)"
done
