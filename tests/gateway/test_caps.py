#!/usr/bin/env python3
"""Caps an attacker hits, through the real fwx-gateway.

- gateway.max_permissions_per_client = 2: three FTP control connections of one client each send
  a PORT through the published server; the ftp plugin's third RedirectConnections is over the
  session's cap (the client address's connections share one session): the client gets
  "500 Illegal PORT command.", the server never sees that PORT, and the gateway logs at warn
  which cap refused (FWX_E_QUOTA_EXCEEDED) once, naming the config key.
- gateway.socks_limits: client A holds BINDs up to binds_per_client; its next BIND gets SOCKS
  reply 2 and a warn line naming the client and the cap; client B still gets its BIND and a
  CONNECT. A client over connections_per_client gets method 0xFF; a third client over the
  gateway's cap in all (binds) gets reply 1. Each refusal is counted in the metrics as
  fwx_refusals_total{reason="limits"}.
SPDX-License-Identifier: MIT
"""
import os
import socket
import struct
import threading

from gwtest import (CLIENT_IP, GW_IP, IO_TIMEOUT, SERVER_IP, EchoServer, Gateway, check, free_port, log,
                    main, program)

OTHER_CLIENT_IP = "127.0.0.4"
THIRD_CLIENT_IP = "127.0.0.5"


class FtpServer:
    """A minimal FTP server on 127.0.0.3: 220, then 200 to every command, 221 to QUIT, for any
    number of control connections. Records every line it received."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.bind((SERVER_IP, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _serve(self, c):
        with c:
            c.settimeout(IO_TIMEOUT)
            c.sendall(b"220 test server\r\n")
            f = c.makefile("rb")
            try:
                for _ in range(100):
                    line = f.readline()
                    if not line:
                        break
                    with self.lock:
                        self.received.append(line)
                    if line.startswith(b"QUIT"):
                        c.sendall(b"221 bye\r\n")
                        break
                    c.sendall(b"200 ok\r\n")
            except OSError:
                pass
            f.close()

    def _run(self):
        for _ in range(16):
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def stop(self):
        self.sock.close()
        self.thread.join(IO_TIMEOUT)


def permission_cap(tmp):
    srv = FtpServer()
    port = free_port()
    cfg = os.path.join(tmp, "perm.cfg")
    with open(cfg, "w") as f:
        f.write('gateway = { plugins = [ "%s" ]; loopback_hosts = true; max_permissions_per_client = 2; };\n'
                'protocols = ( { name = "ftp-in"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-00000000ca01}"; protocol = "tcp";'
                ' port = %d; direction = "inbound"; filters = [ "ftp" ]; } );\n'
                'rules = ( { name = "ftp"; action = "allow"; from = [ "localhost", "external" ];'
                ' to = [ "localhost", "external" ]; protocols = [ "ftp-in" ]; } );\n'
                'publishing = ( { name = "ftp"; listen = "%s:%d"; server = "%s:%d"; protocol = "ftp-in";'
                ' full_proxy = true; } );\n' % (program("FWX_FTP_PLUGIN"), port, GW_IP, port, SERVER_IP, srv.port))
    gw = Gateway(tmp, ["--config", cfg], name="gateway-perm")
    conns, replies = [], []
    for i in range(3):
        c = socket.socket()
        c.settimeout(IO_TIMEOUT)
        c.bind((CLIENT_IP, 0))
        c.connect((GW_IP, port))
        f = c.makefile("rb")
        check(f.readline().startswith(b"220"), "connection %d: no greeting" % i)
        conns.append((c, f))
    for i, (c, f) in enumerate(conns):
        c.sendall(b"PORT 127,0,0,2,%d,%d\r\n" % (200 + i, 1))
        replies.append(f.readline())
    check(replies[0].startswith(b"200") and replies[1].startswith(b"200"),
          "the first two PORTs (within the cap of 2): got %r" % replies[:2])
    check(replies[2] == b"500 Illegal PORT command.\r\n",
          "the third PORT (over the cap of 2): got %r, want the ftp filter's 500" % replies[2])
    with srv.lock:
        ports = [l for l in srv.received if l.startswith(b"PORT")]
    check(len(ports) == 2, "the server saw %d PORTs, want 2: %r" % (len(ports), ports))
    gw.wait_log("refused: the session is at its cap of 2 outstanding permissions (max_permissions_per_session; "
                "fwx-gateway: gateway.max_permissions_per_client)", what="the engine's cap line")
    out = gw.stdout()
    check("too many grants (FWX_E_QUOTA_EXCEEDED)" in out, "the ftp plugin's refusal does not name "
          "FWX_E_QUOTA_EXCEEDED:\n%s" % out[-2000:])
    # Once a session: a fourth refusal on the same session is not said at warn again.
    c, f = conns[2]
    c.sendall(b"PORT 127,0,0,2,210,1\r\n")
    check(f.readline() == b"500 Illegal PORT command.\r\n", "the fourth PORT was not refused")
    check(gw.stdout().count("at its cap of 2 outstanding permissions") == 1,
          "the cap's warn line was said more than once for one session")
    for c, f in conns:
        f.close()
        c.close()
    gw.stop()
    srv.stop()
    log("ok: max_permissions_per_client = 2: the third PORT got 500, the server never saw it, one warn line "
        "named the cap")


def socks_hello(src, port):
    s = socket.socket()
    s.settimeout(IO_TIMEOUT)
    s.bind((src, 0))
    s.connect((GW_IP, port))
    s.sendall(b"\x05\x01\x00")
    return s, s.recv(2)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            break
        b += d
    return b


def socks_request(src, port, cmd, addr, dport):
    s, hello = socks_hello(src, port)
    check(hello == b"\x05\x00", "SOCKS greeting from %s: got %r" % (src, hello))
    s.sendall(b"\x05" + bytes([cmd]) + b"\x00\x01" + socket.inet_aton(addr) + struct.pack("!H", dport))
    rep = recv_exact(s, 10)
    check(len(rep) == 10 and rep[0] == 5, "SOCKS reply from the gateway to %s: got %r" % (src, rep))
    return s, rep[1]


def socks_caps(tmp):
    echo = EchoServer()
    port = free_port()
    cfg = os.path.join(tmp, "socks.cfg")
    with open(cfg, "w") as f:
        f.write('gateway = { loopback_hosts = true; socks = "%s:%d";\n'
                '  socks_limits = { binds_per_client = 2; binds = 4; connections_per_client = 4; connections = 16; }; };\n'
                'rules = ( { name = "all"; action = "allow"; from = [ "localhost", "external" ];'
                ' to = [ "localhost", "external" ]; protocols = [ "all" ]; } );\n' % (GW_IP, port))
    gw = Gateway(tmp, ["--config", cfg], name="gateway-socks")
    held = []
    for i in range(2):
        s, rep = socks_request(CLIENT_IP, port, 2, "127.0.0.3", 0)
        check(rep == 0, "BIND %d of client A (within its cap of 2): reply %d, want 0" % (i, rep))
        held.append(s)
    s, rep = socks_request(CLIENT_IP, port, 2, "127.0.0.3", 0)
    check(rep == 2, "BIND 3 of client A (over its cap of 2): reply %d, want 2 (not allowed)" % rep)
    check(s.recv(1) == b"", "the refused BIND's connection stays open")
    s.close()
    gw.wait_log("socks client %s:" % CLIENT_IP, what="the cap's warn line")
    gw.wait_log("BIND: at its cap of 2 binds per client (socks_limits.binds_per_client), refused (reply 2)",
                what="the BIND cap's warn line")
    # Another client is still served: a BIND and a CONNECT through to the echo server.
    b, rep = socks_request(OTHER_CLIENT_IP, port, 2, "127.0.0.3", 0)
    check(rep == 0, "BIND of client B while A is at its cap: reply %d, want 0" % rep)
    c, rep = socks_request(OTHER_CLIENT_IP, port, 1, SERVER_IP, echo.port)
    check(rep == 0, "CONNECT of client B while A is at its cap: reply %d, want 0" % rep)
    c.sendall(b"ping\n")
    check(recv_exact(c, 5) == b"ping\n", "client B's CONNECT does not relay")
    c.close()
    # The gateway's own cap (binds = 4): B's second BIND takes the last; C's is refused with
    # reply 1. A second on: the warn line of a kind is said at most once a second.
    b2, rep = socks_request(OTHER_CLIENT_IP, port, 2, "127.0.0.3", 0)
    check(rep == 0, "second BIND of client B (the gateway's fourth): reply %d, want 0" % rep)
    threading.Event().wait(1.1)
    s, rep = socks_request(THIRD_CLIENT_IP, port, 2, "127.0.0.3", 0)
    check(rep == 1, "BIND of client C over the gateway's cap of 4: reply %d, want 1 (general failure)" % rep)
    s.close()
    gw.wait_log("BIND: the gateway is at its cap of 4 binds in all (socks_limits.binds), refused (reply 1)",
                what="the global BIND cap's warn line")
    b2.close()
    b.close()
    # Client A's control connections: 2 held BINDs + 2 negotiating reach its cap of 4.
    extra = [socks_hello(CLIENT_IP, port) for _ in range(2)]
    check(all(h == b"\x05\x00" for _, h in extra), "connections 3-4 of client A: %r" % [h for _, h in extra])
    s, hello = socks_hello(CLIENT_IP, port)
    check(hello == b"\x05\xff", "connection 5 of client A (over its cap of 4): got %r, want method 0xff" % hello)
    s.close()
    gw.wait_log("connection: at its cap of 4 connections per client (socks_limits.connections_per_client), refused",
                what="the connection cap's warn line")
    # Each of the three cap refusals so far is an event, counted by operators' metrics as "limits"
    # (read now: the retries below may meet the cap again while the gateway sees the closes).
    metrics = gw.ctl("metrics").stdout
    check('fwx_refusals_total{reason="limits"} 3\n' in metrics,
          "the three SOCKS cap refusals are not counted as limits: %r"
          % [l for l in metrics.splitlines() if l.startswith("fwx_refusals_total")])
    for x, _ in extra:
        x.close()
    # A's BINDs given back: it may bind again.
    for x in held:
        x.close()
    ok = False
    for _ in range(50):  # the gateway sees the closes a moment later
        s, hello = socks_hello(CLIENT_IP, port)
        if hello == b"\x05\x00":
            s.close()
            s, rep = socks_request(CLIENT_IP, port, 2, "127.0.0.3", 0)
            ok = rep == 0
            s.close()
            break
        s.close()
        threading.Event().wait(0.05)
    check(ok, "client A cannot BIND again after closing its BINDs")
    gw.stop()
    echo.stop()
    log("ok: socks_limits: A's third BIND got reply 2, its fifth connection method 0xff, each with a warn line; "
        "B was served")


def bad_limits(tmp):
    cfg = os.path.join(tmp, "bad.cfg")
    with open(cfg, "w") as f:
        f.write('gateway = {\n  socks_limits = { binds_per_client = 9; binds = 16; };\n};\n')
    import subprocess
    r = subprocess.run([program("FWX_GATEWAY"), "--config", cfg, "--check"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 2, "--check of a per-client cap over half the global: exit %d" % r.returncode)
    check("%s:2: gateway.socks_limits: binds_per_client (9) must be at most half of binds (16 here)" % cfg in r.stderr,
          "--check does not name file:line and the caps: %r" % r.stderr)
    with open(cfg, "w") as f:
        f.write('gateway = {\n  max_permissions_per_client = "2";\n};\n')
    r = subprocess.run([program("FWX_GATEWAY"), "--config", cfg, "--check"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 2 and "%s:2: gateway.max_permissions_per_client: must be a whole number" % cfg in r.stderr,
          "a string cap: exit %d, %r" % (r.returncode, r.stderr))
    log("ok: a cap over half its global cap, and a cap given as a string, fail --check at file:line")


def run(tmp):
    bad_limits(tmp)
    permission_cap(tmp)
    socks_caps(tmp)


if __name__ == "__main__":
    main(run)
