#!/usr/bin/env bash
# Creates build/venv (or VENV): a venv of the system Python 3 with PyPI's
# PyTorch (>= 2.4, used on the CPU: torch.compile, torch.library.custom_op),
# NumPy, pytest, Keras 3 with TensorFlow (CPU) and JAX (CPU) for npairs.keras
# and npairs.jax. CTest's python-pypi test runs the Python suite in it, and
# configuring finds jax in it to build npairs.jax's FFI handlers (jax-ffi/).
# Idempotent: a venv made for the same requirements whose packages import is
# kept as it is (a few seconds); otherwise it is made anew (a few minutes on
# a 2-core machine, about 6 GB: PyPI's torch wheel brings its CUDA libraries).
#
# Disk is what a CI machine runs short of (one ran out of space inside a
# single `pip install` of everything: 3.5 GB of wheels held in pip's cache
# and its temporary folder while 7 GB were unpacked). So pip keeps no cache,
# and installs in three steps, each of whose downloads is deleted before the
# next: torch alone, then torch's own requirements but Triton (1.3 GB, used
# only by torch.compile on GPUs; the CPU's inductor compiles C++ without it),
# then the rest.
#
# Usage: bash .ci/python-venv.sh [VENV]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${1:-build/venv}
python=/usr/bin/python3
[[ -x "${python}" ]] || python="$(command -v python3)"
# torch first: it is installed on its own (below).
requirements=("torch>=2.4" numpy pytest "keras>=3" "tensorflow-cpu>=2.16" "jax[cpu]")
stamp="${venv}/npairs-requirements.txt"
# Keras and TensorFlow are checked by their metadata: importing them takes
# seconds (and keras would import a backend).
check='import importlib.metadata as md, torch, numpy, pytest, jax.ffi
major, minor = (int(v) for v in torch.__version__.split(".")[:2])
assert (major, minor) >= (2, 4), torch.__version__
keras, tf = md.version("keras"), md.version("tensorflow-cpu")
assert int(keras.split(".")[0]) >= 3, keras
assert tuple(int(v) for v in tf.split(".")[:2]) >= (2, 16), tf
print(f"torch {torch.__version__}, numpy {numpy.__version__}, pytest {pytest.__version__}, keras {keras}, "
      f"tensorflow-cpu {tf}, jax {jax.__version__}")'

if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${requirements[*]}" ]] &&
   versions=$("${venv}/bin/python" -c "${check}" 2>/dev/null); then
  echo "python-venv: ${venv} is ready (${versions})"
  exit 0
fi

start=${SECONDS}
echo "python-venv: creating ${venv} with ${requirements[*]} (PyPI)"
rm -rf "${venv}"
"${python}" -m venv "${venv}"
pip=("${venv}/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir --no-warn-conflicts)
# torch's requirements, as its metadata lists them: markers are left for pip
# to evaluate; extras (`; extra == ...`) and triton are left out.
torch_requirements='import importlib.metadata as md
for r in md.requires("torch") or []:
    if "extra ==" not in r and not r.lower().startswith("triton"):
        print(r)'
if ! { "${pip[@]}" --no-deps "${requirements[0]}" &&
       mapfile -t torch_deps < <("${venv}/bin/python" -c "${torch_requirements}") &&
       "${pip[@]}" "${torch_deps[@]}" &&
       "${pip[@]}" "${requirements[@]:1}"; }; then
  echo "python-venv: pip failed; free disk under ${venv}: $(df -h --output=avail "${venv}" | tail -n1)" >&2
  exit 1
fi
versions=$("${venv}/bin/python" -c "${check}")
echo "${requirements[*]}" >"${stamp}"
echo "python-venv: ${venv} ready in $((SECONDS - start)) s (${versions})"
