"""The N-pairs loss of a batch sharded across the ranks of a torch.distributed process group (issue #14).

Each rank holds a shard of the global batch: its labels, anchors and
positives. Its rows are its own anchors; its columns are the positives of
every rank, with their labels, so the loss of every rank's rows together is
the loss of the concatenated batch. Two strategies bring the columns to the
rows:

- ``"all_gather"``: the positives and their labels are gathered (padded to
  the largest shard, as gloo and NCCL gather equal sizes), this rank's rows
  against all of them are one rectangular library call with column targets
  (streamed under ``workspace_limit``), and the gradient of the gathered
  positives goes back to their owners by a reduce-scatter (sum).
- ``"ring"`` (Inf-CL): blocks of positives (with their labels) travel
  around the ring of ranks with batch_isend_irecv, the next block in flight
  while this one is computed; the forward pass merges each block's per-row
  statistics (npairs_block_stats: running max, sum of exponentials, target
  terms), the backward pass sends the blocks around again and each block's
  gradient on with it to its owner (npairs_block_gradients from the final
  statistics), so no rank holds more than its own rows and two blocks.

CLIP's symmetric loss (issue #15) adds the column direction: every rank's
positives as rows against every rank's anchors, the transposed problem of the
same labels, computed by the same machinery (the anchors gathered too, or
travelling in the ring's blocks beside the positives), each direction
weighted 1/2. A tensor temperature's gradient is the library's dL/dtau of
each call (or block), summed over the ranks.

Faults. Before any collective whose shapes depend on the data, the ranks
agree on a status with one fixed-size all_gather: every rank's own argument
check, shard size and metadata (width, dtype, device, multi-label width,
options). After the library call they agree again (that exchange also
carries the loss shares, which gives ``global_loss`` at no extra cost), so a
failing rank never leaves the others waiting in a collective: every rank
raises the same error, naming the rank.
"""

from __future__ import annotations

import ctypes

import torch
import torch.distributed as dist
from torch import nn

from . import _arrays, _core, _lib
from . import errors
from . import torch as _nt

_STRATEGIES = ("all_gather", "ring")
_NAMES = {
    "targets": "labels",
    "column_targets": "labels",
    "similarity": "similarity",
    "anchors": "anchors",
    "positives": "positives",
    "sample_weight": "sample_weight",
}
_DTYPES = ("float16", "bfloat16", "float32", "float64")
_REDUCTION_CODES = {"none": 0, "sum": 1, "sum_over_batch_size": 2}

# Exceptions travel between ranks as an index into this tuple (0: none; the
# last entry stands for any exception that is not an NpairsError), with
# their message as bytes.
_ERROR_CLASSES = (None, errors.InvalidArgumentError, errors.InvalidDTypeError, errors.InvalidValueError,
                  errors.UnsupportedError, errors.OutOfMemoryError, errors.BackendUnavailableError,
                  errors.DeviceError, errors.InternalError, errors.NpairsError, RuntimeError)
_MESSAGE_BYTES = 400


def _error_code(error):
    if error is None:
        return 0
    for code, cls in enumerate(_ERROR_CLASSES[1:-1], start=1):
        if type(error) is cls:
            return code
    return len(_ERROR_CLASSES) - 1


def _message_of(error):
    text = str(error) if isinstance(error, errors.NpairsError) else f"{type(error).__name__}: {error}"
    data = text.encode("utf-8", "replace")
    if len(data) > _MESSAGE_BYTES:
        data = data[:_MESSAGE_BYTES - 3] + "...".encode()
    return data


class _Group:
    """The process group of a call: its size, this rank, and the device its collectives use."""

    def __init__(self, group):
        if not dist.is_available() or not dist.is_initialized():
            raise errors.InvalidArgumentError(
                "DistributedNpairsEmbeddingsLoss needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group, e.g. under torchrun)")
        self.group = group if group is not None else dist.group.WORLD
        self.size = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)
        self.backend = str(dist.get_backend(self.group)).lower()
        # NCCL communicates CUDA tensors only; gloo CPU tensors.
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" \
            else torch.device("cpu")

    def global_rank(self, rank):
        """The default group's rank of this group's `rank` (what reduce's dst and send's peer name)."""
        if self.group is dist.group.WORLD:
            return rank
        get = getattr(dist, "get_global_rank", None) or dist.distributed_c10d._get_global_rank
        return get(self.group, rank)

    def all_gather_rows(self, local):
        """[size, *local.shape]: every rank's tensor of this shape, on this device (one all_gather)."""
        out = local.new_empty((self.size,) + tuple(local.shape))
        dist.all_gather(list(out.unbind(0)), local.contiguous(), group=self.group)
        return out

    def agree(self, error, values=()):
        """Every rank's (values, error) after one fixed-size all_gather: [size, len(values)] float64 on the host.

        Raises on every rank when any rank passed an error, naming the ranks
        that failed and the first one's message (the class of the first).
        """
        row = torch.zeros(2 + len(values) + _MESSAGE_BYTES, dtype=torch.float64)
        row[0] = _error_code(error)
        if values:
            row[2:2 + len(values)] = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if error is not None:
            message = _message_of(error)
            row[1] = len(message)
            row[2 + len(values):2 + len(values) + len(message)] = torch.tensor(list(message), dtype=torch.float64)
        table = self.all_gather_rows(row.to(self.device)).cpu()
        failed = [r for r in range(self.size) if table[r, 0] != 0]
        if failed:
            first = failed[0]
            length = int(table[first, 1])
            message = bytes(int(b) for b in table[first, 2 + len(values):2 + len(values) + length]).decode(
                "utf-8", "replace")
            others = f" (ranks {', '.join(map(str, failed))} failed)" if len(failed) > 1 else ""
            text = f"rank {first} of the process group: {message}{others}"
            cls = _ERROR_CLASSES[int(table[first, 0])]
            exc = cls(text) if not issubclass(cls, errors.NpairsError) else cls(text, cls.status)
            raise exc from error
        return table[:, 2:2 + len(values)]


class _Shard:
    """This rank's inputs, checked as the library's Python layer checks a call, before any data collective."""

    def __init__(self, cfg, labels, anchors, positives, sample_weight):
        for name, x in (("anchors", anchors), ("positives", positives)):
            if not torch.is_tensor(x):
                raise errors.InvalidArgumentError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if anchors.ndim == 2 and positives.ndim == 2 and anchors.shape[0] != positives.shape[0]:
            raise errors.InvalidArgumentError(
                f"anchors has {anchors.shape[0]} rows but positives has {positives.shape[0]}: a rank's shard "
                "holds one positive per anchor")
        p = _core._prepare(targets=labels, column_targets=None, multilabel=cfg.multilabel, embeddings=True,
                           similarity=None, anchors=anchors, positives=positives, sample_weight=sample_weight,
                           grad_loss=None, reduction=cfg.reduction, temperature=cfg.temperature, reg_lambda=0.0,
                           backend=cfg.backend, names=_NAMES, host_half_as_float32=True,
                           weights_as_grad_loss=False)
        self.rows, self.dim, self.classes = p.R, p.D, p.K
        self.dtype = _arrays._torch_dtype(torch, p.out_dtype)
        self.dtype_code = _DTYPES.index(_arrays.dtype_name(p.out_dtype))
        self.device = anchors.device
        if self.device != positives.device:
            raise errors.InvalidArgumentError(
                f"anchors is on {anchors.device} but positives is on {positives.device}; put them on one device")
        # The columns' targets as they travel: int64 labels, or multi-hot rows in the compute dtype.
        targets = torch.as_tensor(labels, device=self.device)
        self.column_targets = targets.reshape(self.rows, self.classes).to(self.dtype) if cfg.multilabel \
            else targets.reshape(-1).to(torch.int64)


class DistributedNpairsEmbeddingsLoss(nn.Module):
    """The N-pairs loss of the global batch, each rank passing its shard: ``loss_fn(labels, anchors, positives)``.

    ``DistributedNpairsEmbeddingsLoss(reg_lambda=0.0, temperature=1.0, reduction="sum_over_batch_size",
    multilabel=False, group=None, strategy="all_gather", backend="auto", workspace_limit=0, symmetric=False,
    threads=None)``.

    ``forward(labels, anchors, positives, sample_weight=None)`` takes this
    rank's shard: labels [R_r] (or multi-hot [R_r, K] with
    ``multilabel=True``), anchors and positives [R_r, D], and optional
    weights of its rows. Shard sizes may differ between ranks.

    Semantics:

    - Rows are this rank's anchors; columns are the positives of every rank,
      with their labels (a class whose only positive is on another rank is
      fine).
    - The gradient that reaches each rank's inputs is that of the sum over
      ranks of the values returned (what
      ``torch.distributed.nn.functional.all_gather`` gives autograd); every
      rank must call backward, as for any collective.
    - Scalar reductions ('sum', 'sum_over_batch_size') return this rank's
      share of the global-batch loss times the world size, so that the mean
      over ranks is the loss of the concatenated batch, L2 term included
      (``0.25 * reg_lambda * (mean |a|^2 + mean |p|^2)`` over the global
      batch), and under DistributedDataParallel, which averages gradients,
      training equals one process training on the concatenated batch.
      'none' returns this rank's rows' losses, equal to those rows of the
      single-process result.
    - ``global_loss`` (a float, after each forward) is the loss of the
      concatenated batch for the scalar reductions (None for 'none'); it
      rides on the status exchange that the call makes anyway.
    - ``symmetric=True``: CLIP's loss (SPEC section 5) of the global batch,
      the mean of the row direction above and the column direction (every
      rank's positives as rows against every rank's anchors; 'sum_over_batch_size'
      divides each direction by its own count, the global batch size), the
      L2 term added once. This rank's share is its anchors' rows and its
      positives' columns, each direction computed as the rectangular
      problem above (the column direction transposed). It needs a scalar
      reduction and no sample_weight.
    - temperature: a number, or a tensor of one value (an ``nn.Parameter``
      becomes the module's parameter: a learnable temperature), the same
      value on every rank. Its gradient is the library's dL/dtau, summed over
      the ranks' shares in backward (one all_reduce of one value; the ring
      sums it in the exchange it makes anyway): dL/dtau of the global-batch
      loss, the same on every rank, which is what DDP's mean of the ranks'
      gradients gives (and leaves unchanged), so that a learnable
      temperature trains as in one process on the concatenated batch. A
      temperature that requires grad needs a scalar reduction.

    strategy: ``"all_gather"`` (the positives, and for symmetric the
    anchors, gathered on every rank; their gradients reduce-scattered to
    their owners) or ``"ring"`` (Inf-CL: blocks of positives, and for
    symmetric anchors, travel around the ring, so no rank holds them all;
    its block calls run on CPU tensors and on float32 or float64 CUDA
    tensors: 16-bit CUDA tensors raise UnsupportedError on every rank in
    this version). group: a torch.distributed process group (None: the
    default one): gloo with CPU tensors, NCCL with CUDA tensors.
    workspace_limit: bytes of library workspace per call (0: none; None:
    npairs.get_workspace_limit()). threads: CPU threads of each library
    call (None: torch.get_num_threads()).

    Any rank's invalid data (a row without a positive among all columns, a
    negative multi-label entry) or shards that disagree (width, dtype,
    device, multi-label width, options, whether anchors, positives and the
    temperature need gradients)
    make every rank raise the same error, naming the rank; none is left
    waiting in a collective.
    """

    def __init__(self, reg_lambda=0.0, temperature=1.0, reduction="sum_over_batch_size", multilabel=False,
                 group=None, strategy="all_gather", backend="auto", workspace_limit=0, symmetric=False, threads=None):
        super().__init__()
        self._cfg = _nt._Config(bool(multilabel), True, reduction, temperature, reg_lambda, backend, threads,
                                workspace_limit)
        if strategy not in _STRATEGIES:
            raise errors.InvalidArgumentError(f"strategy must be 'all_gather' or 'ring', got {strategy!r}")
        # The library computes each direction as a plain call; the flag is this module's, not the calls'.
        self.symmetric = _core.check_symmetric(symmetric, _core.reduction_code(reduction))
        self.reg_lambda = self._cfg.reg_lambda
        _nt._module_temperature(self, temperature)
        self.reduction = self._cfg.reduction
        self.multilabel = bool(multilabel)
        self.group = group
        self.strategy = strategy
        self.backend = backend
        self.workspace_limit = self._cfg.workspace_limit
        self.global_loss = None

    def forward(self, labels, anchors, positives, sample_weight=None):
        return self._loss(labels, anchors, positives, sample_weight, self.temperature)

    def _loss(self, labels, anchors, positives, sample_weight, temperature):
        """forward with this temperature (a number or a tensor): DistributedClipLoss passes its scale's."""
        cfg = self._cfg
        group = _Group(self.group)
        weight = _nt._weight(sample_weight, anchors)
        grad_mode = torch.is_grad_enabled()
        grad_anchors = grad_mode and torch.is_tensor(anchors) and anchors.requires_grad
        grad_positives = grad_mode and torch.is_tensor(positives) and positives.requires_grad
        tau = temperature if torch.is_tensor(temperature) else None
        grad_temperature = grad_mode and tau is not None and tau.requires_grad
        shard, error = None, None
        try:
            if tau is not None:
                _nt._temperature(tau)
                _nt._check_temperature_grad(cfg.reduction, tau)
                cfg = cfg.with_temperature(tau)
            shard = _Shard(cfg, labels, anchors, positives, weight)
            _core.check_symmetric(self.symmetric, _core.reduction_code(cfg.reduction), weight)
            if group.backend == "nccl" and shard.device.type != "cuda":
                raise errors.InvalidArgumentError(
                    f"the process group's backend is NCCL, which communicates CUDA tensors, but anchors is on "
                    f"{shard.device}")
            if self.strategy == "ring" and shard.device.type == "cuda" and \
                    shard.dtype in (torch.float16, torch.bfloat16):
                # Before any collective, not from the first block call in the ring.
                raise errors.UnsupportedError(
                    f"strategy='ring' on CUDA tensors computes float32 and float64 in this version (CUDA column "
                    f"blocks keep 16-bit running statistics in float32), but anchors is {shard.dtype}: use float32 "
                    f"or strategy='all_gather'")
        except Exception as e:  # reported to every rank by agree
            error = e
        options = (_REDUCTION_CODES[cfg.reduction], cfg.temperature, cfg.reg_lambda, cfg.multilabel,
                   _STRATEGIES.index(self.strategy), self.symmetric, grad_anchors, grad_positives, grad_temperature)
        meta = (0, 0, 0, 0, 0) if shard is None else \
            (shard.rows, shard.dim, shard.dtype_code, shard.device.type == "cuda", shard.classes)
        table = group.agree(error, meta + options)
        _check_agreement(table)
        sizes = [int(n) for n in table[:, 0]]
        state = _State(cfg, group, shard, sizes, weight, self.symmetric, self.strategy,
                       (grad_anchors, grad_positives, grad_temperature))
        l2 = None
        if cfg.reg_lambda > 0:
            # The L2 term of the global batch is 0.25 reg (sum |a|^2 + sum |p|^2) / N over every rank's rows:
            # this rank's share times the world size, as the rest of the value returned.
            a, p = anchors.to(shard.dtype), positives.to(shard.dtype)
            l2 = 0.25 * cfg.reg_lambda * (a.pow(2).sum() + p.pow(2).sum()) * (group.size / max(state.total, 1))
            state.l2_share = float(l2.detach()) / group.size
        function = _AllGatherLoss if self.strategy == "all_gather" else _RingLoss
        loss = function.apply(state, anchors.to(shard.dtype), positives.to(shard.dtype), weight, tau)
        self.global_loss = state.global_loss
        return loss if l2 is None else loss + l2

    def extra_repr(self):
        return f"reg_lambda={self.reg_lambda}, " + _nt._options_repr(self) + \
            (", symmetric=True" if self.symmetric else "") + f", strategy={self.strategy!r}" + \
            _nt._limit_repr(self.workspace_limit)


_FIELDS = ("embedding width (D)", "dtype", "device type (CUDA or not)", "multi-label width (K)", "reduction",
           "temperature", "reg_lambda", "multilabel", "strategy", "symmetric", "whether anchors require grad",
           "whether positives require grad", "whether the temperature requires grad")
_FLAGS = ("multilabel", "symmetric", "whether anchors require grad", "whether positives require grad",
          "whether the temperature requires grad", "device type (CUDA or not)")


def _check_agreement(table):
    """Every rank compares every rank's metadata with rank 0's: the same error everywhere, no collective."""
    for field, column in zip(_FIELDS, range(1, table.shape[1])):
        values = table[:, column]
        for rank in range(1, table.shape[0]):
            if values[rank] != values[0]:
                def show(v):
                    if field == "dtype":
                        return _DTYPES[int(v)]
                    if field == "reduction":
                        return next(k for k, c in _REDUCTION_CODES.items() if c == int(v))
                    if field == "strategy":
                        return _STRATEGIES[int(v)]
                    return repr(bool(v)) if field in _FLAGS else f"{float(v):g}"
                raise errors.InvalidArgumentError(
                    f"rank {rank}'s shard disagrees with rank 0's in its {field}: {show(values[rank])} on rank "
                    f"{rank}, {show(values[0])} on rank 0; every rank must pass the same width, dtype, device "
                    "type and options")


class _State:
    """What a distributed call knows once the ranks agree: the shards' sizes and this rank's inputs."""

    def __init__(self, cfg, group, shard, sizes, weight, symmetric, strategy, needs):
        self.cfg, self.group, self.shard, self.sizes = cfg, group, shard, sizes
        self.total = sum(sizes)
        self.weight = weight
        self.symmetric = symmetric
        grad_anchors, grad_positives, self.grad_temperature = needs  # agreed by every rank
        # Whether backward exchanges embedding gradients, the same on every rank: the all_gather strategy's
        # reduce-scatter carries the gathered columns' gradients (the positives', and for symmetric the
        # anchors'); the ring's backward needs every block for any gradient.
        if strategy == "ring":
            self.collective_backward = grad_anchors or grad_positives or self.grad_temperature
        else:
            self.collective_backward = grad_anchors or grad_positives if symmetric else grad_positives
        self.l2_share = 0.0
        self.global_loss = None
        # 'sum' returns world x this rank's sum; 'sum_over_batch_size' divides the global sum by N; the
        # symmetric loss weighs each direction 1/2 (SPEC section 5; both directions count N).
        self.scale = {"none": 1.0, "sum": float(group.size),
                      "sum_over_batch_size": group.size / max(self.total, 1)}[cfg.reduction] * \
            (0.5 if symmetric else 1.0)

    def directions(self, anchors, positives):
        """(rows, column index) of each direction: this rank's anchors against the columns of block[0] (the
        positives), and for symmetric its positives against those of block[1] (the anchors)."""
        return [(anchors, 0)] + ([(positives, 1)] if self.symmetric else [])

    def row_weights(self, like):
        """The weights of this rank's rows times the reduction's scale: what the library's call is handed."""
        if self.cfg.reduction == "none":
            return None if self.weight is None else self.weight.detach()
        w = torch.full((self.shard.rows,), self.scale, dtype=like.dtype, device=like.device)
        return w if self.weight is None else w * self.weight.detach().reshape(-1).to(w)

    def finish(self, rows, error):
        """The loss returned (rows: each direction's row losses), after every rank agreed that its calls
        succeeded (their shares give global_loss)."""
        loss = None
        if error is None:
            w = self.row_weights(rows[0])
            if self.cfg.reduction != "none":
                loss = sum((r * w).sum() for r in rows)
            else:
                loss = rows[0] if w is None else rows[0] * w.reshape(-1).to(rows[0])
        share = float(loss.detach()) / self.group.size if loss is not None and loss.ndim == 0 else 0.0
        table = self.group.agree(error, (share + self.l2_share,))
        if self.cfg.reduction != "none":
            self.global_loss = float(table[:, 0].sum())
        return loss

    def row_grad_loss(self, grad_output):
        """The upstream gradient of each row for a library call with reduction 'none' and no weights."""
        w = self.row_weights(grad_output)
        g = grad_output.reshape(-1) if self.cfg.reduction == "none" else grad_output.reshape(())
        return (g if w is None else g * w.reshape(-1).to(g)).contiguous()

    def weight_gradient(self, grad_output, rows):
        """dL/dw of this rank's rows: the unweighted row losses times the upstream gradient and the scale."""
        if self.weight is None or not self.weight.requires_grad:
            return None
        g = grad_output * rows * (self.scale if self.cfg.reduction != "none" else 1.0)
        shape = self.weight.shape
        return (g.sum() if len(shape) == 0 else g).reshape(shape).to(self.weight.dtype)

    def temperature_gradient(self, share, meta):
        """dL/dtau of the global loss from this rank's share (the ranks' sum over the world size), with the
        temperature's meta (shape, dtype, device); None without a temperature that needs it. Every rank calls
        it, with its share or None (no rows)."""
        if not self.grad_temperature:
            return None
        total = torch.zeros((), dtype=torch.float64, device=self.group.device) if share is None \
            else share.detach().to(device=self.group.device, dtype=torch.float64)
        dist.all_reduce(total, group=self.group.group)
        shape, dtype, device = meta
        return (total / self.group.size).to(device=device, dtype=dtype).reshape(shape)

    def padded(self, x):
        """x [R_r, ...] padded with zeros to the largest shard's rows."""
        most = max(self.sizes)
        if x.shape[0] == most:
            return x.contiguous()
        out = x.new_zeros((most,) + tuple(x.shape[1:]))
        out[:x.shape[0]] = x
        return out

    def gather(self, x):
        """Every rank's x [R_q, ...] concatenated in rank order: [N, ...]."""
        table = self.group.all_gather_rows(self.padded(x))
        if all(n == table.shape[1] for n in self.sizes):
            return table.reshape((self.total,) + tuple(x.shape[1:]))
        return torch.cat([table[q, :n] for q, n in enumerate(self.sizes)])

    def reduce_scatter(self, x):
        """The sum over ranks of x [N, ...] (rank order), each rank keeping its own rows [R_r, ...]."""
        most, group = max(self.sizes), self.group
        table = x.new_zeros((group.size, most) + tuple(x.shape[1:]))
        start = 0
        for q, n in enumerate(self.sizes):
            table[q, :n] = x[start:start + n]
            start += n
        if group.backend == "nccl":
            out = table.new_empty(table.shape[1:])
            reduce_scatter = getattr(dist, "reduce_scatter_tensor", None) or dist._reduce_scatter_base
            reduce_scatter(out, table, group=group.group)
        else:  # gloo has no reduce-scatter: one reduce per owner, the same traffic
            for q in range(group.size):
                dist.reduce(table[q], dst=group.global_rank(q), group=group.group)
            out = table[group.rank]
        return out[:self.shard.rows]


def _column_direction(direction, call):
    """call()'s result; for the symmetric loss's column direction (1) an error says which direction it is."""
    if direction == 0:
        return call()
    try:
        return call()
    except errors.NpairsError as e:
        raise type(e)("symmetric=True's column direction (this rank's positives as rows against every rank's "
                      f"anchors; the same labels): {e.message}", e.status) from e


def _call(state, rows, columns, column_targets, *, weights, want_grads, grad_loss=None):
    """This rank's rows against the given columns: one library call (reduction 'none', unweighted row losses)."""
    cfg = state.cfg
    return _nt._call(cfg, state.shard.column_targets, column_targets, weights, None, rows, columns,
                     want_grads=want_grads, reduction="none", reg_lambda=0.0,
                     weights_as_grad_loss=grad_loss is None, grad_loss=grad_loss)


def _meta(temperature):
    """(shape, dtype, device) of a tensor temperature, or None: what its gradient is returned as."""
    return None if temperature is None else (temperature.shape, temperature.dtype, temperature.device)


def _sum(tensors):
    """The sum of the tensors that are not None (None when all are)."""
    present = [t for t in tensors if t is not None]
    return sum(present[1:], present[0]) if present else None


class _AllGatherLoss(torch.autograd.Function):
    """apply(state, anchors, positives, weight, temperature): this rank's value, without the L2 term."""

    @staticmethod
    def forward(ctx, state, anchors, positives, weight, temperature):
        anchors_d, positives_d = anchors.detach(), positives.detach()
        gathered = [state.gather(positives_d)] + ([state.gather(anchors_d)] if state.symmetric else [])
        column_targets = state.gather(state.shard.column_targets)
        scalar = state.cfg.reduction != "none"
        # The gradients (of sum_i scale w_i loss_i) come with the loss for scalar reductions; for 'none' they
        # depend on the upstream gradient, so backward asks for them.
        want = (("anchors", "positives") if scalar and any(ctx.needs_input_grad[1:3]) else ()) + \
            (("temperature",) if scalar and ctx.needs_input_grad[4] else ())
        rows, grads, error = [], [], None
        try:
            for d, (mine, column) in enumerate(state.directions(anchors_d, positives_d)):
                r, g = _column_direction(d, lambda: _call(state, mine, gathered[column], column_targets,
                                                          weights=state.row_weights(mine), want_grads=want))
                rows.append(r)
                grads.append(g)
        except Exception as e:  # reported to every rank by finish
            error = e
        loss = state.finish(rows, error)
        ctx.state, ctx.grads, ctx.temperature_meta = state, grads, _meta(temperature)
        if scalar:  # the gradients are computed; dL/dw needs the row losses
            ctx.save_for_backward(rows[0])
        else:  # backward computes with its upstream gradient
            ctx.save_for_backward(rows[0], anchors_d, gathered[0], column_targets)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        state = ctx.state
        rows, *recompute = ctx.saved_tensors
        if state.cfg.reduction == "none":  # never symmetric, no temperature gradient
            anchors, columns, column_targets = recompute
            error, grad_anchors, grad_columns = None, None, None
            try:
                _, grads = _call(state, anchors, columns, column_targets, weights=state.row_weights(anchors),
                                 want_grads=("anchors", "positives"), grad_loss=grad_output.detach().contiguous())
                grad_anchors, grad_columns = grads["anchors"], grads["positives"]
            except Exception as e:
                error = e
            if state.collective_backward:
                state.group.agree(error)
            elif error is not None:
                raise error
            grad_positives = state.reduce_scatter(grad_columns) if state.collective_backward else None
            return None, grad_anchors if ctx.needs_input_grad[1] else None, grad_positives, \
                state.weight_gradient(grad_output, rows), None
        g = grad_output.to(rows.dtype)
        grads = [{name: x * g for name, x in d.items()} for d in ctx.grads]
        # Direction 0 gives this rank's anchors' gradient and the gathered positives'; direction 1 (symmetric)
        # this rank's positives' and the gathered anchors'. The gathered ones go back to their owners summed.
        own = [d.get("anchors") for d in grads]
        gathered = None
        if state.collective_backward:
            gathered = state.reduce_scatter(torch.cat([d["positives"] for d in grads], 1))
            gathered = gathered.split(gathered.shape[1] // len(grads), 1)
        grad_anchors = _sum([own[0], gathered[1] if state.symmetric and gathered else None])
        grad_positives = _sum([gathered[0] if gathered else None, own[1] if state.symmetric else None])
        share = _sum([d.get("temperature") for d in grads])
        return None, grad_anchors if ctx.needs_input_grad[1] else None, \
            grad_positives if ctx.needs_input_grad[2] else None, state.weight_gradient(grad_output, rows), \
            state.temperature_gradient(share, ctx.temperature_meta)


# ---------------------------------------------------------------------------
# The ring (Inf-CL)


def _block_call(state, rows, block, block_targets, stats, *, last=False, grad_loss=None, want_grads=()):
    """npairs_block_stats (grad_loss None: merges into stats; last: returns the row losses) or
    npairs_block_gradients (returns {name: gradient}) for this rank's rows against one block of columns.

    The inputs are checked and converted by the core's _prepare, as for npairs_loss; no sample_weight
    (the rows' weights and the reduction's scale travel in grad_loss).
    """
    cfg = state.cfg
    names = dict(_NAMES, targets="multilabels", column_targets="multilabels") if cfg.multilabel else _NAMES
    p = _core._prepare(targets=state.shard.column_targets, column_targets=block_targets, multilabel=cfg.multilabel,
                       embeddings=True, similarity=None, anchors=rows, positives=block, sample_weight=None,
                       grad_loss=grad_loss, reduction="none", temperature=cfg.temperature, reg_lambda=0.0,
                       backend=cfg.backend, names=names, host_half_as_float32=True, weights_as_grad_loss=False)
    ctx = _core.prepared_context(p, torch.get_num_threads() if cfg.threads is None else cfg.threads,
                                 _core.get_workspace_limit() if cfg.workspace_limit is None else cfg.workspace_limit)
    opts, prob = _core.call_structs(p)
    stats_ptr = _arrays.wrap("row_stats", stats).pointer()
    raise_for = _core._raiser(dict(_NAMES, **names), cfg.multilabel)
    if grad_loss is None:
        loss = _core._output(p, "loss", (p.R,)) if last else None
        raise_for(_lib.function("npairs_block_stats")(ctx.handle, ctypes.byref(opts), ctypes.byref(prob), stats_ptr,
                                                      loss.pointer() if loss is not None else None))
        return _core._finish(loss, p.out_dtype)
    grads, gstruct = _core.gradient_outputs(p, want_grads)
    raise_for(_lib.function("npairs_block_gradients")(ctx.handle, ctypes.byref(opts), ctypes.byref(prob), stats_ptr,
                                                      p.G.pointer(), ctypes.byref(gstruct)))
    return {name: _core._finish(out, p.out_dtype) for name, out in grads.items()}


def _empty_stats(rows, like):
    """Row statistics before the first block: {-inf, 0, 0, 0} per row (npairs.h, column blocks), in the dtype the
    library computes in (float32 for 16-bit host tensors)."""
    half = like.dtype in (torch.float16, torch.bfloat16) and not like.is_cuda
    stats = like.new_zeros((rows, _lib.ROW_STATS_WIDTH), dtype=torch.float32 if half else like.dtype)
    stats[:, 0] = -float("inf")
    return stats


class _Ring:
    """Passes blocks (tuples of tensors, each with one row per column of the block) to the next rank.

    A block is the columns of each direction (the owner's positives, and for symmetric its anchors), their
    targets, and in backward the gradients of those columns accumulated so far.
    """

    def __init__(self, state):
        self.state = state
        group = state.group
        self.next = group.global_rank((group.rank + 1) % group.size)
        self.previous = group.global_rank((group.rank - 1) % group.size)

    def owner(self, step):
        """The rank whose block this rank holds at `step`."""
        return (self.state.group.rank - step) % self.state.group.size

    def start(self, block, step):
        """Sends this step's block on and receives the next step's; returns (requests, the received block)."""
        state, group = self.state, self.state.group
        incoming = state.sizes[self.owner(step + 1)]
        received = tuple(x.new_empty((incoming,) + tuple(x.shape[1:])) for x in block)
        ops = []
        if block[0].shape[0] > 0:
            ops += [dist.P2POp(dist.isend, x.contiguous(), self.next, group.group) for x in block]
        if incoming > 0:
            ops += [dist.P2POp(dist.irecv, x, self.previous, group.group) for x in received]
        return (dist.batch_isend_irecv(ops) if ops else []), received

    @staticmethod
    def finish(requests):
        for request in requests:
            request.wait()


class _RingLoss(torch.autograd.Function):
    """apply(state, anchors, positives, weight, temperature): this rank's value, without the L2 term."""

    @staticmethod
    def forward(ctx, state, anchors, positives, weight, temperature):
        ring, size = _Ring(state), state.group.size
        anchors_d, positives_d = anchors.detach(), positives.detach()
        directions = state.directions(anchors_d, positives_d)
        stats = [_empty_stats(state.shard.rows, anchors_d) for _ in directions]
        block = (positives_d,) + ((anchors_d,) if state.symmetric else ()) + (state.shard.column_targets,)
        # The row losses come with the last block that has columns (shards may be empty).
        last = max((step for step in range(size) if state.sizes[ring.owner(step)] > 0), default=None)
        rows = [anchors_d.new_zeros((0,)) for _ in directions] if last is None else [None] * len(directions)
        error = None
        for step in range(size):
            requests, received = ring.start(block, step) if step < size - 1 else ([], None)
            # A failed call leaves the ring turning (the others wait for this rank's sends); finish tells everyone.
            if error is None and block[0].shape[0] > 0:
                try:
                    for d, (mine, column) in enumerate(directions):
                        r = _column_direction(d, lambda: _block_call(state, mine, block[column], block[-1], stats[d],
                                                                     last=step == last))
                        if step == last:
                            rows[d] = r
                except Exception as e:
                    error = e
            ring.finish(requests)
            block = received
        loss = state.finish(rows, error)
        ctx.state = state
        ctx.temperature_meta = _meta(temperature)
        ctx.save_for_backward(anchors_d, positives_d, rows[0], *stats)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        state = ctx.state
        anchors, positives, rows, *stats = ctx.saved_tensors
        grad_anchors = grad_positives = grad_temperature = None
        if state.collective_backward:
            grad_anchors, grad_positives, grad_temperature = _ring_gradients(
                state, anchors, positives, stats, state.row_grad_loss(grad_output.detach()), ctx.temperature_meta)
        return None, grad_anchors if ctx.needs_input_grad[1] else None, \
            grad_positives if ctx.needs_input_grad[2] else None, state.weight_gradient(grad_output, rows), \
            grad_temperature


def _ring_gradients(state, anchors, positives, stats, grad_loss, temperature):
    """(dL/dA, dL/dP, dL/dtau) of this rank: each block's gradient travels on with the block, back to its owner."""
    ring, size = _Ring(state), state.group.size
    directions = state.directions(anchors, positives)
    n = len(directions)
    own = [x.new_zeros(x.shape) for x, _ in directions]  # the gradient of each direction's rows: dA, (dP)
    block = (positives,) + ((anchors,) if state.symmetric else ()) + (state.shard.column_targets,) + \
        tuple(x.new_zeros(x.shape) for x in (positives, anchors)[:n])
    want = ("anchors", "positives") + (("temperature",) if state.grad_temperature else ())
    share, error = None, None
    for step in range(size):
        if error is None and block[0].shape[0] > 0 and anchors.shape[0] > 0:
            try:
                for d, (mine, column) in enumerate(directions):
                    grads = _column_direction(d, lambda: _block_call(state, mine, block[column], block[n], stats[d],
                                                                     grad_loss=grad_loss, want_grads=want))
                    own[d] += grads["anchors"]
                    block[n + 1 + d].add_(grads["positives"])
                    share = _sum([share, grads.get("temperature")])
            except Exception as e:
                error = e
        if step < size - 1:
            requests, block = ring.start(block, step)
            ring.finish(requests)
    if size > 1:  # the last blocks' gradients, complete, go on to their owner; this rank's own come back
        requests, columns = ring.start(block[n + 1:], size - 1)
        ring.finish(requests)
    else:
        columns = block[n + 1:]
    state.group.agree(error)
    grad_anchors = _sum([own[0], columns[1] if state.symmetric else None])
    grad_positives = _sum([columns[0], own[1] if state.symmetric else None])
    return grad_anchors, grad_positives, state.temperature_gradient(share, temperature)


class DistributedClipLoss(_nt.ClipLoss):
    """CLIP's loss of the global batch (open_clip's ``ClipLoss(gather_with_grad=True, local_loss=False)``), each
    rank passing its shard: ``DistributedClipLoss(...)(image_features, text_features)``.

    ``DistributedClipLoss(logit_scale=1/0.07, learnable=True, backend="auto", threads=None, workspace_limit=None,
    group=None, strategy="all_gather")``: :class:`npairs.torch.ClipLoss`'s arguments (its ``logit_scale``
    parameter, ``forward(image_features, text_features, logit_scale=None, labels=None)``), plus the process
    group and the strategy of :class:`DistributedNpairsEmbeddingsLoss` (``symmetric=True``), which computes it.

    As open_clip's, the value on every rank is the loss of the global batch (every rank's images against every
    rank's texts), and the gradients are those that open_clip's gather-with-gradient gives: each rank's features
    get the gradient of the sum over ranks of the values (under DDP, which averages, training equals one process
    on the concatenated batch), and the logit scale, the same on every rank, dL/dlogit_scale of the global loss.
    labels: this rank's [R_r] labels (pairs of the same class on any rank are positives of each other); by
    default every image-text pair is a class of its own.
    """

    def __init__(self, logit_scale=1 / 0.07, learnable=True, backend="auto", threads=None, workspace_limit=None,
                 group=None, strategy="all_gather"):
        super().__init__(logit_scale, learnable, backend, threads, workspace_limit)
        self._distributed = DistributedNpairsEmbeddingsLoss(group=group, strategy=strategy, backend=backend,
                                                            workspace_limit=workspace_limit, symmetric=True,
                                                            threads=threads)
        self.group, self.strategy = group, strategy

    @property
    def global_loss(self):
        """The global batch's loss after the last forward (what it returned), a float."""
        return self._distributed.global_loss

    def forward(self, image_features, text_features, logit_scale=None, labels=None):
        scale = self.logit_scale.exp() if logit_scale is None else torch.as_tensor(logit_scale, dtype=torch.float64)
        if labels is None:  # unique over the ranks without a collective: the rank in the high bits
            labels = torch.arange(image_features.shape[0], device=image_features.device) + \
                (_Group(self.group).rank << 32)
        loss = self._distributed._loss(labels, image_features, text_features, None, torch.reciprocal(scale))
        return loss + (self._distributed.global_loss - loss.detach())

    def extra_repr(self):
        return super().extra_repr() + f", strategy={self.strategy!r}" + \
            _nt._limit_repr(self._distributed.workspace_limit)
