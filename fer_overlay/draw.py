"""Annotating frames: pure functions of ``(BGR frame, FrameResult) -> new BGR frame``.

The virtual camera is seen by every meeting participant, so the default mode,
``aggregate``, puts no mark on anyone's face: only a class-mood banner in a strip added
above the frame (the output is :func:`banner_height` taller, so the banner never hides the
top row of tiles or their labels). ``blur`` pixelates the whole picture, tile by tile, then
labels the faces; ``full`` is for the teacher's own preview or recordings; ``check`` is the
teacher's before-class picture of what was found (every tile, its student and state, every face).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np

from .attention import banner_texts, pose_label
from .core import EMOTIONS, Face, FrameResult, Student, Tile, class_mood

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
BANNER_BACKGROUND: Color = (20, 20, 20)
PIXELATE = 6                          # blur mode keeps this many blocks across a tile (and the frame)


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
        return pose_label(face)   # --signals attention: looking / away, or nothing
    label, confidence = face.emotion
    return f"{label} {confidence:.0%}", EMOTION_COLORS[label]


def _pixelated(picture: np.ndarray) -> np.ndarray:
    """``picture`` as about :data:`PIXELATE` smooth blocks across (square-ish blocks): no face,
    eye or letter survives, unlike a mild blur, but each tile keeps its colours."""
    h, w = picture.shape[:2]
    if w < 2 or h < 2:
        return picture.copy()
    across = min(PIXELATE, w)
    down = min(max(1, round(PIXELATE * h / w)), h)
    small = cv2.resize(picture, (across, down), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _pixelate_all(out: np.ndarray, tiles: tuple[Tile, ...]) -> None:
    """Blur mode's mask, in place: the whole frame, then each tile on its own.

    Everything goes, not only the faces found: on a real gallery the detector misses masked
    faces, profiles and even clear ones, the grid stage can miss a tile, and a self-view or
    speaker strip may sit outside the gallery. Tiles are pixelated one by one so the viewer still
    sees the gallery's layout under the labels. Camera-off tiles too (their profile photos are
    faces, and a wrong camera-off call must not leak a live one), and name labels too: Zoom draws
    them over the video, so their box can hold part of a face, and a readable name beside an
    emotion label is exactly what a shared feed should not show.
    """
    source = out.copy()
    height, width = out.shape[:2]
    out[:] = _pixelated(source)
    for tile in tiles:
        box = tile.box.clip(width, height)
        if box.w > 0 and box.h > 0:
            out[box.y:box.y2, box.x:box.x2] = _pixelated(source[box.y:box.y2, box.x:box.x2])


def _black_out(out: np.ndarray, tiles: tuple[Tile, ...]) -> None:
    for tile in tiles:
        box = tile.box.clip(out.shape[1], out.shape[0])
        out[box.y:box.y2, box.x:box.x2] = 0


def _draw_face(image: np.ndarray, face: Face, scale: float, top: int = 0) -> None:
    """The face's box and its label above it, or inside its top where there is no room above
    ``top`` (the frame's edge, or in ``check`` mode the tile's header, which is drawn over it)."""
    box = face.box.clip(image.shape[1], image.shape[0])
    labelled = _face_label(face)
    color = labelled[1] if labelled else UNLABELLED
    cv2.rectangle(image, (box.x, box.y), (box.x2 - 1, box.y2 - 1), color, _line_width(image.shape[0]))
    if labelled is None:
        return
    text = labelled[0]
    # Shrink the label to about the face width so neighbouring tiles stay readable.
    s = max(0.35, min(scale * 0.8, scale * 1.3 * box.w / max(_text_size(text, scale)[0], 1)))
    w, h, base = _text_size(text, s)
    height = h + base + 2 * max(2, h // 4)
    y = box.y - height if box.y - height >= top else max(box.y, min(top, box.y2 - height))
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
    pad = _pad(px)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    x, y = min(max(x, 0), max(image.shape[1] - w, 0)), min(max(y, 0), max(image.shape[0] - h, 0))
    w, h = min(w, image.shape[1] - x), min(h, image.shape[0] - y)
    box = image[y:y + h, x:x + w]
    box[:] = (30, 30, 30)
    mask = Image.new("L", (w, h))
    ImageDraw.Draw(mask).text((pad - left, pad - top), text, fill=255, font=font)
    alpha = np.asarray(mask, np.float32)[:, :, None] / 255
    box[:] = (box * (1 - alpha) + np.array(fg, np.float32) * alpha).astype(np.uint8)


def _line_width(height: int) -> int:
    return max(2, height // 360)   # face boxes and tile outlines: 3 px at 1080p


def _pad(px: int) -> int:
    return max(2, px // 4)   # round a caption's letters


def _header_px(height: int) -> int:
    return max(12, height // 45)   # a check tile header's letters: 24 px at 1080p


def _header_height(height: int) -> int:
    """How far a check tile's header reaches below the tile's top, at most (border, box, letters)."""
    px = _header_px(height)
    return _line_width(height) + round(1.25 * px) + 2 * _pad(px)


def _draw_check_tile(image: np.ndarray, check: TileCheck) -> None:
    box, color = check.tile.box, STATE_COLORS[check.state]
    thick = _line_width(image.shape[0])
    for i in range(thick):   # inside the tile: a centred thick line would spill onto a touching neighbour
        cv2.rectangle(image, (box.x + i, box.y + i), (box.x2 - 1 - i, box.y2 - 1 - i), color, 1)
    state = check.state.replace("_", " ")
    text = f"{check.label}: {state}"
    px = _header_px(image.shape[0])
    if _font_for(text, px) is None:   # a name in a script no font here has: the table shows it
        text = f"{check.tile.key} (name in table): {state}"
    # Shrink to the tile's width so a long name stays inside its own tile (not below 10 px).
    room = box.w - 2 * thick - 2 * _pad(px)
    px = max(10, min(px, int(px * room / max(_font_for(text, px).getlength(text), 1))))
    _caption(image, text, box.x + thick, box.y + thick, px, color)


def _banner_metrics(height: int) -> tuple[float, int, int, int]:
    """(font scale, margin, text height, row step) of the banner above a frame ``height`` tall."""
    scale = font_scale(height)
    margin = max(4, height // 90)
    _, line, base = _text_size("Ag", scale)
    return scale, margin, line, line + base + margin


def banner_height(height: int) -> int:
    """Rows the class-mood strip adds above a frame ``height`` tall.

    A function of the height alone, so every output of a run has one constant size (the
    virtual camera and the video file need it before the first frame) and a frame resized
    only in width keeps its strip; text that would not fit a narrow frame is drawn smaller.
    """
    _, margin, _, step = _banner_metrics(height)
    strip = 2 * step + margin
    return strip + strip % 2   # even: video encoders need even frame sizes


def banner(result: FrameResult | None, width: int, height: int) -> np.ndarray:
    """The class-mood strip for a frame ``width`` x ``height``: ``banner_height(height)`` rows.

    Row 1: faces per emotion in their colours; row 2: positive/neutral/negative shares,
    faces/tiles and analysis FPS (or, before the first analysis, a note that it is under way).
    The font follows the frame height and shrinks further if a row would not fit the width,
    so 640x360 stays readable and nothing is cut off.
    """
    strip = np.full((banner_height(height), width, 3), BANNER_BACKGROUND, np.uint8)
    mood = result.mood if result is not None else class_mood(())
    counts = [(f"{e} {mood.counts.get(e, 0)}", EMOTION_COLORS[e] if mood.counts.get(e, 0) else DIM)
              for e in EMOTIONS]
    if result is None:
        counts = []   # not known yet whether emotions are inferred at all (--signals attention): no names
        summary = "first analysis under way"
    else:
        faces = f"faces {mood.faces}/{mood.tiles}" if mood.tiles else f"faces {mood.faces}"
        summary = (f"positive {mood.positive:.0%}   neutral {mood.neutral:.0%}   "
                   f"negative {mood.negative:.0%}   {faces}   {result.fps:.1f} fps")
        counts, summary = banner_texts(result, counts, summary, DIM)   # attention signals
    gap = "   "

    scale, margin, line, step = _banner_metrics(height)
    row1 = gap.join(text for text, _ in counts)
    widest = max(_text_size(row1, scale)[0], _text_size(summary, scale)[0])
    small = min(scale, scale * (width - 2 * margin) / widest)
    thick = _thickness(small)
    x, y = margin, margin + line
    for text, color in counts:
        cv2.putText(strip, text, (x, y), FONT, small, color, thick, cv2.LINE_AA)
        x += _text_size(text + gap, small)[0]
    cv2.putText(strip, summary, (margin, y + step), FONT, small, WHITE, thick, cv2.LINE_AA)
    return strip


class Annotator:
    """Draws one :class:`FrameResult` onto a frame in the chosen :data:`FeedMode`.

    ``full``: coloured face boxes with "happy 87%" labels and "no face" / "camera off" tile markers.
    ``aggregate``: only the banner; every pixel of the frame is untouched, faces included.
    ``blur``: the whole frame pixelated tile by tile (:func:`_pixelate_all`), then boxes and
    labels as in ``full``.
    ``check``: every tile outlined in its state's colour (:data:`STATE_COLORS`) with its
    student's name or tile key and state, then faces as in ``full``; for the teacher's own file.
    With ``banner`` the class-mood strip is added above the frame: see :meth:`output_size`.
    Coordinates in ``result`` are pixels of ``image``.
    """

    def __init__(self, mode: FeedMode = "aggregate", *, show_tiles: bool = False, banner: bool = True) -> None:
        if mode not in FEED_MODES:
            raise ValueError(f"mode must be one of {FEED_MODES}, got {mode!r}")
        self.mode = mode
        self.show_tiles = show_tiles
        self.banner = banner

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the annotated frame for an input frame of ``size``."""
        width, height = size
        return (width, height + banner_height(height)) if self.banner else (width, height)

    def annotate(self, image: np.ndarray, result: FrameResult | None) -> np.ndarray:
        """Return a new annotated frame of :meth:`output_size`; ``image`` is never modified.

        Without a result (before the first analysis) the frame is masked for the mode all the
        same: ``blur`` pixelates the whole frame, since no tile is known yet.
        """
        height, width = image.shape[:2]
        strip = banner_height(height) if self.banner else 0
        # One output array, the picture copied once into its part under the strip: stacking the
        # strip onto an annotated copy cost a second 1080p copy per frame (2% of a core at 10/s).
        framed = np.empty((height + strip, width, 3), np.uint8)
        out = framed[strip:]
        out[:] = image
        excluded = result.excluded if result is not None else ()
        _black_out(out, excluded)   # an opted-out student: nothing of them shown, in any mode
        if self.mode == "blur":
            _pixelate_all(out, result.tiles if result is not None else ())
            _black_out(out, excluded)
        if result is not None and self.mode == "check":
            header = _header_height(out.shape[0])
            for face in result.faces:
                _draw_face(out, face, font_scale(out.shape[0]), face.tile.box.y + header if face.tile else 0)
            for check in tile_checks(result):   # last: who is in a tile must never be hidden by a face label
                _draw_check_tile(out, check)
        elif result is not None and self.mode != "aggregate":
            scale = font_scale(out.shape[0])
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
        if strip:
            framed[:strip] = banner(result, width, height)
        return framed

    def framed(self, picture: np.ndarray, result: FrameResult | None) -> np.ndarray:
        """``picture`` under the class-mood strip when this annotator has one: the output's size for
        any picture of the frame's size, e.g. a holding picture before the first analysis."""
        return np.vstack([banner(result, picture.shape[1], picture.shape[0]), picture]) if self.banner else picture
