"""Idle and handshake timeouts per protocol (issue 16, item 7), on the dual-homed topology of
tests/netns/test_gateway_proxy.py (client ns -- gateway ns, IP forwarding off -- server ns),
fwx-gateway (proxy backend, FTP filter) publishing a strict vsftpd on three ports, one protocol
definition each:

  10.98.1.1:21    protocol "ftp-idle":  idle_timeout = 2,  handshake_timeout = 0 (none)
  10.98.1.1:2121  protocol "ftp-hs":    idle_timeout = 30, handshake_timeout = 3
  10.98.1.1:2122  protocol "ftp-xfer":  idle_timeout = 3,  the gateway group's handshake (20)

- a slow-drip client (logged in, then one byte every 4 s) is cut at the idle timeout, and the
  gateway's line names the client, the protocol and the idle limit;
- a client that keeps sending bytes but never logs in is cut at the handshake timeout (its
  bytes keep the idle limit away: only the handshake limit can end it);
- a client that logs in at once, then stays quiet longer than the handshake limit, is not cut
  (the FTP filter ends the handshake at the server's 230) and its NOOP still gets 200;
- curl downloads from a server whose link is shaped (tc tbf) so that they last more than twice
  the control connection's idle limit, in passive and active mode: the control connection is silent meanwhile, the data
  connection's bytes keep it alive, and the file arrives whole;
- fwxctl stats counts the connections each limit ended;
- after SIGHUP new connections get the new limits, a protocol's own and the gateway group's;
- bad values (a string, a negative number, a fraction, above a week) are refused at
  file:line, in a protocol definition and in the gateway group;
- in kernel mode (backend "nft", forwarding on, the client connecting to the server's own
  address), the intercepted control connection has the same limits (skipped with a note where
  the nft backend cannot start).

Root, `ip`, `tc`, vsftpd and curl are needed (vsftpd is installed when missing); otherwise exit 77.
SPDX-License-Identifier: MIT
"""
import json
import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
import test_gateway_proxy as dh  # noqa: E402  (the topology and vsftpd of the dual-homed test)
from gwtest import (ftp_plugin, Failure, Gateway, gateways_stopped, check, log, main, sha256_file, skip,  # noqa: E402
                    write_file)

C4, G4_IN, G4_OUT, S4 = dh.C4, dh.G4_IN, dh.G4_OUT, dh.S4
FTP_GUID = dh.FTP_GUID
PAYLOAD_SIZE = 1024 * 1024
# The server's link is shaped to this (tc tbf on its egress) for the transfers: 1 MiB then
# takes about 8 s, more than twice ftp-xfer's idle limit. (curl's --limit-rate lets FTP
# downloads burst far past the rate, so the link is what is slow.) The server's side, not the
# client's: bytes the gateway has handed to the kernel drain toward a slow client unseen by
# fwx, and with a 3 s limit a few seconds of that would make the case about socket buffers.
RATE = "1mbit"

PROTOCOLS = {  # name: (port, extra keys)
    "ftp-idle": (21, "idle_timeout = 2; handshake_timeout = 0;"),
    "ftp-hs": (2121, "idle_timeout = 30; handshake_timeout = 3;"),
    "ftp-xfer": (2122, "idle_timeout = 3;"),
}


def config(tmp, plugin, gateway_extra="idle_timeout = 30; handshake_timeout = 20;", proto_extra=None, protocols=None):
    protos, pubs = [], []
    for i, (name, (port, extra)) in enumerate(sorted((protocols or PROTOCOLS).items())):
        if proto_extra is not None and name == "ftp-hs":
            extra = proto_extra
        protos.append('  { name = "%s"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-0000001600%02x}"; protocol = "tcp";\n'
                      '    port = %d; direction = "inbound"; filters = [ "%s" ];\n    %s }'
                      % (name, i, port, FTP_GUID, extra))
        pubs.append('  { name = "pub-%s"; listen = "%s:%d"; server = "%s:21"; protocol = "%s"; full_proxy = true; }'
                    % (name, G4_IN, port, S4, name))
    path = os.path.join(tmp, "timeouts.cfg")
    write_file(path, """gateway = {
  name = "timeouts%d";
  backend = "proxy";
  plugin_dir = "%s";
  plugins = [ "ftp" ];
  local_addresses = [ "%s", "%s" ];
  port_range = "43000-43999";
  log_level = "info";
  %s
};
networks = { internal = { ranges = [ "10.98.1.0/24" ]; };
             dmz = { ranges = [ "10.98.2.0/24" ]; };
             localhost = { ranges = [ "%s/32", "%s/32" ]; }; };
relationships = ( { from = "internal"; to = "dmz"; type = "nat"; } );
protocols = (
%s
);
rules = ( { name = "publish"; action = "allow"; from = [ "internal", "external" ];
            to = [ "localhost", "internal", "dmz", "external" ]; protocols = [ "%s" ]; } );
publishing = (
%s
);
""" % (os.getpid(), os.path.dirname(plugin), G4_IN, G4_OUT, gateway_extra, G4_IN, G4_OUT, ",\n".join(protos),
       '", "'.join(sorted(PROTOCOLS)), ",\n".join(pubs)))
    return path


# The client side of the timing cases, run in the client namespace. Prints one JSON object:
# closed (the gateway ended the connection), after (seconds from connect, or from the end of the
# login for "drip"), quiet (seconds since the client last sent a byte), got (what it read).
CLIENT = r"""
import json, select, socket, sys, time
gw, port, mode, period, bound = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
s = socket.create_connection((gw, port), timeout=10)
t0 = time.monotonic()
got = b""

def wait_for(code, limit=10):
    global got
    end = time.monotonic() + limit
    while ("\n%s " % code).encode() not in b"\n" + got and time.monotonic() < end:
        r, _, _ = select.select([s], [], [], 0.2)
        if r:
            d = s.recv(4096)
            if not d:
                break
            got += d
    return ("\n%s " % code).encode() in b"\n" + got

if not wait_for(220):
    print(json.dumps({"error": "no 220: %r" % got})); sys.exit(0)
if mode in ("drip", "quiet"):
    s.sendall(b"USER anonymous\r\n")
    if not wait_for(230):
        print(json.dumps({"error": "no 230: %r" % got})); sys.exit(0)
    t0 = time.monotonic()
if mode == "quiet":
    time.sleep(period)
    got = b""
    s.sendall(b"NOOP\r\n")
    ok = wait_for(200, 5)
    print(json.dumps({"closed": not ok, "after": time.monotonic() - t0, "got": got.decode("latin-1")}))
    sys.exit(0)
drip = b"NOOP\r\n" * 100
last = time.monotonic()
closed = False
i = 0
while time.monotonic() - t0 < bound and not closed:
    try:
        s.sendall(drip[i:i + 1])
        last = time.monotonic()
        i += 1
        end = last + period
        while time.monotonic() < end:
            r, _, _ = select.select([s], [], [], end - time.monotonic())
            if r:
                d = s.recv(4096)
                if not d:
                    closed = True
                    break
                got += d
    except (ConnectionResetError, BrokenPipeError):
        closed = True
now = time.monotonic()
print(json.dumps({"closed": closed, "after": now - t0, "quiet": now - last, "got": got.decode("latin-1")}))
"""


def client(topo, port, mode, period, bound, host=G4_IN):
    r = subprocess.run(topo.wrap("c", [sys.executable, "-c", CLIENT, host, str(port), mode, str(period), str(bound)]),
                       capture_output=True, text=True, timeout=bound + 30)
    if r.returncode != 0:
        raise Failure("client %s on port %d: exit %d: %s" % (mode, port, r.returncode, r.stderr[-600:]))
    res = json.loads(r.stdout)
    check("error" not in res, "client %s on port %d: %s" % (mode, port, res.get("error")))
    return res


def timeout_lines(gw, kind):
    return [l for l in gw.stdout().splitlines() if "%s timeout (" % kind in l]


def scenario(tmp, topo, plugin, payload, v4):
    cfg = config(tmp, plugin)
    gw = Gateway(tmp, ["--config", cfg], name="gw", wait_ready=False, prefix=topo.wrap("g", []))
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the gateway to be ready")

    # 1. Slow drip after login: cut at the idle limit (2 s), well before the bound.
    res = client(topo, 21, "drip", 4.0, 20.0)
    check(res["closed"], "a client dripping a byte every 4 s was not cut by a 2 s idle timeout in 20 s: %r" % res)
    check(res["quiet"] >= 1.5, "cut %.1f s after its last byte, before the 2 s idle limit: %r" % (res["quiet"], res))
    gw.wait_log('protocol "ftp-idle": idle timeout (2 s) reached', timeout=5, what="the idle timeout's line")
    line = timeout_lines(gw, "idle")[0]
    check("client %s:" % C4 in line, "the idle timeout's line does not name the client %s: %r" % (C4, line))
    log("ok: slow drip cut after %.1f s quiet: %s" % (res["quiet"], line.strip()))

    # 2. Bytes every second, never a login: only the handshake limit (3 s) can end it.
    res = client(topo, 2121, "nologin", 1.0, 20.0)
    check(res["closed"], "a client that never logs in was not cut by a 3 s handshake timeout in 20 s: %r" % res)
    check(res["after"] >= 2.5, "cut %.1f s after connecting, before the 3 s handshake limit" % res["after"])
    gw.wait_log('protocol "ftp-hs": handshake timeout (3 s) reached', timeout=5, what="the handshake timeout's line")
    check(not [l for l in timeout_lines(gw, "idle") if "ftp-hs" in l], "ftp-hs was cut by its idle limit")
    log("ok: no login, cut %.1f s after connecting: %s" % (res["after"], timeout_lines(gw, "handshake")[0].strip()))

    # 3. Logged in at once, then quiet past the handshake limit: the 230 ended the handshake.
    res = client(topo, 2121, "quiet", 5.0, 20.0)
    check(not res["closed"] and "200" in res["got"],
          "a logged-in client quiet for 5 s was cut (or got no 200 for NOOP) on a protocol whose handshake "
          "limit is 3 s: %r" % res)
    check(len(timeout_lines(gw, "handshake")) == 1, "a second handshake timeout: %r" % timeout_lines(gw, "handshake"))
    log("ok: logged in, quiet 5 s past the 3 s handshake limit, NOOP answered")

    # 4. Long transfers, the control connection silent for longer than its idle limit.
    want = sha256_file(payload)
    dh.sh(*topo.wrap("s", ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", RATE, "burst", "16kb",
                           "latency", "400ms"]))
    for mode, opts in (("passive", ["--ftp-pasv"]), ("active", ["-P", C4])):
        before = len(timeout_lines(gw, "idle"))
        out = os.path.join(tmp, "xfer-%s.bin" % mode)
        argv = ["curl", "-sS", "--max-time", "40", "--connect-timeout", "5"] + opts + \
               ["-w", "%{time_total}", "-o", out, "ftp://%s:2122/payload.bin" % G4_IN]
        r = subprocess.run(topo.wrap("c", argv), capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "curl %s through ftp-xfer (idle 3 s) exited %d: %s" % (mode, r.returncode, r.stderr))
        took = float(r.stdout.strip() or 0)
        # Not a bound on fwx: what makes the case mean something (the control connection was
        # silent for longer than its idle limit while the data connection carried the file).
        check(took > 6.0, "curl %s took %.1f s: too short to outlast the 3 s idle limit twice" % (mode, took))
        check(os.path.exists(out) and sha256_file(out) == want, "curl %s: the file arrived damaged" % mode)
        cut = timeout_lines(gw, "idle")[before:]
        check(not cut, "a %s transfer's connections were cut: %r" % (mode, cut))
        log("ok: %s transfer of %d KiB from a %s server (%.1f s) through a 3 s idle limit, whole"
            % (mode, PAYLOAD_SIZE // 1024, RATE, took))
    dh.sh(*topo.wrap("s", ["tc", "qdisc", "del", "dev", "eth0", "root"]))

    st = gw.stats()
    check(st.get("idle_timeouts") == 1 and st.get("handshake_timeouts") == 1,
          "fwxctl stats: %r, expected one of each" % st)
    log("ok: fwxctl stats: idle_timeouts %d, handshake_timeouts %d" % (st["idle_timeouts"], st["handshake_timeouts"]))

    # 5. A reload (SIGHUP) gives new connections the new limits: a protocol's own (ftp-idle's
    # idle 2 -> 1) and the gateway group's default (ftp-xfer's handshake, 20 -> 2).
    protos = dict(PROTOCOLS)
    protos["ftp-idle"] = (21, "idle_timeout = 1; handshake_timeout = 0;")
    config(tmp, plugin, gateway_extra="idle_timeout = 30; handshake_timeout = 2;", protocols=protos)
    gw.send(signal.SIGHUP)
    gw.wait_log("policy reloaded", timeout=10, what="the reload")
    res = client(topo, 21, "drip", 3.0, 20.0)
    check(res["closed"], "after the reload, the drip on ftp-idle was not cut: %r" % res)
    gw.wait_log('protocol "ftp-idle": idle timeout (1 s) reached', timeout=5, what="the reloaded idle limit")
    res = client(topo, 2122, "nologin", 0.5, 20.0)
    check(res["closed"], "after the reload, no login on ftp-xfer was not cut: %r" % res)
    gw.wait_log('protocol "ftp-xfer": handshake timeout (2 s) reached', timeout=5,
                what="the gateway group's reloaded handshake limit")
    log("ok: after SIGHUP: ftp-idle cut at its new 1 s, ftp-xfer at the group's new 2 s handshake")
    rc = gw.stop()
    err = gw.stderr()
    check(rc == 0, "fwx-gateway exited %d on SIGTERM: %r" % (rc, err[-600:]))
    check("AddressSanitizer" not in err and "runtime error" not in err, "sanitizer report: %r" % err[-1500:])

    bad_configs(tmp, topo, plugin)
    kernel_mode(tmp, topo, plugin)


def kernel_mode(tmp, topo, plugin):
    """The same limits in kernel mode (backend "nft", IP forwarding on): the client connects to
    the server's own address, the FTP control connection is intercepted into fwx's user-mode
    path, and its limits apply there."""
    name = "tonft%d" % os.getpid()
    path = os.path.join(tmp, "timeouts-nft.cfg")
    write_file(path, """gateway = {
  name = "%s";
  backend = "nft";
  plugins = [ "%s" ];
  local_addresses = [ "%s", "%s" ];
  port_range = "44000-44999";
};
networks = { internal = { ranges = [ "10.98.1.0/24" ]; }; dmz = { ranges = [ "10.98.2.0/24" ]; };
             localhost = { ranges = [ "%s/32", "%s/32" ]; }; };
relationships = ( { from = "internal"; to = "dmz"; type = "nat"; } );
protocols = (
  { name = "ftp-k"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000160021}"; protocol = "tcp"; port = 21;
    direction = "outbound"; filters = [ "%s" ]; idle_timeout = 2; handshake_timeout = 3; }
);
rules = ( { name = "out"; action = "allow"; from = [ "internal" ]; to = [ "dmz" ]; protocols = [ "ftp-k" ]; } );
""" % (name, plugin, G4_IN, G4_OUT, G4_IN, G4_OUT, FTP_GUID))
    dh.sh(*topo.wrap("g", ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))
    gw = Gateway(tmp, ["--config", path], name="gwnft", wait_ready=False, prefix=topo.wrap("g", []),
                 env={"FWX_REDIRECT_DIR": os.path.join(tmp, "redirect")})
    try:
        gw.wait_log("fwx-gateway: ready", timeout=10, what="the nft gateway to be ready")
    except Failure:
        if gw.proc.poll() is not None and "nft" in (gw.stdout() + gw.stderr()):
            log("note: kernel mode unavailable here, its cases not run: %s" % gw.stderr().strip()[-300:])
            Gateway.running.remove(gw)
            return
        raise
    res = client(topo, 21, "nologin", 1.0, 20.0, host=S4)
    check(res["closed"], "kernel mode: a client that never logs in was not cut in 20 s: %r" % res)
    gw.wait_log('protocol "ftp-k": handshake timeout (3 s) reached', timeout=5, what="kernel mode's handshake line")
    res = client(topo, 21, "drip", 4.0, 20.0, host=S4)
    check(res["closed"] and res["quiet"] >= 1.5, "kernel mode: the slow drip was not cut at its 2 s idle limit: %r" % res)
    gw.wait_log('protocol "ftp-k": idle timeout (2 s) reached', timeout=5, what="kernel mode's idle line")
    log("ok: kernel mode (nft, intercepted): no login cut at 3 s, slow drip at 2 s idle")
    rc = gw.stop()
    check(rc == 0, "the nft gateway exited %d on SIGTERM: %r" % (rc, gw.stderr()[-600:]))


def bad_configs(tmp, topo, plugin):
    cases = [
        ("protocol string", dict(proto_extra='idle_timeout = "10";'), "idle_timeout = \"10\"",
         "idle_timeout must be a whole number of seconds"),
        ("protocol negative", dict(proto_extra="handshake_timeout = -5;"), "handshake_timeout = -5",
         "handshake_timeout must be a whole number of seconds"),
        ("protocol above a week", dict(proto_extra="idle_timeout = 604801;"), "idle_timeout = 604801",
         "idle_timeout must be a whole number of seconds"),
        ("gateway fraction", dict(gateway_extra="idle_timeout = 2.5;"), "idle_timeout = 2.5",
         "gateway.idle_timeout: must be a whole number of seconds"),
        ("gateway string", dict(gateway_extra='handshake_timeout = "60";'), "handshake_timeout = \"60\"",
         "gateway.handshake_timeout: must be a whole number of seconds"),
    ]
    for name, kw, needle, want in cases:
        path = config(tmp, plugin, **kw)
        text = open(path).read()
        line = next(i + 1 for i, l in enumerate(text.splitlines()) if needle in l)
        gw = Gateway(tmp, ["--config", path, "--check"], name="check-" + name.replace(" ", "-"), wait_ready=False,
                     control=False, prefix=topo.wrap("g", []))
        rc = gw.proc.wait(20)
        Gateway.running.remove(gw)
        err = gw.stderr() + gw.stdout()
        check(rc == 2, "%s: --check exit %s, expected 2: %r" % (name, rc, err))
        check("%s:%d:" % (path, line) in err and want in err,
              "%s: --check says %r, wanted %s:%d: and %r" % (name, err, path, line, want))
        log("ok: %s refused: %s" % (name, err.strip().splitlines()[-1]))
    # And the good values pass.
    path = config(tmp, plugin, gateway_extra="idle_timeout = 0; handshake_timeout = 604800;")
    gw = Gateway(tmp, ["--config", path, "--check"], name="check-good", wait_ready=False, control=False,
                 prefix=topo.wrap("g", []))
    rc = gw.proc.wait(20)
    Gateway.running.remove(gw)
    check(rc == 0 and "is valid" in gw.stdout(), "--check on good limits: exit %s: %r" % (rc, gw.stderr()))


def run(tmp):
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    for tool in ("ip", "ss", "tc", "curl"):
        if shutil.which(tool) is None:
            skip("no %s command" % tool)
    vsftpd = dh.find_vsftpd()
    if vsftpd is None:
        skip("vsftpd is not installed and apt-get could not install it")
    plugin = ftp_plugin()
    dh.PREFIX = "fwxto-"  # namespaces of this test: fwxto-<pid>-{c,g,s}
    topo = dh.Topology()
    topo.up_or_skip()
    servers = []
    with gateways_stopped(lambda: [v.stop() for v in servers], topo.down):
        payload, (v4,) = dh.serve_payload(tmp, topo, vsftpd, servers, PAYLOAD_SIZE, [("vsftpd4", S4, (30000, 30099))])
        scenario(tmp, topo, plugin, payload, v4)


if __name__ == "__main__":
    main(run)
