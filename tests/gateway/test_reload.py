"""SIGHUP reloads fwx-gateway's policy without dropping live sessions: a new publishing rule
starts listening, a broken file is refused (logged, the running policy kept), a new
gateway.log_level applies to every line at once, and a client connected before every reload keeps
working throughout.
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

    # 4. a broken gateway group: the whole reload is refused, never "reloaded"
    good = policy([(port_a, echo.port), (port_b, echo.port)])
    write_file(cfg, 'gateway = { log_level = "loud"; };\n' + good)
    gw.send(signal.SIGHUP)
    gw.wait_log("reload refused", count=3, what="the refusal of a broken gateway group")
    out = gw.stdout()
    check("gw.cfg:1: gateway.log_level" in out, "the refusal does not name gateway.log_level at line 1: %r"
          % out.splitlines()[-1])
    check(out.count("policy reloaded") == 1, "a broken gateway group was reported as reloaded")
    echo_once(port_b, b"B after a broken gateway group\n")
    log("ok: SIGHUP with a broken gateway group is refused with file:line, the running policy kept")

    # 5. a protocol binding a filter no loaded plugin provides: refused
    bound = good.replace('direction = "inbound"; }', 'direction = "inbound"; filters = [ "no-such-filter" ]; }', 1)
    check(bound != good, "the test could not bind a filter")
    write_file(cfg, bound)
    gw.send(signal.SIGHUP)
    gw.wait_log("reload refused", count=4, what="the refusal of an unprovided filter")
    last = [line for line in gw.stdout().splitlines() if "reload refused" in line][-1]
    check("protocols.[0].filters.[0]" in last and "no-such-filter" in last and "loaded: none" in last,
          "the refusal does not say which filter is missing and what is loaded: %r" % last)
    check(gw.stdout().count("policy reloaded") == 1, "an unprovided filter was reported as reloaded")
    echo_once(port_a, b"A after a refused filter\n")
    log("ok: SIGHUP with a filter no plugin provides is refused: %s" % last.split("refused", 1)[1].strip())

    # 6. gateway.log_level applies to the library's and plugins' lines at once, not only the
    #    gateway's own (fwxctl reload, as SIGHUP): at warn a new session writes no "fwx: connection" line, back at info it does
    write_file(cfg, policy([(port_a, echo.port), (port_b, echo.port)], gateway_group='log_level = "warn";'))
    r = gw.ctl("reload")  # synchronous: at warn the reload's own info line is not written
    check("reloaded" in r.stdout, "fwxctl reload to log_level warn: %r" % r.stdout)
    before = gw.stdout().count("fwx: connection")
    echo_once(port_a, b"quiet\n")
    roundtrip(live, b"at warn\n")
    check(gw.stdout().count("fwx: connection") == before, "library info lines after log_level = warn")
    write_file(cfg, policy([(port_a, echo.port), (port_b, echo.port)], gateway_group='log_level = "info";'))
    gw.ctl("reload")
    gw.wait_log("reload: log level is now info", what="the reload back to info")
    echo_once(port_a, b"loud\n")
    wait_until(lambda: gw.stdout().count("fwx: connection") >= before + 2, what="the library's connection lines at info")
    log("ok: SIGHUP with gateway.log_level = warn silences the library's info lines; info brings them back")

    # 7. the gateway still counts one session (the live client's) besides finished ones
    check(gw.stats()["sessions"] == 1, "sessions after the reloads: %r" % gw.stats())
    live.close()
    wait_until(lambda: gw.stats()["sessions"] == 0, what="the live session to end")
    check(gw.stop() == 0, "exit status on SIGTERM")
    log("ok: the live session ends when its client goes; exit 0")


main(run)
