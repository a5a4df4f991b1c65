"""A reload of fwx-gateway with two event loops (--threads 2) is all or nothing: when one loop
cannot put the new policy in force, no loop keeps it, and the log line and fwxctl's answer name
the loop that refused and why.

The fault is a real one: the gateway's descriptor limit is lowered (prlimit on the running
process) so that exactly one more socket fits. The new file adds a publishing rule; loop 0 opens
its listener with the last descriptor and loop 1 gets EMFILE for its own. Checked:
  1. SIGHUP: "reload refused" naming event loop 1 and the rule, the cause ("too many open
     files") logged by the proxy backend; the new port is
     not listening at all (loop 0 closed the listener it had opened), the old rule still serves,
     and a client connected before keeps working;
  2. the same through `fwxctl reload` (one more descriptor for the control connection): exit 1,
     the answer names event loop 1 and the rule;
  3. the limit raised again, `fwxctl reload`: "policy reloaded", both loops listen on the new
     port and it serves.
SPDX-License-Identifier: MIT
"""
import os
import resource
import signal

from gwtest import (GW_IP, EchoServer, Gateway, check, connect, echo_once, free_port, log, main, policy, refused,
                    roundtrip, wait_until, write_file)


def listeners(port, ip=GW_IP):
    """How many TCP sockets listen on ip:port (each loop has its own, SO_REUSEPORT)."""
    want = "%s:%04X" % ("".join("%02X" % int(b) for b in reversed(ip.split("."))), port)
    with open("/proc/net/tcp") as f:
        next(f)
        return sum(1 for line in f if line.split()[1] == want and line.split()[3] == "0A")


def limit_to(pid, free):
    """Lowers pid's soft RLIMIT_NOFILE so that exactly `free` descriptors can still be opened
    (the kernel hands out the lowest free number, and none at or above the limit). Returns the
    limits it had."""
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    used = {int(n) for n in os.listdir("/proc/%d/fd" % pid)}
    fd, holes = 0, 0
    while True:
        if fd not in used:
            if holes == free:
                break
            holes += 1
        fd += 1
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (fd, old[1]))
    return old


def run(tmp):
    echo = EchoServer()
    port_a = free_port()
    port_b = next(p for p in iter(free_port, None) if p != port_a)  # the kernel may hand out A again
    one, both = policy([(port_a, echo.port)]), policy([(port_a, echo.port), (port_b, echo.port)])
    cfg = os.path.join(tmp, "gw.cfg")
    write_file(cfg, one)
    gw = Gateway(tmp, ["--config", cfg, "--threads", "2"])
    wait_until(lambda: listeners(port_a) == 2, what="both loops to listen on A")
    live = connect(port_a)
    roundtrip(live, b"before any reload\n")
    write_file(cfg, both)

    # 1. SIGHUP with room for one socket: loop 0 opens B's, loop 1 cannot.
    old = limit_to(gw.pid, 1)
    gw.send(signal.SIGHUP)
    gw.wait_log("reload refused", what="the refused reload to be logged")
    line = [ln for ln in gw.stdout().splitlines() if "reload refused" in ln][-1]
    check("event loop 1 could not put it in force: " in line and ('publishing rule "pub1" (127.0.0.1:%d' % port_b) in line
          and "every loop went back to the running policy" in line, "the refusal does not name loop 1 and B: %r" % line)
    check("proxy: cannot listen on 127.0.0.1:%d: too many open files" % port_b in gw.stdout().lower(),
          "the cause (EMFILE) is not logged")
    check("policy reloaded" not in gw.stdout(), "a reload was said to succeed")
    resource.prlimit(gw.pid, resource.RLIMIT_NOFILE, old)
    check(listeners(port_b) == 0, "B listens on %d loops after a refused reload" % listeners(port_b))
    check(refused(port_b), "a connection to B was accepted after a refused reload")
    echo_once(port_a)
    roundtrip(live, b"after a refused reload\n")
    log("ok: SIGHUP: loop 1 refused (EMFILE), loop 0 went back, B not listening, A and the live client served")

    # 2. The same through the control socket: its connection takes one more descriptor.
    old = limit_to(gw.pid, 2)
    r = gw.ctl("reload", ok=False)
    resource.prlimit(gw.pid, resource.RLIMIT_NOFILE, old)
    check(r.returncode == 1 and r.stdout.startswith("reload refused, keeping the running policy: event loop 1 could "
                                                    "not put it in force:") and
          ('publishing rule "pub1" (127.0.0.1:%d' % port_b) in r.stdout,
          "fwxctl reload: exit %d, %r %r" % (r.returncode, r.stdout, r.stderr))
    check(listeners(port_b) == 0 and refused(port_b), "B serves after a refused fwxctl reload")
    log("ok: fwxctl reload: exit 1, the answer names loop 1 and the cause; B still closed")

    # 3. With descriptors to spare: every loop takes it.
    r = gw.ctl("reload")
    check(r.stdout.strip() == "policy reloaded", "fwxctl reload: %r" % r.stdout)
    check(listeners(port_b) == 2, "B listens on %d loops, expected 2" % listeners(port_b))
    echo_once(port_b)
    roundtrip(live, b"after the reload\n")
    live.close()
    check(gw.stop() == 0, "exit status")
    log("ok: the reload with descriptors to spare: both loops listen on B, it serves")


main(run)
