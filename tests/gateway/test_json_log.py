"""fwx-gateway --log-format json writes one JSON object per line on stdout, each with ts, level
and msg, quotes and backslashes escaped; and `log_format = "json"` in the file does the same.
SPDX-License-Identifier: MIT
"""
import json
import os
import re

from gwtest import (EchoServer, Failure, Gateway, check, echo_once, free_port, log, main, policy,
                    program, write_file)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"error", "warn", "info", "debug"}


def parse(gw):
    lines = gw.stdout().splitlines()
    check(len(lines) >= 3, "only %d log lines" % len(lines))
    objs = []
    for i, line in enumerate(lines):
        try:
            o = json.loads(line)
        except ValueError as e:
            raise Failure("stdout line %d is not JSON (%s): %r" % (i + 1, e, line))
        check(isinstance(o, dict), "line %d is not an object: %r" % (i + 1, line))
        check(set(o) >= {"ts", "level", "msg"}, "line %d lacks ts/level/msg: %r" % (i + 1, line))
        check(isinstance(o["ts"], str) and TS.match(o["ts"]), "line %d: bad ts %r" % (i + 1, o["ts"]))
        check(o["level"] in LEVELS, "line %d: bad level %r" % (i + 1, o["level"]))
        check(isinstance(o["msg"], str) and o["msg"], "line %d: bad msg %r" % (i + 1, o["msg"]))
        objs.append(o)
    return objs


def run(tmp):
    plugin = program("FWX_CONN_LOGGER")
    echo = EchoServer()

    # The quick form, a name that needs escaping, --verbose for debug lines, a session.
    name = 'gw "q" \\ t'
    port = free_port()
    gw = Gateway(tmp, ["--listen", "127.0.0.1:%d" % port, "--upstream", "127.0.0.3:%d" % echo.port,
                       "--plugin", plugin, "--log-format", "json", "--name", name, "--verbose"])
    echo_once(port)
    gw.wait_log("ended for 127.0.0.2", what="the session to end")
    check(gw.stop() == 0, "exit status on SIGTERM")
    objs = parse(gw)
    msgs = [o["msg"] for o in objs]
    check(any(name in m for m in msgs), "the escaped name %r did not survive: %r" % (name, msgs[:4]))
    check(any("ready" in m for m in msgs), "no ready line")
    check(any("opened for 127.0.0.2" in m for m in msgs), "no session line")
    check(any(m.startswith("fwx-gateway: signal 15") for m in msgs), "no shutdown line")
    log("ok: %d lines, each a JSON object with ts, level, msg; the name %r round-trips" % (len(objs), name))

    # The same from the configuration file's gateway group.
    port2 = free_port()
    cfg = os.path.join(tmp, "json.cfg")
    write_file(cfg, policy([(port2, echo.port)], gateway_group='  log_format = "json";'))
    gw2 = Gateway(tmp, ["--config", cfg], name="gateway2")
    echo_once(port2)
    gw2.wait_log("ended for 127.0.0.2", what="the session to end")
    check(gw2.stop() == 0, "exit status on SIGTERM")
    objs = parse(gw2)
    log("ok: log_format = \"json\" in the file: %d JSON lines" % len(objs))


main(run)
