"""Shared fixtures: FER2013 faces, a real X server (Xvfb), an isolated config home."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from fer_overlay.names import edit_distance

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
FER2013 = REPO.parent / "shared" / "data" / "fer2013.npz"
MEETINGS = REPO.parent / "shared" / "data" / "meetings"   # real screenshots: read there, never copied


def same_name(label: str, reading: str) -> bool:
    """A name counts as read by issue 10's rule (exact or within two characters) and the score
    script's (difflib ratio >= 0.8), case aside."""
    a, b = label.casefold(), reading.casefold()
    return edit_distance(a, b) <= 2 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


@pytest.fixture(scope="session")
def labels() -> dict:
    """The hand labels of the real meeting screenshots (skips where ../shared/data is absent)."""
    if not (MEETINGS / "labels.json").exists():
        pytest.skip(f"real meeting screenshots not found at {MEETINGS} "
                    "(only developers' and CI machines have ../shared)")
    return json.loads((MEETINGS / "labels.json").read_text())


@pytest.fixture(scope="session")
def fer2013():
    """The full FER2013 npz (skips where ../shared/data is absent)."""
    if not FER2013.exists():
        pytest.skip(f"FER2013 not found at {FER2013} (only developers' and CI machines have ../shared)")
    with np.load(FER2013) as data:
        return {key: data[key] for key in ("pixels", "emotion", "usage", "ferplus_votes", "ferplus_classes")}


@pytest.fixture(scope="session")
def public_faces(fer2013):
    keep = fer2013["usage"] == 1
    return fer2013["pixels"][keep], fer2013["emotion"][keep].astype(np.int64)


def start_service(command: list[str], ready, name: str, timeout: float) -> subprocess.Popen:
    """Start a background program and wait until ``ready()``; fail the test if it dies or is slow."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready():
        if time.time() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"{name} did not start")
        time.sleep(0.05)
    return process


@pytest.fixture(scope="session")
def xvfb():
    """A real X server 1280x720x24 on a free display number; yields the DISPLAY string."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    for number in range(90, 110):
        if not Path(f"/tmp/.X{number}-lock").exists():
            break
    display = f":{number}"
    server = start_service(["Xvfb", display, "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                           Path(f"/tmp/.X11-unix/X{number}").exists, "Xvfb", timeout=10)
    yield display
    server.terminate()
    server.wait(timeout=5)


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """Point the user config folder (notice acknowledgement) into a temp dir."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "config"
