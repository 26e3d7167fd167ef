#!/usr/bin/env bash
# Creates build/venv (or VENV): a venv of the system Python 3 with PyPI's
# PyTorch (>= 2.4, used on the CPU: torch.compile, torch.library.custom_op),
# NumPy and pytest. CTest's python-pypi test runs the Python suite in it.
# Idempotent: a venv made for the same requirements whose packages import is
# kept as it is (a few seconds); otherwise it is made anew (70 to 150 s on a
# 2-core machine, 5.4 GB: PyPI's torch wheel brings its CUDA libraries).
#
# Usage: bash .ci/python-venv.sh [VENV]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${1:-build/venv}
python=/usr/bin/python3
[[ -x "${python}" ]] || python="$(command -v python3)"
requirements=("torch>=2.4" numpy pytest)
stamp="${venv}/npairs-requirements.txt"
check='import torch, numpy, pytest
major, minor = (int(v) for v in torch.__version__.split(".")[:2])
assert (major, minor) >= (2, 4), torch.__version__
print(f"torch {torch.__version__}, numpy {numpy.__version__}, pytest {pytest.__version__}")'

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
