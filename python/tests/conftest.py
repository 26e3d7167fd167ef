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
            f"\n{_lib.ENV_VAR} is not set: build libnpairs (cmake --preset release && cmake --build --preset release) "
            f"and run with {_lib.ENV_VAR}=build/release/libnpairs.so"
        )
        raise pytest.UsageError(f"npairs tests need libnpairs: {e}{hint}") from None


def pytest_report_header(config):
    import npairs

    return f"libnpairs {npairs.library_version()} from {npairs.library_path()}; CUDA backend available: " \
           f"{npairs.backend_available('cuda')}"


class LibraryCall:
    """What one npairs_loss call was handed: copies of its structs, and its raw output pointers."""

    def __init__(self, options, problem, grad_loss, loss, grads):
        from npairs import _lib

        self.options = _lib.Options.from_buffer_copy(options._obj) if options is not None else None
        self.problem = _lib.Problem.from_buffer_copy(problem._obj)
        self.grad_loss = grad_loss
        self.loss = loss
        self.grads = _lib.Gradients.from_buffer_copy(grads._obj) if grads is not None else None


@pytest.fixture
def library_calls(monkeypatch):
    """Every npairs_loss call the package makes during the test, recorded before it is made."""
    from npairs import _lib

    lib = _lib.load()
    real = lib.npairs_loss
    calls = []

    def spy(ctx, options, problem, grad_loss, loss, grads):
        calls.append(LibraryCall(options, problem, grad_loss, loss, grads))
        return real(ctx, options, problem, grad_loss, loss, grads)

    monkeypatch.setattr(lib, "npairs_loss", spy)
    return calls


def _context_settings(monkeypatch, setter):
    """Every value handed to the library's npairs_context_set_* function setter(ctx, value) during the test.

    The context cache is emptied before and after, so each value is set on a
    fresh context (starting at the library's default, 0) and no context keeps
    one the spy saw set.
    """
    import npairs
    from npairs import _lib

    lib = _lib.load()
    real = getattr(lib, setter)
    settings = []

    def spy(ctx, value):
        settings.append(value)
        return real(ctx, value)

    monkeypatch.setattr(lib, setter, spy)
    npairs.empty_cache()
    yield settings
    npairs.empty_cache()


@pytest.fixture
def thread_settings(monkeypatch):
    """Every thread count handed to npairs_context_set_threads during the test (on fresh contexts)."""
    yield from _context_settings(monkeypatch, "npairs_context_set_threads")


@pytest.fixture
def limit_settings(monkeypatch):
    """Every limit handed to npairs_context_set_workspace_limit during the test (on fresh contexts)."""
    yield from _context_settings(monkeypatch, "npairs_context_set_workspace_limit")
