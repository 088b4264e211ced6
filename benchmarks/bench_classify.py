"""What the emotion model costs per face, for one or more model files in one run.

    python benchmarks/bench_classify.py [MODEL ...] [--rounds 5] [--data ../shared/data/fer2013.npz]

Each model classifies every FER2013 PublicTest face (3589) through ``EmotionClassifier.load(path)
.predict`` with the runtime's defaults, in batches of 25 (a 5x5 gallery), so the second look costs
what it costs on real faces: a model that is unsure more often pays for more second looks. The
models take turns, round after round, so a machine busy with something else slows them alike;
the figure is the median round. Default models: the bundled runtime model. PublicTest, not
PrivateTest: a benchmark run on candidate models must not turn the reported split into a selection one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fer_overlay.assets import bundled
from fer_overlay.classify import CLASSIFIER_DYNAMIC, EmotionClassifier

GALLERY = 25   # faces classified in one call, as in a 5x5 gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", default="../shared/data/fer2013.npz")
    args = parser.parse_args()
    models = args.models or [bundled(CLASSIFIER_DYNAMIC)]

    with np.load(args.data) as data:
        public = data["usage"] == 1
        faces, labels = data["pixels"][public], data["emotion"][public]
    batches = [faces[i:i + GALLERY] for i in range(0, len(faces), GALLERY)]
    classifiers = {path: EmotionClassifier.load(path) for path in models}
    timings: dict[Path, list[float]] = {path: [] for path in models}
    for _ in range(args.rounds):
        for path, classifier in classifiers.items():
            started = time.perf_counter()
            for batch in batches:
                classifier.predict(batch)
            timings[path].append((time.perf_counter() - started) / len(faces) * 1000)

    table = Table(title=f"PublicTest ({len(faces)} faces, batches of {GALLERY}), median of {args.rounds} rounds")
    for column in ("model", "MB", "ms per face", "second looks", "accuracy"):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for path, classifier in classifiers.items():
        plain = EmotionClassifier.load(path, flip_average=False).predict(faces)
        unsure = float((plain.max(axis=1) < classifier.second_look_below).mean())
        accuracy = float((classifier.predict(faces).argmax(axis=1) == labels).mean())
        table.add_row(str(path), f"{path.stat().st_size / 1e6:.2f}", f"{statistics.median(timings[path]):.3f}",
                      f"{unsure:.1%}", f"{accuracy:.2%}")
    Console().print(table)


if __name__ == "__main__":
    main()
