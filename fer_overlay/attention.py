"""Attention signals: where each head is turned, and who is there at all. No emotion is inferred here.

Head orientation comes from the five landmarks YuNet already gives (eye centres, nose tip,
mouth corners): a weak-perspective fit of a generic 3-D face to them. The fit is linear, so
every face of a frame is solved in one matrix product and one batched 2x3 SVD (0.2 ms for 25
faces with the records built, against 0.9 ms for 25 ``cv2.solvePnP`` calls alone), and a face
half a metre from its webcam is far enough for weak perspective (1 deg median error, measured).

Per student, ``AttentionTracker`` smooths yaw and pitch like the emotions (a half-life in
seconds) and keeps time: head turned away in the last minute, no face and camera off over the
session, and a flag for "not looking for most of the last N seconds" by the same ``FlagRule``
window as the negative-expression flag. These are physical, readily visible states (EU AI Act
recital 18), which is why ``--signals attention`` can run without any emotion model.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from rich.table import Table
from rich.text import Text

from fer_overlay.core import Attention, Face, FlagRule, FrameResult, HeadPose, Student

FACE_MODEL = np.array([
    (-0.50, 0.00, 0.00),    # eye on the image's left (YuNet's first landmark)
    (0.50, 0.00, 0.00),     # eye on the image's right
    (0.00, 0.58, -0.50),    # nose tip, in front of the eyes
    (-0.41, 1.03, -0.05),   # mouth corner on the image's left
    (0.41, 1.03, -0.05),    # mouth corner on the image's right
])
"""A generic face in eye distances: x to the image's right, y down, z away from the camera.

x and y are the mean layout of YuNet's landmarks on 39 frontal FER2013 faces, roll removed
(measured); depth is anthropometric: the nose tip about 30 mm in front of the eyes' plane for
63 mm between the pupils, the mouth corners about level with the eyes. The nose depth is the
least certain number and scales every yaw: the validation varies all proportions by 15%.
"""

_CENTRED = FACE_MODEL - FACE_MODEL.mean(axis=0)
_FIT = np.linalg.pinv(_CENTRED)   # (3, 5): least-squares affine camera from centred 2-D points

YAW_AWAY = 30.0      # degrees either side: past the screen's edge (about 20 deg at 50 cm) plus the fit's error
PITCH_DOWN = -30.0   # degrees: looking at the desk (notes, a phone), not at a screen below the webcam
PITCH_UP = 25.0      # degrees: looking over the screen
AWAY_WINDOW = 60.0   # seconds behind "away in the last minute"
MAX_GAP = 2.0        # seconds: a longer gap between analysed frames counts as unwatched time


class State(Enum):
    """A student's attention state in one analysed frame."""

    LOOKING = "looking"
    AWAY = "away"
    NO_FACE = "no_face"
    CAMERA_OFF = "camera_off"
    LEFT = "left"


def estimate(landmarks: np.ndarray) -> np.ndarray:
    """(N, 5, 2) YuNet landmarks -> (N, 2) yaw and pitch in degrees.

    Yaw is + when the face turns towards the image's right, pitch + when it tilts up; both are
    the angles of the face's forward direction, so a tilted head (roll) changes neither.
    """
    points = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    if not len(points):
        return np.zeros((0, 2))
    centred = points - points.mean(axis=1, keepdims=True)
    affine = np.einsum("ij,njk->nki", _FIT, centred)            # (N, 2, 3): image = affine @ model
    u, _, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt                                                # nearest orthonormal rows: scale removed
    third = np.cross(rows[:, 0], rows[:, 1])
    # The face's forward direction (model -z) in camera coordinates is minus the rotation's third column.
    fx, fy, fz = -rows[:, 0, 2], -rows[:, 1, 2], -third[:, 2]
    yaw = np.degrees(np.arctan2(fx, -fz))
    pitch = np.degrees(np.arctan2(-fy, np.hypot(fx, fz)))
    return np.stack([yaw, pitch], axis=1)


def is_looking(yaw: float, pitch: float) -> bool:
    """Towards the screen: the head within ``YAW_AWAY`` sideways and between ``PITCH_DOWN`` and ``PITCH_UP``."""
    return abs(yaw) <= YAW_AWAY and PITCH_DOWN <= pitch <= PITCH_UP


def with_poses(faces: tuple[Face, ...]) -> tuple[Face, ...]:
    """``faces`` with ``pose`` set (all solved in one batch); faces without five landmarks keep None."""
    solvable = [i for i, f in enumerate(faces) if len(f.landmarks) == 5]
    if not solvable:
        return faces
    angles = estimate(np.array([faces[i].landmarks for i in solvable]))
    out = list(faces)
    for i, (yaw, pitch) in zip(solvable, angles.tolist()):
        out[i] = dataclasses.replace(faces[i], pose=HeadPose(round(yaw, 1), round(pitch, 1), is_looking(yaw, pitch)))
    return tuple(out)


class _Window:
    """Spans of the last ``seconds``, with running seconds per state: O(1) per frame, not O(history)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.spans: deque = deque()                 # (start, end, State), oldest first
        self.totals = dict.fromkeys(State, 0.0)

    def add(self, start: float, end: float, state: State) -> None:
        self.spans.append((start, end, state))
        self.totals[state] += end - start

    def trim(self, now: float) -> None:
        while self.spans and self.spans[0][1] <= now - self.seconds:
            start, end, state = self.spans.popleft()
            self.totals[state] -= end - start

    def time_in(self, states: set[State], now: float) -> float:
        """Seconds in ``states`` within the window; the oldest span counts only its part inside it."""
        total = sum(self.totals[s] for s in states)
        if self.spans:
            start, end, state = self.spans[0]
            if state in states:
                total -= min(max(now - self.seconds - start, 0.0), end - start)
        return max(total, 0.0)


@dataclass
class _Memory:
    recent: _Window                    # the last minute: time away
    flag: _Window                      # the flag window
    pose: np.ndarray | None = None     # smoothed (yaw, pitch); None until a face was seen
    updated: float = 0.0
    last: tuple[float, State] | None = None   # the previous frame's time and state
    no_face: float = 0.0
    camera_off: float = 0.0


class AttentionTracker:
    """Per-student attention: smoothed head pose, time away, time without a face or camera, the away flag.

    Keyed by student id like ``Tracker``, so a row keeps its history when the gallery reshuffles;
    a history kept under a tile key moves to the name once the name is read. Each frame's state
    lasts until the next analysed frame (at most ``MAX_GAP``), so the times are seconds, whatever
    rate the analysis runs at.
    """

    def __init__(self, half_life: float = 1.5, flag: FlagRule = FlagRule()):
        self.half_life, self.flag = half_life, flag
        self._memory: dict[str, _Memory] = {}

    def update(self, faces: tuple[Face, ...], students: tuple[Student, ...],
               timestamp: float) -> tuple[Student, ...]:
        """``students`` with ``attention`` set; ``faces`` must carry ``student`` and ``pose``."""
        poses = {f.student: f.pose for f in faces if f.student is not None and f.pose is not None}
        out = []
        for student in students:
            memory = self._memory_of(student)
            pose = poses.get(student.id)
            if pose is not None:
                memory.pose = self._smooth(memory, np.array([pose.yaw, pose.pitch]), timestamp)
            state = self._state(student, pose, memory)
            self._account(memory, state, timestamp)
            smoothed = memory.pose if state in (State.LOOKING, State.AWAY) else None
            out.append(dataclasses.replace(student, attention=Attention(
                state=state.value,
                yaw=round(float(smoothed[0]), 1) if smoothed is not None else None,
                pitch=round(float(smoothed[1]), 1) if smoothed is not None else None,
                away_seconds=memory.recent.time_in({State.AWAY}, timestamp),
                no_face_seconds=memory.no_face, camera_off_seconds=memory.camera_off,
                flagged=self._flagged(memory, timestamp))))
        return tuple(out)

    def _memory_of(self, student: Student) -> _Memory:
        memory = self._memory.get(student.id)
        for alias in student.aliases if memory is None else ():   # an id they had before (issue 16): still them
            memory = self._memory.pop(alias, None) or memory
        if memory is None and student.tile is not None and student.id != student.tile.key:
            memory = self._memory.pop(student.tile.key, None)   # the tile's history becomes the name's
        if memory is None:
            memory = _Memory(_Window(AWAY_WINDOW), _Window(self.flag.for_seconds))
        self._memory[student.id] = memory
        return memory

    def _smooth(self, memory: _Memory, pose: np.ndarray, now: float) -> np.ndarray:
        if memory.pose is None:
            memory.updated = now
            return pose
        dt = max(now - memory.updated, 0.0)
        keep = 0.5 ** (dt / self.half_life) if self.half_life > 0 else 0.0
        memory.updated = now
        return keep * memory.pose + (1 - keep) * pose

    @staticmethod
    def _state(student: Student, pose: HeadPose | None, memory: _Memory) -> State:
        if student.status == "left":
            return State.LEFT
        if student.status == "camera_off":
            return State.CAMERA_OFF
        if pose is None:
            return State.NO_FACE
        return State.LOOKING if is_looking(*memory.pose) else State.AWAY

    @staticmethod
    def _account(memory: _Memory, state: State, now: float) -> None:
        """Close the previous frame's span (it lasted until now) and drop spans past the windows."""
        if memory.last is not None:
            start, previous = memory.last
            end = min(now, start + MAX_GAP)
            if end > start:
                memory.recent.add(start, end, previous)
                memory.flag.add(start, end, previous)
                if previous is State.NO_FACE:
                    memory.no_face += end - start
                elif previous is State.CAMERA_OFF:
                    memory.camera_off += end - start
        memory.last = (now, state)
        memory.recent.trim(now)
        memory.flag.trim(now)

    def _flagged(self, memory: _Memory, now: float) -> bool:
        """Not looking (head away or no face) for at least ``flag.away`` of a full ``flag.for_seconds`` window.

        Camera-off and left seconds are not watched: they count neither way, but the window must
        still be watched for most of its length before anyone is flagged.
        """
        watched = memory.flag.time_in({State.LOOKING, State.AWAY, State.NO_FACE}, now)
        if watched < self.flag.for_seconds * 0.95:
            return False
        return memory.flag.time_in({State.AWAY, State.NO_FACE}, now) >= self.flag.away * watched


# --- presentation helpers: the table, the feed, the JSON ---------------------------------------

STATE_LABELS = {"looking": "looking", "away": "away", "no_face": "no face", "camera_off": "camera off",
                "left": "left"}
STATE_STYLES = {"looking": "#4caf50", "away": "#ff9800", "no_face": "#9e9e9e", "camera_off": "#616161",
                "left": "#424242"}
"""Rich colours of the states, also the report's palette."""


def pose_dict(pose: HeadPose | None) -> dict | None:
    return None if pose is None else {"yaw": pose.yaw, "pitch": pose.pitch,
                                      "state": "looking" if pose.looking else "away"}


def attention_dict(attention: Attention | None) -> dict | None:
    if attention is None:
        return None
    return {"state": attention.state, "yaw": attention.yaw, "pitch": attention.pitch,
            "away_seconds_last_minute": round(attention.away_seconds, 1),
            "no_face_seconds": round(attention.no_face_seconds, 1),
            "camera_off_seconds": round(attention.camera_off_seconds, 1), "flagged": attention.flagged}


def counts(result: FrameResult) -> dict[str, int]:
    """Tiles per state in one frame: looking, away, no face, camera off (students who left excluded)."""
    out = dict.fromkeys(("looking", "away", "no_face", "camera_off"), 0)
    if result.students:
        for student in result.students:
            if student.attention and student.attention.state in out:
                out[student.attention.state] += 1
        return out
    # Aggregate-only results carry no rows: the faces' own poses still give the class picture.
    for face in result.faces:
        if face.pose is not None:
            out["looking" if face.pose.looking else "away"] += 1
    out["no_face"] = max(len(result.tiles) - len(result.faces), 0)
    return out


def banner_rows(result: FrameResult) -> tuple[list[str], str]:
    """The feed banner's two rows for an attention-only run: state counts, then shares and rate."""
    n = counts(result)
    faces = n["looking"] + n["away"]
    first = [f"{STATE_LABELS[state]} {count}" for state, count in n.items()]
    share = f"looking {n['looking'] / faces:.0%} of faces" if faces else "no faces"
    tiles = f"   tiles {len(result.tiles)}" if result.tiles else ""
    return first, f"{share}{tiles}   {result.fps:.1f} fps"


def summary(result: FrameResult) -> str:
    """``looking 12/15`` for the banner and table title of a run with both signals."""
    n = counts(result)
    return f"looking {n['looking']}/{n['looking'] + n['away']}"


def format_seconds(seconds: float) -> str:
    s = max(int(round(seconds)), 0)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s"


def table_cells(student: Student) -> tuple[str, str, str]:
    """(state with yaw/pitch, away in the last minute, no face / camera off) for the live table."""
    a = student.attention
    if a is None:
        return ("", "", "")
    state = STATE_LABELS[a.state] + (f" {a.yaw:+.0f}°/{a.pitch:+.0f}°" if a.yaw is not None else "")
    if a.flagged:
        state = "⚑ " + state
    return (state, format_seconds(a.away_seconds),
            f"{format_seconds(a.no_face_seconds)} / {format_seconds(a.camera_off_seconds)}")


TABLE_HEADERS = ("Attention", "Away 1 min", "No face / cam off")


_FACE_EMOTION_KEYS = ("probabilities", "smoothed", "label", "confidence")
_STUDENT_EMOTION_KEYS = ("emotion", "confidence")


def json_view(result: FrameResult, record: dict) -> dict:
    """The JSON of one frame (``sinks.result_to_dict``) with this module's signals.

    Adds each face's ``pose``, each student's ``attention`` and the class's ``attention`` counts;
    with ``--signals attention`` every emotion key is removed (there is no emotion to report, and
    an empty ``label`` would still read as if one had been looked for). ``signals`` says which.
    """
    record["signals"] = result.signals.value
    if result.signals.attention:
        for face, out in zip(result.faces, record["faces"]):
            out["pose"] = pose_dict(face.pose)
        for student, out in zip(result.students, record["students"]):
            out["attention"] = attention_dict(student.attention)
        record["attention"] = counts(result)
    if not result.signals.emotions:
        for out in record["faces"]:
            for key in _FACE_EMOTION_KEYS:
                out.pop(key, None)
        for out in record["students"]:
            for key in _STUDENT_EMOTION_KEYS:
                out.pop(key, None)
        record.pop("mood", None)
    return record


STATE_BGR = {"looking": (80, 175, 76), "away": (0, 152, 255), "no_face": (158, 158, 158),
             "camera_off": (97, 97, 97)}
"""The feed's colours of the states (BGR of ``STATE_STYLES``)."""


def pose_label(face: Face) -> tuple[str, tuple[int, int, int]] | None:
    """The feed's face label of an attention-only run: ``looking`` or ``away``."""
    if face.pose is None:
        return None
    state = "looking" if face.pose.looking else "away"
    return state, STATE_BGR[state]


def banner_texts(result: FrameResult, mood_counts: list, mood_summary: str,
                 dim: tuple[int, int, int]) -> tuple[list, str]:
    """The feed banner's rows: attention counts instead of the mood (attention only), or beside it (both)."""
    if not result.signals.attention:
        return mood_counts, mood_summary
    if result.signals.emotions:
        return mood_counts, f"{mood_summary}   {summary(result)}"
    first, second = banner_rows(result)
    n = counts(result)
    return [(text, STATE_BGR[state] if n[state] else dim) for text, state in zip(first, n)], second


def add_attention_columns(table: Table, students: Sequence[Student]) -> None:
    """One attention column beside the emotion ones (``--signals both``: every row has attention).

    One narrow column, so the emotion table still fits an 80-column terminal whole.
    """
    if any(s.attention is not None for s in students):
        table.add_column("Attention", no_wrap=True)


def attention_cells(student: Student) -> tuple:
    """The row's attention cell: ``looking``, ``away 40s`` (away in the last minute), ``⚑`` when flagged."""
    a = student.attention
    if a is None:
        return ()
    text = STATE_LABELS[a.state] + (f" {format_seconds(a.away_seconds)}" if a.away_seconds >= 1 else "")
    return (attention_cell(student, ("⚑ " if a.flagged else "") + text),)


def attention_title(result: FrameResult) -> Text:
    """The attention-only table's title: tiles per state and the share of faces looking."""
    n = counts(result)
    faces = n["looking"] + n["away"]
    return Text.assemble(
        "Class attention  ",
        (f"looking {n['looking']}", STATE_STYLES["looking"]), "  ", (f"away {n['away']}", STATE_STYLES["away"]),
        "  ", f"no face {n['no_face']}  camera off {n['camera_off']}",
        f"  · looking {n['looking'] / faces:.0%} of faces" if faces else "  · no faces",
        no_wrap=True, overflow="ellipsis")


def attention_rows(students: Sequence[Student]) -> Table:
    """The attention-only table's body: one row per student, no emotion anywhere."""
    table = Table(expand=False)
    table.add_column("Student", no_wrap=True, overflow="ellipsis")
    for header in TABLE_HEADERS:
        table.add_column(header, no_wrap=True)
    for student in students:
        state, away, gone = table_cells(student)
        table.add_row(student.id, attention_cell(student, state), away, gone,
                      style="dim" if student.status != "present" else None)
    return table


def attention_cell(student: Student, text: str | None = None) -> Text:
    """A student's attention state in its colour (bold red when flagged); ``text`` defaults to the
    bare state (``looking``, ``⚑ away``), what a compact table has room for."""
    a = student.attention
    if a is None:
        return Text(student.status.replace("_", " "), style="dim")
    if text is None:
        text = ("⚑ " if a.flagged else "") + STATE_LABELS[a.state]
    return Text(text, style="bold red" if a.flagged else STATE_STYLES.get(a.state, ""))


def attention_caption(result: FrameResult) -> Text:
    return Text(f"analysis {result.fps:.1f} fps · {result.dropped} dropped frames · frame {result.frame_index}"
                " · no emotion is inferred", style="dim", no_wrap=True, overflow="ellipsis")
