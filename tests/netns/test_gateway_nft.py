"""fwx-gateway as a transparent kernel-mode gateway (backend = "nft"), end to end, in network
namespaces this script creates and deletes itself:

  client ns 10.99.1.2 --veth-- 10.99.1.1 gateway ns 10.99.2.1 --veth-- 10.99.2.2 server ns

The real fwx-gateway binary runs in the gateway namespace with the FTP plugin and a nat
policy; peers are sockets made inside the client and server namespaces (a thread enters the
namespace with setns(2), makes the socket, and the socket keeps its namespace).

What it checks:
  1. plain TCP the policy allows is forwarded by the kernel (no user-mode connection for it);
  2. an active-mode FTP control connection is intercepted (fwxctl: a user-mode connection),
     its PORT becomes a kernel-mode bound port (fwxctl MODE "kernel"), and the data connection
     the server opens through it is a kernel-mode connection in fwxctl;
  3. kill -9 of the gateway leaves its table behind; a restart replaces it (one line says so)
     and nothing the dead gateway allowed still gets through;
  4. SIGTERM: exit 0, and the gateway fails closed: its table is replaced by
     one that drops every forwarded packet though IP forwarding stays on, one line says so, the
     gateway's own connections still work; a restart replaces it and forwards again; with
     gateway.on_stop = "open" the table is deleted at stop instead;
  5. a client whose source port equals the source port of fwx's own upstream connection to the
     same server is served, not refused as a redirect loop (records are found by the whole
     tuple).

Root and `ip`/nftables are needed; otherwise exit 77 with the reason.
SPDX-License-Identifier: MIT
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
from gwtest import (ftp_plugin, Failure, Gateway, gateways_stopped, check, log, main, skip, wait_until,  # noqa: E402
                    write_file)
import nstopo  # noqa: E402
from nstopo import sh  # noqa: E402

CLIENT, GW_IN, GW_OUT, SERVER = "10.99.1.2", "10.99.1.1", "10.99.2.1", "10.99.2.2"
FTP_GUID = "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"
TIMEOUT = 5.0
PREFIX = "fwxp-"


class Topology(nstopo.Bed):
    """Three namespaces joined by two veth pairs, forwarding on in the gateway (kernel mode
    routes); deleted by down() (and stale ones of dead runs at the next start)."""

    def __init__(self):
        super().__init__(PREFIX, "g", {"c": nstopo.Side("cl0", [CLIENT + "/24"], [GW_IN + "/24"]),
                                       "s": nstopo.Side("sv0", [SERVER + "/24"], [GW_OUT + "/24"])},
                         forwarding=True)

    def listener(self, key, ip, port=0):
        return super().listener(key, ip, port, TIMEOUT)

    def connect(self, key, ip, port, src=None, timeout=TIMEOUT, sport=0):
        """A connected socket, or None if refused/dropped within timeout."""
        def mk():
            s = socket.socket()
            s.settimeout(timeout)
            if src:
                s.bind((src, sport))
            try:
                s.connect((ip, port))
            except OSError:
                s.close()
                return None
            s.settimeout(TIMEOUT)
            return s
        return self.run_in(key, mk)


def readline(s):
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < 512:
        b = s.recv(1)
        if not b:
            break
        buf += b
    return buf.decode("ascii", "replace")


def table_of(topo, name):
    r = sh("ip", "netns", "exec", topo.names["g"], "nft", "list", "table", "inet", name, ok=False)
    return r.stdout if r.returncode == 0 else None


def config(tmp, name, plugin, on_stop=None):
    path = os.path.join(tmp, "nft-gateway-%s.cfg" % (on_stop or "default"))
    write_file(path, """gateway = {%s
  name = "%s";
  backend = "nft";
  plugins = [ "%s" ];
  local_addresses = [ "%s", "%s" ];
  port_range = "41000-41999";
  local_redirect = ( { ports = "7000"; slot = 0; } );
  kernel_end_on_close = true;
};
networks = { internal = { ranges = [ "10.99.1.0/24" ]; };
             localhost = { ranges = [ "%s/32", "%s/32" ]; }; };
relationships = ( { from = "internal"; to = "external"; type = "nat"; } );
protocols = (
  { name = "ftp"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000000021}"; protocol = "tcp"; port = 21;
    direction = "outbound"; filters = [ "%s" ]; },
  { name = "echo"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000007000}"; protocol = "tcp"; port = 7000;
    direction = "outbound"; }
);
rules = ( { name = "out"; action = "allow"; from = [ "internal", "localhost" ]; to = [ "external" ];
            protocols = [ "ftp", "echo" ]; } );
""" % ("\n  on_stop = \"%s\";" % on_stop if on_stop else "", name, plugin, GW_IN, GW_OUT, GW_IN, GW_OUT, FTP_GUID))
    return path


def rows(gw, what):
    return [o for o in gw.ctl_json(what) if o.get("kind") not in ("end", "version")]


def run(tmp):
    if os.geteuid() != 0:
        skip("needs root (network namespaces, nftables)")
    for tool in ("ip", "nft"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            skip("no %s command" % tool)
    plugin = ftp_plugin()
    topo = Topology()
    topo.up_or_skip()
    with gateways_stopped(topo.down):
        scenario(tmp, topo, plugin)


def scenario(tmp, topo, plugin):
    name = "nftgw%d" % os.getpid()
    os.environ["FWX_REDIRECT_DIR"] = os.path.join(tmp, "redirect")  # the gateways inherit it
    table = "fwx_" + name
    cfg = config(tmp, name, plugin)
    # The gateway runs inside the gateway namespace.
    gw = Gateway(tmp, ["--config", cfg], name="gw1", wait_ready=False, prefix=["ip", "netns", "exec", topo.names["g"]])
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the gateway to be ready")
    check("backend nft" in gw.stdout(), "the ready line does not name the nft backend: %r" % gw.stdout()[-400:])
    check(table_of(topo, table) is not None, "no table inet %s while the gateway runs" % table)
    # TIME_WAIT entries of this test-made gateway namespace expire in a second, so a finished
    # flow's DESTROY (and its end in fwxctl) comes at once.
    sh("ip", "netns", "exec", topo.names["g"], "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")

    # 1. Plain TCP the policy allows: forwarded by the kernel, no user-mode connection.
    echo_l = topo.listener("s", "0.0.0.0", 7000)
    c = topo.connect("c", SERVER, 7000)
    check(c is not None, "the kernel did not forward an allowed TCP connection (port 7000)")
    a, peer = echo_l.accept()
    check(peer[0] == GW_OUT, "nat relationship: the server saw %s, not the gateway's %s" % (peer[0], GW_OUT))
    c.sendall(b"ping")
    check(a.recv(4) == b"ping", "no data over the forwarded connection")
    # Forwarded by the kernel, yet the core's: a kernel-mode primary connection in fwxctl.
    def forwarded():
        return [o for o in rows(gw, "connections") if o.get("peer") == "%s:7000" % SERVER]
    fw = wait_until(forwarded, 5, what="fwxctl to list the forwarded connection")
    check(len(fw) == 1 and fw[0].get("mode") == "kernel" and fw[0].get("name") == "primary",
          "the forwarded connection should be one kernel-mode primary connection: %r" % fw)
    a.close()
    c.close()
    wait_until(lambda: not forwarded(), 10, what="the forwarded connection to end (conntrack DESTROY)")
    log("ok: plain TCP forwarded by the kernel (server saw %s), listed in kernel mode until it ended" % peer[0])

    # 1b. Local redirection (gateway.local_redirect): a process of the gateway host itself
    #     connecting to port 7000 is caught and relayed by fwx, with its record.
    c = topo.connect("g", SERVER, 7000)
    check(c is not None, "a local connection to port 7000 was not carried")
    a, peer = echo_l.accept()
    c.sendall(b"local")
    check(a.recv(5) == b"local", "no data over the locally redirected connection")
    gw.wait_log("redirect record new: NOT_REDIRECTED", what="the local connection's redirect record")
    check("application pid %d uid 0" % os.getpid() in gw.stdout(),
          "the record does not name this process as the original application: %r" % gw.stdout()[-800:])
    conns = rows(gw, "connections")
    check(any(o.get("peer") == "%s:7000" % SERVER for o in conns),
          "fwxctl does not list the locally redirected connection: %r" % conns)
    a.close()
    c.close()
    log("ok: local redirection: this process's connection relayed by fwx, original application recorded")

    # 2. Active FTP, scripted server: the control connection in user mode, the PORT's bound
    #    port and the data connection in the kernel, all in fwxctl.
    ctl_l = topo.listener("s", "0.0.0.0", 21)
    data_l = topo.listener("c", CLIENT, 0)
    cport = data_l.getsockname()[1]
    c = topo.connect("c", SERVER, 21)
    check(c is not None, "the FTP control connection was not intercepted/forwarded")
    s, peer = ctl_l.accept()
    check(peer[0] == GW_OUT, "the control connection came from %s, not the gateway" % peer[0])
    s.sendall(b"220 hi\r\n")
    check(readline(c).startswith("220"), "no 220 through the gateway")
    c.sendall(("PORT 10,99,1,2,%d,%d\r\n" % (cport >> 8, cport & 255)).encode())
    line = readline(s)
    check(line.startswith("PORT 10,99,2,1,"), "the server got %r, not the gateway's address" % line)
    f = [int(x) for x in line[5:].strip().split(",")]
    gport = f[4] * 256 + f[5]
    s.sendall(b"200 ok\r\n")
    check(readline(c).startswith("200"), "no 200 for PORT")
    ports = rows(gw, "ports")
    bound = [o for o in ports if o.get("name") == "bound port"]
    check(len(bound) == 1 and bound[0].get("mode") == "kernel",
          "fwxctl ports: want one kernel-mode bound port, got %r" % ports)
    conns = rows(gw, "connections")
    ctl = [o for o in conns if o.get("peer") == "%s:21" % SERVER]
    check(len(ctl) == 1 and ctl[0].get("mode") == "user", "fwxctl: the control connection: %r" % conns)
    text = gw.ctl("ports").stdout
    check("kernel" in text and "MODE" in text, "fwxctl ports (table) shows no MODE column: %r" % text)
    # The intercepted control connection is a redirected flow: its record is in the host's
    # registry, under fwx's outbound connection to the server (fwxctl redirects).
    reds = rows(gw, "redirects")
    check(len(reds) == 1 and reds[0].get("original") == "%s:21" % SERVER and len(reds[0].get("hops", [])) == 1
          and reds[0].get("application") == "-",
          "fwxctl redirects: want the control connection's record (1 hop, forwarded), got %r" % reds)
    log("ok: fwxctl redirects: %s, original %s, hops %s" % (reds[0]["flow"], reds[0]["original"], reds[0]["hops"]))
    log("ok: fwxctl: control connection user mode, bound port %d kernel mode" % gport)

    # 2b. A second client connection whose source port is the source port of
    #     fwx's own upstream connection (peer[1], from the gateway's address) to the same
    #     server. Its record must not be taken for this one's: it is served like any other.
    c2 = topo.connect("c", SERVER, 21, src=CLIENT, sport=peer[1])
    check(c2 is not None, "the client bound to port %d could not connect" % peer[1])
    try:
        s2, peer2 = ctl_l.accept()
    except socket.timeout:
        raise Failure("a client with source port %d (= fwx's own upstream source port) was not relayed to the server:"
                      " %r" % (peer[1], gw.stdout()[-600:]))
    s2.sendall(b"220 second\r\n")
    check(readline(c2).startswith("220 second"), "the second control connection got no 220 through the gateway")
    check("redirect loop" not in gw.stdout(), "a false redirect loop: %r" % gw.stdout()[-600:])
    for x in (c2, s2):
        x.close()
    log("ok: a client with fwx's own upstream source port %d was served (no false loop)" % peer[1])

    d = topo.connect("s", GW_OUT, gport, src=SERVER)
    check(d is not None, "the server could not open the data connection to the bound port")
    dc, peer = data_l.accept()
    check(peer[0] == SERVER, "the client saw the data connection from %s" % peer[0])
    d.sendall(b"payload")
    check(dc.recv(7) == b"payload", "no data over the kernel-mode data connection")

    def kernel_secondary():
        return [o for o in rows(gw, "connections") if o.get("mode") == "kernel"]
    ks = wait_until(kernel_secondary, 5, what="fwxctl to list the data connection in kernel mode")
    log("ok: fwxctl: the data connection is listed in kernel mode (%s -> %s)" % (ks[0].get("client"), ks[0].get("peer")))

    # 3. kill -9: the table stays; the restart replaces it and the old grants are gone.
    s2 = None
    c.sendall(("PORT 10,99,1,2,%d,%d\r\n" % (cport >> 8, cport & 255)).encode())
    line = readline(s)
    check(line.startswith("PORT 10,99,2,1,"), "second PORT: the server got %r" % line)
    f = [int(x) for x in line[5:].strip().split(",")]
    gport2 = f[4] * 256 + f[5]
    old_pid = gw.proc.pid  # ip netns exec execs the gateway: same pid
    gw.send(signal.SIGKILL)
    gw.proc.wait(10)
    gw.kill()
    left = table_of(topo, table)
    check(left is not None and str(gport2) in left,
          "after kill -9 the table (with bound port %d) should be left behind: %r" % (gport2, left))
    gw = Gateway(tmp, ["--config", cfg], name="gw2", wait_ready=False, prefix=["ip", "netns", "exec", topo.names["g"]])
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the restarted gateway to be ready")
    check(re.search(r"table inet %s was left by an earlier run \(pid %d\); replaced" % (table, old_pid), gw.stdout()),
          "the restart did not say it replaced a leftover table: %r" % gw.stdout()[-600:])
    now = table_of(topo, table)
    check(now is not None and str(gport2) not in now, "stale element for port %d after the restart: %r" % (gport2, now))
    s2 = topo.connect("s", GW_OUT, gport2, src=SERVER, timeout=1.5)
    check(s2 is None, "the dead gateway's bound port %d still let the server through" % gport2)
    for x in (d, dc, s, c, ctl_l, data_l, echo_l):
        x.close()
    log("ok: kill -9 left the table; the restart replaced it; the old bound port is closed")

    # 4. Clean exit: status 0, and the gateway fails closed: IP forwarding
    #    stays on, yet nothing is routed through; the gateway's own connections still work.
    echo_l = topo.listener("s", "0.0.0.0", 7000)
    c = topo.connect("c", SERVER, 7000)
    check(c is not None, "before the stop: port 7000 is not forwarded")
    echo_l.accept()[0].close()
    c.close()
    rc = gw.stop()
    check(rc == 0, "SIGTERM: exit status %s" % rc)
    left = table_of(topo, table)
    check(left is not None and "fwx gateway stopped" in left and "policy drop" in left and "prerouting" not in left,
          "after a clean exit table inet %s should be the closed one: %r" % (table, left))
    fwd = sh("ip", "netns", "exec", topo.names["g"], "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip()
    check(fwd == "1", "the test expects IP forwarding still on, got %r" % fwd)
    c = topo.connect("c", SERVER, 7000, timeout=1.5)
    check(c is None, "a clean stop opened the gateway: the client reached %s:7000 through it" % SERVER)
    own = topo.connect("g", SERVER, 7000)
    check(own is not None, "the stopped gateway cannot reach the server itself (its own output is filtered)")
    echo_l.accept()[0].close()
    own.close()
    check(re.search(r"stopped: table inet %s left closed: every forwarded packet is dropped" % table, gw.stdout()),
          "the stop did not say what it leaves in force: %r" % gw.stdout()[-600:])
    log("ok: SIGTERM: exit 0, forwarding closed (ip_forward=1), the gateway's own output works")

    # The next start replaces the closed table and forwards again; with on_stop = "open" the
    # stop deletes the table and says that forwarding is on.
    cfg_open = config(tmp, name, plugin, on_stop="open")
    gw = Gateway(tmp, ["--config", cfg_open], name="gw3", wait_ready=False,
                 prefix=["ip", "netns", "exec", topo.names["g"]])
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the gateway to start again")
    check("kept forwarding closed since an earlier run stopped" in gw.stdout(),
          "the start did not say it replaced the closed table: %r" % gw.stdout()[-600:])
    c = topo.connect("c", SERVER, 7000)
    check(c is not None, "after the restart port 7000 is not forwarded")
    echo_l.accept()[0].close()
    c.close()
    rc = gw.stop()
    check(rc == 0, "SIGTERM (on_stop = open): exit status %s" % rc)
    check(table_of(topo, table) is None, "on_stop = open: table inet %s still there after a clean exit" % table)
    check("deleted (on_stop = open): IP forwarding is on" in gw.stdout(),
          "on_stop = open: the stop did not say forwarding is open: %r" % gw.stdout()[-600:])
    echo_l.close()
    log("ok: restart replaced the closed table; on_stop = open deletes it and says so")


main(run)
