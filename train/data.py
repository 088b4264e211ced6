"""FER2013 in the three layouts users have: the project's npz, Kaggle's csv, image folders.

All loaders return the same ``FerData``: uint8 faces ``(N, 48, 48)``, labels in FER2013
order, and the split each row belongs to. Malformed rows or files raise ``DataError``
naming the row or file, or are skipped and counted when ``skip_bad`` is set.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_overlay.core import EMOTIONS
from fer_overlay.preprocess import FACE_SIZE

SPLITS = ("Training", "PublicTest", "PrivateTest")
# FER+ columns -> FER2013 classes; contempt, unknown and not-a-face have no FER2013 class.
_FERPLUS_TO_FER = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                   "sadness": "sad", "surprise": "surprise", "neutral": "neutral"}
# Folder layouts name the held-out split "test"; it plays the PublicTest role for selection.
_FOLDER_SPLITS = {"train": "Training", "test": "PublicTest", "val": "PublicTest",
                  "validation": "PublicTest", "privatetest": "PrivateTest"}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class DataError(ValueError):
    """A data file or row that cannot be read; the message names it."""


@dataclass(frozen=True)
class FerData:
    pixels: np.ndarray          # (N, 48, 48) uint8
    labels: np.ndarray          # (N,) int64, index into EMOTIONS
    split: np.ndarray           # (N,) int8, index into SPLITS
    votes: np.ndarray | None    # (N, 7) float32 FER+ label distribution, rows sum to 1 or 0
    skipped: int = 0

    def subset(self, split_name: str) -> "FerData":
        return self.select(self.split == SPLITS.index(split_name))

    def select(self, rows) -> "FerData":
        """The rows picked by a mask, index array or slice, every field kept in step."""
        return FerData(self.pixels[rows], self.labels[rows], self.split[rows],
                       None if self.votes is None else self.votes[rows])

    def __len__(self) -> int:
        return len(self.labels)


def load(path: str | Path, skip_bad: bool = False) -> FerData:
    """Load FER2013 from an ``.npz``, a Kaggle ``.csv`` or a folder of class folders."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return load_folders(path, skip_bad)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".csv":
        return load_csv(path, skip_bad)
    raise DataError(f"{path}: unknown layout; give a .npz, a .csv or a folder with train/<emotion>/ images")


def load_npz(path: Path) -> FerData:
    try:
        raw = np.load(path, allow_pickle=False)
        pixels, labels, usage = raw["pixels"], raw["emotion"], raw["usage"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a FER2013 npz ({exc})") from None
    if tuple(str(e) for e in raw["emotions"]) != EMOTIONS:
        raise DataError(f"{path}: emotion order {list(raw['emotions'])} differs from {list(EMOTIONS)}")
    votes = None
    if "ferplus_votes" in raw:
        votes = ferplus_distribution(raw["ferplus_votes"], [str(c) for c in raw["ferplus_classes"]])
    return FerData(pixels.astype(np.uint8), labels.astype(np.int64), usage.astype(np.int8), votes)


def ferplus_distribution(votes: np.ndarray, classes: list[str]) -> np.ndarray:
    """FER+ vote counts -> per-row distribution over the 7 FER2013 classes (zeros if no vote)."""
    out = np.zeros((len(votes), len(EMOTIONS)), np.float32)
    for column, name in enumerate(classes):
        if name in _FERPLUS_TO_FER:
            out[:, EMOTIONS.index(_FERPLUS_TO_FER[name])] = votes[:, column]
    total = out.sum(axis=1, keepdims=True)
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


def load_csv(path: Path, skip_bad: bool = False) -> FerData:
    """Kaggle's ``fer2013.csv``: columns ``emotion,pixels,Usage`` (Usage optional)."""
    pixels, labels, split, skipped = [], [], [], 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected emotion,pixels,Usage")
        for row_number, row in enumerate(reader, start=2):   # line 1 is the header
            try:
                label = int(row["emotion"])
                if not 0 <= label < len(EMOTIONS):
                    raise ValueError(f"emotion {label} not in 0..{len(EMOTIONS) - 1}")
                values = np.array(row["pixels"].split(), dtype=np.int64)
                if values.size != FACE_SIZE * FACE_SIZE or values.min() < 0 or values.max() > 255:
                    raise ValueError(f"{values.size} pixel values, expected {FACE_SIZE * FACE_SIZE} in 0..255")
                usage = row.get("Usage") or "Training"
                if usage not in SPLITS:
                    raise ValueError(f"Usage {usage!r} not one of {', '.join(SPLITS)}")
            except (ValueError, TypeError, AttributeError) as exc:
                if skip_bad:
                    skipped += 1
                    continue
                raise DataError(f"{path}: line {row_number}: {exc} (use --skip-bad to skip such rows)") from None
            pixels.append(values.reshape(FACE_SIZE, FACE_SIZE))
            labels.append(label)
            split.append(SPLITS.index(usage))
    if not labels:
        raise DataError(f"{path}: no usable rows")
    return FerData(np.array(pixels, np.uint8), np.array(labels, np.int64), np.array(split, np.int8),
                   None, skipped)


def load_folders(root: Path, skip_bad: bool = False) -> FerData:
    """Image folders ``<split>/<emotion>/*.jpg`` (split: train, test, val, privatetest)."""
    pixels, labels, split, skipped = [], [], [], 0
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name.lower() in _FOLDER_SPLITS]
    if not split_dirs:
        raise DataError(f"{root}: no train/ or test/ folder inside")
    for split_dir in split_dirs:
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            name = class_dir.name.lower()
            if name not in EMOTIONS:
                raise DataError(f"{class_dir}: folder name is not one of {', '.join(EMOTIONS)}")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    if skip_bad:
                        skipped += 1
                        continue
                    raise DataError(f"{file}: not a readable image (use --skip-bad to skip such files)")
                if image.shape != (FACE_SIZE, FACE_SIZE):
                    image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
                pixels.append(image)
                labels.append(EMOTIONS.index(name))
                split.append(SPLITS.index(_FOLDER_SPLITS[split_dir.name.lower()]))
    if not labels:
        raise DataError(f"{root}: no images found under <split>/<emotion>/")
    return FerData(np.array(pixels, np.uint8), np.array(labels, np.int64), np.array(split, np.int8),
                   None, skipped)
