#!/usr/bin/env python3
"""Writes the fuzzing seeds (fuzz/seeds/<target>/) and the findings' reproducers
(fuzz/crashes/<target>/) from readable tables: the hostile inputs of the attack catalog's
rows (doc/security.md, "The attack catalog") and tests/check_ftp_parse.c.

Framing: chunks joined by the marker 01 D5 CA 7A.
  ftp_parse: each chunk = direction byte (0 client, 1 server) + bytes of one read.
  socks:     chunk 0 = configuration byte (see fuzz/socks_fuzz.c); then events:
             0 client data, 4 client EOF, 5 timers fire, 6 lookup (01 + address: success,
             00: failure, 02: starts executing), 7 shutdown.
  socks_parse: chunk 0 = configuration byte (bit 0: a login follows the greeting) and one UDP
             datagram; then each chunk = one read of the client (see fuzz/socks_parse_fuzz.c).
Run from anywhere: python3 fuzz/make-seeds.py (it rewrites the .bin files of the directories it owns, but found-*.bin).
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = b"\x01\xd5\xca\x7a"
C, S = b"\x00", b"\x01"


def frame(chunks):
    return MARK.join(chunks)


def ftp_stream(direction, data, cuts=()):
    """One direction's bytes, cut into reads at the given offsets."""
    out, last = [], 0
    for c in list(cuts) + [len(data)]:
        out.append(direction + data[last:c])
        last = c
    return out


# ---- FTP: the catalog rows and tests/check_ftp_parse.c's tables -------------------------------

# Client commands (catalog rows 1, 3, 4, 6, 7, 12, 13, 15, 18, 19, 21; check_ftp_parse.c cmd_cases).
FTP_CMDS = {
    "r01-bounce": b"PORT 192,0,2,99,0,25\r\n",
    "r01-eprt-bounce": b"EPRT |1|192.0.2.99|25|\r\n",
    "ok-port": b"PORT 10,0,0,8,4,1\r\n",
    "ok-port-lower": b"port 10,0,0,8,31,144\r\n",
    "ok-eprt": b"EPRT |1|10.0.0.8|8080|\r\n",
    "ok-eprt-bang": b"EPRT !1!10.0.0.8!8080!\r\n",
    "r03-priv": b"PORT 10,0,0,8,0,22\r\n",
    "r03-zero": b"PORT 10,0,0,8,0,0\r\n",
    "r03-1023": b"PORT 10,0,0,8,3,255\r\n",
    "r03-eprt-zero": b"EPRT |1|10.0.0.8|0|\r\n",
    "r04-gw": b"PORT 203,0,113,1,31,144\r\n",
    "r04-gw-int": b"PORT 10,0,0,1,31,144\r\n",
    "r04-loop": b"PORT 127,0,0,1,31,144\r\n",
    "r04-any": b"PORT 0,0,0,0,31,144\r\n",
    "r04-bcast": b"PORT 255,255,255,255,31,144\r\n",
    "r04-mcast": b"PORT 224,0,0,1,31,144\r\n",
    "r06-wrap": b"PORT 10,0,0,8,4,4294967297\r\n",
    "r06-long": b"PORT 999999999999,0,0,8,4,1\r\n",
    "r06-256": b"PORT 10,0,0,8,4,256\r\n",
    "r06-eprt-65536": b"EPRT |1|10.0.0.8|65536|\r\n",
    "r06-eprt-655360": b"EPRT |1|10.0.0.8|655360|\r\n",
    "r06-eprt-quad": b"EPRT |1|10.0.0.256|8080|\r\n",
    "r07-minus": b"PORT 10,0,0,8,-1,1\r\n",
    "r07-plus": b"PORT 10,0,0,8,+4,1\r\n",
    "r07-space": b"PORT 10, 0,0,8,4,1\r\n",
    "r07-2space": b"PORT  10,0,0,8,4,1\r\n",
    "r07-trail": b"PORT 10,0,0,8,4,1x\r\n",
    "r07-five": b"PORT 10,0,0,8,4\r\n",
    "r07-seven": b"PORT 10,0,0,8,4,1,7\r\n",
    "r07-lz": b"PORT 010,0,0,8,4,1\r\n",
    "r07-tab": b"PORT\t10,0,0,8,4,1\r\n",
    "r07-empty": b"PORT\r\n",
    "r12-v6": b"EPRT |2|::1|8080|\r\n",
    "r12-mapped": b"EPRT |2|::ffff:10.0.0.8|8080|\r\n",
    "r12-zone": b"EPRT |2|fe80::1%eth0|8080|\r\n",
    "r12-af3": b"EPRT |3|x|8080|\r\n",
    "r12-nodelim": b"EPRT 1|10.0.0.8|8080|\r\n",
    "r12-nofinal": b"EPRT |1|10.0.0.8|8080\r\n",
    "r12-noport": b"EPRT |1|10.0.0.8||\r\n",
    "r12-extra": b"EPRT |1|10.0.0.8|8080||\r\n",
    "r12-v6-ok": b"EPRT |2|2001:db8::8|8080|\r\n",
    "r12-v6-long": b"EPRT |2|1111:2222:3333:4444:5555:6666:123.123.123.123|8080|\r\n",
    "r13-lprt": b"LPRT 4,4,10,0,0,8,2,4,1\r\nLPSV\r\nEPSV ALL\r\nPORT 10,0,0,8,4,1\r\n",
    "r15-several": b"NOOP\r\nPORT 192,0,2,99,0,25\r\nPORT 10,0,0,8,4,1\r\n",
    "r18-lf": b"CWD leetXXXX\nPORT 10,0,0,8,31,144\r\n",
    "r18-cr": b"CWD x\rPORT 10,0,0,8,31,144\r\n",
    "r18-lfcrlf": b"NOOP\n\r\n",
    "r18-crcrlf": b"NOOP\r\r\n",
    "r19-nul": b"PORT 10,0,0,8,4,1\x00\r\n",
    "r19-nul2": b"PO\x00RT 10,0,0,8,4,1\r\n",
    "r19-ff": b"PORT 10,0,0,8,4,1\xff\r\n",
    "r19-iac": b"\xff\xf4\xff\xf2ABOR\r\n",
    "r19-ctl": b"NOOP\x01\r\nNOOP\x7f\r\n",
    "r21-overlong": b"PORT " + b"0" * 1000 + b",0,0,8,4,1\r\nNOOP\r\n",
    "r21-510": b"NOOP " + b"A" * 505 + b"\r\n" + b"NOOP " + b"A" * 506 + b"\r\n",
    "r21-510-cr": b"A" * 510 + b"\r\r\nNOOP\r\n",
    "partial": b"PORT 10,0,0,8,4,1",
}

# Server replies (catalog rows 2, 3, 6, 7, 9, 11; check_ftp_parse.c reply_cases; multi-line replies).
FTP_REPLIES = {
    "r09-noparen": b"227 Entering Passive Mode 198,51,100,7,200,10\r\n",
    "r09-eq": b"227 =198,51,100,7,200,10\r\n",
    "r09-bare": b"227 (212,27,40,254,15,161)\r\n",
    "r09-dot": b"227 Entering Passive Mode (198,51,100,7,200,10).\r\n",
    "r09-lz": b"227 Entering Passive Mode (198,051,100,007,200,010)\r\n",
    "r02-third": b"227 Entering Passive Mode (192,0,2,99,0,22)\r\n",
    "r02-gw": b"227 Entering Passive Mode (10,0,0,1,0,22)\r\n",
    "r03-25": b"227 Entering Passive Mode (198,51,100,7,0,25)\r\n",
    "r06-curl237": b"227 Entering Passiv Mode (1216,256,2,127,127,127)\r\n",
    "r06-256": b"227 Entering Passive Mode (198,51,100,7,256,10)\r\n",
    "r07-five": b"227 Entering Passive Mode (198,51,100,7,200)\r\n",
    "r07-seven": b"227 Entering Passive Mode (198,51,100,7,200,10,7)\r\n",
    "r07-space": b"227 Entering Passive Mode (198,51,100,7,200, 10)\r\n",
    "r07-minus": b"227 Entering Passive Mode (198,51,100,7,-200,10)\r\n",
    "r07-none": b"227 Entering Passive Mode\r\n",
    "r11-ok": b"229 Entering Extended Passive Mode (|||6446|)\r\n",
    "r11-bang": b"229 Entering Extended Passive Mode (!!!6446!)\r\n",
    "r11-dot": b"229 Entering Extended Passive Mode (|||6446|).\r\n",
    "r11-nofinal": b"229 Entering Extended Passive Mode (|||6446)\r\n",
    "r11-two": b"229 Entering Extended Passive Mode (||6446|)\r\n",
    "r11-addr": b"229 Entering Extended Passive Mode (|1|10.0.0.1|6446|)\r\n",
    "r11-digits": b"229 Entering Extended Passive Mode (1116446 1)\r\n",
    "r11-second": b"229 Entering Extended Passive Mode (|||6446|) (|||22|)\r\n",
    "r11-mixed": b"229 Entering Extended Passive Mode (|!|6446|)\r\n",
    "r11-lz": b"229 Entering Extended Passive Mode (|||06446|)\r\n",
    "r11-noparen": b"229 Entering Extended Passive Mode |||6446|\r\n",
    "r03-229-zero": b"229 Entering Extended Passive Mode (|||0|)\r\n",
    "r03-229-22": b"229 Entering Extended Passive Mode (|||22|)\r\n",
    "r06-229-wrap": b"229 Entering Extended Passive Mode (|||65557|)\r\n",
    "r06-229-long": b"229 Entering Extended Passive Mode (|||655357|)\r\n",
    "multiline": b"220-Welcome\r\n227 Entering Passive Mode (192,0,2,99,0,22)\r\n220-still\r\n 220 x\r\n"
                 b"220 ready\r\n150 Opening\r\n226 Done\r\n227-a\r\n227 Entering Passive Mode (1,2,3,4,5,6)\r\n"
                 b"bogus\r\n2000 x\r\n200\r\n600 x\r\n",
    "r21-213": b"213 " + b"9" * 2000 + b"\r\n200 ok\r\n",
}


def ftp_seeds():
    seeds = {}
    for name, data in FTP_CMDS.items():
        seeds["c-" + name] = frame(ftp_stream(C, data))
    for name, data in FTP_REPLIES.items():
        seeds["s-" + name] = frame(ftp_stream(S, data))
    # Row 14: split across segments.
    seeds["r14-split-verb"] = frame(ftp_stream(C, b"PORT 10,0,0,8,4,1\r\n", [2]))
    seeds["r14-split-comma"] = frame(ftp_stream(C, b"PORT 10,0,0,8,4,1\r\n", [14]))
    seeds["r14-split-crlf"] = frame(ftp_stream(C, b"PORT 10,0,0,8,4,1\r\n", [18]))
    seeds["r14-split-227"] = frame(ftp_stream(S, b"227 Entering Passive Mode (198,51,100,7,200,10)\r\n", [30, 31, 49]))
    # A whole session with direction changes, as the filter sees it.
    seeds["session"] = frame([
        S + b"220 ready\r\n", C + b"USER ftp\r\n", S + b"331 pw\r\n", C + b"PASS x\r\n", S + b"230 ok\r\n",
        C + b"PASV\r\n", S + b"227 Entering Passive Mode (198,51,", S + b"100,7,200,10).\r\n",
        C + b"EPSV\r\n", S + b"229 Entering Extended Passive Mode (|||6446|)\r\n",
        C + b"PORT 10,0,0,8,4,1\r", C + b"\n", S + b"200 ok\r\n", C + b"EPRT |2|2001:db8::8|8080|\r\n",
        S + b"522 no\r\n", C + b"QUIT\r\n", S + b"221 bye\r\n"])
    return seeds


# ---- SOCKS5 --------------------------------------------------------------------------------------

def ev(op, data=b""):
    return bytes([op]) + data


GREET = b"\x05\x01\x00"


def req(cmd, atyp, addr, port):
    return b"\x05" + bytes([cmd, 0, atyp]) + addr + port.to_bytes(2, "big")


def name(n):
    return bytes([len(n)]) + n


V4 = bytes([198, 51, 100, 7])
V6 = bytes.fromhex("20010db8000000000000000000000007")
MAPPED_LOOP = bytes.fromhex("00000000000000000000ffff7f000001")


def socks_seeds():
    s = {}
    cfg = lambda c: bytes([c])
    s["connect-v4"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, V4, 80))])
    s["connect-v4-one-read"] = frame([cfg(0), ev(0, GREET + req(1, 1, V4, 80))])
    s["connect-v4-bytewise"] = frame([cfg(0)] + [ev(0, bytes([b])) for b in GREET + req(1, 1, V4, 80)])
    s["connect-v4-admitted"] = frame([cfg(0x04), ev(0, GREET), ev(0, req(1, 1, V4, 80))])
    s["connect-v4-denied"] = frame([cfg(0x08), ev(0, GREET), ev(0, req(1, 1, V4, 80))])
    s["connect-v4-open-denied"] = frame([cfg(0x10), ev(0, GREET), ev(0, req(1, 1, V4, 80))])
    s["connect-v4-refused"] = frame([cfg(0x20), ev(0, GREET), ev(0, req(1, 1, V4, 80))])
    s["connect-v4-unreach"] = frame([cfg(0x40), ev(0, GREET), ev(0, req(1, 1, V4, 80))])
    s["connect-v6"] = frame([cfg(1), ev(0, GREET), ev(0, req(1, 4, V6, 443))])
    s["connect-port0"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, V4, 0))])
    s["r40-loopback"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, bytes([127, 0, 0, 1]), 22))])
    s["r40-mapped-loopback"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 4, MAPPED_LOOP, 22))])
    s["r04-gateway"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, bytes([203, 0, 113, 1]), 8080))])
    s["r04-any"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, bytes(4), 8080))])
    s["r04-bcast"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, b"\xff" * 4, 8080))])
    s["r04-mcast"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, bytes([224, 0, 0, 1]), 8080))])
    # Host names (row 40): resolved once, the result checked.
    s["name-ok"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"ftp.example.com"), 21)),
                          ev(6, b"\x01" + V4)])
    s["name-fails"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"nx.example"), 21)), ev(6, b"\x00")])
    s["r40-name-to-loopback"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"0x7f000001"), 22)),
                                       ev(6, b"\x01" + bytes([127, 0, 0, 1]))])
    s["r40-name-to-mapped"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"a.b"), 22)),
                                     ev(6, b"\x01" + MAPPED_LOOP)])
    s["r40-user-at-host"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"anonymous@127.0.0.1:22"), 21))])
    s["r40-name-253"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"a" * 253), 80)), ev(6, b"\x01" + V4)])
    s["r40-name-254"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"a" * 254), 80))])
    s["r40-name-255"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"b" * 255), 80))])
    s["name-empty"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b""), 80))])
    s["name-nul"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"a\x00b"), 80))])
    s["name-bind"] = frame([cfg(0), ev(0, GREET), ev(0, req(2, 3, name(b"a.b"), 80))])
    s["name-udp"] = frame([cfg(0), ev(0, GREET), ev(0, req(3, 3, name(b"a.b"), 80))])
    s["name-lookup-executing"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 3, name(b"slow.example"), 80)),
                                        ev(6, b"\x02"), ev(6, b"\x01" + V4)])
    # BIND and UDP ASSOCIATE.
    s["bind"] = frame([cfg(0), ev(0, GREET), ev(0, req(2, 1, V4, 0)), ev(5)])
    s["bind-fails"] = frame([cfg(0x80), ev(0, GREET), ev(0, req(2, 1, V4, 0))])
    s["bind-then-data"] = frame([cfg(0), ev(0, GREET), ev(0, req(2, 1, V4, 0)), ev(0, b"x")])
    s["udp"] = frame([cfg(0), ev(0, GREET), ev(0, req(3, 1, bytes(4), 0)), ev(4)])
    s["udp-fails"] = frame([cfg(0x80), ev(0, GREET), ev(0, req(3, 1, bytes(4), 0))])
    s["udp-shutdown"] = frame([cfg(0), ev(0, GREET), ev(0, req(3, 4, V6, 5353)), ev(7)])
    # Malformed negotiations.
    s["socks4"] = frame([cfg(0), ev(0, b"\x04\x01\x00\x50" + V4 + b"user\x00")])
    s["no-methods"] = frame([cfg(0), ev(0, b"\x05\x00")])
    s["no-noauth"] = frame([cfg(0), ev(0, b"\x05\x02\x01\x02")])
    s["many-methods"] = frame([cfg(0), ev(0, b"\x05\xff" + bytes(range(1, 256))), ev(0, req(1, 1, V4, 80))])
    s["bad-version"] = frame([cfg(0), ev(0, GREET), ev(0, b"\x04\x01\x00\x01" + V4 + b"\x00\x50")])
    s["bad-rsv"] = frame([cfg(0), ev(0, GREET), ev(0, b"\x05\x01\x01\x01" + V4 + b"\x00\x50")])
    s["bad-atyp"] = frame([cfg(0), ev(0, GREET), ev(0, b"\x05\x01\x00\x02" + V4 + b"\x00\x50")])
    s["bad-cmd"] = frame([cfg(0), ev(0, GREET), ev(0, req(9, 1, V4, 80))])
    s["trailing"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, V4, 80) + b"GET / HTTP/1.0\r\n\r\n")])
    s["trailing-later"] = frame([cfg(0), ev(0, GREET), ev(0, req(1, 1, V4, 80)), ev(0, b"GET /\r\n")])
    s["no-session"] = frame([cfg(0x02), ev(0, GREET), ev(0, req(1, 1, V4, 80))])
    s["request-too-long"] = frame([cfg(0), ev(0, GREET), ev(0, b"\x05\x01\x00\x03\xff" + b"a" * 595)])
    s["eof-in-greeting"] = frame([cfg(0), ev(0, b"\x05\x02"), ev(4)])
    s["eof-in-request"] = frame([cfg(0), ev(0, GREET), ev(0, b"\x05\x01\x00"), ev(4)])
    s["timeout-in-request"] = frame([cfg(0), ev(0, GREET), ev(0, b"\x05\x01"), ev(5)])
    # A queued lookup cancelled by the timer or a shutdown: its callback comes before the
    # client is freed (libuv runs it in the same iteration's poll phase): clean.
    s["timeout-during-queued-lookup"] = frame([cfg(0), ev(0, GREET + req(1, 3, name(b"example.com"), 80)), ev(5)])
    s["shutdown-during-queued-lookup"] = frame([cfg(0), ev(0, GREET + req(1, 3, name(b"example.com"), 80)), ev(7)])
    s["shutdown-in-greeting"] = frame([cfg(0), ev(0, b"\x05"), ev(7)])
    return s


def socks_parse_seeds():
    """The pure parser's target: chunk 0 = configuration (bit 0: a login follows the greeting)
    and one UDP datagram; every later chunk = one read of the client."""
    s = {}
    cfg = lambda c, udp=b"": bytes([c]) + udp
    login = lambda u, p: b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p
    udp4 = b"\x00\x00\x00\x01" + V4 + b"\x00\x35" + b"query"
    udp6 = b"\x00\x00\x00\x04" + V6 + b"\x14\xe9" + b"mdns"
    s["connect-v4"] = frame([cfg(0, udp4), GREET, req(1, 1, V4, 80)])
    s["connect-v4-one-read"] = frame([cfg(0), GREET + req(1, 1, V4, 80)])
    s["connect-v4-bytewise"] = frame([cfg(0)] + [bytes([b]) for b in GREET + req(1, 1, V4, 80)])
    s["connect-v6"] = frame([cfg(0, udp6), GREET, req(1, 4, V6, 443)])
    s["connect-mapped"] = frame([cfg(0), GREET, req(1, 4, MAPPED_LOOP, 22)])
    s["connect-name"] = frame([cfg(0), GREET, req(1, 3, name(b"ftp.example.com"), 21)])
    s["name-253"] = frame([cfg(0), GREET, req(1, 3, name(b"a" * 253), 80)])
    s["name-254"] = frame([cfg(0), GREET, req(1, 3, name(b"a" * 254), 80)])
    s["name-empty"] = frame([cfg(0), GREET, req(1, 3, name(b""), 80)])
    s["name-nul"] = frame([cfg(0), GREET, req(1, 3, name(b"a\x00b"), 80)])
    s["name-user-at-host"] = frame([cfg(0), GREET, req(1, 3, name(b"anonymous@127.0.0.1:22"), 21)])
    s["bind"] = frame([cfg(0), GREET, req(2, 1, V4, 0)])
    s["bind-name"] = frame([cfg(0), GREET, req(2, 3, name(b"a.b"), 80)])
    s["udp-assoc"] = frame([cfg(0), GREET, req(3, 1, bytes(4), 0)])
    s["udp-assoc-empty-name"] = frame([cfg(0), GREET, req(3, 3, name(b""), 0)])
    s["login"] = frame([cfg(1), b"\x05\x02\x00\x02", login(b"alice", b"s3cret"), req(1, 1, V4, 80)])
    s["login-one-read"] = frame([cfg(1), b"\x05\x01\x02" + login(b"bob", b"pw") + req(1, 4, V6, 22)])
    s["login-empty-pass"] = frame([cfg(1), b"\x05\x01\x02", login(b"bob", b"")])
    s["login-empty-user"] = frame([cfg(1), b"\x05\x01\x02", login(b"", b"pw")])
    s["login-user-space"] = frame([cfg(1), b"\x05\x01\x02", login(b"b b", b"pw")])
    s["login-pass-nul"] = frame([cfg(1), b"\x05\x01\x02", login(b"bob", b"p\x00w")])
    s["login-255"] = frame([cfg(1), b"\x05\x01\x02", login(b"u" * 255, b"p" * 255)])
    s["login-version-5"] = frame([cfg(1), b"\x05\x01\x02", GREET])
    s["socks4"] = frame([cfg(0), b"\x04\x01\x00\x50" + V4 + b"user\x00"])
    s["no-methods"] = frame([cfg(0), b"\x05\x00"])
    s["many-methods"] = frame([cfg(0), b"\x05\xff" + bytes(range(1, 256)), req(1, 1, V4, 80)])
    s["bad-version"] = frame([cfg(0), GREET, b"\x04\x01\x00\x01" + V4 + b"\x00\x50"])
    s["bad-rsv"] = frame([cfg(0), GREET, b"\x05\x01\x01\x01" + V4 + b"\x00\x50"])
    s["bad-atyp"] = frame([cfg(0), GREET, b"\x05\x01\x00\x02" + V4 + b"\x00\x50"])
    s["bad-cmd"] = frame([cfg(0), GREET, req(9, 1, V4, 80)])
    s["trailing"] = frame([cfg(0), GREET, req(1, 1, V4, 80) + b"GET / HTTP/1.0\r\n\r\n"])
    s["trailing-later"] = frame([cfg(0), GREET, req(1, 1, V4, 80), b"GET /\r\n"])
    s["trailing-one-byte"] = frame([cfg(0), GREET, req(1, 3, name(b"a.b"), 80) + b"\x00"])
    s["name-bad-last"] = frame([cfg(0), GREET, req(1, 3, name(b"example.com_"), 80)])
    s["too-long"] = frame([cfg(0), GREET, b"\x05\x01\x00\x03\xff" + b"a" * 595])
    s["udp-fragment"] = frame([cfg(0, b"\x00\x00\x01" + udp4[3:]), GREET])
    s["udp-name"] = frame([cfg(0, b"\x00\x00\x00\x03\x03a.b\x00\x35x"), GREET])
    s["udp-short-v6"] = frame([cfg(0, udp6[:21]), GREET])
    return s


# ---- the findings' reproducers ---------------------------------------------------------------------

def socks_crashes():
    c = {}
    # S1: the 10 s negotiation timer fires (or the backend shuts down) while the host-name
    # lookup is executing in libuv's thread pool: uv_cancel() fails (UV_EBUSY), client_close()
    # frees the socks_client that holds the uv_getaddrinfo_t, and the lookup's completion then
    # runs on freed memory (uv__getaddrinfo_done, then on_resolved: c = req->data).
    c["S1-timeout-during-executing-lookup"] = frame([b"\x00", ev(0, GREET + req(1, 3, name(b"example.com"), 80)),
                                                     ev(6, b"\x02"), ev(5)])
    c["S1-shutdown-during-executing-lookup"] = frame([b"\x00", ev(0, GREET + req(1, 3, name(b"example.com"), 80)),
                                                      ev(6, b"\x02"), ev(7)])
    # S2: 600 bytes in one read during the greeting: the refusal is a 10-byte request reply
    # (05 01 00 01 ...), which the client reads as method reply "05 01" (GSSAPI selected).
    c["S2-greeting-600-bytes"] = frame([b"\x00", ev(0, b"\x05\x01" + b"\x00" * 598)])
    return c


# ---- TFTP: the catalog rows 60-66 and tests/check_tftp_parse.c's table ---------------------------

def tftp_seeds():
    """Each seed: one or more datagrams (chunks), as the filter receives them."""
    def rq(op, name, mode, *opts):
        b = bytes([0, op]) + name + b"\0" + mode + b"\0"
        for k, v in opts:
            b += k + b"\0" + v + b"\0"
        return b
    s = {
        "rrq-octet": [rq(1, b"hello.txt", b"octet")],
        "wrq-netascii": [rq(2, b"up/load.bin", b"netascii")],
        "rrq-curl-options": [rq(1, b"big.bin", b"octet", (b"tsize", b"0"), (b"blksize", b"1428"))],
        "rrq-all-options": [rq(1, b"f", b"octet", (b"blksize", b"512"), (b"timeout", b"5"), (b"tsize", b"0"),
                               (b"windowsize", b"16"))],
        "wrq-mail": [rq(2, b"user", b"mail")],
        "wrq-tsize": [rq(2, b"f", b"OCTET", (b"tsize", b"18446744073709551615"))],
        "pxe-path": [rq(1, b"pxelinux.cfg/01-52-54-00-12-34-56", b"octet")],
        # row 63
        "no-nul-filename": [b"\0\1hello.txt"],
        "no-nul-mode": [b"\0\1hello.txt\0octet"],
        "opcode-0": [rq(0, b"f", b"octet")],
        "opcode-7": [rq(7, b"f", b"octet")],
        "mode-binary": [rq(1, b"f", b"binary")],
        "mail-in-rrq": [rq(1, b"f", b"mail")],
        "filename-600": [rq(1, b"a" * 600, b"octet")],
        "filename-255": [rq(1, b"a" * 255, b"octet")],
        "filename-256": [rq(1, b"a" * 256, b"octet")],
        "filename-8bit": [rq(1, b"caf\xc3\xa9", b"octet")],
        # row 64
        "blksize-0": [rq(1, b"f", b"octet", (b"blksize", b"0"))],
        "blksize-7": [rq(1, b"f", b"octet", (b"blksize", b"7"))],
        "blksize-65465": [rq(1, b"f", b"octet", (b"blksize", b"65465"))],
        "blksize-huge": [rq(1, b"f", b"octet", (b"blksize", b"999999999999"))],
        "tsize-negative": [rq(2, b"f", b"octet", (b"tsize", b"-1"))],
        "windowsize-0": [rq(1, b"f", b"octet", (b"windowsize", b"0"))],
        "windowsize-70000": [rq(1, b"f", b"octet", (b"windowsize", b"70000"))],
        "dup-option": [rq(1, b"f", b"octet", (b"blksize", b"512"), (b"BLKSIZE", b"1428"))],
        "100-options": [rq(1, b"f", b"octet", *[(b"o%d" % i, b"1") for i in range(100)])],
        "option-no-value": [rq(1, b"f", b"octet") + b"blksize\0"],
        "padding": [rq(1, b"f", b"octet") + b"\0\0\0"],
        # rows 61, 62, 66: what else reaches a TFTP port (DATA, ACK, ERROR, OACK) then a request
        "other-opcodes": [b"\0\3\0\1" + b"x" * 512, b"\0\4\0\1", b"\0\5\0\5unknown TID\0",
                          b"\0\6blksize\0" b"1428\0", rq(1, b"f", b"octet")],
        "tiny": [b"", b"\0", b"\0\1", b"\0\1f\0\0"],
        # row 65: addresses for tftp_check_client (first 6 / 18 bytes)
        "client-v4-port-53": [bytes([198, 51, 100, 7, 0, 53])],
        "client-v6-loopback": [bytes(15) + b"\1\x9c\x40"],
    }
    return {k: frame(v) for k, v in s.items()}


def write(dirname, files):
    """Rewrites dirname's .bin files from files; found-*.bin (inputs a campaign found
    interesting, committed by hand) are kept."""
    os.makedirs(dirname, exist_ok=True)
    for f in os.listdir(dirname):
        if f.endswith(".bin") and not f.startswith("found-"):
            os.remove(os.path.join(dirname, f))
    for n, data in sorted(files.items()):
        assert re.fullmatch(r"[A-Za-z0-9._-]+", n), n
        with open(os.path.join(dirname, n + ".bin"), "wb") as fh:
            fh.write(data)
    print(f"{dirname}: {len(files)} files")


def main():
    write(os.path.join(HERE, "seeds", "ftp_parse"), ftp_seeds())
    write(os.path.join(HERE, "seeds", "socks"), socks_seeds())
    write(os.path.join(HERE, "seeds", "tftp_parse"), tftp_seeds())
    write(os.path.join(HERE, "seeds", "socks_parse"), socks_parse_seeds())
    write(os.path.join(HERE, "crashes", "socks"), socks_crashes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
