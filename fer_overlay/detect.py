"""Faces in a frame: OpenCV's YuNet detector on a downscaled copy.

YuNet costs grow with the pixel count; gallery faces are large enough that half of
1080p finds the same faces at a quarter of the cost. ``max_width`` sets that trade-off.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_overlay.assets import DETECTOR, bundled
from fer_overlay.core import Box, Face
from fer_overlay.errors import ModelError


class FaceDetector:
    """Finds faces with five landmarks; returns them in frame coordinates."""

    def __init__(self, model_path: Path | None = None, *, score_threshold: float = 0.6,
                 max_width: int = 960, max_faces: int = 100):
        path = Path(model_path or bundled(DETECTOR))
        if not path.is_file():
            raise ModelError(f"face detector model not found at {path}; reinstall fer-overlay "
                             "or pass the YuNet .onnx path")
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, max_faces)
        except cv2.error:
            raise ModelError(f"face detector model {path} is corrupt or not a YuNet ONNX file; "
                             "reinstall fer-overlay to restore it") from None
        self.max_width = max_width
        self._input_size: tuple[int, int] | None = None

    def detect(self, image: np.ndarray) -> tuple[Face, ...]:
        """Faces in a BGR image, sorted top-to-bottom then left-to-right."""
        height, width = image.shape[:2]
        scale = min(1.0, self.max_width / width)
        small = image if scale == 1.0 else cv2.resize(image, (round(width * scale), round(height * scale)),
                                                      interpolation=cv2.INTER_AREA)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        elif small.shape[2] == 4:
            small = cv2.cvtColor(small, cv2.COLOR_BGRA2BGR)
        size = (small.shape[1], small.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, rows = self._net.detect(small)
        if rows is None:
            return ()
        faces = []
        for coords, score in zip(rows[:, :14] / scale, rows[:, 14]):
            box = Box(*(int(round(v)) for v in coords[:4]))
            landmarks = tuple((float(coords[4 + 2 * i]), float(coords[5 + 2 * i])) for i in range(5))
            faces.append(Face(box=box.clip(width, height), landmarks=landmarks, score=float(score)))
        return tuple(sorted(faces, key=lambda f: (f.box.y // max(f.box.h, 1), f.box.x)))
