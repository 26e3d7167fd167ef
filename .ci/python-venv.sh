#!/usr/bin/env bash
# Creates build/venv (or VENV): a venv of the system Python 3 with PyPI's
# PyTorch (>= 2.4, used on the CPU: torch.compile, torch.library.custom_op),
# NumPy, pytest, Keras 3 with TensorFlow (CPU) and JAX (CPU) for npairs.keras
# and npairs.jax. CTest's python-pypi test runs the Python suite in it, and
# configuring finds jax in it to build npairs.jax's FFI handlers (jax-ffi/).
# Idempotent: a venv made for the same requirements whose packages import is
# kept as it is (a few seconds); otherwise it is made anew (a few minutes on
# a 2-core machine, about 7 GB: PyPI's torch wheel brings its CUDA libraries).
#
# Usage: bash .ci/python-venv.sh [VENV]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${1:-build/venv}
python=/usr/bin/python3
[[ -x "${python}" ]] || python="$(command -v python3)"
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
"${venv}/bin/python" -m pip install -q --disable-pip-version-check "${requirements[@]}"
versions=$("${venv}/bin/python" -c "${check}")
echo "${requirements[*]}" >"${stamp}"
echo "python-venv: ${venv} ready in $((SECONDS - start)) s (${versions})"
