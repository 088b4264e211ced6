"""The meeting's gallery grid, inferred from one frame, and which tile each face sits in.

Zoom, Teams and Meet draw participants as equal rectangles on one lattice, mostly separated
by gaps of one flat colour. The background level is the flat level along the frame's border
(a window, or a region drawn with a margin); where the border is chrome (a whole-monitor
capture: title bar, side panel, taskbar) or tiles (a region cropped at them), the frame's
most common flat levels compete. The gallery area is the extent of the large connected
regions at that level (the gaps and margins between the tiles), which leaves out a
participants or chat panel and a toolbar in other colours. Then every pixel that differs
from the background is marked and the area cut at pixel rows and columns that are (almost)
all background, again and again (an XY cut): bands of tile rows, then tiles. Each
projection keeps full resolution along its own axis, so edges stay exact even with 2 px
gaps, and averages STRIDE pixels across it, which evens out video compression noise (1080p:
~8 ms on one core). Equal tile sizes and even, narrow gaps tell a gallery from a photo, a
slide or a column of avatars; a tile that dark content cut short snaps back to its column;
boxes far smaller than a tile (toolbar icons, panel text in the background colour) are
debris; cells of the lattice the tiles stand on that the cut missed (a speaker border
bridging 1 px gaps) are tiles when as full as one. Without gaps (Meet's grid view, a
downscaled capture's blurred 1 px gaps) the tiles' long straight edges still repeat at one
pitch: the lattice comes from their periodicity, and its cells that are full, or repeat the
layout of camera-off tiles drawn in the background colour, are the tiles.
``TileFinder`` runs this only when a stream's layout changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from fer_overlay.core import Box, Face, Tile
from fer_overlay.preprocess import to_gray

BACKGROUND_TOLERANCE = 4   # grey levels; Zoom's camera-off #232323 on #1a1a1a differs by 9
BORDER_SHARE = 0.3         # share of border pixels at the background level for a gallery frame
                           # (a panel on one side and a toolbar along another leave ~40%)
BORDER_BAND = 4            # px deep: the border band read for the background level
SIDE_SHARE = 0.4           # share of one side's band at that level for a margin along that side
COVERED = 0.5              # tiles covering this share of their gallery area end the search for the background
REGION_SHARE = 0.25        # background regions this share of the largest one's size belong to the gallery too
AREA_SHARE = 0.05          # share of the frame that the background's area must span
LEVELS = 4                 # without a background border: this many most common flat levels are tried ...
FLAT_SHARE = 0.005         # ... each covering at least this share of the frame
FLATNESS = 0.35            # ... and as one exact level (a gradient or a photo spreads over many)
ROW_FILL = 0.02            # a pixel row with more non-background pixels than this share crosses tiles
COL_FILL = 0.2             # same for a pixel column within one band of tiles (robust to a cursor)
GAP_DIP = 0.3              # ... and not below this share of the counts on both sides of it
OPEN = 7                   # px; non-background strips thinner than this are ringing, not tiles
STRIDE = 4                 # pixels averaged across each profile's axis
MIN_TILE = 12              # px; thinner runs are noise, not tiles
DEBRIS_SIDE = 24           # px; boxes smaller both ways are not cut further (avatars, icons, letters)
DEBRIS = 0.25              # boxes under this share of the tile area are not tiles, nor evidence against a grid
SIZE_TOLERANCE = 0.05      # sizes and gaps may vary by this share of the tile size (at least SNAP)
MAX_GAP = 1.0              # gaps between tiles are at most as wide as the tiles
SNAP = 3                   # px; edges this close are the same edge
DENSE = 0.5                # a lattice cell this full of non-background pixels holds a tile (video, camera off)
SPARSE = 0.02              # ... and a cell this full may be a camera-off tile in the background colour
LAYOUT = 12                # side of the thumbnails camera-off cells' layouts are compared on
LAYOUT_MATCH = 0.3         # correlation with the other such cells' mean layout for a repeated layout
EDGE_STEP = 12             # grey levels between neighbours for a tile edge
MIN_PITCH = 24             # px; smaller lattices are text or texture, not tiles ...
MAX_CELLS = 16             # ... and so are lattices with more cells than this along the gallery
HARMONIC = 0.8             # a lag this close to the strongest autocorrelation is the pitch, if shorter
LINE_SUPPORT = 0.8         # share of the lines between cells that must hold a long tile edge
LATTICE = 8                # px between the points TileFinder watches between tiles


def find_tiles(image: np.ndarray) -> tuple[Tile, ...]:
    """The gallery tiles of a BGR, BGRA or grayscale frame, row-major, rows and cols 0-based.

    A partly filled last row (Zoom centres it) takes the full rows' col indices when each of its
    tiles lines up with a column; otherwise its tiles are numbered 0..n-1 from the left.
    A frame that is not a gallery (no flat background level, no equal tiles on one lattice)
    is one tile covering it.
    """
    return _find(to_gray(image))[0]


def _find(gray: np.ndarray) -> tuple[tuple[Tile, ...], int | None]:
    """The tiles and the background level they stand on (None when the frame is one tile).

    Candidate levels in turn (see ``_candidates``). Rows and columns of tiles cut apart at gaps
    are stronger evidence than a lattice of edges (on a camera-off tile's grey as background,
    video tiles still make one, with cells that take in the gaps), and among equals the tiles
    that cover most of the frame win: a side panel's avatars or a taskbar's icons make small
    grids too. The search ends at tiles that cover COVERED of their gallery area, cut apart at
    gaps or on the border's level. Only the border's level may give a single tile (a 1x1
    gallery in its margin).
    """
    height, width = gray.shape
    best: list[list[Box]] = []
    level, strength = None, (False, 0)
    for background, area, border in _candidates(gray):
        rows, cut = _gallery(gray, background, area)
        covered = sum(b.area for row in rows for b in row)
        gaps = cut and len(rows) > 1 and max(map(len, rows)) > 1     # tiles cut apart both ways
        if (border or sum(map(len, rows)) > 1) and (gaps, covered) > strength:
            best, level, strength = rows, background, (gaps, covered)
            if (cut or border) and covered >= COVERED * area.area:
                break
    return (_index(best), level) if best else ((Tile(0, 0, Box(0, 0, width, height)),), None)


def _gallery(gray: np.ndarray, background: int, area: Box) -> tuple[list[list[Box]], bool]:
    """The tiles on ``background`` in ``area`` (see ``_gallery_area``) as rows of boxes, or none;
    and whether the XY cut found them.

    The XY cut first; where it finds no grid (no gaps: Meet's grid, 1 px gaps blurred away),
    the lattice of the tile edges.
    """
    height, width = gray.shape
    gray = gray[area.y:area.y2, area.x:area.x2]
    across = _mask(_shrink(gray, STRIDE, 1), background, (OPEN, 1))   # for the per-row profile
    down = _mask(_shrink(gray, 1, STRIDE), background, (1, OPEN))     # for per-column profiles
    boxes = _cut(across, down, Box(0, 0, gray.shape[1], gray.shape[0]), by_rows=True)
    rows = _grid(boxes)
    # A "tile" at the frame's edge may be part of a photo, unless others stand beside it and
    # below it on one lattice: a region cropped at the tiles (meeting apps leave a margin).
    inside = all(0 < area.x + b.x and 0 < area.y + b.y and area.x + b.x2 < width and area.y + b.y2 < height
                 for row in rows for b in row)
    lattice = len(rows) > 1 and max(map(len, rows)) > 1
    cut = bool(rows) and (inside or lattice)
    rows = _complete(rows, boxes, across) if cut else _lattice(gray, across)
    if cut and sum(map(len, rows)) == 1:       # one box: a 1x1 gallery, or gaps too thin to cut at
        cells = _lattice(gray, across)
        rows, cut = (cells, False) if cells else (rows, cut)
    return [[Box(area.x + b.x, area.y + b.y, b.w, b.h) for b in row] for row in rows], cut


def _border_level(gray: np.ndarray) -> tuple[int, Box] | None:
    """The grey level along the frame's border with its gallery area, if a gallery's margin can be it.

    The level with most pixels in a band BORDER_BAND px deep (not the outermost pixel rows:
    screenshots often carry a 1-2 px frame of another colour), counted within half the
    tolerance: compression spreads the gaps' one level over a few, while a flat toolbar along
    one edge keeps its exact level, and the narrow window cannot settle between two close flat
    levels (Zoom's gaps and camera-off tiles, 8 apart). A taskbar or a title bar fills one
    side; a gallery's margin runs along two at least, round an area of AREA_SHARE of the frame.
    """
    band = BORDER_BAND
    sides = [part.ravel() for part in (gray[:band], gray[-band:], gray[:, :band], gray[:, -band:])]
    border = np.concatenate(sides)
    background = int(_near_counts(border).argmax())
    flanked = sum(np.mean(_is_background(side, background)) >= SIDE_SHARE for side in sides) >= 2
    if not flanked or np.mean(_is_background(border, background)) < BORDER_SHARE:
        return None
    area = _gallery_area(gray, background)
    return (background, area) if area.area >= AREA_SHARE * gray.size else None


def _candidates(gray: np.ndarray) -> Iterator[tuple[int, Box, bool]]:
    """Grey levels that may lie between the tiles, with their gallery areas (AREA_SHARE of the
    frame at least) and whether the level is the border's; worked out only as they are needed.

    The border's level first (see ``_border_level``). Then, for frames whose border is no
    gallery margin (a whole-monitor capture: title bar, side panel, taskbar; a region cropped
    at the tiles, whose gaps are the only background), the frame's LEVELS most common flat
    levels: UI colours are exact levels, a gradient or a photo spreads over many.
    """
    border = _border_level(gray)
    if border:
        yield *border, True
    sample = gray[::STRIDE, ::STRIDE].ravel()
    near, exact = _near_counts(sample), np.bincount(sample, minlength=256)
    peaks = [border[0]] if border else []
    for level in np.argsort(-exact, kind="stable").tolist():
        if len(peaks) == LEVELS + bool(border):
            break
        flat = near[level] >= FLAT_SHARE * sample.size and exact[level] >= FLATNESS * near[level]
        if flat and all(abs(level - peak) > BACKGROUND_TOLERANCE for peak in peaks):
            peaks.append(level)
            area = _gallery_area(gray, level)
            if area.area >= AREA_SHARE * gray.size:
                yield level, area, False


def _near_counts(levels: np.ndarray) -> np.ndarray:
    """Per grey level, how many of ``levels`` lie within half the background tolerance of it."""
    half = BACKGROUND_TOLERANCE // 2
    return np.convolve(np.bincount(levels, minlength=256), np.ones(2 * half + 1), "same")


def _is_background(levels: np.ndarray, background: int) -> np.ndarray:
    """Which grey ``levels`` count as the background level."""
    return np.abs(levels.astype(np.int16) - background) <= BACKGROUND_TOLERANCE


class TileFinder:
    """``find_tiles`` for a stream of frames, run again only when the layout may have changed.

    After each detection it samples the frame at a few thousand points: a ring just inside
    each tile and a lattice over the space between tiles. It detects again when the frame
    size changes, when most of one tile's ring turns background-level or back (a tile left
    or arrived), when more than a quarter tile's worth of lattice points flip (tiles moved,
    a panel opened), or every ``refresh`` seconds to be safe. A check costs ~0.2 ms at
    1080p against ~8 ms for a detection; a moving speaker border or cursor is below both
    thresholds. A frame with no gallery (a shared slide, a webcam) is looked at again every
    ``retry`` seconds: detection on text-heavy frames costs 50-100 ms, too much for every frame.
    """

    def __init__(self, refresh: float = 10.0, retry: float = 1.0):
        self.refresh, self.retry = refresh, retry
        self.detections = 0
        self._tiles: tuple[Tile, ...] = ()
        self._shape: tuple[int, ...] = ()
        self._background = 0
        self._watching = False                                   # a gallery was found: watch it
        self._when = 0.0
        self._rings: list[tuple[np.ndarray, np.ndarray]] = []   # per tile: (ys, xs)
        self._lattice = (np.zeros(0, int), np.zeros(0, int))
        self._seen: list[np.ndarray] = []                        # background-ness at detection, per group

    def __call__(self, image: np.ndarray, timestamp: float) -> tuple[Tile, ...]:
        """The tiles of ``image`` (BGR or gray) at ``timestamp`` seconds: the last ones if nothing moved."""
        gray = to_gray(image)
        if self._changed(gray, timestamp):
            self._detect(gray, timestamp)
        return self._tiles

    def _near_background(self, gray: np.ndarray) -> list[np.ndarray]:
        """Background-ness of the watched points: one array per tile ring, the lattice last."""
        return [_is_background(gray[ys, xs], self._background) for ys, xs in (*self._rings, self._lattice)]

    def _changed(self, gray: np.ndarray, timestamp: float) -> bool:
        if gray.shape != self._shape or not 0 <= timestamp - self._when < self.refresh:
            return True
        if not self._watching:
            return timestamp - self._when >= self.retry
        now = self._near_background(gray)
        rings = any(np.mean(a != b) > 0.5 for a, b in zip(now[:-1], self._seen[:-1]) if a.size)
        quarter_tile = self._tiles[0].box.area / LATTICE ** 2 / 4
        return rings or int(np.sum(now[-1] != self._seen[-1])) > max(quarter_tile, 8)

    def _detect(self, gray: np.ndarray, timestamp: float) -> None:
        (self._tiles, background), self._shape, self._when = _find(gray), gray.shape, timestamp
        self.detections += 1
        self._watching = background is not None and len(self._tiles) > 1   # else look again after retry
        if not self._watching:
            return
        self._background = background
        self._rings = [_ring(t.box.clip(gray.shape[1], gray.shape[0])) for t in self._tiles]
        ys, xs = np.mgrid[LATTICE // 2:gray.shape[0]:LATTICE, LATTICE // 2:gray.shape[1]:LATTICE]
        ys, xs = ys.ravel(), xs.ravel()
        free = np.ones(len(ys), bool)
        for tile in self._tiles:
            b = tile.box
            free &= ~((xs >= b.x - SNAP) & (xs < b.x2 + SNAP) & (ys >= b.y - SNAP) & (ys < b.y2 + SNAP))
        self._lattice = (ys[free], xs[free])
        self._seen = self._near_background(gray)


def _ring(box: Box, inset: int = 2, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Points ``inset`` px inside ``box``'s edges, every ``step`` px."""
    x0, y0, x1, y1 = box.x + inset, box.y + inset, box.x2 - 1 - inset, box.y2 - 1 - inset
    xs, ys = np.arange(x0, x1 + 1, step), np.arange(y0, y1 + 1, step)
    return (np.concatenate([np.full_like(xs, y0), np.full_like(xs, y1), ys, ys]),
            np.concatenate([xs, xs, np.full_like(ys, x0), np.full_like(ys, x1)]))


def _cut(across: np.ndarray, down: np.ndarray, box: Box, by_rows: bool) -> list[Box]:
    """``box`` cut into the boxes between background lines, rows and columns in turn (an XY cut).

    One cut of each kind is a plain gallery: bands of tile rows, then tiles. Lines that are
    background from end to end are cut first, whichever way they run: so a panel of another
    colour beside the gallery is cut off before its rows are (its rows would stitch the
    tile rows together). Only then do lines that merely dip below their neighbours count
    (compression-smeared gaps, a cursor in a gap). Cutting on until nothing changes also
    splits a centred last row that merged with the row above.
    """
    if box.w < DEBRIS_SIDE and box.h < DEBRIS_SIDE:     # no tile, and too small to hold two
        return [box]
    for dip in (False, True):
        for rows in (by_rows, not by_rows):
            parts = _split(across, down, box, rows, dip)
            if parts != [box]:
                return [leaf for part in parts for leaf in _cut(across, down, part, not rows)]
    return [box]


def _split(across: np.ndarray, down: np.ndarray, box: Box, rows: bool, dip: bool) -> list[Box]:
    """``box`` split at its background rows (or columns); see ``_runs`` for ``dip``."""
    if rows:
        mask = across[box.y:box.y2, box.x // STRIDE:-(-box.x2 // STRIDE)]
        runs = _runs(_profile(mask, 1), ROW_FILL * mask.shape[1], dip)
        return [Box(box.x, box.y + a, box.w, b - a) for a, b in runs]
    mask = down[-(-box.y // STRIDE):box.y2 // STRIDE, box.x:box.x2]   # averaged rows wholly inside
    runs = _runs(_profile(mask, 0), (COL_FILL if dip else ROW_FILL) * mask.shape[0], dip)
    return [Box(box.x + a, box.y, b - a, box.h) for a, b in runs]


def _gallery_area(gray: np.ndarray, background: int) -> Box:
    """The bounding box of the large connected background regions: the gaps around the tiles.

    The largest region, and those at least REGION_SHARE of its size: tiles edge to edge
    across the whole width part the margin above them from the one below. Text in the
    background colour on a panel makes only small regions. Worked out on STRIDE x STRIDE
    blocks that hold any background pixel, so 2 px gaps stay connected at a sixteenth of the
    pixels (~0.3 ms at 1080p).
    """
    near = (cv2.absdiff(gray, background) <= BACKGROUND_TOLERANCE).astype(np.uint8)
    blocks = _shrink(near * 255, STRIDE, STRIDE) > 0
    count, _, stats, _ = cv2.connectedComponentsWithStats(blocks.view(np.uint8), connectivity=4)
    if count < 2:
        return Box(0, 0, gray.shape[1], gray.shape[0])
    stats = stats[1:]
    large = stats[stats[:, cv2.CC_STAT_AREA] >= REGION_SHARE * stats[:, cv2.CC_STAT_AREA].max()]
    x, y = large[:, 0].min() * STRIDE, large[:, 1].min() * STRIDE
    x2, y2 = (large[:, 0] + large[:, 2]).max() * STRIDE, (large[:, 1] + large[:, 3]).max() * STRIDE
    return Box(int(x), int(y), int(x2 - x), int(y2 - y)).clip(gray.shape[1], gray.shape[0])


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


def _runs(profile: np.ndarray, floor: float, dip: bool = True) -> list[tuple[int, int]]:
    """[start, end) ranges of tiles along ``profile``, at least MIN_TILE long.

    A position is a gap when its count is at most ``floor`` or, with ``dip``, since
    compression smears thin gaps, well below the counts on both sides of it (the lower of
    the two maxima within MIN_TILE).
    """
    tile = profile > floor
    if dip:
        # Running maxima over the MIN_TILE positions before and after each one.
        row, run = profile.astype(np.float32).reshape(1, -1), [1] * MIN_TILE
        before, after = (cv2.dilate(row, np.array([kernel], np.uint8), anchor=(anchor, 0),
                                    borderType=cv2.BORDER_CONSTANT, borderValue=0)
                         for kernel, anchor in ((run + [0], MIN_TILE), ([0] + run, 0)))
        tile &= profile > GAP_DIP * np.minimum(before, after).ravel()
    changes = np.flatnonzero(np.diff(tile, prepend=False, append=False)).tolist()   # start, end, start, ...
    return [(s, e) for s, e in zip(changes[::2], changes[1::2]) if e - s >= MIN_TILE]


def _grid(boxes: list[Box]) -> list[list[Box]]:
    """The tiles among ``boxes``, as rows; none when they do not look like a meeting grid.

    The tile size is tried in order of the area its boxes cover, skipping lone boxes (a
    panel) while others share a size: the first that makes a grid wins.
    """
    for w, h in _sizes(boxes):
        rows = _rows(boxes, w, h)
        if rows:
            return rows
    return []


def _rows(boxes: list[Box], w: float, h: float) -> list[list[Box]]:
    """The ``w`` x ``h`` boxes as rows, if they make a grid; boxes below DEBRIS of it are ignored.

    A grid has most of the boxes at its size and even spacing: equal gaps between
    neighbours in a row and between rows. Letters on a slide or objects in a photo do not.
    """
    boxes = sorted((b for b in boxes if b.area >= DEBRIS * w * h), key=lambda b: (b.y, b.x))

    def fits(box: Box) -> bool:
        return abs(box.w - w) <= _tolerance(w) and abs(box.h - h) <= _tolerance(h)

    columns = sorted({(b.x, b.x2) for b in boxes if fits(b)})
    kept: list[Box] = []
    for box in boxes:
        box = _snap(box, columns) if abs(box.h - h) <= _tolerance(h) else box
        # A tile split by dark content snaps back twice; keep it once.
        if fits(box) and not any(box.intersection(k) > box.area / 2 for k in kept):
            kept.append(_trim(box, round(w), round(h)))
    rows: list[list[Box]] = []
    for box in kept:
        if rows and abs(rows[-1][0].y - box.y) <= SNAP:
            rows[-1].append(box)
        else:
            rows.append([box])
    rows = [sorted(row, key=lambda b: b.x) for row in rows]

    def between(a: Box, b: Box, axis: int) -> bool:
        """Whether another found box lies between ``a`` and ``b``: then their distance is no gap."""
        low, high = (a.x2, b.x) if axis == 0 else (a.y2, b.y)
        return any(low <= box.center[axis] <= high for box in boxes
                   if axis == 1 or (box.y < a.y2 and a.y < box.y2))

    across = [right.x - left.x2 for row in rows for left, right in zip(row, row[1:]) if not between(left, right, 0)]
    down = [below[0].y - above[0].y2 for above, below in zip(rows, rows[1:]) if not between(above[0], below[0], 1)]
    # Narrow gaps too: avatars or labels at one place in every cell are evenly spaced as well.
    even = all(np.ptp(gaps) <= _tolerance(size) and max(gaps) <= MAX_GAP * size
               for gaps, size in ((across, w), (down, h)) if gaps)
    return rows if kept and even and 2 * len(kept) > len(boxes) else []


def _crop(box: Box, mask: np.ndarray) -> np.ndarray:
    """The part of ``mask`` (STRIDE-shrunk across its columns) under ``box``."""
    return mask[max(box.y, 0):box.y2, max(box.x, 0) // STRIDE:-(-box.x2 // STRIDE)]


def _fill(box: Box, mask: np.ndarray) -> float:
    """Share of non-background pixels of ``mask`` (STRIDE-shrunk across its columns) in ``box``."""
    cells = _crop(box, mask)
    return float(cells.mean()) if cells.size else 0.0


def _lattice_starts(starts: list[int], pitch: float) -> list[int]:
    """Sorted ``starts`` with the ones missing between them put back at multiples of ``pitch``."""
    filled = [starts[0]]
    for start in starts[1:]:
        steps = round((start - filled[-1]) / pitch)
        filled += [round(filled[-1] + (start - filled[-1]) * k / steps) for k in range(1, steps)] + [start]
    return filled


def _complete(rows: list[list[Box]], boxes: list[Box], mask: np.ndarray) -> list[list[Box]]:
    """``rows`` with the lattice cells the XY cut missed that hold a tile's worth of content.

    A speaker border bridging 1 px gaps merges tiles, a thick one makes a tile too big to
    fit: either way the cell between found rows and columns is left empty though it is as
    full as a tile. Columns come from the rows above the last (a centred last row is offset).
    Whole rows of such cells above the found ones are tiles too (only a last row is partial),
    and whole columns beside them where the cut's ``boxes`` hold them on the lattice (merged
    tiles; a side panel's box is not on it).
    """
    w = round(float(np.median([b.w for row in rows for b in row])))
    h = round(float(np.median([b.h for row in rows for b in row])))
    lefts = sorted(b.x for row in (rows[:-1] or rows) for b in row)
    columns = [x for i, x in enumerate(lefts) if i == 0 or x - lefts[i - 1] > SNAP]
    tops = [row[0].y for row in rows]
    if len(columns) > 1:
        columns = _lattice_starts(columns, min(np.diff(columns)))
    if len(tops) > 1:
        tops = _lattice_starts(tops, min(np.diff(tops)))
    # The gaps across and down are equal: one pitch gives the other.
    gap = tops[1] - tops[0] - h if len(tops) > 1 else columns[1] - columns[0] - w if len(columns) > 1 else None

    def on_lattice(box: Box) -> bool:
        """Whether ``box``'s edges lie on cell edges: tiles merged by a speaker border, not a panel."""
        return all(abs(k - round(k)) * (size + gap) <= _tolerance(size)
                   for k, size in (((box.x - columns[0]) / (w + gap), w), ((box.x2 + gap - columns[0]) / (w + gap), w),
                                   ((box.y - tops[0]) / (h + gap), h), ((box.y2 + gap - tops[0]) / (h + gap), h)))

    def full(cell: Box) -> bool:
        inside = 0 <= cell.x and cell.x2 <= mask.shape[1] * STRIDE and 0 <= cell.y and cell.y2 <= mask.shape[0]
        return inside and _fill(cell, mask) >= DENSE

    def merged(cell: Box) -> bool:
        return full(cell) and any(b.intersection(cell) >= cell.area - SNAP * (cell.w + cell.h) and on_lattice(b)
                                  for b in boxes)

    # Above: floating buttons or a toolbar may overlap the tiles, so full cells suffice.
    while gap is not None and all(full(Box(x, tops[0] - h - gap, w, h)) for x in columns):
        tops.insert(0, tops[0] - h - gap)
    for left in (True, False):
        while gap is not None:
            x = columns[0] - w - gap if left else columns[-1] + w + gap
            if not all(merged(Box(x, y, w, h)) for y in tops):
                break
            columns.insert(0 if left else len(columns), x)
    found = [b for row in rows for b in row]
    completed = []
    for top in tops:
        row = [b for b in found if abs(b.y - top) <= SNAP]
        for left in columns:
            cell = Box(left, top, w, h)
            if _fill(cell, mask) >= DENSE and not any(cell.intersection(b) > cell.area / 4 for b in row):
                row.append(cell)
        if row:
            completed.append(sorted(row, key=lambda b: b.x))
    return completed


def _lattice(gray: np.ndarray, mask: np.ndarray) -> list[list[Box]]:
    """Tiles as the cells of the one lattice the tile edges repeat on, when gaps do not separate them.

    Meet's grid draws tiles edge to edge, a downscaled capture blurs 1 px gaps away: no
    background line to cut at. But tile edges are long straight lines at one pitch, so the
    per-column count of vertical edges (per-row for horizontal ones) is periodic: its
    autocorrelation gives the pitch, folding it at that pitch the phase. Text and texture can
    be periodic too, so each line between cells must hold an edge at least half a cell long
    somewhere. A cell holds a tile when it is full (video, a coloured camera-off tile) or,
    being mostly background (Meet's camera-off tile: avatar and name on the background
    colour), repeats the layout of the other such cells. Empty cells (a partly filled last
    row) and lone debris (a toast) are not tiles.
    """
    height, width = gray.shape
    across = _steps(gray[::STRIDE], axis=1)      # vertical edges, on every STRIDE-th row
    down = _steps(gray[:, ::STRIDE], axis=0)     # horizontal edges, on every STRIDE-th column
    # Only edges MIN_PITCH long count: a row of names or avatars at one place in every cell is no line.
    xs = _lines(_profile(_long(across, MIN_PITCH // STRIDE, 0), 0) / across.shape[0], width)
    ys = _lines(_profile(_long(down, MIN_PITCH // STRIDE, 1), 1) / down.shape[1], height)
    if len(xs) < 3 or len(ys) < 3:      # one row or column of cells is no evidence of a lattice
        return []
    if not (_supported(xs, across, (ys[1] - ys[0]) // (2 * STRIDE), 0)
            and _supported(ys, down, (xs[1] - xs[0]) // (2 * STRIDE), 1)):
        return []
    cells = [[Box(x0, y0, x1 - x0, y1 - y0) for x0, x1 in zip(xs, xs[1:])] for y0, y1 in zip(ys, ys[1:])]
    fills = np.array([[_fill(c, mask) for c in row] for row in cells])
    sparse = list(zip(*np.nonzero((fills >= SPARSE) & (fills < DENSE))))
    repeated = set()
    if len(sparse) > 1:
        layouts = np.array([cv2.resize(_crop(cells[r][c], mask).astype(np.float32), (LAYOUT, LAYOUT),
                                       interpolation=cv2.INTER_AREA).ravel() for r, c in sparse])
        total = layouts.sum(axis=0)
        for (r, c), layout in zip(sparse, layouts):
            if _correlation(layout, (total - layout) / (len(sparse) - 1)) >= LAYOUT_MATCH:
                repeated.add((r, c))
    rows = [[cell for c, cell in enumerate(row) if fills[r, c] >= DENSE or (r, c) in repeated]
            for r, row in enumerate(cells)]
    return [row for row in rows if row]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors; 0 where either is flat."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / norm if norm else 0.0


def _steps(gray: np.ndarray, axis: int) -> np.ndarray:
    """1 where a pixel steps by more than EDGE_STEP to its next neighbour along ``axis`` (0: down, 1: across)."""
    steps = cv2.absdiff(gray[:, 1:], gray[:, :-1]) if axis == 1 else cv2.absdiff(gray[1:], gray[:-1])
    return (steps > EDGE_STEP).astype(np.uint8)


def _lines(profile: np.ndarray, length: int) -> list[int]:
    """Positions of the lattice lines for an edge ``profile`` (the step after pixel i at i + 1), ends included.

    The pitch is the shortest lag whose autocorrelation is nearly the strongest (sparse lines
    make their multiples as strong), the phase the strongest position folded at that pitch;
    both refined on the strongest step near each line, since an integer pitch drifts over
    nine tiles.
    """
    n = len(profile)
    low, high = max(MIN_PITCH, n // MAX_CELLS), n // 2
    if high <= low or not profile.any():
        return []
    centred = profile - profile.mean()
    spectrum = np.fft.rfft(centred, 2 * n)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[low - 1:high + 2]
    maxima = (correlation[1:-1] >= correlation[:-2]) & (correlation[1:-1] >= correlation[2:])
    pitch = low + int(np.argmax(maxima & (correlation[1:-1] >= HARMONIC * correlation[1:-1].max())))
    phase = int(np.bincount(np.arange(n) % pitch, profile, minlength=pitch).argmax())
    near = max(2, round(0.03 * pitch))
    peaks = np.array([max(g - near, 0) + int(profile[max(g - near, 0):g + near + 1].argmax())
                      for g in range(phase, n, pitch)]) + 1
    slope, offset = np.polyfit(np.round((peaks - peaks[0]) / pitch), peaks, 1) if len(peaks) > 1 else (pitch, peaks[0])
    first = offset - np.floor((offset + near) / slope) * slope
    lines = (round(first + i * slope) for i in range(int((length + near - first) // slope) + 1))
    # Lines this near the ends are the ends: tiles that touch the frame's edge have no edge there.
    return [0 if x <= near else length if x >= length - near else x for x in lines if -near <= x <= length + near]


def _long(steps: np.ndarray, run: int, axis: int) -> np.ndarray:
    """The ``steps`` in straight runs of ``run`` samples at least: down the columns (axis 0) or along the rows."""
    return cv2.erode(steps, np.ones((max(run, 1), 1) if axis == 0 else (1, max(run, 1)), np.uint8))


def _supported(lines: list[int], steps: np.ndarray, run: int, axis: int) -> bool:
    """Whether most lines between cells hold, near them, an edge ``run`` samples long across ``axis``'s lines."""
    long = _profile(_long(steps, run, axis), axis)
    near = max(2, round(0.03 * (lines[1] - lines[0])))
    held = [long[max(x - 1 - near, 0):x + near].any() for x in lines[1:-1]]
    return np.mean(held) >= LINE_SUPPORT


def _trim(box: Box, w: int, h: int) -> Box:
    """``box`` cut evenly to at most ``w`` x ``h``: an active speaker's border makes a tile bigger."""
    dw, dh = max(box.w - w, 0), max(box.h - h, 0)
    return Box(box.x + dw // 2, box.y + dh // 2, box.w - dw, box.h - dh)


def _sizes(boxes: list[Box], tries: int = 3) -> list[tuple[float, float]]:
    """Candidate tile sizes: sizes shared by boxes (within tolerance), most area covered first.

    A size only one box has is a candidate only when no size is shared (a 1x1 gallery).
    """
    if not boxes:
        return []
    ws, hs = np.array([b.w for b in boxes]), np.array([b.h for b in boxes])
    alike = np.ones((len(boxes), len(boxes)), bool)
    for sizes in (ws[:, None], hs[:, None]):
        alike &= np.abs(sizes - sizes.T) <= _tolerance(sizes)     # [i, j]: box j is box i's size
    covered = (alike * (ws * hs)).sum(axis=1)
    shared = alike.sum(axis=1) > 1
    order = [i for i in np.argsort(-covered, kind="stable") if shared[i] or not shared.any()]
    sizes = list(dict.fromkeys((float(np.median(ws[alike[i]])), float(np.median(hs[alike[i]]))) for i in order))
    return sizes[:tries]


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
