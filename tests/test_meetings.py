"""The whole analyzer on real meeting screenshots: tiles, faces and names against hand labels.

The nine Zoom and Meet captures in ``../shared/data/meetings`` (desktops, windows, crops;
2x2 to 9x9; camera-off tiles; Korean names; a gap-less Meet grid) are the evidence that our
own generated galleries cannot be. They are read from ``../shared`` at run time and never
copied into the repository. Each image goes through ``Analyzer.analyze`` exactly as
``fer-overlay analyze IMG`` runs it (default config, names read from the tiles).
"""

from __future__ import annotations


import cv2
import pytest
from rich.console import Console
from rich.table import Table

from fer_overlay.config import Config
from fer_overlay.core import Frame, FrameResult, Tile
from fer_overlay.pipeline import Analyzer
from tests.conftest import MEETINGS, same_name

MIN_FACES = 0.95      # share of visible faces found, over the whole set (issue 10's goal; 136/136 measured)
MIN_NAMES = 0.9       # share of labelled names read (issue 10's goal; 183/196 measured, zoom_promo_7x7's 4-5 px
                      # labels 35/48)
MAX_MISREAD = 0.03    # readings that match no label: 5 measured, all 4-5 px labels misread (``Jack D``)


def positions(tiles: tuple[Tile, ...]) -> dict[str, tuple[int, int]]:
    """Tile key -> (row, n-th tile of that row from the left): how labels.json counts columns."""
    rows: dict[int, list[Tile]] = {}
    for tile in tiles:
        rows.setdefault(tile.row, []).append(tile)
    return {t.key: (r, i) for r, row in rows.items() for i, t in enumerate(sorted(row, key=lambda t: t.box.x))}


@pytest.fixture(scope="module")
def results(labels) -> dict[str, FrameResult]:
    """Each image analysed once by a fresh default analyzer, as `fer-overlay analyze` does."""
    out = {}
    for image_id in labels:
        analyzer = Analyzer.from_config(Config(ocr=True), notify=lambda message: None)
        image = cv2.imread(str(MEETINGS / f"{image_id}.png"), cv2.IMREAD_COLOR)
        out[image_id] = analyzer.analyze(Frame(image, 0, 0.0))
    return out


@pytest.fixture(scope="module")
def scores(labels, results) -> dict[str, dict]:
    table = Table(title="real meeting screenshots (../shared/data/meetings)")
    for column in ("image", "tiles", "grid", "faces", "on cam-off", "names", "misread"):
        table.add_column(column, justify="left" if column == "image" else "right")
    out = {}
    for image_id, label in labels.items():
        result = results[image_id]
        place = positions(result.tiles)
        off = {tuple(p) for p in label["camera_off"]}
        ids = [s.id for s in result.students]
        named = [n for n in label["names"] if n]
        read = sum(any(same_name(n, i) for i in ids) for n in named)
        keys = {t.key for t in result.tiles}
        misread = sum(not any(same_name(n, i) for n in named) for i in ids if i not in keys and "#" not in i)
        order = sorted(result.tiles, key=lambda t: place[t.key])   # labels.json's order: row by row
        own = {t.key: label["names"][n] for n, t in enumerate(order)}
        swapped = [s.id for s in result.students if s.tile and s.id not in keys
                   and any(same_name(n, s.id) for n in named) and not same_name(own[s.tile.key] or "", s.id)]
        rows = 1 + max((t.row for t in result.tiles), default=0)
        cols = max((sum(t.row == r for t in result.tiles) for r in range(rows)), default=0)
        on_off = sum(f.tile is not None and place.get(f.tile.key) in off for f in result.faces)
        out[image_id] = dict(tiles=len(result.tiles), grid=[rows, cols], faces=len(result.faces),
                             on_off=on_off, read=read, named=len(named), misread=misread, swapped=swapped)
        s = out[image_id]
        table.add_row(image_id, f"{s['tiles']}/{label['tiles']}", f"{rows}x{cols}",
                      f"{s['faces']}/{label['faces_visible']}", str(on_off), f"{read}/{len(named)}", str(misread))
    Console(width=120).print(table)
    return out


def test_every_tile_is_found(labels, scores):
    wrong = {k: (s["tiles"], labels[k]["tiles"]) for k, s in scores.items() if s["tiles"] != labels[k]["tiles"]}
    assert not wrong, f"tile count (found, labelled): {wrong}"
    assert all(s["grid"] == labels[k]["grid"] for k, s in scores.items())


def test_every_visible_face_is_found(labels, scores):
    short = {k: (s["faces"], labels[k]["faces_visible"]) for k, s in scores.items()
             if s["faces"] < labels[k]["faces_visible"] - 1}
    assert not short, f"faces (found, visible): {short}"
    found = sum(min(s["faces"], labels[k]["faces_visible"]) for k, s in scores.items())
    assert found >= MIN_FACES * sum(label["faces_visible"] for label in labels.values())


def test_no_face_on_camera_off_tiles(scores):
    assert {k: s["on_off"] for k, s in scores.items() if s["on_off"]} == {}


def test_camera_off_tiles_are_shown_as_camera_off(labels, results):
    for image_id, label in labels.items():
        place = positions(results[image_id].tiles)
        status = {place[s.tile.key]: s.status for s in results[image_id].students if s.tile}
        off = {tuple(p) for p in label["camera_off"]}
        assert {p for p, st in status.items() if st == "camera_off"} == off, image_id


def test_names_are_read(scores):
    read = sum(s["read"] for s in scores.values())
    named = sum(s["named"] for s in scores.values())
    misread = sum(s["misread"] for s in scores.values())
    assert read >= MIN_NAMES * named, f"names read {read}/{named}"
    assert misread <= MAX_MISREAD * named, f"{misread} readings match no label"
    # a misread name is a garbled label; another participant's name on a tile is a wrong identity
    assert {k: s["swapped"] for k, s in scores.items() if s["swapped"]} == {}
