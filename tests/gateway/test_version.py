"""fwx-gateway --version and fwxctl --version/-V print the version meson built them with
(FWX_VERSION, from meson.project_version()); fwx-gateway also names the library it runs with.
SPDX-License-Identifier: MIT
"""
import os
import subprocess

from gwtest import check, log, main, program


def run(tmp):
    want = os.environ.get("FWX_VERSION")
    check(want, "FWX_VERSION is not set (meson sets it to the project's version)")
    gw = program("FWX_GATEWAY")
    r = subprocess.run([gw, "--version"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0 and r.stderr == "", "fwx-gateway --version: exit %d, stderr %r" % (r.returncode, r.stderr))
    check(r.stdout == "fwx-gateway %s (libfwx %s)\n" % (want, want), "fwx-gateway --version: %r" % r.stdout)
    for flag in ("--version", "-V"):
        r = subprocess.run([program("FWXCTL"), flag], capture_output=True, text=True, timeout=10)
        check(r.returncode == 0 and r.stdout == "fwxctl %s\n" % want and r.stderr == "",
              "fwxctl %s: exit %d, %r, %r" % (flag, r.returncode, r.stdout, r.stderr))
    log("ok: both print %s" % want)


main(run)
