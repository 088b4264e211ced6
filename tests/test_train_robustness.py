"""PublicTest at meeting face sizes: the degradation does what it says, and real faces are small."""

import numpy as np

from tests.conftest import MEETINGS
from train.robustness import degrade, meeting_sides


def detail(faces: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: edges and texture."""
    return float(np.abs(np.diff(faces.astype(np.float64), axis=2)).mean())


def test_a_face_shown_at_48_px_is_unchanged_and_smaller_ones_lose_detail_step_by_step(public_faces):
    faces = public_faces[0][:200]
    assert np.array_equal(degrade(faces, 48), faces)
    # Shown larger and read back, a face is nearly itself (area averaging undoes the enlargement).
    assert np.abs(degrade(faces, 96).astype(int) - faces).mean() < 1.5
    details = [detail(degrade(faces, side)) for side in (40, 32, 24, 16)]
    assert details == sorted(details, reverse=True) and details[-1] < 0.6 * detail(faces)
    # Still the same face: the mean light barely moves.
    assert abs(degrade(faces, 16).mean() - faces.mean()) < 2


def test_jpeg_harms_more_as_the_quality_falls_and_less_on_a_bigger_face(public_faces):
    faces = public_faces[0][:200]
    error = {(side, q): np.abs(degrade(faces, side, q).astype(int) - faces).mean() for side in (48, 96) for q in (90, 50)}
    assert 0 < error[48, 90] < error[48, 50]
    assert error[96, 50] < error[48, 50]


def test_faces_on_the_real_captures_are_measured_as_big_as_their_tiles_allow(labels):
    """Not circular: the sides come from YuNet's eyes through the product's own grid and face
    stages; the labels only say how many faces each capture shows and how big its tiles are."""
    sides = meeting_sides(MEETINGS)
    assert sum(map(len, sides.values())) >= 0.95 * sum(label["faces_visible"] for label in labels.values())
    tile_height = {name: label["gallery_box"][3] / label["grid"][0] for name, label in labels.items()}
    median = {name: float(np.median(found)) for name, found in sides.items()}
    assert all(10 < median[name] < tile_height[name] for name in labels)
    # Bigger tiles, bigger faces: the captures ranked by either agree (Spearman's rho).
    rank = lambda values: np.argsort(np.argsort(values))  # noqa: E731
    names = sorted(labels)
    rho = np.corrcoef(rank([median[n] for n in names]), rank([tile_height[n] for n in names]))[0, 1]
    assert rho > 0.8
    assert np.median(sides["zoom_promo_7x7"]) < 32   # a 7x7 gallery in a 640x400 capture: small faces
