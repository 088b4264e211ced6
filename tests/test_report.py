"""After-class report: numbers equal the known lecture, bad files fail clearly, HTML renders."""

from __future__ import annotations

import base64
import csv
import io
import re
import shutil
import sqlite3
import subprocess

import cv2
import numpy as np
import pytest
from rich.console import Console

from fer_overlay import report
from fer_overlay.cli import main
from fer_overlay.core import EMOTIONS
from fer_overlay.record import SCHEMA_VERSION, Recorder, RecordError, connect
from fer_overlay.report import (EMOTION_COLORS, NO_FACE, PRESENT, Flag, FlagRule, find_moments, load_session,
                                student_summaries, write_csv, write_report)
from tests.test_record import ABSENT, SAD, SECONDS, STUDENTS, frame_result, record_lecture

RULES = FlagRule(negative=0.5, for_seconds=60, absent_seconds=30)


@pytest.fixture(scope="module")
def lecture(tmp_path_factory):
    """The known 5-minute lecture, recorded after an older 2-second session in the same file."""
    db = tmp_path_factory.mktemp("lecture") / "session.db"
    record_lecture(db, seconds=2)
    record_lecture(db)
    return db


def test_load_gives_dense_arrays_of_the_latest_session(lecture):
    session = load_session(lecture)
    assert session.id == 2 and session.name == "Known lecture" and session.ended_at is not None
    assert list(session.students) == list(STUDENTS)
    assert session.probabilities.shape == (SECONDS, 3, len(EMOTIONS)) and session.status.shape == (SECONDS, 3)
    absent = np.zeros(SECONDS, bool)
    absent[ABSENT[0]:ABSENT[1]] = True
    np.testing.assert_array_equal(session.status[:, 1], np.where(absent, NO_FACE, PRESENT))
    assert np.isnan(session.probabilities[absent, 1]).all() and not np.isnan(session.probabilities[~absent, 1]).any()
    assert EMOTIONS[int(np.argmax(session.probabilities[150, 0]))] == "sad"
    assert load_session(lecture, 1).seconds.tolist() == [0, 1]


def test_numbers_equal_the_known_truth(lecture):
    session = load_session(lecture)
    summaries = {s.student: s for s in student_summaries(session, RULES)}
    sad_seconds = SAD[1] - SAD[0]
    assert summaries["r1c1"].dominant == "neutral"
    assert summaries["r1c1"].negative_share == pytest.approx(sad_seconds / SECONDS)
    assert summaries["r1c1"].flags == (Flag("r1c1", "negative", *SAD),)
    assert summaries["r1c2"].absent_seconds == ABSENT[1] - ABSENT[0] and summaries["r1c2"].present_seconds == 240
    assert summaries["r1c2"].flags == (Flag("r1c2", "absent", *ABSENT),)
    assert summaries["r1c3"].dominant == "happy" and summaries["r1c3"].negative_share == 0
    assert summaries["r1c3"].flags == ()
    # Defaults flag no 60 s absence; a 100 s window needs 50 sad seconds (there are 90).
    defaults = {s.student: s.flags for s in student_summaries(session, FlagRule(for_seconds=100))}
    assert defaults == {"r1c1": (Flag("r1c1", "negative", *SAD),), "r1c2": (), "r1c3": ()}
    strict = student_summaries(session, FlagRule(negative=0.5, for_seconds=200))
    assert all(not s.flags for s in strict)                            # 90 s of 200 < 50 %
    moments = [(m.time, m.kind) for m in find_moments(session)]
    assert moments == [("01:00", "absent"), ("02:00", "negative")]


def test_report_and_csv(lecture, tmp_path):
    session = load_session(lecture)
    index = write_report(session, tmp_path / "report", RULES, console=Console(file=io.StringIO(), force_terminal=True))
    page = index.read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 2 and [p.name for p in index.parent.iterdir()] == ["index.html"]
    for uri in images:   # the plots are inside the page
        image = decode(uri)
        assert image is not None and image.std() > 10
    for text in ("01:00", "02:00", "negative 02:00–03:30", "no face 01:00–02:00", "30%"):
        assert text in page
    assert "http" not in page and "<script" not in page           # self-contained, nothing fetched

    with write_csv(session, tmp_path / "rows.csv").open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0][:4] == ["second", "time", "student", "status"] and len(rows) == 1 + SECONDS * len(STUDENTS)
    by_key = {(r[0], r[2]): r for r in rows[1:]}
    assert by_key[("90", "r1c2")][3:] == ["no_face"] + [""] * len(EMOTIONS)
    assert by_key[("150", "r1c1")][1] == "02:30" and float(by_key[("150", "r1c1")][4 + EMOTIONS.index("sad")]) > 0.5


def decode(uri: str) -> np.ndarray | None:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:40]
    return cv2.imdecode(np.frombuffer(base64.b64decode(uri[len(prefix):]), np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("seconds, extent, unit, columns, every", [(20, 20, "seconds", 20, "second"),
                                                                   (SECONDS, SECONDS / 60, "minutes", 60, "5 s")])
def test_the_report_is_one_file_whose_time_axes_span_the_session(tmp_path, monkeypatch, seconds, extent, unit,
                                                                 columns, every):
    """Issue 11 item 21, through 'fer-overlay report': the plots are data URIs in the one HTML file
    (nothing else written, no external reference); a 20-s session's axes run 0-20 s, not 0-1 min;
    the heatmap has a colour legend naming every emotion and "no face"."""
    db, out = tmp_path / "session.db", tmp_path / "report"
    record_lecture(db, seconds=seconds)
    figures = []
    png_uri = report.png_uri
    monkeypatch.setattr(report, "png_uri", lambda figure: figures.append(figure) or png_uri(figure))
    assert main(["report", str(db), "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["index.html"]
    page = (out / "index.html").read_text()
    sources = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert len(sources) == 2 and all(decode(s) is not None for s in sources)
    assert "url(" not in page and "@import" not in page
    mood, heatmap = figures
    for figure in figures:
        axes = figure.axes[0]
        assert axes.get_xlim() == pytest.approx((0, extent)) and axes.get_xlabel() == f"{unit} from start"
    legend = heatmap.axes[1]   # the colorbar
    assert [t.get_text() for t in legend.get_yticklabels()] == [*EMOTIONS, "no face"]
    assert heatmap.axes[0].get_images()[0].get_array().shape[1] == columns   # finer columns for short sessions
    assert heatmap.axes[0].get_title() == f"Dominant emotion per student per {every}"
    assert report.heatmap_step(45 * 60) == 60   # a lecture: a column a minute


@pytest.mark.parametrize("content, message", [
    (None, "no such session file"),
    (np.random.default_rng(1).bytes(8192), "not an SQLite database"),
    (b"", "is empty: no sessions recorded"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    db = tmp_path / "session.db"
    if content is not None:
        db.write_bytes(content)
    with pytest.raises(RecordError, match=message) as error:
        load_session(db)
    assert "\n" not in str(error.value)


def test_newer_schema_empty_database_and_unknown_session(tmp_path):
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RecordError, match="newer fer-overlay.*upgrade"):
        load_session(newer)
    empty = tmp_path / "empty.db"
    connect(empty, create=True).close()
    with pytest.raises(RecordError, match="holds no sessions"):
        load_session(empty)
    record_lecture(empty, seconds=1)
    with pytest.raises(RecordError, match="no session 7"):
        load_session(empty, 7)


def test_session_without_faces_still_gets_a_report(tmp_path):
    db = tmp_path / "session.db"
    with Recorder(db) as recorder:
        for frame in range(30 * 5):
            recorder.add(frame_result(frame, emotion_of=lambda student, second: None))
    session = load_session(db)
    assert (session.status == NO_FACE).all() and not session.faces.any()
    assert find_moments(session)[0].time == "00:00"                   # everyone gone from the start
    page = write_report(session, tmp_path / "report").read_text()
    assert "No faces were recorded" in page
    with Recorder(db):                                                # a session with no frames at all
        pass
    assert "No faces were recorded" in write_report(load_session(db), tmp_path / "empty").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_its_plots_in_headless_chromium(lecture, tmp_path):
    index = write_report(load_session(lecture), tmp_path / "report", RULES)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    index.as_uri()], check=True, capture_output=True, timeout=60)
    image = cv2.imread(str(shot))
    assert image is not None and (image < 240).any(axis=2).mean() > 0.05    # not blank
    for emotion in ("happy", "sad", "neutral"):                               # the plots' areas, not the swatches
        bgr = np.array([int(EMOTION_COLORS[emotion][i:i + 2], 16) for i in (5, 3, 1)])
        assert (np.abs(image.astype(int) - bgr).max(axis=2) < 12).sum() > 5000, emotion
