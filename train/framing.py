"""Measure where FER2013 faces have their eyes, for ``fer_overlay.preprocess``.

Runs YuNet on PublicTest faces (padded and upscaled, since YuNet needs context and
more than 48 pixels) and reports the median eye height and eye distance. The runtime
crops live faces so their eyes land on these positions.
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_overlay.detect import FaceDetector
from train.data import FerData

PAD, SCALE = 24, 6


def measure(data: FerData, limit: int = 1500) -> dict:
    detector = FaceDetector(max_width=10_000)
    heights, distances, found = [], [], 0
    for face in data.pixels[:limit]:
        padded = cv2.copyMakeBorder(face, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
        big = cv2.resize(padded, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
        faces = detector.detect(big)
        if not faces:
            continue
        found += 1
        best = max(faces, key=lambda f: f.score)
        (lx, ly), (rx, ry) = ((x / SCALE - PAD, y / SCALE - PAD) for x, y in best.eyes)
        heights.append((ly + ry) / 2)
        distances.append(np.hypot(rx - lx, ry - ly))
    side = data.pixels.shape[1]
    return {"faces": min(limit, len(data)), "detected": found,
            "eye_height": round(float(np.median(heights)) / side, 4),
            "eye_distance": round(float(np.median(distances)) / side, 4)}


def detectable(face: np.ndarray, detector: FaceDetector) -> bool:
    padded = cv2.copyMakeBorder(face, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    return bool(detector.detect(cv2.resize(padded, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)))


def demo_faces(private: FerData, per_class: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small, class-balanced set of PrivateTest faces YuNet can find, for ``fer-overlay demo``.

    PrivateTest, not Training, so the demo never shows the model a face it learned from.
    """
    detector = FaceDetector(max_width=10_000)
    order = np.random.default_rng(seed).permutation(len(private))
    picked: dict[int, list[int]] = {label: [] for label in range(7)}
    for row in order:
        label = int(private.labels[row])
        if len(picked[label]) < per_class and detectable(private.pixels[row], detector):
            picked[label].append(int(row))
        if all(len(rows) == per_class for rows in picked.values()):
            break
    rows = [row for label in range(7) for row in picked[label]]
    return private.pixels[rows], private.labels[rows]
