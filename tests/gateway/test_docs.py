"""Every fenced block of README.md and of the gateway's guide (examples/fwx-gateway/README.md)
is accounted for: a command or configuration block runs here as printed, or names the test
that runs it; the rest is sample output or a C fragment, said so below. A block this table does
not know fails the test, so a new one gets its check when it is written.

Run here, as printed, in a mount and network namespace of the test's own (unshare: a tmpfs on
/run, so the default control socket /run/fwx/fwx-gateway.sock is the test's; only loopback,
so 127.0.0.1:2121, 1080 and 9464 are the test's and nothing leaves; the built plugins appear
at the paths the blocks name through overlays that only this namespace sees; the groups the
configuration names are added to a copy of /etc/group bound over it there):
  - README "The example gateway": the quick form with conn-logger, `fwxctl connections` and
    `fwxctl events` with no socket option (the default);
  - the guide's usage block: --config gateway.cfg (the installed example configuration) with
    and without --check, and the quick form with `--plugin ftp` from the default plugin folder;
  - the guide's every-key configuration: --check, then a start serving its control sockets;
  - the guide's transparent-gateway configuration (nft backend): --check and a start;
  - the guide's fwxctl blocks against the running quick form: each command's exit status and
    what it prints (kill of a connection that does not exist: exit 1 saying so).
Skips (77), saying why, without root or unshare; the nft start without the nft backend.
SPDX-License-Identifier: MIT
"""
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from gwtest import DEFAULT_CONTROL, Gateway, check, log, main, program, skip, wait_until

SRC = os.environ.get("FWX_SOURCE_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
README = "README.md"
GUIDE = os.path.join("examples", "fwx-gateway", "README.md")
TESTS = os.path.join(SRC, "tests")

# Every fenced block, by (file, its first line): ("run", scenario), ("test", files that run it
# as printed), ("text", why it is no command).
KNOWN = {
    (README, "./run demo     # build, then a strict vsftpd and curl through fwx-gateway with the FTP filter"):
        ("test", ["demo/test_demo.py"]),
    (README, "#include <fwx/fwx.h>"): ("text", "a C fragment; whole plugins: plugins/conn-logger, tests/plugins"),
    (README, "fwx_firewall *fw;"): ("text", "a C fragment; the whole program: examples/minimal-embed "
                                            "(test minimal-embed)"),
    (README, "build/examples/fwx-gateway/fwx-gateway --listen 127.0.0.1:2121 --upstream 10.0.0.5:21 \\"):
        ("run", "quick"),
    (README, "apt-get install dpkg-dev debhelper          # ./run installs them too"):
        ("test", ["packaging/check-packages.sh"]),
    (GUIDE, "fwx-gateway --config gateway.cfg            # a full policy"): ("run", "usage"),
    (GUIDE, "systemctl enable --now fwx-gateway       # Type=notify: \"active\" once the gateway serves"):
        ("test", ["gateway/test_service.py", "gateway/test_notify.py", "gateway/test_journal_log.py"]),
    (GUIDE, "gateway = {"): ("run", "every-key"),
    (GUIDE, "gateway = { backend = \"nft\"; plugins = [ \"ftp\" ]; local_addresses = [ \"10.0.1.1\", "
            "\"203.0.113.1\" ];"): ("run", "nft"),
    (GUIDE, "fwx-gateway: control socket /tmp/gw.sock: directory /tmp is writable by others: anyone could take "
            "the socket's name first (use a directory only root can write, such as /run/fwx)"):
        ("test", ["gateway/test_control_path.py"]),
    (GUIDE, "fwxctl -c 10.0.1.7 connections          # filters: -c client, -i session, -p plugin, -m user|kernel, "
            "-a address"): ("run", "quick"),
}
# Sample output, recognised by its first line's start.
SAMPLES = [(GUIDE, p) for p in ("2026-", "<6>fwx:", "{\"ts\":")]


def blocks(rel):
    with open(os.path.join(SRC, rel)) as f:
        text = f.read()
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)]


def block(rel, first):
    found = [b for b in blocks(rel) if b.split("\n", 1)[0] == first]
    check(len(found) == 1, "%s: %d blocks start with %r" % (rel, len(found), first))
    return found[0]


def commands(text):
    """The block's command lines: continuations joined, comments dropped, split as sh would."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            out.append(argv)
    return out


def build_root():
    # FWX_GATEWAY is <build>/examples/fwx-gateway/fwx-gateway
    return os.path.dirname(os.path.dirname(os.path.dirname(program("FWX_GATEWAY"))))


def resolve(argv):
    """A printed command's program: build/... is this build's, a bare fwx-gateway or fwxctl the
    one this build made (what `meson install` puts on PATH)."""
    exe = argv[0]
    if exe.startswith("build/"):
        exe = os.path.join(build_root(), exe[len("build/"):])
    elif exe == "fwx-gateway":
        exe = program("FWX_GATEWAY")
    elif exe == "fwxctl":
        exe = program("FWXCTL")
    check(os.path.isfile(exe), "%s: no such program in this build" % argv[0])
    return [exe] + [os.path.join(build_root(), a[len("build/"):]) if a.startswith("build/") else a for a in argv[1:]]


def account():
    """Every block is known; the tests named for some exist."""
    for rel in (README, GUIDE):
        for b in blocks(rel):
            first = b.split("\n", 1)[0]
            if any(r == rel and first.startswith(p) for r, p in SAMPLES):
                continue
            what = KNOWN.get((rel, first))
            check(what is not None, "%s: a block this test does not know (run it here or name its test): %r"
                  % (rel, first))
            if what[0] == "test":
                for t in what[1]:
                    check(os.path.isfile(os.path.join(TESTS, t)), "%s: %r names tests/%s, which is gone" % (rel, first, t))
    log("ok: every block of %s and %s is run here, by a named test, or is sample output or C" % (README, GUIDE))


# ---- the namespace ----------------------------------------------------------------------------

def plugin_dir():
    """The folder fwx-gateway looks in by default (FWX_PLUGIN_DIR, compiled in), as its refusal
    of a plugin it cannot find names it."""
    r = subprocess.run([program("FWX_GATEWAY"), "--listen", "127.0.0.1:2121", "--upstream", "127.0.0.1:21",
                        "--plugin", "fwx-docs-probe", "--check", "--no-control"], capture_output=True, text=True,
                       timeout=15)
    m = re.search(r"no file (/\S+)/fwx-docs-probe\.so ", r.stderr)
    check(r.returncode == 1 and m is not None, "the gateway's default plugin folder: %r" % r.stderr)
    return m.group(1)


def overlay(path, tmp, links):
    """Makes `path` (created if missing) hold `links` (name -> target) in this mount namespace
    only: an overlay on its deepest existing ancestor, which keeps what is there."""
    top = path
    while not os.path.isdir(top):
        top = os.path.dirname(top)
    check(top != "/", "no folder to lay %s over" % path)
    d = tempfile.mkdtemp(prefix="ov.", dir=tmp)
    os.makedirs(os.path.join(d, "u"))
    os.makedirs(os.path.join(d, "w"))
    r = subprocess.run(["mount", "-t", "overlay", "fwx-docs", "-o",
                        "lowerdir=%s,upperdir=%s/u,workdir=%s/w" % (top, d, d), top],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "overlay on %s: %s" % (top, r.stderr.strip()))
    os.makedirs(path, exist_ok=True)
    for name, target in links.items():
        os.symlink(target, os.path.join(path, name))


def prepare(tmp):
    for argv in (["mount", "-t", "tmpfs", "-o", "mode=0755", "fwx-docs", "/run"], ["ip", "link", "set", "lo", "up"]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        check(r.returncode == 0, "%s: %s" % (" ".join(argv), r.stderr.strip()))
    ftp, logger = program("FWX_FTP_PLUGIN"), program("FWX_CONN_LOGGER")
    overlay(plugin_dir(), tmp, {"ftp.so": ftp, "conn-logger.so": logger})
    # The every-key block's own plugin paths.
    overlay("/usr/local/lib/fwx/plugins", tmp, {"conn-logger.so": logger})
    overlay("/opt/filters", tmp, {"ftp.so": ftp})
    # ... and its groups (control_group "fwx", a control socket's group "monitor").
    with open("/etc/group") as f:
        groups = f.read()
    names = {line.split(":", 1)[0] for line in groups.splitlines()}
    extra = "".join("%s:x:%d:\n" % (n, gid) for n, gid in (("fwx", 64990), ("monitor", 64991)) if n not in names)
    with open("/run/group", "w") as f:
        f.write(groups + extra)
    r = subprocess.run(["mount", "--bind", "/run/group", "/etc/group"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "bind /etc/group: %s" % r.stderr.strip())


# ---- the scenarios ----------------------------------------------------------------------------

def start(tmp, argv, name, **kw):
    """A gateway from a printed command (argv resolved), options as printed: no --control."""
    check(argv[0] == program("FWX_GATEWAY"), "%s is not this build's fwx-gateway" % argv[0])
    return Gateway(tmp, argv[1:], name=name, control=None, **kw)


def run_ctl(argv, want_rc=0):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    check(r.returncode == want_rc, "%s: exit %d (expected %d): %r %r"
          % (" ".join(argv), r.returncode, want_rc, r.stdout, r.stderr))
    return r


def follow(argv, json_lines=False):
    """A command that follows events: it must say it listens, on the default socket (as JSON,
    its first line is the stream's opening object)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE if json_lines else subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL if json_lines else subprocess.PIPE, text=True)
    out = p.stdout if json_lines else p.stderr
    try:
        ready, _, _ = select.select([out], [], [], 10)
        line = out.readline() if ready else ""
        if json_lines:
            check(json.loads(line).get("kind") == "events", "%s: %r" % (" ".join(argv), line))
        else:
            check("listening for events on %s" % DEFAULT_CONTROL in line, "%s: %r" % (" ".join(argv), line))
        check(p.poll() is None, "%s ended by itself" % " ".join(argv))
    finally:
        p.terminate()
        p.wait(5)


def quick(tmp):
    cmds = [resolve(a) for a in commands(block(README, "build/examples/fwx-gateway/fwx-gateway --listen "
                                                       "127.0.0.1:2121 --upstream 10.0.0.5:21 \\"))]
    check(len(cmds) == 3, "README's gateway block: %r" % cmds)
    gw = start(tmp, cmds[0], "readme-quick")
    check("publishing 127.0.0.1:2121 -> 10.0.0.5:21" in gw.stdout(), "no published listener: %r" % gw.stdout())
    r = run_ctl(cmds[1])
    check(r.stdout.split()[:1] == ["ID"] and len(r.stdout.splitlines()) == 1, "fwxctl connections: %r" % r.stdout)
    follow(cmds[2])
    log("ok: README's gateway block as printed: the quick form serves, fwxctl finds it at %s" % DEFAULT_CONTROL)

    # The guide's fwxctl block and `fwxctl sessions` of its systemd block, against it.
    guide = [resolve(a) for a in commands(block(GUIDE, "fwxctl -c 10.0.1.7 connections          # filters: -c "
                                                       "client, -i session, -p plugin, -m user|kernel, -a address"))]
    check([a[1:] for a in guide] == [["-c", "10.0.1.7", "connections"], ["kill", "connection", "17"],
                                     ["explain", "10.0.1.7", "192.0.2.10", "tcp/21"], ["reload"], ["events"],
                                     ["-j", "events"], ["metrics"]], "the guide's fwxctl block: %r" % guide)
    r = run_ctl(guide[0])
    check(r.stdout.split()[:1] == ["ID"], "fwxctl -c ... connections: %r" % r.stdout)
    log("   fwxctl -c ... connections")
    r = run_ctl(guide[1], want_rc=1)
    check(r.stderr == "fwxctl: %s: kill connection 17: no such object\n" % DEFAULT_CONTROL, "kill connection 17: %r" % r.stderr)
    r = run_ctl(guide[2])
    check("refused" in r.stdout or "allowed" in r.stdout, "explain: %r" % r.stdout)
    r = run_ctl(guide[3])
    check(r.stdout.strip() == "policy reloaded", "reload: %r" % r.stdout)
    follow(guide[4])
    follow(guide[5], json_lines=True)
    r = run_ctl(guide[6])
    check("fwx_sessions" in r.stdout, "metrics: %r" % r.stdout[:300])
    systemd = commands(block(GUIDE, "systemctl enable --now fwx-gateway       # Type=notify: \"active\" once the "
                                    "gateway serves"))
    check(systemd[-1] == ["fwxctl", "sessions"], "the guide's systemd block ends with %r" % systemd[-1])
    r = run_ctl(resolve(systemd[-1]))
    check(r.stdout.split()[:1] == ["ID"], "fwxctl sessions: %r" % r.stdout)
    check(gw.stop(signal.SIGTERM) == 0, "exit status")
    log("ok: the guide's fwxctl commands as printed (kill of no such connection: exit 1, said)")


def usage(tmp):
    cmds = [resolve(a) for a in commands(block(GUIDE, "fwx-gateway --config gateway.cfg            # a full policy"))]
    check(len(cmds) == 3 and cmds[0][1:] == ["--config", "gateway.cfg"], "the usage block: %r" % cmds)
    shutil.copy(os.environ["FWX_GATEWAY_CFG"], os.path.join(tmp, "gateway.cfg"))
    cwd = os.getcwd()
    os.chdir(tmp)  # gateway.cfg as printed: in the working directory
    try:
        r = subprocess.run(cmds[1], capture_output=True, text=True, timeout=15)
        check(r.returncode == 0 and r.stdout == "fwx-gateway: gateway.cfg is valid\n",
              "--check: exit %d %r %r" % (r.returncode, r.stdout, r.stderr))
        # Its log level is warn: no "ready" line; serving is fwxctl's answer at the default socket.
        gw = start(tmp, cmds[0], "usage-config", wait_ready=False)
        wait_until(lambda: gw.proc.poll() is None and subprocess.run(
            [program("FWXCTL"), "stats"], capture_output=True, timeout=15).returncode == 0,
            what="the example configuration's gateway to answer fwxctl")
        check(gw.stop(signal.SIGTERM) == 0 and gw.stderr() == "", "exit status, stderr %r" % gw.stderr())
        gw = start(tmp, cmds[2], "usage-quick")
        r = run_ctl([program("FWXCTL"), "-j", "plugins"])
        check('"name":"ftp"' in r.stdout, "the quick form did not load ftp from %s: %r" % (plugin_dir(), r.stdout))
        check(gw.stop(signal.SIGTERM) == 0, "exit status")
    finally:
        os.chdir(cwd)
    log("ok: the guide's usage block as printed: --check, the example configuration, --plugin ftp from %s"
        % plugin_dir())


def every_key(tmp):
    cfg = os.path.join(tmp, "every-key.cfg")
    with open(cfg, "w") as f:
        f.write(block(GUIDE, "gateway = {"))
    gw_exe = program("FWX_GATEWAY")
    r = subprocess.run([gw_exe, "--config", cfg, "--check"], capture_output=True, text=True, timeout=15)
    check(r.returncode == 0 and r.stdout == "fwx-gateway: %s is valid\n" % cfg,
          "--check on the every-key block: exit %d %r %r" % (r.returncode, r.stdout, r.stderr))
    gw = Gateway(tmp, ["--config", cfg], name="every-key", control=None)
    for sock in ("/run/fwx/edge1.sock", "/run/fwx/ro.sock"):
        r = run_ctl([program("FWXCTL"), "-s", sock, "-j", "stats"])
        check('"sessions"' in r.stdout, "stats over %s: %r" % (sock, r.stdout))
    check(gw.stop(signal.SIGTERM) == 0, "exit status")
    log("ok: the guide's every-key configuration passes --check and serves both control sockets")


def nft(tmp):
    cfg = os.path.join(tmp, "nft.cfg")
    with open(cfg, "w") as f:
        f.write(block(GUIDE, "gateway = { backend = \"nft\"; plugins = [ \"ftp\" ]; local_addresses = "
                             "[ \"10.0.1.1\", \"203.0.113.1\" ];"))
    gw_exe = program("FWX_GATEWAY")
    r = subprocess.run([gw_exe, "--config", cfg, "--check"], capture_output=True, text=True, timeout=15)
    check(r.returncode == 0 and r.stdout == "fwx-gateway: %s is valid\n" % cfg,
          "--check on the transparent-gateway block: exit %d %r %r" % (r.returncode, r.stdout, r.stderr))
    if os.environ.get("FWX_HAVE_NFT") != "1" or shutil.which("nft") is None:
        return "the nft backend is not built here (or nft is missing): the transparent gateway was only checked"
    gw = Gateway(tmp, ["--config", cfg], name="nft", control=None)
    r = run_ctl([program("FWXCTL"), "-s", "/run/fwx/gw.sock", "-j", "plugins"])
    check('"name":"ftp"' in r.stdout, "plugins: %r" % r.stdout)
    check(gw.stop(signal.SIGTERM) == 0, "exit status")
    log("ok: the guide's transparent gateway (nft) passes --check and starts")
    return None


def inside(tmp):
    prepare(tmp)
    quick(tmp)
    usage(tmp)
    every_key(tmp)
    why = nft(tmp)
    if why:
        skip(why)


def run(tmp):
    account()  # needs nothing: a block nobody runs fails here too
    if os.geteuid() != 0:
        skip("needs root (a mount and network namespace of its own)")
    r = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", sys.executable, __file__,
                        "--inside"], timeout=120)
    if r.returncode == 77:
        skip("see above")
    check(r.returncode == 0, "the run in the namespace failed (exit %d)" % r.returncode)


if len(sys.argv) > 1 and sys.argv[1] == "--inside":
    main(inside)
main(run)
