"""npairs' functions against the independent NumPy reference (SPEC section 1)."""

import os

import numpy as np
import pytest

import npairs
import npairs_reference as ref

CHECK_A = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.float64)
CHECK_LABELS = np.array([0, 0, 1, 1])
CHECK_VALUE = 1.253856022085945

DTYPES = [np.float32, np.float64]


def weights_for(kind, rng, R):
    return {"none": None, "scalar": 0.75, "vector": rng.random(R) + 0.25}[kind]


# ---------------------------------------------------------------------------
# The SPEC check value


def test_check_value_similarity():
    loss = npairs.npairs_loss(CHECK_LABELS, CHECK_A @ CHECK_A.T)
    assert abs(loss - CHECK_VALUE) <= 1e-15


def test_check_value_embeddings():
    loss = npairs.npairs_embeddings_loss(CHECK_LABELS, CHECK_A, CHECK_A, reg_lambda=0.0)
    assert abs(loss - CHECK_VALUE) <= 1e-15


def test_check_value_reference():
    loss, *_ = ref.loss_and_grads(ref.targets_from_labels(CHECK_LABELS), A=CHECK_A, P=CHECK_A)
    assert abs(loss - CHECK_VALUE) <= 1e-15


def test_embeddings_default_has_no_l2_term_and_0002_is_tf_contrib():
    assert abs(npairs.npairs_embeddings_loss(CHECK_LABELS, CHECK_A, CHECK_A) - CHECK_VALUE) <= 1e-15
    assert abs(npairs.NpairsEmbeddingsLoss()(CHECK_LABELS, CHECK_A, CHECK_A) - CHECK_VALUE) <= 1e-15
    # tf.contrib.losses.metric_learning.npairs_loss(labels, anchors, positives), whose reg_lambda is 0.002
    loss = npairs.npairs_embeddings_loss(CHECK_LABELS, CHECK_A, CHECK_A, reg_lambda=0.002)
    expected = CHECK_VALUE + 0.25 * 0.002 * (2.0 + 2.0)
    assert abs(loss - expected) <= 1e-15


# ---------------------------------------------------------------------------
# Labels and a similarity matrix


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ref.REDUCTIONS)
@pytest.mark.parametrize("weights", ["none", "scalar", "vector"])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_labels_similarity(dtype, reduction, weights, label_dtype):
    rng = np.random.default_rng(ref.seed(np.dtype(dtype).name, reduction, weights, np.dtype(label_dtype).name))
    R = 13
    labels = ref.random_labels(rng, R, 5).astype(label_dtype)
    S = (rng.standard_normal((R, R)) * 3).astype(dtype)
    w = weights_for(weights, rng, R)
    tau = 0.7
    loss, grad = npairs.npairs_loss(labels, S, w, reduction=reduction, temperature=tau, return_grad=True)
    ref_loss, ref_grad, _, _ = ref.loss_and_grads(ref.targets_from_labels(labels), S=S, temperature=tau, weights=w,
                                                  reduction=reduction)
    assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
    assert np.shape(loss) == ((R,) if reduction == "none" else ())
    assert grad.shape == (R, R)
    ref.assert_matches(loss, ref_loss, dtype)
    ref.assert_matches(grad, ref_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ref.REDUCTIONS)
def test_column_labels_and_grad_loss(dtype, reduction):
    rng = np.random.default_rng(7)
    R, M = 7, 11
    col = ref.random_labels(rng, M, 4)
    labels = col[rng.integers(0, M, size=R)]  # every row has a positive column
    S = rng.standard_normal((R, M)).astype(dtype)
    g = rng.standard_normal(R) if reduction == "none" else 1.7
    w = rng.random(R)
    loss, grad = npairs.npairs_loss(labels, S, w, column_labels=col, reduction=reduction, grad_loss=g,
                                    return_grad=True)
    ref_loss, ref_grad, _, _ = ref.loss_and_grads(ref.targets_from_labels(labels, col), S=S, weights=w,
                                                  reduction=reduction, grad_loss=g)
    ref.assert_matches(loss, ref_loss, dtype)
    ref.assert_matches(grad, ref_grad, dtype)


def test_label_forms_are_equivalent():
    rng = np.random.default_rng(3)
    labels = ref.random_labels(rng, 9, 3)
    S = rng.standard_normal((9, 9))
    expected = npairs.npairs_loss(labels, S)
    for form in (labels.astype(np.int32), labels.reshape(-1, 1), labels.astype(np.float32), labels.astype(np.uint8),
                 list(labels), labels + 2**40):
        assert npairs.npairs_loss(form, S) == expected
    assert npairs.npairs_loss(labels, S.tolist()) == expected


def test_labels_compare_as_exact_integers():
    # 2**53 and 2**53 + 1 are equal as float64 but are different labels.
    labels = np.array([2**53, 2**53 + 1, 2**53, 2**53 + 1], dtype=np.int64)
    S = np.arange(16.0).reshape(4, 4) / 10
    expected, *_ = ref.loss_and_grads(ref.targets_from_labels(labels), S=S)
    ref.assert_matches(npairs.npairs_loss(labels, S), expected, np.float64)


def test_non_contiguous_inputs_are_copied():
    rng = np.random.default_rng(4)
    labels = ref.random_labels(rng, 6, 2)
    big = rng.standard_normal((12, 12))
    S = big[::2, ::2]
    assert not S.flags.c_contiguous
    np.testing.assert_allclose(npairs.npairs_loss(labels, S), npairs.npairs_loss(labels, S.copy()), rtol=0)
    np.testing.assert_allclose(npairs.npairs_loss(labels, np.asfortranarray(S)), npairs.npairs_loss(labels, S.copy()),
                               rtol=0)


@pytest.mark.parametrize("reduction", ref.REDUCTIONS)
def test_zero_rows(reduction):
    loss, grad = npairs.npairs_loss(np.zeros(0, np.int64), np.zeros((0, 0)), reduction=reduction, return_grad=True)
    if reduction == "none":
        assert loss.shape == (0,)
    else:
        assert loss == 0.0
    assert grad.shape == (0, 0)


def test_large_logits_stay_finite_float32():
    labels = np.arange(5)
    S = np.full((5, 5), -1e30, dtype=np.float32)
    np.fill_diagonal(S, 1e30)
    loss = npairs.npairs_loss(labels, S)
    assert np.isfinite(loss) and loss == 0.0


# ---------------------------------------------------------------------------
# Multi-label targets


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ref.REDUCTIONS)
@pytest.mark.parametrize("weights", ["none", "vector"])
def test_multilabels_similarity(dtype, reduction, weights):
    rng = np.random.default_rng(11)
    R, K = 9, 6
    Y = ref.random_multilabels(rng, R, K)
    Y[0] *= 2.5  # non-binary non-negative targets are allowed
    S = (rng.standard_normal((R, R)) * 2).astype(dtype)
    w = weights_for(weights, rng, R)
    loss, grad = npairs.npairs_multilabel_loss(Y, S, w, reduction=reduction, temperature=1.3, return_grad=True)
    ref_loss, ref_grad, _, _ = ref.loss_and_grads(ref.targets_from_multilabels(Y), S=S, temperature=1.3, weights=w,
                                                  reduction=reduction)
    assert grad.dtype == dtype
    ref.assert_matches(loss, ref_loss, dtype)
    ref.assert_matches(grad, ref_grad, dtype)


def test_multilabels_with_columns():
    rng = np.random.default_rng(12)
    R, M, K = 5, 8, 4
    Yc = ref.random_multilabels(rng, M, K)
    Y = Yc[rng.integers(0, M, size=R)]
    S = rng.standard_normal((R, M))
    loss, grad = npairs.npairs_multilabel_loss(Y.astype(bool), S, column_labels=Yc.astype(np.int32),
                                               return_grad=True)
    ref_loss, ref_grad, _, _ = ref.loss_and_grads(ref.targets_from_multilabels(Y, Yc), S=S)
    ref.assert_matches(loss, ref_loss, np.float64)
    ref.assert_matches(grad, ref_grad, np.float64)


def test_multilabels_from_sparse_tensor_like():
    class SparseLike:  # the attributes of a tf.SparseTensor
        def __init__(self, dense):
            self.indices = np.argwhere(dense != 0)
            self.values = dense[dense != 0]
            self.dense_shape = np.array(dense.shape)

    rng = np.random.default_rng(13)
    Y = ref.random_multilabels(rng, 6, 5)
    S = rng.standard_normal((6, 6))
    assert npairs.npairs_multilabel_loss(SparseLike(Y), S) == npairs.npairs_multilabel_loss(Y, S)


def test_one_hot_multilabels_equal_labels():
    rng = np.random.default_rng(14)
    labels = ref.random_labels(rng, 10, 4)
    S = rng.standard_normal((10, 10))
    ref.assert_matches(npairs.npairs_multilabel_loss(np.eye(4)[labels], S), npairs.npairs_loss(labels, S), np.float64)


# ---------------------------------------------------------------------------
# Embeddings


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ref.REDUCTIONS)
@pytest.mark.parametrize("multilabel", [False, True])
def test_embeddings(dtype, reduction, multilabel):
    rng = np.random.default_rng(21)
    R, D = 11, 5
    targets = ref.random_multilabels(rng, R, 4) if multilabel else ref.random_labels(rng, R, 4)
    T = ref.targets_from_multilabels(targets) if multilabel else ref.targets_from_labels(targets)
    A = rng.standard_normal((R, D)).astype(dtype)
    P = rng.standard_normal((R, D)).astype(dtype)
    reg = 0.0 if reduction == "none" else 0.05
    w = rng.random(R) + 0.5
    loss, (dA, dP) = npairs.npairs_embeddings_loss(targets, A, P, reg_lambda=reg, temperature=0.5,
                                                   reduction=reduction, sample_weight=w, return_grads=True)
    ref_loss, _, ref_dA, ref_dP = ref.loss_and_grads(T, A=A, P=P, temperature=0.5, weights=w, reduction=reduction,
                                                     reg_lambda=reg)
    assert dA.dtype == dtype and dP.dtype == dtype and dA.shape == (R, D) and dP.shape == (R, D)
    ref.assert_matches(loss, ref_loss, dtype)
    ref.assert_matches(dA, ref_dA, dtype)
    ref.assert_matches(dP, ref_dP, dtype)


def test_embeddings_with_columns_and_grad_loss():
    rng = np.random.default_rng(22)
    R, M, D = 6, 9, 3
    col = ref.random_labels(rng, M, 3)
    labels = col[rng.integers(0, M, size=R)]
    A, P = rng.standard_normal((R, D)), rng.standard_normal((M, D))
    loss, (dA, dP) = npairs.npairs_embeddings_loss(labels, A, P, column_labels=col, reg_lambda=0.1, reduction="sum",
                                                   grad_loss=-0.5, return_grads=True)
    ref_loss, _, ref_dA, ref_dP = ref.loss_and_grads(ref.targets_from_labels(labels, col), A=A, P=P, reduction="sum",
                                                     reg_lambda=0.1, grad_loss=-0.5)
    ref.assert_matches(loss, ref_loss, np.float64)
    ref.assert_matches(dA, ref_dA, np.float64)
    ref.assert_matches(dP, ref_dP, np.float64)


def test_mixed_float_dtypes_promote():
    rng = np.random.default_rng(23)
    A = rng.standard_normal((4, 3)).astype(np.float32)
    P = rng.standard_normal((4, 3))
    loss, (dA, dP) = npairs.npairs_embeddings_loss([0, 1, 0, 1], A, P, return_grads=True)
    assert dA.dtype == np.float64 and dP.dtype == np.float64


# ---------------------------------------------------------------------------
# Gradients by finite differences (of the library's own loss). Their
# tolerance is the central difference's error, not the library's: truncation
# h^2 |f^(3)| / 6 ~ 1e-12 plus rounding eps / h ~ 1e-10, with margin.


def _numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize("reduction", ["sum", "sum_over_batch_size"])
def test_similarity_gradient_finite_differences(reduction):
    rng = np.random.default_rng(31)
    labels = ref.random_labels(rng, 5, 2)
    S = rng.standard_normal((5, 5))
    w = rng.random(5)
    _, grad = npairs.npairs_loss(labels, S, w, reduction=reduction, temperature=0.8, return_grad=True)
    numeric = _numeric_grad(lambda s: npairs.npairs_loss(labels, s, w, reduction=reduction, temperature=0.8), S)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_none_reduction_gradient_finite_differences():
    rng = np.random.default_rng(32)
    labels = ref.random_labels(rng, 4, 2)
    S = rng.standard_normal((4, 4))
    g = rng.standard_normal(4)
    _, grad = npairs.npairs_loss(labels, S, reduction="none", grad_loss=g, return_grad=True)
    numeric = _numeric_grad(lambda s: float(np.dot(g, npairs.npairs_loss(labels, s, reduction="none"))), S)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_embeddings_gradient_finite_differences():
    rng = np.random.default_rng(33)
    labels = ref.random_multilabels(rng, 5, 3)
    A, P = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    kw = dict(reg_lambda=0.3, temperature=1.5)
    _, (dA, dP) = npairs.npairs_embeddings_loss(labels, A, P, return_grads=True, **kw)
    np.testing.assert_allclose(dA, _numeric_grad(lambda a: npairs.npairs_embeddings_loss(labels, a, P, **kw), A),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dP, _numeric_grad(lambda p: npairs.npairs_embeddings_loss(labels, A, p, **kw), P),
                               rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# Backends and contexts


def _backend_case():
    rng = np.random.default_rng(41)
    labels = ref.random_labels(rng, 8, 3)
    S = rng.standard_normal((8, 8))
    ref_loss, ref_grad, _, _ = ref.loss_and_grads(ref.targets_from_labels(labels), S=S, temperature=0.9)
    return labels, S, ref_loss, ref_grad


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_backend_matches_reference(backend):
    # NumPy arrays make 'auto' the CPU backend: each is held to the float64 reference, not to the other.
    labels, S, ref_loss, ref_grad = _backend_case()
    loss, grad = npairs.npairs_loss(labels, S, temperature=0.9, backend=backend, return_grad=True)
    ref.assert_matches(loss, ref_loss, np.float64)
    ref.assert_matches(grad, ref_grad, np.float64)


@pytest.mark.skipif(not npairs.backend_available("cuda"),
                    reason="no CUDA device (or a CPU-only libnpairs): the CUDA backend cannot be compared")
def test_cuda_backend_on_host_arrays_matches_reference():
    labels, S, ref_loss, ref_grad = _backend_case()
    loss, grad = npairs.npairs_loss(labels, S, temperature=0.9, backend="cuda", return_grad=True)
    ref.assert_matches(loss, ref_loss, np.float64)
    ref.assert_matches(grad, ref_grad, np.float64)


def test_contexts_are_cached_per_thread_and_reproducible():
    import threading

    from npairs import _core, _lib

    c1 = _core.context(_lib.BACKEND_CPU, 0)
    assert _core.context(_lib.BACKEND_CPU, 0) is c1
    rng = np.random.default_rng(42)
    labels = ref.random_labels(rng, 31, 4)
    S = rng.standard_normal((31, 31))
    expected = npairs.npairs_loss(labels, S, return_grad=True)
    results, others = [], []

    def work():
        others.append(_core.context(_lib.BACKEND_CPU, 0))
        for _ in range(20):
            results.append(npairs.npairs_loss(labels, S, return_grad=True))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o is not c1 for o in others) and len({id(o) for o in others}) == 4
    for loss, grad in results:
        assert loss == expected[0]
        assert np.array_equal(grad, expected[1])


# ---------------------------------------------------------------------------
# Threads and cached workspace


def test_thread_count_reaches_the_library(thread_settings):
    labels, S, _, _ = _backend_case()
    try:
        npairs.set_num_threads(1)
        assert npairs.get_num_threads() == 1
        npairs.npairs_loss(labels, S)
        assert thread_settings == [1]
        npairs.npairs_loss(labels, S, threads=2)  # per call
        npairs.NpairsLoss(threads=3)(labels, S)
        assert thread_settings == [1, 2, 3]
    finally:
        npairs.set_num_threads(0)
    npairs.npairs_loss(labels, S)
    assert thread_settings[-1] == 0  # back to every core


def test_empty_cache_destroys_every_threads_contexts(monkeypatch):
    import threading

    from npairs import _core, _lib

    lib = _lib.load()
    real = lib.npairs_context_destroy
    destroyed = []
    monkeypatch.setattr(lib, "npairs_context_destroy", lambda h: (destroyed.append(getattr(h, "value", h)), real(h))[1])
    labels, S, ref_loss, _ = _backend_case()
    npairs.npairs_loss(labels, S)
    here = _core.context(_lib.BACKEND_CPU, 0)
    others = []
    ready, done = threading.Event(), threading.Event()

    def other_thread():
        npairs.npairs_loss(labels, S)
        others.append(_core.context(_lib.BACKEND_CPU, 0))
        ready.set()
        done.wait()

    t = threading.Thread(target=other_thread)
    t.start()
    ready.wait()
    handles = {here.handle.value, others[0].handle.value}
    del here, others[:]
    npairs.empty_cache()
    done.set()
    t.join()
    assert handles <= set(destroyed)  # the workspace of both threads' contexts is freed
    ref.assert_matches(npairs.npairs_loss(labels, S, temperature=0.9), ref_loss, np.float64)  # a fresh context works


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set size from /proc")
def test_empty_cache_returns_the_documented_workspace():
    # README, "Memory": a CPU embeddings call without dL/dS keeps R * M logits (float64 here);
    # 2100^2 * 8 bytes is above glibc's largest mmap threshold, so freeing it returns it to the system.
    R, page = 2100, os.sysconf("SC_PAGE_SIZE")

    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    rng = np.random.default_rng(43)
    A = rng.standard_normal((R, 4))
    npairs.npairs_embeddings_loss(np.arange(R), A, A, return_grads=True)
    before = resident()
    npairs.empty_cache()
    assert before - resident() >= 0.95 * R * R * 8
