#!/usr/bin/env bash
# The ABI check. Builds the library with debug info (the `abi` preset:
# CPU-only, RelWithDebInfo) and compares its ABI, restricted to the public
# header include/npairs/, with the committed baseline abi/libnpairs.so.1.abi
# (abidiff: functions, their parameter and return types, the structs' layouts,
# the exported symbols and their version). Each further LIBRARY given (CI
# passes the CUDA-enabled ci build, which has no debug info) is compared the
# same way, which for a library without debug info compares the exported
# symbols.
#
#   bash .ci/check-abi.sh [LIBRARY...]   check; fails on any ABI change
#   bash .ci/check-abi.sh --update       rewrite the baseline (after an intended change)
#
# Then the library against the 1.0 release's baseline (abi/libnpairs.so.1.0.abi)
# with abi/1.0-compatible.suppr: nothing 1.0 published may change or go,
# except the struct growth that file names; added symbols are fine.
#
# abidiff's exit status is a bit set: 1 error, 2 usage error, 4 ABI change,
# 8 incompatible ABI change. Any of them fails the check: an incompatible
# change needs a new major version (SONAME); a compatible one (an added
# function) needs the baseline updated with --update, and reviewed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly baseline=abi/libnpairs.so.1.abi
readonly headers=include/npairs

cmake --preset abi >/dev/null
cmake --build --preset abi -j "$(nproc)" >/dev/null
readonly library=build/abi/libnpairs.so.1

if [[ "${1:-}" == --update ]]; then
  # Only what the public header declares and the library exports. Source
  # locations stay (abidiff needs them to tell the header's types from
  # private ones), relative to the checkout (the preset's -ffile-prefix-map);
  # with no build paths and hashed type ids a rebuild anywhere writes the
  # same file.
  abidw --headers-dir "${headers}" --drop-private-types --exported-interfaces-only \
    --no-corpus-path --no-comp-dir-path --no-elf-needed --type-id-style hash \
    --out-file "${baseline}" "${library}"
  echo "check-abi: wrote ${baseline}"
  exit 0
fi

status=0
for candidate in "${library}" "$@"; do
  echo "check-abi: abidiff ${baseline} ${candidate}"
  rc=0
  abidiff --headers-dir2 "${headers}" --drop-private-types "${baseline}" "${candidate}" || rc=$?
  if ((rc & 8)); then
    echo "check-abi: FAILED: incompatible ABI change in ${candidate} (needs a new major version)" >&2
  elif ((rc & 4)); then
    echo "check-abi: FAILED: ABI change in ${candidate}; if intended and compatible, run: bash .ci/check-abi.sh --update" >&2
  elif ((rc != 0)); then
    echo "check-abi: FAILED: abidiff could not compare ${candidate} (exit status ${rc})" >&2
  else
    echo "check-abi: ${candidate}: same ABI as the baseline"
  fi
  ((rc == 0)) || status=1
done
readonly release_baseline=abi/libnpairs.so.1.0.abi
echo "check-abi: abidiff --no-added-syms ${release_baseline} ${library} (suppressions: abi/1.0-compatible.suppr)"
rc=0
abidiff --headers-dir2 "${headers}" --drop-private-types --no-added-syms \
  --suppressions abi/1.0-compatible.suppr "${release_baseline}" "${library}" || rc=$?
if ((rc != 0)); then
  echo "check-abi: FAILED: ${library} changes what 1.0 published (abidiff exit status ${rc})" >&2
  status=1
else
  echo "check-abi: ${library}: compatible with 1.0 (additions only)"
fi
exit "${status}"
