"""Names read on the real meeting screenshots of ../shared/data/meetings (never copied here).

Tiles come from the labels (gallery box, grid, tile count, Zoom's centred / Meet's
left-aligned last row), so this measures the name stage alone, whatever the grid stage finds.
A name counts as read by the issue's rule (within two characters of its tile's label and
difflib ratio >= 0.8); a misread is a reading that matches no label of the image (a wrong identity).
"""

import json
import time

import cv2
import pytest

from fer_overlay.core import Box, Tile
from fer_overlay.names import NameReader
from tests.conftest import MEETINGS, same_name

LANGUAGES = ("kor", "eng")   # as a Korean teacher passes --ocr-lang kor+eng

pytestmark = pytest.mark.skipif(not (MEETINGS / "labels.json").is_file(),
                                reason=f"no real meeting screenshots at {MEETINGS}")


def label_tiles(label: dict) -> list[Tile]:
    """Tile boxes from the labels: equal cells over the gallery box, the last row centred (Zoom)
    or left-aligned (Meet)."""
    x, y, w, h = label["gallery_box"]
    rows, cols = label["grid"]
    cell_w, cell_h = w / cols, h / rows
    tiles = []
    for i in range(label["tiles"]):
        row, col = divmod(i, cols)
        in_row = min(cols, label["tiles"] - row * cols)
        shift = (cols - in_row) * cell_w / 2 if label["app"] == "zoom" else 0
        tiles.append(Tile(row, col, Box(round(x + shift + col * cell_w), round(y + row * cell_h),
                                        round(cell_w), round(cell_h))))
    return tiles


def test_names_on_real_meeting_screenshots():
    reader = NameReader(notify=lambda _: None, languages=LANGUAGES)
    if not reader.available:
        pytest.skip("no OCR engine (rapidocr-onnxruntime or Tesseract) is installed")
    labels = json.loads((MEETINGS / "labels.json").read_text(encoding="utf-8"))
    read = labelled = misread = given = 0
    print(f"\n{'image':24s} {'read':>9s} {'misread':>7s} {'ms':>7s} {'ms/label':>8s}")
    for image_id, label in labels.items():
        if image_id.startswith("_"):
            continue
        image = cv2.imread(str(MEETINGS / f"{image_id}.png"))
        tiles = label_tiles(label)
        reader = NameReader(notify=lambda _: None, languages=LANGUAGES)   # a first read: nothing cached
        start = time.perf_counter()
        names = reader.read(image, tiles)
        ms = (time.perf_counter() - start) * 1000
        calls, ocr = [], reader._ocr
        reader._ocr = lambda pictures: calls.extend(pictures) or ocr(pictures)
        assert reader.read(image, tiles) == names and not calls   # unchanged labels are not read again
        truth = label["names"]
        hits = sum(bool(name and tile.key in names and same_name(name, names[tile.key]))
                   for tile, name in zip(tiles, truth))
        wrong = [text for text in names.values() if not any(name and same_name(name, text) for name in truth)]
        count = sum(name is not None for name in truth)
        print(f"{image_id:24s} {hits:4d}/{count:<4d} {len(wrong):7d} {ms:7.0f} {ms / len(tiles):8.1f}  {wrong}")
        read, labelled, misread, given = read + hits, labelled + count, misread + len(wrong), given + len(names)
    print(f"{'all':24s} {read:4d}/{labelled:<4d} {misread:7d}   ({read / labelled:.1%} read, "
          f"{misread}/{given} readings wrong)")
    # Measured 182/196 (92.9%), 3 of 185 readings wrong (the rule; 7x7 promo 34/48, its
    # 4-5 px labels: "Jack D" for Jack Davis; Korean 46/46). The target is 90%.
    assert read >= 0.9 * labelled
    assert misread <= 0.02 * given
