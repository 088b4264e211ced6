"""Write the model the runtime loads: Keras (reference) and LiteRT/TFLite (fast default).

The TFLite file has a dynamic batch dimension so one call classifies all faces of a
frame. Export checks that both files give the same probabilities and times them.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from fer_overlay.assets import CLASSIFIER, CLASSIFIER_KERAS
from fer_overlay.classify import CLASSIFIER_DYNAMIC
from fer_overlay.core import EMOTIONS
from fer_overlay.preprocess import to_model_input
from train.config import JPEG_QUALITIES, LOWRES_SIZES

TOLERANCE = 1e-4   # max |keras - tflite| probability difference accepted


def fit_temperature(model_path: Path, data_path: str) -> float:
    """The temperature T for which softmax(logits / T) is most likely on PublicTest (Guo et al.
    2017): T > 1 for a network that is surer than it is right, T < 1 for one less sure.

    Distillation's soft targets leave a network unsure (mean top probability 0.63 at 68%
    accuracy for kd30), so more faces fall under the second look's threshold and each costs
    more; the threshold and the labels users see assume a confidence that means what it says.
    """
    import keras
    from train.data import load
    public = load(data_path).subset("PublicTest")
    model = keras.models.load_model(model_path, compile=False)
    logits = np.log(np.clip(model.predict(to_model_input(public.pixels), batch_size=512, verbose=0), 1e-12, 1))
    logits = logits.astype(np.float64)

    def loss(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        top = scaled.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
                             - scaled[np.arange(len(scaled)), public.labels]))

    # The loss is convex in 1/T, so one minimum: a golden-section search over log T in [-4, 4].
    low, high, ratio = -4.0, 4.0, (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        low, high = (low, b) if loss(a) < loss(b) else (a, high)
    return float(np.exp((low + high) / 2))


def export(model_path: Path, out_dir: Path, run_dir: Path | None = None, sample: np.ndarray | None = None,
           temperature: float = 1.0) -> dict:
    """``temperature`` (see ``fit_temperature``) is folded into the last layer's weights, so the
    runtime's files and cost are those of the network alone."""
    import keras
    import tensorflow as tf

    trained = keras.models.load_model(model_path, compile=False)
    # A fresh copy without optimizer state: a third of the size, same predictions.
    model = keras.models.clone_model(trained)
    model.set_weights(trained.get_weights())
    if temperature != 1.0:
        head = model.get_layer("emotion")   # softmax((W x + b) / T): W and b divided by T
        head.set_weights([w / temperature for w in head.get_weights()])
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_path, tflite_path = out_dir / CLASSIFIER_KERAS, out_dir / CLASSIFIER
    model.save(keras_path)
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        tflite_path.write_bytes(converter.convert())
        # The runtime's model: weights in int8 (dynamic range), 4x smaller and ~3.5x less CPU per
        # face; PrivateTest within 0.1 point of the float file (tests/test_classify.py checks 0.3).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        (out_dir / CLASSIFIER_DYNAMIC).write_bytes(converter.convert())
    if run_dir is not None and (run_dir / "config.json").exists():
        shutil.copy(run_dir / "config.json", out_dir / "emotion_cnn.config.json")

    from fer_overlay.classify import EmotionClassifier
    if sample is None:
        sample = np.random.default_rng(0).integers(0, 256, (256, 48, 48), dtype=np.uint8)
    fast = EmotionClassifier.load(tflite_path, flip_average=False)
    reference = EmotionClassifier.load(keras_path, flip_average=False)
    difference = float(np.abs(fast.predict(sample) - reference.predict(sample)).max())
    if difference > TOLERANCE:
        raise RuntimeError(f"TFLite and Keras disagree by {difference:.2g} (> {TOLERANCE})")
    runtime = {"temperature": round(temperature, 4), "keras_vs_tflite_max_abs_diff": difference,
               "ms_per_batch_of_25": {}, "files_mb": {}}
    batch = sample[:25]
    for name, path in (("tflite", tflite_path), ("keras", keras_path)):
        for flip in (False, True):
            classifier = EmotionClassifier.load(path, flip_average=flip)
            runtime["ms_per_batch_of_25"][f"{name}{'_flip' if flip else ''}"] = round(_time(classifier, batch), 2)
        runtime["files_mb"][path.name] = round(path.stat().st_size / 1e6, 2)
    return runtime


def _time(classifier, batch: np.ndarray, repeats: int = 50) -> float:
    classifier.predict(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        classifier.predict(batch)
    return (time.perf_counter() - started) / repeats * 1000


def runtime_scores(out_dir: Path, data_path: str, splits: tuple[str, ...] = ("PublicTest", "PrivateTest")) -> dict:
    """Scores as users get them: ``EmotionClassifier.load(<the runtime model>).predict`` with its
    default second look, so the card's headline is what ships."""
    from fer_overlay.classify import EmotionClassifier
    from train.data import load
    from train.evaluate import class_scores, confusion
    classifier, data, scores = EmotionClassifier.load(out_dir / CLASSIFIER_DYNAMIC), load(data_path), {}
    for split in splits:
        part = data.subset(split)
        predicted = classifier.predict(part.pixels).argmax(axis=1)
        matrix = confusion(part.labels, predicted)
        scores[f"{split}_runtime"] = {"accuracy": round(float((predicted == part.labels).mean()), 4),
                                      **class_scores(matrix), "confusion": matrix.tolist()}
    return scores


def compare(model_path: Path, shipped_dir: Path, data_path: str, temperature: float = 1.0,
            meetings: Path | None = None, console=None) -> dict[str, dict]:
    """PublicTest as the runtime runs it (accuracy, model runs per face, and the same at meeting
    face sizes: ``train/robustness.py``), for a candidate and for the shipped model in one run.

    The candidate is exported to a scratch folder exactly as ``export`` would ship it (int8,
    second look), so the choice to ship rests on what users would get. PrivateTest is never
    read: it is reported once, for the model chosen.
    """
    from train.robustness import measure, real_sides
    real = real_sides(meetings)
    with tempfile.TemporaryDirectory() as scratch:
        export(model_path, Path(scratch), temperature=temperature)
        candidate = {**_public_runtime(Path(scratch), data_path),
                     "robustness": measure(Path(scratch) / CLASSIFIER_DYNAMIC, data_path, real, console)}
    shipped = {**_public_runtime(shipped_dir, data_path),
               "robustness": measure(shipped_dir / CLASSIFIER_DYNAMIC, data_path, real, console)}
    return {"candidate": candidate, "shipped": shipped}


def _public_runtime(folder: Path, data_path: str) -> dict:
    """PublicTest's runtime scores plus the cost side: model runs per face, as a model that is
    unsure more often gives more faces the second look's three extra views."""
    from fer_overlay.classify import SECOND_LOOK_BELOW, EmotionClassifier
    from train.data import load
    scores = runtime_scores(folder, data_path, ("PublicTest",))["PublicTest_runtime"]
    plain = EmotionClassifier.load(folder / CLASSIFIER_DYNAMIC, flip_average=False)
    top = plain.predict(load(data_path).subset("PublicTest").pixels).max(axis=1)
    return {**scores, "runs_per_face": round(1 + 3 * float(np.mean(top < SECOND_LOOK_BELOW)), 3)}


def update_metrics(out_dir: Path, parts: dict) -> None:
    """Replace these top-level entries of ``metrics.json``, keeping the others."""
    path = out_dir / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**metrics, **parts}, indent=2) + "\n")


def write_runtime_report(out_dir: Path, private: dict) -> None:
    """The confusion matrix and report of what users run, replacing evaluate's flip-averaged ones,
    so the pictures match the card's per-class table."""
    from train.evaluate import plot_confusion, report_text
    how = "runtime (int8, second look)"
    plot_confusion(np.array(private["confusion"]), out_dir / "confusion_matrix.png", private["accuracy"], how)
    (out_dir / "classification_report.txt").write_text(report_text(private, "PrivateTest", how))


GENERATED = ("## Model", "## Protocol and figures", "## Limits")   # the card's sections export writes


def _kept_sections(card: Path) -> str:
    """The sections of an existing card that export does not write (the runtime model's figures,
    the ablation table): measured by hand, so a new export keeps them, before "Limits"."""
    if not card.is_file():
        return ""
    sections = re.split(r"(?m)^(?=## )", card.read_text())
    return "".join(s if s.endswith("\n\n") else s.rstrip("\n") + "\n\n"
                   for s in sections if s.startswith("## ") and not s.startswith(GENERATED))


def _split_row(m: dict, split: str) -> str:
    flip, shipped = m[f"{split}_flip"], m.get(f"{split}_runtime")
    runtime = f"**{shipped['accuracy']:.2%}** | {shipped['macro_f1']:.3f}" if shipped else "- | -"
    return (f"| {split} | {m[split]['accuracy']:.2%} | {flip['accuracy']:.2%} | {flip['macro_f1']:.3f} | "
            f"{flip.get('ferplus_majority_accuracy', 0):.2%} | {runtime} |")


def _worst_confusions(matrix: list[list[int]], count: int = 5) -> str:
    """The most frequent mistakes, as 'fear taken for sad: 95 of 528 (18%)', largest share first."""
    cells = [(n / sum(row), truth, guess, n) for truth, row in enumerate(matrix)
             for guess, n in enumerate(row) if guess != truth and n]
    return "; ".join(f"{EMOTIONS[truth]} taken for {EMOTIONS[guess]}: {n} of {sum(matrix[truth])} ({share:.0%})"
                     for share, truth, guess, n in sorted(cells, reverse=True)[:count])


def _size_text(robustness: dict | None) -> str:
    """The card's paragraph on face size (``train/robustness.py``), or nothing before it was measured."""
    if not robustness:
        return ""
    from train.robustness import by_side
    lossless = by_side(robustness)
    text = (f"\nFace size (`python -m train robustness`, {robustness['split']}, `robustness.png`): FER2013's faces are "
            f"48 px across; shrunk on screen to 16, 24 and 32 px and enlarged back as the runtime does, they score "
            f"{lossless[16]:.1%}, {lossless[24]:.1%} and {lossless[32]:.1%} (48 px: {lossless[48]:.1%}"
            + (f"; JPEG quality 50 at 48 px: {by_side(robustness, 50)[48]:.1%}"
               if 50 in robustness["jpeg_qualities"] else "") + ").")
    real = robustness.get("meetings")
    if real:
        text += (f" With each face at the size of one of the {real['faces']} faces found on the nine real captures "
                 f"(median {real['median_side']:g} px, {real['share_under_32']:.0%} under 32 px): {real['accuracy']:.1%}.")
    return text + "\n"


def write_card(out_dir: Path) -> None:
    """``models/README.md``: what the model is, how it was measured, what it cannot do."""
    m = json.loads((out_dir / "metrics.json").read_text())
    # Per-class figures of what users run where export measured it, else of the flip-averaged network.
    shipped_kind = "runtime" if "PrivateTest_runtime" in m else "flip"
    shipped = m[f"PrivateTest_{shipped_kind}"]
    config, training, runtime = m.get("config", {}), m.get("training", {}), m.get("runtime", {})
    rows = "\n".join(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |"
                     for name, s in shipped["per_class"].items())
    speed = runtime.get("ms_per_batch_of_25", {})
    origin = (f"as a warm restart (a new schedule, peak learning rate {config['learning_rate']:g}) from "
              f"`{Path(config['init']).name}`, whose training Ablations describes," if config.get("init") else "from scratch")
    teachers = config.get("teacher") or ()
    if teachers:
        share = config["teacher_weight"]   # saved with every run's config since --teacher exists
        origin += (f" with distillation targets ({1 - share:g} the label, "
                   f"{share:g} the mean answer of {len(teachers)} trained networks "
                   "over the second look's four views; see Ablations)")
    averaged = training.get("averaged_epochs")
    chosen = (f"The weights are the mean of epochs {averaged[0]}-{averaged[1]}'s (SWA, `python -m train average`), "
              "chosen on PublicTest" if averaged else f"Best epoch chosen on PublicTest ({training.get('best_epoch', '?')})")
    meeting_look = (f"; {config['lowres']:.0%} of the faces shrunk to {LOWRES_SIZES[0]}-{LOWRES_SIZES[-1]} px and enlarged back, as a big gallery shows "
              "them (`--lowres`)" if config.get("lowres") else "")
    meeting_look += (f"; {config['jpeg']:.0%} JPEG-compressed at quality {JPEG_QUALITIES[0]}-{JPEG_QUALITIES[1]} on a block "
               "grid at a random offset, as a meeting's video codec leaves them (`--jpeg`)" if config.get("jpeg") else "")
    t = runtime.get("temperature", 1.0)
    calibrated = (f" Its confidence is calibrated on PublicTest: the last layer's output divided by a temperature of "
                  f"{t:.3f}, folded into its weights (the network's answers unchanged, no extra cost)." if t != 1.0 else "")
    failures = (f"- Most frequent mistakes on PrivateTest (runtime): {_worst_confusions(shipped['confusion'])}.\n"
                if "confusion" in shipped else "")
    card = f"""# fer-overlay emotion CNN — model card

Files: `emotion_cnn_dynamic.tflite` (runtime default: the LiteRT export with its weights in int8,
dynamic range), `emotion_cnn.tflite` (the float LiteRT export), `emotion_cnn.keras` (reference and
fallback), `emotion_cnn.config.json` (every training setting), `metrics.json` (all figures
below), `confusion_matrix.png`, `learning_curves.png`, `classification_report.txt`, `robustness.png`.
`face_detection_yunet_2023mar.onnx` is OpenCV Zoo's YuNet face detector (license in `LICENSE.yunet`).

## Model
A VGG-style CNN ({m['parameters']:,} parameters, widths {config.get('widths')}), input a 48x48
grayscale face aligned on the eyes (`fer_overlay/preprocess.py`), output probabilities for
angry, disgust, fear, happy, sad, surprise, neutral. Trained {origin} by `python -m train fit`
on this project's 2-core CPU: {training.get('epochs', '?')} epochs ({training.get('hours', '?')} h), AdamW with warm-up and
cosine decay, label smoothing {config.get('label_smoothing')}, flips, rotations, zoom, shifts,
brightness/contrast jitter and random erasing{meeting_look}. {chosen}.{calibrated}

## Protocol and figures
FER2013 (Goodfellow et al. 2013): trained on Training ({m['split_sizes']['Training']} faces), selected on
PublicTest ({m['split_sizes']['PublicTest']}), reported once on PrivateTest ({m['split_sizes']['PrivateTest']}).
"flip" = the face and its mirror image averaged; "runtime" = `EmotionClassifier.load().predict`, the
int8 model with a second look (mirror and zoom) for faces it is unsure of.

| split | accuracy | accuracy, flip | macro-F1, flip | vs FER+ majority, flip | accuracy, runtime | macro-F1, runtime |
|---|---|---|---|---|---|---|
{_split_row(m, "PublicTest")}
{_split_row(m, "PrivateTest")}

PrivateTest per class ({shipped_kind}):

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

Speed, 25 faces in one batch on the 2-core CPU: LiteRT {speed.get('tflite', 0):.1f} ms
({speed.get('tflite_flip', 0):.1f} ms with flip, i.e. {speed.get('tflite_flip', 0) / 25:.2f} ms per face),
Keras `model(x)` in a `tf.function` {speed.get('keras', 0):.1f} ms. LiteRT and Keras outputs differ by at most
{runtime.get('keras_vs_tflite_max_abs_diff', 0):.1e}.
{_size_text(m.get("robustness"))}
{_kept_sections(out_dir / "README.md")}## Limits
{failures}- FER2013 is mostly posed or strongly expressed faces scraped from web image search; webcam faces in
  a lecture are spontaneous and subtle, and most of the time "neutral". Expect lower accuracy there.
- Labels are single crowd judgements; the FER+ re-annotation disagrees with about a quarter of them.
  "Disgust" has 436 training faces and is the least reliable class.
- FER2013 under-represents older people, children and darker skin tones; accuracy differs across
  groups and has not been measured per group here.
- An expression is not an emotion, and an emotion is not engagement. Use the output as a prompt to
  look, never as a judgement about a student. See "Responsible use" in the project README.
"""
    (out_dir / "README.md").write_text(card)
