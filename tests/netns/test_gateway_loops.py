"""fwx-gateway with two event loops (--threads 2, proxy backend, FTP plugin) publishing a strict
stock vsftpd through a dual-homed gateway, in network namespaces this script creates and deletes
itself:

  client ns                  gateway ns (ip forwarding OFF)           server ns
  10.97.1.10 .. 10.97.1.17  --veth--  10.97.1.1 | 10.97.2.1  --veth--  10.97.2.2 (vsftpd)

Each loop has its own firewall, so a session, its FTP filter and the permissions and ports the
filter opens live in one loop: the data connection of an FTP transfer must reach the loop of its
control connection. The gateway sends each client address to one loop on every shared listener
(SO_REUSEPORT and a reuseport program), and opens a data port (BindForClient, RedirectConnections)
on the client's loop only; a SOCKS client's passive data connection is a second CONNECT to the
SOCKS listener that only an address-based permission of its control connection's session allows
(the policy allows port 21 alone).

Eight client addresses each run four transfers with curl (published PASV, published PORT, SOCKS
PASV, SOCKS PORT). After each client, the gateway's own per-loop counters (`fwxctl -j loops`) must
show that exactly one loop served all of that client's connections, two per transfer (control and
data); at the end both loops must have served clients, every file must be whole (SHA-256), the
metrics' per-loop counters must agree, and `fwxctl connections` / `sessions` must show the loop of
each object. `kill session ID` without loop= is refused when both loops have that id.

Root, `ip`, `ss`, vsftpd and curl are needed (./run test installs them); otherwise exit 77 with
the reason.
SPDX-License-Identifier: MIT
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
from gwtest import (ftp_plugin, Failure, Gateway, check, log, main, program, sha256_file as sha256, skip,  # noqa: E402
                    wait_until, write_file)
import nstopo  # noqa: E402
from nstopo import sh  # noqa: E402
from test_gateway_proxy import Vsftpd, find_vsftpd  # noqa: E402

CLIENTS = ["10.97.1.%d" % i for i in range(10, 18)]
G_IN, G_OUT, SERVER = "10.97.1.1", "10.97.2.1", "10.97.2.2"
FTP_GUID = "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"
PREFIX = "fwxlp-"
SOCKS_PORT = 1080
PAYLOAD_SIZE = 256 * 1024
MODES = [("published", "pasv"), ("published", "port"), ("socks", "pasv"), ("socks", "port")]


class Topology(nstopo.Bed):
    def __init__(self):
        super().__init__(PREFIX, "g", {
            "c": nstopo.Side("cl0", [a + "/24" for a in CLIENTS], [G_IN + "/24"]),
            "s": nstopo.Side("sv0", [SERVER + "/24"], [G_OUT + "/24"])}, forwarding=False)

    def listening(self, key, port):
        return sh(*self.wrap(key, ["ss", "-Hltn", "( sport = :%d )" % port]), ok=False).stdout.strip()


def config(tmp, plugin):
    path = os.path.join(tmp, "gateway.cfg")
    write_file(path, """gateway = {
  name = "loops%d";
  backend = "proxy";
  threads = 2;
  plugin_dir = "%s";
  plugins = [ "ftp" ];
  local_addresses = [ "%s", "%s" ];
  port_range = "43000-43999";
  log_level = "info";
  socks = "%s:%d";
};
networks = { internal = { ranges = [ "10.97.1.0/24" ]; };
             dmz = { ranges = [ "10.97.2.0/24" ]; };
             localhost = { ranges = [ "%s/32", "%s/32" ]; }; };
relationships = ( { from = "internal"; to = "dmz"; type = "nat"; } );
protocols = (
  { name = "ftp-in"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000270021}"; protocol = "tcp"; port = 21;
    direction = "inbound"; filters = [ "%s" ]; },
  { name = "ftp"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000270121}"; protocol = "tcp"; port = 21;
    direction = "outbound"; filters = [ "%s" ]; }
);
rules = ( { name = "ftp only"; action = "allow"; from = [ "internal", "external" ];
            to = [ "localhost", "dmz" ]; protocols = [ "ftp-in", "ftp" ]; } );
publishing = ( { name = "ftp"; listen = "%s:21"; server = "%s:21"; protocol = "ftp-in"; full_proxy = true; } );
""" % (os.getpid(), os.path.dirname(plugin), G_IN, G_OUT, G_IN, SOCKS_PORT, G_IN, G_OUT, FTP_GUID, FTP_GUID,
       G_IN, SERVER))
    return path


def ctl_json(gw, *args):
    r = subprocess.run([program("FWXCTL"), "-s", gw.sock, "-j"] + list(args), capture_output=True, text=True,
                       timeout=15)
    check(r.returncode == 0, "fwxctl %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def served(gw):
    """Connections each loop has opened since the start, from `fwxctl -j loops`."""
    rows = [o for o in ctl_json(gw, "loops") if o.get("kind") == "loop"]
    check(len(rows) == 2, "fwxctl loops: want 2 loops, got %r" % rows)
    check(all(o["answered"] is True for o in rows), "fwxctl loops: a loop did not answer: %r" % rows)
    return [o["connections_served"] for o in sorted(rows, key=lambda o: o["loop"])]


def transfer(topo, tmp, client, via, mode, want, n):
    argv = ["curl", "-sS", "--max-time", "20", "--connect-timeout", "5", "--interface", client]
    argv += ["--ftp-pasv", "--disable-epsv"] if mode == "pasv" else ["-P", client, "--disable-eprt"]
    if via == "socks":
        argv += ["--socks5", "%s:%d" % (G_IN, SOCKS_PORT)]
        url = "ftp://%s/payload.bin" % SERVER
    else:
        url = "ftp://%s/payload.bin" % G_IN
    out = os.path.join(tmp, "got-%d.bin" % n)
    r = subprocess.run(topo.wrap("c", argv + ["-o", out, url]), capture_output=True, text=True, timeout=30)
    what = "client %s, %s %s" % (client, via, mode)
    check(r.returncode == 0, "%s: curl exit %d: %s" % (what, r.returncode, r.stderr.strip()[-400:]))
    check(sha256(out) == want, "%s: the file arrived changed or cut" % what)
    os.unlink(out)


def scenario(tmp, topo, plugin, payload):
    gw = Gateway(tmp, ["--config", config(tmp, plugin)], wait_ready=False, prefix=topo.wrap("g", []))
    gw.wait_log("fwx-gateway: ready", timeout=15, what="the gateway to be ready")
    check("2 event loops" in gw.stdout(), "the ready line does not say 2 event loops")
    want = sha256(payload)
    owner = {}
    n = 0
    for client in CLIENTS:
        before = served(gw)
        for via, mode in MODES:
            n += 1
            transfer(topo, tmp, client, via, mode, want, n)
        # Every connection is counted when it opens: the last data connection is open by the
        # time curl has the whole file.
        after = served(gw)
        grew = [after[i] - before[i] for i in range(2)]
        check(sorted(grew) == [0, 2 * len(MODES)],
              "client %s: its %d transfers opened %r connections on loops 0 and 1; want all %d (control and data "
              "of each) on one loop" % (client, len(MODES), grew, 2 * len(MODES)))
        owner[client] = grew.index(2 * len(MODES))
        log("ok: client %s: %d transfers whole, control and data connections all on loop %d"
            % (client, len(MODES), owner[client]))
    loops_used = sorted(set(owner.values()))
    check(loops_used == [0, 1], "every client landed on loop %s: both loops must serve (owners %r)"
          % (loops_used, owner))
    total = served(gw)
    check(sum(total) == 2 * len(MODES) * len(CLIENTS), "loops served %r connections, want %d in all"
          % (total, 2 * len(MODES) * len(CLIENTS)))
    # The metrics count the same per loop.
    text = ctl_json(gw, "metrics")[0]["text"]
    for i in range(2):
        m = re.search(r'^fwx_loop_connections_opened_total\{loop="%d"\} (\d+)$' % i, text, re.M)
        check(m is not None and int(m.group(1)) == total[i],
              "metrics: loop %d opened %s connections, fwxctl loops says %d" % (i, m and m.group(1), total[i]))
    m = re.search(r"^fwx_event_loops (\d+)$", text, re.M)
    check(m is not None and m.group(1) == "2", "metrics: fwx_event_loops is not 2")
    log("ok: both loops served (%d and %d connections); the metrics agree" % (total[0], total[1]))
    listing_and_kill(topo, gw, owner)
    rc = gw.stop()
    check(rc == 0, "fwx-gateway exited %d at SIGTERM (want 0: every loop closed clean)" % rc)
    log("ok: SIGTERM: both loops closed, exit 0")


def listing_and_kill(topo, gw, owner):
    """One control connection per loop held open: `fwxctl sessions` shows both loops' sessions,
    each with its loop; a kill of an id both loops have is refused without loop=, done with it."""
    c0 = next(c for c in CLIENTS if owner[c] == 0)
    c1 = next(c for c in CLIENTS if owner[c] == 1)
    def hold(client):
        def mk():
            s = socket.socket()
            s.settimeout(5)
            s.bind((client, 0))
            s.connect((G_IN, 21))
            check(s.recv(256).startswith(b"220"), "%s: no 220 through the gateway" % client)
            return s
        return topo.run_in("c", mk)
    holders = [hold(c0), hold(c1)]
    try:
        def both():
            sess = [o for o in ctl_json(gw, "sessions") if o.get("kind") == "session"]
            by = {}
            for o in sess:
                by.setdefault(o["client"], set()).add(o["loop"])
            return by.get(c0) == {0} and by.get(c1) == {1}
        wait_until(both, 10, what="fwxctl sessions to list %s on loop 0 and %s on loop 1" % (c0, c1))
        conns = [o for o in ctl_json(gw, "connections") if o.get("kind") == "connection"]
        check(all(o["loop"] in (0, 1) for o in conns), "a connection without its loop: %r" % conns)
        # `stats` combines the loops by each counter's name: sessions and connections added up,
        # the plugins (each loop loads the same one) counted once. Read again until both answers
        # describe the same moment (an earlier transfer's session may still be ending).
        seen = {}
        def stats_agree():
            st = [o for o in ctl_json(gw, "stats") if o.get("kind") == "stats"]
            rows = [o for o in ctl_json(gw, "loops") if o.get("kind") == "loop"]
            check(len(st) == 1 and st[0]["loops"] == 2 and st[0]["plugins"] == 1,
                  "fwxctl stats over 2 loops with one plugin: %r" % st)
            seen.update(stats=st[0], rows=rows)
            return all(st[0][k] == sum(o[k] for o in rows) for k in ("sessions", "connections"))
        wait_until(stats_agree, 10, step=0.2, what="fwxctl stats to be the loops' sums")
        check(seen["stats"]["sessions"] >= 2, "fwxctl stats: %r sessions with two held" % seen["stats"])
        log("ok: fwxctl stats sums the loops' sessions (%d) and connections, counts the plugin once"
            % seen["stats"]["sessions"])
        ids = {}
        for o in [o for o in ctl_json(gw, "sessions") if o.get("kind") == "session"]:
            ids.setdefault(o["id"], set()).add(o["loop"])
        shared = [i for i, loops in ids.items() if loops == {0, 1}]
        if shared:
            r = subprocess.run([program("FWXCTL"), "-s", gw.sock, "kill", "session", str(shared[0])],
                               capture_output=True, text=True, timeout=15)
            check(r.returncode != 0 and "say which with loop=N" in r.stderr,
                  "kill of session %d (on both loops) without loop=: exit %d, %r" % (shared[0], r.returncode,
                                                                                    r.stderr))
            r = subprocess.run([program("FWXCTL"), "-s", gw.sock, "kill", "session", str(shared[0]), "loop=1"],
                               capture_output=True, text=True, timeout=15)
            check(r.returncode == 0, "kill session %d loop=1: exit %d, %r" % (shared[0], r.returncode, r.stderr))
            log("ok: session id %d is on both loops: kill without loop= refused, with loop=1 done" % shared[0])
        log("ok: fwxctl sessions and connections show each object's loop")
    finally:
        for h in holders:
            h.close()


def bad_threads(tmp):
    """A threads key out of range is refused with file:line; so is a --threads that is no number."""
    cfg = os.path.join(tmp, "bad.cfg")
    write_file(cfg, "gateway = {\n  threads = 65;\n};\n")
    r = subprocess.run([program("FWX_GATEWAY"), "--config", cfg, "--check"], capture_output=True, text=True, timeout=15)
    check(r.returncode == 2 and "%s:2: gateway.threads: must be a whole number of event loops from 1 to 64" % cfg
          in r.stderr, "threads = 65: exit %d, %r" % (r.returncode, r.stderr))
    r = subprocess.run([program("FWX_GATEWAY"), "--socks", "127.0.0.1:1", "--threads", "two", "--check"],
                       capture_output=True, text=True, timeout=15)
    check(r.returncode == 2 and "--threads takes a number of event loops" in r.stderr,
          "--threads two: exit %d, %r" % (r.returncode, r.stderr))
    log("ok: threads = 65 refused at file:line, --threads two refused")


def needs():
    """The vsftpd binary and the FTP plugin; skips (77) saying what this machine lacks."""
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    missing = [t for t in ("ip", "ss", "curl") if shutil.which(t) is None]
    if missing:
        skip("no %s command" % missing[0])
    exe = find_vsftpd()
    if exe is None:
        skip("vsftpd is not installed (Debian package vsftpd; ./run test installs it)")
    plugin = ftp_plugin()
    return exe, plugin


def run(tmp):
    bad_threads(tmp)
    exe, plugin = needs()
    payload = os.path.join(tmp, "payload.bin")
    with open(payload, "wb") as f:
        f.write(os.urandom(PAYLOAD_SIZE))
    os.makedirs(os.path.join(tmp, "srv"))
    topo = Topology()
    topo.up_or_skip()
    server = Vsftpd(topo, os.path.join(tmp, "srv"), exe, "vsftpd", SERVER, (30200, 30299))
    try:
        server.prepare(payload)
        server.start()
        scenario(tmp, topo, plugin, payload)
    except Failure:
        for g in list(Gateway.running):
            g.dump_log(60)
        raise
    finally:
        # Everything this run started, then the namespaces.
        stopping = list(Gateway.running)
        [g.kill() for g in stopping]
        server.stop()
        topo.down()


if __name__ == "__main__":
    main(run)
