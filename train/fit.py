"""Resumable training: one checkpoint per epoch, exact continuation with ``--resume``.

A run lives in one folder: ``config.json``, ``last.keras`` (weights + optimizer state,
written atomically after every epoch), ``best.keras`` (best PublicTest accuracy so far),
``history.jsonl`` (one line per epoch), ``state.json``, ``train.log``, ``epochs/NNN.weights.h5``
(each epoch's weights, for ``python -m train average``) and, with ``--teacher``, ``teacher.npy``
(the teachers' answers for every training face). The learning-rate
schedule is a function of the optimizer's step counter and the augmentation is seeded by
``(seed, epoch, batch)`` and dropout by ``(seed, epoch)``, so stopping and resuming gives the
same run as not stopping.

The same code trains on Keras' JAX backend (``KERAS_BACKEND=jax``), as on a GPU machine that has
JAX but no TensorFlow: there each epoch's batches come from one compiled augmentation function
instead of ``tf.data``, and the checkpoints are the same ``.keras`` files, which load under
TensorFlow for evaluation and export.

Every file is replaced atomically, in the order history, ``last.keras``, ``best.keras``,
state. ``last.keras`` is the commit point: its optimizer step counter says how many epochs
it holds, so a run killed between any two writes resumes after exactly those epochs, with
one history line each (a line past the checkpoint is dropped and its epoch trained again).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import time
from pathlib import Path

import keras
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fer_overlay.classify import other_views
from fer_overlay.core import EMOTIONS
from fer_overlay.preprocess import to_model_input
from train.augment import augment_batch, mixup
from train.config import TrainConfig
from train.data import FerData, load
from train.model import build_model
from train.widen import widen


def targets(data: FerData, config: TrainConfig, teacher: np.ndarray | None = None) -> np.ndarray:
    """One-hot FER2013 labels, or FER+ vote distributions where a row has votes; with ``teacher``
    (one probability row per face), a ``config.teacher_weight`` share of each target is its row."""
    onehot = np.eye(len(EMOTIONS), dtype=np.float32)[data.labels]
    if config.labels == "ferplus":
        if data.votes is None:
            raise ValueError("--labels ferplus needs FER+ votes, which only the npz layout carries")
        has_votes = data.votes.sum(axis=1) > 0
        onehot[has_votes] = data.votes[has_votes]
    if teacher is not None:
        onehot = (1 - config.teacher_weight) * onehot + config.teacher_weight * teacher
    return onehot


def teacher_answers(paths: tuple[str, ...], x: np.ndarray, progress: Progress) -> np.ndarray:
    """Mean probabilities of the models at ``paths`` over the second look's four views of each
    model input (face, mirror, zoomed, zoomed mirror). Distillation (Hinton et al. 2015): one
    network learns what several networks and views answer together, at one network's cost."""
    views = (x, *other_views(x))
    task = progress.add_task("teacher answers", total=len(paths) * len(views), info="")
    total = np.zeros((len(x), len(EMOTIONS)), np.float64)
    for path in paths:
        model = keras.models.load_model(path, compile=False)
        for view in views:
            total += model.predict(view, batch_size=256, verbose=0)
            progress.update(task, advance=1, info=Path(path).name)
    progress.remove_task(task)
    return (total / (len(paths) * len(views))).astype(np.float32)


def _teacher(config: TrainConfig, x: np.ndarray, path: Path, progress: Progress) -> np.ndarray:
    """The teachers' answers, computed once per run and kept in ``teacher.npy`` (numbers only)."""
    if path.exists():
        answers = np.load(path)
        if answers.shape == (len(x), len(EMOTIONS)):
            return answers
    answers = teacher_answers(config.teacher, x, progress)
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, answers)
    os.replace(tmp, path)
    return answers


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    total = max(config.epochs * steps_per_epoch, 1)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 100, decay_steps=total - warmup,
        warmup_target=config.learning_rate, warmup_steps=warmup, alpha=0.01)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


def epoch_dataset(pixels, y, config: TrainConfig, epoch: int):
    """The shuffled, augmented batches of one epoch, identical for the same (seed, epoch): a
    ``tf.data.Dataset`` under TensorFlow, a generator of on-device batches under JAX."""
    order = np.random.default_rng([config.seed, epoch]).permutation(int(pixels.shape[0]))
    if keras.backend.backend() == "jax":
        return _jax_batches(pixels, y, config, epoch, order)
    import tensorflow as tf
    seed = tf.constant(config.seed, tf.int64)

    def load_batch(index: tf.Tensor, rows: tf.Tensor):
        batch_seed = tf.stack([seed, tf.cast(epoch, tf.int64) * 1_000_000 + index])
        images, labels = augment_batch(tf.gather(pixels, rows), batch_seed, config), tf.gather(y, rows)
        if config.mixup > 0:
            images, labels = mixup(images, labels, tf.random.experimental.stateless_fold_in(batch_seed, 2),
                                   config.mixup)
        return images, labels

    return (tf.data.Dataset.from_tensor_slices(order)
            .batch(config.batch_size, drop_remainder=True)
            .enumerate()
            .map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(2))


@functools.lru_cache(maxsize=4)
def _jax_batch_maker(config: TrainConfig):
    """One compiled function from (pixels, targets, rows, key) to an augmented batch: on a GPU the
    augmentation then costs next to nothing beside the training step."""
    import jax

    def make(pixels, y, rows, key):
        images, labels = augment_batch(pixels[rows], key, config), y[rows]
        if config.mixup > 0:
            images, labels = mixup(images, labels, jax.random.fold_in(key, 2), config.mixup)
        return images, labels

    return jax.jit(make)


def _jax_batches(pixels, y, config: TrainConfig, epoch: int, order: np.ndarray):
    import jax
    make, key = _jax_batch_maker(config), jax.random.key(config.seed)
    for index in range(len(order) // config.batch_size):
        rows = order[index * config.batch_size:(index + 1) * config.batch_size]
        yield make(pixels, y, rows, jax.random.fold_in(key, epoch * 1_000_000 + index))


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


def _seed_dropout(model: keras.Model, config: TrainConfig, epoch: int) -> None:
    """Dropout masks from ``(seed, epoch, layer)``, like the augmentation. Keras does not save where
    a layer's generator stands, so otherwise a resumed run would draw other masks than an unbroken one."""
    generators = [layer.seed_generator for layer in model.layers if hasattr(layer, "seed_generator")]
    for index, generator in enumerate(generators):
        generator.state.assign(keras.ops.convert_to_tensor(
            [config.seed * 1000 + index, epoch * 1_000_000], dtype=generator.state.dtype))


def _atomic_save(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` whole: a kill leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _write_history(path: Path, history: list[dict]) -> None:
    _atomic_write(path, "".join(json.dumps(record) + "\n" for record in history))


def _read_history(path: Path) -> list[dict]:
    """One record per epoch, in order. Older versions appended, so a kill could leave a cut last
    line (skipped) or an epoch twice (the later line is the one the weights continued from)."""
    records: dict[int, dict] = {}
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[record["epoch"]] = record
    return [records[epoch] for epoch in sorted(records)]


def _state_from(history: list[dict], epoch: int, state: dict) -> dict:
    """The state after ``epoch`` epochs, from their history lines (``state`` where a line is missing)."""
    if [h["epoch"] for h in history] != list(range(1, epoch + 1)):
        return {**state, "epoch": epoch}
    best = max(history, key=lambda h: h["val_accuracy"], default=None)   # the first of equals, as in training
    return {"epoch": epoch, "best_accuracy": best["val_accuracy"] if best else 0.0,
            "best_epoch": best["epoch"] if best else 0, "seconds": sum(h["seconds"] for h in history)}


def fit(config: TrainConfig, run_dir: Path, resume: bool = False,
        console: Console | None = None) -> dict:
    """Train (or continue training) into ``run_dir``; returns the final state dict."""
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=run_dir / "train.log", level=logging.INFO,
                        format="%(asctime)s %(message)s", force=True)
    state_path, last_path = run_dir / "state.json", run_dir / "last.keras"
    history_path = run_dir / "history.jsonl"
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
    _atomic_write(state_path, json.dumps(state, indent=2) + "\n")   # a run killed in epoch 1 can resume
    keras.utils.set_random_seed(config.seed)

    data = load(config.data)
    train, val = data.subset("Training"), data.subset("PublicTest")
    if config.limit:
        train, val = train.select(slice(config.limit)), val.select(slice(config.limit))
    x = to_model_input(train.pixels)
    val_x, val_y = to_model_input(val.pixels), np.eye(len(EMOTIONS), dtype=np.float32)[val.labels]
    steps = len(train) // config.batch_size

    history = _read_history(history_path)
    if resume and state["epoch"] > 0 and not last_path.exists():
        raise FileNotFoundError(f"{last_path} is missing: the run cannot continue; start a new one in another folder")
    if resume and last_path.exists():
        model = keras.models.load_model(last_path)
        done = int(model.optimizer.iterations.numpy()) // steps   # the epochs the checkpoint holds
        history = [h for h in history if h["epoch"] <= done]
        previous, state = state, _state_from(history, done, state)
        if state["best_epoch"] == done and previous["best_epoch"] != done:   # killed before best.keras was saved
            _atomic_save(model, run_dir / "best.keras")
        if extended:
            _stretch_schedule(model, config, steps)
        console.print(f"Resuming {run_dir} at epoch {done + 1}/{config.epochs}")
    else:
        history, state = [], {**state, "epoch": 0}
        model = build_model(config)
        if config.init:   # a warm restart: a new schedule from a finished run's weights, widened if asked
            widen(keras.models.load_model(config.init, compile=False), model, seed=config.seed)
        compile_model(model, config, steps)
    _write_history(history_path, history)
    _atomic_write(state_path, json.dumps(state, indent=2) + "\n")
    logging.info("start epoch=%d config=%s machine=%s", state["epoch"], config, platform.processor())

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console) as progress:
        teacher = _teacher(config, x, run_dir / "teacher.npy", progress) if config.teacher else None
        pixels, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(targets(train, config, teacher))
        per_batch = keras.backend.backend() != "jax"
        epochs_task = progress.add_task("epochs", total=config.epochs, completed=state["epoch"], info="")
        for epoch in range(state["epoch"], config.epochs):
            # Per-batch logs would make a GPU wait for every step; there the epoch bar must do.
            batches = progress.add_task(f"epoch {epoch + 1}", total=steps, info="") if per_batch else None
            started = time.time()
            _seed_dropout(model, config, epoch)
            logs = model.fit(epoch_dataset(pixels, y, config, epoch), epochs=1, steps_per_epoch=steps, verbose=0,
                             shuffle=False,   # shuffled by seed
                             callbacks=[_RichBatches(progress, batches)] if per_batch else []).history
            val_loss, val_acc = model.evaluate(val_x, val_y, batch_size=256, verbose=0)
            if per_batch:
                progress.remove_task(batches)
            seconds = time.time() - started
            record = {"epoch": epoch + 1, "loss": logs["loss"][0], "accuracy": logs["accuracy"][0],
                      "val_loss": val_loss, "val_accuracy": val_acc,
                      "learning_rate": float(model.optimizer.learning_rate), "seconds": seconds}
            state.update(epoch=epoch + 1, seconds=state["seconds"] + seconds)
            history.append(record)
            _write_history(history_path, history)
            _atomic_save(model, last_path)   # the commit point (see the module docstring)
            (run_dir / "epochs").mkdir(exist_ok=True)
            model.save_weights(run_dir / "epochs" / f"{epoch + 1:03d}.weights.h5")
            if val_acc > state["best_accuracy"]:
                state.update(best_accuracy=val_acc, best_epoch=epoch + 1)
                _atomic_save(model, run_dir / "best.keras")
            _atomic_write(state_path, json.dumps(state, indent=2) + "\n")
            logging.info("epoch %s", json.dumps(record))
            progress.update(epochs_task, advance=1,
                            info=f"PublicTest {val_acc:.3f} (best {state['best_accuracy']:.3f} @ {state['best_epoch']})")
    return state
