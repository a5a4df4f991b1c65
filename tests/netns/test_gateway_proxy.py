"""fwx-gateway (proxy backend, FTP plugin) publishing a strict stock vsftpd through a dual-homed
gateway, in network namespaces this script creates and deletes itself:

  client ns            gateway ns (ip forwarding OFF)              server ns
  10.98.1.2  --veth--  10.98.1.1 | 10.98.2.1            --veth--  10.98.2.2
  fd98:1::2            fd98:1::1 | fd98:2::1                      fd98:2::2

Only what fwx-gateway relays crosses the gateway. vsftpd runs twice in the server namespace
(IPv4 on 10.98.2.2:21, IPv6 on [fd98:2::2]:21), strict: no pasv_promiscuous/port_promiscuous,
so a data connection must come from its control connection's peer and a PORT/EPRT must name it.
The gateway publishes:

  10.98.1.1:21     -> 10.98.2.2:21      IPv4 client, IPv4 server
  [fd98:1::1]:21   -> [fd98:2::2]:21    IPv6 client, IPv6 server
  [fd98:1::1]:2121 -> 10.98.2.2:21      IPv6 client, IPv4-only server (across families)
  10.98.1.1:2121   -> [fd98:2::2]:21    IPv4 client, IPv6-only server (across families)
  0.0.0.0:2122     -> 10.98.2.2:21      a wildcard listen address

curl, in the client namespace, downloads and uploads a file in every mode the client's family
has (PASV, EPSV, PORT, EPRT over IPv4; EPSV, EPRT over IPv6), through each published address.
Each cell checks: curl's exit code, the checksum of what arrived, that curl sent the mode's own
command and never fell back to another, and, from vsftpd's protocol log, which command the
server got and that the address it names (active mode) is the gateway's server-side address.
lftp (`set ftp:auto-passive-mode false`, no silent fallback) adds active and passive cells over
IPv4, IPv6 and from IPv6 to the IPv4-only server.

SOCKS5 cells (curl through the gateway's SOCKS listener, every mode) check the explicit kind:
a permission admits the passive data connection's CONNECT to the server's data port; an active
one comes from a port bound on the gateway's server-side address.

One client with two control connections at once, to servers on different sides, checks that a
PORT on the older one still names its own server's side. Last, a publishing rule for FTP
without full proxy must stop the gateway at start-up with the rule's file:line.

Root, `ip`, vsftpd, curl and lftp are needed (./run test installs them); otherwise exit 77
with the reason.
SPDX-License-Identifier: MIT
"""
import os
import pwd
import grp
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
from gwtest import (ftp_plugin, Failure, Gateway, gateways_stopped, check, log, main, sha256_file, skip,  # noqa: E402
                    vsftpd_config_text, wait_until, write_file)
import nstopo  # noqa: E402
from nstopo import sh  # noqa: E402

C4, G4_IN, G4_OUT, S4 = "10.98.1.2", "10.98.1.1", "10.98.2.1", "10.98.2.2"
C6, G6_IN, G6_OUT, S6 = "fd98:1::2", "fd98:1::1", "fd98:2::1", "fd98:2::2"
FTP_GUID = "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"
PREFIX = "fwxdh-"
SOCKS_PORT = 1080
PAYLOAD_SIZE = 300 * 1024


class Topology(nstopo.Bed):
    """Three namespaces, two veth pairs, IPv4 and IPv6 on both sides; forwarding off in the
    gateway (user mode: nothing crosses it but what fwx relays). down() deletes them (and stale
    ones of dead runs go at the next start)."""

    def __init__(self):
        super().__init__(PREFIX, "g", {
            "c": nstopo.Side("cl0", [C4 + "/24", C6 + "/64"], [G4_IN + "/24", G6_IN + "/64"]),
            "s": nstopo.Side("sv0", [S4 + "/24", S6 + "/64"], [G4_OUT + "/24", G6_OUT + "/64"])},
            forwarding=False)

    def listening(self, key, port):
        r = sh(*self.wrap(key, ["ss", "-Hltn", "( sport = :%d )" % port]), ok=False)
        return r.stdout.strip()


class Vsftpd:
    """One strict vsftpd in the server namespace, on one address, anonymous down and upload."""

    def __init__(self, topo, tmp, exe, name, addr, pasv):
        self.topo, self.exe, self.name, self.addr = topo, exe, name, addr
        self.dir = os.path.join(tmp, name)
        self.root = os.path.join(self.dir, "root")
        self.updir = os.path.join(self.root, "up")
        self.conf = os.path.join(self.dir, "vsftpd.conf")
        self.protolog = os.path.join(self.dir, "vsftpd.log")
        self.out = os.path.join(self.dir, "server.out")
        self.pasv = pasv
        self.proc = None

    def prepare(self, payload):
        try:
            pw = pwd.getpwnam("ftp")
        except KeyError:
            pw = pwd.getpwnam("nobody")
        try:
            gid = grp.getgrnam("nogroup").gr_gid
        except KeyError:
            gid = pw.pw_gid
        os.makedirs(self.updir)
        os.makedirs(os.path.join(self.dir, "empty"))
        for d in (os.path.dirname(self.dir), self.dir, self.root):
            os.chmod(d, 0o755)
        os.chmod(os.path.join(self.dir, "empty"), 0o555)
        os.chown(self.updir, pw.pw_uid, gid)
        os.chmod(self.updir, 0o777)
        shutil.copyfile(payload, os.path.join(self.root, "payload.bin"))
        os.chmod(os.path.join(self.root, "payload.bin"), 0o644)
        # Strict: the data connection's peer must be the control connection's (no
        # pasv_promiscuous), and a PORT/EPRT must name it (no port_promiscuous).
        write_file(self.conf, vsftpd_config_text("fwx test_gateway_proxy: strict vsftpd on %s" % self.addr,
                                                 self.addr, 21, self.root, pw.pw_name,
                                                 os.path.join(self.dir, "empty"), self.pasv, self.protolog))

    def start(self):
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(self.topo.wrap("s", [self.exe, self.conf]), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or self.topo.listening("s", 21).count(self.addr) > 0,
                   8, what="%s to listen on %s:21" % (self.name, self.addr))
        if self.proc.poll() is not None:
            raise Failure("%s exited %s: %s" % (self.name, self.proc.returncode, open(self.out).read()[-400:]))

    def stop(self):
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except OSError:
                break
            try:
                self.proc.wait(3)
                break
            except subprocess.TimeoutExpired:
                continue
        # The per-session children are in the same group.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        self.proc = None

    def log_size(self):
        return os.path.getsize(self.protolog) if os.path.exists(self.protolog) else 0

    def wait_226(self, off, what):
        """The protocol log since off, once it holds the transfer's 226 (vsftpd may write the
        line after the client has read the reply)."""
        wait_until(lambda: '", "226 ' in self.log_since(off), 5, what="%s: vsftpd to log its 226" % what)
        return self.log_since(off)

    def log_since(self, off):
        if not os.path.exists(self.protolog):
            return ""
        with open(self.protolog, "rb") as f:
            f.seek(off)
            return f.read().decode("utf-8", "replace")


def serve_payload(tmp, topo, exe, servers, size, specs):
    """A random payload of size bytes in tmp/srv, served by one strict vsftpd per (name, address,
    passive port range) of specs, each prepared, started and added to servers first (so the
    caller's cleanup stops it even if a later one fails): the payload's path and the servers."""
    srv = os.path.join(tmp, "srv")
    os.makedirs(srv)
    payload = os.path.join(tmp, "payload.bin")
    with open(payload, "wb") as f:
        f.write(os.urandom(size))
    started = []
    for name, addr, pasv in specs:
        v = Vsftpd(topo, srv, exe, name, addr, pasv)
        servers.append(v)
        v.prepare(payload)
        v.start()
        started.append(v)
    return payload, started


def config(tmp, plugin):
    path = os.path.join(tmp, "gateway.cfg")
    write_file(path, """gateway = {
  name = "dualhome%d";
  backend = "proxy";
  plugin_dir = "%s";
  plugins = [ "ftp" ];
  local_addresses = [ "%s", "%s", "%s", "%s" ];
  port_range = "42000-42999";
  log_level = "info";
  socks = "%s:%d";
};
networks = { internal = { ranges = [ "10.98.1.0/24", "fd98:1::/64" ]; };
             dmz = { ranges = [ "10.98.2.0/24", "fd98:2::/64" ]; };
             localhost = { ranges = [ "%s/32", "%s/32", "%s/128", "%s/128" ]; }; };
relationships = ( { from = "internal"; to = "dmz"; type = "nat"; } );
protocols = (
  { name = "ftp-in"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000170021}"; protocol = "tcp"; port = 21;
    direction = "inbound"; filters = [ "%s" ]; },
  { name = "ftp-x"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000172121}"; protocol = "tcp"; port = 2121;
    direction = "inbound"; filters = [ "%s" ]; },
  { name = "ftp-w"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000172122}"; protocol = "tcp"; port = 2122;
    direction = "inbound"; filters = [ "%s" ]; },
  { name = "ftp"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000170121}"; protocol = "tcp"; port = 21;
    direction = "outbound"; filters = [ "%s" ]; }
);
rules = ( { name = "publish"; action = "allow"; from = [ "internal", "external" ];
            to = [ "localhost", "internal", "dmz", "external" ]; protocols = [ "ftp-in", "ftp-x", "ftp-w", "ftp" ]; } );
publishing = (
  { name = "ftp4"; listen = "%s:21"; server = "%s:21"; protocol = "ftp-in"; full_proxy = true; },
  { name = "ftp6"; listen = "[%s]:21"; server = "[%s]:21"; protocol = "ftp-in"; full_proxy = true; },
  { name = "ftp6to4"; listen = "[%s]:2121"; server = "%s:21"; protocol = "ftp-x"; full_proxy = true; },
  { name = "wildcard"; listen = "0.0.0.0:2122"; server = "%s:21"; protocol = "ftp-w"; full_proxy = true; },
  { name = "ftp4to6"; listen = "%s:2121"; server = "[%s]:21"; protocol = "ftp-x"; full_proxy = true; }
);
""" % (os.getpid(), os.path.dirname(plugin), G4_IN, G4_OUT, G6_IN, G6_OUT, G4_IN, SOCKS_PORT,
       G4_IN, G4_OUT, G6_IN, G6_OUT,
       FTP_GUID, FTP_GUID, FTP_GUID, FTP_GUID, G4_IN, S4, G6_IN, S6, G6_IN, S4, S4, G4_IN, S6))
    return path


def url_host(ip):
    return "[%s]" % ip if ":" in ip else ip


# What curl sends on the client side for each mode, and what must never appear (a fallback).
CURL_MODE = {
    "PASV": (["--ftp-pasv", "--disable-epsv"], "PASV", ("EPSV", "PORT", "EPRT")),
    "EPSV": (["--ftp-pasv"], "EPSV", ("PASV", "PORT", "EPRT")),
    "PORT": (["--disable-eprt"], "PORT", ("PASV", "EPSV", "EPRT")),
    "EPRT": ([], "EPRT", ("PASV", "EPSV", "PORT")),
}


class Cells:
    def __init__(self, topo, tmp, payload, servers):
        self.topo, self.tmp, self.payload, self.servers = topo, tmp, payload, servers
        self.want = sha256_file(payload)
        self.n = 0
        self.results = []

    def curl(self, label, gw_ip, port, server, mode, direction, socks=None):
        """One transfer; returns curl's verbose output. Fails the test on a wrong result."""
        self.n += 1
        opts, sent, never = CURL_MODE[mode]
        local_ip = C6 if ":" in gw_ip else C4
        argv = ["curl", "-sS", "-v", "--max-time", "20", "--connect-timeout", "5"] + list(opts)
        if mode in ("PORT", "EPRT"):
            argv += ["-P", local_ip]
        if socks:
            argv += ["--socks5", socks]
        name = "f%d-%s-%s.bin" % (self.n, mode.lower(), direction)
        base = "ftp://%s:%d/" % (url_host(gw_ip), port)
        local = os.path.join(self.tmp, name)
        if direction == "down":
            argv += ["-o", local, base + "payload.bin"]
        else:
            argv += ["-T", self.payload, base + "up/" + name]
        off = server.log_size()
        r = subprocess.run(self.topo.wrap("c", argv), capture_output=True, text=True, timeout=30)
        what = "%s %s %s" % (label, mode, direction)
        verbose = r.stderr
        self.last_verbose = verbose
        if r.returncode != 0:
            raise Failure("%s: curl exit %d:\n%s\n---- vsftpd log ----\n%s" % (
                what, r.returncode, "\n".join(verbose.splitlines()[-15:]), server.log_since(off)[-1500:]))
        got = local if direction == "down" else os.path.join(server.updir, name)
        wait_until(lambda: os.path.exists(got), 5, what="%s: the file to arrive" % what)
        check(sha256_file(got) == self.want, "%s: checksum of %s differs from the payload's" % (what, got))
        cmds = re.findall(r"^> ([A-Z]{4})\b", verbose, re.M)
        check(sent in cmds, "%s: curl did not send %s: %s" % (what, sent, cmds))
        check(not any(c in never for c in cmds), "%s: curl fell back to another mode: %s" % (what, cmds))
        return what, server.wait_226(off, what)

    def server_saw(self, what, slog, verbs, gw_addr=None):
        """vsftpd's protocol log shows one of `verbs` and a successful transfer; an active
        command names the gateway's server-side address."""
        got = re.findall(r'FTP command: Client "[^"]+", "(PASV|EPSV|PORT|EPRT)([^"]*)"', slog)
        check(got and got[-1][0] in verbs, "%s: vsftpd got %s, want one of %s" % (what, got, verbs))
        check(re.search(r'FTP response: Client "[^"]+", "226 ', slog), "%s: vsftpd logged no 226" % what)
        # The control connection's peer is the gateway's server-side address, and so is the
        # data peer vsftpd checked (it would have said 425 Security: Bad IP otherwise).
        check(gw_addr is None or re.search(r'Client "(::ffff:)?%s"' % re.escape(gw_addr), slog),
              "%s: vsftpd's client is not the gateway's %s" % (what, gw_addr))
        verb, arg = got[-1]
        if verb == "PORT":
            want = ",".join(gw_addr.split(".")) + ","
            check(arg.strip().startswith(want), "%s: PORT %s does not name the gateway's %s" % (what, arg, gw_addr))
        elif verb == "EPRT":
            parts = arg.strip().split(arg.strip()[0]) if arg.strip() else []
            check(len(parts) >= 4 and parts[2] == gw_addr,
                  "%s: EPRT %s does not name the gateway's %s" % (what, arg, gw_addr))
        self.results.append("%s: server got %s%s" % (what, verb, arg))
        log("ok: %s (server got %s%s)" % (what, verb, arg))


def lftp_cell(topo, tmp, cells, server, gw_ip, port, mode, gw_addr, server_verbs):
    """lftp with no silent fallback: active (PORT/EPRT) or passive; download, checksum, the
    command lftp sent and the one vsftpd got."""
    cells.n += 1
    name = "lftp%d-%s.bin" % (cells.n, mode.lower())
    local = os.path.join(tmp, name)
    passive = "true" if mode in ("PASV", "EPSV") else "false"
    script = ("set ftp:passive-mode %s; set ftp:auto-passive-mode false; set ftp:prefer-epsv %s; "
              "set net:max-retries 1; set net:timeout 10; set xfer:clobber on; "
              "set ftp:port-ipv4 %s; get payload.bin -o %s; bye" % (
                  passive, "true" if mode == "EPSV" else "false", C4, local))
    off = server.log_size()
    r = subprocess.run(topo.wrap("c", ["lftp", "-d", "-u", "anonymous,fwx@example.org", "-e", script,
                                       "ftp://%s:%d" % (url_host(gw_ip), port)]),
                       capture_output=True, text=True, timeout=40)
    fam = ("v6" if ":" in gw_ip else "v4") + ("" if port == 21 else ("->v4" if ":" in gw_ip else "->v6"))
    what = "lftp %s %s down" % (fam, mode)
    if r.returncode != 0:
        raise Failure("%s: exit %d: %s" % (what, r.returncode, (r.stdout + r.stderr)[-1500:]))
    check(os.path.exists(local) and sha256_file(local) == cells.want, "%s: checksum differs" % what)
    sent = re.findall(r"---> (PASV|EPSV|PORT|EPRT)", r.stdout + r.stderr)
    check(sent and all(s == mode for s in sent), "%s: lftp sent %s" % (what, sent))
    cells.server_saw(what, server.wait_226(off, what), server_verbs, gw_addr)


def find_vsftpd():
    """The vsftpd binary: installed (./run test installs it), or unpacked into the FTP matrix's
    cache (tests/ftp-matrix/README.md, "Packages")."""
    cache = os.environ.get("FWX_FTP_MATRIX_CACHE", "/var/cache/fwx-ftp-matrix")
    places = ["/usr/sbin/vsftpd", os.path.join(cache, "root", "usr", "sbin", "vsftpd")]
    for p in places:
        if os.access(p, os.X_OK):
            return p
    return None


# One client, two control connections at once: to the IPv4 server (10.98.1.1:21) and, opened
# after it, to the IPv6 server (10.98.1.1:2121). The first one's PORT must still name the
# gateway's IPv4 server-side address, though the session's newest connection is on the other side.
TWO_SERVERS = r"""
import ftplib, hashlib, socket, sys
gw, out = sys.argv[1], sys.argv[2]
f = ftplib.FTP()
f.connect(gw, 21, timeout=10)
f.login("anonymous", "fwx@example.org")
other = socket.create_connection((gw, 2121), timeout=10)
greeting = other.recv(200)
assert greeting.startswith(b"220"), greeting
f.set_pasv(False)
h = hashlib.sha256()
f.retrbinary("RETR payload.bin", h.update)
f.quit()
other.close()
open(out, "w").write(h.hexdigest())
"""


def two_servers_one_client(topo, tmp, cells, v4):
    out = os.path.join(tmp, "two-servers.sha256")
    off = v4.log_size()
    r = subprocess.run(topo.wrap("c", [sys.executable, "-c", TWO_SERVERS, G4_IN, out]), capture_output=True,
                       text=True, timeout=40)
    what = "two servers, one client: PORT on the older control connection"
    if r.returncode != 0:
        raise Failure("%s: exit %d: %s\n---- vsftpd log ----\n%s" % (what, r.returncode, r.stderr[-800:],
                                                                     v4.log_since(off)[-1200:]))
    check(open(out).read() == cells.want, "%s: checksum differs" % what)
    cells.server_saw(what, v4.wait_226(off, what), ("PORT",), G4_OUT)


def run(tmp):
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    for tool in ("ip", "ss", "curl"):
        if shutil.which(tool) is None:
            skip("no %s command" % tool)
    vsftpd = find_vsftpd()
    if vsftpd is None:
        skip("vsftpd is not installed (Debian package vsftpd; ./run test installs it)")
    if shutil.which("lftp") is None:
        skip("lftp is not installed (Debian package lftp; ./run test installs it)")
    plugin = ftp_plugin()
    topo = Topology()
    topo.up_or_skip()
    servers = []
    with gateways_stopped(lambda: [v.stop() for v in servers], topo.down):
        payload, (v4, v6) = serve_payload(tmp, topo, vsftpd, servers, PAYLOAD_SIZE,
                                          [("vsftpd4", S4, (30000, 30099)), ("vsftpd6", S6, (30100, 30199))])
        scenario(tmp, topo, plugin, payload, v4, v6)


def scenario(tmp, topo, plugin, payload, v4, v6):
    cfg = config(tmp, plugin)
    gw = Gateway(tmp, ["--config", cfg], name="gw", wait_ready=False, prefix=topo.wrap("g", []))
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the gateway to be ready")
    cells = Cells(topo, tmp, payload, (v4, v6))

    # Same family: IPv4 in every mode, IPv6 in the extended ones (curl has no PASV/PORT on IPv6).
    for mode in ("PASV", "EPSV", "PORT", "EPRT"):
        for d in ("down", "up"):
            what, slog = cells.curl("v4", G4_IN, 21, v4, mode, d)
            cells.server_saw(what, slog, (mode,), G4_OUT)
    for mode in ("EPSV", "EPRT"):
        for d in ("down", "up"):
            what, slog = cells.curl("v6", G6_IN, 21, v6, mode, d)
            cells.server_saw(what, slog, (mode,), G6_OUT)

    # Across families: an IPv6 client, an IPv4-only server; an IPv4 client, an IPv6-only server.
    # The server gets its own family's commands: PASV/EPSV, PORT/EPRT naming the gateway's
    # IPv4 address; EPSV, EPRT |2| naming the gateway's IPv6 address.
    for mode in ("EPSV", "EPRT"):
        for d in ("down", "up"):
            what, slog = cells.curl("v6->v4", G6_IN, 2121, v4, mode, d)
            cells.server_saw(what, slog, ("PASV", "EPSV") if mode == "EPSV" else ("PORT", "EPRT"), G4_OUT)
    for mode in ("PASV", "EPSV", "PORT", "EPRT"):
        for d in ("down", "up"):
            what, slog = cells.curl("v4->v6", G4_IN, 2121, v6, mode, d)
            cells.server_saw(what, slog, ("EPSV",) if mode in ("PASV", "EPSV") else ("EPRT",), G6_OUT)

    # A rule listening on every address: the 227 names the address the client reached.
    for mode in ("PASV", "PORT"):
        what, slog = cells.curl("wildcard v4", G4_IN, 2122, v4, mode, "down")
        cells.server_saw(what, slog, (mode,), G4_OUT)
        check(mode != "PASV" or re.search(r"^< 227 .*\(10,98,1,1,", cells.last_verbose, re.M),
              "%s: the 227 does not name the address the client reached: %s" % (what, cells.last_verbose[-400:]))

    two_servers_one_client(topo, tmp, cells, v4)

    # lftp, active and passive, no silent fallback to passive.
    for mode in ("PORT", "EPSV"):
        lftp_cell(topo, tmp, cells, v4, G4_IN, 21, mode, G4_OUT, (mode,))
    # IPv6: lftp speaks EPRT/EPSV; also to the IPv4-only server across families.
    lftp_cell(topo, tmp, cells, v6, G6_IN, 21, "EPRT", G6_OUT, ("EPRT",))
    lftp_cell(topo, tmp, cells, v4, G6_IN, 2121, "EPRT", G4_OUT, ("EPRT", "PORT"))
    lftp_cell(topo, tmp, cells, v4, G6_IN, 2121, "EPSV", G4_OUT, ("EPSV", "PASV"))

    # SOCKS5 (explicit client), passive and active: the data connection of PASV/EPSV is a
    # SOCKS CONNECT to the server's data port that the filter's permission admits, made from
    # the gateway's server-side address; PORT/EPRT bind a gateway port on the server's side.
    socks = "%s:%d" % (G4_IN, SOCKS_PORT)
    for mode in ("PASV", "EPSV", "PORT", "EPRT"):
        what, slog = cells.curl("socks v4", S4, 21, v4, mode, "down", socks=socks)
        cells.server_saw(what, slog, (mode,), G4_OUT)

    out = gw.stdout() + gw.stderr()
    check("Illegal PORT" not in out and "Bad IP" not in out, "the gateway logged a strict server's refusal")
    log("%d cells passed" % len(cells.results))
    rc = gw.stop()
    err = gw.stderr()
    check(rc == 0, "fwx-gateway exited %d on SIGTERM: %r" % (rc, err[-600:]))
    check("AddressSanitizer" not in err and "runtime error" not in err, "sanitizer report: %r" % err[-1500:])
    no_full_proxy(tmp, topo, cfg)


def no_full_proxy(tmp, topo, cfg):
    """Published FTP without full proxy cannot work with a strict server in user mode (the
    server would see the client's address on the control connection, the gateway's on the data
    connection): the gateway refuses to start, naming the rule's file:line and the fix."""
    with open(cfg) as f:
        text = f.read()
    bad = text.replace('protocol = "ftp-x"; full_proxy = true; }\n);', 'protocol = "ftp-x"; full_proxy = false; }\n);')
    check(bad != text, "test bug: no rule to turn full_proxy off in")
    line = next(i + 1 for i, l in enumerate(bad.splitlines()) if "full_proxy = false" in l)
    path = os.path.join(tmp, "no-full-proxy.cfg")
    write_file(path, bad)
    g = Gateway(tmp, ["--config", path], name="gw-nofull", wait_ready=False, prefix=topo.wrap("g", []))
    try:
        rc = g.proc.wait(10)
    except subprocess.TimeoutExpired:
        raise Failure("a proxy-backend gateway publishing FTP without full proxy did not refuse to start")
    g.kill()
    err = g.stderr()
    want = '%s:%d: publishing rule "ftp4to6"' % (path, line)
    check(rc != 0 and want in err, "want exit != 0 and %r on stderr; got exit %d: %r" % (want, rc, err[-600:]))
    check("full_proxy = true" in g.stdout(), "the log does not say what to write instead: %r" % g.stdout()[-600:])
    check(not topo.listening("g", 2121), "a refused gateway left a listener behind")
    log("ok: published FTP without full proxy refused at start-up: %s" % err.strip().splitlines()[-1])


if __name__ == "__main__":
    main(run)
