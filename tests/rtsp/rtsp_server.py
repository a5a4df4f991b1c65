#!/usr/bin/env python3
"""fwx tests - a real RTSP server for the RTSP tests: gst-rtsp-server (GstRtspServer through
python3-gi) serving /test, a live 160x120 test picture at 25 frames a second as RTP/JPEG.
Prints "ready" on stdout once it listens; runs until killed.

    rtsp_server.py ADDRESS PORT
SPDX-License-Identifier: MIT
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(sys.argv[1])
    server.set_service(sys.argv[2])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=160,height=120,framerate=25/1 "
                       "! jpegenc quality=50 ! rtpjpegpay name=pay0 pt=26 )")
    # A pipeline per client: with one shared pipeline, a client that comes while the last one's
    # TEARDOWN is still unpreparing it joins a media at its end and gets one frame and EOS (seen
    # in CI under load; both clients of step 3 then ended at once). Each client still has its
    # own transport and ports, which is what the tests look at.
    factory.set_shared(False)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print("cannot listen on %s:%s" % (sys.argv[1], sys.argv[2]), flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
