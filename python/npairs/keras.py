"""Keras 3 losses of libnpairs: a drop-in for TensorFlow Addons' N-pairs losses.

``tfa.losses.NpairsLoss()`` becomes ``npairs.keras.NpairsLoss()`` (and
``tfa.losses.npairs_loss`` ``npairs.keras.npairs_loss``; the multi-label ones
likewise): ``keras.losses.Loss`` subclasses, registered serializable (package
``npairs``), computed by the library on whichever backend Keras runs:

- TensorFlow: a ``tf.custom_gradient`` whose gradient is the library's,
  given the upstream gradient as its ``grad_loss`` (one library call
  forward, one backward). Which path runs:

  - eager (TensorFlow's default, and ``model.fit`` with ``run_eagerly=True``):
    the tensors go to the library in place through DLPack
    (``__dlpack__``, i.e. ``tf.experimental.dlpack.to_dlpack``), CPU and CUDA
    tensors alike; results come back without a copy, through
    ``tf.experimental.dlpack.from_dlpack`` of the host arrays the library
    wrote (those TensorFlow cannot wrap are copied: a scalar loss, and arrays
    under 1 MiB whose memory is not 64-byte aligned). CUDA results are
    TensorFlow tensors, allocated by TensorFlow on the tensor's GPU; the call
    waits for the library's stream before it returns them (TensorFlow's
    streams are not ordered after it).
  - inside ``tf.function`` (graphs: ``model.fit``'s default): the library
    call inside ``tf.numpy_function``, so tensors go through host memory (a
    CUDA tensor is copied to the host and back). XLA cannot compile it:
    with a GPU, where Keras' TensorFlow trainer picks XLA by default, the
    model needs ``jit_compile=False`` (or ``run_eagerly=True``).
- JAX: :mod:`npairs.jax` (XLA's FFI; under ``jit`` as Keras' trainer runs).
- PyTorch: :mod:`npairs.torch` (autograd, CPU and CUDA tensors).

Arguments are checked by the numpy API's checks (npairs._core) before the
library is called: from the static shapes and dtypes where they are known,
else (TensorFlow graphs of unknown batch size) when the graph runs.

Differences from TensorFlow Addons (see the README's migration section):
``reduction`` is configurable (default 'sum_over_batch_size', TFA's fixed
result) and ``sample_weight`` weights each row before it (TFA multiplied
the averaged scalar); labels are compared as exact integers (never cast to
float: ``y_true`` keeps its dtype); a row with no positive column raises
instead of giving NaN; ``temperature`` divides the logits (1, TFA's, by
default).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from . import _arrays, _core
from .errors import UnsupportedError

_PACKAGE = "npairs"
_NAMES = {"targets": "y_true", "column_targets": "column_labels", "similarity": "y_pred",
          "sample_weight": "sample_weight"}


def _reduction(reduction):
    """Keras' reduction names that the library computes; None is Keras' 'none'."""
    return "none" if reduction is None else _core.reduction_name(reduction)


def _loss(multilabel, y_true, y_pred, sample_weight, reduction, temperature):
    """The loss on the current Keras backend, computed by the library."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_loss(multilabel, y_true, y_pred, sample_weight, reduction, temperature)
    if backend == "jax":
        from . import jax as nj

        loss = nj.npairs_multilabel_loss if multilabel else nj.npairs_loss
        return loss(y_true, y_pred, sample_weight, reduction=reduction, temperature=temperature)
    if backend == "torch":
        from . import torch as nt

        _check(multilabel, _host_labels(y_true), y_pred, sample_weight, reduction, temperature)
        loss = nt.npairs_multilabel_loss if multilabel else nt.npairs_loss
        return loss(ops.convert_to_tensor(y_true), y_pred,
                    None if sample_weight is None else ops.convert_to_tensor(sample_weight, y_pred.dtype),
                    reduction=reduction, temperature=temperature)
    raise UnsupportedError(f"npairs.keras supports Keras' tensorflow, jax and torch backends, not {backend!r}")


def _check(multilabel, y_true, y_pred, sample_weight, reduction, temperature):
    """The numpy API's argument checks, from shapes and dtypes (and the values of host labels), named as Keras'."""
    _core.check_spec(names=_NAMES, targets=y_true, similarity=y_pred, sample_weight=sample_weight,
                     multilabel=multilabel, embeddings=False, reduction=reduction, temperature=temperature)


def _host_labels(y_true):
    """A CPU torch tensor as NumPy, whose values the checks read (float labels must be integral)."""
    if _arrays.is_torch(y_true) and y_true.device.type == "cpu":
        return y_true.detach().numpy()
    return y_true


def _tensorflow_loss(multilabel, y_true, y_pred, sample_weight, reduction, temperature):
    import tensorflow as tf

    if isinstance(y_true, tf.SparseTensor):
        y_true = tf.sparse.to_dense(y_true)
    y_true = tf.convert_to_tensor(y_true)
    y_pred = tf.convert_to_tensor(y_pred)
    if multilabel and (y_true.dtype.is_integer or y_true.dtype.is_floating or y_true.dtype.is_bool):
        y_true = tf.cast(y_true, y_pred.dtype)  # as the core reads them, by a TensorFlow op on their device
    weight = None if sample_weight is None else tf.convert_to_tensor(sample_weight, y_pred.dtype)
    eager = tf.executing_eagerly()
    if not eager and all(x.shape.is_fully_defined() for x in [y_true, y_pred] + ([weight] if weight is not None else [])):
        _check(multilabel, y_true, y_pred, weight, reduction, temperature)
    dtype = y_pred.dtype.as_numpy_dtype

    def library(targets, similarity, weights, grad_loss):
        """One library call: the loss, or with grad_loss dL/dy_pred (arrays of the core's output types)."""
        loss, grads = _core.compute(targets=targets, similarity=similarity, sample_weight=weights,
                                    grad_loss=grad_loss, multilabel=multilabel, embeddings=False,
                                    reduction=reduction, temperature=temperature, want_loss=grad_loss is None,
                                    want_grads=("similarity",) if grad_loss is not None else (),
                                    names=_NAMES)
        return loss if grad_loss is None else grads["similarity"]

    def eager_run(similarity, grad_loss=None):
        # The tensors go to the core as they are: it reads them in place
        # through DLPack (see the module docstring).
        return _as_tensorflow(tf, library(y_true, similarity, weight, grad_loss))

    def graph_run(similarity, grad_loss=None):
        # numpy_function takes tensors only: the optional inputs travel as a list.
        extra = [x for x in (weight, grad_loss) if x is not None]

        def host(targets, s, *rest):
            rest = list(rest)
            w = rest.pop(0) if weight is not None else None
            g = rest.pop(0) if grad_loss is not None else None
            return np.asarray(library(targets, s, w, g), dtype)

        return tf.numpy_function(host, [y_true, similarity] + extra, y_pred.dtype, stateful=False)

    run = eager_run if eager else graph_run

    @tf.custom_gradient
    def loss_of(similarity):
        loss = run(similarity)
        loss.set_shape(similarity.shape[:1] if reduction == "none" else [])

        def grad(upstream):
            g = run(similarity, tf.cast(upstream, similarity.dtype))
            g.set_shape(similarity.shape)
            return g

        return loss, grad

    return loss_of(y_pred)


# TensorFlow reads a tensor's memory in place only at this alignment
# (Tensor::IsAligned, EIGEN_MAX_ALIGN_BYTES; a tensor over less aligned
# memory aborts the process at its first kernel, CHECK(IsAligned()) in
# tensorflow/core/framework/tensor.cc).
_TENSORFLOW_ALIGNMENT = 64


def _as_tensorflow(tf, out):
    """An output of the core as a TensorFlow tensor, without a copy where TensorFlow allows it.

    TensorFlow tensors (CUDA outputs, made by TensorFlow: _arrays) stay as
    they are; NumPy arrays are wrapped in place by
    tf.experimental.dlpack.from_dlpack (the tensor holds the array: a pooled
    gradient goes back to the pool when TensorFlow frees it), unless their
    memory is not aligned as TensorFlow needs, or they are NumPy scalars:
    those (small) are copied.
    """
    if tf.is_tensor(out):
        return out
    if isinstance(out, np.ndarray) and out.ctypes.data % _TENSORFLOW_ALIGNMENT == 0:
        return tf.experimental.dlpack.from_dlpack(out.__dlpack__())
    return tf.constant(out)


class _NpairsLossBase(keras.losses.Loss):
    _multilabel = False

    def __init__(self, name, reduction, temperature, dtype):
        super().__init__(name=name, reduction=_reduction(reduction), dtype=dtype)
        self.temperature = _core.positive_float("temperature", temperature)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss of sample_weight-weighted rows; y_true keeps its dtype (labels compare exactly)."""
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            return _loss(self._multilabel, y_true, y_pred, sample_weight, self.reduction, self.temperature)

    def call(self, y_true, y_pred):
        """Per-row losses (Keras' Loss.call): the 'none' reduction, unweighted."""
        return _loss(self._multilabel, y_true, y_pred, None, "none", self.temperature)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "temperature": self.temperature,
                "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NpairsLoss(_NpairsLossBase):
    """N-pairs loss of integer labels ``y_true`` ([B] or [B, 1]) and a similarity matrix ``y_pred`` ([B, B]).

    ``tfa.losses.NpairsLoss``'s replacement: ``NpairsLoss()(y_true, y_pred)``
    is the mean over rows of ``logsumexp_j z_ij - sum_j T_ij z_ij``, with
    ``z = y_pred / temperature`` and ``T`` the row-normalised label matches.
    """

    def __init__(self, name="npairs_loss", reduction="sum_over_batch_size", temperature=1.0, dtype=None):
        super().__init__(name, reduction, temperature, dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NpairsMultilabelLoss(_NpairsLossBase):
    """Multi-label N-pairs loss of multi-hot ``y_true`` ([B, K], dense or a tf.SparseTensor) and ``y_pred`` ([B, B]).

    ``tfa.losses.NpairsMultilabelLoss``'s replacement: the targets are
    ``Y Y^T`` row-normalised.
    """

    _multilabel = True

    def __init__(self, name="npairs_multilabel_loss", reduction="sum_over_batch_size", temperature=1.0, dtype=None):
        super().__init__(name, reduction, temperature, dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def npairs_loss(y_true, y_pred):
    """``tfa.losses.npairs_loss``: the mean N-pairs loss of integer labels and a similarity matrix."""
    return _loss(False, y_true, ops.convert_to_tensor(y_pred), None, "sum_over_batch_size", 1.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def npairs_multilabel_loss(y_true, y_pred):
    """``tfa.losses.npairs_multilabel_loss``: the mean multi-label N-pairs loss (dense or sparse y_true)."""
    return _loss(True, y_true, ops.convert_to_tensor(y_pred), None, "sum_over_batch_size", 1.0)


__all__ = ["NpairsLoss", "NpairsMultilabelLoss", "npairs_loss", "npairs_multilabel_loss"]
