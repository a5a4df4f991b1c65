"""fwx-gateway --log-format journal (or syslog): each line is `<N>message`, N the syslog priority
of its level (error 3, warn 4, info 6, debug 7), no timestamp of its own: journald stamps each
line and `journalctl -p err` filters on N. Chosen by itself when $JOURNAL_STREAM names the
gateway's stdout (as systemd sets it), not when it names another stream or when a format is
given on the command line or in the file.
SPDX-License-Identifier: MIT
"""
import os
import re
import signal

from gwtest import (EchoServer, Gateway, check, echo_once, free_port, log, main, policy, write_file)

GW_IP = "127.0.0.1"
LINE = re.compile(r"^<([3467])>(fwx|fwx-gateway|conn-logger|ftp): \S")
TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn |info |debug) ")


def journal_lines(gw):
    lines = gw.stdout().splitlines()
    check(lines, "no output")
    for l in lines:
        check(LINE.match(l), "not a journal line: %r" % l)
    return lines


def with_stream(tmp, name, args, stream):
    """A gateway whose $JOURNAL_STREAM is its stdout's DEVICE:INODE (stream="match"), or a
    number pair that is not (stream="other")."""
    out = os.path.join(tmp, name + ".out")
    open(out, "wb").close()  # Gateway reopens it with "wb": same inode
    st = os.stat(out)
    ino = st.st_ino if stream == "match" else st.st_ino + 1
    return Gateway(tmp, args, name=name, env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, ino)})


def run(tmp):
    echo = EchoServer()
    port = free_port()
    cfg = os.path.join(tmp, "gw.cfg")
    write_file(cfg, policy([(port, echo.port)]))

    # Explicit: every level with its priority.
    gw = Gateway(tmp, ["--config", cfg, "--log-format", "journal", "--log-level", "debug"], name="journal")
    echo_once(port)
    write_file(cfg + ".bad", "rules = ( { name = \"x\"; }\n")
    os.replace(cfg + ".bad", cfg)
    gw.send(signal.SIGHUP)
    gw.wait_log("<3>fwx-gateway: reload refused", what="the refused reload at priority 3")
    check(gw.stop() == 0, "exit status")
    lines = journal_lines(gw)
    prios = {l[1] for l in lines}
    check("<6>fwx-gateway: ready (" in gw.stdout(), "no ready line at priority 6")
    check(any(l.startswith("<6>fwx: session ") for l in lines), "no session line at priority 6")
    check(any(l.startswith("<6>fwx-gateway: signal 15: shutting down") for l in lines), "no shutdown line")
    # (debug, 7, has no line this traffic makes: the proxy backend logs nothing at debug here)
    log("ok: --log-format journal: %d lines, priorities %s, no timestamps" % (len(lines), sorted(prios)))

    # syslog is the same format; a warning is priority 4.
    socks = free_port()
    gw = Gateway(tmp, ["--socks", "%s:%d" % (GW_IP, socks), "--log-format", "syslog"], name="syslog")
    check(gw.stop() == 0, "exit status")
    lines = journal_lines(gw)
    check(any(l.startswith("<4>fwx-gateway: no policy") for l in lines), "no warning at priority 4: %r" % lines)
    log("ok: --log-format syslog: the warning at priority 4")

    # Chosen by $JOURNAL_STREAM when it names stdout.
    write_file(cfg, policy([(port, echo.port)]))
    gw = with_stream(tmp, "auto", ["--config", cfg], "match")
    echo_once(port)
    check(gw.stop() == 0, "exit status")
    lines = journal_lines(gw)
    check(any(l.startswith("<6>fwx: connection ") for l in lines), "no connection line: %r" % lines)
    log("ok: JOURNAL_STREAM naming stdout: journal lines")

    # Not when it names another stream, nor when the command line or the file says otherwise.
    cases = [("other", ["--config", cfg], "other", "text"),
             ("cli-text", ["--config", cfg, "--log-format", "text"], "match", "text")]
    jcfg = os.path.join(tmp, "json.cfg")
    write_file(jcfg, policy([(port, echo.port)], gateway_group='  log_format = "json";'))
    cases.append(("file-json", ["--config", jcfg], "match", "json"))
    for name, args, stream, want in cases:
        gw = with_stream(tmp, name, args, stream)
        check(gw.stop() == 0, "%s: exit status" % name)
        lines = gw.stdout().splitlines()
        check(lines, "%s: no output" % name)
        for l in lines:
            ok = TEXT.match(l) if want == "text" else l.startswith('{"ts":"')
            check(ok, "%s: not a %s line: %r" % (name, want, l))
        log("ok: %s: %s lines" % (name, want))

    # A bad value names the choices.
    bad = os.path.join(tmp, "bad.cfg")
    text = policy([(port, echo.port)], gateway_group='  log_format = "klog";')
    write_file(bad, text)
    gw = Gateway(tmp, ["--config", bad, "--check"], name="bad", wait_ready=False, control=False)
    rc = gw.proc.wait(10)
    gw.stop()
    line = text.splitlines().index('  log_format = "klog";') + 1
    check(rc == 2 and gw.stderr() == 'fwx-gateway: %s:%d: gateway.log_format: must be "text", "json" or '
          '"journal" ("syslog")\n' % (bad, line), "log_format = klog: exit %s, %r" % (rc, gw.stderr()))
    log("ok: log_format = \"klog\" refused with file:line")


main(run)
