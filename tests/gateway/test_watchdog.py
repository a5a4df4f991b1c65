"""The plugin watchdog (catalog rows 45-47, doc/security.md): a plugin whose handler blocks or
crashes is named, contained, and, past the hard limit, ends the process so that a restarted
gateway serves again with nothing left open.

A test plugin (tests/plugins/stall_plugin.c) sleeps FWX_STALL_MS in its handler when a
connection arrives on FWX_STALL_PORT, and writes through a null pointer on FWX_CRASH_PORT.
Two published ports: L0 (never triggers) and L1 (the trigger), each to an echo server.

- soft limit (500 ms), handler sleeping 1.5 s: the error line names the plugin and the event;
  the gateway then serves other clients; a new session on L1 no longer consults the plugin
  (there is no second overrun line although the plugin would sleep again).
- hard limit (2 s), handler sleeping 60 s: the process exits with status 70 within
  hard + tick (2.5 s; the test waits at most 10 s) with a last stderr line naming the plugin
  and the event; its ports are closed; a restarted gateway serves again.
- crash: the process dies of SIGSEGV with a last stderr line naming the plugin and the event;
  its ports are closed; a restarted gateway serves again.
SPDX-License-Identifier: MIT
"""
import os
import signal
import socket
import subprocess

from gwtest import (EchoServer, Failure, Gateway, check, connect, echo_once, free_port, listening, log, main,
                    policy, program, refused, roundtrip, wait_until, write_file)

GW_IP = "127.0.0.1"
OTHER_CLIENT = "127.0.0.4"  # a client whose session starts after the quarantine


def config(tmp, name, ports, echo, soft, hard):
    group = ('  loopback_hosts = true;\n  plugins = [ "%s" ];\n  plugin_soft_limit_ms = %d;\n'
             '  plugin_hard_limit_ms = %d;' % (program("FWX_STALL_PLUGIN"), soft, hard))
    path = os.path.join(tmp, name + ".cfg")
    write_file(path, policy([(ports[0], echo.port), (ports[1], echo.port)], gateway_group=group))
    return path


def start(tmp, name, cfg, stall_port=0, crash_port=0, stall_ms=0):
    os.environ["FWX_STALL_PORT"] = str(stall_port)
    os.environ["FWX_CRASH_PORT"] = str(crash_port)
    os.environ["FWX_STALL_MS"] = str(stall_ms)
    # Under AddressSanitizer its own SIGSEGV handler would come first and fwx's (installed only
    # over the default disposition) never: let the signal through to fwx, as in a plain build.
    asan = os.environ.get("ASAN_OPTIONS", "")
    if crash_port and "handle_segv" not in asan:
        os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "handle_segv=0"
    try:
        return Gateway(tmp, ["--config", cfg], name=name)
    finally:
        if crash_port:
            os.environ["ASAN_OPTIONS"] = asan


def wait_exit(gw, bound):
    try:
        return gw.proc.wait(bound)
    except subprocess.TimeoutExpired:
        raise Failure("the gateway did not exit within %.0f s" % bound)


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def soft(tmp, echo):
    ports = (free_port(), free_port())
    cfg = config(tmp, "soft", ports, echo, 500, 0)
    gw = start(tmp, "soft", cfg, stall_port=ports[1], stall_ms=1500)
    check("plugin watchdog: soft limit 500 ms" in gw.stdout(), "no watchdog line at start")
    slow = connect(ports[1])
    gw.wait_log("past the soft limit", what="the soft-limit line")
    line = [l for l in gw.stdout().splitlines() if "past the soft limit" in l][0]
    check(" error " in line and 'plugin "stall": AcceptedConnection has run for' in line,
          "the soft-limit line does not name the plugin and event at error: %r" % line)
    log("ok: %s" % line)
    # the handler returns: the slow client and others are served
    roundtrip(slow, b"slow\n")
    for i in range(5):
        echo_once(ports[0], b"other %d\n" % i)
    slow.close()
    wait_until(lambda: gw.stats()["sessions"] == 0, what="sessions to end")
    # a new session on the trigger port: the quarantined plugin is not consulted
    with connect(ports[1], src=OTHER_CLIENT) as s:
        roundtrip(s, b"after\n")
    check(gw.stdout().count("past the soft limit") == 1,
          "the quarantined plugin was consulted for a new session")
    log("ok: other clients served; a new session does not reach the quarantined plugin")
    check(gw.stop() == 0, "the gateway did not stop cleanly")


def dead_and_restart(tmp, echo, gw, ports, cfg, name):
    for p in ports:
        check(not listening(GW_IP, p) and refused(p), "port %d still open after the exit" % p)
    again = start(tmp, name + "-again", cfg)
    for i in range(3):
        echo_once(ports[0], b"again %d\n" % i)
        echo_once(ports[1], b"again %d\n" % i)
    check(again.stop() == 0, "the restarted gateway did not stop cleanly")
    log("ok: ports closed after the exit; a restarted gateway serves both ports")


def hard(tmp, echo):
    ports = (free_port(), free_port())
    cfg = config(tmp, "hard", ports, echo, 500, 2000)
    gw = start(tmp, "hard", cfg, stall_port=ports[1], stall_ms=60000)
    stuck = connect(ports[1])
    rc = wait_exit(gw, 10)
    gw._done()
    check(rc == 70, "exit status %s past the hard limit, expected 70" % rc)
    last = last_line(gw.stderr())
    check('plugin "stall": AcceptedConnection has run for' in last and "past the hard limit of 2000 ms" in last,
          "the last line does not name the plugin and the event: %r" % last)
    log("ok: exit 70: %s" % last)
    stuck.settimeout(5)
    try:
        tail = stuck.recv(10)
    except (ConnectionResetError, socket.timeout) as e:
        tail = e
    check(tail == b"" or isinstance(tail, ConnectionResetError), "the stuck client is still connected: %r" % (tail,))
    stuck.close()
    dead_and_restart(tmp, echo, gw, ports, cfg, "hard")


def crash(tmp, echo):
    ports = (free_port(), free_port())
    cfg = config(tmp, "crash", ports, echo, 500, 2000)
    gw = start(tmp, "crash", cfg, crash_port=ports[1])
    c = connect(ports[1])
    rc = wait_exit(gw, 10)
    gw._done()
    c.close()
    check(rc == -signal.SIGSEGV, "exit status %s on a plugin crash, expected SIGSEGV" % rc)
    last = last_line(gw.stderr())
    check(last == 'fwx: fatal SIGSEGV in plugin "stall" (AcceptedConnection), exiting',
          "the last line does not name the plugin and the event: %r" % last)
    log("ok: SIGSEGV: %s" % last)
    dead_and_restart(tmp, echo, gw, ports, cfg, "crash")


def run(tmp):
    program("FWX_STALL_PLUGIN")
    echo = EchoServer()
    soft(tmp, echo)
    hard(tmp, echo)
    crash(tmp, echo)


if __name__ == "__main__":
    main(run)
