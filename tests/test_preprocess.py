import cv2
import numpy as np

from fer_overlay.preprocess import FACE_SIZE, LEFT_EYE, RIGHT_EYE, align_crop, eye_alignment, to_model_input


def _apply(matrix, point):
    return matrix @ np.array([point[0], point[1], 1.0])


def test_eyes_land_on_fer2013_positions_whatever_the_tilt():
    for left, right in [((100, 200), (160, 200)), ((300, 310), (390, 280)), ((10, 50), (22, 58))]:
        matrix = eye_alignment(left, right)
        np.testing.assert_allclose(_apply(matrix, left), np.array(LEFT_EYE) * FACE_SIZE, atol=1e-6)
        np.testing.assert_allclose(_apply(matrix, right), np.array(RIGHT_EYE) * FACE_SIZE, atol=1e-6)


def test_crop_of_upscaled_face_matches_the_original():
    """A 48x48 face pasted 5x larger and cropped at its own eye positions comes back nearly as it was."""
    rng = np.random.default_rng(0)
    face = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (0, 0), 1.2)
    scale, offset = 5.0, np.array([300.0, 120.0])
    frame = np.zeros((600, 900), np.uint8)
    big = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    frame[120:120 + big.shape[0], 300:300 + big.shape[1]] = big
    # Where the original's FER2013 eye positions are in the frame (pixel centres shift by 0.5).
    to_frame = lambda p: tuple((np.array(p) * FACE_SIZE + 0.5) * scale - 0.5 + offset)  # noqa: E731
    crop = align_crop(frame, to_frame(LEFT_EYE), to_frame(RIGHT_EYE))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    inner = (slice(4, 44), slice(4, 44))
    error = np.abs(crop[inner].astype(int) - face[inner].astype(int)).mean()
    assert error < 6, error


def test_level_eyes_after_rotation():
    frame = np.zeros((400, 400), np.uint8)
    cv2.circle(frame, (150, 220), 6, 255, -1)   # eye on the image's left
    cv2.circle(frame, (250, 180), 6, 255, -1)   # right eye higher: a tilted head
    crop = align_crop(frame, (150, 220), (250, 180))
    ys, xs = np.nonzero(crop > 128)
    left, right = xs < 24, xs >= 24
    assert abs(ys[left].mean() - ys[right].mean()) < 1.0
    assert abs(ys.mean() - LEFT_EYE[1] * 48) < 1.5


def test_model_input_shape_and_scale():
    x = to_model_input(np.full((3, 48, 48), 200, np.uint8))
    assert x.shape == (3, 48, 48, 1) and x.dtype == np.float32 and x.max() == 200.0
