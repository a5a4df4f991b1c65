"""fwxctl against a running fwx-gateway: sessions and connections are listed while a client
is connected (tables and --json), plugins and stats are right, and everything is gone after.
SPDX-License-Identifier: MIT
"""
from gwtest import (EchoServer, Gateway, check, connect, free_port, log, main, program, roundtrip,
                    wait_until)

GW_IP = "127.0.0.1"


def run(tmp):
    echo = EchoServer()
    port = free_port()
    gw = Gateway(tmp, ["--listen", "%s:%d" % (GW_IP, port), "--upstream", "127.0.0.3:%d" % echo.port,
                       "--plugin", program("FWX_CONN_LOGGER")])

    st = gw.stats()
    check(st["sessions"] == 0 and st["connections"] == 0 and st["plugins"] == 1, "idle stats: %r" % st)
    plugins = [o for o in gw.ctl_json("plugins") if o.get("kind") == "plugin"]
    check(len(plugins) == 1 and plugins[0]["name"] == "conn-logger", "plugins: %r" % plugins)
    check("conn-logger" in gw.ctl("plugins").stdout, "the plugins table lacks conn-logger")
    # Each filter's GUID, what a policy's filters may name: in --json and in the table.
    guid = plugins[0].get("guid") or ""
    check(guid == "{c82feda9-0c53-49fd-9f2e-a761501d650f}", "plugin guid %r is not conn-logger's" % guid)
    table = gw.ctl("plugins").stdout.splitlines()
    check("GUID" in table[0].split() and any(guid in line and "conn-logger" in line for line in table[1:]),
          "the plugins table does not show the guid %s: %r" % (guid, table))
    log("ok: idle: no sessions, conn-logger loaded")

    c = connect(port)
    roundtrip(c, b"x" * 1000)
    sessions = [o for o in gw.ctl_json("sessions") if o.get("kind") == "session"]
    check(len(sessions) == 1, "sessions: %r" % sessions)
    s = sessions[0]
    check(s["client"] == "127.0.0.2" and s["name"] == "nat", "session: %r" % s)
    conns = [o for o in gw.ctl_json("connections") if o.get("kind") == "connection"]
    check(len(conns) == 1, "connections: %r" % conns)
    k = conns[0]
    check(k["session"] == s["id"], "the connection's session %r is not %r" % (k["session"], s["id"]))
    check(k["protocol"] == "tcp" and k["name"] == "primary" and k["mode"] == "user", "connection: %r" % k)
    check(k["peer"] == "127.0.0.2:%d" % c.getsockname()[1], "peer %r is not the client" % k["peer"])
    check(k["local"] == "%s:%d" % (GW_IP, port), "local %r is not the published port" % k["local"])
    wait_until(lambda: [o for o in gw.ctl_json("connections") if o.get("kind") == "connection"][0]
               ["bytes_in"] == 1000, what="bytes_in to reach 1000")
    st = gw.stats()
    check(st["sessions"] == 1 and st["connections"] == 1, "live stats: %r" % st)
    everything = gw.ctl_json("all")
    check({o.get("kind") for o in everything} >= {"plugin", "session", "connection"}, "all: %r" % everything)
    table = gw.ctl("sessions").stdout
    check("127.0.0.2" in table and "nat" in table, "the sessions table:\n" + table)
    table = gw.ctl("connections").stdout
    check(c.getsockname()[0] in table and str(port) in table, "the connections table:\n" + table)
    log("ok: a live client shows as a session and a connection (tables and --json)")

    c.close()
    wait_until(lambda: gw.stats()["connections"] == 0, what="the connection to go")
    check(not [o for o in gw.ctl_json("sessions") if o.get("kind") == "session"], "sessions left")
    check(gw.stop() == 0, "exit status")
    log("ok: nothing left after the client has gone")


main(run)
