"""Annotating frames: pure functions of ``(BGR frame, FrameResult) -> new BGR frame``.

The virtual camera is seen by every meeting participant, so the default mode,
``aggregate``, puts no mark on anyone's face: only a class-mood banner across the top.
``full`` and ``blur`` are for the teacher's own preview or recordings; ``check`` is the
teacher's before-class picture of what was found (every tile, its student and state, every face).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np

from .core import EMOTIONS, Box, Face, FrameResult, Student, Tile

FeedMode = Literal["full", "aggregate", "blur", "check"]
FEED_MODES: tuple[str, ...] = get_args(FeedMode)

Color = tuple[int, int, int]

EMOTION_COLORS: dict[str, Color] = {
    "angry": (60, 60, 230),       # red
    "disgust": (60, 160, 60),     # green
    "fear": (180, 80, 160),       # purple
    "happy": (0, 200, 255),       # amber
    "sad": (200, 120, 40),        # blue
    "surprise": (0, 140, 255),    # orange
    "neutral": (170, 170, 170),   # grey
}
"""BGR colour of each emotion; the overlay and the Rich table use the same palette."""

EMOTION_STYLES: dict[str, str] = {e: "#{2:02x}{1:02x}{0:02x}".format(*bgr) for e, bgr in EMOTION_COLORS.items()}
"""The same colours as Rich ``#rrggbb`` styles."""

STATE_COLORS: dict[str, Color] = {
    "present": (80, 200, 80),     # green: a face was found in the tile
    "no_face": (255, 0, 255),     # magenta: video but no face, the tile a teacher should look at
    "camera_off": (150, 150, 150),
}
"""BGR outline of a tile in ``check`` mode, by the tile's state."""

UNLABELLED: Color = (255, 255, 255)   # a face the classifier has not seen yet
DIM: Color = (110, 110, 110)
WHITE: Color = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
PIXELATE = 6                          # blur mode keeps this many blocks across a face


def font_scale(height: int) -> float:
    """Font scale for a frame height: ~22 px text at 1080p, never below legible at 360p."""
    return max(0.45, height / 900)


def _thickness(scale: float) -> int:
    return max(1, round(scale * 1.6))


def _text_size(text: str, scale: float) -> tuple[int, int, int]:
    """(width, height above baseline, baseline) of ``text`` at ``scale``."""
    (w, h), base = cv2.getTextSize(text, FONT, scale, _thickness(scale))
    return w, h, base


def _label(image: np.ndarray, text: str, x: int, y: int, scale: float, bg: Color, fg: Color) -> None:
    """Text on a filled box whose top-left corner is (x, y), kept inside the image."""
    w, h, base = _text_size(text, scale)
    pad = max(2, h // 4)
    bw, bh = w + 2 * pad, h + base + 2 * pad
    x = min(max(x, 0), max(image.shape[1] - bw, 0))
    y = min(max(y, 0), max(image.shape[0] - bh, 0))
    cv2.rectangle(image, (x, y), (x + bw - 1, y + bh - 1), bg, cv2.FILLED)
    cv2.putText(image, text, (x + pad, y + pad + h), FONT, scale, fg, _thickness(scale), cv2.LINE_AA)


def _ink(background: Color) -> Color:
    """Black text on light label colours, white on dark ones."""
    b, g, r = background
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else WHITE


def _face_label(face: Face) -> tuple[str, Color] | None:
    if face.emotion is None:
        return None
    label, confidence = face.emotion
    return f"{label} {confidence:.0%}", EMOTION_COLORS[label]


def _pixelate(image: np.ndarray, box: Box) -> None:
    """Replace the box with a few smooth blocks: no identity survives, unlike a mild blur."""
    x, y, w, h = box.x, box.y, box.w, box.h
    if w < 2 or h < 2:
        return
    roi = image[y:y + h, x:x + w]
    small = cv2.resize(roi, (PIXELATE, PIXELATE), interpolation=cv2.INTER_AREA)
    roi[:] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _draw_face(image: np.ndarray, face: Face, scale: float) -> None:
    box = face.box.clip(image.shape[1], image.shape[0])
    labelled = _face_label(face)
    color = labelled[1] if labelled else UNLABELLED
    cv2.rectangle(image, (box.x, box.y), (box.x2 - 1, box.y2 - 1), color, max(2, image.shape[0] // 360))
    if labelled is None:
        return
    text = labelled[0]
    # Shrink the label to about the face width so neighbouring tiles stay readable.
    s = max(0.35, min(scale * 0.8, scale * 1.3 * box.w / max(_text_size(text, scale)[0], 1)))
    w, h, base = _text_size(text, s)
    height = h + base + 2 * max(2, h // 4)
    y = box.y - height if box.y >= height else box.y   # above the box, or inside at the top
    _label(image, text, box.x, y, s, color, _ink(color))


def _draw_tile_note(image: np.ndarray, tile: Tile, note: str, scale: float) -> None:
    _label(image, note, tile.box.x + 4, tile.box.y + 4, max(0.35, scale * 0.6), (40, 40, 40), DIM)


@dataclass(frozen=True)
class TileCheck:
    """What ``check`` says about one tile: who is in it (as the table names them) and its state."""

    tile: Tile
    label: str       # the name read from the tile (or its pseudonym), else the tile key
    state: str       # "present" | "no_face" | "camera_off"

    @property
    def named(self) -> bool:
        return self.label != self.tile.key


def tile_checks(result: FrameResult) -> tuple[TileCheck, ...]:
    """Every tile of ``result`` with its student's id and state, in the grid's order.

    A tile holding a face is present even when its row says otherwise (extra faces in one
    tile get ``#2`` ids); a tile without a row (aggregate-only results) is ``no_face``.
    """
    with_face = {face.tile.key for face in result.faces if face.tile}
    rows: dict[str, Student] = {}
    for student in result.students:
        if student.tile and student.tile.key not in rows and not student.id.startswith(student.tile.key + "#"):
            rows[student.tile.key] = student
    checks = []
    for tile in result.tiles:
        row = rows.get(tile.key)
        state = "present" if tile.key in with_face else row.status if row else "no_face"
        checks.append(TileCheck(tile, row.id if row else tile.key, state))
    return tuple(checks)


@functools.lru_cache(maxsize=64)
def _font_for(text: str, px: int):
    """A TrueType font that has every letter of ``text``, or None.

    DejaVu Sans (shipped with matplotlib) first; otherwise any system font that covers the
    text, e.g. a Korean name on a computer with a Korean font. OpenCV's own fonts are ASCII only.
    """
    import matplotlib
    from matplotlib import font_manager
    from PIL import ImageFont
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for path in (str(dejavu), *sorted(font_manager.findSystemFonts())):
        if _covers(path, text):
            return ImageFont.truetype(path, px)
    return None


@functools.lru_cache(maxsize=None)
def _codepoints(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont
    try:
        with TTFont(path, fontNumber=0, lazy=True) as font:
            return frozenset(font.getBestCmap() or ())
    except Exception:   # a broken or unsupported font file is simply not a candidate
        return frozenset()


def _covers(path: str, text: str) -> bool:
    return all(ord(ch) in _codepoints(path) for ch in text if not ch.isspace())


def _caption(image: np.ndarray, text: str, x: int, y: int, px: int, fg: Color) -> None:
    """Anti-aliased TrueType ``text`` in ``fg`` on a dark box whose top-left is (x, y), kept inside the image."""
    from PIL import Image, ImageDraw
    font = _font_for(text, px)
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, px // 4)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    x, y = min(max(x, 0), max(image.shape[1] - w, 0)), min(max(y, 0), max(image.shape[0] - h, 0))
    w, h = min(w, image.shape[1] - x), min(h, image.shape[0] - y)
    box = image[y:y + h, x:x + w]
    box[:] = (30, 30, 30)
    mask = Image.new("L", (w, h))
    ImageDraw.Draw(mask).text((pad - left, pad - top), text, fill=255, font=font)
    alpha = np.asarray(mask, np.float32)[:, :, None] / 255
    box[:] = (box * (1 - alpha) + np.array(fg, np.float32) * alpha).astype(np.uint8)


def _draw_check_tile(image: np.ndarray, check: TileCheck) -> None:
    box, color = check.tile.box, STATE_COLORS[check.state]
    thick = max(2, image.shape[0] // 360)
    for i in range(thick):   # inside the tile: a centred thick line would spill onto a touching neighbour
        cv2.rectangle(image, (box.x + i, box.y + i), (box.x2 - 1 - i, box.y2 - 1 - i), color, 1)
    state = check.state.replace("_", " ")
    text = f"{check.label}: {state}"
    px = max(12, image.shape[0] // 45)   # 24 px at 1080p
    if _font_for(text, px) is None:   # a name in a script no font here has: the table shows it
        text = f"{check.tile.key} (name in table): {state}"
    # Shrink to the tile's width so a long name stays inside its own tile (not below 10 px).
    room = box.w - 2 * thick - 2 * max(2, px // 4)
    px = max(10, min(px, int(px * room / max(_font_for(text, px).getlength(text), 1))))
    _caption(image, text, box.x + thick, box.y + thick, px, color)


def draw_banner(image: np.ndarray, result: FrameResult) -> np.ndarray:
    """Return a copy of ``image`` with the class-mood strip across its top."""
    out = image.copy()
    _draw_banner(out, result)
    return out


def _draw_banner(out: np.ndarray, result: FrameResult) -> None:
    """Draw the class-mood strip in place.

    Row 1: faces per emotion in their colours; row 2: positive/neutral/negative shares,
    faces/tiles and analysis FPS. The font follows the frame height and shrinks further
    if a row would not fit the width, so 640x360 stays readable and nothing is cut off.
    """
    height, width = out.shape[:2]
    mood = result.mood
    counts = [(f"{e} {mood.counts.get(e, 0)}", EMOTION_COLORS[e] if mood.counts.get(e, 0) else DIM)
              for e in EMOTIONS]
    faces = f"faces {mood.faces}/{mood.tiles}" if mood.tiles else f"faces {mood.faces}"
    summary = (f"positive {mood.positive:.0%}   neutral {mood.neutral:.0%}   "
               f"negative {mood.negative:.0%}   {faces}   {result.fps:.1f} fps")
    gap = "   "

    scale = font_scale(height)
    margin = max(4, height // 90)
    row1 = gap.join(text for text, _ in counts)
    widest = max(_text_size(row1, scale)[0], _text_size(summary, scale)[0])
    scale = min(scale, scale * (width - 2 * margin) / widest)
    _, line, base = _text_size("Ag", scale)
    step = line + base + margin
    strip = min(height, 2 * step + margin)

    out[:strip] //= 3   # darken so coloured text reads on any video
    thick = _thickness(scale)
    x, y = margin, margin + line
    for text, color in counts:
        cv2.putText(out, text, (x, y), FONT, scale, color, thick, cv2.LINE_AA)
        x += _text_size(text + gap, scale)[0]
    cv2.putText(out, summary, (margin, y + step), FONT, scale, WHITE, thick, cv2.LINE_AA)


class Annotator:
    """Draws one :class:`FrameResult` onto a frame in the chosen :data:`FeedMode`.

    ``full``: coloured face boxes with "happy 87%" labels and "no face" / "camera off" tile markers.
    ``aggregate``: only the banner; pixels below it are untouched, faces included.
    ``blur``: faces pixelated, then boxes and labels as in ``full``.
    ``check``: every tile outlined in its state's colour (:data:`STATE_COLORS`) with its
    student's name or tile key and state, then faces as in ``full``; for the teacher's own file.
    Coordinates in ``result`` are pixels of ``image``.
    """

    def __init__(self, mode: FeedMode = "aggregate", *, show_tiles: bool = False, banner: bool = True) -> None:
        if mode not in FEED_MODES:
            raise ValueError(f"mode must be one of {FEED_MODES}, got {mode!r}")
        self.mode = mode
        self.show_tiles = show_tiles
        self.banner = banner

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        """Return a new annotated frame; ``image`` is never modified."""
        out = image.copy()
        for tile in result.excluded:   # an opted-out student: nothing of them shown, in any mode
            box = tile.box.clip(out.shape[1], out.shape[0])
            out[box.y:box.y2, box.x:box.x2] = 0
        if self.mode == "check":
            for face in result.faces:
                _draw_face(out, face, font_scale(out.shape[0]))
            for check in tile_checks(result):   # last: who is in a tile must never be hidden by a face label
                _draw_check_tile(out, check)
        elif self.mode != "aggregate":
            scale = font_scale(out.shape[0])
            if self.mode == "blur":
                for face in result.faces:
                    _pixelate(out, face.box.clip(out.shape[1], out.shape[0]))
            if self.show_tiles:
                for tile in result.tiles:
                    cv2.rectangle(out, (tile.box.x, tile.box.y), (tile.box.x2 - 1, tile.box.y2 - 1), DIM, 1)
            occupied = {face.tile for face in result.faces}
            camera_off = {s.tile.key for s in result.students if s.tile and s.status == "camera_off"}
            for tile in result.tiles:
                if tile not in occupied:
                    _draw_tile_note(out, tile, "camera off" if tile.key in camera_off else "no face", scale)
            for face in result.faces:
                _draw_face(out, face, scale)
        if self.banner:
            _draw_banner(out, result)
        return out
