"""The one install: `pip wheel .` from a clean copy of the source builds the
package with libnpairs inside it (scikit-build-core, pyproject.toml), and the
wheel, installed into a fresh venv, computes with no NPAIRS_LIBRARY.

CTest's `wheel` test runs this file alone. The build is CPU-only (a CMake
option passed as pip passes them) and without tests or benchmarks, on 2
cores. pip needs PyPI for scikit-build-core (the build's isolated
environment) and NumPy (the venv); the test skips only when Python cannot
make a venv (Debian: python3-venv).
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
        config = json.loads(z.read("npairs/libnpairs-build.json"))
    assert config["version"] == npairs.__version__
    assert config["cuda_backend"] is False and config["cuda_architectures"] == []
    assert config["blas_libraries"] and all("openblas" in b for b in config["blas_libraries"])


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
    assert "OpenBLAS" in fields["BLAS"], shown
    assert fields["build"].startswith("Release, "), shown
    assert "CUDA driver" in fields and "python" in fields, shown
