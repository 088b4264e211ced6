"""Real screen grabs: mss reads a real X server (Xvfb) showing a generated gallery."""

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_overlay.config import Config
from fer_overlay.pipeline import Analyzer
from fer_overlay.sources import ScreenSource, list_monitors

SHOW = """
import sys, tkinter as tk
root = tk.Tk()
root.overrideredirect(True)
root.geometry("1280x720+0+0")
image = tk.PhotoImage(file=sys.argv[1])
tk.Label(root, image=image, borderwidth=0, highlightthickness=0).place(x=0, y=0)
root.mainloop()
"""


@pytest.fixture(scope="module")
def shown_gallery(xvfb, tmp_path_factory):
    """A 3x3 gallery (tile r2c2 camera-off) drawn full-screen on the Xvfb display."""
    from fer_overlay.demo import load_faces
    from fer_overlay.gallery import compose_gallery
    faces = list(load_faces()[0][10:19])
    faces[4] = None
    gallery = compose_gallery(faces, 3, 3, (1280, 720), names=[f"Student {i}" for i in range(9)])
    with shown_on(xvfb, gallery.image, tmp_path_factory.mktemp("screen")):
        yield gallery


@contextlib.contextmanager
def shown_on(display: str, image: np.ndarray, folder: Path):
    """``image`` full-screen on the X ``display`` (a borderless Tk window), once a grab shows it."""
    png = folder / "shown.png"
    cv2.imwrite(str(png), image)
    mp = pytest.MonkeyPatch()
    mp.setenv("DISPLAY", display)
    window = subprocess.Popen([sys.executable, "-c", SHOW, str(png)], stderr=subprocess.PIPE)
    source, deadline = ScreenSource(monitor=1, fps=20), time.time() + 20
    try:
        while np.abs(source.grab().astype(int) - image).mean() > 2:   # wait until it is drawn
            if time.time() > deadline or window.poll() is not None:
                pytest.fail(f"the picture never appeared on {display}: "
                            f"{window.stderr.read().decode() if window.poll() is not None else 'timed out'}")
            time.sleep(0.1)
        source.close()
        yield
    finally:
        window.kill()
        mp.undo()


def test_monitors_are_listed(shown_gallery):
    monitors = list_monitors()
    assert monitors[1]["width"] == 1280 and monitors[1]["height"] == 720


def test_grab_finds_the_faces_in_their_tiles(shown_gallery):
    source = ScreenSource(monitor=1, fps=10)
    frame = next(iter(source))
    source.close()
    assert frame.image.shape == (720, 1280, 3)
    result = Analyzer.from_config(Config()).analyze(frame)
    truth = {f"r{t.row + 1}c{t.col + 1}" for t, b in zip(shown_gallery.tiles, shown_gallery.face_boxes) if b is not None}
    assert len(result.tiles) == 9
    assert {face.tile.key for face in result.faces} == truth
    assert {s.id: s.status for s in result.students}["r2c2"] == "camera_off"   # faces[4] is None


def test_region_grab_is_that_part_of_the_screen(shown_gallery):
    tile = shown_gallery.tiles[0].box
    source = ScreenSource(region=(tile.x, tile.y, tile.w, tile.h))
    image = source.grab()
    source.close()
    expected = shown_gallery.image[tile.y:tile.y2, tile.x:tile.x2]
    assert image.shape == expected.shape
    assert np.abs(image.astype(int) - expected).mean() < 2


def test_grab_rate_is_paced_by_the_injected_clock(shown_gallery):
    now = [0.0]
    sleeps = []
    source = ScreenSource(monitor=1, fps=5, clock=lambda: now[0],
                          sleep=lambda s: (sleeps.append(s), now.__setitem__(0, now[0] + s)))
    frames = [frame for _, frame in zip(range(4), source)]
    source.close()
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [round(f.timestamp, 6) for f in frames] == [0.0, 0.2, 0.4, 0.6]
