"""Session record: rows per second, crash safety, schema guard, purge, aggregate-only."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from fer_overlay.core import EMOTIONS, Box, Face, FrameResult, Student, Tile
from fer_overlay.errors import UserError
from fer_overlay.record import SCHEMA_VERSION, Recorder, RecordError, purge
from fer_overlay.report import load_session
from tests.conftest import REPO

FPS = 5
SECONDS = 300
STUDENTS = ("r1c1", "r1c2", "r1c3")
SAD = (120, 210)        # r1c1 is sad from 02:00 to 03:30, neutral otherwise
ABSENT = (60, 120)      # r1c2 has no face from 01:00 to 02:00, neutral otherwise; r1c3 is always happy


def truth(student: str, second: int) -> str | None:
    """The known emotion of a student at a second (None: no face)."""
    if student == "r1c1":
        return "sad" if SAD[0] <= second < SAD[1] else "neutral"
    if student == "r1c2":
        return None if ABSENT[0] <= second < ABSENT[1] else "neutral"
    return "happy"


def probabilities(emotion: str, frame: int) -> tuple[float, ...]:
    """A vector peaked on ``emotion`` that varies from frame to frame (so means are tested)."""
    peak = 0.55 + 0.05 * (frame % FPS)
    rest = (1.0 - peak) / (len(EMOTIONS) - 1)
    return tuple(peak if e == emotion else rest for e in EMOTIONS)


def frame_result(frame: int, students=STUDENTS, emotion_of=truth) -> FrameResult:
    tiles = tuple(Tile(0, i, Box(200 * i, 0, 200, 150)) for i in range(len(students)))
    rows, faces = [], []
    for tile, student in zip(tiles, students):
        emotion = emotion_of(student, frame // FPS)
        if emotion is None:
            rows.append(Student(student, tile, "no_face"))
            continue
        probs = probabilities(emotion, frame)
        rows.append(Student(student, tile, "present", emotion, max(probs), probs))
        faces.append(Face(Box(tile.box.x + 50, 30, 80, 80), (), 0.9, tile, student, probs, probs))
    return FrameResult(frame, frame / FPS, (600, 150), tiles, tuple(faces), tuple(rows))


def record_lecture(path, *, started_at: float = 1_700_000_000.0, seconds: int = SECONDS, **options) -> int:
    """Record the known lecture at 5 fps; returns the session id."""
    with Recorder(path, clock=lambda: started_at, session_name="Known lecture", **options) as recorder:
        for frame in range(seconds * FPS):
            recorder.add(frame_result(frame))
    return recorder.session_id


def test_one_row_per_student_per_second_with_means(tmp_path):
    db = tmp_path / "session.db"
    sid = record_lecture(db, source="demo")
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"   # closed: one plain file again
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == SECONDS * len(STUDENTS)
        assert con.execute("SELECT count(*) FROM class_samples").fetchone()[0] == SECONDS
        session = con.execute("SELECT id, started_at, ended_at, name, source FROM sessions").fetchone()
        assert session == (sid, 1_700_000_000.0, 1_700_000_000.0, "Known lecture", "demo")
        rows = con.execute("SELECT second, student, status, faces_seen, " + ", ".join(f"p_{e}" for e in EMOTIONS)
                           + " FROM samples ORDER BY second, student").fetchall()
        classes = con.execute("SELECT second, frames, faces, tiles, share_sad, share_happy FROM class_samples "
                              "ORDER BY second").fetchall()
    for second, student, status, seen, *probs in rows:
        emotion = truth(student, second)
        if emotion is None:
            assert (status, seen, probs) == ("no_face", 0, [None] * len(EMOTIONS))
            continue
        expected = np.mean([probabilities(emotion, f) for f in range(second * FPS, (second + 1) * FPS)], axis=0)
        assert (status, seen) == ("present", FPS)
        np.testing.assert_allclose(probs, expected, atol=1e-9)
    assert classes[0] == (0, FPS, 3.0, 3, 0.0, pytest.approx(1 / 3))
    assert classes[90] == (90, FPS, 2.0, 3, 0.0, 0.5)                          # r1c2 absent
    assert classes[150][4] == pytest.approx(1 / 3)                             # r1c1 sad


def test_a_second_is_committed_once_the_next_starts(tmp_path):
    db = tmp_path / "session.db"
    recorder = Recorder(db)
    reader = sqlite3.connect(db)
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"   # cheap commits while recording
    count = "SELECT count(*) FROM samples"
    for frame in range(FPS):                       # all of second 0: nothing written yet
        recorder.add(frame_result(frame))
    assert reader.execute(count).fetchone()[0] == 0 and recorder.last_written is None
    recorder.add(frame_result(FPS))                # first frame of second 1: second 0 committed
    assert reader.execute(count).fetchone()[0] == len(STUDENTS) and recorder.last_written == 0
    recorder.close()                               # the partial second 1 is flushed
    assert reader.execute(count).fetchone()[0] == 2 * len(STUDENTS)
    assert reader.execute("SELECT ended_at IS NOT NULL FROM sessions").fetchone()[0] == 1
    reader.close()


def test_same_file_appends_sessions(tmp_path):
    db = tmp_path / "session.db"
    first = record_lecture(db, seconds=3)
    second = record_lecture(db, seconds=2)
    with sqlite3.connect(db) as con:
        per_session = dict(con.execute("SELECT session_id, count(*) FROM samples GROUP BY session_id"))
    assert second == first + 1 and per_session == {first: 3 * len(STUDENTS), second: 2 * len(STUDENTS)}


def test_aggregate_only_keeps_class_rows_only(tmp_path):
    db = tmp_path / "session.db"
    record_lecture(db, seconds=130, aggregate_only=True)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 0
        assert con.execute("SELECT aggregate_only FROM sessions").fetchone()[0] == 1
        shares = con.execute("SELECT share_neutral, share_happy FROM class_samples WHERE second = 20").fetchone()
    assert shares == pytest.approx((2 / 3, 1 / 3))


KILLED_CHILD = """
import sys, time
from tests.test_record import frame_result
from fer_overlay.record import Recorder
recorder = Recorder(sys.argv[1], clock=lambda: 1_700_000_000.0)
frame = 0
while True:
    recorder.add(frame_result(frame))
    print(recorder.last_written, flush=True)
    frame += 1
    time.sleep(0.002)
"""


def test_sigkill_loses_at_most_the_current_second(tmp_path):
    db = tmp_path / "session.db"
    reported = None
    with subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(db)], cwd=REPO, stdout=subprocess.PIPE,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}) as child:
        for line in child.stdout:                  # the child prints its last committed second per frame
            if line.strip() != "None" and int(line) >= 5:
                reported = int(line)
                break
        os.kill(child.pid, signal.SIGKILL)         # mid-second: it keeps feeding frames until killed
    assert reported is not None, f"the recorder child ended early (exit {child.returncode})"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        per_second = dict(con.execute("SELECT second, count(*) FROM samples GROUP BY second"))
        assert con.execute("SELECT ended_at FROM sessions").fetchone()[0] is None
    assert max(per_second) >= reported
    assert per_second == {second: len(STUDENTS) for second in range(max(per_second) + 1)}
    assert load_session(db).seconds[-1] == max(per_second)    # readable as left by the crash
    assert record_lecture(db, seconds=2) == 2                  # and still appendable


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RecordError, match=f"schema {SCHEMA_VERSION + 1}.*upgrade fer-overlay"):
        Recorder(newer)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(RecordError, match="not a fer-overlay session file"):
        Recorder(foreign)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(RecordError, match="not an SQLite database"):
        Recorder(garbage)
    assert issubclass(RecordError, UserError)


def test_purge_removes_exactly_the_old_sessions(tmp_path):
    db = tmp_path / "session.db"
    day, now = 86_400.0, 1_700_000_000.0
    ages = (40, 31, 29, 1)                              # days before now
    ids = [record_lecture(db, started_at=now - age * day, seconds=2) for age in ages]
    assert purge(db, 30 * day, now=now) == 2
    with sqlite3.connect(db) as con:
        kept = [row[0] for row in con.execute("SELECT id FROM sessions ORDER BY id")]
        sampled = {row[0] for row in con.execute("SELECT DISTINCT session_id FROM samples")}
        classed = {row[0] for row in con.execute("SELECT DISTINCT session_id FROM class_samples")}
    assert kept == ids[2:] and sampled == classed == set(ids[2:])
    assert purge(db, 30 * day, now=now) == 0
    with pytest.raises(RecordError, match="no such session file"):
        purge(tmp_path / "missing.db", day)


def test_a_closed_record_is_one_file_that_readers_leave_alone(tmp_path):
    """Readers open the file read-only; in WAL mode they would create class.db-wal and -shm
    beside it and could not remove them (they stayed after every clean run)."""
    db = tmp_path / "class.db"
    record_lecture(db, seconds=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class.db"]
    load_session(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class.db"]
    record_lecture(db, seconds=2)   # the next recording is WAL again, and closed again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class.db"] and len(load_session(db).seconds) == 2


def test_camera_off_seconds_are_kept_apart_from_no_face(tmp_path):
    """camera_off used to be folded into no_face; files written before still read (as no face)."""
    db = tmp_path / "class.db"
    states = {"r1c1": "present", "r1c2": "no_face", "r1c3": "camera_off"}
    with Recorder(db) as recorder:
        for frame in range(2 * FPS):
            result = frame_result(frame)
            recorder.add(dataclasses.replace(result, students=tuple(
                dataclasses.replace(s, status=states[s.id]) for s in result.students)))
    session = load_session(db)
    from fer_overlay.report import CAMERA_OFF, NO_FACE, PRESENT
    assert session.status.tolist() == [[PRESENT, NO_FACE, CAMERA_OFF]] * 2
    with sqlite3.connect(db) as con:   # as a file of the previous version holds it
        con.execute("UPDATE samples SET status = 'no_face' WHERE status = 'camera_off'")
    assert load_session(db).status.tolist() == [[PRESENT, NO_FACE, NO_FACE]] * 2


def test_report_lists_students_in_natural_case_insensitive_order(tmp_path):
    db = tmp_path / "class.db"
    names = ("bob", "r1c10", "Anna", "r1c2", "Carl", "r1c1#10", "r1c1#2")
    with Recorder(db) as recorder:
        for frame in range(FPS):
            recorder.add(frame_result(frame, students=names, emotion_of=lambda student, second: "happy"))
    assert load_session(db).students.tolist() == ["Anna", "bob", "Carl", "r1c1#2", "r1c1#10", "r1c2", "r1c10"]
