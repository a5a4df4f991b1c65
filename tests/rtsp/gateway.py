#!/usr/bin/env python3
"""fwx tests - the RTSP plugin in fwx-gateway with real RTSP software on a dual-homed
namespace bed (tests/netns/nstopo.py), in user mode (backend proxy) or kernel mode (nft).

Three network namespaces: the client (10.83.1.2), the gateway (10.83.1.1 and 10.83.2.1) and the
server (10.83.2.2) running gst-rtsp-server (rtsp_server.py: a live RTP/JPEG test picture).
  proxy: IP forwarding OFF in the gateway, so only what fwx relays crosses; the gateway
         publishes TCP 10.83.1.1:8554 -> 10.83.2.2:8554 (full proxy), the clients name the
         gateway;
  nft:   a transparent NAT gateway, forwarding on: the clients name the server, the kernel
         intercepts the control connection into fwx (the protocol has a filter) and carries the
         media through the pair the filter bound (a kernel set element), reported through
         conntrack.
The rtsp plugin is bound to the protocol. Asserted:
  1. real clients receive frames, counted: ffmpeg with `-rtsp_transport udp` and `tcp`
     (`-f framecrc`, one line per decoded frame) and `gst-launch-1.0 rtspsrc protocols=udp` and
     `tcp` (identity eos-after: one "chain" line per frame); for UDP the gateway logs the
     client_port pair rewritten to a gateway pair, the lowest even, and (published) the
     server_port pair;
     for TCP (interleaved) nothing is rewritten. Forwarding is off: UDP media can only have come
     through the ports the filter asked for;
  2. while a UDP stream runs, `fwxctl connections` lists its media flows (nft: in kernel
     mode) and `fwxctl ports`/`permissions` the filter's grants not used yet; once the client is
     gone (TEARDOWN, then the control connection's end) neither `connections` nor `ports`
     lists any UDP flow or port (well before the 60 s idle limit of a flow);
  3. two ffmpeg clients at once each get their frames and their own gateway pairs;
  4. the RTSP rows of doc/security.md on a raw control connection: row 70 (destination= a third
     party), row 71 (privileged, odd, huge, reversed and out-of-range client_port), multicast:
     `461` from the gateway itself (no Server header, the request's CSeq), one "refused" line
     each, the connection still usable; row 74 (SETUP text inside an interleaved frame: passed
     as data, never answered); row 75 (folded Transport, Content-Length -1): `400` and the
     connection closed; row 77 (nine SETUPs without PLAY): the ninth gets `453`, and after
     TEARDOWN a SETUP gets its pair again; row 76: another connection's TEARDOWN naming the
     Session takes none of the ports (`fwxctl ports`), the owner's takes them all;
  5. rows 72 and 73 from the server's side, with a small lying server: a SETUP reply naming
     another client_port, a third-party source= or a privileged server_port is replaced by the
     gateway's own 461 (with the CSeq) and its ports withdrawn; an honest one passes with the
     client's own client_port restored;
  6. the client's RTCP: after a SETUP (the liar's server_port=6000-6001), `fwxctl ports` and
     `permissions` list the filter's grants, one toward the server's 6001, and a receiver report
     from the client's RTCP port reaches the liar's 6001 from the gateway (published: through
     the client-side pair; nft: the kernel, NAT), and `fwxctl connections` lists its flow;
  7. the RTSP session timeout: the liar's `Session: 4242;timeout=2` keeps every port while the
     client sends GET_PARAMETER/OPTIONS every 0.5 s for 8 s, and loses them all (ports and
     permissions empty in fwxctl, one log line) once the client is silent for 2 s + the
     filter's 5 s slack; the control connection still answers;
  8. a clean stop: exit 0 at SIGTERM, no sanitizer report (the ASan build runs this too).
Needs root, iproute2, python3-gi with gir1.2-gst-rtsp-server-1.0, gstreamer1.0-tools and
-plugins-base/-good, ffmpeg (./run test installs them). Exits 77 (skipped) saying why otherwise.
  gateway.py BUILD_DIR [proxy|nft]
SPDX-License-Identifier: MIT
"""
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from nstopo import Bed, Side  # noqa: E402
from gwtest import Failure, Gateway, check, skip  # noqa: E402

IP_C, IP_GC, IP_GS, IP_S = "10.83.1.2", "10.83.1.1", "10.83.2.1", "10.83.2.2"
PORT = 8554
HOST = IP_GC  # published: the client names the gateway
URL = "rtsp://%s:%d/test" % (HOST, PORT)
RTSP_GUID = "{3b7d9e21-6c48-4f1a-a2d5-8e0c47b1f923}"
FRAMES = 25
# The interpreter python3-gi belongs to (a PATH python3 may be another one, without gi).
SYS_PY = "/usr/bin/python3"


def say(msg):
    print(msg, flush=True)


def need():
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    for prog, pkg in (("ip", "iproute2"), ("gst-launch-1.0", "gstreamer1.0-tools"), ("ffmpeg", "ffmpeg")):
        if not shutil.which(prog):
            skip("%s is not installed (Debian package %s)" % (prog, pkg))
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "import sys; sys.exit(0 if all(Gst.ElementFactory.find(e) for e in "
             "('videotestsrc', 'jpegenc', 'rtpjpegpay', 'rtpjpegdepay', 'rtspsrc', 'identity')) else 3)")
    if not os.access(SYS_PY, os.X_OK):
        skip("%s is missing (python3-gi)" % SYS_PY)
    r = subprocess.run([SYS_PY, "-c", probe], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        skip("gst-rtsp-server through python3-gi, or a GStreamer element, is missing (Debian packages "
             "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good): " +
             (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1])


class Run:
    """The RTSP server and fwx-gateway (gwtest.Gateway, in the gateway's namespace) of one run."""

    def __init__(self, build, tmp, bed, backend):
        self.build, self.tmp, self.bed, self.backend = build, tmp, bed, backend
        self.gw = None
        self.srv = None
        self.liar = None

    def log(self):
        return self.gw.stdout() + self.gw.stderr() if self.gw else ""

    def ctl(self, *args):
        return self.gw.ctl(*args).stdout

    def start(self):
        cfg = os.path.join(self.tmp, "gw.cfg")
        v = {"pid": os.getpid(), "pdir": os.path.join(self.build, "plugins", "rtsp"),
             "gc": IP_GC, "gs": IP_GS, "s": IP_S, "port": PORT, "liar": LIAR_PORT, "guid": RTSP_GUID}
        head = """# fwx tests/rtsp/gateway.py (%(backend)s): the rtsp plugin bound to the RTSP protocol.
gateway = {
  name = "rtsp-gw-%(pid)d";
  backend = "%(backend)s";
  plugin_dir = "%(pdir)s";
  plugins = [ "rtsp" ];
  local_addresses = [ "%(gc)s", "%(gs)s" ];
  log_level = "debug";
};
"""
        if self.backend == "proxy":
            body = """protocols = ( { name = "rtsp"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000002174}"; protocol = "tcp";
    port = %(port)d; direction = "inbound"; filters = [ "%(guid)s" ]; },
  { name = "rtsp liar"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000002175}"; protocol = "tcp";
    port = %(liar)d; direction = "inbound"; filters = [ "%(guid)s" ]; } );
rules = ( { name = "publish rtsp"; action = "allow"; from = [ "external" ]; to = [ "external" ];
    protocols = [ "rtsp", "rtsp liar" ]; } );
publishing = ( { name = "rtsp"; listen = "%(gc)s:%(port)d"; server = "%(s)s:%(port)d"; protocol = "rtsp";
    full_proxy = true; },
  { name = "liar"; listen = "%(gc)s:%(liar)d"; server = "%(s)s:%(liar)d"; protocol = "rtsp liar";
    full_proxy = true; } );
"""
        else:
            body = """networks = { internal = { ranges = [ "10.83.1.0/24" ]; }; };
relationships = ( { from = "internal"; to = "external"; type = "nat"; } );
protocols = ( { name = "rtsp"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000002174}"; protocol = "tcp";
    port = %(port)d; direction = "outbound"; filters = [ "%(guid)s" ]; },
  { name = "rtsp liar"; guid = "{6a0e7c1e-0f7a-4b3e-9c55-000000002175}"; protocol = "tcp";
    port = %(liar)d; direction = "outbound"; filters = [ "%(guid)s" ]; } );
rules = ( { name = "out"; action = "allow"; from = [ "internal" ]; to = [ "external" ];
    protocols = [ "rtsp", "rtsp liar" ]; } );
"""
        v["backend"] = self.backend
        with open(cfg, "w") as f:
            f.write((head + body) % v)
        self.srv = subprocess.Popen(self.bed.wrap("s", [SYS_PY, os.path.join(HERE, "rtsp_server.py"), IP_S,
                                                         str(PORT)]),
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        check(self.srv.stdout.readline().strip() == b"ready", "the RTSP server did not start")
        self.liar = subprocess.Popen(self.bed.wrap("s", [sys.executable, "-c", LIAR, IP_S, str(LIAR_PORT)]),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        check(self.liar.stdout.readline().strip() == b"ready", "the lying RTSP server did not start")
        self.gw = Gateway(self.tmp, ["--config", cfg], prefix=self.bed.wrap("g", []))

    def stop(self):
        if self.gw is not None:
            self.gw.kill()
        for p in (self.srv, self.liar):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    # ---- clients -------------------------------------------------------------------------

    def ffmpeg(self, transport, frames=FRAMES):
        return subprocess.Popen(self.bed.wrap("c", ["ffmpeg", "-nostdin", "-loglevel", "verbose", "-rtsp_transport",
                                                    transport, "-i", URL, "-frames:v", str(frames), "-f", "framecrc",
                                                    "-"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def gst(self, transport, frames=FRAMES):
        # identity passes eos-after - 1 buffers, then ends the stream in place of the last.
        return subprocess.Popen(self.bed.wrap("c", ["gst-launch-1.0", "-v", "rtspsrc", "location=" + URL,
                                                    "protocols=" + transport, "!", "rtpjpegdepay", "!", "identity",
                                                    "silent=false", "eos-after=%d" % (frames + 1), "!", "fakesink"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def frames(p, kind, what):
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise Failure("%s did not finish in 30 s: %s" % (what, err[-600:]))
        if kind == "ffmpeg":
            n = sum(1 for line in out.splitlines() if line.startswith("0,"))
            check(p.returncode == 0, "%s: exit %d: %s" % (what, p.returncode, err[-600:]))
        else:
            n = sum(1 for line in out.splitlines() if "last-message = chain" in line)
            # gst-launch reaches EOS after the frames, then tears down (PAUSE, TEARDOWN). Now and
            # then gst-rtsp-server closes the connection between the two and gst-launch exits 1
            # with "Could not send message" although the stream was whole (seen without fwx too,
            # 1 run in 15 on loopback): an error after EOS is that teardown, any other fails.
            eos = out.find('Got EOS from element "pipeline0"')
            check(eos >= 0, "%s: no EOS (exit %d): %s" % (what, p.returncode, (out + err)[-600:]))
            check(p.returncode == 0 or ("ERROR" not in out[:eos] and "Could not send message" in out[eos:] + err),
                  "%s: exit %d: %s" % (what, p.returncode, (out + err)[-600:]))
        check(n == FRAMES, "%s: %d frames, want %d" % (what, n, FRAMES))
        return n


# ---- the raw control connection of the catalog rows ---------------------------------------------

def read_head(s, timeout=3.0):
    """One RTSP reply head (and its body) from s, or None on timeout, b"" on close."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            d = s.recv(4096)
        except socket.timeout:
            return None
        if not d:
            return buf
        buf += d
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    m = re.search(r"(?im)^content-length:\s*(\d+)", head)
    rest = buf.split(b"\r\n\r\n", 1)[1]
    need = int(m.group(1)) if m else 0
    while len(rest) < need:
        d = s.recv(4096)
        if not d:
            break
        rest += d
    return head


def code_of(head):
    m = re.match(r"RTSP/1\.0 (\d{3}) ", head or "")
    return int(m.group(1)) if m else None


def setup(cseq, transport, session=None):
    return ("SETUP %s/stream=0 RTSP/1.0\r\nCSeq: %d\r\nTransport: %s\r\n%s\r\n" %
            (URL, cseq, transport, "Session: %s\r\n" % session if session else "")).encode()


# A server that lies in its SETUP replies (rows 72 and 73), on LIAR_PORT in the server's
# namespace: the path of the request's URL says which lie; "ok" is the control (an honest reply).
LIAR_PORT = 8555
LIAR = r"""
import re, socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(8)
# the RTCP port of its server_port pair: "rtcp" reports the first datagram that reaches it
rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rtcp.bind((sys.argv[1], 6001))
print("ready", flush=True)
while True:
    c, _ = ls.accept()
    c.settimeout(10)
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d:
                    raise EOFError
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            h = head.decode("latin-1")
            cseq = re.search(r"(?m)^CSeq: *(\d+)", h).group(1)
            tr = re.search(r"(?m)^Transport: *(.*)$", h)
            lie = h.split(" ")[1].rsplit("/", 1)[-1]
            extra = ""
            if tr:
                lo = int(re.search(r"client_port=(\d+)", tr.group(1)).group(1))
                spec = {"ok": "RTP/AVP;unicast;client_port=%d-%d;server_port=6000-6001" % (lo, lo + 1),
                        "mismatch": "RTP/AVP;unicast;client_port=%d-%d;server_port=6000-6001" % (lo + 2, lo + 3),
                        "source": "RTP/AVP;unicast;client_port=%d-%d;source=192.0.2.99;server_port=6000-6001"
                                  % (lo, lo + 1),
                        "privileged": "RTP/AVP;unicast;client_port=%d-%d;server_port=22-23" % (lo, lo + 1),
                        "timeout": "RTP/AVP;unicast;client_port=%d-%d;server_port=6000-6001" % (lo, lo + 1),
                        "rtcp": "RTP/AVP;unicast;client_port=%d-%d;server_port=6000-6001" % (lo, lo + 1)}[lie]
                # "timeout": a session the server ends after 2 s without a request
                extra = "Transport: %s\r\nSession: 4242%s\r\n" % (spec, ";timeout=2" if lie == "timeout" else "")
            c.sendall(("RTSP/1.0 200 OK\r\nCSeq: %s\r\nServer: liar\r\n%s\r\n" % (cseq, extra)).encode())
            if tr and lie == "rtcp":
                rtcp.settimeout(8)
                try:
                    d, a = rtcp.recvfrom(2048)
                    print("rtcp %s %d %s" % (a[0], a[1], d.hex()), flush=True)
                except socket.timeout:
                    print("rtcp none", flush=True)
    except (EOFError, OSError, AttributeError, KeyError):
        c.close()
"""


def liar_setup(lie, client_port):
    """A control connection to the liar and a SETUP for client_port..+1 whose URL names the lie;
    returns the socket, the URL and the reply's head."""
    s = socket.create_connection((HOST, LIAR_PORT), timeout=5)
    url = "rtsp://%s:%d/%s" % (HOST, LIAR_PORT, lie)
    s.sendall(("SETUP %s RTSP/1.0\r\nCSeq: 5\r\nTransport: RTP/AVP;unicast;client_port=%d-%d\r\n\r\n"
               % (url, client_port, client_port + 1)).encode())
    return s, url, read_head(s)


def reply_rows(run):
    """Runs in the client's namespace: the liar's replies through the gateway. Returns failures."""
    bad = []
    for lie, want in (("ok", 200), ("mismatch", 461), ("source", 461), ("privileged", 461)):
        s, _, h = liar_setup(lie, 43000)
        if code_of(h) != want:
            bad.append("reply %s: %r, want %d" % (lie, h, want))
        elif want == 200 and "client_port=43000-43001" not in h:
            bad.append("reply ok: the client's own client_port not restored: %r" % h)
        elif want != 200 and ("Server: liar" in h or not re.search(r"(?m)^CSeq: 5\r?$", h)):
            bad.append("reply %s: not the gateway's own answer with the CSeq: %r" % (lie, h))
        s.close()
    deadline = time.monotonic() + 5  # the connections are gone: so are their ports
    while udp_lines(run, "ports") and time.monotonic() < deadline:
        time.sleep(0.1)
    if udp_lines(run, "ports"):
        bad.append("replies: ports left after the refused replies' connections closed:\n" + run.ctl("ports"))
    return bad


def session_timeout_rows(run):
    """Runs in the client's namespace: the liar's session (Session: 4242;timeout=2) keeps its
    ports while the client sends a request now and then, and loses every one of them, with a
    log line, once the client is silent for the 2 s and the filter's 5 s slack; the control
    connection stays usable.
    Returns failures."""
    bad = []
    s, url, h = liar_setup("timeout", 43100)
    held = udp_lines(run, "ports") + udp_lines(run, "permissions")
    if code_of(h) != 200 or "timeout=2" not in h:
        bad.append("session timeout: SETUP reply %r, want 200 with the server's timeout=2" % h)
        return bad
    # published: the server's pair and the client's RTCP pair; transparent: the server's pair
    # and the client's RTCP permission
    if len(held) < 3:
        bad.append("session timeout: %d UDP ports and permissions after SETUP, want at least 3:\n%s\n%s" %
                   (len(held), run.ctl("ports"), run.ctl("permissions")))
    # keep-alives (OPTIONS, GET_PARAMETER) every 0.5 s for 8 s, longer than the timeout and the
    # filter's 5 s slack: all stays
    for i in range(16):
        time.sleep(0.5)
        s.sendall(("%s %s RTSP/1.0\r\nCSeq: %d\r\nSession: 4242\r\n\r\n" %
                   ("OPTIONS" if i % 2 else "GET_PARAMETER", url, 10 + i)).encode())
        if code_of(read_head(s)) != 200:
            bad.append("session timeout: keep-alive %d not answered" % i)
    now = udp_lines(run, "ports") + udp_lines(run, "permissions")
    if len(now) != len(held) or "timed out" in run.log():
        bad.append("session timeout: the client's keep-alives did not keep the session: %d held, was %d" %
                   (len(now), len(held)))
    # silence: every port and permission goes (after the 2 s and the 5 s slack)
    deadline = time.monotonic() + 15
    while (udp_lines(run, "ports") or udp_lines(run, "permissions")) and time.monotonic() < deadline:
        time.sleep(0.2)
    if udp_lines(run, "ports") or udp_lines(run, "permissions"):
        bad.append("session timeout: left after the client's silence:\n%s\n%s" %
                   (run.ctl("ports"), run.ctl("permissions")))
    if not re.search(r"RTSP session 4242 timed out: nothing from the client for 2 s \(\+5 s slack\)", run.log()):
        bad.append("session timeout: no log line")
    s.sendall(("OPTIONS %s RTSP/1.0\r\nCSeq: 30\r\n\r\n" % url).encode())
    if code_of(read_head(s)) != 200:
        bad.append("session timeout: the control connection is not usable after the timeout")
    s.close()
    return bad


RTCP_RR = bytes.fromhex("81c90007") + bytes.fromhex("0badf00d") + bytes.fromhex("00000001") + bytes(20)


def rtcp_rows(run):
    """Runs in the client's namespace: after a SETUP whose reply names server_port=6000-6001,
    an RTCP receiver report from the client's RTCP port reaches the liar's RTCP port 6001, from
    the gateway's address on the server's side (published: relayed through the gateway's
    client-side pair; transparent: the kernel, NAT). Returns failures."""
    bad = []
    s, _, h = liar_setup("rtcp", 43200)
    m = re.search(r"server_port=(\d+)-(\d+)", h or "")
    if code_of(h) != 200 or not m:
        bad.append("rtcp: SETUP reply %r" % h)
        s.close()
        return bad
    # what the SETUP opened, in fwxctl: published, the server's pair to the client (redirect
    # ports) and the client's RTCP pair to the server (bound ports); transparent, the server's
    # pair (bound ports) and the client's RTCP permission to the server's 6001
    grants = [x for x in udp_lines(run, "ports") + udp_lines(run, "permissions") if x.split()[-2] == "rtsp"]
    rtcp_grant = [x for x in grants if re.search(r"\b%s:6001\b" % re.escape(IP_S), x)]
    if len(grants) != (4 if HOST == IP_GC else 3) or len(rtcp_grant) != 1:
        bad.append("rtcp: after SETUP, fwxctl ports and permissions list %d grants (%d to %s:6001):\n%s\n%s" %
                   (len(grants), len(rtcp_grant), IP_S, run.ctl("ports"), run.ctl("permissions")))
    # published: the client's RTCP goes to the gateway's pair; transparent: to the server itself
    to = (IP_GC, int(m.group(1)) + 1) if HOST == IP_GC else (IP_S, int(m.group(1)) + 1)
    if HOST != IP_GC and to[1] != 6001:
        bad.append("rtcp: transparent, the server_port was rewritten: %r" % h)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((IP_C, 43201))
    u.sendto(RTCP_RR, to)
    r, _, _ = select.select([run.liar.stdout], [], [], 10)
    line = run.liar.stdout.readline().decode().split() if r else []
    want = ["rtcp", IP_GS, line[2] if len(line) > 2 else "?", RTCP_RR.hex()]
    if line != want:
        bad.append("rtcp: the server's RTCP port got %r, want %r" % (line, want))
    flows = [x for x in udp_lines(run, "connections") if "%s:6001" % IP_S in x]
    if len(flows) != 1:
        bad.append("rtcp: fwxctl connections lists %d flows to %s:6001:\n%s" % (len(flows), IP_S,
                                                                               run.ctl("connections")))
    u.close()
    s.close()
    return bad


def catalog_rows(run):
    """Runs in the client's namespace; returns a list of failures (empty: all held)."""
    bad = []

    def conn():
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(("OPTIONS %s RTSP/1.0\r\nCSeq: 1\r\n\r\n" % URL).encode())
        h = read_head(s)
        if code_of(h) != 200 or "Server:" not in h:
            bad.append("OPTIONS through the gateway: %r" % h)
        return s

    def expect_gateway(s, cseq, code, what):
        h = read_head(s)
        if code_of(h) != code:
            bad.append("%s: reply %r, want %d" % (what, h, code))
        elif "Server:" in h:
            bad.append("%s: the server answered (%r): the request got through" % (what, h))
        elif not re.search(r"(?m)^CSeq: %d\r?$" % cseq, h):
            bad.append("%s: the gateway's %d lacks CSeq %d: %r" % (what, code, cseq, h))

    s = conn()
    rows = [
        ("row 70 destination third party", "RTP/AVP;unicast;destination=192.0.2.99;client_port=5000-5001"),
        ("row 71 privileged", "RTP/AVP;unicast;client_port=22-23"),
        ("row 71 odd", "RTP/AVP;unicast;client_port=5001-5002"),
        ("row 71 huge", "RTP/AVP;unicast;client_port=5000-9000"),
        ("row 71 reversed", "RTP/AVP;unicast;client_port=5002-5000"),
        ("row 71 out of range", "RTP/AVP;unicast;client_port=65535-65536"),
        ("row 71 single port", "RTP/AVP;unicast;client_port=5000"),
        ("multicast", "RTP/AVP;multicast;client_port=5000-5001"),
        ("row 72 decoy spec", "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP;unicast;destination=192.0.2.99;"
                              "client_port=6000-6001"),
    ]
    cseq = 2
    for what, tr in rows:
        s.sendall(setup(cseq, tr))
        expect_gateway(s, cseq, 461, what)
        cseq += 1
    s.close()

    # row 74: SETUP text inside an interleaved frame is data, never a request.
    s = conn()
    payload = setup(7, "RTP/AVP;unicast;destination=192.0.2.99;client_port=5000-5001")
    s.sendall(b"$\x01" + len(payload).to_bytes(2, "big") + payload)
    if read_head(s, timeout=1.0) is not None:
        bad.append("row 74: something answered SETUP text inside an interleaved frame")
    s.sendall(("OPTIONS %s RTSP/1.0\r\nCSeq: 8\r\n\r\n" % URL).encode())
    h = read_head(s)
    if code_of(h) != 200 or "Server:" not in h:
        bad.append("row 74: the connection is not usable after the frame: %r" % h)
    s.close()

    # row 75: header abuse: 400, then the gateway closes.
    for what, req in (("row 75 folded Transport",
                       "SETUP %s/stream=0 RTSP/1.0\r\nCSeq: 9\r\nTransport: RTP/AVP;unicast;\r\n"
                       " client_port=5000-5001\r\n\r\n" % URL),
                      ("row 75 Content-Length -1",
                       "ANNOUNCE %s RTSP/1.0\r\nCSeq: 9\r\nContent-Length: -1\r\n\r\n" % URL)):
        s = conn()
        s.sendall(req.encode())
        h = read_head(s)
        if code_of(h) != 400 or "Server:" in h:
            bad.append("%s: reply %r, want the gateway's 400" % (what, h))
        try:
            s.settimeout(3)
            rest = s.recv(100)
        except (socket.timeout, ConnectionResetError):
            rest = None
        if rest != b"":
            bad.append("%s: the gateway did not close the connection (%r)" % (what, rest))
        s.close()

    # row 77: at most 8 pairs per control connection; TEARDOWN gives them back.
    s = conn()
    sessions = []
    for i in range(9):
        s.sendall(setup(20 + i, "RTP/AVP;unicast;client_port=%d-%d" % (40000 + 2 * i, 40001 + 2 * i)))
        if i < 8:
            h = read_head(s)
            if code_of(h) != 200:
                bad.append("row 77: SETUP %d: %r" % (i, h))
                break
            m = re.search(r"(?m)^Session: ([^;\r\n]+)", h)
            sessions.append(m.group(1) if m else "")
        else:
            expect_gateway(s, 20 + i, 453, "row 77 ninth SETUP")
    s.sendall(("TEARDOWN %s RTSP/1.0\r\nCSeq: 40\r\nSession: %s\r\n\r\n" % (URL, sessions[0] if sessions else ""))
              .encode())
    h = read_head(s)
    if code_of(h) is None:
        bad.append("row 77: no reply to TEARDOWN")
    s.sendall(setup(41, "RTP/AVP;unicast;client_port=41000-41001"))
    h = read_head(s)
    if code_of(h) != 200:
        bad.append("row 77: SETUP after TEARDOWN: %r" % h)
    s.close()

    # row 76: another control connection's TEARDOWN, naming this one's Session, takes none of
    # its ports; its own TEARDOWN takes them all.
    deadline = time.monotonic() + 5  # the connection above has closed: its ports go
    while udp_lines(run, "ports") and time.monotonic() < deadline:
        time.sleep(0.1)
    if udp_lines(run, "ports"):
        bad.append("row 77: ports left after the connection closed:\n" + run.ctl("ports"))
    a = conn()
    a.sendall(setup(50, "RTP/AVP;unicast;client_port=42000-42001"))
    h = read_head(a)
    m = re.search(r"(?m)^Session: ([^;\r\n]+)", h or "")
    if code_of(h) != 200 or not m:
        bad.append("row 76: SETUP: %r" % h)
        return bad
    held = len(udp_lines(run, "ports"))
    if held < 2:
        bad.append("row 76: %d UDP ports held after SETUP, want at least the pair" % held)
    b = conn()
    b.sendall(("TEARDOWN %s RTSP/1.0\r\nCSeq: 51\r\nSession: %s\r\n\r\n" % (URL, m.group(1))).encode())
    read_head(b)
    b.close()
    time.sleep(0.3)
    if len(udp_lines(run, "ports")) != held:
        bad.append("row 76: another connection's TEARDOWN changed the ports: %d, was %d" %
                   (len(udp_lines(run, "ports")), held))
    a.sendall(("TEARDOWN %s RTSP/1.0\r\nCSeq: 52\r\nSession: %s\r\n\r\n" % (URL, m.group(1))).encode())
    read_head(a)
    if udp_lines(run, "ports"):
        bad.append("row 76: ports left after the owner's TEARDOWN:\n" + run.ctl("ports"))
    a.close()
    return bad


def in_client(bed, rows, run):
    """rows(run) in the client's namespace: its list of failures; one failure when it did not
    finish (bed.run_in gives up waiting after 30 s and returns None)."""
    bad = bed.run_in("c", lambda: rows(run))
    return bad if isinstance(bad, list) else ["%s did not finish in 30 s" % rows.__name__]


def udp_lines(run, what):
    """The UDP rows of `fwxctl connections` or `fwxctl ports`."""
    return [line for line in run.ctl(what).splitlines()[1:] if re.search(r"\budp\b", line)]


def main():
    global HOST, URL
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in ("proxy", "nft")):
        print("usage: gateway.py BUILD_DIR [proxy|nft]")
        return 2
    build = sys.argv[1]
    backend = sys.argv[2] if len(sys.argv) == 3 else "proxy"
    need()
    # gwtest.Gateway runs what meson names in these (or, run by hand, the build's own)
    os.environ.setdefault("FWX_GATEWAY", os.path.join(build, "examples", "fwx-gateway", "fwx-gateway"))
    os.environ.setdefault("FWXCTL", os.path.join(build, "examples", "fwxctl", "fwxctl"))
    for p in (os.environ["FWX_GATEWAY"], os.environ["FWXCTL"], os.path.join(build, "plugins", "rtsp", "rtsp.so")):
        if not os.path.exists(p):
            skip("%s is not built" % p)
    if backend == "nft":
        if not shutil.which("nft"):
            skip("nft is not installed (Debian package nftables)")
        HOST = IP_S  # transparent: the client names the server
        URL = "rtsp://%s:%d/test" % (HOST, PORT)
    # proxy: forwarding off, only what fwx relays crosses; nft: the kernel routes (and NATs).
    kernel = backend == "nft"
    bed = Bed("fwxrtsp-", "g", {"c": Side("rc0", [IP_C + "/24"], [IP_GC + "/24"], route=kernel),
                                "s": Side("rs0", [IP_S + "/24"], [IP_GS + "/24"], route=False)},
              forwarding=kernel)
    bed.up_or_skip()
    tmp = tempfile.mkdtemp(prefix="fwx-rtsp-%d-" % os.getpid())
    run = Run(build, tmp, bed, backend)
    try:
        run.start()
        # 1. one client at a time, each transport
        for kind, tr in (("ffmpeg", "udp"), ("ffmpeg", "tcp"), ("gst", "udp"), ("gst", "tcp")):
            before = run.log().count("now the gateway's")
            p = run.ffmpeg(tr) if kind == "ffmpeg" else run.gst(tr)
            Run.frames(p, kind, "%s %s" % (kind, tr))
            rewrites = run.log().count("now the gateway's") - before
            # published: client_port and server_port; transparent: client_port only
            want = (2 if backend == "proxy" else 1) if tr == "udp" else 0
            check(rewrites == want, "%s %s: %d Transport rewrites logged, want %d" % (kind, tr, rewrites, want))
            say("ok: %s over %s: %d frames" % (kind, tr, FRAMES))
        pairs = re.findall(r"client_port (\d+)-(\d+) now the gateway's (\d+)-(\d+)", run.log())
        for a, b, g, h in pairs:
            check(int(g) % 2 == 0 and int(h) == int(g) + 1, "gateway pair %s-%s is not even, consecutive" % (g, h))

        # 2. the media flows while a stream runs, and after: TEARDOWN and the control
        #    connection's end take them and every port with them (not the 60 s idle limit)
        p = run.ffmpeg("udp", frames=FRAMES * 4)
        # a flow that carries media: a row with a peer (a bound port not used yet is listed too,
        # without one: ID SESSION PROTO MODE CLIENT PEER ...), in kernel mode with nft (reported
        # through conntrack)
        def flowing(lines):
            return [x for x in lines if len(x.split()) > 5 and x.split()[5] != "-" and
                    (backend == "proxy" or x.split()[3] == "kernel")]
        # and the stream's ports and permissions of the filter (owner rtsp): the pairs the
        # server and the client send to until their first datagram uses them (the RTCP ones
        # wait for the first report, seconds after the media starts)
        during, granted = [], set()
        deadline = time.monotonic() + 10
        while (not during or not granted) and time.monotonic() < deadline and p.poll() is None:
            during = during or flowing(udp_lines(run, "connections"))
            granted |= {" ".join(x.split()[2:8]) for x in udp_lines(run, "ports") + udp_lines(run, "permissions")
                        if x.split()[-2] == "rtsp"}
            time.sleep(0.1)
        check(during, "fwxctl connections showed no UDP flow%s while a UDP stream ran:\n%s" %
              ("" if backend == "proxy" else " in kernel mode", run.ctl("connections")))
        check(granted, "fwxctl ports and permissions showed nothing of the rtsp filter while a UDP stream ran")
        p.communicate(timeout=30)
        check(p.returncode == 0, "ffmpeg udp (long): exit %d" % p.returncode)
        deadline = time.monotonic() + 5
        while (udp_lines(run, "connections") or udp_lines(run, "ports")) and time.monotonic() < deadline:
            time.sleep(0.1)
        check(not udp_lines(run, "connections") and not udp_lines(run, "ports"),
              "UDP flows or ports left after the client went:\n%s\n%s" % (run.ctl("connections"), run.ctl("ports")))
        say("ok: fwxctl connections showed %d UDP flows during the stream, ports and permissions %d grants "
            "of the rtsp filter; none, and no port, after:\n  %s\n  %s" %
            (len(during), len(granted), "\n  ".join(during), "\n  ".join(sorted(granted))))

        # 3. two clients at once
        before = len(re.findall(r"client_port \d+-\d+ now the gateway's", run.log()))
        ps = [run.ffmpeg("udp"), run.ffmpeg("udp")]
        for i, p in enumerate(ps):
            Run.frames(p, "ffmpeg", "concurrent ffmpeg udp #%d" % i)
        gw_pairs = re.findall(r"client_port \d+-\d+ now the gateway's (\d+)-", run.log())[before:]
        check(len(gw_pairs) == 2 and gw_pairs[0] != gw_pairs[1],
              "two clients at once: gateway pairs %r, want two different ones" % gw_pairs)
        say("ok: two clients at once, gateway pairs %s" % ", ".join(gw_pairs))

        # 4. catalog rows
        n_refused = run.log().count("refused")
        bad = in_client(bed, catalog_rows, run)
        check(not bad, "catalog rows:\n  " + "\n  ".join(bad))
        time.sleep(0.3)
        refused = run.log().count("refused") - n_refused
        check(refused >= 12, "%d refusal lines logged for 12 refused requests" % refused)
        say("ok: catalog rows 70, 71, 72, 74, 75, 76, 77 and multicast held as documented")
        bad = in_client(bed, reply_rows, run)
        check(not bad, "server replies:\n  " + "\n  ".join(bad))
        check(run.log().count("refused the server's reply") >= 3, "no log line for each refused server reply")
        say("ok: rows 72 and 73 on the server's side: a reply with another client_port, a third-party "
            "source, a privileged server_port answered 461 by the gateway, their ports gone")

        # 6. the client's RTCP receiver report reaches the server's RTCP port
        bad = in_client(bed, rtcp_rows, run)
        check(not bad, "rtcp:\n  " + "\n  ".join(bad))
        say("ok: the client's RTCP receiver report reached the server's RTCP port from %s" % IP_GS)

        # 7. the RTSP session timeout (row 77's "session timeout releases everything")
        bad = in_client(bed, session_timeout_rows, run)
        check(not bad, "session timeout:\n  " + "\n  ".join(bad))
        say("ok: the server's Session timeout=2: kept by keep-alives, every port and permission withdrawn "
            "after 2 s (+5 s slack) of silence, logged; the control connection still usable")

        # 8. a clean stop (under ASan/UBSan: no report, no leak)
        rc = run.gw.stop()
        text = run.log()
        check(rc == 0, "fwx-gateway exited %s at SIGTERM:\n%s" % (rc, run.gw.stderr()[-3000:]))
        check("runtime error" not in text and "Sanitizer" not in text,
              "a sanitizer reported:\n" + text[-6000:])
        say("ok: fwx-gateway stopped cleanly (exit 0)")
    except Failure as e:
        say("FAIL: %s" % e)
        say("---- gateway log (tail) ----\n" + run.log()[-30000:])
        return 1
    finally:
        run.stop()
        bed.down()
        shutil.rmtree(tmp, ignore_errors=True)
    say("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
