#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages libnpairs needs to build and test, when
# they are missing. Idempotent: when everything is present it only checks
# (a fraction of a second) and installs nothing.
#
#   As root:      apt-get installs the missing packages.
#   Not as root:  prints the missing package names and exits 1 (only when a
#                 required one is missing).
#
# Required: the C/C++ toolchain, OpenBLAS, GoogleTest, Google Benchmark, and
# Python 3 with NumPy, pytest and venv (ctest runs the Python package's tests,
# and builds and installs its wheel in a fresh venv: the `wheel` test; the
# venv of PyPI packages for the `python-pypi` test is .ci/python-venv.sh's).
# Optional: PyTorch (CPU build, python3-torch): its tests are skipped without
# it; installed when missing and the package index has it.
#
# With --checks (as .ci/run does), also required: the tools of CI's
# reliability checks (docs/RELIABILITY.md): clang with its sanitizer and
# libFuzzer runtimes and its OpenMP (the fuzz preset), and abigail-tools
# (abidw, abidiff: .ci/check-abi.sh). GCC's sanitizer runtimes (the asan
# preset) come with g++.
#
# The CUDA toolkit is not installed here: the CUDA backend is built when nvcc
# is found (on PATH, or through CUDACXX), and skipped otherwise.
set -euo pipefail

required=(cmake g++ make pkg-config libopenblas-dev libopenblas-openmp-dev libgtest-dev libbenchmark-dev
          python3 python3-numpy python3-pytest python3-venv)
optional=(python3-torch)
if [[ "${1:-}" == --checks ]]; then
  required+=(clang libclang-rt-dev libomp-dev abigail-tools)
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: not a Debian-like system (no dpkg-query); make sure these, or your" >&2
  echo "install-deps: distribution's equivalents, are installed: ${required[*]} (optional: ${optional[*]})" >&2
  exit 0
fi

is_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

missing=()
for p in "${required[@]}"; do
  is_installed "$p" || missing+=("$p")
done
missing_optional=()
for p in "${optional[@]}"; do
  is_installed "$p" || missing_optional+=("$p")
done

if ((${#missing[@]} == 0 && ${#missing_optional[@]} == 0)); then
  echo "install-deps: all packages present (${required[*]} ${optional[*]})"
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  if ((${#missing[@]} == 0)); then
    echo "install-deps: required packages present; optional, missing: ${missing_optional[*]}" >&2
    exit 0
  fi
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root, or: sudo apt-get install -y --no-install-recommends ${missing[*]} ${missing_optional[*]}" >&2
  exit 1
fi

has_candidate() {
  [[ -n "$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]]
}

# Only optional packages missing, and the package index offers none of them:
# nothing to do (and no apt-get update on every run).
if ((${#missing[@]} == 0)); then
  available=0
  for p in "${missing_optional[@]}"; do
    if has_candidate "$p"; then available=1; fi
  done
  if ((available == 0)); then
    echo "install-deps: required packages present; optional, not available here: ${missing_optional[*]}"
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update"
apt-get update -qq
# Optional packages are installed only when the package index has them.
install=("${missing[@]}")
for p in "${missing_optional[@]}"; do
  if has_candidate "$p"; then
    install+=("$p")
  else
    echo "install-deps: optional package $p is not available here; skipping it"
  fi
done
if ((${#install[@]} > 0)); then
  echo "install-deps: installing ${install[*]}"
  apt-get install -y -qq --no-install-recommends "${install[@]}" >/dev/null
fi

still=()
for p in "${missing[@]}"; do
  is_installed "$p" || still+=("$p")
done
if ((${#still[@]} > 0)); then
  echo "install-deps: failed to install: ${still[*]}" >&2
  exit 1
fi
echo "install-deps: done"
