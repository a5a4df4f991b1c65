#!/usr/bin/env python3
"""fwx tests - the TFTP plugin in fwx-gateway (backend proxy) on a dual-homed namespace bed.

Three network namespaces: the client (10.80.1.2), the gateway (10.80.1.1 and 10.80.2.1, IP
forwarding OFF, so only what fwx relays crosses) and the server (10.80.2.2, tftpd-hpa). The
gateway publishes UDP 10.80.1.1:69 -> 10.80.2.2:69 with the tftp plugin bound to the protocol.
The client sends requests from a raw UDP socket; an AF_PACKET capture in the server's namespace
records what reaches the server. Asserted, per request:
  - well-formed RRQ/WRQ (with blksize/tsize/timeout/windowsize options): reaches the server byte
    for byte, and the gateway logs the permission (UDP, once, timeout) to the client's address
    and port, through the plugin's host log;
  - catalog row 63 of doc/security.md (no NUL, unknown mode, 600-byte filename, opcode 0/7), row 64 (blksize 7 and
    65465, windowsize 70000, duplicate option, tsize negative), row 60 (source port 53), row 65
    (tiny and ERROR datagrams): the exact ERROR code back to the client (or, for a privileged
    port, an ERROR and a tiny datagram, no answer at all), never longer than the request, never
    reaching the server, one "request refused" line each in the log;
  - the next well-formed request after the refusals still works.
Not asserted here: the transfer itself; matrix.py runs whole transfers through the gateway and
catalog.py the rows that need one (61, 62, 66, and the cap of 65).

Needs root, iproute2, tftpd-hpa (./run test installs it). Exits 77 (skipped)
saying why otherwise.
  gateway.py BUILD_DIR
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import real_clients as rc  # noqa: E402  (shared helpers: run, skip, need_programs, CAPTURE)
import nstopo  # noqa: E402  (the shared namespace bed, on the path through real_clients)
from gwtest import Gateway, Failure  # noqa: E402

PID = os.getpid()
IP_C, IP_GC, IP_GS, IP_S = "10.80.1.2", "10.80.1.1", "10.80.2.1", "10.80.2.2"
TFTP_GUID = "{8c3f2b91-4e6a-4d27-b1f0-5a9e7c2d6e41}"


def rq(op, name, mode, *opts):
    b = bytes([0, op]) + name + b"\0" + mode + b"\0"
    for k, v in opts:
        b += k + b"\0" + v + b"\0"
    return b


# (name, source port, datagram, expected: "pass" | ERROR code | None for no answer)
CASES = [
    # every datagram differs from every other, so "reached the server" names one case
    ("rrq octet", 40100, rq(1, b"small.txt", b"octet"), "pass"),
    ("rrq options", 40101, rq(1, b"small.txt", b"octet", (b"blksize", b"1428"), (b"tsize", b"0"),
                              (b"timeout", b"3"), (b"windowsize", b"4")), "pass"),
    ("wrq netascii", 40102, rq(2, b"new.txt", b"netascii", (b"tsize", b"100")), "pass"),
    ("row63 no NUL", 40103, b"\0\1small.txt", 4),
    ("row63 mode binary", 40104, rq(1, b"small.txt", b"binary"), 4),
    ("row63 filename 600", 40105, rq(1, b"a" * 600, b"octet"), 4),
    ("row63 opcode 0", 40106, rq(0, b"small.txt", b"octet"), 4),
    ("row63 opcode 7", 40107, rq(7, b"small.txt", b"octet"), 4),
    ("row64 blksize 7", 40108, rq(1, b"small.txt", b"octet", (b"blksize", b"7")), 8),
    ("row64 blksize 65465", 40109, rq(1, b"small.txt", b"octet", (b"blksize", b"65465")), 8),
    ("row64 windowsize 70000", 40110, rq(1, b"small.txt", b"octet", (b"windowsize", b"70000")), 8),
    ("row64 duplicate option", 40111, rq(1, b"small.txt", b"octet", (b"blksize", b"512"), (b"BLKSIZE", b"512")), 8),
    ("row64 tsize negative", 40112, rq(2, b"x.txt", b"octet", (b"tsize", b"-1")), 8),
    ("row60 source port 53", 53, rq(1, b"port53.txt", b"octet"), None),
    ("row65 tiny", 40113, b"\0\1f", None),
    ("row65 ERROR", 40114, b"\0\5\0\0spoofed error\0", None),
    ("rrq after refusals", 40115, rq(1, b"small.txt", b"netascii"), "pass"),
]

# Run in the client's namespace: each case from its own socket, the answer (hex) or null.
CLIENT = r"""
import json, socket, sys
cases = json.loads(sys.stdin.read())
out = []
for port, hexdata in cases:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], port))
    s.settimeout(1.0)
    s.sendto(bytes.fromhex(hexdata), (sys.argv[2], 69))
    try:
        data, addr = s.recvfrom(65536)
        out.append([data.hex(), addr[0], addr[1]])
    except socket.timeout:
        out.append(None)
    s.close()
print(json.dumps(out))
"""


def bed():
    """fwxtgw-<pid>-{c,g,s}: the gateway between the client's link (its end tgc0) and the
    server's (tgs0), IP forwarding off, no routes across (what crosses, fwx relays)."""
    return nstopo.Bed("fwxtgw-", "g", {"c": nstopo.Side("tgc0", [IP_C + "/24"], [IP_GC + "/24"], route=False),
                                       "s": nstopo.Side("tgs0", [IP_S + "/24"], [IP_GS + "/24"], route=False)},
                      forwarding=False)


def main():
    if len(sys.argv) != 2:
        print("usage: gateway.py BUILD_DIR")
        return 2
    build = sys.argv[1]
    gw_exe = os.path.join(build, "examples", "fwx-gateway", "fwx-gateway")
    plugin_dir = os.path.join(build, "plugins", "tftp")
    if os.geteuid() != 0:
        rc.skip("needs root (network namespaces)")
    if not shutil.which("ip"):
        rc.skip("iproute2 is not installed")
    if not os.access(gw_exe, os.X_OK) or not os.path.exists(os.path.join(plugin_dir, "tftp.so")):
        rc.skip("fwx-gateway or tftp.so is not built under " + build)
    rc.need_programs((("tftpd-hpa", "in.tftpd"),))
    os.environ.setdefault("FWX_GATEWAY", gw_exe)  # for gwtest.Gateway

    tmp = tempfile.mkdtemp(prefix="fwx-tftpgw-")
    srv = os.path.join(tmp, "srv")
    os.makedirs(srv)
    os.chmod(srv, 0o777)
    with open(os.path.join(srv, "small.txt"), "wb") as f:
        f.write(b"fwx tftp gateway test\n")
    cfg = os.path.join(tmp, "gw.cfg")
    with open(cfg, "w") as f:
        f.write(f"""# fwx tests/tftp/gateway.py: a published TFTP server, the tftp plugin bound to it.
gateway = {{
  name = "tftp-gw-{PID}";
  control_socket = "{tmp}/ctl.sock";
  plugin_dir = "{plugin_dir}";
  plugins = [ "tftp" ];
  local_addresses = [ "{IP_GC}", "{IP_GS}" ];
  log_level = "debug";
}};
protocols = ( {{ name = "tftp"; guid = "{{6a0e7c1e-0f7a-4b3e-9c55-000000000069}}"; protocol = "udp";
    port = 69; direction = "inbound"; filters = [ "{TFTP_GUID}" ]; }} );
rules = ( {{ name = "publish tftp"; action = "allow"; from = [ "external" ]; to = [ "external" ];
    protocols = [ "tftp" ]; }} );
publishing = ( {{ name = "tftp"; listen = "{IP_GC}:69"; server = "{IP_S}:69"; protocol = "tftp"; }} );
""")
    cap_file = os.path.join(tmp, "at-server.bin")
    procs = []
    failures = []
    gw = None
    net = bed()
    net.up_or_skip()
    try:
        cap = subprocess.Popen(net.wrap("s", [sys.executable, "-c", rc.CAPTURE, "eth0", cap_file]),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(cap)
        if cap.stdout.readline().strip() != b"ready":
            raise RuntimeError("the capture did not start")
        procs.append(subprocess.Popen(net.wrap("s", ["in.tftpd", "-L", "-c", "-s", "-u", "root", "-a", IP_S + ":69",
                                                     srv]), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        # the config names its control socket; ready within 10 s
        gw = Gateway(tmp, ["--config", cfg], name="gw", wait_ready=False, control=None, prefix=net.wrap("g", []))
        gw.wait_log("fwx-gateway: ready", timeout=10.0, what="fwx-gateway to be ready")

        p = subprocess.run(net.wrap("c", [sys.executable, "-c", CLIENT, IP_C, IP_GC]),
                           input=json.dumps([[c[1], c[2].hex()] for c in CASES]).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        answers = json.loads(p.stdout.decode())
        time.sleep(0.3)
        cap.send_signal(signal.SIGTERM)
        cap.wait(timeout=10)
        at_server = []
        with open(cap_file, "rb") as f:
            data = f.read()
        i = 0
        while i + 2 <= len(data):
            n = struct.unpack("!H", data[i:i + 2])[0]
            at_server.append(data[i + 2:i + 2 + n])
            i += 2 + n
        log = gw.stdout() + gw.stderr()

        refused = 0
        for (name, port, dgram, want), got in zip(CASES, answers):
            ok = True
            if want == "pass":
                if dgram not in at_server:
                    failures.append("%s: did not reach the server unchanged" % name)
                    ok = False
                grant = "tftp: client %s:%d: " % (IP_C, port)
                if not any(grant in l and "permission to %s:%d" % (IP_C, port) in l for l in log.splitlines()):
                    failures.append("%s: no permission logged by the plugin" % name)
                    ok = False
                if not any("may connect to %s:%d (udp, once, timeout)" % (IP_C, port) in l for l in log.splitlines()):
                    failures.append("%s: the core logged no one-shot UDP permission to the client's port" % name)
                    ok = False
                if got is not None and bytes.fromhex(got[0])[:2] == b"\0\5" and got[1] == IP_GC and got[2] == 69:
                    failures.append("%s: the gateway answered with an ERROR" % name)
                    ok = False
            else:
                refused += 1
                if dgram in at_server:
                    failures.append("%s: a refused request reached the server" % name)
                    ok = False
                if want is None:
                    if got is not None:
                        failures.append("%s: expected no answer, got %s" % (name, got[0]))
                        ok = False
                else:
                    b = bytes.fromhex(got[0]) if got else b""
                    if got is None or b[:2] != b"\0\5" or struct.unpack("!H", b[2:4])[0] != want:
                        failures.append("%s: expected ERROR %d, got %s" % (name, want, got))
                        ok = False
                    elif len(b) > len(dgram) or b[-1:] != b"\0":
                        failures.append("%s: ERROR of %d bytes for a %d-byte request" % (name, len(b), len(dgram)))
                        ok = False
            print("%s %s" % ("ok  " if ok else "FAIL", name))
        n_log = log.count("request refused")
        if n_log != refused:
            failures.append("%d 'request refused' log lines for %d refused requests" % (n_log, refused))
        if gw.proc.poll() is not None:
            failures.append("fwx-gateway died (status %s)" % gw.proc.returncode)
    except Failure as e:  # the gateway did not come up
        failures.append(str(e))
    finally:
        if gw is not None:
            if failures:
                gw.dump_log(60)
            try:
                gw.stop()  # SIGTERM, bounded; closes its log files
            except Failure as e:
                failures.append(str(e))
        rc.stop_procs(procs)
        net.down()
    shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL " + f)
    print("gateway: %d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
