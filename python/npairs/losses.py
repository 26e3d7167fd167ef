"""Loss classes in the style of TensorFlow Addons / Keras.

They hold the configuration; ``__call__(y_true, y_pred, sample_weight=None)``
computes the loss with per-row ``sample_weight`` (a scalar or one weight
per row) applied before the reduction, as Keras losses do:
``sum_i w_i loss_i / R`` for 'sum_over_batch_size'.

Unlike ``tfa.losses.NpairsLoss`` (fixed reduction NONE over an already
averaged scalar), the reduction here is configurable and weights act per
row. ``symmetric=True`` gives CLIP's loss, the mean of the row and the
column directions (SPEC section 5; a scalar reduction, no sample_weight).
``get_config()`` / ``from_config()`` round-trip. ``threads`` (None:
:func:`npairs.get_num_threads`) sets the CPU threads of each call,
``workspace_limit`` (None: :func:`npairs.get_workspace_limit`) the bytes of
library workspace it may use. Torch tensors that require grad are computed
by :mod:`npairs.torch`, so the loss they give is differentiable.
"""

from __future__ import annotations

from . import _core


class _LossBase:
    _defaults = {}

    def __init__(self, name, reduction, temperature, backend, threads, workspace_limit, symmetric):
        canonical = _core.reduction_name(reduction)
        self.symmetric = _core.check_symmetric(symmetric, _core.reduction_code(reduction))
        self.reduction = canonical if str(reduction).lower() != "auto" else "auto"
        self.temperature = _core.positive_float("temperature", temperature)
        _core.backend_code(backend)
        self.backend = str(backend).lower()
        self.threads = None if threads is None else _core.threads_count(threads)
        self.workspace_limit = None if workspace_limit is None else _core.workspace_limit_bytes(workspace_limit)
        self.name = name

    def get_config(self):
        return {
            "name": self.name,
            "reduction": self.reduction,
            "temperature": self.temperature,
            "backend": self.backend,
            "threads": self.threads,
            "workspace_limit": self.workspace_limit,
            "symmetric": self.symmetric,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None


class NpairsLoss(_LossBase):
    """Computes the N-pairs loss of integer labels and a similarity matrix.

    ``loss = NpairsLoss()(y_true, y_pred)`` with ``y_true`` [R] labels and
    ``y_pred`` [R, R] similarities (see :func:`npairs.npairs_loss`).
    """

    def __init__(self, temperature=1.0, reduction="sum_over_batch_size", name="npairs_loss", backend="auto",
                 threads=None, workspace_limit=None, symmetric=False):
        super().__init__(name, reduction, temperature, backend, threads, workspace_limit, symmetric)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return _core.npairs_loss(y_true, y_pred, sample_weight, reduction=self.reduction, temperature=self.temperature,
                                 backend=self.backend, threads=self.threads,
                                 workspace_limit=self.workspace_limit, symmetric=self.symmetric)

    def call(self, y_true, y_pred):
        """Per-row losses (Keras' Loss.call): the 'none' reduction, unweighted (a symmetric loss has none)."""
        return _core.npairs_loss(y_true, y_pred, reduction="none", temperature=self.temperature, backend=self.backend,
                                 threads=self.threads, workspace_limit=self.workspace_limit,
                                 symmetric=self.symmetric)


class NpairsMultilabelLoss(_LossBase):
    """Computes the multi-label N-pairs loss of multi-hot targets and a similarity matrix.

    See :func:`npairs.npairs_multilabel_loss`.
    """

    def __init__(
        self, temperature=1.0, reduction="sum_over_batch_size", name="npairs_multilabel_loss", backend="auto",
        threads=None, workspace_limit=None, symmetric=False,
    ):
        super().__init__(name, reduction, temperature, backend, threads, workspace_limit, symmetric)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return _core.npairs_multilabel_loss(y_true, y_pred, sample_weight, reduction=self.reduction,
                                            temperature=self.temperature, backend=self.backend, threads=self.threads,
                                            workspace_limit=self.workspace_limit, symmetric=self.symmetric)

    def call(self, y_true, y_pred):
        return _core.npairs_multilabel_loss(y_true, y_pred, reduction="none", temperature=self.temperature,
                                            backend=self.backend, threads=self.threads,
                                            workspace_limit=self.workspace_limit, symmetric=self.symmetric)


class NpairsEmbeddingsLoss(_LossBase):
    """tf.contrib's embeddings form: ``__call__(labels, anchors, positives, sample_weight=None)``.

    The default reg_lambda is 0; ``reg_lambda=0.002`` reproduces tf.contrib.

    See :func:`npairs.npairs_embeddings_loss`.
    """

    def __init__(
        self,
        reg_lambda=0.0,
        temperature=1.0,
        reduction="sum_over_batch_size",
        name="npairs_embeddings_loss",
        backend="auto",
        threads=None,
        workspace_limit=None,
        symmetric=False,
    ):
        super().__init__(name, reduction, temperature, backend, threads, workspace_limit, symmetric)
        self.reg_lambda = _core.check_reg_lambda(reg_lambda, _core.reduction_code(reduction))

    def get_config(self):
        config = super().get_config()
        config["reg_lambda"] = self.reg_lambda
        return config

    def __call__(self, labels, anchors, positives, sample_weight=None):
        return _core.npairs_embeddings_loss(
            labels,
            anchors,
            positives,
            reg_lambda=self.reg_lambda,
            temperature=self.temperature,
            reduction=self.reduction,
            sample_weight=sample_weight,
            backend=self.backend,
            threads=self.threads,
            workspace_limit=self.workspace_limit,
            symmetric=self.symmetric,
        )
