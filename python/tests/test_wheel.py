"""The one install: `pip wheel .` from a clean copy of the source builds the
package with libnpairs and PyPI's OpenBLAS (scipy-openblas32) inside it
(scikit-build-core, pyproject.toml), and the wheel, installed into a fresh
venv, computes with no NPAIRS_LIBRARY.

CTest's `wheel` test runs this file alone. The build is CPU-only (a CMake
option passed as pip passes them) and without tests or benchmarks, on 2
cores. pip needs PyPI for scikit-build-core and scipy-openblas32 (the
build's isolated environment) and NumPy (the venv); the test skips only when
Python cannot make a venv (Debian: python3-venv).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

import npairs
from npairs import _config, _lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
# SPEC §1: tfa.losses.npairs_loss of the 4 x 2 example below.
TFA_VALUE = 1.253856022085945
EXAMPLE = """
import importlib.metadata, json, numpy as np, npairs
labels = np.array([0, 0, 1, 1]); a = np.array([[1., 1], [1, -1], [-1, 1], [-1, -1]])
print(json.dumps({"loss": float(npairs.npairs_loss(labels, a @ a.T)), "library": npairs.library_path(),
                  "package": npairs.__file__, "version": npairs.__version__,
                  "library_version": npairs.library_version(), "dist_version": importlib.metadata.version("npairs")}))
"""
# The embeddings input, whose GEMMs run in the bundled OpenBLAS: loss and gradients of random odd-sized
# float64 inputs against the softmax cross-entropy written out in NumPy, on every core and on one thread.
EMBEDDINGS = """
import json, numpy as np, npairs
rng = np.random.default_rng(11); R, M, D = 67, 67, 29
labels = rng.integers(0, 9, R); a, p = rng.standard_normal((R, D)), rng.standard_normal((M, D))
z = a @ p.T
t = (labels[:, None] == labels[None, :]) / (labels[:, None] == labels[None, :]).sum(1, keepdims=True)
log_softmax = z - z.max(1, keepdims=True)
log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
dz = (np.exp(log_softmax) - t) / R
want = [-(t * log_softmax).sum() / R, dz @ p, dz.T @ a]
errors = {}
for threads in (None, 1):
    loss, (ga, gp) = npairs.npairs_embeddings_loss(labels, a, p, threads=threads, return_grads=True)
    errors[str(threads)] = max(float(np.max(np.abs(g - w)) / np.max(np.abs(w))) for g, w in zip([loss, ga, gp], want))
print(json.dumps(errors))
"""


def _not_in_a_clone(directory, names):
    """What a fresh clone has not: .git, build trees, caches, a library copied into the package by hand."""
    here = pathlib.Path(directory)
    return {
        n for n in names
        if n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")
        or (here == ROOT and (n == ".git" or n == "out" or n.startswith("build")))
        or (here == ROOT / "python" / "npairs" and n.startswith("libnpairs"))
    }


def _environment(**extra):
    """This environment without what would point the package or the build elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if k not in (_lib.ENV_VAR, "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CMAKE_ARGS")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _launch(args, cwd, **extra_env):
    """Runs args in cwd under _environment(extra_env); its output and status."""
    return subprocess.run([str(a) for a in args], cwd=cwd, env=_environment(**extra_env), check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(args, cwd, **extra_env):
    """Runs args as _launch does; its output, once it has exited 0."""
    done = _launch(args, cwd, **extra_env)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-6000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, wheel, build log): the wheel built from a clean copy, installed in a fresh venv."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_not_in_a_clone, symlinks=True)
    venv = work / "venv"
    made = _launch([sys.executable, "-m", "venv", venv], cwd=work)
    if made.returncode != 0 and ("ensurepip" in made.stdout or "No module named venv" in made.stdout):
        pytest.skip(f"{sys.executable} cannot make a venv (Debian: apt-get install python3-venv): "
                    f"{made.stdout.strip()}")
    assert made.returncode == 0, made.stdout
    python = venv / "bin" / "python"
    log = _run([python, "-m", "pip", "wheel", "-v", "--no-deps", "-w", work / "dist",
                "--config-settings=cmake.define.NPAIRS_ENABLE_CUDA=OFF", source],
               cwd=work, CMAKE_BUILD_PARALLEL_LEVEL="2")
    wheels = sorted((work / "dist").glob("*.whl"))
    assert len(wheels) == 1, wheels
    _run([python, "-m", "pip", "install", "-q", wheels[0]], cwd=work)
    return python, wheels[0], log


def test_wheel_holds_the_library(installed):
    _, wheel, log = installed
    assert re.fullmatch(rf"npairs-{re.escape(npairs.__version__)}-py3-none-linux_\w+\.whl", wheel.name), wheel.name
    assert "libnpairs: CUDA backend OFF, CPU only: NPAIRS_ENABLE_CUDA is OFF" in log
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"npairs/__init__.py", "npairs/__main__.py", "npairs/_config.py", "npairs/_lib.py",
                "npairs/libnpairs.so.1", "npairs/libnpairs-build.json"} <= names
        # One library file, no copies of it under its other names, no caches.
        assert sorted(n for n in names if "libnpairs" in n) == ["npairs/libnpairs-build.json", "npairs/libnpairs.so.1"]
        assert not [n for n in names if "__pycache__" in n or n.startswith(("include/", "lib/"))]
        assert z.read("npairs/libnpairs.so.1")[:4] == b"\x7fELF"
        # PyPI's scipy-openblas32 beside it, with OpenBLAS's licence (BSD) in the metadata.
        assert z.read("npairs/libscipy_openblas.so")[:4] == b"\x7fELF"
        licences = [n for n in names if re.fullmatch(r"npairs-[^/]+\.dist-info/licenses/scipy-openblas32/.+", n)]
        assert licences and b"OpenBLAS" in z.read(licences[0]), sorted(names)
        config = json.loads(z.read("npairs/libnpairs-build.json"))
    assert config["version"] == npairs.__version__
    assert config["cuda_backend"] is False and config["cuda_architectures"] == []
    assert [pathlib.Path(b).name for b in config["blas_libraries"]] == ["libscipy_openblas.so"], config
    assert "libnpairs: BLAS scipy-openblas32 " in log


def test_installed_package_computes_embeddings_with_the_bundled_blas(installed, tmp_path):
    python, _, _ = installed
    errors = json.loads(_run([python, "-c", EMBEDDINGS], cwd=tmp_path))
    assert all(e <= 1e-12 for e in errors.values()), errors


def test_installed_package_computes_with_no_environment_variable(installed, tmp_path):
    python, _, _ = installed
    out = json.loads(_run([python, "-c", EXAMPLE], cwd=tmp_path))
    assert abs(out["loss"] - TFA_VALUE) <= 1e-12 * TFA_VALUE, out
    package_dir = pathlib.Path(out["package"]).parent
    assert package_dir.is_relative_to(python.parent.parent), out
    assert pathlib.Path(out["library"]) == package_dir / "libnpairs.so.1", out
    assert out["version"] == out["library_version"] == out["dist_version"] == npairs.__version__, out


def test_npairs_library_overrides_the_bundled_library(installed, tmp_path):
    python, _, _ = installed
    this_library = _config.loaded_file(_lib.load().npairs_version_number)
    out = json.loads(_run([python, "-c", EXAMPLE], cwd=tmp_path, NPAIRS_LIBRARY=this_library))
    assert out["library"] == this_library and abs(out["loss"] - TFA_VALUE) <= 1e-12 * TFA_VALUE, out
    missing = tmp_path / "no" / "libnpairs.so"
    failed = _launch([python, "-c", EXAMPLE], cwd=tmp_path, NPAIRS_LIBRARY=str(missing))
    assert failed.returncode != 0
    assert "LibraryNotFoundError" in failed.stdout and f"$NPAIRS_LIBRARY={missing}" in failed.stdout, failed.stdout


def test_python_m_npairs_shows_the_configuration(installed, tmp_path):
    python, _, _ = installed
    shown = _run([python, "-m", "npairs"], cwd=tmp_path)
    fields = dict(line.split(":", 1) for line in shown.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    venv_lib = python.parent.parent / "lib"
    assert fields["npairs"].startswith(f"{npairs.__version__} ("), shown
    library = fields["library"].split(" (")[0]
    assert library.endswith("/npairs/libnpairs.so.1") and pathlib.Path(library).is_relative_to(venv_lib), shown
    assert "next to the package" in fields["library"], shown
    assert fields["backends"] == "cpu: usable; cuda: not built (a CPU-only library)", shown
    # The bundled OpenBLAS, loaded, and the kernels it chose for this processor.
    blas = re.fullmatch(r"OpenBLAS \S+ .*; core (\w+), pthreads threading, \d+ threads \((.+)\)", fields["BLAS"])
    assert blas and blas[1] != "Unknown", shown
    assert pathlib.Path(blas[2]) == pathlib.Path(library).parent / "libscipy_openblas.so", shown
    assert fields["build"].startswith("Release, "), shown
    assert "CUDA driver" in fields and "python" in fields, shown
