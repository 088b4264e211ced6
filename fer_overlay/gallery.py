"""Synthetic meeting gallery views with known ground truth, for the demo, tests and benchmark.

A real Zoom/Teams/Meet screenshot carries no labels; a composed one knows exactly where every
tile and face is, so grid finding, name reading and face assignment can be checked to the
pixel. The app's chrome is drawn too when asked (a participants panel, the toolbar, the
active speaker's border, rounded tiles), because that is what breaks naive grid finding.
Text is rendered with a real TrueType font (DejaVu Sans, shipped with matplotlib), as the
apps do, so OCR is tested on the letter shapes it meets. The caller passes the faces in
(e.g. FER2013 crops): this module never reads a dataset.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_overlay.core import Box, Tile

Colour = tuple[int, int, int]  # BGR


@dataclass(frozen=True)
class Style:
    """The colours and shapes that make a gallery look like one meeting app (dark theme)."""

    background: Colour   # behind and between the tiles
    camera_off: Colour   # fill of a tile without video
    avatar: bool         # camera-off tiles show initials in a coloured circle (else the full name)
    speaker: Colour      # the active speaker's border
    panel: Colour        # the participants panel
    toolbar: Colour      # the meeting controls bar
    corner: float        # tile corner radius as a share of the tile height (0: square)
    bold: bool           # name labels in a bold face


STYLES: dict[str, Style] = {
    "zoom": Style((26, 26, 26), (35, 35, 35), False, (64, 201, 38), (36, 36, 36), (16, 16, 16), 0.0, False),
    "teams": Style((31, 31, 31), (41, 41, 41), True, (245, 133, 127), (41, 41, 41), (20, 20, 20), 0.03, True),
    "meet": Style((36, 33, 32), (67, 64, 60), True, (248, 180, 138), (255, 255, 255), (36, 33, 32), 0.06, False),
}
AVATAR_COLOURS: tuple[Colour, ...] = ((180, 105, 75), (90, 140, 60), (60, 110, 200), (150, 80, 160), (70, 160, 170))
FACE_HEIGHT = 0.6    # pasted face height as a share of the tile height
CONTEXT = 0.35       # edge-extended margin around a pasted face, as a share of its size per side
LABEL_FONT = 0.013   # name label font size as a share of the frame height (14 px at 1080p), ...
MIN_FONT = 11        # ... but at least this many px: the apps never draw smaller UI text
PANEL_WIDTH = 0.24   # participants panel, share of the frame width
TOOLBAR_HEIGHT = 0.065
SPEAKER_WIDTH = 3    # px of the speaker border, one of them outside the tile where the gap allows


@dataclass(frozen=True, eq=False)
class Gallery:
    """A composed frame and its ground truth."""

    image: np.ndarray                      # BGR uint8, H x W x 3
    tiles: tuple[Tile, ...]                # row-major
    face_boxes: tuple[Box | None, ...]     # where each face was pasted; None for camera-off tiles
    labels: tuple[str, ...]                # each tile's name label as drawn: cut short in small tiles


def compose_gallery(faces: Sequence[np.ndarray | None], rows: int, cols: int,
                    size: tuple[int, int] = (1920, 1080), *, gap: int = 8,
                    names: Sequence[str] | None = None, style: str = "zoom", rng_seed: int = 0,
                    aspect: float = 16 / 9, panel: bool = False, toolbar: bool = False,
                    speaker: int | None = None) -> Gallery:
    """A ``size`` (width, height) gallery of ``rows`` x ``cols`` equal tiles, like a meeting app draws it.

    ``faces[i]`` (grayscale or BGR, any size) fills tile i in row-major order; None draws a
    camera-off tile. Fewer faces than ``rows * cols`` leave the last row partly filled and,
    as Zoom does, centred; its tiles take the full rows' col numbers when they line up with
    them (an even number of empty slots), else 0..n-1 from the left: ``find_tiles``'s rule.
    ``aspect`` is the tile width / height. ``gap`` pixels separate the tiles and also frame
    the grid. ``panel`` adds a participants list on the right, ``toolbar`` the controls bar
    at the bottom, and ``speaker`` outlines that tile as the active speaker.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if not (rows - 1) * cols < len(faces) <= rows * cols:
        raise ValueError(f"{len(faces)} faces do not fill the last row of a {rows}x{cols} grid")
    names = list(names) if names is not None else [f"Student {i + 1}" for i in range(len(faces))]
    if len(names) < len(faces):
        raise ValueError(f"{len(names)} names for {len(faces)} tiles")
    theme, rng = STYLES[style], np.random.default_rng(rng_seed)
    width, height = size
    image = np.full((height, width, 3), theme.background, np.uint8)
    font = max(MIN_FONT, round(height * LABEL_FONT))
    area_w = width - (round(width * PANEL_WIDTH) if panel else 0)
    area_h = height - (round(height * TOOLBAR_HEIGHT) if toolbar else 0)
    if panel:
        _draw_panel(image[:area_h, area_w:], names[:len(faces)], theme, font)
    if toolbar:
        _draw_toolbar(image[area_h:], theme)
    tile_w, tile_h = _tile_size(area_w, area_h, rows, cols, gap, aspect)
    y0 = (area_h - rows * tile_h - (rows - 1) * gap) // 2

    tiles, face_boxes, labels = [], [], []
    for index, face in enumerate(faces):
        row, col = divmod(index, cols)
        in_row = min(cols, len(faces) - row * cols)
        x0 = (area_w - in_row * tile_w - (in_row - 1) * gap) // 2
        box = Box(x0 + col * (tile_w + gap), y0 + row * (tile_h + gap), tile_w, tile_h)
        if row and (cols - in_row) % 2 == 0:
            col += (cols - in_row) // 2
        view = image[box.y:box.y2, box.x:box.x2]
        if face is None:
            _draw_camera_off(view, names[index], theme, index)
            face_boxes.append(None)
        else:
            view[:] = _room(tile_h, tile_w, rng)
            local = _paste_face(view, face)
            face_boxes.append(Box(box.x + local.x, box.y + local.y, local.w, local.h))
        labels.append(_draw_label(view, names[index], font, theme.bold))
        _round_corners(view, round(theme.corner * tile_h), theme.background)
        tiles.append(Tile(row, col, box))
    if speaker is not None:
        _draw_speaker(image, tiles[speaker].box, theme, outside=min(1, gap // 3))
    return Gallery(image, tuple(tiles), tuple(face_boxes), tuple(labels))


def _tile_size(width: int, height: int, rows: int, cols: int, gap: int, aspect: float) -> tuple[int, int]:
    """The largest ``aspect`` tile such that the grid plus a ``gap`` frame fits the area."""
    free_w, free_h = width - (cols + 1) * gap, height - (rows + 1) * gap
    tile_w = min(free_w // cols, int(free_h / rows * aspect))
    tile_h = min(round(tile_w / aspect), free_h // rows)
    if tile_w < 8 or tile_h < 8:
        raise ValueError(f"a {rows}x{cols} grid with gap {gap} does not fit {width}x{height}")
    return tile_w, tile_h


def _room(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A soft two-colour gradient with sensor-like noise: a plausible wall behind a student."""
    start = rng.uniform(110, 190) + rng.uniform(-15, 15, 3)         # a grey with a slight tint
    end = start + rng.uniform(-30, 30) + rng.uniform(-8, 8, 3)      # lit more or less, same hue
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (np.cos(angle) * xs / width + np.sin(angle) * ys / height)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    room = start + t[..., None] * (end - start) + rng.normal(0, 3, (height, width, 3))
    return np.clip(room, 0, 255).astype(np.uint8)


def _paste_face(view: np.ndarray, face: np.ndarray) -> Box:
    """Upscale ``face`` to FACE_HEIGHT of the tile, centred; returns its box in the tile.

    FER2013 crops are tight: a real webcam face has hair, neck and room around it. The crop
    is first extended by repeating its edge pixels (CONTEXT of its size per side), so a
    detector and the runtime's aligned crop see continuous surroundings instead of a hard
    edge on a flat wall (mirroring instead would add ghost eyes); only that margin fades
    into the room.
    """
    tile_h, tile_w = view.shape[:2]
    face = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR) if face.ndim == 2 else face[..., :3]
    h = max(int(tile_h * FACE_HEIGHT), 2)
    w = min(max(round(h * face.shape[1] / face.shape[0]), 2), tile_w)
    pad_y, pad_x = round(face.shape[0] * CONTEXT), round(face.shape[1] * CONTEXT)
    padded = cv2.copyMakeBorder(face, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
    scale_y, scale_x = h / face.shape[0], w / face.shape[1]
    x, y = (tile_w - w) // 2, (tile_h - h) // 2
    # The padded face's box in the tile, clipped to the tile.
    px0, py0 = x - round(pad_x * scale_x), y - round(pad_y * scale_y)
    pw, ph = w + 2 * round(pad_x * scale_x), h + 2 * round(pad_y * scale_y)
    big = cv2.resize(padded, (pw, ph), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    feather = max(2, round(min(pad_x * scale_x, pad_y * scale_y)))
    ramp_y = np.minimum(np.arange(ph) + 0.5, ph - np.arange(ph) - 0.5) / feather
    ramp_x = np.minimum(np.arange(pw) + 0.5, pw - np.arange(pw) - 0.5) / feather
    alpha = np.clip(np.minimum.outer(ramp_y, ramp_x), 0, 1)[..., None].astype(np.float32)
    cx0, cy0 = max(px0, 0), max(py0, 0)
    cx1, cy1 = min(px0 + pw, tile_w), min(py0 + ph, tile_h)
    src = (slice(cy0 - py0, cy1 - py0), slice(cx0 - px0, cx1 - px0))
    under = view[cy0:cy1, cx0:cx1].astype(np.float32)
    view[cy0:cy1, cx0:cx1] = (alpha[src] * big[src] + (1 - alpha[src]) * under + 0.5).astype(np.uint8)
    return Box(x, y, w, h)


def _draw_camera_off(view: np.ndarray, name: str, theme: Style, index: int) -> None:
    """Zoom shows the name centred on flat grey; Teams and Meet show initials in a coloured circle."""
    view[:] = theme.camera_off
    tile_h, tile_w = view.shape[:2]
    centre = (tile_w // 2, tile_h // 2)
    if theme.avatar:
        radius = max(tile_h // 5, 4)
        cv2.circle(view, centre, radius, AVATAR_COLOURS[index % len(AVATAR_COLOURS)], -1, cv2.LINE_AA)
        _text(view, _initials(name), centre, round(radius * 0.8), (255, 255, 255), anchor="mm")
    else:
        px = max(MIN_FONT, round(tile_h / 7))
        while px > MIN_FONT and _text_width(name, px) > 0.8 * tile_w:
            px -= 1
        _text(view, name, centre, px, (235, 235, 235), anchor="mm")


def _initials(name: str) -> str:
    """What Teams and Meet draw for a camera-off participant: first letters of two words."""
    return "".join(word[0] for word in name.split()[:2]).upper() or "?"


def _draw_label(view: np.ndarray, name: str, px: int, bold: bool) -> str:
    """The participant name bottom-left, white on a translucent dark box, like Zoom; returns it.

    Long names are cut so the box never spans the tile, as Zoom does in small tiles.
    """
    tile_h, tile_w = view.shape[:2]
    pad = max(px // 4, 2)
    text = name
    while text and _text_width(text, px, bold) + 3 * pad > 0.6 * tile_w:
        text = text[:-1].rstrip()
    if not text:
        return text
    box_h = round(px * 1.3) + 2 * pad
    x0, y1 = pad, tile_h - pad
    x1, y0 = min(x0 + _text_width(text, px, bold) + 2 * pad, tile_w), max(y1 - box_h, 0)
    box = view[y0:y1, x0:x1]
    box[:] = (box * 0.45).astype(np.uint8)
    _text(view, text, (x0 + pad, (y0 + y1) // 2), px, (255, 255, 255), anchor="lm", bold=bold)
    return text


def _draw_panel(view: np.ndarray, names: Sequence[str], theme: Style, px: int) -> None:
    """A participants list: a divider, a header, then one avatar and name per row until full."""
    view[:] = theme.panel
    ink = (32, 33, 36) if sum(theme.panel) > 384 else (230, 230, 230)   # Meet's panel is white
    height = view.shape[0]
    view[:, :1] = tuple(min(255, c + 25) for c in theme.panel)
    step = round(px * 2.6)
    _text(view, f"Participants ({len(names)})", (2 * px, 2 * px), px, ink, anchor="lm", bold=True)
    for i, name in enumerate(names):
        y = 4 * px + i * step
        if y + step > height:
            break
        cv2.circle(view, (2 * px, y), px, AVATAR_COLOURS[i % len(AVATAR_COLOURS)], -1, cv2.LINE_AA)
        _text(view, _initials(name), (2 * px, y), round(px * 0.7), (255, 255, 255), anchor="mm")
        _text(view, name, (4 * px, y), px, ink, anchor="lm")


def _draw_toolbar(view: np.ndarray, theme: Style) -> None:
    """Meeting controls: a row of light icons in the middle and a red leave button on the right."""
    view[:] = theme.toolbar
    height, width = view.shape[:2]
    size = max(height // 2, 4)
    for i in range(-3, 4):
        x = width // 2 + i * 3 * size
        cv2.rectangle(view, (x - size // 2, height // 2 - size // 2), (x + size // 2, height // 2 + size // 2),
                      (200, 200, 200), 2, cv2.LINE_AA)
    cv2.rectangle(view, (width - 4 * size, height // 2 - size // 2), (width - size, height // 2 + size // 2),
                  (45, 45, 215), -1, cv2.LINE_AA)


def _draw_speaker(image: np.ndarray, box: Box, theme: Style, outside: int) -> None:
    """The active speaker's outline, SPEAKER_WIDTH px, ``outside`` of them in the gap."""
    for k in range(-outside, SPEAKER_WIDTH - outside):
        cv2.rectangle(image, (box.x + k, box.y + k), (box.x2 - 1 - k, box.y2 - 1 - k), theme.speaker, 1)


def _round_corners(view: np.ndarray, radius: int, background: Colour) -> None:
    """Paints the tile's corners outside a quarter circle of ``radius`` px with the background."""
    if radius < 2:
        return
    ys, xs = np.mgrid[0:radius, 0:radius]
    outside = (xs - radius + 0.5) ** 2 + (ys - radius + 0.5) ** 2 > radius ** 2
    for flip_y in (False, True):
        for flip_x in (False, True):
            mask = outside[::-1 if flip_y else 1, ::-1 if flip_x else 1]
            rows = slice(-radius, None) if flip_y else slice(0, radius)
            cols = slice(-radius, None) if flip_x else slice(0, radius)
            view[rows, cols][mask] = background


@functools.lru_cache(maxsize=32)
def _font(px: int, bold: bool = False):
    from PIL import ImageFont
    import matplotlib
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), px)


def _text_width(text: str, px: int, bold: bool = False) -> int:
    """Width in pixels of ``text`` at ``px`` font size."""
    return round(_font(px, bold).getlength(text))


def _text(view: np.ndarray, text: str, at: tuple[int, int], px: int, colour: Colour, *,
          anchor: str, bold: bool = False) -> None:
    """Anti-aliased TrueType ``text`` blended into ``view``; ``anchor`` as in Pillow (``lm``, ``mm``)."""
    from PIL import Image, ImageDraw
    font = _font(px, bold)
    left, top, right, bottom = font.getbbox(text, anchor=anchor)
    x0, y0 = at[0] + left, at[1] + top
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(at[0] + right, view.shape[1]), min(at[1] + bottom, view.shape[0])
    if cx1 <= cx0 or cy1 <= cy0:
        return
    mask = Image.new("L", (right - left, bottom - top))
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor=anchor)
    alpha = np.asarray(mask, np.float32)[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None] / 255
    under = view[cy0:cy1, cx0:cx1].astype(np.float32)
    view[cy0:cy1, cx0:cx1] = (alpha * np.array(colour, np.float32) + (1 - alpha) * under + 0.5).astype(np.uint8)
