"""Per-student memory: smoothed probabilities, time in the current emotion, last minute's mix.

Each student has their own smoother, so one student's frames never leak into another's
label (the ``fer`` package's single shared window does exactly that). Smoothing is an
exponential moving average with a half-life in seconds, not in frames, so the label
settles equally fast whatever rate the analysis runs at.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fer_overlay.core import EMOTIONS, NEGATIVE, Face, FlagRule, Student, Tile

MIX_WINDOW = 60.0   # seconds of history behind a student's emotion-mix bar
_NEGATIVE_LABELS = frozenset(EMOTIONS.index(e) for e in NEGATIVE)


@dataclass
class _Memory:
    smoothed: np.ndarray
    updated: float
    label: int
    label_since: float
    history: deque = field(default_factory=deque)   # (timestamp, label index)


def student_ids(faces: tuple[Face, ...], names: Mapping[str, str] | None = None) -> list[str]:
    """A student per tile: its name when read (``names``: tile key -> name), else its tile key.

    Extra faces sharing a tile get ``#2``, ``#3`` left to right.
    """
    names = names or {}
    counts: dict[str, int] = {}
    ids = [""] * len(faces)
    for i in sorted(range(len(faces)), key=lambda i: faces[i].box.x):
        tile = faces[i].tile
        base = names.get(tile.key, tile.key) if tile else "face"
        counts[base] = counts.get(base, 0) + 1
        ids[i] = base if counts[base] == 1 else f"{base}#{counts[base]}"
    return ids


class Tracker:
    """Turns per-frame faces into per-student rows; keeps each student's history.

    History is keyed by student id, so a named student keeps their smoothing and mix when
    the gallery reshuffles their tile, and keeps a ``left`` row once their name is gone.
    One student is one row: a tile key's history becomes the name's once the label is read,
    and a tile keeps its last name while its label is unreadable and the layout unchanged
    (a hand over the label for a frame must not split the student into ``r3c1`` and a
    ``left`` row).
    """

    def __init__(self, half_life: float = 1.5, flag: FlagRule = FlagRule()):
        if half_life < 0:
            raise ValueError("half-life must be >= 0 seconds")
        self.half_life, self.flag = half_life, flag
        self._window = max(MIX_WINDOW, flag.for_seconds)
        self._memory: dict[str, _Memory] = {}
        self._named: dict[str, None] = {}   # every named student seen, in order of first appearance
        self._owners: dict[str, str] = {}   # tile key -> the name last read on it, this layout
        self._layout: tuple[Tile, ...] = ()

    def update(self, faces: tuple[Face, ...], tiles: tuple[Tile, ...], timestamp: float,
               names: Mapping[str, str] | None = None,
               camera_off: frozenset[str] = frozenset()) -> tuple[tuple[Face, ...], tuple[Student, ...]]:
        """Faces with ``student`` and ``smoothed`` set, and one ``Student`` per tile, face or departed name.

        ``names`` maps tile keys to student ids (names read from the tiles); ``camera_off``
        holds the keys of tiles without video. A tile without a face is ``camera_off`` or
        ``no_face``; a named student in no tile now is ``left``.
        """
        names = self._sticky(names or {}, tiles)
        for key, name in names.items():
            # A label read for the first time names the student its tile already had; the
            # tile key's history never stays behind as a second row.
            memory = self._memory.pop(key, None)
            if memory is not None and name not in self._memory:
                self._memory[name] = memory
        self._named.update(dict.fromkeys(names.values()))
        out_faces, rows = [], {}
        for face, sid in zip(faces, student_ids(faces, names)):
            if face.probabilities is None:   # --signals attention: present, with no emotion at all
                out_faces.append(dataclasses.replace(face, student=sid))
                rows[sid] = Student(id=sid, tile=face.tile, status="present")
                continue
            memory = self._smooth(sid, np.asarray(face.probabilities, np.float64), timestamp)
            smoothed = tuple(float(p) for p in memory.smoothed)
            out_faces.append(dataclasses.replace(face, student=sid, smoothed=smoothed))
            rows[sid] = Student(
                id=sid, tile=face.tile, status="present", emotion=EMOTIONS[memory.label],
                confidence=float(memory.smoothed[memory.label]), probabilities=smoothed,
                since=timestamp - memory.label_since, mix=self._mix(memory, timestamp),
                flagged=self._flagged(memory, timestamp))
        for tile in tiles:
            sid = names.get(tile.key, tile.key)
            if sid not in rows:
                status = "camera_off" if tile.key in camera_off else "no_face"
                rows[sid] = Student(id=sid, tile=tile, status=status)
        for sid in self._named:
            if sid not in rows:
                memory = self._memory.get(sid)
                rows[sid] = Student(id=sid, tile=None, status="left",
                                    mix=self._mix(memory, memory.updated) if memory else ())
        return tuple(out_faces), tuple(sorted(rows.values(), key=_row_order))

    def _sticky(self, names: Mapping[str, str], tiles: tuple[Tile, ...]) -> dict[str, str]:
        """This frame's names plus, for tiles unread now, the name last read there.

        Kept only while the layout is the same tiles: after a reshuffle a tile key may show
        someone else, and a wrong name is worse than a tile key until the label is read. A
        name read on another tile moves there (one name, one tile).
        """
        if tiles != self._layout:
            self._owners, self._layout = {}, tiles
        for key, name in names.items():
            self._owners = {k: n for k, n in self._owners.items() if n != name or k == key}
            self._owners[key] = name
        return dict(self._owners)

    def _smooth(self, sid: str, probs: np.ndarray, now: float) -> _Memory:
        memory = self._memory.get(sid)
        if memory is None:
            label = int(np.argmax(probs))
            memory = self._memory[sid] = _Memory(probs, now, label, now)
        else:
            dt = max(now - memory.updated, 0.0)
            keep = 0.5 ** (dt / self.half_life) if self.half_life > 0 else 0.0
            memory.smoothed = keep * memory.smoothed + (1 - keep) * probs
            memory.updated = now
            label = int(np.argmax(memory.smoothed))
            if label != memory.label:
                memory.label, memory.label_since = label, now
        memory.history.append((now, memory.label))
        while memory.history and memory.history[0][0] < now - self._window:
            memory.history.popleft()
        return memory

    @staticmethod
    def _mix(memory: _Memory, now: float) -> tuple[float, ...]:
        recent = [label for t, label in memory.history if t >= now - MIX_WINDOW]
        counts = np.bincount(recent, minlength=len(EMOTIONS))
        return tuple(float(c) for c in counts / max(counts.sum(), 1))

    def _flagged(self, memory: _Memory, now: float) -> bool:
        """Negative for at least ``flag.negative`` of a full ``flag.for_seconds`` window."""
        if not memory.history or now - memory.history[0][0] < self.flag.for_seconds * 0.95:
            return False   # not watched long enough to say "sustained"
        recent = [label for t, label in memory.history if t >= now - self.flag.for_seconds]
        return sum(label in _NEGATIVE_LABELS for label in recent) >= self.flag.negative * len(recent)


def _row_order(student: Student) -> tuple:
    tile = student.tile
    return (tile.row, tile.col, student.id) if tile else (10**6, 0, student.id)
