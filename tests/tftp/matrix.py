#!/usr/bin/env python3
"""fwx tests - whole TFTP transfers through fwx-gateway with the tftp plugin, real software.

The dual-homed bed of tests/netns/nstopo.py: a client namespace (10.81.1.2, fd81:1::2), the
gateway (10.81.1.1 and 10.81.2.1, fd81:1::1 and fd81:2::1) and a server namespace (10.81.2.2,
fd81:2::2). Two backends:

  --backend proxy  a published server (user mode), IP forwarding OFF in the gateway: the client
                   asks the gateway's 10.81.1.1:69 (or [fd81:1::1]:69); the server's answer
                   from its new port reaches the gateway's upstream port and comes back through
                   the answer port the FWX_FLAG_REPLY_FROM_PEER permission opened.
  --backend nft    clients behind the gateway (transparent, kernel mode, NAT to the server's
                   side), forwarding on: the client asks the server itself; the request is
                   read by the plugin in user mode, the transfer is carried by the kernel
                   (the permission as a DNAT of the gateway's upstream port and a one-shot
                   permission element) and reported through conntrack. IPv4 and IPv6 (the
                   request read on the IPv6 interception socket, dnat6/once6 elements).

Servers tftpd-hpa and atftpd (unpacked by ./run test into the FTP matrix's cache: it conflicts
with tftpd-hpa) x clients tftp-hpa, atftp and curl (tftp://), get and put, a small file and a
3 MiB one, blksize 512 and 1428, windowsize 8 where client and server support it (atftp with
atftpd); SHA-256 compared on both ends. IPv6 with tftpd-hpa in both backends (atftpd 0.8 listens on IPv4 only). With CI=true (or --full) every combination runs; by
default a subset that keeps every server, client, direction, size and blksize at least once
(~30 s a backend). Also asserted:
  - while a transfer waits on a stopped server, `fwxctl permissions` lists the permission to
    the client's port (udp); once the server answers, the first DATA comes from the gateway's
    new port (proxy) or the server's new port (nft), the permission is used up (gone from the
    list) and `fwxctl connections` shows the transfer;
  - every transfer opened a connection through a permission, in user mode (proxy) or kernel
    mode (nft), per the gateway's log;
  - after the gateway's timeout (3 s here) no permission is left; in the proxy backend no UDP
    connection and no UDP socket but the published ones either (the nft backend's flows end
    with conntrack's UDP timeouts, 30 s and more).

Needs root, iproute2, tftpd-hpa, tftp-hpa, atftp, curl (./run test installs them) and atftpd
in /var/cache/fwx-ftp-matrix (the other server; its cases skip, and say so, without it).
Exits 77 (skipped) saying why when it cannot run here.
  matrix.py BUILD_DIR --backend proxy|nft [--full]
SPDX-License-Identifier: MIT
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
import nstopo  # noqa: E402
sys.path.insert(0, HERE)
import real_clients as rc  # noqa: E402  (stop_procs, sha256_file: gwtest's, through real_clients)
from real_clients import run, sha256_file as sha  # noqa: E402

SKIP = 77
TFTP_GUID = "{8c3f2b91-4e6a-4d27-b1f0-5a9e7c2d6e41}"
C4, G4C, G4S, S4 = "10.81.1.2", "10.81.1.1", "10.81.2.1", "10.81.2.2"
C6, G6C, G6S, S6 = "fd81:1::2", "fd81:1::1", "fd81:2::1", "fd81:2::2"
ATFTPD = os.path.join(os.environ.get("FWX_FTP_MATRIX_CACHE", "/var/cache/fwx-ftp-matrix"), "root", "usr", "sbin",
                      "atftpd")
BIG = 3 * 1024 * 1024 + 777
TIMEOUT_S = 3  # gateway.timeout: unused permissions and idle UDP flows go after this long


def log(msg):
    print(msg, flush=True)


def url_host(ip):
    return "[%s]" % ip if ":" in ip else ip


def client_cmd(client, op, host, remote, local, blksize, windowsize):
    """The command line of a real client; None when it cannot express the case."""
    v6 = ":" in host
    if client == "tftp-hpa":
        if blksize != 512 or windowsize:
            return None  # tftp-hpa asks for no options
        return ["tftp"] + (["-6"] if v6 else []) + ["-m", "binary", host, "-c", op] + (
            [remote, local] if op == "get" else [local, remote])
    if client == "curl":
        if windowsize:
            return None
        url = "tftp://%s/%s" % (url_host(host), remote)
        return ["curl", "-sS", "--max-time", "18", "--tftp-blksize", str(blksize)] + (
            ["-o", local, url] if op == "get" else ["-T", local, url])
    if client == "atftp":
        opts = ["--option", "blksize %d" % blksize]
        if windowsize:
            opts += ["--option", "windowsize %d" % windowsize]
        return ["atftp", "--" + op, "-r", remote, "-l", local] + opts + [host, "69"]
    raise ValueError(client)


def cases(full):
    """(server, client, family, op, size, blksize, windowsize)."""
    out = []
    for server in ("tftpd-hpa", "atftpd"):
        for client in ("tftp-hpa", "curl", "atftp"):
            for fam in ("4", "6"):
                for op in ("get", "put"):
                    for size in ("small", "big"):
                        for bs in (512, 1428):
                            for ws in (0, 8):
                                if ws and not (client == "atftp" and server == "atftpd"):
                                    continue
                                if client_cmd(client, op, "h", "r", "l", bs, ws) is None:
                                    continue
                                if fam == "6" and server == "atftpd":
                                    continue  # atftpd 0.8 listens on IPv4 only, whatever --bind-address says
                                out.append((server, client, fam, op, size, bs, ws))
    if full:
        return out
    # The default subset: every server x client, both directions, both sizes, both blksizes
    # and the windowsize seen at least once, IPv6 once per server.
    keep = set()
    for server in ("tftpd-hpa", "atftpd"):
        keep |= {
            (server, "tftp-hpa", "4", "get", "big" if server == "tftpd-hpa" else "small", 512, 0),
            (server, "tftp-hpa", "4", "put", "small", 512, 0),
            (server, "curl", "4", "get", "big", 1428, 0),
            (server, "curl", "4", "put", "big", 1428, 0),
            (server, "atftp", "4", "get", "small", 512, 0),
            (server, "atftp", "4", "put", "big", 1428, 0),
        }
    keep.add(("atftpd", "atftp", "4", "get", "big", 1428, 8))
    keep.add(("tftpd-hpa", "curl", "6", "get", "small", 512, 0))
    keep.add(("tftpd-hpa", "tftp-hpa", "6", "put", "small", 512, 0))
    keep.add(("tftpd-hpa", "curl", "6", "put", "big", 1428, 0))
    return [c for c in out if c in keep]


class Gateway:
    def __init__(self, bed, build, tmp, backend):
        self.bed, self.build, self.tmp, self.backend = bed, build, tmp, backend
        self.exe = os.path.join(build, "examples", "fwx-gateway", "fwx-gateway")
        self.ctl = os.path.join(build, "examples", "fwxctl", "fwxctl")
        self.plugin_dir = os.path.join(build, "plugins", "tftp")
        self.sock = os.path.join(tmp, "ctl.sock")
        self.logpath = os.path.join(tmp, "gw.log")
        self.proc = None
        self.died = None
        self.extra = ""  # more lines of the gateway block (catalog.py's row 65 cap)

    def config(self):
        name = "fwxtm-%d-%s" % (os.getpid(), self.backend)
        common = f"""  name = "{name}";
  control_socket = "{self.sock}";
  plugin_dir = "{self.plugin_dir}";
  plugins = [ "tftp" ];
  timeout = {TIMEOUT_S};
  log_level = "debug";
{self.extra}"""
        if self.backend == "proxy":
            return f"""# fwx tests/tftp/matrix.py --backend proxy: published tftp servers, IPv4 and IPv6.
gateway = {{
{common}  local_addresses = [ "{G4C}", "{G4S}", "{G6C}", "{G6S}" ];
}};
protocols = ( {{ name = "tftp"; guid = "{{6a0e7c1e-0f7a-4b3e-9c55-000000000069}}"; protocol = "udp";
    port = 69; direction = "inbound"; filters = [ "{TFTP_GUID}" ]; }} );
rules = ( {{ name = "publish tftp"; action = "allow"; from = [ "external" ]; to = [ "external" ];
    protocols = [ "tftp" ]; }} );
publishing = ( {{ name = "tftp4"; listen = "{G4C}:69"; server = "{S4}:69"; protocol = "tftp"; }},
               {{ name = "tftp6"; listen = "[{G6C}]:69"; server = "[{S6}]:69"; protocol = "tftp"; }} );
"""
        return f"""# fwx tests/tftp/matrix.py --backend nft: clients behind a transparent gateway, NAT out.
gateway = {{
{common}  backend = "nft";
  local_addresses = [ "{G4C}", "{G4S}", "{G6C}", "{G6S}" ];
  on_stop = "open";
}};
networks = {{ internal = {{ ranges = [ "10.81.1.0/24", "fd81:1::/64" ]; }}; }};
relationships = ( {{ from = "internal"; to = "external"; type = "nat"; }} );
protocols = ( {{ name = "tftp"; guid = "{{6a0e7c1e-0f7a-4b3e-9c55-000000000069}}"; protocol = "udp";
    port = 69; direction = "outbound"; filters = [ "{TFTP_GUID}" ]; }} );
rules = ( {{ name = "tftp out"; action = "allow"; from = [ "internal" ]; to = [ "external" ];
    protocols = [ "tftp" ]; }} );
"""

    def start(self):
        cfg = os.path.join(self.tmp, "gw.cfg")
        with open(cfg, "w") as f:
            f.write(self.config())
        out = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.bed.wrap("g", [self.exe, "--config", cfg]), stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for _ in range(100):  # ready within 10 s
            if "fwx-gateway: ready" in self.text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        text = self.text()
        if self.backend == "nft" and ("libnftables" in text or "not built" in text or "Operation not permitted" in text):
            raise nstopo.Failure("SKIP: the nft backend cannot run here: " + text[-500:])
        raise nstopo.Failure("fwx-gateway did not become ready:\n" + text[-3000:])

    def text(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def fwxctl(self, what):
        rc, out = run(self.bed.wrap("g", [self.ctl, "-s", self.sock, "-j", what]), timeout=10)
        if rc != 0:
            raise nstopo.Failure("fwxctl %s: rc=%d %s" % (what, rc, out[-500:]))
        return [json.loads(l) for l in out.splitlines() if l.strip()]  # one JSON object a row

    def sanitizer_lines(self):
        """What ASan or UBSan said in the gateway's output (a build with -Db_sanitize)."""
        if not os.path.exists(self.logpath):
            return []
        return [l for l in self.text().splitlines() if "AddressSanitizer" in l or "runtime error:" in l
                or "LeakSanitizer" in l]

    def stop(self):
        """Stops the gateway; self.died says whether it had died before (its exit status)."""
        self.died = self.proc.returncode if self.proc is not None and self.proc.poll() is not None else None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Server:
    def __init__(self, bed, kind, root):
        self.bed, self.kind, self.root, self.procs = bed, kind, root, []

    def start(self, families):
        if self.kind == "atftpd":
            families = ("4",)  # IPv4 only (see cases())
        for fam in families:
            ip = S4 if fam == "4" else S6
            if self.kind == "tftpd-hpa":
                # -L foreground, -c writes may create files, -s chroot, -u root (the directory is the test's)
                cmd = ["in.tftpd", "-L", "-c", "-s", "-u", "root", "-a", "%s:69" % url_host(ip), self.root]
            else:
                cmd = [ATFTPD, "--daemon", "--no-fork", "--user", "root", "--group", "root", "--bind-address", ip,
                       "--port", "69", "--logfile", "/dev/null", self.root]
            self.procs.append(subprocess.Popen(self.bed.wrap("s", cmd), stdout=subprocess.DEVNULL,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for _ in range(50):  # bound within 5 s
            rc, out = run(self.bed.wrap("s", ["ss", "-Huan", "sport = :69"]), timeout=5)
            if out.count("\n") >= len(families) or (out.strip() and out.count("\n") + 1 >= len(families)):
                return
            time.sleep(0.1)
        raise nstopo.Failure("%s did not bind port 69" % self.kind)

    def signal(self, sig):
        for p in self.procs:
            # ip netns exec execs the server: the pid is the server's own
            os.kill(p.pid, sig)

    def stop(self):
        rc.stop_procs(list(reversed(self.procs)))
        self.procs = []


def make_bed(prefix, backend, extra_server_addrs=()):
    """The dual-homed bed, up (or the test skipped): forwarding off for the proxy backend."""
    bed = nstopo.Bed(prefix, "g", {
        "c": nstopo.Side("tmc0", [C4 + "/24", C6 + "/64"], [G4C + "/24", G6C + "/64"]),
        "s": nstopo.Side("tms0", [S4 + "/24", S6 + "/64"] + list(extra_server_addrs), [G4S + "/24", G6S + "/64"]),
    }, forwarding=(backend == "nft"))
    bed.up_or_skip()
    return bed


def require(build, backend, programs):
    """Skips the test (exit 77, saying why) unless it runs as root, the programs are installed
    (nft too for that backend) and fwx-gateway, fwxctl and the plugin are built."""
    if os.geteuid() != 0:
        nstopo.skip("needs root (network namespaces)")
    missing = [b for b in list(programs) + (["nft"] if backend == "nft" else []) if not shutil.which(b)]
    if missing:
        nstopo.skip("not installed: %s; ./run test installs them (nft: Debian package nftables)" % ", ".join(missing))
    for exe in (os.path.join(build, "examples", "fwx-gateway", "fwx-gateway"),
                os.path.join(build, "examples", "fwxctl", "fwxctl"),
                os.path.join(build, "plugins", "tftp", "tftp.so")):
        if not os.path.exists(exe):
            nstopo.skip("not built: " + exe)


def start_gateway(gw):
    """gw.start(); returns None, or why the nft backend cannot run here (the caller skips)."""
    try:
        gw.start()
    except nstopo.Failure as e:
        if str(e).startswith("SKIP: "):
            return str(e)[6:]
        raise
    return None


def wrap_up(gw, tmp, failures, skipped, title, tail=5000):
    """The end of a run, after gw.stop(): a gateway that died before it and what a sanitizer said
    are failures too; a skip skips (exit 77); otherwise the log's tail when anything failed, one
    line per failure and the summary. Removes tmp. Returns the exit code."""
    if gw.died is not None:
        failures.append("fwx-gateway died (status %s)" % gw.died)
    failures += ["sanitizer: " + l for l in gw.sanitizer_lines()]
    if skipped is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        nstopo.skip(skipped)
    if failures:
        log("-- fwx-gateway log (tail):")
        log(gw.text()[-tail:] if os.path.exists(gw.logpath) else "(none)")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        log("FAIL " + f)
    log("%s, %d failure(s)" % (title, len(failures)))
    return 1 if failures else 0


def rrq(name):
    return b"\0\1" + name.encode() + b"\0octet\0"


def watch_one_transfer(bed, gw, server, backend, failures):
    """A transfer caught while the server is stopped: the permission listed, then used."""
    port = 45123
    host = G4C if backend == "proxy" else S4

    def mk():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((C4, port))
        s.settimeout(5.0)
        return s
    s = bed.run_in("c", mk)
    server.signal(signal.SIGSTOP)
    try:
        s.sendto(rrq("small.txt"), (host, 69))
        perm = None
        for _ in range(30):  # within 3 s
            for r in (gw.fwxctl("permissions")):
                if "%s:%d" % (C4, port) in json.dumps(r):
                    perm = r
            if perm is not None:
                break
            time.sleep(0.1)
        if perm is None:
            failures.append("watch: fwxctl permissions never listed the permission to %s:%d" % (C4, port))
        else:
            log("ok   watch: fwxctl permissions lists %s" % json.dumps(perm))
            if "udp" not in json.dumps(perm).lower():
                failures.append("watch: the permission is not UDP: %s" % json.dumps(perm))
    finally:
        server.signal(signal.SIGCONT)
    try:
        data, addr = s.recvfrom(65536)
    except socket.timeout:
        failures.append("watch: no DATA came back to the client")
        s.close()
        return
    want_from = G4C if backend == "proxy" else S4
    if addr[0] != want_from or addr[1] == 69 or data[:4] != b"\0\3\0\1":
        failures.append("watch: the first answer came from %s:%d (%r), expected DATA 1 from %s, not port 69" % (
            addr[0], addr[1], data[:8], want_from))
    else:
        log("ok   watch: DATA 1 from %s:%d" % addr)
    still = [r for r in (gw.fwxctl("permissions")) if "%s:%d" % (C4, port) in json.dumps(r)]
    if still:
        failures.append("watch: the one-shot permission is still listed after its use: %s" % json.dumps(still))
    conns = [r for r in (gw.fwxctl("connections")) if "%s:%d" % (C4, port) in json.dumps(r)]
    if not conns:
        failures.append("watch: fwxctl connections does not show the transfer to %s:%d" % (C4, port))
    else:
        log("ok   watch: fwxctl connections shows %s" % json.dumps(conns[-1]))
    s.sendto(b"\0\4" + data[2:4], addr)  # ACK 1: the file is under 512 bytes, the transfer ends
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--backend", choices=("proxy", "nft"), required=True)
    ap.add_argument("--full", action="store_true", help="every combination (the default under CI=true)")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this (debugging)")
    a = ap.parse_args()
    full = a.full or os.environ.get("CI") == "true"
    backend = a.backend
    require(a.build, backend, ("ip", "ss", "in.tftpd", "tftp", "atftp", "curl"))
    families = ("4", "6")
    servers = ["tftpd-hpa"] + (["atftpd"] if os.access(ATFTPD, os.X_OK) else [])
    if "atftpd" not in servers:
        log("note: %s is not there (./run test unpacks it): the atftpd cases are not run" % ATFTPD)

    bed = make_bed("fwxtm-", backend)
    tmp = tempfile.mkdtemp(prefix="fwx-tftpm-%d-" % os.getpid())
    srv, cli = os.path.join(tmp, "srv"), os.path.join(tmp, "cli")
    os.makedirs(srv)
    os.makedirs(cli)
    os.chmod(srv, 0o777)
    os.chmod(tmp, 0o755)
    with open(os.path.join(srv, "small.txt"), "wb") as f:
        f.write(b"fwx tftp matrix, a small file\n" * 10)
    with open(os.path.join(srv, "big.bin"), "wb") as f:
        f.write(os.urandom(BIG))
    with open(os.path.join(cli, "up-small"), "wb") as f:
        f.write(os.urandom(1500))
    with open(os.path.join(cli, "up-big"), "wb") as f:
        f.write(os.urandom(BIG - 555))
    gw = Gateway(bed, a.build, tmp, backend)
    failures = []
    transfers = 0
    skipped_reason = None
    try:
        skipped_reason = start_gateway(gw)
        if skipped_reason is not None:
            raise nstopo.Failure(skipped_reason)
        n = 0
        for kind in servers:
            server = Server(bed, kind, srv)
            server.start(families)
            try:
                if kind == "tftpd-hpa":
                    watch_one_transfer(bed, gw, server, backend, failures)
                for (sk, client, fam, op, size, bs, ws) in cases(full):
                    if sk != kind or fam not in families:
                        continue
                    n += 1
                    name = "%s %s v%s %s %s blksize %d%s" % (kind, client, fam, op, size, bs,
                                                            " windowsize %d" % ws if ws else "")
                    if a.only not in name:
                        continue
                    host = (G4C if fam == "4" else G6C) if backend == "proxy" else (S4 if fam == "4" else S6)
                    if op == "get":
                        remote, local = ("small.txt" if size == "small" else "big.bin"), os.path.join(cli, "got-%d" % n)
                        a_, b_ = local, os.path.join(srv, remote)
                    else:
                        remote, local = "put-%d-%s" % (n, size), os.path.join(cli, "up-" + size)
                        a_, b_ = local, os.path.join(srv, remote)
                        if kind == "atftpd":  # atftpd writes only over a file that exists
                            open(b_, "wb").close()
                            os.chmod(b_, 0o666)
                    cmd = client_cmd(client, op, host, remote, local, bs, ws)
                    t0 = time.monotonic()
                    rc, out = run(bed.wrap("c", cmd), timeout=20)
                    dt = time.monotonic() - t0
                    if rc != 0:
                        failures.append("%s: rc=%d %s" % (name, rc, out.strip()[-300:]))
                        log("FAIL " + name)
                        continue
                    if not (os.path.exists(a_) and os.path.exists(b_)) or sha(a_) != sha(b_):
                        failures.append("%s: the file differs (sha256)" % name)
                        log("FAIL " + name)
                        continue
                    transfers += 1
                    log("ok   %s (%d bytes, %.1f s)" % (name, os.path.getsize(a_), dt))
            finally:
                server.stop()
        text = gw.text()
        # The nft backend: the kernel carries each transfer. The proxy backend relays it.
        mode = "(relayed, no data filter|filtered)" if backend == "proxy" else "kernel-carried"
        used = len(re.findall(r"opened through permission \d+ \(%s\)" % mode, text))
        if used < transfers:
            failures.append("%d transfers, but %d connections opened through a permission %s in the log" % (
                transfers, used, mode))
        else:
            log("ok   %d connections opened through a permission for %d transfers" % (used, transfers))
        # Nothing outlives the transfers by more than the gateway's timeout.
        time.sleep(TIMEOUT_S + 2)
        left = [r for r in (gw.fwxctl("permissions")) if "udp" in json.dumps(r).lower()]
        if left:
            failures.append("permissions left after the timeout: %s" % json.dumps(left)[:500])
        # The nft backend's flows end with conntrack's UDP timeouts (30 s and more), not the
        # gateway's: only the proxy backend's must be gone by now.
        conns = [r for r in (gw.fwxctl("connections")) if "udp" in json.dumps(r).lower()] if backend == "proxy" else []
        if conns:
            failures.append("UDP connections left after the timeout: %s" % json.dumps(conns)[:500])
        if backend == "proxy":
            _, out = run(bed.wrap("g", ["ss", "-Huan"]), timeout=5)
            extra = [l for l in out.splitlines() if l.strip() and not re.search(r"\]?:69\s", l)]
            if extra:
                failures.append("UDP sockets left in the gateway: %s" % "; ".join(extra))
        if not left and not conns:
            log("ok   nothing left after the timeout")
    except nstopo.Failure as e:
        if skipped_reason is None:
            failures.append(str(e))
    finally:
        gw.stop()
        bed.down()
    return wrap_up(gw, tmp, failures, skipped_reason, "tftp matrix (%s): %d transfers" % (backend, transfers))


if __name__ == "__main__":
    sys.exit(main())
