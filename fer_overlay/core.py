"""The records that travel between pipeline stages.

``Frame -> Face (box, landmarks) -> Face with tile, student and probabilities -> FrameResult``.
Everything is a frozen dataclass so a stage can never change what an earlier stage saw,
and a face's box, tile, student and emotion always stay together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013 class order; every probability vector in the project uses it."""

NEGATIVE = frozenset({"angry", "disgust", "fear", "sad"})
POSITIVE = frozenset({"happy", "surprise"})

Point = tuple[float, float]


class Signals(Enum):
    """What a run infers: expressions, attention (head pose and presence, no emotion at all), or both."""

    EMOTIONS = "emotions"
    ATTENTION = "attention"
    BOTH = "both"

    @property
    def emotions(self) -> bool:
        return self is not Signals.ATTENTION

    @property
    def attention(self) -> bool:
        return self is not Signals.EMOTIONS


@dataclass(frozen=True)
class Box:
    """Axis-aligned pixel rectangle: top-left corner plus size."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x2(self) -> int:
        return self.x + self.w

    @property
    def y2(self) -> int:
        return self.y + self.h

    @property
    def center(self) -> Point:
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def area(self) -> int:
        return max(self.w, 0) * max(self.h, 0)

    def contains(self, point: Point) -> bool:
        return self.x <= point[0] < self.x2 and self.y <= point[1] < self.y2

    def intersection(self, other: "Box") -> int:
        w = min(self.x2, other.x2) - max(self.x, other.x)
        h = min(self.y2, other.y2) - max(self.y, other.y)
        return max(w, 0) * max(h, 0)

    def iou(self, other: "Box") -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def clip(self, width: int, height: int) -> "Box":
        x, y = min(max(self.x, 0), width), min(max(self.y, 0), height)
        return Box(x, y, min(self.x2, width) - x, min(self.y2, height) - y)


@dataclass(frozen=True, eq=False)
class Frame:
    """One BGR uint8 image from a source, with its position in the stream."""

    image: np.ndarray
    index: int
    timestamp: float  # seconds since the source started

    @property
    def size(self) -> tuple[int, int]:
        return (self.image.shape[1], self.image.shape[0])


@dataclass(frozen=True)
class Tile:
    """One participant rectangle of the meeting's gallery grid."""

    row: int
    col: int
    box: Box

    @property
    def key(self) -> str:
        """Stable id of the tile's position, e.g. ``r1c3`` (1-based, like people count)."""
        return f"r{self.row + 1}c{self.col + 1}"


@dataclass(frozen=True)
class HeadPose:
    """Head orientation of one face from its five landmarks (see ``attention.py``)."""

    yaw: float       # degrees; + = turned towards the image's right
    pitch: float     # degrees; + = up
    looking: bool    # towards the screen, by the thresholds in attention.py


@dataclass(frozen=True)
class Face:
    """A detected face and everything later stages learned about it.

    Stages fill fields with ``dataclasses.replace``, so the box, the tile, the student
    and the probabilities can never come apart.
    """

    box: Box
    landmarks: tuple[Point, ...]          # YuNet order: right eye, left eye, nose, mouth right, mouth left
    score: float
    tile: Tile | None = None
    student: str | None = None
    probabilities: tuple[float, ...] | None = None   # this frame's CNN output, EMOTIONS order
    smoothed: tuple[float, ...] | None = None        # per-student smoothed probabilities
    pose: HeadPose | None = None                     # this frame's head orientation (attention signals)

    @property
    def eyes(self) -> tuple[Point, Point]:
        """(eye on the image's left, eye on the image's right)."""
        a, b = self.landmarks[0], self.landmarks[1]
        return (a, b) if a[0] <= b[0] else (b, a)

    @property
    def emotion(self) -> tuple[str, float] | None:
        """Label shown to the user: smoothed argmax and its probability."""
        probs = self.smoothed or self.probabilities
        if probs is None:
            return None
        best = int(np.argmax(probs))
        return EMOTIONS[best], float(probs[best])


@dataclass(frozen=True)
class Mood:
    """Class-level summary of one analysed frame."""

    counts: dict[str, int] = field(default_factory=dict)   # emotion -> faces showing it
    faces: int = 0
    tiles: int = 0

    def share(self, group: frozenset[str]) -> float:
        return sum(self.counts.get(e, 0) for e in group) / self.faces if self.faces else 0.0

    @property
    def positive(self) -> float:
        return self.share(POSITIVE)

    @property
    def negative(self) -> float:
        return self.share(NEGATIVE)

    @property
    def neutral(self) -> float:
        return self.share(frozenset({"neutral"}))


def class_mood(faces: tuple[Face, ...], tiles: int = 0) -> Mood:
    counts = {e: 0 for e in EMOTIONS}
    labelled = 0
    for face in faces:
        if face.emotion is not None:
            counts[face.emotion[0]] += 1
            labelled += 1
    return Mood(counts, labelled, tiles)


@dataclass(frozen=True)
class FlagRule:
    """When a student is flagged: sustained negative expressions, or a long absence.

    The live table highlights the first rule; the report applies both.
    """

    negative: float = 0.5          # share of the window's seconds with a negative emotion
    for_seconds: float = 60.0      # window length
    absent_seconds: float = 300.0  # flag an uninterrupted absence longer than this
    away: float = 0.5              # share of the window's seconds not looking (head away or no face)


@dataclass(frozen=True)
class Attention:
    """A student's attention signals: physical, visible states only (never an emotion)."""

    state: str                    # "looking" | "away" | "no_face" | "camera_off" | "left"
    yaw: float | None = None      # smoothed head orientation, degrees; None without a face
    pitch: float | None = None
    away_seconds: float = 0.0     # head turned away, in the last minute
    no_face_seconds: float = 0.0  # video but no face, whole session
    camera_off_seconds: float = 0.0   # camera off, whole session
    flagged: bool = False         # not looking for most of the flag window (FlagRule.away)


@dataclass(frozen=True)
class Student:
    """One row of the live table: a participant and how they look right now."""

    id: str                       # the name read from the tile (or its pseudonym), else the tile key
    tile: Tile | None             # None once the student has left
    status: str                   # "present" | "no_face" | "camera_off" | "left"
    emotion: str | None = None
    confidence: float = 0.0
    probabilities: tuple[float, ...] | None = None   # smoothed, EMOTIONS order; None without a face
    since: float = 0.0            # seconds in the current emotion
    mix: tuple[float, ...] = ()   # share of each emotion over the last minute, EMOTIONS order
    flagged: bool = False         # negative for most of the flag window (FlagRule)
    attention: Attention | None = None   # head pose and presence signals (attention.py)
    aliases: tuple[str, ...] = ()  # ids this student was shown under before (tile key, a misread): one person


@dataclass(frozen=True)
class FrameResult:
    """What the analysis stage made of one frame; the input of every sink and of the table."""

    frame_index: int
    timestamp: float
    size: tuple[int, int]
    tiles: tuple[Tile, ...]
    faces: tuple[Face, ...]
    students: tuple[Student, ...] = ()
    fps: float = 0.0              # analysis frames per second
    dropped: int = 0              # source frames never analysed (analysis was busy)
    excluded: tuple[Tile, ...] = ()   # opted-out students' tiles: never analysed, blacked out in every picture
    signals: Signals = Signals.EMOTIONS   # what was inferred (the Analyzer says); ATTENTION: no probabilities

    @property
    def mood(self) -> Mood:
        return class_mood(self.faces, len(self.tiles))
