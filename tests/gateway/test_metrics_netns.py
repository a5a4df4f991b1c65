"""Events and metrics of a transparent kernel-mode gateway (backend = "nft") on a two-sided
topology this script creates and deletes itself:

  client ns 10.98.1.2 --veth-- 10.98.1.1 gateway ns 10.98.2.1 --veth-- 10.98.2.2 server ns

A TCP connection the policy allows is forwarded by the kernel: `fwxctl events` shows it
opened and closed in kernel mode, `fwxctl metrics` and the HTTP listener (scraped with curl
inside the gateway namespace) count it under mode="kernel", backend="nft", and nothing in
user mode; `fwxctl -m kernel connections` lists it while it lives. Then the proxy backend on the
same sides with IP forwarding off: a published connection's bytes each way are counted exactly.

Root, `ip`, `nft` and `curl` are needed; otherwise exit 77 with the reason.
SPDX-License-Identifier: MIT
"""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys

from gwtest import Failure, Gateway, gateways_stopped, check, log, main, program, skip, wait_until, write_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netns"))
import nstopo  # noqa: E402
from nstopo import sh  # noqa: E402

CLIENT, GW_IN, GW_OUT, SERVER = "10.98.1.2", "10.98.1.1", "10.98.2.1", "10.98.2.2"
TIMEOUT = 5.0
PREFIX = "fwxmet-"
METRICS_PORT = 9464  # inside the gateway's own namespace: nothing else listens there



def Topology():
    """Three namespaces named with this process's id, joined by two veth pairs (the shared bed
    of tests/netns/nstopo.py), IPv4 only, forwarding on for the kernel-mode part."""
    return nstopo.Bed(PREFIX, "g", {
        "c": nstopo.Side("cl0", [CLIENT + "/24"], [GW_IN + "/24"]),
        "s": nstopo.Side("sv0", [SERVER + "/24"], [GW_OUT + "/24"])}, forwarding=True)


def metrics_of(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+(?:\{[^}]*\})?) (\S+)$', line)
        check(m is not None, "not a sample line: %r" % line)
        out[m.group(1)] = float(m.group(2))
    return out


def run(tmp):
    if os.geteuid() != 0:
        skip("needs root (network namespaces, nftables)")
    for tool in ("ip", "nft", "curl"):
        if shutil.which(tool) is None:
            skip("no %s command" % tool)
    topo = Topology()
    topo.up_or_skip()
    with gateways_stopped(topo.down):
        scenario(tmp, topo)


def scenario(tmp, topo):
    name = "mgw%d" % os.getpid()
    cfg = os.path.join(tmp, "gw.cfg")
    write_file(cfg, """gateway = {
  name = "%s";
  backend = "nft";
  local_addresses = [ "%s", "%s" ];
  kernel_end_on_close = true;
  metrics_listen = "127.0.0.1:%d";
};
networks = { internal = { ranges = [ "10.98.1.0/24" ]; }; };
relationships = ( { from = "internal"; to = "external"; type = "nat"; } );
protocols = ( { name = "echo"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000017000}"; protocol = "tcp"; port = 7000;
                direction = "outbound"; } );
rules = ( { name = "echo out"; action = "allow"; from = [ "internal" ]; to = [ "external" ];
            protocols = [ "echo" ]; } );
""" % (name, GW_IN, GW_OUT, METRICS_PORT))
    gw = Gateway(tmp, ["--config", cfg], wait_ready=False, prefix=["ip", "netns", "exec", topo.names["g"]])
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the gateway to be ready")
    sh("ip", "netns", "exec", topo.names["g"], "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")

    ev = subprocess.Popen([program("FWXCTL"), "-s", gw.sock, "-j", "events"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    lines, partial = [], [b""]

    def saw(pred):
        for line in lines:
            if pred(line):
                return line
        r, _, _ = select.select([ev.stdout], [], [], 0.1)
        if r:
            data = os.read(ev.stdout.fileno(), 65536)
            if data == b"":
                ev.kill()
                raise Failure("fwxctl events ended: %r" % ev.stderr.read())
            partial[0] += data
            *done, partial[0] = partial[0].split(b"\n")
            lines.extend(json.loads(x) for x in done)
        return None

    try:
        wait_until(lambda: saw(lambda o: o.get("kind") == "events"), what="the event stream to start")

        def listen():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", 7000))
            s.listen(4)
            s.settimeout(TIMEOUT)
            return s

        def connect():
            s = socket.create_connection((SERVER, 7000), timeout=TIMEOUT)
            s.settimeout(TIMEOUT)
            return s
        srv = topo.run_in("s", listen)
        c = topo.run_in("c", connect)
        a, peer = srv.accept()
        check(peer[0] == GW_OUT, "nat: the server saw %s" % peer[0])
        c.sendall(b"ping")
        check(a.recv(4) == b"ping", "no data over the forwarded connection")
        opened = wait_until(lambda: saw(lambda o: o.get("event") == "connection-opened"),
                            what="a connection-opened event")
        check(opened["mode"] == "kernel" and opened["peer"] == "%s:7000" % SERVER and opened["client"] == CLIENT
              and opened["rule"] == "echo out", "connection-opened: %r" % opened)
        live = [json.loads(x) for x in gw.ctl("-j", "-m", "kernel", "-c", CLIENT, "connections").stdout.splitlines()]
        check(len(live) == 1 and live[0]["id"] == opened["id"], "fwxctl -m kernel -c CLIENT connections: %r" % live)
        check(gw.ctl("-j", "-m", "user", "connections").stdout == "", "a user-mode connection is listed")
        a.close()
        c.close()
        srv.close()
        closed = wait_until(lambda: saw(lambda o: o.get("event") == "connection-closed"), 10,
                            what="the connection-closed event (conntrack DESTROY)")
        check(closed["id"] == opened["id"] and closed["mode"] == "kernel", "connection-closed: %r" % closed)
        log("ok: a kernel-forwarded connection is an event when it opens and when it ends, in kernel mode")

        m = metrics_of(gw.ctl("metrics").stdout)
        check(m['fwx_connections_opened_total{mode="kernel",backend="nft"}'] == 1 and
              m['fwx_connections_closed_total{mode="kernel",backend="nft"}'] == 1 and
              m['fwx_connections_opened_total{mode="user",backend="nft"}'] == 0 and
              m['fwx_connections{mode="kernel",backend="nft"}'] == 0 and m['fwx_sessions_opened_total'] == 1,
              "metrics after one kernel connection: %r" % {k: v for k, v in m.items() if "conn" in k or "sess" in k})
        r = sh("ip", "netns", "exec", topo.names["g"], "curl", "-sS", "--max-time", "5",
               "http://127.0.0.1:%d/metrics" % METRICS_PORT)
        h = metrics_of(r.stdout)
        check(h['fwx_connections_opened_total{mode="kernel",backend="nft"}'] == 1, "scraped: %r" % r.stdout[:300])
        log("ok: fwxctl metrics and the HTTP listener count it under mode=kernel, backend=nft")
    finally:
        ev.kill()
        ev.wait(5)
    check(gw.stop() == 0, "exit status")
    user_mode(tmp, topo)


def user_mode(tmp, topo):
    """The proxy backend on the same sides, IP forwarding off in the gateway: only what fwx
    relays gets across, and the bytes it relayed are counted exactly."""
    g = topo.names["g"]
    sh("ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    sh("ip", "netns", "exec", g, "nft", "flush", "ruleset")  # the nft gateway's closed table
    cfg = os.path.join(tmp, "proxy.cfg")
    write_file(cfg, """gateway = { backend = "proxy"; local_addresses = [ "%s", "%s" ];
            metrics_listen = "127.0.0.1:%d"; };
networks = { internal = { ranges = [ "10.98.1.0/24" ]; }; };
relationships = ( { from = "internal"; to = "external"; type = "nat"; } );
protocols = ( { name = "svc"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000017001}"; protocol = "tcp"; port = 7001;
                direction = "inbound"; } );
rules = ( { name = "svc in"; action = "allow"; from = [ "internal" ]; to = [ "external" ];
            protocols = [ "svc" ]; } );
publishing = ( { name = "pub"; listen = "%s:7001"; server = "%s:7000"; protocol = "svc"; full_proxy = true; } );
""" % (GW_IN, GW_OUT, METRICS_PORT, GW_IN, SERVER))
    gw = Gateway(tmp, ["--config", cfg], name="proxy", wait_ready=False, prefix=["ip", "netns", "exec", g])
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the proxy gateway to be ready")

    def listen():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 7000))
        s.listen(4)
        s.settimeout(TIMEOUT)
        return s

    def connect(ip, port):
        def mk():
            s = socket.socket()
            s.settimeout(2.0)
            try:
                s.connect((ip, port))
            except OSError:
                s.close()
                return None
            s.settimeout(TIMEOUT)
            return s
        return mk
    srv = topo.run_in("s", listen)
    check(topo.run_in("c", connect(SERVER, 7000)) is None, "the gateway forwards without fwx (ip_forward is off)")
    c = topo.run_in("c", connect(GW_IN, 7001))
    check(c is not None, "the published port did not answer")
    a, peer = srv.accept()
    check(peer[0] == GW_OUT, "the server saw %s, not the gateway's outside address" % peer[0])
    sent = bytes(range(256)) * 40  # 10240 bytes each way
    c.sendall(sent)
    got = b""
    while len(got) < len(sent):
        d = a.recv(65536)
        check(d, "the server's side ended early")
        got += d
    check(got == sent, "the server did not get the client's bytes")
    a.sendall(got[:777])
    back = b""
    while len(back) < 777:
        d = c.recv(65536)
        check(d, "the client's side ended early")
        back += d
    c.close()
    a.close()
    srv.close()

    # No data filter needs the bytes, so the core marks it kernel mode (T9): the proxy backend
    # carries it on its splice path, and the metrics label it as fwxctl does.
    def closed():
        m = metrics_of(gw.ctl("metrics").stdout)
        return m if m['fwx_connections_closed_total{mode="kernel",backend="proxy"}'] == 1 else None
    m = wait_until(closed, 10, what="the relayed connection to be counted closed")
    check(m['fwx_bytes_total{direction="from_client"}'] == len(sent) and
          m['fwx_bytes_total{direction="from_peer"}'] == 777,
          "bytes: %r" % {k: v for k, v in m.items() if "bytes" in k})
    check(m['fwx_connections_opened_total{mode="user",backend="proxy"}'] == 0 and
          m['fwx_connections_opened_total{mode="kernel",backend="proxy"}'] == 1, "opened: %r" % m)
    log("ok: the proxy backend across the two sides (forwarding off): %d and 777 bytes counted exactly" % len(sent))
    check(gw.stop() == 0, "exit status")


main(run)
