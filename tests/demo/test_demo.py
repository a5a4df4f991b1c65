#!/usr/bin/env python3
"""The demo (demo/ftp-demo.sh, README's first command) run as a test, so that it cannot rot.

    test_demo.py BUILD_DIR netns|loopback

netns: the demo on its dual-homed topology (three network namespaces, forwarding off in the
gateway) must exit 0, say it ran on that topology, show its three copies (curl passive, curl
active, the scripted client) with the original's SHA-256, the gateway's tables at each step,
the bounce refused with the gateway's log line, and leave no namespace behind; then a
second run, stopped with SIGTERM in the middle of its first download, must exit 143 and leave
no namespace and no process behind.

loopback: the demo as an ordinary user (nobody), which is what a user without root gets: it
must say it runs on loopback only and why, and pass the same checks.

Needs root (namespaces; vsftpd starts as root; `nobody` is reached with setpriv). Exits 77
(skipped) with the reason when something it needs cannot be had here. Python 3 standard
library only.
SPDX-License-Identifier: MIT
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "demo", "ftp-demo.sh")
RUN_TIMEOUT = 75    # per run: the demo takes ~20 s, ~35 s under ASan on a loaded machine
failures = []


def log(msg=""):
    print(msg, flush=True)


def skip(why):
    log("SKIP: " + why)
    sys.exit(SKIP)


def check(cond, what):
    log(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def namespaces_of(pid):
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return []
    return [n for n in names if re.fullmatch(r"fwxdemo-(cli|gw|srv)-%d" % pid, n)]


def running(pid):
    """True while pid is a process that has not exited. A zombie has exited: it only waits for
    its new parent (init, once the demo is gone) to collect its status."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def still_running(pids, timeout=3.0):
    """The pids still running after at most `timeout` seconds (bounded poll): a process the demo
    signalled last may take a moment to exit."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [x for x in pids if running(x)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def can_make_namespaces():
    name = "fwxdemo-probe-%d" % os.getpid()
    p = subprocess.run(["ip", "netns", "add", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        return p.stdout.decode(errors="replace").strip() or "ip netns add failed"
    subprocess.run(["ip", "netns", "del", name])
    return None


def run_demo(build, env, prefix=None):
    """Runs the demo to its end; returns (exit status, output, pid)."""
    cmd = (prefix or []) + ["bash", DEMO, build]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
        out += b"\n(test: the demo did not finish within %d s and was stopped)\n" % RUN_TIMEOUT
    text = out.decode(errors="replace")
    return p.returncode, text, p.pid


def check_success(rc, out, topology):
    if "FAILED while installing vsftpd and curl" in out:
        log(out)
        skip("the demo could not install vsftpd or curl here")
    log(out)
    log("---- checks ----")
    check(rc == 0, "the demo exits 0 (it exited %s)" % rc)
    check("== Result (%s topology)" % topology in out, "it ran on the %s topology" % topology)
    m = re.search(r"^   original +sha256 ([0-9a-f]{64})$", out, re.M)
    check(m is not None, "it prints the original's SHA-256")
    want = m.group(1) if m else "?"
    for mode in ("passive", "active", "scripted"):
        check(re.search(r"^   %s copy +sha256 %s  matches$" % (mode, want), out, re.M) is not None,
              "the %s copy's SHA-256 is the original's" % mode)
    check(len(re.findall(r"^   got 5242880 bytes, sha256 %s$" % want, out, re.M)) == 3,
          "each of the three downloads received the whole 5 MiB")
    client = "10.77.1.2" if topology == "netns" else "127.0.0.2"
    # The scripted client's passive step: the bound port is listed while it waits, the
    # connections (control and data) while the transfer runs, and the port is gone by then.
    m = re.search(r"^   > PASV\n(.*?)^   < 226 ", out, re.M | re.S)
    before, _, during = (m.group(1) if m else "").partition("the data connection to that port")
    check(re.search(r"^      \d+ +\d+ +bound port +tcp +user +%s " % re.escape(client), before, re.M) is not None,
          "fwxctl ports lists the port bound for the client before its data connection")
    conns = re.findall(r"^      \d+ +\d+ +tcp +(user|kernel) ", during.partition("$ fwxctl ports")[0], re.M)
    check(sorted(conns) == ["kernel", "user"], "fwxctl connections shows the control and the data connection (%s)" % conns)
    check(re.search(r"\$ fwxctl ports\n      ID .*\n      \(none\)\n", during) is not None,
          "fwxctl ports is empty while the transfer runs (the port was for one connection)")
    third = "10,77,2,3" if topology == "netns" else "127,0,0,4"
    # The plugin's line, on stderr or (with the host's log, IFWXHostLog) after a time and level.
    check(re.search(r'^      (\S+ +\w+ +)?ftp: session \S+: refused "PORT %s,31,144": bounce to a third party$' % third,
                    out, re.M) is not None, "the gateway's log line for the refused bounce is shown")
    check(re.search(r"^   < 500 Illegal PORT command\.$", out, re.M) is not None,
          "the scripted client got 500 for the bounce")
    check(re.search(r"^   bounce +refused$", out, re.M) is not None, "the bounce is reported refused")
    check("fwx-gateway exited 0 on SIGTERM and removed its control socket" in out, "the gateway stopped cleanly")
    check("demo passed" in out.splitlines()[-1] if out.strip() else False, "its last line says it passed")


def test_netns(build):
    why = can_make_namespaces()
    if why:
        skip("cannot make network namespaces here: " + why)
    env = dict(os.environ, FWX_DEMO_TOPOLOGY="netns")
    rc, out, pid = run_demo(build, env)
    check_success(rc, out, "netns")
    check("IP forwarding is off in the gateway" in out and "connection to 10.77.2.2:21 gets no answer" in out,
          "the client could not reach the server without the gateway")
    check(re.search(r"^   vsftpd received: PORT 10,77,2,1,", out, re.M) is not None,
          "vsftpd was given the gateway's server-side address in PORT")
    check(re.search(r"^   curl was told: +227 Entering Passive Mode \(10,77,1,1,", out, re.M) is not None,
          "curl was given the gateway's client-side address in 227")
    check(re.search(r"^      \d+ +\d+ +redirect port +tcp +user +10\.77\.1\.2 +10\.77\.1\.2:\d+ +10\.77\.2\.1:\d+ ",
                    out, re.M) is not None,
          "fwxctl permissions lists the redirect port on the gateway's server-side address for PORT")
    check(namespaces_of(pid) == [], "no namespace of the run is left (%s)" % namespaces_of(pid))

    # Every exit path cleans up: SIGTERM while the first download runs.
    log("\n---- a second run, stopped with SIGTERM during its first download ----")
    p = subprocess.Popen(["bash", DEMO, build], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    seen = b""
    deadline = time.monotonic() + RUN_TIMEOUT
    os.set_blocking(p.stdout.fileno(), False)
    while b"$ fwxctl connections" not in seen and p.poll() is None and time.monotonic() < deadline:
        chunk = p.stdout.read() or b""
        seen += chunk
        time.sleep(0.05)
    had_ns = namespaces_of(p.pid)
    pids = []   # what runs in them: vsftpd, fwx-gateway, curl
    for n in had_ns:
        r = subprocess.run(["ip", "netns", "pids", n], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        pids += [int(x) for x in r.stdout.split()]
    check(b"$ fwxctl connections" in seen and len(had_ns) == 3,
          "the run reached its first download with its three namespaces (%s)" % had_ns)
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    os.set_blocking(p.stdout.fileno(), True)
    seen += p.stdout.read()
    log(seen.decode(errors="replace"))
    check(p.returncode == 143, "the stopped run exits 143 (it exited %s)" % p.returncode)
    check(namespaces_of(p.pid) == [], "its namespaces are deleted (%s left)" % namespaces_of(p.pid))
    check(len(pids) >= 3, "vsftpd, fwx-gateway and curl ran in them (pids %s)" % pids)
    alive = still_running(pids)
    check(alive == [], "none of those processes is left running (%s)" % alive)
    check(b"demo: interrupted" in seen, "the demo says it was interrupted")


def test_loopback(build):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        skip("setpriv (util-linux) is missing: cannot run the demo as an ordinary user")
    # The ordinary user must read the build and the demo, and vsftpd must be installed (the
    # demo cannot install it without root).
    r = subprocess.run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c",
                        'test -r "$1" && test -x "$2" && test -r "$3"', "sh", DEMO,
                        os.path.join(build, "examples", "fwx-gateway", "fwx-gateway"),
                        os.path.join(build, "plugins", "ftp", "ftp.so")])
    if r.returncode != 0:
        skip("user nobody cannot read the source or build tree here")
    if not (shutil.which("vsftpd") or os.path.exists("/usr/sbin/vsftpd")):
        skip("vsftpd is not installed (./run installs it; the demo as an ordinary user cannot)")
    env = dict(os.environ, FWX_DEMO_TOPOLOGY="auto", HOME="/tmp")
    rc, out, pid = run_demo(build, env, [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
    check_success(rc, out, "loopback")
    check("LOOPBACK ONLY (not root" in out, "it says it runs on loopback only, and why")
    check("this proves no mode" in out, "it says what loopback does not prove")


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("netns", "loopback"):
        log("usage: test_demo.py BUILD_DIR netns|loopback")
        return 2
    if os.geteuid() != 0:
        skip("needs root (network namespaces, vsftpd)")
    for tool in ("ip", "ss", "bash", "python3"):
        if shutil.which(tool) is None:
            skip("%s is missing (Debian packages iproute2, bash, python3)" % tool)
    # ./run test installs the demo's server and client; the test and the demo only look.
    if not (shutil.which("vsftpd") or os.path.exists("/usr/sbin/vsftpd")):
        skip("vsftpd is not installed (Debian package vsftpd; ./run test installs it)")
    if shutil.which("curl") is None:
        skip("curl is not installed (Debian package curl; ./run test installs it)")
    build = os.path.abspath(sys.argv[1])
    (test_netns if sys.argv[2] == "netns" else test_loopback)(build)
    log("\n%d check(s) failed: %s" % (len(failures), "; ".join(failures)) if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
