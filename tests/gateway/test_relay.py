"""fwx-gateway's quick form relays a TCP connection byte for byte, both ways, through
half-closes from either side.

  fwx-gateway --listen 127.0.0.1:P --upstream 127.0.0.3:E --plugin conn-logger
SPDX-License-Identifier: MIT
"""
import os
import socket

from gwtest import (EchoServer, Gateway, check, connect, free_port, log, main, program,
                    recv_exact, recv_to_eof, wait_until)


def run(tmp):
    plugin = program("FWX_CONN_LOGGER")

    # 1. client -> echo server: 4 MiB of patterned bytes up, the same down, the client
    #    half-closes after sending and still gets every byte back, then EOF.
    echo = EchoServer()
    port = free_port()
    gw = Gateway(tmp, ["--listen", "127.0.0.1:%d" % port, "--upstream", "127.0.0.3:%d" % echo.port,
                       "--plugin", plugin])
    data = os.urandom(1 << 16) * 64
    with connect(port) as s:
        s.sendall(b"hello")
        check(recv_exact(s, 5) == b"hello", "first echo differs")
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # half-close: the echo must still come back
        got = recv_to_eof(s)
    check(got == data, "relay: sent %d bytes, got %d back%s" % (
        len(data), len(got), "" if len(got) != len(data) else " (different bytes)"))
    log("ok: 4 MiB echoed through the gateway, client half-closed first")

    # 2. server -> client first: the server sends a greeting and half-closes at once; the
    #    client sees the greeting then EOF, and may still send - the server gets it all.
    greeting = os.urandom(300000)
    greet = EchoServer(mode="greet", greeting=greeting)
    port2 = free_port()
    # (--plugin: the quick form without one is refused, see the report)
    gw2 = Gateway(tmp, ["--listen", "127.0.0.1:%d" % port2, "--upstream", "127.0.0.3:%d" % greet.port,
                        "--plugin", plugin], name="gateway2")
    upload = os.urandom(500000)
    with connect(port2) as s:
        got = recv_to_eof(s)
        check(got == greeting, "greeting: expected %d bytes, got %d" % (len(greeting), len(got)))
        s.sendall(upload)  # the server's half-close left our direction open
        s.shutdown(socket.SHUT_WR)
        check(recv_to_eof(s) == b"", "bytes after the server's EOF")
    wait_until(lambda: len(greet.received) == 1, what="the server to see the client's EOF")
    check(greet.received[0] == upload, "upload after the server's half-close: sent %d bytes, server got %d"
          % (len(upload), len(greet.received[0])))
    log("ok: server half-closed first; 300 kB down, then 500 kB up after the server's EOF")

    # 3. both gateways end clean; the byte counts show in the log.
    check(gw.stop() == 0, "gateway exit status")
    check(gw2.stop() == 0, "gateway2 exit status")
    out = gw.stdout()
    check("%d bytes from the client" % (len(data) + 5) in out,
          "the gateway's log does not count %d bytes from the client:\n%s" % (len(data) + 5, out))
    check("conn-logger: session 127.0.0.2" in gw.stderr() + out, "conn-logger did not log the session")
    log("ok: byte counts logged, conn-logger saw the session, both gateways exited 0")


main(run)
