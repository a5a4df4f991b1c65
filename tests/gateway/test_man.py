"""The man pages meson builds (doc/man: fwx-gateway(8), fwxctl(8), fwx-policy(5), libfwx(3))
render without a single warning (groff -man -ww; man -l --warnings), carry a NAME line that
whatis/apropos can read (lexgrog), and fwx-policy(5) names every key of the `gateway` group
that fwx-gateway accepts (read from its source) and every policy key of doc/policy.md's tables.
Skips (77), saying why, when groff is not installed.
SPDX-License-Identifier: MIT
"""
import os
import re
import shutil
import subprocess

from gwtest import check, log, main, skip


def run(tmp):
    pages = [p for p in os.environ.get("FWX_MAN_PAGES", "").split(os.pathsep) if p]
    src = os.environ.get("FWX_SOURCE_ROOT")
    check(len(pages) == 4 and src, "FWX_MAN_PAGES (4 pages) and FWX_SOURCE_ROOT must be set (meson sets them)")
    if shutil.which("groff") is None:
        skip("groff is not installed (Debian package groff-base; ./run test installs it): the man pages were not rendered")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for page in pages:
        name, section = os.path.basename(page).rsplit(".", 1)
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True,
                           timeout=30)
        check(r.returncode == 0 and r.stderr == "", "groff -ww %s: exit %d: %s" % (page, r.returncode, r.stderr))
        if shutil.which("man"):
            r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True, timeout=30,
                               env=env)
            check(r.returncode == 0 and r.stderr == "", "man -l %s: exit %d: %s" % (page, r.returncode, r.stderr))
            check(re.search(r"^%s\(%s\)" % (re.escape(name.upper()), section), r.stdout, re.M)
                  and re.search(r"^NAME\n +%s +- " % re.escape(name), r.stdout, re.M), "man -l %s: no header or NAME:\n%s" % (page, r.stdout[:400]))
        if shutil.which("lexgrog"):
            r = subprocess.run(["lexgrog", page], capture_output=True, text=True, timeout=30)
            check(r.returncode == 0 and ('"%s - ' % name) in r.stdout, "lexgrog %s: %r" % (page, r.stdout))
        log("ok: %s(%s) renders without warnings" % (name, section))

    policy5 = [p for p in pages if p.endswith("fwx-policy.5")][0]
    with open(policy5) as f:
        man = f.read()
    with open(os.path.join(src, "examples", "fwx-gateway", "gateway.c")) as f:
        gw = f.read()
    m = re.search(r"static const char \*known\[\] = \{(.*?)\};", gw, re.S)
    check(m, "cannot find the list of gateway keys in gateway.c")
    gkeys = re.findall(r'"([a-z_]+)"', m.group(1))
    check(len(gkeys) >= 10, "gateway keys: %r" % gkeys)
    with open(os.path.join(src, "doc", "policy.md")) as f:
        pkeys = set(re.findall(r"^\| `([a-z_]+)` +\| (?:string|list|integer|boolean)", f.read(), re.M))
    check(len(pkeys) >= 15, "policy keys from doc/policy.md: %r" % pkeys)
    sections = ["networks", "relationships", "protocols", "address_sets", "domain_sets", "rules", "publishing"]
    missing = [k for k in list(gkeys) + sorted(pkeys) + sections
               if not re.search(r"^\.B[RI]? %s\b" % re.escape(k), man, re.M)]
    check(not missing, "fwx-policy(5) does not document: %s" % ", ".join(missing))
    log("ok: fwx-policy(5) documents all %d gateway keys, %d policy keys and the %d sections"
        % (len(gkeys), len(pkeys), len(sections)))


main(run)
