"""Prometheus metrics of a running fwx-gateway, scraped with curl from its
metrics_listen and read with `fwxctl metrics`: the figures move by exactly what real traffic
did (a relayed connection's bytes, one session, one connection, one refusal, the plugin's
handler calls); the HTTP listener answers only GET /metrics and refuses the rest; a reload
moves the listener and names at warn a gateway key that needs a restart.
SPDX-License-Identifier: MIT
"""
import os
import re
import shutil
import stat
import socket
import subprocess

from gwtest import (EchoServer, Gateway, GW_IP, IO_TIMEOUT, check, free_port, log, main, program, roundtrip,
                    skip, two_services_site, wait_until, write_file)


LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+|\+Inf)$')


def parse(text):
    """The exposition as {"name{labels}": value}; every line must be a comment or a sample."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = LINE.match(line)
        check(m is not None, "not a sample line: %r" % line)
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def scrape(port):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-D", "-", "http://%s:%d/metrics" % (GW_IP, port)],
                       capture_output=True, text=True, timeout=15)
    check(r.returncode == 0, "curl: %s" % r.stderr)
    head, _, body = r.stdout.partition("\n\n")  # text=True has turned CRLF into LF
    check(head.startswith("HTTP/1.1 200 ") and "text/plain; version=0.0.4" in head, "headers: %r" % head)
    return parse(body)


def http_status(port, raw):
    """Sends raw bytes, returns the status line of the answer ("" if closed without one)."""
    s = socket.create_connection((GW_IP, port), timeout=IO_TIMEOUT)
    try:
        s.sendall(raw)
        data = b""
        while b"\r\n" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
        return data.split(b"\r\n", 1)[0].decode("ascii", "replace")
    finally:
        s.close()


def run(tmp):
    if shutil.which("curl") is None:
        skip("curl is not installed")
    echo = EchoServer()
    lport, rport, mport = free_port(), free_port(), free_port()
    cfg = os.path.join(tmp, "gw.cfg")
    write_file(cfg, two_services_site(lport, rport, echo.port, 'metrics_listen = "%s:%d";' % (GW_IP, mport)))
    gw = Gateway(tmp, ["--config", cfg, "--plugin", program("FWX_CONN_LOGGER")])

    m0 = scrape(mport)
    for key in ('fwx_sessions', 'fwx_connections{mode="user",backend="proxy"}',
                'fwx_connections{mode="kernel",backend="proxy"}', 'fwx_permissions', 'fwx_bound_ports',
                'fwx_refusals_total{reason="protocol_rules"}', 'fwx_bytes_total{direction="from_client"}',
                'fwx_plugin_handler_seconds_count{plugin="conn-logger"}',
                'fwx_plugin_handler_seconds_bucket{plugin="conn-logger",le="+Inf"}', 'fwx_loop_lag_seconds'):
        check(key in m0, "%s missing from the exposition" % key)
    check(m0['fwx_sessions'] == 0 and m0['fwx_bytes_total{direction="from_client"}'] == 0, "idle: %r" % m0)
    log("ok: an idle gateway exposes every family")

    # A live connection: the gauges show it, the bytes it has carried count already.
    c = socket.create_connection((GW_IP, lport), timeout=IO_TIMEOUT, source_address=("127.0.0.2", 0))
    roundtrip(c, b"x" * 100)
    m1 = wait_until(lambda: (lambda m: m if m['fwx_bytes_total{direction="from_peer"}'] == 100 else None)(
        scrape(mport)), what="100 bytes from the peer")
    check(m1['fwx_sessions'] == 1 and m1['fwx_connections{mode="user",backend="proxy"}'] == 1,
          "live gauges: %r" % m1)
    check(m1['fwx_bytes_total{direction="from_client"}'] == 100, "live bytes: %r" % m1)
    roundtrip(c, b"y" * 12245)
    c.close()
    m2 = wait_until(lambda: (lambda m: m if m['fwx_connections_closed_total{mode="user",backend="proxy"}'] == 1
                             else None)(scrape(mport)), what="the connection to be counted closed")
    check(m2['fwx_bytes_total{direction="from_client"}'] == 12345 and
          m2['fwx_bytes_total{direction="from_peer"}'] == 12345,
          "bytes after the connection: %r" % {k: v for k, v in m2.items() if "bytes" in k})
    check(m2['fwx_connections_opened_total{mode="user",backend="proxy"}'] == 1 and
          m2['fwx_sessions_opened_total'] == 1 and m2['fwx_connections{mode="user",backend="proxy"}'] == 0,
          "connection counters: %r" % m2)
    calls = m2['fwx_plugin_handler_seconds_count{plugin="conn-logger"}']
    check(calls > m0['fwx_plugin_handler_seconds_count{plugin="conn-logger"}'] and
          m2['fwx_plugin_handler_seconds_bucket{plugin="conn-logger",le="+Inf"}'] == calls,
          "the plugin's handler calls did not move: %r" % calls)
    log("ok: one relayed connection of 12345 bytes each way moves the counters by exactly that")

    r = socket.create_connection((GW_IP, rport), timeout=IO_TIMEOUT, source_address=("127.0.0.2", 0))
    check(r.recv(1) == b"", "the refused connection got data")
    r.close()
    m3 = wait_until(lambda: (lambda m: m if m['fwx_refusals_total{reason="protocol_rules"}'] == 1 else None)(
        scrape(mport)), what="the refusal to be counted")
    check(m3['fwx_refusals_total{reason="other"}'] == 0 and m3['fwx_bytes_total{direction="from_client"}'] == 12345,
          "after a refusal: %r" % m3)
    text = gw.ctl("metrics").stdout
    via_ctl = parse(text)
    check(set(via_ctl) == set(m3) and via_ctl['fwx_refusals_total{reason="protocol_rules"}'] == 1,
          "fwxctl metrics differs from the HTTP listener")
    log("ok: a refusal counts under its reason; fwxctl metrics exposes the same samples")

    check(http_status(mport, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 405"), "POST")
    check(http_status(mport, b"GET /other HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 404"), "GET /other")
    check(http_status(mport, b"GET /metrics\r\n\r\n").startswith("HTTP/1.1 400"), "no version")
    check(http_status(mport, b"GET /metrics HTTP/1.1 x\r\n\r\n").startswith("HTTP/1.1 400"), "extra word")
    check(http_status(mport, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000).startswith("HTTP/1.1 431"),
          "an endless header")
    check(http_status(mport, b"GET /metrics\x00 HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 400"), "a NUL")
    log("ok: only GET /metrics is served; bad requests get 400, 404, 405 or 431")

    # A reload moves the listener and names a key that needs a restart.
    mport2 = free_port()
    write_file(cfg, two_services_site(lport, rport, echo.port, 'metrics_listen = "%s:%d"; timeout = 30; control_mode = "0660";'
                         % (GW_IP, mport2)))
    check(gw.ctl("reload").stdout.strip() == "policy reloaded", "reload")
    gw.wait_log("gateway.timeout changed: it takes effect at the next start")
    check(stat.S_IMODE(os.stat(gw.sock).st_mode) == 0o660, "control_mode was not applied live")
    check("gateway.control_mode changed" not in gw.stdout(), "control_mode named as needing a restart")
    check(scrape(mport2)['fwx_sessions_opened_total'] == 2, "the moved listener")
    check(http_status_refused(mport), "the old metrics port still answers")
    log("ok: a reload moves metrics_listen and changes control_mode live, and names gateway.timeout at warn")
    check(gw.stop() == 0, "exit status")


def http_status_refused(port):
    try:
        socket.create_connection((GW_IP, port), timeout=IO_TIMEOUT).close()
        return False
    except ConnectionRefusedError:
        return True


main(run)
