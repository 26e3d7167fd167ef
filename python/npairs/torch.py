"""PyTorch modules of the N-pairs loss, backed by libnpairs.

``NpairsLoss`` (labels + similarity), ``NpairsMultilabelLoss`` (multi-hot +
similarity) and ``NpairsEmbeddingsLoss`` (labels + anchors + positives, with
tf.contrib's L2 term). The forward pass computes the loss and its gradients
in one library call; backward scales the saved gradients by ``grad_output``
(for reduction 'none' it asks the library again with ``grad_loss =
grad_output``). CPU tensors are passed without copying through NumPy views,
CUDA tensors through ``__cuda_array_interface__`` on the current stream.
float16 and bfloat16 tensors are computed on CUDA (on the CPU they raise
UnsupportedError), with outputs and gradients in the same dtype.

Gradients flow to the similarity (or the anchors and positives) and to
``sample_weight``; labels and multi-hot targets are constants. Double
backward is not supported.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import _core, _lib


class _Config:
    __slots__ = ("multilabel", "reduction", "temperature", "reg_lambda", "backend")

    def __init__(self, multilabel, reduction, temperature, reg_lambda, backend):
        self.multilabel = multilabel
        self.reduction = _core.reduction_code(reduction)
        self.temperature = _core.positive_float("temperature", temperature)
        self.reg_lambda = _core.non_negative_float("reg_lambda", reg_lambda)
        self.backend = backend
        _core.backend_code(backend)


def _call(cfg, targets, column_targets, weight, similarity, anchors, positives, *, grad_loss=None,
          want_loss=True, want_grads=(), reduction=None, reg_lambda=None, use_weight=True):
    names = {"targets": "multilabels" if cfg.multilabel else "labels"}
    return _core.compute(
        targets=targets,
        column_targets=column_targets,
        multilabel=cfg.multilabel,
        similarity=similarity,
        anchors=anchors,
        positives=positives,
        sample_weight=weight if use_weight else None,
        grad_loss=grad_loss,
        reduction=cfg.reduction if reduction is None else reduction,
        temperature=cfg.temperature,
        reg_lambda=cfg.reg_lambda if reg_lambda is None else reg_lambda,
        backend=cfg.backend,
        want_loss=want_loss,
        want_grads=want_grads,
        names=names,
    )


class NpairsFunction(torch.autograd.Function):
    """apply(cfg, targets, column_targets, sample_weight, similarity, anchors, positives)."""

    @staticmethod
    def forward(ctx, cfg, targets, column_targets, weight, similarity, anchors, positives):
        logits = ("similarity",) if similarity is not None else ("anchors", "positives")
        needs = dict(zip(("similarity", "anchors", "positives"), ctx.needs_input_grad[4:7]))
        wanted = tuple(n for n in logits if needs[n])
        none = cfg.reduction == _lib.REDUCTION_NONE
        # Scalar reductions: loss and gradients (for grad_output = 1) in one call.
        loss, grads = _call(cfg, targets, column_targets, weight, similarity, anchors, positives,
                            want_grads=() if none else wanted)
        # dL/dw_i = g * r * loss_i, loss_i the unweighted row loss.
        row_loss = None
        if weight is not None and ctx.needs_input_grad[3]:
            row_loss, _ = _call(cfg, targets, column_targets, weight, similarity, anchors, positives,
                                reduction=_lib.REDUCTION_NONE, reg_lambda=0.0, use_weight=False)
        ctx.cfg = cfg
        ctx.wanted = wanted
        ctx.weight_meta = (weight.shape, weight.dtype) if torch.is_tensor(weight) else None
        ctx.rows = len(targets)
        if none:
            # The inputs, to ask the library again with grad_loss = grad_output;
            # labels or weights given as NumPy arrays or numbers are kept aside.
            items = (targets, column_targets, weight, similarity, anchors, positives, row_loss)
            ctx.others = {i: v for i, v in enumerate(items) if v is not None and not torch.is_tensor(v)}
            ctx.save_for_backward(*(v if torch.is_tensor(v) else None for v in items))
        else:
            ctx.save_for_backward(*(grads.get(n) for n in ("similarity", "anchors", "positives")), row_loss)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        cfg = ctx.cfg
        out = {"similarity": None, "anchors": None, "positives": None}
        grad_weight = None
        if cfg.reduction == _lib.REDUCTION_NONE:
            saved = list(ctx.saved_tensors)
            for i, v in ctx.others.items():
                saved[i] = v
            targets, column_targets, weight, similarity, anchors, positives, row_loss = saved
            g = grad_output.detach().contiguous()
            if ctx.wanted:
                _, grads = _call(cfg, targets, column_targets, weight, similarity, anchors, positives,
                                 grad_loss=g, want_loss=False, want_grads=ctx.wanted)
                out.update(grads)
            if row_loss is not None:
                grad_weight = g * row_loss
        else:
            *saved, row_loss = ctx.saved_tensors
            # loss.backward() passes a 1: then the saved gradients are the answer, and
            # skipping the product saves a pass and an allocation of R x M. (Checked on
            # CPU only, where reading the value costs no device synchronisation.)
            unit = grad_output.device.type == "cpu" and grad_output.numel() == 1 and grad_output.item() == 1.0
            for name, grad in zip(("similarity", "anchors", "positives"), saved):
                if grad is not None:
                    out[name] = grad if unit else grad * grad_output
            if row_loss is not None:
                r = 1.0 / max(ctx.rows, 1) if cfg.reduction == _lib.REDUCTION_SUM_OVER_BATCH_SIZE else 1.0
                grad_weight = row_loss * (grad_output * r)
        if grad_weight is not None:  # back to the weights' own shape: [R], [R, 1] or a broadcast scalar
            shape, dtype = ctx.weight_meta
            grad_weight = (grad_weight.sum() if len(shape) == 0 else grad_weight).reshape(shape).to(dtype)
        return None, None, None, grad_weight, out["similarity"], out["anchors"], out["positives"]


def _weight(sample_weight, like):
    """Tensor weights pass through (they may require grad); so do numbers, which the library broadcasts."""
    if sample_weight is None or isinstance(sample_weight, (torch.Tensor, int, float)):
        return sample_weight
    return torch.as_tensor(sample_weight, dtype=like.dtype, device=like.device)


def npairs_loss(labels, similarity, sample_weight=None, *, column_labels=None, reduction="sum_over_batch_size",
                temperature=1.0, backend="auto"):
    """Differentiable N-pairs loss of [R] integer labels and an [R, M] similarity."""
    cfg = _Config(False, reduction, temperature, 0.0, backend)
    return NpairsFunction.apply(cfg, labels, column_labels, _weight(sample_weight, similarity), similarity, None, None)


def npairs_multilabel_loss(multilabels, similarity, sample_weight=None, *, column_multilabels=None,
                           reduction="sum_over_batch_size", temperature=1.0, backend="auto"):
    """Differentiable multi-label N-pairs loss of an [R, K] multi-hot matrix and an [R, M] similarity."""
    cfg = _Config(True, reduction, temperature, 0.0, backend)
    return NpairsFunction.apply(cfg, multilabels, column_multilabels, _weight(sample_weight, similarity),
                                similarity, None, None)


def npairs_embeddings_loss(labels, anchors, positives, sample_weight=None, *, column_labels=None, reg_lambda=0.002,
                           temperature=1.0, reduction="sum_over_batch_size", multilabel=None, backend="auto"):
    """Differentiable N-pairs loss of anchors [R, D] and positives [M, D], with tf.contrib's L2 term."""
    if multilabel is None:
        multilabel = labels.dim() == 2 and labels.shape[1] != 1
    cfg = _Config(bool(multilabel), reduction, temperature, reg_lambda, backend)
    return NpairsFunction.apply(cfg, labels, column_labels, _weight(sample_weight, anchors), None, anchors, positives)


class NpairsLoss(nn.Module):
    """``NpairsLoss(temperature=1.0, reduction='sum_over_batch_size')(labels, similarity)``.

    reduction: 'sum_over_batch_size' (also 'mean'/'auto'), 'sum' or 'none'.
    """

    def __init__(self, temperature=1.0, reduction="sum_over_batch_size", backend="auto"):
        super().__init__()
        self._cfg = _Config(False, reduction, temperature, 0.0, backend)
        self.temperature = self._cfg.temperature
        self.reduction = _core.REDUCTION_NAMES[self._cfg.reduction]
        self.backend = backend

    def forward(self, labels, similarity, sample_weight=None, column_labels=None):
        return NpairsFunction.apply(self._cfg, labels, column_labels, _weight(sample_weight, similarity),
                                    similarity, None, None)

    def extra_repr(self):
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


class NpairsMultilabelLoss(NpairsLoss):
    """``NpairsMultilabelLoss(...)(multilabels, similarity)`` with [R, K] multi-hot targets."""

    def __init__(self, temperature=1.0, reduction="sum_over_batch_size", backend="auto"):
        super().__init__(temperature, reduction, backend)
        self._cfg = _Config(True, reduction, temperature, 0.0, backend)

    def forward(self, multilabels, similarity, sample_weight=None, column_multilabels=None):
        return super().forward(multilabels, similarity, sample_weight, column_multilabels)


class NpairsEmbeddingsLoss(nn.Module):
    """``NpairsEmbeddingsLoss(reg_lambda=0.002, temperature=1.0)(labels, anchors, positives)``.

    Logits ``anchors @ positives.T / temperature``, plus
    ``0.25 * reg_lambda * (mean |a_i|^2 + mean |p_j|^2)`` for scalar reductions.
    """

    def __init__(self, reg_lambda=0.002, temperature=1.0, reduction="sum_over_batch_size", multilabel=False,
                 backend="auto"):
        super().__init__()
        self._cfg = _Config(bool(multilabel), reduction, temperature, reg_lambda, backend)
        if self._cfg.reg_lambda > 0 and self._cfg.reduction == _lib.REDUCTION_NONE:
            raise _core.InvalidArgumentError("reg_lambda must be 0 with reduction='none'")
        self.reg_lambda = self._cfg.reg_lambda
        self.temperature = self._cfg.temperature
        self.reduction = _core.REDUCTION_NAMES[self._cfg.reduction]
        self.multilabel = bool(multilabel)
        self.backend = backend

    def forward(self, labels, anchors, positives, sample_weight=None, column_labels=None):
        return NpairsFunction.apply(self._cfg, labels, column_labels, _weight(sample_weight, anchors), None,
                                    anchors, positives)

    def extra_repr(self):
        return f"reg_lambda={self.reg_lambda}, temperature={self.temperature}, reduction={self.reduction!r}"
