"""Face crops exactly as the emotion CNN saw them in training.

FER2013 faces are 48x48 grayscale crops, roughly eyebrows-to-chin, with the eyes
level. The runtime must hand the CNN crops with the same framing, otherwise the
accuracy measured on FER2013 does not carry over to screen grabs. This module is
the single place that decides the framing; ``train/`` and the runtime both use it.

The framing constants below were measured on FER2013 itself: YuNet was run on
FER2013 PublicTest faces (upscaled 4x) and the median eye positions were taken
(see ``train/framing.py``, which re-measures them).
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_overlay.core import Box

FACE_SIZE = 48
"""Side of the square grayscale crop the CNN takes."""

# Eye centres in FER2013 48x48 crops, as fractions of the side (x, y): YuNet on 1,500
# PublicTest faces (padded, upscaled 6x) gives a median eye distance of 0.357 and eye
# height 0.382; x is centred because training flips faces. ``python -m train framing``
# re-measures them.
LEFT_EYE = (0.32, 0.382)
RIGHT_EYE = (0.68, 0.382)


def to_model_input(faces: np.ndarray) -> np.ndarray:
    """uint8 faces ``(N, 48, 48)`` -> float32 ``(N, 48, 48, 1)`` in 0..255.

    Scaling to 0..1 happens inside the network, so every caller feeds raw pixels.
    """
    faces = np.asarray(faces)
    if faces.ndim != 3 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"expected faces of shape (N, {FACE_SIZE}, {FACE_SIZE}), got {faces.shape}")
    return faces.astype(np.float32)[..., None]


def to_gray(image: np.ndarray) -> np.ndarray:
    """BGR, BGRA or gray image -> 2-D uint8 gray image."""
    if image.ndim == 2:
        return image
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def eye_alignment(left_eye: tuple[float, float], right_eye: tuple[float, float],
                  size: int = FACE_SIZE) -> np.ndarray:
    """2x3 affine matrix mapping image points so the eyes land where FER2013 has them.

    ``left_eye`` is the eye on the image's left. A similarity transform (rotation,
    uniform scale, shift) keeps the face undistorted while levelling the eyes.
    """
    src = np.array([left_eye, right_eye], dtype=np.float64)
    dst = np.array([LEFT_EYE, RIGHT_EYE], dtype=np.float64) * size
    src_vec, dst_vec = src[1] - src[0], dst[1] - dst[0]
    scale = np.linalg.norm(dst_vec) / max(np.linalg.norm(src_vec), 1e-6)
    angle = np.arctan2(src_vec[1], src_vec[0]) - np.arctan2(dst_vec[1], dst_vec[0])
    cos, sin = scale * np.cos(-angle), scale * np.sin(-angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    shift = dst[0] - rot @ src[0]
    return np.hstack([rot, shift[:, None]])


def align_crop(gray: np.ndarray, left_eye: tuple[float, float], right_eye: tuple[float, float],
               size: int = FACE_SIZE) -> np.ndarray:
    """Cut one face out of a gray frame, eyes level and framed like FER2013."""
    matrix = eye_alignment(left_eye, right_eye, size)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 0.5:
        # Bilinear warping samples 4 pixels per output pixel; shrinking a big face by more
        # than 2x that way aliases. Area-average the face's region to about 2x first.
        gray, left_eye, right_eye = _shrink_region(gray, matrix, left_eye, right_eye, 2 * scale, size)
        matrix = eye_alignment(left_eye, right_eye, size)
    return cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def _shrink_region(gray, matrix, left_eye, right_eye, factor, size):
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64).T
    source = cv2.invertAffineTransform(matrix) @ corners
    x0, y0 = np.maximum(np.floor(source.min(axis=1)) - 2, 0).astype(int)
    x1 = int(min(np.ceil(source[0].max()) + 2, gray.shape[1]))
    y1 = int(min(np.ceil(source[1].max()) + 2, gray.shape[0]))
    if x1 - x0 < 2 or y1 - y0 < 2:   # face region off the frame: nothing to shrink
        return gray, left_eye, right_eye
    region = gray[y0:y1, x0:x1]
    small = cv2.resize(region, (max(round(region.shape[1] * factor), 1), max(round(region.shape[0] * factor), 1)),
                       interpolation=cv2.INTER_AREA)
    fx, fy = small.shape[1] / region.shape[1], small.shape[0] / region.shape[0]
    move = lambda p: ((p[0] - x0) * fx, (p[1] - y0) * fy)  # noqa: E731
    return small, move(left_eye), move(right_eye)


TILE_PICTURE = (16, 9)   # px; what a tile is compared by from frame to frame


def tile_picture(gray: np.ndarray, box: Box) -> np.ndarray:
    """A tiny gray picture of a tile: compares in microseconds, blind to video noise.

    Every n-th pixel first (still 4 per picture pixel): 20x cheaper than averaging them all,
    which matters because it runs for many tiles on every frame.
    """
    box = box.clip(gray.shape[1], gray.shape[0])
    step = max(1, min(box.w // (4 * TILE_PICTURE[0]), box.h // (4 * TILE_PICTURE[1])))
    view = gray[box.y:box.y2:step, box.x:box.x2:step]
    if view.size == 0:
        return np.zeros(TILE_PICTURE[::-1], np.float32)
    return cv2.resize(view, TILE_PICTURE, interpolation=cv2.INTER_AREA).astype(np.float32)
