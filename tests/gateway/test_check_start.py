"""fwx-gateway --check refuses what would stop a start: a metrics or SOCKS
address this host does not hold or another program listens on, a control socket another
gateway already holds, a plugin that is not there; and a start with the same file fails the
same way. A file that passes starts.
SPDX-License-Identifier: MIT
"""
import os
import socket
import subprocess

from gwtest import EchoServer, Gateway, GW_IP, check, free_port, log, main, program, write_file

BASE = """protocols = (
  { name = "svc"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-000000000301}"; protocol = "tcp"; port = %d; direction = "inbound"; }
);
rules = (
  { name = "svc in"; action = "allow"; from = [ "localhost", "external" ]; to = [ "localhost", "external" ];
    protocols = [ "svc" ]; }
);
publishing = (
  { name = "pub"; listen = "%s:%d"; server = "127.0.0.3:%d"; protocol = "svc"; full_proxy = true; }
);
"""


def gateway_run(args, timeout=15):
    return subprocess.run([program("FWX_GATEWAY")] + args, capture_output=True, text=True, timeout=timeout)


def run(tmp):
    echo = EchoServer()
    lport = free_port()
    cfg = os.path.join(tmp, "gw.cfg")
    sock = os.path.join(tmp, "gw.sock")
    body = BASE % (lport, GW_IP, lport, echo.port)
    busy = socket.socket()
    busy.bind((GW_IP, 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    cases = [
        ('metrics_listen = "192.0.2.1:9464";', "gateway.metrics_listen: cannot listen on 192.0.2.1:9464",
         "does not hold that address"),
        ('metrics_listen = "%s:%d";' % (GW_IP, busy_port), "gateway.metrics_listen: cannot listen on",
         "another program listens there"),
        ('socks = "192.0.2.1:1080";', "gateway.socks: cannot listen on 192.0.2.1:1080", "does not hold"),
        ('plugins = [ "no-such-plugin" ];', "no-such-plugin", ""),
    ]
    for group, want, why in cases:
        write_file(cfg, "gateway = { %s };\n" % group + body)
        r = gateway_run(["--config", cfg, "--check", "--control", sock])
        check(r.returncode in (1, 2) and want in r.stderr and why in r.stderr,
              "--check with %s: exit %d, %r" % (group, r.returncode, r.stderr))
        r = gateway_run(["--config", cfg, "--control", sock])
        check(r.returncode != 0, "a start with %s succeeded after --check refused it" % group)
        log("ok: --check refuses %s, and so does a start" % group)
    busy.close()

    write_file(cfg, "gateway = { metrics_listen = \"%s:%d\"; };\n" % (GW_IP, free_port()) + body)
    r = gateway_run(["--config", cfg, "--check", "--control", sock])
    check(r.returncode == 0, "--check of a good file: %d %r" % (r.returncode, r.stderr))
    gw = Gateway(tmp, ["--config", cfg, "--control", sock], control=None)
    # A second gateway with the same file: its control socket is held.
    write_file(cfg + "2", "gateway = { };\n" + BASE % (lport, GW_IP, free_port(), echo.port))
    r = gateway_run(["--config", cfg + "2", "--check", "--control", sock])
    check(r.returncode == 2 and "another gateway is listening there" in r.stderr,
          "--check with a held control socket: %d %r" % (r.returncode, r.stderr))
    check(gw.stop() == 0, "exit status")
    log("ok: a good file passes --check and starts; a control socket in use is refused")


main(run)
