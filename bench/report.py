#!/usr/bin/env python3
"""Prints the table, the fwx ratios and the targets from bench/run.sh's results.

usage: report.py RESULTS.tsv NOTES.txt "run description" "tool versions"
RESULTS.tsv lines: relay <TAB> metric <TAB> value. SPDX-License-Identifier: MIT
"""
import statistics
import sys

RELAYS = ["fwx", "haproxy-splice", "haproxy-nosplice", "nginx", "socat", "kernel"]


def load(path):
    """relay -> metric -> list of values (one per round)"""
    r = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                r.setdefault(parts[0], {}).setdefault(parts[1], []).append(parts[2])
    return r


def floats(r, relay, key):
    out = []
    for v in r.get(relay, {}).get(key, []):
        try:
            out.append(float(v))
        except ValueError:
            pass
    return out


def num(r, relay, key):
    v = floats(r, relay, key)
    return statistics.median(v) if v else None


def text(r, relay, key):
    v = r.get(relay, {}).get(key)
    return v[0] if v else None


def fmt(v, nd=1):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


# Kernel memory an idle pipe holds outside the slab caches: the page a pipe keeps for its next
# write (pipe_inode_info.tmp_page). Its inode, files and buffer array are slab, counted already.
PIPE_PAGE_KIB = 4.0


def kernel_kib_slab(res, relay):
    """A relay's own kernel memory per idle connection from the system-wide slab delta: minus the
    kernel row's (the client's and server's sockets), plus a page per pipe it holds."""
    s = num(res, relay, "slab_kb_per_conn")
    if s is None:
        return None
    base = num(res, "kernel", "slab_kb_per_conn") or 0.0
    return s - base + (num(res, relay, "pipes_per_idle_conn") or 0.0) * PIPE_PAGE_KIB


def kernel_source(res):
    """Which kernel figure judges memory: the relay's own cgroup when every relay has one."""
    rows = [r for r in res if r != "kernel" and num(res, r, "mem_pss_kb_per_conn") is not None]
    return "cgroup" if rows and all(num(res, r, "cg_kernel_kb_per_conn") is not None for r in rows) else "slab"


def kernel_kib(res, relay):
    """A relay's own kernel memory per idle connection: what its memory cgroup was charged (its
    sockets, epoll items, files, pipes and their pages, socket buffers), or the slab estimate."""
    if kernel_source(res) == "cgroup":
        return num(res, relay, "cg_kernel_kb_per_conn")
    return kernel_kib_slab(res, relay)


def print_kernel_memory(res, relays):
    rows = [r for r in relays if r != "kernel" and (kernel_kib_slab(res, r) is not None
                                                   or num(res, r, "cg_kernel_kb_per_conn") is not None)]
    if not rows:
        return
    base = "minus the kernel row" if num(res, "kernel", "slab_kb_per_conn") is not None else \
        "NOT minus a baseline (no kernel row in this run)"
    judged = "the relay's own memory cgroup" if kernel_source(res) == "cgroup" else "the slab estimate"
    print(f"\nkernel memory per idle relayed connection, KiB (judged on {judged}):")
    print(f"  cgroup: kernel memory charged to the relay's own memory cgroup (slab, socket buffers, pipes)")
    print(f"  slab:   system-wide slab delta {base}, + {PIPE_PAGE_KIB:.0f} KiB per pipe held")
    for r in rows:
        pipes = num(res, r, "pipes_per_idle_conn")
        cg, sl = num(res, r, "cg_kernel_kb_per_conn"), kernel_kib_slab(res, r)
        print(f"  {r:<16}  cgroup {fmt(cg, 2):>6}  slab {fmt(sl, 2):>6}  (pipes per idle connection: "
              f"{'-' if pipes is None else f'{pipes:.2f}'}; user PSS {fmt(num(res, r, 'mem_pss_kb_per_conn'), 2)} KiB)")


def print_verdicts(res):
    """One line per target of issue 12: PASS or MISS, with the ratio (peer: HAProxy with splice)."""
    hp = "haproxy-splice"
    print("\ntargets of issue 12, against HAProxy with splice (mode tcp, option splice-auto, nbthread 1):")

    def line(ok, label, detail):
        print(f"  {'----' if ok is None else 'PASS' if ok else 'MISS'}  {label}: {detail}")

    def ratio(label, key, cmp, goal, nd=2):
        a, b = num(res, "fwx", key), num(res, hp, key)
        if a is None or b in (None, 0):
            line(None, label, "cannot judge (a figure is missing)")
            return
        q = a / b
        ok = q >= goal if cmp == ">=" else q <= goal
        line(ok, label, f"fwx {fmt(a, nd)} vs haproxy {fmt(b, nd)} = {q:.2f}x (target {cmp} {goal}x)")

    ratio("connection rate", "rate_cps", ">=", 1.3)
    ratio("relay CPU per connection (us)", "rate_relay_cpu_us_per_conn", "<=", 0.75)
    sc, sh = num(res, "fwx", "syscalls_per_conn"), num(res, hp, "syscalls_per_conn")
    if sc is None:
        line(None, "syscalls per relayed connection", "not measured (STRACE=0)")
    else:
        peer = f"; haproxy {sh:.1f}, {sc / sh:.2f}x" if sh else ""
        line(sc <= 15, "syscalls per relayed connection", f"fwx {sc:.1f} (target <= 15{peer})")
    ratio("throughput (Gbit/s)", "tput_gbps", ">=", 1.2)
    ratio("p99 latency, 1 connection (us)", "rr_p99_us", "<=", 0.9)
    ratio("p99 latency, 16 connections (us)", "rr16_p99_us", "<=", 0.9)
    ka, kb = kernel_kib(res, "fwx"), kernel_kib(res, hp)
    pa, pb = num(res, "fwx", "mem_pss_kb_per_conn"), num(res, hp, "mem_pss_kb_per_conn")
    if None in (ka, kb, pa, pb) or ka + pa <= 0 or kb + pb <= 0:
        line(None, "memory per idle connection, user + kernel", "cannot judge (a figure is missing)")
    else:
        q = (ka + pa) / (kb + pb)
        line(q <= 0.8, f"memory per idle connection, user + kernel ({kernel_source(res)}) (KiB)",
             f"fwx {ka + pa:.2f} ({pa:.2f} + {ka:.2f}) vs haproxy {kb + pb:.2f} ({pb:.2f} + {kb:.2f}) = {q:.2f}x "
             "(target <= 0.8x)")
    line(None, "every core used", "not run here (fwx-gateway --threads; one relay core per relay in this bench)")
    fp = num(res, "fwx", "ftp_share_p99_us")
    if fp is None:
        line(None, "FTP filter's share of a permission set-up, p99", "not measured in this run")
    else:
        line(fp < 50, "FTP filter's share of a permission set-up, p99",
             f"{fp:.1f} us (target < 50 us; PASV/PORT in to rewritten out, minus a plain relay)")


def main():
    res = load(sys.argv[1])
    notes = open(sys.argv[2]).read().strip() if len(sys.argv) > 2 else ""
    desc = sys.argv[3] if len(sys.argv) > 3 else ""
    vers = sys.argv[4] if len(sys.argv) > 4 else ""
    relays = [x for x in RELAYS if x in res]

    cols = [
        ("throughput Gbit/s", "tput_gbps", 2),
        ("relay CPU % (tput)", "tput_relay_cpu_pct", 0),
        ("conn/s", "rate_cps", 0),
        ("relay CPU us/conn", "rate_relay_cpu_us_per_conn", 1),
        ("RR p50 us", "rr_p50_us", 1),
        ("RR p99 us", "rr_p99_us", 1),
        ("RR p99.9 us", "rr_p999_us", 1),
        ("RR/s", "rr_rr_per_s", 0),
        ("RR p99 us 16c", "rr16_p99_us", 1),
        ("RSS KiB/idle conn", "mem_rss_kb_per_conn", 2),
        ("PSS KiB/idle conn", "mem_pss_kb_per_conn", 2),
        ("slab KiB/conn (sys)", "slab_kb_per_conn", 2),
        ("kernel KiB/conn (cgroup)", "cg_kernel_kb_per_conn", 2),
    ]
    print()
    print("fwx relay benchmark: " + desc)
    if vers:
        print("peers: " + vers)
    print()
    w0 = max(len(x) for x in relays + ["relay"])
    widths = [max(len(c[0]), 9) for c in cols]
    print("  ".join(["relay".ljust(w0)] + [c[0].rjust(w) for c, w in zip(cols, widths)]))
    print("  ".join(["-" * w0] + ["-" * w for w in widths]))
    for relay in relays:
        row = [relay.ljust(w0)]
        for (title, key, nd), w in zip(cols, widths):
            raw = res[relay].get(key)
            v = num(res, relay, key)
            if raw is None:
                cell = "n/a" if relay == "kernel" and key.startswith(("mem_", "tput_relay", "rate_relay", "cg_")) else "-"
            elif v is None:
                cell = "FAIL"
            else:
                cell = fmt(v, nd) + ("*" if "FAIL" in raw else "")
            row.append(cell.rjust(w))
        print("  ".join(row))
    rounds = max((len(res[r].get("rate_cps", [])) for r in relays), default=0)
    if rounds > 1:
        print(f"\nfigures are medians of {rounds} interleaved rounds (memory: round 1 only); spread (min-max):")
        for relay in relays:
            parts = []
            for label, key in (("tput", "tput_gbps"), ("conn/s", "rate_cps"), ("p99", "rr_p99_us")):
                v = floats(res, relay, key)
                if len(v) > 1:
                    parts.append(f"{label} {fmt(min(v), 2)}-{fmt(max(v), 2)}")
            print(f"  {relay.ljust(w0)}  " + ";  ".join(parts))
    if any("FAIL" in vals for r in relays for vals in res[r].values()):
        print("* = at least one round failed; the median is of the rounds that produced a figure")
    if "kernel" in res:
        ct = text(res, "kernel", "conntrack_entries") or "none"
        print(f"\nkernel forwarding: no relay process (memory n/a); conntrack entries in the gateway "
              f"namespace with {text(res, 'kernel', 'idle_ok') or '?'} idle connections: "
              f"{ct if ct not in ('', 'none') else 'none (conntrack not in use)'}")
        base = num(res, "kernel", "slab_kb_per_conn")
        if base is not None:
            print(f"slab KiB/conn is system-wide (client and server sockets included); the kernel row ({base:.2f}) is "
                  "that baseline, so a relay's own kernel memory is roughly its slab figure minus it:")
            print("  " + ";  ".join(f"{r} {num(res, r, 'slab_kb_per_conn') - base:.2f}" for r in relays
                                  if r != "kernel" and num(res, r, "slab_kb_per_conn") is not None))
    sys_rel = [r for r in relays if text(res, r, "syscalls_per_conn")]
    if sys_rel:
        print("\nsyscalls per relayed connection (strace -c during an extra connection-rate run):")
        for r in sys_rel:
            print(f"  {r.ljust(w0)}  {float(text(res, r, 'syscalls_per_conn')):.1f}  ({(text(res, r, 'syscall_mix') or '').rstrip(', ')})")
    for r in relays:
        for t in res[r].get("crashed_in", []):
            print(f"!! {r} died during the {t} test")

    if "fwx" not in res:
        return 0
    # ratios: fwx / peer. Higher is better for throughput and conn/s; lower for latency and memory.
    print("\nfwx ratios (fwx / peer; throughput and conn/s: higher is better; p99 and memory: lower is better)")
    metrics = [("throughput", "tput_gbps"), ("conn/s", "rate_cps"), ("p50", "rr_p50_us"), ("p99", "rr_p99_us"),
               ("p99 16c", "rr16_p99_us"),
               ("mem/conn (PSS)", "mem_pss_kb_per_conn"), ("relay CPU/conn", "rate_relay_cpu_us_per_conn")]
    for peer in relays:
        if peer == "fwx":
            continue
        parts = []
        for label, key in metrics:
            a, b = num(res, "fwx", key), num(res, peer, key)
            if a is not None and b not in (None, 0):
                parts.append(f"{label} fwx/{peer} = {a / b:.2f}x")
        if parts:
            print("  " + ";  ".join(parts))

    print_kernel_memory(res, relays)
    print_verdicts(res)
    if notes:
        print("\nnotes:")
        for line in notes.splitlines():
            print("  - " + line)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
