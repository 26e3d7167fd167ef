"""PyTorch modules of the N-pairs loss, backed by libnpairs.

``NpairsLoss`` (labels + similarity), ``NpairsMultilabelLoss`` (multi-hot +
similarity) and ``NpairsEmbeddingsLoss`` (labels + anchors + positives, with
tf.contrib's optional L2 term). The forward pass computes the loss and its
gradients in one library call, and backward only scales them by
``grad_output``: it does not call the library again (for reduction 'none' the
forward pass keeps dL/dS for a unit upstream gradient; backward scales its
rows in place and, for embeddings, multiplies it by the positives and
anchors; only a second backward through a retained graph asks the library
again). A
``sample_weight`` that requires grad costs no extra call either: the same
call returns the unweighted row losses (dL/dw_i is proportional to them).

CPU tensors reach the library without copying when contiguous (else
``.contiguous()`` copies them), CUDA tensors through
``__cuda_array_interface__`` on the current stream. CPU calls use
``torch.get_num_threads()`` threads (or ``threads=``), and at most
``npairs.get_workspace_limit()`` bytes of library workspace (or
``workspace_limit=``; 0: no limit), streaming a call that needs more. float16 and bfloat16 tensors are
computed on CUDA in their own type; on the CPU (e.g. under
``torch.autocast("cpu", dtype=torch.bfloat16)``) in float32, with the loss
and gradients returned in the 16-bit type.

With PyTorch >= 2.4 the loss is the custom op ``torch.ops.npairs.loss``
(see _torch_ops), which torch.compile traces; older PyTorch gets it through
NpairsFunction. Both run _forward and _backward below. CUDA calls made
while the current stream captures a CUDA graph pass
NPAIRS_FLAG_DEFER_CHECKS; those outside capture reserve their workspace
first, so that a captured call allocates nothing.

Gradients flow to the similarity (or the anchors and positives) and to
``sample_weight``; labels and multi-hot targets are constants. Double
backward (``create_graph=True`` through the loss, e.g. a gradient penalty)
is not supported: it raises UnsupportedError rather than drop the
second-order terms.
"""

from __future__ import annotations

import torch
from torch import nn

import math

from . import _core
from ._sampler import HardClassBatchSampler  # noqa: F401 (re-exported)
from .errors import InvalidArgumentError, UnsupportedError

_DOUBLE_BACKWARD = (
    "npairs.torch does not support double backward: a graph was requested through the N-pairs loss's gradient "
    "(torch.autograd.grad or backward with create_graph=True, e.g. for a gradient penalty). Compute the loss "
    "with plain PyTorch ops where second-order terms are needed, or take the gradient without create_graph."
)


class _Config:
    __slots__ = ("multilabel", "embeddings", "reduction", "temperature", "reg_lambda", "backend", "threads",
                 "workspace_limit", "symmetric")

    def __init__(self, multilabel, embeddings, reduction, temperature, reg_lambda, backend, threads=None,
                 workspace_limit=None, symmetric=False):
        self.multilabel = bool(multilabel)
        self.embeddings = embeddings
        self.reduction = _core.reduction_name(reduction)
        # A tensor temperature is an input of its own (see _temperature); its
        # value is read, and checked, by the call that computes.
        self.temperature = 1.0 if torch.is_tensor(temperature) else _core.positive_float("temperature", temperature)
        self.reg_lambda = _core.check_reg_lambda(reg_lambda, _core.reduction_code(reduction), embeddings)
        self.backend = backend
        _core.backend_code(backend)
        self.threads = None if threads is None else _core.threads_count(threads)
        self.workspace_limit = None if workspace_limit is None else _core.workspace_limit_bytes(workspace_limit)
        self.symmetric = _core.check_symmetric(symmetric, _core.reduction_code(reduction))

    def with_temperature(self, tensor):
        """This config with the value of a tensor temperature (one host read: a synchronisation for CUDA)."""
        cfg = _Config.__new__(_Config)
        for name in _Config.__slots__:
            setattr(cfg, name, getattr(self, name))
        cfg.temperature = _core.positive_float("temperature", tensor.detach().item())
        return cfg


def _temperature(temperature):
    """The tensor of a tensor temperature (checked: one floating value), else None.

    Its gradient is the library's dL/dtau (SPEC section 5), for scalar reductions.
    """
    if not torch.is_tensor(temperature):
        return None
    if temperature.numel() != 1 or temperature.dim() > 1 or not temperature.is_floating_point():
        raise InvalidArgumentError(
            f"temperature must be a number or a floating tensor of one value (0-d), got a tensor of shape "
            f"{list(temperature.shape)} and dtype {temperature.dtype}"
        )
    return temperature


def _call(cfg, targets, column_targets, weight, similarity, anchors, positives, *, want_grads, reduction=None,
          reg_lambda=None, weights_as_grad_loss=False, grad_loss=None):
    names = {"targets": "multilabels", "column_targets": "column_multilabels"} if cfg.multilabel else {}
    # CUDA graphs: a call outside capture reserves its workspace, so that the
    # same call captured later (as a graph replays it) allocates nothing.
    cuda = any(torch.is_tensor(x) and x.is_cuda for x in (similarity, anchors, positives))
    capturing = cuda and torch.cuda.is_current_stream_capturing()
    return _core.compute(
        targets=targets,
        column_targets=column_targets,
        multilabel=cfg.multilabel,
        embeddings=cfg.embeddings,
        similarity=similarity,
        anchors=anchors,
        positives=positives,
        sample_weight=weight,
        grad_loss=grad_loss,
        reduction=cfg.reduction if reduction is None else reduction,
        temperature=cfg.temperature,
        symmetric=cfg.symmetric,
        reg_lambda=cfg.reg_lambda if reg_lambda is None else reg_lambda,
        backend=cfg.backend,
        threads=torch.get_num_threads() if cfg.threads is None else cfg.threads,
        workspace_limit=cfg.workspace_limit,
        want_grads=want_grads,
        names=names,
        host_half_as_float32=True,
        weights_as_grad_loss=weights_as_grad_loss,
        reserve_workspace=cuda and not capturing,
        capturing=capturing,
    )


def _rows(logits):
    """The row count of a 2-D logits input (checked by the library call that follows; 0 if it has none)."""
    shape = getattr(logits, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else 0


def _detached(x):
    return x.detach() if torch.is_tensor(x) else x


def _tensor(x, like):
    return x if torch.is_tensor(x) else torch.as_tensor(x, device=like.device)


def _tracing():
    """True while torch.compile traces: no data-dependent Python branches then."""
    compiler = getattr(torch, "compiler", None)  # PyTorch >= 2.3
    return compiler is not None and compiler.is_compiling()


def _eager(x):
    """True when x holds real data now: not while torch.compile, AOTAutograd or opcheck traces (no value to read)."""
    if _tracing() or type(x) is not torch.Tensor:
        return False
    guards = getattr(torch, "_guards", None)
    return guards is None or guards.detect_fake_mode([x]) is None


def _wanted(cfg, needs):
    """The gradients wanted (needs: similarity, anchors, positives, temperature), and what the library computes.

    For 'none' the library gives dL/dS for a unit upstream gradient, whose rows backward scales
    (dL/dtau, one value for every row, is refused before the call: see _apply).
    """
    wanted = tuple(n for n, need in zip(("similarity", "anchors", "positives"), needs)
                   if need and (n != "similarity") == cfg.embeddings)
    tau = ("temperature",) if len(needs) > 3 and needs[3] else ()
    return wanted + tau, (("similarity",) if cfg.reduction == "none" and wanted else wanted + tau)


def _forward(cfg, targets, column_targets, weight, similarity, anchors, positives, temperature, want, weight_grad):
    """The loss, the library's gradients {name: tensor} and, when weight_grad, the unweighted row losses.

    temperature: a tensor temperature, or None (cfg's number).
    """
    if temperature is not None:
        cfg = cfg.with_temperature(temperature)
    if not weight_grad:
        loss, grads = _call(cfg, targets, column_targets, weight, similarity, anchors, positives, want_grads=want)
        return loss, grads, None
    # One call gives the unweighted row losses (for dL/dw) and the gradients
    # of sum_i r w_i loss_i (r: the reduction's factor, as the library's
    # upstream gradient); the reduction and the L2 term are applied here, as
    # SPEC section 1 defines them.
    none = cfg.reduction == "none"
    w = weight.detach()
    r = 1.0 / max(_rows(similarity if anchors is None else anchors), 1) \
        if cfg.reduction == "sum_over_batch_size" else 1.0
    rows, grads = _call(cfg, targets, column_targets, w * r if r != 1.0 else w, similarity, anchors, positives,
                        want_grads=want, reduction="none", reg_lambda=0.0, weights_as_grad_loss=True)
    w = w.reshape(-1).to(device=rows.device, dtype=rows.dtype)
    loss = rows * w if none else (rows * w).sum() * r
    if cfg.reg_lambda > 0 and not none:
        loss = loss + _add_l2_term(cfg.reg_lambda, _tensor(anchors, loss), positives, grads)
    return loss, grads, rows


def _remember(ctx, cfg, wanted, weight, similarity, anchors, positives, temperature, grads, rows):
    """Keeps on ctx what _backward needs; returns the tensors to save (similarity, anchors, positives, rows,
    temperature)."""
    none = cfg.reduction == "none"
    ctx.none, ctx.wanted = none, wanted
    ctx.scale = 1.0 / max(rows.shape[0], 1) if rows is not None and cfg.reduction == "sum_over_batch_size" \
        else 1.0
    ctx.dtypes = {name: x.dtype for name, x in zip(("similarity", "anchors", "positives"),
                                                  (similarity, anchors, positives)) if torch.is_tensor(x)}
    ctx.temperature_meta = (temperature.dtype, temperature.device) if temperature is not None else None
    ctx.weight_meta = (weight.shape, weight.dtype, weight.device) if rows is not None else None
    ctx.unit_dS = None
    ctx.hand_out_saved = True
    saved = [grads.get(n) for n in ("similarity", "anchors", "positives")] + [rows, grads.get("temperature")]
    if none and wanted and cfg.embeddings:
        dS = grads["similarity"]
        saved[1:3] = [_tensor(anchors, dS), _tensor(positives, dS)]  # backward multiplies dS by them
    return saved


def _backward(ctx, grad_output, similarity, anchors, positives, rows, temperature):
    """The gradients of (weight, similarity, anchors, positives, temperature) from what _remember kept."""
    if torch.is_grad_enabled() and not _tracing():  # create_graph=True: second-order terms were asked for
        raise UnsupportedError(_DOUBLE_BACKWARD)
    out = {"similarity": None, "anchors": None, "positives": None, "temperature": None}
    grad_weight = None
    if ctx.none:
        if ctx.wanted and ctx.unit_dS is not None:
            out["similarity"] = ctx.unit_dS.mul_(grad_output.to(ctx.unit_dS.dtype).reshape(-1, 1))
            ctx.unit_dS = None
        elif ctx.wanted and similarity is not None:  # the upstream gradient scales rows of dS
            g = grad_output.to(similarity.dtype).reshape(-1, 1)
            if "similarity" in ctx.wanted:
                out["similarity"] = similarity * g
            if "anchors" in ctx.wanted:
                out["anchors"] = g * (similarity @ positives.to(g.dtype))
            if "positives" in ctx.wanted:
                out["positives"] = similarity.T @ (g * anchors.to(g.dtype))
        elif ctx.wanted:
            cfg, targets, column_targets, weight, logits = ctx.recompute
            _, grads = _call(cfg, targets, column_targets, weight, logits, None, None, want_grads=("similarity",),
                             grad_loss=grad_output.detach().contiguous())
            out["similarity"] = grads["similarity"]
        if rows is not None:
            grad_weight = grad_output * rows
    else:
        # loss.backward() passes a 1: then the saved gradients are the answer, and
        # skipping the product saves a pass over R x M (and a new array). ctx keeps
        # a reference to each one handed out until this backward pass ends, so that
        # autograd never takes it as a leaf's .grad (which a later backward through
        # a retained graph would add into, in place): it copies it then, as for any
        # tensor held elsewhere. The reference is dropped at the end of the pass: it
        # is a cycle (the output's grad_fn holds ctx) that would keep the memory
        # from the output pool until the garbage collector ran.
        # Checked on CPU only, where reading the value costs no device synchronisation.
        unit = ctx.hand_out_saved and _eager(grad_output) and grad_output.device.type == "cpu" \
            and grad_output.numel() == 1 and grad_output.item() == 1.0
        for name, grad in zip(out, (similarity, anchors, positives, temperature)):
            if grad is not None and name in ctx.wanted:
                out[name] = grad if unit else grad * grad_output
        if unit:
            ctx.handed_out = tuple(out.values())
            torch.autograd.Variable._execution_engine.queue_callback(lambda: ctx.__dict__.pop("handed_out", None))
        if rows is not None:
            grad_weight = rows * (grad_output * ctx.scale)
    for name, grad in out.items():
        if grad is not None and name != "temperature":
            out[name] = grad.to(ctx.dtypes[name])
    if out["temperature"] is not None:  # back to the temperature's own shape, dtype and device
        dtype, device = ctx.temperature_meta
        out["temperature"] = out["temperature"].to(device=device, dtype=dtype)
    if grad_weight is not None:  # back to the weights' own shape: [R], [R, 1] or a broadcast scalar
        shape, dtype, device = ctx.weight_meta
        grad_weight = (grad_weight.sum() if len(shape) == 0 else grad_weight).reshape(shape)
        grad_weight = grad_weight.to(device=device, dtype=dtype)
    return grad_weight, out["similarity"], out["anchors"], out["positives"], out["temperature"]


class NpairsFunction(torch.autograd.Function):
    """apply(cfg, targets, column_targets, sample_weight, similarity, anchors, positives, temperature).

    The path of PyTorch without torch.library.custom_op (before 2.4); see _torch_ops for the other.
    """

    @staticmethod
    def forward(ctx, cfg, targets, column_targets, weight, similarity, anchors, positives, temperature):
        wanted, want = _wanted(cfg, ctx.needs_input_grad[4:8])
        loss, grads, rows = _forward(cfg, targets, column_targets, weight, similarity, anchors, positives,
                                     temperature, want, ctx.needs_input_grad[3])
        saved = _remember(ctx, cfg, wanted, weight, similarity, anchors, positives, temperature, grads, rows)
        ctx.hand_out_saved = True
        if ctx.none and wanted and not cfg.embeddings:
            # Scaled in place by the first backward (no new R x M array), so
            # kept outside the saved tensors, whose versions autograd checks;
            # a second backward (retain_graph=True) asks the library again.
            saved[0] = None
            ctx.unit_dS = grads["similarity"]
            ctx.recompute = (cfg if temperature is None else cfg.with_temperature(temperature), targets,
                             column_targets, _detached(weight), _detached(similarity))
        ctx.save_for_backward(*saved)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        return (None, None, None) + _backward(ctx, grad_output, *ctx.saved_tensors)


def _add_l2_term(reg_lambda, anchors, positives, grads):
    """tf.contrib's L2 term, 0.25 reg (mean_i |a_i|^2 + mean_j |p_j|^2), with its gradients added to grads.

    Only for a sample_weight that requires grad: that path's 'none' call
    (for the row losses) cannot include the term.
    """
    a, p = anchors.detach(), _tensor(positives, anchors).detach()
    if "anchors" in grads:
        grads["anchors"] += (0.5 * reg_lambda / max(a.shape[0], 1)) * a.to(grads["anchors"].dtype)
    if "positives" in grads:
        grads["positives"] += (0.5 * reg_lambda / max(p.shape[0], 1)) * p.to(grads["positives"].dtype)
    return 0.25 * reg_lambda * (a.pow(2).sum(1).mean() + p.pow(2).sum(1).mean())


def _weight(sample_weight, like):
    """Tensor weights pass through (they may require grad); numbers are broadcast to one per row of like.

    The broadcast is made on like's device, as a CUDA graph needs (no host
    memory in a captured call), and in its floating dtype.
    """
    if sample_weight is None or isinstance(sample_weight, torch.Tensor):
        return sample_weight
    if not torch.is_tensor(like):
        return torch.as_tensor(sample_weight)
    dtype = like.dtype if like.is_floating_point() else torch.float64
    if isinstance(sample_weight, (int, float)):
        return torch.full(like.shape[:1], float(sample_weight), dtype=dtype, device=like.device)
    return torch.as_tensor(sample_weight, dtype=dtype, device=like.device)


def _check_temperature_grad(reduction, temperature):
    """A tensor temperature that requires grad needs a scalar reduction (the library sums dL/dtau over rows)."""
    if temperature is not None and temperature.requires_grad and reduction == "none":
        raise UnsupportedError(
            "a temperature that requires grad needs a scalar reduction ('sum' or 'sum_over_batch_size'): "
            "with reduction='none' its gradient would need each row's dL/dtemperature, which the library "
            "sums; pass a number, or a tensor that does not require grad"
        )


def _apply(cfg, targets, column_targets, weight, similarity, anchors, positives, temperature=None):
    """The loss through the custom op where this PyTorch has them and every input is a tensor (or None), else
    through NpairsFunction (NumPy or list inputs, which the op cannot take, are converted by the library call).

    temperature: the tensor of a tensor temperature (see _temperature), or None."""
    _core.check_symmetric(cfg.symmetric, _core.reduction_code(cfg.reduction), weight)
    _check_temperature_grad(cfg.reduction, temperature)
    inputs = (targets, column_targets, weight, similarity, anchors, positives, temperature)
    if _torch_ops is not None and all(x is None or torch.is_tensor(x) for x in inputs):
        return _torch_ops.apply(cfg, *inputs)
    return NpairsFunction.apply(cfg, *inputs)


def npairs_loss(labels, similarity, sample_weight=None, *, column_labels=None, reduction="sum_over_batch_size",
                temperature=1.0, backend="auto", threads=None, workspace_limit=None, symmetric=False):
    """Differentiable N-pairs loss of [R] integer labels and an [R, M] similarity.

    temperature: a number, or a tensor of one value that may require grad
    (a learnable temperature; its gradient is the library's dL/dtau, for
    scalar reductions). symmetric: CLIP's loss, the mean of the row and the
    column directions (SPEC section 5; a scalar reduction, no
    sample_weight). threads: CPU threads (None: torch.get_num_threads()).
    workspace_limit: bytes of library workspace (None:
    npairs.get_workspace_limit(); 0: no limit).
    """
    cfg = _Config(False, False, reduction, temperature, 0.0, backend, threads, workspace_limit, symmetric)
    return _apply(cfg, labels, column_labels, _weight(sample_weight, similarity), similarity, None, None,
                  _temperature(temperature))


def npairs_multilabel_loss(multilabels, similarity, sample_weight=None, *, column_multilabels=None,
                           reduction="sum_over_batch_size", temperature=1.0, backend="auto", threads=None,
                           workspace_limit=None, symmetric=False):
    """Differentiable multi-label N-pairs loss of an [R, K] multi-hot matrix and an [R, M] similarity."""
    cfg = _Config(True, False, reduction, temperature, 0.0, backend, threads, workspace_limit, symmetric)
    return _apply(cfg, multilabels, column_multilabels, _weight(sample_weight, similarity), similarity, None, None,
                  _temperature(temperature))


def npairs_embeddings_loss(labels, anchors, positives, sample_weight=None, *, column_labels=None, reg_lambda=0.0,
                           temperature=1.0, reduction="sum_over_batch_size", multilabel=None, backend="auto",
                           threads=None, workspace_limit=None, symmetric=False):
    """Differentiable N-pairs loss of anchors [R, D] and positives [M, D].

    reg_lambda adds tf.contrib's L2 term (0.002 reproduces tf.contrib's
    npairs_loss; the default 0 adds none). temperature and symmetric as for
    :func:`npairs_loss`.
    """
    cfg = _Config(_core.is_multilabel(labels, multilabel), True, reduction, temperature, reg_lambda, backend, threads,
                  workspace_limit, symmetric)
    return _apply(cfg, labels, column_labels, _weight(sample_weight, anchors), None, anchors, positives,
                  _temperature(temperature))


def _limit_repr(workspace_limit):
    """The extra_repr part of a module's workspace limit: none when it follows the package-level setting."""
    return "" if workspace_limit is None else f", workspace_limit={workspace_limit}"


def _module_temperature(module, temperature):
    """Keeps a module's temperature: a tensor as it is (an nn.Parameter is then the module's parameter)."""
    module.temperature = temperature if torch.is_tensor(temperature) else module._cfg.temperature


def _options_repr(module):
    """temperature (its value, or 'tensor'), reduction, and symmetric when set."""
    tau = module.temperature
    text = f"temperature={'tensor' if torch.is_tensor(tau) else tau}, reduction={module.reduction!r}"
    return text + (", symmetric=True" if module._cfg.symmetric else "")


class NpairsLoss(nn.Module):
    """``NpairsLoss(temperature=1.0, reduction='sum_over_batch_size')(labels, similarity)``.

    reduction: 'sum_over_batch_size' (also 'mean'/'auto'), 'sum' or 'none'.
    temperature: a number or a tensor of one value (an ``nn.Parameter``
    becomes the module's parameter: a learnable temperature). symmetric:
    CLIP's loss over rows and columns (see :func:`npairs_loss`).
    workspace_limit: bytes of library workspace per call (None:
    npairs.get_workspace_limit(); 0: no limit).
    """

    def __init__(self, temperature=1.0, reduction="sum_over_batch_size", backend="auto", workspace_limit=None,
                 symmetric=False):
        super().__init__()
        self._cfg = _Config(self._multilabel, False, reduction, temperature, 0.0, backend,
                            workspace_limit=workspace_limit, symmetric=symmetric)
        _module_temperature(self, temperature)
        self.reduction = self._cfg.reduction
        self.backend = backend
        self.workspace_limit = self._cfg.workspace_limit

    _multilabel = False

    def forward(self, labels, similarity, sample_weight=None, column_labels=None):
        return _apply(self._cfg, labels, column_labels, _weight(sample_weight, similarity), similarity, None, None,
                      _temperature(self.temperature))

    def extra_repr(self):
        return _options_repr(self) + _limit_repr(self.workspace_limit)


class NpairsMultilabelLoss(NpairsLoss):
    """``NpairsMultilabelLoss(...)(multilabels, similarity)`` with [R, K] multi-hot targets."""

    _multilabel = True

    def forward(self, multilabels, similarity, sample_weight=None, column_multilabels=None):
        return super().forward(multilabels, similarity, sample_weight, column_multilabels)


class NpairsEmbeddingsLoss(nn.Module):
    """``NpairsEmbeddingsLoss(reg_lambda=0.0, temperature=1.0)(labels, anchors, positives)``.

    Logits ``anchors @ positives.T / temperature``, plus
    ``0.25 * reg_lambda * (mean |a_i|^2 + mean |p_j|^2)`` for scalar
    reductions (``reg_lambda=0.002`` reproduces tf.contrib's npairs_loss).
    temperature and symmetric as for :class:`NpairsLoss`.
    """

    def __init__(self, reg_lambda=0.0, temperature=1.0, reduction="sum_over_batch_size", multilabel=False,
                 backend="auto", workspace_limit=None, symmetric=False):
        super().__init__()
        self._cfg = _Config(bool(multilabel), True, reduction, temperature, reg_lambda, backend,
                            workspace_limit=workspace_limit, symmetric=symmetric)
        self.reg_lambda = self._cfg.reg_lambda
        _module_temperature(self, temperature)
        self.reduction = self._cfg.reduction
        self.multilabel = bool(multilabel)
        self.backend = backend
        self.workspace_limit = self._cfg.workspace_limit

    def forward(self, labels, anchors, positives, sample_weight=None, column_labels=None):
        return _apply(self._cfg, labels, column_labels, _weight(sample_weight, anchors), None, anchors, positives,
                      _temperature(self.temperature))

    def extra_repr(self):
        return f"reg_lambda={self.reg_lambda}, " + _options_repr(self) + _limit_repr(self.workspace_limit)


class ClipLoss(nn.Module):
    """CLIP's contrastive loss (open_clip's ``ClipLoss``) in one library call, with a learnable logit scale.

    ``ClipLoss()(image_features, text_features)`` is
    ``(cross_entropy(S, arange(R)) + cross_entropy(S.T, arange(R))) / 2``
    with ``S = logit_scale * image_features @ text_features.T``: the
    symmetric N-pairs loss (SPEC section 5) of the embeddings at temperature
    ``1 / logit_scale``, whose gradient (the library's dL/dtau) trains the
    scale. Normalise the features first, as CLIP does.

    The parameter ``logit_scale`` holds log(scale), as open_clip models'
    ``logit_scale`` does (initialised to log(1/0.07)); ``learnable=False``
    keeps it as a buffer. ``forward(..., logit_scale=s)`` uses the scale s
    (a tensor or a number, not its log: what open_clip's ClipLoss takes,
    ``model.logit_scale.exp()``) instead. ``labels`` (default 0..R-1) pair
    texts with images when a batch holds duplicates.
    """

    def __init__(self, logit_scale=1 / 0.07, learnable=True, backend="auto", threads=None, workspace_limit=None):
        super().__init__()
        value = torch.tensor(math.log(_core.positive_float("logit_scale", logit_scale)))
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)
        self._cfg = _Config(False, True, "sum_over_batch_size", 1.0, 0.0, backend, threads, workspace_limit,
                            symmetric=True)

    def forward(self, image_features, text_features, logit_scale=None, labels=None):
        scale = self.logit_scale.exp() if logit_scale is None else logit_scale
        temperature = torch.reciprocal(scale) if torch.is_tensor(scale) else 1.0 / _core.positive_float(
            "logit_scale", scale)
        if labels is None:
            labels = torch.arange(image_features.shape[0], device=image_features.device)
        cfg = self._cfg if torch.is_tensor(temperature) else _Config(
            False, True, "sum_over_batch_size", temperature, 0.0, self._cfg.backend, self._cfg.threads,
            self._cfg.workspace_limit, symmetric=True)
        return _apply(cfg, labels, None, None, None, image_features, text_features, _temperature(temperature))

    def extra_repr(self):
        return f"logit_scale={math.exp(float(self.logit_scale.detach())):.4g}" + \
            ("" if isinstance(self.logit_scale, nn.Parameter) else " (fixed)")


# torch.compile traces torch.library custom ops (PyTorch >= 2.4), not autograd.Functions around ctypes calls.
if hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_autograd"):
    from . import _torch_ops
else:
    _torch_ops = None

# Issues #14 and #15; _distributed needs the names above.
from ._distributed import DistributedClipLoss, DistributedNpairsEmbeddingsLoss  # noqa: E402,F401
