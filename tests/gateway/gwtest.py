"""fwx gateway tests - what every script in tests/gateway/ shares.

The scripts drive the real programs: fwx-gateway, fwxctl, minimal-embed. meson passes their
paths in the environment (FWX_GATEWAY, FWXCTL, FWX_CONN_LOGGER, FWX_MINIMAL_EMBED); a script
can also be run by hand with those set.

Hosts are distinct loopback addresses: the gateway listens on 127.0.0.1, clients connect from
127.0.0.2, servers (an echo server in the test's own process) listen on 127.0.0.3. Every wait
is bounded, every socket has a timeout, and everything a test starts is stopped when it ends.

Exit codes: 0 pass, 1 fail, 77 skip (meson's convention), with one line saying why.
Python 3 standard library only.
SPDX-License-Identifier: MIT
"""
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

GW_IP = "127.0.0.1"
CLIENT_IP = "127.0.0.2"
SERVER_IP = "127.0.0.3"
IO_TIMEOUT = 5.0

SKIP = 77


def log(msg):
    print(msg, flush=True)


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(SKIP)


class Failure(Exception):
    """A check failed; main() prints it and exits 1."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_until(pred, timeout=5.0, step=0.02, what="condition"):
    """Polls pred() until it is true; raises Failure after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Failure("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)


def sha256_file(path):
    """The SHA-256 of a file's content, in hex (read in blocks: the payloads are megabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stop_procs(procs, timeout=5.0):
    """Stops the processes a test started, last first: SIGTERM, then SIGKILL after timeout s."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=timeout)


def program(var):
    """The path of a program meson passed in the environment variable var."""
    p = os.environ.get(var)
    if not p:
        skip("%s is not set (run through meson test, or set it to the program's path)" % var)
    if not os.path.exists(p):
        raise Failure("%s=%s does not exist" % (var, p))
    return p


def ftp_plugin():
    """The FTP plugin meson names in FWX_FTP_PLUGIN; a test run without it fails rather than pass
    untested."""
    plugin = os.environ.get("FWX_FTP_PLUGIN")
    if not plugin or not os.path.exists(plugin):
        raise Failure("FWX_FTP_PLUGIN names no FTP plugin (meson sets it)")
    return plugin


def need_loopback_hosts():
    """Skips unless 127.0.0.2 and 127.0.0.3 can be bound (Linux routes all of 127/8 to lo)."""
    for ip in (CLIENT_IP, SERVER_IP):
        s = socket.socket()
        try:
            s.bind((ip, 0))
        except OSError as e:
            skip("cannot bind %s (%s): distinct loopback hosts are needed" % (ip, e))
        finally:
            s.close()


def main(fn):
    """Runs fn(tmpdir); prints PASS or the failure; exits 0, 1 or 77."""
    need_loopback_hosts()
    with tempfile.TemporaryDirectory(prefix="fwx-gwtest.") as tmp:
        try:
            fn(tmp)
        except Failure as e:
            log("FAIL: %s" % e)
            for g in list(Gateway.running):
                g.dump_log()
            rc = 1
        except Exception:
            import traceback
            traceback.print_exc()
            for g in list(Gateway.running):
                g.dump_log()
            rc = 1
        else:
            log("PASS")
            rc = 0
        finally:
            for g in list(Gateway.running):
                g.kill()
            for e in list(EchoServer.running):
                e.stop()
    sys.exit(rc)


# ---- sockets ------------------------------------------------------------------------------------

def free_port(ip=GW_IP):
    """A TCP port nobody listens on now (the kernel picks it; closed again at once)."""
    s = socket.socket()
    s.bind((ip, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(ip, port):
    """True if a TCP socket listens on ip:port (read from /proc/net/tcp; opens no connection)."""
    want_addr = "".join("%02X" % int(b) for b in reversed(ip.split(".")))
    want = "%s:%04X" % (want_addr, port)
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def connect(port, ip=GW_IP, src=CLIENT_IP, timeout=IO_TIMEOUT):
    """A blocking client socket from src to ip:port."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect((ip, port))
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(65536, n - len(buf)))
        if not d:
            raise Failure("connection closed after %d of %d bytes" % (len(buf), n))
        buf += d
    return bytes(buf)


def recv_to_eof(s, cap=1 << 30):
    buf = bytearray()
    while len(buf) <= cap:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d
    raise Failure("more than %d bytes before EOF" % cap)


def roundtrip(s, data):
    """Sends data on a connection to an echo server and checks it comes back."""
    s.sendall(data)
    got = recv_exact(s, len(data))
    check(got == data, "echo returned different bytes")


def echo_once(port, data=b"ping\n"):
    """One short session: connect, send, read the echo, close."""
    with connect(port) as s:
        roundtrip(s, data)


def refused(port, ip=GW_IP):
    """True if a connection to ip:port is refused."""
    try:
        with connect(port, ip=ip, timeout=2):
            return False
    except ConnectionRefusedError:
        return True


# ---- an echo server on 127.0.0.3 ----------------------------------------------------------------

class EchoServer:
    """An asyncio echo server in a thread. Echoes as it reads; on EOF from the client it sends
    what is left and half-closes its side. mode="greet": sends `greeting` first and half-closes
    at once, then counts what the client sends (received[] holds each connection's bytes)."""

    running = []

    def __init__(self, ip=SERVER_IP, mode="echo", greeting=b""):
        self.mode = mode
        self.greeting = greeting
        self.received = []
        self.accepted = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.error = None

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.server = self.loop.run_until_complete(
                    asyncio.start_server(self._handle, ip, 0, backlog=1024, reuse_address=True))
                self.port = self.server.sockets[0].getsockname()[1]
            except Exception as e:  # reported by the constructor
                self.error = e
                started.set()
                return
            started.set()
            self.loop.run_forever()
            self.server.close()
            self.loop.run_until_complete(self.server.wait_closed())
            tasks = asyncio.all_tasks(self.loop)
            for t in tasks:
                t.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(5)
        if self.error is not None:
            raise Failure("echo server on %s: %s" % (ip, self.error))
        EchoServer.running.append(self)

    async def _handle(self, reader, writer):
        self.accepted += 1
        try:
            if self.mode == "greet":
                writer.write(self.greeting)
                await writer.drain()
                writer.write_eof()
                got = bytearray()
                while True:
                    d = await reader.read(65536)
                    if not d:
                        break
                    got += d
                self.received.append(bytes(got))
            else:
                while True:
                    d = await reader.read(65536)
                    if not d:
                        break
                    writer.write(d)
                    await writer.drain()
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def stop(self):
        if self in EchoServer.running:
            EchoServer.running.remove(self)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


# ---- the gateway ----------------------------------------------------------------------------------

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


DEFAULT_CONTROL = "/run/fwx/fwx-gateway.sock"


class Gateway:
    """One fwx-gateway process. stdout goes to <tmp>/<name>.out, stderr to <tmp>/<name>.err.
    control: True, a socket of its own in tmp (--control); False, none (--no-control: the
    gateways of parallel tests must not all reach for the default); "default": neither option,
    the gateway opens DEFAULT_CONTROL (run it in a mount namespace of its own, see
    test_control_path.py); None: no option added (args say it). env: extra environment variables."""

    running = []

    def __init__(self, tmp, args, name="gateway", wait_ready=True, control=True, prefix=(), env=None):
        self.exe = program("FWX_GATEWAY")
        self.tmp = tmp
        self.name = name
        self.sock = (DEFAULT_CONTROL if control == "default" else
                     os.path.join(tmp, name + ".sock") if control else None)
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err")
        argv = list(prefix) + [self.exe] + list(args)  # prefix: e.g. ip netns exec NS
        if control is True:
            argv += ["--control", self.sock]
        elif control is False:
            argv += ["--no-control"]
        self.argv = argv
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        penv = None
        if env is not None:
            penv = dict(os.environ)
            penv.update(env)
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL, env=penv)
        self.pid = self.proc.pid
        Gateway.running.append(self)
        if wait_ready:
            self.wait_log("fwx-gateway: ready", what="the gateway to be ready")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, text, timeout=5.0, what=None, count=1):
        """Waits until text appears count times in stdout; fails early if the gateway exits."""
        def seen():
            if self.proc.poll() is not None:
                raise Failure("fwx-gateway exited with %s while waiting for %s"
                              % (self.proc.returncode, what or repr(text)))
            return self.stdout().count(text) >= count
        wait_until(seen, timeout, what=what or repr(text))

    def fds(self):
        return fd_count(self.pid)

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig and waits (bounded) for the exit; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure("fwx-gateway did not exit within %.0f s of signal %d" % (timeout, sig))
        self._done()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._done()

    def _done(self):
        if self in Gateway.running:
            Gateway.running.remove(self)
        self.out.close()
        self.err.close()

    def dump_log(self, lines=40):
        for title, text in (("stdout", self.stdout()), ("stderr", self.stderr())):
            tail = text.splitlines()[-lines:]
            if tail:
                log("---- %s of %s (last %d lines) ----" % (title, self.name, len(tail)))
                for line in tail:
                    log("    " + line)

    # fwxctl against this gateway's control socket
    def ctl(self, *args, ok=True):
        exe = program("FWXCTL")
        r = subprocess.run([exe, "--socket", self.sock] + list(args), capture_output=True,
                           timeout=15, text=True)
        if ok and r.returncode != 0:
            raise Failure("fwxctl %s exited %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
        return r

    def ctl_json(self, what):
        """fwxctl --json WHAT, each line parsed; fails on a line that is not a JSON object."""
        out = self.ctl("--json", what).stdout
        objs = []
        for i, line in enumerate(out.splitlines()):
            try:
                o = json.loads(line)
            except ValueError as e:
                raise Failure("fwxctl --json %s: line %d is not JSON (%s): %r" % (what, i + 1, e, line))
            check(isinstance(o, dict), "fwxctl --json %s: line %d is not an object" % (what, i + 1))
            objs.append(o)
        return objs

    def stats(self):
        objs = self.ctl_json("stats")
        check(len(objs) == 1 and objs[0].get("kind") == "stats", "fwxctl --json stats: %r" % objs)
        return objs[0]


def vsftpd_config_text(title, addr, port, root, ftp_user, empty_dir, pasv, log_file, promiscuous=False):
    """The text of a vsftpd.conf for the tests' FTP servers (a comment line `title` first):
    in the foreground on addr:port (IPv4 or IPv6 by the address), anonymous download from root
    and upload into it (umask 022) as the system user ftp_user, passive ports pasv = (lo, hi),
    the FTP protocol logged to log_file, the sandboxes that need more than a network namespace
    off. Strict unless promiscuous: a data connection's peer must be the control connection's,
    and a PORT/EPRT must name it."""
    listen = ("listen=NO\nlisten_ipv6=YES\nlisten_address6=%s" % addr if ":" in addr
              else "listen=YES\nlisten_ipv6=NO\nlisten_address=%s" % addr)
    promisc = "YES" if promiscuous else "NO"
    return f"""# {title}
{listen}
listen_port={port}
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root={root}
ftp_username={ftp_user}
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=NO
anon_umask=022
secure_chroot_dir={empty_dir}
pasv_enable=YES
pasv_min_port={pasv[0]}
pasv_max_port={pasv[1]}
pasv_promiscuous={promisc}
port_promiscuous={promisc}
port_enable=YES
connect_from_port_20=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
syslog_enable=NO
vsftpd_log_file={log_file}
xferlog_enable=YES
dual_log_enable=YES
log_ftp_protocol=YES
idle_session_timeout=60
data_connection_timeout=15
accept_timeout=10
connect_timeout=10
max_per_ip=0
"""


@contextlib.contextmanager
def gateways_stopped(*cleanups):
    """Wraps the body of a test that starts gateways and other things: when the body raises,
    prints the last lines of each gateway still running (kill forgets them); in any case kills
    them, then calls each of cleanups in the order given (servers' stop, the namespaces' down)."""
    try:
        yield
    except BaseException:
        for g in list(Gateway.running):
            g.dump_log(60)
        raise
    finally:
        for g in list(Gateway.running):
            g.kill()
        for c in cleanups:
            c()


def write_file(path, text):
    """Replaces a file's content atomically (a reload must never see half a file)."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def policy(publish, gateway_group=None, plugins_guid=None):
    """A policy file publishing each (listen_port, server_port) pair of `publish` from
    127.0.0.1:listen to 127.0.0.3:server, each with its own inbound protocol, allowed from
    anywhere. No trailing commas (see the report: fwx-gateway's settings reader refuses them)."""
    protos, names, pubs = [], [], []
    for i, (lport, sport) in enumerate(publish):
        name = "svc%d" % i
        names.append('"%s"' % name)
        protos.append('  { name = "%s"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-0000000%05x}"; protocol = "tcp";'
                      ' port = %d; direction = "inbound"; }' % (name, i + 1, lport))
        pubs.append('  { name = "pub%d"; listen = "%s:%d"; server = "%s:%d"; protocol = "%s";'
                    ' full_proxy = true; }' % (i, GW_IP, lport, SERVER_IP, sport, name))
    text = ""
    if gateway_group is not None:
        text += "gateway = {\n%s\n};\n" % gateway_group
    text += "protocols = (\n%s\n);\n" % ",\n".join(protos)
    text += ('rules = (\n  { name = "published"; action = "allow"; from = [ "localhost", "external" ];'
             ' to = [ "localhost", "external" ]; protocols = [ %s ]; }\n);\n' % ", ".join(names))
    text += "publishing = (\n%s\n);\n" % ",\n".join(pubs)
    return text


def two_services_site(lport, rport, sport, gateway_group=""):
    """A policy publishing lport (its protocol allowed) and rport (its protocol allowed by no rule)
    to a server on 127.0.0.3:sport, with gateway_group as the body of the gateway group."""
    return """gateway = {
%s
};
protocols = (
  { name = "svc"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-000000000101}"; protocol = "tcp"; port = %d; direction = "inbound"; },
  { name = "shut"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-000000000102}"; protocol = "tcp"; port = %d; direction = "inbound"; }
);
rules = (
  { name = "svc in"; action = "allow"; from = [ "localhost", "external" ]; to = [ "localhost", "external" ];
    protocols = [ "svc" ]; }
);
publishing = (
  { name = "pub svc"; listen = "%s:%d"; server = "127.0.0.3:%d"; protocol = "svc"; full_proxy = true; },
  { name = "pub shut"; listen = "%s:%d"; server = "127.0.0.3:%d"; protocol = "shut"; full_proxy = true; }
);
""" % (gateway_group, lport, rport, GW_IP, lport, sport, GW_IP, rport, sport)
