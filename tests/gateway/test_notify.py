"""fwx-gateway tells a service manager its state as systemd's Type=notify expects (sd_notify):
READY=1 once it serves, RELOADING=1 with MONOTONIC_USEC= then READY=1 around a SIGHUP reload
(refused or not), STOPPING=1 at SIGTERM. The test is the manager: a real AF_UNIX datagram
socket it binds itself, named in $NOTIFY_SOCKET (a path, then an abstract "@name"). A
$NOTIFY_SOCKET nobody listens on is logged at warn and the gateway runs on.
SPDX-License-Identifier: MIT
"""
import os
import signal
import socket
import time

from gwtest import EchoServer, Failure, Gateway, check, echo_once, free_port, log, main, policy, write_file


def expect(sock, want, what):
    sock.settimeout(10)
    try:
        got = sock.recv(4096).decode()
    except socket.timeout:
        raise Failure("no notification for %s within 10 s" % what)
    check(got == want if isinstance(want, str) else want(got), "%s: got %r" % (what, got))
    return got


def nothing_more(sock):
    sock.settimeout(0.2)
    try:
        extra = sock.recv(4096)
    except socket.timeout:
        return
    check(False, "an unexpected notification: %r" % extra)


def reloading(before):
    def ok(got):
        lines = got.split("\n")
        if len(lines) != 2 or lines[0] != "RELOADING=1" or not lines[1].startswith("MONOTONIC_USEC="):
            return False
        usec = int(lines[1].split("=", 1)[1])
        return before <= usec <= time.monotonic_ns() // 1000
    return ok


def run(tmp):
    echo = EchoServer()
    port = free_port()
    cfg = os.path.join(tmp, "gw.cfg")
    write_file(cfg, policy([(port, echo.port)]))

    for kind in ("path", "abstract"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if kind == "path":
            addr = os.path.join(tmp, "notify.sock")
            sock.bind(addr)
            env = addr
        else:
            name = "fwx-test-notify-%d" % os.getpid()
            sock.bind("\0" + name)
            env = "@" + name
        gw = Gateway(tmp, ["--config", cfg], name="gw-" + kind, env={"NOTIFY_SOCKET": env})
        expect(sock, "READY=1", "readiness")
        echo_once(port)

        before = time.monotonic_ns() // 1000
        gw.send(signal.SIGHUP)
        expect(sock, reloading(before), "the reload's start")
        expect(sock, "READY=1", "the reload's end")
        gw.wait_log("policy reloaded")

        write_file(cfg, "rules = ( { name = \"x\"; }\n")
        before = time.monotonic_ns() // 1000
        gw.send(signal.SIGHUP)
        expect(sock, reloading(before), "a refused reload's start")
        expect(sock, "READY=1", "a refused reload's end")
        gw.wait_log("reload refused")
        write_file(cfg, policy([(port, echo.port)]))
        echo_once(port)

        check(gw.stop(signal.SIGTERM) == 0, "exit status")
        expect(sock, "STOPPING=1", "the shutdown")
        nothing_more(sock)
        check("cannot notify" not in gw.stdout(), "a warning with a listening manager: %r" % gw.stdout())
        sock.close()
        log("ok: %s NOTIFY_SOCKET: READY, RELOADING+MONOTONIC_USEC/READY twice, STOPPING" % kind)

    # Nobody listens: a warning, and the gateway serves anyway.
    gw = Gateway(tmp, ["--config", cfg], name="gw-gone", env={"NOTIFY_SOCKET": os.path.join(tmp, "gone.sock")})
    echo_once(port)
    check("fwx-gateway: cannot notify the service manager (READY=1): No such file or directory" in gw.stdout(),
          "no warning: %r" % gw.stdout())
    check(gw.stop() == 0, "exit status")
    log("ok: a NOTIFY_SOCKET nobody listens on: warned, served")


main(run)
