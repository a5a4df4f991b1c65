"""examples/minimal-embed: a libuv proxy that asks libfwx about each client. With an allow
policy it relays to an echo server (both ways, half-close, bytes counted by fwx); with a deny
policy the client is dropped and the server never sees a connection; a bad policy file is
refused with file:line; SIGTERM ends it with exit 0 (every handle closed). With the FTP filter
loaded and bound to the published protocol, the proxy hands the connection to
fwx_connection_relay: the filter's data filter runs over the proxy's own sockets, so a bounce
PORT (naming another host than the client) is refused on the wire and never reaches the server,
while the rest of the conversation passes.
SPDX-License-Identifier: MIT
"""
import os
import signal
import socket
import subprocess
import threading

from gwtest import (EchoServer, Failure, check, connect, free_port, log, main, program, recv_to_eof,
                    roundtrip, wait_until, write_file)

GW_IP = "127.0.0.1"


def policy(port, action):
    return ('protocols = (\n'
            '  { name = "echo"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-00000000e001}"; protocol = "tcp"; port = %d;\n'
            '    direction = "inbound"; }\n);\n'
            'rules = (\n'
            '  { name = "%s echo"; action = "%s"; from = [ "localhost", "external" ];\n'
            '    to = [ "localhost" ]; protocols = [ "echo" ]; }\n);\n' % (port, action, action))


FTP_FILTER = "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"


def ftp_policy(port):
    return ('protocols = (\n'
            '  { name = "ftp-published"; guid = "{6f0e5c2a-9b1d-4e7a-8c3f-00000000e002}"; protocol = "tcp";\n'
            '    port = %d; direction = "inbound"; filters = [ "%s" ]; }\n);\n'
            'rules = (\n'
            '  { name = "allow ftp"; action = "allow"; from = [ "localhost", "external" ];\n'
            '    to = [ "localhost" ]; protocols = [ "ftp-published" ]; }\n);\n' % (port, FTP_FILTER))


class FtpServer:
    """A scripted FTP server on SERVER_IP: a banner, then one reply per command line; it keeps
    every line it received, so a test can tell what got past the gateway."""

    def __init__(self):
        self.lines = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.3", 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        with c:
            c.settimeout(10)
            c.sendall(b"220 scripted ftp\r\n")
            buf = b""
            while True:
                try:
                    data = c.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    self.lines.append(line.decode("latin-1"))
                    verb = line.split(b" ")[0].upper()
                    reply = {b"USER": b"331 password please", b"PASS": b"230 logged in",
                             b"QUIT": b"221 bye"}.get(verb, b"200 ok")
                    c.sendall(reply + b"\r\n")
                    if verb == b"QUIT":
                        return

    def close(self):
        self.sock.close()
        self.thread.join(5)


def read_reply(f):
    line = f.readline()
    if not line:
        raise Failure("the control connection closed")
    return line.decode("latin-1").rstrip("\r\n")


class Proxy:
    def __init__(self, tmp, name, policy_path, port, upstream, plugins=()):
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([program("FWX_MINIMAL_EMBED"), policy_path, GW_IP, str(port),
                                          "127.0.0.3", str(upstream)] + list(plugins), stdout=out, stderr=err)

    def text(self):
        with open(self.out_path) as f, open(self.err_path) as g:
            return f.read() + g.read()

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise Failure("minimal-embed exited %s:\n%s" % (self.proc.returncode, self.text()))
            return "ready on" in self.text()
        wait_until(ready, what="minimal-embed to be ready")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise Failure("minimal-embed did not exit within 10 s of SIGTERM")


def run(tmp):
    echo = EchoServer()

    # allow: relayed both ways, with a half-close, several clients from one address at once
    port = free_port()
    path = os.path.join(tmp, "allow.cfg")
    write_file(path, policy(port, "allow"))
    px = Proxy(tmp, "allow", path, port, echo.port)
    try:
        px.wait_ready()
        a, b = connect(port), connect(port)  # one NAT session, two clients
        roundtrip(a, b"first\n")
        roundtrip(b, b"second\n")
        a.close()  # the session must stay for b
        roundtrip(b, b"second, after the first has gone\n")
        data = os.urandom(3 << 20)
        b.sendall(data)
        b.shutdown(socket.SHUT_WR)
        got = recv_to_eof(b)
        b.close()
        check(got == data, "3 MiB with a half-close: sent %d bytes, got %d" % (len(data), len(got)))
        total = len(b"second\n") + len(b"second, after the first has gone\n") + len(data)
        wait_until(lambda: "%d bytes from the client, %d from the peer" % (total, total) in px.text(),
                   what="fwx to log the bytes counted on the connection")
        check(echo.accepted == 2, "the echo server saw %d connections" % echo.accepted)
        rc = px.stop()
        check(rc == 0, "exit status %s on SIGTERM:\n%s" % (rc, px.text()))
    finally:
        px.stop()
    log("ok: allow: relayed, half-close kept, two clients share a session, fwx counted %d bytes, exit 0"
        % total)

    # deny: the client is dropped, the server never connected to
    before = echo.accepted
    port = free_port()
    path = os.path.join(tmp, "deny.cfg")
    write_file(path, policy(port, "deny"))
    px = Proxy(tmp, "deny", path, port, echo.port)
    try:
        px.wait_ready()
        for i in range(3):
            with connect(port) as s:
                try:
                    s.sendall(b"let me in\n")
                    got = recv_to_eof(s)
                except (ConnectionResetError, BrokenPipeError):
                    got = b""
                check(got == b"", "a denied client got %r" % got)
        wait_until(lambda: px.text().count("refused by rule \"deny echo\"") == 3,
                   what="three refusals naming the rule in fwx's log")
        check(echo.accepted == before, "the server saw a denied client")
        rc = px.stop()
        check(rc == 0, "exit status %s on SIGTERM" % rc)
    finally:
        px.stop()
    log("ok: deny: three clients dropped, refusals logged with the rule, server never contacted, exit 0")

    # a bad policy: refused with file:line before listening
    path = os.path.join(tmp, "bad.cfg")
    write_file(path, policy(port, "perhaps"))
    r = subprocess.run([program("FWX_MINIMAL_EMBED"), path, GW_IP, str(port), "127.0.0.3", str(echo.port)],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "%s:6: rules.[0].action" % path in r.stderr,
          "bad policy: exit %s, %r" % (r.returncode, r.stderr))
    log("ok: a bad policy is refused: %s" % r.stderr.strip())

    # the FTP filter through the embedded relay: a bounce PORT is refused on the wire
    ftp_plugin = program("FWX_FTP_PLUGIN")
    srv = FtpServer()
    port = free_port()
    path = os.path.join(tmp, "ftp.cfg")
    write_file(path, ftp_policy(port))
    px = Proxy(tmp, "ftp", path, port, srv.port, plugins=[ftp_plugin])
    try:
        px.wait_ready()
        with connect(port) as s:
            f = s.makefile("rb")
            banner = read_reply(f)
            check(banner.startswith("220"), "banner: %r" % banner)
            s.sendall(b"USER anonymous\r\n")
            check(read_reply(f).startswith("331"), "USER")
            s.sendall(b"PASS x\r\n")
            check(read_reply(f).startswith("230"), "PASS")
            # PORT naming 127.0.0.4: not the client (127.0.0.2), an FTP bounce (catalog #1, doc/security.md)
            s.sendall(b"PORT 127,0,0,4,200,10\r\n")
            r = read_reply(f)
            check(r == "500 Illegal PORT command.", "the bounce PORT got %r" % r)
            s.sendall(b"NOOP\r\n")
            r = read_reply(f)
            check(r == "200 ok", "NOOP after the refusal got %r" % r)
            s.sendall(b"QUIT\r\n")
            check(read_reply(f).startswith("221"), "QUIT")
            f.close()
        wait_until(lambda: "QUIT" in srv.lines, what="the server to see QUIT")
        check(srv.lines == ["USER anonymous", "PASS x", "NOOP", "QUIT"],
              "the server saw %r (the PORT must not reach it)" % srv.lines)
        rc = px.stop()
        check(rc == 0, "exit status %s on SIGTERM:\n%s" % (rc, px.text()))
        check("nothing runs them" not in px.text(), "a connection was refused:\n" + px.text())
    finally:
        px.stop()
        srv.close()
    log("ok: ftp: the FTP filter ran over the proxy's own sockets (fwx_connection_relay): the bounce PORT "
        "got 500 on the wire and never reached the server; the rest passed; exit 0")


main(run)
