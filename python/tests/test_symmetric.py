"""CLIP's loss (SPEC section 5) through the NumPy API: symmetric=True and dL/dtemperature.

Every figure is compared with npairs_reference's float64 loops (the column
targets and dL/dtau written from the spec), and dL/dtau with central
finite differences of the loss in temperature.
"""

import numpy as np
import pytest

import npairs
from npairs_reference import (
    assert_matches,
    column_targets_from_labels,
    column_targets_from_multilabels,
    loss_and_grads,
    random_labels,
    random_multilabels,
    seed,
    symmetric_loss_and_grads,
    targets_from_labels,
    targets_from_multilabels,
    temperature_grad,
)

SCALAR = ("sum", "sum_over_batch_size")
CHECK = np.array([[1.0, 1], [1, -1], [-1, 1], [-1, -1]])


def case(kind, R=13, M=None, D=5, classes=4, dtype=np.float64, params=()):
    """(targets, column targets or None, T, Tc, A, P) of a random problem; M != R gives column targets."""
    rng = np.random.default_rng(seed(kind, R, M, D, *params))
    M = R if M is None else M
    if kind == "labels":
        cols = random_labels(rng, M, classes)
        cols[:classes] = np.arange(classes)  # every row label below has a column, and the reverse
        rows = cols[rng.integers(0, M, size=R)] if M != R else cols
        rows[:classes] = np.arange(classes)
        T, Tc = targets_from_labels(rows, cols), column_targets_from_labels(rows, cols)
    else:
        rows = random_multilabels(rng, R, classes)
        cols = random_multilabels(rng, M, classes) if M != R else rows
        rows[:, 0] = 1  # class 0 everywhere: every row and every column has a positive
        cols[:, 0] = 1
        T, Tc = targets_from_multilabels(rows, cols), column_targets_from_multilabels(rows, cols)
    A = rng.standard_normal((R, D)).astype(dtype)
    P = rng.standard_normal((M, D)).astype(dtype)
    return rows, (cols if M != R else None), T, Tc, A, P


def test_check_value_is_the_row_loss_when_s_and_labels_are_symmetric():
    labels = np.array([0, 0, 1, 1])
    S = CHECK @ CHECK.T
    assert abs(npairs.npairs_loss(labels, S, symmetric=True) - 1.253856022085945) <= 1e-15
    assert abs(npairs.npairs_embeddings_loss(labels, CHECK, CHECK, symmetric=True) - 1.253856022085945) <= 1e-15


def test_reference_temperature_gradient_is_the_derivative_of_the_reference_loss():
    """The reference's own dL/dtau (both directions, and rows only) against its loss's finite differences."""
    rows, cols, T, Tc, A, P = case("labels", R=7, M=9)
    S = A @ P.T
    for tau in (0.3, 1.7):
        h = 1e-6 * tau
        sym = [symmetric_loss_and_grads(T, Tc, S, temperature=t)[0] for t in (tau + h, tau - h)]
        assert symmetric_loss_and_grads(T, Tc, S, temperature=tau)[4] == pytest.approx(
            (sym[0] - sym[1]) / (2 * h), rel=1e-7)
        one = [loss_and_grads(T, S, temperature=t)[0] for t in (tau + h, tau - h)]
        assert temperature_grad(loss_and_grads(T, S, temperature=tau)[1], S, tau) == pytest.approx(
            (one[0] - one[1]) / (2 * h), rel=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", SCALAR)
@pytest.mark.parametrize("kind", ["labels", "multilabels"])
@pytest.mark.parametrize("M", [None, 17])
def test_symmetric_similarity_matches_reference(dtype, reduction, kind, M):
    rows, cols, T, Tc, A, P = case(kind, M=M, params=(dtype, reduction))
    S = (A @ P.T).astype(dtype)
    fn = npairs.npairs_loss if kind == "labels" else npairs.npairs_multilabel_loss
    loss, dS, dtau = fn(rows, S, reduction=reduction, temperature=0.6, column_labels=cols, symmetric=True,
                        return_grad=True, return_temperature_grad=True, grad_loss=1.7)
    ref_loss, ref_dS, _, _, ref_dtau = symmetric_loss_and_grads(T, Tc, S, temperature=0.6, reduction=reduction,
                                                                grad_loss=1.7)
    assert loss.dtype == dtype and dS.dtype == dtype and np.asarray(dtau).dtype == dtype and np.ndim(dtau) == 0
    assert_matches(loss, ref_loss, dtype)
    assert_matches(dS, ref_dS, dtype)
    assert_matches(dtau, ref_dtau, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", SCALAR)
@pytest.mark.parametrize("kind", ["labels", "multilabels"])
@pytest.mark.parametrize("workspace_limit", [0, 4096])  # 4096 bytes: the streamed path, in tiles
def test_symmetric_embeddings_matches_reference(dtype, reduction, kind, workspace_limit):
    rows, cols, T, Tc, A, P = case(kind, R=19, M=23, D=6, params=(dtype, reduction, workspace_limit))
    loss, (dA, dP), dtau = npairs.npairs_embeddings_loss(
        rows, A, P, column_labels=cols, multilabel=kind == "multilabels", reg_lambda=0.01, temperature=1.3,
        reduction=reduction, symmetric=True, return_grads=True, return_temperature_grad=True,
        workspace_limit=workspace_limit)
    ref_loss, _, ref_dA, ref_dP, ref_dtau = symmetric_loss_and_grads(T, Tc, A=A, P=P, temperature=1.3,
                                                                     reduction=reduction, reg_lambda=0.01)
    assert_matches(loss, ref_loss, dtype)
    assert_matches(dA, ref_dA, dtype)
    assert_matches(dP, ref_dP, dtype)
    assert_matches(dtau, ref_dtau, dtype)


@pytest.mark.parametrize("reduction", ["none", "sum", "sum_over_batch_size"])
@pytest.mark.parametrize("weighted", [False, True])
def test_temperature_gradient_of_the_row_loss(reduction, weighted):
    rows, cols, T, _, A, P = case("labels", M=11, params=(reduction, weighted))
    S = A @ P.T
    rng = np.random.default_rng(seed("weights", reduction))
    w = rng.random(len(rows)) + 0.5 if weighted else None
    g = rng.random(len(rows)) if reduction == "none" else np.float64(0.8)
    loss, dtau = npairs.npairs_loss(rows, S, w, reduction=reduction, temperature=0.45, column_labels=cols,
                                    grad_loss=g, return_temperature_grad=True)
    ref_loss, ref_dS, _, _ = loss_and_grads(T, S, temperature=0.45, weights=w, reduction=reduction, grad_loss=g)
    assert_matches(loss, ref_loss, np.float64)
    assert_matches(dtau, temperature_grad(ref_dS, S, 0.45), np.float64)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("inputs", ["similarity", "embeddings"])
def test_temperature_gradient_finite_differences(symmetric, inputs):
    """The library's dL/dtau against central differences of the library's own float64 loss."""
    rows, cols, _, _, A, P = case("labels", R=10, M=14, params=(symmetric, inputs))
    tau, h = 0.7, 1e-6

    def loss(t, **kw):
        if inputs == "similarity":
            return npairs.npairs_loss(rows, A @ P.T, temperature=t, column_labels=cols, symmetric=symmetric, **kw)
        return npairs.npairs_embeddings_loss(rows, A, P, temperature=t, column_labels=cols, symmetric=symmetric,
                                             reg_lambda=0.05, **kw)

    _, dtau = loss(tau, return_temperature_grad=True)
    assert dtau == pytest.approx((loss(tau + h) - loss(tau - h)) / (2 * h), rel=1e-6)


def test_gradients_of_one_call_are_those_of_separate_calls():
    """return_grad and return_temperature_grad together give what each gives alone (to rounding)."""
    rows, cols, _, _, A, P = case("labels", R=9)
    S = A @ P.T
    loss, dS, dtau = npairs.npairs_loss(rows, S, symmetric=True, return_grad=True, return_temperature_grad=True)
    alone_loss, alone_dtau = npairs.npairs_loss(rows, S, symmetric=True, return_temperature_grad=True)
    assert_matches(loss, alone_loss, np.float64)
    assert_matches(dtau, alone_dtau, np.float64)
    assert_matches(dS, npairs.npairs_loss(rows, S, symmetric=True, return_grad=True)[1], np.float64)


def test_loss_classes_take_symmetric():
    rows, cols, T, Tc, A, P = case("labels", R=8)
    S = A @ P.T
    ref = symmetric_loss_and_grads(T, Tc, S, temperature=0.5)[0]
    loss = npairs.NpairsLoss(temperature=0.5, symmetric=True)
    assert_matches(loss(rows, S), ref, np.float64)
    assert npairs.NpairsLoss.from_config(loss.get_config()) == loss and loss.get_config()["symmetric"] is True
    emb = npairs.NpairsEmbeddingsLoss(temperature=0.5, symmetric=True)
    assert_matches(emb(rows, A, P), symmetric_loss_and_grads(T, Tc, A=A, P=P, temperature=0.5)[0], np.float64)
    multi = npairs.NpairsMultilabelLoss(symmetric=True, reduction="sum")
    Y = np.eye(4)[rows % 4]
    assert_matches(multi(Y, S), symmetric_loss_and_grads(targets_from_multilabels(Y), column_targets_from_multilabels(Y),
                                                         S, reduction="sum")[0], np.float64)


# ---------------------------------------------------------------------------
# Bad input: Python raises before the call


def test_symmetric_needs_a_scalar_reduction(library_calls):
    with pytest.raises(npairs.InvalidArgumentError, match=r"symmetric=True needs a scalar reduction.*'none'"):
        npairs.npairs_loss([0, 0, 1, 1], CHECK @ CHECK.T, reduction="none", symmetric=True)
    with pytest.raises(npairs.InvalidArgumentError, match="symmetric=True needs a scalar reduction"):
        npairs.NpairsEmbeddingsLoss(reduction="none", symmetric=True)
    assert not library_calls


def test_symmetric_takes_no_sample_weight(library_calls):
    with pytest.raises(npairs.InvalidArgumentError, match="symmetric=True takes no sample_weight"):
        npairs.npairs_loss([0, 0, 1, 1], CHECK @ CHECK.T, np.ones(4), symmetric=True)
    with pytest.raises(npairs.InvalidArgumentError, match="symmetric=True takes no sample_weight"):
        npairs.npairs_embeddings_loss([0, 0, 1, 1], CHECK, CHECK, sample_weight=2.0, symmetric=True)
    with pytest.raises(npairs.InvalidArgumentError, match="symmetric must be True or False"):
        npairs.npairs_loss([0, 0, 1, 1], CHECK @ CHECK.T, symmetric="yes")
    assert not library_calls


def test_a_column_without_a_positive_row_is_named():
    # Column 2 has label 5, which no row has: fine for the rows, invalid for the columns.
    S = np.ones((2, 3))
    labels, columns = np.array([0, 1]), np.array([0, 1, 5])
    npairs.npairs_loss(labels, S, column_labels=columns)
    with pytest.raises(npairs.InvalidValueError, match="column 2"):
        npairs.npairs_loss(labels, S, column_labels=columns, symmetric=True)


def test_the_flags_reach_the_library(library_calls):
    from npairs import _lib

    npairs.npairs_loss([0, 0, 1, 1], CHECK @ CHECK.T, symmetric=True, return_temperature_grad=True)
    npairs.npairs_loss([0, 0, 1, 1], CHECK @ CHECK.T)
    sym, plain = library_calls
    assert sym.options.flags & _lib.FLAG_SYMMETRIC and not plain.options.flags & _lib.FLAG_SYMMETRIC
    assert sym.grads.temperature and sym.grads.similarity is None and plain.grads is None


def test_a_library_without_the_temperature_gradient(monkeypatch, library_calls):
    """A 1.0 library (no npairs_gradients_init_sized; its npairs_gradients_init writes the 1.0 struct_size):
    dL/dtau raises, the rest works."""
    from npairs import _lib

    monkeypatch.setattr(_lib.load(), "npairs_gradients_init_sized", None)
    S = CHECK @ CHECK.T
    with pytest.raises(npairs.UnsupportedError, match="does not compute dL/dtemperature"):
        npairs.npairs_loss([0, 0, 1, 1], S, return_temperature_grad=True)
    assert not library_calls
    loss, grad = npairs.npairs_loss([0, 0, 1, 1], S, return_grad=True)  # a 1.0-sized struct, read as before
    assert library_calls[0].grads.struct_size == _lib.GRADIENTS_SIZE_1_0
    assert abs(loss - 1.253856022085945) <= 1e-15
    assert_matches(grad, loss_and_grads(targets_from_labels([0, 0, 1, 1]), S)[1], np.float64)
