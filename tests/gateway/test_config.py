"""fwx-gateway refuses a bad configuration file before it opens any socket: exit 2, a message
with file:line and the offending key; --check accepts a good file (exit 0) and refuses a bad one.
SPDX-License-Identifier: MIT
"""
import os
import threading

from gwtest import (SERVER_IP, Failure, Gateway, check, free_port, listening, log, main, policy,
                    refused, write_file)

GW_IP = "127.0.0.1"


def refused_start(tmp, name, text, want_line, want_key, port):
    """Runs the gateway on a bad file; checks the exit, the message, and that nothing opened."""
    path = os.path.join(tmp, name + ".cfg")
    write_file(path, text)
    seen_listening = []
    stop = threading.Event()

    def watch():  # the publishing port must never listen, even for a moment
        while not stop.is_set():
            if listening(GW_IP, port):
                seen_listening.append(True)
            stop.wait(0.001)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    gw = Gateway(tmp, ["--config", path], name=name, wait_ready=False)
    try:
        rc = gw.proc.wait(10)
    finally:
        stop.set()
        w.join(5)
    gw.stop()
    err = gw.stderr().strip()
    out = gw.stdout()
    check(rc == 2, "%s: exit status %s, expected 2 (stderr: %r)" % (name, rc, err))
    check("%s:%d:" % (path, want_line) in err, "%s: message %r lacks %s:%d:" % (name, err, path, want_line))
    check(want_key in err, "%s: message %r does not name the key %r" % (name, err, want_key))
    check(not seen_listening, "%s: port %d was listening while the gateway ran" % (name, port))
    check("publishing" not in out and "ready" not in out, "%s: the gateway went on: %r" % (name, out))
    check(not os.path.exists(gw.sock), "%s: the control socket %s was created" % (name, gw.sock))
    check(not listening(GW_IP, port) and refused(port), "%s: port %d is open" % (name, port))
    log("ok: %s refused: %s" % (name, err))


def check_refuses(tmp, name, text, want_line, want):
    """--check on a bad file: exit 2, file:line and `want` in the message; returns it."""
    path = os.path.join(tmp, name + ".cfg")
    write_file(path, text)
    gw = Gateway(tmp, ["--config", path, "--check"], name=name, wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    err = gw.stderr().strip()
    check(rc == 2, "%s: --check exit %s, expected 2 (stderr %r)" % (name, rc, err))
    check("%s:%d:" % (path, want_line) in err and want in err,
          "%s: --check says %r, wanted %s:%d: and %r" % (name, err, path, want_line, want))
    check("is valid" not in gw.stdout(), "%s: --check said valid" % name)
    log("ok: --check refuses %s: %s" % (name, err))
    return err


def run(tmp):
    port = free_port()
    server = free_port(SERVER_IP)
    good = policy([(port, server)], gateway_group='  name = "cfg-test";\n  log_level = "info";')
    lines = good.splitlines()

    def line_of(text, needle):
        for i, l in enumerate(text.splitlines()):
            if needle in l:
                return i + 1
        raise Failure("%r not in the file" % needle)

    # --check on the good file
    path = os.path.join(tmp, "good.cfg")
    write_file(path, good)
    gw = Gateway(tmp, ["--config", path, "--check"], name="check-good", wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    check(rc == 0, "--check on a good file: exit %s, stderr %r" % (rc, gw.stderr()))
    check("is valid" in gw.stdout(), "--check says %r" % gw.stdout())
    check(not listening(GW_IP, port), "--check opened port %d" % port)
    log("ok: --check on a good file: %s" % gw.stdout().strip())

    # Each bad file: (its name, the text replaced in the good one, what replaces it, the text of
    # the line the error must name, the key the error must name).
    bad_files = [
        # 1. a syntax error in the gateway group
        ("syntax", 'name = "cfg-test";', 'name = = "cfg-test";', "= =", "syntax error"),
        # 2. an unknown key in the gateway group
        ("unknown-key", 'log_level = "info";', 'log_level = "info";\n  colour = "blue";', "colour",
         "gateway.colour"),
        # 3. a bad value in the gateway group
        ("bad-value", 'log_level = "info";', 'log_level = "loud";', "loud", "gateway.log_level"),
        # 4. a bad rule in the policy part (an unknown action)
        ("bad-rule", 'action = "allow"', 'action = "alow"', "alow", "rules.[0].action"),
        # 5. a rule naming a network that does not exist
        ("unknown-network", 'from = [ "localhost", "external" ]', 'from = [ "intrnal" ]', "intrnal",
         "rules.[0].from.[0]"),
        # 6. a publishing rule naming a protocol that does not exist
        ("bad-publishing", 'protocol = "svc0"; full_proxy', 'protocol = "nosuch"; full_proxy', "nosuch",
         "publishing.[0].protocol"),
        # 7. an unknown backend
        ("bad-backend", 'log_level = "info";', 'log_level = "info";\n  backend = "ebpf";', "ebpf",
         "gateway.backend"),
        # 8. a bad local_redirect entry (ports out of range), with its line
        ("bad-local-redirect", 'log_level = "info";',
         'log_level = "info";\n  backend = "nft";\n  local_redirect = ( { ports = "0-80"; slot = 0; } );', "0-80",
         "gateway.local_redirect"),
    ]
    for name, old, new, at, key in bad_files:
        check(old in good, "%s: the good file has no %r to replace" % (name, old))
        bad = good.replace(old, new)
        refused_start(tmp, name, bad, line_of(bad, at), key, port)

    # local_redirect needs the kernel backend
    path = os.path.join(tmp, "lr-proxy.cfg")
    write_file(path, good.replace('log_level = "info";', 'log_level = "info";\n'
                                  '  local_redirect = ( { ports = "80"; slot = 0; } );'))
    gw = Gateway(tmp, ["--config", path], name="lr-proxy", wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    check(rc == 2 and "local_redirect needs backend" in gw.stderr(), "local_redirect + proxy: exit %s, %r" % (rc, gw.stderr()))
    log("ok: local_redirect with the proxy backend: exit 2: %s" % gw.stderr().strip())

    # socks is a proxy protocol: refused with the kernel backend, before anything opens
    path = os.path.join(tmp, "socks-nft.cfg")
    write_file(path, good.replace('log_level = "info";', 'log_level = "info";\n  backend = "nft";\n'
                                  '  socks = "%s:%d";' % (GW_IP, free_port())))
    gw = Gateway(tmp, ["--config", path], name="socks-nft", wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    check(rc == 2 and "socks needs the \"proxy\" backend" in gw.stderr(), "socks + nft: exit %s, %r" % (rc, gw.stderr()))
    check(not listening(GW_IP, port), "socks + nft opened port %d" % port)
    log("ok: socks with backend nft: exit 2: %s" % gw.stderr().strip())

    # --check refuses a bad file the same way
    path = os.path.join(tmp, "bad-check.cfg")
    write_file(path, good.replace('action = "allow"', 'action = "alow"'))
    gw = Gateway(tmp, ["--config", path, "--check"], name="check-bad", wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    check(rc == 2 and "rules.[0].action" in gw.stderr(), "--check on a bad file: exit %s, %r" % (rc, gw.stderr()))
    log("ok: --check on a bad file: exit 2")

    # 9. local_addresses as a lone string: refused, not read as no addresses
    bad = good.replace('log_level = "info";', 'log_level = "info";\n  local_addresses = "203.0.113.1";')
    refused_start(tmp, "local-addresses-string", bad, line_of(bad, "local_addresses"), "gateway.local_addresses",
                  port)
    check_refuses(tmp, "local-addresses-string-check", bad, line_of(bad, "local_addresses"), "must be a list")

    # 10. a NUL byte is reported at its line, not at line 0
    bad = good.replace('log_level = "info";', 'log_level = "info"; # \0')
    refused_start(tmp, "nul-byte", bad, line_of(bad, "\0"), "nul byte", port)

    # 11. a protocol binding a filter no loaded plugin provides:
    # refused by --check and at start with file:line, naming what is loaded
    plugin = os.environ.get("FWX_CONN_LOGGER")
    check(plugin and os.path.exists(plugin), "FWX_CONN_LOGGER names no plugin (meson sets it)")
    with_plugin = good.replace('log_level = "info";', 'log_level = "info";\n  plugin_dir = "%s";\n'
                               '  plugins = [ "conn-logger" ];' % os.path.dirname(plugin))
    for name, ref in (("filter-name-typo", "conn-loger"), ("filter-guid-typo", "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b14}")):
        bad = with_plugin.replace('direction = "inbound"; }', 'direction = "inbound"; filters = [ "%s" ]; }' % ref, 1)
        err = check_refuses(tmp, name + "-check", bad, line_of(bad, ref), "protocols.[0].filters.[0]")
        check('"conn-logger"' in err and ref in err, "%s: the message does not say what is loaded: %r" % (name, err))
        refused_start(tmp, name, bad, line_of(bad, ref), "protocols.[0].filters.[0]", port)

    # ... and bound by the plugin's name it passes the check and starts
    named = with_plugin.replace('direction = "inbound"; }', 'direction = "inbound"; filters = [ "conn-logger" ]; }', 1)
    path = os.path.join(tmp, "filter-by-name.cfg")
    write_file(path, named)
    gw = Gateway(tmp, ["--config", path, "--check"], name="filter-by-name-check", wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    check(rc == 0 and "is valid" in gw.stdout(), "a filter bound by name: --check exit %s, %r" % (rc, gw.stderr()))
    gw = Gateway(tmp, ["--config", path], name="filter-by-name")
    gw.stop()
    log("ok: a filter bound by plugin name passes --check and starts")

    # 12. a plugin file that is not there: --check fails (it loads the plugins) and says what to set
    bad = good.replace('log_level = "info";', 'log_level = "info";\n  plugin_dir = "%s";\n  plugins = [ "ftp" ];'
                       % os.path.join(tmp, "no-such-dir"))
    path = os.path.join(tmp, "missing-plugin.cfg")
    write_file(path, bad)
    gw = Gateway(tmp, ["--config", path, "--check"], name="missing-plugin", wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    check(rc != 0 and "is valid" not in gw.stdout() and "plugin_dir" in gw.stderr(),
          "--check with a missing plugin: exit %s, %r" % (rc, gw.stderr()))
    log("ok: --check loads the plugins: %s" % gw.stderr().strip())

    # 13. a publishing rule on an address this host does not hold: file:line
    bad = good.replace('listen = "%s:%d"' % (GW_IP, port), 'listen = "192.0.2.99:%d"' % port)
    check(bad != good, "the test could not move the listen address")
    err = check_refuses(tmp, "foreign-listen-check", bad, line_of(bad, "192.0.2.99"), "publishing.[0].listen")
    check("not an address of this host" in err, "foreign listen address: %r" % err)
    refused_start(tmp, "foreign-listen", bad, line_of(bad, "192.0.2.99"), "publishing.[0].listen", port)

    # 14. a publishing rule whose protocol is an outbound definition: refused at load
    bad = good.replace('direction = "inbound"', 'direction = "outbound"', 1)
    refused_start(tmp, "publish-outbound", bad, line_of(bad, 'protocol = "svc0"; full_proxy'),
                  "publishing.[0].protocol", port)

    # 15. a FIFO as --config is refused at once, with --check and without
    fifo = os.path.join(tmp, "fifo.cfg")
    os.mkfifo(fifo)
    for args, name in (([], "fifo"), (["--check"], "fifo-check")):
        gw = Gateway(tmp, ["--config", fifo] + args, name=name, wait_ready=False, control=False)
        try:
            rc = gw.proc.wait(10)
        except Exception:
            gw.kill()
            raise Failure("fwx-gateway %s hangs on a FIFO given as --config" % " ".join(args))
        gw.stop()
        check(rc == 2 and "not a regular file (a fifo)" in gw.stderr(), "%s: exit %s, %r" % (name, rc, gw.stderr()))
    log("ok: a FIFO as --config is refused at once: %s" % gw.stderr().strip())

    # a file that does not exist
    gw = Gateway(tmp, ["--config", os.path.join(tmp, "missing.cfg")], name="missing", wait_ready=False)
    rc = gw.proc.wait(10)
    gw.stop()
    check(rc == 2 and "missing.cfg" in gw.stderr(), "missing file: exit %s, %r" % (rc, gw.stderr()))
    log("ok: a missing file: exit 2: %s" % gw.stderr().strip())


main(run)
