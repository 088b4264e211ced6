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
from fer_overlay.identity import Person, Pseudonymise, Roll

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
    return [sid for sid, _ in _face_ids(faces, names or {})]


def _face_ids(faces: tuple[Face, ...], ids: Mapping[str, str], owners: Mapping[str, int] | None = None
              ) -> list[tuple[str, tuple]]:
    """Each face's student id and memory key: (the tile's person, n) for the n-th face from the left."""
    counts: dict[str, int] = {}
    out: list[tuple[str, tuple]] = [("", ())] * len(faces)
    for i in sorted(range(len(faces)), key=lambda i: faces[i].box.x):
        tile = faces[i].tile
        base = ids.get(tile.key, tile.key) if tile else "face"
        counts[base] = counts.get(base, 0) + 1
        n = counts[base]
        owner = (owners or {}).get(tile.key, base) if tile else base
        out[i] = (base if n == 1 else f"{base}#{n}", (owner, n))
    return out


class Tracker:
    """Turns per-frame faces into per-student rows; keeps each student's history.

    Who is who is the ``Roll``'s (identity.py): one person per student for the session, whatever
    the OCR misreads and wherever the gallery moves them. History is kept per person, so a
    student keeps their smoothing and mix when their tile moves or their name is read late,
    and keeps a ``left`` row once they are on no tile. ``pseudonyms`` replaces each named
    student's id once, after the vote (which goes by the real letters).
    """

    def __init__(self, half_life: float = 1.5, flag: FlagRule = FlagRule(), pseudonyms: Pseudonymise | None = None):
        if half_life < 0:
            raise ValueError("half-life must be >= 0 seconds")
        self.half_life, self.flag = half_life, flag
        self._window = max(MIX_WINDOW, flag.for_seconds)
        self._memory: dict[tuple, _Memory] = {}   # (person id number, face in tile) -> history
        self.roll = Roll(pseudonyms)

    def update(self, faces: tuple[Face, ...], tiles: tuple[Tile, ...], timestamp: float,
               names: Mapping[str, str] | None = None, camera_off: frozenset[str] = frozenset(),
               looks: Mapping[str, np.ndarray] | None = None) -> tuple[tuple[Face, ...], tuple[Student, ...]]:
        """Faces with ``student`` and ``smoothed`` set, and one ``Student`` per tile, face or departed name.

        ``names`` maps tile keys to this frame's readings of their labels; ``camera_off`` holds
        the keys of tiles without video; ``looks`` the tiles' ``tile_looks`` (follows students
        with unreadable labels across reshuffles). A tile without a face is ``camera_off`` or
        ``no_face``; a named student on no tile now is ``left``.
        """
        placement = self.roll.place(tiles, names or {}, timestamp, looks)
        for gone, into in placement.merged:
            self._merge(gone, into)
        people = placement.people
        ids = {key: person.id for key, person in people.items()}
        owners = {key: person.pid for key, person in people.items()}
        out_faces, rows = [], {}
        for face, (sid, memory_key) in zip(faces, _face_ids(faces, ids, owners)):
            aliases = _aliases(people.get(face.tile.key) if face.tile else None, sid)
            if face.probabilities is None:   # --signals attention: present, with no emotion at all
                out_faces.append(dataclasses.replace(face, student=sid))
                rows[sid] = Student(id=sid, tile=face.tile, status="present", aliases=aliases)
                continue
            memory = self._smooth(memory_key, np.asarray(face.probabilities, np.float64), timestamp)
            smoothed = tuple(float(p) for p in memory.smoothed)
            out_faces.append(dataclasses.replace(face, student=sid, smoothed=smoothed))
            rows[sid] = Student(
                id=sid, tile=face.tile, status="present", emotion=EMOTIONS[memory.label],
                confidence=float(memory.smoothed[memory.label]), probabilities=smoothed,
                since=timestamp - memory.label_since, mix=self._mix(memory, timestamp),
                flagged=self._flagged(memory, timestamp), aliases=aliases)
        for tile in tiles:
            person = people[tile.key]
            if person.id not in rows:
                status = "camera_off" if tile.key in camera_off else "no_face"
                rows[person.id] = Student(id=person.id, tile=tile, status=status, aliases=tuple(person.aliases))
        for person in self.roll.left():
            if person.id not in rows:
                memory = self._memory.get((person.pid, 1))
                rows[person.id] = Student(id=person.id, tile=None, status="left", aliases=tuple(person.aliases),
                                          mix=self._mix(memory, memory.updated) if memory else ())
        return tuple(out_faces), tuple(sorted(rows.values(), key=_row_order))

    def _merge(self, gone: int, into: int) -> None:
        """A person found to be another: their history joins the other's, their smoothing too if
        the other had none yet."""
        for key in [k for k in self._memory if k[0] == gone]:
            memory = self._memory.pop(key)
            kept = self._memory.setdefault((into, key[1]), memory)
            if kept is not memory:
                kept.history = deque(sorted([*kept.history, *memory.history]))

    def _smooth(self, key: tuple, probs: np.ndarray, now: float) -> _Memory:
        memory = self._memory.get(key)
        if memory is None:
            label = int(np.argmax(probs))
            memory = self._memory[key] = _Memory(probs, now, label, now)
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


def _aliases(person: Person | None, sid: str) -> tuple[str, ...]:
    """The ids a face's student was shown under before: the person's, with the face's ``#n``."""
    if person is None:
        return ()
    suffix = sid[len(person.id):]
    return tuple(alias + suffix for alias in person.aliases)


def _row_order(student: Student) -> tuple:
    tile = student.tile
    return (tile.row, tile.col, student.id) if tile else (10**6, 0, student.id)
