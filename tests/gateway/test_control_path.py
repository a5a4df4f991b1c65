"""fwx-gateway's control socket: by default where fwxctl looks (/run/fwx/fwx-gateway.sock, the
directory created 0750 if missing), and never in a directory others can write (anyone
could take the socket's name first). A directory that is missing or writable by
others is refused at --check and at a start, exit 2, before any socket is opened; --no-control
and control_socket = "" turn the socket off.

The default path is tried in a mount namespace of the test's own with a fresh tmpfs on /run
(unshare), so that it never meets another gateway's socket or the host's /run/fwx; fwxctl runs
in the same namespace (nsenter) with no --socket and no FWX_CTL_SOCKET.
SPDX-License-Identifier: MIT
"""
import os
import signal
import subprocess

from gwtest import (DEFAULT_CONTROL, EchoServer, Gateway, check, free_port, listening, log, main,
                    policy, program, skip, write_file)

GW_IP = "127.0.0.1"
# A fresh /run of the test's own: exec keeps the pid, so nsenter -t finds the gateway's namespace.
PRIVATE_RUN = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o mode=0755 fwx-test /run && exec "$0" "$@"']


def quick(port, echo):
    return ["--listen", "%s:%d" % (GW_IP, port), "--upstream", "127.0.0.3:%d" % echo.port]


def refused(tmp, name, args, want, port):
    gw = Gateway(tmp, args, name=name, wait_ready=False, control=None)
    rc = gw.proc.wait(10)
    gw.stop()
    err = gw.stderr()
    check(rc == 2, "%s: exit %s, expected 2 (stderr %r)" % (name, rc, err))
    check(want in err, "%s: stderr %r lacks %r" % (name, err, want))
    check(gw.stdout() == "", "%s: wrote to stdout: %r" % (name, gw.stdout()))
    check(port is None or not listening(GW_IP, port), "%s: port %s listens" % (name, port))
    log("ok: %s: exit 2: %s" % (name, err.strip()))


def run(tmp):
    echo = EchoServer()
    port = free_port()
    r = subprocess.run(PRIVATE_RUN + ["true"], capture_output=True, text=True, timeout=10)
    no_ns = None if r.returncode == 0 else r.stderr.strip() or "exit %d" % r.returncode

    # A directory that does not exist: at --check and at a start.
    missing = os.path.join(tmp, "no-such-dir", "gw.sock")
    want = "fwx-gateway: control socket %s: directory %s: does not exist" % (missing, os.path.dirname(missing))
    refused(tmp, "missing-check", quick(port, echo) + ["--control", missing, "--check"], want, None)
    refused(tmp, "missing-start", quick(port, echo) + ["--control", missing], want, port)
    check(not os.path.exists(os.path.dirname(missing)), "the gateway created %s" % os.path.dirname(missing))

    # Writable by others, sticky (as /tmp) or not; in the file as on the command line.
    for mode in (0o777, 0o1777, 0o703):
        d = os.path.join(tmp, "open-%o" % mode)
        os.mkdir(d)
        os.chmod(d, mode)
        sock = os.path.join(d, "gw.sock")
        want = "fwx-gateway: control socket %s: directory %s is writable by others" % (sock, d)
        refused(tmp, "open-%o-check" % mode, quick(port, echo) + ["--control", sock, "--check"], want, None)
        refused(tmp, "open-%o-start" % mode, quick(port, echo) + ["--control", sock], want, port)
        check(os.listdir(d) == [], "a socket was made in %s: %r" % (d, os.listdir(d)))
    d = os.path.join(tmp, "open-777")
    cfg = os.path.join(tmp, "open.cfg")
    sock = os.path.join(d, "gw.sock")
    write_file(cfg, policy([(port, echo.port)], gateway_group='  control_socket = "%s";' % sock))
    refused(tmp, "open-config", ["--config", cfg], "control socket %s: directory %s is writable by others"
            % (sock, d), port)

    # A directory that belongs to another user (even if only it can write there).
    if os.geteuid() == 0:
        d = os.path.join(tmp, "other-user")
        os.mkdir(d, 0o755)
        os.chown(d, 65534, 65534)
        sock = os.path.join(d, "gw.sock")
        refused(tmp, "other-owner", quick(port, echo) + ["--control", sock, "--check"],
                "directory %s belongs to uid 65534" % d, None)

    # control_socket = "" and --no-control: no socket at all (and the default is not used).
    cfg = os.path.join(tmp, "off.cfg")
    write_file(cfg, policy([(port, echo.port)], gateway_group='  control_socket = "";'))
    for name, args in (("off-config", ["--config", cfg]), ("off-cli", quick(port, echo) + ["--no-control"])):
        gw = Gateway(tmp, args, name=name, control=None, prefix=PRIVATE_RUN if no_ns is None else ())
        check("control" not in gw.stdout(), "%s: %r" % (name, gw.stdout()))
        if no_ns is None:
            r = subprocess.run(["nsenter", "-t", str(gw.pid), "-m", "--", "ls", "-A", "/run"],
                               capture_output=True, text=True, timeout=10)
            check(r.returncode == 0 and r.stdout == "", "%s: /run holds %r (%s)" % (name, r.stdout, r.stderr))
        check(gw.stop() == 0, "%s: exit status" % name)
        log("ok: %s: no control socket" % name)

    # The default: /run/fwx is made 0750 root, fwxctl finds the socket with no option.
    if no_ns is not None:
        skip("cannot make a mount namespace with its own /run (%s): the default path is untested" % no_ns)
    gw = Gateway(tmp, quick(port, echo) + ["--check"], name="default-check", wait_ready=False,
                 control="default", prefix=PRIVATE_RUN)
    check(gw.proc.wait(10) == 0, "--check with the default socket and no /run/fwx: %r" % gw.stderr())
    gw.stop()
    gw = Gateway(tmp, quick(port, echo), name="default", control="default", prefix=PRIVATE_RUN)
    check("control %s" % DEFAULT_CONTROL in gw.stdout(), "the ready line: %r" % gw.stdout())
    ns = ["nsenter", "-t", str(gw.pid), "-m", "--"]
    r = subprocess.run(ns + ["stat", "-c", "%a %u %g %F", "/run/fwx", DEFAULT_CONTROL],
                       capture_output=True, text=True, timeout=10)
    check(r.stdout.splitlines() == ["750 0 0 directory", "600 0 0 socket"],
          "/run/fwx and the socket: %r %r" % (r.stdout, r.stderr))
    env = {k: v for k, v in os.environ.items() if k != "FWX_CTL_SOCKET"}
    r = subprocess.run(ns + [program("FWXCTL"), "--json", "stats"], capture_output=True, text=True,
                       timeout=15, env=env)
    check(r.returncode == 0 and '"kind":"stats"' in r.stdout, "fwxctl with no --socket: exit %d, %r, %r"
          % (r.returncode, r.stdout, r.stderr))
    check(gw.stop(signal.SIGTERM) == 0, "exit status")
    log("ok: the default: /run/fwx 0750 root, the socket 0600, fwxctl found it with no option")


main(run)
