"""``fer-overlay check``: one picture analysed and drawn so a teacher can see that everyone is found.

Everything runs through ``fer_overlay.cli.main``, the path the command really takes (notice,
privacy options, one-line errors). The picture is read back by pixels and by Tesseract.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fer_overlay.cli import main
from fer_overlay.draw import STATE_COLORS
from fer_overlay.gallery import compose_gallery
from tests.conftest import REPO

NAMES = ["Ana Lima", "Ben Okafor", "Chen Wei", "Dana Cruz", "Eli Stone", "Fay Moss", "Gus Hart", "Ivy Park", "Jon Reyes"]
TILE_KEY = re.compile(r"r\d+c\d+(#\d+)?")


@pytest.fixture(scope="module")
def gallery():
    """A 1920x1080 3x3 gallery with names; tile r2c2 camera-off (faces YuNet finds, see test_screen)."""
    from fer_overlay.demo import load_faces
    faces = list(load_faces()[0][10:19])
    faces[4] = None
    return compose_gallery(faces, 3, 3, (1920, 1080), names=NAMES)


@pytest.fixture
def screenshot(gallery, tmp_path):
    path = tmp_path / "gallery.png"
    cv2.imwrite(str(path), gallery.image)
    return path


def truth_states(gallery) -> dict[str, str]:
    return {tile.key: "present" if box is not None else "camera_off"
            for tile, box in zip(gallery.tiles, gallery.face_boxes)}


def run_check(capsys, *args) -> tuple[int, str, str]:
    code = main(["check", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def outline(image: np.ndarray, box: list[int]) -> tuple[int, int, int]:
    """The colour along a tile's right edge (its middle half, clear of captions and labels)."""
    x, y, w, h = box
    edge = image[y + h // 4:y + 3 * h // 4, x + w - 1]
    return tuple(int(v) for v in np.median(edge, axis=0))


def caption(image: np.ndarray, box: list[int]) -> str:
    """Tesseract's reading of the caption drawn in a tile's top-left corner."""
    import pytesseract
    x, y, w, h = box
    corner = image[y:y + h // 2, x:x + w]
    # The caption is a flat (30, 30, 30) box inside the outline: its first row and first column
    # are box colour only (padding), which gives its width and height.
    flat = (corner == 30).all(axis=2)
    top, left = np.argwhere(flat)[0]
    width = np.argmin(np.append(flat[top, left:], False))
    height = np.argmin(np.append(flat[top:, left], False))
    crop = corner[top:top + height, left:left + width]
    big = cv2.resize(cv2.copyMakeBorder(crop, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=(30, 30, 30)), None,
                     fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    return " ".join(pytesseract.image_to_string(big, config="--psm 7").split())


def as_key(text: str) -> str:
    """A caption's tile key as drawn: Tesseract often reads the digit 1 of ``r1c1`` as ``l``."""
    return text.replace("l", "1").replace("I", "1")


def test_check_on_a_screenshot_draws_every_tile_with_its_student_and_state(screenshot, gallery, tmp_path,
                                                                          config_home, capsys):
    if not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed: the captions are read back with it")
    out, js = tmp_path / "check.png", tmp_path / "check.json"
    code, stdout, stderr = run_check(capsys, screenshot, "--out", out, "--json", js, "--accept-notice")
    assert code == 0, stderr
    record = json.loads(js.read_text())
    truth = truth_states(gallery)
    assert {t["key"] for t in record["tiles"]} == set(truth)
    assert {f["tile"] for f in record["faces"]} == {k for k, s in truth.items() if s == "present"}

    picture = cv2.imread(str(out))
    assert picture.shape == gallery.image.shape
    named = 0
    for tile, label in zip(record["tiles"], gallery.labels):
        state = truth[tile["key"]]
        assert outline(picture, tile["box"]) == STATE_COLORS[state]
        read = caption(picture, tile["box"])
        expected_state = state.replace("_", " ")
        who, _, shown_state = read.partition(": ")
        assert shown_state == expected_state and (who == label or as_key(who) == tile["key"]), read
        named += read.startswith(label)

    # The table once (every student's row), then the one summary line, on stdout.
    assert stdout.count("Class mood") == 1
    faces = len(record["faces"])
    summary = stdout.strip().splitlines()[-1]
    assert summary == f"9 tiles (3x3), {faces} faces, {named} names read; 1 camera off, 0 no face"
    assert named == sum(not TILE_KEY.fullmatch(s["id"]) for s in record["students"]) >= 1
    assert f"check picture: {out} (it shows the students' faces" in stderr


def test_no_face_tiles_are_marked_for_the_teacher(gallery, tmp_path, config_home, capsys):
    """A tile with video but no face (here: an empty room) is outlined in the no-face colour and counted."""
    from fer_overlay.demo import load_faces
    faces = list(load_faces()[0][10:14])
    faces[1] = np.full((48, 48), 128, np.uint8)   # a flat grey picture: video, no face
    shot, out = tmp_path / "room.png", tmp_path / "check.png"
    cv2.imwrite(str(shot), compose_gallery(faces, 2, 2, (1280, 720)).image)
    code, stdout, _ = run_check(capsys, shot, "--out", out, "--no-ocr", "--no-table", "--accept-notice",
                                "--json", tmp_path / "c.json")
    assert code == 0
    record = json.loads((tmp_path / "c.json").read_text())
    states = {s["id"]: s["status"] for s in record["students"]}
    assert states["r1c2"] == "no_face"
    picture = cv2.imread(str(out))
    boxes = {t["key"]: t["box"] for t in record["tiles"]}
    assert outline(picture, boxes["r1c2"]) == STATE_COLORS["no_face"]
    assert outline(picture, boxes["r1c1"]) == STATE_COLORS["present"]
    no_face = list(states.values()).count("no_face")
    assert stdout.strip().splitlines()[-1] == (f"4 tiles (2x2), {len(record['faces'])} faces, 0 names read; "
                                               f"{list(states.values()).count('camera_off')} camera off, "
                                               f"{no_face} no face")


def test_aggregate_only_keeps_names_out_of_the_picture(screenshot, gallery, tmp_path, config_home, capsys):
    if not shutil.which("tesseract"):
        pytest.skip("tesseract is not installed: the captions are read back with it")
    out, js = tmp_path / "check.png", tmp_path / "check.json"
    code, stdout, _ = run_check(capsys, screenshot, "--out", out, "--json", js, "--aggregate-only", "--accept-notice")
    assert code == 0
    assert json.loads(js.read_text())["students"] == []
    assert not any(name in stdout for name in NAMES)
    picture = cv2.imread(str(out))
    for tile in gallery.tiles:
        box = [tile.box.x, tile.box.y, tile.box.w, tile.box.h]
        assert as_key(caption(picture, box).split(":")[0]) == tile.key


def test_an_excluded_student_is_not_in_the_picture(screenshot, gallery, tmp_path, config_home, capsys):
    out = tmp_path / "check.png"
    code, stdout, _ = run_check(capsys, screenshot, "--out", out, "--exclude", "r1c1", "--no-ocr", "--no-table",
                                "--accept-notice")
    assert code == 0
    assert stdout.strip().startswith("8 tiles (3x3)")
    box = gallery.tiles[0].box
    assert not cv2.imread(str(out))[box.y:box.y2, box.x:box.x2].any()   # the whole tile black, face included
    other = gallery.tiles[1].box
    assert cv2.imread(str(out))[other.y:other.y2, other.x:other.x2].any()


def test_check_needs_the_notice_accepted_and_writes_nothing_before(screenshot, tmp_path, config_home):
    out = tmp_path / "check.png"
    done = subprocess.run([sys.executable, "-m", "fer_overlay.cli", "check", str(screenshot), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "XDG_CONFIG_HOME": str(config_home)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("error: the responsible-use notice above has not been accepted; "
                                                    "run 'fer-overlay check' once in a terminal, or pass --accept-notice")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["missing.png"], "error: image missing.png: not found; give a PNG or JPEG file"),
    (["{shot}", "--out", "check.xyz"], "error: --out check.xyz: cannot write .xyz files; use .bmp, .jpeg, .jpg, .png"),
    (["{shot}", "--model", "{broken}"], "is corrupt"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, screenshot, tmp_path, config_home, capsys):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 100)
    argv = [a.format(shot=screenshot, broken=broken) for a in args]
    if "--out" not in argv:
        argv += ["--out", tmp_path / "check.png"]
    code, _, stderr = run_check(capsys, *argv, "--accept-notice", "--no-table")
    assert code == 2
    error = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and message in error[0] and "Traceback" not in stderr


def test_two_sources_are_refused(screenshot, capsys):
    with pytest.raises(SystemExit) as done:
        main(["check", str(screenshot), "--window", "Zoom"])
    assert done.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_screen_errors_are_one_line(xvfb, screenshot, config_home):
    env = {**os.environ, "DISPLAY": xvfb, "XDG_CONFIG_HOME": str(config_home)}
    for args, message in [(["--region", "1000,600,500,400"], "lies outside the screen"),
                          (["--monitor", "5"], "monitor 5 does not exist")]:
        done = subprocess.run([sys.executable, "-m", "fer_overlay.cli", "check", *args, "--accept-notice",
                               "--no-table"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        error = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and error.startswith("error:") and message in error, done.stderr
