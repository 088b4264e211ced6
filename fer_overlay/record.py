"""The session record: per-second numbers in SQLite, for the after-class report.

Only numbers are kept, never images: one row per student per second of session time
(mean smoothed probabilities, most frequent status, frames with a face) and one
class-level row per second. Each second is committed as soon as the next one starts,
so a crash or SIGKILL loses at most the second in progress; WAL mode keeps those
commits cheap enough for the live loop.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from fer_overlay import attention_report
from fer_overlay.core import EMOTIONS, FrameResult
from fer_overlay.errors import UserError

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the files this code writes; bump it with every schema change."""

PROB_COLUMNS = tuple(f"p_{e}" for e in EMOTIONS)
SHARE_COLUMNS = tuple(f"share_{e}" for e in EMOTIONS)

_SCHEMA = f"""
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,          -- unix seconds; the date retention (purge) goes by
    ended_at REAL,                     -- NULL while recording or after a crash
    name TEXT,
    source TEXT,
    app_version TEXT,
    aggregate_only INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE samples (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    second INTEGER NOT NULL,           -- whole seconds since the session start
    student TEXT NOT NULL,
    status TEXT NOT NULL,              -- most frequent status of the second: present | no_face | camera_off
    faces_seen INTEGER NOT NULL,       -- frames of the second with the face found
    {", ".join(f"{c} REAL" for c in PROB_COLUMNS)},   -- mean smoothed probabilities; NULL without a face
    PRIMARY KEY (session_id, second, student)
) WITHOUT ROWID;
CREATE TABLE class_samples (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    second INTEGER NOT NULL,
    frames INTEGER NOT NULL,           -- analysed frames in the second
    faces REAL NOT NULL,               -- mean labelled faces per frame
    tiles INTEGER NOT NULL,            -- most gallery tiles seen in a frame
    {", ".join(f"{c} REAL" for c in SHARE_COLUMNS)},  -- share of faces per emotion; NULL without faces
    PRIMARY KEY (session_id, second)
) WITHOUT ROWID;
"""
# One id per person: an id a student was shown under before (a tile key until the label was read,
# a misread the vote later overturned) is folded into the id they have now. Added to older files
# when written to, like the attention tables; a file without it has no aliases.
ALIASES_SCHEMA = """
CREATE TABLE IF NOT EXISTS aliases (
    session_id INTEGER NOT NULL,
    alias TEXT NOT NULL,               -- an id the student was shown under before, kept for audit
    student TEXT NOT NULL,             -- the id their samples are recorded under (samples.student)
    PRIMARY KEY (session_id, alias)
) WITHOUT ROWID;
"""
_STUDENT_TABLES = ("samples", "attention_samples")
# Kept apart since schema 1: files written before camera_off was recorded hold present | no_face only.
_RECORDED_STATUSES = ("present", "no_face", "camera_off")
_INSERT_SAMPLE = f"INSERT INTO samples VALUES ({', '.join('?' * (5 + len(EMOTIONS)))})"
_INSERT_CLASS = f"INSERT INTO class_samples VALUES ({', '.join('?' * (5 + len(EMOTIONS)))})"


class RecordError(UserError):
    """A session file cannot be read or written (missing, not SQLite, empty, too new)."""


def app_version() -> str:
    try:
        return metadata.version("fer-overlay")
    except metadata.PackageNotFoundError:   # running from a checkout
        return "unknown"


def connect(path: str | Path, *, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Open a session file and check that this version can use it.

    Every reader and writer goes through here so a missing, foreign or newer file
    always fails the same way: a ``RecordError`` with a one-line message.
    """
    path = Path(path)
    if not path.exists() and not create:
        raise RecordError(f"{path}: no such session file (record one with --record {path})")
    mode = "ro" if readonly else ("rwc" if create else "rw")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True)
    except sqlite3.Error as exc:
        raise RecordError(f"{path}: cannot open the session file ({exc})") from None
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        con.close()
        raise RecordError(f"{path} is not a fer-overlay session file (not an SQLite database)") from None
    if version > SCHEMA_VERSION:
        con.close()
        raise RecordError(f"{path} was written by a newer fer-overlay (session schema {version}, this one "
                          f"reads up to {SCHEMA_VERSION}): upgrade fer-overlay (pip install -U fer-overlay)")
    if version == 0 and tables:
        con.close()
        raise RecordError(f"{path} is an SQLite file but not a fer-overlay session file")
    if version == 0:
        if not create:
            con.close()
            raise RecordError(f"{path} is empty: no sessions recorded")
        con.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
    if not readonly:   # attention tables beside the emotion ones; added to older files when written to
        con.executescript(attention_report.SCHEMA + ALIASES_SCHEMA)
    return con


class Recorder:
    """Appends one session to a session file, one committed second at a time.

    ``add`` only keeps the frame in memory; the work (means, one transaction) happens
    once per second when a result from a later second arrives.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 session_name: str | None = None, source: str | None = None, aggregate_only: bool = False):
        self.path = Path(path)
        self.aggregate_only = aggregate_only
        self.last_written: int | None = None   # last second committed to disk
        self._clock = clock
        self._con = connect(self.path, create=True)
        try:
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = NORMAL")   # WAL + NORMAL survives a process crash
            with self._con:
                cursor = self._con.execute(
                    "INSERT INTO sessions (started_at, name, source, app_version, aggregate_only) "
                    "VALUES (?, ?, ?, ?, ?)", (clock(), session_name, source, app_version(), int(aggregate_only)))
        except sqlite3.Error as exc:   # e.g. a read-only file or folder
            self._con.close()
            raise RecordError(f"{self.path}: cannot record into the session file ({exc})") from None
        self.session_id: int = cursor.lastrowid
        self._second: int | None = None
        self._frames: list[FrameResult] = []
        self._aliases: dict[str, str] = {}   # alias -> the id it is recorded under now
        self._closed = False

    def add(self, result: FrameResult) -> None:
        """Take one analysis result; commits the previous second once a later one starts."""
        second = int(result.timestamp // 1)
        if self._second is None or second > self._second:
            self._flush()
            self._second = second
        self._frames.append(result)   # an out-of-order result counts towards the current second

    def close(self) -> None:
        """Write the last partial second and the end time; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._flush()
        with self._con:
            self._con.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (self._clock(), self.session_id))
        # Back to one plain file: the WAL folded in, and no WAL mode left for the next reader, whose
        # read-only connection would otherwise create class.db-wal and -shm and could not remove them.
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._con.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.OperationalError:   # another connection still reads the file: it stays in WAL mode
            pass
        self._con.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _flush(self) -> None:
        if not self._frames:
            return
        frames, second = self._frames, self._second
        self._frames = []
        if not self.aggregate_only:   # aggregate-only keeps no ids, so no aliases either
            with self._con:
                frames = self._fold_aliases(frames)
        students = [] if self.aggregate_only else _student_rows(self.session_id, second, frames)
        with self._con:
            if students:
                self._con.executemany(_INSERT_SAMPLE, students)
            self._con.execute(_INSERT_CLASS, _class_row(self.session_id, second, frames))
            attention_report.write_second(self._con, self.session_id, second, frames, not self.aggregate_only)
        self.last_written = second

    def _fold_aliases(self, frames: list[FrameResult]) -> list[FrameResult]:
        """``frames`` with every student under their current id; rows already written under an
        alias that is new this second are moved to that id (a second written under both keeps
        the current id's row), and the alias is kept in the ``aliases`` table."""
        changed: dict[str, str] = {}
        for result in frames:
            for student in result.students:
                for alias in student.aliases:
                    if self._aliases.get(alias) != student.id:
                        self._aliases[alias] = changed[alias] = student.id
                if self._aliases.pop(student.id, None) is not None:   # an old id became current again
                    changed[student.id] = student.id
        key = (self.session_id,)
        for alias, sid in changed.items():
            if alias == sid:
                self._con.execute("DELETE FROM aliases WHERE session_id = ? AND alias = ?", (*key, alias))
                continue
            for table in _STUDENT_TABLES:
                self._con.execute(f"UPDATE OR IGNORE {table} SET student = ? WHERE session_id = ? AND student = ?",
                                  (sid, *key, alias))
                self._con.execute(f"DELETE FROM {table} WHERE session_id = ? AND student = ?", (*key, alias))
            self._con.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (*key, alias, sid))
        if not self._aliases:
            return frames
        return [dataclasses.replace(result, students=tuple(
            dataclasses.replace(s, id=self._aliases[s.id]) if s.id in self._aliases else s for s in result.students))
            for result in frames]


def _student_rows(session_id: int, second: int, frames: list[FrameResult]) -> list[tuple]:
    """One row per student seen in the second's frames (see the ``samples`` table)."""
    probs: dict[str, list[tuple[float, ...]]] = {}
    statuses: dict[str, Counter[str]] = {}
    for result in frames:
        for student in result.students:
            if student.status == "left":   # no longer in the meeting: nothing to sample
                continue
            statuses.setdefault(student.id, Counter())[student.status] += 1
            probs.setdefault(student.id, [])
            if student.probabilities is not None:
                probs[student.id].append(student.probabilities)
    rows = []
    for sid, counts in statuses.items():
        faces_seen = counts["present"]
        # Ties go to present, then to no_face: a camera-off second is one the camera was off for most of.
        status = max(_RECORDED_STATUSES, key=lambda s: (counts[s], -_RECORDED_STATUSES.index(s)))
        mean = np.mean(probs[sid], axis=0).tolist() if probs[sid] else [None] * len(EMOTIONS)
        rows.append((session_id, second, sid, status, faces_seen, *mean))
    return rows


def _class_row(session_id: int, second: int, frames: list[FrameResult]) -> tuple:
    """Class-level row: faces per frame and the share of labelled faces per emotion."""
    vectors = [face.smoothed or face.probabilities for result in frames for face in result.faces]
    vectors = [v for v in vectors if v is not None]
    tiles = max(len(result.tiles) for result in frames)
    if not vectors:
        return (session_id, second, len(frames), 0.0, tiles, *[None] * len(EMOTIONS))
    counts = np.bincount(np.argmax(np.asarray(vectors), axis=1), minlength=len(EMOTIONS))
    shares = (counts / len(vectors)).tolist()
    return (session_id, second, len(frames), len(vectors) / len(frames), tiles, *shares)


def purge(path: str | Path, older_than_seconds: float, now: float | None = None) -> int:
    """Delete the sessions started before ``now - older_than_seconds``; returns how many.

    Deleted pages are overwritten (``secure_delete``) and the WAL is truncated, so the
    numbers are gone from the file, not just unlinked.
    """
    bound = (time.time() if now is None else now) - older_than_seconds
    con = connect(path)
    try:
        con.execute("PRAGMA secure_delete = ON")
        with con:
            old = "SELECT id FROM sessions WHERE started_at < ?"
            con.execute(f"DELETE FROM samples WHERE session_id IN ({old})", (bound,))
            con.execute(f"DELETE FROM class_samples WHERE session_id IN ({old})", (bound,))
            attention_report.delete_before(con, bound)
            con.execute(f"DELETE FROM aliases WHERE session_id IN ({old})", (bound,))
            removed = con.execute("DELETE FROM sessions WHERE started_at < ?", (bound,)).rowcount
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return removed


def count_older(path: str | Path, older_than_seconds: float, now: float | None = None) -> int:
    """How many sessions in ``path`` started before ``now - older_than_seconds`` (0 if no file)."""
    if not Path(path).exists():
        return 0
    bound = (time.time() if now is None else now) - older_than_seconds
    con = connect(path, readonly=True)
    try:
        return con.execute("SELECT COUNT(*) FROM sessions WHERE started_at < ?", (bound,)).fetchone()[0]
    finally:
        con.close()
