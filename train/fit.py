"""Resumable training: one checkpoint per epoch, exact continuation with ``--resume``.

A run lives in one folder: ``config.json``, ``last.keras`` (weights + optimizer state,
written atomically after every epoch), ``best.keras`` (best PublicTest accuracy so far),
``history.jsonl`` (one line per epoch) and ``train.log``. The learning-rate schedule is a
function of the optimizer's step counter and the augmentation is seeded by
``(seed, epoch, batch)``, so stopping and resuming gives the same run as not stopping.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fer_overlay.core import EMOTIONS
from fer_overlay.preprocess import to_model_input
from train.augment import augment_batch
from train.config import TrainConfig
from train.data import FerData, load
from train.model import build_model


def targets(data: FerData, config: TrainConfig) -> np.ndarray:
    """One-hot FER2013 labels, or FER+ vote distributions where a row has votes."""
    onehot = np.eye(len(EMOTIONS), dtype=np.float32)[data.labels]
    if config.labels == "ferplus":
        if data.votes is None:
            raise ValueError("--labels ferplus needs FER+ votes, which only the npz layout carries")
        has_votes = data.votes.sum(axis=1) > 0
        onehot[has_votes] = data.votes[has_votes]
    return onehot


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    total = max(config.epochs * steps_per_epoch, 1)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 100, decay_steps=total - warmup,
        warmup_target=config.learning_rate, warmup_steps=warmup, alpha=0.01)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


def epoch_dataset(pixels: tf.Tensor, y: tf.Tensor, config: TrainConfig, epoch: int) -> tf.data.Dataset:
    """The shuffled, augmented batches of one epoch, identical for the same (seed, epoch)."""
    order = np.random.default_rng([config.seed, epoch]).permutation(int(pixels.shape[0]))
    seed = tf.constant(config.seed, tf.int64)

    def load_batch(index: tf.Tensor, rows: tf.Tensor):
        batch_seed = tf.stack([seed, tf.cast(epoch, tf.int64) * 1_000_000 + index])
        return augment_batch(tf.gather(pixels, rows), batch_seed, config), tf.gather(y, rows)

    return (tf.data.Dataset.from_tensor_slices(order)
            .batch(config.batch_size, drop_remainder=True)
            .enumerate()
            .map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(2))


class _RichBatches(keras.callbacks.Callback):
    def __init__(self, progress: Progress, task):
        super().__init__()
        self.progress, self.task = progress, task

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.progress.update(self.task, advance=1,
                             info=f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}")


def _stretch_schedule(model: keras.Model, config: TrainConfig, steps: int) -> None:
    """Recompile for a longer schedule, keeping the optimizer's step count and moments."""
    old = [v.numpy() for v in model.optimizer.variables]
    compile_model(model, config, steps)
    model.optimizer.build(model.trainable_variables)
    for variable, value in zip(model.optimizer.variables, old):
        variable.assign(value)


def _atomic_save(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def fit(config: TrainConfig, run_dir: Path, resume: bool = False,
        console: Console | None = None) -> dict:
    """Train (or continue training) into ``run_dir``; returns the final state dict."""
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=run_dir / "train.log", level=logging.INFO,
                        format="%(asctime)s %(message)s", force=True)
    state_path, last_path = run_dir / "state.json", run_dir / "last.keras"
    if resume:
        if not state_path.exists():
            raise FileNotFoundError(f"{run_dir} has no run to resume; leave out --resume to start one")
        saved = TrainConfig.load(run_dir / "config.json")
        # Only the epoch count may change on resume (to train longer); the rest is the run's.
        config = saved.replace(epochs=max(config.epochs, saved.epochs))
        extended = config.epochs != saved.epochs
        state = json.loads(state_path.read_text())
    else:
        if state_path.exists():
            raise FileExistsError(f"{run_dir} holds a run already; pass --resume to continue it "
                                  "or choose another --run folder")
        extended = False
        state = {"epoch": 0, "best_accuracy": 0.0, "best_epoch": 0, "seconds": 0.0}
    config.save(run_dir / "config.json")
    keras.utils.set_random_seed(config.seed)

    data = load(config.data)
    train, val = data.subset("Training"), data.subset("PublicTest")
    if config.limit:
        train, val = train.select(slice(config.limit)), val.select(slice(config.limit))
    pixels = tf.constant(to_model_input(train.pixels))
    y = tf.constant(targets(train, config))
    val_x, val_y = to_model_input(val.pixels), np.eye(len(EMOTIONS), dtype=np.float32)[val.labels]
    steps = len(train) // config.batch_size

    if state["epoch"] > 0:
        model = keras.models.load_model(last_path)
        if extended:
            _stretch_schedule(model, config, steps)
        console.print(f"Resuming {run_dir} at epoch {state['epoch'] + 1}/{config.epochs}")
    else:
        model = build_model(config)
        compile_model(model, config, steps)
    logging.info("start epoch=%d config=%s machine=%s", state["epoch"], config, platform.processor())

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console) as progress:
        epochs_task = progress.add_task("epochs", total=config.epochs, completed=state["epoch"], info="")
        for epoch in range(state["epoch"], config.epochs):
            batches = progress.add_task(f"epoch {epoch + 1}", total=steps, info="")
            started = time.time()
            logs = model.fit(epoch_dataset(pixels, y, config, epoch), epochs=1, verbose=0,
                             callbacks=[_RichBatches(progress, batches)]).history
            val_loss, val_acc = model.evaluate(val_x, val_y, batch_size=256, verbose=0)
            progress.remove_task(batches)
            seconds = time.time() - started
            record = {"epoch": epoch + 1, "loss": logs["loss"][0], "accuracy": logs["accuracy"][0],
                      "val_loss": val_loss, "val_accuracy": val_acc,
                      "learning_rate": float(model.optimizer.learning_rate), "seconds": seconds}
            state.update(epoch=epoch + 1, seconds=state["seconds"] + seconds)
            if val_acc > state["best_accuracy"]:
                state.update(best_accuracy=val_acc, best_epoch=epoch + 1)
                _atomic_save(model, run_dir / "best.keras")
            _atomic_save(model, last_path)
            with open(run_dir / "history.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            state_path.write_text(json.dumps(state, indent=2) + "\n")
            logging.info("epoch %s", json.dumps(record))
            progress.update(epochs_task, advance=1,
                            info=f"PublicTest {val_acc:.3f} (best {state['best_accuracy']:.3f} @ {state['best_epoch']})")
    return state
