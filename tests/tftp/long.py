#!/usr/bin/env python3
"""fwx tests - a TFTP transfer that outlives its request's flow, through fwx-gateway.

The bed and gateway of matrix.py (tests/netns/nstopo.py's dual-homed namespaces, the tftp
plugin, tftpd-hpa in the server namespace). A TFTP transfer runs on the flow the request's
permission admitted, not on the request's own flow (to the server's port 69): once the server
has answered, the request flow sees nothing more and idles out after the gateway's timeout
(`gateway.timeout`, 2 s here; in the nft backend a second later, so that an unanswered
request's permission expires by itself first). The client's session must live on while the transfer runs, and
end when it is over:

  - the gateway's egress is slowed with a tbf qdisc (no netem here), so a real client's transfer
    of a real file lasts several times the timeout: tftp-hpa getting a file (blksize 512),
    curl putting one (blksize 1428); SHA-256 compared on both ends;
  - while each runs, after the request flow has idled out: `fwxctl connections` shows the
    transfer (in kernel mode with --backend nft) and no flow to the server's port 69 is left,
    and the client's session is still listed;
  - a request answered with an ERROR (no such file) ends the same way: the client reports it;
  - after each: once the transfer's flow has gone (conntrack's UDP timeouts lowered to 3 s in
    the gateway namespace for nft), no UDP connection, no permission and no session of the
    client are listed, and (nft) the table's permission and DNAT sets hold no element;
  - the gateway's log never says a flow was killed;
  - nft: a TCP connection of the same client that fwx intercepts into user space (the ftp
    plugin's filter is bound to port 21, so intercept.c relays it; a line server in the server
    namespace answers) shares the client's session with the transfer: one (tftp-hpa v4 get)
    opened while the transfer runs and closed after the request flow idled out leaves the
    session and the transfer alone (the file arrives whole); another (curl v4 put) opened while
    the transfer runs outlives it: once the transfer's flow has gone the session is still
    listed and the connection still answers, and everything goes when it closes; one more is
    still open when the gateway stops (the relay ends after the backend's state is freed): the
    gateway stops by itself (status 0) and (under ASan) says nothing.

--backend nft: clients behind a transparent gateway (kernel mode, NAT); --backend proxy: a
published server (user mode, forwarding off), where the answer flow holds the session.
IPv4 and (tftp-hpa, curl) IPv6 in both backends. ~25 s a backend.
Needs root, iproute2 (tc), tftpd-hpa, tftp-hpa, curl (and the ftp plugin built, nft); exits 77 (skipped) saying why otherwise.
  long.py BUILD_DIR --backend proxy|nft
SPDX-License-Identifier: MIT
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
import nstopo  # noqa: E402
sys.path.insert(0, HERE)
import matrix  # noqa: E402
from real_clients import run, sha256_file as sha  # noqa: E402

TIMEOUT_S = 2  # gateway.timeout: the request flow idles out after this long (nft: and a second)
CT_UDP_S = 3   # conntrack's UDP timeouts in the gateway namespace (nft)
RATE = "160kbit"  # the gateway's egress each way: 20 KB/s
SIZE = 110 * 1024  # ~5.5 s at RATE: twice the request flow's idle period
FTP_PORT = 21      # the intercepted TCP port (nft): the ftp plugin's filter is bound to it
FTP_PLUGIN_GUID = "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"


def log(msg):
    print(msg, flush=True)


def udp_rows(gw, what, ip):
    return [r for r in gw.fwxctl(what) if "udp" in json.dumps(r).lower() and ip in json.dumps(r)]


def tcp_rows(gw, ip):
    return [r for r in gw.fwxctl("connections") if str(r.get("protocol", "")).lower() == "tcp" and ip in json.dumps(r)]


class Gateway(matrix.Gateway):
    """matrix.py's gateway; with --backend nft also the ftp plugin, its filter bound to TCP port
    21 (outbound), so fwx intercepts a client's connection there into user space (intercept.c)."""

    def config(self):
        text = super().config()
        if self.backend != "nft":
            return text
        ftp = os.path.join(self.build, "plugins", "ftp", "ftp.so")
        for old, new in (
                ('plugins = [ "tftp" ];', 'plugins = [ "tftp", "%s" ];' % ftp),
                ("protocols = ( {", 'protocols = ( { name = "ftp"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000000021}"; '
                 'protocol = "tcp";\n    port = %d; direction = "outbound"; filters = [ "%s" ]; },\n  {'
                 % (FTP_PORT, FTP_PLUGIN_GUID)),
                ('protocols = [ "tftp" ]; }', 'protocols = [ "tftp", "ftp" ]; }')):
            if text.count(old) != 1:
                raise nstopo.Failure("matrix.py's nft config changed: %r is not there once" % old)
            text = text.replace(old, new)
        return text


class LineServer:
    """A TCP server in the server namespace on S4:FTP_PORT, FTP-like: "220" on accept, then
    "200 <n>" for each line, until the peer closes. One connection at a time, bounded waits."""

    def __init__(self, bed):
        self.sock = bed.listener("s", matrix.S4, FTP_PORT, timeout=60)
        self.stop_flag = False
        self.conn = None   # the connection being served, shut down by close()
        self.t = threading.Thread(target=self.body, daemon=True)
        self.t.start()

    def body(self):
        while not self.stop_flag:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conn = c
            with c:
                c.settimeout(60)
                n = 0
                try:
                    c.sendall(b"220 fwx long.py\r\n")
                    buf = b""
                    while True:
                        d = c.recv(4096)
                        if not d:
                            break
                        buf += d
                        while b"\n" in buf:
                            _, buf = buf.split(b"\n", 1)
                            n += 1
                            c.sendall(b"200 %d\r\n" % n)
                except OSError:
                    pass

    def close(self):
        # shutdown, not close, wakes the thread where it waits: in accept (the listener) or in
        # recv (a connection still held open). close alone left it there until join's 5 s.
        self.stop_flag = True
        for s in (self.sock, self.conn):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.sock.close()
        self.t.join(5)


class Control:
    """The client's TCP connection to the line server, made in the client namespace (fwx
    intercepts it); each exchange is one line out and the server's numbered answer back."""

    def __init__(self, bed):
        self.s = bed.run_in("c", lambda: socket.create_connection((matrix.S4, FTP_PORT), timeout=5))
        self.n = 0
        self.buf = b""
        greeting = self.line()
        if not greeting.startswith(b"220 "):
            raise nstopo.Failure("intercepted TCP: greeting %r, not the line server's 220" % greeting)

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise nstopo.Failure("intercepted TCP: closed by the gateway (after %r)" % self.buf)
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r")

    def exchange(self):
        self.n += 1
        self.s.sendall(b"NOOP\r\n")
        got = self.line()
        if got != b"200 %d" % self.n:
            raise nstopo.Failure("intercepted TCP: answer %r to NOOP %d" % (got, self.n))

    def close(self):
        self.s.close()


def held_end(gw, ctl, failures):
    """After the gateway's stop with ctl's relay still open: it stopped by itself on SIGTERM
    (status 0, not killed after 10 s). The client cannot be asked: the stop deletes the table
    (on_stop = "open"), and with it the NAT that would carry the relay's FIN back to it."""
    ctl.close()
    rc = gw.proc.returncode if gw.proc is not None else None
    if gw.died is None and rc != 0:
        failures.append("fwx-gateway stopped with status %s with an intercepted TCP connection open" % rc)
    else:
        log("ok   fwx-gateway stopped (status %s) with an intercepted TCP connection open" % rc)


def tcp_open(bed, gw, cip, name, failures):
    """The intercepted connection, answering and listed in user mode; None (a failure) if not."""
    try:
        ctl = Control(bed)
        ctl.exchange()
    except (OSError, nstopo.Failure) as e:
        failures.append("%s: intercepted TCP connection: %s" % (name, e))
        return None
    rows = tcp_rows(gw, cip)
    if len(rows) != 1 or rows[0].get("mode") != "user" or "%s:%d" % (matrix.S4, FTP_PORT) not in json.dumps(rows[0]):
        failures.append("%s: the intercepted TCP connection is not listed once in user mode: %s" % (
            name, json.dumps(rows)[:400]))
    return ctl


def tcp_gone(gw, cip):
    """True once no TCP connection of cip is listed (bounded: 5 s)."""
    for _ in range(20):
        if not tcp_rows(gw, cip):
            return True
        time.sleep(0.25)
    return False


def sessions_of(gw, client_ip):
    return [r for r in gw.fwxctl("sessions") if re.fullmatch(r"\[?%s\]?(:\d+)?" % re.escape(client_ip),
                                                             str(r.get("client", "")))]


def table_elements(bed):
    """The nft backend's sets that carry grants, and the elements they still hold."""
    rc, out = run(bed.wrap("g", ["nft", "-j", "list", "ruleset"]), timeout=10)
    if rc != 0:
        raise nstopo.Failure("nft list ruleset: rc=%d %s" % (rc, out[-300:]))
    held = {}
    for item in json.loads(out).get("nftables", []):
        for kind in ("set", "map"):
            s = item.get(kind)
            if s and s.get("table", "").startswith("fwx_") and re.match(r"(once|allow|dnat|user)[46]$", s["name"]):
                if s.get("elem"):
                    held[s["name"]] = s["elem"]
    return held


def one(bed, gw, backend, fam, client, op, tmp, failures, tcp=None):
    """One transfer; tcp (nft, IPv4): "during" an intercepted TCP connection of the client
    opened while the transfer runs and closed once the request flow has idled out, "after" one
    opened while it runs and closed only after the transfer's flow has gone."""
    srv, cli = os.path.join(tmp, "srv"), os.path.join(tmp, "cli")
    cip, sip = (matrix.C4, matrix.S4) if fam == "4" else (matrix.C6, matrix.S6)
    host = ((matrix.G4C if fam == "4" else matrix.G6C) if backend == "proxy" else sip)
    name = "%s v%s %s" % (client, fam, op)
    if op == "get":
        remote, local = "long.bin", os.path.join(cli, "got-%s-%s" % (client, fam))
        a_, b_ = local, os.path.join(srv, remote)
        bs = 512
    else:
        remote, local = "put-%s-%s" % (client, fam), os.path.join(cli, "up.bin")
        a_, b_ = local, os.path.join(srv, remote)
        bs = 1428
    cmd = matrix.client_cmd(client, op, host, remote, local, bs, 0)
    if client == "curl":
        cmd[cmd.index("--max-time") + 1] = "40"
    out = open(os.path.join(tmp, "client.out"), "wb")
    p = subprocess.Popen(bed.wrap("c", cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ctl = None
    try:
        if tcp is not None:
            ctl = tcp_open(bed, gw, cip, name, failures)
            if ctl is None:
                tcp = None
        # The request flow idles out after TIMEOUT_S; look once it has, with the transfer still running.
        seen_transfer = seen_request = None
        for _ in range(int((TIMEOUT_S + 6) / 0.25)):  # bounded: ~8 s
            time.sleep(0.25)
            if p.poll() is not None:
                break
            conns = udp_rows(gw, "connections", cip)
            req = [r for r in conns if r.get("name") == "primary"]
            xfer = [r for r in conns if r.get("name") == "secondary"]
            if xfer and not req:
                seen_transfer = xfer
                break
            seen_request = req or seen_request
        if p.poll() is not None:
            failures.append("%s: the transfer ended (rc=%s) before its request flow idled out (%ss); slower rate "
                            "needed to prove anything" % (name, p.returncode, TIMEOUT_S))
        elif seen_transfer is None:
            failures.append("%s: never saw the transfer alone (request flow still listed: %s)" % (
                name, json.dumps(seen_request)[:300]))
        else:
            t = seen_transfer[0]
            if backend == "nft" and t.get("mode") != "kernel":
                failures.append("%s: the transfer is not carried by the kernel: %s" % (name, json.dumps(t)))
            elif not sessions_of(gw, cip):
                failures.append("%s: the client's session is gone while its transfer runs" % name)
            else:
                log("ok   %s: request flow gone, the transfer still runs: %s" % (name, json.dumps(t)))
            if tcp == "during":
                ctl.close()
                ctl = None
                if not tcp_gone(gw, cip):
                    failures.append("%s: the intercepted TCP connection is still listed after it closed" % name)
                elif p.poll() is not None:
                    failures.append("%s: the transfer ended (rc=%s) before the intercepted TCP connection's end "
                                    "could be seen under it; slower rate needed" % (name, p.returncode))
                elif not sessions_of(gw, cip):
                    failures.append("%s: the intercepted TCP connection's end ended the session under the "
                                    "transfer" % name)
                else:
                    log("ok   %s: intercepted TCP connection opened and closed, the session lives on under "
                        "the transfer" % name)
        p.wait(timeout=50)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
        failures.append("%s: the client did not finish within 50 s" % name)
        if ctl is not None:
            ctl.close()
        return
    finally:
        out.close()
    with open(os.path.join(tmp, "client.out"), errors="replace") as f:
        text = f.read()
    if p.returncode != 0 or not (os.path.exists(a_) and os.path.exists(b_)) or sha(a_) != sha(b_):
        if p.returncode != 0:
            failures.append("%s: client rc=%d %s" % (name, p.returncode, text.strip()[-300:]))
        else:
            failures.append("%s: the file differs (sha256)" % name)
        if ctl is not None:
            ctl.close()
        return
    log("ok   %s: %d bytes, sha256 equal" % (name, os.path.getsize(a_)))
    if ctl is not None:
        tcp_outlives(gw, cip, ctl, name, failures)
    nothing_left(bed, gw, backend, cip, name, failures)


def tcp_outlives(gw, cip, ctl, name, failures):
    """The transfer is over; the intercepted TCP connection opened while it ran still holds the
    session once the transfer's flow has gone (conntrack's UDP timeout), answers, then closes."""
    try:
        udp = None
        for _ in range(60):  # bounded: 15 s
            udp = udp_rows(gw, "connections", cip)
            if not udp:
                break
            time.sleep(0.25)
        if udp:
            failures.append("%s: the transfer's flow is still listed: %s" % (name, json.dumps(udp)[:300]))
            return
        if not sessions_of(gw, cip):
            failures.append("%s: the transfer's end ended the session under the intercepted TCP connection" % name)
            return
        try:
            ctl.exchange()
        except (OSError, nstopo.Failure) as e:
            failures.append("%s: the intercepted TCP connection died with the transfer's flow: %s" % (name, e))
            return
        log("ok   %s: the transfer's flow gone, the session and the intercepted TCP connection live on" % name)
    finally:
        ctl.close()


def nothing_left(bed, gw, backend, cip, name, failures):
    """Everything goes once the transfer's flow has: conntrack's UDP timeout (nft), the
    gateway's (proxy), then the session with its last holder."""
    left = None
    for _ in range(60):  # bounded: 15 s
        left = {"connections": udp_rows(gw, "connections", cip), "permissions": udp_rows(gw, "permissions", cip),
                "sessions": sessions_of(gw, cip)}
        if backend == "nft":
            left["nft elements"] = table_elements(bed)
            left["tcp connections"] = tcp_rows(gw, cip)
        if not any(left.values()):
            break
        time.sleep(0.25)
    if any(left.values()):
        failures.append("%s: left after the transfer: %s" % (name, json.dumps(left)[:800]))
    else:
        log("ok   %s: after the transfer no connection, permission, session%s is left" % (
            name, " or nft element" if backend == "nft" else ""))


def failed_transfer(bed, gw, backend, tmp, failures):
    """A request the server answers with an ERROR (no such file): the answer uses the
    permission, the client reports the error, and everything goes after it as after a transfer."""
    host = matrix.G4C if backend == "proxy" else matrix.S4
    cmd = matrix.client_cmd("tftp-hpa", "get", host, "no-such-file", os.path.join(tmp, "cli", "none"), 512, 0)
    rc, out = run(bed.wrap("c", cmd), timeout=20)
    name = "tftp-hpa v4 get of a missing file"
    if "not found" not in out.lower():
        failures.append("%s: the client did not report the server's ERROR (rc=%d): %s" % (name, rc, out.strip()[-300:]))
        return
    log("ok   %s: the client reports %r" % (name, out.strip()[-80:]))
    nothing_left(bed, gw, backend, matrix.C4, name, failures)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--backend", choices=("proxy", "nft"), required=True)
    ap.add_argument("--families", default="4,6", help="4, 6 or 4,6 (debugging)")
    a = ap.parse_args()
    backend = a.backend
    matrix.require(a.build, backend, ("ip", "tc", "ss", "in.tftpd", "tftp", "curl"))
    if backend == "nft" and not os.path.exists(os.path.join(a.build, "plugins", "ftp", "ftp.so")):
        nstopo.skip("not built: %s (its filter makes fwx intercept the TCP connection)" %
                    os.path.join(a.build, "plugins", "ftp", "ftp.so"))
    matrix.TIMEOUT_S = TIMEOUT_S  # the gateway's config (matrix.Gateway.config)
    bed = matrix.make_bed("fwxtl-", backend)
    tmp = tempfile.mkdtemp(prefix="fwx-tftpl-%d-" % os.getpid())
    os.makedirs(os.path.join(tmp, "srv"))
    os.makedirs(os.path.join(tmp, "cli"))
    os.chmod(os.path.join(tmp, "srv"), 0o777)
    os.chmod(tmp, 0o755)
    with open(os.path.join(tmp, "srv", "long.bin"), "wb") as f:
        f.write(os.urandom(SIZE))
    with open(os.path.join(tmp, "cli", "up.bin"), "wb") as f:
        f.write(os.urandom(SIZE + 333))
    gw = Gateway(bed, a.build, tmp, backend)
    server = matrix.Server(bed, "tftpd-hpa", os.path.join(tmp, "srv"))
    failures = []
    skipped = None
    lines = held = None
    try:
        for dev in ("tmc0", "tms0"):
            r = nstopo.sh(*bed.wrap("g", ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE, "burst", "3000",
                                          "latency", "2s"]), ok=False)
            if r.returncode != 0:
                skipped = "no tbf qdisc here (%s): cannot slow a transfer down" % r.stderr.strip()
                raise nstopo.Failure(skipped)
        if backend == "nft":
            bed.sysctl("g", "net.netfilter.nf_conntrack_udp_timeout", CT_UDP_S)
            bed.sysctl("g", "net.netfilter.nf_conntrack_udp_timeout_stream", CT_UDP_S)
        skipped = matrix.start_gateway(gw)
        if skipped is not None:
            raise nstopo.Failure(skipped)
        server.start(("4", "6"))
        if backend == "nft":
            lines = LineServer(bed)
        for fam in a.families.split(","):
            for client, op, tcp in (("tftp-hpa", "get", "during"), ("curl", "put", "after")):
                one(bed, gw, backend, fam, client, op, tmp, failures,
                    tcp if backend == "nft" and fam == "4" else None)
        failed_transfer(bed, gw, backend, tmp, failures)
        if backend == "nft":
            # Still open when the gateway stops: the relay ends after the backend's state is
            # freed and lets go of the session then (ASan: nothing touches the freed state).
            try:
                held = Control(bed)
                held.exchange()
            except (OSError, nstopo.Failure) as e:
                failures.append("intercepted TCP connection held across the stop: %s" % e)
        killed = [l for l in gw.text().splitlines() if "killed" in l]
        if killed:
            failures.append("the gateway killed flows: %s" % "; ".join(killed)[:600])
    except nstopo.Failure as e:
        if skipped is None:
            failures.append(str(e))
    finally:
        server.stop()
        gw.stop()
        if lines is not None:   # after the stop: the held connection's server end stays open through it
            lines.close()
        if held is not None:
            held_end(gw, held, failures)
        bed.down()
    return matrix.wrap_up(gw, tmp, failures, skipped, "tftp long (%s)" % backend, tail=6000)


if __name__ == "__main__":
    sys.exit(main())
