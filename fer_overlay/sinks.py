"""Outputs for annotated frames, all behind the two-method :class:`Sink` protocol.

Hardware and GUI libraries (pyvirtualcam, a display) are touched only inside the
adapter that needs them, so the rest of the program and the tests run anywhere and
fakes can stand in for a camera.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from .attention import json_view
from .core import EMOTIONS, Face, FrameResult
from .errors import SinkError
from .sources import quiet_native_stderr


class Sink(Protocol):
    """Where annotated frames go. ``result`` is None for frames that were not analysed."""

    def write(self, image: np.ndarray, result: FrameResult | None) -> None: ...

    def close(self) -> None: ...


class Camera(Protocol):
    """The part of ``pyvirtualcam.Camera`` the sink uses; fakes implement just this."""

    def send(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


CameraFactory = Callable[[int, int, float], Camera]

VIRTUAL_CAMERA_HELP = (
    "install a virtual camera: on Linux v4l2loopback "
    "(`sudo modprobe v4l2loopback devices=1 exclusive_caps=1`), "
    "on Windows/macOS OBS Studio and start its Virtual Camera once"
)


def _pyvirtualcam_camera(width: int, height: int, fps: float) -> Camera:
    import pyvirtualcam  # only the virtual-camera output needs it

    # BGR, OpenCV's order: the backend converts to its native format anyway, so no RGB copy of
    # every frame on our side (2 ms a 1080p frame, 2% of a core at 10 frames/s).
    return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.BGR)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale into ``(width, height)`` keeping the aspect ratio, black bars filling the rest.

    Outputs have a fixed frame size, but a followed window can be resized mid-run;
    stretching would distort every face in the feed.
    """
    height, width = image.shape[:2]
    if (width, height) == size:
        return image
    scale = min(size[0] / width, size[1] / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    out = np.zeros((size[1], size[0], 3), np.uint8)
    x, y = (size[0] - w) // 2, (size[1] - h) // 2
    out[y:y + h, x:x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return out


class VirtualCameraSink:
    """Sends frames to a virtual webcam that Zoom/Teams/Meet can select.

    The camera opens at construction so a missing driver is reported before any work
    starts. Pacing is left to the pipeline (no ``sleep_until_next_frame`` here).
    """

    def __init__(self, width: int, height: int, fps: float, camera_factory: CameraFactory | None = None) -> None:
        self.size = (width, height)
        try:
            self._camera: Camera | None = (camera_factory or _pyvirtualcam_camera)(width, height, fps)
        except ImportError as exc:
            raise SinkError(f"the virtual camera needs pyvirtualcam ({exc}); run `pip install pyvirtualcam`") from exc
        except RuntimeError as exc:
            reason = " ".join(str(exc).split())
            raise SinkError(f"no virtual camera available ({reason}); {VIRTUAL_CAMERA_HELP}") from exc
        self.device: str | None = getattr(self._camera, "device", None)

    def write(self, image: np.ndarray, result: FrameResult | None) -> None:
        if self._camera is None:
            return
        self._camera.send(_fit(image, self.size))

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None


@functools.lru_cache(maxsize=None)
def h264_writable() -> bool:
    """Whether this OpenCV/FFmpeg build writes H.264 (``avc1``) MP4, tried once per process on
    a tiny file in a temporary folder. The opencv-python wheels ship FFmpeg without an H.264
    encoder (only a hardware one that needs a device), so the answer is often no."""
    with tempfile.TemporaryDirectory() as folder, quiet_native_stderr():
        path = os.path.join(folder, "probe.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"avc1"), 10, (64, 48))
        opened = writer.isOpened()
        for _ in range(2 if opened else 0):
            writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.release()
        return opened and os.path.getsize(path) > 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class VideoFileSink:
    """Records frames to a video file: H.264 (``avc1``, what browsers play) where this OpenCV
    build can write it, else MPEG-4 Part 2 (``mp4v``), said in one line when the sink is made.

    The writer opens on the first frame because only then is the frame size known (unless
    ``size`` gives it); later frames of another size are fitted into it, since VideoWriter
    silently drops them. An odd width or height gets one black row or column: encoders need
    even sizes and would otherwise crop. ``h264`` is the probe (injectable for tests).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int] | None = None, *,
                 h264: Callable[[], bool] = h264_writable, notify: Callable[[str], None] = _say) -> None:
        self.path = Path(path)
        self.fps = fps
        self.codec = "avc1" if h264() else "mp4v"
        if self.codec != "avc1":
            notify(f"video {self.path}: this OpenCV build cannot write H.264 (avc1), so it is MPEG-4 Part 2 "
                   "(mp4v): VLC plays it, web browsers do not")
        self._writer: cv2.VideoWriter | None = None
        self._size = size

    def write(self, image: np.ndarray, result: FrameResult | None) -> None:
        if self._writer is None:
            self._size = self._size or (image.shape[1], image.shape[0])
            width, height = self._size
            even = (width + width % 2, height + height % 2)
            with quiet_native_stderr():
                self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.codec), self.fps, even)
            if not self._writer.isOpened():
                self._writer = None
                raise SinkError(f"cannot write video {self.path}: check that the folder exists and the name ends in .mp4")
        assert self._size is not None
        frame = _fit(image, self._size)
        width, height = self._size
        if width % 2 or height % 2:
            frame = cv2.copyMakeBorder(frame, 0, height % 2, 0, width % 2, cv2.BORDER_CONSTANT, value=0)
        self._writer.write(frame)

    def close(self) -> None:
        """Release the writer; only then is the file's index written and the file playable."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class ImageFileSink:
    """Saves the latest frame to an image file when closed.

    Writing on close, not on every frame, keeps a live run from rewriting the file
    several times a second; for a single-image run the one frame is the latest.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not cv2.haveImageWriter(str(self.path)):
            raise SinkError(f"cannot write images of type {self.path.suffix or '(none)'!r}; use .png or .jpg")
        self._latest: np.ndarray | None = None

    def write(self, image: np.ndarray, result: FrameResult | None) -> None:
        self._latest = image.copy()

    def close(self) -> None:
        if self._latest is None:
            return
        image, self._latest = self._latest, None
        try:
            ok = cv2.imwrite(str(self.path), image)
        except cv2.error as exc:
            raise SinkError(f"cannot write image {self.path}: {exc.err}") from exc
        if not ok:
            raise SinkError(f"cannot write image {self.path}: check that the folder exists and is writable")


class PreviewSink:
    """Shows frames in a local window (cv2.imshow), for the teacher only."""

    def __init__(self, title: str = "fer-overlay") -> None:
        self.title = title
        self._shown = False

    def write(self, image: np.ndarray, result: FrameResult | None) -> None:
        # OpenCV's Qt backend aborts the whole process without a display; check first.
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
        ):
            raise SinkError("no display for the preview window (DISPLAY is not set); drop the preview or use the MJPEG stream")
        try:
            cv2.imshow(self.title, image)
            cv2.waitKey(1)
        except cv2.error as exc:
            raise SinkError(f"cannot open the preview window ({exc.err}); drop the preview or use the MJPEG stream") from exc
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._shown = False
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass  # the user already closed it


class MjpegSink:
    """Serves the annotated feed as an MJPEG stream, viewable in any browser or OBS.

    Each written frame is JPEG-encoded once and stored as the latest frame; every
    client thread sends the newest frame it has not sent yet and skips older ones, so a
    slow client only lowers its own frame rate and never blocks the pipeline.
    Use ``port=0`` to let the OS pick a free port (see :attr:`port`).
    """

    BOUNDARY = "frame"

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80) -> None:
        self.quality = quality
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._closed = False
        try:
            self._server = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SinkError(f"port {port} is already in use; choose another with --mjpeg PORT") from exc
            raise SinkError(f"cannot serve the MJPEG stream on {host}:{port}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="mjpeg-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/stream.mjpg"

    def write(self, image: np.ndarray, result: FrameResult | None) -> None:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self._cond:
            self._jpeg, self._seq = jpeg.tobytes(), self._seq + 1
            self._cond.notify_all()

    def _next_frame(self, seen: int) -> tuple[int, bytes] | None:
        """Block until a frame newer than ``seen`` exists; None once the sink is closed."""
        with self._cond:
            while not self._closed and self._seq == seen:
                self._cond.wait(timeout=1.0)
            if self._closed or self._jpeg is None:
                return None
            return self._seq, self._jpeg

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # seconds a stalled viewer may block its own send before it is dropped

            def do_GET(self) -> None:
                if self.path not in ("/", "/stream.mjpg"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={sink.BOUNDARY}")
                self.send_header("Cache-Control", "no-cache, private")
                self.end_headers()
                seen = 0
                try:
                    while (frame := sink._next_frame(seen)) is not None:
                        seen, jpeg = frame
                        self.wfile.write(
                            f"--{sink.BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg + b"\r\n"
                        )
                        self.wfile.flush()
                except OSError:
                    pass  # the viewer went away or stalled

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the terminal for the live table

        return Handler

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


def _probs(values: tuple[float, ...] | None) -> dict[str, float] | None:
    return None if values is None else {e: round(float(p), 4) for e, p in zip(EMOTIONS, values)}


def _face_to_dict(face: Face) -> dict[str, Any]:
    emotion = face.emotion
    return {
        "box": [int(face.box.x), int(face.box.y), int(face.box.w), int(face.box.h)],
        "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks],
        "score": round(float(face.score), 4),
        "tile": face.tile.key if face.tile else None,
        "student": face.student,
        "probabilities": _probs(face.probabilities),
        "smoothed": _probs(face.smoothed),
        "label": emotion[0] if emotion else None,
        "confidence": round(emotion[1], 4) if emotion else None,
    }


def result_to_dict(result: FrameResult) -> dict[str, Any]:
    """A JSON-ready view of one analysed frame: the JSONL stream's line and the single-image report."""
    mood = result.mood
    record = {
        "frame_index": result.frame_index,
        "timestamp": round(float(result.timestamp), 3),
        "size": list(result.size),
        "fps": round(float(result.fps), 2),
        "dropped": result.dropped,
        "tiles": [
            {"key": t.key, "row": t.row, "col": t.col, "box": [int(t.box.x), int(t.box.y), int(t.box.w), int(t.box.h)]}
            for t in result.tiles
        ],
        "faces": [_face_to_dict(f) for f in result.faces],
        "students": [
            {"id": s.id, "status": s.status, "emotion": s.emotion, "confidence": round(float(s.confidence), 4),
             "aliases": list(s.aliases)}   # ids shown before: the tile key until the label was read
            for s in result.students
        ],
        "mood": {
            "counts": dict(mood.counts),
            "faces": mood.faces,
            "tiles": mood.tiles,
            "positive": round(mood.positive, 4),
            "neutral": round(mood.neutral, 4),
            "negative": round(mood.negative, 4),
        },
    }
    return json_view(result, record)   # head pose and attention added; no emotion key with --signals attention


class JsonLinesSink:
    """Writes one JSON object per analysed frame to a new file, flushed line by line.

    Flushing each line means Ctrl-C or a crash loses at most the frame being written.
    Frames without a result (not analysed) are skipped.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._file = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from exc

    def write(self, image: np.ndarray, result: FrameResult | None) -> None:
        if result is None or self._file.closed:
            return
        self._file.write(json.dumps(result_to_dict(result)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
