"""fwx-gateway out of file descriptors.

The gateway runs under `prlimit --nofile=40:40` (soft and hard: it raises the soft limit to the
hard one at start, so both are set) with one published echo server and a SOCKS listener. The
test opens far more connections than fit and holds them, each sending a line; then checks:
  1. a log line names EMFILE (the cause, not just "closed (0 bytes)"), and at most a few such
     lines (once per burst, not once per connection);
  2. no connection hangs: each is either echoed or refused (reset or EOF) within the I/O timeout;
  3. a SOCKS client that does get a reply while descriptors are short gets reply 1 or is reset,
     never a success followed by nothing;
  4. once the load drops (every connection closed), new connections are served again.
Also: without prlimit's hard limit, the soft limit is raised to the hard one (read from /proc).
SPDX-License-Identifier: MIT
"""
import shutil
import socket
import struct
import subprocess

from gwtest import (CLIENT_IP, GW_IP, SERVER_IP, EchoServer, Gateway, check, connect, echo_once, free_port, log,
                    main, policy, skip, wait_until, write_file)

LIMIT = 40
OPEN = 120


def try_echo(s, data):
    """True if data comes back; False on reset/EOF/timeout."""
    try:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(len(data) - len(got))
            if not d:
                return False
            got += d
        return got == data
    except OSError:
        return False


def socks_try(port):
    """A SOCKS CONNECT to the echo server; returns the reply code, or None if reset/closed."""
    try:
        s = connect(port, timeout=3)
    except OSError:
        return None, None
    try:
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) != b"\x05\x00":
            s.close()
            return None, None
        return s, None
    except OSError:
        s.close()
        return None, None


def run(tmp):
    if shutil.which("prlimit") is None:
        skip("no prlimit (util-linux)")
    echo = EchoServer()
    port = free_port()
    socks_port = free_port()
    cfg = tmp + "/fd.cfg"
    write_file(cfg, policy([(port, echo.port)]))
    gw = Gateway(tmp, ["--config", cfg, "--socks", "%s:%d" % (GW_IP, socks_port), "--loopback-hosts"],
                 prefix=["prlimit", "--nofile=%d:%d" % (LIMIT, LIMIT), "--"])
    base = gw.fds()
    log("gateway holds %d descriptors at rest, limit %d" % (base, LIMIT))

    # 1-2. Far more connections than fit, all held open.
    socks = []
    held, served, refused = [], 0, 0
    for i in range(OPEN):
        try:
            s = connect(port, timeout=3)
        except OSError:
            refused += 1
            continue
        held.append(s)
        if try_echo(s, b"line %d\n" % i):
            served += 1
        else:
            refused += 1
    # 3. SOCKS clients while short: reply 1 or a reset, never reply 0 and then silence.
    socks_bad = 0
    for i in range(10):
        try:
            s = connect(socks_port, timeout=3)
            s.sendall(b"\x05\x01\x00")
            if s.recv(2) != b"\x05\x00":
                s.close()
                continue
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(SERVER_IP) + struct.pack("!H", echo.port))
            rep = s.recv(10)
            if len(rep) >= 2 and rep[1] == 0 and not try_echo(s, b"socks\n"):
                socks_bad += 1
            held.append(s)
        except OSError:
            pass
    log("%d connections: %d echoed, %d refused" % (OPEN, served, refused))
    check(served > 0, "no connection was served at all under the limit")
    check(refused > 0, "all %d connections fit under a limit of %d: the test proves nothing" % (OPEN, LIMIT))
    check(socks_bad == 0, "%d SOCKS clients got reply 0 and then no relay" % socks_bad)
    out = gw.stdout() + gw.stderr()
    check("EMFILE" in out, "no log line names EMFILE after %d refusals:\n%s" % (refused, out[-1500:]))
    n_lines = out.count("out of file descriptors")
    check(n_lines <= 8, "%d out-of-descriptor lines for one burst (want it rate-limited)" % n_lines)
    log("ok: the shortage is logged (%d line(s) naming EMFILE), nothing hangs" % n_lines)

    # 4. Load drops: everything closes, and new connections are served.
    for s in held:
        s.close()
    wait_until(lambda: gw.fds() <= base + 2, timeout=10, what="the gateway to release the descriptors")
    for i in range(5):
        echo_once(port)
    log("ok: served again once the load dropped")
    check(gw.stop() == 0, "the gateway did not exit 0")

    # The soft limit is raised to the hard one at start.
    gw2 = Gateway(tmp, ["--config", cfg], name="gw-soft", prefix=["prlimit", "--nofile=64:4096", "--"])
    with open("/proc/%d/limits" % gw2.pid) as f:
        line = [x for x in f if x.startswith("Max open files")][0]
    check(line.split()[3] == "4096", "soft fd limit not raised to the hard one: %r" % line)
    check(gw2.stop() == 0, "gw-soft did not exit 0")
    log("ok: the soft descriptor limit is raised to the hard one at start")


if __name__ == "__main__":
    main(run)
