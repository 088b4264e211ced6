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


def demo_faces(private: FerData, per_class: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small, class-balanced set of PrivateTest faces that YuNet finds in a demo gallery.

    PrivateTest, not Training, so the demo never shows the model a face it learned from.
    Candidates are pasted into 5x5 galleries at the demo's size and kept where the
    runtime's detector finds them, so the demo shows the pipeline, not detector misses.
    """
    from fer_overlay.demo import DemoSource
    from fer_overlay.gallery import compose_gallery
    detector = FaceDetector()
    order = np.random.default_rng(seed).permutation(len(private))
    picked: dict[int, list[int]] = {label: [] for label in range(7)}
    for start in range(0, len(order) - 25, 25):
        batch = order[start:start + 25]
        found = set(range(25))
        for trial in range(3):   # keep faces found in three different tiles and rooms
            placed = np.roll(np.arange(25), 7 * trial)
            gallery = compose_gallery(list(private.pixels[batch[placed]]), 5, 5, DemoSource.SIZE,
                                      rng_seed=start + trial)
            hits = {int(placed[slot]) for face in detector.detect(gallery.image)
                    for slot, box in enumerate(gallery.face_boxes) if box.contains(face.box.center)}
            found &= hits
        for slot in sorted(found):
            label = int(private.labels[batch[slot]])
            if len(picked[label]) < per_class:
                picked[label].append(int(batch[slot]))
        if all(len(rows) == per_class for rows in picked.values()):
            break
    rows = [row for label in range(7) for row in picked[label]]
    return private.pixels[rows], private.labels[rows]
