"""The three FER2013 layouts, built as small fixtures from the real npz."""

import csv

import cv2
import numpy as np
import pytest

from fer_overlay.core import EMOTIONS
from train.data import DataError, load

N = 60


@pytest.fixture(scope="module")
def sample(fer2013):
    rows = np.r_[np.flatnonzero(fer2013["usage"] == 0)[:40], np.flatnonzero(fer2013["usage"] == 1)[:20]]
    return fer2013["pixels"][rows], fer2013["emotion"][rows].astype(int), fer2013["usage"][rows]


def write_csv(path, pixels, labels, usage, bad_row=None):
    names = ("Training", "PublicTest", "PrivateTest")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for i, (p, label, u) in enumerate(zip(pixels, labels, usage)):
            text = " ".join(map(str, p.ravel()))
            if i == bad_row:
                text = text.rsplit(" ", 5)[0]      # five pixels short
            writer.writerow([label, text, names[u]])


def test_npz_layout(fer2013):
    from tests.conftest import FER2013
    data = load(FER2013)
    assert len(data) == 35887 and data.pixels.shape == (35887, 48, 48)
    assert [int((data.split == i).sum()) for i in range(3)] == [28709, 3589, 3589]
    assert data.votes.shape == (35887, 7)
    has = data.votes.sum(axis=1) > 0
    np.testing.assert_allclose(data.votes[has].sum(axis=1), 1.0, atol=1e-5)


def test_csv_layout_round_trips(tmp_path, sample):
    pixels, labels, usage = sample
    write_csv(tmp_path / "fer2013.csv", pixels, labels, usage)
    data = load(tmp_path / "fer2013.csv")
    np.testing.assert_array_equal(data.pixels, pixels)
    np.testing.assert_array_equal(data.labels, labels)
    assert len(data.subset("PublicTest")) == 20


def test_csv_bad_row_is_named_or_skipped(tmp_path, sample):
    pixels, labels, usage = sample
    path = tmp_path / "bad.csv"
    write_csv(path, pixels, labels, usage, bad_row=7)
    with pytest.raises(DataError, match=r"line 9: 2299 pixel values"):
        load(path)
    data = load(path, skip_bad=True)
    assert len(data) == N - 1 and data.skipped == 1


def test_csv_missing_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("label,pixels\n1,2 3\n")
    with pytest.raises(DataError, match="missing column"):
        load(path)


def test_image_folders(tmp_path, sample):
    pixels, labels, usage = sample
    for i, (p, label, u) in enumerate(zip(pixels, labels, usage)):
        folder = tmp_path / ("train" if u == 0 else "test") / EMOTIONS[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), p)
    data = load(tmp_path)
    assert len(data) == N and len(data.subset("Training")) == 40
    assert sorted(map(int, data.labels)) == sorted(map(int, labels))
    broken = tmp_path / "train" / EMOTIONS[0] / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        load(tmp_path)
    assert load(tmp_path, skip_bad=True).skipped == 1


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing.npz")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown layout"):
        load(tmp_path / "x.txt")
