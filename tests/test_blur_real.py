"""Blur mode on real meeting screens: no face survives, found by the detector or not (issue 11 item 1).

The nine labelled Zoom and Meet captures in ``../shared/data/meetings`` (read at run time, never
copied; the blurred pictures live only in memory). Each goes through the real analysis and the
real annotator; then the face detector, at full resolution, a lower score threshold and a second
look per tile, must find nothing, and every labelled video tile (where the faces are, found or
not: masks, profiles, a dark room) must have no detail left, measured apart from the drawn labels.
"""

from __future__ import annotations


import cv2
import pytest

from fer_overlay.config import Config
from fer_overlay.core import Frame
from fer_overlay.detect import FaceDetector
from fer_overlay.draw import Annotator
from fer_overlay.pipeline import Analyzer
from tests.conftest import MEETINGS
from tests.test_draw import NOISE, detail, drawn
from tests.test_faces_real import label_tiles


@pytest.fixture(scope="module")
def models():
    """One face detector and one emotion model for every image (loading them is most of the cost)."""
    analyzer = Analyzer.from_config(Config(ocr=False))
    return analyzer.detector, analyzer.classifier, analyzer.tracker


def test_blur_hides_every_face_on_real_screens(labels, models):
    detector, classifier, tracker = models
    # Keener than the pipeline (0.6, detection at 960 px wide). At 0.3 YuNet calls one smooth
    # tile-sized blob of zoom_kr_13tiles a face (0.39): a pixelated head, nothing of a person.
    strict = FaceDetector(score_threshold=0.5, max_width=4096)
    annotator = Annotator("blur", banner=False)
    sharpest, tiles = 0.0, 0
    for name, label in labels.items():
        image = cv2.imread(str(MEETINGS / f"{name}.png"))
        assert image is not None, name
        result = Analyzer(detector, classifier, type(tracker)()).analyze(Frame(image, 0, 0.0))
        out = annotator.annotate(image, result)

        assert strict.detect(out) == (), name
        again = Analyzer(detector, classifier, type(tracker)()).analyze(Frame(out, 0, 0.0))
        assert again.faces == (), name   # whole frame and the second look per tile

        clear = ~drawn(annotator, image.shape, result)
        camera_off = {tuple(cell) for cell in label["camera_off"]}
        for tile in label_tiles(label):
            if (tile.row, tile.col) in camera_off:
                continue
            b = tile.box.clip(image.shape[1], image.shape[0])
            inner = (slice(b.y + b.h // 8, b.y2 - b.h // 8), slice(b.x + b.w // 8, b.x2 - b.w // 8))
            sharpness = detail(out[inner], clear[inner])
            assert sharpness < NOISE, f"{name} {tile.key}: Laplacian variance {sharpness:.1f}"
            sharpest, tiles = max(sharpest, sharpness), tiles + 1
    assert tiles == sum(label["tiles"] - len(label["camera_off"]) for label in labels.values())
    print(f"\n{tiles} video tiles on {len(labels)} real screens: sharpest after blur {sharpest:.1f} "
          f"(Laplacian variance; one grey level of noise gives 20)")
