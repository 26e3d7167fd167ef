#!/usr/bin/env bash
# Runs VENV/bin/PROGRAM with ARGS; when the venv has no such program, says so
# and exits 77, the SKIP_RETURN_CODE of the CTest tests that use it.
# Usage: in-venv.sh VENV PROGRAM [ARGS...]
set -euo pipefail
venv=$1 program=$2
shift 2
if [[ ! -x ${venv}/bin/${program} ]]; then
  echo "skipped: ${venv}/bin/${program} is missing; create the venv with: bash .ci/python-venv.sh" >&2
  exit 77
fi
exec "${venv}/bin/${program}" "$@"
