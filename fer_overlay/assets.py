"""Where the bundled model files live, installed or in a source checkout.

``setup.cfg`` installs the top-level ``models/`` folder as the package
``fer_overlay.models``; in a checkout the folder sits next to the package.
"""

from __future__ import annotations

from pathlib import Path

DETECTOR = "face_detection_yunet_2023mar.onnx"
CLASSIFIER = "emotion_cnn.tflite"
CLASSIFIER_KERAS = "emotion_cnn.keras"
DEMO_FACES = "demo_faces.npz"


def models_dir() -> Path:
    package = Path(__file__).resolve().parent
    installed = package / "models"
    return installed if installed.is_dir() else package.parent / "models"


def bundled(name: str) -> Path:
    return models_dir() / name
