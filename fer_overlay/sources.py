"""Where frames come from: the screen (mss), one application window, a video file, a still image, a webcam.

Every source is an iterable of ``Frame`` with an ``fps`` and a ``close()``; the pipeline
does not care which one it reads. mss, the window library (pywinctl) and the capture devices
are imported inside the adapters, so tests can run without them and swap in fakes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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


def _paced(grab: Callable[[], np.ndarray | None], fps: float, clock: Callable[[], float],
           sleep: Callable[[float], None]) -> Iterator[Frame]:
    """Frames from ``grab`` at ``fps``; a ``None`` grab skips that tick, nothing to show then."""
    start = clock()
    tick = index = 0
    while True:
        delay = start + tick / fps - clock()
        if delay > 0:
            sleep(delay)
        tick += 1
        image = grab()
        if image is not None:
            yield Frame(image, index, clock() - start)
            index += 1


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
        return _paced(self.grab, self.fps, self._clock, self._sleep)

    def close(self) -> None:
        self._screen.close()


class WindowHandle(Protocol):
    """The part of a desktop window the source uses; the pywinctl adapter and fakes implement it."""

    title: str

    @property
    def alive(self) -> bool: ...

    def rect(self) -> Region | None:
        """Where the window is now, in screen pixels; None while it is minimised."""


Windows = Callable[[], Sequence[WindowHandle]]


class _DesktopWindow:
    """A pywinctl window: X11/EWMH on Linux, the Win32 API on Windows, AppKit/Quartz on macOS."""

    def __init__(self, window) -> None:
        self._window = window
        self.title: str = window.title

    @property
    def alive(self) -> bool:
        try:
            return bool(self._window.isAlive)
        except Exception:   # each backend raises its own error (Xlib, win32, AppKit) for a vanished window
            return False

    def rect(self) -> Region | None:
        try:
            if self._window.isMinimized:
                return None
            left, top, width, height = self._window.box
        except Exception:   # closed between two calls: the next ``alive`` says so
            return None
        return (int(left), int(top), int(width), int(height))


def desktop_windows() -> list[WindowHandle]:
    """The open top-level windows, listed by pywinctl (imported here: only ``--window`` needs it)."""
    try:
        import pywinctl
    except ImportError as exc:
        raise SourceError(f"--window needs pywinctl ({exc}); run `pip install pywinctl`") from None
    except Exception as exc:   # its Linux backend connects to X at import and raises Xlib's errors
        raise SourceError(f"cannot list the open windows ({type(exc).__name__}: {exc}); "
                          "run inside an X11 desktop session (DISPLAY set)") from None
    return [_DesktopWindow(w) for w in pywinctl.getAllWindows()]


def find_window(title: str, windows: Sequence[WindowHandle]) -> WindowHandle:
    """The window whose title contains ``title`` (any case); the largest of several matches.

    The largest, because a meeting app's small extra windows (the home screen, a floating
    speaker thumbnail) often share the meeting window's title words.
    """
    wanted = title.casefold().strip()
    matches = [w for w in windows if wanted and wanted in w.title.casefold() and w.alive]
    if not matches:
        titles = sorted({w.title for w in windows if w.title.strip()}, key=str.casefold)
        shown = ", ".join(repr(t) for t in titles[:20]) + (f" and {len(titles) - 20} more" if len(titles) > 20 else "")
        raise SourceError(f"no open window's title contains {title!r}; open windows: {shown or '(none found)'}")

    def area(window: WindowHandle) -> int:
        rect = window.rect()
        return rect[2] * rect[3] if rect else 0
    return max(matches, key=area)


def _clip(rect: Region, bounds: dict) -> Region | None:
    """``rect`` cut to the screen; None when nothing of it is on the screen."""
    x, y = max(rect[0], bounds["left"]), max(rect[1], bounds["top"])
    x2 = min(rect[0] + rect[2], bounds["left"] + bounds["width"])
    y2 = min(rect[1] + rect[3], bounds["top"] + bounds["height"])
    return (x, y, x2 - x, y2 - y) if x2 > x and y2 > y else None


class _WindowClosed(Exception):
    """The followed window is gone: ends :class:`WindowSource`'s frames."""


class WindowSource:
    """Grabs one application window, found by part of its title, wherever it is now.

    Every grab asks for the window's current rectangle, so the capture follows a move or a
    resize (frames then change size: the grid is found again, and fixed-size outputs scale
    to their first size). While the window is minimised or off the screen no frame is made.
    When it closes, iteration ends and ``notify`` says so: the caller's outputs close as after
    any finished run, so nothing written is lost.
    """

    def __init__(self, title: str, *, fps: float = 10.0, windows: Windows | None = None,
                 notify: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.fps, self._clock, self._sleep, self._notify = fps, clock, sleep, notify
        self._screen = _open_mss()
        try:
            self.window = find_window(title, (windows or desktop_windows)())
            self._bounds = dict(self._screen.monitors[0])
            area = self._area()
            if area is None:
                raise SourceError(f"window {self.window.title!r} is minimised or off the screen, or its place cannot "
                                  "be read; bring it into view (macOS: allow your terminal Accessibility access)")
        except BaseException:
            self._screen.close()
            raise
        self.size = (area[2], area[3])
        self._hidden = False

    def _area(self) -> Region | None:
        rect = self.window.rect()
        return _clip(rect, self._bounds) if rect else None

    def grab(self) -> np.ndarray | None:
        """The window's pixels now; None while it cannot be seen."""
        if not self.window.alive:
            raise _WindowClosed
        area = self._area()
        if area is None:
            if not self._hidden:
                self._notify(f"window {self.window.title!r} is minimised or off the screen; waiting for it")
            self._hidden = True
            return None
        self._hidden = False
        x, y, w, h = area
        shot = self._screen.grab({"left": x, "top": y, "width": w, "height": h})
        return np.asarray(shot)[:, :, :3].copy()

    def __iter__(self) -> Iterator[Frame]:
        frames = 0
        try:
            for frame in _paced(self.grab, self.fps, self._clock, self._sleep):
                frames += 1
                yield frame
        except _WindowClosed:
            self._notify(f"window {self.window.title!r} was closed; stopped after {frames} frame(s)")

    def close(self) -> None:
        self._screen.close()



@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence C-level stderr for a moment: FFmpeg logs there ("moov atom not found" while probing
    a file, a missing encoder while probing for H.264), out of Python's and OpenCV's reach.

    Our own one-line messages say what matters; FFmpeg's log lines would only bury them.
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
        with quiet_native_stderr():
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
