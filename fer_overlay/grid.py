"""The meeting's gallery grid, inferred from one frame, and which tile each face sits in.

Zoom, Teams and Meet draw participants as equal rectangles separated by gaps of one flat
dark colour. So: take the background level from the frame border, mark every pixel that
differs from it, and split the frame at pixel rows (then, within each band of tile rows, at
pixel columns) that are (almost) all background. Each projection keeps full resolution
along its own axis, so edges stay exact even with 2 px gaps, and averages STRIDE pixels
across it, which evens out video compression noise and keeps 1080p at about 3 ms on one
core. Equal tile sizes and even gaps tell a gallery from a photo or a slide; a tile that
dark content cut short snaps back to its column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fer_overlay.core import Box, Face, Tile
from fer_overlay.preprocess import to_gray

BACKGROUND_TOLERANCE = 4   # grey levels; Zoom's camera-off #232323 on #1a1a1a differs by 9
BORDER_UNIFORM = 0.8       # share of border pixels at the background level for a gallery frame
ROW_FILL = 0.02            # a pixel row with more non-background pixels than this share crosses tiles
COL_FILL = 0.2             # same for a pixel column within one band of tiles (robust to a cursor)
GAP_DIP = 0.3              # ... and not below this share of the counts on both sides of it
OPEN = 7                   # px; non-background strips thinner than this are ringing, not tiles
STRIDE = 4                 # pixels averaged across each profile's axis
MIN_TILE = 12              # px; thinner runs are noise, not tiles
SIZE_TOLERANCE = 0.05      # sizes and gaps may vary by this share of the tile size (at least SNAP)
SNAP = 3                   # px; edges this close are the same edge


def find_tiles(image: np.ndarray) -> tuple[Tile, ...]:
    """The gallery tiles of a BGR, BGRA or grayscale frame, row-major, rows and cols 0-based.

    A partly filled last row (Zoom centres it) takes the full rows' col indices when each of its
    tiles lines up with a column; otherwise its tiles are numbered 0..n-1 from the left.
    A frame that is not a gallery (no uniform border, no evenly spaced equal tiles) is one
    tile covering it. The frame should include a little background around the tiles.
    """
    gray = to_gray(image)
    height, width = gray.shape
    whole = (Tile(0, 0, Box(0, 0, width, height)),)
    border = np.concatenate((gray[0], gray[-1], gray[:, 0], gray[:, -1]))
    background = int(np.bincount(border, minlength=256).argmax())
    if np.mean(np.abs(border.astype(np.int16) - background) <= BACKGROUND_TOLERANCE) < BORDER_UNIFORM:
        return whole
    across = _mask(_shrink(gray, STRIDE, 1), background, (OPEN, 1))   # for the per-row profile
    down = _mask(_shrink(gray, 1, STRIDE), background, (1, OPEN))     # for per-column profiles

    boxes = []
    for y0, y1 in _runs(_profile(across, 1), ROW_FILL * across.shape[1]):
        band = down[-(-y0 // STRIDE):y1 // STRIDE]   # the averaged rows wholly inside [y0, y1)
        boxes += [Box(x0, y0, x1 - x0, y1 - y0) for x0, x1 in _runs(_profile(band, 0), COL_FILL * len(band))]
    rows = _grid(boxes)
    return _index(rows) if rows else whole


def assign_tiles(faces: Sequence[Face], tiles: Sequence[Tile]) -> tuple[Face, ...]:
    """Each face with ``tile`` set to the tile holding its box centre (None outside all tiles).

    Two faces in one tile both keep it: whether that is a second person or a poster on the
    wall is for the caller to decide.
    """
    return tuple(dataclasses.replace(face, tile=next((t for t in tiles if t.box.contains(face.box.center)), None))
                 for face in faces)


def _shrink(gray: np.ndarray, fx: int, fy: int) -> np.ndarray:
    """``gray`` averaged over blocks of fx x fy pixels."""
    size = (-(-gray.shape[1] // fx), -(-gray.shape[0] // fy))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _mask(gray: np.ndarray, background: int, kernel: tuple[int, int]) -> np.ndarray:
    """1 where ``gray`` is not background, opened with a (rows, cols) ``kernel``.

    The opening drops compression ringing along tile edges and specks such as a cursor, yet
    keeps straight tile edges and 2 px gaps; a kernel one pixel wide also survives stray
    background-level pixels inside dark camera-off tiles, which a square one would widen.
    """
    mask = cv2.threshold(cv2.absdiff(gray, background), BACKGROUND_TOLERANCE, 1, cv2.THRESH_BINARY)[1]
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones(kernel, np.uint8))


def _profile(mask: np.ndarray, axis: int) -> np.ndarray:
    """Non-background pixels per row (axis 1) or per column (axis 0)."""
    return cv2.reduce(mask, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()


def _runs(profile: np.ndarray, floor: float) -> list[tuple[int, int]]:
    """[start, end) ranges of tiles along ``profile``, at least MIN_TILE long.

    A position is a gap when its count is at most ``floor`` or, since compression smears thin
    gaps, well below the counts on both sides of it (the lower of the two maxima within
    MIN_TILE).
    """
    n = len(profile)
    nearby = sliding_window_view(np.pad(profile, MIN_TILE), MIN_TILE).max(axis=1)
    sides = np.minimum(nearby[:n], nearby[MIN_TILE + 1:MIN_TILE + 1 + n])   # before, after
    tile = (profile > floor) & (profile > GAP_DIP * sides)
    edges = np.diff(np.concatenate(([0], tile.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends) if e - s >= MIN_TILE]


def _grid(boxes: list[Box]) -> list[list[Box]]:
    """The boxes of the modal size, as rows; none when they do not look like a meeting grid.

    A grid has at least half the boxes at one size and even spacing: equal gaps between
    neighbours in a row and between rows. Letters on a slide or objects in a photo do not.
    """
    if not boxes:
        return []
    w, h = _modal_size(boxes)

    def fits(box: Box) -> bool:
        return abs(box.w - w) <= _tolerance(w) and abs(box.h - h) <= _tolerance(h)

    columns = sorted({(b.x, b.x2) for b in boxes if fits(b)})
    snapped = [_snap(b, columns) if abs(b.h - h) <= _tolerance(h) else b for b in boxes]
    kept = list(dict.fromkeys(b for b in snapped if fits(b)))   # a split tile snaps twice
    rows: list[list[Box]] = []
    for box in kept:
        if rows and rows[-1][0].y == box.y:
            rows[-1].append(box)
        else:
            rows.append([box])
    # Gaps only between neighbours that were found as neighbours: a dropped box is no gap.
    across = [right.x - left.x2 for left, right in zip(snapped, snapped[1:])
              if left.y == right.y and fits(left) and fits(right) and left != right]
    bands = list(dict.fromkeys(b.y for b in boxes))
    down = [below[0].y - above[0].y2 for above, below in zip(rows, rows[1:])
            if bands.index(below[0].y) == bands.index(above[0].y) + 1]
    even = all(np.ptp(gaps) <= _tolerance(size) for gaps, size in ((across, w), (down, h)) if gaps)
    return rows if even and 2 * len(kept) >= len(boxes) else []


def _modal_size(boxes: list[Box]) -> tuple[float, float]:
    """The size most boxes share (within tolerance): the tile size, even with few tiles."""
    ws, hs = np.array([b.w for b in boxes]), np.array([b.h for b in boxes])
    alike = np.ones((len(boxes), len(boxes)), bool)
    for sizes in (ws[:, None], hs[:, None]):
        alike &= np.abs(sizes - sizes.T) <= _tolerance(sizes)     # [i, j]: box j is box i's size
    modal = alike[alike.sum(axis=1).argmax()]
    return float(np.median(ws[modal])), float(np.median(hs[modal]))


def _snap(box: Box, columns: list[tuple[int, int]]) -> Box:
    """``box`` widened to the tile column it lies in and shares an edge with, if any.

    Dark content (a student in a dark room, black hair against a dark wall) can cut a tile
    short or split it; the part that still touches the tile's edge tells which tile it was.
    """
    for x0, x1 in columns:
        inside = x0 - SNAP <= box.x and box.x2 <= x1 + SNAP
        if inside and (abs(box.x - x0) <= SNAP or abs(box.x2 - x1) <= SNAP):
            return Box(x0, box.y, x1 - x0, box.h)
    return box


def _tolerance(size: float | np.ndarray) -> float | np.ndarray:
    """How far a tile size or gap may stray."""
    return np.maximum(SNAP, SIZE_TOLERANCE * size)


def _index(rows: list[list[Box]]) -> tuple[Tile, ...]:
    """Row and col numbers for rows of boxes, each left to right.

    Rows count by position, so a row lost to noise leaves its number unused.
    """
    pitch = min((b[0].y - a[0].y for a, b in zip(rows, rows[1:])), default=1)
    full = max(rows, key=len)
    centres = np.array([b.center[0] for b in full])
    tiles = []
    for row in rows:
        r = round((row[0].y - rows[0][0].y) / pitch)
        nearest = [int(np.abs(centres - b.center[0]).argmin()) for b in row]
        aligned = all(abs(centres[c] - b.center[0]) <= b.w / 4 for c, b in zip(nearest, row))
        cols = nearest if aligned else range(len(row))
        tiles += [Tile(r, c, b) for c, b in zip(cols, row)]
    return tuple(tiles)
