"""Where frames come from: the screen (mss), a video file, a still image, a webcam.

Every source is an iterable of ``Frame`` with an ``fps`` and a ``close()``; the pipeline
does not care which one it reads. mss and the capture devices are imported inside the
adapters, so tests can run without them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fer_overlay.core import Frame
from fer_overlay.errors import SourceError

Region = tuple[int, int, int, int]   # x, y, width, height in screen pixels


class Source(Protocol):
    fps: float
    size: tuple[int, int]   # width, height of every frame

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def parse_region(text: str) -> Region:
    """``"X,Y,W,H"`` -> region; a one-line error for anything else."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise SourceError(f"region {text!r} is not X,Y,W,H (four integers, e.g. 0,80,1440,900)") from None
    if w <= 0 or h <= 0:
        raise SourceError(f"region {text!r} has no area; width and height must be positive")
    return (x, y, w, h)


def _open_mss():
    import mss
    if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
        raise SourceError("Wayland session without X access: screen capture needs XWayland "
                          "(set DISPLAY) or an X11 session")
    try:
        return mss.MSS()
    except mss.ScreenShotError as exc:
        raise SourceError(f"cannot open the screen ({exc}); run inside a desktop session "
                          "or set DISPLAY (e.g. under Xvfb)") from None


def list_monitors() -> list[dict]:
    """Monitors as mss numbers them: 0 is all monitors together, 1.. are single screens."""
    with _open_mss() as screen:
        return [dict(m) for m in screen.monitors]


class ScreenSource:
    """Grabs a monitor or a region of the screen at a target rate."""

    def __init__(self, *, monitor: int = 1, region: Region | None = None, fps: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.fps, self._clock, self._sleep = fps, clock, sleep
        self._screen = _open_mss()
        monitors = self._screen.monitors
        if region is None:
            if not 0 <= monitor < len(monitors):
                self._screen.close()
                raise SourceError(f"monitor {monitor} does not exist; this display has monitors "
                                  f"1..{len(monitors) - 1} (0 = all), see 'fer-overlay monitors'")
            m = monitors[monitor]
            self.area = {"left": m["left"], "top": m["top"], "width": m["width"], "height": m["height"]}
        else:
            whole = monitors[0]
            x, y, w, h = region
            if (x < whole["left"] or y < whole["top"] or x + w > whole["left"] + whole["width"]
                    or y + h > whole["top"] + whole["height"]):
                self._screen.close()
                raise SourceError(f"region {x},{y},{w},{h} lies outside the screen "
                                  f"({whole['width']}x{whole['height']} at {whole['left']},{whole['top']})")
            self.area = {"left": x, "top": y, "width": w, "height": h}
        self.size = (self.area["width"], self.area["height"])

    def grab(self) -> np.ndarray:
        shot = self._screen.grab(self.area)
        # mss gives BGRA; dropping alpha keeps one BGR convention for every stage.
        return np.asarray(shot)[:, :, :3].copy()

    def __iter__(self) -> Iterator[Frame]:
        start = self._clock()
        index = 0
        while True:
            due = start + index / self.fps
            delay = due - self._clock()
            if delay > 0:
                self._sleep(delay)
            yield Frame(self.grab(), index, self._clock() - start)
            index += 1

    def close(self) -> None:
        self._screen.close()


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence C-level stderr (FFmpeg's "moov atom not found" and the like) while probing a file.

    Our own one-line error says what is wrong; FFmpeg's log lines would only bury it.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class VideoSource:
    """Frames of a video file (or of a webcam, given its index)."""

    def __init__(self, path: str | Path | int, *, fps: float | None = None):
        self._name = f"webcam {path}" if isinstance(path, int) else str(path)
        if not isinstance(path, int) and not Path(path).is_file():
            raise SourceError(f"video {path} not found; check the path")
        with _quiet_native_stderr():
            self._capture = cv2.VideoCapture(path if isinstance(path, int) else str(path))
            if fps and self._capture.isOpened():
                self._capture.set(cv2.CAP_PROP_FPS, fps)   # a webcam takes the rate before the first read
            ok, self._first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not self._capture.isOpened():
            raise SourceError(f"cannot open {self._name}: not a readable video"
                              + (" (is the camera in use?)" if isinstance(path, int) else
                                 " (try converting it to MP4/H.264)"))
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0) or fps or 25.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if not ok:
            self._capture.release()
            raise SourceError(f"cannot read frames from {self._name}: the file is empty or corrupt")
        self.size = (self._first.shape[1], self._first.shape[0])

    def __iter__(self) -> Iterator[Frame]:
        image, index = self._first, 0
        while image is not None:
            yield Frame(image, index, index / self.fps)
            ok, image = self._capture.read()
            image = image if ok else None
            index += 1

    def close(self) -> None:
        self._capture.release()


class ImageSource:
    """A single still image (e.g. a gallery screenshot) as a one-frame stream."""

    fps = 1.0

    def __init__(self, path: str | Path):
        self.image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if self.image is None:
            reason = "not found" if not Path(path).exists() else "not a readable image"
            raise SourceError(f"image {path}: {reason}; give a PNG or JPEG file")
        self.size = (self.image.shape[1], self.image.shape[0])

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(self.image, 0, 0.0)

    def close(self) -> None:
        pass


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def open_file(path: str | Path) -> VideoSource | ImageSource:
    """An image or a video source, chosen by the file's suffix."""
    return ImageSource(path) if Path(path).suffix.lower() in IMAGE_SUFFIXES else VideoSource(path)
