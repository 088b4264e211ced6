"""README set-up command 2 exactly as written, on a machine with and without sudo.

``apt-get``, ``pip`` and ``python`` are stand-ins that log their arguments (nothing is installed,
no tests run twice); the shell's own logic, the ``$S`` for sudo, is what runs for real.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

STUB = '#!/bin/sh\necho "${0##*/} $*" >> "$CALLS"\n'
SUDO = '#!/bin/sh\necho "sudo $*" >> "$CALLS"\nexec "$@"\n'


def command_2() -> str:
    setup = (REPO / "README.md").read_text(encoding="utf-8").split("## Set-up", 1)[1]
    line = next(line for line in setup.splitlines() if line.rstrip().endswith("# 2. the tests"))
    return line.rsplit("# 2.", 1)[0].strip()


@pytest.mark.parametrize("with_sudo", [False, True])
def test_command_2_runs_as_root_without_sudo_and_as_a_user_with_it(with_sudo, tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name, text in [("apt-get", STUB), ("pip", STUB), ("python", STUB)] + ([("sudo", SUDO)] if with_sudo else []):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    # Only the stand-ins on PATH: no real sudo, apt-get or pip can be reached.
    done = subprocess.run([bash, "-c", command_2()], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          env={"PATH": str(bin_dir), "CALLS": str(calls)})
    assert done.returncode == 0, done.stderr
    packages = re.search(r"apt-get install -y ([^&]+)&&", command_2())[1].split()
    assert {"xvfb", "tesseract-ocr", "tesseract-ocr-kor"} <= set(packages)
    apt = ["apt-get update", f"apt-get install -y {' '.join(packages)}"]
    expected = ([f"sudo {call}" for call in apt] + apt) if with_sudo else apt
    logged = calls.read_text().splitlines()
    assert sorted(logged[:len(expected)]) == sorted(expected)
    assert logged[len(expected):] == ["pip install -e .[test]", "python -m pytest -q"]
