# syntax=docker/dockerfile:1
# The GStreamer IP camera simulator (e2e/camera-sim/) as an image, for the kind e2e cluster:
#   docker build -f docker/camera-sim.Dockerfile -t vigil/camera-sim:ci .
#   docker run --rm -p 8554:8554 -p 8555:8555 vigil/camera-sim:ci \
#     --bind 0.0.0.0 --sd-dir /sd --camera name=cam1,codec=h264,bitrate=2000
# RTSP on 8554 (live, ONVIF replay, playback URLs), HTTP control API + ONVIF SOAP on 8555.
# Debian's /usr/bin/python3 has the GObject bindings (python3-gi) the simulator needs.
FROM docker.io/library/debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-gi gir1.2-glib-2.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
      gir1.2-gst-rtsp-server-1.0 \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot \
 && mkdir -p /sd && chown 65532:65532 /sd

COPY e2e/camera-sim/ /app/
# GStreamer writes its plugin registry under $HOME/.cache.
ENV HOME=/home/nonroot PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /app
EXPOSE 8554 8555
ENTRYPOINT ["/usr/bin/python3", "/app/camera_sim.py"]
