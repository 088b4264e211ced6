"""Weight averaging (SWA, Izmailov et al. 2018): the mean of a run's last epochs' weights.

Averaging the weights the optimizer visited near the end of a schedule lands nearer the middle of
a wide minimum than any one of them, which tends to generalise better at no cost per face: the
result is one network of the same shape. Batch-norm statistics of averaged weights are not the
average of the statistics, so they are measured again on the training images.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from rich.progress import track

from fer_overlay.preprocess import to_model_input
from train.config import TrainConfig
from train.data import load
from train.fit import epoch_dataset, targets
from train.model import build_model


def average_weights(paths: list[Path], config: TrainConfig) -> keras.Model:
    """A model whose every weight is the mean of that weight in ``paths`` (``.weights.h5`` files)."""
    model, total = build_model(config), None
    for path in paths:
        model.load_weights(path)
        weights = model.get_weights()
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    model.set_weights([t / len(paths) for t in total])
    return model


def recompute_batch_norm(model: keras.Model, batches: tf.data.Dataset, steps: int) -> None:
    """Set every BatchNormalization layer's moving mean and variance to its input's statistics
    over ``batches``, computed in training mode (as the layers saw their inputs while training)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.inputs, [layer.input for layer in norms])
    sums = [np.zeros(layer.moving_mean.shape, np.float64) for layer in norms]
    squares = [np.zeros_like(s) for s in sums]
    count = [0] * len(norms)
    for images, _ in track(batches, total=steps, description="batch-norm statistics"):
        for index, x in enumerate(probe(images, training=True)):
            x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
            sums[index] += x.sum(axis=0)
            squares[index] += (x * x).sum(axis=0)
            count[index] += len(x)
    for layer, total, square, n in zip(norms, sums, squares, count):
        mean = total / n
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(square / n - mean * mean, 0).astype(np.float32))


def average_run(run_dir: Path, first: int, last: int | None = None) -> tuple[Path, float]:
    """Average epochs ``first..last`` of ``run_dir`` into ``<run>/averaged.keras``; returns it and
    its PublicTest accuracy (plain, no flip)."""
    config = TrainConfig.load(run_dir / "config.json")
    available = {int(p.name.split(".")[0]): p for p in (run_dir / "epochs").glob("*.weights.h5")}
    last = last or max(available, default=0)
    paths = [available[epoch] for epoch in sorted(available) if first <= epoch <= last]
    if not paths:
        raise FileNotFoundError(f"{run_dir / 'epochs'} holds no weights for epochs {first}..{last}")
    model = average_weights(paths, config)

    data = load(config.data)
    train, val = data.subset("Training"), data.subset("PublicTest")
    if config.limit:
        train, val = train.select(slice(config.limit)), val.select(slice(config.limit))
    pixels, y = tf.constant(to_model_input(train.pixels)), tf.constant(targets(train, config))
    recompute_batch_norm(model, epoch_dataset(pixels, y, config.replace(mixup=0.0), config.epochs),
                         len(train) // config.batch_size)

    predicted = model.predict(to_model_input(val.pixels), batch_size=256, verbose=0).argmax(axis=1)
    out, accuracy = run_dir / "averaged.keras", float(np.mean(predicted == val.labels))
    model.save(out)
    # Read by `train evaluate`, so the model card can say which epochs the shipped weights average.
    (run_dir / "averaged.json").write_text(json.dumps({"epochs": [first, last], "PublicTest": accuracy}) + "\n")
    return out, accuracy
