"""A real gallery reshuffled: one row per participant, and rows follow their names (issue 16).

The clip is made at test time, in memory, from a real screenshot in ../shared/data/meetings:
the tiles the analyzer finds are cut out and dealt to other places between frames, as a
meeting app does when someone joins or leaves. Nothing of the picture is written anywhere.
"""

import re
import sqlite3

import cv2
import numpy as np
import pytest

from fer_overlay.config import Config
from fer_overlay.core import Frame, Tile
from fer_overlay.pipeline import Analyzer
from fer_overlay.record import Recorder
from tests.conftest import MEETINGS

FRAMES_PER_LAYOUT = 2
STEP = 0.5   # seconds between analysed frames
TILE_KEY = re.compile(r"r\d+c\d+( \(\d+\))?")


def dealt(image: np.ndarray, tiles: tuple[Tile, ...], order: list[int]) -> np.ndarray:
    """``image`` with tile ``i`` showing what tile ``order[i]`` showed (resized where sizes differ)."""
    out = image.copy()
    for tile, source in zip(tiles, order):
        b, s = tile.box, tiles[source].box
        out[b.y:b.y2, b.x:b.x2] = cv2.resize(image[s.y:s.y2, s.x:s.x2], (b.w, b.h), interpolation=cv2.INTER_AREA)
    return out


def deal_again(order: list[int], moving: list[int], rng: np.random.Generator) -> list[int]:
    """``order`` with the tiles at ``moving`` positions dealt anew, none left where it was."""
    while True:
        shuffled = [int(i) for i in rng.permutation(moving)]
        if all(a != b for a, b in zip(shuffled, moving)):
            break
    new = list(order)
    for position, source in zip(moving, shuffled):
        new[position] = order[source]
    return new


# zoom_promo_4x4: 16 Latin labels, every tile moves twice. zoom_kr_5x5_pages: Korean labels read
# by Tesseract (slow), camera-off tiles; eight tiles move once. All their labels are read now, so
# some are made unreadable (``hidden``: the tiles whose labels were unread before they were), and
# those move too: they can only be followed by their look.
@pytest.mark.parametrize("name, hidden, reshuffles, moving", [("zoom_promo_4x4", (13,), 2, 16),
                                                               ("zoom_kr_5x5_pages", (1, 4, 12), 1, 8)])
def test_a_reshuffled_real_gallery_keeps_one_row_per_participant_and_rows_follow_names(
        name, hidden, reshuffles, moving, tmp_path):
    path = MEETINGS / f"{name}.png"
    if not path.exists():
        pytest.skip(f"{path} not found (only developers' and CI machines have ../shared)")
    analyzer = Analyzer.from_config(Config(ocr=True), notify=lambda message: None)
    if not analyzer.names.available:
        pytest.skip("no OCR installed (rapidocr-onnxruntime or tesseract)")
    image = cv2.imread(str(path))
    tiles = analyzer.tiles(image, 0.0)
    reader, read = analyzer.names, analyzer.names.read
    labels = read(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), tiles)
    unreadable = {labels[tiles[i].key] for i in hidden}
    reader.read = lambda gray, shown: {k: v for k, v in read(gray, shown).items() if v not in unreadable}
    rng = np.random.default_rng(16)
    seen = []
    with Recorder(tmp_path / "class.db", clock=lambda: 0.0) as recorder:
        def show(order: list[int]) -> None:
            picture = dealt(image, tiles, order)
            for _ in range(FRAMES_PER_LAYOUT):
                result = analyzer.analyze(Frame(picture, len(seen), len(seen) * STEP))
                recorder.add(result)
                seen.append((order, result))

        order = list(range(len(tiles)))
        show(order)
        first = {s.tile.key: s.id for s in seen[-1][1].students}
        ids = [first[t.key] for t in tiles]   # the id each participant got in the original layout
        unread = [i for i, sid in enumerate(ids) if TILE_KEY.fullmatch(sid)]
        named = [i for i in range(len(tiles)) if i not in unread]
        for _ in range(reshuffles):
            chosen = sorted(unread + [int(i) for i in rng.choice(named, moving - len(unread), replace=False)])
            order = deal_again(order, chosen, rng)
            show(order)

    assert len(set(ids)) == len(tiles) and len(named) == len(tiles) - len(hidden)
    for order, result in seen[FRAMES_PER_LAYOUT - 1:]:   # (a label read late is a tile key on the first frame)
        assert [s.status for s in result.students].count("left") == 0
        # Every frame, also the first after each reshuffle: each row sits where its participant is.
        assert {s.tile.key: s.id for s in result.students} == {t.key: ids[o] for t, o in zip(tiles, order)}
    with sqlite3.connect(tmp_path / "class.db") as con:
        assert {row[0] for row in con.execute("SELECT DISTINCT student FROM samples")} == set(ids)
