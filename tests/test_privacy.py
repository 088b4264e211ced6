"""Responsible use: what the shared feed shows, opt-outs, aggregate-only, the notice, no stray files."""

import json
import sqlite3
import sys
import tempfile
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_overlay.cli import main
from fer_overlay.config import Config
from fer_overlay.demo import DemoSource, load_faces
from fer_overlay.detect import FaceDetector
from fer_overlay.draw import Annotator, banner_height
from fer_overlay.gallery import compose_gallery
from fer_overlay.pipeline import Analyzer, run_live, run_offline
from fer_overlay.sinks import MjpegSink, VirtualCameraSink
from tests.test_draw import NOISE, detail, drawn
from tests.test_screen import shown_on


class FakeCamera:
    def __init__(self, width, height, fps):
        self.size, self.fps, self.frames = (width, height), fps, []

    def send(self, frame):
        self.frames.append(frame.copy())

    def close(self):
        pass


@pytest.fixture(scope="module")
def analysed_demo():
    """Three demo frames, their analysis results, and what a fake virtual camera got per mode."""
    source = DemoSource(seconds=0.3, fps=10)
    frames = list(source)
    results, sent = [], {}
    for mode in ("aggregate", "blur", "full"):
        cameras = []
        annotator = Annotator(mode)
        sink = VirtualCameraSink(*annotator.output_size(source.size), source.fps,
                                 camera_factory=lambda w, h, f: cameras.append(FakeCamera(w, h, f)) or cameras[-1])
        collected = []
        run_offline(frames, Analyzer.from_config(Config(ocr=False)), [(annotator, sink)], [collected.append])
        sent[mode] = cameras[0].frames
        results = collected
    return frames, results, sent


def test_aggregate_feed_leaves_every_pixel_of_the_gallery_untouched(analysed_demo):
    frames, results, sent = analysed_demo
    strip = banner_height(720)
    assert len(sent["aggregate"]) == len(frames)
    for frame, result, shown in zip(frames, results, sent["aggregate"]):
        assert len(result.faces) >= 20
        assert shown.shape == (720 + strip, 1280, 3)
        assert np.array_equal(shown[strip:], frame.image)   # faces, names, the top row: all as they were
        assert shown[:strip].max() > 100                     # the class-mood banner, above the gallery


def test_blur_feed_hides_every_face_and_full_feed_marks_them(analysed_demo):
    """Issue 11 item 1 on a generated gallery: after blur the detector finds nothing, and no tile
    keeps any detail, also where the analysis found no face (the two camera-off tiles)."""
    frames, results, sent = analysed_demo
    strip, detector = banner_height(720), FaceDetector(score_threshold=0.5, max_width=1280)
    blur = Annotator("blur", banner=False)
    for frame, result, blurred, full in zip(frames, results, sent["blur"], sent["full"]):
        assert len(result.faces) >= 20 and detector.detect(blurred[strip:]) == ()
        clear = ~drawn(blur, frame.image.shape, result)
        for tile in result.tiles:
            b = tile.box
            region = (slice(b.y, b.y2), slice(b.x, b.x2))
            assert detail(frame.image[region]) > 10 * NOISE   # a tile with a face, or a name on a camera-off tile
            assert detail(blurred[strip:][region], clear[region]) < NOISE, tile.key
        assert sum(not np.array_equal(full[strip:][f.box.y:f.box.y2, f.box.x:f.box.x2],
                                      frame.image[f.box.y:f.box.y2, f.box.x:f.box.x2]) for f in result.faces) >= 20


def test_every_frame_of_an_output_has_one_size_before_and_after_the_first_result():
    """Issue 11 item 16: a sink sized for the banner strip (the virtual camera, the video file) gets
    that size from the first frame on, before any analysis result too, in every mode."""
    from tests.test_live_loop import GatedAnalyzer, Sink, frame, wait
    analyzer = GatedAnalyzer(4)
    outputs = {mode: (Annotator(mode), Sink()) for mode in ("aggregate", "blur", "full")}

    def source():
        yield frame(0)
        wait(analyzer.started[0])
        yield frame(1)
        analyzer.open(0)
        wait(analyzer.started[1])   # frame 0's result is out
        yield frame(2)
        analyzer.open(1, 2, 3)

    run_live(source(), analyzer, list(outputs.values()), analysis_fps=None)
    for mode, (annotator, sink) in outputs.items():
        assert sink.results == [None, None, 0], mode
        assert {image.shape[:2] for image in sink.images} == {annotator.output_size((80, 60))[::-1]}, mode


# --- what the shared feed shows, through the CLI as a teacher starts it (issue 11 item 5) -----------

SCREEN = (1280, 720)   # the Xvfb screen


@pytest.fixture(scope="module")
def screen_gallery(xvfb):
    """A 3x3 gallery, tile r2c3 without video, full-screen on the Xvfb display; yields the Gallery."""
    faces = list(load_faces()[0][20:29])
    faces[5] = None
    gallery = compose_gallery(faces, 3, 3, SCREEN, names=[f"Student {i}" for i in range(1, 10)])
    with shown_on(xvfb, gallery.image, Path(tempfile.mkdtemp())):
        yield gallery


@pytest.fixture
def shared_outputs(screen_gallery, config_home, monkeypatch):
    """Runs ``fer-overlay live ARGS`` for 2 s; returns the frames a fake pyvirtualcam camera received,
    the frames the MJPEG stream was given (both as BGR) and the camera's (width, height, fps)."""
    cameras, streamed = [], []

    class Camera(FakeCamera):
        def __init__(self, width, height, fps, fmt=None):
            super().__init__(width, height, fps)
            cameras.append(self)

    fake = types.SimpleNamespace(Camera=Camera, PixelFormat=types.SimpleNamespace(BGR="BGR"))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    write = MjpegSink.write
    monkeypatch.setattr(MjpegSink, "write", lambda self, image, result: streamed.append(image.copy())
                        or write(self, image, result))

    def run(*args):
        assert main(["live", "--duration", "2s", "--fps", "5", "--no-table", "--no-ocr", "--accept-notice",
                     *args]) == 0
        camera = cameras[0].frames if cameras else []
        return camera, streamed, (*cameras[0].size, cameras[0].fps) if cameras else None
    return run


def test_virtual_camera_defaults_to_aggregate_and_a_bound_stream_shows_the_same(shared_outputs, screen_gallery, capsys):
    """``--virtual-cam`` without ``--feed-mode``: the gallery exactly as it is (the excluded tile black)
    under a class-mood strip; ``--bind`` to another address makes the MJPEG stream a shared feed too."""
    camera, streamed, opened = shared_outputs("--virtual-cam", "--exclude", "r2c3", "--mjpeg", "0",
                                              "--bind", "0.0.0.0")
    strip = banner_height(SCREEN[1])
    assert opened == (SCREEN[0], SCREEN[1] + strip, 5)   # the camera is made for the strip's constant size
    assert len(camera) >= 8 and len(streamed) == len(camera)
    assert {frame.shape for frame in streamed} == {(SCREEN[1] + strip, SCREEN[0], 3)}   # before the first result too
    last = camera[-1]
    assert last.shape == (SCREEN[1] + strip, SCREEN[0], 3) and last[:strip].max() > 100   # the banner
    b = screen_gallery.tiles[5].box   # r2c3
    assert last[strip:][b.y:b.y2, b.x:b.x2].max() == 0
    rest = np.ones(SCREEN[::-1], bool)
    rest[b.y:b.y2, b.x:b.x2] = False
    assert np.abs(last[strip:].astype(int) - screen_gallery.image)[rest].max() <= 2   # no mark on anyone
    assert np.array_equal(streamed[-1], last)   # the bound stream: the same shared picture
    err = capsys.readouterr().err
    assert "warning: the MJPEG feed on 0.0.0.0" in err and "Feed mode 'aggregate' shows only the class mood" in err


def test_the_shared_feed_warning_says_what_an_attention_run_shows(shared_outputs, capsys):
    """``--signals attention`` infers no emotion: the warning about the shared feed must not promise one."""
    camera, _, _ = shared_outputs("--virtual-cam", "--feed-mode", "full", "--signals", "attention")
    warning, = [line for line in capsys.readouterr().err.splitlines() if "visible to everyone" in line]
    assert len(camera) >= 8 and "face box and looking/away label" in warning
    assert "mood" not in warning and "emotion" not in warning


def test_blur_feed_and_the_teachers_own_stream_through_the_cli(shared_outputs, screen_gallery, capsys):
    """``--feed-mode blur``: no face left on the camera; the loopback MJPEG stream is the teacher's own
    ``full`` picture, where every face is still there (and marked)."""
    camera, streamed, opened = shared_outputs("--virtual-cam", "--feed-mode", "blur", "--mjpeg", "0")
    strip, detector = banner_height(SCREEN[1]), FaceDetector(score_threshold=0.5, max_width=1280)
    faces = len(detector.detect(screen_gallery.image))
    assert faces == 8
    assert all(detector.detect(frame[strip:]) == () for frame in camera)
    for box in filter(None, screen_gallery.face_boxes):   # the middle of every face: nothing left
        middle = (slice(box.y + box.h // 4, box.y2 - box.h // 4), slice(box.x + box.w // 4, box.x2 - box.w // 4))
        assert detail(screen_gallery.image[middle]) > 2 * NOISE and detail(camera[-1][strip:][middle]) < NOISE
    assert len(detector.detect(streamed[-1][strip:])) == faces
    assert not np.array_equal(streamed[-1][strip:], screen_gallery.image)   # boxes and labels on the teacher's own
    assert "reachable from other computers" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def screenshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("shot") / "gallery.png"
    cv2.imwrite(str(path), next(iter(DemoSource(seconds=0.1))).image)
    return path


def test_excluded_students_appear_nowhere(screenshot, tmp_path, capsys):
    js, db = tmp_path / "out.json", tmp_path / "session.db"
    assert main(["analyze", str(screenshot), "--json", str(js), "--record", str(db), "--exclude", "r1c1,r2c3",
                 "--no-ocr"]) == 0
    table = capsys.readouterr().out
    text = js.read_text()
    for student in ("r1c1", "r2c3"):
        assert student not in text and student not in table
    assert "r1c2" in text and "r1c2" in table
    with sqlite3.connect(db) as con:
        students = {row[0] for row in con.execute("select distinct student from samples")}
    assert students and not students & {"r1c1", "r2c3"}


@pytest.mark.parametrize("mode", ["full", "blur", "aggregate"])
def test_an_excluded_tile_is_black_in_every_mode(screenshot, tmp_path, mode):
    """Opting out must not make a student the one clear face of a blurred or aggregate feed."""
    out, js = tmp_path / f"{mode}.png", tmp_path / "all.json"
    assert main(["analyze", str(screenshot), "--no-ocr", "--no-table", "--json", str(js)]) == 0
    tile = next(t for t in json.loads(js.read_text())["tiles"] if t["key"] == "r2c3")
    assert main(["analyze", str(screenshot), "--no-ocr", "--no-table", "--exclude", "r2c3",
                 "--mode", mode, "--out", str(out)]) == 0
    x, y, w, h = tile["box"]
    picture = cv2.imread(str(out))[banner_height(720):]   # below the class-mood strip: the gallery
    assert picture[y:y + h, x:x + w].max() == 0
    assert picture[y:y + h, x + w + 20:x + 2 * w].std() > 10   # the neighbour is untouched


def test_aggregate_only_keeps_no_student_rows(screenshot, tmp_path, capsys):
    js, db = tmp_path / "out.json", tmp_path / "session.db"
    assert main(["analyze", str(screenshot), "--json", str(js), "--record", str(db), "--aggregate-only"]) == 0
    record = json.loads(js.read_text())
    assert record["students"] == [] and all(f["student"] is None and f["tile"] is None for f in record["faces"])
    assert len(record["faces"]) >= 20   # class-level numbers are still there
    assert "r1c" not in capsys.readouterr().out
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from samples").fetchone()[0] == 0
        assert con.execute("select count(*) from class_samples").fetchone()[0] >= 1


def test_only_requested_files_are_written(screenshot, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))
    assert main(["analyze", str(screenshot), "--out", "a.png", "--json", "a.json", "--no-table"]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["work/a.json", "work/a.png"]


def test_notice_is_shown_once_and_remembered(xvfb, config_home, monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["live", "--duration", "0.3s", "--no-table"]) == 2
    assert "Article 5(1)(f)" in capsys.readouterr().err
    assert main(["live", "--duration", "0.3s", "--no-table", "--accept-notice"]) == 0
    assert "Article 5(1)(f)" in capsys.readouterr().err
    assert (config_home / "fer-overlay" / "notice-accepted").is_file()
    assert main(["live", "--duration", "0.3s", "--no-table"]) == 0
    assert "Article 5(1)(f)" not in capsys.readouterr().err


def test_live_recording_of_faces_needs_save_frames(xvfb, config_home, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DISPLAY", xvfb)
    out = tmp_path / "lecture.mp4"
    assert main(["live", "--duration", "0.3s", "--no-table", "--accept-notice", "--out", str(out)]) == 2
    assert "--save-frames" in capsys.readouterr().err and not out.exists()
    assert main(["live", "--duration", "0.3s", "--no-table", "--accept-notice", "--out", str(out),
                 "--save-frames"]) == 0
    assert out.stat().st_size > 0
