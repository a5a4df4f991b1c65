"""examples/minimal-embed: a libuv proxy that asks libfwx about each client. With an allow
policy it relays to an echo server (both ways, half-close, bytes counted by fwx); with a deny
policy the client is dropped and the server never sees a connection; a bad policy file is
refused with file:line; SIGTERM ends it with exit 0 (every handle closed).
SPDX-License-Identifier: MIT
"""
import os
import signal
import socket
import subprocess

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


class Proxy:
    def __init__(self, tmp, name, policy_path, port, upstream):
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([program("FWX_MINIMAL_EMBED"), policy_path, GW_IP, str(port),
                                          "127.0.0.3", str(upstream)], stdout=out, stderr=err)

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


main(run)
