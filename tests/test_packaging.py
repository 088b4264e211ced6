"""`pip install .` users get the trained model: models/ ships inside the wheel."""

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_wheel_carries_the_models(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("fer_overlay-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in ("emotion_cnn_dynamic.tflite", "emotion_cnn.tflite", "emotion_cnn.keras",
                  "face_detection_yunet_2023mar.onnx", "LICENSE.yunet", "demo_faces.npz", "metrics.json"):
        assert f"fer_overlay/models/{model}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fer-overlay = fer_overlay.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
