"""The gallery grid on the real meeting screenshots in ``../shared/data/meetings``, against their labels.

Each image as grabbed (desktop, window or cropped region), cropped to just its gallery, and
pasted into a bigger desktop (a window title bar, a side panel, the OS taskbar) must give the
labelled tile count, grid shape and gallery box. The images are read at run time and never
copied into the repository; the derived ones live in memory only.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from conftest import REPO
from fer_overlay.core import Tile
from fer_overlay.grid import TileFinder, find_tiles
from test_grid import desktop, photo

MEETINGS = REPO.parent / "shared" / "data" / "meetings"
BOX_TOLERANCE = 0.015     # share of the image size the found gallery box may stray from the label's
EDGE_TOLERANCE = 3        # px a tile edge may move when the same gallery is found in another capture


def labels() -> dict:
    if not (MEETINGS / "labels.json").exists():
        return {}
    return json.loads((MEETINGS / "labels.json").read_text())


LABELS = labels()
NAMES = sorted(LABELS) or ["absent"]


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    if not LABELS:
        pytest.skip(f"real meeting screenshots not found at {MEETINGS} "
                    "(only developers' and CI machines have ../shared)")
    return {name: cv2.imread(str(MEETINGS / f"{name}.png"), cv2.IMREAD_COLOR) for name in LABELS}


def shape(tiles: tuple[Tile, ...]) -> list[int]:
    return [max(t.row for t in tiles) + 1, max(t.col for t in tiles) + 1]


def bounds(tiles: tuple[Tile, ...]) -> np.ndarray:
    return np.array([min(t.box.x for t in tiles), min(t.box.y for t in tiles),
                     max(t.box.x2 for t in tiles), max(t.box.y2 for t in tiles)])


def timed(image: np.ndarray) -> tuple[tuple[Tile, ...], float]:
    """The tiles and the best of three run times in ms."""
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        tiles = find_tiles(image)
        best = min(best, (time.perf_counter() - start) * 1000)
    return tiles, best


@pytest.fixture(scope="module")
def found(images) -> dict[str, tuple[tuple[Tile, ...], float]]:
    """find_tiles on every image, with a per-image table printed once."""
    results = {name: timed(image) for name, image in images.items()}
    print(f"\n{'image':22} {'size':>10} {'tiles':>7} {'grid':>9} {'box err':>8} {'ms':>6}")
    for name, (tiles, ms) in results.items():
        label = LABELS[name]
        x, y, w, h = label["gallery_box"]
        error = int(np.abs(bounds(tiles) - [x, y, x + w, y + h]).max())
        grid = "x".join(map(str, shape(tiles)))
        print(f"{name:22} {'x'.join(map(str, label['size'])):>10} {len(tiles):>3}/{label['tiles']:<3} "
              f"{grid:>5}/{'x'.join(map(str, label['grid']))} {error:>5} px {ms:6.1f}")
    return results


@pytest.mark.parametrize("name", NAMES)
def test_real_gallery_is_found_as_labelled(name, found):
    tiles, _ = found[name]
    label = LABELS[name]
    x, y, w, h = label["gallery_box"]
    assert len(tiles) == label["tiles"]
    assert shape(tiles) == label["grid"]
    assert np.abs(bounds(tiles) - [x, y, x + w, y + h]).max() <= BOX_TOLERANCE * max(label["size"])
    assert len({(t.row, t.col) for t in tiles}) == len(tiles)
    assert all(a.box.intersection(b.box) == 0 for i, a in enumerate(tiles) for b in tiles[i + 1:])


@pytest.mark.parametrize("name", NAMES)
def test_tile_finder_watches_a_real_gallery(name, images):
    """The stream path gives the same tiles, and an unchanged frame costs no second detection."""
    finder = TileFinder(refresh=60)
    image = images[name]
    assert finder(image, 0.0) == find_tiles(image)
    assert finder(image.copy(), 1.0) == find_tiles(image) and finder.detections == 1


BLURRED_GAPS = pytest.mark.xfail(strict=True, reason="a downscaled picture: its 1 px gaps are blurred into the "
                                  "tiles, so cut at the tiles no flat background level is left to find them by")


@pytest.mark.parametrize("name", [pytest.param(n, marks=BLURRED_GAPS) if n == "zoom_ipad_promo_2x2" else n
                                  for n in NAMES])
def test_region_cropped_to_the_gallery(name, images):
    """A teacher's --region drawn tightly round the tiles: no margin, tiles touch the frame's edge."""
    x, y, w, h = LABELS[name]["gallery_box"]
    tiles = find_tiles(images[name][y:y + h, x:x + w])
    alone = find_tiles(images[name])
    assert [(t.row, t.col) for t in tiles] == [(t.row, t.col) for t in alone]
    assert len(tiles) == LABELS[name]["tiles"]
    edges = np.array([(t.box.x + x, t.box.y + y, t.box.x2 + x, t.box.y2 + y) for t in tiles])
    assert np.abs(edges - [(t.box.x, t.box.y, t.box.x2, t.box.y2) for t in alone]).max() <= EDGE_TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_whole_monitor_capture(name, images):
    """The same gallery in a whole-monitor capture: found in place, the desktop's chrome left out."""
    screen, (dx, dy) = desktop(images[name])
    tiles = find_tiles(screen)
    assert len(tiles) == LABELS[name]["tiles"]
    assert shape(tiles) == LABELS[name]["grid"]
    alone = find_tiles(images[name])
    assert [(t.row, t.col) for t in tiles] == [(t.row, t.col) for t in alone]
    edges = np.array([(t.box.x - dx, t.box.y - dy, t.box.x2 - dx, t.box.y2 - dy) for t in tiles])
    assert np.abs(edges - [(t.box.x, t.box.y, t.box.x2, t.box.y2) for t in alone]).max() <= EDGE_TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_window_on_a_photo_wallpaper(name, images):
    """A meeting window not maximised on a 2560x1440 monitor: a photo all round it, a taskbar below."""
    image = images[name]
    if image.shape[1] > 2000:                       # HiDPI captures: the window at 60 % on this monitor
        image = cv2.resize(image, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    height, width = image.shape[:2]
    screen = cv2.resize(photo((640, 360)), (2560, 1440))
    screen[-48:] = (48, 36, 32)
    screen[30:60, 120:120 + width] = 235           # the window's title bar
    screen[60:60 + height, 120:120 + width] = image
    alone = find_tiles(image)
    tiles = find_tiles(screen)
    assert [(t.row, t.col) for t in tiles] == [(t.row, t.col) for t in alone]
    assert len(tiles) == LABELS[name]["tiles"]
    edges = np.array([(t.box.x - 120, t.box.y - 60, t.box.x2 - 120, t.box.y2 - 60) for t in tiles])
    assert np.abs(edges - [(t.box.x, t.box.y, t.box.x2, t.box.y2) for t in alone]).max() <= EDGE_TOLERANCE
