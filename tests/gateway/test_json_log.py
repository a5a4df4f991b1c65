"""fwx-gateway --log-format json writes one JSON object per line on stdout, each with ts, level
and msg, quotes and backslashes escaped; and `log_format = "json"` in the file does the same.
The core's lines carry their fields (session, client, connection, peer, rule, bytes_in/out);
a plugin's lines (conn-logger, ftp) arrive through the host's sink, never on stderr, at their
level and with the plugin's name and fields, so the whole stream stays JSON.
SPDX-License-Identifier: MIT
"""
import json
import os
import re
import socket
import threading

from gwtest import (CLIENT_IP, GW_IP, IO_TIMEOUT, SERVER_IP, EchoServer, Failure, Gateway, check,
                    echo_once, free_port, log, main, policy, program, write_file)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"error", "warn", "info", "debug"}


def parse_lines(text, what="stdout"):
    """Every line of text as a JSON object with ts, level and msg; fails on anything else."""
    objs = []
    for i, line in enumerate(text.splitlines()):
        try:
            o = json.loads(line)
        except ValueError as e:
            raise Failure("%s line %d is not JSON (%s): %r" % (what, i + 1, e, line))
        check(isinstance(o, dict), "line %d is not an object: %r" % (i + 1, line))
        check(set(o) >= {"ts", "level", "msg"}, "line %d lacks ts/level/msg: %r" % (i + 1, line))
        check(isinstance(o["ts"], str) and TS.match(o["ts"]), "line %d: bad ts %r" % (i + 1, o["ts"]))
        check(o["level"] in LEVELS, "line %d: bad level %r" % (i + 1, o["level"]))
        check(isinstance(o["msg"], str) and o["msg"], "line %d: bad msg %r" % (i + 1, o["msg"]))
        objs.append(o)
    return objs


def parse(gw):
    objs = parse_lines(gw.stdout())
    check(len(objs) >= 3, "only %d log lines" % len(objs))
    check(gw.stderr() == "", "the gateway wrote to stderr: %r" % gw.stderr()[:300])
    return objs


def one(objs, pred, what):
    """The one line for which pred holds."""
    got = [o for o in objs if pred(o)]
    check(len(got) == 1, "%d lines for %s (want 1): %r" % (len(got), what, got[:3]))
    return got[0]


class FtpServer:
    """A minimal FTP server on 127.0.0.3 for one control connection: 220, then 200 to every
    command and 221 to QUIT. Records the lines it received."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.bind((SERVER_IP, 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        with c:
            c.settimeout(IO_TIMEOUT)
            c.sendall(b"220 test server\r\n")
            f = c.makefile("rb")
            for _ in range(100):
                line = f.readline()
                if not line:
                    break
                self.received.append(line)
                if line.startswith(b"QUIT"):
                    c.sendall(b"221 bye\r\n")
                    break
                c.sendall(b"200 ok\r\n")
            f.close()  # the file object holds the socket open: the gateway must see the close

    def stop(self):
        self.sock.close()
        self.thread.join(IO_TIMEOUT)


def ftp_refusal(tmp):
    """A PORT naming a third party: the client gets the refusal, the server never sees it, and
    the ftp plugin's line arrives through the gateway's JSON sink at warn, with its fields."""
    srv = FtpServer()
    port = free_port()
    gw = Gateway(tmp, ["--listen", "%s:%d" % (GW_IP, port), "--upstream", "%s:%d" % (SERVER_IP, srv.port),
                       "--plugin", program("FWX_FTP_PLUGIN"), "--log-format", "json"], name="gateway-ftp")
    c = socket.socket()
    c.settimeout(IO_TIMEOUT)
    c.bind((CLIENT_IP, 0))
    c.connect((GW_IP, port))
    client_port = c.getsockname()[1]
    f = c.makefile("rb")
    check(f.readline().startswith(b"220"), "no greeting")
    c.sendall(b"PORT 192,0,2,99,4,1\r\n")
    reply = f.readline()
    check(reply.startswith(b"500 "), "PORT to a third party: got %r, want a 500 refusal" % reply)
    c.sendall(b"QUIT\r\n")
    check(f.readline().startswith(b"221"), "no 221 to QUIT")
    f.close()
    c.close()
    gw.wait_log("ended for 127.0.0.2", what="the session to end")
    check(gw.stop() == 0, "exit status on SIGTERM")
    srv.stop()
    check(not any(l.startswith(b"PORT") for l in srv.received), "the refused PORT reached the server: %r"
          % srv.received)
    objs = parse(gw)
    r = one(objs, lambda o: o.get("plugin") == "ftp" and "refused" in o["msg"], "the ftp refusal")
    check(r["level"] == "warn", "the refusal is at %r, want warn" % r["level"])
    check(r["msg"] == 'ftp: session 127.0.0.2: refused "PORT 192,0,2,99,4,1": bounce to a third party',
          "refusal text: %r" % r["msg"])
    check(r.get("line") == "PORT 192,0,2,99,4,1" and r.get("reason") == "bounce to a third party",
          "the plugin's own fields: %r" % r)
    check(isinstance(r.get("session"), int) and isinstance(r.get("connection"), int),
          "session/connection ids missing: %r" % r)
    check(r.get("client") == CLIENT_IP, "client field: %r" % r.get("client"))
    check(r.get("peer") == "%s:%d" % (CLIENT_IP, client_port), "peer field: %r (client port %d)"
          % (r.get("peer"), client_port))
    check(r.get("rule") == "publish %s:%d" % (GW_IP, port), "rule field: %r" % r.get("rule"))
    # The core's lines about the same connection share its ids; the last one has the bytes.
    closed = one(objs, lambda o: o.get("connection") == r["connection"] and "closed" in o["msg"],
                 "the connection's end")
    check(closed["session"] == r["session"], "closed line in another session: %r" % closed)
    check(closed.get("bytes_in") == len(b"PORT 192,0,2,99,4,1\r\nQUIT\r\n"),
          "bytes_in %r: want the client's 27 bytes" % closed.get("bytes_in"))
    check(isinstance(closed.get("bytes_out"), int) and closed["bytes_out"] > 0, "bytes_out: %r" % closed)
    loaded = one(objs, lambda o: "loaded from" in o["msg"], "the plugin's load")
    check(loaded.get("plugin") == "ftp", "load line without the plugin field: %r" % loaded)
    log("ok: the ftp plugin's refusal came through the JSON sink at warn with session %d, connection %d, "
        "client, peer, rule, line and reason; the connection's end has bytes_in/bytes_out"
        % (r["session"], r["connection"]))


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
    # conn-logger logs through the host: its lines are JSON too, with the plugin's name.
    acc = one(objs, lambda o: o.get("plugin") == "conn-logger" and "accept from" in o["msg"],
              "conn-logger's accept line")
    check(acc["level"] == "info" and acc["msg"].startswith("conn-logger: session 127.0.0.2: accept from 127.0.0.2:"),
          "conn-logger line: %r" % acc)
    check(isinstance(acc.get("session"), int) and isinstance(acc.get("connection"), int)
          and acc.get("client") == "127.0.0.2", "conn-logger line without its fields: %r" % acc)
    log("ok: %d lines, each a JSON object with ts, level, msg; the name %r round-trips; "
        "conn-logger's lines are among them with their fields" % (len(objs), name))

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

    ftp_refusal(tmp)


main(run)
