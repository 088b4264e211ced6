"""Camera-off tiles: what a meeting app draws in a tile when the participant's video is off.

Zoom fills the tile with flat dark grey and writes the name, or initials in a coloured circle,
in the middle; Meet and Teams draw initials or the participant's profile photo in a small
circle on flat colour, the name label below. Video, even of a plain wall, has sensor noise,
light gradients and content reaching the tile's edges. So a tile is camera-off when one flat
colour covers most of it and all of its rim above the label strip: whatever is not flat is a
centred name, avatar or photo. A face found there is that photo, never a live face.

"Flat" allows a few grey levels: captures that went through a video or JPEG encoder smear the
app's one colour (on a real Meet capture only half of a camera-off tile's pixels share one
exact grey). The rim is what tells a crushed-black dark room (flat share 0.78 on the dev set,
but with content reaching its sides) or a pillarboxed portrait video (bars of tile colour,
video reaching the top) from a camera-off tile.
"""

from __future__ import annotations

import numpy as np

from fer_overlay.core import Box, Tile
from fer_overlay.preprocess import to_gray

FLAT_TOLERANCE = 6    # grey levels around the tile's commonest level that still count as its flat colour
FLAT_SHARE = 0.6      # share of the tile that is flat (dev set: camera-off >= 0.73; video up to 0.78)
RIM_SHARE = 0.95      # share of the rim that is flat (camera-off >= 0.98; video up to 0.90)
INSET = 0.05          # share of the tile's short side skipped at its edges: borders, round corners
RIM = 0.08            # rim thickness, share of the short side (a Meet photo starts ~12% from the top)
RIM_DEPTH = 0.75      # the rim's sides stop here, share of the height: the name label is below
SAMPLE_WIDTH = 120    # px; larger tiles are sampled every n-th pixel down to about this width


def is_camera_off(image: np.ndarray, tile: Tile) -> bool:
    """Whether ``tile`` of a BGR or gray frame shows the app's camera-off picture, not video.

    A tile covering the whole frame is no app's tile (a webcam, a video file, a screen where no
    gallery was found), so never camera-off: a mostly empty desktop must not hide a face.
    """
    box = tile.box.clip(image.shape[1], image.shape[0])
    if box == Box(0, 0, image.shape[1], image.shape[0]):
        return False
    step = max(1, box.w // SAMPLE_WIDTH)
    gray = to_gray(image[box.y:box.y2:step, box.x:box.x2:step])
    height, width = gray.shape
    inset = round(INSET * min(height, width))
    gray = gray[inset:height - inset, inset:width - inset]
    height, width = gray.shape
    if gray.size == 0:
        return False
    counts = np.bincount(gray.ravel(), minlength=256)
    level = int(np.convolve(counts, np.ones(2 * FLAT_TOLERANCE + 1), "same").argmax())
    flat = np.abs(gray.astype(np.int16) - level) <= FLAT_TOLERANCE
    rim, depth = max(round(RIM * min(height, width)), 1), round(RIM_DEPTH * height)
    rim_share = (flat[:rim].sum() + flat[:depth, :rim].sum() + flat[:depth, -rim:].sum()) / (
        rim * width + 2 * rim * depth)
    return float(flat.mean()) >= FLAT_SHARE and float(rim_share) >= RIM_SHARE
