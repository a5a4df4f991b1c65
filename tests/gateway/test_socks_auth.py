"""SOCKS5 username/password authentication (RFC 1929) and user rules for SOCKS sessions,
through the real fwx-gateway on loopback.

  gateway.socks_users = "<tmp>/socks-users"   (alice and bob, $6$ hashes from openssl passwd -6)
  rule: allow users = [ "alice" ] to the echo server; nothing else.

Checks: --check refuses a credentials file others can read, and one with a plain password;
a client offering only "no authentication" gets method 0xFF; a wrong password gets status 1
and a log line naming the user; alice authenticates (status 0) and her CONNECT is allowed and
relays; bob authenticates too but the rule names only alice, so his CONNECT gets reply 2 (the
user reached the session and the policy decided by it).
SPDX-License-Identifier: MIT
"""
import os
import shutil
import socket
import struct
import subprocess

from gwtest import (GW_IP, SERVER_IP, EchoServer, Gateway, check, connect, free_port, log, main, program,
                    recv_exact, skip, write_file)


def hash_of(pw):
    r = subprocess.run(["openssl", "passwd", "-6", "-salt", "fwxtestsalt", pw], capture_output=True, text=True,
                       timeout=10)
    check(r.returncode == 0 and r.stdout.startswith("$6$"), "openssl passwd failed: %r" % r.stderr)
    return r.stdout.strip()


def greet(port, methods):
    s = connect(port)
    s.sendall(bytes([5, len(methods)]) + bytes(methods))
    return s, s.recv(2)


def login(port, user, pw):
    s, ans = greet(port, [0, 2])
    check(ans == b"\x05\x02", "with socks_users the gateway must choose method 2, chose %r" % ans)
    u, p = user.encode(), pw.encode()
    s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
    st = s.recv(2)
    return s, st


def connect_req(s, ip, port):
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port))
    rep = s.recv(10)
    check(len(rep) == 10 and rep[0] == 5, "bad CONNECT reply %r" % rep)
    return rep[1]


def run(tmp):
    if shutil.which("openssl") is None:
        skip("no openssl to make password hashes")
    gwexe = program("FWX_GATEWAY")
    echo = EchoServer()
    sport = free_port()
    users = os.path.join(tmp, "socks-users")
    write_file(users, "# test users\nalice:%s\nbob:%s\n" % (hash_of("wonderland"), hash_of("builder")))
    os.chmod(users, 0o644)
    cfg = os.path.join(tmp, "auth.cfg")
    write_file(cfg, """gateway = { socks_users = "%s"; socks = "%s:%d"; loopback_hosts = true; };
rules = ( { name = "alice only"; action = "allow"; from = [ "localhost", "external" ];
            to = [ "localhost", "external" ]; protocols = [ "all" ]; users = [ "alice" ]; } );
""" % (users, GW_IP, sport))

    # --check: world-readable refused, then plain text refused, then accepted.
    r = subprocess.run([gwexe, "--config", cfg, "--check"], capture_output=True, text=True, timeout=10)
    check(r.returncode != 0 and "readable or writable by others" in r.stderr,
          "--check accepted a world-readable socks_users file: %d %r" % (r.returncode, r.stderr))
    os.chmod(users, 0o600)
    plain = os.path.join(tmp, "plain-users")
    write_file(plain, "carol:secret\n")
    os.chmod(plain, 0o600)
    cfg_plain = os.path.join(tmp, "plain.cfg")
    write_file(cfg_plain, open(cfg).read().replace(users, plain))
    r = subprocess.run([gwexe, "--config", cfg_plain, "--check"], capture_output=True, text=True, timeout=10)
    check(r.returncode != 0 and "plain-users:1" in r.stderr, "--check accepted a plain password: %r" % r.stderr)
    r = subprocess.run([gwexe, "--config", cfg, "--check"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "--check refused a good socks_users file: %r" % r.stderr)
    log("ok: --check refuses a world-readable file and plain passwords")

    gw = Gateway(tmp, ["--config", cfg])
    # No authentication offered: 0xFF.
    s, ans = greet(sport, [0])
    check(ans == b"\x05\xff", "a client without username/password got %r, want 05 ff" % ans)
    s.close()
    # Wrong password: status 1, a log line.
    s, st = login(sport, "alice", "wrong")
    check(st == b"\x01\x01", "wrong password: status %r, want 01 01" % st)
    check(s.recv(16) == b"", "the gateway kept a client with a wrong password")
    s.close()
    gw.wait_log('authentication failed for user "alice"', what="the failed-login line")
    log("ok: no-auth client gets 0xFF; wrong password gets status 1 and a log line")
    # alice: allowed by the user rule, bytes relayed.
    s, st = login(sport, "alice", "wonderland")
    check(st == b"\x01\x00", "alice: status %r, want 01 00" % st)
    check(connect_req(s, SERVER_IP, echo.port) == 0, "alice's CONNECT refused though the rule names her")
    s.sendall(b"hi alice\n")
    check(recv_exact(s, 9) == b"hi alice\n", "alice's bytes did not come back")
    s.close()
    # bob: authenticated, but the rule is alice's only.
    s, st = login(sport, "bob", "builder")
    check(st == b"\x01\x00", "bob: status %r, want 01 00" % st)
    rep = connect_req(s, SERVER_IP, echo.port)
    check(rep == 2, "bob's CONNECT: reply %d, want 2 (the rule lists only alice)" % rep)
    s.close()
    log("ok: the authenticated user reaches the policy: alice allowed, bob refused with reply 2")
    check(gw.stop() == 0, "the gateway did not exit 0")


if __name__ == "__main__":
    main(run)
