"""fwx tests - the out-of-tree plugin (log_plugin.c, built by check-install.sh against the
installed headers) loaded by the installed fwx-gateway with --log-format json.

usage: check_log_plugin.py PROBE_SO VERSION
  (FWX_GATEWAY: the installed fwx-gateway; PYTHONPATH: tests/gateway for gwtest.py)

Checks that the whole stdout is JSON (one object a line) and stderr empty; that the plugin's
lines arrive through the host's sink with the plugin's name, their level and fields (its own
and the core's: session, client, connection, peer); that Log refused the bad calls with the
documented codes; that the headers' version the plugin saw is meson's; and that the core's line
for the plugin's Deny names the event and the right addresses (the client's, then the
gateway's listening address).
SPDX-License-Identifier: MIT
"""
import json
import socket
import sys

from gwtest import (CLIENT_IP, GW_IP, IO_TIMEOUT, SERVER_IP, EchoServer, Failure, Gateway, check, echo_once,
                    free_port, log, main)

FWX_E_INVALIDARG = -2147024809  # 0x80070057 as an int32
FWX_E_POINTER = -2147467261     # 0x80004003
FWX_S_FALSE = 1


def run(tmp):
    probe, version = sys.argv[1], sys.argv[2]
    major, minor, patch = (int(x) for x in version.split("."))
    echo = EchoServer()
    port = free_port()
    gw = Gateway(tmp, ["--listen", "%s:%d" % (GW_IP, port), "--upstream", "%s:%d" % (SERVER_IP, echo.port),
                       "--plugin", probe, "--log-format", "json"])
    echo_once(port)  # the first connection: allowed
    # The second: the probe denies it; the gateway closes it without relaying anything.
    c = socket.socket()
    c.settimeout(IO_TIMEOUT)
    c.bind((CLIENT_IP, 0))
    c.connect((GW_IP, port))
    denied_port = c.getsockname()[1]
    try:
        c.sendall(b"ping\n")
        got = c.recv(100)
    except (ConnectionResetError, BrokenPipeError):
        got = b""
    c.close()
    check(got == b"", "the denied connection was relayed: %r" % got)
    gw.wait_log("refused", what="the refusal of the denied connection")
    # Both connections end; they may have shared one session (the first was still closing).
    gw.wait_log(": closed (", what="both connections to end", count=2)
    gw.wait_log("ended for 127.0.0.2", what="the session to end")
    check(gw.stop() == 0, "exit status on SIGTERM")
    check(gw.stderr() == "", "the gateway (or the plugin) wrote to stderr: %r" % gw.stderr()[:300])

    objs = []
    for i, line in enumerate(gw.stdout().splitlines()):
        try:
            o = json.loads(line)
        except ValueError as e:
            raise Failure("stdout line %d is not JSON (%s): %r" % (i + 1, e, line))
        check(isinstance(o, dict) and {"ts", "level", "msg"} <= set(o), "line %d: %r" % (i + 1, line))
        objs.append(o)
    mine = [o for o in objs if o.get("plugin") == "probe" and o["msg"].startswith("probe: ")]

    started = [o for o in mine if o["msg"] == "probe: started"]
    check(len(started) == 1, "no 'probe: started' line: %r" % mine)
    s = started[0]
    check(s["level"] == "info", "started at %r" % s["level"])
    check(s.get("headers_version") == version, "the installed headers say %r, meson %r" % (s.get("headers_version"), version))
    check(s.get("headers_version_hex") == (major << 16) | (minor << 8) | patch, "FWX_VERSION_HEX %r" % s)
    check(s.get("abi") == (major << 16) | minor, "FWX_ABI_VERSION %r is not %d.%d" % (s.get("abi"), major, minor))
    check(s.get("bad_key") == FWX_E_INVALIDARG, "Log with key 'Bad-Key' returned %r" % s.get("bad_key"))
    check(s.get("reserved_key") == FWX_E_INVALIDARG, "Log with key 'msg' returned %r" % s.get("reserved_key"))
    check(s.get("no_message") == FWX_E_POINTER, "Log with no message returned %r" % s.get("no_message"))
    check(s.get("debug_result") == FWX_S_FALSE, "a debug line at level info returned %r" % s.get("debug_result"))
    check(not any("must not appear" in o["msg"] or "debug line" in o["msg"] for o in objs),
          "a refused or filtered line was logged")

    acc = [o for o in mine if o["msg"].startswith("probe: accepted connection number")]
    check(len(acc) == 2, "%d accept lines, want 2: %r" % (len(acc), acc))
    for n, o in enumerate(acc, 1):
        check(o["level"] == "warn", "accept line at %r" % o["level"])
        check(o.get("probe_count") == n, "probe_count %r, want %d" % (o.get("probe_count"), n))
        check(o.get("note") == "q\"b\\n\nt\tc\x01 \u00e9", "the note did not round-trip: %r" % o.get("note"))
        check(o.get("client") == CLIENT_IP and isinstance(o.get("session"), int)
              and isinstance(o.get("connection"), int), "core fields missing: %r" % o)
        check(o.get("remote") == o.get("peer") and o["peer"].startswith(CLIENT_IP + ":"),
              "remote %r (the plugin's address field) vs peer %r" % (o.get("remote"), o.get("peer")))
    check(acc[1]["peer"] == "%s:%d" % (CLIENT_IP, denied_port), "the second is not the denied connection: %r" % acc[1])
    check(any(o["msg"] == "probe: stopping" for o in mine), "no line from FilterShutdown")

    # The core's lines about the Deny: the event by name, the plugin, the right addresses.
    conn = acc[1]["connection"]
    deny = [o for o in objs if o["msg"] == 'fwx: plugin "probe": denied AcceptedConnection on connection %d' % conn]
    check(len(deny) == 1, "no deny line naming the event: %r" % [o["msg"] for o in objs if "denied" in o["msg"]])
    check(deny[0].get("plugin") == "probe" and deny[0].get("event") == "AcceptedConnection"
          and deny[0].get("peer") == "%s:%d" % (CLIENT_IP, denied_port), "deny line fields: %r" % deny[0])
    want = "fwx: connection %d: AcceptedConnection %s:%d -> %s:%d refused: " % (conn, CLIENT_IP, denied_port, GW_IP, port)
    ref = [o for o in objs if o["msg"].startswith(want)]
    check(len(ref) == 1, "no refusal line %r: %r" % (want, [o["msg"] for o in objs if "refused" in o["msg"]]))
    log("ok: %d JSON lines; the out-of-tree probe logged through the host (version %s, abi %d.%d, bad calls "
        "refused), its fields and the core's arrived; the deny line reads %r" % (len(objs), version, major, minor,
                                                                                ref[0]["msg"]))


main(run)
