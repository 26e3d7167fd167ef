"""An independent float64 reference of SPEC section 1, in plain loops and NumPy.

It never calls libnpairs.
"""

import math

import numpy as np

REDUCTIONS = ("none", "sum", "sum_over_batch_size")


def targets_from_labels(labels, column_labels=None):
    """T_ij = [l_i == c_j] / n_i, comparing the labels as Python integers."""
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    cols = labels if column_labels is None else [int(v) for v in np.asarray(column_labels).reshape(-1)]
    T = np.zeros((len(labels), len(cols)))
    for i, li in enumerate(labels):
        hits = [j for j, cj in enumerate(cols) if li == cj]
        assert hits, f"row {i} has no positive"
        for j in hits:
            T[i, j] = 1.0 / len(hits)
    return T


def targets_from_multilabels(Y, Yc=None):
    """G = Y Y'^T row-normalised."""
    Y = np.asarray(Y, dtype=np.float64)
    Yc = Y if Yc is None else np.asarray(Yc, dtype=np.float64)
    T = np.zeros((Y.shape[0], Yc.shape[0]))
    for i in range(Y.shape[0]):
        for j in range(Yc.shape[0]):
            T[i, j] = sum(Y[i, k] * Yc[j, k] for k in range(Y.shape[1]))
        total = T[i].sum()
        assert total > 0, f"row {i} has no positive"
        T[i] /= total
    return T


def _cross_entropy_rows(z, T):
    """For each row i of logits z against the target row T_i: loss_i = logsumexp_j z_ij - sum_j T_ij z_ij, and
    dloss_i/dz_ij = softmax(z_i)_j - T_ij, in plain loops (max-shifted)."""
    R, M = z.shape
    rows = np.zeros(R)
    dz = np.zeros((R, M))
    for i in range(R):
        m = max(z[i, j] for j in range(M))
        lse = m + math.log(sum(math.exp(z[i, j] - m) for j in range(M)))
        rows[i] = lse - sum(T[i, j] * z[i, j] for j in range(M) if T[i, j] != 0)
        for j in range(M):
            dz[i, j] = math.exp(z[i, j] - lse) - T[i, j]
    return rows, dz


def _logits(S, A, P):
    if S is None:
        A = np.asarray(A, dtype=np.float64)
        P = np.asarray(P, dtype=np.float64)
        S = A @ P.T
    return np.asarray(S, dtype=np.float64), A, P


def _l2_term(loss, dS, A, P, reg_lambda, g):
    """tf.contrib's L2 term added to the loss, and the embeddings' gradients (dL/dS P and dL/dS^T A plus it)."""
    R, M = dS.shape
    if reg_lambda:
        loss = loss + 0.25 * reg_lambda * (np.mean(np.sum(A * A, 1)) + np.mean(np.sum(P * P, 1)))
    dA = dS @ P + 0.5 * reg_lambda * g * A / max(R, 1)
    dP = dS.T @ A + 0.5 * reg_lambda * g * P / max(M, 1)
    return loss, dA, dP


def loss_and_grads(T, S=None, A=None, P=None, temperature=1.0, weights=None, reduction="sum_over_batch_size",
                   reg_lambda=0.0, grad_loss=None):
    """Returns (loss, dS, dA, dP) in float64; dA, dP are None for a similarity input."""
    S, A, P = _logits(S, A, P)
    R, M = S.shape
    w = np.ones(R) if weights is None else np.broadcast_to(np.asarray(weights, dtype=np.float64).reshape(-1), (R,))
    rows, dz = _cross_entropy_rows(S / temperature, T)
    r = 1.0 / R if (reduction == "sum_over_batch_size" and R > 0) else 1.0
    if reduction == "none":
        loss = w * rows
        g = np.ones(R) if grad_loss is None else np.broadcast_to(np.asarray(grad_loss, dtype=np.float64), (R,))
    else:
        loss = float(np.sum(w * rows)) * r
        g_scalar = 1.0 if grad_loss is None else float(np.asarray(grad_loss).reshape(()))
        g = np.full(R, g_scalar)
    dS = (g * w * r)[:, None] * dz / temperature
    dA = dP = None
    if A is not None:
        g0 = g[0] if R else (1.0 if grad_loss is None else float(np.asarray(grad_loss).reshape(())))
        loss, dA, dP = _l2_term(loss, dS, A, P, reg_lambda, g0)
    return loss, dS, dA, dP


def column_targets_from_labels(labels, column_labels=None):
    """SPEC section 5: T'_ji = [c_j == l_i] / n'_j, [M, R]: column j's targets over the rows."""
    return targets_from_labels(labels if column_labels is None else column_labels, labels)


def column_targets_from_multilabels(Y, Yc=None):
    """SPEC section 5: G' = Y' Y^T normalised per column, [M, R]."""
    return targets_from_multilabels(Y if Yc is None else Yc, Y)


def symmetric_loss_and_grads(T, Tc, S=None, A=None, P=None, temperature=1.0, reduction="sum_over_batch_size",
                             reg_lambda=0.0, grad_loss=None):
    """SPEC section 5's symmetric loss: (loss, dS, dA, dP, dL/dtau), float64.

    T: [R, M] row targets; Tc: [M, R] column targets. The loss is the mean
    of the rows' loss (sum, or mean over R) and the columns' loss over z^T
    (sum, or mean over M); the L2 term is added once.
    """
    if reduction not in ("sum", "sum_over_batch_size"):
        raise ValueError("the symmetric loss has scalar reductions only")
    S, A, P = _logits(S, A, P)
    R, M = S.shape
    z = S / temperature
    rows, dz_rows = _cross_entropy_rows(z, T)
    cols, dz_cols = _cross_entropy_rows(z.T, Tc)
    r_rows, r_cols = (1.0 / max(R, 1), 1.0 / max(M, 1)) if reduction == "sum_over_batch_size" else (1.0, 1.0)
    g = 1.0 if grad_loss is None else float(np.asarray(grad_loss).reshape(()))
    loss = 0.5 * (r_rows * float(np.sum(rows)) + r_cols * float(np.sum(cols)))
    dz = 0.5 * g * (r_rows * dz_rows + r_cols * dz_cols.T)
    dS = dz / temperature
    dtau = temperature_grad(dS, S, temperature)
    dA = dP = None
    if A is not None:
        loss, dA, dP = _l2_term(loss, dS, A, P, reg_lambda, g)
    return loss, dS, dA, dP, dtau


def temperature_grad(dS, S, temperature):
    """SPEC section 5: dL/dtau = -(1/tau) sum_ij (dL/dz_ij) z_ij, with z = S / tau and dL/dz = tau dL/dS.

    (From z_ij = S_ij / tau: dz_ij/dtau = -z_ij / tau; the L2 term does not depend on tau.)
    """
    dS = np.asarray(dS, dtype=np.float64)
    S = np.asarray(S, dtype=np.float64)
    total = 0.0
    for i in range(S.shape[0]):
        for j in range(S.shape[1]):
            total += (temperature * dS[i, j]) * (S[i, j] / temperature)
    return -total / temperature


def random_labels(rng, n, classes):
    return rng.integers(0, classes, size=n)


def random_multilabels(rng, n, classes, density=0.3):
    """Multi-hot rows with at least one positive each (so Y Y^T has a positive diagonal)."""
    Y = (rng.random((n, classes)) < density).astype(np.float64)
    for i in range(n):
        if not Y[i].any():
            Y[i, rng.integers(classes)] = 1.0
    return Y


# The project's tolerances: float32 agrees to 1e-5 relative, float64 to 1e-12.
RTOL = {np.dtype("float32"): 1e-5, np.dtype("float64"): 1e-12}


def assert_matches(got, expected, dtype):
    """got agrees with the float64 reference to dtype's relative tolerance, element by element.

    The absolute floor, rtol times the largest |expected|, is for cancellation:
    a gradient entry is a difference softmax - T (or a sum of such terms), so
    its rounding error is that of the largest entries, not of itself.
    """
    rtol = RTOL[np.dtype(dtype)]
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    floor = rtol * float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=floor)


def seed(*params):
    """A fixed seed per test case: crc32 of the parameters' text (never hash(), which changes every process)."""
    import zlib

    return zlib.crc32(repr(params).encode())
