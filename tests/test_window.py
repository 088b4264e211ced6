"""``--window TITLE``: a real X window (tkinter, under Xvfb with a window manager) found by its title,
grabbed to the pixel, followed when it moves or resizes, and a clean stop when it closes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from fer_overlay.cli import main
from fer_overlay.draw import STATE_COLORS, banner_height
from fer_overlay.errors import SourceError
from fer_overlay.sources import WindowSource, desktop_windows, find_window
from tests.conftest import REPO, start_service

TITLE = "Zoom Meeting - test"
NAMES = ["Ana Lima", "Ben Okafor", "Chen Wei", "Dana Cruz", "Eli Stone", "Fay Moss", "Gus Hart", "Ivy Park", "Jon Reyes"]

# A titled, decorated top-level window showing a picture at (0, 0); each line on stdin is a
# Tk geometry ("+X+Y" moves it, "WxH" resizes it) or a PNG to show instead (as a meeting app
# lays its gallery out again for the new size), so a test can change it while it is grabbed.
SHOW = """
import os, sys, tkinter as tk
root = tk.Tk()
root.title(sys.argv[2])
image = tk.PhotoImage(file=sys.argv[1])
root.geometry(f"{image.width()}x{image.height()}+40+40")
label = tk.Label(root, image=image, borderwidth=0, highlightthickness=0, bg="black")
label.place(x=0, y=0)
root.configure(bg="black")
def command(*_):
    global image
    for line in os.read(sys.stdin.fileno(), 65536).decode().splitlines():   # every line that has arrived
        line = line.strip()
        if line.endswith(".png"):
            image = tk.PhotoImage(file=line)
            label.configure(image=image)
        elif line:
            root.geometry(line)
root.tk.createfilehandler(sys.stdin, tk.READABLE, command)
root.mainloop()
"""


def _wm_running(display: str) -> bool:
    from Xlib import X, display as xdisplay
    connection = xdisplay.Display(display)
    try:
        root = connection.screen().root
        check = root.get_full_property(connection.intern_atom("_NET_SUPPORTING_WM_CHECK"), X.AnyPropertyType)
        return bool(check and check.value)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def desktop(xvfb):
    """The Xvfb display with openbox running: pywinctl lists windows through EWMH (_NET_CLIENT_LIST),
    which a window manager keeps; a bare X server has no such list."""
    if not shutil.which("openbox"):
        pytest.skip("openbox is not installed (apt-get install openbox): --window needs a window manager")
    mp = pytest.MonkeyPatch()
    mp.setenv("DISPLAY", xvfb)
    wm = start_service(["openbox", "--sm-disable"], lambda: _wm_running(xvfb), "openbox", timeout=15)
    yield xvfb
    wm.terminate()
    wm.wait(timeout=5)
    mp.undo()


@pytest.fixture(scope="module")
def gallery():
    """A 960x540 3x3 gallery with names, tile r2c2 camera-off (these faces are all found: see test_screen)."""
    from fer_overlay.demo import load_faces
    from fer_overlay.gallery import compose_gallery
    faces = list(load_faces()[0][10:19])
    faces[4] = None
    return compose_gallery(faces, 3, 3, (960, 540), names=NAMES)


class ShownWindow:
    """A tkinter window titled ``title`` showing ``image``; ``geometry("+X+Y")`` moves it."""

    def __init__(self, image: np.ndarray, title: str, folder):
        png = folder / "window.png"
        cv2.imwrite(str(png), image)
        self.process = subprocess.Popen([sys.executable, "-c", SHOW, str(png), title],
                                        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while not any(w.title == title for w in desktop_windows()):
            if time.time() > deadline or self.process.poll() is not None:
                self.close()
                pytest.fail(f"window {title!r} never appeared: {self.process.stderr.read()}")
            time.sleep(0.1)

    def geometry(self, spec: str) -> None:
        self.process.stdin.write(spec + "\n")
        self.process.stdin.flush()

    def show(self, image: np.ndarray, folder) -> None:
        png = folder / f"shown-{image.shape[1]}x{image.shape[0]}.png"
        cv2.imwrite(str(png), image)
        self.geometry(str(png))

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)


@pytest.fixture
def shown(desktop, gallery, tmp_path):
    window = ShownWindow(gallery.image, TITLE, tmp_path)
    yield window
    window.close()


def wait_for(condition, what: str, timeout: float = 15.0):
    deadline = time.time() + timeout
    while not (value := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def drawn(source: WindowSource, expected: np.ndarray) -> bool:
    image = source.grab()
    return image is not None and image.shape == expected.shape and np.abs(image.astype(int) - expected).mean() < 1


def test_window_found_by_part_of_its_title_and_grabbed_to_the_pixel(shown, gallery):
    source = WindowSource("zoom meeting", notify=lambda m: None)   # any case, part of the title
    try:
        assert source.window.title == TITLE
        assert source.size == (960, 540)
        wait_for(lambda: drawn(source, gallery.image), "the gallery drawn in the window")
        image = source.grab()
        assert image.shape == gallery.image.shape and np.array_equal(image, gallery.image)
    finally:
        source.close()


def test_capture_follows_a_move_and_a_resize(shown, gallery):
    source = WindowSource("Zoom Meeting", notify=lambda m: None)
    try:
        wait_for(lambda: drawn(source, gallery.image), "the gallery drawn in the window")
        before = source.window.rect()
        shown.geometry("+260+150")
        after = wait_for(lambda: (r := source.window.rect()) != before and r, "the window to move")
        assert (after[0] - before[0], after[1] - before[1]) == (220, 110)
        wait_for(lambda: drawn(source, gallery.image), "the gallery at the new place")
        frames = iter(source)
        assert np.array_equal(next(frames).image, gallery.image)

        shown.geometry("640x360")   # smaller: the window now shows the gallery's top-left part
        wait_for(lambda: drawn(source, gallery.image[:360, :640]), "the resized window")
        frame = next(frames)
        assert frame.size == (640, 360) and np.array_equal(frame.image, gallery.image[:360, :640])
    finally:
        source.close()


def test_a_window_partly_off_the_screen_is_clipped_to_it(shown, gallery):
    source = WindowSource("Zoom Meeting", notify=lambda m: None)
    try:
        shown.geometry("+700+300")   # 960x540 at x=700: only 1280 - 700 px of its width are on the screen
        rect = wait_for(lambda: (r := source.window.rect()) and r[0] >= 700 and r, "the window to move right")
        visible_w, visible_h = 1280 - rect[0], min(540, 720 - rect[1])
        wait_for(lambda: drawn(source, gallery.image[:visible_h, :visible_w]), "the clipped window")
    finally:
        source.close()


class FakeWindow:
    def __init__(self, title, rect, alive=True):
        self.title, self._rect, self.alive = title, rect, alive

    def rect(self):
        return self._rect


def test_several_matches_take_the_largest_and_no_match_lists_the_titles():
    windows = [FakeWindow("Zoom", (0, 0, 300, 200)), FakeWindow("Zoom Meeting", (0, 0, 1600, 900)),
               FakeWindow("Zoom Meeting", (10, 10, 200, 100)), FakeWindow("Terminal", (0, 0, 800, 600)),
               FakeWindow("Zoom Meeting (closed)", (0, 0, 1920, 1080), alive=False)]
    assert find_window("zoom meeting", windows) is windows[1]
    with pytest.raises(SourceError) as error:
        find_window("Teams", windows)
    message = str(error.value)
    assert "no open window's title contains 'Teams'" in message
    assert "'Terminal'" in message and "'Zoom Meeting'" in message and "\n" not in message


class ScriptedWindow:
    """A fake window whose place at each grab follows a script: a rect, None (minimised) or "closed"."""

    title = "Zoom Meeting"

    def __init__(self, script):
        self.script, self.step = list(script), 0

    @property
    def alive(self):
        return self.script[min(self.step, len(self.script) - 1)] != "closed"

    def rect(self):
        place = self.script[min(self.step, len(self.script) - 1)]
        return None if place == "closed" else place


def test_minimised_frames_are_skipped_and_a_closed_window_ends_the_stream(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    window = ScriptedWindow([(0, 0, 320, 200), (0, 0, 320, 200), None, None, (-100, 600, 400, 300), "closed"])
    messages, now = [], [0.0]
    source = WindowSource("zoom", windows=lambda: [window], notify=messages.append, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    real_grab = source.grab

    def grab():   # the window moves on one step per grab
        try:
            return real_grab()
        finally:
            window.step += 1
    source.grab = grab
    frames = list(source)
    source.close()
    # two frames at 320x200, none while minimised, then the on-screen part of (-100, 600, 400, 300)
    assert [f.size for f in frames] == [(320, 200), (320, 200), (300, 120)]
    assert [f.index for f in frames] == [0, 1, 2]
    assert [round(f.timestamp, 6) for f in frames] == [0.0, 0.1, 0.4]   # paced at 10/s, the gap kept
    assert messages == ["window 'Zoom Meeting' is minimised or off the screen; waiting for it",
                        "window 'Zoom Meeting' was closed; stopped after 3 frame(s)"]


def test_a_window_not_on_the_screen_at_the_start_is_a_one_line_error(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    with pytest.raises(SourceError, match="is minimised or off the screen"):
        WindowSource("zoom", windows=lambda: [ScriptedWindow([(2000, 0, 640, 360)])])


def test_no_match_is_one_error_line_listing_the_open_windows(shown, config_home):
    done = subprocess.run([sys.executable, "-m", "fer_overlay.cli", "live", "--window", "Microsoft Teams",
                           "--accept-notice", "--no-table"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]   # after the responsible-use notice, shown on a first run
    assert error.startswith("error: no open window's title contains 'Microsoft Teams'; open windows:")
    assert repr(TITLE) in error


def test_live_stops_cleanly_when_the_window_closes(shown, config_home, tmp_path):
    """Closed mid-run: exit 0, one line saying so, every JSON line whole, the record complete."""
    jsonl, db = tmp_path / "live.jsonl", tmp_path / "class.db"
    process = subprocess.Popen([sys.executable, "-m", "fer_overlay.cli", "live", "--window", "Zoom Meeting",
                                "--fps", "5", "--json", str(jsonl), "--record", str(db), "--no-table", "--no-ocr",
                                "--accept-notice"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: jsonl.exists() and jsonl.read_text().count("\n") >= 3, "three analysed frames", 120)
        shown.close()
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"window {TITLE!r} was closed; stopped after" in stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) >= 3 and all(len(r["tiles"]) == 9 for r in records)
    assert "recorded, 9 students" in stderr   # the session record was closed and summarised


def test_live_follows_a_resize_and_the_video_keeps_its_first_size(shown, gallery, config_home, tmp_path):
    """Resized mid-run (the app lays the gallery out again): the grid is found again in the new
    frames; the video keeps the first size, the narrower window letterboxed into it, not stretched."""
    from fer_overlay.demo import load_faces
    from fer_overlay.gallery import compose_gallery
    faces = list(load_faces()[0][10:19])
    faces[4] = None
    narrow = compose_gallery(faces, 3, 3, (640, 540), names=NAMES)
    jsonl, video = tmp_path / "live.jsonl", tmp_path / "live.mp4"
    process = subprocess.Popen([sys.executable, "-m", "fer_overlay.cli", "live", "--window", "Zoom Meeting",
                                "--fps", "5", "--json", str(jsonl), "--out", str(video), "--save-frames",
                                "--no-table", "--no-ocr", "--accept-notice"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = lambda: jsonl.read_text().split("\n")[:-1] if jsonl.exists() else []   # whole lines  # noqa: E731
    try:
        wait_for(lambda: len(lines()) >= 2, "two analysed frames", 120)
        shown.show(narrow.image, tmp_path)
        shown.geometry("640x540")
        wait_for(lambda: sum(json.loads(line)["size"] == [640, 540] for line in lines()) >= 3,
                 "three analysed frames at the new size", 120)
        shown.close()
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
    records = [json.loads(line) for line in lines()]
    assert records[0]["size"] == [960, 540] and len(records[0]["tiles"]) == 9
    last = records[-1]
    assert last["size"] == [640, 540]
    assert [t["box"] for t in last["tiles"]] == [[t.box.x, t.box.y, t.box.w, t.box.h] for t in narrow.tiles]
    capture, sizes, last_frame = cv2.VideoCapture(str(video)), set(), None
    while (read := capture.read())[0]:
        sizes.add(read[1].shape[:2])
        last_frame = read[1]
    capture.release()
    assert sizes == {(540 + banner_height(540), 960)}   # the class-mood strip above the first size
    pillar = (960 - 640) // 2   # 640x540 into 960x540 keeps its size, centred between black pillars
    assert last_frame[:, :pillar - 4].max() < 30 and last_frame[:, -pillar + 4:].max() < 30
    assert last_frame[:, pillar + 4:-pillar - 4].mean() > 30


@pytest.mark.parametrize("where", ["--window", "--region"])
def test_check_on_the_screen(where, shown, gallery, config_home, tmp_path, capsys):
    """``check`` grabs the window (or the same rectangle as a region) once and draws what it found."""
    from tests.test_check import outline
    source = WindowSource("Zoom Meeting", notify=lambda m: None)
    wait_for(lambda: drawn(source, gallery.image), "the gallery drawn in the window")
    rect = source.window.rect()
    source.close()
    out, js = tmp_path / "check.png", tmp_path / "check.json"
    place = "Zoom Meeting" if where == "--window" else ",".join(map(str, rect))
    assert main(["check", where, place, "--out", str(out), "--json", str(js), "--accept-notice", "--no-table"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(js.read_text())
    faces = sum(box is not None for box in gallery.face_boxes)
    named = {s["id"] for s in record["students"] if not re.fullmatch(r"r\d+c\d+(#\d+)?", s["id"])}
    assert summary == f"9 tiles (3x3), {faces} faces, {len(named)} names read; 1 camera off, 0 no face"
    assert named <= set(NAMES)   # names read are the labels drawn, nothing made up
    picture = cv2.imread(str(out))
    assert picture.shape == gallery.image.shape
    boxes = {t["key"]: t["box"] for t in record["tiles"]}
    for tile, face in zip(gallery.tiles, gallery.face_boxes):
        assert outline(picture, boxes[tile.key]) == STATE_COLORS["present" if face is not None else "camera_off"]
