"""Where the bundled model files live, installed or in a source checkout.

``setup.cfg`` installs the top-level ``models/`` folder as the package
``fer_overlay.models``; in a checkout the folder sits next to the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DETECTOR = "face_detection_yunet_2023mar.onnx"
CLASSIFIER = "emotion_cnn.tflite"
CLASSIFIER_KERAS = "emotion_cnn.keras"
DEMO_FACES = "demo_faces.npz"


def models_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent / "models"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("fer_overlay.models")))


def bundled(name: str) -> Path:
    return models_dir() / name
