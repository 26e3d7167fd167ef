"""npairs.keras on one Keras backend (KERAS_BACKEND), run by test_keras.py in a process of its own per backend.

Values against the float64 reference and TensorFlow Addons' own vectors,
gradients through the backend's autodiff against the reference's, labels
[B] and [B, 1], multi-label (dense; sparse on TensorFlow), tf.function,
serialisation, model.fit, save/load, and errors before the call.
"""

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="keras is not installed")
BACKEND = keras.backend.backend()
assert BACKEND == os.environ.get("KERAS_BACKEND", BACKEND)

import npairs  # noqa: E402
import npairs.keras as nk  # noqa: E402
import npairs_reference as ref  # noqa: E402

if BACKEND == "jax":
    import jax

    import npairs.jax as nj

    if not nj.available():
        pytest.skip(f"npairs.jax's FFI handlers are not built ({nj.ffi_library_path()} is missing)",
                    allow_module_level=True)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    if BACKEND == "jax" and request.param == np.float64:
        jax.config.update("jax_enable_x64", True)
        yield request.param
        jax.config.update("jax_enable_x64", False)
    else:
        yield request.param


def value_and_vjp(fn, S, g):
    """fn(S) and the vector-Jacobian product of g, through the backend's autodiff, as NumPy arrays."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(S)
        with tf.GradientTape() as tape:
            loss = fn(x)
        return loss.numpy(), tape.gradient(loss, x, output_gradients=tf.constant(g, loss.dtype)).numpy()
    if BACKEND == "jax":
        loss, vjp = jax.vjp(fn, jax.numpy.asarray(S))
        return np.asarray(loss), np.asarray(vjp(jax.numpy.asarray(g, loss.dtype))[0])
    import torch

    x = torch.tensor(S, requires_grad=True)
    loss = fn(x)
    loss.backward(torch.tensor(g, dtype=loss.dtype))
    return loss.detach().numpy(), x.grad.numpy()


def tfa_inputs():
    f = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], np.float32)
    return f @ f.T, np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]])


def test_tfa_vectors():
    """TensorFlow Addons' own test values (losses/tests/npairs_test.py), through the classes and the functions."""
    S, Y = tfa_inputs()
    labels = np.array([0, 1, 2, 3])
    for loss in (nk.NpairsLoss()(labels, S), nk.NpairsLoss()(labels.reshape(4, 1), S), nk.npairs_loss(labels, S)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), 0.253856, rtol=1e-6, atol=1e-6)
    for loss in (nk.NpairsMultilabelLoss()(Y, S), nk.npairs_multilabel_loss(Y, S)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), 1.420522, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(nk.NpairsMultilabelLoss()(np.eye(4), S)), 0.253856,
                               rtol=1e-6, atol=1e-6)
    assert nk.NpairsLoss().name == "npairs_loss"
    assert nk.NpairsMultilabelLoss().name == "npairs_multilabel_loss"
    assert isinstance(nk.NpairsLoss(), keras.losses.Loss)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.SparseTensor labels are TensorFlow's")
def test_sparse_multilabels():
    import tensorflow as tf

    S, Y = tfa_inputs()
    sparse = tf.sparse.from_dense(tf.constant(Y, tf.int64))
    np.testing.assert_allclose(nk.NpairsMultilabelLoss()(sparse, S).numpy(), 1.420522, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nk.npairs_multilabel_loss(sparse, S).numpy(), 1.420522, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "sum", "sum_over_batch_size"])
@pytest.mark.parametrize("weighted", [False, True])
def test_labels_value_and_gradient(dtype, reduction, weighted):
    rng = np.random.default_rng(ref.seed("keras-labels", reduction, weighted, dtype))
    R = 13
    labels = ref.random_labels(rng, R, 4)
    S = rng.standard_normal((R, R)).astype(dtype)
    w = rng.random(R).astype(dtype) if weighted else None
    g = rng.standard_normal(R if reduction == "none" else ()).astype(dtype)
    loss, dS, _, _ = ref.loss_and_grads(ref.targets_from_labels(labels), S=S, temperature=0.7, weights=w,
                                        reduction=reduction, grad_loss=g)
    fn = nk.NpairsLoss(reduction=reduction, temperature=0.7, dtype=np.dtype(dtype).name)
    got, grad = value_and_vjp(lambda s: fn(labels, s, w), S, g)
    assert got.dtype == dtype and grad.dtype == dtype
    ref.assert_matches(got, loss, dtype)
    ref.assert_matches(grad, dS, dtype)


def test_multilabel_value_and_gradient():
    rng = np.random.default_rng(ref.seed("keras-multilabel"))
    Y = ref.random_multilabels(rng, 11, 5)
    S = rng.standard_normal((11, 11)).astype(np.float32)
    loss, dS, _, _ = ref.loss_and_grads(ref.targets_from_multilabels(Y), S=S)
    got, grad = value_and_vjp(lambda s: nk.NpairsMultilabelLoss()(Y, s), S, np.float32(1))
    ref.assert_matches(got, loss, np.float32)
    ref.assert_matches(grad, dS, np.float32)


def test_call_gives_unweighted_rows():
    rng = np.random.default_rng(ref.seed("keras-call"))
    labels = ref.random_labels(rng, 9, 3)
    S = rng.standard_normal((9, 9)).astype(np.float32)
    rows = keras.ops.convert_to_numpy(nk.NpairsLoss(reduction="sum").call(labels, S))
    ref.assert_matches(rows, ref.loss_and_grads(ref.targets_from_labels(labels), S=S, reduction="none")[0], np.float32)


def test_labels_compare_as_exact_integers():
    """2**24 and 2**24 + 1 are one float32 value: a float cast of the labels would merge their classes."""
    labels = np.array([2**24, 2**24 + 1, 2**24, 2**24 + 1], np.int32)
    S = np.random.default_rng(ref.seed("exact")).standard_normal((4, 4)).astype(np.float32)
    expected = ref.loss_and_grads(ref.targets_from_labels(labels), S=S)[0]
    ref.assert_matches(keras.ops.convert_to_numpy(nk.NpairsLoss()(labels, S)), expected, np.float32)


def tensorflow_devices():
    """CPU, and GPU (skipped with the reason when TensorFlow sees none)."""
    gpu = pytest.mark.skipif(BACKEND != "tensorflow" or not _tensorflow_gpus(),
                             reason="TensorFlow sees no GPU (tensorflow-cpu, or no CUDA device)")
    return [pytest.param("CPU", id="cpu"), pytest.param("GPU", id="gpu", marks=gpu)]


def _tensorflow_gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def tensorflow_buffer(t):
    """The address of a TensorFlow tensor's memory: its host memory as TensorFlow's own NumPy view sees it,
    or, on a GPU (and for bfloat16, which NumPy lacks), the pointer its DLPack export gives."""
    if t.backing_device.endswith("CPU:0") and t.dtype != "bfloat16":  # int32 tensors of GPU ops are on the host
        return np.asarray(t).ctypes.data
    from npairs import _arrays

    import tensorflow as tf

    return _arrays.parse_dlpack_capsule("t", tf.experimental.dlpack.to_dlpack(t))[0]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's eager tensors")
@pytest.mark.parametrize("device", tensorflow_devices())
@pytest.mark.parametrize("reduction", ["none", "sum_over_batch_size"])
def test_eager_tensors_reach_the_library_in_place(library_calls, device, reduction):
    """Eager calls hand the library the tensors' own memory (DLPack) and wrap its outputs without a copy:
    the gradient TensorFlow returns is the array the library wrote (R x R float32 of 1 MiB and more)."""
    import tensorflow as tf

    rng = np.random.default_rng(ref.seed("keras-dlpack", reduction))
    R = 523
    labels = ref.random_labels(rng, R, 40)
    S = rng.standard_normal((R, R)).astype(np.float32)
    w = rng.random(R).astype(np.float32)
    g = rng.standard_normal(R if reduction == "none" else ()).astype(np.float32)
    loss, dS, _, _ = ref.loss_and_grads(ref.targets_from_labels(labels), S=S, temperature=0.7, weights=w,
                                        reduction=reduction, grad_loss=g)
    with tf.device(device):
        y, s, weight, up = (tf.constant(x) for x in (labels, S, w, g))
        with tf.GradientTape() as tape:
            tape.watch(s)
            got = nk.NpairsLoss(reduction=reduction, temperature=0.7)(y, s, weight)
        grad = tape.gradient(got, s, output_gradients=up)
    ref.assert_matches(got.numpy(), loss, np.float32)
    ref.assert_matches(grad.numpy(), dS, np.float32)
    assert grad.device == s.device and got.device == s.device
    forward, backward = library_calls
    for call in (forward, backward):
        assert (call.problem.similarity, call.problem.labels, call.problem.sample_weight) == \
            (tensorflow_buffer(s), tensorflow_buffer(y), tensorflow_buffer(weight))
    assert backward.grads.similarity == tensorflow_buffer(grad)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's eager tensors")
@pytest.mark.parametrize("device", tensorflow_devices())
def test_tensorflow_outputs(device):
    """The tensors that CUDA outputs of TensorFlow inputs are (made on the CPU too, where they run here)."""
    import tensorflow as tf

    from npairs import _arrays

    for shape in [(), (7,), (5, 3)]:
        for dtype in (np.dtype("float32"), np.dtype("float64"), np.dtype("float16"), _arrays.BFLOAT16):
            t, ptr = _arrays.tensorflow_empty(f"{device}:0", shape, dtype)
            assert tuple(t.shape) == shape and t.dtype == tf.as_dtype(_arrays.dtype_name(dtype))
            assert t.backing_device.endswith(f"{device}:0") and ptr == tensorflow_buffer(t)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's eager tensors")
@pytest.mark.parametrize("device", tensorflow_devices())
def test_eager_sparse_multilabels_value_and_gradient(device):
    import tensorflow as tf

    rng = np.random.default_rng(ref.seed("keras-sparse-gradient"))
    Y = ref.random_multilabels(rng, 12, 5)
    S = rng.standard_normal((12, 12)).astype(np.float64)
    loss, dS, _, _ = ref.loss_and_grads(ref.targets_from_multilabels(Y), S=S, temperature=1.5)
    with tf.device(device):
        sparse = tf.sparse.from_dense(tf.constant(Y, tf.int64))
        s = tf.constant(S)
        with tf.GradientTape() as tape:
            tape.watch(s)
            got = nk.NpairsMultilabelLoss(temperature=1.5, dtype="float64")(sparse, s)
        grad = tape.gradient(got, s)
    ref.assert_matches(got.numpy(), loss, np.float64)
    ref.assert_matches(grad.numpy(), dS, np.float64)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function is TensorFlow's")
def test_tf_function_with_static_shapes(library_calls):
    """Inside tf.function (tf.numpy_function): one library call forward, one backward, when the graph runs."""
    import tensorflow as tf

    rng = np.random.default_rng(ref.seed("keras-graph"))
    labels = ref.random_labels(rng, 9, 3)
    S = rng.standard_normal((9, 9)).astype(np.float32)
    w = rng.random(9).astype(np.float32)
    loss, dS, _, _ = ref.loss_and_grads(ref.targets_from_labels(labels), S=S, weights=w)

    @tf.function
    def step(y, s, w):
        with tf.GradientTape() as tape:
            tape.watch(s)
            loss = nk.NpairsLoss()(y, s, w)
        return loss, tape.gradient(loss, s)

    got, grad = step(tf.constant(labels), tf.constant(S), tf.constant(w))
    ref.assert_matches(got.numpy(), loss, np.float32)
    ref.assert_matches(grad.numpy(), dS, np.float32)
    assert len(library_calls) == 2


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function is TensorFlow's")
def test_tf_function_with_unknown_batch_size():
    import tensorflow as tf

    loss_fn = nk.NpairsLoss(temperature=0.5)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.float32)])
    def step(labels, s):
        with tf.GradientTape() as tape:
            tape.watch(s)
            loss = loss_fn(labels, s)
        return loss, tape.gradient(loss, s)

    rng = np.random.default_rng(ref.seed("tf.function"))
    for R in (5, 12):
        labels = ref.random_labels(rng, R, 3)
        S = rng.standard_normal((R, R)).astype(np.float32)
        loss, dS, _, _ = ref.loss_and_grads(ref.targets_from_labels(labels), S=S, temperature=0.5)
        got, grad = step(tf.constant(labels), tf.constant(S))
        ref.assert_matches(got.numpy(), loss, np.float32)
        ref.assert_matches(grad.numpy(), dS, np.float32)
    # Unknown shapes are checked when the graph runs, by the same checks.
    with pytest.raises(tf.errors.OpError, match="y_true has 4 labels but y_pred has 5 rows"):
        step(tf.constant([0, 1, 0, 1], tf.int64), tf.zeros([5, 5]))


def test_serialization():
    loss = nk.NpairsLoss(reduction="sum", temperature=0.25, name="np")
    config = loss.get_config()
    assert config == {"name": "np", "reduction": "sum", "temperature": 0.25, "dtype": "float32"}
    again = nk.NpairsLoss.from_config(config)
    assert type(again) is nk.NpairsLoss and again.get_config() == config
    for obj in (loss, nk.NpairsMultilabelLoss(temperature=2.0)):
        restored = keras.losses.deserialize(keras.losses.serialize(obj))
        assert type(restored) is type(obj) and restored.get_config() == obj.get_config()
    assert keras.losses.deserialize(keras.losses.serialize(nk.npairs_loss)) is nk.npairs_loss
    assert keras.saving.get_registered_name(nk.NpairsLoss) == "npairs>NpairsLoss"


@keras.saving.register_keras_serializable(package="npairs_tests")
class BatchSimilarity(keras.layers.Layer):
    """The [B, B] similarity of a batch of embeddings with itself: what N-pairs models give their loss."""

    def call(self, embeddings):
        return keras.ops.matmul(embeddings, keras.ops.transpose(embeddings))


def clustered_data(rng, n, classes, dim):
    centers = rng.standard_normal((classes, dim)) * 2
    y = rng.integers(0, classes, n)
    return (centers[y] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32), y


def small_model():
    inputs = keras.Input((6,))
    embeddings = keras.layers.Dense(4)(inputs)
    return keras.Model(inputs, BatchSimilarity()(embeddings))


def test_fit_trains_then_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = clustered_data(np.random.default_rng(ref.seed("fit")), 96, 4, 6)
    model = small_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=nk.NpairsLoss(temperature=0.5))
    before = model.evaluate(x, y, batch_size=16, verbose=0)
    history = model.fit(x, y.reshape(-1, 1), batch_size=16, epochs=3, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.8 * before, (before, after)

    path = str(tmp_path / "npairs_model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is nk.NpairsLoss
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.evaluate(x, y, batch_size=16, verbose=0), after, rtol=1e-6)


def test_fit_run_eagerly():
    """model.fit without the backend's compilation (TensorFlow: the DLPack path) trains too."""
    keras.utils.set_random_seed(2)
    x, y = clustered_data(np.random.default_rng(ref.seed("fit-eager")), 64, 4, 6)
    model = small_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=nk.NpairsLoss(temperature=0.5), run_eagerly=True)
    before = model.evaluate(x, y, batch_size=16, verbose=0)
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    assert model.evaluate(x, y, batch_size=16, verbose=0) < 0.8 * before


def test_fit_multilabel():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(ref.seed("fit-multilabel"))
    x, y = clustered_data(rng, 64, 4, 6)
    Y = np.eye(4, dtype=np.float32)[y]
    Y[rng.random(64) < 0.2, 0] = 1.0
    model = small_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=nk.NpairsMultilabelLoss())
    before = model.evaluate(x, Y, batch_size=16, verbose=0)
    model.fit(x, Y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    assert model.evaluate(x, Y, batch_size=16, verbose=0) < before


def test_errors_before_the_call(library_calls):
    S = np.zeros((4, 4), np.float32)
    with pytest.raises(npairs.InvalidArgumentError, match="y_true has 3 labels but y_pred has 4 rows"):
        nk.NpairsLoss()(np.array([0, 1, 2]), S)
    with pytest.raises(npairs.InvalidArgumentError, match="y_pred must be 2-D"):
        nk.NpairsLoss()(np.array([0, 1, 2, 3]), np.zeros(4, np.float32))
    with pytest.raises(npairs.InvalidArgumentError, match="sample_weight must be a scalar or have shape"):
        nk.NpairsLoss()(np.array([0, 1, 2, 3]), S, np.ones(3, np.float32))
    with pytest.raises(npairs.InvalidArgumentError, match="must be 2-D multi-hot"):
        nk.NpairsMultilabelLoss()(np.array([0, 1, 2, 3]), S)
    with pytest.raises(npairs.InvalidDTypeError, match="y_true must hold integer class labels"):
        nk.NpairsLoss()(np.array([0.5, 1.0, 2.0, 3.0]), S)
    with pytest.raises(npairs.InvalidArgumentError, match="reduction"):
        nk.NpairsLoss(reduction="mean_with_sample_weight")
    with pytest.raises(npairs.InvalidArgumentError, match="temperature"):
        nk.NpairsLoss(temperature=-1.0)
    assert not library_calls


def test_row_without_positive_raises_with_the_library_message():
    with pytest.raises(Exception, match="row 1 has no positive column"):
        keras.ops.convert_to_numpy(nk.NpairsMultilabelLoss()(np.array([[1.0, 0.0], [0.0, 0.0]]), np.zeros((2, 2))))
