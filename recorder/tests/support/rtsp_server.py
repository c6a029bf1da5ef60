#!/usr/bin/python3
"""A tiny stand-in for e2e/camera-sim/camera_sim.py, used by the recorder tests when the real
simulator is not available. Same command line and control interface:

  /usr/bin/python3 rtsp_server.py --rtsp-port P --control-port C \
      --camera name=cam1,codec=h264,bitrate=4000,fps=25,width=1280,height=720,gop=25[,audio=1]

serves rtsp://127.0.0.1:P/<name>/live, prints `READY rtsp=P control=C`, and accepts
POST /cameras/<name>/drop and /restore on the control port (drop disconnects every client and
refuses new ones until restored, like a camera that reboots).

Needs Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-
{good,bad,ugly}, gstreamer1.0-libav).
"""
import argparse
import http.server
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def parse_camera(text):
    cam = {"codec": "h264", "bitrate": 4000, "fps": 25, "width": 1280, "height": 720, "gop": 25,
           "audio": 0}
    for part in text.split(","):
        k, _, v = part.partition("=")
        cam[k] = v if k in ("name", "codec") else int(v)
    if "name" not in cam:
        raise SystemExit("--camera needs name=")
    return cam


def launch_line(cam):
    caps = "video/x-raw,width=%d,height=%d,framerate=%d/1" % (cam["width"], cam["height"], cam["fps"])
    src = "videotestsrc is-live=true pattern=ball ! %s ! videoconvert" % caps
    if cam["codec"] == "h265":
        enc = ("x265enc tune=zerolatency speed-preset=ultrafast bitrate=%d key-int-max=%d "
               "option-string=\"bframes=0:repeat-headers=1\" ! video/x-h265,profile=main "
               "! rtph265pay name=pay0 pt=96 config-interval=-1" % (cam["bitrate"], cam["gop"]))
    else:
        enc = ("x264enc tune=zerolatency speed-preset=ultrafast bitrate=%d key-int-max=%d bframes=0 "
               "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1"
               % (cam["bitrate"], cam["gop"]))
    line = "( %s ! %s" % (src, enc)
    if cam["audio"]:
        line += (" audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=16000,channels=1 "
                 "! audioconvert ! avenc_aac bitrate=32000 ! rtpmp4gpay name=pay1 pt=97")
    return line + " )"


class Server:
    def __init__(self, args):
        self.server = GstRtspServer.RTSPServer()
        self.server.set_service(str(args.rtsp_port))
        self.mounts = self.server.get_mount_points()
        self.cams = {c["name"]: c for c in args.camera}
        for cam in self.cams.values():
            self.mount(cam)
        self.server.attach(None)

    def factory(self, cam):
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(launch_line(cam))
        # One encoder per camera shared by all clients, as a real camera behaves.
        f.set_shared(True)
        f.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
        return f

    def mount(self, cam):
        self.mounts.add_factory("/%s/live" % cam["name"], self.factory(cam))

    def drop(self, name):
        self.mounts.remove_factory("/%s/live" % name)

        def kick(server, client, user_data):
            return GstRtspServer.RTSPFilterResult.REMOVE

        self.server.client_filter(kick, None)
        # Other cameras' clients were kicked too; they reconnect. Keep it simple: tests drop
        # one camera at a time and only assert on that camera's gap.
        return False

    def restore(self, name):
        self.mount(self.cams[name])
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rtsp-port", type=int, required=True)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--camera", action="append", type=parse_camera, required=True)
    args = p.parse_args()
    Gst.init(None)
    srv = Server(args)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "cameras" and parts[1] in srv.cams and parts[2] in ("drop", "restore"):
                fn = srv.drop if parts[2] == "drop" else srv.restore
                GLib.idle_add(fn, parts[1])
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok\n")
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", args.control_port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("READY rtsp=%d control=%d" % (args.rtsp_port, args.control_port), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    sys.exit(main())
