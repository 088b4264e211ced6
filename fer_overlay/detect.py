"""Faces in a frame: OpenCV's YuNet detector on a downscaled copy, then a second look per tile.

YuNet costs grow with the pixel count; gallery faces are large enough that half of
1080p finds the same faces at a quarter of the cost. ``max_width`` sets that trade-off.
On real meeting screens that one pass still misses masked, downcast, small and even large
faces (on the dev set: 24 of 49 tiles of a 7x7 Zoom gallery, 18 of 25 live faces of a 9x9
Meet grid). YuNet run again on one tile, resized to ``TILE_WIDTH`` px wide, finds them: faces
then span the sizes its anchors were trained on. ``TileFaces`` pays for that second look only
on tiles where the whole-frame pass found no face, and reuses it while the tile's pixels stay
the same, so an unchanged gallery costs what one pass costs. In a stream the whole-frame pass
itself is reused while no tile's picture changed: a tile that changed is looked at alone (a
second look), and only a new layout or many changed tiles pay for the whole frame again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_overlay.assets import DETECTOR, bundled
from fer_overlay.core import Box, Face, Tile
from fer_overlay.errors import ModelError
from fer_overlay.grid import assign_tiles
from fer_overlay.preprocess import tile_picture

TILE_WIDTH = 192          # px a faceless tile is resized to for the second look (160-240 find the same)
TILE_CHANGE = 4.0         # mean thumbnail difference (grey levels) that makes a tile look again
TILE_MAX_AGE = 2.0        # s; a second look is never reused for longer (slow drifts add up)
TILE_LOOKS_PER_FRAME = 3  # stale tiles looked at again per frame (~2 ms each on a 2-core CPU)
TILE_PASSES = 6           # changed tiles looked at alone per frame; more pay the whole-frame pass (~27 ms CPU)
BYSTANDER = 0.5           # a face under this share of its tile's tallest face's height is someone behind


class FaceDetector:
    """Finds faces with five landmarks; returns them in frame coordinates."""

    def __init__(self, model_path: Path | None = None, *, score_threshold: float = 0.6,
                 max_width: int = 960, max_faces: int = 100):
        path = Path(model_path or bundled(DETECTOR))
        if not path.is_file():
            raise ModelError(f"face detector model not found at {path}; reinstall fer-overlay "
                             "or pass the YuNet .onnx path")
        log = cv2.utils.logging
        level = log.getLogLevel()
        # OpenCV 5 warns at every create that its new graph engine ignores YuNet's (default, CPU)
        # target: harmless, and noise on the teacher's terminal, so only errors are shown meanwhile.
        log.setLogLevel(log.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, max_faces)
        except cv2.error:
            raise ModelError(f"face detector model {path} is corrupt or not a YuNet ONNX file; "
                             "reinstall fer-overlay to restore it") from None
        finally:
            log.setLogLevel(level)
        self.max_width = max_width
        self._input_size: tuple[int, int] | None = None

    def detect(self, image: np.ndarray) -> tuple[Face, ...]:
        """Faces in a BGR image, sorted top-to-bottom then left-to-right."""
        height, width = image.shape[:2]
        return self._run(image, min(1.0, self.max_width / width), Box(0, 0, width, height))

    def detect_in(self, image: np.ndarray, box: Box, width: int) -> tuple[Face, ...]:
        """Faces inside ``box`` of ``image``, looked for on the box resized to ``width`` px wide."""
        box = box.clip(image.shape[1], image.shape[0])
        if box.w < 1 or box.h < 1:
            return ()
        return self._run(image[box.y:box.y2, box.x:box.x2], width / box.w, box)

    def _run(self, image: np.ndarray, scale: float, box: Box) -> tuple[Face, ...]:
        """YuNet on ``image`` (the ``box`` part of a frame) scaled by ``scale``; frame coordinates out."""
        height, width = image.shape[:2]
        small = image if scale == 1.0 else cv2.resize(
            image, (max(round(width * scale), 1), max(round(height * scale), 1)),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        elif small.shape[2] == 4:
            small = cv2.cvtColor(small, cv2.COLOR_BGRA2BGR)
        size = (small.shape[1], small.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, rows = self._net.detect(small)
        if rows is None:
            return ()
        coords = rows[:, :14] / scale
        coords[:, [0, *range(4, 14, 2)]] += box.x   # x of the box and of the landmarks; w and h stay
        coords[:, [1, *range(5, 14, 2)]] += box.y
        faces = []
        for row, score in zip(coords, rows[:, 14]):
            found = Box(*(int(round(v)) for v in row[:4]))
            landmarks = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
            faces.append(Face(box=_within(found, box), landmarks=landmarks, score=float(score)))
        return tuple(sorted(faces, key=lambda f: (f.box.y // max(f.box.h, 1), f.box.x)))


def _within(box: Box, area: Box) -> Box:
    """``box`` clipped to ``area`` (both in frame coordinates)."""
    local = Box(box.x - area.x, box.y - area.y, box.w, box.h).clip(area.w, area.h)
    return Box(local.x + area.x, local.y + area.y, local.w, local.h)


@dataclass(frozen=True, eq=False)
class _Pass:
    """What the last whole-frame pass saw of a tile: its picture then and its faces."""

    thumb: np.ndarray
    timestamp: float
    faces: tuple[Face, ...]

    def holds(self, thumb: np.ndarray, timestamp: float) -> bool:
        return (0 <= timestamp - self.timestamp <= TILE_MAX_AGE
                and float(np.abs(thumb - self.thumb).mean()) <= TILE_CHANGE)


@dataclass(frozen=True, eq=False)
class _Look:
    """One second look at a tile: what it showed then and the faces found in it."""

    thumb: np.ndarray
    timestamp: float
    faces: tuple[Face, ...]


class TileFaces:
    """Every tile's faces: the whole-frame pass, then a cached second look at faceless tiles.

    A tile's second look is reused while its thumbnail stays within ``TILE_CHANGE`` of the one
    it was taken with, for at most ``TILE_MAX_AGE`` seconds. A tile never looked at is looked at
    at once (a still screenshot pays every look on its one frame); of the tiles whose look went
    stale, at most ``TILE_LOOKS_PER_FRAME`` are looked at again per frame, the oldest first, so
    a moving class cannot make one frame pay for them all; the others keep their last look a
    few frames more. A moved or resized tile is a new tile. ``width`` 0 turns the second look off.

    The whole-frame pass is reused the same way: while every tile's picture stays within
    ``TILE_CHANGE`` of the pass (for at most ``TILE_MAX_AGE``), its faces stand; up to
    ``TILE_PASSES`` changed tiles are looked at alone instead (a second look, which finds what
    the pass finds and more); a tile the pass never saw, or more changed tiles, take a new pass.
    """

    def __init__(self, detector: FaceDetector, width: int = TILE_WIDTH):
        self.detector, self.width = detector, width
        self._looks: dict[Box, _Look] = {}
        self._passes: dict[Box, _Pass] = {}
        self._outside: tuple[Face, ...] = ()   # the last pass's faces in no tile
        self.looked = 0       # second looks run so far (the figure the cache keeps low)
        self.passes = 0       # whole-frame passes run so far

    def __call__(self, image: np.ndarray, gray: np.ndarray, tiles: Sequence[Tile], timestamp: float,
                 skip: Collection[str] = ()) -> tuple[Face, ...]:
        """Faces of ``image`` with their tiles; none on tiles whose key is in ``skip`` (camera off).

        ``gray`` is ``image`` in gray, which the change check reads.
        """
        live = [t for t in tiles if t.key not in skip]
        thumbs = {t.box: tile_picture(gray, t.box) for t in live}
        changed = [t for t in live if t.box not in self._passes or not self._passes[t.box].holds(thumbs[t.box], timestamp)]
        self._looks = {t.box: self._looks[t.box] for t in tiles if t.box in self._looks}
        if (not live or not self.width or len(changed) > TILE_PASSES
                or any(t.box not in self._passes for t in live)):
            found = assign_tiles(self.detector.detect(image), tiles)
            self.passes += 1
            self._passes = {t.box: _Pass(thumbs[t.box], timestamp, tuple(f for f in found if f.tile == t))
                            for t in live}
            self._outside = tuple(f for f in found if f.tile is None)
        else:
            # A changed tile is looked at alone: its pass is now "no face here", its faces the look's.
            self._passes = {t.box: self._passes[t.box] for t in live}
            for tile in changed:
                self._passes[tile.box] = _Pass(thumbs[tile.box], timestamp, ())
                self._look(image, tile, thumbs[tile.box], timestamp)
        faces = [*self._outside, *(f for t in live for f in self._passes[t.box].faces)]
        seen = {f.tile.key for f in faces if f.tile is not None}
        faceless = [t for t in live if self.width and t.key not in seen]
        # Looks of tiles with a face this frame are kept: the whole-frame pass flickers on some faces.
        stale = []
        for tile in faceless:
            thumb = thumbs[tile.box]
            look = self._looks.get(tile.box)
            if look is None:
                self._look(image, tile, thumb, timestamp)
            elif (not 0 <= timestamp - look.timestamp <= TILE_MAX_AGE
                  or float(np.abs(thumb - look.thumb).mean()) > TILE_CHANGE):
                stale.append((look.timestamp, tile, thumb))
        for _, tile, thumb in sorted(stale, key=lambda due: due[0])[:TILE_LOOKS_PER_FRAME]:
            self._look(image, tile, thumb, timestamp)
        return _without_bystanders(faces + [dataclasses.replace(face, tile=tile)
                                            for tile in faceless for face in self._looks[tile.box].faces])

    def _look(self, image: np.ndarray, tile: Tile, thumb: np.ndarray, timestamp: float) -> None:
        self._looks[tile.box] = _Look(thumb, timestamp, self.detector.detect_in(image, tile.box, self.width))
        self.looked += 1


def _without_bystanders(faces: list[Face]) -> tuple[Face, ...]:
    """``faces`` less those far smaller than the largest face of their tile.

    A second person beside the student is about as large (0.8 of the height on the dev set);
    people walking by far behind are a third of it or less and would each get a table row.
    """
    tallest: dict[Tile, int] = {}
    for face in faces:
        if face.tile is not None:
            tallest[face.tile] = max(tallest.get(face.tile, 0), face.box.h)
    return tuple(f for f in faces if f.tile is None or f.box.h >= BYSTANDER * tallest[f.tile])
