"""Runs examples/torch_train.py, the PyTorch training loop of the README."""

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "torch_train.py"


def test_torch_training_loop_learns():
    env = dict(os.environ)
    package_dir = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = package_dir + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retrieval accuracy" in result.stdout
