"""Test setup: import npairs from this working tree and make sure libnpairs loads.

The runner sets NPAIRS_LIBRARY to the built libnpairs.so; without it the
package's own lookup (next to the package, then the system loader) is tried,
and the session stops with a clear message when nothing is found.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # python/, holding the npairs package
sys.path.insert(0, HERE)  # npairs_reference


def pytest_configure(config):
    import npairs
    from npairs import _lib

    try:
        _lib.load()
    except npairs.LibraryNotFoundError as e:
        hint = "" if os.environ.get(_lib.ENV_VAR) else (
            f"\n{_lib.ENV_VAR} is not set: build libnpairs (cmake -S . -B build && cmake --build build) "
            f"and run with {_lib.ENV_VAR}=build/libnpairs.so"
        )
        raise pytest.UsageError(f"npairs tests need libnpairs: {e}{hint}") from None


def pytest_report_header(config):
    import npairs

    return f"libnpairs {npairs.library_version()} from {npairs.library_path()}; CUDA backend available: " \
           f"{npairs.backend_available('cuda')}"
