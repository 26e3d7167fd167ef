"""npairs.show_config() (python -m npairs) against the library under test and
its libnpairs-build.json; which built CUDA code a device runs."""

import io
import json
import os
import re
import subprocess
import sys

import pytest

import npairs
from npairs import _config, _lib


def _shown():
    out = io.StringIO()
    npairs.show_config(file=out)
    return out.getvalue(), {k: v.strip() for k, v in (line.split(":", 1) for line in out.getvalue().splitlines())}


def test_loaded_file_is_the_library_loaded():
    path = _config.loaded_file(_lib.load().npairs_version_number)
    assert os.path.isabs(path) and os.path.realpath(path) == path
    assert os.path.basename(path).startswith("libnpairs.so")
    named = _lib.library_path()  # a path, or a name the system loader resolved
    assert os.path.samefile(path, named) if os.path.sep in named else os.path.exists(path)


def test_show_config_reports_the_library_and_its_build():
    text, fields = _shown()
    assert fields["npairs"].startswith(f"{npairs.__version__} ("), text
    library = _config.loaded_file(_lib.load().npairs_version_number)
    assert fields["library"] == f"{library} (libnpairs {npairs.library_version()}; {_lib.library_origin()})", text
    config_file = os.path.join(os.path.dirname(library), _config.BUILD_CONFIG_NAME)
    with open(config_file, encoding="utf-8") as f:
        config = json.load(f)
    assert config["version"] == npairs.library_version()
    assert fields["build"] == f"{config['build_type']}, {config['cxx_compiler']}, OpenMP {config['openmp']}", text
    cuda_usable = npairs.backend_available("cuda")
    if not config["cuda_backend"]:
        assert fields["backends"] == "cpu: usable; cuda: not built (a CPU-only library)", text
        assert "CUDA build" not in fields, text
    else:
        cuda = "usable" if cuda_usable else "built, not usable"
        assert fields["backends"].startswith(f"cpu: usable; cuda: {cuda}"), text
        assert fields["CUDA build"] == (f"toolkit {config['cuda_toolkit']}, architectures "
                                        f"{', '.join(config['cuda_architectures'])}"), text
    # The OpenBLAS loaded, with the core whose kernels it chose (what a slow BLAS shows in a bug report).
    assert re.match(r"OpenBLAS \S+ .*; core \w+, (pthreads|OpenMP) threading, \d+ threads \(/.+\)$", fields["BLAS"]), text
    assert "CUDA driver" in fields and fields["python"].startswith(sys.version.split()[0]), text


def test_python_m_npairs_prints_show_config():
    shown, _ = _shown()
    out = subprocess.run([sys.executable, "-m", "npairs"], check=True, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(npairs.__file__))))
    assert out.stdout == shown


def test_show_config_without_a_library_says_why(tmp_path):
    missing = tmp_path / "missing" / "libnpairs.so"
    code = "import npairs; npairs.show_config()"
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, NPAIRS_LIBRARY=str(missing),
                                  PYTHONPATH=os.path.dirname(os.path.dirname(npairs.__file__))))
    assert re.search(r"^library: +not loaded: libnpairs", out.stdout, re.M) and str(missing) in out.stdout, out.stdout
    assert "python:" in out.stdout


@pytest.mark.parametrize("architectures, capability, expected", [
    (["80", "90"], (9, 0), "runs sm_90 code"),
    (["80", "90"], (8, 9), "runs sm_80 code"),
    (["80", "90"], (10, 0), "runs compute_90 PTX, compiled by the driver"),
    (["80-real", "90-real"], (10, 0), "no code built for it: the CUDA backend cannot run there"),
    (["80-virtual"], (8, 0), "runs compute_80 PTX, compiled by the driver"),
    (["90"], (8, 0), "no code built for it: the CUDA backend cannot run there"),
    (["90a"], (9, 0), "runs sm_90a code"),
    (["90a", "80-real"], (10, 0), "no code built for it: the CUDA backend cannot run there"),
    (["90", "100"], (12, 0), "runs compute_100 PTX, compiled by the driver"),
    (["native"], (9, 0), None),
])
def test_which_built_code_a_device_runs(architectures, capability, expected):
    assert _config._runs_on(architectures, *capability) == expected
