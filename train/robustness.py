"""PublicTest as a meeting shows it: faces smaller than FER2013's 48 px, and compressed.

Every FER2013 face is 48 px, so PublicTest cannot show what a 7x7 gallery does to the model:
on the nine real captures in ``../shared/data/meetings`` the face crops span 13-250 px. Here
each PublicTest face is brought to the side a face has on screen (shrunk by area averaging, as
the meeting app scales a video; or enlarged, for JPEG to act at that size), optionally JPEG
compressed there, and brought back to 48 px as ``preprocess.align_crop`` would. The sides of the
real faces are measured live from the captures through the product's own grid and face stages.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from fer_overlay.preprocess import FACE_SIZE, LEFT_EYE, RIGHT_EYE

SIDES = (16, 20, 24, 32, 40, 48, 64, 96)   # px across the face's FER-framed crop on screen
QUALITIES = (None, 75, 50)                 # JPEG quality at that size; None: lossless (a PNG grab)


def degrade(pixels: np.ndarray, side: int, quality: int | None = None) -> np.ndarray:
    """uint8 (N, 48, 48) faces as they reach the network from a screen where each spans ``side`` px."""
    out = np.empty_like(pixels)
    for i, face in enumerate(pixels):
        shown = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA if side < FACE_SIZE else cv2.INTER_CUBIC)
        if quality is not None:
            shown = cv2.imdecode(cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, quality])[1],
                                 cv2.IMREAD_GRAYSCALE)
        out[i] = cv2.resize(shown, (FACE_SIZE, FACE_SIZE),
                            interpolation=cv2.INTER_LINEAR if side < FACE_SIZE else cv2.INTER_AREA)
    return out


def meeting_sides(meetings: Path) -> dict[str, np.ndarray]:
    """Per labelled capture, the crop side of every face found on it: the eye distance over
    FER2013's (0.36 of the crop), as ``align_crop`` frames it. Numbers only; no picture is kept."""
    from fer_overlay.core import Frame
    from fer_overlay.detect import FaceDetector
    from fer_overlay.pipeline import Analyzer
    from fer_overlay.track import Tracker
    detector, sides = FaceDetector(), {}
    for name in sorted(json.loads((meetings / "labels.json").read_text())):
        image = cv2.imread(str(meetings / f"{name}.png"), cv2.IMREAD_COLOR)
        faces = Analyzer(detector, None, Tracker()).analyze(Frame(image, 0, 0.0)).faces
        sides[name] = np.array([np.hypot(*np.subtract(*f.eyes)) / (RIGHT_EYE[0] - LEFT_EYE[0]) for f in faces])
    return sides


def real_sides(meetings: Path | None) -> np.ndarray | None:
    """Every capture's ``meeting_sides`` together, where the captures are (``../shared``), else None."""
    if meetings is None or not (meetings / "labels.json").is_file():
        return None
    return np.concatenate(list(meeting_sides(meetings).values()))


def measure(model: Path, data_path: str, real: np.ndarray | None, console=None) -> dict:
    """Runtime accuracy (``EmotionClassifier.load(model).predict``) on PublicTest at every side
    and JPEG quality, and with each face at the side of a real face (``real``), in turn."""
    from rich.progress import track
    from fer_overlay.classify import EmotionClassifier
    from train.data import load
    public, classifier = load(data_path).subset("PublicTest"), EmotionClassifier.load(model)

    def accuracy(pixels: np.ndarray) -> float:
        return round(float((classifier.predict(pixels).argmax(axis=1) == public.labels).mean()), 4)

    grid = [(side, quality) for quality in QUALITIES for side in SIDES]
    scores = {key: accuracy(degrade(public.pixels, *key))
              for key in track(grid, description="PublicTest at meeting sizes", console=console, transient=True)}
    result = {"split": "PublicTest", "sides": list(SIDES), "jpeg_qualities": list(QUALITIES),
              "accuracy": [[scores[side, quality] for side in SIDES] for quality in QUALITIES]}
    if real is not None:
        # Face i of PublicTest takes the side of real face i (mod their count): their mix, 3589 times.
        assigned = np.round(real[np.arange(len(public.labels)) % len(real)]).astype(int)
        pixels = public.pixels.copy()
        for side in np.unique(assigned):
            pixels[assigned == side] = degrade(public.pixels[assigned == side], int(side))
        result["meetings"] = {"faces": len(real), "median_side": round(float(np.median(real)), 1),
                              "share_under_32": round(float(np.mean(real < 32)), 3),
                              "sides": [round(s, 1) for s in sorted(real.tolist())], "accuracy": accuracy(pixels)}
    return result


def by_side(result: dict, quality: int | None = None) -> dict[int, float]:
    """``measure``'s accuracy at each face side, for one JPEG quality (None: lossless)."""
    return dict(zip(result["sides"], result["accuracy"][result["jpeg_qualities"].index(quality)]))


def plot(result: dict, path: Path) -> None:
    """Accuracy against face size, one line per JPEG quality, over the real faces' sizes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 4.2))
    if "meetings" in result:
        shade = axes.twinx()
        sides = result["meetings"]["sides"]
        shade.hist(sides, bins=np.geomspace(10, 260, 22), color="0.85", zorder=0)
        shade.set_ylabel(f"faces on the {result['meetings']['faces']} real captures' tiles", color="0.45")
        axes.set_zorder(shade.get_zorder() + 1)
        axes.patch.set_visible(False)
    for quality, row in zip(result["jpeg_qualities"], result["accuracy"]):
        axes.plot(result["sides"], [a * 100 for a in row], marker="o",
                  label="lossless" if quality is None else f"JPEG quality {quality}")
    if "meetings" in result:
        axes.axhline(result["meetings"]["accuracy"] * 100, color="0.3", linestyle=":",
                     label=f"lossless, at the real faces' sizes: {result['meetings']['accuracy']:.1%}")
    axes.set_xscale("log")
    axes.set_xticks(result["sides"], [str(s) for s in result["sides"]])
    axes.minorticks_off()
    axes.set_xlabel("face crop side on screen, px (FER2013: 48)")
    axes.set_ylabel(f"{result['split']} accuracy, %")
    axes.set_title("runtime model: accuracy by face size")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def measure_into(folder: Path, data_path: str, meetings: Path | None, console=None) -> dict:
    """Measure the folder's runtime model; keep the figures in its ``metrics.json`` and the plot
    as ``robustness.png``, where the model card (``train/export.py``) reads them."""
    from fer_overlay.classify import CLASSIFIER_DYNAMIC
    from train.export import update_metrics
    result = measure(folder / CLASSIFIER_DYNAMIC, data_path, real_sides(meetings), console)
    update_metrics(folder, {"robustness": result})
    plot(result, folder / "robustness.png")
    return result
