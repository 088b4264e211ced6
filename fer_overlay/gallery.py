"""Synthetic meeting gallery views with known ground truth, for the demo, tests and benchmark.

A real Zoom/Teams/Meet screenshot carries no labels; a composed one knows exactly where every
tile and face is, so grid finding and face assignment can be checked to the pixel. The caller
passes the faces in (e.g. FER2013 crops): this module never reads a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer_overlay.core import Box, Tile

Colour = tuple[int, int, int]  # BGR


@dataclass(frozen=True)
class Style:
    """The colours that make a gallery look like one meeting app (dark theme)."""

    background: Colour   # behind and between the tiles
    camera_off: Colour   # fill of a tile without video
    avatar: bool         # camera-off tiles show initials in a coloured circle (else the full name)


STYLES: dict[str, Style] = {
    "zoom": Style((26, 26, 26), (35, 35, 35), False),        # #1a1a1a, #232323
    "teams": Style((31, 31, 31), (41, 41, 41), True),        # #1f1f1f, #292929
    "meet": Style((36, 33, 32), (67, 64, 60), True),         # #202124, #3c4043
}
AVATAR_COLOURS: tuple[Colour, ...] = ((180, 105, 75), (90, 140, 60), (60, 110, 200), (150, 80, 160), (70, 160, 170))
FACE_HEIGHT = 0.6   # pasted face height as a share of the tile height
CONTEXT = 0.35      # edge-extended margin around a pasted face, as a share of its size per side
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True, eq=False)
class Gallery:
    """A composed frame and its ground truth."""

    image: np.ndarray                      # BGR uint8, H x W x 3
    tiles: tuple[Tile, ...]                # row-major
    face_boxes: tuple[Box | None, ...]     # where each face was pasted; None for camera-off tiles


def compose_gallery(faces: Sequence[np.ndarray | None], rows: int, cols: int,
                    size: tuple[int, int] = (1920, 1080), *, gap: int = 8,
                    names: Sequence[str] | None = None, style: str = "zoom", rng_seed: int = 0,
                    aspect: float = 16 / 9) -> Gallery:
    """A ``size`` (width, height) gallery of ``rows`` x ``cols`` equal tiles, like a meeting app draws it.

    ``faces[i]`` (grayscale or BGR, any size) fills tile i in row-major order; None draws a
    camera-off tile. Fewer faces than ``rows * cols`` leave the last row partly filled and,
    as Zoom does, centred; its tiles take the full rows' col numbers when they line up with
    them (an even number of empty slots), else 0..n-1 from the left: ``find_tiles``'s rule.
    ``aspect`` is the tile width / height. ``gap`` pixels separate the tiles and also frame
    the grid, so the frame border is always background.
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
    tile_w, tile_h = _tile_size(width, height, rows, cols, gap, aspect)
    image = np.full((height, width, 3), theme.background, np.uint8)
    y0 = (height - rows * tile_h - (rows - 1) * gap) // 2

    tiles, face_boxes = [], []
    for index, face in enumerate(faces):
        row, col = divmod(index, cols)
        in_row = min(cols, len(faces) - row * cols)
        x0 = (width - in_row * tile_w - (in_row - 1) * gap) // 2
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
        _draw_label(view, names[index])
        tiles.append(Tile(row, col, box))
    return Gallery(image, tuple(tiles), tuple(face_boxes))


def _tile_size(width: int, height: int, rows: int, cols: int, gap: int, aspect: float) -> tuple[int, int]:
    """The largest ``aspect`` tile such that the grid plus a ``gap`` frame fits the image."""
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
    if theme.avatar:
        radius = max(tile_h // 5, 4)
        centre = (tile_w // 2, tile_h // 2)
        cv2.circle(view, centre, radius, AVATAR_COLOURS[index % len(AVATAR_COLOURS)], -1, cv2.LINE_AA)
        _centred_text(view, _initials(name), centre, radius * 1.2)
    else:
        _centred_text(view, name, (tile_w // 2, tile_h // 2), tile_w * 0.8)


def _initials(name: str) -> str:
    return "".join(word[0] for word in name.split()[:2]).upper() or "?"


def _centred_text(view: np.ndarray, text: str, centre: tuple[int, int], max_width: float) -> None:
    scale = max(view.shape[0] / 180, 0.3)
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    if tw > max_width:
        scale *= max_width / tw
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    cv2.putText(view, text, (centre[0] - tw // 2, centre[1] + th // 2), FONT, scale,
                (235, 235, 235), 1, cv2.LINE_AA)


def _draw_label(view: np.ndarray, name: str) -> None:
    """The participant name bottom-left, white on a translucent dark box, like Zoom.

    Long names are cut so the box never spans the tile, as Zoom does in small tiles.
    """
    tile_h, tile_w = view.shape[:2]
    scale, pad = min(max(tile_h / 360, 0.3), 0.7), max(tile_h // 60, 2)
    text = name
    while text and cv2.getTextSize(text, FONT, scale, 1)[0][0] + 3 * pad > 0.6 * tile_w:
        text = text[:-1]
    if not text:
        return
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x0, y1 = pad, tile_h - pad
    x1, y0 = min(x0 + tw + 2 * pad, tile_w), max(y1 - th - base - 2 * pad, 0)
    box = view[y0:y1, x0:x1]
    box[:] = (box * 0.45).astype(np.uint8)
    cv2.putText(view, text, (x0 + pad, y1 - pad - base), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
