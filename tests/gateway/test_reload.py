"""SIGHUP reloads fwx-gateway's policy without dropping live sessions: a new publishing rule
starts listening, a broken file is refused (logged, the running policy kept), and a client
connected before every reload keeps working throughout.
SPDX-License-Identifier: MIT
"""
import os
import signal

from gwtest import (EchoServer, Gateway, check, connect, echo_once, free_port, listening, log, main,
                    policy, refused, roundtrip, wait_until, write_file)

GW_IP = "127.0.0.1"


def run(tmp):
    echo = EchoServer()
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    cfg = os.path.join(tmp, "gw.cfg")
    write_file(cfg, policy([(port_a, echo.port)]))
    gw = Gateway(tmp, ["--config", cfg])
    check(listening(GW_IP, port_a) and not listening(GW_IP, port_b), "only A should listen at first")

    live = connect(port_a)  # held open across every reload
    roundtrip(live, b"before any reload\n")
    check(gw.stats()["sessions"] == 1, "one session expected")

    # 1. a broken file: refused, logged, the running policy kept
    write_file(cfg, policy([(port_a, echo.port), (port_b, echo.port)]).replace('action = "allow"',
                                                                                  'action = "permit"'))
    gw.send(signal.SIGHUP)
    gw.wait_log("reload refused", what="the refused reload to be logged")
    check("rules.[0].action" in gw.stdout(), "the refusal does not name the key")
    roundtrip(live, b"after a refused reload\n")
    echo_once(port_a)
    check(not listening(GW_IP, port_b) and refused(port_b), "B opened from a refused file")
    log("ok: a broken file is refused on SIGHUP, A still works, B not opened, the live client kept")

    # 2. A and B: B starts listening, A and its live client stay
    write_file(cfg, policy([(port_a, echo.port), (port_b, echo.port)]))
    gw.send(signal.SIGHUP)
    gw.wait_log("policy reloaded", what="the reload")
    wait_until(lambda: listening(GW_IP, port_b), what="B to listen")
    roundtrip(live, b"after adding B\n")
    echo_once(port_b, b"through B\n")
    echo_once(port_a, b"through A\n")
    log("ok: SIGHUP with B added: B works, A works, the live client kept")

    # 3. broken again: B (from the running policy) is kept
    write_file(cfg, "protocols = ( { name = \"x\"; }\n")
    gw.send(signal.SIGHUP)
    gw.wait_log("reload refused", count=2, what="the second refused reload")
    echo_once(port_b, b"B after another refused reload\n")
    roundtrip(live, b"still here\n")
    log("ok: a second broken file is refused, B kept")

    # 4. the gateway still counts one session (the live client's) besides finished ones
    check(gw.stats()["sessions"] == 1, "sessions after the reloads: %r" % gw.stats())
    live.close()
    wait_until(lambda: gw.stats()["sessions"] == 0, what="the live session to end")
    check(gw.stop() == 0, "exit status on SIGTERM")
    log("ok: the live session ends when its client goes; exit 0")


main(run)
