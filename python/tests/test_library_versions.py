"""A 1.0 libnpairs still loads for the loss; each call that needs 1.1 raises a clear error naming its function.

The 1.0 library is the built one seen through a ctypes.CDLL that lacks the
symbols of cmake/npairs.map's NPAIRS_1.1 node (read from the map, not from
the package), as the loader would find a 1.0 libnpairs.so.1; it also records
every name the package looks up, so the test sees what loading needs.
"""

import ctypes
import pathlib
import re

import numpy as np
import pytest

import npairs
from npairs import _core, _lib
from npairs_reference import loss_and_grads, targets_from_labels

MAP = pathlib.Path(__file__).resolve().parents[2] / "cmake" / "npairs.map"


def _version_node(name):
    """The symbols of one version node of the linker map."""
    text = MAP.read_text()
    body = re.search(r"\b" + re.escape(name) + r"\s*\{\s*global:(.*?)(?:local:.*?)?\}", text, re.S).group(1)
    return set(re.findall(r"\b(npairs_\w+)\s*;", body))


ADDED_IN_1_1 = _version_node("NPAIRS_1.1")


class Library10(ctypes.CDLL):
    """The library without its 1.1 symbols; `looked_up` lists every name asked of it."""

    looked_up = []

    def __getattr__(self, name):
        Library10.looked_up.append(name)
        if name in ADDED_IN_1_1:
            raise AttributeError(f"{self._name}: undefined symbol: {name}")
        return super().__getattr__(name)


@pytest.fixture
def library_1_0(monkeypatch):
    """The package with the 1.0 view of the library loaded afresh (and fresh contexts)."""
    path = _lib.library_path()
    _core.empty_cache()
    for name, value in (("_lib", None), ("_path", None), ("_origin", None), ("_declared", {})):
        monkeypatch.setattr(_lib, name, value)  # restored after the test, with the real library
    monkeypatch.setattr(_lib.ctypes, "CDLL", Library10)
    monkeypatch.setenv(_lib.ENV_VAR, path)
    Library10.looked_up = []
    yield _lib.load()
    _core.empty_cache()  # contexts made through the 1.0 view go with it


def test_the_map_has_the_1_1_node():
    assert {"npairs_block_stats", "npairs_gradients_init_sized", "npairs_workspace_size"} <= ADDED_IN_1_1


def test_a_1_0_library_loads_and_computes_the_loss(library_1_0):
    assert isinstance(library_1_0, Library10)
    assert not set(Library10.looked_up) & ADDED_IN_1_1, "loading looked up 1.1 symbols"
    A = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    loss, grad = npairs.npairs_loss([0, 0, 1, 1], A @ A.T, return_grad=True)
    assert abs(loss - 1.253856022085945) <= 1e-15
    expected = loss_and_grads(targets_from_labels([0, 0, 1, 1]), A @ A.T)[1]
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)
    loss = npairs.npairs_embeddings_loss([0, 0, 1, 1], A, A, reg_lambda=0.0)
    assert abs(loss - 1.253856022085945) <= 1e-15


@pytest.mark.parametrize("call, name", [
    (lambda: npairs.select_hard_classes(np.eye(4), 2), "npairs_select_hard_classes"),
    (lambda: npairs.npairs_loss([0, 0, 1, 1], np.eye(4), workspace_limit=4096), "npairs_context_set_workspace_limit"),
])
def test_a_1_1_call_on_a_1_0_library_names_the_function(library_1_0, call, name):
    with pytest.raises(npairs.UnsupportedError, match=f"has no {name}; it needs libnpairs 1.1 or newer"):
        call()


def test_the_temperature_gradient_on_a_1_0_library(library_1_0):
    with pytest.raises(npairs.UnsupportedError, match="does not compute dL/dtemperature"):
        npairs.npairs_loss([0, 0, 1, 1], np.eye(4), return_temperature_grad=True)


def test_column_blocks_on_a_1_0_library(library_1_0):
    with pytest.raises(npairs.UnsupportedError, match="has no npairs_block_stats; it needs libnpairs 1.1"):
        _lib.function("npairs_block_stats")
