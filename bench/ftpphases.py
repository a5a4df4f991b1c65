#!/usr/bin/env python3
"""Splits FTP sessions' time to first byte into their exchanges, from curl traces.

usage: ftpphases.py DIR
       ftpphases.py --tsv DIR
DIR holds ROW.N.trace files, each written by `curl --trace-time --trace-ascii FILE` for one
passive download (bench/kernel.sh FTP_FB=N). Prints, per row, p50 and p90 in ms of:
  connect   curl's start to the control connection's "Connected"
  banner    connected to the 220 greeting
  USER, PASS, PWD, EPSV, TYPE, SIZE, RETR (and any other command): the command sent to its
            reply (the first reply line; for RETR the 150)
  dataconn  the 229 reply to the data connection's "Connected" (curl connects before TYPE I)
  data      RETR's 150 to the first data byte
  gaps      the rest: curl's own time between a reply and its next command
  first     curl's start to the first data byte (what time_starttransfer measures)
  226       the last data byte to the 226 reply on the control connection (in time_total, not in
            the first byte: the end of every transfer, also a 2 GiB one's)
--tsv prints instead one line per session for bench/kernel.sh's results file (kreport.py judges
time to first byte on them): ROW <TAB> fb_first_ms <TAB> first, where a ROW-cold trace counts
as ROW's fb_cold_first_ms, and ROW <TAB> fb_no_first (fb_no_first_cold) <TAB> 1 for a session
without a first byte.
SPDX-License-Identifier: MIT
"""
import os
import re
import sys

TS = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{6}) (.*)$")


def secs(m):
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) + int(m.group(4)) / 1e6


def events(path):
    """(time, kind, text): kind is info, send, recv or data; text the first payload line."""
    out = []
    pending = None
    with open(path, errors="replace") as f:
        for line in f:
            m = TS.match(line.rstrip("\n"))
            if m:
                t, rest = secs(m), m.group(5)
                if rest.startswith("== Info: "):
                    out.append((t, "info", rest[9:]))
                    pending = None
                elif rest.startswith("=> Send header"):
                    pending = (t, "send")
                elif rest.startswith("<= Recv header"):
                    pending = (t, "recv")
                elif rest.startswith("<= Recv data"):
                    out.append((t, "data", ""))
                    pending = None
                else:
                    pending = None
            elif pending is not None and re.match(r"^[0-9a-f]{4}: ", line):
                out.append((pending[0], pending[1], line[6:].strip()))
                pending = None
    return out


def phases(ev):
    """{phase: ms} of one session, or None if it has no first data byte."""
    if not ev:
        return None
    t0 = ev[0][0]
    ph = {}
    last_reply = None
    cmd = None  # (verb, time sent)
    gaps = 0.0
    t_ctl = t_229 = t_150 = t_data = t_226 = None
    for t, kind, text in ev:
        if kind == "info" and text.startswith("Connected to") and t_ctl is None:
            t_ctl = t
            ph["connect"] = (t - t0) * 1e3
        elif kind == "info" and t_229 is not None and "dataconn" not in ph and text.startswith("Connected"):
            ph["dataconn"] = (t - t_229) * 1e3
        elif kind == "send":
            verb = text.split(" ")[0].upper()
            if last_reply is not None:
                gaps += t - last_reply
            cmd = (verb, t)
        elif kind == "recv":
            code = text[:3]
            if code == "226":
                t_226 = t
                continue
            if cmd is None:
                if code == "220" and "banner" not in ph and t_ctl is not None:
                    ph["banner"] = (t - t_ctl) * 1e3
                last_reply = t
                continue
            verb, ts = cmd
            ph[verb] = ph.get(verb, 0.0) + (t - ts) * 1e3
            if code == "229" or code == "227":
                t_229 = t
            if verb == "RETR":
                t_150 = t
            cmd = None
            last_reply = t
        elif kind == "data":
            t_data = t
            if "first" in ph:
                continue
            if t_150 is not None:
                ph["data"] = (t - t_150) * 1e3
            ph["first"] = (t - t0) * 1e3
            ph["gaps"] = gaps * 1e3 - ph.get("dataconn", 0.0)
    if "first" not in ph:
        return None
    if t_226 is not None and t_data is not None:
        ph["226"] = (t_226 - t_data) * 1e3
    return ph


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


ORDER = ["connect", "banner", "USER", "PASS", "PWD", "EPSV", "PASV", "dataconn", "TYPE", "SIZE", "RETR", "data",
         "gaps", "first", "226"]


def sessions(d):
    """(label, session number, phases or None) of every trace in d, in session order per label."""
    out = []
    for name in os.listdir(d):
        m = re.match(r"^(.*)\.(\d+)\.trace$", name)
        if m:
            out.append((m.group(1), int(m.group(2)), phases(events(os.path.join(d, name)))))
    return sorted(out, key=lambda s: (s[0], s[1]))


def tsv(d):
    for label, _, ph in sessions(d):
        cold = label.endswith("-cold")
        row = label[:-len("-cold")] if cold else label
        if ph is None:
            print(f"{row}\tfb_no_first{'_cold' if cold else ''}\t1")
        else:
            print(f"{row}\tfb_{'cold_' if cold else ''}first_ms\t{ph['first']:.3f}")


def main():
    if sys.argv[1] == "--tsv":
        tsv(sys.argv[2])
        return
    d = sys.argv[1]
    rows = {}
    bad = {}
    for label, _, ph in sessions(d):
        if ph is None:
            bad[label] = bad.get(label, 0) + 1
            continue
        rows.setdefault(label, []).append(ph)
    if not rows:
        print("  no complete traces in " + d)
        return
    keys = [k for k in ORDER if any(k in ph for v in rows.values() for ph in v)]
    keys += sorted({k for v in rows.values() for ph in v for k in ph} - set(keys))
    print("  %-18s %5s  " % ("row", "n") + "  ".join("%13s" % k for k in keys))
    print("  %-18s %5s  " % ("", "") + "  ".join("%13s" % "p50 / p90" for _ in keys))
    for row in sorted(rows):
        v = rows[row]
        cells = []
        for k in keys:
            xs = [ph[k] for ph in v if k in ph]
            cells.append("%13s" % ("%.2f / %.2f" % (pct(xs, 50), pct(xs, 90)) if xs else "-"))
        print("  %-18s %5d  " % (row, len(v)) + "  ".join(cells) +
              ("  (%d without a first byte)" % bad[row] if row in bad else ""))


if __name__ == "__main__":
    main()
