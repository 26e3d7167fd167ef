"""npairs.jax: values against the float64 reference, gradients (jax.test_util.check_grads), jit, vmap, errors."""

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'jax[cpu]')")
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import npairs  # noqa: E402
import npairs.jax as nj  # noqa: E402
import npairs_reference as ref  # noqa: E402

pytestmark = pytest.mark.skipif(not nj.available(), reason=f"npairs.jax's FFI handlers are not built "
                                f"({nj.ffi_library_path()} is missing: configure with jax importable, "
                                "-DNPAIRS_JAX_PYTHON=/path/to/python)")

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "sum", "sum_over_batch_size"]


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):
    """The dtype of the case; float64 with jax_enable_x64 on for the test only."""
    if request.param == np.float64:
        jax.config.update("jax_enable_x64", True)
        yield request.param
        jax.config.update("jax_enable_x64", False)
    else:
        yield request.param


def test_ffi_handlers_registered():
    assert "cpu" in nj._register()


def test_tfa_vectors():
    """TensorFlow Addons' own test values (losses/tests/npairs_test.py)."""
    f = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], np.float32)
    S = f @ f.T
    np.testing.assert_allclose(nj.npairs_loss(jnp.array([0, 1, 2, 3]), S), 0.253856, rtol=1e-6, atol=1e-6)
    Y = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    np.testing.assert_allclose(nj.npairs_multilabel_loss(Y, S), 1.420522, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nj.npairs_multilabel_loss(np.eye(4), S), 0.253856, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nj.npairs_loss(jnp.array([0, 0, 1, 1]), S), 1.253856022085945, rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_labels_value_and_grad(dtype, reduction, weighted):
    rng = np.random.default_rng(ref.seed("labels", reduction, weighted, dtype))
    R, M = 13, 17
    labels = ref.random_labels(rng, R, 4)
    column_labels = np.concatenate([labels, ref.random_labels(rng, M - R, 4)])
    S = rng.standard_normal((R, M)).astype(dtype)
    w = rng.random(R).astype(dtype) if weighted else None
    g = rng.standard_normal(R if reduction == "none" else ()).astype(dtype)
    T = ref.targets_from_labels(labels, column_labels)
    loss, dS, _, _ = ref.loss_and_grads(T, S=S, temperature=0.7, weights=w, reduction=reduction, grad_loss=g)

    def f(s):
        return nj.npairs_loss(labels, s, w, reduction=reduction, temperature=0.7, column_labels=column_labels)

    got, vjp = jax.vjp(jax.jit(f), jnp.asarray(S))
    assert got.dtype == dtype
    ref.assert_matches(got, loss, dtype)
    (grad,) = vjp(jnp.asarray(g))
    assert grad.dtype == dtype
    ref.assert_matches(grad, dS, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_value_and_grad(dtype, reduction):
    rng = np.random.default_rng(ref.seed("multilabel", reduction, dtype))
    R = 11
    Y = ref.random_multilabels(rng, R, 5)
    S = rng.standard_normal((R, R)).astype(dtype)
    loss, dS, _, _ = ref.loss_and_grads(ref.targets_from_multilabels(Y), S=S, reduction=reduction)
    got = nj.npairs_multilabel_loss(Y, S, reduction=reduction)
    ref.assert_matches(got, loss, dtype)
    grad = jax.grad(lambda s: jnp.sum(nj.npairs_multilabel_loss(Y, s, reduction=reduction)))(jnp.asarray(S))
    ref.assert_matches(grad, dS, dtype)


@pytest.mark.parametrize("multilabel", [False, True])
def test_embeddings_value_and_grad(dtype, multilabel):
    rng = np.random.default_rng(ref.seed("embeddings", multilabel, dtype))
    R, M, D = 9, 12, 5
    labels = ref.random_multilabels(rng, R, 4) if multilabel else ref.random_labels(rng, R, 3)
    column_labels = (np.concatenate([labels, ref.random_multilabels(rng, M - R, 4)]) if multilabel
                     else np.concatenate([labels, ref.random_labels(rng, M - R, 3)]))
    A = rng.standard_normal((R, D)).astype(dtype)
    P = rng.standard_normal((M, D)).astype(dtype)
    T = (ref.targets_from_multilabels if multilabel else ref.targets_from_labels)(labels, column_labels)
    loss, _, dA, dP = ref.loss_and_grads(T, A=A, P=P, temperature=1.3, reg_lambda=0.002)

    def f(a, p):
        return nj.npairs_embeddings_loss(labels, a, p, reg_lambda=0.002, temperature=1.3, column_labels=column_labels)

    got, (gA, gP) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(A, P)
    ref.assert_matches(got, loss, dtype)
    ref.assert_matches(gA, dA, dtype)
    ref.assert_matches(gP, dP, dtype)


def test_check_grads_finite_differences():
    """jax.test_util.check_grads in float64: reverse mode against finite differences."""
    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.default_rng(ref.seed("check_grads"))
        labels = ref.random_labels(rng, 7, 3)
        S = rng.standard_normal((7, 7))
        A, P = rng.standard_normal((7, 4)), rng.standard_normal((7, 4))
        w = rng.random(7)
        check_grads(lambda s: nj.npairs_loss(labels, s, w, temperature=0.9), (S,), order=1, modes=["rev"])
        check_grads(lambda s: nj.npairs_loss(labels, s, reduction="none"), (S,), order=1, modes=["rev"])
        check_grads(lambda a, p: nj.npairs_embeddings_loss(labels, a, p, reg_lambda=0.01), (A, P), order=1,
                    modes=["rev"])
        # Per-row upstream gradients of embeddings: the backward pass is a second library call.
        check_grads(lambda a, p: nj.npairs_embeddings_loss(labels, a, p, reduction="none"), (A, P), order=1,
                    modes=["rev"])
    finally:
        jax.config.update("jax_enable_x64", False)


def test_vmap_is_one_problem_at_a_time():
    rng = np.random.default_rng(ref.seed("vmap"))
    labels = ref.random_labels(rng, 6, 3)
    S = rng.standard_normal((4, 6, 6)).astype(np.float32)
    got = jax.jit(jax.vmap(lambda s: nj.npairs_loss(labels, s)))(S)
    for b in range(4):
        ref.assert_matches(got[b], ref.loss_and_grads(ref.targets_from_labels(labels), S=S[b])[0], np.float32)


def test_labels_and_weights_shapes():
    rng = np.random.default_rng(ref.seed("shapes"))
    labels = ref.random_labels(rng, 8, 3)
    S = rng.standard_normal((8, 8)).astype(np.float32)
    expected = nj.npairs_loss(labels, S, 0.5)
    np.testing.assert_array_equal(nj.npairs_loss(labels.reshape(8, 1), S, np.full((8, 1), 0.5)), expected)
    np.testing.assert_array_equal(nj.npairs_loss(labels.astype(np.uint8), S, np.full(8, 0.5)), expected)


def test_empty_batch():
    assert float(nj.npairs_loss(np.zeros(0, np.int32), np.zeros((0, 0), np.float32))) == 0.0


def test_errors_before_the_call():
    S = np.zeros((4, 4), np.float32)
    with pytest.raises(npairs.InvalidArgumentError, match="y_true has 3 labels but y_pred has 4 rows"):
        jax.jit(lambda s: nj.npairs_loss(jnp.array([0, 1, 2]), s))(S)
    with pytest.raises(npairs.InvalidArgumentError, match="y_pred must be 2-D"):
        nj.npairs_loss(jnp.array([0, 1, 2, 3]), np.zeros(4, np.float32))
    with pytest.raises(npairs.InvalidArgumentError, match="column_labels"):
        nj.npairs_loss(jnp.array([0, 1, 2, 3]), np.zeros((4, 5), np.float32))
    with pytest.raises(npairs.InvalidDTypeError, match="y_true must hold integer class labels"):
        nj.npairs_loss(jnp.array([0.0, 1.0, 2.0, 3.0]), S)
    with pytest.raises(npairs.InvalidDTypeError, match="y_pred has dtype complex64"):
        nj.npairs_loss(jnp.array([0, 1, 2, 3]), S.astype(np.complex64))
    with pytest.raises(npairs.UnsupportedError, match="CPU backend does not compute"):
        nj.npairs_loss(jnp.array([0, 1, 2, 3]), jnp.asarray(S, jnp.float16))
    with pytest.raises(npairs.InvalidArgumentError, match="temperature"):
        nj.npairs_loss(jnp.array([0, 1, 2, 3]), S, temperature=0.0)
    with pytest.raises(npairs.InvalidArgumentError, match="reduction"):
        nj.npairs_loss(jnp.array([0, 1, 2, 3]), S, reduction="mean_with_sample_weight")
    with pytest.raises(npairs.InvalidArgumentError, match="sample_weight must be a scalar or have shape"):
        nj.npairs_loss(jnp.array([0, 1, 2, 3]), S, np.ones(3, np.float32))
    with pytest.raises(npairs.InvalidArgumentError, match="reg_lambda must be 0 with reduction='none'"):
        nj.npairs_embeddings_loss(jnp.array([0, 1]), np.ones((2, 3), np.float32), np.ones((2, 3), np.float32),
                                  reg_lambda=0.1, reduction="none")


def test_data_errors_are_xla_errors_with_the_library_message():
    S = np.zeros((3, 3), np.float32)
    with pytest.raises(jax.errors.JaxRuntimeError, match="row 1 has no positive column"):
        jax.block_until_ready(jax.jit(lambda s: nj.npairs_loss(jnp.array([0, 1, 2]), s,
                                                               column_labels=jnp.array([0, 2, 2])))(S))
    with pytest.raises(jax.errors.JaxRuntimeError, match="negative"):
        jax.block_until_ready(nj.npairs_multilabel_loss(np.array([[1.0, -1.0], [0.0, 1.0], [1.0, 0.0]]), S))


def test_threads_follow_the_package_setting():
    rng = np.random.default_rng(ref.seed("threads"))
    labels = ref.random_labels(rng, 40, 5)
    S = rng.standard_normal((40, 40)).astype(np.float32)
    expected = ref.loss_and_grads(ref.targets_from_labels(labels), S=S)[0]
    previous = npairs.get_num_threads()
    npairs.set_num_threads(1)
    try:
        ref.assert_matches(jax.jit(lambda s: nj.npairs_loss(labels, s))(S), expected, np.float32)
    finally:
        npairs.set_num_threads(previous)
