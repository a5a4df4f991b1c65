"""fwxctl that acts, against a running fwx-gateway with real clients:
filters on lists, kill of a connection and of a session (the clients see their sockets end),
explain (the decision with its rule, networks and relationship), reload, the event stream
(text and --json) with the exact bytes a relayed connection carried, and a read-only
(operator) control socket with its mode and group, whose refused commands are logged.
SPDX-License-Identifier: MIT
"""
import grp
import json
import os
import select
import socket
import stat
import subprocess

from gwtest import (EchoServer, Failure, Gateway, GW_IP, IO_TIMEOUT, check, free_port, log, main, program,
                    roundtrip, two_services_site, wait_until, write_file)

OTHER_CLIENT = "127.0.0.4"


def client(port, src):
    s = socket.create_connection((GW_IP, port), timeout=IO_TIMEOUT, source_address=(src, 0))
    return s


def ended(s):
    """True when the gateway closed (or reset) this client's connection, within the timeout."""
    r, _, _ = select.select([s], [], [], IO_TIMEOUT)
    if not r:
        return False
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


class Events:
    """fwxctl [--json] events in the background, its lines read as they come (raw reads, so
    that select() and the buffer never disagree)."""

    def __init__(self, gw, as_json):
        self.proc = subprocess.Popen([program("FWXCTL"), "--socket", gw.sock] + (["--json"] if as_json else []) +
                                     ["events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self.partial = b""
        if as_json:
            self.wait_for(lambda l: l == '{"kind":"events","started":true}', "the event stream to start")
        else:
            err = b""
            while b"listening for events" not in err:
                r, _, _ = select.select([self.proc.stderr], [], [], IO_TIMEOUT)
                check(r, "fwxctl events did not say it listens: %r" % err)
                data = os.read(self.proc.stderr.fileno(), 4096)
                check(data, "fwxctl events ended: %r" % err)
                err += data

    def wait_for(self, pred, what):
        def more():
            for line in self.lines:
                if pred(line):
                    return line
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                data = os.read(self.proc.stdout.fileno(), 65536)
                if data == b"":
                    self.proc.kill()
                    raise Failure("fwxctl events ended (%s): %r" % (self.proc.wait(5), self.proc.stderr.read()))
                self.partial += data
                *done, self.partial = self.partial.split(b"\n")
                self.lines += [l.decode() for l in done]
            return None
        return wait_until(more, what=what)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def run(tmp):
    echo = EchoServer()
    lport, rport = free_port(), free_port()
    cfg = os.path.join(tmp, "gw.cfg")
    write_file(cfg, two_services_site(lport, rport, echo.port))
    gw = Gateway(tmp, ["--config", cfg, "--plugin", program("FWX_CONN_LOGGER")])

    # ---- events, while real clients come and go
    ev_json = Events(gw, True)
    ev_text = Events(gw, False)
    a = client(lport, "127.0.0.2")
    roundtrip(a, b"a" * 1234)
    a.close()
    closed = json.loads(ev_json.wait_for(lambda l: '"connection-closed"' in l, "a connection-closed event"))
    check(closed["bytes_in"] == 1234 and closed["bytes_out"] == 1234,
          "connection-closed carries %r/%r bytes, not 1234/1234" % (closed["bytes_in"], closed["bytes_out"]))
    check(closed["client"] == "127.0.0.2" and closed["rule"] == "svc in" and closed["mode"] == "user",
          "connection-closed: %r" % closed)
    opened = [json.loads(l) for l in ev_json.lines if '"connection-opened"' in l]
    check(len(opened) == 1 and opened[0]["id"] == closed["id"], "connection-opened: %r" % opened)
    check(any('"session-opened"' in l for l in ev_json.lines), "no session-opened event: %r" % ev_json.lines)
    line = ev_text.wait_for(lambda l: l.startswith("[connection-closed]"), "the text event line")
    check("bytes_in=1234" in line and "client=127.0.0.2" in line, "text event: %r" % line)
    # A refusal: the second rule's protocol is allowed by no rule.
    b = client(rport, "127.0.0.2")
    check(ended(b), "the refused client was not closed")
    b.close()
    refused = json.loads(ev_json.wait_for(lambda l: '"connection-refused"' in l, "a connection-refused event"))
    check(refused["reason"] == "protocol_rules" and refused["code"] == "FWX_E_PROTOCOL_RULES_DENIED" and
          refused["rule"] == "default", "connection-refused: %r" % refused)
    ev_text.stop()
    ev_json.stop()
    log("ok: events: session, connection opened and closed (exact bytes), refused (reason, rule), text and json")

    # ---- filters
    c1 = client(lport, "127.0.0.2")
    roundtrip(c1, b"1" * 10)
    c2 = client(lport, OTHER_CLIENT)
    roundtrip(c2, b"2" * 20)
    conns = [o for o in gw.ctl_json("connections") if o.get("kind") == "connection"]
    check(len(conns) == 2, "connections: %r" % conns)
    only = [o for o in json_lines(gw.ctl("--json", "--client", OTHER_CLIENT, "connections").stdout)]
    check(len(only) == 1 and only[0]["client"] == OTHER_CLIENT, "--client %s: %r" % (OTHER_CLIENT, only))
    sid = only[0]["session"]
    mine = json_lines(gw.ctl("--json", "-i", str(sid), "all").stdout)
    check({o["kind"] for o in mine} == {"session", "connection"} and all(
        o.get("session") == sid for o in mine), "--session %d: %r" % (sid, mine))
    check(json_lines(gw.ctl("--json", "-m", "kernel", "connections").stdout) == [], "--mode kernel lists something")
    check(len(json_lines(gw.ctl("--json", "-m", "user", "connections").stdout)) == 2, "--mode user")
    port1 = c1.getsockname()[1]
    byaddr = json_lines(gw.ctl("--json", "--address", "127.0.0.2:%d" % port1, "connections").stdout)
    check(len(byaddr) == 1 and byaddr[0]["peer"] == "127.0.0.2:%d" % port1, "--address: %r" % byaddr)
    check(len(json_lines(gw.ctl("--json", "-a", "%s:%d" % (GW_IP, lport), "connections").stdout)) == 2,
          "--address of the listener")
    check([o["name"] for o in json_lines(gw.ctl("--json", "-p", "conn-logger", "plugins").stdout)] == ["conn-logger"],
          "--plugin conn-logger")
    check(json_lines(gw.ctl("--json", "-p", "nope", "plugins").stdout) == [], "--plugin nope lists something")
    table = gw.ctl("-c", OTHER_CLIENT, "sessions").stdout
    check(OTHER_CLIENT in table and "127.0.0.2 " not in table, "sessions table with --client:\n" + table)
    r = gw.ctl("-m", "sideways", "connections", ok=False)
    check(r.returncode == 1 and "mode= takes user or kernel" in r.stderr, "a bad --mode: %d %r" % (r.returncode, r.stderr))
    r = gw.ctl("-c", "1.2.3.4", "stats", ok=False)
    check(r.returncode == 2, "a filter on stats was not refused")
    log("ok: --client, --session, --mode, --address, --plugin filter the lists")

    # ---- kill
    cid = [o for o in json_lines(gw.ctl("--json", "-c", "127.0.0.2", "connections").stdout)][0]["id"]
    r = gw.ctl("kill", "connection", str(cid))
    check(r.stdout.strip() == "killed connection %d" % cid, "kill: %r" % r.stdout)
    check(ended(c1), "the killed connection's client still has an open socket")
    wait_until(lambda: len(gw.ctl_json("connections")) == 1, what="one connection left")
    gw.wait_log("connection %d: killed by the operator" % cid)
    r = gw.ctl("kill", "session", str(sid))
    check(ended(c2), "the killed session's client still has an open socket")
    wait_until(lambda: gw.ctl_json("sessions") == [] or all(
        o["id"] != sid for o in gw.ctl_json("sessions")), what="the session to go")
    r = gw.ctl("kill", "connection", "999999", ok=False)
    check(r.returncode == 1 and "no such object" in r.stderr, "kill of nothing: %d %r" % (r.returncode, r.stderr))
    r = gw.ctl("kill", "socket", "1", ok=False)
    check(r.returncode == 1 and "usage: kill" in r.stderr, "kill socket: %r" % r.stderr)
    c1.close()
    c2.close()
    log("ok: kill connection and kill session end the clients' sockets; unknown ids are refused")

    # ---- explain
    x = json_lines(gw.ctl("--json", "explain", "127.0.0.2", GW_IP, "tcp/%d" % lport).stdout)[0]
    check(x["allowed"] is True and x["rule"] == "svc in" and x["rule_line"] == 9 and x["protocol"] == "svc" and
          x["relationship"] == "published" and x["published"] == "pub svc", "explain allowed: %r" % x)
    x = json_lines(gw.ctl("--json", "explain", "127.0.0.2", GW_IP, "tcp/%d" % rport).stdout)[0]
    check(x["allowed"] is False and x["code"] == "FWX_E_PROTOCOL_RULES_DENIED" and x["rule"] == "default" and
          x["protocol"] == "shut", "explain refused: %r" % x)
    x = json_lines(gw.ctl("--json", "explain", "127.0.0.2", "192.0.2.1", "udp/53").stdout)[0]
    check(x["allowed"] is False and x["source_network"] == "localhost" and x["destination_network"] == "external"
          and x["relationship"] == "route", "explain outbound: %r" % x)
    text = gw.ctl("explain", "127.0.0.2", GW_IP, "tcp/%d" % lport).stdout
    check(text.startswith("allowed: ") and "svc in (line 9)" in text, "explain text:\n" + text)
    r = gw.ctl("explain", "127.0.0.2", GW_IP, "sctp/1", ok=False)
    check(r.returncode == 1 and "tcp/PORT or udp/PORT" in r.stderr, "explain sctp: %r" % r.stderr)
    log("ok: explain names the rule and line, the protocol, the networks and the relationship")

    # ---- reload
    write_file(cfg, two_services_site(lport, rport, echo.port).replace('protocols = [ "svc" ]', 'protocols = [ "svc", "shut" ]'))
    r = gw.ctl("reload")
    check(r.stdout.strip() == "policy reloaded", "reload: %r" % r.stdout)
    x = json_lines(gw.ctl("--json", "explain", "127.0.0.2", GW_IP, "tcp/%d" % rport).stdout)[0]
    check(x["allowed"] is True, "after the reload, explain still refuses: %r" % x)
    write_file(cfg, "gateway = { nonsense = 1; };\n")
    r = gw.ctl("reload", ok=False)
    check(r.returncode == 1 and "reload refused" in r.stdout and "gw.cfg:1" in r.stdout, "bad reload: %r" % r.stdout)
    log("ok: reload applies a policy and refuses a broken file, naming file:line")
    check(gw.stop() == 0, "exit status")

    # ---- an operator socket: mode, group, level
    group = pick_group()
    admin_sock = os.path.join(tmp, "admin.sock")
    write_file(cfg, two_services_site(lport, rport, echo.port, 'control_mode = "0660"; control_group = "%s"; '
                                                  'control_level = "operator"; control_sockets = ( { path = "%s"; '
                                                  'level = "admin"; } );' % (group, admin_sock)))
    gw = Gateway(tmp, ["--config", cfg], name="operator")
    st = os.stat(gw.sock)
    check(stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam(group).gr_gid,
          "socket mode %o gid %d" % (stat.S_IMODE(st.st_mode), st.st_gid))
    check(gw.stats()["plugins"] == 0, "an operator socket cannot list")
    check(json_lines(gw.ctl("--json", "explain", "127.0.0.2", GW_IP, "tcp/%d" % lport).stdout)[0]["allowed"],
          "an operator cannot explain")
    for args in (["kill", "session", "1"], ["reload"]):
        r = gw.ctl(*args, ok=False)
        check(r.returncode == 1 and "permission denied" in r.stderr and "needs level admin" in r.stderr,
              "%s on an operator socket: %d %r" % (args[0], r.returncode, r.stderr))
        gw.wait_log('"%s" refused: this socket\'s level is operator' % args[0])
    # The second socket (gateway.control_sockets) is an admin's: 0600, and it may reload.
    check(stat.S_IMODE(os.stat(admin_sock).st_mode) == 0o600, "the admin socket's mode")
    r = subprocess.run([program("FWXCTL"), "-s", admin_sock, "reload"], capture_output=True, text=True, timeout=15)
    check(r.returncode == 0 and r.stdout.strip() == "policy reloaded", "reload on the admin socket: %r" % r.stdout)
    check(gw.stop() == 0, "exit status")
    check(not os.path.exists(admin_sock), "the second socket was left behind")
    log("ok: an operator socket (0660, group %s) looks but may not kill or reload; refusals are logged; a second "
        "socket of level admin may" % group)


def pick_group():
    for name in ("nogroup", "daemon", "adm", "root"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            pass
    return "root"


def json_lines(text):
    out = []
    for line in text.splitlines():
        o = json.loads(line)
        check(isinstance(o, dict), "not an object: %r" % line)
        out.append(o)
    return out


main(run)
