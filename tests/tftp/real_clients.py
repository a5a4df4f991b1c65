#!/usr/bin/env python3
"""fwx tests - real TFTP software against the TFTP filter's parser.

Two network namespaces joined by a veth pair: tftpd-hpa (in.tftpd) in the server's, the clients
tftp-hpa, curl (tftp://) and atftp in the client's. Every transfer (get and put, a small file and
a 3 MiB one, blksize 512 and 1428) must arrive whole (SHA-256 compared), and every request
datagram the clients put on the wire (captured in the server's namespace with an AF_PACKET
socket) must pass plugins/tftp/tftp_parse.c unchanged, with the options the client asked for.
This proves the strict parser refuses nothing real clients send; it claims no gateway mode
(matrix.py runs the same software through fwx-gateway).

Needs root, iproute2 and the Debian packages tftpd-hpa, tftp-hpa, atftp and curl, which
./run test installs (stopping the tftpd-hpa service that installing starts). Exits 77 (skipped) with the reason when it cannot run here.
  real_clients.py BUILD_DIR
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netns"))
import nstopo  # noqa: E402  (the shared namespace bed; it puts tests/gateway on the path)
from gwtest import sha256_file, skip, stop_procs  # noqa: E402,F401  (skip, stop_procs: also gateway.py's)

IP_C, IP_S = "10.79.0.1", "10.79.0.2"

# The capture, run inside the server's namespace: every IPv4 UDP datagram to port 69 arriving
# on the veth, written as 2-byte length + payload. Stops at SIGTERM.
CAPTURE = r"""
import socket, struct, sys, signal
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind((sys.argv[1], 0))
out = open(sys.argv[2], "wb", buffering=0)
print("ready", flush=True)
while True:
    p, addr = s.recvfrom(65536)
    if addr[2] == socket.PACKET_OUTGOING or len(p) < 20 or p[9] != 17:
        continue
    ihl = (p[0] & 15) * 4
    if len(p) < ihl + 8 or struct.unpack("!H", p[ihl + 2:ihl + 4])[0] != 69:
        continue
    d = p[ihl + 8:]
    out.write(struct.pack("!H", len(d)) + d)
"""


def run(cmd, timeout=60, check=False, **kw):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        return 124, "timeout: %s" % " ".join(cmd)
    out = r.stdout.decode(errors="replace")
    if check and r.returncode != 0:
        raise RuntimeError("%s: rc=%d\n%s" % (" ".join(cmd), r.returncode, out))
    return r.returncode, out


def need_programs(progs):
    """Skips, naming the Debian packages, unless every (package, program) is installed. ./run
    test installs them (and stops the tftpd-hpa service the package starts); the tests only
    look."""
    missing = ["%s (Debian package %s)" % (b, p) for p, b in progs if not shutil.which(b)]
    if missing:
        skip("not installed: %s; ./run test installs them" % ", ".join(missing))


def bed():
    """The server's namespace and the client's, one veth pair between them (no gateway: the
    "gateway" namespace of the bed is the server's). fwxtftp-<pid>-{s,c}; the server's end is
    srv0, the client's eth0."""
    return nstopo.Bed("fwxtftp-", "s", {"c": nstopo.Side("srv0", [IP_C + "/24"], [IP_S + "/24"], route=False)},
                      forwarding=False)


def main():
    if len(sys.argv) != 2:
        print("usage: real_clients.py BUILD_DIR")
        return 2
    judge = os.path.join(sys.argv[1], "tests", "tftp", "tftp_judge")
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    if not shutil.which("ip"):
        skip("iproute2 is not installed")
    if not os.access(judge, os.X_OK):
        skip("tftp_judge is not built at " + judge)
    need_programs((("tftpd-hpa", "in.tftpd"), ("tftp-hpa", "tftp"), ("atftp", "atftp"), ("curl", "curl")))
    net = bed()
    net.up_or_skip()

    tmp = tempfile.mkdtemp(prefix="fwx-tftp-")
    srv = os.path.join(tmp, "srv")
    cli = os.path.join(tmp, "cli")
    os.makedirs(srv)
    os.makedirs(cli)
    os.chmod(srv, 0o777)
    with open(os.path.join(srv, "small.txt"), "wb") as f:
        f.write(b"fwx tftp small file\n" * 50)
    with open(os.path.join(srv, "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 777))
    for n in ("up-small.txt", "up-big.bin"):
        with open(os.path.join(cli, n), "wb") as f:
            f.write(os.urandom(2000 if "small" in n else 3 * 1024 * 1024 + 333))
    cap_file = os.path.join(tmp, "requests.bin")
    procs = []
    failures = []
    try:
        cap = subprocess.Popen(net.wrap("s", [sys.executable, "-c", CAPTURE, "srv0", cap_file]),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(cap)
        if cap.stdout.readline().strip() != b"ready":
            raise RuntimeError("the capture did not start")
        # -L foreground, -c writes may create files, -s chroot into the directory, -u root (the
        # directory is the test's), -a the address to listen on.
        tftpd = subprocess.Popen(net.wrap("s", ["in.tftpd", "-L", "-c", "-s", "-u", "root", "-a", IP_S + ":69", srv]),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(tftpd)
        time.sleep(0.3)  # in.tftpd binds before it forks nothing; give it the moment to bind

        # (name, command in the client namespace, local file to compare, remote file to compare)
        g = lambda n: os.path.join(cli, n)
        s = lambda n: os.path.join(srv, n)
        cases = [
            ("tftp-hpa get small", ["tftp", "-m", "binary", IP_S, "-c", "get", "small.txt", g("hpa-small")],
             g("hpa-small"), s("small.txt")),
            ("tftp-hpa get big", ["tftp", "-m", "binary", IP_S, "-c", "get", "big.bin", g("hpa-big")],
             g("hpa-big"), s("big.bin")),
            ("tftp-hpa put small", ["tftp", "-m", "binary", IP_S, "-c", "put", g("up-small.txt"), "hpa-up-small"],
             g("up-small.txt"), s("hpa-up-small")),
            ("curl get big blksize 1428", ["curl", "-sS", "--tftp-blksize", "1428", "-o", g("curl-big"),
                                           "tftp://%s/big.bin" % IP_S], g("curl-big"), s("big.bin")),
            ("curl get small blksize 512", ["curl", "-sS", "--tftp-blksize", "512", "-o", g("curl-small"),
                                            "tftp://%s/small.txt" % IP_S], g("curl-small"), s("small.txt")),
            ("curl put big blksize 1428", ["curl", "-sS", "--tftp-blksize", "1428", "-T", g("up-big.bin"),
                                           "tftp://%s/curl-up-big" % IP_S], g("up-big.bin"), s("curl-up-big")),
            ("atftp get big blksize 1428", ["atftp", "--get", "-r", "big.bin", "-l", g("atftp-big"),
                                            "--option", "blksize 1428", IP_S], g("atftp-big"), s("big.bin")),
            ("atftp put small", ["atftp", "--put", "-l", g("up-small.txt"), "-r", "atftp-up-small", IP_S],
             g("up-small.txt"), s("atftp-up-small")),
        ]
        for name, cmd, a, b in cases:
            rc, out = run(net.wrap("c", cmd), timeout=60)
            if rc != 0:
                failures.append("%s: rc=%d %s" % (name, rc, out.strip()[:300]))
                continue
            if not (os.path.exists(a) and os.path.exists(b)) or sha256_file(a) != sha256_file(b):
                failures.append("%s: the file differs (sha256)" % name)
            else:
                print("ok   %s (%d bytes)" % (name, os.path.getsize(a)))
        time.sleep(0.2)
        cap.send_signal(signal.SIGTERM)
        cap.wait(timeout=10)

        rc, verdicts = run([judge, cap_file], timeout=30)
        if rc != 0:
            failures.append("tftp_judge failed: " + verdicts)
        lines = [l for l in verdicts.splitlines() if l]
        # a lost or retransmitted request may repeat; what matters: every one passes, and each
        # client's request is there with the options it asked for.
        for l in lines:
            print("wire " + l)
            if not l.startswith("ok "):
                failures.append("a real client's request was refused: " + l)
        want = [
            ("ok RRQ small.txt octet", None),
            ("ok RRQ big.bin octet", None),
            ("ok WRQ hpa-up-small octet", None),
            ("ok RRQ big.bin octet", "blksize=1428"),
            ("ok RRQ small.txt octet", "blksize=512"),
            ("ok WRQ curl-up-big octet", "blksize=1428"),
            ("ok RRQ big.bin octet", "blksize=1428"),
            ("ok WRQ atftp-up-small octet", None),
        ]
        for prefix, opt in want:
            if not any(l.startswith(prefix) and (opt is None or opt in l.split()) for l in lines):
                failures.append("no request '%s'%s on the wire" % (prefix, " with " + opt if opt else ""))
    finally:
        stop_procs(procs)
        net.down()
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL " + f)
    print("real_clients: %d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
