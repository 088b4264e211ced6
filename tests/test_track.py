import numpy as np
import pytest

from fer_overlay.core import EMOTIONS, Box, Face, Tile
from fer_overlay.track import Tracker, student_ids

HAPPY = tuple(np.eye(7)[EMOTIONS.index("happy")])
SAD = tuple(np.eye(7)[EMOTIONS.index("sad")])
T1, T2, T3 = Tile(0, 0, Box(0, 0, 100, 100)), Tile(0, 1, Box(100, 0, 100, 100)), Tile(1, 0, Box(0, 100, 100, 100))


def face(tile, probs, x_offset=20):
    return Face(Box(tile.box.x + x_offset, tile.box.y + 20, 40, 40), ((0, 0),) * 5, 0.9, tile=tile, probabilities=probs)


def test_half_life_in_seconds():
    tracker = Tracker(half_life=2.0)
    tracker.update((face(T1, HAPPY),), (T1,), 0.0)
    faces, _ = tracker.update((face(T1, SAD),), (T1,), 2.0)   # one half-life later
    smoothed = faces[0].smoothed
    assert smoothed[EMOTIONS.index("happy")] == pytest.approx(0.5)
    assert smoothed[EMOTIONS.index("sad")] == pytest.approx(0.5)


def test_students_have_their_own_smoothing_and_rows_follow_tiles():
    tracker = Tracker(half_life=10.0)
    tracker.update((face(T1, HAPPY), face(T2, SAD)), (T1, T2, T3), 0.0)
    faces, students = tracker.update((face(T2, SAD), face(T1, HAPPY)), (T1, T2, T3), 1.0)
    by_id = {s.id: s for s in students}
    assert [s.id for s in students] == ["r1c1", "r1c2", "r2c1"]
    assert by_id["r1c1"].emotion == "happy" and by_id["r1c2"].emotion == "sad"
    assert by_id["r2c1"].status == "no_face" and by_id["r2c1"].emotion is None
    # Faces keep their own student and probabilities whatever order they arrive in.
    assert {f.student: f.emotion[0] for f in faces} == {"r1c1": "happy", "r1c2": "sad"}


def test_time_in_emotion_and_last_minute_mix():
    tracker = Tracker(half_life=0.0)
    for t in range(30):
        tracker.update((face(T1, HAPPY),), (T1,), float(t))
    for t in range(30, 60):
        _, students = tracker.update((face(T1, SAD),), (T1,), float(t))
    row = students[0]
    assert row.emotion == "sad" and row.since == pytest.approx(29.0)
    assert row.mix[EMOTIONS.index("happy")] == pytest.approx(0.5)
    assert row.mix[EMOTIONS.index("sad")] == pytest.approx(0.5)


def test_two_faces_in_one_tile_get_distinct_ids_left_to_right():
    ids = student_ids((face(T1, HAPPY, x_offset=50), face(T1, SAD, x_offset=5)))
    assert ids == ["r1c1#2", "r1c1"]


def test_sustained_negative_expression_flags_the_student():
    from fer_overlay.core import FlagRule
    tracker = Tracker(half_life=0.0, flag=FlagRule(negative=0.5, for_seconds=20))
    rows = []
    for t in range(60):   # happy for 30 s, then sad
        probs = HAPPY if t < 30 else SAD
        _, students = tracker.update((face(T1, probs), face(T2, HAPPY)), (T1, T2), float(t))
        rows.append({s.id: s.flagged for s in students})
    assert not any(r["r1c1"] for r in rows[:40])          # not yet half of the last 20 s
    assert all(r["r1c1"] for r in rows[41:])               # sad for >= 10 of the last 20 s
    assert not any(r["r1c2"] for r in rows)


def _rows(students):
    return {s.id: s.status for s in students}


def test_a_student_first_seen_by_tile_key_becomes_one_named_row_with_their_history():
    tracker = Tracker(half_life=0.0)
    for t in range(3):
        tracker.update((face(T1, HAPPY),), (T1, T2), float(t))
    faces, students = tracker.update((face(T1, SAD),), (T1, T2), 3.0, names={"r1c1": "Ana"})
    assert _rows(students) == {"Ana": "present", "r1c2": "no_face"}
    assert faces[0].student == "Ana"
    assert students[0].mix[EMOTIONS.index("happy")] == pytest.approx(0.75)   # 3 of 4 frames: the tile's history


def test_an_unreadable_label_for_a_frame_keeps_the_named_row():
    tracker = Tracker(half_life=0.0)
    tracker.update((face(T1, HAPPY),), (T1, T2), 0.0, names={"r1c1": "Ana", "r1c2": "Bo"})
    seen = []
    for t, names in enumerate([{"r1c2": "Bo"}, {}, {"r1c1": "Ana", "r1c2": "Bo"}], start=1):
        faces, students = tracker.update((face(T1, HAPPY),), (T1, T2), float(t), names=names)
        seen.append(_rows(students))
        assert faces[0].student == "Ana"
    assert seen == [{"Ana": "present", "Bo": "no_face"}] * 3   # never r1c1 beside a "left" Ana


def test_a_name_read_on_another_tile_moves_there_and_a_new_layout_forgets_old_names():
    tracker = Tracker(half_life=0.0)
    tracker.update((face(T1, HAPPY),), (T1, T2), 0.0, names={"r1c1": "Ana"})
    _, students = tracker.update((face(T2, HAPPY),), (T1, T2), 1.0, names={"r1c2": "Ana"})
    assert _rows(students) == {"r1c1": "no_face", "Ana": "present"}   # one name, one tile
    moved = Tile(0, 1, Box(120, 0, 80, 80))                             # the gallery was re-laid out
    _, students = tracker.update((face(moved, SAD),), (T1, moved), 2.0)
    assert _rows(students) == {"r1c1": "no_face", "r1c2": "present", "Ana": "left"}


def test_a_student_back_under_a_tile_key_rejoins_their_row_with_that_history():
    tracker = Tracker(half_life=0.0)
    tracker.update((face(T1, HAPPY),), (T1, T2), 0.0, names={"r1c1": "Ana"})
    _, students = tracker.update((), (T2,), 1.0)                      # she left: her tile is gone
    assert _rows(students) == {"r1c2": "no_face", "Ana": "left"}
    for t in (2.0, 3.0):                                              # back on a new tile, label not read yet
        _, students = tracker.update((face(T3, SAD),), (T2, T3), t)
    assert _rows(students) == {"r1c2": "no_face", "r2c1": "present", "Ana": "left"}
    faces, students = tracker.update((face(T3, SAD),), (T2, T3), 4.0, names={"r2c1": "Ana"})
    assert _rows(students) == {"r1c2": "no_face", "Ana": "present"} and faces[0].student == "Ana"
    ana = next(s for s in students if s.id == "Ana")
    assert ana.aliases == ("r2c1",)                                   # the record folds r2c1's rows into hers
    assert ana.mix[EMOTIONS.index("sad")] == pytest.approx(0.75)      # 3 sad frames on r2c1 and now, 1 happy
