"""Responsible use: what the shared feed shows, opt-outs, aggregate-only, the notice, no stray files."""

import json
import sqlite3

import cv2
import numpy as np
import pytest

from fer_overlay.cli import main
from fer_overlay.config import Config
from fer_overlay.demo import DemoSource
from fer_overlay.draw import Annotator
from fer_overlay.pipeline import Analyzer, run_offline
from fer_overlay.sinks import VirtualCameraSink


class FakeCamera:
    def __init__(self, width, height, fps):
        self.size, self.frames = (width, height), []

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
        sink = VirtualCameraSink(*source.size, source.fps,
                                 camera_factory=lambda w, h, f: cameras.append(FakeCamera(w, h, f)) or cameras[-1])
        collected = []
        run_offline(frames, Analyzer.from_config(Config()), [(Annotator(mode), sink)], [collected.append])
        sent[mode] = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in cameras[0].frames]
        results = collected
    return frames, results, sent


def face_pixels(image, result):
    banner_bottom = image.shape[0] * 0.16   # the banner never covers more than this
    return [image[f.box.y:f.box.y2, f.box.x:f.box.x2] for f in result.faces if f.box.y > banner_bottom]


def test_aggregate_feed_leaves_every_face_untouched(analysed_demo):
    frames, results, sent = analysed_demo
    assert len(sent["aggregate"]) == len(frames)
    for frame, result, shown in zip(frames, results, sent["aggregate"]):
        assert len(result.faces) >= 20
        for original, seen in zip(face_pixels(frame.image, result), face_pixels(shown, result)):
            assert np.array_equal(original, seen)
        assert not np.array_equal(frame.image[:40], shown[:40])   # the class-mood banner is there


def test_blur_feed_hides_faces_and_full_feed_marks_them(analysed_demo):
    frames, results, sent = analysed_demo
    for frame, result, blurred, full in zip(frames, results, sent["blur"], sent["full"]):
        for original, seen in zip(face_pixels(frame.image, result), face_pixels(blurred, result)):
            inner = (slice(6, -6), slice(6, -6))   # inside the drawn box outline and label
            detail = lambda im: cv2.Laplacian(cv2.cvtColor(im[inner], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()  # noqa: E731
            assert detail(seen) < 0.1 * detail(original)   # eyes, mouth, edges: gone
        assert any(not np.array_equal(o, s) for o, s in zip(face_pixels(frame.image, result),
                                                              face_pixels(full, result)))


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
    picture = cv2.imread(str(out))
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
