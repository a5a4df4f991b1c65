"""SIGTERM and SIGINT shut fwx-gateway down cleanly: exit 0, the control socket file removed,
listening ports closed, live clients disconnected; and while it runs, sessions leave no file
descriptors behind (/proc/PID/fd before the first client = after the last one has gone).
SPDX-License-Identifier: MIT
"""
import os
import signal
import socket

from gwtest import (EchoServer, Gateway, check, connect, echo_once, free_port, listening, log, main,
                    program, refused, roundtrip, wait_until)

GW_IP = "127.0.0.1"


def one(tmp, echo, sig):
    name = signal.Signals(sig).name
    port = free_port()
    gw = Gateway(tmp, ["--listen", "%s:%d" % (GW_IP, port), "--upstream", "127.0.0.3:%d" % echo.port,
                       "--plugin", program("FWX_CONN_LOGGER")], name="gw-" + name)
    check(os.path.exists(gw.sock), "no control socket")
    baseline = gw.fds()

    # some clients at once, then one at a time; all gone again
    clients = [connect(port) for _ in range(20)]
    for i, c in enumerate(clients):
        roundtrip(c, b"client %d\n" % i)
    check(gw.fds() > baseline, "fd count did not grow with 20 clients")
    for c in clients:
        c.close()
    for i in range(20):
        echo_once(port, b"x" * (i + 1))
    wait_until(lambda: gw.stats()["sessions"] == 0, what="sessions to end")
    wait_until(lambda: gw.fds() == baseline, timeout=5,
               what="the fd count to come back to %d (now %d)" % (baseline, gw.fds()))
    log("%s: ok: %d fds before the first client and after the last" % (name, baseline))

    # a client still connected when the signal comes
    live = connect(port)
    roundtrip(live, b"live\n")
    rc = gw.stop(sig)
    check(rc == 0, "exit status %s on %s, expected 0" % (rc, name))
    check(not os.path.exists(gw.sock), "the control socket %s is still there" % gw.sock)
    check(not listening(GW_IP, port) and refused(port), "port %d still open" % port)
    live.settimeout(5)
    try:
        tail = live.recv(100)
    except (ConnectionResetError, socket.timeout) as e:
        tail = e
    check(tail == b"" or isinstance(tail, ConnectionResetError),
          "the live client was not disconnected: %r" % (tail,))
    live.close()
    check("shutting down" in gw.stdout(), "no shutdown line in the log")
    log("%s: ok: exit 0, control socket removed, port closed, live client disconnected" % name)


def run(tmp):
    echo = EchoServer()
    one(tmp, echo, signal.SIGTERM)
    one(tmp, echo, signal.SIGINT)


main(run)
