"""Faces on real meeting screens: every visible face found, none on camera-off or avatar tiles.

The nine labelled Zoom and Meet captures in ``../shared/data/meetings`` (read at run time,
never copied here). Tiles come from the labels (gallery box, grid, tile count, partial last
row centred in Zoom and left-aligned in Meet), so this measures the face and camera-off
stages on their own, whatever the grid stage finds; ``test_meetings.py`` runs everything.
"""

from __future__ import annotations

import time

import cv2
import pytest
from rich.console import Console
from rich.table import Table

from tests.conftest import MEETINGS
from fer_overlay.classify import EmotionClassifier
from fer_overlay.core import Box, Frame, Tile
from fer_overlay.detect import FaceDetector
from fer_overlay.pipeline import Analyzer
from fer_overlay.track import Tracker

MIN_FACES = 0.95
# Video tiles the labels' notes describe as showing no face (a room, a dark room, an arm).
NO_FACE = {"zoom_kr_5x5_pages": {(1, 1), (1, 2)}, "zoom_kr_13tiles": {(2, 1)}}


def label_tiles(label: dict) -> tuple[Tile, ...]:
    """Approximate tile boxes from the labels; ``col`` counts within the row from the left, as labels do."""
    x, y, w, h = label["gallery_box"]
    rows, cols = label["grid"]
    tile_w, tile_h = w / cols, h / rows
    tiles = []
    for row in range(rows):
        count = min(cols, label["tiles"] - row * cols)
        left = x + ((cols - count) * tile_w / 2 if label["app"] == "zoom" else 0)
        tiles += [Tile(row, col, Box(round(left + col * tile_w), round(y + row * tile_h), round(tile_w), round(tile_h)))
                  for col in range(count)]
    return tuple(tiles)


class LabelTiles:
    """Stands in for the analyzer's TileFinder: the labels' tiles on every frame."""

    def __init__(self, tiles: tuple[Tile, ...]):
        self.tiles = tiles

    def __call__(self, image, timestamp):
        return self.tiles


class Timed:
    """Wraps a stage; keeps the milliseconds of its last call."""

    def __init__(self, stage):
        self.stage, self.ms = stage, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.stage(*args, **kwargs)
        self.ms = (time.perf_counter() - start) * 1000
        return out


@pytest.fixture(scope="module")
def measured(labels) -> dict[str, dict]:
    """Per image: the analysis of one frame, then of the same frame again (second looks cached)."""
    detector, classifier = FaceDetector(), EmotionClassifier.load()
    table = Table(title="faces on real meeting screens (tiles from labels.json)")
    for column in ("image", "video tiles with a face", "whole frame only", "faces on cam-off",
                   "camera-off", "second looks", "faces ms", "next frame", "whole frame only"):
        table.add_column(column, justify="left" if column == "image" else "right")
    out = {}
    for image_id, label in labels.items():
        image = cv2.imread(str(MEETINGS / f"{image_id}.png"), cv2.IMREAD_COLOR)
        tiles = label_tiles(label)
        counts = {}
        for width in (0, None):   # whole frame only (before), then with the second look
            analyzer = Analyzer(detector, classifier, Tracker(), **({} if width is None else {"tile_width": width}))
            analyzer.tiles, faces = LabelTiles(tiles), analyzer.faces
            analyzer.faces = timed = Timed(faces)
            result = analyzer.analyze(Frame(image, 0, 0.0))
            looks, first = faces.looked, timed.ms
            again = analyzer.analyze(Frame(image, 1, 0.1))
            counts[width] = dict(result=result, again=again, looks=looks, relooks=faces.looked - looks,
                                 ms=first, ms_next=timed.ms)
        s = counts[None]
        off = {tuple(p) for p in label["camera_off"]}
        faced = {(f.tile.row, f.tile.col) for f in s["result"].faces if f.tile is not None}
        before = {(f.tile.row, f.tile.col) for f in counts[0]["result"].faces if f.tile is not None} - off
        shown_off = {(st.tile.row, st.tile.col) for st in s["result"].students if st.tile and st.status == "camera_off"}
        out[image_id] = s | dict(video=faced - off, on_off=faced & off, shown_off=shown_off, before=before)
        table.add_row(image_id, f"{len(faced - off)}/{label['faces_visible']}", f"{len(before)}",
                      str(len(faced & off)), f"{len(shown_off & off)}/{len(off)} +{len(shown_off - off)}",
                      f"{s['looks']} (+{s['relooks']})", f"{s['ms']:.0f}", f"{s['ms_next']:.0f}",
                      f"{counts[0]['ms_next']:.0f}")
    Console(width=140).print(table)
    return out


def test_every_visible_face_is_found(labels, measured):
    found = {k: len(m["video"]) for k, m in measured.items()}
    short = {k: (n, labels[k]["faces_visible"]) for k, n in found.items() if n < labels[k]["faces_visible"] - 1}
    assert not short, f"video tiles with a face (found, visible): {short}"
    total = sum(min(n, labels[k]["faces_visible"]) for k, n in found.items())
    assert total >= MIN_FACES * sum(label["faces_visible"] for label in labels.values())


def test_no_face_is_invented_on_tiles_without_one(measured):
    assert {k: sorted(m["video"] & NO_FACE.get(k, set())) for k, m in measured.items()
            if m["video"] & NO_FACE.get(k, set())} == {}


def test_no_face_on_camera_off_or_photo_avatar_tiles(measured):
    assert {k: sorted(m["on_off"]) for k, m in measured.items() if m["on_off"]} == {}


def test_camera_off_tiles_and_only_they_are_shown_camera_off(labels, measured):
    for image_id, label in labels.items():
        assert measured[image_id]["shown_off"] == {tuple(p) for p in label["camera_off"]}, image_id


def test_an_unchanged_frame_reuses_the_second_looks(measured):
    assert all(m["relooks"] == 0 for m in measured.values())
    for m in measured.values():   # and finds the same faces
        assert [f.box for f in m["again"].faces] == [f.box for f in m["result"].faces]
