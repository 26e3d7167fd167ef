"""Agreement with TensorFlow Addons, when tensorflow and tensorflow_addons are importable."""

import numpy as np
import pytest

# TensorFlow Addons first: without it TensorFlow is not imported at all (in
# one process with torch.compile's triton, TensorFlow 2.21 aborts the process).
tfa = pytest.importorskip("tensorflow_addons", reason="TensorFlow Addons is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

import npairs  # noqa: E402


def _data(seed, R=10, classes=4, K=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, R)
    S = rng.standard_normal((R, R))
    Y = (rng.random((R, K)) < 0.4).astype(np.float64)
    Y[np.arange(R), rng.integers(0, K, R)] = 1
    return labels, S, Y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npairs_loss(dtype):
    labels, S, _ = _data(1)
    S = S.astype(dtype)
    expected = tfa.losses.npairs_loss(tf.constant(labels), tf.constant(S)).numpy()
    np.testing.assert_allclose(npairs.npairs_loss(labels, S), expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_npairs_loss_gradient():
    labels, S, _ = _data(2)
    x = tf.Variable(S)
    with tf.GradientTape() as tape:
        loss = tfa.losses.npairs_loss(tf.constant(labels), x)
    expected = tape.gradient(loss, x).numpy()
    _, grad = npairs.npairs_loss(labels, S, return_grad=True)
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-13)


def test_npairs_multilabel_loss_dense_and_sparse():
    _, S, Y = _data(3)
    expected = tfa.losses.npairs_multilabel_loss(tf.sparse.from_dense(Y), tf.constant(S)).numpy()
    np.testing.assert_allclose(npairs.npairs_multilabel_loss(Y, S), expected, rtol=1e-12)
    np.testing.assert_allclose(npairs.npairs_multilabel_loss(tf.sparse.from_dense(Y), S), expected, rtol=1e-12)


def test_classes():
    labels, S, Y = _data(4)
    np.testing.assert_allclose(npairs.NpairsLoss()(labels, S),
                               tfa.losses.NpairsLoss()(tf.constant(labels), tf.constant(S)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(npairs.NpairsMultilabelLoss()(Y, S),
                               tfa.losses.NpairsMultilabelLoss()(tf.sparse.from_dense(Y), tf.constant(S)).numpy(),
                               rtol=1e-12)
    assert npairs.NpairsLoss().name == tfa.losses.NpairsLoss().name
    assert npairs.NpairsMultilabelLoss().name == tfa.losses.NpairsMultilabelLoss().name
