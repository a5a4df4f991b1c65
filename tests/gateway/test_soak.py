"""Soak: 10,000 short sessions through fwx-gateway (connect, send a few bytes, read the echo,
close), at most 64 at a time, bounded in time. Afterwards the gateway holds what it held
before: the same open file descriptors, no sessions, connections or permissions.
SPDX-License-Identifier: MIT
"""
import asyncio
import os
import time

from gwtest import (CLIENT_IP, EchoServer, Gateway, check, free_port, log, main, program, wait_until)

GW_IP = "127.0.0.1"
SESSIONS = int(os.environ.get("FWX_SOAK_SESSIONS", "10000"))
CONCURRENCY = 64
TIME_LIMIT = 90.0  # seconds for all the sessions; the meson timeout is above this


async def soak(port):
    sem = asyncio.Semaphore(CONCURRENCY)
    failures = []

    async def one(i):
        async with sem:
            msg = b"session %05d\n" % i
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(GW_IP, port, local_addr=(CLIENT_IP, 0)), 10)
                w.write(msg)
                got = await asyncio.wait_for(r.readexactly(len(msg)), 10)
                w.close()
                await asyncio.wait_for(w.wait_closed(), 10)
                if got != msg:
                    failures.append("session %d: echo %r" % (i, got))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                failures.append("session %d: %r" % (i, e))

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(SESSIONS))), TIME_LIMIT)
    return failures


def run(tmp):
    echo = EchoServer()
    port = free_port()
    gw = Gateway(tmp, ["--listen", "%s:%d" % (GW_IP, port), "--upstream", "127.0.0.3:%d" % echo.port,
                       "--plugin", program("FWX_CONN_LOGGER"), "--log-format", "json"])
    before_fds = gw.fds()
    before = gw.stats()
    t0 = time.monotonic()
    failures = asyncio.run(soak(port))
    dt = time.monotonic() - t0
    check(not failures, "%d of %d sessions failed, first: %s" % (len(failures), SESSIONS,
                                                                  "; ".join(failures[:5])))
    log("ok: %d sessions, at most %d at a time, in %.1f s (%.0f/s)" % (SESSIONS, CONCURRENCY, dt, SESSIONS / dt))
    check(echo.accepted == SESSIONS, "the echo server saw %d connections, not %d" % (echo.accepted, SESSIONS))

    def settled():
        st = gw.stats()
        return (st["sessions"], st["connections"], st["permissions"], st["bound_ports"]) == (0, 0, 0, 0)
    wait_until(settled, timeout=10, what="sessions, connections and permissions to reach 0")
    wait_until(lambda: gw.fds() == before_fds, timeout=10,
               what="the fd count to return to %d (now %d)" % (before_fds, gw.fds()))
    after = gw.stats()
    check(after == before, "stats before %r, after %r" % (before, after))
    check(not [o for o in gw.ctl_json("all") if o.get("kind") in ("session", "connection", "grant")],
          "objects left in fwxctl all")
    out = gw.stdout()
    check(out.count("accepted (relayed, no data filter)") == SESSIONS,
          "the log shows %d accepted connections" % out.count("accepted (relayed, no data filter)"))
    check(gw.stop() == 0, "exit status")
    log("ok: afterwards %d fds as before, stats %r; exit 0" % (before_fds, after))


main(run)
