#!/usr/bin/env python3
"""fwx FTP compatibility matrix: real FTP servers and clients through fwx-gateway.

    tests/ftp-matrix/matrix.py BUILD_DIR [--socks | --nft | --loopback] [options]

Servers vsftpd, ProFTPD and pure-ftpd; clients curl, lftp, wget and Python's ftplib; data
connection modes PASV, EPSV, PORT and EPRT; a download and an upload of a 5 MiB random file in
each, with the SHA-256 compared. Four beds (README.md):

- the default: a dual-homed gateway in three network namespaces (client 10.99.1.2/fd99:1::2,
  gateway 10.99.1.1/fd99:1::1 and 10.99.2.1/fd99:2::1 with forwarding off, servers 10.99.2.2 and
  fd99:2::2), fwx-gateway backend proxy publishing an IPv4-only and an IPv6-only instance of the
  server with the FTP plugin; paths v4, v6, v6>v4 and v4>v6 (client family > server family);
- --socks: the same gateway reached through its SOCKS5 listener (curl);
- --nft: a transparent gateway in kernel mode (backend nft, nat) between the same namespaces,
  forwarding on, IPv4 and IPv6; the kernel must have carried the data connection (conntrack);
- --loopback: the quick extra on 127.0.0.1-3 (proves no mode: the gateway's addresses coincide).

A cell is `ok` only if the client exited 0, the client's control dialogue shows the data
command of the column accepted and no other data command, the copy's SHA-256 matches, the data
went through the gateway, and (namespace beds) both ends saw the data connection of the column's
mode to and from the gateway's address on their side (TCP SYNs observed with nftables sets).
`known: ...` cells come from KNOWN_LIMITATIONS below, each with its reason. Anything else is
`FAIL (reason)`, and the runner prints its evidence.

--pass-through (loopback) runs the same matrix without the FTP plugin (and with servers that
accept data connections from/to foreign addresses): it checks the harness itself.

Exit status: 0 when every cell is ok or known (or bypass with --pass-through), 1 otherwise, 77
(meson's "skipped") when ftp.so is not built yet or a server or client is not installed.

Needs root (the servers start as root and drop privileges) and the servers and clients that
./run test installs; a missing one skips the run naming its package. Python 3 standard library
only.
SPDX-License-Identifier: MIT
"""
import argparse
import atexit
import ftplib
import grp
import ipaddress
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netns"))
import nstopo  # noqa: E402  (the shared namespace bed; it puts tests/gateway on the path)
from gwtest import need_loopback_hosts, sha256_file as sha256, vsftpd_config_text  # noqa: E402

GW_IP = "127.0.0.1"
CLIENT_IP = "127.0.0.2"
SERVER_IP = "127.0.0.3"
SKIP = 77

# The network namespaces (the default bed, and --nft): client, gateway and server namespaces
# joined by veth pairs, with the addresses of tests/netns/netns.h and check_nft_gateway.c.
NETNS_CLIENT_IP = "10.99.1.2"
NETNS_GW_IN = "10.99.1.1"      # the gateway on the client's link
NETNS_GW_OUT = "10.99.2.1"     # the gateway on the server's link (the NAT address)
NETNS_SERVER_IP = "10.99.2.2"
NETNS_CLIENT_IP6 = "fd99:1::2"
NETNS_GW_IN6 = "fd99:1::1"
NETNS_GW_OUT6 = "fd99:2::1"
NETNS_SERVER_IP6 = "fd99:2::2"
NETNS_FTP_PORT = 21            # the policy's ftp port (and the published port, same family)
CROSS_PORT = 2121              # published port of the other family's server (v6>v4, v4>v6)
SOCKS_PORT = 1080              # --socks: the gateway's SOCKS5 listener on its client side
NETNS_PREFIX = "fwxm-"         # fwxm-<pid>-cli, fwxm-<pid>-gw, fwxm-<pid>-srv
FTP_FILTER_GUID = "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"   # plugins/ftp (checked in the log)
NETNS = None                   # the nstopo.Bed, in the namespace beds
BED = "proxy"                  # proxy (default), loopback or nft
KIND = "published"             # proxy bed: published or socks

# The ways from a client to a server through the gateway: the client's address family, then the
# server's (the gateway translates between families in the cross-family paths).
PATHS = ["v4", "v6", "v6>v4", "v4>v6"]

SERVERS = ["vsftpd", "proftpd", "pure-ftpd"]
CLIENTS = ["curl", "lftp", "wget", "ftplib"]
MODES = ["PASV", "EPSV", "PORT", "EPRT"]
DIRS = ["down", "up"]
# The reply that accepts each data command.
MODE_REPLY = {"PASV": "227", "EPSV": "229", "PORT": "200", "EPRT": "200"}
DATA_VERBS = ("PASV", "EPSV", "PORT", "EPRT", "LPSV", "LPRT")

FTP_USER = "fwxtest"       # pure-ftpd's virtual user (vsftpd and ProFTPD: anonymous)
FTP_PASS = "fwx-matrix-pw"
# crypt(3) SHA-512 of FTP_PASS. pure-pw would store an argon2 hash, which costs pure-ftpd about
# 2 s of CPU per login here; this one costs a millisecond.
FTP_PASS_SHA512 = "$6$fwxmatrix$flicHWESWZ8iWrVV2vtiSX5FGBDqFfKxkJENQr8qLsn4/XjhW6NdM06mfcSy9ZvzfsI0UFnuapiSas3My32bj."

# Known limitations of a client or server, or of the protocol (never of the gateway). Keys:
# (kind, server, client, client family, mode, direction); "*" matches anything. kind is the
# session kind ("published", "socks"; loopback and nft runs are "published"); the client family
# is that of the client's own connection ("v4" or "v6"), or a path's name ("v4>v6") for one path
# only. The value is shown in the cell; the
# README repeats each with its justification.
# The clients that have no SOCKS client at all: (client, cell, justification), each a row of
# every SOCKS cell of theirs below.
NO_SOCKS_CLIENTS = [
    ("lftp", "n/a: lftp has no SOCKS client here",
     "Debian's lftp 4.9 is built without SOCKS support (`lftp -c 'set -a'` lists no socks "
     "setting): it cannot reach the server through a SOCKS5 gateway."),
    ("wget", "n/a: wget has no SOCKS client", "wget speaks HTTP proxies only, no SOCKS."),
    ("ftplib", "n/a: ftplib has no SOCKS client",
     "Python's ftplib connects directly (no proxy support in the standard library)."),
]
KNOWN_LIMITATIONS = [(("socks", "*", client, "*", "*", "*"), cell, why) for client, cell, why in NO_SOCKS_CLIENTS] + [
    (("socks", "*", "curl", "v4>v6", "PASV", "*"),
     # (catalog #40: the attack catalog's rows are in doc/security.md)
     "no IPv4 address reaches an IPv6 server through SOCKS",
     "curl --disable-epsv --no-ftp-skip-pasv-ip opens the data connection with a SOCKS CONNECT "
     "to the IPv4 address of the 227 (curl's socks code, no fallback). The server is IPv6-only, "
     "and a CONNECT goes to the address it names: no IPv4 address the gateway could put in the "
     "227 leads to [fd99:2::2] (its own are refused as CONNECT destinations, catalog #40). fwx "
     "asks the server with EPSV and answers 227 (0,0,0,0,port); with curl's default "
     "(--ftp-skip-pasv-ip, the control connection's host) the same cells pass."),
    (("*", "*", "wget", "*", "*", "up"),
     "n/a: wget cannot upload",
     "wget is a download-only client: it has no STOR command and no upload option."),
    (("*", "*", "*", "v6", "PASV", "*"),
     "n/a on IPv6: PASV names an IPv4 address",
     "a 227 reply carries an IPv4 address only (RFC 959); on an IPv6 control connection clients "
     "use EPSV (RFC 2428): curl forces EPSV on IPv6 whatever --disable-epsv says, lftp and wget "
     "choose EPSV by the address family, and ftplib sends EPSV on IPv6."),
    (("*", "*", "*", "v6", "PORT", "*"),
     "n/a on IPv6: PORT names an IPv4 address",
     "PORT carries an IPv4 address only (RFC 959); a client on IPv6 offers its data address with "
     "EPRT (RFC 2428): curl forces EPRT on IPv6, lftp and wget pick it by the address family, "
     "ftplib uses EPRT on IPv6 (a PORT sent anyway is refused by the gateway: 502)."),
    (("*", "*", "wget", "v4", "EPSV", "*"),
     "wget sends EPSV only on IPv6",
     "wget 1.21 picks the passive command by the control connection's address family "
     "(ftp_do_pasv: PASV for IPv4, EPSV then LPSV for IPv6) and has no option to force EPSV."),
    (("*", "*", "wget", "v4", "EPRT", "*"),
     "wget sends EPRT only on IPv6",
     "wget 1.21 picks the active command by address family (ftp_do_port: PORT for IPv4, EPRT "
     "then LPRT for IPv6) and has no option to force EPRT."),
    (("*", "*", "lftp", "v4", "EPRT", "*"),
     "lftp sends EPRT only on IPv6",
     "lftp 4.9 sends PORT for an IPv4 data address and EPRT only for IPv6; no setting makes it "
     "send EPRT over IPv4 (ftp:prefer-epsv affects passive mode only)."),
]


def pass_through_expected(client, mode):
    """Without the FTP plugin, which cells cannot work even by bypassing the gateway, and why.
    (Everything else should succeed with its data going straight between client and server.)"""
    if mode == "EPSV":
        return ("229 names no address: the client connects to the server's port on the gateway's "
                "address, where nothing listens")
    if client == "lftp" and mode == "PASV":
        return ("lftp replaces a 227 address in 127/8 other than 127.0.0.1 with the control peer's "
                "(the gateway), where nothing listens")
    return None


TRANSFER_TIMEOUT = 20.0   # hard limit per transfer (the client is killed)
FTPLIB_LINGER = 0.0       # --ftplib-linger: seconds ftplib waits after the transfer before QUIT
CLIENT_IO_TIMEOUT = 6     # the clients' own connect/read timeouts, seconds


def log(msg=""):
    print(msg, flush=True)


def skip(reason):
    log("SKIP: " + reason)
    sys.exit(SKIP)


def known_limitation(server, client, mode, direction, cfam="v4", kind="published", path=None):
    for key, text, _why in KNOWN_LIMITATIONS:
        if all(k == "*" or k == v or (i == 3 and k == path)
               for i, (k, v) in enumerate(zip(key, (kind, server, client, cfam, mode, direction)))):
            return text
    return None


def run(cmd, timeout=60, **kw):
    """subprocess.run with a bound; returns (rc, output). rc None on timeout."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **kw)
        return p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode(errors="replace")
    except OSError as e:
        return 127, str(e)


# ---- packages ------------------------------------------------------------------------------
# ./run installs what the matrix drives (install_tests: the clients, vsftpd, and proftpd and
# pure-ftpd unpacked into CACHE/root, since the three servers conflict on ftp-server). The matrix
# only looks for them and skips, naming the package, when one is missing.

CACHE = os.environ.get("FWX_FTP_MATRIX_CACHE", "/var/cache/fwx-ftp-matrix")
CLIENTS = {"curl": "curl", "lftp": "lftp", "wget": "wget"}


def find_server(kind):
    """The server's binary (and helper): installed, or unpacked into CACHE/root by ./run."""
    spec = {
        "vsftpd": ("vsftpd", ["usr/sbin/vsftpd"]),
        "proftpd": ("proftpd-core", ["usr/sbin/proftpd"]),
        "pure-ftpd": ("pure-ftpd and pure-ftpd-common", ["usr/sbin/pure-ftpd", "usr/bin/pure-pw"]),
    }[kind]
    pkg, rel = spec

    def look(prefix):
        paths = [os.path.join(prefix, r) for r in rel]
        return paths if all(os.access(p, os.X_OK) for p in paths) else None

    found = look("/")
    if found:
        return found, None
    found = look(os.path.join(CACHE, "root"))
    if found is None:
        return None, ("not installed: Debian package %s, installed or unpacked into %s/root "
                      "(./run test does it)" % (pkg, CACHE))
    rc, out = run(["ldd", found[0]], timeout=30)
    if "not found" in out:
        return None, "unpacked into %s, but libraries are missing: %s" % (CACHE, " ".join(
            l.split()[0] for l in out.splitlines() if "not found" in l))
    return found, None


def missing_clients():
    return ["%s (Debian package %s)" % (exe, pkg) for exe, pkg in CLIENTS.items() if not shutil.which(exe)]


# ---- processes and ports ---------------------------------------------------------------------

def free_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_block(ip, size, used):
    """A block of `size` ports on ip, all bindable right now, not overlapping `used`."""
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(40000, 49000 - size)
        if any(base < u + s and u < base + size for u, s in used):
            continue
        ok = True
        for p in range(base, base + size):
            s = socket.socket()
            try:
                s.bind((ip, p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            used.append((base, size))
            return base, base + size - 1
    raise RuntimeError("no free block of %d ports on %s" % (size, ip))


def ns_wrap(role, cmd):
    """cmd, run inside the namespace of `role` ("cli", "gw" or "srv") on the namespace beds."""
    if NETNS is None or role is None:
        return cmd
    return NETNS.wrap(role, cmd)


def hostport(ip, port):
    return ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)


def listening(ip, port, role=None):
    if shutil.which("ss"):
        _, out = run(ns_wrap(role, ["ss", "-Hltn", "( sport = :%d )" % port]), timeout=5)
        return hostport(ip, port) in out
    try:
        socket.create_connection((ip, port), 0.3).close()
        return True
    except OSError:
        return False


def wait_listening(ip, port, proc, timeout=8.0, role=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if listening(ip, port, role):
            return True
        time.sleep(0.05)
    return False


def stop(proc, name, timeout=5.0):
    """SIGTERM, bounded wait, SIGKILL. Returns the exit status (None if it was not running)."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log("matrix: %s did not stop within %.0f s of SIGTERM, killing it" % (name, timeout))
            proc.kill()
            proc.wait(5)
    return proc.returncode


def live_in_group(pgid):
    """The processes of group pgid that are not zombies (from /proc)."""
    live = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            live.append(int(d))
    return live


def tail(path, n=25):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-n:]
    except OSError:
        return []


# ---- servers ---------------------------------------------------------------------------------

class Server:
    """One FTP server process, in the foreground, configured in its own temporary directory.
    `root` is what the client sees as /, with payload.bin to download and up/ to upload into."""

    def __init__(self, kind, exe, tmp, pasv, promiscuous, ip=None, tag=""):
        self.kind, self.exe, self.promiscuous = kind, exe, promiscuous
        self.ip = ip or SERVER_IP
        self.v6 = ":" in self.ip
        self.name = kind + tag            # vsftpd, vsftpd-v6 ...
        self.dir = os.path.join(tmp, self.name)
        self.root = os.path.join(self.dir, "root")
        self.updir = os.path.join(self.root, "up")
        self.pasv = pasv
        # Namespace beds: the server has a namespace of its own, and the ftp port is 21.
        self.port = NETNS_FTP_PORT if NETNS else free_port(self.ip)
        self.proc = None
        self.out = os.path.join(self.dir, "server.out")
        self.logs = [self.out]
        # vsftpd and ProFTPD: anonymous, as the ftp user; pure-ftpd: a virtual user mapped to it.
        try:
            pw = pwd.getpwnam("ftp")
        except KeyError:
            pw = pwd.getpwnam("nobody")
        self.sys_user = pw.pw_name
        self.uid = pw.pw_uid
        try:
            self.group = grp.getgrnam("nogroup").gr_name
            self.gid = grp.getgrnam("nogroup").gr_gid
        except KeyError:
            self.group, self.gid = grp.getgrgid(pw.pw_gid).gr_name, pw.pw_gid
        self.user, self.password = ("anonymous", "fwx@example.org")

    def prepare(self, payload):
        os.makedirs(self.updir)
        os.makedirs(os.path.join(self.dir, "empty"))
        for d in (self.dir, self.root):
            os.chmod(d, 0o755)
        os.chmod(os.path.join(self.dir, "empty"), 0o555)
        os.chown(self.updir, self.uid, self.gid)
        os.chmod(self.updir, 0o777)
        shutil.copyfile(payload, os.path.join(self.root, "payload.bin"))
        os.chmod(os.path.join(self.root, "payload.bin"), 0o644)
        getattr(self, "prepare_" + self.kind.replace("-", "_"))()

    def prepare_vsftpd(self):
        self.conf = os.path.join(self.dir, "vsftpd.conf")
        self.protolog = os.path.join(self.dir, "vsftpd.log")
        self.logs.append(self.protolog)
        with open(self.conf, "w") as f:
            f.write(vsftpd_config_text("fwx ftp-matrix: anonymous download and upload on %s port %d"
                                       % (self.ip, self.port), self.ip, self.port, self.root, self.sys_user,
                                       self.dir + "/empty", self.pasv, self.protolog, self.promiscuous))
        self.cmd = [self.exe[0], self.conf]

    def prepare_proftpd(self):
        self.conf = os.path.join(self.dir, "proftpd.conf")
        self.syslog = os.path.join(self.dir, "proftpd.log")
        self.cmdlog = os.path.join(self.dir, "proftpd.cmdlog")
        self.logs += [self.syslog, self.cmdlog]
        with open(self.conf, "w") as f:
            f.write(f"""# fwx ftp-matrix: anonymous download and upload on {self.ip} port {self.port}
ServerType standalone
ServerName "fwx-matrix ProFTPD"
DefaultServer on
DefaultAddress {self.ip}
SocketBindTight on
Port {self.port}
UseIPv6 {"on" if self.v6 else "off"}
UseReverseDNS off
User {self.sys_user}
Group {self.group}
PidFile {self.dir}/proftpd.pid
ScoreboardFile {self.dir}/proftpd.scoreboard
DelayEngine off
WtmpLog off
AuthPAM off
AuthOrder mod_auth_unix.c
PassivePorts {self.pasv[0]} {self.pasv[1]}
AllowForeignAddress {"on" if self.promiscuous else "off"}
MaxInstances 50
TimeoutIdle 60
TimeoutNoTransfer 60
TimeoutStalled 15
SystemLog {self.syslog}
TransferLog {self.dir}/proftpd.xferlog
LogFormat fwxcmd "%h %u: %r -> %s"
ExtendedLog {self.cmdlog} ALL fwxcmd
<Anonymous {self.root}>
  User {self.sys_user}
  Group {self.group}
  UserAlias anonymous {self.sys_user}
  RequireValidShell off
  AnonRequirePassword off
  Umask 022
  <Directory up>
    <Limit STOR>
      AllowAll
    </Limit>
  </Directory>
</Anonymous>
""")
        self.cmd = [self.exe[0], "-n", "-c", self.conf]

    def prepare_pure_ftpd(self):
        # A virtual user (pure-pw, PureDB) whose home is self.root: pure-ftpd's anonymous
        # account always lives in the ftp user's system home directory, which is not ours.
        self.user, self.password = FTP_USER, FTP_PASS
        passwd = os.path.join(self.dir, "pureftpd.passwd")
        pdb = os.path.join(self.dir, "pureftpd.pdb")
        p = subprocess.run([self.exe[1], "useradd", FTP_USER, "-u", str(self.uid), "-g", str(self.gid),
                            "-d", self.root, "-f", passwd, "-F", pdb, "-m"],
                           input=(FTP_PASS + "\n" + FTP_PASS + "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("pure-pw useradd failed: " + p.stdout.decode(errors="replace"))
        with open(passwd) as f:
            fields = f.read().strip().split(":")
        fields[1] = FTP_PASS_SHA512
        with open(passwd, "w") as f:
            f.write(":".join(fields) + "\n")
        p = subprocess.run([self.exe[1], "mkdb", pdb, "-f", passwd], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("pure-pw mkdb failed: " + p.stdout.decode(errors="replace"))
        self.xferlog = os.path.join(self.dir, "pure-ftpd.xfer")
        self.logs.append(self.xferlog)
        self.cmd = [self.exe[0],
                    "-S", "%s,%d" % (self.ip, self.port),
                    "-p", "%d:%d" % self.pasv,
                    "-l", "puredb:" + pdb,
                    "-E",            # no anonymous logins (the virtual user instead)
                    "-H",            # no reverse DNS
                    "-A",            # chroot everyone
                    "-u", "1",       # allow the ftp user's uid (below 1000)
                    "-U", "133:022",
                    "-I", "60",
                    "-O", "clf:" + self.xferlog,
                    "-d"]            # verbose (goes to syslog if there is one)
        if self.promiscuous:
            self.cmd.append("-W")   # FXP for everyone: data connections to/from other hosts

    def start(self):
        with open(self.out, "ab") as out:
            # (ip netns exec execs the server: self.proc is the server itself.)
            self.proc = subprocess.Popen(ns_wrap("srv", self.cmd), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_listening(self.ip, self.port, self.proc, role="srv"):
            raise RuntimeError("%s did not listen on %s (exit %s): %s" % (
                self.name, hostport(self.ip, self.port), self.proc.poll(), " | ".join(tail(self.out, 10))))

    def stop(self):
        # The servers fork one process per session, in the process group of the master (it
        # was started in a session of its own): a session stuck waiting for a data connection
        # would outlive the master, so the whole group goes, TERM then KILL.
        if self.proc is None:
            return
        pgid = self.proc.pid
        stop(self.proc, self.name)
        self.proc = None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not live_in_group(pgid):
                return
            try:
                os.killpg(pgid, sig)
            except OSError:
                return
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and live_in_group(pgid):
                time.sleep(0.05)

    def log_sizes(self):
        return {p: (os.path.getsize(p) if os.path.exists(p) else 0) for p in self.logs}

    def log_since(self, sizes, n=30):
        lines = []
        for p in self.logs:
            try:
                with open(p, "rb") as f:
                    f.seek(sizes.get(p, 0))
                    got = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            lines += ["[%s] %s" % (os.path.basename(p), l) for l in got[-n:]]
        return lines


# ---- the gateway -----------------------------------------------------------------------------

class Gateway:
    def __init__(self, build, tmp, server, plugin, config_form=False):
        self.config_form = config_form
        self.guid = None
        self.exe = os.path.join(build, "examples", "fwx-gateway", "fwx-gateway")
        self.plugin = plugin
        self.server = server
        self.port = NETNS_FTP_PORT if NETNS else free_port(GW_IP)
        self.connect_host = GW_IP         # the published port the client dials
        self.sock = os.path.join(tmp, "gw-%s.sock" % server.kind)
        self.logpath = os.path.join(tmp, "gateway-%s.log" % server.kind)
        self.proc = None
        self.crashes = []

    def plugin_guid(self):
        """The FTP filter's GUID, from the log line of a quick-form gateway that loads it."""
        cmd = [self.exe, "--listen", "%s:%d" % (GW_IP, self.port), "--upstream", "%s:%d" % (SERVER_IP, self.server.port),
               "--plugin", "ftp", "--plugin-dir", os.path.dirname(self.plugin), "--no-control"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                line = p.stdout.readline().decode(errors="replace")
                m = re.search(r"filter (\{[0-9a-fA-F-]{36}\})", line)
                if m:
                    return m.group(1)
                if not line:
                    break
        finally:
            stop(p, "fwx-gateway (GUID probe)")
            p.stdout.close()
        raise RuntimeError("cannot learn the FTP filter's GUID from fwx-gateway's log")

    def write_config(self):
        """The quick form's policy as a file, plus gateway.local_addresses = [ GW_IP ]."""
        path = os.path.join(os.path.dirname(self.logpath), "gateway-%s.cfg" % self.server.kind)
        filters = ' filters = [ "%s" ];' % self.guid if self.guid else ""
        with open(path, "w") as f:
            f.write(f"""# fwx ftp-matrix: the quick form's policy, with the gateway's own address declared.
gateway = {{
  name = "ftp-matrix-{self.server.kind}";
  control_socket = "{self.sock}";
  plugin_dir = "{os.path.dirname(self.plugin) if self.plugin else "/nonexistent"}";
  plugins = [ {'"ftp"' if self.plugin else ""} ];
  local_addresses = [ "{GW_IP}" ];
  loopback_hosts = true;
  log_level = "debug";
}};
protocols = ( {{ name = "published"; guid = "{{6f0e5c2a-9b1d-4e7a-8c3f-00000000{self.port:04x}}}"; protocol = "tcp";
    port = {self.port}; direction = "inbound";{filters} }} );
rules = ( {{ name = "publish"; action = "allow"; from = [ "localhost", "external" ];
    to = [ "localhost", "external" ]; protocols = [ "published" ]; }} );
publishing = ( {{ name = "ftp"; listen = "{GW_IP}:{self.port}"; server = "{SERVER_IP}:{self.server.port}";
    protocol = "published"; full_proxy = true; }} );
""")
        return path

    def spawn(self, cmd):
        """Starts cmd as the gateway, its output appended to the log."""
        self.cmd = cmd
        with open(self.logpath, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self):
        if self.config_form:
            if self.plugin and self.guid is None:
                self.guid = self.plugin_guid()
            cmd = [self.exe, "--config", self.write_config()]
        else:
            cmd = [self.exe, "--listen", "%s:%d" % (GW_IP, self.port),
                   "--upstream", "%s:%d" % (SERVER_IP, self.server.port),
                   "--loopback-hosts", "--control", self.sock, "--name", "ftp-matrix-" + self.server.kind,
                   "--verbose"]
            if self.plugin:
                cmd += ["--plugin", "ftp", "--plugin-dir", os.path.dirname(self.plugin)]
        self.spawn(cmd)
        if not wait_listening(GW_IP, self.port, self.proc):
            raise RuntimeError("fwx-gateway did not listen on %s:%d (exit %s): %s" % (
                GW_IP, self.port, self.proc.poll(), " | ".join(tail(self.logpath, 10))))

    def start_in_namespace(self, backend):
        """The namespace beds: starts fwx-gateway --config in the gateway's namespace and waits
        (10 s) for its ready line with `backend`; checks that the FTP plugin loaded with the
        filter GUID the policy binds. Returns None when ready, else the lines logged since the
        start (the gateway exited or never became ready)."""
        off = self.log_size()
        self.spawn(ns_wrap("gw", [self.exe, "--config", self.write_config()]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = "\n".join(self.lines_since(off))
            if re.search(r"fwx-gateway: ready \(.*backend %s" % backend, text):
                m = re.search(r'plugin "ftp": loaded from .*filter (\{[0-9a-fA-F-]{36}\})', text)
                if not m or m.group(1).lower() != FTP_FILTER_GUID.lower():
                    raise RuntimeError("the FTP plugin's filter GUID is %s, the policy binds %s" % (
                        m.group(1) if m else "not logged", FTP_FILTER_GUID))
                return None
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        return "\n".join(self.lines_since(off))

    def not_ready(self, backend):
        return RuntimeError("fwx-gateway (backend %s) did not become ready (exit %s): %s" % (
            backend, self.proc.poll(), " | ".join(tail(self.logpath, 10))))

    def paths(self):
        """The ways through this gateway (class Path): on loopback, one."""
        return [Path("v4", CLIENT_IP, GW_IP, self.port, GW_IP, GW_IP, self.server)]

    def ensure_running(self):
        """Restarts the gateway if it died (a crash is a failure of the cell that was running)."""
        if self.proc.poll() is not None:
            self.crashes.append(self.proc.returncode)
            log("matrix: fwx-gateway exited with status %s; restarting it" % self.proc.returncode)
            self.start()
            return False
        return True

    def stop(self):
        rc = stop(self.proc, "fwx-gateway")
        self.proc = None
        return rc

    def log_size(self):
        return os.path.getsize(self.logpath) if os.path.exists(self.logpath) else 0

    def lines_since(self, off):
        with open(self.logpath, "rb") as f:
            f.seek(off)
            return f.read().decode(errors="replace").splitlines()

    def wait_quiet(self, off, timeout=5.0):
        """Waits until every session opened since `off` has ended (bounded); returns the lines."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines_since(off)
            opened = sum(1 for l in lines if re.search(r"session \S+: opened", l))
            ended = sum(1 for l in lines if re.search(r"session \S+: ended", l))
            if ended >= opened or time.monotonic() >= deadline or self.proc.poll() is not None:
                return lines
            time.sleep(0.05)


# ---- the namespace beds: the topology, the gateways, and what the ends and the kernel saw -----

class TopologyError(Exception):
    pass


def topology(forward):
    """The three network namespaces of this run on the shared bed (tests/netns/nstopo.py),
    fwxm-<pid>-{cli,gw,srv}, joined by two veth pairs made inside the client's and the server's
    namespace with their peer ends placed straight into the gateway's:

        fwxm-P-cli  10.99.1.2 fd99:1::2 eth0 -- cl0 10.99.1.1 fd99:1::1  fwxm-P-gw
        fwxm-P-gw   10.99.2.1 fd99:2::1 sv0 -- eth0 10.99.2.2 fd99:2::2  fwxm-P-srv

    Default routes (both families) via the gateway. `forward` sets net.ipv4.ip_forward and
    net.ipv6.conf.all.forwarding in the gateway namespace: off for the proxy backend (only what
    fwx relays gets across), on for the nft backend (a router)."""
    return nstopo.Bed(NETNS_PREFIX, "gw", {
        "cli": nstopo.Side("cl0", [NETNS_CLIENT_IP + "/24", NETNS_CLIENT_IP6 + "/64"],
                           [NETNS_GW_IN + "/24", NETNS_GW_IN6 + "/64"]),
        "srv": nstopo.Side("sv0", [NETNS_SERVER_IP + "/24", NETNS_SERVER_IP6 + "/64"],
                           [NETNS_GW_OUT + "/24", NETNS_GW_OUT6 + "/64"])}, forwarding=forward)


# The runner's own eyes in the client and server namespaces: every TCP SYN each one sends or
# receives (source . source port . destination . destination port, so every connection is one
# element), in nftables sets that grow by themselves.
OBSERVE_TABLE = """table inet fwxm_observe {
  set syn_in { type ipv4_addr . inet_service . ipv4_addr . inet_service; flags dynamic; size 65535; }
  set syn_out { type ipv4_addr . inet_service . ipv4_addr . inet_service; flags dynamic; size 65535; }
  set syn_in6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; flags dynamic; size 65535; }
  set syn_out6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; flags dynamic; size 65535; }
  chain input { type filter hook input priority 0; policy accept;
    meta nfproto ipv4 tcp flags & (syn | ack) == syn add @syn_in { ip saddr . tcp sport . ip daddr . tcp dport };
    meta nfproto ipv6 tcp flags & (syn | ack) == syn add @syn_in6 { ip6 saddr . tcp sport . ip6 daddr . tcp dport };
  }
  chain output { type filter hook output priority 0; policy accept;
    meta nfproto ipv4 tcp flags & (syn | ack) == syn add @syn_out { ip saddr . tcp sport . ip daddr . tcp dport };
    meta nfproto ipv6 tcp flags & (syn | ack) == syn add @syn_out6 { ip6 saddr . tcp sport . ip6 daddr . tcp dport };
  }
}
"""


def norm_ip(a):
    try:
        return ipaddress.ip_address(a).compressed
    except ValueError:
        return a


def parse_ct_line(line):
    """A `conntrack -E -o extended` line: (event, orig, reply) with orig/reply dicts of src, dst,
    sport, dport, bytes, packets (and orig's TCP state, e.g. TIME_WAIT); or None."""
    m = re.search(r"\[(NEW|UPDATE|DESTROY)\]\s+ipv[46]\s+\d+\s+tcp\s+\d+\s+(?:\d+\s+)?(?:([A-Z_]+)\s)?", line)
    if not m:
        return None
    orig, reply = {"state": m.group(2)}, {}
    cur = orig
    for k, v in re.findall(r"\b(src|dst|sport|dport|packets|bytes|mark)=(\S+)", line):
        if k == "src" and "src" in orig:
            cur = reply
        if k == "mark":
            orig["mark"] = v
            continue
        cur[k] = int(v) if k in ("sport", "dport", "packets", "bytes") else norm_ip(v)
    if not {"src", "dst", "sport", "dport"} <= set(orig) or not {"src", "dst"} <= set(reply):
        return None
    return m.group(1), orig, reply


def flow_text(orig, reply):
    b = ""
    if "bytes" in orig or "bytes" in reply:
        b = ", bytes %s / %s" % (orig.get("bytes", "?"), reply.get("bytes", "?"))
    return "%s:%d -> %s:%d, reply %s:%d -> %s:%d%s%s" % (
        orig["src"], orig["sport"], orig["dst"], orig["dport"], reply["src"], reply.get("sport", 0),
        reply["dst"], reply.get("dport", 0), b, (", mark %s" % orig["mark"]) if "mark" in orig else "")


class Observer:
    """What the kernel and the end hosts saw, independently of fwx: a `conntrack -E` listener in
    the gateway namespace (every flow's NEW and DESTROY with its byte counts), and OBSERVE_TABLE
    in the client and server namespaces (every SYN)."""

    def __init__(self, topo, tmp, conntrack=True):
        self.topo = topo
        self.ctlog = os.path.join(tmp, "conntrack-events.log")
        self.proc = None
        self.conntrack = conntrack      # the nft bed: the kernel's flows in the gateway namespace

    def start(self):
        for role in ("cli", "srv"):
            rc, out = run(ns_wrap(role, ["nft", "-f", "-"]), timeout=30, input=OBSERVE_TABLE.encode())
            if rc != 0:
                raise TopologyError("nft in %s: %s" % (self.topo.names[role], out.strip()))
        if not self.conntrack:
            return
        with open(self.ctlog, "ab") as out:
            self.proc = subprocess.Popen(ns_wrap("gw", ["conntrack", "-E", "-p", "tcp", "-o", "extended",
                                                        "-b", "8388608"]),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        time.sleep(0.2)   # conntrack has joined its groups (no flow happens before the first cell)
        if self.proc.poll() is not None:
            raise TopologyError("conntrack -E exited %s: %s" % (self.proc.returncode, " | ".join(tail(self.ctlog, 5))))

    def stop(self):
        stop(self.proc, "conntrack -E")
        self.proc = None

    def ct_offset(self):
        return os.path.getsize(self.ctlog) if os.path.exists(self.ctlog) else 0

    def ct_events(self, off):
        try:
            with open(self.ctlog, "rb") as f:
                f.seek(off)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        return [e for e in (parse_ct_line(l) for l in lines) if e]

    def flush_syns(self):
        for role in ("cli", "srv"):
            run(ns_wrap(role, ["nft", "; ".join("flush set inet fwxm_observe " + n
                                                  for n in ("syn_in", "syn_out", "syn_in6", "syn_out6"))]),
                timeout=10)

    def syns(self, role):
        """{"in": [(src, dst, dport, sport)], "out": [...]}: the SYNs seen in the namespace of
        role since the last flush, both families, one per connection."""
        rc, out = run(ns_wrap(role, ["nft", "-j", "list", "table", "inet", "fwxm_observe"]), timeout=10)
        got = {"in": [], "out": []}
        if rc != 0:
            return got
        try:
            doc = json.loads(out)
        except ValueError:
            return got
        for item in doc.get("nftables", []):
            st = item.get("set")
            if not st or st.get("name") not in ("syn_in", "syn_out", "syn_in6", "syn_out6"):
                continue
            for e in st.get("elem", []):
                c = e.get("concat") if isinstance(e, dict) else None
                if c is None and isinstance(e, dict) and "elem" in e:
                    c = e["elem"].get("val", {}).get("concat")
                if c and len(c) == 4:
                    got["in" if st["name"].startswith("syn_in") else "out"].append(
                        (norm_ip(c[0]), norm_ip(c[2]), int(c[3]), int(c[1])))
        return got


def syn_text(ts):
    return ", ".join("%s->%s" % (t[0], hostport(t[1], t[2])) for t in sorted(ts)) or "none"


def data_flows(events):
    """The FTP data flows among conntrack events: [(orig, reply, destroy_orig, destroy_reply)],
    destroy_* None while the flow lives. (Port 21 on either side is a control connection.)"""
    flows = {}
    order = []
    for ev, o, r in events:
        if 21 in (o["sport"], o["dport"]):
            continue
        key = (o["src"], o["sport"], o["dst"], o["dport"])
        if ev == "NEW" and key not in flows:
            flows[key] = [o, r, None, None]
            order.append(key)
        elif ev == "DESTROY":
            if key not in flows:
                flows[key] = [o, r, None, None]
                order.append(key)
            flows[key][2], flows[key][3] = o, r
    return [tuple(flows[k]) for k in order]


class NetnsGateway(Gateway):
    """fwx-gateway --config FILE in the gateway namespace: backend "nft", the FTP plugin, the
    nat policy of tests/netns/check_nft_gateway.c (policy_ftp): internal 10.99.1.0/24, NAT to
    the external network, protocol ftp tcp/21 outbound with the FTP filter, an allow rule."""

    def __init__(self, build, tmp, servers, plugin):
        super().__init__(build, tmp, servers["v4"], plugin, config_form=True)
        self.servers = servers
        self.port = NETNS_FTP_PORT
        self.connect_host = SERVER_IP     # transparent: the client dials the server itself
        self.name = "fwxm-%d-%s" % (os.getpid(), servers["v4"].kind)
        self.skip_reason = None

    def write_config(self):
        path = os.path.join(os.path.dirname(self.logpath), "gateway-%s.cfg" % self.server.kind)
        with open(path, "w") as f:
            f.write(f"""# fwx ftp-matrix --nft: a transparent gateway in kernel mode (backend nft).
gateway = {{
  name = "{self.name}";
  backend = "nft";
  control_socket = "{self.sock}";
  plugin_dir = "{os.path.dirname(self.plugin)}";
  plugins = [ "ftp" ];
  local_addresses = [ "{NETNS_GW_IN}", "{NETNS_GW_OUT}", "{NETNS_GW_IN6}", "{NETNS_GW_OUT6}" ];
  log_level = "debug";
  on_stop = "open";   # each server kind has its own gateway name: a closed table would block the next
}};
networks = {{ internal = {{ ranges = [ "10.99.1.0/24", "fd99:1::/64" ]; }}; }};
relationships = ( {{ from = "internal"; to = "external"; type = "nat"; }} );
protocols = ( {{ name = "ftp"; guid = "{{6a0e7c1e-0f7a-4b3e-9c55-000000000021}}"; protocol = "tcp";
    port = {NETNS_FTP_PORT}; direction = "outbound"; filters = [ "{FTP_FILTER_GUID}" ]; }} );
rules = ( {{ name = "ftp out"; action = "allow"; from = [ "internal" ]; to = [ "external" ];
    protocols = [ "ftp" ]; }} );
""")
        return path

    def start(self):
        text = self.start_in_namespace("nft")
        if text is None:
            return
        m = re.search(r"(kernel lacks: [^\n]*|no right to change the network[^\n]*)", text)
        if m and self.proc.poll() is not None:
            self.skip_reason = "fwx's nft backend cannot run here: " + m.group(1)
        raise self.not_ready("nft")

    def paths(self):
        # Transparent: the client dials the server itself; a router does not translate families.
        s4, s6 = self.servers["v4"], self.servers["v6"]
        return [Path("v4", NETNS_CLIENT_IP, NETNS_SERVER_IP, NETNS_FTP_PORT, NETNS_GW_IN, NETNS_GW_OUT, s4),
                Path("v6", NETNS_CLIENT_IP6, NETNS_SERVER_IP6, NETNS_FTP_PORT, NETNS_GW_IN6, NETNS_GW_OUT6, s6)]

    def wait_quiet(self, off, timeout=6.0, observer=None, ct_off=0):
        """Waits (bounded) until every session opened since `off` has ended and the kernel has
        destroyed every data flow that began since `ct_off`; returns the gateway's lines.

        A finished flow's entry would live on for TIME_WAIT (1 s in this bed; CLOSE, after a
        reset, 10 s) and go, with its DESTROY to fwx and to the observer, when something next
        walks past it: fwx's own sweep every 2-3 s (lib/backends/nft/README.md, "The sweep";
        tested by `ct`). Each cell would wait that long, so once conntrack has seen the data
        flow end (TIME_WAIT or CLOSE, no packet of it left to come) the test deletes the entry:
        its DESTROY carries the final counts, and fwx hears it as any other (the broadcast)."""
        deadline = time.monotonic() + timeout
        deleted = set()
        while True:
            lines = self.lines_since(off)
            opened = sum(1 for l in lines if re.search(r"session \S+: opened", l))
            ended = sum(1 for l in lines if re.search(r"session \S+: ended", l))
            events = observer.ct_events(ct_off) if observer else []
            live = [f for f in data_flows(events) if f[2] is None]
            if (ended >= opened and not live) or time.monotonic() >= deadline or self.proc.poll() is not None:
                time.sleep(0.1)   # the closed line of the last DESTROY
                return self.lines_since(off)
            state = {}
            for ev, o, _ in events:
                state[(o["src"], o["sport"], o["dst"], o["dport"])] = o.get("state")
            for o, _, _, _ in live:
                key = (o["src"], o["sport"], o["dst"], o["dport"])
                if key not in deleted and state.get(key) in ("TIME_WAIT", "CLOSE"):
                    deleted.add(key)
                    run(ns_wrap("gw", ["conntrack", "-D", "-p", "tcp", "-s", o["src"], "-d", o["dst"],
                                       "--sport", str(o["sport"]), "--dport", str(o["dport"])]), timeout=10)
            time.sleep(0.05)


class Path:
    """One way from a client through the gateway to one server instance: `name` is one of PATHS
    (the client's family, then the server's); the client binds client_ip and dials
    connect_host:connect_port; gw_in/gw_out are the gateway's addresses the client and the
    server see."""

    def __init__(self, name, client_ip, connect_host, connect_port, gw_in, gw_out, server):
        self.name, self.client_ip = name, client_ip
        self.connect_host, self.connect_port = connect_host, connect_port
        self.gw_in, self.gw_out, self.server = gw_in, gw_out, server
        self.cfam = "v6" if ":" in client_ip else "v4"
        self.tag = name.replace(">", "-to-")


class ProxyGateway(Gateway):
    """fwx-gateway --config FILE (backend proxy, the FTP plugin) in the gateway namespace of the
    dual-homed topology, with forwarding off. Published kind: four publishing rules on the
    client-side addresses, 21 to the server of the same family and 2121 to the other family's
    server (full_proxy: the server sees the gateway's server-side address). SOCKS kind: a SOCKS5
    listener on 10.99.1.1:1080 and an outbound ftp protocol; the client names the server."""

    def __init__(self, build, tmp, servers, plugin, kind):
        super().__init__(build, tmp, servers["v4"], plugin, config_form=True)
        self.servers, self.kind = servers, kind
        self.port = NETNS_FTP_PORT
        self.name = "fwxm-%d-%s" % (os.getpid(), servers["v4"].kind)

    def write_config(self):
        s4, s6 = self.servers["v4"], self.servers["v6"]
        path = os.path.join(os.path.dirname(self.logpath), "gateway-%s.cfg" % s4.kind)
        socks = '\n  socks = "%s";' % hostport(NETNS_GW_IN, SOCKS_PORT) if self.kind == "socks" else ""
        publishing = ""
        if self.kind == "published":
            publishing = f"""publishing = (
  {{ name = "ftp v4"; listen = "{hostport(NETNS_GW_IN, NETNS_FTP_PORT)}"; server = "{hostport(s4.ip, s4.port)}";
    protocol = "ftp published"; full_proxy = true; }},
  {{ name = "ftp v6"; listen = "{hostport(NETNS_GW_IN6, NETNS_FTP_PORT)}"; server = "{hostport(s6.ip, s6.port)}";
    protocol = "ftp published"; full_proxy = true; }},
  {{ name = "ftp v6 to v4"; listen = "{hostport(NETNS_GW_IN6, CROSS_PORT)}"; server = "{hostport(s4.ip, s4.port)}";
    protocol = "ftp published cross"; full_proxy = true; }},
  {{ name = "ftp v4 to v6"; listen = "{hostport(NETNS_GW_IN, CROSS_PORT)}"; server = "{hostport(s6.ip, s6.port)}";
    protocol = "ftp published cross"; full_proxy = true; }},
);
"""
        with open(path, "w") as f:
            f.write(f"""# fwx ftp-matrix: a dual-homed gateway in user mode (backend proxy, forwarding off), {self.kind}.
gateway = {{
  name = "{self.name}";
  backend = "proxy";
  control_socket = "{self.sock}";
  plugin_dir = "{os.path.dirname(self.plugin)}";
  plugins = [ "ftp" ];
  local_addresses = [ "{NETNS_GW_IN}", "{NETNS_GW_OUT}", "{NETNS_GW_IN6}", "{NETNS_GW_OUT6}" ];
  log_level = "debug";{socks}
}};
networks = {{ dmz = {{ ranges = [ "10.99.2.0/24", "fd99:2::/64" ]; }}; }};
relationships = ( {{ from = "external"; to = "dmz"; type = "nat"; }},
                  {{ from = "dmz"; to = "external"; type = "route"; }} );
protocols = (
  {{ name = "ftp published"; guid = "{{6a0e7c1e-0f7a-4b3e-9c55-000000000121}}"; protocol = "tcp";
    port = {NETNS_FTP_PORT}; direction = "inbound"; filters = [ "{FTP_FILTER_GUID}" ]; }},
  {{ name = "ftp published cross"; guid = "{{6a0e7c1e-0f7a-4b3e-9c55-000000002121}}"; protocol = "tcp";
    port = {CROSS_PORT}; direction = "inbound"; filters = [ "{FTP_FILTER_GUID}" ]; }},
  {{ name = "ftp"; guid = "{{6a0e7c1e-0f7a-4b3e-9c55-000000000021}}"; protocol = "tcp";
    port = {NETNS_FTP_PORT}; direction = "outbound"; filters = [ "{FTP_FILTER_GUID}" ]; }},
);
rules = ( {{ name = "ftp"; action = "allow"; from = [ "external", "dmz", "localhost" ];
    to = [ "external", "dmz", "localhost" ]; protocols = [ "ftp published", "ftp published cross", "ftp" ]; }} );
{publishing}""")
        return path

    def start(self):
        if self.start_in_namespace("proxy") is not None:
            raise self.not_ready("proxy")

    def paths(self):
        s4, s6 = self.servers["v4"], self.servers["v6"]
        if self.kind == "socks":
            # The client dials the SOCKS listener and names the server (of either family).
            return [Path("v4", NETNS_CLIENT_IP, s4.ip, s4.port, NETNS_GW_IN, NETNS_GW_OUT, s4),
                    Path("v4>v6", NETNS_CLIENT_IP, s6.ip, s6.port, NETNS_GW_IN, NETNS_GW_OUT6, s6)]
        return [Path("v4", NETNS_CLIENT_IP, NETNS_GW_IN, NETNS_FTP_PORT, NETNS_GW_IN, NETNS_GW_OUT, s4),
                Path("v6", NETNS_CLIENT_IP6, NETNS_GW_IN6, NETNS_FTP_PORT, NETNS_GW_IN6, NETNS_GW_OUT6, s6),
                Path("v6>v4", NETNS_CLIENT_IP6, NETNS_GW_IN6, CROSS_PORT, NETNS_GW_IN6, NETNS_GW_OUT, s4),
                Path("v4>v6", NETNS_CLIENT_IP, NETNS_GW_IN, CROSS_PORT, NETNS_GW_IN, NETNS_GW_OUT6, s6)]


def data_view(who, opens_in_passive, passive, opened, accepted, gw):
    """What one end's SYNs (data connections only: (src, dst, dport, sport) tuples it opened and
    accepted) say against the column's mode, as reasons. The end that opens the data connection
    (the client in passive mode, the server in active mode) must have opened one, to the
    gateway's address on its side `gw`, and accepted none; the other end must have accepted one,
    from `gw`, and opened none."""
    mode = "passive" if passive else "active"
    opener = passive == opens_in_passive
    # The data connection this end must have, and the far address in its SYNs (an opened one's
    # destination, an accepted one's source); the other list must be empty.
    must, must_not = (opened, accepted) if opener else (accepted, opened)
    far, verb, prep = (1, "opened", "to") if opener else (0, "accepted", "from")
    reasons = []
    if not must:
        reasons.append("%s %s no data connection (%s mode did not run)" % (who, verb, mode))
    elif any(t[far] != gw for t in must):
        reasons.append("%s %s a data connection %s %s, not the gateway (%s)" % (
            who, verb, prep, ",".join(sorted({t[far] for t in must if t[far] != gw})), gw))
    if must_not:
        reasons.append("%s %s another connection in %s mode (%s %s)" % (
            who, "accepted" if opener else "opened", mode, "from" if opener else "to",
            ",".join(sorted({t[0] if opener else hostport(t[1], t[2]) for t in must_not}))))
    return reasons


def proxy_through(cell, path, socks, glines, syns_srv, syns_cli, fsize):
    """The proxy bed's meaning of "the data went through the gateway, in the mode of the column",
    as (reasons, evidence). Forwarding is off in the gateway, so nothing but what fwx relays can
    cross; this checks that fwx relayed the file and that each end saw the mode's data connection:

    1. fwx relayed it: the gateway logged a connection that carried the whole file;
    2. the client's view: passive (PASV, EPSV), the client opened a data connection to the
       gateway's address on its side (path.gw_in; with SOCKS, to the SOCKS listener) and accepted
       none; active (PORT, EPRT), the client opened only its control connection and accepted a
       data connection from path.gw_in;
    3. the server's view: passive, it accepted a data connection from the gateway's address on
       its side (path.gw_out) and opened none; active, it connected to path.gw_out and accepted
       only the control connection.
    A client or server that silently ran the other mode fails 2 or 3 whatever its log says."""
    passive = cell.mode in ("PASV", "EPSV")
    reasons, ev = [], []
    ev.append("-- SYNs seen by the client (%s): in %s; out %s" % (
        NETNS.names["cli"], syn_text(syns_cli["in"]), syn_text(syns_cli["out"])))
    ev.append("-- SYNs seen by the server (%s): in %s; out %s" % (
        NETNS.names["srv"], syn_text(syns_srv["in"]), syn_text(syns_srv["out"])))
    if relayed_max(glines) < fsize:
        reasons.append("fwx relayed no connection that carried the file")
    # The client: its control connection is one SYN out (to the published port or the SOCKS
    # listener); every other SYN is a data connection.
    ctl_port = SOCKS_PORT if socks else path.connect_port
    ctl = [t for t in syns_cli["out"] if t[1] == path.gw_in and t[2] == ctl_port]
    c_out = sorted(syns_cli["out"], key=lambda t: t[3])
    if ctl:
        c_out.remove(min(ctl, key=lambda t: t[3]))   # the first connection is the control one
    reasons += data_view("the client", True, passive, c_out, syns_cli["in"], path.gw_in)
    s_in = [t for t in syns_srv["in"] if t[2] != path.server.port]
    reasons += data_view("the server", False, passive, syns_srv["out"], s_in, path.gw_out)
    return reasons, ev


def netns_up(nft):
    """The namespace beds: deletes stale namespaces of dead runs, makes this run's (forwarding on
    in the gateway for the nft backend, off for the proxy backend); for the nft backend checks
    that nftables and conntrack work in the gateway's namespace; skips (77) with the reason when
    any of it cannot be done.
    The namespaces are deleted at exit whatever happens (atexit, and SIGTERM/SIGHUP/SIGINT
    become KeyboardInterrupt so that every finally: runs)."""
    global NETNS, CLIENT_IP, SERVER_IP, GW_IP
    topo = topology(forward=nft)
    NETNS = topo
    CLIENT_IP, SERVER_IP, GW_IP = NETNS_CLIENT_IP, NETNS_SERVER_IP, NETNS_GW_IN
    atexit.register(topo.down)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    topo.up_or_skip()
    if not nft:
        return topo
    # nf_tables with a NAT chain and a ct expression (this loads nf_conntrack), as fwx needs.
    probe = ("table inet fwxm_probe { chain probe_forward { type filter hook forward priority 0; policy accept; "
             "ct state established accept; }\n chain probe_nat { type nat hook postrouting priority 100; "
             "policy accept; }\n }\ndelete table inet fwxm_probe\n")
    rc, out = run(ns_wrap("gw", ["nft", "-f", "-"]), timeout=30, input=probe.encode())
    if rc != 0:
        topo.down()
        skip("nftables does not work in the gateway namespace: %s" % out.strip()[:300])
    # After nf_conntrack is loaded (the probe loads it), per namespace: byte counts in conntrack,
    # and a finished flow expires after 1 s instead of 120 s (conntrack's garbage collector
    # destroys it, and fwx hears of it, some time after that, usually within a few seconds).
    try:
        topo.sysctl("gw", "net.netfilter.nf_conntrack_acct", 1)
        topo.sysctl("gw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait", 1)
    except nstopo.Failure as e:
        topo.down()
        skip("conntrack is not available in the gateway namespace: %s" % e)
    return topo


def fwx_closed(lines):
    """{connection id: (bytes from the client, bytes from the peer)} from the gateway's lines."""
    out = {}
    for l in lines:
        m = re.search(r"connection (\d+): closed \((\d+) bytes from the client, (\d+) from the peer\)", l)
        if m:
            out[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return out


def netns_through(cell, path, glines, ct_events, syns_srv, syns_cli, fsize):
    """The nft bed's meaning of "the data went through the gateway", as (reasons, evidence).

    1. the kernel carried it: conntrack in the gateway namespace reported the cell's data flow,
       forwarded (not redirected into fwx's user-mode path) and NATed as the mode requires, and
       its DESTROY counted at least the file's size in the file's direction;
    2. fwx accounted for it as a kernel-mode connection: the gateway logged a connection
       `closed (N bytes from the client, M from the peer)` whose count in the file's direction
       (M for a download, N for an upload) is the kernel flow's own conntrack count (fwx takes
       a kernel-mode connection's bytes from conntrack; its user-mode relay counts payload only);
    3. the server's view (data_view): passive, it accepted its data connection from the gateway
       (10.99.2.1) and opened none; active, it connected to the gateway (10.99.2.1), never to
       the client, and accepted none."""
    passive = cell.mode in ("PASV", "EPSV")
    down = cell.direction == "down"
    server, client, srv, gw_out = path.server, path.client_ip, path.server.ip, path.gw_out
    reasons, ev = [], []
    flows = data_flows(ct_events)
    ev.append("-- the kernel's data flows in the gateway namespace (conntrack -E; bytes original / reply):")
    for o, r, do, dr in flows:
        ev.append("   %s %s" % ("DESTROY" if do else "NEW (no DESTROY)", flow_text(do or o, dr or r)))
    if not flows:
        ev.append("   (none)")
    ev.append("-- SYNs seen by the server (%s): in %s; out %s" % (
        NETNS.names["srv"], syn_text(syns_srv["in"]), syn_text(syns_srv["out"])))
    ev.append("-- SYNs seen by the client (%s): in %s; out %s" % (
        NETNS.names["cli"], syn_text(syns_cli["in"]), syn_text(syns_cli["out"])))

    # 1. The kernel flow. Passive: client -> server:p, the reply from the server itself (no
    # REDIRECT) to the gateway's external address (masquerade). Active: server -> gateway:b,
    # the reply from the client (DNAT of the bound port) to the server (its address kept).
    def shape_ok(o, r):
        if passive:
            return (o["src"] == client and o["dst"] == srv and r["src"] == srv and r["dst"] == gw_out)
        return o["src"] == srv and o["dst"] == gw_out and r["src"] == client and r["dst"] == srv

    # The file's direction in conntrack's terms: the sender opened the flow (orig) or answered it.
    sender_is_orig = (passive and not down) or (not passive and down)
    kflow = None
    for o, r, do, dr in flows:
        if do is None:
            continue
        n = (do if sender_is_orig else dr).get("bytes")
        if shape_ok(o, r) and n is not None and n >= fsize:
            kflow = (do, dr, n)
    if kflow is None:
        if not flows:
            reasons.append("the kernel carried no data flow through the gateway (conntrack saw none)")
        elif all(f[2] is None for f in flows):
            reasons.append("the kernel's data flow was never destroyed (no DESTROY, no byte count)")
        elif not any(shape_ok(f[0], f[1]) for f in flows):
            reasons.append("no data flow of the expected shape (%s) in conntrack" % (
                "client->server, masqueraded to %s" % gw_out if passive else
                "server->%s, DNAT to the client" % gw_out))
        else:
            reasons.append("the kernel's data flow carried less than the file (conntrack byte counts)")

    # 2. fwx's own account.
    closed = fwx_closed(glines)
    idx = 1 if down else 0
    big = {cid: nm for cid, nm in closed.items() if max(nm) >= fsize}
    if kflow is not None:
        same = [cid for cid, nm in closed.items() if nm[idx] == kflow[2]]
        if not same:
            swapped = [cid for cid, nm in closed.items() if nm[1 - idx] == kflow[2]]
            data_ids = [cid for cid in closed if not any(re.search(r"connection %d: .*\((filtered|kernel-carried|relayed, no data filter)\)" % cid, l)
                                                         for l in glines)]
            if swapped:
                reasons.append("fwx logged the kernel-mode data connection's bytes in the wrong direction "
                               "(the file's bytes as from the %s)" % ("client" if down else "peer"))
            elif big:
                reasons.append("fwx's count of the data connection differs from the kernel's")
            else:
                reasons.append("fwx logged the kernel-mode data connection closed with %s "
                               "(conntrack counted the file)" % (
                                   "0 bytes" if data_ids and all(closed[c] == (0, 0) for c in data_ids)
                                   else "less than the file"))
            ev.append("-- fwx's count for the kernel flow that carried the file: conntrack %d bytes; fwx: %s" % (
                kflow[2], "; ".join("connection %d: %d from the client, %d from the peer" % (c, a, b)
                                    for c, (a, b) in sorted(closed.items())) or "no closed line"))
    elif big:
        reasons.append("fwx relayed the file itself (user mode), not the kernel")

    # 3. The server's view.
    reasons += data_view("the server", False, passive, [t for t in syns_srv["out"] if t[2] != server.port],
                         [t for t in syns_srv["in"] if t[2] != server.port], gw_out)
    return reasons, ev


def relayed_max(lines):
    """The largest byte count of any one connection the gateway closed in these lines."""
    best = 0
    for l in lines:
        m = re.search(r"closed \((\d+) bytes from the client, (\d+) from the peer\)", l)
        if m:
            best = max(best, int(m.group(1)), int(m.group(2)))
    return best


# ---- clients ---------------------------------------------------------------------------------

def client_command(client, mode, direction, path, user, password, local, remote, dialogue, socks=False):
    """The argv for one transfer, and how to read the control dialogue from its output. The
    client binds path.client_ip and connects to path.connect_host:connect_port (the gateway's
    published port; nft: the server itself; SOCKS: the server, through the gateway's SOCKS5
    listener)."""
    host, port, client_ip = path.connect_host, path.connect_port, path.client_ip
    url = "ftp://%s/%s" % (hostport(host, port), remote)
    passive = mode in ("PASV", "EPSV")
    t = str(CLIENT_IO_TIMEOUT)
    if client == "curl":
        cmd = ["curl", "-v", "-sS", "--max-time", str(int(TRANSFER_TIMEOUT) - 2), "--connect-timeout", t,
               "--interface", client_ip, "--user", "%s:%s" % (user, password)]
        if socks:
            # socks5:// (not socks5h): the client names the server by address.
            cmd += ["--proxy", "socks5://" + hostport(path.gw_in, SOCKS_PORT)]
        if passive:
            # --no-ftp-skip-pasv-ip: use the address in 227 as sent (curl's default since 7.74
            # would ignore it and reuse the control connection's, hiding a missing rewrite).
            cmd += ["--ftp-pasv", "--no-ftp-skip-pasv-ip"]
            if mode == "PASV":
                cmd.append("--disable-epsv")
        else:
            cmd += ["--ftp-port", ("[%s]" if ":" in client_ip else "%s") % client_ip]
            if mode == "PORT":
                cmd.append("--disable-eprt")
        cmd += (["-o", local, url] if direction == "down" else ["-T", local, url])
        return cmd
    if client == "lftp":
        script = [
            "set cmd:fail-exit yes",
            "set net:socket-bind-ipv%s %s" % ("6" if ":" in client_ip else "4", client_ip),
            "set net:timeout " + t,
            "set net:max-retries 1",
            "set net:reconnect-interval-base 1",
            "set net:persist-retries 0",
            "set ftp:ssl-allow no",
            "set ftp:auto-passive-mode no",    # no silent switch to the other mode
            "set ftp:passive-mode " + ("on" if passive else "off"),
            "set ftp:prefer-epsv " + ("yes" if mode == "EPSV" else "no"),
            # Use the address in 227 as sent: lftp would otherwise replace an address that
            # differs from the control peer's, hiding a missing rewrite.
            "set ftp:fix-pasv-address no",
            "set xfer:clobber on",
            "set xfer:use-temp-file no",
            "debug -o %s 9" % dialogue,
            "open -u %s,%s ftp://%s" % (user, password, hostport(host, port)),
            ("get %s -o %s" % (remote, local)) if direction == "down" else ("put %s -o %s" % (local, remote)),
        ]
        return ["lftp", "-c", "; ".join(script)]
    if client == "wget":
        cmd = ["wget", "-d", "--progress=dot:giga", "--tries=1", "--timeout=" + t, "--bind-address=" + client_ip,
               "--no-proxy", "--user=" + user, "--password=" + password, "-O", local]
        if not passive:
            cmd.append("--no-passive-ftp")
        cmd.append(url)
        return cmd
    if client == "ftplib":
        return [sys.executable, os.path.abspath(__file__), "--ftplib-client", host, str(port), user,
                password, mode, direction, local, remote, client_ip, str(FTPLIB_LINGER)]
    raise ValueError(client)


def parse_dialogue(client, text):
    """Normalizes a client's verbose output into ['> CMD', '< REPLY', ...]."""
    out = []
    for raw in text.splitlines():
        l = raw.rstrip("\r")
        if client == "curl":
            m = re.match(r"^([<>]) (.*)$", l)
        elif client == "lftp":
            m = re.search(r"(--->|<---) (.*)$", l)
        elif client == "wget":
            # wget -d: "--> CMD" for commands, replies as bare "NNN text" lines.
            m = re.match(r"^(-->) (.*)$", l) or re.match(r"^()(\d{3}[ -].*)$", l)
        else:
            m = re.match(r"^([<>]) (.*)$", l)
        if m:
            d = ">" if m.group(1) in (">", "--->", "-->") else "<"
            out.append("%s %s" % (d, m.group(2).rstrip("\r")))
    return out


def check_dialogue(dialogue, mode):
    """None if the dialogue shows the mode's data command accepted and no other data command;
    otherwise the reason."""
    sent = []
    for i, l in enumerate(dialogue):
        if l.startswith("> "):
            verb = l[2:].split(" ", 1)[0].upper()
            if verb in DATA_VERBS:
                reply = next((r[2:] for r in dialogue[i + 1:] if r.startswith("< ") and re.match(r"\d{3} ", r[2:])), "")
                sent.append((verb, reply))
    if not sent:
        return "the client sent no data-connection command"
    wrong = [(v, r) for v, r in sent if v != mode]
    if wrong:
        v, r = wrong[0]
        first = sent[0]
        return "client sent %s (%s) instead of / besides %s; first was %s -> %s" % (
            v, r[:60] or "no reply", mode, first[0], first[1][:60] or "no reply")
    bad = [(v, r) for v, r in sent if not r.startswith(MODE_REPLY[mode])]
    if bad:
        return "%s answered %r" % (bad[0][0], bad[0][1][:80] or "nothing")
    return None


def ftplib_client(argv):
    """Runs one ftplib transfer (a subprocess of the runner, so it has a hard timeout too).
    Prints the control dialogue as '> CMD' / '< REPLY' lines on stdout."""
    host, port, user, password, mode, direction, local, remote = argv[:8]
    port = int(port)
    client_ip = argv[8] if len(argv) > 8 else CLIENT_IP
    linger = float(argv[9]) if len(argv) > 9 else 0.0

    class Client(ftplib.FTP):
        # Use the address in 227 as sent (ftplib's default since 3.10 would reuse the control
        # connection's address, hiding a missing rewrite).
        trust_server_pasv_ipv4_address = True

        def putcmd(self, line):
            shown = "PASS ****" if line.upper().startswith("PASS ") else line
            print("> " + shown, flush=True)
            super().putcmd(line)

        def getmultiline(self):
            # (getresp raises on 4xx/5xx before returning: log here, where every reply passes.)
            resp = super().getmultiline()
            print("< " + resp.replace("\n", "\n< "), flush=True)
            return resp

        def makepasv(self):
            # ftplib sends EPSV only on IPv6; its own parse229 handles the reply on IPv4 too.
            if mode == "EPSV":
                return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
            return super().makepasv()

        def makeport(self):
            # The listening socket on the client's own address (ftplib binds the wildcard);
            # PORT, or EPRT through ftplib's sendeprt (which it otherwise uses only on IPv6).
            host = self.sock.getsockname()[0]
            sock = socket.create_server((host, 0), family=self.sock.family, backlog=1)
            p = sock.getsockname()[1]
            if mode == "EPRT":
                self.sendeprt(host, p)
            else:
                self.sendport(host, p)
            if self.timeout is not None:
                sock.settimeout(self.timeout)
            return sock

    try:
        ftp = Client(timeout=CLIENT_IO_TIMEOUT, source_address=(client_ip, 0))
        ftp.connect(host, port)
        ftp.login(user, password)
        ftp.set_pasv(mode in ("PASV", "EPSV"))
        if direction == "down":
            with open(local, "wb") as f:
                ftp.retrbinary("RETR " + remote, f.write, blocksize=65536)
        else:
            with open(local, "rb") as f:
                ftp.storbinary("STOR " + remote, f, blocksize=65536)
        if linger > 0:
            time.sleep(linger)   # the control connection (and the session) stays open meanwhile
        ftp.quit()
    except Exception as e:  # noqa: BLE001 - any failure is the cell's result
        print("ftplib: %s: %s" % (type(e).__name__, e), flush=True)
        return 1
    return 0


def run_client(cmd, timeout, cwd, env=None):
    """Runs a client in its own process group with a hard timeout. Returns (rc, output)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         cwd=cwd, start_new_session=True, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        out, _ = p.communicate(timeout=5)
        return None, out.decode(errors="replace")


# ---- the matrix ------------------------------------------------------------------------------

class Cell:
    def __init__(self, server, client, mode, direction, path="v4"):
        self.server, self.client, self.mode, self.direction = server, client, mode, direction
        self.path = path
        self.status = "FAIL"   # ok | bypass | expected | known | FAIL
        self.reason = ""
        self.evidence = []
        self.seconds = 0.0

    def text(self):
        if self.status in ("ok", "bypass"):
            return self.status
        if self.status == "known":
            return "known: " + self.reason
        if self.status == "expected":
            return "expected: " + self.reason
        return "FAIL (%s)" % self.reason


def quote(cmd):
    return " ".join(a if re.match(r"^[\w@%+=:,./-]+$", a) else "'" + a.replace("'", "'\\''") + "'" for a in cmd)


def run_cell(cell, path, gw, work, payload, want, pass_through, fsize, observer=None, socks=False):
    server = path.server
    name = "%s-%s-%s-%s-%s" % (server.kind, path.tag, cell.client, cell.mode, cell.direction)
    cwd = os.path.join(work, name)
    os.makedirs(cwd)
    dialogue_file = os.path.join(cwd, "dialogue.txt")
    if cell.direction == "down":
        local, remote = os.path.join(cwd, "payload.bin"), "payload.bin"
        result = local
    else:
        local, remote = payload, "up/%s.bin" % name
        result = os.path.join(server.updir, name + ".bin")
    cmd = client_command(cell.client, cell.mode, cell.direction, path, server.user,
                         server.password, local, remote, dialogue_file, socks)
    env = None
    if observer is not None:
        # Namespaces: the client runs in its own; no proxy from the environment.
        cmd = ns_wrap("cli", cmd)
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        observer.flush_syns()
        ct_off = observer.ct_offset()
    gw.ensure_running()
    goff, soff = gw.log_size(), server.log_sizes()
    t0 = time.monotonic()
    rc, out = run_client(cmd, TRANSFER_TIMEOUT, cwd, env)
    cell.seconds = time.monotonic() - t0
    if observer is not None and not observer.conntrack:
        glines = gw.wait_quiet(goff)
        net_reasons, net_evidence = proxy_through(cell, path, socks, glines, observer.syns("srv"),
                                                  observer.syns("cli"), fsize)
    elif observer is not None:
        glines = gw.wait_quiet(goff, observer=observer, ct_off=ct_off)
        net_reasons, net_evidence = netns_through(cell, path, glines, observer.ct_events(ct_off),
                                                  observer.syns("srv"), observer.syns("cli"), fsize)
    else:
        glines = gw.wait_quiet(goff)
    crashed = not gw.ensure_running()
    text = out
    if cell.client == "lftp" and os.path.exists(dialogue_file):
        with open(dialogue_file, errors="replace") as f:
            text = f.read() + "\n" + out
    dialogue = parse_dialogue(cell.client, text)
    with open(os.path.join(cwd, "client.out"), "w") as f:
        f.write("$ " + quote(cmd) + "\n" + text)

    reasons = []
    if crashed:
        reasons.append("fwx-gateway died during the transfer (status %s)" % gw.crashes[-1])
    if rc is None:
        reasons.append("timed out after %.0f s" % TRANSFER_TIMEOUT)
    elif rc != 0:
        last = [l for l in out.splitlines() if l.strip() and not l.startswith(("*", ">", "<", "{", "}"))]
        reasons.append("%s exited %d%s" % (cell.client, rc, (": " + last[-1].strip()[:100]) if last else ""))
    dlg = check_dialogue(dialogue, cell.mode)
    if dlg:
        reasons.append(dlg)
    elif rc != 0:
        # The data command was accepted: say which reply failed the transfer.
        bad = [l[2:] for l in dialogue if re.match(r"< [45]\d\d ", l)]
        if bad:
            reasons.append("then %r" % bad[-1][:80])
    if not reasons or rc == 0:
        if not os.path.exists(result):
            reasons.append("no %s file" % ("downloaded" if cell.direction == "down" else "uploaded"))
        else:
            got = sha256(result)
            if got != want:
                reasons.append("SHA-256 differs (%d of %d bytes)" % (os.path.getsize(result), fsize))
    through = relayed_max(glines) >= fsize
    if observer is not None:
        through = not net_reasons
    if not reasons:
        if through:
            cell.status = "ok"
        elif pass_through:
            cell.status = "bypass"
        elif observer is not None:
            reasons += net_reasons
        else:
            reasons.append("the data bypassed the gateway (no relayed connection carried the file)")
    if reasons and pass_through and not crashed and pass_through_expected(cell.client, cell.mode):
        cell.status = "expected"
        cell.reason = "fails without the plugin (%s)" % reasons[0]
        reasons = []
    if reasons:
        cell.status = "FAIL"
        cell.reason = "; ".join(reasons)
        cell.evidence = (["$ " + quote(cmd), "-- control dialogue (client side, last lines):"]
                         + ["   " + l for l in dialogue[-16:]]
                         + ["-- client output (last lines):"]
                         + ["   " + l for l in [x for x in out.splitlines()
                                             if not re.match(r"^(<|>|--->|<---|-->) ", x)][-8:]]
                         + ["-- fwx-gateway log for this cell:"]
                         + ["   " + l for l in glines[-40:]]
                         + ["-- %s log for this cell:" % server.kind]
                         + ["   " + l for l in server.log_since(soff)]
                         + (net_evidence if observer is not None else []))
    # Keep the disk use bounded: copies are not needed once checked.
    for p in (result if cell.direction == "down" else None, result if cell.direction == "up" else None):
        if p and os.path.exists(p):
            os.unlink(p)


def cell_keys(sel, kind, pnames, quick):
    """The cells of one server kind in the order they run, as (client, path name, mode,
    direction). With --quick the servers after the first run with curl only (the other clients'
    cells are not run, not counted, and the table shows no row for them)."""
    for client in sel["clients"]:
        if quick and kind != sel["servers"][0] and client != "curl":
            continue
        for pname in pnames:
            for mode in sel["modes"]:
                for d in sel["dirs"]:
                    yield client, pname, mode, d


def print_table(cells, servers, clients, modes, dirs, paths):
    cols = [(m, d) for m in modes for d in dirs]
    head = ["server", "client", "path"] + ["%s %s" % (m, d) for m, d in cols]
    rows = []
    for s in servers:
        for c in clients:
            for p in paths:
                if not any(k[:3] == (s, c, p) for k in cells):
                    continue
                row = [s, c, p]
                for m, d in cols:
                    cell = cells.get((s, c, p, m, d))
                    row.append(cell.text() if cell else "-")
                rows.append(row)
    # Long reasons go below the table; the table shows a short form.
    notes = []

    def short(t):
        if t.startswith("FAIL"):
            if t not in notes:
                notes.append(t)
            return "FAIL[%d]" % (notes.index(t) + 1)
        if t.startswith("known: "):
            return "known"
        if t.startswith("expected: "):
            return "expected"
        return t

    srows = [r[:3] + [short(x) for x in r[3:]] for r in rows]
    widths = [max(len(str(r[i])) for r in [head] + srows) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"
    log(fmt(head))
    log("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in srows:
        log(fmt(r))
    knowns = sorted({c.reason for c in cells.values() if c.status == "known"})
    if knowns:
        log()
        log("known: " + "; ".join(knowns))
    if notes:
        log()
        for i, n in enumerate(notes, 1):
            log("[%d] %s" % (i, n))


def main():
    global BED, KIND, CLIENT_IP, SERVER_IP, GW_IP
    if len(sys.argv) > 1 and sys.argv[1] == "--ftplib-client":
        sys.exit(ftplib_client(sys.argv[2:]))
    ap = argparse.ArgumentParser(description="fwx FTP compatibility matrix (see README.md beside this file)")
    ap.add_argument("build", help="the meson build directory (holds examples/fwx-gateway and plugins/ftp)")
    ap.add_argument("--socks", action="store_true",
                    help="the dual-homed proxy bed with SOCKS5 sessions instead of publishing rules "
                         "(clients without SOCKS are known cells)")
    ap.add_argument("--nft", "--netns", dest="nft", action="store_true",
                    help="run through a transparent fwx-gateway (backend nft) in network namespaces: "
                         "client 10.99.1.2, gateway 10.99.1.1/10.99.2.1, server 10.99.2.2:21 (README.md)")
    ap.add_argument("--loopback", action="store_true",
                    help="the quick extra: everything on loopback (127.0.0.1-3), proxy backend, published")
    ap.add_argument("--paths", default=None,
                    help="dual-homed bed: client family > server family, from %s (default: all; "
                         "SOCKS: v4,v4>v6)" % ",".join(PATHS))
    ap.add_argument("--pass-through", action="store_true",
                    help="loopback only (implies --loopback): run without the FTP plugin (servers accept "
                         "foreign data addresses)")
    ap.add_argument("--plugin", help="the FTP plugin (default BUILD/plugins/ftp/ftp.so)")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--dirs", default=",".join(DIRS))
    ap.add_argument("--promiscuous", action="store_true",
                    help="loopback only: let the servers accept data connections from/to any address "
                         "(default only with --pass-through)")
    ap.add_argument("--config-form", action="store_true",
                    help="loopback only (implies --loopback): start fwx-gateway from a generated --config "
                         "file (the quick form's policy plus gateway.local_addresses = [ \"127.0.0.1\" ])")
    ap.add_argument("--ftplib-linger", type=float, default=0.0, metavar="S",
                    help="diagnostic: ftplib keeps the control connection S seconds after the transfer "
                         "before QUIT (with --nft, the kernel's DESTROY of the data flow then comes "
                         "while the session lives)")
    ap.add_argument("--size-mib", type=int, default=5)
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all the transfers; cells not run by then fail (default 540; "
                         "360 with --nft)")
    ap.add_argument("--quick", action="store_true",
                    help="a subset: the first server with every client, the other servers with curl only")
    ap.add_argument("--quick-unless-ci", action="store_true",
                    help="--quick, unless the environment has CI=true (what meson's tests pass)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, dialogues)")
    ap.add_argument("--quiet-evidence", action="store_true", help="do not print each failure's evidence")
    a = ap.parse_args()
    if a.pass_through or a.config_form or a.promiscuous:
        a.loopback = True
    if sum(map(bool, (a.nft, a.loopback, a.socks))) > 1:
        ap.error("choose one bed: the default (dual-homed, proxy, published), --socks, --nft or --loopback "
                 "(--pass-through, --config-form and --promiscuous are loopback options)")
    if a.quick_unless_ci and os.environ.get("CI", "").lower() != "true":
        a.quick = True
    BED = "nft" if a.nft else "loopback" if a.loopback else "proxy"
    KIND = "socks" if a.socks else "published"
    global FTPLIB_LINGER
    FTPLIB_LINGER = max(0.0, min(a.ftplib_linger, 10.0))
    if a.budget is None:
        a.budget = 360.0 if a.nft else 540.0

    sel = {}
    all_paths = {("proxy", "published"): PATHS, ("proxy", "socks"): ["v4", "v4>v6"],
                 ("nft", "published"): ["v4", "v6"]}.get((BED, KIND), ["v4"])
    if a.paths is None:
        a.paths = ",".join(all_paths)
    for k, allv in (("servers", SERVERS), ("clients", CLIENTS), ("modes", MODES), ("dirs", DIRS),
                    ("paths", all_paths)):
        v = [x.strip() for x in getattr(a, k).split(",") if x.strip()]
        bad = [x for x in v if x not in allv]
        if bad:
            ap.error("unknown %s: %s (choose from %s)" % (k, ",".join(bad), ",".join(allv)))
        sel[k] = v
    netns = BED in ("proxy", "nft")

    build = os.path.abspath(a.build)
    gw_exe = os.path.join(build, "examples", "fwx-gateway", "fwx-gateway")
    if not os.access(gw_exe, os.X_OK):
        skip("%s is not built" % gw_exe)
    plugin = None
    if not a.pass_through:
        plugin = os.path.abspath(a.plugin or os.path.join(build, "plugins", "ftp", "ftp.so"))
        if not os.path.exists(plugin):
            skip("the FTP plugin %s is not built yet (--pass-through runs without it)" % plugin)
        if os.path.basename(plugin) != "ftp.so":
            ap.error("--plugin must name a file called ftp.so (the gateway loads it as --plugin ftp)")
    if os.geteuid() != 0:
        skip("needs root: the FTP servers start as root and drop privileges%s" % (
            ", and network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN" if netns else ""))
    if not netns:
        need_loopback_hosts()
    if netns:
        for exe, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("conntrack", "conntrack"))[:3 if a.nft else 2]:
            if not shutil.which(exe):
                skip("the namespace beds need the %s command (Debian package %s; ./run test installs it)"
                     % (exe, pkg))

    missing = missing_clients()
    if missing:
        skip("the clients %s are not installed (./run test installs them)" % ", ".join(missing))
    exes = {}
    for kind in sel["servers"]:
        exe, why = find_server(kind)
        if exe is None:
            skip("%s: %s" % (kind, why))
        exes[kind] = exe
    versions = []
    for c, vc in (("curl", ["curl", "--version"]), ("lftp", ["lftp", "--version"]), ("wget", ["wget", "--version"])):
        if c in sel["clients"]:
            versions.append(run(vc, timeout=10)[1].splitlines()[0].strip())
    if "ftplib" in sel["clients"]:
        versions.append("Python %s ftplib" % sys.version.split()[0])
    for kind, exe in exes.items():
        versions.append("%s: %s" % (kind, exe[0]))
    topo = None
    if netns:
        topo = netns_up(nft=a.nft)
        CLIENT_IP, SERVER_IP, GW_IP = NETNS_CLIENT_IP, NETNS_SERVER_IP, NETNS_GW_IN

    promiscuous = a.promiscuous or a.pass_through
    tmp = tempfile.mkdtemp(prefix="fwx-ftp-matrix.")
    os.chmod(tmp, 0o755)
    fsize = a.size_mib * 1024 * 1024
    payload = os.path.join(tmp, "payload.bin")
    with open(payload, "wb") as f:
        f.write(os.urandom(fsize))
    os.chmod(payload, 0o644)
    want = sha256(payload)

    log("fwx FTP matrix: %s, %d MiB file, sha256 %s" % (
        "PASS-THROUGH (no FTP plugin)" if a.pass_through else "plugin " + plugin, a.size_mib, want[:16]))
    strict = ("promiscuous (accept foreign data addresses)" if promiscuous
              else "strict (their defaults: data peer must be the control peer)")
    if BED == "nft":
        log("  nft bed: client %s (%s) -> transparent gateway %s / %s (%s, backend nft, nat) -> server %s:%d (%s)"
            % (CLIENT_IP, topo.names["cli"], NETNS_GW_IN, NETNS_GW_OUT, topo.names["gw"], SERVER_IP,
               NETNS_FTP_PORT, topo.names["srv"]))
    elif BED == "proxy":
        log("  dual-homed bed, backend proxy, %s, forwarding off in the gateway:" % (
            "SOCKS5 on %s" % hostport(NETNS_GW_IN, SOCKS_PORT) if KIND == "socks" else "published"))
        log("    client %s %s (%s) -- %s %s gateway (%s) %s %s -- server %s %s (%s)" % (
            NETNS_CLIENT_IP, NETNS_CLIENT_IP6, topo.names["cli"], NETNS_GW_IN, NETNS_GW_IN6, topo.names["gw"],
            NETNS_GW_OUT, NETNS_GW_OUT6, NETNS_SERVER_IP, NETNS_SERVER_IP6, topo.names["srv"]))
    else:
        log("  loopback bed: gateway %s:P -> server %s:Q, client %s" % (GW_IP, SERVER_IP, CLIENT_IP))
    log("  servers %s; work dir %s" % (strict, tmp))
    if a.quick:
        log("  QUICK SUBSET: %s with every client, %s with curl only (the whole matrix: without "
            "--quick, or CI=true)" % (sel["servers"][0], ", ".join(sel["servers"][1:]) or "no other server"))
    for v in versions:
        log("  " + v)
    log()

    cells = {}
    failures = 0
    deadline = time.monotonic() + a.budget
    used_ports = []
    status = 0
    gw_statuses = []
    observer = None
    skipped = None
    try:
        if topo:
            observer = Observer(topo, tmp, conntrack=a.nft)
            try:
                observer.start()
            except TopologyError as e:
                skipped = "cannot observe the namespaces: %s" % e
                raise
        for si, kind in enumerate(sel["servers"]):
            servers = []
            gw = None
            try:
                if BED == "proxy":
                    # Two instances of the server, one per family: the v4 one is IPv4-only, the
                    # v6 one IPv6-only (the cross-family paths reach "the other family's" server).
                    base = 40000 + 200 * si
                    byfam = {"v4": Server(kind, exes[kind], tmp, (base, base + 49), False, NETNS_SERVER_IP),
                             "v6": Server(kind, exes[kind], tmp, (base + 100, base + 149), False,
                                          NETNS_SERVER_IP6, "-v6")}
                    servers = list(byfam.values())
                elif BED == "nft":
                    # The server's namespace is fresh: its passive ranges are simply free. One
                    # instance per family (a router does not translate between families).
                    base = 40000 + 100 * si
                    byfam = {"v4": Server(kind, exes[kind], tmp, (base, base + 49), False, NETNS_SERVER_IP),
                             "v6": Server(kind, exes[kind], tmp, (base + 50, base + 99), False,
                                          NETNS_SERVER_IP6, "-v6")}
                    servers = [byfam[f] for f in ("v4", "v6") if any(p.startswith(f) for p in sel["paths"])]
                else:
                    servers = [Server(kind, exes[kind], tmp, port_block(SERVER_IP, 50, used_ports), promiscuous)]
                for server in servers:
                    server.prepare(payload)
                    server.start()
                if BED == "proxy":
                    gw = ProxyGateway(build, tmp, byfam, plugin, KIND)
                elif BED == "nft":
                    gw = NetnsGateway(build, tmp, byfam, plugin)
                else:
                    gw = Gateway(build, tmp, servers[0], plugin, a.config_form)
                gw.start()
                paths = [p for p in gw.paths() if p.name in sel["paths"]]
                if BED == "proxy":
                    log("%s: servers %s (passive ports %d-%d) and %s (%d-%d) in %s; gateway in %s (proxy, %s)" % (
                        kind, hostport(byfam["v4"].ip, byfam["v4"].port), byfam["v4"].pasv[0], byfam["v4"].pasv[1],
                        hostport(byfam["v6"].ip, byfam["v6"].port), byfam["v6"].pasv[0], byfam["v6"].pasv[1],
                        topo.names["srv"], topo.names["gw"], KIND))
                elif BED == "nft":
                    for server in servers:
                        log("%s: server %s (passive ports %d-%d) in %s; gateway in %s (transparent, nft)" % (
                            kind, hostport(server.ip, server.port), server.pasv[0], server.pasv[1],
                            topo.names["srv"], topo.names["gw"]))
                else:
                    server = servers[0]
                    log("%s: server %s:%d (passive ports %d-%d), gateway %s:%d" % (
                        kind, SERVER_IP, server.port, server.pasv[0], server.pasv[1], GW_IP, gw.port))
                log("  $ " + quote(gw.cmd))
                bypath = {p.name: p for p in paths}
                for client, pname, mode, d in cell_keys(sel, kind, list(bypath), a.quick):
                    path = bypath[pname]
                    cell = Cell(kind, client, mode, d, pname)
                    cells[(kind, client, pname, mode, d)] = cell
                    k = known_limitation(kind, client, mode, d, path.cfam, KIND, pname)
                    if k:
                        cell.status, cell.reason = "known", k
                    elif time.monotonic() > deadline:
                        cell.reason = "not run: the matrix's time budget (%.0f s) was used up" % a.budget
                    else:
                        run_cell(cell, path, gw, tmp, payload, want, a.pass_through, fsize, observer,
                                 KIND == "socks")
                    log("  %-9s %-6s %-5s %-4s %-4s %-5.1fs %s" % (kind, client, pname, mode, d,
                                                                 cell.seconds, cell.text()))
                    if cell.status == "FAIL":
                        failures += 1
                        if cell.evidence and not a.quiet_evidence:
                            for l in cell.evidence:
                                log("      " + l)
            except RuntimeError as e:
                log("matrix: %s: %s" % (kind, e))
                if gw is not None and getattr(gw, "skip_reason", None):
                    skipped = gw.skip_reason
                    break
                for client, pname, mode, d in cell_keys(sel, kind, sel["paths"], a.quick):
                    c = cells.setdefault((kind, client, pname, mode, d), Cell(kind, client, mode, d, pname))
                    if c.status == "FAIL" and not c.reason:
                        c.reason = "not run: %s" % e
                        failures += 1
            finally:
                if gw is not None and gw.proc is not None:
                    rc = gw.stop()
                    gw_statuses.append((kind, rc, gw.crashes))
                    if rc != 0:
                        log("matrix: fwx-gateway (%s) exited with status %s on SIGTERM (expected 0)" % (kind, rc))
                        status = 1
                    if a.nft and not skipped:
                        # A clean exit with on_stop = "open" removes the gateway's table
                        # (lib/backends/nft/README.md; the default leaves a closed one).
                        _, out = run(ns_wrap("gw", ["nft", "list", "tables"]), timeout=10)
                        left = [l for l in out.splitlines() if "fwx_" in l]
                        if left:
                            log("matrix: fwx-gateway (%s) left its table after a clean exit: %s" % (
                                kind, "; ".join(left)))
                            status = 1
                for server in servers:
                    server.stop()
    except TopologyError:
        if not skipped:
            raise
    finally:
        if observer is not None:
            observer.stop()
        if topo is not None:
            topo.down()
        for c in cells.values():
            if c.status == "FAIL" and not c.reason:
                c.reason = "not finished: the run was interrupted"
        if not skipped:
            log()
            log("%s matrix (%s; rows server x client x path, columns mode x direction):" % (
                "PASS-THROUGH" if a.pass_through else
                "FTP plugin, transparent gateway (nft) in network namespaces," if BED == "nft" else
                "FTP plugin, dual-homed gateway (proxy, %s, forwarding off) in network namespaces," % KIND
                if BED == "proxy" else "FTP plugin, loopback,", time.strftime("%Y-%m-%d %H:%M:%S")))
            print_table(cells, sel["servers"], sel["clients"], sel["modes"], sel["dirs"], sel["paths"])
        if a.keep:
            log("\nkept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if skipped:
        skip(skipped)
    for kind, rc, crashes in gw_statuses:
        if crashes:
            log("fwx-gateway crashed %d time(s) with %s (statuses %s)" % (len(crashes), kind, crashes))
            status = 1
    counts = {}
    for c in cells.values():
        counts[c.status] = counts.get(c.status, 0) + 1
    log("\n" + ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items()))
        + (" (quick subset)" if a.quick else ""))
    if failures:
        status = 1
    sys.exit(status)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        log("matrix: interrupted (%s); everything it started is stopped and removed" % (e or "Ctrl-C"))
        sys.exit(130)
