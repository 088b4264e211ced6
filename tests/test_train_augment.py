"""Training augmentations: seeded (a resumed run sees what an unbroken one would), and doing what they say."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from train.augment import LOWRES_SIZES, area_matrix, augment_batch, bilinear_matrix, jpeg, mixup  # noqa: E402
from train.config import TrainConfig  # noqa: E402

SEED = tf.constant([1337, 42], tf.int64)


def faces(count: int = 32) -> tf.Tensor:
    """Sharp synthetic faces: a checkerboard (strong edges) under a left-to-right light gradient."""
    y, x = np.mgrid[:48, :48]
    board = ((x // 4 + y // 4) % 2) * 120.0 + x * 2.0 + 40.0
    return tf.constant(np.repeat(board[None, ..., None], count, axis=0), tf.float32)


def sharpness(images: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(images[..., 0], axis=2)).mean(axis=(1, 2))


@pytest.mark.parametrize("setting", ["webcam", "lowres"])
def test_meeting_looks_soften_some_faces_and_leave_the_others_and_other_runs_alone(setting):
    """``webcam``: blur, exposure, noise; ``lowres``: the face shrunk to a small gallery's size and
    enlarged back. Either softens the 4-px checkerboard's edges on about half the faces."""
    plain = TrainConfig(flip=False, rotate_deg=0, scale=0, shift=0, erase_prob=0, brightness=0)
    base = augment_batch(faces(), SEED, plain).numpy()
    looked = augment_batch(faces(), SEED, plain.replace(**{setting: 0.5})).numpy()
    assert np.array_equal(looked, augment_batch(faces(), SEED, plain.replace(**{setting: 0.5})).numpy())   # seeded
    changed = np.abs(looked - base).max(axis=(1, 2, 3)) > 0
    assert 6 <= changed.sum() <= 26                                    # about half of 32
    assert (sharpness(looked)[changed] < 0.9 * sharpness(base)[changed]).all()   # softened
    assert looked.min() >= 0 and looked.max() <= 255
    if setting == "lowres":   # area averaging keeps the light; only the detail goes
        assert np.allclose(looked.mean(axis=(1, 2, 3)), base.mean(axis=(1, 2, 3)), atol=3)
    # Its draws are seeded apart: a run without it keeps its augmentations exactly.
    usual = TrainConfig()
    assert np.array_equal(augment_batch(faces(), SEED, usual).numpy(),
                          augment_batch(faces(), SEED, usual.replace(**{setting: 0.0})).numpy())


def test_jpeg_compresses_about_half_the_faces_and_leaves_other_runs_alone():
    """``--jpeg``: a codec's blocks and ringing on about half the faces (ringing sharpens the
    checkerboard's edges rather than softening them), and no change to a run without it."""
    plain = TrainConfig(flip=False, rotate_deg=0, scale=0, shift=0, erase_prob=0, brightness=0)
    base = augment_batch(faces(), SEED, plain).numpy()
    looked = augment_batch(faces(), SEED, plain.replace(jpeg=0.5)).numpy()
    assert np.array_equal(looked, augment_batch(faces(), SEED, plain.replace(jpeg=0.5)).numpy())   # seeded
    change = np.abs(looked - base).mean(axis=(1, 2, 3))
    assert 6 <= (change > 0).sum() <= 26                                   # about half of 32
    assert ((change[change > 0] > 1) & (change[change > 0] < 25)).all()    # lossy, yet the same face
    assert looked.min() >= 0 and looked.max() <= 255
    usual = TrainConfig()
    assert np.array_equal(augment_batch(faces(), SEED, usual).numpy(),
                          augment_batch(faces(), SEED, usual.replace(jpeg=0.0)).numpy())


@pytest.mark.parametrize("quality", [25, 50, 85])
@pytest.mark.parametrize("offset", [0, 5])
def test_jpeg_is_opencvs_jpeg_on_real_faces(quality, offset, public_faces):
    """``jpeg`` is JPEG written as matrices (both Keras backends run it). On real faces it must
    give what libjpeg through ``cv2.imencode`` gives for the face mirrored out to whole blocks at
    that grid offset, up to the float DCT's rounding (libjpeg's is integer): far below what the
    compression itself changes."""
    import cv2
    pixels = public_faces[0][:32]
    count, pad = len(pixels), (offset, 8 - offset)
    mine = jpeg(tf.constant(pixels[..., None], tf.float32), tf.fill([count], float(quality)),
                tf.fill([count], offset), tf.fill([count], offset)).numpy()[..., 0]
    theirs = []
    for face in pixels:
        tiled = np.pad(face, (pad, pad), mode="reflect")
        encoded = cv2.imencode(".jpg", tiled, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        theirs.append(cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)[offset:offset + 48, offset:offset + 48])
    theirs = np.array(theirs, np.float32)
    lost = np.abs(theirs - pixels).mean()
    assert lost > 2.5                                                       # the compression is real
    assert np.abs(mine - theirs).mean() < min(0.35, lost / 10)


def test_mixup_blends_faces_and_their_targets_alike():
    """Face k shows grey level k and is of class k: after mixup, each face's grey level must equal
    its target's mean class, so the picture and the label were blended by the same weight."""
    images = tf.constant(np.arange(7, dtype=np.float32)[:, None, None, None] * np.ones((7, 48, 48, 1)), tf.float32)
    labels = tf.one_hot(np.arange(7), 7)
    mixed, targets = (t.numpy() for t in mixup(images, labels, SEED, 0.4))
    assert np.allclose(targets.sum(axis=1), 1.0) and (targets >= 0).all()
    assert np.allclose(mixed, mixed[:, :1, :1, :])   # each face blended as a whole
    assert np.allclose(mixed[:, 0, 0, 0], targets @ np.arange(7), atol=1e-3)
    assert (targets.max(axis=1) < 0.999).sum() >= 3   # most faces really are mixtures
    again = mixup(images, labels, SEED, 0.4)[1].numpy()
    assert np.array_equal(targets, again)   # seeded: a resumed run mixes the same pairs


@pytest.mark.parametrize("small", LOWRES_SIZES)
def test_lowres_resampling_matrices_are_tensorflows_area_and_bilinear_resize(small, public_faces):
    """``_lowres`` resamples by matrices so that JAX (whose resize has no "area") runs it too; on real
    faces they must give what ``tf.image.resize`` gives, to float rounding."""
    from fer_overlay.preprocess import to_model_input
    images = tf.constant(to_model_input(public_faces[0][:16]))
    shrunk = tf.image.resize(images, (small, small), method="area").numpy()
    mine = np.einsum("ij,bjkc,lk->bilc", area_matrix(48, small), images.numpy(), area_matrix(48, small))
    np.testing.assert_allclose(mine, shrunk, atol=2e-3)
    grown = tf.image.resize(shrunk, (48, 48), method="bilinear").numpy()
    mine = np.einsum("ij,bjkc,lk->bilc", bilinear_matrix(small, 48), shrunk, bilinear_matrix(small, 48))
    np.testing.assert_allclose(mine, grown, atol=2e-3)
