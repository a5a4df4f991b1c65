"""The small site of doc/policy.md, run exactly as the guide prints it.

The configuration block marked "# fwx small site" is taken out of doc/policy.md unchanged and
given to the real fwx-gateway (only --plugin-dir and --control are added on the command line)
in network namespaces this script creates and deletes itself:

   lan 192.168.1.10 --- 192.168.1.1 [gateway] 203.0.113.1 --- 203.0.113.80 internet
                                    192.168.5.1
                                         |
                               dmz 192.168.5.21

The DMZ and the Internet each run a strict vsftpd (no promiscuous PORT or PASV); the Internet
also serves HTTP. What is checked, with SHA-256 of every file moved:
  1. --check passes on the guide's file (it loads ftp.so and checks filters and addresses);
  2. the LAN fetches over HTTP, and over FTP in passive (PASV) and active (PORT) mode, from
     the Internet; it also uploads in active mode;
  3. the Internet fetches from the published DMZ server in passive and active mode (the
     Internet has no route to the DMZ, so the active-mode data connection only arrives when
     the gateway translates it to its own address, as full_proxy says);
  4. everything else is dropped: the LAN to another Internet port, the LAN to the DMZ;
  5. a connection the policy refuses (the LAN to the published listener) is logged at the
     guide's log level (warn), naming both networks, the default rule and the protocol;
  6. fwxctl plugins shows the FTP filter's GUID, and the grant the FTP filter makes for a
     PASV is listed with OWNER ftp;
  7. SIGTERM: exit 0.

Root, ip, nft, vsftpd and curl are needed; otherwise exit 77 with the reason.
SPDX-License-Identifier: MIT
"""
import hashlib
import os
import pwd
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
from gwtest import (ftp_plugin, Failure, Gateway, gateways_stopped, check, log, main, sha256_file, skip,  # noqa: E402
                    vsftpd_config_text, wait_until, write_file)
import nstopo  # noqa: E402
from nstopo import sh  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "doc", "policy.md")
MARK = "# fwx small site"
LAN, GW_LAN = "192.168.1.10", "192.168.1.1"
DMZ, GW_DMZ = "192.168.5.21", "192.168.5.1"
NET, GW_NET = "203.0.113.80", "203.0.113.1"
FTP_GUID = "{5d1e7a3c-9b42-4f0e-8c6a-2f71d9e04b13}"
PREFIX = "fwxpg-"
CURL_TIMEOUT = 20


def guide_config():
    """The fenced block of doc/policy.md that holds MARK, byte for byte."""
    with open(DOC) as f:
        text = f.read()
    for m in re.finditer(r"^```\n(.*?)^```$", text, re.S | re.M):
        if MARK in m.group(1):
            return m.group(1)
    raise Failure("doc/policy.md has no code block marked %r" % MARK)


class Site(nstopo.Bed):
    """Four namespaces: lan, gw, dmz, net (the Internet), joined to gw by three veth pairs."""

    def __init__(self):
        # The LAN and the DMZ route through the gateway; the Internet knows only its own
        # network (203.0.113.0/24): it cannot address the LAN or the DMZ at all. As the guide
        # says: the nft backend routes, so the gateway forwards.
        super().__init__(PREFIX, "gw", {"lan": nstopo.Side("lan0", [LAN + "/24"], [GW_LAN + "/24"]),
                                        "dmz": nstopo.Side("dmz0", [DMZ + "/24"], [GW_DMZ + "/24"]),
                                        "net": nstopo.Side("ext0", [NET + "/24"], [GW_NET + "/24"], route=False)},
                         forwarding=True)
        self.ns = self.names
        self.procs = []

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        super().down()

    def run(self, side, *argv, timeout=30):
        return subprocess.run(["ip", "netns", "exec", self.ns[side]] + list(argv), capture_output=True,
                              text=True, timeout=timeout)

    def start(self, side, argv, out):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[side]] + list(argv), stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def port_open(self, side, ip, port):
        r = self.run(side, "ss", "-Hltn", "src", "%s:%d" % (ip, port))
        return r.returncode == 0 and r.stdout.strip() != ""


def vsftpd_conf(tmp, name, ip, pasv, payload):
    """A strict vsftpd: anonymous, download payload.bin and upload into up/, data peer must be
    the control peer (no promiscuous PORT or PASV)."""
    d = os.path.join(tmp, name)
    root = os.path.join(d, "root")
    os.makedirs(os.path.join(root, "up"))
    os.makedirs(os.path.join(d, "empty"))
    for x in (d, root):
        os.chmod(x, 0o755)
    os.chmod(os.path.join(d, "empty"), 0o555)
    try:
        pw = pwd.getpwnam("ftp")
    except KeyError:
        pw = pwd.getpwnam("nobody")
    os.chown(os.path.join(root, "up"), pw.pw_uid, pw.pw_gid)
    os.chmod(os.path.join(root, "up"), 0o777)
    with open(os.path.join(root, "payload.bin"), "wb") as f:
        f.write(payload)
    conf = os.path.join(d, "vsftpd.conf")
    with open(conf, "w") as f:
        f.write(vsftpd_config_text("fwx test_policy_guide: strict vsftpd on %s" % ip, ip, 21, root, pw.pw_name,
                                   os.path.join(d, "empty"), pasv, os.path.join(d, "vsftpd.log")))
    return conf, root


def curl(site, side, tmp, name, url, *opts):
    """curl in namespace `side`; returns the path it wrote (downloads) and its output."""
    out = os.path.join(tmp, name)
    argv = ["curl", "-sS", "--max-time", str(CURL_TIMEOUT), "--connect-timeout", "5"] + list(opts)
    if "-T" not in opts:
        argv += ["-o", out]
    argv.append(url)
    r = site.run(side, *argv, timeout=CURL_TIMEOUT + 10)
    check(r.returncode == 0, "%s: curl %s exited %d: %s" % (name, " ".join(opts + (url,)), r.returncode,
                                                          r.stderr.strip()))
    return out


def run(tmp):
    if os.geteuid() != 0:
        skip("needs root (network namespaces, nftables)")
    for tool in ("ip", "nft", "curl", "ss"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            skip("no %s command" % tool)
    vsftpd = next((p for p in ("/usr/sbin/vsftpd", "/usr/bin/vsftpd") if os.path.exists(p)), None)
    if vsftpd is None:
        skip("no vsftpd (Debian package vsftpd)")
    plugin = ftp_plugin()
    cfg_text = guide_config()
    site = Site()
    with gateways_stopped(site.down):
        site.up_or_skip()
        scenario(tmp, site, vsftpd, plugin, cfg_text)


def scenario(tmp, site, vsftpd, plugin, cfg_text):
    cfg = os.path.join(tmp, "site.cfg")
    write_file(cfg, cfg_text)
    gw_prefix = ["ip", "netns", "exec", site.ns["gw"]]
    plugin_dir = ["--plugin-dir", os.path.dirname(plugin)]

    # 1. --check on the guide's file, as the guide says to run it.
    chk = Gateway(tmp, ["--config", cfg, "--check"] + plugin_dir, name="check", wait_ready=False, control=False,
                  prefix=gw_prefix)
    rc = chk.proc.wait(15)
    chk.stop()
    check(rc == 0 and "is valid" in chk.stdout(), "--check on the guide's file: exit %s, %r %r"
          % (rc, chk.stdout(), chk.stderr()))
    log("ok: --check: %s" % chk.stdout().strip())

    # Servers: a strict vsftpd in the DMZ and on the Internet, HTTP on the Internet.
    net_payload, dmz_payload = os.urandom(1 << 20), os.urandom(1 << 20) + b"dmz"
    net_conf, net_root = vsftpd_conf(tmp, "net-ftp", NET, (30000, 30099), net_payload)
    dmz_conf, dmz_root = vsftpd_conf(tmp, "dmz-ftp", DMZ, (31000, 31099), dmz_payload)
    logs = open(os.path.join(tmp, "servers.out"), "wb")
    site.start("net", [vsftpd, net_conf], logs)
    site.start("dmz", [vsftpd, dmz_conf], logs)
    site.start("net", [sys.executable, "-m", "http.server", "--bind", NET, "--directory", net_root, "80"], logs)
    # A listener no rule allows, to show that "everything else" is dropped.
    site.start("net", [sys.executable, "-m", "http.server", "--bind", NET, "--directory", net_root, "8080"], logs)
    for side, ip, port in (("net", NET, 21), ("dmz", DMZ, 21), ("net", NET, 80), ("net", NET, 8080)):
        wait_until(lambda: site.port_open(side, ip, port), 10, what="%s:%d to listen" % (ip, port))

    sock = os.path.join(tmp, "site.sock")
    dbg = ["--verbose"] if os.environ.get("FWX_GUIDE_DEBUG") else []
    gw = Gateway(tmp, ["--config", cfg] + plugin_dir + dbg + ["--control", sock], name="site", wait_ready=False,
                 control=None, prefix=gw_prefix)
    gw.sock = sock
    # At the guide's log level (warn) the ready line is not printed: the control socket says.
    wait_until(lambda: gw.proc.poll() is not None or (os.path.exists(sock) and gw.ctl("stats", ok=False).returncode == 0),
               10, what="the gateway's control socket")
    check(gw.proc.poll() is None, "fwx-gateway exited: %s %s" % (gw.stdout(), gw.stderr()))
    site.run("gw", "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")

    # 2. The LAN goes out: HTTP, FTP passive and active, an upload; checksums.
    want_net = hashlib.sha256(net_payload).hexdigest()
    got = curl(site, "lan", tmp, "lan-http.bin", "http://%s/payload.bin" % NET)
    check(sha256_file(got) == want_net, "LAN HTTP download: checksum differs")
    log("ok: LAN -> Internet HTTP, sha256 %s..." % want_net[:16])
    for mode, opts in (("passive (PASV)", ("--disable-epsv",)), ("active (PORT)", ("-P", LAN, "--disable-eprt"))):
        got = curl(site, "lan", tmp, "lan-ftp-%s.bin" % mode[:3], "ftp://%s/payload.bin" % NET, *opts)
        check(sha256_file(got) == want_net, "LAN FTP %s download: checksum differs" % mode)
        log("ok: LAN -> Internet FTP %s download, checksum matches" % mode)
    up = os.path.join(tmp, "lan-upload.bin")
    up_data = os.urandom(300000)
    with open(up, "wb") as f:
        f.write(up_data)
    curl(site, "lan", tmp, "lan-up", "ftp://%s/up/from-lan.bin" % NET, "-P", LAN, "--disable-eprt", "-T", up)
    stored = os.path.join(net_root, "up", "from-lan.bin")
    check(os.path.exists(stored) and sha256_file(stored) == hashlib.sha256(up_data).hexdigest(),
          "LAN FTP active upload: the server's copy differs")
    log("ok: LAN -> Internet FTP active (PORT) upload, checksum matches")

    # 3. The Internet fetches from the published DMZ server, passive and active.
    want_dmz = hashlib.sha256(dmz_payload).hexdigest()
    for mode, opts in (("passive (PASV)", ("--disable-epsv",)), ("active (PORT)", ("-P", NET, "--disable-eprt"))):
        got = curl(site, "net", tmp, "net-ftp-%s.bin" % mode[:3], "ftp://%s/payload.bin" % GW_NET, *opts)
        check(sha256_file(got) == want_dmz, "published FTP %s download: checksum differs" % mode)
        log("ok: Internet -> published DMZ FTP %s download, checksum matches" % mode)

    # 4. Everything else is dropped.
    r = site.run("lan", "curl", "-sS", "--max-time", "3", "-o", "/dev/null", "http://%s:8080/payload.bin" % NET,
                 timeout=15)
    check(r.returncode != 0, "the LAN reached %s:8080, which no rule allows" % NET)
    r = site.run("lan", "curl", "-sS", "--max-time", "3", "-o", "/dev/null", "ftp://%s/payload.bin" % DMZ, timeout=15)
    check(r.returncode != 0, "the LAN reached the DMZ server, which no rule allows")
    log("ok: the LAN to another Internet port and to the DMZ: dropped")

    # 5. A refusal fwx sees is logged at warn, naming networks, rule and protocol.
    site.run("lan", "curl", "-sS", "--max-time", "3", "-o", "/dev/null", "ftp://%s/payload.bin" % GW_NET, timeout=15)
    want = re.compile(r"warn .*connection %s(:\d+)? -> %s:21 refused by the default rule .*; internal -> dmz .*"
                      r"protocol \"ftp server\"" % (re.escape(LAN), re.escape(DMZ)))
    wait_until(lambda: want.search(gw.stdout()), 5, what="the refusal line at warn")
    log("ok: refused at warn: %s" % want.search(gw.stdout()).group(0))

    # 6. fwxctl: the filter's GUID; a grant the FTP filter made is owned by it.
    plugins = [o for o in gw.ctl_json("plugins") if o.get("kind") == "plugin"]
    check(len(plugins) == 1 and plugins[0].get("name") == "ftp" and plugins[0].get("guid") == FTP_GUID,
          "fwxctl plugins: %r" % plugins)
    held = site.start("net", [sys.executable, "-c", HOLD_PASV, GW_NET], subprocess.PIPE)
    try:
        line = held.stdout.readline().decode("ascii", "replace")
        check(line.startswith("227"), "PASV through the published server: %r" % line)

        def grants():
            return [o for o in gw.ctl_json("all") if o.get("kind") == "grant" and o.get("owner") == "ftp"]
        g = wait_until(grants, 5, what="a grant owned by the ftp plugin")
        log("ok: fwxctl: plugin ftp %s; the PASV's %s is owned by ftp" % (FTP_GUID, g[0].get("name")))
    finally:
        held.kill()
        held.wait(5)

    # 7. Clean exit.
    check(gw.stop() == 0, "SIGTERM: exit status not 0")
    log("ok: SIGTERM: exit 0")


# Logs in to the published server, sends PASV, prints the reply and holds the session open
# until killed, so that fwxctl can be asked about the grant meanwhile.
HOLD_PASV = r"""
import ftplib, sys, time
f = ftplib.FTP(sys.argv[1], timeout=10)
f.login()
print(f.sendcmd("PASV"), flush=True)
time.sleep(30)
"""

main(run)
