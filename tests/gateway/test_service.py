"""The service files: the systemd unit (examples/fwx-gateway/fwx-gateway.service.in) passes
`systemd-analyze verify` with its paths filled in as meson fills them (the programs of this
build), and says what the gateway relies on (Type=notify, reload by SIGHUP, RuntimeDirectory
fwx, only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE; the folder where libfwx counts the fwx
instances that need the conntrack settings, read from the library, writable and kept across a
stop or restart); the example configuration installed as
/etc/fwx/fwx-gateway.cfg passes --check and starts a gateway that serves fwxctl at the
default socket, in a mount namespace with a /run of its own (unshare).
Skips (77) what cannot run here, saying why: no systemd-analyze, no mount namespace.
SPDX-License-Identifier: MIT
"""
import os
import re
import shutil
import signal
import subprocess

from gwtest import DEFAULT_CONTROL, Gateway, check, free_port, log, main, program, skip

PRIVATE_RUN = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o mode=0755 fwx-test /run && exec "$0" "$@"']


def unit_keys(text):
    keys = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


def conntrack_dir(gw_exe):
    """The folder libfwx (the one the gateway loads) keeps its conntrack counts in, or None when
    it was built without the nft backend."""
    r = subprocess.run(["ldd", gw_exe], capture_output=True, text=True, timeout=10)
    lib = [line.split("=>")[1].split()[0] for line in r.stdout.splitlines()
           if line.strip().startswith("libfwx.so") and "=>" in line]
    check(r.returncode == 0 and lib, "ldd %s: no libfwx: %r %r" % (gw_exe, r.stdout, r.stderr))
    with open(lib[0], "rb") as f:
        found = set(re.findall(rb"(/run/[A-Za-z0-9_./-]*conntrack)\0", f.read()))
    check(len(found) <= 1, "several conntrack folders in %s: %r" % (lib[0], found))
    return found.pop().decode() if found else None


def run(tmp):
    unit_in = os.environ.get("FWX_GATEWAY_UNIT_IN")
    cfg = os.environ.get("FWX_GATEWAY_CFG")
    check(unit_in and cfg, "FWX_GATEWAY_UNIT_IN and FWX_GATEWAY_CFG must be set (meson sets them)")
    gw_exe = program("FWX_GATEWAY")
    skipped = []

    # The configuration: --check, then a real start with it (the SOCKS port moved to a free
    # one, the plugins taken from this build).
    r = subprocess.run(PRIVATE_RUN + ["true"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        skipped.append("no mount namespace with its own /run (%s)" % r.stderr.strip())
    else:
        # --check loads the plugins: the ones of this build (the example names the installed dir).
        gw = Gateway(tmp, ["--config", cfg, "--check", "--plugin-dir", os.path.dirname(program("FWX_FTP_PLUGIN"))],
                     name="cfg-check", wait_ready=False,
                     control="default", prefix=PRIVATE_RUN)
        rc = gw.proc.wait(10)
        gw.stop()
        check(rc == 0 and gw.stdout() == "fwx-gateway: %s is valid\n" % cfg and gw.stderr() == "",
              "--check on the example configuration: exit %s, %r, %r" % (rc, gw.stdout(), gw.stderr()))
        socks = free_port()
        gw = Gateway(tmp, ["--config", cfg, "--socks", "127.0.0.1:%d" % socks,
                           "--plugin-dir", os.path.dirname(program("FWX_FTP_PLUGIN")), "--log-level", "info"],
                     name="cfg-run", control="default", prefix=PRIVATE_RUN)
        check("socks5 on 127.0.0.1:%d" % socks in gw.stdout(), "no SOCKS listener: %r" % gw.stdout())
        r = subprocess.run(["nsenter", "-t", str(gw.pid), "-m", "--", program("FWXCTL"), "-j", "plugins"],
                           capture_output=True, text=True, timeout=15)
        check(r.returncode == 0 and '"name":"ftp"' in r.stdout, "fwxctl plugins: %r %r" % (r.stdout, r.stderr))
        check(gw.stop(signal.SIGTERM) == 0, "exit status")
        log("ok: the example configuration: --check passes; it runs with the FTP filter, fwxctl finds it at %s"
            % DEFAULT_CONTROL)

    # The unit: what the gateway relies on.
    with open(unit_in) as f:
        text = f.read()
    k = unit_keys(text)
    want = {"Type": ["notify"], "ExecReload": ["/bin/kill -HUP $MAINPID"], "RuntimeDirectory": ["fwx"],
            "RuntimeDirectoryMode": ["0750"], "CapabilityBoundingSet": ["CAP_NET_ADMIN CAP_NET_BIND_SERVICE"],
            "ExecStart": ["@BINDIR@/fwx-gateway --config @SYSCONFDIR@/fwx/fwx-gateway.cfg"],
            "NoNewPrivileges": ["yes"]}
    for key, v in want.items():
        check(k.get(key) == v, "%s=%r, expected %r" % (key, k.get(key), v))
    log("ok: the unit: Type=notify, SIGHUP reload, RuntimeDirectory=fwx 0750, two capabilities")

    # The conntrack count (lib/backends/nft/ct.c, the folder compiled into libfwx) must be
    # writable under the sandbox and outlive a stop or restart: systemd wipes a RuntimeDirectory
    # at stop unless RuntimeDirectoryPreserve=yes, and another fwx instance may still count on it.
    ct_dir = conntrack_dir(gw_exe)
    if ct_dir is None:
        skipped.append("libfwx has no nft backend here: its conntrack folder is not checked")
    else:
        owner = [d for d in " ".join(k.get("RuntimeDirectory", [])).split()
                 if ct_dir == "/run/" + d or ct_dir.startswith("/run/" + d + "/")]
        writable = [d for d in " ".join(k.get("ReadWritePaths", [])).split()
                    if ct_dir == d.lstrip("-") or ct_dir.startswith(d.lstrip("-").rstrip("/") + "/")]
        check(owner or writable, "%s is not writable under ProtectSystem=strict (no RuntimeDirectory or "
              "ReadWritePaths holds it)" % ct_dir)
        check(not owner or k.get("RuntimeDirectoryPreserve") == ["yes"],
              "%s lies in RuntimeDirectory=%s, which systemd wipes at stop and restart (RuntimeDirectoryPreserve=%r): "
              "a restart loses the count of fwx instances" % (ct_dir, owner[0] if owner else "",
                                                              k.get("RuntimeDirectoryPreserve")))
        log("ok: the unit keeps %s (the conntrack settings' count) writable and across restarts" % ct_dir)

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skipped.append("systemd-analyze is not installed (apt-get install systemd)")
    else:
        etc = os.path.join(tmp, "etc")
        os.makedirs(os.path.join(etc, "fwx"))
        shutil.copy(cfg, os.path.join(etc, "fwx", "fwx-gateway.cfg"))
        unit = os.path.join(tmp, "fwx-gateway.service")
        with open(unit, "w") as f:
            f.write(text.replace("@BINDIR@", os.path.dirname(gw_exe)).replace("@SYSCONFDIR@", etc))
        pages = [p for p in os.environ.get("FWX_MAN_PAGES", "").split(os.pathsep) if p]
        env = dict(os.environ)
        args = [analyze, "verify"]
        if pages and shutil.which("man"):
            # Documentation= names man pages: verify runs man(1) on each, so give it this
            # build's pages in a man tree of the test's own.
            man = os.path.join(tmp, "man")
            for page in pages:
                d = os.path.join(man, "man" + page.rsplit(".", 1)[1])
                os.makedirs(d, exist_ok=True)
                os.symlink(page, os.path.join(d, os.path.basename(page)))
            env["MANPATH"] = man
        else:
            args.append("--man=no")
        r = subprocess.run(args + [unit], capture_output=True, text=True, timeout=60, env=env)
        check(r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "",
              "systemd-analyze verify: exit %d: %s%s" % (r.returncode, r.stdout, r.stderr))
        log("ok: systemd-analyze verify%s: no complaint" % ("" if "--man=no" in args else " (with the man pages)"))
    if skipped:
        skip("; ".join(skipped))


main(run)
