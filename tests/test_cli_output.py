"""What a recorded run leaves behind and prints, through the real ``fer-overlay`` command, piped.

One run of ``fer-overlay analyze <damaged video> --record <db in a long folder>`` at 40 columns
(module fixture: the analysis is the slow part) serves each check: clean stderr (no LiteRT or
FFmpeg lines, no blank lines), commands and paths never wrapped, no ``-wal``/``-shm`` files
left, camera-off tiles recorded as camera off, the summary using the user's flag rule.
"""

from __future__ import annotations

import csv
import os
import re
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fer_overlay.cli import main
from fer_overlay.core import FlagRule
from fer_overlay.gallery import compose_gallery
from fer_overlay.record import Recorder
from fer_overlay.report import load_session, student_summaries
from tests.conftest import REPO

FPS, SECONDS = 5, 3
RULE = FlagRule(negative=0.3, for_seconds=1.0)   # --flag-negative 0.3 --for 1s, not the defaults
NOISE = re.compile(r"XNNPACK|^INFO:|^WARNING|^\[\w+ @ 0x|\[ERROR|Traceback|^OpenCV")


def damaged_video(path, faces) -> None:
    """A 2x2 gallery clip whose last tile's camera is off, the last two frames damaged: the FFmpeg
    decoder reports it on stderr (as for a recording cut short) and hides it with the frame before."""
    gallery = compose_gallery([*faces[:3], None], 2, 2, (640, 360))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 360))
    for _ in range(FPS * SECONDS):
        writer.write(gallery.image)
    writer.release()
    data = bytearray(path.read_bytes())
    frames = [m.start() for m in re.finditer(re.escape(b"\x00\x00\x01\xb6"), data)]   # MPEG-4 frame start codes
    for seed, start in enumerate(frames[-2:]):
        data[start + 40:start + 100] = np.random.default_rng(seed).bytes(60)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    from fer_overlay.demo import load_faces
    folder = tmp_path_factory.mktemp("out") / "a-folder-name-long-enough" / "that-a-40-column-console-wraps"
    folder.mkdir(parents=True)
    video, db = folder / "damaged.mp4", folder / "class.db"
    faces, labels = load_faces()
    negative = [i for i, label in enumerate(labels) if label in (0, 4)]   # angry, sad: someone may be flagged
    damaged_video(video, [faces[i] for i in negative[:3]])
    with Recorder(db, clock=lambda: 1_000_000_000.0):   # a session decades old: retention deletes it
        pass
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "40"}
    env.pop("OPENCV_FFMPEG_LOGLEVEL", None)
    decoded = subprocess.run([sys.executable, "-c", f"import cv2; c = cv2.VideoCapture({str(video)!r})\n"
                              "while c.read()[0]: pass"], env=env, capture_output=True, text=True, timeout=60)
    done = subprocess.run(["fer-overlay", "analyze", str(video), "--record", str(db), "--no-table",
                           "--flag-negative", str(RULE.negative), "--for", "1s"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return done, db, decoded.stderr


def test_stderr_holds_only_fer_overlay_lines(recorded_run):
    done, _, decoder_noise = recorded_run
    assert re.search(r"^\[mpeg4 @ 0x", decoder_noise, re.MULTILINE), "the clip must make FFmpeg complain"
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if NOISE.search(line) or not line.strip()] == []
    assert lines[0].startswith("deleted 1 session") and lines[1].startswith(f"analysed {FPS * SECONDS} frame(s)")
    assert done.stdout == ""


def test_commands_and_paths_are_never_wrapped(recorded_run):
    done, db, _ = recorded_run
    assert len(str(db)) > 40
    lines = done.stderr.splitlines()
    assert f"full report: fer-overlay report {db} --out report/" in lines
    assert any("older than" in line and line.endswith(f"from {db}") for line in lines)
    assert [line for line in lines if "/" in line and str(db) not in line] == []   # no path cut in two


def test_no_wal_or_shm_file_is_left(recorded_run, tmp_path):
    done, db, _ = recorded_run
    assert done.returncode == 0
    assert sorted(p.name for p in db.parent.glob("class.db*")) == ["class.db"]
    assert main(["report", str(db), "--out", str(tmp_path / "report")]) == 0   # a reader leaves none either
    assert sorted(p.name for p in db.parent.glob("class.db*")) == ["class.db"]
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as con:
        assert con.execute("SELECT count(*) FROM sessions WHERE ended_at IS NULL").fetchone()[0] == 0


def test_camera_off_is_recorded_and_reported_as_camera_off(recorded_run, tmp_path):
    _, db, _ = recorded_run
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as con:
        states = dict(con.execute("SELECT student, group_concat(DISTINCT status) FROM samples GROUP BY student"))
    assert sorted(states.values()) == ["camera_off", "present", "present", "present"]   # the 4th tile's camera
    off = next(student for student, state in states.items() if state == "camera_off")
    report, table = tmp_path / "report", tmp_path / "class.csv"
    assert main(["report", str(db), "--out", str(report), "--csv", str(table)]) == 0
    rows = [row for row in csv.DictReader(table.open()) if row["student"] == off]
    assert [row["status"] for row in rows] == ["camera_off"] * SECONDS
    html = (report / "index.html").read_text()
    assert "<th>camera off</th>" in html
    cells = re.search(rf"<td>{re.escape(off)}</td>(.*?)</tr>", html)[1]
    assert re.findall(r'<td class="num">([^<]*)</td>', cells)[1:] == ["00:00", f"00:{SECONDS:02d}"]   # no face, camera off


def test_end_of_run_summary_uses_the_users_flag_rule(recorded_run):
    done, db, _ = recorded_run
    flagged = [s.student for s in student_summaries(load_session(db), RULE) if s.flags]
    nobody_by_default = [s.student for s in student_summaries(load_session(db)) if s.flags]
    assert flagged and nobody_by_default == []   # the rule changes the answer on this clip
    line = next(line for line in done.stderr.splitlines() if line.startswith("Flagged:"))
    assert line == "Flagged: " + ", ".join(f"{name} (negative)" for name in flagged)


def test_a_narrow_console_does_not_wrap_paths(recorded_run, tmp_path, monkeypatch, capsys):
    """In-process, as a 30-column terminal would size Rich's console."""
    _, db, _ = recorded_run
    monkeypatch.setenv("COLUMNS", "30")
    out = tmp_path / "reports-for-the-tuesday-lecture" / "week-7"
    assert main(["report", str(db), "--out", str(out)]) == 0
    assert f"report: {out / 'index.html'}" in capsys.readouterr().err.splitlines()
