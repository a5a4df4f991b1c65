#!/usr/bin/env python3
"""fwx FTP compatibility matrix: real FTP servers and clients through fwx-gateway.

    tests/ftp-matrix/matrix.py BUILD_DIR [options]

Servers vsftpd, ProFTPD and pure-ftpd; clients curl, lftp, wget and Python's ftplib; data
connection modes PASV, EPSV, PORT and EPRT; a download and an upload of a 5 MiB random file in
each, with the SHA-256 compared. Everything runs on loopback: the gateway is 127.0.0.1, the
client 127.0.0.2, the FTP server 127.0.0.3 (fwx-gateway publishes 127.0.0.1:P -> 127.0.0.3:Q
with the FTP filter plugin, --loopback-hosts).

A cell is `ok` only if the client exited 0, the client's control dialogue shows the data
command of the column (PASV/EPSV/PORT/EPRT) accepted and no other data command, the copy's
SHA-256 matches, and the data went through the gateway (the gateway logged a connection that
carried the whole file). `known: ...` cells come from KNOWN_LIMITATIONS below, each with its
reason. Anything else is `FAIL (reason)`, and the runner prints its evidence: the command, the
control dialogue around the failure, the gateway's log lines for the cell and the server's.

--pass-through runs the same matrix without the FTP plugin (and with servers that accept data
connections from/to foreign addresses): it checks the harness itself, and shows that without
the filter the data connections bypass the gateway (cells read `bypass`).

Exit status: 0 when every cell is ok or known (or bypass with --pass-through), 1 otherwise, 77
(meson's "skipped") when ftp.so is not built yet or a server or client cannot be installed.

Needs root (the servers start as root and drop privileges; missing Debian packages are
installed with apt-get). Python 3 standard library only.
SPDX-License-Identifier: MIT
"""
import argparse
import ftplib
import grp
import hashlib
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

GW_IP = "127.0.0.1"
CLIENT_IP = "127.0.0.2"
SERVER_IP = "127.0.0.3"
SKIP = 77

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

# Known limitations of a client or server (not of the gateway). Keys: (server, client, mode,
# direction), "*" matches anything. The value is shown in the cell; the README repeats each
# with its justification. Only what the software cannot do belongs here, never a gateway bug.
KNOWN_LIMITATIONS = [
    (("*", "wget", "*", "up"),
     "n/a: wget cannot upload",
     "wget is a download-only client: it has no STOR command and no upload option."),
    (("*", "wget", "EPSV", "*"),
     "wget sends EPSV only on IPv6",
     "wget 1.21 picks the passive command by the control connection's address family "
     "(ftp_do_pasv: PASV for IPv4, EPSV then LPSV for IPv6) and has no option to force EPSV."),
    (("*", "wget", "EPRT", "*"),
     "wget sends EPRT only on IPv6",
     "wget 1.21 picks the active command by address family (ftp_do_port: PORT for IPv4, EPRT "
     "then LPRT for IPv6) and has no option to force EPRT."),
    (("*", "lftp", "EPRT", "*"),
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
CLIENT_IO_TIMEOUT = 6     # the clients' own connect/read timeouts, seconds


def log(msg=""):
    print(msg, flush=True)


def skip(reason):
    log("SKIP: " + reason)
    sys.exit(SKIP)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def known_limitation(server, client, mode, direction):
    for key, text, _why in KNOWN_LIMITATIONS:
        if all(k == "*" or k == v for k, v in zip(key, (server, client, mode, direction))):
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

CACHE = os.environ.get("FWX_FTP_MATRIX_CACHE", "/var/cache/fwx-ftp-matrix")
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def dpkg_installed(pkg):
    rc, out = run(["dpkg-query", "-W", "-f=${Status}", pkg], timeout=30)
    return rc == 0 and "install ok installed" in out


def apt_install(pkgs):
    """apt-get install, never removing anything (the FTP servers conflict with one another:
    installing one must not remove another). Updates the lists once if the first try fails."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    cmd = ["apt-get", "install", "-y", "-qq", "--no-remove", "--no-install-recommends",
           "-o", "DPkg::Lock::Timeout=120"] + pkgs
    rc, _ = run(cmd, timeout=600, env=APT_ENV)
    if rc != 0:
        run(["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=120"], timeout=300, env=APT_ENV)
        rc, _ = run(cmd, timeout=600, env=APT_ENV)
    return rc == 0


def quiet_services(names):
    """After installing a server package: stop and disable its system service, and stop any of
    these daemons listening on port 21. The matrix runs its own servers in the foreground."""
    for n in names:
        if os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
            run(["systemctl", "disable", "--now", n], timeout=30)
        if shutil.which("invoke-rc.d"):
            run(["invoke-rc.d", n, "stop"], timeout=30)
        elif shutil.which("service"):
            run(["service", n, "stop"], timeout=30)
        if shutil.which("update-rc.d"):
            run(["update-rc.d", n, "disable"], timeout=30)
    if shutil.which("ss"):
        _, out = run(["ss", "-Hltnp", "( sport = :21 )"], timeout=10)
        for m in re.finditer(r'\("([^"]+)",pid=(\d+)', out):
            if m.group(1) in ("vsftpd", "proftpd", "pure-ftpd"):
                try:
                    os.kill(int(m.group(2)), signal.SIGTERM)
                    log("matrix: stopped %s (pid %s) listening on port 21" % (m.group(1), m.group(2)))
                except OSError:
                    pass


def lib_deps(pkg):
    rc, out = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                   "--no-breaks", "--no-replaces", "--no-enhances", pkg], timeout=60)
    return [m.group(1) for m in re.finditer(r"^\s*(?:Pre)?Depends: (lib[^\s<>]+)", out, re.M)]


def extract_package(pkgs):
    """Unpacks Debian packages into CACHE/root without installing them (used when apt refuses
    because another FTP server package is installed: vsftpd, proftpd-core and pure-ftpd all
    conflict on ftp-server). Their shared-library dependencies are installed normally."""
    root = os.path.join(CACHE, "root")
    os.makedirs(os.path.join(CACHE, "debs"), exist_ok=True)
    deps = sorted({d for p in pkgs for d in lib_deps(p)})
    missing = [d for d in deps if not dpkg_installed(d)]
    if missing and not apt_install(missing):
        return None
    debs = os.path.join(CACHE, "debs")
    for p in pkgs:
        if not any(f.startswith(p + "_") for f in os.listdir(debs)):
            rc, out = run(["apt-get", "download", p], timeout=300, cwd=debs)
            if rc != 0:
                run(["apt-get", "update", "-qq"], timeout=300, env=APT_ENV)
                rc, out = run(["apt-get", "download", p], timeout=300, cwd=debs)
            if rc != 0:
                log("matrix: apt-get download %s failed: %s" % (p, out.strip()[-300:]))
                return None
        for f in sorted(os.listdir(debs)):
            if f.startswith(p + "_") and f.endswith(".deb"):
                rc, out = run(["dpkg-deb", "-x", os.path.join(debs, f), root], timeout=120)
                if rc != 0:
                    log("matrix: dpkg-deb -x %s failed: %s" % (f, out.strip()))
                    return None
    return root


def find_server(kind):
    """The server's binary (and helper), installing or unpacking its package if needed."""
    spec = {
        "vsftpd": (["vsftpd"], ["vsftpd"], ["usr/sbin/vsftpd"]),
        "proftpd": (["proftpd-basic"], ["proftpd-core"], ["usr/sbin/proftpd"]),
        "pure-ftpd": (["pure-ftpd"], ["pure-ftpd", "pure-ftpd-common"],
                      ["usr/sbin/pure-ftpd", "usr/bin/pure-pw"]),
    }[kind]
    install, extract, rel = spec

    def look(prefix):
        paths = [os.path.join(prefix, r) for r in rel]
        return paths if all(os.access(p, os.X_OK) for p in paths) else None

    found = look("/") or look(os.path.join(CACHE, "root"))
    if found:
        return found, None
    if os.geteuid() != 0:
        return None, "not installed, and installing needs root"
    log("matrix: installing %s" % " ".join(install))
    if apt_install(install):
        quiet_services([kind])
        found = look("/")
        if found:
            return found, None
    log("matrix: apt-get cannot install %s beside the other FTP servers; unpacking %s into %s"
        % (" ".join(install), " ".join(extract), CACHE))
    if extract_package(extract):
        found = look(os.path.join(CACHE, "root"))
        if found:
            rc, out = run(["ldd", found[0]], timeout=30)
            if "not found" in out:
                return None, "unpacked, but libraries are missing: " + " ".join(
                    l.split()[0] for l in out.splitlines() if "not found" in l)
            return found, None
    return None, "cannot install %s" % " ".join(install)


def ensure_clients():
    need = {"curl": "curl", "lftp": "lftp", "wget": "wget"}
    missing = [pkg for exe, pkg in need.items() if not shutil.which(exe)]
    if missing:
        log("matrix: installing %s" % " ".join(missing))
        apt_install(missing)
    still = [exe for exe in need if not shutil.which(exe)]
    return still


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


def listening(ip, port):
    if shutil.which("ss"):
        _, out = run(["ss", "-Hltn", "( sport = :%d )" % port], timeout=5)
        return ("%s:%d" % (ip, port)) in out
    try:
        socket.create_connection((ip, port), 0.3).close()
        return True
    except OSError:
        return False


def wait_listening(ip, port, proc, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if listening(ip, port):
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

    def __init__(self, kind, exe, tmp, pasv, promiscuous):
        self.kind, self.exe, self.promiscuous = kind, exe, promiscuous
        self.dir = os.path.join(tmp, kind)
        self.root = os.path.join(self.dir, "root")
        self.updir = os.path.join(self.root, "up")
        self.pasv = pasv
        self.port = free_port(SERVER_IP)
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
        promisc = "YES" if self.promiscuous else "NO"
        with open(self.conf, "w") as f:
            f.write(f"""# fwx ftp-matrix: anonymous download and upload on {SERVER_IP}:{self.port}
listen=YES
listen_ipv6=NO
listen_address={SERVER_IP}
listen_port={self.port}
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root={self.root}
ftp_username={self.sys_user}
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=NO
anon_umask=022
secure_chroot_dir={self.dir}/empty
pasv_enable=YES
pasv_min_port={self.pasv[0]}
pasv_max_port={self.pasv[1]}
pasv_promiscuous={promisc}
port_promiscuous={promisc}
port_enable=YES
connect_from_port_20=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
syslog_enable=NO
vsftpd_log_file={self.protolog}
xferlog_enable=YES
dual_log_enable=YES
log_ftp_protocol=YES
idle_session_timeout=60
data_connection_timeout=15
accept_timeout=10
connect_timeout=10
max_per_ip=0
""")
        self.cmd = [self.exe[0], self.conf]

    def prepare_proftpd(self):
        self.conf = os.path.join(self.dir, "proftpd.conf")
        self.syslog = os.path.join(self.dir, "proftpd.log")
        self.cmdlog = os.path.join(self.dir, "proftpd.cmdlog")
        self.logs += [self.syslog, self.cmdlog]
        with open(self.conf, "w") as f:
            f.write(f"""# fwx ftp-matrix: anonymous download and upload on {SERVER_IP}:{self.port}
ServerType standalone
ServerName "fwx-matrix ProFTPD"
DefaultServer on
DefaultAddress {SERVER_IP}
SocketBindTight on
Port {self.port}
UseIPv6 off
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
                    "-S", "%s,%d" % (SERVER_IP, self.port),
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
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_listening(SERVER_IP, self.port, self.proc):
            raise RuntimeError("%s did not listen on %s:%d (exit %s): %s" % (
                self.kind, SERVER_IP, self.port, self.proc.poll(), " | ".join(tail(self.out, 10))))

    def stop(self):
        # The servers fork one process per session, in the process group of the master (it
        # was started in a session of its own): a session stuck waiting for a data connection
        # would outlive the master, so the whole group goes, TERM then KILL.
        if self.proc is None:
            return
        pgid = self.proc.pid
        stop(self.proc, self.kind)
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
        self.port = free_port(GW_IP)
        self.sock = os.path.join(tmp, "gw-%s.sock" % server.kind)
        self.logpath = os.path.join(tmp, "gateway-%s.log" % server.kind)
        self.proc = None
        self.crashes = []

    def plugin_guid(self):
        """The FTP filter's GUID, from the log line of a quick-form gateway that loads it."""
        cmd = [self.exe, "--listen", "%s:%d" % (GW_IP, self.port), "--upstream", "%s:%d" % (SERVER_IP, self.server.port),
               "--plugin", "ftp", "--plugin-dir", os.path.dirname(self.plugin)]
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

    def start(self):
        if self.config_form:
            if self.plugin and self.guid is None:
                self.guid = self.plugin_guid()
            cmd = [self.exe, "--config", self.write_config()]
            self.cmd = cmd
            with open(self.logpath, "ab") as out:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
            if not wait_listening(GW_IP, self.port, self.proc):
                raise RuntimeError("fwx-gateway did not listen on %s:%d (exit %s): %s" % (
                    GW_IP, self.port, self.proc.poll(), " | ".join(tail(self.logpath, 10))))
            return
        cmd = [self.exe, "--listen", "%s:%d" % (GW_IP, self.port),
               "--upstream", "%s:%d" % (SERVER_IP, self.server.port),
               "--loopback-hosts", "--control", self.sock, "--name", "ftp-matrix-" + self.server.kind,
               "--verbose"]
        if self.plugin:
            cmd += ["--plugin", "ftp", "--plugin-dir", os.path.dirname(self.plugin)]
        self.cmd = cmd
        with open(self.logpath, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_listening(GW_IP, self.port, self.proc):
            raise RuntimeError("fwx-gateway did not listen on %s:%d (exit %s): %s" % (
                GW_IP, self.port, self.proc.poll(), " | ".join(tail(self.logpath, 10))))

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


def relayed_max(lines):
    """The largest byte count of any one connection the gateway closed in these lines."""
    best = 0
    for l in lines:
        m = re.search(r"closed \((\d+) bytes from the client, (\d+) from the peer\)", l)
        if m:
            best = max(best, int(m.group(1)), int(m.group(2)))
    return best


# ---- clients ---------------------------------------------------------------------------------

def client_command(client, mode, direction, gw_port, user, password, local, remote, dialogue):
    """The argv for one transfer, and how to read the control dialogue from its output."""
    url = "ftp://%s:%d/%s" % (GW_IP, gw_port, remote)
    passive = mode in ("PASV", "EPSV")
    t = str(CLIENT_IO_TIMEOUT)
    if client == "curl":
        cmd = ["curl", "-v", "-sS", "--max-time", str(int(TRANSFER_TIMEOUT) - 2), "--connect-timeout", t,
               "--interface", CLIENT_IP, "--user", "%s:%s" % (user, password)]
        if passive:
            # --no-ftp-skip-pasv-ip: use the address in 227 as sent (curl's default since 7.74
            # would ignore it and reuse the control connection's, hiding a missing rewrite).
            cmd += ["--ftp-pasv", "--no-ftp-skip-pasv-ip"]
            if mode == "PASV":
                cmd.append("--disable-epsv")
        else:
            cmd += ["--ftp-port", CLIENT_IP]
            if mode == "PORT":
                cmd.append("--disable-eprt")
        cmd += (["-o", local, url] if direction == "down" else ["-T", local, url])
        return cmd
    if client == "lftp":
        script = [
            "set cmd:fail-exit yes",
            "set net:socket-bind-ipv4 " + CLIENT_IP,
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
            "open -u %s,%s ftp://%s:%d" % (user, password, GW_IP, gw_port),
            ("get %s -o %s" % (remote, local)) if direction == "down" else ("put %s -o %s" % (local, remote)),
        ]
        return ["lftp", "-c", "; ".join(script)]
    if client == "wget":
        cmd = ["wget", "-d", "--progress=dot:giga", "--tries=1", "--timeout=" + t, "--bind-address=" + CLIENT_IP,
               "--no-proxy", "--user=" + user, "--password=" + password, "-O", local]
        if not passive:
            cmd.append("--no-passive-ftp")
        cmd.append(url)
        return cmd
    if client == "ftplib":
        return [sys.executable, os.path.abspath(__file__), "--ftplib-client", GW_IP, str(gw_port), user,
                password, mode, direction, local, remote]
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
    host, port, user, password, mode, direction, local, remote = argv
    port = int(port)

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
            sock = socket.create_server((host, 0), family=socket.AF_INET, backlog=1)
            p = sock.getsockname()[1]
            if mode == "EPRT":
                self.sendeprt(host, p)
            else:
                self.sendport(host, p)
            if self.timeout is not None:
                sock.settimeout(self.timeout)
            return sock

    try:
        ftp = Client(timeout=CLIENT_IO_TIMEOUT, source_address=(CLIENT_IP, 0))
        ftp.connect(host, port)
        ftp.login(user, password)
        ftp.set_pasv(mode in ("PASV", "EPSV"))
        if direction == "down":
            with open(local, "wb") as f:
                ftp.retrbinary("RETR " + remote, f.write, blocksize=65536)
        else:
            with open(local, "rb") as f:
                ftp.storbinary("STOR " + remote, f, blocksize=65536)
        ftp.quit()
    except Exception as e:  # noqa: BLE001 - any failure is the cell's result
        print("ftplib: %s: %s" % (type(e).__name__, e), flush=True)
        return 1
    return 0


def run_client(cmd, timeout, cwd):
    """Runs a client in its own process group with a hard timeout. Returns (rc, output)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         cwd=cwd, start_new_session=True)
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
    def __init__(self, server, client, mode, direction):
        self.server, self.client, self.mode, self.direction = server, client, mode, direction
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


def run_cell(cell, server, gw, work, payload, want, pass_through, fsize):
    name = "%s-%s-%s-%s" % (server.kind, cell.client, cell.mode, cell.direction)
    cwd = os.path.join(work, name)
    os.makedirs(cwd)
    dialogue_file = os.path.join(cwd, "dialogue.txt")
    if cell.direction == "down":
        local, remote = os.path.join(cwd, "payload.bin"), "payload.bin"
        result = local
    else:
        local, remote = payload, "up/%s.bin" % name
        result = os.path.join(server.updir, name + ".bin")
    cmd = client_command(cell.client, cell.mode, cell.direction, gw.port, server.user, server.password,
                         local, remote, dialogue_file)
    gw.ensure_running()
    goff, soff = gw.log_size(), server.log_sizes()
    t0 = time.monotonic()
    rc, out = run_client(cmd, TRANSFER_TIMEOUT, cwd)
    cell.seconds = time.monotonic() - t0
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
    if not reasons or rc == 0:
        if not os.path.exists(result):
            reasons.append("no %s file" % ("downloaded" if cell.direction == "down" else "uploaded"))
        else:
            got = sha256(result)
            if got != want:
                reasons.append("SHA-256 differs (%d of %d bytes)" % (os.path.getsize(result), fsize))
    through = relayed_max(glines) >= fsize
    if not reasons:
        if through:
            cell.status = "ok"
        elif pass_through:
            cell.status = "bypass"
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
                         + ["   " + l for l in server.log_since(soff)])
    # Keep the disk use bounded: copies are not needed once checked.
    for p in (result if cell.direction == "down" else None, result if cell.direction == "up" else None):
        if p and os.path.exists(p):
            os.unlink(p)


def print_table(cells, servers, clients, modes, dirs):
    cols = [(m, d) for m in modes for d in dirs]
    head = ["server", "client"] + ["%s %s" % (m, d) for m, d in cols]
    rows = []
    for s in servers:
        for c in clients:
            row = [s, c]
            for m, d in cols:
                cell = cells.get((s, c, m, d))
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

    srows = [[r[0], r[1]] + [short(x) for x in r[2:]] for r in rows]
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
    if len(sys.argv) > 1 and sys.argv[1] == "--ftplib-client":
        sys.exit(ftplib_client(sys.argv[2:]))
    ap = argparse.ArgumentParser(description="fwx FTP compatibility matrix (see README.md beside this file)")
    ap.add_argument("build", help="the meson build directory (holds examples/fwx-gateway and plugins/ftp)")
    ap.add_argument("--pass-through", action="store_true",
                    help="run without the FTP plugin (servers accept foreign data addresses)")
    ap.add_argument("--plugin", help="the FTP plugin (default BUILD/plugins/ftp/ftp.so)")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--dirs", default=",".join(DIRS))
    ap.add_argument("--promiscuous", action="store_true",
                    help="let the servers accept data connections from/to any address (default only "
                         "with --pass-through)")
    ap.add_argument("--config-form", action="store_true",
                    help="start fwx-gateway from a generated --config file (the quick form's policy plus "
                         "gateway.local_addresses = [ \"127.0.0.1\" ]) instead of the quick form")
    ap.add_argument("--size-mib", type=int, default=5)
    ap.add_argument("--budget", type=float, default=540.0,
                    help="seconds for all the transfers; cells not run by then fail (default 540)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, dialogues)")
    ap.add_argument("--quiet-evidence", action="store_true", help="do not print each failure's evidence")
    a = ap.parse_args()

    sel = {}
    for k, allv in (("servers", SERVERS), ("clients", CLIENTS), ("modes", MODES), ("dirs", DIRS)):
        v = [x.strip() for x in getattr(a, k).split(",") if x.strip()]
        bad = [x for x in v if x not in allv]
        if bad:
            ap.error("unknown %s: %s (choose from %s)" % (k, ",".join(bad), ",".join(allv)))
        sel[k] = v

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
        skip("needs root: the FTP servers start as root and drop privileges")
    for ip in (CLIENT_IP, SERVER_IP):
        s = socket.socket()
        try:
            s.bind((ip, 0))
        except OSError as e:
            skip("cannot bind %s (%s): loopback hosts are needed" % (ip, e))
        finally:
            s.close()

    missing = ensure_clients()
    if missing:
        skip("cannot install the clients %s" % ", ".join(missing))
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
    log("  gateway %s:P -> server %s:Q, client %s; servers %s; work dir %s" % (
        GW_IP, SERVER_IP, CLIENT_IP, "promiscuous (accept foreign data addresses)" if promiscuous
        else "strict (their defaults: data peer must be the control peer)", tmp))
    for v in versions:
        log("  " + v)
    log()

    cells = {}
    failures = 0
    deadline = time.monotonic() + a.budget
    used_ports = []
    status = 0
    gw_statuses = []
    try:
        for kind in sel["servers"]:
            server = Server(kind, exes[kind], tmp, port_block(SERVER_IP, 50, used_ports), promiscuous)
            gw = None
            try:
                server.prepare(payload)
                server.start()
                gw = Gateway(build, tmp, server, plugin, a.config_form)
                gw.start()
                log("%s: server %s:%d (passive ports %d-%d), gateway %s:%d" % (
                    kind, SERVER_IP, server.port, server.pasv[0], server.pasv[1], GW_IP, gw.port))
                log("  $ " + quote(gw.cmd))
                for client in sel["clients"]:
                    for mode in sel["modes"]:
                        for d in sel["dirs"]:
                            cell = Cell(kind, client, mode, d)
                            cells[(kind, client, mode, d)] = cell
                            k = known_limitation(kind, client, mode, d)
                            if k:
                                cell.status, cell.reason = "known", k
                            elif time.monotonic() > deadline:
                                cell.reason = "not run: the matrix's time budget (%.0f s) was used up" % a.budget
                            else:
                                run_cell(cell, server, gw, tmp, payload, want, a.pass_through, fsize)
                            log("  %-9s %-6s %-4s %-4s %-5.1fs %s" % (kind, client, mode, d, cell.seconds, cell.text()))
                            if cell.status == "FAIL":
                                failures += 1
                                if cell.evidence and not a.quiet_evidence:
                                    for l in cell.evidence:
                                        log("      " + l)
            except RuntimeError as e:
                log("matrix: %s: %s" % (kind, e))
                for client in sel["clients"]:
                    for mode in sel["modes"]:
                        for d in sel["dirs"]:
                            c = cells.setdefault((kind, client, mode, d), Cell(kind, client, mode, d))
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
                server.stop()
    finally:
        log()
        log("%s matrix (%s; rows server x client, columns mode x direction):" % (
            "PASS-THROUGH" if a.pass_through else "FTP plugin", time.strftime("%Y-%m-%d %H:%M:%S")))
        print_table(cells, sel["servers"], sel["clients"], sel["modes"], sel["dirs"])
        if a.keep:
            log("\nkept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for kind, rc, crashes in gw_statuses:
        if crashes:
            log("fwx-gateway crashed %d time(s) with %s (statuses %s)" % (len(crashes), kind, crashes))
            status = 1
    counts = {}
    for c in cells.values():
        counts[c.status] = counts.get(c.status, 0) + 1
    log("\n" + ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())))
    if failures:
        status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
