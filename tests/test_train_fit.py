"""A tiny real training run: loss falls, export matches Keras, an interrupted run resumes exactly."""

import json
import shutil

import numpy as np
import pytest

from fer_overlay.classify import EmotionClassifier
from tests.conftest import REPO
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
