"""Bad arguments and output paths: one ``error:`` line, exit 2, checked before any work, no file left.

Also the session retention the chat notice promises (sessions past it are deleted when a
recorded run starts) and ``purge``'s unit and confirmation rules (issue 11 items 4, 11-13).
"""

import argparse
import os
import sqlite3
import time

import cv2
import numpy as np
import pytest

from fer_overlay import cli
from fer_overlay.cli import main
from fer_overlay.record import Recorder

DAY = 86400.0


def run(args, capsys):
    """``main`` as the installed command runs it: the exit code and what went to stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:   # argparse ends through sys.exit
        code = exc.code
    return code, capsys.readouterr().err


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder (the current one) holding a screenshot, a clip and a plain file."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))   # notice acceptance: outside ``work``
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    cv2.imwrite("shot.png", np.full((180, 320, 3), 90, np.uint8))
    writer = cv2.VideoWriter("clip.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 180))
    for _ in range(3):
        writer.write(np.full((180, 320, 3), 90, np.uint8))
    writer.release()
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "adir").mkdir()
    with Recorder(folder / "s.db"):
        pass
    return folder


def one_error_line(code, err, *parts):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for part in parts:
        assert part in err, err


BAD = [
    # item 11: outputs that cannot be written, found before the analysis
    (["analyze", "shot.png", "--json", "nodir/a.json"], ["--json nodir/a.json", "folder nodir does not exist"]),
    (["analyze", "shot.png", "--json", "afile/a.json"], ["--json afile/a.json", "afile is a file, not a folder"]),
    (["report", "s.db", "--out", "afile/rep"], ["--out afile/rep", "afile is a file, not a folder"]),
    (["report", "s.db", "--out", "afile"], ["--out afile", "is a file; give a folder"]),
    (["report", "s.db", "--out", "rep", "--csv", "nodir/c.csv"], ["--csv nodir/c.csv", "folder nodir does not exist"]),
    (["report", "s.db", "--out", "rep", "--csv", "adir"], ["--csv adir is a folder"]),
    # item 11: numbers out of range, refused by the parser
    (["live", "--mjpeg", "99999"], ["argument --mjpeg: '99999' is not a port number"]),
    (["live", "--fps", "0"], ["argument --fps: '0' is not", "above 0"]),
    (["live", "--fps", "nan"], ["argument --fps: 'nan' is not"]),
    (["analyze", "shot.png", "--half-life", "-1"], ["argument --half-life: '-1' is not", "0 or more"]),
    (["analyze", "shot.png", "--detect-width", "0"], ["argument --detect-width: '0' is not", "at least 64"]),
    (["analyze", "shot.png", "--flag-negative", "50"], ["argument --flag-negative: '50' is not a share"]),
    (["demo", "--seconds", "0"], ["argument --seconds: '0' is not"]),
    # item 12: every output checked before anything is opened or created
    (["analyze", "clip.mp4", "--out", "nodir/a.mp4", "--json", "a.jsonl", "--record", "a.db"],
     ["--out nodir/a.mp4", "folder nodir does not exist"]),
    (["analyze", "shot.png", "--out", "nodir/a.png", "--json", "a.json", "--record", "a.db"],
     ["--out nodir/a.png", "folder nodir does not exist"]),
    (["analyze", "clip.mp4", "--out", "a.txt", "--json", "a.jsonl"], ["--out a.txt", "cannot write .txt", ".mp4"]),
    (["analyze", "shot.png", "--out", "a.mp4", "--json", "a.json"], ["--out a.mp4", "cannot write .mp4", ".png"]),
    (["analyze", "shot.png", "--out", "adir", "--json", "a.json"], ["--out adir is a folder"]),
    (["analyze", "shot.png", "--json", "a.json", "--record", "afile/a.db"], ["--record afile/a.db"]),
    (["analyze", "shot.png", "--json", "a.json", "--record", "afile"], ["afile is not a fer-overlay session file"]),
    (["demo", "--out", "nodir/d.mp4", "--record", "a.db"], ["--out nodir/d.mp4"]),
    (["check", "shot.png", "--out", "nodir/c.png", "--json", "a.json", "--accept-notice"], ["--out nodir/c.png"]),
    (["live", "--out", "a.png", "--save-frames", "--record", "a.db", "--accept-notice"], ["--out a.png", ".mp4"]),
    # item 13: durations that delete need their unit
    (["purge", "s.db", "--older-than", "30"], ["argument --older-than: '30' has no unit", "30d"]),
    (["analyze", "shot.png", "--record", "a.db", "--retention", "30"], ["argument --retention: '30' has no unit"]),
    (["notice", "--record", "--retention", "0d"], ["argument --retention: '0d' is not"]),
]


@pytest.mark.parametrize("args, parts", BAD, ids=[" ".join(args) for args, _ in BAD])
def test_bad_argument_is_one_line_and_leaves_nothing(args, parts, work, capsys):
    before = files(work)
    code, err = run(args, capsys)
    one_error_line(code, err, *parts)
    assert files(work) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: a read-only folder does not stop root from writing "
                           "(the folder-under-a-file cases cover the same check)")
@pytest.mark.parametrize("args", [["analyze", "shot.png", "--json", "ro/a.json"],
                                  ["report", "s.db", "--out", "ro"],
                                  ["report", "s.db", "--out", "ro/rep"]])
def test_read_only_folder_is_one_line(args, work, capsys):
    (work / "ro").mkdir()
    (work / "ro").chmod(0o555)
    try:
        code, err = run(args, capsys)
    finally:
        (work / "ro").chmod(0o755)
    one_error_line(code, err, "is not writable")
    assert files(work / "ro") == []


def test_durations_that_delete_need_a_unit():
    assert cli._duration("90") == 90 and cli._duration("15m") == 900     # --for, --duration: seconds by default
    assert cli._age("30d") == 30 * DAY and cli._age("12h") == 12 * 3600 and cli._age("1.5 m") == 90
    for text in ("30", "0d", "-1d", "d", "30y"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._age(text)
    parser = cli.build_parser()
    assert parser.parse_args(["purge", "s.db", "--older-than", "30d"]).older_than == 30 * DAY
    assert parser.parse_args(["purge", "s.db", "--older-than", "30d"]).yes is False
    assert parser.parse_args(["analyze", "x.png"]).retention == 30 * DAY


def sessions(path, ages_in_days, now=None):
    """Sessions started the given numbers of days ago; returns their ids."""
    now = now or time.time()
    ids = []
    for age in ages_in_days:
        with Recorder(path, clock=lambda: now - age * DAY) as recorder:
            ids.append(recorder.session_id)
    return ids


def session_ids(path):
    with sqlite3.connect(path) as con:
        return [row[0] for row in con.execute("SELECT id FROM sessions ORDER BY id")]


def test_purge_of_several_sessions_asks_first(tmp_path, capsys, monkeypatch):
    db = tmp_path / "class.db"
    old_a, old_b, new = sessions(db, [40, 35, 1])
    # not a terminal: nothing to ask, so refused, naming --yes
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, err = run(["purge", db, "--older-than", "30d"], capsys)
    one_error_line(code, err, "would delete 2 sessions", "--yes")
    assert session_ids(db) == [old_a, old_b, new]
    # a terminal: asked, and only 'y' deletes
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    code, err = run(["purge", db, "--older-than", "30d"], capsys)
    assert code == 1 and err == f"kept all sessions in {db}\n" and session_ids(db) == [old_a, old_b, new]
    code, err = run(["purge", db, "--older-than", "30d"], capsys)
    assert code == 0 and err == f"deleted 2 sessions older than 30 days from {db}\n"
    assert session_ids(db) == [new]


def test_purge_with_yes_or_of_one_session_asks_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    db = tmp_path / "class.db"
    old_a, old_b, new = sessions(db, [3, 2.5, 0.5])
    code, err = run(["purge", db, "--older-than", "2d", "--yes"], capsys)
    assert code == 0 and err == f"deleted 2 sessions older than 2 days from {db}\n" and session_ids(db) == [new]
    code, err = run(["purge", db, "--older-than", "1h"], capsys)
    assert code == 0 and err == f"deleted 1 session older than 1 hour from {db}\n" and session_ids(db) == []


def test_a_recorded_run_deletes_sessions_past_retention(work, capsys):
    """What the chat notice promises: at the start of a recorded run, older sessions go."""
    old_a, old_b, kept = sessions(work / "class.db", [40, 31, 29])
    code, err = run(["analyze", "shot.png", "--record", "class.db", "--no-table", "--no-ocr"], capsys)
    assert code == 0, err
    assert err.splitlines()[0] == "deleted 2 sessions older than 30 days from class.db"
    ids = session_ids(work / "class.db")
    assert ids[0] == kept and len(ids) == 2 and ids[1] > old_b        # the kept one and this run's
    # nothing past retention: nothing said; a shorter retention given: it goes by that
    code, err = run(["analyze", "shot.png", "--record", "class.db", "--no-table", "--no-ocr"], capsys)
    assert code == 0 and "deleted" not in err
    code, err = run(["analyze", "shot.png", "--record", "class.db", "--no-table", "--no-ocr",
                     "--retention", "7d"], capsys)
    assert code == 0 and err.splitlines()[0] == "deleted 1 session older than 7 days from class.db"
    assert len(session_ids(work / "class.db")) == 3


def test_notice_states_the_retention_runs_enforce(capsys):
    assert main(["notice", "--record"]) == 0
    assert "sessions older than 30 days are deleted" in capsys.readouterr().out
    assert main(["notice", "--record", "--retention", "14d"]) == 0
    assert "sessions older than 14 days are deleted" in capsys.readouterr().out
    assert main(["notice"]) == 0
    assert "Nothing is kept after the session." in capsys.readouterr().out
