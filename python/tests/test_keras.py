"""npairs.keras on each Keras 3 backend: keras_cases.py in a process of its own per KERAS_BACKEND.

Keras picks its backend once per process, at import, so each backend gets a
fresh interpreter (this one's) running keras_cases.py under pytest; its
report is shown when it fails. Skipped with the reason when keras >= 3, or
the backend's package, is not installed here.
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _keras_major():
    try:
        return int(importlib.metadata.version("keras").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_keras_backend(backend):
    major = _keras_major()
    if major is None or major < 3:
        pytest.skip(f"keras >= 3 is not installed (found {major}); pip install 'keras>=3'")
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"the {backend} backend's package {BACKENDS[backend]} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
         os.path.join(HERE, "keras_cases.py")],
        env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    report = run.stdout[-6000:]
    assert run.returncode == 0, f"keras_cases.py with KERAS_BACKEND={backend} failed:\n{report}"
    summary = report.strip().splitlines()[-1]
    if " passed" not in summary:
        pytest.skip(f"KERAS_BACKEND={backend}: {summary}")
    print(f"KERAS_BACKEND={backend}: {summary}")
