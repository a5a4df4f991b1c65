#!/usr/bin/env python3
"""A small scripted FTP client for demo/ftp-demo.sh: one command at a time, with the gateway's
view in between, then one attack.

    ftp-steps.py --gateway IP:PORT --client-ip IP --third IP --file NAME FWXCTL [FWXCTL-ARGS...]

It runs where the FTP client lives (the client namespace), logs in anonymously through the
gateway and:
  1. sends PASV, prints the reply and `fwxctl ports` (the port the gateway bound for it);
  2. connects to that port and downloads --file; while the transfer runs it prints `fwxctl
     connections` and `fwxctl ports` again (the port was for one connection: it is gone);
  3. sends PORT for a socket of its own, prints the reply and `fwxctl permissions` (the
     redirect the gateway prepared for the server's data connection; left unused);
  4. sends a bounce, `PORT` naming a third address (--third), and prints the reply.
Every line it prints is indented for the demo's output; the last line is machine-readable:
`steps: pasv=CODE retr=CODE port=CODE bounce=CODE bytes=N sha256=HEX`.

Exit status 0 when the dialogue ran (whatever the replies), 1 when it could not talk to the
gateway. Python 3 standard library only.
SPDX-License-Identifier: MIT
"""
import argparse
import hashlib
import re
import socket
import subprocess
import sys

TIMEOUT = 10.0


def out(text=""):
    print("   " + text if text else "", flush=True)


class Control:
    def __init__(self, host, port, source):
        self.sock = socket.create_connection((host, port), TIMEOUT, (source, 0))
        self.file = self.sock.makefile("rb")

    def reply(self):
        """One whole reply (multi-line ones to their last line); returns (code, last line)."""
        first = self._line()
        if len(first) >= 4 and first[3] == "-":
            for _ in range(100):
                line = self._line()
                if line[:3] == first[:3] and line[3:4] == " ":
                    return first[:3], line
            raise OSError("multi-line reply without an end")
        return first[:3], first

    def _line(self):
        raw = self.file.readline(1024)
        if not raw:
            raise OSError("the gateway closed the control connection")
        return raw.decode("ascii", "replace").rstrip("\r\n")

    def send(self, command, show=True):
        if show:
            out("> " + command)
        self.sock.sendall(command.encode("ascii") + b"\r\n")
        code, line = self.reply()
        if show:
            out("< " + line)
        return code, line


def fwxctl(ctl, what):
    out("$ fwxctl " + what)
    try:
        p = subprocess.run(ctl + [what], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        text = p.stdout.decode(errors="replace").rstrip("\n")
    except (OSError, subprocess.TimeoutExpired) as e:
        text = "(fwxctl failed: %s)" % e
    lines = text.splitlines()
    for line in lines or ["(nothing)"]:
        out("   " + line)
    if len(lines) == 1 and lines[0].startswith("ID "):
        out("   (none)")


def download(c, a, host, port, codes):
    """Downloads a.file over a data connection to host:port, showing the gateway while it runs."""
    out()
    out("the data connection to that port, and RETR %s; while the transfer runs:" % a.file)
    # A small, fixed receive buffer (no autotuning): while this client is not reading, the
    # transfer waits for it instead of finishing into the buffers, so fwxctl sees it running.
    data = socket.socket()
    data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    data.settimeout(TIMEOUT)
    data.bind((a.client_ip, 0))
    data.connect((host, port))
    h = hashlib.sha256()
    try:
        out("> RETR " + a.file)
        c.sock.sendall(("RETR %s\r\n" % a.file).encode("ascii"))
        code, line = c.reply()
        out("< " + line)
        if code not in ("125", "150"):
            codes["retr"] = code
            return
        first = data.recv(65536)    # the transfer has begun; the rest waits in the buffers
        h.update(first)
        codes["bytes"] = len(first)
        fwxctl(a.fwxctl, "connections")
        fwxctl(a.fwxctl, "ports")
        out("(the port was for one connection; it came, and the port is closed)")
        for _ in range(1 << 20):
            chunk = data.recv(1 << 16)
            if not chunk:
                break
            h.update(chunk)
            codes["bytes"] += len(chunk)
    finally:
        data.close()
    codes["retr"], line = c.reply()
    out("< " + line)
    codes["sha256"] = h.hexdigest()
    out("got %d bytes, sha256 %s" % (codes["bytes"], codes["sha256"]))


def port_arg(ip, port):
    return ",".join(ip.split(".") + [str(port >> 8), str(port & 0xFF)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True, help="IP:PORT the client connects to")
    ap.add_argument("--client-ip", required=True, help="the client's own address")
    ap.add_argument("--third", required=True, help="the bounce target: an address that is neither peer")
    ap.add_argument("--file", required=True, help="the file to download in passive mode")
    ap.add_argument("fwxctl", nargs=argparse.REMAINDER, help="fwxctl and its --socket option")
    a = ap.parse_args()
    host, port = a.gateway.rsplit(":", 1)
    codes = {"pasv": "-", "retr": "-", "port": "-", "bounce": "-", "bytes": 0, "sha256": "-"}
    listener = None
    try:
        c = Control(host, int(port), a.client_ip)
        code, line = c.reply()
        out("< " + line)
        code, _ = c.send("USER anonymous")
        if code == "331":
            c.send("PASS demo@")
        c.send("TYPE I")

        out()
        out("PASV: the gateway binds a port for this client, and tells it the gateway's address")
        codes["pasv"], line = c.send("PASV")
        fwxctl(a.fwxctl, "ports")
        m = re.search(r"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", line)
        if codes["pasv"] == "227" and m:
            n = [int(x) for x in m.groups()]
            download(c, a, "%d.%d.%d.%d" % tuple(n[:4]), n[4] * 256 + n[5], codes)

        out()
        out("PORT: the gateway prepares a redirect for the server's data connection to this client")
        listener = socket.socket()
        listener.bind((a.client_ip, 0))
        listener.listen(1)
        codes["port"], _ = c.send("PORT " + port_arg(a.client_ip, listener.getsockname()[1]))
        fwxctl(a.fwxctl, "permissions")

        out()
        out("the attack: PORT naming %s, a third host; a server that obeyed would connect there" % a.third)
        codes["bounce"], _ = c.send("PORT " + port_arg(a.third, 8080))
        c.send("QUIT")
    except OSError as e:
        out("error: %s" % e)
        print("steps: " + " ".join("%s=%s" % kv for kv in codes.items()), flush=True)
        return 1
    finally:
        if listener is not None:
            listener.close()
    print("steps: " + " ".join("%s=%s" % kv for kv in codes.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
