"""Figures for the model card: accuracy, per-class scores, FER+ agreement, plots.

Selection happens on PublicTest during training; PrivateTest is read only here, once
per shipped model, as the FER2013 protocol asks.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from fer_overlay.core import EMOTIONS
from train.data import FerData, load


def predict(model, pixels: np.ndarray, flip_average: bool) -> np.ndarray:
    from fer_overlay.preprocess import to_model_input
    x = to_model_input(pixels)
    probs = model.predict(x, batch_size=512, verbose=0)
    if flip_average:
        probs = (probs + model.predict(x[:, :, ::-1], batch_size=512, verbose=0)) / 2
    return probs


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(EMOTIONS), len(EMOTIONS)), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def class_scores(matrix: np.ndarray) -> dict:
    """Per-class precision/recall/F1 and macro-F1 from a confusion matrix (rows = truth)."""
    tp = np.diag(matrix).astype(float)
    precision = np.divide(tp, matrix.sum(axis=0), out=np.zeros_like(tp), where=matrix.sum(axis=0) > 0)
    recall = np.divide(tp, matrix.sum(axis=1), out=np.zeros_like(tp), where=matrix.sum(axis=1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    per_class = {e: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
                     "support": int(s)}
                 for e, p, r, f, s in zip(EMOTIONS, precision, recall, f1, matrix.sum(axis=1))}
    return {"per_class": per_class, "macro_f1": round(float(f1.mean()), 4)}


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """FER+ majority class per row (EMOTIONS index), -1 where no FER2013 class has votes."""
    majority = votes.argmax(axis=1)
    majority[votes.sum(axis=1) == 0] = -1
    return majority


def evaluate(model_path: Path, data_path: str, out_dir: Path, run_dir: Path | None = None) -> dict:
    import keras
    model = keras.models.load_model(model_path, compile=False)
    data = load(data_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"model": model_path.name, "parameters": int(model.count_params()),
                     "evaluated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()}".strip(),
                     "split_sizes": {s: int((data.split == i).sum())
                                     for i, s in enumerate(("Training", "PublicTest", "PrivateTest"))}}
    for split in ("PublicTest", "PrivateTest"):
        part: FerData = data.subset(split)
        for tta in (False, True):
            probs = predict(model, part.pixels, tta)
            predicted = probs.argmax(axis=1)
            key = f"{split}{'_flip' if tta else ''}"
            matrix = confusion(part.labels, predicted)
            metrics[key] = {"accuracy": round(float((predicted == part.labels).mean()), 4),
                            **class_scores(matrix)}
            if part.votes is not None:
                majority = ferplus_majority(part.votes)
                valid = majority >= 0
                metrics[key]["ferplus_majority_accuracy"] = round(float((predicted[valid] == majority[valid]).mean()), 4)
                metrics[key]["ferplus_rows"] = int(valid.sum())
            if split == "PrivateTest" and tta:
                plot_confusion(matrix, out_dir / "confusion_matrix.png", metrics[key]["accuracy"])
                (out_dir / "classification_report.txt").write_text(report_text(metrics[key], split))
    if run_dir is not None:
        config_path = run_dir / "config.json"
        if config_path.exists():
            metrics["config"] = json.loads(config_path.read_text())
        state_path = run_dir / "state.json"
        if state_path.exists():
            state = json.loads(state_path.read_text())
            metrics["training"] = {"epochs": state["epoch"], "best_epoch": state["best_epoch"],
                                   "hours": round(state["seconds"] / 3600, 2)}
            averaged = run_dir / "averaged.json"
            if model_path.name == "averaged.keras" and averaged.exists():
                metrics["training"]["averaged_epochs"] = json.loads(averaged.read_text())["epochs"]
        history = run_dir / "history.jsonl"
        if history.exists():
            _plot_curves([json.loads(line) for line in history.read_text().splitlines()],
                         out_dir / "learning_curves.png")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def report_text(figures: dict, split: str, how: str = "flip-averaged") -> str:
    lines = [f"{split} (FER2013 labels, {how})", f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, s in figures["per_class"].items():
        lines.append(f"{name:<10}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}{s['support']:>10}")
    lines.append(f"accuracy {figures['accuracy']:.4f}   macro-F1 {figures['macro_f1']:.4f}")
    return "\n".join(lines) + "\n"


def plot_confusion(matrix: np.ndarray, path: Path, accuracy: float, how: str = "flip-averaged") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=120)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45)
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (FER2013 label)")
    ax.set_title(f"PrivateTest, {how}\nrow-normalised, accuracy {accuracy:.1%}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    loss_ax.plot(epochs, [h["loss"] for h in history], label="train (augmented)")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="PublicTest")
    loss_ax.set_title("loss")
    acc_ax.plot(epochs, [h["accuracy"] for h in history], label="train (augmented)")
    acc_ax.plot(epochs, [h["val_accuracy"] for h in history], label="PublicTest")
    acc_ax.set_title("accuracy")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
