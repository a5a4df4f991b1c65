#!/usr/bin/env python3
"""fwx tests - the TFTP rows of the security catalog that need a transfer (doc/security.md rows
61, 62, 65 and 66), through fwx-gateway with the tftp plugin, on the dual-homed bed of matrix.py,
with a real tftpd-hpa; the client is a raw UDP socket so that every datagram it gets is seen.

  row 61  after the client's RRQ, a third party (10.81.2.3, on the server's side) sends DATA 1
          to the gateway port the answer is expected at: the client gets nothing, and the
          permission is still listed by fwxctl (not used up by it).
  row 62  a request never answered (the server stopped): its permission is gone after the
          gateway's timeout (3 s here), and in the proxy backend so is the answer port; the
          server's late answer then reaches nobody.
  row 66  during a transfer (the client holding its ACK of block 1), DATA from the server's
          address but another port, and from the third party, to the gateway port the transfer
          runs on: ignored; the transfer goes on from the same port and the file arrives whole
          (SHA-256 compared).

  row 65  (the cap) one client holding CAP unanswered requests: its next one is refused with
          ERROR 2 and a log line naming the cap, nothing listed for it; the no-amplification half
          of the row is tests/tftp/gateway.py's.

Rows 61, 62 and 66 over IPv4 and over IPv6 (third party fd81:2::3), row 65 over IPv4, in both
backends. Rows 60, 63 and 64 are tests/tftp/gateway.py's. Root, iproute2, tftpd-hpa; exits 77
(skipped) saying why otherwise.
  catalog.py BUILD_DIR --backend proxy|nft
SPDX-License-Identifier: MIT
"""
import argparse
import hashlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import matrix as m  # noqa: E402  (the bed, the gateway, the server)

THIRD, THIRD6 = "10.81.2.3", "fd81:2::3"
CAP = 3  # gateway.max_permissions_per_client for row 65


def endpoint(ip, port):
    """fwxctl's text of an address and port."""
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def split_endpoint(text):
    """fwxctl's "a.b.c.d:port" or "[v6]:port" as (ip, port)."""
    ip, port = text.rsplit(":", 1)
    return ip.strip("[]"), int(port)


def listed(gw, client, port):
    """The permission rows fwxctl lists for the client's port."""
    return [r for r in gw.fwxctl("permissions") if r.get("peer") == endpoint(client, port)]


def wait_listed(gw, client, port):
    for _ in range(30):  # within 3 s
        rows = listed(gw, client, port)
        if rows:
            return rows[0]
        time.sleep(0.1)
    return None


def recv_or_none(s, timeout):
    s.settimeout(timeout)
    try:
        return s.recvfrom(65536)
    except socket.timeout:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--backend", choices=("proxy", "nft"), required=True)
    a = ap.parse_args()
    backend = a.backend
    m.require(a.build, backend, ("ip", "ss", "in.tftpd"))
    bed = m.make_bed("fwxtk-", backend, [THIRD + "/24", THIRD6 + "/64"])
    tmp = tempfile.mkdtemp(prefix="fwx-tftpk-%d-" % os.getpid())
    os.chmod(tmp, 0o755)
    srv = os.path.join(tmp, "srv")
    os.makedirs(srv)
    big = os.urandom(200 * 512 + 99)
    with open(os.path.join(srv, "small.txt"), "wb") as f:
        f.write(b"row 62\n")
    with open(os.path.join(srv, "big.bin"), "wb") as f:
        f.write(big)
    gw = m.Gateway(bed, a.build, tmp, backend)
    gw.extra = "  max_permissions_per_client = %d;\n" % CAP
    server = m.Server(bed, "tftpd-hpa", srv)
    failures = []
    skipped = None

    def check(cond, what):
        m.log(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    def sock_in(ns, ip, port=0):
        def mk():
            s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, port))
            return s
        return bed.run_in(ns, mk)

    def rows(fam):
        """Rows 61, 62 and 66 over one family (client ports 452x1 and 452x2, x the family)."""
        v6 = fam == "6"
        cip, sip, third_ip = (m.C6, m.S6, THIRD6) if v6 else (m.C4, m.S4, THIRD)
        host = (m.G6C if v6 else m.G4C) if backend == "proxy" else sip
        p1, p2 = 45201 + 10 * v6, 45202 + 10 * v6
        tag = " (IPv%s)" % fam
        # ---- rows 61 and 62: a request the server does not answer (yet) ----
        c1 = sock_in("c", cip, p1)
        server.signal(signal.SIGSTOP)
        try:
            c1.sendto(m.rrq("small.txt"), (host, 69))
            perm = wait_listed(gw, cip, p1)
            check(perm is not None, "row 61: fwxctl lists the permission to %s%s" % (endpoint(cip, p1), tag))
            if perm is not None:
                gip, gport = split_endpoint(perm["local"])
                third = sock_in("s", third_ip)
                third.sendto(b"\0\3\0\1" + b"third party data", (gip, gport))
                check(recv_or_none(c1, 1.0) is None, "row 61: the third party's DATA 1 does not reach the client" + tag)
                check(len(listed(gw, cip, p1)) == 1, "row 61: the permission is still there, unused" + tag)
                third.close()
                # row 62: unanswered, it goes after the gateway's timeout
                time.sleep(m.TIMEOUT_S + 1.5)
                check(listed(gw, cip, p1) == [], "row 62: the unanswered request's permission is gone after %d s%s" % (
                      m.TIMEOUT_S, tag))
                if backend == "proxy":
                    _, out = m.run(bed.wrap("g", ["ss", "-Huan", "sport = :%s" % gport]), timeout=5)
                    check(out.strip() == "", "row 62: no socket left on the answer port %s (%s)%s" % (
                        gport, out.strip().replace("\n", "; "), tag))
                n_timed_out = len(re.findall(r"permission \d+ of session \d+: unused for its timeout, closed", gw.text()))
                check(n_timed_out == 1 + v6, "row 62: the gateway logged the permission's timeout" + tag)
        finally:
            server.signal(signal.SIGCONT)
        check(recv_or_none(c1, 1.5) is None, "row 62: the server's late answer reaches nobody" + tag)
        c1.close()

        # ---- row 66: a wrong TID during a transfer ----
        c2 = sock_in("c", cip, p2)
        c2.sendto(m.rrq("big.bin"), (host, 69))
        first = recv_or_none(c2, 5.0)
        check(first is not None and first[0][:4] == b"\0\3\0\1", "row 66: DATA 1 arrives" + tag)
        if first is not None:
            data, src = first
            conns = [r for r in gw.fwxctl("connections")
                     if r.get("peer") == endpoint(cip, p2) and r.get("name") == "secondary"]
            check(len(conns) == 1, "row 66: fwxctl connections shows the transfer%s: %s" % (tag, json.dumps(conns)))
            if conns:
                gip, gport = split_endpoint(conns[0]["local"])
                wrong_port = sock_in("s", sip)
                wrong_port.sendto(b"\0\3\0\2" + b"W" * 512, (gip, gport))
                third = sock_in("s", third_ip)
                third.sendto(b"\0\3\0\2" + b"T" * 512, (gip, gport))
                # The server may retransmit DATA 1 meanwhile (the client holds its ACK): that
                # one is the transfer's own; a stray is anything else.
                seen, deadline = [], time.monotonic() + 0.7
                while time.monotonic() < deadline:
                    r = recv_or_none(c2, max(0.05, deadline - time.monotonic()))
                    if r is not None and (r[1] != src or r[0] != data):
                        seen.append(r)
                check(seen == [], "row 66: neither stray DATA 2 reaches the client%s (%s)" % (tag, [
                    (d[:6], a) for d, a in seen]))
                wrong_port.close()
                third.close()
            got = bytearray(data[4:])
            block, ok, strays = 1, True, 0
            while ok and len(data) - 4 == 512:
                c2.sendto(b"\0\4" + block.to_bytes(2, "big"), src)
                for _ in range(5):  # a lost datagram: ACK again, a bounded number of times
                    r = recv_or_none(c2, 2.0)
                    if r is None:
                        c2.sendto(b"\0\4" + block.to_bytes(2, "big"), src)
                        continue
                    if r[1] != src:
                        strays += 1
                        continue
                    if r[0][:2] == b"\0\3" and int.from_bytes(r[0][2:4], "big") == block + 1:
                        break
                else:
                    ok = False
                    break
                data = r[0]
                block += 1
                got += data[4:]
            if ok:
                c2.sendto(b"\0\4" + block.to_bytes(2, "big"), src)
            check(ok and strays == 0, "row 66: the transfer went on from %s alone (%d blocks, %d strays)" % (
                endpoint(src[0], src[1]), block, strays))
            check(hashlib.sha256(bytes(got)).hexdigest() == hashlib.sha256(big).hexdigest(),
                  "row 66: the file arrived whole (sha256, %d bytes)%s" % (len(got), tag))
        c2.close()

    def row65():
        """A client at its cap of outstanding requests: the next is refused, the held ones stand."""
        host = m.G4C if backend == "proxy" else m.S4
        socks = [sock_in("c", m.C4, 45301 + i) for i in range(CAP + 1)]
        server.signal(signal.SIGSTOP)
        try:
            for s in socks[:CAP]:
                s.sendto(m.rrq("small.txt"), (host, 69))
                check(wait_listed(gw, m.C4, s.getsockname()[1]) is not None,
                      "row 65: request %d of %d held (fwxctl lists it)" % (socks.index(s) + 1, CAP))
            socks[CAP].sendto(m.rrq("small.txt"), (host, 69))
            r = recv_or_none(socks[CAP], 3.0)
            check(r is not None and r[0][:4] == b"\0\5\0\2",
                  "row 65: request %d gets ERROR 2 (%r)" % (CAP + 1, r and r[0][:40]))
            check(listed(gw, m.C4, 45301 + CAP) == [], "row 65: nothing listed for the refused request")
            check("max_permissions_per_client" in gw.text(), "row 65: the log names the cap")
            check(all(len(listed(gw, m.C4, 45301 + i)) == 1 for i in range(CAP)),
                  "row 65: the %d held requests stand" % CAP)
        finally:
            server.signal(signal.SIGCONT)
            for s in socks:
                s.close()

    try:
        skipped = m.start_gateway(gw)
        if skipped is not None:
            raise m.nstopo.Failure(skipped)
        server.start(("4", "6"))

        for fam in ("4", "6"):
            rows(fam)
        row65()
    except m.nstopo.Failure as e:
        if skipped is None:
            failures.append(str(e))
    finally:
        server.stop()
        gw.stop()
        bed.down()
    return m.wrap_up(gw, tmp, failures, skipped, "tftp catalog (%s)" % backend, tail=4000)


if __name__ == "__main__":
    sys.exit(main())
