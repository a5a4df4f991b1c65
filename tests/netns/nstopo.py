"""Network-namespace beds shared by the Python tests in tests/netns: a gateway namespace with one
veth pair to each side namespace, named PREFIX<pid>-<key> so that parallel runs never collide
and a later run deletes the beds of dead ones. Python 3 standard library only.

    bed = Bed("fwxp-", "g", {"c": Side("cl0", ["10.99.1.2/24"], ["10.99.1.1/24"]),
                             "s": Side("sv0", ["10.99.2.2/24"], ["10.99.2.1/24"])},
              forwarding=False)
    bed.up_or_skip()              # stale beds deleted first; exit 77 if none can be made here
    try:
        ...
    finally:
        bed.down()

Each side's end of its pair is eth0; the gateway's end is named by the side (cl0, sv0, ...).
IPv6 addresses (with a ':') are added with nodad. A side with route=True gets default routes
(IPv4 and, if it has one, IPv6) via the gateway's first address of each family on its link.
SPDX-License-Identifier: MIT
"""
import ctypes
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
from gwtest import Failure, skip  # noqa: E402

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv, ok=True, timeout=30):
    """Runs argv; with ok, a non-zero exit fails the test with its stderr."""
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if ok and r.returncode != 0:
        raise Failure("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r


class Side:
    """One side of the gateway: the gateway's device name on its link, the side's addresses and
    the gateway's addresses there ("ip/len"), and whether the side routes through the gateway."""

    def __init__(self, gw_dev, addrs, gw_addrs, route=True):
        self.gw_dev, self.addrs, self.gw_addrs, self.route = gw_dev, list(addrs), list(gw_addrs), route


def _addr_add(ns, addr, dev):
    if ":" in addr:
        sh("ip", "-n", ns, "-6", "addr", "add", addr, "dev", dev, "nodad")
    else:
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)


class Bed:
    """The namespaces of one test run: `gateway` and one per side, keyed as given. IP
    forwarding in the gateway is on or off as `forwarding` says (user mode wants it off, so
    that only what fwx relays gets across; kernel mode routes)."""

    def __init__(self, prefix, gateway, sides, forwarding):
        self.prefix, self.gateway, self.sides, self.forwarding = prefix, gateway, dict(sides), forwarding
        me = os.getpid()
        self.names = {k: "%s%d-%s" % (prefix, me, k) for k in [gateway] + list(self.sides)}
        self.fds = {}

    @staticmethod
    def cleanup_stale(prefix):
        """Deletes the namespaces of this prefix whose run (pid) is no longer alive."""
        for line in sh("ip", "netns", "list", ok=False).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            pid = name[len(prefix):].split("-")[0] if name.startswith(prefix) else ""
            if pid.isdigit() and not os.path.exists("/proc/%s" % pid):
                sh("ip", "netns", "del", name, ok=False)

    def up_or_skip(self):
        """Deletes the stale beds of this prefix, then makes this one; when that fails here (no
        namespaces, no veth), deletes what was made and skips the test (exit 77) saying why."""
        Bed.cleanup_stale(self.prefix)
        try:
            self.up()
        except Failure as e:
            self.down()
            skip("cannot make network namespaces here: %s" % e)

    def up(self):
        """Makes the namespaces and links (Failure if a command fails)."""
        forwarding = self.forwarding
        g = self.names[self.gateway]
        for n in self.names.values():
            sh("ip", "netns", "add", n)
        for key, side in self.sides.items():
            n = self.names[key]
            sh("ip", "-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", side.gw_dev, "netns", g)
            for a in side.addrs:
                _addr_add(n, a, "eth0")
            for a in side.gw_addrs:
                _addr_add(g, a, side.gw_dev)
            sh("ip", "-n", n, "link", "set", "eth0", "up")
            sh("ip", "-n", g, "link", "set", side.gw_dev, "up")
        for n in self.names.values():
            sh("ip", "-n", n, "link", "set", "lo", "up")
        v6 = False
        for key, side in self.sides.items():
            for fam in ("4", "6"):
                via = [a.split("/")[0] for a in side.gw_addrs if (":" in a) == (fam == "6")]
                v6 = v6 or (fam == "6" and bool(via))
                if side.route and via:
                    sh("ip", "-n", self.names[key], "-" + fam, "route", "add", "default", "via", via[0])
        for k, n in self.names.items():
            self.fds[k] = os.open("/run/netns/" + n, os.O_RDONLY)
        self.sysctl(self.gateway, "net.ipv4.ip_forward", int(bool(forwarding)))
        if v6:
            self.sysctl(self.gateway, "net.ipv6.conf.all.forwarding", int(bool(forwarding)))

    def sysctl(self, key, name, value):
        """Sets the sysctl `name` (net.ipv4.ip_forward) in namespace `key` and reads it back
        (Failure if it cannot be set or does not read back as set: a per-namespace setting the
        kernel lacks)."""
        sh("ip", "netns", "exec", self.names[key], "sysctl", "-qw", "%s=%s" % (name, value))
        got = sh("ip", "netns", "exec", self.names[key], "sysctl", "-n", name).stdout.strip()
        if got != str(value):
            raise Failure("%s in %s reads %r after setting %r" % (name, self.names[key], got, str(value)))

    def down(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}
        for n in self.names.values():
            sh("ip", "netns", "del", n, ok=False)

    def wrap(self, key, argv):
        """argv, run inside namespace `key`."""
        return ["ip", "netns", "exec", self.names[key]] + list(argv)

    def run_in(self, key, fn):
        """Runs fn() on a thread that entered namespace `key` (the sockets it makes stay there);
        returns its result or raises what it raised."""
        out = {}

        def body():
            try:
                if _libc.setns(self.fds[key], CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
                out["v"] = fn()
            except BaseException as e:  # handed to the caller
                out["e"] = e
        t = threading.Thread(target=body)
        t.start()
        t.join(30)
        if "e" in out:
            raise out["e"]
        return out.get("v")

    def listener(self, key, ip, port=0, timeout=5.0):
        """A TCP socket listening on ip:port inside namespace `key`."""
        def mk():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
            s.listen(8)
            s.settimeout(timeout)
            return s
        return self.run_in(key, mk)
