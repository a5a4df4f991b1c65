"""The systemd unit's capabilities are enough, and each is needed: fwx-gateway runs with exactly
the unit's CapabilityBoundingSet (setpriv, no new privileges) in a network namespace the test
makes: the nft backend (kernel mode: nftables, conntrack) and the proxy backend publishing a
port below 1024 both become ready. Without CAP_NET_ADMIN the nft backend is refused, without
CAP_NET_BIND_SERVICE port 21 is; each start fails with exit 1 and says why.
Skips (77), saying why, without root, setpriv or network namespaces.
SPDX-License-Identifier: MIT
"""
import os
import shutil
import signal
import subprocess

from gwtest import Gateway, gateways_stopped, check, log, main, skip, write_file

PREFIX = "fwxcap-"


def sh(*argv, ok=True):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    check(not ok or r.returncode == 0, "%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r


def unit_caps():
    with open(os.environ["FWX_GATEWAY_UNIT_IN"]) as f:
        for line in f:
            if line.startswith("CapabilityBoundingSet="):
                return line.split("=", 1)[1].split()
    check(False, "the unit has no CapabilityBoundingSet")


def bounded(ns, caps):
    """argv prefix: in namespace ns, with exactly caps in the bounding set (so in the
    effective set of a root process), no new privileges."""
    spec = ",".join(["-all"] + ["+" + c[len("CAP_"):].lower() for c in caps])
    return ["ip", "netns", "exec", ns, "setpriv", "--bounding-set", spec, "--inh-caps", "-all", "--no-new-privs"]


def run(tmp):
    if os.geteuid() != 0:
        skip("needs root (network namespaces, nftables)")
    for tool in ("setpriv", "ip", "nft"):
        if shutil.which(tool) is None:
            skip("%s is not installed" % tool)
    # Namespaces of dead runs of this test go first.
    for line in sh("ip", "netns", "list", ok=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = name[len(PREFIX):]
        if name.startswith(PREFIX) and pid.isdigit() and not os.path.exists("/proc/" + pid):
            sh("ip", "netns", "del", name, ok=False)
    ns = PREFIX + str(os.getpid())
    r = sh("ip", "netns", "add", ns, ok=False)
    if r.returncode != 0:
        skip("cannot make a network namespace: %s" % r.stderr.strip())
    with gateways_stopped(lambda: sh("ip", "netns", "del", ns, ok=False)):
        scenario(tmp, ns)


def start(tmp, name, ns, caps, cfg):
    return Gateway(tmp, ["--config", cfg], name=name, wait_ready=False, prefix=bounded(ns, caps))


def scenario(tmp, ns):
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    os.environ["FWX_REDIRECT_DIR"] = os.path.join(tmp, "redirect")  # the gateways inherit it
    caps = unit_caps()
    check(sorted(caps) == ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"], "the unit's capabilities: %r" % caps)

    table = "capgw%d" % os.getpid()
    nft_cfg = os.path.join(tmp, "nft.cfg")
    write_file(nft_cfg, 'gateway = { name = "%s"; backend = "nft"; };\n' % table)
    proxy_cfg = os.path.join(tmp, "proxy.cfg")
    write_file(proxy_cfg, 'gateway = { name = "low"; backend = "proxy"; };\n'
               'protocols = ( { name = "ftp-in"; guid = "{0f3c2b1a-7d6e-4c5b-9a8f-200000000021}"; protocol = "tcp";'
               ' port = 21; direction = "inbound"; } );\n'
               'rules = ( { name = "in"; action = "allow"; from = [ "localhost" ]; to = [ "localhost" ];'
               ' protocols = [ "ftp-in" ]; } );\n'
               'publishing = ( { name = "ftp"; listen = "127.0.0.1:21"; server = "127.0.0.1:2121";'
               ' protocol = "ftp-in"; } );\n')

    # With the unit's capabilities: both start.
    gw = start(tmp, "nft-ok", ns, caps, nft_cfg)
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the nft gateway to be ready")
    check("backend nft" in gw.stdout(), "not the nft backend: %r" % gw.stdout())
    r = sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "fwx_" + table, ok=False)
    check(r.returncode == 0, "no table inet fwx_%s: %s" % (table, r.stderr.strip()))
    check(gw.stop(signal.SIGTERM) == 0, "nft: exit status; stderr %r" % gw.stderr())
    log("ok: the nft backend runs with %s only" % " ".join(caps))

    gw = start(tmp, "low-ok", ns, caps, proxy_cfg)
    gw.wait_log("fwx-gateway: ready", timeout=10, what="the proxy gateway to be ready")
    r = sh("ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :21")
    check("127.0.0.1:21" in r.stdout, "nothing listens on 127.0.0.1:21: %r" % r.stdout)
    check(gw.stop(signal.SIGTERM) == 0, "proxy: exit status; stderr %r" % gw.stderr())
    log("ok: the proxy backend publishes port 21 with %s only" % " ".join(caps))

    # Each capability is needed.
    for missing, cfg, want in (("CAP_NET_ADMIN", nft_cfg, 'backend "nft"'),
                               ("CAP_NET_BIND_SERVICE", proxy_cfg, "127.0.0.1:21")):
        fewer = [c for c in caps if c != missing]
        gw = start(tmp, "no-" + missing.lower(), ns, fewer, cfg)
        try:
            rc = gw.proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        gw.stop()
        check(rc == 1 and want in gw.stderr(), "without %s: exit %s, stderr %r" % (missing, rc, gw.stderr()))
        log("ok: without %s: exit 1: %s" % (missing, gw.stderr().strip().splitlines()[-1]))


main(run)
