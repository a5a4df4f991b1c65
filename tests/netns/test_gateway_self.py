"""fwx-gateway does not relay to itself, in network namespaces this script
creates and deletes itself:

  client ns 10.97.1.2 --veth-- 10.97.1.1 gateway ns 10.97.2.1 --veth-- 10.97.2.2 server ns

The real fwx-gateway (user mode, IP forwarding off) runs in the gateway namespace with a SOCKS5
listener on every address and NO local_addresses in its file; the policy allows the internal
network everything, to the outside and to the gateway itself. A SOCKS client in the client
namespace then asks for:
  1. the server (10.97.2.2): reply 0 and the bytes come through (the policy does allow);
  2. a service on the gateway's other interface (10.97.2.1): reply 2, and the service accepts
     nothing (the gateway learned its own addresses from the system);
  3. a service on an address added with `ip addr add` while the gateway runs: reply 2, nothing
     accepted (it follows address changes);
  4. 0.0.0.7 (0.0.0.0/8, which Linux connects to the host itself): reply 2;
  5. the gateway's own SOCKS port through loopback (loopback_hosts makes 127.0.0.1 a host): reply
     2, no chaining of CONNECTs through the gateway.

Root and `ip` are needed; otherwise exit 77 with the reason.
SPDX-License-Identifier: MIT
"""
import os
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
from gwtest import Failure, Gateway, gateways_stopped, check, log, main, skip, write_file  # noqa: E402
import nstopo  # noqa: E402
from nstopo import sh  # noqa: E402

CLIENT, GW_IN, GW_OUT, SERVER = "10.97.1.2", "10.97.1.1", "10.97.2.1", "10.97.2.2"
ADDED = "10.97.2.9"
SOCKS_PORT = 1080
SVC_PORT = 7100
TIMEOUT = 5.0
PREFIX = "fwxs-"


class Topo(nstopo.Bed):
    """Three namespaces named with this pid, two veth pairs, forwarding off in the gateway."""

    def __init__(self):
        super().__init__(PREFIX, "g", {"c": nstopo.Side("cl0", [CLIENT + "/24"], [GW_IN + "/24"]),
                                       "s": nstopo.Side("sv0", [SERVER + "/24"], [GW_OUT + "/24"])},
                         forwarding=False)

    def listener(self, key, ip, port):
        return super().listener(key, ip, port, TIMEOUT)

    def connect(self, key, ip, port, src=None):
        def mk():
            s = socket.socket()
            s.settimeout(TIMEOUT)
            if src:
                s.bind((src, 0))
            try:
                s.connect((ip, port))
            except OSError:
                s.close()
                return None
            return s
        return self.run_in(key, mk)


def socks_connect(topo, ip, port):
    """A SOCKS5 CONNECT from the client namespace; (reply code, socket or None)."""
    s = topo.connect("c", GW_IN, SOCKS_PORT, src=CLIENT)
    check(s is not None, "cannot reach the SOCKS listener")
    s.sendall(b"\x05\x01\x00")
    check(s.recv(2) == b"\x05\x00", "the gateway did not choose no-authentication")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port))
    rep = s.recv(10)
    check(len(rep) >= 2 and rep[0] == 5, "no SOCKS reply to CONNECT %s:%d: %r" % (ip, port, rep))
    if rep[1] != 0:
        s.close()
        return rep[1], None
    return 0, s


def nothing_accepted(lsock):
    lsock.settimeout(0.5)
    try:
        c, _ = lsock.accept()
    except (socket.timeout, BlockingIOError):
        return True
    c.close()
    return False


def scenario(tmp, topo):
    cfg = os.path.join(tmp, "self.cfg")
    write_file(cfg, """gateway = { name = "self%d"; loopback_hosts = true; };
networks = { internal = { ranges = [ "10.97.1.0/24" ]; }; };
relationships = ( { from = "internal"; to = "external"; type = "nat"; } );
rules = ( { name = "all"; action = "allow"; from = [ "internal" ]; to = [ "external", "localhost" ];
            protocols = [ "all" ]; } );
""" % os.getpid())
    gw = Gateway(tmp, ["--config", cfg, "--socks", "0.0.0.0:%d" % SOCKS_PORT], name="self", wait_ready=False,
                 prefix=["ip", "netns", "exec", topo.names["g"]])
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the gateway to be ready")

    # 1. The server: allowed, bytes pass.
    srv = topo.listener("s", SERVER, SVC_PORT)
    rep, s = socks_connect(topo, SERVER, SVC_PORT)
    check(rep == 0, "CONNECT to the server %s: reply %d, want 0" % (SERVER, rep))
    peer, _ = srv.accept()
    s.sendall(b"hello\n")
    peer.settimeout(TIMEOUT)
    check(peer.recv(16) == b"hello\n", "the server did not get the client's bytes")
    peer.close()
    s.close()
    srv.close()

    # 2. The gateway's other interface, which no local_addresses names.
    other = topo.listener("g", GW_OUT, SVC_PORT)
    rep, s = socks_connect(topo, GW_OUT, SVC_PORT)
    check(rep == 2, "CONNECT to the gateway's other address %s: reply %d, want 2" % (GW_OUT, rep))
    check(nothing_accepted(other), "the service on the gateway's %s accepted a relayed connection" % GW_OUT)
    other.close()
    log("ok: CONNECT to the gateway's other interface refused (reply 2)")

    # 3. An address added while the gateway runs.
    sh("ip", "-n", topo.names["g"], "addr", "add", ADDED + "/24", "dev", "sv0")
    added = topo.listener("g", ADDED, SVC_PORT)
    rep, s = socks_connect(topo, ADDED, SVC_PORT)
    check(rep == 2, "CONNECT to %s, added at run time: reply %d, want 2" % (ADDED, rep))
    check(nothing_accepted(added), "the service on the added %s accepted a relayed connection" % ADDED)
    added.close()
    log("ok: CONNECT to an address added at run time refused")

    # 4. 0.0.0.0/8 as a destination.
    anyl = topo.listener("g", "0.0.0.0", SVC_PORT + 1)
    rep, s = socks_connect(topo, "0.0.0.7", SVC_PORT + 1)
    check(rep == 2, "CONNECT to 0.0.0.7: reply %d, want 2" % rep)
    check(nothing_accepted(anyl), "a service on the gateway accepted a connection to 0.0.0.7")
    anyl.close()

    # 5. Chaining through the gateway's own SOCKS port (127.0.0.1 is a host with loopback_hosts).
    rep, s = socks_connect(topo, "127.0.0.1", SOCKS_PORT)
    check(rep == 2, "CONNECT to the gateway's own SOCKS port 127.0.0.1:%d: reply %d, want 2" % (SOCKS_PORT, rep))
    out = gw.stdout()
    check("one of the gateway's own listeners" in out, "no log line for the chained CONNECT: %r" % out[-600:])
    check(gw.stop() == 0, "the gateway did not exit 0 on SIGTERM")


def run(tmp):
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    if subprocess.run(["sh", "-c", "command -v ip"], capture_output=True).returncode != 0:
        skip("no ip command")
    topo = Topo()
    topo.up_or_skip()
    with gateways_stopped(topo.down):
        scenario(tmp, topo)


if __name__ == "__main__":
    main(run)
