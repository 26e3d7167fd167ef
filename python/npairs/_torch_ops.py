"""npairs.torch's loss as a PyTorch custom op (torch.library.custom_op, PyTorch >= 2.4), for torch.compile.

``npairs::loss`` is the forward pass of npairs.torch (torch.py's
``_forward``: one library call), returning the loss and what the backward
pass needs; its fake kernel gives their shapes and dtypes from the inputs'
metadata, so that dynamo and AOTAutograd trace it without a graph break
(symbolic sizes included), and ``register_autograd`` gives the backward
(torch.py's ``_backward``: plain torch ops on the saved tensors). The config
travels as scalar arguments and is checked again by ``_Config`` in the
kernel. Outputs a call does not compute are empty tensors (an op returns
tensors, never None).
"""

from typing import Optional

import torch

from . import _arrays, _core
from . import torch as _nt

_NAMES = ("similarity", "anchors", "positives")


def _config(multilabel, embeddings, reduction, temperature, reg_lambda, backend, threads, workspace_limit, symmetric):
    return _nt._Config(multilabel, embeddings, reduction, temperature, reg_lambda, backend,
                       None if threads < 0 else threads, None if workspace_limit < 0 else workspace_limit, symmetric)


def _logits(embeddings, similarity, anchors, positives):
    return [anchors, positives] if embeddings else [similarity]


def _kernel(targets: Optional[torch.Tensor], column_targets: Optional[torch.Tensor], weight: Optional[torch.Tensor],
            similarity: Optional[torch.Tensor], anchors: Optional[torch.Tensor], positives: Optional[torch.Tensor],
            temperature_tensor: Optional[torch.Tensor], multilabel: bool, embeddings: bool, reduction: str,
            temperature: float, reg_lambda: float, backend: str, threads: int, workspace_limit: int, symmetric: bool,
            need_similarity: bool, need_anchors: bool, need_positives: bool, weight_grad: bool,
            need_temperature: bool,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dL/dS, dL/dA, dL/dP, unweighted row losses, dL/dtau); threads, workspace_limit < 0: the defaults.

    temperature_tensor, when given, is the temperature (temperature is then unused)."""
    cfg = _config(multilabel, embeddings, reduction, temperature, reg_lambda, backend, threads, workspace_limit,
                  symmetric)
    _, want = _nt._wanted(cfg, (need_similarity, need_anchors, need_positives, need_temperature))
    loss, grads, rows = _nt._forward(cfg, targets, column_targets, weight, similarity, anchors, positives,
                                     temperature_tensor, want, weight_grad)
    empty = loss.new_empty((0,))
    return (loss,) + tuple(grads.get(n, empty.clone()) for n in _NAMES) + (empty if rows is None else rows,) + \
        (grads.get("temperature", empty.clone()),)


loss_op = torch.library.custom_op("npairs::loss", _kernel, mutates_args=())


def _is_fake(x):
    return isinstance(x, torch._subclasses.FakeTensor)


@loss_op.register_fake
def _(targets, column_targets, weight, similarity, anchors, positives, temperature_tensor, multilabel, embeddings,
      reduction, temperature, reg_lambda, backend, threads, workspace_limit, symmetric, need_similarity, need_anchors,
      need_positives, weight_grad, need_temperature):
    inputs = (targets, column_targets, weight, similarity, anchors, positives, temperature_tensor)
    config = (multilabel, embeddings, reduction, temperature, reg_lambda, backend, threads, workspace_limit, symmetric)
    needs = (need_similarity, need_anchors, need_positives, weight_grad, need_temperature)
    if not any(_is_fake(x) for x in inputs):  # real meta tensors, which the library cannot read: its message
        return _kernel(*inputs, *config, *needs)
    cfg = _config(*config)
    _, want = _nt._wanted(cfg, (need_similarity, need_anchors, need_positives, need_temperature))
    logits = _logits(embeddings, similarity, anchors, positives)
    names = ("anchors", "positives") if embeddings else ("similarity",)
    dtype = _arrays._torch_dtype(torch, _core.result_dtype(
        [(n, _arrays.numpy_dtype(n, x.dtype), x.is_cuda) for n, x in zip(names, logits)]))
    like = next((x for x in logits if x.is_cuda), logits[0])
    R, M = logits[0].shape[0], logits[-1].shape[0 if embeddings else 1]
    D = anchors.shape[1] if embeddings else 0
    shapes = {"similarity": (R, M), "anchors": (R, D), "positives": (M, D)}
    out = [like.new_empty((R,) if cfg.reduction == "none" else (), dtype=dtype)]
    out += [like.new_empty(shapes[n] if n in want else (0,), dtype=dtype) for n in _NAMES]
    out.append(like.new_empty((R,) if weight_grad else (0,), dtype=dtype))
    return tuple(out) + (like.new_empty(() if "temperature" in want else (0,), dtype=dtype),)


def _setup_context(ctx, inputs, output):
    targets, column_targets, weight, similarity, anchors, positives, temperature = inputs[:7]
    cfg = _config(*inputs[7:16])
    need_similarity, need_anchors, need_positives, weight_grad, need_temperature = inputs[16:21]
    wanted, want = _nt._wanted(cfg, (need_similarity, need_anchors, need_positives, need_temperature))
    _, *computed, rows, grad_temperature = output
    grads = {n: g for n, g in zip(_NAMES + ("temperature",), computed + [grad_temperature]) if n in want}
    saved = _nt._remember(ctx, cfg, wanted, weight, similarity, anchors, positives, temperature, grads,
                          rows if weight_grad else None)
    ctx.save_for_backward(*saved)
    # Only the loss is used downstream: without this, autograd would fill an
    # R x M zero gradient for the dL/dS output (and one per other output) on
    # every backward, which backward ignores.
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_loss, *unused_grads):
    if grad_loss is None:  # the loss took no part in what is differentiated (grads are not materialised)
        return (None,) * 21
    grad_weight, grad_similarity, grad_anchors, grad_positives, grad_temperature = \
        _nt._backward(ctx, grad_loss, *ctx.saved_tensors)
    return (None, None, grad_weight, grad_similarity, grad_anchors, grad_positives, grad_temperature) + (None,) * 14


loss_op.register_autograd(_backward, setup_context=_setup_context)


def apply(cfg, targets, column_targets, weight, similarity, anchors, positives, temperature):
    """npairs_loss through the op, for tensor inputs (None where absent): what NpairsFunction.apply computes."""
    grad = torch.is_grad_enabled()
    needs = [grad and x is not None and x.requires_grad
             for x in (similarity, anchors, positives, weight, temperature)]
    limit = cfg.workspace_limit
    outputs = loss_op(
        targets, column_targets, weight, similarity, anchors, positives, temperature, cfg.multilabel,
        cfg.embeddings, cfg.reduction, cfg.temperature, cfg.reg_lambda, str(getattr(cfg.backend, "value", cfg.backend)),
        -1 if cfg.threads is None else cfg.threads,
        # An op's int is 64-bit signed; no memory holds 2**63 bytes, so the cap changes nothing.
        -1 if limit is None else min(limit, 2**63 - 1),
        cfg.symmetric, *needs)
    return outputs[0]
