"""A tiny real training run: loss falls, export matches Keras, an interrupted run resumes exactly."""

import json
import shutil

import numpy as np
import pytest

from fer_overlay.classify import EmotionClassifier
from tests.conftest import MEETINGS, REPO
from train.config import TrainConfig


@pytest.fixture(scope="module")
def tiny_npz(fer2013, tmp_path_factory):
    """320 Training + 64 PublicTest faces in the shared npz layout."""
    rows = np.r_[np.flatnonzero(fer2013["usage"] == 0)[:320], np.flatnonzero(fer2013["usage"] == 1)[:64]]
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, pixels=fer2013["pixels"][rows], emotion=fer2013["emotion"][rows],
             usage=fer2013["usage"][rows], emotions=np.array(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]),
             ferplus_votes=fer2013["ferplus_votes"][rows], ferplus_classes=fer2013["ferplus_classes"])
    return path


def tiny_config(data, epochs):
    return TrainConfig(data=str(data), epochs=epochs, batch_size=32, warmup_epochs=1, widths=(8, 16, 16, 32), dense=32)


def history(run):
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def whole_run(tiny_npz, tmp_path_factory):
    """Four epochs never interrupted: the reference for the resumed runs."""
    from train.fit import fit
    run = tmp_path_factory.mktemp("whole") / "run"
    return run, fit(tiny_config(tiny_npz, 4), run)


def test_fit_lowers_loss_and_export_matches_keras(whole_run, tmp_path):
    from train.export import export
    run, state = whole_run
    losses = [h["loss"] for h in history(run)]
    assert state["epoch"] == 4 and losses[-1] < losses[0]
    assert json.loads((run / "config.json").read_text())["epochs"] == 4   # config saved with the run

    runtime = export(run / "best.keras", tmp_path / "models", run)
    assert runtime["keras_vs_tflite_max_abs_diff"] < 1e-4
    faces = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    import keras
    reference = keras.models.load_model(run / "best.keras", compile=False).predict(
        faces[..., None].astype(np.float32), verbose=0)
    fast = EmotionClassifier.load(tmp_path / "models" / "emotion_cnn.tflite", flip_average=False).predict(faces)
    np.testing.assert_allclose(fast, reference, atol=1e-4)   # stated tolerance: 1e-4 in probability


def test_ferplus_soft_labels(tiny_npz, tmp_path):
    from train.fit import fit
    state = fit(tiny_config(tiny_npz, 1).replace(labels="ferplus"), tmp_path / "soft")
    assert state["epoch"] == 1


class Killed(BaseException):
    """Stands for SIGKILL at a chosen point: nothing after it runs, nothing is cleaned up."""


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_run_killed_around_its_checkpoint_resumes_exactly(moment, whole_run, tiny_npz, tmp_path, monkeypatch):
    """Killed in epoch 2 just before or just after ``last.keras`` is replaced (after: the state
    still said epoch 1, so the old code trained epoch 2 twice and wrote its line twice)."""
    import train.fit as fit_module
    whole, cut = whole_run[0], tmp_path / "cut"

    checkpoints = []
    real_save = fit_module._atomic_save

    def save(model, path):
        if path.name == "last.keras":
            checkpoints.append(path)
            if len(checkpoints) == 2:      # epoch 2's checkpoint: its history line is written already
                if moment == "after":
                    real_save(model, path)
                raise Killed
        real_save(model, path)

    monkeypatch.setattr(fit_module, "_atomic_save", save)
    with pytest.raises(Killed):
        fit_module.fit(tiny_config(tiny_npz, 4), cut)
    monkeypatch.undo()
    saved = json.loads((cut / "state.json").read_text())   # whole, never half-written
    assert saved["epoch"] == 1

    state = fit_module.fit(tiny_config(tiny_npz, 4), cut, resume=True)
    a, b = history(whole), history(cut)
    assert [h["epoch"] for h in b] == [1, 2, 3, 4]
    # The schedule continues exactly: same learning rate after every epoch.
    assert [h["learning_rate"] for h in b] == pytest.approx([h["learning_rate"] for h in a], rel=1e-6)
    # Same data order, augmentation and dropout masks: the same losses (up to float sums in threads).
    assert [h["loss"] for h in b] == pytest.approx([h["loss"] for h in a], rel=1e-3)
    best = max(b, key=lambda h: h["val_accuracy"])
    assert state == json.loads((cut / "state.json").read_text()) == {
        "epoch": 4, "best_accuracy": best["val_accuracy"], "best_epoch": best["epoch"],
        "seconds": pytest.approx(sum(h["seconds"] for h in b))}


def test_resume_repairs_an_older_versions_history(tiny_npz, tmp_path):
    """Older versions appended: a kill could leave an epoch's line twice or a line cut in half.
    Resuming keeps one line per epoch the checkpoint holds and continues from there."""
    from train.fit import fit
    run = tmp_path / "run"
    fit(tiny_config(tiny_npz, 2), run)
    lines = (run / "history.jsonl").read_text().splitlines()
    (run / "history.jsonl").write_text("\n".join([lines[0], lines[1], lines[1], '{"epoch": 3, "lo']) + "\n")
    state = fit(tiny_config(tiny_npz, 3), run, resume=True)
    assert [h["epoch"] for h in history(run)] == [1, 2, 3] and state["epoch"] == 3
    assert history(run)[:2] == [json.loads(line) for line in lines]


def test_a_new_model_card_keeps_the_sections_measured_by_hand(tmp_path):
    """``train export`` rewrites the card's figures; the ablation table and the runtime model's
    figures, measured by hand, stay (before "Limits"), so an export cannot lose that evidence."""
    from train.export import write_card
    shutil.copy(REPO / "models" / "metrics.json", tmp_path / "metrics.json")
    (tmp_path / "README.md").write_text("# old card\n\n## Model\nold words\n\n## Ablations\n| run | x |\n\n"
                                        "## Limits\nold limits\n")
    write_card(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "old words" not in card and "old limits" not in card and "## Protocol and figures" in card
    assert card.count("## Ablations\n| run | x |\n\n## Limits\n") == 1
    write_card(tmp_path)
    assert (tmp_path / "README.md").read_text() == card   # a second export changes nothing


def test_a_warm_restart_starts_from_the_given_weights(whole_run, tiny_npz, tmp_path):
    """``--init``: a new schedule from a finished run; a learning rate of ~0 must keep its kernels."""
    import keras
    from train.fit import fit
    run, _ = whole_run
    config = tiny_config(tiny_npz, 1).replace(init=str(run / "last.keras"), learning_rate=1e-12)
    fit(config, tmp_path / "warm")
    before = keras.models.load_model(run / "last.keras", compile=False).get_layer("conv0_0").kernel.numpy()
    after = keras.models.load_model(tmp_path / "warm" / "last.keras", compile=False).get_layer("conv0_0").kernel.numpy()
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "warm" / "epochs").iterdir()) == ["001.weights.h5"]


def test_a_widened_network_answers_as_the_narrow_one_did(whole_run, public_faces):
    """Net2WiderNet: new channels copy old ones and their readers split the weight, so the wide
    network's answers on real faces are the narrow one's; the noise that lets copies drift apart
    moves them only a little, and nothing is narrowed or re-layered silently."""
    import keras
    from fer_overlay.preprocess import to_model_input
    from train.model import build_model
    from train.widen import widen
    run, _ = whole_run
    narrow = keras.models.load_model(run / "last.keras", compile=False)
    faces = to_model_input(public_faces[0][:500])
    expected = narrow.predict(faces, verbose=0)
    wide = build_model(TrainConfig(widths=(12, 24, 24, 48), dense=48))
    widen(narrow, wide, noise=0.0)
    np.testing.assert_allclose(wide.predict(faces, verbose=0), expected, atol=1e-5)

    widen(narrow, wide, noise=0.05)
    kernel = wide.get_layer("conv2_1").kernel.numpy()
    copies = kernel[..., 16:]
    assert not any(np.allclose(copies[..., [j]], kernel[..., :16], atol=1e-6) for j in range(8))
    moved = np.abs(wide.predict(faces, verbose=0) - expected).max()
    assert 0 < moved < 0.05
    with pytest.raises(ValueError, match="narrow"):
        widen(wide, narrow)
    with pytest.raises(ValueError, match="depth"):
        widen(narrow, build_model(TrainConfig(widths=(12, 24, 48), dense=48)))


def test_fit_widens_the_init_model_when_asked_for_more_channels(whole_run, tmp_path, capsys):
    """``fit --init M --widths ... --dense ...``: the run starts from M's channels copied into the
    wider network; a malformed ``--widths`` is one line naming the fix."""
    import keras
    from train.__main__ import main
    run, _ = whole_run
    TrainConfig.load(run / "config.json").replace(epochs=1).save(tmp_path / "tiny.json")
    wide_run = tmp_path / "wide"
    assert main(["fit", "--run", str(wide_run), "--config", str(tmp_path / "tiny.json"), "--init", str(run / "last.keras"),
                 "--widths", "12,24,24,48", "--dense", "48", "--lr", "1e-12"]) == 0
    assert TrainConfig.load(wide_run / "config.json").widths == (12, 24, 24, 48)
    before = keras.models.load_model(run / "last.keras", compile=False).get_layer("conv0_0").kernel.numpy()
    after = keras.models.load_model(wide_run / "last.keras", compile=False).get_layer("conv0_0").kernel.numpy()
    assert after.shape == (3, 3, 1, 12)
    np.testing.assert_allclose(after[..., :8], before, atol=1e-6)

    with pytest.raises(SystemExit):
        main(["fit", "--run", str(tmp_path / "bad"), "--widths", "32,64"])
    assert "give four positive channel counts, e.g. 32,64,192,384" in capsys.readouterr().err


def test_distillation_targets_mix_the_label_with_the_teachers_second_look(whole_run, tiny_npz, tmp_path):
    """``--teacher``: each target is part label, part what the runtime's second look (all four views)
    answers with the teacher model; the answers are computed once and kept with the run."""
    from train.data import load
    from train.fit import fit, targets
    run, _ = whole_run
    config = tiny_config(tiny_npz, 1).replace(teacher=(str(run / "best.keras"),) * 2, teacher_weight=0.25)
    fit(config, tmp_path / "student")
    answers = np.load(tmp_path / "student" / "teacher.npy")
    train = load(tiny_npz).subset("Training")
    second_look = EmotionClassifier.load(run / "best.keras", second_look_below=1.0).predict(train.pixels)
    np.testing.assert_allclose(answers, second_look, atol=1e-5)
    np.testing.assert_allclose(targets(train, config, answers),
                               0.75 * np.eye(7)[train.labels] + 0.25 * answers, atol=1e-6)
    assert TrainConfig.load(tmp_path / "student" / "config.json") == config   # teachers survive the JSON round trip


def test_fit_flags_reach_the_runs_config_and_the_card_names_the_augmentations(tiny_npz, tmp_path):
    """What a run was trained with is read back from its config.json, and the card says it in words."""
    from train.__main__ import main
    from train.export import write_card
    tiny_config(tiny_npz, 3).save(tmp_path / "tiny.json")
    run = tmp_path / "run"
    assert main(["fit", "--run", str(run), "--config", str(tmp_path / "tiny.json"), "--epochs", "1",
                 "--label-smoothing", "0.2", "--jpeg", "0.4", "--lowres", "0.3"]) == 0
    saved = TrainConfig.load(run / "config.json")
    assert (saved.epochs, saved.label_smoothing, saved.jpeg, saved.lowres, saved.widths) == (1, 0.2, 0.4, 0.3, (8, 16, 16, 32))

    metrics = json.loads((REPO / "models" / "metrics.json").read_text())
    metrics["config"] = {**metrics["config"], "label_smoothing": 0.2, "jpeg": 0.4, "lowres": 0.3}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    write_card(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "label smoothing 0.2" in card
    assert "30% of the faces shrunk to 12-40 px" in card and "40% JPEG-compressed at quality 25-85" in card
    metrics["config"]["jpeg"] = 0.0
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    write_card(tmp_path)
    assert "JPEG-compressed" not in (tmp_path / "README.md").read_text().split("## Runtime model")[0]


def test_averaged_weights_are_the_mean_and_batch_norm_is_measured_again(whole_run):
    import keras
    import tensorflow as tf
    from fer_overlay.preprocess import to_model_input
    from train.average import average_run
    from train.data import load
    from train.fit import epoch_dataset, targets
    from train.model import build_model
    run, _ = whole_run
    path, accuracy = average_run(run, first=3)
    assert json.loads((run / "averaged.json").read_text())["epochs"] == [3, 4]   # for the model card
    config = TrainConfig.load(run / "config.json")
    kernels = []
    for epoch in (3, 4):
        model = build_model(config)
        model.load_weights(run / "epochs" / f"{epoch:03d}.weights.h5")
        kernels.append(model.get_layer("conv0_0").kernel.numpy())
    averaged = keras.models.load_model(path)
    np.testing.assert_allclose(averaged.get_layer("conv0_0").kernel.numpy(), np.mean(kernels, axis=0), atol=1e-6)

    # The first batch-norm layer's input is the first convolution's output: its mean over the
    # training batches must be the layer's new moving mean.
    train = load(config.data).subset("Training")
    batches = epoch_dataset(tf.constant(to_model_input(train.pixels)), tf.constant(targets(train, config)),
                            config, config.epochs)
    conv = keras.Model(averaged.inputs, averaged.get_layer("conv0_0").output)
    means = [conv(images).numpy().reshape(-1, 8).mean(axis=0) for images, _ in batches]
    norm = next(layer for layer in averaged.layers if isinstance(layer, keras.layers.BatchNormalization))
    np.testing.assert_allclose(norm.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)

    val = load(config.data).subset("PublicTest")
    again = np.mean(averaged.predict(to_model_input(val.pixels), verbose=0).argmax(axis=1) == val.labels)
    assert accuracy == pytest.approx(again)


def test_compare_scores_a_candidate_as_the_runtime_runs_it_and_never_reads_privatetest(
        whole_run, tiny_npz, tmp_path, monkeypatch, capsys):
    """``train compare``: the ship-or-not figure is PublicTest through the int8 export and second
    look, for candidate and shipped model in one run; PrivateTest stays unread."""
    from train.__main__ import main
    from train.data import FerData, load
    from train.export import export
    from train.robustness import degrade
    run, _ = whole_run
    export(run / "best.keras", tmp_path / "shipped")
    public = load(tiny_npz).subset("PublicTest")
    model = tmp_path / "shipped" / "emotion_cnn_dynamic.tflite"
    expected = np.mean(EmotionClassifier.load(model).predict(public.pixels).argmax(axis=1) == public.labels)
    unsure = np.mean(EmotionClassifier.load(model, flip_average=False).predict(public.pixels).max(axis=1) < 0.5)
    read, subset = [], FerData.subset
    monkeypatch.setattr(FerData, "subset", lambda self, split: read.append(split) or subset(self, split))
    assert main(["compare", "--run", str(run), "--against", str(tmp_path / "shipped"), "--data", str(tiny_npz),
                 "--temperature", "1", "--meetings", str(MEETINGS)]) == 0
    out = " ".join(capsys.readouterr().out.split())   # rich wraps long lines at the terminal width
    assert out.count(f"accuracy {expected:.4f}") == 2 and "+0.00 points" in out   # the same model both ways
    assert out.count(f"{1 + 3 * unsure:.2f} model runs a face") == 2
    small = np.mean(EmotionClassifier.load(model).predict(degrade(public.pixels, 24)).argmax(axis=1) == public.labels)
    assert out.count(f"faces 24 px {small:.4f}") == 2 and out.count("real faces' sizes") == 2
    blocky = np.mean(EmotionClassifier.load(model).predict(degrade(public.pixels, 48, 50)).argmax(axis=1) == public.labels)
    assert out.count(f"JPEG quality 50 at 48 px {blocky:.4f}") == 2
    assert set(read) == {"PublicTest"}
    assert main(["compare", "--run", str(run), "--data", str(tiny_npz), "--temperature", "0"]) == 2
    assert "--temperature must be above 0" in capsys.readouterr().out


def test_robustness_scores_the_runtime_model_at_meeting_sizes_into_its_metrics_plot_and_card(
        whole_run, tiny_npz, tmp_path, labels):
    """``train robustness``: PublicTest at each face size and JPEG quality, and at the real
    captures' face sizes, kept in metrics.json, drawn, and told by the card (which export rewrites)."""
    from train.__main__ import main
    from train.data import load
    from train.export import export, write_card
    run, _ = whole_run
    export(run / "best.keras", tmp_path)
    (tmp_path / "metrics.json").write_text((REPO / "models" / "metrics.json").read_text())
    assert main(["robustness", "--out", str(tmp_path), "--data", str(tiny_npz), "--meetings", str(MEETINGS)]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())["robustness"]
    public = load(tiny_npz).subset("PublicTest")
    plain = np.mean(EmotionClassifier.load(tmp_path / "emotion_cnn_dynamic.tflite").predict(public.pixels).argmax(axis=1)
                    == public.labels)
    lossless = dict(zip(result["sides"], result["accuracy"][0]))
    assert lossless[48] == round(plain, 4)   # 48 px, lossless: the faces as FER2013 gives them
    assert len(result["accuracy"]) == len(result["jpeg_qualities"]) and result["jpeg_qualities"][0] is None
    real = result["meetings"]
    assert real["faces"] == len(real["sides"]) >= 0.95 * sum(label["faces_visible"] for label in labels.values())
    assert (tmp_path / "robustness.png").stat().st_size > 10_000
    write_card(tmp_path)
    card = " ".join((tmp_path / "README.md").read_text().split())
    assert f"they score {lossless[16]:.1%}, {lossless[24]:.1%} and {lossless[32]:.1%}" in card
    assert f"one of the {real['faces']} faces found on the nine real captures" in card


def test_fit_temperature_finds_the_temperature_the_labels_were_drawn_with_and_export_folds_it_in(tmp_path):
    """Calibration, against a known truth: PublicTest labels drawn from softmax(logits / 2) of a
    network give back T of about 2; the exported files then give softmax(logits / T), same answers."""
    import keras
    from fer_overlay.preprocess import to_model_input
    from train.export import export, fit_temperature
    rng = np.random.default_rng(3)
    inputs = keras.Input((48, 48, 1))
    head = keras.layers.Dense(7, activation="softmax", name="emotion")
    model = keras.Model(inputs, head(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))))
    head.set_weights([rng.normal(0, 0.02, (48 * 48, 7)).astype(np.float32), rng.normal(0, 1, 7).astype(np.float32)])
    model.save(tmp_path / "net.keras")
    faces = rng.integers(0, 256, (4000, 48, 48), dtype=np.uint8)
    logits = np.log(model.predict(to_model_input(faces), verbose=0).astype(np.float64))
    drawn = np.exp(logits / 2) / np.exp(logits / 2).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(7, p=row / row.sum()) for row in drawn])
    np.savez(tmp_path / "public.npz", pixels=faces, emotion=labels, usage=np.ones(len(faces), np.int8),
             emotions=np.array(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]))

    t = fit_temperature(tmp_path / "net.keras", str(tmp_path / "public.npz"))
    assert 1.8 < t < 2.2
    runtime = export(tmp_path / "net.keras", tmp_path / "calibrated", temperature=t)
    assert runtime["temperature"] == round(t, 4)
    fast = EmotionClassifier.load(tmp_path / "calibrated" / "emotion_cnn.tflite", flip_average=False).predict(faces[:200])
    expected = np.exp(logits[:200] / t) / np.exp(logits[:200] / t).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fast, expected, atol=1e-4)
    assert (fast.argmax(axis=1) == logits[:200].argmax(axis=1)).all()


def test_the_card_says_when_a_model_was_distilled_and_calibrated(tmp_path):
    from train.export import write_card
    metrics = json.loads((REPO / "models" / "metrics.json").read_text())
    metrics["config"]["teacher"], metrics["config"]["teacher_weight"] = ["a.keras", "b.keras"], 0.5
    metrics["runtime"]["temperature"] = 0.85
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    write_card(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "0.5 the mean answer of 2 trained networks" in card and "a temperature of 0.850" in card


def test_a_run_on_the_jax_backend_needs_no_tensorflow_and_its_model_scores_alike_here(tiny_npz, tmp_path):
    """A GPU machine may have JAX and no TensorFlow: ``KERAS_BACKEND=jax python -m train fit`` trains
    there, its augmentation compiled beside the step. The run must be seeded like a TensorFlow one (the
    same batches for the same epoch), and its checkpoint must load here, under TensorFlow, and score
    PublicTest as the run logged it."""
    pytest.importorskip("jax")
    import os
    import subprocess
    import sys
    run, hidden = tmp_path / "jax", tmp_path / "no_tensorflow" / "tensorflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('no TensorFlow on this machine')\n")
    script = f"""
import json
import keras, numpy as np
from tests.test_train_fit import tiny_config
from train.fit import epoch_dataset, fit
config = tiny_config({str(tiny_npz)!r}, 2).replace(lowres=0.5, mixup=0.2)
fit(config, __import__("pathlib").Path({str(run)!r}))
x = keras.ops.convert_to_tensor(np.random.default_rng(0).uniform(0, 255, (96, 48, 48, 1)).astype("float32"))
y = keras.ops.convert_to_tensor(np.eye(7, dtype="float32")[np.arange(96) % 7])
first, again, later = ([np.asarray(b[0]) for b in epoch_dataset(x, y, config, e)] for e in (0, 0, 1))
print(json.dumps({{"backend": keras.backend.backend(), "batches": len(first),
                  "same": all(np.array_equal(a, b) for a, b in zip(first, again)),
                  "differs": not np.array_equal(first[0], later[0]),
                  "range": [float(min(b.min() for b in first)), float(max(b.max() for b in first))]}}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax",
                               "PYTHONPATH": os.pathsep.join([str(hidden.parent), str(REPO)])})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax" and report["batches"] == 3
    assert report["same"] and report["differs"]                  # seeded by (seed, epoch, batch)
    assert 0 <= report["range"][0] and report["range"][1] <= 255
    records = history(run)
    assert [h["epoch"] for h in records] == [1, 2] and all(np.isfinite(h["loss"]) for h in records)

    import keras
    from fer_overlay.preprocess import to_model_input
    from train.data import load
    val = load(tiny_npz).subset("PublicTest")
    model = keras.models.load_model(run / "best.keras", compile=False)   # written by JAX, read by TensorFlow
    accuracy = (model.predict(to_model_input(val.pixels), verbose=0).argmax(axis=1) == val.labels).mean()
    best = max(records, key=lambda h: h["val_accuracy"])["val_accuracy"]
    assert abs(accuracy - best) <= 1 / len(val) + 1e-6            # at most one face on the decision edge
